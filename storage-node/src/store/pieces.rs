//! Piece files and their index entries: put, read, prove, remove, scrub.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use proofs::{Challenge, Proof, Root};

use super::outboards::Proven;
use rocksdb::{IteratorMode, WriteBatch};
use tracing::{debug, warn};

use super::{CF_PIECES, PieceMeta, PieceStore, Put, ScrubReport, StoreError, StoreStats, sync_dir};
use crate::ids::PieceId;

impl PieceStore {
    /// Stores `bytes` as piece `id`, after checking that they hash to `id`. Storing a piece
    /// that is already held is cheap and returns [`Put::AlreadyHeld`].
    pub fn put_piece(&self, id: PieceId, bytes: &[u8]) -> Result<Put, StoreError> {
        let actual = PieceId::of(bytes);
        if actual != id {
            return Err(StoreError::HashMismatch {
                expected: id,
                actual,
            });
        }
        let len = bytes.len() as u64;
        // The piece and the outboard its first challenge writes beside it.
        let room = len + proofs::outboard_len(len);
        {
            let mut acct = self.lock_acct();
            if acct.busy.contains(&id) {
                return Err(StoreError::Busy(id));
            }
            if self.piece_meta(&id)?.is_some() {
                return Ok(Put::AlreadyHeld);
            }
            if let Some(capacity) = self.capacity {
                let free = capacity.saturating_sub(acct.bytes + acct.outboards + acct.reserved);
                if room > free {
                    return Err(StoreError::CapacityExceeded {
                        needed: room,
                        free,
                        capacity,
                    });
                }
            }
            acct.reserved += room;
            acct.busy.insert(id);
        }
        let result = self.write_piece(id, bytes);
        let mut acct = self.lock_acct();
        acct.busy.remove(&id);
        acct.reserved -= room;
        result.map(|()| {
            acct.pieces += 1;
            acct.bytes += len;
            acct.outboards += room - len;
            Put::Stored
        })
    }

    fn write_piece(&self, id: PieceId, bytes: &[u8]) -> Result<(), StoreError> {
        let meta = PieceMeta {
            len: bytes.len() as u64,
        };
        let tmp = self.temp_path(&id.to_string())?;
        let dest = self.piece_path(&id);
        let shard = dest.parent().unwrap_or(&self.dir).to_path_buf();
        let written = (|| {
            let mut f = File::create(&tmp).map_err(StoreError::io("create", &tmp))?;
            f.write_all(bytes).map_err(StoreError::io("write", &tmp))?;
            f.sync_all().map_err(StoreError::io("fsync", &tmp))?;
            self.ensure_durable_dir(&shard)?;
            fs::rename(&tmp, &dest).map_err(StoreError::io("rename into place", &dest))?;
            sync_dir(&shard)
        })();

        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_PIECES)?, id.as_bytes(), meta.encode());
        if let Err(e) = self.write(batch) {
            let _ = fs::remove_file(&dest);
            return Err(e);
        }
        debug!(piece = %id, len = meta.len, "piece stored");
        Ok(())
    }

    /// Creates a shard directory and fsyncs it into its parents, once per directory, under
    /// a lock: no writer renames into a directory whose own entry is not yet durable.
    fn ensure_durable_dir(&self, shard: &Path) -> Result<(), StoreError> {
        let mut durable = self.durable_dirs.lock().unwrap_or_else(|p| p.into_inner());
        if durable.contains(shard) {
            return Ok(());
        }
        fs::create_dir_all(shard).map_err(StoreError::io("create directory", shard))?;
        for d in shard.ancestors().skip(1).take(2) {
            sync_dir(d)?;
        }
        durable.insert(shard.to_path_buf());
        Ok(())
    }

    /// The index record of `id`, if held.
    pub fn piece_meta(&self, id: &PieceId) -> Result<Option<PieceMeta>, StoreError> {
        match self.db.get_pinned_cf(self.cf(CF_PIECES)?, id.as_bytes())? {
            Some(v) => Ok(Some(PieceMeta::decode(id.as_bytes(), &v)?)),
            None => Ok(None),
        }
    }

    /// Whether `id` is held.
    pub fn has_piece(&self, id: &PieceId) -> Result<bool, StoreError> {
        Ok(self.piece_meta(id)?.is_some())
    }

    fn read_file(&self, id: &PieceId) -> Result<(PieceMeta, Vec<u8>), StoreError> {
        let meta = self.piece_meta(id)?.ok_or(StoreError::PieceNotFound(*id))?;
        let path = self.piece_path(id);
        let bytes = fs::read(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::Corrupt {
                id: *id,
                reason: "file missing".into(),
            },
            _ => StoreError::io("read", &path)(e),
        })?;
        Ok((meta, bytes))
    }

    /// Reads piece `id` as it is on disk, unverified: for a caller that hashes the bytes
    /// anyway and refuses a mismatch (the data plane does, building the outboard it
    /// sends). Everything else reads with [`PieceStore::get_piece`].
    pub fn read_piece(&self, id: &PieceId) -> Result<Vec<u8>, StoreError> {
        Ok(self.read_file(id)?.1)
    }

    /// Reads piece `id`, verifying its bytes against its hash. Corrupt bytes are never
    /// returned.
    pub fn get_piece(&self, id: &PieceId) -> Result<Vec<u8>, StoreError> {
        let (_, bytes) = self.read_file(id)?;
        let actual = PieceId::of(&bytes);
        if actual != *id {
            return Err(StoreError::Corrupt {
                id: *id,
                reason: format!("bytes hash to {actual}"),
            });
        }
        Ok(bytes)
    }

    /// Answers a proof-of-storage challenge for a held piece, checked against the piece's
    /// id before it is returned. It is made from the piece's outboard where it can be
    /// (reading the sampled leaves and the values sent, see `outboards.rs`), else from the
    /// whole piece, whose sibling values cover every byte not sampled: then any corruption
    /// anywhere in the piece shows up as a mismatch, and a corrupt piece is reported
    /// instead of answered. A whole piece that checks out gets its outboard again.
    pub fn prove(&self, challenge: &Challenge) -> Result<Proven, StoreError> {
        let id = PieceId(challenge.piece.0);
        let meta = self.piece_meta(&id)?.ok_or(StoreError::PieceNotFound(id))?;
        // The length is the one committed to when the piece was stored: a challenge for
        // another is refused before anything is read.
        if meta.len != challenge.piece_len {
            return Err(StoreError::BadChallenge {
                id,
                reason: format!(
                    "the piece is {} bytes, the challenge is for {}",
                    meta.len, challenge.piece_len
                ),
            });
        }
        if let Some(p) = self.prove_from_outboard(&id, meta.len, &self.piece_path(&id), challenge) {
            return Ok(p);
        }
        let (_, bytes) = self.read_file(&id)?;
        if bytes.len() as u64 != meta.len {
            return Err(StoreError::Corrupt {
                id,
                reason: format!("{} bytes on disk, {} stored", bytes.len(), meta.len),
            });
        }
        let proof = Proof::create(&bytes, challenge).map_err(|e| StoreError::BadChallenge {
            id,
            reason: e.to_string(),
        })?;
        proofs::verify(&Root(id.0), challenge, &proof).map_err(|e| StoreError::Corrupt {
            id,
            reason: format!("bytes on disk no longer match the piece's hash ({e})"),
        })?;
        if let Err(e) = self.write_outboard(&id, &bytes) {
            warn!(piece = %id, "outboard not written; challenges read the whole piece: {e}");
        }
        // Removed meanwhile: its outboard must not outlive it.
        if !self.has_piece(&id)? {
            self.remove_outboard(&id);
        }
        Ok(Proven {
            proof,
            disk_bytes: bytes.len() as u64,
        })
    }

    /// Removes a piece (index entry first, then the file). Returns whether it was held.
    pub fn remove_piece(&self, id: &PieceId) -> Result<bool, StoreError> {
        let meta = {
            let mut acct = self.lock_acct();
            if acct.busy.contains(id) {
                return Err(StoreError::Busy(*id));
            }
            let Some(meta) = self.piece_meta(id)? else {
                return Ok(false);
            };
            acct.busy.insert(*id);
            meta
        };
        let removed = self.cf(CF_PIECES).and_then(|cf| {
            let mut batch = WriteBatch::default();
            batch.delete_cf(cf, id.as_bytes());
            self.write(batch)
        });
        let mut acct = self.lock_acct();
        acct.busy.remove(id);
        removed?;
        // The index entry is gone, so the piece no longer exists whatever becomes of the
        // file (one that cannot be deleted now is an orphan, removed on the next open).
        acct.pieces = acct.pieces.saturating_sub(1);
        acct.bytes = acct.bytes.saturating_sub(meta.len);
        acct.outboards = acct
            .outboards
            .saturating_sub(proofs::outboard_len(meta.len));
        drop(acct);
        self.remove_outboard(id);
        let path = self.piece_path(id);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                warn!(piece = %id, error = %e, "piece left the index but its file could not be deleted");
            }
        }
        Ok(true)
    }

    /// Every held piece id, in id order.
    pub fn piece_ids(&self) -> Result<Vec<PieceId>, StoreError> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_PIECES)?, IteratorMode::Start)
        {
            let (k, _) = item?;
            if let Ok(id) = <[u8; 32]>::try_from(k.as_ref()) {
                out.push(PieceId(id));
            }
        }
        Ok(out)
    }

    /// Re-hashes every held piece and reports those whose bytes no longer match.
    pub fn scrub(&self) -> Result<ScrubReport, StoreError> {
        let mut report = ScrubReport::default();
        for id in self.piece_ids()? {
            report.checked += 1;
            match self.get_piece(&id) {
                Ok(bytes) => report.bytes += bytes.len() as u64,
                Err(StoreError::Corrupt { reason, .. }) => {
                    warn!(piece = %id, %reason, "scrub found a corrupt piece");
                    report.corrupt.push(id);
                }
                Err(StoreError::PieceNotFound(_)) => report.checked -= 1, // removed meanwhile
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }

    /// Pieces and bytes held, and the capacity.
    pub fn stats(&self) -> StoreStats {
        let acct = self.lock_acct();
        StoreStats {
            pieces: acct.pieces,
            bytes: acct.bytes,
            used: acct.bytes + acct.outboards,
            capacity: self.capacity,
        }
    }
}
