//! Nodes and clients in one process, over real sockets on 127.0.0.1.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use super::*;
use crate::{EncodeOptions, ErasureParams, PublisherKey};

struct Cluster {
    _dirs: Vec<tempfile::TempDir>,
    nodes: Vec<Node>,
}

async fn cluster(n: usize, capacity: Option<u64>) -> Cluster {
    cluster_with(n, |c| c.capacity = capacity).await
}

async fn cluster_with(n: usize, tune: impl Fn(&mut NodeConfig)) -> Cluster {
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
        if let Some(first) = nodes.first() {
            cfg.peers = vec![first.peer_addr()];
        }
        nodes.push(Node::start(cfg).await.unwrap());
        dirs.push(d);
    }
    let t0 = Instant::now();
    while nodes.iter().any(|x| x.status().peers.len() < n - 1) {
        assert!(t0.elapsed() < Duration::from_secs(30), "nodes did not meet");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Cluster { _dirs: dirs, nodes }
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
async fn held_pieces_are_found_through_provider_records() {
    let c = cluster(3, None).await;
    let client = Client::connect(c.nodes[0].peer_addr()).await.unwrap();
    let src = source(100 << 10);
    let key = PublisherKey::generate().unwrap();
    let r = client
        .push(
            src.path(),
            opts(2, 1, "t/providers"),
            &key,
            std::sync::Arc::new(|_| {}),
        )
        .await
        .unwrap();
    for piece in r.manifest.pieces() {
        let holders: Vec<_> = c
            .nodes
            .iter()
            .filter(|n| n.store().has_piece(&piece.id).unwrap())
            .map(Node::peer_id)
            .collect();
        assert!(!holders.is_empty());
        let t0 = Instant::now();
        loop {
            let found = c.nodes[2].providers(piece.id).await;
            if found.iter().any(|p| holders.contains(p)) {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "no provider record for {}",
                piece.id
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    client.shutdown().await;
    for n in c.nodes {
        n.shutdown().await;
    }
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
