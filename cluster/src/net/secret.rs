//! The cluster secret: 32 random bytes every node of a cluster holds, kept in
//! the data directory (`cluster.secret`, mode 0600) and handed to joiners as
//! a join token (`rlb1-` + 64 hex digits). The handshake proves possession
//! of it; it never travels on the wire.

use std::fmt;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The file, in the node's data directory, that holds the secret.
pub const SECRET_FILE: &str = "cluster.secret";

/// What a join token starts with (the `1` is the token format's version).
pub const TOKEN_PREFIX: &str = "rlb1-";

const LEN: usize = 32;

/// The shared key that authenticates node-to-node connections.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSecret([u8; LEN]);

/// Why a join token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// It does not start with [`TOKEN_PREFIX`].
    #[error(
        "a join token starts with `{TOKEN_PREFIX}` (copy the one `raftlb cluster init` printed)"
    )]
    Prefix,
    /// It has the wrong number of hex digits.
    #[error("a join token has 64 hex digits after `{TOKEN_PREFIX}`, this one has {0} characters (was it cut when copied?)")]
    Length(usize),
    /// It holds a character that is not a hex digit.
    #[error("a join token holds only hex digits after `{TOKEN_PREFIX}` (found {0:?})")]
    NotHex(char),
}

impl ClusterSecret {
    /// A new random secret (from the thread's cryptographically secure
    /// generator, seeded by the OS).
    pub fn generate() -> ClusterSecret {
        ClusterSecret(rand::random())
    }

    /// A secret from its bytes.
    pub fn from_bytes(bytes: [u8; LEN]) -> ClusterSecret {
        ClusterSecret(bytes)
    }

    /// The key bytes (for the handshake's HMAC).
    pub fn as_bytes(&self) -> &[u8; LEN] {
        &self.0
    }

    /// The join token: [`TOKEN_PREFIX`] then the secret in hex.
    pub fn to_token(&self) -> String {
        format!("{TOKEN_PREFIX}{}", hex::encode(self.0))
    }

    /// Reads a join token (surrounding whitespace is ignored).
    pub fn from_token(token: &str) -> Result<ClusterSecret, TokenError> {
        let rest = token
            .trim()
            .strip_prefix(TOKEN_PREFIX)
            .ok_or(TokenError::Prefix)?;
        parse_hex(rest).map(ClusterSecret)
    }

    /// Reads the secret from `path` (64 hex digits, a newline allowed).
    pub fn load(path: &Path) -> io::Result<ClusterSecret> {
        let text = std::fs::read_to_string(path)?;
        parse_hex(text.trim()).map(ClusterSecret).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not a cluster secret: {e}"),
            )
        })
    }

    /// Writes the secret to `path` (64 hex digits and a newline, mode
    /// 0600), atomically (see [`write_private`]).
    pub fn save(&self, path: &Path) -> io::Result<()> {
        write_private(path, format!("{}\n", hex::encode(self.0)).as_bytes())
    }
}

/// Writes `contents` to `path` with mode 0600, atomically: a temporary file
/// is written, synced, then renamed over `path`, and the directory is
/// synced. The node's secrets (the cluster secret, the admin token) are
/// kept this way.
pub fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn parse_hex(text: &str) -> Result<[u8; LEN], TokenError> {
    if let Some(c) = text.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(TokenError::NotHex(c));
    }
    if text.len() != 2 * LEN {
        return Err(TokenError::Length(text.len()));
    }
    let mut out = [0u8; LEN];
    hex::decode_to_slice(text, &mut out).map_err(|_| TokenError::Length(text.len()))?;
    Ok(out)
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn tokens_round_trip_and_bad_ones_say_why() {
        let s = ClusterSecret::generate();
        let token = s.to_token();
        assert!(token.starts_with("rlb1-"));
        assert_eq!(token.len(), 5 + 64);
        assert_eq!(ClusterSecret::from_token(&token).unwrap(), s);
        assert_eq!(
            ClusterSecret::from_token(&format!(" {token}\n")).unwrap(),
            s
        );
        assert_ne!(ClusterSecret::generate(), s);

        let hex64 = &token[5..];
        assert_eq!(ClusterSecret::from_token(hex64), Err(TokenError::Prefix));
        assert_eq!(
            ClusterSecret::from_token(&format!("rlb2-{hex64}")),
            Err(TokenError::Prefix)
        );
        assert_eq!(
            ClusterSecret::from_token(&token[..60]),
            Err(TokenError::Length(55))
        );
        assert_eq!(
            ClusterSecret::from_token(&format!("{token}00")),
            Err(TokenError::Length(66))
        );
        let bad = format!("rlb1-{}g", &hex64[1..]);
        assert_eq!(
            ClusterSecret::from_token(&bad),
            Err(TokenError::NotHex('g'))
        );
        // A multi-byte character is reported, not a panic.
        let odd = format!("rlb1-{}é", &hex64[2..]);
        assert_eq!(
            ClusterSecret::from_token(&odd),
            Err(TokenError::NotHex('é'))
        );
        assert!(TokenError::Length(3).to_string().contains("64 hex digits"));
    }

    #[test]
    fn debug_does_not_show_the_bytes() {
        let s = ClusterSecret::from_bytes([0xab; 32]);
        let shown = format!("{s:?}");
        assert_eq!(shown, "ClusterSecret(..)");
        assert!(!shown.to_lowercase().contains("ab"));
    }

    #[test]
    fn saved_secrets_load_back_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SECRET_FILE);
        let s = ClusterSecret::generate();
        s.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{}\n", hex::encode(s.as_bytes())));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(ClusterSecret::load(&path).unwrap(), s);
        // Saving again replaces it; no temporary file is left behind.
        let t = ClusterSecret::generate();
        t.save(&path).unwrap();
        assert_eq!(ClusterSecret::load(&path).unwrap(), t);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [SECRET_FILE]);
    }

    #[test]
    fn a_damaged_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SECRET_FILE);
        std::fs::write(&path, "abc\n").unwrap();
        let e = ClusterSecret::load(&path).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("not a cluster secret"), "{e}");
        let missing = ClusterSecret::load(&dir.path().join("nope")).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }
}
