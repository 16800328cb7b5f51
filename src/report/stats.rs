//! Statistics for sweeps: Wilson score intervals and percentiles.

/// z for a two-sided 95 % interval.
const Z95: f64 = 1.959_963_984_540_054;

/// The Wilson score interval (95 %) for `passed` successes out of `runs`: `(low, high)`.
pub fn wilson_95(passed: u64, runs: u64) -> (f64, f64) {
    if runs == 0 {
        return (0.0, 1.0);
    }
    let n = runs as f64;
    let p = passed as f64 / n;
    let z2 = Z95 * Z95;
    let denominator = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denominator;
    let half = Z95 * libm::sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denominator;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Nearest-rank percentile of sorted values (`q` in `[0, 1]`).
pub fn percentile_u64(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 5e-5
    }

    #[test]
    fn wilson_matches_hand_computed_values() {
        // 8 of 10: centre 0.7167, half-width 0.2266 → [0.4902, 0.9433].
        let (low, high) = wilson_95(8, 10);
        assert!(close(low, 0.4902) && close(high, 0.9433), "{low} {high}");
        // All of 100 pass: the interval still admits failures.
        let (low, high) = wilson_95(100, 100);
        assert!(close(low, 0.9630) && high == 1.0, "{low} {high}");
        let (low, high) = wilson_95(0, 20);
        assert!(low == 0.0 && close(high, 0.1611), "{low} {high}");
    }

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<u64> = (1..=200).collect();
        assert_eq!(percentile_u64(&values, 0.5), 100);
        assert_eq!(percentile_u64(&values, 0.95), 190);
        assert_eq!(percentile_u64(&values, 0.99), 198);
        assert_eq!(percentile_u64(&values, 1.0), 200);
        assert_eq!(percentile_u64(&[], 0.5), 0);
    }
}

/// Two-sided p-value of the two-proportion z-test: do `x1/n1` and `x2/n2` differ?
pub fn two_proportion_p_value(x1: u64, n1: u64, x2: u64, n2: u64) -> f64 {
    if n1 == 0 || n2 == 0 {
        return 1.0;
    }
    let (p1, p2) = (x1 as f64 / n1 as f64, x2 as f64 / n2 as f64);
    let pooled = (x1 + x2) as f64 / (n1 + n2) as f64;
    let se = libm::sqrt(pooled * (1.0 - pooled) * (1.0 / n1 as f64 + 1.0 / n2 as f64));
    if se == 0.0 {
        return if p1 == p2 { 1.0 } else { 0.0 };
    }
    let z = (p1 - p2).abs() / se;
    libm::erfc(z / std::f64::consts::SQRT_2)
}

#[cfg(test)]
mod comparison_tests {
    use super::two_proportion_p_value;

    #[test]
    fn two_proportion_test_matches_hand_computed_values() {
        // 45/100 vs 60/100: pooled 0.525, se 0.07062, z 2.124, p 0.0337.
        let p = two_proportion_p_value(45, 100, 60, 100);
        assert!((p - 0.0337).abs() < 5e-4, "{p}");
        assert_eq!(two_proportion_p_value(10, 10, 10, 10), 1.0);
        assert!(two_proportion_p_value(0, 50, 50, 50) < 1e-6);
    }
}
