//! The data path on worker threads (issue 16): with `threads` > 1 every
//! frontend address has one socket per worker in one `SO_REUSEPORT` group,
//! and each worker reuses the upstream connections it opened. Every test
//! here starts the process's two workers first (once per process: a test
//! binary of its own).

mod common;

use common::TestNode;
use raftlb::proxy::listener;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const WORKERS: usize = 2;

fn workers() {
    raftlb::workers::start(WORKERS).expect("worker threads");
    assert_eq!(raftlb::workers::sockets(), WORKERS);
}

#[tokio::test]
async fn an_address_is_one_socket_per_worker_on_one_port() {
    workers();
    let bound = listener::bind("127.0.0.1:0".parse().unwrap(), 128, false).unwrap();
    let addrs = bound.local_addrs().unwrap();
    assert_eq!(addrs.len(), WORKERS);
    assert_ne!(addrs[0].port(), 0);
    assert!(addrs.iter().all(|a| *a == addrs[0]), "{addrs:?}");
}

#[tokio::test]
async fn an_address_in_use_is_refused_unless_shared_on_purpose() {
    workers();
    let first = listener::bind("127.0.0.1:0".parse().unwrap(), 128, false).unwrap();
    let addr = first.local_addrs().unwrap()[0];
    // The group's sockets share the port among themselves, not with others.
    let e = listener::bind(addr, 128, false).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e}");
    // A socket of another program on it: refused too.
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let e = listener::bind(other.local_addr().unwrap(), 128, false).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e}");
    // `reuseport = true` in the node file: processes that share on purpose.
    let shared = listener::bind("127.0.0.1:0".parse().unwrap(), 128, true).unwrap();
    let addr = shared.local_addrs().unwrap()[0];
    let again = listener::bind(addr, 128, true).unwrap();
    assert_eq!(again.local_addrs().unwrap(), [addr; WORKERS]);
}

/// `n` keep-alive GETs on one client connection; each answer's status.
async fn gets(addr: SocketAddr, n: usize) -> Vec<u16> {
    let (r, mut w) = TcpStream::connect(addr).await.unwrap().into_split();
    let mut r = BufReader::new(r);
    let mut statuses = Vec::new();
    for _ in 0..n {
        w.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut line = String::new();
        r.read_line(&mut line).await.unwrap();
        statuses.push(line.split_whitespace().nth(1).unwrap().parse().unwrap());
        let mut len = 0;
        loop {
            let mut h = String::new();
            r.read_line(&mut h).await.unwrap();
            if h == "\r\n" {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body).await.unwrap();
    }
    statuses
}

#[tokio::test]
async fn requests_are_served_by_the_workers_each_reusing_its_own_server_connections() {
    workers();
    // Each answer names its connection.
    let (server, conns) = raftlb_testkit::http_server(|n| format!("c{n}\n")).await;
    let n = TestNode::start(&format!(
        r#"
[defaults]
mode = "http"
timeout = {{ connect = "2s", client = "30s", server = "30s" }}

[frontends.fe]
bind = ["127.0.0.1:0"]
default_backend = "be"

[backends.be]
servers = [ {{ name = "s1", address = "{server}" }} ]
"#
    ))
    .await;
    let fe = n.addr("fe");
    // Many clients at once, spread over the workers' sockets by the kernel.
    let mut all = tokio::task::JoinSet::new();
    for _ in 0..32 {
        all.spawn(gets(fe, 10));
    }
    while let Some(statuses) = all.join_next().await {
        assert_eq!(statuses.unwrap(), [200; 10]);
    }
    let busy = conns.load(Ordering::SeqCst);
    assert!(
        (1..=32).contains(&busy),
        "{busy} server connections for 32 clients"
    );
    // One client at a time: each worker has idle connections of its own
    // by now, so no new one is opened, whichever worker takes the client.
    for _ in 0..20 {
        assert_eq!(gets(fe, 3).await, [200; 3]);
    }
    assert_eq!(
        conns.load(Ordering::SeqCst),
        busy,
        "sequential clients opened server connections"
    );
    // Each worker counted in its own slot; the frontend's totals sum them.
    let requests = 32 * 10 + 20 * 3;
    raftlb_testkit::wait_until(
        "every response counted",
        std::time::Duration::from_secs(10),
        || async {
            n.node.runtime.status().traffic["fe"].responses[1] == requests
                && n.node.runtime.active_connections() == 0
        },
    )
    .await;
    let t = &n.node.runtime.status().traffic["fe"];
    assert_eq!((t.sessions, t.current, t.requests), (52, 0, requests));
}
