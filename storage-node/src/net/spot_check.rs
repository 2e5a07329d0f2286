//! Spot checks of a push's acknowledgements. A `Held` answer is a node's word, and
//! `Held { already: true }` is one without a transfer, so while a push still has a
//! piece's bytes it challenges acknowledgements like an audit: a node's, one at a time,
//! until one passes (its other pieces wait for the verdict), then one in [`ONE_IN`],
//! chosen by a hash keyed with a secret the nodes cannot know. A node that cannot prove
//! a piece it acknowledged (or will not answer) gets no more pieces of that push, and
//! the piece goes to another node.
//!
//! [`Vetting`] keeps what a push learned of its nodes, [`sampled`] is the choice (pure);
//! [`prove`] sends one challenge.

use std::{sync::Mutex, time::Duration};

use libp2p::{Multiaddr, PeerId};

use super::{
    swarm::Control,
    wire::{ErrorCode, Request, Response},
};
use crate::ids::PieceId;

/// After a node's first acknowledgement, one in this many is checked.
pub const ONE_IN: u64 = 16;
/// Attempts at a challenge the node answered `Busy`.
const BUSY_ATTEMPTS: u32 = 6;
/// How long a node has to answer one challenge.
const DEADLINE: Duration = Duration::from_secs(20);

/// What one push has learned of its nodes: who passed a check, who was caught.
#[derive(Debug)]
pub struct Vetting {
    secret: [u8; 32],
    /// Per node: passed a check (`Some(true)`), caught (`Some(false)`), or neither yet.
    seen: Mutex<Vec<Option<bool>>>,
    /// Per node: held by the one check that settles a node not yet vetted.
    turns: Vec<tokio::sync::Mutex<()>>,
}

impl Vetting {
    /// A push's vetting of `nodes` nodes, with a fresh secret.
    pub fn new(nodes: usize) -> Self {
        let mut secret = [0u8; 32];
        if getrandom::fill(&mut secret).is_err() {
            // No randomness: check every acknowledgement rather than a predictable few.
            secret = [0; 32];
        }
        Self {
            secret,
            seen: Mutex::new(vec![None; nodes]),
            turns: (0..nodes).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }

    fn state(&self, node: usize) -> Option<bool> {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(node)
            .copied()
            .flatten()
    }

    fn set(&self, node: usize, to: bool, over: bool) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = seen.get_mut(node)
            && (s.is_none() || over)
        {
            *s = Some(to);
        }
    }

    /// Waits for the right to settle `node`: one check at a time for a node not yet
    /// vetted, so that its other acknowledgements wait for that verdict.
    pub async fn turn(&self, node: usize) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        Some(self.turns.get(node)?.lock().await)
    }

    /// Whether `node` passed a check in this push.
    pub fn is_vetted(&self, node: usize) -> bool {
        self.state(node) == Some(true)
    }

    /// Whether to check `node`'s acknowledgement of `piece` once the node is vetted.
    pub fn sampled(&self, node: usize, piece: &PieceId) -> bool {
        self.secret == [0; 32] || sampled(&self.secret, node, piece)
    }

    /// `node` proved a piece.
    pub fn passed(&self, node: usize) {
        self.set(node, true, false);
    }

    /// `node` could not prove a piece it acknowledged.
    pub fn caught(&self, node: usize) {
        self.set(node, false, true);
    }

    /// Whether `node` was caught.
    pub fn is_caught(&self, node: usize) -> bool {
        self.state(node) == Some(false)
    }

    /// Every node caught so far.
    pub fn all_caught(&self) -> Vec<usize> {
        (0..self.turns.len())
            .filter(|&i| self.is_caught(i))
            .collect()
    }
}

/// Whether `node`'s acknowledgement of `piece` is one of the one in [`ONE_IN`] checked,
/// by a hash keyed with `secret`.
pub fn sampled(secret: &[u8; 32], node: usize, piece: &PieceId) -> bool {
    let mut h = blake3::Hasher::new_keyed(secret);
    h.update(&piece.0);
    h.update(&(node as u64).to_le_bytes());
    let mut head = [0u8; 8];
    head.copy_from_slice(&h.finalize().as_bytes()[..8]);
    u64::from_le_bytes(head).is_multiple_of(ONE_IN)
}

/// Challenges `peer` (reached at `addrs`, or as the swarm knows it) to prove it holds
/// `piece` (`len` bytes). `Err` says what it answered instead of a proof that verifies.
pub async fn prove(
    control: &Control,
    peer: PeerId,
    addrs: &[Multiaddr],
    piece: PieceId,
    len: u32,
) -> Result<(), String> {
    let mut nonce = [0u8; 32];
    getrandom::fill(&mut nonce).map_err(|e| e.to_string())?;
    let challenge =
        proofs::Challenge::new(piece.to_proofs_hash(), u64::from(len), proofs::Nonce(nonce));
    let mut attempt = 0;
    loop {
        attempt += 1;
        let req = Request::Challenge {
            challenge: challenge.encode(),
        };
        let answer = tokio::time::timeout(DEADLINE, control.request(peer, addrs.to_vec(), req))
            .await
            .map_err(|_| "no answer to the challenge".to_string())?
            .map_err(|e| e.to_string())?;
        match answer {
            Response::Proof(bytes) => {
                let p =
                    proofs::Proof::decode(&bytes).map_err(|e| format!("a malformed proof: {e}"))?;
                return proofs::verify(&proofs::Root(piece.0), &challenge, &p)
                    .map_err(|e| format!("a proof that does not verify: {e}"));
            }
            Response::Error {
                code: ErrorCode::Busy,
                ..
            } if attempt < BUSY_ATTEMPTS => {
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            Response::Error { code, message } => return Err(format!("{message} ({code:?})")),
            _ => return Err("an answer that is not a proof".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_caught_node_stays_caught_and_a_vetted_one_is_sampled() {
        let v = Vetting::new(3);
        assert!(!v.is_vetted(0) && !v.is_caught(0));
        v.passed(0);
        assert!(v.is_vetted(0));
        let later = (0..200u8)
            .filter(|i| v.sampled(0, &PieceId([*i; 32])))
            .count();
        assert!(later < 100, "{later} of 200 sampled");
        v.caught(1);
        v.passed(1);
        assert!(v.is_caught(1), "a pass does not clear a catch");
        v.caught(0);
        assert!(v.is_caught(0), "a vetted node caught later is caught");
        assert_eq!(v.all_caught(), vec![0, 1]);
    }

    proptest! {
        /// About one in `ONE_IN` acknowledgements are sampled, which ones depending on
        /// the secret.
        #[test]
        fn about_one_in_n_is_sampled(secret in any::<[u8; 32]>(), node in 0usize..100) {
            let checked = (0..4096u32)
                .filter(|i| {
                    let mut p = [0u8; 32];
                    p[..4].copy_from_slice(&i.to_le_bytes());
                    sampled(&secret, node, &PieceId(p))
                })
                .count() as u64;
            let expected = 4096 / ONE_IN;
            prop_assert!(checked > expected / 2 && checked < expected * 2, "{checked}");
        }
    }
}
