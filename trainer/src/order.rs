//! The order in which a rank sees an epoch's samples: deterministic, well mixed, and
//! sequential enough that reads stay stripe by stripe.
//!
//! In the manner of MosaicML's block shuffle ("py1b"):
//!
//! 1. The dataset's samples come in **blocks**: runs of consecutive samples that are stored
//!    together (a stripe's worth). The epoch's seed shuffles the block order.
//! 2. The concatenation is cut into `world` equal contiguous parts (the remainder, fewer
//!    than `world` samples, sits out this epoch): rank `r` takes part `r`. Ranks never
//!    overlap and all see the same count.
//! 3. Each part is cut into **windows** of `window` samples, and each window is shuffled on
//!    its own. A window spans at most `window / block + 2` blocks, so a reader fetching
//!    ahead by a window or two reads whole stripes, while samples from several blocks mix.
//!
//! Everything is a function of `(seed, epoch, rank, world, window, blocks)`, so a resumed
//! run, a run on local files and a run on the network see the same sequence. Nothing is
//! materialised beyond one window.

use std::ops::Range;

/// What decides the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderConfig {
    /// Seed of the whole run.
    pub seed: u64,
    /// Samples mixed together; at least 1.
    pub window: u64,
    /// This process's rank, `< world`.
    pub rank: u64,
    /// Processes sharing the epoch; at least 1.
    pub world: u64,
}

/// Why an order cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// `rank >= world`, or `world == 0`.
    #[error("rank {rank} is not below world size {world}")]
    Rank {
        /// Rank.
        rank: u64,
        /// World size.
        world: u64,
    },
    /// `window == 0`.
    #[error("the shuffle window must hold at least one sample")]
    Window,
    /// Blocks overlap, leave gaps or are not in order.
    #[error("blocks must be consecutive, non-overlapping runs from sample 0")]
    Blocks,
}

/// splitmix64: a tiny, well-mixed, portable generator (the same numbers on every machine).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed and a stream of labels.
    pub fn new(parts: &[u64]) -> Self {
        let mut r = Self(0x6A09_E667_F3BC_C909);
        for p in parts {
            r.0 ^= *p;
            r.0 = r.next_u64();
        }
        r
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`), without modulo bias.
    pub fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % n;
            }
        }
    }

    /// Shuffles `v` (Fisher–Yates).
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = usize::try_from(self.below(i as u64 + 1)).unwrap_or(0);
            v.swap(i, j);
        }
    }
}

/// One rank's view of one epoch.
#[derive(Debug, Clone)]
pub struct EpochOrder {
    cfg: OrderConfig,
    epoch: u64,
    /// Blocks in this epoch's order.
    blocks: Vec<Range<u64>>,
    /// `starts[i]`: position of block `i` (in epoch order) in the concatenation.
    starts: Vec<u64>,
    /// This rank's part of the concatenation.
    part: Range<u64>,
}

impl EpochOrder {
    /// The order of `epoch` for the rank in `cfg`, over `blocks` (consecutive runs of
    /// sample ids from 0).
    pub fn new(blocks: &[Range<u64>], epoch: u64, cfg: OrderConfig) -> Result<Self, OrderError> {
        if cfg.world == 0 || cfg.rank >= cfg.world {
            return Err(OrderError::Rank {
                rank: cfg.rank,
                world: cfg.world,
            });
        }
        if cfg.window == 0 {
            return Err(OrderError::Window);
        }
        let mut next = 0;
        for b in blocks {
            if b.start != next || b.end < b.start {
                return Err(OrderError::Blocks);
            }
            next = b.end;
        }
        let total = next;
        let mut order: Vec<Range<u64>> = blocks.iter().filter(|b| !b.is_empty()).cloned().collect();
        Rng::new(&[cfg.seed, epoch, 1]).shuffle(&mut order);
        let mut starts = Vec::with_capacity(order.len());
        let mut at = 0;
        for b in &order {
            starts.push(at);
            at += b.end - b.start;
        }
        let per = total / cfg.world;
        Ok(Self {
            cfg,
            epoch,
            blocks: order,
            starts,
            part: cfg.rank * per..(cfg.rank + 1) * per,
        })
    }

    /// Samples this rank sees this epoch (the same for every rank).
    pub fn len(&self) -> u64 {
        self.part.end - self.part.start
    }

    /// Whether this rank sees nothing this epoch.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Samples per window (the last may hold fewer).
    pub fn window_len(&self) -> u64 {
        self.cfg.window
    }

    /// Windows in this rank's part.
    pub fn windows(&self) -> u64 {
        self.len().div_ceil(self.cfg.window)
    }

    /// The sample at position `i` of the concatenation of the epoch's blocks.
    fn at(&self, i: u64) -> u64 {
        let b = self.starts.partition_point(|&s| s <= i) - 1;
        self.blocks[b].start + (i - self.starts[b])
    }

    /// The samples of window `w`, in the order they are seen.
    pub fn window(&self, w: u64) -> Vec<u64> {
        let from = self.part.start + w.saturating_mul(self.cfg.window);
        let to = (from.saturating_add(self.cfg.window)).min(self.part.end);
        let mut v: Vec<u64> = (from..to.max(from)).map(|i| self.at(i)).collect();
        Rng::new(&[self.cfg.seed, self.epoch, 2, self.cfg.rank, w]).shuffle(&mut v);
        v
    }

    /// The samples from position `pos` of this rank's epoch on, a window at a time.
    pub fn from_position(&self, pos: u64) -> impl Iterator<Item = u64> + '_ {
        let w0 = pos / self.cfg.window;
        let skip = usize::try_from(pos % self.cfg.window).unwrap_or(usize::MAX);
        (w0..self.windows())
            .flat_map(move |w| self.window(w))
            .skip(skip)
    }
}

/// Cuts samples `0..n`, which start at byte offsets `starts` (ascending) in their file,
/// into blocks on a fixed grid of `block_bytes`: a sample belongs to the cell its first
/// byte is in. With `block_bytes` equal to the dataset's stripe size (a file's stripes
/// start at offset 0), a block is one stripe's samples, so each stripe is fetched once per
/// epoch however small the cache.
pub fn blocks_by_bytes(starts: &[u64], block_bytes: u64) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    let cell = |s: u64| s / block_bytes.max(1);
    let mut from = 0usize;
    for i in 1..starts.len() {
        if cell(starts[i]) != cell(starts[i - 1]) {
            out.push(from as u64..i as u64);
            from = i;
        }
    }
    if from < starts.len() {
        out.push(from as u64..starts.len() as u64);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;

    fn blocks(sizes: &[u64]) -> Vec<Range<u64>> {
        let mut at = 0;
        sizes
            .iter()
            .map(|s| {
                let r = at..at + s;
                at += s;
                r
            })
            .collect()
    }

    fn all(o: &EpochOrder) -> Vec<u64> {
        o.from_position(0).collect()
    }

    #[test]
    fn same_inputs_same_order_and_epochs_differ() {
        let b = blocks(&[100, 100, 100, 37]);
        let cfg = OrderConfig {
            seed: 7,
            window: 64,
            rank: 0,
            world: 1,
        };
        let e0 = all(&EpochOrder::new(&b, 0, cfg).unwrap());
        assert_eq!(e0, all(&EpochOrder::new(&b, 0, cfg).unwrap()));
        assert_ne!(e0, all(&EpochOrder::new(&b, 1, cfg).unwrap()));
        assert_ne!(
            e0,
            all(&EpochOrder::new(&b, 0, OrderConfig { seed: 8, ..cfg }).unwrap())
        );
        let mut sorted = e0.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..337).collect::<Vec<_>>());
    }

    #[test]
    fn windows_stay_within_few_blocks() {
        let b = blocks(&[50; 40]);
        let cfg = OrderConfig {
            seed: 1,
            window: 100,
            rank: 0,
            world: 1,
        };
        let o = EpochOrder::new(&b, 3, cfg).unwrap();
        for w in 0..o.windows() {
            let touched: HashSet<u64> = o.window(w).iter().map(|s| s / 50).collect();
            assert!(
                touched.len() <= 100 / 50 + 2,
                "window {w} spans {touched:?}"
            );
        }
    }

    #[test]
    fn bad_configs_are_refused() {
        let b = blocks(&[10]);
        let cfg = OrderConfig {
            seed: 1,
            window: 4,
            rank: 2,
            world: 2,
        };
        assert!(matches!(
            EpochOrder::new(&b, 0, cfg),
            Err(OrderError::Rank { .. })
        ));
        assert!(matches!(
            EpochOrder::new(
                &b,
                0,
                OrderConfig {
                    rank: 0,
                    window: 0,
                    ..cfg
                }
            ),
            Err(OrderError::Window)
        ));
        assert!(matches!(
            EpochOrder::new(&[0..5, 6..9], 0, OrderConfig { rank: 0, ..cfg }),
            Err(OrderError::Blocks)
        ));
    }

    #[test]
    fn blocks_follow_byte_sizes() {
        // Samples of 10 bytes from offset 0: 4 start in each 40-byte cell.
        let starts: Vec<u64> = (0..10).map(|i| i * 10).collect();
        assert_eq!(blocks_by_bytes(&starts, 40), vec![0..4, 4..8, 8..10]);
        assert!(blocks_by_bytes(&[], 40).is_empty());
        assert_eq!(blocks_by_bytes(&[5, 500], 40), vec![0..1, 1..2]);
        // A header shifts rows: the grid stays on file offsets.
        assert_eq!(
            blocks_by_bytes(&[12, 30, 41, 79, 80], 40),
            vec![0..2, 2..4, 4..5]
        );
    }

    proptest! {
        #[test]
        fn ranks_partition_the_epoch_equally(
            sizes in proptest::collection::vec(0u64..60, 0..30),
            world in 1u64..6,
            window in 1u64..50,
            seed in any::<u64>(),
            epoch in 0u64..4,
        ) {
            let b = blocks(&sizes);
            let total: u64 = sizes.iter().sum();
            let mut seen = HashSet::new();
            let per = total / world;
            for rank in 0..world {
                let o = EpochOrder::new(&b, epoch, OrderConfig { seed, window, rank, world }).unwrap();
                let v = all(&o);
                prop_assert_eq!(v.len() as u64, per);
                for s in v {
                    prop_assert!(s < total);
                    prop_assert!(seen.insert(s), "sample {} seen twice", s);
                }
            }
            prop_assert_eq!(seen.len() as u64, per * world);
        }

        #[test]
        fn resuming_anywhere_continues_the_same_sequence(
            sizes in proptest::collection::vec(1u64..40, 1..20),
            window in 1u64..30,
            seed in any::<u64>(),
            cut in 0u64..400,
        ) {
            let b = blocks(&sizes);
            let o = EpochOrder::new(&b, 2, OrderConfig { seed, window, rank: 0, world: 1 }).unwrap();
            let full = all(&o);
            let cut = cut.min(full.len() as u64);
            let rest: Vec<u64> = o.from_position(cut).collect();
            prop_assert_eq!(&rest[..], &full[usize::try_from(cut).unwrap()..]);
        }
    }
}
