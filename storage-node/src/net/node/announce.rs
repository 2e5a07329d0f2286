//! Holdings announcements, to co-holders only. A node tells the co-holders of each
//! stripe it holds pieces of (the nodes the stripe's placement record names, and those
//! that announced a piece of it here) which of that stripe's pieces it holds or dropped,
//! and tells no one else: what a node hears, and its holder table, grow with what it
//! holds, not with the network. An announcement is a direct request
//! ([`Request::Holdings`]), whose connection says who sent it, so a node speaks only for
//! itself; the receiver takes it only from a node it knows, within the sender's
//! allowance.
//!
//! A node announces the pieces it has just stored (once their stripe is known here),
//! every piece it holds at each full announcement, the pieces of a stripe to its group
//! the moment it keeps the stripe's placement record (a push's pieces are stored before
//! anyone knows their group), and what it dropped. A dropped piece whose stripe is not
//! known here yet waits, for a while, until it is: the group of a piece found corrupt
//! before its manifest arrived must still hear of it, or a repairer may put the piece
//! back on this very node.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use futures::StreamExt;
use libp2p::PeerId;
use tracing::debug;

use super::{
    State, data_id_of, lock,
    upkeep::{self, HeldStripe, peer_of_node, stripes_of},
};
use crate::{
    audit::Trust,
    ids::{NodeId, PieceId},
    location::{PlacementKey, PlacementRecord, SignedPlacement},
    net::wire::{self, ErrorCode, Holdings, Request, Response},
    store::StoreError,
};

/// Most stripes whose group is looked up in the DHT for one announcement.
const MAX_GROUP_LOOKUPS: usize = 32;
/// Co-holders told at once.
const TELL_AT_ONCE: usize = 16;
/// Attempts at one batch a co-holder answers busy.
const TELL_ATTEMPTS: u32 = 4;
/// Longest wait for a co-holder to take an announcement.
const TELL_DEADLINE: Duration = Duration::from_secs(10);
/// Each peer's allowance of announced pieces, a second, and its burst: a node sharing
/// tens of thousands of stripes with this one announces them all each interval.
pub(super) const HEARD_RATE: f64 = 4096.0;
pub(super) const HEARD_BURST: f64 = 65_536.0;

/// Most dropped pieces waiting to be told; past it, audits find them gone.
const MAX_UNTOLD: usize = 1 << 16;
/// How long a dropped piece waits for its stripe to become known here; past it, its
/// group learns from the full announcements and its audits.
const UNTOLD_FOR: Duration = Duration::from_secs(300);
/// How often a dropped piece waiting for its stripe is looked up again.
const UNTOLD_RECHECK: Duration = Duration::from_secs(2);

/// What to tell each co-holder: pieces held, pieces dropped.
pub(super) type Tell = HashMap<PeerId, (Vec<[u8; 32]>, Vec<[u8; 32]>)>;

/// A dropped piece whose co-holders are still to be told, since when, and when to try.
#[derive(Debug, Clone, Copy)]
pub(super) struct Untold {
    pub(super) piece: PieceId,
    since: tokio::time::Instant,
    due: tokio::time::Instant,
}

impl Untold {
    pub(super) fn new(piece: PieceId) -> Self {
        let now = tokio::time::Instant::now();
        Self {
            piece,
            since: now,
            due: now,
        }
    }

    /// The same, looked up again after [`UNTOLD_RECHECK`].
    fn later(self) -> Self {
        Self {
            due: tokio::time::Instant::now() + UNTOLD_RECHECK,
            ..self
        }
    }
}

impl State {
    /// Tells the co-holders of the stripes of `held` and `dropped` that this node holds
    /// the first and no longer holds the second. Held pieces of no stripe known here are
    /// told no one (their group is told once the node keeps the stripe's record);
    /// dropped ones wait for their stripe ([`untold`](Self::untold)).
    pub(super) async fn announce(self: &Arc<Self>, held: Vec<PieceId>, dropped: Vec<Untold>) {
        let s = self.clone();
        let all: Vec<PieceId> = held
            .iter()
            .copied()
            .chain(dropped.iter().map(|u| u.piece))
            .collect();
        let Ok(stripes) = self.blocking(move || stripes_of(&s.store, &all)).await else {
            self.untold(dropped);
            return;
        };
        let known: HashSet<PieceId> = stripes
            .iter()
            .flat_map(|s| s.stripe.pieces.iter().map(|p| p.id))
            .collect();
        let (dropped, waiting): (Vec<Untold>, Vec<Untold>) =
            dropped.into_iter().partition(|u| known.contains(&u.piece));
        self.untold(waiting.into_iter().map(Untold::later).collect());
        let dropped = dropped.into_iter().map(|u| u.piece).collect();
        if let Some(tell) = self.to_tell(stripes, held, dropped).await {
            self.tell(tell).await;
        }
    }

    /// Tells the group of `piece`'s stripes, as the records kept here name them, that
    /// this node dropped it: no DHT lookup, so that it is quick. Whether any stripe of
    /// the piece is known here (if not, no one could be told).
    pub(super) async fn announce_dropped(self: &Arc<Self>, piece: PieceId) -> bool {
        let s = self.clone();
        let tell = self
            .blocking(move || {
                let stripes = stripes_of(&s.store, &[piece])?;
                let tell = s.tell_of(&stripes, &[], &[piece], &HashMap::new());
                Ok::<_, StoreError>((!stripes.is_empty()).then_some(tell))
            })
            .await;
        match tell {
            Ok(Some(tell)) => {
                self.tell(tell).await;
                true
            }
            _ => false,
        }
    }

    /// The queued dropped pieces due to be told now, taken off the queue.
    pub(super) fn due_untold(&self) -> Vec<Untold> {
        let now = tokio::time::Instant::now();
        let mut queue = lock(&self.dropped);
        let (due, later): (Vec<Untold>, Vec<Untold>) = std::mem::take(&mut *queue)
            .into_iter()
            .partition(|u| u.due <= now);
        *queue = later;
        due
    }

    /// Queues dropped pieces to be told with the next flush, within bounds: those that
    /// waited [`UNTOLD_FOR`] are given up, and past [`MAX_UNTOLD`] the rest.
    pub(super) fn untold(&self, pieces: Vec<Untold>) {
        let mut queue = lock(&self.dropped);
        let room = MAX_UNTOLD.saturating_sub(queue.len());
        queue.extend(
            pieces
                .into_iter()
                .filter(|u| u.since.elapsed() < UNTOLD_FOR)
                .take(room),
        );
    }

    /// The full announcement: tells the co-holders of every stripe this node holds a
    /// piece of which of its pieces it holds, and has the swarm keep exactly them
    /// connected. With `only`, tells those co-holders alone.
    pub(super) async fn announce_all(self: &Arc<Self>, only: Option<HashSet<PeerId>>) {
        let before = lock(&self.co_holders).clone();
        let s = self.clone();
        let found = self
            .blocking(move || {
                let held = s.store.piece_ids()?;
                let stripes = stripes_of(&s.store, &held)?;
                Ok::<_, StoreError>((held, stripes))
            })
            .await;
        let Ok((held, stripes)) = found else { return };
        let Some(mut tell) = self.to_tell(stripes, held, vec![]).await else {
            return;
        };
        match only {
            Some(only) => tell.retain(|p, _| only.contains(p)),
            None => self.keep_co_holders(tell.keys().copied().collect(), &before),
        }
        self.tell(tell).await;
    }

    /// [`tell_of`](Self::tell_of) `stripes`, with the groups of stripes this node keeps
    /// no record of (it holds a piece a repair placed, say, and no group has taken the
    /// update naming it yet) found in the DHT, a bounded number of them.
    async fn to_tell(
        self: &Arc<Self>,
        stripes: Vec<HeldStripe>,
        held: Vec<PieceId>,
        dropped: Vec<PieceId>,
    ) -> Option<Tell> {
        let s = self.clone();
        let keys: Vec<(usize, PlacementKey)> = stripes
            .iter()
            .map(HeldStripe::record_key)
            .enumerate()
            .collect();
        let unkept = self
            .blocking(move || {
                let mut unkept: Vec<(usize, PlacementKey)> = keys
                    .into_iter()
                    .filter(|(_, k)| matches!(s.store.placement(k), Ok(None)))
                    .collect();
                // A different few each time, so that every such stripe's group is found
                // in turn.
                let mut r = [0u8; 8];
                getrandom::fill(&mut r).ok();
                let start = (u64::from_le_bytes(r) % unkept.len().max(1) as u64) as usize;
                unkept.rotate_left(start);
                unkept.truncate(MAX_GROUP_LOOKUPS);
                Ok::<_, StoreError>(unkept)
            })
            .await
            .unwrap_or_default();
        let found: HashMap<usize, PlacementRecord> = futures::stream::iter(unkept)
            .map(|(i, key)| async move {
                let found = self.get_current(key.0).await?;
                Some((i, found.0.record().clone()))
            })
            .buffer_unordered(TELL_AT_ONCE)
            .filter_map(|x| async move { x })
            .collect()
            .await;
        let s = self.clone();
        self.blocking(move || Ok::<_, StoreError>(s.tell_of(&stripes, &held, &dropped, &found)))
            .await
            .ok()
    }

    /// Tells the group of each stripe of `joined` (records this node just kept, with
    /// their stripes' pieces) which of its pieces this node holds.
    pub(super) async fn announce_to_groups(
        self: &Arc<Self>,
        joined: Vec<(PlacementRecord, Vec<PieceId>)>,
    ) {
        let store = self.store.clone();
        let me = self.peer;
        let tell = self
            .blocking(move || {
                let mut tell = Tell::new();
                for (record, pieces) in &joined {
                    let mine: Vec<[u8; 32]> = pieces
                        .iter()
                        .filter(|p| store.has_piece(p).unwrap_or(false))
                        .map(|p| p.0)
                        .collect();
                    for peer in named(record).filter(|p| *p != me) {
                        tell.entry(peer).or_default().0.extend(&mine);
                    }
                }
                for (held, _) in tell.values_mut() {
                    held.sort_unstable();
                    held.dedup();
                }
                Ok::<_, StoreError>(tell)
            })
            .await;
        if let Ok(tell) = tell {
            self.tell(tell).await;
        }
    }

    /// For each co-holder of `stripes`, this node's pieces of the stripes it shares with
    /// it among `held`, and those among `dropped`. Reads the placement records this
    /// node keeps (`found` has those of the stripes at those indices it keeps none of);
    /// run it on the blocking pool.
    fn tell_of(
        &self,
        stripes: &[HeldStripe],
        held: &[PieceId],
        dropped: &[PieceId],
        found: &HashMap<usize, PlacementRecord>,
    ) -> Tell {
        let held: HashSet<&PieceId> = held.iter().collect();
        let dropped: HashSet<&PieceId> = dropped.iter().collect();
        let mut tell = Tell::new();
        for (i, s) in stripes.iter().enumerate() {
            let pick = |set: &HashSet<&PieceId>| -> Vec<[u8; 32]> {
                s.stripe
                    .pieces
                    .iter()
                    .filter(|p| set.contains(&p.id))
                    .map(|p| p.id.0)
                    .collect()
            };
            let (mine, gone) = (pick(&held), pick(&dropped));
            if mine.is_empty() && gone.is_empty() {
                continue;
            }
            for peer in self.co_holders_of(s, found.get(&i)) {
                let e = tell.entry(peer).or_default();
                e.0.extend(&mine);
                e.1.extend(&gone);
            }
        }
        for (held, dropped) in tell.values_mut() {
            for list in [held, dropped] {
                list.sort_unstable();
                list.dedup();
            }
        }
        tell
    }

    /// The co-holders of `s`: the nodes its placement record (kept here, else `found`)
    /// names, and those heard announcing a piece of it; never this node. Reads the
    /// store.
    pub(super) fn co_holders_of(
        &self,
        s: &HeldStripe,
        found: Option<&PlacementRecord>,
    ) -> HashSet<PeerId> {
        let kept = match self.store.placement(&s.record_key()) {
            Ok(Some(bytes)) => SignedPlacement::peek(&bytes).ok(),
            _ => None,
        };
        let mut peers: HashSet<PeerId> = kept
            .as_ref()
            .or(found)
            .map(|r| named(r).collect())
            .unwrap_or_default();
        let holders = lock(&self.holders);
        for p in &s.stripe.pieces {
            peers.extend(holders.holders(&p.id).map(|(peer, _)| *peer));
        }
        peers.remove(&self.peer);
        peers
    }

    /// Sends each co-holder its announcement, a few at a time, in batches.
    pub(super) async fn tell(&self, tell: Tell) {
        let me = self.data.addr();
        futures::stream::iter(tell)
            .for_each_concurrent(TELL_AT_ONCE, |(peer, (held, dropped))| {
                let me = me.clone();
                async move {
                    let batches = held
                        .chunks(wire::HOLDINGS_BATCH)
                        .map(|c| (c.to_vec(), vec![]))
                        .chain(
                            dropped
                                .chunks(wire::HOLDINGS_BATCH)
                                .map(|c| (vec![], c.to_vec())),
                        );
                    for (pieces, dropped) in batches {
                        let h = Holdings {
                            data: me.clone(),
                            pieces,
                            dropped,
                        };
                        let bytes = h.encode();
                        // A co-holder past this node's allowance says so: wait for it
                        // to refill, a few times.
                        let mut wait = Duration::from_millis(500);
                        for attempt in 1..=TELL_ATTEMPTS {
                            let req = Request::Holdings(bytes.clone());
                            let sent = tokio::time::timeout(
                                TELL_DEADLINE,
                                self.control.request(peer, vec![], req),
                            )
                            .await;
                            match sent {
                                Ok(Ok(Response::Heard { .. })) => break,
                                Ok(Ok(Response::Error {
                                    code: ErrorCode::Busy,
                                    ..
                                })) if attempt < TELL_ATTEMPTS => {
                                    tokio::time::sleep(wait).await;
                                    wait *= 2;
                                }
                                _ => {
                                    debug!(%peer, "a co-holder did not take this node's holdings");
                                    return;
                                }
                            }
                        }
                    }
                }
            })
            .await;
    }

    /// `Request::Holdings`: takes a known peer's announcement of its own pieces into the
    /// holder table, within its allowance.
    pub(super) fn heard(
        &self,
        from: PeerId,
        bytes: &[u8],
    ) -> Result<Response, (ErrorCode, String)> {
        // Announcements count only from a node this one met (connected to, and still
        // knows): each costs its sender a connection, so one connection cannot stand in
        // for thousands of identities.
        if !lock(&self.known).contains_key(&from) {
            return Err((
                ErrorCode::BadRequest,
                "holdings are taken only from nodes met here; identify first".into(),
            ));
        }
        let Some(h) = Holdings::decode(bytes) else {
            return Err((ErrorCode::BadRequest, "malformed holdings".into()));
        };
        if data_id_of(&from) != Some(h.data.id) {
            return Err((
                ErrorCode::BadRequest,
                "holdings for another node's data address".into(),
            ));
        }
        let cost = 1.0 + (h.pieces.len() + h.dropped.len()) as f64;
        if !lock(&self.heard).admit(from, cost) {
            return Err((
                ErrorCode::Busy,
                "over this peer's allowance of announced pieces; announce again later".into(),
            ));
        }
        // Lock order: holders, then the ledger.
        let now = upkeep::now_unix();
        let mut holders = lock(&self.holders);
        let ledger = lock(&self.ledger);
        let established = |p: &PeerId| {
            data_id_of(p).is_some_and(|id| ledger.trust(&NodeId(id), now) == Trust::Established)
        };
        let before = holders.claimed(&from);
        holders.add(from, h.data, &h.pieces, &h.dropped, now, &established);
        let taken = holders.claimed(&from).saturating_sub(before);
        Ok(Response::Heard {
            taken: u32::try_from(taken).unwrap_or(u32::MAX),
        })
    }
}

/// The peers `record` names as holders.
pub(super) fn named(record: &PlacementRecord) -> impl Iterator<Item = PeerId> + '_ {
    record
        .holders
        .iter()
        .flatten()
        .filter_map(|h| peer_of_node(&h.node))
}
