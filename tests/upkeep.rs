//! End-to-end: audits, scrub, repair and byzantine detection on real `cairn node`
//! processes with short timers.

mod common;

use std::path::Path;

use common::{
    KillOnDrop, Net, assert_same, holds_intact, mixed_files, piece_files, status, text, wait_for,
};

/// Timers short enough for a test: an audit round every second or so, a scrub pass every
/// few seconds, and repair of any loss (the default threshold, k + ceil(m/2) = 5 for
/// k=4, m=2, deliberately leaves a single loss unrepaired).
const FAST: &[&str] = &[
    "--audit-secs",
    "1",
    "--scrub-secs",
    "4",
    "--repair-threshold",
    "6",
];

/// Which node data dirs hold an intact copy of `id`.
fn intact_on(dirs: &[&Path], id: &str) -> usize {
    dirs.iter().filter(|d| holds_intact(d, id)).count()
}

#[test]
fn corrupt_pieces_are_found_deleted_and_rebuilt_while_pulls_stay_identical() {
    let net = Net::up_with(7, FAST);
    let src = net.dir.path().join("src");
    let files = mixed_files(&src, 3, 2 << 20);
    let o = net.push(&src, "ivy/scrubbed");
    assert!(o.status.success(), "{}", text(&o));

    // Flip one byte in 5% of all piece files (at least two), spread over the nodes and
    // over the stripes: one piece in a stripe at most, so every stripe keeps m - 1 spare
    // pieces for the faults a network has anyway (more than m bad pieces in one stripe
    // would be data loss, which no repair can undo).
    let nodes = net.nodes();
    let files_on: Vec<Vec<(String, std::path::PathBuf)>> =
        nodes.iter().map(|n| piece_files(&n.data_dir)).collect();
    let total: usize = files_on.iter().map(Vec::len).sum();
    let o = net.cmd(&["dataset", "info", "ivy/scrubbed", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let placement: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let node_of = |peer: &str| nodes.iter().position(|n| n.peer.ends_with(peer));
    let mut corrupted: Vec<(usize, String)> = Vec::new();
    for (si, s) in placement["placement"]
        .as_array()
        .expect("placement")
        .iter()
        .enumerate()
    {
        if corrupted.len() * 20 >= total && corrupted.len() >= 2 {
            break;
        }
        // A different piece index from stripe to stripe, so data and parity both go bad.
        let pieces = s["pieces"].as_array().expect("pieces");
        let pi = si % pieces.len();
        let id = pieces[pi].as_str().expect("id").to_string();
        let holder = s["holders"][pi][0].as_str().expect("holder");
        let ni = node_of(holder).expect("a node of this network");
        let (_, path) = files_on[ni]
            .iter()
            .find(|(x, _)| *x == id)
            .expect("the piece file on its holder");
        let mut b = std::fs::read(path).expect("read piece");
        let at = b.len() / 2;
        b[at] ^= 0x20;
        std::fs::write(path, &b).expect("write piece");
        corrupted.push((ni, id));
    }
    assert!(corrupted.len() >= 2 && corrupted.len() * 20 >= total);
    let spread: std::collections::HashSet<usize> = corrupted.iter().map(|c| c.0).collect();
    assert!(spread.len() >= 2, "the corruption hit one node only");

    // Reads verify every piece, so a pull right away is already identical.
    let dest = net.dir.path().join("during");
    let o = net.pull("ivy/scrubbed", &dest);
    assert!(o.status.success(), "{}", text(&o));
    assert_same(&dest, &files);

    // Each corrupt copy is found (audit or scrub) and deleted, and the piece is whole
    // again on some node (repair may place it back on the node that dropped it, when its
    // scrub found the damage before any audit: a disk that rotted one piece is not a
    // dishonest node). Meanwhile pulls keep giving identical bytes.
    let dirs: Vec<&Path> = nodes.iter().map(|n| n.data_dir.as_path()).collect();
    let corrupt_left = |i: usize, id: &str| {
        piece_files(dirs[i]).iter().any(|(x, _)| x == id) && !holds_intact(dirs[i], id)
    };
    let mut pulls = 0;
    wait_for(
        120,
        || {
            pulls += 1;
            let dest = net.dir.path().join(format!("during-{pulls}"));
            let o = net.pull("ivy/scrubbed", &dest);
            assert!(
                o.status.success(),
                "pull {pulls} during repair: {}",
                text(&o)
            );
            assert_same(&dest, &files);
            std::fs::remove_dir_all(&dest).ok();
            corrupted
                .iter()
                .all(|(i, id)| !corrupt_left(*i, id) && intact_on(&dirs, id) >= 1)
        },
        || {
            let left: Vec<String> = corrupted
                .iter()
                .filter_map(|(i, id)| {
                    if corrupt_left(*i, id) {
                        Some(format!("{id}: the corrupt copy is still on node {i}"))
                    } else if intact_on(&dirs, id) == 0 {
                        Some(format!("{id}: deleted from node {i}, not yet rebuilt"))
                    } else {
                        None
                    }
                })
                .collect();
            format!("not yet repaired: {left:?}")
        },
    );
    // A placement lands on its target before the repairer counts it: wait for the counts.
    let counts = || {
        let stats: Vec<_> = nodes.iter().filter_map(|n| status(&n.http)).collect();
        let dropped: u64 = stats.iter().map(|s| s.upkeep.corrupt_dropped).sum();
        let rebuilt: u64 = stats.iter().map(|s| s.upkeep.pieces_rebuilt).sum();
        (dropped, rebuilt, stats)
    };
    wait_for(
        30,
        || counts().1 >= corrupted.len() as u64,
        || format!("rebuilt fewer pieces than were corrupted: {:?}", counts().2),
    );
    let (dropped, _, stats) = counts();
    assert_eq!(dropped, corrupted.len() as u64, "{stats:?}");

    let dest = net.dir.path().join("after");
    let o = net.pull("ivy/scrubbed", &dest);
    assert!(o.status.success(), "{}", text(&o));
    assert_same(&dest, &files);
    // Nobody honest is flagged for having had a bad disk.
    let o = net.cmd(&[
        "network",
        "status",
        "--dir",
        net.net_dir().to_str().expect("utf-8"),
        "--json",
    ]);
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert!(
        rows.as_array()
            .expect("rows")
            .iter()
            .all(|r| r["flagged"] == false),
        "{rows}"
    );
}

/// The placement summary `dataset info --json` gives: stripes and the node losses every
/// stripe survives right now.
fn tolerance(net: &Net, name: &str) -> Option<(u64, i64)> {
    let o = net.cmd(&["dataset", "info", name, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
    Some((v["stripes"].as_u64()?, v["tolerates"].as_i64()?))
}

/// Waits until every piece in `lost` is whole on one of the `live` data dirs.
fn wait_rebuilt(secs: u64, live: &[&Path], lost: &[String]) {
    wait_for(
        secs,
        || lost.iter().all(|id| intact_on(live, id) >= 1),
        || {
            let left = lost.iter().filter(|id| intact_on(live, id) == 0).count();
            format!("{left} of {} pieces not yet rebuilt", lost.len())
        },
    );
}

#[test]
fn killed_nodes_pieces_are_rebuilt_on_distinct_nodes_and_m_more_losses_are_then_tolerated() {
    let net = Net::up_with(8, FAST);
    let src = net.dir.path().join("src");
    let files = mixed_files(&src, 4, 2 << 20);
    let o = net.push(&src, "jay/durable");
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(tolerance(&net, "jay/durable").map(|t| t.1), Some(2));
    let nodes = net.nodes();
    // Two nodes at once (m = 2): stripes that lose two pieces must have both rebuilt, on
    // two different nodes.
    let victims = [2, 3];
    let lost: Vec<String> = victims
        .iter()
        .flat_map(|&v| piece_files(&nodes[v].data_dir))
        .map(|(id, _)| id)
        .collect();
    assert!(!lost.is_empty(), "the victims held nothing");
    for v in victims {
        net.kill(v);
    }
    let live: Vec<&Path> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| !victims.contains(i))
        .map(|(_, n)| n.data_dir.as_path())
        .collect();
    // Audit rounds come about every second: all is rebuilt within 90 of them.
    wait_rebuilt(90, &live, &lost);
    // Full redundancy again, as the network reports it: every stripe has its 6 pieces on
    // 6 distinct live nodes.
    wait_for(
        30,
        || tolerance(&net, "jay/durable").is_some_and(|(_, t)| t == 2),
        || {
            let o = net.cmd(&["dataset", "info", "jay/durable", "--placement"]);
            let peers: Vec<String> = nodes.iter().map(|n| n.peer.clone()).collect();
            format!(
                "placement: {:?}\nnodes: {peers:?}\n{}",
                tolerance(&net, "jay/durable"),
                String::from_utf8_lossy(&o.stdout)
            )
        },
    );
    // Each lost piece was rebuilt once: the claims kept repairers from doing it twice.
    let rebuilt = || -> u64 {
        nodes
            .iter()
            .filter_map(|n| status(&n.http))
            .map(|s| s.upkeep.pieces_rebuilt)
            .sum()
    };
    wait_for(
        10,
        || rebuilt() >= lost.len() as u64,
        || format!("{} rebuilt, {} lost", rebuilt(), lost.len()),
    );
    assert_eq!(rebuilt(), lost.len() as u64, "a piece was rebuilt twice");
    // So any m = 2 more can go: take the two live nodes holding the most pieces (not
    // node 0, which the commands reach the network through).
    let mut by_load: Vec<(usize, usize)> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 0 && !victims.contains(i))
        .map(|(i, n)| (piece_files(&n.data_dir).len(), i))
        .collect();
    by_load.sort_unstable();
    for &(_, i) in by_load.iter().rev().take(2) {
        net.kill(i);
    }
    let dest = net.dir.path().join("out");
    let o = net.pull("jay/durable", &dest);
    assert!(o.status.success(), "{}", text(&o));
    assert_same(&dest, &files);
}

#[test]
fn a_repairer_killed_mid_repair_leaves_its_stripes_to_the_others() {
    let net = Net::up_with(8, FAST);
    let src = net.dir.path().join("src");
    let files = mixed_files(&src, 4, 2 << 20);
    let o = net.push(&src, "lee/resilient");
    assert!(o.status.success(), "{}", text(&o));
    let nodes = net.nodes();
    let victim = 2;
    let mut lost: Vec<String> = piece_files(&nodes[victim].data_dir)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert!(!lost.is_empty(), "the victim held nothing");
    net.kill(victim);
    // The first node to place a rebuilt piece is in the middle of its repairs (up to 8
    // stripes at once, each a claim, a fetch and placements): kill it there. Not node 0,
    // which the commands reach the network through.
    let mut repairer = None;
    wait_for(
        90,
        || {
            repairer = nodes
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != 0 && i != victim)
                .find(|(_, n)| status(&n.http).is_some_and(|s| s.upkeep.pieces_rebuilt > 0))
                .map(|(i, _)| i);
            repairer.is_some()
        },
        || "no node has rebuilt a piece".into(),
    );
    let repairer = repairer.expect("found above");
    lost.extend(
        piece_files(&nodes[repairer].data_dir)
            .into_iter()
            .map(|(id, _)| id),
    );
    net.kill(repairer);
    // Its claims lapse and the others finish: every piece of both dead nodes is whole on
    // the six left, and every stripe again survives two more losses.
    let live: Vec<&Path> = nodes
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != victim && i != repairer)
        .map(|(_, n)| n.data_dir.as_path())
        .collect();
    wait_rebuilt(150, &live, &lost);
    wait_for(
        30,
        || tolerance(&net, "lee/resilient").is_some_and(|(_, t)| t == 2),
        || format!("placement: {:?}", tolerance(&net, "lee/resilient")),
    );
    let dest = net.dir.path().join("out");
    let o = net.pull("lee/resilient", &dest);
    assert!(o.status.success(), "{}", text(&o));
    assert_same(&dest, &files);
}

/// Starts an extra node that joins through node 0 and misbehaves as `fault` says.
fn faulty_node(net: &Net, name: &str, fault: &str) -> (KillOnDrop, String, String) {
    let dir = net.dir.path().join(name);
    let child = common::cairn()
        .args([
            "node",
            "run",
            "--data-dir",
            dir.to_str().expect("utf-8"),
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--no-mdns",
            "--announce-secs",
            "5",
            "--audit-secs",
            "1",
            "--peer",
            &net.nodes()[0].peer,
            fault,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("node starts");
    let child = KillOnDrop(child);
    let marker = dir.join("node.json");
    wait_for(
        30,
        || marker.exists(),
        || "faulty node did not start".into(),
    );
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&marker).expect("node.json")).expect("json");
    let peer = v["peer"]
        .as_str()
        .expect("peer")
        .rsplit('/')
        .next()
        .expect("id");
    let http = v["http"].as_str().expect("http").to_string();
    (child, peer.to_string(), http)
}

#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "starts misbehaving nodes: needs --features fault-injection (scripts/test)"
)]
fn byzantine_nodes_are_flagged_below_every_honest_node_and_never_read_from() {
    let net = Net::up_with(6, FAST);
    let (_forger, forger, _) = faulty_node(&net, "forger", "--fault-forge-proofs");
    let (_liar, liar, _) = faulty_node(&net, "liar", "--fault-serve-corrupt");
    // Wait until node 0 sees all eight, so the push places pieces on the byzantine two.
    let first = net.nodes()[0].http.clone();
    wait_for(
        60,
        || status(&first).is_some_and(|s| s.peers.len() >= 7),
        || "the network did not see the extra nodes".into(),
    );
    let src = net.dir.path().join("src");
    let files = mixed_files(&src, 5, 2 << 20);
    let o = net.push(&src, "kim/guarded");
    assert!(o.status.success(), "{}", text(&o));

    // Every honest node's ledger ends up flagging both, with scores below every honest
    // node's.
    let honest: Vec<String> = net
        .nodes()
        .iter()
        .map(|n| n.peer.rsplit('/').next().expect("id").to_string())
        .collect();
    let https: Vec<String> = net.nodes().iter().map(|n| n.http.clone()).collect();
    let verdict = || -> Result<(), String> {
        for h in &https {
            let s = status(h).ok_or("a node did not answer")?;
            let rep = |peer: &str| {
                s.ledger
                    .iter()
                    .find(|e| e.peer == peer)
                    .map(|e| e.reputation)
            };
            for bad in [&forger, &liar] {
                let r = rep(bad).ok_or(format!("{bad} not in {h}'s ledger"))?;
                if !r.flagged {
                    return Err(format!("{h} has not flagged {bad}: {r:?}"));
                }
                for good in honest.iter().filter(|p| s.info.peer != **p) {
                    let g = rep(good).ok_or(format!("{good} not in {h}'s ledger"))?;
                    if g.flagged || g.score <= r.score {
                        return Err(format!("{h}: honest {good} {g:?} vs {bad} {r:?}"));
                    }
                }
            }
        }
        Ok(())
    };
    wait_for(120, || verdict().is_ok(), || format!("{:?}", verdict()));

    // Once found out, neither is named as a holder to readers any more.
    let o = net.cmd(&["dataset", "info", "kim/guarded", "--json"]);
    let placement = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        placement.contains("\"holders\"")
            && !placement.contains(&forger)
            && !placement.contains(&liar),
        "a byzantine node is still offered for reads: {placement}"
    );
    // Reads route around both: the pull is identical.
    let dest = net.dir.path().join("out");
    let o = net.pull("kim/guarded", &dest);
    assert!(o.status.success(), "{}", text(&o));
    assert_same(&dest, &files);
}
