//! A closing table for benchmarks: each operation timed in this process next to a
//! baseline (memcpy of the same buffer), printed as GB/s and as a ratio to the baseline.
//! Criterion's own output carries the statistics; this table carries the comparison.
//! Shared by the benches of several crates through `#[path]`.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// Rows of (name, bytes processed per call, median time per call).
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<(String, u64, Duration)>,
}

impl Table {
    /// Times `f` (median of `runs` calls after one warm-up) and records it.
    pub fn time(&mut self, name: &str, bytes: u64, runs: usize, mut f: impl FnMut()) -> Duration {
        f();
        let mut samples: Vec<Duration> = (0..runs.max(1))
            .map(|_| {
                let t = Instant::now();
                f();
                black_box(());
                t.elapsed()
            })
            .collect();
        samples.sort();
        let median = samples[samples.len() / 2];
        self.rows.push((name.to_string(), bytes, median));
        median
    }

    /// Prints the table; ratios are against the first row.
    pub fn print(&self, title: &str) {
        println!(
            "\n== {title} (median per call; ratio vs {}) ==",
            self.rows.first().map_or("-", |r| r.0.as_str())
        );
        let base = self.rows.first().map(|r| gbps(r.1, r.2)).unwrap_or(1.0);
        for (name, bytes, t) in &self.rows {
            let g = gbps(*bytes, *t);
            println!(
                "{name:<48} {:>10.1} us {g:>8.2} GB/s {:>7.3}x",
                t.as_secs_f64() * 1e6,
                g / base
            );
        }
    }
}

fn gbps(bytes: u64, t: Duration) -> f64 {
    bytes as f64 / t.as_secs_f64().max(1e-12) / 1e9
}

/// The baseline every throughput is compared with.
pub fn memcpy(src: &[u8], dst: &mut [u8]) {
    dst.copy_from_slice(black_box(src));
    black_box(dst);
}
