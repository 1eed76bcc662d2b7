//! HAProxy's configuration language (a haproxy.cfg) as a third way to write
//! the cluster config: its statements are translated into the same document
//! tree the TOML, YAML and JSON front ends build, with the .cfg's line
//! numbers, so the same validator checks it. Errors only the translation
//! can see (an unknown keyword, a missing argument, a keyword in the wrong
//! section) come with their line and a "did you mean"; the validator's
//! errors are relabelled with the section and keyword of their line.
//! Keywords that change nothing here are accepted with a note.

mod env;
mod fields;
mod global;
mod lex;
mod options;
mod proxy;
mod rules;
mod sections;
mod server;
mod state;
#[cfg(test)]
mod tests;

pub use env::{expand_env, Expanded};

use super::error::ConfigError;
use super::tree::Item;
use std::collections::BTreeMap;

/// A haproxy.cfg translated: the tree, the translation's own errors and
/// notes, and what relabels the validator's errors.
pub(crate) struct Translated {
    pub(crate) root: Item,
    pub(crate) errors: Vec<ConfigError>,
    pub(crate) notes: Vec<ConfigError>,
    labels: Vec<(u32, String)>,
    keywords: BTreeMap<u32, String>,
}

/// Translates a haproxy.cfg (its variables expanded: see [`expand_env`]).
pub(crate) fn translate(text: &str) -> Translated {
    let (stmts, lex_errors) = lex::lex(text);
    let mut out = fields::Out {
        errors: lex_errors,
        notes: Vec::new(),
    };
    let doc = sections::read(&mut out, &stmts);
    let labels = doc.labels.clone();
    let keywords = stmts
        .iter()
        .map(|s| {
            let n = if matches!(
                s.words[0].text.as_str(),
                "option" | "timeout" | "http-check" | "stick" | "tcp-request"
            ) {
                2
            } else {
                1
            };
            let kw: Vec<&str> = s.words.iter().take(n).map(|w| w.text.as_str()).collect();
            (s.line, kw.join(" "))
        })
        .collect();
    Translated {
        root: doc.into_tree(),
        errors: out.errors,
        notes: out.notes,
        labels,
        keywords,
    }
}

impl Translated {
    /// The validator's `errors` in the .cfg's words, after the
    /// translation's own; none at a line the translation already faulted
    /// (nor a "missing" one at the header of a section it faulted a
    /// missing argument in), none twice.
    pub(crate) fn merge(self, errors: Vec<ConfigError>) -> (Vec<ConfigError>, Vec<ConfigError>) {
        let mut all: Vec<ConfigError> = Vec::new();
        for e in &self.errors {
            let mut e = e.clone();
            if e.path.is_empty() {
                e.path = e
                    .line
                    .map(|l| self.label_of(l).to_string())
                    .unwrap_or_default();
            }
            all.push(e);
        }
        for e in errors {
            let faulted = e.line.is_some() && self.errors.iter().any(|t| t.line == e.line);
            if faulted || self.consequence(&e) {
                continue;
            }
            let e = self.relabel(e);
            match all
                .iter_mut()
                .find(|o| o.line == e.line && o.message == e.message)
            {
                Some(o) => o.path = self.label_of(e.line.unwrap_or(0)).to_string(),
                None => all.push(e),
            }
        }
        all.sort_by_key(|e| e.line.unwrap_or(u32::MAX));
        (all, self.notes)
    }

    /// The label of the section `line` is in.
    fn label_of(&self, line: u32) -> &str {
        self.labels
            .iter()
            .rev()
            .find(|(start, _)| *start <= line)
            .map_or("", |(_, l)| l.as_str())
    }

    /// A validator's "missing" at the header of a section where the
    /// translation found a missing argument: the same mistake, told twice.
    fn consequence(&self, e: &ConfigError) -> bool {
        let Some(line) = e.line else {
            return false;
        };
        let header = self.labels.iter().position(|(l, _)| *l == line);
        let Some(i) = header.filter(|_| e.message.starts_with("missing")) else {
            return false;
        };
        let end = self.labels.get(i + 1).map_or(u32::MAX, |(l, _)| *l);
        self.errors.iter().any(|t| {
            t.line.is_some_and(|l| l > line && l < end) && t.message.contains("missing argument")
        })
    }

    /// A validator's error with the section of its line for a path (and
    /// the proxy it was for, when that line is in `defaults`), and the
    /// line's keyword (and the server option it is about) before it.
    fn relabel(&self, e: ConfigError) -> ConfigError {
        let Some(line) = e.line else {
            return e;
        };
        let label = self.label_of(line);
        let mut parts = e.path.split('.');
        let of = match (parts.next(), parts.next()) {
            (Some("frontends"), Some(n)) => format!("frontend {n}"),
            (Some("backends"), Some(n)) => format!("backend {n}"),
            _ => String::new(),
        };
        let path = match label == "defaults" && !of.is_empty() {
            true => format!("{label} (for {of})"),
            false => label.to_string(),
        };
        let header = self.labels.iter().any(|(l, _)| *l == line);
        let message = match self.keywords.get(&line) {
            Some(kw) if !header => {
                let key = e.path.rsplit('.').next().unwrap_or("");
                let key = key.split('[').next().unwrap_or("").replace('_', "-");
                let said = key.is_empty() || kw.contains(' ') || kw.split(' ').any(|w| w == key);
                match said || key == "servers" {
                    true => format!("`{kw}`: {}", e.message),
                    false => format!("`{kw}` `{key}`: {}", e.message),
                }
            }
            _ => e.message,
        };
        ConfigError {
            path,
            line: e.line,
            message,
        }
    }
}
