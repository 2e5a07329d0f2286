//! Whole-simulator tests: closed forms, importance sampling against plain sampling,
//! monotonicity, determinism. Sized to run in a few seconds in a debug build.

use proptest::prelude::*;

use crate::report::run_with;
use crate::*;

mod domains;

/// Two independent estimates agree: their difference is within `z` standard errors.
fn agree(a: &Estimate, b: &Estimate, z: f64) -> bool {
    (a.value - b.value).abs() <= z * a.std_error.hypot(b.std_error)
}

/// An estimate is within `z` standard errors of an exact value.
fn near(e: &Estimate, exact: f64, z: f64) -> bool {
    (e.value - exact).abs() <= z * e.std_error
}

fn base() -> Params {
    Params {
        k: 4,
        m: 2,
        nodes: 100,
        node_mttf_days: 365.0,
        repair_hours: 48.0,
        audit_hours: 24.0,
        years: 1.0,
        trials: 20_000,
        seed: 1,
        ..Params::default()
    }
}

#[test]
fn no_parity_loses_at_the_first_failure() {
    // m = 0: P(loss within T) = 1 - exp(-n T / MTTF).
    for years in [0.1, 0.01] {
        let p = Params {
            k: 5,
            m: 0,
            years,
            ..base()
        };
        let exact = -(-5.0 * years * 365.25 / 365.0f64).exp_m1();
        let plain = run_plain(&p).unwrap();
        let is = run_importance(&p).unwrap();
        for r in [&plain, &is] {
            let e = &r.loss_within_horizon;
            eprintln!(
                "M0 {:?} {:.5} ± {:.5} exact {exact:.5} z={:.2}",
                r.method,
                e.value,
                e.std_error,
                (e.value - exact) / e.std_error
            );
            assert!(near(e, exact, 3.5), "{:?} {e:?} vs exact {exact}", r.method);
            assert!(e.low <= exact && exact <= e.high, "{e:?} vs {exact}");
        }
        assert_eq!(plain.repairs_per_stripe_year, 0.0);
    }
}

#[test]
fn instant_detection_and_repair_never_lose() {
    let p = Params {
        k: 3,
        m: 1,
        repair_hours: 0.0,
        audit_hours: 0.0,
        node_mttf_days: 10.0,
        trials: 5_000,
        ..base()
    };
    for r in [run_plain(&p).unwrap(), run_importance(&p).unwrap()] {
        assert_eq!(r.loss_within_horizon.value, 0.0, "{r}");
        assert_eq!(r.sampled_losses, 0);
        // Every failure is repaired at once: 4 pieces * 365.25 / 10 failures a year.
        let want = 4.0 * 365.25 / 10.0;
        assert!(
            (r.pieces_repaired_per_stripe_year / want - 1.0).abs() < 0.02,
            "{r}"
        );
        assert_eq!(r.repairs_per_stripe_year, r.pieces_repaired_per_stripe_year);
    }
}

/// `P(loss within T)` for `m = 1`, instant detection, repair time `r`, threshold `n`:
/// healthy spells are Exp(n lambda); after each failure a window of exactly `r` in which
/// any of the other `n - 1` failing loses the stripe, else it is whole again. Summed over
/// the window `j` that loses: `(1-q)^(j-1) * P(Erlang(j, n lambda) + (j-1) r + X <= T)`
/// with `X` the failure time inside the window, integrated by Simpson's rule.
fn exact_m1(n: u32, lambda: f64, r: f64, horizon: f64) -> f64 {
    let nf = f64::from(n);
    let mu = nf * lambda;
    let nu = (nf - 1.0) * lambda;
    let q = -(-nu * r).exp_m1();
    let erlang_cdf = |j: u32, y: f64| {
        if y <= 0.0 {
            return 0.0;
        }
        let mut term = (-mu * y).exp();
        let mut sum = term;
        for i in 1..j {
            term *= mu * y / f64::from(i);
            sum += term;
        }
        1.0 - sum
    };
    let steps = 400;
    let h = r / f64::from(steps);
    let mut total = 0.0;
    let mut j = 1;
    while f64::from(j - 1) * r < horizon {
        let mut integral = 0.0;
        for i in 0..=steps {
            let x = f64::from(i) * h;
            let w = if i == 0 || i == steps {
                1.0
            } else if i % 2 == 1 {
                4.0
            } else {
                2.0
            };
            let y = horizon - f64::from(j - 1) * r - x;
            integral += w * nu * (-nu * x).exp() * erlang_cdf(j, y);
        }
        total += (1.0 - q).powi(j as i32 - 1) * integral * h / 3.0;
        j += 1;
    }
    total
}

#[test]
fn single_parity_matches_the_renewal_formula() {
    let p = Params {
        k: 3,
        m: 1,
        audit_hours: 0.0,
        repair_hours: 48.0,
        ..base()
    };
    let model = p.model().unwrap();
    assert_eq!(model.threshold, 4, "eager repair");
    let exact = exact_m1(4, model.lambda, 48.0, model.horizon);
    assert!((0.03..0.1).contains(&exact), "{exact}");
    let plain = run_plain(&p).unwrap();
    let is = run_importance(&p).unwrap();
    for r in [&plain, &is] {
        let e = &r.loss_within_horizon;
        eprintln!(
            "M1 {:?} {:.5} ± {:.5} exact {exact:.5} z={:.2}",
            r.method,
            e.value,
            e.std_error,
            (e.value - exact) / e.std_error
        );
        assert!(
            near(e, exact, 3.5),
            "{:?}: {e:?} vs exact {exact}",
            r.method
        );
        assert!(e.relative_error() < 0.05, "{e:?}");
    }
    // Importance sampling beats plain sampling here by a wide margin.
    assert!(is.loss_within_horizon.std_error < plain.loss_within_horizon.std_error / 2.0);
}

/// Lazy repair, back of the envelope: a window opens when the `a`-th piece is lost, is
/// noticed `U ~ U[0, A]` later, and the repair ends `R` after that; the stripe is lost if
/// `d` more of the `L` live pieces fail first. A piece failing `x` into the window must
/// not be noticed before the last of them fails minus `R` (or the repair would start, and
/// end, sooner), so with the last failure at `v` the others have room
/// `F(v) = v - ((v - R)^+)^2 / (2A)`:
/// `P(loss | window) ~ prod_i (L - i) lambda * E_U[int_0^(U+R) F(v)^(d-1) / (d-1)! dv]`
/// times a survival factor, and the rate is that times the windows (repairs) per year.
fn window_formula(live: u32, d: u32, lambda: f64, r: f64, a: f64, windows_per_hour: f64) -> f64 {
    let log_rates: f64 = (0..d).map(|i| (f64::from(live - i) * lambda).ln()).sum();
    let ln_fact: f64 = (1..d).map(|i| f64::from(i).ln()).sum();
    let (nu, nv) = (200, 400);
    let mut total = 0.0;
    for i in 0..nu {
        let u = a * (f64::from(i) + 0.5) / f64::from(nu);
        let end = u + r;
        let mut int = 0.0;
        for j in 0..nv {
            let v = end * (f64::from(j) + 0.5) / f64::from(nv);
            let f = v - (v - r).max(0.0).powi(2) / (2.0 * a);
            int += (f64::from(d - 1) * f.ln() - ln_fact).exp() * end / f64::from(nv);
        }
        // Survival of the window's other pieces, roughly: the window is 3/4 over, on
        // average, when the last failure comes.
        total += int * (-f64::from(live) * lambda * end * 0.75).exp() / f64::from(nu);
    }
    log_rates.exp() * total * windows_per_hour
}

#[test]
fn lazy_repair_matches_the_window_formula() {
    // 10+4 (a = 3, d = 2 of 11) and 16+8 (a = 5, d = 4 of 19), threshold k + m/2.
    for (k, m, live, d) in [(10, 4, 11, 2), (16, 8, 19, 4)] {
        let p = Params {
            k,
            m,
            node_mttf_days: 365.0,
            repair_hours: 12.0,
            audit_hours: 24.0,
            years: 2.0,
            trials: 6_000,
            ..base()
        };
        let r = run_importance(&p).unwrap();
        let model = p.model().unwrap();
        let windows = r.repairs_per_stripe_year / HOURS_PER_YEAR;
        let rate = window_formula(live, d, model.lambda, 12.0, 24.0, windows) * HOURS_PER_YEAR;
        let e = &r.loss_per_year;
        assert!(
            (e.value / rate - 1.0).abs() < 0.1 + 3.0 * e.relative_error(),
            "{k}+{m}: simulated {e:?}, formula {rate}"
        );
    }
}

#[test]
fn importance_sampling_agrees_with_plain_where_losses_are_common() {
    let cases = [
        // The brief's set: loss is all but certain within the year...
        Params {
            node_mttf_days: 30.0,
            ..base()
        },
        // ...so also a short horizon, where it is not.
        Params {
            node_mttf_days: 30.0,
            years: 0.1,
            ..base()
        },
        Params { ..base() },
        // Eager repair: windows chain, so paths cross deadlines.
        Params {
            threshold: Some(6),
            node_mttf_days: 60.0,
            ..base()
        },
        // Two failures to race, a lazier threshold, a longer horizon.
        Params {
            k: 6,
            m: 3,
            node_mttf_days: 120.0,
            repair_hours: 24.0,
            years: 2.0,
            ..base()
        },
        // Repair slower than audits, several parity pieces.
        Params {
            k: 5,
            m: 4,
            threshold: Some(8),
            node_mttf_days: 45.0,
            repair_hours: 96.0,
            audit_hours: 12.0,
            years: 0.5,
            ..base()
        },
    ];
    for p in cases {
        let plain = run_plain(&p).unwrap();
        let is = run_importance(&p).unwrap();
        let (a, b) = (&plain.loss_within_horizon, &is.loss_within_horizon);
        eprintln!(
            "AGREE plain {:.5} ± {:.5} ({} losses)  IS {:.5} ± {:.5} rel {:.3}  z={:.2}",
            a.value,
            a.std_error,
            plain.sampled_losses,
            b.value,
            b.std_error,
            b.relative_error(),
            (a.value - b.value) / a.std_error.hypot(b.std_error)
        );
        assert!(
            plain.sampled_losses >= 50,
            "plain sees too few losses: {plain}"
        );
        assert!(agree(a, b, 3.5), "plain {a:?} vs IS {b:?} for {p:?}");
        assert!(b.relative_error() < 0.1, "{b:?}");
    }
}

#[test]
fn more_parity_or_faster_repair_never_hurts() {
    let p = Params {
        k: 10,
        m: 4,
        node_mttf_days: 365.0,
        repair_hours: 12.0,
        audit_hours: 24.0,
        trials: 4_000,
        ..base()
    };
    let loss = |p: &Params| run(p).unwrap().loss_per_year;
    let by_parity: Vec<_> = [3, 4, 5, 6]
        .map(|m| loss(&Params { m, ..p.clone() }))
        .into();
    let by_repair: Vec<_> = [96.0, 48.0, 12.0, 2.0]
        .map(|repair_hours| {
            loss(&Params {
                repair_hours,
                ..p.clone()
            })
        })
        .into();
    for series in [&by_parity, &by_repair] {
        for e in series.iter() {
            eprintln!("MONO {:.3e} ± {:.2e}", e.value, e.std_error);
        }
        for w in series.windows(2) {
            let (worse, better) = (&w[0], &w[1]);
            assert!(
                better.value <= worse.value + 3.0 * worse.std_error.hypot(better.std_error),
                "{better:?} should not exceed {worse:?}"
            );
        }
        // And the trend is real, not noise: the ends differ by a wide margin.
        assert!(series[3].high < series[0].low, "{series:?}");
    }
}

#[test]
fn same_seed_same_report() {
    let p = Params {
        trials: 3_000,
        ..base()
    };
    for f in [run, run_plain, run_importance] {
        let a = f(&p).unwrap();
        assert_eq!(a, f(&p).unwrap());
        let b = f(&Params {
            seed: 2,
            ..p.clone()
        })
        .unwrap();
        assert_ne!(a.stripe_years, b.stripe_years);
    }
    // Thread count does not matter.
    assert_eq!(run_with(&p, 1).unwrap(), run_with(&p, 3).unwrap());
}

#[test]
fn run_picks_the_method_and_matches_the_forced_runs() {
    // Common losses: plain, identical to run_plain.
    let common = Params {
        node_mttf_days: 30.0,
        years: 0.1,
        trials: 3_000,
        ..base()
    };
    let r = run(&common).unwrap();
    assert_eq!(r.method, Method::Plain);
    assert_eq!(r, run_plain(&common).unwrap());
    // Rare losses: importance sampling, identical to run_importance.
    let rare = Params {
        k: 10,
        m: 4,
        threshold: Some(14),
        trials: 3_000,
        ..base()
    };
    let r = run(&rare).unwrap();
    assert_eq!(r.method, Method::ImportanceSampling);
    assert_eq!(r, run_importance(&rare).unwrap());
    // Eager repair of 10+4 with 2-day repairs: about 14 windows a year, each lost if 4 of
    // the other 13 pieces fail within ~2.5 days: 14 * C(13,4) (2.5/365)^4 ~ 2e-5.
    let v = r.loss_within_horizon.value;
    assert!((5e-6..1e-4).contains(&v), "{r}");
    assert!(r.loss_within_horizon.relative_error() < 0.3, "{r}");
}

#[test]
fn report_and_table_render() {
    let p = Params {
        trials: 2_000,
        ..base()
    };
    let r = run(&p).unwrap();
    let text = r.to_string();
    assert!(
        text.contains("code 4+2 (n = 6, overhead 1.50x), repair below 5"),
        "{text}"
    );
    assert!(text.contains("P(stripe lost per year)"), "{text}");
    assert_eq!(text.lines().count(), 5, "{text}");
    assert_eq!(r.params.threshold, Some(5));
    // Repair I/O: stored / n * (k repairs + pieces) per stripe-day.
    let want = (1u64 << 40) as f64 / 6.0
        * (4.0 * r.repairs_per_stripe_year + r.pieces_repaired_per_stripe_year)
        / 365.25;
    assert!((r.repair_bytes_per_node_day / want - 1.0).abs() < 1e-9);
    assert!((r.repair_bytes_network_day / (100.0 * want) - 1.0).abs() < 1e-9);

    let reports = compare_codes(&p, &[(4, 2), (6, 3)]).unwrap();
    let table = markdown_table(&reports);
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(
        table
            .lines()
            .nth(3)
            .unwrap()
            .starts_with("| 6+3 | 1.50 | 8 |"),
        "{table}"
    );
    assert!(compare_codes(&p, &[(4, 2), (0, 3)]).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Whatever the parameters, the simulator returns an error or a sane report; it never
    /// panics.
    #[test]
    fn never_panics(
        k in 0u16..12,
        m in 0u16..8,
        nodes in 0u32..40,
        threshold in proptest::option::of(0u16..24),
        mttf in prop_oneof![Just(f64::NAN), Just(0.0), Just(-1.0), 1.0f64..2000.0],
        repair in prop_oneof![Just(f64::INFINITY), Just(0.0), 0.0f64..200.0],
        audit in prop_oneof![Just(-0.5), Just(0.0), 0.0f64..100.0],
        years in prop_oneof![Just(0.0), 0.001f64..1.0],
        trials in 0u64..40,
        seed: u64,
        (domains, domain_mttf, spread) in (
            prop_oneof![Just(0u32), 0u32..50],
            prop_oneof![Just(f64::NAN), Just(0.0), Just(f64::INFINITY), 1.0f64..2000.0],
            any::<bool>(),
        ),
    ) {
        let p = Params {
            k, m, nodes, threshold,
            node_mttf_days: mttf,
            repair_hours: repair,
            audit_hours: audit,
            years,
            trials,
            seed,
            domains,
            domain_mttf_days: domain_mttf,
            spread_domains: spread,
            ..Params::default()
        };
        let valid = p.validate().is_ok();
        for result in [run(&p), run_plain(&p), run_importance(&p)] {
            prop_assert_eq!(result.is_ok(), valid);
            if let Ok(r) = result {
                for e in [&r.loss_within_horizon, &r.loss_per_year] {
                    prop_assert!(0.0 <= e.low && e.low <= e.value && e.value <= e.high);
                    prop_assert!(e.high <= e.value.max(1.0));
                }
                prop_assert!(r.repairs_per_stripe_year >= 0.0);
                prop_assert!(!r.to_string().is_empty());
            }
        }
    }
}
