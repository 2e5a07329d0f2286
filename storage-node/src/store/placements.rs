//! Placement records of the stripes this node holds pieces of: the node is one of the
//! stripe's group, which keeps its record and publishes it in the DHT.

use rocksdb::IteratorMode;

use super::{CF_PLACEMENTS, PieceStore, StoreError};
use crate::location::{PlacementKey, SignedPlacement};

impl PieceStore {
    /// Keeps `record` unless one at least as new is stored under its key. Returns
    /// whether it was written. The caller has checked that this node is in its group.
    pub fn put_placement(&self, record: &SignedPlacement) -> Result<bool, StoreError> {
        let cf = self.cf(CF_PLACEMENTS)?;
        let key = record.record().key();
        if let Some(old) = self.db.get_pinned_cf(cf, key.0)?
            && SignedPlacement::peek(&old).is_ok_and(|old| old.seq >= record.record().seq)
        {
            return Ok(false);
        }
        // A record is a hint that the group and the DHT can give again: not synced.
        self.db.put_cf(cf, key.0, record.as_bytes())?;
        Ok(true)
    }

    /// The record stored under `key`, if any (and if it still verifies).
    pub fn placement(&self, key: &PlacementKey) -> Result<Option<SignedPlacement>, StoreError> {
        let cf = self.cf(CF_PLACEMENTS)?;
        Ok(self
            .db
            .get_pinned_cf(cf, key.0)?
            .and_then(|b| SignedPlacement::decode(&b).ok()))
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

    /// Forgets the record under `key` (the node no longer holds a piece of its stripe).
    pub fn remove_placement(&self, key: &PlacementKey) -> Result<(), StoreError> {
        Ok(self.db.delete_cf(self.cf(CF_PLACEMENTS)?, key.0)?)
    }
}
