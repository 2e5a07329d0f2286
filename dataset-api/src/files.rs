//! `GET|HEAD /v1/datasets/{owner}/{name}/resolve/{version}/{path}`: a file's bytes, as a
//! good static file server would send them, rebuilt from the stripes that cover the range.

use std::{sync::Arc, time::Duration};

use axum::{
    body::Body,
    extract::{OriginalUri, Path, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures::{StreamExt, TryStreamExt};
use storage_node::{ids::RelPath, net::reader::stripes_for};

use crate::{
    Api, ApiError,
    datasets::{parse_name, parse_version},
    range::{RangeReq, if_range_holds, none_match, parse},
};

/// Stripes fetched ahead of the one being sent.
const READ_AHEAD: usize = 2;
/// How long a download waits for a stream slot before the node answers 503.
const STREAM_WAIT: Duration = Duration::from_secs(5);

/// A file's bytes. `version` is a version id or `latest`, which redirects (302) to the
/// immutable URL of the latest version.
#[utoipa::path(method(get, head), path = "/v1/datasets/{owner}/{name}/resolve/{version}/{path}",
    params(("owner" = String, Path), ("name" = String, Path),
        ("version" = String, Path, description = "64-hex-digit version id, or `latest` (302 to it)"),
        ("path" = String, Path, description = "the file's path in the dataset"),
        ("Range" = Option<String>, Header, description = "`bytes=a-b`, `bytes=a-` or `bytes=-n`"),
        ("If-None-Match" = Option<String>, Header), ("If-Range" = Option<String>, Header)),
    responses(
        (status = 200, description = "the whole file", content_type = "application/octet-stream"),
        (status = 206, description = "the requested range, with `Content-Range`"),
        (status = 302, description = "`latest` resolved: `Location` is the version's URL"),
        (status = 304, description = "`If-None-Match` matched the `ETag`"),
        (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
        (status = 416, body = crate::error::ErrorBody, description = "no byte of the file is in the range"),
        (status = 503, body = crate::error::ErrorBody, description = "too few pieces reachable now; see `Retry-After`")))]
pub(crate) async fn resolve(
    State(api): State<Arc<Api>>,
    Path((owner, name, version, path)): Path<(String, String, String, String)>,
    OriginalUri(uri): OriginalUri,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let name = parse_name(&owner, &name)?;
    let path: RelPath = path
        .parse()
        .map_err(|e| ApiError::bad_request(format!("bad file path {path:?}: {e}")))?;
    if version == "latest" {
        let m = api.reader.manifest(&name, None).await?;
        // Keep the client's own encoding of the path: replace only the version segment
        // ("", "v1", "datasets", owner, name, "resolve", version, path...).
        let mut seg: Vec<&str> = uri.path().splitn(8, '/').collect();
        if seg.len() != 8 || seg[5] != "resolve" || seg[6] != "latest" {
            return Err(ApiError::bad_request("malformed resolve URL"));
        }
        let v = m.version().to_string();
        seg[6] = &v;
        let mut to = seg.join("/");
        if let Some(q) = uri.query() {
            to.push('?');
            to.push_str(q);
        }
        let loc = HeaderValue::from_str(&to).map_err(|_| ApiError::bad_request("bad URL"))?;
        return Ok((
            StatusCode::FOUND,
            [
                (header::LOCATION, loc),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
        )
            .into_response());
    }
    let v = parse_version(&version)?;
    let m = api.reader.manifest(&name, Some(v)).await?;
    let Some(fi) = m.files().iter().position(|f| f.path == path) else {
        return Err(ApiError::not_found(format!(
            "{name}@{v} has no file {path}"
        )));
    };
    let f = &m.files()[fi];
    let len = f.size;
    let etag = format!("\"{}\"", hex::encode(f.hash));
    let modified = std::time::UNIX_EPOCH + Duration::from_secs(m.body().created_unix);
    let mut h = HeaderMap::new();
    let hv = |s: &str| HeaderValue::from_str(s).map_err(|_| ApiError::internal("bad header"));
    h.insert(header::ETAG, hv(&etag)?);
    h.insert(
        header::LAST_MODIFIED,
        hv(&httpdate::fmt_http_date(modified))?,
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    h.insert("x-cairn-version", hv(&v.to_string())?);
    if let Some(inm) = headers.get(header::IF_NONE_MATCH)
        && none_match(inm.to_str().unwrap_or(""), &etag)
    {
        return Ok((StatusCode::NOT_MODIFIED, h).into_response());
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path.as_str())),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    let mut range = headers
        .get(header::RANGE)
        .map(|r| parse(r.to_str().ok(), len))
        .unwrap_or(RangeReq::Full);
    if let Some(ir) = headers.get(header::IF_RANGE)
        && !if_range_holds(ir.to_str().unwrap_or(""), &etag, modified)
    {
        range = RangeReq::Full;
    }
    let (status, want) = match range {
        RangeReq::Full => (StatusCode::OK, 0..len),
        RangeReq::Partial(r) => {
            h.insert(
                header::CONTENT_RANGE,
                hv(&format!("bytes {}-{}/{len}", r.start, r.end - 1))?,
            );
            (StatusCode::PARTIAL_CONTENT, r)
        }
        RangeReq::Unsatisfiable => {
            let mut e = ApiError {
                status: StatusCode::RANGE_NOT_SATISFIABLE,
                code: "range_not_satisfiable",
                message: format!("the range is outside the file's {len} bytes"),
                retry_after: None,
            }
            .into_response();
            e.headers_mut()
                .insert(header::CONTENT_RANGE, hv(&format!("bytes */{len}"))?);
            return Ok(e);
        }
    };
    h.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(want.end - want.start),
    );
    if method == Method::HEAD || want.is_empty() {
        return Ok((status, h).into_response());
    }
    // A download holds a stream slot for as long as its body flows. The wait for one is
    // shorter than the request timeout, so a busy node says 503 rather than timing out.
    let permit = tokio::time::timeout(STREAM_WAIT, api.streams.clone().acquire_owned())
        .await
        .map_err(|_| ApiError::unavailable("too many downloads at once; retry shortly"))?
        .map_err(|_| ApiError::unavailable("shutting down"))?;
    let parts = stripes_for(f.stripes.iter().map(|s| s.data_len), want);
    // The first stripe is fetched before answering, so "too few pieces" is a 503, not a
    // cut-off body.
    let mut parts = parts.into_iter();
    let Some((s0, r0)) = parts.next() else {
        return Ok((status, h).into_response());
    };
    let first = api.reader.range(&m, fi, s0, r0).await?;
    let api2 = api.clone();
    let m2 = m.clone();
    let rest = futures::stream::iter(parts)
        .map(move |(si, r)| {
            let api = api2.clone();
            let m = m2.clone();
            async move {
                api.reader.range(&m, fi, si, r).await.map_err(|e| {
                    tracing::warn!(file = %m.files()[fi].path, stripe = si, "download cut short: {e}");
                    std::io::Error::other(e.to_string())
                })
            }
        })
        .buffered(READ_AHEAD);
    let body = futures::stream::once(async move { Ok::<_, std::io::Error>(first) })
        .chain(rest)
        .map_ok(move |b| {
            let _ = &permit;
            b
        });
    Ok((status, h, Body::from_stream(body)).into_response())
}

/// A content type from the file's extension; HTML and other active types are served as
/// plain text so a dataset cannot script this origin.
fn content_type(path: &str) -> &'static str {
    let ext = path
        .rsplit_once('.')
        .map_or("", |(_, e)| e)
        .to_ascii_lowercase();
    match ext.as_str() {
        "csv" => "text/csv; charset=utf-8",
        "tsv" => "text/tab-separated-values; charset=utf-8",
        "txt" | "md" | "html" | "htm" | "svg" | "xml" | "js" => "text/plain; charset=utf-8",
        "json" => "application/json",
        "jsonl" | "ndjson" => "application/x-ndjson",
        "parquet" => "application/vnd.apache.parquet",
        "gz" => "application/gzip",
        "tar" => "application/x-tar",
        "zst" => "application/zstd",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::content_type;

    #[test]
    fn active_content_is_never_served_as_such() {
        assert_eq!(content_type("a/index.HTML"), "text/plain; charset=utf-8");
        assert_eq!(content_type("x.svg"), "text/plain; charset=utf-8");
        assert_eq!(content_type("train.csv"), "text/csv; charset=utf-8");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }
}
