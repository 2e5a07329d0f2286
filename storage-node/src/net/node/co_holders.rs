//! The co-holders of what this node holds: the nodes its stripes' placement records name,
//! and the nodes it heard announce a piece of those stripes. Their connections stay open
//! (the swarm's [`keep_alive`](crate::net::keep_alive)), so that a co-holder that leaves
//! is seen at once; every other connection closes once idle. A node's connections thus
//! grow with what it holds, not with the network.

use std::{collections::HashSet, sync::Arc};

use libp2p::PeerId;

use super::{
    State, lock,
    upkeep::{held_stripes, peer_of_node},
};
use crate::{
    location::{PlacementRecord, SignedPlacement},
    net::swarm::Command,
    store::StoreError,
};

impl State {
    /// Works out the co-holders afresh and has the swarm keep exactly them connected.
    pub(super) async fn keep_co_holders(self: &Arc<Self>) {
        let store = self.store.clone();
        let Ok((stripes, records)) = self
            .blocking(move || Ok::<_, StoreError>((held_stripes(&store)?, store.placements()?)))
            .await
        else {
            return;
        };
        let mut peers: HashSet<PeerId> = records
            .iter()
            .filter_map(|bytes| SignedPlacement::peek(bytes).ok())
            .flat_map(|r| named(&r).collect::<Vec<_>>())
            .collect();
        {
            let holders = lock(&self.holders);
            for s in &stripes {
                for p in &s.stripe.pieces {
                    peers.extend(holders.holders(&p.id).map(|(peer, _)| *peer));
                }
            }
        }
        peers.remove(&self.peer);
        *lock(&self.co_holders) = peers.clone();
        self.control.send(Command::KeepConnected(peers)).await.ok();
    }

    /// Adds the holders `record` names, a record this node just kept as one of its
    /// stripe's group.
    pub(super) async fn add_co_holders(&self, records: &[PlacementRecord]) {
        let peers = {
            let mut co = lock(&self.co_holders);
            let before = co.len();
            co.extend(records.iter().flat_map(named));
            co.remove(&self.peer);
            if co.len() == before {
                return;
            }
            co.clone()
        };
        self.control.send(Command::KeepConnected(peers)).await.ok();
    }
}

/// The peers `record` names as holders.
fn named(record: &PlacementRecord) -> impl Iterator<Item = PeerId> + '_ {
    record
        .holders
        .iter()
        .flatten()
        .filter_map(|h| peer_of_node(&h.node))
}
