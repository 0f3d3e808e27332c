//! Cheap clock readings for the data plane. In a virtual machine a precise reading (the CPU's
//! time stamp counter through the vDSO) costs about 25 ns here, and a request used to take
//! nine of them. The kernel's coarse clocks are answered from memory in about 5 ns and lag the
//! precise ones by a kernel tick or so (4 ms; up to 7 ms measured in this VM, whose tickless
//! kernel updates them late): good for what counts in seconds, minutes and days (pooled
//! connections' idle ages, rate windows). The log line's wall-clock time is derived from a
//! precise reading already taken. Timeouts keep precise deadlines (see `deadline`).

use std::cell::Cell;
use std::time::{Duration, Instant, SystemTime};

fn read(clock: libc::clockid_t) -> libc::timespec {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec and the clocks asked for exist on every Linux
    // this runs on (2.6.32 and later). On failure `ts` stays zero; callers saturate.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts
}

fn nanos(ts: libc::timespec) -> u64 {
    (ts.tv_sec.max(0) as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec.max(0) as u64)
}

thread_local! {
    /// A precise instant and the coarse monotonic clock's reading at about the same moment:
    /// both clocks are CLOCK_MONOTONIC, so later coarse readings map onto `Instant`s by their
    /// difference.
    static ANCHOR: (Instant, u64) = (Instant::now(), nanos(read(libc::CLOCK_MONOTONIC_COARSE)));
    /// A precise instant and the wall-clock time at about the same moment (see `wall_at`).
    static WALL: Cell<(Instant, SystemTime)> = Cell::new((Instant::now(), SystemTime::now()));
}

/// Now, to within the coarse clock's lag either way.
pub fn coarse_now() -> Instant {
    ANCHOR.with(|&(at, nanos0)| at + Duration::from_nanos(nanos(read(libc::CLOCK_MONOTONIC_COARSE)).saturating_sub(nanos0)))
}

/// The wall-clock time, to within the coarse clock's lag (for windows that count minutes and
/// days).
pub fn coarse_wall() -> SystemTime {
    let ts = read(libc::CLOCK_REALTIME_COARSE);
    if ts.tv_sec <= 0 {
        return SystemTime::now();
    }
    SystemTime::UNIX_EPOCH + Duration::new(ts.tv_sec as u64, ts.tv_nsec.clamp(0, 999_999_999) as u32)
}

/// How long a wall-clock anchor serves before it is taken again: a step of the system clock
/// (or a slew, at most 0.5 ms a second) shows in `wall_at` within this long.
const WALL_ANCHOR_FOR: Duration = Duration::from_secs(1);

/// The wall-clock time of `at`, an instant read a moment ago: the anchor's wall-clock time
/// moved by the monotonic distance to it, so a precise reading already taken also dates the
/// log line, without a second precise read of the real-time clock.
pub fn wall_at(at: Instant) -> SystemTime {
    WALL.with(|anchor| {
        // `at` was read just before the call, after any anchor this thread took: one
        // subtraction. Anything else (an old anchor, an instant from before it) takes a new one.
        let (i, wall) = anchor.get();
        if let Some(w) = at.checked_duration_since(i).filter(|d| *d < WALL_ANCHOR_FOR).and_then(|d| wall.checked_add(d)) {
            return w;
        }
        let (i, wall) = (Instant::now(), SystemTime::now());
        anchor.set((i, wall));
        shift(wall, i, at).unwrap_or(wall)
    })
}

/// The wall-clock time at `to`, given that it was `wall` at `from`.
fn shift(wall: SystemTime, from: Instant, to: Instant) -> Option<SystemTime> {
    match to.checked_duration_since(from) {
        Some(later) => wall.checked_add(later),
        None => wall.checked_sub(from - to),
    }
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

    #[test]
    fn coarse_wall_time_follows_the_system_clock() {
        let precise = SystemTime::now();
        let coarse = coarse_wall();
        let off = precise.duration_since(coarse).unwrap_or_else(|e| e.duration());
        assert!(off < Duration::from_millis(50), "coarse wall clock is {off:?} away");
    }

    #[test]
    fn wall_time_of_an_instant_matches_the_system_clock() {
        // Fresh anchors and old ones (re-anchored past a second), instants just read and ones
        // read a little earlier.
        for pause_ms in [0u64, 30, 1_100] {
            std::thread::sleep(Duration::from_millis(pause_ms));
            let at = Instant::now();
            let wall = SystemTime::now();
            let derived = wall_at(at);
            let off = wall.duration_since(derived).unwrap_or_else(|e| e.duration());
            assert!(off < Duration::from_millis(2), "wall_at is {off:?} away after a {pause_ms} ms pause");
            let earlier = at.checked_sub(Duration::from_millis(250)).unwrap_or(at);
            let gap = derived.duration_since(wall_at(earlier)).unwrap_or_default();
            assert!(gap.abs_diff(at - earlier) < Duration::from_millis(1), "{gap:?} between instants {:?} apart", at - earlier);
        }
    }
}
