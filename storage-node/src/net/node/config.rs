//! How to run a node: its places, peers, timers and upkeep settings.

use std::{path::PathBuf, time::Duration};

use libp2p::Multiaddr;

/// How long an idle connection stays open by default: long enough for a reader's or a
/// pusher's next request to reuse it, short enough that connections made for one ask do
/// not pile up into a mesh.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How to run a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Data directory: identity key, rocksdb, piece files.
    pub data_dir: PathBuf,
    /// libp2p listen address (TCP). The data plane binds the same IP and port over UDP.
    pub listen: Multiaddr,
    /// The HTTP base URL the node serves, reported to others.
    pub http: Option<String>,
    /// Bootstrap peers.
    pub peers: Vec<Multiaddr>,
    /// Most piece bytes to hold.
    pub capacity: Option<u64>,
    /// LAN discovery.
    pub mdns: bool,
    /// How often every held piece is announced again.
    pub announce_interval: Duration,
    /// How long a connection may sit idle before the node closes it. Connections to the
    /// co-holders of the stripes the node holds, and to its gossip mesh, stay open.
    pub idle_timeout: Duration,
    /// gossipsub's mesh degree: how many peers each gossip message is pushed to, and so
    /// how many connections gossip keeps open (up to twice this, per topic).
    pub gossip_mesh: usize,
    /// How long a piece may stay unreferenced by any manifest (a push that never
    /// published) before it is deleted.
    pub orphan_grace: Duration,
    /// Most (piece, holder) entries the node remembers about others (about 100 bytes
    /// each); when full, room is taken from peers without standing that claim the most.
    pub holder_entries: usize,
    /// The operator this node declares: one person's or organisation's machines, which
    /// may fail or leave together, so no two pieces of a stripe go to one operator.
    pub operator: Option<String>,
    /// Whether nodes in one IPv4 /24 or IPv6 /48 count as one failure domain (the
    /// default). Off for a network whose nodes all share one site or LAN, which would
    /// otherwise be one domain: its nodes are then told apart by operator only.
    pub subnet_domains: bool,
    /// Misbehaviour on purpose, for tests; only builds with the `fault-injection`
    /// feature (never a release) can set it.
    #[cfg(feature = "fault-injection")]
    pub faults: Faults,
    /// Audits, scrub and repair.
    pub upkeep: UpkeepConfig,
}

/// Fault injection: a node that misbehaves on purpose, so tests can show that the
/// network catches it. Set through [`NodeConfig`] in builds with the `fault-injection`
/// feature only.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Serve pieces with a flipped byte, as a dishonest node.
    pub serve_corrupt: bool,
    /// Answer other nodes' challenges with forged proofs.
    pub forge_proofs: bool,
}

/// How a node audits, scrubs and repairs.
#[derive(Debug, Clone)]
pub struct UpkeepConfig {
    /// Mean time between audit rounds; each wait is drawn uniformly from half to one and a
    /// half times this, so holders cannot predict the next round.
    pub audit_interval: Duration,
    /// Most challenges per round.
    pub audit_batch: usize,
    /// Time between the starts of scrub passes over every held piece.
    pub scrub_interval: Duration,
    /// Most bytes per second a scrub pass reads.
    pub scrub_rate: u64,
    /// Repair when a stripe has fewer healthy pieces than this; `None` for `k + ceil(m/2)`.
    pub repair_threshold: Option<usize>,
    /// How long a repair claim holds before others may take the stripe over.
    pub lease: Duration,
}

impl Default for UpkeepConfig {
    fn default() -> Self {
        Self {
            audit_interval: Duration::from_secs(600),
            audit_batch: 256,
            scrub_interval: Duration::from_secs(24 * 3600),
            scrub_rate: 16 << 20,
            repair_threshold: None,
            lease: Duration::from_secs(300),
        }
    }
}

impl NodeConfig {
    /// Defaults for a node in `data_dir` listening on `listen`.
    pub fn new(data_dir: PathBuf, listen: Multiaddr) -> Self {
        Self {
            data_dir,
            listen,
            http: None,
            peers: Vec::new(),
            capacity: None,
            mdns: true,
            announce_interval: Duration::from_secs(60),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            gossip_mesh: crate::net::swarm::DEFAULT_MESH,
            orphan_grace: Duration::from_secs(24 * 3600),
            holder_entries: super::holders::DEFAULT_HOLDER_ENTRIES,
            operator: None,
            subnet_domains: true,
            #[cfg(feature = "fault-injection")]
            faults: Faults::default(),
            upkeep: UpkeepConfig::default(),
        }
    }
}
