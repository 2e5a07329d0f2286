//! Repair on real nodes: what a node has not heard of is not lost.

use std::time::Duration;

use super::{cluster_with, opts, source};
use crate::{PublisherKey, net::Client, repair::stripe_id};

/// A holder whose announcements have not reached a node (it has just joined, or come
/// back) still holds its pieces: the stripe's placement record names it, so a repair's
/// fresh look asks it before rebuilding anything. Without that, a small network rebuilds
/// the piece on its one free node and has none left for a real loss. A piece the named
/// holder no longer has is still counted lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_not_heard_from_is_asked_before_its_piece_is_rebuilt() {
    let c = cluster_with(7, |cfg| {
        // No announcement or audit round comes during the test to undo the forgetting.
        cfg.announce_interval = Duration::from_secs(3600);
        cfg.upkeep.audit_interval = Duration::from_secs(3600);
        // Any missing piece is a loss to repair.
        cfg.upkeep.repair_threshold = Some(6);
    })
    .await;
    let client = Client::connect(c.nodes[0].peer_addr()).await.unwrap();
    let src = source(40 << 10);
    let key = PublisherKey::generate().unwrap();
    let r = client
        .push(
            src.path(),
            opts(4, 2, "t/unheard"),
            &key,
            std::sync::Arc::new(|_| {}),
        )
        .await
        .unwrap();
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
