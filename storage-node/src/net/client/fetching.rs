//! Fetching any `k` pieces of a stripe (the async shell of [`StripeFetch`]) and decoding
//! them: what pull, the reader and repair all use.

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use futures::{StreamExt, stream::FuturesUnordered};
use tracing::warn;

use super::ClientError;
use crate::{
    engine::{EngineError, Offer, StripeAssembler},
    net::{
        data::{DataError, DataPlane},
        fetch::{HolderIx, Step, StripeFetch},
        wire::NodeRef,
    },
};

#[allow(clippy::too_many_arguments)]
pub(crate) async fn fetch_stripe(
    data: DataPlane,
    nodes: Arc<Vec<NodeRef>>,
    speeds: Arc<Mutex<Vec<f64>>>,
    params: crate::erasure::ErasureParams,
    stripe: crate::manifest::Stripe,
    holders: Vec<Vec<HolderIx>>,
    path: String,
    si: usize,
    counters: Arc<Mutex<(u64, u64)>>,
) -> Result<Vec<u8>, ClientError> {
    let k = usize::from(params.k());
    let arrived = fetch_pieces(&data, &nodes, &speeds, k, &stripe, holders, &counters)
        .await
        .map_err(|viable| {
            ClientError::Unrecoverable(vec![format!("{path} stripe {si}: {viable} of {k} needed")])
        })?;
    // Decoding is CPU work: keep it off the async workers.
    let decoded = tokio::task::spawn_blocking(move || {
        let mut asm = StripeAssembler::new(params, &stripe);
        for (index, bytes) in arrived {
            // Checked again here: the assembler trusts nothing it is given.
            if asm.offer(index, bytes) == Offer::BadHash {
                warn!(piece = %stripe.pieces[index].id, "piece failed its hash check");
            }
        }
        asm.finish()
    })
    .await
    .map_err(|e| ClientError::Internal(e.to_string()))?;
    decoded.map_err(|source| {
        EngineError::Erasure {
            path,
            stripe: si,
            source,
        }
        .into()
    })
}

/// The first wait before asking a busy holder again.
const BUSY_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

/// Marks a holder in `speeds` that served wrong bytes: it is never asked again.
const BANNED: f64 = f64::NEG_INFINITY;

/// Fetches any `k` pieces of `stripe`, each verified against its id by the data plane:
/// data pieces first, fastest holders first, moving on from holders that fail. A holder
/// that sends bytes not matching the piece is banned for the rest of the run (`speeds`
/// is shared by every stripe of the run). `Err` carries how many pieces were still
/// reachable when it gave up.
pub(crate) async fn fetch_pieces(
    data: &DataPlane,
    nodes: &Arc<Vec<NodeRef>>,
    speeds: &Arc<Mutex<Vec<f64>>>,
    k: usize,
    stripe: &crate::manifest::Stripe,
    holders: Vec<Vec<HolderIx>>,
    counters: &Arc<Mutex<(u64, u64)>>,
) -> Result<Vec<(usize, Vec<u8>)>, usize> {
    let mut plan = StripeFetch::new(k, holders);
    let mut arrived: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut inflight = FuturesUnordered::new();
    loop {
        loop {
            let step = {
                let sp = speeds.lock().unwrap_or_else(|p| p.into_inner());
                plan.next(|h| sp.get(h).copied().unwrap_or(0.0))
            };
            match step {
                Step::Fetch { index, holder } => {
                    let banned = speeds
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(holder)
                        .is_some_and(|&s| s == BANNED);
                    if banned {
                        plan.failed(index, holder);
                        continue;
                    }
                    let (data, node, r) =
                        (data.clone(), nodes[holder].clone(), stripe.pieces[index]);
                    // A piece refused as busy is asked again after a wait that doubles
                    // with each refusal.
                    let wait = match plan.refusals(index) {
                        0 => None,
                        n => Some(crate::net::jittered(BUSY_WAIT * (1 << (n - 1)))),
                    };
                    inflight.push(async move {
                        if let Some(wait) = wait {
                            tokio::time::sleep(wait).await;
                        }
                        let t = Instant::now();
                        let got = data.fetch(&node.data, r.id, r.len).await;
                        (index, holder, got, t.elapsed())
                    });
                }
                Step::Wait => break,
                Step::Ready => return Ok(arrived),
                Step::Unrecoverable => return Err(plan.viable()),
            }
        }
        let Some((index, holder, got, took)) = inflight.next().await else {
            continue;
        };
        let mut sp = speeds.lock().unwrap_or_else(|p| p.into_inner());
        match got {
            Ok(bytes) => {
                let len = bytes.len() as f64;
                arrived.push((index, bytes));
                plan.succeeded(index);
                counters.lock().unwrap_or_else(|p| p.into_inner()).0 += 1;
                let rate = len / took.as_secs_f64().max(1e-6);
                if let Some(s) = sp.get_mut(holder).filter(|s| **s != BANNED) {
                    *s = if *s == 0.0 {
                        rate
                    } else {
                        0.7 * *s + 0.3 * rate
                    };
                }
            }
            Err(DataError::Busy { .. }) => plan.busy(index, holder),
            Err(e) => {
                let forged = matches!(e, DataError::Corrupt { .. });
                if forged {
                    warn!(node = %nodes[holder].peer, "{e}; not reading from it again");
                } else {
                    warn!("{e}; trying another holder");
                }
                plan.failed(index, holder);
                counters.lock().unwrap_or_else(|p| p.into_inner()).1 += 1;
                if let Some(s) = sp.get_mut(holder) {
                    *s = if forged { BANNED } else { s.min(-1.0) };
                }
            }
        }
    }
}
