//! Checkpoints: a small JSON header (position, normaliser, report), then the model and
//! optimizer records, written atomically, so a job resumes mid-epoch on exactly the same
//! sample sequence.

use std::path::Path;

use burn::{module::Module, optim::ModuleOptimizer, tensor::Bytes as BurnBytes};
use serde::{Deserialize, Serialize};

use super::{Normalizer, Report, TrainError};
use crate::model::Model;

/// The small header of a checkpoint (JSON), then the model and optimizer records.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct CheckpointHeader {
    pub(super) fingerprint: String,
    pub(super) epoch: u64,
    pub(super) position: u64,
    pub(super) normalizer: Normalizer,
    pub(super) classes: Option<usize>,
    pub(super) model_len: u64,
    pub(super) optim_len: u64,
    pub(super) report: Report,
}

pub(super) const CHECKPOINT: &str = "checkpoint.cairn";

pub(super) const MAGIC: &[u8; 8] = b"CAIRNCK1";

/// Largest checkpoint header read.
pub(super) const MAX_HEADER: u64 = 16 << 20;

pub(super) fn to_bytes(b: BurnBytes) -> Vec<u8> {
    b.to_vec()
}

#[allow(clippy::too_many_arguments)]
pub(super) fn write_checkpoint(
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

pub(super) fn read_checkpoint(
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
