//! Requests still in flight when a shutdown's grace period ends: each is cut (its state dropped,
//! its connection closed) by its own connection task, so that it still writes its access-log
//! line and request-log row before the process exits, instead of vanishing with it.

use super::downstream::ShutdownWait;
use pingora::server::ShutdownWatch;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use tokio::sync::Notify;

/// The signal, given once by graceful shutdown (`background::Drain`) when the grace period is
/// over.
#[derive(Debug, Default)]
pub struct Cut {
    fired: AtomicBool,
    notify: Notify,
}

impl Cut {
    /// Cuts every request still in flight.
    pub fn fire(&self) {
        self.fired.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Whether the grace period is over.
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }

    async fn wait(&self) {
        loop {
            let mut notified = pin!(self.notify.notified());
            // Registered before the flag is read: a `fire` in between still wakes this wait.
            notified.as_mut().enable();
            if self.fired() {
                return;
            }
            notified.await;
        }
    }
}

/// Runs `request` to its end (`Some` of what it returns) unless the grace period of a shutdown
/// ends first (`None`: the request was dropped, which writes its record, and the connection
/// must close).
///
/// Waiting for the cut costs the common path almost nothing: the connection's wait for shutdown
/// (`wait`, which the keep-alive wait polls too) is polled once per connection (`registered`
/// remembers it), so that a shutdown wakes the task even in the middle of a request; after that,
/// each wake-up reads the watch's version (one atomic load), and only once shutdown has started
/// is the cut waited for. A wait that completed is taken out of `wait` (it must not be polled
/// again).
pub(super) async fn unless_cut<F: Future<Output = bool>>(
    cut: &Cut,
    shutdown: &ShutdownWatch,
    wait: &mut Option<ShutdownWait>,
    registered: &mut bool,
    request: F,
) -> Option<bool> {
    let mut request = pin!(request);
    // Not polled, so not registered anywhere, until shutdown starts.
    let mut cut_wait = pin!(cut.wait());
    let mut draining = false;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(keep) = request.as_mut().poll(cx) {
            return Poll::Ready(Some(keep));
        }
        if !draining && (!*registered || shutdown.has_changed().unwrap_or(true)) {
            *registered = true;
            if let Some(w) = wait.as_mut() {
                if w.as_mut().poll(cx).is_ready() {
                    *wait = None;
                    draining = true;
                }
            }
        }
        if draining {
            return cut_wait.as_mut().poll(cx).map(|()| None);
        }
        Poll::Pending
    })
    .await
}
