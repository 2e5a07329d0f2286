//! The Merkle commitment over a piece's bytes.
//!
//! The piece is cut into leaves of [`LEAF_SIZE`] bytes (the last one may be shorter; an
//! empty piece has one empty leaf). Leaves and inner nodes are hashed with BLAKE3 in keyed
//! mode under distinct keys, so a leaf can never be passed off as a node or the other way
//! round. Levels are built pairwise; a node left without a sibling at the end of a level is
//! carried up unchanged. The commitment [`Root`] binds the tree root *and* the piece length,
//! so the verifier learns the leaf count from the root it already trusts.

use std::fmt;

/// Bytes per leaf. 1 KiB is one BLAKE3 chunk: a leaf costs exactly one chunk compression
/// run, and a sampled leaf adds 1 KiB to a proof. See ARCHITECTURE.md for the measurement.
pub const LEAF_SIZE: usize = 1024;

/// The largest piece a commitment may describe (1 TiB). Bounds every length derived from a
/// peer-supplied piece length.
pub const MAX_PIECE_LEN: u64 = 1 << 40;

const LEAF_KEY: &[u8; 32] = b"cairn/proofs/v1/merkle-leaf-key!";
const NODE_KEY: &[u8; 32] = b"cairn/proofs/v1/merkle-node-key!";
const ROOT_KEY: &[u8; 32] = b"cairn/proofs/v1/merkle-root-key!";

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

/// The commitment to one piece: what a manifest records and what proofs verify against.
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

/// Number of leaves in a piece of `piece_len` bytes (at least one).
pub fn leaf_count(piece_len: u64) -> u64 {
    piece_len.div_ceil(LEAF_SIZE as u64).max(1)
}

/// Byte length of leaf `index` in a piece of `piece_len` bytes.
pub(crate) fn leaf_len(piece_len: u64, index: u64) -> usize {
    let start = index.saturating_mul(LEAF_SIZE as u64);
    // Always <= LEAF_SIZE, so the cast is lossless.
    piece_len.saturating_sub(start).min(LEAF_SIZE as u64) as usize
}

pub(crate) fn hash_leaf(data: &[u8]) -> Hash {
    Hash(*blake3::keyed_hash(LEAF_KEY, data).as_bytes())
}

pub(crate) fn hash_node(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(&left.0);
    buf[32..].copy_from_slice(&right.0);
    Hash(*blake3::keyed_hash(NODE_KEY, &buf).as_bytes())
}

pub(crate) fn commit(piece_len: u64, tree_root: &Hash) -> Root {
    let mut buf = [0u8; 40];
    buf[..8].copy_from_slice(&piece_len.to_le_bytes());
    buf[8..].copy_from_slice(&tree_root.0);
    Root(*blake3::keyed_hash(ROOT_KEY, &buf).as_bytes())
}

/// Walks the tree from a sorted, duplicate-free set of known nodes at the leaf level up to
/// the root, asking `sibling(level, index)` for every sibling hash it cannot compute from
/// what it already knows. Prover and verifier share this walk, so the set of siblings a
/// proof carries and the set a verifier consumes are the same by construction.
pub(crate) fn fold_to_root<E>(
    mut known: Vec<(u64, Hash)>,
    leaves: u64,
    mut sibling: impl FnMut(usize, u64) -> Result<Hash, E>,
) -> Result<Hash, E> {
    let mut width = leaves;
    let mut level = 0usize;
    while width > 1 {
        let mut next = Vec::with_capacity(known.len());
        let mut i = 0;
        while i < known.len() {
            let (idx, h) = known[i];
            let parent = if idx % 2 == 0 {
                if i + 1 < known.len() && known[i + 1].0 == idx + 1 {
                    i += 1;
                    hash_node(&h, &known[i].1)
                } else if idx + 1 < width {
                    hash_node(&h, &sibling(level, idx + 1)?)
                } else {
                    h // no sibling at the end of an odd level: carried up
                }
            } else {
                hash_node(&sibling(level, idx - 1)?, &h)
            };
            next.push((idx / 2, parent));
            i += 1;
        }
        known = next;
        width = width.div_ceil(2);
        level += 1;
    }
    Ok(known.first().map(|(_, h)| *h).unwrap_or(Hash([0; 32])))
}

/// A piece's full Merkle tree, kept by the prover so that answering a challenge is a few
/// lookups. Memory: about `64 / LEAF_SIZE` of the piece (6% at 1 KiB leaves).
#[derive(Clone)]
pub struct Tree {
    piece_len: u64,
    /// `levels[0]` are the leaf hashes; the last level holds the single tree root.
    levels: Vec<Vec<Hash>>,
}

impl fmt::Debug for Tree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tree")
            .field("piece_len", &self.piece_len)
            .field("leaves", &self.levels[0].len())
            .field("root", &self.root())
            .finish()
    }
}

impl Tree {
    /// Builds the tree over `piece`.
    pub fn build(piece: &[u8]) -> Self {
        let leaves: Vec<Hash> = if piece.is_empty() {
            vec![hash_leaf(&[])]
        } else {
            piece.chunks(LEAF_SIZE).map(hash_leaf).collect()
        };
        let mut levels = vec![leaves];
        while let Some(last) = levels.last().filter(|l| l.len() > 1) {
            let next = last
                .chunks(2)
                .map(|pair| match pair {
                    [l, r] => hash_node(l, r),
                    [single] => *single,
                    _ => unreachable!("chunks(2) yields one or two"),
                })
                .collect();
            levels.push(next);
        }
        Self {
            piece_len: piece.len() as u64,
            levels,
        }
    }

    /// The piece length the tree was built over.
    pub fn piece_len(&self) -> u64 {
        self.piece_len
    }

    /// Number of leaves.
    pub fn leaf_count(&self) -> u64 {
        self.levels[0].len() as u64
    }

    /// The commitment to the piece.
    pub fn root(&self) -> Root {
        let top = self.levels.last().and_then(|l| l.first()).copied();
        commit(self.piece_len, &top.unwrap_or(Hash([0; 32])))
    }

    pub(crate) fn node(&self, level: usize, index: u64) -> Option<Hash> {
        self.levels
            .get(level)?
            .get(usize::try_from(index).ok()?)
            .copied()
    }
}

/// The commitment to `piece` without keeping the tree.
pub fn commitment(piece: &[u8]) -> Root {
    Tree::build(piece).root()
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
        assert_eq!(leaf_len(1025, 0), 1024);
        assert_eq!(leaf_len(1025, 1), 1);
        assert_eq!(leaf_len(0, 0), 0);
        assert_eq!(leaf_len(10, u64::MAX), 0);
    }

    #[test]
    fn commitment_binds_length_and_content() {
        let a = commitment(&[0u8; 100]);
        assert_ne!(a, commitment(&[0u8; 101]));
        assert_ne!(a, commitment(&[1u8; 100]));
        assert_ne!(commitment(&[]), commitment(&[0]));
        assert_eq!(a, commitment(&[0u8; 100]));
    }

    #[test]
    fn fold_of_all_leaves_matches_tree() {
        for len in [0usize, 1, 1024, 1025, 3 * 1024, 5 * 1024 + 7, 64 * 1024] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let tree = Tree::build(&data);
            let known: Vec<_> = (0..tree.leaf_count())
                .map(|i| (i, tree.node(0, i).unwrap()))
                .collect();
            let top = fold_to_root(known, tree.leaf_count(), |_, _| -> Result<Hash, ()> {
                panic!("no sibling needed when every leaf is known")
            })
            .unwrap();
            assert_eq!(commit(len as u64, &top), tree.root(), "len {len}");
        }
    }
}
