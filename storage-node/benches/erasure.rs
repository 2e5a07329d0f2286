//! Erasure coding throughput: `reed-solomon-simd` (used) against `reed-solomon-erasure`,
//! side by side on the same stripes, with memcpy and BLAKE3 of the same buffer as the
//! reference. Also the block-size sweep that chose the default block size.
//!
//! `cargo bench -p cairn-storage-node --bench erasure`. Throughput is in bytes of *file
//! data* per second (a 10+4 stripe of 1 MiB blocks is 10 MiB of data).

#![allow(clippy::unwrap_used)] // a benchmark that cannot set up should stop loudly

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use reed_solomon_erasure::galois_8::ReedSolomon;
use storage_node::erasure::{self, ErasureParams, StripeEncoder};

#[allow(dead_code, unreachable_pub)]
#[path = "../../proofs/benches/ratio.rs"]
mod ratio;

const K: usize = 10;
const M: usize = 4;

fn stripe(block: usize) -> Vec<u8> {
    (0..K * block).map(|i| (i * 131 + i / 4099) as u8).collect()
}

/// reed-solomon-erasure: encode k data shards into m parity shards in place.
fn rse_encode(rs: &ReedSolomon, data: &[u8], block: usize) -> Vec<Vec<u8>> {
    let mut shards: Vec<Vec<u8>> = data.chunks(block).map(<[u8]>::to_vec).collect();
    shards.resize(K + M, vec![0u8; block]);
    rs.encode(&mut shards).unwrap();
    shards
}

/// reed-solomon-erasure: rebuild the data with the first four data shards lost.
fn rse_reconstruct(rs: &ReedSolomon, shards: &[Vec<u8>]) -> Vec<u8> {
    let mut s: Vec<Option<Vec<u8>>> = shards.iter().cloned().map(Some).collect();
    for x in s.iter_mut().take(M) {
        *x = None;
    }
    rs.reconstruct_data(&mut s).unwrap();
    s.into_iter().take(K).flatten().flatten().collect()
}

/// reed-solomon-simd through the engine: rebuild with the first four data pieces lost.
fn simd_reconstruct(p: &ErasureParams, pieces: &[Vec<u8>], block: usize) -> Vec<u8> {
    let avail: Vec<Option<&[u8]>> = pieces
        .iter()
        .enumerate()
        .map(|(i, x)| (i >= M).then_some(x.as_slice()))
        .collect();
    erasure::reconstruct(p, (K * block) as u64, block as u32, &avail).unwrap()
}

fn bench(c: &mut Criterion) {
    let block = 1 << 20;
    let data = stripe(block);
    let p = ErasureParams::new(K as u16, M as u16, block as u32).unwrap();
    let rs = ReedSolomon::new(K, M).unwrap();
    let mut enc = StripeEncoder::new(p).unwrap();
    let pieces = enc.encode(&data, block as u32).unwrap();
    let rse_shards = rse_encode(&rs, &data, block);
    assert_eq!(simd_reconstruct(&p, &pieces, block), data);
    assert_eq!(rse_reconstruct(&rs, &rse_shards), data);

    let mut dst = vec![0u8; data.len()];
    let mut g = c.benchmark_group("erasure_10+4_1MiB_blocks");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(20).measurement_time(Duration::from_secs(4));
    g.bench_function("memcpy (reference)", |b| {
        b.iter(|| ratio::memcpy(&data, &mut dst))
    });
    g.bench_function("blake3 (reference)", |b| {
        b.iter(|| blake3::hash(black_box(&data)))
    });
    g.bench_function("encode/reed-solomon-simd", |b| {
        b.iter(|| enc.encode(black_box(&data), block as u32).unwrap())
    });
    g.bench_function("encode/reed-solomon-erasure", |b| {
        b.iter(|| rse_encode(&rs, black_box(&data), block))
    });
    g.bench_function("reconstruct 4 lost/reed-solomon-simd", |b| {
        b.iter(|| simd_reconstruct(&p, black_box(&pieces), block))
    });
    g.bench_function("reconstruct 4 lost/reed-solomon-erasure", |b| {
        b.iter(|| rse_reconstruct(&rs, black_box(&rse_shards)))
    });
    g.finish();

    let mut g = c.benchmark_group("encode_block_size_sweep");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    for bs in [16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20] {
        let d = stripe(bs);
        let p = ErasureParams::new(K as u16, M as u16, bs as u32).unwrap();
        let mut e = StripeEncoder::new(p).unwrap();
        g.throughput(Throughput::Bytes(d.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(bs), &d, |b, d| {
            b.iter(|| e.encode(black_box(d), bs as u32).unwrap())
        });
    }
    g.finish();
}

fn summary() {
    let block = 1 << 20;
    let data = stripe(block);
    let n = data.len() as u64;
    let p = ErasureParams::new(K as u16, M as u16, block as u32).unwrap();
    let rs = ReedSolomon::new(K, M).unwrap();
    let mut enc = StripeEncoder::new(p).unwrap();
    let pieces = enc.encode(&data, block as u32).unwrap();
    let rse_shards = rse_encode(&rs, &data, block);
    let mut dst = vec![0u8; data.len()];
    let mut t = ratio::Table::default();
    t.time("memcpy 10 MiB", n, 21, || ratio::memcpy(&data, &mut dst));
    t.time("blake3 10 MiB", n, 21, || {
        black_box(blake3::hash(&data));
    });
    t.time("encode 10+4 reed-solomon-simd", n, 15, || {
        black_box(enc.encode(&data, block as u32).unwrap());
    });
    t.time("encode 10+4 reed-solomon-erasure", n, 15, || {
        black_box(rse_encode(&rs, &data, block));
    });
    t.time("reconstruct 4 lost reed-solomon-simd", n, 15, || {
        black_box(simd_reconstruct(&p, &pieces, block));
    });
    t.time("reconstruct 4 lost reed-solomon-erasure", n, 15, || {
        black_box(rse_reconstruct(&rs, &rse_shards));
    });
    t.print("erasure coding, one 10+4 stripe of 1 MiB blocks");

    let mut t = ratio::Table::default();
    let d = stripe(1 << 20);
    t.time("memcpy 10 MiB", d.len() as u64, 21, || {
        ratio::memcpy(&d, &mut dst)
    });
    for bs in [16usize << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20] {
        let d = stripe(bs);
        let p = ErasureParams::new(K as u16, M as u16, bs as u32).unwrap();
        let mut e = StripeEncoder::new(p).unwrap();
        let runs = if bs >= 4 << 20 { 7 } else { 15 };
        t.time(
            &format!("encode 10+4 simd, block {} KiB", bs >> 10),
            d.len() as u64,
            runs,
            || {
                black_box(e.encode(&d, bs as u32).unwrap());
            },
        );
    }
    t.print("block size sweep (reed-solomon-simd)");
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    summary();
}
