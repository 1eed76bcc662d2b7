//! The named ACLs of a frontend ([`AclSet`]) and the rule for their names.

use super::error::AclError;
use super::expr::Acl;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The named ACLs of a frontend. A name may be defined several times
/// (HAProxy's overloading); it then matches when any definition does.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AclSet {
    by_name: BTreeMap<String, Vec<Acl>>,
}

impl AclSet {
    /// An empty set.
    pub fn new() -> AclSet {
        AclSet::default()
    }

    /// Parses `definition` and adds it under `name`. A bad name is reported
    /// with position 0 (it is not part of the definition's text).
    pub fn define(&mut self, name: &str, definition: &str) -> Result<(), AclError> {
        check_name(name)?;
        let acl = Acl::parse(definition)?;
        self.by_name.entry(name.to_owned()).or_default().push(acl);
        Ok(())
    }

    /// The definitions of `name`, if it was defined.
    pub fn get(&self, name: &str) -> Option<&[Acl]> {
        self.by_name.get(name).map(Vec::as_slice)
    }

    /// The defined names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// How many names are defined.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether no name is defined.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// HAProxy's rule: letters, digits, `-`, `_`, `.` and `:`; and not `or`,
/// which a condition would read as its operator.
fn check_name(name: &str) -> Result<(), AclError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.:".contains(c);
    let message = if name.is_empty() {
        "an ACL name cannot be empty".to_owned()
    } else if !name.chars().all(allowed) {
        format!("invalid ACL name \"{name}\": use letters, digits, \"-\", \"_\", \".\" and \":\"")
    } else if name.eq_ignore_ascii_case("or") {
        format!("invalid ACL name \"{name}\": \"or\" is the condition operator")
    } else {
        return Ok(());
    };
    Err(AclError::new(0, message))
}
