//! Stick tables on one node, over real sockets on loopback: `stick_on src`
//! in TCP mode and `req.cook(…)` in HTTP mode keep a client on its server
//! (through `roundrobin`, and a reload that reorders the servers); a server
//! in maintenance or down is skipped and the entry rewritten, a drained one
//! keeps its sticky clients; `GET /tables` shows the entries.

mod common;

use common::sticky::{admin, client, entries, srv, via, TABLE};
use common::{lb, TestNode};
use raftlb_proto::{Command, OperatorState, ServerKey};
use raftlb_testkit::{wait_until, Backend};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const DEADLINE: Duration = Duration::from_secs(10);

async fn set_state(n: &TestNode, server: &str, state: OperatorState) {
    let cmd = Command::SetServerState {
        server: ServerKey::new("be", server),
        state,
    };
    n.node.cluster.write(cmd).await.expect("committed");
    let want = state;
    wait_until("the operator state is applied", DEADLINE, || async {
        n.node.runtime.server("be", server).unwrap().admin_state() == want
    })
    .await;
}

/// A node with `stick_on src` over backends a, b, c (roundrobin).
async fn three_sticky() -> (TestNode, [Backend; 3]) {
    let bs = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ];
    let servers: String = bs.iter().map(|b| srv(b, "")).collect();
    (TestNode::start(&lb(&servers, TABLE)).await, bs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn src_keeps_each_client_on_its_server_through_roundrobin_and_a_reordering_reload() {
    let (n, bs) = three_sticky().await;
    let mut first = BTreeMap::new();
    for i in 0..6 {
        let s = via(&n, client(i)).await;
        // roundrobin alone would move the client on at every connection.
        for _ in 0..4 {
            assert_eq!(via(&n, client(i)).await, s, "client {}", client(i));
        }
        first.insert(client(i).to_string(), format!("be/{s}"));
    }
    let used: BTreeSet<&String> = first.values().collect();
    assert_eq!(used.len(), 3, "new clients are still balanced: {first:?}");
    assert_eq!(entries(&n, "be").await, first);

    // The servers in another order (and one more): entries name servers,
    // not positions, so every client keeps its server.
    let d = Backend::start("d").await;
    let reordered = [
        srv(&d, ""),
        srv(&bs[2], ""),
        srv(&bs[0], ""),
        srv(&bs[1], ""),
    ]
    .concat();
    let v = n
        .node
        .reload(lb(&reordered, TABLE), raftlb_proto::Format::Toml, "new")
        .await
        .unwrap();
    n.node.wait_applied(v, DEADLINE).await.unwrap();
    for i in 0..6 {
        let s = via(&n, client(i)).await;
        assert_eq!(
            format!("be/{s}"),
            first[&client(i).to_string()],
            "client {}",
            client(i)
        );
    }
    assert_eq!(
        entries(&n, "be").await,
        first,
        "the table survived the reload"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_in_maintenance_or_down_is_skipped_and_the_entry_rewritten_a_drained_one_keeps_its_clients(
) {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let check = ", check = true, inter = \"100ms\", rise = 1, fall = 1";
    let n = TestNode::start(&lb(&[srv(&a, check), srv(&b, check)].concat(), TABLE)).await;
    let x = client(1);
    let mine = via(&n, x).await;
    let other = if mine == "a" { "b" } else { "a" };

    // Maintenance: the client moves, and the entry with it.
    set_state(&n, &mine, OperatorState::Maint).await;
    assert_eq!(via(&n, x).await, other);
    assert_eq!(
        entries(&n, "be").await[&x.to_string()],
        format!("be/{other}")
    );
    set_state(&n, &mine, OperatorState::Ready).await;
    assert_eq!(via(&n, x).await, other, "the rewritten entry holds");

    // Drain: its sticky clients stay, new clients go elsewhere.
    set_state(&n, other, OperatorState::Drain).await;
    for _ in 0..3 {
        assert_eq!(
            via(&n, x).await,
            other,
            "a drained server keeps its sticky client"
        );
    }
    assert_eq!(
        via(&n, client(2)).await,
        mine,
        "a new client avoids the drained server"
    );
    set_state(&n, other, OperatorState::Ready).await;

    // Down: the client moves to the server that is up.
    let (down, _up) = if other == "a" { (a, b) } else { (b, a) };
    let down_addr = down.addr;
    drop(down);
    wait_until("the server is seen down", DEADLINE, || async {
        !n.is_up("be", other)
    })
    .await;
    assert_eq!(via(&n, x).await, mine);
    assert_eq!(
        entries(&n, "be").await[&x.to_string()],
        format!("be/{mine}")
    );
    let _back = Backend::start_on(other, down_addr).await;
    wait_until("the server is seen up", DEADLINE, || async {
        n.is_up("be", other)
    })
    .await;
    assert_eq!(via(&n, x).await, mine, "it stays where the entry now says");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_expires_and_the_client_is_balanced_again() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let table = TABLE.replace("expire = \"10m\"", "expire = \"300ms\"");
    let n = TestNode::start(&lb(&[srv(&a, ""), srv(&b, "")].concat(), &table)).await;
    let x = client(1);
    let first = via(&n, x).await;
    assert_eq!(via(&n, x).await, first, "it sticks while the entry lives");
    assert_eq!(entries(&n, "be").await.len(), 1);
    wait_until("the entry expires", DEADLINE, || async {
        entries(&n, "be").await.is_empty()
    })
    .await;
    // With no entry, roundrobin picks for this client again: the other
    // server's turn (one pick was made so far).
    assert_ne!(via(&n, x).await, first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_restart_keeps_every_entry_and_every_client_on_its_server() {
    let (n, _bs) = three_sticky().await;
    let mut before = BTreeMap::new();
    for i in 0..6 {
        before.insert(client(i), via(&n, client(i)).await);
    }
    let table = entries(&n, "be").await;
    assert_eq!(table.len(), 6);
    let n = n.restart().await;
    wait_until("the config is applied again", DEADLINE, || async {
        !n.node.runtime.bound_addrs("fe").is_empty()
    })
    .await;
    assert_eq!(entries(&n, "be").await, table, "the entries came back");
    // A new client first, so that roundrobin alone would now hand the
    // others different servers than before.
    via(&n, client(50)).await;
    for (c, s) in &before {
        assert_eq!(&via(&n, *c).await, s, "client {c}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_shows_tables_and_refuses_what_it_cannot_show() {
    let a = Backend::start("a").await;
    let n = TestNode::start(&lb(&srv(&a, ""), TABLE)).await;
    via(&n, client(3)).await;
    let (code, body) = admin(&n, "/tables").await;
    assert_eq!(code, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v[0]["name"], "be");
    assert_eq!(v[0]["type"], "ip");
    assert_eq!(v[0]["size"], 1024);
    assert_eq!(v[0]["used"], 1);
    let e = &v[0]["entries"][0];
    assert_eq!(e["key"], "127.0.0.13");
    assert_eq!(e["written_by"], 1);
    let left = e["expire_in_ms"].as_u64().unwrap();
    assert!(left > 590_000 && left <= 600_000, "{left}");
    let (code, body) = admin(&n, "/tables?name=be&key=127.0.0.13").await;
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()[0]["entries"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let (code, body) = admin(&n, "/tables?name=be&key=127.0.0.99").await;
    assert_eq!(code, 200);
    assert!(serde_json::from_str::<Value>(&body).unwrap()[0]["entries"]
        .as_array()
        .unwrap()
        .is_empty());
    let (code, body) = admin(&n, "/tables?name=nope").await;
    assert_eq!(code, 404, "{body}");
    assert!(
        body.contains("no stick table \"nope\" (tables: be)"),
        "{body}"
    );
    let (code, body) = admin(&n, "/tables?name=be&key=not-an-ip").await;
    assert_eq!(code, 400, "{body}");
}

/// An HTTP backend that answers every request with its name.
async fn http_backend(name: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(raftlb::demo::http_backend(l, name));
    addr
}

/// One request on a new connection; the backend that answered.
async fn get(proxy: SocketAddr, cookie: Option<&str>) -> String {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    let cookie = cookie.map_or(String::new(), |c| {
        format!("Cookie: lang=fr; SESSION={c}\r\n")
    });
    let req = format!("GET / HTTP/1.1\r\nHost: x\r\n{cookie}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    tokio::time::timeout(DEADLINE, s.read_to_string(&mut resp))
        .await
        .unwrap()
        .unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    resp.rsplit("hello from ")
        .next()
        .unwrap()
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_requests_stick_by_cookie_value_and_requests_without_it_are_balanced() {
    let (a, b) = (http_backend("a").await, http_backend("b").await);
    let doc = format!(
        "[defaults]\nmode = \"http\"\ntimeout = {{ connect = \"2s\", client = \"30s\", server = \"30s\" }}\n\
         [frontends.fe]\nbind = [\"127.0.0.1:0\"]\ndefault_backend = \"be\"\n\
         [stick_tables.sessions]\ntype = \"string\"\nlen = 16\nsize = 100\nexpire = \"1m\"\n\
         [backends.be]\nstick_on = {{ key = \"req.cook(SESSION)\", table = \"sessions\" }}\n\
         servers = [ {{ name = \"a\", address = \"{a}\" }}, {{ name = \"b\", address = \"{b}\" }} ]\n"
    );
    let n = TestNode::start(&doc).await;
    let fe = n.addr("fe");
    let mut seen = BTreeSet::new();
    for user in ["u1", "u2", "u3", "u4"] {
        let s = get(fe, Some(user)).await;
        for _ in 0..3 {
            assert_eq!(get(fe, Some(user)).await, s, "session {user}");
        }
        seen.insert(s);
    }
    assert_eq!(seen.len(), 2, "sessions spread over both servers");
    let without: BTreeSet<String> = [get(fe, None).await, get(fe, None).await].into();
    assert_eq!(without.len(), 2, "no cookie, no stickiness: {without:?}");
    let table = entries(&n, "sessions").await;
    assert_eq!(
        table.keys().cloned().collect::<Vec<_>>(),
        ["u1", "u2", "u3", "u4"]
    );
    // By the backend's name too (HAProxy's `show table BACKEND`).
    assert_eq!(entries(&n, "be").await, table);
}
