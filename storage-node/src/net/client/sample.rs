//! The nodes a push may place on, sampled from the whole network: walks through the DHT
//! towards keys drawn from a seed, not the neighbours of one node.
//!
//! [`Sampling`] decides which walks to make and when to stop (sans-IO); the client runs
//! them through its swarm, asks each node found for its `Info` (its room and operator),
//! its bootstrap node for the standing of each, and takes each node's network from the
//! address the client itself reached it at.

use std::{collections::HashSet, net::IpAddr, time::Duration};

use futures::{StreamExt, stream::FuturesOrdered};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::oneshot;

use super::{Client, ClientError, refusal};
use crate::net::{
    NetError,
    node::data_id_of,
    swarm::Command,
    wire::{self, NodeInfo, Request, Response, Trust},
};

/// Walks in flight at once.
const PARALLEL_WALKS: usize = 4;
/// Walks in a row that find no node not found before: the network has no more to give.
const DRY_WALKS: usize = 3;
/// Nodes a walk returns at most (Kademlia's K).
const PER_WALK: usize = 20;
/// `Info` asks in flight at once.
const PARALLEL_ASKS: usize = 32;
/// How long a sampled node has to describe itself.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);
/// Rounds of walks a sample makes at most, each from keys of its own, while it is short
/// of usable or established nodes.
const ROUNDS: u64 = 3;
/// Fewest candidates a push samples, whatever its size.
pub(super) const MIN_SAMPLE: usize = 32;
/// Bytes of pieces per candidate sampled: a larger push spreads over more nodes.
pub(super) const BYTES_PER_CANDIDATE: u64 = 1 << 30;

/// How many nodes a push of `piece_bytes` in stripes of `n` pieces samples: the largest
/// of 4 times a stripe's width (so each stripe has a choice), [`MIN_SAMPLE`], and one per
/// [`BYTES_PER_CANDIDATE`] of pieces (so a large push spreads wide); at most what a
/// bootstrap node is asked about at once.
pub(super) fn sample_size(n: usize, piece_bytes: u64) -> usize {
    let by_size = usize::try_from(piece_bytes.div_ceil(BYTES_PER_CANDIDATE)).unwrap_or(usize::MAX);
    (4 * n)
        .max(MIN_SAMPLE)
        .max(by_size)
        .min(wire::MAX_PEERS_LISTED)
}

/// Which DHT walks a sample makes, and when it has enough.
///
/// Walk `i` goes towards `blake3(seed, i)`: keys spread evenly over the key space, so the
/// nodes found are a sample of the whole network; a seed nobody else knows gives keys
/// nobody can crowd identities around; and the same seed on the same network finds the
/// same nodes (walks are taken in the order started). It stops when it has `want`
/// distinct nodes, after [`DRY_WALKS`] walks in a row found nothing new (a network
/// smaller than `want`), or after a bounded number of walks.
#[derive(Debug)]
pub(crate) struct Sampling {
    seed: [u8; 32],
    want: usize,
    max_walks: usize,
    started: usize,
    in_flight: usize,
    dry: usize,
    seen: HashSet<PeerId>,
    found: Vec<(PeerId, Vec<Multiaddr>)>,
}

impl Sampling {
    /// A sample of `want` nodes, drawn by walks towards keys from `seed`.
    pub(crate) fn new(seed: [u8; 32], want: usize) -> Self {
        Self {
            seed,
            want,
            // Twice the walks that would do if none overlapped, and a few more.
            max_walks: 2 * want.div_ceil(PER_WALK) + 2 * DRY_WALKS,
            started: 0,
            in_flight: 0,
            dry: 0,
            seen: HashSet::new(),
            found: Vec::new(),
        }
    }

    /// The key of the next walk to start, if one should start now.
    pub(crate) fn next_walk(&mut self) -> Option<[u8; 32]> {
        if self.done() || self.in_flight >= PARALLEL_WALKS || self.started >= self.max_walks {
            return None;
        }
        let mut h = blake3::Hasher::new_keyed(&self.seed);
        h.update(b"cairn sample walk");
        h.update(&(self.started as u64).to_le_bytes());
        self.started += 1;
        self.in_flight += 1;
        Some(*h.finalize().as_bytes())
    }

    /// What a walk found. `me` (the sampler's own peer) is never a candidate.
    pub(crate) fn walked(&mut self, peers: Vec<(PeerId, Vec<Multiaddr>)>, me: &PeerId) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let mut fresh = 0;
        for (p, addrs) in peers.into_iter().take(PER_WALK) {
            if self.found.len() >= self.want {
                break;
            }
            if p != *me && self.seen.insert(p) {
                self.found.push((p, addrs));
                fresh += 1;
            }
        }
        self.dry = if fresh == 0 { self.dry + 1 } else { 0 };
    }

    /// Whether the sample is complete: it has what it wants, the network ran dry, or
    /// every walk it may make has ended. Walks still in flight are not waited for.
    pub(crate) fn done(&self) -> bool {
        self.found.len() >= self.want
            || self.dry >= DRY_WALKS
            || (self.in_flight == 0 && self.started >= self.max_walks)
    }

    /// The nodes found, in the order found.
    pub(crate) fn into_found(self) -> Vec<(PeerId, Vec<Multiaddr>)> {
        self.found
    }
}

impl Client {
    /// Up to `want` nodes from the whole network, walked to from `seed` (and the bootstrap
    /// node), each as it describes itself (room, operator), with the standing the
    /// bootstrap node's ledger gives it and, where the network counts subnets, the
    /// address this client reached it at. Nodes that do not answer, answer for another
    /// peer or data-plane key, or whose address is unknown where subnets count, are left
    /// out. While the sample is short of `want` usable nodes or of `n` established ones,
    /// it walks again from fresh keys, up to [`ROUNDS`] times.
    pub(crate) async fn sample(
        &self,
        seed: [u8; 32],
        want: usize,
        n: usize,
    ) -> Result<Vec<NodeInfo>, ClientError> {
        let mut asked: HashSet<PeerId> = HashSet::new();
        let mut nodes: Vec<NodeInfo> = Vec::new();
        for round in 0..ROUNDS {
            let key = *blake3::keyed_hash(&seed, &round.to_le_bytes()).as_bytes();
            let mut found = self.walk(key, want).await?;
            if round == 0 {
                // The bootstrap node is a candidate whether or not a walk found it.
                found.push((self.bootstrap, vec![self.bootstrap_addr.clone()]));
            }
            found.retain(|(p, _)| asked.insert(*p));
            if found.is_empty() {
                break;
            }
            nodes.extend(self.describe(found).await?);
            let established = nodes
                .iter()
                .filter(|i| i.trust == Trust::Established)
                .count();
            if nodes.len() >= want && established >= n {
                break;
            }
        }
        nodes.sort_by(|a, b| a.peer.cmp(&b.peer));
        Ok(nodes)
    }

    /// One sample's walks towards keys from `seed`.
    async fn walk(
        &self,
        seed: [u8; 32],
        want: usize,
    ) -> Result<Vec<(PeerId, Vec<Multiaddr>)>, ClientError> {
        let mut sampling = Sampling::new(seed, want);
        // In the order started, so that the same network gives the same sample.
        let mut walks = FuturesOrdered::new();
        loop {
            while let Some(key) = sampling.next_walk() {
                let (reply, rx) = oneshot::channel();
                self.control
                    .send(Command::ClosestPeers { key, reply })
                    .await?;
                walks.push_back(rx);
            }
            if sampling.done() {
                break;
            }
            match walks.next().await {
                Some(found) => sampling.walked(found.map_err(|_| NetError::Stopped)?, &self.local),
                None => break,
            }
        }
        Ok(sampling.into_found())
    }

    /// Each node's `Info`, its network as this client reaches it, and its standing in the
    /// bootstrap node's ledger; the nodes that cannot be placed on are left out.
    async fn describe(
        &self,
        found: Vec<(PeerId, Vec<Multiaddr>)>,
    ) -> Result<Vec<NodeInfo>, ClientError> {
        let asks = futures::stream::iter(found.into_iter().map(|(p, addrs)| {
            let control = self.control.clone();
            async move {
                let info = match tokio::time::timeout(
                    ASK_TIMEOUT,
                    control.request(p, addrs, Request::Info),
                )
                .await
                {
                    Ok(Ok(Response::Info(i)))
                        if i.peer == p.to_string()
                            && i.is_sane()
                            && data_id_of(&p) == Some(i.data.id) =>
                    {
                        i
                    }
                    _ => return None,
                };
                // Asked the moment the answer came, while its connection is open.
                let (reply, rx) = oneshot::channel();
                control
                    .send(Command::RemoteIps {
                        peers: vec![p],
                        reply,
                    })
                    .await
                    .ok()?;
                let ip = rx.await.ok()?.into_iter().next().flatten();
                Some((p, info, ip))
            }
        }))
        .buffer_unordered(PARALLEL_ASKS);
        let described: Vec<(PeerId, NodeInfo, Option<IpAddr>)> =
            asks.filter_map(std::future::ready).collect().await;
        if described.is_empty() {
            return Ok(Vec::new());
        }
        // Standing is the bootstrap node's to say: whatever a node says of itself is
        // overwritten.
        let peers: Vec<String> = described.iter().map(|(p, _, _)| p.to_string()).collect();
        let (trust, subnets) = match self.ask(Request::Standing { peers }).await? {
            Response::Standing { trust, subnets } if trust.len() == described.len() => {
                (trust, subnets)
            }
            other => return Err(refusal(&self.bootstrap, other).into()),
        };
        Ok(described
            .into_iter()
            .zip(trust)
            // A node whose network is unknown where networks are failure domains could
            // share one with anyone: it is left out.
            .filter(|((_, _, ip), _)| !subnets || ip.is_some())
            .map(|((_, mut i, ip), trust)| {
                i.trust = trust;
                i.seen = ip.filter(|_| subnets);
                i
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A network of `n` peers, the same each time, in which a walk finds the
    /// `PER_WALK` closest to its key.
    fn network(n: usize) -> Vec<PeerId> {
        (0..n)
            .map(|i| {
                let secret = *blake3::hash(&(i as u64).to_le_bytes()).as_bytes();
                libp2p::identity::Keypair::ed25519_from_bytes(secret)
                    .expect("32 bytes")
                    .public()
                    .to_peer_id()
            })
            .collect()
    }

    fn walk(net: &[PeerId], key: &[u8; 32]) -> Vec<(PeerId, Vec<Multiaddr>)> {
        let target = libp2p::kad::KBucketKey::new(key.to_vec());
        let mut by: Vec<&PeerId> = net.iter().collect();
        by.sort_by_key(|p| libp2p::kad::KBucketKey::from(**p).distance(&target));
        by.into_iter()
            .take(PER_WALK)
            .map(|p| (*p, Vec::new()))
            .collect()
    }

    /// Runs a sample to the end, walks answered one at a time in the order started.
    fn run(net: &[PeerId], me: &PeerId, seed: [u8; 32], want: usize) -> (Vec<PeerId>, usize) {
        let mut s = Sampling::new(seed, want);
        let mut queue = std::collections::VecDeque::new();
        let mut walks = 0;
        loop {
            while let Some(k) = s.next_walk() {
                walks += 1;
                queue.push_back(k);
            }
            if s.done() {
                break;
            }
            let k = queue.pop_front().expect("a walk in flight");
            s.walked(walk(net, &k), me);
        }
        (s.into_found().into_iter().map(|(p, _)| p).collect(), walks)
    }

    #[test]
    fn a_large_network_is_sampled_across_its_key_space() {
        let net = network(2000);
        let me = PeerId::random();
        let (found, walks) = run(&net, &me, [7; 32], 64);
        assert_eq!(found.len(), 64);
        assert!(walks <= 2 * 64usize.div_ceil(PER_WALK) + 2 * DRY_WALKS);
        // Not one neighbourhood: the nodes found are spread over the key space, as the
        // first byte of their keys shows (a single walk's 20 closest share a prefix).
        let firsts: HashSet<u8> = found
            .iter()
            .map(|p| libp2p::kad::KBucketKey::from(*p).hashed_bytes()[0] >> 5)
            .collect();
        assert!(firsts.len() >= 3, "{firsts:?}");
        // The same seed finds the same nodes.
        assert_eq!(run(&net, &me, [7; 32], 64).0, found);
    }

    proptest! {
        /// Whatever the network's size, a sample ends, never names a node twice or
        /// itself, never takes more than it wants, and takes the whole of a network
        /// smaller than that.
        #[test]
        fn a_sample_ends_with_distinct_nodes_and_all_of_a_small_network(
            n in 0usize..120,
            want in 1usize..80,
            seed in any::<[u8; 32]>(),
        ) {
            let mut net = network(n);
            let me = PeerId::random();
            net.push(me);
            let (found, walks) = run(&net, &me, seed, want);
            let distinct: HashSet<&PeerId> = found.iter().collect();
            prop_assert_eq!(distinct.len(), found.len());
            prop_assert!(!found.contains(&me));
            prop_assert!(found.len() <= want);
            prop_assert!(walks <= 2 * want.div_ceil(PER_WALK) + 2 * DRY_WALKS);
            if n < PER_WALK {
                prop_assert_eq!(found.len(), n.min(want));
            }
        }
    }
}
