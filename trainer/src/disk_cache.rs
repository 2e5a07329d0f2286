//! A cache of decoded stripes on local disk, bounded in bytes, least recently used out
//! first: a dataset larger than memory is fetched from the network once and later epochs
//! (and later jobs on the same version) read it from disk.
//!
//! Entries are keyed by version id, file and stripe, so an entry can never stand for other
//! bytes than its key names: versions are content addressed. Each file holds the BLAKE3
//! hash of its bytes before them, written to a temporary file and renamed into place; a
//! read that does not hash right (a torn write, a bad disk) is a miss and the file is
//! removed. Files on disk are never trusted further than that.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::Mutex,
};

use bytes::Bytes;

/// Why the cache could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("disk cache {}: {source}", dir.display())]
pub struct DiskCacheError {
    /// The directory.
    pub dir: PathBuf,
    /// Why.
    pub source: std::io::Error,
}

const SUFFIX: &str = ".stripe";
const HEADER: usize = 32;

#[derive(Debug, Default)]
struct Index {
    /// Use order: tick → name.
    order: BTreeMap<u64, String>,
    /// Name → (tick, bytes on disk).
    entries: HashMap<String, (u64, u64)>,
    used: u64,
    tick: u64,
}

impl Index {
    fn touch(&mut self, name: &str) {
        if let Some((t, _)) = self.entries.get_mut(name) {
            self.order.remove(t);
            self.tick += 1;
            *t = self.tick;
            self.order.insert(self.tick, name.to_string());
        }
    }

    fn insert(&mut self, name: String, len: u64) {
        self.remove(&name);
        self.tick += 1;
        self.order.insert(self.tick, name.clone());
        self.entries.insert(name, (self.tick, len));
        self.used += len;
    }

    fn remove(&mut self, name: &str) -> bool {
        match self.entries.remove(name) {
            Some((t, len)) => {
                self.order.remove(&t);
                self.used -= len;
                true
            }
            None => false,
        }
    }

    fn oldest(&self) -> Option<String> {
        self.order.values().next().cloned()
    }
}

/// Decoded stripes on disk; see the module docs.
#[derive(Debug)]
pub struct DiskCache {
    dir: PathBuf,
    max: u64,
    index: Mutex<Index>,
}

impl DiskCache {
    /// Opens (creating it if need be) a cache in `dir` holding at most `max_bytes`. What
    /// an earlier job left there is kept, oldest first out, up to the bound.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, DiskCacheError> {
        let err = |source| DiskCacheError {
            dir: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        let mut found: Vec<(std::time::SystemTime, String, u64)> = Vec::new();
        for e in std::fs::read_dir(dir).map_err(err)?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(meta) = e.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            if name.ends_with(SUFFIX) {
                let t = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
                found.push((t, name, meta.len()));
            } else if name.ends_with(".tmp") {
                // A write cut short by a crash.
                std::fs::remove_file(e.path()).ok();
            }
        }
        found.sort();
        let cache = Self {
            dir: dir.to_path_buf(),
            max: max_bytes,
            index: Mutex::new(Index::default()),
        };
        {
            let mut ix = cache.lock();
            for (_, name, len) in found {
                ix.insert(name, len);
            }
            cache.evict(&mut ix);
        }
        Ok(cache)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn evict(&self, ix: &mut Index) {
        while ix.used > self.max {
            let Some(name) = ix.oldest() else { break };
            ix.remove(&name);
            std::fs::remove_file(self.dir.join(&name)).ok();
        }
    }

    /// The bytes stored under `key` (a file-name-safe string), if they are there and
    /// intact.
    pub fn get(&self, key: &str) -> Option<Bytes> {
        let name = format!("{key}{SUFFIX}");
        if !self.lock().entries.contains_key(&name) {
            return None;
        }
        let path = self.dir.join(&name);
        let ok = std::fs::read(&path)
            .ok()
            .filter(|b| b.len() >= HEADER && blake3::hash(&b[HEADER..]).as_bytes() == &b[..HEADER]);
        let mut ix = self.lock();
        match ok {
            Some(b) => {
                ix.touch(&name);
                Some(Bytes::from(b).slice(HEADER..))
            }
            None => {
                tracing::warn!(file = %path.display(), "disk cache entry is damaged; fetching it again");
                ix.remove(&name);
                std::fs::remove_file(&path).ok();
                None
            }
        }
    }

    /// Stores `data` under `key`, evicting the least recently used entries to stay within
    /// the bound. A write that fails leaves no entry (the cache is an optimisation).
    pub fn put(&self, key: &str, data: &[u8]) {
        let len = (HEADER + data.len()) as u64;
        if len > self.max {
            return;
        }
        let name = format!("{key}{SUFFIX}");
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!("{key}.{}.tmp", std::process::id()));
        let written = (|| -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(blake3::hash(data).as_bytes())?;
            f.write_all(data)?;
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = written {
            tracing::warn!(file = %path.display(), "cannot write to the disk cache: {e}");
            std::fs::remove_file(&tmp).ok();
            return;
        }
        let mut ix = self.lock();
        ix.insert(name, len);
        self.evict(&mut ix);
    }

    /// Whether an entry for `key` is on disk (not checked until it is read).
    pub fn contains(&self, key: &str) -> bool {
        self.lock().entries.contains_key(&format!("{key}{SUFFIX}"))
    }

    /// Bytes on disk now.
    pub fn used(&self) -> u64 {
        self.lock().used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_least_recently_used_and_kept_across_opens() {
        let dir = tempfile::tempdir().unwrap();
        let c = DiskCache::open(dir.path(), 3 * (HEADER as u64 + 100)).unwrap();
        for k in ["a", "b", "c"] {
            c.put(k, &[k.as_bytes()[0]; 100]);
        }
        assert_eq!(c.get("a").unwrap(), Bytes::from(vec![b'a'; 100]));
        // "b" is now the least recently used: a fourth entry pushes it out.
        c.put("d", &[b'd'; 100]);
        assert!(c.get("b").is_none());
        assert!(c.get("a").is_some() && c.get("c").is_some() && c.get("d").is_some());
        assert_eq!(c.used(), 3 * (HEADER as u64 + 100));
        // Too large for the whole cache: not stored, nothing evicted.
        c.put("huge", &[0; 1000]);
        assert!(c.get("huge").is_none() && c.get("a").is_some());
        drop(c);
        let c = DiskCache::open(dir.path(), 3 * (HEADER as u64 + 100)).unwrap();
        assert_eq!(c.get("d").unwrap(), Bytes::from(vec![b'd'; 100]));
        // Reopened smaller: the oldest go.
        drop(c);
        let c = DiskCache::open(dir.path(), HEADER as u64 + 100).unwrap();
        assert_eq!(c.used(), HEADER as u64 + 100);
    }

    #[test]
    fn damaged_entries_are_misses_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let c = DiskCache::open(dir.path(), 1 << 20).unwrap();
        c.put("x", b"hello stripe");
        let p = dir.path().join("x.stripe");
        let mut b = std::fs::read(&p).unwrap();
        let last = b.len() - 1;
        b[last] ^= 1;
        std::fs::write(&p, &b).unwrap();
        assert!(c.get("x").is_none());
        assert!(!p.exists());
        assert_eq!(c.used(), 0);
        // A truncated file, and leftovers of a crashed write, are dealt with on open.
        c.put("y", b"another");
        std::fs::write(dir.path().join("y.stripe"), b"short").unwrap();
        std::fs::write(dir.path().join("z.123.tmp"), b"partial").unwrap();
        drop(c);
        let c = DiskCache::open(dir.path(), 1 << 20).unwrap();
        assert!(c.get("y").is_none());
        assert!(!dir.path().join("z.123.tmp").exists());
    }
}
