//! Timeouts that cost nothing when the operation does not have to wait. `tokio::time::timeout`
//! reads the clock to compute its deadline before it polls anything, and most reads and writes
//! of a busy proxy complete at their first poll (the data is there, the socket has room); in a
//! virtual machine that clock read is a noticeable share of a request's CPU time. Here the
//! clock starts when an operation first has to wait, or at a moment the caller read already.

use std::future::Future;
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::Duration;
use tokio::time::Instant;

/// The operation did not finish in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

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
        self.run_in(pin!(None), fut).await
    }

    /// [`Deadline::run`] on a kept timer.
    pub async fn run_on<F: Future>(&mut self, timer: &mut Timer, fut: F) -> Result<F::Output, Elapsed> {
        let sleep = timer.0.get_or_insert_with(|| Box::pin(None));
        self.run_in(sleep.as_mut(), fut).await
    }

    /// Runs `fut` against the timer in `sleep`: set (or moved, if one is there from an earlier
    /// wait) to the deadline when `fut` first has to wait.
    async fn run_in<F: Future>(&mut self, mut sleep: Pin<&mut Option<tokio::time::Sleep>>, fut: F) -> Result<F::Output, Elapsed> {
        let mut fut = pin!(fut);
        let mut armed = false;
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
            if !armed {
                let at = *self.at.get_or_insert_with(|| Instant::now() + self.limit);
                match sleep.as_mut().as_pin_mut() {
                    Some(kept) => kept.reset(at),
                    None => sleep.set(Some(tokio::time::sleep_until(at))),
                }
                armed = true;
            }
            match sleep.as_mut().as_pin_mut() {
                Some(s) => s.poll(cx).map(|()| Err(Elapsed)),
                None => Poll::Pending,
            }
        })
        .await
    }
}

/// A timer kept for a connection's whole life and moved for each wait. A timer made per wait
/// is inserted into tokio's timer wheel and taken out again every time (a request on a
/// keep-alive connection waits for its client, then for the upstream, once per request);
/// moving a registered timer to a later deadline only updates it in place, and the wheel moves
/// it when the old deadline comes. So a kept timer serves one kind of wait, whose deadlines only
/// grow: one for the keep-alive waits, another for the upstream's answers. Made on first use.
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
