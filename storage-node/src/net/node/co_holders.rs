//! The co-holders of what this node holds: the nodes its stripes' placement records name,
//! and the nodes it heard announce a piece of those stripes. Their connections stay open
//! (the swarm's [`keep_alive`](crate::net::keep_alive)), so that a co-holder that leaves
//! is seen at once; every other connection closes once idle. A node's connections thus
//! grow with what it holds, not with the network. They are also the only nodes it
//! announces its holdings to (`announce.rs`).

use std::collections::HashSet;

use libp2p::PeerId;
use tracing::debug;

use super::{State, announce::named, lock};
use crate::{ids::PieceId, location::PlacementRecord, net::swarm::Command};

/// Most kept records waiting for their groups to be told; beyond, the next full
/// announcement tells them.
const MAX_JOINED: usize = 1 << 16;

impl State {
    /// Has the swarm keep exactly `peers` connected, the co-holders worked out afresh
    /// from the store as it was when the set was `before`; those that records kept
    /// since then added stay.
    pub(super) fn keep_co_holders(&self, mut peers: HashSet<PeerId>, before: &HashSet<PeerId>) {
        let sent = {
            let mut co = lock(&self.co_holders);
            peers.extend(co.difference(before).copied());
            peers.remove(&self.peer);
            co.clone_from(&peers);
            // Sent under the lock, so the swarm task gets the sets in the order made.
            self.control.tx.try_send(Command::KeepConnected(peers))
        };
        if let Err(e) = sent {
            debug!("co-holders not passed on: {e}");
        }
    }

    /// Adds the holders each record of `kept` names, records this node just kept as one
    /// of their stripes' group (each with its stripe's pieces), and has those groups told
    /// what it holds of their stripes.
    pub(super) fn add_co_holders(&self, kept: Vec<(PlacementRecord, Vec<PieceId>)>) {
        if kept.is_empty() {
            return;
        }
        {
            let mut co = lock(&self.co_holders);
            let before = co.len();
            co.extend(kept.iter().flat_map(|(r, _)| named(r)));
            co.remove(&self.peer);
            // Sent under the lock, so the swarm task gets the sets in the order made.
            if co.len() != before
                && let Err(e) = self.control.tx.try_send(Command::KeepConnected(co.clone()))
            {
                debug!("co-holders not passed on: {e}");
            }
        }
        // Told at the next flush, with the pieces stored meanwhile.
        let mut joined = lock(&self.joined);
        let room = MAX_JOINED.saturating_sub(joined.len());
        joined.extend(kept.into_iter().take(room));
    }
}
