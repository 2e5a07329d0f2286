//! The training job: pick the files, index and split them, normalise from the train split,
//! then epochs of batches from the loader into a burn model, with evaluation, metrics and
//! checkpoints that resume mid-epoch on exactly the same sample sequence.
//!
//! Here: the loop, normalising and evaluation. `config.rs` is what a job is asked,
//! `report.rs` what it reports, `checkpoint.rs` the checkpoint format, `select.rs` which
//! files it reads.

use std::{sync::Arc, time::Instant};

use burn::{
    module::Module,
    nn::loss::{CrossEntropyLossConfig, MseLoss, Reduction},
    optim::{AdamConfig, GradientsParams, ModuleOptimizer},
    store::ModuleRecord,
    tensor::{Bytes as BurnBytes, Device, Int, Tensor, TensorData},
};
use serde::{Deserialize, Serialize};

mod checkpoint;
mod config;
mod report;
mod select;

pub use config::{DeviceKind, Format, Task, TestSplit, TrainConfig, TrainError};
pub use report::{EpochMetrics, Event, Report};
pub use select::glob_match;

use checkpoint::{CHECKPOINT, read_checkpoint, write_checkpoint};
use select::select;

use crate::{
    loader::{Loader, LoaderInput, for_each},
    model::Model,
    order::{EpochOrder, OrderConfig},
    samples::{SampleError, Samples, Split},
    source::Source,
};

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
