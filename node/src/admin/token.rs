//! The admin token: 32 random bytes a node makes at its first start and
//! keeps in its data directory (`admin.token`, 64 hex digits, mode 0600,
//! as the cluster secret is kept); every write to the admin API carries it
//! as `Authorization: Bearer`, so that only who can read the data
//! directory (root, the `raftlb` user) changes the cluster.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;

/// The file, in the node's data directory, that holds the token.
pub const TOKEN_FILE: &str = "admin.token";

/// A node's admin token.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    /// The token file of the node whose data directory is `data_dir`.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(TOKEN_FILE)
    }

    /// The token in `data_dir`; a new one (saved there) if it has none.
    pub fn load_or_create(data_dir: &Path) -> io::Result<AdminToken> {
        let path = Self::path(data_dir);
        match Self::load(data_dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let t = AdminToken(hex::encode(rand::random::<[u8; 32]>()));
                t.save(&path)?;
                Ok(t)
            }
            other => other,
        }
    }

    /// The token in `data_dir` (64 hex digits, a newline allowed).
    pub fn load(data_dir: &Path) -> io::Result<AdminToken> {
        let text = std::fs::read_to_string(Self::path(data_dir))?;
        let t = text.trim();
        if t.len() != 64 || !t.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not an admin token (64 hex digits)",
            ));
        }
        Ok(AdminToken(t.to_string()))
    }

    /// Writes the token to `path` (mode 0600) atomically.
    fn save(&self, path: &Path) -> io::Result<()> {
        raftlb_cluster::net::secret::write_private(path, format!("{}\n", self.0).as_bytes())
    }

    /// A token with this text (for tests).
    #[cfg(test)]
    pub(crate) fn for_tests(text: String) -> AdminToken {
        AdminToken(text)
    }

    /// The token as `Authorization: Bearer` carries it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this token, compared in constant time (how
    /// long the comparison takes says nothing of how much of it matched).
    pub fn accepts(&self, presented: &[u8]) -> bool {
        bool::from(self.0.as_bytes().ct_eq(presented))
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn made_once_kept_private_and_read_back() {
        let dir = std::env::temp_dir().join(format!("raftlb-admin-token-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let t = AdminToken::load_or_create(&dir).unwrap();
        let mode = std::fs::metadata(AdminToken::path(&dir))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(t.as_str().len(), 64);
        assert_eq!(AdminToken::load_or_create(&dir).unwrap(), t);
        assert_eq!(AdminToken::load(&dir).unwrap(), t);
        assert!(t.accepts(t.as_str().as_bytes()));
        assert!(!t.accepts(&t.as_str().as_bytes()[..63]));
        assert!(!t.accepts(b""));
        let mut other = t.as_str().as_bytes().to_vec();
        other[0] = if other[0] == b'0' { b'1' } else { b'0' };
        assert!(!t.accepts(&other));
        std::fs::write(AdminToken::path(&dir), "short\n").unwrap();
        assert!(AdminToken::load(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
