//! Every file in deploy/examples/ and deploy/three-vms/ is valid (`raftlb
//! check` exits 0), and the cluster configs behave as they say, with their
//! ports moved to test ones.

mod common;

use common::TestNode;
use raftlb_proto::{ClusterConfig, Format};
use raftlb_testkit::{connect, connect_from, wait_until, Backend};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(examples_dir().join(name)).unwrap()
}

/// The example with its servers on the given backends and its frontend on a free port.
fn localize(text: &str, backends: &[&Backend]) -> String {
    let mut t = text
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("[::1]:8080", "[::1]:0");
    for (i, b) in backends.iter().enumerate() {
        t = t.replace(&format!("127.0.0.1:900{}", i + 1), &b.addr.to_string());
    }
    t
}

async fn three() -> (Backend, Backend, Backend) {
    (
        Backend::start("s1").await,
        Backend::start("s2").await,
        Backend::start("s3").await,
    )
}

#[test]
fn raftlb_check_accepts_every_example() {
    let mut n = 0;
    let three_vms = examples_dir().join("../three-vms");
    let dirs = [examples_dir(), three_vms];
    let files = dirs
        .iter()
        .flat_map(|d| std::fs::read_dir(d).unwrap())
        .filter(|e| e.as_ref().unwrap().path().extension() == Some("toml".as_ref()));
    for entry in files {
        let path = entry.unwrap().path();
        let out = Command::new(env!("CARGO_BIN_EXE_raftlb"))
            .arg("check")
            .arg("-c")
            .arg(&path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {}{}",
            path.display(),
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            stdout.lines().count(),
            1,
            "one line per valid file: {stdout}"
        );
        assert!(stdout.contains("is valid"));
        n += 1;
    }
    assert!(n >= 9, "examples found: {n}");
}

#[test]
fn every_example_uses_timeouts_5s_50s_50s() {
    for name in [
        "roundrobin-checks.toml",
        "passive-checks.toml",
        "leastconn.toml",
        "source.toml",
        "full.toml",
    ] {
        let c = ClusterConfig::parse(&read(name), Format::Toml).unwrap();
        for be in c.backends.values() {
            assert_eq!(be.timeout.connect, Some(Duration::from_secs(5)), "{name}");
            assert_eq!(be.timeout.server, Some(Duration::from_secs(50)), "{name}");
        }
        for fe in c.frontends.values() {
            assert_eq!(fe.timeout_client, Some(Duration::from_secs(50)), "{name}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roundrobin_with_checks_takes_turns_and_drops_a_dead_server() {
    let (s1, s2, mut s3) = three().await;
    let n = TestNode::start(&localize(&read("roundrobin-checks.toml"), &[&s1, &s2, &s3])).await;
    let c = n.node.runtime.config().unwrap();
    let chk = c.backends["web"].servers[0].check.clone().unwrap();
    assert_eq!(
        (chk.inter, chk.rise, chk.fall),
        (Duration::from_secs(2), 2, 3)
    );
    let seen = n.sequence("web", 6).await;
    assert_eq!(seen, ["s1", "s2", "s3", "s1", "s2", "s3"]);
    s3.stop().await;
    // Three failed checks 2 s apart.
    wait_until("web3 marked down", Duration::from_secs(20), || async {
        !n.is_up("web", "web3")
    })
    .await;
    for _ in 0..4 {
        assert_ne!(n.which("web").await, "s3");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_checks_mark_a_refusing_server_down_after_ten_errors() {
    let (s1, s2, s3) = three().await;
    // web2 refuses every connection: port 1 on loopback, where nothing
    // listens and which no ephemeral port can ever be (a stopped backend's
    // freed port could be taken by another test's socket, or by a connect's
    // own source port, and then accept).
    let doc = localize(&read("passive-checks.toml"), &[&s1, &s2, &s3])
        .replace(&s2.addr.to_string(), "127.0.0.1:1");
    let n = TestNode::start(&doc).await;
    // Twelve clients at once: the four that pick web2 each make three
    // attempts there, a turn-around second apart, then are redispatched; their
    // errors reach 10 after about 2 s, before the active checks (three
    // failures, 2 s apart) can.
    let addr = n.addr("web");
    let clients: Vec<_> = (0..12)
        .map(|_| tokio::spawn(async move { connect(addr).await }))
        .collect();
    for c in clients {
        let c = c.await.unwrap().expect("redispatch serves every client");
        assert_ne!(c.server, "s2");
    }
    assert!(!n.is_up("web", "web2"));
    let why = n
        .node
        .runtime
        .server("web", "web2")
        .unwrap()
        .status()
        .last_change;
    assert!(
        why.contains("10 consecutive errors observed") && why.contains("MarkDown"),
        "{why}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leastconn_sends_new_connections_to_idle_servers() {
    let (s1, s2, s3) = three().await;
    let n = TestNode::start(&localize(&read("leastconn.toml"), &[&s1, &s2, &s3])).await;
    let a = connect(n.addr("db")).await.unwrap();
    let b = connect(n.addr("db")).await.unwrap();
    let c = connect(n.addr("db")).await.unwrap();
    let mut held: Vec<&str> = vec![&a.server, &b.server, &c.server];
    held.sort();
    assert_eq!(
        held,
        ["s1", "s2", "s3"],
        "each of three held sessions on its own server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_keeps_clients_on_their_server() {
    let (s1, s2, s3) = three().await;
    let n = TestNode::start(&localize(&read("source.toml"), &[&s1, &s2, &s3])).await;
    for i in 10..20u8 {
        let ip = std::net::IpAddr::from([127, 0, 0, i]);
        let first = connect_from(Some(ip), n.addr("app")).await.unwrap().server;
        assert_eq!(
            connect_from(Some(ip), n.addr("app")).await.unwrap().server,
            first
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_example_weights_and_backup() {
    let (s1, s2, spare) = three().await;
    let n = TestNode::start(&localize(&read("full.toml"), &[&s1, &s2, &spare])).await;
    assert_eq!(n.node.runtime.bound_addrs("web").len(), 2, "IPv4 and IPv6");
    let seen = n.sequence("web", 8).await;
    // weight 3:1, smooth; the backup is never used while primaries are up.
    assert_eq!(seen.iter().filter(|s| *s == "s1").count(), 6, "{seen:?}");
    assert_eq!(seen.iter().filter(|s| *s == "s2").count(), 2, "{seen:?}");
}
