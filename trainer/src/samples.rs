//! The samples of a dataset: where each one's bytes are, how they group into blocks that
//! are read together, the train/test split, and decoding into features and a label.

use std::ops::Range;

use bytes::Bytes;

use crate::{
    format::{CsvIndex, CsvScanner, FormatError, IdxHeader, parse_row},
    order::{Rng, blocks_by_bytes},
    source::{Source, SourceError},
};

/// Bytes read at a time while scanning a CSV file.
const SCAN_CHUNK: u64 = 4 << 20;

/// Errors of building or reading the sample table.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    /// Reading failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Parsing failed.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The dataset has nothing to train on.
    #[error("{0}")]
    Empty(String),
    /// Files do not agree with each other.
    #[error("{0}")]
    Mismatch(String),
    /// The loader thread could not start.
    #[error("cannot start the loader thread: {0}")]
    Thread(String),
}

/// One CSV file's rows.
#[derive(Debug, Clone)]
struct CsvPart {
    file: usize,
    index: CsvIndex,
    first: u64,
}

/// One images/labels pair of IDX files.
#[derive(Debug, Clone)]
struct IdxPart {
    images: usize,
    labels: usize,
    img: IdxHeader,
    lbl: IdxHeader,
    first: u64,
}

#[derive(Debug, Clone)]
enum Kind {
    Csv(Vec<CsvPart>),
    Idx(Vec<IdxPart>),
}

/// Every sample of the chosen files, in file order.
#[derive(Debug, Clone)]
pub struct Samples {
    kind: Kind,
    /// Samples in all.
    pub len: u64,
    /// Features per sample.
    pub dim: usize,
    /// Image shape `(rows, cols)` for IDX data.
    pub image: Option<(usize, usize)>,
    /// Names of the files, by source index, for errors.
    names: Vec<String>,
    /// CSV rows left out as bad.
    pub skipped: u64,
}

/// A block's bytes: per span, the file range and its bytes.
#[derive(Debug, Clone)]
pub struct BlockData {
    spans: Vec<(usize, Range<u64>, Bytes)>,
}

impl Samples {
    /// Indexes the CSV files `files` of `source` (one scan each) with label column `label`.
    pub fn csv(
        source: &dyn Source,
        files: &[usize],
        label: &str,
        skip_bad: bool,
    ) -> Result<Self, SampleError> {
        let mut parts = Vec::new();
        let mut first = 0u64;
        let mut columns: Option<Vec<String>> = None;
        let mut skipped = 0;
        for &f in files {
            let info = &source.files()[f];
            let mut scan = CsvScanner::new(&info.path, label, skip_bad);
            let mut at = 0;
            while at < info.size {
                let end = (at + SCAN_CHUNK).min(info.size);
                scan.feed(&source.read(f, at..end)?)?;
                at = end;
            }
            let index = scan.finish()?;
            match &columns {
                Some(c) if *c != index.columns => {
                    return Err(SampleError::Mismatch(format!(
                        "{} has columns {:?}, other files {c:?}",
                        info.path, index.columns
                    )));
                }
                _ => columns = Some(index.columns.clone()),
            }
            skipped += index.skipped;
            let n = index.rows.len() as u64;
            parts.push(CsvPart {
                file: f,
                index,
                first,
            });
            first += n;
        }
        let dim = columns.map_or(0, |c| c.len() - 1);
        Ok(Self {
            kind: Kind::Csv(parts),
            len: first,
            dim,
            image: None,
            names: source.files().iter().map(|f| f.path.clone()).collect(),
            skipped,
        })
    }

    /// Pairs IDX images and labels files (`pairs`: (images, labels) indices into `source`).
    pub fn idx(source: &dyn Source, pairs: &[(usize, usize)]) -> Result<Self, SampleError> {
        let mut parts = Vec::new();
        let mut first = 0;
        let mut shape = None;
        for &(images, labels) in pairs {
            let head = |f: usize| -> Result<IdxHeader, SampleError> {
                let info = &source.files()[f];
                let b = source.read(f, 0..info.size.min(4 + 4 * 4))?;
                Ok(IdxHeader::parse(&info.path, &b, info.size)?)
            };
            let (img, lbl) = (head(images)?, head(labels)?);
            let names = (&source.files()[images].path, &source.files()[labels].path);
            if img.dims.len() != 3 || lbl.dims.len() != 1 || img.count() != lbl.count() {
                return Err(SampleError::Mismatch(format!(
                    "{} ({:?}) and {} ({:?}) are not images and labels of the same samples",
                    names.0, img.dims, names.1, lbl.dims
                )));
            }
            let s = (img.dims[1] as usize, img.dims[2] as usize);
            if shape.is_some_and(|p| p != s) {
                return Err(SampleError::Mismatch(format!(
                    "{} holds {}x{} images, other files {:?}",
                    names.0, s.0, s.1, shape
                )));
            }
            shape = Some(s);
            let n = img.count();
            parts.push(IdxPart {
                images,
                labels,
                img,
                lbl,
                first,
            });
            first += n;
        }
        Ok(Self {
            kind: Kind::Idx(parts),
            len: first,
            dim: shape.map_or(0, |(r, c)| r * c),
            image: shape,
            names: source.files().iter().map(|f| f.path.clone()).collect(),
            skipped: 0,
        })
    }

    /// Consecutive runs of samples within one file, about `block_bytes` each.
    pub fn blocks(&self, block_bytes: u64) -> Vec<Range<u64>> {
        let mut out = Vec::new();
        match &self.kind {
            Kind::Csv(parts) => {
                for p in parts {
                    let starts: Vec<u64> = p.index.rows.iter().map(|r| r.start).collect();
                    out.extend(
                        blocks_by_bytes(&starts, block_bytes)
                            .into_iter()
                            .map(|b| b.start + p.first..b.end + p.first),
                    );
                }
            }
            Kind::Idx(parts) => {
                for p in parts {
                    let starts: Vec<u64> =
                        (0..p.img.count()).map(|i| p.img.sample(i).start).collect();
                    out.extend(
                        blocks_by_bytes(&starts, block_bytes)
                            .into_iter()
                            .map(|b| b.start + p.first..b.end + p.first),
                    );
                }
            }
        }
        out
    }

    /// The byte spans a run of samples (within one file) occupies: one per file read.
    pub fn spans(&self, run: Range<u64>) -> Vec<(usize, Range<u64>)> {
        if run.is_empty() {
            return Vec::new();
        }
        match &self.kind {
            Kind::Csv(parts) => {
                let p = &parts[part_of(parts.iter().map(|p| p.first), run.start)];
                let a = &p.index.rows[(run.start - p.first) as usize];
                let b = &p.index.rows[(run.end - 1 - p.first) as usize];
                vec![(p.file, a.start..b.end)]
            }
            Kind::Idx(parts) => {
                let p = &parts[part_of(parts.iter().map(|p| p.first), run.start)];
                let (s, e) = (run.start - p.first, run.end - 1 - p.first);
                vec![
                    (p.images, p.img.sample(s).start..p.img.sample(e).end),
                    (p.labels, p.lbl.sample(s).start..p.lbl.sample(e).end),
                ]
            }
        }
    }

    /// Reads the spans of a run of samples.
    pub fn read(&self, source: &dyn Source, run: Range<u64>) -> Result<BlockData, SampleError> {
        let mut spans = Vec::new();
        for (f, r) in self.spans(run) {
            let b = source.read(f, r.clone())?;
            spans.push((f, r, b));
        }
        Ok(BlockData { spans })
    }

    /// Hints the source to fetch a run of samples; false if the source could not take
    /// all of it now.
    pub fn prefetch(&self, source: &dyn Source, run: Range<u64>) -> bool {
        let mut all = true;
        for (f, r) in self.spans(run) {
            all &= source.prefetch(f, r);
        }
        all
    }

    /// Decodes sample `id` from the data of a run that holds it: its features into
    /// `features` (cleared first) and its label.
    pub fn decode(
        &self,
        id: u64,
        data: &BlockData,
        features: &mut Vec<f32>,
    ) -> Result<f32, SampleError> {
        let slice = |file: usize, r: Range<u64>| -> Option<&[u8]> {
            data.spans.iter().find_map(|(f, span, b)| {
                (*f == file && span.start <= r.start && r.end <= span.end)
                    .then(|| &b[(r.start - span.start) as usize..(r.end - span.start) as usize])
            })
        };
        let missing = || SampleError::Mismatch(format!("sample {id} is not in the data read"));
        match &self.kind {
            Kind::Csv(parts) => {
                let p = &parts[part_of(parts.iter().map(|p| p.first), id)];
                let row = (id - p.first) as usize;
                let line = slice(p.file, p.index.rows[row].clone()).ok_or_else(missing)?;
                parse_row(line, p.index.columns.len(), p.index.label, features).map_err(|what| {
                    FormatError::Row {
                        file: self.names[p.file].clone(),
                        line: p.index.lines[row],
                        what,
                    }
                    .into()
                })
            }
            Kind::Idx(parts) => {
                let p = &parts[part_of(parts.iter().map(|p| p.first), id)];
                let i = id - p.first;
                let px = slice(p.images, p.img.sample(i)).ok_or_else(missing)?;
                let y = slice(p.labels, p.lbl.sample(i)).ok_or_else(missing)?;
                features.clear();
                features.extend(px.iter().map(|&b| f32::from(b) / 255.0));
                Ok(f32::from(y[0]))
            }
        }
    }
}

/// Index of the part whose first sample is the last one `<= id`.
fn part_of(firsts: impl Iterator<Item = u64>, id: u64) -> usize {
    firsts.take_while(|&f| f <= id).count().saturating_sub(1)
}

/// A train/test split of `0..n`: the train samples in order and, per block, its train
/// samples as a dense range (what [`crate::order::EpochOrder`] orders).
#[derive(Debug, Clone)]
pub struct Split {
    /// Train sample ids, ascending.
    pub train: Vec<u64>,
    /// Test sample ids, ascending.
    pub test: Vec<u64>,
    /// Blocks as ranges of positions in `train`.
    pub train_blocks: Vec<Range<u64>>,
}

impl Split {
    /// Splits by `is_test`, keeping `blocks`' grouping.
    pub fn new(blocks: &[Range<u64>], is_test: impl Fn(u64) -> bool) -> Self {
        let (mut train, mut test, mut tb) = (Vec::new(), Vec::new(), Vec::new());
        for b in blocks {
            let start = train.len() as u64;
            for id in b.clone() {
                if is_test(id) {
                    test.push(id);
                } else {
                    train.push(id);
                }
            }
            let end = train.len() as u64;
            if end > start {
                tb.push(start..end);
            }
        }
        Self {
            train,
            test,
            train_blocks: tb,
        }
    }

    /// A split with a fraction `f` of samples for testing, chosen by `seed`.
    pub fn by_fraction(blocks: &[Range<u64>], f: f64, seed: u64) -> Self {
        Self::new(blocks, |id| {
            let x = Rng::new(&[seed, 0x7e57, id]).next_u64();
            (x >> 11) as f64 / (1u64 << 53) as f64 <= f && f > 0.0
        })
    }
}

/// The runs of consecutive ids (within one block) in a list of sample ids, so a batch of
/// samples is read a block at a time: ids sorted, then cut at block edges and gaps of more
/// than `gap` samples.
pub fn runs(ids: &[u64], blocks: &[Range<u64>], gap: u64) -> Vec<Range<u64>> {
    let mut s: Vec<u64> = ids.to_vec();
    s.sort_unstable();
    s.dedup();
    let mut out: Vec<Range<u64>> = Vec::new();
    for id in s {
        let b = blocks.partition_point(|b| b.end <= id);
        let same_block = |r: &Range<u64>| blocks.get(b).is_some_and(|bl| bl.start <= r.start);
        match out.last_mut() {
            Some(r) if same_block(r) && id - (r.end - 1) <= gap => r.end = id + 1,
            _ => out.push(id..id + 1),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_follow_blocks_and_gaps() {
        let blocks = vec![0..10, 10..20];
        assert_eq!(
            runs(&[3, 1, 2, 9, 10, 11], &blocks, 100),
            vec![1..10, 10..12]
        );
        assert_eq!(runs(&[1, 8], &blocks, 3), vec![1..2, 8..9]);
        assert!(runs(&[], &blocks, 3).is_empty());
    }

    #[test]
    fn fraction_split_is_deterministic_and_about_right() {
        let blocks = vec![0..1000, 1000..2000];
        let a = Split::by_fraction(&blocks, 0.2, 5);
        let b = Split::by_fraction(&blocks, 0.2, 5);
        assert_eq!(a.test, b.test);
        assert!((300..500).contains(&a.test.len()), "{}", a.test.len());
        assert_eq!(a.train.len() + a.test.len(), 2000);
        let last = a.train_blocks.last().unwrap();
        assert_eq!(last.end, a.train.len() as u64);
        assert!(Split::by_fraction(&blocks, 0.0, 5).test.is_empty());
    }
}
