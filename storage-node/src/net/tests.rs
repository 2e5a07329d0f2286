//! Nodes and clients in one process, over real sockets on 127.0.0.1.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use super::*;
use crate::{EncodeOptions, ErasureParams, PublisherKey};

pub(super) struct Cluster {
    _dirs: Vec<tempfile::TempDir>,
    nodes: Vec<Node>,
}

async fn cluster(n: usize, capacity: Option<u64>) -> Cluster {
    cluster_with(n, |c| c.capacity = capacity).await
}

async fn cluster_with(n: usize, tune: impl Fn(&mut NodeConfig)) -> Cluster {
    // Logs show with `RUST_LOG=storage_node=debug` (and `--no-capture`).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut dirs = Vec::new();
    let mut nodes: Vec<Node> = Vec::new();
    for _ in 0..n {
        let d = tempfile::tempdir().unwrap();
        let mut cfg = NodeConfig::new(
            d.path().to_path_buf(),
            "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
        );
        cfg.mdns = false;
        tune(&mut cfg);
        // Every earlier node is dialed: the cluster meets at once however loaded the
        // machine, rather than as Kademlia happens to find each node.
        cfg.peers = nodes.iter().map(Node::peer_addr).collect();
        nodes.push(Node::start(cfg).await.unwrap());
        dirs.push(d);
    }
    let t0 = Instant::now();
    while nodes.iter().any(|x| x.status().peers.len() < n - 1) {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "nodes did not meet: each knows {:?}",
            nodes
                .iter()
                .map(|x| (x.peer_id().to_string(), x.status().peers))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Cluster { _dirs: dirs, nodes }
}

/// A cluster of `nodes` nodes (set up by `tune`) and a client of the first, which pushed
/// `len` bytes as `name`, `k + m` pieces a stripe.
async fn pushed_with(
    nodes: usize,
    tune: impl Fn(&mut NodeConfig),
    k: u16,
    m: u16,
    name: &str,
    len: usize,
) -> (Cluster, Client, PublisherKey, PushReport) {
    let c = cluster_with(nodes, tune).await;
    let client = Client::connect(c.nodes[0].peer_addr()).await.unwrap();
    let src = source(len);
    let key = PublisherKey::generate().unwrap();
    let r = client
        .push(
            src.path(),
            opts(k, m, name),
            &key,
            std::sync::Arc::new(|_| {}),
        )
        .await
        .unwrap();
    (c, client, key, r)
}

fn opts(k: u16, m: u16, name: &str) -> EncodeOptions {
    EncodeOptions {
        name: name.parse().unwrap(),
        parent: None,
        license: "CC0-1.0".into(),
        params: ErasureParams::new(k, m, 16 << 10).unwrap(),
        created_unix: 1,
    }
}

fn source(len: usize) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("data.bin"), crate::local::synthetic(len, 9)).unwrap();
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_refuses_without_room_and_publishes_nothing() {
    let c = cluster(3, Some(8 << 10)).await;
    let client = Client::connect(c.nodes[0].peer_addr()).await.unwrap();
    let src = source(200 << 10);
    let key = PublisherKey::generate().unwrap();
    let err = client
        .push(
            src.path(),
            opts(2, 1, "t/full"),
            &key,
            std::sync::Arc::new(|_| {}),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("have room"), "{err}");
    assert!(client.datasets().await.unwrap().is_empty());
    // Too few nodes for k + m is refused before anything is encoded.
    let err = client
        .push(
            src.path(),
            opts(3, 1, "t/wide"),
            &key,
            std::sync::Arc::new(|_| {}),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("4 distinct nodes are needed"),
        "{err}"
    );
    client.shutdown().await;
    for n in c.nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pieces_no_manifest_references_are_deleted_after_the_grace_period() {
    let c = cluster_with(3, |cfg| {
        cfg.announce_interval = Duration::from_millis(300);
        cfg.orphan_grace = Duration::from_millis(600);
    })
    .await;
    let client = Client::connect(c.nodes[0].peer_addr()).await.unwrap();
    let src = source(64 << 10);
    let key = PublisherKey::generate().unwrap();
    let r = client
        .push(
            src.path(),
            opts(2, 1, "t/kept"),
            &key,
            std::sync::Arc::new(|_| {}),
        )
        .await
        .unwrap();
    // A piece some push stored but never published.
    let stray = crate::local::synthetic(5000, 77);
    let stray_id = crate::PieceId::of(&stray);
    c.nodes[1].store().put_piece(stray_id, &stray).unwrap();
    let t0 = Instant::now();
    while c.nodes[1].store().has_piece(&stray_id).unwrap() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the orphan was never collected"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every piece of the published version is still held.
    for p in r.manifest.pieces() {
        assert!(
            c.nodes.iter().any(|n| n.store().has_piece(&p.id).unwrap()),
            "published piece {} was collected",
            p.id
        );
    }
    client.shutdown().await;
    for n in c.nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_fetches_only_from_the_peer_that_asks() {
    let c = cluster(3, None).await;
    // Node 0 asks node 1 to take a piece "from" node 2: refused, nothing fetched.
    let req = wire::Request::Hold {
        piece: [7; 32],
        len: 1024,
        from: c.nodes[2].data().addr(),
    };
    let r = c.nodes[0]
        .control()
        .request(c.nodes[1].peer_id(), vec![c.nodes[1].peer_addr()], req)
        .await
        .unwrap();
    assert!(
        matches!(
            r,
            wire::Response::Error {
                code: wire::ErrorCode::BadRequest,
                ..
            }
        ),
        "{r:?}"
    );
    assert_eq!(c.nodes[1].status().received_bytes, 0);
    for n in c.nodes {
        n.shutdown().await;
    }
}

/// Where a store keeps piece `id` on disk (`pieces/ab/cd/abcd…`).
fn piece_file(n: &Node, id: &crate::PieceId) -> std::path::PathBuf {
    let hex = id.to_string();
    n.store()
        .dir()
        .join("pieces")
        .join(&hex[..2])
        .join(&hex[2..4])
        .join(&hex)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audits_catch_a_corrupt_piece_and_repair_rebuilds_it_elsewhere() {
    let c = cluster_with(7, |cfg| {
        cfg.announce_interval = Duration::from_secs(2);
        cfg.upkeep.audit_interval = Duration::from_millis(400);
        cfg.upkeep.lease = Duration::from_secs(5);
        // Repair any loss at once (the default waits for a second loss in a stripe).
        cfg.upkeep.repair_threshold = Some(6);
    })
    .await;
    let client = Client::connect(c.nodes[0].peer_addr()).await.unwrap();
    let src = source(100 << 10);
    let key = PublisherKey::generate().unwrap();
    let r = client
        .push(
            src.path(),
            opts(4, 2, "t/audited"),
            &key,
            std::sync::Arc::new(|_| {}),
        )
        .await
        .unwrap();
    // Flip a byte of one piece on disk, behind its store's back.
    let piece = r.manifest.files()[0].stripes[0].pieces[0];
    let (bad, _) = c
        .nodes
        .iter()
        .enumerate()
        .find(|(_, n)| n.store().has_piece(&piece.id).unwrap())
        .unwrap();
    let path = piece_file(&c.nodes[bad], &piece.id);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    // An audit finds it; its holder drops it; some other node rebuilds and places it.
    let t0 = Instant::now();
    loop {
        let elsewhere = c
            .nodes
            .iter()
            .enumerate()
            .any(|(i, n)| i != bad && n.store().get_piece(&piece.id).is_ok());
        // The counters are bumped after the placement lands, so wait for them too.
        let repaired = c
            .nodes
            .iter()
            .map(|n| n.status().upkeep.repairs)
            .sum::<u64>()
            >= 1;
        if elsewhere && repaired && !c.nodes[bad].store().has_piece(&piece.id).unwrap() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "corrupt piece not repaired: {:?}",
            c.nodes
                .iter()
                .map(|n| n.status().upkeep)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stats: Vec<_> = c.nodes.iter().map(|n| n.status().upkeep).collect();
    assert!(stats.iter().map(|s| s.audits).sum::<u64>() > 0);
    assert_eq!(stats.iter().map(|s| s.corrupt_dropped).sum::<u64>(), 1);
    assert!(stats.iter().map(|s| s.repairs).sum::<u64>() >= 1);
    // Whatever a repairer heard or missed, the node that spoiled the piece will not take
    // it back for a while.
    let asker = &c.nodes[(bad + 1) % 7];
    let req = wire::Request::Hold {
        piece: piece.id.0,
        len: piece.len,
        from: asker.data().addr(),
    };
    let r = asker
        .control()
        .request(c.nodes[bad].peer_id(), vec![c.nodes[bad].peer_addr()], req)
        .await
        .unwrap();
    assert!(
        matches!(
            r,
            wire::Response::Error {
                code: wire::ErrorCode::Corrupt,
                ..
            }
        ),
        "{r:?}"
    );
    // A push of the same bytes again, meanwhile, places that piece on another node.
    client
        .push(
            src.path(),
            opts(4, 2, "t/audited"),
            &key,
            std::sync::Arc::new(|_| {}),
        )
        .await
        .expect("the push goes around the node that refuses the piece");
    assert!(!c.nodes[bad].store().has_piece(&piece.id).unwrap());
    // Honest nodes pass their audits and earn byte-hours.
    let st = c.nodes[(bad + 1) % 7].status();
    assert!(st.ledger.iter().all(|e| !e.reputation.flagged));
    client.shutdown().await;
    for n in c.nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readers_fetches_stay_within_its_in_flight_budget() {
    let c = cluster(3, None).await;
    let client = Client::connect(c.nodes[0].peer_addr()).await.unwrap();
    let bytes = crate::local::synthetic(1 << 20, 9);
    let src = source(1 << 20);
    let key = PublisherKey::generate().unwrap();
    client
        .push(
            src.path(),
            opts(2, 1, "t/budget"),
            &key,
            std::sync::Arc::new(|_| {}),
        )
        .await
        .unwrap();
    // A stripe here is 2 pieces of 16 KiB: a fetch holds 32 KiB of pieces and 32 KiB
    // decoded. With 100 KiB in flight, one stripe fetch runs at a time.
    let reader = std::sync::Arc::new(
        reader::Reader::new(std::sync::Arc::new(client), 64 << 20).with_in_flight(100 << 10),
    );
    let m = reader
        .manifest(&"t/budget".parse().unwrap(), None)
        .await
        .unwrap();
    let stripes = m.files()[0].stripes.len();
    assert!(stripes >= 16, "{stripes} stripes");
    let mut reads = tokio::task::JoinSet::new();
    for si in 0..stripes {
        let (r, m) = (reader.clone(), m.clone());
        reads.spawn(async move { (si, r.stripe(&m, 0, si).await) });
    }
    let mut got = vec![Vec::new(); stripes];
    while let Some(done) = reads.join_next().await {
        let (si, b) = done.unwrap();
        got[si] = b.unwrap().to_vec();
    }
    assert_eq!(got.concat(), bytes, "the stripes read back are the file");
    let peak = reader.stats().peak_in_flight;
    assert!(
        (64 << 10..=100 << 10).contains(&peak),
        "peak in flight {peak} bytes"
    );
    for n in c.nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_every_task_and_closes_the_store() {
    // Busy nodes: audits, scrubs and announcements running, and a push storing pieces
    // on them when they stop.
    let c = cluster_with(4, |cfg| {
        cfg.announce_interval = Duration::from_millis(300);
        cfg.upkeep.audit_interval = Duration::from_millis(100);
        cfg.upkeep.scrub_interval = Duration::from_millis(100);
    })
    .await;
    let client = Client::connect(c.nodes[0].peer_addr()).await.unwrap();
    let src = source(8 << 20);
    let push = tokio::spawn(async move {
        let key = PublisherKey::generate().unwrap();
        client
            .push(
                src.path(),
                opts(2, 2, "t/shutdown"),
                &key,
                std::sync::Arc::new(|_| {}),
            )
            .await
    });
    let t0 = Instant::now();
    while c
        .nodes
        .iter()
        .any(|n| n.store().piece_ids().unwrap().len() < 4)
    {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the push stored nothing"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let Cluster { _dirs: dirs, nodes } = c;
    for (node, dir) in nodes.into_iter().zip(&dirs) {
        let held = node.store().piece_ids().unwrap().len();
        node.shutdown().await;
        // RocksDB refuses a second open of a database this process still has open: this
        // succeeds only if no task of the node, such as a `Hold` storing a piece, kept
        // the store alive.
        let reopened = crate::store::PieceStore::open(crate::store::StoreOptions {
            dir: dir.path().to_path_buf(),
            capacity: None,
        })
        .expect("the store was closed at shutdown");
        assert!(reopened.0.piece_ids().unwrap().len() >= held);
    }
    // With its nodes gone the push fails; it must not publish or hang.
    assert!(push.await.unwrap().is_err());
}

mod connections;
mod placements;
mod repair;
mod sampling;
