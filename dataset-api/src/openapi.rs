//! The OpenAPI document, generated from the handlers' annotations and the response types.

use axum::Json;
use utoipa::{
    Modify, OpenApi,
    openapi::security::{Http, HttpAuthScheme, SecurityScheme},
};

/// The API's OpenAPI 3.1 document.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Cairn dataset API",
        description = "Datasets stored on a Cairn network, served by any node: listings, files with HTTP ranges (rebuilt from erasure-coded pieces fetched from peers and verified), publishing, and the network's health."
    ),
    paths(
        crate::datasets::list,
        crate::datasets::dataset,
        crate::datasets::version,
        crate::datasets::network,
        crate::files::resolve,
        crate::push::push,
        metrics,
        node,
        page,
        openapi,
        healthz,
    ),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorDetail)),
    modifiers(&Bearer)
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let c = openapi.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Prometheus metrics of this node: requests, bytes, latency, pieces, audits, repairs.
#[utoipa::path(get, path = "/metrics",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
#[allow(dead_code)]
fn metrics() {}

/// This node: identity, addresses, peers, pieces, capacity, upkeep and its ledger.
#[utoipa::path(get, path = "/v1/node",
    responses((status = 200, description = "the node's status", content_type = "application/json")))]
#[allow(dead_code)]
fn node() {}

/// The web page: datasets with their cards, files, sizes and download links, and the
/// network's health. Plain HTML and CSS, no scripts or outside assets.
#[utoipa::path(get, path = "/",
    responses((status = 200, description = "HTML", content_type = "text/html")))]
#[allow(dead_code)]
fn page() {}

/// This document.
#[utoipa::path(get, path = "/openapi.json",
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json")))]
#[allow(dead_code)]
fn openapi() {}

/// Liveness: `ok` while the node serves.
#[utoipa::path(get, path = "/healthz",
    responses((status = 200, description = "ok", content_type = "text/plain")))]
#[allow(dead_code)]
fn healthz() {}

/// `GET /openapi.json`.
pub(crate) async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use utoipa::OpenApi;

    #[test]
    fn every_route_is_documented() {
        let doc = super::ApiDoc::openapi();
        let paths: Vec<&String> = doc.paths.paths.keys().collect();
        // Every route the router serves, with every method it takes.
        for (p, methods) in [
            ("/", &["get"][..]),
            ("/healthz", &["get"]),
            ("/metrics", &["get"]),
            ("/openapi.json", &["get"]),
            ("/v1/node", &["get"]),
            ("/v1/network", &["get"]),
            ("/v1/datasets", &["get"]),
            ("/v1/datasets/{owner}/{name}", &["get", "post"]),
            ("/v1/datasets/{owner}/{name}/versions/{version}", &["get"]),
            (
                "/v1/datasets/{owner}/{name}/resolve/{version}/{path}",
                &["get", "head"],
            ),
        ] {
            let item = doc
                .paths
                .paths
                .get(p)
                .unwrap_or_else(|| panic!("{p} missing from {paths:?}"));
            let item = serde_json::to_value(item).unwrap();
            for m in methods {
                assert!(item.get(m).is_some(), "{m} {p} is not documented: {item}");
            }
        }
        assert_eq!(
            doc.paths.paths.len(),
            10,
            "a documented path the router lacks: {paths:?}"
        );
        let json = serde_json::to_string(&doc).unwrap();
        assert!(json.contains("\"bearer\""));
    }
}
