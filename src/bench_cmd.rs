//! `cairn bench`: the end-to-end measures of the whole system on a local network, each
//! beside a baseline measured in the same run, with the ratio; a table on stdout and the
//! same figures as JSON.
//!
//! Every network figure is the wall time of the real `cairn` CLI (a separate process)
//! against real node processes on 127.0.0.1. The machine is whatever it is (shared, noisy):
//! the ratios to baselines taken minutes apart on it are what compare across machines.
//!
//! | measure | baseline (same run) |
//! |---|---|
//! | pull of the data | a local copy of it (+ fsync), and an HTTP download from a static file server |
//! | HTTP download from a node (rebuilt on the fly) | the same static server |
//! | push of the data | a local copy of `n/k` times its bytes (what the push stores) |
//! | streamed training, samples/s | training on the same files with `--local` |
//! | audit round, CPU per node | re-hashing the node's held bytes once (the check without proofs) |
//! | audit round, disk and wire bytes | the node's held bytes |
//! | repair, MB/s written | the pull's MB/s |
//! | idle node memory (RSS) | the same nodes' RSS before they held anything |
//! | Reed-Solomon encode, BLAKE3 | memcpy of the same buffer |

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{Ipv4Addr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use storage_node::{ErasureParams, erasure::StripeEncoder};

use crate::{
    network_cmd::{self, Network, UpArgs},
    node_cmd::fetch_status,
};

#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// A smaller run (64 MiB instead of 1 GiB; a 16 MiB training set): under 2 minutes.
    #[arg(long)]
    quick: bool,
    /// Bytes of data pushed and pulled, in MiB (default 1024, or 64 with --quick).
    #[arg(long)]
    mib: Option<u64>,
    /// MiB of CSV the training comparison runs on (default 128, or 16 with --quick).
    #[arg(long)]
    train_mib: Option<u64>,
    /// Run only these parts (comma-separated): transfer, train, upkeep, kernels.
    #[arg(long, value_delimiter = ',')]
    only: Vec<Part>,
    /// Where the JSON goes.
    #[arg(long, default_value = "cairn-bench.json")]
    json: PathBuf,
    /// Keep the work directory (data, node logs) here instead of a temporary one.
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Part {
    /// Push, pull and HTTP downloads against copies and a static server.
    Transfer,
    /// Streamed training against --local.
    Train,
    /// Audit cost, repair throughput, idle memory.
    Upkeep,
    /// Reed-Solomon and BLAKE3 against memcpy.
    Kernels,
}

/// One line of the table.
#[derive(Debug, Serialize)]
struct Figure {
    measure: String,
    value: f64,
    unit: String,
    baseline: String,
    baseline_value: f64,
    /// `value / baseline_value`.
    ratio: f64,
    /// What the ratio means, e.g. "higher is better".
    note: String,
}

#[derive(Debug, Default, Serialize)]
struct Results {
    machine: String,
    quick: bool,
    data_mib: u64,
    train_mib: u64,
    nodes: usize,
    k: u16,
    m: u16,
    figures: Vec<Figure>,
    total_secs: f64,
}

impl Results {
    fn add(
        &mut self,
        measure: &str,
        (value, unit): (f64, &str),
        baseline: &str,
        baseline_value: f64,
        note: &str,
    ) {
        let f = Figure {
            measure: measure.into(),
            value,
            unit: unit.into(),
            baseline: baseline.into(),
            baseline_value,
            ratio: value / baseline_value,
            note: note.into(),
        };
        println!(
            "  {:<44} {:>10} {:<6} {:<46} {:>10} {:>8.3}x  {}",
            f.measure,
            fmt(f.value),
            f.unit,
            f.baseline,
            fmt(f.baseline_value),
            f.ratio,
            f.note
        );
        self.figures.push(f);
    }
}

fn fmt(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

const K: u16 = 4;
const M: u16 = 2;
/// One more node than a stripe needs, so a killed node's pieces have somewhere to go.
const NODES: usize = 7;
const FILES: usize = 8;

/// Runs `cairn args...` (this same binary) and returns its wall time.
fn cairn(args: &[&str], envs: &[(&str, &str)]) -> Result<Duration> {
    let exe = std::env::current_exe().context("cannot find the cairn executable")?;
    let t = Instant::now();
    let o = Command::new(exe)
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .context("cannot run cairn")?;
    let took = t.elapsed();
    if !o.status.success() {
        bail!(
            "cairn {} failed:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok(took)
}

/// `cairn dataset push SRC --name NAME` with the bench's code.
fn push(src: &str, name: &str, envs: &[(&str, &str)]) -> Result<Duration> {
    let (k, m) = (K.to_string(), M.to_string());
    cairn(
        &["dataset", "push", src, "--name", name, "--k", &k, "--m", &m],
        envs,
    )
}

fn mbs(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64().max(1e-9) / 1e6
}

/// Copies every file of `src` into `dst` `times` over (fsyncing each), as the baseline of
/// writing that many bytes.
fn copy_dir(src: &Path, dst: &Path, times: f64) -> Result<(Duration, u64)> {
    std::fs::create_dir_all(dst)?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(src)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.sort();
    let mut written = 0u64;
    let total: u64 = files
        .iter()
        .map(|f| f.metadata().map_or(0, |m| m.len()))
        .sum();
    let want = (total as f64 * times) as u64;
    let t = Instant::now();
    let mut round = 0;
    'outer: loop {
        for f in &files {
            if written >= want {
                break 'outer;
            }
            let to = dst.join(format!(
                "{round}-{}",
                f.file_name().map_or("x".into(), |n| n.to_string_lossy())
            ));
            let left = want - written;
            let len = f.metadata()?.len();
            if left >= len {
                std::fs::copy(f, &to)?;
                written += len;
            } else {
                let mut r = std::fs::File::open(f)?.take(left);
                let mut w = std::fs::File::create(&to)?;
                std::io::copy(&mut r, &mut w)?;
                written += left;
            }
            std::fs::File::open(&to)?.sync_all()?;
        }
        round += 1;
    }
    Ok((t.elapsed(), written))
}

/// A minimal static file server for files directly under `root`, one thread per
/// connection; the file goes out with `std::io::copy` (sendfile on Linux).
fn static_server(root: PathBuf) -> Result<String> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let addr = l.local_addr()?;
    std::thread::Builder::new()
        .name("bench-static".into())
        .spawn(move || {
            for conn in l.incoming().flatten() {
                let root = root.clone();
                std::thread::spawn(move || serve_one(conn, &root).ok());
            }
        })?;
    Ok(format!("http://{addr}"))
}

fn serve_one(mut conn: TcpStream, root: &Path) -> std::io::Result<()> {
    let mut r = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
    }
    let name = line
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.strip_prefix('/'))
        .unwrap_or("");
    let file = (!name.is_empty() && !name.contains('/') && !name.contains(".."))
        .then(|| std::fs::File::open(root.join(name)).ok())
        .flatten();
    match file {
        Some(mut f) => {
            let len = f.metadata()?.len();
            write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
            )?;
            std::io::copy(&mut f, &mut conn)?;
        }
        None => write!(
            conn,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?,
    }
    Ok(())
}

/// Downloads `url` and checks it against the file at `want`; returns the time.
fn download(url: &str, want: &Path) -> Result<(Duration, u64)> {
    let t = Instant::now();
    let mut r = ureq::get(url)
        .call()
        .with_context(|| format!("GET {url}"))?;
    let mut body = r.body_mut().with_config().limit(u64::MAX).reader();
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let got = body.read(&mut buf)?;
        if got == 0 {
            break;
        }
        h.update(&buf[..got]);
        n += got as u64;
    }
    let took = t.elapsed();
    let mut f = std::fs::File::open(want)?;
    let mut h2 = blake3::Hasher::new();
    std::io::copy(&mut f, &mut h2)?;
    if h.finalize() != h2.finalize() {
        bail!("GET {url} returned other bytes than {}", want.display());
    }
    Ok((took, n))
}

/// Resident memory of a process, in bytes.
fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// User + system CPU time of a process, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    ticks as f64 / 100.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Every piece file under a node's data dir: (id, path, bytes).
fn piece_files(data_dir: &Path) -> Vec<(String, PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![data_dir.join("pieces")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(m) = e.metadata() {
                let id = e.file_name().to_string_lossy().into_owned();
                if id.len() == 64 {
                    out.push((id, p, m.len()));
                }
            }
        }
    }
    out
}

/// Writes `mib` MiB of CSV with known structure in [`FILES`] files: 16 uniform features
/// and a label that is the quadrant of two fixed linear combinations of them (4 classes).
fn generate_csv(dir: &Path, mib: u64) -> Result<u64> {
    const FEATURES: usize = 16;
    std::fs::create_dir_all(dir)?;
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    let per_file = (mib << 20) / FILES as u64;
    let mut rows = 0;
    for f in 0..FILES {
        let file = std::fs::File::create(dir.join(format!("part-{f:02}.csv")))?;
        let mut w = std::io::BufWriter::new(file);
        let mut header: Vec<String> = (0..FEATURES).map(|i| format!("f{i}")).collect();
        header.push("label".into());
        writeln!(w, "{}", header.join(","))?;
        let mut written = 0u64;
        let mut line = String::new();
        while written < per_file {
            line.clear();
            let v: Vec<f64> = (0..FEATURES).map(|_| next() * 2.0 - 1.0).collect();
            let a: f64 = v.iter().step_by(2).sum();
            let b: f64 = v.iter().skip(1).step_by(3).sum::<f64>() - v[0];
            let label = usize::from(a > 0.0) * 2 + usize::from(b > 0.0);
            for x in &v {
                line.push_str(&format!("{x:.4},"));
            }
            line.push_str(&format!("{label}\n"));
            w.write_all(line.as_bytes())?;
            written += line.len() as u64;
            rows += 1;
        }
        w.flush()?;
    }
    Ok(rows)
}

/// One training run's figures from its `--metrics-out`.
struct TrainRun {
    samples_per_sec: f64,
    wait_fraction: f64,
    accuracy: f64,
    fetched: u64,
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Holds processes `pids` to CPUs `cpus`: every thread each already has (affinity is per
/// thread, so the process id alone would pin only its main thread), and the threads and
/// children started later, which inherit it. Best effort: a machine that refuses leaves
/// the processes where they were.
fn pin_all(pids: &[u32], cpus: &[usize]) {
    use nix::sched::{CpuSet, sched_setaffinity};
    let mut set = CpuSet::new();
    for &c in cpus {
        set.set(c).ok();
    }
    for &p in pids {
        let tids: Vec<i32> = std::fs::read_dir(format!("/proc/{p}/task"))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        let main = i32::try_from(p).ok();
        for tid in tids.into_iter().chain(main) {
            sched_setaffinity(nix::unistd::Pid::from_raw(tid), &set).ok();
        }
    }
}

fn train_run(metrics: &Path) -> Result<TrainRun> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(metrics)?)?;
    let e = &v["epochs"][0];
    let secs = e["secs"].as_f64().context("no epoch in the metrics")?;
    Ok(TrainRun {
        samples_per_sec: e["samples_per_sec"].as_f64().unwrap_or(0.0),
        wait_fraction: e["data_wait_secs"].as_f64().unwrap_or(0.0) / secs.max(1e-9),
        accuracy: e["test_accuracy"].as_f64().unwrap_or(f64::NAN),
        fetched: e["bytes_fetched"].as_u64().unwrap_or(0),
    })
}

/// Best-of-`reps` throughput of `f` over `bytes` bytes, GB/s.
fn gbs(bytes: usize, reps: usize, mut f: impl FnMut()) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    bytes as f64 / best.max(1e-9) / 1e9
}

fn kernels(r: &mut Results, quick: bool) -> Result<()> {
    let len: usize = if quick { 32 << 20 } else { 128 << 20 };
    let reps = if quick { 3 } else { 5 };
    let src = storage_node::local::synthetic(len, 3);
    let mut dst = vec![0u8; len];
    let memcpy = gbs(len, reps, || {
        dst.copy_from_slice(&src);
        std::hint::black_box(&dst);
    });
    let hash = gbs(len, reps, || {
        std::hint::black_box(blake3::hash(&src));
    });
    r.add(
        "BLAKE3 (piece ids, proofs), one core",
        (hash, "GB/s"),
        "memcpy of the same buffer",
        memcpy,
        "higher is better",
    );
    for (k, m) in [(K, M), (10, 4), (16, 8)] {
        let params = ErasureParams::new(k, m, 1 << 20)?;
        let mut enc = StripeEncoder::new(params)?;
        let stripe = usize::from(k) << 20;
        let stripes = (len / stripe).max(1);
        let rate = gbs(stripes * stripe, reps, || {
            for s in 0..stripes {
                let data = &src[s * stripe..(s + 1) * stripe];
                std::hint::black_box(enc.encode(data, 1 << 20).ok());
            }
        });
        r.add(
            &format!("Reed-Solomon encode {k}+{m}, file bytes, one core"),
            (rate, "GB/s"),
            "memcpy of the same buffer",
            memcpy,
            "higher is better",
        );
    }
    Ok(())
}

/// A local network for the bench, stopped on drop.
struct BenchNet {
    dir: PathBuf,
    net: Network,
}

impl Drop for BenchNet {
    fn drop(&mut self) {
        if let Ok(net) = network_cmd::read(&self.dir) {
            network_cmd::down_nodes(&net);
        }
    }
}

pub(crate) fn run(a: BenchArgs) -> Result<()> {
    let t_all = Instant::now();
    let parts: Vec<Part> = if a.only.is_empty() {
        vec![Part::Transfer, Part::Train, Part::Upkeep, Part::Kernels]
    } else {
        a.only.clone()
    };
    let mib = a.mib.unwrap_or(if a.quick { 64 } else { 1024 });
    let train_mib = a.train_mib.unwrap_or(if a.quick { 16 } else { 128 });
    let work = crate::WorkDir::new_prefixed(a.dir.clone(), "cairn-bench-")?;
    let root = work.path().canonicalize()?;
    let mut r = Results {
        machine: machine(),
        quick: a.quick,
        data_mib: mib,
        train_mib,
        nodes: NODES,
        k: K,
        m: M,
        ..Results::default()
    };
    println!(
        "cairn bench{}: {} node processes on 127.0.0.1, k={K} m={M}; {}; work dir {}",
        if a.quick { " --quick" } else { "" },
        NODES,
        r.machine,
        root.display()
    );
    println!(
        "  {:<44} {:>10} {:<6} {:<46} {:>10} {:>9}",
        "measure", "value", "unit", "baseline (same run)", "baseline", "ratio"
    );

    // The kernels first, on a quiet machine.
    if parts.contains(&Part::Kernels) {
        kernels(&mut r, a.quick)?;
    }
    let needs_net = parts.iter().any(|p| *p != Part::Kernels);
    let net = if needs_net {
        let dir = root.join("net");
        let net = network_cmd::start(&UpArgs {
            nodes: NODES,
            dir: dir.clone(),
            base_port: None,
            capacity: None,
            announce_secs: 10,
            timeout_secs: 60,
            // The nodes' default upkeep (a round every 10 minutes or so) while transfers
            // and training are measured; the upkeep part restarts them with short timers.
            audit_secs: None,
            scrub_secs: None,
            repair_threshold: None,
            http_max_body: None,
            holder_entries: None,
        })?;
        Some(BenchNet { dir, net })
    } else {
        None
    };
    let cfg = root.join("config");
    let peer = net
        .as_ref()
        .map(|n| n.net.nodes[0].peer.clone())
        .unwrap_or_default();
    let env = [
        ("CAIRN_PEER", peer.as_str()),
        (
            "CAIRN_CONFIG_DIR",
            cfg.to_str().context("work dir is not UTF-8")?,
        ),
    ];
    // Idle memory of nodes that hold nothing yet: the baseline of idle memory later.
    std::thread::sleep(Duration::from_secs(2));
    let rss_empty: Vec<f64> = net
        .as_ref()
        .map(|n| n.net.nodes.iter().map(|x| rss(x.pid) as f64).collect())
        .unwrap_or_default();

    let mut pull_mbs = None;
    if let (true, Some(n)) = (
        parts.contains(&Part::Transfer) || parts.contains(&Part::Upkeep),
        &net,
    ) {
        let src = root.join("data");
        std::fs::create_dir_all(&src)?;
        let per = (mib << 20) / FILES as u64;
        for i in 0..FILES {
            let data = storage_node::local::synthetic(per as usize, i as u64 + 1);
            std::fs::write(src.join(format!("shard-{i:03}.bin")), data)?;
        }
        let total = per * FILES as u64;
        let src_s = src.to_str().context("UTF-8")?;
        let (copy, _) = copy_dir(&src, &root.join("copy1"), 1.0)?;
        std::fs::remove_dir_all(root.join("copy1")).ok();
        let expansion = f64::from(K + M) / f64::from(K);
        let (copy_n, _) = copy_dir(&src, &root.join("copyn"), expansion)?;
        std::fs::remove_dir_all(root.join("copyn")).ok();
        let push = push(src_s, "bench/data", &env)?;
        let out = root.join("pulled");
        let pull = cairn(
            &[
                "dataset",
                "pull",
                "bench/data",
                out.to_str().context("UTF-8")?,
            ],
            &env,
        )?;
        for i in 0..FILES {
            let name = format!("shard-{i:03}.bin");
            if std::fs::read(src.join(&name))? != std::fs::read(out.join(&name))? {
                bail!("{name} differs after the pull");
            }
        }
        std::fs::remove_dir_all(&out).ok();
        let static_url = static_server(src.clone())?;
        let (mut st, mut st_bytes) = (Duration::ZERO, 0);
        for i in 0..FILES {
            let name = format!("shard-{i:03}.bin");
            let (t, b) = download(&format!("{static_url}/{name}"), &src.join(&name))?;
            st += t;
            st_bytes += b;
        }
        let first = "shard-000.bin";
        // A node that did not take the push answers: the file is rebuilt from its peers.
        let gw = &n.net.nodes[3].http;
        let info: serde_json::Value = ureq::get(format!("{gw}/v1/datasets/bench/data"))
            .call()?
            .body_mut()
            .read_json()?;
        let version = info["latest"].as_str().context("no latest version")?;
        let (gw_t, gw_bytes) = download(
            &format!("{gw}/v1/datasets/bench/data/resolve/{version}/{first}"),
            &src.join(first),
        )?;
        if parts.contains(&Part::Transfer) {
            r.add(
                &format!("pull {mib} MiB (fetch k of n, verify, decode, write)"),
                (mbs(total, pull), "MB/s"),
                "local copy + fsync of the same files",
                mbs(total, copy),
                "higher is better",
            );
            r.add(
                &format!("pull {mib} MiB"),
                (mbs(total, pull), "MB/s"),
                "HTTP GET of the same files from a static server",
                mbs(st_bytes, st),
                "higher is better",
            );
            r.add(
                &format!("HTTP GET of {first} from a node (rebuilt)"),
                (mbs(gw_bytes, gw_t), "MB/s"),
                "HTTP GET of the files from a static server",
                mbs(st_bytes, st),
                "higher is better",
            );
            r.add(
                &format!("push {mib} MiB (encode, place, transfer, fsync)"),
                (mbs(total, push), "MB/s"),
                &format!("local copy + fsync of {expansion:.2}x the bytes"),
                mbs(total, copy_n),
                "higher is better; MB/s of the data",
            );
        }
        pull_mbs = Some(mbs(total, pull));
    }

    if let (true, Some(n)) = (parts.contains(&Part::Train), &net) {
        let src = root.join("train");
        generate_csv(&src, train_mib)?;
        push(src.to_str().context("UTF-8")?, "bench/train", &env)?;
        let common: [&str; 22] = [
            "--format",
            "csv",
            "--label",
            "label",
            "--task",
            "classify",
            "--epochs",
            "1",
            "--batch-size",
            "256",
            "--lr",
            "0.003",
            "--seed",
            "11",
            "--test-files",
            "part-07.csv",
            // A stripe of this push (k = 4 pieces of 1 MiB): each block is one stripe.
            "--shuffle-block",
            "4MiB",
            // The reader's cache, and the prefetch with its buffer (32 + 32 MiB), hold
            // well under the data: the epoch streams it from the peers.
            "--cache",
            "16MiB",
            "--prefetch",
            "32MiB",
        ];
        let run = |source: &[&str], out: &Path| -> Result<TrainRun> {
            let mut args: Vec<&str> = vec!["train"];
            args.extend_from_slice(source);
            args.extend_from_slice(&common);
            args.extend(["--metrics-out", out.to_str().context("UTF-8")?]);
            cairn(&args, &env)?;
            train_run(out)
        };
        let local_src = src.to_str().context("UTF-8")?;
        let pair = |tag: &str| -> Result<(TrainRun, TrainRun)> {
            let local = run(
                &["--local", local_src],
                &root.join(format!("train-local-{tag}.json")),
            )?;
            let streamed = run(
                &["--dataset", "bench/train"],
                &root.join(format!("train-net-{tag}.json")),
            )?;
            Ok((local, streamed))
        };
        // On this machine the node processes share the trainer's cores; on a real network
        // they are other machines. Both are measured: everything sharing every core, and
        // the nodes held to core 0 with the trainer (local and streamed alike) on the
        // others.
        let shared = pair("shared")?;
        let split = if cores() >= 2 {
            let node_pids: Vec<u32> = n.net.nodes.iter().map(|x| x.pid).collect();
            pin_all(&node_pids, &[0]);
            let rest: Vec<usize> = (1..cores()).collect();
            pin_all(&[std::process::id()], &rest);
            let r = pair("split");
            let all: Vec<usize> = (0..cores()).collect();
            pin_all(&node_pids, &all);
            pin_all(&[std::process::id()], &all);
            Some(r?)
        } else {
            None
        };
        for (what, (local, streamed)) in [
            ("all on shared cores", Some(shared)),
            ("nodes on core 0, trainer on the rest", split),
        ]
        .into_iter()
        .filter_map(|(w, p)| p.map(|p| (w, p)))
        {
            r.add(
                &format!("training streamed, {train_mib} MiB CSV, MLP; {what}"),
                (streamed.samples_per_sec, "1/s"),
                "the same training from local files",
                local.samples_per_sec,
                "goal >= 0.95",
            );
            r.add(
                &format!(
                    "  data-wait share ({:.0} MiB streamed)",
                    streamed.fetched as f64 / f64::from(1u32 << 20)
                ),
                (streamed.wait_fraction, "share"),
                "the local run's data-wait share",
                local.wait_fraction.max(1e-6),
                "lower is better",
            );
            r.add(
                "  test accuracy",
                (streamed.accuracy, ""),
                "the local run's test accuracy",
                local.accuracy,
                "1.000 = same model",
            );
        }
    }

    if let (true, Some(n)) = (parts.contains(&Part::Upkeep), &net) {
        upkeep(&mut r, n, pull_mbs, &rss_empty)?;
    }
    drop(net);
    r.total_secs = t_all.elapsed().as_secs_f64();
    std::fs::write(&a.json, serde_json::to_vec_pretty(&r)?)
        .with_context(|| format!("cannot write {}", a.json.display()))?;
    println!(
        "done in {:.0} s; figures written to {}",
        r.total_secs,
        a.json.display()
    );
    Ok(())
}

/// Audit cost per round, repair throughput and idle memory on the network `n`, which
/// holds the pushed data.
fn upkeep(r: &mut Results, n: &BenchNet, pull_mbs: Option<f64>, rss_empty: &[f64]) -> Result<()> {
    // Idle: the network has been quiet since the transfers (default upkeep timers).
    std::thread::sleep(Duration::from_secs(3));
    let held: u64 = n
        .net
        .nodes
        .iter()
        .filter_map(|x| fetch_status(&x.http).ok())
        .map(|s| s.info.bytes)
        .sum();
    let rss_idle: Vec<f64> = n.net.nodes.iter().map(|x| rss(x.pid) as f64).collect();
    r.add(
        &format!(
            "idle node memory (RSS, median of {}; {:.0} MiB held each)",
            n.net.nodes.len(),
            held as f64 / n.net.nodes.len() as f64 / f64::from(1u32 << 20)
        ),
        (median(rss_idle) / f64::from(1u32 << 20), "MiB"),
        "the same nodes before they held anything",
        median(rss_empty.to_vec()) / f64::from(1u32 << 20),
        "lower is better",
    );
    // Short timers from here: an audit round every 2 s or so, and repair of any loss.
    for i in 0..n.net.nodes.len() {
        network_cmd::stop_node(&n.dir, i)?;
        network_cmd::start_again(
            &n.dir,
            i,
            &[("--audit-secs", "2"), ("--repair-threshold", "6")],
        )?;
    }
    let net = network_cmd::read(&n.dir)?;
    let nodes = &net.nodes;
    // Let the nodes find each other and announce what they hold.
    std::thread::sleep(Duration::from_secs(8));
    // A node busy with a round may miss one status call: ask again before giving up.
    let status = |http: &str| {
        let mut tries = 0;
        loop {
            match fetch_status(http) {
                Ok(s) => return Ok(s),
                Err(e) if tries >= 3 => return Err(e),
                Err(_) => {
                    tries += 1;
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    };
    let snap = || -> Result<(u64, u64, u64, u64, f64, u64)> {
        let mut t = (0, 0, 0, 0, 0.0, 0);
        for nd in nodes {
            let s = status(&nd.http)?;
            t.0 += s.upkeep.audit_rounds;
            t.1 += s.upkeep.audits;
            t.2 += s.upkeep.audit_wire_bytes;
            t.3 += s.upkeep.proof_disk_bytes;
            t.4 += cpu_secs(nd.pid);
            t.5 += s.info.bytes;
        }
        Ok(t)
    };
    let window = Duration::from_secs(20);
    let a0 = snap()?;
    std::thread::sleep(window);
    let a1 = snap()?;
    let rounds = (a1.0 - a0.0).max(1) as f64;
    let held_per_node = a1.5 as f64 / nodes.len() as f64;
    // Baseline: re-hashing one node's held pieces from disk once, timed here.
    let files = piece_files(&nodes[1].data_dir);
    let t = Instant::now();
    let mut hashed = 0u64;
    for (_, p, _) in &files {
        let mut h = blake3::Hasher::new();
        let mut f = std::fs::File::open(p)?;
        hashed += std::io::copy(&mut f, &mut h)?;
    }
    let rehash = t.elapsed().as_secs_f64().max(1e-6) * held_per_node / hashed.max(1) as f64;
    let cpu_round = (a1.4 - a0.4) / rounds;
    r.add(
        &format!(
            "audit round: node CPU, all work ({:.0} challenges/round)",
            (a1.1 - a0.1) as f64 / rounds
        ),
        (cpu_round * 1e3, "ms"),
        "re-hashing the node's held bytes once",
        rehash * 1e3,
        "lower is better; an upper bound",
    );
    r.add(
        "audit round: bytes on the wire",
        ((a1.2 - a0.2) as f64 / rounds, "B"),
        "the node's held bytes",
        held_per_node,
        "lower is better",
    );
    r.add(
        "audit round: piece bytes read to answer",
        ((a1.3 - a0.3) as f64 / rounds, "B"),
        "the node's held bytes",
        held_per_node,
        "lower is better",
    );

    // Repair: kill a node; time until every piece it held is whole elsewhere.
    let victim = 2;
    let lost = piece_files(&nodes[victim].data_dir);
    let lost_bytes: u64 = lost.iter().map(|(_, _, l)| l).sum();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(nodes[victim].pid)?),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    let t = Instant::now();
    loop {
        let have: std::collections::HashSet<String> = nodes
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != victim)
            .flat_map(|(_, x)| piece_files(&x.data_dir))
            .map(|(id, _, _)| id)
            .collect();
        if lost.iter().all(|(id, _, _)| have.contains(id)) {
            break;
        }
        let limit = Duration::from_secs(if r.quick { 180 } else { 600 });
        if t.elapsed() > limit {
            bail!(
                "repair did not finish in {} s; the node logs under {} say why",
                limit.as_secs(),
                n.dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = t.elapsed();
    if let Some(p) = pull_mbs {
        r.add(
            &format!(
                "repair after a node is lost ({:.0} MiB rebuilt, from the kill)",
                lost_bytes as f64 / f64::from(1u32 << 20)
            ),
            (mbs(lost_bytes, took), "MB/s"),
            "the pull's MB/s",
            p,
            "higher is better; 1/k = 0.25 is the ceiling",
        );
    }
    Ok(())
}

/// A line about this machine: CPU model and cores.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpu}, {} cores", cores())
}
