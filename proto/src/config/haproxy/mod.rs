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
    /// translation's own; none twice for one line.
    pub(crate) fn merge(self, errors: Vec<ConfigError>) -> (Vec<ConfigError>, Vec<ConfigError>) {
        let mut all = self.errors.clone();
        for e in errors {
            if e.line.is_some() && self.errors.iter().any(|t| t.line == e.line) {
                continue;
            }
            all.push(self.relabel(e));
        }
        all.sort_by_key(|e| e.line.unwrap_or(u32::MAX));
        (all, self.notes)
    }

    fn relabel(&self, e: ConfigError) -> ConfigError {
        let Some(line) = e.line else {
            return e;
        };
        let label = self
            .labels
            .iter()
            .rev()
            .find(|(start, _)| *start <= line)
            .map_or("", |(_, l)| l.as_str());
        let mut parts = e.path.split('.');
        let of = match (parts.next(), parts.next()) {
            (Some("frontends"), Some(n)) => format!("frontend {n}"),
            (Some("backends"), Some(n)) => format!("backend {n}"),
            _ => String::new(),
        };
        let on_its_line = label.ends_with(of.rsplit(' ').next().unwrap_or("")) && !of.is_empty();
        let path = if of.is_empty() || on_its_line || label.starts_with("listen") {
            label.to_string()
        } else {
            format!("{label} (for {of})")
        };
        let message = match self.keywords.get(&line) {
            Some(kw) if !self.labels.iter().any(|(l, _)| *l == line) => {
                format!("`{kw}`: {}", e.message)
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
