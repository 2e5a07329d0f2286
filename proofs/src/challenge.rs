//! Challenges: which piece, a fresh nonce, and how many leaves to sample.

use crate::codec::{DecodeError, Reader, Writer};
use crate::merkle::{Hash, MAX_PIECE_LEN, leaf_count};

/// The most leaves one challenge may sample. Bounds proof size at about 256 KiB + paths.
pub const MAX_SAMPLES: u16 = 256;

/// Leaves sampled by default: a node missing 10% of a piece fails one round with
/// probability `1 - 0.9^32` = 96.6%.
pub const DEFAULT_SAMPLES: u16 = 32;

const CHALLENGE_VERSION: u8 = 1;
/// Encoded size of a [`Challenge`].
pub const CHALLENGE_LEN: usize = 1 + 32 + 8 + 32 + 2;

const INDEX_KEY: &[u8; 32] = b"cairn/proofs/v1/challenge-index!";

/// A 32-byte value the prover cannot predict, chosen by the auditor for each challenge.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Nonce(pub [u8; 32]);

/// A request to prove possession of a piece.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Challenge {
    /// The piece's content address (its BLAKE3 hash); opaque to this crate.
    pub piece: Hash,
    /// The piece's length, as the manifest records it. The verifier's trusted source of the
    /// tree's shape: a proof cannot claim another one.
    pub piece_len: u64,
    /// Fresh and unpredictable per challenge.
    pub nonce: Nonce,
    /// Leaves to sample, at most [`MAX_SAMPLES`].
    pub samples: u16,
}

impl Challenge {
    /// A challenge with the default sample count.
    pub fn new(piece: Hash, piece_len: u64, nonce: Nonce) -> Self {
        Self {
            piece,
            piece_len,
            nonce,
            samples: DEFAULT_SAMPLES,
        }
    }

    /// The leaf indices this challenge selects: ascending, without repeats,
    /// `min(samples, leaves)` of them. A sample count outside `1..=MAX_SAMPLES` is clamped
    /// into it, so no challenge is satisfied by an empty proof.
    pub fn indices(&self) -> Vec<u64> {
        sample_indices(
            &self.nonce,
            leaf_count(self.piece_len),
            u64::from(self.samples.clamp(1, MAX_SAMPLES)),
        )
    }

    /// Encodes as a version byte and fixed-width fields.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(CHALLENGE_LEN);
        w.u8(CHALLENGE_VERSION);
        w.raw(&self.piece.0);
        w.u64(self.piece_len);
        w.raw(&self.nonce.0);
        w.u16(self.samples);
        w.into_bytes()
    }

    /// Decodes [`Challenge::encode`]'s output; rejects anything else.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        r.version("challenge", CHALLENGE_VERSION)?;
        let piece = Hash(r.array("piece")?);
        let piece_len = r.u64("piece length")?;
        if piece_len > MAX_PIECE_LEN {
            return Err(DecodeError::TooLong {
                field: "piece length",
                len: piece_len,
                max: MAX_PIECE_LEN,
            });
        }
        let nonce = Nonce(r.array("nonce")?);
        let samples = r.u16("samples")?;
        if samples == 0 {
            return Err(DecodeError::Invalid {
                field: "samples",
                reason: "a challenge samples at least one leaf",
            });
        }
        if samples > MAX_SAMPLES {
            return Err(DecodeError::TooLong {
                field: "samples",
                len: u64::from(samples),
                max: u64::from(MAX_SAMPLES),
            });
        }
        r.finish()?;
        Ok(Self {
            piece,
            piece_len,
            nonce,
            samples,
        })
    }
}

/// Deterministic pseudo-random stream keyed by the nonce.
struct IndexStream(blake3::OutputReader);

impl IndexStream {
    fn new(nonce: &Nonce) -> Self {
        let mut h = blake3::Hasher::new_keyed(INDEX_KEY);
        h.update(&nonce.0);
        Self(h.finalize_xof())
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.0.fill(&mut b);
        u64::from_le_bytes(b)
    }

    /// Uniform in `0..=max`, by rejection (no modulo bias).
    fn below_or_eq(&mut self, max: u64) -> u64 {
        if max == u64::MAX {
            return self.next_u64();
        }
        let span = max + 1;
        // 2^64 mod span: the values above `u64::MAX - rem` would bias the low residues.
        let rem = (u64::MAX % span + 1) % span;
        loop {
            let v = self.next_u64();
            if v <= u64::MAX - rem {
                return v % span;
            }
        }
    }
}

/// Robert Floyd's sampling: exactly `s` distinct values from `0..n` in `s` draws, so the
/// work is bounded by the sample count however large the piece.
fn sample_indices(nonce: &Nonce, n: u64, s: u64) -> Vec<u64> {
    let s = s.min(n);
    if s == n {
        return (0..n).collect();
    }
    let mut stream = IndexStream::new(nonce);
    let mut chosen = std::collections::BTreeSet::new();
    for j in (n - s)..n {
        let t = stream.below_or_eq(j);
        if !chosen.insert(t) {
            chosen.insert(j);
        }
    }
    chosen.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn small_pieces_sample_every_leaf() {
        let c = |len| Challenge::new(Hash([1; 32]), len, Nonce([2; 32]));
        assert_eq!(c(0).indices(), vec![0]);
        assert_eq!(c(1024).indices(), vec![0]);
        assert_eq!(c(5 * 1024 - 3).indices(), vec![0, 1, 2, 3, 4]);
        assert_eq!(c(32 * 1024).indices().len(), 32);
    }

    #[test]
    fn rejection_sampling_stays_in_range() {
        let mut s = IndexStream::new(&Nonce([9; 32]));
        for max in [
            0u64,
            1,
            2,
            3,
            7,
            1000,
            u64::MAX / 2 + 1,
            u64::MAX - 1,
            u64::MAX,
        ] {
            for _ in 0..50 {
                assert!(s.below_or_eq(max) <= max);
            }
        }
    }

    #[test]
    fn samples_are_roughly_uniform() {
        // 4000 challenges over 64 leaves picking 8: each leaf is expected 500 times.
        let mut hits = [0u32; 64];
        for i in 0..4000u32 {
            let mut n = [0u8; 32];
            n[..4].copy_from_slice(&i.to_le_bytes());
            let c = Challenge {
                piece: Hash([0; 32]),
                piece_len: 64 * 1024,
                nonce: Nonce(n),
                samples: 8,
            };
            for idx in c.indices() {
                hits[idx as usize] += 1;
            }
        }
        assert!(hits.iter().all(|&h| (380..620).contains(&h)), "{hits:?}");
    }

    #[test]
    fn decode_rejects_bad_input() {
        let c = Challenge::new(Hash([3; 32]), 5000, Nonce([4; 32]));
        let bytes = c.encode();
        assert_eq!(Challenge::decode(&bytes), Ok(c));
        assert!(Challenge::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(Challenge::decode(&long), Err(DecodeError::Trailing(1)));
        let mut v2 = bytes.clone();
        v2[0] = 2;
        assert!(matches!(
            Challenge::decode(&v2),
            Err(DecodeError::UnsupportedVersion { found: 2, .. })
        ));
        let mut zero = bytes.clone();
        zero[CHALLENGE_LEN - 2..].copy_from_slice(&0u16.to_le_bytes());
        assert!(Challenge::decode(&zero).is_err());
        let mut huge = bytes;
        huge[33..41].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            Challenge::decode(&huge),
            Err(DecodeError::TooLong { .. })
        ));
    }

    proptest! {
        #[test]
        fn indices_are_sorted_distinct_and_in_range(
            nonce in any::<[u8; 32]>(), n in 1u64..1_000_000, s in 1u16..=MAX_SAMPLES
        ) {
            let c = Challenge { piece: Hash([0; 32]), piece_len: n * 1024, nonce: Nonce(nonce), samples: s };
            let idx = c.indices();
            prop_assert_eq!(idx.len() as u64, u64::from(s).min(n));
            prop_assert!(idx.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(idx.iter().all(|&i| i < n));
            prop_assert_eq!(idx, c.indices());
        }

        #[test]
        fn challenge_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = Challenge::decode(&bytes);
        }
    }
}
