//! The Merkle commitment over a piece's bytes: BLAKE3's own tree.
//!
//! BLAKE3 is a Merkle tree: the input is cut into 1 KiB chunks, each chunk is compressed
//! into a chaining value with its position bound in, and parents merge pairs of subtrees up
//! to a root whose output is the hash. So the piece's BLAKE3 hash — its content address —
//! *is* its Merkle commitment, and the leaves of the proof tree are BLAKE3 chunks
//! ([`LEAF_SIZE`]). Nothing extra is computed or stored when a piece is written.
//!
//! The tree shape is BLAKE3's: a subtree of `len > 1 KiB` bytes splits into a left subtree
//! of the largest power-of-two number of chunks strictly below `len` and the rest
//! ([`blake3::hazmat::left_subtree_len`]). A subtree that holds no sampled leaf is sent as
//! one chaining value, which the prover computes over its whole byte range at full SIMD
//! speed.

use std::fmt;

use blake3::hazmat::{ChainingValue, HasherExt, Mode, left_subtree_len, merge_subtrees_non_root};

/// Bytes per leaf: one BLAKE3 chunk.
pub const LEAF_SIZE: usize = blake3::CHUNK_LEN;

/// The largest piece a commitment may describe (1 TiB). Bounds every length derived from a
/// peer-supplied piece length.
pub const MAX_PIECE_LEN: u64 = 1 << 40;

/// A 32-byte BLAKE3 output.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({self})")
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The commitment to one piece: its BLAKE3 hash, which the manifest records as the piece's
/// address and which proofs verify against.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Root(pub [u8; 32]);

impl fmt::Debug for Root {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Root({})", Hash(self.0))
    }
}

impl fmt::Display for Root {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Hash(self.0).fmt(f)
    }
}

/// Number of leaves in a piece of `piece_len` bytes (at least one: an empty piece is one
/// empty chunk).
pub fn leaf_count(piece_len: u64) -> u64 {
    piece_len.div_ceil(LEAF_SIZE as u64).max(1)
}

/// The commitment to `piece`: its BLAKE3 hash.
pub fn commitment(piece: &[u8]) -> Root {
    Root(*blake3::hash(piece).as_bytes())
}

/// Chaining value of the subtree of `bytes` starting at byte `offset` of the piece.
/// `offset` and `bytes.len()` must describe a subtree of BLAKE3's tree (the walk below only
/// produces such ranges), and the subtree must not be the whole piece.
pub(crate) fn subtree_cv(offset: u64, bytes: &[u8]) -> ChainingValue {
    blake3::Hasher::new()
        .set_input_offset(offset)
        .update(bytes)
        .finalize_non_root()
}

/// Merges two subtree chaining values into their (non-root) parent.
pub(crate) fn merge(left: &ChainingValue, right: &ChainingValue) -> ChainingValue {
    merge_subtrees_non_root(left, right, Mode::Hash)
}

/// A subtree of the piece: byte offset, byte length, and the sampled leaf indices inside it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span<'a> {
    pub(crate) start: u64,
    pub(crate) len: u64,
    pub(crate) sampled: &'a [u64],
}

impl<'a> Span<'a> {
    /// The root's two subtrees for a piece of `len > 1 KiB` bytes, with the sampled leaf
    /// indices each holds.
    pub(crate) fn root_children(len: u64, sampled: &'a [u64]) -> (Span<'a>, Span<'a>) {
        Span {
            start: 0,
            len,
            sampled,
        }
        .split()
    }

    /// Chunks in this span (a left subtree's count is a power of two).
    pub(crate) fn chunks(&self) -> u64 {
        self.len / LEAF_SIZE as u64
    }

    /// Splits a span of more than one chunk where BLAKE3 splits it.
    pub(crate) fn split(self) -> (Span<'a>, Span<'a>) {
        let left_len = left_subtree_len(self.len);
        let boundary = (self.start + left_len) / LEAF_SIZE as u64;
        let cut = self.sampled.partition_point(|&i| i < boundary);
        (
            Span {
                start: self.start,
                len: left_len,
                sampled: &self.sampled[..cut],
            },
            Span {
                start: self.start + left_len,
                len: self.len - left_len,
                sampled: &self.sampled[cut..],
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_arithmetic() {
        assert_eq!(leaf_count(0), 1);
        assert_eq!(leaf_count(1), 1);
        assert_eq!(leaf_count(1024), 1);
        assert_eq!(leaf_count(1025), 2);
    }

    #[test]
    fn subtree_walk_reproduces_blake3() {
        // Merging chunk chaining values along the walk gives exactly blake3::hash.
        fn cv(data: &[u8], span: Span<'_>) -> ChainingValue {
            if span.len <= LEAF_SIZE as u64 {
                return subtree_cv(
                    span.start,
                    &data[span.start as usize..(span.start + span.len) as usize],
                );
            }
            let (l, r) = span.split();
            merge(&cv(data, l), &cv(data, r))
        }
        for len in [
            1025usize,
            2048,
            3000,
            4096,
            5 * 1024 + 7,
            64 * 1024,
            100_003,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let (l, r) = Span {
                start: 0,
                len: len as u64,
                sampled: &[],
            }
            .split();
            let root =
                blake3::hazmat::merge_subtrees_root(&cv(&data, l), &cv(&data, r), Mode::Hash);
            assert_eq!(root, blake3::hash(&data), "len {len}");
        }
    }
}
