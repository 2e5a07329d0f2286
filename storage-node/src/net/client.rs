//! The researcher's side: push a directory as a dataset version, pull one back, list.
//!
//! A client is a light libp2p peer (request-response only, an ephemeral key) plus a data
//! plane endpoint. It learns the network from one bootstrap node.
//!
//! **Push** encodes on a blocking thread, stripe by stripe, and hands pieces through a
//! bounded channel. Each stripe's `k + m` pieces go to distinct nodes ([`Placer`]). For each
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
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::{StreamExt, stream::FuturesUnordered};
use libp2p::{Multiaddr, PeerId, Swarm, swarm::SwarmEvent};
use tokio::{
    sync::{Semaphore, mpsc},
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    NetError,
    budget::ByteBudget,
    data::{DataError, DataPlane, PieceSource},
    fetch::{HolderIx, Step, StripeFetch},
    identity::NodeKey,
    placement::{Candidate, PlacementError, Placer},
    spot_check::{self, Vetting},
    swarm::{self, Behaviour, BehaviourEvent, Command, Control, Pending},
    wire::{self, DatasetSummary, ErrorCode, NodeInfo, NodeRef, Request, Response, Trust},
};
use crate::{
    engine::{self, EncodeOptions, EngineError, Offer, PieceSlot, StripeAssembler},
    ids::{DatasetName, PieceId, VersionId},
    manifest::{Manifest, ManifestError, PublisherKey},
};

/// Bytes of pieces a push keeps in memory waiting for their holders to fetch them.
const PUSH_BUDGET: u64 = 96 << 20;
/// Bytes of stripes a pull fetches ahead of the writer.
const PULL_AHEAD: u64 = 64 << 20;
/// Attempts at a `Hold` that failed for a reason worth retrying.
const HOLD_ATTEMPTS: u32 = 4;
/// `Hold` requests in flight to one node: what it fetches at once, so none wait there.
const HOLDS_PER_NODE: usize = 16;
/// How long a read waits for pieces pushed a moment ago to become locatable before it
/// calls them unreachable.
pub const LOCATE_PATIENCE: Duration = Duration::from_secs(3);
/// How long a push waits, before it publishes, for its bootstrap node to locate every
/// piece it placed, so that reads through that node work the moment the push returns.
const PUSH_LOCATE_PATIENCE: Duration = Duration::from_secs(15);

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

/// What a push did.
#[derive(Debug, Clone)]
pub struct PushReport {
    /// The published version.
    pub version: VersionId,
    /// Its manifest.
    pub manifest: Manifest,
    /// Pieces placed.
    pub pieces: u64,
    /// Pieces transferred (the rest were already held).
    pub sent: u64,
    /// Piece bytes transferred.
    pub bytes_sent: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// The content equals the latest version's: nothing new was published.
    pub unchanged: bool,
}

/// What a pull did.
#[derive(Debug, Clone, Default)]
pub struct PullReport {
    /// Files written.
    pub files: u64,
    /// Files already complete at the destination.
    pub skipped: u64,
    /// File bytes written by this run.
    pub bytes: u64,
    /// Bytes an interrupted earlier run had written, kept and verified.
    pub resumed_bytes: u64,
    /// Pieces fetched.
    pub pieces: u64,
    /// Fetches that failed and were routed around.
    pub failed_fetches: u64,
    /// Wall time.
    pub elapsed: Duration,
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

impl Client {
    /// Connects to the network through `bootstrap` (a multiaddr ending in `/p2p/<id>`).
    pub async fn connect(bootstrap: Multiaddr) -> Result<Self, ClientError> {
        let peer = swarm::peer_of(&bootstrap).ok_or_else(|| {
            NetError::Setup(format!(
                "peer address {bootstrap} does not end in /p2p/<peer id>; copy it from `cairn node status` or network.json"
            ))
        })?;
        let key = NodeKey::generate()?;
        let swarm = swarm::build(key.keypair(), swarm::Role::Client)?;
        let ip = match bootstrap.iter().next() {
            Some(libp2p::multiaddr::Protocol::Ip4(ip)) if ip.is_loopback() => {
                std::net::IpAddr::V4(ip)
            }
            Some(libp2p::multiaddr::Protocol::Ip6(ip)) if ip.is_loopback() => {
                std::net::IpAddr::V6(ip)
            }
            _ => std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        };
        let outbox = Arc::new(Outbox::default());
        let data = DataPlane::bind(key.secret(), (ip, 0).into(), outbox.clone(), false)
            .await
            .map_err(NetError::from)?;
        let (tx, rx) = mpsc::channel(swarm::COMMAND_QUEUE);
        let cancel = CancellationToken::new();
        tokio::spawn(run(swarm, rx, cancel.clone()));
        let client = Self {
            control: Control { tx },
            data,
            outbox: Arc::new(OutboxHandle(outbox)),
            bootstrap: peer,
            bootstrap_addr: bootstrap,
            cancel,
        };
        // Fail early, with the node's own words, if the bootstrap is not there.
        client.ask(Request::Info).await?;
        Ok(client)
    }

    async fn ask(&self, request: Request) -> Result<Response, NetError> {
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

    /// Who holds each of `pieces`, as a table of nodes and, per piece, indices into it.
    pub async fn locate(
        &self,
        pieces: &[PieceId],
    ) -> Result<(Vec<NodeRef>, Vec<Vec<HolderIx>>), ClientError> {
        let mut nodes: Vec<NodeRef> = Vec::new();
        let mut index: HashMap<String, HolderIx> = HashMap::new();
        let mut out = Vec::with_capacity(pieces.len());
        for chunk in pieces.chunks(wire::MAX_LOCATE) {
            let r = self
                .ask(Request::Locate {
                    pieces: chunk.iter().map(|p| p.0).collect(),
                })
                .await?;
            let located = match r {
                Response::Located(l) if l.len() == chunk.len() => l,
                other => return Err(refusal(&self.bootstrap, other).into()),
            };
            for holders in located {
                let mut ixs = Vec::new();
                for h in holders.into_iter().take(wire::MAX_HOLDERS_LISTED) {
                    let ix = *index.entry(h.peer.clone()).or_insert_with(|| {
                        nodes.push(h.clone());
                        nodes.len() - 1
                    });
                    if !ixs.contains(&ix) {
                        ixs.push(ix);
                    }
                }
                out.push(ixs);
            }
        }
        Ok((nodes, out))
    }

    /// [`locate`](Self::locate), asked again for up to `patience` while `short` finds the
    /// answer short. Holders announce pieces just after they store them, so a piece
    /// pushed a moment ago may not be known yet to the node asked. Returns the last
    /// answer, short or not.
    pub(crate) async fn locate_patiently(
        &self,
        pieces: &[PieceId],
        patience: Duration,
        short: impl Fn(&[Vec<HolderIx>]) -> bool,
    ) -> Result<(Vec<NodeRef>, Vec<Vec<HolderIx>>), ClientError> {
        let t0 = Instant::now();
        let mut wait = Duration::from_millis(50);
        loop {
            let (nodes, holders) = self.locate(pieces).await?;
            if !short(&holders) || t0.elapsed() + wait > patience {
                return Ok((nodes, holders));
            }
            debug!("some pieces not located yet; asking again");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_millis(400));
        }
    }

    /// Where every piece of `m` is held right now, stripe by stripe, as the network
    /// reports it (`Locate`).
    pub async fn placement(&self, m: &Manifest) -> Result<Vec<StripePlacement>, ClientError> {
        let ids: Vec<PieceId> = m.pieces().map(|r| r.id).collect();
        let (nodes, holders) = self.locate(&ids).await?;
        let mut out = Vec::new();
        let mut at = 0;
        for (fi, f) in m.files().iter().enumerate() {
            for (si, s) in f.stripes.iter().enumerate() {
                let hs: Vec<Vec<String>> = holders[at..at + s.pieces.len()]
                    .iter()
                    .map(|ixs| ixs.iter().map(|&i| nodes[i].peer.clone()).collect())
                    .collect();
                at += s.pieces.len();
                out.push(StripePlacement {
                    file: fi,
                    stripe: si,
                    spread: super::placement::spread(&hs),
                    holders: hs,
                });
            }
        }
        Ok(out)
    }

    /// The version a new push of `name` by `key` follows: its latest, `None` for a new
    /// dataset, or [`ClientError::NotOwner`] when another publisher owns the name.
    pub async fn parent_for(
        &self,
        name: &DatasetName,
        key: &PublisherKey,
    ) -> Result<Option<VersionId>, ClientError> {
        match self.manifest(name, None).await {
            Ok(m) if m.publisher() != key.id() => Err(ClientError::NotOwner {
                name: name.clone(),
                owner: m.publisher(),
                key: key.id(),
            }),
            Ok(m) => Ok(Some(m.version())),
            Err(ClientError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Publishes the directory (or file) at `root` as a new version.
    pub async fn push(
        &self,
        root: &Path,
        opts: EncodeOptions,
        key: &PublisherKey,
        progress: Progress,
    ) -> Result<PushReport, ClientError> {
        let t0 = Instant::now();
        // Nodes the bootstrap node shuns (caught forging, or failing) get nothing.
        let nodes: Vec<NodeInfo> = self
            .peers()
            .await?
            .into_iter()
            .filter(|i| i.trust != Trust::Shunned)
            .collect();
        let n = opts.params.n();
        let m = usize::from(opts.params.m());
        let mut placer = Placer::new(
            nodes
                .iter()
                .map(|i| Candidate {
                    free: i.free(),
                    established: i.trust == Trust::Established,
                })
                .collect(),
            m,
        );
        if nodes.len() < n {
            return Err(PlacementError::TooFewNodes {
                needed: n,
                reachable: nodes.len(),
            }
            .into());
        }
        info!(
            nodes = nodes.len(),
            established = nodes
                .iter()
                .filter(|i| i.trust == Trust::Established)
                .count(),
            k = opts.params.k(),
            m,
            "pushing"
        );
        let root = root.to_path_buf();
        let files = tokio::task::spawn_blocking({
            let root = root.clone();
            move || engine::scan(&root)
        })
        .await
        .map_err(|e| ClientError::Internal(e.to_string()))??;
        // Refuse before sending a byte if the manifest could not travel.
        let estimate = manifest_estimate(&files, &opts);
        if estimate > wire::MAX_NETWORK_MANIFEST as u64 {
            return Err(ClientError::TooLarge {
                estimate,
                limit: wire::MAX_NETWORK_MANIFEST as u64,
            });
        }

        // Encoder thread -> bounded channel -> one Hold task per piece, bounded by bytes.
        let (tx, mut rx) = mpsc::channel::<(PieceSlot, PieceId, Vec<u8>)>(2 * n);
        let key = PublisherKey::from_secret_bytes(&key.secret_bytes());
        let progress_enc = progress.clone();
        let encoder = tokio::task::spawn_blocking(move || {
            engine::encode_files(
                &files,
                &opts,
                &key,
                |slot, r, bytes| {
                    tx.blocking_send((slot, r.id, bytes.to_vec()))
                        .map_err(|_| "push stopped".into())
                },
                move |n| progress_enc(n),
            )
        });
        let budget = ByteBudget::new(PUSH_BUDGET);
        let per_node: Vec<Arc<Semaphore>> = (0..nodes.len())
            .map(|_| Arc::new(Semaphore::new(HOLDS_PER_NODE)))
            .collect();
        let mut tasks: JoinSet<Result<Acked, ClientError>> = JoinSet::new();
        let vetting = Arc::new(Vetting::new(nodes.len()));
        let shared_nodes = Arc::new(nodes.clone());
        let mut last = (usize::MAX, usize::MAX);
        let mut targets: Vec<usize> = Vec::new();
        let (mut pieces, mut sent, mut bytes_sent) = (0u64, 0u64, 0u64);
        let mut failure: Option<ClientError> = None;
        while let Some((slot, id, bytes)) = rx.recv().await {
            if (slot.file, slot.stripe) != last {
                last = (slot.file, slot.stripe);
                // A node caught acknowledging what it cannot prove gets no more pieces.
                for i in vetting.all_caught() {
                    placer.exclude(i);
                }
                match placer.place(n, bytes.len() as u64) {
                    Ok(t) => targets = t,
                    Err(e) => {
                        failure = Some(e.into());
                        break;
                    }
                }
            }
            let want = bytes.len() as u64;
            let permit = tokio::select! {
                p = budget.spend(want) => p.map_err(|e| ClientError::Internal(e.to_string()))?,
                Some(done) = tasks.join_next() => {
                    if let Some(e) = self.tally(done, &mut sent, &mut bytes_sent) { failure = Some(e); break; }
                    budget.spend(want).await.map_err(|e| ClientError::Internal(e.to_string()))?
                }
            };
            pieces += 1;
            let len = bytes.len() as u32;
            self.outbox.0.insert(id, bytes);
            let piece = Placing {
                control: self.control.clone(),
                nodes: shared_nodes.clone(),
                per_node: per_node.clone(),
                vetting: vetting.clone(),
                from: self.data.addr(),
                stripe: targets.clone(),
            };
            let first = targets[slot.index];
            let outbox = self.outbox.0.clone();
            tasks.spawn(async move {
                // The bytes stay in the outbox until the piece is placed and, when due,
                // proven: a piece a node cannot prove goes to another node.
                let r = piece.place(id, len, first).await;
                outbox.release(&id);
                drop(permit);
                r
            });
            while let Some(done) = tasks.try_join_next() {
                if let Some(e) = self.tally(done, &mut sent, &mut bytes_sent) {
                    failure = Some(e);
                    break;
                }
            }
            if failure.is_some() {
                break;
            }
        }
        drop(rx);
        if let Some(e) = failure {
            tasks.abort_all();
            self.outbox.0.map().clear();
            encoder.await.ok();
            return Err(e);
        }
        while let Some(done) = tasks.join_next().await {
            if let Some(e) = self.tally(done, &mut sent, &mut bytes_sent) {
                tasks.abort_all();
                self.outbox.0.map().clear();
                return Err(e);
            }
        }
        let manifest = encoder
            .await
            .map_err(|e| ClientError::Internal(e.to_string()))??;
        // The same content as the latest version: every piece is held, nothing to publish.
        if let Some(parent) = manifest.body().parent
            && let Ok(prev) = self.manifest(manifest.name(), Some(parent)).await
            && same_content(prev.body(), manifest.body())
        {
            info!(version = %prev.version(), "content unchanged; not publishing a new version");
            return Ok(PushReport {
                version: prev.version(),
                manifest: prev,
                pieces,
                sent,
                bytes_sent,
                elapsed: t0.elapsed(),
                unchanged: true,
            });
        }
        let caught = vetting.all_caught();
        if !caught.is_empty() {
            let names: Vec<&str> = caught.iter().map(|&i| nodes[i].peer.as_str()).collect();
            warn!(
                nodes = ?names,
                "nodes acknowledged pieces they could not prove; their pieces were placed elsewhere"
            );
        }
        // Before the version becomes visible, wait until the node
        // that answers this client's reads can locate every piece, so that every read
        // path works the moment the push returns.
        {
            let ids: Vec<PieceId> = manifest.pieces().map(|r| r.id).collect();
            let (_, holders) = self
                .locate_patiently(&ids, PUSH_LOCATE_PATIENCE, |h| h.iter().any(Vec::is_empty))
                .await?;
            let unknown = holders.iter().filter(|h| h.is_empty()).count();
            if unknown > 0 {
                warn!(
                    unknown,
                    "{} does not know the holders of every piece yet; reads through it may wait",
                    self.bootstrap
                );
            }
        }
        // Only now does the version become visible.
        let r = self
            .ask(Request::Publish {
                manifest: manifest.as_bytes().to_vec(),
            })
            .await
            .map_err(|e| ClientError::PublishUnknown(e.to_string()))?;
        match r {
            Response::Published { .. } => {}
            Response::Error { message, .. } => return Err(ClientError::Publish(message)),
            other => return Err(refusal(&self.bootstrap, other).into()),
        }
        info!(version = %manifest.version(), pieces, sent, "published");
        Ok(PushReport {
            version: manifest.version(),
            manifest,
            pieces,
            sent,
            bytes_sent,
            elapsed: t0.elapsed(),
            unchanged: false,
        })
    }

    fn tally(
        &self,
        done: Result<Result<Acked, ClientError>, tokio::task::JoinError>,
        sent: &mut u64,
        bytes: &mut u64,
    ) -> Option<ClientError> {
        match done {
            Ok(Ok(a)) => {
                if !a.already {
                    *sent += 1;
                    *bytes += u64::from(a.len);
                }
                None
            }
            Ok(Err(e)) => Some(e),
            Err(e) => Some(ClientError::Internal(e.to_string())),
        }
    }

    /// Pulls `manifest`'s files into `dest`.
    pub async fn pull(
        &self,
        manifest: &Manifest,
        dest: &Path,
        progress: Progress,
    ) -> Result<PullReport, ClientError> {
        let t0 = Instant::now();
        let mut report = PullReport::default();
        let params = manifest.body().params;
        let k = usize::from(params.k());
        // Files already complete at the destination (an earlier pull) are skipped.
        // Files already complete at the destination are skipped; files an earlier pull
        // left part way continue from their last whole stripe.
        let plan: Vec<(usize, usize)> = {
            let m = manifest.clone();
            let dest = dest.to_path_buf();
            tokio::task::spawn_blocking(move || -> Result<Vec<(usize, usize)>, EngineError> {
                let mut plan = Vec::new();
                for (i, f) in m.files().iter().enumerate() {
                    let done = engine::target_path(&dest, f)
                        .map(|t| engine::is_complete(&t, f))
                        .unwrap_or(false);
                    if !done {
                        plan.push((i, engine::resume_point(&dest, f)?));
                    }
                }
                Ok(plan)
            })
            .await
            .map_err(|e| ClientError::Internal(e.to_string()))??
        };
        let files_todo = plan.len() as u64;
        let mut pending = vec![false; manifest.files().len()];
        for &(fi, from) in &plan {
            pending[fi] = true;
            let kept: u64 = manifest.files()[fi].stripes[..from]
                .iter()
                .map(|s| s.data_len)
                .sum();
            report.resumed_bytes += kept;
            progress(kept);
        }
        for (i, f) in manifest.files().iter().enumerate() {
            if !pending[i] {
                report.skipped += 1;
                progress(f.size);
            }
        }
        let stripes: Vec<(usize, usize)> = plan
            .iter()
            .flat_map(|&(fi, from)| {
                (from..manifest.files()[fi].stripes.len()).map(move |si| (fi, si))
            })
            .collect();
        let ids: Vec<PieceId> = stripes
            .iter()
            .flat_map(|&(fi, si)| manifest.files()[fi].stripes[si].pieces.iter().map(|p| p.id))
            .collect();
        let (nodes, holders) = self
            .locate_patiently(&ids, LOCATE_PATIENCE, |h| {
                !short_stripes(manifest, &stripes, h, k).is_empty()
            })
            .await?;
        let short = short_stripes(manifest, &stripes, &holders, k);
        if !short.is_empty() {
            return Err(ClientError::Unrecoverable(short));
        }
        let mut by_piece: HashMap<PieceId, Vec<HolderIx>> = HashMap::with_capacity(ids.len());
        for (id, h) in ids.iter().zip(holders) {
            by_piece.insert(*id, h);
        }
        let ahead = (PULL_AHEAD / params.stripe_size().max(1)).clamp(2, 16) as usize;
        let speeds = Arc::new(Mutex::new(vec![0.0f64; nodes.len()]));
        let nodes = Arc::new(nodes);
        let (tx, mut rx) = mpsc::channel::<Result<Vec<u8>, ClientError>>(ahead);
        let fetcher = {
            let manifest = manifest.clone();
            let data = self.data.clone();
            let counters = Arc::new(Mutex::new((0u64, 0u64)));
            let c2 = counters.clone();
            let task = tokio::spawn(async move {
                let mut s = futures::stream::iter(stripes)
                    .map(|(fi, si)| {
                        let stripe = manifest.files()[fi].stripes[si].clone();
                        let holders = stripe
                            .pieces
                            .iter()
                            .map(|p| by_piece.get(&p.id).cloned().unwrap_or_default())
                            .collect();
                        fetch_stripe(
                            data.clone(),
                            nodes.clone(),
                            speeds.clone(),
                            params,
                            stripe,
                            holders,
                            manifest.files()[fi].path.to_string(),
                            si,
                            c2.clone(),
                        )
                    })
                    .buffered(ahead);
                while let Some(r) = s.next().await {
                    let failed = r.is_err();
                    if tx.send(r).await.is_err() || failed {
                        break;
                    }
                }
            });
            (task, counters)
        };
        let writer = {
            let manifest = manifest.clone();
            let dest = dest.to_path_buf();
            let progress = progress.clone();
            tokio::task::spawn_blocking(move || -> Result<u64, ClientError> {
                let mut written = 0u64;
                let mut stripe_err: Option<ClientError> = None;
                let res = engine::restore_resumable(
                    &manifest,
                    &dest,
                    &plan,
                    |fi, _| match rx.blocking_recv() {
                        Some(Ok(d)) => {
                            progress(d.len() as u64);
                            Ok(d)
                        }
                        Some(Err(e)) => {
                            stripe_err = Some(e);
                            Err(EngineError::Io {
                                op: "fetch",
                                path: PathBuf::from(manifest.files()[fi].path.as_str()),
                                source: std::io::Error::other("stripe unavailable"),
                            })
                        }
                        None => Err(EngineError::Io {
                            op: "fetch",
                            path: PathBuf::from(manifest.files()[fi].path.as_str()),
                            source: std::io::Error::other("fetcher stopped"),
                        }),
                    },
                    |n| written += n,
                );
                match (res, stripe_err) {
                    (_, Some(e)) => Err(e),
                    (Err(e), None) => Err(e.into()),
                    (Ok(()), None) => Ok(written),
                }
            })
        };
        let written = writer
            .await
            .map_err(|e| ClientError::Internal(e.to_string()));
        fetcher.0.abort();
        let written = written??;
        let (pieces, failed) = *fetcher.1.lock().unwrap_or_else(|p| p.into_inner());
        report.files = files_todo;
        report.bytes = written;
        report.pieces = pieces;
        report.failed_fetches = failed;
        report.elapsed = t0.elapsed();
        Ok(report)
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

/// An upper estimate of the manifest's size: per file its path and hash, per stripe its
/// lengths and one hash per piece, plus the card and license.
fn manifest_estimate(files: &[engine::SourceFile], opts: &EncodeOptions) -> u64 {
    let n = opts.params.n() as u64;
    let per_file: u64 = files
        .iter()
        .map(|f| {
            f.path.as_str().len() as u64 + 64 + opts.params.stripe_count(f.size) * (16 + 32 * n)
        })
        .sum();
    per_file + crate::manifest::MAX_CARD_LEN as u64 + opts.license.len() as u64 + 1024
}

fn same_content(a: &crate::manifest::ManifestBody, b: &crate::manifest::ManifestBody) -> bool {
    a.files == b.files && a.card == b.card && a.license == b.license && a.params == b.params
}

/// The error a response that does not answer the question amounts to.
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

fn short_stripes(
    manifest: &Manifest,
    stripes: &[(usize, usize)],
    holders: &[Vec<HolderIx>],
    k: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut at = 0;
    for &(fi, si) in stripes {
        let n = manifest.files()[fi].stripes[si].pieces.len();
        let reachable = holders[at..at + n].iter().filter(|h| !h.is_empty()).count();
        at += n;
        if reachable < k {
            out.push(format!(
                "{} stripe {si}: {reachable} of {k} needed",
                manifest.files()[fi].path
            ));
        }
    }
    out
}

/// One acknowledged piece.
#[derive(Debug, Clone, Copy)]
struct Acked {
    len: u32,
    /// It said it held the piece already, so nothing was transferred.
    already: bool,
}

/// What a push's task needs to place one piece: the nodes, their turns, what the push
/// has learned of them, and the stripe's other nodes (a replacement must be none of them).
struct Placing {
    control: Control,
    nodes: Arc<Vec<NodeInfo>>,
    per_node: Vec<Arc<Semaphore>>,
    vetting: Arc<Vetting>,
    from: wire::DataAddr,
    stripe: Vec<usize>,
}

impl Placing {
    /// Has `first` (or, when it is caught, another node) hold the piece, and proves the
    /// acknowledgement when a check is due ([`spot_check`]).
    async fn place(&self, id: PieceId, len: u32, first: usize) -> Result<Acked, ClientError> {
        let mut node = first;
        loop {
            if self.vetting.is_caught(node) {
                node = self.replacement(node, id)?;
                continue;
            }
            let already = {
                let _turn = self.per_node[node]
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|e| ClientError::Internal(e.to_string()))?;
                hold(&self.control, &self.nodes[node], id, len, self.from.clone()).await?
            };
            if self.vetting.is_caught(node) {
                continue;
            }
            if !self.vetting.is_vetted(node) {
                // Until the node has passed a check, its acknowledgements are checked one
                // at a time, and the others wait for the verdict.
                let _turn = self.vetting.turn(node).await;
                if self.vetting.is_caught(node) {
                    continue;
                }
                if !self.vetting.is_vetted(node) {
                    if self.proven(node, id, len).await {
                        self.vetting.passed(node);
                        return Ok(Acked { len, already });
                    }
                    continue;
                }
            }
            if !self.vetting.sampled(node, &id) || self.proven(node, id, len).await {
                return Ok(Acked { len, already });
            }
        }
    }

    /// Whether `node` proves it holds `id`; if not, it is caught.
    async fn proven(&self, node: usize, id: PieceId, len: u32) -> bool {
        let info = &self.nodes[node];
        let checked = match info.peer.parse() {
            Ok(peer) => {
                let addrs: Vec<Multiaddr> =
                    info.addrs.iter().filter_map(|a| a.parse().ok()).collect();
                spot_check::prove(&self.control, peer, &addrs, id, len).await
            }
            Err(_) => Err("a bad peer id".into()),
        };
        match checked {
            Ok(()) => true,
            Err(reason) => {
                warn!(
                    node = %self.nodes[node].peer,
                    piece = %id,
                    "a node acknowledged a piece it cannot prove ({reason}); it gets no more pieces of this push"
                );
                self.vetting.caught(node);
                false
            }
        }
    }

    /// The next node after `after` that holds no other piece of the stripe and was not
    /// caught: an established one if any is left, so replacing a node never adds a new
    /// identity to the stripe while an established node could take the piece.
    fn replacement(&self, after: usize, id: PieceId) -> Result<usize, ClientError> {
        let n = self.nodes.len();
        let free = |i: &usize| !self.stripe.contains(i) && !self.vetting.is_caught(*i);
        let mut order = (1..n).map(|d| (after + d) % n);
        order
            .clone()
            .filter(free)
            .find(|&i| self.nodes[i].trust == Trust::Established)
            .or_else(|| order.find(free))
            .ok_or_else(|| ClientError::SpotCheck {
                node: self.nodes[after].peer.clone(),
                piece: id,
                reason: "no other node is left to take the piece".into(),
            })
    }
}

async fn hold(
    control: &Control,
    node: &NodeInfo,
    id: PieceId,
    len: u32,
    from: wire::DataAddr,
) -> Result<bool, ClientError> {
    let fail = |reason: String| ClientError::Hold {
        node: node.peer.clone(),
        piece: id,
        reason,
    };
    let peer = parse_peer(&node.peer).ok_or_else(|| fail("bad peer id".into()))?;
    let addrs: Vec<Multiaddr> = node.addrs.iter().filter_map(|a| a.parse().ok()).collect();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let r = control
            .request(
                peer,
                addrs.clone(),
                Request::Hold {
                    piece: id.0,
                    len,
                    from: from.clone(),
                },
            )
            .await;
        let retry = match r {
            Ok(Response::Held { already }) => return Ok(already),
            Ok(Response::Error {
                code: code @ (ErrorCode::Busy | ErrorCode::FetchFailed),
                message,
            }) => format!("{message} ({code:?})"),
            Ok(Response::Error { message, .. }) => return Err(fail(message)),
            Ok(_) => return Err(fail("unexpected answer".into())),
            Err(e) => format!("{e}"),
        };
        if attempt >= HOLD_ATTEMPTS {
            return Err(fail(retry));
        }
        warn!(node = %node.peer, piece = %id, "hold failed, retrying: {retry}");
        tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn fetch_stripe(
    data: DataPlane,
    nodes: Arc<Vec<NodeRef>>,
    speeds: Arc<Mutex<Vec<f64>>>,
    params: crate::erasure::ErasureParams,
    stripe: crate::manifest::Stripe,
    holders: Vec<Vec<HolderIx>>,
    path: String,
    si: usize,
    counters: Arc<Mutex<(u64, u64)>>,
) -> Result<Vec<u8>, ClientError> {
    let k = usize::from(params.k());
    let arrived = fetch_pieces(&data, &nodes, &speeds, k, &stripe, holders, &counters)
        .await
        .map_err(|viable| {
            ClientError::Unrecoverable(vec![format!("{path} stripe {si}: {viable} of {k} needed")])
        })?;
    // Decoding is CPU work: keep it off the async workers.
    let decoded = tokio::task::spawn_blocking(move || {
        let mut asm = StripeAssembler::new(params, &stripe);
        for (index, bytes) in arrived {
            // Checked again here: the assembler trusts nothing it is given.
            if asm.offer(index, bytes) == Offer::BadHash {
                warn!(piece = %stripe.pieces[index].id, "piece failed its hash check");
            }
        }
        asm.finish()
    })
    .await
    .map_err(|e| ClientError::Internal(e.to_string()))?;
    decoded.map_err(|source| {
        EngineError::Erasure {
            path,
            stripe: si,
            source,
        }
        .into()
    })
}

/// Marks a holder in `speeds` that served wrong bytes: it is never asked again.
const BANNED: f64 = f64::NEG_INFINITY;

/// Fetches any `k` pieces of `stripe`, each verified against its id by the data plane:
/// data pieces first, fastest holders first, moving on from holders that fail. A holder
/// that sends bytes not matching the piece is banned for the rest of the run (`speeds`
/// is shared by every stripe of the run). `Err` carries how many pieces were still
/// reachable when it gave up.
pub(crate) async fn fetch_pieces(
    data: &DataPlane,
    nodes: &Arc<Vec<NodeRef>>,
    speeds: &Arc<Mutex<Vec<f64>>>,
    k: usize,
    stripe: &crate::manifest::Stripe,
    holders: Vec<Vec<HolderIx>>,
    counters: &Arc<Mutex<(u64, u64)>>,
) -> Result<Vec<(usize, Vec<u8>)>, usize> {
    let mut plan = StripeFetch::new(k, holders);
    let mut arrived: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut inflight = FuturesUnordered::new();
    loop {
        loop {
            let step = {
                let sp = speeds.lock().unwrap_or_else(|p| p.into_inner());
                plan.next(|h| sp.get(h).copied().unwrap_or(0.0))
            };
            match step {
                Step::Fetch { index, holder } => {
                    let banned = speeds
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(holder)
                        .is_some_and(|&s| s == BANNED);
                    if banned {
                        plan.failed(index, holder);
                        continue;
                    }
                    let (data, node, r) =
                        (data.clone(), nodes[holder].clone(), stripe.pieces[index]);
                    inflight.push(async move {
                        let t = Instant::now();
                        let got = data.fetch(&node.data, r.id, r.len).await;
                        (index, holder, got, t.elapsed())
                    });
                }
                Step::Wait => break,
                Step::Ready => return Ok(arrived),
                Step::Unrecoverable => return Err(plan.viable()),
            }
        }
        let Some((index, holder, got, took)) = inflight.next().await else {
            continue;
        };
        let mut sp = speeds.lock().unwrap_or_else(|p| p.into_inner());
        match got {
            Ok(bytes) => {
                let len = bytes.len() as f64;
                arrived.push((index, bytes));
                plan.succeeded(index);
                counters.lock().unwrap_or_else(|p| p.into_inner()).0 += 1;
                let rate = len / took.as_secs_f64().max(1e-6);
                if let Some(s) = sp.get_mut(holder).filter(|s| **s != BANNED) {
                    *s = if *s == 0.0 {
                        rate
                    } else {
                        0.7 * *s + 0.3 * rate
                    };
                }
            }
            Err(e) => {
                let forged = matches!(e, DataError::Corrupt { .. });
                if forged {
                    warn!(node = %nodes[holder].peer, "{e}; not reading from it again");
                } else {
                    warn!("{e}; trying another holder");
                }
                plan.failed(index, holder);
                counters.lock().unwrap_or_else(|p| p.into_inner()).1 += 1;
                if let Some(s) = sp.get_mut(holder) {
                    *s = if forged { BANNED } else { s.min(-1.0) };
                }
            }
        }
    }
}

async fn run(
    mut swarm: Swarm<Behaviour>,
    mut rx: mpsc::Receiver<Command>,
    cancel: CancellationToken,
) {
    let mut pending = Pending::default();
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            cmd = rx.recv() => match cmd {
                None => break,
                Some(Command::Request { peer, addrs, request, reply }) => pending.send(&mut swarm, peer, addrs, request, reply),
                Some(Command::Respond { channel, response }) => { swarm.behaviour_mut().control.send_response(channel, response).ok(); }
                Some(Command::Gossip { .. } | Command::Validate { .. } | Command::Provide(_)) => {}
                Some(Command::Providers { reply, .. }) => { reply.send(Vec::new()).ok(); }
            },
            Some(event) = swarm.next() => {
                if let SwarmEvent::Behaviour(BehaviourEvent::Control(e)) = event
                    && let Some((_, _, channel)) = pending.on_event(e)
                {
                    let refuse = Response::Error { code: ErrorCode::BadRequest, message: "clients serve no requests".into() };
                    swarm.behaviour_mut().control.send_response(channel, refuse).ok();
                }
            }
        }
    }
}
