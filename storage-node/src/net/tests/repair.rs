//! Repair on real nodes: what a node has not heard of is not lost.

use std::time::Duration;

use super::pushed_with;
use crate::{net::Client, repair::stripe_id};

/// A holder whose announcements have not reached a node (it has just joined, or come
/// back) still holds its pieces: the stripe's placement record names it, so a repair's
/// fresh look asks it before rebuilding anything. Without that, a small network rebuilds
/// the piece on its one free node and has none left for a real loss. A piece the named
/// holder no longer has is still counted lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_not_heard_from_is_asked_before_its_piece_is_rebuilt() {
    let (c, client, _key, r) = pushed_with(
        7,
        |cfg| {
            // No announcement or audit round comes during the test to undo the forgetting.
            cfg.announce_interval = Duration::from_secs(3600);
            cfg.upkeep.audit_interval = Duration::from_secs(3600);
            // Any missing piece is a loss to repair.
            cfg.upkeep.repair_threshold = Some(6);
        },
        4,
        2,
        "t/unheard",
        40 << 10,
    )
    .await;
    let stripe = &r.manifest.files()[0].stripes[0];
    let id = stripe_id(stripe);
    let holder_of = |piece| {
        c.nodes
            .iter()
            .position(|n| n.store().has_piece(&piece).unwrap())
            .unwrap()
    };
    let (quiet, looker) = (
        holder_of(stripe.pieces[0].id),
        holder_of(stripe.pieces[1].id),
    );
    // The looker keeps the version's manifest (and so knows the stripe) in a moment.
    let t0 = std::time::Instant::now();
    while c.nodes[looker].pieces_to_rebuild(&id).await.is_none() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the manifest never came"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(c.nodes[looker].pieces_to_rebuild(&id).await, Some(vec![]));
    // The looker forgets what the holder of piece 0 announced: it asks that holder.
    c.nodes[looker].forget_holdings_of(&c.nodes[quiet].peer_id());
    assert_eq!(
        c.nodes[looker].pieces_to_rebuild(&id).await,
        Some(vec![]),
        "a piece whose holder was only unheard would be rebuilt"
    );
    // Once the piece is really gone, asking its holder says so.
    assert!(
        c.nodes[quiet]
            .store()
            .remove_piece(&stripe.pieces[0].id)
            .unwrap()
    );
    c.nodes[looker].forget_holdings_of(&c.nodes[quiet].peer_id());
    assert_eq!(c.nodes[looker].pieces_to_rebuild(&id).await, Some(vec![0]));
    client.shutdown().await;
    for n in c.nodes {
        n.shutdown().await;
    }
}

/// The signing key of the node whose data directory is `dir`.
fn node_key(dir: &std::path::Path) -> ed25519_dalek::SigningKey {
    let key = crate::net::NodeKey::load_or_create(dir).unwrap();
    ed25519_dalek::SigningKey::from_bytes(&key.secret())
}

/// After a holder is lost and its piece rebuilt elsewhere, the stripe's placement record
/// names the new holder: signed by the repairer, one of the group, and found through
/// every node, so readers and the group go to the piece where it now is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_updates_the_stripes_placement_record() {
    let (c, client, _key, r) = pushed_with(
        7,
        |cfg| {
            cfg.announce_interval = Duration::from_secs(2);
            cfg.upkeep.audit_interval = Duration::from_millis(400);
            cfg.upkeep.lease = Duration::from_secs(5);
            cfg.upkeep.repair_threshold = Some(6);
        },
        4,
        2,
        "t/moved",
        40 << 10,
    )
    .await;
    let stripe = &r.manifest.files()[0].stripes[0];
    // A holder other than the node the client talks to is lost, with its piece `at`.
    let (at, lost) = (0..stripe.pieces.len())
        .find_map(|at| {
            let lost =
                (1..7).find(|&i| c.nodes[i].store().has_piece(&stripe.pieces[at].id).unwrap())?;
            Some((at, lost))
        })
        .expect("a piece on a node besides the first");
    let piece = stripe.pieces[at].id;
    let lost_id = c.nodes[lost].node_id();
    let super::Cluster { _dirs, mut nodes } = c;
    nodes.remove(lost).shutdown().await;
    let t0 = std::time::Instant::now();
    let moved = loop {
        let now = client.records(&r.manifest, &[stripe]).await;
        if let Some(h) = now[0]
            .as_ref()
            .and_then(|rec| rec.record().holders[at].clone())
            .filter(|h| h.node != lost_id)
        {
            break (now[0].clone().unwrap(), h);
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "the record still names the lost holder"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (record, holder) = moved;
    assert!(
        !record.by_publisher(),
        "a node of the group signed the update"
    );
    let signer = crate::ids::NodeId(record.signer().0);
    assert!(nodes.iter().any(|n| n.node_id() == signer));
    let new = nodes
        .iter()
        .find(|n| n.node_id() == holder.node)
        .expect("the new holder is a live node");
    assert!(new.store().has_piece(&piece).unwrap(), "it holds the piece");
    // Every node finds it so, through its own store and in the DHT.
    for n in &nodes {
        let reader = Client::connect(n.peer_addr()).await.unwrap();
        let t0 = std::time::Instant::now();
        loop {
            let names_it = |f: &crate::location::SignedPlacement| {
                f.record().holders[at].as_ref().map(|h| h.node) == Some(holder.node)
            };
            let found = reader.records(&r.manifest, &[stripe]).await;
            // And the DHT's copy at the node (each is among the closest peers here).
            let dht = n
                .dht_record(record.record().key().0)
                .await
                .and_then(|b| crate::location::SignedPlacement::decode(&b).ok());
            if found[0].as_ref().is_some_and(names_it) && dht.as_ref().is_some_and(names_it) {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "{} still finds the old record",
                n.peer_id()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        reader.shutdown().await;
    }
    client.shutdown().await;
    for n in nodes {
        n.shutdown().await;
    }
}

/// A node of the group cannot move a piece that its holder still has, even to a node
/// that got a copy, nor date an update ahead to freeze the record, nor publish one
/// through a node: each group member refuses, and the record stands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_member_cannot_move_pieces_that_did_not_move() {
    let (c, client, _key, r) = pushed_with(7, |_| {}, 4, 2, "t/stays", 40 << 10).await;
    let stripe = &r.manifest.files()[0].stripes[0];
    let record = client.records(&r.manifest, &[stripe]).await[0]
        .clone()
        .expect("the publisher's record");
    let node_of = |id| c.nodes.iter().position(|n| n.node_id() == id).unwrap();
    let named = |i: usize| record.record().holders[i].as_ref().unwrap().node;
    // The holder of piece 1 signs; it moves piece 0, which its holder still has, to the
    // node that holds no piece of the stripe, which it first gives a copy.
    let member = node_of(named(1));
    let outsider = c
        .nodes
        .iter()
        .find(|n| (0..6).all(|i| named(i) != n.node_id()))
        .expect("a node outside the group");
    let piece = stripe.pieces[0].id;
    let bytes = c.nodes[node_of(named(0))]
        .store()
        .get_piece(&piece)
        .unwrap();
    outsider.store().put_piece(piece, &bytes).unwrap();
    let signed = |seq: u64| {
        let mut forged = record.record().clone();
        forged.seq = seq;
        forged.holders[0] = Some(crate::location::Holder {
            node: outsider.node_id(),
            addrs: vec![],
        });
        forged.sign_as_node(&node_key(c._dirs[member].path()))
    };
    let now = crate::location::now_ms();
    let cases = [
        (signed(now), false, "not borne out"),
        (
            signed(now + crate::location::update::MAX_AHEAD_MS + 60_000),
            false,
            "dated in the future",
        ),
        (signed(now), true, "never published through a node"),
    ];
    for i in 2..6 {
        let to = Client::connect(c.nodes[node_of(named(i))].peer_addr())
            .await
            .unwrap();
        for (forged, publish, why) in &cases {
            let answer = to
                .ask(crate::net::wire::Request::Place {
                    records: vec![serde_bytes::ByteBuf::from(forged.as_bytes().to_vec())],
                    publish: *publish,
                })
                .await
                .unwrap();
            assert!(
                matches!(&answer, crate::net::wire::Response::Error { message, .. } if message.contains(why)),
                "{why}: {answer:?}"
            );
        }
        let now = to.records(&r.manifest, &[stripe]).await;
        assert_eq!(now[0].as_ref(), Some(&record), "the record stands");
        to.shutdown().await;
    }
    client.shutdown().await;
    for n in c.nodes {
        n.shutdown().await;
    }
}

/// In a network with one node per piece and one to spare, a repair that raced a holder's
/// return leaves a piece on two nodes and none free. A real loss after that is still
/// repaired: a node whose copy is held elsewhere too takes the lost piece.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loss_is_repaired_when_every_node_holds_a_piece_but_one_twice() {
    let (c, client, _key, r) = pushed_with(
        7,
        |cfg| {
            cfg.announce_interval = Duration::from_secs(1);
            cfg.upkeep.audit_interval = Duration::from_millis(400);
            cfg.upkeep.lease = Duration::from_secs(5);
            cfg.upkeep.repair_threshold = Some(6);
        },
        4,
        2,
        "t/twice",
        40 << 10,
    )
    .await;
    let stripe = &r.manifest.files()[0].stripes[0];
    let holds = |i: usize, at: usize| c.nodes[i].store().has_piece(&stripe.pieces[at].id).unwrap();
    let free = (0..7)
        .find(|&i| (0..6).all(|at| !holds(i, at)))
        .expect("one node holds nothing of the stripe");
    // The free node gets a second copy of a piece, as a repair that raced would give it.
    let (twice, from) = (0..6)
        .find_map(|at| Some((at, (0..7).find(|&i| holds(i, at))?)))
        .unwrap();
    let bytes = c.nodes[from]
        .store()
        .get_piece(&stripe.pieces[twice].id)
        .unwrap();
    c.nodes[free]
        .store()
        .put_piece(stripe.pieces[twice].id, &bytes)
        .unwrap();
    // Every node hears it announced.
    let free_peer = c.nodes[free].peer_id().to_string();
    for n in &c.nodes {
        let asker = Client::connect(n.peer_addr()).await.unwrap();
        let t0 = std::time::Instant::now();
        loop {
            let answer = asker
                .ask(crate::net::wire::Request::Locate {
                    pieces: vec![stripe.pieces[twice].id.0],
                })
                .await
                .unwrap();
            if let crate::net::wire::Response::Located(l) = answer
                && l[0].iter().any(|h| h.peer == free_peer)
            {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "no one heard of the copy"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        asker.shutdown().await;
    }
    // A holder of another piece (not the node the client talks to) is lost.
    let (at, lost) = (0..6)
        .filter(|&at| at != twice)
        .find_map(|at| Some((at, (1..7).find(|&i| i != free && holds(i, at))?)))
        .unwrap();
    let piece = stripe.pieces[at].id;
    let super::Cluster { _dirs, mut nodes } = c;
    nodes.remove(lost).shutdown().await;
    let t0 = std::time::Instant::now();
    while !nodes.iter().any(|n| n.store().has_piece(&piece).unwrap()) {
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "the lost piece was not rebuilt: no node counted as free"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    client.shutdown().await;
    for n in nodes {
        n.shutdown().await;
    }
}
