//! `POST /v1/datasets/{owner}/{name}`: publish a new version from a tar body.
//!
//! The body streams to a file in the node's data dir (counted against the limit as it
//! arrives, never held in memory), is unpacked there (regular files and directories only,
//! paths checked), pushed to the network signed with the node's publisher key, and
//! removed, whatever happens.

use std::{
    path::{Path as FsPath, PathBuf},
    sync::Arc,
};

use axum::{
    Json,
    body::Body,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use storage_node::{engine::EncodeOptions, erasure::ErasureParams};
use tokio::io::AsyncWriteExt;
use utoipa::{IntoParams, ToSchema};

use crate::{Api, ApiError, datasets::parse_name};

/// Entries a tar body may hold.
const MAX_ENTRIES: usize = 1_000_000;
/// Where uploads are unpacked, under the data dir.
const UPLOADS: &str = "uploads";

/// Options of a push.
#[derive(Debug, Deserialize, IntoParams)]
pub struct PushQuery {
    /// License (SPDX id or text); default `unspecified`.
    pub license: Option<String>,
    /// Data pieces per stripe (default 16).
    pub k: Option<u16>,
    /// Parity pieces per stripe (default 8).
    pub m: Option<u16>,
    /// Piece size in bytes (default 1 MiB).
    pub block_size: Option<u32>,
}

/// A published version.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Pushed {
    /// `owner/name`.
    pub name: String,
    /// The version id.
    pub version: String,
    /// Files in it.
    pub files: u64,
    /// Their bytes.
    pub size: u64,
    /// True when the content equals the latest version's and nothing was published.
    pub unchanged: bool,
    /// The version's URL.
    pub url: String,
}

/// Checks `Authorization: Bearer <token>` against the node's tokens.
fn authorize(api: &Api, headers: &HeaderMap) -> Result<String, ApiError> {
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::unauthorized(
            "publishing needs `Authorization: Bearer <token>`; the node's operator creates tokens with `cairn node token create`",
        ));
    };
    let token = v
        .to_str()
        .ok()
        .and_then(|s| s.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            ApiError::unauthorized("the Authorization header is not `Bearer <token>`")
        })?;
    match api.tokens.check(token) {
        Ok(Some(name)) => Ok(name),
        Ok(None) => Err(ApiError::forbidden("this token is not valid on this node")),
        Err(e) => {
            tracing::error!("cannot check API tokens: {e}");
            Err(ApiError::internal(
                "the node cannot read its token file; see its log",
            ))
        }
    }
}

/// Publishes a new version of `owner/name` from a tar of its files (a top-level
/// `README.md` becomes the card). Needs a bearer token.
#[utoipa::path(post, path = "/v1/datasets/{owner}/{name}",
    params(("owner" = String, Path), ("name" = String, Path), PushQuery),
    request_body(content = Vec<u8>, content_type = "application/x-tar", description = "a tar of the dataset's files"),
    security(("bearer" = [])),
    responses((status = 201, body = Pushed), (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody),
        (status = 413, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)))]
pub(crate) async fn push(
    State(api): State<Arc<Api>>,
    Path((owner, name)): Path<(String, String)>,
    Query(q): Query<PushQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Pushed>), ApiError> {
    let checked = (|| {
        let who = authorize(&api, &headers)?;
        let name = parse_name(&owner, &name)?;
        let defaults = ErasureParams::default();
        let params = ErasureParams::new(
            q.k.unwrap_or(defaults.k()),
            q.m.unwrap_or(defaults.m()),
            q.block_size.unwrap_or(defaults.block_size()),
        )
        .map_err(|e| ApiError::bad_request(format!("bad k, m or block_size: {e}")))?;
        Ok::<_, ApiError>((who, name, params))
    })();
    let (who, name, params) = match checked {
        Ok(c) => c,
        Err(e) => {
            // Read (and drop) a little of what the client is sending, so a small upload
            // sees the answer instead of a connection reset mid-send.
            drain(body, DRAIN_LIMIT).await;
            return Err(e);
        }
    };
    let limit = api.cfg.max_body;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::too_large(limit));
    }
    let _slot = api.pushes.clone().try_acquire_owned().map_err(|_| {
        ApiError::unavailable("this node is publishing other uploads; retry shortly")
    })?;
    let uploads = api.cfg.data_dir.join(UPLOADS);
    tokio::fs::create_dir_all(&uploads)
        .await
        .map_err(|e| ApiError::internal(format!("cannot create {}: {e}", uploads.display())))?;
    let work = tempfile::Builder::new()
        .prefix("push-")
        .tempdir_in(&uploads)
        .map_err(|e| ApiError::internal(format!("cannot create an upload dir: {e}")))?;
    let tar_path = work.path().join("body.tar");
    spool(body, &tar_path, limit).await?;
    let root = work.path().join("files");
    {
        let (t, r) = (tar_path.clone(), root.clone());
        tokio::task::spawn_blocking(move || unpack(&t, &r))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))??;
    }
    tokio::fs::remove_file(&tar_path).await.ok();
    let client = api.reader.client();
    let next = client.next_version(&name, &api.key).await?;
    let opts = EncodeOptions {
        name: name.clone(),
        parent: next.parent,
        license: q.license.unwrap_or_else(|| "unspecified".into()),
        params,
        created_unix: next.created_unix,
    };
    tracing::info!(dataset = %name, token = %who, "publishing an HTTP upload");
    let r = client.push(&root, opts, &api.key, Arc::new(|_| {})).await?;
    let url = format!("/v1/datasets/{name}/versions/{}", r.version);
    Ok((
        if r.unchanged {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        },
        Json(Pushed {
            name: name.to_string(),
            version: r.version.to_string(),
            files: r.manifest.files().len() as u64,
            size: r.manifest.total_size(),
            unchanged: r.unchanged,
            url,
        }),
    ))
}

/// Removes what uploads a stopped node left behind (each upload removes its own dir when
/// it ends; a node killed meanwhile cannot).
pub(crate) fn clean_uploads(data_dir: &FsPath) {
    let uploads = data_dir.join(UPLOADS);
    if let Ok(dir) = std::fs::read_dir(&uploads) {
        for e in dir.flatten() {
            if let Err(err) = std::fs::remove_dir_all(e.path()) {
                tracing::warn!(path = %e.path().display(), "cannot remove a stale upload: {err}");
            }
        }
    }
}

/// Bytes of a refused upload read before answering; beyond that the connection closes.
const DRAIN_LIMIT: u64 = 8 << 20;

/// Reads and drops up to `limit` bytes of `body`, for at most a few seconds.
async fn drain(body: Body, limit: u64) {
    let mut stream = body.into_data_stream();
    let mut n = 0u64;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while let Some(Ok(chunk)) = stream.next().await {
            n += chunk.len() as u64;
            if n > limit {
                break;
            }
        }
    })
    .await;
}

/// Writes `body` to `to`, refusing it once it passes `limit` bytes.
async fn spool(body: Body, to: &FsPath, limit: u64) -> Result<(), ApiError> {
    let mut f = tokio::fs::File::create(to)
        .await
        .map_err(|e| ApiError::internal(format!("cannot spool the upload: {e}")))?;
    let mut stream = body.into_data_stream();
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            if e.to_string().contains("length limit") {
                ApiError::too_large(limit)
            } else {
                ApiError::bad_request(format!("the upload broke off: {e}"))
            }
        })?;
        n += chunk.len() as u64;
        if n > limit {
            return Err(ApiError::too_large(limit));
        }
        f.write_all(&chunk)
            .await
            .map_err(|e| ApiError::internal(format!("cannot spool the upload: {e}")))?;
    }
    f.flush()
        .await
        .map_err(|e| ApiError::internal(format!("cannot spool the upload: {e}")))?;
    Ok(())
}

/// Unpacks the tar at `tar` into `root`: regular files and directories only, every path
/// relative and free of `..`.
fn unpack(tar: &FsPath, root: &FsPath) -> Result<(), ApiError> {
    let bad = |m: String| ApiError::bad_request(format!("the body is not a usable tar: {m}"));
    std::fs::create_dir_all(root).map_err(|e| ApiError::internal(e.to_string()))?;
    let f = std::fs::File::open(tar).map_err(|e| ApiError::internal(e.to_string()))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(f));
    let mut files = 0usize;
    for (i, entry) in archive
        .entries()
        .map_err(|e| bad(e.to_string()))?
        .enumerate()
    {
        if i >= MAX_ENTRIES {
            return Err(bad(format!("more than {MAX_ENTRIES} entries")));
        }
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let path: PathBuf = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
        let kind = entry.header().entry_type();
        // pax and GNU long-name headers are consumed by the tar reader itself.
        if !(kind.is_file() || kind.is_dir()) {
            return Err(bad(format!(
                "{} is a {kind:?}; only regular files and directories are accepted",
                path.display()
            )));
        }
        if path.is_absolute()
            || path.components().any(|c| {
                !matches!(
                    c,
                    std::path::Component::Normal(_) | std::path::Component::CurDir
                )
            })
        {
            return Err(bad(format!("{} leaves the dataset", path.display())));
        }
        // The entry's mode, owner and times are not used: directories are made 0755 and
        // files 0644 (less the umask), so nothing in the upload dir is left unremovable
        // (a directory the tar set to 0555 would keep its files from being deleted).
        let to = root.join(&path);
        // What fails here is the archive's shape (a file where a directory should be).
        let clash = |e: std::io::Error| bad(format!("{}: {e}", path.display()));
        if kind.is_dir() {
            std::fs::create_dir_all(&to).map_err(clash)?;
            continue;
        }
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(clash)?;
        }
        let mut out = std::fs::File::create(&to).map_err(clash)?;
        std::io::copy(&mut entry, &mut out).map_err(|e| bad(e.to_string()))?;
        files += 1;
    }
    if files == 0 {
        return Err(bad("it holds no files".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::unpack;

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (p, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, p, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn unpacks_files_and_refuses_what_would_escape() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("a.tar");
        std::fs::write(&t, tar_of(&[("x/a.csv", b"1,2\n"), ("README.md", b"# hi")])).unwrap();
        unpack(&t, &dir.path().join("ok")).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("ok/x/a.csv")).unwrap(),
            b"1,2\n"
        );

        // A symlink is refused.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "evil", "/etc/passwd").unwrap();
        std::fs::write(&t, b.into_inner().unwrap()).unwrap();
        let e = unpack(&t, &dir.path().join("sym")).unwrap_err();
        assert!(e.message.contains("Symlink"), "{}", e.message);

        // Garbage and empty archives are refused.
        std::fs::write(&t, b"not a tar at all, certainly not 512 bytes of header").unwrap();
        assert!(unpack(&t, &dir.path().join("junk")).is_err());
        std::fs::write(&t, tar::Builder::new(Vec::new()).into_inner().unwrap()).unwrap();
        assert!(unpack(&t, &dir.path().join("empty")).is_err());
    }

    #[test]
    fn dot_dot_is_refused() {
        // tar::Builder refuses to write `..`; forge the header by hand.
        let mut h = tar::Header::new_old();
        let name = b"../escape.txt";
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_size(1);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        let mut raw = h.as_bytes().to_vec();
        raw.extend_from_slice(b"x");
        raw.resize(1024, 0);
        raw.extend_from_slice(&[0u8; 1024]);
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("a.tar");
        std::fs::write(&t, raw).unwrap();
        let e = unpack(&t, &dir.path().join("out")).unwrap_err();
        assert!(e.message.contains("leaves the dataset"), "{}", e.message);
        assert!(!dir.path().join("escape.txt").exists());
    }

    #[test]
    fn modes_in_the_tar_are_ignored() {
        use std::os::unix::fs::PermissionsExt;
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o555);
        h.set_size(0);
        b.append_data(&mut h, "ro", std::io::empty()).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o4777);
        h.set_size(2);
        b.append_data(&mut h, "ro/f.txt", &b"hi"[..]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("a.tar");
        std::fs::write(&t, b.into_inner().unwrap()).unwrap();
        let out = dir.path().join("out");
        unpack(&t, &out).unwrap();
        let mode = |p: &str| std::fs::metadata(out.join(p)).unwrap().permissions().mode();
        assert_ne!(mode("ro") & 0o200, 0, "the directory stays writable");
        assert_eq!(mode("ro/f.txt") & 0o7111, 0, "no setuid or execute bits");
        std::fs::remove_dir_all(&out).unwrap();
    }
}
