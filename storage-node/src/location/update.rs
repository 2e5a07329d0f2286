//! Updates of a placement record by the stripe's group: what a repairer may say, and
//! what must then be shown before anyone takes it. Pure: the node asks the nodes.
//!
//! A record signed by its publisher replaces an older one on the publisher's word. One
//! signed by anyone else is an update of the current record and is taken only if:
//! - it describes the same stripe at the same place, with as many pieces, and is newer,
//!   but not from the future (at most [`MAX_AHEAD_MS`] past the taker's clock: a record
//!   whose `seq` ran ahead would freeze the stripe's record for good);
//! - its signer is a holder the current record names (a key that holds nothing of the
//!   stripe has no say about it);
//! - it moves at least one piece, only replaces holders (never removes one), never names
//!   its signer for a piece it did not hold, never names one node for two pieces, and
//!   changes no node's addresses but the signer's own;
//! - and then, for each [`Move`], the new holder says it holds the piece and the old
//!   one does not, and the signer says it holds its own (the node that checks asks
//!   them). A group member can thus only move a piece that really left its holder, to
//!   a node that says it has it.
//!
//! Only a record its publisher signed is taken on a lookup's word ([`current`]): the
//! asks behind an update are the storer's, and a reader cannot repeat them.

use super::{PlacementKey, SignedPlacement};
use crate::ids::NodeId;

/// How far past the taker's clock an update's `seq` (milliseconds) may be.
pub const MAX_AHEAD_MS: u64 = 5 * 60 * 1000;

/// One piece an update moves from one holder to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move {
    /// The piece index.
    pub index: usize,
    /// Its holder in the current record, if it had one: it must no longer hold it.
    pub from: Option<NodeId>,
    /// Its holder in the update: it must hold it.
    pub to: NodeId,
}

/// Why an update may not replace the current record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// Another stripe, another place in a version, or another number of pieces.
    #[error("the update describes another stripe or place")]
    Elsewhere,
    /// Not newer than the current record.
    #[error("the update is not newer than the current record")]
    NotNewer,
    /// Its `seq` is ahead of the taker's clock.
    #[error("the update is dated in the future")]
    Future,
    /// Signed by a node the current record does not name.
    #[error("the update's signer holds no piece of the stripe in the current record")]
    NotInGroup,
    /// It leaves a piece with no holder.
    #[error("the update removes a holder without a replacement")]
    Removed,
    /// Its signer names itself for a piece it did not hold.
    #[error("the update's signer names itself for a piece")]
    SelfPlaced,
    /// One node named for two pieces.
    #[error("the update names one node for two pieces")]
    Twice,
    /// Another node's addresses changed.
    #[error("the update changes another node's addresses")]
    Addresses,
    /// No piece moves.
    #[error("the update moves no piece")]
    Nothing,
}

/// Where a repair's placements go in its update of the current record: `placed` says
/// which piece (by index) went to which node, `pieces` are the stripe's piece ids, and
/// `current` names each index's holder. `gone(j)` says whether index `j`'s holder no
/// longer holds its piece (no answer counts as gone, as it does for whoever checks the
/// update).
///
/// A piece may recur in a stripe (the zero padding of a small file): a copy placed for
/// one index goes to whichever index of the same piece lost its holder, so that the
/// update moves only pieces that left. A placement no index needs (its old holder
/// still has it, or the node is already named) is left out: one such move would sink
/// the whole update.
pub fn assign(
    placed: &[(usize, NodeId)],
    pieces: &[crate::ids::PieceId],
    current: &[Option<NodeId>],
    gone: impl Fn(usize) -> bool,
) -> Vec<(usize, NodeId)> {
    let mut out: Vec<(usize, NodeId)> = Vec::new();
    for &(i, node) in placed {
        let Some(piece) = pieces.get(i) else { continue };
        let named =
            current.iter().flatten().any(|n| *n == node) || out.iter().any(|(_, n)| *n == node);
        if named {
            continue;
        }
        let slot = std::iter::once(i)
            .chain((0..pieces.len()).filter(|&j| j != i && pieces[j] == *piece))
            .find(|&j| {
                !out.iter().any(|(k, _)| *k == j)
                    && current.get(j).is_some_and(|h| h.is_none() || gone(j))
            });
        if let Some(j) = slot {
            out.push((j, node));
        }
    }
    out
}

/// The pieces `update` moves, if it may replace `current` once each move is shown:
/// none when its publisher signed it. `now_ms` is the taker's clock.
pub fn moves(
    current: &SignedPlacement,
    update: &SignedPlacement,
    now_ms: u64,
) -> Result<Vec<Move>, UpdateError> {
    let (c, u) = (current.record(), update.record());
    if (
        c.publisher,
        c.stripe,
        c.version,
        c.file,
        c.index,
        c.holders.len(),
    ) != (
        u.publisher,
        u.stripe,
        u.version,
        u.file,
        u.index,
        u.holders.len(),
    ) {
        return Err(UpdateError::Elsewhere);
    }
    if u.seq <= c.seq {
        return Err(UpdateError::NotNewer);
    }
    if update.by_publisher() {
        return Ok(Vec::new());
    }
    if u.seq > now_ms.saturating_add(MAX_AHEAD_MS) {
        return Err(UpdateError::Future);
    }
    let signer = NodeId(update.signer().0);
    if !c.holders.iter().flatten().any(|h| h.node == signer) {
        return Err(UpdateError::NotInGroup);
    }
    let mut out = Vec::new();
    for (index, (was, now)) in c.holders.iter().zip(&u.holders).enumerate() {
        if was == now {
            continue;
        }
        let Some(now) = now else {
            return Err(UpdateError::Removed);
        };
        match was {
            Some(was) if was.node == now.node => {
                if now.node != signer {
                    return Err(UpdateError::Addresses);
                }
            }
            _ if now.node == signer => return Err(UpdateError::SelfPlaced),
            _ => out.push(Move {
                index,
                from: was.as_ref().map(|h| h.node),
                to: now.node,
            }),
        }
    }
    if out.is_empty() {
        return Err(UpdateError::Nothing);
    }
    let twice = out.iter().any(|m| {
        u.holders
            .iter()
            .enumerate()
            .any(|(i, h)| i != m.index && h.as_ref().is_some_and(|h| h.node == m.to))
    });
    if twice {
        return Err(UpdateError::Twice);
    }
    Ok(out)
}

/// Of records found under `key` (from a DHT lookup, each checked by a DHT node on its
/// way in, but here nobody can be asked), the current one as far as they show: the
/// newest that its publisher signed ([`Proof::Publisher`]), or a newer update that
/// follows from it by [`moves`], or, with no record of the publisher among them (a DHT
/// node keeps only the newest, which after a repair is an update), the newest update
/// whose signer it names. An update is only ever a hint where to look
/// ([`Proof::Hint`]): nobody keeps it, or checks others against it, on a lookup's word.
pub fn current(
    key: &PlacementKey,
    found: &[SignedPlacement],
    now_ms: u64,
) -> Option<(SignedPlacement, Proof)> {
    let mut mine: Vec<&SignedPlacement> =
        found.iter().filter(|r| r.record().key() == *key).collect();
    mine.sort_by_key(|r| r.record().seq);
    let Some(start) = mine.iter().rposition(|r| r.by_publisher()) else {
        let hint = mine.into_iter().rev().find(|r| {
            let signer = NodeId(r.signer().0);
            r.record().seq <= now_ms.saturating_add(MAX_AHEAD_MS)
                && r.record()
                    .holders
                    .iter()
                    .flatten()
                    .any(|h| h.node == signer)
        })?;
        return Some((hint.clone(), Proof::Hint));
    };
    let mut base = mine[start];
    for r in &mine[start + 1..] {
        if moves(base, r, now_ms).is_ok() {
            base = r;
        }
    }
    let proof = if base.by_publisher() {
        Proof::Publisher
    } else {
        Proof::Hint
    };
    Some((base.clone(), proof))
}

/// How far [`current`]'s answer is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// Its publisher signed it.
    Publisher,
    /// An update: a hint where to look.
    Hint,
}

#[cfg(test)]
mod tests;
