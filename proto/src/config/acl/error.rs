//! The error of ACL and condition parsing: a message and the column it
//! points at.

use std::fmt;

/// A mistake in an ACL or a condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclError {
    /// The 1-based column (in characters) in the parsed text where the
    /// mistake starts; 0 when it is not in the text (an ACL's name).
    pub position: usize,
    /// What is wrong, in words.
    pub message: String,
}

impl AclError {
    pub(super) fn new(position: usize, message: impl Into<String>) -> AclError {
        AclError {
            position,
            message: message.into(),
        }
    }
}

impl fmt::Display for AclError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.position > 0 {
            write!(f, "column {}: ", self.position)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for AclError {}
