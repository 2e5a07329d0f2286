//! The nodes this one knows, and the connections it keeps: taking a peer in (a full
//! table never gives up a co-holder or a node with standing), forgetting one that left,
//! and dialling the co-holders it keeps connected.

use std::collections::HashSet;

use libp2p::{
    Multiaddr, PeerId, Swarm,
    swarm::dial_opts::{DialOpts, PeerCondition},
};
use tracing::debug;

use super::{State, data_id_of, lock, upkeep};
use crate::{
    ids::NodeId,
    net::{swarm::Behaviour, wire::Trust},
};

/// Forgets `peer`: it left, or cannot be reached.
pub(super) fn forget(state: &State, met: &mut HashSet<PeerId>, peer: &PeerId) {
    lock(&state.places).remove(peer);
    lock(&state.known).remove(peer);
    lock(&state.holders).forget(peer);
    met.remove(peer);
    let mut gone = lock(&state.gone);
    if gone.len() >= super::MAX_GONE
        && let Some(oldest) = gone.iter().min_by_key(|(_, t)| **t).map(|(p, _)| *p)
    {
        gone.remove(&oldest);
    }
    gone.insert(*peer, upkeep::now_unix());
}

/// Most nodes known at once ([`State::known`]).
const MAX_KNOWN: usize = 4096;

/// Takes `peer`, met as a node at `addrs`, into the known nodes. A full table forgets one
/// node it is not connected to; one whose every entry is connected takes no more.
pub(super) fn know(swarm: &Swarm<Behaviour>, state: &State, peer: PeerId, addrs: Vec<Multiaddr>) {
    lock(&state.gone).remove(&peer);
    let known = lock(&state.known);
    if known.contains_key(&peer) || known.len() < MAX_KNOWN {
        drop(known);
        lock(&state.known).insert(peer, addrs);
        return;
    }
    let idle: Vec<PeerId> = known
        .keys()
        .filter(|p| !swarm.is_connected(p))
        .copied()
        .collect();
    drop(known);
    // Fresh identities that connect once each must not push out the nodes that matter:
    // a co-holder, or a node with standing, is never the one forgotten.
    let now = upkeep::now_unix();
    let out = {
        let co = lock(&state.co_holders);
        let ledger = lock(&state.ledger);
        evictee(idle, |p| {
            co.contains(p)
                || data_id_of(p)
                    .is_some_and(|id| ledger.trust(&NodeId(id), now) == Trust::Established)
        })
    };
    let Some(out) = out else {
        return;
    };
    lock(&state.places).remove(&out);
    lock(&state.holders).forget(&out);
    let mut known = lock(&state.known);
    known.remove(&out);
    known.insert(peer, addrs);
}

/// Which of `idle` (known nodes not connected now) a full table of known nodes forgets
/// for a newcomer: the first that is not `protected`; none, and the newcomer is not
/// taken.
fn evictee(idle: Vec<PeerId>, protected: impl Fn(&PeerId) -> bool) -> Option<PeerId> {
    idle.into_iter().find(|p| !protected(p))
}

/// Keeps `peers` (the co-holders of what this node holds) connected: dials those that are
/// not, at the addresses this node knows for them or its routing table has.
pub(super) fn keep_connected(swarm: &mut Swarm<Behaviour>, state: &State, peers: HashSet<PeerId>) {
    let dial: Vec<(PeerId, Vec<Multiaddr>)> = {
        let known = lock(&state.known);
        peers
            .iter()
            .filter(|p| !swarm.is_connected(p))
            .map(|p| (*p, known.get(p).cloned().unwrap_or_default()))
            .collect()
    };
    swarm.behaviour_mut().keep.set(peers);
    for (peer, addrs) in dial {
        redial(swarm, peer, addrs);
    }
}

/// Dials `peer` (a co-holder) unless connected or being dialled, at `addrs` and where
/// the routing table has it.
pub(super) fn redial(swarm: &mut Swarm<Behaviour>, peer: PeerId, addrs: Vec<Multiaddr>) {
    let opts = DialOpts::peer_id(peer)
        .condition(PeerCondition::DisconnectedAndNotDialing)
        .addresses(addrs)
        .extend_addresses_through_behaviour()
        .build();
    if let Err(e) = swarm.dial(opts) {
        debug!(%peer, "cannot dial co-holder: {e}");
    }
}

/// Sets the open-connections gauge from the swarm's own count.
pub(super) fn count_connections(swarm: &Swarm<Behaviour>, state: &State) {
    let open = swarm.network_info().connection_counters().num_connections();
    state.metrics.connections.set(i64::from(open));
    let peers = swarm.network_info().num_peers();
    state.connected_peers.store(
        u32::try_from(peers).unwrap_or(u32::MAX),
        std::sync::atomic::Ordering::Relaxed,
    );
}

#[cfg(test)]
mod tests {
    use libp2p::PeerId;

    use super::evictee;

    /// A table of known nodes full of co-holders and established nodes takes no
    /// newcomer: strangers with fresh keys cannot push them out.
    #[test]
    fn a_full_table_forgets_only_nodes_without_standing() {
        let keep: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        let stranger = PeerId::random();
        let protected = |p: &PeerId| keep.contains(p);
        assert_eq!(evictee(keep.clone(), protected), None);
        let mut idle = keep.clone();
        idle.push(stranger);
        assert_eq!(evictee(idle, protected), Some(stranger));
    }
}
