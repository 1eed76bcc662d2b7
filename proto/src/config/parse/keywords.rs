//! The keyword tables of `mode`, `balance`, `observe` and `on_error`, and
//! the reader of `balance` with its `uri` and `hdr(…)` options.

use super::reader::{Cx, Tbl};
use crate::config::model::{Balance, HashKey, Mode, Observe, OnError};

pub(super) const MODES: &[(&str, Mode)] = &[("tcp", Mode::Tcp), ("http", Mode::Http)];
const BALANCES: &[(&str, Balance)] = &[
    ("roundrobin", Balance::RoundRobin),
    ("static-rr", Balance::StaticRr),
    ("leastconn", Balance::LeastConn),
    ("first", Balance::First),
    ("source", Balance::Source),
    ("random", Balance::Random),
];
/// `balance`: one of [`BALANCES`], or `uri [whole] [len N] [depth N]`, or
/// `hdr(name)`.
pub(super) fn balance(cx: &mut Cx, t: &mut Tbl) -> Option<(Balance, Option<HashKey>)> {
    let (path, line, text) = t.str(cx, "balance")?;
    let mut words = text.split_whitespace();
    let first = words.next().unwrap_or("");
    if let Some(name) = first.strip_prefix("hdr(").and_then(|r| r.strip_suffix(')')) {
        if name.is_empty() || words.next().is_some() {
            cx.err(&path, line, format!("invalid {text:?}: expected hdr(NAME)"));
            return None;
        }
        let name = name.to_ascii_lowercase();
        return Some((Balance::Hdr, Some(HashKey::Hdr { name })));
    }
    if first == "uri" {
        let (mut whole, mut len, mut depth) = (false, 0, 0);
        while let Some(w) = words.next() {
            match w {
                "whole" => whole = true,
                "len" | "depth" => match words.next().and_then(|n| n.parse::<u32>().ok()) {
                    Some(n) if n > 0 => {
                        if w == "len" {
                            len = n
                        } else {
                            depth = n
                        }
                    }
                    _ => {
                        cx.err(
                            &path,
                            line,
                            format!("invalid {text:?}: `{w}` takes a number above 0"),
                        );
                        return None;
                    }
                },
                other => {
                    cx.err(
                        &path,
                        line,
                        format!("invalid {text:?}: unknown option `{other}` (expected whole, len N, depth N)"),
                    );
                    return None;
                }
            }
        }
        return Some((Balance::Uri, Some(HashKey::Uri { whole, len, depth })));
    }
    match BALANCES.iter().find(|(n, _)| *n == text) {
        Some((_, b)) => Some((*b, None)),
        None => {
            let mut names: Vec<&str> = BALANCES.iter().map(|(n, _)| *n).collect();
            names.extend(["uri", "hdr(NAME)"]);
            cx.err(
                &path,
                line,
                format!(
                    "unknown value {text:?} (expected one of: {})",
                    names.join(", ")
                ),
            );
            None
        }
    }
}

pub(super) const OBSERVES: &[(&str, Observe)] =
    &[("layer4", Observe::Layer4), ("layer7", Observe::Layer7)];
pub(super) const ON_ERRORS: &[(&str, OnError)] = &[
    ("fastinter", OnError::FastInter),
    ("fail-check", OnError::FailCheck),
    ("sudden-death", OnError::SuddenDeath),
    ("mark-down", OnError::MarkDown),
];
