//! Failure domains: closed forms for random and spread placement, spread against random,
//! and what turns the feature off.

use crate::report::run_with;
use crate::*;

use super::{agree, base, near};

/// Pieces placed at random on 7 nodes in domains of 3, 2 and 2 nodes (the crate's even
/// spread), no parity: the stripe dies at its first failure, which comes at rate
/// `n lambda + o mu` for `o` the domains its pieces occupy. So `P(loss within T) =
/// sum_o P(o) (1 - exp(-(n lambda + o mu) T))`, with `P(o)` counted over every set of
/// `n` of the 7 nodes.
fn exact_first_failure(n: u32, lambda: f64, mu: f64, horizon: f64) -> f64 {
    let domain_of = [0, 0, 0, 1, 1, 2, 2];
    let sets: Vec<u32> = (0u32..1 << 7).filter(|s| s.count_ones() == n).collect();
    let mut p = 0.0;
    for set in &sets {
        let mut used = [false; 3];
        for (node, &d) in domain_of.iter().enumerate() {
            if set >> node & 1 == 1 {
                used[d] = true;
            }
        }
        let o = used.iter().filter(|&&u| u).count() as f64;
        p += -(-(f64::from(n) * lambda + o * mu) * horizon).exp_m1() / sets.len() as f64;
    }
    p
}

fn domains_base() -> Params {
    Params {
        k: 3,
        m: 0,
        nodes: 7,
        domains: 3,
        node_mttf_days: 3652.5,
        domain_mttf_days: 365.25,
        years: 0.2,
        trials: 20_000,
        ..base()
    }
}

#[test]
fn random_placement_matches_the_exact_first_failure_law() {
    let p = Params {
        spread_domains: false,
        ..domains_base()
    };
    assert!(p.domain_losses_correlated());
    let model = p.model().unwrap();
    let mu = 1.0 / (365.25 * 24.0);
    let exact = exact_first_failure(3, model.lambda, mu, model.horizon);
    // Spread (3 domains, always all occupied) would be 1 - exp(-3.3 * 0.2) = 0.48.
    assert!((0.35..0.45).contains(&exact), "{exact}");
    let r = run_plain(&p).unwrap();
    let e = &r.loss_within_horizon;
    assert!(near(e, exact, 3.5), "{e:?} vs exact {exact}");
    // Two pieces: sets of 2 of 7 nodes.
    let two = Params { k: 2, ..p.clone() };
    let exact = exact_first_failure(2, model.lambda, mu, model.horizon);
    let e = run_plain(&two).unwrap().loss_within_horizon;
    assert!(near(&e, exact, 3.5), "{e:?} vs exact {exact}");
}

#[test]
fn spread_placement_is_a_faster_independent_failure() {
    // Each piece alone in its domain: a domain loss is one more way to lose that piece,
    // at rate mu, so the first failure comes at rate n (lambda + mu).
    let p = domains_base();
    assert!(!p.domain_losses_correlated());
    let model = p.model().unwrap();
    assert!(model.shared.is_none());
    let (lambda, mu) = (1.0 / (3652.5 * 24.0), 1.0 / (365.25 * 24.0));
    assert!((model.lambda / (lambda + mu) - 1.0).abs() < 1e-12);
    let exact = -(-3.0 * (lambda + mu) * model.horizon).exp_m1();
    for r in [run_plain(&p).unwrap(), run_importance(&p).unwrap()] {
        let e = &r.loss_within_horizon;
        assert!(
            near(e, exact, 3.5),
            "{:?}: {e:?} vs exact {exact}",
            r.method
        );
    }
    // The same holds with parity: importance sampling stays correct with domain losses
    // spread over the pieces, checked against plain sampling where losses are common.
    let parity = Params {
        k: 4,
        m: 2,
        nodes: 60,
        domains: 6,
        node_mttf_days: 365.0,
        domain_mttf_days: 60.0,
        years: 0.5,
        ..base()
    };
    let plain = run_plain(&parity).unwrap();
    let is = run_importance(&parity).unwrap();
    assert_eq!(is.method, Method::ImportanceSampling);
    let (a, b) = (&plain.loss_within_horizon, &is.loss_within_horizon);
    assert!(plain.sampled_losses >= 50, "{plain}");
    assert!(agree(a, b, 3.5), "plain {a:?} vs IS {b:?}");
}

#[test]
fn with_spread_pieces_one_domain_loss_never_loses_a_stripe() {
    // Instant audits and eager, instant repairs: a stripe is lost only if more than m
    // pieces go in one event. Spread, a domain loss takes one piece; at random, it can
    // take three.
    let spread = Params {
        k: 4,
        m: 2,
        threshold: Some(6),
        nodes: 60,
        domains: 6,
        node_mttf_days: 365.0,
        domain_mttf_days: 30.0,
        repair_hours: 0.0,
        audit_hours: 0.0,
        trials: 2_000,
        ..base()
    };
    let random = Params {
        spread_domains: false,
        ..spread.clone()
    };
    for r in [run(&spread).unwrap(), run_plain(&spread).unwrap()] {
        assert_eq!(r.sampled_losses, 0, "{r}");
        assert_eq!(r.loss_within_horizon.value, 0.0);
        // Every piece lost was rebuilt: 6 pieces * 365.25 * (1/365 + 1/30) a year.
        let want = 6.0 * 365.25 * (1.0 / 365.0 + 1.0 / 30.0);
        assert!(
            (r.pieces_repaired_per_stripe_year / want - 1.0).abs() < 0.03,
            "{r}"
        );
    }
    let r = run(&random).unwrap();
    assert_eq!(r.method, Method::Plain);
    assert!(r.loss_within_horizon.low > 0.3, "{r}");
}

#[test]
fn random_placement_on_few_domains_loses_far_more_than_spread() {
    let spread = Params {
        k: 4,
        m: 2,
        nodes: 60,
        domains: 6,
        node_mttf_days: 3650.0,
        domain_mttf_days: 365.0,
        repair_hours: 12.0,
        audit_hours: 12.0,
        trials: 4_000,
        ..base()
    };
    let random = Params {
        spread_domains: false,
        ..spread.clone()
    };
    let (s, r) = (run(&spread).unwrap(), run(&random).unwrap());
    let (a, b) = (&s.loss_per_year, &r.loss_per_year);
    eprintln!("DOMAINS spread {a:?} random {b:?}");
    assert!(b.low > 10.0 * a.high, "spread {s}\nrandom {r}");
    // More domains make sharing rarer, and losses with it.
    let wide = Params {
        nodes: 600,
        domains: 60,
        ..random.clone()
    };
    let w = run(&wide).unwrap();
    assert!(w.loss_per_year.high < b.low, "few domains {r}\nmany {w}");
}

#[test]
fn domains_without_domain_losses_change_nothing() {
    let plain = Params {
        trials: 3_000,
        ..base()
    };
    let same = |a: &Report, b: &Report| {
        assert_eq!(a.loss_within_horizon, b.loss_within_horizon);
        assert_eq!(a.stripe_years, b.stripe_years);
        assert_eq!(
            a.pieces_repaired_per_stripe_year,
            b.pieces_repaired_per_stripe_year
        );
        assert_eq!(a.method, b.method);
    };
    for f in [run, run_plain, run_importance] {
        let r = f(&plain).unwrap();
        // Domains but no domain losses, either placement.
        for spread_domains in [true, false] {
            let p = Params {
                domains: 10,
                spread_domains,
                ..plain.clone()
            };
            same(&r, &f(&p).unwrap());
        }
    }
    // Every node its own domain: random placement is spread placement.
    let own = Params {
        domain_mttf_days: 100.0,
        trials: 3_000,
        ..base()
    };
    for domains in [0, 100] {
        let spread = Params {
            domains,
            ..own.clone()
        };
        let random = Params {
            spread_domains: false,
            ..spread.clone()
        };
        assert!(!random.domain_losses_correlated());
        same(&run(&spread).unwrap(), &run(&random).unwrap());
    }
}

#[test]
fn shared_domains_run_plainly_and_deterministically() {
    let p = Params {
        nodes: 60,
        domains: 6,
        domain_mttf_days: 365.0,
        spread_domains: false,
        trials: 3_000,
        ..base()
    };
    let r = run(&p).unwrap();
    assert_eq!(r.method, Method::Plain);
    assert_eq!(r, run_plain(&p).unwrap());
    // Importance sampling falls back to plain sampling, and says why.
    assert_eq!(r, run_importance(&p).unwrap());
    assert!(r.to_string().contains("importance sampling is off"), "{r}");
    assert_eq!(r, run(&p).unwrap());
    assert_eq!(run_with(&p, 1).unwrap(), run_with(&p, 3).unwrap());
    let other = run(&Params {
        seed: 2,
        ..p.clone()
    })
    .unwrap();
    assert_ne!(r.stripe_years, other.stripe_years);
}

#[test]
fn domain_parameters_are_validated() {
    let p = Params {
        trials: 10,
        ..base()
    };
    let err = |p: Params| p.validate().unwrap_err();
    // Spread needs a domain per piece: 5 domains for 6 pieces is refused...
    let e = err(Params {
        domains: 5,
        ..p.clone()
    });
    assert_eq!(e, SimError::TooFewDomains { domains: 5, n: 6 });
    assert!(e.to_string().contains("distinct domains"), "{e}");
    // ...but fine at random.
    let random = Params {
        domains: 5,
        spread_domains: false,
        domain_mttf_days: 100.0,
        ..p.clone()
    };
    assert_eq!(random.validate(), Ok(()));
    assert!(random.domain_losses_correlated());
    assert!(matches!(
        err(Params {
            domains: 101,
            ..p.clone()
        }),
        SimError::TooManyDomains { .. }
    ));
    for bad in [0.0, -3.0, f64::NAN, f64::NEG_INFINITY] {
        let e = err(Params {
            domain_mttf_days: bad,
            ..p.clone()
        });
        assert!(e.to_string().starts_with("domain_mttf_days must be"), "{e}");
        for f in [run, run_plain, run_importance] {
            assert!(
                f(&Params {
                    domain_mttf_days: bad,
                    ..p.clone()
                })
                .is_err()
            );
        }
    }
    // Domain losses count towards the event limit.
    assert!(matches!(
        err(Params {
            domain_mttf_days: 1e-6,
            ..p.clone()
        }),
        SimError::TooManyEvents { .. }
    ));
}

#[test]
fn report_and_table_show_domains() {
    let p = Params {
        nodes: 64,
        domains: 6,
        domain_mttf_days: 365.0,
        spread_domains: false,
        trials: 2_000,
        ..base()
    };
    let r = run(&p).unwrap();
    let text = r.to_string();
    assert_eq!(text.lines().count(), 6, "{text}");
    assert!(
        text.contains(
            "failure domains: 6 failure domains of 10-11 nodes, each lost whole every 365 \
             days on average; a stripe's pieces on random nodes, domains may repeat"
        ),
        "{text}"
    );
    let spread = run(&Params {
        spread_domains: true,
        ..p.clone()
    })
    .unwrap();
    assert!(spread.to_string().contains("pieces in distinct domains"));
    let off = run(&Params {
        trials: 2_000,
        ..base()
    })
    .unwrap();
    let table = markdown_table(&[off, spread, r]);
    assert!(
        table
            .lines()
            .next()
            .unwrap()
            .ends_with("| failure domains |")
    );
    let rows: Vec<&str> = table.lines().skip(2).collect();
    assert!(rows[0].ends_with("| none |"), "{table}");
    assert!(rows[1].ends_with("| 6, MTTF 365 d, spread |"), "{table}");
    assert!(rows[2].ends_with("| 6, MTTF 365 d, random |"), "{table}");
}
