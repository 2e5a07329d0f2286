//! Push: encode a directory into pieces, place each stripe's pieces on distinct nodes
//! (new identities capped, acknowledgements spot-checked), and publish the signed
//! manifest, with who took each piece, only once every piece is held; then store each
//! stripe's placement record, so that every reader finds the holders.

use std::{
    collections::HashMap,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use libp2p::Multiaddr;
use tokio::{
    sync::{Semaphore, mpsc},
    task::JoinSet,
};
use tracing::{info, warn};

use futures::StreamExt;

use super::{Client, ClientError, Progress, parse_peer, refusal, sample};
use crate::{
    engine::{self, EncodeOptions, PieceSlot},
    ids::{NodeId, PieceId, VersionId},
    location::{Holder, PlacementRecord},
    manifest::{Manifest, PublisherKey},
    net::{
        NetError,
        budget::ByteBudget,
        domain::Interner,
        placement::{Candidate, PlacementError, Placer},
        spot_check::{self, Vetting},
        swarm::Control,
        wire::{self, ErrorCode, NodeInfo, PieceHolders, Request, Response, Trust},
    },
    repair::stripe_id,
};

/// Bytes of pieces a push keeps in memory waiting for their holders to fetch them.
const PUSH_BUDGET: u64 = 96 << 20;
/// Attempts at a `Hold` that failed for a reason worth retrying.
const HOLD_ATTEMPTS: u32 = 4;
/// Attempts at a batch of placement records whose answer did not come, or was `Busy`.
const PLACE_ATTEMPTS: u32 = 3;
/// `Hold` requests in flight to one node: what it fetches at once, so none wait there.
const HOLDS_PER_NODE: usize = 16;

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

impl Client {
    /// Publishes the directory (or file) at `root` as a new version.
    pub async fn push(
        &self,
        root: &Path,
        opts: EncodeOptions,
        key: &PublisherKey,
        progress: Progress,
    ) -> Result<PushReport, ClientError> {
        let t0 = Instant::now();
        let n = opts.params.n();
        let m = usize::from(opts.params.m());
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
        // Candidates from the whole network, drawn from a seed only this publisher can
        // make (no one can crowd identities around its walks), the same for the same
        // dataset (a push of it again finds its pieces where they were). Nodes the
        // bootstrap node shuns (caught forging, or failing) get nothing.
        let seed = *blake3::Hasher::new_derive_key("cairn push sample")
            .update(&key.secret_bytes())
            .update(opts.name.to_string().as_bytes())
            .finalize()
            .as_bytes();
        let data_bytes: u64 = files.iter().map(|f| f.size).sum();
        let piece_bytes = data_bytes.saturating_mul(n as u64) / u64::from(opts.params.k());
        let nodes: Vec<NodeInfo> = self
            .sample(seed, sample::sample_size(n, piece_bytes), n)
            .await?
            .into_iter()
            .filter(|i| i.trust != Trust::Shunned)
            .collect();
        let mut interner = Interner::default();
        let domains: Vec<Vec<u32>> = nodes.iter().map(|i| interner.ids(i.domains())).collect();
        let mut placer = Placer::new(
            nodes
                .iter()
                .zip(&domains)
                .map(|(i, d)| Candidate {
                    id: candidate_id(&i.peer),
                    free: i.free(),
                    established: i.trust == Trust::Established,
                    domains: d.clone(),
                })
                .collect(),
            m,
        )
        .with_seed(seed);
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
            domains = interner.len(),
            k = opts.params.k(),
            m,
            "pushing"
        );

        // Encoder thread -> bounded channel -> one Hold task per piece, bounded by bytes.
        let (tx, mut rx) = mpsc::channel::<(PieceSlot, PieceId, Vec<u8>)>(2 * n);
        let encoding_key = PublisherKey::from_secret_bytes(&key.secret_bytes());
        let progress_enc = progress.clone();
        let encoder = tokio::task::spawn_blocking(move || {
            engine::encode_files(
                &files,
                &opts,
                &encoding_key,
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
        // No more holds in flight than this client's data plane serves at once: a node's
        // fetch that waited in the client's queue would give up on its first byte.
        let serving = Arc::new(Semaphore::new(crate::net::data::MAX_SERVING));
        let mut tasks: JoinSet<Result<Acked, ClientError>> = JoinSet::new();
        let vetting = Arc::new(Vetting::new(nodes.len()));
        let shared_nodes = Arc::new(nodes.clone());
        let domains = Arc::new(domains);
        let mut last = (usize::MAX, usize::MAX);
        let mut targets: Vec<usize> = Vec::new();
        let mut pieces = 0u64;
        let mut tally = Tally::default();
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
                    if let Some(e) = tally.add(done, n) { failure = Some(e); break; }
                    budget.spend(want).await.map_err(|e| ClientError::Internal(e.to_string()))?
                }
            };
            pieces += 1;
            let len = bytes.len() as u32;
            self.outbox.0.insert(id, bytes);
            let piece = Placing {
                control: self.control.clone(),
                nodes: shared_nodes.clone(),
                domains: domains.clone(),
                per_node: per_node.clone(),
                serving: serving.clone(),
                vetting: vetting.clone(),
                from: self.data.addr(),
                stripe: targets.clone(),
                slot,
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
                if let Some(e) = tally.add(done, n) {
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
            if let Some(e) = tally.add(done, n) {
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
            self.place_records(&prev, key, &nodes, &tally.held).await?;
            return Ok(PushReport {
                version: prev.version(),
                manifest: prev,
                pieces,
                sent: tally.sent,
                bytes_sent: tally.bytes,
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
        // A node takes a version only once a sample of its pieces is proven: the
        // table of who took each piece tells the bootstrap node whom to ask.
        let holders = piece_holders(&manifest, &nodes, &tally.held);
        // Only now does the version become visible.
        let r = self
            .ask(Request::Publish {
                manifest: manifest.as_bytes().to_vec(),
                holders: Some(holders),
            })
            .await
            .map_err(|e| ClientError::PublishUnknown(e.to_string()))?;
        match r {
            Response::Published { .. } => {}
            Response::Error { message, .. } => return Err(ClientError::Publish(message)),
            other => return Err(refusal(&self.bootstrap, other).into()),
        }
        info!(version = %manifest.version(), pieces, sent = tally.sent, "published");
        self.place_records(&manifest, key, &nodes, &tally.held)
            .await?;
        Ok(PushReport {
            version: manifest.version(),
            manifest,
            pieces,
            sent: tally.sent,
            bytes_sent: tally.bytes,
            elapsed: t0.elapsed(),
            unchanged: false,
        })
    }
}

/// What the acknowledgements of a push add up to.
#[derive(Default)]
struct Tally {
    /// Pieces transferred.
    sent: u64,
    /// Their bytes.
    bytes: u64,
    /// Per stripe (file, stripe), the node holding each piece.
    held: HashMap<(usize, usize), Vec<Option<usize>>>,
}

impl Tally {
    /// Counts one finished piece task of a stripe of `n` pieces; its error, if it failed.
    fn add(
        &mut self,
        done: Result<Result<Acked, ClientError>, tokio::task::JoinError>,
        n: usize,
    ) -> Option<ClientError> {
        match done {
            Ok(Ok(a)) => {
                if !a.already {
                    self.sent += 1;
                    self.bytes += u64::from(a.len);
                }
                let stripe = self
                    .held
                    .entry((a.slot.file, a.slot.stripe))
                    .or_insert_with(|| vec![None; n]);
                if let Some(h) = stripe.get_mut(a.slot.index) {
                    *h = Some(a.node);
                }
                None
            }
            Ok(Err(e)) => Some(e),
            Err(e) => Some(ClientError::Internal(e.to_string())),
        }
    }
}

impl Client {
    /// Signs a placement record for every stripe of `manifest`, naming the nodes that
    /// acknowledged its pieces in this push, and has the bootstrap node store them in
    /// the DHT. Once this returns, every node can find every stripe's holders.
    async fn place_records(
        &self,
        manifest: &Manifest,
        key: &PublisherKey,
        nodes: &[NodeInfo],
        held: &HashMap<(usize, usize), Vec<Option<usize>>>,
    ) -> Result<(), ClientError> {
        let seq = crate::location::now_ms();
        let mut records = Vec::new();
        // Identical files have identical stripes, under one key: one record each.
        let mut seen = std::collections::HashSet::new();
        for (fi, f) in manifest.files().iter().enumerate() {
            for (si, stripe) in f.stripes.iter().enumerate() {
                if !seen.insert(stripe_id(stripe)) {
                    continue;
                }
                let holders = (0..stripe.pieces.len())
                    .map(|i| {
                        let node = held.get(&(fi, si))?.get(i).copied().flatten()?;
                        let info = nodes.get(node)?;
                        Some(Holder {
                            node: NodeId(info.data.id),
                            addrs: info.data.addrs.clone(),
                        })
                    })
                    .collect();
                let record = PlacementRecord {
                    publisher: key.id(),
                    stripe: stripe_id(stripe),
                    version: manifest.version(),
                    file: fi as u32,
                    index: si as u32,
                    seq,
                    holders,
                };
                records.push(serde_bytes::ByteBuf::from(
                    record.sign(key).as_bytes().to_vec(),
                ));
            }
        }
        let mut batches = Vec::new();
        while !records.is_empty() {
            let rest = records.split_off(records.len().min(wire::MAX_PLACE));
            batches.push(std::mem::replace(&mut records, rest));
        }
        // Placing is idempotent (the same records, the same seq): a batch whose answer did
        // not come in time, or that a loaded node could not store in the DHT in time
        // (`Busy`), is asked again after a pause.
        let answers: Vec<Result<Response, NetError>> = futures::stream::iter(batches)
            .map(|records| async move {
                let mut attempt = 1;
                loop {
                    let asked = self
                        .ask(Request::Place {
                            records: records.clone(),
                            publish: true,
                        })
                        .await;
                    let retry = match &asked {
                        Err(e) => e.to_string(),
                        Ok(Response::Error {
                            code: ErrorCode::Busy,
                            message,
                        }) => message.clone(),
                        Ok(_) => return asked,
                    };
                    if attempt >= PLACE_ATTEMPTS {
                        return asked;
                    }
                    warn!("placing records failed, asking again: {retry}");
                    // Long enough for the node's allowance of DHT stores to refill a batch.
                    tokio::time::sleep(Duration::from_secs(2 << attempt)).await;
                    attempt += 1;
                }
            })
            .buffer_unordered(4)
            .collect()
            .await;
        for a in answers {
            match a.map_err(|e| ClientError::Records(e.to_string()))? {
                Response::Placed { .. } => {}
                Response::Error { message, .. } => return Err(ClientError::Records(message)),
                other => return Err(refusal(&self.bootstrap, other).into()),
            }
        }
        Ok(())
    }
}

/// Who took each piece of `manifest`, in its order: the nodes of `nodes` that `held`
/// names, as a table.
fn piece_holders(
    manifest: &Manifest,
    nodes: &[NodeInfo],
    held: &HashMap<(usize, usize), Vec<Option<usize>>>,
) -> PieceHolders {
    let mut table: Vec<usize> = Vec::new();
    let mut index: HashMap<usize, u16> = HashMap::new();
    let mut of_piece = Vec::new();
    for (fi, f) in manifest.files().iter().enumerate() {
        for (si, stripe) in f.stripes.iter().enumerate() {
            for pi in 0..stripe.pieces.len() {
                let node = held
                    .get(&(fi, si))
                    .and_then(|h| h.get(pi).copied().flatten());
                of_piece.push(node.and_then(|n| {
                    if let Some(&i) = index.get(&n) {
                        return Some(i);
                    }
                    let i = u16::try_from(table.len()).ok()?;
                    (table.len() < wire::MAX_PEERS_LISTED).then(|| {
                        table.push(n);
                        index.insert(n, i);
                        i
                    })
                }));
            }
        }
    }
    let nodes = table.iter().map(|&n| nodes[n].data.clone()).collect();
    PieceHolders::new(nodes, of_piece)
}

/// The number a candidate is drawn by: a hash of its peer id, stable across pushes.
fn candidate_id(peer: &str) -> u64 {
    let mut head = [0u8; 8];
    head.copy_from_slice(&blake3::hash(peer.as_bytes()).as_bytes()[..8]);
    u64::from_le_bytes(head)
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
/// One acknowledged piece.
#[derive(Debug, Clone, Copy)]
struct Acked {
    len: u32,
    /// It said it held the piece already, so nothing was transferred.
    already: bool,
    /// Which piece: file, stripe, index in the stripe.
    slot: PieceSlot,
    /// The node that holds it.
    node: usize,
}

/// What a push's task needs to place one piece: the nodes, their turns, what the push
/// has learned of them, and the stripe's other nodes (a replacement must be none of them).
struct Placing {
    control: Control,
    nodes: Arc<Vec<NodeInfo>>,
    /// Each node's failure domains, numbered.
    domains: Arc<Vec<Vec<u32>>>,
    per_node: Vec<Arc<Semaphore>>,
    /// Holds in flight from this push, at most what its data plane serves at once.
    serving: Arc<Semaphore>,
    vetting: Arc<Vetting>,
    from: wire::DataAddr,
    stripe: Vec<usize>,
    /// The piece's place.
    slot: PieceSlot,
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
                let _slot = self
                    .serving
                    .acquire()
                    .await
                    .map_err(|e| ClientError::Internal(e.to_string()))?;
                hold(&self.control, &self.nodes[node], id, len, self.from.clone()).await?
            };
            // The node found this very piece corrupt on its disk lately: elsewhere.
            let Some(already) = already else {
                node = self.replacement(node, id)?;
                continue;
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
                        return Ok(self.acked(len, already, node));
                    }
                    continue;
                }
            }
            if !self.vetting.sampled(node, &id) || self.proven(node, id, len).await {
                return Ok(self.acked(len, already, node));
            }
        }
    }

    fn acked(&self, len: u32, already: bool, node: usize) -> Acked {
        Acked {
            len,
            already,
            slot: self.slot,
            node,
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

    /// The next node after `after` that holds no other piece of the stripe, shares no
    /// failure domain with the stripe's other nodes, and was not caught: an established
    /// one if any is left, so replacing a node never adds a new identity to the stripe
    /// while an established node could take the piece.
    fn replacement(&self, after: usize, id: PieceId) -> Result<usize, ClientError> {
        let n = self.nodes.len();
        let others: Vec<u32> = (self.stripe.iter().enumerate())
            .filter(|&(s, _)| s != self.slot.index)
            .flat_map(|(_, &i)| self.domains[i].iter().copied())
            .collect();
        let free = |i: &usize| {
            !self.stripe.contains(i)
                && !self.vetting.is_caught(*i)
                && !self.domains[*i].iter().any(|d| others.contains(d))
        };
        let mut order = (1..n).map(|d| (after + d) % n);
        order
            .clone()
            .filter(free)
            .find(|&i| self.nodes[i].trust == Trust::Established)
            .or_else(|| order.find(free))
            .ok_or_else(|| ClientError::SpotCheck {
                node: self.nodes[after].peer.clone(),
                piece: id,
                reason: "no other node, in a failure domain of its own, is left to take the piece"
                    .into(),
            })
    }
}

/// Asks `node` to hold piece `id`, fetching it from `from`, and asks again while it is
/// busy: whether it held the piece already, or `None` when it refuses this very piece
/// (it found its copy corrupt lately), so that it goes to another node.
async fn hold(
    control: &Control,
    node: &NodeInfo,
    id: PieceId,
    len: u32,
    from: wire::DataAddr,
) -> Result<Option<bool>, ClientError> {
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
            Ok(Response::Held { already }) => return Ok(Some(already)),
            Ok(Response::Error {
                code: ErrorCode::Corrupt,
                ..
            }) => return Ok(None),
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
