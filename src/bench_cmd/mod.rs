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
//! | audit challenge (s = 32), bytes read from disk | the piece's size |
//! | repair, MB/s written | the pull's MB/s |
//! | idle node memory (RSS) | the same nodes' RSS before they held anything |
//! | Reed-Solomon encode, BLAKE3 | memcpy of the same buffer |
//! | per-node connections, RSS, control traffic, table sizes at N nodes (`--only scale`) | the same at the smallest size |
//! | rounds of read after write on the largest of those networks | the rounds run |
//!
//! `baselines.rs` has the local copy and the static server, `procfs.rs` what `/proc` says,
//! `kernels.rs` the kernels alone, `upkeep.rs` audits and repair, `scale.rs` networks of
//! growing size, `read_after_write.rs` reads the moment a push returns.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde::Serialize;

mod baselines;
mod kernels;
mod procfs;
mod read_after_write;
mod scale;
mod upkeep;

use baselines::{copy_dir, download, static_server};
use kernels::kernels;
use procfs::{cores, cpu_secs, machine, pin_all, rss};
use upkeep::upkeep;

use crate::network_cmd::{self, Network, UpArgs};

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
    /// Run only these parts (comma-separated): transfer, train, upkeep, kernels, scale.
    /// Without it, every part but scale runs.
    #[arg(long, value_delimiter = ',')]
    only: Vec<Part>,
    /// Network sizes the scale part runs (default 10,30,100).
    #[arg(long, value_delimiter = ',', default_values_t = [10, 30, 100])]
    scale_nodes: Vec<usize>,
    /// MiB of data per node the scale part pushes at every size.
    #[arg(long, default_value_t = 2)]
    scale_mib: u64,
    /// Rounds of read after write on the scale part's largest network (push, then at
    /// once an HTTP range, a training run and a pull, each through another node).
    #[arg(long, default_value_t = 20)]
    scale_rounds: usize,
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
    /// Per-node costs on networks of growing size, the largest against the smallest.
    Scale,
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
    /// The scale part's per-size rows.
    scale: Vec<scale::ScaleRow>,
    /// The scale part's rounds of read after write on its largest network.
    read_after_write: Option<read_after_write::ReadAfterWrite>,
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
    push_with(src, name, &[], envs)
}

/// [`push`] with more arguments.
fn push_with(src: &str, name: &str, more: &[&str], envs: &[(&str, &str)]) -> Result<Duration> {
    let (k, m) = (K.to_string(), M.to_string());
    let mut args = vec!["dataset", "push", src, "--name", name, "--k", &k, "--m", &m];
    args.extend_from_slice(more);
    cairn(&args, envs)
}

/// What a `cairn` client run by the bench is given: the node it enters the network
/// through, and its own config dir.
fn client_env<'a>(peer: &'a str, config: &'a str) -> [(&'static str, &'a str); 2] {
    [("CAIRN_PEER", peer), ("CAIRN_CONFIG_DIR", config)]
}

fn mbs(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64().max(1e-9) / 1e6
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

/// Writes `mib` MiB of CSV with known structure in [`FILES`] files: see [`write_csv`].
fn generate_csv(dir: &Path, mib: u64) -> Result<u64> {
    std::fs::create_dir_all(dir)?;
    let mut next = xorshift(0x2545_F491_4F6C_DD1D);
    let per_file = (mib << 20) / FILES as u64;
    let mut rows = 0;
    for f in 0..FILES {
        rows += write_csv(&dir.join(format!("part-{f:02}.csv")), &mut next, per_file)?;
    }
    Ok(rows)
}

/// A uniform draw in [0, 1) from a xorshift generator seeded with `x` (not 0).
fn xorshift(mut x: u64) -> impl FnMut() -> f64 {
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Writes rows of CSV to `path` until at least `bytes`: 16 uniform features and a label
/// that is the quadrant of two fixed linear combinations of them (4 classes). Returns the
/// rows written.
fn write_csv(path: &Path, next: &mut impl FnMut() -> f64, bytes: u64) -> Result<u64> {
    const FEATURES: usize = 16;
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut header: Vec<String> = (0..FEATURES).map(|i| format!("f{i}")).collect();
    header.push("label".into());
    writeln!(w, "{}", header.join(","))?;
    let (mut written, mut rows) = (0u64, 0);
    let mut line = String::new();
    while written < bytes {
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
    Ok(rows)
}

/// `cairn train` arguments for one epoch over the CSV of [`write_csv`].
const CSV_EPOCH: [&str; 8] = [
    "--format", "csv", "--label", "label", "--task", "classify", "--epochs", "1",
];

/// One training run's figures from its `--metrics-out`.
struct TrainRun {
    samples_per_sec: f64,
    wait_fraction: f64,
    accuracy: f64,
    fetched: u64,
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
    let nodes = if parts.iter().all(|p| *p == Part::Scale) {
        "networks of growing size".to_string()
    } else {
        format!("{NODES} node processes")
    };
    println!(
        "cairn bench{}: {nodes} on 127.0.0.1, k={K} m={M}; {}; work dir {}",
        if a.quick { " --quick" } else { "" },
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
    // Then the scale part's own networks, one at a time, before the main one starts.
    if parts.contains(&Part::Scale) {
        let mut sizes = a.scale_nodes.clone();
        sizes.sort_unstable();
        sizes.dedup();
        if sizes.first().is_some_and(|&n| n < usize::from(K + M)) {
            bail!(
                "the scale part needs at least {} nodes per network (k+m)",
                K + M
            );
        }
        r.scale = scale::scale(&mut r, &root, &sizes, a.scale_mib.max(1), a.scale_rounds)?;
    }
    let needs_net = parts
        .iter()
        .any(|p| !matches!(p, Part::Kernels | Part::Scale));
    let net = if needs_net {
        let dir = root.join("net");
        // The nodes' default upkeep (a round every 10 minutes or so) while transfers and
        // training are measured; the upkeep part restarts them with short timers.
        let net = network_cmd::start(&UpArgs {
            announce_secs: 10,
            ..UpArgs::new(NODES, dir.clone())
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
    let env = client_env(&peer, cfg.to_str().context("work dir is not UTF-8")?);
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
        let common: Vec<&str> = CSV_EPOCH
            .into_iter()
            .chain([
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
            ])
            .collect();
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
