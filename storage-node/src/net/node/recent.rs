//! A bounded memory of things seen lately: each is remembered for a while, then
//! forgotten, and past the bound the oldest goes first. Whatever strangers can make a
//! node remember goes through one of these.

use std::{collections::HashMap, hash::Hash, time::Duration};

use tokio::time::Instant;

/// Keys noted in the last `keep_for`, at most `max` of them.
#[derive(Debug)]
pub(super) struct Recent<K> {
    at: HashMap<K, Instant>,
    keep_for: Duration,
    max: usize,
}

impl<K: Hash + Eq + Copy> Recent<K> {
    pub(super) fn new(keep_for: Duration, max: usize) -> Self {
        Self {
            at: HashMap::new(),
            keep_for,
            max: max.max(1),
        }
    }

    /// Remembers `key` as seen at `now`. When full, the expired are forgotten, and if
    /// that is not enough, the oldest eighth: one pass over the memory every `max / 8`
    /// new keys at most, however fast they come.
    pub(super) fn note(&mut self, key: K, now: Instant) {
        if self.at.len() >= self.max && !self.at.contains_key(&key) {
            let keep_for = self.keep_for;
            self.at.retain(|_, t| now.duration_since(*t) < keep_for);
            if self.at.len() >= self.max {
                let mut times: Vec<Instant> = self.at.values().copied().collect();
                let cut = (self.max / 8).max(1).min(times.len().saturating_sub(1));
                let (_, nth, _) = times.select_nth_unstable(cut);
                let before = *nth;
                self.at.retain(|_, t| *t >= before);
                // Equal times at the cut may keep more than planned: never more than
                // the bound, though.
                if self.at.len() >= self.max
                    && let Some(k) = self.at.keys().next().copied()
                {
                    self.at.remove(&k);
                }
            }
        }
        self.at.insert(key, now);
    }

    /// Whether `key` was noted less than `keep_for` before `now`.
    pub(super) fn lately(&self, key: &K, now: Instant) -> bool {
        self.at
            .get(key)
            .is_some_and(|t| now.duration_since(*t) < self.keep_for)
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.at.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_remembered_for_a_while_and_the_memory_is_bounded() {
        let t0 = Instant::now();
        let keep = Duration::from_secs(600);
        let mut r = Recent::new(keep, 1024);
        r.note(u64::MAX, t0);
        assert!(r.lately(&u64::MAX, t0 + keep / 2));
        assert!(!r.lately(&u64::MAX, t0 + keep));
        assert!(!r.lately(&7, t0));
        // Twice the bound, none expired: the oldest go first, the newest stay.
        for i in 0..2048u64 {
            r.note(i, t0 + Duration::from_millis(i));
            assert!(r.len() <= 1024);
        }
        assert!(r.len() > 1024 - 1024 / 8);
        assert!(r.lately(&2047, t0 + Duration::from_secs(3)));
        assert!(!r.lately(&0, t0 + Duration::from_secs(3)));
        // Once they have expired, they are not seen lately, and when the memory fills
        // up they make room at once.
        r.note(5000, t0 + 2 * keep);
        assert!(r.lately(&5000, t0 + 2 * keep) && !r.lately(&2047, t0 + 2 * keep));
        for i in 0..1024u64 {
            r.note(10_000 + i, t0 + 2 * keep);
        }
        assert_eq!(r.len(), 1024);
        assert!(r.lately(&5000, t0 + 2 * keep));
    }
}
