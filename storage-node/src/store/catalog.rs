//! Manifests, dataset names and their versions, and the indexes that let a node answer
//! listings and know which pieces are referenced without decoding any manifest.
//!
//! - `names`: per dataset, its owner, latest version and a summary of it (size, files,
//!   license) and its number of versions. A listing reads these records alone.
//! - `versions`: per version, `name ‖ 0 ‖ created ‖ version`, with its size and files, so
//!   a dataset's history is read without its manifests.
//! - `refs`: one key per (piece, stripe) of every stored manifest, `piece ‖ stripe`, whose
//!   value points at one manifest, file and stripe index that contain it. Whether a piece
//!   is referenced is one seek; the stripes of the pieces a node holds are found from
//!   its pieces, not from every manifest.
//!
//! All three are written in the batch that stores the manifest, so they are never behind
//! it.
//! A store written before these indexes existed is indexed once when it is opened.

use std::collections::{BTreeMap, HashMap};

use proofs::codec::{Reader, Writer};
use rocksdb::{IteratorMode, WriteBatch};
use tracing::{info, warn};

use super::{
    CF_MANIFESTS, CF_NAMES, CF_PUBLISHERS, CF_REFS, CF_VERSIONS, META_VERSION, PieceStore,
    StoreError,
};
use crate::erasure::ErasureParams;
use crate::ids::{DatasetName, PieceId, PublisherId, StripeId, VersionId};
use crate::manifest::{Manifest, Stripe};
use crate::repair;

/// The layout of a `names` record.
const NAME_RECORD_VERSION: u8 = 2;
/// The layout of a `versions` value.
const VERSION_RECORD_VERSION: u8 = 1;
/// The layout of a `refs` value.
const REF_VERSION: u8 = 1;
/// The key in the default column family that records which index layout is built.
const INDEX_KEY: &[u8] = b"catalog-index";
/// The index layout this code builds; a store with an older one is indexed again.
const INDEX_VERSION: u8 = 2;
/// Longest license text kept in a dataset's record (the manifest has the whole text).
pub const MAX_RECORD_LICENSE: usize = 200;

/// A dataset's record: who owns the name, which version is latest, and what that version
/// holds, so that listings need no manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetRecord {
    /// The publisher that first published the name.
    pub owner: PublisherId,
    /// The most recent version.
    pub latest: VersionId,
    /// Its creation time.
    pub latest_created_unix: u64,
    /// Versions stored.
    pub versions: u64,
    /// Bytes in the latest version's files.
    pub size: u64,
    /// Files in the latest version.
    pub files: u64,
    /// The latest version's license, cut to [`MAX_RECORD_LICENSE`] characters.
    pub license: String,
}

impl DatasetRecord {
    fn of_latest(m: &Manifest, versions: u64) -> Self {
        Self {
            owner: m.publisher(),
            latest: m.version(),
            latest_created_unix: m.body().created_unix,
            versions,
            size: m.total_size(),
            files: m.files().len() as u64,
            license: m.body().license.chars().take(MAX_RECORD_LICENSE).collect(),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(113 + self.license.len());
        w.u8(NAME_RECORD_VERSION);
        w.raw(self.owner.as_bytes());
        w.raw(self.latest.as_bytes());
        w.u64(self.latest_created_unix);
        w.u64(self.versions);
        w.u64(self.size);
        w.u64(self.files);
        w.str(&self.license);
        w.into_bytes()
    }

    fn decode(name: &DatasetName, bytes: &[u8]) -> Result<Self, StoreError> {
        let bad = |e: proofs::DecodeError| StoreError::CorruptRecord {
            key: name.to_string(),
            reason: e.to_string(),
        };
        let mut r = Reader::new(bytes);
        r.version("dataset record", NAME_RECORD_VERSION)
            .map_err(bad)?;
        let rec = Self {
            owner: PublisherId(r.array("owner").map_err(bad)?),
            latest: VersionId(r.array("latest").map_err(bad)?),
            latest_created_unix: r.u64("created").map_err(bad)?,
            versions: r.u64("versions").map_err(bad)?,
            size: r.u64("size").map_err(bad)?,
            files: r.u64("files").map_err(bad)?,
            license: r
                .str(4 * MAX_RECORD_LICENSE, "license")
                .map_err(bad)?
                .to_owned(),
        };
        r.finish().map_err(bad)?;
        Ok(rec)
    }
}

/// One version of a dataset, as its `versions` entry has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionRecord {
    /// The version.
    pub version: VersionId,
    /// Its creation time.
    pub created_unix: u64,
    /// Bytes in its files.
    pub size: u64,
    /// Its files.
    pub files: u64,
}

impl VersionRecord {
    fn of(m: &Manifest) -> Self {
        Self {
            version: m.version(),
            created_unix: m.body().created_unix,
            size: m.total_size(),
            files: m.files().len() as u64,
        }
    }

    fn key(&self, name: &DatasetName) -> Vec<u8> {
        version_key(name, self.created_unix, &self.version)
    }

    fn value(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(17);
        w.u8(VERSION_RECORD_VERSION);
        w.u64(self.size);
        w.u64(self.files);
        w.into_bytes()
    }

    /// From a `versions` entry under `prefix` (the name and a 0 byte).
    fn decode(prefix: &[u8], key: &[u8], value: &[u8]) -> Option<Self> {
        let rest = key.get(prefix.len()..)?;
        let created_unix = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
        let version = VersionId(rest.get(8..)?.try_into().ok()?);
        let mut r = Reader::new(value);
        r.version("version record", VERSION_RECORD_VERSION).ok()?;
        let out = Self {
            version,
            created_unix,
            size: r.u64("size").ok()?,
            files: r.u64("files").ok()?,
        };
        r.finish().ok()?;
        Some(out)
    }
}

/// Where a stored manifest contains a stripe: enough to find the stripe again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StripeRef {
    /// The stripe.
    pub stripe: StripeId,
    /// A stored version whose manifest contains it.
    pub version: VersionId,
    /// The file's index in that manifest.
    pub file: u32,
    /// The stripe's index in that file.
    pub index: u32,
}

/// A stripe of a stored manifest, whole, with where it lies and whose it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundStripe {
    /// Where it lies.
    pub at: StripeRef,
    /// The publisher of the manifest it lies in.
    pub publisher: PublisherId,
    /// Its code.
    pub params: ErasureParams,
    /// The stripe.
    pub stripe: Stripe,
}

fn ref_key(piece: &PieceId, stripe: &StripeId) -> [u8; 64] {
    let mut k = [0u8; 64];
    k[..32].copy_from_slice(&piece.0);
    k[32..].copy_from_slice(&stripe.0);
    k
}

fn ref_value(version: &VersionId, file: u32, index: u32) -> Vec<u8> {
    let mut w = Writer::with_capacity(41);
    w.u8(REF_VERSION);
    w.raw(version.as_bytes());
    w.u32(file);
    w.u32(index);
    w.into_bytes()
}

fn decode_ref(key: &[u8], value: &[u8]) -> Option<StripeRef> {
    let stripe = StripeId(<[u8; 32]>::try_from(key.get(32..64)?).ok()?);
    let mut r = Reader::new(value);
    r.version("stripe ref", REF_VERSION).ok()?;
    let out = StripeRef {
        stripe,
        version: VersionId(r.array("version").ok()?),
        file: r.u32("file").ok()?,
        index: r.u32("index").ok()?,
    };
    r.finish().ok()?;
    Some(out)
}

impl PieceStore {
    /// Adds to `batch` the `versions` entry of `manifest` and the `refs` entries of every
    /// stripe of it.
    fn index_refs(&self, batch: &mut WriteBatch, manifest: &Manifest) -> Result<(), StoreError> {
        let v = VersionRecord::of(manifest);
        batch.put_cf(self.cf(CF_VERSIONS)?, v.key(manifest.name()), v.value());
        let cf = self.cf(CF_REFS)?;
        let version = manifest.version();
        for (fi, f) in manifest.files().iter().enumerate() {
            for (si, s) in f.stripes.iter().enumerate() {
                let stripe = repair::stripe_id(s);
                let value = ref_value(&version, fi as u32, si as u32);
                for p in &s.pieces {
                    // The first manifest that has the stripe keeps it: a later one with
                    // the same pieces cannot swap in another shape for them.
                    let key = ref_key(&p.id, &stripe);
                    if self.db.get_pinned_cf(cf, key)?.is_none() {
                        batch.put_cf(cf, key, &value);
                    }
                }
            }
        }
        Ok(())
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
        let record = match existing {
            Some(mut rec) if (rec.latest_created_unix, rec.latest) > (created, version) => {
                rec.versions += 1;
                rec
            }
            Some(rec) => DatasetRecord::of_latest(manifest, rec.versions + 1),
            None => DatasetRecord::of_latest(manifest, 1),
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
        self.index_refs(&mut batch, manifest)?;
        batch.put_cf(self.cf(CF_NAMES)?, name.as_str(), record.encode());
        self.write(batch)?;
        info!(dataset = %name, %version, "manifest stored");
        Ok(true)
    }

    /// Builds the `names` records and `refs` from the stored manifests, if the store was
    /// written before they existed. Runs once, when the store is opened.
    pub(super) fn index_catalog(&self) -> Result<(), StoreError> {
        if self.db.get_pinned(INDEX_KEY)?.as_deref() == Some(&[INDEX_VERSION][..]) {
            return Ok(());
        }
        let mut latest: BTreeMap<DatasetName, (u64, DatasetRecord)> = BTreeMap::new();
        let mut manifests = 0u64;
        for item in self
            .db
            .iterator_cf(self.cf(CF_MANIFESTS)?, IteratorMode::Start)
        {
            let (_, v) = item?;
            // A manifest that no longer verifies is left out of the indexes, as it is of
            // every read.
            let Ok(m) = Manifest::decode(&v) else {
                continue;
            };
            let mut batch = WriteBatch::default();
            self.index_refs(&mut batch, &m)?;
            self.db.write(batch)?;
            manifests += 1;
            let key = (m.body().created_unix, m.version());
            let e = latest
                .entry(m.name().clone())
                .or_insert_with(|| (0, DatasetRecord::of_latest(&m, 0)));
            e.0 += 1;
            if key > (e.1.latest_created_unix, e.1.latest) {
                e.1 = DatasetRecord::of_latest(&m, 0);
            }
        }
        let mut batch = WriteBatch::default();
        // Names whose manifests no longer verify keep no record.
        for item in self.db.iterator_cf(self.cf(CF_NAMES)?, IteratorMode::Start) {
            let (k, _) = item?;
            let known = std::str::from_utf8(&k)
                .ok()
                .and_then(|n| n.parse::<DatasetName>().ok())
                .is_some_and(|n| latest.contains_key(&n));
            if !known {
                batch.delete_cf(self.cf(CF_NAMES)?, k);
            }
        }
        for (name, (versions, mut rec)) in latest {
            rec.versions = versions;
            batch.put_cf(self.cf(CF_NAMES)?, name.as_str(), rec.encode());
        }
        batch.put(INDEX_KEY, [INDEX_VERSION]);
        self.write(batch)?;
        if manifests > 0 {
            info!(manifests, "indexed the stored manifests");
        }
        Ok(())
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
        match self.db.get_pinned_cf(self.cf(CF_NAMES)?, name.as_str())? {
            Some(v) => DatasetRecord::decode(name, &v).map(Some),
            None => Ok(None),
        }
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

    /// Up to `limit` dataset names with their records, in name order. Reads the records
    /// alone: no manifest is decoded.
    pub fn datasets_up_to(
        &self,
        limit: usize,
    ) -> Result<Vec<(DatasetName, DatasetRecord)>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_NAMES)?, IteratorMode::Start) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            let Some(name) = std::str::from_utf8(&k)
                .ok()
                .and_then(|s| s.parse::<DatasetName>().ok())
            else {
                continue;
            };
            // A record that no longer decodes hides its dataset, not the whole listing:
            // bytes on disk are untrusted too.
            match DatasetRecord::decode(&name, &v) {
                Ok(rec) => out.push((name, rec)),
                Err(e) => warn!(dataset = %name, "{e}; left out of listings"),
            }
        }
        Ok(out)
    }

    /// Every dataset name with its record, in name order.
    pub fn datasets(&self) -> Result<Vec<(DatasetName, DatasetRecord)>, StoreError> {
        self.datasets_up_to(usize::MAX)
    }

    /// About how many manifests are stored: rocksdb's estimate, without a scan.
    pub fn manifests_estimate(&self) -> Result<u64, StoreError> {
        Ok(self
            .db
            .property_int_value_cf(self.cf(CF_MANIFESTS)?, "rocksdb.estimate-num-keys")?
            .unwrap_or(0))
    }

    /// The versions of `name`, oldest first.
    pub fn versions(&self, name: &DatasetName) -> Result<Vec<VersionId>, StoreError> {
        Ok(self
            .version_records(name, usize::MAX)?
            .into_iter()
            .map(|v| v.version)
            .collect())
    }

    /// Up to `limit` versions of `name` with what each holds, oldest first, from their
    /// `versions` entries alone.
    pub fn version_records(
        &self,
        name: &DatasetName,
        limit: usize,
    ) -> Result<Vec<VersionRecord>, StoreError> {
        let mut prefix = name.as_str().as_bytes().to_vec();
        prefix.push(0);
        let mut out = Vec::new();
        let mode = IteratorMode::From(&prefix, rocksdb::Direction::Forward);
        for item in self.db.iterator_cf(self.cf(CF_VERSIONS)?, mode) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            if let Some(r) = VersionRecord::decode(&prefix, &k, &v) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Whether any stored manifest references `piece`: one seek.
    pub fn is_referenced(&self, piece: &PieceId) -> Result<bool, StoreError> {
        let cf = self.cf(CF_REFS)?;
        let mode = IteratorMode::From(&piece.0, rocksdb::Direction::Forward);
        match self.db.iterator_cf(cf, mode).next() {
            Some(item) => Ok(item?.0.starts_with(&piece.0)),
            None => Ok(false),
        }
    }

    /// The distinct stripes of stored manifests that contain `piece`, all of them: a cap
    /// would let a publisher hide a real stripe behind stripes of its own that share the
    /// piece. What there is to list is bounded by the publishers' quotas.
    pub fn stripes_of(&self, piece: &PieceId) -> Result<Vec<StripeRef>, StoreError> {
        let cf = self.cf(CF_REFS)?;
        let mode = IteratorMode::From(&piece.0, rocksdb::Direction::Forward);
        let mut out = Vec::new();
        for item in self.db.iterator_cf(cf, mode) {
            let (k, v) = item?;
            if !k.starts_with(&piece.0) {
                break;
            }
            if let Some(r) = decode_ref(&k, &v) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Every distinct stripe that contains one of `pieces`, with its code, its publisher
    /// and the stripe itself, found through the `refs` index: only manifests that contain
    /// one of them are read, each once.
    pub fn stripes_containing(&self, pieces: &[PieceId]) -> Result<Vec<FoundStripe>, StoreError> {
        let mut refs: HashMap<StripeId, StripeRef> = HashMap::new();
        for p in pieces {
            for r in self.stripes_of(p)? {
                refs.entry(r.stripe).or_insert(r);
            }
        }
        let mut by_version: BTreeMap<VersionId, Vec<StripeRef>> = BTreeMap::new();
        for r in refs.into_values() {
            by_version.entry(r.version).or_default().push(r);
        }
        let mut out = Vec::new();
        for (version, refs) in by_version {
            let Some(m) = self.manifest(&version)? else {
                continue;
            };
            for r in refs {
                let stripe = m
                    .files()
                    .get(r.file as usize)
                    .and_then(|f| f.stripes.get(r.index as usize))
                    .filter(|s| repair::stripe_id(s) == r.stripe)
                    .cloned();
                if let Some(stripe) = stripe {
                    out.push(FoundStripe {
                        at: r,
                        publisher: m.publisher(),
                        params: m.body().params,
                        stripe,
                    });
                }
            }
        }
        out.sort_by_key(|f| (f.at.version, f.at.file, f.at.index));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{manifest, open};

    #[test]
    fn records_and_refs_answer_without_manifests() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path());
        let v1 = manifest(dir.path(), "alice/ds", 100, &[1, 2]);
        let v2 = manifest(dir.path(), "alice/ds", 200, &[2, 3, 4]);
        let other = manifest(dir.path(), "bob/x", 50, &[9]);
        // Stored out of order: the latest is still the newest.
        for m in [&v2, &v1, &other] {
            assert!(store.put_manifest(m).expect("put"));
        }
        let name: DatasetName = "alice/ds".parse().expect("name");
        let rec = store.dataset(&name).expect("read").expect("record");
        assert_eq!(rec.latest, v2.version());
        assert_eq!((rec.versions, rec.files, rec.size), (2, 3, 900));
        assert_eq!(rec.license.chars().count(), MAX_RECORD_LICENSE);
        let listed = store.datasets_up_to(1).expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].0, name);
        // A record rotten on disk hides its own dataset, not the listing.
        let mut batch = WriteBatch::default();
        batch.put_cf(store.cf(CF_NAMES).expect("cf"), "bob/x", b"rot");
        store.write(batch).expect("write");
        let listed: Vec<String> = store
            .datasets()
            .expect("list")
            .into_iter()
            .map(|(n, _)| n.to_string())
            .collect();
        assert_eq!(listed, vec!["alice/ds".to_string()]);
        let history = store.version_records(&name, 10).expect("history");
        assert_eq!(
            history
                .iter()
                .map(|v| (v.version, v.size, v.files))
                .collect::<Vec<_>>(),
            vec![(v1.version(), 600, 2), (v2.version(), 900, 3)]
        );
        for m in [&v1, &v2, &other] {
            for p in m.pieces() {
                assert!(store.is_referenced(&p.id).expect("seek"));
            }
        }
        assert!(
            !store
                .is_referenced(&PieceId::of(b"held by nobody"))
                .expect("seek")
        );
        // File 2 is in both versions: its stripes are found once each.
        let shared: Vec<PieceId> = v1.files()[1].stripes[0]
            .pieces
            .iter()
            .map(|p| p.id)
            .collect();
        let found = store.stripes_containing(&shared).expect("stripes");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].stripe, v1.files()[1].stripes[0]);
        assert_eq!(found[0].params, v1.body().params);
        assert_eq!(found[0].publisher, v1.publisher());
    }

    #[test]
    fn a_store_written_before_the_indexes_is_indexed_when_opened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (v1, v2) = (
            manifest(dir.path(), "alice/ds", 100, &[1]),
            manifest(dir.path(), "alice/ds", 200, &[2, 3]),
        );
        {
            let store = open(&dir.path().join("node"));
            store.put_manifest(&v1).expect("put");
            store.put_manifest(&v2).expect("put");
            // Back to what an older release wrote: no refs, empty version entries, names
            // records of the first layout, and no index marker.
            let mut batch = WriteBatch::default();
            for item in store
                .db
                .iterator_cf(store.cf(CF_REFS).expect("cf"), IteratorMode::Start)
            {
                batch.delete_cf(store.cf(CF_REFS).expect("cf"), item.expect("item").0);
            }
            for m in [&v1, &v2] {
                batch.put_cf(
                    store.cf(CF_VERSIONS).expect("cf"),
                    version_key(m.name(), m.body().created_unix, &m.version()),
                    [],
                );
            }
            let mut old = Writer::new();
            old.u8(1);
            old.raw(v2.publisher().as_bytes());
            old.raw(v2.version().as_bytes());
            old.u64(200);
            batch.put_cf(
                store.cf(CF_NAMES).expect("cf"),
                "alice/ds",
                old.into_bytes(),
            );
            batch.delete(INDEX_KEY);
            store.write(batch).expect("write");
            assert!(store.dataset(v1.name()).is_err());
        }
        let store = open(&dir.path().join("node"));
        let rec = store.dataset(v1.name()).expect("read").expect("record");
        assert_eq!((rec.latest, rec.versions, rec.size), (v2.version(), 2, 600));
        assert_eq!(
            store.versions(v1.name()).expect("versions"),
            vec![v1.version(), v2.version()]
        );
        assert!(
            v1.pieces()
                .chain(v2.pieces())
                .all(|p| store.is_referenced(&p.id).expect("seek"))
        );
    }
}
