//! The piece store: piece bytes in files, metadata in rocksdb.
//!
//! **This is the only module that knows rocksdb.** Everything else sees [`PieceStore`].
//!
//! # Layout
//!
//! ```text
//! DATA_DIR/
//!   db/                      rocksdb: column families `pieces`, `manifests`, `names`,
//!                            `versions`, `audits` (signed audit records, by time),
//!                            `repairs` (the repair jobs this node has claimed) and
//!                            `publishers` (versions and manifest bytes per publisher,
//!                            held to a quota)
//!   pieces/ab/cd/abcd…(64)   one file per piece, named by its BLAKE3 hash, sharded two levels
//!   tmp/                     pieces being written; emptied on open
//! ```
//!
//! # Goals and non-goals
//!
//! - The rocksdb index is the truth: a piece exists iff its index entry does. Files without
//!   an entry are leftovers of a crash and are removed on open.
//! - Piece bytes never enter rocksdb: pieces are large and written once, and files let the
//!   data plane stream them and the OS cache them.
//! - Not a general blob store: pieces are immutable and content addressed, so there is no
//!   overwrite and no partial write path.
//!
//! # Crash consistency and fsync policy
//!
//! `put_piece`: write `tmp/<id>.<nonce>`, fsync it, rename it to its final path, fsync the
//! directory, then commit the index entry in one synced rocksdb write batch. A crash before
//! the batch leaves at most an orphan file (removed on open); after it, the piece is whole
//! on disk. `put_manifest` writes the manifest, the version entry and the dataset's owner
//! and latest version in one synced batch, so a version is either fully visible or absent.
//! On open the store removes `tmp/`, deletes orphans, and drops index entries whose file is
//! missing or has the wrong size (reported in [`OpenReport`]).

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use proofs::codec::{Reader, Writer};
use proofs::{Challenge, Proof, Root};
use rocksdb::{ColumnFamilyDescriptor, DB, IteratorMode, Options, WriteBatch, WriteOptions};
use thiserror::Error;
use tracing::{debug, info, warn};

use crate::audit::SignedRecord;
use crate::ids::{DatasetName, PieceId, PublisherId, StripeId, VersionId};
use crate::manifest::{Manifest, ManifestError};

const CF_PIECES: &str = "pieces";
const CF_MANIFESTS: &str = "manifests";
const CF_NAMES: &str = "names";
const CF_VERSIONS: &str = "versions";
const CF_AUDITS: &str = "audits";
const CF_REPAIRS: &str = "repairs";
const CF_PUBLISHERS: &str = "publishers";
/// Most versions one publisher may have stored on a node.
pub const MAX_VERSIONS_PER_PUBLISHER: u64 = 4096;
/// Most manifest bytes one publisher may have stored on a node.
pub const MAX_MANIFEST_BYTES_PER_PUBLISHER: u64 = 256 << 20;
/// Most audit records kept; older ones are pruned first.
pub const MAX_STORED_RECORDS: usize = 200_000;
const META_VERSION: u8 = 1;

/// Piece store failures.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// rocksdb failed (includes "data dir already in use by another process").
    #[error("metadata database: {0}")]
    Db(String),
    /// Bytes offered for a piece do not hash to its id.
    #[error("piece {expected}: bytes hash to {actual}, refusing them")]
    HashMismatch {
        /// The id the caller claimed.
        expected: PieceId,
        /// What the bytes hash to.
        actual: PieceId,
    },
    /// Storing would exceed the configured capacity.
    #[error(
        "capacity exceeded: piece needs {needed} bytes, {free} of {capacity} free; raise --capacity or free space"
    )]
    CapacityExceeded {
        /// Bytes the piece needs.
        needed: u64,
        /// Bytes free.
        free: u64,
        /// The configured capacity.
        capacity: u64,
    },
    /// The piece is not held here.
    #[error("piece {0} is not stored here")]
    PieceNotFound(PieceId),
    /// The piece on disk no longer matches its hash or commitment.
    #[error("piece {id} is corrupt on disk: {reason}")]
    Corrupt {
        /// The piece.
        id: PieceId,
        /// What is wrong.
        reason: String,
    },
    /// An index record could not be decoded.
    #[error("corrupt index record for {key}: {reason}")]
    CorruptRecord {
        /// The record's key (hex).
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The manifest was rejected.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The dataset name belongs to another publisher.
    #[error("dataset {name} belongs to publisher {owner}; only its key may publish new versions")]
    NotOwner {
        /// The dataset.
        name: DatasetName,
        /// Its owner.
        owner: PublisherId,
    },
    /// The publisher has used up its quota on this node.
    #[error(
        "publisher {publisher} has {versions} versions and {bytes} manifest bytes stored on this node, as many as a publisher may; it was refused another"
    )]
    Quota {
        /// The publisher.
        publisher: PublisherId,
        /// Its versions stored.
        versions: u64,
        /// Its manifest bytes stored.
        bytes: u64,
    },
    /// No such dataset or version.
    #[error("{0} not found")]
    NotFound(String),
    /// The challenge does not fit the piece held (wrong length): the challenger's error, not
    /// evidence against the piece.
    #[error("challenge for piece {id} does not fit the piece held: {reason}")]
    BadChallenge {
        /// The piece.
        id: PieceId,
        /// What does not fit.
        reason: String,
    },
    /// Another caller is writing or removing this piece right now.
    #[error("piece {0} is being written or removed by another request; retry shortly")]
    Busy(PieceId),
}

impl StoreError {
    fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Self + 'a {
        move |source| Self::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

impl From<rocksdb::Error> for StoreError {
    fn from(e: rocksdb::Error) -> Self {
        Self::Db(e.into_string())
    }
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The node's data directory.
    pub dir: PathBuf,
    /// Most piece bytes to hold; `None` for no limit.
    pub capacity: Option<u64>,
}

/// What opening found and mended.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// Pieces in the index.
    pub pieces: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Half-written files removed from `tmp/`.
    pub temp_removed: u64,
    /// Piece files without an index entry (a crash before commit), removed.
    pub orphans_removed: u64,
    /// Index entries whose file was missing or the wrong size, dropped.
    pub lost: Vec<PieceId>,
}

/// What `put_piece` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// The piece was written.
    Stored,
    /// The piece was already held; nothing was written.
    AlreadyHeld,
}

/// A stored piece's index record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PieceMeta {
    /// Length in bytes.
    pub len: u64,
}

impl PieceMeta {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(9);
        w.u8(META_VERSION);
        w.u64(self.len);
        w.into_bytes()
    }

    fn decode(key: &[u8], bytes: &[u8]) -> Result<Self, StoreError> {
        let bad = |e: proofs::DecodeError| StoreError::CorruptRecord {
            key: hex::encode(key),
            reason: e.to_string(),
        };
        let mut r = Reader::new(bytes);
        r.version("piece record", META_VERSION).map_err(bad)?;
        let len = r.u64("length").map_err(bad)?;
        r.finish().map_err(bad)?;
        Ok(Self { len })
    }
}

/// Result of a scrub pass.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScrubReport {
    /// Pieces re-hashed.
    pub checked: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Pieces whose bytes no longer match their id, or whose file is gone.
    pub corrupt: Vec<PieceId>,
}

/// Space accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    /// Pieces held.
    pub pieces: u64,
    /// Bytes held.
    pub bytes: u64,
    /// Configured capacity, if any.
    pub capacity: Option<u64>,
}

/// A dataset's record: who owns the name and which version is latest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatasetRecord {
    /// The publisher that first published the name.
    pub owner: PublisherId,
    /// The most recent version.
    pub latest: VersionId,
    /// Its creation time.
    pub latest_created_unix: u64,
}

#[derive(Debug, Default)]
struct Accounting {
    pieces: u64,
    bytes: u64,
    /// Bytes of pieces being written right now: reserved against the capacity.
    reserved: u64,
    /// Pieces being written or removed right now: one operation per piece at a time.
    busy: HashSet<PieceId>,
}

/// Piece bytes in files and metadata in rocksdb, for one node.
pub struct PieceStore {
    dir: PathBuf,
    db: DB,
    capacity: Option<u64>,
    acct: Mutex<Accounting>,
    /// Shard directories known to be created and fsynced into their parents.
    durable_dirs: Mutex<HashSet<PathBuf>>,
    /// Serialises manifest writes so an ownership check and its write are atomic.
    names_lock: Mutex<()>,
    /// Most versions and manifest bytes per publisher.
    quota: (u64, u64),
}

impl std::fmt::Debug for PieceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PieceStore")
            .field("dir", &self.dir)
            .field("capacity", &self.capacity)
            .finish()
    }
}

fn sync_dir(path: &Path) -> Result<(), StoreError> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io("fsync directory", path))
}

fn cf_options() -> Options {
    let mut o = Options::default();
    // Metadata is small; a contributor's node should not spend 64 MiB per memtable on it.
    o.set_write_buffer_size(4 << 20);
    o
}

impl PieceStore {
    /// Opens (or creates) the store in `opts.dir`, repairing what a crash left behind.
    pub fn open(opts: StoreOptions) -> Result<(Self, OpenReport), StoreError> {
        let dir = opts.dir;
        for sub in ["pieces", "tmp"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(StoreError::io("create directory", &p))?;
        }
        sync_dir(&dir)?;
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_open_files(256);
        db_opts.set_keep_log_file_num(4);
        db_opts.set_write_buffer_size(4 << 20);
        let cfs = [
            CF_PIECES,
            CF_MANIFESTS,
            CF_NAMES,
            CF_VERSIONS,
            CF_AUDITS,
            CF_REPAIRS,
            CF_PUBLISHERS,
        ]
        .map(|n| ColumnFamilyDescriptor::new(n, cf_options()));
        let db = DB::open_cf_descriptors(&db_opts, dir.join("db"), cfs)?;
        let store = Self {
            dir,
            db,
            capacity: opts.capacity,
            acct: Mutex::new(Accounting::default()),
            durable_dirs: Mutex::new(HashSet::new()),
            names_lock: Mutex::new(()),
            quota: (MAX_VERSIONS_PER_PUBLISHER, MAX_MANIFEST_BYTES_PER_PUBLISHER),
        };
        let report = store.recover()?;
        info!(
            dir = %store.dir.display(),
            pieces = report.pieces,
            bytes = report.bytes,
            orphans = report.orphans_removed,
            lost = report.lost.len(),
            "piece store open"
        );
        Ok((store, report))
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| StoreError::Db(format!("column family {name} missing")))
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn piece_path(&self, id: &PieceId) -> PathBuf {
        let h = id.to_string();
        self.dir.join("pieces").join(&h[..2]).join(&h[2..4]).join(h)
    }

    fn recover(&self) -> Result<OpenReport, StoreError> {
        let mut report = OpenReport::default();
        let tmp = self.dir.join("tmp");
        for e in fs::read_dir(&tmp).map_err(StoreError::io("list", &tmp))? {
            let p = e.map_err(StoreError::io("list", &tmp))?.path();
            fs::remove_file(&p).map_err(StoreError::io("remove temp file", &p))?;
            report.temp_removed += 1;
        }

        // Index first: every entry must have its file, whole.
        let cf = self.cf(CF_PIECES)?;
        let mut indexed = HashSet::new();
        let mut drop_batch = WriteBatch::default();
        let mut dropped = 0;
        for item in self.db.iterator_cf(cf, IteratorMode::Start) {
            let (k, v) = item?;
            let parsed = <[u8; 32]>::try_from(k.as_ref())
                .ok()
                .map(PieceId)
                .and_then(|id| PieceMeta::decode(&k, &v).ok().map(|m| (id, m)));
            let Some((id, meta)) = parsed else {
                // One unreadable record must not keep the node from starting: drop it; the
                // file it described becomes an orphan below.
                warn!(key = %hex::encode(&k), "unreadable piece record; dropping it");
                drop_batch.delete_cf(cf, &k);
                dropped += 1;
                continue;
            };
            let path = self.piece_path(&id);
            let whole = match fs::metadata(&path) {
                Ok(md) => md.len() == meta.len,
                Err(e) if e.kind() == io::ErrorKind::NotFound => false,
                // Anything else (permissions, I/O errors) is no evidence of loss: stop rather
                // than forget pieces that may be fine.
                Err(e) => return Err(StoreError::io("stat", &path)(e)),
            };
            if whole {
                report.pieces += 1;
                report.bytes += meta.len;
                indexed.insert(id);
            } else {
                warn!(piece = %id, "indexed piece missing or truncated on disk; dropping it");
                drop_batch.delete_cf(cf, k);
                report.lost.push(id);
                dropped += 1;
            }
        }
        if dropped > 0 {
            self.write(drop_batch)?;
        }

        // Then files: any without an entry never finished committing. Only the sharded
        // layout is walked; anything else under pieces/ is left alone.
        let root = self.dir.join("pieces");
        let mut durable = self.durable_dirs.lock().unwrap_or_else(|p| p.into_inner());
        for a in read_dir_paths(&root)?.into_iter().filter(|p| p.is_dir()) {
            for b in read_dir_paths(&a)?.into_iter().filter(|p| p.is_dir()) {
                for f in read_dir_paths(&b)?.into_iter().filter(|p| p.is_file()) {
                    let known = f
                        .file_name()
                        .and_then(|n| n.to_str())
                        .and_then(|n| n.parse::<PieceId>().ok())
                        .is_some_and(|id| indexed.contains(&id));
                    if !known {
                        debug!(file = %f.display(), "removing orphan piece file");
                        fs::remove_file(&f).map_err(StoreError::io("remove orphan", &f))?;
                        report.orphans_removed += 1;
                    }
                }
                durable.insert(b);
            }
        }
        drop(durable);
        let mut acct = self.lock_acct();
        acct.pieces = report.pieces;
        acct.bytes = report.bytes;
        Ok(report)
    }

    fn lock_acct(&self) -> std::sync::MutexGuard<'_, Accounting> {
        // A panic while holding the lock cannot leave the counters half-updated (each
        // update is a single statement), so a poisoned lock is still consistent.
        self.acct.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        Ok(self.db.write_opt(batch, &wo)?)
    }

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
        {
            let mut acct = self.lock_acct();
            if acct.busy.contains(&id) {
                return Err(StoreError::Busy(id));
            }
            if self.piece_meta(&id)?.is_some() {
                return Ok(Put::AlreadyHeld);
            }
            if let Some(capacity) = self.capacity {
                let free = capacity.saturating_sub(acct.bytes + acct.reserved);
                if len > free {
                    return Err(StoreError::CapacityExceeded {
                        needed: len,
                        free,
                        capacity,
                    });
                }
            }
            acct.reserved += len;
            acct.busy.insert(id);
        }
        let result = self.write_piece(id, bytes);
        let mut acct = self.lock_acct();
        acct.busy.remove(&id);
        acct.reserved -= len;
        result.map(|()| {
            acct.pieces += 1;
            acct.bytes += len;
            Put::Stored
        })
    }

    fn write_piece(&self, id: PieceId, bytes: &[u8]) -> Result<(), StoreError> {
        let meta = PieceMeta {
            len: bytes.len() as u64,
        };
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce).map_err(|e| StoreError::Io {
            op: "draw temp name",
            path: self.dir.join("tmp"),
            source: io::Error::other(e.to_string()),
        })?;
        let tmp = self
            .dir
            .join("tmp")
            .join(format!("{id}.{}", hex::encode(nonce)));
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

    /// Answers a proof-of-storage challenge for a held piece. The proof is made from the
    /// bytes on disk and checked against the piece's id before it is returned: its sibling
    /// values cover every byte not sampled, so any corruption anywhere in the piece shows up
    /// as a mismatch, and a corrupt piece is reported instead of answered.
    pub fn prove(&self, challenge: &Challenge) -> Result<Proof, StoreError> {
        let id = PieceId(challenge.piece.0);
        let (_, bytes) = self.read_file(&id)?;
        let proof = Proof::create(&bytes, challenge).map_err(|e| StoreError::BadChallenge {
            id,
            reason: e.to_string(),
        })?;
        proofs::verify(&Root(id.0), challenge, &proof).map_err(|e| StoreError::Corrupt {
            id,
            reason: format!("bytes on disk no longer match the piece's hash ({e})"),
        })?;
        Ok(proof)
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
        drop(acct);
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
            capacity: self.capacity,
        }
    }

    /// Stores a verified manifest and makes its version visible, atomically. The first
    /// publisher of a name owns it; other keys are refused.
    pub fn put_manifest(&self, manifest: &Manifest) -> Result<bool, StoreError> {
        let _guard = self.names_lock.lock().unwrap_or_else(|p| p.into_inner());
        let version = manifest.version();
        let cf_m = self.cf(CF_MANIFESTS)?;
        if self.db.get_pinned_cf(cf_m, version.as_bytes())?.is_some() {
            return Ok(false);
        }
        let name = manifest.name();
        let created = manifest.body().created_unix;
        let existing = self.dataset(name)?;
        if let Some(rec) = &existing
            && rec.owner != manifest.publisher()
        {
            return Err(StoreError::NotOwner {
                name: name.clone(),
                owner: rec.owner,
            });
        }
        let latest = match existing {
            Some(rec) if (rec.latest_created_unix, rec.latest) > (created, version) => rec,
            _ => DatasetRecord {
                owner: manifest.publisher(),
                latest: version,
                latest_created_unix: created,
            },
        };
        // Every publisher is held to a quota of versions and manifest bytes.
        let publisher = manifest.publisher();
        let (versions, bytes) = self.publisher_usage(&publisher)?;
        let size = manifest.as_bytes().len() as u64;
        if versions >= self.quota.0 || bytes.saturating_add(size) > self.quota.1 {
            return Err(StoreError::Quota {
                publisher,
                versions,
                bytes,
            });
        }
        let mut batch = WriteBatch::default();
        let mut usage = Writer::with_capacity(17);
        usage.u8(META_VERSION);
        usage.u64(versions + 1);
        usage.u64(bytes + size);
        batch.put_cf(
            self.cf(CF_PUBLISHERS)?,
            publisher.as_bytes(),
            usage.into_bytes(),
        );
        batch.put_cf(cf_m, version.as_bytes(), manifest.as_bytes());
        batch.put_cf(
            self.cf(CF_VERSIONS)?,
            version_key(name, created, &version),
            [],
        );
        let mut w = Writer::with_capacity(73);
        w.u8(META_VERSION);
        w.raw(latest.owner.as_bytes());
        w.raw(latest.latest.as_bytes());
        w.u64(latest.latest_created_unix);
        batch.put_cf(self.cf(CF_NAMES)?, name.as_str(), w.into_bytes());
        self.write(batch)?;
        info!(dataset = %name, %version, "manifest stored");
        Ok(true)
    }

    /// Lowers the per-publisher quota, so tests need not store thousands of versions.
    #[cfg(test)]
    pub(crate) fn set_quota(&mut self, versions: u64, bytes: u64) {
        self.quota = (versions, bytes);
    }

    /// How many versions, and how many manifest bytes, `publisher` has stored here.
    pub fn publisher_usage(&self, publisher: &PublisherId) -> Result<(u64, u64), StoreError> {
        let Some(v) = self
            .db
            .get_pinned_cf(self.cf(CF_PUBLISHERS)?, publisher.as_bytes())?
        else {
            return Ok((0, 0));
        };
        let bad = |e: proofs::DecodeError| StoreError::CorruptRecord {
            key: publisher.to_string(),
            reason: e.to_string(),
        };
        let mut r = Reader::new(&v);
        r.version("publisher usage", META_VERSION).map_err(bad)?;
        let usage = (
            r.u64("versions").map_err(bad)?,
            r.u64("bytes").map_err(bad)?,
        );
        r.finish().map_err(bad)?;
        Ok(usage)
    }

    /// The record of a dataset name, if any version is stored.
    pub fn dataset(&self, name: &DatasetName) -> Result<Option<DatasetRecord>, StoreError> {
        let Some(v) = self.db.get_pinned_cf(self.cf(CF_NAMES)?, name.as_str())? else {
            return Ok(None);
        };
        let bad = |e: proofs::DecodeError| StoreError::CorruptRecord {
            key: name.to_string(),
            reason: e.to_string(),
        };
        let mut r = Reader::new(&v);
        r.version("dataset record", META_VERSION).map_err(bad)?;
        let rec = DatasetRecord {
            owner: PublisherId(r.array("owner").map_err(bad)?),
            latest: VersionId(r.array("latest").map_err(bad)?),
            latest_created_unix: r.u64("created").map_err(bad)?,
        };
        r.finish().map_err(bad)?;
        Ok(Some(rec))
    }

    /// A stored manifest by version. Stored manifests are re-verified on read: bytes on
    /// disk are untrusted too.
    pub fn manifest(&self, version: &VersionId) -> Result<Option<Manifest>, StoreError> {
        match self
            .db
            .get_pinned_cf(self.cf(CF_MANIFESTS)?, version.as_bytes())?
        {
            Some(bytes) => Ok(Some(Manifest::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// The manifest of `name` at `version`, or its latest version.
    pub fn resolve(
        &self,
        name: &DatasetName,
        version: Option<&VersionId>,
    ) -> Result<Manifest, StoreError> {
        let version = match version {
            Some(v) => *v,
            None => {
                self.dataset(name)?
                    .ok_or_else(|| StoreError::NotFound(format!("dataset {name}")))?
                    .latest
            }
        };
        match self.manifest(&version)? {
            Some(m) if m.name() == name => Ok(m),
            _ => Err(StoreError::NotFound(format!("version {version} of {name}"))),
        }
    }

    /// Every dataset name with its record, in name order.
    pub fn datasets(&self) -> Result<Vec<(DatasetName, DatasetRecord)>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_NAMES)?, IteratorMode::Start) {
            let (k, _) = item?;
            let Some(name) = std::str::from_utf8(&k).ok().and_then(|s| s.parse().ok()) else {
                continue;
            };
            if let Some(rec) = self.dataset(&name)? {
                out.push((name, rec));
            }
        }
        Ok(out)
    }

    /// The versions of `name`, oldest first.
    pub fn versions(&self, name: &DatasetName) -> Result<Vec<VersionId>, StoreError> {
        let mut prefix = name.as_str().as_bytes().to_vec();
        prefix.push(0);
        let mut out = Vec::new();
        let mode = IteratorMode::From(&prefix, rocksdb::Direction::Forward);
        for item in self.db.iterator_cf(self.cf(CF_VERSIONS)?, mode) {
            let (k, _) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            if let Ok(v) = <[u8; 32]>::try_from(&k[k.len().saturating_sub(32)..]) {
                out.push(VersionId(v));
            }
        }
        Ok(out)
    }
}

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

fn version_key(name: &DatasetName, created: u64, version: &VersionId) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.as_str().len() + 41);
    k.extend_from_slice(name.as_str().as_bytes());
    k.push(0);
    k.extend_from_slice(&created.to_be_bytes());
    k.extend_from_slice(version.as_bytes());
    k
}

fn read_dir_paths(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).map_err(StoreError::io("list", dir))? {
        out.push(e.map_err(StoreError::io("list", dir))?.path());
    }
    Ok(out)
}
