//! Checking placement records at a bounded cost: against a table of the version's
//! stripes (decoded from its manifest once, then cached), with an allowance per peer for
//! records offered through the DHT, and a bounded wait for records of versions this
//! node has not kept yet.
//!
//! Order of checks, cheapest first: the encoding (bounded), the version known here and
//! its publisher the record's (a key that published nothing here has no say), the
//! stripe at the record's place, then the signature.

use std::{
    collections::VecDeque,
    sync::Arc,
    time::{Duration, Instant},
};

use libp2p::{PeerId, kad};
use quick_cache::{Weighter, sync::Cache};

use super::allowance::Allowances;
use crate::{
    ids::{PieceId, PublisherId, StripeId, VersionId},
    location::{PlacementRecordError, SignedPlacement},
    manifest::Manifest,
    repair::stripe_id,
    store::{PieceStore, StoreError},
};

/// Stripes and pieces, over all cached versions, that the tables may describe (about
/// 40 MB at most): the largest manifest the network carries fits.
const TABLE_BUDGET: u64 = 1 << 20;
/// DHT lookups and stores a peer's requests may make this node do, a second and at once.
pub(super) const LOOKUP_RATE: f64 = 256.0;
pub(super) const LOOKUP_BURST: f64 = 4096.0;
/// Records a peer may offer through the DHT per second, and at once.
const OFFER_RATE: f64 = 256.0;
const OFFER_BURST: f64 = 4096.0;
/// Offered records waiting to be checked.
const MAX_QUEUED: usize = 2048;
/// Records checked in one go on the blocking pool.
pub(super) const CHECK_BATCH: usize = 64;
/// Records of versions not kept here yet that wait, and for how long.
const MAX_PARKED: usize = 2048;
const PARK_FOR: Duration = Duration::from_secs(60);
/// Records one peer may have waiting for their versions.
const MAX_PARKED_PER_PEER: usize = 256;
/// Versions remembered as just kept, so that a record checked while its version was
/// being kept is checked again rather than parked.
const RECENTLY_KEPT: usize = 256;

/// Why a placement record was not taken.
#[derive(Debug, thiserror::Error)]
pub(super) enum Refused {
    #[error(transparent)]
    Record(#[from] PlacementRecordError),
    #[error("no manifest of version {0} here")]
    UnknownVersion(VersionId),
    #[error("the version has no stripe {file}/{index}")]
    NoSuchStripe { file: u32, index: u32 },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A node's update of a record this node does not have.
    #[error("an update of a record this node does not have")]
    NoBase,
    #[error(transparent)]
    Update(#[from] crate::location::update::UpdateError),
    /// The sender is over its allowance of the work proving its updates costs.
    #[error("the sender is over its allowance; try again in a few seconds")]
    OverAllowance,
    /// A node's update whose moves its nodes did not bear out.
    #[error("update not borne out: {0}")]
    Unproven(&'static str),
}

/// A version's stripes: publisher, and per file, per stripe, its id and piece ids.
pub(super) struct VersionTable {
    publisher: PublisherId,
    stripes: Vec<Vec<(StripeId, std::ops::Range<usize>)>>,
    pieces: Vec<PieceId>,
}

impl VersionTable {
    fn of(m: &Manifest) -> Self {
        let mut pieces = Vec::new();
        let stripes = m
            .files()
            .iter()
            .map(|f| {
                f.stripes
                    .iter()
                    .map(|s| {
                        let at = pieces.len();
                        pieces.extend(s.pieces.iter().map(|p| p.id));
                        (stripe_id(s), at..pieces.len())
                    })
                    .collect()
            })
            .collect();
        Self {
            publisher: m.publisher(),
            stripes,
            pieces,
        }
    }

    fn weight(&self) -> u64 {
        (self.pieces.len() + self.stripes.iter().map(Vec::len).sum::<usize>()) as u64
    }
}

#[derive(Clone)]
struct TableWeight;

impl Weighter<VersionId, Arc<VersionTable>> for TableWeight {
    fn weight(&self, _: &VersionId, t: &Arc<VersionTable>) -> u64 {
        t.weight().max(1)
    }
}

/// The stripe tables of recently checked versions.
pub(super) struct StripeTables(Cache<VersionId, Arc<VersionTable>, TableWeight>);

impl StripeTables {
    pub(super) fn new() -> Self {
        // One shard: quick_cache refuses an item heavier than a shard's share, and a large
        // version's table must fit.
        let options = quick_cache::OptionsBuilder::new()
            .estimated_items_capacity(256)
            .weight_capacity(TABLE_BUDGET)
            .shards(1)
            .build();
        Self(match options {
            Ok(o) => Cache::with_options(
                o,
                TableWeight,
                quick_cache::DefaultHashBuilder::default(),
                quick_cache::sync::DefaultLifecycle::default(),
            ),
            Err(_) => Cache::with_weighter(256, TABLE_BUDGET, TableWeight),
        })
    }

    fn get(
        &self,
        store: &PieceStore,
        v: &VersionId,
    ) -> Result<Option<Arc<VersionTable>>, StoreError> {
        if let Some(t) = self.0.get(v) {
            return Ok(Some(t));
        }
        let Some(m) = store.manifest(v)? else {
            return Ok(None);
        };
        let t = Arc::new(VersionTable::of(&m));
        self.0.insert(*v, t.clone());
        Ok(Some(t))
    }

    /// Checks `bytes` as a placement record of a version this node keeps; returns it
    /// with its stripe's piece ids. One its publisher did not sign is a node's update,
    /// which the caller must still prove (`prove_update`) before taking it.
    pub(super) fn check(
        &self,
        store: &PieceStore,
        bytes: &[u8],
    ) -> Result<(SignedPlacement, Vec<PieceId>), Refused> {
        let r = SignedPlacement::peek(bytes)?;
        let table = self
            .get(store, &r.version)?
            .ok_or(Refused::UnknownVersion(r.version))?;
        if table.publisher != r.publisher {
            return Err(PlacementRecordError::NotPublisher.into());
        }
        let (stripe, range) = table
            .stripes
            .get(r.file as usize)
            .and_then(|f| f.get(r.index as usize))
            .ok_or(Refused::NoSuchStripe {
                file: r.file,
                index: r.index,
            })?;
        let pieces = table.pieces.get(range.clone()).unwrap_or_default().to_vec();
        let record = SignedPlacement::decode(bytes)?;
        record.fits(&table.publisher, stripe, pieces.len())?;
        Ok((record, pieces))
    }
}

/// What peers offered through the DHT: each peer's allowance, the records waiting to be
/// checked (by one worker at a time, in batches), and records of versions not kept here
/// yet, waiting for their manifest.
pub(super) struct Offers {
    allowance: Allowances,
    queue: VecDeque<(PeerId, kad::Record)>,
    /// Whether a worker is checking the queue.
    draining: bool,
    parked: VecDeque<(Instant, VersionId, PeerId, kad::Record)>,
    /// Versions kept a moment ago.
    kept: VecDeque<VersionId>,
}

impl Default for Offers {
    fn default() -> Self {
        Self {
            allowance: Allowances::new(OFFER_RATE, OFFER_BURST),
            queue: VecDeque::new(),
            draining: false,
            parked: VecDeque::new(),
            kept: VecDeque::new(),
        }
    }
}

impl Offers {
    /// Queues a record to be checked; whether a worker must be started for it. A full
    /// queue drops it.
    pub(super) fn queue(&mut self, from: PeerId, record: kad::Record) -> bool {
        if self.queue.len() < MAX_QUEUED {
            self.queue.push_back((from, record));
        }
        !std::mem::replace(&mut self.draining, true)
    }

    /// The next records to check; none, and the worker stops, once the queue is empty.
    pub(super) fn take(&mut self, n: usize) -> Vec<(PeerId, kad::Record)> {
        let n = n.min(self.queue.len());
        if n == 0 {
            self.draining = false;
        }
        self.queue.drain(..n).collect()
    }

    /// No worker is checking the queue after all (it could not be started).
    pub(super) fn stopped(&mut self) {
        self.draining = false;
    }

    /// Whether records wait with no worker checking them (one could not be started when
    /// they came): if so, a worker must be started, and is counted as started.
    pub(super) fn stranded(&mut self) -> bool {
        let stranded = !self.draining && !self.queue.is_empty();
        self.draining |= stranded;
        stranded
    }

    /// Whether `peer` may offer one more record now.
    pub(super) fn allow(&mut self, peer: PeerId) -> bool {
        self.allowance.admit(peer, 1.0)
    }

    /// Keeps `record` from `from` until `version` is kept here, for a while; the oldest
    /// give way, and a peer that has many waiting gets no more. A version kept a moment
    /// ago (while the record was being checked) has it queued to be checked again.
    /// Whether a worker must be started for it.
    pub(super) fn park(
        &mut self,
        version: VersionId,
        from: PeerId,
        record: kad::Record,
        now: Instant,
    ) -> bool {
        if self.kept.contains(&version) {
            return self.queue(from, record);
        }
        while self
            .parked
            .front()
            .is_some_and(|(at, _, _, _)| now.duration_since(*at) > PARK_FOR)
        {
            self.parked.pop_front();
        }
        if self.parked.iter().filter(|(_, _, p, _)| *p == from).count() >= MAX_PARKED_PER_PEER {
            return false;
        }
        if self.parked.len() >= MAX_PARKED {
            self.parked.pop_front();
        }
        self.parked.push_back((now, version, from, record));
        false
    }

    /// The newest record under `key` waiting for `version`, unchecked: a hint where to
    /// look, for a version about to be kept.
    pub(super) fn parked(&self, version: &VersionId, key: &[u8]) -> Option<Vec<u8>> {
        self.parked
            .iter()
            .rev()
            .find(|(_, v, _, r)| v == version && r.key.as_ref() == key)
            .map(|(_, _, _, r)| r.value.clone())
    }

    /// Queues the records that waited for `version`, now kept here. Whether a worker
    /// must be started for them.
    pub(super) fn unpark(&mut self, version: &VersionId) -> bool {
        if self.kept.len() >= RECENTLY_KEPT {
            self.kept.pop_front();
        }
        self.kept.push_back(*version);
        let mut waiting = Vec::new();
        self.parked.retain(|(_, v, p, r)| {
            if v == version {
                waiting.push((*p, r.clone()));
                false
            } else {
                true
            }
        });
        let mut start = false;
        for (p, r) in waiting {
            start |= self.queue(p, r);
        }
        start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_left_without_a_worker_are_found_stranded_once() {
        let mut o = Offers::default();
        let record = kad::Record::new(kad::RecordKey::new(&[1u8; 32]), vec![1]);
        assert!(
            o.queue(PeerId::random(), record),
            "the first record starts a worker"
        );
        // The worker could not be started: the record waits with no one to check it.
        o.stopped();
        assert!(o.stranded(), "found stranded");
        assert!(!o.stranded(), "and a worker counted as started for it");
        assert_eq!(o.take(CHECK_BATCH_FOR_TESTS).len(), 1);
        assert!(o.take(CHECK_BATCH_FOR_TESTS).is_empty());
        assert!(!o.stranded(), "an empty queue strands nothing");
    }

    const CHECK_BATCH_FOR_TESTS: usize = 64;

    #[test]
    fn a_peer_offers_up_to_its_burst() {
        let mut o = Offers::default();
        let (p, q) = (PeerId::random(), PeerId::random());
        // Refilling while this runs adds a few at most.
        let taken = (0..5000).filter(|_| o.allow(p)).count();
        assert!((OFFER_BURST as usize..OFFER_BURST as usize + 64).contains(&taken));
        assert!(o.allow(q), "another peer has its own allowance");
    }

    #[test]
    fn one_worker_drains_the_queue_and_a_new_one_starts_after_it() {
        let mut o = Offers::default();
        let p = PeerId::random();
        let record = |i: u8| kad::Record::new(kad::RecordKey::new(&[i]), vec![i]);
        assert!(o.queue(p, record(1)), "the first record starts a worker");
        assert!(
            !o.queue(p, record(2)),
            "the running worker takes the second"
        );
        assert_eq!(o.take(CHECK_BATCH).len(), 2);
        assert!(o.take(CHECK_BATCH).is_empty());
        assert!(
            o.queue(p, record(3)),
            "the worker stopped: a new one starts"
        );
        for i in 0..MAX_QUEUED + 10 {
            o.queue(p, record(i as u8));
        }
        assert_eq!(o.queue.len(), MAX_QUEUED);
    }

    #[test]
    fn parked_records_wait_for_their_version_within_bounds() {
        let mut o = Offers::default();
        let p = PeerId::random();
        let t0 = Instant::now();
        let record = |i: u8| kad::Record::new(kad::RecordKey::new(&[i]), vec![i]);
        for i in 0..10u8 {
            assert!(!o.park(VersionId([i % 2; 32]), p, record(i), t0));
        }
        // Kept: its five are queued to be checked, and a worker must start.
        assert!(o.unpark(&VersionId([1; 32])));
        assert_eq!(o.take(CHECK_BATCH).len(), 5);
        assert!(o.take(CHECK_BATCH).is_empty());
        // One checked while its version was being kept is checked again, not parked.
        assert!(o.park(VersionId([1; 32]), p, record(50), t0));
        assert_eq!(o.take(CHECK_BATCH).len(), 1);
        assert!(o.take(CHECK_BATCH).is_empty());
        // Past their time they are gone.
        o.park(VersionId([2; 32]), p, record(99), t0 + PARK_FOR * 2);
        o.unpark(&VersionId([0; 32]));
        assert!(o.take(CHECK_BATCH).is_empty());
        // A peer has a share; past the cap the oldest give way.
        for i in 0..MAX_PARKED_PER_PEER + 5 {
            o.park(VersionId([3; 32]), p, record(i as u8), t0 + PARK_FOR * 2);
        }
        assert_eq!(o.parked.len(), MAX_PARKED_PER_PEER);
        for i in 0..MAX_PARKED + 5 {
            o.park(
                VersionId([4; 32]),
                PeerId::random(),
                record(i as u8),
                t0 + PARK_FOR * 2,
            );
        }
        assert_eq!(o.parked.len(), MAX_PARKED);
    }
}
