//! `cairn demo`: the main job on this machine, narrated. A local network of real node
//! processes; a real dataset pushed, placed, audited; a piece corrupted on disk and a
//! node killed; the audits catching it and repair restoring full redundancy; a model
//! trained from shards streamed from the surviving peers, beside the same run on local
//! files; the dataset's HTTP URL.
//!
//! Everything lives in one work directory (a temporary one unless `--dir`), and the
//! nodes are stopped and the directory removed at the end, on an error, and on Ctrl-C.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use storage_node::{
    DatasetName, ErasureParams, PublisherKey,
    net::{Client, identity::load_or_create_secret},
};
use trainer::{
    model::ModelKind,
    train::{DeviceKind, Format, Report, Task, TestSplit, TrainConfig},
};

use crate::{
    WorkDir,
    dataset_cmd::{PlacementReport, placement_report, push_dir},
    network_cmd::{self, Network, UpArgs},
    node_cmd::fetch_status,
    train_cmd::{epoch_bar, train_local, train_network},
    ui::{self, human},
};

/// The dataset the demo publishes: Fisher's iris flowers, as the crate `linfa-datasets`
/// ships them (see `data/iris/README.md`), built into the binary so the demo needs nothing
/// but itself.
const IRIS_CSV: &str = include_str!("../data/iris/iris.csv");
const IRIS_CARD: &str = include_str!("../data/iris/README.md");
const DATASET: &str = "uci/iris";
const LICENSE: &str = "CC-BY-4.0";
/// Small pieces, so a 2.7 KB table spans several stripes and the placement shows.
const BLOCK: u32 = 256;
/// How long any one step may take before the demo gives up with an error.
const STEP_LIMIT: Duration = Duration::from_secs(90);

#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Keep the network's data, logs and the dataset under DIR (default: a temporary
    /// directory, removed at the end).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Leave the network running at the end, until Ctrl-C.
    #[arg(long)]
    keep: bool,
    /// Storage nodes to start.
    #[arg(long, default_value_t = 6)]
    nodes: usize,
    /// Data pieces per stripe.
    #[arg(long, default_value_t = 4)]
    k: u16,
    /// Parity pieces per stripe: this many nodes may vanish.
    #[arg(long, default_value_t = 2)]
    m: u16,
    /// Seed of the training run and of which piece and node are hit.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Training epochs.
    #[arg(long, default_value_t = 30)]
    epochs: u64,
}

/// Stops the network in `net_dir` and removes a temporary work dir: on drop, and from the
/// signal thread on Ctrl-C.
#[derive(Debug, Clone)]
struct Cleanup {
    net_dir: PathBuf,
    temp: Option<PathBuf>,
    done: Arc<Mutex<bool>>,
}

impl Cleanup {
    fn run(&self) {
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        if *done {
            return;
        }
        *done = true;
        if let Ok(net) = network_cmd::read(&self.net_dir) {
            network_cmd::down_nodes(&net);
        }
        if let Some(t) = &self.temp {
            std::fs::remove_dir_all(t).ok();
        }
    }

    /// Cleans up and exits on SIGINT or SIGTERM.
    fn on_signal(&self) -> Result<()> {
        let me = self.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("demo-signals".into())
            .spawn(move || {
                rt.block_on(async {
                    let mut term =
                        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                            .ok();
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        Some(()) = async { match term.as_mut() { Some(t) => t.recv().await, None => std::future::pending().await } } => {}
                    }
                });
                eprintln!("\ninterrupted: stopping the nodes and removing what the demo made");
                me.run();
                std::process::exit(130);
            })?;
        Ok(())
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.run();
    }
}

/// Prints one step's heading.
fn step(n: usize, what: &str, line: impl std::fmt::Display) {
    println!("[{n}/8] {what:<10} {line}");
}

/// Continues a step with an indented line.
fn more(line: impl std::fmt::Display) {
    println!("{:17}{line}", "");
}

/// A spinner on stderr while waiting (drawn only on a terminal).
fn spinner(msg: &str) -> ProgressBar {
    let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    b.set_style(
        ProgressStyle::with_template("  {spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    b.set_message(msg.to_string());
    b.enable_steady_tick(Duration::from_millis(120));
    b
}

/// Polls `f` until it returns `Some`, for at most [`STEP_LIMIT`]. An error is taken as
/// "not yet" (a node busy with repair may miss one status call); the last one is reported
/// if the step runs out of time.
fn wait_until<T>(what: &str, mut f: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let bar = spinner(what);
    let t0 = Instant::now();
    let mut last_err = None;
    loop {
        match f() {
            Ok(Some(v)) => {
                bar.finish_and_clear();
                return Ok(v);
            }
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if t0.elapsed() > STEP_LIMIT {
            bar.finish_and_clear();
            let why = last_err.map_or(String::new(), |e| format!(" (last error: {e:#})"));
            bail!(
                "gave up after {} s waiting until {what}{why}; the node logs in the network dir say why",
                STEP_LIMIT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn short(peer: &str) -> &str {
    &peer[peer.len().saturating_sub(6)..]
}

/// The node index (in `net`) of each peer id.
fn index_of(net: &Network, peer: &str) -> Option<usize> {
    net.nodes
        .iter()
        .position(|n| n.peer.rsplit('/').next() == Some(peer))
}

/// Prints the placement as a grid: a row per stripe, a column per node, the piece index
/// each node holds.
fn print_placement(net: &Network, p: &PlacementReport, down: &[usize]) {
    let mut head = format!("{:<16}", "stripe");
    for i in 0..net.nodes.len() {
        head.push_str(&format!(
            "{:>7}",
            if down.contains(&i) {
                format!("({i})")
            } else {
                format!("node{i}")
            }
        ));
    }
    more(format!("{head}   spread"));
    for s in &p.placement {
        let mut row = format!("{:<16}", format!("{} #{}", s.file, s.stripe));
        for i in 0..net.nodes.len() {
            let held: Vec<String> = s
                .holders
                .iter()
                .enumerate()
                .filter(|(_, hs)| hs.iter().any(|h| index_of(net, h) == Some(i)))
                .map(|(piece, _)| format!("p{piece}"))
                .collect();
            row.push_str(&format!(
                "{:>7}",
                if held.is_empty() {
                    "·".to_string()
                } else {
                    held.join("+")
                }
            ));
        }
        more(format!("{row}   {}/{}", s.spread, p.n));
    }
}

/// Writes the embedded dataset into `dir`.
fn write_dataset(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("iris.csv"), IRIS_CSV)?;
    std::fs::write(dir.join("README.md"), IRIS_CARD)?;
    Ok(())
}

fn train_config(a: &DemoArgs) -> TrainConfig {
    TrainConfig {
        format: Format::Csv {
            label: "species".into(),
            skip_bad_rows: false,
        },
        task: Task::Classify,
        model: ModelKind::Mlp,
        epochs: a.epochs,
        batch_size: 16,
        lr: 0.01,
        seed: a.seed,
        test: TestSplit::Fraction(0.2),
        rank: 0,
        world: 1,
        shuffle_window: 64,
        // A stripe of this push (k pieces of BLOCK bytes): each block of samples is one
        // stripe, fetched once an epoch.
        block_bytes: u64::from(a.k) * u64::from(BLOCK),
        prefetch_bytes: 64 << 10,
        checkpoint_dir: None,
        checkpoint_every: 1000,
        resume: false,
        stop_after_batches: None,
        record_order: true,
        device: DeviceKind::Cpu,
    }
}

fn accuracy(r: &Report) -> f64 {
    r.epochs
        .last()
        .and_then(|e| e.test_accuracy)
        .unwrap_or(f64::NAN)
}

/// Flips one byte in the middle of the piece file `id` under `data_dir`.
fn corrupt_piece(data_dir: &Path, id: &str) -> Result<PathBuf> {
    let mut stack = vec![data_dir.join("pieces")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)
            .with_context(|| format!("cannot list {}", d.display()))?
            .flatten()
        {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if e.file_name().to_string_lossy() == id {
                let mut b = std::fs::read(&p)?;
                if b.is_empty() {
                    bail!("piece file {} is empty", p.display());
                }
                let at = b.len() / 2;
                b[at] ^= 0x5a;
                std::fs::write(&p, &b)?;
                return Ok(p);
            }
        }
    }
    bail!("no file for piece {id} under {}", data_dir.display())
}

pub(crate) fn run(a: DemoArgs) -> Result<()> {
    let n = u16::try_from(a.nodes).unwrap_or(u16::MAX);
    if n < a.k + a.m {
        bail!(
            "--nodes {} is too few: a stripe's k+m = {} pieces go to distinct nodes",
            a.nodes,
            a.k + a.m
        );
    }
    if a.nodes < 3 {
        bail!("--nodes {} is too few: the demo needs at least 3", a.nodes);
    }
    let params = ErasureParams::new(a.k, a.m, BLOCK).context("invalid --k/--m")?;
    let t_all = Instant::now();
    let work = WorkDir::new(a.dir.clone())?;
    let root = work.path().canonicalize()?;
    let net_dir = root.join("net");
    let cleanup = Cleanup {
        net_dir: net_dir.clone(),
        temp: matches!(work, WorkDir::Temp(_)).then(|| root.clone()),
        done: Arc::default(),
    };
    cleanup.on_signal()?;
    println!(
        "cairn demo: a storage network on this machine, end to end (work dir {})\n",
        root.display()
    );

    // 1. The network.
    let t = Instant::now();
    let net = network_cmd::start(&UpArgs {
        announce_secs: 5,
        // Short timers, for a demo: an audit round about every second, a scrub pass every
        // 30 s (so the audits, not the scrub, find the damage), and repair of any loss.
        audit_secs: Some(1.0),
        scrub_secs: Some(30.0),
        repair_threshold: Some(params.n()),
        ..UpArgs::new(a.nodes, net_dir.clone())
    })?;
    step(
        1,
        "network",
        format!(
            "{} node processes on 127.0.0.1, each with its own rocksdb and identity ({:.1} s)",
            net.nodes.len(),
            t.elapsed().as_secs_f64()
        ),
    );
    for (i, nd) in net.nodes.iter().enumerate() {
        more(format!(
            "node{i}  pid {:<7} {}  peer ..{}",
            nd.pid,
            nd.http,
            short(&nd.peer)
        ));
    }

    // 2. The dataset.
    let data_dir = root.join("dataset").join("iris");
    write_dataset(&data_dir)?;
    let rt = ui::runtime()?;
    let boot = ui::peer_addr(&net.nodes[0].peer)?;
    let client = rt
        .block_on(Client::connect(boot.clone()))
        .context("cannot reach the demo network")?;
    let key = PublisherKey::from_secret_bytes(&load_or_create_secret(&root.join("publisher.key"))?);
    let name: DatasetName = DATASET.parse()?;
    let t = Instant::now();
    let pushed = rt.block_on(push_dir(&client, &data_dir, &name, params, LICENSE, &key))?;
    let push_secs = t.elapsed().as_secs_f64();
    let m = pushed.manifest;
    step(
        2,
        "push",
        format!(
            "{DATASET}: Fisher's iris flowers, 150 samples ({LICENSE}; as the crate linfa-datasets ships them)"
        ),
    );
    more(format!(
        "published {}@{}: {} files, {}, cut into stripes of k={} pieces + m={} parity ({} pieces, {:.2} s)",
        name,
        &m.version().to_string()[..16],
        m.files().len(),
        human(m.total_size()),
        a.k,
        a.m,
        pushed.pieces,
        push_secs
    ));

    // 3. Placement. Every piece is held once the push returns; the nodes' announcements of
    // what they hold reach the node the demo asks a moment later.
    let p0 = wait_until("every holder has announced its pieces", || {
        let p = rt.block_on(placement_report(&client, &m))?;
        Ok((p.full == p.stripes).then_some(p))
    })?;
    step(
        3,
        "placement",
        format!(
            "{} stripes, each piece on a different node: any {} nodes may vanish",
            p0.stripes, p0.tolerates
        ),
    );
    print_placement(&net, &p0, &[]);

    // 4. An audit round that every node passes.
    let t = Instant::now();
    let audited = wait_until("every node has passed an audit", || {
        let rows = network_cmd::rows(&net);
        if rows.iter().any(|r| !r.up) {
            // A node that did not answer this time is asked again, not left out.
            return Ok(None);
        }
        let holders: Vec<_> = rows.iter().filter(|r| r.pieces > 0).collect();
        // Done once every holder passed, or as soon as any failed (checked below: an
        // error inside the wait would only be retried).
        let failed = holders.iter().any(|r| r.fails > 0);
        Ok((failed || holders.iter().all(|r| r.passes > 0)).then_some(rows))
    })?;
    if audited.iter().any(|r| r.pieces > 0 && r.fails > 0) {
        bail!("an honest node failed an audit: {audited:?}");
    }
    step(
        4,
        "audit",
        format!(
            "every holder was challenged by its peers and answered with Merkle proofs that verify against the manifest ({:.1} s)",
            t.elapsed().as_secs_f64()
        ),
    );
    more(format!(
        "{:<6} {:>7} {:>8} {:>7} {:>11}",
        "node", "pieces", "passed", "failed", "reputation"
    ));
    for r in &audited {
        more(format!(
            "node{:<2} {:>7} {:>8} {:>7} {:>11}",
            r.node,
            r.pieces,
            r.passes,
            r.fails,
            r.reputation.map_or("-".into(), |s| format!("{s:.2}"))
        ));
    }

    // 5. Damage: a flipped byte in a piece on one node, and another node killed.
    let mut rng = a.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut pick = |below: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % below as u64) as usize
    };
    // Node 0 is the way in for the demo's own client: spare it.
    let bad = 1 + pick(a.nodes - 1);
    let victim = {
        let mut v = 1 + pick(a.nodes - 2);
        if v >= bad {
            v += 1;
        }
        v
    };
    let bad_peer = net.nodes[bad]
        .peer
        .rsplit('/')
        .next()
        .unwrap_or("")
        .to_string();
    let (row, piece) = p0
        .placement
        .iter()
        .find_map(|s| {
            s.holders
                .iter()
                .position(|hs| hs.contains(&bad_peer))
                .map(|i| (s, i))
        })
        .context("the corrupted node holds no piece")?;
    let piece_id = row.pieces[piece].clone();
    let where_ = format!("{} #{} piece {piece}", row.file, row.stripe);
    corrupt_piece(&net.nodes[bad].data_dir, &piece_id)?;
    let fails_before = audited.iter().map(|r| r.fails).sum::<u64>();
    let victim_pid = net.nodes[victim].pid;
    let victim_pieces = audited[victim].pieces;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(victim_pid)?),
        nix::sys::signal::Signal::SIGKILL,
    )
    .with_context(|| format!("cannot kill node {victim}"))?;
    let t_damage = Instant::now();
    let rebuilt_before: u64 = net
        .nodes
        .iter()
        .filter_map(|nd| fetch_status(&nd.http).ok())
        .map(|s| s.upkeep.pieces_rebuilt)
        .sum();
    step(
        5,
        "damage",
        format!(
            "flipped one byte of {where_} on node{bad}'s disk, and killed node{victim} (SIGKILL, pid {victim_pid}, {victim_pieces} pieces)"
        ),
    );

    // 6. The audits catch it; a replacement node joins; repair restores full redundancy.
    let found = wait_until("the audits find the corrupt piece", || {
        let s = fetch_status(&net.nodes[bad].http)?;
        Ok((s.upkeep.corrupt_dropped > 0).then_some(()))
    })
    .map(|()| t_damage.elapsed())?;
    let fails_after = network_cmd::rows(&network_cmd::read(&net_dir)?)
        .iter()
        .map(|r| r.fails)
        .sum::<u64>();
    let failed_audits = fails_after.saturating_sub(fails_before);
    let how = if failed_audits > 0 {
        "when an audit challenged it"
    } else {
        "by its scrub"
    };
    step(
        6,
        "repair",
        format!(
            "node{bad} found its copy of {where_} corrupt {how}, deleted it, and never served it ({:.1} s; {failed_audits} failed audit(s) recorded)",
            found.as_secs_f64(),
        ),
    );
    let t = Instant::now();
    let added = network_cmd::add(&net_dir)?;
    let net = network_cmd::read(&net_dir)?;
    more(format!(
        "node{added} joins in place of node{victim} ({:.1} s)",
        t.elapsed().as_secs_f64()
    ));
    // Healed: the network places every piece on a distinct node again, and the
    // repairers account for every lost piece (the killed node's and the corrupt one).
    let lost = victim_pieces + 1;
    let count = || -> u64 {
        net.nodes
            .iter()
            .filter_map(|nd| fetch_status(&nd.http).ok())
            .map(|s| s.upkeep.pieces_rebuilt)
            .sum::<u64>()
            .saturating_sub(rebuilt_before)
    };
    let (healed, rebuilt) = wait_until("every stripe is back on k+m distinct nodes", || {
        let p = rt.block_on(placement_report(&client, &m))?;
        let rebuilt = count();
        Ok(
            (p.tolerates == i64::from(a.m) && p.full == p.stripes && rebuilt >= lost)
                .then_some((p, rebuilt)),
        )
    })?;
    let repaired = t_damage.elapsed();
    more(format!(
        "{rebuilt} pieces rebuilt from k={} survivors each and placed on nodes holding none of their stripe; every stripe again survives any {} losses ({:.1} s after the damage)",
        a.k,
        a.m,
        repaired.as_secs_f64()
    ));
    print_placement(&net, &healed, &[victim]);

    // 7. Training from the surviving peers, and the same run from local files.
    let cfg = train_config(&a);
    let t = Instant::now();
    let (streamed, what, stats) =
        train_network(&cfg, boot.clone(), DATASET, 64 << 20, None, epoch_bar())?;
    let net_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let local = train_local(&cfg, &data_dir, epoch_bar())?;
    let local_secs = t.elapsed().as_secs_f64();
    let same = streamed.seen == local.seen
        && streamed
            .epochs
            .iter()
            .zip(&local.epochs)
            .all(|(x, y)| x.train_loss.to_bits() == y.train_loss.to_bits());
    step(
        7,
        "train",
        format!(
            "an MLP on {} for {} epochs, {} train / {} test samples (burn, CPU)",
            &what[..what.find('@').map_or(what.len(), |i| i + 9)],
            a.epochs,
            streamed.train_samples,
            streamed.test_samples
        ),
    );
    more(format!(
        "streamed from the peers: test accuracy {:.4}  ({:.1} s; {} pieces fetched and verified, {} fetches routed around)",
        accuracy(&streamed),
        net_secs,
        stats.pieces,
        stats.failed_fetches
    ));
    more(format!(
        "from local files:        test accuracy {:.4}  ({:.1} s)",
        accuracy(&local),
        local_secs
    ));
    more(if same {
        "the same samples in the same order and the same losses, bit for bit".to_string()
    } else {
        "the two runs differ (a bug: they should be identical)".to_string()
    });
    if !same {
        bail!("streamed and local training saw different data");
    }

    // 8. HTTP.
    let http = &net.nodes[0].http;
    let url = format!("{http}/v1/datasets/{DATASET}/resolve/latest/iris.csv");
    let got = ureq::get(&url)
        .call()
        .with_context(|| format!("GET {url}"))?
        .body_mut()
        .read_to_string()
        .with_context(|| format!("GET {url}"))?;
    if got != IRIS_CSV {
        bail!("GET {url} did not return the published file");
    }
    step(
        8,
        "http",
        format!("{url}   (any node serves it; curl, fsspec, DuckDB, browsers)"),
    );
    more(format!(
        "{http}/   the web page: datasets, cards, files, nodes"
    ));

    println!("\nsummary");
    let rows = [
        (
            "network",
            format!(
                "{} nodes, k={} m={}, {} stripes x {} pieces",
                a.nodes, a.k, a.m, p0.stripes, p0.n
            ),
        ),
        (
            "push",
            format!(
                "{} in {} files, {} pieces placed, {:.2} s",
                human(m.total_size()),
                m.files().len(),
                pushed.pieces,
                push_secs
            ),
        ),
        (
            "audit",
            format!(
                "every one of {} holders passed",
                audited.iter().filter(|r| r.pieces > 0).count()
            ),
        ),
        (
            "damage",
            format!("1 corrupt piece (node{bad}), 1 node killed (node{victim})"),
        ),
        (
            "detected",
            format!("the corrupt piece in {:.1} s, {how}", found.as_secs_f64()),
        ),
        (
            "repaired",
            format!(
                "{rebuilt} pieces, full redundancy ({} losses tolerated) {:.1} s after the damage",
                a.m,
                repaired.as_secs_f64()
            ),
        ),
        (
            "trained",
            format!(
                "test accuracy {:.4} streamed, {:.4} local: {}",
                accuracy(&streamed),
                accuracy(&local),
                if same { "identical runs" } else { "different" }
            ),
        ),
        ("served", url.clone()),
        ("total", format!("{:.1} s", t_all.elapsed().as_secs_f64())),
    ];
    for (k, v) in rows {
        println!("  {k:<10} {v}");
    }
    rt.block_on(client.shutdown());
    if a.keep {
        println!(
            "\nthe network keeps running (node logs and data in {}); press Ctrl-C to stop it",
            net_dir.display()
        );
        loop {
            std::thread::park();
        }
    }
    cleanup.run();
    println!("\nstopped the nodes and removed what the demo made");
    Ok(())
}
