//! A repair's fresh look at a stripe: which pieces are healthy, where rebuilt pieces
//! may go, and what a target or a placement record's holder says it holds. What this
//! node has not heard of is asked about before it is counted lost.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use futures::StreamExt;
use libp2p::PeerId;
use tracing::{debug, info};

use super::{
    State,
    audits::AUDIT_DEADLINE,
    data_id_of, lock,
    upkeep::{HeldStripe, now_unix, peer_of_node},
};
use crate::{
    ids::{NodeId, PieceId},
    net::{
        placement,
        wire::{self, DataAddr, Request, Response},
    },
    repair::{self, Plan},
};

/// Most record-named holders asked at once in one repair's look.
const ASK_AT_ONCE: usize = 8;

/// What a repair's fresh look found, kept for its rebuild: the pieces held here, and
/// which of the stripe's pieces are healthy.
pub(super) struct Look {
    pub(super) mine: HashSet<PieceId>,
    pub(super) healthy: Vec<bool>,
    /// See [`Health::spare`].
    pub(super) spare: HashMap<NodeId, HashSet<PieceId>>,
}

/// A stripe's health as this node sees it.
pub(super) struct Health {
    /// Per piece, whether it has a holder of its own (held here, or by a connected node
    /// whose copy the ledger trusts).
    pub(super) healthy: Vec<bool>,
    /// The nodes holding a piece the stripe needs (this node among them), or announced
    /// holding one.
    pub(super) holding: Vec<NodeId>,
    /// Nodes whose every copy of a piece of the stripe is also held by another node,
    /// with those copies.
    pub(super) spare: HashMap<NodeId, HashSet<PieceId>>,
}

impl State {
    /// Whether each piece of `s` is healthy: held here, or held by a connected node whose
    /// copy the ledger trusts, with a node of its own. Pieces with equal bytes share an id
    /// and so their holders; a holder counts for one of them only
    /// ([`placement::matching`]), so such pieces are spread like any others.
    pub(super) fn health(&self, s: &HeldStripe, mine: &HashSet<PieceId>) -> Health {
        let holders = lock(&self.holders);
        let connected = lock(&self.known);
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
        let matched: Vec<Option<NodeId>> = placement::matching(&good)
            .iter()
            .zip(&good)
            .map(|(m, g)| m.map(|at| g[at]))
            .collect();
        // A largest matching leaves out only nodes whose every copy is matched to
        // another node: such a spare holds nothing the stripe needs, so it may take a
        // lost piece like a free node (after a repair that raced a holder's return,
        // every node of a small network may hold a piece, one of them twice).
        let counted: HashSet<NodeId> = matched.iter().flatten().copied().collect();
        let mut spare: HashMap<NodeId, HashSet<PieceId>> = HashMap::new();
        for (p, g) in s.stripe.pieces.iter().zip(&good) {
            for n in g.iter().filter(|n| **n != self.me && !counted.contains(n)) {
                spare.entry(*n).or_default().insert(p.id);
            }
        }
        holding.retain(|n| !spare.contains_key(n));
        holding.sort_unstable();
        holding.dedup();
        Health {
            healthy: matched.iter().map(Option::is_some).collect(),
            holding,
            spare,
        }
    }

    /// Nodes a rebuilt piece of a stripe could go to: connected, neither flagged nor
    /// failing, and holding no piece of the stripe (`holding`); those sharing no failure
    /// domain with its holders first, then established nodes first, each group in the
    /// stripe's own order.
    pub(super) fn free_targets(&self, s: &HeldStripe, holding: &[NodeId]) -> Vec<NodeId> {
        let now = now_unix();
        let (candidates, established): (Vec<NodeId>, HashSet<NodeId>) = {
            let connected = lock(&self.known);
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

    /// A fresh look at `s` for its repair job: which pieces to rebuild and the nodes each
    /// may go to, who holds a piece, and where each node sits.
    pub(super) async fn plan_repair(
        self: &Arc<Self>,
        s: &HeldStripe,
    ) -> Result<(Plan, Look), String> {
        let store = self.store.clone();
        let mine: HashSet<PieceId> = self
            .blocking(move || store.piece_ids())
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .collect();
        let mut health = self.health(s, &mine);
        if health.healthy.contains(&false) && self.hear_named_holders(s, &health.healthy).await {
            health = self.health(s, &mine);
        }
        let Health {
            healthy,
            holding,
            spare,
        } = health;
        // Rebuild only what can be placed, each piece on a node of its own: one holding
        // none of the stripe, and not one whose copy of this very piece just failed an
        // audit. The pieces are matched to such nodes so that one piece's choice does
        // not strand another; the others allowed follow as fallbacks.
        let targets = self.free_targets(s, &holding);
        let pieces: Vec<(usize, Vec<NodeId>)> = {
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
                .collect()
        };
        let mut numbers = crate::net::domain::Interner::default();
        let domains = holding
            .iter()
            .chain(pieces.iter().flat_map(|(_, ts)| ts))
            .filter_map(|n| Some((*n, peer_of_node(n)?)))
            .map(|(n, p)| (n, numbers.ids(self.domains_of(&p))))
            .collect();
        let plan = Plan {
            pieces,
            holding,
            domains,
        };
        Ok((
            plan,
            Look {
                mine,
                healthy,
                spare,
            },
        ))
    }

    /// The pieces of `s` that `target` holds, as it says itself; `None` when it cannot
    /// say (then it counts as holding one: nothing is placed on a node that might
    /// double up).
    pub(super) async fn pieces_held_by(
        &self,
        target: &NodeId,
        s: &HeldStripe,
    ) -> Option<Vec<PieceId>> {
        self.holdings_of(target, s).await.map(|(held, _)| held)
    }

    /// What `target` says it holds of `s`, with the data-plane address it gives for
    /// itself. It is dialed if it is not connected.
    async fn holdings_of(
        &self,
        target: &NodeId,
        s: &HeldStripe,
    ) -> Option<(Vec<PieceId>, Option<DataAddr>)> {
        let peer = peer_of_node(target)?;
        let req = Request::Locate {
            pieces: s.stripe.pieces.iter().map(|p| p.id.0).collect(),
        };
        let me = peer.to_string();
        let Ok(Ok(Response::Located(l))) =
            tokio::time::timeout(AUDIT_DEADLINE, self.control.request(peer, vec![], req)).await
        else {
            return None;
        };
        let mut data = None;
        let held = s
            .stripe
            .pieces
            .iter()
            .zip(&l)
            .filter_map(|(p, hs)| {
                let h = hs.iter().find(|h| h.peer == me)?;
                data.get_or_insert_with(|| h.data.clone());
                Some(p.id)
            })
            .collect();
        Some((held, data))
    }

    /// Asks the holders that `s`'s placement record names for pieces this node counts as
    /// lost (`healthy`), and takes what they say into the holder table. A holder that
    /// has just joined, or come back, may hold its pieces without this node having heard
    /// its announcement yet: what this node has not heard of is not lost. Holders whose
    /// copy failed an audit are not asked. Whether any holder was learned.
    async fn hear_named_holders(self: &Arc<Self>, s: &HeldStripe, healthy: &[bool]) -> bool {
        let key = s.record_key();
        // The record this node keeps, or the DHT's when it keeps none (it may not have
        // adopted it yet, or holds a piece that a repair placed).
        let Some(record) = self.current_record(key).await else {
            debug!(stripe = %s.id, "no placement record to ask the holders of");
            return false;
        };
        if record.record().stripe != s.id || record.record().holders.len() != s.stripe.pieces.len()
        {
            return false;
        }
        let named: Vec<(usize, NodeId)> = record
            .record()
            .holders
            .iter()
            .enumerate()
            .filter_map(|(i, h)| Some((i, h.as_ref()?.node)))
            .collect();
        let ask: HashSet<NodeId> = {
            let ledger = lock(&self.ledger);
            named
                .into_iter()
                .filter(|&(i, n)| !healthy[i] && n != self.me)
                .filter(|&(i, n)| ledger.trusted(&n, &s.stripe.pieces[i].id))
                .map(|(_, n)| n)
                .collect()
        };
        debug!(stripe = %s.id, asked = ask.len(), "asking the record's holders of pieces counted lost");
        let heard: Vec<(NodeId, Vec<PieceId>, DataAddr)> = futures::stream::iter(ask)
            .map(|n| async move {
                let (held, data) = self.holdings_of(&n, s).await?;
                Some((n, held, data?))
            })
            .buffer_unordered(ASK_AT_ONCE)
            .filter_map(|x| async move { x })
            .collect()
            .await;
        let now = now_unix();
        let mut holders = lock(&self.holders);
        let ledger = lock(&self.ledger);
        let established = |p: &PeerId| {
            data_id_of(p)
                .is_some_and(|id| ledger.trust(&NodeId(id), now) == wire::Trust::Established)
        };
        let mut learned = false;
        for (n, held, data) in heard {
            let Some(peer) = peer_of_node(&n) else {
                continue;
            };
            // The address must be the holder's own: a node speaks only for itself.
            if data.id != n.0 || held.is_empty() {
                continue;
            }
            info!(stripe = %s.id, node = %n.short(), pieces = held.len(), "a holder named in the placement record holds pieces it had not announced here");
            let ids: Vec<[u8; 32]> = held.iter().map(|p| p.0).collect();
            holders.add(peer, data, &ids, &[], now, &established);
            learned = true;
        }
        learned
    }
}
