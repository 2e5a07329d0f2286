//! The loader: a thread that walks an epoch's order a window at a time, asks the source to
//! fetch the next windows' blocks ahead, reads and decodes the current window, and hands
//! batches to the training loop through a bounded channel. The loop's time blocked on that
//! channel is the time the model waited for data.

use std::{
    ops::Range,
    sync::{Arc, mpsc},
    time::{Duration, Instant},
};

use crate::{
    order::EpochOrder,
    samples::{SampleError, Samples, Split, runs},
    source::Source,
};

/// A batch of decoded samples, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `n * dim` features.
    pub x: Vec<f32>,
    /// `n` labels.
    pub y: Vec<f32>,
    /// `n` sample ids.
    pub ids: Vec<u64>,
    /// Samples in it.
    pub n: usize,
    /// The rank's position in the epoch after this batch.
    pub position: u64,
}

/// What the loader needs.
#[derive(Clone)]
pub struct LoaderInput {
    /// Where bytes come from.
    pub source: Arc<dyn Source>,
    /// The sample table.
    pub samples: Arc<Samples>,
    /// The split.
    pub split: Arc<Split>,
    /// The sample table's blocks (global ids).
    pub blocks: Arc<Vec<Range<u64>>>,
}

impl std::fmt::Debug for LoaderInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoaderInput")
            .field("samples", &self.samples.len)
            .field("train", &self.split.train.len())
            .finish_non_exhaustive()
    }
}

/// A running loader.
#[derive(Debug)]
pub struct Loader {
    rx: mpsc::Receiver<Result<Batch, SampleError>>,
    waited: Duration,
}

impl Loader {
    /// Starts loading `order` from `position`, `batch` samples per batch, fetching the
    /// windows after the current one until `ahead` bytes of them are asked for (one
    /// window at least), keeping at most `queue` batches ready.
    pub fn start(
        input: LoaderInput,
        order: EpochOrder,
        position: u64,
        batch: usize,
        ahead: u64,
        queue: usize,
    ) -> Result<Self, SampleError> {
        let (tx, rx) = mpsc::sync_channel(queue.max(1));
        std::thread::Builder::new()
            .name("cairn-loader".into())
            .spawn(move || run(&input, &order, position, batch.max(1), ahead, &tx))
            .map_err(|e| SampleError::Thread(e.to_string()))?;
        Ok(Self {
            rx,
            waited: Duration::ZERO,
        })
    }

    /// The next batch, `None` at the end of the epoch.
    pub fn next_batch(&mut self) -> Option<Result<Batch, SampleError>> {
        let t = Instant::now();
        let b = self.rx.recv().ok();
        self.waited += t.elapsed();
        b
    }

    /// Time spent waiting in [`Loader::next_batch`].
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

fn run(
    input: &LoaderInput,
    order: &EpochOrder,
    position: u64,
    batch: usize,
    ahead: u64,
    tx: &mpsc::SyncSender<Result<Batch, SampleError>>,
) {
    let LoaderInput {
        source,
        samples,
        split,
        blocks,
    } = input;
    let window_runs = |w: u64| -> (Vec<u64>, Vec<Range<u64>>) {
        let ids: Vec<u64> = order
            .window(w)
            .into_iter()
            .map(|p| split.train[p as usize])
            .collect();
        let r = runs(&ids, blocks, u64::MAX);
        (ids, r)
    };
    let windows = order.windows();
    let first = position / order.window_len();
    let mut skip = position % order.window_len();
    let mut pos = position;
    let dim = samples.dim;
    let mut cur = Batch {
        x: Vec::with_capacity(batch * dim),
        y: Vec::with_capacity(batch),
        ids: Vec::with_capacity(batch),
        n: 0,
        position: pos,
    };
    let mut features = Vec::with_capacity(dim);
    // The windows after the current one that are asked for: index, runs, bytes, and
    // whether the source took every hint.
    let mut horizon: std::collections::VecDeque<(u64, Vec<Range<u64>>, u64, bool)> =
        std::collections::VecDeque::new();
    let mut last = first;
    let bytes_of = |rs: &[Range<u64>]| -> u64 {
        rs.iter()
            .flat_map(|r| samples.spans(r.clone()))
            .map(|(_, b)| b.end - b.start)
            .sum()
    };
    for w in first..windows {
        // Fetch ahead: the windows after this one, up to `ahead` bytes. A window whose
        // hints the source could not all take (its fetches were busy) is hinted again at
        // the next window, in order, until it takes them.
        while horizon.front().is_some_and(|(x, ..)| *x <= w) {
            horizon.pop_front();
        }
        let mut bytes: u64 = horizon.iter().map(|(_, _, b, _)| b).sum();
        while last + 1 < windows && (horizon.is_empty() || bytes < ahead) {
            last += 1;
            let rs = window_runs(last).1;
            let b = bytes_of(&rs);
            bytes += b;
            horizon.push_back((last, rs, b, false));
        }
        for (_, rs, _, done) in horizon.iter_mut().filter(|h| !h.3) {
            *done = rs
                .iter()
                .all(|r| samples.prefetch(source.as_ref(), r.clone()));
            if !*done {
                break;
            }
        }
        let (ids, rs) = window_runs(w);
        let mut data = Vec::with_capacity(rs.len());
        for r in &rs {
            match samples.read(source.as_ref(), r.clone()) {
                Ok(d) => data.push(d),
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
        for id in ids
            .into_iter()
            .skip(usize::try_from(skip).unwrap_or(usize::MAX))
        {
            let at = rs.partition_point(|r| r.end <= id);
            let y = match samples.decode(id, &data[at], &mut features) {
                Ok(y) => y,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            cur.x.extend_from_slice(&features);
            cur.y.push(y);
            cur.ids.push(id);
            cur.n += 1;
            pos += 1;
            if cur.n == batch {
                cur.position = pos;
                let full = std::mem::replace(
                    &mut cur,
                    Batch {
                        x: Vec::with_capacity(batch * dim),
                        y: Vec::with_capacity(batch),
                        ids: Vec::with_capacity(batch),
                        n: 0,
                        position: pos,
                    },
                );
                if tx.send(Ok(full)).is_err() {
                    return;
                }
            }
        }
        skip = 0;
    }
    if cur.n > 0 {
        cur.position = pos;
        let _ = tx.send(Ok(cur));
    }
}

/// Reads `ids` (in the order given) and calls `f` with each decoded sample: for
/// statistics and evaluation, which need no shuffling. Ids further apart than a few
/// hundred samples are read separately, so a scattered test split does not read whole
/// blocks.
pub fn for_each(
    input: &LoaderInput,
    ids: &[u64],
    chunk: usize,
    mut f: impl FnMut(&[f32], f32),
) -> Result<(), SampleError> {
    let mut features = Vec::new();
    for part in ids.chunks(chunk.max(1)) {
        let rs = runs(part, &input.blocks, 256);
        let mut data = Vec::with_capacity(rs.len());
        for r in &rs {
            data.push(input.samples.read(input.source.as_ref(), r.clone())?);
        }
        for &id in part {
            let at = rs.partition_point(|r| r.end <= id);
            let y = input.samples.decode(id, &data[at], &mut features)?;
            f(&features, y);
        }
    }
    Ok(())
}
