//! Answering challenges: the proof of storage a holder owes its auditors, under a gate
//! that keeps strangers from making the node read its disk without bound.
//!
//! A 100-byte challenge makes the holder read and hash a whole piece (up to 64 MiB), so
//! challenges are rate-limited per peer ([`PEER_BURST`], refilled at [`PEER_RATE`] a
//! second) and in total: at most [`MAX_PROVING`] proofs are made at once, and a peer that
//! announces no piece of the challenged piece's stripe (and proved none) gets only
//! [`STRANGER_PROVING`] of those slots and never waits for one, so co-holders are served
//! first. Proven co-holding is not required: two
//! new co-holders must be able to prove themselves to each other.

use std::{
    sync::{Arc, Mutex, atomic::Ordering},
    time::Duration,
};

use libp2p::PeerId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::warn;

use super::{State, allowance::Allowances, announce::Untold, lock};
use crate::{
    ids::{NodeId, PieceId},
    net::wire::{ErrorCode, Response},
    store::StoreError,
};

/// Challenges one peer may send in a burst.
pub(super) const PEER_BURST: f64 = 1024.0;
/// Challenges a second one peer's allowance refills by.
pub(super) const PEER_RATE: f64 = 64.0;
/// Proofs made at once.
pub(super) const MAX_PROVING: usize = 8;
/// Of those, proofs for peers that announce no piece of the stripe.
pub(super) const STRANGER_PROVING: usize = 2;
/// How long a co-holder's challenge may wait for a proving slot (an auditor gives a
/// holder 10 s to answer).
const CO_HOLDER_WAIT: Duration = Duration::from_secs(5);
/// The gate every challenge passes: allowances, and slots to prove in.
#[derive(Debug)]
pub(super) struct ChallengeGate {
    allowances: Mutex<Allowances>,
    proving: Arc<Semaphore>,
    strangers: Arc<Semaphore>,
}

impl Default for ChallengeGate {
    fn default() -> Self {
        Self {
            allowances: Mutex::new(Allowances::new(PEER_RATE, PEER_BURST)),
            proving: Arc::new(Semaphore::new(MAX_PROVING)),
            strangers: Arc::new(Semaphore::new(STRANGER_PROVING)),
        }
    }
}

/// A proof in progress: its slots, given back when dropped.
pub(super) type Turn = (OwnedSemaphorePermit, Option<OwnedSemaphorePermit>);

impl ChallengeGate {
    /// A slot to prove in for `peer`, or `None` when it is over its allowance or none
    /// came free in time. Co-holders (peers that announce or proved a piece of the
    /// stripe) wait for any slot; strangers may use only a few, and do not wait.
    pub(super) async fn enter(&self, peer: PeerId, co_holder: bool) -> Option<Turn> {
        if !lock(&self.allowances).admit(peer, 1.0) {
            return None;
        }
        if co_holder {
            let p = tokio::time::timeout(CO_HOLDER_WAIT, self.proving.clone().acquire_owned())
                .await
                .ok()?
                .ok()?;
            return Some((p, None));
        }
        // A stranger never waits: a flood of its challenges must not hold the node's
        // request handlers.
        let share = self.strangers.clone().try_acquire_owned().ok()?;
        let p = self.proving.clone().try_acquire_owned().ok()?;
        Some((p, Some(share)))
    }
}

/// Longest a challenge's answer waits for the piece's group to hear it was dropped.
const TELL_DROPPED_FOR: Duration = Duration::from_secs(2);
/// How long a node refuses to take back a piece it found corrupt on its own disk: a
/// repairer that missed the drop announcement (lost, or overtaken by a full one) would
/// otherwise put the rebuilt piece back on the disk that spoiled it.
pub(super) const REFUSE_CORRUPT_FOR: Duration = Duration::from_secs(600);
/// Most pieces remembered as found corrupt here; the oldest is forgotten first.
pub(super) const MAX_CORRUPT_HERE: usize = 1024;

impl State {
    /// Answers a challenge from the store (or, with the fault switch, with a forgery).
    /// Challenges are rate-limited per peer and in total ([`ChallengeGate`]); peers
    /// that announce a piece of the same stripe are served first.
    pub(super) async fn answer_challenge(
        self: &Arc<Self>,
        from: PeerId,
        bytes: &[u8],
    ) -> Result<Response, (ErrorCode, String)> {
        let challenge = proofs::Challenge::decode(bytes)
            .map_err(|e| (ErrorCode::BadRequest, format!("invalid challenge: {e}")))?;
        let id = PieceId(challenge.piece.0);
        // A co-holder: it announced a piece of the stripe, or proved one to this node.
        let co_holder = {
            let (pieces, proven) = {
                let ledger = lock(&self.ledger);
                let proven = super::data_id_of(&from)
                    .zip(ledger.stripe_of(&id))
                    .is_some_and(|(node, stripe)| {
                        ledger.speaks_for(&NodeId(node), &stripe, super::upkeep::now_unix())
                    });
                (ledger.stripe_pieces_of(&id), proven)
            };
            proven || pieces.is_some_and(|ps| lock(&self.holders).announces_any(&from, &ps))
        };
        let _turn = self
            .challenges
            .enter(from, co_holder)
            .await
            .ok_or_else(|| {
                (
                    ErrorCode::Busy,
                    "too many challenges in progress or from this peer; retry later".to_string(),
                )
            })?;
        if self.forge_proofs && lock(&self.known).contains_key(&from) {
            // Fault injection: answer other nodes' audits without reading the piece, as a
            // node that kept its pieces only until the push's spot checks had passed,
            // dropped them, and hopes its auditors will not notice.
            let fake = vec![
                0u8;
                challenge
                    .piece_len
                    .min(u64::from(crate::erasure::MAX_BLOCK_SIZE))
                    as usize
            ];
            return proofs::Proof::create(&fake, &challenge)
                .map(|p| Response::Proof(p.encode()))
                .map_err(|e| (ErrorCode::BadRequest, e.to_string()));
        }
        let store = self.store.clone();
        let proved = self.blocking(move || store.prove(&challenge)).await;
        match proved {
            Ok(p) => {
                self.stats
                    .proof_disk_bytes
                    .fetch_add(p.disk_bytes, Ordering::Relaxed);
                Ok(Response::Proof(p.proof.encode()))
            }
            Err(StoreError::PieceNotFound(_)) => {
                Err((ErrorCode::NotFound, format!("piece {id} not held")))
            }
            Err(StoreError::Corrupt { reason, .. }) => {
                self.drop_corrupt(id, &reason).await;
                Err((
                    ErrorCode::Corrupt,
                    format!("piece {id} is corrupt here: {reason}"),
                ))
            }
            Err(StoreError::BadChallenge { reason, .. }) => Err((ErrorCode::BadRequest, reason)),
            Err(e) => Err((ErrorCode::Internal, e.to_string())),
        }
    }

    /// Deletes a piece found corrupt and tells its co-holders it is no longer held here.
    pub(super) async fn drop_corrupt(self: &Arc<Self>, id: PieceId, reason: &str) {
        let store = self.store.clone();
        if !matches!(
            self.blocking(move || store.remove_piece(&id)).await,
            Ok(true)
        ) {
            return;
        }
        self.stats.corrupt_dropped.fetch_add(1, Ordering::Relaxed);
        lock(&self.corrupt_here).note(id, tokio::time::Instant::now());
        warn!(piece = %id, %reason, "corrupt piece deleted; repair will rebuild it elsewhere");
        // The stripe's group (its auditor among them) hears of it before the challenge
        // is answered, so that no repairer puts the piece back here; quickly, since the
        // auditor waits, and a group that cannot be told at once is told with the next
        // flush; one whose stripe is not known here yet (its manifest is still on its
        // way), once it is.
        let told = tokio::time::timeout(TELL_DROPPED_FOR, self.announce_dropped(id)).await;
        if !matches!(told, Ok(true)) {
            self.untold(vec![Untold::new(id)]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn co_holders_wait_for_a_slot_and_strangers_keep_to_their_share() {
        let g = ChallengeGate::default();
        let mut strangers = Vec::new();
        for _ in 0..STRANGER_PROVING {
            strangers.push(
                g.enter(PeerId::random(), false)
                    .await
                    .expect("a stranger's slot"),
            );
        }
        assert!(
            g.enter(PeerId::random(), false).await.is_none(),
            "strangers hold their share"
        );
        let mut held = Vec::new();
        for _ in STRANGER_PROVING..MAX_PROVING {
            held.push(g.enter(PeerId::random(), true).await.expect("a slot"));
        }
        // Every slot is taken: a co-holder waits until one comes free.
        let waiting = g.enter(PeerId::random(), true);
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), waiting.as_mut())
                .await
                .is_err(),
            "it did not wait"
        );
        strangers.pop();
        assert!(waiting.await.is_some());
    }
}
