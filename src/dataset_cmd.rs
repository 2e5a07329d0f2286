//! `cairn dataset push|pull|ls|info`.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

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

pub(crate) fn push(a: PushArgs) -> Result<()> {
    let block = u32::try_from(a.block_size.0).context("--block-size is too large")?;
    let params = ErasureParams::new(a.k, a.m, block).context("invalid --k/--m/--block-size")?;
    let key = publisher_key()?;
    let total: u64 = storage_node::engine::scan(&a.path)
        .with_context(|| format!("cannot read {}", a.path.display()))?
        .iter()
        .map(|f| f.size)
        .sum();
    a.peer.with_client(async |client| {
        let parent = match client.manifest(&a.name, None).await {
            Ok(m) if m.publisher() != key.id() => bail!(
                "{} belongs to publisher {}, and your key ({}) cannot publish new versions of it; choose another name, or push with the owner's key (CAIRN_CONFIG_DIR)",
                a.name,
                m.publisher(),
                key.id()
            ),
            Ok(m) => Some(m.version()),
            Err(storage_node::net::ClientError::NotFound(_)) => None,
            Err(e) => return Err(e).context("cannot look up the dataset's latest version"),
        };
        let opts = EncodeOptions {
            name: a.name.clone(),
            parent,
            license: a.license.clone(),
            params,
            created_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        let bar = bytes_bar(total, "push");
        let b2 = bar.clone();
        let r = client
            .push(&a.path, opts, &key, Arc::new(move |n| b2.inc(n)))
            .await;
        bar.finish_and_clear();
        let r =
            r.with_context(|| format!("push of {} failed; no version was published", a.name))?;
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
fn parse_ref(s: &str) -> Result<(DatasetName, Option<VersionId>)> {
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
    #[command(flatten)]
    peer: PeerArg,
}

pub(crate) fn info(a: InfoArgs) -> Result<()> {
    let (name, version) = parse_ref(&a.dataset)?;
    a.peer.with_client(async |client| {
        let m = client.manifest(&name, version).await?;
        let body = m.body();
        let p = body.params;
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
        let ids: Vec<_> = m.pieces().map(|r| r.id).collect();
        let (_, holders) = client.locate(&ids).await?;
        let (k, n) = (usize::from(p.k()), p.n());
        let (mut full, mut degraded, mut lost, mut min) = (0, 0, 0, usize::MAX);
        let mut at = 0;
        for f in m.files() {
            for s in &f.stripes {
                let r = holders[at..at + s.pieces.len()].iter().filter(|h| !h.is_empty()).count();
                at += s.pieces.len();
                min = min.min(r);
                if r >= n {
                    full += 1;
                } else if r >= k {
                    degraded += 1;
                } else {
                    lost += 1;
                }
            }
        }
        let stripes = full + degraded + lost;
        println!(
            "placement  {stripes} stripes: {full} with all {n} pieces reachable, {degraded} degraded (k..n), {lost} below k; fewest reachable in a stripe: {}",
            if stripes == 0 { 0 } else { min }
        );
        if !body.card.is_empty() {
            println!("\n{}", body.card.trim_end());
        }
        if lost > 0 {
            bail!("{lost} stripe(s) cannot be rebuilt from the nodes reachable now");
        }
        Ok(())
    })
}
