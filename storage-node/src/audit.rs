//! Audits: who proved what, signed, and the standing each node earns from it.
//!
//! Everything here is pure: records, their signatures and encoding, the [`Ledger`] that
//! turns records into reputation and contribution, and the [`Auditor`] that chooses what
//! to challenge each round. The node's async shell sends the challenges, signs the
//! results, stores them (rocksdb, through the store) and gossips them.
//!
//! # Records
//!
//! An [`AuditRecord`] says: auditor A challenged holder H for piece P (of `len` bytes) in
//! round R at time T, and the answer passed or failed for a stated [`Outcome`]. A signs the
//! record with its node key ([`SignedRecord`]), so anyone can check who made the claim and
//! no third node can make it in A's name. Records travel as a fixed 182-byte encoding.
//!
//! # Reputation comes from others
//!
//! A node's standing is computed only from records whose auditor is another node: what a
//! node says about itself is never counted (records with `auditor == holder` are refused).
//! One auditor cannot sink a node alone: a node is *flagged* (treated as byzantine) only
//! when [`FORGERY_WITNESSES`] distinct auditors have seen it answer with forged data (a
//! proof that does not verify, or bytes that do not hash to the piece). Failures of other
//! kinds (timeouts, missing pieces) lower its score and, when they repeat, make it
//! *failing*: its pieces no longer count as healthy and repair moves them elsewhere.
//!
//! # Contribution
//!
//! Byte-hours proven: when holder H passes an audit of piece P at time `t` and its previous
//! passed audit of P was at `t0`, H is credited `len × (t - t0)` byte-seconds (a gap is
//! credited at most [`MAX_CREDITED_GAP`], so an old pass followed by a new one does not
//! credit the silence between them).

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use proofs::codec::{Reader, Writer};

use crate::ids::{NodeId, PieceId};

/// Encoded length of a [`SignedRecord`].
pub const RECORD_LEN: usize = 1 + 32 + 32 + 32 + 4 + 8 + 8 + 1 + 64;
/// Distinct auditors that must have caught a node forging before it is flagged.
pub const FORGERY_WITNESSES: usize = 2;
/// Audit results per node that its score is computed over (most recent first).
pub const SCORE_WINDOW: usize = 64;
/// Consecutive failed audits (of any of its pieces) after which a node is failing.
pub const FAILING_AFTER: usize = 3;
/// Longest gap between two passed audits that is credited as proven storage.
pub const MAX_CREDITED_GAP: u64 = 7 * 24 * 3600;
/// Most pieces per node whose last pass and last failure are tracked.
const MAX_TRACKED_PIECES: usize = 1 << 18;
/// Most nodes in a ledger.
const MAX_NODES: usize = 1 << 14;
/// Most record digests remembered to drop duplicates.
const MAX_SEEN: usize = 1 << 20;
const RECORD_VERSION: u8 = 1;
const SIGNING_CONTEXT: &[u8] = b"cairn audit record v1\0";

/// How an audit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// The proof verified (or the bytes fetched hashed to the piece).
    Pass,
    /// The holder said it does not have the piece.
    Missing,
    /// The holder found its own copy corrupt (and drops it).
    Corrupt,
    /// The holder answered with a proof that does not verify.
    BadProof,
    /// The holder served bytes that do not hash to the piece.
    WrongBytes,
    /// The holder did not answer within the deadline, or could not be reached.
    Timeout,
}

impl Outcome {
    fn code(self) -> u8 {
        match self {
            Self::Pass => 0,
            Self::Missing => 1,
            Self::Corrupt => 2,
            Self::BadProof => 3,
            Self::WrongBytes => 4,
            Self::Timeout => 5,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            0 => Self::Pass,
            1 => Self::Missing,
            2 => Self::Corrupt,
            3 => Self::BadProof,
            4 => Self::WrongBytes,
            5 => Self::Timeout,
            _ => return None,
        })
    }

    /// Whether the audit passed.
    pub fn passed(self) -> bool {
        self == Self::Pass
    }

    /// Whether the holder answered with data that is not what it committed to: a forged
    /// proof or wrong bytes. An honest node never does: it checks its own copy before it
    /// answers and reports corruption instead.
    pub fn forged(self) -> bool {
        matches!(self, Self::BadProof | Self::WrongBytes)
    }

    /// A short name for tables and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Missing => "missing",
            Self::Corrupt => "corrupt",
            Self::BadProof => "bad proof",
            Self::WrongBytes => "wrong bytes",
            Self::Timeout => "timeout",
        }
    }
}

/// One audit result, as its auditor states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AuditRecord {
    /// Who challenged.
    pub auditor: NodeId,
    /// Who was challenged.
    pub holder: NodeId,
    /// The piece.
    pub piece: PieceId,
    /// The piece's length (for contribution accounting).
    pub len: u32,
    /// The auditor's round number.
    pub round: u64,
    /// When, seconds since the epoch.
    pub time_unix: u64,
    /// The result.
    pub outcome: Outcome,
}

/// Why a record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The bytes are not a record.
    #[error("malformed audit record: {0}")]
    Malformed(String),
    /// The signature is not the auditor's.
    #[error("audit record signature does not verify against its auditor's key")]
    BadSignature,
    /// A node audited itself.
    #[error("audit record about its own auditor")]
    SelfAudit,
}

impl AuditRecord {
    fn body(&self) -> Writer {
        let mut w = Writer::with_capacity(RECORD_LEN);
        w.u8(RECORD_VERSION);
        w.raw(&self.auditor.0);
        w.raw(&self.holder.0);
        w.raw(&self.piece.0);
        w.u32(self.len);
        w.u64(self.round);
        w.u64(self.time_unix);
        w.u8(self.outcome.code());
        w
    }

    fn signing_message(&self) -> Vec<u8> {
        let mut m = SIGNING_CONTEXT.to_vec();
        m.extend_from_slice(&self.body().into_bytes());
        m
    }

    /// Signs the record with the auditor's key. `key` must be the auditor's: a record
    /// signed by any other key fails [`SignedRecord::verify`].
    pub fn sign(self, key: &SigningKey) -> SignedRecord {
        let sig = key.sign(&self.signing_message());
        SignedRecord {
            record: self,
            sig: sig.to_bytes(),
        }
    }
}

/// A record with its auditor's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SignedRecord {
    /// The record.
    pub record: AuditRecord,
    /// ed25519 signature by `record.auditor`.
    pub sig: [u8; 64],
}

impl SignedRecord {
    /// The fixed-length encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = self.record.body();
        w.raw(&self.sig);
        w.into_bytes()
    }

    /// Decodes a record; it still has to be [`verified`](Self::verify).
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let bad = |e: proofs::DecodeError| RecordError::Malformed(e.to_string());
        if bytes.len() != RECORD_LEN {
            return Err(RecordError::Malformed(format!(
                "{} bytes, expected {RECORD_LEN}",
                bytes.len()
            )));
        }
        let mut r = Reader::new(bytes);
        r.version("audit record", RECORD_VERSION).map_err(bad)?;
        let auditor = NodeId(r.array::<32>("auditor").map_err(bad)?);
        let holder = NodeId(r.array::<32>("holder").map_err(bad)?);
        let piece = PieceId(r.array::<32>("piece").map_err(bad)?);
        let len = r.u32("length").map_err(bad)?;
        let round = r.u64("round").map_err(bad)?;
        let time_unix = r.u64("time").map_err(bad)?;
        let code = r.u8("outcome").map_err(bad)?;
        let outcome = Outcome::from_code(code)
            .ok_or_else(|| RecordError::Malformed(format!("unknown outcome {code}")))?;
        let sig = r.array::<64>("signature").map_err(bad)?;
        r.finish().map_err(bad)?;
        Ok(Self {
            record: AuditRecord {
                auditor,
                holder,
                piece,
                len,
                round,
                time_unix,
                outcome,
            },
            sig,
        })
    }

    /// Checks the signature against the auditor's key, and that the auditor is not the
    /// holder.
    pub fn verify(&self) -> Result<(), RecordError> {
        if self.record.auditor == self.record.holder {
            return Err(RecordError::SelfAudit);
        }
        let key = VerifyingKey::from_bytes(&self.record.auditor.0)
            .map_err(|_| RecordError::BadSignature)?;
        key.verify_strict(
            &self.record.signing_message(),
            &Signature::from_bytes(&self.sig),
        )
        .map_err(|_| RecordError::BadSignature)
    }

    /// A digest identifying the record (for dropping duplicates and as a storage key).
    pub fn digest(&self) -> [u8; 32] {
        *blake3::hash(&self.encode()).as_bytes()
    }

    /// Decodes and verifies, in one step, bytes from a peer.
    pub fn decode_verified(bytes: &[u8]) -> Result<Self, RecordError> {
        let r = Self::decode(bytes)?;
        r.verify()?;
        Ok(r)
    }
}

/// What the ledger knows of one node, from others' records.
#[derive(Debug, Clone, Default)]
struct Standing {
    passes: u64,
    fails: u64,
    /// Most recent results first, at most [`SCORE_WINDOW`].
    recent: VecDeque<bool>,
    /// Consecutive failures, reset by a pass.
    failing_streak: usize,
    forgery_witnesses: BTreeSet<NodeId>,
    auditors: BTreeSet<NodeId>,
    last_pass: HashMap<PieceId, u64>,
    /// Pieces whose most recent audit failed.
    bad_pieces: HashSet<PieceId>,
    proven_byte_secs: u128,
}

/// A node's standing, as a ledger computes it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Reputation {
    /// Passed audits recorded by others.
    pub passes: u64,
    /// Failed audits recorded by others.
    pub fails: u64,
    /// Score in `[0, 1]`: the Beta(1, 1) posterior mean of passing over the last
    /// [`SCORE_WINDOW`] audits; 0 once flagged. A node no one has audited scores 0.5.
    pub score: f64,
    /// Caught forging by [`FORGERY_WITNESSES`] or more distinct auditors.
    pub flagged: bool,
    /// Failed its last [`FAILING_AFTER`] audits or more.
    pub failing: bool,
    /// Distinct auditors who recorded anything about it.
    pub auditors: u32,
    /// Byte-hours of storage proven.
    pub proven_byte_hours: f64,
}

/// Reputation and contribution of every node, derived from signed audit records.
#[derive(Debug, Default)]
pub struct Ledger {
    nodes: HashMap<NodeId, Standing>,
    seen: HashSet<[u8; 32]>,
    seen_order: VecDeque<[u8; 32]>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes in a verified record. Returns whether it was new (a duplicate, a record about
    /// its own auditor, or one over the ledger's bounds changes nothing).
    pub fn apply(&mut self, signed: &SignedRecord) -> bool {
        let r = &signed.record;
        if r.auditor == r.holder {
            return false;
        }
        // A node caught forging has no say about others: its records could only smear.
        if self.flagged(&r.auditor) {
            return false;
        }
        let digest = signed.digest();
        if self.seen.contains(&digest) {
            return false;
        }
        if !self.nodes.contains_key(&r.holder) && self.nodes.len() >= MAX_NODES {
            return false;
        }
        if self.seen_order.len() >= MAX_SEEN
            && let Some(old) = self.seen_order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.seen.insert(digest);
        self.seen_order.push_back(digest);
        let s = self.nodes.entry(r.holder).or_default();
        if s.auditors.len() < 256 {
            s.auditors.insert(r.auditor);
        }
        s.recent.push_front(r.outcome.passed());
        s.recent.truncate(SCORE_WINDOW);
        if r.outcome.passed() {
            s.passes += 1;
            s.failing_streak = 0;
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
            s.failing_streak += 1;
            if s.bad_pieces.len() < MAX_TRACKED_PIECES {
                s.bad_pieces.insert(r.piece);
            }
            if r.outcome.forged() && s.forgery_witnesses.len() < 64 {
                s.forgery_witnesses.insert(r.auditor);
            }
        }
        true
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
        let flagged = s.forgery_witnesses.len() >= FORGERY_WITNESSES;
        let p = s.recent.iter().filter(|&&x| x).count() as f64;
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
            failing: s.failing_streak >= FAILING_AFTER,
            auditors: s.auditors.len() as u32,
            proven_byte_hours: s.proven_byte_secs as f64 / 3600.0,
        }
    }

    /// Whether `node`'s copy of `piece` can be counted on: the node is neither flagged nor
    /// failing, and its last audit of that piece did not fail.
    pub fn trusted(&self, node: &NodeId, piece: &PieceId) -> bool {
        match self.nodes.get(node) {
            None => true,
            Some(s) => {
                s.forgery_witnesses.len() < FORGERY_WITNESSES
                    && s.failing_streak < FAILING_AFTER
                    && !s.bad_pieces.contains(piece)
            }
        }
    }

    /// Whether `node` has been caught forging.
    pub fn flagged(&self, node: &NodeId) -> bool {
        self.nodes
            .get(node)
            .is_some_and(|s| s.forgery_witnesses.len() >= FORGERY_WITNESSES)
    }

    /// Every node the ledger has records about.
    pub fn nodes(&self) -> impl Iterator<Item = (&NodeId, Reputation)> {
        self.nodes.keys().map(|n| (n, self.reputation(n)))
    }
}

/// One challenge to send this round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditTarget {
    /// Who to challenge.
    pub holder: NodeId,
    /// Which piece.
    pub piece: PieceId,
    /// Its length.
    pub len: u32,
    /// Fetch the whole piece over the data plane instead of asking for a proof: a
    /// retrieval audit, which catches a node that proves storage but serves wrong bytes.
    pub retrieve: bool,
}

/// Chooses what to challenge, round after round: least recently audited first, ties
/// broken by a keyed hash so the order cannot be predicted by the holders, and derives the
/// nonces from the auditor's secret and the round.
#[derive(Debug)]
pub struct Auditor {
    nonce_key: [u8; 32],
    last: HashMap<(NodeId, PieceId), u64>,
}

/// Most (holder, piece) pairs whose last audit time an auditor remembers.
const MAX_AUDITOR_MEMORY: usize = 1 << 20;

impl Auditor {
    /// An auditor whose nonces derive from `secret` (the node key: holders cannot
    /// predict them).
    pub fn new(secret: &[u8; 32]) -> Self {
        Self {
            nonce_key: blake3::derive_key("cairn audit nonce v1", secret),
            last: HashMap::new(),
        }
    }

    /// Picks up to `batch` targets among `candidates` (holder, piece, len) for round
    /// `round` at time `now`, and `retrievals` of them as retrieval audits.
    pub fn plan(
        &mut self,
        candidates: &[(NodeId, PieceId, u32)],
        round: u64,
        now: u64,
        batch: usize,
        retrievals: usize,
    ) -> Vec<AuditTarget> {
        type Keyed<'a> = (u64, [u8; 32], &'a (NodeId, PieceId, u32));
        let mut keyed: Vec<Keyed<'_>> = candidates
            .iter()
            .map(|c| {
                let last = self.last.get(&(c.0, c.1)).copied().unwrap_or(0);
                (last, self.tiebreak(round, &c.0, &c.1), c)
            })
            .collect();
        keyed.sort_unstable_by_key(|a| (a.0, a.1));
        keyed.truncate(batch);
        if self.last.len() + keyed.len() > MAX_AUDITOR_MEMORY {
            self.last.clear();
        }
        keyed
            .iter()
            .enumerate()
            .map(|(i, (_, _, c))| {
                self.last.insert((c.0, c.1), now);
                AuditTarget {
                    holder: c.0,
                    piece: c.1,
                    len: c.2,
                    retrieve: i < retrievals,
                }
            })
            .collect()
    }

    fn tiebreak(&self, round: u64, holder: &NodeId, piece: &PieceId) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.nonce_key);
        h.update(b"order");
        h.update(&round.to_le_bytes());
        h.update(&holder.0);
        h.update(&piece.0);
        *h.finalize().as_bytes()
    }

    /// The nonce for challenging `holder` about `piece` in `round`: unpredictable without
    /// the auditor's secret, and never repeated across rounds.
    pub fn nonce(&self, round: u64, holder: &NodeId, piece: &PieceId) -> proofs::Nonce {
        let mut h = blake3::Hasher::new_keyed(&self.nonce_key);
        h.update(b"nonce");
        h.update(&round.to_le_bytes());
        h.update(&holder.0);
        h.update(&piece.0);
        proofs::Nonce(*h.finalize().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(b: u8) -> SigningKey {
        SigningKey::from_bytes(&[b; 32])
    }

    fn id(k: &SigningKey) -> NodeId {
        NodeId(k.verifying_key().to_bytes())
    }

    fn record(auditor: &SigningKey, holder: NodeId, outcome: Outcome, t: u64) -> SignedRecord {
        AuditRecord {
            auditor: id(auditor),
            holder,
            piece: PieceId([9; 32]),
            len: 1000,
            round: t,
            time_unix: t,
            outcome,
        }
        .sign(auditor)
    }

    #[test]
    fn records_sign_verify_and_roundtrip() {
        let a = key(1);
        let r = record(&a, id(&key(2)), Outcome::Pass, 100);
        let bytes = r.encode();
        assert_eq!(bytes.len(), RECORD_LEN);
        let back = SignedRecord::decode_verified(&bytes).expect("verifies");
        assert_eq!(back, r);
    }

    #[test]
    fn a_third_node_cannot_forge_a_record() {
        let (a, h, mallory) = (key(1), key(2), key(3));
        // Mallory signs a failure in A's name: the signature is not A's.
        let forged = AuditRecord {
            auditor: id(&a),
            holder: id(&h),
            piece: PieceId([9; 32]),
            len: 1000,
            round: 1,
            time_unix: 1,
            outcome: Outcome::BadProof,
        }
        .sign(&mallory);
        assert_eq!(forged.verify(), Err(RecordError::BadSignature));
        // Nor can she turn A's pass into a failure: any changed field breaks it.
        let honest = record(&a, id(&h), Outcome::Pass, 5);
        for at in 1..RECORD_LEN {
            let mut b = honest.encode();
            b[at] ^= 0x04;
            assert!(
                SignedRecord::decode_verified(&b).is_err(),
                "byte {at} changed and still verified"
            );
        }
    }

    #[test]
    fn self_audits_are_refused_and_ignored() {
        let a = key(1);
        let r = record(&a, id(&a), Outcome::Pass, 1);
        assert_eq!(r.verify(), Err(RecordError::SelfAudit));
        let mut l = Ledger::new();
        assert!(!l.apply(&r));
        assert_eq!(l.reputation(&id(&a)).passes, 0);
    }

    #[test]
    fn reputation_needs_two_witnesses_of_forgery() {
        let h = id(&key(9));
        let mut l = Ledger::new();
        for t in 0..5 {
            l.apply(&record(&key(1), h, Outcome::Pass, t));
        }
        assert!(l.reputation(&h).score > 0.8);
        l.apply(&record(&key(1), h, Outcome::BadProof, 10));
        assert!(!l.flagged(&h), "one auditor alone cannot flag a node");
        assert!(
            !l.apply(&record(&key(1), h, Outcome::BadProof, 10)),
            "duplicate"
        );
        l.apply(&record(&key(2), h, Outcome::WrongBytes, 11));
        let r = l.reputation(&h);
        assert!(r.flagged);
        assert_eq!(r.score, 0.0);
        assert!(!l.trusted(&h, &PieceId([1; 32])));
    }

    #[test]
    fn a_flagged_node_has_no_say_about_others() {
        let (forger, honest) = (key(9), key(8));
        let mut l = Ledger::new();
        l.apply(&record(&key(1), id(&forger), Outcome::BadProof, 1));
        l.apply(&record(&key(2), id(&forger), Outcome::WrongBytes, 2));
        assert!(l.flagged(&id(&forger)));
        for t in 0..10 {
            assert!(
                !l.apply(&record(&forger, id(&honest), Outcome::BadProof, t)),
                "a flagged auditor's record was taken"
            );
        }
        let r = l.reputation(&id(&honest));
        assert!(!r.flagged && !r.failing && r.fails == 0);
    }

    #[test]
    fn repeated_failures_make_a_node_failing_and_a_pass_clears_it() {
        let h = id(&key(9));
        let mut l = Ledger::new();
        for t in 0..FAILING_AFTER as u64 {
            assert!(!l.reputation(&h).failing);
            l.apply(&record(&key(1), h, Outcome::Timeout, t));
        }
        let r = l.reputation(&h);
        assert!(r.failing && !r.flagged);
        assert!(r.score < 0.5);
        l.apply(&record(&key(2), h, Outcome::Pass, 100));
        assert!(!l.reputation(&h).failing);
        assert!(l.trusted(&h, &PieceId([9; 32])));
    }

    #[test]
    fn a_failed_piece_is_untrusted_until_it_passes_again() {
        let h = id(&key(9));
        let mut l = Ledger::new();
        l.apply(&record(&key(1), h, Outcome::Missing, 1));
        assert!(!l.trusted(&h, &PieceId([9; 32])));
        assert!(l.trusted(&h, &PieceId([8; 32])));
        l.apply(&record(&key(1), h, Outcome::Pass, 2));
        assert!(l.trusted(&h, &PieceId([9; 32])));
    }

    #[test]
    fn byte_hours_are_credited_between_passes_and_capped() {
        let h = id(&key(9));
        let mut l = Ledger::new();
        l.apply(&record(&key(1), h, Outcome::Pass, 0));
        assert_eq!(l.reputation(&h).proven_byte_hours, 0.0);
        l.apply(&record(&key(2), h, Outcome::Pass, 3600));
        assert_eq!(l.reputation(&h).proven_byte_hours, 1000.0);
        // Out of order: an older pass credits nothing.
        l.apply(&record(&key(3), h, Outcome::Pass, 1800));
        assert_eq!(l.reputation(&h).proven_byte_hours, 1000.0);
        // A long silence is credited at most the cap.
        l.apply(&record(&key(1), h, Outcome::Pass, 3600 + 100 * 24 * 3600));
        let cap = 1000.0 * MAX_CREDITED_GAP as f64 / 3600.0;
        assert_eq!(l.reputation(&h).proven_byte_hours, 1000.0 + cap);
    }

    #[test]
    fn auditor_covers_everything_before_repeating_and_nonces_differ() {
        let mut a = Auditor::new(&[7; 32]);
        let c: Vec<(NodeId, PieceId, u32)> = (0..10u8)
            .map(|i| (NodeId([i; 32]), PieceId([i; 32]), 10))
            .collect();
        let first = a.plan(&c, 1, 100, 4, 1);
        let second = a.plan(&c, 2, 200, 4, 1);
        let third = a.plan(&c, 3, 300, 4, 1);
        assert_eq!(first.iter().filter(|t| t.retrieve).count(), 1);
        let mut seen: Vec<_> = first.iter().chain(&second).map(|t| t.piece).collect();
        seen.extend(third.iter().take(2).map(|t| t.piece));
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 10, "every candidate audited before any repeats");
        let (h, p) = (NodeId([1; 32]), PieceId([2; 32]));
        assert_ne!(a.nonce(1, &h, &p), a.nonce(2, &h, &p));
        assert_ne!(a.nonce(1, &h, &p), Auditor::new(&[8; 32]).nonce(1, &h, &p));
    }

    proptest! {
        /// Any bytes decode to a record or are refused, never a panic; what decodes
        /// re-encodes to the same bytes.
        #[test]
        fn record_decoder_takes_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(r) = SignedRecord::decode(&bytes) {
                prop_assert_eq!(r.encode(), bytes);
            }
        }

        #[test]
        fn record_decoder_takes_mutated_records(at in 0usize..RECORD_LEN, to in any::<u8>()) {
            let mut b = record(&key(1), NodeId([2; 32]), Outcome::Pass, 3).encode();
            b[at] = to;
            let _ = SignedRecord::decode_verified(&b);
        }
    }
}
