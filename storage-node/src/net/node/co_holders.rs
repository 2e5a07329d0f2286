//! The co-holders of what this node holds: the nodes its stripes' placement records name,
//! and the nodes it heard announce a piece of those stripes. Their connections stay open
//! (the swarm's [`keep_alive`](crate::net::keep_alive)), so that a co-holder that leaves
//! is seen at once; every other connection closes once idle. A node's connections thus
//! grow with what it holds, not with the network.

use std::{collections::HashSet, sync::Arc};

use libp2p::PeerId;
use tracing::debug;

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
        // What records kept meanwhile add is kept too (the store was read before them).
        let before = lock(&self.co_holders).clone();
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
        let peers = {
            let mut co = lock(&self.co_holders);
            peers.extend(co.difference(&before).copied());
            peers.remove(&self.peer);
            co.clone_from(&peers);
            // Sent under the lock, so the swarm task gets the sets in the order made.
            self.control
                .tx
                .try_send(Command::KeepConnected(peers.clone()))
        };
        if let Err(e) = peers {
            debug!("co-holders not passed on: {e}");
        }
    }

    /// Adds the holders `record` names, a record this node just kept as one of its
    /// stripe's group.
    pub(super) async fn add_co_holders(&self, records: &[PlacementRecord]) {
        let sent = {
            let mut co = lock(&self.co_holders);
            let before = co.len();
            co.extend(records.iter().flat_map(named));
            co.remove(&self.peer);
            if co.len() == before {
                return;
            }
            self.control.tx.try_send(Command::KeepConnected(co.clone()))
        };
        if let Err(e) = sent {
            debug!("co-holders not passed on: {e}");
        }
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
