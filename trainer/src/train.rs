//! The training job: pick the files, index and split them, normalise from the train split,
//! then epochs of batches from the loader into a burn model, with evaluation, metrics and
//! checkpoints that resume mid-epoch on exactly the same sample sequence.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use burn::{
    module::Module,
    nn::loss::{CrossEntropyLossConfig, MseLoss, Reduction},
    optim::{AdamConfig, GradientsParams, ModuleOptimizer},
    store::ModuleRecord,
    tensor::{Bytes as BurnBytes, Device, Int, Tensor, TensorData},
};
use serde::{Deserialize, Serialize};

use crate::{
    loader::{Loader, LoaderInput, for_each},
    model::{Model, ModelKind},
    order::{EpochOrder, OrderConfig},
    samples::{SampleError, Samples, Split},
    source::Source,
};

/// Sample format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Format {
    /// CSV with a header; `label` names the label column.
    Csv {
        /// Label column.
        label: String,
        /// Leave bad rows out instead of failing.
        skip_bad_rows: bool,
    },
    /// IDX images and labels (MNIST layout).
    Idx,
}

/// Classification or regression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Labels are class indices `0..C`; cross-entropy; accuracy.
    Classify,
    /// Labels are numbers; mean squared error; RMSE.
    Regress,
}

/// Where the model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// burn's Flex CPU backend (pure Rust); chosen by measurement, see ARCHITECTURE.md.
    #[default]
    Cpu,
    /// burn's NdArray CPU backend (feature `ndarray`).
    NdArray,
    /// A GPU through wgpu (feature `wgpu`).
    Wgpu,
    /// An NVIDIA GPU through CUDA (feature `cuda`).
    Cuda,
}

impl DeviceKind {
    /// The burn device, with autodiff; an error when this build lacks its feature.
    pub fn device(self) -> Result<Device, TrainError> {
        let missing = |f: &str| {
            TrainError::Config(format!(
                "this cairn was built without GPU support for --device {f}; build it with `cargo build --release --features {f}`"
            ))
        };
        let d = match self {
            Self::Cpu => Device::flex(),
            // Deprecated upstream in favour of Flex; kept only to measure against it.
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)]
            Self::NdArray => Device::ndarray(),
            #[cfg(not(feature = "ndarray"))]
            Self::NdArray => return Err(missing("ndarray")),
            #[cfg(feature = "wgpu")]
            Self::Wgpu => Device::wgpu(Default::default()),
            #[cfg(not(feature = "wgpu"))]
            Self::Wgpu => return Err(missing("wgpu")),
            #[cfg(feature = "cuda")]
            Self::Cuda => Device::cuda(0),
            #[cfg(not(feature = "cuda"))]
            Self::Cuda => return Err(missing("cuda")),
        };
        Ok(d.autodiff())
    }
}

/// How the test split is chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TestSplit {
    /// This fraction of samples, chosen by the seed.
    Fraction(f64),
    /// The files whose path matches this glob (`*`, `?`).
    Files(String),
}

/// Everything a job is told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Format.
    pub format: Format,
    /// Task.
    pub task: Task,
    /// Model.
    pub model: ModelKind,
    /// Epochs.
    pub epochs: u64,
    /// Samples per batch.
    pub batch_size: usize,
    /// Learning rate (Adam).
    pub lr: f64,
    /// Seed of everything random: init, split, order.
    pub seed: u64,
    /// Test split.
    pub test: TestSplit,
    /// Rank and world size.
    pub rank: u64,
    /// World size.
    pub world: u64,
    /// Samples mixed together by the shuffle.
    pub shuffle_window: u64,
    /// Bytes of a shuffle block (samples stored together, read together).
    pub block_bytes: u64,
    /// Bytes of samples asked for ahead of the window being trained on (the reader's
    /// cache must hold them).
    pub prefetch_bytes: u64,
    /// Where checkpoints go; none: no checkpoints.
    pub checkpoint_dir: Option<PathBuf>,
    /// Save a checkpoint every this many batches (and at each epoch's end).
    pub checkpoint_every: u64,
    /// Continue from the checkpoint in `checkpoint_dir`.
    pub resume: bool,
    /// Stop (after a checkpoint) once this many batches ran in this process: for tests of
    /// resumption.
    pub stop_after_batches: Option<u64>,
    /// Record the ids of the training samples seen, in order, in the report (tests).
    pub record_order: bool,
    /// Where the model runs.
    pub device: DeviceKind,
}

impl TrainConfig {
    /// The parts of the configuration, and the data (`data`: [`Source::identity`]), that
    /// a checkpoint must agree with to be resumed.
    fn fingerprint(&self, data: &str) -> String {
        format!(
            "{data}|{:?}|{:?}|{:?}|{}|{}|{}|{:?}|{}|{}|{}|{}",
            self.format,
            self.task,
            self.model,
            self.batch_size,
            self.lr,
            self.seed,
            self.test,
            self.rank,
            self.world,
            self.shuffle_window,
            self.block_bytes
        )
    }
}

/// Errors of a training job.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The data could not be read or parsed.
    #[error(transparent)]
    Data(#[from] SampleError),
    /// The configuration does not fit the data.
    #[error("{0}")]
    Config(String),
    /// A checkpoint could not be written or read.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// One epoch's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// Epoch number, from 0.
    pub epoch: u64,
    /// Mean training loss over the epoch's batches (those run by this process).
    pub train_loss: f64,
    /// Test accuracy (classification).
    pub test_accuracy: Option<f64>,
    /// Test RMSE (regression).
    pub test_rmse: Option<f64>,
    /// Training samples this process ran this epoch.
    pub samples: u64,
    /// Training samples per second (wall time of the epoch's batches).
    pub samples_per_sec: f64,
    /// Bytes fetched from the source for the epoch's training batches.
    pub bytes_fetched: u64,
    /// Seconds the model waited for data.
    pub data_wait_secs: f64,
    /// Seconds of the epoch.
    pub secs: f64,
}

/// What a job did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Per epoch.
    pub epochs: Vec<EpochMetrics>,
    /// Train and test samples.
    pub train_samples: u64,
    /// Test samples.
    pub test_samples: u64,
    /// Classes (classification).
    pub classes: Option<usize>,
    /// Rows left out as bad.
    pub skipped_rows: u64,
    /// True when the job stopped early on `stop_after_batches`.
    pub stopped_early: bool,
    /// Where training resumed from: (epoch, position), if it did.
    pub resumed_from: Option<(u64, u64)>,
    /// The order of the training samples seen, as ids, when asked for (tests).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub seen: Vec<u64>,
}

/// Progress events for a bar.
#[derive(Debug, Clone, Copy)]
pub enum Event {
    /// An epoch starts with this many batches to run.
    EpochStart {
        /// Epoch.
        epoch: u64,
        /// Samples to run this epoch.
        samples: u64,
    },
    /// A batch ran.
    Batch {
        /// Samples in it.
        samples: u64,
        /// Its loss.
        loss: f64,
    },
    /// The epoch ended.
    EpochEnd,
}

/// Normalisation of features, from the train split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalizer {
    /// Per-feature mean.
    pub mean: Vec<f32>,
    /// Per-feature standard deviation (1 where it is 0).
    pub std: Vec<f32>,
}

impl Normalizer {
    fn apply(&self, x: &mut [f32]) {
        let d = self.mean.len().max(1);
        for (i, v) in x.iter_mut().enumerate() {
            *v = (*v - self.mean[i % d]) / self.std[i % d];
        }
    }
}

/// The small header of a checkpoint (JSON), then the model and optimizer records.
#[derive(Debug, Serialize, Deserialize)]
struct CheckpointHeader {
    fingerprint: String,
    epoch: u64,
    position: u64,
    normalizer: Normalizer,
    classes: Option<usize>,
    model_len: u64,
    optim_len: u64,
    report: Report,
}

const CHECKPOINT: &str = "checkpoint.cairn";
const MAGIC: &[u8; 8] = b"CAIRNCK1";
/// Largest checkpoint header read.
const MAX_HEADER: u64 = 16 << 20;

/// What a job reads: the files of a dataset, from either source.
#[derive(Clone)]
pub struct Data {
    /// Where bytes come from.
    pub source: Arc<dyn Source>,
}

impl std::fmt::Debug for Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Data")
            .field("files", &self.source.files().len())
            .finish()
    }
}

/// `*` and `?` glob matching on whole paths.
pub fn glob_match(pat: &str, s: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pat.chars().collect(), s.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// The files a format reads, and (for IDX) their pairing.
fn select(source: &dyn Source, format: &Format) -> Result<Vec<(usize, usize)>, TrainError> {
    let files = source.files();
    let out: Vec<(usize, usize)> = match format {
        Format::Csv { .. } => files
            .iter()
            .enumerate()
            .filter(|(_, f)| f.path.to_ascii_lowercase().ends_with(".csv"))
            .map(|(i, _)| (i, i))
            .collect(),
        Format::Idx => files
            .iter()
            .enumerate()
            .filter(|(_, f)| f.path.contains("images-idx3-ubyte"))
            .filter_map(|(i, f)| {
                let want = f.path.replace("images-idx3-ubyte", "labels-idx1-ubyte");
                files.iter().position(|g| g.path == want).map(|j| (i, j))
            })
            .collect(),
    };
    if out.is_empty() {
        return Err(TrainError::Config(match format {
            Format::Csv { .. } => "the dataset has no .csv files".into(),
            Format::Idx => {
                "the dataset has no IDX pairs (NAME-images-idx3-ubyte with NAME-labels-idx1-ubyte)"
                    .into()
            }
        }));
    }
    Ok(out)
}

fn to_bytes(b: BurnBytes) -> Vec<u8> {
    b.to_vec()
}

/// Runs a job on `data` with `cfg`, reporting progress to `on_event`.
pub fn train(
    cfg: &TrainConfig,
    data: &Data,
    mut on_event: impl FnMut(Event),
) -> Result<Report, TrainError> {
    if cfg.world == 0 || cfg.rank >= cfg.world {
        return Err(TrainError::Config(format!(
            "--rank {} must be below --world-size {}",
            cfg.rank, cfg.world
        )));
    }
    if cfg.epochs == 0 || cfg.batch_size == 0 || !(cfg.lr.is_finite() && cfg.lr > 0.0) {
        return Err(TrainError::Config(
            "--epochs, --batch-size and --lr must be positive".into(),
        ));
    }
    let mut source = data.source.clone();
    if cfg.format == Format::Idx && source.files().iter().any(|f| f.path.ends_with("-ubyte.gz")) {
        source = Arc::new(
            crate::source::Gunzipped::new(source, |p| p.ends_with("-ubyte.gz"))
                .map_err(SampleError::from)?,
        );
    }
    let picked = select(source.as_ref(), &cfg.format)?;
    let samples = match &cfg.format {
        Format::Csv {
            label,
            skip_bad_rows,
        } => {
            let files: Vec<usize> = picked.iter().map(|p| p.0).collect();
            Samples::csv(source.as_ref(), &files, label, *skip_bad_rows)?
        }
        Format::Idx => Samples::idx(source.as_ref(), &picked)?,
    };
    let blocks = samples.blocks(cfg.block_bytes);
    let split = match &cfg.test {
        TestSplit::Fraction(f) => {
            if !(0.0..1.0).contains(f) {
                return Err(TrainError::Config(format!(
                    "--test-fraction {f} must be in [0, 1)"
                )));
            }
            Split::by_fraction(&blocks, *f, cfg.seed)
        }
        TestSplit::Files(glob) => {
            // A sample is a test sample when its (first) file matches.
            let mut test_ranges = Vec::new();
            for b in &blocks {
                let f = samples.spans(b.clone())[0].0;
                if glob_match(glob, &source.files()[f].path) {
                    test_ranges.push(b.clone());
                }
            }
            Split::new(&blocks, |id| {
                test_ranges
                    .iter()
                    .any(|r: &std::ops::Range<u64>| r.contains(&id))
            })
        }
    };
    if split.train.is_empty() {
        return Err(TrainError::Config("no training samples".into()));
    }
    let input = LoaderInput {
        source: source.clone(),
        samples: Arc::new(samples),
        split: Arc::new(split),
        blocks: Arc::new(blocks),
    };
    let dim = input.samples.dim;
    let ckpt = cfg.checkpoint_dir.as_ref().map(|d| d.join(CHECKPOINT));
    let fingerprint = cfg.fingerprint(&source.identity());
    let device = cfg.device.device()?;
    let resumed = match (&ckpt, cfg.resume) {
        (Some(p), true) if p.exists() => Some(read_checkpoint(p, &fingerprint)?),
        (None, true) => {
            return Err(TrainError::Config("--resume needs --checkpoint-dir".into()));
        }
        _ => None,
    };
    // Statistics of the train split (or the checkpoint's).
    let (normalizer, classes) = match &resumed {
        Some((h, ..)) => (h.normalizer.clone(), h.classes),
        None => stats(&input, cfg.task)?,
    };
    let outputs = classes.unwrap_or(1);
    device.seed(cfg.seed);
    let mut model = Model::new(cfg.model, dim, input.samples.image, outputs, &device)
        .map_err(TrainError::Config)?;
    let mut optim: ModuleOptimizer = AdamConfig::new().init();
    let mut report = Report {
        train_samples: input.split.train.len() as u64,
        test_samples: input.split.test.len() as u64,
        classes,
        skipped_rows: input.samples.skipped,
        ..Report::default()
    };
    let (mut epoch0, mut pos0) = (0, 0);
    if let Some((h, m, o)) = resumed {
        model = model
            .try_load_record(
                ModuleRecord::from_bytes(BurnBytes::from_bytes_vec(m)).map_err(|e| {
                    TrainError::Checkpoint {
                        path: ckpt.clone().unwrap_or_default(),
                        reason: e.to_string(),
                    }
                })?,
            )
            .map_err(|e| TrainError::Checkpoint {
                path: ckpt.clone().unwrap_or_default(),
                reason: e.to_string(),
            })?;
        optim = optim
            .from_bytes(BurnBytes::from_bytes_vec(o))
            .map_err(|e| TrainError::Checkpoint {
                path: ckpt.clone().unwrap_or_default(),
                reason: e.to_string(),
            })?;
        (epoch0, pos0) = (h.epoch, h.position);
        report.epochs = h.report.epochs;
        report.seen = h.report.seen;
        report.resumed_from = Some((epoch0, pos0));
    }
    let order_cfg = OrderConfig {
        seed: cfg.seed,
        window: cfg.shuffle_window.max(1),
        rank: cfg.rank,
        world: cfg.world,
    };
    let mut batches_run = 0u64;
    for epoch in epoch0..cfg.epochs {
        let order = EpochOrder::new(&input.split.train_blocks, epoch, order_cfg)
            .map_err(|e| TrainError::Config(e.to_string()))?;
        let start = if epoch == epoch0 { pos0 } else { 0 };
        on_event(Event::EpochStart {
            epoch,
            samples: order.len().saturating_sub(start),
        });
        let fetched0 = source.fetched();
        let t0 = Instant::now();
        let mut loader = Loader::start(
            input.clone(),
            order,
            start,
            cfg.batch_size,
            cfg.prefetch_bytes,
            4,
        )?;
        let (mut loss_sum, mut nb, mut ns) = (0.0f64, 0u64, 0u64);
        let mut position = start;
        while let Some(b) = loader.next_batch() {
            let mut b = b?;
            if cfg.record_order {
                report.seen.extend_from_slice(&b.ids);
            }
            normalizer.apply(&mut b.x);
            let x = Tensor::<2>::from_data(TensorData::new(b.x, [b.n, dim]), &device);
            let logits = model.forward(x);
            let loss = match cfg.task {
                Task::Classify => {
                    let y: Vec<i64> = b.y.iter().map(|&v| v as i64).collect();
                    let y = Tensor::<1, Int>::from_data(TensorData::new(y, [b.n]), &device);
                    CrossEntropyLossConfig::new()
                        .init(&device)
                        .forward(logits, y)
                }
                Task::Regress => {
                    let y = Tensor::<2>::from_data(TensorData::new(b.y, [b.n, 1]), &device);
                    MseLoss::new().forward(logits, y, Reduction::Mean)
                }
            };
            let l: f64 = loss.clone().into_scalar::<f32>().into();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(cfg.lr, model, grads);
            loss_sum += l;
            nb += 1;
            ns += b.n as u64;
            position = b.position;
            batches_run += 1;
            on_event(Event::Batch {
                samples: b.n as u64,
                loss: l,
            });
            let stop = cfg.stop_after_batches.is_some_and(|s| batches_run >= s);
            if let Some(p) = &ckpt
                && (stop || batches_run.is_multiple_of(cfg.checkpoint_every.max(1)))
            {
                write_checkpoint(
                    p,
                    &fingerprint,
                    epoch,
                    position,
                    &normalizer,
                    classes,
                    &model,
                    &optim,
                    &report,
                )?;
            }
            if stop {
                report.stopped_early = true;
                return Ok(report);
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        let wait = loader.waited();
        let fetched = source.fetched() - fetched0;
        let (acc, rmse) = evaluate(&input, &model, &normalizer, cfg.task, &device)?;
        report.epochs.push(EpochMetrics {
            epoch,
            train_loss: if nb > 0 { loss_sum / nb as f64 } else { 0.0 },
            test_accuracy: acc,
            test_rmse: rmse,
            samples: ns,
            samples_per_sec: ns as f64 / secs.max(1e-9),
            bytes_fetched: fetched,
            data_wait_secs: wait.as_secs_f64(),
            secs,
        });
        on_event(Event::EpochEnd);
        let _ = position;
        if let Some(p) = &ckpt {
            write_checkpoint(
                p,
                &fingerprint,
                epoch + 1,
                0,
                &normalizer,
                classes,
                &model,
                &optim,
                &report,
            )?;
        }
    }
    Ok(report)
}

/// Mean and standard deviation per feature, and the class count, over the train split.
fn stats(input: &LoaderInput, task: Task) -> Result<(Normalizer, Option<usize>), TrainError> {
    let d = input.samples.dim;
    let (mut n, mut mean, mut m2) = (0f64, vec![0f64; d], vec![0f64; d]);
    let mut max_label = 0f32;
    let mut bad_label = None;
    for_each(input, &input.split.train, 4096, |x, y| {
        n += 1.0;
        for i in 0..d {
            let v = f64::from(x[i]);
            let delta = v - mean[i];
            mean[i] += delta / n;
            m2[i] += delta * (v - mean[i]);
        }
        if task == Task::Classify {
            if y < 0.0 || y.fract() != 0.0 || y > 65535.0 {
                bad_label.get_or_insert(y);
            }
            max_label = max_label.max(y);
        }
    })?;
    if let Some(y) = bad_label {
        return Err(TrainError::Config(format!(
            "label {y} is not a class index (0, 1, 2, ...); use --task regress for numeric labels"
        )));
    }
    let std: Vec<f32> = m2
        .iter()
        .map(|s| {
            let v = (s / n.max(1.0)).sqrt() as f32;
            if v > 1e-12 { v } else { 1.0 }
        })
        .collect();
    let classes = (task == Task::Classify).then(|| max_label as usize + 1);
    Ok((
        Normalizer {
            mean: mean.iter().map(|&m| m as f32).collect(),
            std,
        },
        classes,
    ))
}

/// Accuracy or RMSE over the test split (none without test samples).
fn evaluate(
    input: &LoaderInput,
    model: &Model,
    norm: &Normalizer,
    task: Task,
    device: &Device,
) -> Result<(Option<f64>, Option<f64>), TrainError> {
    if input.split.test.is_empty() {
        return Ok((None, None));
    }
    let d = input.samples.dim;
    let mut xs: Vec<f32> = Vec::new();
    let mut ys: Vec<f32> = Vec::new();
    let (mut correct, mut sq, mut n) = (0u64, 0f64, 0u64);
    let mut flush = |xs: &mut Vec<f32>, ys: &mut Vec<f32>| {
        let b = ys.len();
        if b == 0 {
            return;
        }
        norm.apply(xs);
        let x = Tensor::<2>::from_data(TensorData::new(std::mem::take(xs), [b, d]), device);
        let out = model
            .forward(x)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap_or_default();
        let k = out.len() / b.max(1);
        for (i, &y) in ys.iter().enumerate() {
            let row = &out[i * k..(i + 1) * k];
            match task {
                Task::Classify => {
                    let best = row
                        .iter()
                        .enumerate()
                        .fold((0, f32::MIN), |a, (j, &v)| if v > a.1 { (j, v) } else { a })
                        .0;
                    correct += u64::from(best as f32 == y);
                }
                Task::Regress => sq += f64::from(row[0] - y).powi(2),
            }
            n += 1;
        }
        ys.clear();
    };
    for_each(input, &input.split.test, 4096, |x, y| {
        xs.extend_from_slice(x);
        ys.push(y);
        if ys.len() == 256 {
            flush(&mut xs, &mut ys);
        }
    })?;
    flush(&mut xs, &mut ys);
    let n = n.max(1) as f64;
    Ok(match task {
        Task::Classify => (Some(correct as f64 / n), None),
        Task::Regress => (None, Some((sq / n).sqrt())),
    })
}

#[allow(clippy::too_many_arguments)]
fn write_checkpoint(
    path: &Path,
    fingerprint: &str,
    epoch: u64,
    position: u64,
    normalizer: &Normalizer,
    classes: Option<usize>,
    model: &Model,
    optim: &ModuleOptimizer,
    report: &Report,
) -> Result<(), TrainError> {
    let err = |reason: String| TrainError::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    let m = to_bytes(
        model
            .clone()
            .into_record()
            .into_bytes()
            .map_err(|e| err(e.to_string()))?,
    );
    let o = to_bytes(optim.into_bytes().map_err(|e| err(e.to_string()))?);
    let header = CheckpointHeader {
        fingerprint: fingerprint.to_string(),
        epoch,
        position,
        normalizer: normalizer.clone(),
        classes,
        model_len: m.len() as u64,
        optim_len: o.len() as u64,
        report: report.clone(),
    };
    let h = serde_json::to_vec(&header).map_err(|e| err(e.to_string()))?;
    let mut buf = Vec::with_capacity(16 + h.len() + m.len() + o.len());
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&(h.len() as u64).to_le_bytes());
    buf.extend_from_slice(&h);
    buf.extend_from_slice(&m);
    buf.extend_from_slice(&o);
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &buf).map_err(|e| err(e.to_string()))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| err(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))?;
    Ok(())
}

fn read_checkpoint(
    path: &Path,
    fingerprint: &str,
) -> Result<(CheckpointHeader, Vec<u8>, Vec<u8>), TrainError> {
    let err = |reason: String| TrainError::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    let buf = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let bad = || err("not a checkpoint, or cut short".into());
    if buf.len() < 16 || &buf[..8] != MAGIC {
        return Err(bad());
    }
    let hl = u64::from_le_bytes(buf[8..16].try_into().map_err(|_| bad())?);
    if hl > MAX_HEADER || 16 + hl > buf.len() as u64 {
        return Err(bad());
    }
    let hl = hl as usize;
    let h: CheckpointHeader =
        serde_json::from_slice(&buf[16..16 + hl]).map_err(|e| err(e.to_string()))?;
    if h.fingerprint != fingerprint {
        return Err(err(
            "it was made with other data (another version or other files) or other settings (model, batch size, lr, seed, split, rank or shuffle); resume with the same ones, or start afresh without --resume".into(),
        ));
    }
    let (ml, ol) = (h.model_len as usize, h.optim_len as usize);
    let rest = &buf[16 + hl..];
    if rest.len() != ml.saturating_add(ol) {
        return Err(bad());
    }
    Ok((h, rest[..ml].to_vec(), rest[ml..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match("test/*.csv", "test/a.csv"));
        assert!(glob_match("*test*", "data/test-00.csv"));
        assert!(glob_match("t?.csv", "t1.csv"));
        assert!(!glob_match("test/*.csv", "train/a.csv"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("a", ""));
    }
}
