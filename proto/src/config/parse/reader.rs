//! Reading a document's tables: the errors collected on the way ([`Cx`]),
//! the table reader ([`Tbl`]) with its typed values and its report of
//! unknown keys, and the checks of names and addresses every section shares.

use crate::config::duration::parse_duration;
use crate::config::error::ConfigError;
use crate::config::suggest::closest;
use crate::config::tree::{Entry, Item, Val};
use std::net::SocketAddr;
use std::time::Duration;

/// The errors found so far.
#[derive(Default)]
pub(super) struct Cx {
    pub(super) errors: Vec<ConfigError>,
}

impl Cx {
    pub(super) fn err(&mut self, path: &str, line: Option<u32>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            path: path.to_string(),
            line,
            message: message.into(),
        });
    }
}

/// A table being read: remembers which keys were asked for, so that the rest
/// can be reported as unknown, with a suggestion.
pub(super) struct Tbl<'a> {
    path: String,
    line: Option<u32>,
    pub(super) entries: &'a [Entry],
    pub(super) used: Vec<bool>,
    known: Vec<&'static str>,
}

pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl<'a> Tbl<'a> {
    pub(super) fn new(cx: &mut Cx, path: &str, item: &'a Item) -> Option<Tbl<'a>> {
        match &item.val {
            Val::Table(entries) => Some(Tbl {
                path: path.to_string(),
                line: item.line,
                entries,
                used: vec![false; entries.len()],
                known: Vec::new(),
            }),
            other => {
                cx.err(
                    path,
                    item.line,
                    format!("expected a table, found {}", other.kind()),
                );
                None
            }
        }
    }

    /// The value under `key`, with its path.
    pub(super) fn get(&mut self, key: &'static str) -> Option<(String, &'a Item)> {
        self.known.push(key);
        let i = self.entries.iter().position(|e| e.key == key)?;
        self.used[i] = true;
        let e = &self.entries[i];
        Some((join(&self.path, key), &e.item))
    }

    /// The line of `key`'s value, if the table has it (and the format
    /// tells lines).
    pub(super) fn line_of(&self, key: &str) -> Option<u32> {
        self.entries
            .iter()
            .find(|e| e.key == key)
            .and_then(|e| e.item.line)
    }

    /// Reports every key that nothing asked for.
    pub(super) fn finish(self, cx: &mut Cx) {
        for (e, used) in self.entries.iter().zip(&self.used) {
            if *used {
                continue;
            }
            let hint = match closest(&e.key, self.known.iter().copied()) {
                Some(k) => format!(" (did you mean `{k}`?)"),
                None => format!(" (expected one of: {})", self.known.join(", ")),
            };
            cx.err(
                &join(&self.path, &e.key),
                e.key_line.or(e.item.line).or(self.line),
                format!("unknown key `{}`{hint}", e.key),
            );
        }
    }

    pub(super) fn str(
        &mut self,
        cx: &mut Cx,
        key: &'static str,
    ) -> Option<(String, Option<u32>, &'a str)> {
        let (path, item) = self.get(key)?;
        match &item.val {
            Val::Str(s) => Some((path, item.line, s.as_str())),
            other => {
                cx.err(
                    &path,
                    item.line,
                    format!("expected a string, found {}", other.kind()),
                );
                None
            }
        }
    }

    pub(super) fn bool(&mut self, cx: &mut Cx, key: &'static str) -> Option<bool> {
        let (path, item) = self.get(key)?;
        match &item.val {
            Val::Bool(b) => Some(*b),
            other => {
                cx.err(
                    &path,
                    item.line,
                    format!("expected true or false, found {}", other.kind()),
                );
                None
            }
        }
    }

    pub(super) fn uint(
        &mut self,
        cx: &mut Cx,
        key: &'static str,
        min: u32,
        max: u32,
    ) -> Option<u32> {
        let (path, item) = self.get(key)?;
        match &item.val {
            Val::Int(i) if (min as i64..=max as i64).contains(i) => Some(*i as u32),
            Val::Int(i) => {
                cx.err(
                    &path,
                    item.line,
                    format!("{i} is out of range {min}..={max}"),
                );
                None
            }
            other => {
                cx.err(
                    &path,
                    item.line,
                    format!("expected an integer, found {}", other.kind()),
                );
                None
            }
        }
    }

    pub(super) fn duration(&mut self, cx: &mut Cx, key: &'static str) -> Option<Duration> {
        let (path, item) = self.get(key)?;
        match &item.val {
            Val::Str(s) => match parse_duration(s) {
                Ok(d) => Some(d),
                Err(e) => {
                    cx.err(&path, item.line, e);
                    None
                }
            },
            Val::Int(ms) if *ms >= 0 => Some(Duration::from_millis(*ms as u64)),
            other => {
                cx.err(
                    &path,
                    item.line,
                    format!("expected a duration such as \"2s\", found {}", other.kind()),
                );
                None
            }
        }
    }

    /// A keyword out of `choices`.
    pub(super) fn choice<T: Copy>(
        &mut self,
        cx: &mut Cx,
        key: &'static str,
        choices: &[(&str, T)],
    ) -> Option<T> {
        let (path, line, s) = self.str(cx, key)?;
        match choices.iter().find(|(name, _)| *name == s) {
            Some((_, v)) => Some(*v),
            None => {
                let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                cx.err(
                    &path,
                    line,
                    format!(
                        "unknown value {s:?} (expected one of: {})",
                        names.join(", ")
                    ),
                );
                None
            }
        }
    }
}

pub(super) fn check_name(cx: &mut Cx, path: &str, line: Option<u32>, name: &str) {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
    if !ok {
        cx.err(
            path,
            line,
            format!("invalid name {name:?}: use letters, digits, '_', '-', '.', ':'"),
        );
    }
}

pub(super) fn addr(cx: &mut Cx, path: &str, line: Option<u32>, s: &str) -> Option<SocketAddr> {
    match s.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            cx.err(
                path,
                line,
                format!("invalid address {s:?}: expected IP:PORT, e.g. \"127.0.0.1:8080\" or \"[::1]:8080\""),
            );
            None
        }
    }
}
