//! What a node reports about itself: `cairn node status`, `/v1/network` and `/metrics`
//! read these, and the live counters behind them.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::{
    audit::Reputation,
    net::wire::{self, NodeInfo},
};

/// What `cairn node status` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node itself.
    pub info: NodeInfo,
    /// Nodes this one knows: met, and not gone (connected or not).
    pub peers: Vec<String>,
    /// Datasets whose manifests it holds.
    pub datasets: u64,
    /// Bytes served to others over the data plane.
    pub served_bytes: u64,
    /// Bytes fetched into the store.
    pub received_bytes: u64,
    /// This node's standing, from the audit records others signed about it.
    pub reputation: Reputation,
    /// What its upkeep has done since it started.
    pub upkeep: UpkeepStats,
    /// Its view of every node's standing (itself included, from others' records).
    pub ledger: Vec<wire::LedgerEntry>,
}

/// Counters of a node's audits, scrubs and repairs since it started.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UpkeepStats {
    /// Audit rounds this node ran.
    #[serde(default)]
    pub audit_rounds: u64,
    /// Audits this node made of others.
    pub audits: u64,
    /// Of those, failed.
    pub audit_fails: u64,
    /// Challenge and proof bytes (and retrieval bytes) its audits moved.
    pub audit_wire_bytes: u64,
    /// Bytes read from disk to answer challenges: sampled leaves and outboard values, or
    /// whole pieces where a piece had no outboard yet.
    pub proof_disk_bytes: u64,
    /// Bytes re-hashed by scrubbing.
    pub scrubbed_bytes: u64,
    /// Corrupt pieces found (by scrub or challenge) and deleted.
    pub corrupt_dropped: u64,
    /// Stripes repaired.
    pub repairs: u64,
    /// Pieces rebuilt and placed.
    pub pieces_rebuilt: u64,
    /// Bytes fetched to rebuild pieces.
    pub repair_fetched_bytes: u64,
    /// Rebuilt bytes placed on other nodes.
    pub repair_written_bytes: u64,
    /// Time spent repairing, from the fresh look after a claim settles to the last
    /// placement, summed over jobs (milliseconds).
    #[serde(default)]
    pub repair_busy_ms: u64,
    /// Versions refused because another publisher owns their name here.
    #[serde(default)]
    pub name_conflicts: u64,
}

/// The live counters behind [`UpkeepStats`].
#[derive(Debug, Default)]
pub(super) struct UpkeepCounters {
    pub(super) audit_rounds: AtomicU64,
    pub(super) audits: AtomicU64,
    pub(super) audit_fails: AtomicU64,
    pub(super) audit_wire_bytes: AtomicU64,
    pub(super) proof_disk_bytes: AtomicU64,
    pub(super) scrubbed_bytes: AtomicU64,
    pub(super) corrupt_dropped: AtomicU64,
    pub(super) repairs: AtomicU64,
    pub(super) pieces_rebuilt: AtomicU64,
    pub(super) repair_fetched_bytes: AtomicU64,
    pub(super) repair_written_bytes: AtomicU64,
    pub(super) repair_busy_ms: AtomicU64,
    pub(super) name_conflicts: AtomicU64,
}

impl UpkeepCounters {
    pub(super) fn snapshot(&self) -> UpkeepStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        UpkeepStats {
            audit_rounds: g(&self.audit_rounds),
            audits: g(&self.audits),
            audit_fails: g(&self.audit_fails),
            audit_wire_bytes: g(&self.audit_wire_bytes),
            proof_disk_bytes: g(&self.proof_disk_bytes),
            scrubbed_bytes: g(&self.scrubbed_bytes),
            corrupt_dropped: g(&self.corrupt_dropped),
            repairs: g(&self.repairs),
            pieces_rebuilt: g(&self.pieces_rebuilt),
            repair_fetched_bytes: g(&self.repair_fetched_bytes),
            repair_written_bytes: g(&self.repair_written_bytes),
            repair_busy_ms: g(&self.repair_busy_ms),
            name_conflicts: g(&self.name_conflicts),
        }
    }
}
