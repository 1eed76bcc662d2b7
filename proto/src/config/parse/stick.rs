//! Stick tables: the named ones (`[stick_tables.NAME]`) and a backend's own
//! (`stick_table = { type, size, expire, store }`), and a backend's
//! `stick_on`, checked against the table it names: its key type, and the
//! mode the key needs.

use super::reader::{check_name, join, Cx, Tbl};
use crate::config::duration::parse_duration;
use crate::config::model::{Mode, StickData, StickKey, StickOn, StickTable, StickType};
use crate::config::tree::{Item, Val};
use std::collections::BTreeMap;
use std::time::Duration;

/// The longest `expire` HAProxy accepts (2^31 ms, about 24 days).
const MAX_EXPIRE: Duration = Duration::from_millis(1 << 31);

/// `len` of a `string` table when none is given (HAProxy's default).
const DEFAULT_STRING_LEN: u32 = 32;

/// The longest string key a table may keep.
const MAX_STRING_LEN: u32 = 1024;

/// `[stick_tables.*]`: the valid named tables.
pub(super) fn named_tables(cx: &mut Cx, top: &mut Tbl) -> BTreeMap<String, StickTable> {
    let mut tables = BTreeMap::new();
    let Some((path, item)) = top.get("stick_tables") else {
        return tables;
    };
    let Some(mut tt) = Tbl::new(cx, &path, item) else {
        return tables;
    };
    for e in tt.entries {
        let tpath = join(&path, &e.key);
        check_name(cx, &tpath, e.key_line, &e.key);
        if let Some(t) = table(cx, &tpath, &e.item, &e.key) {
            tables.insert(e.key.clone(), t);
        }
    }
    tt.used.iter_mut().for_each(|u| *u = true);
    tt.finish(cx);
    tables
}

/// One table's settings, named `name`.
pub(super) fn table(cx: &mut Cx, path: &str, item: &Item, name: &str) -> Option<StickTable> {
    let mut t = Tbl::new(cx, path, item)?;
    let before = cx.errors.len();
    let key_type = match t.str(cx, "type") {
        Some((_, _, "string")) => {
            let len = t
                .uint(cx, "len", 1, MAX_STRING_LEN)
                .unwrap_or(DEFAULT_STRING_LEN);
            Some(StickType::String { len })
        }
        Some((_, _, "ip")) => Some(StickType::Ip),
        Some((_, _, "integer")) => Some(StickType::Integer),
        Some((tpath, line, other)) => {
            cx.err(
                &tpath,
                line,
                format!("unknown table type {other:?} (expected one of: ip, integer, string)"),
            );
            None
        }
        None => {
            cx.err(
                path,
                item.line,
                "missing key `type` (ip, integer or string)",
            );
            None
        }
    };
    let size = size(cx, &mut t, path, item);
    let expire = t.duration(cx, "expire");
    if let Some(e) = expire.filter(|e| *e > MAX_EXPIRE || e.is_zero()) {
        cx.err(
            &join(path, "expire"),
            t.line_of("expire"),
            format!("{e:?} is out of range: more than 0, at most 24 days"),
        );
    }
    let store = store(cx, &mut t);
    t.finish(cx);
    if cx.errors.len() > before {
        return None;
    }
    Some(StickTable {
        name: name.to_string(),
        key_type: key_type?,
        size: size?,
        expire,
        store,
    })
}

/// `size`: a number of entries, with an optional `k`, `m` or `g` suffix
/// (×1024, ×1024², ×1024³, as HAProxy reads it).
fn size(cx: &mut Cx, t: &mut Tbl, path: &str, item: &Item) -> Option<u32> {
    let Some((spath, sitem)) = t.get("size") else {
        cx.err(
            path,
            item.line,
            "missing key `size` (most entries, e.g. \"100k\")",
        );
        return None;
    };
    let parsed = match &sitem.val {
        Val::Int(n) => u64::try_from(*n).ok(),
        Val::Str(s) => {
            let (digits, factor) = match s.as_bytes().last() {
                Some(b'k' | b'K') => (&s[..s.len() - 1], 1u64 << 10),
                Some(b'm' | b'M') => (&s[..s.len() - 1], 1 << 20),
                Some(b'g' | b'G') => (&s[..s.len() - 1], 1 << 30),
                _ => (s.as_str(), 1),
            };
            digits
                .parse::<u64>()
                .ok()
                .and_then(|n| n.checked_mul(factor))
        }
        other => {
            let kind = other.kind();
            cx.err(
                &spath,
                sitem.line,
                format!("expected a size such as \"100k\", found {kind}"),
            );
            return None;
        }
    };
    match parsed {
        Some(n) if n >= 1 && n <= u64::from(u32::MAX) => Some(n as u32),
        _ => {
            cx.err(
                &spath,
                sitem.line,
                "invalid size: expected 1 to 4294967295 entries, as a number or with a k, m or g suffix (\"100k\")",
            );
            None
        }
    }
}

/// `store = ["conn_cur", "conn_rate(10s)", …]`.
fn store(cx: &mut Cx, t: &mut Tbl) -> Vec<StickData> {
    let Some((path, item)) = t.get("store") else {
        return Vec::new();
    };
    let Val::Array(items) = &item.val else {
        let kind = item.val.kind();
        cx.err(
            &path,
            item.line,
            format!("expected an array of counters, found {kind}"),
        );
        return Vec::new();
    };
    let mut out: Vec<StickData> = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let ipath = format!("{path}[{i}]");
        let Val::Str(s) = &it.val else {
            let kind = it.val.kind();
            cx.err(&ipath, it.line, format!("expected a string, found {kind}"));
            continue;
        };
        match stick_data(s) {
            Ok(d)
                if out
                    .iter()
                    .any(|o| std::mem::discriminant(o) == std::mem::discriminant(&d)) =>
            {
                cx.err(&ipath, it.line, format!("{s:?} is stored twice"));
            }
            Ok(d) => out.push(d),
            Err(why) => cx.err(&ipath, it.line, why),
        }
    }
    out
}

/// One stored counter: `conn_cur`, or `conn_rate(T)`, `http_req_rate(T)`,
/// `bytes_in_rate(T)` with a period.
pub(super) fn stick_data(s: &str) -> Result<StickData, String> {
    if s == "conn_cur" {
        return Ok(StickData::ConnCur);
    }
    type Rate = fn(Duration) -> StickData;
    let rates: [(&str, Rate); 3] = [
        ("conn_rate", StickData::ConnRate),
        ("http_req_rate", StickData::HttpReqRate),
        ("bytes_in_rate", StickData::BytesInRate),
    ];
    for (name, make) in rates {
        let Some(arg) = s.strip_prefix(name) else {
            continue;
        };
        let period = arg
            .strip_prefix('(')
            .and_then(|a| a.strip_suffix(')'))
            .ok_or_else(|| format!("invalid {s:?}: expected {name}(PERIOD), e.g. {name}(10s)"))?;
        return match parse_duration(period) {
            Ok(d) if !d.is_zero() && d <= MAX_EXPIRE => Ok(make(d)),
            Ok(_) => Err(format!(
                "invalid {s:?}: the period must be more than 0 and at most 24 days"
            )),
            Err(e) => Err(format!("invalid {s:?}: {e}")),
        };
    }
    Err(format!(
        "unknown counter {s:?} (expected one of: conn_cur, conn_rate(PERIOD), http_req_rate(PERIOD), bytes_in_rate(PERIOD))"
    ))
}

/// A backend's `stick_on`: `"src"` (or `"req.cook(NAME)"`, `"req.hdr(NAME)"`)
/// stores in the backend's own table; `{ key = …, table = "NAME" }` in a
/// named one. `own` is the backend's own table, if it has one. Returns the
/// setting, and whether it was wrong.
pub(super) fn stick_on(
    cx: &mut Cx,
    t: &mut Tbl,
    mode: Mode,
    own: Option<&StickTable>,
    named: &BTreeMap<String, StickTable>,
) -> (Option<StickOn>, bool) {
    let Some((path, item)) = t.get("stick_on") else {
        return (None, false);
    };
    let found = match &item.val {
        Val::Str(k) => match own {
            Some(table) => Some((path.clone(), item.line, k.as_str(), table)),
            None => {
                cx.err(
                    &path,
                    item.line,
                    "stick_on needs a table: a `stick_table` in this backend, or `stick_on = { key = \"src\", table = \"NAME\" }`",
                );
                None
            }
        },
        Val::Table(_) => on_named(cx, &path, item, named),
        other => {
            let kind = other.kind();
            cx.err(
                &path,
                item.line,
                format!("expected a key such as \"src\", or a table, found {kind}"),
            );
            None
        }
    };
    let Some((kpath, line, text, table)) = found else {
        return (None, true);
    };
    match stick_key(text).and_then(|key| check_key(&key, mode, table).map(|()| key)) {
        Ok(key) => (
            Some(StickOn {
                key,
                table: table.name.clone(),
            }),
            false,
        ),
        Err(why) => {
            cx.err(&kpath, line, why);
            (None, true)
        }
    }
}

/// `{ key = "src", table = "NAME" }`: the key's text with its path and line,
/// and the named table.
fn on_named<'a>(
    cx: &mut Cx,
    path: &str,
    item: &'a Item,
    named: &'a BTreeMap<String, StickTable>,
) -> Option<(String, Option<u32>, &'a str, &'a StickTable)> {
    let mut st = Tbl::new(cx, path, item)?;
    let key = st.str(cx, "key");
    let table = st.str(cx, "table");
    st.finish(cx);
    let Some((kpath, kline, key)) = key else {
        cx.err(path, item.line, "missing key `key` (e.g. \"src\")");
        return None;
    };
    let Some((tpath, tline, name)) = table else {
        cx.err(
            path,
            item.line,
            "missing key `table` (a name from [stick_tables])",
        );
        return None;
    };
    match named.get(name) {
        Some(t) => Some((kpath, kline, key, t)),
        None => {
            let known: Vec<&str> = named.keys().map(String::as_str).collect();
            let hint = match crate::config::suggest::closest(name, known.iter().copied()) {
                Some(k) => format!(" (did you mean {k:?}?)"),
                None if known.is_empty() => " (no [stick_tables] are declared)".to_string(),
                None => format!(" (declared: {})", known.join(", ")),
            };
            cx.err(&tpath, tline, format!("unknown stick table {name:?}{hint}"));
            None
        }
    }
}

/// `src`, `req.cook(NAME)`, `req.hdr(NAME)`.
fn stick_key(text: &str) -> Result<StickKey, String> {
    let arg = |prefix: &str| {
        text.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(')'))
            .filter(|n| {
                !n.is_empty()
                    && n.bytes()
                        .all(|b| b.is_ascii_graphic() && !b"()=;,".contains(&b))
            })
    };
    if text == "src" {
        Ok(StickKey::Src)
    } else if let Some(name) = arg("req.cook(") {
        Ok(StickKey::ReqCookie(name.to_string()))
    } else if let Some(name) = arg("req.hdr(") {
        Ok(StickKey::ReqHdr(name.to_ascii_lowercase()))
    } else {
        Err(format!(
            "unknown stick key {text:?} (expected one of: src, req.cook(NAME), req.hdr(NAME))"
        ))
    }
}

/// The key fits the table's type, and the backend's mode has it.
fn check_key(key: &StickKey, mode: Mode, table: &StickTable) -> Result<(), String> {
    let (needs, word) = match key {
        StickKey::Src => (StickType::Ip, "src"),
        StickKey::ReqCookie(_) => (StickType::String { len: 0 }, "req.cook(…)"),
        StickKey::ReqHdr(_) => (StickType::String { len: 0 }, "req.hdr(…)"),
    };
    if !matches!(key, StickKey::Src) && mode != Mode::Http {
        return Err(format!("stick key {word} needs mode \"http\""));
    }
    let same = std::mem::discriminant(&needs) == std::mem::discriminant(&table.key_type);
    if same {
        return Ok(());
    }
    let type_name = |t: StickType| match t {
        StickType::Ip => "ip",
        StickType::Integer => "integer",
        StickType::String { .. } => "string",
    };
    Err(format!(
        "stick key {word} needs a table of type \"{}\"; table {:?} is of type \"{}\"",
        type_name(needs),
        table.name,
        type_name(table.key_type)
    ))
}
