//! A cluster of real piece stores in one process: the storage engine end to end without a
//! network, as a test kit. Each node is its own data directory with its own rocksdb.
//!
//! Placement rotates with the stripe: piece `i` of the `s`-th stripe (counted across the
//! whole dataset) goes to node `(s + i) mod N`, so the `k + m` pieces of a stripe always
//! land on distinct nodes and load spreads evenly.

use std::fs;
use std::path::{Path, PathBuf};

use proofs::Nonce;
use thiserror::Error;
use tracing::info;

use crate::engine::{self, BoxError, EncodeOptions, EngineError, SourceFile};
use crate::ids::PieceId;
use crate::manifest::{Manifest, PieceRef, PublisherKey};
use crate::store::{PieceStore, StoreError, StoreOptions};

/// Local cluster failures.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// Fewer live nodes than pieces per stripe.
    #[error(
        "placing {needed} pieces per stripe on distinct nodes needs {needed} nodes; {live} are live"
    )]
    TooFewNodes {
        /// `k + m`.
        needed: usize,
        /// Live nodes.
        live: usize,
    },
    /// A store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The operating system's random source failed.
    #[error("drawing a random challenge nonce: {0}")]
    Random(getrandom::Error),
    /// Encoding or rebuilding failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Removing a node's directory failed.
    #[error("removing node directory {}: {source}", path.display())]
    Remove {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// One node of a [`LocalCluster`].
#[derive(Debug)]
pub struct LocalNode {
    /// Directory holding its store.
    pub dir: PathBuf,
    /// Its store, or `None` once the node is lost.
    pub store: Option<PieceStore>,
}

/// Outcome of one audit round.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AuditRound {
    /// Challenges answered with a proof that verified.
    pub passed: u64,
    /// Challenges not answered, or answered with a proof that did not verify.
    pub failed: u64,
    /// Total encoded bytes of the proofs that verified.
    pub proof_bytes: u64,
    /// The pieces that failed, with the node that answered wrongly (`None`: no live node
    /// holds the piece any more).
    pub failures: Vec<(Option<usize>, PieceId)>,
}

/// Several piece stores in one process.
#[derive(Debug)]
pub struct LocalCluster {
    nodes: Vec<LocalNode>,
}

impl LocalCluster {
    /// Opens `n` nodes under `dir/node-NN`.
    pub fn open(dir: &Path, n: usize, capacity: Option<u64>) -> Result<Self, ClusterError> {
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let dir = dir.join(format!("node-{i:02}"));
            let (store, _) = PieceStore::open(StoreOptions {
                dir: dir.clone(),
                capacity,
            })?;
            nodes.push(LocalNode {
                dir,
                store: Some(store),
            });
        }
        Ok(Self { nodes })
    }

    /// The nodes.
    pub fn nodes(&self) -> &[LocalNode] {
        &self.nodes
    }

    fn live(&self) -> impl Iterator<Item = (usize, &PieceStore)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.store.as_ref().map(|s| (i, s)))
    }

    /// Encodes `files`, places every piece on its node, and only once every piece is stored
    /// stores the manifest on every live node. Returns the manifest.
    pub fn publish(
        &self,
        files: &[SourceFile],
        opts: &EncodeOptions,
        key: &PublisherKey,
        progress: impl FnMut(u64),
    ) -> Result<Manifest, ClusterError> {
        let live: Vec<(usize, &PieceStore)> = self.live().collect();
        if live.len() < opts.params.n() {
            return Err(ClusterError::TooFewNodes {
                needed: opts.params.n(),
                live: live.len(),
            });
        }
        let mut global_stripe = 0usize;
        let mut last = (usize::MAX, usize::MAX);
        let manifest = engine::encode_files(
            files,
            opts,
            key,
            |slot, r, bytes| {
                if (slot.file, slot.stripe) != last {
                    if last.0 != usize::MAX {
                        global_stripe += 1;
                    }
                    last = (slot.file, slot.stripe);
                }
                let (_, store) = live[(global_stripe + slot.index) % live.len()];
                store
                    .put_piece(r.id, bytes)
                    .map_err(|e| Box::new(e) as BoxError)?;
                Ok(())
            },
            progress,
        )?;
        for (_, store) in &live {
            store.put_manifest(&manifest)?;
        }
        info!(dataset = %manifest.name(), version = %manifest.version(), "published on the local cluster");
        Ok(manifest)
    }

    /// Challenges the holder of every piece of `manifest` with a fresh random nonce and
    /// verifies each answer against the commitment in the manifest. A piece that no live
    /// node holds is a failure without a holder.
    pub fn audit(&self, manifest: &Manifest) -> Result<AuditRound, ClusterError> {
        let mut round = AuditRound::default();
        for r in manifest.pieces() {
            let mut nonce = [0u8; 32];
            getrandom::fill(&mut nonce).map_err(ClusterError::Random)?;
            let challenge = r.challenge(Nonce(nonce));
            let holder = self.holder(&r.id)?;
            let verified = holder
                .and_then(|(_, s)| s.prove(&challenge).ok())
                .map(|p| p.proof)
                .filter(|p| proofs::verify(&r.root(), &challenge, p).is_ok());
            match verified {
                Some(p) => {
                    round.passed += 1;
                    round.proof_bytes += p.encoded_len() as u64;
                }
                None => {
                    round.failed += 1;
                    round.failures.push((holder.map(|(i, _)| i), r.id));
                }
            }
        }
        Ok(round)
    }

    fn holder(&self, id: &PieceId) -> Result<Option<(usize, &PieceStore)>, ClusterError> {
        for (i, s) in self.live() {
            if s.has_piece(id)? {
                return Ok(Some((i, s)));
            }
        }
        Ok(None)
    }

    /// Loses node `i` for good: closes its store and deletes its directory.
    pub fn lose_node(&mut self, i: usize) -> Result<(), ClusterError> {
        if let Some(node) = self.nodes.get_mut(i) {
            node.store = None;
            fs::remove_dir_all(&node.dir).map_err(|source| ClusterError::Remove {
                path: node.dir.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// Fetches a piece from any live node that holds it and serves good bytes.
    pub fn fetch(&self, r: &PieceRef) -> Option<Vec<u8>> {
        self.live().find_map(|(_, s)| s.get_piece(&r.id).ok())
    }

    /// Rebuilds every file of `manifest` under `dest` from the live nodes.
    pub fn restore(
        &self,
        manifest: &Manifest,
        dest: &Path,
        progress: impl FnMut(u64),
    ) -> Result<(), ClusterError> {
        Ok(engine::restore(
            manifest,
            dest,
            |r| self.fetch(r),
            progress,
        )?)
    }
}

/// Deterministic pseudo-random bytes (xorshift64) for demos, tests and benchmarks:
/// incompressible enough to exercise the codec, reproducible from `seed`.
pub fn synthetic(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::erasure::ErasureParams;

    #[test]
    fn publish_audit_lose_m_nodes_restore() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs::create_dir_all(&src).unwrap();
        let original: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        fs::write(src.join("data.bin"), &original).unwrap();
        let mut cluster = LocalCluster::open(&tmp.path().join("nodes"), 7, None).unwrap();
        let params = ErasureParams::new(4, 2, 16 * 1024).unwrap();
        let opts = EncodeOptions {
            name: "alice/local".parse().unwrap(),
            parent: None,
            license: "MIT".into(),
            params,
            created_unix: 1,
        };
        let key = PublisherKey::from_secret_bytes(&[2; 32]);
        let files = engine::scan(&src).unwrap();
        let m = cluster.publish(&files, &opts, &key, |_| {}).unwrap();
        let pieces = m.pieces().count() as u64;
        assert_eq!(cluster.audit(&m).unwrap().passed, pieces);

        cluster.lose_node(1).unwrap();
        cluster.lose_node(5).unwrap();
        let round = cluster.audit(&m).unwrap();
        assert!(round.failed > 0 && round.passed + round.failed == pieces);

        let out = tmp.path().join("out");
        cluster.restore(&m, &out, |_| {}).unwrap();
        assert_eq!(fs::read(out.join("data.bin")).unwrap(), original);

        // A third loss is one more than m = 2 allows for some stripe.
        cluster.lose_node(3).unwrap();
        assert!(
            cluster
                .restore(&m, &tmp.path().join("out2"), |_| {})
                .is_err()
        );
        assert!(matches!(
            cluster.publish(&files, &opts, &key, |_| {}),
            Err(ClusterError::TooFewNodes { needed: 6, live: 4 })
        ));
    }
}
