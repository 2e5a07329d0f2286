//! Random access to the files of published versions: the stripes that cover a byte range,
//! fetched (any `k` of `n`, fastest holders first), decoded, and cached for every reader.
//!
//! A [`Reader`] sits on one [`Client`]. It is what the HTTP gateway serves `Range`
//! requests from and what a training job streams shards through:
//!
//! - **Locate in windows.** Holders are asked for [`LOCATE_WINDOW`] stripes of a file at a
//!   time, on first need, and remembered; a stripe that cannot be fetched from the
//!   remembered holders is located afresh once (repair may have moved its pieces). A
//!   window in which some stripe has fewer than `k` located pieces is asked again for up
//!   to [`LOCATE_PATIENCE`]: a version pushed a moment ago may not be known everywhere.
//! - **One fetch per stripe.** Concurrent readers of the same stripe wait on one fetch
//!   (the cache's single-flight insert), so 200 readers of one file cost one download.
//! - **Small reads cost one piece.** The code is systematic: data piece `i` of a stripe
//!   is bytes `i·block..(i+1)·block` of it. A read that lies within one data piece
//!   fetches that piece alone (`1/k` of the stripe), from any of its holders; anything
//!   larger, or a piece that cannot be had, fetches and decodes the stripe.
//! - **Bounded.** Decoded stripes and single pieces live in caches bounded in bytes
//!   (together the reader's budget); holder tables in one bounded in entries. Bytes being
//!   fetched and decoded are bounded too, across every request at once: a fetch spends
//!   what it will hold (`k` pieces and the decoded stripe) from one [`ByteBudget`]
//!   ([`DEFAULT_IN_FLIGHT_BYTES`]) before it starts. Nothing grows with the number of
//!   readers.
//!
//! Every piece is verified against its id by the data plane, and the decoder checks each
//! again; a manifest is verified before a `Reader` is given it, so the bytes a `Reader`
//! returns are the publisher's.

use std::{
    ops::Range,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use quick_cache::{Weighter, sync::Cache};

use super::{
    budget::ByteBudget,
    client::{Client, ClientError, LOCATE_PATIENCE, fetch_stripe},
    fetch::HolderIx,
    wire::NodeRef,
};
use crate::{
    ids::{DatasetName, VersionId},
    manifest::Manifest,
};

/// Stripes located at a time.
pub const LOCATE_WINDOW: usize = 32;
/// Default bytes of decoded stripes kept.
pub const DEFAULT_CACHE_BYTES: u64 = 256 << 20;
/// Default bytes being fetched and decoded at once, across all reads: four stripes of the
/// default code (16 data pieces of 1 MiB), each charged its pieces and its decoded bytes.
pub const DEFAULT_IN_FLIGHT_BYTES: u64 = 128 << 20;
/// Holder tables (one per located window) kept.
const LOCATED_WINDOWS: usize = 1024;
/// Verified manifests kept.
const MANIFESTS: usize = 64;

/// A stripe of a file of a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StripeKey {
    /// The version.
    pub version: VersionId,
    /// The file's index in the manifest.
    pub file: u32,
    /// The stripe's index in the file.
    pub stripe: u32,
}

/// The key of the located window that holds `stripe` of `file`, and the window's index.
fn window_key(manifest: &Manifest, file: usize, stripe: usize) -> ((VersionId, u32, u32), usize) {
    let window = stripe / LOCATE_WINDOW;
    (
        (
            manifest.version(),
            u32::try_from(file).unwrap_or(u32::MAX),
            u32::try_from(window).unwrap_or(u32::MAX),
        ),
        window,
    )
}

/// Who holds the pieces of a window of stripes.
#[derive(Debug)]
struct Located {
    nodes: Arc<Vec<NodeRef>>,
    /// Per stripe of the window, per piece, holders (indices into `nodes`).
    holders: Vec<Vec<Vec<HolderIx>>>,
    /// Observed speed per node; shared by the window's fetches.
    speeds: Arc<Mutex<Vec<f64>>>,
}

#[derive(Clone)]
struct ByLen;

impl Weighter<StripeKey, Bytes> for ByLen {
    fn weight(&self, _key: &StripeKey, val: &Bytes) -> u64 {
        val.len().max(1) as u64
    }
}

impl Weighter<(StripeKey, u16), Bytes> for ByLen {
    fn weight(&self, _key: &(StripeKey, u16), val: &Bytes) -> u64 {
        val.len().max(1) as u64
    }
}

/// What a [`Reader`] has done since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReaderStats {
    /// Stripes fetched from the network and decoded.
    pub stripes_fetched: u64,
    /// Stripe reads answered from the cache (or by joining a fetch under way).
    pub stripe_hits: u64,
    /// Bytes fetched for reads: decoded stripes, and single pieces for small reads.
    pub bytes_fetched: u64,
    /// Pieces fetched.
    pub pieces: u64,
    /// Piece fetches that failed and were routed around.
    pub failed_fetches: u64,
    /// The most bytes being fetched and decoded at once so far.
    pub peak_in_flight: u64,
}

/// Reads stripes of published versions through a [`Client`]; see the module docs.
pub struct Reader {
    client: Arc<Client>,
    stripes: Cache<StripeKey, Bytes, ByLen>,
    /// Single data pieces fetched for reads that fit in one, by (stripe, piece index).
    pieces: Cache<(StripeKey, u16), Bytes, ByLen>,
    located: Cache<(VersionId, u32, u32), Arc<Located>>,
    manifests: Cache<VersionId, Arc<Manifest>>,
    counters: Arc<Mutex<(u64, u64)>>,
    in_flight: ByteBudget,
    fetched: std::sync::atomic::AtomicU64,
    fetched_bytes: std::sync::atomic::AtomicU64,
    lookups: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("cached_stripes", &self.stripes.len())
            .field("cached_bytes", &self.stripes.weight())
            .finish_non_exhaustive()
    }
}

impl Reader {
    /// A reader over `client` keeping up to `cache_bytes` in all: three quarters for
    /// decoded stripes, one quarter for single pieces fetched for small reads.
    pub fn new(client: Arc<Client>, cache_bytes: u64) -> Self {
        let cache_bytes = cache_bytes.max(2);
        let piece_bytes = (cache_bytes / 4).max(1);
        let stripe_bytes = cache_bytes - piece_bytes;
        Self {
            client,
            stripes: Cache::with_weighter(
                usize::try_from(stripe_bytes >> 20).unwrap_or(1024).max(16),
                stripe_bytes,
                ByLen,
            ),
            pieces: Cache::with_weighter(
                usize::try_from(piece_bytes >> 18).unwrap_or(1024).max(16),
                piece_bytes,
                ByLen,
            ),
            located: Cache::new(LOCATED_WINDOWS),
            manifests: Cache::new(MANIFESTS),
            counters: Arc::new(Mutex::new((0, 0))),
            in_flight: ByteBudget::new(DEFAULT_IN_FLIGHT_BYTES),
            fetched: 0.into(),
            fetched_bytes: 0.into(),
            lookups: 0.into(),
        }
    }

    /// The same reader with at most `bytes` being fetched and decoded at once.
    pub fn with_in_flight(mut self, bytes: u64) -> Self {
        self.in_flight = ByteBudget::new(bytes);
        self
    }

    /// The client underneath, for listings.
    pub fn client(&self) -> &Arc<Client> {
        &self.client
    }

    /// The verified manifest of `name` at `version`, from the cache or the network.
    /// `None` asks for the latest version, which is never cached.
    pub async fn manifest(
        &self,
        name: &DatasetName,
        version: Option<VersionId>,
    ) -> Result<Arc<Manifest>, ClientError> {
        let Some(v) = version else {
            let m = Arc::new(self.fetch_manifest(name, None).await?);
            self.manifests.insert(m.version(), m.clone());
            return Ok(m);
        };
        let m = self
            .manifests
            .get_or_insert_async(&v, async {
                self.fetch_manifest(name, Some(v)).await.map(Arc::new)
            })
            .await?;
        // The cache is keyed by version alone: a version of another dataset is not this one.
        if m.name() != name {
            return Err(ClientError::NotFound(format!("{name}@{v}")));
        }
        Ok(m)
    }

    /// The manifest from the node, asked again for up to [`LOCATE_PATIENCE`] while it is
    /// not found: a version published through another node a moment ago may still be on
    /// its way here.
    async fn fetch_manifest(
        &self,
        name: &DatasetName,
        version: Option<VersionId>,
    ) -> Result<Manifest, ClientError> {
        let t0 = std::time::Instant::now();
        let mut wait = std::time::Duration::from_millis(50);
        loop {
            match self.client.manifest(name, version).await {
                Err(ClientError::NotFound(_)) if t0.elapsed() + wait < LOCATE_PATIENCE => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(std::time::Duration::from_millis(400));
                }
                r => return r,
            }
        }
    }

    /// Whether stripe `stripe` of file `file` of `manifest` is in the cache now.
    pub fn holds(&self, manifest: &Manifest, file: usize, stripe: usize) -> bool {
        self.stripes.contains_key(&StripeKey {
            version: manifest.version(),
            file: u32::try_from(file).unwrap_or(u32::MAX),
            stripe: u32::try_from(stripe).unwrap_or(u32::MAX),
        })
    }

    /// The decoded bytes of stripe `stripe` of file `file` of `manifest`.
    pub async fn stripe(
        &self,
        manifest: &Arc<Manifest>,
        file: usize,
        stripe: usize,
    ) -> Result<Bytes, ClientError> {
        use std::sync::atomic::Ordering::Relaxed;
        let f = manifest
            .files()
            .get(file)
            .ok_or_else(|| ClientError::NotFound(format!("file #{file}")))?;
        if stripe >= f.stripes.len() {
            return Err(ClientError::NotFound(format!("{} stripe {stripe}", f.path)));
        }
        let key = StripeKey {
            version: manifest.version(),
            file: u32::try_from(file).unwrap_or(u32::MAX),
            stripe: u32::try_from(stripe).unwrap_or(u32::MAX),
        };
        self.lookups.fetch_add(1, Relaxed);
        self.stripes
            .get_or_insert_async(&key, async {
                self.fetched.fetch_add(1, Relaxed);
                let r = match self.fetch(manifest, file, stripe, false).await {
                    Err(ClientError::Unrecoverable(_)) => {
                        // The remembered holders may be stale: ask once more.
                        self.fetch(manifest, file, stripe, true).await
                    }
                    r => r,
                };
                if let Ok(b) = &r {
                    self.fetched_bytes.fetch_add(b.len() as u64, Relaxed);
                }
                r
            })
            .await
    }

    /// Bytes `range` of the data of stripe `stripe` of file `file`. From the stripe cache
    /// when the stripe is there; else, when the range lies within one data piece (the code
    /// is systematic: data piece `i` is bytes `i·block_len..` of the stripe), that piece
    /// alone, verified like any piece, which costs `1/k` of the stripe; else (or if that
    /// piece cannot be had) the whole stripe.
    pub async fn range(
        &self,
        manifest: &Arc<Manifest>,
        file: usize,
        stripe: usize,
        range: Range<usize>,
    ) -> Result<Bytes, ClientError> {
        let s = manifest
            .files()
            .get(file)
            .and_then(|f| f.stripes.get(stripe))
            .ok_or_else(|| ClientError::NotFound(format!("file #{file} stripe {stripe}")))?;
        let key = StripeKey {
            version: manifest.version(),
            file: u32::try_from(file).unwrap_or(u32::MAX),
            stripe: u32::try_from(stripe).unwrap_or(u32::MAX),
        };
        let cut = |b: Bytes, r: Range<usize>| -> Result<Bytes, ClientError> {
            if r.start <= r.end && r.end <= b.len() {
                Ok(b.slice(r))
            } else {
                Err(ClientError::Internal(format!(
                    "{} bytes held, {r:?} asked",
                    b.len()
                )))
            }
        };
        if let Some(b) = self.stripes.get(&key) {
            self.lookups
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return cut(b, range);
        }
        let bl = s.block_len as usize;
        let k = usize::from(manifest.body().params.k());
        if bl > 0 && !range.is_empty() {
            let i = range.start / bl;
            if i < k && range.end <= (i + 1) * bl {
                let piece = self
                    .pieces
                    .get_or_insert_async(
                        &(key, i as u16),
                        self.fetch_piece(manifest, file, stripe, i),
                    )
                    .await;
                if let Ok(p) = piece {
                    return cut(p, range.start - i * bl..range.end - i * bl);
                }
            }
        }
        let b = self.stripe(manifest, file, stripe).await?;
        cut(b, range)
    }

    /// Data piece `index` of a stripe, from any holder of it.
    async fn fetch_piece(
        &self,
        manifest: &Arc<Manifest>,
        file: usize,
        stripe: usize,
        index: usize,
    ) -> Result<Bytes, ClientError> {
        let (wkey, window) = window_key(manifest, file, stripe);
        let located = self
            .located
            .get_or_insert_async(&wkey, self.locate(manifest, file, window))
            .await?;
        let s = &manifest.files()[file].stripes[stripe];
        let mut holders: Vec<Vec<HolderIx>> = vec![Vec::new(); s.pieces.len()];
        holders[index] = located.holders[stripe - window * LOCATE_WINDOW][index].clone();
        // When every holder of this piece has failed before, the stripe (any k of n) is
        // the faster way round.
        let failed_before = {
            let sp = located.speeds.lock().unwrap_or_else(|p| p.into_inner());
            holders[index]
                .iter()
                .all(|&h| sp.get(h).is_some_and(|&v| v < 0.0))
        };
        if failed_before {
            return Err(ClientError::Unrecoverable(vec![format!(
                "stripe {stripe} piece {index}: its holders failed before"
            )]));
        }
        let _spent = self
            .in_flight
            .spend(u64::from(s.pieces[index].len))
            .await
            .map_err(|e| ClientError::Internal(e.to_string()))?;
        let got = super::client::fetch_pieces(
            self.client.data(),
            &located.nodes,
            &located.speeds,
            1,
            s,
            holders,
            &self.counters,
        )
        .await
        .map_err(|_| ClientError::Unrecoverable(vec![format!("stripe {stripe} piece {index}")]))?;
        let (_, bytes) = got
            .into_iter()
            .find(|(i, _)| *i == index)
            .ok_or_else(|| ClientError::Internal("fetched another piece".into()))?;
        self.fetched_bytes
            .fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(Bytes::from(bytes))
    }

    async fn fetch(
        &self,
        manifest: &Arc<Manifest>,
        file: usize,
        stripe: usize,
        fresh: bool,
    ) -> Result<Bytes, ClientError> {
        let (wkey, window) = window_key(manifest, file, stripe);
        if fresh {
            self.located.remove(&wkey);
        }
        let located = self
            .located
            .get_or_insert_async(&wkey, self.locate(manifest, file, window))
            .await?;
        let f = &manifest.files()[file];
        let s = f.stripes[stripe].clone();
        let holders = located.holders[stripe - window * LOCATE_WINDOW].clone();
        // What the fetch holds at most: `k` pieces, then the decoded stripe.
        let k = u64::from(manifest.body().params.k());
        let piece = s.pieces.iter().map(|p| u64::from(p.len)).max().unwrap_or(0);
        let _spent = self
            .in_flight
            .spend(k * piece + s.data_len)
            .await
            .map_err(|e| ClientError::Internal(e.to_string()))?;
        let data = fetch_stripe(
            self.client.data().clone(),
            located.nodes.clone(),
            located.speeds.clone(),
            manifest.body().params,
            s,
            holders,
            f.path.to_string(),
            stripe,
            self.counters.clone(),
        )
        .await?;
        Ok(Bytes::from(data))
    }

    async fn locate(
        &self,
        manifest: &Arc<Manifest>,
        file: usize,
        window: usize,
    ) -> Result<Arc<Located>, ClientError> {
        let f = &manifest.files()[file];
        let first = window * LOCATE_WINDOW;
        let stripes = &f.stripes[first..(first + LOCATE_WINDOW).min(f.stripes.len())];
        let at: Vec<(usize, usize)> = (first..first + stripes.len()).map(|s| (file, s)).collect();
        // A version pushed a moment ago may not be locatable everywhere yet: wait a
        // little for every stripe to have `k` located pieces before calling any lost.
        let k = usize::from(manifest.body().params.k());
        let short = |h: &[Vec<HolderIx>]| {
            let mut at = 0;
            stripes.iter().any(|s| {
                let n = s.pieces.len();
                let found = h[at..at + n].iter().filter(|x| !x.is_empty()).count();
                at += n;
                found < k
            })
        };
        let (nodes, mut flat) = self
            .client
            .locate_patiently(manifest, &at, LOCATE_PATIENCE, short)
            .await?;
        let mut holders = Vec::with_capacity(stripes.len());
        let mut rest = flat.drain(..);
        for s in stripes {
            holders.push(rest.by_ref().take(s.pieces.len()).collect());
        }
        let speeds = Arc::new(Mutex::new(vec![0.0; nodes.len()]));
        Ok(Arc::new(Located {
            nodes: Arc::new(nodes),
            holders,
            speeds,
        }))
    }

    /// What this reader has done so far.
    pub fn stats(&self) -> ReaderStats {
        use std::sync::atomic::Ordering::Relaxed;
        let (pieces, failed) = *self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let fetched = self.fetched.load(Relaxed);
        ReaderStats {
            stripes_fetched: fetched,
            bytes_fetched: self.fetched_bytes.load(Relaxed),
            stripe_hits: self.lookups.load(Relaxed).saturating_sub(fetched),
            pieces,
            failed_fetches: failed,
            peak_in_flight: self.in_flight.peak(),
        }
    }
}

/// The stripes of a file that hold bytes `range`, each with the part of it to keep:
/// `(stripe index, byte range within the stripe's data)`. `stripe_lens` are the stripes'
/// data lengths in order. Ranges past the end are cut at the end; an empty range gives
/// nothing.
pub fn stripes_for(
    stripe_lens: impl IntoIterator<Item = u64>,
    range: Range<u64>,
) -> Vec<(usize, Range<usize>)> {
    let mut out = Vec::new();
    let mut start = 0u64;
    for (i, len) in stripe_lens.into_iter().enumerate() {
        let end = start.saturating_add(len);
        if range.start >= range.end || start >= range.end {
            break;
        }
        if end > range.start && end > start {
            let from = range.start.max(start) - start;
            let to = range.end.min(end) - start;
            // Both are within one stripe's length, which fits memory.
            out.push((
                i,
                usize::try_from(from).unwrap_or(usize::MAX)..usize::try_from(to).unwrap_or(0),
            ));
        }
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::stripes_for;

    #[test]
    fn ranges_map_onto_the_stripes_that_cover_them() {
        let lens = [10u64, 10, 5];
        assert_eq!(
            stripes_for(lens, 0..25),
            vec![(0, 0..10), (1, 0..10), (2, 0..5)]
        );
        assert_eq!(stripes_for(lens, 9..11), vec![(0, 9..10), (1, 0..1)]);
        assert_eq!(stripes_for(lens, 10..20), vec![(1, 0..10)]);
        assert_eq!(stripes_for(lens, 24..100), vec![(2, 4..5)]);
        assert!(stripes_for(lens, 25..30).is_empty());
        assert!(stripes_for(lens, 3..3).is_empty());
        assert!(stripes_for([], 0..1).is_empty());
    }

    proptest! {
        #[test]
        fn the_parts_are_the_range(
            lens in proptest::collection::vec(0u64..50, 0..20),
            a in 0u64..600,
            n in 0u64..600,
        ) {
            let total: u64 = lens.iter().sum();
            let data: Vec<u64> = (0..total).collect();
            let mut starts = vec![0u64];
            for l in &lens {
                starts.push(starts.last().copied().unwrap_or(0) + l);
            }
            let mut got = Vec::new();
            for (i, r) in stripes_for(lens.clone(), a..a + n) {
                let s = usize::try_from(starts[i]).unwrap();
                prop_assert!(r.start < r.end, "an empty part");
                got.extend_from_slice(&data[s + r.start..s + r.end]);
            }
            let end = (a + n).min(total);
            let want: Vec<u64> = if a < end { (a..end).collect() } else { vec![] };
            prop_assert_eq!(got, want);
        }
    }
}
