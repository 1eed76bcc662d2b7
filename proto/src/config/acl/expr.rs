//! One ACL expression as data: the [`Acl`] with its [`Fetch`], its
//! [`MatchMethod`] and its compiled patterns. Reading it from text is in
//! `parse`, testing a request in `eval`.

use super::ip::IpPattern;
use super::lex::Regex;
use serde::{Deserialize, Serialize};

/// One ACL expression: a fetch, a matching method, and patterns. It matches
/// when any pattern matches any value the fetch yields from the request.
///
/// Written as in HAProxy (`hdr_dom(host) -i example.com`); serialized as its
/// canonical text ([`Acl`]'s `Display`), which parses back to an equal value.
/// Two ACLs are equal when their canonical texts are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Acl {
    pub(super) fetch: Fetch,
    pub(super) method: MatchMethod,
    pub(super) ignore_case: bool,
    pub(super) patterns: Vec<Pattern>,
}

impl Acl {
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
pub(super) enum Pattern {
    /// A string, ASCII-lowercased when the ACL ignores case.
    Text(String),
    /// A regular expression, compiled once.
    Regex(Regex),
    /// An address or network.
    Ip(IpPattern),
}
