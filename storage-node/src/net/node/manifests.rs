//! Manifests on a node: taking a version in (placed, within its publisher's quota, and
//! owned), fetching versions announced or missed, and collecting the pieces no version
//! references.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, atomic::Ordering},
    time::Duration,
};

use libp2p::{Multiaddr, PeerId};
use tracing::{debug, info, warn};

use super::{State, lock, upkeep::peer_of_node};
use crate::{
    ids::{DatasetName, NodeId, PieceId, VersionId},
    location::{Holder, PlacementKey, SignedPlacement},
    manifest::{Manifest, Stripe},
    net::{
        control_addrs,
        swarm::Command,
        wire::{self, ErrorCode, PieceHolders, Request, Response},
    },
    repair::stripe_id,
    store::StoreError,
};

/// Most manifests waiting at once for their placement to be shown.
const MAX_HEARD: usize = 64;
/// How often requests may have one heard-of version checked: asking for it again and
/// again checks it no more often than this.
const HEARD_RECHECK: Duration = Duration::from_secs(2);
/// How long a request waits for the turn to check a heard-of version (one check runs
/// at a time); past it, the version is not found yet.
const HEARD_TURN_WAIT: Duration = Duration::from_secs(5);

/// Manifests fetched after their announcement whose placement is still being checked
/// (`fetch_manifest`), for a request that asks for one meanwhile.
#[derive(Debug, Default)]
pub(super) struct Heard {
    /// Each with its entry's id, and when a request last had it checked.
    waiting: Vec<(u64, Manifest, Option<tokio::time::Instant>)>,
    next: u64,
}

/// A manifest's place in [`Heard`]: taken out when dropped.
pub(super) struct HeardEntry<'a> {
    heard: &'a Mutex<Heard>,
    id: u64,
}

impl Heard {
    /// Adds `m` (the oldest goes past [`MAX_HEARD`]); it leaves when the entry drops.
    pub(super) fn add(&mut self, m: Manifest) -> u64 {
        if self.waiting.len() >= MAX_HEARD {
            self.waiting.remove(0);
        }
        self.next += 1;
        self.waiting.push((self.next, m, None));
        self.next
    }

    fn remove(&mut self, id: u64) {
        self.waiting.retain(|(i, _, _)| *i != id);
    }

    /// Whether a version of `name` made after `created_unix` is waiting here.
    pub(super) fn newer(&self, name: &DatasetName, created_unix: u64) -> bool {
        self.waiting
            .iter()
            .any(|(_, m, _)| m.name() == name && m.body().created_unix > created_unix)
    }

    /// The manifest of `version` (of `name`, if given), else `name`'s newest, to check at
    /// `now`: none if a request had it checked less than [`HEARD_RECHECK`] ago.
    pub(super) fn take_turn(
        &mut self,
        name: Option<&DatasetName>,
        version: Option<[u8; 32]>,
        now: tokio::time::Instant,
    ) -> Option<Manifest> {
        if name.is_none() && version.is_none() {
            return None;
        }
        let (_, m, checked) = self
            .waiting
            .iter_mut()
            .filter(|(_, m, _)| name.is_none_or(|n| m.name() == n))
            .filter(|(_, m, _)| version.is_none_or(|v| m.version().0 == v))
            .max_by_key(|(_, m, _)| m.body().created_unix)?;
        if checked.is_some_and(|t| now.duration_since(t) < HEARD_RECHECK) {
            return None;
        }
        *checked = Some(now);
        Some(m.clone())
    }
}

impl Drop for HeardEntry<'_> {
    fn drop(&mut self) {
        lock(self.heard).remove(self.id);
    }
}

/// A piece of a version drawn to be proven: where it lies.
struct Drawn<'m> {
    /// Its place among the manifest's pieces, in order.
    at: usize,
    stripe: &'m Stripe,
    /// Its index in the stripe.
    index: usize,
}

/// Pieces of a new version that must be proven placed before it is kept.
const PLACED_SAMPLE: usize = 4;
/// Most pieces drawn to find them.
const PLACED_DRAWS: usize = 3 * PLACED_SAMPLE;
/// Attempts at keeping an announced version that is not placed yet.
const PLACED_ATTEMPTS: u32 = 6;
/// Longest wait for a DHT lookup of a drawn piece's placement record.
const RECORD_LOOKUP: Duration = Duration::from_secs(10);
/// Longest a new version's placement check may take in all.
const PLACED_DEADLINE: Duration = Duration::from_secs(60);
/// Manifests a peer may publish through this node, a second and at once: decoding and
/// checking one is paid before anything says whether the version is any good.
pub(super) const PUBLISH_RATE: f64 = 1.0;
pub(super) const PUBLISH_BURST: f64 = 32.0;
/// Versions published through this node whose placement is checked at once, and how
/// long one more waits for its turn.
pub(super) const MAX_PLACING: usize = 4;
const PLACING_WAIT: Duration = Duration::from_secs(30);
/// Most piece ids of refused manifests kept from orphan collection.
pub(super) const MAX_REFUSED_REFS: usize = 1 << 20;

impl State {
    /// `Request::Publish`: `bytes` as a manifest, charged to `from`'s allowance before it
    /// is decoded, and kept once its pieces are shown placed (a few such checks at once).
    pub(super) async fn publish(
        self: &Arc<Self>,
        from: PeerId,
        bytes: &[u8],
        holders: Option<&PieceHolders>,
    ) -> Result<bool, (ErrorCode, String)> {
        if bytes.len() > wire::MAX_NETWORK_MANIFEST {
            return Err((ErrorCode::BadRequest, "manifest too large".into()));
        }
        if !lock(&self.publishes).admit(from, 1.0) {
            return Err((
                ErrorCode::Busy,
                "over this peer's allowance of published manifests; try again in a minute".into(),
            ));
        }
        let m = Manifest::decode(bytes)
            .map_err(|e| (ErrorCode::BadRequest, format!("invalid manifest: {e}")))?;
        if holders.is_some_and(|h| !h.fits(m.pieces().count())) {
            return Err((
                ErrorCode::BadRequest,
                "the table of piece holders does not fit the manifest".into(),
            ));
        }
        // A version kept already needs no check: it is answered at once, whatever the
        // other publishes through this node are waiting for.
        let store = self.store.clone();
        let version = m.version();
        if let Ok(Some(_)) = self.blocking(move || store.manifest(&version)).await {
            return Ok(false);
        }
        let Ok(Ok(_turn)) = tokio::time::timeout(PLACING_WAIT, self.placing.acquire()).await else {
            return Err((
                ErrorCode::Busy,
                "this node is checking other new versions; try again in a minute".into(),
            ));
        };
        self.store_manifest(m, holders).await
    }

    /// Stores a verified manifest whose pieces are placed; announces it if it was new.
    /// A manifest that names a dataset another publisher owns here is refused, but its
    /// pieces are kept from orphan collection, and the conflict is reported.
    pub(super) async fn store_manifest(
        self: &Arc<Self>,
        m: Manifest,
        hints: Option<&PieceHolders>,
    ) -> Result<bool, (ErrorCode, String)> {
        let store = self.store.clone();
        let version = m.version();
        if matches!(store.manifest(&version), Ok(Some(_))) {
            return Ok(false);
        }
        if let Err(why) = self.placed(&m, hints).await {
            return Err((
                ErrorCode::NotPlaced,
                format!("version {version} is not placed: {why}"),
            ));
        }
        let refs: Vec<PieceId> = m.pieces().map(|r| r.id).collect();
        let name = m.name().clone();
        let kept = m.clone();
        let res = self.blocking(move || store.put_manifest(&m)).await;
        match res {
            Ok(true) => {
                self.unpark(&version);
                self.adopt_placements(kept);
                self.control
                    .send(Command::Gossip {
                        topic: wire::MANIFEST_TOPIC,
                        data: version.0.to_vec(),
                    })
                    .await
                    .ok();
                Ok(true)
            }
            Ok(false) => Ok(false),
            Err(e @ StoreError::NotOwner { .. }) => {
                // Two publishers claim one name: this node keeps the first, but pieces
                // the other's version references (repair may place them here) are not
                // orphans, and the split is not silent.
                warn!(dataset = %name, %version, "name conflict: {e}");
                self.stats.name_conflicts.fetch_add(1, Ordering::Relaxed);
                let mut pinned = lock(&self.refused_refs);
                for r in refs {
                    if pinned.len() >= MAX_REFUSED_REFS {
                        break;
                    }
                    pinned.insert(r);
                }
                Err((ErrorCode::NotOwner, e.to_string()))
            }
            Err(e @ StoreError::Quota { .. }) => Err((ErrorCode::Quota, e.to_string())),
            Err(e) => Err((ErrorCode::Internal, e.to_string())),
        }
    }

    /// Whether `m`'s pieces are placed: [`PLACED_SAMPLE`] pieces drawn at random (or all,
    /// for a smaller version) are each held here or proven by a holder, out of at most
    /// [`PLACED_DRAWS`] draws. A push publishes only once every piece is acknowledged, so
    /// a manifest whose pieces nobody can prove is one no push placed; a few misbehaving
    /// holders among honest ones do not keep a version out. The holders asked are the
    /// ones `hints` (the push's table) name, those heard announcing the piece, and the one
    /// the stripe's placement record names.
    async fn placed(
        self: &Arc<Self>,
        m: &Manifest,
        hints: Option<&PieceHolders>,
    ) -> Result<(), String> {
        let all: Vec<Drawn> = m
            .files()
            .iter()
            .flat_map(|f| &f.stripes)
            .flat_map(|s| (0..s.pieces.len()).map(move |i| (s, i)))
            .enumerate()
            .map(|(at, (stripe, index))| Drawn { at, stripe, index })
            .collect();
        let need = PLACED_SAMPLE.min(all.len().div_ceil(2));
        // Draws at random, without repeats.
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).ok();
        let mut order: Vec<usize> = Vec::with_capacity(PLACED_DRAWS);
        for j in 0..(4 * PLACED_DRAWS) as u64 {
            if order.len() >= PLACED_DRAWS.min(all.len()) {
                break;
            }
            let h = blake3::keyed_hash(&seed, &j.to_le_bytes());
            let mut head = [0u8; 8];
            head.copy_from_slice(&h.as_bytes()[..8]);
            let i = (u64::from_le_bytes(head) % all.len().max(1) as u64) as usize;
            if !order.contains(&i) {
                order.push(i);
            }
        }
        let (mut proven, mut drawn) = (0usize, 0usize);
        let draws = async {
            for &i in &order {
                // Done either way: enough proven, or too few draws left to prove enough.
                if proven >= need || proven + (order.len() - drawn) < need {
                    break;
                }
                drawn += 1;
                if self.proven_piece(m, &all[i], hints).await {
                    proven += 1;
                }
            }
        };
        if tokio::time::timeout(PLACED_DEADLINE, draws).await.is_err() {
            return Err(format!(
                "its pieces were not proven within {} s",
                PLACED_DEADLINE.as_secs()
            ));
        }
        if proven >= need {
            Ok(())
        } else {
            Err(format!(
                "{proven} of the {drawn} pieces drawn are held here or proven by a holder; {need} must be"
            ))
        }
    }

    /// Whether the piece `d` of `m` is held here, or a holder proves it: the one `hints`
    /// names, then connected holders that announced it, then the one its stripe's
    /// placement record names (a record waiting here for this version, or the DHT's).
    async fn proven_piece(
        self: &Arc<Self>,
        m: &Manifest,
        d: &Drawn<'_>,
        hints: Option<&PieceHolders>,
    ) -> bool {
        let Some(piece) = d.stripe.pieces.get(d.index) else {
            return false;
        };
        let (id, len) = (piece.id, piece.len);
        let store = self.store.clone();
        if self
            .blocking(move || store.has_piece(&id))
            .await
            .unwrap_or(false)
        {
            return true;
        }
        let mut asked: HashSet<PeerId> = HashSet::from([self.peer]);
        let mut ask: Vec<(PeerId, Vec<Multiaddr>)> = Vec::new();
        if let Some(h) = hints.and_then(|h| h.holder_of(d.at)) {
            ask.extend(peer_of_node(&NodeId(h.id)).map(|p| (p, control_addrs(&h.addrs))));
        }
        {
            // Holders before connected, the order the rest of the node takes them in.
            let holders = lock(&self.holders);
            let connected = lock(&self.known);
            ask.extend(
                holders
                    .holders(&id)
                    .map(|(p, _)| *p)
                    .filter(|p| connected.contains_key(p))
                    .take(3)
                    .map(|p| (p, vec![])),
            );
        }
        for (peer, addrs) in ask {
            if asked.insert(peer) && self.proves(peer, &addrs, id, len).await {
                return true;
            }
        }
        let Some(named) = self.record_holder(m, d).await else {
            return false;
        };
        match peer_of_node(&named.node) {
            Some(peer) if !asked.contains(&peer) => {
                self.proves(peer, &control_addrs(&named.addrs), id, len)
                    .await
            }
            _ => false,
        }
    }

    /// Whether `peer` proves it holds `piece`.
    async fn proves(&self, peer: PeerId, addrs: &[Multiaddr], piece: PieceId, len: u32) -> bool {
        crate::net::spot_check::prove(&self.control, peer, addrs, piece, len)
            .await
            .is_ok()
    }

    /// The holder of the piece `d` of `m` that its stripe's placement record names: one
    /// that waits here for the version to be kept (unchecked: it is only where to ask for
    /// a proof), else the current one a DHT lookup finds.
    async fn record_holder(self: &Arc<Self>, m: &Manifest, d: &Drawn<'_>) -> Option<Holder> {
        let stripe = stripe_id(d.stripe);
        let key = PlacementKey::of(&m.publisher(), &stripe);
        let waiting = lock(&self.offers).parked(&m.version(), &key.0);
        let record = match waiting.and_then(|b| SignedPlacement::peek(&b).ok()) {
            Some(r) => r,
            None => {
                let found = tokio::time::timeout(RECORD_LOOKUP, self.get_current(key.0));
                found.await.ok()??.0.record().clone()
            }
        };
        if record.stripe != stripe || record.publisher != m.publisher() {
            return None;
        }
        record.holders.get(d.index)?.clone()
    }

    /// Fetches `version` from `peer` unless held, verifies and stores it.
    pub(super) async fn fetch_manifest(
        self: Arc<Self>,
        peer: PeerId,
        version: [u8; 32],
        _permit: tokio::sync::OwnedSemaphorePermit,
    ) {
        if matches!(self.store.manifest(&VersionId(version)), Ok(Some(_))) {
            return;
        }
        let req = Request::Manifest {
            name: None,
            version: Some(version),
        };
        match self.control.request(peer, vec![], req).await {
            Ok(Response::Manifest(bytes)) if bytes.len() <= wire::MAX_NETWORK_MANIFEST => {
                match Manifest::decode(&bytes) {
                    Ok(m) if m.version().0 == version => {
                        // Holders announce pieces just after they store them: a version
                        // announced a moment ago may not be placed in this node's view
                        // yet. Ask again a few times; catch-up tries later still. A
                        // request for it meanwhile checks it at once (`keep_heard`).
                        let _heard = HeardEntry {
                            id: lock(&self.heard_versions).add(m.clone()),
                            heard: &self.heard_versions,
                        };
                        let mut wait = Duration::from_millis(250);
                        for attempt in 1..=PLACED_ATTEMPTS {
                            match self.store_manifest(m.clone(), None).await {
                                Err((ErrorCode::NotPlaced, e)) if attempt < PLACED_ATTEMPTS => {
                                    debug!(%peer, "manifest not kept yet: {e}");
                                    tokio::time::sleep(wait).await;
                                    wait = (wait * 2).min(Duration::from_secs(2));
                                }
                                Err((_, e)) => {
                                    warn!(%peer, "manifest from peer not stored: {e}");
                                    break;
                                }
                                Ok(_) => break,
                            }
                        }
                    }
                    Ok(_) => warn!(%peer, "peer sent a manifest with another version id"),
                    Err(e) => warn!(%peer, "peer sent an invalid manifest: {e}"),
                }
            }
            Ok(_) => debug!(%peer, "peer did not send the manifest"),
            Err(e) => debug!(%peer, "manifest fetch failed: {e}"),
        }
    }

    /// Keeps a version heard of whose placement is still being checked, one that `name`
    /// and `version` select (the latest heard of `name`, without `version`), checking it
    /// now: its push may have placed it since the last check. Whether one was kept. Each
    /// version is checked so at most every [`HEARD_RECHECK`], however often it is asked,
    /// and one such check runs at a time.
    pub(super) async fn keep_heard(
        self: &Arc<Self>,
        name: Option<&DatasetName>,
        version: Option<[u8; 32]>,
    ) -> bool {
        let now = tokio::time::Instant::now();
        let Some(m) = lock(&self.heard_versions).take_turn(name, version, now) else {
            return false;
        };
        // Its own turn, one at a time, not a publishing one: requests from anyone cannot
        // keep publishes through this node waiting.
        let Ok(Ok(_turn)) = tokio::time::timeout(HEARD_TURN_WAIT, self.heard_turn.acquire()).await
        else {
            return false;
        };
        match self.store_manifest(m, None).await {
            Ok(_) => true,
            Err((_, e)) => {
                debug!("a version heard of and asked for is not kept yet: {e}");
                false
            }
        }
    }

    /// Asks a newly met peer which versions it has and fetches the missing ones.
    pub(super) async fn catch_up(self: Arc<Self>, peer: PeerId) {
        // Learn the operator it declares, for placing rebuilt pieces apart.
        if let Ok(Response::Info(i)) = self.control.request(peer, vec![], Request::Info).await
            && i.peer == peer.to_string()
            && let Some(o) = i
                .operator
                .filter(|o| crate::net::domain::check_operator(o).is_ok())
            && let Some(place) = lock(&self.places).get_mut(&peer)
        {
            place.operator = Some(o);
        }
        let Ok(Response::Versions(vs)) =
            self.control.request(peer, vec![], Request::Versions).await
        else {
            return;
        };
        for v in vs.into_iter().take(wire::MAX_LIST) {
            if !matches!(self.store.manifest(&VersionId(v)), Ok(Some(_))) {
                let Ok(permit) = self.catch_up_permits.clone().acquire_owned().await else {
                    return;
                };
                self.clone().fetch_manifest(peer, v, permit).await;
            }
        }
    }

    /// Deletes pieces that no manifest has referenced for `grace`: what a push that never
    /// published left behind. Pieces of every manifest the node knows are kept, and those
    /// of manifests it refused for a name conflict.
    pub(super) async fn collect_orphans(
        self: Arc<Self>,
        seen: Arc<Mutex<HashMap<PieceId, tokio::time::Instant>>>,
        grace: Duration,
    ) {
        let store = self.store.clone();
        let now = tokio::time::Instant::now();
        let pinned = lock(&self.refused_refs).clone();
        // One index seek per piece held: no manifest is decoded.
        let scan = self
            .workers
            .blocking(move || -> Result<Vec<PieceId>, StoreError> {
                let mut out = Vec::new();
                for p in store.piece_ids()? {
                    if !pinned.contains(&p) && !store.is_referenced(&p)? {
                        out.push(p);
                    }
                }
                Ok(out)
            })
            .await;
        let Ok(Ok(unreferenced)) = scan else {
            return;
        };
        // The group of a stripe this node no longer holds a piece of is not its to keep.
        let store = self.store.clone();
        if let Ok(Ok(n @ 1..)) = self
            .workers
            .blocking(move || store.prune_placements())
            .await
        {
            debug!(
                records = n,
                "forgot placement records of stripes no longer held"
            );
        }
        let expired: Vec<PieceId> = {
            let mut seen = lock(&seen);
            let now_set: HashSet<PieceId> = unreferenced.iter().copied().collect();
            seen.retain(|p, _| now_set.contains(p));
            unreferenced
                .into_iter()
                .filter(|p| now.duration_since(*seen.entry(*p).or_insert(now)) >= grace)
                .collect()
        };
        if expired.is_empty() {
            return;
        }
        let store = self.store.clone();
        let removed = self
            .workers
            .blocking(move || {
                expired
                    .into_iter()
                    .filter(|p| matches!(store.remove_piece(p), Ok(true)))
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
        if removed.is_empty() {
            return;
        }
        info!(
            pieces = removed.len(),
            "deleted pieces no manifest references"
        );
        // No one was told of them: a node announces a piece only to the group of a stripe
        // it knows, and these are of none.
        lock(&seen).retain(|p, _| !removed.contains(p));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        erasure::ErasureParams,
        manifest::{ManifestBody, PublisherKey},
    };

    fn version(name: &str, created_unix: u64) -> Manifest {
        let body = ManifestBody {
            name: name.parse().unwrap(),
            parent: None,
            created_unix,
            card: String::new(),
            license: String::new(),
            params: ErasureParams::new(4, 2, 64).unwrap(),
            files: vec![],
        };
        Manifest::sign(body, &PublisherKey::from_secret_bytes(&[3; 32])).unwrap()
    }

    #[test]
    fn a_heard_version_is_checked_on_request_at_most_every_recheck() {
        let mut heard = Heard::default();
        let (old, new, other) = (version("a/x", 1), version("a/x", 2), version("b/y", 1));
        for m in [&old, &new, &other] {
            heard.add(m.clone());
        }
        let t0 = tokio::time::Instant::now();
        let x: DatasetName = "a/x".parse().unwrap();
        // By name: the newest heard of it; asked again at once, no second check.
        assert_eq!(heard.take_turn(Some(&x), None, t0), Some(new.clone()));
        assert_eq!(
            heard.take_turn(Some(&x), None, t0 + HEARD_RECHECK / 2),
            None
        );
        // By version, of that name or any; never of another name, never with neither.
        let v = Some(old.version().0);
        assert_eq!(heard.take_turn(Some(&x), v, t0), Some(old.clone()));
        let y: DatasetName = "b/y".parse().unwrap();
        assert_eq!(heard.take_turn(Some(&y), Some(new.version().0), t0), None);
        assert_eq!(
            heard.take_turn(None, Some(other.version().0), t0),
            Some(other)
        );
        assert_eq!(heard.take_turn(None, None, t0), None);
        // A newer version than one kept is seen as such; an older or another name's not.
        assert!(heard.newer(&x, 1) && !heard.newer(&x, 2) && !heard.newer(&y, 1));
        // Once the wait is over, checked again.
        assert_eq!(
            heard.take_turn(Some(&x), None, t0 + HEARD_RECHECK),
            Some(new)
        );
    }

    #[test]
    fn heard_versions_are_bounded_and_leave_with_their_entry() {
        let mut heard = Heard::default();
        let ids: Vec<u64> = (0..MAX_HEARD as u64 + 5)
            .map(|i| heard.add(version("a/x", i)))
            .collect();
        assert_eq!(heard.waiting.len(), MAX_HEARD);
        for id in ids {
            heard.remove(id);
        }
        assert!(heard.waiting.is_empty());
    }
}
