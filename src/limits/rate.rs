//! Counting primitives for limits: a sliding one-minute request log (exact: the 11th request of
//! a 10-per-minute client within any 60 seconds is refused), per-second token buckets over a
//! minute, a UTC-day counter, and GCRA for per-address and global rates (exact for a token
//! bucket refilled continuously, O(1) memory per address).

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const MINUTE: Duration = Duration::from_secs(60);

/// Timestamps of the requests admitted in the last minute (at most `limit` are kept).
#[derive(Debug, Default)]
pub struct RequestLog {
    times: VecDeque<Instant>,
}

impl RequestLog {
    /// Admits a request if fewer than `limit` were admitted in the last minute; otherwise says
    /// how long until one may be.
    pub fn admit(&mut self, limit: u32, now: Instant) -> Result<(), Duration> {
        while self.times.front().is_some_and(|t| now.duration_since(*t) >= MINUTE) {
            self.times.pop_front();
        }
        if self.times.len() >= limit as usize {
            let oldest = self.times.front().copied().unwrap_or(now);
            return Err(MINUTE.saturating_sub(now.duration_since(oldest)));
        }
        self.times.push_back(now);
        Ok(())
    }

    pub fn used(&self, now: Instant) -> u32 {
        self.times.iter().filter(|t| now.duration_since(**t) < MINUTE).count() as u32
    }
}

/// Tokens used per second over the last minute.
#[derive(Debug)]
pub struct TokenMinute {
    /// (second, tokens), oldest first.
    seconds: VecDeque<(u64, u64)>,
}

impl Default for TokenMinute {
    fn default() -> Self {
        TokenMinute { seconds: VecDeque::with_capacity(60) }
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl TokenMinute {
    fn prune(&mut self, now_s: u64) {
        while self.seconds.front().is_some_and(|(s, _)| now_s.saturating_sub(*s) >= 60) {
            self.seconds.pop_front();
        }
    }

    pub fn add(&mut self, tokens: u64, now: SystemTime) {
        let s = unix_secs(now);
        self.prune(s);
        match self.seconds.back_mut() {
            Some((last, t)) if *last == s => *t += tokens,
            _ => self.seconds.push_back((s, tokens)),
        }
    }

    pub fn used(&mut self, now: SystemTime) -> u64 {
        self.prune(unix_secs(now));
        self.seconds.iter().map(|(_, t)| t).sum()
    }

    /// Seconds until the tokens used in the last minute fall below `limit`.
    pub fn wait_below(&mut self, limit: u64, now: SystemTime) -> u64 {
        let now_s = unix_secs(now);
        self.prune(now_s);
        let mut sum: u64 = self.seconds.iter().map(|(_, t)| t).sum();
        for (s, t) in &self.seconds {
            if sum < limit {
                break;
            }
            sum -= t;
            if sum < limit {
                return (s + 60).saturating_sub(now_s).max(1);
            }
        }
        1
    }
}

/// Tokens used on the current UTC day.
#[derive(Debug, Default)]
pub struct TokenDay {
    day: u64,
    tokens: u64,
}

/// Days since 1970-01-01 (UTC).
pub fn utc_day(t: SystemTime) -> u64 {
    unix_secs(t) / 86_400
}

/// Seconds until the next UTC midnight.
pub fn secs_to_next_day(t: SystemTime) -> u64 {
    86_400 - unix_secs(t) % 86_400
}

impl TokenDay {
    fn roll(&mut self, now: SystemTime) {
        let d = utc_day(now);
        if d != self.day {
            self.day = d;
            self.tokens = 0;
        }
    }

    pub fn add(&mut self, tokens: u64, now: SystemTime) {
        self.roll(now);
        self.tokens += tokens;
    }

    pub fn used(&mut self, now: SystemTime) -> u64 {
        self.roll(now);
        self.tokens
    }

    /// Sets the count of `day` (restored from the state store at start-up).
    pub fn seed(&mut self, day: u64, tokens: u64) {
        if day >= self.day {
            self.day = day;
            self.tokens = self.tokens.max(tokens);
        }
    }
}

/// The generic cell rate algorithm: `per_minute` requests per minute, with a burst of the same
/// size. Holds one instant.
#[derive(Debug, Clone, Copy)]
pub struct Gcra {
    /// Theoretical arrival time of the next request.
    tat: Instant,
}

impl Gcra {
    pub fn new(now: Instant) -> Self {
        Gcra { tat: now }
    }

    pub fn admit(&mut self, per_minute: u32, now: Instant) -> Result<(), Duration> {
        let interval = MINUTE / per_minute.max(1);
        let burst = MINUTE.saturating_sub(interval);
        let tat = self.tat.max(now);
        let allow_at = tat.checked_sub(burst).unwrap_or(now);
        if now < allow_at {
            return Err(allow_at - now);
        }
        self.tat = tat + interval;
        Ok(())
    }

    /// Whether this state has no effect any more (safe to forget).
    pub fn idle(&self, now: Instant) -> bool {
        self.tat <= now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eleventh_request_of_ten_per_minute_is_refused() {
        let t0 = Instant::now();
        let mut log = RequestLog::default();
        for i in 0..10 {
            assert!(log.admit(10, t0 + Duration::from_secs(i)).is_ok());
        }
        let wait = log.admit(10, t0 + Duration::from_secs(30)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(30), "until the first one leaves the window");
        assert!(log.admit(10, t0 + Duration::from_secs(60)).is_ok());
        assert!(log.admit(10, t0 + Duration::from_secs(60)).is_err());
    }

    #[test]
    fn gcra_allows_the_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut g = Gcra::new(t0);
        for _ in 0..6 {
            assert!(g.admit(6, t0).is_ok());
        }
        let wait = g.admit(6, t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(10));
        assert!(g.admit(6, t0 + Duration::from_secs(10)).is_ok());
        assert!(g.admit(6, t0 + Duration::from_secs(10)).is_err());
    }

    #[test]
    fn token_windows() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut m = TokenMinute::default();
        m.add(50, t0);
        m.add(70, t0 + Duration::from_secs(20));
        assert_eq!(m.used(t0 + Duration::from_secs(30)), 120);
        assert_eq!(m.wait_below(100, t0 + Duration::from_secs(30)), 30, "when the first 50 leave");
        assert_eq!(m.used(t0 + Duration::from_secs(61)), 70);
        let mut d = TokenDay::default();
        d.add(10, t0);
        d.seed(utc_day(t0), 500);
        assert_eq!(d.used(t0), 500);
        assert_eq!(d.used(t0 + Duration::from_secs(86_400)), 0);
    }
}
