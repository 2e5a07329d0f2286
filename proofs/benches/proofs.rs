//! Commitment cost, prove and verify time per challenge, and proof size.
//!
//! `cargo bench -p cairn-proofs`. Criterion prints its statistics per benchmark; the tables
//! at the end compare each figure with memcpy of the same buffer, and compare the chosen
//! construction (BLAKE3's own tree: the piece hash is the commitment) with separate Merkle
//! trees over 1 KiB leaves (BLAKE3 and SHA-256) and 4 KiB leaves. The last table compares
//! proofs read from a stored outboard with proofs made from the whole piece, by time and
//! by bytes read, for pieces up to 64 MiB.

#![allow(clippy::unwrap_used)] // a benchmark that cannot set up should stop loudly

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput};
use proofs::{Challenge, Counted, Hash, InMemory, Nonce, Proof};
use sha2::Digest;

#[allow(dead_code, unreachable_pub)]
mod ratio;

const PIECE: usize = 1 << 20;

/// A separate binary Merkle tree over fixed-size leaves (the odd node at the end of a level
/// is carried up), over any hash: the alternative the chosen construction is measured against.
fn reference_tree(data: &[u8], leaf: usize, h: impl Fn(&[u8]) -> [u8; 32]) -> [u8; 32] {
    let mut level: Vec<[u8; 32]> = data.chunks(leaf).map(&h).collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|p| match p {
                [l, r] => h(&[l.as_slice(), r.as_slice()].concat()),
                [one] => *one,
                _ => unreachable!(),
            })
            .collect();
    }
    level[0]
}

fn sha256(b: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(b).into()
}

fn blake3(b: &[u8]) -> [u8; 32] {
    *blake3::hash(b).as_bytes()
}

fn data() -> Vec<u8> {
    (0..PIECE).map(|i| (i * 7 + i / 1000) as u8).collect()
}

fn challenge(i: u8, samples: u16) -> Challenge {
    Challenge {
        piece: Hash([9; 32]),
        piece_len: PIECE as u64,
        nonce: Nonce([i; 32]),
        samples,
    }
}

fn bench(c: &mut Criterion) {
    let data = data();
    let mut dst = vec![0u8; PIECE];
    let mut g = c.benchmark_group("commitment_1MiB");
    g.throughput(Throughput::Bytes(PIECE as u64));
    g.bench_function("memcpy (reference)", |b| {
        b.iter(|| ratio::memcpy(&data, &mut dst))
    });
    g.bench_function("blake3 hash = commitment (chosen)", |b| {
        b.iter(|| proofs::commitment(black_box(&data)))
    });
    g.bench_function("separate tree: blake3 1KiB leaves", |b| {
        b.iter(|| reference_tree(black_box(&data), 1024, blake3))
    });
    g.bench_function("separate tree: blake3 4KiB leaves", |b| {
        b.iter(|| reference_tree(black_box(&data), 4096, blake3))
    });
    g.bench_function("separate tree: sha256 1KiB leaves", |b| {
        b.iter(|| reference_tree(black_box(&data), 1024, sha256))
    });
    g.bench_function("outboard (stored tree, built at a first challenge)", |b| {
        b.iter(|| proofs::outboard(black_box(&data)))
    });
    g.finish();

    let root = proofs::commitment(&data);
    let mut g = c.benchmark_group("challenge_1MiB_piece");
    for s in [16u16, 32, 64] {
        let ch = challenge(1, s);
        let proof = Proof::create(&data, &ch).unwrap();
        g.bench_with_input(BenchmarkId::new("prove", s), &ch, |b, ch| {
            b.iter(|| Proof::create(&data, black_box(ch)).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("verify", s), &proof, |b, p| {
            b.iter(|| proofs::verify(&root, &ch, black_box(p)).unwrap())
        });
    }
    let ob = proofs::outboard(&data);
    let ch = challenge(1, 32);
    g.bench_function("prove from outboard/32", |b| {
        b.iter(|| {
            let mut src = InMemory {
                piece: &data,
                outboard: &ob,
            };
            Proof::create_from(PIECE as u64, black_box(&ch), &mut src).unwrap()
        })
    });
    g.finish();
}

/// Proofs of s = 32 from the outboard against proofs from the whole piece, the way a
/// holder made them before: time and bytes read per challenge.
fn outboard_summary() {
    println!("\n== a challenge of s = 32: from the outboard vs from the whole piece ==");
    println!(
        "{:>10} {:>14} {:>16} {:>8} {:>16} {:>14} {:>12}",
        "piece", "whole: us", "outboard: us", "ratio", "bytes read", "whole piece", "outboard"
    );
    for mib in [1usize, 16, 64] {
        let len = mib << 20;
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 1000) as u8).collect();
        let ob = proofs::outboard(&data);
        let ch = Challenge {
            piece: Hash([9; 32]),
            piece_len: len as u64,
            nonce: Nonce([5; 32]),
            samples: 32,
        };
        let mut t = ratio::Table::default();
        let whole = t.time("whole", 0, 11, || {
            black_box(Proof::create(&data, &ch).unwrap());
        });
        let mut read = 0;
        let from_ob = t.time("outboard", 0, 101, || {
            let mut src = Counted::new(InMemory {
                piece: &data,
                outboard: &ob,
            });
            black_box(Proof::create_from(len as u64, &ch, &mut src).unwrap());
            read = src.read;
        });
        println!(
            "{:>7} MiB {:>14.1} {:>16.1} {:>8.4} {:>16} {:>14} {:>12}",
            mib,
            whole.as_secs_f64() * 1e6,
            from_ob.as_secs_f64() * 1e6,
            from_ob.as_secs_f64() / whole.as_secs_f64().max(1e-12),
            read,
            len,
            ob.len(),
        );
    }
}

fn summary() {
    let data = data();
    let mut dst = vec![0u8; PIECE];
    let n = PIECE as u64;
    let mut t = ratio::Table::default();
    t.time("memcpy 1 MiB", n, 51, || ratio::memcpy(&data, &mut dst));
    t.time("commitment = blake3 hash (chosen)", n, 51, || {
        black_box(proofs::commitment(&data));
    });
    t.time("separate tree: blake3, 1 KiB leaves", n, 31, || {
        black_box(reference_tree(&data, 1024, blake3));
    });
    t.time("separate tree: blake3, 4 KiB leaves", n, 31, || {
        black_box(reference_tree(&data, 4096, blake3));
    });
    t.time("separate tree: sha256, 1 KiB leaves", n, 31, || {
        black_box(reference_tree(&data, 1024, sha256));
    });
    t.time(
        "outboard: stored tree, built at a first challenge",
        n,
        31,
        || {
            black_box(proofs::outboard(&data));
        },
    );
    t.print("cost of committing to a 1 MiB piece");

    let root = proofs::commitment(&data);
    println!("\n== proofs for a 1 MiB piece (1024 leaves of 1 KiB, BLAKE3 tree depth 10) ==");
    println!(
        "{:>8} {:>12} {:>12} {:>14} {:>16} {:>16}",
        "samples", "prove us", "verify us", "proof bytes", "siblings sent", "separate paths"
    );
    for s in [8u16, 16, 32, 64, 128] {
        let ch = challenge(3, s);
        let mut proof = None;
        let mut pt = ratio::Table::default();
        let p = pt.time("prove", 0, 101, || {
            proof = Some(Proof::create(&data, &ch).unwrap())
        });
        let proof = proof.unwrap();
        let v = pt.time("verify", 0, 101, || {
            proofs::verify(&root, &ch, &proof).unwrap()
        });
        println!(
            "{s:>8} {:>12.1} {:>12.1} {:>14} {:>16} {:>16}",
            p.as_secs_f64() * 1e6,
            v.as_secs_f64() * 1e6,
            proof.encode().len(),
            proof.siblings.len(),
            usize::from(s) * 10,
        );
    }
    for (f, s) in [(0.01f64, 32i32), (0.1, 32), (0.5, 32), (0.01, 128)] {
        println!(
            "detection of a node missing {:>4.0}% of leaves with s={s}: {:.4}",
            f * 100.0,
            1.0 - (1.0 - f).powi(s)
        );
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    summary();
    outboard_summary();
}
