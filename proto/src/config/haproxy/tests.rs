//! Translating a haproxy.cfg: the same model as the TOML it stands for,
//! defaults inheritance, listen, and errors with lines and keywords.

use crate::config::{ClusterConfig, ConfigError, Format};
use std::time::Duration;

fn cfg(text: &str) -> ClusterConfig {
    match ClusterConfig::parse(text, Format::Haproxy) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

fn errors(text: &str) -> Vec<ConfigError> {
    match ClusterConfig::parse(text, Format::Haproxy) {
        Ok(_) => panic!("valid: {text}"),
        Err(e) => e.0,
    }
}

fn toml(text: &str) -> ClusterConfig {
    ClusterConfig::parse(text, Format::Toml).unwrap()
}

#[test]
fn l4_round_robin_is_its_toml_twin() {
    let c = cfg("defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 50s\n  timeout server 50000\n\
frontend web\n  bind 127.0.0.1:8080\n  default_backend web\n\
backend web\n  balance roundrobin\n  server web1 127.0.0.1:9001 check inter 2000 rise 2 fall 3\n");
    let t = toml("[defaults]\nmode = \"tcp\"\ntimeout = { connect = \"5s\", client = \"50s\", server = \"50s\" }\n\
[frontends.web]\nbind = [\"127.0.0.1:8080\"]\ndefault_backend = \"web\"\n\
[backends.web]\nbalance = \"roundrobin\"\nservers = [ { name = \"web1\", address = \"127.0.0.1:9001\", check = true, inter = \"2s\", rise = 2, fall = 3 } ]\n");
    assert_eq!(c, t);
}

#[test]
fn time_units_and_bare_milliseconds() {
    for (text, d) in [
        ("5000", 5000),
        ("5s", 5000),
        ("100ms", 100),
        ("2m", 120_000),
        ("1h", 3_600_000),
        ("1d", 86_400_000),
    ] {
        let c = cfg(&format!(
            "backend b\n  timeout connect {text}\n  server s 127.0.0.1:1\n"
        ));
        assert_eq!(
            c.backends["b"].timeout.connect,
            Some(Duration::from_millis(d)),
            "{text}"
        );
    }
    let c = cfg("backend b\n  timeout connect 500us\n  server s 127.0.0.1:1\n");
    assert_eq!(
        c.backends["b"].timeout.connect,
        Some(Duration::from_micros(500))
    );
    let e = errors("backend b\n  timeout connect 5x\n  server s 127.0.0.1:1\n");
    assert_eq!(e[0].line, Some(2));
    assert!(
        e[0].message.contains("timeout connect") && e[0].message.contains("unknown unit"),
        "{e:?}"
    );
}

#[test]
fn each_proxy_sees_the_latest_defaults() {
    let c = cfg("defaults\n  mode http\n  timeout server 1s\n\
backend a\n  server s 127.0.0.1:1\n\
defaults\n  timeout server 2s\n\
backend b\n  server s 127.0.0.1:1\n");
    assert_eq!(c.backends["a"].timeout.server, Some(Duration::from_secs(1)));
    assert_eq!(c.backends["a"].mode, crate::config::Mode::Http);
    assert_eq!(c.backends["b"].timeout.server, Some(Duration::from_secs(2)));
    assert_eq!(
        c.backends["b"].mode,
        crate::config::Mode::Tcp,
        "a new defaults starts afresh"
    );
}

#[test]
fn listen_is_a_frontend_and_a_backend() {
    let c = cfg("listen app\n  bind *:8080\n  balance source\n  server s1 127.0.0.1:1 check\n");
    assert_eq!(c.frontends["app"].default_backend.as_deref(), Some("app"));
    assert_eq!(c.frontends["app"].bind, ["0.0.0.0:8080".parse().unwrap()]);
    assert_eq!(c.backends["app"].balance, crate::config::Balance::Source);
}

#[test]
fn l7_rules_cookie_and_checks() {
    let c = cfg("defaults\n  mode http\n\
frontend www\n  bind :80\n  option forwardfor\n  acl url_blog path_beg /blog\n  use_backend blog if url_blog\n  default_backend web\n\
backend web\n  cookie SERVERID insert indirect nocache\n  option httpchk GET /health\n  http-check expect status 200\n  server w1 127.0.0.1:1 check cookie w1\n\
backend blog\n  server b1 127.0.0.1:2\n");
    let fe = &c.frontends["www"];
    assert_eq!(fe.use_backend.len(), 1);
    assert_eq!(fe.use_backend[0].backend, "blog");
    assert!(fe.forwardfor.is_some());
    let be = &c.backends["web"];
    let cookie = be.cookie.as_ref().unwrap();
    assert!(cookie.indirect && cookie.nocache && cookie.name == "SERVERID");
    assert_eq!(be.servers[0].cookie.as_deref(), Some("w1"));
    match &be.health_check {
        crate::config::HealthCheck::Http {
            method,
            path,
            expect_status,
            ..
        } => {
            assert_eq!(
                (method.as_str(), path.as_str(), expect_status.as_slice()),
                ("GET", "/health", &[200u16][..])
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn stick_tables_own_and_named() {
    let c = cfg("backend st\n  stick-table type ip size 1m expire 30m store conn_rate(10s)\n\
frontend f\n  bind 127.0.0.1:1\n  tcp-request connection track-sc0 src table st\n  tcp-request connection reject if { sc0_conn_rate gt 10 }\n  default_backend b\n\
backend b\n  stick-table type ip size 100k expire 30m\n  stick on src\n  server s 127.0.0.1:2\n");
    assert_eq!(c.stick_tables["st"].size, 1 << 20);
    assert_eq!(c.frontends["f"].track_sc0.as_deref(), Some("st"));
    assert_eq!(c.frontends["f"].tcp_request_connection.len(), 1);
    assert_eq!(c.backends["b"].stick_on.as_ref().unwrap().table, "b");
    assert!(!c.backends.contains_key("st"));
}

#[test]
fn ignored_keywords_are_noted() {
    let (c, notes) = ClusterConfig::parse_noted("global\n  user haproxy\n  daemon\n  nbproc 1\ndefaults\n  log global\n  option httplog\nbackend b\n  server s 127.0.0.1:1\n", Format::Haproxy).unwrap();
    assert_eq!(c.backends.len(), 1);
    let lines: Vec<Option<u32>> = notes.iter().map(|n| n.line).collect();
    assert_eq!(lines, [Some(2), Some(3), Some(4), Some(6), Some(7)]);
}

#[test]
fn every_error_at_once_with_line_keyword_and_hint() {
    let e = errors("global\n  usr haproxy\nfrontend f\n  bind 127.0.0.1:1\n  default_backend nope\n  server s 127.0.0.1:1\n\
backend b\n  servr s 127.0.0.1:1\n  server s2\n  balance roundrobin extra\n  server s3 10.0.0.1:80 chek\n");
    let lines: Vec<Option<u32>> = e.iter().map(|e| e.line).collect();
    assert_eq!(
        lines,
        [
            Some(2),
            Some(5),
            Some(6),
            Some(8),
            Some(9),
            Some(10),
            Some(11)
        ],
        "{e:#?}"
    );
    assert!(
        e[0].message.contains("did you mean `user`"),
        "{}",
        e[0].message
    );
    assert!(
        e[1].message.contains("unknown backend") && e[1].message.contains("default_backend"),
        "{}",
        e[1].message
    );
    assert_eq!(e[1].path, "frontend f");
    assert!(e[2].message.contains("not allowed in a frontend"));
    assert!(e[3].message.contains("did you mean `server`"));
    assert!(e[4].message.contains("missing argument"));
    assert!(
        e[6].message.contains("did you mean `check`"),
        "{}",
        e[6].message
    );
}

#[test]
fn never_panics() {
    for t in [
        "",
        "frontend",
        "backend b\nserver",
        "listen\n",
        "defaults x\n",
        "global x\n",
        "stick-table\n",
        "backend b\n stick on\n stick-table type\n",
        "frontend f\n acl\n acl a\n use_backend\n tcp-request\n http-request\n",
        "peers p\n  peer a 1.2.3.4:1\n",
    ] {
        let _ = ClusterConfig::parse(t, Format::Haproxy);
    }
}

#[test]
fn default_server_listen_without_bind_and_no_option() {
    let c = cfg("defaults\n  option redispatch\n  default-server inter 3s fall 5\n\
listen app\n  bind 127.0.0.1:1\n  no option redispatch\n  server s1 127.0.0.1:2 check\n  server s2 127.0.0.1:3 check inter 1s\n\
listen only_servers\n  server s 127.0.0.1:4\n");
    let be = &c.backends["app"];
    assert!(!be.redispatch);
    let (a, b) = (
        be.servers[0].check.clone().unwrap(),
        be.servers[1].check.clone().unwrap(),
    );
    assert_eq!((a.inter, a.fall), (Duration::from_secs(3), 5));
    assert_eq!(
        (b.inter, b.fall),
        (Duration::from_secs(1), 5),
        "a server's own option wins"
    );
    assert!(c.backends.contains_key("only_servers"));
    assert!(
        !c.frontends.contains_key("only_servers"),
        "a listen without bind is a backend"
    );
    let (_, notes) = ClusterConfig::parse_noted(
        "listen only_servers\n  server s 127.0.0.1:4\n",
        Format::Haproxy,
    )
    .unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0].line, Some(1));
    assert!(notes[0].message.contains("no `bind`"), "{notes:?}");
}

#[test]
fn http_options_as_written() {
    let c = cfg("defaults\n  mode http\n\
frontend f\n  bind 127.0.0.1:1\n  option forwardfor except 10.0.0.0/8 header X-Client-IP\n\
  acl api hdr(host) -i \"api.example.com\"\n  http-request deny deny_status 429 if api\n  http-request allow\n  use_backend b unless api\n\
backend b\n  option httpchk GET /health \"HTTP/1.1\\r\\nHost:\\ example.com\"\n  server s 127.0.0.1:2 check\n");
    let fe = &c.frontends["f"];
    assert_eq!(fe.forwardfor.as_ref().unwrap().header, "X-Client-IP");
    assert_eq!(fe.http_request.len(), 2);
    assert_eq!(
        fe.http_request[0].action,
        crate::config::HttpAction::Deny { status: 429 }
    );
    assert!(fe.use_backend[0].unless);
    match &c.backends["b"].health_check {
        crate::config::HealthCheck::Http { host, .. } => {
            assert_eq!(host.as_deref(), Some("example.com"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn refused_sections_and_forms() {
    let e = errors("peers p\n  peer a 127.0.0.1:1\ndefaults named\nbackend b\n  server s 127.0.0.1:1 disabled\n  cookie C\n  http-request redirect location /\n");
    let lines: Vec<Option<u32>> = e.iter().map(|e| e.line).collect();
    assert_eq!(
        lines,
        [Some(1), Some(3), Some(5), Some(6), Some(7)],
        "{e:#?}"
    );
    assert!(e[0].message.contains("`peers` is not supported"));
    assert!(e[2].message.contains("maint"), "{}", e[2].message);
    assert!(e[3].message.contains("insert"));
}

/// Every example, cut and spliced at many places: an error or a config,
/// never a panic.
#[test]
fn mangled_examples_never_panic() {
    let examples = [
        include_str!("../../../../deploy/examples/haproxy/l7.cfg"),
        include_str!("../../../../deploy/examples/haproxy/passive-checks.cfg"),
    ];
    for text in examples {
        let chars: Vec<char> = text.chars().collect();
        for i in (0..chars.len()).step_by(3) {
            for splice in ["", "\"", "'", "\\", "\n", " x ", "${A}", "\\x"] {
                let mut t: String = chars[..i].iter().collect();
                t.push_str(splice);
                t.extend(&chars[(i + 1).min(chars.len())..]);
                let _ = ClusterConfig::parse(&t, Format::Haproxy);
            }
        }
    }
}

#[test]
fn the_wrong_side_as_haproxy_takes_it() {
    let (_, notes) = ClusterConfig::parse_noted("frontend f\n  bind 127.0.0.1:1\n  balance source\n  option httpchk\n  timeout server 1s\n  default_backend b\n\
backend b\n  maxconn 10\n  server s 127.0.0.1:2\n", Format::Haproxy).unwrap();
    let lines: Vec<Option<u32>> = notes.iter().map(|n| n.line).collect();
    assert_eq!(lines, [Some(3), Some(4), Some(5), Some(8)], "{notes:#?}");
    assert!(notes[0].message.contains("no backend capability"));
    let e = errors("defaults\n  mode http\nfrontend f\n  bind 127.0.0.1:1\n  default_backend b\nbackend b\n  option forwardfor\n  http-request deny\n  tcp-request connection reject\n  server s 127.0.0.1:2\n");
    let lines: Vec<Option<u32>> = e.iter().map(|e| e.line).collect();
    assert_eq!(lines, [Some(7), Some(8), Some(9)], "{e:#?}");
    assert!(e[0].message.contains("move it to the frontends"));
}
