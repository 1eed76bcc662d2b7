//! A frontend's `stick_table`, `track_sc0`, `tcp_request_connection` and
//! `http_request`: the settings, and each mistake with its path and line.

use crate::config::*;

fn parse(frontend: &str) -> Result<ClusterConfig, ConfigErrors> {
    let doc = format!(
        r#"[stick_tables.abuse]
type = "ip"
size = "10k"
store = ["http_req_rate(10s)"]
[backends.web]
mode = "http"
servers = [{{ name = "a", address = "127.0.0.1:2" }}]
[frontends.f]
bind = "127.0.0.1:1"
default_backend = "web"
mode = "http"
{frontend}"#
    );
    ClusterConfig::parse(&doc, Format::Toml)
}

fn one_error(frontend: &str) -> ConfigError {
    let errs = parse(frontend).expect_err("must be refused").0;
    assert_eq!(errs.len(), 1, "{errs:?}");
    errs.into_iter().next().unwrap()
}

const TRACK: &str = r#"stick_table = { type = "ip", size = "100k", expire = "30s", store = ["conn_cur", "conn_rate(10s)", "http_req_rate(10s)"] }
track_sc0 = "src""#;

#[test]
fn a_frontend_tracks_in_its_own_table_and_rules_read_the_counters() {
    let c = parse(&format!(
        r#"{TRACK}
tcp_request_connection = [{{ action = "reject", if = "{{ sc0_conn_rate gt 100 }}" }}, {{ action = "accept", if = "LOCALHOST" }}]
http_request = [{{ action = "deny", status = 429, if = "{{ sc0_http_req_rate gt 50 }} or {{ src_http_req_rate(abuse) gt 5 }}" }}, {{ action = "allow", unless = "{{ sc0_conn_cur gt 10 }}" }}]"#
    ))
    .unwrap();
    let f = &c.frontends["f"];
    assert_eq!(f.track_sc0.as_deref(), Some("f"));
    assert_eq!(c.stick_tables["f"].store.len(), 3);
    assert_eq!(f.tcp_request_connection.len(), 2);
    assert_eq!(f.tcp_request_connection[0].action, ConnAction::Reject);
    assert_eq!(f.tcp_request_connection[1].action, ConnAction::Accept);
    assert_eq!(f.http_request[0].action, HttpAction::Deny { status: 429 });
    assert_eq!(f.http_request[1].action, HttpAction::Allow);
    assert!(f.http_request[1].unless);
    // A table shared by name, too.
    let c = parse(r#"track_sc0 = { key = "src", table = "abuse" }"#).unwrap();
    assert_eq!(c.frontends["f"].track_sc0.as_deref(), Some("abuse"));
}

#[test]
fn rules_that_read_what_they_cannot_are_refused_with_their_line() {
    let cases = [
        (
            r#"http_request = [{ action = "deny", if = "{ sc0_conn_rate gt 1 }" }]"#,
            "frontends.f.http_request[0].if",
            "set `track_sc0`",
        ),
        (
            &format!("{TRACK}\nhttp_request = [{{ action = \"deny\", if = \"{{ sc0_bytes_in_rate gt 1 }}\" }}]"),
            "frontends.f.http_request[0].if",
            "does not store bytes_in_rate",
        ),
        (
            r#"http_request = [{ action = "deny", if = "{ src_conn_rate(nope) gt 1 }" }]"#,
            "frontends.f.http_request[0].if",
            "unknown stick table \"nope\"",
        ),
        (
            &format!("{TRACK}\ntcp_request_connection = [{{ action = \"reject\", if = \"{{ path_beg /x }}\" }}]"),
            "frontends.f.tcp_request_connection[0].if",
            "runs before any HTTP request",
        ),
        (
            &format!("{TRACK}\ntcp_request_connection = [{{ action = \"drop\", if = \"TRUE\" }}]"),
            "frontends.f.tcp_request_connection[0].action",
            "unknown action \"drop\"",
        ),
        (
            r#"http_request = [{ action = "allow", status = 429, if = "TRUE" }]"#,
            "frontends.f.http_request[0]",
            "`status` goes with action \"deny\"",
        ),
        (
            r#"track_sc0 = "src""#,
            "frontends.f.track_sc0",
            "needs a table",
        ),
        (
            r#"track_sc0 = { key = "req.hdr(x)", table = "abuse" }"#,
            "frontends.f.track_sc0.key",
            "tracks \"src\"",
        ),
        (
            r#"stick_table = { type = "ip", size = 1, store = ["conn_rat(10s)"] }"#,
            "frontends.f.stick_table.store[0]",
            "conn_rat",
        ),
    ];
    for (text, path, message) in cases {
        let e = one_error(text);
        assert_eq!(e.path, path, "{text}: {e:?}");
        assert!(e.line.is_some(), "{text}: {e:?}");
        assert!(e.message.contains(message), "{text}: {e:?}");
    }
}

#[test]
fn http_request_rules_need_http_mode_and_a_frontend_table_its_own_name() {
    let doc = r#"[backends.t]
servers = [{ name = "a", address = "127.0.0.1:2" }]
stick_table = { type = "ip", size = 1 }
[frontends.t]
bind = "127.0.0.1:1"
default_backend = "t"
stick_table = { type = "ip", size = 1 }
http_request = [{ action = "deny", if = "TRUE" }]
"#;
    let errs = ClusterConfig::parse(doc, Format::Toml).unwrap_err().0;
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        ["frontends.t.stick_table", "frontends.t.http_request"],
        "{errs:?}"
    );
}
