//! Upkeep: the work a node does unasked to keep the network's promise. Audits of the
//! holders of stripes it holds, scrubbing its own pieces, and repair of stripes that fell
//! below their threshold. The decisions are the pure [`crate::audit`] and
//! [`crate::repair`] modules; `audits.rs` (audit rounds, records, scrub) and `repairs.rs`
//! (health, claims, rebuilding, placing) are the async shells that send, fetch and store.
//! Here: what both share, the stripes a node holds and how to reach a node.

use std::time::{SystemTime, UNIX_EPOCH};

use libp2p::PeerId;

use super::{State, lock};
use crate::{
    erasure::ErasureParams,
    ids::{NodeId, PieceId, PublisherId, StripeId, VersionId},
    location::PlacementKey,
    manifest::Stripe,
    net::wire::DataAddr,
    store::{PieceStore, StoreError},
};

/// Seconds since the epoch.
pub(super) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(super) use crate::net::peer_of_node;

/// A stripe that contains a piece this node holds, with where to find it again.
#[derive(Debug, Clone)]
pub(super) struct HeldStripe {
    pub(super) id: StripeId,
    pub(super) params: ErasureParams,
    pub(super) stripe: Stripe,
    pub(super) version: VersionId,
    pub(super) file: u32,
    pub(super) index: u32,
    /// The publisher of the manifest it was found in, under whose key its placement
    /// record lies.
    pub(super) publisher: PublisherId,
}

impl HeldStripe {
    /// The stripe and its pieces, as the ledger's scope takes them.
    pub(super) fn scope(&self) -> (StripeId, Vec<PieceId>) {
        (self.id, self.stripe.pieces.iter().map(|p| p.id).collect())
    }

    /// The key of its placement record.
    pub(super) fn record_key(&self) -> PlacementKey {
        PlacementKey::of(&self.publisher, &self.id)
    }
}

/// Every distinct stripe of a known manifest that contains a piece held here, found from
/// the pieces through the store's index.
pub(super) fn held_stripes(store: &PieceStore) -> Result<Vec<HeldStripe>, StoreError> {
    stripes_of(store, &store.piece_ids()?)
}

/// Every distinct stripe of a known manifest that contains one of `pieces`.
pub(super) fn stripes_of(
    store: &PieceStore,
    pieces: &[PieceId],
) -> Result<Vec<HeldStripe>, StoreError> {
    Ok(store
        .stripes_containing(pieces)?
        .into_iter()
        .map(|f| HeldStripe {
            id: f.at.stripe,
            params: f.params,
            stripe: f.stripe,
            version: f.at.version,
            file: f.at.file,
            index: f.at.index,
            publisher: f.publisher,
        })
        .collect())
}

impl State {
    /// Where `peer`'s data plane listens: as it announced, else beside the control-plane
    /// addresses it identified with (a repair target need not be a co-holder yet).
    pub(super) fn data_addr_of(&self, peer: &PeerId) -> Option<DataAddr> {
        if let Some((d, _)) = lock(&self.holders).by_peer.get(peer) {
            return Some(d.clone());
        }
        let id = super::data_id_of(peer)?;
        let addrs = crate::net::data_addrs(lock(&self.known).get(peer)?);
        Some(DataAddr { id, addrs })
    }

    /// The data-plane address of `node`, if it is connected and announced one.
    pub(super) fn data_of(&self, node: &NodeId) -> Option<(PeerId, DataAddr)> {
        let peer = peer_of_node(node)?;
        if !lock(&self.known).contains_key(&peer) {
            return None;
        }
        let d = lock(&self.holders)
            .by_peer
            .get(&peer)
            .map(|(d, _)| d.clone())?;
        Some((peer, d))
    }
}
