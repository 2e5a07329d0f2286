//! How a stripe's pieces fail: one at a time and independently, or also in groups when a
//! whole failure domain is lost and several pieces of the stripe sit in it. See "Failure
//! domains" in the crate docs for the model.

use crate::params::SharedDomains;
use crate::rng::Rng;

/// The failure process of one stripe's live pieces, as [`crate::engine`] sees it: a total
/// rate of failure events, and how many pieces each event destroys.
pub(crate) trait Failures {
    /// A trial starts: all `n` pieces are written to fresh nodes.
    fn start(&mut self, rng: &mut Rng);
    /// Total rate of failure events, per hour, while `live` pieces are live.
    fn rate(&self, live: u32) -> f64;
    /// A failure event happens among `live` live pieces: the number it destroys, at least
    /// 1 and at most `live`.
    fn fail(&mut self, rng: &mut Rng, live: u32) -> u32;
    /// A repair writes `count` rebuilt pieces to fresh nodes.
    fn place(&mut self, rng: &mut Rng, count: u32);
}

/// Every live piece fails on its own at rate `lambda` (its node's failure rate, plus its
/// domain's loss rate when no other piece can share its domain). Draws nothing from the
/// random stream beyond the failure clock, so runs without shared domains are exactly
/// what they were before domains existed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Independent {
    pub(crate) lambda: f64,
}

impl Failures for Independent {
    #[inline]
    fn start(&mut self, _: &mut Rng) {}

    #[inline]
    fn rate(&self, live: u32) -> f64 {
        f64::from(live) * self.lambda
    }

    #[inline]
    fn fail(&mut self, _: &mut Rng, _: u32) -> u32 {
        1
    }

    #[inline]
    fn place(&mut self, _: &mut Rng, _: u32) {}
}

/// `nodes` nodes spread evenly over `domains` domains: the first `nodes % domains`
/// domains hold one node more than the others. Node `i` is the `slot`-th node of its
/// domain, numbering nodes domain by domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    nodes: u32,
    /// `nodes / domains`, at least 1.
    small: u32,
    /// Nodes in the larger domains, `(nodes % domains) * (small + 1)`.
    in_large: u32,
    /// The number of larger domains, `nodes % domains`.
    large: u32,
}

impl Layout {
    pub(crate) fn new(nodes: u32, domains: u32) -> Self {
        debug_assert!(domains > 0 && domains <= nodes);
        let small = nodes / domains;
        let large = nodes % domains;
        Self {
            nodes,
            small,
            in_large: large * (small + 1),
            large,
        }
    }

    /// The domain of node `node` and the node's slot within it.
    pub(crate) fn locate(&self, node: u32) -> (u32, u32) {
        if node < self.in_large {
            (node / (self.small + 1), node % (self.small + 1))
        } else {
            let rest = node - self.in_large;
            (self.large + rest / self.small, rest % self.small)
        }
    }

    /// Nodes in domain `domain`.
    #[cfg(test)]
    pub(crate) fn size(&self, domain: u32) -> u32 {
        self.small + u32::from(domain < self.large)
    }
}

/// Pieces placed at random on distinct nodes, in domains they may share. Follows how many
/// live pieces each domain holds: each live piece's node fails at rate `lambda`, each
/// domain holding live pieces is lost at rate `mu` and takes all of them.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    layout: Layout,
    n: u32,
    lambda: f64,
    mu: f64,
    /// `(domain, live pieces in it)` for every domain holding a live piece, by domain.
    /// At most `n` entries: no allocation after the first trial.
    occupied: Vec<(u32, u32)>,
    live: u32,
}

impl Shared {
    pub(crate) fn new(shared: &SharedDomains, n: u32, lambda: f64) -> Self {
        Self {
            layout: Layout::new(shared.nodes, shared.domains),
            n,
            lambda,
            mu: shared.mu,
            occupied: Vec::with_capacity(n as usize),
            live: 0,
        }
    }

    /// Writes one piece to a node drawn uniformly from those holding no live piece of the
    /// stripe. Its domain `j` then has probability `(size_j - c_j) / (nodes - live)`,
    /// with `c_j` the live pieces in `j`: by exchangeability the `c_j` busy nodes of a
    /// domain may be taken to be its first `c_j` slots, so a node drawn from all of them
    /// is kept unless its slot is below `c_j`.
    fn place_one(&mut self, rng: &mut Rng) {
        debug_assert!(self.live < self.layout.nodes);
        loop {
            let node = rng.below(u64::from(self.layout.nodes)) as u32;
            let (domain, slot) = self.layout.locate(node);
            match self.occupied.binary_search_by_key(&domain, |e| e.0) {
                Ok(i) if slot >= self.occupied[i].1 => {
                    self.occupied[i].1 += 1;
                    break;
                }
                Ok(_) => {} // a node already holding a piece: draw again
                Err(i) => {
                    self.occupied.insert(i, (domain, 1));
                    break;
                }
            }
        }
        self.live += 1;
    }

    /// Live pieces per occupied domain, by domain (for tests).
    #[cfg(test)]
    pub(crate) fn occupied(&self) -> &[(u32, u32)] {
        &self.occupied
    }
}

impl Failures for Shared {
    fn start(&mut self, rng: &mut Rng) {
        self.occupied.clear();
        self.live = 0;
        self.place(rng, self.n);
    }

    fn rate(&self, live: u32) -> f64 {
        debug_assert_eq!(live, self.live);
        f64::from(self.live) * self.lambda + self.occupied.len() as f64 * self.mu
    }

    fn fail(&mut self, rng: &mut Rng, live: u32) -> u32 {
        debug_assert_eq!(live, self.live);
        let nodes = f64::from(self.live) * self.lambda;
        let total = nodes + self.occupied.len() as f64 * self.mu;
        if rng.uniform() * total < nodes {
            // A node: each live piece's equally likely.
            let mut piece = rng.below(u64::from(self.live)) as u32;
            let mut i = 0;
            while piece >= self.occupied[i].1 {
                piece -= self.occupied[i].1;
                i += 1;
            }
            self.occupied[i].1 -= 1;
            if self.occupied[i].1 == 0 {
                self.occupied.remove(i);
            }
            self.live -= 1;
            1
        } else {
            // A domain: each occupied one equally likely; all its pieces go.
            let i = rng.below(self.occupied.len() as u64) as usize;
            let (_, count) = self.occupied.remove(i);
            self.live -= count;
            count
        }
    }

    fn place(&mut self, rng: &mut Rng, count: u32) {
        for _ in 0..count {
            self.place_one(rng);
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::{prop_assert, prop_assert_eq, proptest};

    use super::*;

    fn shared(nodes: u32, domains: u32, n: u32, lambda: f64, mu: f64) -> Shared {
        Shared::new(&SharedDomains { nodes, domains, mu }, n, lambda)
    }

    #[test]
    fn layout_spreads_nodes_evenly() {
        for (nodes, domains) in [(10, 3), (1000, 100), (7, 7), (5, 1), (14, 4)] {
            let l = Layout::new(nodes, domains);
            let mut sizes = vec![0u32; domains as usize];
            let mut last = (0, 0);
            for node in 0..nodes {
                let (d, slot) = l.locate(node);
                assert!(slot < l.size(d), "{nodes}/{domains}: node {node}");
                sizes[d as usize] += 1;
                if node > 0 {
                    // Domain by domain, slot by slot.
                    let next = if last.1 + 1 == l.size(last.0) {
                        (last.0 + 1, 0)
                    } else {
                        (last.0, last.1 + 1)
                    };
                    assert_eq!((d, slot), next);
                }
                last = (d, slot);
            }
            for (d, &s) in sizes.iter().enumerate() {
                assert_eq!(s, l.size(d as u32));
                assert!(s == nodes / domains || s == nodes / domains + 1);
            }
        }
    }

    /// The occupancy after placing `n` pieces has the law of `n` distinct nodes drawn
    /// uniformly: checked by enumerating every set of `n` of 7 nodes in 3 domains (3, 2, 2).
    #[test]
    fn initial_placement_is_uniform_over_node_sets() {
        let (nodes, domains, n) = (7u32, 3u32, 3u32);
        let layout = Layout::new(nodes, domains);
        let key = |counts: &[u32]| counts.iter().fold(0u32, |acc, &c| acc * 8 + c);
        let mut exact = std::collections::HashMap::new();
        let sets = (0u32..1 << nodes).filter(|s| s.count_ones() == n);
        let total = sets.clone().count() as f64;
        for set in sets {
            let mut counts = vec![0u32; domains as usize];
            for node in (0..nodes).filter(|i| set >> i & 1 == 1) {
                counts[layout.locate(node).0 as usize] += 1;
            }
            *exact.entry(key(&counts)).or_insert(0.0) += 1.0 / total;
        }
        let mut s = shared(nodes, domains, n, 1.0, 1.0);
        let mut rng = Rng::from_seed(5);
        let draws = 60_000;
        let mut seen = std::collections::HashMap::new();
        for _ in 0..draws {
            s.start(&mut rng);
            let mut counts = vec![0u32; domains as usize];
            for &(d, c) in s.occupied() {
                counts[d as usize] = c;
            }
            *seen.entry(key(&counts)).or_insert(0.0) += 1.0;
        }
        assert_eq!(exact.len(), seen.len(), "{exact:?} vs {seen:?}");
        for (k, p) in &exact {
            let got = seen[k] / f64::from(draws);
            let sd = (p * (1.0 - p) / f64::from(draws)).sqrt();
            assert!((got - p).abs() < 5.0 * sd, "{k:o}: {got} vs {p}");
        }
    }

    /// A rebuilt piece goes to domain `j` with probability `(size_j - c_j) / (nodes -
    /// live)`, and node failures and domain losses come in the ratio of their rates.
    #[test]
    fn repair_placement_and_failures_follow_the_model() {
        let (nodes, domains) = (10u32, 3u32); // sizes 4, 3, 3
        let mut rng = Rng::from_seed(6);
        let mut s = shared(nodes, domains, 4, 0.5, 2.0);
        s.occupied = vec![(0, 3), (2, 1)];
        s.live = 4;
        // Free nodes: 1, 3, 2 of 6.
        let want = [1.0 / 6.0, 3.0 / 6.0, 2.0 / 6.0];
        let mut hits = [0.0; 3];
        let draws = 60_000;
        for _ in 0..draws {
            let mut t = s.clone();
            t.place(&mut rng, 1);
            let changed = t
                .occupied
                .iter()
                .find(|&&(d, c)| s.occupied.iter().all(|&e| e != (d, c)))
                .unwrap()
                .0;
            hits[changed as usize] += 1.0;
        }
        for (h, w) in hits.iter().zip(want) {
            let sd = (w * (1.0 - w) / f64::from(draws)).sqrt();
            assert!((h / f64::from(draws) - w).abs() < 5.0 * sd, "{hits:?}");
        }
        // Rates: 4 pieces * 0.5 + 2 domains * 2.0 = 6; a domain loss (probability 2/6 for
        // each domain) takes 3 or 1 pieces, a node failure (2/6) one: 5/3 pieces on average.
        assert_eq!(s.rate(4), 6.0);
        let mut mean = 0.0;
        let mut three = 0.0;
        for _ in 0..draws {
            let mut t = s.clone();
            let lost = t.fail(&mut rng, 4);
            assert_eq!(t.live, 4 - lost);
            mean += f64::from(lost) / f64::from(draws);
            three += f64::from(u8::from(lost == 3)) / f64::from(draws);
        }
        assert!(
            (mean - (2.0 * 1.0 + 2.0 * 3.0 + 2.0 * 1.0) / 6.0).abs() < 0.03,
            "{mean}"
        );
        assert!((three - 2.0 / 6.0).abs() < 0.01, "{three}");
    }

    proptest! {
        /// Whatever happens, occupancy stays consistent: sorted distinct domains, counts
        /// within domain sizes and summing to the live pieces.
        #[test]
        fn occupancy_stays_consistent(
            nodes in 2u32..40,
            domains_frac in 0.0f64..1.0,
            n_frac in 0.0f64..1.0,
            ops in proptest::collection::vec(0u8..3, 0..60),
            seed: u64,
        ) {
            let domains = 1 + ((nodes - 1) as f64 * domains_frac) as u32;
            let n = 1 + ((nodes - 1) as f64 * n_frac) as u32;
            let mut s = shared(nodes, domains, n, 0.3, 0.7);
            let layout = Layout::new(nodes, domains);
            let mut rng = Rng::from_seed(seed);
            s.start(&mut rng);
            for op in ops {
                if op < 2 && s.live > 0 {
                    let live = s.live;
                    let lost = s.fail(&mut rng, live);
                    prop_assert!(lost >= 1 && lost <= live);
                } else if s.live < n {
                    s.place(&mut rng, 1);
                }
                let occ = s.occupied();
                prop_assert!(occ.windows(2).all(|w| w[0].0 < w[1].0));
                prop_assert!(occ.iter().all(|&(d, c)| c >= 1 && c <= layout.size(d)));
                prop_assert_eq!(occ.iter().map(|e| e.1).sum::<u32>(), s.live);
            }
        }
    }
}
