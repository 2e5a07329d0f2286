//! The library API the network builds on: encode a directory into a signed manifest and its
//! pieces, and rebuild files from any `k` pieces per stripe.
//!
//! Neither side knows where pieces go or come from. Encoding hands each piece to a sink
//! (a local store, a network uploader); rebuilding asks a fetch function for pieces. The
//! per-stripe decision "is this piece good, do we have enough, which one next" lives in the
//! sans-IO [`StripeAssembler`], which the network's parallel fetcher will drive as well.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;
use tracing::{debug, warn};

use crate::erasure::{self, ErasureError, ErasureParams, StripeEncoder};
use crate::ids::{DatasetName, IdError, PieceId, RelPath, VersionId};
use crate::manifest::{
    FileEntry, MAX_CARD_LEN, Manifest, ManifestBody, ManifestError, PieceRef, PublisherKey, Stripe,
};

/// A boxed error from a caller's sink or fetcher.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why encoding or rebuilding failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum EngineError {
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
    /// A file name cannot be a dataset path.
    #[error("{}: {source}", path.display())]
    BadPath {
        /// The file.
        path: PathBuf,
        /// Why.
        source: IdError,
    },
    /// A file changed size while it was being read.
    #[error("{} changed while it was being read; retry when it is stable", path.display())]
    FileChanged {
        /// The file.
        path: PathBuf,
    },
    /// The dataset card is too large.
    #[error("dataset card {} is {len} bytes; the limit is {MAX_CARD_LEN}", path.display())]
    CardTooLarge {
        /// The card file.
        path: PathBuf,
        /// Its size.
        len: u64,
    },
    /// Erasure coding failed.
    #[error("stripe {stripe} of {path}: {source}")]
    Erasure {
        /// The file.
        path: String,
        /// The stripe.
        stripe: usize,
        /// Why.
        source: ErasureError,
    },
    /// The manifest could not be built.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The sink refused a piece.
    #[error("storing piece {piece}: {source}")]
    Sink {
        /// The piece.
        piece: PieceId,
        /// Why.
        source: BoxError,
    },
    /// Rebuilt bytes do not match the manifest's file hash.
    #[error("{path}: rebuilt file does not match its hash in the manifest")]
    FileHashMismatch {
        /// The file.
        path: String,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> EngineError + 'a {
    move |source| EngineError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// What to publish.
#[derive(Debug, Clone)]
pub struct EncodeOptions {
    /// `owner/name`.
    pub name: DatasetName,
    /// The version this one follows.
    pub parent: Option<VersionId>,
    /// License text or SPDX id.
    pub license: String,
    /// Erasure parameters.
    pub params: ErasureParams,
    /// Publication time (seconds since the epoch).
    pub created_unix: u64,
}

/// Where a piece sits: file index (in manifest order), stripe, position in the stripe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PieceSlot {
    /// Index into the manifest's files.
    pub file: usize,
    /// Stripe within the file.
    pub stripe: usize,
    /// Position within the stripe: `0..k` data, `k..k+m` parity.
    pub index: usize,
}

/// A file found under the directory being published.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Its dataset path.
    pub path: RelPath,
    /// Where it is on disk.
    pub disk: PathBuf,
    /// Its size when scanned.
    pub size: u64,
}

/// Lists the regular files under `root` (or `root` itself if it is a file), sorted by
/// dataset path. Symbolic links and special files are skipped with a warning.
pub fn scan(root: &Path) -> Result<Vec<SourceFile>, EngineError> {
    let md = fs::metadata(root).map_err(io_err("read", root))?;
    let mut out = Vec::new();
    if md.is_file() {
        let name = root
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let path = name.parse().map_err(|source| EngineError::BadPath {
            path: root.to_path_buf(),
            source,
        })?;
        out.push(SourceFile {
            path,
            disk: root.to_path_buf(),
            size: md.len(),
        });
        return Ok(out);
    }
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
            let entry = entry.map_err(io_err("list", &dir))?;
            let disk = entry.path();
            let ft = entry.file_type().map_err(io_err("stat", &disk))?;
            if ft.is_dir() {
                if dir == root && entry.file_name() == PARTIAL_DIR {
                    warn!(path = %disk.display(), "skipping an unfinished pull's partial files");
                    continue;
                }
                stack.push(disk);
            } else if ft.is_file() {
                let rel = disk.strip_prefix(root).unwrap_or(&disk);
                let rel_str: Option<Vec<&str>> =
                    rel.components().map(|c| c.as_os_str().to_str()).collect();
                let path = rel_str
                    .ok_or_else(|| IdError {
                        what: "path",
                        value: rel.display().to_string(),
                        reason: "not valid UTF-8",
                    })
                    .and_then(|parts| parts.join("/").parse())
                    .map_err(|source| EngineError::BadPath {
                        path: disk.clone(),
                        source,
                    })?;
                let size = entry.metadata().map_err(io_err("stat", &disk))?.len();
                out.push(SourceFile { path, disk, size });
            } else {
                warn!(path = %disk.display(), "skipping symbolic link or special file");
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Encodes `files` (from [`scan`]) into pieces and a signed manifest. Each piece is handed
/// to `sink` as soon as its stripe is encoded, so memory stays at one stripe whatever the
/// dataset size; `progress` receives the number of file bytes consumed after each stripe.
/// The card is the dataset's top-level `README.md`, if it has one.
pub fn encode_files(
    files: &[SourceFile],
    opts: &EncodeOptions,
    key: &PublisherKey,
    mut sink: impl FnMut(PieceSlot, &PieceRef, &[u8]) -> Result<(), BoxError>,
    mut progress: impl FnMut(u64),
) -> Result<Manifest, EngineError> {
    let params = opts.params;
    let mut encoder = StripeEncoder::new(params).map_err(|source| EngineError::Erasure {
        path: String::new(),
        stripe: 0,
        source,
    })?;
    let mut card = String::new();
    let mut entries = Vec::with_capacity(files.len());
    let mut buf = vec![0u8; params.stripe_size() as usize];
    for (fi, src) in files.iter().enumerate() {
        let mut f = File::open(&src.disk).map_err(io_err("open", &src.disk))?;
        let mut hasher = blake3::Hasher::new();
        let mut stripes = Vec::new();
        for (si, l) in params.layout(src.size).enumerate() {
            let chunk = &mut buf[..l.data_len as usize];
            f.read_exact(chunk).map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => EngineError::FileChanged {
                    path: src.disk.clone(),
                },
                _ => io_err("read", &src.disk)(e),
            })?;
            hasher.update(chunk);
            let pieces =
                encoder
                    .encode(chunk, l.block_len)
                    .map_err(|source| EngineError::Erasure {
                        path: src.path.to_string(),
                        stripe: si,
                        source,
                    })?;
            let mut refs = Vec::with_capacity(pieces.len());
            for (pi, piece) in pieces.iter().enumerate() {
                let r = PieceRef {
                    id: PieceId::of(piece),
                    len: l.block_len,
                };
                let slot = PieceSlot {
                    file: fi,
                    stripe: si,
                    index: pi,
                };
                sink(slot, &r, piece).map_err(|source| EngineError::Sink {
                    piece: r.id,
                    source,
                })?;
                refs.push(r);
            }
            stripes.push(Stripe {
                data_len: l.data_len,
                block_len: l.block_len,
                pieces: refs,
            });
            progress(l.data_len);
        }
        if f.read(&mut [0u8; 1]).map_err(io_err("read", &src.disk))? != 0 {
            return Err(EngineError::FileChanged {
                path: src.disk.clone(),
            });
        }
        if src.path.as_str().eq_ignore_ascii_case("README.md") {
            if src.size > MAX_CARD_LEN as u64 {
                return Err(EngineError::CardTooLarge {
                    path: src.disk.clone(),
                    len: src.size,
                });
            }
            card = fs::read_to_string(&src.disk).map_err(io_err("read card", &src.disk))?;
        }
        debug!(path = %src.path, size = src.size, stripes = stripes.len(), "file encoded");
        entries.push(FileEntry {
            path: src.path.clone(),
            size: src.size,
            hash: *hasher.finalize().as_bytes(),
            stripes,
        });
    }
    let body = ManifestBody {
        name: opts.name.clone(),
        parent: opts.parent,
        created_unix: opts.created_unix,
        card,
        license: opts.license.clone(),
        params,
        files: entries,
    };
    Ok(Manifest::sign(body, key)?)
}

/// What became of a piece offered to a [`StripeAssembler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Kept; more are needed.
    Accepted,
    /// Kept; the stripe can now be decoded.
    Complete,
    /// Not needed (already have it, or already have `k`).
    Redundant,
    /// The bytes do not hash to the piece's id: whoever sent them is lying or broken.
    BadHash,
    /// No such piece index in this stripe.
    NoSuchPiece,
}

/// Collects verified pieces of one stripe until any `k` are in hand, then decodes. Pure:
/// callers do the fetching, in whatever order and concurrency they like.
#[derive(Debug)]
pub struct StripeAssembler<'a> {
    params: ErasureParams,
    stripe: &'a Stripe,
    pieces: Vec<Option<Vec<u8>>>,
    have: usize,
    failed: Vec<bool>,
}

impl<'a> StripeAssembler<'a> {
    /// An assembler for `stripe`.
    pub fn new(params: ErasureParams, stripe: &'a Stripe) -> Self {
        let n = stripe.pieces.len();
        Self {
            params,
            stripe,
            pieces: vec![None; n],
            have: 0,
            failed: vec![false; n],
        }
    }

    /// Offers the bytes of piece `index`; they are checked against its id.
    pub fn offer(&mut self, index: usize, bytes: Vec<u8>) -> Offer {
        let Some(r) = self.stripe.pieces.get(index) else {
            return Offer::NoSuchPiece;
        };
        if self.is_ready() || self.pieces[index].is_some() {
            return Offer::Redundant;
        }
        if PieceId::of(&bytes) != r.id {
            self.failed[index] = true;
            return Offer::BadHash;
        }
        self.pieces[index] = Some(bytes);
        self.have += 1;
        if self.is_ready() {
            Offer::Complete
        } else {
            Offer::Accepted
        }
    }

    /// Records that piece `index` could not be had.
    pub fn unavailable(&mut self, index: usize) {
        if let Some(f) = self.failed.get_mut(index) {
            *f = true;
        }
    }

    /// Whether `k` verified pieces are in hand.
    pub fn is_ready(&self) -> bool {
        self.have >= usize::from(self.params.k())
    }

    /// Pieces still worth asking for, data pieces first (they decode for free).
    pub fn wanted(&self) -> Vec<usize> {
        if self.is_ready() {
            return Vec::new();
        }
        (0..self.pieces.len())
            .filter(|&i| self.pieces[i].is_none() && !self.failed[i])
            .collect()
    }

    /// Whether the stripe can still be completed from pieces not yet tried.
    pub fn is_possible(&self) -> bool {
        self.have + self.wanted().len() >= usize::from(self.params.k())
    }

    /// Decodes the stripe's file bytes.
    pub fn finish(self) -> Result<Vec<u8>, ErasureError> {
        let refs: Vec<Option<&[u8]>> = self.pieces.iter().map(|p| p.as_deref()).collect();
        erasure::reconstruct(
            &self.params,
            self.stripe.data_len,
            self.stripe.block_len,
            &refs,
        )
    }
}

/// Rebuilds pieces `want` of `stripe` from the `k` (or more) verified pieces in
/// `have` (`have[i]` is piece `i` or `None`), for repair: decodes the stripe, encodes it
/// again and checks every rebuilt piece against its id before returning it.
pub fn rebuild_pieces(
    params: ErasureParams,
    stripe: &Stripe,
    have: Vec<Option<Vec<u8>>>,
    want: &[usize],
) -> Result<Vec<(usize, Vec<u8>)>, ErasureError> {
    let mut asm = StripeAssembler::new(params, stripe);
    for (i, p) in have.into_iter().enumerate() {
        if let Some(p) = p
            && asm.offer(i, p) == Offer::BadHash
        {
            return Err(ErasureError::Corrupt { index: i });
        }
    }
    let data = asm.finish()?;
    let mut pieces = StripeEncoder::new(params)?.encode(&data, stripe.block_len)?;
    let mut out = Vec::with_capacity(want.len());
    for &i in want {
        let (Some(r), Some(p)) = (stripe.pieces.get(i), pieces.get_mut(i)) else {
            return Err(ErasureError::Corrupt { index: i });
        };
        if PieceId::of(p) != r.id {
            return Err(ErasureError::Corrupt { index: i });
        }
        out.push((i, std::mem::take(p)));
    }
    Ok(out)
}

/// Rebuilds one file of `manifest` into `out`, asking `fetch(stripe, index, piece)` for
/// pieces: data pieces first, parity only for those missing. Every piece is verified
/// before use and the whole file is checked against its hash at the end.
pub fn rebuild_file(
    manifest: &Manifest,
    file: &FileEntry,
    mut fetch: impl FnMut(usize, usize, &PieceRef) -> Option<Vec<u8>>,
    out: &mut impl Write,
) -> Result<(), EngineError> {
    let params = manifest.body().params;
    let mut hasher = blake3::Hasher::new();
    for si in 0..file.stripes.len() {
        let data = decode_stripe(params, file, si, |index, r| {
            fetch(si, index, r).ok_or(index)
        })?;
        hasher.update(&data);
        out.write_all(&data)
            .map_err(io_err("write", Path::new(file.path.as_str())))?;
    }
    if *hasher.finalize().as_bytes() != file.hash {
        return Err(EngineError::FileHashMismatch {
            path: file.path.to_string(),
        });
    }
    Ok(())
}

/// Decodes stripe `si` of `file` from pieces `fetch(index, piece)` returns (an `Err`
/// for a piece it cannot get): data pieces first, parity only for those missing. Every
/// piece is verified before use.
pub fn decode_stripe(
    params: ErasureParams,
    file: &FileEntry,
    si: usize,
    mut fetch: impl FnMut(usize, &PieceRef) -> Result<Vec<u8>, usize>,
) -> Result<Vec<u8>, EngineError> {
    let stripe = &file.stripes[si];
    let mut asm = StripeAssembler::new(params, stripe);
    for index in asm.wanted() {
        if asm.is_ready() {
            break;
        }
        match fetch(index, &stripe.pieces[index]) {
            Ok(bytes) => {
                if asm.offer(index, bytes) == Offer::BadHash {
                    warn!(path = %file.path, stripe = si, index, "piece failed its hash check; ignoring it");
                }
            }
            Err(_) => asm.unavailable(index),
        }
    }
    asm.finish().map_err(|source| EngineError::Erasure {
        path: file.path.to_string(),
        stripe: si,
        source,
    })
}

/// Where `file` goes under `dest`. Refuses any component the platform would read as
/// something other than a plain name.
pub fn target_path(dest: &Path, file: &FileEntry) -> Result<PathBuf, EngineError> {
    let bad = |reason| EngineError::BadPath {
        path: PathBuf::from(file.path.as_str()),
        source: IdError {
            what: "path",
            value: file.path.to_string(),
            reason,
        },
    };
    if file.path.components().next() == Some(PARTIAL_DIR) {
        return Err(bad("the directory name is reserved for unfinished pulls"));
    }
    let mut target = dest.to_path_buf();
    for c in file.path.components() {
        // RelPath already excludes `..`, `/` and empty parts; also refuse anything the
        // platform would read as a prefix or root (a drive letter on Windows).
        let mut parts = Path::new(c).components();
        match (parts.next(), parts.next()) {
            (Some(std::path::Component::Normal(_)), None) => target.push(c),
            _ => return Err(bad("component is not a plain name on this platform")),
        }
    }
    Ok(target)
}

/// Whether `target` already holds exactly `file` (size and hash): a pull that stopped
/// part way skips such files when it runs again.
pub fn is_complete(target: &Path, file: &FileEntry) -> bool {
    match fs::metadata(target) {
        Ok(md) if md.is_file() && md.len() == file.size => {}
        _ => return false,
    }
    let mut h = blake3::Hasher::new();
    File::open(target)
        .and_then(|f| h.update_reader(f).map(|_| ()))
        .is_ok()
        && *h.finalize().as_bytes() == file.hash
}

/// Where a resumable pull keeps a file it has not finished: `DEST/.cairn-partial/<id>`,
/// the id a hash of the file's content hash and path, so no other file or version can be
/// mistaken for it. A dataset may not contain this directory, and `scan` skips it.
pub const PARTIAL_DIR: &str = ".cairn-partial";

/// Named by the file's content hash and its path, so two files with the same bytes keep
/// separate partial files.
fn partial_path(dest: &Path, file: &FileEntry) -> PathBuf {
    let mut h = blake3::Hasher::new();
    h.update(&file.hash);
    h.update(file.path.as_str().as_bytes());
    dest.join(PARTIAL_DIR).join(h.finalize().to_hex().as_str())
}

/// How many leading stripes of `file` an earlier, interrupted pull left in its partial
/// file. Anything past the last whole stripe is cut off, so writing resumes on a stripe
/// boundary. The bytes kept are verified again, as part of the whole file, at the end.
pub fn resume_point(dest: &Path, file: &FileEntry) -> Result<usize, EngineError> {
    let path = partial_path(dest, file);
    let len = match fs::symlink_metadata(&path) {
        Ok(md) if md.is_file() => md.len(),
        Ok(_) => {
            return Err(EngineError::Io {
                op: "resume from",
                path,
                source: io::Error::other("not a regular file; remove it"),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err("stat", &path)(e)),
    };
    let (mut done, mut at) = (0usize, 0u64);
    for s in &file.stripes {
        if at + s.data_len > len {
            break;
        }
        at += s.data_len;
        done += 1;
    }
    if at != len {
        let f = fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        f.set_len(at).map_err(io_err("truncate", &path))?;
    }
    Ok(done)
}

/// Writes the files `plan` names (manifest index, stripes already present from an earlier
/// run) under `dest`, resumably: each is appended to its partial file in
/// [`PARTIAL_DIR`] stripe by stripe from `stripe(file, index)`, then hashed whole,
/// fsynced and renamed into place. A run that stops part way leaves the partial file for
/// the next run to continue; `dest` itself only ever shows whole, verified files.
pub fn restore_resumable(
    manifest: &Manifest,
    dest: &Path,
    plan: &[(usize, usize)],
    mut stripe: impl FnMut(usize, usize) -> Result<Vec<u8>, EngineError>,
    mut progress: impl FnMut(u64),
) -> Result<(), EngineError> {
    let pdir = dest.join(PARTIAL_DIR);
    for &(fi, from) in plan {
        let file = &manifest.files()[fi];
        let target = target_path(dest, file)?;
        let parent = target.parent().unwrap_or(dest).to_path_buf();
        fs::create_dir_all(&parent).map_err(io_err("create directory", &parent))?;
        fs::create_dir_all(&pdir).map_err(io_err("create directory", &pdir))?;
        let part = partial_path(dest, file);
        let mut hasher = blake3::Hasher::new();
        let kept: u64 = file.stripes[..from].iter().map(|s| s.data_len).sum();
        if from > 0 {
            let f = File::open(&part).map_err(io_err("open", &part))?;
            hasher
                .update_reader(f.take(kept))
                .map_err(io_err("read", &part))?;
        }
        let f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&part)
            .map_err(io_err("open", &part))?;
        let mut w = io::BufWriter::with_capacity(1 << 20, f);
        for (si, s) in file.stripes.iter().enumerate().skip(from) {
            let data = stripe(fi, si)?;
            if data.len() as u64 != s.data_len {
                return Err(EngineError::FileHashMismatch {
                    path: file.path.to_string(),
                });
            }
            hasher.update(&data);
            w.write_all(&data).map_err(io_err("write", &part))?;
        }
        let f = w
            .into_inner()
            .map_err(|e| io_err("write", &part)(e.into_error()))?;
        if *hasher.finalize().as_bytes() != file.hash {
            // Whatever is there cannot become this file: start afresh next time.
            drop(f);
            fs::remove_file(&part).ok();
            return Err(EngineError::FileHashMismatch {
                path: file.path.to_string(),
            });
        }
        f.sync_all().map_err(io_err("fsync", &part))?;
        fs::rename(&part, &target).map_err(io_err("rename into place", &target))?;
        File::open(&parent)
            .and_then(|d| d.sync_all())
            .map_err(io_err("fsync directory", &parent))?;
        progress(file.size - kept);
    }
    // Only removed when empty: other pulls into `dest` may be under way.
    fs::remove_dir(&pdir).ok();
    Ok(())
}

/// Rebuilds every file of `manifest` under `dest` (skipping those already there, whole),
/// asking `fetch` for pieces (data
/// pieces first, parity only for those missing, each verified before use). Files are
/// built as [`restore_resumable`] builds them: `dest` only ever shows whole, verified
/// files, and a run that fails part way leaves its partial file for the next to continue.
pub fn restore(
    manifest: &Manifest,
    dest: &Path,
    mut fetch: impl FnMut(&PieceRef) -> Option<Vec<u8>>,
    progress: impl FnMut(u64),
) -> Result<(), EngineError> {
    let params = manifest.body().params;
    let mut plan = Vec::new();
    for (fi, f) in manifest.files().iter().enumerate() {
        if !is_complete(&target_path(dest, f)?, f) {
            plan.push((fi, resume_point(dest, f)?));
        }
    }
    restore_resumable(
        manifest,
        dest,
        &plan,
        |fi, si| {
            let file = &manifest.files()[fi];
            decode_stripe(params, file, si, |index, r| fetch(r).ok_or(index))
        },
        progress,
    )
}
