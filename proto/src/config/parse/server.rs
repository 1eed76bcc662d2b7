//! One server of a backend (`servers = [ { name, address, … } ]`): where it
//! is, its weight and limits, its health check intervals, passive
//! observation, and its persistence cookie value.

use super::keywords::{OBSERVES, ON_ERRORS};
use super::reader::{addr, check_name, join, Cx, Tbl};
use crate::config::defaults;
use crate::config::model::{CheckParams, Mode, Observe, OnError, Server};
use crate::config::tree::Item;

/// One server of a backend in `mode`; `None` when something in it is wrong
/// (the error is in `cx`).
pub(super) fn server(cx: &mut Cx, path: &str, item: &Item, mode: Mode) -> Option<Server> {
    let mut t = Tbl::new(cx, path, item)?;
    let mut ok = true;
    let name = match t.str(cx, "name") {
        Some((npath, line, n)) => {
            check_name(cx, &npath, line, n);
            Some(n.to_string())
        }
        None => {
            cx.err(
                &join(path, "name"),
                item.line,
                "missing: every server needs a name",
            );
            None
        }
    };
    let address = match t.str(cx, "address") {
        Some((apath, line, a)) => addr(cx, &apath, line, a),
        None => {
            cx.err(
                &join(path, "address"),
                item.line,
                "missing: every server needs an address",
            );
            None
        }
    };
    let weight = t
        .uint(cx, "weight", 0, defaults::MAX_WEIGHT)
        .unwrap_or(defaults::WEIGHT);
    let maxconn = t.uint(cx, "maxconn", 0, 10_000_000).unwrap_or(0);
    let backup = t.bool(cx, "backup").unwrap_or(false);
    let check = t.bool(cx, "check").unwrap_or(false);
    let params = check_params(cx, &mut t, path, item, &mut ok);
    let observe = observe(cx, &mut t, path, check, mode, &mut ok);
    let error_limit = t
        .uint(cx, "error_limit", 1, 1_000_000)
        .unwrap_or(defaults::ERROR_LIMIT);
    let on_error = t
        .choice(cx, "on_error", ON_ERRORS)
        .unwrap_or(OnError::FailCheck);
    let cookie = cookie_value(cx, &mut t, &mut ok);
    let slowstart = t.duration(cx, "slowstart");
    t.finish(cx);
    let (name, address) = (name?, address?);
    ok.then(|| Server {
        name,
        address,
        weight,
        maxconn,
        backup,
        check: check.then_some(params),
        observe,
        error_limit,
        on_error,
        slowstart: slowstart.filter(|d| !d.is_zero()),
        cookie,
    })
}

/// The health check's intervals and thresholds, read whether or not
/// `check` is on; no interval may be zero.
fn check_params(cx: &mut Cx, t: &mut Tbl, path: &str, item: &Item, ok: &mut bool) -> CheckParams {
    let inter = t.duration(cx, "inter").unwrap_or(defaults::INTER);
    let fastinter = t.duration(cx, "fastinter").unwrap_or(inter);
    let downinter = t.duration(cx, "downinter").unwrap_or(inter);
    let rise = t.uint(cx, "rise", 1, 1000).unwrap_or(defaults::RISE);
    let fall = t.uint(cx, "fall", 1, 1000).unwrap_or(defaults::FALL);
    for (key, d) in [
        ("inter", inter),
        ("fastinter", fastinter),
        ("downinter", downinter),
    ] {
        if d.is_zero() {
            cx.err(&join(path, key), item.line, "must be greater than zero");
            *ok = false;
        }
    }
    CheckParams {
        inter,
        fastinter,
        downinter,
        rise,
        fall,
    }
}

/// `observe`: needs `check = true`, and `layer7` an HTTP backend.
fn observe(
    cx: &mut Cx,
    t: &mut Tbl,
    path: &str,
    check: bool,
    mode: Mode,
    ok: &mut bool,
) -> Option<Observe> {
    let observe_at = t
        .entries
        .iter()
        .find(|e| e.key == "observe")
        .map(|e| e.item.line);
    let observe = t.choice(cx, "observe", OBSERVES);
    if let Some(o) = observe {
        let line = observe_at.flatten();
        if !check {
            cx.err(
                &join(path, "observe"),
                line,
                "needs `check = true` (observed errors act on the health check)",
            );
            *ok = false;
        }
        if o == Observe::Layer7 && mode != Mode::Http {
            cx.err(
                &join(path, "observe"),
                line,
                "\"layer7\" needs an HTTP backend; use \"layer4\"",
            );
            *ok = false;
        }
    }
    observe
}

/// `cookie`: the value of the backend's persistence cookie for this server.
fn cookie_value(cx: &mut Cx, t: &mut Tbl, ok: &mut bool) -> Option<String> {
    t.str(cx, "cookie").map(|(cpath, line, v)| {
        let ok_value = !v.is_empty()
            && v.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'"' | b'\\'));
        if !ok_value {
            cx.err(&cpath, line, format!("invalid cookie value {v:?}: use letters, digits and punctuation other than ; , \" \\"));
            *ok = false;
        }
        v.to_string()
    })
}
