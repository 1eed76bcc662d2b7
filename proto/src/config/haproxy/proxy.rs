//! The keywords of the proxy sections (`defaults`, `frontend`, `backend`,
//! `listen`): which sections each belongs in, which side (frontend or
//! backend) it sets, and the simple ones (`mode`, `maxconn`, `retries`,
//! `balance`, `default_backend`, `hash-type`, the logging keywords).
//! `option`, `timeout`, `cookie` and `http-check` are in `options`;
//! `server` and `bind` in `server`; ACLs, rules and stick tables in `rules`.

use super::fields::{int, Out};
use super::lex::Stmt;
use super::state::{Kind, Proxy, Side};
use super::{options, rules, server};
use crate::config::tree::Val;

type Handler = fn(&mut Out, &mut Proxy, &Stmt);

/// `(keyword, allowed in defaults, side, handler)`.
const KEYWORDS: &[(&str, bool, Side, Handler)] = &[
    ("mode", true, Side::Both, mode),
    ("bind", false, Side::Front, server::bind),
    ("default_backend", true, Side::Front, default_backend),
    ("use_backend", false, Side::Front, rules::use_backend),
    ("acl", false, Side::Front, rules::acl),
    ("maxconn", true, Side::Front, maxconn),
    ("timeout", true, Side::Both, options::timeout),
    ("balance", true, Side::Back, balance),
    ("hash-type", true, Side::Back, hash_type),
    ("server", false, Side::Back, server::server),
    ("default-server", true, Side::Back, server::default_server),
    ("cookie", true, Side::Back, options::cookie),
    ("retries", true, Side::Back, retries),
    ("option", true, Side::Both, options::option),
    ("no", true, Side::Both, options::no_option),
    ("http-check", true, Side::Back, options::http_check),
    ("stick-table", false, Side::Both, rules::stick_table),
    ("stick", false, Side::Back, rules::stick),
    ("tcp-request", false, Side::Front, rules::tcp_request),
    ("http-request", false, Side::Front, rules::http_request),
    ("log", true, Side::Both, ignored),
    ("errorfile", true, Side::Both, ignored),
    ("description", false, Side::Both, ignored),
];

/// HAProxy keywords of proxies that raftlb does not implement.
const UNSUPPORTED: &[&str] = &[
    "http-response",
    "http-after-response",
    "redirect",
    "capture",
    "compression",
    "rate-limit",
    "tcp-response",
    "filter",
    "server-template",
    "fullconn",
    "monitor-uri",
    "stats",
    "unique-id-format",
    "unique-id-header",
    "errorloc",
    "errorloc302",
    "errorloc303",
    "email-alert",
    "dispatch",
    "source",
    "persist",
    "force-persist",
    "ignore-persist",
    "log-format",
    "use-server",
    "http-reuse",
    "http-send-name-header",
    "external-check",
    "load-server-state-from-file",
    "id",
    "enabled",
    "disabled",
];

/// One statement of a proxy section.
pub(super) fn keyword(out: &mut Out, p: &mut Proxy, s: &Stmt) {
    let kw = s.words[0].text.as_str();
    let label = p.label.clone();
    let Some(&(_, in_defaults, side, handler)) = KEYWORDS.iter().find(|k| k.0 == kw) else {
        if UNSUPPORTED.contains(&kw) {
            out.err(
                &label,
                s.line,
                format!("`{kw}` is a HAProxy keyword that raftlb does not support"),
            );
        } else {
            let known = KEYWORDS.iter().map(|k| k.0);
            let what = format!("keyword in section {}:", p.kind.word());
            out.unknown(&label, s.line, &what, kw, known);
        }
        return;
    };
    if p.kind == Kind::Defaults && !in_defaults {
        out.err(
            &label,
            s.line,
            format!("`{kw}` is not allowed in a defaults section"),
        );
    } else if p.kind != Kind::Defaults && !p.has(side) {
        p.wrong_side(out, kw, side, s.line);
    } else {
        handler(out, p, s);
    }
}

fn ignored(out: &mut Out, p: &mut Proxy, s: &Stmt) {
    let kw = &s.words[0].text;
    let why = match kw.as_str() {
        "errorfile" => "raftlb answers errors with its own short responses",
        "description" => "a description changes nothing",
        _ => "raftlb logs through its own log (the node file's [log])",
    };
    out.note(
        &p.label,
        s.line,
        format!("`{kw}` is accepted and ignored: {why}"),
    );
}

/// A keyword with one argument; `None` (and an error) otherwise.
pub(super) fn one<'s>(out: &mut Out, p: &Proxy, s: &'s Stmt, what: &str) -> Option<&'s str> {
    let a = out.arg(&p.label, s, 1, what)?;
    out.no_more(&p.label, s, 2).then_some(a)
}

fn mode(out: &mut Out, p: &mut Proxy, s: &Stmt) {
    if let Some(m) = one(out, p, s, "tcp or http") {
        p.fe.set("mode", s.line, Val::Str(m.into()));
        p.be.set("mode", s.line, Val::Str(m.into()));
    }
}

fn default_backend(out: &mut Out, p: &mut Proxy, s: &Stmt) {
    if let Some(b) = one(out, p, s, "the backend's name") {
        p.fe.set("default_backend", s.line, Val::Str(b.into()));
        p.own_default_backend = p.kind != Kind::Defaults;
    }
}

fn maxconn(out: &mut Out, p: &mut Proxy, s: &Stmt) {
    if let Some(n) = one(out, p, s, "the most connections") {
        if let Some(v) = int(out, &p.label, s.line, "maxconn", n) {
            p.fe.set("maxconn", s.line, v);
        }
    }
}

fn retries(out: &mut Out, p: &mut Proxy, s: &Stmt) {
    if let Some(n) = one(out, p, s, "the number of retries") {
        if let Some(v) = int(out, &p.label, s.line, "retries", n) {
            p.be.set("retries", s.line, v);
        }
    }
}

/// `balance ALGO [ARGS]`: the validator reads the words.
fn balance(out: &mut Out, p: &mut Proxy, s: &Stmt) {
    if out.arg(&p.label, s, 1, "the algorithm").is_some() {
        let words: Vec<&str> = s.words[1..].iter().map(|w| w.text.as_str()).collect();
        p.be.set("balance", s.line, Val::Str(words.join(" ")));
    }
}

/// `hash-type consistent` is what raftlb's hashes are.
fn hash_type(out: &mut Out, p: &mut Proxy, s: &Stmt) {
    match s.arg(1) {
        Some("consistent") if s.words.len() == 2 => out.note(
            &p.label,
            s.line,
            "`hash-type consistent` is accepted: raftlb's uri and hdr hashes are consistent",
        ),
        _ => out.err(
            &p.label,
            s.line,
            "`hash-type`: raftlb supports `hash-type consistent` only",
        ),
    }
}
