//! HAProxy's ACLs and conditions (configuration manual §7) as data: an [`Acl`]
//! tests one fact of an HTTP request against patterns (`path_beg /blog`,
//! `hdr(host) -i api.example.com`, `src 10.0.0.0/8`); a [`Condition`]
//! (`is_api !is_post or office`) combines named and anonymous ACLs for rules
//! such as `use_backend`. Parsing checks everything up front (fetch, flags,
//! patterns, regexes, addresses, ACL names) and reports the column of a
//! mistake; evaluation reads a [`RequestView`] and does not allocate.
//!
//! Supported fetches: `path`, `path_beg`, `path_end`, `path_sub`, `path_dir`,
//! `path_dom`, `path_reg`, `hdr(<name>[,<occ>])` with the same suffixes,
//! `req.hdr(..)`, `req.fhdr(..)`, `method`, `src`, `always_true`,
//! `always_false`. Flags: `-i`, `-m <method>`, `--`. Predefined ACLs (§7.4):
//! `TRUE`, `FALSE`, `LOCALHOST` and `METH_*`.

mod cond;
mod eval;
mod ip;
mod lex;
mod parse;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

pub use cond::{AclRef, Condition, Term};

/// One ACL expression: a fetch, a matching method, and patterns. It matches
/// when any pattern matches any value the fetch yields from the request.
///
/// Written as in HAProxy (`hdr_dom(host) -i example.com`); serialized as its
/// canonical text ([`Acl`]'s `Display`), which parses back to an equal value.
/// Two ACLs are equal when their canonical texts are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Acl {
    fetch: Fetch,
    method: MatchMethod,
    ignore_case: bool,
    patterns: Vec<Pattern>,
}

impl Acl {
    /// Parses one ACL definition, e.g. `path_beg /blog /static`. Columns in
    /// the error count from 1 at the first character of `text`.
    pub fn parse(text: &str) -> Result<Acl, AclError> {
        let tokens = lex::tokenize(text)?;
        parse::parse_acl(&tokens, text.chars().count() + 1)
    }

    /// The fetch: which fact of the request is tested.
    pub fn fetch(&self) -> &Fetch {
        &self.fetch
    }

    /// How values are compared with the patterns.
    pub fn match_method(&self) -> MatchMethod {
        self.method
    }

    /// Whether string and regex comparisons ignore ASCII case.
    pub fn ignore_case(&self) -> bool {
        self.ignore_case
    }
}

impl From<Acl> for String {
    fn from(acl: Acl) -> String {
        acl.to_string()
    }
}

impl TryFrom<String> for Acl {
    type Error = AclError;

    fn try_from(text: String) -> Result<Acl, AclError> {
        Acl::parse(&text)
    }
}

/// What an ACL reads from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetch {
    /// `path`: the request target's path, from its first `/` up to the `?`
    /// (absent for `*` and authority-form targets).
    Path,
    /// `hdr(<name>[,<occ>])`, `req.hdr(..)`: each value of the request header,
    /// a field line split at commas outside double quotes; `req.fhdr(..)`:
    /// each whole field line. Values are trimmed of spaces and tabs.
    Header {
        /// The header's name, ASCII lowercase.
        name: String,
        /// Which value only: 1 is the first, -1 the last; 0 tests them all.
        occurrence: i32,
        /// Whole field lines (`req.fhdr`) rather than comma-separated values.
        full_line: bool,
    },
    /// `method`: the request method.
    Method,
    /// `src`: the client's address.
    Src,
    /// `always_true`: a boolean that is always true.
    AlwaysTrue,
    /// `always_false`: a boolean that is always false.
    AlwaysFalse,
}

/// A pattern matching method (`-m`), HAProxy §7.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchMethod {
    /// `found`: the fetch yields a value, whatever it is; takes no pattern.
    Found,
    /// `bool`: the boolean fetch is true; takes no pattern.
    Bool,
    /// `str`: equal to a pattern.
    Str,
    /// `beg`: begins with a pattern.
    Beg,
    /// `end`: ends with a pattern.
    End,
    /// `sub`: contains a pattern.
    Sub,
    /// `dir`: contains a pattern delimited by `/`, `?` or the ends.
    Dir,
    /// `dom`: contains a pattern delimited by `.`, `:`, `/`, `?` or the ends.
    Dom,
    /// `reg`: a regular expression (Rust `regex` syntax) finds a match.
    Reg,
    /// `ip`: an address within a pattern's network.
    Ip,
}

impl MatchMethod {
    /// The method's name after `-m`.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchMethod::Found => "found",
            MatchMethod::Bool => "bool",
            MatchMethod::Str => "str",
            MatchMethod::Beg => "beg",
            MatchMethod::End => "end",
            MatchMethod::Sub => "sub",
            MatchMethod::Dir => "dir",
            MatchMethod::Dom => "dom",
            MatchMethod::Reg => "reg",
            MatchMethod::Ip => "ip",
        }
    }
}

/// One compiled pattern; its kind follows the ACL's [`MatchMethod`].
#[derive(Debug, Clone, PartialEq)]
enum Pattern {
    /// A string, ASCII-lowercased when the ACL ignores case.
    Text(String),
    /// A regular expression, compiled once.
    Regex(lex::Regex),
    /// An address or network.
    Ip(ip::IpPattern),
}

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
    fn new(position: usize, message: impl Into<String>) -> AclError {
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

/// The facts of one request that ACLs read. Built by the HTTP layer from
/// borrowed parts of the request, without copying.
#[derive(Clone, Copy)]
pub struct RequestView<'a> {
    /// The method, as sent (`GET`).
    pub method: &'a str,
    /// The request target as in the request line (`/blog/a?x=1`), or the
    /// absolute form (`http://host/blog/a?x=1`); `path` is taken from it.
    pub uri: &'a str,
    /// The request's header fields.
    pub headers: &'a dyn Headers,
    /// The client's address (IPv4-mapped IPv6 addresses may be left as they
    /// are: `src` matching treats them as HAProxy does).
    pub src: IpAddr,
}

impl fmt::Debug for RequestView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestView")
            .field("method", &self.method)
            .field("uri", &self.uri)
            .field("src", &self.src)
            .finish_non_exhaustive()
    }
}

/// Read access to a request's header fields. Implemented for closures of the
/// same signature (the easy way to read a `http::HeaderMap`), and for
/// slices, arrays and `Vec`s of name–value pairs.
pub trait Headers {
    /// Calls `f` on the value of each field line named `name` (given ASCII
    /// lowercase; compare names case-insensitively), in order, until `f`
    /// returns true. Returns whether it did.
    fn any_value(&self, name: &str, f: &mut dyn FnMut(&[u8]) -> bool) -> bool;
}

/// A closure with [`Headers::any_value`]'s signature, e.g. over a
/// `http::HeaderMap`: `&|name: &str, f: &mut dyn FnMut(&[u8]) -> bool| {
/// map.get_all(name).iter().any(|v| f(v.as_bytes())) }`.
impl<F> Headers for F
where
    F: Fn(&str, &mut dyn FnMut(&[u8]) -> bool) -> bool,
{
    fn any_value(&self, name: &str, f: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        self(name, f)
    }
}

/// Name–value pairs, for tests and simple callers: a slice, an array or a
/// `Vec` of (`&str` or `String`, `&str`, `&[u8]` or `String`).
fn pairs_any_value<N: AsRef<str>, V: AsRef<[u8]>>(
    pairs: &[(N, V)],
    name: &str,
    f: &mut dyn FnMut(&[u8]) -> bool,
) -> bool {
    pairs
        .iter()
        .filter(|(n, _)| n.as_ref().eq_ignore_ascii_case(name))
        .any(|(_, v)| f(v.as_ref()))
}

impl<N: AsRef<str>, V: AsRef<[u8]>> Headers for &[(N, V)] {
    fn any_value(&self, name: &str, f: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        pairs_any_value(self, name, f)
    }
}

impl<N: AsRef<str>, V: AsRef<[u8]>, const K: usize> Headers for [(N, V); K] {
    fn any_value(&self, name: &str, f: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        pairs_any_value(self, name, f)
    }
}

impl<N: AsRef<str>, V: AsRef<[u8]>> Headers for Vec<(N, V)> {
    fn any_value(&self, name: &str, f: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        pairs_any_value(self, name, f)
    }
}

use super::suggest::closest;
