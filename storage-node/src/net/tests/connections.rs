//! Bounded connections: a node keeps its co-holders and its gossip mesh connected and
//! closes every other connection once idle; reads and repair work all the same.

use std::{collections::HashSet, time::Duration};

use libp2p::PeerId;

use super::*;

/// Ten nodes with a small gossip mesh and a 1 s idle time. Once a push has placed its
/// stripes: each node is, at some moment, connected to nothing beyond its co-holders
/// and its mesh, while every pair of nodes that hold pieces of one stripe stays
/// connected throughout; a read through a node that holds nothing works; and a lost
/// holder's piece is rebuilt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_and_co_holders_stay_connected() {
    const N: usize = 10;
    // Three stripes of three pieces: at least one of the ten nodes holds nothing.
    let len = 96 << 10;
    let (c, client, _key, r) = pushed_with(
        N,
        |cfg| {
            cfg.idle_timeout = Duration::from_secs(1);
            cfg.gossip_mesh = 1;
            cfg.announce_interval = Duration::from_secs(5);
            cfg.upkeep.audit_interval = Duration::from_millis(500);
            cfg.upkeep.lease = Duration::from_secs(5);
            cfg.upkeep.repair_threshold = Some(3);
        },
        2,
        1,
        "t/bounded",
        len,
    )
    .await;
    let stripes: Vec<&crate::manifest::Stripe> = r
        .manifest
        .files()
        .iter()
        .flat_map(|f| f.stripes.iter())
        .collect();
    // Who holds a piece of which stripe, from the stores themselves.
    let holds = |nodes: &[Node], i: usize, s: &crate::manifest::Stripe| {
        s.pieces
            .iter()
            .any(|p| nodes[i].store().has_piece(&p.id).unwrap())
    };
    let co_holders = |nodes: &[Node], i: usize| -> HashSet<PeerId> {
        stripes
            .iter()
            .filter(|s| holds(nodes, i, s))
            .flat_map(|s| (0..nodes.len()).filter(|&j| j != i && holds(nodes, j, s)))
            .map(|j| nodes[j].peer_id())
            .collect()
    };
    let mut settled = vec![false; N];
    let mut fewest = vec![usize::MAX; N];
    let t0 = Instant::now();
    while settled.iter().any(|s| !s) {
        for i in 0..N {
            let (connected, mesh) = c.nodes[i].connections().await;
            let co = co_holders(&c.nodes, i);
            fewest[i] = fewest[i].min(connected.len());
            if co.is_subset(&c.nodes[i].co_holders())
                && co.is_subset(&connected)
                && connected.iter().all(|p| co.contains(p) || mesh.contains(p))
            {
                settled[i] = true;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "nodes not connected to just their co-holders and mesh: {settled:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("fewest connected peers per node (of {}): {fewest:?}", N - 1);
    assert!(
        fewest.iter().any(|&f| f < N - 1),
        "no node ever had fewer than all its peers connected: {fewest:?}"
    );
    // Co-holders stay connected through many idle times.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) {
        for i in 0..N {
            let (connected, _) = c.nodes[i].connections().await;
            let co = co_holders(&c.nodes, i);
            assert!(
                co.is_subset(&connected),
                "node {i} lost the connection to a co-holder: {:?}",
                co.difference(&connected).collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A read through a node that holds nothing of the data goes to the holders anyway.
    let idle = (1..N)
        .find(|&i| stripes.iter().all(|s| !holds(&c.nodes, i, s)))
        .expect("a node that holds nothing: 9 pieces on 10 nodes");
    let reader = Client::connect(c.nodes[idle].peer_addr()).await.unwrap();
    let dest = tempfile::tempdir().unwrap();
    reader
        .pull(&r.manifest, dest.path(), std::sync::Arc::new(|_| {}))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(dest.path().join("data.bin")).unwrap(),
        crate::local::synthetic(len, 9)
    );
    reader.shutdown().await;

    // A holder leaves (not the node the client talks to): its co-holders see it go at
    // once and rebuild its pieces.
    let lost = (1..N)
        .find(|&i| stripes.iter().any(|s| holds(&c.nodes, i, s)))
        .unwrap();
    let gone: Vec<crate::ids::PieceId> = stripes
        .iter()
        .flat_map(|s| s.pieces.iter().map(|p| p.id))
        .filter(|p| c.nodes[lost].store().has_piece(p).unwrap())
        .collect();
    let super::Cluster { _dirs, mut nodes } = c;
    nodes.remove(lost).shutdown().await;
    let t0 = Instant::now();
    while !gone
        .iter()
        .all(|p| nodes.iter().any(|n| n.store().has_piece(p).unwrap()))
    {
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "the lost holder's pieces were not rebuilt"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    client.shutdown().await;
    for n in nodes {
        n.shutdown().await;
    }
}
