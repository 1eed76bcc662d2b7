//! Turns a document tree into a validated [`ClusterConfig`], collecting every
//! error with its path and line instead of stopping at the first.

use super::suggest::closest;
use super::tree::{self, Entry, Item, Val};
use super::*;
use std::collections::BTreeSet;
use std::net::IpAddr;

pub(crate) fn parse(text: &str, format: Format) -> Result<ClusterConfig, ConfigErrors> {
    let root = tree::load(text, format)?;
    let mut cx = Cx::default();
    let config = build(&mut cx, &root);
    if cx.errors.is_empty() {
        Ok(config.expect("no errors means a config was built"))
    } else {
        cx.errors.sort_by_key(|e| e.line.unwrap_or(u32::MAX));
        Err(ConfigErrors(cx.errors))
    }
}

#[derive(Default)]
struct Cx {
    errors: Vec<ConfigError>,
}

impl Cx {
    fn err(&mut self, path: &str, line: Option<u32>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            path: path.to_string(),
            line,
            message: message.into(),
        });
    }
}

/// A table being read: remembers which keys were asked for, so that the rest
/// can be reported as unknown, with a suggestion.
struct Tbl<'a> {
    path: String,
    line: Option<u32>,
    entries: &'a [Entry],
    used: Vec<bool>,
    known: Vec<&'static str>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl<'a> Tbl<'a> {
    fn new(cx: &mut Cx, path: &str, item: &'a Item) -> Option<Tbl<'a>> {
        match &item.val {
            Val::Table(entries) => Some(Tbl {
                path: path.to_string(),
                line: item.line,
                entries,
                used: vec![false; entries.len()],
                known: Vec::new(),
            }),
            other => {
                cx.err(
                    path,
                    item.line,
                    format!("expected a table, found {}", other.kind()),
                );
                None
            }
        }
    }

    /// The value under `key`, with its path.
    fn get(&mut self, key: &'static str) -> Option<(String, &'a Item)> {
        self.known.push(key);
        let i = self.entries.iter().position(|e| e.key == key)?;
        self.used[i] = true;
        let e = &self.entries[i];
        Some((join(&self.path, key), &e.item))
    }

    /// Reports every key that nothing asked for.
    fn finish(self, cx: &mut Cx) {
        for (e, used) in self.entries.iter().zip(&self.used) {
            if *used {
                continue;
            }
            let hint = match closest(&e.key, self.known.iter().copied()) {
                Some(k) => format!(" (did you mean `{k}`?)"),
                None => format!(" (expected one of: {})", self.known.join(", ")),
            };
            cx.err(
                &join(&self.path, &e.key),
                e.key_line.or(e.item.line).or(self.line),
                format!("unknown key `{}`{hint}", e.key),
            );
        }
    }

    fn str(&mut self, cx: &mut Cx, key: &'static str) -> Option<(String, Option<u32>, &'a str)> {
        let (path, item) = self.get(key)?;
        match &item.val {
            Val::Str(s) => Some((path, item.line, s.as_str())),
            other => {
                cx.err(
                    &path,
                    item.line,
                    format!("expected a string, found {}", other.kind()),
                );
                None
            }
        }
    }

    fn bool(&mut self, cx: &mut Cx, key: &'static str) -> Option<bool> {
        let (path, item) = self.get(key)?;
        match &item.val {
            Val::Bool(b) => Some(*b),
            other => {
                cx.err(
                    &path,
                    item.line,
                    format!("expected true or false, found {}", other.kind()),
                );
                None
            }
        }
    }

    fn uint(&mut self, cx: &mut Cx, key: &'static str, min: u32, max: u32) -> Option<u32> {
        let (path, item) = self.get(key)?;
        match &item.val {
            Val::Int(i) if (min as i64..=max as i64).contains(i) => Some(*i as u32),
            Val::Int(i) => {
                cx.err(
                    &path,
                    item.line,
                    format!("{i} is out of range {min}..={max}"),
                );
                None
            }
            other => {
                cx.err(
                    &path,
                    item.line,
                    format!("expected an integer, found {}", other.kind()),
                );
                None
            }
        }
    }

    fn duration(&mut self, cx: &mut Cx, key: &'static str) -> Option<Duration> {
        let (path, item) = self.get(key)?;
        match &item.val {
            Val::Str(s) => match parse_duration(s) {
                Ok(d) => Some(d),
                Err(e) => {
                    cx.err(&path, item.line, e);
                    None
                }
            },
            Val::Int(ms) if *ms >= 0 => Some(Duration::from_millis(*ms as u64)),
            other => {
                cx.err(
                    &path,
                    item.line,
                    format!("expected a duration such as \"2s\", found {}", other.kind()),
                );
                None
            }
        }
    }

    /// A keyword out of `choices`.
    fn choice<T: Copy>(
        &mut self,
        cx: &mut Cx,
        key: &'static str,
        choices: &[(&str, T)],
    ) -> Option<T> {
        let (path, line, s) = self.str(cx, key)?;
        match choices.iter().find(|(name, _)| *name == s) {
            Some((_, v)) => Some(*v),
            None => {
                let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                cx.err(
                    &path,
                    line,
                    format!(
                        "unknown value {s:?} (expected one of: {})",
                        names.join(", ")
                    ),
                );
                None
            }
        }
    }
}

const MODES: &[(&str, Mode)] = &[("tcp", Mode::Tcp), ("http", Mode::Http)];
const BALANCES: &[(&str, Balance)] = &[
    ("roundrobin", Balance::RoundRobin),
    ("static-rr", Balance::StaticRr),
    ("leastconn", Balance::LeastConn),
    ("first", Balance::First),
    ("source", Balance::Source),
    ("random", Balance::Random),
];
/// `balance`: one of [`BALANCES`], or `uri [whole] [len N] [depth N]`, or
/// `hdr(name)`.
fn balance(cx: &mut Cx, t: &mut Tbl) -> Option<(Balance, Option<HashKey>)> {
    let (path, line, text) = t.str(cx, "balance")?;
    let mut words = text.split_whitespace();
    let first = words.next().unwrap_or("");
    if let Some(name) = first.strip_prefix("hdr(").and_then(|r| r.strip_suffix(')')) {
        if name.is_empty() || words.next().is_some() {
            cx.err(&path, line, format!("invalid {text:?}: expected hdr(NAME)"));
            return None;
        }
        let name = name.to_ascii_lowercase();
        return Some((Balance::Hdr, Some(HashKey::Hdr { name })));
    }
    if first == "uri" {
        let (mut whole, mut len, mut depth) = (false, 0, 0);
        while let Some(w) = words.next() {
            match w {
                "whole" => whole = true,
                "len" | "depth" => match words.next().and_then(|n| n.parse::<u32>().ok()) {
                    Some(n) if n > 0 => {
                        if w == "len" {
                            len = n
                        } else {
                            depth = n
                        }
                    }
                    _ => {
                        cx.err(
                            &path,
                            line,
                            format!("invalid {text:?}: `{w}` takes a number above 0"),
                        );
                        return None;
                    }
                },
                other => {
                    cx.err(
                        &path,
                        line,
                        format!("invalid {text:?}: unknown option `{other}` (expected whole, len N, depth N)"),
                    );
                    return None;
                }
            }
        }
        return Some((Balance::Uri, Some(HashKey::Uri { whole, len, depth })));
    }
    match BALANCES.iter().find(|(n, _)| *n == text) {
        Some((_, b)) => Some((*b, None)),
        None => {
            let mut names: Vec<&str> = BALANCES.iter().map(|(n, _)| *n).collect();
            names.extend(["uri", "hdr(NAME)"]);
            cx.err(
                &path,
                line,
                format!(
                    "unknown value {text:?} (expected one of: {})",
                    names.join(", ")
                ),
            );
            None
        }
    }
}

const OBSERVES: &[(&str, Observe)] = &[("layer4", Observe::Layer4), ("layer7", Observe::Layer7)];
const ON_ERRORS: &[(&str, OnError)] = &[
    ("fastinter", OnError::FastInter),
    ("fail-check", OnError::FailCheck),
    ("sudden-death", OnError::SuddenDeath),
    ("mark-down", OnError::MarkDown),
];

/// Settings from `[defaults]` that frontends and backends inherit.
struct Defaults {
    mode: Mode,
    maxconn: Option<u32>,
    retries: u32,
    redispatch: bool,
    allbackups: bool,
    balance: (Balance, Option<HashKey>),
    timeouts: RawTimeouts,
}

#[derive(Default, Clone)]
struct RawTimeouts {
    connect: Option<Duration>,
    client: Option<Duration>,
    server: Option<Duration>,
    queue: Option<Duration>,
    tunnel: Option<Duration>,
    check: Option<Duration>,
    http_request: Option<Duration>,
    http_keep_alive: Option<Duration>,
}

fn timeouts(cx: &mut Cx, t: &mut Tbl, allowed: &[&'static str], base: &RawTimeouts) -> RawTimeouts {
    let mut out = base.clone();
    let Some((path, item)) = t.get("timeout") else {
        return out;
    };
    let Some(mut tt) = Tbl::new(cx, &path, item) else {
        return out;
    };
    for key in allowed {
        let v = tt.duration(cx, key);
        let slot = match *key {
            "connect" => &mut out.connect,
            "client" => &mut out.client,
            "server" => &mut out.server,
            "queue" => &mut out.queue,
            "tunnel" => &mut out.tunnel,
            "check" => &mut out.check,
            "http_request" => &mut out.http_request,
            "http_keep_alive" => &mut out.http_keep_alive,
            _ => unreachable!("timeout keys are listed above"),
        };
        if v.is_some() {
            *slot = v;
        }
    }
    tt.finish(cx);
    out
}

const ALL_TIMEOUTS: &[&str] = &[
    "connect",
    "client",
    "server",
    "queue",
    "tunnel",
    "check",
    "http_request",
    "http_keep_alive",
];
const FRONTEND_TIMEOUTS: &[&str] = &["client", "http_request", "http_keep_alive"];
const BACKEND_TIMEOUTS: &[&str] = &["connect", "server", "queue", "tunnel", "check"];

fn build(cx: &mut Cx, root: &Item) -> Option<ClusterConfig> {
    let mut top = Tbl::new(cx, "", root)?;

    let mut global = Global { maxconn: None };
    if let Some((path, item)) = top.get("global") {
        if let Some(mut g) = Tbl::new(cx, &path, item) {
            global.maxconn = g.uint(cx, "maxconn", 1, 10_000_000);
            g.finish(cx);
        }
    }

    let mut defaults = Defaults {
        mode: Mode::Tcp,
        maxconn: None,
        retries: defaults::RETRIES,
        redispatch: false,
        allbackups: false,
        balance: (Balance::RoundRobin, None),
        timeouts: RawTimeouts::default(),
    };
    if let Some((path, item)) = top.get("defaults") {
        if let Some(mut d) = Tbl::new(cx, &path, item) {
            defaults.mode = d.choice(cx, "mode", MODES).unwrap_or(defaults.mode);
            defaults.maxconn = d.uint(cx, "maxconn", 1, 10_000_000);
            defaults.retries = d.uint(cx, "retries", 0, 100).unwrap_or(defaults.retries);
            defaults.redispatch = d.bool(cx, "redispatch").unwrap_or(false);
            defaults.allbackups = d.bool(cx, "allbackups").unwrap_or(false);
            if let Some(b) = balance(cx, &mut d) {
                defaults.balance = b;
            }
            defaults.timeouts = timeouts(cx, &mut d, ALL_TIMEOUTS, &RawTimeouts::default());
            d.finish(cx);
        }
    }

    let mut backends = BTreeMap::new();
    // Every declared backend with its mode, valid or not, so that a mistake
    // inside a backend is not reported again at each frontend that names it.
    let mut declared: BTreeMap<String, Mode> = BTreeMap::new();
    if let Some((path, item)) = top.get("backends") {
        if let Some(mut bt) = Tbl::new(cx, &path, item) {
            for e in bt.entries {
                let bpath = join(&path, &e.key);
                check_name(cx, &bpath, e.key_line, &e.key);
                let (mode, b) = backend(cx, &bpath, &e.key, &e.item, &defaults);
                declared.insert(e.key.clone(), mode);
                if let Some(b) = b {
                    backends.insert(e.key.clone(), b);
                }
            }
            bt.used.iter_mut().for_each(|u| *u = true);
            bt.finish(cx);
        }
    }

    let mut frontends = BTreeMap::new();
    let mut binds_seen: BTreeMap<SocketAddr, String> = BTreeMap::new();
    if let Some((path, item)) = top.get("frontends") {
        if let Some(mut ft) = Tbl::new(cx, &path, item) {
            for e in ft.entries {
                let fpath = join(&path, &e.key);
                check_name(cx, &fpath, e.key_line, &e.key);
                if let Some(f) =
                    frontend(cx, &fpath, &e.key, &e.item, &defaults, &global, &declared)
                {
                    for addr in &f.bind {
                        if let Some(other) = binds_seen.insert(*addr, e.key.clone()) {
                            cx.err(
                                &format!("{fpath}.bind"),
                                e.item.line,
                                format!("address {addr} is already bound by frontend {other:?}"),
                            );
                        }
                    }
                    frontends.insert(e.key.clone(), f);
                }
            }
            ft.used.iter_mut().for_each(|u| *u = true);
            ft.finish(cx);
        }
    }
    let mut vips_out = Vec::new();
    if let Some((path, item)) = top.get("vips") {
        vips_out = vips(cx, &path, item);
    }
    top.finish(cx);

    Some(ClusterConfig {
        global,
        frontends,
        backends,
        vips: vips_out,
    })
}

/// `[[vips]]`: each address once, with its announcement settings.
fn vips(cx: &mut Cx, path: &str, item: &Item) -> Vec<Vip> {
    let Val::Array(items) = &item.val else {
        cx.err(
            path,
            item.line,
            format!(
                "expected an array of VIPs ([[vips]]), found {}",
                item.val.kind()
            ),
        );
        return Vec::new();
    };
    let mut out: Vec<Vip> = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let ipath = format!("{path}[{i}]");
        let Some(mut t) = Tbl::new(cx, &ipath, it) else {
            continue;
        };
        let address = match t.str(cx, "address") {
            Some((apath, line, s)) => cidr(cx, &apath, line, s),
            None => {
                cx.err(
                    &ipath,
                    it.line,
                    "missing key `address` (e.g. \"198.51.100.50/24\")",
                );
                None
            }
        };
        let garp_repeat = t
            .uint(cx, "garp_repeat", 1, 100)
            .unwrap_or(defaults::GARP_REPEAT);
        let garp_interval = t
            .duration(cx, "garp_interval")
            .unwrap_or(defaults::GARP_INTERVAL);
        let garp_refresh = match t.duration(cx, "garp_refresh") {
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
            None => Some(defaults::GARP_REFRESH),
        };
        t.finish(cx);
        let Some((address, prefix)) = address else {
            continue;
        };
        if out.iter().any(|v| v.address == address) {
            cx.err(
                &format!("{ipath}.address"),
                it.line,
                format!("VIP {address} is declared twice"),
            );
            continue;
        }
        out.push(Vip {
            address,
            prefix,
            garp_repeat,
            garp_interval,
            garp_refresh,
        });
    }
    out
}

/// `ADDRESS/PREFIX`, a host address (not the network's or loopback).
fn cidr(cx: &mut Cx, path: &str, line: Option<u32>, s: &str) -> Option<(IpAddr, u8)> {
    let bad = |cx: &mut Cx, why: &str| {
        cx.err(
            path,
            line,
            format!("invalid VIP {s:?}: {why}; expected ADDRESS/PREFIX, e.g. \"198.51.100.50/24\" or \"2001:db8::50/64\""),
        );
        None
    };
    let Some((a, p)) = s.split_once('/') else {
        return bad(cx, "no prefix length");
    };
    let Ok(address) = a.parse::<IpAddr>() else {
        return bad(cx, "not an IP address");
    };
    let max = if address.is_ipv4() { 32 } else { 128 };
    let prefix = match p.parse::<u8>() {
        Ok(p) if p >= 1 && p <= max => p,
        _ => return bad(cx, &format!("the prefix length must be 1-{max}")),
    };
    if address.is_loopback() || address.is_unspecified() || address.is_multicast() {
        return bad(cx, "not a unicast host address");
    }
    Some((address, prefix))
}

fn check_name(cx: &mut Cx, path: &str, line: Option<u32>, name: &str) {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
    if !ok {
        cx.err(
            path,
            line,
            format!("invalid name {name:?}: use letters, digits, '_', '-', '.', ':'"),
        );
    }
}

fn addr(cx: &mut Cx, path: &str, line: Option<u32>, s: &str) -> Option<SocketAddr> {
    match s.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            cx.err(
                path,
                line,
                format!("invalid address {s:?}: expected IP:PORT, e.g. \"127.0.0.1:8080\" or \"[::1]:8080\""),
            );
            None
        }
    }
}

fn frontend(
    cx: &mut Cx,
    path: &str,
    name: &str,
    item: &Item,
    defaults: &Defaults,
    global: &Global,
    backends: &BTreeMap<String, Mode>,
) -> Option<Frontend> {
    let mut t = Tbl::new(cx, path, item)?;
    let mut ok = true;
    let mut bind = Vec::new();
    match t.get("bind") {
        None => {
            cx.err(
                &join(path, "bind"),
                item.line,
                "missing: a frontend needs at least one address",
            );
            ok = false;
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
                                ok = false;
                            }
                            Some(a) => bind.push(a),
                            None => ok = false,
                        },
                        other => {
                            cx.err(
                                &ipath,
                                it.line,
                                format!("expected a string, found {}", other.kind()),
                            );
                            ok = false;
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
                ok = false;
            }
        },
    }
    let mode = t.choice(cx, "mode", MODES).unwrap_or(defaults.mode);
    let maxconn = t
        .uint(cx, "maxconn", 1, 10_000_000)
        .or(defaults.maxconn)
        .or(global.maxconn)
        .unwrap_or(defaults::FRONTEND_MAXCONN);
    let tos = timeouts(cx, &mut t, FRONTEND_TIMEOUTS, &defaults.timeouts);
    let known_backend = |cx: &mut Cx, bpath: &str, line: Option<u32>, b: &str| match backends.get(b)
    {
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
    };
    let default_backend = match t.str(cx, "default_backend") {
        Some((bpath, line, b)) => {
            if !known_backend(cx, &bpath, line, b) {
                ok = false;
            }
            Some(b.to_string())
        }
        None if mode == Mode::Tcp => {
            cx.err(
                &join(path, "default_backend"),
                item.line,
                "missing: name the backend that serves this frontend",
            );
            ok = false;
            None
        }
        None => None,
    };
    let mut acls = acl::AclSet::new();
    if let Some((apath, aitem)) = t.get("acl") {
        if mode != Mode::Http {
            cx.err(&apath, aitem.line, "ACLs need mode \"http\"");
            ok = false;
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
                        ok = false;
                        continue;
                    }
                };
                for (text, line) in defs {
                    if let Err(err) = acls.define(&e.key, text) {
                        cx.err(&epath, line, format!("{err}: {text:?}"));
                        ok = false;
                    }
                }
            }
        }
    }
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
                ok = false;
                &[]
            }
        };
        if mode != Mode::Http && !items.is_empty() {
            cx.err(&upath, uitem.line, "use_backend rules need mode \"http\"");
            ok = false;
        }
        for (i, it) in items.iter().enumerate() {
            let rpath = format!("{upath}[{i}]");
            let Some(mut r) = Tbl::new(cx, &rpath, it) else {
                ok = false;
                continue;
            };
            let backend = match r.str(cx, "backend") {
                Some((bpath, line, b)) => known_backend(cx, &bpath, line, b).then(|| b.to_string()),
                None => {
                    cx.err(&rpath, it.line, "missing key `backend`");
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
                    cx.err(&rpath, it.line, "a rule has `if` or `unless`, not both");
                    ok = false;
                    continue;
                }
                (None, None) => {
                    cx.err(
                        &rpath,
                        it.line,
                        "missing `if` (or `unless`): when does this rule apply?",
                    );
                    ok = false;
                    continue;
                }
            };
            let cond = match acl::Condition::parse(text, &acls) {
                Ok(c) => Some(c),
                Err(err) => {
                    cx.err(&cpath, line, format!("{err}: {text:?}"));
                    None
                }
            };
            match (backend, cond) {
                (Some(backend), Some(cond)) => use_backend.push(UseBackend {
                    backend,
                    cond,
                    unless,
                }),
                _ => ok = false,
            }
        }
    }
    let forwardfor = match t.get("forwardfor") {
        None => None,
        Some((fpath, fitem)) => match &fitem.val {
            Val::Bool(true) => Some(ForwardFor {
                except: None,
                header: "X-Forwarded-For".into(),
            }),
            Val::Bool(false) => None,
            Val::Table(_) => Tbl::new(cx, &fpath, fitem).map(|mut ft| {
                let except = ft.str(cx, "except").and_then(|(epath, line, nets)| {
                    match acl::Acl::parse(&format!("src {nets}")) {
                        Ok(a) => Some(a),
                        Err(e) => {
                            cx.err(&epath, line, format!("{}: {nets:?}", e.message));
                            ok = false;
                            None
                        }
                    }
                });
                let header = match ft.str(cx, "header") {
                    None => "X-Forwarded-For".to_string(),
                    Some((hpath, line, h)) => {
                        let token = !h.is_empty()
                            && h.bytes().all(|b| {
                                b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
                            });
                        if !token {
                            cx.err(&hpath, line, format!("invalid header name {h:?}"));
                            ok = false;
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
                    format!("expected true, false or {{ except = \"NETS\", header = \"NAME\" }}, found {}", other.kind()),
                );
                ok = false;
                None
            }
        },
    };
    let via = t.bool(cx, "via").unwrap_or(false);
    t.finish(cx);
    ok.then(|| Frontend {
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
    })
}

fn backend(
    cx: &mut Cx,
    path: &str,
    name: &str,
    item: &Item,
    defaults: &Defaults,
) -> (Mode, Option<Backend>) {
    let Some(mut t) = Tbl::new(cx, path, item) else {
        return (defaults.mode, None);
    };
    let mode = t.choice(cx, "mode", MODES).unwrap_or(defaults.mode);
    let (balance, hash_key) = balance(cx, &mut t).unwrap_or(defaults.balance.clone());
    let hash_in_tcp = hash_key.is_some() && mode != Mode::Http;
    let mut cookie_failed = false;
    if hash_in_tcp {
        cx.err(
            &join(path, "balance"),
            item.line,
            "balance uri and hdr(…) need mode \"http\"",
        );
    }
    let cookie = match t.get("cookie") {
        None => None,
        Some((cpath, citem)) => {
            let c = Tbl::new(cx, &cpath, citem).and_then(|mut ct| {
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
                            &join(&cpath, "name"),
                            citem.line,
                            format!("invalid cookie name {n:?}"),
                        );
                        None
                    }
                    None => {
                        cx.err(&cpath, citem.line, "missing `name` (e.g. \"SERVERID\")");
                        None
                    }
                }
            });
            if c.is_none() || mode != Mode::Http {
                if c.is_some() {
                    cx.err(&cpath, citem.line, "cookie persistence needs mode \"http\"");
                }
                cookie_failed = true;
            }
            c
        }
    };
    let retries = t.uint(cx, "retries", 0, 100).unwrap_or(defaults.retries);
    let redispatch = t.bool(cx, "redispatch").unwrap_or(defaults.redispatch);
    let allbackups = t.bool(cx, "allbackups").unwrap_or(defaults.allbackups);
    let tos = timeouts(cx, &mut t, BACKEND_TIMEOUTS, &defaults.timeouts);
    let health_check = match t.get("health_check") {
        Some((hpath, hitem)) => health_check(cx, &hpath, hitem),
        None => Some(HealthCheck::Tcp),
    };
    let mut servers = Vec::new();
    let mut ok = health_check.is_some() && !hash_in_tcp && !cookie_failed;
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
                                ok = false;
                            }
                            servers.push(s);
                        }
                        None => ok = false,
                    }
                }
            }
            other => {
                cx.err(
                    &spath,
                    sitem.line,
                    format!("expected an array of servers, found {}", other.kind()),
                );
                ok = false;
            }
        }
    }
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
    });
    (mode, backend)
}

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

fn server(cx: &mut Cx, path: &str, item: &Item, mode: Mode) -> Option<Server> {
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
            ok = false;
        }
    }
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
            ok = false;
        }
        if o == Observe::Layer7 && mode != Mode::Http {
            cx.err(
                &join(path, "observe"),
                line,
                "\"layer7\" needs an HTTP backend; use \"layer4\"",
            );
            ok = false;
        }
    }
    let error_limit = t
        .uint(cx, "error_limit", 1, 1_000_000)
        .unwrap_or(defaults::ERROR_LIMIT);
    let on_error = t
        .choice(cx, "on_error", ON_ERRORS)
        .unwrap_or(OnError::FailCheck);
    let cookie = t.str(cx, "cookie").map(|(cpath, line, v)| {
        let ok_value = !v.is_empty()
            && v.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'"' | b'\\'));
        if !ok_value {
            cx.err(&cpath, line, format!("invalid cookie value {v:?}: use letters, digits and punctuation other than ; , \" \\"));
            ok = false;
        }
        v.to_string()
    });
    let slowstart = t.duration(cx, "slowstart");
    t.finish(cx);
    let (name, address) = (name?, address?);
    ok.then(|| Server {
        name,
        address,
        weight,
        maxconn,
        backup,
        check: check.then_some(CheckParams {
            inter,
            fastinter,
            downinter,
            rise,
            fall,
        }),
        observe,
        error_limit,
        on_error,
        slowstart: slowstart.filter(|d| !d.is_zero()),
        cookie,
    })
}

#[cfg(test)]
mod tests;
