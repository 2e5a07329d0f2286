//! The scale part: networks of growing size holding the same data per node. What one
//! node costs (connections, memory, control traffic idle and during a push, what it keeps
//! about others) should grow with what it holds, not with the network: each figure at the
//! largest size is compared with the smallest.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use serde::Serialize;

use super::{
    BenchNet, K, M, Results, client_env, median,
    procfs::{pss, rss},
    push,
    read_after_write::read_after_write,
};
use crate::network_cmd::{self, UpArgs};

/// How long a new network settles (dials, identify, Kademlia) before the push.
const SETTLE: Duration = Duration::from_secs(10);
/// How long the idle traffic is watched: a network holding the pushed data, doing what
/// such a network does unasked (announcements, audits, DHT upkeep). Three audit rounds
/// and three full announcements at the settings the bench gives its nodes.
const IDLE: Duration = Duration::from_secs(30);
/// Mean seconds between a node's audit rounds in the bench's networks.
const AUDIT_SECS: f64 = 10.0;

/// One network size's per-node figures (medians over its nodes).
#[derive(Debug, Clone, Serialize)]
pub(super) struct ScaleRow {
    nodes: usize,
    connections: f64,
    rss_mib: f64,
    /// Proportional memory: what the nodes take together, divided among them.
    pss_mib: f64,
    idle_control_bytes_per_sec: f64,
    push_control_bytes_per_sec: f64,
    holder_entries: f64,
    ledger_entries: f64,
    /// Pieces per node, to show the data per node stayed the same.
    pieces: f64,
}

/// What one node's `/metrics` says, the figures this part reads.
#[derive(Debug, Default, Clone, Copy)]
struct Scrape {
    /// Every libp2p transport byte, both ways.
    control_bytes: f64,
    connections: f64,
    holder_entries: f64,
    ledger_entries: f64,
    pieces: f64,
}

fn scrape(http: &str) -> Result<Scrape> {
    let text = ureq::get(format!("{http}/metrics"))
        .call()
        .with_context(|| format!("cannot read {http}/metrics"))?
        .body_mut()
        .read_to_string()?;
    // The sum over every line of the metric `name` (any labels).
    let sum = |name: &str| -> f64 {
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    Ok(Scrape {
        control_bytes: sum("libp2p_bandwidth_bytes_total"),
        connections: sum("cairn_connections_open"),
        holder_entries: sum("cairn_holder_entries"),
        ledger_entries: sum("cairn_ledger_entries"),
        pieces: sum("cairn_pieces_held"),
    })
}

fn scrape_all(net: &BenchNet) -> Result<Vec<Scrape>> {
    net.net.nodes.iter().map(|n| scrape(&n.http)).collect()
}

/// Per-node rate of control bytes between two scrapes `secs` apart: the median.
fn rate(before: &[Scrape], after: &[Scrape], secs: f64) -> f64 {
    median(
        before
            .iter()
            .zip(after)
            .map(|(b, a)| (a.control_bytes - b.control_bytes) / secs.max(1e-9))
            .collect(),
    )
}

/// Runs each size in turn, pushing `mib_per_node` MiB of data per node, and adds each
/// figure at the largest size against the smallest to `r`; on the largest network that
/// runs, then `raw_rounds` rounds of read after write.
pub(super) fn scale(
    r: &mut Results,
    root: &Path,
    sizes: &[usize],
    mib_per_node: u64,
    raw_rounds: usize,
) -> Result<Vec<ScaleRow>> {
    let mut rows = Vec::new();
    println!(
        "  scale: {} nodes, {mib_per_node} MiB per node (k={K} m={M})",
        sizes
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  {:>6} {:>12} {:>9} {:>9} {:>16} {:>16} {:>14} {:>14} {:>9}",
        "nodes",
        "connections",
        "RSS MiB",
        "PSS MiB",
        "idle ctl B/s",
        "push ctl B/s",
        "holder entries",
        "ledger entries",
        "pieces"
    );
    for (at, &n) in sizes.iter().enumerate() {
        if let Err(why) = fits(&rows, n, 0) {
            println!("  {n:>6} skipped: {why}");
            continue;
        }
        let dir = root.join(format!("scale-{n}"));
        let net = BenchNet {
            net: network_cmd::start(&UpArgs {
                announce_secs: 10,
                audit_secs: Some(AUDIT_SECS),
                timeout_secs: 60 + 2 * n as u64,
                ..UpArgs::new(n, dir.clone())
            })?,
            dir,
        };
        let env_cfg = root.join(format!("scale-{n}-config"));
        let env = client_env(
            &net.net.nodes[0].peer,
            env_cfg.to_str().context("work dir is not UTF-8")?,
        );
        std::thread::sleep(SETTLE);
        let b = scrape_all(&net)?;
        // A push of the same data per node.
        let src = root.join(format!("scale-{n}-data"));
        std::fs::create_dir_all(&src)?;
        let files = 4;
        let per = (mib_per_node << 20) * n as u64 / files;
        for i in 0..files {
            let data = storage_node::local::synthetic(per as usize, 1000 + i);
            std::fs::write(src.join(format!("part-{i}.bin")), data)?;
        }
        let t = Instant::now();
        push(src.to_str().context("UTF-8")?, "bench/scale", &env)?;
        let took = t.elapsed().as_secs_f64();
        let c = scrape_all(&net)?;
        let during = rate(&b, &c, took);
        std::fs::remove_dir_all(&src).ok();
        // What each node keeps once the push has settled, and connections made for the
        // push and its records have sat idle long enough to close.
        std::thread::sleep(storage_node::net::DEFAULT_IDLE_TIMEOUT + Duration::from_secs(5));
        let d = scrape_all(&net)?;
        // Idle: the network holding the data, with nothing asked of it.
        let t = Instant::now();
        std::thread::sleep(IDLE);
        let e = scrape_all(&net)?;
        let idle = rate(&d, &e, t.elapsed().as_secs_f64());
        let med = |f: fn(&Scrape) -> f64| median(d.iter().map(f).collect());
        let row = ScaleRow {
            nodes: n,
            connections: med(|s| s.connections),
            rss_mib: median(
                net.net
                    .nodes
                    .iter()
                    .map(|x| rss(x.pid) as f64 / (1 << 20) as f64)
                    .collect(),
            ),
            pss_mib: median(
                net.net
                    .nodes
                    .iter()
                    .map(|x| pss(x.pid) as f64 / (1 << 20) as f64)
                    .collect(),
            ),
            idle_control_bytes_per_sec: idle,
            push_control_bytes_per_sec: during,
            holder_entries: med(|s| s.holder_entries),
            ledger_entries: med(|s| s.ledger_entries),
            pieces: med(|s| s.pieces),
        };
        println!(
            "  {:>6} {:>12.0} {:>9.1} {:>9.1} {:>16.0} {:>16.0} {:>14.0} {:>14.0} {:>9.0}",
            row.nodes,
            row.connections,
            row.rss_mib,
            row.pss_mib,
            row.idle_control_bytes_per_sec,
            row.push_control_bytes_per_sec,
            row.holder_entries,
            row.ledger_entries,
            row.pieces
        );
        // On the largest network that runs: the next sizes, if any, would not fit once
        // this one is gone.
        let freed = (row.pss_mib * n as f64 * f64::from(1u32 << 20)) as u64;
        rows.push(row);
        let largest = sizes[at + 1..]
            .iter()
            .all(|&m| fits(&rows, m, freed).is_err());
        if raw_rounds > 0 && largest {
            let raw = read_after_write(&net, root, raw_rounds)?;
            r.add(
                &format!("scale: read after write, {n} nodes"),
                (raw.held as f64, "rounds"),
                "rounds run",
                raw_rounds as f64,
                "goal 1.0: every read at once after every push",
            );
            r.read_after_write = Some(raw);
        }
        drop(net);
    }
    if let (Some(lo), Some(hi)) = (rows.first(), rows.last())
        && rows.len() > 1
    {
        let base = format!("the same at {} nodes", lo.nodes);
        let note = "goal <= 1.3: a node's cost independent of the network's size";
        for (what, unit, v, b) in [
            ("connections", "conns", hi.connections, lo.connections),
            ("RSS", "MiB", hi.rss_mib, lo.rss_mib),
            ("PSS", "MiB", hi.pss_mib, lo.pss_mib),
            (
                "idle control traffic",
                "B/s",
                hi.idle_control_bytes_per_sec,
                lo.idle_control_bytes_per_sec,
            ),
            (
                "control traffic during a push",
                "B/s",
                hi.push_control_bytes_per_sec,
                lo.push_control_bytes_per_sec,
            ),
            (
                "holder entries",
                "entries",
                hi.holder_entries,
                lo.holder_entries,
            ),
            (
                "ledger entries",
                "entries",
                hi.ledger_entries,
                lo.ledger_entries,
            ),
        ] {
            let measure = format!("scale: {what} per node, {} nodes", hi.nodes);
            if b > 0.0 {
                r.add(&measure, (v, unit), &base, b, note);
            } else {
                println!(
                    "  {measure:<44} {v:>10.0} {unit:<6} (0 at {} nodes: no ratio)",
                    lo.nodes
                );
            }
        }
    }
    Ok(rows)
}

/// Whether `n` nodes fit in the memory available and `freed` bytes more, judged from the
/// sizes run so far.
fn fits(rows: &[ScaleRow], n: usize, freed: u64) -> Result<(), String> {
    match (memory_needed(rows, n), mem_available().map(|a| a + freed)) {
        (Some(need), Some(have)) if need > have => Err(format!(
            "its nodes would need about {:.1} GiB of memory (from the sizes run so far); {:.1} GiB is available",
            need as f64 / f64::from(1u32 << 30),
            have as f64 / f64::from(1u32 << 30)
        )),
        _ => Ok(()),
    }
}

/// Bytes of memory `n` nodes would take, extrapolating per-node PSS linearly in the
/// network's size from the sizes run so far (with a third to spare); `None` before two.
/// PSS, not RSS: the nodes share one binary's pages, which RSS counts in every one.
fn memory_needed(rows: &[ScaleRow], n: usize) -> Option<u64> {
    let [.., a, b] = rows else {
        return None;
    };
    let slope = (b.pss_mib - a.pss_mib) / (b.nodes as f64 - a.nodes as f64).max(1.0);
    let per_node = (b.pss_mib + slope.max(0.0) * (n as f64 - b.nodes as f64)).max(b.pss_mib);
    Some((per_node * n as f64 * 4.0 / 3.0 * f64::from(1u32 << 20)) as u64)
}

/// `MemAvailable` from `/proc/meminfo`, in bytes.
fn mem_available() -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}
