//! Every file in deploy/examples/, deploy/examples/haproxy/ and
//! deploy/three-vms/ is valid (`raftlb check` exits 0), each haproxy.cfg
//! gives the same config as its TOML twin, and the cluster configs behave as
//! they say (the TOML and the .cfg alike), with their ports moved to test
//! ones.

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
    let dirs = [examples_dir(), three_vms, examples_dir().join("haproxy")];
    let files = dirs
        .iter()
        .flat_map(|d| std::fs::read_dir(d).unwrap())
        .filter(|e| {
            let path = e.as_ref().unwrap().path();
            let ext = path.extension();
            ext == Some("toml".as_ref()) || ext == Some("cfg".as_ref())
        });
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
    assert!(n >= 15, "examples found: {n}");
}

/// The haproxy.cfg examples, by file name.
fn cfg_examples() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(examples_dir().join("haproxy"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".cfg"))
        .collect();
    names.sort();
    names
}

#[test]
fn every_haproxy_cfg_is_its_toml_twin() {
    let names = cfg_examples();
    assert!(names.len() >= 5, "{names:?}");
    for name in names {
        let cfg = ClusterConfig::parse(&read(&format!("haproxy/{name}")), Format::Haproxy)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let twin = name.replace(".cfg", ".toml");
        let toml = ClusterConfig::parse(&read(&twin), Format::Toml).unwrap();
        assert_eq!(cfg, toml, "haproxy/{name} and {twin}");
    }
}

#[test]
fn every_example_uses_timeouts_5s_50s_50s() {
    for name in [
        "l7.toml",
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
    roundrobin_checks("roundrobin-checks.toml", Format::Toml).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roundrobin_with_checks_takes_turns_and_drops_a_dead_server_cfg() {
    roundrobin_checks("haproxy/roundrobin-checks.cfg", Format::Haproxy).await
}

async fn roundrobin_checks(file: &str, format: Format) {
    let (s1, s2, mut s3) = three().await;
    let n = TestNode::start_as(&localize(&read(file), &[&s1, &s2, &s3]), format).await;
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
    passive_checks("passive-checks.toml", Format::Toml).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_checks_mark_a_refusing_server_down_after_ten_errors_cfg() {
    passive_checks("haproxy/passive-checks.cfg", Format::Haproxy).await
}

async fn passive_checks(file: &str, format: Format) {
    let (s1, s2, s3) = three().await;
    // web2 refuses every connection: port 1 on loopback, where nothing
    // listens and which no ephemeral port can ever be (a stopped backend's
    // freed port could be taken by another test's socket, or by a connect's
    // own source port, and then accept).
    let doc = localize(&read(file), &[&s1, &s2, &s3]).replace(&s2.addr.to_string(), "127.0.0.1:1");
    let n = TestNode::start_as(&doc, format).await;
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
    leastconn("leastconn.toml", Format::Toml).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leastconn_sends_new_connections_to_idle_servers_cfg() {
    leastconn("haproxy/leastconn.cfg", Format::Haproxy).await
}

async fn leastconn(file: &str, format: Format) {
    let (s1, s2, s3) = three().await;
    let n = TestNode::start_as(&localize(&read(file), &[&s1, &s2, &s3]), format).await;
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
    source("source.toml", Format::Toml).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_keeps_clients_on_their_server_cfg() {
    source("haproxy/source.cfg", Format::Haproxy).await
}

async fn source(file: &str, format: Format) {
    let (s1, s2, s3) = three().await;
    let n = TestNode::start_as(&localize(&read(file), &[&s1, &s2, &s3]), format).await;
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

/// An HTTP/1.1 server that answers every request (keep-alive, no bodies)
/// with its name.
async fn http_server(name: &'static str) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{name}",
                            name.len()
                        );
                        if s.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    addr
}

/// One request on its own connection: the whole response.
async fn get(addr: std::net::SocketAddr, path: &str, headers: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: example.com\r\n{headers}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .expect("a response within 10 s")
        .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l7_routes_blog_and_keeps_clients_by_cookie() {
    l7(read("l7.toml"), Format::Toml).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l7_routes_blog_and_keeps_clients_by_cookie_cfg() {
    l7(read("haproxy/l7.cfg"), Format::Haproxy).await
}

/// The round trip of issue 18: the .cfg converted to TOML, and the config
/// that gives written back as a haproxy.cfg (what `config show --format
/// haproxy` prints), routes as the .cfg does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l7_routes_the_same_after_convert_and_back_to_haproxy_cfg() {
    let (toml, _) =
        raftlb_proto::config::to_toml(&read("haproxy/l7.cfg"), Format::Haproxy).unwrap();
    let config = ClusterConfig::parse(&toml, Format::Toml).unwrap();
    let written = raftlb_proto::config::to_haproxy(&config);
    assert!(written.notes.is_empty(), "{:?}", written.notes);
    l7(written.text, Format::Haproxy).await
}

async fn l7(doc: String, format: Format) {
    let servers = [
        http_server("web1").await,
        http_server("web2").await,
        http_server("blog1").await,
    ];
    let mut doc = doc.replace("127.0.0.1:8080", "127.0.0.1:0");
    for (i, a) in servers.iter().enumerate() {
        doc = doc.replace(&format!("127.0.0.1:900{}", i + 1), &a.to_string());
    }
    let n = TestNode::start_as(&doc, format).await;
    let addr = n.addr("www");
    for _ in 0..3 {
        assert!(get(addr, "/blog/post", "").await.ends_with("blog1"));
    }
    let first = get(addr, "/", "").await;
    let server = if first.ends_with("web1") {
        "web1"
    } else {
        "web2"
    };
    assert!(first.ends_with(server), "{first}");
    let cookie = format!("set-cookie: SERVERID={server}; path=/");
    assert!(
        first
            .to_ascii_lowercase()
            .contains(&cookie.to_ascii_lowercase()),
        "{first}"
    );
    assert!(
        first
            .to_ascii_lowercase()
            .contains("cache-control: private"),
        "{first}"
    );
    for _ in 0..4 {
        let again = get(addr, "/", &format!("Cookie: SERVERID={server}\r\n")).await;
        assert!(
            again.ends_with(server),
            "the cookie keeps the client on {server}: {again}"
        );
    }
}
