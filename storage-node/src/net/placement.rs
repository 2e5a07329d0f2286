//! Where the pieces of each stripe go: sans-IO, deterministic, tested alone.
//!
//! Every piece of a stripe lands on a different node. Stripes rotate their starting node
//! so load spreads evenly, and a node without room for another piece is skipped. Nodes are
//! taken in a fixed order (sorted by peer id by the caller), so pushing the same data to
//! the same network places each piece on the same node again and finds it already held.

/// Why a stripe could not be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// Fewer nodes than pieces per stripe.
    #[error(
        "{needed} distinct nodes are needed (k+m) but only {reachable} are reachable; start more nodes or push with smaller --k/--m"
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
}

/// Assigns stripes to nodes.
#[derive(Debug, Clone)]
pub struct Placer {
    free: Vec<u64>,
    stripe: u64,
}

impl Placer {
    /// `free[i]` is the room node `i` has left, in bytes.
    pub fn new(free: Vec<u64>) -> Self {
        Self { free, stripe: 0 }
    }

    /// Picks `n` distinct nodes for the next stripe, whose pieces are `piece_len` bytes,
    /// and reserves the room. Returns node indices in piece order.
    pub fn place(&mut self, n: usize, piece_len: u64) -> Result<Vec<usize>, PlacementError> {
        let nodes = self.free.len();
        if nodes < n {
            return Err(PlacementError::TooFewNodes {
                needed: n,
                reachable: nodes,
            });
        }
        let start = (self.stripe % nodes as u64) as usize;
        let chosen: Vec<usize> = (0..nodes)
            .map(|i| (start + i) % nodes)
            .filter(|&i| self.free[i] >= piece_len)
            .take(n)
            .collect();
        if chosen.len() < n {
            return Err(PlacementError::NoRoom {
                stripe: self.stripe,
                needed: n,
                bytes: piece_len,
                with_room: self.free.iter().filter(|&&f| f >= piece_len).count(),
            });
        }
        for &i in &chosen {
            self.free[i] -= piece_len;
        }
        self.stripe += 1;
        Ok(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn too_few_nodes_is_refused() {
        let mut p = Placer::new(vec![u64::MAX; 5]);
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
        let mut p = Placer::new(vec![10, 0, 10, 10]);
        assert_eq!(p.place(3, 10).expect("fits"), vec![0, 2, 3]);
        assert!(matches!(p.place(3, 10), Err(PlacementError::NoRoom { .. })));
    }

    #[test]
    fn same_input_same_placement() {
        let run = || {
            let mut p = Placer::new(vec![u64::MAX; 7]);
            (0..20)
                .map(|_| p.place(6, 5).expect("fits"))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }

    proptest! {
        #[test]
        fn pieces_of_a_stripe_are_distinct_and_load_is_even(nodes in 1usize..20, n in 1usize..20, stripes in 1u64..60) {
            prop_assume!(n <= nodes);
            let mut p = Placer::new(vec![u64::MAX; nodes]);
            let mut load = vec![0u64; nodes];
            for _ in 0..stripes {
                let c = p.place(n, 1).expect("unlimited room");
                let mut s = c.clone();
                s.sort_unstable();
                s.dedup();
                prop_assert_eq!(s.len(), n);
                for i in c { load[i] += 1; }
            }
            let (lo, hi) = (load.iter().min().copied().unwrap_or(0), load.iter().max().copied().unwrap_or(0));
            prop_assert!(hi - lo <= 1 + (n as u64), "load {:?}", load);
        }
    }
}
