//! Timeouts that cost nothing when the operation does not have to wait. `tokio::time::timeout`
//! reads the clock to compute its deadline before it polls anything, and most reads and writes
//! of a busy proxy complete at their first poll (the data is there, the socket has room); in a
//! virtual machine that clock read is a noticeable share of a request's CPU time. Here the
//! clock starts when an operation first has to wait, or at a moment the caller read already.
//!
//! A wait can also watch whoever it is for (the client whose answer the proxy is waiting on):
//! the timer it arms anyway is set to the next check rather than to the deadline, so that a wait
//! that ends before the first check costs nothing more than an unwatched one.

use std::future::Future;
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::Duration;
use tokio::time::Instant;

/// The operation did not finish in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

/// How a watched wait ended without its operation finishing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// The deadline passed.
    Elapsed,
    /// The watch said that whoever the wait was for is gone.
    Gone,
}

/// Whoever a wait is for, asked now and then whether it is still there (see
/// [`Deadline::run_watched`]).
pub trait Watch: Sync {
    /// How long a wait goes between two checks.
    fn every(&self) -> Duration;
    /// Whether it has gone. Asked only once a wait has lasted another [`Watch::every`], so it may
    /// make a system call; it must not consume anything (a pipelined request is not a close).
    fn gone(&self) -> bool;
}

/// A time limit shared by several operations (a response head read in several pieces): it
/// starts when the first of them has to wait, and ends `limit` later.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    limit: Duration,
    /// When the clock started. (The start rather than the end: a watched wait then arms its
    /// first check with one addition, and the end is worked out only when the timer fires.)
    start: Option<Instant>,
}

impl Deadline {
    pub fn after(limit: Duration) -> Self {
        Deadline { limit, start: None }
    }

    /// A limit that started at `start` (a precise reading the caller already has).
    pub fn since(start: std::time::Instant, limit: Duration) -> Self {
        Deadline { limit, start: Some(Instant::from_std(start)) }
    }

    /// Runs `fut` until it finishes or the deadline passes.
    pub async fn run<F: Future>(&mut self, fut: F) -> Result<F::Output, Elapsed> {
        self.run_in(pin!(None), fut, ()).await.map_err(|_| Elapsed)
    }

    /// [`Deadline::run`] on a kept timer.
    pub async fn run_on<F: Future>(&mut self, timer: &mut Timer, fut: F) -> Result<F::Output, Elapsed> {
        let sleep = timer.0.get_or_insert_with(|| Box::pin(None));
        self.run_in(sleep.as_mut(), fut, ()).await.map_err(|_| Elapsed)
    }

    /// [`Deadline::run_on`] that also asks `watch`, every [`Watch::every`] of waiting, whether
    /// whoever the wait is for is still there, and stops with [`Stopped::Gone`] once it is not.
    ///
    /// The checks ride on the timer the wait arms anyway: it is set to the earlier of the
    /// deadline and the first check, and on waking before the deadline it asks and is moved on.
    /// A wait that ends before its first check costs what an unwatched one does (no extra timer,
    /// system call or clock read).
    pub async fn run_watched<F: Future, W: Watch>(&mut self, timer: &mut Timer, fut: F, watch: Option<&W>) -> Result<F::Output, Stopped> {
        let sleep = timer.0.get_or_insert_with(|| Box::pin(None));
        self.run_in(sleep.as_mut(), fut, watch).await
    }

    /// Runs `fut` against the timer in `sleep`: set (or moved, if one is there from an earlier
    /// wait) to the deadline, or to the first check of `watch` if that comes sooner, when `fut`
    /// first has to wait.
    async fn run_in<F: Future, A: Asking>(&mut self, mut sleep: Pin<&mut Option<tokio::time::Sleep>>, fut: F, watch: A) -> Result<F::Output, Stopped> {
        let mut fut = pin!(fut);
        let mut armed = false;
        // Everything moved in: the closure holds a plain wait's state and nothing for `()`
        // (every `timeout` of a read or write is one, inside every request's state).
        std::future::poll_fn(move |cx| {
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
            if !armed {
                let wake = match (self.start, watch.every()) {
                    (Some(start), None) => start + self.limit,
                    // A deadline started by an earlier wait: its checks count from now.
                    (Some(start), Some(every)) => (start + self.limit).min(Instant::now() + every),
                    (None, every) => {
                        let now = Instant::now();
                        self.start = Some(now);
                        now + every.map_or(self.limit, |every| self.limit.min(every))
                    }
                };
                match sleep.as_mut().as_pin_mut() {
                    Some(kept) => kept.reset(wake),
                    None => sleep.set(Some(tokio::time::sleep_until(wake))),
                }
                armed = true;
            }
            // Set once armed.
            let (Some(start), Some(mut s)) = (self.start, sleep.as_mut().as_pin_mut()) else { return Poll::Pending };
            loop {
                if s.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let Some(every) = watch.every() else { return Poll::Ready(Err(Stopped::Elapsed)) };
                // The time the timer was set for stands for now: no clock read.
                let (woke, at) = (s.deadline(), start + self.limit);
                if woke >= at {
                    return Poll::Ready(Err(Stopped::Elapsed));
                }
                if watch.gone() {
                    return Poll::Ready(Err(Stopped::Gone));
                }
                // Polled again at the top of the loop, which registers the wake-up.
                s.as_mut().reset(at.min(woke + every));
            }
        })
        .await
    }
}

/// What a wait asks: nothing (`()`, which takes no room in the wait's state), or a watch.
trait Asking: Copy {
    /// How often to ask; `None`: never.
    fn every(self) -> Option<Duration>;
    fn gone(self) -> bool;
}

impl Asking for () {
    fn every(self) -> Option<Duration> {
        None
    }
    fn gone(self) -> bool {
        false
    }
}

impl<W: Watch> Asking for Option<&W> {
    fn every(self) -> Option<Duration> {
        self.map(W::every)
    }
    fn gone(self) -> bool {
        self.is_some_and(W::gone)
    }
}

/// A timer kept for a connection's whole life and moved for each wait. A timer made per wait
/// is inserted into tokio's timer wheel and taken out again every time (a request on a
/// keep-alive connection waits for its client, then for the upstream, once per request);
/// moving a registered timer to a later deadline only updates it in place, and the wheel moves
/// it when the old deadline comes. So a kept timer serves one kind of wait, whose deadlines only
/// grow: one for the keep-alive waits, another for the waits on the upstream (its answer's
/// head, then each chunk of a relayed body, each set to its first check of the client, see
/// [`Deadline::run_watched`]). Made on first use.
#[derive(Default)]
pub struct Timer(Option<Pin<Box<Option<tokio::time::Sleep>>>>);

/// Runs `fut` for at most `limit` from the moment it first has to wait.
pub async fn timeout<F: Future>(limit: Duration, fut: F) -> Result<F::Output, Elapsed> {
    Deadline::after(limit).run(fut).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn ready_operations_finish_and_waiting_ones_time_out() {
        assert_eq!(timeout(Duration::from_millis(10), async { 7 }).await, Ok(7));
        let started = Instant::now();
        assert_eq!(timeout(Duration::from_millis(10), std::future::pending::<()>()).await, Err(Elapsed));
        assert_eq!(started.elapsed(), Duration::from_millis(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_timer_serves_one_wait_after_another() {
        let mut timer = Timer::default();
        let started = Instant::now();
        // Each wait gets its own full limit, however long the timer has existed.
        for round in 1..=3u32 {
            assert_eq!(Deadline::after(Duration::from_millis(50)).run_on(&mut timer, tokio::time::sleep(Duration::from_millis(30))).await, Ok(()));
            assert_eq!(started.elapsed(), Duration::from_millis(30) * round);
        }
        assert_eq!(Deadline::after(Duration::from_millis(50)).run_on(&mut timer, std::future::pending::<()>()).await, Err(Elapsed));
        assert_eq!(started.elapsed(), Duration::from_millis(140));
        // After firing, it serves again; a shorter limit than the last one is kept too.
        assert_eq!(Deadline::after(Duration::from_millis(10)).run_on(&mut timer, std::future::pending::<()>()).await, Err(Elapsed));
        assert_eq!(started.elapsed(), Duration::from_millis(150));
        assert_eq!(Deadline::after(Duration::from_millis(10)).run_on(&mut timer, async { 5 }).await, Ok(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_since_an_earlier_moment_counts_from_it() {
        let start = Instant::now();
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(Deadline::since(start.into_std(), Duration::from_millis(50)).run(async { 3 }).await, Ok(3));
        assert_eq!(Deadline::since(start.into_std(), Duration::from_millis(50)).run(std::future::pending::<()>()).await, Err(Elapsed));
        assert_eq!(start.elapsed(), Duration::from_millis(50));
        // On a kept timer too, and one already past ends at once.
        let mut timer = Timer::default();
        assert_eq!(Deadline::since(start.into_std(), Duration::from_millis(80)).run_on(&mut timer, std::future::pending::<()>()).await, Err(Elapsed));
        assert_eq!(start.elapsed(), Duration::from_millis(80));
        assert_eq!(Deadline::since(start.into_std(), Duration::from_millis(10)).run_on(&mut timer, std::future::pending::<()>()).await, Err(Elapsed));
        assert_eq!(start.elapsed(), Duration::from_millis(80));
    }

    /// A watch that counts how often it was asked, and says gone from its `gone_at`-th time on.
    struct Asked {
        every: Duration,
        gone_at: u32,
        asked: std::sync::atomic::AtomicU32,
    }

    impl Asked {
        fn new(every_ms: u64, gone_at: u32) -> Asked {
            Asked { every: Duration::from_millis(every_ms), gone_at, asked: Default::default() }
        }
        fn asked(&self) -> u32 {
            self.asked.load(std::sync::atomic::Ordering::Relaxed)
        }
    }

    impl Watch for Asked {
        fn every(&self) -> Duration {
            self.every
        }
        fn gone(&self) -> bool {
            self.asked.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1 >= self.gone_at
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_watched_wait_asks_only_once_it_has_lasted_a_check_interval() {
        let watch = Asked::new(100, u32::MAX);
        let started = Instant::now();
        // Done at once, or before the first check: never asked.
        let mut timer = Timer::default();
        assert_eq!(Deadline::after(Duration::from_secs(5)).run_watched(&mut timer, async { 1 }, Some(&watch)).await, Ok(1));
        assert_eq!(Deadline::after(Duration::from_secs(5)).run_watched(&mut timer, tokio::time::sleep(Duration::from_millis(99)), Some(&watch)).await, Ok(()));
        assert_eq!(watch.asked(), 0);
        // Asked every 100 ms while it lasts; the deadline still ends it on time, between checks.
        let t = Instant::now();
        assert_eq!(
            Deadline::after(Duration::from_millis(350)).run_watched(&mut timer, std::future::pending::<()>(), Some(&watch)).await,
            Err(Stopped::Elapsed)
        );
        assert_eq!((t.elapsed(), watch.asked()), (Duration::from_millis(350), 3));
        assert_eq!(started.elapsed(), Duration::from_millis(449));
    }

    #[tokio::test(start_paused = true)]
    async fn a_watched_wait_stops_at_the_first_check_that_finds_its_party_gone() {
        let watch = Asked::new(1000, 3);
        let mut timer = Timer::default();
        let t = Instant::now();
        assert_eq!(Deadline::after(Duration::from_secs(30)).run_watched(&mut timer, std::future::pending::<()>(), Some(&watch)).await, Err(Stopped::Gone));
        assert_eq!((t.elapsed(), watch.asked()), (Duration::from_secs(3), 3));
        // The kept timer serves the next wait with its full limit; without a watch nothing is asked.
        let t = Instant::now();
        assert_eq!(Deadline::after(Duration::from_secs(2)).run_watched(&mut timer, std::future::pending::<()>(), None::<&Asked>).await, Err(Stopped::Elapsed));
        assert_eq!((t.elapsed(), watch.asked()), (Duration::from_secs(2), 3));
        // A deadline started by an earlier wait: the checks count from the later wait's start.
        let mut d = Deadline::after(Duration::from_secs(10));
        assert_eq!(d.run_watched(&mut timer, tokio::time::sleep(Duration::from_millis(1500)), Some(&watch)).await, Err(Stopped::Gone));
        assert_eq!(watch.asked(), 4);
        let watch = Asked::new(1000, 2);
        let t = Instant::now();
        assert_eq!(d.run_watched(&mut timer, std::future::pending::<()>(), Some(&watch)).await, Err(Stopped::Gone));
        assert_eq!(t.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_spans_the_operations_that_share_it() {
        let mut d = Deadline::after(Duration::from_millis(100));
        let started = Instant::now();
        // The first wait starts the clock; later ones get what is left of it.
        assert_eq!(d.run(tokio::time::sleep(Duration::from_millis(60))).await, Ok(()));
        assert_eq!(d.run(tokio::time::sleep(Duration::from_millis(60))).await, Err(Elapsed));
        assert_eq!(started.elapsed(), Duration::from_millis(100));
        // Once passed, even an operation that would wait is refused at its deadline at once.
        assert_eq!(d.run(std::future::pending::<()>()).await, Err(Elapsed));
        assert_eq!(started.elapsed(), Duration::from_millis(100));
    }
}
