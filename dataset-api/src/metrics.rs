//! Prometheus metrics: request counts, bytes and latency per route, recorded by a
//! middleware, and the node's own counters read at scrape time.
//!
//! Labels are bounded: a route is its template (`/v1/datasets/{owner}/{name}`), never the
//! path a client sent, and methods outside the usual few count as `other`.

use std::{collections::BTreeMap, fmt::Write, sync::Mutex, time::Instant};

use axum::{
    extract::{MatchedPath, Request, State},
    http::header,
    middleware::Next,
    response::Response,
};

/// Upper bounds of the latency buckets, seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Debug, Default)]
struct Inner {
    /// (route, method, status) → requests.
    requests: BTreeMap<(String, &'static str, u16), u64>,
    /// route → response body bytes (by `Content-Length`).
    bytes: BTreeMap<String, u64>,
    /// route → time to the response head.
    latency: BTreeMap<String, Histogram>,
}

/// The HTTP side's metrics.
#[derive(Debug, Default)]
pub struct Metrics(Mutex<Inner>);

fn method_label(m: &axum::http::Method) -> &'static str {
    match m.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "OPTIONS" => "OPTIONS",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        _ => "other",
    }
}

impl Metrics {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records one answered request.
    pub fn record(&self, route: &str, method: &'static str, status: u16, bytes: u64, secs: f64) {
        let mut m = self.inner();
        *m.requests
            .entry((route.to_string(), method, status))
            .or_default() += 1;
        *m.bytes.entry(route.to_string()).or_default() += bytes;
        let h = m.latency.entry(route.to_string()).or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.count += 1;
    }

    /// The HTTP metrics in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let m = self.inner();
        out.push_str("# HELP cairn_http_requests_total HTTP requests answered.\n");
        out.push_str("# TYPE cairn_http_requests_total counter\n");
        for ((route, method, status), n) in &m.requests {
            let _ = writeln!(
                out,
                "cairn_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        out.push_str("# HELP cairn_http_response_bytes_total Response body bytes sent.\n");
        out.push_str("# TYPE cairn_http_response_bytes_total counter\n");
        for (route, n) in &m.bytes {
            let _ = writeln!(
                out,
                "cairn_http_response_bytes_total{{route=\"{}\"}} {n}",
                escape(route)
            );
        }
        out.push_str(
            "# HELP cairn_http_request_duration_seconds Time from request to response head.\n",
        );
        out.push_str("# TYPE cairn_http_request_duration_seconds histogram\n");
        for (route, h) in &m.latency {
            let r = escape(route);
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "cairn_http_request_duration_seconds_bucket{{route=\"{r}\",le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "cairn_http_request_duration_seconds_bucket{{route=\"{r}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "cairn_http_request_duration_seconds_sum{{route=\"{r}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "cairn_http_request_duration_seconds_count{{route=\"{r}\"}} {}",
                h.count
            );
        }
    }
}

/// One metric line with its help and type.
pub fn gauge(out: &mut String, name: &str, kind: &str, help: &str, value: f64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Middleware: records every request against its route template.
pub async fn track(
    State(metrics): State<std::sync::Arc<Metrics>>,
    req: Request,
    next: Next,
) -> Response {
    let t0 = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = method_label(req.method());
    let r = next.run(req).await;
    let bytes = r
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    metrics.record(
        &route,
        method,
        r.status().as_u16(),
        if method == "HEAD" { 0 } else { bytes },
        t0.elapsed().as_secs_f64(),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_bytes_and_cumulative_buckets() {
        let m = Metrics::default();
        m.record("/v1/x", "GET", 200, 10, 0.003);
        m.record("/v1/x", "GET", 200, 5, 0.2);
        m.record("/v1/x", "GET", 404, 0, 0.0001);
        let mut s = String::new();
        m.render(&mut s);
        assert!(
            s.contains(
                "cairn_http_requests_total{route=\"/v1/x\",method=\"GET\",status=\"200\"} 2"
            ),
            "{s}"
        );
        assert!(s.contains("cairn_http_response_bytes_total{route=\"/v1/x\"} 15"));
        assert!(s.contains("le=\"0.001\"} 1\n"));
        assert!(s.contains("le=\"0.005\"} 2\n"));
        assert!(s.contains("le=\"+Inf\"} 3\n"));
        assert!(s.contains("cairn_http_request_duration_seconds_count{route=\"/v1/x\"} 3"));
    }
}
