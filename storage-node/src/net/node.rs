//! A storage node: one libp2p swarm task, every other task in one bounded set
//! (`workers`), and the data plane serving pieces from the store.
//!
//! The swarm task owns the [`Swarm`] and nothing slow happens on it: each inbound request
//! is handed to a handler task (at most [`MAX_HANDLERS`] at once; beyond that the
//! request is answered `Busy`), which answers through the same bounded command channel
//! that everything else uses to reach the swarm.
//!
//! What a node knows about other nodes' pieces comes from holdings announcements that
//! the co-holders of its stripes send it directly (`announce`), each over the sender's
//! own connection, so a node can only speak for itself. Each stripe's holders are also in
//! its placement record, which the DHT stores (the `placements` module). New manifest versions
//! are announced by id; every node fetches, verifies and stores each one, and catches up on
//! versions it missed from every peer it connects to.
//!
//! Here: the node's shared `State` and starting and stopping a [`Node`]. The swarm
//! task is `event_loop`, the request handlers `requests`; `holders`, `challenges`,
//! `claims`, `manifests`, `placements`, `locate` and `upkeep` each own one concern of
//! what a node decides.

use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use libp2p::{Multiaddr, PeerId, gossipsub, multiaddr::Protocol, swarm::SwarmEvent};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    NetError,
    data::{DataPlane, PieceSource, WhenFull},
    identity::NodeKey,
    metrics::NetMetrics,
    swarm::{self, Control},
    wire::{self, NodeInfo, NodeRef, Trust},
};
use crate::{
    audit::{Auditor, Ledger},
    ids::{NodeId, PieceId, StripeId},
    repair::ClaimBoard,
    store::{PieceStore, StoreError, StoreOptions},
};

mod allowance;
mod announce;
mod audit_records;
mod audits;
mod challenges;
mod claims;
mod co_holders;
mod config;
mod dial_failures;
mod event_loop;
mod holders;
mod known;
mod locate;
mod lookups;
mod manifests;
mod placement_check;
mod placement_update;
mod placements;
mod recent;
mod repair_look;
mod repairs;
mod requests;
mod status;
mod upkeep;
mod workers;

pub use config::{DEFAULT_IDLE_TIMEOUT, Faults, NodeConfig, UpkeepConfig};
use event_loop::run;
pub use holders::DEFAULT_HOLDER_ENTRIES;
pub use requests::dataset_summaries;
use status::UpkeepCounters;
pub use status::{NodeStatus, UpkeepStats};

use challenges::ChallengeGate;
use holders::Holders;
use workers::{Work, Workers};

/// Most nodes remembered as gone ([`State::gone`]).
const MAX_GONE: usize = 4096;
/// How long a node seen leaving is left out of `Locate` answers, unless met again.
const GONE_FOR: std::time::Duration = std::time::Duration::from_secs(600);

/// Most inbound requests handled at once, `Hold` aside.
pub const MAX_HANDLERS: usize = 64;
/// Most `Hold` requests accepted at once (each waits for one of the fetch slots), kept
/// apart so a flood of pieces never starves listings and lookups.
pub const MAX_HOLDS: usize = 256;
/// Most pieces fetched at once for `Hold` requests.
const MAX_HOLD_FETCHES: usize = 16;
/// Most manifests fetched at once while catching up.
const MAX_CATCH_UP: usize = 4;
/// How long a started node waits before it repairs anything: its peers announce all they
/// hold to each new subscriber within a second or so.
const REPAIR_WARMUP: Duration = Duration::from_secs(5);
/// How long to answer `Info` when gathering `Peers`.
const INFO_TIMEOUT: Duration = Duration::from_secs(5);

struct State {
    peer: PeerId,
    store: Arc<PieceStore>,
    data: DataPlane,
    control: Control,
    http: Option<String>,
    listen: Mutex<Vec<Multiaddr>>,
    /// Nodes met (identified as nodes), with their addresses, connected or not: a node is
    /// forgotten when a dial finds no one (a co-holder whose connection breaks is dialled
    /// again at once); a full table makes room by forgetting one not connected.
    known: Mutex<HashMap<PeerId, Vec<Multiaddr>>>,
    /// Nodes forgotten because they left (a co-holder's connection broke and it could not
    /// be dialled again, or no one answered a dial), and when: `Locate` does not name them
    /// for [`GONE_FOR`] unless they are met again, even where a placement record does. At
    /// most [`MAX_GONE`], oldest dropped first.
    gone: Mutex<HashMap<PeerId, u64>>,
    /// Where each connected peer sits: the failure domains repair keeps apart.
    places: Mutex<HashMap<PeerId, Place>>,
    /// The operator this node declares.
    operator: Option<String>,
    /// Whether a node's /24 or /48 is a failure domain (see [`NodeConfig`]).
    subnet_domains: bool,
    metrics: NetMetrics,
    holders: Mutex<Holders>,
    /// How many peers the node is connected to now.
    connected_peers: std::sync::atomic::AtomicU32,
    /// The nodes holding pieces of the stripes this node holds: kept connected.
    co_holders: Mutex<HashSet<PeerId>>,
    /// Pieces stored since the last announcement.
    fresh: Mutex<Vec<[u8; 32]>>,
    /// Dropped pieces whose co-holders are still to be told ([`announce::Untold`]).
    dropped: Mutex<Vec<announce::Untold>>,
    /// Placement records just kept, with their stripes' pieces, whose groups are to be
    /// told what this node holds of them (`announce`).
    joined: Mutex<Vec<(crate::location::PlacementRecord, Vec<PieceId>)>>,
    hold_permits: Semaphore,
    catch_up_permits: Arc<Semaphore>,
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
    /// Pieces found corrupt on this node's disk lately: not taken back.
    corrupt_here: Mutex<recent::Recent<PieceId>>,
    /// Digests of placement records this node stored in the DHT for publishers lately.
    placed_lately: Mutex<recent::Recent<[u8; 32]>>,
    /// Manifests announced and fetched whose placement is still being checked.
    heard_versions: Mutex<manifests::Heard>,
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
    /// Every task the node runs besides the swarm task.
    workers: Workers,
    /// Versions' stripes, for checking placement records without decoding manifests.
    stripe_tables: placement_check::StripeTables,
    /// Peers' allowances for DHT records, and records waiting for their version.
    offers: Mutex<placement_check::Offers>,
    /// Each peer's allowance of DHT lookups and stores made for its requests.
    lookups: Mutex<allowance::Allowances>,
    /// Each peer's allowance of pieces announced to this node.
    heard: Mutex<allowance::Allowances>,
    /// Each peer's allowance of manifests published through this node.
    publishes: Mutex<allowance::Allowances>,
    /// Each peer's allowance of audit records sent to this node.
    records_in: Mutex<allowance::Allowances>,
    /// Turns for checking a published version's placement.
    placing: tokio::sync::Semaphore,
    /// The turn for checking a heard-of version's placement that a request asked for.
    heard_turn: tokio::sync::Semaphore,
}

/// Where a connected peer sits: the address its connection comes from, and the operator
/// it declares.
#[derive(Debug, Clone, Default)]
struct Place {
    seen: Option<std::net::IpAddr>,
    operator: Option<String>,
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
        if let Some(o) = &config.operator {
            super::domain::check_operator(o)?;
        }
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
        let metrics = NetMetrics::new();
        let mut swarm = swarm::build(
            key.keypair(),
            swarm::Role::Node {
                mdns: config.mdns,
                idle: config.idle_timeout,
                mesh: config.gossip_mesh,
            },
            &metrics,
        )?;
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
            WhenFull::Refuse,
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
        for topic in [wire::MANIFEST_TOPIC, wire::REPAIRS_TOPIC] {
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
        let cancel = CancellationToken::new();
        let state = Arc::new(State {
            peer,
            store,
            data,
            control: Control { tx },
            http: config.http.clone(),
            listen: Mutex::new(vec![listen.with(Protocol::P2p(peer))]),
            known: Mutex::default(),
            gone: Mutex::default(),
            places: Mutex::default(),
            operator: config.operator.clone(),
            subnet_domains: config.subnet_domains,
            metrics,
            holders: Mutex::new(Holders::new(config.holder_entries)),
            co_holders: Mutex::default(),
            connected_peers: std::sync::atomic::AtomicU32::new(0),
            fresh: Mutex::default(),
            dropped: Mutex::default(),
            joined: Mutex::default(),
            hold_permits: Semaphore::new(MAX_HOLD_FETCHES),
            catch_up_permits: Arc::new(Semaphore::new(MAX_CATCH_UP)),
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
            corrupt_here: Mutex::new(recent::Recent::new(
                challenges::REFUSE_CORRUPT_FOR,
                challenges::MAX_CORRUPT_HERE,
            )),
            placed_lately: Mutex::new(recent::Recent::new(
                placements::PLACED_LATELY_FOR,
                placements::MAX_PLACED_LATELY,
            )),
            heard_versions: Mutex::default(),
            staged,
            journal: Mutex::default(),
            repairing: Mutex::default(),
            stats: UpkeepCounters::default(),
            repair_from: tokio::time::Instant::now() + REPAIR_WARMUP,
            upkeep: config.upkeep.clone(),
            forge_proofs: faults.forge_proofs,
            workers: Workers::new(cancel.child_token()),
            stripe_tables: placement_check::StripeTables::new(),
            offers: Mutex::default(),
            lookups: Mutex::new(allowance::Allowances::new(
                placement_check::LOOKUP_RATE,
                placement_check::LOOKUP_BURST,
            )),
            heard: Mutex::new(allowance::Allowances::new(
                announce::HEARD_RATE,
                announce::HEARD_BURST,
            )),
            publishes: Mutex::new(allowance::Allowances::new(
                manifests::PUBLISH_RATE,
                manifests::PUBLISH_BURST,
            )),
            records_in: Mutex::new(allowance::Allowances::new(
                crate::audit::AUDITOR_RATE,
                crate::audit::AUDITOR_BURST,
            )),
            placing: tokio::sync::Semaphore::new(manifests::MAX_PLACING),
            heard_turn: tokio::sync::Semaphore::new(1),
        });
        let task = tokio::spawn(run(
            swarm,
            rx,
            state.clone(),
            cancel.clone(),
            event_loop::Settings {
                announce_interval: config.announce_interval,
                orphan_grace: config.orphan_grace,
                bootstrap: config.peers.clone(),
            },
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

    /// The DHT record under `key` as this node finds it (its own copy first).
    #[cfg(test)]
    pub(crate) async fn dht_record(&self, key: [u8; 32]) -> Option<Vec<u8>> {
        self.state.0.get_record(key).await
    }

    /// The peers this node is connected to now, and those of them in its gossip mesh.
    #[cfg(test)]
    pub(crate) async fn connections(&self) -> (HashSet<PeerId>, HashSet<PeerId>) {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let asked = self
            .state
            .0
            .control
            .send(swarm::Command::Connections(reply))
            .await;
        match asked {
            Ok(()) => rx.await.unwrap_or_default(),
            Err(_) => Default::default(),
        }
    }

    /// The co-holders this node keeps connected.
    #[cfg(test)]
    pub(crate) fn co_holders(&self) -> HashSet<PeerId> {
        lock(&self.state.0.co_holders).clone()
    }

    /// Forgets what `peer` announced holding, as if its announcements had not arrived.
    #[cfg(test)]
    pub(crate) fn forget_holdings_of(&self, peer: &PeerId) {
        lock(&self.state.0.holders).forget(peer);
    }

    /// The pieces of `stripe` (held here) that a repair's fresh look would rebuild now.
    /// `None` while the node does not know the stripe as one it holds.
    #[cfg(test)]
    pub(crate) async fn pieces_to_rebuild(&self, stripe: &StripeId) -> Option<Vec<usize>> {
        let s = upkeep::held_stripes(&self.state.0.store)
            .ok()?
            .into_iter()
            .find(|h| h.id == *stripe)?;
        let (plan, _) = self.state.0.plan_repair(&s).await.ok()?;
        Some(plan.pieces.iter().map(|(i, _)| *i).collect())
    }

    /// The node's id: its key, as placement records and audit records name it.
    pub fn node_id(&self) -> NodeId {
        self.state.0.me
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

    /// Status for `cairn node status`.
    pub fn status(&self) -> NodeStatus {
        let s = &self.state.0;
        // Each lock is taken and released on its own: none is held across another.
        let reputation = lock(&s.ledger).reputation(&s.me);
        let ledger = s.ledger_entries();
        NodeStatus {
            info: s.info(),
            peers: lock(&s.known).keys().map(|p| p.to_string()).collect(),
            datasets: s.store.datasets().map_or(0, |d| d.len() as u64),
            served_bytes: s.served.load(Ordering::Relaxed),
            received_bytes: s.received.load(Ordering::Relaxed),
            reputation,
            upkeep: s.stats.snapshot(),
            ledger,
        }
    }

    /// Its metrics in the Prometheus text format: control-plane traffic by kind and
    /// topic, connections, and what it keeps about others.
    pub fn metrics_text(&self) -> String {
        let s = &self.state.0;
        let m = &s.metrics;
        let size = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        m.holder_entries.set(size(lock(&s.holders).len()));
        m.ledger_entries.set(size(lock(&s.ledger).nodes().count()));
        s.workers.report(&m.workers);
        let estimate =
            |n: Result<u64, StoreError>| n.map_or(0, |n| i64::try_from(n).unwrap_or(i64::MAX));
        m.manifests.set(estimate(s.store.manifests_estimate()));
        m.placements.set(estimate(s.store.placements_estimate()));
        m.render()
    }

    /// Stops the swarm and every task the node runs, waiting for each to end, says
    /// goodbye on the data plane and closes the store.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        if let Err(e) = self.task.await {
            warn!("node task ended badly: {e}");
        }
        let state = self.state.0.clone();
        drop(self.state);
        state.workers.shutdown().await;
        state.data.shutdown().await;
        let store = state.store.clone();
        drop(state);
        // Every task has ended, so the store's last user is this function.
        match Arc::try_unwrap(store) {
            Ok(store) => {
                drop(store);
                debug!("store closed");
            }
            Err(store) => warn!(
                users = Arc::strong_count(&store) - 1,
                "the store is still in use at shutdown; it closes when its last user ends"
            ),
        }
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
            connected: self.connected_peers.load(Ordering::Relaxed),
            served: self.served.load(Ordering::Relaxed),
            trust: Trust::New,
            operator: self.operator.clone(),
            seen: None,
        }
    }

    /// The failure domains of `peer` as far as this node knows them: this node's own
    /// label, or a connected peer's label and address.
    fn domains_of(&self, peer: &PeerId) -> Vec<super::domain::FailureDomain> {
        if *peer == self.peer {
            return super::domain::domains_of(self.operator.as_deref(), None);
        }
        lock(&self.places)
            .get(peer)
            .map(|p| {
                let seen = p.seen.filter(|_| self.subnet_domains);
                super::domain::domains_of(p.operator.as_deref(), seen)
            })
            .unwrap_or_default()
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
}

impl State {
    /// Runs store work on the blocking pool, as one of the node's tasks.
    async fn blocking<T, E>(
        &self,
        f: impl FnOnce() -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        match self.workers.blocking(f).await {
            Ok(r) => r,
            Err(e) => Err(StoreError::Db(format!("task failed: {e}")).into()),
        }
    }
}
