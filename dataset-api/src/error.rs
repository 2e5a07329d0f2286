//! Errors as HTTP answers: a status, a stable code and a message, as JSON.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use storage_node::{
    engine::EngineError,
    net::{ClientError, NetError, wire::ErrorCode},
};

/// Seconds a client is told to wait when too few pieces are reachable.
pub const RETRY_AFTER_SECS: u64 = 30;

/// An error answer. `code` is stable (clients may match on it); `message` is for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable machine-readable code, e.g. `not_found`.
    pub code: &'static str,
    /// What went wrong and what to do.
    pub message: String,
    /// `Retry-After` seconds, for 503.
    pub retry_after: Option<u64>,
}

/// The JSON body of every error: `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// A stable code and a human message.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable code: `bad_request`, `unauthorized`, `forbidden`, `not_found`,
    /// `payload_too_large`, `range_not_satisfiable`, `unavailable`, `bad_gateway`,
    /// `timeout`, `internal`.
    pub code: String,
    /// What went wrong and what to do.
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 401: no credentials.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403: credentials that do not allow this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 413.
    pub fn too_large(limit: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is over this node's limit of {limit} bytes"),
        )
    }

    /// 503 with `Retry-After`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(RETRY_AFTER_SECS),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
        }
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// An error with `status` and the stable code that goes with it: for answers made
    /// outside the handlers (extractor rejections, timeouts, method routing).
    pub fn from_status(status: StatusCode, message: impl Into<String>) -> Self {
        let code = match status.as_u16() {
            400 | 422 => "bad_request",
            401 => "unauthorized",
            403 => "forbidden",
            404 => "not_found",
            405 => "method_not_allowed",
            408 | 504 => "timeout",
            413 => "payload_too_large",
            415 => "unsupported_media_type",
            416 => "range_not_satisfiable",
            429 | 503 => "unavailable",
            502 => "bad_gateway",
            _ => "internal",
        };
        // 422 is how axum rejects a well-formed but unusable query; to clients it is a
        // bad request like any other.
        let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
            StatusCode::BAD_REQUEST
        } else {
            status
        };
        let mut e = Self::new(status, code, message);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            e.retry_after = Some(RETRY_AFTER_SECS);
        }
        e
    }
}

/// Middleware that makes every error answer JSON: whatever a layer or extractor outside
/// the handlers answered in plain text (a bad query string, a timeout, a wrong method) is
/// rewritten to [`ErrorBody`] with the same status and its text as the message.
pub async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let is_head = req.method() == axum::http::Method::HEAD;
    let r = next.run(req).await;
    let status = r.status();
    let json = r
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || json {
        return r;
    }
    let (parts, body) = r.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let message = match (text.is_empty(), status) {
        (false, _) => text,
        (true, StatusCode::GATEWAY_TIMEOUT) => {
            "the node took too long to answer; retry, or ask for a smaller range".to_string()
        }
        (true, StatusCode::METHOD_NOT_ALLOWED) => {
            "this endpoint does not take that method; see /openapi.json".to_string()
        }
        (true, s) => s.canonical_reason().unwrap_or("error").to_string(),
    };
    let mut out = ApiError::from_status(status, message).into_response();
    for h in [header::ALLOW, header::RETRY_AFTER, header::CONTENT_RANGE] {
        if let Some(v) = parts.headers.get(&h) {
            out.headers_mut().insert(h, v.clone());
        }
    }
    if is_head {
        // A HEAD answer carries the headers a GET would, and no body.
        let (mut p, _) = out.into_parts();
        p.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(p, axum::body::Body::empty());
    }
    out
}

impl From<ClientError> for ApiError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::NotFound(what) => Self::not_found(format!("{what} not found")),
            ClientError::Unrecoverable(_) => Self::unavailable(format!(
                "{e}; retry in {RETRY_AFTER_SECS} s or when more nodes are up"
            )),
            ClientError::Net(
                NetError::Unreachable { .. }
                | NetError::Stopped
                | NetError::Refused {
                    code: ErrorCode::Busy,
                    ..
                },
            ) => Self::unavailable(e.to_string()),
            ClientError::Placement(_) => Self::unavailable(e.to_string()),
            ClientError::Publish(m) => Self::forbidden(format!("publishing was refused: {m}")),
            ClientError::NotOwner { .. } => Self::forbidden(e.to_string()),
            ClientError::Engine(
                EngineError::BadPath { .. }
                | EngineError::CardTooLarge { .. }
                | EngineError::Manifest(_),
            ) => Self::bad_request(e.to_string()),
            ClientError::TooLarge { .. } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                e.to_string(),
            ),
            ClientError::Manifest { .. }
            | ClientError::Hold { .. }
            | ClientError::SpotCheck { .. } => {
                Self::new(StatusCode::BAD_GATEWAY, "bad_gateway", e.to_string())
            }
            other => Self::internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        let mut r = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"cairn\""),
            );
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_peer_is_a_503_with_retry_after() {
        let busy = ClientError::Net(NetError::Refused {
            peer: "p".into(),
            code: ErrorCode::Busy,
            message: "too many requests in progress; retry shortly".into(),
        });
        let r = ApiError::from(busy).into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(r.headers().contains_key(header::RETRY_AFTER));
    }
}
