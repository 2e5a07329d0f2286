//! What the store's tests share: a store in a directory, and small signed manifests.

use std::fs;

use super::{PieceStore, StoreOptions};
use crate::{
    ErasureParams, PieceSlot,
    engine::{self, EncodeOptions, SourceFile},
    ids::PieceId,
    manifest::{Manifest, PublisherKey},
};

pub(super) fn open(dir: &std::path::Path) -> PieceStore {
    PieceStore::open(StoreOptions {
        dir: dir.to_path_buf(),
        capacity: None,
    })
    .expect("open")
    .0
}

/// A signed manifest of `name` with one file of `len` bytes per seed, coded 2-of-3.
pub(super) fn manifest(dir: &std::path::Path, name: &str, created: u64, seeds: &[u64]) -> Manifest {
    manifest_and_pieces(dir, name, created, seeds).0
}

/// [`manifest`], and its pieces with their places.
pub(super) fn manifest_and_pieces(
    dir: &std::path::Path,
    name: &str,
    created: u64,
    seeds: &[u64],
) -> (Manifest, Vec<(PieceSlot, PieceId, Vec<u8>)>) {
    let files: Vec<SourceFile> = seeds
        .iter()
        .map(|&s| {
            let disk = dir.join(format!("src-{s}"));
            fs::write(&disk, crate::local::synthetic(300, s)).expect("write");
            SourceFile {
                path: format!("f{s}").parse().expect("path"),
                disk,
                size: 300,
            }
        })
        .collect();
    let opts = EncodeOptions {
        name: name.parse().expect("name"),
        parent: None,
        license: "CC-BY-4.0 ".repeat(40),
        params: ErasureParams::new(2, 1, 64).expect("params"),
        created_unix: created,
    };
    let mut pieces = Vec::new();
    let m = engine::encode_files(
        &files,
        &opts,
        &key(),
        |slot, r, bytes| {
            pieces.push((slot, r.id, bytes.to_vec()));
            Ok(())
        },
        |_| {},
    )
    .expect("encode");
    (m, pieces)
}

/// The key the manifests above are signed with.
pub(super) fn key() -> PublisherKey {
    PublisherKey::from_secret_bytes(&[7; 32])
}
