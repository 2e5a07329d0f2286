//! The kernels alone: Reed-Solomon encoding and BLAKE3 beside memcpy of the same buffer.

use std::time::Instant;

use anyhow::Result;
use storage_node::{ErasureParams, erasure::StripeEncoder};

use super::{K, M, Results};

/// Best-of-`reps` throughput of `f` over `bytes` bytes, GB/s.
pub(super) fn gbs(bytes: usize, reps: usize, mut f: impl FnMut()) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    bytes as f64 / best.max(1e-9) / 1e9
}

pub(super) fn kernels(r: &mut Results, quick: bool) -> Result<()> {
    let len: usize = if quick { 32 << 20 } else { 128 << 20 };
    let reps = if quick { 3 } else { 5 };
    let src = storage_node::local::synthetic(len, 3);
    let mut dst = vec![0u8; len];
    let memcpy = gbs(len, reps, || {
        dst.copy_from_slice(&src);
        std::hint::black_box(&dst);
    });
    let hash = gbs(len, reps, || {
        std::hint::black_box(blake3::hash(&src));
    });
    r.add(
        "BLAKE3 (piece ids, proofs), one core",
        (hash, "GB/s"),
        "memcpy of the same buffer",
        memcpy,
        "higher is better",
    );
    for (k, m) in [(K, M), (10, 4), (16, 8)] {
        let params = ErasureParams::new(k, m, 1 << 20)?;
        let mut enc = StripeEncoder::new(params)?;
        let stripe = usize::from(k) << 20;
        let stripes = (len / stripe).max(1);
        let rate = gbs(stripes * stripe, reps, || {
            for s in 0..stripes {
                let data = &src[s * stripe..(s + 1) * stripe];
                std::hint::black_box(enc.encode(data, 1 << 20).ok());
            }
        });
        r.add(
            &format!("Reed-Solomon encode {k}+{m}, file bytes, one core"),
            (rate, "GB/s"),
            "memcpy of the same buffer",
            memcpy,
            "higher is better",
        );
    }
    Ok(())
}
