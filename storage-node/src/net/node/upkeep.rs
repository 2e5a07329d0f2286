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
    ids::{NodeId, PieceId, StripeId, VersionId},
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
}

impl HeldStripe {
    /// The stripe and its pieces, as the ledger's scope takes them.
    pub(super) fn scope(&self) -> (StripeId, Vec<PieceId>) {
        (self.id, self.stripe.pieces.iter().map(|p| p.id).collect())
    }
}

/// Every distinct stripe of a known manifest that contains a piece held here, found from
/// the pieces through the store's index.
pub(super) fn held_stripes(store: &PieceStore) -> Result<Vec<HeldStripe>, StoreError> {
    let mine = store.piece_ids()?;
    Ok(store
        .stripes_containing(&mine)?
        .into_iter()
        .map(|(r, params, stripe)| HeldStripe {
            id: r.stripe,
            params,
            stripe,
            version: r.version,
            file: r.file,
            index: r.index,
        })
        .collect())
}

impl State {
    /// The key of `s`'s placement record (its publisher's, as the manifest kept here
    /// says), if the manifest is here.
    pub(super) async fn record_key(&self, s: &HeldStripe) -> Option<PlacementKey> {
        let store = self.store.clone();
        let version = s.version;
        let publisher = self
            .blocking(move || Ok::<_, StoreError>(store.manifest(&version)?.map(|m| m.publisher())))
            .await
            .ok()??;
        Some(PlacementKey::of(&publisher, &s.id))
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
