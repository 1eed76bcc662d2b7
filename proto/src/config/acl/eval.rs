//! Evaluating an ACL against a request: the fetches (path, header values,
//! method, source) and the matching methods, without allocating.

use super::expr::{Acl, Fetch, MatchMethod, Pattern};
use super::request::{Headers, RequestView};
use std::net::IpAddr;

impl Acl {
    /// Whether the request matches: any pattern matches any fetched value.
    /// A fetch that yields nothing (no such header, no path) never matches.
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        match &self.fetch {
            Fetch::AlwaysTrue => true,
            Fetch::AlwaysFalse => self.method == MatchMethod::Found,
            Fetch::Src => self.method == MatchMethod::Found || self.test_ip(req.src),
            Fetch::Counter { of, kind } => req
                .counters
                .and_then(|c| c.counter(of, *kind))
                .is_some_and(|v| self.method == MatchMethod::Found || self.test_int(v)),
            Fetch::Method => self.test(req.method.as_bytes()),
            Fetch::Path => path_of(req.uri).is_some_and(|p| self.test(p.as_bytes())),
            Fetch::Header {
                name,
                occurrence,
                full_line,
            } => {
                let mut test = |value: &[u8]| self.test(value);
                match *occurrence {
                    0 => each_value(req.headers, name, *full_line, &mut test),
                    n => {
                        let position = if n > 0 {
                            n as usize
                        } else {
                            let mut count = 0usize;
                            each_value(req.headers, name, *full_line, &mut |_| {
                                count += 1;
                                false
                            });
                            match count.checked_sub(n.unsigned_abs() as usize) {
                                Some(before) => before + 1,
                                None => return false,
                            }
                        };
                        nth_value(req.headers, name, *full_line, position, &mut test)
                    }
                }
            }
        }
    }

    /// Whether one fetched value matches any pattern.
    fn test(&self, value: &[u8]) -> bool {
        let ci = self.ignore_case;
        match self.method {
            MatchMethod::Found => true,
            MatchMethod::Bool => false,
            MatchMethod::Int => std::str::from_utf8(value)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .is_some_and(|v| self.test_int(v)),
            MatchMethod::Ip => std::str::from_utf8(value)
                .ok()
                .and_then(|s| s.parse::<IpAddr>().ok())
                .is_some_and(|ip| self.test_ip(ip)),
            m => self.patterns.iter().any(|p| match p {
                Pattern::Regex(r) => r.compiled.is_match(value),
                Pattern::Text(t) => text_matches(m, value, t.as_bytes(), ci),
                Pattern::Ip(_) | Pattern::Int(_) => false,
            }),
        }
    }

    fn test_int(&self, v: u64) -> bool {
        self.patterns.iter().any(|p| match p {
            Pattern::Int(i) => i.matches(v),
            _ => false,
        })
    }

    fn test_ip(&self, ip: IpAddr) -> bool {
        self.patterns.iter().any(|p| match p {
            Pattern::Ip(net) => net.matches(ip),
            _ => false,
        })
    }
}

/// `path`: from the first `/` of the target (after `scheme://authority` in
/// the absolute form) up to the `?`. None for `*`, the authority form, or an
/// absolute form without a path, as HAProxy.
fn path_of(uri: &str) -> Option<&str> {
    let from_slash = if uri.starts_with('/') {
        uri
    } else {
        let (_, rest) = uri.split_once("://")?;
        let start = rest
            .find(['/', '?'])
            .filter(|&i| rest[i..].starts_with('/'))?;
        &rest[start..]
    };
    Some(from_slash.split_once('?').map_or(from_slash, |(p, _)| p))
}

/// Calls `f` on each value of header `name` until it returns true: each
/// whole line (`full_line`), or each comma-separated element. Values are
/// trimmed of linear whitespace, as HAProxy.
fn each_value(
    headers: &dyn Headers,
    name: &str,
    full_line: bool,
    f: &mut dyn FnMut(&[u8]) -> bool,
) -> bool {
    headers.any_value(name, &mut |line| {
        if full_line {
            f(trim_lws(line))
        } else {
            CommaValues { rest: Some(line) }.any(&mut *f)
        }
    })
}

/// Calls `f` on the `position`th value (1-based) only.
fn nth_value(
    headers: &dyn Headers,
    name: &str,
    full_line: bool,
    position: usize,
    f: &mut dyn FnMut(&[u8]) -> bool,
) -> bool {
    let mut seen = 0;
    let mut result = false;
    each_value(headers, name, full_line, &mut |value| {
        seen += 1;
        if seen == position {
            result = f(value);
        }
        seen >= position
    });
    result
}

/// The elements of a comma-separated header line: split at commas outside
/// double-quoted strings (where `\` escapes the next byte), each trimmed.
/// An empty line yields one empty value, `a,,b` yields `a`, ``, `b`.
struct CommaValues<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> Iterator for CommaValues<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        let (mut quoted, mut escaped) = (false, false);
        let end = rest.iter().position(|&b| {
            if escaped {
                escaped = false;
            } else if quoted {
                escaped = b == b'\\';
                quoted = b != b'"';
            } else if b == b'"' {
                quoted = true;
            } else if b == b',' {
                return true;
            }
            false
        });
        let value = match end {
            Some(comma) => {
                self.rest = Some(&rest[comma + 1..]);
                &rest[..comma]
            }
            None => {
                self.rest = None;
                rest
            }
        };
        Some(trim_lws(value))
    }
}

fn trim_lws(value: &[u8]) -> &[u8] {
    let lws = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let start = value.iter().position(|b| !lws(b)).unwrap_or(value.len());
    let end = value.iter().rposition(|b| !lws(b)).map_or(start, |i| i + 1);
    &value[start..end]
}

/// A string method on one value. With `ci`, `pattern` is already lowercase.
fn text_matches(method: MatchMethod, value: &[u8], pattern: &[u8], ci: bool) -> bool {
    let eq = |a: &[u8]| {
        if ci {
            a.eq_ignore_ascii_case(pattern)
        } else {
            a == pattern
        }
    };
    let n = pattern.len();
    match method {
        MatchMethod::Str => eq(value),
        MatchMethod::Beg => value.len() >= n && eq(&value[..n]),
        MatchMethod::End => value.len() >= n && eq(&value[value.len() - n..]),
        MatchMethod::Sub => n == 0 || value.windows(n).any(eq),
        MatchMethod::Dir => word_matches(value, n, b"/?", &eq),
        MatchMethod::Dom => word_matches(value, n, b"/?.:", &eq),
        _ => false,
    }
}

/// HAProxy's `match_word`: the pattern (of length `n`) occurs starting at
/// the value's start or after a delimiter, and ending at its end or before
/// a delimiter.
fn word_matches(value: &[u8], n: usize, delimiters: &[u8], eq: &dyn Fn(&[u8]) -> bool) -> bool {
    if n == 0 || n > value.len() {
        return false;
    }
    (0..=value.len() - n).any(|start| {
        let at_boundary = start == 0 || delimiters.contains(&value[start - 1]);
        let end = start + n;
        at_boundary
            && !delimiters.contains(&value[start])
            && (end == value.len() || delimiters.contains(&value[end]))
            && eq(&value[start..end])
    })
}
