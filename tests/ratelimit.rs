//! Rate limiting on stick-table counters (HAProxy's most common use of
//! them), on one node over loopback: `track_sc0 = "src"` counts each
//! client; a `tcp_request_connection` rule rejects a client over its
//! connection rate, an `http_request` rule answers 429 over its request
//! rate (no server sees the request); other clients are served; and the
//! counters show in `GET /tables`.
//!
//! Rates are read as HAProxy reads them (this period's count plus the last
//! period's, weighted by what it still covers, rounded down), so the
//! connection that crosses a limit of N is the (N+1)th or, across a period
//! boundary, the (N+2)th: the tests allow both.

mod common;

use common::sticky::{admin, client};
use common::TestNode;
use raftlb_testkit::{connect_from, wait_until, Backend};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};

const DEADLINE: Duration = Duration::from_secs(10);

/// The counters of `key` in `table`, as the admin API shows them.
async fn counters(n: &TestNode, table: &str, key: IpAddr) -> BTreeMap<String, u64> {
    let (code, body) = admin(n, &format!("/tables?name={table}&key={key}")).await;
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v[0]["entries"][0]["counters"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
                .collect()
        })
        .unwrap_or_default()
}

/// How many of `tries` connections in a row from `src` are served before
/// the first refused one, and whether every one after it is refused too.
async fn served_before_refused(fe: SocketAddr, src: IpAddr, tries: usize) -> (usize, bool) {
    let mut served = 0;
    let mut refused = 0;
    for _ in 0..tries {
        match connect_from(Some(src), fe).await {
            Ok(_) if refused == 0 => served += 1,
            Ok(_) => return (served, false),
            Err(_) => refused += 1,
        }
    }
    (served, refused == tries - served)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_connection_rate_is_rejected_and_others_are_not() {
    let a = Backend::start("a").await;
    let doc = format!(
        r#"[defaults]
mode = "tcp"
timeout = {{ connect = "2s", client = "30s", server = "30s" }}
[frontends.fe]
bind = ["127.0.0.1:0"]
default_backend = "be"
stick_table = {{ type = "ip", size = "1k", expire = "1m", store = ["conn_cur", "conn_rate(10s)"] }}
track_sc0 = "src"
tcp_request_connection = [{{ action = "reject", if = "{{ sc0_conn_rate gt 3 }}" }}]
[backends.be]
servers = [ {{ name = "a", address = "{}" }} ]
"#,
        a.addr
    );
    let n = TestNode::start(&doc).await;
    let fe = n.addr("fe");
    let (abuser, other) = (client(30), client(31));
    let (served, then_all_refused) = served_before_refused(fe, abuser, 8).await;
    assert!(
        (3..=4).contains(&served) && then_all_refused,
        "served {served} then refused all: {then_all_refused}"
    );
    assert!(
        connect_from(Some(other), fe).await.is_ok(),
        "another client is served"
    );
    // Every attempt counted, and none is open any more.
    wait_until(
        "the closed connections are counted out",
        DEADLINE,
        || async { counters(&n, "fe", abuser).await.get("conn_cur") == Some(&0) },
    )
    .await;
    let c = counters(&n, "fe", abuser).await;
    assert!(c["conn_rate(10s)"] >= 7, "{c:?}");
    assert_eq!(counters(&n, "fe", other).await["conn_cur"], 0);
}

async fn http_backend(name: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(raftlb::demo::http_backend(l, name));
    addr
}

/// The status of one request from `src` on a new connection (closed when
/// this returns).
async fn status_from(fe: SocketAddr, src: IpAddr) -> u16 {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(src, 0)).unwrap();
    let mut s = sock.connect(fe).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut resp = Vec::new();
    let mut buf = [0u8; 4096];
    // Read the head; a denied request's connection is closed after it.
    while !resp.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed before an answer");
        resp.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&resp);
    head[9..12].parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_request_rate_gets_429_and_others_do_not() {
    let a = http_backend("a").await;
    let doc = format!(
        r#"[defaults]
mode = "http"
timeout = {{ connect = "2s", client = "30s", server = "30s" }}
[stick_tables.clients]
type = "ip"
size = "1k"
expire = "1m"
store = ["http_req_rate(10s)", "bytes_in_rate(10s)"]
[frontends.fe]
bind = ["127.0.0.1:0"]
default_backend = "be"
track_sc0 = {{ key = "src", table = "clients" }}
http_request = [{{ action = "deny", status = 429, if = "{{ sc0_http_req_rate gt 5 }}" }}]
[backends.be]
servers = [ {{ name = "a", address = "{a}" }} ]
"#
    );
    let n = TestNode::start(&doc).await;
    let fe = n.addr("fe");
    let (abuser, other) = (client(40), client(41));
    let mut statuses = Vec::new();
    for _ in 0..9 {
        statuses.push(status_from(fe, abuser).await);
    }
    let ok = statuses.iter().take_while(|s| **s == 200).count();
    assert!(
        (5..=6).contains(&ok) && statuses[ok..].iter().all(|s| *s == 429),
        "{statuses:?}"
    );
    assert_eq!(
        status_from(fe, other).await,
        200,
        "another client is served"
    );
    let c = counters(&n, "clients", abuser).await;
    assert!(c["http_req_rate(10s)"] >= 8, "{c:?}");
    wait_until(
        "the bytes sent are counted at the close",
        DEADLINE,
        || async {
            counters(&n, "clients", abuser)
                .await
                .get("bytes_in_rate(10s)")
                .is_some_and(|b| *b >= 9 * 27)
        },
    )
    .await;
}
