//! The piece store: piece bytes in files, metadata in rocksdb.
//!
//! **This is the only module that knows rocksdb.** Everything else sees [`PieceStore`].
//!
//! # Layout
//!
//! ```text
//! DATA_DIR/
//!   db/                      rocksdb: column families `pieces`, `manifests`, `names`
//!                            (each dataset's owner, latest version and its summary),
//!                            `versions`, `refs` (piece ‖ stripe → where a manifest has
//!                            it), `audits` (signed audit records, by time), `repairs`
//!                            (the repair jobs this node has claimed), `publishers`
//!                            (versions and manifest bytes per publisher, held to a quota)
//!                            and `placements` (the placement records of stripes this
//!                            node holds pieces of, by placement key)
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
//! on disk. `put_manifest` writes the manifest, the version entry, its piece references and
//! the dataset's record in one synced batch, so a version is either fully visible, and
//! indexed, or absent.
//! A piece's outboard (`<id>.ob`) is written at its first challenge through `tmp/` and a
//! rename, without fsync: one lost or torn in a crash fails its length or proof check and
//! is written again.
//! On open the store removes `tmp/`, deletes orphans (outboards of pieces not indexed
//! among them), and drops index entries whose file is missing or has the wrong size
//! (reported in [`OpenReport`]).
//!
//! # Files
//!
//! - `mod.rs`: opening, crash recovery, errors.
//! - `pieces.rs`: piece files, their index entries, proofs and scrub.
//! - `outboards.rs`: each piece's outboard, and proofs made from it.
//! - `catalog.rs`: manifests, names, versions, quotas, and the indexes that answer
//!   listings and "is this piece referenced?" without decoding manifests.
//! - `records.rs`: audit records and claimed repair jobs.

mod catalog;
mod outboards;
mod pieces;
mod placements;
mod records;
#[cfg(test)]
mod test_support;

pub use catalog::{DatasetRecord, FoundStripe, MAX_RECORD_LICENSE, StripeRef, VersionRecord};
pub use outboards::Proven;
pub use records::RepairJob;

use std::collections::HashSet;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use proofs::codec::{Reader, Writer};
use rocksdb::{ColumnFamilyDescriptor, DB, IteratorMode, Options, WriteBatch, WriteOptions};
use thiserror::Error;
use tracing::{debug, info, warn};

use crate::ids::{DatasetName, PieceId, PublisherId};
use crate::manifest::ManifestError;

const CF_PIECES: &str = "pieces";
const CF_MANIFESTS: &str = "manifests";
const CF_NAMES: &str = "names";
const CF_VERSIONS: &str = "versions";
const CF_AUDITS: &str = "audits";
const CF_REPAIRS: &str = "repairs";
const CF_PUBLISHERS: &str = "publishers";
const CF_REFS: &str = "refs";
const CF_PLACEMENTS: &str = "placements";
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
    /// Disk the held pieces take, their outboards included (1/16 more): what the
    /// capacity bounds.
    pub used: u64,
    /// Configured capacity, if any.
    pub capacity: Option<u64>,
}

#[derive(Debug, Default)]
struct Accounting {
    pieces: u64,
    bytes: u64,
    /// Room kept for the outboards of the pieces held, built or not yet.
    outboards: u64,
    /// Bytes of pieces being written right now, with their outboards: reserved against
    /// the capacity.
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
    /// Serialises read-compare-write of placement records.
    placements_lock: Mutex<()>,
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
            CF_REFS,
            CF_PLACEMENTS,
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
            placements_lock: Mutex::new(()),
            quota: (MAX_VERSIONS_PER_PUBLISHER, MAX_MANIFEST_BYTES_PER_PUBLISHER),
        };
        let report = store.recover()?;
        store.index_catalog()?;
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

    /// A fresh path in `tmp/` for a file that becomes `name` once written: a random
    /// suffix keeps concurrent writers of one file apart. `tmp/` is emptied on open.
    fn temp_path(&self, name: &str) -> Result<PathBuf, StoreError> {
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce).map_err(|e| StoreError::Io {
            op: "draw temp name",
            path: self.dir.join("tmp"),
            source: io::Error::other(e.to_string()),
        })?;
        Ok(self
            .dir
            .join("tmp")
            .join(format!("{name}.{}", hex::encode(nonce))))
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
        let mut outboards = 0u64;
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
                outboards += proofs::outboard_len(meta.len);
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
                    // A piece file, or a piece's outboard (`<id>.ob`).
                    let known = f
                        .file_name()
                        .and_then(|n| n.to_str())
                        .and_then(|n| n.parse::<PieceId>().ok().or_else(|| Self::outboard_of(n)))
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
        acct.outboards = outboards;
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
}

fn read_dir_paths(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).map_err(StoreError::io("list", dir))? {
        out.push(e.map_err(StoreError::io("list", dir))?.path());
    }
    Ok(out)
}
