//! `option …` and `no option …`, `timeout …`, `cookie …` and
//! `http-check …`: each maps to one setting of a frontend or a backend.

use super::fields::{at, int, table, time, Out};
use super::lex::Stmt;
use super::state::{Proxy, Side};
use crate::config::tree::Val;

/// Options that change nothing here (logging), with a note.
const LOG_OPTIONS: &[&str] = &[
    "httplog",
    "tcplog",
    "dontlognull",
    "log-health-checks",
    "dontlog-normal",
    "log-separate-errors",
    "logasap",
];

/// The options raftlb implements, with the side they set.
const OPTIONS: &[(&str, Side)] = &[
    ("httpchk", Side::Back),
    ("tcp-check", Side::Back),
    ("forwardfor", Side::Front),
    ("redispatch", Side::Back),
    ("allbackups", Side::Back),
];

/// Whether `p` may set `name`, which sets `side`; if not, says so.
fn side_ok(out: &mut Out, p: &Proxy, s: &Stmt, name: &str, side: Side) -> bool {
    if p.has(side) {
        return true;
    }
    p.wrong_side(out, name, side, s.line);
    false
}

/// `option NAME [ARGS]`.
pub(super) fn option(out: &mut Out, p: &mut Proxy, s: &Stmt) {
    let Some(name) = out.arg(&p.label, s, 1, "the option's name") else {
        return;
    };
    if LOG_OPTIONS.contains(&name) {
        let why = "raftlb logs one line per connection (or request) through its own log";
        out.note(
            &p.label,
            s.line,
            format!("`option {name}` is accepted and ignored: {why}"),
        );
        return;
    }
    let Some(&(_, side)) = OPTIONS.iter().find(|o| o.0 == name) else {
        let known = OPTIONS
            .iter()
            .map(|o| o.0)
            .chain(LOG_OPTIONS.iter().copied());
        out.unknown(&p.label, s.line, "option", name, known);
        return;
    };
    if !side_ok(out, p, s, &format!("option {name}"), side) {
        return;
    }
    let line = s.line;
    match name {
        "httpchk" => httpchk(out, p, s),
        "tcp-check" if out.no_more(&p.label, s, 2) => {
            p.be.set(
                "health_check",
                line,
                table(line, vec![("kind", Val::Str("tcp".into()))]),
            );
        }
        "forwardfor" => forwardfor(out, p, s),
        "redispatch" | "allbackups" if out.no_more(&p.label, s, 2) => {
            p.be.set(name, line, Val::Bool(true));
        }
        _ => {}
    }
}

/// `no option NAME`.
pub(super) fn no_option(out: &mut Out, p: &mut Proxy, s: &Stmt) {
    if s.arg(1) != Some("option") {
        out.err(&p.label, s.line, "`no` goes before `option NAME`");
        return;
    }
    let Some(name) = out.arg(&p.label, s, 2, "the option's name") else {
        return;
    };
    if !out.no_more(&p.label, s, 3) {
        return;
    }
    match name {
        n if LOG_OPTIONS.contains(&n) => {
            out.note(
                &p.label,
                s.line,
                format!("`no option {n}` is accepted and ignored"),
            );
        }
        "redispatch" | "allbackups" => p.be.set(name, s.line, Val::Bool(false)),
        "forwardfor" => p.fe.remove("forwardfor"),
        "httpchk" | "tcp-check" => p.be.remove("health_check"),
        other => {
            let known = OPTIONS
                .iter()
                .map(|o| o.0)
                .chain(LOG_OPTIONS.iter().copied());
            out.unknown(&p.label, s.line, "option", other, known);
        }
    }
}

/// `option httpchk [[METHOD] URI [VERSION]]`; a version written as
/// `"HTTP/1.1\r\nHost:\ NAME"` gives the check's Host header.
fn httpchk(out: &mut Out, p: &mut Proxy, s: &Stmt) {
    let args: Vec<&str> = s.words[2..].iter().map(|w| w.text.as_str()).collect();
    let (method, path, version) = match args.as_slice() {
        [] => ("OPTIONS", "/", None),
        [uri] => ("OPTIONS", *uri, None),
        [method, uri] => (*method, *uri, None),
        [method, uri, version] => (*method, *uri, Some(*version)),
        _ => {
            out.no_more(&p.label, s, 5);
            return;
        }
    };
    let line = s.line;
    p.be.set_in("health_check", "kind", line, Val::Str("http".into()));
    p.be.set_in("health_check", "method", line, Val::Str(method.into()));
    p.be.set_in("health_check", "path", line, Val::Str(path.into()));
    if let Some(v) = version {
        match v.split_once("\r\nHost:") {
            Some((_, host)) => {
                let host = host.trim().to_string();
                p.be.set_in("health_check", "host", line, Val::Str(host));
            }
            None if v.starts_with("HTTP/1.") => {}
            None => out.err(
                &p.label,
                line,
                format!(
                    "`option httpchk`: unknown HTTP version {v:?} (expected HTTP/1.0 or HTTP/1.1)"
                ),
            ),
        }
    }
}

/// `option forwardfor [except NETWORK] [header NAME]`.
fn forwardfor(out: &mut Out, p: &mut Proxy, s: &Stmt) {
    let mut entries: Vec<(&str, Val)> = Vec::new();
    let mut i = 2;
    while let Some(word) = s.arg(i) {
        match word {
            "except" | "header" => {
                let Some(v) = out.arg(
                    &p.label,
                    s,
                    i + 1,
                    if word == "except" {
                        "a network"
                    } else {
                        "a header name"
                    },
                ) else {
                    return;
                };
                entries.push((word, Val::Str(v.into())));
                i += 2;
            }
            other => {
                out.unknown(
                    &p.label,
                    s.line,
                    "`option forwardfor` argument",
                    other,
                    ["except", "header"],
                );
                return;
            }
        }
    }
    let val = if entries.is_empty() {
        Val::Bool(true)
    } else {
        table(s.line, entries)
    };
    p.fe.set("forwardfor", s.line, val);
}

/// The timeouts raftlb has, their key in the tree, and their side.
const TIMEOUTS: &[(&str, &str, Side)] = &[
    ("connect", "connect", Side::Back),
    ("server", "server", Side::Back),
    ("queue", "queue", Side::Back),
    ("tunnel", "tunnel", Side::Back),
    ("check", "check", Side::Back),
    ("client", "client", Side::Front),
    ("http-request", "http_request", Side::Front),
    ("http-keep-alive", "http_keep_alive", Side::Front),
];

/// `timeout NAME TIME`.
pub(super) fn timeout(out: &mut Out, p: &mut Proxy, s: &Stmt) {
    let Some(name) = out.arg(&p.label, s, 1, "which timeout") else {
        return;
    };
    let Some(&(_, key, side)) = TIMEOUTS.iter().find(|t| t.0 == name) else {
        out.unknown(
            &p.label,
            s.line,
            "timeout",
            name,
            TIMEOUTS.iter().map(|t| t.0),
        );
        return;
    };
    let Some(text) = out.arg(&p.label, s, 2, "a time such as 5s or 5000 (ms)") else {
        return;
    };
    if !out.no_more(&p.label, s, 3) {
        return;
    }
    let Some(v) = time(out, &p.label, s.line, &format!("timeout {name}"), text) else {
        return;
    };
    if !p.has(side) {
        let (other, has) = if side == Side::Back {
            ("backend", "frontend")
        } else {
            ("frontend", "backend")
        };
        let why = format!("`timeout {name}` is ignored: it is a {other} timeout and this {has} has no {other} (as HAProxy warns)");
        out.note(&p.label, s.line, why);
        return;
    }
    match side {
        Side::Front => p.fe.set_in("timeout", key, s.line, v),
        _ => p.be.set_in("timeout", key, s.line, v),
    }
}

/// `cookie NAME insert [indirect] [nocache]`.
pub(super) fn cookie(out: &mut Out, p: &mut Proxy, s: &Stmt) {
    let Some(name) = out.arg(&p.label, s, 1, "the cookie's name") else {
        return;
    };
    let mut entries = vec![("name", Val::Str(name.into()))];
    for w in &s.words[2..] {
        match w.text.as_str() {
            "insert" => entries.push(("mode", Val::Str("insert".into()))),
            "indirect" | "nocache" => entries.push((
                if w.text == "indirect" {
                    "indirect"
                } else {
                    "nocache"
                },
                Val::Bool(true),
            )),
            m @ ("rewrite" | "prefix" | "passive" | "preserve" | "httponly" | "secure"
            | "domain" | "maxidle" | "maxlife" | "postonly" | "dynamic" | "attr") => {
                out.err(&p.label, s.line, format!("`cookie`: `{m}` is not supported (raftlb has `insert`, `indirect`, `nocache`)"));
                return;
            }
            other => {
                out.unknown(
                    &p.label,
                    s.line,
                    "`cookie` argument",
                    other,
                    ["insert", "indirect", "nocache"],
                );
                return;
            }
        }
    }
    if !entries.iter().any(|(k, _)| *k == "mode") {
        out.err(
            &p.label,
            s.line,
            "`cookie`: raftlb supports `insert` mode only: write `cookie NAME insert …`",
        );
        return;
    }
    p.be.set("cookie", s.line, table(s.line, entries));
}

/// `http-check expect status CODE[,CODE…]`, `http-check send [meth M] [uri U]
/// [ver V] [hdr Host NAME]`.
pub(super) fn http_check(out: &mut Out, p: &mut Proxy, s: &Stmt) {
    let line = s.line;
    match s.arg(1) {
        Some("expect") => {
            let (Some("status"), Some(code)) = (s.arg(2), s.arg(3)) else {
                out.err(
                    &p.label,
                    line,
                    "`http-check expect`: raftlb supports `http-check expect status CODE[,CODE…]` only",
                );
                return;
            };
            if !out.no_more(&p.label, s, 4) {
                return;
            }
            let mut codes = Vec::new();
            for c in code.split(',') {
                match int(out, &p.label, line, "http-check expect status", c) {
                    Some(v) => codes.push(at(line, v)),
                    None => return,
                }
            }
            p.be.set_in("health_check", "expect_status", line, Val::Array(codes));
        }
        Some("send") => send(out, p, s),
        Some(other) => out.unknown(
            &p.label,
            line,
            "`http-check` action",
            other,
            ["expect", "send"],
        ),
        None => {
            out.arg(&p.label, s, 1, "expect or send");
        }
    }
}

fn send(out: &mut Out, p: &mut Proxy, s: &Stmt) {
    let mut i = 2;
    while let Some(word) = s.arg(i) {
        let (key, n) = match word {
            "meth" => ("method", 1),
            "uri" => ("path", 1),
            "ver" => ("", 1),
            "hdr" => ("host", 2),
            other => {
                out.unknown(
                    &p.label,
                    s.line,
                    "`http-check send` argument",
                    other,
                    ["meth", "uri", "ver", "hdr"],
                );
                return;
            }
        };
        let Some(v) = out.arg(&p.label, s, i + n, "a value") else {
            return;
        };
        if word == "hdr" && !s.arg(i + 1).is_some_and(|h| h.eq_ignore_ascii_case("host")) {
            out.err(
                &p.label,
                s.line,
                "`http-check send hdr`: raftlb sends a Host header only",
            );
            return;
        }
        if !key.is_empty() {
            p.be.set_in("health_check", key, s.line, Val::Str(v.into()));
        }
        i += n + 1;
    }
}
