//! `cairn bench` end to end, at a size a test can afford: every measure the benchmark
//! promises comes out of a real run against node processes, each with a baseline from the
//! same run, in the table and in the JSON.

mod common;

use common::{run, text};

#[test]
fn the_benchmark_measures_everything_beside_a_baseline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("bench.json");
    let work = dir.path().join("work");
    let o = run(
        &[
            "bench",
            "--quick",
            "--mib",
            "8",
            "--train-mib",
            "2",
            "--json",
            json.to_str().expect("utf-8"),
            "--dir",
            work.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("the JSON is written")).expect("json");
    let figures = v["figures"].as_array().expect("figures");
    // The figure for `prefix` measured against `baseline`.
    let find = |prefix: &str, baseline: &str| {
        figures
            .iter()
            .find(|f| {
                f["measure"]
                    .as_str()
                    .is_some_and(|m| m.trim_start().starts_with(prefix))
                    && f["baseline"].as_str().is_some_and(|b| b.contains(baseline))
            })
            .unwrap_or_else(|| panic!("no figure for {prefix:?} against {baseline:?} in {v}"))
    };
    for (prefix, baseline) in [
        ("pull 8 MiB", "local copy"),
        ("pull 8 MiB", "static server"),
        ("HTTP GET of", "static server"),
        ("push 8 MiB", "1.50x the bytes"),
        ("training streamed", "local files"),
        ("audit round: node CPU", "re-hashing"),
        ("audit round: bytes on the wire", "held bytes"),
        ("audit round: piece bytes read", "held bytes"),
        ("repair after a node is lost", "pull"),
        ("idle node memory", "before they held anything"),
        ("Reed-Solomon encode 10+4", "memcpy"),
        ("BLAKE3", "memcpy"),
    ] {
        let f = find(prefix, baseline);
        let (value, base, ratio) = (
            f["value"].as_f64().expect("value"),
            f["baseline_value"].as_f64().expect("baseline"),
            f["ratio"].as_f64().expect("ratio"),
        );
        assert!(
            value > 0.0 && base > 0.0 && (ratio - value / base).abs() <= 1e-9 * ratio.abs(),
            "{f}"
        );
        // And in the printed table.
        assert!(
            String::from_utf8_lossy(&o.stdout).contains(f["measure"].as_str().unwrap_or("?")),
            "{}",
            text(&o)
        );
    }
    // Streamed and local training learn the same model from the same samples.
    let acc: Vec<&serde_json::Value> = figures
        .iter()
        .filter(|f| {
            f["measure"]
                .as_str()
                .is_some_and(|m| m.trim() == "test accuracy")
        })
        .collect();
    assert!(!acc.is_empty(), "{v}");
    for f in acc {
        assert_eq!(f["ratio"].as_f64(), Some(1.0), "{f}");
    }
    // Nothing is left running: the bench stops its nodes.
    let net = work.join("net").join("network.json");
    if let Ok(b) = std::fs::read(&net) {
        let n: serde_json::Value = serde_json::from_slice(&b).expect("network.json");
        for node in n["nodes"].as_array().into_iter().flatten() {
            let pid = node["pid"].as_u64().expect("pid");
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&cmdline).contains(work.to_str().expect("utf-8")),
                "node pid {pid} still running"
            );
        }
    }
}

#[test]
fn the_scale_part_measures_each_size_and_compares_the_largest_with_the_smallest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("scale.json");
    let o = run(
        &[
            "bench",
            "--only",
            "scale",
            "--scale-nodes",
            "9,6",
            "--scale-mib",
            "1",
            "--scale-rounds",
            "2",
            "--json",
            json.to_str().expect("utf-8"),
            "--dir",
            dir.path().join("work").to_str().expect("utf-8"),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("the JSON is written")).expect("json");
    // One row per size, smallest first, each from nodes that really held the push.
    let rows = v["scale"].as_array().expect("scale rows");
    let sizes: Vec<u64> = rows.iter().filter_map(|r| r["nodes"].as_u64()).collect();
    assert_eq!(sizes, [6, 9], "{v}");
    for r in rows {
        for key in [
            "connections",
            "rss_mib",
            "pss_mib",
            "push_control_bytes_per_sec",
            "pieces",
        ] {
            assert!(r[key].as_f64().is_some_and(|x| x > 0.0), "{key}: {r}");
        }
    }
    // Read after write on the largest network: every round read at once, every way.
    let raw = &v["read_after_write"];
    assert_eq!(raw["nodes"], 9, "{raw}");
    assert_eq!(raw["rounds"], 2, "{raw}");
    assert_eq!(raw["held"], 2, "{raw}");
    // The largest against the smallest, in the table and the JSON.
    for what in ["connections", "RSS", "PSS", "control traffic during a push"] {
        let measure = format!("scale: {what} per node, 9 nodes");
        let f = v["figures"]
            .as_array()
            .expect("figures")
            .iter()
            .find(|f| f["measure"] == measure.as_str())
            .unwrap_or_else(|| panic!("no {measure:?} in {v}"));
        assert_eq!(f["baseline"], "the same at 6 nodes", "{f}");
        let (value, base) = (
            f["value"].as_f64().expect("value"),
            f["baseline_value"].as_f64().expect("baseline"),
        );
        assert!(
            (f["ratio"].as_f64().expect("ratio") - value / base).abs() < 1e-9,
            "{f}"
        );
        assert!(
            String::from_utf8_lossy(&o.stdout).contains(&measure),
            "{}",
            text(&o)
        );
    }
}
