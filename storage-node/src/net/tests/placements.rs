//! Placement records on real nodes: a push's records are found through every node the
//! moment it returns, kept by the stripes' holders, and no one else's records are taken.

use std::time::{Duration, Instant};

use crate::{
    PublisherKey,
    location::{Holder, PlacementRecord},
    manifest::Stripe,
    net::{
        Client,
        wire::{ErrorCode, Request, Response},
    },
    repair::stripe_id,
};

fn stripes(m: &crate::Manifest) -> Vec<&Stripe> {
    m.files().iter().flat_map(|f| f.stripes.iter()).collect()
}

/// `nodes` nodes and a client of the first, which pushed `len` bytes as `name`.
async fn pushed(
    nodes: usize,
    k: u16,
    m: u16,
    name: &str,
    len: usize,
) -> (super::Cluster, Client, PublisherKey, crate::net::PushReport) {
    super::pushed_with(nodes, |c| c.capacity = None, k, m, name, len).await
}

/// A record of the push's first stripe in `publisher`'s name, signed by `signer`, newer
/// than any, naming `holder` for every piece.
fn first_stripe_record(
    r: &crate::net::PushReport,
    publisher: crate::ids::PublisherId,
    signer: &PublisherKey,
    holder: Option<Holder>,
) -> crate::location::SignedPlacement {
    let stripe = &r.manifest.files()[0].stripes[0];
    PlacementRecord {
        publisher,
        stripe: stripe_id(stripe),
        version: r.manifest.version(),
        file: 0,
        index: 0,
        seq: u64::MAX,
        holders: vec![holder; stripe.pieces.len()],
    }
    .sign(signer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_finds_every_stripe_the_moment_a_push_returns() {
    let (c, client, key, r) = pushed(6, 2, 2, "t/records", 300 << 10).await;
    let all = stripes(&r.manifest);
    assert!(all.len() > 4, "several stripes");
    // At once, through each node: its own store or the DHT.
    for node in &c.nodes {
        let reader = Client::connect(node.peer_addr()).await.unwrap();
        let records = reader.records(&r.manifest, &all).await;
        for (stripe, record) in all.iter().zip(&records) {
            let record = record
                .as_ref()
                .unwrap_or_else(|| panic!("{} found no record of a stripe", node.peer_id()));
            // Each named holder really holds its piece.
            for (piece, holder) in stripe.pieces.iter().zip(&record.record().holders) {
                let holder = holder.as_ref().expect("every piece has a holder");
                let n = c
                    .nodes
                    .iter()
                    .find(|n| n.node_id() == holder.node)
                    .expect("a holder in the network");
                assert!(n.store().has_piece(&piece.id).unwrap());
            }
        }
        reader.shutdown().await;
    }
    // The holders keep their stripes' records too (they take them once they kept the
    // version, in the background).
    let t0 = Instant::now();
    for stripe in &all {
        let k = crate::location::PlacementKey::of(&key.id(), &stripe_id(stripe));
        for n in &c.nodes {
            if !stripe
                .pieces
                .iter()
                .any(|p| n.store().has_piece(&p.id).unwrap())
            {
                continue;
            }
            while n.store().placement(&k).unwrap().is_none() {
                assert!(
                    t0.elapsed() < Duration::from_secs(30),
                    "a holder did not keep its stripe's record"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    client.shutdown().await;
    for n in c.nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_publisher_places_its_stripes() {
    let (c, client, key, r) = pushed(4, 2, 1, "t/owner", 64 << 10).await;
    let stripe = &r.manifest.files()[0].stripes[0];
    let mallory = PublisherKey::generate().unwrap();
    let liar = Holder {
        node: crate::ids::NodeId([7; 32]),
        addrs: vec![],
    };
    let forged = |publisher, signer: &PublisherKey| {
        first_stripe_record(&r, publisher, signer, Some(liar.clone()))
    };
    // In the publisher's name, signed by another key; and in a key that published
    // nothing. Both are refused, and the publisher's record stands.
    for record in [forged(key.id(), &mallory), forged(mallory.id(), &mallory)] {
        let answer = client
            .ask(Request::Place {
                records: vec![serde_bytes::ByteBuf::from(record.as_bytes().to_vec())],
                publish: true,
            })
            .await
            .unwrap();
        assert!(
            matches!(
                answer,
                Response::Error {
                    code: ErrorCode::BadRequest,
                    ..
                }
            ),
            "{answer:?}"
        );
    }
    let records = client.records(&r.manifest, &[stripe]).await;
    let holders = &records[0]
        .as_ref()
        .expect("the publisher's record")
        .record()
        .holders;
    assert!(holders.iter().flatten().all(|h| h.node != liar.node));
    client.shutdown().await;
    for n in c.nodes {
        n.shutdown().await;
    }
}

/// Stores `record` at `node` through a bare Kademlia peer of its own, as a stranger
/// would, and waits for the node's answer.
async fn offer_through_the_dht(node: &crate::net::Node, key: [u8; 32], value: Vec<u8>) {
    use futures::StreamExt;
    use libp2p::{kad, swarm::SwarmEvent};

    let keypair = libp2p::identity::Keypair::generate_ed25519();
    let mut swarm = crate::net::swarm::build(
        keypair,
        crate::net::swarm::Role::Client,
        &crate::net::metrics::NetMetrics::new(),
    )
    .unwrap();
    let addr = node.peer_addr();
    swarm
        .behaviour_mut()
        .kad
        .add_address(&node.peer_id(), addr.clone());
    swarm.dial(addr).unwrap();
    let record = kad::Record::new(kad::RecordKey::new(&key), value);
    swarm
        .behaviour_mut()
        .kad
        .put_record(record, kad::Quorum::One)
        .unwrap();
    let done = async {
        loop {
            if let SwarmEvent::Behaviour(crate::net::swarm::BehaviourEvent::Kad(
                kad::Event::OutboundQueryProgressed {
                    result: kad::QueryResult::PutRecord(r),
                    ..
                },
            )) = swarm.select_next_some().await
            {
                return r.is_ok();
            }
        }
    };
    // The node answers a PUT before it has checked the record: its answer says nothing.
    let _ = tokio::time::timeout(Duration::from_secs(20), done).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dht_keeps_no_record_from_a_key_outside_the_group() {
    let (c, client, key, r) = pushed(3, 2, 1, "t/dht", 64 << 10).await;
    let mallory = PublisherKey::generate().unwrap();
    let bogus = |publisher, signer: &PublisherKey| first_stripe_record(&r, publisher, signer, None);
    // A record in the publisher's name that another key signed; one under a key that
    // published nothing; and bytes that are no record at all.
    let forged = bogus(key.id(), &mallory);
    let stranger = bogus(mallory.id(), &mallory);
    let target = &c.nodes[2];
    // Records of a version the node has not kept yet wait for it: here it has it.
    let t0 = Instant::now();
    while target
        .store()
        .manifest(&r.manifest.version())
        .unwrap()
        .is_none()
    {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the version never came"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    offer_through_the_dht(target, forged.record().key().0, forged.as_bytes().to_vec()).await;
    offer_through_the_dht(
        target,
        stranger.record().key().0,
        stranger.as_bytes().to_vec(),
    )
    .await;
    offer_through_the_dht(target, [9; 32], vec![0xff; 100]).await;
    // A good one, newer than the push's, sent the same way, after the forged one.
    let control = bogus(key.id(), &key);
    offer_through_the_dht(
        target,
        control.record().key().0,
        control.as_bytes().to_vec(),
    )
    .await;
    // The good one is kept by the DHT at the node, so the offers did arrive.
    let t0 = Instant::now();
    while target.dht_record(control.record().key().0).await.as_deref() != Some(control.as_bytes()) {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the publisher's own record was not kept"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // None of the others is.
    assert_eq!(target.dht_record(stranger.record().key().0).await, None);
    assert_eq!(target.dht_record([9; 32]).await, None);
    client.shutdown().await;
    for n in c.nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_outlive_the_node_a_push_went_through() {
    // 96 stripes: several batches of records for each node to check.
    let (mut c, client, _key, r) = pushed(5, 2, 2, "t/outlive", 3 << 20).await;
    client.shutdown().await;
    // The other nodes took the records into the DHT (each once it kept the version: a
    // record offered before waits for it), so they are found with the entry node gone.
    let entry = c.nodes.remove(0);
    entry.shutdown().await;
    let all = stripes(&r.manifest);
    let reader = Client::connect(c.nodes[1].peer_addr()).await.unwrap();
    let t0 = Instant::now();
    loop {
        let found = reader.records(&r.manifest, &all).await;
        if found.iter().all(Option::is_some) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{} of {} records lost with the entry node",
            found.iter().filter(|f| f.is_none()).count(),
            all.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    reader.shutdown().await;
    for n in c.nodes {
        n.shutdown().await;
    }
}

/// The `cairn_dht_records_put` counter of `node`.
fn records_put(node: &crate::net::Node) -> u64 {
    node.metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix("cairn_dht_records_put_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the counter is rendered")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_sent_again_after_busy_are_not_stored_again() {
    let (c, client, _key, r) = pushed(4, 2, 1, "t/again", 200 << 10).await;
    let all = stripes(&r.manifest);
    let put: u64 = c.nodes.iter().map(records_put).sum();
    assert!(
        put >= all.len() as u64,
        "{put} records put for {} stripes",
        all.len()
    );
    // A publisher that heard `Busy` sends its whole batch again: the node the push went
    // through answers at once, and stores none of it again.
    let records: Vec<serde_bytes::ByteBuf> = client
        .records(&r.manifest, &all)
        .await
        .into_iter()
        .map(|r| serde_bytes::ByteBuf::from(r.expect("a record").as_bytes().to_vec()))
        .collect();
    let again = Request::Place {
        records,
        publish: true,
    };
    let answer = c.nodes[1]
        .control()
        .request(c.nodes[0].peer_id(), vec![c.nodes[0].peer_addr()], again)
        .await
        .unwrap();
    assert!(matches!(answer, Response::Placed { .. }), "{answer:?}");
    assert_eq!(c.nodes.iter().map(records_put).sum::<u64>(), put);
    client.shutdown().await;
    for n in c.nodes {
        n.shutdown().await;
    }
}
