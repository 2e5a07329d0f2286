use proptest::prelude::*;

use super::*;
use crate::{
    manifest::{PieceRef, Stripe},
    repair::stripe_id,
};

fn check(
    r: &SignedPlacement,
    publisher: &PublisherId,
    s: &Stripe,
) -> Result<(), PlacementRecordError> {
    r.check(publisher, &stripe_id(s), s.pieces.len())
}

fn stripe(n: u8) -> Stripe {
    Stripe {
        data_len: 100,
        block_len: 50,
        pieces: (0..n)
            .map(|i| PieceRef {
                id: crate::ids::PieceId([i; 32]),
                len: 50,
            })
            .collect(),
    }
}

fn record(key: &PublisherKey, s: &Stripe, seq: u64) -> SignedPlacement {
    PlacementRecord {
        publisher: key.id(),
        stripe: stripe_id(s),
        version: VersionId([7; 32]),
        file: 1,
        index: 2,
        seq,
        holders: (0..s.pieces.len())
            .map(|i| {
                (i % 3 != 2).then(|| Holder {
                    node: NodeId([i as u8 + 40; 32]),
                    addrs: vec![
                        SocketAddr::from(([127, 0, 0, 1], 4000 + i as u16)),
                        SocketAddr::from(([0xfe80, 0, 0, 0, 0, 0, 0, i as u16], 9)),
                    ],
                })
            })
            .collect(),
    }
    .sign(key)
}

#[test]
fn records_sign_decode_and_check() {
    let key = PublisherKey::from_secret_bytes(&[3; 32]);
    let s = stripe(6);
    let r = record(&key, &s, 9);
    let back = SignedPlacement::decode(r.as_bytes()).expect("verifies");
    assert_eq!(back, r);
    assert_eq!(
        back.record().key(),
        PlacementKey::of(&key.id(), &stripe_id(&s))
    );
    check(&back, &key.id(), &s).expect("the publisher's record for its stripe");
}

#[test]
fn only_the_publisher_says_where_its_stripe_is() {
    let (owner, mallory) = (
        PublisherKey::from_secret_bytes(&[3; 32]),
        PublisherKey::from_secret_bytes(&[4; 32]),
    );
    let s = stripe(6);
    // Mallory signs a record naming the owner as publisher: her own key signed it.
    let mut forged = record(&owner, &s, 1).record().clone();
    forged.holders[0] = Some(Holder {
        node: NodeId([99; 32]),
        addrs: vec![],
    });
    let forged = forged.sign(&mallory);
    assert_eq!(
        check(&forged, &owner.id(), &s),
        Err(PlacementRecordError::NotPublisher)
    );
    // Any changed byte of the owner's record breaks its signature.
    let honest = record(&owner, &s, 1);
    for at in 1..honest.as_bytes().len() {
        let mut b = honest.as_bytes().to_vec();
        b[at] ^= 0x10;
        assert!(
            SignedPlacement::decode(&b).is_err(),
            "byte {at} changed and still verified"
        );
    }
    // A record of another stripe, or of another shape, is not this stripe's.
    assert!(matches!(
        check(&record(&owner, &stripe(5), 1), &owner.id(), &s),
        Err(PlacementRecordError::Mismatch(_))
    ));
}

proptest! {
    /// Any bytes decode or are refused, never a panic; what decodes re-encodes the same.
    /// The bytes are a record cut short or run on, with a few bytes changed, so that
    /// many of them decode.
    #[test]
    fn the_decoder_takes_any_bytes(
        n in 1u8..12,
        len in any::<prop::sample::Index>(),
        tail in proptest::collection::vec(any::<u8>(), 0..8),
        changes in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
    ) {
        let mut bytes = record(&PublisherKey::from_secret_bytes(&[5; 32]), &stripe(n), 3)
            .as_bytes()
            .to_vec();
        bytes.truncate(len.index(bytes.len() + 1));
        bytes.extend(tail);
        for (at, to) in changes {
            if !bytes.is_empty() {
                let at = at.index(bytes.len());
                bytes[at] = to;
            }
        }
        if let Ok((r, signer)) = parse(&bytes) {
            let mut again = r.body(&signer).into_bytes();
            again.extend_from_slice(&bytes[bytes.len() - 64..]);
            prop_assert_eq!(again, bytes);
        }
    }

    #[test]
    fn the_decoder_takes_mutated_records(n in 1u8..20, at in any::<prop::sample::Index>(), to in any::<u8>()) {
        let r = record(&PublisherKey::from_secret_bytes(&[5; 32]), &stripe(n), 3);
        let mut b = r.as_bytes().to_vec();
        let at = at.index(b.len());
        b[at] = to;
        if let Ok(back) = SignedPlacement::decode(&b) {
            prop_assert_eq!(back, r);
        }
    }

    /// Sign then decode gives the same record, whatever its holders.
    #[test]
    fn records_round_trip(holders in proptest::collection::vec(proptest::option::of((any::<[u8; 32]>(), proptest::collection::vec(any::<SocketAddr>(), 0..=MAX_HOLDER_ADDRS))), 0..40), seq in any::<u64>()) {
        let key = PublisherKey::from_secret_bytes(&[6; 32]);
        let r = PlacementRecord {
            publisher: key.id(),
            stripe: StripeId([1; 32]),
            version: VersionId([2; 32]),
            file: 3,
            index: 4,
            seq,
            holders: holders.into_iter().map(|h| h.map(|(n, addrs)| Holder { node: NodeId(n), addrs })).collect(),
        };
        let signed = r.clone().sign(&key);
        prop_assert!(signed.as_bytes().len() <= MAX_PLACEMENT_LEN);
        let back = SignedPlacement::decode(signed.as_bytes()).expect("verifies");
        prop_assert_eq!(&back, &signed);
        prop_assert_eq!(back.record().holders.len(), r.holders.len());
        for (a, b) in back.record().holders.iter().zip(&r.holders) {
            prop_assert_eq!(a.as_ref().map(|h| h.node), b.as_ref().map(|h| h.node));
            let ports = |h: Option<&Holder>| h.map(|h| h.addrs.iter().map(|a| (a.ip(), a.port())).collect::<Vec<_>>());
            prop_assert_eq!(ports(a.as_ref()), ports(b.as_ref()));
        }
    }
}
