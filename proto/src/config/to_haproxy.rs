//! The other direction: a validated [`ClusterConfig`] printed as a
//! haproxy.cfg (`raftlb config show --format haproxy`) that reads back as
//! the same config. Every proxy is written in full (no `defaults`), a
//! frontend and a backend of one name that only it uses as a `listen`. What
//! a haproxy.cfg has no keyword for (VIPs, `via`) is left out with a note.

use super::acl::Condition;
use super::defaults;
use super::format::Format;
use super::model::{
    Backend, Balance, ClusterConfig, ConnAction, Frontend, HashKey, HealthCheck, HttpAction, Mode,
    Observe, OnError, Server, StickKey, StickTable, StickType,
};
use std::fmt::Write;
use std::time::Duration;

/// A config as a haproxy.cfg, and what it could not say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The haproxy.cfg.
    pub text: String,
    /// One line per setting left out.
    pub notes: Vec<String>,
}

/// `cfg` as a haproxy.cfg.
pub fn to_haproxy(cfg: &ClusterConfig) -> Written {
    let mut w = Writer {
        out: String::new(),
        notes: Vec::new(),
        cfg,
    };
    w.global();
    for fe in cfg.frontends.values() {
        match cfg.backends.get(&fe.name).filter(|be| w.is_listen(fe, be)) {
            Some(be) => w.proxy("listen", &fe.name, Some(fe), Some(be)),
            None => w.proxy("frontend", &fe.name, Some(fe), None),
        }
    }
    for be in cfg.backends.values() {
        let listen = cfg
            .frontends
            .get(&be.name)
            .is_some_and(|fe| w.is_listen(fe, be));
        if !listen {
            w.proxy("backend", &be.name, None, Some(be));
        }
    }
    for t in cfg.stick_tables.values() {
        let owned = cfg.backends.contains_key(&t.name) || cfg.frontends.contains_key(&t.name);
        if !owned {
            w.section("backend", &t.name);
            w.stick_table(t);
        }
    }
    for vip in &cfg.vips {
        w.notes.push(format!(
            "vip {}: a haproxy.cfg has no virtual IPs (keepalived holds them beside HAProxy); left out",
            vip.cidr()
        ));
    }
    let (text, mut notes) = (w.out, w.notes);
    let mut expected = cfg.clone();
    expected.vips.clear();
    for fe in expected.frontends.values_mut() {
        fe.via = false;
    }
    let back = super::parse::parse(&text, Format::Haproxy).map(|(c, _)| c);
    if back.as_ref() != Ok(&expected) {
        notes.push(
            "this haproxy.cfg does not read back as the same config (a raftlb bug, please report it); \
             `raftlb config show` without --format prints the committed document"
                .into(),
        );
    }
    Written { text, notes }
}

struct Writer<'c> {
    out: String,
    notes: Vec<String>,
    cfg: &'c ClusterConfig,
}

impl Writer<'_> {
    fn section(&mut self, kind: &str, name: &str) {
        if !self.out.is_empty() {
            self.out.push('\n');
        }
        let _ = writeln!(self.out, "{kind} {}", word(name));
    }

    fn line(&mut self, text: impl AsRef<str>) {
        let _ = writeln!(self.out, "    {}", text.as_ref());
    }

    fn global(&mut self) {
        if let Some(n) = self.cfg.global.maxconn {
            self.out.push_str("global\n");
            self.line(format!("maxconn {n}"));
        }
    }

    /// A frontend and a backend of the same name, the backend the
    /// frontend's default and used by no other frontend: one `listen`.
    fn is_listen(&self, fe: &Frontend, be: &Backend) -> bool {
        let used_elsewhere = self.cfg.frontends.values().any(|other| {
            other.name != fe.name
                && (other.default_backend.as_deref() == Some(&be.name)
                    || other.use_backend.iter().any(|u| u.backend == be.name))
        });
        fe.default_backend.as_deref() == Some(&be.name)
            && fe.mode == be.mode
            && !used_elsewhere
            && !fe.use_backend.iter().any(|u| u.backend == be.name)
    }

    fn proxy(&mut self, kind: &str, name: &str, fe: Option<&Frontend>, be: Option<&Backend>) {
        self.section(kind, name);
        let mode = fe.map(|f| f.mode).or(be.map(|b| b.mode));
        self.line(match mode {
            Some(Mode::Http) => "mode http",
            _ => "mode tcp",
        });
        for a in fe.iter().flat_map(|f| &f.bind) {
            self.line(format!("bind {a}"));
        }
        let own = self.cfg.stick_tables.get(name);
        let here = own.filter(|_| be.is_some() || !self.cfg.backends.contains_key(name));
        if let Some(t) = here {
            self.stick_table(t);
        }
        if let Some(fe) = fe {
            self.frontend(fe, be.is_some());
        }
        if let Some(be) = be {
            self.backend(be);
            for s in &be.servers {
                self.server(s);
            }
        }
    }

    /// A frontend's settings after its binds.
    fn frontend(&mut self, fe: &Frontend, listen: bool) {
        let maxconn = self
            .cfg
            .global
            .maxconn
            .unwrap_or(defaults::FRONTEND_MAXCONN);
        if fe.maxconn != maxconn {
            self.line(format!("maxconn {}", fe.maxconn));
        }
        for (name, t) in [
            ("client", fe.timeout_client),
            ("http-request", fe.timeout_http_request),
            ("http-keep-alive", fe.timeout_http_keep_alive),
        ] {
            if let Some(t) = t {
                self.line(format!("timeout {name} {}", duration(t)));
            }
        }
        let acls = &fe.acls;
        for name in acls.names() {
            for acl in acls.get(name).unwrap_or_default() {
                self.line(format!("acl {name} {acl}"));
            }
        }
        match &fe.track_sc0 {
            Some(t) if *t == fe.name => self.line("tcp-request connection track-sc0 src"),
            Some(t) => self.line(format!(
                "tcp-request connection track-sc0 src table {}",
                word(t)
            )),
            None => {}
        }
        for r in &fe.tcp_request_connection {
            let action = match r.action {
                ConnAction::Accept => "accept",
                ConnAction::Reject => "reject",
            };
            let cond = condition(&r.cond, r.unless);
            self.line(format!("tcp-request connection {action}{cond}"));
        }
        for r in &fe.http_request {
            let action = match r.action {
                HttpAction::Allow => "allow".to_string(),
                HttpAction::Deny { status } => format!("deny deny_status {status}"),
            };
            self.line(format!(
                "http-request {action}{}",
                condition(&r.cond, r.unless)
            ));
        }
        self.forwardfor(fe);
        for u in &fe.use_backend {
            let cond = condition(&u.cond, u.unless);
            self.line(format!("use_backend {}{cond}", word(&u.backend)));
        }
        match &fe.default_backend {
            Some(b) if !listen => self.line(format!("default_backend {}", word(b))),
            _ => {}
        }
    }

    fn forwardfor(&mut self, fe: &Frontend) {
        if fe.via {
            self.notes.push(format!(
                "frontend {}: `via = true` has no haproxy.cfg keyword; left out",
                fe.name
            ));
        }
        let Some(ff) = &fe.forwardfor else {
            return;
        };
        let mut line = "option forwardfor".to_string();
        if let Some(except) = &ff.except {
            let text = except.to_string();
            let nets = text.strip_prefix("src ").unwrap_or(&text);
            if nets.contains(' ') {
                self.notes.push(format!(
                    "frontend {}: `option forwardfor except` names several networks, which raftlb reads and HAProxy does not (it takes one)",
                    fe.name
                ));
            }
            let _ = write!(line, " except {}", word(nets));
        }
        if ff.header != "X-Forwarded-For" {
            let _ = write!(line, " header {}", word(&ff.header));
        }
        self.line(line);
    }

    fn backend(&mut self, be: &Backend) {
        self.line(format!(
            "balance {}",
            balance(be.balance, be.hash_key.as_ref())
        ));
        if let Some(c) = &be.cookie {
            let mut line = format!("cookie {} insert", word(&c.name));
            if c.indirect {
                line.push_str(" indirect");
            }
            if c.nocache {
                line.push_str(" nocache");
            }
            self.line(line);
        }
        if be.retries != defaults::RETRIES {
            self.line(format!("retries {}", be.retries));
        }
        if be.redispatch {
            self.line("option redispatch");
        }
        if be.allbackups {
            self.line("option allbackups");
        }
        let t = &be.timeout;
        for (name, t) in [
            ("connect", t.connect),
            ("server", t.server),
            ("queue", t.queue),
            ("tunnel", t.tunnel),
            ("check", t.check),
        ] {
            if let Some(t) = t {
                self.line(format!("timeout {name} {}", duration(t)));
            }
        }
        self.health_check(&be.health_check);
        if let Some(s) = &be.stick_on {
            let key = match &s.key {
                StickKey::Src => "src".to_string(),
                StickKey::ReqCookie(n) => format!("req.cook({n})"),
                StickKey::ReqHdr(n) => format!("req.hdr({n})"),
            };
            match s.table == be.name {
                true => self.line(format!("stick on {}", word(&key))),
                false => self.line(format!("stick on {} table {}", word(&key), word(&s.table))),
            }
        }
    }

    fn health_check(&mut self, check: &HealthCheck) {
        let HealthCheck::Http {
            method,
            path,
            host,
            expect_status,
        } = check
        else {
            return;
        };
        self.line(format!("option httpchk {} {}", word(method), word(path)));
        if let Some(h) = host {
            self.line(format!("http-check send hdr Host {}", word(h)));
        }
        if !expect_status.is_empty() {
            let codes: Vec<String> = expect_status.iter().map(u16::to_string).collect();
            self.line(format!("http-check expect status {}", codes.join(",")));
        }
    }

    fn stick_table(&mut self, t: &StickTable) {
        let mut line = match t.key_type {
            StickType::Ip => "stick-table type ip".to_string(),
            StickType::Integer => "stick-table type integer".to_string(),
            StickType::String { len } => format!("stick-table type string len {len}"),
        };
        let _ = write!(line, " size {}", t.size);
        if let Some(e) = t.expire {
            let _ = write!(line, " expire {}", duration(e));
        }
        if !t.store.is_empty() {
            let store: Vec<String> = t.store.iter().map(ToString::to_string).collect();
            let _ = write!(line, " store {}", store.join(","));
        }
        self.line(line);
    }

    fn server(&mut self, s: &Server) {
        let mut line = format!("server {} {}", word(&s.name), s.address);
        let mut opt = |text: String| {
            line.push(' ');
            line.push_str(&text);
        };
        if let Some(c) = &s.check {
            opt("check".into());
            for (name, d, default) in [
                ("inter", c.inter, defaults::INTER),
                ("fastinter", c.fastinter, c.inter),
                ("downinter", c.downinter, c.inter),
            ] {
                if d != default {
                    opt(format!("{name} {}", duration(d)));
                }
            }
            if c.rise != defaults::RISE {
                opt(format!("rise {}", c.rise));
            }
            if c.fall != defaults::FALL {
                opt(format!("fall {}", c.fall));
            }
        }
        if let Some(o) = s.observe {
            opt(match o {
                Observe::Layer4 => "observe layer4".into(),
                Observe::Layer7 => "observe layer7".into(),
            });
        }
        if s.error_limit != defaults::ERROR_LIMIT {
            opt(format!("error-limit {}", s.error_limit));
        }
        if s.on_error != OnError::FailCheck {
            opt(format!("on-error {}", on_error(s.on_error)));
        }
        if s.weight != defaults::WEIGHT {
            opt(format!("weight {}", s.weight));
        }
        if s.maxconn != 0 {
            opt(format!("maxconn {}", s.maxconn));
        }
        if let Some(d) = s.slowstart {
            opt(format!("slowstart {}", duration(d)));
        }
        if s.backup {
            opt("backup".into());
        }
        if let Some(c) = &s.cookie {
            opt(format!("cookie {}", word(c)));
        }
        self.line(line);
    }
}

fn on_error(e: OnError) -> &'static str {
    match e {
        OnError::FastInter => "fastinter",
        OnError::FailCheck => "fail-check",
        OnError::SuddenDeath => "sudden-death",
        OnError::MarkDown => "mark-down",
    }
}

fn balance(b: Balance, key: Option<&HashKey>) -> String {
    match (b, key) {
        (Balance::Uri, Some(HashKey::Uri { whole, len, depth })) => {
            let mut s = "uri".to_string();
            if *whole {
                s.push_str(" whole");
            }
            if *len > 0 {
                let _ = write!(s, " len {len}");
            }
            if *depth > 0 {
                let _ = write!(s, " depth {depth}");
            }
            s
        }
        (Balance::Hdr, Some(HashKey::Hdr { name })) => format!("hdr({name})"),
        (Balance::RoundRobin, _) => "roundrobin".into(),
        (Balance::StaticRr, _) => "static-rr".into(),
        (Balance::LeastConn, _) => "leastconn".into(),
        (Balance::First, _) => "first".into(),
        (Balance::Source, _) => "source".into(),
        (Balance::Random, _) => "random".into(),
        (Balance::Uri, _) => "uri".into(),
        (Balance::Hdr, _) => "hdr(host)".into(),
    }
}

/// ` if COND` / ` unless COND`; nothing for a rule that always applies.
fn condition(cond: &Condition, unless: bool) -> String {
    let text = cond.to_string();
    match (unless, text.as_str()) {
        (false, "TRUE") => String::new(),
        (false, _) => format!(" if {text}"),
        (true, _) => format!(" unless {text}"),
    }
}

/// A duration in the largest unit that says it exactly.
fn duration(d: Duration) -> String {
    let us = d.as_micros();
    for (unit, n) in [
        ("d", 86_400_000_000u128),
        ("h", 3_600_000_000),
        ("m", 60_000_000),
        ("s", 1_000_000),
        ("ms", 1_000),
    ] {
        if us > 0 && us.is_multiple_of(n) {
            return format!("{}{unit}", us / n);
        }
    }
    format!("{us}us")
}

/// One word of a statement: bare when the lexer reads it back unchanged,
/// else in single quotes (no escapes, no variables), or in double quotes
/// with escapes when it holds a single quote.
fn word(w: &str) -> String {
    let bare = !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/()[]*,@%+=!~^&?<>{}|;".contains(c));
    if bare {
        w.to_string()
    } else if !w.contains('\'') {
        format!("'{w}'")
    } else {
        let escaped = w
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('$', "\\$");
        format!("\"{escaped}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `doc` read, written as a haproxy.cfg, and read back: the same config.
    fn round_trip(doc: &str, format: Format) -> Written {
        let cfg = super::super::parse::parse(doc, format)
            .unwrap_or_else(|e| panic!("{e}\n{doc}"))
            .0;
        let w = to_haproxy(&cfg);
        let back = super::super::parse::parse(&w.text, Format::Haproxy)
            .unwrap_or_else(|e| panic!("{e}\n{}", w.text))
            .0;
        let mut expected = cfg.clone();
        expected.vips.clear();
        expected.frontends.values_mut().for_each(|f| f.via = false);
        assert_eq!(back, expected, "{}", w.text);
        w
    }

    fn examples(ext: &str) -> Vec<(String, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples");
        let dir = if ext == "cfg" {
            dir.join("haproxy")
        } else {
            dir
        };
        let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .filter(|p| !p.ends_with("node.toml"))
            .map(|p| {
                (
                    p.display().to_string(),
                    std::fs::read_to_string(&p).unwrap(),
                )
            })
            .collect();
        files.sort();
        files
    }

    #[test]
    fn every_example_reads_back_as_itself() {
        let (toml, cfg) = (examples("toml"), examples("cfg"));
        assert!(toml.len() >= 5 && cfg.len() >= 5, "{toml:?} {cfg:?}");
        for (path, text) in toml {
            let w = round_trip(&text, Format::Toml);
            assert!(
                w.notes.iter().all(|n| n.starts_with("vip ")),
                "{path}: {:?}",
                w.notes
            );
        }
        for (path, text) in cfg {
            let w = round_trip(&text, Format::Haproxy);
            assert!(w.notes.is_empty(), "{path}: {:?}", w.notes);
        }
    }

    const EVERYTHING: &str = r#"
[global]
maxconn = 20000

[[vips]]
address = "10.77.0.100/24"

[frontends.www]
bind = ["0.0.0.0:80", "[::1]:8080"]
mode = "http"
maxconn = 500
timeout = { client = "30s", http_request = "5s", http_keep_alive = "1500ms" }
acl = { blog = "path_beg /blog /news", api = "hdr(host) -i api.example.com", odd = "path '/a b'", slow = "sc0_http_req_rate gt 100" }
stick_table = { type = "ip", size = 1000, expire = "1m", store = ["conn_cur", "http_req_rate(10s)"] }
track_sc0 = "src"
tcp_request_connection = [ { action = "reject", unless = "{ src 10.0.0.0/8 127.0.0.1 }" } ]
http_request = [ { action = "deny", status = 429, if = "slow" }, { action = "allow", if = "api" }, { action = "deny" , if = "odd" } ]
forwardfor = { except = "127.0.0.0/8 ::1", header = "X-Client-IP" }
via = true
use_backend = [ { backend = "blog", if = "blog !api" }, { backend = "api", unless = "blog or odd" } ]
default_backend = "web"

[frontends.db]
bind = ["127.0.0.1:5432"]
default_backend = "db"

[backends.db]
balance = "first"
retries = 1
timeout = { connect = "2s", server = "1h", queue = "3s", tunnel = "2h", check = "750ms" }
servers = [ { name = "a", address = "127.0.0.1:6001", check = true, inter = "500ms", fastinter = "100ms", downinter = "5s", rise = 1, fall = 5, observe = "layer4", error_limit = 3, on_error = "sudden-death" }, { name = "b", address = "[::1]:6002", backup = true, maxconn = 10, weight = 0, slowstart = "30s" } ]
stick_on = { key = "src", table = "shared" }

[backends.web]
mode = "http"
balance = "uri whole len 20 depth 2"
cookie = { name = "SERVERID", mode = "insert", indirect = true, nocache = true }
redispatch = true
allbackups = true
health_check = { kind = "http", method = "GET", path = "/health check", host = "www.example.com", expect_status = [200, 204] }
stick_table = { type = "string", len = 64, size = 100 }
stick_on = "req.cook(SESSION)"
servers = [ { name = "w1", address = "127.0.0.1:7001", check = true, cookie = "w1" }, { name = "w2", address = "127.0.0.1:7002", check = true, cookie = "it's" } ]

[backends.blog]
mode = "http"
balance = "hdr(User-Agent)"
servers = [ { name = "b1", address = "127.0.0.1:7003" } ]

[backends.api]
mode = "http"
balance = "leastconn"
servers = [ { name = "a1", address = "127.0.0.1:7004", observe = "layer7", check = true, on_error = "fastinter" } ]

[stick_tables.shared]
type = "ip"
size = 10

[stick_tables.numbers]
type = "integer"
size = 10
"#;

    #[test]
    fn every_setting_reads_back_and_what_has_no_keyword_is_named() {
        let w = round_trip(EVERYTHING, Format::Toml);
        assert_eq!(w.notes.len(), 3, "{:?}", w.notes);
        assert!(w.notes[0].contains("via"), "{:?}", w.notes);
        assert!(w.notes[1].contains("several networks"), "{:?}", w.notes);
        assert!(w.notes[2].contains("10.77.0.100/24"), "{:?}", w.notes);
        for line in [
            "listen db\n",
            "backend shared\n    stick-table type ip size 10\n",
            "backend numbers\n    stick-table type integer size 10\n",
            "    option forwardfor except '127.0.0.0/8 ::1' header X-Client-IP\n",
            "    http-request deny deny_status 429 if slow\n",
            "    option httpchk GET '/health check'\n",
            "    stick on req.cook(SESSION)\n",
            "frontend www\n    mode http\n    bind 0.0.0.0:80\n    bind [::1]:8080\n    stick-table type ip",
            "    http-check expect status 200,204\n",
            "cookie \"it's\"",
        ] {
            assert!(w.text.contains(line), "{line:?} in\n{}", w.text);
        }
    }

    #[test]
    fn durations_in_their_largest_exact_unit() {
        let d = |ms| duration(Duration::from_millis(ms));
        assert_eq!(d(5000), "5s");
        assert_eq!(d(1500), "1500ms");
        assert_eq!(d(7_200_000), "2h");
        assert_eq!(d(86_400_000), "1d");
        assert_eq!(duration(Duration::from_micros(250)), "250us");
    }
}
