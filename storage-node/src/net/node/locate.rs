//! Answers to `Locate` and `LocateStripes`: who holds each piece, as far as this node
//! knows. A stripe's placement record (when the request names stripes) gives the holder
//! of each piece first; holders heard announcing a piece follow (only nodes this
//! one knows: see `State::known`). No holder caught forging is named.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use libp2p::{Multiaddr, PeerId};

use super::{State, data_id_of, lock, upkeep};
use crate::{
    ids::{NodeId, PieceId, PublisherId, StripeId},
    location::{PlacementKey, SignedPlacement},
    net::{
        peer_of_node,
        wire::{self, DataAddr, ErrorCode, NodeRef, Response, Trust},
    },
    store::StoreError,
};

impl State {
    /// `LocateStripes`: the holders of every piece of `stripes` (each given by its piece
    /// ids) of `publisher`'s versions, each stripe's placement record first.
    /// A publisher with no manifest here has no records looked up.
    pub(super) async fn locate_stripes(
        self: &Arc<Self>,
        from: PeerId,
        publisher: PublisherId,
        stripes: Vec<Vec<[u8; 32]>>,
    ) -> Result<Response, (ErrorCode, String)> {
        let pieces: usize = stripes.iter().map(Vec::len).sum();
        if pieces > wire::MAX_LOCATE || stripes.len() > wire::MAX_PLACE {
            return Err((
                ErrorCode::BadRequest,
                format!(
                    "at most {} pieces in {} stripes per LocateStripes",
                    wire::MAX_LOCATE,
                    wire::MAX_PLACE
                ),
            ));
        }
        let ids: Vec<Vec<PieceId>> = stripes
            .into_iter()
            .map(|s| s.into_iter().map(PieceId).collect())
            .collect();
        let keys: Vec<[u8; 32]> = ids
            .iter()
            .map(|s| PlacementKey::of(&publisher, &StripeId::of_pieces(s)).0)
            .collect();
        let store = self.store.clone();
        let known = self
            .blocking(move || store.publisher_usage(&publisher))
            .await
            .is_ok_and(|(versions, _)| versions > 0);
        let found = if known {
            let Response::Placements(found) = self.placements(from, keys).await? else {
                return Err((ErrorCode::Internal, "placements answered otherwise".into()));
            };
            found
        } else {
            vec![None; keys.len()]
        };
        // Signatures are checked off the async threads.
        let stripes = ids.clone();
        let named: Vec<Vec<NodeRef>> = self
            .blocking(move || -> Result<_, StoreError> {
                let mut named = Vec::with_capacity(pieces);
                for (stripe, bytes) in stripes.iter().zip(found) {
                    let record = bytes.and_then(|b| {
                        let r = SignedPlacement::decode(&b).ok()?;
                        r.fits(&publisher, &StripeId::of_pieces(stripe), stripe.len())
                            .ok()?;
                        Some(r)
                    });
                    for i in 0..stripe.len() {
                        let holder = record
                            .as_ref()
                            .and_then(|r| r.record().holders.get(i)?.as_ref())
                            .and_then(|h| {
                                Some(NodeRef {
                                    peer: peer_of_node(&h.node)?.to_string(),
                                    data: DataAddr {
                                        id: h.node.0,
                                        addrs: h.addrs.clone(),
                                    },
                                })
                            });
                        named.push(holder.into_iter().collect());
                    }
                }
                Ok(named)
            })
            .await
            .map_err(|e| (ErrorCode::Internal, e.to_string()))?;
        let ids: Vec<PieceId> = ids.into_iter().flatten().collect();
        Ok(Response::Located(self.locate(ids, named).await?))
    }

    /// The holders of each of `ids`: this node, then `named` (a placement record's
    /// holder), then announcers with standing, then the others.
    pub(super) async fn locate(
        self: &Arc<Self>,
        ids: Vec<PieceId>,
        named: Vec<Vec<NodeRef>>,
    ) -> Result<Vec<Vec<NodeRef>>, (ErrorCode, String)> {
        let store = self.store.clone();
        let asked = ids.clone();
        let mine: Vec<bool> = self
            .blocking(move || {
                Ok::<_, StoreError>(
                    asked
                        .iter()
                        .map(|p| store.has_piece(p).unwrap_or(false))
                        .collect(),
                )
            })
            .await
            .map_err(|e| (ErrorCode::Internal, e.to_string()))?;
        let connected: HashMap<PeerId, Vec<Multiaddr>> = lock(&self.known)
            .iter()
            .filter(|(p, _)| !self.is_flagged(p))
            .map(|(p, a)| (*p, a.clone()))
            .collect();
        // Seen leaving a while ago only: a node that came back is met again, and one
        // whose dial failed once for another reason is named again after that.
        let since = upkeep::now_unix().saturating_sub(super::GONE_FOR.as_secs());
        let gone: HashSet<PeerId> = lock(&self.gone)
            .iter()
            .filter(|(_, at)| **at >= since)
            .map(|(p, _)| *p)
            .collect();
        // Standing once per connected peer, before the holder table is locked.
        let now = upkeep::now_unix();
        let established: HashSet<PeerId> = {
            let ledger = lock(&self.ledger);
            connected
                .keys()
                .filter(|p| {
                    data_id_of(p)
                        .is_some_and(|id| ledger.trust(&NodeId(id), now) == Trust::Established)
                })
                .copied()
                .collect()
        };
        let standing = |p: &PeerId| established.contains(p);
        let out: Vec<Vec<NodeRef>> = {
            let holders = lock(&self.holders);
            ids.iter()
                .zip(mine)
                .zip(named)
                .map(|((id, mine), named)| {
                    let mut v: Vec<NodeRef> = Vec::new();
                    if mine {
                        v.extend(self.node_ref(&self.peer));
                    }
                    // Filter first, then cut: announcers that are gone or
                    // flagged must not crowd the real holders out, and those
                    // with standing come before those without.
                    let mut found: Vec<(&PeerId, &DataAddr)> = holders
                        .holders(id)
                        .filter(|(p, _)| connected.contains_key(*p))
                        .collect();
                    // The placement record's holder next, unless caught forging or
                    // seen leaving: it may not have announced the piece yet, nor be
                    // connected here (a node keeps only its co-holders connected). Where it announced the
                    // piece, its address as announced, which is newer than the record's.
                    for mut r in named {
                        let Ok(peer) = r.peer.parse::<PeerId>() else {
                            continue;
                        };
                        if self.is_flagged(&peer)
                            || gone.contains(&peer)
                            || v.iter().any(|x| x.peer == r.peer)
                        {
                            continue;
                        }
                        if let Some((_, d)) = found.iter().find(|(p, _)| **p == peer) {
                            r.data = (*d).clone();
                        }
                        v.push(r);
                    }
                    found.sort_by_key(|(p, _)| !standing(p));
                    for (p, d) in found.into_iter().take(wire::MAX_HOLDERS_LISTED) {
                        let peer = p.to_string();
                        if !v.iter().any(|x| x.peer == peer) {
                            v.push(NodeRef {
                                peer,
                                data: d.clone(),
                            });
                        }
                    }
                    v
                })
                .collect()
        };
        Ok(out)
    }
}
