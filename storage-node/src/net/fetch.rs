//! Which pieces of a stripe to fetch, from whom: a sans-IO state machine.
//!
//! A stripe needs any `k` of its `k + m` pieces. [`StripeFetch`] hands out fetches (piece,
//! holder) until `k` are in flight or done, preferring data pieces (no decoding needed
//! when all `k` arrive) and, among holders, the fastest seen so far. A failed fetch (peer
//! gone, bytes that do not verify) marks that holder bad for that piece and the next
//! holder, or another piece, takes its place. A holder that answers busy stays a holder:
//! its piece goes behind pieces never refused, to be asked again (after a wait the caller
//! chooses, [`StripeFetch::refusals`] of them so far) unless `k` arrive from elsewhere
//! first; after [`MAX_BUSY`] refusals the piece counts as failed from that holder. When
//! fewer than `k` pieces can still succeed the stripe is unrecoverable, and says so at
//! once.

/// Busy answers for one piece before its holder counts as failed for it.
pub const MAX_BUSY: u8 = 6;

/// Holders are named by index into the caller's table of nodes.
pub type HolderIx = usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    InFlight,
    Done,
    Failed,
}

/// Progress of one stripe.
#[derive(Debug, Clone)]
pub struct StripeFetch {
    k: usize,
    holders: Vec<Vec<HolderIx>>,
    state: Vec<State>,
    busy: Vec<u8>,
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Fetch piece `index` from `holder`.
    Fetch {
        /// Position in the stripe.
        index: usize,
        /// Who to ask.
        holder: HolderIx,
    },
    /// Wait for a fetch in flight to finish.
    Wait,
    /// `k` pieces are here: decode.
    Ready,
    /// Fewer than `k` pieces can still arrive.
    Unrecoverable,
}

impl StripeFetch {
    /// `holders[i]` lists who holds piece `i` (data pieces first, then parity).
    pub fn new(k: usize, holders: Vec<Vec<HolderIx>>) -> Self {
        let state = vec![State::Idle; holders.len()];
        let busy = vec![0; holders.len()];
        Self {
            k,
            holders,
            state,
            busy,
        }
    }

    fn count(&self, s: State) -> usize {
        self.state.iter().filter(|&&x| x == s).count()
    }

    /// Pieces that may still arrive.
    pub fn viable(&self) -> usize {
        self.state
            .iter()
            .enumerate()
            .filter(|&(i, s)| match s {
                State::Done | State::InFlight => true,
                State::Idle => !self.holders[i].is_empty(),
                State::Failed => false,
            })
            .count()
    }

    /// The next step. `speed(holder)` ranks holders (higher is faster).
    pub fn next(&mut self, speed: impl Fn(HolderIx) -> f64) -> Step {
        let done = self.count(State::Done);
        if done >= self.k {
            return Step::Ready;
        }
        if self.viable() < self.k {
            return Step::Unrecoverable;
        }
        if done + self.count(State::InFlight) >= self.k {
            return Step::Wait;
        }
        // Holders that failed us come last of all (speed below zero); then pieces refused
        // as busy, fewest refusals first; then data pieces before parity; then the
        // fastest best holder.
        let best = (0..self.state.len())
            .filter(|&i| self.state[i] == State::Idle && !self.holders[i].is_empty())
            .map(|i| {
                let (h, s) = self.holders[i]
                    .iter()
                    .map(|&h| (h, speed(h)))
                    .fold((usize::MAX, f64::MIN), |a, b| if b.1 > a.1 { b } else { a });
                (s < 0.0, self.busy[i], i >= self.k, -s, i, h)
            })
            .min_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        match best {
            Some((_, _, _, _, index, holder)) => {
                self.state[index] = State::InFlight;
                Step::Fetch { index, holder }
            }
            None => Step::Wait,
        }
    }

    /// Piece `index` arrived and verified.
    pub fn succeeded(&mut self, index: usize) {
        self.state[index] = State::Done;
    }

    /// Fetching piece `index` from `holder` failed: try its other holders later.
    pub fn failed(&mut self, index: usize, holder: HolderIx) {
        self.holders[index].retain(|&h| h != holder);
        self.state[index] = if self.holders[index].is_empty() {
            State::Failed
        } else {
            State::Idle
        };
    }

    /// `holder` was too busy to serve piece `index`: ask again later, or after
    /// [`MAX_BUSY`] refusals, count it as failed for this piece.
    pub fn busy(&mut self, index: usize, holder: HolderIx) {
        self.busy[index] = self.busy[index].saturating_add(1);
        if self.busy[index] >= MAX_BUSY {
            self.failed(index, holder);
        } else {
            self.state[index] = State::Idle;
        }
    }

    /// How many busy answers piece `index` has had.
    pub fn refusals(&self, index: usize) -> u8 {
        self.busy[index]
    }

    /// Indices of pieces that arrived.
    pub fn done(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.state.len()).filter(|&i| self.state[i] == State::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn drive(f: &mut StripeFetch, fails: &dyn Fn(usize, HolderIx) -> bool) -> Step {
        loop {
            match f.next(|h| h as f64) {
                Step::Fetch { index, holder } => {
                    if fails(index, holder) {
                        f.failed(index, holder)
                    } else {
                        f.succeeded(index)
                    }
                }
                s => return s,
            }
        }
    }

    #[test]
    fn prefers_data_pieces_and_fast_holders() {
        let mut f = StripeFetch::new(2, vec![vec![0, 5], vec![1], vec![9]]);
        assert_eq!(
            f.next(|h| h as f64),
            Step::Fetch {
                index: 0,
                holder: 5
            }
        );
        assert_eq!(
            f.next(|h| h as f64),
            Step::Fetch {
                index: 1,
                holder: 1
            }
        );
        assert_eq!(f.next(|h| h as f64), Step::Wait);
        f.failed(1, 1);
        assert_eq!(
            f.next(|h| h as f64),
            Step::Fetch {
                index: 2,
                holder: 9
            }
        );
        f.succeeded(0);
        f.succeeded(2);
        assert_eq!(f.next(|h| h as f64), Step::Ready);
        assert_eq!(f.done().collect::<Vec<_>>(), vec![0, 2]);
    }

    #[test]
    fn holders_that_failed_before_come_after_parity() {
        // Holder 1 failed on an earlier stripe (speed below zero): its data piece waits.
        let mut f = StripeFetch::new(1, vec![vec![1], vec![2]]);
        let speed = |h: HolderIx| if h == 1 { -1.0 } else { 0.0 };
        assert_eq!(
            f.next(speed),
            Step::Fetch {
                index: 1,
                holder: 2
            }
        );
    }

    #[test]
    fn retries_another_holder_of_the_same_piece() {
        let mut f = StripeFetch::new(1, vec![vec![1, 2]]);
        assert_eq!(
            f.next(|h| h as f64),
            Step::Fetch {
                index: 0,
                holder: 2
            }
        );
        f.failed(0, 2);
        assert_eq!(
            f.next(|h| h as f64),
            Step::Fetch {
                index: 0,
                holder: 1
            }
        );
        f.failed(0, 1);
        assert_eq!(f.next(|h| h as f64), Step::Unrecoverable);
    }

    #[test]
    fn a_busy_piece_waits_behind_the_others_and_is_asked_again() {
        let mut f = StripeFetch::new(1, vec![vec![0], vec![1]]);
        let speed = |_| 0.0;
        assert_eq!(
            f.next(speed),
            Step::Fetch {
                index: 0,
                holder: 0
            }
        );
        f.busy(0, 0);
        assert_eq!(f.refusals(0), 1);
        // The parity piece, never refused, goes first now.
        assert_eq!(
            f.next(speed),
            Step::Fetch {
                index: 1,
                holder: 1
            }
        );
        f.busy(1, 1);
        f.busy(1, 1);
        // Piece 0 has fewer refusals: its holder is asked again.
        assert_eq!(
            f.next(speed),
            Step::Fetch {
                index: 0,
                holder: 0
            }
        );
    }

    #[test]
    fn a_holder_busy_max_busy_times_counts_as_failed() {
        let mut f = StripeFetch::new(1, vec![vec![7]]);
        for _ in 1..MAX_BUSY {
            assert_eq!(
                f.next(|_| 0.0),
                Step::Fetch {
                    index: 0,
                    holder: 7
                }
            );
            f.busy(0, 7);
        }
        assert!(matches!(f.next(|_| 0.0), Step::Fetch { .. }));
        f.busy(0, 7);
        assert_eq!(f.next(|_| 0.0), Step::Unrecoverable);
    }

    proptest! {
        /// Busy answers never lose a stripe: a holder busy fewer than MAX_BUSY times for
        /// a piece is asked again, so the outcome is that of the holders' real answers.
        #[test]
        fn busy_holders_are_asked_again(k in 1usize..6, m in 0usize..4, busy in proptest::collection::vec(0u8..MAX_BUSY, 0..10), bad in proptest::collection::vec(any::<bool>(), 0..10)) {
            let n = k + m;
            let holders: Vec<Vec<usize>> = (0..n).map(|i| vec![i]).collect();
            let is_bad = |h: usize| bad.get(h).copied().unwrap_or(false);
            let good = (0..n).filter(|&i| !is_bad(i)).count();
            let mut left: Vec<u8> = (0..n).map(|h| busy.get(h).copied().unwrap_or(0)).collect();
            let mut f = StripeFetch::new(k, holders);
            let step = loop {
                match f.next(|_| 0.0) {
                    Step::Fetch { index, holder } => {
                        if left[holder] > 0 {
                            left[holder] -= 1;
                            f.busy(index, holder);
                        } else if is_bad(holder) {
                            f.failed(index, holder);
                        } else {
                            f.succeeded(index);
                        }
                    }
                    s => break s,
                }
            };
            prop_assert_eq!(step == Step::Ready, good >= k);
        }

        /// Ready exactly when at least k pieces have a holder that does not fail.
        #[test]
        fn ready_iff_k_pieces_can_arrive(k in 1usize..6, m in 0usize..4, bad in proptest::collection::vec(any::<bool>(), 0..40), seed in any::<u64>()) {
            let n = k + m;
            let holders: Vec<Vec<usize>> = (0..n).map(|i| vec![i, n + i]).collect();
            let is_bad = |h: usize| bad.get(h).copied().unwrap_or(false) ^ (seed >> (h % 64) & 1 == 1);
            let good = (0..n).filter(|&i| !is_bad(i) || !is_bad(n + i)).count();
            let mut f = StripeFetch::new(k, holders);
            let step = drive(&mut f, &|_, h| is_bad(h));
            prop_assert_eq!(step == Step::Ready, good >= k);
            prop_assert_eq!(step == Step::Unrecoverable, good < k);
        }
    }
}
