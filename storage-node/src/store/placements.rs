//! Placement records of the stripes this node holds pieces of: the node is one of the
//! stripe's group, which keeps its record and publishes it in the DHT.

use std::collections::HashSet;

use rocksdb::{IteratorMode, WriteBatch};

use super::{CF_PLACEMENTS, PieceStore, StoreError};
use crate::{
    ids::StripeId,
    location::{PlacementKey, SignedPlacement},
};

impl PieceStore {
    /// Keeps `record` unless one at least as new is stored under its key. Returns
    /// whether it was written. The caller has checked that this node is in its group.
    pub fn put_placement(&self, record: &SignedPlacement) -> Result<bool, StoreError> {
        let cf = self.cf(CF_PLACEMENTS)?;
        let key = record.record().key();
        let _guard = self
            .placements_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(old) = self.db.get_pinned_cf(cf, key.0)?
            && SignedPlacement::peek(&old).is_ok_and(|old| old.seq >= record.record().seq)
        {
            return Ok(false);
        }
        // A record is a hint that the group and the DHT can give again: not synced.
        self.db.put_cf(cf, key.0, record.as_bytes())?;
        Ok(true)
    }

    /// The record stored under `key`, if any, as stored: it was checked before it was
    /// written, and whoever uses it checks it against its manifest again.
    pub fn placement(&self, key: &PlacementKey) -> Result<Option<Vec<u8>>, StoreError> {
        let cf = self.cf(CF_PLACEMENTS)?;
        Ok(self.db.get_cf(cf, key.0)?)
    }

    /// Every stored record, as stored (they were verified when written).
    pub fn placements(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        let cf = self.cf(CF_PLACEMENTS)?;
        let mut out = Vec::new();
        for item in self.db.iterator_cf(cf, IteratorMode::Start) {
            out.push(item?.1.to_vec());
        }
        Ok(out)
    }

    /// About how many records are stored (rocksdb's estimate, no scan).
    pub fn placements_estimate(&self) -> Result<u64, StoreError> {
        Ok(self
            .db
            .property_int_value_cf(self.cf(CF_PLACEMENTS)?, "rocksdb.estimate-num-keys")?
            .unwrap_or(0))
    }

    /// Forgets the records of stripes this node no longer holds a piece of (found through
    /// the `refs` index: no manifest is read), and any that no longer decode. Returns
    /// how many were forgotten.
    pub fn prune_placements(&self) -> Result<usize, StoreError> {
        let mut held: HashSet<StripeId> = HashSet::new();
        for p in self.piece_ids()? {
            held.extend(self.stripes_of(&p)?.into_iter().map(|r| r.stripe));
        }
        let cf = self.cf(CF_PLACEMENTS)?;
        let mut batch = WriteBatch::default();
        let mut stale = 0;
        for item in self.db.iterator_cf(cf, IteratorMode::Start) {
            let (k, v) = item?;
            if !SignedPlacement::peek(&v).is_ok_and(|r| held.contains(&r.stripe)) {
                batch.delete_cf(cf, k);
                stale += 1;
            }
        }
        if stale > 0 {
            self.db.write(batch)?;
        }
        Ok(stale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        location::PlacementRecord,
        repair::stripe_id,
        store::test_support::{key, manifest_and_pieces, open},
    };

    #[test]
    fn records_of_stripes_no_longer_held_are_pruned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path());
        let (m, pieces) = manifest_and_pieces(dir.path(), "a/b", 1, &[1]);
        assert!(store.put_manifest(&m).expect("put"));
        let stripes = &m.files()[0].stripes;
        assert!(stripes.len() >= 2);
        // This node holds a piece of the first stripe only.
        let (_, id, bytes) = pieces
            .iter()
            .find(|(s, _, _)| s.stripe == 0)
            .expect("piece");
        store.put_piece(*id, bytes).expect("put piece");
        let records: Vec<SignedPlacement> = (0..2)
            .map(|i| {
                PlacementRecord {
                    publisher: key().id(),
                    stripe: stripe_id(&stripes[i]),
                    version: m.version(),
                    file: 0,
                    index: i as u32,
                    seq: 1,
                    holders: vec![None; stripes[i].pieces.len()],
                }
                .sign(&key())
            })
            .collect();
        for r in &records {
            assert!(store.put_placement(r).expect("put record"));
            // The same or an older one changes nothing.
            assert!(!store.put_placement(r).expect("put record"));
        }
        assert_eq!(store.prune_placements().expect("prune"), 1);
        assert!(
            store
                .placement(&records[0].record().key())
                .expect("read")
                .is_some()
        );
        assert!(
            store
                .placement(&records[1].record().key())
                .expect("read")
                .is_none()
        );
        // Once the piece is gone, so is the last record.
        store.remove_piece(id).expect("remove");
        assert_eq!(store.prune_placements().expect("prune"), 1);
        assert_eq!(store.placements().expect("list").len(), 0);
    }
}
