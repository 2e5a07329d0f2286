//! What a job is asked to do: the format, the task, the device, the split and the
//! configuration, and what can go wrong.

use std::path::PathBuf;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::{model::ModelKind, samples::SampleError};

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
    pub(super) fn fingerprint(&self, data: &str) -> String {
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
