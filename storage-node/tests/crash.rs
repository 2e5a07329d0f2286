//! Crash consistency: a writer process is killed (SIGKILL) in the middle of writing pieces,
//! and the store it leaves behind must reopen consistent: every acknowledged piece intact,
//! no half-written piece visible, no orphan files, accounting equal to what is on disk.
//!
//! A killed process keeps what it wrote in the page cache, so this checks the ordering of
//! temp file, rename and index commit, not the fsyncs: surviving power loss rests on the
//! fsync policy documented in `store.rs` (file, then directory, then a synced batch).

#![allow(clippy::unwrap_used)] // test helpers: a failed setup should stop the test loudly

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use storage_node::local::synthetic as data;

use storage_node::{PieceId, PieceStore, StoreOptions};

const CHILD_ENV: &str = "CAIRN_CRASH_CHILD_DIR";

fn open(dir: &Path) -> (PieceStore, storage_node::OpenReport) {
    PieceStore::open(StoreOptions {
        dir: dir.to_path_buf(),
        capacity: None,
    })
    .unwrap()
}

/// The writer: stores pieces as fast as it can and prints each id once `put_piece` has
/// returned. Runs only as the child of the test below.
#[test]
#[ignore = "runs as the child process of store_survives_being_killed_mid_write"]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        panic!("{CHILD_ENV} not set: this test is only a child process");
    };
    let (store, _) = open(Path::new(&dir));
    let seed = u64::from(std::process::id()) << 20;
    let mut out = std::io::stdout().lock();
    for i in 0u64.. {
        let len = 1 + ((i * 7919) % 400_000) as usize;
        let bytes = data(len, seed + i);
        let id = PieceId::of(&bytes);
        store.put_piece(id, &bytes).unwrap();
        writeln!(out, "ACK {id}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn store_survives_being_killed_mid_write() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked: Vec<PieceId> = Vec::new();
    for round in 0..5u64 {
        let mut child = Command::new(&exe)
            .args([
                "crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let want = 10 + round * 7;
        let mut got = 0;
        while got < want {
            let line = lines.next().expect("child exited early").unwrap();
            if let Some(id) = line.strip_prefix("ACK ") {
                acked.push(id.parse().unwrap());
                got += 1;
            }
        }
        // Let it get into the middle of the next write, then kill it without warning.
        std::thread::sleep(Duration::from_millis(round * 3));
        child.kill().unwrap();
        child.wait().unwrap();
        for line in lines {
            if let Some(id) = line.unwrap().strip_prefix("ACK ") {
                acked.push(id.parse().unwrap());
            }
        }

        let (store, report) = open(dir.path());
        for id in &acked {
            let bytes = store
                .get_piece(id)
                .unwrap_or_else(|e| panic!("acknowledged piece {id} lost: {e}"));
            assert_eq!(PieceId::of(&bytes), *id);
        }
        assert!(
            report.lost.is_empty(),
            "index pointed at missing files: {:?}",
            report.lost
        );
        let scrub = store.scrub().unwrap();
        assert!(
            scrub.corrupt.is_empty(),
            "corrupt after crash: {:?}",
            scrub.corrupt
        );
        assert_eq!(scrub.checked, report.pieces);
        assert_eq!(scrub.bytes, store.stats().bytes);
        let (files, bytes) = files_under(&dir.path().join("pieces"));
        assert_eq!(
            (files, bytes),
            (report.pieces, report.bytes),
            "files on disk match the index"
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }
    assert!(acked.len() >= 10 + 17 + 24 + 31 + 38);
}

fn files_under(dir: &Path) -> (u64, u64) {
    let mut n = 0;
    let mut bytes = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            let (a, b) = files_under(&p);
            n += a;
            bytes += b;
        } else {
            n += 1;
            bytes += p.metadata().unwrap().len();
        }
    }
    (n, bytes)
}
