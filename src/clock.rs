//! A cheap clock for bookkeeping that counts in seconds (how long a pooled connection has been
//! idle): the kernel's coarse monotonic clock, which the vDSO answers from memory without
//! reading the CPU's time stamp counter. It lags the precise clock by at most one kernel tick
//! (a few milliseconds); in a virtual machine it costs a fraction of a precise read, and the
//! data plane reads the time several times per request.

use std::time::{Duration, Instant};

/// Nanoseconds on the coarse monotonic clock.
fn coarse_nanos() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC_COARSE exists on every Linux
    // this runs on (2.6.32 and later). On failure `ts` stays zero, which only makes ages longer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
}

thread_local! {
    /// A precise instant and the coarse clock's reading at about the same moment: both clocks
    /// are CLOCK_MONOTONIC, so later coarse readings map onto `Instant`s by their difference.
    static ANCHOR: (Instant, u64) = (Instant::now(), coarse_nanos());
}

/// Now, to within a few milliseconds.
pub fn coarse_now() -> Instant {
    ANCHOR.with(|&(at, nanos)| at + Duration::from_nanos(coarse_nanos().saturating_sub(nanos)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coarse_time_keeps_up_with_the_precise_clock() {
        let a = coarse_now();
        std::thread::sleep(Duration::from_millis(50));
        let b = coarse_now();
        let precise = Instant::now();
        let step = b.saturating_duration_since(a);
        assert!(step >= Duration::from_millis(40) && step < Duration::from_millis(500), "coarse clock moved {step:?} in 50 ms");
        let off = if b > precise { b - precise } else { precise - b };
        assert!(off < Duration::from_millis(50), "coarse clock is {off:?} away from the precise one");
    }
}
