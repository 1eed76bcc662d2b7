//! Building the document tree from statements: the keys of one frontend or
//! backend table as they are set ([`Fields`]), and the mistakes and notes
//! found on the way ([`Out`]).

use super::lex::Stmt;
use crate::config::error::ConfigError;
use crate::config::suggest::closest;
use crate::config::tree::{Entry, Item, Val};

/// A value at a line.
pub(super) fn at(line: u32, val: Val) -> Item {
    Item {
        val,
        line: Some(line),
    }
}

/// A table of `(key, value)` at a line.
pub(super) fn table(line: u32, entries: Vec<(&str, Val)>) -> Val {
    Val::Table(
        entries
            .into_iter()
            .map(|(k, v)| entry(k, line, v))
            .collect(),
    )
}

fn entry(key: &str, line: u32, val: Val) -> Entry {
    Entry {
        key: key.to_string(),
        key_line: Some(line),
        item: at(line, val),
    }
}

/// The keys of one table, in the order they were first set; setting a key
/// again replaces its value (a later statement wins, as in HAProxy).
#[derive(Debug, Clone, Default)]
pub(super) struct Fields(pub(super) Vec<Entry>);

impl Fields {
    fn slot(&mut self, key: &str, line: u32, empty: Val) -> &mut Entry {
        let i = match self.0.iter().position(|e| e.key == key) {
            Some(i) => i,
            None => {
                self.0.push(entry(key, line, empty));
                self.0.len() - 1
            }
        };
        &mut self.0[i]
    }

    pub(super) fn has(&self, key: &str) -> bool {
        self.0.iter().any(|e| e.key == key)
    }

    pub(super) fn remove(&mut self, key: &str) {
        self.0.retain(|e| e.key != key);
    }

    /// `key = val`.
    pub(super) fn set(&mut self, key: &str, line: u32, val: Val) {
        *self.slot(key, line, Val::Null) = entry(key, line, val);
    }

    /// `table.key = val`.
    pub(super) fn set_in(&mut self, table: &str, key: &str, line: u32, val: Val) {
        let t = self.slot(table, line, Val::Table(Vec::new()));
        if let Val::Table(entries) = &mut t.item.val {
            match entries.iter_mut().find(|e| e.key == key) {
                Some(e) => *e = entry(key, line, val),
                None => entries.push(entry(key, line, val)),
            }
        }
    }

    /// `list += [val]`.
    pub(super) fn push(&mut self, list: &str, line: u32, val: Val) {
        let l = self.slot(list, line, Val::Array(Vec::new()));
        if let Val::Array(items) = &mut l.item.val {
            items.push(at(line, val));
        }
    }

    /// `table.key += [val]`.
    pub(super) fn push_in(&mut self, table: &str, key: &str, line: u32, val: Val) {
        let t = self.slot(table, line, Val::Table(Vec::new()));
        if let Val::Table(entries) = &mut t.item.val {
            let i = match entries.iter().position(|e| e.key == key) {
                Some(i) => i,
                None => {
                    entries.push(entry(key, line, Val::Array(Vec::new())));
                    entries.len() - 1
                }
            };
            if let Val::Array(items) = &mut entries[i].item.val {
                items.push(at(line, val));
            }
        }
    }

    /// The table, at `line`.
    pub(super) fn into_item(self, line: u32) -> Item {
        at(line, Val::Table(self.0))
    }
}

/// The mistakes and notes of a translation.
#[derive(Debug, Default)]
pub(super) struct Out {
    pub(super) errors: Vec<ConfigError>,
    pub(super) notes: Vec<ConfigError>,
}

impl Out {
    pub(super) fn err(&mut self, label: &str, line: u32, message: impl Into<String>) {
        self.errors.push(ConfigError {
            path: label.to_string(),
            line: Some(line),
            message: message.into(),
        });
    }

    pub(super) fn note(&mut self, label: &str, line: u32, message: impl Into<String>) {
        self.notes.push(ConfigError {
            path: label.to_string(),
            line: Some(line),
            message: message.into(),
        });
    }

    /// `word` is not one of `known`: says so, with the nearest one.
    pub(super) fn unknown<'k>(
        &mut self,
        label: &str,
        line: u32,
        what: &str,
        word: &str,
        known: impl IntoIterator<Item = &'k str>,
    ) {
        let hint = match closest(word, known) {
            Some(k) => format!(" (did you mean `{k}`?)"),
            None => String::new(),
        };
        self.err(label, line, format!("unknown {what} `{word}`{hint}"));
    }

    /// The argument `i` of `s` (its keyword being the first `kw_words`
    /// words), or an error naming what is missing.
    pub(super) fn arg<'s>(
        &mut self,
        label: &str,
        s: &'s Stmt,
        i: usize,
        what: &str,
    ) -> Option<&'s str> {
        let got = s.arg(i);
        if got.is_none() {
            let kw = s.words[..i.min(s.words.len())]
                .iter()
                .map(|w| w.text.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            self.err(label, s.line, format!("`{kw}`: missing argument: {what}"));
        }
        got
    }

    /// Complains about words of `s` from `i` on, if any.
    pub(super) fn no_more(&mut self, label: &str, s: &Stmt, i: usize) -> bool {
        if s.words.len() > i {
            let kw = &s.words[0].text;
            let extra = s.raw_from(i);
            self.err(
                label,
                s.line,
                format!("`{kw}`: unexpected argument(s) `{extra}`"),
            );
            return false;
        }
        true
    }
}

/// A number, as an integer value, or an error.
pub(super) fn int(out: &mut Out, label: &str, line: u32, kw: &str, text: &str) -> Option<Val> {
    match text.parse::<i64>() {
        Ok(n) => Some(Val::Int(n)),
        Err(_) => {
            out.err(
                label,
                line,
                format!("`{kw}`: expected a number, found {text:?}"),
            );
            None
        }
    }
}

/// A time (`5000`, `5s`, `100ms`: the validator reads the units), checked
/// here so that the mistake names the keyword.
pub(super) fn time(out: &mut Out, label: &str, line: u32, kw: &str, text: &str) -> Option<Val> {
    match crate::config::duration::parse_duration(text) {
        Ok(_) => Some(Val::Str(text.to_string())),
        Err(e) => {
            out.err(label, line, format!("`{kw}`: {e}"));
            None
        }
    }
}
