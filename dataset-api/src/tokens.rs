//! Bearer tokens that let HTTP clients publish through a node.
//!
//! The operator creates them (`cairn node token create`); the node keeps only their
//! BLAKE3 hashes, one per line in `DATA_DIR/api-tokens` (`<name> <hash hex> <created>`),
//! written atomically, readable by the node's user only. A token is shown once, when it is
//! created. The node reads the file on each write request, so tokens created or revoked
//! while it runs take effect at once. Changes are read-modify-write under an exclusive
//! lock on `api-tokens.lock`, so concurrent `token create` and `revoke` runs never lose
//! one another's change.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

/// The token file in a node's data dir.
pub const TOKEN_FILE: &str = "api-tokens";
/// Prefix of every token, so a leaked one is recognisable.
pub const TOKEN_PREFIX: &str = "cairn_";
/// Largest token file read.
const MAX_FILE: u64 = 1 << 20;

/// Errors of the token file.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The file could not be read or written.
    #[error("token file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line of the file does not parse.
    #[error("token file {path}, line {line}: {what}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        what: String,
    },
    /// A token name is not usable.
    #[error("a token name is 1 to 64 letters, digits, '-', '_' or '.': got {0:?}")]
    BadName(String),
    /// A token of that name exists.
    #[error("a token named {0:?} exists; revoke it first or pick another name")]
    Exists(String),
    /// No token of that name.
    #[error("no token named {0:?}")]
    Unknown(String),
    /// No randomness.
    #[error("cannot draw a random token: {0}")]
    Random(String),
}

/// One stored token (its hash, never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEntry {
    /// The operator's name for it.
    pub name: String,
    /// BLAKE3 of the token.
    pub hash: blake3::Hash,
    /// Creation time, seconds since the epoch.
    pub created_unix: u64,
}

/// The token file of one data dir.
#[derive(Debug, Clone)]
pub struct Tokens {
    path: PathBuf,
}

impl Tokens {
    /// The token file of the node whose data dir is `data_dir`.
    pub fn in_dir(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join(TOKEN_FILE),
        }
    }

    /// Every stored token; none if the file does not exist.
    pub fn list(&self) -> Result<Vec<TokenEntry>, TokenError> {
        let io = |source| TokenError::Io {
            path: self.path.clone(),
            source,
        };
        let text = match std::fs::File::open(&self.path) {
            Ok(f) => {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut std::io::Read::take(f, MAX_FILE), &mut s)
                    .map_err(io)?;
                s
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(e)),
        };
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let corrupt = |what: &str| TokenError::Corrupt {
                path: self.path.clone(),
                line: i + 1,
                what: what.to_string(),
            };
            let mut f = line.split_whitespace();
            let (Some(name), Some(hash), Some(created), None) =
                (f.next(), f.next(), f.next(), f.next())
            else {
                return Err(corrupt("expected `<name> <hash> <created>`"));
            };
            out.push(TokenEntry {
                name: name.to_string(),
                hash: blake3::Hash::from_hex(hash).map_err(|_| corrupt("bad hash"))?,
                created_unix: created.parse().map_err(|_| corrupt("bad time"))?,
            });
        }
        Ok(out)
    }

    /// Holds the exclusive lock that every change of the file takes, until dropped.
    fn lock(&self) -> Result<std::fs::File, TokenError> {
        let path = self.path.with_extension("lock");
        let io = |source| TokenError::Io {
            path: path.clone(),
            source,
        };
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        f.lock().map_err(io)?;
        Ok(f)
    }

    /// Creates a token named `name`; returns the token, which is not stored anywhere.
    pub fn create(&self, name: &str, now_unix: u64) -> Result<String, TokenError> {
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c))
        {
            return Err(TokenError::BadName(name.to_string()));
        }
        let _lock = self.lock()?;
        let mut all = self.list()?;
        if all.iter().any(|t| t.name == name) {
            return Err(TokenError::Exists(name.to_string()));
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| TokenError::Random(e.to_string()))?;
        let token = format!("{TOKEN_PREFIX}{}", hex::encode(secret));
        all.push(TokenEntry {
            name: name.to_string(),
            hash: blake3::hash(token.as_bytes()),
            created_unix: now_unix,
        });
        self.write(&all)?;
        Ok(token)
    }

    /// Removes the token named `name`.
    pub fn revoke(&self, name: &str) -> Result<(), TokenError> {
        let _lock = self.lock()?;
        let mut all = self.list()?;
        let before = all.len();
        all.retain(|t| t.name != name);
        if all.len() == before {
            return Err(TokenError::Unknown(name.to_string()));
        }
        self.write(&all)
    }

    /// The name of the token `token` is, if it is one.
    pub fn check(&self, token: &str) -> Result<Option<String>, TokenError> {
        let h = blake3::hash(token.as_bytes());
        // blake3::Hash compares in constant time.
        Ok(self
            .list()?
            .into_iter()
            .find(|t| t.hash == h)
            .map(|t| t.name))
    }

    fn write(&self, all: &[TokenEntry]) -> Result<(), TokenError> {
        let io = |source| TokenError::Io {
            path: self.path.clone(),
            source,
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        {
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(io)?;
        }
        writeln!(
            tmp,
            "# cairn API tokens: <name> <blake3 of the token> <created>"
        )
        .map_err(io)?;
        for t in all {
            writeln!(tmp, "{} {} {}", t.name, t.hash.to_hex(), t.created_unix).map_err(io)?;
        }
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(&self.path).map_err(|e| io(e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stored_hashed_checked_and_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tokens::in_dir(dir.path());
        assert!(t.list().unwrap().is_empty());
        let a = t.create("ci", 1).unwrap();
        let b = t.create("laptop", 2).unwrap();
        assert!(a.starts_with(TOKEN_PREFIX) && a != b);
        let text = std::fs::read_to_string(dir.path().join(TOKEN_FILE)).unwrap();
        assert!(
            !text.contains(&a[TOKEN_PREFIX.len()..]),
            "a token was stored in clear"
        );
        assert_eq!(t.check(&a).unwrap().as_deref(), Some("ci"));
        assert_eq!(t.check(&b).unwrap().as_deref(), Some("laptop"));
        assert_eq!(t.check("cairn_nope").unwrap(), None);
        assert!(matches!(t.create("ci", 3), Err(TokenError::Exists(_))));
        assert!(matches!(t.create("a b", 3), Err(TokenError::BadName(_))));
        t.revoke("ci").unwrap();
        assert_eq!(t.check(&a).unwrap(), None);
        assert!(matches!(t.revoke("ci"), Err(TokenError::Unknown(_))));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_damaged_file_is_an_error_not_an_open_door() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(TOKEN_FILE), "ci nothex 1\n").unwrap();
        let t = Tokens::in_dir(dir.path());
        assert!(matches!(
            t.check("x"),
            Err(TokenError::Corrupt { line: 1, .. })
        ));
    }

    #[test]
    fn concurrent_creates_and_revokes_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tokens::in_dir(dir.path());
        let made: Vec<(String, String)> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..20)
                .map(|i| {
                    let t = t.clone();
                    s.spawn(move || {
                        let name = format!("t{i}");
                        let tok = t.create(&name, i).unwrap();
                        (name, tok)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(t.list().unwrap().len(), 20);
        for (name, tok) in &made {
            assert_eq!(t.check(tok).unwrap().as_deref(), Some(name.as_str()));
        }
        std::thread::scope(|s| {
            for (name, _) in &made {
                let t = t.clone();
                s.spawn(move || t.revoke(name).unwrap());
            }
        });
        assert!(t.list().unwrap().is_empty());
        for (_, tok) in &made {
            assert_eq!(t.check(tok).unwrap(), None, "a revoked token still works");
        }
    }
}
