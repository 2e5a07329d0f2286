//! Placement records after repair: the repairer, one of the stripe's group, signs an
//! update naming the new holders and gives it to the group and the DHT; whoever takes
//! an update checks it against its current record ([`update::moves`]) and then asks
//! the nodes it moves pieces between.

use std::{collections::HashSet, sync::Arc, time::Duration};

use futures::StreamExt;
use libp2p::{PeerId, kad};
use serde_bytes::ByteBuf;
use tokio::sync::oneshot;
use tracing::{debug, info};

use super::{
    State, lock,
    placement_check::Refused,
    upkeep::{HeldStripe, peer_of_node},
};
use crate::{
    ids::{NodeId, PieceId},
    location::{Holder, PlacementKey, SignedPlacement, now_ms, update},
    net::{
        swarm::Command,
        wire::{Request, Response},
    },
    store::StoreError,
};

/// How long a node asked whether it holds a piece may take to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);
/// Most nodes asked to prove one update: a repair moves at most the stripe's parity.
const MAX_ASKS: usize = 64;
/// How long proving one update may take.
const PROOF_TIMEOUT: Duration = Duration::from_secs(10);
/// Group members sent an update at once.
const SEND_AT_ONCE: usize = 8;

impl State {
    /// The record this node goes by for `key`: the one it keeps as one of the group,
    /// else its DHT copy (both checked on their way in), else what a DHT lookup shows to
    /// follow from the publisher's record.
    pub(super) async fn current_record(
        self: &Arc<Self>,
        key: PlacementKey,
    ) -> Option<SignedPlacement> {
        if let Some(r) = self.kept_record(key).await {
            return Some(r);
        }
        match self.get_current(key.0).await {
            Some((r, update::Proof::Publisher)) => Some(r),
            _ => None,
        }
    }

    /// The record this node keeps for `key`, as one of the group or in its DHT store.
    async fn kept_record(&self, key: PlacementKey) -> Option<SignedPlacement> {
        match self.group_record(key).await {
            Some(r) => Some(r),
            None => self.dht_copy(key).await,
        }
    }

    /// The record this node keeps for `key` as one of the stripe's group.
    async fn group_record(&self, key: PlacementKey) -> Option<SignedPlacement> {
        let store = self.store.clone();
        let bytes = self.blocking(move || store.placement(&key)).await.ok()??;
        self.decoded(bytes).await
    }

    /// This node's DHT copy of the record under `key`.
    async fn dht_copy(&self, key: PlacementKey) -> Option<SignedPlacement> {
        let (reply, rx) = oneshot::channel();
        let cmd = Command::LocalRecord {
            key: kad::RecordKey::new(&key.0),
            reply,
        };
        self.control.send(cmd).await.ok()?;
        let bytes = rx.await.ok()??;
        self.decoded(bytes).await
    }

    /// `bytes` as a record, its signature checked off the async threads.
    async fn decoded(&self, bytes: Vec<u8>) -> Option<SignedPlacement> {
        self.blocking(move || Ok::<_, StoreError>(SignedPlacement::decode(&bytes).ok()))
            .await
            .ok()
            .flatten()
    }

    /// Whether `update`, signed by a node, may replace this node's current record of its
    /// stripe (`pieces`): [`update::moves`] allows it, each node it moves a piece to
    /// says it holds the piece, each it moves one from does not, and its signer says it
    /// holds its own. With no record to go by (a new holder given the update by its
    /// repairer), `lookup` takes the publisher's from the DHT, and failing that every
    /// holder the update names must say it holds its piece. A DHT node (`!lookup`)
    /// proves only against the record it stores. The asks are charged to `from`.
    pub(super) async fn prove_update(
        self: &Arc<Self>,
        from: PeerId,
        update: &SignedPlacement,
        pieces: &[PieceId],
        lookup: bool,
    ) -> Result<(), Refused> {
        let key = update.record().key();
        // The very record this node took as one of the group was shown then (a DHT
        // node that is also of the group gets it twice).
        let group = self.group_record(key).await;
        if group
            .as_ref()
            .is_some_and(|g| g.as_bytes() == update.as_bytes())
        {
            return Ok(());
        }
        let base = if lookup {
            match group {
                Some(g) => Some(g),
                None => self.current_record(key).await,
            }
        } else {
            // A DHT node updates its DHT copy, which the group's may have passed.
            match self.dht_copy(key).await {
                Some(d) => Some(d),
                None => Some(group.ok_or(Refused::NoBase)?),
            }
        };
        let now = now_ms();
        let u = update.record();
        let signer = NodeId(update.signer().0);
        let signer_at = u
            .holders
            .iter()
            .position(|h| h.as_ref().is_some_and(|h| h.node == signer))
            .ok_or(update::UpdateError::NotInGroup)?;
        // (node, piece index, whether it must hold it)
        let mut asks: Vec<(NodeId, usize, bool)> = vec![(signer, signer_at, true)];
        match base {
            Some(base) => {
                for m in update::moves(&base, update, now)? {
                    asks.push((m.to, m.index, true));
                    if let Some(from) = m.from {
                        asks.push((from, m.index, false));
                    }
                }
            }
            None => {
                if u.seq > now.saturating_add(update::MAX_AHEAD_MS) {
                    return Err(update::UpdateError::Future.into());
                }
                for (i, h) in u.holders.iter().enumerate() {
                    if let Some(h) = h.as_ref().filter(|h| h.node != signer) {
                        asks.push((h.node, i, true));
                    }
                }
            }
        }
        if asks.len() > MAX_ASKS {
            return Err(Refused::Unproven("it would take asking too many nodes"));
        }
        if !lock(&self.lookups).admit(from, asks.len() as f64) {
            return Err(Refused::OverAllowance);
        }
        let shown = futures::stream::iter(asks)
            .map(|(node, at, want)| {
                let s = self.clone();
                let piece = pieces.get(at).copied();
                async move {
                    let Some(piece) = piece else { return false };
                    // No answer from an old holder counts as gone; from a new one, as
                    // not holding.
                    s.says_it_holds(&node, piece).await.unwrap_or(false) == want
                }
            })
            .buffer_unordered(SEND_AT_ONCE)
            .all(|ok| async move { ok });
        match tokio::time::timeout(PROOF_TIMEOUT, shown).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(Refused::Unproven(
                "a new holder lacks its piece, or an old one still has it",
            )),
            Err(_) => Err(Refused::Unproven("its nodes did not answer in time")),
        }
    }

    /// What `node` says: whether it holds `piece`. `None` if it does not answer.
    async fn says_it_holds(&self, node: &NodeId, piece: PieceId) -> Option<bool> {
        if *node == self.me {
            let store = self.store.clone();
            return self.blocking(move || store.has_piece(&piece)).await.ok();
        }
        let peer = peer_of_node(node)?;
        let req = Request::Locate {
            pieces: vec![piece.0],
        };
        let me = peer.to_string();
        match tokio::time::timeout(ASK_TIMEOUT, self.control.request(peer, vec![], req)).await {
            Ok(Ok(Response::Located(l))) => {
                Some(l.first().is_some_and(|hs| hs.iter().any(|h| h.peer == me)))
            }
            _ => None,
        }
    }

    /// Which indices of `base` the repair's placements fill ([`update::assign`]): each
    /// holder the record names for a placed piece is asked whether it still has it,
    /// as whoever checks the update will ask.
    async fn assign_placements(
        self: &Arc<Self>,
        s: &HeldStripe,
        base: &SignedPlacement,
        placed: &[(usize, NodeId)],
    ) -> Vec<(usize, NodeId)> {
        let pieces: Vec<PieceId> = s.stripe.pieces.iter().map(|p| p.id).collect();
        let current: Vec<Option<NodeId>> = base
            .record()
            .holders
            .iter()
            .map(|h| h.as_ref().map(|h| h.node))
            .collect();
        let moved: Vec<PieceId> = placed
            .iter()
            .filter_map(|(i, _)| pieces.get(*i).copied())
            .collect();
        let asks: Vec<(usize, NodeId, PieceId)> = current
            .iter()
            .zip(&pieces)
            .enumerate()
            .filter_map(|(j, (h, p))| Some((j, (*h)?, *p)))
            .filter(|(_, _, p)| moved.contains(p))
            .collect();
        let held: HashSet<usize> = futures::stream::iter(asks)
            .map(|(j, node, piece)| async move {
                (self.says_it_holds(&node, piece).await == Some(true)).then_some(j)
            })
            .buffer_unordered(SEND_AT_ONCE)
            .filter_map(|x| async move { x })
            .collect()
            .await;
        update::assign(placed, &pieces, &current, |j| !held.contains(&j))
    }

    /// After a repair of `s` placed pieces (`placed`: index and new holder), signs an
    /// update of the stripe's record naming them, keeps it, and gives it to the rest of
    /// the group and to the DHT. A node the current record does not name cannot sign
    /// one that others take, and does not try.
    pub(super) async fn publish_repair(
        self: &Arc<Self>,
        s: &HeldStripe,
        placed: &[(usize, NodeId)],
    ) {
        if placed.is_empty() {
            return;
        }
        let key = s.record_key();
        let Some(base) = self.current_record(key).await else {
            debug!(stripe = %s.id, "no placement record to update after repair");
            return;
        };
        let named = |r: &SignedPlacement, n: &NodeId| {
            r.record().holders.iter().flatten().any(|h| h.node == *n)
        };
        if base.record().stripe != s.id || !named(&base, &self.me) {
            debug!(stripe = %s.id, "not named in the stripe's record: leaving its update to others");
            return;
        }
        let placed = self.assign_placements(s, &base, placed).await;
        if placed.is_empty() {
            debug!(stripe = %s.id, "the repair's placements move no piece of the record; no update");
            return;
        }
        let mut record = base.record().clone();
        for (i, node) in &placed {
            let addrs = peer_of_node(node)
                .and_then(|p| self.data_addr_of(&p))
                .map(|d| d.addrs)
                .unwrap_or_default();
            if let Some(h) = record.holders.get_mut(*i) {
                *h = Some(Holder { node: *node, addrs });
            }
        }
        record.seq = now_ms().max(base.record().seq.saturating_add(1));
        let update = record.sign_as_node(&self.signing);
        if update::moves(&base, &update, now_ms()).is_err() {
            debug!(stripe = %s.id, "the repair's update would not be taken; not sent");
            return;
        }
        let group: Vec<NodeId> = update
            .record()
            .holders
            .iter()
            .flatten()
            .map(|h| h.node)
            .filter(|n| *n != self.me)
            .collect();
        let bytes = update.as_bytes().to_vec();
        let kept: usize = futures::stream::iter(group)
            .map(|n| {
                let bytes = bytes.clone();
                async move {
                    let peer = peer_of_node(&n)?;
                    let req = Request::Place {
                        records: vec![ByteBuf::from(bytes)],
                        publish: false,
                    };
                    let asked = self.control.request(peer, vec![], req);
                    match tokio::time::timeout(PROOF_TIMEOUT + ASK_TIMEOUT, asked).await {
                        Ok(Ok(Response::Placed { kept })) => Some(kept as usize),
                        Ok(Ok(Response::Error { message, .. })) => {
                            debug!(node = %n.short(), "the repair's update refused: {message}");
                            None
                        }
                        _ => None,
                    }
                }
            })
            .buffer_unordered(SEND_AT_ONCE)
            .filter_map(|x| async move { x })
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .sum();
        // What no one else of the group takes (its moves were not borne out: the old
        // holder came back, say) is neither kept here nor published.
        if kept == 0 {
            debug!(stripe = %s.id, "no node of the group took the repair's update");
            return;
        }
        let store = self.store.clone();
        let mine = update.clone();
        self.blocking(move || store.put_placement(&mine)).await.ok();
        let pieces = s.stripe.pieces.iter().map(|p| p.id).collect();
        self.add_co_holders(vec![(update.record().clone(), pieces)]);
        self.put_record(key, bytes, false).await.ok();
        info!(stripe = %s.id, moved = placed.len(), kept, "placement record updated after repair");
    }
}
