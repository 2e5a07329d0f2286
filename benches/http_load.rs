//! HTTP load: many concurrent range readers of one file served by a Cairn node (bytes
//! rebuilt from pieces fetched from peers), against the same file served by a plain static
//! file server (tower-http's `ServeDir`) in the same run, with the same requests.
//!
//! `cargo bench --bench http_load` (64 MiB file, 200 readers, 4000 requests or 30 s).
//! `CAIRN_LOAD_MIB`, `CAIRN_LOAD_READERS`, `CAIRN_LOAD_REQUESTS`, `CAIRN_LOAD_SECS` change
//! them. Loopback only. Every body is checked against the file.

use std::{
    path::Path,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn cairn(args: &[&str], envs: &[(&str, &str)]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .expect("cairn runs");
    assert!(
        o.status.success(),
        "cairn {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Stops the network whatever happens.
struct Down(std::path::PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(["network", "down", "--dir"])
            .arg(&self.0)
            .output();
    }
}

#[derive(Debug, Default, Clone)]
struct Figures {
    requests: u64,
    bytes: u64,
    errors: u64,
    mismatches: u64,
    secs: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// The request sequence: `(start, len)` per request, the same for both servers.
fn plan(n: u64, size: u64, seed: u64) -> Vec<(u64, u64)> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|_| {
            let len = (64 << 10) + next() % ((1 << 20) - (64 << 10));
            let len = len.min(size);
            (next() % (size - len + 1), len)
        })
        .collect()
}

fn load(
    url: &str,
    data: &Arc<Vec<u8>>,
    reqs: &Arc<Vec<(u64, u64)>>,
    readers: u64,
    limit: Duration,
) -> Figures {
    let next = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let handles: Vec<_> = (0..readers)
        .map(|_| {
            let (next, reqs, data, url) =
                (next.clone(), reqs.clone(), data.clone(), url.to_string());
            std::thread::spawn(move || {
                let agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(60)))
                    .build()
                    .new_agent();
                let mut lat = Vec::new();
                let (mut bytes, mut errors, mut bad) = (0u64, 0u64, 0u64);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= reqs.len() as u64 || t0.elapsed() > limit {
                        break;
                    }
                    let (s, l) = reqs[i as usize];
                    let t = Instant::now();
                    let r = agent
                        .get(&url)
                        .header("Range", &format!("bytes={s}-{}", s + l - 1))
                        .call();
                    match r {
                        Ok(mut r) if r.status().as_u16() == 206 => {
                            match r.body_mut().with_config().limit(4 << 20).read_to_vec() {
                                Ok(b) => {
                                    lat.push(t.elapsed());
                                    bytes += b.len() as u64;
                                    if b[..] != data[s as usize..(s + l) as usize] {
                                        bad += 1;
                                    }
                                }
                                Err(_) => errors += 1,
                            }
                        }
                        _ => errors += 1,
                    }
                }
                (lat, bytes, errors, bad)
            })
        })
        .collect();
    let mut lat = Vec::new();
    let mut f = Figures::default();
    for h in handles {
        let (l, b, e, m) = h.join().expect("reader");
        lat.extend(l);
        f.bytes += b;
        f.errors += e;
        f.mismatches += m;
    }
    f.secs = t0.elapsed().as_secs_f64();
    f.requests = lat.len() as u64;
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    (f.p50_ms, f.p99_ms) = (pct(0.50), pct(0.99));
    f
}

/// A plain static file server for `dir` on 127.0.0.1; returns its address.
fn static_server(dir: &Path) -> std::net::SocketAddr {
    let dir = dir.to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(l.local_addr().expect("addr")).expect("send");
            let app =
                axum::Router::new().fallback_service(tower_http::services::ServeDir::new(dir));
            axum::serve(l, app).await.expect("serve");
        });
    });
    rx.recv().expect("static server")
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let mib = env("CAIRN_LOAD_MIB", 64);
    let readers = env("CAIRN_LOAD_READERS", 200);
    let n = env("CAIRN_LOAD_REQUESTS", 4000);
    let limit = Duration::from_secs(env("CAIRN_LOAD_SECS", 30));
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    let data = Arc::new(storage_node::local::synthetic((mib << 20) as usize, 77));
    std::fs::write(src.join("big.bin"), &*data).expect("write");
    let net = dir.path().join("net");
    cairn(
        &[
            "network",
            "up",
            "--nodes",
            "6",
            "--dir",
            net.to_str().expect("utf-8"),
        ],
        &[],
    );
    let _down = Down(net.clone());
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(net.join("network.json")).expect("json"))
            .expect("json");
    let peer = v["nodes"][0]["peer"].as_str().expect("peer").to_string();
    let http = v["nodes"][1]["http"].as_str().expect("http").to_string();
    let cfg = dir.path().join("cfg");
    let envs = [
        ("CAIRN_PEER", peer.as_str()),
        ("CAIRN_CONFIG_DIR", cfg.to_str().expect("utf-8")),
    ];
    cairn(
        &[
            "dataset",
            "push",
            src.to_str().expect("utf-8"),
            "--name",
            "bench/load",
            "--k",
            "4",
            "--m",
            "2",
        ],
        &envs,
    );
    // The node serving the reads is not the one the push went through.
    let t0 = Instant::now();
    let info: serde_json::Value = loop {
        let r = ureq::get(format!("{http}/v1/datasets/bench/load")).call();
        if let Ok(mut r) = r
            && r.status().as_u16() == 200
        {
            break r.body_mut().read_json().expect("json");
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the serving node never learned of the pushed dataset"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let cairn_url = format!("{http}{}", info["files"][0]["url"].as_str().expect("url"));
    let static_url = format!("http://{}/big.bin", static_server(&src));
    let reqs = Arc::new(plan(n, mib << 20, 5));

    let base = load(&static_url, &data, &reqs, readers, limit);
    let ours = load(&cairn_url, &data, &reqs, readers, limit);
    let m = ureq::get(format!("{http}/metrics"))
        .call()
        .expect("metrics")
        .body_mut()
        .read_to_string()
        .expect("text");
    let metric = |name: &str| {
        m.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or("?")
            .to_string()
    };
    let mbs = |f: &Figures| f.bytes as f64 / f.secs / 1e6;
    println!(
        "\nhttp_load: {readers} concurrent readers of a {mib} MiB file, random ranges of 64 KiB-1 MiB, \
         up to {n} requests or {} s; 6 nodes on 127.0.0.1, k=4 m=2",
        limit.as_secs()
    );
    println!(
        "{:<26} {:>9} {:>10} {:>9} {:>9} {:>9} {:>7} {:>10}",
        "server", "requests", "MB/s", "req/s", "p50 ms", "p99 ms", "errors", "mismatches"
    );
    for (name, f) in [("static files (baseline)", &base), ("cairn node", &ours)] {
        println!(
            "{name:<26} {:>9} {:>10.1} {:>9.0} {:>9.1} {:>9.1} {:>7} {:>10}",
            f.requests,
            mbs(f),
            f.requests as f64 / f.secs,
            f.p50_ms,
            f.p99_ms,
            f.errors,
            f.mismatches
        );
    }
    println!(
        "ratio cairn / static: {:.2}x throughput, {:.2}x p50, {:.2}x p99",
        mbs(&ours) / mbs(&base),
        ours.p50_ms / base.p50_ms,
        ours.p99_ms / base.p99_ms
    );
    println!(
        "serving node: {} stripes and {} single pieces fetched from peers, {} stripe reads from its cache",
        metric("cairn_http_stripes_fetched_total"),
        metric("cairn_http_pieces_fetched_total"),
        metric("cairn_http_stripe_cache_hits_total")
    );
    let json = serde_json::json!({
        "readers": readers, "file_mib": mib,
        "static": {"requests": base.requests, "mb_s": mbs(&base), "p50_ms": base.p50_ms, "p99_ms": base.p99_ms, "errors": base.errors},
        "cairn": {"requests": ours.requests, "mb_s": mbs(&ours), "p50_ms": ours.p50_ms, "p99_ms": ours.p99_ms, "errors": ours.errors},
    });
    let out = std::env::var_os("CAIRN_BENCH_JSON").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target")
                .join("http_load.json")
        },
        Into::into,
    );
    std::fs::write(&out, serde_json::to_vec_pretty(&json).expect("json")).ok();
    assert_eq!(
        base.mismatches + ours.mismatches,
        0,
        "a body differed from the file"
    );
    assert!(
        base.errors + ours.errors == 0,
        "requests failed (static {}, cairn {}): the figures above do not measure a working server",
        base.errors,
        ours.errors
    );
}
