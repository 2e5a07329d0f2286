//! The node's side of placement records (`location`): keeping those of the stripes it
//! holds pieces of, storing them in the DHT for a pusher, checking the ones other peers
//! ask it to store, and finding them for readers.
//!
//! A record is checked against the manifest this node has of the version it names
//! before its signature is: a key that published nothing here has no say, and a record
//! of a stripe this node cannot find costs one rocksdb read.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use libp2p::{PeerId, kad};
use serde_bytes::ByteBuf;
use tokio::sync::oneshot;
use tracing::debug;

use super::{State, Work};
use crate::{
    ids::NodeId,
    location::{MAX_PLACEMENT_LEN, PlacementKey, PlacementRecordError, SignedPlacement},
    manifest::{Manifest, Stripe},
    net::{
        swarm::Command,
        wire::{self, ErrorCode, Response},
    },
    repair::stripe_id,
    store::{PieceStore, StoreError},
};

/// How long a DHT lookup or store may take.
const DHT_TIMEOUT: Duration = Duration::from_secs(10);
/// DHT lookups or stores one request runs at once.
const DHT_AT_ONCE: usize = 16;
/// When a node looks for the records of a version it just kept: at once, then again.
const ADOPT_WAITS: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_secs(2),
    Duration::from_secs(8),
];

/// Why a placement record was not taken.
#[derive(Debug, thiserror::Error)]
pub(super) enum Refused {
    #[error(transparent)]
    Record(#[from] PlacementRecordError),
    #[error("no manifest of version {0} here")]
    UnknownVersion(crate::ids::VersionId),
    #[error("the version has no stripe {file}/{index}")]
    NoSuchStripe { file: u32, index: u32 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks `bytes` as a placement record: the cheap decoding, the manifest of the version
/// it names (this node's copy), then the signature and that the record fits the stripe.
pub(super) fn checked(
    store: &PieceStore,
    bytes: &[u8],
) -> Result<(SignedPlacement, Stripe), Refused> {
    let r = SignedPlacement::peek(bytes)?;
    let m = store
        .manifest(&r.version)?
        .ok_or(Refused::UnknownVersion(r.version))?;
    if m.publisher() != r.publisher {
        return Err(PlacementRecordError::NotPublisher.into());
    }
    let stripe = m
        .files()
        .get(r.file as usize)
        .and_then(|f| f.stripes.get(r.index as usize))
        .ok_or(Refused::NoSuchStripe {
            file: r.file,
            index: r.index,
        })?
        .clone();
    let record = SignedPlacement::decode(bytes)?;
    record.check(&m.publisher(), &stripe_id(&stripe), stripe.pieces.len())?;
    Ok((record, stripe))
}

/// Keeps `record` if it names this node (`me`) for a piece of `stripe` that this node
/// holds: the group keeps its stripe's record, and no one else is made to.
fn keep_if_member(
    store: &PieceStore,
    me: NodeId,
    record: &SignedPlacement,
    stripe: &Stripe,
) -> Result<bool, StoreError> {
    let mine = record
        .record()
        .holders
        .iter()
        .zip(&stripe.pieces)
        .any(|(h, p)| {
            h.as_ref().is_some_and(|h| h.node == me) && store.has_piece(&p.id).unwrap_or(false)
        });
    if mine {
        store.put_placement(record)?;
    }
    Ok(mine)
}

impl State {
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
            for wait in ADOPT_WAITS {
                tokio::time::sleep(wait).await;
                let mut missing = Vec::new();
                for key in pending {
                    if !s.adopt(key).await {
                        missing.push(key);
                    }
                }
                pending = missing;
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
        let Some(bytes) = self.get_record(key.0).await else {
            return false;
        };
        let store = self.store.clone();
        let me = self.me;
        let kept = self
            .blocking(move || -> Result<bool, Refused> {
                let (record, stripe) = checked(&store, &bytes)?;
                Ok(record.record().key() == key && keep_if_member(&store, me, &record, &stripe)?)
            })
            .await;
        matches!(kept, Ok(true))
    }

    /// `Request::Place`: keeps the records of stripes this node holds a piece of (as the
    /// record says); with `publish`, stores every record in the DHT and answers only once
    /// each reached at least one other node, so that any node can find it.
    pub(super) async fn place(
        self: &Arc<Self>,
        records: Vec<ByteBuf>,
        publish: bool,
    ) -> Result<Response, (ErrorCode, String)> {
        if records.len() > wire::MAX_PLACE {
            return Err((
                ErrorCode::BadRequest,
                format!("at most {} records per Place", wire::MAX_PLACE),
            ));
        }
        let store = self.store.clone();
        let me = self.me;
        let checked = self
            .blocking(move || -> Result<_, Refused> {
                let mut kept = 0u32;
                let mut valid = Vec::with_capacity(records.len());
                for bytes in &records {
                    let (record, stripe) = checked(&store, bytes)?;
                    if keep_if_member(&store, me, &record, &stripe)? {
                        kept += 1;
                    }
                    valid.push(record);
                }
                Ok((kept, valid))
            })
            .await;
        let (kept, valid) = match checked {
            Ok(v) => v,
            Err(Refused::Store(e)) => return Err((ErrorCode::Internal, e.to_string())),
            Err(e) => {
                return Err((
                    ErrorCode::BadRequest,
                    format!("placement record refused: {e}"),
                ));
            }
        };
        if publish {
            let stored: Vec<bool> = futures::stream::iter(valid)
                .map(|r| self.put_record(r.record().key(), r.as_bytes().to_vec(), true))
                .buffer_unordered(DHT_AT_ONCE)
                .collect()
                .await;
            let failed = stored.iter().filter(|ok| !**ok).count();
            if failed > 0 {
                return Err((
                    ErrorCode::Internal,
                    format!(
                        "{failed} of {} placement records reached no other node in the DHT; \
                         the node may not know its peers yet, so try again",
                        stored.len()
                    ),
                ));
            }
        }
        Ok(Response::Placed { kept })
    }

    /// `Request::Placements`: each record from this node's store, else from the DHT.
    /// Records found in the DHT are passed on unchecked: the reader checks them against
    /// its manifest.
    pub(super) async fn placements(
        self: &Arc<Self>,
        keys: Vec<[u8; 32]>,
    ) -> Result<Response, (ErrorCode, String)> {
        if keys.len() > wire::MAX_PLACE {
            return Err((
                ErrorCode::BadRequest,
                format!("at most {} keys per Placements", wire::MAX_PLACE),
            ));
        }
        let store = self.store.clone();
        let asked = keys.clone();
        let local: Vec<Option<Vec<u8>>> = self
            .blocking(move || -> Result<_, StoreError> {
                Ok(asked
                    .iter()
                    .map(|k| {
                        store
                            .placement(&PlacementKey(*k))
                            .ok()
                            .flatten()
                            .map(|r| r.as_bytes().to_vec())
                    })
                    .collect())
            })
            .await
            .map_err(|e| (ErrorCode::Internal, e.to_string()))?;
        let found: Vec<Option<ByteBuf>> = futures::stream::iter(keys.into_iter().zip(local))
            .map(|(key, local)| async move {
                match local {
                    Some(b) => Some(b),
                    None => self.get_record(key).await,
                }
                .map(ByteBuf::from)
            })
            .buffered(DHT_AT_ONCE)
            .collect()
            .await;
        Ok(Response::Placements(found))
    }

    /// A record a peer asks this node to store in the DHT. The cheap checks run here,
    /// on the swarm task; the manifest lookup and the signature on a worker, and only
    /// a record that passes is stored. When the workers are busy, it is dropped: the
    /// DHT stores it at others, and its holders store it again.
    pub(super) fn offered_record(self: &Arc<Self>, from: PeerId, record: kad::Record) {
        let fits = record.value.len() <= MAX_PLACEMENT_LEN
            && SignedPlacement::peek(&record.value)
                .is_ok_and(|r| record.key.as_ref() == r.key().0.as_slice());
        if !fits {
            debug!(%from, "a DHT record that is no placement record refused");
            return;
        }
        let s = self.clone();
        let spawned = self.workers.spawn(Work::Records, async move {
            let store = s.store.clone();
            let value = record.value.clone();
            match s.blocking(move || checked(&store, &value)).await {
                Ok(_) => {
                    s.control.send(Command::StoreRecord(record)).await.ok();
                }
                Err(e) => debug!(%from, "placement record refused: {e}"),
            }
        });
        if spawned.is_err() {
            debug!(%from, "placement record dropped: record checks are at their cap");
        }
    }

    /// Stores `record` in the DHT; with `wait`, returns whether another node stored it.
    pub(super) async fn put_record(&self, key: PlacementKey, bytes: Vec<u8>, wait: bool) -> bool {
        let record = kad::Record::new(kad::RecordKey::new(&key.0), bytes);
        if !wait {
            return self
                .control
                .send(Command::PutRecord {
                    record,
                    reply: None,
                })
                .await
                .is_ok();
        }
        let (reply, rx) = oneshot::channel();
        let cmd = Command::PutRecord {
            record,
            reply: Some(reply),
        };
        if self.control.send(cmd).await.is_err() {
            return false;
        }
        matches!(tokio::time::timeout(DHT_TIMEOUT, rx).await, Ok(Ok(true)))
    }

    /// The record under `key` in the DHT, if found in time.
    pub(super) async fn get_record(&self, key: [u8; 32]) -> Option<Vec<u8>> {
        let (reply, rx) = oneshot::channel();
        let cmd = Command::GetRecord {
            key: kad::RecordKey::new(&key),
            reply,
        };
        self.control.send(cmd).await.ok()?;
        tokio::time::timeout(DHT_TIMEOUT, rx)
            .await
            .ok()?
            .ok()?
            .filter(|v| v.len() <= MAX_PLACEMENT_LEN)
    }

    /// Stores every record this node keeps in the DHT again (after a start, once it has
    /// peers: the DHT's copies live in memory).
    pub(super) async fn republish_placements(&self) {
        let store = self.store.clone();
        let Ok(all) = self.blocking(move || store.placements()).await else {
            return;
        };
        for bytes in all {
            if let Ok(r) = SignedPlacement::peek(&bytes) {
                self.put_record(r.key(), bytes, false).await;
            }
        }
    }
}
