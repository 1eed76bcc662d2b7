//! Stick tables kept in step between three nodes in this process, peers on
//! loopback: an entry written on one node reaches the others (and a client
//! keeps its server through any of them); a node restarted without its
//! saved tables has the whole table back before its frontend accepts; a
//! bad frame on the node-to-node port closes that connection only.

mod common;

use common::sticky::{client, entries, srv, via, TABLE};
use common::{lb, TestNode};
use raftlb_cluster::net::handshake;
use raftlb_cluster::net::secret::ClusterSecret;
use raftlb_cluster::types::Request;
use raftlb_proto::stick::{Stamp, StickEntry, StuckServer, TableEntries, TableKey};
use raftlb_proto::wire;
use raftlb_testkit::{wait_until, Backend};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DEADLINE: Duration = Duration::from_secs(10);

async fn three_sticky() -> ([TestNode; 3], [Backend; 3]) {
    let bs = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ];
    let servers: String = bs.iter().map(|b| srv(b, "")).collect();
    (TestNode::three(&lb(&servers, TABLE)).await, bs)
}

/// Waits until node `n`'s table `be` holds `want`.
async fn wait_table(n: &TestNode, want: &BTreeMap<String, String>) {
    let what = format!("node {} holds the table", n.id());
    wait_until(&what, DEADLINE, || async {
        entries(n, "be").await == *want
    })
    .await;
}

/// Who wrote each entry of node `n`'s table `be`, as the admin API says.
async fn writers(n: &TestNode) -> Vec<u64> {
    let (code, body) = common::sticky::admin(n, "/tables?name=be").await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v[0]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["written_by"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_reach_every_peer_and_a_restarted_node_has_them_before_it_accepts() {
    let ([n1, n2, n3], _bs) = three_sticky().await;
    let mut table = BTreeMap::new();
    let mut chose = BTreeMap::new();
    for i in 0..6 {
        let s = via(&n1, client(i)).await;
        chose.insert(client(i), s.clone());
        table.insert(client(i).to_string(), format!("be/{s}"));
    }
    assert_eq!(entries(&n1, "be").await, table);
    for n in [&n2, &n3] {
        wait_table(n, &table).await;
        assert_eq!(writers(n).await, vec![1; 6], "node 1 wrote them all");
    }
    // Through another node (as after the VIP moved) every client reaches
    // the server it had, though roundrobin there starts afresh.
    for (c, s) in &chose {
        assert_eq!(&via(&n2, *c).await, s, "client {c} through node 2");
    }

    // Node 3 restarts without its saved tables: it takes them from a peer
    // before its frontend opens.
    let n3 = n3.restart_without_saved_tables().await;
    wait_until("node 3 serves again", DEADLINE, || async {
        !n3.node.runtime.bound_addrs("fe").is_empty()
    })
    .await;
    assert_eq!(
        entries(&n3, "be").await,
        table,
        "the table was there when the frontend opened"
    );
    for (c, s) in &chose {
        assert_eq!(&via(&n3, *c).await, s, "client {c} through node 3");
    }
}

/// A connection to node `n`'s node-to-node port, authenticated as node 1
/// with the cluster's `secret`, speaking protocol `version`.
async fn peer_conn(n: &TestNode, secret: &ClusterSecret, version: u16) -> TcpStream {
    let addr = n.node.cluster_addr.expect("listens for peers");
    let mut s = TcpStream::connect(addr).await.unwrap();
    handshake::client_speaking(&mut s, secret, 1, n.id(), version)
        .await
        .expect("handshake");
    s
}

/// Whether the peer closed `s` (without answering) within the deadline.
async fn closed(mut s: TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(DEADLINE, s.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_frame_on_the_peer_port_closes_that_connection_only() {
    let ([n1, n2, _n3], _bs) = three_sticky().await;
    let secret = ClusterSecret::from_token(&n1.node.token).unwrap();

    // A frame of the right version whose message does not decode.
    let mut s = peer_conn(&n2, &secret, wire::PROTOCOL_VERSION).await;
    let mut junk = vec![0, 0, 0, 8];
    junk.extend_from_slice(&wire::PROTOCOL_VERSION.to_be_bytes());
    junk.extend_from_slice(&[0xfd, 0xff, 0xff, 0xff, 0xff, 0xff]);
    s.write_all(&junk).await.unwrap();
    assert!(closed(s).await, "a garbage frame closes its connection");

    // A length over the limit: refused before anything is read.
    let mut s = peer_conn(&n2, &secret, wire::PROTOCOL_VERSION).await;
    let huge = (wire::MAX_FRAME as u32 * 2).to_be_bytes();
    s.write_all(&huge).await.unwrap();
    assert!(closed(s).await, "an oversized frame closes its connection");

    // A sync push on a connection of protocol version 1, which has none.
    let entry = StickEntry {
        server: Some(StuckServer {
            backend: "be".into(),
            server: "a".into(),
        }),
        expire_at_ms: None,
        written: Stamp {
            at_ms: u64::MAX / 2,
            node: 1,
        },
        counters: Vec::new(),
    };
    let key = TableKey::ip(client(40));
    let push = Request::StickPush(vec![TableEntries {
        name: "be".into(),
        entries: vec![(key, entry)],
    }]);
    let mut s = peer_conn(&n2, &secret, 1).await;
    s.write_all(&wire::encode_as(&push, 1).unwrap())
        .await
        .unwrap();
    assert!(
        closed(s).await,
        "a version-2 message on a version-1 connection"
    );
    assert!(
        !entries(&n2, "be")
            .await
            .contains_key(&client(40).to_string()),
        "the refused push was not taken"
    );

    // Meanwhile the nodes' own sync goes on, and so does the cluster.
    via(&n1, client(1)).await;
    let want = entries(&n1, "be").await;
    assert_eq!(want.len(), 1);
    wait_table(&n2, &want).await;
    n2.node
        .cluster
        .write(raftlb_proto::Command::SetServerState {
            server: raftlb_proto::ServerKey::new("be", "a"),
            state: raftlb_proto::OperatorState::Drain,
        })
        .await
        .expect("the cluster still commits");
}

/// `POST path` on node `n`'s admin API, as JSON.
async fn post(n: &TestNode, path: &str) -> serde_json::Value {
    let body = raftlb::admin::request(
        n.node.admin_addr,
        "POST",
        path,
        "",
        Some(&n.admin_token()),
        DEADLINE,
    )
    .await
    .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    serde_json::from_str(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_clear_acts_on_every_node_and_clients_are_balanced_anew() {
    let ([n1, n2, n3], _bs) = three_sticky().await;
    for i in 0..4 {
        via(&n1, client(i)).await;
    }
    let mut table = entries(&n1, "be").await;
    assert_eq!(table.len(), 4);
    for n in [&n2, &n3] {
        wait_table(n, &table).await;
    }

    // One key, asked of node 2.
    let gone = client(0).to_string();
    let v = post(&n2, &format!("/tables/clear?name=be&key={gone}")).await;
    // Every node answered. (A node the asked node's tombstone reached
    // first, by the sync, has nothing left to clear: 0.)
    let cleared: Vec<Option<u64>> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["cleared"].as_u64())
        .collect();
    assert_eq!(cleared.len(), 3, "{v}");
    assert!(cleared.iter().all(Option::is_some), "{v}");
    assert_eq!(cleared[0], Some(1), "the asked node clears first: {v}");
    table.remove(&gone);
    for n in [&n1, &n2, &n3] {
        wait_table(n, &table).await;
    }

    // The whole table, asked of node 3; then a client is stuck again, and
    // that reaches every node (the tombstones do not block new writes).
    let v = post(&n3, "/tables/clear?name=be").await;
    assert_eq!(v["nodes"].as_array().unwrap().len(), 3, "{v}");
    for n in [&n1, &n2, &n3] {
        wait_table(n, &BTreeMap::new()).await;
    }
    via(&n1, client(2)).await;
    let again = entries(&n1, "be").await;
    assert_eq!(again.len(), 1);
    for n in [&n2, &n3] {
        wait_table(n, &again).await;
    }

    // A table no node runs, or a bad key: refused.
    let err = raftlb::admin::request(
        n1.node.admin_addr,
        "POST",
        "/tables/clear?name=nope",
        "",
        Some(&n1.admin_token()),
        DEADLINE,
    )
    .await;
    assert!(
        matches!(
            err,
            Err(raftlb::admin::ClientError::Refused { status: 404, .. })
        ),
        "{err:?}"
    );
    let err = raftlb::admin::request(
        n1.node.admin_addr,
        "POST",
        "/tables/clear?name=be&key=x",
        "",
        Some(&n1.admin_token()),
        DEADLINE,
    )
    .await;
    assert!(
        matches!(
            err,
            Err(raftlb::admin::ClientError::Refused { status: 400, .. })
        ),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_counters_follow_it_to_another_node_and_its_limit_with_them() {
    let a = Backend::start("a").await;
    // expire 16 s: renewals reach the peers within 2 s.
    let doc = format!(
        r#"[defaults]
mode = "tcp"
timeout = {{ connect = "2s", client = "30s", server = "30s" }}
[stick_tables.clients]
type = "ip"
size = "1k"
expire = "16s"
store = ["conn_cur", "conn_rate(1m)"]
[frontends.fe]
bind = ["127.0.0.1:0"]
default_backend = "be"
track_sc0 = {{ key = "src", table = "clients" }}
tcp_request_connection = [{{ action = "reject", if = "{{ sc0_conn_rate gt 5 }}" }}]
[backends.be]
servers = [ {{ name = "a", address = "{}" }} ]
"#,
        a.addr
    );
    let [n1, n2, _n3] = TestNode::three(&doc).await;
    let abuser = client(50);
    for _ in 0..4 {
        raftlb_testkit::connect_from(Some(abuser), n1.addr("fe"))
            .await
            .expect("under the limit");
    }
    // On node 2 (as after the VIP moved), the client's count is there.
    let rate = |n: &TestNode| {
        let n = n.node.admin_addr;
        async move {
            let body = raftlb::admin::get(n, &format!("/tables?name=clients&key={abuser}"))
                .await
                .unwrap();
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            v[0]["entries"][0]["counters"]["conn_rate(1m)"].as_u64()
        }
    };
    let end = std::time::Instant::now() + DEADLINE;
    while rate(&n2).await < Some(4) {
        assert!(
            std::time::Instant::now() < end,
            "node 2 counts {:?}, node 1 {:?}",
            rate(&n2).await,
            rate(&n1).await
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // There it goes on from 4: the limit of 5 is crossed by the 2nd or 3rd
    // connection, not the 6th.
    let mut served = 0;
    for _ in 0..4 {
        if raftlb_testkit::connect_from(Some(abuser), n2.addr("fe"))
            .await
            .is_ok()
        {
            served += 1;
        } else {
            break;
        }
    }
    assert!((1..=2).contains(&served), "served {served} on node 2");
}

/// `raftlb_stick_sync_lag_seconds{peer}` of node `n`'s `/metrics`, by peer.
async fn sync_lags(n: &TestNode) -> BTreeMap<String, f64> {
    let body = raftlb::admin::get(n.node.admin_addr, "/metrics")
        .await
        .expect("GET /metrics");
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
        .expect("a Prometheus text-format scrape");
    scrape
        .samples
        .into_iter()
        .filter(|s| s.metric == "raftlb_stick_sync_lag_seconds")
        .filter_map(|s| match s.value {
            prometheus_parse::Value::Gauge(v) => Some((s.labels.get("peer")?.to_string(), v)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sync_lag_is_zero_for_a_peer_that_has_every_write_and_grows_for_one_gone() {
    let ([n1, n2, n3], _bs) = three_sticky().await;
    via(&n1, client(1)).await;
    let caught_up = BTreeMap::from([("n2".to_string(), 0.0), ("n3".to_string(), 0.0)]);
    wait_until("both peers have node 1's write", DEADLINE, || async {
        sync_lags(&n1).await == caught_up
    })
    .await;
    // Node 3 stops; node 1 writes on: node 3's copy falls behind, node 2's
    // does not.
    let _stopped = n3.stop().await;
    via(&n1, client(2)).await;
    wait_until("node 3's lag grows", DEADLINE, || async {
        sync_lags(&n1).await.get("n3").is_some_and(|l| *l > 0.0)
    })
    .await;
    wait_until("node 2 has every write", DEADLINE, || async {
        sync_lags(&n1).await.get("n2") == Some(&0.0)
    })
    .await;
    wait_table(&n2, &entries(&n1, "be").await).await;
}
