//! Accumulators and confidence intervals.

/// The normal quantile for a two-sided 95% interval.
pub(crate) const Z95: f64 = 1.959_963_984_540_054;

/// A sum of non-negative weights and of their squares, kept as `exp(shift) * (s1, s2)` with
/// `shift` the largest log-weight seen, so weights anywhere between 1e-300 and 1e300 add up
/// without under- or overflow.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct WeightSum {
    shift: f64,
    s1: f64,
    s2: f64,
}

impl Default for WeightSum {
    fn default() -> Self {
        Self {
            shift: f64::NEG_INFINITY,
            s1: 0.0,
            s2: 0.0,
        }
    }
}

impl WeightSum {
    fn rescale(&mut self, shift: f64) {
        if shift > self.shift {
            let f = (self.shift - shift).exp();
            self.s1 *= f;
            self.s2 *= f * f;
            self.shift = shift;
        }
    }

    /// Adds the weight `exp(log_weight)`.
    pub(crate) fn add_log(&mut self, log_weight: f64) {
        if log_weight.is_nan() || log_weight == f64::NEG_INFINITY {
            debug_assert!(!log_weight.is_nan(), "NaN log-weight");
            return;
        }
        self.rescale(log_weight);
        let e = (log_weight - self.shift).exp();
        self.s1 += e;
        self.s2 += e * e;
    }

    pub(crate) fn merge(&mut self, other: &Self) {
        if other.s1 == 0.0 {
            return;
        }
        self.rescale(other.shift);
        let f = (other.shift - self.shift).exp();
        self.s1 += other.s1 * f;
        self.s2 += other.s2 * f * f;
    }

    /// The sample mean of `n` weights (those not added count as zero) and its standard
    /// error, from the sample variance.
    pub(crate) fn mean_and_std_error(&self, n: u64) -> (f64, f64) {
        if self.s1 == 0.0 || n == 0 {
            return (0.0, 0.0);
        }
        let nf = n as f64;
        let scale = self.shift.exp();
        let (a, b) = (self.s1 / nf, self.s2 / nf);
        let mean = scale * a;
        if n < 2 {
            return (mean, f64::INFINITY);
        }
        let var = ((b - a * a) * nf / (nf - 1.0)).max(0.0);
        (mean, scale * (var / nf).sqrt())
    }
}

/// The Wilson score interval for `x` successes in `n` Bernoulli trials: sensible also for
/// `x = 0` (then `[0, ~3.84 / n]`) where the normal approximation collapses to a point.
pub(crate) fn wilson(x: u64, n: u64) -> (f64, f64) {
    let (x, n) = (x as f64, n as f64);
    let p = x / n;
    let z2 = Z95 * Z95;
    let denom = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denom;
    let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    let low = if x == 0.0 {
        0.0
    } else {
        (center - half).max(0.0)
    };
    let high = if x == n {
        1.0
    } else {
        (center + half).min(1.0)
    };
    (low, high)
}

/// `log(exp(a) + exp(b))`, exact for infinite arguments.
#[inline]
pub(crate) fn log_add_exp(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY {
        hi
    } else {
        hi + (lo - hi).exp().ln_1p()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_sum_matches_direct_sums() {
        let ws = [0.5, 2.0, 0.0, 1e-3, 7.0];
        let mut acc = WeightSum::default();
        for w in ws {
            acc.add_log(f64::ln(w));
        }
        let n = 8; // three zeros never added
        let (mean, se) = acc.mean_and_std_error(n);
        let direct_mean = ws.iter().sum::<f64>() / 8.0;
        let var = (ws.iter().map(|w| w * w).sum::<f64>() - 8.0 * direct_mean * direct_mean) / 7.0;
        assert!((mean - direct_mean).abs() < 1e-12);
        assert!((se - (var / 8.0).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn weight_sum_handles_extreme_weights_and_merges() {
        let mut a = WeightSum::default();
        let mut b = WeightSum::default();
        a.add_log(-700.0);
        b.add_log(-690.0);
        b.add_log(-1400.0);
        let mut ab = a;
        ab.merge(&b);
        let mut ba = b;
        ba.merge(&a);
        let (m1, _) = ab.mean_and_std_error(3);
        let (m2, _) = ba.mean_and_std_error(3);
        let want = ((-700f64).exp() + (-690f64).exp()) / 3.0;
        assert!((m1 / want - 1.0).abs() < 1e-12 && (m2 / want - 1.0).abs() < 1e-12);
        let mut tiny = WeightSum::default();
        tiny.add_log(-1e4); // exp underflows to 0 but must not poison the sums
        assert_eq!(tiny.mean_and_std_error(1).0, 0.0);
        assert_eq!(WeightSum::default().mean_and_std_error(5), (0.0, 0.0));
    }

    #[test]
    fn wilson_interval() {
        let (lo, hi) = wilson(0, 1000);
        assert_eq!(lo, 0.0);
        assert!((hi - 0.00383).abs() < 1e-4, "{hi}");
        let (lo, hi) = wilson(500, 1000);
        assert!(
            (lo - 0.469).abs() < 1e-3 && (hi - 0.531).abs() < 1e-3,
            "{lo} {hi}"
        );
        let (lo, hi) = wilson(1000, 1000);
        assert!(lo > 0.99 && hi == 1.0);
    }

    #[test]
    fn log_add_exp_is_exact_at_the_edges() {
        assert_eq!(log_add_exp(f64::NEG_INFINITY, 1.0), 1.0);
        assert_eq!(log_add_exp(1.0, f64::NEG_INFINITY), 1.0);
        assert!((log_add_exp(0.0, 0.0) - 2f64.ln()).abs() < 1e-15);
        assert!((log_add_exp(1000.0, 1000.0) - (1000.0 + 2f64.ln())).abs() < 1e-12);
    }
}
