//! Property tests of the whole scheme: honest proofs verify, any tampering fails.

use proptest::prelude::*;

use crate::*;

/// Deterministic piece bytes from a seed (cheaper than letting proptest shrink megabytes).
fn piece(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn challenge(len: usize, nonce: [u8; 32], samples: u16) -> Challenge {
    Challenge {
        piece: Hash([0xAB; 32]),
        piece_len: len as u64,
        nonce: Nonce(nonce),
        samples,
    }
}

fn flip(bytes: &mut [u8], bit: usize) {
    let bit = bit % (bytes.len() * 8);
    bytes[bit / 8] ^= 1 << (bit % 8);
}

/// Piece lengths around the interesting edges: empty, one byte, leaf boundaries, odd levels.
fn piece_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0usize),
        Just(1),
        Just(LEAF_SIZE - 1),
        Just(LEAF_SIZE),
        Just(LEAF_SIZE + 1),
        0usize..8 * LEAF_SIZE,
        0usize..600 * LEAF_SIZE,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn honest_proofs_verify_and_round_trip(
        seed in any::<u64>(), len in piece_len(), nonce in any::<[u8; 32]>(), s in 1u16..=64
    ) {
        let data = piece(seed, len);
        let root = commitment(&data);
        let c = challenge(data.len(), nonce, s);
        let proof = Proof::create(&data, &c).unwrap();
        prop_assert_eq!(verify(&root, &c, &proof), Ok(()));
        let wire = proof.encode();
        prop_assert_eq!(wire.len(), proof.encoded_len());
        prop_assert!(wire.len() <= MAX_PROOF_LEN);
        let back = Proof::decode(&wire).unwrap();
        prop_assert_eq!(&back, &proof);
        prop_assert_eq!(verify(&root, &c, &back), Ok(()));
    }

    #[test]
    fn any_flipped_leaf_bit_fails(
        seed in any::<u64>(), len in 1usize..64 * LEAF_SIZE, nonce in any::<[u8; 32]>(),
        which in any::<usize>(), bit in any::<usize>()
    ) {
        let data = piece(seed, len);
        let root = commitment(&data);
        let c = challenge(data.len(), nonce, 16);
        let mut proof = Proof::create(&data, &c).unwrap();
        let n = proof.leaves.len();
        flip(&mut proof.leaves[which % n], bit);
        prop_assert_eq!(verify(&root, &c, &proof), Err(ProofError::RootMismatch));
    }

    #[test]
    fn any_flipped_sibling_bit_fails(
        seed in any::<u64>(), len in 2 * LEAF_SIZE..200 * LEAF_SIZE, nonce in any::<[u8; 32]>(),
        which in any::<usize>(), bit in 0usize..256
    ) {
        let data = piece(seed, len);
        let root = commitment(&data);
        let c = challenge(data.len(), nonce, 8);
        let mut proof = Proof::create(&data, &c).unwrap();
        prop_assume!(!proof.siblings.is_empty());
        let n = proof.siblings.len();
        flip(&mut proof.siblings[which % n].0, bit);
        prop_assert_eq!(verify(&root, &c, &proof), Err(ProofError::RootMismatch));
    }

    #[test]
    fn any_flipped_nonce_bit_fails(
        seed in any::<u64>(), len in piece_len(), nonce in any::<[u8; 32]>(), bit in 0usize..256
    ) {
        let data = piece(seed, len);
        let root = commitment(&data);
        let c = challenge(data.len(), nonce, 16);
        let proof = Proof::create(&data, &c).unwrap();
        let mut other = nonce;
        flip(&mut other, bit);
        let c2 = challenge(data.len(), other, 16);
        // The proof names the nonce it answers...
        prop_assert_eq!(verify(&root, &c2, &proof), Err(ProofError::WrongNonce));
        // ...and relabelling it does not help: the new nonce selects other leaves. (With
        // 512 leaves and 16 samples two nonces pick the same set with odds below 1e-30.)
        if leaf_count(data.len() as u64) >= 512 {
            let mut relabelled = proof.clone();
            relabelled.nonce = Nonce(other);
            prop_assert!(verify(&root, &c2, &relabelled).is_err());
        }
    }

    #[test]
    fn a_proof_for_another_length_fails(
        seed in any::<u64>(), len in 1usize..40 * LEAF_SIZE, nonce in any::<[u8; 32]>(),
        delta in 1024usize..5000
    ) {
        let data = piece(seed, len);
        let root = commitment(&data);
        let c = challenge(len, nonce, 16);
        let proof = Proof::create(&data, &c).unwrap();
        // The prover refuses a challenge for a length its bytes do not have...
        let longer = challenge(len + delta, nonce, 16);
        let refused = Proof::create(&data, &longer);
        prop_assert!(matches!(refused, Err(ProveError::LengthMismatch { .. })), "{:?}", refused);
        // ...and a proof does not verify under another tree shape.
        prop_assert!(verify(&root, &longer, &proof).is_err());
    }

    #[test]
    fn truncated_or_padded_proofs_fail(
        seed in any::<u64>(), len in 16 * LEAF_SIZE..100 * LEAF_SIZE, nonce in any::<[u8; 32]>(),
        cut in any::<usize>()
    ) {
        let data = piece(seed, len);
        let root = commitment(&data);
        let c = challenge(data.len(), nonce, 4);
        let proof = Proof::create(&data, &c).unwrap();

        let mut fewer_siblings = proof.clone();
        fewer_siblings.siblings.pop();
        prop_assert_eq!(verify(&root, &c, &fewer_siblings), Err(ProofError::MissingSiblings));

        let mut more_siblings = proof.clone();
        more_siblings.siblings.push(Hash([0; 32]));
        prop_assert_eq!(verify(&root, &c, &more_siblings), Err(ProofError::ExtraSiblings(1)));

        let mut fewer_leaves = proof.clone();
        fewer_leaves.leaves.pop();
        let r = verify(&root, &c, &fewer_leaves);
        prop_assert!(matches!(r, Err(ProofError::WrongLeafCount { .. })), "{:?}", r);

        let mut short_leaf = proof.clone();
        short_leaf.leaves[0].pop();
        let r = verify(&root, &c, &short_leaf);
        prop_assert!(matches!(r, Err(ProofError::WrongLeafLength { .. })), "{:?}", r);

        let wire = proof.encode();
        let at = cut % wire.len();
        prop_assert!(Proof::decode(&wire[..at]).is_err());
        let mut longer = wire.clone();
        longer.push(0);
        prop_assert!(Proof::decode(&longer).is_err());
    }

    #[test]
    fn decoder_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        fuzz_proof_decoder(&bytes);
    }

    #[test]
    fn verify_never_panics_on_arbitrary_proofs(
        len in prop_oneof![Just(0u64), Just(1), Just(1024), Just(1025), Just(MAX_PIECE_LEN), Just(MAX_PIECE_LEN + 1), 0u64..100_000],
        samples in prop_oneof![Just(0u16), Just(1), Just(300), 0u16..64],
        leaves in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..=LEAF_SIZE), 0..8),
        siblings in proptest::collection::vec(any::<[u8; 32]>(), 0..40),
    ) {
        let proof = Proof { nonce: Nonce([1; 32]), leaves, siblings: siblings.into_iter().map(Hash).collect() };
        let c = Challenge { piece: Hash([0; 32]), piece_len: len, nonce: Nonce([1; 32]), samples };
        let _ = verify(&Root([0; 32]), &c, &proof);
    }

    #[test]
    fn decoder_never_panics_on_mutated_proofs(
        seed in any::<u64>(), len in 0usize..20 * LEAF_SIZE, at in any::<usize>(), byte in any::<u8>()
    ) {
        let data = piece(seed, len);
        let mut wire = (data.len() as u64).to_le_bytes().to_vec();
        wire.extend_from_slice(&8u16.to_le_bytes());
        wire.extend(prove(&data, &challenge(data.len(), [1; 32], 8)).unwrap().encode());
        let i = 10 + at % (wire.len() - 10);
        wire[i] = byte;
        fuzz_proof_decoder(&wire);
    }
}

#[test]
fn a_proof_for_another_piece_fails() {
    let a = piece(1, 50 * LEAF_SIZE);
    let b = piece(2, 50 * LEAF_SIZE);
    let c = challenge(a.len(), [5; 32], 32);
    let proof = prove(&b, &c).unwrap();
    assert_eq!(
        verify(&commitment(&a), &c, &proof),
        Err(ProofError::RootMismatch)
    );
}

#[test]
fn multiproof_shares_siblings() {
    let data = piece(3, 1024 * LEAF_SIZE); // 1 MiB: BLAKE3 tree of depth 10
    let c = challenge(data.len(), [6; 32], 32);
    let proof = prove(&data, &c).unwrap();
    let separate_paths = 32 * 10;
    assert!(
        proof.siblings.len() * 10 <= separate_paths * 7,
        "{} siblings, separate paths would need {separate_paths}",
        proof.siblings.len()
    );
}

#[test]
fn hostile_counts_are_refused() {
    // A version byte and nonce, then a leaf count of u32::MAX with no leaves.
    let mut wire = vec![1u8];
    wire.extend_from_slice(&[0; 32]);
    wire.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        Proof::decode(&wire),
        Err(DecodeError::TooLong { .. })
    ));
    let mut wire2 = wire.clone();
    let n = wire2.len();
    wire2[n - 4..].copy_from_slice(&200u32.to_le_bytes());
    assert!(matches!(
        Proof::decode(&wire2),
        Err(DecodeError::Truncated { .. })
    ));
    assert!(Proof::decode(&vec![0u8; MAX_PROOF_LEN + 1]).is_err());
}

#[test]
fn oversized_piece_length_is_refused() {
    let proof = Proof {
        nonce: Nonce([0; 32]),
        leaves: vec![],
        siblings: vec![],
    };
    assert_eq!(
        verify(&Root([0; 32]), &challenge(usize::MAX, [0; 32], 1), &proof),
        Err(ProofError::PieceTooLong(u64::MAX))
    );
}

#[test]
fn a_zero_sample_challenge_is_not_satisfied_by_an_empty_proof() {
    let data = piece(4, 10 * LEAF_SIZE);
    let root = commitment(&data);
    let c = challenge(data.len(), [8; 32], 0);
    let empty = Proof {
        nonce: c.nonce,
        leaves: vec![],
        siblings: vec![],
    };
    assert!(matches!(
        verify(&root, &c, &empty),
        Err(ProofError::WrongLeafCount {
            expected: 1,
            found: 0
        })
    ));
    let honest = Proof::create(&data, &c).unwrap();
    assert_eq!(honest.leaves.len(), 1);
    assert_eq!(verify(&root, &c, &honest), Ok(()));
}

#[test]
fn relabelling_a_proof_with_another_nonce_fails() {
    // 600 leaves, 16 samples: two nonces select the same set with odds below 1e-30.
    let data = piece(11, 600 * LEAF_SIZE);
    let root = commitment(&data);
    let proof = prove(&data, &challenge(data.len(), [1; 32], 16)).unwrap();
    for bit in [0usize, 7, 100, 255] {
        let mut other = [1u8; 32];
        flip(&mut other, bit);
        let mut relabelled = proof.clone();
        relabelled.nonce = Nonce(other);
        let r = verify(&root, &challenge(data.len(), other, 16), &relabelled);
        // The nonce matches, so what fails is the leaf set: the sampled positions, the
        // siblings they need or the root they hash to.
        assert!(
            matches!(&r, Err(e) if *e != ProofError::WrongNonce),
            "{r:?}"
        );
    }
}

#[test]
fn swapped_leaves_fail() {
    let data = piece(12, 100 * LEAF_SIZE);
    let c = challenge(data.len(), [2; 32], 8);
    let mut proof = prove(&data, &c).unwrap();
    proof.leaves.swap(0, 1);
    assert_eq!(
        verify(&commitment(&data), &c, &proof),
        Err(ProofError::RootMismatch)
    );
}

#[test]
fn single_chunk_proofs_carry_nothing_else() {
    for len in [0usize, 1, LEAF_SIZE] {
        let data = piece(13, len);
        let c = challenge(len, [3; 32], 32);
        let mut proof = prove(&data, &c).unwrap();
        assert_eq!((proof.leaves.len(), proof.siblings.len()), (1, 0));
        assert_eq!(verify(&commitment(&data), &c, &proof), Ok(()));
        proof.siblings.push(Hash([0; 32]));
        assert_eq!(
            verify(&commitment(&data), &c, &proof),
            Err(ProofError::ExtraSiblings(1))
        );
    }
}

#[test]
fn challenge_decode_limits() {
    let mut c = challenge(MAX_PIECE_LEN as usize, [4; 32], MAX_SAMPLES);
    assert_eq!(Challenge::decode(&c.encode()), Ok(c));
    c.samples = MAX_SAMPLES + 1;
    assert!(matches!(
        Challenge::decode(&c.encode()),
        Err(DecodeError::TooLong { .. })
    ));
    c.samples = 0;
    assert!(matches!(
        Challenge::decode(&c.encode()),
        Err(DecodeError::Invalid { .. })
    ));
    c.samples = 1;
    c.piece_len = MAX_PIECE_LEN + 1;
    assert!(matches!(
        Challenge::decode(&c.encode()),
        Err(DecodeError::TooLong { .. })
    ));
}
