//! The ledger: each node's standing, from the audit records that pass admission.
//!
//! See the [module docs](super) for who may speak about whom.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use super::record::SignedRecord;
use crate::ids::{NodeId, PieceId, StripeId};

/// Distinct auditors that must have caught a node forging before it is flagged.
pub const FORGERY_WITNESSES: usize = 2;
/// Audit results per node that its score is computed over (most recent first).
pub const SCORE_WINDOW: usize = 64;
/// Consecutive failed audits (of any of its pieces) after which a node is failing.
pub const FAILING_AFTER: usize = 3;
/// Longest gap between two passed audits that is credited as proven storage.
pub const MAX_CREDITED_GAP: u64 = 7 * 24 * 3600;
/// How long a pass this node saw lets the passing node speak about that stripe, and a
/// challenge this node sent lets others' records about its subject count.
pub const PROOF_HORIZON: u64 = 24 * 3600;
/// Results older than this no longer count towards a score.
pub const SCORE_HORIZON: u64 = 24 * 3600;
/// Forgery witnesses older than this are forgotten: a flag does not last for ever.
pub const FLAG_HORIZON: u64 = 7 * 24 * 3600;
/// The oldest record taken from the network (records are sent when they are made).
pub const MAX_RECORD_AGE: u64 = 3600;
/// How far ahead of this node's clock a record may be dated (it would otherwise credit
/// byte-hours that have not passed yet).
pub const MAX_CLOCK_SKEW: u64 = 600;
/// Records one auditor may have taken in a burst.
pub const AUDITOR_BURST: f64 = 4096.0;
/// Records per second one auditor's quota refills by.
pub const AUDITOR_RATE: f64 = 128.0;
/// Most pieces per node whose last pass and last failure are tracked.
const MAX_TRACKED_PIECES: usize = 1 << 18;
/// Most nodes in a ledger.
pub const MAX_NODES: usize = 1 << 14;
/// Most record digests remembered to drop duplicates.
const MAX_SEEN: usize = 1 << 20;

/// Why the ledger did not take a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A node audited itself.
    #[error("a record about its own auditor")]
    SelfAudit,
    /// Taken before.
    #[error("a duplicate record")]
    Duplicate,
    /// The auditor was caught forging.
    #[error("its auditor was caught forging")]
    FlaggedAuditor,
    /// The piece belongs to no stripe held here.
    #[error("about a piece of no stripe held here")]
    OutOfScope,
    /// The auditor has not shown this node that it holds a piece of the stripe.
    #[error("its auditor has not proven it holds a piece of the stripe")]
    NotCoHolder,
    /// This node has not seen the subject claim a piece of the stripe.
    #[error("its subject holds no piece of the stripe as far as this node knows")]
    SubjectOutOfScope,
    /// Dated more than [`MAX_RECORD_AGE`] ago.
    #[error("too old")]
    Stale,
    /// Dated more than [`MAX_CLOCK_SKEW`] ahead of this node's clock.
    #[error("dated ahead of this node's clock")]
    Future,
    /// The auditor sent more than its quota.
    #[error("its auditor is over its quota")]
    OverQuota,
    /// The ledger tracks as many nodes as it may.
    #[error("the ledger is full")]
    Full,
}

/// One audit result about a node.
#[derive(Debug, Clone, Copy)]
struct Result1 {
    time: u64,
    passed: bool,
    auditor: NodeId,
}

/// What the ledger knows of one node, from others' records.
#[derive(Debug, Clone, Default)]
struct Standing {
    passes: u64,
    fails: u64,
    /// Most recent results first, at most [`SCORE_WINDOW`], none older than
    /// [`SCORE_HORIZON`] after [`Ledger::decay`].
    recent: VecDeque<Result1>,
    /// Who caught it forging, and when last.
    forgery_witnesses: BTreeMap<NodeId, u64>,
    auditors: BTreeSet<NodeId>,
    last_pass: HashMap<PieceId, u64>,
    /// Pieces whose most recent audit failed.
    bad_pieces: HashSet<PieceId>,
    proven_byte_secs: u128,
}

impl Standing {
    fn flagged(&self) -> bool {
        self.forgery_witnesses.len() >= FORGERY_WITNESSES
    }

    /// Its last [`FAILING_AFTER`] results or more failed, and those failures were seen by
    /// `me` or by two auditors at least: one stranger's word does not make a node failing.
    fn failing(&self, me: &NodeId) -> bool {
        let streak: Vec<&Result1> = self.recent.iter().take_while(|r| !r.passed).collect();
        if streak.len() < FAILING_AFTER {
            return false;
        }
        let by: BTreeSet<&NodeId> = streak.iter().map(|r| &r.auditor).collect();
        by.contains(me) || by.len() >= 2
    }
}

/// How far a node trusts another with pieces, from its own ledger.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trust {
    /// Nothing known: a new identity, or one not seen proving anything yet.
    #[default]
    New,
    /// Seen passing challenges: by the lister itself, or in records from co-holders the
    /// lister has proven.
    Established,
    /// Caught forging or failing its audits: given no pieces.
    Shunned,
}

/// A node's standing, as a ledger computes it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Reputation {
    /// Passed audits recorded by others.
    pub passes: u64,
    /// Failed audits recorded by others.
    pub fails: u64,
    /// Score in `[0, 1]`: the Beta(1, 1) posterior mean of passing over the last
    /// [`SCORE_WINDOW`] audits within [`SCORE_HORIZON`]; 0 once flagged. A node no one
    /// has audited scores 0.5.
    pub score: f64,
    /// Caught forging by [`FORGERY_WITNESSES`] or more distinct auditors.
    pub flagged: bool,
    /// Failed its last [`FAILING_AFTER`] audits or more (seen by this node, or by two).
    pub failing: bool,
    /// Distinct auditors who recorded anything about it.
    pub auditors: u32,
    /// Byte-hours of storage proven.
    pub proven_byte_hours: f64,
}

/// What this node has itself seen of one co-holder in one stripe.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    /// When this node last challenged it about a piece of the stripe.
    challenged: u64,
    /// When it last passed one of those challenges.
    passed: Option<u64>,
}

/// An auditor's quota: a token bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: u64,
}

impl Bucket {
    fn refill(&mut self, now: u64) {
        let dt = now.saturating_sub(self.at) as f64;
        self.tokens = (self.tokens + dt * AUDITOR_RATE).min(AUDITOR_BURST);
        self.at = self.at.max(now);
    }
}

/// Reputation and contribution of the nodes that share stripes with this one, derived
/// from the audit records that pass admission.
#[derive(Debug)]
pub struct Ledger {
    me: NodeId,
    nodes: HashMap<NodeId, Standing>,
    seen: HashSet<[u8; 32]>,
    seen_order: VecDeque<[u8; 32]>,
    /// The stripe of every piece of every stripe held here.
    scope: HashMap<PieceId, StripeId>,
    /// The pieces of every stripe held here.
    stripes: HashMap<StripeId, Vec<PieceId>>,
    /// Per stripe in scope, what this node has itself seen of each co-holder.
    witnessed: HashMap<StripeId, HashMap<NodeId, Seen>>,
    /// When this node last saw each node pass one of its challenges, in any stripe.
    proven_at: HashMap<NodeId, u64>,
    quota: HashMap<NodeId, Bucket>,
}

impl Ledger {
    /// An empty ledger kept by node `me`, with nothing in scope.
    pub fn new(me: NodeId) -> Self {
        Self {
            me,
            nodes: HashMap::new(),
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
            scope: HashMap::new(),
            stripes: HashMap::new(),
            witnessed: HashMap::new(),
            proven_at: HashMap::new(),
            quota: HashMap::new(),
        }
    }

    /// Sets the stripes this node holds pieces of, each with all its pieces: records
    /// about other pieces are refused. What was seen of stripes no longer held is
    /// forgotten.
    pub fn set_scope<P: IntoIterator<Item = PieceId>>(
        &mut self,
        stripes: impl IntoIterator<Item = (StripeId, P)>,
    ) {
        self.scope.clear();
        self.stripes.clear();
        for (stripe, pieces) in stripes {
            let pieces: Vec<PieceId> = pieces.into_iter().collect();
            for p in &pieces {
                self.scope.insert(*p, stripe);
            }
            self.stripes.insert(stripe, pieces);
        }
        let held = &self.stripes;
        self.witnessed.retain(|s, _| held.contains_key(s));
    }

    /// The stripe held here that `piece` belongs to.
    pub fn stripe_of(&self, piece: &PieceId) -> Option<StripeId> {
        self.scope.get(piece).copied()
    }

    /// The pieces of `stripe`, if it is held here.
    pub fn stripe_pieces(&self, stripe: &StripeId) -> Option<&[PieceId]> {
        self.stripes.get(stripe).map(Vec::as_slice)
    }

    /// Every piece of the stripe held here that `piece` belongs to.
    pub fn stripe_pieces_of(&self, piece: &PieceId) -> Option<Vec<PieceId>> {
        self.stripes.get(self.scope.get(piece)?).cloned()
    }

    /// Whether `node` may speak about `stripe` at `now`: it is this node, or this node saw
    /// it pass a challenge for a piece of the stripe within [`PROOF_HORIZON`], and it is
    /// not flagged.
    pub fn speaks_for(&self, node: &NodeId, stripe: &StripeId, now: u64) -> bool {
        if *node == self.me {
            return true;
        }
        !self.flagged(node)
            && self
                .witnessed
                .get(stripe)
                .and_then(|m| m.get(node))
                .and_then(|s| s.passed)
                .is_some_and(|t| t.saturating_add(PROOF_HORIZON) >= now)
    }

    /// The checks every record must pass; `live` for records from the network now
    /// (dated recently), not for records restored from this node's own store.
    fn check(&self, signed: &SignedRecord, now: u64, live: bool) -> Result<(), Refusal> {
        let r = &signed.record;
        if r.auditor == r.holder {
            return Err(Refusal::SelfAudit);
        }
        let stripe = self.stripe_of(&r.piece).ok_or(Refusal::OutOfScope)?;
        if self.seen.contains(&signed.digest()) {
            return Err(Refusal::Duplicate);
        }
        if !self.nodes.contains_key(&r.holder) && self.nodes.len() >= MAX_NODES {
            return Err(Refusal::Full);
        }
        if r.auditor == self.me {
            return Ok(());
        }
        if self.flagged(&r.auditor) {
            return Err(Refusal::FlaggedAuditor);
        }
        if live {
            if r.time_unix > now.saturating_add(MAX_CLOCK_SKEW) {
                return Err(Refusal::Future);
            }
            if r.time_unix.saturating_add(MAX_RECORD_AGE) < now {
                return Err(Refusal::Stale);
            }
        }
        if !self.speaks_for(&r.auditor, &stripe, now) {
            return Err(Refusal::NotCoHolder);
        }
        let subject_known = self
            .witnessed
            .get(&stripe)
            .and_then(|m| m.get(&r.holder))
            .is_some_and(|s| s.challenged.saturating_add(PROOF_HORIZON) >= now);
        if !subject_known {
            return Err(Refusal::SubjectOutOfScope);
        }
        Ok(())
    }

    /// Whether this node has itself seen `node` pass a challenge, for any stripe, within
    /// [`PROOF_HORIZON`] of `now`: first-hand evidence that it stores what it holds.
    pub fn proven(&self, node: &NodeId, now: u64) -> bool {
        self.proven_at
            .get(node)
            .is_some_and(|t| t.saturating_add(PROOF_HORIZON) >= now)
    }

    /// The cheap checks for a record from the network, before its signature is checked:
    /// scope, who may speak, age, and the auditor's quota, which this charges. A record
    /// that passes still has to verify and then be [`applied`](Self::apply).
    pub fn admit(&mut self, signed: &SignedRecord, now: u64) -> Result<(), Refusal> {
        self.check(signed, now, true)?;
        let auditor = signed.record.auditor;
        if auditor == self.me {
            return Ok(());
        }
        let b = self.quota.entry(auditor).or_insert(Bucket {
            tokens: AUDITOR_BURST,
            at: now,
        });
        b.refill(now);
        if b.tokens < 1.0 {
            return Err(Refusal::OverQuota);
        }
        b.tokens -= 1.0;
        Ok(())
    }

    /// Takes in a record whose signature verified (or this node's own), checked again as
    /// the ledger stands now.
    pub fn apply(&mut self, signed: &SignedRecord, now: u64) -> Result<(), Refusal> {
        self.check(signed, now, true)?;
        self.take(signed);
        Ok(())
    }

    /// Takes in a record this node stored earlier (its own or one it admitted): the same
    /// checks but its age, so byte-hours proven survive a restart. Restore this node's
    /// own records first: they are what makes others' count.
    pub fn restore(&mut self, signed: &SignedRecord, now: u64) -> bool {
        if self.check(signed, now, false).is_err() {
            return false;
        }
        self.take(signed);
        true
    }

    fn take(&mut self, signed: &SignedRecord) {
        let r = &signed.record;
        let digest = signed.digest();
        if self.seen_order.len() >= MAX_SEEN
            && let Some(old) = self.seen_order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.seen.insert(digest);
        self.seen_order.push_back(digest);
        if r.auditor == self.me
            && let Some(stripe) = self.stripe_of(&r.piece)
        {
            let seen = self
                .witnessed
                .entry(stripe)
                .or_default()
                .entry(r.holder)
                .or_default();
            seen.challenged = seen.challenged.max(r.time_unix);
            if r.outcome.passed() {
                seen.passed = Some(seen.passed.unwrap_or(0).max(r.time_unix));
                let at = self.proven_at.entry(r.holder).or_default();
                *at = (*at).max(r.time_unix);
            }
        }
        let s = self.nodes.entry(r.holder).or_default();
        if s.auditors.len() < 256 {
            s.auditors.insert(r.auditor);
        }
        s.recent.push_front(Result1 {
            time: r.time_unix,
            passed: r.outcome.passed(),
            auditor: r.auditor,
        });
        s.recent.truncate(SCORE_WINDOW);
        if r.outcome.passed() {
            s.passes += 1;
            s.bad_pieces.remove(&r.piece);
            let tracked = s.last_pass.len();
            match s.last_pass.get_mut(&r.piece) {
                Some(t0) if r.time_unix > *t0 => {
                    let gap = (r.time_unix - *t0).min(MAX_CREDITED_GAP);
                    s.proven_byte_secs += u128::from(r.len) * u128::from(gap);
                    *t0 = r.time_unix;
                }
                Some(_) => {}
                None if tracked < MAX_TRACKED_PIECES => {
                    s.last_pass.insert(r.piece, r.time_unix);
                }
                None => {}
            }
        } else {
            s.fails += 1;
            if s.bad_pieces.len() < MAX_TRACKED_PIECES {
                s.bad_pieces.insert(r.piece);
            }
            if r.outcome.forged() && s.forgery_witnesses.len() < 64 {
                let t = s.forgery_witnesses.entry(r.auditor).or_default();
                *t = (*t).max(r.time_unix);
            }
        }
    }

    /// Forgets what is too old to count at `now`: results past [`SCORE_HORIZON`],
    /// forgery witnesses past [`FLAG_HORIZON`], passes and challenges past
    /// [`PROOF_HORIZON`], and full quotas.
    pub fn decay(&mut self, now: u64) {
        let since = |horizon: u64| now.saturating_sub(horizon);
        for s in self.nodes.values_mut() {
            s.recent.retain(|r| r.time >= since(SCORE_HORIZON));
            s.forgery_witnesses.retain(|_, t| *t >= since(FLAG_HORIZON));
        }
        self.nodes.retain(|_, s| {
            !s.recent.is_empty() || !s.forgery_witnesses.is_empty() || !s.last_pass.is_empty()
        });
        for m in self.witnessed.values_mut() {
            m.retain(|_, s| s.challenged >= since(PROOF_HORIZON));
            for s in m.values_mut() {
                if s.passed.is_some_and(|t| t < since(PROOF_HORIZON)) {
                    s.passed = None;
                }
            }
        }
        self.witnessed.retain(|_, m| !m.is_empty());
        self.proven_at.retain(|_, t| *t >= since(PROOF_HORIZON));
        self.quota.retain(|_, b| {
            b.refill(now);
            b.tokens < AUDITOR_BURST
        });
    }

    /// The standing of `node`.
    pub fn reputation(&self, node: &NodeId) -> Reputation {
        let Some(s) = self.nodes.get(node) else {
            return Reputation {
                passes: 0,
                fails: 0,
                score: 0.5,
                flagged: false,
                failing: false,
                auditors: 0,
                proven_byte_hours: 0.0,
            };
        };
        let flagged = s.flagged();
        let p = s.recent.iter().filter(|r| r.passed).count() as f64;
        let f = s.recent.len() as f64 - p;
        Reputation {
            passes: s.passes,
            fails: s.fails,
            score: if flagged {
                0.0
            } else {
                (p + 1.0) / (p + f + 2.0)
            },
            flagged,
            failing: s.failing(&self.me),
            auditors: s.auditors.len() as u32,
            proven_byte_hours: s.proven_byte_secs as f64 / 3600.0,
        }
    }

    /// Whether `node`'s copy of `piece` can be counted on: the node is neither flagged nor
    /// failing, and its last audit of that piece did not fail.
    pub fn trusted(&self, node: &NodeId, piece: &PieceId) -> bool {
        match self.nodes.get(node) {
            None => true,
            Some(s) => !s.flagged() && !s.failing(&self.me) && !s.bad_pieces.contains(piece),
        }
    }

    /// How far this node trusts `node` with pieces at `now`: shunned if flagged or
    /// failing; established if this node saw it pass a challenge within
    /// [`PROOF_HORIZON`], or admitted records of it passing that have not decayed yet and
    /// its score is not below even; new otherwise.
    pub fn trust(&self, node: &NodeId, now: u64) -> Trust {
        let r = self.reputation(node);
        let recent_pass = self
            .nodes
            .get(node)
            .is_some_and(|s| s.recent.iter().any(|x| x.passed));
        if r.flagged || r.failing {
            Trust::Shunned
        } else if self.proven(node, now) || (recent_pass && r.score >= 0.5) {
            Trust::Established
        } else {
            Trust::New
        }
    }

    /// Whether `node` has been caught forging.
    pub fn flagged(&self, node: &NodeId) -> bool {
        self.nodes.get(node).is_some_and(Standing::flagged)
    }

    /// Every node the ledger has records about.
    pub fn nodes(&self) -> impl Iterator<Item = (&NodeId, Reputation)> {
        self.nodes.keys().map(|n| (n, self.reputation(n)))
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use proptest::prelude::*;

    use super::*;
    use crate::audit::{AuditRecord, Outcome};

    const T0: u64 = 1_000_000;
    const STRIPE: StripeId = StripeId([5; 32]);
    const OTHER_STRIPE: StripeId = StripeId([6; 32]);

    fn key(b: u8) -> SigningKey {
        SigningKey::from_bytes(&[b; 32])
    }

    fn id(b: u8) -> NodeId {
        NodeId(key(b).verifying_key().to_bytes())
    }

    /// Piece `i` of the stripe in scope; pieces 100.. are of another stripe, also held.
    fn piece(i: u8) -> PieceId {
        PieceId([i; 32])
    }

    fn rec(auditor: u8, holder: u8, p: u8, outcome: Outcome, t: u64) -> SignedRecord {
        AuditRecord {
            auditor: id(auditor),
            holder: id(holder),
            piece: piece(p),
            len: 1000,
            round: t,
            time_unix: t,
            outcome,
        }
        .sign(&key(auditor))
    }

    /// The ledger of node 0, holding a piece of `STRIPE` (pieces 1..=6) and of
    /// `OTHER_STRIPE` (pieces 101..=106), which has seen nodes 1, 2 and 3 pass a challenge
    /// for a piece of `STRIPE` and challenged node 9 (the subject) about it.
    fn ledger() -> Ledger {
        let mut l = Ledger::new(id(0));
        l.set_scope([
            (STRIPE, (1..=6).map(piece).collect::<Vec<_>>()),
            (OTHER_STRIPE, (101..=106).map(piece).collect()),
        ]);
        for (n, p) in [(1, 1), (2, 2), (3, 3), (9, 4)] {
            l.apply(&rec(0, n, p, Outcome::Pass, T0), T0)
                .expect("own record");
        }
        l
    }

    fn take(l: &mut Ledger, r: &SignedRecord, now: u64) -> Result<(), Refusal> {
        l.admit(r, now)?;
        l.apply(r, now)
    }

    #[test]
    fn a_key_that_holds_nothing_has_no_say() {
        let mut l = ledger();
        let before = l.reputation(&id(9));
        for fresh in 50..60u8 {
            for (t, o) in [
                (0, Outcome::BadProof),
                (1, Outcome::Timeout),
                (2, Outcome::Missing),
            ] {
                let r = rec(fresh, 9, 4, o, T0 + t);
                assert_eq!(take(&mut l, &r, T0 + 5), Err(Refusal::NotCoHolder));
            }
        }
        assert_eq!(l.reputation(&id(9)), before);
        assert!(l.trusted(&id(9), &piece(4)));
    }

    #[test]
    fn only_pieces_in_scope_and_subjects_of_the_stripe_count() {
        let mut l = ledger();
        // A piece of no stripe held here.
        let r = rec(1, 9, 200, Outcome::Missing, T0 + 1);
        assert_eq!(take(&mut l, &r, T0 + 1), Err(Refusal::OutOfScope));
        // Node 1 proved a piece of STRIPE, not of OTHER_STRIPE: no say there.
        let r = rec(1, 9, 101, Outcome::Missing, T0 + 1);
        assert_eq!(take(&mut l, &r, T0 + 1), Err(Refusal::NotCoHolder));
        // Node 8 was never seen to hold a piece of STRIPE: its standing cannot be moved.
        let r = rec(1, 8, 5, Outcome::BadProof, T0 + 1);
        assert_eq!(take(&mut l, &r, T0 + 1), Err(Refusal::SubjectOutOfScope));
        assert_eq!(l.reputation(&id(8)).fails, 0);
        // A proven co-holder about a known subject counts.
        take(&mut l, &rec(1, 9, 4, Outcome::Missing, T0 + 1), T0 + 1).expect("counts");
        assert_eq!(l.reputation(&id(9)).fails, 1);
        assert!(!l.trusted(&id(9), &piece(4)));
    }

    #[test]
    fn the_node_itself_always_speaks_and_a_record_counts_once() {
        let mut l = ledger();
        let r = rec(0, 7, 6, Outcome::Timeout, T0 + 2);
        assert_eq!(l.apply(&r, T0 + 2), Ok(()));
        assert_eq!(l.apply(&r, T0 + 2), Err(Refusal::Duplicate));
        assert_eq!(l.reputation(&id(7)).fails, 1);
        assert_eq!(
            l.apply(&rec(0, 0, 6, Outcome::Pass, T0), T0),
            Err(Refusal::SelfAudit)
        );
    }

    #[test]
    fn reputation_needs_two_witnesses_of_forgery() {
        let mut l = ledger();
        for t in 1..5 {
            take(&mut l, &rec(1, 9, 4, Outcome::Pass, T0 + t), T0 + 5).expect("pass");
        }
        assert!(l.reputation(&id(9)).score > 0.8);
        take(&mut l, &rec(1, 9, 4, Outcome::BadProof, T0 + 10), T0 + 10).expect("counts");
        assert!(!l.flagged(&id(9)), "one auditor alone cannot flag a node");
        take(&mut l, &rec(2, 9, 4, Outcome::WrongBytes, T0 + 11), T0 + 11).expect("counts");
        let r = l.reputation(&id(9));
        assert!(r.flagged);
        assert_eq!(r.score, 0.0);
        assert!(!l.trusted(&id(9), &piece(1)));
        // A flagged node has no say about others, even in a stripe it proved.
        l.apply(&rec(0, 9, 4, Outcome::Pass, T0 + 12), T0 + 12)
            .expect("own record");
        assert!(!l.speaks_for(&id(9), &STRIPE, T0 + 12));
        assert_eq!(
            take(&mut l, &rec(9, 1, 1, Outcome::BadProof, T0 + 13), T0 + 13),
            Err(Refusal::FlaggedAuditor)
        );
    }

    #[test]
    fn one_auditor_cannot_make_a_node_failing_but_this_node_or_two_can() {
        let mut l = ledger();
        for t in 0..10 {
            take(&mut l, &rec(1, 9, 4, Outcome::Timeout, T0 + t), T0 + 10).expect("counts");
        }
        let r = l.reputation(&id(9));
        assert!(!r.failing && r.score < 0.5);
        take(&mut l, &rec(2, 9, 4, Outcome::Timeout, T0 + 11), T0 + 11).expect("counts");
        assert!(l.reputation(&id(9)).failing);
        take(&mut l, &rec(3, 9, 4, Outcome::Pass, T0 + 12), T0 + 12).expect("counts");
        assert!(!l.reputation(&id(9)).failing, "a pass clears it");
        for t in 0..FAILING_AFTER as u64 {
            l.apply(&rec(0, 9, 4, Outcome::Timeout, T0 + 20 + t), T0 + 30)
                .expect("own record");
        }
        assert!(
            l.reputation(&id(9)).failing,
            "this node's own word is enough"
        );
    }

    #[test]
    fn an_auditor_is_held_to_its_quota() {
        let mut l = ledger();
        let burst = AUDITOR_BURST as u64;
        let mut taken = 0u64;
        for i in 0..burst + 50 {
            // Distinct records (the round differs), all at one instant.
            let r = AuditRecord {
                round: i,
                ..rec(1, 9, 4, Outcome::Pass, T0).record
            }
            .sign(&key(1));
            match l.admit(&r, T0) {
                Ok(()) => taken += 1,
                Err(e) => assert_eq!(e, Refusal::OverQuota),
            }
        }
        assert_eq!(taken, burst);
        // Another auditor has a quota of its own, and the quota refills with time.
        assert_eq!(l.admit(&rec(2, 9, 4, Outcome::Pass, T0), T0), Ok(()));
        assert_eq!(
            l.admit(&rec(1, 9, 4, Outcome::Pass, T0 + 1), T0 + 1),
            Ok(())
        );
    }

    #[test]
    fn records_out_of_their_time_are_refused() {
        let mut l = ledger();
        let now = T0 + 2 * MAX_RECORD_AGE;
        assert_eq!(
            l.admit(&rec(1, 9, 4, Outcome::Missing, T0), now),
            Err(Refusal::Stale)
        );
        assert_eq!(
            l.admit(&rec(1, 9, 4, Outcome::Missing, T0 + 2 * MAX_CLOCK_SKEW), T0),
            Err(Refusal::Future)
        );
    }

    #[test]
    fn standing_decays() {
        let mut l = ledger();
        take(&mut l, &rec(1, 9, 4, Outcome::BadProof, T0 + 1), T0 + 1).expect("counts");
        take(&mut l, &rec(2, 9, 4, Outcome::BadProof, T0 + 1), T0 + 1).expect("counts");
        assert!(l.flagged(&id(9)));
        // Past the score horizon the failures no longer count; the flag lasts longer.
        let later = T0 + SCORE_HORIZON + 10;
        l.decay(later);
        assert!(l.flagged(&id(9)));
        assert_eq!(l.reputation(&id(9)).score, 0.0);
        // Nor may co-holders whose proof is that old speak any more.
        assert!(!l.speaks_for(&id(1), &STRIPE, later));
        let much_later = T0 + FLAG_HORIZON + 10;
        l.decay(much_later);
        assert!(!l.flagged(&id(9)));
        assert_eq!(l.reputation(&id(9)).score, 0.5);
    }

    #[test]
    fn a_stripe_out_of_scope_takes_its_witnesses_with_it() {
        let mut l = ledger();
        assert!(l.speaks_for(&id(1), &STRIPE, T0));
        l.set_scope([(OTHER_STRIPE, (101..=106).map(piece).collect::<Vec<_>>())]);
        assert!(!l.speaks_for(&id(1), &STRIPE, T0));
        assert_eq!(
            take(&mut l, &rec(1, 9, 4, Outcome::Missing, T0 + 1), T0 + 1),
            Err(Refusal::OutOfScope)
        );
    }

    #[test]
    fn restored_records_keep_their_byte_hours_and_their_rules() {
        let mut l = Ledger::new(id(0));
        l.set_scope([(STRIPE, (1..=6).map(piece).collect::<Vec<_>>())]);
        let now = T0 + 30 * 24 * 3600;
        // Own records first: they are what lets node 1 speak.
        assert!(l.restore(&rec(0, 1, 1, Outcome::Pass, now - 100), now));
        assert!(l.restore(&rec(0, 9, 4, Outcome::Pass, T0), now));
        assert!(l.restore(&rec(0, 9, 4, Outcome::Pass, T0 + 3600), now));
        assert_eq!(l.reputation(&id(9)).proven_byte_hours, 1000.0);
        // A stranger's stored record does not count after a restart either.
        assert!(!l.restore(&rec(50, 9, 4, Outcome::BadProof, now - 10), now));
    }

    #[test]
    fn byte_hours_are_credited_between_passes_and_capped() {
        let mut l = ledger();
        let h = id(9);
        let base = l.reputation(&h).proven_byte_hours;
        assert_eq!(base, 0.0);
        take(&mut l, &rec(1, 9, 4, Outcome::Pass, T0 + 3600), T0 + 3600).expect("counts");
        assert_eq!(l.reputation(&h).proven_byte_hours, 1000.0);
        // Out of order: an older pass credits nothing.
        take(&mut l, &rec(2, 9, 4, Outcome::Pass, T0 + 1800), T0 + 3600).expect("counts");
        assert_eq!(l.reputation(&h).proven_byte_hours, 1000.0);
        // A long silence is credited at most the cap (restored: no age limit).
        let t = T0 + 3600 + 100 * 24 * 3600;
        assert!(l.restore(&rec(0, 9, 4, Outcome::Pass, t), t));
        let cap = 1000.0 * MAX_CREDITED_GAP as f64 / 3600.0;
        assert_eq!(l.reputation(&h).proven_byte_hours, 1000.0 + cap);
    }

    proptest! {
        /// Whatever records keys that proved nothing send, in any order and at any time,
        /// no node's standing moves and none of them gets a voice.
        #[test]
        fn strangers_never_move_a_standing(
            recs in proptest::collection::vec(
                (20u8..40, prop_oneof![Just(1u8), Just(2), Just(9), 20u8..40], 1u8..7, 0u8..6, 0u64..4000),
                0..200,
            )
        ) {
            let mut l = ledger();
            let before: Vec<Reputation> = [1u8, 2, 3, 9].iter().map(|n| l.reputation(&id(*n))).collect();
            for (a, h, p, o, dt) in recs {
                let outcome = [Outcome::Pass, Outcome::Missing, Outcome::Corrupt,
                    Outcome::BadProof, Outcome::WrongBytes, Outcome::Timeout][usize::from(o)];
                let r = rec(a, h, p, outcome, T0 + dt);
                if l.admit(&r, T0 + dt).is_ok() {
                    l.apply(&r, T0 + dt).ok();
                }
                prop_assert!(!l.speaks_for(&id(a), &STRIPE, T0 + dt));
            }
            let after: Vec<Reputation> = [1u8, 2, 3, 9].iter().map(|n| l.reputation(&id(*n))).collect();
            prop_assert_eq!(before, after);
        }
    }
}
