//! Kademlia record lookups and stores the swarm task runs for the node: who waits for
//! each, and when a lookup answers with what it found.

use std::{collections::HashMap, time::Duration};

use libp2p::{Swarm, kad};
use tokio::sync::oneshot;

use crate::net::swarm::{Behaviour, PutFailed};

/// A record lookup in flight.
pub(super) struct Lookup {
    pub(super) reply: oneshot::Sender<Vec<Vec<u8>>>,
    /// Distinct values found so far.
    pub(super) found: Vec<Vec<u8>>,
    pub(super) started: tokio::time::Instant,
    /// When the first value came.
    pub(super) first: Option<tokio::time::Instant>,
}

/// How long a lookup waits for more values once it has one, and in all: a peer that
/// does not answer holds a Kademlia query for 10 s, and the asker waits no longer.
const MORE_VALUES_FOR: Duration = Duration::from_secs(1);
const LOOKUP_FOR: Duration = Duration::from_secs(8);

/// Answers lookup `id` with what it found, and ends its query.
pub(super) fn answer_lookup(swarm: &mut Swarm<Behaviour>, queries: &mut Queries, id: kad::QueryId) {
    if let Some(l) = queries.get.remove(&id) {
        l.reply.send(l.found).ok();
    }
    if let Some(mut q) = swarm.behaviour_mut().kad.query_mut(&id) {
        q.finish();
    }
}

/// Answers the lookups that have waited long enough, with what they found.
pub(super) fn answer_due_lookups(swarm: &mut Swarm<Behaviour>, queries: &mut Queries) {
    let now = tokio::time::Instant::now();
    let due: Vec<kad::QueryId> = queries
        .get
        .iter()
        .filter(|(_, l)| {
            l.first.is_some_and(|t| now >= t + MORE_VALUES_FOR) || now >= l.started + LOOKUP_FOR
        })
        .map(|(id, _)| *id)
        .collect();
    for id in due {
        answer_lookup(swarm, queries, id);
    }
}

/// Records a lookup collects before it answers.
pub(super) const MAX_FOUND: usize = 4;

/// Kademlia queries in flight, and who waits for each.
#[derive(Default)]
pub(super) struct Queries {
    /// Record lookups, and the values found so far.
    pub(super) get: HashMap<kad::QueryId, Lookup>,
    pub(super) put: HashMap<kad::QueryId, oneshot::Sender<Result<(), PutFailed>>>,
}

/// The `seq` of a placement record's bytes; `None` (older than any) if they are none.
pub(super) fn seq_of(bytes: &[u8]) -> Option<u64> {
    crate::location::SignedPlacement::peek(bytes)
        .ok()
        .map(|r| r.seq)
}
