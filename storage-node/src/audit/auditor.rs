//! The auditor: what to challenge each round, and the nonces to challenge with.

use std::collections::HashMap;

use crate::ids::{NodeId, PieceId};

/// One challenge to send this round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditTarget {
    /// Who to challenge.
    pub holder: NodeId,
    /// Which piece.
    pub piece: PieceId,
    /// Its length.
    pub len: u32,
    /// Fetch the whole piece over the data plane instead of asking for a proof: a
    /// retrieval audit, which catches a node that proves storage but serves wrong bytes.
    pub retrieve: bool,
}

/// Chooses what to challenge, round after round: least recently audited first, ties
/// broken by a keyed hash so the order cannot be predicted by the holders, and derives the
/// nonces from the auditor's secret and the round.
#[derive(Debug)]
pub struct Auditor {
    nonce_key: [u8; 32],
    last: HashMap<(NodeId, PieceId), u64>,
}

/// Most (holder, piece) pairs whose last audit time an auditor remembers.
const MAX_AUDITOR_MEMORY: usize = 1 << 20;

impl Auditor {
    /// An auditor whose nonces derive from `secret` (the node key: holders cannot
    /// predict them).
    pub fn new(secret: &[u8; 32]) -> Self {
        Self {
            nonce_key: blake3::derive_key("cairn audit nonce v1", secret),
            last: HashMap::new(),
        }
    }

    /// Picks up to `batch` targets among `candidates` (holder, piece, len) for round
    /// `round` at time `now`, and `retrievals` of them as retrieval audits.
    pub fn plan(
        &mut self,
        candidates: &[(NodeId, PieceId, u32)],
        round: u64,
        now: u64,
        batch: usize,
        retrievals: usize,
    ) -> Vec<AuditTarget> {
        type Keyed<'a> = (u64, [u8; 32], &'a (NodeId, PieceId, u32));
        let mut keyed: Vec<Keyed<'_>> = candidates
            .iter()
            .map(|c| {
                let last = self.last.get(&(c.0, c.1)).copied().unwrap_or(0);
                (last, self.tiebreak(round, &c.0, &c.1), c)
            })
            .collect();
        keyed.sort_unstable_by_key(|a| (a.0, a.1));
        keyed.truncate(batch);
        if self.last.len() + keyed.len() > MAX_AUDITOR_MEMORY {
            self.last.clear();
        }
        keyed
            .iter()
            .enumerate()
            .map(|(i, (_, _, c))| {
                self.last.insert((c.0, c.1), now);
                AuditTarget {
                    holder: c.0,
                    piece: c.1,
                    len: c.2,
                    retrieve: i < retrievals,
                }
            })
            .collect()
    }

    fn tiebreak(&self, round: u64, holder: &NodeId, piece: &PieceId) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.nonce_key);
        h.update(b"order");
        h.update(&round.to_le_bytes());
        h.update(&holder.0);
        h.update(&piece.0);
        *h.finalize().as_bytes()
    }

    /// The nonce for challenging `holder` about `piece` in `round`: unpredictable without
    /// the auditor's secret, and never repeated across rounds.
    pub fn nonce(&self, round: u64, holder: &NodeId, piece: &PieceId) -> proofs::Nonce {
        let mut h = blake3::Hasher::new_keyed(&self.nonce_key);
        h.update(b"nonce");
        h.update(&round.to_le_bytes());
        h.update(&holder.0);
        h.update(&piece.0);
        proofs::Nonce(*h.finalize().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auditor_covers_everything_before_repeating_and_nonces_differ() {
        let mut a = Auditor::new(&[7; 32]);
        let c: Vec<(NodeId, PieceId, u32)> = (0..10u8)
            .map(|i| (NodeId([i; 32]), PieceId([i; 32]), 10))
            .collect();
        let first = a.plan(&c, 1, 100, 4, 1);
        let second = a.plan(&c, 2, 200, 4, 1);
        let third = a.plan(&c, 3, 300, 4, 1);
        assert_eq!(first.iter().filter(|t| t.retrieve).count(), 1);
        let mut seen: Vec<_> = first.iter().chain(&second).map(|t| t.piece).collect();
        seen.extend(third.iter().take(2).map(|t| t.piece));
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 10, "every candidate audited before any repeats");
        let (h, p) = (NodeId([1; 32]), PieceId([2; 32]));
        assert_ne!(a.nonce(1, &h, &p), a.nonce(2, &h, &p));
        assert_ne!(a.nonce(1, &h, &p), Auditor::new(&[8; 32]).nonce(1, &h, &p));
    }
}
