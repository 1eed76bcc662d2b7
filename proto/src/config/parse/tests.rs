use crate::config::*;
use std::time::Duration;

const EXAMPLE: &str = r#"
[defaults]
mode = "tcp"
timeout = { connect = "5s", client = "50s", server = "50s", queue = "5s", tunnel = "1h" }
maxconn = 10000

[frontends.web]
bind = ["127.0.0.1:8080", "[::1]:8080"]
default_backend = "web"
maxconn = 5000

[backends.web]
balance = "roundrobin"          # static-rr | leastconn | first | source | random
retries = 3
redispatch = true
servers = [
  { name = "s1", address = "127.0.0.1:9001", weight = 3, check = true, inter = "2s", rise = 2, fall = 3 },
  { name = "s2", address = "127.0.0.1:9002", maxconn = 100, check = true, observe = "layer4", error_limit = 10, on_error = "mark-down" },
  { name = "spare", address = "127.0.0.1:9003", backup = true },
]
health_check = { kind = "tcp" }  # or { kind = "http", method = "GET", path = "/health", expect_status = [200] }
"#;

fn errors(text: &str, format: Format) -> Vec<ConfigError> {
    ClusterConfig::parse(text, format)
        .expect_err("must be refused")
        .0
}

#[test]
fn the_documented_example_parses() {
    let c = ClusterConfig::parse(EXAMPLE, Format::Toml).unwrap();
    let fe = &c.frontends["web"];
    assert_eq!(fe.bind.len(), 2);
    assert!(fe.bind[1].is_ipv6());
    assert_eq!(fe.maxconn, 5000);
    assert_eq!(fe.timeout_client, Some(Duration::from_secs(50)));
    let be = &c.backends["web"];
    assert_eq!(be.balance, Balance::RoundRobin);
    assert!(be.redispatch);
    assert_eq!(be.timeout.tunnel, Some(Duration::from_secs(3600)));
    assert_eq!(be.timeout.queue, Some(Duration::from_secs(5)));
    let s1 = &be.servers[0];
    assert_eq!(s1.weight, 3);
    assert_eq!(s1.check.as_ref().unwrap().rise, 2);
    let s2 = &be.servers[1];
    assert_eq!(s2.maxconn, 100);
    assert_eq!(s2.observe, Some(Observe::Layer4));
    assert_eq!(s2.on_error, OnError::MarkDown);
    assert!(be.servers[2].backup);
    assert!(be.servers[2].check.is_none());
}

#[test]
fn haproxy_defaults_apply() {
    let c = ClusterConfig::parse(
        r#"
[frontends.f]
bind = "127.0.0.1:1"
default_backend = "b"
[backends.b]
servers = [{ name = "a", address = "127.0.0.1:2", check = true }]
"#,
        Format::Toml,
    )
    .unwrap();
    let b = &c.backends["b"];
    assert_eq!(b.balance, Balance::RoundRobin);
    assert_eq!(b.retries, 3);
    assert_eq!(b.health_check, HealthCheck::Tcp);
    let s = &b.servers[0];
    assert_eq!(s.weight, 1);
    assert_eq!(s.error_limit, 10);
    assert_eq!(s.on_error, OnError::FailCheck);
    let chk = s.check.as_ref().unwrap();
    assert_eq!(
        (chk.inter, chk.fastinter, chk.downinter),
        (defaults::INTER, defaults::INTER, defaults::INTER)
    );
    assert_eq!((chk.rise, chk.fall), (2, 3));
    assert_eq!(c.frontends["f"].maxconn, defaults::FRONTEND_MAXCONN);
    assert_eq!(c.frontends["f"].timeout_client, None);
}

#[test]
fn queue_timeout_defaults_to_connect() {
    let c = ClusterConfig::parse(
        r#"
defaults = { timeout = { connect = "3s" } }
[frontends.f]
bind = "127.0.0.1:1"
default_backend = "b"
[backends.b]
"#,
        Format::Toml,
    )
    .unwrap();
    assert_eq!(c.backends["b"].timeout.queue, Some(Duration::from_secs(3)));
}

#[test]
fn bad_address_names_path_and_line() {
    let text = EXAMPLE.replace("127.0.0.1:9002", "127.0.0.1:99999");
    let e = errors(&text, Format::Toml);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].path, "backends.web.servers[1].address");
    assert_eq!(e[0].line, Some(18));
    assert!(e[0].message.contains("invalid address"), "{}", e[0].message);
}

#[test]
fn three_mistakes_are_all_reported() {
    let text = EXAMPLE
        .replace("rise = 2,", "rsie = 2,")
        .replace("default_backend = \"web\"", "default_backend = \"wbe\"")
        .replace("inter = \"2s\"", "inter = \"2 seconds\"");
    let e = errors(&text, Format::Toml);
    let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "frontends.web.default_backend",
            "backends.web.servers[0].inter",
            "backends.web.servers[0].rsie"
        ],
        "{e:?}"
    );
    assert!(
        e[2].message.contains("did you mean `rise`"),
        "{}",
        e[2].message
    );
    assert!(e[0].message.contains("unknown backend \"wbe\""));
    assert!(e.iter().all(|e| e.line.is_some()));
}

#[test]
fn duplicates_are_refused() {
    let text = EXAMPLE.replace("name = \"s2\"", "name = \"s1\"");
    let e = errors(&text, Format::Toml);
    assert_eq!(e[0].path, "backends.web.servers[1].name");
    assert!(e[0].message.contains("duplicate server name"));

    let dup_bind = r#"
[frontends.a]
bind = "127.0.0.1:1"
default_backend = "b"
[frontends.c]
bind = ["127.0.0.1:1"]
default_backend = "b"
[backends.b]
"#;
    let e = errors(dup_bind, Format::Toml);
    assert!(e[0].message.contains("already bound"), "{e:?}");
}

#[test]
fn type_errors_and_ranges() {
    let text = EXAMPLE
        .replace("weight = 3", "weight = 300")
        .replace("retries = 3", "retries = \"3\"");
    let e = errors(&text, Format::Toml);
    let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        ["backends.web.retries", "backends.web.servers[0].weight"]
    );
    assert!(e[1].message.contains("out of range 0..=256"));
}

#[test]
fn observe_needs_check() {
    let text = EXAMPLE.replace("maxconn = 100, check = true,", "maxconn = 100,");
    let e = errors(&text, Format::Toml);
    assert_eq!(e[0].path, "backends.web.servers[1].observe");
}

#[test]
fn syntax_error_has_a_line() {
    let e = errors("[defaults]\nmode = \n", Format::Toml);
    assert_eq!(e[0].line, Some(2));
    let e = errors("{\"defaults\": {\n \"mode\": }", Format::Json);
    assert_eq!(e[0].line, Some(2));
    let e = errors("defaults:\n  mode: [\n", Format::Yaml);
    assert!(e[0].line.is_some());
}

#[test]
fn yaml_and_json_give_the_same_config() {
    let yaml = r#"
defaults:
  mode: tcp
  timeout: { connect: 5s, client: 50s, server: 50s, queue: 5s, tunnel: 1h }
  maxconn: 10000
frontends:
  web:
    bind: ["127.0.0.1:8080", "[::1]:8080"]
    default_backend: web
    maxconn: 5000
backends:
  web:
    balance: roundrobin
    retries: 3
    redispatch: true
    servers:
      - { name: s1, address: "127.0.0.1:9001", weight: 3, check: true, inter: 2s, rise: 2, fall: 3 }
      - { name: s2, address: "127.0.0.1:9002", maxconn: 100, check: true, observe: layer4, error_limit: 10, on_error: mark-down }
      - { name: spare, address: "127.0.0.1:9003", backup: true }
    health_check: { kind: tcp }
"#;
    let toml = ClusterConfig::parse(EXAMPLE, Format::Toml).unwrap();
    assert_eq!(ClusterConfig::parse(yaml, Format::Yaml).unwrap(), toml);
    let json = serde_json::to_string(&serde_yaml_ng::from_str::<serde_json::Value>(yaml).unwrap())
        .unwrap();
    assert_eq!(ClusterConfig::parse(&json, Format::Json).unwrap(), toml);
    let e = errors(&json.replace("\"backup\"", "\"bakup\""), Format::Json);
    assert_eq!(e[0].path, "backends.web.servers[2].bakup");
}

#[test]
fn http_check_settings() {
    let text = EXAMPLE.replace(
        "health_check = { kind = \"tcp\" }",
        "health_check = { kind = \"http\", method = \"GET\", path = \"/health\", expect_status = [200] }",
    );
    let c = ClusterConfig::parse(&text, Format::Toml).unwrap();
    assert_eq!(
        c.backends["web"].health_check,
        HealthCheck::Http {
            method: "GET".into(),
            path: "/health".into(),
            host: None,
            expect_status: vec![200]
        }
    );
    let bad = text.replace("path = \"/health\"", "path = \"health\"");
    assert_eq!(
        errors(&bad, Format::Toml)[0].path,
        "backends.web.health_check.path"
    );
}

#[test]
fn format_from_path() {
    assert_eq!(Format::from_path("lb.yml"), Format::Yaml);
    assert_eq!(Format::from_path("LB.YAML"), Format::Yaml);
    assert_eq!(Format::from_path("lb.json"), Format::Json);
    assert_eq!(Format::from_path("lb.toml"), Format::Toml);
}

#[test]
fn format_names_round_trip_and_unknown_names_are_none() {
    for f in [Format::Toml, Format::Yaml, Format::Json] {
        assert_eq!(Format::from_name(f.as_str()), Some(f));
    }
    assert_eq!(Format::from_name("yml"), None);
    assert_eq!(Format::from_name("TOML"), None);
}

#[test]
fn vips_with_defaults_and_settings() {
    let c = ClusterConfig::parse(
        r#"
[[vips]]
address = "198.51.100.50/24"

[[vips]]
address = "2001:db8::50/64"
garp_repeat = 3
garp_interval = "100ms"
garp_refresh = "0s"
"#,
        Format::Toml,
    )
    .unwrap();
    assert_eq!(c.vips.len(), 2);
    let v4 = &c.vips[0];
    assert_eq!(v4.cidr(), "198.51.100.50/24");
    assert_eq!(v4.garp_repeat, defaults::GARP_REPEAT);
    assert_eq!(v4.garp_interval, defaults::GARP_INTERVAL);
    assert_eq!(v4.garp_refresh, Some(defaults::GARP_REFRESH));
    let v6 = &c.vips[1];
    assert!(v6.address.is_ipv6());
    assert_eq!(v6.prefix, 64);
    assert_eq!(v6.garp_repeat, 3);
    assert_eq!(v6.garp_interval, Duration::from_millis(100));
    assert_eq!(v6.garp_refresh, None, "0s turns the refresh off");
    let none = ClusterConfig::parse("", Format::Toml).unwrap();
    assert!(none.vips.is_empty());
}

#[test]
fn bad_vips_are_refused_with_path_and_line() {
    let errs = errors(
        r#"
[[vips]]
address = "198.51.100.50"

[[vips]]
address = "198.51.100.51/33"

[[vips]]
address = "127.0.0.1/8"

[[vips]]
adress = "198.51.100.52/24"

[[vips]]
address = "198.51.100.53/24"
garp_repeat = 0

[[vips]]
address = "198.51.100.53/24"
"#,
        Format::Toml,
    );
    let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    let has = |path: &str, line: u32, what: &str| {
        assert!(
            errs.iter()
                .any(|e| e.path == path && e.line == Some(line) && e.message.contains(what)),
            "no error at {path} line {line} containing {what:?} in {text:#?}"
        )
    };
    has("vips[0].address", 3, "no prefix length");
    has("vips[1].address", 6, "1-32");
    has("vips[2].address", 9, "not a unicast host address");
    has("vips[3].adress", 12, "did you mean `address`");
    has("vips[4].garp_repeat", 16, "out of range");
    has("vips[5].address", 18, "declared twice");
}

#[test]
fn balance_uri_and_hdr_with_their_options() {
    let doc = |b: &str, mode: &str| {
        format!(
            "[defaults]\nmode = \"{mode}\"\n[frontends.f]\nbind = \"127.0.0.1:1\"\ndefault_backend = \"b\"\n[backends.b]\nbalance = \"{b}\"\nservers = [ {{ name = \"s\", address = \"127.0.0.1:2\" }} ]\n"
        )
    };
    let c = ClusterConfig::parse(&doc("uri whole len 10 depth 2", "http"), Format::Toml).unwrap();
    let b = &c.backends["b"];
    assert_eq!(b.balance, Balance::Uri);
    assert_eq!(
        b.hash_key,
        Some(HashKey::Uri {
            whole: true,
            len: 10,
            depth: 2
        })
    );
    let c = ClusterConfig::parse(&doc("hdr(Host)", "http"), Format::Toml).unwrap();
    assert_eq!(
        c.backends["b"].hash_key,
        Some(HashKey::Hdr {
            name: "host".into()
        })
    );
    let c = ClusterConfig::parse(&doc("roundrobin", "http"), Format::Toml).unwrap();
    assert_eq!(c.backends["b"].hash_key, None);
    for (bad, why) in [
        ("uri len", "takes a number"),
        ("uri deep 2", "unknown option `deep`"),
        ("hdr()", "expected hdr(NAME)"),
        ("urii", "unknown value"),
    ] {
        let errs = errors(&doc(bad, "http"), Format::Toml);
        assert!(
            errs.iter().any(|e| e.path == "backends.b.balance"
                && e.line == Some(7)
                && e.message.contains(why)),
            "{bad}: {errs:?}"
        );
    }
    let errs = errors(&doc("uri", "tcp"), Format::Toml);
    assert!(
        errs.iter()
            .any(|e| e.message.contains("need mode \"http\"")),
        "{errs:?}"
    );
}

mod rules;
mod stick;
