//! Reed-Solomon erasure coding: files to stripes, stripes to pieces, any `k` pieces back.
//!
//! A file is cut into stripes of `k` data blocks; `m` parity blocks are added, and each of
//! the `k + m` blocks is a piece. Every stripe but the last holds exactly `k · block_size`
//! bytes. The last one holds the rest, in `k` blocks of `ceil(rest / k)` bytes rounded up to
//! an even count (the codec works on 16-bit symbols), zero-padded; its true length is in the
//! manifest. So a one-byte file costs `k + m` two-byte pieces, not `k + m` full blocks.
//!
//! The codec is `reed-solomon-simd` (O(n log n) Leopard-style FFT over GF(2^16), SIMD): on
//! this project's benchmark (`cargo bench -p cairn-storage-node --bench erasure`) it encodes
//! about as fast as `reed-solomon-erasure` (1.15x) and reconstructs about 3x faster, and
//! reconstruction is the path of every degraded read and every repair; ARCHITECTURE.md has
//! the figures.

use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};
use thiserror::Error;

/// Most data or parity pieces per stripe. Keeps placement and manifests sane; the codec
/// itself allows far more.
pub const MAX_SHARDS: u16 = 256;
/// Largest block (piece) size: 64 MiB.
pub const MAX_BLOCK_SIZE: u32 = 64 << 20;
/// Largest stripe (`k · block size`): 256 MiB. Rebuilding holds one stripe in memory, so
/// this bounds what a manifest from outside can make a reader allocate.
pub const MAX_STRIPE_SIZE: u64 = 256 << 20;
/// Default data pieces per stripe. 16+8 rather than 10+4, by `cairn sim durability`
/// (ARCHITECTURE.md, "Durability"): for 1.5x the bytes instead of 1.4x and the same repair
/// traffic, a stripe is lost about a million times less often under volunteer churn (node
/// MTTF one year, 10-minute audits, 1-hour repairs: 3.9e-12 against 3.6e-6 per
/// stripe-year). Smaller networks push with explicit `--k/--m`.
pub const DEFAULT_K: u16 = 16;
/// Default parity pieces per stripe: any 8 holders of a stripe may vanish.
pub const DEFAULT_M: u16 = 8;
/// Default block size: 1 MiB. Chosen by measurement (ARCHITECTURE.md): with 64 KiB slicing
/// the codec runs at 3.4 GB/s there (4.8 at 64 KiB blocks, 1.0 at 4 MiB), and a stripe's
/// manifest entry is 0.004% of its data, against 16 times that at 64 KiB.
pub const DEFAULT_BLOCK_SIZE: u32 = 1 << 20;

/// Erasure coding failures.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ErasureError {
    /// `k`, `m` or the block size is out of range.
    #[error("invalid erasure parameters: {0}")]
    InvalidParams(String),
    /// Fewer than `k` usable pieces.
    #[error("only {have} of the {need} pieces needed to rebuild the stripe are available")]
    TooFewPieces {
        /// Usable pieces.
        have: usize,
        /// Pieces needed (`k`).
        need: usize,
    },
    /// A piece has the wrong length for its stripe.
    #[error("piece {index} is {found} bytes, the stripe's pieces are {expected}")]
    WrongPieceSize {
        /// Position in the stripe.
        index: usize,
        /// Expected length.
        expected: usize,
        /// Actual length.
        found: usize,
    },
    /// The stripe's data does not fit the stripe geometry.
    #[error("stripe of {data_len} bytes does not fit {k} blocks of {block_len} bytes")]
    BadStripe {
        /// Data bytes in the stripe.
        data_len: u64,
        /// Data pieces.
        k: u16,
        /// Piece length.
        block_len: u32,
    },
    /// A piece does not hash to its id (given to or rebuilt by repair).
    #[error("piece {index} does not match its id")]
    Corrupt {
        /// Position in the stripe.
        index: usize,
    },
    /// The codec refused (should not happen with validated parameters).
    #[error("reed-solomon codec: {0}")]
    Codec(String),
}

impl From<reed_solomon_simd::Error> for ErasureError {
    fn from(e: reed_solomon_simd::Error) -> Self {
        Self::Codec(e.to_string())
    }
}

/// Validated erasure parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErasureParams {
    k: u16,
    m: u16,
    block_size: u32,
}

impl Default for ErasureParams {
    fn default() -> Self {
        Self {
            k: DEFAULT_K,
            m: DEFAULT_M,
            block_size: DEFAULT_BLOCK_SIZE,
        }
    }
}

impl ErasureParams {
    /// Checks and builds parameters: `1 <= k, m <= 256`, block size even, in 2..=64 MiB.
    pub fn new(k: u16, m: u16, block_size: u32) -> Result<Self, ErasureError> {
        if k == 0 || k > MAX_SHARDS {
            return Err(ErasureError::InvalidParams(format!(
                "k = {k}, must be 1..={MAX_SHARDS}"
            )));
        }
        if m == 0 || m > MAX_SHARDS {
            return Err(ErasureError::InvalidParams(format!(
                "m = {m}, must be 1..={MAX_SHARDS}"
            )));
        }
        if !(2..=MAX_BLOCK_SIZE).contains(&block_size) || !block_size.is_multiple_of(2) {
            return Err(ErasureError::InvalidParams(format!(
                "block size {block_size}, must be even and 2..={MAX_BLOCK_SIZE}"
            )));
        }
        if u64::from(k) * u64::from(block_size) > MAX_STRIPE_SIZE {
            return Err(ErasureError::InvalidParams(format!(
                "k = {k} blocks of {block_size} bytes exceed the {MAX_STRIPE_SIZE}-byte stripe limit"
            )));
        }
        if !ReedSolomonEncoder::supports(usize::from(k), usize::from(m)) {
            return Err(ErasureError::InvalidParams(format!(
                "k = {k}, m = {m} unsupported by the codec"
            )));
        }
        Ok(Self { k, m, block_size })
    }

    /// Data pieces per stripe.
    pub fn k(&self) -> u16 {
        self.k
    }

    /// Parity pieces per stripe.
    pub fn m(&self) -> u16 {
        self.m
    }

    /// Pieces per stripe, `k + m`.
    pub fn n(&self) -> usize {
        usize::from(self.k) + usize::from(self.m)
    }

    /// Bytes per piece in a full stripe.
    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// Data bytes in a full stripe.
    pub fn stripe_size(&self) -> u64 {
        u64::from(self.k) * u64::from(self.block_size)
    }

    /// The stripes of a file of `file_size` bytes. The one place that defines the layout:
    /// encoders follow it and manifest verification requires it.
    pub fn layout(&self, file_size: u64) -> impl Iterator<Item = StripeLayout> + '_ {
        let stripe = self.stripe_size();
        let full = file_size / stripe;
        let rest = file_size % stripe;
        let k = u64::from(self.k);
        (0..full)
            .map(move |i| StripeLayout {
                offset: i * stripe,
                data_len: stripe,
                block_len: self.block_size,
            })
            .chain((rest > 0).then(|| StripeLayout {
                offset: full * stripe,
                data_len: rest,
                // rest < k * block_size, so this is <= block_size and fits in u32.
                block_len: (rest.div_ceil(k).next_multiple_of(2)) as u32,
            }))
    }

    /// Number of stripes of a file of `file_size` bytes.
    pub fn stripe_count(&self, file_size: u64) -> u64 {
        file_size.div_ceil(self.stripe_size())
    }
}

/// Where a stripe sits in its file and how big its pieces are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StripeLayout {
    /// Byte offset of the stripe in the file.
    pub offset: u64,
    /// File bytes in the stripe (the rest of the last stripe is padding).
    pub data_len: u64,
    /// Bytes per piece.
    pub block_len: u32,
}

/// Encodes stripes, reusing its working memory from one stripe to the next.
pub struct StripeEncoder {
    params: ErasureParams,
    rs: ReedSolomonEncoder,
}

impl std::fmt::Debug for StripeEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeEncoder")
            .field("params", &self.params)
            .finish()
    }
}

impl StripeEncoder {
    /// An encoder for `params`.
    pub fn new(params: ErasureParams) -> Result<Self, ErasureError> {
        let rs = ReedSolomonEncoder::new(
            usize::from(params.k),
            usize::from(params.m),
            params.block_size as usize,
        )?;
        Ok(Self { params, rs })
    }

    /// Encodes one stripe of `data` (at most `k · block_len` bytes) into `k + m` pieces of
    /// `block_len` bytes: the `k` data blocks (zero-padded) then the `m` parity blocks.
    pub fn encode(&mut self, data: &[u8], block_len: u32) -> Result<Vec<Vec<u8>>, ErasureError> {
        let k = usize::from(self.params.k);
        let bl = block_len as usize;
        if bl == 0 || !bl.is_multiple_of(2) || data.len() > k * bl {
            return Err(ErasureError::BadStripe {
                data_len: data.len() as u64,
                k: self.params.k,
                block_len,
            });
        }
        let mut pieces = Vec::with_capacity(self.params.n());
        for i in 0..k {
            let start = (i * bl).min(data.len());
            let end = ((i + 1) * bl).min(data.len());
            let mut block = Vec::with_capacity(bl);
            block.extend_from_slice(&data[start..end]);
            block.resize(bl, 0);
            pieces.push(block);
        }
        let m = usize::from(self.params.m);
        pieces.resize(k + m, vec![0u8; bl]);
        let (data_blocks, parity) = pieces.split_at_mut(k);
        for (off, len) in slices(bl) {
            // Reuses the working space; also clears any state a failed round left behind.
            self.rs.reset(k, m, len)?;
            for block in data_blocks.iter() {
                self.rs.add_original_shard(&block[off..off + len])?;
            }
            let result = self.rs.encode()?;
            for (p, rec) in parity.iter_mut().zip(result.recovery_iter()) {
                p[off..off + len].copy_from_slice(rec);
            }
        }
        Ok(pieces)
    }
}

/// Bytes coded per codec call. Reed-Solomon works symbol by symbol, so a block can be
/// coded in slices (at multiples of 64 bytes the result is identical) and a slice's working
/// set stays in cache: 64 KiB slices code 1 MiB blocks about twice as fast as whole blocks
/// (see the block-size sweep in `benches/erasure.rs`).
const SLICE: usize = 64 << 10;

fn slices(block_len: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..block_len)
        .step_by(SLICE)
        .map(move |off| (off, SLICE.min(block_len - off)))
}

/// Rebuilds a stripe's data from any `k` of its pieces. `pieces[i]` is piece `i` (data
/// pieces first, then parity) or `None` if it is missing. Returns the first `data_len`
/// bytes: the stripe's file data without padding. Callers verify pieces before this.
pub fn reconstruct(
    params: &ErasureParams,
    data_len: u64,
    block_len: u32,
    pieces: &[Option<&[u8]>],
) -> Result<Vec<u8>, ErasureError> {
    let k = usize::from(params.k);
    let m = usize::from(params.m);
    let bl = block_len as usize;
    if pieces.len() != k + m || data_len > (k * bl) as u64 || bl == 0 || !bl.is_multiple_of(2) {
        return Err(ErasureError::BadStripe {
            data_len,
            k: params.k,
            block_len,
        });
    }
    for (index, p) in pieces.iter().enumerate() {
        if let Some(p) = p.filter(|p| p.len() != bl) {
            return Err(ErasureError::WrongPieceSize {
                index,
                expected: bl,
                found: p.len(),
            });
        }
    }
    let have = pieces.iter().filter(|p| p.is_some()).count();
    if have < k {
        return Err(ErasureError::TooFewPieces { have, need: k });
    }
    let data_len = data_len as usize;
    let mut out = Vec::with_capacity(data_len);
    if pieces[..k].iter().all(Option::is_some) {
        // Every data piece is here: no decoding, just concatenation.
        for p in pieces[..k].iter().flatten() {
            out.extend_from_slice(p);
        }
        out.truncate(data_len);
        return Ok(out);
    }
    let mut rebuilt: Vec<Option<Vec<u8>>> = pieces[..k]
        .iter()
        .map(|p| p.is_none().then(|| vec![0u8; bl]))
        .collect();
    let mut dec = ReedSolomonDecoder::new(k, m, bl.min(SLICE))?;
    for (off, len) in slices(bl) {
        dec.reset(k, m, len)?;
        for (i, p) in pieces[..k].iter().enumerate() {
            if let Some(p) = p {
                dec.add_original_shard(i, &p[off..off + len])?;
            }
        }
        for (i, p) in pieces[k..].iter().enumerate() {
            if let Some(p) = p {
                dec.add_recovery_shard(i, &p[off..off + len])?;
            }
        }
        let restored = dec.decode()?;
        for (i, buf) in rebuilt.iter_mut().enumerate() {
            if let Some(buf) = buf {
                let r = restored
                    .restored_original(i)
                    .ok_or_else(|| ErasureError::Codec(format!("piece {i} not restored")))?;
                buf[off..off + len].copy_from_slice(r);
            }
        }
    }
    for (p, r) in pieces[..k].iter().zip(&rebuilt) {
        let block = match (p, r) {
            (Some(p), _) => *p,
            (None, Some(r)) => r.as_slice(),
            (None, None) => {
                return Err(ErasureError::Codec("block neither held nor rebuilt".into()));
            }
        };
        out.extend_from_slice(block);
        if out.len() >= data_len {
            break;
        }
    }
    out.truncate(data_len);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes(len: usize, seed: u8) -> Vec<u8> {
        // Aperiodic, so a block or slice read from the wrong offset cannot go unnoticed.
        crate::local::synthetic(len, u64::from(seed))
    }

    #[test]
    fn params_are_validated() {
        assert!(ErasureParams::new(0, 4, 1024).is_err());
        assert!(ErasureParams::new(10, 0, 1024).is_err());
        assert!(ErasureParams::new(10, 4, 1023).is_err());
        assert!(ErasureParams::new(10, 4, 0).is_err());
        assert!(ErasureParams::new(10, 4, MAX_BLOCK_SIZE + 2).is_err());
        assert!(ErasureParams::new(300, 4, 1024).is_err());
        assert!(
            ErasureParams::new(256, 4, MAX_BLOCK_SIZE).is_err(),
            "16 GiB stripes"
        );
        assert!(ErasureParams::new(4, 4, MAX_BLOCK_SIZE).is_ok());
        assert_eq!(
            ErasureParams::new(16, 8, 1 << 20).unwrap(),
            ErasureParams::default()
        );
    }

    #[test]
    fn layout_covers_the_file_exactly() {
        let p = ErasureParams::new(4, 2, 100).unwrap();
        for size in [0u64, 1, 99, 100, 101, 399, 400, 401, 1000, 1601] {
            let stripes: Vec<_> = p.layout(size).collect();
            assert_eq!(stripes.len() as u64, p.stripe_count(size));
            assert_eq!(stripes.iter().map(|s| s.data_len).sum::<u64>(), size);
            let mut off = 0;
            for s in &stripes {
                assert_eq!(s.offset, off);
                assert!(s.data_len <= 4 * u64::from(s.block_len));
                assert!(s.block_len % 2 == 0 && s.block_len <= 100);
                off += s.data_len;
            }
        }
        let tail: Vec<_> = p.layout(401).collect();
        assert_eq!(
            tail[1],
            StripeLayout {
                offset: 400,
                data_len: 1,
                block_len: 2
            }
        );
    }

    #[test]
    fn too_few_pieces_is_a_clear_error() {
        let p = ErasureParams::new(4, 2, 64).unwrap();
        let data = bytes(200, 1);
        let pieces = StripeEncoder::new(p).unwrap().encode(&data, 64).unwrap();
        let mut some: Vec<Option<&[u8]>> = pieces.iter().map(|p| Some(p.as_slice())).collect();
        some[0] = None;
        some[2] = None;
        some[5] = None;
        assert_eq!(
            reconstruct(&p, 200, 64, &some),
            Err(ErasureError::TooFewPieces { have: 3, need: 4 })
        );
        some[5] = Some(&pieces[5][..10]);
        assert!(matches!(
            reconstruct(&p, 200, 64, &some),
            Err(ErasureError::WrongPieceSize { index: 5, .. })
        ));
    }

    #[test]
    fn every_choice_of_m_losses_rebuilds_bit_exact() {
        let p = ErasureParams::new(10, 4, 4096).unwrap();
        let data = bytes(10 * 4096 - 77, 9);
        let pieces = StripeEncoder::new(p).unwrap().encode(&data, 4096).unwrap();
        assert_eq!(pieces.len(), 14);
        // All C(14, 4) = 1001 ways to lose four pieces.
        let mut cases = 0;
        for mask in 0u32..(1 << 14) {
            if mask.count_ones() != 4 {
                continue;
            }
            let avail: Vec<Option<&[u8]>> = (0..14)
                .map(|i| (mask & (1 << i) == 0).then_some(pieces[i].as_slice()))
                .collect();
            assert_eq!(
                reconstruct(&p, data.len() as u64, 4096, &avail).unwrap(),
                data
            );
            cases += 1;
        }
        assert_eq!(cases, 1001);
    }

    #[test]
    fn sliced_coding_matches_whole_block_coding() {
        // Blocks above one slice, with a tail slice that is not a multiple of 64 bytes.
        for bl in [SLICE + 2, 3 * SLICE + 1236, 1 << 20] {
            let p = ErasureParams::new(4, 3, bl as u32).unwrap();
            let data = bytes(4 * bl - 5, 3);
            let pieces = StripeEncoder::new(p)
                .unwrap()
                .encode(&data, bl as u32)
                .unwrap();
            let whole = reed_solomon_simd::encode(4, 3, &pieces[..4]).unwrap();
            assert_eq!(&pieces[4..], &whole[..], "block {bl}");
            let avail: Vec<Option<&[u8]>> = (0..7)
                .map(|i| (!matches!(i, 0 | 2 | 3)).then_some(pieces[i].as_slice()))
                .collect();
            assert_eq!(
                reconstruct(&p, data.len() as u64, bl as u32, &avail).unwrap(),
                data
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn any_k_of_n_round_trip(
            k in 1u16..=12, m in 1u16..=6, len in 0usize..20_000, seed in any::<u8>(),
            lost in proptest::collection::vec(any::<prop::sample::Index>(), 0..6)
        ) {
            let p = ErasureParams::new(k, m, 512).unwrap();
            let data = bytes(len, seed);
            let mut enc = StripeEncoder::new(p).unwrap();
            let mut out = Vec::new();
            for s in p.layout(len as u64) {
                let chunk = &data[s.offset as usize..(s.offset + s.data_len) as usize];
                let pieces = enc.encode(chunk, s.block_len).unwrap();
                let mut avail: Vec<Option<&[u8]>> = pieces.iter().map(|x| Some(x.as_slice())).collect();
                for l in lost.iter().take(usize::from(m)) {
                    avail[l.index(p.n())] = None;
                }
                out.extend(reconstruct(&p, s.data_len, s.block_len, &avail).unwrap());
            }
            prop_assert_eq!(out, data);
        }
    }
}
