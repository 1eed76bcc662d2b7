//! Integer patterns (HAProxy §7.1.4, `-m int`): `gt 100`, `ge 5`, `lt 3`,
//! `le 3`, `eq 7` (or `7`), and ranges `10:20`, `:20`, `10:` (inclusive).
//! An operator and its value are two words.

use super::error::AclError;
use super::lex::Token;
use std::fmt;

/// One integer pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntPattern {
    /// `eq N`, or `N`.
    Eq(u64),
    /// `ge N`.
    Ge(u64),
    /// `gt N`.
    Gt(u64),
    /// `le N`.
    Le(u64),
    /// `lt N`.
    Lt(u64),
    /// `A:B`, both ends included.
    Range(u64, u64),
}

impl IntPattern {
    /// Whether `v` matches.
    pub fn matches(self, v: u64) -> bool {
        match self {
            IntPattern::Eq(n) => v == n,
            IntPattern::Ge(n) => v >= n,
            IntPattern::Gt(n) => v > n,
            IntPattern::Le(n) => v <= n,
            IntPattern::Lt(n) => v < n,
            IntPattern::Range(a, b) => a <= v && v <= b,
        }
    }
}

impl fmt::Display for IntPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntPattern::Eq(n) => write!(f, "{n}"),
            IntPattern::Ge(n) => write!(f, "ge {n}"),
            IntPattern::Gt(n) => write!(f, "gt {n}"),
            IntPattern::Le(n) => write!(f, "le {n}"),
            IntPattern::Lt(n) => write!(f, "lt {n}"),
            IntPattern::Range(0, b) => write!(f, ":{b}"),
            IntPattern::Range(a, u64::MAX) => write!(f, "{a}:"),
            IntPattern::Range(a, b) => write!(f, "{a}:{b}"),
        }
    }
}

fn number(word: &Token) -> Result<u64, AclError> {
    word.text.parse::<u64>().map_err(|_| {
        AclError::new(
            word.column,
            format!("\"{}\" is not an unsigned integer", word.text),
        )
    })
}

/// Reads `words` as integer patterns; `end_column` is where the text ends,
/// for an operator missing its value.
pub(super) fn parse_int_patterns(
    words: &[Token],
    end_column: usize,
) -> Result<Vec<IntPattern>, AclError> {
    let mut out = Vec::new();
    let mut it = words.iter();
    while let Some(w) = it.next() {
        let op: Option<fn(u64) -> IntPattern> = match w.text.as_str() {
            "eq" => Some(IntPattern::Eq),
            "ge" => Some(IntPattern::Ge),
            "gt" => Some(IntPattern::Gt),
            "le" => Some(IntPattern::Le),
            "lt" => Some(IntPattern::Lt),
            _ => None,
        };
        if let Some(op) = op {
            let Some(value) = it.next() else {
                return Err(AclError::new(
                    end_column,
                    format!("\"{}\" needs a number after it", w.text),
                ));
            };
            out.push(op(number(value)?));
            continue;
        }
        match w.text.split_once(':') {
            Some((a, b)) => {
                let end = |s: &str, default: u64| {
                    if s.is_empty() {
                        Ok(default)
                    } else {
                        s.parse::<u64>().map_err(|_| {
                            AclError::new(
                                w.column,
                                format!("bad range \"{}\": expected A:B, :B or A:", w.text),
                            )
                        })
                    }
                };
                let (lo, hi) = (end(a, 0)?, end(b, u64::MAX)?);
                if lo > hi {
                    return Err(AclError::new(
                        w.column,
                        format!("bad range \"{}\": its start is after its end", w.text),
                    ));
                }
                out.push(IntPattern::Range(lo, hi));
            }
            None => out.push(IntPattern::Eq(number(w)?)),
        }
    }
    Ok(out)
}
