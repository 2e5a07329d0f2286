//! `cairn network up|down|status|restart`: a local network of node processes.

use std::{
    net::{Ipv4Addr, TcpListener, UdpSocket},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use nix::{sys::signal, unistd::Pid};
use serde::{Deserialize, Serialize};
use storage_node::net::NodeKey;

use storage_node::net::NodeStatus;

use crate::{
    node_cmd::fetch_status,
    ui::{Size, human},
};

/// The file `network up` writes and the other commands read.
pub(crate) const NETWORK_FILE: &str = "network.json";

/// `DIR/network.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Network {
    pub(crate) nodes: Vec<NodeEntry>,
}

/// One node of a local network.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct NodeEntry {
    /// The address `--peer` accepts.
    pub(crate) peer: String,
    /// HTTP base URL.
    pub(crate) http: String,
    /// Data directory.
    pub(crate) data_dir: PathBuf,
    /// Process id.
    pub(crate) pid: u32,
    /// Its log file.
    pub(crate) log: PathBuf,
    /// The arguments it was started with (after the program name).
    pub(crate) args: Vec<String>,
}

/// Seconds between full piece announcements on a local network's nodes, by default.
const ANNOUNCE_SECS: u64 = 30;
/// How long `network up` waits for its nodes to see each other, by default.
const UP_TIMEOUT_SECS: u64 = 60;

#[derive(Debug, clap::Args)]
pub(crate) struct UpArgs {
    /// How many nodes.
    #[arg(long, default_value_t = 6)]
    pub(crate) nodes: usize,
    /// Where the nodes' data dirs, logs and network.json go.
    #[arg(long)]
    pub(crate) dir: PathBuf,
    /// First port: node i listens on base+2i (TCP and UDP) and serves HTTP on base+2i+1.
    /// Default: free ports picked at random.
    #[arg(long)]
    pub(crate) base_port: Option<u16>,
    /// Capacity of each node, e.g. 10GiB.
    #[arg(long)]
    pub(crate) capacity: Option<Size>,
    /// Seconds between full piece announcements.
    #[arg(long, default_value_t = ANNOUNCE_SECS)]
    pub(crate) announce_secs: u64,
    /// How long to wait for the nodes to see each other.
    #[arg(long, default_value_t = UP_TIMEOUT_SECS)]
    pub(crate) timeout_secs: u64,
    /// Mean seconds between audit rounds on every node (the node's default if unset).
    #[arg(long)]
    pub(crate) audit_secs: Option<f64>,
    /// Seconds between scrub passes on every node.
    #[arg(long)]
    pub(crate) scrub_secs: Option<f64>,
    /// Repair threshold on every node.
    #[arg(long)]
    pub(crate) repair_threshold: Option<usize>,
    /// Largest HTTP push body on every node, e.g. 1GiB.
    #[arg(long, value_name = "SIZE")]
    pub(crate) http_max_body: Option<Size>,
    /// Holder-table entries on every node (the node's default if unset).
    #[arg(long)]
    pub(crate) holder_entries: Option<usize>,
    /// How many operators the nodes declare, taken in turn (`op0`, `op1`, ...): no two
    /// pieces of a stripe go to one operator. Default: a label of its own per node.
    #[arg(long)]
    pub(crate) operators: Option<usize>,
}

impl UpArgs {
    /// `nodes` nodes in `dir`, everything else as `network up` has it by default.
    pub(crate) fn new(nodes: usize, dir: PathBuf) -> Self {
        Self {
            nodes,
            dir,
            base_port: None,
            capacity: None,
            announce_secs: ANNOUNCE_SECS,
            timeout_secs: UP_TIMEOUT_SECS,
            audit_secs: None,
            scrub_secs: None,
            repair_threshold: None,
            http_max_body: None,
            holder_entries: None,
            operators: None,
        }
    }
}

/// `n` ports free on 127.0.0.1 for both TCP and UDP (a node's data plane takes its libp2p
/// port over UDP too). They are drawn at random from below the kernel's ephemeral range
/// (32768 and up on Linux): a port the kernel handed out is released before its node binds
/// it, and in that gap any outgoing connection on the machine may take it again, which a
/// port outside that range does not risk.
fn free_ports(n: usize) -> Result<Vec<u16>> {
    use std::hash::{BuildHasher, Hasher};
    const LOW: u64 = 20_000;
    const SPAN: u64 = 12_000;
    let mut out: Vec<u16> = Vec::new();
    let mut tries = 0;
    while out.len() < n {
        tries += 1;
        if tries > 100 * n + 1000 {
            bail!("no {n} free ports between {LOW} and {}", LOW + SPAN);
        }
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(tries);
        let port = (LOW + h.finish() % SPAN) as u16;
        if out.contains(&port) {
            continue;
        }
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, port));
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, port));
        if tcp.is_ok() && udp.is_ok() {
            out.push(port);
        }
    }
    Ok(out)
}

/// Held from choosing ports until the nodes given them have bound them, so that two
/// `network up` (or `add`) runs on one machine at once never pick the same free port: the
/// check that a port is free and the node's bind are otherwise two steps another run can
/// fall between. An advisory lock on a file in the temporary directory.
struct PortLock(std::fs::File);

impl PortLock {
    fn acquire() -> Result<Self> {
        let path = std::env::temp_dir().join("cairn-network-ports.lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        f.lock()
            .with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(Self(f))
    }
}

impl Drop for PortLock {
    fn drop(&mut self) {
        self.0.unlock().ok();
    }
}

/// Waits until each of `nodes` has bound its ports (it writes `node.json` in its fresh
/// data dir once it has) or exited, for at most `limit`.
fn wait_bound(nodes: &[NodeEntry], limit: Duration) {
    let deadline = Instant::now() + limit;
    for n in nodes {
        while !n.data_dir.join(crate::node_cmd::RUNNING_FILE).exists()
            && alive(n.pid)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn spawn(dir: &Path, args: &[String], log: &Path) -> Result<u32> {
    let exe = std::env::current_exe().context("cannot find the cairn executable")?;
    let out =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let err = out.try_clone()?;
    use std::os::unix::process::CommandExt;
    let child = Command::new(exe)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .env(
            "CAIRN_LOG",
            std::env::var("CAIRN_LOG").unwrap_or_else(|_| "info".into()),
        )
        // Its own process group: a Ctrl-C meant for `network up` does not reach the nodes.
        .process_group(0)
        .spawn()
        .context("cannot start a node process")?;
    Ok(child.id())
}

pub(crate) fn read(dir: &Path) -> Result<Network> {
    let p = dir.join(NETWORK_FILE);
    let bytes = std::fs::read(&p).with_context(|| {
        format!(
            "no network in {} (start one with `cairn network up --dir {}`)",
            dir.display(),
            dir.display()
        )
    })?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not a network file", p.display()))
}

fn write(dir: &Path, net: &Network) -> Result<()> {
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    serde_json::to_writer_pretty(&mut tmp, net)?;
    tmp.persist(dir.join(NETWORK_FILE))
        .map_err(|e| e.error)
        .context("cannot write network.json")?;
    Ok(())
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

pub(crate) fn up(a: UpArgs) -> Result<()> {
    let net = start(&a)?;
    let dir = a.dir.canonicalize()?;
    println!("{} nodes up in {}", a.nodes, dir.display());
    for (i, n) in net.nodes.iter().enumerate() {
        println!("  node {i}  pid {:<7} {}  {}", n.pid, n.http, n.peer);
    }
    println!("network file: {}", dir.join(NETWORK_FILE).display());
    println!("try: CAIRN_PEER={} cairn dataset ls", net.nodes[0].peer);
    Ok(())
}

/// Starts the network `a` describes and waits until every node has joined it ([`joined_with`]).
/// `DIR/network.json` lists each node as soon as it is started, so whoever stops the
/// network (also midway, on Ctrl-C) finds every process.
pub(crate) fn start(a: &UpArgs) -> Result<Network> {
    if a.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    if a.dir.join(NETWORK_FILE).exists() {
        bail!(
            "{} already holds a network; stop it with `cairn network down --dir {}`",
            a.dir.display(),
            a.dir.display()
        );
    }
    std::fs::create_dir_all(&a.dir)?;
    let dir = a.dir.canonicalize()?;
    let ports_lock = PortLock::acquire()?;
    let ports: Vec<(u16, u16)> = match a.base_port {
        Some(b) => (0..a.nodes)
            .map(|i| {
                let p = u32::from(b) + 2 * i as u32;
                u16::try_from(p + 1).map(|h| (p as u16, h))
            })
            .collect::<Result<_, _>>()
            .context("ports run past 65535; choose a lower --base-port")?,
        None => {
            let p = free_ports(2 * a.nodes)?;
            p.chunks(2).map(|c| (c[0], c[1])).collect()
        }
    };
    // Identities first, so every node's address is known before any starts.
    let mut entries = Vec::new();
    for (i, &(p, h)) in ports.iter().enumerate() {
        let data_dir = dir.join(format!("node-{i}"));
        std::fs::create_dir_all(&data_dir)?;
        let key = NodeKey::load_or_create(&data_dir)?;
        entries.push(NodeEntry {
            peer: format!("/ip4/127.0.0.1/tcp/{p}/p2p/{}", key.peer_id()),
            http: format!("http://127.0.0.1:{h}"),
            log: data_dir.join("node.log"),
            data_dir,
            pid: 0,
            args: Vec::new(),
        });
    }
    for i in 0..entries.len() {
        let (p, h) = ports[i];
        // A marker left by a killed earlier run would make `wait_bound` think this node
        // had bound its ports already.
        std::fs::remove_file(entries[i].data_dir.join(crate::node_cmd::RUNNING_FILE)).ok();
        let mut args: Vec<String> = vec![
            "node".into(),
            "run".into(),
            "--data-dir".into(),
            entries[i].data_dir.display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{p}"),
            "--http".into(),
            format!("127.0.0.1:{h}"),
            "--no-mdns".into(),
            "--announce-secs".into(),
            a.announce_secs.to_string(),
        ];
        // Everyone joins through node 0; node 0 through node 1, so it finds the others
        // again after a restart.
        let boot = if i == 0 { 1 } else { 0 };
        if boot < entries.len() && boot != i {
            args.extend(["--peer".into(), entries[boot].peer.clone()]);
        }
        if let Some(c) = a.capacity {
            args.extend(["--capacity".into(), c.0.to_string()]);
        }
        if let Some(s) = a.audit_secs {
            args.extend(["--audit-secs".into(), s.to_string()]);
        }
        if let Some(s) = a.scrub_secs {
            args.extend(["--scrub-secs".into(), s.to_string()]);
        }
        if let Some(t) = a.repair_threshold {
            args.extend(["--repair-threshold".into(), t.to_string()]);
        }
        if let Some(b) = a.http_max_body {
            args.extend(["--http-max-body".into(), b.0.to_string()]);
        }
        if let Some(n) = a.holder_entries {
            args.extend(["--holder-entries".into(), n.to_string()]);
        }
        // On loopback, nodes are told apart by operator alone.
        let operators = a.operators.unwrap_or(a.nodes).max(1);
        args.extend(["--operator".into(), format!("op{}", i % operators)]);
        let started = spawn(&dir, &args, &entries[i].log).and_then(|pid| {
            entries[i].pid = pid;
            entries[i].args = args;
            write(
                &dir,
                &Network {
                    nodes: entries[..=i].to_vec(),
                },
            )
        });
        if let Err(e) = started {
            // Leave nothing running that no network.json describes.
            down_nodes(&Network {
                nodes: entries[..=i].to_vec(),
            });
            std::fs::remove_file(dir.join(NETWORK_FILE)).ok();
            return Err(e);
        }
    }
    let net = Network { nodes: entries };
    wait_bound(&net.nodes, Duration::from_secs(30));
    drop(ports_lock);
    // Wait until every node answers and has joined: the bootstrap node, which every
    // node dials first, knows all the others, and each other node knows enough peers.
    let deadline = Instant::now() + Duration::from_secs(a.timeout_secs);
    for (i, n) in net.nodes.iter().enumerate() {
        let want = joined_with(i, a.nodes - 1);
        loop {
            match fetch_status(&n.http) {
                Ok(s) if s.peers.len() >= want => break,
                _ if !alive(n.pid) || Instant::now() > deadline => {
                    let what = if alive(n.pid) {
                        format!("did not join the network within {}s", a.timeout_secs)
                    } else {
                        "exited".to_string()
                    };
                    down_nodes(&net);
                    std::fs::remove_file(dir.join(NETWORK_FILE)).ok();
                    bail!(
                        "node {i} {what}; its log ({}) ends:\n{}",
                        n.log.display(),
                        log_tail(&n.log)
                    );
                }
                _ => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }
    Ok(net)
}

/// Peers a node knows once it has joined: the first node (every other dials it on
/// start) knows them all; another knows `JOIN_PEERS` of them, or all if there are
/// fewer. A node need not know the whole network: in a large one it never does.
fn joined_with(i: usize, others: usize) -> usize {
    /// Enough for a node's first Kademlia lookups to reach the rest.
    const JOIN_PEERS: usize = 8;
    if i == 0 {
        others
    } else {
        others.min(JOIN_PEERS)
    }
}

/// Whether `pid` is still the node started for `data_dir` (not a reused pid).
fn is_our_node(pid: u32, data_dir: &Path) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            let c = String::from_utf8_lossy(&c);
            c.contains("node") && c.contains(&*data_dir.to_string_lossy())
        })
        .unwrap_or(false)
}

fn alive(pid: u32) -> bool {
    let Ok(p) = i32::try_from(pid) else {
        return false;
    };
    signal::kill(Pid::from_raw(p), None).is_ok()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.split_whitespace().nth(2) == Some("Z"))
            .unwrap_or(false)
}

pub(crate) fn down_nodes(net: &Network) -> usize {
    let mut stopped = 0;
    let ours: Vec<&NodeEntry> = net
        .nodes
        .iter()
        .filter(|n| is_our_node(n.pid, &n.data_dir))
        .collect();
    for n in &ours {
        if let Ok(p) = i32::try_from(n.pid) {
            signal::kill(Pid::from_raw(p), signal::Signal::SIGTERM).ok();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    for n in &ours {
        while alive(n.pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if alive(n.pid)
            && let Ok(p) = i32::try_from(n.pid)
        {
            signal::kill(Pid::from_raw(p), signal::Signal::SIGKILL).ok();
        }
        stopped += 1;
    }
    stopped
}

#[derive(Debug, clap::Args)]
pub(crate) struct DirArgs {
    /// The network's directory.
    #[arg(long)]
    dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    /// The network's directory.
    #[arg(long)]
    dir: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn down(a: DirArgs) -> Result<()> {
    let net = read(&a.dir)?;
    let n = down_nodes(&net);
    std::fs::remove_file(a.dir.join(NETWORK_FILE)).ok();
    println!("stopped {n} node(s); data kept in {}", a.dir.display());
    Ok(())
}

#[derive(Debug, clap::Args)]
pub(crate) struct RestartArgs {
    /// The network's directory.
    #[arg(long)]
    dir: PathBuf,
    /// Which node (index in network.json).
    #[arg(long)]
    node: usize,
}

/// Starts node `i` again with its original arguments (after it was killed).
pub(crate) fn restart(a: RestartArgs) -> Result<()> {
    let pid = start_again(&a.dir, a.node, &[])?;
    println!("node {} running again as pid {pid}", a.node);
    Ok(())
}

/// Starts stopped node `i` of the network in `dir` again, its arguments changed by
/// `set` (flag, value) pairs: a flag it had takes the new value, others are added.
/// Returns the new pid once the node answers.
pub(crate) fn start_again(dir: &Path, i: usize, set: &[(&str, &str)]) -> Result<u32> {
    let mut net = read(dir)?;
    let Some(n) = net.nodes.get(i).cloned() else {
        bail!("no node {i} in this network of {}", net.nodes.len());
    };
    if alive(n.pid) && is_our_node(n.pid, &n.data_dir) {
        bail!("node {i} is still running (pid {})", n.pid);
    }
    let mut args = n.args.clone();
    for (flag, value) in set {
        match args.iter().position(|a| a == flag) {
            Some(at) if at + 1 < args.len() => args[at + 1] = (*value).to_string(),
            _ => args.extend([(*flag).to_string(), (*value).to_string()]),
        }
    }
    let dir = dir.canonicalize()?;
    let pid = spawn(&dir, &args, &n.log)?;
    net.nodes[i].pid = pid;
    net.nodes[i].args = args;
    write(&dir, &net)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while fetch_status(&n.http).is_err() {
        if Instant::now() > deadline {
            bail!(
                "node {i} did not come back; its log ends:\n{}",
                log_tail(&n.log)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(pid)
}

/// Stops node `i` of the network in `dir` (SIGTERM, then SIGKILL after 15 s).
pub(crate) fn stop_node(dir: &Path, i: usize) -> Result<()> {
    let net = read(dir)?;
    let Some(n) = net.nodes.get(i).cloned() else {
        bail!("no node {i} in this network of {}", net.nodes.len());
    };
    down_nodes(&Network { nodes: vec![n] });
    Ok(())
}

/// Adds a node to the network in `dir` (a replacement for a lost one, or more room): it
/// joins through node 0 with the settings node 0 was started with, and is up once it has
/// joined ([`joined_with`]). Returns its index.
pub(crate) fn add(dir: &Path) -> Result<usize> {
    let mut net = read(dir)?;
    let dir = dir.canonicalize()?;
    let Some(template) = net.nodes.first().cloned() else {
        bail!("the network in {} has no nodes", dir.display());
    };
    let i = net.nodes.len();
    let data_dir = dir.join(format!("node-{i}"));
    if data_dir.exists() {
        bail!("{} already exists", data_dir.display());
    }
    std::fs::create_dir_all(&data_dir)?;
    let key = NodeKey::load_or_create(&data_dir)?;
    let ports_lock = PortLock::acquire()?;
    let ports = free_ports(2)?;
    let (p, h) = (ports[0], ports[1]);
    // Node 0's arguments, with this node's own places and operator, and node 0 as its
    // way in.
    let mut args: Vec<String> = Vec::new();
    let mut it = template.args.iter();
    while let Some(a) = it.next() {
        let value = match a.as_str() {
            "--data-dir" => Some(data_dir.display().to_string()),
            "--listen" => Some(format!("127.0.0.1:{p}")),
            "--http" => Some(format!("127.0.0.1:{h}")),
            "--peer" => None,
            // A newcomer is an operator of its own.
            "--operator" => Some(format!("op{i}")),
            _ => {
                args.push(a.clone());
                continue;
            }
        };
        it.next();
        if let Some(v) = value {
            args.extend([a.clone(), v]);
        }
    }
    args.extend(["--peer".into(), template.peer.clone()]);
    let log = data_dir.join("node.log");
    let pid = spawn(&dir, &args, &log)?;
    let entry = NodeEntry {
        peer: format!("/ip4/127.0.0.1/tcp/{p}/p2p/{}", key.peer_id()),
        http: format!("http://127.0.0.1:{h}"),
        data_dir,
        pid,
        log,
        args,
    };
    net.nodes.push(entry.clone());
    write(&dir, &net)?;
    wait_bound(std::slice::from_ref(&entry), Duration::from_secs(30));
    drop(ports_lock);
    let others = net.nodes[..i]
        .iter()
        .filter(|n| alive(n.pid) && is_our_node(n.pid, &n.data_dir))
        .count();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match fetch_status(&entry.http) {
            Ok(s) if s.peers.len() >= joined_with(i, others) => break,
            _ if Instant::now() > deadline => bail!(
                "node {i} did not join the network within 30 s; its log ({}) ends:\n{}",
                entry.log.display(),
                log_tail(&entry.log)
            ),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    Ok(i)
}

/// `network add`.
pub(crate) fn add_cmd(a: DirArgs) -> Result<()> {
    let i = add(&a.dir)?;
    let net = read(&a.dir)?;
    let n = &net.nodes[i];
    println!("node {i} joined as pid {}  {}  {}", n.pid, n.http, n.peer);
    Ok(())
}

/// One node as `network status` shows it.
#[derive(Debug, Serialize)]
pub(crate) struct NodeRow {
    pub(crate) node: usize,
    pub(crate) peer: String,
    pub(crate) pid: u32,
    pub(crate) up: bool,
    /// Peers it is connected to.
    pub(crate) peers: usize,
    pub(crate) pieces: u64,
    pub(crate) held_bytes: u64,
    pub(crate) served_bytes: u64,
    /// Median of the scores the other live nodes' ledgers give it.
    pub(crate) reputation: Option<f64>,
    /// Whether any other live node's ledger flags it.
    pub(crate) flagged: bool,
    pub(crate) passes: u64,
    pub(crate) fails: u64,
    pub(crate) proven_byte_hours: f64,
}

/// Every node's row: its own figures from itself, its standing from the others.
pub(crate) fn rows(net: &Network) -> Vec<NodeRow> {
    let statuses: Vec<Option<NodeStatus>> = net
        .nodes
        .iter()
        .map(|n| fetch_status(&n.http).ok())
        .collect();
    net.nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let peer = n.peer.rsplit('/').next().unwrap_or("").to_string();
            let views: Vec<&storage_node::audit::Reputation> = statuses
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .filter_map(|(_, s)| s.as_ref())
                .filter_map(|s| s.ledger.iter().find(|e| e.peer == peer))
                .map(|e| &e.reputation)
                .collect();
            let mut scores: Vec<f64> = views.iter().map(|r| r.score).collect();
            scores.sort_by(f64::total_cmp);
            let median = |v: &mut Vec<f64>| (!v.is_empty()).then(|| v[v.len() / 2]);
            let mut proven: Vec<f64> = views.iter().map(|r| r.proven_byte_hours).collect();
            proven.sort_by(f64::total_cmp);
            let s = statuses[i].as_ref();
            NodeRow {
                node: i,
                pid: n.pid,
                up: s.is_some(),
                peers: s.map_or(0, |s| s.peers.len()),
                pieces: s.map_or(0, |s| s.info.pieces),
                held_bytes: s.map_or(0, |s| s.info.bytes),
                served_bytes: s.map_or(0, |s| s.served_bytes),
                reputation: median(&mut scores),
                flagged: views.iter().any(|r| r.flagged),
                passes: views.iter().map(|r| r.passes).max().unwrap_or(0),
                fails: views.iter().map(|r| r.fails).max().unwrap_or(0),
                proven_byte_hours: median(&mut proven).unwrap_or(0.0),
                peer,
            }
        })
        .collect()
}

pub(crate) fn status(a: StatusArgs) -> Result<()> {
    let net = read(&a.dir)?;
    let rows = rows(&net);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<5} {:<8} {:<14} {:>5} {:>8} {:>10} {:>10} {:>10} {:>14}",
        "node", "pid", "peer", "peers", "pieces", "held", "served", "reputation", "proven"
    );
    for r in &rows {
        let short = &r.peer[r.peer.len().saturating_sub(12)..];
        if !r.up {
            println!("{:<5} {:<8} ..{short:<12} down", r.node, r.pid);
            continue;
        }
        let rep = match (r.reputation, r.flagged) {
            (_, true) => "FLAGGED".to_string(),
            (Some(s), false) => format!("{s:.2}"),
            (None, false) => "-".to_string(),
        };
        println!(
            "{:<5} {:<8} ..{short:<12} {:>5} {:>8} {:>10} {:>10} {:>10} {:>14}",
            r.node,
            r.pid,
            r.peers,
            r.pieces,
            human(r.held_bytes),
            human(r.served_bytes),
            rep,
            format!("{}·h", human(r.proven_byte_hours as u64))
        );
    }
    println!(
        "reputation and proven byte-hours: the median of what the other nodes' ledgers say, \
         from the audit records they hold"
    );
    Ok(())
}
