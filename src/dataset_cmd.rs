//! `cairn dataset push|pull|ls|info`.

use std::{path::PathBuf, sync::Arc};

use anyhow::{Context, Result, bail};
use storage_node::{
    DatasetName, ErasureParams, PublisherKey, VersionId,
    engine::EncodeOptions,
    erasure::{DEFAULT_BLOCK_SIZE, DEFAULT_K, DEFAULT_M},
    net::{Client, identity::load_or_create_secret},
};

use crate::ui::{self, Size, bytes_bar, human};

/// The publisher key's file in the config dir.
const PUBLISHER_KEY: &str = "publisher.key";

#[derive(Debug, clap::Args)]
pub(crate) struct PeerArg {
    /// A node to reach the network through (also CAIRN_PEER).
    #[arg(long)]
    peer: Option<String>,
}

impl PeerArg {
    /// Connects, runs `f`, and closes the client whether `f` succeeded or not.
    fn with_client<T>(&self, f: impl AsyncFnOnce(&Client) -> Result<T>) -> Result<T> {
        let addr = ui::bootstrap(self.peer.as_deref())?;
        ui::runtime()?.block_on(async move {
            let client = Client::connect(addr.clone())
                .await
                .with_context(|| format!("cannot reach the network through {addr}"))?;
            let r = f(&client).await;
            client.shutdown().await;
            r
        })
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct PushArgs {
    /// The directory (or single file) to publish.
    path: PathBuf,
    /// `owner/name`.
    #[arg(long)]
    name: DatasetName,
    /// Data pieces per stripe.
    #[arg(long, default_value_t = DEFAULT_K)]
    k: u16,
    /// Parity pieces per stripe: how many holders of a stripe may vanish.
    #[arg(long, default_value_t = DEFAULT_M)]
    m: u16,
    /// Bytes per piece (the stripe is k of them).
    #[arg(long, default_value_t = Size(u64::from(DEFAULT_BLOCK_SIZE)))]
    block_size: Size,
    /// License (SPDX id or text).
    #[arg(long, default_value = "unspecified")]
    license: String,
    #[command(flatten)]
    peer: PeerArg,
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

fn publisher_key() -> Result<PublisherKey> {
    let path = ui::config_dir()?.join(PUBLISHER_KEY);
    let secret = load_or_create_secret(&path)
        .with_context(|| format!("cannot load the publisher key {}", path.display()))?;
    Ok(PublisherKey::from_secret_bytes(&secret))
}

/// Publishes `path` as the next version of `name`, signed with `key`, with a progress bar.
pub(crate) async fn push_dir(
    client: &Client,
    path: &std::path::Path,
    name: &DatasetName,
    params: ErasureParams,
    license: &str,
    key: &PublisherKey,
) -> Result<storage_node::net::PushReport> {
    let total: u64 = storage_node::engine::scan(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .iter()
        .map(|f| f.size)
        .sum();
    let next = match client.next_version(name, key).await {
        Err(e @ storage_node::net::ClientError::NotOwner { .. }) => {
            bail!("{e} (CAIRN_CONFIG_DIR selects the key)")
        }
        r => r.context("cannot look up the dataset's latest version")?,
    };
    let opts = EncodeOptions {
        name: name.clone(),
        parent: next.parent,
        license: license.to_string(),
        params,
        created_unix: next.created_unix,
    };
    let bar = bytes_bar(total, "push");
    let b2 = bar.clone();
    let r = client
        .push(path, opts, key, Arc::new(move |n| b2.inc(n)))
        .await;
    bar.finish_and_clear();
    r.with_context(|| format!("push of {name} failed; no version was published"))
}

pub(crate) fn push(a: PushArgs) -> Result<()> {
    let block = u32::try_from(a.block_size.0).context("--block-size is too large")?;
    let params = ErasureParams::new(a.k, a.m, block).context("invalid --k/--m/--block-size")?;
    let key = publisher_key()?;
    a.peer.with_client(async |client| {
        let r = push_dir(client, &a.path, &a.name, params, &a.license, &key).await?;
        let secs = r.elapsed.as_secs_f64().max(1e-3);
        if r.unchanged {
            println!(
                "unchanged: {}@{} already has exactly these files",
                a.name, r.version
            );
        } else {
            println!("published {}@{}", a.name, r.version);
        }
        println!(
            "  {} files, {}; {} pieces (k={}, m={}), {} sent, {} already held; {:.1}s, {:.1} MB/s",
            r.manifest.files().len(),
            human(r.manifest.total_size()),
            r.pieces,
            params.k(),
            params.m(),
            r.sent,
            r.pieces - r.sent,
            secs,
            r.manifest.total_size() as f64 / secs / 1e6
        );
        Ok(())
    })
}

/// `owner/name[@version]`.
pub(crate) fn parse_ref(s: &str) -> Result<(DatasetName, Option<VersionId>)> {
    let (n, v) = match s.split_once('@') {
        Some((n, v)) => (n, Some(v)),
        None => (s, None),
    };
    let name: DatasetName = n
        .parse()
        .with_context(|| format!("bad dataset name {n:?}"))?;
    let version = match v {
        Some(v) => Some(
            v.parse::<VersionId>()
                .with_context(|| format!("bad version {v:?}: expected the 64-hex-digit id"))?,
        ),
        None => None,
    };
    Ok((name, version))
}

#[derive(Debug, clap::Args)]
pub(crate) struct PullArgs {
    /// `owner/name[@version]`.
    dataset: String,
    /// Where to write the files.
    dest: PathBuf,
    #[command(flatten)]
    peer: PeerArg,
}

pub(crate) fn pull(a: PullArgs) -> Result<()> {
    let (name, version) = parse_ref(&a.dataset)?;
    a.peer.with_client(async |client| {
        let m = client.manifest(&name, version).await?;
        std::fs::create_dir_all(&a.dest)
            .with_context(|| format!("cannot create {}", a.dest.display()))?;
        let bar = bytes_bar(m.total_size(), "pull");
        let b2 = bar.clone();
        let r = client.pull(&m, &a.dest, Arc::new(move |n| b2.inc(n))).await;
        bar.finish_and_clear();
        let r = r.with_context(|| format!("pull of {name}@{} failed", m.version()))?;
        let secs = r.elapsed.as_secs_f64().max(1e-3);
        println!("pulled {name}@{} into {}", m.version(), a.dest.display());
        println!(
            "  {} files written, {} already complete; {} fetched, {} resumed; {} pieces fetched, {} fetches routed around; {:.1}s, {:.1} MB/s",
            r.files,
            r.skipped,
            human(r.bytes),
            human(r.resumed_bytes),
            r.pieces,
            r.failed_fetches,
            secs,
            r.bytes as f64 / secs / 1e6
        );
        Ok(())
    })
}

pub(crate) fn ls(p: PeerArg) -> Result<()> {
    p.with_client(async |client| {
        let list = client.datasets().await?;
        if list.is_empty() {
            println!(
                "no datasets yet; publish one with `cairn dataset push DIR --name owner/name`"
            );
        } else {
            println!(
                "{:<32} {:>8} {:>6} {:>11}  {:<16} latest",
                "dataset", "versions", "files", "size", "license"
            );
            for d in list {
                println!(
                    "{:<32} {:>8} {:>6} {:>11}  {:<16} {}",
                    d.name,
                    d.versions,
                    d.files,
                    human(d.size),
                    d.license,
                    &d.latest[..16.min(d.latest.len())]
                );
            }
        }
        Ok(())
    })
}

#[derive(Debug, clap::Args)]
pub(crate) struct InfoArgs {
    /// `owner/name[@version]`.
    dataset: String,
    /// Also list, stripe by stripe, which nodes hold each piece.
    #[arg(long)]
    placement: bool,
    /// Print the placement summary as JSON instead.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    peer: PeerArg,
}

/// How a version's stripes stand on the network right now.
#[derive(Debug, serde::Serialize)]
pub(crate) struct PlacementReport {
    pub(crate) k: usize,
    pub(crate) n: usize,
    pub(crate) stripes: usize,
    /// Stripes with every piece on a distinct reachable node.
    pub(crate) full: usize,
    /// Stripes that can be rebuilt but have lost redundancy.
    pub(crate) degraded: usize,
    /// Stripes with fewer than k pieces reachable.
    pub(crate) lost: usize,
    /// Node losses every stripe survives right now (the least over stripes of
    /// spread - k; negative when some stripe cannot be rebuilt).
    pub(crate) tolerates: i64,
    pub(crate) placement: Vec<StripeRow>,
}

#[derive(Debug, serde::Serialize)]
pub(crate) struct StripeRow {
    pub(crate) file: String,
    pub(crate) stripe: usize,
    pub(crate) spread: usize,
    /// Each piece's id (hex).
    pub(crate) pieces: Vec<String>,
    /// Peer ids holding each piece.
    pub(crate) holders: Vec<Vec<String>>,
}

pub(crate) async fn placement_report(
    client: &Client,
    m: &storage_node::Manifest,
) -> Result<PlacementReport> {
    let p = m.body().params;
    let (k, n) = (usize::from(p.k()), p.n());
    let rows = client.placement(m).await?;
    let mut r = PlacementReport {
        k,
        n,
        stripes: rows.len(),
        full: 0,
        degraded: 0,
        lost: 0,
        tolerates: (n - k) as i64,
        placement: Vec::new(),
    };
    for s in rows {
        if s.spread >= n {
            r.full += 1;
        } else if s.spread >= k {
            r.degraded += 1;
        } else {
            r.lost += 1;
        }
        r.tolerates = r.tolerates.min(s.spread as i64 - k as i64);
        let f = &m.files()[s.file];
        r.placement.push(StripeRow {
            file: f.path.to_string(),
            pieces: f.stripes[s.stripe]
                .pieces
                .iter()
                .map(|p| p.id.to_string())
                .collect(),
            stripe: s.stripe,
            spread: s.spread,
            holders: s.holders,
        });
    }
    Ok(r)
}

pub(crate) fn info(a: InfoArgs) -> Result<()> {
    let (name, version) = parse_ref(&a.dataset)?;
    a.peer.with_client(async |client| {
        let m = client.manifest(&name, version).await?;
        let body = m.body();
        let p = body.params;
        let report = placement_report(client, &m).await?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
            return Ok(());
        }
        println!("dataset    {name}");
        println!("version    {}", m.version());
        if let Some(parent) = body.parent {
            println!("parent     {parent}");
        }
        println!("publisher  {}", m.publisher());
        println!("created    {} (unix)", body.created_unix);
        println!("license    {}", body.license);
        println!("erasure    k={} m={} block {}", p.k(), p.m(), human(u64::from(p.block_size())));
        println!("size       {} in {} files", human(m.total_size()), m.files().len());
        let history = client.history(&name).await?;
        println!("versions   {} (oldest first)", history.len());
        for v in &history {
            let id = VersionId(v.version);
            println!(
                "  {}{}  created {}  {:>11}  {} files",
                id,
                if id == m.version() { " *" } else { "  " },
                v.created_unix,
                human(v.size),
                v.files
            );
        }
        for f in m.files() {
            println!("  {:>11}  {}", human(f.size), f.path);
        }
        let r = &report;
        println!(
            "placement  {} stripes: {} with all {} pieces on distinct reachable nodes, {} degraded (k..n), {} below k; every stripe survives {} more node losses",
            r.stripes, r.full, r.n, r.degraded, r.lost, r.tolerates.max(0)
        );
        if a.placement {
            for s in &r.placement {
                let cells: Vec<String> = s
                    .holders
                    .iter()
                    .enumerate()
                    .map(|(i, h)| {
                        let who: Vec<&str> = h.iter().map(|p| &p[p.len().saturating_sub(6)..]).collect();
                        format!("{i}:{}", if who.is_empty() { "-".to_string() } else { who.join("+") })
                    })
                    .collect();
                println!("  {} #{:<3} spread {}/{}  {}", s.file, s.stripe, s.spread, r.n, cells.join(" "));
            }
        }
        if !body.card.is_empty() {
            println!("\n{}", body.card.trim_end());
        }
        if r.lost > 0 {
            bail!("{} stripe(s) cannot be rebuilt from the nodes reachable now", r.lost);
        }
        Ok(())
    })
}
