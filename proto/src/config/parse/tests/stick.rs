//! Stick tables and `stick_on`: the settings, the named tables, and every
//! mistake with its path and line.

use crate::config::*;
use std::time::Duration;

fn parse(backends: &str) -> Result<ClusterConfig, ConfigErrors> {
    let doc = format!(
        "[frontends.f]\nbind = \"127.0.0.1:1\"\ndefault_backend = \"web\"\nmode = \"http\"\n{backends}"
    );
    ClusterConfig::parse(&doc, Format::Toml)
}

fn one_error(backends: &str) -> ConfigError {
    let errs = parse(backends).expect_err("must be refused").0;
    assert_eq!(errs.len(), 1, "{errs:?}");
    errs.into_iter().next().unwrap()
}

const SERVERS: &str = r#"servers = [{ name = "a", address = "127.0.0.1:2" }, { name = "b", address = "127.0.0.1:3" }]"#;

#[test]
fn a_backends_own_table_is_named_after_it() {
    let c = parse(&format!(
        r#"[backends.web]
mode = "http"
stick_table = {{ type = "ip", size = "100k", expire = "30m" }}
stick_on = "src"
{SERVERS}"#
    ))
    .unwrap();
    let t = &c.stick_tables["web"];
    assert_eq!(t.name, "web");
    assert_eq!(t.key_type, StickType::Ip);
    assert_eq!(t.size, 100 * 1024);
    assert_eq!(t.expire, Some(Duration::from_secs(1800)));
    assert!(t.store.is_empty());
    let on = c.backends["web"].stick_on.as_ref().unwrap();
    assert_eq!(on.key, StickKey::Src);
    assert_eq!(on.table, "web");
}

#[test]
fn named_tables_are_shared_and_keys_read_http_fields() {
    let c = parse(&format!(
        r#"[stick_tables.sessions]
type = "string"
len = 64
size = 2000
[stick_tables.clients]
type = "ip"
size = "1m"
[backends.web]
mode = "http"
stick_on = {{ key = "req.cook(JSESSIONID)", table = "sessions" }}
{SERVERS}
[backends.api]
mode = "http"
stick_on = {{ key = "req.hdr(X-User)", table = "sessions" }}
{SERVERS}
[backends.tcp]
stick_on = {{ key = "src", table = "clients" }}
{SERVERS}"#
    ))
    .unwrap();
    assert_eq!(
        c.stick_tables["sessions"].key_type,
        StickType::String { len: 64 }
    );
    assert_eq!(c.stick_tables["sessions"].expire, None);
    assert_eq!(c.stick_tables["clients"].size, 1 << 20);
    assert_eq!(
        c.backends["web"].stick_on.as_ref().unwrap().key,
        StickKey::ReqCookie("JSESSIONID".into())
    );
    let api = c.backends["api"].stick_on.as_ref().unwrap();
    assert_eq!(
        (api.key.clone(), api.table.as_str()),
        (StickKey::ReqHdr("x-user".into()), "sessions")
    );
    assert_eq!(
        c.backends["tcp"].stick_on.as_ref().unwrap().table,
        "clients"
    );
    assert_eq!(
        c.stick_tables.len(),
        2,
        "backends without their own table add none"
    );
}

#[test]
fn stored_counters_are_kept_with_their_periods() {
    let c = parse(&format!(
        "[backends.web]\nmode = \"http\"\nstick_table = {{ type = \"ip\", size = 1, store = [\"conn_cur\", \"conn_rate(10s)\", \"http_req_rate(10s)\", \"bytes_in_rate(1m)\"] }}\n{SERVERS}"
    ))
    .unwrap();
    let store: Vec<String> = c.stick_tables["web"]
        .store
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert_eq!(
        store,
        [
            "conn_cur",
            "conn_rate(10s)",
            "http_req_rate(10s)",
            "bytes_in_rate(1m)"
        ]
    );
}

#[test]
fn each_counter_reads_with_its_period_and_once() {
    use super::super::stick::stick_data;
    assert_eq!(stick_data("conn_cur"), Ok(StickData::ConnCur));
    assert_eq!(
        stick_data("conn_rate(10s)"),
        Ok(StickData::ConnRate(Duration::from_secs(10)))
    );
    assert_eq!(
        stick_data("http_req_rate(500ms)"),
        Ok(StickData::HttpReqRate(Duration::from_millis(500)))
    );
    assert_eq!(
        stick_data("bytes_in_rate(1m)"),
        Ok(StickData::BytesInRate(Duration::from_secs(60)))
    );
    assert!(stick_data("conn_rate(0s)").is_err());
    assert!(stick_data("conn_rate(10s").is_err());
    let errs = parse(&format!(
        "[backends.web]\nmode = \"http\"\nstick_table = {{ type = \"ip\", size = 1, store = [\"conn_cur\", \"conn_cur\"] }}\n{SERVERS}"
    ))
    .expect_err("refused")
    .0;
    assert!(
        errs.iter()
            .any(|e| e.path == "backends.web.stick_table.store[1]"
                && e.message.contains("stored twice")),
        "{errs:?}"
    );
}

#[test]
fn a_string_table_keeps_32_bytes_by_default() {
    let c = parse(&format!(
        "[backends.web]\nmode = \"http\"\nstick_table = {{ type = \"string\", size = 10 }}\nstick_on = \"req.cook(s)\"\n{SERVERS}"
    ))
    .unwrap();
    assert_eq!(
        c.stick_tables["web"].key_type,
        StickType::String { len: 32 }
    );
}

#[test]
fn mistakes_in_a_table_name_their_path_and_line() {
    let cases = [
        (
            "{ type = \"ipv9\", size = 1 }",
            "backends.web.stick_table.type",
            "unknown table type \"ipv9\"",
        ),
        (
            "{ size = 1 }",
            "backends.web.stick_table",
            "missing key `type`",
        ),
        (
            "{ type = \"ip\" }",
            "backends.web.stick_table",
            "missing key `size`",
        ),
        (
            "{ type = \"ip\", size = \"10x\" }",
            "backends.web.stick_table.size",
            "invalid size",
        ),
        (
            "{ type = \"ip\", size = 0 }",
            "backends.web.stick_table.size",
            "invalid size",
        ),
        (
            "{ type = \"ip\", size = \"8g\" }",
            "backends.web.stick_table.size",
            "invalid size",
        ),
        (
            "{ type = \"ip\", size = 1, expire = \"30d\" }",
            "backends.web.stick_table.expire",
            "out of range",
        ),
        (
            "{ type = \"ip\", size = 1, store = [\"conn_rat(10s)\"] }",
            "backends.web.stick_table.store[0]",
            "unknown counter \"conn_rat(10s)\"",
        ),
        (
            "{ type = \"ip\", size = 1, store = [\"conn_rate\"] }",
            "backends.web.stick_table.store[0]",
            "expected conn_rate(PERIOD)",
        ),
        (
            "{ type = \"ip\", size = 1, expir = \"1m\" }",
            "backends.web.stick_table.expir",
            "did you mean `expire`?",
        ),
    ];
    for (table, path, message) in cases {
        let e = one_error(&format!(
            "[backends.web]\nmode = \"http\"\nstick_table = {table}\n{SERVERS}"
        ));
        assert_eq!(e.path, path, "{table}: {e:?}");
        assert_eq!(e.line, Some(7), "{table}: {e:?}");
        assert!(e.message.contains(message), "{table}: {e:?}");
    }
}

#[test]
fn stick_on_must_fit_its_table_and_mode() {
    let own = |table: &str, on: &str| {
        one_error(&format!(
            "[backends.web]\nmode = \"http\"\nstick_table = {table}\nstick_on = {on}\n{SERVERS}"
        ))
    };
    let ip = "{ type = \"ip\", size = 1 }";
    let string = "{ type = \"string\", size = 1 }";
    let e = own(ip, "\"req.cook(s)\"");
    assert_eq!(
        (e.path.as_str(), e.line),
        ("backends.web.stick_on", Some(8))
    );
    assert!(
        e.message
            .contains("needs a table of type \"string\"; table \"web\" is of type \"ip\""),
        "{e:?}"
    );
    let e = own(string, "\"src\"");
    assert!(e.message.contains("needs a table of type \"ip\""), "{e:?}");
    let e = one_error(&format!(
        "[backends.web]\nmode = \"http\"\n{SERVERS}\n[backends.t]\nstick_table = {string}\nstick_on = \"req.hdr(x)\"\n{SERVERS}"
    ));
    assert_eq!(e.path, "backends.t.stick_on");
    assert!(e.message.contains("needs mode \"http\""), "{e:?}");
    let e = own(ip, "\"dst\"");
    assert!(e.message.contains("unknown stick key \"dst\""), "{e:?}");
    let e = own(ip, "\"req.cook()\"");
    assert!(e.message.contains("unknown stick key"), "{e:?}");
}

#[test]
fn stick_on_needs_a_table_that_exists() {
    let e = one_error(&format!(
        "[backends.web]\nmode = \"http\"\nstick_on = \"src\"\n{SERVERS}"
    ));
    assert_eq!(
        (e.path.as_str(), e.line),
        ("backends.web.stick_on", Some(7))
    );
    assert!(e.message.contains("stick_on needs a table"), "{e:?}");

    let e = one_error(&format!(
        "[stick_tables.clients]\ntype = \"ip\"\nsize = 10\n[backends.web]\nmode = \"http\"\nstick_on = {{ key = \"src\", table = \"client\" }}\n{SERVERS}"
    ));
    assert_eq!(e.path, "backends.web.stick_on.table");
    assert!(
        e.message
            .contains("unknown stick table \"client\" (did you mean \"clients\"?)"),
        "{e:?}"
    );

    let e = one_error(&format!(
        "[backends.web]\nmode = \"http\"\nstick_on = {{ table = \"x\" }}\n{SERVERS}"
    ));
    assert!(e.message.contains("missing key `key`"), "{e:?}");
}

#[test]
fn a_backends_table_may_not_take_a_named_tables_name() {
    let e = one_error(&format!(
        "[stick_tables.web]\ntype = \"ip\"\nsize = 10\n[backends.web]\nmode = \"http\"\nstick_table = {{ type = \"ip\", size = 1 }}\n{SERVERS}"
    ));
    assert_eq!(e.path, "backends.web.stick_table");
    assert!(
        e.message.contains("declared in [stick_tables] too"),
        "{e:?}"
    );
}

#[test]
fn a_named_table_with_a_mistake_is_reported_once() {
    let errs = parse(&format!(
        "[stick_tables.t]\ntype = \"ip\"\nsize = \"lots\"\n[backends.web]\nmode = \"http\"\n{SERVERS}"
    ))
    .expect_err("refused")
    .0;
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(
        (errs[0].path.as_str(), errs[0].line),
        ("stick_tables.t.size", Some(7))
    );
}
