//! Running the simulation and reporting what it found.

use std::fmt;

use crate::engine::{self, CHUNK, Mode, Tally};
use crate::params::{HOURS_PER_YEAR, Model, Params, SimError};
use crate::stats::{Z95, wilson};

/// Trials of the plain pass that [`run`] and [`run_importance`] always make first: it
/// measures repair statistics and tells [`run`] whether plain sampling sees losses often
/// enough. Whole chunks, so it is a prefix of what [`run_plain`] runs with the same seed.
pub const PILOT_TRIALS: u64 = 8 * CHUNK;

/// [`run`] keeps plain sampling when the full run is expected to see at least this many
/// losses (relative standard error about 5% or better); otherwise it switches to
/// importance sampling, which is usually more precise per trial but rests on its weights
/// being well behaved.
pub const MIN_PLAIN_LOSSES: u64 = 400;

/// How the loss probability was estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Plain Monte Carlo: the fraction of trials that lost their stripe; Wilson interval.
    Plain,
    /// Importance sampling: the mean likelihood-ratio weight of losses; normal interval
    /// from the sample variance of the weights.
    ImportanceSampling,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Plain => "plain Monte Carlo",
            Self::ImportanceSampling => "importance sampling",
        })
    }
}

/// A probability estimate with its 95% confidence interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// The point estimate.
    pub value: f64,
    /// Lower end of the 95% confidence interval.
    pub low: f64,
    /// Upper end of the 95% confidence interval.
    pub high: f64,
    /// Standard error of `value` (for plain sampling the binomial one, `sqrt(p(1-p)/N)`).
    pub std_error: f64,
}

impl Estimate {
    /// `std_error / value`; infinite when `value` is 0.
    pub fn relative_error(&self) -> f64 {
        if self.value > 0.0 {
            self.std_error / self.value
        } else {
            f64::INFINITY
        }
    }

    /// The probability of loss within one year at the same average hazard, for an
    /// estimate of the probability of loss within `years`: `1 - (1 - p)^(1/years)`, an
    /// increasing map applied to the value and the interval ends (the standard error
    /// through its slope).
    fn annualized(&self, years: f64) -> Self {
        let f = |p: f64| {
            if p >= 1.0 {
                1.0
            } else {
                -((-p).ln_1p() / years).exp_m1()
            }
        };
        let slope = if self.value < 1.0 {
            ((1.0 / years - 1.0) * (-self.value).ln_1p()).exp() / years
        } else {
            0.0
        };
        Self {
            value: f(self.value),
            low: f(self.low),
            high: f(self.high),
            std_error: self.std_error * slope,
        }
    }
}

/// What a simulation run found.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The parameters, with the repair threshold resolved (always `Some`).
    pub params: Params,
    /// How `loss_within_horizon` was estimated: always [`Method::Plain`] when one domain
    /// loss can take several pieces of a stripe ([`Params::domain_losses_correlated`]).
    pub method: Method,
    /// Trials behind the loss estimate.
    pub trials: u64,
    /// Trials that ended in loss, under the sampling law (biased for importance
    /// sampling, so not a frequency of the real system).
    pub sampled_losses: u64,
    /// Probability that a stripe, stored at full health at time 0, is lost within
    /// `params.years`.
    pub loss_within_horizon: Estimate,
    /// The same as an annual probability, `1 - (1 - p)^(1/years)`: the chance of loss in
    /// one year at the horizon's average hazard. For small `p` about `p / years`.
    pub loss_per_year: Estimate,
    /// Stripe-years simulated for the loss estimate (each trial until loss or horizon).
    pub stripe_years: f64,
    /// The same in node-days: `stripe_years * 365.25 * n`, the days of piece-holding
    /// simulated.
    pub node_days: f64,
    /// Trials of the plain pass (all trials for [`Method::Plain`], the pilot otherwise).
    pub plain_trials: u64,
    /// Losses the plain pass saw.
    pub plain_losses: u64,
    /// Mean repairs (completed) per stripe-year, from the plain pass.
    pub repairs_per_stripe_year: f64,
    /// Mean pieces rebuilt per stripe-year, from the plain pass.
    pub pieces_repaired_per_stripe_year: f64,
    /// Repair I/O per node per day, bytes: each repair reads `k` pieces from surviving
    /// holders and writes each rebuilt piece to a new holder; every piece transferred is
    /// counted once, at the node that serves or receives it, and the total is spread over
    /// all nodes. With every node storing `stored_tib_per_node` this is
    /// `stored_bytes / n * (k * repairs + pieces rebuilt) per stripe-day`, independent of
    /// piece size and node count.
    pub repair_bytes_per_node_day: f64,
    /// The same in pieces of `piece_mib`.
    pub repair_pieces_per_node_day: f64,
    /// Repair I/O of the whole network per day, bytes: `nodes` times the per-node figure.
    pub repair_bytes_network_day: f64,
}

const TIB: f64 = (1u64 << 40) as f64;
const MIB: f64 = (1u64 << 20) as f64;

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

fn plain_estimate(tally: &Tally) -> Estimate {
    let n = tally.trials as f64;
    let p = tally.losses as f64 / n;
    let (low, high) = wilson(tally.losses, tally.trials);
    Estimate {
        value: p,
        low: low.min(p),
        high: high.max(p),
        std_error: (p * (1.0 - p) / n).sqrt(),
    }
}

fn importance_estimate(tally: &Tally) -> Estimate {
    let (value, std_error) = tally.weights.mean_and_std_error(tally.trials);
    Estimate {
        value,
        low: (value - Z95 * std_error).max(0.0),
        // A weighted mean can exceed 1 in a tiny run; the interval still holds it.
        high: (value + Z95 * std_error).min(1.0).max(value),
        std_error,
    }
}

fn build(params: &Params, model: &Model, method: Method, est: &Tally, plain: &Tally) -> Report {
    let loss = match method {
        Method::Plain => plain_estimate(est),
        Method::ImportanceSampling => importance_estimate(est),
    };
    let per_year = loss.annualized(params.years);
    let n = f64::from(model.n);
    let stripe_years = est.hours / HOURS_PER_YEAR;
    let plain_years = plain.hours / HOURS_PER_YEAR;
    let repairs = plain.repairs as f64 / plain_years;
    let pieces = plain.pieces as f64 / plain_years;
    let stored = params.stored_tib_per_node * TIB;
    let piece_transfers_per_stripe_day = (f64::from(model.k) * repairs + pieces) / 365.25;
    let bytes = stored / n * piece_transfers_per_stripe_day;
    Report {
        params: Params {
            threshold: u16::try_from(model.threshold).ok(),
            ..params.clone()
        },
        method,
        trials: est.trials,
        sampled_losses: est.losses,
        loss_within_horizon: loss,
        loss_per_year: per_year,
        stripe_years,
        node_days: stripe_years * 365.25 * n,
        plain_trials: plain.trials,
        plain_losses: plain.losses,
        repairs_per_stripe_year: repairs,
        pieces_repaired_per_stripe_year: pieces,
        repair_bytes_per_node_day: bytes,
        repair_pieces_per_node_day: bytes / (params.piece_mib * MIB),
        repair_bytes_network_day: bytes * f64::from(params.nodes),
    }
}

/// The plain pilot: the first [`PILOT_TRIALS`] trials (or all, if fewer) of the plain run.
fn pilot(model: &Model, params: &Params, threads: usize) -> Tally {
    let chunks = engine::chunks_for(params.trials.min(PILOT_TRIALS));
    let mut plain = Tally::default();
    let (seed, total) = (params.seed, params.trials);
    engine::simulate(
        model,
        Mode::Plain,
        seed,
        0..chunks,
        total,
        threads,
        &mut plain,
    );
    plain
}

pub(crate) fn run_with(params: &Params, threads: usize) -> Result<Report, SimError> {
    let model = params.model()?;
    let mut plain = pilot(&model, params, threads);
    let expected = plain.losses as f64 * params.trials as f64 / plain.trials as f64;
    if expected >= MIN_PLAIN_LOSSES as f64 || model.shared.is_some() {
        // Continue the plain run where the pilot stopped: the same as `run_plain`.
        let (done, all) = (
            engine::chunks_for(plain.trials),
            engine::chunks_for(params.trials),
        );
        let (seed, total) = (params.seed, params.trials);
        engine::simulate(
            &model,
            Mode::Plain,
            seed,
            done..all,
            total,
            threads,
            &mut plain,
        );
        Ok(build(params, &model, Method::Plain, &plain, &plain))
    } else {
        let is = importance(&model, params, threads);
        let method = Method::ImportanceSampling;
        Ok(build(params, &model, method, &is, &plain))
    }
}

fn importance(model: &Model, params: &Params, threads: usize) -> Tally {
    let chunks = engine::chunks_for(params.trials);
    let mut is = Tally::default();
    let (seed, total) = (params.seed, params.trials);
    engine::simulate(
        model,
        Mode::Importance,
        seed,
        0..chunks,
        total,
        threads,
        &mut is,
    );
    is
}

/// Estimates the loss probability and repair load, choosing the method: a plain pilot of
/// [`PILOT_TRIALS`] trials (or `trials`, if fewer) runs first; if at that rate the full run
/// would see at least [`MIN_PLAIN_LOSSES`] losses the plain run continues to `trials`
/// (the result is then exactly [`run_plain`]'s), otherwise `trials` importance-sampled
/// trials estimate the loss probability (exactly [`run_importance`]'s result). Repair
/// statistics come from the plain trials either way. When one domain loss can take
/// several pieces of a stripe ([`Params::domain_losses_correlated`]) the run is plain
/// whatever the pilot saw.
pub fn run(params: &Params) -> Result<Report, SimError> {
    run_with(params, threads())
}

/// Plain Monte Carlo with `trials` trials: unbiased and simple, but blind to losses much
/// rarer than `1 / trials`.
pub fn run_plain(params: &Params) -> Result<Report, SimError> {
    let model = params.model()?;
    let all = engine::chunks_for(params.trials);
    let mut tally = Tally::default();
    let (seed, total) = (params.seed, params.trials);
    engine::simulate(
        &model,
        Mode::Plain,
        seed,
        0..all,
        total,
        threads(),
        &mut tally,
    );
    Ok(build(params, &model, Method::Plain, &tally, &tally))
}

/// Importance sampling with `trials` trials for the loss probability; repair statistics
/// from a plain pilot of [`PILOT_TRIALS`] trials (or `trials`, if fewer).
///
/// Importance sampling assumes that pieces fail one at a time. When one domain loss can
/// take several pieces of a stripe ([`Params::domain_losses_correlated`]) this falls back
/// to [`run_plain`] (same result, [`Method::Plain`]; the report says why).
pub fn run_importance(params: &Params) -> Result<Report, SimError> {
    let model = params.model()?;
    if model.shared.is_some() {
        return run_plain(params);
    }
    let threads = threads();
    let plain = pilot(&model, params, threads);
    let is = importance(&model, params, threads);
    let method = Method::ImportanceSampling;
    Ok(build(params, &model, method, &is, &plain))
}

/// Runs [`run`] for each `(k, m)` in `codes` under `base`'s churn, horizon, trials and
/// seed, each with its default repair threshold (`base.threshold` is ignored: a threshold
/// is specific to a code).
pub fn compare_codes(base: &Params, codes: &[(u16, u16)]) -> Result<Vec<Report>, SimError> {
    codes
        .iter()
        .map(|&(k, m)| {
            run(&Params {
                k,
                m,
                threshold: None,
                ..base.clone()
            })
        })
        .collect()
}

/// A markdown table of reports, one row each: code, storage overhead `n/k`, repair
/// threshold, annual loss probability with its 95% interval, method, repairs per
/// stripe-year and repair I/O per node per day; and, if any report has failure domains
/// set, a last column with them (count, domain MTTF, placement "spread" or "random").
pub fn markdown_table(reports: &[Report]) -> String {
    let with_domains = reports.iter().any(|r| r.params.domains_on());
    let mut out = String::from(
        "| k+m | overhead n/k | repair below | P(loss) per stripe-year [95% CI] | method \
         | repairs per stripe-year | repair I/O per node per day |",
    );
    out.push_str(if with_domains {
        " failure domains |\n|---|---|---|---|---|---|---|---|\n"
    } else {
        "\n|---|---|---|---|---|---|---|\n"
    });
    for r in reports {
        let p = &r.params;
        let y = &r.loss_per_year;
        let domains = if with_domains {
            format!(" {} |", domains_cell(p))
        } else {
            String::new()
        };
        out.push_str(&format!(
            "| {}+{} | {:.2} | {} | {} [{} – {}] | {} | {} | {} |{domains}\n",
            p.k,
            p.m,
            f64::from(p.n()) / f64::from(p.k),
            p.effective_threshold(),
            num(y.value),
            num(y.low),
            num(y.high),
            match r.method {
                Method::Plain => "plain",
                Method::ImportanceSampling => "IS",
            },
            num(r.repairs_per_stripe_year),
            bytes(r.repair_bytes_per_node_day),
        ));
    }
    out
}

/// A number in 3 significant digits, in scientific notation when far from 1.
fn num(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else if !x.is_finite() {
        format!("{x}")
    } else if (0.01..10_000.0).contains(&x.abs()) {
        let digits = 2 - x.abs().log10().floor() as i32;
        format!("{x:.*}", digits.max(0) as usize)
    } else {
        format!("{x:.2e}")
    }
}

/// Bytes in binary units.
fn bytes(b: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    format!("{} {}", num(v), UNITS[i])
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.params;
        let n = p.n();
        writeln!(
            f,
            "code {}+{} (n = {n}, overhead {:.2}x), repair below {} healthy pieces; {} nodes, \
             node MTTF {} days, audits every {} h, repairs take {} h; horizon {} years",
            p.k,
            p.m,
            f64::from(n) / f64::from(p.k),
            p.effective_threshold(),
            p.nodes,
            num(p.node_mttf_days),
            num(p.audit_hours),
            num(p.repair_hours),
            num(p.years),
        )?;
        if p.domains_on() {
            writeln!(f, "{}", domains_line(p))?;
        }
        let h = &self.loss_within_horizon;
        writeln!(
            f,
            "P(stripe lost within {} years): {} (95% CI {} .. {}, relative std. error {}) \
             by {}{} over {} trials ({} sampled losses)",
            num(p.years),
            num(h.value),
            num(h.low),
            num(h.high),
            pct(h.relative_error()),
            self.method,
            if p.domain_losses_correlated() {
                " (importance sampling is off: one domain loss can take several pieces)"
            } else {
                ""
            },
            self.trials,
            self.sampled_losses,
        )?;
        let y = &self.loss_per_year;
        writeln!(
            f,
            "P(stripe lost per year): {} (95% CI {} .. {})",
            num(y.value),
            num(y.low),
            num(y.high),
        )?;
        writeln!(
            f,
            "simulated {} stripe-years ({} node-days); plain pass: {} losses in {} trials",
            num(self.stripe_years),
            num(self.node_days),
            self.plain_losses,
            self.plain_trials,
        )?;
        write!(
            f,
            "repair: {} repairs and {} pieces rebuilt per stripe-year; {} of repair I/O per \
             node per day ({} pieces of {} MiB, with {} TiB stored per node), {} per day \
             network-wide",
            num(self.repairs_per_stripe_year),
            num(self.pieces_repaired_per_stripe_year),
            bytes(self.repair_bytes_per_node_day),
            num(self.repair_pieces_per_node_day),
            num(p.piece_mib),
            num(p.stored_tib_per_node),
            bytes(self.repair_bytes_network_day),
        )
    }
}

/// The failure-domain parameters in words, for the report.
fn domains_line(p: &Params) -> String {
    let domains = p.effective_domains();
    let (small, large) = (p.nodes / domains, p.nodes % domains);
    let sizes = if p.domains == 0 {
        "every node its own failure domain".to_string()
    } else if large == 0 {
        format!("{domains} failure domains of {small} nodes")
    } else {
        format!("{domains} failure domains of {small}-{} nodes", small + 1)
    };
    let losses = if p.domain_mttf_days.is_finite() {
        format!(
            "each lost whole every {} days on average",
            num(p.domain_mttf_days)
        )
    } else {
        "never lost whole".to_string()
    };
    let placement = if p.spread_domains {
        "a stripe's pieces in distinct domains"
    } else {
        "a stripe's pieces on random nodes, domains may repeat"
    };
    format!("failure domains: {sizes}, {losses}; {placement}")
}

/// The failure-domain cell of [`markdown_table`].
fn domains_cell(p: &Params) -> String {
    if !p.domains_on() {
        return "none".into();
    }
    let domains = if p.domains == 0 {
        "each node".to_string()
    } else {
        p.domains.to_string()
    };
    let mttf = if p.domain_mttf_days.is_finite() {
        format!("MTTF {} d", num(p.domain_mttf_days))
    } else {
        "never lost".into()
    };
    let placement = if p.spread_domains { "spread" } else { "random" };
    format!("{domains}, {mttf}, {placement}")
}

fn pct(x: f64) -> String {
    if x.is_finite() {
        format!("{}%", num(100.0 * x))
    } else {
        "n/a".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_format_compactly() {
        assert_eq!(num(0.0), "0");
        assert_eq!(num(1234.4), "1234");
        assert_eq!(num(12.345), "12.3");
        assert_eq!(num(0.0123), "0.0123");
        assert_eq!(num(1.9e-3), "1.90e-3");
        assert_eq!(num(2.5e-48), "2.50e-48");
        assert_eq!(bytes(3.0 * (1u64 << 30) as f64), "3.00 GiB");
        assert_eq!(bytes(100.0), "100 B");
    }
}
