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
//! `always_false`, and the stick-table counters `sc0_conn_cur`,
//! `sc0_conn_rate`, `sc0_http_req_rate`, `sc0_bytes_in_rate` and their
//! `src_*([table])` twins (integers: `gt 100`, `le 5`, `10:20`). Flags:
//! `-i`, `-m <method>`, `--`. Predefined ACLs (§7.4): `TRUE`, `FALSE`,
//! `LOCALHOST` and `METH_*`.

mod cond;
mod error;
mod eval;
mod expr;
mod int;
mod ip;
mod lex;
mod parse;
mod request;
mod set;
#[cfg(test)]
mod tests;
mod text;

pub use cond::{AclRef, Condition, Term};
pub use error::AclError;
pub use expr::{Acl, CounterKind, CounterOf, Fetch, MatchMethod};
pub use int::IntPattern;
pub use request::{Counters, Headers, RequestView};
pub use set::AclSet;
