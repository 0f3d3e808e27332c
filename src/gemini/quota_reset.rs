//! When Gemini's daily quotas reset: midnight in America/Los_Angeles. Computed from the US
//! daylight-saving rules (since 2007: second Sunday of March to first Sunday of November, at
//! 02:00 local) rather than a time-zone database, which would be a heavy dependency for one zone.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const DAY: i64 = 86_400;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day number.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + if m <= 2 { 1 } else { 0 }, m, d)
}

/// Day number of the `n`th Sunday (1-based) of a month.
fn nth_sunday(y: i64, m: u32, n: i64) -> i64 {
    let first = days_from_civil(y, m, 1);
    // 1970-01-01 was a Thursday: weekday 0 = Sunday.
    let weekday = (first + 4).rem_euclid(7);
    first + (7 - weekday) % 7 + 7 * (n - 1)
}

/// Whether local midnight starting day `day` (days since epoch, local calendar) is in DST.
fn midnight_is_dst(day: i64) -> bool {
    let (y, _, _) = civil_from_days(day);
    // At 00:00 on the switch-on Sunday DST has not started yet; on the switch-off Sunday it
    // has not ended yet.
    day > nth_sunday(y, 3, 2) && day <= nth_sunday(y, 11, 1)
}

/// Whether the instant `t` (Unix seconds) is in Pacific daylight time.
fn instant_is_dst(t: i64) -> bool {
    let (y, _, _) = civil_from_days(t.div_euclid(DAY));
    let start = nth_sunday(y, 3, 2) * DAY + 10 * 3600; // 02:00 PST = 10:00 UTC
    let end = nth_sunday(y, 11, 1) * DAY + 9 * 3600; // 02:00 PDT = 09:00 UTC
    t >= start && t < end
}

/// The next midnight in America/Los_Angeles strictly after `now`.
pub fn next_pacific_midnight(now: SystemTime) -> SystemTime {
    let t = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let offset = if instant_is_dst(t) { -7 * 3600 } else { -8 * 3600 };
    let local_day = (t + offset).div_euclid(DAY);
    let next_day = local_day + 1;
    let next_offset = if midnight_is_dst(next_day) { -7 * 3600 } else { -8 * 3600 };
    let utc = next_day * DAY - next_offset;
    UNIX_EPOCH + Duration::from_secs(utc.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i64, m: u32, d: u32, h: i64, min: i64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs((days_from_civil(y, m, d) * DAY + h * 3600 + min * 60) as u64)
    }

    #[test]
    fn civil_round_trip() {
        for z in [-1000, 0, 19_000, 20_500, 30_000] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(nth_sunday(2026, 3, 2), days_from_civil(2026, 3, 8));
        assert_eq!(nth_sunday(2026, 11, 1), days_from_civil(2026, 11, 1));
    }

    #[test]
    fn winter_reset_is_08_utc() {
        // 2026-11-26 14:00 UTC = 06:00 PST; next midnight PST = 2026-11-27 08:00 UTC.
        assert_eq!(next_pacific_midnight(at(2026, 11, 26, 14, 0)), at(2026, 11, 27, 8, 0));
        // 07:59 UTC is still the previous Pacific day (23:59 PST).
        assert_eq!(next_pacific_midnight(at(2026, 11, 27, 7, 59)), at(2026, 11, 27, 8, 0));
    }

    #[test]
    fn summer_reset_is_07_utc() {
        assert_eq!(next_pacific_midnight(at(2026, 7, 1, 12, 0)), at(2026, 7, 2, 7, 0));
    }

    #[test]
    fn around_the_switches() {
        // DST starts 2026-03-08 at 02:00 PST. Midnight of the 8th is still PST (08:00 UTC);
        // midnight of the 9th is PDT (07:00 UTC).
        assert_eq!(next_pacific_midnight(at(2026, 3, 7, 20, 0)), at(2026, 3, 8, 8, 0));
        assert_eq!(next_pacific_midnight(at(2026, 3, 8, 12, 0)), at(2026, 3, 9, 7, 0));
        // DST ends 2026-11-01 at 02:00 PDT. Midnight of Nov 1 is PDT (07:00 UTC); of Nov 2, PST.
        assert_eq!(next_pacific_midnight(at(2026, 10, 31, 20, 0)), at(2026, 11, 1, 7, 0));
        assert_eq!(next_pacific_midnight(at(2026, 11, 1, 12, 0)), at(2026, 11, 2, 8, 0));
    }
}
