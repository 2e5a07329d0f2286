//! The swarm task: the one loop that owns the libp2p [`Swarm`], turns its events into
//! work for bounded handler tasks and timers, and carries out the commands the rest of
//! the node sends it. Nothing slow runs here.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use futures::StreamExt;
use libp2p::{
    Multiaddr, PeerId, Swarm, gossipsub, identify, kad, mdns,
    multiaddr::Protocol,
    request_response::ResponseChannel,
    swarm::{ConnectionError, SwarmEvent},
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use std::sync::Mutex;

use super::{
    super::jittered,
    State, Work, data_id_of, ip_of,
    known::{count_connections, forget, keep_connected, know, redial},
    lock,
    lookups::{Lookup, MAX_FOUND, Queries, answer_due_lookups, answer_lookup, seq_of},
    upkeep,
};
use crate::{
    ids::{NodeId, PieceId},
    net::{
        swarm::{self, Behaviour, BehaviourEvent, Command, Pending, PutFailed},
        wire::{self, ErrorCode, Request, Response},
    },
    repair::Claim,
};

/// The swarm task's timers and peers.
pub(super) struct Settings {
    pub(super) announce_interval: Duration,
    pub(super) orphan_grace: Duration,
    pub(super) bootstrap: Vec<Multiaddr>,
}

/// Known peers below which a connected node walks the DHT again (see `run`).
const THIN_TABLE: usize = 8;

pub(super) async fn run(
    mut swarm: Swarm<Behaviour>,
    mut rx: mpsc::Receiver<Command>,
    state: Arc<State>,
    cancel: CancellationToken,
    settings: Settings,
) {
    let Settings {
        announce_interval,
        orphan_grace,
        bootstrap,
    } = settings;
    let mut pending = Pending::default();
    // A node that knows no peer keeps dialling its bootstrap peers, backing off from 1 s
    // to 30 s: they may start after it, or be restarting. One connected but knowing few
    // peers (its first Kademlia walks timed out, say) walks the DHT again on the same
    // schedule, rather than at Kademlia's next periodic bootstrap minutes later.
    let mut redial_every = Duration::from_secs(1);
    let mut next_redial = tokio::time::Instant::now() + redial_every;
    let mut flush = tokio::time::interval(Duration::from_millis(250));
    let mut full = tokio::time::interval(announce_interval);
    let mut reannounce: Option<tokio::time::Instant> = None;
    // Co-holders that identified themselves on a new connection, told what this node
    // holds shortly after: a co-holder takes holdings only from nodes it knows, and one
    // that restarted has forgotten what it heard.
    let mut greet: HashSet<PeerId> = HashSet::new();
    let mut greeted: HashSet<PeerId> = HashSet::new();
    let mut greet_at: Option<tokio::time::Instant> = None;
    let mut met: HashSet<PeerId> = HashSet::new();
    let mut dial_failures = super::dial_failures::DialFailures::default();
    let mut rounds = 0usize;
    let orphans: Arc<Mutex<HashMap<PieceId, tokio::time::Instant>>> = Arc::default();
    let mut republished = false;
    let mut queries = Queries::default();
    let upkeep = state.upkeep.clone();
    // The first audit round comes after a full interval, once holdings have been heard.
    let mut next_audit = tokio::time::Instant::now() + jittered(upkeep.audit_interval);
    let mut audit_round: u64 = 0;
    let mut scrub = tokio::time::interval_at(
        tokio::time::Instant::now() + upkeep.scrub_interval,
        upkeep.scrub_interval,
    );
    let workers = &state.workers;
    let s = state.clone();
    workers
        .spawn(Work::Resume, async move { s.resume_jobs().await })
        .ok();
    loop {
        let due =
            reannounce.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            () = cancel.cancelled() => break,
            Some(cmd) = rx.recv() => on_command(&mut swarm, &mut pending, &mut queries, &state, cmd),
            _ = flush.tick() => {
                answer_due_lookups(&mut swarm, &mut queries);
                // Offered records left waiting when no worker could be started for them.
                if lock(&state.offers).stranded() {
                    state.check_offers();
                }
                let fresh = std::mem::take(&mut *lock(&state.fresh));
                let dropped = state.due_untold();
                let joined = std::mem::take(&mut *lock(&state.joined));
                if !fresh.is_empty() || !dropped.is_empty() || !joined.is_empty() {
                    let s = state.clone();
                    let (tx, rx) = oneshot::channel();
                    let spawned = workers.spawn(Work::Fresh, async move {
                        let Ok((fresh, dropped, joined)) = rx.await else { return };
                        let fresh: Vec<[u8; 32]> = fresh;
                        s.announce(fresh.into_iter().map(PieceId).collect(), dropped).await;
                        s.announce_to_groups(joined).await;
                    });
                    if spawned.is_ok() {
                        tx.send((fresh, dropped, joined)).ok();
                    } else {
                        // Announcements are behind: these go with the next flush.
                        lock(&state.fresh).extend(fresh);
                        state.untold(dropped);
                        lock(&state.joined).extend(joined);
                    }
                }
            }
            _ = full.tick() => {
                reannounce = Some(tokio::time::Instant::now());
                // Holders announce everything every interval: three missed, and what they
                // said is stale.
                let stale = upkeep::now_unix().saturating_sub(3 * announce_interval.as_secs().max(1));
                lock(&state.holders).expire(stale);
                // Single-flight: a collection still running skips this round.
                let s = state.clone();
                let orphans = orphans.clone();
                workers.spawn(Work::Orphans, async move {
                    s.clone().collect_orphans(orphans, orphan_grace).await;
                    // Audit records are kept to a bound, oldest dropped first.
                    let store = s.store.clone();
                    s.blocking(move || store.prune_audit_records(crate::store::MAX_STORED_RECORDS)).await.ok();
                }).ok();
                // Heal missed gossip: compare versions with one connected peer per round.
                let peers: Vec<PeerId> = lock(&state.known).keys().copied().collect();
                if !peers.is_empty() {
                    let pick = peers[rounds % peers.len()];
                    rounds += 1;
                    workers.spawn(Work::CatchUp, state.clone().catch_up(pick)).ok();
                }
            }
            () = tokio::time::sleep_until(next_audit) => {
                next_audit = tokio::time::Instant::now() + jittered(upkeep.audit_interval);
                // One round at a time: a slow round delays the next, it never piles up.
                if !workers.busy(Work::Audit) {
                    // Rounds are numbered by time, so a restarted node never reuses one.
                    audit_round = audit_round.max(upkeep::now_unix().saturating_mul(1000)) + 1;
                    workers.spawn(Work::Audit, state.clone().audit_round(audit_round)).ok();
                }
            }
            () = tokio::time::sleep_until(next_redial), if !bootstrap.is_empty() => {
                if swarm.connected_peers().next().is_none() {
                    for addr in &bootstrap {
                        if swarm::peer_of(addr).is_some_and(|p| swarm.is_connected(&p)) {
                            continue;
                        }
                        if let Err(e) = swarm.dial(addr.clone()) {
                            debug!(%addr, "cannot dial bootstrap peer: {e}");
                        }
                    }
                    redial_every = (redial_every * 2).min(Duration::from_secs(30));
                } else if lock(&state.known).len() < THIN_TABLE {
                    swarm.behaviour_mut().kad.bootstrap().ok();
                    redial_every = (redial_every * 2).min(Duration::from_secs(30));
                } else {
                    redial_every = Duration::from_secs(1);
                }
                next_redial = tokio::time::Instant::now() + redial_every;
            }
            _ = scrub.tick() => {
                workers.spawn(Work::Scrub, state.clone().scrub_pass(upkeep.scrub_rate)).ok();
            }
            () = tokio::time::sleep_until(due), if reannounce.is_some() => {
                // One full announcement at a time. One asked for while another runs waits
                // for it rather than being dropped.
                let running = workers.busy(Work::Announce);
                reannounce = running.then(|| tokio::time::Instant::now() + Duration::from_millis(500));
                if !running {
                    let s = state.clone();
                    // The DHT's copies of this node's placement records live in memory:
                    // put them back once, when there is a peer to store them at.
                    let republish = !republished && !lock(&state.known).is_empty();
                    republished |= republish;
                    workers.spawn(Work::Announce, async move {
                        s.announce_all(None).await;
                        if republish {
                            s.republish_placements().await;
                        }
                    }).ok();
                }
            }
            () = tokio::time::sleep_until(greet_at.unwrap_or(due)), if greet_at.is_some() => {
                let s = state.clone();
                let peers = std::mem::take(&mut greet);
                let (tx, rx) = oneshot::channel();
                let spawned = workers.spawn(Work::Fresh, async move {
                    if let Ok(peers) = rx.await {
                        s.announce_all(Some(peers)).await;
                    }
                });
                greet_at = match spawned {
                    Ok(()) => {
                        tx.send(peers).ok();
                        None
                    }
                    Err(_) => {
                        greet = peers;
                        Some(tokio::time::Instant::now() + Duration::from_millis(500))
                    }
                };
            }
            Some(event) = swarm.next() => match event {
                SwarmEvent::Behaviour(BehaviourEvent::Control(e)) => {
                    if let Some((peer, request, channel)) = pending.on_event(e) {
                        on_request(&mut swarm, &state, peer, request, channel);
                    }
                }
                SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })) => {
                    let addrs: Vec<Multiaddr> = info
                        .listen_addrs
                        .iter()
                        .filter(|a| !a.iter().any(|p| matches!(p, Protocol::Ip4(ip) if ip.is_unspecified())))
                        .map(|a| a.clone().with_p2p(peer_id).unwrap_or_else(|a| a))
                        .collect();
                    for a in &addrs {
                        swarm.behaviour_mut().kad.add_address(&peer_id, a.clone());
                    }
                    if info.protocols.iter().any(|p| p.as_ref() == wire::CONTROL_PROTOCOL) {
                        know(&swarm, &state, peer_id, addrs);
                        if lock(&state.co_holders).contains(&peer_id) && greeted.insert(peer_id) {
                            greet.insert(peer_id);
                            greet_at.get_or_insert_with(|| tokio::time::Instant::now() + Duration::from_millis(500));
                        }
                        if !met.contains(&peer_id)
                            && workers.spawn(Work::CatchUp, state.clone().catch_up(peer_id)).is_ok()
                        {
                            // Refused when busy: the periodic catch-up comes to it.
                            met.insert(peer_id);
                        }
                    }
                }
                SwarmEvent::Behaviour(BehaviourEvent::Gossip(gossipsub::Event::Message { propagation_source, message_id, message })) => {
                    let verdict = on_gossip(&state, message);
                    swarm.behaviour_mut().gossip.report_message_validation_result(&message_id, &propagation_source, verdict);
                }
                SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(list))) => {
                    for (peer, addr) in list {
                        swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
                        if !swarm.is_connected(&peer) {
                            swarm.dial(addr).ok();
                        }
                    }
                }
                SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. } => {
                    dial_failures.clear(&peer_id);
                    let seen = swarm::ip_of(endpoint.get_remote_address());
                    let mut places = lock(&state.places);
                    let place = places.entry(peer_id).or_default();
                    place.seen = place.seen.or(seen);
                    drop(places);
                    count_connections(&swarm, &state);
                }
                SwarmEvent::ConnectionClosed { num_established: 1.., .. } => count_connections(&swarm, &state),
                // A closed connection says nothing of its peer, who stays known (it sat
                // idle, here or at the other end); a peer is forgotten when a dial finds
                // nobody listening, or when dials to it keep failing (`dial_failures`). A co-holder's connection is kept open, so when it closes otherwise
                // the co-holder is dialled at once: one that left is seen at once.
                SwarmEvent::ConnectionClosed { peer_id, num_established: 0, cause, .. } => {
                    count_connections(&swarm, &state);
                    greeted.remove(&peer_id);
                    let idle = matches!(cause, Some(ConnectionError::KeepAliveTimeout));
                    if !idle && swarm.behaviour().keep.keeps(&peer_id) {
                        // The co-holder left, or closed a connection it did not know to
                        // keep: one dial tells, and a refused one forgets it.
                        let addrs = lock(&state.known).get(&peer_id).cloned().unwrap_or_default();
                        redial(&mut swarm, peer_id, addrs);
                    } else if !lock(&state.known).contains_key(&peer_id) {
                        lock(&state.places).remove(&peer_id);
                    }
                }
                SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                    id,
                    result: kad::QueryResult::GetRecord(r),
                    step,
                    ..
                })) => {
                    if let Some(l) = queries.get.get_mut(&id)
                        && let Ok(kad::GetRecordOk::FoundRecord(p)) = r
                        && !l.found.contains(&p.record.value)
                    {
                        l.found.push(p.record.value);
                        l.first.get_or_insert_with(tokio::time::Instant::now);
                    }
                    let enough = queries.get.get(&id).is_some_and(|l| l.found.len() >= MAX_FOUND);
                    if enough || step.last {
                        answer_lookup(&mut swarm, &mut queries, id);
                    }
                }
                SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                    id,
                    result: kad::QueryResult::PutRecord(r),
                    ..
                })) => {
                    if let Some(tx) = queries.put.remove(&id) {
                        tx.send(r.map(|_| ()).map_err(|_| PutFailed::NoPeerInTime)).ok();
                    }
                }
                // Kademlia holds back what others ask it to store (`FilterBoth`): placement
                // records are checked first; provider records are not used and dropped.
                SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::InboundRequest {
                    request: kad::InboundRequest::PutRecord { record: Some(mut record), source, .. },
                })) => {
                    // What this node already stores needs no check: the same record (as
                    // Kademlia's hourly replication sends it) renews its expiry; an older
                    // one is dropped.
                    let store = swarm.behaviour_mut().kad.store_mut();
                    let known = kad::store::RecordStore::get(store, &record.key)
                        .map(|old| (old.value == record.value, old.expires.is_none(), seq_of(&old.value)));
                    match known {
                        // This node's own (it renews it itself).
                        Some((true, true, _)) => {}
                        Some((true, false, _)) => {
                            record.expires = Some(std::time::Instant::now() + super::placements::RECORD_TTL);
                            kad::store::RecordStore::put(store, record).ok();
                        }
                        Some((false, _, old)) if old > seq_of(&record.value) => {}
                        _ => state.offered_record(source, record),
                    }
                }
                SwarmEvent::NewListenAddr { address, .. } => {
                    let full = address.with(Protocol::P2p(state.peer));
                    let mut l = lock(&state.listen);
                    if !l.contains(&full) {
                        l.push(full);
                        // Addresses others can reach first: loopback last.
                        l.sort_by_key(|a| ip_of(a).is_loopback());
                    }
                }
                SwarmEvent::ExpiredListenAddr { address, .. } => {
                    let full = address.with(Protocol::P2p(state.peer));
                    lock(&state.listen).retain(|a| *a != full);
                }
                SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                    debug!(?peer_id, "dial failed: {error}");
                    // Only a node met here is forgotten: a dial to another one (a holder a
                    // publisher or a record names, at addresses they give) says nothing
                    // this node relies on, and must not hide it from readers.
                    if let Some(p) = peer_id
                        && !swarm.is_connected(&p)
                        && lock(&state.known).contains_key(&p)
                        && dial_failures.failed(p, &error)
                    {
                        forget(&state, &mut met, &p);
                    }
                }
                _ => {}
            },
        }
    }
    // Leave politely: close connections so peers see us go at once.
    let peers: Vec<PeerId> = swarm.connected_peers().copied().collect();
    for p in peers {
        swarm.disconnect_peer_id(p).ok();
    }
}

fn on_command(
    swarm: &mut Swarm<Behaviour>,
    pending: &mut Pending,
    queries: &mut Queries,
    state: &Arc<State>,
    cmd: Command,
) {
    match cmd {
        Command::Request {
            peer,
            addrs,
            request,
            reply,
        } => {
            let addrs = if addrs.is_empty() {
                lock(&state.known).get(&peer).cloned().unwrap_or_default()
            } else {
                addrs
            };
            pending.send(swarm, peer, addrs, request, reply);
        }
        Command::Respond { channel, response } => {
            swarm
                .behaviour_mut()
                .control
                .send_response(channel, response)
                .ok();
        }
        Command::Gossip { topic, data } => {
            if let Err(e) = swarm
                .behaviour_mut()
                .gossip
                .publish(gossipsub::IdentTopic::new(topic), data)
            {
                debug!(topic, "gossip not sent: {e}");
            }
        }
        Command::PutRecord { record, reply } => {
            let kad = &mut swarm.behaviour_mut().kad;
            // Never put an older record over a newer one (the same one is sent again).
            let stale = kad::store::RecordStore::get(kad.store_mut(), &record.key)
                .is_some_and(|old| seq_of(&old.value) > seq_of(&record.value));
            if stale {
                if let Some(tx) = reply {
                    tx.send(Ok(())).ok();
                }
                return;
            }
            match kad.put_record(record, kad::Quorum::One) {
                Ok(id) => {
                    if let Some(tx) = reply {
                        queries.put.insert(id, tx);
                    }
                }
                Err(e) => {
                    warn!("a placement record was not stored: {e}");
                    if let Some(tx) = reply {
                        tx.send(Err(PutFailed::StoreFull)).ok();
                    }
                }
            }
        }
        Command::GetRecord { key, reply } => {
            let kad = &mut swarm.behaviour_mut().kad;
            let now = std::time::Instant::now();
            match kad::store::RecordStore::get(kad.store_mut(), &key) {
                Some(r) if !r.is_expired(now) => {
                    reply.send(vec![r.value.clone()]).ok();
                }
                _ => {
                    let id = kad.get_record(key);
                    queries.get.insert(
                        id,
                        Lookup {
                            reply,
                            found: Vec::new(),
                            started: tokio::time::Instant::now(),
                            first: None,
                        },
                    );
                }
            }
        }
        Command::KeepConnected(peers) => keep_connected(swarm, state, peers),
        // Sampling the network is a pushing client's work, not a node's.
        Command::ClosestPeers { reply, .. } => {
            reply.send(Vec::new()).ok();
        }
        Command::RemoteIps { peers, reply } => {
            reply.send(vec![None; peers.len()]).ok();
        }
        #[cfg(test)]
        Command::Connections(reply) => {
            let mesh = swarm.behaviour().gossip.all_mesh_peers().copied().collect();
            reply
                .send((swarm.connected_peers().copied().collect(), mesh))
                .ok();
        }
        Command::LocalRecord { key, reply } => {
            let store = swarm.behaviour_mut().kad.store_mut();
            let now = std::time::Instant::now();
            let copy = kad::store::RecordStore::get(store, &key)
                .filter(|r| !r.is_expired(now))
                .map(|r| r.value.clone());
            reply.send(copy).ok();
        }
        Command::StoreRecord(mut record) => {
            let store = swarm.behaviour_mut().kad.store_mut();
            // The same record again renews its expiry.
            let newer = kad::store::RecordStore::get(store, &record.key)
                .is_none_or(|old| seq_of(&old.value) <= seq_of(&record.value));
            if newer {
                record.expires = Some(std::time::Instant::now() + super::placements::RECORD_TTL);
                if let Err(e) = kad::store::RecordStore::put(store, record) {
                    debug!("a checked placement record was not stored: {e}");
                }
            }
        }
    }
}

fn on_request(
    swarm: &mut Swarm<Behaviour>,
    state: &Arc<State>,
    peer: PeerId,
    request: Request,
    channel: ResponseChannel<Response>,
) {
    let work = if matches!(request, Request::Hold { .. }) {
        Work::Hold
    } else {
        Work::Handler
    };
    // The channel goes to the handler only once it is started; refused, it answers Busy.
    let (tx, rx) = oneshot::channel();
    let s = state.clone();
    let spawned = state.workers.spawn(work, async move {
        let Ok(channel) = rx.await else { return };
        let response = s.handle(peer, request).await;
        s.control
            .send(Command::Respond { channel, response })
            .await
            .ok();
    });
    match spawned {
        Ok(()) => {
            tx.send(channel).ok();
        }
        Err(_) => {
            let busy = Response::Error {
                code: ErrorCode::Busy,
                message: "too many requests in progress; retry shortly".into(),
            };
            swarm
                .behaviour_mut()
                .control
                .send_response(channel, busy)
                .ok();
        }
    }
}

/// Judges a gossip message and acts on it; cheap, so the verdict is reached here.
fn on_gossip(state: &Arc<State>, message: gossipsub::Message) -> gossipsub::MessageAcceptance {
    use gossipsub::MessageAcceptance::{Accept, Reject};
    let Some(source) = message.source else {
        return Reject;
    };
    if message.topic == gossipsub::IdentTopic::new(wire::MANIFEST_TOPIC).hash() {
        let Ok(version) = <[u8; 32]>::try_from(message.data.as_slice()) else {
            debug!(%source, "malformed manifest announcement");
            return Reject;
        };
        // Bounded: when busy, the periodic catch-up with peers fetches it instead.
        let started = state
            .catch_up_permits
            .clone()
            .try_acquire_owned()
            .ok()
            .and_then(|permit| {
                let fetch = state.clone().fetch_manifest(source, version, permit);
                state.workers.spawn(Work::Manifest, fetch).ok()
            });
        if started.is_none() {
            debug!(%source, "busy; the announced manifest will come with catch-up");
        }
        Accept
    } else if message.topic == gossipsub::IdentTopic::new(wire::REPAIRS_TOPIC).hash() {
        let Some(claimer) = data_id_of(&source).map(NodeId) else {
            return Reject;
        };
        let Some(c) = Claim::decode(&message.data, claimer) else {
            debug!(%source, "malformed repair claim");
            return Reject;
        };
        // Only a node that proved to this one that it holds a piece of the stripe may
        // claim its repair (a flagged or failing one may not); anyone else's claim holds
        // nothing back.
        state.take_claim(source, c)
    } else {
        Reject
    }
}
