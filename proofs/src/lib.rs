//! Proofs of storage for Cairn pieces.
//!
//! A storage node that agreed to hold a piece must answer, at times it cannot predict,
//! challenges about that piece. This crate is the pure core of that protocol: it builds
//! the Merkle commitment a manifest records for each piece, derives the leaves a challenge
//! selects, makes proofs and checks them. It does no I/O and knows nothing of networks,
//! files or clocks, so it can be reasoned about, property-tested and fuzzed on its own.
//!
//! ```
//! use proofs::{Challenge, Hash, Nonce, Proof, Tree};
//!
//! let piece = vec![7u8; 100_000];
//! let tree = Tree::build(&piece);
//! let root = tree.root(); // recorded in the manifest at publish time
//!
//! let challenge = Challenge::new(Hash(*blake3::hash(&piece).as_bytes()), Nonce([42; 32]));
//! let proof = Proof::create(&tree, &piece, &challenge).unwrap();
//! let wire = proof.encode();
//! proofs::verify(&root, &challenge, &Proof::decode(&wire).unwrap()).unwrap();
//! ```
//!
//! # The scheme
//!
//! - A piece is cut into 1 KiB leaves ([`LEAF_SIZE`]); a binary BLAKE3 Merkle tree is built
//!   over them ([`merkle`]). The commitment [`Root`] binds the tree root and the piece length.
//! - A [`Challenge`] names a piece, a fresh 32-byte [`Nonce`] and a sample count `s`. The
//!   nonce seeds a keyed BLAKE3 stream from which `min(s, leaves)` distinct leaf indices are
//!   drawn (Floyd's algorithm: exactly `s` draws, no repeats, no modulo bias).
//! - A [`Proof`] carries those leaves and the sibling hashes that connect them to the root,
//!   shared between leaves (a multiproof). [`verify`] recomputes the root and compares it.
//!
//! # What a proof shows
//!
//! A node that has lost (or never stored) a fraction `f` of a piece's leaves answers one
//! challenge of `s` samples correctly with probability at most `(1 - f)^s`, so a round
//! detects it with probability
//!
//! ```text
//! P(detect) = 1 - (1 - f)^s
//! ```
//!
//! With the default `s = 32`: `f = 1%` → 27.5%, `f = 10%` → 96.6%, `f = 50%` → 1 - 2^-32.
//! Rounds use independent nonces, so after `r` rounds a node that keeps dropping the same
//! fraction survives with probability `(1 - f)^(s·r)`: detection compounds quickly, even for
//! small `f`. A node missing the whole piece cannot answer at all.
//!
//! # What a proof does not show
//!
//! - **Where the bytes came from.** A node that does not store the piece but fetches it from
//!   another holder (or the publisher) when challenged passes. Deadlines make this costlier
//!   but cannot rule it out; erasure coding means such a node only costs the network its
//!   own share of redundancy, and repair sees the difference when real holders vanish.
//! - **Distinct copies.** Two node identities run by one operator on one disk both pass.
//!   Placement on distinct failure domains is a policy above this crate.
//! - **Small losses in one round.** A node missing a tiny fraction of a piece (one leaf in
//!   a thousand) is unlikely to be caught by one challenge; scrubbing and repeated rounds
//!   are the remedy.
//! - **Availability for reads.** Answering challenges says nothing about serving data at
//!   speed; read-path verification (every piece is checked against its hash) covers that.
//! - **Freshness beyond the nonce.** The nonce must be unpredictable to the prover; a
//!   predictable nonce lets a node precompute answers and then drop the data.
//!
//! # Hash choice
//!
//! BLAKE3 over SHA-256: on the same 1 MiB buffer and 1 KiB leaves the tree builds several
//! times faster with BLAKE3 on CPUs without SHA extensions (see `benches/proofs.rs` and
//! ARCHITECTURE.md for the figures), pieces are already addressed by BLAKE3, and keyed mode
//! gives domain separation between leaves, nodes and roots at no cost.
//!
//! # Wire format
//!
//! [`Challenge::encode`] and [`Proof::encode`] produce a versioned little-endian encoding
//! ([`codec`]). Decoders check every count against the format's limits and the input left
//! before they allocate and never panic; `fuzz/` holds a cargo-fuzz target for the proof
//! decoder.

pub mod challenge;
pub mod codec;
pub mod merkle;
pub mod proof;

pub use challenge::{CHALLENGE_LEN, Challenge, DEFAULT_SAMPLES, MAX_SAMPLES, Nonce};
pub use codec::DecodeError;
pub use merkle::{Hash, LEAF_SIZE, MAX_PIECE_LEN, Root, Tree, commitment, leaf_count};
pub use proof::{MAX_PROOF_LEN, Proof, ProofError, ProveError};

/// Checks `proof` against the piece commitment `root` for `challenge`.
pub fn verify(root: &Root, challenge: &Challenge, proof: &Proof) -> Result<(), ProofError> {
    proof.verify(root, challenge)
}

/// Answers `challenge` for `piece`, building its tree first. Nodes that answer many
/// challenges for one piece keep the [`Tree`] and call [`Proof::create`].
pub fn prove(piece: &[u8], challenge: &Challenge) -> Proof {
    let tree = Tree::build(piece);
    match Proof::create(&tree, piece, challenge) {
        Ok(p) => p,
        // The tree was built over these very bytes.
        Err(ProveError::LengthMismatch { .. }) => unreachable!("tree built over the piece"),
    }
}

/// The fuzz entry point for the proof decoder, shared by `fuzz/` and the unit tests: decode
/// arbitrary bytes and, if they decode, verify them against a fixed root. Must never panic.
pub fn fuzz_proof_decoder(data: &[u8]) {
    if let Ok(proof) = Proof::decode(data) {
        // Ask for as many samples as the proof carries, so the Merkle walk is reached.
        let samples = (proof.leaves.len() as u16).clamp(1, MAX_SAMPLES);
        let challenge = Challenge {
            piece: Hash([0; 32]),
            nonce: proof.nonce,
            samples,
        };
        let _ = verify(&Root([0; 32]), &challenge, &proof);
        assert_eq!(Proof::decode(&proof.encode()).as_ref(), Ok(&proof));
    }
}

#[cfg(test)]
mod tests;
