//! A node's identity: one ed25519 key, used as its libp2p peer id and its iroh endpoint
//! id, created on first start and kept in the data directory.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use libp2p::{PeerId, identity::Keypair};

use super::NetError;

/// The file in the data directory that holds the key (32 secret bytes, mode 0600).
pub const KEY_FILE: &str = "identity.key";

/// A node's (or client's) secret key.
#[derive(Clone)]
pub struct NodeKey([u8; 32]);

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeKey({})", self.peer_id())
    }
}

impl NodeKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, NetError> {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).map_err(|e| NetError::Setup(format!("no randomness: {e}")))?;
        Ok(Self(b))
    }

    /// Loads the key from `dir`, creating it (atomically, readable only by its owner) if
    /// there is none yet.
    pub fn load_or_create(dir: &Path) -> Result<Self, NetError> {
        load_or_create_secret(&dir.join(KEY_FILE)).map(Self)
    }

    /// The secret bytes (for the iroh endpoint).
    pub fn secret(&self) -> [u8; 32] {
        self.0
    }

    /// The libp2p keypair.
    pub fn keypair(&self) -> Keypair {
        // 32 bytes is always a valid ed25519 secret key.
        Keypair::ed25519_from_bytes(self.0).unwrap_or_else(|_| Keypair::generate_ed25519())
    }

    /// The libp2p peer id.
    pub fn peer_id(&self) -> PeerId {
        self.keypair().public().to_peer_id()
    }
}

/// Reads a 32-byte secret from `path`, or creates one there (random, mode 0600, written
/// to a temporary file and renamed into place, so a crash never leaves half a key).
pub fn load_or_create_secret(path: &Path) -> Result<[u8; 32], NetError> {
    let err = |p: &Path, e: &dyn std::fmt::Display| NetError::Identity {
        path: p.to_path_buf(),
        reason: e.to_string(),
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    match fs::read(path) {
        Ok(bytes) => bytes.as_slice().try_into().map_err(|_| {
            err(path, &format!("expected 32 bytes, found {}; restore it from a backup or move it away to start afresh", bytes.len()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = NodeKey::generate()?.0;
            fs::create_dir_all(dir).map_err(|e| err(dir, &e))?;
            let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| err(dir, &e))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                tmp.as_file()
                    .set_permissions(fs::Permissions::from_mode(0o600))
                    .map_err(|e| err(path, &e))?;
            }
            tmp.write_all(&key).map_err(|e| err(path, &e))?;
            tmp.as_file().sync_all().map_err(|e| err(path, &e))?;
            match tmp.persist_noclobber(path) {
                Ok(_) => {}
                // Another process created it first: use theirs.
                Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
                    return load_or_create_secret(path);
                }
                Err(e) => return Err(err(path, &e.error)),
            }
            fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| err(dir, &e))?;
            Ok(key)
        }
        Err(e) => Err(err(path, &e)),
    }
}

/// Where a key file for `dir` lives.
pub fn key_path(dir: &Path) -> PathBuf {
    dir.join(KEY_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reloaded() {
        let d = tempfile::tempdir().expect("tempdir");
        let a = NodeKey::load_or_create(d.path()).expect("create");
        let b = NodeKey::load_or_create(d.path()).expect("load");
        assert_eq!(a.peer_id(), b.peer_id());
        fs::write(key_path(d.path()), b"short").expect("write");
        assert!(matches!(
            NodeKey::load_or_create(d.path()),
            Err(NetError::Identity { .. })
        ));
    }
}
