//! Simulation parameters, their validation, and the model they resolve to.

use thiserror::Error;

/// Hours in a year: a Julian year of 365.25 days.
pub const HOURS_PER_YEAR: f64 = 365.25 * 24.0;

/// The largest expected number of piece failures one stripe-trial may see, `n * years *
/// 365.25 * (1 / node_mttf_days + 1 / domain_mttf_days)`. Beyond it one trial alone would
/// take seconds: refused rather than left to run for hours.
pub const MAX_EXPECTED_FAILURES_PER_TRIAL: f64 = 1e6;

/// What one simulation run models and how long it runs. See the crate docs for the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// Data pieces per stripe: any `k` of the `n = k + m` pieces recover it. At least 1.
    pub k: u16,
    /// Parity pieces per stripe. `k + m` is at most 65535.
    pub m: u16,
    /// Nodes in the network, at least `n`. It scales the network-wide repair traffic; the
    /// per-stripe process depends on it only when pieces may share failure domains (see
    /// [`Params::spread_domains`] and the crate docs).
    pub nodes: u32,
    /// Mean time to permanent failure of a node, days (exponential lifetimes). Positive.
    pub node_mttf_days: f64,
    /// How long one repair takes from start to the rebuilt pieces being stored, hours.
    /// Zero or more.
    pub repair_hours: f64,
    /// Audit period, hours: a lost piece is noticed a uniform time in
    /// `[0, audit_hours]` after its node fails. Zero or more (zero: noticed at once).
    pub audit_hours: f64,
    /// Repair a stripe when fewer than this many of its pieces are healthy (not known to be
    /// lost). `None` for `k + ceil(m/2)`, the storage node's default. Must be in
    /// `k+1 ..= n` when `m > 0` (a threshold of `k` or less could only trigger on a stripe
    /// that is already lost), and `k` when `m = 0` (no repair is possible).
    pub threshold: Option<u16>,
    /// Horizon of one trial, years (365.25 days). Positive.
    pub years: f64,
    /// Number of stripe lifetimes simulated. At least 1.
    pub trials: u64,
    /// Seed: the same parameters and seed give the same report, whatever the machine's
    /// core count.
    pub seed: u64,
    /// Piece size, MiB. Positive. Only converts byte volumes into piece counts.
    pub piece_mib: f64,
    /// Piece data each node stores, TiB (binary). Zero or more. Scales repair traffic.
    pub stored_tib_per_node: f64,
    /// Failure domains (operators, IPv4 /24s, IPv6 /48s) the `nodes` nodes are spread over
    /// evenly: the first `nodes % domains` domains hold `nodes / domains + 1` nodes, the
    /// others `nodes / domains`. At most `nodes`. `0` (the default): every node is its own
    /// domain, the same as `domains = nodes`.
    pub domains: u32,
    /// Mean time between losses of a whole failure domain, days, per domain (exponential):
    /// a domain loss destroys every piece on every node of the domain at once, and its
    /// nodes are replaced by fresh, empty ones. Positive; [`f64::INFINITY`] (the default)
    /// for no domain losses, which leaves the model exactly as without domains.
    pub domain_mttf_days: f64,
    /// Placement: `true` (the default, Cairn's rule) puts the pieces of a stripe in
    /// distinct domains (which needs `domains >= n`), and a rebuilt piece in a domain none
    /// of the stripe's live pieces uses; `false` puts them on distinct nodes chosen at
    /// random, so several may share a domain, and a rebuilt piece on a random node that
    /// holds none of the stripe's live pieces.
    pub spread_domains: bool,
}

impl Default for Params {
    /// Cairn's default code (10 + 4) under heavy churn: 1000 nodes, node MTTF one year,
    /// daily audits, 12-hour repairs, a 1-year horizon, 100 000 trials; no domain losses
    /// (every node its own domain, pieces spread over distinct domains).
    fn default() -> Self {
        Self {
            k: 10,
            m: 4,
            nodes: 1000,
            node_mttf_days: 365.0,
            repair_hours: 12.0,
            audit_hours: 24.0,
            threshold: None,
            years: 1.0,
            trials: 100_000,
            seed: 0,
            piece_mib: 64.0,
            stored_tib_per_node: 1.0,
            domains: 0,
            domain_mttf_days: f64::INFINITY,
            spread_domains: true,
        }
    }
}

/// Parameters a simulation cannot run with.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SimError {
    /// `k` was 0.
    #[error("k (data pieces per stripe) must be at least 1")]
    ZeroK,
    /// `k + m` does not fit the 65535-piece limit.
    #[error("a stripe of {k} + {m} pieces is wider than 65535 pieces")]
    StripeTooWide {
        /// Data pieces.
        k: u16,
        /// Parity pieces.
        m: u16,
    },
    /// Fewer nodes than pieces per stripe: pieces cannot sit on distinct nodes.
    #[error("{nodes} nodes cannot hold the {n} pieces of a stripe on distinct nodes")]
    TooFewNodes {
        /// Nodes.
        nodes: u32,
        /// Pieces per stripe.
        n: u32,
    },
    /// The repair threshold is outside its range.
    #[error("repair threshold {threshold} is outside {min}..={max} for a {k} + {m} code")]
    ThresholdOutOfRange {
        /// The threshold given.
        threshold: u32,
        /// Smallest allowed value.
        min: u32,
        /// Largest allowed value.
        max: u32,
        /// Data pieces.
        k: u16,
        /// Parity pieces.
        m: u16,
    },
    /// A real-valued parameter is NaN, infinite, or out of range.
    #[error("{name} must be {requirement}, got {value}")]
    InvalidNumber {
        /// The parameter's name.
        name: &'static str,
        /// What was given.
        value: f64,
        /// What is required, e.g. "a finite number > 0".
        requirement: &'static str,
    },
    /// `trials` was 0.
    #[error("trials must be at least 1")]
    ZeroTrials,
    /// More failure domains than nodes: some would be empty.
    #[error("{domains} failure domains are more than the {nodes} nodes spread over them")]
    TooManyDomains {
        /// Failure domains.
        domains: u32,
        /// Nodes.
        nodes: u32,
    },
    /// Pieces spread over distinct domains, but fewer domains than pieces per stripe.
    #[error(
        "{domains} failure domains cannot hold the {n} pieces of a stripe in distinct \
         domains: add domains or turn spreading off"
    )]
    TooFewDomains {
        /// Failure domains.
        domains: u32,
        /// Pieces per stripe.
        n: u32,
    },
    /// One trial would see too many failures to simulate event by event.
    #[error(
        "about {expected:.3e} failures per stripe-trial (n * years / MTTF, domain losses \
         included) is more than the limit of {limit:.0e}: shorten the horizon or raise the \
         node or domain MTTF"
    )]
    TooManyEvents {
        /// Expected failures per trial.
        expected: f64,
        /// [`MAX_EXPECTED_FAILURES_PER_TRIAL`].
        limit: f64,
    },
}

/// The validated model, in hours and per-hour rates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Model {
    pub(crate) k: u32,
    pub(crate) m: u32,
    pub(crate) n: u32,
    /// Repair when fewer than this many pieces are healthy (not known lost).
    pub(crate) threshold: u32,
    /// `n - threshold + 1`: the number of lost pieces (known or not) at which, once all are
    /// noticed, a repair is due. Importance sampling biases only while at least this many
    /// pieces are lost (an "alarm window").
    pub(crate) alarm: u32,
    /// Failure rate of one live piece on its own, per hour: its node's failure rate, plus
    /// its domain's loss rate when no other piece of the stripe can share its domain
    /// (then a domain loss is one more independent way to lose that piece). With
    /// `shared`, the node failure rate alone.
    pub(crate) lambda: f64,
    /// Domain losses that can hit several pieces of a stripe at once (random placement,
    /// domains of more than one node, finite domain MTTF): the engine then tracks which
    /// domain each piece is in, and only plain sampling is used.
    pub(crate) shared: Option<SharedDomains>,
    pub(crate) repair: f64,
    pub(crate) audit: f64,
    /// Trial horizon, hours.
    pub(crate) horizon: f64,
}

/// Failure domains pieces may share: `nodes` nodes spread evenly over `domains`, each
/// domain lost at rate `mu`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SharedDomains {
    pub(crate) nodes: u32,
    pub(crate) domains: u32,
    /// Loss rate of one domain, per hour.
    pub(crate) mu: f64,
}

fn check(name: &'static str, value: f64, zero_ok: bool) -> Result<(), SimError> {
    let ok = value.is_finite() && (value > 0.0 || (zero_ok && value == 0.0));
    if ok {
        Ok(())
    } else {
        Err(SimError::InvalidNumber {
            name,
            value,
            requirement: if zero_ok {
                "a finite number >= 0"
            } else {
                "a finite number > 0"
            },
        })
    }
}

impl Params {
    /// Pieces per stripe, `k + m`.
    pub fn n(&self) -> u32 {
        u32::from(self.k) + u32::from(self.m)
    }

    /// The repair threshold in force: [`Params::threshold`] or its default
    /// `k + ceil(m/2)`.
    pub fn effective_threshold(&self) -> u32 {
        self.threshold.map_or_else(
            || u32::from(self.k) + u32::from(self.m).div_ceil(2),
            u32::from,
        )
    }

    /// The failure domains in force: [`Params::domains`], or `nodes` for `0`.
    pub fn effective_domains(&self) -> u32 {
        if self.domains == 0 {
            self.nodes
        } else {
            self.domains
        }
    }

    /// Whether the failure-domain parameters are set at all (domains given, or domain
    /// losses on); the report mentions them only then.
    pub fn domains_on(&self) -> bool {
        self.domains > 0 || self.domain_mttf_days.is_finite()
    }

    /// Whether one domain loss can destroy several pieces of a stripe: domain losses on,
    /// pieces placed at random (not spread), and some domain of more than one node. The
    /// simulator then follows which domain each piece is in and uses plain Monte Carlo
    /// only (importance sampling assumes pieces fail one at a time).
    pub fn domain_losses_correlated(&self) -> bool {
        self.domain_mttf_days.is_finite()
            && self.domain_mttf_days > 0.0
            && !self.spread_domains
            && self.effective_domains() < self.nodes
    }

    /// Checks every parameter; `Ok` means [`crate::run`] and friends will not refuse them.
    pub fn validate(&self) -> Result<(), SimError> {
        self.model().map(|_| ())
    }

    pub(crate) fn model(&self) -> Result<Model, SimError> {
        let (k, m, n) = (u32::from(self.k), u32::from(self.m), self.n());
        if k == 0 {
            return Err(SimError::ZeroK);
        }
        if n > u32::from(u16::MAX) {
            return Err(SimError::StripeTooWide {
                k: self.k,
                m: self.m,
            });
        }
        if self.nodes < n {
            return Err(SimError::TooFewNodes {
                nodes: self.nodes,
                n,
            });
        }
        let threshold = self.effective_threshold();
        let min = if m == 0 { k } else { k + 1 };
        if !(min..=n).contains(&threshold) {
            return Err(SimError::ThresholdOutOfRange {
                threshold,
                min,
                max: n,
                k: self.k,
                m: self.m,
            });
        }
        check("node_mttf_days", self.node_mttf_days, false)?;
        check("repair_hours", self.repair_hours, true)?;
        check("audit_hours", self.audit_hours, true)?;
        check("years", self.years, false)?;
        check("piece_mib", self.piece_mib, false)?;
        check("stored_tib_per_node", self.stored_tib_per_node, true)?;
        if self.trials == 0 {
            return Err(SimError::ZeroTrials);
        }
        let domains = self.effective_domains();
        if domains > self.nodes {
            return Err(SimError::TooManyDomains {
                domains,
                nodes: self.nodes,
            });
        }
        if self.spread_domains && domains < n {
            return Err(SimError::TooFewDomains { domains, n });
        }
        if self.domain_mttf_days.is_nan() || self.domain_mttf_days <= 0.0 {
            return Err(SimError::InvalidNumber {
                name: "domain_mttf_days",
                value: self.domain_mttf_days,
                requirement: "a number > 0 (infinite: no domain losses)",
            });
        }
        let node_lambda = 1.0 / (self.node_mttf_days * 24.0);
        // 0 for an infinite domain MTTF.
        let mu = 1.0 / (self.domain_mttf_days * 24.0);
        let shared = self.domain_losses_correlated().then_some(SharedDomains {
            nodes: self.nodes,
            domains,
            mu,
        });
        // Without domain losses `lambda` is exactly the node failure rate, as before
        // domains existed.
        let lambda = if shared.is_some() || mu == 0.0 {
            node_lambda
        } else {
            node_lambda + mu
        };
        let horizon = self.years * HOURS_PER_YEAR;
        let expected = f64::from(n) * (node_lambda + mu) * horizon;
        // Also catches overflow to infinity (a huge horizon over a tiny MTTF).
        if expected.is_nan()
            || expected > MAX_EXPECTED_FAILURES_PER_TRIAL
            || !node_lambda.is_normal()
        {
            return Err(SimError::TooManyEvents {
                expected,
                limit: MAX_EXPECTED_FAILURES_PER_TRIAL,
            });
        }
        Ok(Model {
            k,
            m,
            n,
            threshold,
            alarm: n - threshold + 1,
            lambda,
            shared,
            repair: self.repair_hours,
            audit: self.audit_hours,
            horizon,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> Params {
        Params {
            trials: 10,
            ..Params::default()
        }
    }

    #[test]
    fn defaults_are_valid_and_resolve() {
        let model = p().model().unwrap();
        assert_eq!((model.k, model.m, model.n), (10, 4, 14));
        assert_eq!(model.threshold, 12);
        assert_eq!(model.alarm, 3);
        let m0 = Params { m: 0, ..p() };
        assert_eq!(m0.model().unwrap().threshold, 10);
        assert_eq!(m0.model().unwrap().alarm, 1);
        let m1 = Params { k: 3, m: 1, ..p() };
        assert_eq!(m1.effective_threshold(), 4);
    }

    #[test]
    fn invalid_parameters_are_errors() {
        let bad = [
            (Params { k: 0, ..p() }, "k"),
            (
                Params {
                    k: 40_000,
                    m: 40_000,
                    ..p()
                },
                "wide",
            ),
            (Params { nodes: 13, ..p() }, "nodes"),
            (
                Params {
                    threshold: Some(10),
                    ..p()
                },
                "threshold k",
            ),
            (
                Params {
                    threshold: Some(15),
                    ..p()
                },
                "threshold > n",
            ),
            (
                Params {
                    m: 0,
                    threshold: Some(11),
                    ..p()
                },
                "threshold m=0",
            ),
            (
                Params {
                    node_mttf_days: 0.0,
                    ..p()
                },
                "mttf 0",
            ),
            (
                Params {
                    node_mttf_days: -1.0,
                    ..p()
                },
                "mttf <0",
            ),
            (
                Params {
                    node_mttf_days: f64::NAN,
                    ..p()
                },
                "mttf nan",
            ),
            (
                Params {
                    node_mttf_days: f64::INFINITY,
                    ..p()
                },
                "mttf inf",
            ),
            (
                Params {
                    repair_hours: -1.0,
                    ..p()
                },
                "repair",
            ),
            (
                Params {
                    audit_hours: f64::NAN,
                    ..p()
                },
                "audit",
            ),
            (Params { years: 0.0, ..p() }, "years"),
            (
                Params {
                    piece_mib: 0.0,
                    ..p()
                },
                "piece",
            ),
            (
                Params {
                    stored_tib_per_node: -1.0,
                    ..p()
                },
                "stored",
            ),
            (Params { trials: 0, ..p() }, "trials"),
            (
                Params {
                    node_mttf_days: 1e-9,
                    years: 1e6,
                    ..p()
                },
                "events",
            ),
            (
                Params {
                    node_mttf_days: f64::MIN_POSITIVE,
                    ..p()
                },
                "events tiny mttf",
            ),
            (Params { domains: 13, ..p() }, "spread over too few domains"),
            (
                Params {
                    domains: 1001,
                    spread_domains: false,
                    ..p()
                },
                "more domains than nodes",
            ),
            (
                Params {
                    domain_mttf_days: 0.0,
                    ..p()
                },
                "domain mttf 0",
            ),
            (
                Params {
                    domain_mttf_days: f64::NAN,
                    ..p()
                },
                "domain mttf nan",
            ),
        ];
        for (params, what) in bad {
            assert!(params.validate().is_err(), "{what}: {params:?}");
            assert!(crate::run(&params).is_err(), "{what}");
            assert!(crate::run_plain(&params).is_err(), "{what}");
            assert!(crate::run_importance(&params).is_err(), "{what}");
        }
        let ok = [
            Params {
                repair_hours: 0.0,
                audit_hours: 0.0,
                ..p()
            },
            Params {
                threshold: Some(11),
                ..p()
            },
            Params {
                threshold: Some(14),
                ..p()
            },
            Params {
                m: 0,
                threshold: Some(10),
                ..p()
            },
            Params { nodes: 14, ..p() },
            Params {
                stored_tib_per_node: 0.0,
                ..p()
            },
            Params { domains: 14, ..p() },
            Params {
                domains: 1,
                spread_domains: false,
                domain_mttf_days: 1000.0,
                ..p()
            },
            Params {
                domain_mttf_days: 1.0,
                ..p()
            },
        ];
        for params in ok {
            assert_eq!(params.validate(), Ok(()), "{params:?}");
        }
    }

    #[test]
    fn errors_read_well() {
        let e = Params {
            threshold: Some(20),
            ..p()
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "repair threshold 20 is outside 11..=14 for a 10 + 4 code"
        );
        let e = Params { years: -2.0, ..p() }.validate().unwrap_err();
        assert_eq!(e.to_string(), "years must be a finite number > 0, got -2");
        let e = Params { domains: 8, ..p() }.validate().unwrap_err();
        assert_eq!(
            e.to_string(),
            "8 failure domains cannot hold the 14 pieces of a stripe in distinct domains: add \
             domains or turn spreading off"
        );
    }
}
