//! Prints the durability tables of `sim/RESULTS.md`, with timings.
//!
//! ```text
//! cargo run --release -p cairn-sim --example durability_table [TRIALS]
//! ```

use std::time::Instant;

use sim::{Params, Report};

fn timed(params: &Params, f: fn(&Params) -> Result<Report, sim::SimError>) -> (Report, f64) {
    let start = Instant::now();
    let report = f(params).expect("valid parameters");
    (report, start.elapsed().as_secs_f64())
}

fn churn(node_mttf_days: f64, trials: u64) -> Params {
    Params {
        nodes: 1000,
        node_mttf_days,
        repair_hours: 12.0,
        audit_hours: 24.0,
        years: 10.0,
        trials,
        seed: 1,
        ..Params::default()
    }
}

fn main() {
    let trials = std::env::args()
        .nth(1)
        .map_or(100_000, |s| s.parse().expect("TRIALS: a whole number"));
    let started = Instant::now();
    for mttf in [365.0, 90.0] {
        let base = churn(mttf, trials);
        println!("## Node MTTF {mttf} days, repair 12 h, audit 24 h, 10 years, {trials} trials\n");
        let mut rows: Vec<Params> = [(10, 4), (10, 6), (16, 8), (29, 51)]
            .into_iter()
            .map(|(k, m)| Params {
                k,
                m,
                ..base.clone()
            })
            .collect();
        // Lazy against eager repair for the default code.
        rows.extend([13, 14].map(|t| Params {
            threshold: Some(t),
            ..base.clone()
        }));
        let mut reports = Vec::new();
        let mut times = Vec::new();
        for p in &rows {
            let (r, secs) = timed(p, sim::run);
            reports.push(r);
            times.push(secs);
        }
        print!("{}", sim::markdown_table(&reports));
        println!("\nTime per row (s): {}\n", fmt_times(&times));
        for r in &reports {
            println!("```text\n{r}\n```");
        }
        println!();
    }

    println!("## 10+4 (threshold 12), node MTTF 365 days: audit and repair times\n");
    let mut reports = Vec::new();
    for (audit_hours, repair_hours) in [(24.0, 12.0), (6.0, 12.0), (1.0, 12.0), (1.0, 2.0)] {
        let p = Params {
            audit_hours,
            repair_hours,
            ..churn(365.0, trials)
        };
        reports.push(timed(&p, sim::run).0);
    }
    print!("{}", sim::markdown_table(&reports));
    for r in &reports {
        let p = &r.params;
        println!(
            "- audit {} h, repair {} h: {:.3e} per stripe-year",
            p.audit_hours, p.repair_hours, r.loss_per_year.value
        );
    }
    println!();

    println!("## Same parameters, other seeds (importance sampling)\n");
    for (k, m, mttf) in [
        (16, 8, 365.0),
        (29, 51, 365.0),
        (16, 8, 90.0),
        (29, 51, 90.0),
    ] {
        let mut line = format!("- {k}+{m}, MTTF {mttf} d, P(loss)/stripe-year:");
        for seed in 1..=4 {
            let p = Params {
                k,
                m,
                seed,
                ..churn(mttf, trials)
            };
            let (r, secs) = timed(&p, sim::run_importance);
            let e = &r.loss_per_year;
            line += &format!(
                " {:.3e} (±{:.1}%, {secs:.1} s);",
                e.value,
                100.0 * 1.96 * e.relative_error()
            );
        }
        println!("{line}");
    }

    println!("\n## Cross-checks: plain Monte Carlo against importance sampling\n");
    for (k, m, mttf, n) in [(10, 4, 365.0, 10 * trials), (16, 8, 90.0, 2 * trials)] {
        let p = Params {
            k,
            m,
            seed: 7,
            ..churn(mttf, n)
        };
        for f in [sim::run_plain, sim::run_importance] {
            let (r, secs) = timed(&p, f);
            println!("{secs:.2} s:\n```text\n{r}\n```");
        }
    }
    println!("\ntotal {:.1} s", started.elapsed().as_secs_f64());
}

fn fmt_times(times: &[f64]) -> String {
    times
        .iter()
        .map(|t| format!("{t:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}
