//! Where a training job's bytes come from: a dataset version on the network, or the same
//! files in a local directory. Both answer byte ranges of files by index, so everything
//! above (indexing, order, batches) is the same code either way.

use std::{
    collections::{HashMap, VecDeque},
    ops::Range,
    os::unix::fs::FileExt,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
};

use crate::disk_cache::DiskCache;
use bytes::Bytes;
use futures::{
    FutureExt,
    future::{BoxFuture, Shared},
};
use storage_node::{
    manifest::Manifest,
    net::{ClientError, Reader, reader::stripes_for},
};
use tokio::{runtime::Handle, sync::Semaphore};

/// A file of the dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Its path in the dataset.
    pub path: String,
    /// Bytes.
    pub size: u64,
}

/// Why bytes could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A local file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The network could not deliver (fewer than `k` pieces reachable, ...).
    #[error("cannot read {path} from the network: {reason}")]
    Network {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A range outside the file.
    #[error("{path}: bytes {range:?} are outside its {size} bytes")]
    Range {
        /// The file.
        path: String,
        /// The range asked.
        range: Range<u64>,
        /// The file's size.
        size: u64,
    },
}

/// Byte ranges of a dataset's files.
pub trait Source: Send + Sync {
    /// The files, sorted by path.
    fn files(&self) -> &[FileInfo];
    /// Bytes `range` of file `file`; blocks until they are here.
    fn read(&self, file: usize, range: Range<u64>) -> Result<Bytes, SourceError>;
    /// A hint that `range` of `file` will be read soon; returns at once.
    /// Returns false if it could not start every fetch now (too many in flight): the
    /// caller may hint again later.
    fn prefetch(&self, _file: usize, _range: Range<u64>) -> bool {
        true
    }
    /// Bytes fetched from wherever they live so far.
    fn fetched(&self) -> u64;
    /// What the data is, for checkpoints to refuse other data: by default the files'
    /// paths and sizes.
    fn identity(&self) -> String {
        let mut h = blake3::Hasher::new();
        for f in self.files() {
            h.update(f.path.as_bytes());
            h.update(&[0]);
            h.update(&f.size.to_le_bytes());
        }
        format!("files:{}", h.finalize().to_hex())
    }
}

fn check(f: &FileInfo, range: &Range<u64>) -> Result<(), SourceError> {
    if range.start > range.end || range.end > f.size {
        return Err(SourceError::Range {
            path: f.path.clone(),
            range: range.clone(),
            size: f.size,
        });
    }
    Ok(())
}

/// The files under a local directory.
#[derive(Debug)]
pub struct LocalSource {
    files: Vec<FileInfo>,
    disk: Vec<PathBuf>,
    fetched: AtomicU64,
}

impl LocalSource {
    /// Lists the regular files under `root` as dataset paths, sorted (the same listing a
    /// push makes).
    pub fn open(root: &std::path::Path) -> Result<Self, SourceError> {
        let list = storage_node::engine::scan(root).map_err(|e| SourceError::Io {
            path: root.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(Self {
            files: list
                .iter()
                .map(|f| FileInfo {
                    path: f.path.to_string(),
                    size: f.size,
                })
                .collect(),
            disk: list.into_iter().map(|f| f.disk).collect(),
            fetched: AtomicU64::new(0),
        })
    }
}

impl Source for LocalSource {
    fn files(&self) -> &[FileInfo] {
        &self.files
    }

    fn read(&self, file: usize, range: Range<u64>) -> Result<Bytes, SourceError> {
        let f = &self.files[file];
        check(f, &range)?;
        let io = |source| SourceError::Io {
            path: f.path.clone(),
            source,
        };
        let h = std::fs::File::open(&self.disk[file]).map_err(io)?;
        let mut buf = vec![0u8; usize::try_from(range.end - range.start).unwrap_or(0)];
        h.read_exact_at(&mut buf, range.start).map_err(io)?;
        self.fetched.fetch_add(buf.len() as u64, Relaxed);
        Ok(Bytes::from(buf))
    }

    fn fetched(&self) -> u64 {
        self.fetched.load(Relaxed)
    }
}

/// Stripes fetched ahead at once, at most.
const PREFETCH_INFLIGHT: usize = 8;

/// Stripes fetched ahead, and those being read, bounded in bytes. The reader's cache is
/// for reuse and evicts what it has seen once first (it is scan resistant), which is just
/// what prefetched stripes are; this buffer keeps them until the epoch gets there. When
/// full it lets go of the stripe read least recently, and of a stripe not read yet only
/// when every one in it is unread.
#[derive(Debug, Default)]
struct Ahead {
    /// Each stripe and whether it has been read.
    stripes: HashMap<(usize, usize), (Bytes, bool)>,
    /// Oldest first: insertion, then last read.
    order: VecDeque<(usize, usize)>,
    bytes: u64,
    cap: u64,
}

impl Ahead {
    fn get(&mut self, key: (usize, usize)) -> Option<Bytes> {
        let (b, read) = self.stripes.get_mut(&key)?;
        *read = true;
        let b = b.clone();
        // A few stripes are live at once: a linear search of the order is cheap.
        if let Some(i) = self.order.iter().rposition(|k| *k == key)
            && i + 1 != self.order.len()
        {
            self.order.remove(i);
            self.order.push_back(key);
        }
        Some(b)
    }

    /// Whether a prefetch of `len` bytes fits beside the stripes fetched and not read yet,
    /// leaving room for two being read: prefetching more would push out what is needed.
    fn room_for(&self, len: u64) -> bool {
        let unread: u64 = self
            .stripes
            .values()
            .filter(|(_, read)| !read)
            .map(|(b, _)| b.len() as u64)
            .sum();
        unread + len.saturating_mul(3) <= self.cap
    }

    fn put(&mut self, key: (usize, usize), b: Bytes) {
        if self.stripes.contains_key(&key) || b.len() as u64 > self.cap {
            return;
        }
        while self.bytes + b.len() as u64 > self.cap {
            let at = self
                .order
                .iter()
                .position(|k| self.stripes.get(k).is_some_and(|(_, read)| *read))
                .unwrap_or(0);
            let Some(old) = self.order.remove(at) else {
                break;
            };
            if let Some((x, _)) = self.stripes.remove(&old) {
                self.bytes -= x.len() as u64;
            }
        }
        self.bytes += b.len() as u64;
        self.order.push_back(key);
        self.stripes.insert(key, (b, false));
    }
}

/// A stripe on its way: every read and prefetch of it waits on the one fetch.
type Pending = Shared<BoxFuture<'static, Result<Bytes, String>>>;

/// What a read of a stripe needs, shared with the prefetch tasks.
struct Fetcher {
    reader: Arc<Reader>,
    manifest: Arc<Manifest>,
    disk: Option<Arc<DiskCache>>,
    ahead: Mutex<Ahead>,
    /// Fetches under way, by (file, stripe); at most [`PREFETCH_INFLIGHT`] prefetches and
    /// the loader's one read.
    pending: Mutex<HashMap<(usize, usize), Pending>>,
}

impl Fetcher {
    /// The fetch of stripe `si` of `file`: the one under way, or a new one.
    fn pending(self: &Arc<Self>, file: usize, si: usize) -> Pending {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = p.get(&(file, si)) {
            return f.clone();
        }
        let me = self.clone();
        let f: BoxFuture<'static, Result<Bytes, String>> = Box::pin(async move {
            let r = me.stripe(file, si).await.map_err(|e| e.to_string());
            me.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&(file, si));
            r
        });
        let f = f.shared();
        p.insert((file, si), f.clone());
        f
    }

    fn ahead(&self) -> std::sync::MutexGuard<'_, Ahead> {
        self.ahead.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The disk cache's name for stripe `si` of `file`.
    fn disk_key(&self, file: usize, si: usize) -> String {
        format!("{}-{file}-{si}", self.manifest.version())
    }

    /// Whether stripe `si` of `file` is at hand without the network.
    fn at_hand(&self, file: usize, si: usize) -> bool {
        self.ahead().stripes.contains_key(&(file, si))
            || self.reader.holds(&self.manifest, file, si)
            || self
                .disk
                .as_ref()
                .is_some_and(|d| d.contains(&self.disk_key(file, si)))
    }

    /// Stripe `si` of `file`, whole: from the prefetch buffer, else the disk cache, else
    /// the network (any k pieces, in parallel: an epoch reads every stripe of its blocks,
    /// so one fetch of each is least). What comes from elsewhere goes into the buffer, and
    /// what comes from the network onto disk too.
    async fn stripe(&self, file: usize, si: usize) -> Result<Bytes, ClientError> {
        if let Some(b) = self.ahead().get((file, si)) {
            return Ok(b);
        }
        let key = self.disk_key(file, si);
        // Disk I/O on the blocking pool, never on the runtime's workers.
        let on_disk = match &self.disk {
            Some(d) => {
                let (d, k) = (d.clone(), key.clone());
                tokio::task::spawn_blocking(move || d.get(&k))
                    .await
                    .ok()
                    .flatten()
            }
            None => None,
        };
        let b = match on_disk {
            Some(b) => b,
            None => {
                tracing::debug!(file, stripe = si, "fetching a stripe from the network");
                let b = self.reader.stripe(&self.manifest, file, si).await?;
                if let Some(d) = &self.disk {
                    let (d, bytes) = (d.clone(), b.clone());
                    tokio::task::spawn_blocking(move || d.put(&key, &bytes))
                        .await
                        .ok();
                }
                b
            }
        };
        self.ahead().put((file, si), b.clone());
        Ok(b)
    }
}

/// A dataset version on the network, read through a [`Reader`], with stripes fetched
/// ahead into a bounded buffer of its own and, optionally, a disk cache.
pub struct NetworkSource {
    fetcher: Arc<Fetcher>,
    files: Vec<FileInfo>,
    rt: Handle,
    inflight: Arc<Semaphore>,
}

impl std::fmt::Debug for NetworkSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkSource")
            .field("version", &self.fetcher.manifest.version())
            .field("files", &self.files.len())
            .finish_non_exhaustive()
    }
}

impl NetworkSource {
    /// The files of `manifest`, read through `reader` with tasks on `rt`, keeping up to
    /// `ahead_bytes` of stripes fetched ahead.
    pub fn new(
        reader: Arc<Reader>,
        manifest: Arc<Manifest>,
        rt: Handle,
        ahead_bytes: u64,
        disk: Option<Arc<DiskCache>>,
    ) -> Self {
        let files = manifest
            .files()
            .iter()
            .map(|f| FileInfo {
                path: f.path.to_string(),
                size: f.size,
            })
            .collect();
        Self {
            fetcher: Arc::new(Fetcher {
                reader,
                manifest,
                disk,
                ahead: Mutex::new(Ahead {
                    cap: ahead_bytes,
                    ..Ahead::default()
                }),
                pending: Mutex::default(),
            }),
            files,
            rt,
            inflight: Arc::new(Semaphore::new(PREFETCH_INFLIGHT)),
        }
    }

    /// Whether `r`, a later part of a read that began in an earlier stripe, is a sliver of
    /// stripe `si` that is not at hand: the few bytes of a sample that runs on from the
    /// stripe of its block into the next. That stripe's turn comes later in the epoch;
    /// fetching it whole now would fetch it twice, so the sliver comes alone (the reader
    /// fetches only the data piece it lies in, `1/k` of the stripe).
    fn sliver(&self, file: usize, si: usize, r: &Range<usize>) -> bool {
        let len = self.fetcher.manifest.files()[file].stripes[si].data_len;
        (r.len() as u64).saturating_mul(4) <= len && !self.fetcher.at_hand(file, si)
    }

    fn stripes(&self, file: usize, range: Range<u64>) -> Vec<(usize, Range<usize>)> {
        stripes_for(
            self.fetcher.manifest.files()[file]
                .stripes
                .iter()
                .map(|s| s.data_len),
            range,
        )
    }
}

impl Source for NetworkSource {
    fn files(&self) -> &[FileInfo] {
        &self.files
    }

    /// The files' paths, sizes and content hashes from the signed manifest: another
    /// version with other bytes is other data, even with the same names and sizes.
    fn identity(&self) -> String {
        let mut h = blake3::Hasher::new();
        for f in &self.files {
            h.update(f.path.as_bytes());
            h.update(&[0]);
            h.update(&f.size.to_le_bytes());
            if let Some(e) = self
                .fetcher
                .manifest
                .files()
                .iter()
                .find(|e| e.path.as_str() == f.path)
            {
                h.update(&e.hash);
            }
        }
        format!("manifest-files:{}", h.finalize().to_hex())
    }

    fn read(&self, file: usize, range: Range<u64>) -> Result<Bytes, SourceError> {
        let f = &self.files[file];
        check(f, &range)?;
        let parts = self.stripes(file, range);
        let mut out: Vec<Bytes> = Vec::with_capacity(parts.len());
        for (n, (si, r)) in parts.into_iter().enumerate() {
            let net = |reason: String| SourceError::Network {
                path: f.path.clone(),
                reason,
            };
            if n > 0 && self.sliver(file, si, &r) {
                let b = self
                    .rt
                    .block_on(
                        self.fetcher
                            .reader
                            .range(&self.fetcher.manifest, file, si, r),
                    )
                    .map_err(|e| net(e.to_string()))?;
                out.push(b);
                continue;
            }
            // Bound first: the buffer's lock must not be held across the fetch.
            let buffered = self.fetcher.ahead().get((file, si));
            let b = match buffered {
                Some(b) => b,
                None => self
                    .rt
                    .block_on(self.fetcher.pending(file, si))
                    .map_err(net)?,
            };
            if r.start > r.end || r.end > b.len() {
                return Err(net(format!(
                    "stripe {si} holds {} bytes, {r:?} asked",
                    b.len()
                )));
            }
            out.push(b.slice(r));
        }
        Ok(match out.len() {
            1 => out.pop().unwrap_or_default(),
            _ => Bytes::from(out.concat()),
        })
    }

    fn prefetch(&self, file: usize, range: Range<u64>) -> bool {
        if file >= self.files.len() || range.end > self.files[file].size {
            return true;
        }
        for (n, (si, r)) in self.stripes(file, range).into_iter().enumerate() {
            if n > 0 && self.sliver(file, si, &r) {
                let Ok(permit) = self.inflight.clone().try_acquire_owned() else {
                    return false;
                };
                let f = self.fetcher.clone();
                self.rt.spawn(async move {
                    let _ = f.reader.range(&f.manifest, file, si, r).await;
                    drop(permit);
                });
                continue;
            }
            let busy = self
                .fetcher
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(&(file, si));
            if busy || self.fetcher.at_hand(file, si) {
                continue;
            }
            let len = self.fetcher.manifest.files()[file].stripes[si].data_len;
            if !self.fetcher.ahead().room_for(len) {
                return false;
            }
            let Ok(permit) = self.inflight.clone().try_acquire_owned() else {
                return false;
            };
            let f = self.fetcher.pending(file, si);
            self.rt.spawn(async move {
                // An error here is met again, and reported, by the read that needs it.
                let _ = f.await;
                drop(permit);
            });
        }
        true
    }

    fn fetched(&self) -> u64 {
        self.fetcher.reader.stats().bytes_fetched
    }
}

/// Largest decompressed size of one gzipped file.
const MAX_GUNZIPPED: u64 = 4 << 30;

/// A source whose `.gz` files (those `pick` selects) are served decompressed, under their
/// name without `.gz`. Gzip has no random access, so each is decompressed once, whole, into
/// memory when the source is made; other files pass through.
pub struct Gunzipped {
    inner: Arc<dyn Source>,
    files: Vec<FileInfo>,
    /// Per file: the decompressed bytes, or `None` to read through.
    plain: Vec<Option<Bytes>>,
}

impl std::fmt::Debug for Gunzipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gunzipped")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl Gunzipped {
    /// Wraps `inner`, decompressing the `.gz` files for which `pick` says yes.
    pub fn new(inner: Arc<dyn Source>, pick: impl Fn(&str) -> bool) -> Result<Self, SourceError> {
        let mut files = Vec::new();
        let mut plain = Vec::new();
        for (i, f) in inner.files().iter().enumerate() {
            match f.path.strip_suffix(".gz") {
                Some(stem) if pick(&f.path) => {
                    let raw = inner.read(i, 0..f.size)?;
                    let mut out = Vec::new();
                    let mut d = std::io::Read::take(
                        flate2::read::GzDecoder::new(&raw[..]),
                        MAX_GUNZIPPED + 1,
                    );
                    std::io::Read::read_to_end(&mut d, &mut out).map_err(|e| SourceError::Io {
                        path: f.path.clone(),
                        source: e,
                    })?;
                    if out.len() as u64 > MAX_GUNZIPPED {
                        return Err(SourceError::Io {
                            path: f.path.clone(),
                            source: std::io::Error::other(format!(
                                "decompresses to more than {MAX_GUNZIPPED} bytes"
                            )),
                        });
                    }
                    files.push(FileInfo {
                        path: stem.to_string(),
                        size: out.len() as u64,
                    });
                    plain.push(Some(Bytes::from(out)));
                }
                _ => {
                    files.push(f.clone());
                    plain.push(None);
                }
            }
        }
        Ok(Self {
            inner,
            files,
            plain,
        })
    }
}

impl Source for Gunzipped {
    fn files(&self) -> &[FileInfo] {
        &self.files
    }

    fn read(&self, file: usize, range: Range<u64>) -> Result<Bytes, SourceError> {
        check(&self.files[file], &range)?;
        match &self.plain[file] {
            Some(b) => Ok(b.slice(range.start as usize..range.end as usize)),
            None => self.inner.read(file, range),
        }
    }

    fn prefetch(&self, file: usize, range: Range<u64>) -> bool {
        self.plain[file].is_some() || self.inner.prefetch(file, range)
    }

    fn fetched(&self) -> u64 {
        self.inner.fetched()
    }
}

#[cfg(test)]
mod ahead_tests {
    use super::*;

    #[test]
    fn stripes_not_read_yet_outlive_those_read() {
        let mut a = Ahead {
            cap: 30,
            ..Ahead::default()
        };
        let s = |n: u8| Bytes::from(vec![n; 10]);
        a.put((0, 0), s(0));
        a.put((0, 1), s(1));
        a.put((0, 2), s(2));
        // Stripe 2 is being read; 0 and 1 were prefetched and not read yet.
        assert!(a.get((0, 2)).is_some());
        a.put((0, 3), s(3));
        // The read one went, not the older unread ones.
        assert!(a.stripes.contains_key(&(0, 0)) && a.stripes.contains_key(&(0, 1)));
        assert!(!a.stripes.contains_key(&(0, 2)));
        // With nothing read, the oldest goes.
        a.put((0, 4), s(4));
        assert!(!a.stripes.contains_key(&(0, 0)));
        assert_eq!(a.bytes, 30);
        // Larger than the whole buffer: not kept.
        a.put((1, 0), Bytes::from(vec![0; 31]));
        assert!(!a.stripes.contains_key(&(1, 0)));
    }
}
