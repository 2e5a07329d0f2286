//! Pull: resolve and verify a manifest, refuse up front if any stripe is short of `k`
//! reachable pieces, fetch stripes ahead in parallel and write them resumably.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::StreamExt;
use tokio::sync::mpsc;

use super::{Client, ClientError, LOCATE_PATIENCE, Progress, fetch_stripe};
use crate::{
    engine::{self, EngineError},
    ids::PieceId,
    manifest::Manifest,
    net::fetch::HolderIx,
};

/// Bytes of stripes a pull fetches ahead of the writer.
const PULL_AHEAD: u64 = 64 << 20;

/// What a pull did.
#[derive(Debug, Clone, Default)]
pub struct PullReport {
    /// Files written.
    pub files: u64,
    /// Files already complete at the destination.
    pub skipped: u64,
    /// File bytes written by this run.
    pub bytes: u64,
    /// Bytes an interrupted earlier run had written, kept and verified.
    pub resumed_bytes: u64,
    /// Pieces fetched.
    pub pieces: u64,
    /// Fetches that failed and were routed around.
    pub failed_fetches: u64,
    /// Wall time.
    pub elapsed: Duration,
}

impl Client {
    /// Pulls `manifest`'s files into `dest`.
    pub async fn pull(
        &self,
        manifest: &Manifest,
        dest: &Path,
        progress: Progress,
    ) -> Result<PullReport, ClientError> {
        let t0 = Instant::now();
        let mut report = PullReport::default();
        let params = manifest.body().params;
        let k = usize::from(params.k());
        // Files already complete at the destination (an earlier pull) are skipped.
        // Files already complete at the destination are skipped; files an earlier pull
        // left part way continue from their last whole stripe.
        let plan: Vec<(usize, usize)> = {
            let m = manifest.clone();
            let dest = dest.to_path_buf();
            tokio::task::spawn_blocking(move || -> Result<Vec<(usize, usize)>, EngineError> {
                let mut plan = Vec::new();
                for (i, f) in m.files().iter().enumerate() {
                    let done = engine::target_path(&dest, f)
                        .map(|t| engine::is_complete(&t, f))
                        .unwrap_or(false);
                    if !done {
                        plan.push((i, engine::resume_point(&dest, f)?));
                    }
                }
                Ok(plan)
            })
            .await
            .map_err(|e| ClientError::Internal(e.to_string()))??
        };
        let files_todo = plan.len() as u64;
        let mut pending = vec![false; manifest.files().len()];
        for &(fi, from) in &plan {
            pending[fi] = true;
            let kept: u64 = manifest.files()[fi].stripes[..from]
                .iter()
                .map(|s| s.data_len)
                .sum();
            report.resumed_bytes += kept;
            progress(kept);
        }
        for (i, f) in manifest.files().iter().enumerate() {
            if !pending[i] {
                report.skipped += 1;
                progress(f.size);
            }
        }
        let stripes: Vec<(usize, usize)> = plan
            .iter()
            .flat_map(|&(fi, from)| {
                (from..manifest.files()[fi].stripes.len()).map(move |si| (fi, si))
            })
            .collect();
        let ids: Vec<PieceId> = stripes
            .iter()
            .flat_map(|&(fi, si)| manifest.files()[fi].stripes[si].pieces.iter().map(|p| p.id))
            .collect();
        let (nodes, holders) = self
            .locate_patiently(manifest, &stripes, LOCATE_PATIENCE, |h| {
                !short_stripes(manifest, &stripes, h, k).is_empty()
            })
            .await?;
        let short = short_stripes(manifest, &stripes, &holders, k);
        if !short.is_empty() {
            return Err(ClientError::Unrecoverable(short));
        }
        let by_piece = holders_by_piece(&ids, holders);
        let ahead = (PULL_AHEAD / params.stripe_size().max(1)).clamp(2, 16) as usize;
        let speeds = Arc::new(Mutex::new(vec![0.0f64; nodes.len()]));
        let nodes = Arc::new(nodes);
        let (tx, mut rx) = mpsc::channel::<Result<Vec<u8>, ClientError>>(ahead);
        let fetcher = {
            let manifest = manifest.clone();
            let data = self.data.clone();
            let counters = Arc::new(Mutex::new((0u64, 0u64)));
            let c2 = counters.clone();
            let task = tokio::spawn(async move {
                let mut s = futures::stream::iter(stripes)
                    .map(|(fi, si)| {
                        let stripe = manifest.files()[fi].stripes[si].clone();
                        let holders = stripe
                            .pieces
                            .iter()
                            .map(|p| by_piece.get(&p.id).cloned().unwrap_or_default())
                            .collect();
                        fetch_stripe(
                            data.clone(),
                            nodes.clone(),
                            speeds.clone(),
                            params,
                            stripe,
                            holders,
                            manifest.files()[fi].path.to_string(),
                            si,
                            c2.clone(),
                        )
                    })
                    .buffered(ahead);
                while let Some(r) = s.next().await {
                    let failed = r.is_err();
                    if tx.send(r).await.is_err() || failed {
                        break;
                    }
                }
            });
            (task, counters)
        };
        let writer = {
            let manifest = manifest.clone();
            let dest = dest.to_path_buf();
            let progress = progress.clone();
            tokio::task::spawn_blocking(move || -> Result<u64, ClientError> {
                let mut written = 0u64;
                let mut stripe_err: Option<ClientError> = None;
                let res = engine::restore_resumable(
                    &manifest,
                    &dest,
                    &plan,
                    |fi, _| match rx.blocking_recv() {
                        Some(Ok(d)) => {
                            progress(d.len() as u64);
                            Ok(d)
                        }
                        Some(Err(e)) => {
                            stripe_err = Some(e);
                            Err(EngineError::Io {
                                op: "fetch",
                                path: PathBuf::from(manifest.files()[fi].path.as_str()),
                                source: std::io::Error::other("stripe unavailable"),
                            })
                        }
                        None => Err(EngineError::Io {
                            op: "fetch",
                            path: PathBuf::from(manifest.files()[fi].path.as_str()),
                            source: std::io::Error::other("fetcher stopped"),
                        }),
                    },
                    |n| written += n,
                );
                match (res, stripe_err) {
                    (_, Some(e)) => Err(e),
                    (Err(e), None) => Err(e.into()),
                    (Ok(()), None) => Ok(written),
                }
            })
        };
        let written = writer
            .await
            .map_err(|e| ClientError::Internal(e.to_string()));
        fetcher.0.abort();
        let written = written??;
        let (pieces, failed) = *fetcher.1.lock().unwrap_or_else(|p| p.into_inner());
        report.files = files_todo;
        report.bytes = written;
        report.pieces = pieces;
        report.failed_fetches = failed;
        report.elapsed = t0.elapsed();
        Ok(report)
    }
}

/// The holders of each distinct piece: a piece that appears several times (equal blocks
/// of a stripe, or equal stripes) has the holders located for every place it appears
/// in, since any of them serves its bytes.
fn holders_by_piece(
    ids: &[PieceId],
    holders: Vec<Vec<HolderIx>>,
) -> HashMap<PieceId, Vec<HolderIx>> {
    let mut by_piece: HashMap<PieceId, Vec<HolderIx>> = HashMap::with_capacity(ids.len());
    for (id, hs) in ids.iter().zip(holders) {
        let all = by_piece.entry(*id).or_default();
        for h in hs {
            if !all.contains(&h) {
                all.push(h);
            }
        }
    }
    by_piece
}

fn short_stripes(
    manifest: &Manifest,
    stripes: &[(usize, usize)],
    holders: &[Vec<HolderIx>],
    k: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut at = 0;
    for &(fi, si) in stripes {
        let n = manifest.files()[fi].stripes[si].pieces.len();
        let reachable = holders[at..at + n].iter().filter(|h| !h.is_empty()).count();
        at += n;
        if reachable < k {
            out.push(format!(
                "{} stripe {si}: {reachable} of {k} needed",
                manifest.files()[fi].path
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_piece_placed_several_times_has_the_holders_of_every_place() {
        // A one-byte file: its three zero data blocks are one piece, held at three
        // places by three nodes; the last place's holder alone must not stand for all.
        let (x, zero, p) = (PieceId([1; 32]), PieceId([0; 32]), PieceId([2; 32]));
        let ids = [x, zero, zero, zero, p];
        let holders = vec![vec![0], vec![1], vec![2, 1], vec![3], vec![4]];
        let by = holders_by_piece(&ids, holders);
        assert_eq!(by[&zero], vec![1, 2, 3]);
        assert_eq!(by[&x], vec![0]);
        assert_eq!(by[&p], vec![4]);
    }
}
