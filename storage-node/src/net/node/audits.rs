//! Audits of the holders of stripes this node holds (rounds of challenges, signed records
//! kept and sent to the stripes' co-holders), records taken into the ledger, and
//! scrubbing this node's own pieces.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use futures::StreamExt;
use tracing::{debug, info, warn};

use super::{
    State, lock,
    upkeep::{HeldStripe, held_stripes, now_unix},
    workers::Work,
};
use crate::{
    audit::{AuditRecord, AuditTarget, Outcome, SignedRecord},
    ids::{NodeId, PieceId},
    net::{
        DataError,
        wire::{ErrorCode, Request, Response},
    },
    store::StoreError,
};

/// Challenges in flight at once during a round.
const AUDIT_PARALLEL: usize = 8;
/// How long a holder has to answer a challenge.
pub(super) const AUDIT_DEADLINE: Duration = Duration::from_secs(10);

impl State {
    /// One audit round: challenge up to `batch` (holder, piece) pairs of stripes this node
    /// holds, sign the results, keep them and send them to the stripes' co-holders
    /// ([`send_records`](Self::send_records)); then look for stripes to repair.
    pub(super) async fn audit_round(self: Arc<Self>, round: u64) {
        let store = self.store.clone();
        let Ok(stripes) = self.blocking(move || held_stripes(&store)).await else {
            return;
        };
        {
            // Only co-holders of these stripes may speak about them, and only about them.
            let mut ledger = lock(&self.ledger);
            ledger.set_scope(stripes.iter().map(HeldStripe::scope));
            ledger.decay(now_unix());
        }
        let candidates: Vec<(NodeId, PieceId, u32)> = {
            let holders = lock(&self.holders);
            let mut c = Vec::new();
            for s in &stripes {
                for p in &s.stripe.pieces {
                    for (peer, _) in holders.holders(&p.id) {
                        if let Some(id) = super::data_id_of(peer) {
                            c.push((NodeId(id), p.id, p.len));
                        }
                    }
                }
            }
            c.sort_unstable();
            c.dedup();
            c
        };
        let now = now_unix();
        let targets = lock(&self.auditor).plan(&candidates, round, now, self.upkeep.audit_batch, 1);
        let records: Vec<SignedRecord> = futures::stream::iter(targets)
            .map(|t| {
                let s = self.clone();
                async move { s.audit_one(round, t).await }
            })
            .buffer_unordered(AUDIT_PARALLEL)
            .filter_map(|r| async move { r })
            .collect()
            .await;
        self.stats.audit_rounds.fetch_add(1, Ordering::Relaxed);
        if !records.is_empty() {
            let failed = records
                .iter()
                .filter(|r| !r.record.outcome.passed())
                .count();
            self.stats
                .audits
                .fetch_add(records.len() as u64, Ordering::Relaxed);
            self.stats
                .audit_fails
                .fetch_add(failed as u64, Ordering::Relaxed);
            if failed > 0 {
                info!(round, audited = records.len(), failed, "audit round");
            } else {
                debug!(round, audited = records.len(), "audit round: all passed");
            }
            self.take_records(records.clone()).await;
            // Sent aside, so that a slow co-holder holds up neither repair nor the next
            // round; when sending is behind, these are not sent (later rounds make more).
            let (s, about) = (self.clone(), stripes.clone());
            let sent = self.workers.spawn(Work::Records, async move {
                s.send_records(about, records).await;
            });
            if sent.is_err() {
                debug!(
                    round,
                    "sending audit records is behind; this round's are not sent"
                );
            }
        }
        // A node that has just started has not heard every holder's announcement yet:
        // what it has not heard of is not lost.
        if tokio::time::Instant::now() >= self.repair_from {
            self.repair_check(stripes).await;
        }
    }

    /// Challenges one holder and signs the outcome.
    pub(super) async fn audit_one(
        self: Arc<Self>,
        round: u64,
        t: AuditTarget,
    ) -> Option<SignedRecord> {
        let (peer, data) = self.data_of(&t.holder)?;
        let outcome = if t.retrieve {
            match self.data.fetch_patiently(&data, t.piece, t.len).await {
                Ok(bytes) => {
                    self.stats
                        .audit_wire_bytes
                        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    Outcome::Pass
                }
                Err(DataError::Corrupt { .. }) => Outcome::WrongBytes,
                // Serving others at capacity says nothing of what it holds: no record.
                Err(e @ DataError::Busy { .. }) => {
                    debug!(holder = %t.holder.short(), "retrieval audit not made: {e}");
                    return None;
                }
                Err(e) => {
                    debug!(holder = %t.holder.short(), "retrieval audit failed: {e}");
                    Outcome::Timeout
                }
            }
        } else {
            let nonce = lock(&self.auditor).nonce(round, &t.holder, &t.piece);
            let challenge =
                proofs::Challenge::new(t.piece.to_proofs_hash(), u64::from(t.len), nonce);
            let encoded = challenge.encode();
            self.stats
                .audit_wire_bytes
                .fetch_add(encoded.len() as u64, Ordering::Relaxed);
            // A holder busy with other proofs is asked again within the deadline: only
            // one that stays busy until the deadline has not answered.
            let asked = async {
                let mut wait = Duration::from_millis(250);
                loop {
                    let r = self
                        .control
                        .request(
                            peer,
                            vec![],
                            Request::Challenge {
                                challenge: encoded.clone(),
                            },
                        )
                        .await;
                    if !matches!(
                        r,
                        Ok(Response::Error {
                            code: ErrorCode::Busy,
                            ..
                        })
                    ) {
                        return r;
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
            };
            match tokio::time::timeout(AUDIT_DEADLINE, asked).await {
                Ok(Ok(Response::Proof(bytes))) => {
                    self.stats
                        .audit_wire_bytes
                        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    match proofs::Proof::decode(&bytes) {
                        Ok(p)
                            if proofs::verify(&proofs::Root(t.piece.0), &challenge, &p).is_ok() =>
                        {
                            Outcome::Pass
                        }
                        _ => Outcome::BadProof,
                    }
                }
                Ok(Ok(Response::Error {
                    code: ErrorCode::NotFound,
                    ..
                })) => Outcome::Missing,
                Ok(Ok(Response::Error {
                    code: ErrorCode::Corrupt,
                    ..
                })) => Outcome::Corrupt,
                // Busy, or anything but a proof: it did not answer. Only a proof that does
                // not verify counts as forged.
                Ok(Ok(other)) => {
                    debug!(holder = %t.holder.short(), "challenge answered with {other:?}");
                    Outcome::Timeout
                }
                Ok(Err(e)) => {
                    debug!(holder = %t.holder.short(), "challenge not answered: {e}");
                    Outcome::Timeout
                }
                Err(_) => Outcome::Timeout,
            }
        };
        if !outcome.passed() {
            warn!(holder = %t.holder.short(), piece = %t.piece, outcome = outcome.name(), "audit failed");
        }
        let record = AuditRecord {
            auditor: self.me,
            holder: t.holder,
            piece: t.piece,
            len: t.len,
            round,
            time_unix: now_unix(),
            outcome,
        };
        Some(record.sign(&self.signing))
    }

    /// Takes records whose signatures verified (or this node's own) into the ledger, and
    /// stores those it took. Returns how many it took.
    pub(super) async fn take_records(&self, records: Vec<SignedRecord>) -> usize {
        let now = now_unix();
        let fresh: Vec<SignedRecord> = {
            let mut ledger = lock(&self.ledger);
            records
                .into_iter()
                .filter(|r| match ledger.apply(r, now) {
                    Ok(()) => true,
                    Err(why) => {
                        debug!(auditor = %r.record.auditor.short(), "audit record not taken: {why}");
                        false
                    }
                })
                .collect()
        };
        let taken = fresh.len();
        if taken > 0 {
            let store = self.store.clone();
            if let Err(e) = self.blocking(move || store.put_audit_records(&fresh)).await {
                warn!("audit records not stored: {e}");
            }
        }
        taken
    }

    /// One scrub pass over every held piece, reading at most `rate` bytes per second.
    pub(super) async fn scrub_pass(self: Arc<Self>, rate: u64) {
        let store = self.store.clone();
        let Ok(ids) = self.blocking(move || store.piece_ids()).await else {
            return;
        };
        let (mut checked, mut bytes) = (0u64, 0u64);
        for id in ids {
            let store = self.store.clone();
            let t = tokio::time::Instant::now();
            match self.blocking(move || store.get_piece(&id)).await {
                Ok(b) => {
                    checked += 1;
                    bytes += b.len() as u64;
                    self.stats
                        .scrubbed_bytes
                        .fetch_add(b.len() as u64, Ordering::Relaxed);
                    let due = Duration::from_secs_f64(b.len() as f64 / rate.max(1) as f64);
                    tokio::time::sleep_until(t + due).await;
                }
                Err(StoreError::Corrupt { reason, .. }) => self.drop_corrupt(id, &reason).await,
                Err(_) => {}
            }
        }
        debug!(checked, bytes, "scrub pass done");
    }
}
