//! What a job reports: each epoch's figures, the final report, and progress events.

use serde::{Deserialize, Serialize};

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
