//! The order in which the weighted strategy visits keys: each key appears `weight` times,
//! spread evenly (stride scheduling), so a weight-3 key serves every third request rather than
//! three in a row.

/// Total weight beyond which weights are scaled down, to bound the wheel's memory.
const MAX_SLOTS: u64 = 1 << 20;

pub fn build(weights: &[u32]) -> Vec<u32> {
    let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
    let scale = if total > MAX_SLOTS { total as f64 / MAX_SLOTS as f64 } else { 1.0 };
    let mut slots: Vec<(f64, u32)> = Vec::new();
    for (i, w) in weights.iter().enumerate() {
        let w = ((f64::from(*w) / scale).round() as u64).max(1);
        for k in 0..w {
            slots.push(((k as f64 + 0.5) / w as f64, i as u32));
        }
    }
    slots.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    slots.into_iter().map(|(_, i)| i).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn weights_are_respected_and_spread() {
        let w = super::build(&[1, 3]);
        assert_eq!(w.len(), 4);
        assert_eq!(w.iter().filter(|i| **i == 1).count(), 3);
        assert_ne!(&w[..3], &[1, 1, 1], "a heavy key should not take a run of slots");
    }
}
