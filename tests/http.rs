//! The dataset API over HTTP against a real local network: every status code, range edge
//! cases, HEAD/GET agreement, `curl -C -` resume, publishing with and without a token,
//! and random ranges over random files.

mod common;

use std::{path::Path, process::Command};

use common::{Net, mixed_files, text};

use serde_json::Value;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(std::time::Duration::from_secs(120)))
        .build()
        .new_agent()
}

struct Got {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

fn call(method: &str, url: &str, headers: &[(&str, &str)], body: Option<Vec<u8>>) -> Got {
    let mut b = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b.body(body.unwrap_or_default()).expect("request");
    let mut r = agent().run(req).expect("the node answers");
    let headers = r
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let status = r.status().as_u16();
    let body = r
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .expect("body");
    Got {
        status,
        headers,
        body,
    }
}

fn get(url: &str, headers: &[(&str, &str)]) -> Got {
    call("GET", url, headers, None)
}

/// The value of a metric line `name value` in Prometheus text.
fn metric(base: &str, name: &str) -> f64 {
    let g = get(&format!("{base}/metrics"), &[]);
    let text = String::from_utf8_lossy(&g.body).to_string();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

/// A tar of the files under `dir`, by the system's tar (what a researcher would send).
fn tar_of(dir: &Path) -> Vec<u8> {
    let o = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .args(["-cf", "-", "."])
        .output()
        .expect("tar runs");
    assert!(o.status.success(), "tar failed");
    o.stdout
}

#[test]
fn every_endpoint_answers_like_a_good_web_server() {
    let net = Net::up_with(6, &["--http-max-body", "2MiB"]);
    let src = net.dir.path().join("src");
    // shards/000.bin spans several 256 KiB stripes (4 x 64 KiB blocks).
    let files = mixed_files(&src, 5, 700_000);
    let o = net.push(&src, "http/mixed");
    assert!(o.status.success(), "{}", text(&o));
    let nodes = net.nodes();
    let base = nodes[1].http.clone();

    // Listings, on a node the push did not go through (the manifest reaches it by gossip).
    common::wait_for(
        30,
        || get(&format!("{base}/v1/datasets"), &[]).json()["datasets"][0]["name"] == "http/mixed",
        || "node 1 never listed the dataset".into(),
    );
    let info = get(&format!("{base}/v1/datasets/http/mixed"), &[]);
    assert_eq!(info.status, 200);
    let info = info.json();
    assert_eq!(info["license"], "CC0-1.0");
    assert!(info["card"].as_str().unwrap_or("").contains("test/mixed"));
    let version = info["latest"].as_str().expect("latest").to_string();
    let ver = get(
        &format!("{base}/v1/datasets/http/mixed/versions/{version}"),
        &[],
    );
    assert_eq!(ver.status, 200);
    assert_eq!(ver.json()["coding"]["k"], 4);
    assert_eq!(
        ver.json()["files"].as_array().expect("files").len(),
        files.len()
    );
    let url = |p: &str| format!("{base}/v1/datasets/http/mixed/resolve/{version}/{p}");
    let original = |p: &str| std::fs::read(src.join(p)).expect("source file");

    // 404s, 400s, all JSON with stable codes.
    for (path, status, code) in [
        ("/v1/datasets/http/nothing", 404, "not_found"),
        (
            &format!("/v1/datasets/http/mixed/versions/{}", "0".repeat(64)) as &str,
            404,
            "not_found",
        ),
        (
            &format!("/v1/datasets/http/mixed/resolve/{version}/no/such.bin"),
            404,
            "not_found",
        ),
        ("/v1/nowhere", 404, "not_found"),
        ("/v1/datasets/-bad/name", 400, "bad_request"),
        ("/v1/datasets/http/mixed/versions/xyz", 400, "bad_request"),
        (
            &format!("/v1/datasets/http/mixed/resolve/{version}/%2E%2E/secret"),
            400,
            "bad_request",
        ),
        (
            "/v1/datasets/http/mixed/resolve/nothex/table.csv",
            400,
            "bad_request",
        ),
    ] {
        let g = get(&format!("{base}{path}"), &[]);
        assert_eq!(
            g.status,
            status,
            "{path}: {}",
            String::from_utf8_lossy(&g.body)
        );
        assert_eq!(g.error_code(), code, "{path}");
    }
    // What axum itself refuses (a bad query, a wrong method) is JSON too, with the
    // same stable codes.
    for (method, path, status, code) in [
        ("GET", "/v1/datasets?limit=many", 400, "bad_request"),
        (
            "DELETE",
            "/v1/datasets/http/mixed",
            405,
            "method_not_allowed",
        ),
        ("POST", "/v1/network", 405, "method_not_allowed"),
    ] {
        let g = call(method, &format!("{base}{path}"), &[], None);
        assert_eq!(
            (g.status, g.error_code().as_str()),
            (status, code),
            "{method} {path}: {}",
            String::from_utf8_lossy(&g.body)
        );
        assert!(
            !g.json()["error"]["message"]
                .as_str()
                .unwrap_or("")
                .is_empty()
        );
    }

    // latest redirects to the immutable URL, keeping the path as sent.
    let g = get(
        &format!("{base}/v1/datasets/http/mixed/resolve/latest/shards/000.bin"),
        &[],
    );
    assert_eq!(g.status, 302);
    assert_eq!(
        g.header("location"),
        Some(format!("/v1/datasets/http/mixed/resolve/{version}/shards/000.bin").as_str())
    );

    // Whole files, HEAD agreeing with GET, no content coding.
    for (p, _) in &files {
        let g = get(&url(p), &[("Accept-Encoding", "gzip, br")]);
        assert_eq!(g.status, 200, "{p}");
        assert_eq!(g.body, original(p), "{p}");
        let h = call("HEAD", &url(p), &[], None);
        assert_eq!(h.status, 200);
        assert!(h.body.is_empty());
        for name in [
            "content-length",
            "etag",
            "last-modified",
            "accept-ranges",
            "content-type",
        ] {
            assert_eq!(h.header(name), g.header(name), "{p}: {name}");
        }
        assert_eq!(
            h.header("content-length"),
            Some(g.body.len().to_string().as_str())
        );
        assert_eq!(h.header("accept-ranges"), Some("bytes"));
        assert!(g.header("content-encoding").is_none(), "{p}");
        let hash = blake3::hash(&g.body).to_hex().to_string();
        assert_eq!(g.header("etag"), Some(format!("\"{hash}\"").as_str()));
    }

    // Ranges.
    let big = original("shards/000.bin");
    let n = big.len();
    let stripe = 4 * 64 * 1024;
    let ranged = |spec: &str| get(&url("shards/000.bin"), &[("Range", spec)]);
    for (spec, want) in [
        ("bytes=0-0".to_string(), 0..1),
        (format!("bytes={}-{}", n - 1, n - 1), n - 1..n),
        ("bytes=-1".to_string(), n - 1..n),
        (
            format!("bytes={}-{}", stripe - 10, stripe + 9),
            stripe - 10..stripe + 10,
        ),
        (format!("bytes={}-", 2 * stripe + 5), 2 * stripe + 5..n),
        (format!("bytes=-{}", n + 1000), 0..n),
        (format!("bytes=100-{}", n + 50), 100..n),
    ] {
        let g = ranged(&spec);
        assert_eq!(g.status, 206, "{spec}");
        assert_eq!(g.body, &big[want.clone()], "{spec}");
        assert_eq!(
            g.header("content-range"),
            Some(format!("bytes {}-{}/{n}", want.start, want.end - 1).as_str()),
            "{spec}"
        );
        assert_eq!(
            g.header("content-length"),
            Some(want.len().to_string().as_str())
        );
        let h = call("HEAD", &url("shards/000.bin"), &[("Range", &spec)], None);
        assert_eq!(h.status, 206);
        assert_eq!(h.header("content-range"), g.header("content-range"));
    }
    for spec in [
        format!("bytes={n}-"),
        format!("bytes={}-{}", n + 5, n + 9),
        "bytes=-0".into(),
    ] {
        let g = ranged(&spec);
        assert_eq!(g.status, 416, "{spec}");
        assert_eq!(
            g.header("content-range"),
            Some(format!("bytes */{n}").as_str())
        );
        assert_eq!(g.error_code(), "range_not_satisfiable");
    }
    // Ranges that are not ours to honour give the whole file.
    let g = ranged("bytes=0-1,5-6");
    assert_eq!((g.status, g.body.len()), (200, n));
    // The empty file: 200 with nothing; any range is unsatisfiable.
    let g = get(&url("empty"), &[]);
    assert_eq!((g.status, g.body.len()), (200, 0));
    assert_eq!(g.header("content-length"), Some("0"));
    assert_eq!(get(&url("empty"), &[("Range", "bytes=0-")]).status, 416);

    // Conditional requests.
    let etag = get(&url("tiny.txt"), &[])
        .header("etag")
        .expect("etag")
        .to_string();
    let g = get(&url("tiny.txt"), &[("If-None-Match", &etag)]);
    assert_eq!(g.status, 304);
    assert!(g.body.is_empty());
    let g = ranged_with(&url("shards/000.bin"), "bytes=0-9", "\"stale\"");
    assert_eq!(
        (g.status, g.body.len()),
        (200, n),
        "a stale If-Range gets the whole file"
    );

    // Only what covers a range is fetched: a 10-byte range inside the last stripe, on a
    // node that has served nothing of it, costs one data piece (a quarter of the stripe).
    let fresh = nodes[4].http.clone();
    let before = metric(&fresh, "cairn_http_pieces_fetched_total");
    let g = get(
        &format!("{fresh}/v1/datasets/http/mixed/resolve/{version}/shards/000.bin"),
        &[("Range", &format!("bytes={}-{}", n - 10, n - 1))],
    );
    assert_eq!(g.body, &big[n - 10..]);
    assert_eq!(
        metric(&fresh, "cairn_http_pieces_fetched_total") - before,
        1.0
    );
    assert_eq!(metric(&fresh, "cairn_http_stripes_fetched_total"), 0.0);

    // CORS: a browser may read ranges and see the headers it needs.
    let g = call(
        "OPTIONS",
        &url("table.csv"),
        &[
            ("Origin", "http://example.test"),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "range"),
        ],
        None,
    );
    assert!(g.status < 300, "preflight: {}", g.status);
    assert_eq!(g.header("access-control-allow-origin"), Some("*"));
    let g = get(
        &url("table.csv"),
        &[("Origin", "http://example.test"), ("Range", "bytes=0-3")],
    );
    let exposed = g
        .header("access-control-expose-headers")
        .unwrap_or("")
        .to_string();
    for h in ["content-range", "content-length", "etag"] {
        assert!(exposed.contains(h), "{h} not exposed: {exposed}");
    }

    // `curl -C -` resumes a cut-off download to identical bytes.
    let part = net.dir.path().join("resumed.bin");
    let o = Command::new("curl")
        .args(["-sS", "-r", "0-99999", "-o"])
        .arg(&part)
        .arg(url("shards/000.bin"))
        .output()
        .expect("curl runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::metadata(&part).expect("part").len(), 100_000);
    let o = Command::new("curl")
        .args(["-sS", "-f", "-C", "-", "-o"])
        .arg(&part)
        .arg(url("shards/000.bin"))
        .output()
        .expect("curl runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        std::fs::read(&part).expect("resumed") == big,
        "resumed bytes differ"
    );

    // Metrics and the OpenAPI document.
    let m = String::from_utf8_lossy(&get(&format!("{base}/metrics"), &[]).body).to_string();
    for name in [
        "cairn_http_requests_total{",
        "cairn_http_request_duration_seconds_bucket{",
        "cairn_http_response_bytes_total{",
        "cairn_pieces_held ",
        "cairn_audits_passed_total ",
        "cairn_audits_failed_total ",
        "cairn_repairs_total ",
        "cairn_connections_open ",
        "cairn_ledger_entries ",
        "cairn_placement_records ",
        "libp2p_bandwidth_bytes_total{",
    ] {
        assert!(m.contains(name), "{name} missing from /metrics");
    }
    // Control-plane traffic by message kind and gossip topic, and what the node keeps
    // about others: node 1 was asked to hold pieces, heard of the version by gossip and
    // of its co-holders' pieces from them, and located pieces (placement records first)
    // to answer the reads above.
    for name in [
        r#"cairn_control_bytes_total{direction="in",part="request",kind="hold"}"#,
        r#"cairn_control_bytes_total{direction="out",part="response",kind="held"}"#,
        r#"cairn_control_bytes_total{direction="in",part="request",kind="locate_stripes"}"#,
        r#"cairn_gossip_topic_msg_recv_bytes_total{hash="cairn/manifests/1"}"#,
        r#"cairn_control_bytes_total{direction="in",part="request",kind="holdings"}"#,
        "cairn_holder_entries",
        "cairn_manifests_stored",
    ] {
        assert!(metric(&base, name) > 0.0, "{name} is 0:\n{m}");
    }
    let doc = get(&format!("{base}/openapi.json"), &[]).json();
    assert!(doc["paths"]["/v1/datasets/{owner}/{name}/resolve/{version}/{path}"].is_object());
    let net_view = get(&format!("{base}/v1/network"), &[]).json();
    assert_eq!(net_view["nodes"].as_array().expect("nodes").len(), 6);

    // Publishing: no token, a wrong one, too big, not a tar, then a good one.
    let upload = net.dir.path().join("upload");
    std::fs::create_dir_all(upload.join("d")).expect("mkdir");
    std::fs::write(upload.join("README.md"), "# uploaded over HTTP\n").expect("write");
    std::fs::write(
        upload.join("d/x.bin"),
        storage_node::local::synthetic(300_000, 9),
    )
    .expect("write");
    let body = tar_of(&upload);
    let post = |auth: Option<&str>, body: Vec<u8>| {
        let h = auth.map(|t| format!("Bearer {t}"));
        let mut hs = vec![("Content-Type", "application/x-tar")];
        if let Some(h) = &h {
            hs.push(("Authorization", h.as_str()));
        }
        call(
            "POST",
            &format!("{base}/v1/datasets/http/uploaded?k=4&m=2&block_size=65536&license=MIT"),
            &hs,
            Some(body),
        )
    };
    let g = post(None, body.clone());
    assert_eq!((g.status, g.error_code().as_str()), (401, "unauthorized"));
    assert!(g.header("www-authenticate").is_some());
    let g = post(Some("cairn_0000"), body.clone());
    assert_eq!((g.status, g.error_code().as_str()), (403, "forbidden"));
    let token = common::token(&nodes[1].data_dir, "ci");
    // Over the limit: refused from its Content-Length, before the body is read (curl,
    // because it reads an answer that comes while it is still sending).
    let too_big = net.dir.path().join("too-big.tar");
    std::fs::write(&too_big, vec![7u8; 3 << 20]).expect("write");
    // Chunked, with no length to judge by, it is cut off once past the limit.
    for chunked in [false, true] {
        let mut c = Command::new("curl");
        c.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H"])
            .arg(format!("Authorization: Bearer {token}"));
        if chunked {
            c.args(["-H", "Transfer-Encoding: chunked"]);
        }
        let o = c
            .arg("--data-binary")
            .arg(format!("@{}", too_big.display()))
            .arg(format!("{base}/v1/datasets/http/uploaded"))
            .output()
            .expect("curl runs");
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            "413",
            "chunked: {chunked}"
        );
    }
    let g = post(Some(&token), b"this is not a tar archive".repeat(40));
    assert_eq!((g.status, g.error_code().as_str()), (400, "bad_request"));
    let g = post(Some(&token), body);
    assert_eq!(g.status, 201, "{}", String::from_utf8_lossy(&g.body));
    let v2 = g.json()["version"].as_str().expect("version").to_string();
    // A name another publisher owns is refused, and says why.
    let auth = format!("Bearer {token}");
    let g = call(
        "POST",
        &format!("{base}/v1/datasets/http/mixed?k=4&m=2"),
        &[("Authorization", auth.as_str())],
        Some(tar_of(&upload)),
    );
    assert_eq!(
        (g.status, g.error_code().as_str()),
        (403, "forbidden"),
        "{}",
        String::from_utf8_lossy(&g.body)
    );
    let g = get(
        &format!("{base}/v1/datasets/http/uploaded/resolve/{v2}/d/x.bin"),
        &[],
    );
    assert_eq!(g.body, std::fs::read(upload.join("d/x.bin")).expect("x"));
    let info = get(&format!("{base}/v1/datasets/http/uploaded"), &[]).json();
    assert_eq!(info["card"], "# uploaded over HTTP\n");
    assert_eq!(info["license"], "MIT");
    // Nothing is left behind in the node's upload area.
    let left = std::fs::read_dir(nodes[1].data_dir.join("uploads"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(left, 0, "upload leftovers");
    // Pagination.
    let p1 = get(&format!("{base}/v1/datasets?limit=1"), &[]).json();
    assert_eq!(p1["datasets"][0]["name"], "http/mixed");
    assert_eq!(p1["next"], "http/mixed");
    let p2 = get(&format!("{base}/v1/datasets?limit=1&after=http/mixed"), &[]).json();
    assert_eq!(p2["datasets"][0]["name"], "http/uploaded");
    assert!(p2["next"].is_null());

    // Too few pieces reachable: 503 with Retry-After, and the node stays up.
    for i in [2, 3, 5] {
        net.kill(i);
    }
    // Node 4 has never read shards/001.bin, so nothing of it is in its cache.
    let g = get(
        &format!("{fresh}/v1/datasets/http/mixed/resolve/{version}/shards/001.bin"),
        &[],
    );
    assert_eq!(g.status, 503, "{}", String::from_utf8_lossy(&g.body));
    assert_eq!(g.error_code(), "unavailable");
    assert!(g.header("retry-after").is_some());
    // What was read before is still served from the cache.
    let g = get(&url("tiny.txt"), &[]);
    assert_eq!(g.status, 200);
}

fn ranged_with(url: &str, range: &str, if_range: &str) -> Got {
    get(url, &[("Range", range), ("If-Range", if_range)])
}

#[test]
fn random_ranges_over_random_files_are_the_same_slices() {
    use proptest::{
        prelude::*,
        test_runner::{Config, TestRunner},
    };
    let net = Net::up(6);
    let src = net.dir.path().join("src");
    // Sizes around the 256 KiB stripe and 64 KiB block edges, and odd ones.
    let sizes = [
        1usize,
        65_535,
        65_537,
        262_144,
        262_145,
        600_001,
        1_048_576 + 3,
    ];
    for (i, s) in sizes.iter().enumerate() {
        std::fs::create_dir_all(&src).expect("mkdir");
        std::fs::write(
            src.join(format!("f{i}.bin")),
            storage_node::local::synthetic(*s, 40 + i as u64),
        )
        .expect("write");
    }
    let o = net.push(&src, "http/random");
    assert!(o.status.success(), "{}", text(&o));
    let base = net.nodes()[0].http.clone();
    let version = get(&format!("{base}/v1/datasets/http/random"), &[]).json()["latest"]
        .as_str()
        .expect("latest")
        .to_string();
    let originals: Vec<Vec<u8>> = (0..sizes.len())
        .map(|i| std::fs::read(src.join(format!("f{i}.bin"))).expect("read"))
        .collect();
    let mut runner = TestRunner::new(Config {
        cases: 96,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(
            &(0..sizes.len(), 0u8..3, any::<u64>(), any::<u64>()),
            |(fi, form, a, b)| {
                let data = &originals[fi];
                let n = data.len() as u64;
                let (spec, want) = match form {
                    0 => {
                        let s = a % n;
                        let e = s + b % (n - s);
                        (format!("bytes={s}-{e}"), s..e + 1)
                    }
                    1 => {
                        let s = a % n;
                        (format!("bytes={s}-"), s..n)
                    }
                    _ => {
                        let k = 1 + b % (n + 10);
                        (format!("bytes=-{k}"), n.saturating_sub(k)..n)
                    }
                };
                let g = get(
                    &format!("{base}/v1/datasets/http/random/resolve/{version}/f{fi}.bin"),
                    &[("Range", &spec)],
                );
                prop_assert_eq!(g.status, 206, "{}", spec);
                let (s, e) = (
                    usize::try_from(want.start).expect("fits"),
                    usize::try_from(want.end).expect("fits"),
                );
                prop_assert!(g.body == data[s..e], "{} over f{} differs", spec, fi);
                Ok(())
            },
        )
        .expect("every range is the same slice");
}
