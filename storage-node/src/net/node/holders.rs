//! Who holds which piece, as the holders announced it.

use std::collections::{HashMap, HashSet};

use libp2p::PeerId;
use tracing::warn;

use crate::{ids::PieceId, net::wire::DataAddr};

/// Most (piece, holder) entries remembered about other nodes.
const MAX_HOLDER_ENTRIES: usize = 8 << 20;
/// Most pieces one peer may claim to hold (a 1 PiB node at the default block size).
pub(super) const MAX_PIECES_PER_PEER: usize = 1 << 20;
/// Most (peer, piece) drops remembered.
const MAX_DROPPED: usize = 1 << 16;
/// Most peers in the holder table.
const MAX_HOLDER_PEERS: usize = 4096;

/// Who holds which piece, as the holders announced it. Bounded: each peer may claim at
/// most [`MAX_PIECES_PER_PEER`] pieces and the table at most [`MAX_HOLDER_ENTRIES`]; a
/// peer's claims are dropped when its last connection closes (it announces them again
/// when it comes back) or when it stops announcing ([`Holders::expire`]), so a peer
/// cannot crowd others out for longer than it stays. The node takes announcements only
/// from peers connected to it.
#[derive(Default)]
pub(super) struct Holders {
    by_piece: HashMap<PieceId, Vec<PeerId>>,
    pub(super) by_peer: HashMap<PeerId, (DataAddr, HashSet<PieceId>)>,
    /// When each peer last announced, seconds since the epoch.
    heard: HashMap<PeerId, u64>,
    /// Pieces peers said they dropped (found corrupt, or no longer referenced), and when:
    /// a rebuilt piece does not go back to a node whose copy just went bad.
    dropped: HashMap<(PeerId, PieceId), u64>,
    entries: usize,
}

impl Holders {
    pub(super) fn add(
        &mut self,
        peer: PeerId,
        data: DataAddr,
        pieces: &[[u8; 32]],
        dropped: &[[u8; 32]],
        now: u64,
    ) {
        if !self.by_peer.contains_key(&peer) && self.by_peer.len() >= MAX_HOLDER_PEERS {
            warn!(%peer, "holder table has too many peers; ignoring this one's announcement");
            return;
        }
        self.heard.insert(peer, now);
        let (addr, mine) = self
            .by_peer
            .entry(peer)
            .or_insert_with(|| (data.clone(), HashSet::new()));
        *addr = data;
        for p in pieces.iter().map(|p| PieceId(*p)) {
            if self.entries >= MAX_HOLDER_ENTRIES || mine.len() >= MAX_PIECES_PER_PEER {
                warn!(%peer, "holder table limit reached; ignoring the rest of this announcement");
                break;
            }
            if mine.insert(p) {
                self.by_piece.entry(p).or_default().push(peer);
                self.entries += 1;
            }
        }
        for p in dropped.iter().map(|p| PieceId(*p)) {
            if self.dropped.len() >= MAX_DROPPED {
                let oldest = self.dropped.values().copied().min().unwrap_or(now);
                self.dropped.retain(|_, t| *t > oldest);
            }
            if self.dropped.len() < MAX_DROPPED {
                self.dropped.insert((peer, p), now);
            }
            if mine.remove(&p) {
                Self::unlink(&mut self.by_piece, &p, &peer);
                self.entries -= 1;
            }
        }
    }

    /// Forgets what every peer that has not announced since `since` claimed: holders
    /// announce everything they hold periodically, so an entry that is not renewed is
    /// stale.
    pub(super) fn expire(&mut self, since: u64) {
        let stale: Vec<PeerId> = self
            .heard
            .iter()
            .filter(|(_, t)| **t < since)
            .map(|(p, _)| *p)
            .collect();
        for p in stale {
            self.forget(&p);
        }
        self.dropped.retain(|_, t| *t >= since);
    }

    /// Forgets everything `peer` claimed.
    pub(super) fn forget(&mut self, peer: &PeerId) {
        self.heard.remove(peer);
        if let Some((_, mine)) = self.by_peer.remove(peer) {
            self.entries -= mine.len();
            for p in &mine {
                Self::unlink(&mut self.by_piece, p, peer);
            }
        }
    }

    fn unlink(by_piece: &mut HashMap<PieceId, Vec<PeerId>>, piece: &PieceId, peer: &PeerId) {
        if let Some(v) = by_piece.get_mut(piece) {
            v.retain(|x| x != peer);
            if v.is_empty() {
                by_piece.remove(piece);
            }
        }
    }

    /// Whether `peer` said lately that it dropped `piece`.
    pub(super) fn dropped(&self, peer: &PeerId, piece: &PieceId) -> bool {
        self.dropped.contains_key(&(*peer, *piece))
    }

    /// Whether `peer` announced any of `pieces`.
    pub(super) fn announces_any(&self, peer: &PeerId, pieces: &[PieceId]) -> bool {
        self.by_peer
            .get(peer)
            .is_some_and(|(_, mine)| pieces.iter().any(|p| mine.contains(p)))
    }

    pub(super) fn holders(&self, piece: &PieceId) -> impl Iterator<Item = (&PeerId, &DataAddr)> {
        self.by_piece
            .get(piece)
            .into_iter()
            .flatten()
            .filter_map(|p| self.by_peer.get(p).map(|(d, _)| (p, d)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(b: u8) -> DataAddr {
        DataAddr {
            id: [b; 32],
            addrs: vec![],
        }
    }

    #[test]
    fn holder_table_is_bounded_per_peer_and_forgets_on_disconnect() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut h = Holders::default();
        h.add(a, addr(1), &[[1; 32], [2; 32]], &[], 0);
        h.add(b, addr(2), &[[1; 32]], &[], 0);
        assert_eq!(h.holders(&PieceId([1; 32])).count(), 2);
        h.add(a, addr(1), &[], &[[1; 32]], 0);
        assert_eq!(h.holders(&PieceId([1; 32])).count(), 1);
        h.forget(&b);
        assert!(
            !h.by_piece.contains_key(&PieceId([1; 32])),
            "empty keys are pruned"
        );
        assert_eq!(h.entries, 1);
        let flood: Vec<[u8; 32]> = (0..(MAX_PIECES_PER_PEER as u32 + 10))
            .map(|i| {
                let mut k = [0u8; 32];
                k[..4].copy_from_slice(&i.to_le_bytes());
                k[31] = 9;
                k
            })
            .collect();
        h.add(b, addr(2), &flood, &[], 0);
        assert_eq!(h.by_peer[&b].1.len(), MAX_PIECES_PER_PEER);
        h.forget(&b);
        assert_eq!(h.entries, 1);
        assert_eq!(h.by_piece.len(), 1);
    }

    #[test]
    fn holders_that_stop_announcing_expire() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut h = Holders::default();
        h.add(a, addr(1), &[[1; 32]], &[], 100);
        h.add(b, addr(2), &[[1; 32]], &[], 100);
        h.add(a, addr(1), &[], &[], 200);
        h.expire(150);
        let left: Vec<PeerId> = h.holders(&PieceId([1; 32])).map(|(p, _)| *p).collect();
        assert_eq!(left, vec![a]);
        assert_eq!(h.entries, 1);
    }

    #[test]
    fn a_dropped_piece_is_remembered_until_it_expires() {
        let a = PeerId::random();
        let mut h = Holders::default();
        h.add(a, addr(1), &[[1; 32]], &[], 100);
        h.add(a, addr(1), &[], &[[1; 32]], 110);
        assert!(h.dropped(&a, &PieceId([1; 32])));
        assert!(!h.dropped(&a, &PieceId([2; 32])));
        h.add(a, addr(1), &[], &[], 200);
        h.expire(150);
        assert!(!h.dropped(&a, &PieceId([1; 32])));
    }
}
