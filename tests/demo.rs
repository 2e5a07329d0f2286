//! End-to-end: the real `cairn` binary, run as a separate process.

#![allow(clippy::unwrap_used)] // test helpers: a failed setup should stop the test loudly

use std::process::Command;

fn cairn() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
}

#[test]
fn demo_loses_m_nodes_and_pulls_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let out = cairn()
        .args([
            "demo",
            "--size-mib",
            "6",
            "--nodes",
            "15",
            "--seed",
            "7",
            "--dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("6 of 6 files identical to the originals"),
        "{stdout}"
    );
    assert!(
        stdout.contains("0 failed;"),
        "first audit must pass everywhere: {stdout}"
    );
    assert!(
        stdout.contains("is corrupt; dropping it"),
        "scrub must catch the flipped bit: {stdout}"
    );
    // The pulled copy is on disk, byte for byte.
    let a = std::fs::read(dir.path().join("dataset/train.csv")).unwrap();
    let b = std::fs::read(dir.path().join("pulled/train.csv")).unwrap();
    assert_eq!(a, b);
}

#[test]
fn demo_refuses_too_few_nodes_with_a_clear_error() {
    let out = cairn().args(["demo", "--nodes", "5"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--nodes 5 is too few"), "{stderr}");
}
