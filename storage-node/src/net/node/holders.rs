//! Who holds which piece, as the holders announced it.

use std::collections::{HashMap, HashSet};

use libp2p::PeerId;
use tracing::debug;

use crate::{ids::PieceId, net::wire::DataAddr};

/// Most (piece, holder) entries remembered about other nodes, by default.
pub(super) const DEFAULT_HOLDER_ENTRIES: usize = 8 << 20;
/// Most pieces one peer may claim to hold (a 1 PiB node at the default block size).
pub(super) const MAX_PIECES_PER_PEER: usize = 1 << 20;
/// Most (peer, piece) drops remembered.
const MAX_DROPPED: usize = 1 << 16;
/// Most peers in the holder table.
const MAX_HOLDER_PEERS: usize = 4096;

/// Who holds which piece, as the holders announced it. Bounded: each peer may claim at
/// most [`MAX_PIECES_PER_PEER`] pieces and the table at most its entry limit; a peer's
/// claims are dropped when its last connection closes (it announces them again when it
/// comes back) or when it stops announcing ([`Holders::expire`]). The node takes
/// announcements only from peers connected to it.
///
/// A full table does not turn newcomers away: room is made by taking entries from the
/// peer without standing that claims the most, down to what the newcomer has, so
/// identities that announce junk end up sharing the table evenly with the honest new
/// nodes, and never take room from established nodes.
pub(super) struct Holders {
    by_piece: HashMap<PieceId, Vec<PeerId>>,
    pub(super) by_peer: HashMap<PeerId, (DataAddr, HashSet<PieceId>)>,
    /// When each peer last announced, seconds since the epoch.
    heard: HashMap<PeerId, u64>,
    /// Pieces peers said they dropped (found corrupt, or no longer referenced), and when:
    /// a rebuilt piece does not go back to a node whose copy just went bad.
    dropped: HashMap<(PeerId, PieceId), u64>,
    entries: usize,
    max_entries: usize,
}

impl Default for Holders {
    fn default() -> Self {
        Self::new(DEFAULT_HOLDER_ENTRIES)
    }
}

impl Holders {
    /// An empty table of at most `max_entries` (piece, holder) entries.
    pub(super) fn new(max_entries: usize) -> Self {
        Self {
            by_piece: HashMap::new(),
            by_peer: HashMap::new(),
            heard: HashMap::new(),
            dropped: HashMap::new(),
            entries: 0,
            max_entries: max_entries.max(1),
        }
    }

    /// Takes `peer`'s announcement. `established` says which peers have standing here:
    /// room for a newcomer is only ever taken from peers without it.
    pub(super) fn add(
        &mut self,
        peer: PeerId,
        data: DataAddr,
        pieces: &[[u8; 32]],
        dropped: &[[u8; 32]],
        now: u64,
        established: &dyn Fn(&PeerId) -> bool,
    ) {
        if !self.by_peer.contains_key(&peer) && self.by_peer.len() >= MAX_HOLDER_PEERS {
            match self.hog(&peer, 0, established) {
                Some(v) => self.forget(&v),
                None => {
                    debug!(%peer, "holder table has too many peers; ignoring this one's announcement");
                    return;
                }
            }
        }
        self.heard.insert(peer, now);
        match self.by_peer.get_mut(&peer) {
            Some(e) => e.0 = data,
            None => {
                self.by_peer.insert(peer, (data, HashSet::new()));
            }
        }
        let per_peer = MAX_PIECES_PER_PEER.min(self.max_entries);
        let mut victim: Option<PeerId> = None;
        for p in pieces.iter().map(|p| PieceId(*p)) {
            let have = self.claimed(&peer);
            if have >= per_peer {
                debug!(%peer, "peer claims more pieces than a peer may; ignoring the rest");
                break;
            }
            if self.by_peer.get(&peer).is_some_and(|(_, m)| m.contains(&p)) {
                continue;
            }
            if self.entries >= self.max_entries {
                if victim.is_none_or(|v| self.claimed(&v) <= have + 1) {
                    victim = self.hog(&peer, have + 1, established);
                }
                let Some(v) = victim else {
                    debug!(%peer, "holder table full; ignoring the rest of this announcement");
                    break;
                };
                self.drop_one(&v);
            }
            if let Some((_, mine)) = self.by_peer.get_mut(&peer)
                && mine.insert(p)
            {
                self.by_piece.entry(p).or_default().push(peer);
                self.entries += 1;
            }
        }
        let Some((_, mine)) = self.by_peer.get_mut(&peer) else {
            return;
        };
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

    /// How many pieces `peer` claims here.
    fn claimed(&self, peer: &PeerId) -> usize {
        self.by_peer.get(peer).map_or(0, |(_, m)| m.len())
    }

    /// The peer other than `except`, without standing, that claims the most pieces, if it
    /// claims more than `more_than`.
    fn hog(
        &self,
        except: &PeerId,
        more_than: usize,
        established: &dyn Fn(&PeerId) -> bool,
    ) -> Option<PeerId> {
        self.by_peer
            .iter()
            .filter(|(p, (_, m))| *p != except && m.len() > more_than && !established(p))
            .max_by_key(|(_, (_, m))| m.len())
            .map(|(p, _)| *p)
    }

    /// Forgets one of the pieces `peer` claims.
    fn drop_one(&mut self, peer: &PeerId) {
        let Some((_, mine)) = self.by_peer.get_mut(peer) else {
            return;
        };
        let Some(p) = mine.iter().next().copied() else {
            return;
        };
        mine.remove(&p);
        Self::unlink(&mut self.by_piece, &p, peer);
        self.entries -= 1;
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
        h.add(a, addr(1), &[[1; 32], [2; 32]], &[], 0, &|_| false);
        h.add(b, addr(2), &[[1; 32]], &[], 0, &|_| false);
        assert_eq!(h.holders(&PieceId([1; 32])).count(), 2);
        h.add(a, addr(1), &[], &[[1; 32]], 0, &|_| false);
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
        h.add(b, addr(2), &flood, &[], 0, &|_| false);
        assert_eq!(h.by_peer[&b].1.len(), MAX_PIECES_PER_PEER);
        h.forget(&b);
        assert_eq!(h.entries, 1);
        assert_eq!(h.by_piece.len(), 1);
    }

    /// `n` distinct piece ids starting at `from`.
    fn ids(from: u32, n: u32) -> Vec<[u8; 32]> {
        (from..from + n)
            .map(|i| {
                let mut k = [0u8; 32];
                k[..4].copy_from_slice(&i.to_le_bytes());
                k
            })
            .collect()
    }

    #[test]
    fn a_full_table_makes_room_from_the_biggest_claimer_without_standing() {
        let (junk, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let mut h = Holders::new(10);
        let nobody = |_: &PeerId| false;
        h.add(junk, addr(1), &ids(0, 10), &[], 0, &nobody);
        assert_eq!(h.entries, 10);
        // A newcomer is not turned away: it takes room from the one that claims most.
        h.add(b, addr(2), &ids(100, 4), &[], 0, &nobody);
        assert_eq!((h.claimed(&junk), h.claimed(&b)), (6, 4));
        // Down to an even share, and no further.
        h.add(c, addr(3), &ids(200, 10), &[], 0, &nobody);
        assert_eq!((h.claimed(&junk), h.claimed(&b), h.claimed(&c)), (3, 4, 3));
        assert_eq!(h.entries, 10);
        assert_eq!(h.holders(&PieceId(ids(100, 1)[0])).count(), 1);
    }

    #[test]
    fn room_is_never_taken_from_established_peers() {
        let (junk, est, late) = (PeerId::random(), PeerId::random(), PeerId::random());
        let mut h = Holders::new(10);
        let standing = move |p: &PeerId| *p == est;
        h.add(junk, addr(1), &ids(0, 10), &[], 0, &standing);
        h.add(est, addr(2), &ids(100, 5), &[], 0, &standing);
        assert_eq!((h.claimed(&junk), h.claimed(&est)), (5, 5));
        h.add(late, addr(3), &ids(200, 5), &[], 0, &standing);
        assert_eq!(
            (h.claimed(&junk), h.claimed(&est), h.claimed(&late)),
            (3, 5, 2)
        );
        // The biggest claimer itself gets nothing more once the table is full.
        h.add(junk, addr(1), &ids(300, 5), &[], 0, &standing);
        assert_eq!(h.claimed(&junk), 3);
        assert_eq!(h.entries, 10);
    }

    #[test]
    fn holders_that_stop_announcing_expire() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut h = Holders::default();
        h.add(a, addr(1), &[[1; 32]], &[], 100, &|_| false);
        h.add(b, addr(2), &[[1; 32]], &[], 100, &|_| false);
        h.add(a, addr(1), &[], &[], 200, &|_| false);
        h.expire(150);
        let left: Vec<PeerId> = h.holders(&PieceId([1; 32])).map(|(p, _)| *p).collect();
        assert_eq!(left, vec![a]);
        assert_eq!(h.entries, 1);
    }

    #[test]
    fn a_dropped_piece_is_remembered_until_it_expires() {
        let a = PeerId::random();
        let mut h = Holders::default();
        h.add(a, addr(1), &[[1; 32]], &[], 100, &|_| false);
        h.add(a, addr(1), &[], &[[1; 32]], 110, &|_| false);
        assert!(h.dropped(&a, &PieceId([1; 32])));
        assert!(!h.dropped(&a, &PieceId([2; 32])));
        h.add(a, addr(1), &[], &[], 200, &|_| false);
        h.expire(150);
        assert!(!h.dropped(&a, &PieceId([1; 32])));
    }
}
