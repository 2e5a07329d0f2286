//! `cairn sim scale`: the per-node cost model of `sim::scale` from the command line, at
//! one network size and data volume, across network sizes at the same holdings per node,
//! and beside the figures a scale bench measured.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Deserialize;
use sim::scale::{NodeCost, ScaleParams, node_cost};

use crate::ui::Size;

/// Defaults are Cairn's: its default code and piece size, a node's default announcement
/// and audit periods, in a network of 10,000 nodes holding 10 PB.
#[derive(Debug, Args)]
pub(crate) struct ScaleArgs {
    /// Nodes in the network.
    #[arg(long, default_value_t = 10_000)]
    nodes: u64,
    /// Data published, before coding, e.g. 10PB.
    #[arg(long, default_value = "10PB")]
    data: Size,
    /// Data pieces per stripe.
    #[arg(long, default_value_t = storage_node::erasure::DEFAULT_K)]
    k: u16,
    /// Parity pieces per stripe.
    #[arg(long, default_value_t = storage_node::erasure::DEFAULT_M)]
    m: u16,
    /// Bytes per piece (the block size pushes use), e.g. 1MiB or 64MiB.
    #[arg(long, default_value = "1MiB")]
    piece_size: Size,
    /// Seconds between a node's full announcements.
    #[arg(long, default_value_t = 60.0)]
    announce_secs: f64,
    /// Mean seconds between a node's audit rounds.
    #[arg(long, default_value_t = 600.0)]
    audit_secs: f64,
    /// A `cairn-bench.json` from `cairn bench --only scale`: its measured rows are set
    /// beside what the model says for the same network size and holdings.
    #[arg(long, value_name = "FILE")]
    measured: Option<PathBuf>,
}

/// One row of a scale bench's JSON (`bench_cmd::scale::ScaleRow`).
#[derive(Debug, Deserialize)]
struct Measured {
    nodes: usize,
    connections: f64,
    idle_control_bytes_per_sec: f64,
    holder_entries: f64,
    ledger_entries: f64,
    pieces: f64,
}

/// Network sizes the sweep runs through, besides the one asked for.
const SWEEP: [u64; 5] = [10, 30, 100, 1_000, 10_000];

pub(crate) fn scale(a: ScaleArgs) -> Result<()> {
    if a.nodes < u64::from(a.k) + u64::from(a.m) {
        bail!(
            "a network of {} nodes cannot hold stripes of {} pieces on distinct nodes; give --nodes at least k+m",
            a.nodes,
            a.k + a.m
        );
    }
    let positive = |x: f64| x.is_finite() && x > 0.0;
    if a.k == 0 || a.piece_size.0 == 0 || !positive(a.announce_secs) || !positive(a.audit_secs) {
        bail!("--k, --piece-size, --announce-secs and --audit-secs must be positive");
    }
    let p = ScaleParams {
        nodes: a.nodes as f64,
        data_bytes: a.data.0 as f64,
        k: a.k,
        m: a.m,
        piece_bytes: a.piece_size.0 as f64,
        announce_secs: a.announce_secs,
        audit_secs: a.audit_secs,
        ..ScaleParams::default()
    };
    let c = node_cost(&p, None);
    println!(
        "cairn sim scale: {} nodes, {} of data, code {}+{}, {} pieces (model: `sim::scale`, assumptions below)",
        a.nodes,
        si(p.data_bytes, "B"),
        a.k,
        a.m,
        crate::ui::human(a.piece_size.0)
    );
    println!();
    print_node(&c);
    print_limits(&p, &c);
    println!();
    print_sweep(&p, &c);
    if let Some(file) = &a.measured {
        println!();
        print_measured(file)?;
    }
    println!();
    println!("assumptions: data spread evenly, one piece per stripe per node, co-holders drawn");
    println!("uniformly from the whole network; a node keeps its co-holders and its gossip mesh");
    println!("(2 topics x 6) connected; idle traffic is full announcements, audit rounds and");
    println!("their records, in and out; memory is an idle node's 80 MiB plus 160 B per table");
    println!("entry, and the DHT records it stores for others. Left out: push and start-up");
    println!("traffic, manifests, the Kademlia routing table, capacity-weighted skew.");
    Ok(())
}

fn print_node(c: &NodeCost) {
    println!("  per node");
    let rows: [(&str, String); 11] = [
        ("stored", si(c.stored_bytes, "B")),
        ("pieces held (stripes)", count(c.pieces)),
        ("co-holders (distinct nodes)", count(c.co_holders)),
        ("connections kept", count(c.connections)),
        ("holder-table entries", count(c.holder_entries)),
        ("ledger entries (nodes)", count(c.ledger_entries)),
        ("placement records kept", count(c.placement_records)),
        ("DHT records stored for others", count(c.dht_records)),
        ("memory", si(c.memory_bytes, "B")),
        ("idle control traffic", si(c.idle_bps(), "B/s")),
        (
            "  of which",
            format!(
                "announcements {}, audits {} ({} proofs), records {}",
                si(c.announce_bps, "B/s"),
                si(c.audit_bps, "B/s"),
                si(c.proof_bytes, "B"),
                si(c.records_bps, "B/s")
            ),
        ),
    ];
    for (what, v) in rows {
        println!("    {what:<32} {v}");
    }
}

/// Where the figures pass a node's built-in bounds, and the smallest piece size (a power
/// of two up to the largest block) at which none does.
fn print_limits(p: &ScaleParams, c: &NodeCost) {
    let over = |c: &NodeCost| -> Vec<String> {
        let mut out = Vec::new();
        let bounds = [
            (
                "holder-table entries",
                c.holder_entries,
                storage_node::net::DEFAULT_HOLDER_ENTRIES,
            ),
            (
                "DHT records stored for others",
                c.dht_records,
                storage_node::net::MAX_DHT_RECORDS,
            ),
            (
                "ledger entries",
                c.ledger_entries,
                storage_node::audit::MAX_NODES,
            ),
        ];
        for (what, have, bound) in bounds {
            if have > bound as f64 {
                out.push(format!("{what}: {} > {bound}", count(have)));
            }
        }
        out
    };
    let now = over(c);
    if now.is_empty() {
        println!("  within every bound a node keeps");
        return;
    }
    println!("  past a node's bounds (it drops the excess):");
    for o in &now {
        println!("    {o}");
    }
    let fits = (0..=6)
        .map(|i| f64::from(1u32 << 20) * f64::from(1u32 << i))
        .filter(|&b| b <= f64::from(storage_node::erasure::MAX_BLOCK_SIZE))
        .find(|&b| {
            let q = ScaleParams {
                piece_bytes: b,
                ..p.clone()
            };
            over(&node_cost(&q, None)).is_empty()
        });
    match fits {
        Some(b) => println!("    all fit with pieces of {}", crate::ui::human(b as u64)),
        None => println!("    none of the piece sizes up to the largest block fits them all"),
    }
}

/// The same holdings per node in networks of growing size: what grows with the network.
fn print_sweep(p: &ScaleParams, c: &NodeCost) {
    println!(
        "  the same holdings per node ({} pieces) in networks of growing size",
        count(c.pieces)
    );
    println!(
        "    {:>8} {:>12} {:>12} {:>16} {:>14} {:>12}",
        "nodes", "co-holders", "connections", "holder entries", "idle ctl B/s", "memory MiB"
    );
    let mut sizes: Vec<u64> = SWEEP.to_vec();
    sizes.push(p.nodes as u64);
    sizes.sort_unstable();
    sizes.dedup();
    let sizes: Vec<u64> = sizes
        .into_iter()
        .filter(|&n| n >= u64::from(p.k) + u64::from(p.m))
        .collect();
    // The network's data grows with it, so that each node holds the same.
    let row = |n: u64| {
        node_cost(
            &ScaleParams {
                nodes: n as f64,
                data_bytes: p.data_bytes * n as f64 / p.nodes,
                ..p.clone()
            },
            Some(c.pieces),
        )
    };
    for &n in &sizes {
        let r = row(n);
        println!(
            "    {n:>8} {:>12.0} {:>12.0} {:>16.0} {:>14.0} {:>12.1}",
            r.co_holders,
            r.connections,
            r.holder_entries,
            r.idle_bps(),
            r.memory_bytes / f64::from(1u32 << 20)
        );
    }
    if let (Some(&lo), Some(&hi)) = (sizes.first(), sizes.last()) {
        let (a, b) = (row(lo), row(hi));
        let ratio = |x: f64, y: f64| if x > 0.0 { y / x } else { f64::NAN };
        println!(
            "    ratio {hi}/{lo}: connections {:.2}, holder entries {:.2}, idle traffic {:.2}, memory {:.2}",
            ratio(a.connections, b.connections),
            ratio(a.holder_entries, b.holder_entries),
            ratio(a.idle_bps(), b.idle_bps()),
            ratio(a.memory_bytes, b.memory_bytes)
        );
    }
}

/// The bench's measured rows beside the model at the same size and holdings (k=4 m=2,
/// the bench's code; its nodes audit every 10 s and announce every 10 s; its pieces
/// are of the default 1 MiB block, or smaller at a file's end).
fn print_measured(file: &PathBuf) -> Result<()> {
    let v: serde_json::Value = serde_json::from_slice(
        &std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?,
    )
    .with_context(|| format!("{} is not a cairn bench's JSON", file.display()))?;
    let rows: Vec<Measured> = serde_json::from_value(v.get("scale").cloned().unwrap_or_default())
        .with_context(|| format!("{} has no scale rows", file.display()))?;
    if rows.is_empty() {
        bail!(
            "{} has no scale rows; run `cairn bench --only scale` first",
            file.display()
        );
    }
    println!(
        "  measured ({}) against the model, per node (k=4 m=2, announcements and audits every 10 s)",
        file.display()
    );
    println!(
        "    {:>6} {:>7} {:>22} {:>22} {:>22} {:>26}",
        "nodes",
        "pieces",
        "connections m / model",
        "holder entr. m / model",
        "ledger entr. m / model",
        "idle ctl kB/s m / model"
    );
    for r in &rows {
        let q = ScaleParams {
            nodes: r.nodes as f64,
            k: 4,
            m: 2,
            announce_secs: 10.0,
            audit_secs: 10.0,
            ..ScaleParams::default()
        };
        let c = node_cost(&q, Some(r.pieces));
        println!(
            "    {:>6} {:>7.0} {:>22} {:>22} {:>22} {:>26}",
            r.nodes,
            r.pieces,
            format!("{:.0} / {:.1}", r.connections, c.connections),
            format!("{:.0} / {:.1}", r.holder_entries, c.holder_entries),
            format!("{:.0} / {:.1}", r.ledger_entries, c.ledger_entries),
            format!(
                "{:.1} / {:.1}",
                r.idle_control_bytes_per_sec / 1e3,
                c.idle_bps() / 1e3
            ),
        );
    }
    Ok(())
}

/// `x` with an SI prefix: `1.50 TB`.
fn si(x: f64, unit: &str) -> String {
    let prefixes = ["", "k", "M", "G", "T", "P", "E"];
    let mut v = x;
    let mut i = 0;
    while v.abs() >= 1000.0 && i + 1 < prefixes.len() {
        v /= 1000.0;
        i += 1;
    }
    format!("{v:.2} {}{unit}", prefixes[i])
}

/// A count, rounded.
fn count(x: f64) -> String {
    format!("{x:.0}")
}

#[cfg(test)]
mod tests {
    use super::si;

    #[test]
    fn si_prefixes() {
        assert_eq!(si(1.5e12, "B"), "1.50 TB");
        assert_eq!(si(999.0, "B/s"), "999.00 B/s");
        assert_eq!(si(1e16, "B"), "10.00 PB");
    }
}
