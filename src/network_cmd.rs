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

#[derive(Debug, clap::Args)]
pub(crate) struct UpArgs {
    /// How many nodes.
    #[arg(long, default_value_t = 6)]
    nodes: usize,
    /// Where the nodes' data dirs, logs and network.json go.
    #[arg(long)]
    dir: PathBuf,
    /// First port: node i listens on base+2i (TCP and UDP) and serves HTTP on base+2i+1.
    /// Default: free ports picked at random.
    #[arg(long)]
    base_port: Option<u16>,
    /// Capacity of each node, e.g. 10GiB.
    #[arg(long)]
    capacity: Option<Size>,
    /// Seconds between full piece announcements.
    #[arg(long, default_value_t = 30)]
    announce_secs: u64,
    /// How long to wait for the nodes to see each other.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
}

fn free_ports(n: usize) -> Result<Vec<u16>> {
    let mut held = Vec::new();
    let mut out = Vec::new();
    while out.len() < n {
        let t = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("no free port")?;
        let port = t.local_addr()?.port();
        // The data plane needs the same port free on UDP too.
        if let Ok(u) = UdpSocket::bind((Ipv4Addr::LOCALHOST, port)) {
            out.push(port);
            held.push((t, Some(u)));
        } else {
            held.push((t, None));
        }
    }
    Ok(out)
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
        entries[i].pid = match spawn(&dir, &args, &entries[i].log) {
            Ok(pid) => pid,
            Err(e) => {
                // Leave nothing running that no network.json describes.
                down_nodes(&Network {
                    nodes: entries[..i].to_vec(),
                });
                return Err(e);
            }
        };
        entries[i].args = args;
    }
    let net = Network { nodes: entries };
    write(&dir, &net)?;
    // Wait until every node answers and sees all the others.
    let deadline = Instant::now() + Duration::from_secs(a.timeout_secs);
    let want = a.nodes - 1;
    for (i, n) in net.nodes.iter().enumerate() {
        loop {
            match fetch_status(&n.http) {
                Ok(s) if s.peers.len() >= want => break,
                _ if Instant::now() > deadline => {
                    down_nodes(&net);
                    std::fs::remove_file(dir.join(NETWORK_FILE)).ok();
                    bail!(
                        "node {i} did not join the network within {}s; its log ({}) ends:\n{}",
                        a.timeout_secs,
                        n.log.display(),
                        log_tail(&n.log)
                    );
                }
                _ => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }
    println!("{} nodes up in {}", a.nodes, dir.display());
    for (i, n) in net.nodes.iter().enumerate() {
        println!("  node {i}  pid {:<7} {}  {}", n.pid, n.http, n.peer);
    }
    println!("network file: {}", dir.join(NETWORK_FILE).display());
    println!("try: CAIRN_PEER={} cairn dataset ls", net.nodes[0].peer);
    Ok(())
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

fn down_nodes(net: &Network) -> usize {
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
    let mut net = read(&a.dir)?;
    let Some(n) = net.nodes.get(a.node).cloned() else {
        bail!("no node {} in this network of {}", a.node, net.nodes.len());
    };
    if alive(n.pid) && is_our_node(n.pid, &n.data_dir) {
        bail!("node {} is still running (pid {})", a.node, n.pid);
    }
    let dir = a.dir.canonicalize()?;
    let pid = spawn(&dir, &n.args, &n.log)?;
    net.nodes[a.node].pid = pid;
    write(&dir, &net)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while fetch_status(&n.http).is_err() {
        if Instant::now() > deadline {
            bail!(
                "node {} did not come back; its log ends:\n{}",
                a.node,
                log_tail(&n.log)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("node {} running again as pid {pid}", a.node);
    Ok(())
}

pub(crate) fn status(a: DirArgs) -> Result<()> {
    let net = read(&a.dir)?;
    println!(
        "{:<5} {:<8} {:<14} {:>5} {:>8} {:>11} {:>11}",
        "node", "pid", "peer", "peers", "pieces", "held", "capacity"
    );
    for (i, n) in net.nodes.iter().enumerate() {
        let short = n.peer.rsplit('/').next().unwrap_or("");
        let short = &short[short.len().saturating_sub(12)..];
        match fetch_status(&n.http) {
            Ok(s) => println!(
                "{i:<5} {:<8} ..{short:<12} {:>5} {:>8} {:>11} {:>11}",
                n.pid,
                s.peers.len(),
                s.info.pieces,
                human(s.info.bytes),
                s.info.capacity.map_or("unlimited".into(), human)
            ),
            Err(_) => println!("{i:<5} {:<8} ..{short:<12} down", n.pid),
        }
    }
    Ok(())
}
