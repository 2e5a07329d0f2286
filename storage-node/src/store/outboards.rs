//! Each piece's outboard (its BLAKE3 tree, [`proofs::outboard`]) beside its file, so that
//! a challenge reads the sampled leaves and the values its proof sends, not the piece.
//!
//! The outboard sits at the piece's path with [`SUFFIX`]. It is built at the piece's first
//! challenge, from the whole-piece read that challenge needs anyway, not when the piece
//! is stored: building it hashes chunk by chunk (about 1.1 ms per MiB here, 7x the
//! piece's own hash, `benches/proofs.rs` in `proofs`), and a push should not wait for
//! that. It is never trusted: a proof made from it is checked against the piece's id
//! before it is sent, and one that fails is made again from the whole piece, which tells
//! a damaged outboard (written afresh) from a damaged piece (reported corrupt). Outboards
//! are not fsynced: one lost in a crash is rebuilt the same way.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use proofs::{Challenge, Counted, NODE_LEN, Proof, ProofSource, Root};
use tracing::debug;

use super::{PieceStore, StoreError};
use crate::ids::PieceId;

/// What an outboard's file name adds to its piece's.
pub(super) const SUFFIX: &str = ".ob";

/// A proof and what making it read from disk.
#[derive(Debug, Clone)]
pub struct Proven {
    /// The proof, checked against the piece's id.
    pub proof: Proof,
    /// Bytes read from disk to make it: leaves and outboard values, or the whole piece.
    pub disk_bytes: u64,
}

/// A piece file and its outboard file, read at offsets.
struct OnDisk {
    piece: File,
    outboard: File,
}

impl ProofSource for OnDisk {
    fn leaf(&mut self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.piece.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    fn node(&mut self, index: u64) -> io::Result<[u8; NODE_LEN]> {
        let mut buf = [0u8; NODE_LEN];
        let at = index
            .checked_mul(NODE_LEN as u64)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        self.outboard.read_exact_at(&mut buf, at)?;
        Ok(buf)
    }
}

impl PieceStore {
    /// Where piece `id`'s outboard is kept.
    pub(super) fn outboard_path(&self, id: &PieceId) -> PathBuf {
        let mut p = self.piece_path(id).into_os_string();
        p.push(SUFFIX);
        PathBuf::from(p)
    }

    /// Writes the outboard of `bytes` (piece `id`) into place, through a temporary file.
    /// Not fsynced: see the module's notes.
    pub(super) fn write_outboard(&self, id: &PieceId, bytes: &[u8]) -> Result<(), StoreError> {
        let ob = proofs::outboard(bytes);
        if ob.is_empty() {
            return Ok(());
        }
        let dest = self.outboard_path(id);
        let tmp = self.temp_path(&format!("{id}{SUFFIX}"))?;
        let written = (|| {
            let mut f = File::create(&tmp).map_err(StoreError::io("create", &tmp))?;
            f.write_all(&ob).map_err(StoreError::io("write", &tmp))?;
            fs::rename(&tmp, &dest).map_err(StoreError::io("rename into place", &dest))
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written
    }

    /// Removes piece `id`'s outboard, if it has one.
    pub(super) fn remove_outboard(&self, id: &PieceId) {
        let path = self.outboard_path(id);
        if let Err(e) = fs::remove_file(&path)
            && e.kind() != io::ErrorKind::NotFound
        {
            debug!(piece = %id, error = %e, "outboard left behind; removed on the next open");
        }
    }

    /// Answers `challenge` for piece `id` (of `len` bytes, whose file is `path`) from its
    /// outboard: `None` when it has none of the right length or its proof does not check
    /// out, so the caller proves from the whole piece.
    pub(super) fn prove_from_outboard(
        &self,
        id: &PieceId,
        len: u64,
        path: &Path,
        challenge: &Challenge,
    ) -> Option<Proven> {
        let outboard = File::open(self.outboard_path(id)).ok()?;
        if outboard.metadata().ok()?.len() != proofs::outboard_len(len) {
            return None;
        }
        let piece = File::open(path).ok()?;
        // A piece file cut short would pass every challenge sampling before the cut.
        if piece.metadata().ok()?.len() != len {
            return None;
        }
        let mut src = Counted::new(OnDisk { piece, outboard });
        let proof = Proof::create_from(len, challenge, &mut src).ok()?;
        proofs::verify(&Root(id.0), challenge, &proof).ok()?;
        Some(Proven {
            proof,
            disk_bytes: src.read,
        })
    }

    /// The piece whose outboard a file named `name` would be.
    pub(super) fn outboard_of(name: &str) -> Option<PieceId> {
        name.strip_suffix(SUFFIX)?.parse().ok()
    }
}
