use std::net::SocketAddr;

use ed25519_dalek::SigningKey;
use proptest::prelude::*;

use super::*;
use crate::{
    ids::{StripeId, VersionId},
    location::{Holder, PlacementRecord},
    manifest::PublisherKey,
};

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
        moves(&current, &update),
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
        moves(&current, &u.sign_as_node(&node(b).0))
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
    assert_eq!(
        by(3, &readdress),
        Ok(vec![]),
        "a node may give its own address"
    );
    assert_eq!(by(1, &|_| {}), Err(UpdateError::Nothing));
    // The publisher's word needs nothing shown.
    let mut p = r.clone();
    p.seq = 11;
    p.holders = vec![None; 6];
    assert_eq!(moves(&current, &p.sign(&key)), Ok(vec![]));
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
        if let Ok(ms) = moves(&current, &update) {
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

    /// Of the records a lookup finds, strangers' updates never win over the publisher's.
    #[test]
    fn the_current_record_is_the_publishers_or_its_groups(
        strangers in proptest::collection::vec((100u8..120, 11u64..50), 0..6),
        member in proptest::option::of(1u8..7),
    ) {
        let (key, r) = published(6, 10);
        let key_of = r.key();
        let mut found = vec![r.clone().sign(&key)];
        for (b, seq) in &strangers {
            let mut u = r.clone();
            u.seq = *seq;
            u.holders[0] = Some(holder(*b));
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
        let (cur, proof) = current(&key_of, &found).expect("the publisher's record is there");
        prop_assert_eq!(proof, Proof::Chain);
        match member {
            Some(_) => prop_assert_eq!(cur.record().seq, 60),
            None => prop_assert!(cur.by_publisher()),
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
        current(&r.key(), std::slice::from_ref(&update)),
        Some((update, Proof::Hint))
    );
    // A signer that the record does not name is not even a hint.
    let stranger = u.sign_as_node(&node(77).0);
    assert_eq!(current(&r.key(), &[stranger]), None);
}
