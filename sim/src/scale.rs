//! What one node costs in a network of `nodes` nodes holding `data_bytes`: a closed-form
//! model of the per-node figures `cairn bench --only scale` measures, to carry them to
//! sizes no one machine can run (10,000 nodes, 10 PB).
//!
//! # The model
//!
//! - **Holdings.** Data is coded `k + m` and spread evenly: a node stores
//!   `data × (k + m) / k / nodes` bytes, `P` pieces of `piece_bytes`, one piece of each of
//!   `P` stripes.
//! - **Co-holders.** Each of a node's stripes has `n - 1 = k + m - 1` other holders,
//!   drawn uniformly from the other `nodes - 1` (placement from the whole network). The
//!   expected number of distinct co-holders is `(N - 1)(1 - (1 - (n - 1)/(N - 1))^P)`:
//!   about `P (n - 1)` while that is small against the network, and nearly every node
//!   once it is not.
//! - **Holder table and ledger.** A node's holder table keeps its co-holders' pieces of
//!   the stripes it holds, `P (n - 1)` entries; its ledger tracks its co-holders. It
//!   keeps one placement record per stripe it holds, and stores, as a DHT server, its
//!   share of every stripe's record at `replication` peers.
//! - **Connections.** A node keeps its co-holders connected, and its gossip mesh (two
//!   topics, `mesh` peers each, counted once apart from the co-holders); routing-table
//!   peers are dialled when used and closed when idle.
//! - **Idle control traffic** (in and out, which are equal on average), per second:
//!   full announcements (`P (n - 1)` piece ids of 32 bytes every `announce_secs`), audit
//!   rounds (`min(audit_batch, P (n - 1))` challenges and proofs every `audit_secs`, both
//!   ways), and the records of those audits, each sent to the stripe's `n - 1` other
//!   holders.
//! - **Memory** is a fixed base plus `entry_bytes` per holder-table entry, ledger piece
//!   and kept placement record, and each DHT record stored for others at its size.
//!
//! What it leaves out: start-up and push traffic, manifests (O(versions held)), the
//! Kademlia routing table (`20 log2 N` entries of a few hundred bytes), and skew from
//! capacity-weighted placement.

/// What the model is given.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleParams {
    /// Nodes in the network.
    pub nodes: f64,
    /// Data published, before coding, in bytes.
    pub data_bytes: f64,
    /// Data pieces per stripe.
    pub k: u16,
    /// Parity pieces per stripe.
    pub m: u16,
    /// Bytes per piece.
    pub piece_bytes: f64,
    /// Seconds between a node's full announcements.
    pub announce_secs: f64,
    /// Mean seconds between a node's audit rounds.
    pub audit_secs: f64,
    /// Most (holder, piece) pairs challenged in one round.
    pub audit_batch: f64,
    /// Leaves sampled by one challenge.
    pub samples: f64,
    /// Gossip mesh peers per topic.
    pub mesh: f64,
    /// Peers that keep a copy of each DHT record.
    pub replication: f64,
    /// Memory per holder-table entry, ledger piece or kept placement record, in bytes.
    pub entry_bytes: f64,
    /// Memory of a node holding nothing, in bytes.
    pub base_bytes: f64,
}

impl Default for ScaleParams {
    /// Cairn's defaults: code 16 + 8 with 1 MiB pieces, announcements every 60 s, audit
    /// rounds of 256 every 600 s with 32 leaves each, gossip mesh 6, Kademlia's
    /// replication of 20; 160 bytes an entry and a 80 MiB base (RSS of an idle node in
    /// the scale bench, debug build).
    fn default() -> Self {
        Self {
            nodes: 10_000.0,
            data_bytes: 10e15,
            k: 16,
            m: 8,
            piece_bytes: f64::from(1u32 << 20),
            announce_secs: 60.0,
            audit_secs: 600.0,
            audit_batch: 256.0,
            samples: 32.0,
            mesh: 6.0,
            replication: 20.0,
            entry_bytes: 160.0,
            base_bytes: 80.0 * f64::from(1u32 << 20),
        }
    }
}

/// Bytes of a piece id, as announced.
const ID_BYTES: f64 = 32.0;
/// Bytes of a signed audit record.
const RECORD_BYTES: f64 = 182.0;
/// Bytes of a challenge.
const CHALLENGE_BYTES: f64 = 75.0;
/// Bytes of a proof's leaf.
const LEAF_BYTES: f64 = 1024.0;
/// Bytes of a chaining value in a proof.
const HASH_BYTES: f64 = 32.0;
/// Request framing and protocol overhead per message, in bytes.
const FRAME_BYTES: f64 = 64.0;

/// One node's costs, as the model has them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodeCost {
    /// Bytes of pieces stored.
    pub stored_bytes: f64,
    /// Pieces held (one per stripe).
    pub pieces: f64,
    /// Distinct other nodes holding a piece of a stripe it holds.
    pub co_holders: f64,
    /// Connections kept open.
    pub connections: f64,
    /// Holder-table entries.
    pub holder_entries: f64,
    /// Nodes in its ledger.
    pub ledger_entries: f64,
    /// Placement records it keeps as a holder.
    pub placement_records: f64,
    /// Placement records it stores for others as a DHT server.
    pub dht_records: f64,
    /// Bytes of one proof.
    pub proof_bytes: f64,
    /// Idle control traffic, in and out, bytes per second: announcements.
    pub announce_bps: f64,
    /// The same: challenges and proofs.
    pub audit_bps: f64,
    /// The same: audit records to co-holders.
    pub records_bps: f64,
    /// Memory, bytes.
    pub memory_bytes: f64,
}

impl NodeCost {
    /// All idle control traffic, bytes per second.
    pub fn idle_bps(&self) -> f64 {
        self.announce_bps + self.audit_bps + self.records_bps
    }
}

/// Expected distinct co-holders of a node holding one piece each of `pieces` stripes of
/// `n` pieces, placed uniformly at random over `nodes` nodes.
pub fn co_holders(nodes: f64, n: f64, pieces: f64) -> f64 {
    let others = (nodes - 1.0).max(0.0);
    if others == 0.0 || n <= 1.0 {
        return 0.0;
    }
    let p = ((n - 1.0) / others).min(1.0);
    others * (1.0 - (1.0 - p).powf(pieces))
}

/// Bytes of a proof over `samples` leaves of a piece of `piece_bytes`: the leaves, and
/// for each the chaining values below the level where the sampled paths meet.
pub fn proof_bytes(piece_bytes: f64, samples: f64) -> f64 {
    let leaves = (piece_bytes / LEAF_BYTES).ceil().max(1.0);
    let s = samples.min(leaves);
    let depth = leaves.log2().ceil();
    let unshared = (depth - s.log2().floor()).max(0.0);
    s * LEAF_BYTES + s * unshared * HASH_BYTES
}

/// Bytes of a placement record of a stripe of `n` pieces.
pub fn placement_bytes(n: f64) -> f64 {
    200.0 + 50.0 * n
}

/// One node's costs under `p`, holding `pieces` pieces (`None`: its even share of
/// `p.data_bytes`).
pub fn node_cost(p: &ScaleParams, pieces: Option<f64>) -> NodeCost {
    let n = f64::from(p.k) + f64::from(p.m);
    let stored_bytes = p.data_bytes * n / f64::from(p.k.max(1)) / p.nodes.max(1.0);
    let pieces = pieces.unwrap_or(stored_bytes / p.piece_bytes.max(1.0));
    let co = co_holders(p.nodes, n, pieces);
    let entries = pieces * (n - 1.0);
    let mesh_apart = (2.0 * p.mesh).min((p.nodes - 1.0 - co).max(0.0));
    let stripes = p.data_bytes / (f64::from(p.k.max(1)) * p.piece_bytes.max(1.0));
    let dht_records = stripes * p.replication.min(p.nodes) / p.nodes.max(1.0);
    let proof = proof_bytes(p.piece_bytes, p.samples);
    let audited = p.audit_batch.min(entries);
    let announce_bps = 2.0 * (entries * ID_BYTES + co * FRAME_BYTES) / p.announce_secs;
    let audit_bps = 2.0 * audited * (CHALLENGE_BYTES + proof + 2.0 * FRAME_BYTES) / p.audit_secs;
    let records_bps = 2.0 * audited * (n - 1.0) * RECORD_BYTES / p.audit_secs;
    let memory_bytes = p.base_bytes
        + (2.0 * entries + pieces) * p.entry_bytes
        + dht_records * (placement_bytes(n) + p.entry_bytes);
    NodeCost {
        stored_bytes,
        pieces,
        co_holders: co,
        connections: co + mesh_apart,
        holder_entries: entries,
        ledger_entries: co,
        placement_records: pieces,
        dht_records,
        proof_bytes: proof,
        announce_bps,
        audit_bps,
        records_bps,
        memory_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn few_stripes_have_nearly_all_their_co_holders_distinct() {
        // 3 stripes of 6 in 10,000 nodes: 15 co-holders, barely any shared.
        let c = co_holders(10_000.0, 6.0, 3.0);
        assert!((c - 15.0).abs() < 0.05, "{c}");
    }

    #[test]
    fn many_stripes_make_every_node_a_co_holder() {
        let c = co_holders(10_000.0, 24.0, 1e6);
        assert!((c - 9_999.0).abs() < 1e-6, "{c}");
    }

    #[test]
    fn the_scale_bench_points_are_reproduced() {
        // Measured (`cairn bench --only scale`, k=4 m=2): 5 pieces at 10 nodes, 25
        // holder entries and 9 ledger entries; 3 pieces at 30 nodes, 15 and 13.
        let at = |nodes: f64, pieces: f64| {
            let p = ScaleParams {
                nodes,
                k: 4,
                m: 2,
                ..ScaleParams::default()
            };
            node_cost(&p, Some(pieces))
        };
        let ten = at(10.0, 5.0);
        assert_eq!(ten.holder_entries, 25.0);
        assert!((ten.ledger_entries - 9.0).abs() < 0.5, "{ten:?}");
        let thirty = at(30.0, 3.0);
        assert_eq!(thirty.holder_entries, 15.0);
        assert!((thirty.ledger_entries - 13.0).abs() < 1.0, "{thirty:?}");
    }

    #[test]
    fn a_proof_of_a_mebibyte_piece_is_its_leaves_and_a_few_hashes_each() {
        // 32 leaves of 1 KiB out of 1024: depth 10, paths shared above level 5.
        assert_eq!(
            proof_bytes(f64::from(1u32 << 20), 32.0),
            32.0 * 1024.0 + 32.0 * 5.0 * 32.0
        );
        // A piece smaller than the sample is sent whole (as leaves).
        assert_eq!(proof_bytes(4096.0, 32.0), 4.0 * 1024.0);
    }

    proptest! {
        #[test]
        fn co_holders_grow_with_pieces_and_never_pass_the_network(
            nodes in 2.0f64..1e5,
            n in 2.0f64..64.0,
            pieces in 0.0f64..1e6,
            more in 0.0f64..1e3,
        ) {
            let a = co_holders(nodes, n, pieces);
            let b = co_holders(nodes, n, pieces + more);
            prop_assert!(a >= 0.0);
            prop_assert!(b + 1e-9 >= a);
            prop_assert!(b <= nodes - 1.0 + 1e-9);
            prop_assert!(a <= pieces * (n - 1.0) + 1e-9);
        }

        #[test]
        fn per_node_costs_do_not_grow_with_the_network_at_fixed_holdings(
            nodes in 1e5f64..1e6,
            pieces in 1.0f64..100.0,
        ) {
            // Few pieces against a large network (P (n - 1) well below it): what a node keeps depends on what it
            // holds, within 1.3 of the same holdings in a network ten times smaller.
            let p = |nodes| ScaleParams { nodes, ..ScaleParams::default() };
            let small = node_cost(&p(nodes), Some(pieces));
            let big = node_cost(&p(nodes * 10.0), Some(pieces));
            prop_assert!(big.holder_entries <= small.holder_entries * 1.3);
            prop_assert!(big.connections <= small.connections * 1.3);
            prop_assert!(big.idle_bps() <= small.idle_bps() * 1.3);
        }
    }
}
