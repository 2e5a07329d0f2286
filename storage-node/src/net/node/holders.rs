//! Who holds which piece, as the holders announced it.

use std::collections::{HashMap, HashSet};

use libp2p::PeerId;
use tracing::debug;

use crate::{ids::PieceId, net::wire::DataAddr};

/// Most (piece, holder) entries remembered about other nodes, by default.
pub const DEFAULT_HOLDER_ENTRIES: usize = 8 << 20;
/// Most pieces one peer may claim to hold (a 1 PiB node at the default block size).
pub(super) const MAX_PIECES_PER_PEER: usize = 1 << 20;
/// Most (peer, piece) drops remembered.
const MAX_DROPPED: usize = 1 << 16;
/// Most peers in the holder table.
const MAX_HOLDER_PEERS: usize = 4096;

/// Who holds which piece, as the holders announced it. Bounded: each peer may claim at
/// most [`MAX_PIECES_PER_PEER`] pieces and the table at most its entry limit; a peer's
/// claims are dropped when the node forgets the peer (it announces them again when it
/// comes back) or when it stops announcing ([`Holders::expire`]). The node takes
/// announcements only from peers it knows (met over a connection of their own).
///
/// A full table does not turn newcomers away: room is made by taking entries from the
/// peer without standing that claims the most, for as long as it claims more than the
/// newcomer, so identities that announce junk end up sharing the table evenly with the
/// honest new nodes, and never take room from established nodes. A table full of peers
/// gives up the one without standing that claims the least, if that is no more than the
/// newcomer announces.
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
    max_peers: usize,
}

impl Default for Holders {
    fn default() -> Self {
        Self::new(DEFAULT_HOLDER_ENTRIES)
    }
}

impl Holders {
    /// (piece, holder) entries held now.
    pub(super) fn len(&self) -> usize {
        self.entries
    }

    /// An empty table of at most `max_entries` (piece, holder) entries.
    pub(super) fn new(max_entries: usize) -> Self {
        Self {
            by_piece: HashMap::new(),
            by_peer: HashMap::new(),
            heard: HashMap::new(),
            dropped: HashMap::new(),
            entries: 0,
            max_entries: max_entries.max(1),
            max_peers: MAX_HOLDER_PEERS,
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
        if !self.by_peer.contains_key(&peer) && self.by_peer.len() >= self.max_peers {
            // A full peer table gives up the peer without standing that claims the
            // least, if that is no more than the newcomer announces: identities that
            // claim nothing cannot hold the table against one that does.
            match self.least(&peer, pieces.len(), established) {
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
        // The pieces new to this peer's claim, within what one peer may claim.
        let per_peer = MAX_PIECES_PER_PEER.min(self.max_entries);
        let mut fresh: Vec<PieceId> = {
            let mine = self.by_peer.get(&peer).map(|(_, m)| m);
            let room = per_peer.saturating_sub(mine.map_or(0, HashSet::len));
            let mut seen = HashSet::new();
            pieces
                .iter()
                .map(|p| PieceId(*p))
                .filter(|p| !mine.is_some_and(|m| m.contains(p)) && seen.insert(*p))
                .take(room)
                .collect()
        };
        if self.claimed(&peer) + fresh.len() >= per_peer {
            debug!(%peer, "peer claims as many pieces as a peer may; ignoring the rest");
        }
        // Free room first; then room taken from the biggest claimer without standing, in
        // batches, for as long as it claims more than this peer would: max-min fair.
        let free = self
            .max_entries
            .saturating_sub(self.entries)
            .min(fresh.len());
        let mut take: Vec<PieceId> = fresh.drain(..free).collect();
        let mut have = self.claimed(&peer) + take.len();
        while !fresh.is_empty() {
            let Some(v) = self.hog(&peer, have + 1, established) else {
                debug!(%peer, "holder table full; ignoring the rest of this announcement");
                break;
            };
            // Each entry moved keeps the victim above this peer: at most half the gap.
            let n = ((self.claimed(&v) - have) / 2).clamp(1, fresh.len());
            self.drop_some(&v, n);
            take.extend(fresh.drain(..n));
            have += n;
        }
        if let Some((_, mine)) = self.by_peer.get_mut(&peer) {
            for p in take {
                if mine.insert(p) {
                    self.by_piece.entry(p).or_default().push(peer);
                    self.entries += 1;
                }
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
    pub(super) fn claimed(&self, peer: &PeerId) -> usize {
        self.by_peer.get(peer).map_or(0, |(_, m)| m.len())
    }

    /// The peer other than `except`, without standing, that claims the most pieces, if it
    /// claims more than `more_than`. Standing is asked of the biggest claimers first, and
    /// only until one without it is found.
    fn hog(
        &self,
        except: &PeerId,
        more_than: usize,
        established: &dyn Fn(&PeerId) -> bool,
    ) -> Option<PeerId> {
        let mut big: Vec<(usize, &PeerId)> = self
            .by_peer
            .iter()
            .filter(|(p, (_, m))| *p != except && m.len() > more_than)
            .map(|(p, (_, m))| (m.len(), p))
            .collect();
        big.sort_unstable_by_key(|x| std::cmp::Reverse(x.0));
        big.into_iter()
            .find(|(_, p)| !established(p))
            .map(|(_, p)| *p)
    }

    /// The peer other than `except`, without standing, that claims the fewest pieces, if
    /// it claims no more than `at_most`.
    fn least(
        &self,
        except: &PeerId,
        at_most: usize,
        established: &dyn Fn(&PeerId) -> bool,
    ) -> Option<PeerId> {
        let mut small: Vec<(usize, &PeerId)> = self
            .by_peer
            .iter()
            .filter(|(p, (_, m))| *p != except && m.len() <= at_most)
            .map(|(p, (_, m))| (m.len(), p))
            .collect();
        small.sort_unstable_by_key(|x| x.0);
        small
            .into_iter()
            .find(|(_, p)| !established(p))
            .map(|(_, p)| *p)
    }

    /// Forgets `n` of the pieces `peer` claims (any), in one pass over its claim.
    fn drop_some(&mut self, peer: &PeerId, n: usize) {
        let Some((_, mine)) = self.by_peer.get_mut(peer) else {
            return;
        };
        let gone: Vec<PieceId> = mine.iter().take(n).copied().collect();
        for p in &gone {
            mine.remove(p);
            Self::unlink(&mut self.by_piece, p, peer);
        }
        self.entries -= gone.len();
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
    fn identities_that_claim_nothing_cannot_hold_the_peer_table() {
        let est = PeerId::random();
        let standing = move |p: &PeerId| *p == est;
        let mut h = Holders::new(100);
        h.max_peers = 3;
        h.add(est, addr(9), &[], &[], 0, &standing);
        let empties: Vec<PeerId> = (0..2).map(|_| PeerId::random()).collect();
        for (i, e) in empties.iter().enumerate() {
            h.add(*e, addr(i as u8), &[], &[], 0, &standing);
        }
        assert_eq!(h.by_peer.len(), 3);
        // A newcomer with pieces takes the place of one that claims nothing.
        let honest = PeerId::random();
        h.add(honest, addr(7), &ids(0, 2), &[], 0, &standing);
        assert_eq!(h.claimed(&honest), 2);
        assert!(
            h.by_peer.contains_key(&est),
            "an established peer keeps its place"
        );
        // One that claims nothing cannot push out one that claims something.
        let other = PeerId::random();
        h.add(other, addr(8), &[], &[], 0, &standing);
        assert!(h.by_peer.contains_key(&honest));
        assert_eq!(h.by_peer.len(), 3);
    }

    proptest::proptest! {
        /// Whatever peers announce, the table stays within its limit and consistent,
        /// and an established peer's entries are never taken for another's.
        #[test]
        fn the_table_stays_bounded_consistent_and_fair_to_established_peers(
            anns in proptest::collection::vec((0usize..5, 0u32..40, 1u32..30), 1..40),
            max in 1usize..60,
        ) {
            let peers: Vec<PeerId> = (0..5).map(|_| PeerId::random()).collect();
            let est = peers[0];
            let standing = move |p: &PeerId| *p == est;
            let mut h = Holders::new(max);
            for (who, from, n) in anns {
                let before = h.claimed(&est);
                h.add(peers[who], addr(who as u8), &ids(from, n), &[], 0, &standing);
                if who != 0 {
                    proptest::prop_assert!(h.claimed(&est) >= before, "an established peer lost entries");
                }
                proptest::prop_assert!(h.entries <= max);
                let claims: usize = h.by_peer.values().map(|(_, m)| m.len()).sum();
                let listed: usize = h.by_piece.values().map(Vec::len).sum();
                proptest::prop_assert_eq!(claims, h.entries);
                proptest::prop_assert_eq!(listed, h.entries);
            }
        }
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
