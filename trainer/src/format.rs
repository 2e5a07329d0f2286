//! Sample formats, parsed incrementally: where each sample's bytes are, and how to turn
//! them into features and a label.
//!
//! - **CSV** with a header row: every column but the label is a numeric feature. Rows are
//!   located by one sequential scan for line ends (`CsvIndex`); a row is parsed only when
//!   a batch needs it.
//! - **IDX** (the MNIST layout): an images file `[n, rows, cols]` of `u8` and a labels file
//!   `[n]` of `u8`; a sample's place is arithmetic on the header. Gzipped IDX files are
//!   decompressed once into the local cache (gzip has no random access).
//!
//! A bad row is an error that names the file and line, unless bad rows are to be skipped,
//! in which case the scan leaves it out of the index and counts it.

use std::ops::Range;

/// Largest CSV line accepted.
pub const MAX_LINE: u64 = 1 << 20;
/// Most CSV columns.
pub const MAX_COLUMNS: usize = 4096;
/// Most IDX dimensions.
const MAX_DIMS: usize = 4;

/// A parse error, naming the file and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// A CSV line or cell is wrong.
    #[error("{file}, line {line}: {what} (pass --skip-bad-rows to leave such rows out)")]
    Row {
        /// The file.
        file: String,
        /// 1-based line.
        line: u64,
        /// What is wrong.
        what: String,
    },
    /// The CSV header is unusable.
    #[error("{file}: {what}")]
    Header {
        /// The file.
        file: String,
        /// What is wrong.
        what: String,
    },
    /// An IDX file is malformed.
    #[error("{file}: not an IDX file of unsigned bytes: {what}")]
    Idx {
        /// The file.
        file: String,
        /// What is wrong.
        what: String,
    },
}

/// A CSV file's header and the byte extents of its usable rows.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvIndex {
    /// Column names.
    pub columns: Vec<String>,
    /// Index of the label column.
    pub label: usize,
    /// Each usable row's bytes (line end excluded).
    pub rows: Vec<Range<u64>>,
    /// 1-based line number of each row, for errors.
    pub lines: Vec<u64>,
    /// Rows left out as bad.
    pub skipped: u64,
}

fn cells(line: &[u8]) -> impl Iterator<Item = &str> {
    line.split(|&b| b == b',').map(|c| {
        let c = std::str::from_utf8(c).unwrap_or("\u{FFFD}").trim();
        c.strip_prefix('"')
            .and_then(|c| c.strip_suffix('"'))
            .unwrap_or(c)
    })
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Parses one CSV row into `features` (label excluded) and the label.
pub fn parse_row(
    line: &[u8],
    columns: usize,
    label: usize,
    features: &mut Vec<f32>,
) -> Result<f32, String> {
    features.clear();
    let mut y = None;
    let mut n = 0;
    for (i, c) in cells(trim_cr(line)).enumerate() {
        n += 1;
        if n > columns {
            break;
        }
        let v: f32 = c
            .parse()
            .map_err(|_| format!("column {} is {c:?}, not a number", i + 1))?;
        if !v.is_finite() {
            return Err(format!("column {} is {c:?}, not a finite number", i + 1));
        }
        if i == label {
            y = Some(v);
        } else {
            features.push(v);
        }
    }
    if n != columns {
        return Err(format!("{n} columns where the header has {columns}"));
    }
    y.ok_or_else(|| "no label".into())
}

/// Builds a [`CsvIndex`] from the file's bytes, fed in order in chunks of any size.
#[derive(Debug)]
pub struct CsvScanner {
    file: String,
    label_name: String,
    skip_bad: bool,
    /// Bytes of the current, unfinished line.
    partial: Vec<u8>,
    /// Offset of `partial`'s first byte.
    line_start: u64,
    line_no: u64,
    header: Option<(Vec<String>, usize)>,
    rows: Vec<Range<u64>>,
    lines: Vec<u64>,
    skipped: u64,
    scratch: Vec<f32>,
}

impl CsvScanner {
    /// A scanner for `file` whose label column is `label`.
    pub fn new(file: &str, label: &str, skip_bad: bool) -> Self {
        Self {
            file: file.to_string(),
            label_name: label.to_string(),
            skip_bad,
            partial: Vec::new(),
            line_start: 0,
            line_no: 0,
            header: None,
            rows: Vec::new(),
            lines: Vec::new(),
            skipped: 0,
            scratch: Vec::new(),
        }
    }

    /// Feeds the next bytes of the file.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<(), FormatError> {
        while let Some(nl) = chunk.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&chunk[..nl]);
            self.line()?;
            self.line_start += self.partial.len() as u64 + 1;
            self.partial.clear();
            chunk = &chunk[nl + 1..];
        }
        self.partial.extend_from_slice(chunk);
        if self.partial.len() as u64 > MAX_LINE {
            return Err(FormatError::Row {
                file: self.file.clone(),
                line: self.line_no + 1,
                what: format!("a line longer than {MAX_LINE} bytes"),
            });
        }
        Ok(())
    }

    fn line(&mut self) -> Result<(), FormatError> {
        self.line_no += 1;
        let line = trim_cr(&self.partial);
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let Some((columns, label)) = &self.header else {
            let cols: Vec<String> = cells(line).map(str::to_string).collect();
            if cols.len() > MAX_COLUMNS {
                return Err(FormatError::Header {
                    file: self.file.clone(),
                    what: format!("{} columns; at most {MAX_COLUMNS}", cols.len()),
                });
            }
            let Some(l) = cols.iter().position(|c| *c == self.label_name) else {
                return Err(FormatError::Header {
                    file: self.file.clone(),
                    what: format!(
                        "no column {:?} for the label; the header has {}",
                        self.label_name,
                        cols.join(", ")
                    ),
                });
            };
            if cols.len() < 2 {
                return Err(FormatError::Header {
                    file: self.file.clone(),
                    what: "no feature columns beside the label".into(),
                });
            }
            self.header = Some((cols, l));
            return Ok(());
        };
        match parse_row(line, columns.len(), *label, &mut self.scratch) {
            Ok(_) => {
                self.rows
                    .push(self.line_start..self.line_start + line.len() as u64);
                self.lines.push(self.line_no);
                Ok(())
            }
            Err(_) if self.skip_bad => {
                self.skipped += 1;
                Ok(())
            }
            Err(what) => Err(FormatError::Row {
                file: self.file.clone(),
                line: self.line_no,
                what,
            }),
        }
    }

    /// Ends the file.
    pub fn finish(mut self) -> Result<CsvIndex, FormatError> {
        if !self.partial.is_empty() {
            self.line()?;
        }
        let Some((columns, label)) = self.header else {
            return Err(FormatError::Header {
                file: self.file,
                what: "empty: no header row".into(),
            });
        };
        Ok(CsvIndex {
            columns,
            label,
            rows: self.rows,
            lines: self.lines,
            skipped: self.skipped,
        })
    }
}

/// The header of an IDX file of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxHeader {
    /// Dimensions, first the sample count.
    pub dims: Vec<u32>,
    /// Bytes before the data.
    pub data_offset: u64,
}

impl IdxHeader {
    /// Parses the header at the start of `bytes` (at least the first 4 + 4·dims bytes),
    /// checking it against the file's length.
    pub fn parse(file: &str, bytes: &[u8], file_len: u64) -> Result<Self, FormatError> {
        let bad = |what: String| FormatError::Idx {
            file: file.to_string(),
            what,
        };
        let [0, 0, kind, nd, ..] = *bytes else {
            return Err(bad("no IDX magic".into()));
        };
        if kind != 0x08 {
            return Err(bad(format!(
                "element type 0x{kind:02x}, only 0x08 (u8) is read"
            )));
        }
        let nd = usize::from(nd);
        if nd == 0 || nd > MAX_DIMS {
            return Err(bad(format!("{nd} dimensions")));
        }
        let need = 4 + 4 * nd;
        let Some(raw) = bytes.get(4..need) else {
            return Err(bad("header cut short".into()));
        };
        let dims: Vec<u32> = raw
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let total = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(u64::from(d)))
            .and_then(|d| d.checked_add(need as u64));
        if total != Some(file_len) {
            return Err(bad(format!(
                "dimensions {dims:?} do not match the file's {file_len} bytes"
            )));
        }
        Ok(Self {
            dims,
            data_offset: need as u64,
        })
    }

    /// Samples.
    pub fn count(&self) -> u64 {
        u64::from(self.dims[0])
    }

    /// Bytes per sample.
    pub fn sample_len(&self) -> u64 {
        self.dims[1..].iter().map(|&d| u64::from(d)).product()
    }

    /// Where sample `i` is.
    pub fn sample(&self, i: u64) -> Range<u64> {
        let l = self.sample_len();
        let s = self.data_offset + i * l;
        s..s + l
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn scan(text: &[u8], chunk: usize, skip: bool) -> Result<CsvIndex, FormatError> {
        let mut s = CsvScanner::new("t.csv", "y", skip);
        for c in text.chunks(chunk.max(1)) {
            s.feed(c)?;
        }
        s.finish()
    }

    #[test]
    fn rows_are_found_and_parsed() {
        let text = b"a,y,b\r\n1,0,2\n\n3.5,1,-4\n5,2,6";
        let idx = scan(text, 3, false).unwrap();
        assert_eq!(idx.columns, ["a", "y", "b"]);
        assert_eq!(idx.label, 1);
        assert_eq!(idx.lines, [2, 4, 5]);
        let mut f = Vec::new();
        let row = |r: &Range<u64>| &text[r.start as usize..r.end as usize];
        assert_eq!(parse_row(row(&idx.rows[1]), 3, 1, &mut f).unwrap(), 1.0);
        assert_eq!(f, [3.5, -4.0]);
        assert_eq!(parse_row(row(&idx.rows[2]), 3, 1, &mut f).unwrap(), 2.0);
    }

    #[test]
    fn bad_rows_name_their_line_or_are_skipped() {
        let text = b"a,y\n1,0\n2,oops\n3\n4,1\n";
        let e = scan(text, 64, false).unwrap_err();
        assert!(e.to_string().contains("t.csv, line 3"), "{e}");
        assert!(e.to_string().contains("\"oops\""), "{e}");
        let idx = scan(text, 64, true).unwrap();
        assert_eq!((idx.rows.len(), idx.skipped), (2, 2));
        assert!(
            scan(b"a,b\n1,2\n", 64, false)
                .unwrap_err()
                .to_string()
                .contains("no column \"y\"")
        );
        assert!(scan(b"", 64, false).is_err());
        assert!(scan(b"a,y\n1,inf\n", 64, false).is_err());
    }

    #[test]
    fn idx_headers_are_checked() {
        let mut f = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3];
        f.extend(0u8..12);
        let h = IdxHeader::parse("i", &f, f.len() as u64).unwrap();
        assert_eq!((h.count(), h.sample_len()), (2, 6));
        assert_eq!(h.sample(1), 22..28);
        assert!(IdxHeader::parse("i", &f, f.len() as u64 + 1).is_err());
        assert!(IdxHeader::parse("i", &f[..10], 100).is_err());
        assert!(IdxHeader::parse("i", &[1, 2, 3, 4], 4).is_err());
        assert!(IdxHeader::parse("i", &[0, 0, 0x0d, 1, 0, 0, 0, 1], 12).is_err());
        // Huge dimensions do not overflow into a small product.
        let h = [
            0, 0, 8, 4, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
            255,
        ];
        assert!(IdxHeader::parse("i", &h, 20).is_err());
    }

    proptest! {
        #[test]
        fn chunking_never_changes_the_index(
            rows in proptest::collection::vec((0u32..1000, 0u8..5), 0..40),
            chunk in 1usize..50,
        ) {
            let mut text = String::from("x,y\n");
            for (x, y) in &rows {
                text.push_str(&format!("{x},{y}\n"));
            }
            let a = scan(text.as_bytes(), chunk, false).unwrap();
            let b = scan(text.as_bytes(), 1 << 20, false).unwrap();
            prop_assert_eq!(a.rows.len(), rows.len());
            prop_assert_eq!(a, b);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), chunk in 1usize..40) {
            let _ = scan(&bytes, chunk, true);
            let _ = scan(&bytes, chunk, false);
            let _ = IdxHeader::parse("i", &bytes, bytes.len() as u64);
        }
    }
}
