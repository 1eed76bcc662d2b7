//! One ACL expression as data: the [`Acl`] with its [`Fetch`], its
//! [`MatchMethod`] and its compiled patterns. Reading it from text is in
//! `parse`, testing a request in `eval`.

use super::int::IntPattern;
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
    /// `sc0_conn_rate`, `src_conn_cur(table)`, …: a counter of a
    /// stick-table entry (an integer).
    Counter {
        /// Whose entry.
        of: CounterOf,
        /// Which counter.
        kind: CounterKind,
    },
}

/// Whose stick-table entry a counter fetch reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CounterOf {
    /// `sc0_*`: the entry the frontend tracks (`track_sc0`) for this
    /// connection.
    Sc0,
    /// `src_*`: the entry of the client's address, in `table` (none: the
    /// table the frontend tracks in).
    Src {
        /// The table, as in `src_conn_rate(NAME)`.
        table: Option<String>,
    },
}

/// A counter a stick table stores (`store`), as a fetch names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CounterKind {
    /// `conn_cur`: connections open now (on this node).
    ConnCur,
    /// `conn_rate`: new connections per the stored period.
    ConnRate,
    /// `http_req_rate`: HTTP requests per the stored period.
    HttpReqRate,
    /// `bytes_in_rate`: bytes from the client per the stored period.
    BytesInRate,
}

impl CounterKind {
    /// Every kind.
    pub const ALL: [CounterKind; 4] = [
        CounterKind::ConnCur,
        CounterKind::ConnRate,
        CounterKind::HttpReqRate,
        CounterKind::BytesInRate,
    ];

    /// Its name in `store` and in fetches (`sc0_<name>`).
    pub fn as_str(self) -> &'static str {
        match self {
            CounterKind::ConnCur => "conn_cur",
            CounterKind::ConnRate => "conn_rate",
            CounterKind::HttpReqRate => "http_req_rate",
            CounterKind::BytesInRate => "bytes_in_rate",
        }
    }
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
    /// `int`: an integer compared with each pattern (`gt 100`, `10:20`).
    Int,
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
            MatchMethod::Int => "int",
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
    /// An integer comparison.
    Int(IntPattern),
}
