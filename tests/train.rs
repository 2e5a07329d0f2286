//! `cairn train` against a real local network: the same order and metrics as on local
//! files, a real dataset learned, holders killed mid-run, resumption, ranks, and data
//! that is truly gone.

mod common;

use std::path::{Path, PathBuf};

use common::{IRIS_COLUMNS, Net, text};
use serde_json::Value;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(name)
}

/// Iris on 6 nodes, pushed with small pieces so it spans several stripes.
fn iris_net() -> Net {
    let net = Net::up(6);
    net.push_iris();
    net
}

/// The training settings of these tests, besides [`IRIS_COLUMNS`].
const IRIS: &[&str] = &[
    "--epochs",
    "30",
    "--batch-size",
    "16",
    "--lr",
    "0.01",
    "--seed",
    "7",
    "--test-fraction",
    "0.2",
    "--shuffle-block",
    "512",
    "--shuffle-window",
    "64",
    "--record-order",
];

fn train(
    net: &Net,
    source: &[&str],
    extra: &[&str],
    metrics: &Path,
) -> (std::process::Output, Value) {
    let mut args = vec!["train"];
    args.extend_from_slice(source);
    args.extend_from_slice(IRIS_COLUMNS);
    args.extend_from_slice(IRIS);
    args.extend_from_slice(extra);
    args.extend(["--metrics-out", metrics.to_str().expect("utf-8")]);
    let o = net.cmd(&args);
    let m = std::fs::read(metrics)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    (o, m)
}

/// Per epoch: (loss bits, test accuracy).
fn curve(m: &Value) -> Vec<(u64, f64)> {
    m["epochs"]
        .as_array()
        .expect("epochs")
        .iter()
        .map(|e| {
            (
                e["train_loss"].as_f64().expect("loss").to_bits(),
                e["test_accuracy"].as_f64().expect("accuracy"),
            )
        })
        .collect()
}

#[test]
fn streamed_training_matches_local_files_and_learns_iris() {
    let net = iris_net();
    let dir = net.dir.path();
    let (o, remote) = train(&net, &["--dataset", "uci/iris"], &[], &dir.join("n.json"));
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("trained on uci/iris@"));
    let local_dir = data("iris");
    let (o, local) = train(
        &net,
        &["--local", local_dir.to_str().expect("utf-8")],
        &[],
        &dir.join("l.json"),
    );
    assert!(o.status.success(), "{}", text(&o));
    // The same samples in the same order, and so the same model, bit for bit.
    assert_eq!(remote["seen"], local["seen"]);
    assert_eq!(remote["seen"].as_array().expect("seen").len(), 30 * 119);
    assert_eq!(curve(&remote), curve(&local));
    // Iris: 3 species, 4 measurements; a small MLP separates them. 0.9 on the 31 held-out
    // flowers of this split is well below what it reaches (0.97) and far above chance.
    let acc = curve(&remote).last().expect("epochs").1;
    assert!(acc >= 0.9, "accuracy {acc}");
}

#[test]
fn a_disk_cache_serves_later_epochs_and_later_jobs_without_the_network() {
    let net = iris_net();
    let dir = net.dir.path();
    let disk = dir.join("disk-cache");
    let disk_s = disk.to_str().expect("utf-8");
    // No memory cache or prefetch buffer to speak of: whatever is not on disk comes from
    // the network.
    let extra = [
        "--epochs",
        "3",
        "--cache",
        "1",
        "--prefetch",
        "1",
        "--disk-cache",
        disk_s,
    ];
    let fetched = |m: &Value| -> Vec<u64> {
        m["epochs"]
            .as_array()
            .expect("epochs")
            .iter()
            .map(|e| e["bytes_fetched"].as_u64().expect("bytes"))
            .collect()
    };
    let from_network = |m: &Value| m["network"]["bytes_fetched"].as_u64().expect("network");
    let run = |out: &str| train(&net, &["--dataset", "uci/iris"], &extra, &dir.join(out));
    let (o, first) = run("a.json");
    assert!(o.status.success(), "{}", text(&o));
    // The job's first pass (statistics) fetches the data onto disk; its epochs read it
    // from there.
    assert!(from_network(&first) > 0);
    assert_eq!(fetched(&first), vec![0, 0, 0]);
    // A second job on the same version fetches nothing, and learns the same.
    let (o, second) = run("b.json");
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(from_network(&second), 0);
    assert_eq!(curve(&first), curve(&second));
    assert_eq!(first["seen"], second["seen"]);
    // A damaged entry is fetched again, not trusted.
    let entry = std::fs::read_dir(&disk)
        .expect("cache dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "stripe"))
        .expect("an entry");
    let mut b = std::fs::read(&entry).expect("read");
    let last = b.len() - 1;
    b[last] ^= 0x10;
    std::fs::write(&entry, &b).expect("write");
    let (o, third) = run("c.json");
    assert!(o.status.success(), "{}", text(&o));
    assert!(from_network(&third) > 0, "the damaged entry was used");
    assert_eq!(curve(&first), curve(&third));
}

#[test]
fn killing_m_holders_mid_run_does_not_stop_training() {
    let net = iris_net();
    let dir = net.dir.path();
    // No cache: every batch fetches from the holders, so the kills are felt.
    let metrics = dir.join("m.json");
    let mut args = vec!["train", "--dataset", "uci/iris"];
    args.extend_from_slice(IRIS_COLUMNS);
    args.extend_from_slice(IRIS);
    args.extend([
        "--epochs",
        "60",
        "--cache",
        "1",
        "--prefetch",
        "1",
        "--metrics-out",
    ]);
    args.push(metrics.to_str().expect("utf-8"));
    // A checkpoint every few batches tells when training is under way.
    let ck = dir.join("ck");
    args.extend([
        "--checkpoint-dir",
        ck.to_str().expect("utf-8"),
        "--checkpoint-every",
        "5",
    ]);
    let mut child = net.spawn(&args);
    common::wait_for(
        60,
        || ck.join("checkpoint.cairn").exists(),
        || "training never started".into(),
    );
    net.kill(4);
    net.kill(5);
    assert!(
        child.try_wait().expect("wait").is_none(),
        "training ended before the holders were killed: the test shows nothing"
    );
    let o = child.wait_with_output().expect("train ends");
    assert!(o.status.success(), "{}", text(&o));
    let m: Value =
        serde_json::from_slice(&std::fs::read(&metrics).expect("metrics")).expect("json");
    assert_eq!(m["epochs"].as_array().expect("epochs").len(), 60);
    assert!(curve(&m).last().expect("epochs").1 >= 0.9);
    // The dead holders were asked and routed around.
    let failed = m["network"]["failed_fetches"]
        .as_u64()
        .expect("network figures");
    assert!(failed > 0, "no fetch ever failed: {}", m["network"]);
}

#[test]
fn a_stopped_and_resumed_run_ends_as_an_uninterrupted_one() {
    let net = iris_net();
    let dir = net.dir.path();
    let ck = |n: &str| dir.join(n).to_str().expect("utf-8").to_string();
    let (o, whole) = train(
        &net,
        &["--dataset", "uci/iris"],
        &[
            "--checkpoint-dir",
            &ck("a"),
            "--checkpoint-every",
            "3",
            "--epochs",
            "4",
        ],
        &dir.join("a.json"),
    );
    assert!(o.status.success(), "{}", text(&o));
    // Half of epoch 1: 8 batches an epoch, stop after 12.
    let (o, _) = train(
        &net,
        &["--dataset", "uci/iris"],
        &[
            "--checkpoint-dir",
            &ck("b"),
            "--checkpoint-every",
            "3",
            "--epochs",
            "4",
            "--stop-after-batches",
            "12",
        ],
        &dir.join("b1.json"),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("stopped early"));
    let (o, resumed) = train(
        &net,
        &["--dataset", "uci/iris"],
        &[
            "--checkpoint-dir",
            &ck("b"),
            "--checkpoint-every",
            "3",
            "--epochs",
            "4",
            "--resume",
        ],
        &dir.join("b2.json"),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("resumed at epoch 1, sample 64"));
    assert_eq!(
        whole["seen"], resumed["seen"],
        "the sample sequence differs"
    );
    let (a, b) = (curve(&whole), curve(&resumed));
    assert_eq!(a[0], b[0]);
    assert_eq!(a[2..], b[2..], "the epochs after the resumption differ");
    // A checkpoint made with other settings is refused, not misused.
    let (o, _) = train(
        &net,
        &["--dataset", "uci/iris"],
        &[
            "--checkpoint-dir",
            &ck("b"),
            "--epochs",
            "4",
            "--resume",
            "--lr",
            "0.5",
        ],
        &dir.join("b3.json"),
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("other settings"), "{}", text(&o));
}

#[test]
fn ranks_cover_each_epoch_exactly_once() {
    let net = iris_net();
    let dir = net.dir.path();
    let mut all: Vec<u64> = Vec::new();
    for rank in 0..3 {
        let r = rank.to_string();
        let (o, m) = train(
            &net,
            &["--dataset", "uci/iris"],
            &["--epochs", "1", "--rank", &r, "--world-size", "3"],
            &dir.join(format!("r{rank}.json")),
        );
        assert!(o.status.success(), "{}", text(&o));
        let seen: Vec<u64> = m["seen"]
            .as_array()
            .expect("seen")
            .iter()
            .map(|v| v.as_u64().expect("id"))
            .collect();
        assert_eq!(seen.len(), 119 / 3, "rank {rank}");
        all.extend(seen);
    }
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n, "a sample went to two ranks");
}

#[test]
fn data_that_is_gone_stops_training_with_a_clear_error_and_keeps_the_checkpoint() {
    let net = iris_net();
    let dir = net.dir.path();
    let ck = dir.join("ck");
    let ck_s = ck.to_str().expect("utf-8").to_string();
    let metrics = dir.join("m.json");
    let mut args = vec!["train", "--dataset", "uci/iris"];
    args.extend_from_slice(IRIS_COLUMNS);
    args.extend_from_slice(IRIS);
    args.extend([
        "--epochs",
        "400",
        "--cache",
        "1",
        "--prefetch",
        "1",
        "--checkpoint-dir",
        &ck_s,
        "--checkpoint-every",
        "2",
        "--metrics-out",
    ]);
    args.push(metrics.to_str().expect("utf-8"));
    let child = net.spawn(&args);
    common::wait_for(
        60,
        || ck.join("checkpoint.cairn").exists(),
        || "no checkpoint".into(),
    );
    for i in [2, 3, 4] {
        net.kill(i);
    }
    let o = child.wait_with_output().expect("train ends");
    assert!(!o.status.success(), "training went on without its data");
    assert!(
        text(&o).contains("cannot read") && text(&o).contains("iris.csv"),
        "{}",
        text(&o)
    );
    let saved = std::fs::read(ck.join("checkpoint.cairn")).expect("checkpoint kept");
    assert!(saved.starts_with(b"CAIRNCK1"));
}

/// `trainer::synthetic::square_images` as IDX files: 8x8 images in 4 classes with a
/// known structure that a CNN must find. `gz` writes the images gzipped, as MNIST ships
/// them.
fn write_idx(dir: &Path, prefix: &str, n: u32, seed: u64, gz: bool) {
    let (img, lbl) = trainer::synthetic::square_images(n, seed);
    std::fs::create_dir_all(dir).expect("mkdir");
    let images = dir.join(format!("{prefix}-images-idx3-ubyte"));
    if gz {
        use std::io::Write;
        let f = std::fs::File::create(images.with_extension("gz")).expect("create");
        let mut e = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        e.write_all(&img).expect("gzip");
        e.finish().expect("gzip");
    } else {
        std::fs::write(images, &img).expect("write");
    }
    std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), &lbl).expect("write");
}

#[test]
fn a_cnn_streamed_from_idx_files_matches_local_files() {
    let net = Net::up(6);
    let src = net.dir.path().join("squares");
    write_idx(&src, "train", 800, 3, true);
    write_idx(&src, "t10k", 200, 4, false);
    let o = net.cmd(&[
        "dataset",
        "push",
        src.to_str().expect("utf-8"),
        "--name",
        "geo/squares",
        "--k",
        "4",
        "--m",
        "2",
        "--block-size",
        "4KiB",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let run = |source: &[&str], out: &str| {
        let metrics = net.dir.path().join(out);
        let mut args = vec!["train"];
        args.extend_from_slice(source);
        args.extend_from_slice(&[
            "--format",
            "idx",
            "--task",
            "classify",
            "--model",
            "cnn",
            "--epochs",
            "6",
            "--batch-size",
            "32",
            "--lr",
            "0.005",
            "--seed",
            "7",
            "--test-files",
            "t10k-*",
            "--shuffle-block",
            "4KiB",
            "--record-order",
            "--metrics-out",
            metrics.to_str().expect("utf-8"),
        ]);
        let o = net.cmd(&args);
        assert!(o.status.success(), "{}", text(&o));
        let m: Value =
            serde_json::from_slice(&std::fs::read(&metrics).expect("metrics")).expect("json");
        m
    };
    let remote = run(&["--dataset", "geo/squares"], "n.json");
    let local = run(&["--local", src.to_str().expect("utf-8")], "l.json");
    assert_eq!(remote["seen"], local["seen"]);
    assert_eq!(remote["seen"].as_array().expect("seen").len(), 6 * 800);
    assert_eq!(curve(&remote), curve(&local));
    assert!(
        remote["network"]["bytes_fetched"]
            .as_u64()
            .expect("fetched")
            > 0
    );
    // 4 classes (chance 0.25); the square is bright on dim noise, and a CNN that has
    // found it is near 1.0 on the 200 held-out images.
    let acc = curve(&remote).last().expect("epochs").1;
    assert!(acc >= 0.9, "accuracy {acc}");
}
