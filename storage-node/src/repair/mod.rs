//! Repair decisions, without I/O: when a stripe needs repair, who does it, and where the
//! rebuilt pieces go.
//!
//! A stripe of `k + m` pieces survives while any `k` are intact. Repair starts early, when
//! its healthy pieces fall below a threshold (default `k + ceil(m/2)`), so that the stripe
//! still tolerates losses while it is being repaired; it then rebuilds every piece that is
//! not healthy, not only enough to cross the threshold again.
//!
//! Who repairs is settled through claims everyone sees: a node that wants to repair a
//! stripe gossips a claim with an expiry (a lease). Of two live claims the one with the
//! lower [`claim_rank`] wins, so two nodes that claim at once agree on the winner without
//! another round trip; the loser backs off. The winner renews its lease while it works
//! and releases the claim when done. A repairer that crashes stops renewing and its
//! lease runs out, so another node (or itself, on restart) takes the stripe up again.
//! Repair is idempotent: it reads the stripe's state afresh, and asking a node to hold a
//! piece it already holds changes nothing.

use std::collections::HashMap;

use crate::ids::{NodeId, StripeId};

mod job;
use crate::manifest::Stripe;
pub use job::{Action, Event, Holds, Outcome, Plan, RepairJob};

/// The id of `stripe`: a hash of its piece ids in order.
pub fn stripe_id(stripe: &Stripe) -> StripeId {
    let ids: Vec<crate::ids::PieceId> = stripe.pieces.iter().map(|p| p.id).collect();
    StripeId::of_pieces(&ids)
}

/// The default repair threshold for `k + m`: repair when fewer than `k + ceil(m/2)`
/// pieces are healthy.
pub fn default_threshold(k: usize, m: usize) -> usize {
    k + m.div_ceil(2)
}

/// What to do about one stripe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Enough healthy pieces.
    Healthy,
    /// Rebuild these pieces (indices into the stripe).
    Repair {
        /// Pieces to rebuild.
        missing: Vec<usize>,
    },
    /// Fewer than `k` healthy pieces: nothing can be rebuilt from what is reachable.
    Unrecoverable {
        /// Healthy pieces.
        healthy: usize,
    },
}

/// Decides for a stripe of `n` pieces coded `k`-of-`n`, given whether each is healthy.
pub fn decide(k: usize, threshold: usize, healthy: &[bool]) -> Decision {
    let good = healthy.iter().filter(|&&h| h).count();
    if good >= threshold.min(healthy.len()) {
        Decision::Healthy
    } else if good < k {
        Decision::Unrecoverable { healthy: good }
    } else {
        Decision::Repair {
            missing: (0..healthy.len()).filter(|&i| !healthy[i]).collect(),
        }
    }
}

/// The rank of `node`'s claim on `stripe`: lower wins. A hash, so no node is always first
/// and the work spreads over the network.
pub fn claim_rank(stripe: &StripeId, node: &NodeId) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"cairn repair claim v1");
    h.update(&stripe.0);
    h.update(&node.0);
    *h.finalize().as_bytes()
}

/// A claim on a stripe's repair, as gossiped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// The stripe.
    pub stripe: StripeId,
    /// Who claims it (the gossip message's signed source).
    pub claimer: NodeId,
    /// When the lease ends, seconds since the epoch; renewed while the repair runs.
    pub expires_unix: u64,
    /// The repair finished: the claim is released.
    pub done: bool,
}

/// Encoded length of a claim (without its claimer, which the gossip message carries).
pub const CLAIM_LEN: usize = 32 + 8 + 1;

impl Claim {
    /// Encodes for gossip.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CLAIM_LEN);
        out.extend_from_slice(&self.stripe.0);
        out.extend_from_slice(&self.expires_unix.to_le_bytes());
        out.push(u8::from(self.done));
        out
    }

    /// Decodes a gossiped claim from `claimer`.
    pub fn decode(bytes: &[u8], claimer: NodeId) -> Option<Self> {
        if bytes.len() != CLAIM_LEN || bytes[40] > 1 {
            return None;
        }
        let stripe = StripeId(bytes[..32].try_into().ok()?);
        let expires_unix = u64::from_le_bytes(bytes[32..40].try_into().ok()?);
        Some(Self {
            stripe,
            claimer,
            expires_unix,
            done: bytes[40] == 1,
        })
    }
}

/// Most live claims remembered.
const MAX_CLAIMS: usize = 1 << 16;
/// Most live claims one node may hold at once. An honest node runs a few repairs at a
/// time; the cap keeps one node from filling the board and so stopping everyone's repair.
pub const MAX_CLAIMS_PER_NODE: usize = 64;
/// The longest lease a claim may ask for; anything longer is cut to this.
pub const MAX_LEASE_SECS: u64 = 3600;
/// How long a claim may be held, renewals included. An honest repair of one stripe takes
/// seconds to minutes; a claim still held this long after it was made is making no
/// progress, so it lapses and its claimer may not claim that stripe again for as long.
pub const MAX_CLAIM_RUN_SECS: u64 = 15 * 60;

/// A live claim.
#[derive(Debug, Clone, Copy)]
struct Live {
    who: NodeId,
    until: u64,
    since: u64,
}

impl Live {
    fn live(&self, now: u64) -> bool {
        self.until > now && self.since.saturating_add(MAX_CLAIM_RUN_SECS) > now
    }
}

/// The claims a node has seen: which stripe is being repaired by whom.
///
/// The board takes claims as they come; who may claim at all (a proven holder of a piece
/// of the stripe) is for the caller to check before [`ClaimBoard::observe`].
#[derive(Debug, Default)]
pub struct ClaimBoard {
    claims: HashMap<StripeId, Live>,
    /// Live claims per claimer (recounted when the board is pruned).
    per_node: HashMap<NodeId, usize>,
    /// A claimer whose claim on a stripe lapsed, and until when it may not claim it again.
    barred: HashMap<StripeId, (NodeId, u64)>,
}

impl ClaimBoard {
    /// An empty board.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes in a claim seen at time `now`.
    pub fn observe(&mut self, c: Claim, now: u64) {
        let expires = c.expires_unix.min(now.saturating_add(MAX_LEASE_SECS));
        if self
            .barred
            .get(&c.stripe)
            .is_some_and(|(who, until)| *who == c.claimer && *until > now)
        {
            return;
        }
        match self.claims.get(&c.stripe).copied() {
            Some(l) if c.done => {
                if l.who == c.claimer {
                    self.remove(&c.stripe);
                }
            }
            _ if c.done => {}
            Some(l) if l.who == c.claimer && l.since.saturating_add(MAX_CLAIM_RUN_SECS) <= now => {
                // Renewed and renewed, but never done: it lapses.
                self.remove(&c.stripe);
                self.bar(c.stripe, c.claimer, now);
            }
            Some(l)
                if l.who != c.claimer
                    && l.live(now)
                    && claim_rank(&c.stripe, &l.who) < claim_rank(&c.stripe, &c.claimer) => {}
            Some(l) if l.who == c.claimer => {
                // A renewal.
                if expires > now {
                    self.claims.insert(
                        c.stripe,
                        Live {
                            until: expires,
                            ..l
                        },
                    );
                } else {
                    self.remove(&c.stripe);
                }
            }
            _ => {
                if expires <= now {
                    return;
                }
                let full = |b: &Self| {
                    b.claims.len() >= MAX_CLAIMS
                        || b.per_node.get(&c.claimer).copied().unwrap_or(0) >= MAX_CLAIMS_PER_NODE
                };
                if full(self) {
                    self.prune(now);
                    if full(self) {
                        return;
                    }
                }
                if let Some(old) = self.claims.get(&c.stripe).copied()
                    && old.since.saturating_add(MAX_CLAIM_RUN_SECS) <= now
                {
                    self.bar(c.stripe, old.who, now);
                }
                self.remove(&c.stripe);
                self.claims.insert(
                    c.stripe,
                    Live {
                        who: c.claimer,
                        until: expires,
                        since: now,
                    },
                );
                *self.per_node.entry(c.claimer).or_default() += 1;
            }
        }
    }

    fn bar(&mut self, stripe: StripeId, who: NodeId, now: u64) {
        if self.barred.len() >= MAX_CLAIMS {
            self.barred.retain(|_, (_, until)| *until > now);
        }
        if self.barred.len() < MAX_CLAIMS {
            self.barred
                .insert(stripe, (who, now.saturating_add(MAX_CLAIM_RUN_SECS)));
        }
    }

    fn remove(&mut self, stripe: &StripeId) {
        if let Some(l) = self.claims.remove(stripe)
            && let Some(n) = self.per_node.get_mut(&l.who)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_node.remove(&l.who);
            }
        }
    }

    /// Forgets claims that are no longer live.
    fn prune(&mut self, now: u64) {
        let lapsed: Vec<(StripeId, NodeId)> = self
            .claims
            .iter()
            .filter(|(_, l)| l.until > now && !l.live(now))
            .map(|(s, l)| (*s, l.who))
            .collect();
        for (s, who) in lapsed {
            self.bar(s, who, now);
        }
        self.claims.retain(|_, l| l.live(now));
        self.per_node.clear();
        for l in self.claims.values() {
            *self.per_node.entry(l.who).or_default() += 1;
        }
        self.barred.retain(|_, (_, until)| *until > now);
    }

    /// Who holds a live claim on `stripe` at `now`.
    pub fn holder(&self, stripe: &StripeId, now: u64) -> Option<NodeId> {
        self.claims
            .get(stripe)
            .filter(|l| l.live(now))
            .map(|l| l.who)
    }

    /// Whether `me` may claim `stripe` at `now`: nobody else holds a live claim, and `me`
    /// is not barred from it after a claim of its own lapsed.
    pub fn may_claim(&self, stripe: &StripeId, me: &NodeId, now: u64) -> bool {
        let barred = self
            .barred
            .get(stripe)
            .is_some_and(|(who, until)| who == me && *until > now);
        !barred && self.holder(stripe, now).is_none_or(|who| who == *me)
    }
}

/// Orders candidate nodes for a rebuilt piece: those holding no piece of the stripe, in
/// an order particular to the stripe (so rebuilt pieces spread out), best first.
pub fn targets(stripe: &StripeId, candidates: &[NodeId], holding: &[NodeId]) -> Vec<NodeId> {
    let mut out: Vec<NodeId> = candidates
        .iter()
        .filter(|c| !holding.contains(c))
        .copied()
        .collect();
    out.sort_by_key(|c| claim_rank(stripe, c));
    out.dedup();
    out
}

/// Gives each piece to be rebuilt a node of its own, for as many pieces as possible.
/// `allowed[i]` lists, best first, the nodes piece `i` may go to (free of the stripe, and
/// not a node whose copy of that very piece failed an audit). Taking each piece's best
/// node in turn can strand a piece whose only allowed node another piece took; a maximum
/// matching (augmenting paths; a stripe has few pieces, so it is cheap) cannot. `None`
/// for a piece no node is left for.
pub fn assign(allowed: &[Vec<NodeId>]) -> Vec<Option<NodeId>> {
    fn augment(
        piece: usize,
        allowed: &[Vec<NodeId>],
        owner: &mut HashMap<NodeId, usize>,
        seen: &mut Vec<NodeId>,
    ) -> bool {
        for node in &allowed[piece] {
            if seen.contains(node) {
                continue;
            }
            seen.push(*node);
            let free = match owner.get(node) {
                None => true,
                Some(&other) => augment(other, allowed, owner, seen),
            };
            if free {
                owner.insert(*node, piece);
                return true;
            }
        }
        false
    }
    let mut owner: HashMap<NodeId, usize> = HashMap::new();
    for piece in 0..allowed.len() {
        augment(piece, allowed, &mut owner, &mut Vec::new());
    }
    let mut matched = vec![None; allowed.len()];
    for (node, piece) in owner {
        matched[piece] = Some(node);
    }
    matched
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn assignment_gives_each_piece_its_own_node_where_one_exists() {
        let (a, b) = (NodeId([1; 32]), NodeId([2; 32]));
        // Piece 0 may go anywhere and prefers b; piece 1 may only go to b (a's copy of
        // piece 1 failed an audit). Best-first would strand piece 1.
        assert_eq!(assign(&[vec![b, a], vec![b]]), vec![Some(a), Some(b)]);
        // Best first where nothing is contested.
        assert_eq!(assign(&[vec![b, a], vec![a]]), vec![Some(b), Some(a)]);
        assert_eq!(
            assign(&[vec![], vec![a], vec![a]]),
            vec![None, Some(a), None]
        );
    }

    proptest! {
        #[test]
        fn assignment_is_a_maximum_matching(
            allowed in proptest::collection::vec(
                proptest::collection::btree_set(0u8..6, 0..4), 0..6),
        ) {
            let allowed: Vec<Vec<NodeId>> = allowed
                .into_iter()
                .map(|s| s.into_iter().map(|b| NodeId([b; 32])).collect())
                .collect();
            let got = assign(&allowed);
            prop_assert_eq!(got.len(), allowed.len());
            // Every match is allowed and no node is matched twice.
            let mut used = std::collections::HashSet::new();
            for (g, a) in got.iter().zip(&allowed) {
                if let Some(n) = g {
                    prop_assert!(a.contains(n));
                    prop_assert!(used.insert(*n));
                }
            }
            // As many as a brute-force search finds.
            fn best(i: usize, allowed: &[Vec<NodeId>], used: &mut Vec<NodeId>) -> usize {
                if i == allowed.len() {
                    return 0;
                }
                let mut m = best(i + 1, allowed, used);
                for n in &allowed[i] {
                    if !used.contains(n) {
                        used.push(*n);
                        m = m.max(1 + best(i + 1, allowed, used));
                        used.pop();
                    }
                }
                m
            }
            prop_assert_eq!(used.len(), best(0, &allowed, &mut Vec::new()));
        }
    }

    #[test]
    fn threshold_and_decisions() {
        assert_eq!(default_threshold(4, 2), 5);
        assert_eq!(default_threshold(10, 4), 12);
        assert_eq!(default_threshold(10, 5), 13);
        assert_eq!(default_threshold(4, 0), 4);
        let all = [true; 6];
        assert_eq!(decide(4, 5, &all), Decision::Healthy);
        let one = [true, true, false, true, true, true];
        assert_eq!(decide(4, 5, &one), Decision::Healthy);
        let two = [true, false, false, true, true, true];
        assert_eq!(
            decide(4, 5, &two),
            Decision::Repair {
                missing: vec![1, 2]
            }
        );
        let three = [true, false, false, false, true, true];
        assert_eq!(decide(4, 5, &three), Decision::Unrecoverable { healthy: 3 });
    }

    fn claim(stripe: u8, who: u8, expires: u64, done: bool) -> Claim {
        Claim {
            stripe: StripeId([stripe; 32]),
            claimer: NodeId([who; 32]),
            expires_unix: expires,
            done,
        }
    }

    #[test]
    fn concurrent_claims_agree_on_one_winner_whatever_the_order() {
        let s = StripeId([1; 32]);
        let (a, b) = (NodeId([1; 32]), NodeId([2; 32]));
        let winner = if claim_rank(&s, &a) < claim_rank(&s, &b) {
            a
        } else {
            b
        };
        for order in [[1u8, 2], [2, 1]] {
            let mut board = ClaimBoard::new();
            for w in order {
                board.observe(claim(1, w, 100, false), 10);
            }
            assert_eq!(board.holder(&s, 10), Some(winner));
            assert!(board.may_claim(&s, &winner, 10));
            let loser = if winner == a { b } else { a };
            assert!(!board.may_claim(&s, &loser, 10));
        }
    }

    #[test]
    fn leases_expire_and_release_frees_the_stripe() {
        let s = StripeId([1; 32]);
        let mut board = ClaimBoard::new();
        board.observe(claim(1, 1, 100, false), 10);
        assert!(!board.may_claim(&s, &NodeId([2; 32]), 50));
        assert!(board.may_claim(&s, &NodeId([2; 32]), 100), "lease over");
        // Only the claimer can release.
        board.observe(claim(1, 2, 0, true), 50);
        assert_eq!(board.holder(&s, 50), Some(NodeId([1; 32])));
        board.observe(claim(1, 1, 0, true), 50);
        assert_eq!(board.holder(&s, 50), None);
        // An expired claimer's stripe can be taken by anyone, whatever the ranks.
        board.observe(claim(1, 1, 60, false), 50);
        board.observe(claim(1, 2, 200, false), 70);
        assert_eq!(board.holder(&s, 70), Some(NodeId([2; 32])));
        // Leases are capped.
        board.observe(claim(3, 1, u64::MAX, false), 0);
        assert_eq!(board.holder(&StripeId([3; 32]), MAX_LEASE_SECS), None);
    }

    #[test]
    fn a_claim_that_makes_no_progress_lapses() {
        let s = StripeId([1; 32]);
        let (squatter, honest) = (NodeId([1; 32]), NodeId([2; 32]));
        let mut board = ClaimBoard::new();
        // Renewed every minute, never done.
        let mut t = 10;
        while t < 10 + MAX_CLAIM_RUN_SECS {
            board.observe(claim(1, 1, t + 300, false), t);
            assert_eq!(board.holder(&s, t), Some(squatter));
            t += 60;
        }
        board.observe(claim(1, 1, t + 300, false), t);
        assert_eq!(board.holder(&s, t), None, "lapsed");
        assert!(board.may_claim(&s, &honest, t));
        assert!(!board.may_claim(&s, &squatter, t), "barred after a lapse");
        // Its claims are ignored for a while, whatever their rank, and another's go in.
        board.observe(claim(1, 1, t + 300, false), t + 1);
        assert_eq!(board.holder(&s, t + 1), None);
        board.observe(claim(1, 2, t + 300, false), t + 2);
        assert_eq!(board.holder(&s, t + 2), Some(honest));
        board.observe(claim(1, 1, t + 300, false), t + 3);
        assert_eq!(board.holder(&s, t + 3), Some(honest));
    }

    #[test]
    fn one_node_cannot_fill_the_board() {
        let mut board = ClaimBoard::new();
        let flood = NodeId([9; 32]);
        for i in 0..(MAX_CLAIMS_PER_NODE as u32 + 100) {
            let mut s = [0u8; 32];
            s[..4].copy_from_slice(&i.to_le_bytes());
            board.observe(
                Claim {
                    stripe: StripeId(s),
                    claimer: flood,
                    expires_unix: 100,
                    done: false,
                },
                10,
            );
        }
        assert_eq!(board.per_node[&flood], MAX_CLAIMS_PER_NODE);
        assert_eq!(board.claims.len(), MAX_CLAIMS_PER_NODE);
        // Another node's claims still go in, and renewals of the flooder's own do too.
        board.observe(claim(200, 1, 100, false), 10);
        assert_eq!(
            board.holder(&StripeId([200; 32]), 10),
            Some(NodeId([1; 32]))
        );
        let mut s0 = [0u8; 32];
        s0[..4].copy_from_slice(&0u32.to_le_bytes());
        board.observe(
            Claim {
                stripe: StripeId(s0),
                claimer: flood,
                expires_unix: 500,
                done: false,
            },
            10,
        );
        assert!(!board.may_claim(&StripeId(s0), &NodeId([1; 32]), 400));
        // Once its leases run out, its count does too.
        board.observe(claim(201, 9, 1000, false), 450);
        assert_eq!(board.per_node[&flood], 2);
    }

    #[test]
    fn targets_skip_holders_of_the_stripe() {
        let s = StripeId([5; 32]);
        let c: Vec<NodeId> = (0..6).map(|i| NodeId([i; 32])).collect();
        let t = targets(&s, &c, &c[..4]);
        assert_eq!(t.len(), 2);
        assert!(t.iter().all(|x| !c[..4].contains(x)));
    }

    proptest! {
        #[test]
        fn claim_decoder_takes_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Some(c) = Claim::decode(&bytes, NodeId([0; 32])) {
                prop_assert_eq!(c.encode(), bytes);
            }
        }

        /// Whatever subset is healthy, a repair never asks for a piece that is healthy,
        /// and never claims recoverable what has fewer than k.
        #[test]
        fn decisions_are_consistent(healthy in proptest::collection::vec(any::<bool>(), 1..20), k in 1usize..10) {
            let k = k.min(healthy.len());
            let t = default_threshold(k, healthy.len() - k);
            let good = healthy.iter().filter(|&&h| h).count();
            match decide(k, t, &healthy) {
                Decision::Healthy => prop_assert!(good >= t),
                Decision::Repair { missing } => {
                    prop_assert!(good >= k && good < t);
                    prop_assert!(missing.iter().all(|&i| !healthy[i]));
                    prop_assert_eq!(missing.len(), healthy.len() - good);
                }
                Decision::Unrecoverable { healthy: h } => prop_assert!(h < k),
            }
        }
    }
}
