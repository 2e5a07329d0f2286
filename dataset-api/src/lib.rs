//! The HTTP API every node serves (axum).
//!
//! For now it answers what a contributor and the tools around a node ask: `GET /v1/node`
//! (the node's status as JSON, used by `cairn node status` and `cairn network up`) and
//! `GET /healthz`. Datasets over HTTP (list, info, resolve with Range, push) build on it.
//! **Architecture invariant:** only this crate (and the binary's small HTTP client) speaks
//! HTTP.

use std::{net::SocketAddr, sync::Arc};

use axum::{Json, Router, extract::State, routing::get};
use storage_node::net::{Node, NodeStatus};
use tokio_util::sync::CancellationToken;

/// The API's routes over a running node.
pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/v1/node", get(status))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(node)
}

async fn status(State(node): State<Arc<Node>>) -> Json<NodeStatus> {
    Json(node.status())
}

/// Errors of the HTTP server.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ServeError(pub String);

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

/// Serves `router` on `listener` until `cancel` fires, then finishes open requests.
pub async fn serve(listener: tokio::net::TcpListener, router: Router, cancel: CancellationToken) {
    if let Err(e) = axum::serve(listener, router)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
    {
        tracing::warn!("HTTP server stopped: {e}");
    }
}
