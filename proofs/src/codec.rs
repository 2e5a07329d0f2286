//! A small, bounded binary codec shared by every Cairn wire and disk format.
//!
//! Everything is little-endian. Variable-length fields carry an explicit length that the
//! reader checks against a caller-given maximum *and* against the bytes actually left in the
//! input before it allocates, so a hostile length field can never make a decoder allocate
//! more than the input it was handed. Readers never panic: every failure is a [`DecodeError`].

use thiserror::Error;

/// Why a byte string could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended inside `field`.
    #[error("input truncated while reading {field}")]
    Truncated {
        /// The field being read.
        field: &'static str,
    },
    /// A count or length exceeds what the format allows.
    #[error("{field} is {len}, more than the allowed {max}")]
    TooLong {
        /// The field being read.
        field: &'static str,
        /// The length found in the input.
        len: u64,
        /// The largest length the format allows.
        max: u64,
    },
    /// The leading format version is not one this build understands.
    #[error("unsupported {format} format version {found} (this build reads version {supported})")]
    UnsupportedVersion {
        /// Which format.
        format: &'static str,
        /// The version byte found.
        found: u8,
        /// The version this build reads.
        supported: u8,
    },
    /// Bytes were left over after a complete value.
    #[error("{0} trailing bytes after the end of the value")]
    Trailing(usize),
    /// A field held a value the format forbids.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field being read.
        field: &'static str,
        /// What was wrong.
        reason: &'static str,
    },
}

/// Appends encoded fields to a byte vector.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty writer with room for `n` bytes.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            buf: Vec::with_capacity(n),
        }
    }

    /// The bytes written so far.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Writes one byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    /// Writes a little-endian `u16`.
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// Writes a little-endian `u32`.
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// Writes a little-endian `u64`.
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// Writes raw bytes with no length prefix (fixed-size fields).
    pub fn raw(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }

    /// Writes a `u32` length prefix followed by the bytes.
    ///
    /// # Panics
    /// If `v` is 4 GiB or longer; encoders bound their fields long before that.
    #[allow(clippy::expect_used)]
    pub fn bytes(&mut self, v: &[u8]) {
        self.u32(u32::try_from(v.len()).expect("field shorter than 4 GiB"));
        self.raw(v);
    }

    /// Writes a length-prefixed UTF-8 string.
    pub fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
}

/// Reads encoded fields from a byte slice, never past its end.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `input`.
    pub fn new(input: &'a [u8]) -> Self {
        Self { rest: input }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Takes exactly `n` bytes.
    pub fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if n > self.rest.len() {
            return Err(DecodeError::Truncated { field });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    /// Takes a fixed-size array.
    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    /// Reads one byte.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    /// Reads a little-endian `u16`.
    pub fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    /// Reads a little-endian `u32`.
    pub fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    /// Reads a little-endian `u64`.
    pub fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    /// Reads a format version byte and checks it.
    pub fn version(&mut self, format: &'static str, supported: u8) -> Result<(), DecodeError> {
        let found = self.u8("format version")?;
        if found != supported {
            return Err(DecodeError::UnsupportedVersion {
                format,
                found,
                supported,
            });
        }
        Ok(())
    }

    /// Reads a `u32`-prefixed byte string of at most `max` bytes.
    pub fn bytes(&mut self, max: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.u32_at_most(max, field)?;
        self.take(len, field)
    }

    /// Reads a `u32` length or count and checks it against `max`.
    fn u32_at_most(&mut self, max: usize, field: &'static str) -> Result<usize, DecodeError> {
        let n = self.u32(field)? as usize;
        if n > max {
            return Err(DecodeError::TooLong {
                field,
                len: n as u64,
                max: max as u64,
            });
        }
        Ok(n)
    }

    /// Reads a `u32`-prefixed UTF-8 string of at most `max` bytes.
    pub fn str(&mut self, max: usize, field: &'static str) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.bytes(max, field)?).map_err(|_| DecodeError::Invalid {
            field,
            reason: "not UTF-8",
        })
    }

    /// Reads an element count of at most `max`, where each element takes at least
    /// `min_elem_bytes` of input. The count is checked against the input left, so a
    /// `Vec::with_capacity(count)` afterwards is bounded by the input size.
    pub fn count(
        &mut self,
        max: usize,
        min_elem_bytes: usize,
        field: &'static str,
    ) -> Result<usize, DecodeError> {
        let n = self.u32_at_most(max, field)?;
        if n.saturating_mul(min_elem_bytes.max(1)) > self.rest.len() && min_elem_bytes > 0 {
            return Err(DecodeError::Truncated { field });
        }
        Ok(n)
    }

    /// Fails unless every byte was read.
    pub fn finish(self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing(self.rest.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_fields() {
        let mut w = Writer::new();
        w.u8(7);
        w.u16(0xBEEF);
        w.u32(0xDEAD_BEEF);
        w.u64(u64::MAX - 1);
        w.str("héllo");
        let bytes = w.into_bytes();
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u8("a").unwrap(), 7);
        assert_eq!(r.u16("b").unwrap(), 0xBEEF);
        assert_eq!(r.u32("c").unwrap(), 0xDEAD_BEEF);
        assert_eq!(r.u64("d").unwrap(), u64::MAX - 1);
        assert_eq!(r.str(16, "e").unwrap(), "héllo");
        r.finish().unwrap();
    }

    #[test]
    fn hostile_lengths_are_refused_before_allocation() {
        let mut w = Writer::new();
        w.u32(u32::MAX);
        let bytes = w.into_bytes();
        assert!(matches!(
            Reader::new(&bytes).bytes(usize::MAX, "blob"),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            Reader::new(&bytes).bytes(10, "blob"),
            Err(DecodeError::TooLong {
                len: 4294967295,
                max: 10,
                ..
            })
        ));
        assert!(matches!(
            Reader::new(&bytes).count(usize::MAX, 32, "list"),
            Err(DecodeError::Truncated { .. })
        ));
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let r = Reader::new(&[1, 2]);
        assert_eq!(r.finish(), Err(DecodeError::Trailing(2)));
    }
}
