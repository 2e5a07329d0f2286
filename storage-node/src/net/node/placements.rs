//! The node's side of placement records (`location`): keeping those of the stripes it
//! holds pieces of, storing them in the DHT for a pusher, checking the ones other peers
//! ask it to store, and finding them for readers. How a record is checked, and what
//! that may cost, is `placement_check`.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use libp2p::{PeerId, kad};
use serde_bytes::ByteBuf;
use tokio::sync::oneshot;
use tracing::debug;

use super::{
    State, Work, lock,
    placement_check::{CHECK_BATCH, Refused, StripeTables},
};
use crate::{
    ids::{NodeId, PieceId, VersionId},
    location::{MAX_PLACEMENT_LEN, PlacementKey, SignedPlacement, update},
    manifest::Manifest,
    net::{
        swarm::{Command, PutFailed},
        wire::{self, ErrorCode, Response},
    },
    repair::stripe_id,
    store::{PieceStore, StoreError},
};

/// How long a DHT lookup or store may take: a store ends with its Kademlia query, which
/// waits out each closest peer that does not answer (10 s), dialled afresh as a rule now
/// that idle connections close; a little past the query's own timeout (30 s).
const DHT_TIMEOUT: Duration = Duration::from_secs(35);
/// DHT lookups or stores one request or task runs at once.
const DHT_AT_ONCE: usize = 16;
/// How many times a `Place` tries to store each of its records in the DHT.
const PUT_ATTEMPTS: usize = 2;
/// How long a `Place` may take storing its records in the DHT: its answer comes well
/// before the publisher's request times out (`swarm::REQUEST_TIMEOUT`, 120 s).
const PUBLISH_WITHIN: Duration = Duration::from_secs(90);
/// How long, and how many, records stored in the DHT for a publisher are remembered: a
/// publisher that asks again after `Busy` sends its whole batch, and those stored the
/// first time are not stored again (nor charged in full).
pub(super) const PLACED_LATELY_FOR: Duration = Duration::from_secs(300);
pub(super) const MAX_PLACED_LATELY: usize = 1 << 14;
/// The share of a DHT store a record stored lately is charged: it is still checked.
const REPEAT_CHARGE: f64 = 0.125;
/// How long a record another peer stored here lives, unless stored again (Kademlia's
/// default, and how its copies are renewed: the node that put a record puts it again
/// each day).
pub(super) const RECORD_TTL: Duration = Duration::from_secs(36 * 3600);
/// When a node looks for the records of a version it just kept: at once, then again.
const ADOPT_WAITS: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_secs(2),
    Duration::from_secs(8),
];

/// Keeps `record` if it names this node (`me`) for a piece (of `pieces`, the stripe's)
/// that this node holds: the group keeps its stripe's record, and no one else is made to.
/// `None` if it does not name this node; else whether it was new here (not the record
/// kept already, or an older one).
fn keep_if_member(
    store: &PieceStore,
    me: NodeId,
    record: &SignedPlacement,
    pieces: &[PieceId],
) -> Result<Option<bool>, StoreError> {
    if !names_holder(store, me, record, pieces) {
        return Ok(None);
    }
    store.put_placement(record).map(Some)
}

/// Whether `record` names this node (`me`) for a piece of `pieces` that it holds.
fn names_holder(
    store: &PieceStore,
    me: NodeId,
    record: &SignedPlacement,
    pieces: &[PieceId],
) -> bool {
    record.record().holders.iter().zip(pieces).any(|(h, p)| {
        h.as_ref().is_some_and(|h| h.node == me) && store.has_piece(p).unwrap_or(false)
    })
}

/// Updates offered through the DHT proven at once.
const PROOFS_AT_ONCE: usize = 8;
/// Most nodes' updates one `Place` may carry: a repairer sends one.
const MAX_UPDATES: usize = 4;

/// Of the records found under `key`, the current one: the newest its publisher signed,
/// or an update of it by its group, or an update alone as a hint ([`update::current`]).
fn newest(key: &PlacementKey, found: &[Vec<u8>]) -> Option<(SignedPlacement, update::Proof)> {
    let records: Vec<SignedPlacement> = found
        .iter()
        .filter(|b| b.len() <= MAX_PLACEMENT_LEN)
        .filter_map(|b| SignedPlacement::decode(b).ok())
        .collect();
    update::current(key, &records, crate::location::now_ms())
}

impl State {
    fn tables(&self) -> &StripeTables {
        &self.stripe_tables
    }

    /// Takes, in the background, the placement records of `m`'s stripes that this node
    /// holds pieces of, from the DHT, as one of their group. Called when a version is
    /// kept: its push stores the records just after publishing, so stripes not found at
    /// once are looked up again twice, a few seconds apart.
    pub(super) fn adopt_placements(self: &Arc<Self>, m: Manifest) {
        let s = self.clone();
        let spawned = self.workers.spawn(Work::Adopt, async move {
            let store = s.store.clone();
            let publisher = m.publisher();
            let held = s
                .blocking(move || -> Result<Vec<PlacementKey>, StoreError> {
                    let mut keys = Vec::new();
                    for f in m.files() {
                        for stripe in &f.stripes {
                            let key = PlacementKey::of(&publisher, &stripe_id(stripe));
                            if stripe
                                .pieces
                                .iter()
                                .any(|p| store.has_piece(&p.id).unwrap_or(false))
                                && store.placement(&key)?.is_none()
                            {
                                keys.push(key);
                            }
                        }
                    }
                    Ok(keys)
                })
                .await;
            let Ok(mut pending) = held else { return };
            let s = &s;
            for wait in ADOPT_WAITS {
                tokio::time::sleep(wait).await;
                let adopted: Vec<(PlacementKey, bool)> = futures::stream::iter(pending)
                    .map(|key| async move { (key, s.adopt(key).await) })
                    .buffer_unordered(DHT_AT_ONCE)
                    .collect()
                    .await;
                pending = adopted
                    .into_iter()
                    .filter(|(_, ok)| !ok)
                    .map(|(k, _)| k)
                    .collect();
                if pending.is_empty() {
                    return;
                }
            }
            debug!(
                stripes = pending.len(),
                "no placement record found for stripes held here"
            );
        });
        if spawned.is_err() {
            debug!("placement records of a new version not taken: adoptions are at their cap");
        }
    }

    /// Takes the record under `key` if this node has it or finds it. Whether it has it.
    async fn adopt(self: &Arc<Self>, key: PlacementKey) -> bool {
        let store = self.store.clone();
        if matches!(
            self.blocking(move || store.placement(&key)).await,
            Ok(Some(_))
        ) {
            return true;
        }
        // A group member keeps only its publisher's word from a lookup: an update
        // reaches it from the repairer, and is shown to it then.
        let Some((found, update::Proof::Publisher)) = self.get_current(key.0).await else {
            return false;
        };
        let bytes = found.as_bytes().to_vec();
        let s = self.clone();
        let kept = self
            .blocking(
                move || -> Result<Option<(SignedPlacement, Vec<PieceId>)>, Refused> {
                    let (record, pieces) = s.tables().check(&s.store, &bytes)?;
                    let kept = record.record().key() == key
                        && keep_if_member(&s.store, s.me, &record, &pieces)?.is_some();
                    Ok(kept.then_some((record, pieces)))
                },
            )
            .await;
        match kept {
            Ok(Some((record, pieces))) => {
                self.add_co_holders(vec![(record.record().clone(), pieces)]);
                true
            }
            _ => false,
        }
    }

    /// `Request::Place`: keeps the records of stripes this node holds a piece of (as the
    /// record says); with `publish`, also stores every record in the DHT before it answers.
    /// Each record to store in the DHT is charged to `from`'s allowance once, however many
    /// tries it takes; one stored lately (a publisher asking again after `Busy`) is not
    /// stored again, and is charged only [`REPEAT_CHARGE`] for its check.
    pub(super) async fn place(
        self: &Arc<Self>,
        from: PeerId,
        records: Vec<ByteBuf>,
        publish: bool,
    ) -> Result<Response, (ErrorCode, String)> {
        if records.len() > wire::MAX_PLACE {
            return Err((
                ErrorCode::BadRequest,
                format!("at most {} records per Place", wire::MAX_PLACE),
            ));
        }
        let digests: Vec<[u8; 32]> = records
            .iter()
            .map(|b| *blake3::hash(b).as_bytes())
            .collect();
        // Records stored lately, or sent twice in this batch: checked, not stored again.
        let repeat: Vec<bool> = {
            let lately = lock(&self.placed_lately);
            let now = tokio::time::Instant::now();
            let mut seen = std::collections::HashSet::with_capacity(digests.len());
            digests
                .iter()
                .map(|d| !seen.insert(*d) || lately.lately(d, now))
                .collect()
        };
        let repeats = repeat.iter().filter(|r| **r).count();
        let charge = (records.len() - repeats) as f64 + repeats as f64 * REPEAT_CHARGE;
        if publish && !lock(&self.lookups).admit(from, charge) {
            return Err((
                ErrorCode::Busy,
                "over this peer's allowance of DHT stores; try again in a few seconds".into(),
            ));
        }
        let refused = |e: Refused| match e {
            Refused::Store(e) => (ErrorCode::Internal, e.to_string()),
            e @ Refused::OverAllowance => (ErrorCode::Busy, e.to_string()),
            e => (
                ErrorCode::BadRequest,
                format!("placement record refused: {e}"),
            ),
        };
        let s = self.clone();
        let checked = self
            .blocking(move || -> Result<_, Refused> {
                records
                    .iter()
                    .map(|bytes| s.tables().check(&s.store, bytes))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await
            .map_err(refused)?;
        // A node's update is given to the group by its repairer, never published through
        // a node, and is taken only once its moves are borne out: cheap refusals first.
        let updates = checked.iter().filter(|(r, _)| !r.by_publisher()).count();
        if updates > 0 && (publish || updates > MAX_UPDATES) {
            return Err((
                ErrorCode::BadRequest,
                format!(
                    "a repair's updates go to the stripe's group, at most {MAX_UPDATES} at a time, \
                     never published through a node"
                ),
            ));
        }
        for (record, pieces) in &checked {
            if record.by_publisher() {
                continue;
            }
            let store = self.store.clone();
            let (r, p, me) = (record.clone(), pieces.clone(), self.me);
            let named = self
                .blocking(move || Ok::<_, StoreError>(names_holder(&store, me, &r, &p)))
                .await
                .unwrap_or(false);
            if !named {
                return Err((
                    ErrorCode::BadRequest,
                    "placement record refused: the update does not name this node for a piece it holds"
                        .into(),
                ));
            }
            self.prove_update(from, record, pieces, true)
                .await
                .map_err(refused)?;
        }
        let s = self.clone();
        let ((count, new), valid) = self
            .blocking(move || -> Result<_, Refused> {
                // Records kept, and those of them new here: a record sent again changes
                // nothing and tells no group anything.
                let (mut kept, mut new) = (0u32, Vec::new());
                let mut valid = Vec::with_capacity(checked.len());
                for (record, pieces) in checked {
                    match keep_if_member(&s.store, s.me, &record, &pieces)? {
                        Some(true) => {
                            kept += 1;
                            new.push((record.record().clone(), pieces));
                        }
                        Some(false) => kept += 1,
                        None => {}
                    }
                    valid.push(record);
                }
                Ok(((kept, new), valid))
            })
            .await
            .map_err(refused)?;
        self.add_co_holders(new);
        if publish {
            let all = valid.len();
            // A store whose query timed out (a loaded network) is tried once more before
            // the publisher hears of it, if time is left: only the records that failed.
            // The answer comes by the deadline, before the publisher's request times out.
            let deadline = tokio::time::Instant::now() + PUBLISH_WITHIN;
            let mut left: Vec<(SignedPlacement, [u8; 32])> = valid
                .into_iter()
                .zip(digests)
                .zip(repeat)
                .filter_map(|(r, repeat)| (!repeat).then_some(r))
                .collect();
            let mut lasting = None;
            for attempt in 0..PUT_ATTEMPTS {
                let time_left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if left.is_empty() || (attempt > 0 && time_left < DHT_TIMEOUT) {
                    break;
                }
                let pass = futures::stream::iter(left.clone())
                    .map(|(r, d)| async move {
                        let put = self
                            .put_record(r.record().key(), r.as_bytes().to_vec(), true)
                            .await;
                        ((r, d), put)
                    })
                    .buffer_unordered(DHT_AT_ONCE)
                    .collect::<Vec<_>>();
                let Ok(done) = tokio::time::timeout_at(deadline, pass).await else {
                    break;
                };
                left.clear();
                let now = tokio::time::Instant::now();
                let mut lately = lock(&self.placed_lately);
                for (r, put) in done {
                    match put {
                        Ok(()) => {
                            lately.note(r.1, now);
                            self.metrics.records_put.inc();
                        }
                        Err(PutFailed::NoPeerInTime) => left.push(r),
                        // Asking again does not help: answered at once, below.
                        Err(e) => {
                            left.push(r);
                            lasting = Some(e);
                        }
                    }
                }
                if lasting.is_some() {
                    break;
                }
            }
            if let Some(e) = lasting {
                return Err((
                    ErrorCode::Internal,
                    format!(
                        "{} of {all} placement records were not stored in the DHT: {e}",
                        left.len()
                    ),
                ));
            }
            if !left.is_empty() {
                return Err((
                    ErrorCode::Busy,
                    format!(
                        "{} of {all} placement records were not stored in the DHT within {} s \
                         (no peer took them in time); try again",
                        left.len(),
                        PUBLISH_WITHIN.as_secs()
                    ),
                ));
            }
        }
        Ok(Response::Placed { kept: count })
    }

    /// `Request::Placements`: each record from this node's store, else the newest its
    /// publisher signed that the DHT has. The reader checks it against its manifest.
    /// Lookups in the DHT are charged to `from`'s allowance; past it, keys this node
    /// does not keep are answered as not found.
    pub(super) async fn placements(
        self: &Arc<Self>,
        from: PeerId,
        mut keys: Vec<[u8; 32]>,
    ) -> Result<Response, (ErrorCode, String)> {
        if keys.len() > wire::MAX_PLACE {
            return Err((
                ErrorCode::BadRequest,
                format!("at most {} keys per Placements", wire::MAX_PLACE),
            ));
        }
        let asked = keys.clone();
        keys.sort_unstable();
        keys.dedup();
        let store = self.store.clone();
        let wanted = keys.clone();
        let local: Vec<Option<Vec<u8>>> = self
            .blocking(move || -> Result<_, StoreError> {
                Ok(wanted
                    .iter()
                    .map(|k| store.placement(&PlacementKey(*k)).ok().flatten())
                    .collect())
            })
            .await
            .map_err(|e| (ErrorCode::Internal, e.to_string()))?;
        let found: std::collections::HashMap<[u8; 32], Vec<u8>> =
            futures::stream::iter(keys.into_iter().zip(local))
                .map(|(key, local)| async move {
                    match local {
                        Some(b) => Some((key, b)),
                        None if lock(&self.lookups).admit(from, 1.0) => {
                            self.get_record(key).await.map(|b| (key, b))
                        }
                        None => None,
                    }
                })
                .buffer_unordered(DHT_AT_ONCE)
                .filter_map(|x| async move { x })
                .collect()
                .await;
        Ok(Response::Placements(
            asked
                .iter()
                .map(|k| found.get(k).cloned().map(ByteBuf::from))
                .collect(),
        ))
    }

    /// A record a peer asks this node to store in the DHT. The cheap checks run here,
    /// on the swarm task (the peer's allowance, the size, the key); the rest wait in a
    /// bounded queue that one worker drains in batches, and only a record that passes is
    /// stored. One of a version this node has not kept yet waits for it (`unpark`),
    /// since a push stores its records right after it publishes.
    pub(super) fn offered_record(self: &Arc<Self>, from: PeerId, record: kad::Record) {
        if !lock(&self.offers).allow(from) {
            debug!(%from, "DHT record dropped: the peer is over its allowance");
            return;
        }
        let fits = record.value.len() <= MAX_PLACEMENT_LEN
            && SignedPlacement::peek(&record.value)
                .is_ok_and(|r| record.key.as_ref() == r.key().0.as_slice());
        if !fits {
            debug!(%from, "a DHT record that is no placement record refused");
            return;
        }
        if lock(&self.offers).queue(from, record) {
            self.check_offers();
        }
    }

    /// Checks queued offers on one worker, a batch at a time on the blocking pool, and
    /// stores those that pass; one of a version not kept yet is parked.
    pub(super) fn check_offers(self: &Arc<Self>) {
        let s = self.clone();
        let spawned = self.workers.spawn(Work::Offers, async move {
            loop {
                let batch = lock(&s.offers).take(CHECK_BATCH);
                if batch.is_empty() {
                    return;
                }
                let t = s.clone();
                let checked = s
                    .blocking(move || {
                        Ok::<_, StoreError>(
                            batch
                                .into_iter()
                                .map(|(from, r)| {
                                    let verdict = t.tables().check(&t.store, &r.value);
                                    (from, r, verdict)
                                })
                                .collect::<Vec<_>>(),
                        )
                    })
                    .await;
                let Ok(checked) = checked else {
                    lock(&s.offers).stopped();
                    return;
                };
                // Updates wait on their proofs a few at a time (each within its timeout),
                // so one slow proof does not hold the rest of the batch.
                let s2 = &s;
                let proven: Vec<_> = futures::stream::iter(checked)
                    .map(|(from, record, verdict)| async move {
                        let verdict = match verdict {
                            Ok((r, pieces)) if !r.by_publisher() => {
                                s2.prove_update(from, &r, &pieces, false).await
                            }
                            Ok(_) => Ok(()),
                            Err(e) => Err(e),
                        };
                        (from, record, verdict)
                    })
                    .buffer_unordered(PROOFS_AT_ONCE)
                    .collect()
                    .await;
                for (from, record, verdict) in proven {
                    match verdict {
                        Ok(()) => {
                            s.control.send(Command::StoreRecord(record)).await.ok();
                        }
                        Err(Refused::UnknownVersion(v)) => {
                            // Queued again if the version was kept meanwhile: this
                            // worker, still running, takes it.
                            lock(&s.offers).park(v, from, record, std::time::Instant::now());
                        }
                        Err(e) => debug!(%from, "placement record refused: {e}"),
                    }
                }
            }
        });
        if spawned.is_err() {
            lock(&self.offers).stopped();
            debug!("placement records wait: record checks are at their cap");
        }
    }

    /// Checks the records that waited for `version`, now that it is kept here.
    pub(super) fn unpark(self: &Arc<Self>, version: &VersionId) {
        let start = lock(&self.offers).unpark(version);
        if start {
            self.check_offers();
        }
    }

    /// Stores a record in the DHT (unless this node has a newer one under its key);
    /// with `wait`, says whether it was stored here and sent on, and if not, why.
    pub(super) async fn put_record(
        &self,
        key: PlacementKey,
        bytes: Vec<u8>,
        wait: bool,
    ) -> Result<(), PutFailed> {
        // No expiry here: Kademlia gives the copies it sends one, and renews them when it
        // publishes the record again.
        let record = kad::Record::new(kad::RecordKey::new(&key.0), bytes);
        let (reply, rx) = oneshot::channel();
        let cmd = Command::PutRecord {
            record,
            reply: wait.then_some(reply),
        };
        if self.control.send(cmd).await.is_err() {
            return Err(PutFailed::ShuttingDown);
        }
        if !wait {
            return Ok(());
        }
        match tokio::time::timeout(DHT_TIMEOUT, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(PutFailed::ShuttingDown),
            Err(_) => Err(PutFailed::NoPeerInTime),
        }
    }

    /// The current record under `key` that a DHT lookup finds in time (this node's own
    /// copy, if it has one): see [`newest`].
    pub(super) async fn get_record(self: &Arc<Self>, key: [u8; 32]) -> Option<Vec<u8>> {
        self.get_current(key)
            .await
            .map(|(r, _)| r.as_bytes().to_vec())
    }

    /// [`get_record`](Self::get_record), decoded, with how far it is shown.
    pub(super) async fn get_current(
        self: &Arc<Self>,
        key: [u8; 32],
    ) -> Option<(SignedPlacement, update::Proof)> {
        let (reply, rx) = oneshot::channel();
        let cmd = Command::GetRecord {
            key: kad::RecordKey::new(&key),
            reply,
        };
        self.control.send(cmd).await.ok()?;
        let found = tokio::time::timeout(DHT_TIMEOUT, rx).await.ok()?.ok()?;
        if found.is_empty() {
            return None;
        }
        self.blocking(move || Ok::<_, StoreError>(newest(&PlacementKey(key), &found)))
            .await
            .ok()
            .flatten()
    }

    /// Stores every record this node keeps in the DHT again (after a start, once it has
    /// peers: the DHT's copies live in memory), a few at a time.
    pub(super) async fn republish_placements(&self) {
        let store = self.store.clone();
        let Ok(all) = self.blocking(move || store.placements()).await else {
            return;
        };
        futures::stream::iter(all)
            .filter_map(|bytes| async move {
                let key = SignedPlacement::peek(&bytes).ok()?.key();
                Some((key, bytes))
            })
            .map(|(key, bytes)| self.put_record(key, bytes, true))
            .buffer_unordered(DHT_AT_ONCE)
            .collect::<Vec<_>>()
            .await;
    }
}
