//! A fixed log-bucketed latency histogram: mergeable by adding counts, so percentiles can be
//! computed after any filtering and merging of per-minute rows.
//!
//! Bucket `i` holds latencies in `[0.5 ms * 1.2^i, 0.5 ms * 1.2^(i+1))`; the first bucket also
//! takes anything faster and the last anything slower (its lower bound is about 18 minutes, so
//! the range covers 0.5 ms to beyond the 20-minute mark). A percentile is reported as the
//! geometric middle of its bucket, off by at most sqrt(1.2) - 1 = 9.5% inside the range.

/// Number of buckets: 0.5 ms * 1.2^81 is past 20 minutes.
pub(crate) const BUCKETS: usize = 81;
const MIN_MS: f64 = 0.5;
const GROWTH: f64 = 1.2;
/// First byte of an encoded histogram, so that the layout can change later.
const FORMAT: u8 = 1;

#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Histogram {
    counts: [u64; BUCKETS],
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: [0; BUCKETS] }
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nonzero: Vec<(usize, u64)> = self.counts.iter().enumerate().filter(|(_, c)| **c > 0).map(|(i, c)| (i, *c)).collect();
        f.debug_struct("Histogram").field("buckets", &nonzero).finish()
    }
}

fn bucket_of(ms: f64) -> usize {
    if ms.is_nan() || ms <= MIN_MS {
        return 0;
    }
    let i = ((ms / MIN_MS).ln() / GROWTH.ln()) as usize;
    i.min(BUCKETS - 1)
}

/// The value reported for a bucket: its geometric middle.
fn representative(bucket: usize) -> f64 {
    MIN_MS * GROWTH.powf(bucket as f64 + 0.5)
}

impl Histogram {
    /// Usage rows are built with [`SparseHistogram`]; this is for tests.
    #[cfg(test)]
    pub(crate) fn record(&mut self, ms: f64) {
        self.counts[bucket_of(ms)] += 1;
    }

    pub(crate) fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a = a.saturating_add(*b);
        }
    }

    pub(crate) fn count(&self) -> u64 {
        self.counts.iter().fold(0u64, |a, c| a.saturating_add(*c))
    }

    /// The `q` quantile (0.5 for the median) in milliseconds; 0 when empty.
    pub(crate) fn quantile(&self, q: f64) -> f64 {
        let n = self.count();
        if n == 0 {
            return 0.0;
        }
        // The smallest value with at least q*n values at or below it (nearest-rank method).
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            seen = seen.saturating_add(*c);
            if seen >= rank {
                return representative(i);
            }
        }
        representative(BUCKETS - 1)
    }

    /// Compact form for a BLOB column: the format byte, then (bucket, LEB128 count) for every
    /// non-empty bucket. A minute's latencies usually fall in a handful of buckets, so this is
    /// a few dozen bytes rather than 81 * 8.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        out.push(FORMAT);
        for (i, c) in self.counts.iter().enumerate() {
            if *c == 0 {
                continue;
            }
            out.push(i as u8);
            let mut v = *c;
            loop {
                let byte = (v & 0x7f) as u8;
                v >>= 7;
                if v == 0 {
                    out.push(byte);
                    break;
                }
                out.push(byte | 0x80);
            }
        }
        out
    }

    /// Reads [`Histogram::encode`]'s output. Lenient: an unknown format or a damaged entry ends
    /// the decoding with what was read so far, because a stats page should still show the
    /// request counts (kept in their own columns) when one blob is bad.
    pub(crate) fn decode(bytes: &[u8]) -> Histogram {
        let mut h = Histogram::default();
        let Some((&format, mut rest)) = bytes.split_first() else { return h };
        if format != FORMAT {
            return h;
        }
        while let Some((&bucket, tail)) = rest.split_first() {
            let bucket = bucket as usize;
            if bucket >= BUCKETS {
                break;
            }
            let mut v = 0u64;
            let mut shift = 0u32;
            let mut used = 0;
            let mut complete = false;
            for &b in tail {
                used += 1;
                if shift >= 64 {
                    break;
                }
                v |= u64::from(b & 0x7f) << shift;
                shift += 7;
                if b & 0x80 == 0 {
                    complete = true;
                    break;
                }
            }
            if !complete {
                break;
            }
            h.counts[bucket] = h.counts[bucket].saturating_add(v);
            rest = &tail[used..];
        }
        h
    }
}

/// The few buckets that one usage row's requests fall in, for folding many rows in memory:
/// 81 counters each would make a fold of 100,000 rows take 65 MB.
#[derive(Debug, Default, Clone)]
pub(crate) struct SparseHistogram(Vec<(u8, u64)>);

impl SparseHistogram {
    pub(crate) fn record(&mut self, ms: f64) {
        // BUCKETS < 256, so the index fits.
        let bucket = bucket_of(ms) as u8;
        match self.0.iter_mut().find(|(b, _)| *b == bucket) {
            Some((_, c)) => *c = c.saturating_add(1),
            None => self.0.push((bucket, 1)),
        }
    }

    pub(crate) fn merge(&mut self, other: &SparseHistogram) {
        for &(bucket, n) in &other.0 {
            match self.0.iter_mut().find(|(b, _)| *b == bucket) {
                Some((_, c)) => *c = c.saturating_add(n),
                None => self.0.push((bucket, n)),
            }
        }
    }

    pub(crate) fn to_histogram(&self) -> Histogram {
        let mut h = Histogram::default();
        for &(b, c) in &self.0 {
            h.counts[usize::from(b)] = h.counts[usize::from(b)].saturating_add(c);
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_half_a_millisecond_to_twenty_minutes() {
        assert!(MIN_MS * GROWTH.powi(BUCKETS as i32) > 20.0 * 60_000.0);
        assert_eq!(bucket_of(0.0), 0);
        assert_eq!(bucket_of(f64::NAN), 0);
        assert_eq!(bucket_of(-3.0), 0);
        assert_eq!(bucket_of(1e12), BUCKETS - 1);
    }

    #[test]
    fn a_single_value_comes_back_within_ten_percent() {
        let mut v = 0.5;
        while v < 20.0 * 60_000.0 {
            let mut h = Histogram::default();
            h.record(v);
            for q in [0.5, 0.95, 0.99] {
                let got = h.quantile(q);
                let err = (got - v).abs() / v;
                assert!(err <= 0.10, "{v} ms came back as {got} ms ({:.1}% off)", err * 100.0);
            }
            v *= 1.037;
        }
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = Histogram::default();
        // 1..=1000 ms, one each: p50 = 500, p95 = 950, p99 = 990.
        for i in 1..=1000 {
            h.record(i as f64);
        }
        for (q, want) in [(0.5, 500.0), (0.95, 950.0), (0.99, 990.0)] {
            let got = h.quantile(q);
            assert!((got - want).abs() / want <= 0.10, "p{q}: {got} vs {want}");
        }
        assert_eq!(Histogram::default().quantile(0.5), 0.0);
    }

    #[test]
    fn merging_equals_recording_everything_in_one() {
        let mut a = Histogram::default();
        let mut b = Histogram::default();
        let mut all = Histogram::default();
        for i in 0..500 {
            let v = (i as f64) * 3.7;
            if i % 3 == 0 {
                a.record(v)
            } else {
                b.record(v)
            }
            all.record(v);
        }
        a.merge(&b);
        assert_eq!(a, all);
        assert_eq!(a.count(), 500);
    }

    #[test]
    fn a_sparse_histogram_equals_a_full_one() {
        let mut sparse = SparseHistogram::default();
        let mut full = Histogram::default();
        for i in 0..300 {
            let v = f64::from(i % 17) * 11.3;
            sparse.record(v);
            full.record(v);
        }
        assert_eq!(sparse.to_histogram(), full);
        assert!(sparse.0.len() <= 17);
    }

    #[test]
    fn encoding_round_trips_and_tolerates_damage() {
        let mut h = Histogram::default();
        for v in [0.1, 3.0, 3.1, 250.0, 1e9] {
            h.record(v);
        }
        for _ in 0..100_000 {
            h.record(42.0);
        }
        let bytes = h.encode();
        assert!(bytes.len() < 20, "{} bytes", bytes.len());
        assert_eq!(Histogram::decode(&bytes), h);
        assert_eq!(Histogram::decode(&[]), Histogram::default());
        assert_eq!(Histogram::decode(&[9, 1, 1]), Histogram::default());
        // Truncated in the middle of a count: keeps what came before.
        let cut = Histogram::decode(&bytes[..bytes.len() - 2]);
        assert!(cut.count() < h.count());
        // A bucket index out of range stops decoding instead of panicking.
        assert_eq!(Histogram::decode(&[FORMAT, 200, 1]).count(), 0);
        // An overlong varint does not overflow.
        let _ = Histogram::decode(&[FORMAT, 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    }
}
