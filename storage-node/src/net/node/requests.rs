//! Answers to the control-plane requests peers and clients send: each runs on its own
//! bounded handler task, never on the swarm task.

use std::sync::{Arc, atomic::Ordering};

use libp2p::{Multiaddr, PeerId};
use tracing::debug;

use super::{INFO_TIMEOUT, State, data_id_of, lock, upkeep};
use crate::{
    erasure::MAX_BLOCK_SIZE,
    ids::{DatasetName, NodeId, PieceId, VersionId},
    net::wire::{self, DataAddr, DatasetSummary, ErrorCode, NodeInfo, Request, Response, Trust},
    store::{PieceStore, Put, StoreError},
};

impl State {
    pub(super) async fn handle(self: &Arc<Self>, from: PeerId, request: Request) -> Response {
        match self.handle_inner(from, request).await {
            Ok(r) => r,
            Err((code, message)) => Response::Error { code, message },
        }
    }

    async fn handle_inner(
        self: &Arc<Self>,
        from: PeerId,
        request: Request,
    ) -> Result<Response, (ErrorCode, String)> {
        let internal = |e: &dyn std::fmt::Display| (ErrorCode::Internal, e.to_string());
        match request {
            Request::Info => Ok(Response::Info(self.info())),
            Request::Peers => {
                let peers: Vec<(PeerId, Vec<Multiaddr>)> = lock(&self.known)
                    .iter()
                    .map(|(p, a)| (*p, a.clone()))
                    .collect();
                let asks = peers.into_iter().map(|(p, addrs)| {
                    let c = self.control.clone();
                    async move {
                        match tokio::time::timeout(INFO_TIMEOUT, c.request(p, addrs, Request::Info))
                            .await
                        {
                            Ok(Ok(Response::Info(i))) if i.peer == p.to_string() && i.is_sane() => {
                                Some(i)
                            }
                            _ => None,
                        }
                    }
                });
                let mut all: Vec<NodeInfo> =
                    futures::future::join_all(asks.take(wire::MAX_PEERS_LISTED - 1))
                        .await
                        .into_iter()
                        .flatten()
                        .collect();
                all.push(self.info());
                // Each is marked with how far this node trusts it; whatever it said of
                // itself is overwritten.
                // And with the address its connection comes from here, unless this
                // network is one site, whose subnets say nothing.
                let now = upkeep::now_unix();
                let ledger = lock(&self.ledger);
                let places = lock(&self.places);
                for i in &mut all {
                    let peer = i.peer.parse::<PeerId>().ok();
                    i.trust = trust_of(&ledger, peer.as_ref(), now);
                    i.seen = peer
                        .and_then(|p| places.get(&p))
                        .and_then(|p| p.seen)
                        .filter(|_| self.subnet_domains);
                }
                drop((ledger, places));
                Ok(Response::Peers(all))
            }
            Request::Standing { peers } => {
                if peers.len() > wire::MAX_PEERS_LISTED {
                    return Err((ErrorCode::BadRequest, "too many peers asked about".into()));
                }
                let now = upkeep::now_unix();
                let ledger = lock(&self.ledger);
                let trust = peers
                    .iter()
                    .map(|p| trust_of(&ledger, p.parse::<PeerId>().ok().as_ref(), now))
                    .collect();
                Ok(Response::Standing {
                    trust,
                    subnets: self.subnet_domains,
                })
            }
            Request::Hold {
                piece,
                len,
                from: src,
            } => self.hold(from, PieceId(piece), len, src).await,
            Request::Publish { manifest, holders } => {
                let new = self.publish(from, &manifest, holders.as_ref()).await?;
                Ok(Response::Published { new })
            }
            Request::Datasets => {
                let store = self.store.clone();
                let list = self
                    .blocking(move || dataset_summaries(&store))
                    .await
                    .map_err(|e| internal(&e))?;
                Ok(Response::Datasets(list))
            }
            Request::Versions => {
                let store = self.store.clone();
                let v = self
                    .blocking(move || -> Result<Vec<[u8; 32]>, StoreError> {
                        let mut out = Vec::new();
                        for (name, _) in store.datasets()? {
                            out.extend(store.versions(&name)?.into_iter().map(|v| v.0));
                            if out.len() >= wire::MAX_LIST {
                                out.truncate(wire::MAX_LIST);
                                break;
                            }
                        }
                        Ok(out)
                    })
                    .await
                    .map_err(|e| internal(&e))?;
                Ok(Response::Versions(v))
            }
            Request::Manifest { name, version } => {
                let store = self.store.clone();
                let name = match name {
                    Some(n) => Some(
                        n.parse::<DatasetName>()
                            .map_err(|e| (ErrorCode::BadRequest, e.to_string()))?,
                    ),
                    None => None,
                };
                let lookup = |name: Option<DatasetName>| {
                    let store = store.clone();
                    self.blocking(move || match (name, version) {
                        (Some(n), v) => store.resolve(&n, v.map(VersionId).as_ref()).map(Some),
                        (None, Some(v)) => store.manifest(&VersionId(v)),
                        (None, None) => Ok(None),
                    })
                };
                let mut m = lookup(name.clone()).await;
                // A version heard of but not kept yet (its placement still being checked
                // when its push returned) is checked again at once, and then read: one
                // asked for and not found, or one newer than the latest kept here.
                let missed = match &m {
                    Ok(None) | Err(StoreError::NotFound(_)) => true,
                    Ok(Some(kept)) => {
                        version.is_none()
                            && name.as_ref().is_some_and(|n| {
                                lock(&self.heard_versions).newer(n, kept.body().created_unix)
                            })
                    }
                    Err(_) => false,
                };
                if missed && self.keep_heard(name.as_ref(), version).await {
                    m = lookup(name).await;
                }
                match m {
                    Ok(Some(m)) => Ok(Response::Manifest(m.as_bytes().to_vec())),
                    Ok(None) | Err(StoreError::NotFound(_)) => {
                        Err((ErrorCode::NotFound, "no such dataset or version".into()))
                    }
                    Err(e) => Err(internal(&e)),
                }
            }
            Request::History { name } => {
                let name: DatasetName = name
                    .parse()
                    .map_err(|e: crate::ids::IdError| (ErrorCode::BadRequest, e.to_string()))?;
                let store = self.store.clone();
                let shown = name.to_string();
                let list = self
                    .blocking(move || -> Result<Vec<wire::VersionSummary>, StoreError> {
                        Ok(store
                            .version_records(&name, wire::MAX_DATASETS_LISTED)?
                            .into_iter()
                            .map(|v| wire::VersionSummary {
                                version: v.version.0,
                                created_unix: v.created_unix,
                                size: v.size,
                                files: u32::try_from(v.files).unwrap_or(u32::MAX),
                            })
                            .collect())
                    })
                    .await
                    .map_err(|e| internal(&e))?;
                if list.is_empty() {
                    return Err((ErrorCode::NotFound, format!("no dataset {shown}")));
                }
                Ok(Response::History(list))
            }
            Request::Locate { pieces } => {
                if pieces.len() > wire::MAX_LOCATE {
                    return Err((
                        ErrorCode::BadRequest,
                        format!("at most {} pieces per Locate", wire::MAX_LOCATE),
                    ));
                }
                let ids: Vec<PieceId> = pieces.into_iter().map(PieceId).collect();
                let named = vec![Vec::new(); ids.len()];
                Ok(Response::Located(self.locate(ids, named).await?))
            }
            Request::LocateStripes { publisher, stripes } => {
                self.locate_stripes(from, crate::ids::PublisherId(publisher), stripes)
                    .await
            }
            Request::Challenge { challenge } => self.answer_challenge(from, &challenge).await,
            Request::Ledger => Ok(Response::Ledger(self.ledger_entries())),
            Request::Place { records, publish } => self.place(from, records, publish).await,
            Request::Placements { keys } => self.placements(from, keys).await,
            Request::Holdings(bytes) => self.heard(from, &bytes),
            Request::Records(bytes) => self.records_from(from, &bytes).await,
        }
    }

    /// Every node this one is connected to or has records about, with its standing.
    pub(super) fn ledger_entries(&self) -> Vec<wire::LedgerEntry> {
        let mut known: Vec<NodeId> = lock(&self.known)
            .keys()
            .filter_map(|p| data_id_of(p).map(NodeId))
            .collect();
        let ledger = lock(&self.ledger);
        known.extend(ledger.nodes().map(|(n, _)| *n));
        known.sort_unstable();
        known.dedup();
        known
            .into_iter()
            .take(wire::MAX_LEDGER_LISTED)
            .filter_map(|n| {
                Some(wire::LedgerEntry {
                    peer: upkeep::peer_of_node(&n)?.to_string(),
                    reputation: ledger.reputation(&n),
                })
            })
            .collect()
    }

    /// Whether the ledger has caught `peer` forging: it is not named as a holder to
    /// readers, and no repair reads from it.
    pub(super) fn is_flagged(&self, peer: &PeerId) -> bool {
        data_id_of(peer).is_some_and(|id| lock(&self.ledger).flagged(&NodeId(id)))
    }

    async fn hold(
        self: &Arc<Self>,
        from: PeerId,
        id: PieceId,
        len: u32,
        src: DataAddr,
    ) -> Result<Response, (ErrorCode, String)> {
        // A node fetches only from the peer asking: no one can aim it at a third party.
        if data_id_of(&from) != Some(src.id) {
            return Err((
                ErrorCode::BadRequest,
                "a piece can only be offered from the requester's own data address".into(),
            ));
        }
        if len == 0 || len > MAX_BLOCK_SIZE {
            return Err((
                ErrorCode::BadRequest,
                format!("piece length {len} out of range"),
            ));
        }
        if self.store.has_piece(&id).unwrap_or(false) {
            return Ok(Response::Held { already: true });
        }
        if lock(&self.corrupt_here).lately(&id, tokio::time::Instant::now()) {
            return Err((
                ErrorCode::Corrupt,
                format!(
                    "piece {id} was found corrupt on this node's disk lately; place it elsewhere"
                ),
            ));
        }
        let stats = self.store.stats();
        if let Some(cap) = stats.capacity
            && stats
                .used
                .saturating_add(u64::from(len) + proofs::outboard_len(u64::from(len)))
                > cap
        {
            return Err((
                ErrorCode::NoCapacity,
                format!("{} of {cap} bytes used", stats.used),
            ));
        }
        let _permit = self
            .hold_permits
            .acquire()
            .await
            .map_err(|_| (ErrorCode::Busy, "shutting down".into()))?;
        let bytes = self
            .data
            .fetch_patiently(&src, id, len)
            .await
            .map_err(|e| (ErrorCode::FetchFailed, e.to_string()))?;
        let store = self.store.clone();
        let put = self.blocking(move || store.put_piece(id, &bytes)).await;
        match put {
            Ok(Put::Stored) => {
                self.received.fetch_add(u64::from(len), Ordering::Relaxed);
                lock(&self.fresh).push(id.0);
                debug!(piece = %id, %from, "piece stored");
                Ok(Response::Held { already: false })
            }
            Ok(Put::AlreadyHeld) => Ok(Response::Held { already: true }),
            Err(StoreError::CapacityExceeded { .. }) => {
                Err((ErrorCode::NoCapacity, "capacity exceeded".into()))
            }
            Err(StoreError::HashMismatch { .. }) => Err((
                ErrorCode::FetchFailed,
                "bytes did not match the piece id".into(),
            )),
            Err(StoreError::Busy(_)) => Err((ErrorCode::Busy, "piece is being written".into())),
            Err(e) => Err((ErrorCode::Internal, e.to_string())),
        }
    }
}

/// Summaries of the datasets in `store`, for listings: from the datasets' records alone,
/// so a listing costs the same however large the manifests are.
pub fn dataset_summaries(store: &PieceStore) -> Result<Vec<DatasetSummary>, StoreError> {
    Ok(store
        .datasets_up_to(wire::MAX_DATASETS_LISTED)?
        .into_iter()
        .map(|(name, rec)| DatasetSummary {
            name: name.to_string(),
            latest: rec.latest.to_string(),
            versions: u32::try_from(rec.versions).unwrap_or(u32::MAX),
            size: rec.size,
            files: u32::try_from(rec.files).unwrap_or(u32::MAX),
            license: rec
                .license
                .chars()
                .take(wire::MAX_SUMMARY_LICENSE)
                .collect(),
        })
        .collect())
}

/// How far this node's ledger trusts `peer` (a peer id that names no node is new).
fn trust_of(ledger: &crate::audit::Ledger, peer: Option<&PeerId>, now: u64) -> Trust {
    peer.and_then(data_id_of)
        .map_or(Trust::New, |id| ledger.trust(&NodeId(id), now))
}
