//! A storage node: one libp2p swarm task, request handlers on bounded tasks, and the data
//! plane serving pieces from the store.
//!
//! The swarm task owns the [`Swarm`] and nothing slow happens on it: each inbound request
//! is handed to a spawned handler (at most [`MAX_HANDLERS`] at once; beyond that the
//! request is answered `Busy`), which answers through the same bounded command channel
//! that everything else uses to reach the swarm.
//!
//! What a node knows about other nodes' pieces comes from holdings announcements on
//! gossipsub, each signed by the announcing node, so a node can only speak for itself.
//! Each held piece is also announced as a Kademlia provider record. New manifest versions
//! are announced by id; every node fetches, verifies and stores each one, and catches up on
//! versions it missed from every peer it connects to.

use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use libp2p::{
    Multiaddr, PeerId, Swarm, gossipsub, identify, kad, mdns, multiaddr::Protocol,
    request_response::ResponseChannel, swarm::SwarmEvent,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    NetError,
    data::{DataPlane, PieceSource},
    identity::NodeKey,
    swarm::{self, Behaviour, BehaviourEvent, Command, Control, Pending},
    wire::{
        self, DataAddr, DatasetSummary, ErrorCode, Holdings, NodeInfo, NodeRef, Request, Response,
        Trust,
    },
};
use crate::{
    audit::{Auditor, Ledger, Reputation},
    erasure::MAX_BLOCK_SIZE,
    ids::{DatasetName, NodeId, PieceId, StripeId, VersionId},
    manifest::Manifest,
    repair::{Claim, ClaimBoard},
    store::{PieceStore, Put, StoreError, StoreOptions},
};

mod challenges;
mod claims;
mod holders;
mod manifests;
mod upkeep;

use challenges::ChallengeGate;
use holders::Holders;

/// Most inbound requests handled at once, `Hold` aside.
pub const MAX_HANDLERS: usize = 64;
/// Most `Hold` requests accepted at once (each waits for one of the fetch slots), kept
/// apart so a flood of pieces never starves listings and lookups.
pub const MAX_HOLDS: usize = 256;
/// Most pieces fetched at once for `Hold` requests.
const MAX_HOLD_FETCHES: usize = 16;
/// Most gossiped batches of audit records being taken in at once.
const MAX_RECORD_BATCHES: usize = 16;
/// Most manifests fetched at once while catching up.
const MAX_CATCH_UP: usize = 4;
/// Most providers taken from one Kademlia lookup.
const MAX_PROVIDERS: usize = 32;
/// Most pieces looked up in Kademlia for one `Locate` (those no announcement covered).
const MAX_PROVIDER_LOOKUPS: usize = 64;
/// How long a Kademlia provider lookup may take.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a started node waits before it repairs anything: its peers announce all they
/// hold to each new subscriber within a second or so.
const REPAIR_WARMUP: Duration = Duration::from_secs(5);
/// How long to answer `Info` when gathering `Peers`.
const INFO_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// How long a piece may stay unreferenced by any manifest (a push that never
    /// published) before it is deleted.
    pub orphan_grace: Duration,
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
            orphan_grace: Duration::from_secs(24 * 3600),
            #[cfg(feature = "fault-injection")]
            faults: Faults::default(),
            upkeep: UpkeepConfig::default(),
        }
    }
}

/// What `cairn node status` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node itself.
    pub info: NodeInfo,
    /// Peers connected right now.
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
    /// Piece bytes read from disk to answer challenges.
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
struct UpkeepCounters {
    audit_rounds: AtomicU64,
    audits: AtomicU64,
    audit_fails: AtomicU64,
    audit_wire_bytes: AtomicU64,
    proof_disk_bytes: AtomicU64,
    scrubbed_bytes: AtomicU64,
    corrupt_dropped: AtomicU64,
    repairs: AtomicU64,
    pieces_rebuilt: AtomicU64,
    repair_fetched_bytes: AtomicU64,
    repair_written_bytes: AtomicU64,
    repair_busy_ms: AtomicU64,
    name_conflicts: AtomicU64,
}

impl UpkeepCounters {
    fn snapshot(&self) -> UpkeepStats {
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

struct State {
    peer: PeerId,
    store: Arc<PieceStore>,
    data: DataPlane,
    control: Control,
    http: Option<String>,
    listen: Mutex<Vec<Multiaddr>>,
    connected: Mutex<HashMap<PeerId, Vec<Multiaddr>>>,
    holders: Mutex<Holders>,
    /// Pieces stored since the last announcement.
    fresh: Mutex<Vec<[u8; 32]>>,
    hold_permits: Semaphore,
    catch_up_permits: Arc<Semaphore>,
    record_permits: Arc<Semaphore>,
    served: Arc<AtomicU64>,
    received: AtomicU64,
    /// This node's id and the key it signs audit records with.
    me: NodeId,
    signing: ed25519_dalek::SigningKey,
    ledger: Mutex<Ledger>,
    auditor: Mutex<Auditor>,
    claims: Mutex<ClaimBoard>,
    challenges: ChallengeGate,
    /// Claimers challenged recently to vet their claims.
    vetted: Mutex<claims::Vetted>,
    /// Pieces referenced by manifests refused for a name conflict: never orphans.
    refused_refs: Mutex<HashSet<PieceId>>,
    /// Rebuilt pieces being handed to their new holders, served from memory meanwhile.
    staged: Arc<Mutex<HashMap<PieceId, bytes::Bytes>>>,
    /// Repair jobs claimed and recorded in the store.
    journal: Mutex<HashSet<StripeId>>,
    /// Stripes being repaired by this node right now.
    repairing: Mutex<HashSet<StripeId>>,
    stats: UpkeepCounters,
    /// When repairs may start: a node that has just started has not heard every holder
    /// announce what it holds yet.
    repair_from: tokio::time::Instant,
    upkeep: UpkeepConfig,
    forge_proofs: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Serves pieces from the store to the data plane.
struct StoreSource {
    store: Arc<PieceStore>,
    served: Arc<AtomicU64>,
    staged: Arc<Mutex<HashMap<PieceId, bytes::Bytes>>>,
}

impl PieceSource for StoreSource {
    fn piece(&self, id: &PieceId) -> Option<bytes::Bytes> {
        if let Some(b) = lock(&self.staged).get(id) {
            return Some(b.clone());
        }
        // The data plane checks the bytes against the id while building what it sends.
        match self.store.read_piece(id) {
            Ok(b) => Some(b.into()),
            Err(StoreError::PieceNotFound(_)) => None,
            Err(e) => {
                warn!(piece = %id, "not serving piece: {e}");
                None
            }
        }
    }

    fn served(&self, bytes: u64) {
        self.served.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// The ed25519 key inside a peer id (ed25519 peer ids inline their key), which is also
/// that node's data-plane endpoint id.
pub fn data_id_of(peer: &PeerId) -> Option<[u8; 32]> {
    let mh: &libp2p::multihash::Multihash<64> = peer.as_ref();
    if mh.code() != 0 {
        return None;
    }
    let pk = libp2p::identity::PublicKey::try_decode_protobuf(mh.digest()).ok()?;
    Some(pk.try_into_ed25519().ok()?.to_bytes())
}

/// A node's data-plane address from its libp2p addresses: the same key, and the same IP
/// and port over UDP.
fn data_ref(peer: &PeerId, addrs: &[Multiaddr]) -> Option<NodeRef> {
    let id = data_id_of(peer)?;
    let addrs: Vec<SocketAddr> = addrs
        .iter()
        .filter_map(|a| Some(SocketAddr::new(ip_of(a), tcp_port_of(a)?)))
        .filter(|s| !s.ip().is_unspecified())
        .collect();
    (!addrs.is_empty()).then(|| NodeRef {
        peer: peer.to_string(),
        data: DataAddr { id, addrs },
    })
}

/// A running storage node.
#[derive(Debug)]
pub struct Node {
    state: Arc<StateHandle>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// Opaque so `Node` can derive Debug without exposing the state.
struct StateHandle(Arc<State>);

impl std::fmt::Debug for StateHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Node({})", self.0.peer)
    }
}

fn ip_of(addr: &Multiaddr) -> IpAddr {
    addr.iter()
        .find_map(|p| match p {
            Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
            Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
            _ => None,
        })
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

fn tcp_port_of(addr: &Multiaddr) -> Option<u16> {
    addr.iter().find_map(|p| match p {
        Protocol::Tcp(port) => Some(port),
        _ => None,
    })
}

impl Node {
    /// Opens the store, binds both planes, dials the bootstrap peers and starts serving.
    pub async fn start(config: NodeConfig) -> Result<Self, NetError> {
        let key = NodeKey::load_or_create(&config.data_dir)?;
        let opts = StoreOptions {
            dir: config.data_dir.clone(),
            capacity: config.capacity,
        };
        let (store, report) = tokio::task::spawn_blocking(move || PieceStore::open(opts))
            .await
            .map_err(|e| NetError::Setup(e.to_string()))??;
        info!(
            pieces = report.pieces,
            bytes = report.bytes,
            lost = report.lost.len(),
            "store opened"
        );
        let store = Arc::new(store);
        let mut swarm = swarm::build(key.keypair(), swarm::Role::Node { mdns: config.mdns })?;
        swarm
            .listen_on(config.listen.clone())
            .map_err(|e| NetError::Listen {
                addr: config.listen.to_string(),
                reason: e.to_string(),
            })?;
        // Learn the port actually bound, so the data plane can take the same one on UDP.
        let listen = loop {
            match swarm.next().await {
                Some(SwarmEvent::NewListenAddr { address, .. }) => break address,
                Some(SwarmEvent::ListenerError { error, .. })
                | Some(SwarmEvent::ListenerClosed {
                    reason: Err(error), ..
                }) => {
                    return Err(NetError::Listen {
                        addr: config.listen.to_string(),
                        reason: error.to_string(),
                    });
                }
                Some(_) => {}
                None => return Err(NetError::Stopped),
            }
        };
        let port = tcp_port_of(&listen).unwrap_or(0);
        let served = Arc::new(AtomicU64::new(0));
        let staged: Arc<Mutex<HashMap<PieceId, bytes::Bytes>>> = Arc::default();
        #[cfg(feature = "fault-injection")]
        let faults = config.faults;
        #[cfg(not(feature = "fault-injection"))]
        let faults = Faults::default();
        let data = DataPlane::bind(
            key.secret(),
            SocketAddr::new(ip_of(&config.listen), port),
            Arc::new(StoreSource {
                store: store.clone(),
                served: served.clone(),
                staged: staged.clone(),
            }),
            faults.serve_corrupt,
        )
        .await?;
        if faults.serve_corrupt {
            warn!("fault injection: this node serves corrupted pieces");
        }
        if faults.forge_proofs {
            warn!("fault injection: this node answers challenges with forged proofs");
        }
        // The ledger starts from the records kept from earlier runs, over the stripes
        // held now; this node's own records first, since they are what lets others' count.
        let signing = ed25519_dalek::SigningKey::from_bytes(&key.secret());
        let me = NodeId(signing.verifying_key().to_bytes());
        let ledger = {
            let store = store.clone();
            let (stripes, mut kept) = tokio::task::spawn_blocking(move || {
                store.prune_audit_records(crate::store::MAX_STORED_RECORDS)?;
                Ok::<_, StoreError>((upkeep::held_stripes(&store)?, store.audit_records()?))
            })
            .await
            .map_err(|e| NetError::Setup(e.to_string()))??;
            let mut ledger = Ledger::new(me);
            ledger.set_scope(stripes.iter().map(upkeep::HeldStripe::scope));
            kept.sort_by_key(|r| (r.record.auditor != me, r.record.time_unix));
            let now = upkeep::now_unix();
            let restored = kept.iter().filter(|r| ledger.restore(r, now)).count();
            debug!(restored, kept = kept.len(), "audit records restored");
            ledger
        };
        for topic in [
            wire::MANIFEST_TOPIC,
            wire::HOLDINGS_TOPIC,
            wire::AUDITS_TOPIC,
            wire::REPAIRS_TOPIC,
        ] {
            swarm
                .behaviour_mut()
                .gossip
                .subscribe(&gossipsub::IdentTopic::new(topic))
                .map_err(|e| NetError::Setup(e.to_string()))?;
        }
        for addr in &config.peers {
            if let Some(peer) = swarm::peer_of(addr) {
                swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
            }
            if let Err(e) = swarm.dial(addr.clone()) {
                warn!(%addr, "cannot dial bootstrap peer: {e}");
            }
        }
        let (tx, rx) = mpsc::channel(swarm::COMMAND_QUEUE);
        let peer = *swarm.local_peer_id();
        let state = Arc::new(State {
            peer,
            store,
            data,
            control: Control { tx },
            http: config.http.clone(),
            listen: Mutex::new(vec![listen.with(Protocol::P2p(peer))]),
            connected: Mutex::default(),
            holders: Mutex::default(),
            fresh: Mutex::default(),
            hold_permits: Semaphore::new(MAX_HOLD_FETCHES),
            catch_up_permits: Arc::new(Semaphore::new(MAX_CATCH_UP)),
            record_permits: Arc::new(Semaphore::new(MAX_RECORD_BATCHES)),
            served,
            received: AtomicU64::new(0),
            me,
            signing,
            ledger: Mutex::new(ledger),
            auditor: Mutex::new(Auditor::new(&key.secret())),
            claims: Mutex::default(),
            challenges: ChallengeGate::default(),
            vetted: Mutex::default(),
            refused_refs: Mutex::default(),
            staged,
            journal: Mutex::default(),
            repairing: Mutex::default(),
            stats: UpkeepCounters::default(),
            repair_from: tokio::time::Instant::now() + REPAIR_WARMUP,
            upkeep: config.upkeep.clone(),
            forge_proofs: faults.forge_proofs,
        });
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(
            swarm,
            rx,
            state.clone(),
            cancel.clone(),
            config.announce_interval,
            config.orphan_grace,
            config.peers.clone(),
        ));
        info!(%peer, addr = %lock(&state.listen)[0], "node started");
        Ok(Self {
            state: Arc::new(StateHandle(state)),
            cancel,
            task,
        })
    }

    /// The node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.state.0.peer
    }

    /// The address others pass to `--peer`.
    pub fn peer_addr(&self) -> Multiaddr {
        lock(&self.state.0.listen)
            .first()
            .cloned()
            .unwrap_or_else(Multiaddr::empty)
    }

    /// A handle for sending control requests from this node.
    pub fn control(&self) -> Control {
        self.state.0.control.clone()
    }

    /// The node's store.
    pub fn store(&self) -> &Arc<PieceStore> {
        &self.state.0.store
    }

    /// The data plane (to fetch pieces from peers).
    pub fn data(&self) -> &DataPlane {
        &self.state.0.data
    }

    /// Who the DHT's provider records say holds `piece`.
    pub async fn providers(&self, piece: PieceId) -> Vec<PeerId> {
        self.state.0.providers(piece).await
    }

    /// Status for `cairn node status`.
    pub fn status(&self) -> NodeStatus {
        let s = &self.state.0;
        // Each lock is taken and released on its own: none is held across another.
        let reputation = lock(&s.ledger).reputation(&s.me);
        let ledger = s.ledger_entries();
        NodeStatus {
            info: s.info(),
            peers: lock(&s.connected).keys().map(|p| p.to_string()).collect(),
            datasets: s.store.datasets().map_or(0, |d| d.len() as u64),
            served_bytes: s.served.load(Ordering::Relaxed),
            received_bytes: s.received.load(Ordering::Relaxed),
            reputation,
            upkeep: s.stats.snapshot(),
            ledger,
        }
    }

    /// Stops the swarm, says goodbye on the data plane and closes the store.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        if let Err(e) = self.task.await {
            warn!("node task ended badly: {e}");
        }
        self.state.0.data.shutdown().await;
        info!("node stopped");
    }
}

impl State {
    fn info(&self) -> NodeInfo {
        let stats = self.store.stats();
        NodeInfo {
            peer: self.peer.to_string(),
            addrs: lock(&self.listen)
                .iter()
                .take(wire::MAX_DATA_ADDRS)
                .map(|a| a.to_string())
                .collect(),
            data: self.data.addr(),
            http: self.http.clone(),
            pieces: stats.pieces,
            bytes: stats.bytes,
            capacity: stats.capacity,
            connected: lock(&self.connected).len() as u32,
            served: self.served.load(Ordering::Relaxed),
            trust: Trust::New,
        }
    }

    fn node_ref(&self, peer: &PeerId) -> Option<NodeRef> {
        if *peer == self.peer {
            return Some(NodeRef {
                peer: peer.to_string(),
                data: self.data.addr(),
            });
        }
        let data = lock(&self.holders)
            .by_peer
            .get(peer)
            .map(|(d, _)| d.clone())?;
        Some(NodeRef {
            peer: peer.to_string(),
            data,
        })
    }

    async fn handle(self: &Arc<Self>, from: PeerId, request: Request) -> Response {
        match self.handle_inner(from, request).await {
            Ok(r) => r,
            Err((code, message)) => Response::Error { code, message },
        }
    }

    async fn handle_inner(
        self: &Arc<Self>,
        from: PeerId,
        request: Request,
    ) -> Result<Response, (ErrorCode, String)> {
        let internal = |e: &dyn std::fmt::Display| (ErrorCode::Internal, e.to_string());
        match request {
            Request::Info => Ok(Response::Info(self.info())),
            Request::Peers => {
                let peers: Vec<(PeerId, Vec<Multiaddr>)> = lock(&self.connected)
                    .iter()
                    .map(|(p, a)| (*p, a.clone()))
                    .collect();
                let asks = peers.into_iter().map(|(p, addrs)| {
                    let c = self.control.clone();
                    async move {
                        match tokio::time::timeout(INFO_TIMEOUT, c.request(p, addrs, Request::Info))
                            .await
                        {
                            Ok(Ok(Response::Info(i))) if i.peer == p.to_string() && i.is_sane() => {
                                Some(i)
                            }
                            _ => None,
                        }
                    }
                });
                let mut all: Vec<NodeInfo> =
                    futures::future::join_all(asks.take(wire::MAX_PEERS_LISTED - 1))
                        .await
                        .into_iter()
                        .flatten()
                        .collect();
                all.push(self.info());
                // Each is marked with how far this node trusts it; whatever it said of
                // itself is overwritten.
                let now = upkeep::now_unix();
                let ledger = lock(&self.ledger);
                for i in &mut all {
                    i.trust = i
                        .peer
                        .parse::<PeerId>()
                        .ok()
                        .and_then(|p| data_id_of(&p))
                        .map_or(Trust::New, |id| ledger.trust(&NodeId(id), now));
                }
                drop(ledger);
                Ok(Response::Peers(all))
            }
            Request::Hold {
                piece,
                len,
                from: src,
            } => self.hold(from, PieceId(piece), len, src).await,
            Request::Publish { manifest } => {
                if manifest.len() > wire::MAX_NETWORK_MANIFEST {
                    return Err((ErrorCode::BadRequest, "manifest too large".into()));
                }
                let m = Manifest::decode(&manifest)
                    .map_err(|e| (ErrorCode::BadRequest, format!("invalid manifest: {e}")))?;
                let new = self.store_manifest(m).await?;
                Ok(Response::Published { new })
            }
            Request::Datasets => {
                let store = self.store.clone();
                let list = blocking(move || dataset_summaries(&store))
                    .await
                    .map_err(|e| internal(&e))?;
                Ok(Response::Datasets(list))
            }
            Request::Versions => {
                let store = self.store.clone();
                let v = blocking(move || -> Result<Vec<[u8; 32]>, StoreError> {
                    let mut out = Vec::new();
                    for (name, _) in store.datasets()? {
                        out.extend(store.versions(&name)?.into_iter().map(|v| v.0));
                        if out.len() >= wire::MAX_LIST {
                            out.truncate(wire::MAX_LIST);
                            break;
                        }
                    }
                    Ok(out)
                })
                .await
                .map_err(|e| internal(&e))?;
                Ok(Response::Versions(v))
            }
            Request::Manifest { name, version } => {
                let store = self.store.clone();
                let name = match name {
                    Some(n) => Some(
                        n.parse::<DatasetName>()
                            .map_err(|e| (ErrorCode::BadRequest, e.to_string()))?,
                    ),
                    None => None,
                };
                let m = blocking(move || match (name, version) {
                    (Some(n), v) => store.resolve(&n, v.map(VersionId).as_ref()).map(Some),
                    (None, Some(v)) => store.manifest(&VersionId(v)),
                    (None, None) => Ok(None),
                })
                .await;
                match m {
                    Ok(Some(m)) => Ok(Response::Manifest(m.as_bytes().to_vec())),
                    Ok(None) | Err(StoreError::NotFound(_)) => {
                        Err((ErrorCode::NotFound, "no such dataset or version".into()))
                    }
                    Err(e) => Err(internal(&e)),
                }
            }
            Request::History { name } => {
                let name: DatasetName = name
                    .parse()
                    .map_err(|e: crate::ids::IdError| (ErrorCode::BadRequest, e.to_string()))?;
                let store = self.store.clone();
                let shown = name.to_string();
                let list = blocking(move || -> Result<Vec<wire::VersionSummary>, StoreError> {
                    Ok(store
                        .version_records(&name, wire::MAX_DATASETS_LISTED)?
                        .into_iter()
                        .map(|v| wire::VersionSummary {
                            version: v.version.0,
                            created_unix: v.created_unix,
                            size: v.size,
                            files: u32::try_from(v.files).unwrap_or(u32::MAX),
                        })
                        .collect())
                })
                .await
                .map_err(|e| internal(&e))?;
                if list.is_empty() {
                    return Err((ErrorCode::NotFound, format!("no dataset {shown}")));
                }
                Ok(Response::History(list))
            }
            Request::Locate { pieces } => {
                if pieces.len() > wire::MAX_LOCATE {
                    return Err((
                        ErrorCode::BadRequest,
                        format!("at most {} pieces per Locate", wire::MAX_LOCATE),
                    ));
                }
                let store = self.store.clone();
                let ids: Vec<PieceId> = pieces.into_iter().map(PieceId).collect();
                let ids2 = ids.clone();
                let mine: Vec<bool> = blocking(move || {
                    Ok::<_, StoreError>(
                        ids2.iter()
                            .map(|p| store.has_piece(p).unwrap_or(false))
                            .collect(),
                    )
                })
                .await
                .map_err(|e| internal(&e))?;
                let connected: HashMap<PeerId, Vec<Multiaddr>> = lock(&self.connected)
                    .iter()
                    .filter(|(p, _)| !self.is_flagged(p))
                    .map(|(p, a)| (*p, a.clone()))
                    .collect();
                let mut out: Vec<Vec<NodeRef>> = {
                    let holders = lock(&self.holders);
                    ids.iter()
                        .zip(mine)
                        .map(|(id, mine)| {
                            let mut v: Vec<NodeRef> = Vec::new();
                            if mine {
                                v.extend(self.node_ref(&self.peer));
                            }
                            // Filter first, then cut: announcers that are gone or
                            // flagged must not crowd the real holders out.
                            v.extend(
                                holders
                                    .holders(id)
                                    .filter(|(p, _)| connected.contains_key(*p))
                                    .take(wire::MAX_HOLDERS_LISTED)
                                    .map(|(p, d)| NodeRef {
                                        peer: p.to_string(),
                                        data: d.clone(),
                                    }),
                            );
                            v
                        })
                        .collect()
                };
                // Pieces no announcement covered: ask the DHT's provider records.
                let missing: Vec<usize> = (0..ids.len())
                    .filter(|&i| out[i].is_empty())
                    .take(MAX_PROVIDER_LOOKUPS)
                    .collect();
                let lookups = missing.iter().map(|&i| self.providers(ids[i]));
                let found = futures::future::join_all(lookups).await;
                // A provider record outlives the piece (it stays in the DHT after a holder
                // deletes a corrupt copy): a peer whose announcements this node has, and
                // which did not announce the piece, does not hold it.
                let announced: HashSet<PeerId> =
                    lock(&self.holders).by_peer.keys().copied().collect();
                for (&i, peers) in missing.iter().zip(found) {
                    for p in peers {
                        if announced.contains(&p) {
                            continue;
                        }
                        if let Some(r) = connected.get(&p).and_then(|a| data_ref(&p, a)) {
                            out[i].push(r);
                        }
                    }
                }
                Ok(Response::Located(out))
            }
            Request::Challenge { challenge } => self.answer_challenge(from, &challenge).await,
            Request::Ledger => Ok(Response::Ledger(self.ledger_entries())),
        }
    }

    /// Every node this one is connected to or has records about, with its standing.
    fn ledger_entries(&self) -> Vec<wire::LedgerEntry> {
        let mut known: Vec<NodeId> = lock(&self.connected)
            .keys()
            .filter_map(|p| data_id_of(p).map(NodeId))
            .collect();
        let ledger = lock(&self.ledger);
        known.extend(ledger.nodes().map(|(n, _)| *n));
        known.sort_unstable();
        known.dedup();
        known
            .into_iter()
            .take(wire::MAX_LEDGER_LISTED)
            .filter_map(|n| {
                Some(wire::LedgerEntry {
                    peer: upkeep::peer_of_node(&n)?.to_string(),
                    reputation: ledger.reputation(&n),
                })
            })
            .collect()
    }

    /// Whether the ledger has caught `peer` forging: it is not named as a holder to
    /// readers, and no repair reads from it.
    fn is_flagged(&self, peer: &PeerId) -> bool {
        data_id_of(peer).is_some_and(|id| lock(&self.ledger).flagged(&NodeId(id)))
    }

    /// Providers of `piece` from Kademlia, within a deadline.
    async fn providers(&self, piece: PieceId) -> Vec<PeerId> {
        let (reply, rx) = oneshot::channel();
        let cmd = Command::Providers {
            key: kad::RecordKey::new(&piece.0),
            reply,
        };
        if self.control.send(cmd).await.is_err() {
            return Vec::new();
        }
        tokio::time::timeout(PROVIDER_TIMEOUT, rx)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
    }

    async fn hold(
        self: &Arc<Self>,
        from: PeerId,
        id: PieceId,
        len: u32,
        src: DataAddr,
    ) -> Result<Response, (ErrorCode, String)> {
        // A node fetches only from the peer asking: no one can aim it at a third party.
        if data_id_of(&from) != Some(src.id) {
            return Err((
                ErrorCode::BadRequest,
                "a piece can only be offered from the requester's own data address".into(),
            ));
        }
        if len == 0 || len > MAX_BLOCK_SIZE {
            return Err((
                ErrorCode::BadRequest,
                format!("piece length {len} out of range"),
            ));
        }
        if self.store.has_piece(&id).unwrap_or(false) {
            return Ok(Response::Held { already: true });
        }
        let stats = self.store.stats();
        if let Some(cap) = stats.capacity
            && stats.bytes.saturating_add(u64::from(len)) > cap
        {
            return Err((
                ErrorCode::NoCapacity,
                format!("{} of {cap} bytes used", stats.bytes),
            ));
        }
        let _permit = self
            .hold_permits
            .acquire()
            .await
            .map_err(|_| (ErrorCode::Busy, "shutting down".into()))?;
        let bytes = self
            .data
            .fetch(&src, id, len)
            .await
            .map_err(|e| (ErrorCode::FetchFailed, e.to_string()))?;
        let store = self.store.clone();
        let put = blocking(move || store.put_piece(id, &bytes)).await;
        match put {
            Ok(Put::Stored) => {
                self.received.fetch_add(u64::from(len), Ordering::Relaxed);
                lock(&self.fresh).push(id.0);
                debug!(piece = %id, %from, "piece stored");
                Ok(Response::Held { already: false })
            }
            Ok(Put::AlreadyHeld) => Ok(Response::Held { already: true }),
            Err(StoreError::CapacityExceeded { .. }) => {
                Err((ErrorCode::NoCapacity, "capacity exceeded".into()))
            }
            Err(StoreError::HashMismatch { .. }) => Err((
                ErrorCode::FetchFailed,
                "bytes did not match the piece id".into(),
            )),
            Err(StoreError::Busy(_)) => Err((ErrorCode::Busy, "piece is being written".into())),
            Err(e) => Err((ErrorCode::Internal, e.to_string())),
        }
    }

    /// Announces `pieces` on gossip (in batches) and, with `provide`, as Kademlia provider
    /// records (needed once per piece per run: Kademlia republishes them itself).
    async fn announce(&self, pieces: Vec<[u8; 32]>, provide: bool) {
        for chunk in pieces.chunks(wire::HOLDINGS_BATCH) {
            let h = Holdings {
                data: self.data.addr(),
                pieces: chunk.to_vec(),
                dropped: vec![],
            };
            let gossip = Command::Gossip {
                topic: wire::HOLDINGS_TOPIC,
                data: h.encode(),
            };
            if self.control.send(gossip).await.is_err() {
                return;
            }
            if provide {
                let keys = chunk.iter().map(kad::RecordKey::new).collect();
                if self.control.send(Command::Provide(keys)).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn blocking<T, E>(f: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, E>
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(StoreError::Db(format!("task failed: {e}")).into()),
    }
}

/// Summaries of the datasets in `store`, for listings: from the datasets' records alone,
/// so a listing costs the same however large the manifests are.
pub fn dataset_summaries(store: &PieceStore) -> Result<Vec<DatasetSummary>, StoreError> {
    Ok(store
        .datasets_up_to(wire::MAX_DATASETS_LISTED)?
        .into_iter()
        .map(|(name, rec)| DatasetSummary {
            name: name.to_string(),
            latest: rec.latest.to_string(),
            versions: u32::try_from(rec.versions).unwrap_or(u32::MAX),
            size: rec.size,
            files: u32::try_from(rec.files).unwrap_or(u32::MAX),
            license: rec
                .license
                .chars()
                .take(wire::MAX_SUMMARY_LICENSE)
                .collect(),
        })
        .collect())
}

async fn run(
    mut swarm: Swarm<Behaviour>,
    mut rx: mpsc::Receiver<Command>,
    state: Arc<State>,
    cancel: CancellationToken,
    announce_interval: Duration,
    orphan_grace: Duration,
    bootstrap: Vec<Multiaddr>,
) {
    let mut pending = Pending::default();
    // A node that knows no peer keeps dialling its bootstrap peers, backing off from 1 s
    // to 30 s: they may start after it, or be restarting.
    let mut redial_every = Duration::from_secs(1);
    let mut next_redial = tokio::time::Instant::now() + redial_every;
    let handlers = Arc::new(Semaphore::new(MAX_HANDLERS));
    let holds = Arc::new(Semaphore::new(MAX_HOLDS));
    let mut flush = tokio::time::interval(Duration::from_millis(250));
    let mut full = tokio::time::interval(announce_interval);
    // A full announcement shortly after someone new subscribes to holdings.
    let mut reannounce: Option<tokio::time::Instant> = None;
    let mut met: HashSet<PeerId> = HashSet::new();
    let mut rounds = 0usize;
    let mut announcing: Option<tokio::task::JoinHandle<()>> = None;
    let mut collecting: Option<tokio::task::JoinHandle<()>> = None;
    let orphans: Arc<Mutex<HashMap<PieceId, tokio::time::Instant>>> = Arc::default();
    let mut provided_all = false;
    let mut provider_queries = ProviderQueries::new();
    let upkeep = state.upkeep.clone();
    // The first audit round comes after a full interval, once holdings have been heard.
    let mut next_audit = tokio::time::Instant::now() + jittered(upkeep.audit_interval);
    let mut audit_round: u64 = 0;
    let mut auditing: Option<tokio::task::JoinHandle<()>> = None;
    let mut scrub = tokio::time::interval_at(
        tokio::time::Instant::now() + upkeep.scrub_interval,
        upkeep.scrub_interval,
    );
    let mut scrubbing: Option<tokio::task::JoinHandle<()>> = None;
    tokio::spawn({
        let s = state.clone();
        async move { s.resume_jobs().await }
    });
    loop {
        let due =
            reannounce.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            () = cancel.cancelled() => break,
            Some(cmd) = rx.recv() => on_command(&mut swarm, &mut pending, &mut provider_queries, &state, cmd),
            _ = flush.tick() => {
                let fresh = std::mem::take(&mut *lock(&state.fresh));
                if !fresh.is_empty() {
                    let s = state.clone();
                    tokio::spawn(async move { s.announce(fresh, true).await });
                }
            }
            _ = full.tick() => {
                reannounce = Some(tokio::time::Instant::now());
                // Holders announce everything every interval: three missed, and what they
                // said is stale.
                let stale = upkeep::now_unix().saturating_sub(3 * announce_interval.as_secs().max(1));
                lock(&state.holders).expire(stale);
                if collecting.as_ref().is_none_or(|t: &tokio::task::JoinHandle<()>| t.is_finished()) {
                    let s = state.clone();
                    let orphans = orphans.clone();
                    collecting = Some(tokio::spawn(async move {
                        s.clone().collect_orphans(orphans, orphan_grace).await;
                        // Audit records are kept to a bound, oldest dropped first.
                        let store = s.store.clone();
                        blocking(move || store.prune_audit_records(crate::store::MAX_STORED_RECORDS)).await.ok();
                    }));
                }
                // Heal missed gossip: compare versions with one connected peer per round.
                let peers: Vec<PeerId> = lock(&state.connected).keys().copied().collect();
                if !peers.is_empty() {
                    let pick = peers[rounds % peers.len()];
                    rounds += 1;
                    tokio::spawn(state.clone().catch_up(pick));
                }
            }
            () = tokio::time::sleep_until(next_audit) => {
                next_audit = tokio::time::Instant::now() + jittered(upkeep.audit_interval);
                // One round at a time: a slow round delays the next, it never piles up.
                if auditing.as_ref().is_none_or(|t: &tokio::task::JoinHandle<()>| t.is_finished()) {
                    // Rounds are numbered by time, so a restarted node never reuses one.
                    audit_round = audit_round.max(upkeep::now_unix().saturating_mul(1000)) + 1;
                    auditing = Some(tokio::spawn(state.clone().audit_round(audit_round)));
                }
            }
            () = tokio::time::sleep_until(next_redial), if !bootstrap.is_empty() => {
                if lock(&state.connected).is_empty() {
                    for addr in &bootstrap {
                        if swarm::peer_of(addr).is_some_and(|p| swarm.is_connected(&p)) {
                            continue;
                        }
                        if let Err(e) = swarm.dial(addr.clone()) {
                            debug!(%addr, "cannot dial bootstrap peer: {e}");
                        }
                    }
                    redial_every = (redial_every * 2).min(Duration::from_secs(30));
                } else {
                    redial_every = Duration::from_secs(1);
                }
                next_redial = tokio::time::Instant::now() + redial_every;
            }
            _ = scrub.tick() => {
                if scrubbing.as_ref().is_none_or(|t: &tokio::task::JoinHandle<()>| t.is_finished()) {
                    scrubbing = Some(tokio::spawn(state.clone().scrub_pass(upkeep.scrub_rate)));
                }
            }
            () = tokio::time::sleep_until(due), if reannounce.is_some() => {
                // One full announcement at a time; the first of a run also provides. One
                // asked for while another runs waits for it rather than being dropped: a
                // peer that subscribed meanwhile may have missed the running one, and
                // nodes take holdings only from the holder itself.
                let running = announcing.as_ref().is_some_and(|t: &tokio::task::JoinHandle<()>| !t.is_finished());
                reannounce = running.then(|| tokio::time::Instant::now() + Duration::from_millis(500));
                if !running {
                    let s = state.clone();
                    // Provider records need someone to store them at: wait for a peer.
                    let provide = !provided_all && !lock(&state.connected).is_empty();
                    provided_all |= provide;
                    announcing = Some(tokio::spawn(async move {
                        let store = s.store.clone();
                        if let Ok(Ok(ids)) = tokio::task::spawn_blocking(move || store.piece_ids()).await {
                            s.announce(ids.into_iter().map(|p| p.0).collect(), provide).await;
                        }
                    }));
                }
            }
            Some(event) = swarm.next() => match event {
                SwarmEvent::Behaviour(BehaviourEvent::Control(e)) => {
                    if let Some((peer, request, channel)) = pending.on_event(e) {
                        let pool = if matches!(request, Request::Hold { .. }) { &holds } else { &handlers };
                        on_request(&mut swarm, &state, pool, peer, request, channel);
                    }
                }
                SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })) => {
                    let addrs: Vec<Multiaddr> = info
                        .listen_addrs
                        .iter()
                        .filter(|a| !a.iter().any(|p| matches!(p, Protocol::Ip4(ip) if ip.is_unspecified())))
                        .map(|a| a.clone().with_p2p(peer_id).unwrap_or_else(|a| a))
                        .collect();
                    for a in &addrs {
                        swarm.behaviour_mut().kad.add_address(&peer_id, a.clone());
                    }
                    if info.protocols.iter().any(|p| p.as_ref() == wire::CONTROL_PROTOCOL) {
                        lock(&state.connected).insert(peer_id, addrs);
                        if met.insert(peer_id) {
                            tokio::spawn(state.clone().catch_up(peer_id));
                        }
                    }
                }
                SwarmEvent::Behaviour(BehaviourEvent::Gossip(gossipsub::Event::Message { propagation_source, message_id, message })) => {
                    let connected = message.source.is_some_and(|p| swarm.is_connected(&p));
                    if let Some(verdict) = on_gossip(&state, propagation_source, &message_id, message, connected) {
                        swarm.behaviour_mut().gossip.report_message_validation_result(&message_id, &propagation_source, verdict);
                    }
                }
                SwarmEvent::Behaviour(BehaviourEvent::Gossip(gossipsub::Event::Subscribed { topic, .. }))
                    if topic == gossipsub::IdentTopic::new(wire::HOLDINGS_TOPIC).hash() && reannounce.is_none() =>
                {
                    reannounce = Some(tokio::time::Instant::now() + Duration::from_millis(500));
                }
                SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(list))) => {
                    for (peer, addr) in list {
                        swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
                        if !swarm.is_connected(&peer) {
                            swarm.dial(addr).ok();
                        }
                    }
                }
                SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                    lock(&state.connected).remove(&peer_id);
                    lock(&state.holders).forget(&peer_id);
                    met.remove(&peer_id);
                }
                SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                    id,
                    result: kad::QueryResult::GetProviders(r),
                    step,
                    ..
                })) => {
                    let done = match r {
                        Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) => {
                            if let Some((_, found)) = provider_queries.get_mut(&id) {
                                found.extend(providers.into_iter().take(MAX_PROVIDERS));
                            }
                            step.last
                        }
                        _ => true,
                    };
                    if done && let Some((tx, found)) = provider_queries.remove(&id) {
                        tx.send(found).ok();
                    }
                }
                SwarmEvent::NewListenAddr { address, .. } => {
                    let full = address.with(Protocol::P2p(state.peer));
                    let mut l = lock(&state.listen);
                    if !l.contains(&full) {
                        l.push(full);
                        // Addresses others can reach first: loopback last.
                        l.sort_by_key(|a| ip_of(a).is_loopback());
                    }
                }
                SwarmEvent::ExpiredListenAddr { address, .. } => {
                    let full = address.with(Protocol::P2p(state.peer));
                    lock(&state.listen).retain(|a| *a != full);
                }
                SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                    debug!(?peer_id, "dial failed: {error}");
                }
                _ => {}
            },
        }
    }
    for t in [auditing, scrubbing, announcing, collecting]
        .into_iter()
        .flatten()
    {
        t.abort();
    }
    // Leave politely: close connections so peers see us go at once.
    let peers: Vec<PeerId> = swarm.connected_peers().copied().collect();
    for p in peers {
        swarm.disconnect_peer_id(p).ok();
    }
}

/// `mean` scaled by a uniform draw from [0.5, 1.5).
fn jittered(mean: Duration) -> Duration {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).ok();
    let u = (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64;
    mean.mul_f64(0.5 + u)
}

/// Kademlia provider lookups in flight: who asked, and what was found so far.
type ProviderQueries = HashMap<kad::QueryId, (oneshot::Sender<Vec<PeerId>>, Vec<PeerId>)>;

fn on_command(
    swarm: &mut Swarm<Behaviour>,
    pending: &mut Pending,
    queries: &mut ProviderQueries,
    state: &Arc<State>,
    cmd: Command,
) {
    match cmd {
        Command::Request {
            peer,
            addrs,
            request,
            reply,
        } => {
            let addrs = if addrs.is_empty() {
                lock(&state.connected)
                    .get(&peer)
                    .cloned()
                    .unwrap_or_default()
            } else {
                addrs
            };
            pending.send(swarm, peer, addrs, request, reply);
        }
        Command::Respond { channel, response } => {
            swarm
                .behaviour_mut()
                .control
                .send_response(channel, response)
                .ok();
        }
        Command::Gossip { topic, data } => {
            if let Err(e) = swarm
                .behaviour_mut()
                .gossip
                .publish(gossipsub::IdentTopic::new(topic), data)
            {
                debug!(topic, "gossip not sent: {e}");
            }
        }
        Command::Providers { key, reply } => {
            let id = swarm.behaviour_mut().kad.get_providers(key);
            queries.insert(id, (reply, Vec::new()));
        }
        Command::Validate { id, from, verdict } => {
            swarm
                .behaviour_mut()
                .gossip
                .report_message_validation_result(&id, &from, verdict);
        }
        Command::Provide(keys) => {
            for k in keys {
                swarm.behaviour_mut().kad.start_providing(k).ok();
            }
        }
    }
}

fn on_request(
    swarm: &mut Swarm<Behaviour>,
    state: &Arc<State>,
    handlers: &Arc<Semaphore>,
    peer: PeerId,
    request: Request,
    channel: ResponseChannel<Response>,
) {
    let Ok(permit) = handlers.clone().try_acquire_owned() else {
        let busy = Response::Error {
            code: ErrorCode::Busy,
            message: "too many requests in progress; retry shortly".into(),
        };
        swarm
            .behaviour_mut()
            .control
            .send_response(channel, busy)
            .ok();
        return;
    };
    let state = state.clone();
    tokio::spawn(async move {
        let response = state.handle(peer, request).await;
        state
            .control
            .send(Command::Respond { channel, response })
            .await
            .ok();
        drop(permit);
    });
}

/// Judges a gossip message and acts on it. Returns the verdict at once where it is cheap
/// to reach; for audit records, whose signatures are checked off this task, the verdict
/// comes later as a [`Command::Validate`] and this returns `None`. `connected`: whether
/// the message's author is connected to this node right now.
fn on_gossip(
    state: &Arc<State>,
    via: PeerId,
    id: &gossipsub::MessageId,
    message: gossipsub::Message,
    connected: bool,
) -> Option<gossipsub::MessageAcceptance> {
    use gossipsub::MessageAcceptance::{Accept, Ignore, Reject};
    let Some(source) = message.source else {
        return Some(Reject);
    };
    if message.topic == gossipsub::IdentTopic::new(wire::MANIFEST_TOPIC).hash() {
        let Ok(version) = <[u8; 32]>::try_from(message.data.as_slice()) else {
            debug!(%source, "malformed manifest announcement");
            return Some(Reject);
        };
        // Bounded: when busy, the periodic catch-up with peers fetches it instead.
        match state.catch_up_permits.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(state.clone().fetch_manifest(source, version, permit));
            }
            Err(_) => debug!(%source, "busy; the announced manifest will come with catch-up"),
        }
        Some(Accept)
    } else if message.topic == gossipsub::IdentTopic::new(wire::HOLDINGS_TOPIC).hash() {
        let Some(h) = Holdings::decode(&message.data) else {
            debug!(%source, "malformed holdings announcement");
            return Some(Reject);
        };
        if data_id_of(&source) != Some(h.data.id) {
            warn!(%source, "holdings announced for another node's data address; ignored");
            return Some(Reject);
        }
        // Announcements count only from a node connected here: each costs its sender a
        // connection, so one connection cannot stand in for thousands of identities.
        if !connected {
            debug!(%source, "holdings from a node not connected here; ignored");
            return Some(Ignore);
        }
        lock(&state.holders).add(source, h.data, &h.pieces, &h.dropped, upkeep::now_unix());
        Some(Accept)
    } else if message.topic == gossipsub::IdentTopic::new(wire::AUDITS_TOPIC).hash() {
        let Some(records) = wire::decode_records(&message.data) else {
            debug!(%source, "malformed audit records");
            return Some(Reject);
        };
        // A node gossips only the records it signed itself.
        if records
            .iter()
            .any(|r| data_id_of(&source) != Some(r.record.auditor.0))
        {
            debug!(%source, "audit records signed by another node; rejected");
            return Some(Reject);
        }
        // Cheap filters first (scope, who may speak, age, the auditor's quota); only what
        // passes them costs a signature check, and that runs off this task.
        let now = upkeep::now_unix();
        let admitted: Vec<_> = {
            let mut ledger = lock(&state.ledger);
            records
                .into_iter()
                .filter(|r| ledger.admit(r, now).is_ok())
                .collect()
        };
        if admitted.is_empty() {
            return Some(Ignore);
        }
        // Bounded: when the node is behind, records are dropped (their auditors keep
        // them, and later rounds make more).
        let Ok(permit) = state.record_permits.clone().try_acquire_owned() else {
            debug!(%source, "busy; audit records dropped");
            return Some(Ignore);
        };
        let (s, id) = (state.clone(), id.clone());
        tokio::spawn(async move {
            let checked = tokio::task::spawn_blocking(move || {
                admitted
                    .iter()
                    .all(|r| r.verify().is_ok())
                    .then_some(admitted)
            })
            .await
            .ok()
            .flatten();
            let verdict = match checked {
                None => {
                    warn!(%source, "audit records whose signatures do not verify; rejected");
                    Reject
                }
                Some(records) => {
                    if s.take_records(records).await > 0 {
                        Accept
                    } else {
                        Ignore
                    }
                }
            };
            s.control
                .send(Command::Validate {
                    id,
                    from: via,
                    verdict,
                })
                .await
                .ok();
            drop(permit);
        });
        None
    } else if message.topic == gossipsub::IdentTopic::new(wire::REPAIRS_TOPIC).hash() {
        let Some(claimer) = data_id_of(&source).map(NodeId) else {
            return Some(Reject);
        };
        let Some(c) = Claim::decode(&message.data, claimer) else {
            debug!(%source, "malformed repair claim");
            return Some(Reject);
        };
        // Only a node that proved to this one that it holds a piece of the stripe may
        // claim its repair (a flagged or failing one may not); anyone else's claim holds
        // nothing back.
        Some(state.take_claim(source, c))
    } else {
        Some(Reject)
    }
}
