//! `GET /metrics` on the admin API: Prometheus' text format, valid for a
//! text-format parser and for `promtool check metrics` (Debian's
//! `prometheus` package; CI installs it, and without it the test fails),
//! with HAProxy's exporter names under `raftlb_`, moving with the traffic
//! and the servers' health.

mod common;

use common::{lb, TestNode};
use raftlb_testkit::{wait_until, Backend};
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

/// One scrape: the samples by name and labels (`name{a="1",b="2"}`).
async fn scrape(n: &TestNode) -> (String, BTreeMap<String, f64>) {
    let body = raftlb::admin::get(n.node.admin_addr, "/metrics")
        .await
        .expect("GET /metrics");
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let parsed = prometheus_parse::Scrape::parse(lines).expect("a Prometheus text-format scrape");
    let mut samples = BTreeMap::new();
    for s in parsed.samples {
        let mut labels: Vec<String> = s
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        labels.sort();
        let value = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            other => panic!("{}: unexpected {other:?}", s.metric),
        };
        samples.insert(format!("{}{{{}}}", s.metric, labels.join(",")), value);
    }
    (body, samples)
}

fn promtool() -> &'static str {
    let path = "/usr/bin/promtool";
    assert!(
        std::path::Path::new(path).exists(),
        "promtool is not installed: this test checks the scrape with it (apt-get install prometheus; .ci/run installs it)"
    );
    path
}

/// `promtool check metrics` of `body`: what it says (nothing when all is well).
fn promtool_check(body: &str) -> (bool, String) {
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

fn get(samples: &BTreeMap<String, f64>, key: &str) -> f64 {
    *samples.get(key).unwrap_or_else(|| {
        panic!(
            "no sample {key} in {:#?}",
            samples.keys().collect::<Vec<_>>()
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_is_valid_and_follows_traffic_and_health() {
    let (a, mut b) = (Backend::start("a").await, Backend::start("b").await);
    let servers = format!(
        "  {{ name = \"a\", address = \"{}\", check = true, inter = \"100ms\", fall = 1 }},\n  \
         {{ name = \"b\", address = \"{}\", check = true, inter = \"100ms\", fall = 1 }},\n  \
         {{ name = \"spare\", address = \"{}\", backup = true }},",
        a.addr, b.addr, a.addr
    );
    let table = "stick_table = { type = \"ip\", size = 100 }\nstick_on = \"src\"\n";
    let n = TestNode::start(&lb(&servers, table)).await;

    let (body, s) = scrape(&n).await;
    let (ok, said) = promtool_check(&body);
    assert!(
        ok && said.trim().is_empty(),
        "promtool check metrics: {said}\n{body}"
    );
    for server in ["a", "b"] {
        let up = format!("raftlb_server_status{{proxy=\"be\",server=\"{server}\",state=\"UP\"}}");
        assert_eq!(get(&s, &up), 1.0, "{body}");
    }
    assert_eq!(get(&s, "raftlb_backend_active_servers{proxy=\"be\"}"), 2.0);
    assert_eq!(get(&s, "raftlb_backend_backup_servers{proxy=\"be\"}"), 1.0);
    assert_eq!(get(&s, "raftlb_cluster_leader{}"), 1.0);
    assert_eq!(get(&s, "raftlb_config_version{}"), 1.0);
    assert_eq!(get(&s, "raftlb_config_applied_version{}"), 1.0);
    assert_eq!(get(&s, "raftlb_stick_table_size{table=\"be\"}"), 100.0);
    assert_eq!(get(&s, "raftlb_stick_table_entries{table=\"be\"}"), 0.0);
    let sessions = |s: &BTreeMap<String, f64>| {
        get(s, "raftlb_server_sessions_total{proxy=\"be\",server=\"a\"}")
            + get(s, "raftlb_server_sessions_total{proxy=\"be\",server=\"b\"}")
    };
    let before = sessions(&s);

    for _ in 0..4 {
        n.which("fe").await;
    }
    let (_, s) = scrape(&n).await;
    assert_eq!(
        sessions(&s),
        before + 4.0,
        "four connections, four sessions"
    );
    assert_eq!(
        get(&s, "raftlb_stick_table_entries{table=\"be\"}"),
        1.0,
        "one client"
    );

    let fe = |s: &BTreeMap<String, f64>, m: &str| {
        get(s, &format!("raftlb_frontend_{m}{{proxy=\"fe\"}}"))
    };
    assert_eq!(fe(&s, "sessions_total"), 4.0);
    assert_eq!(fe(&s, "current_sessions"), 0.0);
    // Each connection brought the backend's greeting to the client.
    assert!(
        fe(&s, "bytes_out_total") >= 4.0,
        "{}",
        fe(&s, "bytes_out_total")
    );

    b.stop().await;
    wait_until("b marked down", Duration::from_secs(10), || async {
        !n.is_up("be", "b")
    })
    .await;
    let (body, s) = scrape(&n).await;
    let state = |st: &str| {
        get(
            &s,
            &format!("raftlb_server_status{{proxy=\"be\",server=\"b\",state=\"{st}\"}}"),
        )
    };
    assert_eq!((state("DOWN"), state("UP")), (1.0, 0.0), "{body}");
    assert_eq!(get(&s, "raftlb_backend_active_servers{proxy=\"be\"}"), 1.0);
    let check = |m: &str, srv: &str| {
        get(
            &s,
            &format!("raftlb_server_check_{m}_total{{proxy=\"be\",server=\"{srv}\"}}"),
        )
    };
    assert_eq!(check("up_down", "b"), 1.0, "{body}");
    assert!(check("failures", "b") >= 1.0, "{body}");
    assert_eq!((check("up_down", "a"), check("failures", "a")), (0.0, 0.0));
    // A server without checks has no check counters.
    assert!(!s.contains_key("raftlb_server_check_failures_total{proxy=\"be\",server=\"spare\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_gauge_counts_connections_waiting_for_a_slot() {
    let a = Backend::start("a").await;
    let servers = format!(
        "  {{ name = \"a\", address = \"{}\", maxconn = 1 }},",
        a.addr
    );
    let n = TestNode::start(&lb(&servers, "timeout = { queue = \"30s\" }\n")).await;
    let queued = |s: &BTreeMap<String, f64>| get(s, "raftlb_backend_current_queue{proxy=\"be\"}");
    assert_eq!(queued(&scrape(&n).await.1), 0.0);
    // The one slot taken and held; the next client waits in the queue.
    let first = raftlb_testkit::connect(n.addr("fe"))
        .await
        .expect("the first client is served");
    let second = tokio::spawn(raftlb_testkit::connect(n.addr("fe")));
    wait_until("one connection queued", Duration::from_secs(10), || async {
        queued(&scrape(&n).await.1) == 1.0
    })
    .await;
    drop(first);
    let second = second
        .await
        .unwrap()
        .expect("the second client is served once the slot frees");
    assert_eq!(second.server, "a");
    assert_eq!(queued(&scrape(&n).await.1), 0.0);
}

#[test]
fn promtool_finds_problems_it_is_shown() {
    // The check above means something: a counter without `_total` is a
    // problem promtool reports.
    let (_, said) =
        promtool_check("# HELP x_sessions Sessions.\n# TYPE x_sessions counter\nx_sessions 1\n");
    assert!(said.contains("x_sessions"), "{said}");
}

/// An HTTP/1.1 server on loopback answering every request `200 ok`.
async fn http_ok() -> std::net::SocketAddr {
    raftlb_testkit::http_server(|_| "ok".into()).await.0
}

/// Sends `bytes` from `src` to `to` and reads until the proxy closes:
/// how many bytes went each way, and what came back (the answers the
/// callers check show that what they sent arrived).
async fn exchange(src: &str, to: std::net::SocketAddr, bytes: &[u8]) -> (u64, u64, String) {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(format!("{src}:0").parse().unwrap()).unwrap();
    // A connection a rule refuses may be reset as it completes, or before
    // the request goes (the callers that count on an answer check it).
    let Ok(mut s) = sock.connect(to).await else {
        return (0, 0, String::new());
    };
    let _ = s.write_all(bytes).await;
    let mut back = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut back)).await;
    // A refused connection is reset: what arrived before counts.
    let _ = read.expect("the proxy closes the connection");
    (
        bytes.len() as u64,
        back.len() as u64,
        String::from_utf8_lossy(&back).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frontend_counters_follow_http_requests_errors_and_denials() {
    let server = http_ok().await;
    let n = TestNode::start(&format!(
        r#"
[defaults]
mode = "http"
timeout = {{ connect = "2s", client = "30s", server = "30s" }}

[frontends.web]
bind = ["127.0.0.1:0"]
default_backend = "be"
tcp_request_connection = [{{ action = "reject", if = "{{ src 127.0.0.2 }}" }}]

[backends.be]
servers = [ {{ name = "s", address = "{server}" }} ]
"#
    ))
    .await;
    let fe = n.addr("web");
    let (mut sent, mut got) = (0, 0);
    let mut count = |(i, o, back): (u64, u64, String)| {
        sent += i;
        got += o;
        back
    };
    // Two requests on one connection, the second closing it.
    let back = count(
        exchange(
            "127.0.0.1",
            fe,
            b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await,
    );
    assert_eq!(back.matches("HTTP/1.1 200").count(), 2, "{back}");
    // Both lengths: refused by raftlb (400), never sent on.
    let back = count(
        exchange(
            "127.0.0.1",
            fe,
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        )
        .await,
    );
    assert!(back.starts_with("HTTP/1.1 400"), "{back}");
    // Not HTTP at all: hyper answers 400.
    let back = count(exchange("127.0.0.1", fe, b"NOT HTTP\r\n\r\n").await);
    assert!(back.starts_with("HTTP/1.1 400"), "{back}");
    // Refused at the connection by the rule: nothing comes back.
    let (_, _, back) = exchange("127.0.0.2", fe, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(back.is_empty(), "{back}");

    wait_until(
        "every connection ended",
        Duration::from_secs(10),
        || async { n.node.runtime.active_connections() == 0 },
    )
    .await;
    let (body, s) = scrape(&n).await;
    let (ok, said) = promtool_check(&body);
    assert!(
        ok && said.trim().is_empty(),
        "promtool check metrics: {said}\n{body}"
    );
    let m = |name: &str| get(&s, &format!("raftlb_frontend_{name}{{proxy=\"web\"}}"));
    let code = |c: &str| {
        get(
            &s,
            &format!("raftlb_frontend_http_responses_total{{code=\"{c}\",proxy=\"web\"}}"),
        )
    };
    assert_eq!(m("sessions_total"), 4.0, "{body}");
    assert_eq!(m("current_sessions"), 0.0);
    assert_eq!(m("denied_connections_total"), 1.0);
    // The two answered and the one raftlb refused; hyper's refusal came
    // before any request existed.
    assert_eq!(m("http_requests_total"), 3.0);
    assert_eq!(m("request_errors_total"), 2.0);
    assert_eq!((code("2xx"), code("4xx"), code("5xx")), (2.0, 1.0, 0.0));
    // Every byte each way, on the connections the proxy served.
    assert_eq!(m("bytes_in_total"), sent as f64);
    assert_eq!(m("bytes_out_total"), got as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_connects_count_as_errors_retries_and_a_redispatch() {
    let a = Backend::start("a").await;
    let dead = format!("127.0.0.1:{}", raftlb_testkit::free_port());
    let servers = format!(
        "  {{ name = \"x\", address = \"{dead}\" }},\n  {{ name = \"a\", address = \"{}\" }},",
        a.addr
    );
    let extra =
        "balance = \"first\"\nretries = 2\nredispatch = true\ntimeout = { connect = \"100ms\" }\n";
    let n = TestNode::start(&lb(&servers, extra)).await;
    // x refuses: tried, tried again, then the last try goes to a.
    assert_eq!(n.which("fe").await, "a");
    let (body, s) = scrape(&n).await;
    let m = |name: &str, srv: &str| {
        get(
            &s,
            &format!("raftlb_server_{name}_total{{proxy=\"be\",server=\"{srv}\"}}"),
        )
    };
    assert_eq!(m("connection_errors", "x"), 2.0, "{body}");
    assert_eq!(m("retry_warnings", "x"), 1.0, "{body}");
    assert_eq!(m("redispatch_warnings", "x"), 1.0, "{body}");
    for name in ["connection_errors", "retry_warnings", "redispatch_warnings"] {
        assert_eq!(m(name, "a"), 0.0, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_http_mode_failed_connects_count_the_same() {
    let server = http_ok().await;
    let dead = format!("127.0.0.1:{}", raftlb_testkit::free_port());
    let n = TestNode::start(&format!(
        r#"
[defaults]
mode = "http"
timeout = {{ connect = "100ms", client = "30s", server = "30s" }}

[frontends.web]
bind = ["127.0.0.1:0"]
default_backend = "be"

[backends.be]
balance = "first"
retries = 2
redispatch = true
servers = [ {{ name = "x", address = "{dead}" }}, {{ name = "s", address = "{server}" }} ]
"#
    ))
    .await;
    let (_, _, back) = exchange(
        "127.0.0.1",
        n.addr("web"),
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(back.starts_with("HTTP/1.1 200"), "{back}");
    let (body, s) = scrape(&n).await;
    let m = |name: &str| {
        get(
            &s,
            &format!("raftlb_server_{name}_total{{proxy=\"be\",server=\"x\"}}"),
        )
    };
    assert_eq!(
        (
            m("connection_errors"),
            m("retry_warnings"),
            m("redispatch_warnings")
        ),
        (2.0, 1.0, 1.0),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_has_lease_time_left() {
    let a = Backend::start("a").await;
    let nodes = TestNode::three(&lb(
        &format!("  {{ name = \"a\", address = \"{}\" }},", a.addr),
        "",
    ))
    .await;
    let lease = |s: &BTreeMap<String, f64>| {
        (
            get(s, "raftlb_cluster_lease{}"),
            get(s, "raftlb_vip_lease_remaining_seconds{}"),
        )
    };
    wait_until(
        "one node leads with its lease",
        Duration::from_secs(10),
        || async {
            let mut leases = Vec::new();
            for n in &nodes {
                leases.push(lease(&scrape(n).await.1));
            }
            // The leader: the lease, and time left on it; the others: neither.
            let held: Vec<_> = leases.iter().filter(|(l, _)| *l == 1.0).collect();
            held.len() == 1
                && held[0].1 > 0.0
                && leases
                    .iter()
                    .filter(|(l, _)| *l == 0.0)
                    .all(|(_, left)| *left == 0.0)
        },
    )
    .await;
}
