//! Repair claims from the network: taken only from proven co-holders of the stripe. A
//! claim from a co-holder this node has not proven yet, but which announced a piece of
//! the stripe, is not simply dropped: the node challenges the claimer for that piece at
//! once, as an audit, and takes the claim if it passes. So two honest repairers that
//! have not audited each other yet still see each other's claims, while a key that holds
//! nothing only ever costs one challenge per stripe and [`VET_AGAIN_SECS`].

use std::{collections::HashMap, sync::Arc};

use libp2p::{PeerId, gossipsub::MessageAcceptance};
use tracing::debug;

use super::{State, Work, lock, upkeep};
use crate::{
    audit::AuditTarget,
    ids::{NodeId, PieceId, StripeId},
    repair::Claim,
};

/// How long before the same claimer is challenged again about the same stripe.
const VET_AGAIN_SECS: u64 = 60;
/// Most (claimer, stripe) pairs remembered as vetted recently.
const MAX_VETTED: usize = 1 << 14;

/// Claimers recently challenged (at most [`Work::Vet`]'s cap at once).
#[derive(Debug, Default)]
pub(super) struct Vetted {
    when: HashMap<(NodeId, StripeId), u64>,
}

impl State {
    /// Takes a claim from the network: observed if its claimer is a proven co-holder;
    /// vetted first if it announced a piece of the stripe; ignored otherwise.
    pub(super) fn take_claim(self: &Arc<Self>, from: PeerId, c: Claim) -> MessageAcceptance {
        let now = upkeep::now_unix();
        let (speaks, failing, pieces) = {
            let ledger = lock(&self.ledger);
            let pieces = ledger
                .stripe_pieces(&c.stripe)
                .map(<[PieceId]>::to_vec)
                .unwrap_or_default();
            (
                ledger.speaks_for(&c.claimer, &c.stripe, now),
                ledger.reputation(&c.claimer).failing,
                pieces,
            )
        };
        if failing {
            debug!(%from, "repair claim from a failing node ignored");
            return MessageAcceptance::Ignore;
        }
        if speaks {
            lock(&self.claims).observe(c, now);
            return MessageAcceptance::Accept;
        }
        // Not proven yet: challenge it for a piece of the stripe it announced.
        let announced = {
            let holders = lock(&self.holders);
            pieces
                .iter()
                .copied()
                .find(|p| holders.announces_any(&from, std::slice::from_ref(p)))
        };
        let Some(piece) = announced else {
            debug!(%from, stripe = %c.stripe, "repair claim from a node that holds no piece of the stripe; ignored");
            return MessageAcceptance::Ignore;
        };
        {
            let mut v = lock(&self.vetted);
            let key = (c.claimer, c.stripe);
            if v.when
                .get(&key)
                .is_some_and(|t| t.saturating_add(VET_AGAIN_SECS) > now)
            {
                return MessageAcceptance::Ignore;
            }
            if v.when.len() >= MAX_VETTED {
                v.when.retain(|_, t| t.saturating_add(VET_AGAIN_SECS) > now);
            }
            let me = self.clone();
            let vet = async move { me.vet_claim(c, piece, &pieces).await };
            if self.workers.spawn(Work::Vet, vet).is_ok() {
                v.when.insert(key, now);
            }
        }
        MessageAcceptance::Ignore
    }

    /// Challenges `c`'s claimer for `piece` (of the stripe whose pieces are `pieces`),
    /// records the result as an audit, and observes the claim if it passed.
    async fn vet_claim(self: &Arc<Self>, c: Claim, piece: PieceId, pieces: &[PieceId]) {
        // Pieces of one stripe share a length: that of any of them held here.
        let store = self.store.clone();
        let held = pieces.to_vec();
        let len = self
            .blocking(move || {
                for p in &held {
                    if let Some(m) = store.piece_meta(p)? {
                        return Ok(Some(m.len));
                    }
                }
                Ok::<_, crate::store::StoreError>(None)
            })
            .await;
        let Ok(Some(len)) = len else {
            return;
        };
        let Ok(len) = u32::try_from(len) else {
            return;
        };
        let round = upkeep::now_unix().saturating_mul(1000);
        let target = AuditTarget {
            holder: c.claimer,
            piece,
            len,
            retrieve: false,
        };
        let Some(record) = self.clone().audit_one(round, target).await else {
            return;
        };
        let passed = record.record.outcome.passed();
        self.take_records(vec![record]).await;
        let now = upkeep::now_unix();
        if passed && lock(&self.ledger).speaks_for(&c.claimer, &c.stripe, now) {
            debug!(stripe = %c.stripe, claimer = %c.claimer.short(), "claimer proven; claim taken");
            lock(&self.claims).observe(c, now);
        }
    }
}
