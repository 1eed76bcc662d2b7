//! L4 proxy behaviour over real sockets on loopback: balance algorithms,
//! maxconn and queue, backups, retries and redispatch, health checks (active
//! and passive), half-close and timeouts.

mod common;

use common::{lb, TestNode};
use raftlb_testkit::{connect, connect_from, wait_until, which, Backend};
use std::collections::HashMap;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const DEADLINE: Duration = Duration::from_secs(10);

fn srv(b: &Backend, opts: &str) -> String {
    format!(
        "{{ name = \"{}\", address = \"{}\" {opts} }},",
        b.name, b.addr
    )
}

/// A node balancing with `algo` over three backends a, b, c of equal weight.
async fn three_equal(algo: &str) -> (TestNode, [Backend; 3]) {
    let backends = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ];
    let servers: String = backends.iter().map(|b| srv(b, "")).collect();
    let n = TestNode::start(&lb(&servers, &format!("balance = \"{algo}\""))).await;
    (n, backends)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roundrobin_takes_turns_in_order() {
    let (n, _backends) = three_equal("roundrobin").await;
    let seen = n.sequence("fe", 9).await;
    assert_eq!(seen, ["a", "b", "c", "a", "b", "c", "a", "b", "c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_three_to_one_over_400_connections() {
    for algo in ["roundrobin", "static-rr", "random"] {
        let (a, b) = (Backend::start("a").await, Backend::start("b").await);
        let n = TestNode::start(&lb(
            &[srv(&a, ", weight = 3"), srv(&b, ", weight = 1")].concat(),
            &format!("balance = \"{algo}\""),
        ))
        .await;
        let mut counts = HashMap::new();
        for _ in 0..400 {
            *counts.entry(n.which("fe").await).or_insert(0u32) += 1;
        }
        let to_a = counts.get("a").copied().unwrap_or(0);
        // 3:1 of 400 is 300; ±5% of the total is ±20.
        assert!((280..=320).contains(&to_a), "{algo}: {counts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leastconn_avoids_the_busy_server() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let n = TestNode::start(&lb(
        &[srv(&a, ""), srv(&b, "")].concat(),
        "balance = \"leastconn\"",
    ))
    .await;
    let held = connect(n.addr("fe")).await.unwrap();
    let other = if held.server == "a" { "b" } else { "a" };
    for _ in 0..10 {
        assert_eq!(n.which("fe").await, other);
    }
    let held2 = connect(n.addr("fe")).await.unwrap();
    assert_eq!(held2.server, other);
    // Now both hold one: ties take turns.
    let seen = n.sequence("fe", 4).await;
    assert!(
        seen.contains(&"a".to_string()) && seen.contains(&"b".to_string()),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_keeps_each_client_on_its_server() {
    let (n, _backends) = three_equal("source").await;
    let mut used = HashMap::new();
    for i in 2..40u8 {
        let ip = std::net::IpAddr::from([127, 0, 0, i]);
        let first = connect_from(Some(ip), n.addr("fe")).await.unwrap().server;
        for _ in 0..3 {
            assert_eq!(
                connect_from(Some(ip), n.addr("fe")).await.unwrap().server,
                first,
                "client {ip}"
            );
        }
        *used.entry(first).or_insert(0) += 1;
    }
    assert_eq!(
        used.len(),
        3,
        "38 clients should spread over all servers: {used:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_fills_each_server_to_its_maxconn() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let n = TestNode::start(&lb(
        &[
            srv(&a, ", maxconn = 2"),
            srv(&b, ", maxconn = 2"),
            srv(&c, ", maxconn = 2"),
        ]
        .concat(),
        "balance = \"first\"",
    ))
    .await;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(connect(n.addr("fe")).await.unwrap());
    }
    let servers: Vec<&str> = held.iter().map(|c| c.server.as_str()).collect();
    assert_eq!(servers, ["a", "a", "b", "b", "c"]);
    // A slot freed on the first server is the next one used.
    held.remove(0);
    wait_until("a's slot is free", DEADLINE, || async {
        n.node.runtime.server("be", "a").unwrap().cur_conns() == 1
    })
    .await;
    assert_eq!(connect(n.addr("fe")).await.unwrap().server, "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_only_when_primaries_are_down() {
    let (mut a, k) = (Backend::start("a").await, Backend::start("spare").await);
    let check = ", check = true, inter = \"50ms\", rise = 1, fall = 1";
    let n = TestNode::start(&lb(
        &[srv(&a, check), srv(&k, ", backup = true")].concat(),
        "",
    ))
    .await;
    for _ in 0..5 {
        assert_eq!(n.which("fe").await, "a");
    }
    a.stop().await;
    wait_until("a marked down", DEADLINE, || async { !n.is_up("be", "a") }).await;
    for _ in 0..5 {
        assert_eq!(n.which("fe").await, "spare");
    }
    let _a = Backend::start_on("a", a.addr).await;
    wait_until("a marked up", DEADLINE, || async { n.is_up("be", "a") }).await;
    assert_eq!(n.which("fe").await, "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_first_backup_unless_allbackups() {
    let (k1, k2) = (Backend::start("k1").await, Backend::start("k2").await);
    let dead = "{ name = \"dead\", address = \"127.0.0.1:1\", weight = 0 },";
    let backups = [srv(&k1, ", backup = true"), srv(&k2, ", backup = true")].concat();
    let n = TestNode::start(&lb(&format!("{dead}{backups}"), "")).await;
    for _ in 0..4 {
        assert_eq!(n.which("fe").await, "k1");
    }
    let n = TestNode::start(&lb(&format!("{dead}{backups}"), "allbackups = true")).await;
    let seen: Vec<String> = n.sequence("fe", 4).await;
    assert_eq!(seen, ["k1", "k2", "k1", "k2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_waits_for_a_slot_then_closes_at_timeout_queue() {
    let a = Backend::start("a").await;
    let cfg = lb(
        &srv(&a, ", maxconn = 1"),
        "timeout = { connect = \"2s\", server = \"30s\", queue = \"400ms\" }",
    );
    let n = TestNode::start(&cfg).await;
    let held = connect(n.addr("fe")).await.unwrap();
    assert_eq!(held.server, "a");

    // Queued, then served when the slot frees.
    let addr = n.addr("fe");
    let waiting = tokio::spawn(async move { connect(addr).await });
    wait_until("one connection queued", DEADLINE, || async {
        n.node.runtime.status().backends["be"][0].status.cur_conns == 1
            && n.node.runtime.server("be", "a").unwrap().cur_conns() == 1
    })
    .await;
    drop(held);
    let served = waiting
        .await
        .unwrap()
        .expect("queued connection served after the slot freed");
    assert_eq!(served.server, "a");

    // Queued past `timeout queue`: closed without reaching the server.
    let mut raw = tokio::net::TcpStream::connect(n.addr("fe")).await.unwrap();
    let mut buf = [0u8; 16];
    let r = tokio::time::timeout(DEADLINE, tokio::io::AsyncReadExt::read(&mut raw, &mut buf)).await;
    match r {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        other => panic!("expected the queued connection to be closed, got {other:?}"),
    }
    assert_eq!(
        n.node
            .runtime
            .server("be", "a")
            .unwrap()
            .status()
            .total_conns,
        2
    );
    drop(served);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_then_redispatch_when_a_server_refuses() {
    let good = Backend::start("good").await;
    // A port nobody listens on: connections are refused.
    let refused = "{ name = \"refusing\", address = \"127.0.0.1:1\" },";
    let n = TestNode::start(&lb(
        &format!("{refused}{}", srv(&good, "")),
        "retries = 2\nredispatch = true",
    ))
    .await;
    for _ in 0..6 {
        assert_eq!(n.which("fe").await, "good");
    }
    // Without redispatch, the connections that picked the refusing server fail.
    let n = TestNode::start(&lb(
        &format!("{refused}{}", srv(&good, "")),
        "retries = 1\nredispatch = false",
    ))
    .await;
    let mut failed = 0;
    for _ in 0..6 {
        if connect(n.addr("fe")).await.is_err() {
            failed += 1;
        }
    }
    assert_eq!(failed, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_backend_goes_down_after_fall_and_up_after_rise() {
    let (mut a, b) = (Backend::start("a").await, Backend::start("b").await);
    let check = ", check = true, inter = \"100ms\", rise = 2, fall = 2";
    let n = TestNode::start(&lb(&[srv(&a, check), srv(&b, check)].concat(), "")).await;
    a.stop().await;
    wait_until("a marked down", DEADLINE, || async { !n.is_up("be", "a") }).await;
    let reason = n
        .node
        .runtime
        .server("be", "a")
        .unwrap()
        .status()
        .last_change;
    assert!(reason.starts_with("L4CON"), "{reason}");
    for _ in 0..6 {
        assert_eq!(n.which("fe").await, "b");
    }
    let _a = Backend::start_on("a", a.addr).await;
    wait_until("a marked up", DEADLINE, || async { n.is_up("be", "a") }).await;
    let seen = n.sequence("fe", 4).await;
    assert!(seen.contains(&"a".to_string()), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_check_marks_a_server_down_on_a_bad_status() {
    // An HTTP server that answers 503 to everything.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.0 503 Service Unavailable\r\n\r\n")
                    .await;
            });
        }
    });
    let cfg = lb(
        &format!("{{ name = \"web\", address = \"{addr}\", check = true, inter = \"50ms\", fall = 2 }},"),
        "health_check = { kind = \"http\", method = \"GET\", path = \"/health\", expect_status = [200] }",
    );
    let n = TestNode::start(&cfg).await;
    wait_until("web marked down", DEADLINE, || async {
        !n.is_up("be", "web")
    })
    .await;
    assert_eq!(
        n.node
            .runtime
            .server("be", "web")
            .unwrap()
            .status()
            .last_change,
        "L7STS 503"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_mark_down_after_error_limit() {
    let good = Backend::start("good").await;
    // Checks far apart, so only observed traffic can take the server down.
    let refusing = "{ name = \"bad\", address = \"127.0.0.1:1\", check = true, inter = \"1h\", observe = \"layer4\", error_limit = 3, on_error = \"mark-down\" },";
    let n = TestNode::start(&lb(&format!("{refusing}{}", srv(&good, "")), "retries = 0")).await;
    let mut failures = 0;
    for _ in 0..6 {
        if connect(n.addr("fe")).await.is_err() {
            failures += 1;
        }
    }
    assert_eq!(
        failures, 3,
        "three errors reach the limit; then the server is down"
    );
    assert!(!n.is_up("be", "bad"));
    let why = n
        .node
        .runtime
        .server("be", "bad")
        .unwrap()
        .status()
        .last_change;
    assert!(why.contains("3 consecutive errors observed"), "{why}");
    for _ in 0..4 {
        assert_eq!(n.which("fe").await, "good");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_passes_the_fin_and_the_other_way_keeps_flowing() {
    let a = Backend::start("a").await;
    let n = TestNode::start(&lb(&srv(&a, ""), "")).await;
    let mut c = connect(n.addr("fe")).await.unwrap();
    assert_eq!(c.echo("hello").await.unwrap(), "hello");
    // The client half-closes; the backend sees EOF, then still sends "bye".
    c.stream.get_mut().write_all(b"last words").await.unwrap();
    c.stream.get_mut().shutdown().await.unwrap();
    let mut rest = String::new();
    tokio::time::timeout(
        DEADLINE,
        tokio::io::AsyncReadExt::read_to_string(&mut c.stream, &mut rest),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(rest, "last wordsbye\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_idle_timeout_closes_idle_connections_only() {
    let a = Backend::start("a").await;
    let cfg = lb(&srv(&a, ""), "").replace("client = \"30s\"", "client = \"300ms\"");
    let n = TestNode::start(&cfg).await;
    let mut idle = connect(n.addr("fe")).await.unwrap();
    let mut busy = connect(n.addr("fe")).await.unwrap();
    // The busy one talks every 100 ms for over three timeouts.
    for i in 0..10 {
        assert_eq!(
            busy.echo(&format!("ping{i}")).await.unwrap(),
            format!("ping{i}")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        idle.closed_within(DEADLINE).await,
        "idle connection must be closed"
    );
    assert_eq!(busy.echo("still here").await.unwrap(), "still here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_half_closed_waits_for_a_slow_server_past_timeout_client() {
    // The server answers once it has the whole request (the client's FIN),
    // after longer than `timeout.client`: the client is waiting, not idle,
    // so only `timeout.server` runs (HAProxy stops a side's read timeout
    // at its shutr).
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut req = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut s, &mut req)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        s.write_all(b"answer to ").await.unwrap();
        s.write_all(&req).await.unwrap();
    });
    let cfg = lb(&format!("{{ name = \"slow\", address = \"{addr}\" }},"), "")
        .replace("client = \"30s\"", "client = \"500ms\"");
    let n = TestNode::start(&cfg).await;
    let mut c = tokio::net::TcpStream::connect(n.addr("fe")).await.unwrap();
    c.write_all(b"question").await.unwrap();
    c.shutdown().await.unwrap();
    let mut back = String::new();
    tokio::time::timeout(
        DEADLINE,
        tokio::io::AsyncReadExt::read_to_string(&mut c, &mut back),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(back, "answer to question");
    server.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_server_up_closes_new_connections_at_once() {
    let cfg = lb(
        "{ name = \"x\", address = \"127.0.0.1:1\", weight = 0 },",
        "",
    );
    let n = TestNode::start(&cfg).await;
    let mut raw = tokio::net::TcpStream::connect(n.addr("fe")).await.unwrap();
    let mut buf = [0u8; 8];
    let r = tokio::time::timeout(DEADLINE, tokio::io::AsyncReadExt::read(&mut raw, &mut buf)).await;
    assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_and_ipv4_binds_serve_the_same_frontend() {
    let a = Backend::start("a").await;
    let cfg = lb(&srv(&a, ""), "").replace(
        "bind = [\"127.0.0.1:0\"]",
        "bind = [\"127.0.0.1:0\", \"[::1]:0\"]",
    );
    let n = TestNode::start(&cfg).await;
    let addrs = n.node.runtime.bound_addrs("fe");
    assert_eq!(addrs.len(), 2);
    for addr in addrs {
        assert_eq!(which(addr).await, "a", "through {addr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_listeners_and_established_connections() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let n = TestNode::start(&lb(&srv(&a, ""), "")).await;
    let addr = n.addr("fe");
    let mut old = connect(addr).await.unwrap();
    let v = n
        .node
        .reload(lb(&srv(&b, ""), ""), raftlb_proto::Format::Toml, "new")
        .await
        .unwrap();
    n.node.wait_applied(v, DEADLINE).await.unwrap();
    assert_eq!(n.addr("fe"), addr, "the listener keeps its socket");
    assert_eq!(which(addr).await, "b");
    assert_eq!(old.echo("still a").await.unwrap(), "still a");
    assert_eq!(old.server, "a");
    // A document with mistakes is refused and changes nothing.
    let err = n
        .node
        .reload(
            lb(&srv(&a, ", wieght = 2"), ""),
            raftlb_proto::Format::Toml,
            "bad.toml",
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("did you mean `weight`"), "{err}");
    assert_eq!(which(addr).await, "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frontend_maxconn_leaves_the_excess_in_the_listen_queue() {
    let a = Backend::start("a").await;
    let cfg = lb(&srv(&a, ""), "").replace(
        "default_backend = \"be\"",
        "default_backend = \"be\"\nmaxconn = 2",
    );
    let n = TestNode::start(&cfg).await;
    let first = connect(n.addr("fe")).await.unwrap();
    let _second = connect(n.addr("fe")).await.unwrap();
    // The third completes the TCP handshake in the kernel but is not served
    // until a slot frees.
    let addr = n.addr("fe");
    let mut third = tokio::spawn(async move { connect(addr).await });
    // A negative property: watched for a bounded time, it must not happen.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut third)
            .await
            .is_err(),
        "a third connection was served past maxconn 2"
    );
    assert_eq!(n.node.runtime.active_connections(), 2);
    drop(first);
    let third = tokio::time::timeout(DEADLINE, third)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(third.server, "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raising_maxconn_at_saturation_lets_a_waiting_client_in_at_once() {
    // Both limits, the frontend's and the global one, each at 1 then 2.
    for (key, section) in [("maxconn", "frontend"), ("maxconn", "global")] {
        let a = Backend::start("a").await;
        let doc = |m: u32| {
            let base = lb(&srv(&a, ""), "");
            if section == "frontend" {
                base.replace(
                    "default_backend = \"be\"",
                    &format!("default_backend = \"be\"\n{key} = {m}"),
                )
            } else {
                format!("[global]\n{key} = {m}\n{base}")
            }
        };
        let n = TestNode::start(&doc(1)).await;
        let addr = n.addr("fe");
        let _first = connect(addr).await.unwrap();
        let second = tokio::spawn(async move { connect(addr).await });
        let v = n
            .node
            .reload(doc(2), raftlb_proto::Format::Toml, "raised")
            .await
            .unwrap();
        n.node.wait_applied(v, DEADLINE).await.unwrap();
        // The first connection stays open: only the raise can let it in.
        let second = tokio::time::timeout(DEADLINE, second).await;
        let second = second
            .unwrap_or_else(|_| panic!("{section} maxconn 2: the waiting client stayed out"))
            .unwrap()
            .unwrap();
        assert_eq!(second.server, "a");
    }
}
