//! Percentiles of the recorded requests and the JSON the generator prints.

/// Nearest-rank percentile of sorted `values` (the rule oha and bench/run use).
pub fn nearest_rank(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((q * (sorted.len() - 1) as f64) as usize).min(sorted.len() - 1)]
}

/// `{"p50": .., ...}` over sorted values, with mean, min and max; numbers in ms with µs digits.
pub fn summary_json(sorted: &[f64], quantiles: &[(&str, f64)]) -> String {
    if sorted.is_empty() {
        return "null".into();
    }
    let mean = sorted.iter().sum::<f64>() / sorted.len() as f64;
    let mut parts: Vec<String> = quantiles.iter().map(|(name, q)| format!("\"{name}\": {:.4}", nearest_rank(sorted, *q))).collect();
    parts.push(format!("\"mean\": {mean:.4}"));
    parts.push(format!("\"min\": {:.4}", sorted[0]));
    parts.push(format!("\"max\": {:.4}", sorted[sorted.len() - 1]));
    format!("{{{}}}", parts.join(", "))
}

/// A JSON string literal (the only free text printed is error messages).
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_picks_an_observed_value() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(nearest_rank(&v, 0.5), 50.0);
        assert_eq!(nearest_rank(&v, 0.99), 99.0);
        assert_eq!(nearest_rank(&v, 1.0), 100.0);
        assert!(nearest_rank(&[], 0.5).is_nan());
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
