//! Library tests of the whole engine: files on disk → pieces in real rocksdb-backed stores
//! → files again, with pieces lost and corrupted on the way.

use crate::local::synthetic as data;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::Path;

use proofs::Nonce;

use crate::engine::{self, EncodeOptions, PieceSlot, SourceFile};
use crate::erasure::{ErasureError, ErasureParams};
use crate::manifest::{Manifest, PublisherKey};
use crate::store::{PieceStore, Put, StoreError, StoreOptions};
use crate::{EngineError, PieceId};

fn opts(name: &str, params: ErasureParams) -> EncodeOptions {
    EncodeOptions {
        name: name.parse().unwrap(),
        parent: None,
        license: "CC0-1.0".into(),
        params,
        created_unix: 1_700_000_000,
    }
}

fn key() -> PublisherKey {
    PublisherKey::from_secret_bytes(&[1; 32])
}

fn open(dir: &Path, capacity: Option<u64>) -> PieceStore {
    PieceStore::open(StoreOptions {
        dir: dir.to_path_buf(),
        capacity,
    })
    .unwrap()
    .0
}

/// Encodes `files` into memory: the manifest and every piece by slot.
fn encode(
    files: &[(&str, Vec<u8>)],
    params: ErasureParams,
) -> (Manifest, HashMap<PieceId, Vec<u8>>, tempfile::TempDir) {
    let src = tempfile::tempdir().unwrap();
    for (path, bytes) in files {
        let p = src.path().join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, bytes).unwrap();
    }
    let scanned = engine::scan(src.path()).unwrap();
    let mut pieces = HashMap::new();
    let m = engine::encode_files(
        &scanned,
        &opts("alice/sizes", params),
        &key(),
        |_, r, b| {
            pieces.insert(r.id, b.to_vec());
            Ok(())
        },
        |_| {},
    )
    .unwrap();
    (m, pieces, src)
}

/// The block-edge sizes the engine must get right, for a given block size.
fn edge_sizes(block: usize, k: usize) -> Vec<usize> {
    vec![
        0,
        1,
        block - 1,
        block,
        block + 1,
        k * block - 1,
        k * block,
        k * block + 1,
        3 * (1 << 20) + 17,
    ]
}

#[test]
fn every_edge_size_round_trips_with_m_pieces_lost_in_three_patterns() {
    let block = 64 * 1024;
    let params = ErasureParams::new(10, 4, block as u32).unwrap();
    let sizes = edge_sizes(block, 10);
    let files: Vec<(String, Vec<u8>)> = sizes
        .iter()
        .enumerate()
        .map(|(i, &s)| (format!("f{i:02}-{s}.bin"), data(s, i as u64)))
        .collect();
    let named: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
    let (m, pieces, _src) = encode(&named, params);
    assert_eq!(m.files().len(), sizes.len());

    // Three loss patterns per stripe: m data pieces (forces decoding), m parity pieces, and
    // a pattern that rotates with the stripe number.
    for pattern in 0..3usize {
        for (file, (_, original)) in m.files().iter().zip(&files) {
            let mut out = Vec::new();
            engine::rebuild_file(
                &m,
                file,
                |stripe, index, r| {
                    let lost = match pattern {
                        0 => index < 4,
                        1 => index >= 10,
                        _ => (index + stripe * 3) % 14 < 4,
                    };
                    (!lost).then(|| pieces[&r.id].clone())
                },
                &mut out,
            )
            .unwrap();
            assert_eq!(&out, original, "{} pattern {pattern}", file.path);
        }
    }
}

#[test]
fn default_geometry_round_trips_a_multi_stripe_file() {
    let params = ErasureParams::default();
    let original = data(2 * 16 * (1 << 20) + 12345, 7);
    let (m, pieces, _src) = encode(&[("big.bin", original.clone())], params);
    let file = &m.files()[0];
    assert_eq!(file.stripes.len(), 3);
    assert_eq!(file.stripes[2].block_len, 772); // ceil(12345 / 16), already even
    let mut out = Vec::new();
    engine::rebuild_file(
        &m,
        file,
        |_, index, r| (index % 4 != 1).then(|| pieces[&r.id].clone()),
        &mut out,
    )
    .unwrap();
    assert_eq!(out, original);
}

#[test]
fn losing_more_than_m_is_a_clear_error_and_bad_pieces_are_not_used() {
    let params = ErasureParams::new(4, 2, 1024).unwrap();
    let original = data(10_000, 3);
    let (m, pieces, _src) = encode(&[("x", original.clone())], params);
    let file = &m.files()[0];

    let mut out = Vec::new();
    let err = engine::rebuild_file(
        &m,
        file,
        |_, i, r| (i >= 3).then(|| pieces[&r.id].clone()),
        &mut out,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::Erasure {
                stripe: 0,
                source: ErasureError::TooFewPieces { have: 3, need: 4 },
                ..
            }
        ),
        "{err}"
    );

    // A holder that serves wrong bytes for piece 0 is caught by the hash check; the
    // assembler falls back to parity and the file still comes back exact.
    let mut out = Vec::new();
    engine::rebuild_file(
        &m,
        file,
        |_, i, r| {
            let mut b = pieces[&r.id].clone();
            if i == 0 {
                b[0] ^= 1;
            }
            Some(b)
        },
        &mut out,
    )
    .unwrap();
    assert_eq!(out, original);
}

#[test]
fn restore_writes_whole_files_only() {
    let params = ErasureParams::new(4, 2, 1024).unwrap();
    let files = [
        ("README.md", b"# Card\nhello".to_vec()),
        ("a/b/c.csv", data(50_000, 1)),
        ("z", data(3, 2)),
    ];
    let (m, pieces, _src) = encode(&files, params);
    assert_eq!(m.body().card, "# Card\nhello");
    let dest = tempfile::tempdir().unwrap();
    engine::restore(&m, dest.path(), |r| pieces.get(&r.id).cloned(), |_| {}).unwrap();
    for (p, d) in &files {
        assert_eq!(&fs::read(dest.path().join(p)).unwrap(), d);
    }

    // With too few pieces of c.csv the restore fails and leaves no partial file behind.
    let dest2 = tempfile::tempdir().unwrap();
    let c = m.file("a/b/c.csv").unwrap();
    let gone: HashSet<PieceId> = c.stripes[1].pieces[..3].iter().map(|r| r.id).collect();
    let err = engine::restore(
        &m,
        dest2.path(),
        |r| (!gone.contains(&r.id)).then(|| pieces[&r.id].clone()),
        |_| {},
    );
    assert!(err.is_err());
    let leftovers: Vec<_> = walk(dest2.path());
    assert_eq!(leftovers.len(), 2, "{leftovers:?}");
    let partial = leftovers[0].clone();
    assert!(partial.starts_with(engine::PARTIAL_DIR), "{leftovers:?}");
    assert_eq!(
        leftovers,
        vec![partial.clone(), "README.md".to_string()],
        "only the completed file is visible; the partial one waits in {}",
        engine::PARTIAL_DIR
    );
    // The stripe before the gap was kept: a second run resumes from it and finishes.
    let kept = fs::metadata(dest2.path().join(&partial)).unwrap().len();
    assert_eq!(kept, c.stripes[0].data_len);
    let mut asked = 0;
    engine::restore(
        &m,
        dest2.path(),
        |r| {
            asked += 1;
            Some(pieces[&r.id].clone())
        },
        |_| {},
    )
    .unwrap();
    for (p, d) in &files {
        assert_eq!(&fs::read(dest2.path().join(p)).unwrap(), d);
    }
    assert!(!dest2.path().join(engine::PARTIAL_DIR).exists());
    let all: usize = m.files().iter().map(|f| f.stripes.len() * 4).sum();
    assert!(
        asked < all,
        "resumed, not started over: {asked} of {all} pieces asked"
    );
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn scan_rejects_paths_that_cannot_be_dataset_paths() {
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("ok.txt"), b"1").unwrap();
    fs::write(src.path().join("back\\slash"), b"2").unwrap();
    assert!(matches!(
        engine::scan(src.path()),
        Err(EngineError::BadPath { .. })
    ));
}

#[test]
fn store_puts_gets_and_refuses_wrong_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), None);
    let piece = data(5000, 1);
    let id = PieceId::of(&piece);
    assert_eq!(store.put_piece(id, &piece).unwrap(), Put::Stored);
    assert_eq!(store.put_piece(id, &piece).unwrap(), Put::AlreadyHeld);
    assert_eq!(store.get_piece(&id).unwrap(), piece);
    assert!(matches!(
        store.put_piece(PieceId::of(b"other"), &piece),
        Err(StoreError::HashMismatch { .. })
    ));
    assert!(matches!(
        store.get_piece(&PieceId::of(b"nope")),
        Err(StoreError::PieceNotFound(_))
    ));
    let stats = store.stats();
    assert_eq!((stats.pieces, stats.bytes), (1, 5000));
    assert!(store.remove_piece(&id).unwrap());
    assert!(!store.has_piece(&id).unwrap());
    assert_eq!(store.stats().bytes, 0);
}

#[test]
fn capacity_is_enforced_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Some(10_000));
    let a = data(6000, 1);
    let b = data(6000, 2);
    store.put_piece(PieceId::of(&a), &a).unwrap();
    // A piece takes its own bytes and room for its outboard (6 chunks: 11 values).
    let room = 6000 + proofs::outboard_len(6000);
    assert_eq!(room, 6000 + 11 * 32);
    assert_eq!(store.stats().used, room);
    let err = store.put_piece(PieceId::of(&b), &b).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::CapacityExceeded {
                needed,
                free,
                capacity: 10_000
            } if needed == room && free == 10_000 - room
        ),
        "{err}"
    );
    assert!(err.to_string().contains("capacity"));
    assert!(!store.has_piece(&PieceId::of(&b)).unwrap());
    // Nothing was left behind by the refused write.
    assert!(
        fs::read_dir(dir.path().join("tmp"))
            .unwrap()
            .next()
            .is_none()
    );
    // Freeing space makes room again; a reopened store counts what it holds.
    drop(store);
    let store = open(dir.path(), Some(10_000));
    assert_eq!((store.stats().bytes, store.stats().used), (6000, room));
    store.remove_piece(&PieceId::of(&a)).unwrap();
    store.put_piece(PieceId::of(&b), &b).unwrap();
}

#[test]
fn scrub_and_prove_catch_corruption_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), None);
    let params = ErasureParams::new(4, 2, 4096).unwrap();
    let (m, pieces, _src) = encode(&[("f", data(40_000, 5))], params);
    for (id, bytes) in &pieces {
        store.put_piece(*id, bytes).unwrap();
    }
    // Every stored piece proves against the root the manifest recorded.
    for r in m.pieces() {
        let c = r.challenge(Nonce(*r.id.as_bytes()));
        let proof = store.prove(&c).unwrap().proof;
        proofs::verify(&r.root(), &c, &proof).unwrap();
    }
    assert!(store.scrub().unwrap().corrupt.is_empty());

    // Flip one byte in one piece file.
    let victim = m.files()[0].stripes[0].pieces[2];
    let h = victim.id.to_string();
    let path = dir
        .path()
        .join("pieces")
        .join(&h[..2])
        .join(&h[2..4])
        .join(&h);
    let mut bytes = fs::read(&path).unwrap();
    bytes[100] ^= 0x40;
    fs::write(&path, bytes).unwrap();

    let report = store.scrub().unwrap();
    assert_eq!(report.corrupt, vec![victim.id]);
    assert_eq!(report.checked, pieces.len() as u64);
    assert!(matches!(
        store.get_piece(&victim.id),
        Err(StoreError::Corrupt { .. })
    ));
    let c = victim.challenge(Nonce([3; 32]));
    assert!(matches!(store.prove(&c), Err(StoreError::Corrupt { .. })));
}

#[test]
fn challenges_read_the_outboard_and_a_lost_or_damaged_one_is_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), None);
    let piece = data(1 << 20, 7);
    let id = PieceId::of(&piece);
    store.put_piece(id, &piece).unwrap();
    let h = id.to_string();
    let ob = dir
        .path()
        .join("pieces")
        .join(&h[..2])
        .join(&h[2..4])
        .join(format!("{h}.ob"));
    assert!(
        !ob.exists(),
        "built at the first challenge, not when stored"
    );
    let proves = |store: &PieceStore, n: u8| {
        let c = proofs::Challenge::new(proofs::Hash(id.0), piece.len() as u64, Nonce([n; 32]));
        let p = store.prove(&c).unwrap();
        proofs::verify(&proofs::Root(id.0), &c, &p.proof).unwrap();
        p.disk_bytes
    };
    // The first challenge reads the piece and writes its outboard; the next read 32
    // leaves of 1 KiB and the values on their paths, not the 1 MiB piece.
    assert_eq!(proves(&store, 0), piece.len() as u64);
    assert_eq!(fs::read(&ob).unwrap(), proofs::outboard(&piece));
    let read = proves(&store, 1);
    assert!(read <= 64 << 10, "{read} bytes read");
    // Lost: the next challenge reads the whole piece and writes it again.
    fs::remove_file(&ob).unwrap();
    assert_eq!(proves(&store, 2), piece.len() as u64);
    assert!(proves(&store, 3) <= 64 << 10);
    // Damaged: the proof made from it fails its check, the whole piece answers, and the
    // outboard is written again.
    let mut bad = fs::read(&ob).unwrap();
    for b in bad.iter_mut().skip(proofs::NODE_LEN) {
        *b ^= 1;
    }
    fs::write(&ob, &bad).unwrap();
    assert_eq!(proves(&store, 4), piece.len() as u64);
    assert_eq!(fs::read(&ob).unwrap(), proofs::outboard(&piece));
    // A piece's outboard stays over a reopen; it leaves with its piece, and one a crash
    // left behind is collected on open.
    drop(store);
    let store = open(dir.path(), None);
    assert!(ob.exists());
    store.remove_piece(&id).unwrap();
    assert!(!ob.exists());
    fs::write(&ob, b"left behind").unwrap();
    drop(store);
    let (_store, report) = PieceStore::open(StoreOptions {
        dir: dir.path().to_path_buf(),
        capacity: None,
    })
    .unwrap();
    assert_eq!(report.orphans_removed, 1);
    assert!(!ob.exists());
}

#[test]
fn reopen_keeps_pieces_and_drops_what_a_crash_left() {
    let dir = tempfile::tempdir().unwrap();
    let piece = data(3000, 9);
    let id = PieceId::of(&piece);
    {
        let store = open(dir.path(), None);
        store.put_piece(id, &piece).unwrap();
    }
    // A half-written temp file and an orphan piece file (renamed, never indexed).
    fs::write(dir.path().join("tmp").join("junk.123"), b"partial").unwrap();
    let orphan = data(100, 10);
    let oh = PieceId::of(&orphan).to_string();
    let odir = dir.path().join("pieces").join(&oh[..2]).join(&oh[2..4]);
    fs::create_dir_all(&odir).unwrap();
    fs::write(odir.join(&oh), &orphan).unwrap();

    let (store, report) = PieceStore::open(StoreOptions {
        dir: dir.path().to_path_buf(),
        capacity: None,
    })
    .unwrap();
    assert_eq!(
        (report.pieces, report.temp_removed, report.orphans_removed),
        (1, 1, 1)
    );
    assert_eq!(store.get_piece(&id).unwrap(), piece);
    assert!(!odir.join(&oh).exists());

    // An indexed piece whose file vanished is reported lost and dropped from the index.
    drop(store);
    let h = id.to_string();
    fs::remove_file(
        dir.path()
            .join("pieces")
            .join(&h[..2])
            .join(&h[2..4])
            .join(&h),
    )
    .unwrap();
    let (store, report) = PieceStore::open(StoreOptions {
        dir: dir.path().to_path_buf(),
        capacity: None,
    })
    .unwrap();
    assert_eq!(report.lost, vec![id]);
    assert!(!store.has_piece(&id).unwrap());
    assert_eq!(store.stats().bytes, 0);

    // A second process cannot open the same data dir while this one has it.
    let second = PieceStore::open(StoreOptions {
        dir: dir.path().to_path_buf(),
        capacity: None,
    });
    assert!(matches!(second, Err(StoreError::Db(_))));
}

#[test]
fn each_publisher_is_held_to_a_quota_of_versions_and_manifest_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path(), None);
    store.set_quota(3, 1 << 20);
    let params = ErasureParams::new(2, 1, 64).unwrap();
    let version = |name: &str, created: u64, k: &PublisherKey| {
        let src = dir
            .path()
            .join(format!("{}-{created}", name.replace('/', "-")));
        fs::write(&src, data(10, created)).unwrap();
        let files = vec![SourceFile {
            path: "a".parse().unwrap(),
            disk: src,
            size: 10,
        }];
        let mut o = opts(name, params);
        o.created_unix = created;
        engine::encode_files(&files, &o, k, |_: PieceSlot, _, _| Ok(()), |_| {}).unwrap()
    };
    let (alice, bob) = (key(), PublisherKey::from_secret_bytes(&[77; 32]));
    // Versions under any of its names count: the quota is the publisher's.
    for (i, name) in ["alice/a", "alice/b", "alice/a"].iter().enumerate() {
        assert!(
            store
                .put_manifest(&version(name, 100 + i as u64, &alice))
                .unwrap()
        );
    }
    let over = store.put_manifest(&version("alice/c", 200, &alice));
    assert!(
        matches!(over, Err(StoreError::Quota { versions: 3, .. })),
        "{over:?}"
    );
    assert!(
        store.resolve(&"alice/c".parse().unwrap(), None).is_err(),
        "nothing visible"
    );
    // Another publisher has a quota of its own; the count survives a reopen.
    assert!(store.put_manifest(&version("bob/x", 300, &bob)).unwrap());
    drop(store);
    let store = open(dir.path(), None);
    assert_eq!(store.publisher_usage(&alice.id()).unwrap().0, 3);
    assert_eq!(store.publisher_usage(&bob.id()).unwrap().0, 1);
}

#[test]
fn manifests_are_owned_by_their_first_publisher() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), None);
    let params = ErasureParams::new(2, 1, 64).unwrap();
    let body = |created, parent| {
        let files = vec![SourceFile {
            path: "a".parse().unwrap(),
            disk: dir.path().join("a-src"),
            size: 10,
        }];
        fs::write(dir.path().join("a-src"), data(10, created)).unwrap();
        let mut o = opts("alice/ds", params);
        o.created_unix = created;
        o.parent = parent;
        (files, o)
    };
    let (f1, o1) = body(100, None);
    let v1 = engine::encode_files(&f1, &o1, &key(), |_: PieceSlot, _, _| Ok(()), |_| {}).unwrap();
    assert!(store.put_manifest(&v1).unwrap());
    assert!(
        !store.put_manifest(&v1).unwrap(),
        "storing twice is a no-op"
    );

    let (f2, o2) = body(200, Some(v1.version()));
    let v2 = engine::encode_files(&f2, &o2, &key(), |_: PieceSlot, _, _| Ok(()), |_| {}).unwrap();
    store.put_manifest(&v2).unwrap();

    let mallory = PublisherKey::from_secret_bytes(&[66; 32]);
    let (f3, o3) = body(300, Some(v2.version()));
    let forged =
        engine::encode_files(&f3, &o3, &mallory, |_: PieceSlot, _, _| Ok(()), |_| {}).unwrap();
    assert!(matches!(
        store.put_manifest(&forged),
        Err(StoreError::NotOwner { .. })
    ));

    let name = "alice/ds".parse().unwrap();
    assert_eq!(store.resolve(&name, None).unwrap().version(), v2.version());
    assert_eq!(store.resolve(&name, Some(&v1.version())).unwrap(), v1);
    assert_eq!(
        store.versions(&name).unwrap(),
        vec![v1.version(), v2.version()]
    );
    assert_eq!(store.datasets().unwrap().len(), 1);
    assert!(matches!(
        store.resolve(&"bob/none".parse().unwrap(), None),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.resolve(&name, Some(&forged.version())),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn concurrent_puts_and_removes_of_the_same_pieces_stay_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Some(1 << 20));
    let pieces: Vec<Vec<u8>> = (0..6).map(|i| data(20_000 + i * 1000, i as u64)).collect();
    std::thread::scope(|s| {
        for t in 0..4 {
            let store = &store;
            let pieces = &pieces;
            s.spawn(move || {
                for round in 0..60 {
                    let p = &pieces[(t + round) % pieces.len()];
                    let id = PieceId::of(p);
                    let r = if (t + round) % 3 == 0 {
                        store.remove_piece(&id).map(|_| ())
                    } else {
                        store.put_piece(id, p).map(|_| ())
                    };
                    match r {
                        Ok(()) | Err(StoreError::Busy(_)) => {}
                        Err(e) => panic!("unexpected error: {e}"),
                    }
                }
            });
        }
    });
    // The counters match the index, and the index matches the files, live and after reopen.
    let held: Vec<PieceId> = store.piece_ids().unwrap();
    let bytes: u64 = held
        .iter()
        .map(|id| store.get_piece(id).unwrap().len() as u64)
        .sum();
    assert_eq!(store.stats().pieces, held.len() as u64);
    assert_eq!(store.stats().bytes, bytes);
    drop(store);
    let (store, report) = PieceStore::open(StoreOptions {
        dir: dir.path().to_path_buf(),
        capacity: None,
    })
    .unwrap();
    assert_eq!((report.pieces, report.bytes), (held.len() as u64, bytes));
    assert!(
        report.lost.is_empty() && report.orphans_removed == 0,
        "{report:?}"
    );
    assert_eq!(store.piece_ids().unwrap(), held);
}

#[test]
fn audit_records_and_repair_jobs_survive_reopen_and_prune_oldest_first() {
    use crate::audit::{AuditRecord, Outcome};
    use crate::ids::{NodeId, StripeId, VersionId};
    use crate::store::RepairJob;
    let dir = tempfile::tempdir().unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&[4; 32]);
    let records: Vec<_> = (0..10u64)
        .map(|t| {
            AuditRecord {
                auditor: NodeId(key.verifying_key().to_bytes()),
                holder: NodeId([1; 32]),
                piece: PieceId([2; 32]),
                len: 10,
                round: t,
                time_unix: 1000 - t,
                outcome: Outcome::Pass,
            }
            .sign(&key)
        })
        .collect();
    let job = RepairJob {
        stripe: StripeId([3; 32]),
        version: VersionId([4; 32]),
        file: 1,
        index: 7,
    };
    {
        let s = open(dir.path(), None);
        s.put_audit_records(&records).unwrap();
        s.put_repair_job(&job).unwrap();
    }
    let s = open(dir.path(), None);
    let back = s.audit_records().unwrap();
    assert_eq!(back.len(), 10);
    assert!(
        back.windows(2)
            .all(|w| w[0].record.time_unix <= w[1].record.time_unix)
    );
    assert_eq!(s.prune_audit_records(4).unwrap(), 6);
    let kept = s.audit_records().unwrap();
    assert_eq!(kept.len(), 4);
    assert_eq!(kept[0].record.time_unix, 997, "the newest are kept");
    assert_eq!(s.repair_jobs().unwrap(), vec![job]);
    s.remove_repair_job(&job.stripe).unwrap();
    assert!(s.repair_jobs().unwrap().is_empty());
}
