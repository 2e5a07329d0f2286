//! The event-driven life of one stripe, plainly or under importance sampling, and the
//! driver that runs many of them over threads. See the crate docs for the model and the
//! estimator; this file is their implementation.

use std::ops::Range;

use crate::params::Model;
use crate::rng::Rng;
use crate::stats::{WeightSum, log_add_exp};

/// Trials per chunk. A chunk is the unit of work given to a thread and has its own random
/// stream, derived from the seed and its index, so results do not depend on the thread
/// count.
pub(crate) const CHUNK: u64 = 2048;

/// How trials are sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The true dynamics; a loss counts 1.
    Plain,
    /// One alarm window per trial biased towards loss; a loss counts its likelihood ratio.
    Importance,
}

impl Mode {
    /// Random streams of the two modes are independent for the same seed.
    fn stream(self) -> u64 {
        match self {
            Self::Plain => 0,
            Self::Importance => 1,
        }
    }
}

/// What a batch of trials saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Tally {
    pub(crate) trials: u64,
    /// Trials that ended in loss (under the sampling measure).
    pub(crate) losses: u64,
    /// Importance sampling: the likelihood ratio of each loss.
    pub(crate) weights: WeightSum,
    /// Simulated stripe time, hours (each trial until its loss or the horizon).
    pub(crate) hours: f64,
    /// Repairs completed.
    pub(crate) repairs: u64,
    /// Pieces rebuilt by them.
    pub(crate) pieces: u64,
}

impl Tally {
    fn merge(&mut self, o: &Self) {
        self.trials += o.trials;
        self.losses += o.losses;
        self.weights.merge(&o.weights);
        self.hours += o.hours;
        self.repairs += o.repairs;
        self.pieces += o.pieces;
    }
}

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
struct Bridge {
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
    fn new(
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
    fn sample(&self, rng: &mut Rng, rate: f64) -> f64 {
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
    fn log_ratio(&self, rate: f64, fires: bool, s: f64) -> f64 {
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
    fn delay(&self, rng: &mut Rng, x: f64, tilt: bool) -> (f64, f64) {
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
fn mean_ratio(log_r: [f64; 2]) -> f64 {
    log_add_exp(log_r[0], log_r[1]) - std::f64::consts::LN_2
}

/// Inserts `x` into `v`, kept in descending order (so the earliest is last).
#[inline]
fn insert_descending(v: &mut Vec<f64>, x: f64) {
    let i = v.partition_point(|&y| y > x);
    v.insert(i, x);
}

/// Simulates one stripe from full health until it is lost or the horizon passes, adding
/// what it saw to `tally`. `pending` is scratch space with capacity for `m + 1` times, so
/// nothing is allocated here.
///
/// With `IS`, one alarm window (the first one opening after a uniform time `u` in the
/// horizon) is biased, and a loss is weighted by `T / (sum_j g_j r_j + (T - s_K))`, the
/// likelihood ratio of the mixture over `u` (see the crate docs).
fn trial<const IS: bool>(model: &Model, rng: &mut Rng, pending: &mut Vec<f64>, tally: &mut Tally) {
    let Model {
        m,
        n,
        threshold,
        alarm,
        lambda,
        repair,
        audit,
        horizon,
        ..
    } = *model;
    pending.clear();
    tally.trials += 1;
    let mut t = 0.0;
    let mut live = n;
    let mut lost = 0u32; // lost pieces, noticed or not
    let mut waiting = 0u32; // noticed, not being repaired
    let mut in_repair = 0u32; // noticed, being repaired
    let mut repair_end = f64::INFINITY; // INFINITY: no repair running

    // Importance sampling: which window to bias, and the running likelihood terms.
    let u = if IS { rng.uniform() * horizon } else { 0.0 };
    let mut in_window = false;
    let mut biased = false;
    let mut chosen = false;
    let mut window_start = 0.0; // s_j of the latest window, s_0 = 0
    let mut window_gap = 0.0; // g_j = s_j - s_{j-1}
    // ln r_j so far, for the unweighted and the weighted bridge; the biased window samples
    // from one of them, picked at random, so r_j is their average.
    let mut window_log_r = [0.0; 2];
    let mut variant = 0;
    let mut log_den = f64::NEG_INFINITY; // ln sum of g_j r_j over closed windows

    loop {
        let next_detection = pending.last().copied().unwrap_or(f64::INFINITY);
        let next_event = next_detection.min(repair_end);
        let span = next_event.min(horizon) - t;
        let rate = f64::from(live) * lambda;

        // Time to the next failure, if it comes before the next scheduled event. The
        // failure clock is redrawn at every event: exact by memorylessness.
        let mut fail_in = f64::INFINITY;
        let mut bridge = None;
        if span > 0.0 {
            if IS && in_window {
                bridge = Bridge::new(model, t, rate, lost, waiting, pending, repair_end);
            }
            let s = match &bridge {
                Some(pair) => {
                    let s = if biased {
                        pair[variant].sample(rng, rate)
                    } else {
                        rng.exp(rate)
                    };
                    let fires = s < span;
                    let s_seen = if fires { s } else { span };
                    for (log_r, b) in window_log_r.iter_mut().zip(pair) {
                        *log_r += b.log_ratio(rate, fires, s_seen);
                    }
                    s
                }
                None => rng.exp(rate),
            };
            if s < span {
                fail_in = s;
            }
        }

        if fail_in.is_finite() {
            t += fail_in;
            live -= 1;
            lost += 1;
            if IS && !in_window && lost >= alarm {
                in_window = true;
                window_gap = t - window_start;
                window_start = t;
                window_log_r = [0.0; 2];
                biased = !chosen && t > u;
                chosen |= biased;
                if biased {
                    variant = usize::from(rng.uniform() < 0.5);
                }
            }
            if lost > m {
                tally.losses += 1;
                tally.hours += t;
                if IS {
                    let den = log_add_exp(
                        log_add_exp(log_den, window_gap.ln() + mean_ratio(window_log_r)),
                        (horizon - window_start).ln(),
                    );
                    tally.weights.add_log(horizon.ln() - den);
                }
                return;
            }
            let delay = match &bridge {
                Some([_, weighted]) => {
                    // Only the weighted bridge tilts delays: the other keeps their true law.
                    let (delay, log_ratio) = weighted.delay(rng, t, biased && variant == 1);
                    window_log_r[1] += log_ratio;
                    delay
                }
                None => audit * rng.uniform(),
            };
            insert_descending(pending, t + delay);
        } else if next_event >= horizon {
            tally.hours += horizon;
            return;
        } else if next_detection <= repair_end {
            t = next_detection;
            pending.pop();
            waiting += 1;
            if !repair_end.is_finite() && n - waiting < threshold {
                in_repair = waiting;
                waiting = 0;
                repair_end = t + repair;
            }
        } else {
            t = repair_end;
            live += in_repair;
            lost -= in_repair;
            tally.repairs += 1;
            tally.pieces += u64::from(in_repair);
            in_repair = 0;
            repair_end = f64::INFINITY;
            if n - waiting < threshold {
                in_repair = waiting;
                waiting = 0;
                repair_end = t + repair;
            }
            if IS && in_window && lost < alarm {
                log_den = log_add_exp(log_den, window_gap.ln() + mean_ratio(window_log_r));
                in_window = false;
                biased = false;
            }
        }
    }
}

/// Runs the trials of chunk `chunk` (trials `chunk * CHUNK ..` up to `total`).
fn run_chunk(model: &Model, mode: Mode, seed: u64, chunk: u64, total: u64) -> Tally {
    let mut rng = Rng::for_chunk(seed, mode.stream(), chunk);
    let mut pending = Vec::with_capacity(model.m as usize + 1);
    let mut tally = Tally::default();
    let count = total.saturating_sub(chunk * CHUNK).min(CHUNK);
    for _ in 0..count {
        match mode {
            Mode::Plain => trial::<false>(model, &mut rng, &mut pending, &mut tally),
            Mode::Importance => trial::<true>(model, &mut rng, &mut pending, &mut tally),
        }
    }
    tally
}

/// The number of chunks that `trials` trials make.
pub(crate) fn chunks_for(trials: u64) -> u64 {
    trials.div_ceil(CHUNK)
}

/// Runs chunks `chunks` of a run of `total` trials on up to `threads` threads and folds
/// their tallies into `acc` in chunk order, so the result is the same for any thread count,
/// and running `a..b` then `b..c` into the same `acc` is the same as running `a..c`.
/// Chunks go out in blocks of a few per thread, so memory stays small for any `total`.
pub(crate) fn simulate(
    model: &Model,
    mode: Mode,
    seed: u64,
    chunks: Range<u64>,
    total: u64,
    threads: usize,
    acc: &mut Tally,
) {
    let threads = threads.max(1);
    let block = 8 * threads as u64;
    let mut results = vec![Tally::default(); block as usize];
    let mut start = chunks.start;
    while start < chunks.end {
        let count = (chunks.end - start).min(block) as usize;
        let results = &mut results[..count];
        if threads == 1 || count == 1 {
            for (i, slot) in results.iter_mut().enumerate() {
                *slot = run_chunk(model, mode, seed, start + i as u64, total);
            }
        } else {
            let per = count.div_ceil(threads);
            std::thread::scope(|s| {
                for (b, part) in results.chunks_mut(per).enumerate() {
                    s.spawn(move || {
                        for (i, slot) in part.iter_mut().enumerate() {
                            let c = start + (b * per + i) as u64;
                            *slot = run_chunk(model, mode, seed, c, total);
                        }
                    });
                }
            });
        }
        for r in results.iter() {
            acc.merge(r);
        }
        start += count as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Params;

    fn model(p: &Params) -> Model {
        p.model().unwrap()
    }

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

    #[test]
    fn insert_keeps_descending_order() {
        let mut v = Vec::with_capacity(8);
        for x in [3.0, 1.0, 4.0, 1.5, 9.0, 2.6] {
            insert_descending(&mut v, x);
        }
        assert_eq!(v, [9.0, 4.0, 3.0, 2.6, 1.5, 1.0]);
    }

    #[test]
    fn results_do_not_depend_on_threads() {
        let p = Params {
            k: 4,
            m: 2,
            node_mttf_days: 60.0,
            ..Params::default()
        };
        let md = model(&p);
        let run = |mode, chunks: Range<u64>, threads, acc: &mut Tally| {
            simulate(&md, mode, 9, chunks, 9000, threads, acc);
        };
        for mode in [Mode::Plain, Mode::Importance] {
            let mut one = Tally::default();
            run(mode, 0..5, 1, &mut one);
            for threads in [2, 3] {
                let mut other = Tally::default();
                run(mode, 0..5, threads, &mut other);
                assert_eq!(one, other);
            }
            assert_eq!(one.trials, 9000);
            // The pilot-then-rest split of `run` gives the same result.
            let mut split = Tally::default();
            run(mode, 0..2, 2, &mut split);
            run(mode, 2..5, 2, &mut split);
            assert_eq!(one, split);
        }
    }

    #[test]
    fn repairs_restore_what_failed() {
        // Every failure is repaired unless the trial ends first: pieces rebuilt per
        // stripe-hour approach the failure rate.
        let p = Params {
            k: 6,
            m: 3,
            node_mttf_days: 100.0,
            repair_hours: 1.0,
            audit_hours: 1.0,
            years: 2.0,
            ..Params::default()
        };
        let md = model(&p);
        let mut t = Tally::default();
        simulate(&md, Mode::Plain, 1, 0..2, 4000, 2, &mut t);
        let per_hour = t.pieces as f64 / t.hours;
        // Repair waits for a second loss (threshold 8 of 9), so a cycle is about two
        // failures, the first at rate 9 lambda, the second at 8 lambda, and a short repair.
        let want = 2.0 * md.lambda / (1.0 / 9.0 + 1.0 / 8.0);
        assert!((per_hour / want - 1.0).abs() < 0.03, "{per_hour} vs {want}");
        // Threshold 8 of 9: a repair every 2 failures, give or take.
        let per_repair = t.pieces as f64 / t.repairs as f64;
        assert!(
            (2.0..2.2).contains(&per_repair),
            "{per_repair} pieces per repair"
        );
    }
}
