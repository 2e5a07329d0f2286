//! Per-peer allowances: a token bucket for each peer, without I/O, so that what one
//! identity can make this node do (prove pieces, check records, look up the DHT) is
//! capped whatever the others do.

use std::{collections::HashMap, time::Instant};

use libp2p::PeerId;

/// Peers whose allowance is tracked; beyond this, full allowances are forgotten first,
/// and a new peer is refused while none is full.
const MAX_PEERS: usize = 1 << 14;

/// A bucket per peer: `burst` at most, refilled at `rate` a second.
#[derive(Debug)]
pub(super) struct Allowances {
    rate: f64,
    burst: f64,
    started: Instant,
    tokens: HashMap<PeerId, (f64, f64)>,
}

impl Allowances {
    pub(super) fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            started: Instant::now(),
            tokens: HashMap::new(),
        }
    }

    /// Takes `n` from `peer`'s allowance at `now` (seconds on the allowances' clock), if
    /// it has them.
    pub(super) fn admit_at(&mut self, peer: PeerId, n: f64, now: f64) -> bool {
        let (rate, burst) = (self.rate, self.burst);
        if self.tokens.len() >= MAX_PEERS && !self.tokens.contains_key(&peer) {
            self.tokens
                .retain(|_, (tokens, at)| *tokens + (now - *at) * rate < burst);
            if self.tokens.len() >= MAX_PEERS {
                return false;
            }
        }
        let (tokens, at) = self.tokens.entry(peer).or_insert((burst, now));
        *tokens = (*tokens + (now - *at).max(0.0) * rate).min(burst);
        *at = now;
        if *tokens < n {
            return false;
        }
        *tokens -= n;
        true
    }

    /// Takes `n` from `peer`'s allowance now, if it has them.
    pub(super) fn admit(&mut self, peer: PeerId, n: f64) -> bool {
        let now = self.started.elapsed().as_secs_f64();
        self.admit_at(peer, n, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_held_to_its_allowance_and_it_refills() {
        let mut a = Allowances::new(64.0, 1024.0);
        let p = PeerId::random();
        let taken = (0..1034).filter(|_| a.admit_at(p, 1.0, 0.0)).count();
        assert_eq!(taken, 1024);
        // Another peer has an allowance of its own; time refills the first one's.
        assert!(a.admit_at(PeerId::random(), 1.0, 0.0));
        assert!(!a.admit_at(p, 1.0, 0.0));
        assert_eq!((0..100).filter(|_| a.admit_at(p, 1.0, 1.0)).count(), 64);
        // A larger take needs that many.
        assert!(!a.admit_at(p, 65.0, 2.0));
        assert!(a.admit_at(p, 64.0, 2.0));
    }
}
