//! A frontend's stick-table counting and its rules: its own `stick_table`,
//! `track_sc0` (HAProxy's `track-sc0 src [table T]`),
//! `tcp_request_connection` (`tcp-request connection accept|reject`) and
//! `http_request` (`http-request allow|deny [deny_status N]`). Counter
//! fetches in the rules' conditions are checked against the tables: the
//! table must exist and store the counter, `sc0_*` needs `track_sc0`, and a
//! connection rule cannot read what only an HTTP request has.

use super::reader::{Cx, Tbl};
use super::stick;
use crate::config::acl::{self, CounterOf, Fetch};
use crate::config::model::{ConnAction, ConnRule, HttpAction, HttpRule, Mode, StickTable};
use crate::config::tree::{Item, Val};
use std::collections::BTreeMap;

/// What a frontend's rules may read.
pub(super) struct Scope<'a> {
    pub(super) mode: Mode,
    pub(super) acls: &'a acl::AclSet,
    /// The frontend's own table, if it has one.
    pub(super) own: Option<&'a StickTable>,
    /// Every other table (named, and the backends' own).
    pub(super) tables: &'a BTreeMap<String, StickTable>,
    /// The table `track_sc0` counts in.
    pub(super) tracked: Option<&'a str>,
}

impl Scope<'_> {
    fn table(&self, name: &str) -> Option<&StickTable> {
        self.own
            .filter(|t| t.name == name)
            .or_else(|| self.tables.get(name))
    }

    /// Whether `cond` reads only what it may; the first mistake if not.
    fn check(&self, cond: &acl::Condition, http: bool) -> Result<(), String> {
        for f in cond.fetches() {
            match f {
                Fetch::Path | Fetch::Header { .. } | Fetch::Method if !http => {
                    return Err("a connection rule runs before any HTTP request: it can read `src`, the stick-table counters and `always_true`/`always_false`; put HTTP tests in `http_request`".into());
                }
                Fetch::Counter { of, kind } => {
                    let (name, fetch) = match of {
                        CounterOf::Sc0 => match self.tracked {
                            Some(t) => (t, format!("sc0_{}", kind.as_str())),
                            None => {
                                return Err(format!(
                                    "sc0_{} reads the entry `track_sc0` counts in: set `track_sc0` in this frontend",
                                    kind.as_str()
                                ))
                            }
                        },
                        CounterOf::Src { table: Some(t) } => {
                            (t.as_str(), format!("src_{}({t})", kind.as_str()))
                        }
                        CounterOf::Src { table: None } => match self.tracked {
                            Some(t) => (t, format!("src_{}", kind.as_str())),
                            None => {
                                return Err(format!(
                                    "src_{} needs a table: `src_{}(NAME)`, or `track_sc0` in this frontend",
                                    kind.as_str(),
                                    kind.as_str()
                                ))
                            }
                        },
                    };
                    let Some(t) = self.table(name) else {
                        return Err(format!("{fetch}: unknown stick table {name:?}"));
                    };
                    if !t.store.iter().any(|d| d.kind() == *kind) {
                        return Err(format!(
                            "{fetch}: stick table {name:?} does not store {} (add it to its `store`)",
                            kind.as_str()
                        ));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// The frontend's own `stick_table`, named after it (no other table may
/// have that name), and whether it was wrong.
pub(super) fn own_table(
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
            format!("a stick table named {name:?} is declared already (in [stick_tables], or by a backend of that name): a frontend's own table takes the frontend's name"),
        );
        return (None, true);
    }
    match stick::table(cx, &spath, sitem, name) {
        Some(table) => (Some(table), false),
        None => (None, true),
    }
}

/// `track_sc0 = "src"` (in the frontend's own table) or `{ key = "src",
/// table = "NAME" }`: the table's name, and whether it was wrong.
pub(super) fn track_sc0(
    cx: &mut Cx,
    t: &mut Tbl,
    own: Option<&StickTable>,
    tables: &BTreeMap<String, StickTable>,
) -> (Option<String>, bool) {
    let Some((path, item)) = t.get("track_sc0") else {
        return (None, false);
    };
    let (key, table) = match &item.val {
        Val::Str(k) => match own {
            Some(o) => ((path.clone(), item.line, k.clone()), o),
            None => {
                cx.err(&path, item.line, "track_sc0 needs a table: a `stick_table` in this frontend, or `track_sc0 = { key = \"src\", table = \"NAME\" }`");
                return (None, true);
            }
        },
        Val::Table(_) => {
            let Some(mut tt) = Tbl::new(cx, &path, item) else {
                return (None, true);
            };
            let key = tt.str(cx, "key").map(|(p, l, k)| (p, l, k.to_string()));
            let name = tt.str(cx, "table").map(|(p, l, n)| (p, l, n.to_string()));
            tt.finish(cx);
            let (Some(key), Some((tpath, tline, name))) = (key, name) else {
                cx.err(
                    &path,
                    item.line,
                    "expected { key = \"src\", table = \"NAME\" }",
                );
                return (None, true);
            };
            match tables.get(&name) {
                Some(tb) => (key, tb),
                None => {
                    cx.err(&tpath, tline, format!("unknown stick table {name:?}"));
                    return (None, true);
                }
            }
        }
        other => {
            let kind = other.kind();
            cx.err(
                &path,
                item.line,
                format!("expected \"src\" or {{ key = \"src\", table = \"NAME\" }}, found {kind}"),
            );
            return (None, true);
        }
    };
    let (kpath, kline, k) = key;
    if k != "src" {
        cx.err(
            &kpath,
            kline,
            format!("track_sc0 tracks \"src\" (the client's address), not {k:?}"),
        );
        return (None, true);
    }
    if !matches!(table.key_type, crate::config::model::StickType::Ip) {
        cx.err(
            &kpath,
            kline,
            format!("\"src\" needs an ip table; {:?} is not one", table.name),
        );
        return (None, true);
    }
    (Some(table.name.clone()), false)
}

/// A rule's `if` or `unless`, parsed and checked; with whether it was
/// `unless`.
fn condition(
    cx: &mut Cx,
    rpath: &str,
    r: &mut Tbl,
    it: &Item,
    scope: &Scope,
    http: bool,
) -> Option<(acl::Condition, bool)> {
    let cond_if = r.str(cx, "if");
    let cond_unless = r.str(cx, "unless");
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
    let text = text.to_string();
    let cond = match acl::Condition::parse(&text, scope.acls) {
        Ok(c) => c,
        Err(err) => {
            cx.err(&cpath, line, format!("{err}: {text:?}"));
            return None;
        }
    };
    if let Err(why) = scope.check(&cond, http) {
        cx.err(&cpath, line, format!("{why}: {text:?}"));
        return None;
    }
    Some((cond, unless))
}

/// The items of a list of rules at `key`, or an error.
fn rule_items<'a>(
    cx: &mut Cx,
    t: &mut Tbl<'a>,
    key: &'static str,
    example: &str,
    ok: &mut bool,
) -> Option<(String, Option<u32>, &'a [Item])> {
    let (path, item) = t.get(key)?;
    match &item.val {
        Val::Array(items) => Some((path, item.line, items)),
        other => {
            cx.err(
                &path,
                item.line,
                format!(
                    "expected a list of rules such as [ {example} ], found {}",
                    other.kind()
                ),
            );
            *ok = false;
            None
        }
    }
}

/// `tcp_request_connection = [ { action = "reject", if = "…" }, … ]`.
pub(super) fn conn_rules(cx: &mut Cx, t: &mut Tbl, scope: &Scope, ok: &mut bool) -> Vec<ConnRule> {
    let example = "{ action = \"reject\", if = \"{ sc0_conn_rate gt 100 }\" }";
    let Some((path, _, items)) = rule_items(cx, t, "tcp_request_connection", example, ok) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let rpath = format!("{path}[{i}]");
        let Some(mut r) = Tbl::new(cx, &rpath, it) else {
            *ok = false;
            continue;
        };
        let action = match r.str(cx, "action") {
            Some((_, _, "accept")) => Some(ConnAction::Accept),
            Some((_, _, "reject")) => Some(ConnAction::Reject),
            Some((apath, line, other)) => {
                cx.err(
                    &apath,
                    line,
                    format!("unknown action {other:?} (expected accept or reject)"),
                );
                None
            }
            None => {
                cx.err(&rpath, it.line, "missing key `action` (accept or reject)");
                None
            }
        };
        let cond = condition(cx, &rpath, &mut r, it, scope, false);
        r.finish(cx);
        match (action, cond) {
            (Some(action), Some((cond, unless))) => out.push(ConnRule {
                action,
                cond,
                unless,
            }),
            _ => *ok = false,
        }
    }
    out
}

/// `http_request = [ { action = "deny", status = 429, if = "…" }, … ]`.
pub(super) fn http_rules(cx: &mut Cx, t: &mut Tbl, scope: &Scope, ok: &mut bool) -> Vec<HttpRule> {
    let example = "{ action = \"deny\", status = 429, if = \"{ sc0_http_req_rate gt 50 }\" }";
    let Some((path, line, items)) = rule_items(cx, t, "http_request", example, ok) else {
        return Vec::new();
    };
    if scope.mode != Mode::Http && !items.is_empty() {
        cx.err(
            &path,
            line,
            "http_request rules need mode \"http\" (tcp_request_connection works in both)",
        );
        *ok = false;
        return Vec::new();
    }
    let mut out = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let rpath = format!("{path}[{i}]");
        let Some(mut r) = Tbl::new(cx, &rpath, it) else {
            *ok = false;
            continue;
        };
        let status = r.uint(cx, "status", 200, 599).map(|s| s as u16);
        let action = match r.str(cx, "action") {
            Some((_, _, "allow")) => Some(HttpAction::Allow),
            Some((_, _, "deny")) => Some(HttpAction::Deny {
                status: status.unwrap_or(403),
            }),
            Some((apath, l, other)) => {
                cx.err(
                    &apath,
                    l,
                    format!("unknown action {other:?} (expected allow or deny)"),
                );
                None
            }
            None => {
                cx.err(&rpath, it.line, "missing key `action` (allow or deny)");
                None
            }
        };
        if status.is_some() && action == Some(HttpAction::Allow) {
            cx.err(&rpath, it.line, "`status` goes with action \"deny\"");
            *ok = false;
        }
        let cond = condition(cx, &rpath, &mut r, it, scope, true);
        r.finish(cx);
        match (action, cond) {
            (Some(action), Some((cond, unless))) => out.push(HttpRule {
                action,
                cond,
                unless,
            }),
            _ => *ok = false,
        }
    }
    out
}
