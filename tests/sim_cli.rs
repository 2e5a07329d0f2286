//! `cairn sim durability` end to end: figures a closed form predicts, a comparison table,
//! and parameters it refuses.

mod common;

use common::{run, text};

/// The value after `label` on the line that starts with it.
fn figure(out: &str, label: &str) -> f64 {
    let line = out
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{out}"));
    line[label.len()..]
        .split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no number after {label:?} in {line:?}"))
}

#[test]
fn without_parity_a_stripe_is_lost_at_its_first_failure() {
    // m = 0: the stripe dies with the first of its k nodes, so P(loss within a year) is
    // 1 - exp(-k * 365.25 / mttf) = 1 - exp(-0.4) = 0.3297 for k = 4, MTTF 3652.5 days.
    let o = run(
        &[
            "sim",
            "durability",
            "--k",
            "4",
            "--m",
            "0",
            "--nodes",
            "10",
            "--node-mttf",
            "3652.5",
            "--years",
            "1",
            "--trials",
            "20000",
            "--threshold",
            "4",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let p = figure(&out, "P(stripe lost per year):");
    let exact = 1.0 - (-0.4f64).exp();
    // 20 000 trials: the standard error is 0.0033, so 0.02 is six of them.
    assert!((p - exact).abs() < 0.02, "{p} vs {exact}\n{out}");
    assert!(out.contains("repair I/O per node per day"), "{out}");
}

#[test]
fn codes_are_compared_in_one_table() {
    let o = run(
        &[
            "sim",
            "durability",
            "--trials",
            "2000",
            "--compare",
            "10+4,16+8",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let rows: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("| 10+4") || l.starts_with("| 16+8"))
        .collect();
    assert_eq!(rows.len(), 2, "{out}");
}

#[test]
fn placements_over_failure_domains_are_compared() {
    // 4+2 on 6 domains of 10 nodes, each domain lost once a year on average. Spread, a
    // domain loss takes one piece of a stripe; at random, pieces share domains and one
    // loss can take three.
    let o = run(
        &[
            "sim",
            "durability",
            "--k",
            "4",
            "--m",
            "2",
            "--nodes",
            "60",
            "--domains",
            "6",
            "--domain-mttf-days",
            "365",
            "--node-mttf",
            "3650",
            "--repair-hours",
            "12",
            "--audit-hours",
            "12",
            "--trials",
            "4000",
            "--no-spread-domains",
            "--compare-placement",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("failure domains: 6 failure domains of 10 nodes, each lost whole every 365"),
        "{out}"
    );
    assert!(out.contains("importance sampling is off"), "{out}");
    // The loss column of the table row whose last cell ends with `placement`.
    let loss = |placement: &str| -> f64 {
        let row = out
            .lines()
            .find(|l| l.starts_with("| 4+2") && l.ends_with(&format!("{placement} |")))
            .unwrap_or_else(|| panic!("no {placement} row in:\n{out}"));
        row.split('|')
            .nth(4)
            .and_then(|c| c.split_whitespace().next())
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("no loss figure in {row:?}"))
    };
    let (spread, random) = (loss("spread"), loss("random"));
    assert!(
        random > 5.0 * spread,
        "spread {spread}, random {random}\n{out}"
    );
}

#[test]
fn impossible_parameters_are_refused_with_a_reason() {
    for (args, says) in [
        (
            &["--k", "10", "--m", "4", "--threshold", "9"][..],
            "threshold",
        ),
        (&["--node-mttf", "0"][..], "node_mttf"),
        (&["--nodes", "5"][..], "distinct nodes"),
        (&["--domains", "20"][..], "distinct domains"),
        (&["--domain-mttf", "0"][..], "domain_mttf_days"),
        (&["--compare", "10-4"][..], "--compare"),
    ] {
        let mut a = vec!["sim", "durability", "--trials", "10"];
        a.extend_from_slice(args);
        let o = run(&a, &[]);
        assert!(!o.status.success(), "{args:?} was accepted: {}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(says),
            "{args:?} should say {says:?}: {}",
            text(&o)
        );
    }
}

/// The text after `label` on the line whose trimmed start is `label`.
fn value_of<'a>(out: &'a str, label: &str) -> &'a str {
    out.lines()
        .map(str::trim_start)
        .find(|l| l.starts_with(label))
        .map(|l| l[label.len()..].trim())
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{out}"))
}

#[test]
fn the_scale_model_carries_a_node_to_ten_thousand_nodes_and_ten_petabytes() {
    let o = run(&["sim", "scale"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    // 10 PB coded 16+8 over 10,000 nodes: 1.5 TB each, in 1 MiB pieces.
    assert_eq!(value_of(&out, "stored"), "1.50 TB", "{out}");
    assert_eq!(value_of(&out, "pieces held (stripes)"), "1430511", "{out}");
    // So many stripes that every other node is a co-holder, and the tables are past
    // their bounds: the model says which, and the piece size at which all fit.
    assert_eq!(
        value_of(&out, "co-holders (distinct nodes)"),
        "9999",
        "{out}"
    );
    assert!(out.contains("past a node's bounds"), "{out}");
    assert!(out.contains("all fit with pieces of"), "{out}");
    // Stripes of 24 need 24 nodes: the sweep starts at 30.
    assert!(out.contains("ratio 10000/30"), "{out}");

    // Few pieces per node in a large network: co-holders are about P (n - 1).
    let o = run(
        &[
            "sim", "scale", "--nodes", "10000", "--data", "1TB", "--k", "4", "--m", "2",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let pieces: f64 = value_of(&out, "pieces held (stripes)").parse().unwrap();
    let co: f64 = value_of(&out, "co-holders (distinct nodes)")
        .parse()
        .unwrap();
    assert!(
        pieces > 100.0 && co < pieces * 5.0 && co > pieces * 5.0 * 0.9,
        "{out}"
    );
    assert!(out.contains("within every bound a node keeps"), "{out}");
}

#[test]
fn the_scale_model_sits_beside_a_benchs_measured_rows() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("cairn-bench.json");
    std::fs::write(
        &json,
        r#"{"scale": [
            {"nodes": 10, "connections": 12, "rss_mib": 92.2, "pss_mib": 37.7,
             "idle_control_bytes_per_sec": 178061, "push_control_bytes_per_sec": 210979,
             "holder_entries": 25, "ledger_entries": 9, "pieces": 5},
            {"nodes": 30, "connections": 22, "rss_mib": 98.7, "pss_mib": 40.6,
             "idle_control_bytes_per_sec": 119626, "push_control_bytes_per_sec": 210658,
             "holder_entries": 15, "ledger_entries": 14, "pieces": 3}
        ]}"#,
    )
    .unwrap();
    let o = run(&["sim", "scale", "--measured", json.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    // Holder entries are P (n - 1) exactly; ledger entries the expected co-holders.
    let row = |nodes: &str| {
        out.lines()
            .map(str::split_whitespace)
            .map(Iterator::collect::<Vec<_>>)
            .find(|w| w.first() == Some(&nodes) && w.len() > 8)
            .unwrap_or_else(|| panic!("no measured row for {nodes}:\n{out}"))
    };
    let ten = row("10");
    assert_eq!(&ten[5..8], ["25", "/", "25.0"], "{out}");
    assert_eq!(&ten[8..11], ["9", "/", "8.8"], "{out}");
    let thirty = row("30");
    assert_eq!(&thirty[5..8], ["15", "/", "15.0"], "{out}");

    // Refused, each with an error that says why.
    let refused = |args: &[&str], says: &str| {
        let o = run(args, &[]);
        assert!(!o.status.success(), "{}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(says),
            "{}",
            text(&o)
        );
    };
    std::fs::write(&json, "{}").unwrap();
    let measured = json.to_str().unwrap();
    refused(&["sim", "scale", "--measured", measured], "no scale rows");
    refused(&["sim", "scale", "--audit-secs", "NaN"], "positive");
    refused(&["sim", "scale", "--nodes", "20"], "k+m");
}
