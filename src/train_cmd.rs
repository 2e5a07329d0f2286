//! `cairn train`: a burn model trained on a dataset streamed from the network, or on the
//! same files from a local directory (`--local`), through the same pipeline.

use std::{path::PathBuf, sync::Arc};

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use storage_node::net::{Client, Reader, ReaderStats};
use trainer::{
    disk_cache::DiskCache,
    model::ModelKind,
    source::{LocalSource, NetworkSource, Source},
    train::{Data, DeviceKind, Event, Format, Report, Task, TestSplit, TrainConfig, train},
};

use crate::{dataset_cmd::parse_ref, ui};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatArg {
    Csv,
    Idx,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TaskArg {
    Classify,
    Regress,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DeviceArg {
    Cpu,
    Ndarray,
    Wgpu,
    Cuda,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModelArg {
    Mlp,
    Cnn,
}

#[derive(Debug, clap::Args)]
pub(crate) struct TrainArgs {
    /// `owner/name[@version]` on the network.
    #[arg(long, required_unless_present = "local", conflicts_with = "local")]
    dataset: Option<String>,
    /// Train on the files of this directory instead (the baseline of every comparison).
    #[arg(long)]
    local: Option<PathBuf>,
    /// Sample format: CSV with a header, or IDX (MNIST) images and labels.
    #[arg(long, value_enum)]
    format: FormatArg,
    /// CSV label column.
    #[arg(long, required_if_eq("format", "csv"))]
    label: Option<String>,
    /// Classification (labels 0..C) or regression.
    #[arg(long, value_enum)]
    task: TaskArg,
    /// The model.
    #[arg(long, value_enum, default_value = "mlp")]
    model: ModelArg,
    #[arg(long, default_value_t = 10)]
    epochs: u64,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    #[arg(long, default_value_t = 0.001)]
    lr: f64,
    /// Seed of the initialisation, the split and the order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Hold out this fraction of samples for testing (chosen by the seed).
    #[arg(long, conflicts_with = "test_files")]
    test_fraction: Option<f64>,
    /// Hold out the files matching this glob (`*`, `?`) for testing.
    #[arg(long)]
    test_files: Option<String>,
    /// Leave out CSV rows that do not parse instead of stopping.
    #[arg(long)]
    skip_bad_rows: bool,
    /// Keep checkpoints here (model, optimizer, stream position).
    #[arg(long)]
    checkpoint_dir: Option<PathBuf>,
    /// Save a checkpoint every this many batches (and at every epoch's end).
    #[arg(long, default_value_t = 100)]
    checkpoint_every: u64,
    /// Continue from the checkpoint in --checkpoint-dir, mid-epoch if need be.
    #[arg(long, requires = "checkpoint_dir")]
    resume: bool,
    /// This process's rank among --world-size processes sharing each epoch.
    #[arg(long, default_value_t = 0)]
    rank: u64,
    #[arg(long, default_value_t = 1)]
    world_size: u64,
    /// Samples shuffled together.
    #[arg(long, default_value_t = 4096)]
    shuffle_window: u64,
    /// Bytes of samples shuffled as a unit, on a grid of file offsets: set it to the
    /// dataset's stripe size (k x block size; 16 MiB by default) so each stripe is fetched
    /// once an epoch. The same value gives the same order on --local.
    #[arg(long, default_value_t = ui::Size(16 << 20))]
    shuffle_block: ui::Size,
    /// Bytes of samples fetched ahead of the shuffle window being trained on (at least
    /// one window); --cache must hold them.
    #[arg(long, default_value_t = ui::Size(64 << 20))]
    prefetch: ui::Size,
    /// Bytes of decoded stripes kept in memory (must hold the prefetch).
    #[arg(long, default_value_t = ui::Size(512 << 20))]
    cache: ui::Size,
    /// Also keep fetched stripes on disk in this directory, so later epochs (and later
    /// jobs on the same version) read them from there instead of the network.
    #[arg(long, value_name = "DIR")]
    disk_cache: Option<PathBuf>,
    /// Most bytes the disk cache holds (least recently used out first).
    #[arg(long, value_name = "SIZE", default_value_t = ui::Size(8 << 30))]
    disk_cache_size: ui::Size,
    /// Write per-epoch metrics as JSON here.
    #[arg(long)]
    metrics_out: Option<PathBuf>,
    /// A node to reach the network through (also CAIRN_PEER).
    #[arg(long)]
    peer: Option<String>,
    /// Stop after this many batches (after a checkpoint): for tests of --resume.
    #[arg(long, hide = true)]
    stop_after_batches: Option<u64>,
    /// Write the ids of the training samples seen, in order, into --metrics-out (tests).
    #[arg(long, hide = true)]
    record_order: bool,
    /// Where the model runs: cpu (burn's Flex backend), or ndarray, wgpu, cuda in builds
    /// with those cargo features.
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceArg,
}

fn config(a: &TrainArgs) -> Result<TrainConfig> {
    let format = match a.format {
        FormatArg::Csv => Format::Csv {
            label: a
                .label
                .clone()
                .context("--format csv needs --label COLUMN")?,
            skip_bad_rows: a.skip_bad_rows,
        },
        FormatArg::Idx => Format::Idx,
    };
    let test = match (&a.test_files, a.test_fraction) {
        (Some(g), _) => TestSplit::Files(g.clone()),
        (None, Some(f)) => TestSplit::Fraction(f),
        (None, None) => TestSplit::Fraction(0.1),
    };
    Ok(TrainConfig {
        format,
        task: match a.task {
            TaskArg::Classify => Task::Classify,
            TaskArg::Regress => Task::Regress,
        },
        model: match a.model {
            ModelArg::Mlp => ModelKind::Mlp,
            ModelArg::Cnn => ModelKind::Cnn,
        },
        epochs: a.epochs,
        batch_size: a.batch_size,
        lr: a.lr,
        seed: a.seed,
        test,
        rank: a.rank,
        world: a.world_size,
        shuffle_window: a.shuffle_window,
        block_bytes: a.shuffle_block.0,
        prefetch_bytes: a.prefetch.0,
        checkpoint_dir: a.checkpoint_dir.clone(),
        checkpoint_every: a.checkpoint_every,
        resume: a.resume,
        stop_after_batches: a.stop_after_batches,
        record_order: a.record_order,
        device: match a.device {
            DeviceArg::Cpu => DeviceKind::Cpu,
            DeviceArg::Ndarray => DeviceKind::NdArray,
            DeviceArg::Wgpu => DeviceKind::Wgpu,
            DeviceArg::Cuda => DeviceKind::Cuda,
        },
    })
}

/// A per-epoch bar: samples, loss, samples/s.
pub(crate) fn epoch_bar() -> impl FnMut(Event) + Send {
    let mut bar: Option<ProgressBar> = None;
    let mut loss = 0.0;
    let mut n = 0u64;
    move |e| match e {
        Event::EpochStart { epoch, samples } => {
            let b = ProgressBar::with_draw_target(Some(samples), ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template(
                    "  {prefix:<9} [{bar:30}] {pos}/{len} samples {per_sec} loss {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.set_prefix(format!("epoch {epoch}"));
            bar = Some(b);
            (loss, n) = (0.0, 0);
        }
        Event::Batch { samples, loss: l } => {
            loss += l;
            n += 1;
            if let Some(b) = &bar {
                b.inc(samples);
                b.set_message(format!("{:.4}", loss / n as f64));
            }
        }
        Event::EpochEnd => {
            if let Some(b) = bar.take() {
                b.finish_and_clear();
            }
        }
    }
}

fn print(report: &Report, what: &str) {
    println!(
        "trained on {what}: {} train and {} test samples{}",
        report.train_samples,
        report.test_samples,
        report
            .classes
            .map_or(String::new(), |c| format!(", {c} classes"))
    );
    if let Some((e, p)) = report.resumed_from {
        println!("  resumed at epoch {e}, sample {p}");
    }
    for e in &report.epochs {
        let test = match (e.test_accuracy, e.test_rmse) {
            (Some(a), _) => format!("test accuracy {:.4}", a),
            (_, Some(r)) => format!("test RMSE {:.4}", r),
            _ => "no test split".into(),
        };
        println!(
            "  epoch {:>3}  loss {:.4}  {test}  {:.0} samples/s  {} fetched  waited {:.2} s of {:.2} s",
            e.epoch,
            e.train_loss,
            e.samples_per_sec,
            ui::human(e.bytes_fetched),
            e.data_wait_secs,
            e.secs
        );
    }
    if report.skipped_rows > 0 {
        println!("  {} bad rows left out", report.skipped_rows);
    }
    if report.stopped_early {
        println!("  stopped early; continue with --resume");
    }
}

/// Trains on the files under `dir`.
pub(crate) fn train_local(
    cfg: &TrainConfig,
    dir: &std::path::Path,
    on_event: impl FnMut(Event),
) -> Result<Report> {
    let source: Arc<dyn Source> =
        Arc::new(LocalSource::open(dir).with_context(|| format!("cannot read {}", dir.display()))?);
    Ok(train(cfg, &Data { source }, on_event)?)
}

/// Trains on `dataset` (`owner/name[@version]`) streamed from the network reached through
/// `addr`, keeping up to `cache` bytes of it in memory (and, with `disk`, a directory and
/// its bound, on disk). Returns the report, the version trained on and what the reader
/// fetched from the network.
pub(crate) fn train_network(
    cfg: &TrainConfig,
    addr: libp2p::Multiaddr,
    dataset: &str,
    cache: u64,
    disk: Option<(&std::path::Path, u64)>,
    on_event: impl FnMut(Event) + Send,
) -> Result<(Report, String, ReaderStats)> {
    let disk = disk
        .map(|(dir, max)| DiskCache::open(dir, max).map(Arc::new))
        .transpose()?;
    let (name, version) = parse_ref(dataset)?;
    let rt = ui::runtime()?;
    let handle = rt.handle().clone();
    let (reader, manifest) = rt.block_on(async {
        let client = Client::connect(addr.clone())
            .await
            .with_context(|| format!("cannot reach the network through {addr}"))?;
        let reader = Arc::new(Reader::new(Arc::new(client), cache));
        let m = reader
            .manifest(&name, version)
            .await
            .with_context(|| format!("cannot find {dataset}"))?;
        anyhow::Ok((reader, m))
    })?;
    let what = format!("{}@{}", manifest.name(), manifest.version());
    // The buffer holds the stripes the prefetch horizon touches (up to two partly, at its
    // ends), and those being read.
    let stripe = manifest
        .files()
        .iter()
        .flat_map(|f| f.stripes.iter().map(|s| s.data_len))
        .max()
        .unwrap_or(0);
    let ahead = cfg.prefetch_bytes.saturating_add(4 * stripe);
    let source: Arc<dyn Source> = Arc::new(NetworkSource::new(
        reader.clone(),
        manifest,
        handle,
        ahead,
        disk,
    ));
    // Training blocks on the network from its own threads, never on the runtime's.
    let r = std::thread::scope(|s| {
        s.spawn(|| train(cfg, &Data { source }, on_event))
            .join()
            .map_err(|_| anyhow::anyhow!("the training thread panicked"))
    });
    let stats = reader.stats();
    rt.block_on(reader.client().close());
    Ok((r??, what, stats))
}

pub(crate) fn run(a: TrainArgs) -> Result<()> {
    let cfg = config(&a)?;
    let (report, what, net) = if let Some(dir) = &a.local {
        (
            train_local(&cfg, dir, epoch_bar())?,
            dir.display().to_string(),
            None,
        )
    } else {
        let Some(ds) = &a.dataset else {
            bail!("pass --dataset OWNER/NAME[@VERSION] or --local DIR");
        };
        let addr = ui::bootstrap(a.peer.as_deref())?;
        let disk = a.disk_cache.as_deref().map(|d| (d, a.disk_cache_size.0));
        let (r, what, stats) = train_network(&cfg, addr, ds, a.cache.0, disk, epoch_bar())?;
        (r, what, Some(stats))
    };
    print(&report, &what);
    if let Some(p) = &a.metrics_out {
        let mut json = serde_json::to_value(&report)?;
        if let (Some(s), Some(o)) = (net, json.as_object_mut()) {
            o.insert(
                "network".into(),
                serde_json::json!({
                    "stripes_fetched": s.stripes_fetched,
                    "stripe_hits": s.stripe_hits,
                    "bytes_fetched": s.bytes_fetched,
                    "pieces": s.pieces,
                    "failed_fetches": s.failed_fetches,
                }),
            );
        }
        std::fs::write(p, serde_json::to_vec_pretty(&json)?)
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    Ok(())
}
