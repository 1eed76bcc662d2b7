//! `[backends.NAME]`: a backend's mode, balance algorithm, cookie
//! persistence, retries and timeouts, its health check, and its list of
//! servers (each read by `server`).

use super::global::{timeouts, Defaults, BACKEND_TIMEOUTS};
use super::keywords::{balance, MODES};
use super::reader::{join, Cx, Tbl};
use super::server::server;
use super::stick;
use crate::config::model::{
    Backend, BackendTimeouts, Cookie, HealthCheck, Mode, Server, StickTable,
};
use crate::config::tree::{Item, Val};
use std::collections::{BTreeMap, BTreeSet};

/// What reading one backend gives: its mode even when something in it is
/// wrong (so that frontends naming it are checked against it), the backend
/// if it is valid, and its own stick table if it declares a valid one.
pub(super) struct Read {
    pub(super) mode: Mode,
    pub(super) backend: Option<Backend>,
    pub(super) own_table: Option<StickTable>,
}

/// One backend (see [`Read`]); `tables` are the named stick tables its
/// `stick_on` may use.
pub(super) fn backend(
    cx: &mut Cx,
    path: &str,
    name: &str,
    item: &Item,
    defaults: &Defaults,
    tables: &BTreeMap<String, StickTable>,
) -> Read {
    let Some(mut t) = Tbl::new(cx, path, item) else {
        return Read {
            mode: defaults.mode,
            backend: None,
            own_table: None,
        };
    };
    let mode = t.choice(cx, "mode", MODES).unwrap_or(defaults.mode);
    let (balance, hash_key) = balance(cx, &mut t).unwrap_or(defaults.balance.clone());
    let hash_in_tcp = hash_key.is_some() && mode != Mode::Http;
    if hash_in_tcp {
        cx.err(
            &join(path, "balance"),
            item.line,
            "balance uri and hdr(…) need mode \"http\"",
        );
    }
    let (cookie, cookie_failed) = cookie(cx, &mut t, mode);
    let retries = t.uint(cx, "retries", 0, 100).unwrap_or(defaults.retries);
    let redispatch = t.bool(cx, "redispatch").unwrap_or(defaults.redispatch);
    let allbackups = t.bool(cx, "allbackups").unwrap_or(defaults.allbackups);
    let tos = timeouts(cx, &mut t, BACKEND_TIMEOUTS, &defaults.timeouts);
    let health_check = match t.get("health_check") {
        Some((hpath, hitem)) => health_check(cx, &hpath, hitem),
        None => Some(HealthCheck::Tcp),
    };
    let (own_table, own_failed) = own_table(cx, &mut t, name, tables);
    let (stick_on, stick_failed) = stick::stick_on(cx, &mut t, mode, own_table.as_ref(), tables);
    let mut ok = health_check.is_some() && !hash_in_tcp && !cookie_failed;
    ok &= !own_failed && !stick_failed;
    let servers = servers(cx, &mut t, name, mode, &mut ok);
    t.finish(cx);
    let backend = ok.then(|| Backend {
        name: name.to_string(),
        mode,
        balance,
        hash_key,
        cookie,
        retries,
        redispatch,
        allbackups,
        timeout: BackendTimeouts {
            connect: tos.connect,
            server: tos.server,
            queue: tos.queue.or(tos.connect),
            tunnel: tos.tunnel,
            check: tos.check,
        },
        health_check: health_check.expect("ok implies a health check"),
        servers,
        stick_on,
    });
    Read {
        mode,
        backend,
        own_table,
    }
}

/// The backend's own `stick_table = { … }`, named after it (a name the
/// named tables must not take too), and whether it was wrong.
fn own_table(
    cx: &mut Cx,
    t: &mut Tbl,
    name: &str,
    tables: &BTreeMap<String, StickTable>,
) -> (Option<StickTable>, bool) {
    let Some((spath, sitem)) = t.get("stick_table") else {
        return (None, false);
    };
    if tables.contains_key(name) {
        cx.err(
            &spath,
            sitem.line,
            format!("a stick table named {name:?} is declared in [stick_tables] too: a backend's own table takes the backend's name"),
        );
        return (None, true);
    }
    match stick::table(cx, &spath, sitem, name) {
        Some(table) => (Some(table), false),
        None => (None, true),
    }
}

/// `cookie = { name = "SERVERID", mode = "insert", … }`, and whether it
/// failed (wrong, or in a TCP backend).
fn cookie(cx: &mut Cx, t: &mut Tbl, mode: Mode) -> (Option<Cookie>, bool) {
    let Some((cpath, citem)) = t.get("cookie") else {
        return (None, false);
    };
    let c = Tbl::new(cx, &cpath, citem).and_then(|ct| cookie_table(cx, ct, &cpath, citem));
    let mut failed = false;
    if c.is_none() || mode != Mode::Http {
        if c.is_some() {
            cx.err(&cpath, citem.line, "cookie persistence needs mode \"http\"");
        }
        failed = true;
    }
    (c, failed)
}

/// The settings in the `cookie` table.
fn cookie_table(cx: &mut Cx, mut ct: Tbl, cpath: &str, citem: &Item) -> Option<Cookie> {
    let name = ct.str(cx, "name").map(|(_, _, n)| n.to_string());
    let mode = ct
        .str(cx, "mode")
        .map(|(mpath, line, m)| (mpath, line, m.to_string()));
    let indirect = ct.bool(cx, "indirect").unwrap_or(false);
    let nocache = ct.bool(cx, "nocache").unwrap_or(false);
    ct.finish(cx);
    if let Some((mpath, line, m)) = mode {
        if m != "insert" {
            cx.err(
                &mpath,
                line,
                format!("unknown cookie mode {m:?}: only \"insert\" is supported"),
            );
            return None;
        }
    }
    match name {
        Some(n)
            if !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) =>
        {
            Some(Cookie {
                name: n,
                indirect,
                nocache,
            })
        }
        Some(n) => {
            cx.err(
                &join(cpath, "name"),
                citem.line,
                format!("invalid cookie name {n:?}"),
            );
            None
        }
        None => {
            cx.err(cpath, citem.line, "missing `name` (e.g. \"SERVERID\")");
            None
        }
    }
}

/// `servers = [ … ]`, each name once in the backend.
fn servers(cx: &mut Cx, t: &mut Tbl, name: &str, mode: Mode, ok: &mut bool) -> Vec<Server> {
    let mut servers = Vec::new();
    if let Some((spath, sitem)) = t.get("servers") {
        match &sitem.val {
            Val::Array(items) => {
                let mut names = BTreeSet::new();
                for (i, it) in items.iter().enumerate() {
                    let ipath = format!("{spath}[{i}]");
                    match server(cx, &ipath, it, mode) {
                        Some(s) => {
                            if !names.insert(s.name.clone()) {
                                cx.err(
                                    &format!("{ipath}.name"),
                                    it.line,
                                    format!(
                                        "duplicate server name {:?} in backend {name:?}",
                                        s.name
                                    ),
                                );
                                *ok = false;
                            }
                            servers.push(s);
                        }
                        None => *ok = false,
                    }
                }
            }
            other => {
                cx.err(
                    &spath,
                    sitem.line,
                    format!("expected an array of servers, found {}", other.kind()),
                );
                *ok = false;
            }
        }
    }
    servers
}

/// `health_check = { kind = "tcp" }` or `{ kind = "http", … }`.
fn health_check(cx: &mut Cx, path: &str, item: &Item) -> Option<HealthCheck> {
    let mut t = Tbl::new(cx, path, item)?;
    let kind = t.choice(cx, "kind", &[("tcp", "tcp"), ("http", "http")]);
    let out = match kind {
        Some("http") => {
            let method = t.str(cx, "method").map(|(_, _, m)| m.to_string());
            let hpath = match t.str(cx, "path") {
                Some((p, line, s)) if !s.starts_with('/') => {
                    cx.err(&p, line, format!("invalid path {s:?}: must start with '/'"));
                    None
                }
                Some((_, _, s)) => Some(s.to_string()),
                None => Some("/".to_string()),
            };
            let host = t.str(cx, "host").map(|(_, _, h)| h.to_string());
            let mut expect = Vec::new();
            let mut ok = hpath.is_some();
            if let Some((epath, eitem)) = t.get("expect_status") {
                match &eitem.val {
                    Val::Array(items) => {
                        for (i, it) in items.iter().enumerate() {
                            match it.val {
                                Val::Int(c) if (100..=599).contains(&c) => expect.push(c as u16),
                                _ => {
                                    cx.err(
                                        &format!("{epath}[{i}]"),
                                        it.line,
                                        "expected an HTTP status 100..=599",
                                    );
                                    ok = false;
                                }
                            }
                        }
                    }
                    _ => {
                        cx.err(
                            &epath,
                            eitem.line,
                            "expected a list of statuses, e.g. [200]",
                        );
                        ok = false;
                    }
                }
            }
            ok.then(|| HealthCheck::Http {
                method: method.unwrap_or_else(|| "OPTIONS".to_string()),
                path: hpath.expect("ok implies a path"),
                host,
                expect_status: expect,
            })
        }
        Some(_) => Some(HealthCheck::Tcp),
        None => {
            if !t.entries.iter().any(|e| e.key == "kind") {
                cx.err(
                    &join(path, "kind"),
                    item.line,
                    "missing: \"tcp\" or \"http\"",
                );
            }
            None
        }
    };
    t.finish(cx);
    out
}
