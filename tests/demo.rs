//! `cairn demo`, the README's first command, run as a user runs it: every step happens on
//! real node processes, it ends with full redundancy and identical training runs, and it
//! leaves nothing behind, also when interrupted with Ctrl-C.

mod common;

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use common::{cairn, text};

/// The pids `network.json` under `net` lists.
fn pids(net: &Path) -> Vec<u32> {
    let v: serde_json::Value = std::fs::read(net.join("network.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    v["nodes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n["pid"].as_u64().and_then(|p| u32::try_from(p).ok()))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `pid` is a live process (not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next())
            != Some("Z")
    })
}

fn wait_gone(pids: &[u32]) {
    let t0 = Instant::now();
    while pids.iter().any(|&p| alive(p)) {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "node processes left running: {:?}",
            pids.iter().filter(|&&p| alive(p)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_demo_runs_the_main_job_end_to_end_and_cleans_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().join("work");
    let o = cairn()
        .args(["demo", "--dir"])
        .arg(&work)
        .output()
        .expect("cairn runs");
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "demo failed: {}", text(&o));
    for n in 1..=8 {
        assert!(
            out.contains(&format!("[{n}/8]")),
            "step {n} missing:\n{out}"
        );
    }
    for needle in [
        "6 node processes on 127.0.0.1",
        "published uci/iris@",
        "any 2 nodes may vanish",
        "every holder was challenged",
        "found its copy of",
        "joins in place of",
        "every stripe again survives any 2 losses",
        "the same samples in the same order and the same losses, bit for bit",
        "/v1/datasets/uci/iris/resolve/latest/iris.csv",
        "summary",
        "identical runs",
        "stopped the nodes",
    ] {
        assert!(out.contains(needle), "{needle:?} missing:\n{out}");
    }
    // The model learned: the streamed run's accuracy is printed, and it is high.
    let acc: f64 = out
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("streamed from the peers: test accuracy ")
        })
        .and_then(|l| l.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no accuracy line:\n{out}"));
    assert!(acc >= 0.9, "accuracy {acc}:\n{out}");
    // Nothing keeps running; the kept dir still has the logs.
    wait_gone(&pids(&work.join("net")));
    assert!(work.join("net").join("node-0").join("node.log").exists());
}

#[test]
fn ctrl_c_stops_the_nodes_and_removes_the_temporary_dir() {
    let mut child = cairn()
        .arg("demo")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("cairn runs");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    // "cairn demo: ... (work dir /tmp/cairn-demo-XXXX)"
    let first = lines.next().expect("a first line").expect("utf-8");
    let work: PathBuf = first
        .rsplit_once("(work dir ")
        .and_then(|(_, d)| d.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no work dir in {first:?}"))
        .into();
    // Interrupt once the network is up and the dataset pushed.
    let mut seen = vec![first];
    for l in lines.by_ref() {
        let l = l.expect("utf-8");
        let at_push = l.starts_with("[3/8]");
        seen.push(l);
        if at_push {
            break;
        }
    }
    let nodes = pids(&work.join("net"));
    assert!(nodes.len() >= 6, "{seen:?}");
    assert!(nodes.iter().all(|&p| alive(p)));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid")),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
    for _ in lines {}
    let status = child.wait().expect("demo ends");
    assert_eq!(status.code(), Some(130), "{status:?}");
    wait_gone(&nodes);
    assert!(!work.exists(), "{} was left behind", work.display());
}

#[test]
fn too_few_nodes_are_refused_with_a_clear_error() {
    let o = cairn()
        .args(["demo", "--nodes", "5"])
        .output()
        .expect("cairn runs");
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--nodes 5 is too few"),
        "{}",
        text(&o)
    );
}
