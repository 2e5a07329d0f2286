//! Identifiers: newtypes so that a piece hash is never passed where a version is expected,
//! and names and paths that are valid by construction.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// A malformed identifier, name or path.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid {what} {value:?}: {reason}")]
pub struct IdError {
    /// What was being parsed.
    pub what: &'static str,
    /// The input (truncated to 100 characters).
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl IdError {
    fn new(what: &'static str, value: &str, reason: &'static str) -> Self {
        Self {
            what,
            value: value.chars().take(100).collect(),
            reason,
        }
    }
}

fn parse_hex32(what: &'static str, s: &str) -> Result<[u8; 32], IdError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out)
        .map_err(|_| IdError::new(what, s, "expected 64 hex digits"))?;
    Ok(out)
}

macro_rules! hash_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), &hex::encode(self.0)[..16])
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                parse_hex32($what, s).map(Self)
            }
        }
    };
}

hash_id!(
    /// A piece's content address: the BLAKE3 hash of its bytes.
    PieceId,
    "piece id"
);
hash_id!(
    /// A dataset version: the BLAKE3 hash of its encoded, signed manifest.
    VersionId,
    "version id"
);
hash_id!(
    /// A publisher: an ed25519 public key.
    PublisherId,
    "publisher key"
);

hash_id!(
    /// A storage node: its ed25519 public key, which is also its iroh endpoint id and,
    /// wrapped, its libp2p peer id.
    NodeId,
    "node id"
);
hash_id!(
    /// A stripe: the BLAKE3 hash of its piece ids in order, so the same stripe has the
    /// same id in every version that contains it.
    StripeId,
    "stripe id"
);

impl StripeId {
    /// The id of the stripe made of these pieces, in order.
    pub fn of_pieces(pieces: &[PieceId]) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"cairn stripe v1");
        for p in pieces {
            h.update(&p.0);
        }
        Self(*h.finalize().as_bytes())
    }
}

impl NodeId {
    /// A short form for logs and tables.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..5])
    }
}

impl PieceId {
    /// The id of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// The same hash, as the proofs crate names a piece in a challenge.
    pub fn to_proofs_hash(self) -> proofs::Hash {
        proofs::Hash(self.0)
    }
}

const MAX_NAME_PART: usize = 64;

fn check_name_part(what: &'static str, full: &str, part: &str) -> Result<(), IdError> {
    if part.is_empty() || part.len() > MAX_NAME_PART {
        return Err(IdError::new(
            what,
            full,
            "owner and name must each be 1 to 64 characters",
        ));
    }
    if !part.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(IdError::new(
            what,
            full,
            "owner and name must start with a letter or digit",
        ));
    }
    if !part
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(IdError::new(
            what,
            full,
            "only ASCII letters, digits, '-', '_' and '.' are allowed",
        ));
    }
    Ok(())
}

/// A dataset name, `owner/name`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DatasetName {
    full: String,
    slash: usize,
}

impl DatasetName {
    /// The owner part.
    pub fn owner(&self) -> &str {
        &self.full[..self.slash]
    }

    /// The name part.
    pub fn name(&self) -> &str {
        &self.full[self.slash + 1..]
    }

    /// `owner/name`.
    pub fn as_str(&self) -> &str {
        &self.full
    }
}

impl FromStr for DatasetName {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let Some((owner, name)) = s.split_once('/') else {
            return Err(IdError::new("dataset name", s, "expected OWNER/NAME"));
        };
        check_name_part("dataset name", s, owner)?;
        check_name_part("dataset name", s, name)?;
        Ok(Self {
            full: s.to_string(),
            slash: owner.len(),
        })
    }
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.full)
    }
}

impl fmt::Debug for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatasetName({})", self.full)
    }
}

/// Longest file path in a dataset, in bytes.
pub const MAX_PATH_LEN: usize = 1024;

/// A file's path inside a dataset: relative, `/`-separated, and unable to escape the
/// directory it is written under. No empty, `.` or `..` components, no leading `/`, no NUL,
/// backslash or control characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelPath(String);

impl RelPath {
    /// The path as stored (`/`-separated).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its components.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl FromStr for RelPath {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let bad = |reason| Err(IdError::new("path", s, reason));
        if s.is_empty() {
            return bad("empty path");
        }
        if s.len() > MAX_PATH_LEN {
            return bad("longer than 1024 bytes");
        }
        if s.starts_with('/') {
            return bad("absolute paths are not allowed");
        }
        if s.chars().any(|c| c == '\0' || c == '\\' || c.is_control()) {
            return bad("NUL, backslash and control characters are not allowed");
        }
        for part in s.split('/') {
            match part {
                "" => return bad("empty path component"),
                "." | ".." => return bad("'.' and '..' components are not allowed"),
                _ => {}
            }
        }
        Ok(Self(s.to_string()))
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RelPath({:?})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_names() {
        let n: DatasetName = "alice/mnist-v1.2_x".parse().unwrap();
        assert_eq!((n.owner(), n.name()), ("alice", "mnist-v1.2_x"));
        for bad in [
            "",
            "alice",
            "/mnist",
            "alice/",
            "a/b/c",
            "alice/.hidden",
            "al ice/x",
            "alice/ü",
            &"a".repeat(65),
        ] {
            assert!(bad.parse::<DatasetName>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn paths_cannot_escape() {
        for good in ["a", "a/b.csv", "train/00001.tar", "..a/b..", "ünïcode/ok"] {
            assert!(good.parse::<RelPath>().is_ok(), "{good:?}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a/./b",
            "a//b",
            "a/",
            "a\\b",
            "a\0b",
            "a\nb",
            ".",
        ] {
            assert!(bad.parse::<RelPath>().is_err(), "{bad:?}");
        }
        assert!(
            "a/".repeat(600)
                .trim_end_matches('/')
                .parse::<RelPath>()
                .is_err()
        );
    }

    #[test]
    fn hex_ids_round_trip() {
        let id = PieceId::of(b"hello");
        assert_eq!(id.to_string().parse::<PieceId>().unwrap(), id);
        assert!("zz".parse::<PieceId>().is_err());
        assert!("ab".repeat(33).parse::<VersionId>().is_err());
    }
}
