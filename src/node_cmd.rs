//! `cairn node run` and `cairn node status`.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use storage_node::net::{Node, NodeConfig, NodeKey, NodeStatus};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::ui::{self, Size, human};

/// Default libp2p listen address (TCP; the data plane takes the same port over UDP).
pub(crate) const DEFAULT_LISTEN: &str = "0.0.0.0:7420";
/// Default HTTP address.
pub(crate) const DEFAULT_HTTP: &str = "127.0.0.1:7421";
/// Written to the data dir while the node runs: how `node status` finds it.
const RUNNING_FILE: &str = "node.json";

#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// Where the node keeps its identity key, metadata and pieces.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// libp2p address, `IP:PORT` or a multiaddr (default 0.0.0.0:7420). The data plane
    /// uses the same port over UDP.
    #[arg(long)]
    listen: Option<String>,
    /// HTTP address (default 127.0.0.1:7421).
    #[arg(long)]
    http: Option<String>,
    /// A peer to join through (repeatable), as `/ip4/.../tcp/.../p2p/<id>`.
    #[arg(long = "peer")]
    peers: Vec<String>,
    /// Most piece bytes to store, e.g. 500GiB.
    #[arg(long)]
    capacity: Option<Size>,
    /// A TOML config file; command-line flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Turn off mDNS discovery on the LAN.
    #[arg(long)]
    no_mdns: bool,
    /// Seconds between full announcements of the pieces held.
    #[arg(long)]
    announce_secs: Option<u64>,
    /// Validate the configuration and exit without starting.
    #[arg(long)]
    check: bool,
    /// Fault injection for tests: serve every piece with a flipped byte.
    #[arg(long, hide = true)]
    fault_serve_corrupt: bool,
}

/// The config file: every field optional, unknown fields refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    http: Option<String>,
    #[serde(default)]
    peers: Vec<String>,
    capacity: Option<String>,
    mdns: Option<bool>,
    announce_secs: Option<u64>,
    orphan_grace_secs: Option<u64>,
}

fn config(args: &RunArgs) -> Result<(NodeConfig, SocketAddr)> {
    let file = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read config file {}", p.display()))?;
            toml::from_str::<ConfigFile>(&text)
                .with_context(|| format!("config file {} is invalid", p.display()))?
        }
        None => ConfigFile::default(),
    };
    let data_dir = args
        .data_dir
        .clone()
        .or(file.data_dir)
        .context("no data directory: pass --data-dir DIR or set data_dir in the config file")?;
    let listen = ui::listen_addr(
        args.listen
            .as_deref()
            .or(file.listen.as_deref())
            .unwrap_or(DEFAULT_LISTEN),
    )?;
    let http_s = args
        .http
        .as_deref()
        .or(file.http.as_deref())
        .unwrap_or(DEFAULT_HTTP);
    let http: SocketAddr = http_s
        .parse()
        .with_context(|| format!("HTTP address {http_s:?} is not IP:PORT"))?;
    let mut peers = Vec::new();
    for p in args.peers.iter().chain(&file.peers) {
        peers.push(ui::peer_addr(p)?);
    }
    let capacity = match (args.capacity, file.capacity) {
        (Some(c), _) => Some(c.0),
        (None, Some(c)) => Some(c.parse::<Size>()?.0),
        (None, None) => None,
    };
    let mut cfg = NodeConfig::new(data_dir, listen);
    cfg.peers = peers;
    cfg.capacity = capacity;
    cfg.mdns = !args.no_mdns && file.mdns.unwrap_or(true);
    cfg.serve_corrupt = args.fault_serve_corrupt;
    if let Some(s) = file.orphan_grace_secs {
        cfg.orphan_grace = Duration::from_secs(s);
    }
    if let Some(s) = args.announce_secs.or(file.announce_secs) {
        cfg.announce_interval = Duration::from_secs(s.max(1));
    }
    Ok((cfg, http))
}

/// What `node run` leaves in the data dir for `node status`.
#[derive(Debug, Serialize, Deserialize)]
struct Running {
    peer: String,
    http: String,
    pid: u32,
}

pub(crate) fn run(args: RunArgs) -> Result<()> {
    let (mut cfg, http) = config(&args)?;
    if args.check {
        println!(
            "config ok: data dir {}, listen {}, http {http}, {} bootstrap peer(s), capacity {}",
            cfg.data_dir.display(),
            cfg.listen,
            cfg.peers.len(),
            cfg.capacity.map_or("unlimited".into(), human)
        );
        return Ok(());
    }
    ui::runtime()?.block_on(async move {
        let (listener, http_addr) = dataset_api::bind(http).await?;
        let url = format!("http://{http_addr}");
        cfg.http = Some(url.clone());
        let data_dir = cfg.data_dir.clone();
        let node = Arc::new(Node::start(cfg).await.context("the node could not start")?);
        let cancel = CancellationToken::new();
        let server = tokio::spawn(dataset_api::serve(
            listener,
            dataset_api::router(node.clone()),
            cancel.clone(),
        ));
        let running = Running {
            peer: node.peer_addr().to_string(),
            http: url.clone(),
            pid: std::process::id(),
        };
        let marker = data_dir.join(RUNNING_FILE);
        std::fs::write(&marker, serde_json::to_vec_pretty(&running)?)
            .with_context(|| format!("cannot write {}", marker.display()))?;
        println!("node {} running", node.peer_id());
        println!("  peer address  {}", running.peer);
        println!("  http          {url}");
        println!("  data dir      {}", data_dir.display());
        wait_for_signal().await?;
        info!("shutting down");
        cancel.cancel();
        server.await.ok();
        std::fs::remove_file(&marker).ok();
        match Arc::try_unwrap(node) {
            Ok(node) => node.shutdown().await,
            Err(_) => bail!("node still in use at shutdown"),
        }
        Ok(())
    })
}

async fn wait_for_signal() -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot listen for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    /// The node's data directory.
    #[arg(long, conflicts_with = "http")]
    data_dir: Option<PathBuf>,
    /// The node's HTTP base URL instead.
    #[arg(long)]
    http: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Asks a running node for its status.
pub(crate) fn fetch_status(http: &str) -> Result<NodeStatus> {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .new_agent();
    let url = format!("{}/v1/node", http.trim_end_matches('/'));
    agent
        .get(&url)
        .call()
        .with_context(|| format!("no answer from {url}"))?
        .body_mut()
        .read_json::<NodeStatus>()
        .with_context(|| format!("bad status from {url}"))
}

pub(crate) fn status(args: StatusArgs) -> Result<()> {
    let http = match (&args.http, &args.data_dir) {
        (Some(h), _) => Some(h.clone()),
        (None, Some(d)) => std::fs::read(d.join(RUNNING_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice::<Running>(&b).ok())
            .map(|r| r.http),
        (None, None) => bail!("pass --data-dir DIR (or --http URL) to say which node"),
    };
    let live = http.as_deref().map(fetch_status);
    match (live, &args.data_dir) {
        (Some(Ok(s)), _) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print_status(&s, args.data_dir.as_deref());
            }
            Ok(())
        }
        (live, Some(dir)) => {
            if let Some(Err(e)) = live {
                eprintln!("the node is not answering ({e:#}); reading its data dir instead");
            }
            offline_status(dir)
        }
        (Some(Err(e)), None) => Err(e),
        (None, None) => bail!("no node found"),
    }
}

fn print_status(s: &NodeStatus, dir: Option<&Path>) {
    let i = &s.info;
    println!("node       {}  (running)", i.peer);
    for a in &i.addrs {
        println!("address    {a}");
    }
    if let Some(h) = &i.http {
        println!("http       {h}");
    }
    if let Some(d) = dir {
        println!("data dir   {}", d.display());
    }
    println!("peers      {} connected", s.peers.len());
    println!("pieces     {} ({})", i.pieces, human(i.bytes));
    match i.capacity {
        Some(c) => println!(
            "capacity   {} used of {} ({} free)",
            human(i.bytes),
            human(c),
            human(c.saturating_sub(i.bytes))
        ),
        None => println!("capacity   unlimited"),
    }
    println!("datasets   {}", s.datasets);
    println!(
        "traffic    {} served to others, {} received",
        human(s.served_bytes),
        human(s.received_bytes)
    );
}

fn offline_status(dir: &Path) -> Result<()> {
    if !storage_node::net::identity::key_path(dir).exists() {
        bail!(
            "{} is not a node's data directory (no identity key)",
            dir.display()
        );
    }
    let key = NodeKey::load_or_create(dir)?;
    let opts = storage_node::StoreOptions {
        dir: dir.to_path_buf(),
        capacity: None,
    };
    let (store, _) = storage_node::PieceStore::open(opts)
        .with_context(|| format!("cannot open the store in {}", dir.display()))?;
    let st = store.stats();
    println!("node       {}  (not running)", key.peer_id());
    println!("data dir   {}", dir.display());
    println!("pieces     {} ({})", st.pieces, human(st.bytes));
    println!("datasets   {}", store.datasets()?.len());
    Ok(())
}
