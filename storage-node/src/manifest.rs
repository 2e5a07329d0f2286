//! Manifests: the signed, content-addressed description of one dataset version.
//!
//! A manifest lists the version's files (path, size, BLAKE3 hash), the dataset card and
//! license, the erasure parameters, and for every stripe of every file the BLAKE3 hash of
//! each of its `k + m` pieces. The hash is also the piece's Merkle commitment: BLAKE3 is a
//! tree over 1 KiB chunks, and proofs of storage are checked against it (see `proofs`). The publisher signs it with ed25519; its
//! [`VersionId`] is the BLAKE3 hash of the encoded, signed bytes.
//!
//! **A [`Manifest`] value is always verified**: the only ways to get one are
//! [`Manifest::sign`] (which validates the body first) and [`Manifest::decode`] (which
//! checks the encoding, every internal invariant and the signature). Code holding a
//! `Manifest` never re-checks it.
//!
//! # Encoding (version 1)
//!
//! Little-endian, via [`proofs::codec`]: a version byte, the body (name, parent, creation
//! time, card, license, `k`, `m`, block size, files with their stripes and pieces, publisher
//! key), then a 64-byte signature over `"cairn-manifest-v1\0" || everything before it`.
//! Pieces per stripe are not counted on the wire: there are always `k + m`, each
//! `block_len` bytes long.

use std::collections::HashSet;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use proofs::Root;
use proofs::codec::{DecodeError, Reader, Writer};
use thiserror::Error;

use crate::erasure::{ErasureError, ErasureParams};
use crate::ids::{DatasetName, IdError, MAX_PATH_LEN, PieceId, PublisherId, RelPath, VersionId};

const FORMAT_VERSION: u8 = 1;
const SIGNING_DOMAIN: &[u8] = b"cairn-manifest-v1\0";

/// Largest encoded manifest: 256 MiB (about 3 TB of data at the default geometry).
pub const MAX_MANIFEST_LEN: usize = 256 << 20;
/// Largest dataset card (README), in bytes.
pub const MAX_CARD_LEN: usize = 1 << 20;
/// Largest license text, in bytes.
pub const MAX_LICENSE_LEN: usize = 64 << 10;
/// Most files in one version.
pub const MAX_FILES: usize = 1_000_000;

/// Why a manifest was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The bytes are not a well-formed manifest.
    #[error("malformed manifest: {0}")]
    Decode(#[from] DecodeError),
    /// A name or path is invalid.
    #[error("manifest holds an {0}")]
    Id(#[from] IdError),
    /// The erasure parameters are invalid.
    #[error("manifest erasure parameters: {0}")]
    Erasure(#[from] ErasureError),
    /// The manifest is well formed but inconsistent.
    #[error("inconsistent manifest: {0}")]
    Inconsistent(String),
    /// The signature does not match the publisher key and contents.
    #[error("manifest signature does not verify against its publisher key")]
    BadSignature,
}

/// The secret key a publisher signs manifests with.
pub struct PublisherKey(SigningKey);

impl std::fmt::Debug for PublisherKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublisherKey({:?})", self.id())
    }
}

impl PublisherKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)?;
        Ok(Self::from_secret_bytes(&secret))
    }

    /// The key with this 32-byte secret.
    pub fn from_secret_bytes(secret: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(secret))
    }

    /// The 32-byte secret, for saving.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Signs `msg` (which carries its own context string) with this key.
    pub(crate) fn sign_bytes(&self, msg: &[u8]) -> [u8; 64] {
        self.0.sign(msg).to_bytes()
    }

    /// The public identity.
    pub fn id(&self) -> PublisherId {
        PublisherId(self.0.verifying_key().to_bytes())
    }
}

/// One piece of a stripe: where to find it and what to check it against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PieceRef {
    /// BLAKE3 hash of the piece: its address, its read-path check and its Merkle commitment.
    pub id: PieceId,
    /// Its length: the stripe's block length (stored once per stripe on the wire).
    pub len: u32,
}

impl PieceRef {
    /// The commitment proofs of storage are verified against.
    pub fn root(&self) -> Root {
        Root(self.id.0)
    }

    /// A challenge for this piece with `nonce` and the default sample count.
    pub fn challenge(&self, nonce: proofs::Nonce) -> proofs::Challenge {
        proofs::Challenge::new(self.id.to_proofs_hash(), u64::from(self.len), nonce)
    }
}

/// One stripe of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stripe {
    /// File bytes in this stripe.
    pub data_len: u64,
    /// Bytes per piece.
    pub block_len: u32,
    /// The `k` data pieces, then the `m` parity pieces.
    pub pieces: Vec<PieceRef>,
}

/// One file of a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Path inside the dataset.
    pub path: RelPath,
    /// Size in bytes.
    pub size: u64,
    /// BLAKE3 hash of the whole file.
    pub hash: [u8; 32],
    /// Its stripes, in file order.
    pub stripes: Vec<Stripe>,
}

/// Everything a publisher signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestBody {
    /// `owner/name`.
    pub name: DatasetName,
    /// The version this one follows, if any.
    pub parent: Option<VersionId>,
    /// Publication time, seconds since the Unix epoch.
    pub created_unix: u64,
    /// The dataset card (Markdown).
    pub card: String,
    /// The license text or SPDX identifier.
    pub license: String,
    /// Erasure parameters of every stripe.
    pub params: ErasureParams,
    /// Files, sorted by path.
    pub files: Vec<FileEntry>,
}

impl ManifestBody {
    /// Checks every invariant a stored manifest must hold.
    pub fn validate(&self) -> Result<(), ManifestError> {
        let inconsistent = |s: String| Err(ManifestError::Inconsistent(s));
        if self.card.len() > MAX_CARD_LEN {
            return inconsistent(format!(
                "card is {} bytes, limit {MAX_CARD_LEN}",
                self.card.len()
            ));
        }
        if self.license.len() > MAX_LICENSE_LEN {
            return inconsistent(format!(
                "license is {} bytes, limit {MAX_LICENSE_LEN}",
                self.license.len()
            ));
        }
        if self.files.len() > MAX_FILES {
            return inconsistent(format!("{} files, limit {MAX_FILES}", self.files.len()));
        }
        for w in self.files.windows(2) {
            if w[0].path >= w[1].path {
                return inconsistent(format!("files not sorted or duplicated at {}", w[1].path));
            }
        }
        let paths: HashSet<&str> = self.files.iter().map(|f| f.path.as_str()).collect();
        for f in &self.files {
            let mut prefix_end = 0;
            for c in f.path.components() {
                prefix_end += c.len();
                if prefix_end < f.path.as_str().len()
                    && paths.contains(&f.path.as_str()[..prefix_end])
                {
                    return inconsistent(format!(
                        "{} is both a file and a directory",
                        &f.path.as_str()[..prefix_end]
                    ));
                }
                prefix_end += 1;
            }
            let mut layout = self.params.layout(f.size);
            for (i, s) in f.stripes.iter().enumerate() {
                let Some(l) = layout.next() else {
                    return inconsistent(format!("{}: more stripes than its size allows", f.path));
                };
                if s.data_len != l.data_len || s.block_len != l.block_len {
                    return inconsistent(format!(
                        "{}: stripe {i} geometry does not match the layout",
                        f.path
                    ));
                }
                if s.pieces.len() != self.params.n() {
                    return inconsistent(format!(
                        "{}: stripe {i} has {} pieces, not k + m",
                        f.path,
                        s.pieces.len()
                    ));
                }
                if s.pieces.iter().any(|p| p.len != s.block_len) {
                    return inconsistent(format!(
                        "{}: stripe {i} has a piece whose length is not the block length",
                        f.path
                    ));
                }
            }
            if layout.next().is_some() {
                return inconsistent(format!("{}: fewer stripes than its size needs", f.path));
            }
        }
        Ok(())
    }

    fn encode_into(&self, w: &mut Writer, publisher: &PublisherId) {
        w.u8(FORMAT_VERSION);
        w.str(self.name.as_str());
        match &self.parent {
            Some(p) => {
                w.u8(1);
                w.raw(p.as_bytes());
            }
            None => w.u8(0),
        }
        w.u64(self.created_unix);
        w.str(&self.card);
        w.str(&self.license);
        w.u16(self.params.k());
        w.u16(self.params.m());
        w.u32(self.params.block_size());
        w.u32(self.files.len() as u32);
        for f in &self.files {
            w.str(f.path.as_str());
            w.u64(f.size);
            w.raw(&f.hash);
            w.u32(f.stripes.len() as u32);
            for s in &f.stripes {
                w.u64(s.data_len);
                w.u32(s.block_len);
                for p in &s.pieces {
                    w.raw(p.id.as_bytes());
                }
            }
        }
        w.raw(publisher.as_bytes());
    }

    fn decode_from(r: &mut Reader<'_>) -> Result<(Self, PublisherId), ManifestError> {
        r.version("manifest", FORMAT_VERSION)?;
        let name = r.str(2 * 64 + 1, "dataset name")?.parse()?;
        let parent = match r.u8("parent flag")? {
            0 => None,
            1 => Some(VersionId(r.array("parent")?)),
            _ => {
                return Err(DecodeError::Invalid {
                    field: "parent flag",
                    reason: "must be 0 or 1",
                }
                .into());
            }
        };
        let created_unix = r.u64("creation time")?;
        let card = r.str(MAX_CARD_LEN, "card")?.to_string();
        let license = r.str(MAX_LICENSE_LEN, "license")?.to_string();
        let params = ErasureParams::new(r.u16("k")?, r.u16("m")?, r.u32("block size")?)?;
        let piece_bytes = 32 * params.n();
        let n_files = r.count(MAX_FILES, 4 + 8 + 32 + 4, "file count")?;
        let mut files = Vec::with_capacity(n_files);
        for _ in 0..n_files {
            let path = r.str(MAX_PATH_LEN, "path")?.parse()?;
            let size = r.u64("file size")?;
            let hash = r.array("file hash")?;
            let n_stripes = r.count(usize::MAX, 12 + piece_bytes, "stripe count")?;
            let mut stripes = Vec::with_capacity(n_stripes);
            for _ in 0..n_stripes {
                let data_len = r.u64("stripe length")?;
                let block_len = r.u32("block length")?;
                let mut pieces = Vec::with_capacity(params.n());
                for _ in 0..params.n() {
                    pieces.push(PieceRef {
                        id: PieceId(r.array("piece id")?),
                        len: block_len,
                    });
                }
                stripes.push(Stripe {
                    data_len,
                    block_len,
                    pieces,
                });
            }
            files.push(FileEntry {
                path,
                size,
                hash,
                stripes,
            });
        }
        let publisher = PublisherId(r.array("publisher")?);
        let body = Self {
            name,
            parent,
            created_unix,
            card,
            license,
            params,
            files,
        };
        Ok((body, publisher))
    }
}

/// A verified, signed manifest.
#[derive(Clone, PartialEq, Eq)]
pub struct Manifest {
    body: ManifestBody,
    publisher: PublisherId,
    bytes: Vec<u8>,
    version: VersionId,
}

impl std::fmt::Debug for Manifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manifest")
            .field("name", &self.body.name)
            .field("version", &self.version)
            .field("files", &self.body.files.len())
            .finish()
    }
}

impl Manifest {
    /// Validates `body` and signs it.
    pub fn sign(body: ManifestBody, key: &PublisherKey) -> Result<Self, ManifestError> {
        body.validate()?;
        let publisher = key.id();
        let mut w = Writer::new();
        body.encode_into(&mut w, &publisher);
        let mut bytes = w.into_bytes();
        if bytes.len() + 64 > MAX_MANIFEST_LEN {
            return Err(ManifestError::Inconsistent(format!(
                "manifest would be {} bytes, limit {MAX_MANIFEST_LEN}",
                bytes.len() + 64
            )));
        }
        let sig = key.0.sign(&signing_message(&bytes));
        bytes.extend_from_slice(&sig.to_bytes());
        let version = VersionId(*blake3::hash(&bytes).as_bytes());
        Ok(Self {
            body,
            publisher,
            bytes,
            version,
        })
    }

    /// Decodes and fully verifies a manifest from untrusted bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, ManifestError> {
        if bytes.len() > MAX_MANIFEST_LEN {
            return Err(DecodeError::TooLong {
                field: "manifest",
                len: bytes.len() as u64,
                max: MAX_MANIFEST_LEN as u64,
            }
            .into());
        }
        let signed_len = bytes
            .len()
            .checked_sub(64)
            .ok_or(DecodeError::Truncated { field: "signature" })?;
        let mut r = Reader::new(&bytes[..signed_len]);
        let (body, publisher) = ManifestBody::decode_from(&mut r)?;
        r.finish()?;
        let m = Self {
            body,
            publisher,
            bytes: bytes.to_vec(),
            version: VersionId(*blake3::hash(bytes).as_bytes()),
        };
        m.verify()?;
        Ok(m)
    }

    /// Re-checks the signature and every invariant.
    pub fn verify(&self) -> Result<(), ManifestError> {
        self.body.validate()?;
        let (signed, sig) = self.bytes.split_at(self.bytes.len().saturating_sub(64));
        let sig = Signature::from_slice(sig).map_err(|_| ManifestError::BadSignature)?;
        let key = VerifyingKey::from_bytes(self.publisher.as_bytes())
            .map_err(|_| ManifestError::BadSignature)?;
        // Strict: rejects small-order keys and non-canonical signatures, for which a
        // signature would not tie a version to one publisher.
        key.verify_strict(&signing_message(signed), &sig)
            .map_err(|_| ManifestError::BadSignature)
    }

    /// The encoded, signed bytes: what is stored and sent.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The version id (hash of [`Manifest::as_bytes`]).
    pub fn version(&self) -> VersionId {
        self.version
    }

    /// Who signed it.
    pub fn publisher(&self) -> PublisherId {
        self.publisher
    }

    /// The signed contents.
    pub fn body(&self) -> &ManifestBody {
        &self.body
    }

    /// `owner/name`.
    pub fn name(&self) -> &DatasetName {
        &self.body.name
    }

    /// The files.
    pub fn files(&self) -> &[FileEntry] {
        &self.body.files
    }

    /// The file at `path`.
    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.body
            .files
            .binary_search_by(|f| f.path.as_str().cmp(path))
            .ok()
            .map(|i| &self.body.files[i])
    }

    /// Total file bytes.
    pub fn total_size(&self) -> u64 {
        self.body.files.iter().map(|f| f.size).sum()
    }

    /// Every piece of every stripe.
    pub fn pieces(&self) -> impl Iterator<Item = &PieceRef> {
        self.body
            .files
            .iter()
            .flat_map(|f| f.stripes.iter().flat_map(|s| s.pieces.iter()))
    }
}

fn signing_message(signed: &[u8]) -> Vec<u8> {
    [SIGNING_DOMAIN, signed].concat()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::erasure::StripeEncoder;
    use proptest::prelude::*;

    pub(crate) fn body_with(params: ErasureParams, files: &[(&str, Vec<u8>)]) -> ManifestBody {
        let mut enc = StripeEncoder::new(params).unwrap();
        let mut entries = Vec::new();
        for (path, data) in files {
            let mut stripes = Vec::new();
            for l in params.layout(data.len() as u64) {
                let chunk = &data[l.offset as usize..(l.offset + l.data_len) as usize];
                let pieces = enc
                    .encode(chunk, l.block_len)
                    .unwrap()
                    .iter()
                    .map(|p| PieceRef {
                        id: PieceId::of(p),
                        len: l.block_len,
                    })
                    .collect();
                stripes.push(Stripe {
                    data_len: l.data_len,
                    block_len: l.block_len,
                    pieces,
                });
            }
            entries.push(FileEntry {
                path: path.parse().unwrap(),
                size: data.len() as u64,
                hash: *blake3::hash(data).as_bytes(),
                stripes,
            });
        }
        ManifestBody {
            name: "alice/demo".parse().unwrap(),
            parent: None,
            created_unix: 1_700_000_000,
            card: "# Demo\nA dataset.".into(),
            license: "CC-BY-4.0".into(),
            params,
            files: entries,
        }
    }

    fn sample() -> (Manifest, PublisherKey) {
        let key = PublisherKey::from_secret_bytes(&[7; 32]);
        let params = ErasureParams::new(4, 2, 64).unwrap();
        let body = body_with(
            params,
            &[
                ("a.csv", vec![1; 300]),
                ("dir/b.bin", vec![2; 5]),
                ("empty", vec![]),
            ],
        );
        (Manifest::sign(body, &key).unwrap(), key)
    }

    #[test]
    fn sign_encode_decode_round_trip() {
        let (m, key) = sample();
        let back = Manifest::decode(m.as_bytes()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.version(), m.version());
        assert_eq!(back.publisher(), key.id());
        assert_eq!(m.file("dir/b.bin").unwrap().size, 5);
        assert!(m.file("nope").is_none());
        assert_eq!(m.pieces().count(), 3 * 6); // a.csv: 2 stripes, dir/b.bin: 1, empty: 0
    }

    #[test]
    fn any_flipped_bit_is_rejected() {
        let (m, _) = sample();
        let bytes = m.as_bytes();
        for i in (0..bytes.len()).step_by(7) {
            let mut b = bytes.to_vec();
            b[i] ^= 0x10;
            assert!(Manifest::decode(&b).is_err(), "flip at byte {i} accepted");
        }
    }

    #[test]
    fn a_signature_by_another_key_is_rejected() {
        let (m, _) = sample();
        let mut forged = m.as_bytes().to_vec();
        let n = forged.len();
        let other = PublisherKey::from_secret_bytes(&[8; 32]);
        let sig = other.0.sign(&signing_message(&forged[..n - 64]));
        forged[n - 64..].copy_from_slice(&sig.to_bytes());
        assert_eq!(Manifest::decode(&forged), Err(ManifestError::BadSignature));
    }

    #[test]
    fn inconsistent_bodies_are_refused_before_signing() {
        let key = PublisherKey::from_secret_bytes(&[7; 32]);
        let params = ErasureParams::new(4, 2, 64).unwrap();
        let good = body_with(params, &[("a", vec![1; 300]), ("b", vec![2; 10])]);

        let mut unsorted = good.clone();
        unsorted.files.reverse();
        let mut dup = good.clone();
        dup.files[1].path = "a".parse().unwrap();
        let mut wrong_size = good.clone();
        wrong_size.files[0].size += 1;
        let mut missing_piece = good.clone();
        missing_piece.files[0].stripes[0].pieces.pop();
        let mut missing_stripe = good.clone();
        missing_stripe.files[0].stripes.pop();
        let mut file_and_dir = body_with(params, &[("a", vec![1]), ("a/b", vec![2])]);
        file_and_dir.files.sort_by(|x, y| x.path.cmp(&y.path));
        let mut huge_card = good.clone();
        huge_card.card = "x".repeat(MAX_CARD_LEN + 1);

        for (what, body) in [
            ("unsorted", unsorted),
            ("duplicate", dup),
            ("wrong size", wrong_size),
            ("missing piece", missing_piece),
            ("missing stripe", missing_stripe),
            ("file and dir", file_and_dir),
            ("huge card", huge_card),
        ] {
            assert!(
                matches!(
                    Manifest::sign(body, &key),
                    Err(ManifestError::Inconsistent(_))
                ),
                "{what} accepted"
            );
        }
        assert!(Manifest::sign(good, &key).is_ok());
    }

    #[test]
    fn hostile_paths_in_the_encoding_are_rejected() {
        let (m, key) = sample();
        // Re-sign a body whose encoded path is "../x": only possible by editing bytes, since
        // RelPath cannot hold it. Replace "a.csv" with "../xx" (same length) and re-sign.
        let mut bytes = m.as_bytes()[..m.as_bytes().len() - 64].to_vec();
        let at = bytes.windows(5).position(|w| w == b"a.csv").unwrap();
        bytes[at..at + 5].copy_from_slice(b"../xx");
        let sig = key.0.sign(&signing_message(&bytes));
        bytes.extend_from_slice(&sig.to_bytes());
        assert!(matches!(
            Manifest::decode(&bytes),
            Err(ManifestError::Id(_))
        ));
    }

    #[test]
    fn decode_runs_validation_on_signed_but_inconsistent_bodies() {
        // A publisher that skips validation (a modified client) still cannot get an
        // inconsistent manifest accepted: decode checks every invariant, not just the signature.
        let key = PublisherKey::from_secret_bytes(&[7; 32]);
        let params = ErasureParams::new(4, 2, 64).unwrap();
        let mut body = body_with(params, &[("a", vec![1; 300])]);
        body.files[0].size = 10_000; // stripes no longer cover the size
        let mut w = Writer::new();
        body.encode_into(&mut w, &key.id());
        let mut bytes = w.into_bytes();
        let sig = key.0.sign(&signing_message(&bytes));
        bytes.extend_from_slice(&sig.to_bytes());
        assert!(matches!(
            Manifest::decode(&bytes),
            Err(ManifestError::Inconsistent(_))
        ));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = Manifest::decode(&bytes);
        }

        #[test]
        fn decode_of_truncations_fails(cut in any::<prop::sample::Index>()) {
            let (m, _) = sample();
            let b = m.as_bytes();
            prop_assert!(Manifest::decode(&b[..cut.index(b.len())]).is_err());
        }
    }
}
