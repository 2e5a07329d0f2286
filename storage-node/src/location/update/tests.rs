use std::net::SocketAddr;

use ed25519_dalek::SigningKey;
use proptest::prelude::*;

use super::*;
use crate::{
    ids::{StripeId, VersionId},
    location::{Holder, PlacementRecord},
    manifest::PublisherKey,
};

/// The taker's clock in these tests; records are dated a little before.
const NOW: u64 = 1_000_000;

/// A node's signing key and id from one byte.
fn node(b: u8) -> (SigningKey, NodeId) {
    let k = SigningKey::from_bytes(&[b; 32]);
    let id = NodeId(k.verifying_key().to_bytes());
    (k, id)
}

fn holder(b: u8) -> Holder {
    Holder {
        node: node(b).1,
        addrs: vec![SocketAddr::from(([127, 0, 0, 1], 4000 + u16::from(b)))],
    }
}

/// The publisher's record of a stripe of `n` pieces, piece `i` on node `i + 1`.
fn published(n: u8, seq: u64) -> (PublisherKey, PlacementRecord) {
    let key = PublisherKey::from_secret_bytes(&[250; 32]);
    let r = PlacementRecord {
        publisher: key.id(),
        stripe: StripeId([5; 32]),
        version: VersionId([6; 32]),
        file: 0,
        index: 3,
        seq,
        holders: (0..n).map(|i| Some(holder(i + 1))).collect(),
    };
    (key, r)
}

#[test]
fn a_holder_may_move_a_lost_piece_to_a_new_node() {
    let (key, r) = published(6, 10);
    let current = r.clone().sign(&key);
    let mut u = r;
    u.seq = 11;
    u.holders[2] = Some(holder(100));
    let update = u.sign_as_node(&node(5).0);
    assert_eq!(
        moves(&current, &update, NOW),
        Ok(vec![Move {
            index: 2,
            from: Some(node(3).1),
            to: node(100).1,
        }])
    );
}

#[test]
fn what_an_update_may_not_do() {
    let (key, r) = published(6, 10);
    let current = r.clone().sign(&key);
    let by = |b: u8, f: &dyn Fn(&mut PlacementRecord)| {
        let mut u = r.clone();
        u.seq = 11;
        f(&mut u);
        moves(&current, &u.sign_as_node(&node(b).0), NOW)
    };
    let elsewhere = |u: &mut PlacementRecord| u.file = 1;
    assert_eq!(by(1, &elsewhere), Err(UpdateError::Elsewhere));
    let older = |u: &mut PlacementRecord| {
        u.seq = 10;
        u.holders[2] = Some(holder(100));
    };
    assert_eq!(by(1, &older), Err(UpdateError::NotNewer));
    let moved = |u: &mut PlacementRecord| u.holders[2] = Some(holder(100));
    assert_eq!(by(100, &moved), Err(UpdateError::NotInGroup));
    assert_eq!(by(1, &|u| u.holders[2] = None), Err(UpdateError::Removed));
    assert_eq!(
        by(1, &|u| u.holders[2] = Some(holder(1))),
        Err(UpdateError::SelfPlaced)
    );
    assert_eq!(
        by(1, &|u| u.holders[2] = Some(holder(4))),
        Err(UpdateError::Twice)
    );
    assert_eq!(
        by(1, &|u| {
            u.holders[2] = Some(holder(100));
            u.holders[3] = Some(holder(100));
        }),
        Err(UpdateError::Twice)
    );
    let readdress = |u: &mut PlacementRecord| {
        if let Some(h) = u.holders[2].as_mut() {
            h.addrs = vec![SocketAddr::from(([10, 0, 0, 1], 1))];
        }
    };
    assert_eq!(by(1, &readdress), Err(UpdateError::Addresses));
    // A node's own new address rides along with a move, never alone.
    assert_eq!(by(3, &readdress), Err(UpdateError::Nothing));
    assert_eq!(by(1, &|_| {}), Err(UpdateError::Nothing));
    let own_and_move = |u: &mut PlacementRecord| {
        readdress(u);
        u.holders[4] = Some(holder(100));
    };
    assert_eq!(by(3, &own_and_move).map(|m| m.len()), Ok(1));
    // A record dated far ahead would freeze the stripe's record: refused.
    let ahead = |u: &mut PlacementRecord| {
        u.seq = NOW + MAX_AHEAD_MS + 1;
        u.holders[2] = Some(holder(100));
    };
    assert_eq!(by(1, &ahead), Err(UpdateError::Future));
    // The publisher's word needs nothing shown.
    let mut p = r.clone();
    p.seq = 11;
    p.holders = vec![None; 6];
    assert_eq!(moves(&current, &p.sign(&key), NOW), Ok(vec![]));
}

proptest! {
    /// Whatever a signer puts in an update: if it is taken, the signer was in the group,
    /// every holder that changed is a move to be shown (or the signer's own address),
    /// each new holder is named once, and the signer never names itself anew.
    #[test]
    fn taken_updates_only_move_pieces_between_other_nodes(
        n in 1u8..12,
        signer in 1u8..16,
        changes in proptest::collection::vec((0u8..12, proptest::option::of(1u8..16)), 0..6),
    ) {
        let (key, r) = published(n, 10);
        let current = r.clone().sign(&key);
        let mut u = r.clone();
        u.seq = 11;
        for (i, to) in changes {
            if let Some(h) = u.holders.get_mut(usize::from(i)) {
                *h = to.map(holder);
            }
        }
        let update = u.clone().sign_as_node(&node(signer).0);
        if let Ok(ms) = moves(&current, &update, NOW) {
            let me = node(signer).1;
            prop_assert!(r.holders.iter().flatten().any(|h| h.node == me));
            for (i, (was, now)) in r.holders.iter().zip(&u.holders).enumerate() {
                if was == now {
                    continue;
                }
                let now = now.as_ref().expect("no holder removed");
                match ms.iter().find(|m| m.index == i) {
                    Some(m) => {
                        prop_assert_eq!(m.to, now.node);
                        prop_assert_ne!(m.to, me);
                        prop_assert_eq!(m.from, was.as_ref().map(|h| h.node));
                        let named = u.holders.iter().flatten().filter(|h| h.node == m.to).count();
                        prop_assert_eq!(named, 1);
                    }
                    None => prop_assert_eq!(now.node, me),
                }
            }
        }
    }

    /// Of the records a lookup finds, strangers' updates never win over the publisher's,
    /// and only the publisher's record is ever more than a hint.
    #[test]
    fn the_current_record_is_the_publishers_or_a_hint_from_its_group(
        strangers in proptest::collection::vec((100u8..120, 11u64..50, any::<bool>()), 0..6),
        member in proptest::option::of(1u8..7),
    ) {
        let (key, r) = published(6, 10);
        let key_of = r.key();
        let mut found = vec![r.clone().sign(&key)];
        for (b, seq, names_itself) in &strangers {
            let mut u = r.clone();
            u.seq = *seq;
            // Naming itself or another stranger for piece 0.
            u.holders[0] = Some(holder(if *names_itself { *b } else { 150 }));
            found.push(u.sign_as_node(&node(*b).0));
        }
        if let Some(m) = member {
            let mut u = r.clone();
            u.seq = 60;
            // Piece `i` is node `i + 1`'s; the next node signs its move.
            let i = m % 6;
            u.holders[usize::from(i)] = Some(holder(200));
            found.push(u.sign_as_node(&node((i + 1) % 6 + 1).0));
        }
        let (cur, proof) = current(&key_of, &found, NOW).expect("the publisher's record is there");
        match member {
            Some(_) => {
                prop_assert_eq!(cur.record().seq, 60);
                prop_assert_eq!(proof, Proof::Hint);
            }
            None => {
                prop_assert!(cur.by_publisher());
                prop_assert_eq!(proof, Proof::Publisher);
            }
        }
    }
}

#[test]
fn without_the_publishers_record_an_update_is_only_a_hint() {
    let (_, r) = published(4, 10);
    let mut u = r.clone();
    u.seq = 11;
    u.holders[0] = Some(holder(50));
    let update = u.clone().sign_as_node(&node(2).0);
    assert_eq!(
        current(&r.key(), std::slice::from_ref(&update), NOW),
        Some((update, Proof::Hint))
    );
    // A signer that the record does not name is not even a hint, nor one dated ahead.
    let stranger = u.clone().sign_as_node(&node(77).0);
    assert_eq!(current(&r.key(), &[stranger], NOW), None);
    u.seq = NOW + MAX_AHEAD_MS + 1;
    let ahead = u.sign_as_node(&node(2).0);
    assert_eq!(current(&r.key(), &[ahead], NOW), None);
}

/// Piece ids from bytes: equal bytes, a piece that recurs in the stripe.
fn pieces(ids: &[u8]) -> Vec<crate::ids::PieceId> {
    ids.iter().map(|&b| crate::ids::PieceId([b; 32])).collect()
}

#[test]
fn a_repaired_piece_goes_to_the_index_whose_holder_left() {
    // Pieces 1, 2 and 3 are one piece (zero padding); node 2 (index 1) is alive, node 3
    // (index 2) and node 6 (index 5) are gone. A copy placed "for index 1" fills index
    // 2, and the unique piece 5 goes where it was.
    let ids = pieces(&[0, 9, 9, 9, 4, 5]);
    let current: Vec<Option<NodeId>> = (1..=6).map(|b| Some(node(b).1)).collect();
    let gone = |j: usize| j == 2 || j == 5;
    let placed = [(1, node(100).1), (5, node(101).1)];
    assert_eq!(
        assign(&placed, &ids, &current, gone),
        vec![(2, node(100).1), (5, node(101).1)]
    );
}

#[test]
fn a_placement_no_index_needs_is_left_out() {
    let ids = pieces(&[0, 9, 9, 3]);
    let current: Vec<Option<NodeId>> = (1..=4).map(|b| Some(node(b).1)).collect();
    // Every holder of piece 9 still has it; index 3's came back.
    let placed = [(1, node(100).1), (3, node(101).1)];
    assert!(assign(&placed, &ids, &current, |_| false).is_empty());
    // A node already named is not named again, nor one node for two indices.
    let placed = [(3, node(2).1), (1, node(100).1), (2, node(100).1)];
    assert_eq!(
        assign(&placed, &ids, &current, |_| true),
        vec![(1, node(100).1)]
    );
    // An index with no holder takes a placement; one out of range is ignored.
    let mut open = current.clone();
    open[3] = None;
    assert_eq!(
        assign(&[(3, node(100).1), (7, node(101).1)], &ids, &open, |_| {
            false
        }),
        vec![(3, node(100).1)]
    );
}

proptest! {
    /// Whatever the view, the assignment names each node once, fills only indices
    /// whose holder left, and gives each the piece that was placed.
    #[test]
    fn assignments_fill_only_indices_that_lost_their_holder(
        ids in proptest::collection::vec(0u8..3, 1..8),
        gone_mask in any::<u8>(),
        placed in proptest::collection::vec((0usize..10, 100u8..104), 0..6),
    ) {
        let ps = pieces(&ids);
        let current: Vec<Option<NodeId>> =
            (0..ids.len()).map(|i| Some(node(i as u8 + 1).1)).collect();
        let gone = |j: usize| gone_mask & (1 << j) != 0;
        let placed: Vec<(usize, NodeId)> = placed.into_iter().map(|(i, b)| (i, node(b).1)).collect();
        let out = assign(&placed, &ps, &current, gone);
        let mut nodes: Vec<NodeId> = out.iter().map(|(_, n)| *n).collect();
        nodes.sort_unstable_by_key(|n| n.0);
        nodes.dedup();
        prop_assert_eq!(nodes.len(), out.len());
        for (j, n) in &out {
            prop_assert!(gone(*j));
            prop_assert!(placed.iter().any(|(i, m)| m == n && ps.get(*i) == ps.get(*j)));
        }
    }
}
