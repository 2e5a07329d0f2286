//! The change of measure of importance sampling: the bridges that make failures arrive
//! before an alarm window's deadline, and their likelihood ratios. See the crate docs for
//! the estimator; [`crate::engine`] drives it.

use crate::params::Model;
use crate::rng::Rng;
use crate::stats::log_add_exp;

/// The change of measure inside an alarm window, for one inter-event segment starting at
/// `t`.
///
/// The window's deadline `E` is when the repair due now completes: the running repair's
/// end, or else the detection time `D` that will trigger it (the `need`-th earliest pending
/// detection) plus the repair time. A loss needs `d` more failures before `E`. Under the
/// biased law, with probability `1 - eps` the time to the next failure is the first of `d`
/// independent points on `[t, E]` with density proportional to a weight `w` (the
/// conditional law of the failures given that `d` come by `E`, if `w = 1`); with
/// probability `eps` it is the true exponential (a defensive mixture, so that paths the
/// bridge does not favour keep a bounded likelihood ratio).
///
/// There are two bridges. The plain one has `w = 1`. The weighted one accounts for the
/// repair starting early: a piece that fails at `x < D` and is noticed at `x + u < D`
/// starts the repair then, and the window shrinks from `D + R' - x` to `u + R'` (where
/// `R' = E - D`), which the `d' = d - 1` failures still needed after it survive with
/// probability about `phi(u) = ((u + R') / (D - x + R'))^d'`. Its weight is the mean of
/// `phi` over the true (uniform) delay, `w(x) = E[phi]`, 1 from `D` on, and
/// [`Bridge::delay`] draws that piece's detection delay from the true law tilted by `phi`.
/// With many failures needed this concentrates the failures where they do not cut the
/// window short, which the plain bridge does not; with few, the plain bridge does better.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bridge {
    d: f64,
    /// `d - 1`: failures still needed after the next one.
    dp: f64,
    t: f64,
    /// `D`, or `t` for no weighting (the plain bridge; a repair is running; audits are
    /// instant; the horizon comes first).
    trigger: f64,
    audit: f64,
    /// `R' = E - D`.
    rp: f64,
    /// `H(E)`, where `H(x) = ∫_x^D w` (negative past `D`), so `∫_x^y w = H(x) - H(y)`.
    h_end: f64,
    /// `∫_t^E w`.
    mass: f64,
    eps: f64,
    ln_eps: f64,
    ln_1m_eps: f64,
}

impl Bridge {
    /// The two bridges for the current segment, plain and weighted, or `None` to leave the
    /// segment unbiased: no time left, or failures already as likely as the bridge would
    /// make them.
    pub(crate) fn new(
        model: &Model,
        t: f64,
        rate: f64,
        lost: u32,
        waiting: u32,
        pending: &[f64],
        repair_end: f64,
    ) -> Option<[Self; 2]> {
        let (trigger, deadline) = if repair_end.is_finite() {
            (t, repair_end)
        } else {
            let need = model.alarm.checked_sub(waiting).filter(|&x| x > 0)? as usize;
            let detection = pending[pending.len().checked_sub(need)?];
            (detection, detection + model.repair)
        };
        let end = deadline.min(model.horizon);
        let d = f64::from(model.m + 1 - lost);
        if end <= t || rate * (end - t) >= d {
            return None;
        }
        let weighted = model.audit > 0.0 && trigger > t && end > trigger;
        let pair = [
            Self::with(d, t, t, end, model.audit),
            Self::with(d, t, if weighted { trigger } else { t }, end, model.audit),
        ];
        (pair[1].mass > 0.0).then_some(pair)
    }

    /// The bridge for `d` failures on `[t, end]`, weighted before `trigger` (if `> t`).
    fn with(d: f64, t: f64, trigger: f64, end: f64, audit: f64) -> Self {
        let eps = 1.0 / (2.0 * (d + 2.0));
        let mut b = Self {
            d,
            dp: d - 1.0,
            t,
            trigger,
            audit,
            rp: end - trigger,
            h_end: 0.0,
            mass: 0.0,
            eps,
            ln_eps: eps.ln(),
            ln_1m_eps: (-eps).ln_1p(),
        };
        b.h_end = b.h(end);
        b.mass = b.h(t) - b.h_end;
        b
    }

    /// `(R' / (lo + R'))^(d' + 1)`: `phi(0)` times `R' / (lo + R')`.
    fn rho(&self, lo: f64) -> f64 {
        if self.rp > 0.0 {
            ((self.rp / (lo + self.rp)).ln() * (self.dp + 1.0)).exp()
        } else {
            0.0
        }
    }

    /// `w` at `lo = D - x > 0`: `E[phi] = 1 - lo/A + (lo + R') (1 - rho) / (A (d' + 1))`.
    fn cbar(&self, lo: f64) -> f64 {
        let a = self.audit;
        1.0 - lo / a + (lo + self.rp) * (1.0 - self.rho(lo)) / (a * (self.dp + 1.0))
    }

    /// `∫_0^lo cbar`, in closed form.
    fn g(&self, lo: f64) -> f64 {
        let (a, r, dp) = (self.audit, self.rp, self.dp);
        if dp == 0.0 {
            return lo; // cbar = 1
        }
        let s = if r == 0.0 {
            0.0
        } else if dp == 1.0 {
            r * r / (2.0 * a) * (lo / r).ln_1p()
        } else {
            let q = ((r / (lo + r)).ln() * (dp - 1.0)).exp_m1();
            -r * r * q / (a * (dp + 1.0) * (dp - 1.0))
        };
        lo - lo * lo / (2.0 * a) + (lo * lo + 2.0 * lo * r) / (2.0 * a * (dp + 1.0)) - s
    }

    /// `H(x) = ∫_x^D w`.
    fn h(&self, x: f64) -> f64 {
        let z = self.trigger - x;
        if z > 0.0 { self.g(z) } else { z }
    }

    /// The weight `w(x)`.
    fn weight(&self, x: f64) -> f64 {
        let z = self.trigger - x;
        if z > 0.0 { self.cbar(z) } else { 1.0 }
    }

    /// Draws the time to the next failure under the biased law.
    pub(crate) fn sample(&self, rng: &mut Rng, rate: f64) -> f64 {
        if rng.uniform() < self.eps {
            return rng.exp(rate);
        }
        // The first of d points leaves a fraction V^(1/d) of the mass after it.
        let remaining = self.mass * (rng.open01().ln() / self.d).exp();
        // Invert H(x) = H(E) + remaining.
        let h = self.h_end + remaining;
        let x = if h <= 0.0 {
            self.trigger - h
        } else {
            self.trigger - self.g_inverse(h)
        };
        (x - self.t).max(0.0)
    }

    /// The `z` in `[0, A]` with `g(z) = h`, by safeguarded Newton steps (`g` increases, with
    /// slope `cbar` in `(0, 1]`, so `g(z) <= z` and the root is at least `h`).
    fn g_inverse(&self, h: f64) -> f64 {
        let (mut lo, mut hi) = (h.min(self.audit), self.audit);
        let mut z = hi.min(2.0 * h);
        for _ in 0..100 {
            let f = self.g(z) - h;
            if f.abs() <= 1e-14 * h {
                break;
            }
            if f > 0.0 {
                hi = z;
            } else {
                lo = z;
            }
            if hi - lo <= 1e-13 * hi {
                break;
            }
            let next = z - f / self.cbar(z);
            z = if next > lo && next < hi {
                next
            } else {
                0.5 * (lo + hi)
            };
        }
        z
    }

    /// `ln(q / p)` for the segment's outcome: a failure after `s` hours (`fires`) or none
    /// during the segment's `s` hours. `p` is the true exponential law with total rate
    /// `rate`, `q` the mixture this bridge samples from.
    pub(crate) fn log_ratio(&self, rate: f64, fires: bool, s: f64) -> f64 {
        let x = self.t + s;
        let frac = (self.h(x) - self.h_end) / self.mass; // bridge mass left after x
        let log_b = if frac <= 0.0 || frac.is_nan() {
            f64::NEG_INFINITY
        } else if fires {
            let tail = if self.d > 1.0 {
                (self.d - 1.0) * frac.ln()
            } else {
                0.0
            };
            (self.d * self.weight(x) / self.mass).ln() + tail
        } else {
            self.d * frac.ln()
        };
        let log_p = if fires {
            rate.ln() - rate * s
        } else {
            -rate * s
        };
        log_add_exp(self.ln_eps, self.ln_1m_eps + log_b - log_p)
    }

    /// The detection delay of a piece failing at `x` in this segment, and `ln(q / p)` for
    /// it. If `tilt` and the bridge is weighted, with probability `1 - eps` it is drawn
    /// from the uniform law tilted by `phi`, else uniformly on `[0, audit]`, its true law;
    /// the ratio is computed either way (for the windows not biased, too).
    pub(crate) fn delay(&self, rng: &mut Rng, x: f64, tilt: bool) -> (f64, f64) {
        let (a, r, dp) = (self.audit, self.rp, self.dp);
        let lo = self.trigger - x;
        if !(lo > 0.0 && lo < a) || dp == 0.0 {
            return (a * rng.uniform(), 0.0);
        }
        let cbar = self.cbar(lo);
        let u = if tilt && rng.uniform() >= self.eps {
            if rng.uniform() * a * cbar < a - lo {
                lo + (a - lo) * rng.uniform() // phi = 1: noticed after D
            } else {
                // Density proportional to (u + R')^d' on [0, lo).
                let rho = self.rho(lo);
                let v = rho + rng.uniform() * (1.0 - rho);
                ((lo + r) * (v.ln() / (dp + 1.0)).exp() - r).clamp(0.0, lo)
            }
        } else {
            a * rng.uniform()
        };
        let phi = if u >= lo {
            1.0
        } else {
            (((u + r) / (lo + r)).ln() * dp).exp()
        };
        (u, ((1.0 - self.eps) * phi / cbar + self.eps).ln())
    }
}

/// `ln((r_0 + r_1) / 2)` from `ln r_0`, `ln r_1`.
pub(crate) fn mean_ratio(log_r: [f64; 2]) -> f64 {
    log_add_exp(log_r[0], log_r[1]) - std::f64::consts::LN_2
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sample mean and its standard error.
    fn mean_and_error(xs: impl Iterator<Item = f64>) -> (f64, f64) {
        let (mut n, mut s1, mut s2) = (0.0, 0.0, 0.0);
        for x in xs {
            n += 1.0;
            s1 += x;
            s2 += x * x;
        }
        let mean = s1 / n;
        (mean, ((s2 / n - mean * mean) / (n - 1.0)).max(0.0).sqrt())
    }

    fn bridge(d: f64, trigger: f64, audit: f64, end: f64) -> Bridge {
        let weighted = audit > 0.0 && trigger > 0.0 && end > trigger;
        Bridge::with(d, 0.0, if weighted { trigger } else { 0.0 }, end, audit)
    }

    #[test]
    fn weight_integrates_and_inverts() {
        for &(d, trigger, end) in &[
            (1.0, 20.0, 32.0),
            (2.0, 20.0, 32.0),
            (3.0, 20.0, 32.0),
            (26.0, 23.0, 35.0),
            (400.0, 23.0, 35.0),
            (5.0, 10.0, 10.0), // R' = 0
        ] {
            let b = bridge(d, trigger, 24.0, end);
            // g' = cbar, by central differences; cbar in (0, 1]; g^-1(g(z)) = z.
            for z in [0.01, 1.0, 5.0, 12.0, 19.9] {
                let h = 1e-5;
                let slope = (b.g(z + h) - b.g(z - h)) / (2.0 * h);
                let c = b.cbar(z);
                assert!((slope - c).abs() < 1e-6, "d={d} z={z}: {slope} vs {c}");
                assert!(c > 0.0 && c <= 1.0 + 1e-12, "{c}");
                let back = b.g_inverse(b.g(z));
                assert!((back - z).abs() < 1e-9, "d={d} z={z}: {back}");
            }
            // cbar is the mean of phi over a uniform delay.
            let lo = 6.0;
            let steps = 200_000;
            let mean_phi = (0..steps)
                .map(|i| {
                    let u = 24.0 * (f64::from(i) + 0.5) / f64::from(steps);
                    if u >= lo {
                        1.0
                    } else {
                        ((u + b.rp) / (lo + b.rp)).powf(b.dp)
                    }
                })
                .sum::<f64>()
                / f64::from(steps);
            assert!(
                (mean_phi - b.cbar(lo)).abs() < 1e-6,
                "{mean_phi} vs {}",
                b.cbar(lo)
            );
        }
    }

    /// `E_p[q/p] = 1` and `E_q[p/q] = 1` for every segment law: checks `log_ratio` against
    /// `sample`, and both against the exponential law, for firing and censored outcomes.
    #[test]
    fn bridge_ratio_integrates_to_one() {
        let mut rng = Rng::from_seed(3);
        // (d, D, audit, E, rate, span)
        for &(d, trigger, audit, end, rate, span) in &[
            (1.0, 0.0, 0.0, 10.0, 0.01, 4.0),
            (3.0, 0.0, 24.0, 36.0, 0.002, 36.0),
            (26.0, 0.0, 24.0, 30.0, 0.006, 12.0),
            (2.0, 20.0, 24.0, 32.0, 0.003, 32.0),
            (26.0, 23.0, 24.0, 35.0, 0.006, 23.0),
            (4.0, 10.0, 24.0, 8.0, 0.01, 8.0), // horizon before D
        ] {
            let b = bridge(d, trigger, audit, end);
            assert!(b.mass > 0.0, "{b:?}");
            let outcome = |s: f64| {
                let fires = s < span;
                b.log_ratio(rate, fires, if fires { s } else { span })
            };
            let mean_p = mean_and_error((0..100_000).map(|_| outcome(rng.exp(rate)).exp()));
            assert!(
                mean_p.0.is_finite() && (mean_p.0 - 1.0).abs() < 4.0 * mean_p.1 + 1e-3,
                "E_p[q/p] = {mean_p:?}, {b:?}"
            );
            let mean_q =
                mean_and_error((0..100_000).map(|_| (-outcome(b.sample(&mut rng, rate))).exp()));
            assert!(
                (mean_q.0 - 1.0).abs() < 4.0 * mean_q.1 + 1e-3,
                "E_q[p/q] = {mean_q:?}, {b:?}"
            );
            // The bridge (eps aside) fails before the deadline.
            let late = (0..1000)
                .filter(|_| b.sample(&mut rng, rate) >= end)
                .count();
            assert!(
                late < (50.0 + 1300.0 * b.eps) as usize,
                "{late} of 1000 late, {b:?}"
            );
        }
    }

    #[test]
    fn delay_ratio_integrates_to_one() {
        let mut rng = Rng::from_seed(4);
        for d in [2.0, 3.0, 26.0] {
            let b = bridge(d, 20.0, 24.0, 32.0);
            for x in [0.0, 5.0, 19.0] {
                let (mut p_lr, mut q_lr, mut early) = (Vec::new(), Vec::new(), 0.0);
                for _ in 0..100_000 {
                    let (u, lr) = b.delay(&mut rng, x, false);
                    assert!((0.0..24.0).contains(&u));
                    p_lr.push(lr.exp());
                    let (u, lr) = b.delay(&mut rng, x, true);
                    q_lr.push((-lr).exp());
                    if x + u < 20.0 {
                        early += 1.0;
                    }
                }
                for (what, lrs) in [("E_p[q/p]", p_lr), ("E_q[p/q]", q_lr)] {
                    let (mean, se) = mean_and_error(lrs.into_iter());
                    assert!(
                        (mean - 1.0).abs() < 4.0 * se + 1e-3,
                        "{what} = {mean} ± {se}"
                    );
                }
                // Noticed before D: a fraction 1 - (A - lo) / (A cbar) of the tilted law.
                let lo = 20.0 - x;
                let want =
                    b.eps * lo / 24.0 + (1.0 - b.eps) * (1.0 - (24.0 - lo) / (24.0 * b.cbar(lo)));
                assert!(
                    (early / 1e5 - want).abs() < 0.01,
                    "{} vs {want}",
                    early / 1e5
                );
            }
            // No tilt past D.
            assert_eq!(b.delay(&mut rng, 21.0, true).1, 0.0);
        }
        // Nor without audits.
        assert_eq!(
            bridge(3.0, 0.0, 0.0, 5.0).delay(&mut rng, 1.0, true),
            (0.0, 0.0)
        );
    }
}
