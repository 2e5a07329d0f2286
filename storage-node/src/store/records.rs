//! What a node keeps of its own upkeep: audit records (made or received) and the repair
//! jobs it has claimed.

use rocksdb::{IteratorMode, WriteBatch};

use super::{CF_AUDITS, CF_REPAIRS, PieceStore, StoreError};
use crate::audit::SignedRecord;
use crate::ids::{StripeId, VersionId};

/// A repair job this node claimed, kept so that it resumes after a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepairJob {
    /// The stripe.
    pub stripe: StripeId,
    /// A version whose manifest contains it.
    pub version: VersionId,
    /// The file's index in that manifest.
    pub file: u32,
    /// The stripe's index in that file.
    pub index: u32,
}

impl PieceStore {
    /// Stores audit records (made or received), keyed by time so the oldest are pruned
    /// first. Records already held are written again harmlessly.
    pub fn put_audit_records(&self, records: &[SignedRecord]) -> Result<(), StoreError> {
        let cf = self.cf(CF_AUDITS)?;
        let mut batch = WriteBatch::default();
        for r in records {
            let mut key = Vec::with_capacity(40);
            key.extend_from_slice(&r.record.time_unix.to_be_bytes());
            key.extend_from_slice(&r.digest());
            batch.put_cf(cf, key, r.encode());
        }
        // Records are evidence, not data: losing the last few to a crash costs nothing
        // that the next rounds do not restore, so they are not synced one by one.
        Ok(self.db.write(batch)?)
    }

    /// Every stored audit record, oldest first; records that no longer decode or verify
    /// are skipped.
    pub fn audit_records(&self) -> Result<Vec<SignedRecord>, StoreError> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_AUDITS)?, IteratorMode::Start)
        {
            let (_, v) = item?;
            if let Ok(r) = SignedRecord::decode_verified(&v) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Deletes the oldest audit records beyond `keep`. Returns how many were deleted.
    pub fn prune_audit_records(&self, keep: usize) -> Result<usize, StoreError> {
        let cf = self.cf(CF_AUDITS)?;
        let total = self.db.iterator_cf(cf, IteratorMode::Start).count();
        let excess = total.saturating_sub(keep);
        if excess == 0 {
            return Ok(0);
        }
        let mut batch = WriteBatch::default();
        for item in self.db.iterator_cf(cf, IteratorMode::Start).take(excess) {
            let (k, _) = item?;
            batch.delete_cf(cf, k);
        }
        self.db.write(batch)?;
        Ok(excess)
    }

    /// Records a claimed repair job (synced: it must survive a crash).
    pub fn put_repair_job(&self, job: &RepairJob) -> Result<(), StoreError> {
        let mut v = Vec::with_capacity(40);
        v.extend_from_slice(&job.version.0);
        v.extend_from_slice(&job.file.to_le_bytes());
        v.extend_from_slice(&job.index.to_le_bytes());
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_REPAIRS)?, job.stripe.0, v);
        self.write(batch)
    }

    /// Forgets a finished (or abandoned) repair job.
    pub fn remove_repair_job(&self, stripe: &StripeId) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.cf(CF_REPAIRS)?, stripe.0);
        self.write(batch)
    }

    /// The repair jobs claimed and not finished.
    pub fn repair_jobs(&self) -> Result<Vec<RepairJob>, StoreError> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_REPAIRS)?, IteratorMode::Start)
        {
            let (k, v) = item?;
            let (Ok(stripe), true) = (<[u8; 32]>::try_from(k.as_ref()), v.len() == 40) else {
                continue;
            };
            let mut version = [0u8; 32];
            version.copy_from_slice(&v[..32]);
            let mut f = [0u8; 4];
            f.copy_from_slice(&v[32..36]);
            let mut i = [0u8; 4];
            i.copy_from_slice(&v[36..40]);
            out.push(RepairJob {
                stripe: StripeId(stripe),
                version: VersionId(version),
                file: u32::from_le_bytes(f),
                index: u32::from_le_bytes(i),
            });
        }
        Ok(out)
    }
}
