//! Finding who holds a stripe's pieces, through the bootstrap node (`LocateStripes`):
//! the stripe's placement record, signed by its publisher and found in the node's own
//! store or the DHT, names the holder of each piece (a repair's update names its new
//! holders); the holders the node heard announce a piece follow, which only a node of the
//! stripe's group hears. The node names only holders it has not seen leave or caught
//! forging.
//!
//! The record is what makes read after write hold: a push returns only once every
//! stripe's record is stored in the DHT, so a node finds the holders at once, before any
//! announcement reached it (see ARCHITECTURE.md for how far that goes).

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use tracing::debug;

use super::{Client, ClientError, StripePlacement, refusal};
#[cfg(test)]
use crate::{
    location::{PlacementKey, SignedPlacement},
    repair::stripe_id,
};
use crate::{
    manifest::{Manifest, Stripe},
    net::{
        fetch::HolderIx,
        wire::{self, NodeRef, Request, Response},
    },
};

/// Holders found: a table of nodes, and per piece (stripe by stripe, in order) indices
/// into it, the record's holder first.
pub(crate) type Located = (Vec<NodeRef>, Vec<Vec<HolderIx>>);

/// Nodes numbered by peer id as they are met.
#[derive(Default)]
struct Table {
    nodes: Vec<NodeRef>,
    index: HashMap<String, HolderIx>,
}

impl Table {
    fn ix(&mut self, r: NodeRef) -> HolderIx {
        *self.index.entry(r.peer.clone()).or_insert_with(|| {
            self.nodes.push(r);
            self.nodes.len() - 1
        })
    }
}

/// Asks with `ask` until `short` finds the answer complete or `patience` is spent
/// (waiting 50 ms, doubling to 400 ms); returns the last answer.
async fn patiently<T, F>(
    patience: Duration,
    ask: impl Fn() -> F,
    short: impl Fn(&T) -> bool,
) -> Result<T, ClientError>
where
    F: std::future::Future<Output = Result<T, ClientError>>,
{
    let t0 = Instant::now();
    let mut wait = Duration::from_millis(50);
    loop {
        let answer = ask().await?;
        if !short(&answer) || t0.elapsed() + wait > patience {
            return Ok(answer);
        }
        debug!("some pieces not located yet; asking again");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_millis(400));
    }
}

impl Client {
    /// Who holds each piece of `stripes` (file and stripe indices into `manifest`), as
    /// the bootstrap node finds them: each stripe's placement record first, then the
    /// holders it heard announce.
    pub async fn locate(
        &self,
        manifest: &Manifest,
        stripes: &[(usize, usize)],
    ) -> Result<Located, ClientError> {
        let stripes: Vec<&Stripe> = stripes
            .iter()
            .filter_map(|&(f, s)| manifest.files().get(f)?.stripes.get(s))
            .collect();
        let mut table = Table::default();
        let mut out = Vec::new();
        let mut at = 0;
        while at < stripes.len() {
            // As many stripes as one request may carry.
            let (mut end, mut pieces) = (at, 0);
            while end < stripes.len()
                && end - at < wire::MAX_PLACE
                && pieces + stripes[end].pieces.len() <= wire::MAX_LOCATE
            {
                pieces += stripes[end].pieces.len();
                end += 1;
            }
            let chunk = &stripes[at..end.max(at + 1)];
            at = end.max(at + 1);
            let r = self
                .ask(Request::LocateStripes {
                    publisher: manifest.publisher().0,
                    stripes: chunk
                        .iter()
                        .map(|s| s.pieces.iter().map(|p| p.id.0).collect())
                        .collect(),
                })
                .await?;
            let located = match r {
                Response::Located(l)
                    if l.len() == chunk.iter().map(|s| s.pieces.len()).sum::<usize>() =>
                {
                    l
                }
                other => return Err(refusal(&self.bootstrap, other).into()),
            };
            for holders in located {
                let mut ixs = Vec::new();
                for h in holders.into_iter().take(wire::MAX_HOLDERS_LISTED + 1) {
                    let ix = table.ix(h);
                    if !ixs.contains(&ix) {
                        ixs.push(ix);
                    }
                }
                out.push(ixs);
            }
        }
        Ok((table.nodes, out))
    }

    /// The placement record of each of `stripes` that the bootstrap node finds and
    /// that is `manifest`'s publisher's record of that stripe.
    #[cfg(test)]
    pub(crate) async fn records(
        &self,
        manifest: &Manifest,
        stripes: &[&Stripe],
    ) -> Vec<Option<SignedPlacement>> {
        let publisher = manifest.publisher();
        let mut out = Vec::with_capacity(stripes.len());
        for chunk in stripes.chunks(wire::MAX_PLACE) {
            let keys = chunk
                .iter()
                .map(|s| PlacementKey::of(&publisher, &stripe_id(s)).0)
                .collect();
            let found = match self.ask(Request::Placements { keys }).await {
                Ok(Response::Placements(v)) if v.len() == chunk.len() => v,
                _ => vec![None; chunk.len()],
            };
            for (stripe, bytes) in chunk.iter().zip(found) {
                out.push(bytes.and_then(|b| {
                    let r = SignedPlacement::decode(&b).ok()?;
                    r.fits(&publisher, &stripe_id(stripe), stripe.pieces.len())
                        .ok()?;
                    Some(r)
                }));
            }
        }
        out
    }

    /// [`locate`](Self::locate), asked again for up to `patience` while `short` finds the
    /// answer short. A version whose push returned has a record for every stripe, but
    /// one still being pushed has none yet, and in a network larger than the DHT's
    /// replication a lookup made at once may miss a record the closest peers have not
    /// kept yet. Returns the last answer, short or not.
    pub(crate) async fn locate_patiently(
        &self,
        manifest: &Manifest,
        stripes: &[(usize, usize)],
        patience: Duration,
        short: impl Fn(&[Vec<HolderIx>]) -> bool,
    ) -> Result<Located, ClientError> {
        patiently(
            patience,
            || self.locate(manifest, stripes),
            |(_, h)| short(h),
        )
        .await
    }

    /// Where every piece of `m` is held right now, stripe by stripe.
    pub async fn placement(&self, m: &Manifest) -> Result<Vec<StripePlacement>, ClientError> {
        let all: Vec<(usize, usize)> = m
            .files()
            .iter()
            .enumerate()
            .flat_map(|(fi, f)| (0..f.stripes.len()).map(move |si| (fi, si)))
            .collect();
        let (nodes, holders) = self.locate(m, &all).await?;
        let mut out = Vec::with_capacity(all.len());
        let mut at = 0;
        for (fi, si) in all {
            let n = m.files()[fi].stripes[si].pieces.len();
            let hs: Vec<Vec<String>> = holders[at..at + n]
                .iter()
                .map(|ixs| ixs.iter().map(|&i| nodes[i].peer.clone()).collect())
                .collect();
            at += n;
            out.push(StripePlacement {
                file: fi,
                stripe: si,
                spread: crate::net::placement::spread(&hs),
                holders: hs,
            });
        }
        Ok(out)
    }
}
