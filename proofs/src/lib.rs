//! Proofs of storage for Cairn pieces.
//!
//! A storage node that agreed to hold a piece must answer, at times it cannot predict,
//! challenges about that piece. This crate is the pure core of that protocol: it builds
//! the Merkle commitment a manifest records for each piece, derives the leaves a challenge
//! selects, makes proofs and checks them. It does no I/O and knows nothing of networks,
//! files or clocks, so it can be reasoned about, property-tested and fuzzed on its own.
//!
//! ```
//! use proofs::{Challenge, Hash, Nonce, Proof};
//!
//! let piece = vec![7u8; 100_000];
//! let root = proofs::commitment(&piece); // the piece's BLAKE3 hash, in the manifest
//!
//! let challenge = Challenge::new(Hash(root.0), piece.len() as u64, Nonce([42; 32]));
//! let proof = Proof::create(&piece, &challenge).unwrap();
//! let wire = proof.encode();
//! proofs::verify(&root, &challenge, &Proof::decode(&wire).unwrap()).unwrap();
//! ```
//!
//! # The scheme
//!
//! - The commitment [`Root`] is the piece's BLAKE3 hash, which is itself a Merkle tree over
//!   1 KiB chunks ([`LEAF_SIZE`], see [`merkle`]). The same 32 bytes address the piece on
//!   the data plane and anchor its proofs; nothing else is needed to prove or verify.
//! - A [`Challenge`] names a piece, a fresh 32-byte [`Nonce`] and a sample count `s`. The
//!   nonce seeds a keyed BLAKE3 stream from which `min(s, leaves)` distinct leaf indices are
//!   drawn (Floyd's algorithm: exactly `s` draws, no repeats, no modulo bias).
//! - A [`Proof`] carries those leaves and the chaining values of the untouched subtrees that
//!   connect them to the root, shared between leaves (a multiproof). [`verify`] recomputes
//!   the BLAKE3 root and compares it.
//! - A holder may keep the piece's [`outboard`] (every node's chaining value, 1/16 of the
//!   piece) and answer with [`Proof::create_from`], reading the sampled leaves and the
//!   values it sends instead of the whole piece. The proof is the same.
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
//! # Hash and tree choice
//!
//! Measured on a 1 MiB piece (`benches/proofs.rs`, ARCHITECTURE.md has the table): a
//! separate Merkle tree over 1 KiB leaves costs 1.2 ms with BLAKE3 (one chunk per call
//! leaves its SIMD idle) and 0.9 ms with SHA-256 (this CPU has SHA extensions), on top of
//! the piece hash. Using BLAKE3's own tree costs nothing at store time (the hash is the
//! commitment) and 0.2-0.3 ms per proof, because untouched subtrees are hashed whole at
//! BLAKE3's full speed; proofs keep 1 KiB leaves, so they stay small.
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
pub mod outboard;
pub mod proof;

pub use challenge::{CHALLENGE_LEN, Challenge, DEFAULT_SAMPLES, MAX_SAMPLES, Nonce};
pub use codec::DecodeError;
pub use merkle::{Hash, LEAF_SIZE, MAX_PIECE_LEN, Root, commitment, leaf_count};
pub use outboard::{Counted, InMemory, NODE_LEN, ProofSource, outboard, outboard_len};
pub use proof::{MAX_PROOF_LEN, Proof, ProofError, ProveError};

/// Checks `proof` against the piece commitment `root` for `challenge`.
pub fn verify(root: &Root, challenge: &Challenge, proof: &Proof) -> Result<(), ProofError> {
    proof.verify(root, challenge)
}

/// Answers `challenge` for `piece`.
pub fn prove(piece: &[u8], challenge: &Challenge) -> Result<Proof, ProveError> {
    Proof::create(piece, challenge)
}

/// The fuzz entry point for the proof decoder, shared by `fuzz/` and the unit tests. The
/// first 10 bytes choose the challenged piece length and sample count (so every tree shape,
/// from the empty piece to [`MAX_PIECE_LEN`] and beyond, is reached); the rest is decoded as
/// a proof and, if it decodes, verified. Must never panic.
pub fn fuzz_proof_decoder(data: &[u8]) {
    let (Some(len), Some(samples)) = (data.get(..8), data.get(8..10)) else {
        return;
    };
    let mut len8 = [0u8; 8];
    len8.copy_from_slice(len);
    let piece_len = u64::from_le_bytes(len8) % (MAX_PIECE_LEN + 2);
    let samples = u16::from_le_bytes([samples[0], samples[1]]);
    if let Ok(proof) = Proof::decode(&data[10..]) {
        let challenge = Challenge {
            piece: Hash([0; 32]),
            piece_len,
            nonce: proof.nonce,
            samples,
        };
        let _ = verify(&Root([0; 32]), &challenge, &proof);
        assert_eq!(Proof::decode(&proof.encode()).as_ref(), Ok(&proof));
    }
}

#[cfg(test)]
mod tests;
