//! Background threads that share a core with the data plane (the telemetry thread, the state
//! store's writer) give it back now and then, and the scheduler is asked to run the data plane
//! first, so that a burst of their work does not hold up requests that arrive meanwhile.

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

/// Slices for the kernel's EEVDF scheduler (Linux 6.6 and later), which picks, among the
/// threads that are due CPU time, the one whose slice ends first, and lets a running thread
/// finish its slice before a waking one takes the core (by default 0.7 ms × (1 + log2 CPUs):
/// 1.4 ms on two cores). A data-plane thread woken by a request therefore waited behind a
/// background thread's SQLite commit, which `Courtesy` cannot cut, for up to that long. Custom
/// slices (Linux 6.12 and later; older kernels ignore them) put the data plane first: a waking
/// data-plane thread with a slice shorter than the running thread's takes the core at once.
/// Slices change who goes first, not how much CPU each thread gets over time, so the background
/// threads still keep up at full load (a lower priority would starve them there).
///
/// Measured with `perf sched` on one core at 15,000 requests/s: times in 8 s the data-plane
/// thread waited over 0.2 ms to run after being woken, behind the two background threads, fell
/// from 29 to 6 with these slices set from outside, and from 38 and 41 to 20 and 19 with them
/// built in (bench/results/profile.md).
const DATA_PLANE_SLICE_NS: u64 = 100_000;
/// See [`DATA_PLANE_SLICE_NS`].
const BACKGROUND_SLICE_NS: u64 = 10_000_000;

/// Gives the calling background thread (telemetry, the state store's writer) a long slice, so
/// that the data plane goes first. Best effort: on failure the default stays.
pub fn background_thread() {
    set_slice(BACKGROUND_SLICE_NS);
}

/// Gives the calling data-plane thread a short slice, once per thread: called for every new
/// connection, it costs one thread-local read after the first.
pub fn data_plane_thread() {
    thread_local! {
        static DONE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if !DONE.replace(true) {
        set_slice(DATA_PLANE_SLICE_NS);
    }
}

fn set_slice(ns: u64) {
    #[cfg(target_os = "linux")]
    if let Err(e) = linux::set_own_slice(ns) {
        tracing::debug!(error = %e, "could not set this thread's scheduler slice");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = ns;
}

#[cfg(target_os = "linux")]
mod linux {
    /// `struct sched_attr` of sched_setattr(2), its first version (48 bytes) with the
    /// utilization-clamp fields of the second (56), which the kernel accepts from 5.3.
    #[repr(C)]
    #[derive(Default)]
    struct SchedAttr {
        size: u32,
        policy: u32,
        flags: u64,
        nice: i32,
        priority: u32,
        runtime: u64,
        deadline: u64,
        period: u64,
        util_min: u32,
        util_max: u32,
    }

    const SIZE: u32 = std::mem::size_of::<SchedAttr>() as u32;

    fn own_attr() -> std::io::Result<SchedAttr> {
        let mut attr = SchedAttr::default();
        // SAFETY: sched_getattr writes at most `SIZE` bytes into `attr`, a valid, writable
        // `SchedAttr` of that size; pid 0 is the calling thread.
        if unsafe { libc::syscall(libc::SYS_sched_getattr, 0, &mut attr as *mut SchedAttr, SIZE, 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(attr)
    }

    /// The calling thread's slice in ns as the kernel reports it (its default slice when none
    /// was set; 0 from kernels without slices).
    #[cfg(test)]
    pub(super) fn own_slice() -> std::io::Result<u64> {
        own_attr().map(|a| a.runtime)
    }

    /// Sets the calling thread's custom slice, keeping its policy and nice value; leaves
    /// real-time and deadline threads alone.
    pub(super) fn set_own_slice(ns: u64) -> std::io::Result<()> {
        let mut attr = own_attr()?;
        if !matches!(attr.policy as i32, libc::SCHED_OTHER | libc::SCHED_BATCH) {
            return Ok(());
        }
        attr.size = SIZE;
        attr.flags = 0;
        attr.runtime = ns;
        // SAFETY: sched_setattr only reads `attr`, a valid `SchedAttr` whose `size` field is
        // its size; pid 0 is the calling thread.
        if unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Kernels from 6.12 on report a custom slice back; older ones accept and ignore it.
    fn kernel_has_custom_slices() -> bool {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut parts = release.trim().split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        (major, minor) >= (6, 12)
    }

    fn slice_after(f: fn()) -> u64 {
        std::thread::spawn(move || {
            f();
            linux::own_slice().expect("sched_getattr")
        })
        .join()
        .expect("thread")
    }

    #[test]
    fn data_plane_threads_get_short_slices_background_threads_long_ones_others_keep_theirs() {
        let untouched = slice_after(|| {});
        let data_plane = slice_after(|| {
            data_plane_thread();
            data_plane_thread();
        });
        let background = slice_after(background_thread);
        assert_eq!(slice_after(|| {}), untouched, "another thread's slice changed");
        if kernel_has_custom_slices() {
            assert_eq!((data_plane, background), (DATA_PLANE_SLICE_NS, BACKGROUND_SLICE_NS));
        } else {
            eprintln!("kernel without custom slices: only checked that the calls are harmless");
        }
    }
}
