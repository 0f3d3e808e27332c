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
    at: Option<Instant>,
}

impl Deadline {
    pub fn after(limit: Duration) -> Self {
        Deadline { limit, at: None }
    }

    /// A limit that started at `start` (a precise reading the caller already has).
    pub fn since(start: std::time::Instant, limit: Duration) -> Self {
        Deadline { limit, at: Some(Instant::from_std(start) + limit) }
    }

    /// Runs `fut` until it finishes or the deadline passes.
    pub async fn run<F: Future>(&mut self, fut: F) -> Result<F::Output, Elapsed> {
        self.run_in(pin!(None), fut, None::<&Unwatched>).await.map_err(|_| Elapsed)
    }

    /// [`Deadline::run`] on a kept timer.
    pub async fn run_on<F: Future>(&mut self, timer: &mut Timer, fut: F) -> Result<F::Output, Elapsed> {
        let sleep = timer.0.get_or_insert_with(|| Box::pin(None));
        self.run_in(sleep.as_mut(), fut, None::<&Unwatched>).await.map_err(|_| Elapsed)
    }

    /// [`Deadline::run`] (on `timer` when one is kept for this kind of wait) that also asks
    /// `watch`, every [`Watch::every`] of waiting, whether whoever the wait is for is still there,
    /// and stops with [`Stopped::Gone`] once it is not. Without a watch it is [`Deadline::run`].
    ///
    /// The checks ride on the one timer the wait arms anyway: it is set to the earlier of the
    /// deadline and the first check, and on waking before the deadline it asks and is moved on.
    /// A wait that ends before its first check costs what an unwatched one does (no extra timer,
    /// system call or clock read).
    pub async fn run_watched<F: Future, W: Watch>(&mut self, timer: Option<&mut Timer>, fut: F, watch: Option<&W>) -> Result<F::Output, Stopped> {
        match timer {
            Some(t) => {
                let sleep = t.0.get_or_insert_with(|| Box::pin(None));
                self.run_in(sleep.as_mut(), fut, watch).await
            }
            None => self.run_in(pin!(None), fut, watch).await,
        }
    }

    /// Runs `fut` against the timer in `sleep`: set (or moved, if one is there from an earlier
    /// wait) to the deadline, or to the first check of `watch` if that comes sooner, when `fut`
    /// first has to wait.
    async fn run_in<F: Future, W: Watch>(&mut self, mut sleep: Pin<&mut Option<tokio::time::Sleep>>, fut: F, watch: Option<&W>) -> Result<F::Output, Stopped> {
        let mut fut = pin!(fut);
        let mut armed = false;
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
            if !armed {
                let wake = match (self.at, watch) {
                    (Some(at), None) => at,
                    // A deadline started by an earlier wait: its checks count from now.
                    (Some(at), Some(w)) => at.min(Instant::now() + w.every()),
                    (None, w) => {
                        let now = Instant::now();
                        let at = now + self.limit;
                        self.at = Some(at);
                        w.map_or(at, |w| at.min(now + w.every()))
                    }
                };
                match sleep.as_mut().as_pin_mut() {
                    Some(kept) => kept.reset(wake),
                    None => sleep.set(Some(tokio::time::sleep_until(wake))),
                }
                armed = true;
            }
            // Set once armed.
            let (Some(at), Some(mut s)) = (self.at, sleep.as_mut().as_pin_mut()) else { return Poll::Pending };
            loop {
                if s.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                // The time the timer was set for stands for now: no clock read.
                let woke = s.deadline();
                let w = match watch {
                    Some(w) if woke < at => w,
                    _ => return Poll::Ready(Err(Stopped::Elapsed)),
                };
                if w.gone() {
                    return Poll::Ready(Err(Stopped::Gone));
                }
                // Polled again at the top of the loop, which registers the wake-up.
                s.as_mut().reset(at.min(woke + w.every()));
            }
        })
        .await
    }
}

/// The watch of a wait that watches nothing.
enum Unwatched {}

impl Watch for Unwatched {
    fn every(&self) -> Duration {
        match *self {}
    }
    fn gone(&self) -> bool {
        match *self {}
    }
}

/// A timer kept for a connection's whole life and moved for each wait. A timer made per wait
/// is inserted into tokio's timer wheel and taken out again every time (a request on a
/// keep-alive connection waits for its client, then for the upstream, once per request);
/// moving a registered timer to a later deadline only updates it in place, and the wheel moves
/// it when the old deadline comes. So a kept timer serves one kind of wait, whose deadlines only
/// grow: one for the keep-alive waits, another for the upstream's answers (set to their first
/// check of the client, see [`Deadline::run_watched`], which grows from one request to the
/// next as well). Made on first use.
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
        assert_eq!(Deadline::after(Duration::from_secs(5)).run_watched(None, async { 1 }, Some(&watch)).await, Ok(1));
        assert_eq!(Deadline::after(Duration::from_secs(5)).run_watched(None, tokio::time::sleep(Duration::from_millis(99)), Some(&watch)).await, Ok(()));
        assert_eq!(watch.asked(), 0);
        // Asked every 100 ms while it lasts; the deadline still ends it on time, between checks.
        let mut timer = Timer::default();
        let t = Instant::now();
        assert_eq!(
            Deadline::after(Duration::from_millis(350)).run_watched(Some(&mut timer), std::future::pending::<()>(), Some(&watch)).await,
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
        assert_eq!(
            Deadline::after(Duration::from_secs(30)).run_watched(Some(&mut timer), std::future::pending::<()>(), Some(&watch)).await,
            Err(Stopped::Gone)
        );
        assert_eq!((t.elapsed(), watch.asked()), (Duration::from_secs(3), 3));
        // The kept timer serves the next wait with its full limit; without a watch nothing is asked.
        let t = Instant::now();
        assert_eq!(
            Deadline::after(Duration::from_secs(2)).run_watched(Some(&mut timer), std::future::pending::<()>(), None::<&Asked>).await,
            Err(Stopped::Elapsed)
        );
        assert_eq!((t.elapsed(), watch.asked()), (Duration::from_secs(2), 3));
        // A deadline started by an earlier wait: the checks count from the later wait's start.
        let mut d = Deadline::after(Duration::from_secs(10));
        assert_eq!(d.run_watched(None, tokio::time::sleep(Duration::from_millis(1500)), Some(&watch)).await, Err(Stopped::Gone));
        assert_eq!(watch.asked(), 4);
        let watch = Asked::new(1000, 2);
        let t = Instant::now();
        assert_eq!(d.run_watched(None, std::future::pending::<()>(), Some(&watch)).await, Err(Stopped::Gone));
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
