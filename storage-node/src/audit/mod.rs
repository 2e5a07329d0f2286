//! Audits: who proved what, signed, and the standing each node earns from it.
//!
//! Everything here is pure: records, their signatures and encoding ([`record`]), the
//! [`Ledger`] that turns records into reputation and contribution ([`ledger`]), and the
//! [`Auditor`] that chooses what to challenge each round ([`auditor`]). The node's async
//! shell sends the challenges, signs the results, stores them (rocksdb, through the
//! store) and sends them to the co-holders of the stripes they are about.
//!
//! # Records
//!
//! An [`AuditRecord`] says: auditor A challenged holder H for piece P (of `len` bytes) in
//! round R at time T, and the answer passed or failed for a stated [`Outcome`]. A signs the
//! record with its node key ([`SignedRecord`]), so anyone can check who made the claim and
//! no third node can make it in A's name. Records travel as a fixed 182-byte encoding.
//!
//! # Only proven co-holders speak
//!
//! Anyone can make keys, so a signature says who made a record, not that its maker has
//! any business making it. A ledger is kept by one node about the stripes it holds pieces
//! of (its *scope*), and it counts a record of another auditor only when:
//!
//! - the piece belongs to a stripe in scope;
//! - this node has itself seen the auditor pass a challenge for a piece of that stripe
//!   within [`PROOF_HORIZON`] (so the auditor provably holds part of it: a key that holds
//!   nothing has no voice, however many of them there are);
//! - this node has itself challenged the subject about that stripe (the subject signed an
//!   announcement that it holds a piece of it), so no auditor can move the standing of a
//!   node outside the stripes they share;
//! - the auditor is within its quota ([`AUDITOR_BURST`] records, refilled at
//!   [`AUDITOR_RATE`] per second), the record is not older than [`MAX_RECORD_AGE`], and
//!   the auditor is not flagged.
//!
//! These checks are cheap and come before the signature check ([`Ledger::admit`]). The
//! node's own records always count. Standing decays: results older than
//! [`SCORE_HORIZON`] and forgery witnesses older than [`FLAG_HORIZON`] are forgotten.
//!
//! # Reputation comes from others
//!
//! What a node says about itself is never counted (records with `auditor == holder` are
//! refused). One auditor cannot sink a node alone: a node is *flagged* (treated as
//! byzantine) only when [`FORGERY_WITNESSES`] distinct auditors have seen it answer with
//! forged data (a proof that does not verify, or bytes that do not hash to the piece).
//! Failures of other kinds (timeouts, missing pieces) lower its score and, when
//! [`FAILING_AFTER`] come in a row from two auditors or from this node itself, make it
//! *failing*: its pieces no longer count as healthy and repair moves them elsewhere.
//!
//! # Contribution
//!
//! Byte-hours proven: when holder H passes an audit of piece P at time `t` and its previous
//! passed audit of P was at `t0`, H is credited `len × (t - t0)` byte-seconds (a gap is
//! credited at most [`MAX_CREDITED_GAP`], so an old pass followed by a new one does not
//! credit the silence between them).

pub mod auditor;
pub mod ledger;
pub mod record;

pub use auditor::{AuditTarget, Auditor};
pub use ledger::{
    AUDITOR_BURST, AUDITOR_RATE, FAILING_AFTER, FLAG_HORIZON, FORGERY_WITNESSES, Ledger,
    MAX_CREDITED_GAP, MAX_NODES, MAX_RECORD_AGE, PROOF_HORIZON, Refusal, Reputation, SCORE_HORIZON,
    SCORE_WINDOW, Trust,
};
pub use record::{AuditRecord, Outcome, RECORD_LEN, RecordError, SignedRecord};
