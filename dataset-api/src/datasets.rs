//! Listings: datasets, one dataset, one version, and the network.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Json,
    extract::{Path, Query, State},
};
use serde::{Deserialize, Serialize};
use storage_node::{
    ids::{DatasetName, VersionId},
    manifest::Manifest,
    net::wire::Trust,
};
use utoipa::{IntoParams, ToSchema};

use crate::{Api, ApiError};

/// Datasets listed per page by default, and at most.
pub(crate) const PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// A dataset in a listing.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DatasetItem {
    /// `owner/name`.
    pub name: String,
    /// The latest version's id (64 hex digits).
    pub latest: String,
    /// Versions published.
    pub versions: u32,
    /// Bytes of the latest version's files.
    pub size: u64,
    /// Files in the latest version.
    pub files: u32,
    /// The latest version's license.
    pub license: String,
}

/// One page of datasets, by name.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DatasetPage {
    /// The datasets of this page.
    pub datasets: Vec<DatasetItem>,
    /// Pass as `after` for the next page; absent on the last.
    pub next: Option<String>,
}

/// Paging of `GET /v1/datasets`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct PageQuery {
    /// Datasets per page (1 to 1000, default 100).
    pub limit: Option<usize>,
    /// List datasets whose name sorts after this one (the previous page's `next`).
    pub after: Option<String>,
}

/// A file of a version.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FileItem {
    /// Path within the dataset.
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// BLAKE3 of the file (64 hex digits); also its `ETag`.
    pub hash: String,
    /// Where to download it (immutable).
    pub url: String,
}

/// A version of a dataset, as listed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VersionItem {
    /// Version id (64 hex digits).
    pub version: String,
    /// Publication time, seconds since the epoch.
    pub created_unix: u64,
    /// Bytes of its files.
    pub size: u64,
    /// Its files.
    pub files: u32,
}

/// A dataset: its versions, and its latest version's card, license and files.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DatasetInfo {
    /// `owner/name`.
    pub name: String,
    /// The latest version's id.
    pub latest: String,
    /// Every version, oldest first.
    pub versions: Vec<VersionItem>,
    /// The latest version's dataset card (its README.md).
    pub card: String,
    /// The latest version's license.
    pub license: String,
    /// The latest version's files.
    pub files: Vec<FileItem>,
}

/// Erasure coding of a version.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Coding {
    /// Data pieces per stripe.
    pub k: u16,
    /// Parity pieces per stripe.
    pub m: u16,
    /// Piece size, bytes.
    pub block_size: u32,
}

/// One version's manifest, summarised.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VersionInfo {
    /// `owner/name`.
    pub name: String,
    /// Version id.
    pub version: String,
    /// The version it follows, if any.
    pub parent: Option<String>,
    /// Publication time, seconds since the epoch.
    pub created_unix: u64,
    /// Publisher's public key (64 hex digits).
    pub publisher: String,
    /// License.
    pub license: String,
    /// Dataset card.
    pub card: String,
    /// Erasure coding.
    pub coding: Coding,
    /// Bytes of its files.
    pub size: u64,
    /// Its files.
    pub files: Vec<FileItem>,
}

/// A node's standing in this node's ledger.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Standing {
    /// Reputation in `[0, 1]`; 0.5 for a node nobody has audited.
    pub score: f64,
    /// Audits passed, by others' signed records.
    pub passes: u64,
    /// Audits failed.
    pub fails: u64,
    /// Caught forging by two or more auditors: never read from.
    pub flagged: bool,
    /// Failed its last three audits or more.
    pub failing: bool,
    /// Byte-hours of storage proven.
    pub proven_byte_hours: f64,
}

/// A node of the network.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NetworkNode {
    /// libp2p peer id.
    pub peer: String,
    /// Its HTTP base URL, if it serves one.
    pub http: Option<String>,
    /// Pieces held.
    pub pieces: u64,
    /// Piece bytes held.
    pub held_bytes: u64,
    /// Capacity in bytes, if limited.
    pub capacity: Option<u64>,
    /// Peers it is connected to.
    pub connected: u32,
    /// Bytes it says it has served.
    pub served_bytes: u64,
    /// Its standing here, if this node has records of it.
    pub standing: Option<Standing>,
    /// How far this node trusts it with pieces: `new` (not seen proving anything yet:
    /// pushes give it at most `m` pieces of a stripe), `established`, or `shunned`
    /// (flagged or failing: pushes give it none).
    #[serde(default)]
    pub trust: String,
}

/// The network as this node sees it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Network {
    /// The node answering.
    pub this: String,
    /// Every node it is connected to, itself included.
    pub nodes: Vec<NetworkNode>,
    /// Piece bytes held by all of them.
    pub held_bytes: u64,
    /// Byte-hours proven by all of them.
    pub proven_byte_hours: f64,
    /// Datasets known.
    pub datasets: u64,
    /// Versions this node refused because another publisher owns their name here: the
    /// network is split over that name until one of them renames.
    pub name_conflicts: u64,
}

pub(crate) fn parse_name(owner: &str, name: &str) -> Result<DatasetName, ApiError> {
    format!("{owner}/{name}")
        .parse()
        .map_err(|e| ApiError::bad_request(format!("bad dataset name {owner}/{name}: {e}")))
}

pub(crate) fn parse_version(v: &str) -> Result<VersionId, ApiError> {
    v.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "bad version {v:?}: expected `latest` or a 64-hex-digit version id"
        ))
    })
}

/// The URL path of a file of a version. Path segments are percent-encoded.
pub(crate) fn file_url(name: &DatasetName, version: VersionId, path: &str) -> String {
    let enc: Vec<String> = path.split('/').map(encode_segment).collect();
    format!("/v1/datasets/{name}/resolve/{version}/{}", enc.join("/"))
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub(crate) fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn files_of(m: &Manifest) -> Vec<FileItem> {
    m.files()
        .iter()
        .map(|f| FileItem {
            path: f.path.to_string(),
            size: f.size,
            hash: hex::encode(f.hash),
            url: file_url(m.name(), m.version(), f.path.as_str()),
        })
        .collect()
}

/// Lists datasets, by name, a page at a time.
#[utoipa::path(get, path = "/v1/datasets", params(PageQuery),
    responses((status = 200, body = DatasetPage), (status = 503, body = crate::error::ErrorBody)))]
pub(crate) async fn list(
    State(api): State<Arc<Api>>,
    Query(q): Query<PageQuery>,
) -> Result<Json<DatasetPage>, ApiError> {
    let limit = q.limit.unwrap_or(PAGE).clamp(1, MAX_PAGE);
    let mut all = api.reader.client().datasets().await?;
    all.sort_by(|a, b| a.name.cmp(&b.name));
    let start = q
        .after
        .as_deref()
        .map_or(0, |a| all.partition_point(|d| d.name.as_str() <= a));
    let page: Vec<DatasetItem> = all[start..]
        .iter()
        .take(limit)
        .map(|d| DatasetItem {
            name: d.name.clone(),
            latest: d.latest.clone(),
            versions: d.versions,
            size: d.size,
            files: d.files,
            license: d.license.clone(),
        })
        .collect();
    let next = (start + page.len() < all.len())
        .then(|| page.last().map(|d| d.name.clone()))
        .flatten();
    Ok(Json(DatasetPage {
        datasets: page,
        next,
    }))
}

/// A dataset: its versions and its latest version's card, license and files.
#[utoipa::path(get, path = "/v1/datasets/{owner}/{name}",
    params(("owner" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = DatasetInfo), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn dataset(
    State(api): State<Arc<Api>>,
    Path((owner, name)): Path<(String, String)>,
) -> Result<Json<DatasetInfo>, ApiError> {
    let name = parse_name(&owner, &name)?;
    let history = api.reader.client().history(&name).await?;
    let m = api.reader.manifest(&name, None).await?;
    Ok(Json(DatasetInfo {
        name: name.to_string(),
        latest: m.version().to_string(),
        versions: history
            .iter()
            .map(|v| VersionItem {
                version: hex::encode(v.version),
                created_unix: v.created_unix,
                size: v.size,
                files: v.files,
            })
            .collect(),
        card: m.body().card.clone(),
        license: m.body().license.clone(),
        files: files_of(&m),
    }))
}

/// One version's manifest, summarised, with its files.
#[utoipa::path(get, path = "/v1/datasets/{owner}/{name}/versions/{version}",
    params(("owner" = String, Path), ("name" = String, Path),
        ("version" = String, Path, description = "64-hex-digit version id, or `latest`")),
    responses((status = 200, body = VersionInfo), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn version(
    State(api): State<Arc<Api>>,
    Path((owner, name, version)): Path<(String, String, String)>,
) -> Result<Json<VersionInfo>, ApiError> {
    let name = parse_name(&owner, &name)?;
    let v = if version == "latest" {
        None
    } else {
        Some(parse_version(&version)?)
    };
    let m = api.reader.manifest(&name, v).await?;
    let b = m.body();
    Ok(Json(VersionInfo {
        name: name.to_string(),
        version: m.version().to_string(),
        parent: b.parent.map(|p| p.to_string()),
        created_unix: b.created_unix,
        publisher: m.publisher().to_string(),
        license: b.license.clone(),
        card: b.card.clone(),
        coding: Coding {
            k: b.params.k(),
            m: b.params.m(),
            block_size: b.params.block_size(),
        },
        size: m.total_size(),
        files: files_of(&m),
    }))
}

/// Every node this one is connected to, with its holdings and its standing in this
/// node's ledger of signed audit records.
#[utoipa::path(get, path = "/v1/network",
    responses((status = 200, body = Network), (status = 503, body = crate::error::ErrorBody)))]
pub(crate) async fn network(State(api): State<Arc<Api>>) -> Result<Json<Network>, ApiError> {
    network_view(&api).await.map(Json)
}

/// The network as this node sees it (shared by `/v1/network` and the page).
pub(crate) async fn network_view(api: &Api) -> Result<Network, ApiError> {
    let peers = api.reader.client().peers().await?;
    let status = api.node.status();
    let ledger: HashMap<&str, &storage_node::audit::Reputation> = status
        .ledger
        .iter()
        .map(|e| (e.peer.as_str(), &e.reputation))
        .collect();
    let nodes: Vec<NetworkNode> = peers
        .iter()
        .map(|p| NetworkNode {
            peer: p.peer.clone(),
            http: p.http.clone(),
            pieces: p.pieces,
            held_bytes: p.bytes,
            capacity: p.capacity,
            connected: p.connected,
            served_bytes: p.served,
            trust: match p.trust {
                Trust::New => "new",
                Trust::Established => "established",
                Trust::Shunned => "shunned",
            }
            .into(),
            standing: ledger.get(p.peer.as_str()).map(|r| Standing {
                score: r.score,
                passes: r.passes,
                fails: r.fails,
                flagged: r.flagged,
                failing: r.failing,
                proven_byte_hours: r.proven_byte_hours,
            }),
        })
        .collect();
    Ok(Network {
        this: status.info.peer.clone(),
        held_bytes: nodes.iter().map(|n| n.held_bytes).sum(),
        proven_byte_hours: nodes
            .iter()
            .filter_map(|n| n.standing.as_ref().map(|s| s.proven_byte_hours))
            .sum(),
        datasets: status.datasets,
        name_conflicts: status.upkeep.name_conflicts,
        nodes,
    })
}

#[cfg(test)]
mod tests {
    use super::encode_segment;

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode_segment("a b%/é.csv"), "a%20b%25%2F%C3%A9.csv");
        assert_eq!(encode_segment("train-00.parquet"), "train-00.parquet");
    }
}
