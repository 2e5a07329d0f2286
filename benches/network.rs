//! End-to-end throughput of push and pull through a 6-node local network, beside a plain
//! local copy of the same bytes measured in the same run.
//!
//! `cargo bench --bench network` (256 MiB; `CAIRN_BENCH_MIB=64` for a smaller run).
//! Every figure is the wall time of the real `cairn` CLI process against real node
//! processes on 127.0.0.1: encoding, placement, transfer, verification, fsyncs and all.
//! The baseline copies the same files with `std::fs::copy` and fsyncs each, as pull does.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

const FILES: usize = 8;

fn cairn(args: &[&str], envs: &[(&str, &str)]) -> Duration {
    let t = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .expect("cairn runs");
    let took = t.elapsed();
    assert!(
        o.status.success(),
        "cairn {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    took
}

fn copy_dir(src: &Path, dst: &Path) -> Duration {
    std::fs::create_dir_all(dst).expect("mkdir");
    let t = Instant::now();
    for e in std::fs::read_dir(src).expect("ls") {
        let e = e.expect("entry");
        let to = dst.join(e.file_name());
        std::fs::copy(e.path(), &to).expect("copy");
        std::fs::File::open(&to)
            .and_then(|f| f.sync_all())
            .expect("fsync");
    }
    t.elapsed()
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this with no flag: skip.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let mib: usize = std::env::var("CAIRN_BENCH_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    let total = (mib << 20) as u64;
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    for i in 0..FILES {
        let data = storage_node::local::synthetic((mib << 20) / FILES, i as u64 + 1);
        std::fs::write(src.join(format!("shard-{i:03}.bin")), data).expect("write");
    }
    let net = dir.path().join("net");
    let cfg = dir.path().join("cfg");
    cairn(
        &[
            "network",
            "up",
            "--nodes",
            "6",
            "--dir",
            net.to_str().expect("utf-8"),
        ],
        &[],
    );
    let bytes = std::fs::read(net.join("network.json")).expect("network.json");
    let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
    let peer = v["nodes"][0]["peer"].as_str().expect("peer").to_string();
    let env = [
        ("CAIRN_PEER", peer.as_str()),
        ("CAIRN_CONFIG_DIR", cfg.to_str().expect("utf-8")),
    ];

    let copy = copy_dir(&src, &dir.path().join("copy"));
    let src_s = src.to_str().expect("utf-8");
    let push_args = [
        "dataset",
        "push",
        src_s,
        "--name",
        "bench/data",
        "--k",
        "4",
        "--m",
        "2",
    ];
    let push = cairn(&push_args, &env);
    let out = dir.path().join("out");
    let pull = cairn(
        &[
            "dataset",
            "pull",
            "bench/data",
            out.to_str().expect("utf-8"),
        ],
        &env,
    );
    let repush = cairn(&push_args, &env);
    cairn(
        &["network", "down", "--dir", net.to_str().expect("utf-8")],
        &[],
    );
    for i in 0..FILES {
        let name = format!("shard-{i:03}.bin");
        assert!(
            std::fs::read(src.join(&name)).expect("src")
                == std::fs::read(out.join(&name)).expect("out"),
            "{name} differs after the pull"
        );
    }

    let mbs = |d: Duration| total as f64 / d.as_secs_f64() / 1e6;
    println!(
        "\nnetwork: {mib} MiB in {FILES} files, 6 nodes on 127.0.0.1, k=4 m=2 (1.5x bytes stored)"
    );
    println!(
        "{:<34} {:>10} {:>10} {:>12}",
        "measure", "seconds", "MB/s", "vs copy"
    );
    println!(
        "{:<34} {:>10.2} {:>10.1} {:>11.2}x",
        "local copy + fsync (baseline)",
        copy.as_secs_f64(),
        mbs(copy),
        1.0
    );
    for (name, d) in [
        ("push (encode, place, transfer)", push),
        ("pull (fetch k of n, decode, write)", pull),
        ("repeat push (all pieces held)", repush),
    ] {
        println!(
            "{name:<34} {:>10.2} {:>10.1} {:>11.2}x",
            d.as_secs_f64(),
            mbs(d),
            mbs(d) / mbs(copy)
        );
    }
}
