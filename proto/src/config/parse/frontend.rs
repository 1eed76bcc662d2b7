//! `[frontends.NAME]`: the addresses a frontend binds, its mode, limits and
//! timeouts, the backend it names, and its HTTP options (ACLs, `use_backend`
//! rules, `forwardfor`, `via`).

use super::global::{timeouts, Defaults, FRONTEND_TIMEOUTS};
use super::keywords::MODES;
use super::reader::{addr, join, Cx, Tbl};
use super::rules;
use crate::config::acl;
use crate::config::defaults;
use crate::config::model::{ForwardFor, Frontend, Global, Mode, StickTable, UseBackend};
use crate::config::tree::{Item, Val};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// What a frontend's settings refer to: the declared backends with their
/// modes, and the stick tables (named, and the backends' own).
pub(super) struct Known<'a> {
    pub(super) backends: &'a BTreeMap<String, Mode>,
    pub(super) tables: &'a BTreeMap<String, StickTable>,
}

/// One frontend, and its own stick table if it declares a valid one.
/// `None` when something in it is wrong (the error is in `cx`).
pub(super) fn frontend(
    cx: &mut Cx,
    path: &str,
    name: &str,
    item: &Item,
    (defaults, global): (&Defaults, &Global),
    refs: &Known,
) -> (Option<Frontend>, Option<StickTable>) {
    let Some(mut t) = Tbl::new(cx, path, item) else {
        return (None, None);
    };
    let backends = refs.backends;
    let mut ok = true;
    let bind = bind(cx, &mut t, path, item, &mut ok);
    let mode = t.choice(cx, "mode", MODES).unwrap_or(defaults.mode);
    let maxconn = t
        .uint(cx, "maxconn", 1, 10_000_000)
        .or(defaults.maxconn)
        .or(global.maxconn)
        .unwrap_or(defaults::FRONTEND_MAXCONN);
    let tos = timeouts(cx, &mut t, FRONTEND_TIMEOUTS, &defaults.timeouts);
    let known = KnownBackends { backends, mode };
    let default_backend = default_backend(cx, &mut t, path, item, &known, &mut ok);
    let acls = acls(cx, &mut t, mode, &mut ok);
    let use_backend = use_backend(cx, &mut t, &acls, &known, &mut ok);
    let forwardfor = forwardfor(cx, &mut t, &mut ok);
    let via = t.bool(cx, "via").unwrap_or(false);
    let (own, own_failed) = rules::own_table(cx, &mut t, name, refs.tables);
    let (track_sc0, track_failed) = rules::track_sc0(cx, &mut t, own.as_ref(), refs.tables);
    ok &= !own_failed && !track_failed;
    let scope = rules::Scope {
        mode,
        acls: &acls,
        own: own.as_ref(),
        tables: refs.tables,
        tracked: track_sc0.as_deref(),
    };
    let tcp_request_connection = rules::conn_rules(cx, &mut t, &scope, &mut ok);
    let http_request = rules::http_rules(cx, &mut t, &scope, &mut ok);
    t.finish(cx);
    let fe = ok.then(|| Frontend {
        name: name.to_string(),
        bind,
        mode,
        default_backend,
        maxconn,
        timeout_client: tos.client,
        timeout_http_request: tos.http_request,
        timeout_http_keep_alive: tos.http_keep_alive,
        acls,
        use_backend,
        forwardfor,
        via,
        track_sc0,
        tcp_request_connection,
        http_request,
    });
    (fe, own)
}

/// `bind`: one address or a list, none twice.
fn bind(cx: &mut Cx, t: &mut Tbl, path: &str, item: &Item, ok: &mut bool) -> Vec<SocketAddr> {
    let mut bind = Vec::new();
    match t.get("bind") {
        None => {
            cx.err(
                &join(path, "bind"),
                item.line,
                "missing: a frontend needs at least one address",
            );
            *ok = false;
        }
        Some((bpath, bitem)) => match &bitem.val {
            Val::Str(s) => bind.extend(addr(cx, &bpath, bitem.line, s)),
            Val::Array(items) if !items.is_empty() => {
                for (i, it) in items.iter().enumerate() {
                    let ipath = format!("{bpath}[{i}]");
                    match &it.val {
                        Val::Str(s) => match addr(cx, &ipath, it.line.or(bitem.line), s) {
                            Some(a) if bind.contains(&a) => {
                                cx.err(&ipath, it.line, format!("address {a} is listed twice"));
                                *ok = false;
                            }
                            Some(a) => bind.push(a),
                            None => *ok = false,
                        },
                        other => {
                            cx.err(
                                &ipath,
                                it.line,
                                format!("expected a string, found {}", other.kind()),
                            );
                            *ok = false;
                        }
                    }
                }
            }
            other => {
                cx.err(
                    &bpath,
                    bitem.line,
                    format!(
                        "expected an address or a list of addresses, found {}",
                        other.kind()
                    ),
                );
                *ok = false;
            }
        },
    }
    bind
}

/// The backends a frontend in `mode` may name.
struct KnownBackends<'a> {
    backends: &'a BTreeMap<String, Mode>,
    mode: Mode,
}

impl KnownBackends<'_> {
    /// Whether `b` is declared and in the frontend's mode; if not, says so.
    fn check(&self, cx: &mut Cx, bpath: &str, line: Option<u32>, b: &str) -> bool {
        let mode = self.mode;
        match self.backends.get(b) {
            Some(be_mode) if *be_mode != mode => {
                cx.err(
                    bpath,
                    line,
                    format!(
                        "backend {b:?} is in {be_mode:?} mode but this frontend is in {mode:?} mode"
                    ),
                );
                false
            }
            Some(_) => true,
            None => {
                cx.err(bpath, line, format!("unknown backend {b:?}"));
                false
            }
        }
    }
}

/// `default_backend`: required in TCP mode.
fn default_backend(
    cx: &mut Cx,
    t: &mut Tbl,
    path: &str,
    item: &Item,
    known: &KnownBackends,
    ok: &mut bool,
) -> Option<String> {
    match t.str(cx, "default_backend") {
        Some((bpath, line, b)) => {
            if !known.check(cx, &bpath, line, b) {
                *ok = false;
            }
            Some(b.to_string())
        }
        None if known.mode == Mode::Tcp => {
            cx.err(
                &join(path, "default_backend"),
                item.line,
                "missing: name the backend that serves this frontend",
            );
            *ok = false;
            None
        }
        None => None,
    }
}

/// `acl = { name = "fetch patterns" }` (or a list of definitions per name).
fn acls(cx: &mut Cx, t: &mut Tbl, mode: Mode, ok: &mut bool) -> acl::AclSet {
    let mut acls = acl::AclSet::new();
    if let Some((apath, aitem)) = t.get("acl") {
        if mode != Mode::Http {
            cx.err(&apath, aitem.line, "ACLs need mode \"http\"");
            *ok = false;
        } else if let Some(at) = Tbl::new(cx, &apath, aitem) {
            for e in at.entries {
                let epath = join(&apath, &e.key);
                let defs: Vec<(&str, Option<u32>)> = match &e.item.val {
                    Val::Str(s) => vec![(s.as_str(), e.item.line)],
                    Val::Array(items) => items
                        .iter()
                        .filter_map(|i| match &i.val {
                            Val::Str(s) => Some((s.as_str(), i.line.or(e.item.line))),
                            _ => None,
                        })
                        .collect(),
                    other => {
                        cx.err(
                            &epath,
                            e.item.line,
                            format!(
                                "expected an ACL such as \"path_beg /blog\", found {}",
                                other.kind()
                            ),
                        );
                        *ok = false;
                        continue;
                    }
                };
                for (text, line) in defs {
                    if let Err(err) = acls.define(&e.key, text) {
                        cx.err(&epath, line, format!("{err}: {text:?}"));
                        *ok = false;
                    }
                }
            }
        }
    }
    acls
}

/// `use_backend = [ { backend = "api", if = "…" }, … ]`, in order.
fn use_backend(
    cx: &mut Cx,
    t: &mut Tbl,
    acls: &acl::AclSet,
    known: &KnownBackends,
    ok: &mut bool,
) -> Vec<UseBackend> {
    let mut use_backend = Vec::new();
    if let Some((upath, uitem)) = t.get("use_backend") {
        let items: &[Item] = match &uitem.val {
            Val::Array(items) => items,
            other => {
                cx.err(
                    &upath,
                    uitem.line,
                    format!(
                        "expected a list of rules such as [ {{ backend = \"api\", if = \"is_api\" }} ], found {}",
                        other.kind()
                    ),
                );
                *ok = false;
                &[]
            }
        };
        if known.mode != Mode::Http && !items.is_empty() {
            cx.err(&upath, uitem.line, "use_backend rules need mode \"http\"");
            *ok = false;
        }
        for (i, it) in items.iter().enumerate() {
            let rpath = format!("{upath}[{i}]");
            match rule(cx, &rpath, it, acls, known) {
                Some(rule) => use_backend.push(rule),
                None => *ok = false,
            }
        }
    }
    use_backend
}

/// One `use_backend` rule; `None` when it is wrong (the error is in `cx`).
fn rule(
    cx: &mut Cx,
    rpath: &str,
    it: &Item,
    acls: &acl::AclSet,
    known: &KnownBackends,
) -> Option<UseBackend> {
    let mut r = Tbl::new(cx, rpath, it)?;
    let backend = match r.str(cx, "backend") {
        Some((bpath, line, b)) => known.check(cx, &bpath, line, b).then(|| b.to_string()),
        None => {
            cx.err(rpath, it.line, "missing key `backend`");
            None
        }
    };
    let cond_if = r.str(cx, "if");
    let cond_unless = r.str(cx, "unless");
    r.finish(cx);
    let (cpath, line, text, unless) = match (cond_if, cond_unless) {
        (Some((p, l, c)), None) => (p, l, c, false),
        (None, Some((p, l, c))) => (p, l, c, true),
        (Some(_), Some(_)) => {
            cx.err(rpath, it.line, "a rule has `if` or `unless`, not both");
            return None;
        }
        (None, None) => {
            cx.err(
                rpath,
                it.line,
                "missing `if` (or `unless`): when does this rule apply?",
            );
            return None;
        }
    };
    let cond = match acl::Condition::parse(text, acls) {
        Ok(c) => Some(c),
        Err(err) => {
            cx.err(&cpath, line, format!("{err}: {text:?}"));
            None
        }
    };
    Some(UseBackend {
        backend: backend?,
        cond: cond?,
        unless,
    })
}

/// `forwardfor = true`, or `{ except = "NETS", header = "NAME" }`.
fn forwardfor(cx: &mut Cx, t: &mut Tbl, ok: &mut bool) -> Option<ForwardFor> {
    let (fpath, fitem) = t.get("forwardfor")?;
    match &fitem.val {
        Val::Bool(true) => Some(ForwardFor {
            except: None,
            header: "X-Forwarded-For".into(),
        }),
        Val::Bool(false) => None,
        Val::Table(_) => Tbl::new(cx, &fpath, fitem).map(|mut ft| {
            let except =
                ft.str(cx, "except").and_then(|(epath, line, nets)| {
                    match acl::Acl::parse(&format!("src {nets}")) {
                        Ok(a) => Some(a),
                        Err(e) => {
                            cx.err(&epath, line, format!("{}: {nets:?}", e.message));
                            *ok = false;
                            None
                        }
                    }
                });
            let header = match ft.str(cx, "header") {
                None => "X-Forwarded-For".to_string(),
                Some((hpath, line, h)) => {
                    let token = !h.is_empty()
                        && h.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                    if !token {
                        cx.err(&hpath, line, format!("invalid header name {h:?}"));
                        *ok = false;
                    }
                    h.to_string()
                }
            };
            ft.finish(cx);
            ForwardFor { except, header }
        }),
        other => {
            cx.err(
                &fpath,
                fitem.line,
                format!(
                    "expected true, false or {{ except = \"NETS\", header = \"NAME\" }}, found {}",
                    other.kind()
                ),
            );
            *ok = false;
            None
        }
    }
}
