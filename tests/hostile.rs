//! End-to-end: attacks from throwaway keys against real `cairn node` processes. Each
//! test drives the [`adversary`] (fresh keys, the project's own libp2p stack and wire
//! formats, nothing stored) and ends with honest reads and pulls succeeding and no honest
//! node flagged. One module per family of attacks; what they share is here.

mod adversary;
mod common;

#[path = "hostile/floods.rs"]
mod floods;
#[path = "hostile/placing.rs"]
mod placing;
#[path = "hostile/publishing.rs"]
mod publishing;
#[path = "hostile/records.rs"]
mod records;
#[path = "hostile/soak.rs"]
mod soak;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use adversary::Adversary;
use common::{
    Net, assert_same, mixed_files, node_id, piece_files, placement, status, text, wait_for,
};
use storage_node::{
    NodeId, PieceId,
    audit::Outcome,
    manifest::{PieceRef, Stripe},
    net::wire::{self, Request, Response},
    repair::{self, Claim},
};

/// An audit round every second or so; repair of any loss.
const FAST: &[&str] = &["--audit-secs", "1", "--repair-threshold", "6"];

/// Waits until every node has run `more` audit rounds beyond what it had run now, so
/// whatever was sent before has been taken in or refused.
fn wait_rounds(net: &Net, more: u64) {
    let nodes = net.nodes();
    let rounds = || -> Vec<u64> {
        nodes
            .iter()
            .map(|n| status(&n.http).map_or(0, |s| s.upkeep.audit_rounds))
            .collect()
    };
    let start = rounds();
    wait_for(
        60,
        || {
            rounds()
                .iter()
                .zip(&start)
                .all(|(now, then)| *now >= then + more)
        },
        || format!("audit rounds: {:?} from {start:?}", rounds()),
    );
}

/// Asserts that no live node's ledger has a live node flagged or failing, and that no
/// node is counted as audited by more auditors than there are honest nodes besides it.
/// `dead`: nodes killed by the test (rightly failing).
fn assert_no_honest_node_harmed(net: &Net, dead: &[usize]) {
    let nodes = net.nodes();
    let dead: Vec<&str> = dead.iter().map(|&i| nodes[i].peer.as_str()).collect();
    for n in nodes.iter().filter(|n| !dead.contains(&n.peer.as_str())) {
        let s = status(&n.http).expect("a node status");
        for e in &s.ledger {
            if dead.iter().any(|d| d.ends_with(&e.peer)) {
                continue;
            }
            let r = e.reputation;
            assert!(
                !r.flagged && !r.failing,
                "node {} sees {} as flagged or failing: {r:?}",
                n.peer,
                e.peer
            );
            assert!(
                (r.auditors as usize) < nodes.len(),
                "node {} counts {} auditors of {}: strangers were heard",
                n.peer,
                r.auditors,
                e.peer
            );
        }
    }
}

/// Reads and pulls work: a pull is identical and an HTTP read of a file answers 200.
fn assert_reads_work(net: &Net, name: &str, files: &[(String, blake3::Hash)], tag: &str) {
    let dest = net.dir.path().join(format!("pulled-{tag}"));
    let o = net.pull(name, &dest);
    assert!(o.status.success(), "{}", text(&o));
    assert_same(&dest, files);
    let http = &net.nodes()[1].http;
    let url = format!("{http}/v1/datasets/{name}/resolve/latest/shards/000.bin");
    let body = ureq::get(&url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .expect("body");
    let want = files
        .iter()
        .find(|f| f.0 == "shards/000.bin")
        .expect("file");
    assert_eq!(blake3::hash(&body), want.1);
}
