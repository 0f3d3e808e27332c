//! Background threads that share a core with the data plane (the telemetry thread, the state
//! store's writer) give it back now and then, so that a burst of their work does not hold up
//! requests that arrive meanwhile.

use std::time::{Duration, Instant};

/// Work a background thread may do before it offers the core. Short enough to stay well inside
/// the latency a request may gain (1 ms at p99), long enough that the context switches cost
/// little: a `sched_yield` after every 64 records cost about 1% of the core at full load.
const SLICE: Duration = Duration::from_micros(100);
/// Items handled between two looks at the clock.
const CHECK_EVERY: u32 = 32;

/// Counts the items of one burst of work and yields once a slice of it has run.
pub struct Courtesy {
    since: Instant,
    items: u32,
}

impl Courtesy {
    /// Starts a burst (after a sleep or wake-up: the time before it was not spent working).
    pub fn start() -> Self {
        Courtesy { since: Instant::now(), items: 0 }
    }

    /// One more item handled; yields if the burst has run for a slice since the last yield.
    pub fn item(&mut self) {
        self.items = self.items.wrapping_add(1);
        if self.items.is_multiple_of(CHECK_EVERY) && self.since.elapsed() >= SLICE {
            std::thread::yield_now();
            self.since = Instant::now();
        }
    }
}
