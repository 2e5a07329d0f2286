//! Where the pieces of each stripe go: sans-IO, deterministic, tested alone.
//!
//! Every piece of a stripe lands on a different node, and no two on one failure domain
//! (one operator's machines, one /24 or /48: see [`super::domain`]). Each stripe draws its
//! nodes at random in proportion to the room they have left, so load follows capacity; a
//! node's weight is capped at [`WEIGHT_CAP`] times the median room, so one that claims
//! endless room draws a bounded share, and a node without room for another piece is
//! skipped. The draw is a function of a seed, the stripe's number and each node's `id`,
//! so pushing the same data with the same seed to the same nodes places each piece on the
//! same node again and finds it already held.
//! Nodes without standing (new identities, which anyone can make by the thousand) hold at
//! most a set number of pieces of a stripe, normally the `m` it can lose, whenever
//! established nodes can take the rest; they still get pieces, or they could never earn
//! standing.

/// Why a stripe could not be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// Fewer nodes than pieces per stripe.
    #[error(
        "{needed} distinct nodes are needed (k+m) but only {reachable} are reachable; start more nodes or use a smaller k+m"
    )]
    TooFewNodes {
        /// k + m.
        needed: usize,
        /// Nodes known.
        reachable: usize,
    },
    /// Enough nodes, but not enough of them with free capacity.
    #[error(
        "stripe {stripe} needs {needed} nodes with {bytes} bytes free each; only {with_room} have room"
    )]
    NoRoom {
        /// Stripe number in push order.
        stripe: u64,
        /// k + m.
        needed: usize,
        /// Piece size.
        bytes: u64,
        /// Nodes with room.
        with_room: usize,
    },
    /// Enough nodes with room, but too few failure domains among them.
    #[error(
        "stripe {stripe} needs {needed} nodes in distinct failure domains (operator, IPv4 /24, IPv6 /48) but the nodes with room span only {spanned}; add nodes under other operators or in other networks, or use a smaller k+m"
    )]
    TooFewDomains {
        /// Stripe number in push order.
        stripe: u64,
        /// k + m.
        needed: usize,
        /// The most pieces of the stripe that found nodes in distinct domains.
        spanned: usize,
    },
}

/// How many times the median room a node's weight may reach.
pub const WEIGHT_CAP: u64 = 4;

/// A node a push may place pieces on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// A number that names the node (a hash of its peer id): with the seed and the
    /// stripe, it draws the node's place in each stripe's order.
    pub id: u64,
    /// The room it has left, in bytes.
    pub free: u64,
    /// Whether it has standing: it was seen proving what it holds. New identities cost
    /// nothing to make, so they get a capped share of each stripe.
    pub established: bool,
    /// Its failure domains, numbered ([`super::domain::Interner`]); none for a node that
    /// is a domain of its own.
    pub domains: Vec<u32>,
}

impl Candidate {
    /// A node in no shared domain.
    pub fn new(id: u64, free: u64, established: bool) -> Self {
        Self {
            id,
            free,
            established,
            domains: Vec::new(),
        }
    }

    /// Whether it shares a failure domain with any of `taken`.
    pub fn shares_domain(&self, taken: &[u32]) -> bool {
        self.domains.iter().any(|d| taken.contains(d))
    }
}

/// Assigns stripes to nodes.
#[derive(Debug, Clone)]
pub struct Placer {
    nodes: Vec<Candidate>,
    max_new: usize,
    stripe: u64,
    seed: [u8; 32],
    /// The most weight any node draws with.
    cap: u64,
}

impl Placer {
    /// Places on `nodes`, in their order. At most `max_new` pieces of a stripe go to nodes
    /// without standing while established nodes with room can take the rest; give it the
    /// pieces a stripe can lose (`m`), so that a stripe survives all its new holders
    /// vanishing at once. A network with too few established nodes fills each stripe with
    /// as few new ones as it can.
    pub fn new(nodes: Vec<Candidate>, max_new: usize) -> Self {
        // The median of the rooms nodes set: a node without a limit (`u64::MAX`) weighs
        // what the cap allows, like one that claims endless room. With no limits at all,
        // every node weighs the same.
        let mut room: Vec<u64> = nodes
            .iter()
            .map(|c| c.free)
            .filter(|&f| f > 0 && f < u64::MAX)
            .collect();
        room.sort_unstable();
        let cap = room
            .get(room.len() / 2)
            .map_or(u64::MAX, |m| m.saturating_mul(WEIGHT_CAP).max(1));
        Self {
            nodes,
            max_new,
            stripe: 0,
            seed: [0; 32],
            cap,
        }
    }

    /// Draws with `seed` (all zeros unless given).
    pub fn with_seed(mut self, seed: [u8; 32]) -> Self {
        self.seed = seed;
        self
    }

    /// The nodes with room for a piece of `piece_len`, in this stripe's drawn order: a
    /// weighted draw without replacement (Efraimidis and Spirakis: the largest
    /// `u^(1/w)`, here `ln(u) / w`), weight the room left up to the cap.
    fn drawn(&self, piece_len: u64) -> Vec<usize> {
        let mut keyed: Vec<(f64, usize)> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].free >= piece_len)
            .map(|i| {
                let c = &self.nodes[i];
                let mut h = blake3::Hasher::new_keyed(&self.seed);
                h.update(&self.stripe.to_le_bytes());
                h.update(&c.id.to_le_bytes());
                let mut head = [0u8; 8];
                head.copy_from_slice(&h.finalize().as_bytes()[..8]);
                // Uniform in (0, 1]: 53 random bits, never zero.
                let u = ((u64::from_le_bytes(head) >> 11) + 1) as f64 / (1u64 << 53) as f64;
                let w = c.free.min(self.cap).max(1) as f64;
                (u.ln() / w, i)
            })
            .collect();
        keyed.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        keyed.into_iter().map(|(_, i)| i).collect()
    }

    /// Gives node `i` no more pieces.
    pub fn exclude(&mut self, i: usize) {
        if let Some(c) = self.nodes.get_mut(i) {
            c.free = 0;
        }
    }

    /// Picks `n` distinct nodes for the next stripe, whose pieces are `piece_len` bytes,
    /// and reserves the room. Returns node indices in piece order.
    pub fn place(&mut self, n: usize, piece_len: u64) -> Result<Vec<usize>, PlacementError> {
        let count = self.nodes.len();
        if count < n {
            return Err(PlacementError::TooFewNodes {
                needed: n,
                reachable: count,
            });
        }
        let with_room = self.drawn(piece_len);
        // Established nodes fill what they can, in distinct domains; new ones get at
        // most `max_new` pieces, or as many as the established leave to fill.
        let (established, _) = self.greedy(&with_room, n, 0, &[], Vec::new());
        let new_cap = self.max_new.max(n - established.len());
        // In drawn order, but a new node never takes a domain one of those established
        // nodes is in: a new identity that declares an established operator's label, or
        // sits in its /24, cannot push it out of the stripe.
        let reserved: Vec<u32> = established
            .iter()
            .flat_map(|&i| self.nodes[i].domains.iter().copied())
            .collect();
        let (mut chosen, domain_bound) = self.greedy(&with_room, n, new_cap, &reserved, Vec::new());
        if chosen.len() < n {
            // The drawn order can leave a gap the established nodes would not: take them
            // all, then new nodes in the domains they leave.
            let rest: Vec<usize> = with_room
                .iter()
                .copied()
                .filter(|i| !established.contains(i))
                .collect();
            let (fill, _) = self.greedy(&rest, n - established.len(), n, &[], reserved);
            if established.len() + fill.len() > chosen.len() {
                chosen = established;
                chosen.extend(fill);
            }
        }
        if chosen.len() < n {
            return Err(if domain_bound {
                PlacementError::TooFewDomains {
                    stripe: self.stripe,
                    needed: n,
                    spanned: chosen.len(),
                }
            } else {
                PlacementError::NoRoom {
                    stripe: self.stripe,
                    needed: n,
                    bytes: piece_len,
                    with_room: with_room.len(),
                }
            });
        }
        for &i in &chosen {
            self.nodes[i].free -= piece_len;
        }
        self.stripe += 1;
        Ok(chosen)
    }

    /// Takes up to `n` of `order`, in order, skipping any that shares a failure domain
    /// with one taken (or with `taken` as given), any new one in a `reserved` domain, and
    /// any new one past `new_cap`. Also says whether a domain turned a node away.
    fn greedy(
        &self,
        order: &[usize],
        n: usize,
        new_cap: usize,
        reserved: &[u32],
        mut taken: Vec<u32>,
    ) -> (Vec<usize>, bool) {
        let mut new_taken = 0;
        let mut chosen = Vec::with_capacity(n);
        let mut domain_bound = false;
        for &i in order {
            if chosen.len() == n {
                break;
            }
            let c = &self.nodes[i];
            if !c.established && new_taken == new_cap {
                continue;
            }
            if c.shares_domain(&taken) || (!c.established && c.shares_domain(reserved)) {
                domain_bound = true;
                continue;
            }
            new_taken += usize::from(!c.established);
            taken.extend_from_slice(&c.domains);
            chosen.push(i);
        }
        (chosen, domain_bound)
    }
}

/// How many pieces of a stripe sit on distinct nodes: the size of a largest matching of
/// pieces to nodes, where `holders[i]` lists the nodes (any ids) holding piece `i`.
///
/// A stripe coded `k`-of-`n` whose spread is `s` survives the loss of any `s - k` nodes:
/// give each matched piece its matched node; losing `t` nodes takes away at most `t` of
/// those, and the other matched pieces keep theirs. So `spread == n` is full redundancy,
/// and two pieces on one node and nowhere else count once.
pub fn spread<T: PartialEq>(holders: &[Vec<T>]) -> usize {
    matching(holders).iter().filter(|m| m.is_some()).count()
}

/// A largest matching of pieces to distinct holders: for each piece, the position in
/// `holders[i]` of the holder it is matched to, or `None`. Pieces with the same bytes
/// (the zero padding of a short last stripe, say) have the same id and the same holders;
/// the matching counts such a holder for one of them only, so repair knows to give the
/// others holders of their own.
pub fn matching<T: PartialEq>(holders: &[Vec<T>]) -> Vec<Option<usize>> {
    // Kuhn's augmenting paths: a stripe has at most a few hundred pieces and a few
    // holders each.
    let mut nodes: Vec<&T> = Vec::new();
    let adj: Vec<Vec<usize>> = holders
        .iter()
        .map(|hs| {
            hs.iter()
                .map(|h| match nodes.iter().position(|n| *n == h) {
                    Some(i) => i,
                    None => {
                        nodes.push(h);
                        nodes.len() - 1
                    }
                })
                .collect()
        })
        .collect();
    fn augment(
        p: usize,
        adj: &[Vec<usize>],
        seen: &mut [bool],
        owner: &mut [Option<usize>],
    ) -> bool {
        for &n in &adj[p] {
            if !seen[n] {
                seen[n] = true;
                if owner[n].is_none_or(|q| augment(q, adj, seen, owner)) {
                    owner[n] = Some(p);
                    return true;
                }
            }
        }
        false
    }
    let mut owner: Vec<Option<usize>> = vec![None; nodes.len()];
    for p in 0..adj.len() {
        let mut seen = vec![false; nodes.len()];
        augment(p, &adj, &mut seen, &mut owner);
    }
    let mut out = vec![None; holders.len()];
    for (n, o) in owner.iter().enumerate() {
        if let Some(p) = *o {
            out[p] = adj[p].iter().position(|&x| x == n);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Candidates with `free` room, all of them new: with no established node, the cap
    /// does not bind.
    fn open(free: &[u64]) -> Vec<Candidate> {
        free.iter()
            .enumerate()
            .map(|(i, &free)| Candidate::new(i as u64, free, false))
            .collect()
    }

    #[test]
    fn new_identities_get_at_most_max_new_pieces_of_a_stripe() {
        // Nodes 0..4 are new, 4..10 established: six established nodes take 4 of each
        // 6-piece stripe, new ones 2 at most, and still some.
        let nodes: Vec<Candidate> = (0..10)
            .map(|i| Candidate::new(i, u64::MAX, i >= 4))
            .collect();
        let mut p = Placer::new(nodes, 2);
        let mut new_total = 0;
        for _ in 0..20 {
            let c = p.place(6, 1).expect("fits");
            let new = c.iter().filter(|&&i| i < 4).count();
            assert!(new <= 2, "{c:?}");
            new_total += new;
        }
        assert!(new_total > 0, "new nodes must get pieces to earn standing");
        // Too few established nodes with room: the new ones fill the rest.
        let mut p = Placer::new(
            (0..6)
                .map(|i| Candidate::new(i, u64::MAX, i == 0))
                .collect(),
            2,
        );
        assert_eq!(p.place(6, 1).expect("fits").len(), 6);
    }

    /// Candidates with unlimited room, new, in the given domains.
    fn in_domains(domains: &[&[u32]]) -> Vec<Candidate> {
        domains
            .iter()
            .enumerate()
            .map(|(i, d)| Candidate {
                domains: d.to_vec(),
                ..Candidate::new(i as u64, u64::MAX, false)
            })
            .collect()
    }

    #[test]
    fn two_operators_cannot_hold_a_six_piece_stripe() {
        let mut p = Placer::new(
            in_domains(&[&[0], &[1], &[0], &[1], &[0], &[1], &[0], &[1]]),
            6,
        );
        assert_eq!(
            p.place(6, 1),
            Err(PlacementError::TooFewDomains {
                stripe: 0,
                needed: 6,
                spanned: 2
            })
        );
        // Two pieces fit, one per operator.
        let c = p.place(2, 1).expect("fits");
        assert_ne!(c[0] % 2, c[1] % 2);
    }

    #[test]
    fn a_shared_subnet_rules_out_two_labels() {
        // Nodes 0 and 1 have distinct labels (0, 1) but one /24 (9): only one of them.
        let mut p = Placer::new(in_domains(&[&[0, 9], &[1, 9], &[2], &[3]]), 4);
        let c = p.place(3, 1).expect("fits");
        assert!(!(c.contains(&0) && c.contains(&1)), "{c:?}");
        assert!(matches!(
            p.place(4, 1),
            Err(PlacementError::TooFewDomains { spanned: 3, .. })
        ));
    }

    #[test]
    fn a_new_identity_cannot_push_an_established_operator_out_by_its_label() {
        // Four established operators (domains 0..4) and six new identities in domains of
        // their own, the first of which claims operator 0's label. Whichever node the
        // stripe starts at, new identities get at most m = 2 pieces of the 4+2 stripe.
        let mut nodes = in_domains(&[
            &[0],
            &[10],
            &[11],
            &[12],
            &[13],
            &[14],
            &[0],
            &[1],
            &[2],
            &[3],
        ]);
        for c in &mut nodes[6..] {
            c.established = true;
        }
        let mut p = Placer::new(nodes, 2);
        for _ in 0..10 {
            let c = p.place(6, 1).expect("fits");
            assert_eq!(c.iter().filter(|&&i| i < 6).count(), 2, "{c:?}");
        }
    }

    #[test]
    fn domains_outrank_the_cap_on_new_identities() {
        // Four established nodes in one domain, three new ones apart: the stripe of
        // three takes one established and two new, past the cap of one.
        let mut nodes = in_domains(&[&[0], &[0], &[0], &[0], &[1], &[2], &[3]]);
        for c in &mut nodes[..4] {
            c.established = true;
        }
        let mut p = Placer::new(nodes, 1);
        let c = p.place(3, 1).expect("fits");
        assert_eq!(c.iter().filter(|&&i| i < 4).count(), 1, "{c:?}");
    }

    #[test]
    fn spread_counts_pieces_on_distinct_nodes() {
        assert_eq!(spread::<u8>(&[]), 0);
        assert_eq!(spread(&[vec![1], vec![2], vec![3]]), 3);
        // Two pieces only on node 1: they count once.
        assert_eq!(spread(&[vec![1], vec![1], vec![3]]), 2);
        // A second copy elsewhere lets both count.
        assert_eq!(spread(&[vec![1], vec![1, 2], vec![3]]), 3);
        // A piece nobody holds counts for nothing.
        assert_eq!(spread(&[vec![1], vec![], vec![3]]), 2);
        // Greedy would take node 1 for piece 0 and strand piece 1; matching does not.
        assert_eq!(spread(&[vec![1, 2], vec![1]]), 2);
        assert_eq!(matching(&[vec![1, 2], vec![1]]), vec![Some(1), Some(0)]);
        // Three pieces with one id, held by two nodes: one of them is left unmatched.
        let same = [vec![7, 8], vec![7, 8], vec![7, 8]];
        assert_eq!(matching(&same).iter().filter(|m| m.is_none()).count(), 1);
    }

    #[test]
    fn too_few_nodes_is_refused() {
        let mut p = Placer::new(open(&[u64::MAX; 5]), 0);
        assert_eq!(
            p.place(6, 1),
            Err(PlacementError::TooFewNodes {
                needed: 6,
                reachable: 5
            })
        );
    }

    #[test]
    fn full_nodes_are_skipped_then_refused() {
        let mut p = Placer::new(open(&[10, 0, 10, 10]), 0);
        let mut c = p.place(3, 10).expect("fits");
        c.sort_unstable();
        assert_eq!(c, vec![0, 2, 3]);
        assert!(matches!(p.place(3, 10), Err(PlacementError::NoRoom { .. })));
    }

    #[test]
    fn same_input_same_placement() {
        let run = || {
            let mut p = Placer::new(open(&[u64::MAX; 7]), 0);
            (0..20)
                .map(|_| p.place(6, 5).expect("fits"))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }

    /// Pieces each node gets over `stripes` stripes of `n` pieces of one byte.
    fn load(nodes: Vec<Candidate>, seed: u8, n: usize, stripes: usize) -> Vec<u64> {
        let mut load = vec![0u64; nodes.len()];
        let mut p = Placer::new(nodes, n).with_seed([seed; 32]);
        for _ in 0..stripes {
            for i in p.place(n, 1).expect("room") {
                load[i] += 1;
            }
        }
        load
    }

    #[test]
    fn load_follows_room_and_a_claim_of_endless_room_draws_a_capped_share() {
        // Six nodes with 1 MB of room and six with 4 MB: over 2000 stripes of 3 (6000
        // bytes, far from filling anyone) the big ones take several times as much
        // (about 3.5 times: drawing 3 without replacement evens weights out a little).
        let nodes: Vec<Candidate> = (0..12)
            .map(|i| Candidate::new(i, if i < 6 { 1 << 20 } else { 4 << 20 }, true))
            .collect();
        let l = load(nodes, 1, 3, 2000);
        let (small, big) = (l[..6].iter().sum::<u64>(), l[6..].iter().sum::<u64>());
        assert!(big > 3 * small && big < 5 * small, "{l:?}");
        // Eleven honest nodes and one that claims endless room (or sets no limit): the
        // claim is weighed as four times the median, so it draws about 4/15 of first
        // places, never all; a claim just short of endless, the same.
        for claim in [u64::MAX, u64::MAX - 1] {
            let nodes: Vec<Candidate> = (0..12)
                .map(|i| Candidate::new(i, if i == 0 { claim } else { 1 << 20 }, true))
                .collect();
            let l = load(nodes, 2, 1, 3000);
            assert!(l[0] > 600 && l[0] < 1000, "{l:?}");
        }
        // Half the nodes without a limit: those with one still get their share.
        let nodes: Vec<Candidate> = (0..12)
            .map(|i| Candidate::new(i, if i < 6 { u64::MAX } else { 1 << 20 }, true))
            .collect();
        let l = load(nodes, 3, 1, 3000);
        assert!(l[6..].iter().sum::<u64>() > 300, "{l:?}");
        // Another seed draws otherwise; the same seed the same.
        let even = |seed| {
            load(
                (0..12).map(|i| Candidate::new(i, 1 << 20, true)).collect(),
                seed,
                3,
                50,
            )
        };
        assert_eq!(even(3), even(3));
        assert_ne!(even(3), even(4));
    }

    #[test]
    fn a_node_keeps_its_draw_whatever_else_is_in_the_sample() {
        // The order comes from each node's id, not its place in the list: the same
        // nodes listed otherwise are drawn to the same stripes.
        let a: Vec<Candidate> = (0..8)
            .map(|i| Candidate::new(100 + i, 1 << 20, true))
            .collect();
        let mut b = a.clone();
        b.reverse();
        let ids = |nodes: Vec<Candidate>| {
            let mut p = Placer::new(nodes.clone(), 4).with_seed([5; 32]);
            (0..20)
                .map(|_| {
                    let mut c: Vec<u64> = p
                        .place(4, 1)
                        .expect("room")
                        .iter()
                        .map(|&i| nodes[i].id)
                        .collect();
                    c.sort_unstable();
                    c
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(a), ids(b));
    }

    proptest! {
        /// Whatever the mix and the draw, a stripe's new holders are at most `max_new`,
        /// or as few as the established nodes with room leave to fill; and the stripe's
        /// nodes are distinct, each with room for its piece.
        #[test]
        fn the_cap_on_new_identities_holds_whatever_the_mix(
            nodes in proptest::collection::vec((any::<bool>(), 0u64..4), 1..16),
            n in 1usize..10,
            max_new in 0usize..5,
            stripes in 1usize..20,
            seed in any::<u8>(),
        ) {
            let cands: Vec<Candidate> = nodes
                .iter()
                .enumerate()
                .map(|(i, &(established, room))| Candidate::new(i as u64, room, established))
                .collect();
            let mut p = Placer::new(cands, max_new).with_seed([seed; 32]);
            for _ in 0..stripes {
                let before = p.nodes.clone();
                match p.place(n, 1) {
                    Ok(c) => {
                        let mut s = c.clone();
                        s.sort_unstable();
                        s.dedup();
                        prop_assert_eq!(s.len(), n);
                        prop_assert!(c.iter().all(|&i| before[i].free >= 1));
                        let est = before.iter().filter(|c| c.established && c.free >= 1).count();
                        let new = c.iter().filter(|&&i| !before[i].established).count();
                        prop_assert!(new <= max_new.max(n.saturating_sub(est)), "{:?} -> {:?}", before, c);
                    }
                    Err(_) => {
                        // Refused only when the nodes with room truly cannot fill it.
                        let room = before.iter().filter(|c| c.free >= 1).count();
                        prop_assert!(room < n || nodes.len() < n);
                        break;
                    }
                }
            }
        }

        /// Whatever the domains, no two pieces of a placed stripe share one; and with one
        /// domain per node, a stripe is refused only when fewer than `n` domains have a
        /// node with room.
        #[test]
        fn no_stripe_has_two_pieces_in_one_domain(
            nodes in proptest::collection::vec((any::<bool>(), 0u64..4, 0u32..8, proptest::option::of(8u32..12)), 1..24),
            n in 1usize..8,
            max_new in 0usize..4,
            stripes in 1usize..16,
        ) {
            let cands: Vec<Candidate> = nodes
                .iter()
                .enumerate()
                .map(|(i, &(established, free, a, b))| Candidate {
                    domains: std::iter::once(a).chain(b).collect(),
                    ..Candidate::new(i as u64, free, established)
                })
                .collect();
            let single = nodes.iter().all(|n| n.3.is_none());
            let mut p = Placer::new(cands, max_new);
            for _ in 0..stripes {
                let before = p.nodes.clone();
                match p.place(n, 1) {
                    Ok(c) => {
                        let mut ds: Vec<u32> = c.iter().flat_map(|&i| before[i].domains.clone()).collect();
                        let all = ds.len();
                        ds.sort_unstable();
                        ds.dedup();
                        prop_assert_eq!(ds.len(), all, "{:?} -> {:?}", before, c);
                    }
                    Err(e) => {
                        if single {
                            let mut ds: Vec<u32> = before.iter().filter(|c| c.free >= 1).map(|c| c.domains[0]).collect();
                            ds.sort_unstable();
                            ds.dedup();
                            prop_assert!(ds.len() < n, "{:?} refused: {}", before, e);
                        }
                        break;
                    }
                }
            }
        }

        /// The spread is a true guarantee: removing any `spread - k` nodes leaves at
        /// least `k` pieces with a holder. Checked by brute force on small stripes.
        #[test]
        fn losing_spread_minus_k_nodes_leaves_k_pieces(
            holders in proptest::collection::vec(proptest::collection::vec(0u8..6, 0..3), 1..7),
            k in 1usize..7,
        ) {
            let n = holders.len();
            let k = k.min(n);
            let s = spread(&holders);
            prop_assert!(s <= n);
            let t = s.saturating_sub(k);
            for lost in 0u32..(1 << 6) {
                if lost.count_ones() as usize > t {
                    continue;
                }
                let alive = holders
                    .iter()
                    .filter(|hs| hs.iter().any(|h| lost & (1 << h) == 0))
                    .count();
                prop_assert!(alive >= k.min(s), "holders {:?} lost {:b}", holders, lost);
            }
        }
    }
}
