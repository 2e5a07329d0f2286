//! The event-driven life of one stripe, plainly or under importance sampling, and the
//! driver that runs many of them over threads. See the crate docs for the model and the
//! estimator; this file is their implementation, with the change of measure in
//! [`crate::bridge`] and how pieces fail (alone, or several at once in a failure domain)
//! in [`crate::domains`].

use std::ops::Range;

use crate::bridge::{Bridge, mean_ratio};
use crate::domains::{Failures, Independent, Shared};
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

/// Inserts `x` into `v`, kept in descending order (so the earliest is last).
#[inline]
fn insert_descending(v: &mut Vec<f64>, x: f64) {
    let i = v.partition_point(|&y| y > x);
    v.insert(i, x);
}

/// Simulates one stripe from full health until it is lost or the horizon passes, adding
/// what it saw to `tally`. `pending` is scratch space with capacity for `m + 1` times, so
/// nothing is allocated here. `failures` says how pieces fail: one at a time, or several
/// at once when they share a failure domain.
///
/// With `IS`, one alarm window (the first one opening after a uniform time `u` in the
/// horizon) is biased, and a loss is weighted by `T / (sum_j g_j r_j + (T - s_K))`, the
/// likelihood ratio of the mixture over `u` (see the crate docs). The bridges assume that
/// each failure takes one piece: `IS` only with [`Independent`] failures.
fn trial<const IS: bool, F: Failures>(
    model: &Model,
    failures: &mut F,
    rng: &mut Rng,
    pending: &mut Vec<f64>,
    tally: &mut Tally,
) {
    let Model {
        m,
        n,
        threshold,
        alarm,
        repair,
        audit,
        horizon,
        ..
    } = *model;
    pending.clear();
    tally.trials += 1;
    failures.start(rng);
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
        let rate = failures.rate(live);

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
            let hit = failures.fail(rng, live);
            live -= hit;
            lost += hit;
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
            // The other pieces a domain loss took: each noticed by its own audit.
            for _ in 1..hit {
                insert_descending(pending, t + audit * rng.uniform());
            }
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
            failures.place(rng, in_repair);
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
///
/// # Panics
///
/// With [`Mode::Importance`] when pieces may share failure domains (`model.shared`):
/// importance sampling does not model several pieces failing at once, and the callers in
/// `report` use plain sampling then.
fn run_chunk(model: &Model, mode: Mode, seed: u64, chunk: u64, total: u64) -> Tally {
    let mut rng = Rng::for_chunk(seed, mode.stream(), chunk);
    let mut pending = Vec::with_capacity(model.m as usize + 1);
    let mut tally = Tally::default();
    let count = total.saturating_sub(chunk * CHUNK).min(CHUNK);
    let (rng, pending, tally_ref) = (&mut rng, &mut pending, &mut tally);
    let mut independent = Independent {
        lambda: model.lambda,
    };
    match (mode, &model.shared) {
        (Mode::Plain, None) => {
            for _ in 0..count {
                trial::<false, _>(model, &mut independent, rng, pending, tally_ref);
            }
        }
        (Mode::Importance, None) => {
            for _ in 0..count {
                trial::<true, _>(model, &mut independent, rng, pending, tally_ref);
            }
        }
        (Mode::Plain, Some(shared)) => {
            let mut failures = Shared::new(shared, model.n, model.lambda);
            for _ in 0..count {
                trial::<false, _>(model, &mut failures, rng, pending, tally_ref);
            }
        }
        (Mode::Importance, Some(_)) => {
            panic!("importance sampling with failure domains shared by pieces")
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
