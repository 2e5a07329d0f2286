//! Audit records travel to the co-holders of the stripes they are about, and to no one
//! else. An auditor sends each co-holder of an audited stripe (the nodes the stripe's
//! placement record names, and those that announced a piece of it here) its records
//! about that stripe, with a direct [`Request::Records`]: the records a node hears
//! grow with what it holds, not with the network. Only co-holders could take them
//! anyway: the ledger refuses a record about a stripe its node does not hold.
//!
//! The receiver takes a batch only from its signer, within the signer's allowance of
//! records (charged before the batch is decoded, as many as it carries), and runs the
//! ledger's cheap filters (scope, who may speak, age, the auditor's quota) before it
//! checks any signature, on the blocking pool.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use futures::StreamExt;
use libp2p::PeerId;
use tracing::{debug, warn};

use super::{State, data_id_of, lock, upkeep::HeldStripe, upkeep::now_unix};
use crate::{
    audit::SignedRecord,
    ids::PieceId,
    net::wire::{self, ErrorCode, Request, Response},
    store::StoreError,
};

/// Co-holders sent records at once.
const SEND_AT_ONCE: usize = 16;
/// Longest wait for a co-holder to take a batch.
const SEND_DEADLINE: Duration = Duration::from_secs(10);

impl State {
    /// Sends `records`, this node's own about pieces of `stripes`, to the co-holders of
    /// the stripes each is about. Best effort: a co-holder that does not take them hears
    /// the next round's.
    pub(super) async fn send_records(
        self: &Arc<Self>,
        stripes: Vec<HeldStripe>,
        records: Vec<SignedRecord>,
    ) {
        let s = self.clone();
        let Ok(to) = self
            .blocking(move || Ok::<_, StoreError>(s.records_for(&stripes, &records)))
            .await
        else {
            return;
        };
        futures::stream::iter(to)
            .for_each_concurrent(SEND_AT_ONCE, |(peer, records)| async move {
                for chunk in records.chunks(wire::AUDIT_BATCH) {
                    let req = Request::Records(wire::encode_records(chunk));
                    let sent = tokio::time::timeout(
                        SEND_DEADLINE,
                        self.control.request(peer, vec![], req),
                    )
                    .await;
                    if !matches!(sent, Ok(Ok(Response::RecordsTaken { .. }))) {
                        debug!(%peer, "a co-holder did not take this node's audit records");
                        return;
                    }
                }
            })
            .await;
    }

    /// For each co-holder of `stripes`, the records about the stripes it shares with this
    /// node. Reads the placement records kept here: run it on the blocking pool.
    fn records_for(
        &self,
        stripes: &[HeldStripe],
        records: &[SignedRecord],
    ) -> HashMap<PeerId, Vec<SignedRecord>> {
        let mut stripes_of: HashMap<PieceId, Vec<usize>> = HashMap::new();
        for (i, s) in stripes.iter().enumerate() {
            for p in &s.stripe.pieces {
                let of = stripes_of.entry(p.id).or_default();
                if !of.contains(&i) {
                    of.push(i);
                }
            }
        }
        let mut groups: HashMap<usize, HashSet<PeerId>> = HashMap::new();
        let mut out: HashMap<PeerId, Vec<SignedRecord>> = HashMap::new();
        for r in records {
            let mut to = HashSet::new();
            for &i in stripes_of.get(&r.record.piece).into_iter().flatten() {
                let group = groups
                    .entry(i)
                    .or_insert_with(|| self.co_holders_of(&stripes[i], None));
                to.extend(group.iter().copied());
            }
            for peer in to {
                out.entry(peer).or_default().push(*r);
            }
        }
        out
    }

    /// `Request::Records`: takes a node's own audit records into the ledger, those that
    /// pass its filters and whose signatures verify. How many it took.
    pub(super) async fn records_from(
        &self,
        from: PeerId,
        bytes: &[u8],
    ) -> Result<Response, (ErrorCode, String)> {
        let bad = |why: &str| (ErrorCode::BadRequest, why.to_string());
        let Some(signer) = data_id_of(&from) else {
            return Err(bad(
                "audit records are taken only from their signer's own node",
            ));
        };
        // Charged before it is decoded, by the records it carries: a key that holds
        // nothing still costs this node a decode and the ledger's filters for each.
        let carried = bytes.len().div_ceil(crate::audit::RECORD_LEN).max(1);
        if !lock(&self.records_in).admit(from, carried as f64) {
            return Err((
                ErrorCode::Busy,
                "over this node's allowance of audit records; send fewer".into(),
            ));
        }
        // Bounded before it is decoded: a whole number of records, at most a batch.
        let Some(records) = wire::decode_records(bytes) else {
            return Err(bad("malformed audit records"));
        };
        if records.iter().any(|r| r.record.auditor.0 != signer) {
            return Err(bad("audit records signed by another node"));
        }
        let now = now_unix();
        let admitted: Vec<SignedRecord> = {
            let mut ledger = lock(&self.ledger);
            records
                .into_iter()
                .filter(|r| ledger.admit(r, now).is_ok())
                .collect()
        };
        if admitted.is_empty() {
            return Ok(Response::RecordsTaken { taken: 0 });
        }
        let checked = self
            .workers
            .blocking(move || {
                admitted
                    .iter()
                    .all(|r| r.verify().is_ok())
                    .then_some(admitted)
            })
            .await
            .ok()
            .flatten();
        let Some(records) = checked else {
            warn!(%from, "audit records whose signatures do not verify; refused");
            return Err(bad("audit records whose signatures do not verify"));
        };
        let taken = self.take_records(records).await;
        Ok(Response::RecordsTaken {
            taken: u32::try_from(taken).unwrap_or(u32::MAX),
        })
    }
}
