//! The researcher's side: push a directory as a dataset version, pull one back, list.
//!
//! A client is a light libp2p peer (request-response only, an ephemeral key) plus a data
//! plane endpoint. It enters the network through one bootstrap node.
//!
//! **Push** samples candidate nodes from the whole network by walks through the DHT
//! (`sample`), asks each how much room it has and the bootstrap node how far it trusts
//! each, then encodes on a blocking thread, stripe by stripe, and hands pieces through a
//! bounded channel. Each stripe's `k + m` pieces go to distinct nodes in distinct failure
//! domains, drawn in proportion to their room ([`Placer`]). For each
//! piece the client asks its node to `Hold` it; the node fetches it from the client's data
//! plane, verifies it and stores it. Only once every piece is acknowledged is the signed
//! manifest published, so a failed or interrupted push leaves no visible version. Pieces a
//! node already holds are acknowledged without a transfer.
//!
//! **Pull** resolves and verifies the manifest, skips files already complete at the
//! destination, locates every needed piece, and refuses up front (writing nothing) if any
//! stripe has fewer than `k` reachable pieces. Stripes are fetched several at a time,
//! each by a [`StripeFetch`] that asks the fastest holders first and routes around
//! failures, then decoded and written by [`engine::restore_resumable`]: appended to a
//! partial file, verified whole, renamed into place. An interrupted pull continues from
//! the last whole stripe it wrote.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use libp2p::{Multiaddr, PeerId, Swarm, swarm::SwarmEvent};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

mod fetching;
mod locate;
mod pull;
mod push;
mod sample;

pub(crate) use fetching::{fetch_pieces, fetch_stripe};
pub use pull::PullReport;
pub use push::PushReport;

use super::{
    NetError,
    data::{DataPlane, PieceSource, WhenFull},
    identity::NodeKey,
    placement::PlacementError,
    swarm::{self, Behaviour, BehaviourEvent, Command, Control, Pending, Walks},
    wire::{self, DatasetSummary, ErrorCode, NodeInfo, Request, Response},
};
use crate::{
    engine::EngineError,
    ids::{DatasetName, PieceId, VersionId},
    manifest::{Manifest, ManifestError, PublisherKey},
};

/// How long a read waits for pieces pushed a moment ago to become locatable before it
/// calls them unreachable.
pub const LOCATE_PATIENCE: Duration = Duration::from_secs(3);
/// Errors of push, pull and listing.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The network failed.
    #[error(transparent)]
    Net(#[from] NetError),
    /// Pieces could not be placed.
    #[error(transparent)]
    Placement(#[from] PlacementError),
    /// Encoding or writing failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A manifest did not verify.
    #[error("the manifest from {peer} is invalid: {source}")]
    Manifest {
        /// Who sent it.
        peer: String,
        /// Why.
        source: ManifestError,
    },
    /// The version is published, but its placement records could not be stored.
    #[error(
        "the placement records could not be stored ({0}); reads may not find the pieces: push again to store them"
    )]
    Records(String),
    /// The dataset or version does not exist.
    #[error("{0} not found on the network")]
    NotFound(String),
    /// A node would not take a piece.
    #[error("node {node} did not store piece {piece}: {reason}")]
    Hold {
        /// The node.
        node: String,
        /// The piece.
        piece: PieceId,
        /// Why.
        reason: String,
    },
    /// A node acknowledged a piece it then could not prove it holds, and no other node
    /// could take the piece.
    #[error(
        "node {node} could not prove it holds piece {piece}, which it acknowledged, and no other node can take the piece ({reason}); nothing was published. Push again when more nodes are up"
    )]
    SpotCheck {
        /// The node.
        node: String,
        /// The piece.
        piece: PieceId,
        /// What it answered.
        reason: String,
    },
    /// Publishing the manifest was refused.
    #[error("publishing was refused: {0}")]
    Publish(String),
    /// The publish request got no answer: the version may or may not be visible.
    #[error(
        "every piece is stored, but the node did not answer the publish request ({0}); the version may or may not be published: check `cairn dataset ls`, or push again (nothing is sent twice)"
    )]
    PublishUnknown(String),
    /// The dataset needs a manifest larger than the network carries.
    #[error(
        "this dataset needs a manifest of about {estimate} bytes, over the network's limit of {limit}; push it with a larger --block-size or in parts"
    )]
    TooLarge {
        /// Estimated manifest size.
        estimate: u64,
        /// The limit.
        limit: u64,
    },
    /// Some stripes cannot be rebuilt from the nodes reachable now.
    #[error(
        "{} stripe(s) cannot be rebuilt: fewer than k pieces are reachable ({}). Nothing was written for them; retry when more nodes are up",
        .0.len(), .0.iter().take(8).cloned().collect::<Vec<_>>().join("; ")
    )]
    Unrecoverable(Vec<String>),
    /// The dataset belongs to another publisher.
    #[error(
        "{name} belongs to publisher {owner}, and this key ({key}) cannot publish new versions of it; choose another name, or push with the owner's key"
    )]
    NotOwner {
        /// The dataset.
        name: DatasetName,
        /// Its publisher.
        owner: crate::ids::PublisherId,
        /// The key that tried.
        key: crate::ids::PublisherId,
    },
    /// A worker task failed.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Pieces waiting to be fetched by their holders during a push. Identical pieces (the
/// zero padding of small files, say) can be on their way to several nodes at once, so
/// each entry counts its pending holders.
#[derive(Default)]
struct Outbox(Mutex<Pieces>);

/// Bytes and pending holders, by piece.
type Pieces = HashMap<PieceId, (bytes::Bytes, usize)>;

impl Outbox {
    fn map(&self) -> std::sync::MutexGuard<'_, Pieces> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn insert(&self, id: PieceId, bytes: Vec<u8>) {
        self.map().entry(id).or_insert_with(|| (bytes.into(), 0)).1 += 1;
    }

    fn release(&self, id: &PieceId) {
        let mut m = self.map();
        if let Some(e) = m.get_mut(id) {
            e.1 -= 1;
            if e.1 == 0 {
                m.remove(id);
            }
        }
    }
}

impl PieceSource for Outbox {
    fn piece(&self, id: &PieceId) -> Option<bytes::Bytes> {
        self.map().get(id).map(|b| b.0.clone())
    }
}

/// Progress callback: bytes done since the last call.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// A connection to the network through one bootstrap node.
#[derive(Debug)]
pub struct Client {
    control: Control,
    data: DataPlane,
    outbox: Arc<OutboxHandle>,
    bootstrap: PeerId,
    bootstrap_addr: Multiaddr,
    /// This client's own (ephemeral) peer id.
    local: PeerId,
    cancel: CancellationToken,
}

struct OutboxHandle(Arc<Outbox>);

impl std::fmt::Debug for OutboxHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Outbox")
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Where the pieces of one stripe are held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripePlacement {
    /// Index of the file in the manifest.
    pub file: usize,
    /// Index of the stripe in the file.
    pub stripe: usize,
    /// For each piece, the peer ids of the nodes holding it.
    pub holders: Vec<Vec<String>>,
    /// Pieces on distinct nodes ([`super::placement::spread`]): the stripe survives the
    /// loss of any `spread - k` more nodes.
    pub spread: usize,
}

fn parse_peer(s: &str) -> Option<PeerId> {
    s.parse().ok()
}

/// What a new version of a dataset follows ([`Client::next_version`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextVersion {
    /// The dataset's latest version, if it has one.
    pub parent: Option<VersionId>,
    /// The new version's creation time: now, and after the parent's.
    pub created_unix: u64,
}

impl Client {
    /// Connects to the network through `bootstrap` (a multiaddr ending in `/p2p/<id>`).
    pub async fn connect(bootstrap: Multiaddr) -> Result<Self, ClientError> {
        let peer = swarm::peer_of(&bootstrap).ok_or_else(|| {
            NetError::Setup(format!(
                "peer address {bootstrap} does not end in /p2p/<peer id>; copy it from `cairn node status` or network.json"
            ))
        })?;
        let key = NodeKey::generate()?;
        // A client's traffic is not reported anywhere: its counts go nowhere.
        let mut swarm = swarm::build(
            key.keypair(),
            swarm::Role::Client,
            &super::metrics::NetMetrics::new(),
        )?;
        let ip = swarm::ip_of(&bootstrap)
            .filter(std::net::IpAddr::is_loopback)
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let outbox = Arc::new(Outbox::default());
        let data = DataPlane::bind(
            key.secret(),
            (ip, 0).into(),
            outbox.clone(),
            // Only the nodes this client asked to hold a piece fetch from it.
            WhenFull::Queue,
            false,
        )
        .await
        .map_err(NetError::from)?;
        // Walks through the DHT start from the bootstrap node.
        swarm
            .behaviour_mut()
            .kad
            .add_address(&peer, bootstrap.clone());
        let (tx, rx) = mpsc::channel(swarm::COMMAND_QUEUE);
        let cancel = CancellationToken::new();
        tokio::spawn(run(swarm, rx, cancel.clone()));
        let client = Self {
            control: Control { tx },
            data,
            outbox: Arc::new(OutboxHandle(outbox)),
            bootstrap: peer,
            bootstrap_addr: bootstrap,
            local: key.peer_id(),
            cancel,
        };
        // Fail early, with the node's own words, if the bootstrap is not there.
        client.ask(Request::Info).await?;
        Ok(client)
    }

    pub(crate) async fn ask(&self, request: Request) -> Result<Response, NetError> {
        self.control
            .request(self.bootstrap, vec![self.bootstrap_addr.clone()], request)
            .await
    }

    /// Every node the bootstrap node is connected to, itself included.
    pub async fn peers(&self) -> Result<Vec<NodeInfo>, ClientError> {
        let r = self.ask(Request::Peers).await?;
        let mut v = match r {
            Response::Peers(p) => p,
            other => return Err(refusal(&self.bootstrap, other).into()),
        };
        v.truncate(wire::MAX_PEERS_LISTED);
        v.retain(NodeInfo::is_sane);
        v.sort_by(|a, b| a.peer.cmp(&b.peer));
        v.dedup_by(|a, b| a.peer == b.peer);
        // The bootstrap node does not see itself: it is where this client reaches it
        // (when it reports where it sees the others at all).
        let boot = self.bootstrap.to_string();
        let reports = v.iter().any(|i| i.seen.is_some());
        if let Some(b) = v.iter_mut().find(|i| i.peer == boot && reports) {
            b.seen = b.seen.or(swarm::ip_of(&self.bootstrap_addr));
        }
        Ok(v)
    }

    /// Every dataset the bootstrap node knows.
    pub async fn datasets(&self) -> Result<Vec<DatasetSummary>, ClientError> {
        let r = self.ask(Request::Datasets).await?;
        match r {
            Response::Datasets(d) => Ok(d),
            other => Err(refusal(&self.bootstrap, other).into()),
        }
    }

    /// Every version of `name`, oldest first.
    pub async fn history(
        &self,
        name: &DatasetName,
    ) -> Result<Vec<wire::VersionSummary>, ClientError> {
        match self
            .ask(Request::History {
                name: name.to_string(),
            })
            .await?
        {
            Response::History(h) => Ok(h),
            Response::Error {
                code: ErrorCode::NotFound,
                ..
            } => Err(ClientError::NotFound(name.to_string())),
            other => Err(refusal(&self.bootstrap, other).into()),
        }
    }

    /// The manifest of `name` at `version` (or its latest), verified.
    pub async fn manifest(
        &self,
        name: &DatasetName,
        version: Option<VersionId>,
    ) -> Result<Manifest, ClientError> {
        let what = match version {
            Some(v) => format!("{name}@{v}"),
            None => name.to_string(),
        };
        let r = self
            .ask(Request::Manifest {
                name: Some(name.to_string()),
                version: version.map(|v| v.0),
            })
            .await?;
        let bytes = match r {
            Response::Manifest(b) => b,
            Response::Error {
                code: ErrorCode::NotFound,
                ..
            } => return Err(ClientError::NotFound(what)),
            other => return Err(refusal(&self.bootstrap, other).into()),
        };
        let m = Manifest::decode(&bytes).map_err(|source| ClientError::Manifest {
            peer: self.bootstrap.to_string(),
            source,
        })?;
        if m.name() != name || version.is_some_and(|v| v != m.version()) {
            return Err(ClientError::Manifest {
                peer: self.bootstrap.to_string(),
                source: ManifestError::Inconsistent(format!(
                    "asked for {what}, got {}@{}",
                    m.name(),
                    m.version()
                )),
            });
        }
        Ok(m)
    }

    /// What a new push of `name` by `key` follows: its latest version (`None` for a new
    /// dataset) and a creation time after it, or [`ClientError::NotOwner`] when another
    /// publisher owns the name. Versions are ordered by creation time, in seconds: a
    /// version pushed within a second of its parent is dated one second past it, so the
    /// latest is always the last one pushed.
    pub async fn next_version(
        &self,
        name: &DatasetName,
        key: &PublisherKey,
    ) -> Result<NextVersion, ClientError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        match self.manifest(name, None).await {
            Ok(m) if m.publisher() != key.id() => Err(ClientError::NotOwner {
                name: name.clone(),
                owner: m.publisher(),
                key: key.id(),
            }),
            Ok(m) => Ok(NextVersion {
                parent: Some(m.version()),
                created_unix: now.max(m.body().created_unix.saturating_add(1)),
            }),
            Err(ClientError::NotFound(_)) => Ok(NextVersion {
                parent: None,
                created_unix: now,
            }),
            Err(e) => Err(e),
        }
    }

    /// The client's data plane.
    pub(crate) fn data(&self) -> &DataPlane {
        &self.data
    }

    /// Closes the client's endpoints.
    pub async fn shutdown(self) {
        self.close().await;
    }

    /// Closes the client's endpoints, for a client shared behind an `Arc`; it is unusable
    /// afterwards.
    pub async fn close(&self) {
        self.cancel.cancel();
        self.data.shutdown().await;
    }
}

fn refusal(peer: &PeerId, r: Response) -> NetError {
    match r {
        Response::Error { code, message } => NetError::Refused {
            peer: peer.to_string(),
            code,
            message,
        },
        _ => NetError::Unexpected {
            peer: peer.to_string(),
        },
    }
}

async fn run(
    mut swarm: Swarm<Behaviour>,
    mut rx: mpsc::Receiver<Command>,
    cancel: CancellationToken,
) {
    let mut pending = Pending::default();
    let mut walks = Walks::default();
    // Where each connected peer is reached: a node's failure domain by network, as this
    // client sees it. Bounded by the connections open.
    let mut remote: HashMap<PeerId, std::net::IpAddr> = HashMap::new();
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            cmd = rx.recv() => match cmd {
                None => break,
                Some(Command::Request { peer, addrs, request, reply }) => pending.send(&mut swarm, peer, addrs, request, reply),
                Some(Command::Respond { channel, response }) => { swarm.behaviour_mut().control.send_response(channel, response).ok(); }
                // A client keeps no records: a store asked of it is dropped unanswered.
                Some(Command::Gossip { .. } | Command::StoreRecord(_) | Command::KeepConnected(_) | Command::PutRecord { .. }) => {}
                Some(Command::GetRecord { reply, .. }) => { reply.send(Vec::new()).ok(); }
                Some(Command::LocalRecord { reply, .. }) => { reply.send(None).ok(); }
                Some(Command::ClosestPeers { key, reply }) => walks.start(&mut swarm, key, reply),
                Some(Command::RemoteIps { peers, reply }) => {
                    reply.send(peers.iter().map(|p| remote.get(p).copied()).collect()).ok();
                }
                #[cfg(test)]
                Some(Command::Connections(reply)) => { reply.send(Default::default()).ok(); }
            },
            Some(event) = swarm.next() => match event {
                SwarmEvent::Behaviour(BehaviourEvent::Control(e)) => {
                    if let Some((_, _, channel)) = pending.on_event(e) {
                        let refuse = Response::Error { code: ErrorCode::BadRequest, message: "clients serve no requests".into() };
                        swarm.behaviour_mut().control.send_response(channel, refuse).ok();
                    }
                }
                SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => walks.on_event(&e),
                SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. } => {
                    if let Some(ip) = swarm::ip_of(endpoint.get_remote_address()) {
                        remote.insert(peer_id, ip);
                    }
                }
                SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                    remote.remove(&peer_id);
                }
                _ => {}
            }
        }
    }
}
