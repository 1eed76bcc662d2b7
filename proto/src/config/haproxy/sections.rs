//! The sections of a haproxy.cfg (`global`, `defaults`, `frontend`,
//! `backend`, `listen`) and what each becomes in the document tree:
//! `global` the `[global]` table, a frontend a `[frontends.NAME]`, a
//! backend a `[backends.NAME]` (or, holding only a stick table, a
//! `[stick_tables.NAME]`), a listen both a frontend and a backend of its
//! name. A `defaults` section is not a table: each proxy after it starts
//! from a copy of the latest one, as HAProxy's inheritance goes.

use super::fields::{Fields, Out};
use super::lex::Stmt;
use super::state::{Kind, Proxy};
use super::{global, proxy};
use crate::config::tree::{Entry, Item, Val};
use std::collections::BTreeMap;

/// The sections HAProxy has that raftlb does not read.
const OTHER_SECTIONS: &[&str] = &[
    "peers",
    "resolvers",
    "userlist",
    "mailers",
    "program",
    "http-errors",
    "ring",
    "cache",
    "fcgi-app",
];
const SECTIONS: &[&str] = &["global", "defaults", "frontend", "backend", "listen"];

/// The document's sections and where each starts.
#[derive(Default)]
pub(super) struct Doc {
    global: Fields,
    frontends: Vec<Proxy>,
    backends: Vec<Proxy>,
    /// The first line of each section, with its label (`backend web`).
    pub(super) labels: Vec<(u32, String)>,
}

/// Where the statements are going.
enum Current {
    Nothing,
    Global,
    Ignored,
    Proxy(Box<Proxy>),
}

/// Reads every statement into its section.
pub(super) fn read(out: &mut Out, stmts: &[Stmt]) -> Doc {
    let mut doc = Doc::default();
    let mut defaults = Proxy::new(Kind::Defaults, "", 0);
    let mut current = Current::Nothing;
    for s in stmts {
        let kw = s.words[0].text.as_str();
        if SECTIONS.contains(&kw) || OTHER_SECTIONS.contains(&kw) {
            close(
                out,
                &mut doc,
                &mut defaults,
                std::mem::replace(&mut current, Current::Nothing),
            );
            current = open(out, &mut doc, &defaults, s);
            continue;
        }
        match &mut current {
            Current::Nothing => {
                let known = SECTIONS.iter().copied();
                out.unknown("", s.line, "keyword out of any section:", kw, known);
            }
            Current::Global => global::keyword(out, &mut doc.global, s),
            Current::Ignored => {}
            Current::Proxy(p) => proxy::keyword(out, p, s),
        }
    }
    close(out, &mut doc, &mut defaults, current);
    doc
}

/// A section header.
fn open(out: &mut Out, doc: &mut Doc, defaults: &Proxy, s: &Stmt) -> Current {
    let kw = s.words[0].text.as_str();
    let kind = match kw {
        "global" => Kind::Defaults,
        "defaults" => Kind::Defaults,
        "frontend" => Kind::Frontend,
        "backend" => Kind::Backend,
        "listen" => Kind::Listen,
        other => {
            doc.labels.push((s.line, other.to_string()));
            out.err(
                other,
                s.line,
                format!("section `{other}` is not supported by raftlb"),
            );
            return Current::Ignored;
        }
    };
    if kw == "global" {
        doc.labels.push((s.line, "global".into()));
        out.no_more("global", s, 1);
        return Current::Global;
    }
    if kind == Kind::Defaults {
        doc.labels.push((s.line, "defaults".into()));
        if s.words.len() > 1 {
            out.err("defaults", s.line, "named defaults sections (and `from`) are not supported: use one unnamed `defaults` before the proxies it is for");
        }
        return Current::Proxy(Box::new(defaults.fresh(s.line)));
    }
    let label = format!("{kw} {}", s.arg(1).unwrap_or(""));
    doc.labels.push((s.line, label.clone()));
    let Some(name) = out.arg(&label, s, 1, "the proxy's name") else {
        return Current::Ignored;
    };
    out.no_more(&label, s, 2);
    let taken = |ps: &[Proxy]| {
        ps.iter()
            .find(|p| p.name == name)
            .map(|p| (p.label.clone(), p.line))
    };
    let clash = match kind {
        Kind::Frontend => taken(&doc.frontends),
        Kind::Backend => taken(&doc.backends),
        _ => taken(&doc.frontends).or_else(|| taken(&doc.backends)),
    };
    if let Some((other, line)) = clash {
        out.err(
            &label,
            s.line,
            format!("`{name}` is declared already ({other}, line {line})"),
        );
    }
    let mut p = defaults.inherit(kind, name, s.line);
    p.label = label;
    Current::Proxy(Box::new(p))
}

/// The end of a section.
fn close(out: &mut Out, doc: &mut Doc, defaults: &mut Proxy, current: Current) {
    let Current::Proxy(mut p) = current else {
        return;
    };
    match p.kind {
        Kind::Defaults => *defaults = *p,
        Kind::Frontend => doc.frontends.push(*p),
        Kind::Backend => doc.backends.push(*p),
        Kind::Listen => {
            if !p.fe.has("bind") {
                let msg = format!(
                    "listen {} has no `bind`: it is a backend only (HAProxy warns that it has no listener)",
                    p.name
                );
                out.note(&p.label, p.line, msg);
            }
            if !p.own_default_backend {
                let name = p.name.clone();
                p.fe.set("default_backend", p.line, Val::Str(name));
            }
            doc.frontends.push((*p).clone());
            doc.backends.push(*p);
        }
    }
}

impl Doc {
    /// The document tree.
    pub(super) fn into_tree(self) -> Item {
        let mut top: Vec<Entry> = Vec::new();
        let mut put = |key: &str, line: u32, val: Val| {
            top.push(Entry {
                key: key.into(),
                key_line: Some(line),
                item: Item {
                    val,
                    line: Some(line),
                },
            })
        };
        if !self.global.0.is_empty() {
            put("global", 1, Val::Table(self.global.0));
        }
        let (mut backends, mut tables) = (BTreeMap::new(), BTreeMap::new());
        for p in self.backends {
            let only_table = p.be.has("stick_table") && !p.be.has("servers");
            let (key, map) = if only_table {
                ("stick_table", &mut tables)
            } else {
                ("", &mut backends)
            };
            let item = if only_table {
                p.be.0
                    .into_iter()
                    .find(|e| e.key == key)
                    .map(|e| e.item)
                    .expect("it has a stick_table")
            } else {
                p.be.into_item(p.line)
            };
            map.entry(p.name).or_insert(item);
        }
        let frontends: BTreeMap<String, Item> = self
            .frontends
            .into_iter()
            .filter(|p| p.kind == Kind::Frontend || p.fe.has("bind"))
            .map(|p| (p.name, p.fe.into_item(p.line)))
            .rev()
            .collect();
        for (key, map) in [
            ("stick_tables", tables),
            ("backends", backends),
            ("frontends", frontends),
        ] {
            if !map.is_empty() {
                put(key, 1, named(map));
            }
        }
        Item {
            val: Val::Table(top),
            line: Some(1),
        }
    }
}

fn named(map: BTreeMap<String, Item>) -> Val {
    Val::Table(
        map.into_iter()
            .map(|(key, item)| Entry {
                key,
                key_line: item.line,
                item,
            })
            .collect(),
    )
}
