//! Repair of stripes this node holds that fell below their threshold: health from the
//! holder table and the ledger, a claim so one node repairs each stripe, the fetch of `k`
//! pieces, rebuilding and placing the lost ones, and resuming claimed jobs after a crash.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, atomic::Ordering},
    time::Duration,
};

use libp2p::PeerId;
use tracing::{debug, info, warn};

use super::{
    State, Work,
    audits::AUDIT_DEADLINE,
    lock,
    upkeep::{HeldStripe, now_unix, peer_of_node},
};
use crate::{
    engine,
    ids::{NodeId, PieceId, StripeId},
    net::{
        client::fetch_pieces,
        placement,
        swarm::Command,
        wire::{self, NodeRef, Request, Response},
    },
    repair::{self, Claim, Decision},
    store::RepairJob,
};

/// How long a claimant waits for competing claims before it starts.
const CLAIM_SETTLE: Duration = Duration::from_secs(2);
/// How long a `Hold` of a rebuilt piece may take.
const HOLD_TIMEOUT: Duration = Duration::from_secs(60);

impl State {
    /// Whether each piece of `s` is healthy: held here, or held by a connected node whose
    /// copy the ledger trusts, with a node of its own. Pieces with equal bytes share an id
    /// and so their holders; a holder counts for one of them only
    /// ([`placement::matching`]), so such pieces are spread like any others.
    fn health(&self, s: &HeldStripe, mine: &HashSet<PieceId>) -> (Vec<bool>, Vec<NodeId>) {
        let holders = lock(&self.holders);
        let connected = lock(&self.connected);
        let ledger = lock(&self.ledger);
        let mut holding = vec![self.me];
        let good: Vec<Vec<NodeId>> = s
            .stripe
            .pieces
            .iter()
            .map(|p| {
                let mut v = Vec::new();
                if mine.contains(&p.id) {
                    v.push(self.me);
                }
                for (peer, _) in holders.holders(&p.id) {
                    if let Some(id) = super::data_id_of(peer).map(NodeId) {
                        holding.push(id);
                        if connected.contains_key(peer) && ledger.trusted(&id, &p.id) {
                            v.push(id);
                        }
                    }
                }
                v
            })
            .collect();
        let healthy = placement::matching(&good)
            .iter()
            .map(Option::is_some)
            .collect();
        (healthy, holding)
    }

    /// Nodes a rebuilt piece of a stripe could go to: connected, neither flagged nor
    /// failing, and holding no piece of the stripe (`holding`); those sharing no failure
    /// domain with its holders first, then established nodes first, each group in the
    /// stripe's own order.
    fn free_targets(&self, s: &HeldStripe, holding: &[NodeId]) -> Vec<NodeId> {
        let now = now_unix();
        let (candidates, established): (Vec<NodeId>, HashSet<NodeId>) = {
            let connected = lock(&self.connected);
            let ledger = lock(&self.ledger);
            let trusted: Vec<(NodeId, wire::Trust)> = connected
                .keys()
                .filter_map(|p| super::data_id_of(p).map(NodeId))
                .map(|id| (id, ledger.trust(&id, now)))
                .filter(|(_, t)| *t != wire::Trust::Shunned)
                .collect();
            (
                trusted.iter().map(|(id, _)| *id).collect(),
                trusted
                    .iter()
                    .filter(|(_, t)| *t == wire::Trust::Established)
                    .map(|(id, _)| *id)
                    .collect(),
            )
        };
        let mut out = repair::targets(&s.id, &candidates, holding);
        // Nodes in failure domains of their own first: a rebuilt piece goes to a shared
        // domain only when no other node is free (redundancy first), never not at all.
        out.sort_by_cached_key(|id| (self.shares_domain(id, holding), !established.contains(id)));
        out
    }

    /// Whether `target` shares a failure domain (operator, /24, /48) with any node in
    /// `holding`, as far as this node knows their domains.
    fn shares_domain(&self, target: &NodeId, holding: &[NodeId]) -> bool {
        let Some(t) = peer_of_node(target).map(|p| self.domains_of(&p)) else {
            return false;
        };
        if t.is_empty() {
            return false;
        }
        holding
            .iter()
            .filter(|h| *h != target)
            .filter_map(peer_of_node)
            .any(|h| self.domains_of(&h).iter().any(|d| t.contains(d)))
    }

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
            let (healthy, holding) = self.health(&s, &mine);
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
                            if let Err(e) = me.clone().repair(s).await {
                                // Release the claim: a repairer that cannot finish must
                                // not hold the stripe back from those that might.
                                warn!(stripe = %id, "repair stopped: {e}; claim released");
                                me.finish_repair(id).await;
                            }
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

    /// Repairs one stripe: claim it, wait for competing claims, fetch `k` healthy pieces,
    /// rebuild the others and place each on a node holding no piece of the stripe.
    async fn repair(self: Arc<Self>, s: HeldStripe) -> Result<(), String> {
        let job = RepairJob {
            stripe: s.id,
            version: s.version,
            file: s.file,
            index: s.index,
        };
        let store = self.store.clone();
        self.blocking(move || store.put_repair_job(&job))
            .await
            .map_err(|e| e.to_string())?;
        lock(&self.journal).insert(s.id);
        self.announce_claim(s.id, false).await;
        tokio::time::sleep(CLAIM_SETTLE).await;
        if lock(&self.claims).holder(&s.id, now_unix()) != Some(self.me) {
            debug!(stripe = %s.id, "another node claimed this repair first");
            lock(&self.journal).remove(&s.id);
            let store = self.store.clone();
            self.blocking(move || store.remove_repair_job(&s.id))
                .await
                .ok();
            return Ok(());
        }
        // Fresh look: the world may have changed while we claimed.
        let store = self.store.clone();
        let mine: HashSet<PieceId> = self
            .blocking(move || store.piece_ids())
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .collect();
        let (healthy, mut holding) = self.health(&s, &mine);
        let k = usize::from(s.params.k());
        // Rebuild only what can be placed, each piece on a node of its own: one holding
        // none of the stripe, and not one whose copy of this very piece just failed an
        // audit. The pieces are matched to such nodes so that one piece's choice does
        // not strand another; the others allowed follow as fallbacks.
        let (missing, plans): (Vec<usize>, Vec<Vec<NodeId>>) = {
            let targets = self.free_targets(&s, &holding);
            // Locks in the order the rest of the node takes them: holders, then ledger.
            let holders = lock(&self.holders);
            let ledger = lock(&self.ledger);
            let lost: Vec<usize> = (0..healthy.len()).filter(|&i| !healthy[i]).collect();
            let allowed: Vec<Vec<NodeId>> = lost
                .iter()
                .map(|&i| {
                    let id = s.stripe.pieces[i].id;
                    targets
                        .iter()
                        .copied()
                        .filter(|n| ledger.trusted(n, &id))
                        .filter(|n| peer_of_node(n).is_none_or(|p| !holders.dropped(&p, &id)))
                        .collect()
                })
                .collect();
            lost.into_iter()
                .zip(repair::assign(&allowed).into_iter().zip(allowed))
                .filter_map(|(i, (first, rest))| {
                    let first = first?;
                    let plan = std::iter::once(first)
                        .chain(rest.into_iter().filter(|n| *n != first))
                        .collect();
                    Some((i, plan))
                })
                .unzip()
        };
        if missing.is_empty() {
            self.finish_repair(s.id).await;
            return Ok(());
        }
        let t0 = tokio::time::Instant::now();
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
                let connected = lock(&self.connected);
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
        let (params, stripe, want) = (s.params, s.stripe.clone(), missing.clone());
        let rebuilt = self
            .workers
            .blocking(move || engine::rebuild_pieces(params, &stripe, have, &want))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let mut placed = 0usize;
        for ((i, bytes), plan) in rebuilt.into_iter().zip(plans) {
            // A slow repair may have outlived its lease and another node taken the stripe
            // up: leave the rest to it rather than place a piece twice. Otherwise renew.
            let holder = lock(&self.claims).holder(&s.id, now_unix());
            if holder.is_some_and(|h| h != self.me) {
                info!(stripe = %s.id, "another node took this repair over; leaving it to them");
                lock(&self.journal).remove(&s.id);
                let store = self.store.clone();
                self.blocking(move || store.remove_repair_job(&s.id))
                    .await
                    .ok();
                return Ok(());
            }
            self.announce_claim(s.id, false).await;
            let piece = s.stripe.pieces[i];
            lock(&self.staged).insert(piece.id, bytes::Bytes::from(bytes));
            let mut done = None;
            // Nodes in a failure domain of their own first; a shared one only when no
            // such node takes the piece.
            let (apart, shared): (Vec<NodeId>, Vec<NodeId>) = plan
                .into_iter()
                .partition(|t| !self.shares_domain(t, &holding));
            for target in apart.into_iter().chain(shared) {
                if holding.contains(&target) {
                    continue;
                }
                if self.shares_domain(&target, &holding) {
                    info!(stripe = %s.id, node = %target.short(), "no free node in a failure domain of its own; trying one in a shared domain");
                }
                // This node's view of who holds what may lag (announcements travel by
                // gossip): the target itself says whether it holds a piece of the stripe.
                // One that holds this very piece (a repairer that died placed it there)
                // has it placed; giving it to another node too would use up a node the
                // stripe's other missing pieces need.
                match self.pieces_held_by(&target, &s).await {
                    Some(held) if held.is_empty() => {}
                    Some(held)
                        if held == [piece.id]
                            && s.stripe.pieces.iter().filter(|p| p.id == piece.id).count() == 1 =>
                    {
                        info!(stripe = %s.id, piece = %piece.id, node = %target.short(), "the target already held the rebuilt piece");
                        holding.push(target);
                        done = Some(true);
                        break;
                    }
                    _ => {
                        holding.push(target);
                        continue;
                    }
                }
                let Some(already) = self.hold_on(&target, piece.id, piece.len).await else {
                    continue;
                };
                if already {
                    // Between the look and the placement, another repairer whose claim
                    // had not reached this node yet put the same piece there.
                    info!(stripe = %s.id, piece = %piece.id, node = %target.short(), "the target already held the rebuilt piece: another repairer placed it");
                } else {
                    info!(stripe = %s.id, piece = %piece.id, node = %target.short(), "rebuilt piece placed");
                }
                // It now holds a piece of this stripe: the next rebuilt piece goes
                // elsewhere, so one more loss never costs the stripe two pieces.
                holding.push(target);
                done = Some(already);
                break;
            }
            lock(&self.staged).remove(&piece.id);
            if let Some(already) = done {
                placed += 1;
                if !already {
                    self.stats.pieces_rebuilt.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .repair_written_bytes
                        .fetch_add(u64::from(piece.len), Ordering::Relaxed);
                }
            } else {
                warn!(stripe = %s.id, piece = %piece.id, "no node could take the rebuilt piece; will retry");
            }
        }
        let busy = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.stats.repair_busy_ms.fetch_add(busy, Ordering::Relaxed);
        if placed == missing.len() {
            self.stats.repairs.fetch_add(1, Ordering::Relaxed);
            info!(stripe = %s.id, pieces = placed, took = ?t0.elapsed(), "stripe repaired");
            self.finish_repair(s.id).await;
            Ok(())
        } else {
            Err(format!(
                "placed {placed} of {} rebuilt pieces",
                missing.len()
            ))
        }
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

    /// The pieces of `s` that `target` holds, as it says itself; `None` when it cannot
    /// say (then it counts as holding one: nothing is placed on a node that might
    /// double up).
    async fn pieces_held_by(&self, target: &NodeId, s: &HeldStripe) -> Option<Vec<PieceId>> {
        let peer = peer_of_node(target)?;
        let req = Request::Locate {
            pieces: s.stripe.pieces.iter().map(|p| p.id.0).collect(),
        };
        let me = peer.to_string();
        match tokio::time::timeout(AUDIT_DEADLINE, self.control.request(peer, vec![], req)).await {
            Ok(Ok(Response::Located(l))) => Some(
                s.stripe
                    .pieces
                    .iter()
                    .zip(&l)
                    .filter(|(_, hs)| hs.iter().any(|h| h.peer == me))
                    .map(|(p, _)| p.id)
                    .collect(),
            ),
            _ => None,
        }
    }

    /// Asks `target` to hold a staged piece. The placement becomes known to others when
    /// the target announces its holdings; this node records it at once. Says whether the
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
                // Lock order: holders, then the ledger.
                let now = now_unix();
                let mut holders = lock(&self.holders);
                let ledger = lock(&self.ledger);
                let established = |p: &PeerId| {
                    super::data_id_of(p).is_some_and(|id| {
                        ledger.trust(&NodeId(id), now) == wire::Trust::Established
                    })
                };
                if let Some(d) = holders.by_peer.get(&peer).map(|(d, _)| d.clone()) {
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
