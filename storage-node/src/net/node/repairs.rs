//! Repair of stripes this node holds that fell below their threshold: which stripes need
//! it, a claim so one node repairs each stripe, the fetch of `k` pieces, rebuilding and
//! placing the lost ones, and resuming claimed jobs after a crash. A job's fresh look
//! (health, targets) is `repair_look.rs`.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, atomic::Ordering},
    time::Duration,
};

use libp2p::PeerId;
use tracing::{debug, info, warn};

use super::{
    State, Work, lock,
    repair_look::{Health, Look},
    upkeep::{HeldStripe, now_unix, peer_of_node},
};
use crate::{
    engine,
    ids::{NodeId, PieceId, StripeId},
    net::{
        client::fetch_pieces,
        swarm::Command,
        wire::{self, NodeRef, Request, Response},
    },
    repair::{self, Action, Claim, Decision, Event, Holds, Outcome, RepairJob},
    store::RepairJob as StoreJob,
};

/// How long a claimant waits for competing claims before it starts.
const CLAIM_SETTLE: Duration = Duration::from_secs(2);
/// How long a `Hold` of a rebuilt piece may take.
const HOLD_TIMEOUT: Duration = Duration::from_secs(60);

impl State {
    /// Looks at every held stripe and starts repairs where the threshold is crossed.
    pub(super) async fn repair_check(self: &Arc<Self>, stripes: Vec<HeldStripe>) {
        let store = self.store.clone();
        let Ok(mine) = self.blocking(move || store.piece_ids()).await else {
            return;
        };
        let mine: HashSet<PieceId> = mine.into_iter().collect();
        let now = now_unix();
        let mut under = 0usize;
        for s in stripes {
            let k = usize::from(s.params.k());
            let threshold = self
                .upkeep
                .repair_threshold
                .unwrap_or_else(|| repair::default_threshold(k, usize::from(s.params.m())))
                .clamp(k, s.params.n());
            let Health {
                healthy, holding, ..
            } = self.health(&s, &mine);
            match repair::decide(k, threshold, &healthy) {
                Decision::Healthy => {
                    let job = s.id;
                    let store = self.store.clone();
                    if lock(&self.journal).remove(&job) {
                        self.blocking(move || store.remove_repair_job(&job))
                            .await
                            .ok();
                    }
                }
                Decision::Unrecoverable { healthy } => {
                    warn!(stripe = %s.id, healthy, k, "stripe has fewer than k healthy pieces in reach");
                }
                Decision::Repair { .. } if self.free_targets(&s, &holding).is_empty() => {
                    // Every reachable node already holds a piece of it (or is caught
                    // or failing): as spread out as the network allows until another
                    // node joins.
                    debug!(stripe = %s.id, "below the repair threshold, but no node is free to take a piece");
                }
                Decision::Repair { .. } => {
                    under += 1;
                    let free = lock(&self.claims).may_claim(&s.id, &self.me, now);
                    if free && lock(&self.repairing).insert(s.id) {
                        let me = self.clone();
                        let id = s.id;
                        let repair = async move {
                            me.clone().repair(s).await;
                            lock(&me.repairing).remove(&id);
                        };
                        // At the cap, the stripe waits for a later round.
                        if self.workers.spawn(Work::Repair, repair).is_err() {
                            lock(&self.repairing).remove(&id);
                        }
                    }
                }
            }
        }
        if under > 0 {
            debug!(under, "stripes below their repair threshold");
        }
    }

    async fn announce_claim(&self, stripe: StripeId, done: bool) {
        let claim = Claim {
            stripe,
            claimer: self.me,
            expires_unix: now_unix() + self.upkeep.lease.as_secs(),
            done,
        };
        lock(&self.claims).observe(claim, now_unix());
        self.control
            .send(Command::Gossip {
                topic: wire::REPAIRS_TOPIC,
                data: claim.encode(),
            })
            .await
            .ok();
    }

    /// Repairs one stripe: drives its [`RepairJob`] (journal, claim, settle, plan,
    /// rebuild, renew and place each piece) by doing the I/O each step asks for.
    async fn repair(self: Arc<Self>, s: HeldStripe) {
        let t0 = tokio::time::Instant::now();
        let mut job = RepairJob::new(self.me, CLAIM_SETTLE);
        let mut event = Event::Start;
        let mut look = None;
        let mut rebuilt_at = None;
        // Where each piece went, for the stripe's placement record.
        let mut placed_on: Vec<(usize, NodeId)> = Vec::new();
        // Nodes whose copies the stripe does not need, as the look found them.
        let mut spare = HashMap::new();
        let outcome = loop {
            let claim = lock(&self.claims).holder(&s.id, now_unix());
            event = match job.step(t0.elapsed(), claim, event) {
                Action::Journal => {
                    let job = StoreJob {
                        stripe: s.id,
                        version: s.version,
                        file: s.file,
                        index: s.index,
                    };
                    let store = self.store.clone();
                    match self.blocking(move || store.put_repair_job(&job)).await {
                        Ok(()) => {
                            lock(&self.journal).insert(s.id);
                            Event::Done
                        }
                        Err(e) => Event::Failed(e.to_string()),
                    }
                }
                Action::Claim => {
                    self.announce_claim(s.id, false).await;
                    Event::Done
                }
                Action::WaitUntil(t) => {
                    tokio::time::sleep_until(t0 + t).await;
                    Event::Done
                }
                Action::Plan => match self.plan_repair(&s).await {
                    Ok((plan, l)) => {
                        spare = l.spare.clone();
                        look = Some(l);
                        Event::Planned(plan)
                    }
                    Err(e) => Event::Failed(e),
                },
                Action::Rebuild(want) => {
                    rebuilt_at = Some(tokio::time::Instant::now());
                    let Some(l) = look.take() else {
                        break Outcome::Failed("rebuild asked before a plan".into());
                    };
                    match self.rebuild(&s, l, &want).await {
                        Ok(pieces) => {
                            let mut staged = lock(&self.staged);
                            for (i, bytes) in pieces {
                                staged.insert(s.stripe.pieces[i].id, bytes::Bytes::from(bytes));
                            }
                            Event::Rebuilt
                        }
                        Err(e) => Event::Failed(e),
                    }
                }
                Action::Ask { index, target } => {
                    if job.shares_domain(&target) {
                        info!(stripe = %s.id, node = %target.short(), "no free node in a failure domain of its own; trying one in a shared domain");
                    }
                    // This node's view of who holds what may lag (a node hears only
                    // its co-holders, and only once they announce): the target itself
                    // says whether it holds a piece.
                    let piece = s.stripe.pieces[index].id;
                    let unique = s.stripe.pieces.iter().filter(|p| p.id == piece).count() == 1;
                    Event::Asked(match self.pieces_held_by(&target, &s).await {
                        Some(held) if held.is_empty() => Holds::Nothing,
                        // A spare's copies are held elsewhere too: losing it loses at
                        // most the piece placed on it, as with a free node. Only if it
                        // holds nothing but those copies (this node's view may lag).
                        Some(held)
                            if spare.get(&target).is_some_and(|copies: &HashSet<PieceId>| {
                                held.iter().all(|p| copies.contains(p))
                            }) && !held.contains(&piece) =>
                        {
                            info!(stripe = %s.id, node = %target.short(), "placing on a node whose copies the stripe holds elsewhere too");
                            Holds::Nothing
                        }
                        Some(held) if held == [piece] && unique => {
                            info!(stripe = %s.id, %piece, node = %target.short(), "the target already held the rebuilt piece");
                            placed_on.push((index, target));
                            Holds::ThisPiece
                        }
                        _ => Holds::Other,
                    })
                }
                Action::Hold { index, target } => {
                    let piece = s.stripe.pieces[index];
                    let held = self.hold_on(&target, piece.id, piece.len).await;
                    if held.is_some() {
                        placed_on.push((index, target));
                    }
                    match held {
                        Some(true) => {
                            // Between the look and the placement, another repairer whose
                            // claim had not reached this node yet put it there.
                            info!(stripe = %s.id, piece = %piece.id, node = %target.short(), "the target already held the rebuilt piece: another repairer placed it");
                        }
                        Some(false) => {
                            info!(stripe = %s.id, piece = %piece.id, node = %target.short(), "rebuilt piece placed");
                            self.stats.pieces_rebuilt.fetch_add(1, Ordering::Relaxed);
                            self.stats
                                .repair_written_bytes
                                .fetch_add(u64::from(piece.len), Ordering::Relaxed);
                        }
                        None => {}
                    }
                    Event::Held(held)
                }
                Action::Finish(outcome) => break outcome,
                Action::Leave => {
                    info!(stripe = %s.id, "another node has this repair; leaving it to them");
                    lock(&self.journal).remove(&s.id);
                    let store = self.store.clone();
                    self.blocking(move || store.remove_repair_job(&s.id))
                        .await
                        .ok();
                    self.unstage(&s);
                    return;
                }
            };
        };
        self.unstage(&s);
        if let Some(t) = rebuilt_at {
            let busy = u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.stats.repair_busy_ms.fetch_add(busy, Ordering::Relaxed);
        }
        match outcome {
            Outcome::Repaired { placed, .. } => {
                self.stats.repairs.fetch_add(1, Ordering::Relaxed);
                info!(stripe = %s.id, pieces = placed, took = ?t0.elapsed(), "stripe repaired");
            }
            Outcome::Healthy => debug!(stripe = %s.id, "nothing to repair on a fresh look"),
            // Release the claim: a repairer that cannot finish must not hold the stripe
            // back from those that might.
            Outcome::Partial { placed, of } => {
                warn!(stripe = %s.id, "repair stopped: placed {placed} of {of} rebuilt pieces; claim released");
            }
            Outcome::Failed(e) => warn!(stripe = %s.id, "repair stopped: {e}; claim released"),
        }
        self.finish_repair(s.id).await;
        self.publish_repair(&s, &placed_on).await;
    }

    /// Stops serving the rebuilt pieces of `s` from memory.
    fn unstage(&self, s: &HeldStripe) {
        let mut staged = lock(&self.staged);
        for p in &s.stripe.pieces {
            staged.remove(&p.id);
        }
    }

    /// Fetches `k` healthy pieces of `s` (those held here first) and rebuilds `want`.
    async fn rebuild(
        &self,
        s: &HeldStripe,
        look: Look,
        want: &[usize],
    ) -> Result<Vec<(usize, Vec<u8>)>, String> {
        let Look { mine, healthy, .. } = look;
        let k = usize::from(s.params.k());
        // Pieces held here come from the store; the rest from trusted holders.
        let mut have: Vec<Option<Vec<u8>>> = vec![None; s.stripe.pieces.len()];
        for (i, p) in s.stripe.pieces.iter().enumerate() {
            if mine.contains(&p.id) && healthy[i] {
                let store = self.store.clone();
                let id = p.id;
                have[i] = self.blocking(move || store.get_piece(&id)).await.ok();
            }
        }
        let local = have.iter().filter(|p| p.is_some()).count();
        if local < k {
            let (nodes, lists) = {
                let holders = lock(&self.holders);
                let connected = lock(&self.known);
                let ledger = lock(&self.ledger);
                let mut nodes: Vec<NodeRef> = Vec::new();
                let mut index: HashMap<PeerId, usize> = HashMap::new();
                let lists: Vec<Vec<usize>> = s
                    .stripe
                    .pieces
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        if have[i].is_some() || !healthy[i] {
                            return Vec::new();
                        }
                        holders
                            .holders(&p.id)
                            .filter(|(peer, _)| connected.contains_key(*peer))
                            .filter(|(peer, _)| {
                                super::data_id_of(peer)
                                    .is_some_and(|id| ledger.trusted(&NodeId(id), &p.id))
                            })
                            .map(|(peer, d)| {
                                *index.entry(*peer).or_insert_with(|| {
                                    nodes.push(NodeRef {
                                        peer: peer.to_string(),
                                        data: d.clone(),
                                    });
                                    nodes.len() - 1
                                })
                            })
                            .collect()
                    })
                    .collect();
                (nodes, lists)
            };
            let speeds = Arc::new(Mutex::new(vec![0.0; nodes.len()]));
            let counters = Arc::new(Mutex::new((0u64, 0u64)));
            let got = fetch_pieces(
                &self.data,
                &Arc::new(nodes),
                &speeds,
                k - local,
                &s.stripe,
                lists,
                &counters,
            )
            .await
            .map_err(|viable| format!("only {} of {k} pieces reachable", viable + local))?;
            for (i, b) in got {
                self.stats
                    .repair_fetched_bytes
                    .fetch_add(b.len() as u64, Ordering::Relaxed);
                have[i] = Some(b);
            }
        }
        let (params, stripe, want) = (s.params, s.stripe.clone(), want.to_vec());
        self.workers
            .blocking(move || engine::rebuild_pieces(params, &stripe, have, &want))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    /// Ends this node's repair of `stripe`, done or given up: the job leaves the journal
    /// and the claim is released.
    async fn finish_repair(&self, stripe: StripeId) {
        lock(&self.journal).remove(&stripe);
        let store = self.store.clone();
        self.blocking(move || store.remove_repair_job(&stripe))
            .await
            .ok();
        self.announce_claim(stripe, true).await;
    }

    /// Asks `target` to hold a staged piece. The placement becomes known to the stripe's
    /// group when the update naming the target is taken and the target announces its
    /// holdings to it; this node records it at once. Says whether the
    /// target now holds it, and if so whether it held it already: `None` when it refused
    /// or did not answer.
    async fn hold_on(&self, target: &NodeId, piece: PieceId, len: u32) -> Option<bool> {
        let peer = peer_of_node(target)?;
        let req = Request::Hold {
            piece: piece.0,
            len,
            from: self.data.addr(),
        };
        match tokio::time::timeout(HOLD_TIMEOUT, self.control.request(peer, vec![], req)).await {
            Ok(Ok(Response::Held { already })) => {
                let data = self.data_addr_of(&peer);
                // Lock order: holders, then the ledger.
                let now = now_unix();
                let mut holders = lock(&self.holders);
                let ledger = lock(&self.ledger);
                let established = |p: &PeerId| {
                    super::data_id_of(p).is_some_and(|id| {
                        ledger.trust(&NodeId(id), now) == wire::Trust::Established
                    })
                };
                if let Some(d) = data {
                    holders.add(peer, d, &[piece.0], &[], now, &established);
                }
                Some(already)
            }
            Ok(Ok(Response::Error { message, .. })) => {
                debug!(node = %target.short(), "refused the rebuilt piece: {message}");
                None
            }
            _ => None,
        }
    }

    /// Resumes repair jobs this node had claimed before it stopped: their claims are
    /// renewed and the next round's check re-examines them.
    pub(super) async fn resume_jobs(&self) {
        let store = self.store.clone();
        let Ok(jobs) = self.blocking(move || store.repair_jobs()).await else {
            return;
        };
        for job in jobs {
            info!(stripe = %job.stripe, "resuming a repair claimed before a restart");
            lock(&self.journal).insert(job.stripe);
            self.announce_claim(job.stripe, false).await;
        }
    }
}
