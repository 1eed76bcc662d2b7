//! ACLs and the rules that use them (`acl`, `use_backend`, `tcp-request
//! connection`, `http-request allow|deny`), stick tables (`stick-table`)
//! and `stick on`. Conditions go to the validator as written, so HAProxy's
//! quoting in them means what it means in HAProxy.

use super::fields::{int, table, Out};
use super::lex::Stmt;
use super::state::{Kind, Proxy};
use crate::config::tree::Val;

/// The condition of a rule whose action takes the words before `from`:
/// `("if" | "unless", condition)`; `("if", "TRUE")` when there is none.
fn condition(out: &mut Out, p: &Proxy, s: &Stmt, from: usize) -> Option<(&'static str, String)> {
    match s.arg(from) {
        None => Some(("if", "TRUE".into())),
        Some(w @ ("if" | "unless")) => {
            if s.arg(from + 1).is_none() {
                out.err(
                    &p.label,
                    s.line,
                    format!("`{}`: missing condition after `{w}`", s.words[0].text),
                );
                return None;
            }
            let key = if w == "if" { "if" } else { "unless" };
            Some((key, s.raw_from(from + 1)))
        }
        Some(other) => {
            out.err(
                &p.label,
                s.line,
                format!(
                    "`{}`: unexpected `{other}` (expected `if` or `unless` and a condition)",
                    s.words[0].text
                ),
            );
            None
        }
    }
}

/// `acl NAME CRITERION [FLAGS] [VALUES]`.
pub(super) fn acl(out: &mut Out, p: &mut Proxy, s: &Stmt) {
    let Some(name) = out.arg(&p.label, s, 1, "the ACL's name") else {
        return;
    };
    if out
        .arg(&p.label, s, 2, "a criterion such as path_beg")
        .is_none()
    {
        return;
    }
    p.fe.push_in("acl", name, s.line, Val::Str(s.raw_from(2)));
}

/// `use_backend NAME [if|unless CONDITION]`.
pub(super) fn use_backend(out: &mut Out, p: &mut Proxy, s: &Stmt) {
    let Some(name) = out.arg(&p.label, s, 1, "the backend's name") else {
        return;
    };
    if let Some((key, cond)) = condition(out, p, s, 2) {
        let rule = table(
            s.line,
            vec![("backend", Val::Str(name.into())), (key, Val::Str(cond))],
        );
        p.fe.push("use_backend", s.line, rule);
    }
}

/// `tcp-request connection accept|reject [COND]`, or `tcp-request
/// connection track-sc0 src [table NAME]`.
pub(super) fn tcp_request(out: &mut Out, p: &mut Proxy, s: &Stmt) {
    if s.arg(1) != Some("connection") {
        out.err(
            &p.label,
            s.line,
            "`tcp-request`: raftlb supports `tcp-request connection …` only",
        );
        return;
    }
    let Some(action) = out.arg(&p.label, s, 2, "accept, reject or track-sc0") else {
        return;
    };
    match action {
        "accept" | "reject" => {
            if let Some((key, cond)) = condition(out, p, s, 3) {
                let rule = table(
                    s.line,
                    vec![("action", Val::Str(action.into())), (key, Val::Str(cond))],
                );
                p.fe.push("tcp_request_connection", s.line, rule);
            }
        }
        "track-sc0" => track(out, p, s),
        other => out.unknown(
            &p.label,
            s.line,
            "`tcp-request connection` action",
            other,
            ["accept", "reject", "track-sc0"],
        ),
    }
}

fn track(out: &mut Out, p: &mut Proxy, s: &Stmt) {
    let Some(key) = out.arg(&p.label, s, 3, "what to track (src)") else {
        return;
    };
    let table_name = match (s.arg(4), s.arg(5)) {
        (None, _) => None,
        (Some("table"), Some(t)) if out.no_more(&p.label, s, 6) => Some(t.to_string()),
        _ => {
            out.err(
                &p.label,
                s.line,
                "`track-sc0`: expected `track-sc0 src [table NAME]` (no condition)",
            );
            return;
        }
    };
    let table_name = table_name.or_else(|| (p.kind == Kind::Listen).then(|| p.name.clone()));
    let val = match table_name {
        None => Val::Str(key.into()),
        Some(t) => table(
            s.line,
            vec![("key", Val::Str(key.into())), ("table", Val::Str(t))],
        ),
    };
    p.fe.set("track_sc0", s.line, val);
}

/// `http-request allow|deny [deny_status N] [COND]`.
pub(super) fn http_request(out: &mut Out, p: &mut Proxy, s: &Stmt) {
    let Some(action) = out.arg(&p.label, s, 1, "allow or deny") else {
        return;
    };
    if action != "allow" && action != "deny" {
        out.err(
            &p.label,
            s.line,
            format!("`http-request {action}` is not supported by raftlb (it has allow and deny)"),
        );
        return;
    }
    let mut entries = vec![("action", Val::Str(action.into()))];
    let mut next = 2;
    if action == "deny" && s.arg(2) == Some("deny_status") {
        let Some(code) = out.arg(&p.label, s, 3, "a status") else {
            return;
        };
        let Some(v) = int(out, &p.label, s.line, "deny_status", code) else {
            return;
        };
        entries.push(("status", v));
        next = 4;
    }
    if let Some((key, cond)) = condition(out, p, s, next) {
        entries.push((key, Val::Str(cond)));
        p.fe.push("http_request", s.line, table(s.line, entries));
    }
}

/// `stick-table type ip|integer|string [len N] size N [expire T] [store
/// LIST] [nopurge] [peers NAME]`.
pub(super) fn stick_table(out: &mut Out, p: &mut Proxy, s: &Stmt) {
    let mut entries: Vec<(&str, Val)> = Vec::new();
    let mut i = 1;
    while let Some(word) = s.arg(i) {
        if word == "nopurge" || word == "peers" {
            let why = "raftlb syncs every table through the cluster, and evicts the entry that expires first";
            out.note(
                &p.label,
                s.line,
                format!("`stick-table … {word}` is accepted and ignored: {why}"),
            );
            i += if word == "peers" { 2 } else { 1 };
            continue;
        }
        let known = ["type", "len", "size", "expire", "store", "nopurge", "peers"];
        if !known[..5].contains(&word) {
            out.unknown(&p.label, s.line, "`stick-table` argument", word, known);
            return;
        }
        let Some(v) = out.arg(&p.label, s, i + 1, &format!("the value of `{word}`")) else {
            return;
        };
        let val = match word {
            "len" => match int(out, &p.label, s.line, "len", v) {
                Some(v) => v,
                None => return,
            },
            "store" => Val::Array(
                v.split(',')
                    .map(|d| super::fields::at(s.line, Val::Str(d.to_string())))
                    .collect(),
            ),
            _ => Val::Str(v.into()),
        };
        entries.push((word, val));
        i += 2;
    }
    let val = table(s.line, entries);
    if p.kind == Kind::Frontend {
        p.fe.set("stick_table", s.line, val);
    } else {
        p.be.set("stick_table", s.line, val);
    }
}

/// `stick on KEY [table NAME]`.
pub(super) fn stick(out: &mut Out, p: &mut Proxy, s: &Stmt) {
    if s.arg(1) != Some("on") {
        out.err(
            &p.label,
            s.line,
            "`stick`: raftlb supports `stick on KEY [table NAME]` only",
        );
        return;
    }
    let Some(key) = out.arg(
        &p.label,
        s,
        2,
        "the key (src, req.cook(NAME), req.hdr(NAME))",
    ) else {
        return;
    };
    let val = match (s.arg(3), s.arg(4)) {
        (None, _) => Val::Str(key.into()),
        (Some("table"), Some(t)) if out.no_more(&p.label, s, 5) => {
            if t == p.name {
                Val::Str(key.into())
            } else {
                table(
                    s.line,
                    vec![("key", Val::Str(key.into())), ("table", Val::Str(t.into()))],
                )
            }
        }
        _ => {
            out.err(
                &p.label,
                s.line,
                "`stick on`: expected `stick on KEY [table NAME]` (no condition)",
            );
            return;
        }
    };
    p.be.set("stick_on", s.line, val);
}
