//! The HTTP API every node serves (axum): datasets, files with `Range`, publishing,
//! the network view, metrics, the OpenAPI document and a web page.
//!
//! A node's API reads the network through a [`Client`] of the node itself and a
//! [`Reader`] over it: a file's bytes are rebuilt on the fly from `k` of the `n` pieces
//! of each stripe that covers the requested range, verified piece by piece, and cached
//! in a bounded stripe cache shared by every request.
//!
//! - [`range`]: `Range`, `If-None-Match` and `If-Range`, decided without I/O.
//! - `datasets`: listings, versions, the network view.
//! - `files`: `GET|HEAD .../resolve/{version}/{path}`.
//! - `push`: `POST /v1/datasets/{owner}/{name}` (a tar body, spooled to disk).
//! - [`tokens`]: the operator's bearer tokens, stored hashed.
//! - [`metrics`]: Prometheus text.
//! - `page`: the HTML page at `/`.
//!
//! **Architecture invariant:** only this crate (and the binary's small HTTP client)
//! speaks HTTP. Every path segment, header and body is untrusted: names and paths are
//! parsed into `DatasetName`/`VersionId`/`RelPath` before use, files are looked up in
//! the verified manifest (never on a filesystem), and every body and queue is bounded.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderName, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use storage_node::{
    manifest::PublisherKey,
    net::{Client, Node, NodeStatus, Reader, identity::load_or_create_secret},
};
use tokio::sync::Semaphore;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::{cors::CorsLayer, limit::RequestBodyLimitLayer, timeout::TimeoutLayer};

pub mod datasets;
pub mod error;
mod files;
pub mod metrics;
mod openapi;
mod page;
pub mod push;
pub mod range;
pub mod server;
pub mod tokens;

pub use error::ApiError;
pub use openapi::ApiDoc;
pub use server::serve;

/// The publisher key a node signs HTTP pushes with, in its data dir.
pub const NODE_PUBLISHER_KEY: &str = "publisher.key";

/// Limits and places of a node's HTTP API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The node's data dir: tokens, the publisher key, uploads being unpacked.
    pub data_dir: PathBuf,
    /// Largest push body, bytes.
    pub max_body: u64,
    /// Time allowed to answer a request (up to its response head; bodies stream after).
    pub request_timeout: Duration,
    /// Time allowed for a push, upload included.
    pub push_timeout: Duration,
    /// File downloads streaming at once; more wait, up to `request_timeout`.
    pub max_streams: usize,
    /// Pushes unpacking or publishing at once; more are told to retry.
    pub max_pushes: usize,
    /// Requests being answered at once (up to their response head); more wait.
    pub max_requests: usize,
    /// Bytes of decoded stripes cached.
    pub cache_bytes: u64,
}

impl ApiConfig {
    /// Defaults for a node with data dir `data_dir`.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            max_body: 16 << 30,
            request_timeout: Duration::from_secs(60),
            push_timeout: Duration::from_secs(6 * 3600),
            max_streams: 512,
            max_pushes: 2,
            max_requests: 1024,
            cache_bytes: storage_node::net::reader::DEFAULT_CACHE_BYTES,
        }
    }
}

/// Errors of starting or serving the API.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ServeError(pub String);

/// The API's state: the node, a reader of the network through it, and the limits.
pub struct Api {
    node: Arc<Node>,
    reader: Reader,
    cfg: ApiConfig,
    metrics: Arc<metrics::Metrics>,
    tokens: tokens::Tokens,
    key: PublisherKey,
    streams: Arc<Semaphore>,
    pushes: Arc<Semaphore>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("cfg", &self.cfg)
            .field("reader", &self.reader)
            .finish_non_exhaustive()
    }
}

impl Api {
    /// Connects the API to its node (a client of the node's own libp2p address).
    pub async fn start(node: Arc<Node>, cfg: ApiConfig) -> Result<Arc<Self>, ServeError> {
        let client = Client::connect(node.peer_addr())
            .await
            .map_err(|e| ServeError(format!("the HTTP API cannot reach its own node: {e}")))?;
        push::clean_uploads(&cfg.data_dir);
        let key_path = cfg.data_dir.join(NODE_PUBLISHER_KEY);
        let secret = load_or_create_secret(&key_path).map_err(|e| {
            ServeError(format!(
                "cannot load the node's publisher key {}: {e}",
                key_path.display()
            ))
        })?;
        Ok(Arc::new(Self {
            reader: Reader::new(Arc::new(client), cfg.cache_bytes),
            tokens: tokens::Tokens::in_dir(&cfg.data_dir),
            key: PublisherKey::from_secret_bytes(&secret),
            streams: Arc::new(Semaphore::new(cfg.max_streams.max(1))),
            pushes: Arc::new(Semaphore::new(cfg.max_pushes.max(1))),
            metrics: Arc::default(),
            node,
            cfg,
        }))
    }

    /// Closes the API's connection to the network; call once the server has stopped.
    pub async fn close(&self) {
        self.reader.client().close().await;
    }

    /// The reader the API serves files through.
    pub fn reader(&self) -> &Reader {
        &self.reader
    }
}

/// The API's routes.
pub fn router(api: Arc<Api>) -> Router {
    let reads = Router::new()
        .route("/", get(page::index))
        .route("/v1/node", get(status))
        .route("/v1/network", get(datasets::network))
        .route("/v1/datasets", get(datasets::list))
        .route("/v1/datasets/{owner}/{name}", get(datasets::dataset))
        .route(
            "/v1/datasets/{owner}/{name}/versions/{version}",
            get(datasets::version),
        )
        .route(
            "/v1/datasets/{owner}/{name}/resolve/{version}/{*path}",
            get(files::resolve),
        )
        .route("/metrics", get(render_metrics))
        .route("/openapi.json", get(openapi::document))
        .route("/healthz", get(|| async { "ok" }))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            api.cfg.request_timeout,
        ));
    let writes = Router::new()
        .route(
            "/v1/datasets/{owner}/{name}",
            axum::routing::post(push::push),
        )
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            api.cfg.push_timeout,
        ))
        // A Content-Length over the limit is refused before the body is read; a chunked
        // body is cut off when it passes the limit.
        .layer(RequestBodyLimitLayer::new(
            usize::try_from(api.cfg.max_body).unwrap_or(usize::MAX),
        ));
    let cors = CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([Method::GET, Method::HEAD, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::RANGE,
            header::IF_NONE_MATCH,
            header::IF_RANGE,
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
        ])
        .expose_headers([
            header::CONTENT_RANGE,
            header::CONTENT_LENGTH,
            header::ETAG,
            header::ACCEPT_RANGES,
            header::LAST_MODIFIED,
            HeaderName::from_static("x-cairn-version"),
        ]);
    reads
        .merge(writes)
        .fallback(|| async { ApiError::not_found("no such endpoint; see /openapi.json") })
        .layer(GlobalConcurrencyLimitLayer::new(
            api.cfg.max_requests.max(1),
        ))
        .layer(axum::middleware::from_fn(error::json_errors))
        .route_layer(axum::middleware::from_fn_with_state(
            api.metrics.clone(),
            metrics::track,
        ))
        .layer(cors)
        .with_state(api)
}

async fn status(State(api): State<Arc<Api>>) -> Json<NodeStatus> {
    Json(api.node.status())
}

/// `GET /metrics`: the HTTP counters and the node's, in Prometheus text format.
async fn render_metrics(State(api): State<Arc<Api>>) -> Response {
    use metrics::gauge;
    let mut out = String::new();
    api.metrics.render(&mut out);
    let s = api.node.status();
    let u = &s.upkeep;
    let r = api.reader.stats();
    #[allow(clippy::cast_precision_loss)]
    let f = |x: u64| x as f64;
    for (name, kind, help, v) in [
        (
            "cairn_pieces_held",
            "gauge",
            "Pieces this node holds.",
            f(s.info.pieces),
        ),
        (
            "cairn_bytes_held",
            "gauge",
            "Piece bytes this node holds.",
            f(s.info.bytes),
        ),
        (
            "cairn_peers_connected",
            "gauge",
            "Peers connected now.",
            f(u64::from(s.info.connected)),
        ),
        (
            "cairn_served_bytes_total",
            "counter",
            "Piece bytes served to peers.",
            f(s.served_bytes),
        ),
        (
            "cairn_audits_total",
            "counter",
            "Audits this node ran.",
            f(u.audits),
        ),
        (
            "cairn_audits_passed_total",
            "counter",
            "Audits this node ran that passed.",
            f(u.audits.saturating_sub(u.audit_fails)),
        ),
        (
            "cairn_audits_failed_total",
            "counter",
            "Audits this node ran that failed.",
            f(u.audit_fails),
        ),
        (
            "cairn_audited_passes_total",
            "counter",
            "Audits of this node that passed, by others' records.",
            f(s.reputation.passes),
        ),
        (
            "cairn_audited_fails_total",
            "counter",
            "Audits of this node that failed, by others' records.",
            f(s.reputation.fails),
        ),
        (
            "cairn_reputation_score",
            "gauge",
            "This node's reputation in [0, 1].",
            s.reputation.score,
        ),
        (
            "cairn_scrubbed_bytes_total",
            "counter",
            "Bytes re-hashed by scrub.",
            f(u.scrubbed_bytes),
        ),
        (
            "cairn_corrupt_pieces_dropped_total",
            "counter",
            "Corrupt pieces found and deleted.",
            f(u.corrupt_dropped),
        ),
        (
            "cairn_repairs_total",
            "counter",
            "Stripes repaired by this node.",
            f(u.repairs),
        ),
        (
            "cairn_pieces_rebuilt_total",
            "counter",
            "Pieces rebuilt and placed by this node.",
            f(u.pieces_rebuilt),
        ),
        (
            "cairn_name_conflicts_total",
            "counter",
            "Versions refused because another publisher owns their name here.",
            f(u.name_conflicts),
        ),
        (
            "cairn_http_stripes_fetched_total",
            "counter",
            "Stripes fetched from peers to answer HTTP reads.",
            f(r.stripes_fetched),
        ),
        (
            "cairn_http_stripe_cache_hits_total",
            "counter",
            "Stripe reads answered from the cache.",
            f(r.stripe_hits),
        ),
        (
            "cairn_http_pieces_fetched_total",
            "counter",
            "Pieces fetched from peers to answer HTTP reads.",
            f(r.pieces),
        ),
        (
            "cairn_http_piece_fetch_failures_total",
            "counter",
            "Piece fetches that failed and were routed around.",
            f(r.failed_fetches),
        ),
    ] {
        gauge(&mut out, name, kind, help, v);
    }
    out.push_str(&api.node.metrics_text());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

/// Binds `addr` for HTTP; returns the listener and the address actually bound.
pub async fn bind(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), ServeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| ServeError(format!("cannot listen for HTTP on {addr}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| ServeError(e.to_string()))?;
    Ok((listener, local))
}
