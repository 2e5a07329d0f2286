//! The data plane: pieces move over iroh (QUIC) with the iroh-blobs protocol.
//!
//! A piece's id is its BLAKE3 hash, which is also its iroh-blobs hash, so any iroh-blobs
//! client can fetch a piece from a node by the id in the manifest. The node serves GET
//! requests for single blobs straight from its own [`PieceSource`] (the piece store): it
//! builds the bao outboard in memory and encodes the requested ranges, refusing to serve
//! bytes that do not hash to the id. Fetching runs the iroh-blobs client state machine,
//! which verifies every 16 KiB chunk group against the hash as it arrives, after checking
//! that the announced size is the one the manifest expects (so a peer cannot make us
//! allocate more than the manifest allows).

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bao_tree::io::{outboard::PreOrderMemOutboard, sync::encode_ranges};
use bytes::Bytes;
use iroh::{
    Endpoint, EndpointAddr, EndpointId, SecretKey, TransportAddr,
    endpoint::{Connection, RelayMode, presets},
    protocol::{AcceptError, ProtocolHandler, Router},
};
use iroh_blobs::{
    Hash,
    get::fsm,
    protocol::{GetRequest, Request},
    store::IROH_BLOCK_SIZE,
};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::{jittered, wire::DataAddr};
use crate::ids::PieceId;

/// Most pieces served at once; each holds the piece and its encoding in memory. A request
/// beyond this is refused at once with [`BUSY`], not queued.
pub(crate) const MAX_SERVING: usize = 32;
/// Stream reset codes the provider answers with.
const NOT_SERVED: u32 = 1;
const NOT_HELD: u32 = 2;
const TOO_SLOW: u32 = 3;
/// The provider is serving [`MAX_SERVING`] pieces already: ask again shortly, or ask
/// another holder.
const BUSY: u32 = 4;
/// How often [`DataPlane::fetch_patiently`] asks a busy holder, and the first wait.
const BUSY_TRIES: u32 = 6;
const BUSY_BACKOFF: Duration = Duration::from_millis(50);
/// Most cached outgoing connections.
const MAX_CONNECTIONS: usize = 256;
/// How long a holder may take to start answering a piece request.
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a peer may take to send its request.
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a transfer of `len` bytes may take: 30 s plus 1 s per MB, so a link of
/// 1 MB/s or better never times out.
fn fetch_timeout(len: u64) -> Duration {
    Duration::from_secs(30) + Duration::from_micros(len)
}
/// How long connecting may take (a peer that is gone does not answer at all).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of the data plane.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The endpoint could not be bound.
    #[error("cannot bind the data plane on {addr}: {reason}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The peer's address is not usable.
    #[error("bad data-plane address: {0}")]
    BadAddr(String),
    /// The connection could not be made.
    #[error("cannot connect to {peer}: {reason}")]
    Connect {
        /// The peer.
        peer: String,
        /// Why.
        reason: String,
    },
    /// The peer sent bytes that do not hash to the piece: it is lying or broken.
    #[error("peer {peer} sent bytes that do not match piece {piece}")]
    Corrupt {
        /// The piece.
        piece: PieceId,
        /// The peer.
        peer: String,
    },
    /// The peer is serving as many pieces as it can and refused this one.
    #[error("peer {peer} is busy serving other pieces; ask it again shortly or ask another holder")]
    Busy {
        /// The piece.
        piece: PieceId,
        /// The peer.
        peer: String,
    },
    /// The transfer failed.
    #[error("fetching piece {piece} from {peer} failed: {reason}")]
    Fetch {
        /// The piece.
        piece: PieceId,
        /// The peer.
        peer: String,
        /// Why.
        reason: String,
    },
}

/// Where the data plane reads pieces it serves.
pub trait PieceSource: Send + Sync + 'static {
    /// The bytes of `id` as held, if held. Called on a blocking thread. They need not be
    /// verified: the data plane hashes them (building the outboard it sends) and refuses
    /// to serve bytes that do not match the id.
    fn piece(&self, id: &PieceId) -> Option<Bytes>;
    /// Counts bytes served to others.
    fn served(&self, _bytes: u64) {}
}

/// What a provider serving [`MAX_SERVING`] pieces does with one more request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Refuse it at once with a busy answer: a node, serving whoever asks.
    Refuse,
    /// Let it wait for a slot: a client serving only the nodes it asked to fetch from it,
    /// as many as it chose to.
    Queue,
}

/// A bound data-plane endpoint that serves pieces and fetches them from others.
#[derive(Debug, Clone)]
pub struct DataPlane {
    endpoint: Endpoint,
    router: Router,
    conns: Arc<Mutex<HashMap<EndpointId, Connection>>>,
}

impl DataPlane {
    /// Binds on `addr` (UDP) with the node's key, with no relays and no address lookup:
    /// peers are reached at the direct addresses the control plane tells us.
    ///
    /// `when_full` says what its provider does with a request beyond [`MAX_SERVING`].
    /// `lie` is fault injection for tests of the network's defences: the endpoint then
    /// serves every piece with one byte flipped, encoded consistently with the wrong bytes,
    /// as a dishonest node would. Honest nodes pass `false`.
    pub async fn bind(
        secret: [u8; 32],
        addr: SocketAddr,
        source: Arc<dyn PieceSource>,
        when_full: WhenFull,
        lie: bool,
    ) -> Result<Self, DataError> {
        let bind_err = |e: &dyn std::fmt::Display| DataError::Bind {
            addr,
            reason: e.to_string(),
        };
        let builder = Endpoint::builder(presets::Minimal)
            .secret_key(SecretKey::from_bytes(&secret))
            .relay_mode(RelayMode::Disabled)
            .clear_ip_transports()
            .bind_addr(addr)
            .map_err(|e| bind_err(&e))?;
        let endpoint = builder.bind().await.map_err(|e| bind_err(&e))?;
        let router = Router::builder(endpoint.clone())
            .accept(
                iroh_blobs::ALPN,
                Provider {
                    source,
                    lie,
                    when_full,
                    permits: Arc::new(Semaphore::new(MAX_SERVING)),
                },
            )
            .spawn();
        Ok(Self {
            endpoint,
            router,
            conns: Arc::default(),
        })
    }

    /// This endpoint's address, for others to fetch from.
    pub fn addr(&self) -> DataAddr {
        let bound = self.endpoint.bound_sockets();
        let addrs = if bound.iter().any(|a| a.ip().is_unspecified()) {
            // Bound to every interface: name the interface addresses iroh found.
            self.endpoint
                .addr()
                .addrs
                .iter()
                .filter_map(|a| match a {
                    TransportAddr::Ip(ip) => Some(*ip),
                    _ => None,
                })
                .collect()
        } else {
            bound
        };
        let mut addrs = addrs;
        addrs.truncate(super::wire::MAX_DATA_ADDRS);
        DataAddr {
            id: *self.endpoint.id().as_bytes(),
            addrs,
        }
    }

    async fn connection(&self, to: &DataAddr) -> Result<Connection, DataError> {
        let id = EndpointId::from_bytes(&to.id).map_err(|e| DataError::BadAddr(e.to_string()))?;
        if let Some(c) = self.cache().get(&id)
            && c.close_reason().is_none()
        {
            return Ok(c.clone());
        }
        let addr = EndpointAddr::from_parts(id, to.addrs.iter().copied().map(TransportAddr::Ip));
        let conn = tokio::time::timeout(
            CONNECT_TIMEOUT,
            self.endpoint.connect(addr, iroh_blobs::ALPN),
        )
        .await
        .map_err(|_| "timed out".to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
        .map_err(|reason| DataError::Connect {
            peer: id.fmt_short().to_string(),
            reason,
        })?;
        let mut cache = self.cache();
        if cache.len() >= MAX_CONNECTIONS {
            cache.retain(|_, c| c.close_reason().is_none());
            if cache.len() >= MAX_CONNECTIONS {
                cache.clear();
            }
        }
        cache.insert(id, conn.clone());
        Ok(conn)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<EndpointId, Connection>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fetches piece `id` of `len` bytes from `from`, verified against its hash chunk by
    /// chunk. A peer announcing another size or sending a byte that does not verify fails
    /// the transfer; the caller tries another holder.
    pub async fn fetch(
        &self,
        from: &DataAddr,
        id: PieceId,
        len: u32,
    ) -> Result<Vec<u8>, DataError> {
        let peer = hex::encode(&from.id[..5]);
        let fail = |reason: String| DataError::Fetch {
            piece: id,
            peer: peer.clone(),
            reason,
        };
        let conn = self.connection(from).await?;
        let got = tokio::time::timeout(fetch_timeout(u64::from(len)), fetch_on(conn, id, len))
            .await
            .map_err(|_| fail("timed out".into()))
            .and_then(|r| {
                r.map_err(|e| match e {
                    FetchFail::Mismatch => DataError::Corrupt {
                        piece: id,
                        peer: peer.clone(),
                    },
                    FetchFail::Busy => DataError::Busy {
                        piece: id,
                        peer: peer.clone(),
                    },
                    FetchFail::Other(reason) => fail(reason),
                })
            });
        if got
            .as_ref()
            .is_err_and(|e| !matches!(e, DataError::Busy { .. }))
            && let Ok(eid) = EndpointId::from_bytes(&from.id)
        {
            // The connection may be the problem; the next attempt makes a fresh one.
            self.cache().remove(&eid);
        }
        got
    }

    /// [`fetch`](Self::fetch), asking a busy holder again a few times, waiting longer
    /// each time (waits of 50 ms doubling, about 1.5 s in all): for a piece only this holder is asked for.
    pub async fn fetch_patiently(
        &self,
        from: &DataAddr,
        id: PieceId,
        len: u32,
    ) -> Result<Vec<u8>, DataError> {
        let mut wait = BUSY_BACKOFF;
        for _ in 1..BUSY_TRIES {
            match self.fetch(from, id, len).await {
                Err(DataError::Busy { .. }) => {
                    tokio::time::sleep(jittered(wait)).await;
                    wait *= 2;
                }
                got => return got,
            }
        }
        self.fetch(from, id, len).await
    }

    /// Closes the endpoint, letting peers know.
    pub async fn shutdown(&self) {
        if let Err(e) = self.router.shutdown().await {
            debug!("data plane shutdown: {e}");
        }
        self.endpoint.close().await;
    }
}

/// Why one transfer failed: wrong bytes (which says something about the peer) or anything
/// else (which may be the network's fault).
enum FetchFail {
    Mismatch,
    Busy,
    Other(String),
}

impl From<String> for FetchFail {
    fn from(s: String) -> Self {
        Self::Other(s)
    }
}

impl From<&str> for FetchFail {
    fn from(s: &str) -> Self {
        Self::Other(s.to_string())
    }
}

async fn fetch_on(conn: Connection, id: PieceId, len: u32) -> Result<Vec<u8>, FetchFail> {
    let request = GetRequest::blob(Hash::from_bytes(id.0));
    let initial = fsm::start(conn, request, Default::default());
    let connected = initial.next().await.map_err(|e| e.to_string())?;
    let fsm::ConnectedNext::StartRoot(start) = connected.next().await.map_err(|e| e.to_string())?
    else {
        return Err("peer answered a different request".into());
    };
    // A holder that died leaves a connection that answers nothing: give up on it soon,
    // so the stripe moves on to another holder.
    let (mut content, size) = tokio::time::timeout(FIRST_BYTE_TIMEOUT, start.next().next())
        .await
        .map_err(|_| format!("no answer in {FIRST_BYTE_TIMEOUT:?}"))?
        .map_err(|e| {
            let e = iroh_blobs::get::GetError::from(e);
            if e.iroh_error_code() == Some(BUSY.into()) {
                FetchFail::Busy
            } else {
                FetchFail::Other(e.to_string())
            }
        })?;
    if size != u64::from(len) {
        return Err(format!("peer announced {size} bytes, the manifest says {len}").into());
    }
    let mut out = vec![0u8; len as usize];
    let mut filled = 0u64;
    let end = loop {
        match content.next().await {
            fsm::BlobContentNext::More((next, item)) => {
                let item = item.map_err(|e| match e {
                    fsm::DecodeError::LeafHashMismatch { .. }
                    | fsm::DecodeError::ParentHashMismatch { .. } => FetchFail::Mismatch,
                    e => FetchFail::Other(e.to_string()),
                })?;
                if let bao_tree::io::BaoContentItem::Leaf(leaf) = item {
                    let start = leaf.offset as usize;
                    let stop = start
                        .checked_add(leaf.data.len())
                        .filter(|&e| e <= out.len())
                        .ok_or("leaf beyond the piece's end")?;
                    out[start..stop].copy_from_slice(&leaf.data);
                    filled += leaf.data.len() as u64;
                }
                content = next;
            }
            fsm::BlobContentNext::Done(end) => break end,
        }
    };
    if filled != u64::from(len) {
        return Err(format!("received {filled} of {len} bytes").into());
    }
    if let fsm::EndBlobNext::Closing(closing) = end.next() {
        closing.next().await.map_err(|e| e.to_string())?;
    }
    Ok(out)
}

#[derive(Clone)]
struct Provider {
    source: Arc<dyn PieceSource>,
    lie: bool,
    when_full: WhenFull,
    permits: Arc<Semaphore>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider").finish_non_exhaustive()
    }
}

impl ProtocolHandler for Provider {
    async fn accept(&self, conn: Connection) -> Result<(), AcceptError> {
        // A connection's streams are served by tasks this future owns (QUIC bounds how
        // many are open at once): they end with the connection, and when the router shuts
        // down and drops this future.
        let mut streams = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = conn.accept_bi() => {
                    let Ok((send, recv)) = accepted else { break };
                    let this = self.clone();
                    streams.spawn(async move {
                        if let Err(e) = this.serve(send, recv).await {
                            debug!("serving a piece failed: {e}");
                        }
                    });
                }
                Some(_) = streams.join_next(), if !streams.is_empty() => {}
            }
        }
        while streams.join_next().await.is_some() {}
        Ok(())
    }
}

impl Provider {
    async fn serve(
        &self,
        mut send: iroh::endpoint::SendStream,
        mut recv: iroh::endpoint::RecvStream,
    ) -> Result<(), String> {
        let (request, _) =
            tokio::time::timeout(REQUEST_READ_TIMEOUT, Request::read_async(&mut recv))
                .await
                .map_err(|_| "request not sent in time".to_string())?
                .map_err(|e| e.to_string())?;
        let Request::Get(get) = request else {
            send.reset(NOT_SERVED.into()).ok();
            return Err("only GET requests are served".into());
        };
        let Some((0, ranges)) = get.ranges.as_single() else {
            send.reset(NOT_SERVED.into()).ok();
            return Err("only single-blob requests are served".into());
        };
        let ranges = ranges.clone();
        let permit = match self.when_full {
            WhenFull::Queue => self.permits.clone().acquire_owned().await.ok(),
            WhenFull::Refuse => self.permits.clone().try_acquire_owned().ok(),
        };
        // Full: refuse at once rather than queue, so the reader asks another holder.
        let Some(_permit) = permit else {
            send.reset(BUSY.into()).ok();
            return Err("busy".into());
        };
        let id = PieceId(*get.hash.as_bytes());
        let source = self.source.clone();
        let lie = self.lie;
        let encoded = tokio::task::spawn_blocking(move || {
            let mut data = source.piece(&id)?;
            if lie && !data.is_empty() {
                let mut v = data.to_vec();
                if let Some(b) = v.last_mut() {
                    *b ^= 0x01;
                }
                data = Bytes::from(v);
            }
            let outboard = PreOrderMemOutboard::create(&data, IROH_BLOCK_SIZE);
            if !lie && outboard.root.as_bytes() != &id.0 {
                warn!(piece = %id, "stored piece does not match its id; not serving it");
                return None;
            }
            let mut out = Vec::with_capacity(data.len() + data.len() / 256 + 64);
            out.extend_from_slice(&(data.len() as u64).to_le_bytes());
            // The outboard was built from these very bytes and its root checked against
            // the id above, so encoding need not hash them a third time.
            encode_ranges(&data[..], &outboard, &ranges, &mut out).ok()?;
            source.served(data.len() as u64);
            Some(out)
        })
        .await
        .map_err(|e| e.to_string())?;
        let Some(encoded) = encoded else {
            send.reset(NOT_HELD.into()).ok();
            return Err(format!("piece {id} not held"));
        };
        // A reader that stalls loses its slot after the deadline, so it cannot hold the
        // node's serving capacity hostage.
        let deadline = fetch_timeout(encoded.len() as u64);
        let sent = tokio::time::timeout(deadline, async {
            send.write_all(&encoded).await.map_err(|e| e.to_string())?;
            send.finish().map_err(|e| e.to_string())?;
            // Wait for the peer to read everything before the stream is dropped.
            send.stopped().await.ok();
            Ok::<(), String>(())
        })
        .await;
        match sent {
            Ok(r) => r,
            Err(_) => {
                send.reset(TOO_SLOW.into()).ok();
                Err(format!("peer did not read piece {id} in {deadline:?}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Condvar;

    use super::*;

    /// Serves one piece, each request waiting until the gate opens.
    struct Gated {
        bytes: Bytes,
        entered: Mutex<usize>,
        open: Mutex<bool>,
        opened: Condvar,
    }

    impl PieceSource for Gated {
        fn piece(&self, _: &PieceId) -> Option<Bytes> {
            *self.entered.lock().unwrap() += 1;
            let mut open = self.open.lock().unwrap();
            while !*open {
                open = self.opened.wait(open).unwrap();
            }
            Some(self.bytes.clone())
        }
    }

    struct Nothing;

    impl PieceSource for Nothing {
        fn piece(&self, _: &PieceId) -> Option<Bytes> {
            None
        }
    }

    fn secret() -> [u8; 32] {
        let mut s = [0u8; 32];
        getrandom::fill(&mut s).unwrap();
        s
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_provider_at_capacity_refuses_at_once_and_serves_again_when_free() {
        let bytes = Bytes::from(crate::local::synthetic(40_000, 3));
        let id = PieceId(*blake3::hash(&bytes).as_bytes());
        let len = bytes.len() as u32;
        let gated = Arc::new(Gated {
            bytes,
            entered: Mutex::new(0),
            open: Mutex::new(false),
            opened: Condvar::new(),
        });
        let local = SocketAddr::from(([127, 0, 0, 1], 0));
        let holder = DataPlane::bind(secret(), local, gated.clone(), WhenFull::Refuse, false)
            .await
            .unwrap();
        let reader = DataPlane::bind(secret(), local, Arc::new(Nothing), WhenFull::Queue, false)
            .await
            .unwrap();
        let from = holder.addr();
        // Every serving slot taken by a request that waits at the gate.
        let stalled: Vec<_> = (0..MAX_SERVING)
            .map(|_| {
                let (reader, from) = (reader.clone(), from.clone());
                tokio::spawn(async move { reader.fetch(&from, id, len).await })
            })
            .collect();
        while *gated.entered.lock().unwrap() < MAX_SERVING {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // One more is refused at once, not queued behind them.
        let refused = reader.fetch(&from, id, len).await;
        assert!(
            matches!(refused, Err(DataError::Busy { .. })),
            "{refused:?}"
        );
        // A patient fetch gets it once the holder has room again.
        let patient = tokio::spawn({
            let (reader, from) = (reader.clone(), from.clone());
            async move { reader.fetch_patiently(&from, id, len).await }
        });
        *gated.open.lock().unwrap() = true;
        gated.opened.notify_all();
        for s in stalled {
            assert_eq!(s.await.unwrap().unwrap().len(), len as usize);
        }
        assert_eq!(patient.await.unwrap().unwrap().len(), len as usize);
        holder.shutdown().await;
        reader.shutdown().await;
    }
}
