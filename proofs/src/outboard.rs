//! A piece's stored tree (its outboard): the chaining value of every node of BLAKE3's tree
//! over the piece, so that a proof reads the sampled leaves and the values it sends, not
//! the whole piece.
//!
//! # Layout
//!
//! [`NODE_LEN`] bytes per node, in pre-order: a node first, then its left subtree, then its
//! right. A node of `c > 1` chunks whose left subtree has `l` chunks (BLAKE3's split, see
//! [`crate::merkle`]) has its left child at `i + 1` and its right child at `i + 2l`, since a
//! subtree of `l` chunks has `2l - 1` nodes. A piece of `n > 1` chunks has `2n - 1` nodes;
//! the root's slot (0) holds zeros, since the root is the piece's id. A piece of one chunk
//! has no outboard: a proof of it is the piece.
//!
//! That is 64 bytes per KiB of piece (1/16). A proof with `s` samples then reads `s` leaves
//! of 1 KiB and at most one value per untouched subtree on their paths: for `s = 32` in a
//! 64 MiB piece, about 32 KiB of leaves and 15 KiB of values.
//!
//! The outboard is a cache of values the piece's bytes define, never trusted: a proof made
//! from it is checked against the piece's id like any other, and a stale or damaged one
//! only makes that check fail.

use blake3::hazmat::ChainingValue;

use crate::challenge::Challenge;
use crate::merkle::{Hash, LEAF_SIZE, Span, leaf_count, merge, subtree_cv};
use crate::proof::{Proof, ProveError};

/// Bytes per node in an outboard.
pub const NODE_LEN: usize = 32;

/// The length of the outboard of a piece of `piece_len` bytes.
pub fn outboard_len(piece_len: u64) -> u64 {
    if piece_len <= LEAF_SIZE as u64 {
        0
    } else {
        (2 * leaf_count(piece_len) - 1) * NODE_LEN as u64
    }
}

/// The outboard of `piece`.
pub fn outboard(piece: &[u8]) -> Vec<u8> {
    let len = piece.len() as u64;
    let mut out = vec![0u8; usize::try_from(outboard_len(len)).unwrap_or(0)];
    if out.is_empty() {
        return out;
    }
    let (l, r) = Span::root_children(len, &[]);
    let left_chunks = l.chunks();
    fill(piece, l, 1, &mut out);
    fill(piece, r, 2 * left_chunks, &mut out);
    out
}

/// Writes the values of `span`'s subtree from node `index` on, and returns its own.
fn fill(piece: &[u8], span: Span<'_>, index: u64, out: &mut [u8]) -> ChainingValue {
    let cv = if span.len <= LEAF_SIZE as u64 {
        subtree_cv(
            span.start,
            &piece[span.start as usize..(span.start + span.len) as usize],
        )
    } else {
        let (l, r) = span.split();
        let left_chunks = l.chunks();
        let left = fill(piece, l, index + 1, out);
        let right = fill(piece, r, index + 2 * left_chunks, out);
        merge(&left, &right)
    };
    let at = index as usize * NODE_LEN;
    out[at..at + NODE_LEN].copy_from_slice(&cv);
    cv
}

/// Where a proof's leaves and values are read from: a piece's bytes and its outboard, on
/// disk or anywhere else.
pub trait ProofSource {
    /// `len` bytes of the piece from byte `offset` (one leaf).
    fn leaf(&mut self, offset: u64, len: usize) -> std::io::Result<Vec<u8>>;
    /// The value of outboard node `index`.
    fn node(&mut self, index: u64) -> std::io::Result<[u8; NODE_LEN]>;
}

/// A piece and its outboard in memory.
#[derive(Debug, Clone, Copy)]
pub struct InMemory<'a> {
    /// The piece.
    pub piece: &'a [u8],
    /// Its outboard.
    pub outboard: &'a [u8],
}

impl ProofSource for InMemory<'_> {
    fn leaf(&mut self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let start = usize::try_from(offset).map_err(std::io::Error::other)?;
        self.piece
            .get(start..start.saturating_add(len))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))
    }

    fn node(&mut self, index: u64) -> std::io::Result<[u8; NODE_LEN]> {
        let at = usize::try_from(index)
            .ok()
            .and_then(|i| i.checked_mul(NODE_LEN))
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        self.outboard
            .get(at..at + NODE_LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))
    }
}

/// A source that counts the bytes a proof reads through it.
#[derive(Debug, Clone)]
pub struct Counted<S> {
    /// Where the bytes come from.
    pub inner: S,
    /// Bytes read so far: leaves and outboard values.
    pub read: u64,
}

impl<S> Counted<S> {
    /// `inner`, with nothing read yet.
    pub fn new(inner: S) -> Self {
        Self { inner, read: 0 }
    }
}

impl<S: ProofSource> ProofSource for Counted<S> {
    fn leaf(&mut self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let leaf = self.inner.leaf(offset, len)?;
        self.read += leaf.len() as u64;
        Ok(leaf)
    }

    fn node(&mut self, index: u64) -> std::io::Result<[u8; NODE_LEN]> {
        let node = self.inner.node(index)?;
        self.read += NODE_LEN as u64;
        Ok(node)
    }
}

impl Proof {
    /// Answers `challenge` for a piece of `piece_len` bytes from `source`: the sampled leaves
    /// and, for each untouched subtree, its value from the outboard. Reads about
    /// `s` KiB of leaves and a few values per sample; hashes nothing.
    pub fn create_from(
        piece_len: u64,
        challenge: &Challenge,
        source: &mut impl ProofSource,
    ) -> Result<Self, ProveError> {
        let (mut proof, indices) = Self::start(piece_len, challenge)?;
        let read = |e: std::io::Error| ProveError::Read(e.to_string());
        if piece_len <= LEAF_SIZE as u64 {
            proof
                .leaves
                .push(source.leaf(0, piece_len as usize).map_err(read)?);
            return Ok(proof);
        }
        let (l, r) = Span::root_children(piece_len, &indices);
        let left_chunks = l.chunks();
        proof.collect_from(source, l, 1).map_err(read)?;
        proof
            .collect_from(source, r, 2 * left_chunks)
            .map_err(read)?;
        Ok(proof)
    }

    fn collect_from(
        &mut self,
        source: &mut impl ProofSource,
        span: Span<'_>,
        index: u64,
    ) -> std::io::Result<()> {
        if span.sampled.is_empty() {
            self.siblings.push(Hash(source.node(index)?));
        } else if span.len <= LEAF_SIZE as u64 {
            self.leaves
                .push(source.leaf(span.start, span.len as usize)?);
        } else {
            let (l, r) = span.split();
            let left_chunks = l.chunks();
            self.collect_from(source, l, index + 1)?;
            self.collect_from(source, r, index + 2 * left_chunks)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::challenge::Nonce;
    use crate::merkle::Root;
    use proptest::prelude::*;

    fn piece(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| ((i as u64 * 2_654_435_761) >> 7) as u8 ^ seed)
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// A proof read from the outboard is the proof made from the whole piece, and it
        /// verifies.
        #[test]
        fn a_proof_from_the_outboard_is_the_proof_from_the_piece(
            len in 0usize..300_000,
            seed in any::<u8>(),
            nonce in any::<[u8; 32]>(),
            samples in 1u16..64,
        ) {
            let data = piece(len, seed);
            let ob = outboard(&data);
            prop_assert_eq!(ob.len() as u64, outboard_len(len as u64));
            let root = crate::commitment(&data);
            let mut c = Challenge::new(Hash(root.0), len as u64, Nonce(nonce));
            c.samples = samples;
            let whole = Proof::create(&data, &c).unwrap();
            let mut src = InMemory { piece: &data, outboard: &ob };
            let read = Proof::create_from(len as u64, &c, &mut src).unwrap();
            prop_assert_eq!(&read, &whole);
            prop_assert!(crate::verify(&root, &c, &read).is_ok());
        }
    }

    #[test]
    fn a_challenge_of_32_samples_reads_at_most_64_kib_of_a_64_mib_piece() {
        let data = piece(64 << 20, 3);
        let ob = outboard(&data);
        assert_eq!(ob.len(), ((2 * (64 << 10) - 1) * NODE_LEN));
        let root = crate::commitment(&data);
        for n in 0..8u8 {
            let c = Challenge::new(Hash(root.0), data.len() as u64, Nonce([n; 32]));
            assert_eq!(c.samples, crate::DEFAULT_SAMPLES);
            let mut src = Counted::new(InMemory {
                piece: &data,
                outboard: &ob,
            });
            let proof = Proof::create_from(data.len() as u64, &c, &mut src).unwrap();
            assert!(crate::verify(&root, &c, &proof).is_ok());
            assert!(src.read <= 64 << 10, "{} bytes read", src.read);
        }
    }

    #[test]
    fn a_damaged_outboard_makes_a_proof_that_fails() {
        let data = piece(100_000, 9);
        let mut ob = outboard(&data);
        let root: Root = crate::commitment(&data);
        let c = Challenge::new(Hash(root.0), data.len() as u64, Nonce([1; 32]));
        // Every node but the root's unused slot is on some proof's path: damage them all.
        for b in ob.iter_mut().skip(NODE_LEN) {
            *b ^= 0x55;
        }
        let mut src = InMemory {
            piece: &data,
            outboard: &ob,
        };
        let proof = Proof::create_from(data.len() as u64, &c, &mut src).unwrap();
        assert!(crate::verify(&root, &c, &proof).is_err());
        // A short outboard is a read error, not a panic.
        let mut short = InMemory {
            piece: &data,
            outboard: &ob[..64],
        };
        assert!(matches!(
            Proof::create_from(data.len() as u64, &c, &mut short),
            Err(ProveError::Read(_))
        ));
    }
}
