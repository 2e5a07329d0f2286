//! `cairn node run` and `cairn node status`.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use dataset_api::{ApiConfig, tokens::Tokens};
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
pub(crate) const RUNNING_FILE: &str = "node.json";

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
    /// Mean seconds between audit rounds (jittered ±50%; default 600).
    #[arg(long)]
    audit_secs: Option<f64>,
    /// Seconds between scrub passes over every held piece (default 86400).
    #[arg(long)]
    scrub_secs: Option<f64>,
    /// Most bytes per second a scrub pass reads, e.g. 16MiB (the default).
    #[arg(long)]
    scrub_rate: Option<Size>,
    /// Repair a stripe when fewer than this many of its pieces are healthy (default
    /// k + ceil(m/2)).
    #[arg(long)]
    repair_threshold: Option<usize>,
    /// Largest body an HTTP push may send, e.g. 16GiB (the default).
    #[arg(long, value_name = "SIZE")]
    http_max_body: Option<Size>,
    /// Bytes of decoded stripes the HTTP API keeps for readers, e.g. 256MiB (the default).
    #[arg(long, value_name = "SIZE")]
    http_cache: Option<Size>,
    /// Most (piece, holder) entries remembered about other nodes, about 100 bytes each
    /// (8388608 by default). When full, room is taken from peers without standing.
    #[arg(long)]
    holder_entries: Option<usize>,
    /// Who runs this node (a person, lab or company; letters, digits, '.', '_', '-'): no
    /// two pieces of a stripe go to nodes of one operator.
    #[arg(long)]
    operator: Option<String>,
    /// This network's nodes share one site or LAN: tell them apart by operator only,
    /// not by IPv4 /24 or IPv6 /48 (which would make them all one failure domain).
    #[arg(long)]
    no_subnet_domains: bool,
    /// Validate the configuration and exit without starting.
    #[arg(long)]
    check: bool,
    /// Fault injection for tests: serve every piece with a flipped byte.
    #[cfg(feature = "fault-injection")]
    #[arg(long, hide = true)]
    fault_serve_corrupt: bool,
    /// Fault injection for tests: answer other nodes' challenges with forged proofs.
    #[cfg(feature = "fault-injection")]
    #[arg(long, hide = true)]
    fault_forge_proofs: bool,
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
    audit_secs: Option<f64>,
    scrub_secs: Option<f64>,
    scrub_rate: Option<String>,
    repair_threshold: Option<usize>,
    http_max_body: Option<String>,
    http_cache: Option<String>,
    holder_entries: Option<usize>,
    operator: Option<String>,
    subnet_domains: Option<bool>,
}

/// A positive, finite number of seconds.
fn seconds(what: &str, s: f64) -> Result<Duration> {
    if !(s.is_finite() && s > 0.0 && s < 1e9) {
        bail!("{what} must be a positive number of seconds, not {s}");
    }
    Ok(Duration::from_secs_f64(s))
}

fn config(args: &RunArgs) -> Result<(NodeConfig, SocketAddr, ApiConfig)> {
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
    #[cfg(feature = "fault-injection")]
    {
        cfg.faults = storage_node::net::node::Faults {
            serve_corrupt: args.fault_serve_corrupt,
            forge_proofs: args.fault_forge_proofs,
        };
    }
    if let Some(s) = args.audit_secs.or(file.audit_secs) {
        cfg.upkeep.audit_interval = seconds("audit_secs", s)?;
        // A claim must outlive a few rounds, so a repairer that dies is replaced soon.
        cfg.upkeep.lease = (cfg.upkeep.audit_interval * 4).max(Duration::from_secs(10));
    }
    if let Some(s) = args.scrub_secs.or(file.scrub_secs) {
        cfg.upkeep.scrub_interval = seconds("scrub_secs", s)?;
    }
    match (args.scrub_rate, file.scrub_rate) {
        (Some(r), _) => cfg.upkeep.scrub_rate = r.0.max(1),
        (None, Some(r)) => cfg.upkeep.scrub_rate = r.parse::<Size>()?.0.max(1),
        (None, None) => {}
    }
    if let Some(t) = args.repair_threshold.or(file.repair_threshold) {
        if t == 0 {
            bail!("repair_threshold must be at least 1");
        }
        cfg.upkeep.repair_threshold = Some(t);
    }
    if let Some(n) = args.holder_entries.or(file.holder_entries) {
        if n == 0 {
            bail!("holder_entries must be at least 1");
        }
        cfg.holder_entries = n;
    }
    if let Some(o) = args.operator.clone().or(file.operator) {
        storage_node::net::domain::check_operator(&o)?;
        cfg.operator = Some(o);
    }
    cfg.subnet_domains = !args.no_subnet_domains && file.subnet_domains.unwrap_or(true);
    if let Some(s) = file.orphan_grace_secs {
        cfg.orphan_grace = Duration::from_secs(s);
    }
    if let Some(s) = args.announce_secs.or(file.announce_secs) {
        cfg.announce_interval = Duration::from_secs(s.max(1));
    }
    let mut api = ApiConfig::new(cfg.data_dir.clone());
    let size = |flag: &Option<Size>, key: &str, file: &Option<String>| -> Result<Option<u64>> {
        Ok(match (flag, file) {
            (Some(s), _) => Some(s.0),
            (None, Some(s)) => Some(
                s.parse::<Size>()
                    .with_context(|| format!("{key} {s:?} is not a size"))?
                    .0,
            ),
            (None, None) => None,
        })
    };
    if let Some(b) = size(&args.http_max_body, "http_max_body", &file.http_max_body)? {
        api.max_body = b;
    }
    if let Some(b) = size(&args.http_cache, "http_cache", &file.http_cache)? {
        api.cache_bytes = b.max(1 << 20);
    }
    Ok((cfg, http, api))
}

/// What `node run` leaves in the data dir for `node status`.
#[derive(Debug, Serialize, Deserialize)]
struct Running {
    peer: String,
    http: String,
    pid: u32,
}

pub(crate) fn run(args: RunArgs) -> Result<()> {
    let (mut cfg, http, api_cfg) = config(&args)?;
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
        let api = dataset_api::Api::start(node.clone(), api_cfg).await?;
        let cancel = CancellationToken::new();
        let server = tokio::spawn(dataset_api::serve(
            listener,
            dataset_api::router(api.clone()),
            cancel.clone(),
        ));
        let running = Running {
            peer: node.peer_addr().to_string(),
            http: url.clone(),
            pid: std::process::id(),
        };
        let marker = data_dir.join(RUNNING_FILE);
        // Written whole or not at all: others wait for it to appear and read it at once.
        let mut tmp = tempfile::NamedTempFile::new_in(&data_dir)
            .with_context(|| format!("cannot write in {}", data_dir.display()))?;
        serde_json::to_writer_pretty(&mut tmp, &running)?;
        tmp.persist(&marker)
            .map_err(|e| e.error)
            .with_context(|| format!("cannot write {}", marker.display()))?;
        println!("node {} running", node.peer_id());
        println!("  peer address  {}", running.peer);
        println!("  http          {url}");
        println!("  data dir      {}", data_dir.display());
        wait_for_signal().await?;
        info!("shutting down");
        cancel.cancel();
        // Downloads in flight get a moment to finish; then they are cut off.
        let mut server = server;
        if tokio::time::timeout(Duration::from_secs(5), &mut server)
            .await
            .is_err()
        {
            server.abort();
            server.await.ok();
        }
        api.close().await;
        drop(api);
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
    println!("peers      {} known", s.peers.len());
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
    let r = &s.reputation;
    println!(
        "standing   reputation {:.2}{} from {} passed / {} failed audits by {} other node(s)",
        r.score,
        if r.flagged {
            " (FLAGGED: caught forging)"
        } else {
            ""
        },
        r.passes,
        r.fails,
        r.auditors
    );
    println!(
        "proven     {} byte-hours ({}-hours)",
        r.proven_byte_hours.round(),
        human(r.proven_byte_hours as u64)
    );
    let u = &s.upkeep;
    println!(
        "audits     {} made ({} failed), {} on the wire; {} read to answer challenges",
        u.audits,
        u.audit_fails,
        human(u.audit_wire_bytes),
        human(u.proof_disk_bytes)
    );
    println!(
        "scrub      {} re-hashed, {} corrupt piece(s) deleted",
        human(u.scrubbed_bytes),
        u.corrupt_dropped
    );
    println!(
        "repair     {} stripe(s), {} piece(s) rebuilt ({} fetched, {} written)",
        u.repairs,
        u.pieces_rebuilt,
        human(u.repair_fetched_bytes),
        human(u.repair_written_bytes)
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

#[derive(Debug, clap::Args)]
pub(crate) struct TokenArgs {
    /// The node's data directory (where its token file lives).
    #[arg(long)]
    data_dir: PathBuf,
    /// The token's name (create, revoke).
    #[arg(long)]
    name: Option<String>,
}

fn token_name(a: &TokenArgs) -> Result<&str> {
    a.name
        .as_deref()
        .context("pass --name NAME to say which token")
}

/// `node token create`: prints a new token once; the node stores only its hash.
pub(crate) fn token_create(a: TokenArgs) -> Result<()> {
    let name = token_name(&a)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let token = Tokens::in_dir(&a.data_dir).create(name, now)?;
    println!("{token}");
    eprintln!(
        "token {name:?} created: it lets HTTP clients publish through this node (Authorization: Bearer <token>). It is shown only now; revoke it with `cairn node token revoke --name {name}`."
    );
    Ok(())
}

/// `node token list`: names and creation times, never the tokens.
pub(crate) fn token_list(a: TokenArgs) -> Result<()> {
    let all = Tokens::in_dir(&a.data_dir).list()?;
    if all.is_empty() {
        println!("no tokens; create one with `cairn node token create --name NAME`");
    }
    for t in all {
        println!("{:<24} created {}", t.name, t.created_unix);
    }
    Ok(())
}

/// `node token revoke`.
pub(crate) fn token_revoke(a: TokenArgs) -> Result<()> {
    let name = token_name(&a)?;
    Tokens::in_dir(&a.data_dir).revoke(name)?;
    println!("token {name:?} revoked");
    Ok(())
}
