//! Audits and repair on the benchmark network: a round's CPU, disk and wire bytes per
//! node, and the rate of repair after a node is lost, beside the pull.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::{BenchNet, Results, cpu_secs, mbs, median, piece_files, rss};
use crate::{network_cmd, node_cmd::fetch_status};

/// The last lines about repair in each surviving node's log, for a repair that stalled.
fn repair_log(nodes: &[network_cmd::NodeEntry], victim: usize) -> String {
    let mut out = String::new();
    for (i, nd) in nodes.iter().enumerate().filter(|&(i, _)| i != victim) {
        let log = std::fs::read_to_string(&nd.log).unwrap_or_default();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("repair") || l.contains("stripe has fewer"))
            .collect();
        for l in &lines[lines.len().saturating_sub(6)..] {
            out.push_str(&format!(
                "  node {i}: {}\n",
                l.chars().take(300).collect::<String>()
            ));
        }
    }
    out
}

/// Audit cost per round, repair throughput and idle memory on the network `n`, which
/// holds the pushed data.
pub(super) fn upkeep(
    r: &mut Results,
    n: &BenchNet,
    pull_mbs: Option<f64>,
    rss_empty: &[f64],
) -> Result<()> {
    // Idle: the network has been quiet since the transfers (default upkeep timers).
    std::thread::sleep(Duration::from_secs(3));
    let held: u64 = n
        .net
        .nodes
        .iter()
        .filter_map(|x| fetch_status(&x.http).ok())
        .map(|s| s.info.bytes)
        .sum();
    let rss_idle: Vec<f64> = n.net.nodes.iter().map(|x| rss(x.pid) as f64).collect();
    r.add(
        &format!(
            "idle node memory (RSS, median of {}; {:.0} MiB held each)",
            n.net.nodes.len(),
            held as f64 / n.net.nodes.len() as f64 / f64::from(1u32 << 20)
        ),
        (median(rss_idle) / f64::from(1u32 << 20), "MiB"),
        "the same nodes before they held anything",
        median(rss_empty.to_vec()) / f64::from(1u32 << 20),
        "lower is better",
    );
    // Short timers from here: an audit round every 2 s or so, and repair of any loss.
    for i in 0..n.net.nodes.len() {
        network_cmd::stop_node(&n.dir, i)?;
        network_cmd::start_again(
            &n.dir,
            i,
            &[("--audit-secs", "2"), ("--repair-threshold", "6")],
        )?;
    }
    let net = network_cmd::read(&n.dir)?;
    let nodes = &net.nodes;
    // Let the nodes find each other and announce what they hold.
    std::thread::sleep(Duration::from_secs(8));
    // A node busy with a round may miss one status call: ask again before giving up.
    let status = |http: &str| {
        let mut tries = 0;
        loop {
            match fetch_status(http) {
                Ok(s) => return Ok(s),
                Err(e) if tries >= 3 => return Err(e),
                Err(_) => {
                    tries += 1;
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    };
    let snap = || -> Result<(u64, u64, u64, u64, f64, u64)> {
        let mut t = (0, 0, 0, 0, 0.0, 0);
        for nd in nodes {
            let s = status(&nd.http)?;
            t.0 += s.upkeep.audit_rounds;
            t.1 += s.upkeep.audits;
            t.2 += s.upkeep.audit_wire_bytes;
            t.3 += s.upkeep.proof_disk_bytes;
            t.4 += cpu_secs(nd.pid);
            t.5 += s.info.bytes;
        }
        Ok(t)
    };
    let window = Duration::from_secs(20);
    let a0 = snap()?;
    std::thread::sleep(window);
    let a1 = snap()?;
    let rounds = (a1.0 - a0.0).max(1) as f64;
    let held_per_node = a1.5 as f64 / nodes.len() as f64;
    // Baseline: re-hashing one node's held pieces from disk once, timed here.
    let files = piece_files(&nodes[1].data_dir);
    let t = Instant::now();
    let mut hashed = 0u64;
    for (_, p, _) in &files {
        let mut h = blake3::Hasher::new();
        let mut f = std::fs::File::open(p)?;
        hashed += std::io::copy(&mut f, &mut h)?;
    }
    let rehash = t.elapsed().as_secs_f64().max(1e-6) * held_per_node / hashed.max(1) as f64;
    let cpu_round = (a1.4 - a0.4) / rounds;
    r.add(
        &format!(
            "audit round: node CPU, all work ({:.0} challenges/round)",
            (a1.1 - a0.1) as f64 / rounds
        ),
        (cpu_round * 1e3, "ms"),
        "re-hashing the node's held bytes once",
        rehash * 1e3,
        "lower is better; an upper bound",
    );
    r.add(
        "audit round: bytes on the wire",
        ((a1.2 - a0.2) as f64 / rounds, "B"),
        "the node's held bytes",
        held_per_node,
        "lower is better",
    );
    r.add(
        "audit round: piece bytes read to answer",
        ((a1.3 - a0.3) as f64 / rounds, "B"),
        "the node's held bytes",
        held_per_node,
        "lower is better",
    );
    // A challenge reads its sampled leaves and outboard values, once the piece's first
    // challenge has built the outboard (rounds before this window have).
    let challenges = (a1.1 - a0.1).max(1) as f64;
    let mean_piece =
        files.iter().map(|(_, _, l)| *l).sum::<u64>() as f64 / files.len().max(1) as f64;
    r.add(
        "audit challenge (s = 32): bytes read from disk",
        ((a1.3 - a0.3) as f64 / challenges, "B"),
        "the piece's size (what a challenge read before outboards)",
        mean_piece,
        "lower is better; goal at most 64 KiB",
    );

    // Repair: kill a node; time until every piece it held is whole elsewhere.
    let victim = 2;
    let lost = piece_files(&nodes[victim].data_dir);
    let lost_bytes: u64 = lost.iter().map(|(_, _, l)| l).sum();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(nodes[victim].pid)?),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    let t = Instant::now();
    loop {
        let have: std::collections::HashSet<String> = nodes
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != victim)
            .flat_map(|(_, x)| piece_files(&x.data_dir))
            .map(|(id, _, _)| id)
            .collect();
        if lost.iter().all(|(id, _, _)| have.contains(id)) {
            break;
        }
        let limit = Duration::from_secs(if r.quick { 180 } else { 600 });
        if t.elapsed() > limit {
            let missing: Vec<&str> = lost
                .iter()
                .map(|(id, _, _)| id.as_str())
                .filter(|id| !have.contains(*id))
                .collect();
            bail!(
                "repair did not finish in {} s: {} of {} lost pieces are held nowhere ({}); \
                 the node logs under {} say why. What they say of repair:\n{}",
                limit.as_secs(),
                missing.len(),
                lost.len(),
                missing.join(", "),
                n.dir.display(),
                repair_log(nodes, victim)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = t.elapsed();
    if let Some(p) = pull_mbs {
        r.add(
            &format!(
                "repair after a node is lost ({:.0} MiB rebuilt, from the kill)",
                lost_bytes as f64 / f64::from(1u32 << 20)
            ),
            (mbs(lost_bytes, took), "MB/s"),
            "the pull's MB/s",
            p,
            "higher is better; 1/k = 0.25 is the ceiling",
        );
    }
    Ok(())
}
