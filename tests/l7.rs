//! L7 (HTTP mode) over real sockets on loopback: ACL routing (each fetch and
//! flag, rule order, negation, default and 503), keep-alive on both sides,
//! one upstream connection carrying many requests, hop-by-hop headers,
//! `X-Forwarded-For`, and the 502/503/504 paths.

mod common;

use common::TestNode;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// How an [`HttpBackend`] answers.
#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    /// 200 with its name, and the request's headers echoed in the body.
    Answer,
    /// Never answers.
    Silent,
    /// Answers with something that is not HTTP.
    Garbage,
    /// 500 with its name.
    Fail,
    /// Accepts `Upgrade: websocket` (101), then echoes every byte.
    Upgrade,
    /// As `Answer`, after this long.
    Slow(Duration),
}

/// A small HTTP/1.1 server: counts its connections, records each request's
/// head, keeps connections open between requests.
struct HttpBackend {
    addr: SocketAddr,
    conns: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HttpBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HttpBackend {
    async fn start(name: &'static str, behaviour: Behaviour) -> HttpBackend {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let conns = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (c, h) = (conns.clone(), heads.clone());
        let task = tokio::spawn(async move {
            // Connections live in this set: stopping the backend (dropping
            // the task) closes them all, as a server that stops would.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((s, _)) = l.accept().await else { return };
                c.fetch_add(1, Ordering::SeqCst);
                let h = h.clone();
                conns.spawn(async move {
                    let (r, mut w) = s.into_split();
                    let mut r = BufReader::new(r);
                    loop {
                        let mut head = String::new();
                        loop {
                            let mut line = String::new();
                            match r.read_line(&mut line).await {
                                Ok(0) | Err(_) => return,
                                Ok(_) => {}
                            }
                            if line == "\r\n" {
                                break;
                            }
                            head.push_str(&line);
                        }
                        h.lock().unwrap().push(head.clone());
                        // A body with a length is read, and shown in the answer.
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        let mut body_in = vec![0u8; len];
                        if r.read_exact(&mut body_in).await.is_err() {
                            return;
                        }
                        let body_in = String::from_utf8_lossy(&body_in).into_owned();
                        let reply = match behaviour {
                            Behaviour::Silent => {
                                tokio::time::sleep(Duration::from_secs(3600)).await;
                                return;
                            }
                            Behaviour::Garbage => "this is not HTTP\r\n\r\n".to_string(),
                            Behaviour::Upgrade => {
                                let ok = head.to_ascii_lowercase().contains("upgrade: websocket");
                                let reply = if ok {
                                    // (The accept key is the client's business: the
                                    // proxy passes the handshake through untouched.)
                                    "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
                                } else {
                                    "HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n"
                                };
                                if w.write_all(reply.as_bytes()).await.is_err() || !ok {
                                    return;
                                }
                                let mut r = r.into_inner();
                                let mut buf = [0u8; 1024];
                                loop {
                                    match r.read(&mut buf).await {
                                        Ok(0) | Err(_) => return,
                                        Ok(n) => {
                                            if w.write_all(&buf[..n]).await.is_err() {
                                                return;
                                            }
                                        }
                                    }
                                }
                            }
                            Behaviour::Fail => format!(
                                "HTTP/1.1 500 Internal Server Error\r\nContent-Length: {}\r\n\r\n{name}\n",
                                name.len() + 1
                            ),
                            Behaviour::Answer | Behaviour::Slow(_) => {
                                if let Behaviour::Slow(d) = behaviour {
                                    tokio::time::sleep(d).await;
                                }
                                let body = format!("{name}\n{head}body={body_in}\n");
                                format!(
                                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n{body}",
                                    body.len()
                                )
                            }
                        };
                        if w.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        HttpBackend {
            addr,
            conns,
            heads,
            task,
        }
    }
}

fn http_lb(servers: &[&HttpBackend], server_timeout: &str) -> String {
    let list: Vec<String> = servers
        .iter()
        .enumerate()
        .map(|(i, b)| format!("{{ name = \"s{i}\", address = \"{}\" }}", b.addr))
        .collect();
    format!(
        r#"
[defaults]
mode = "http"
timeout = {{ connect = "2s", client = "30s", server = "{server_timeout}" }}

[frontends.fe]
bind = ["127.0.0.1:0"]
default_backend = "be"
forwardfor = true

[backends.be]
servers = [ {} ]
"#,
        list.join(", ")
    )
}

/// As [`http_lb`], with the frontend's own `timeout = { .. }` entries
/// (`timeouts`, e.g. `http_request = "300ms"`).
fn http_lb_fe_timeouts(servers: &[&HttpBackend], server_timeout: &str, timeouts: &str) -> String {
    http_lb(servers, server_timeout).replace(
        "forwardfor = true",
        &format!("forwardfor = true\ntimeout = {{ {timeouts} }}"),
    )
}

/// A keep-alive HTTP client on one connection.
struct Client {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

/// A response: status, headers (lower-case names), body.
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let (r, w) = TcpStream::connect(addr).await.unwrap().into_split();
        Client {
            r: BufReader::new(r),
            w,
        }
    }

    async fn send(&mut self, raw: &str) -> Resp {
        self.w.write_all(raw.as_bytes()).await.unwrap();
        self.read().await
    }

    async fn get(&mut self, path: &str, extra: &str) -> Resp {
        self.send(&format!(
            "GET {path} HTTP/1.1\r\nHost: example.com\r\n{extra}\r\n"
        ))
        .await
    }

    async fn read(&mut self) -> Resp {
        let mut line = String::new();
        self.r.read_line(&mut line).await.unwrap();
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_else(|| panic!("no status line: {line:?}"))
            .parse()
            .unwrap();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            self.r.read_line(&mut h).await.unwrap();
            if h == "\r\n" || h.is_empty() {
                break;
            }
            let (n, v) = h.split_once(':').unwrap();
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        let len: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map_or(0, |(_, v)| v.parse().unwrap());
        let mut body = vec![0; len];
        self.r.read_exact(&mut body).await.unwrap();
        Resp {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_requests_over_one_client_connection_reuse_one_upstream_connection() {
    let b = HttpBackend::start("a", Behaviour::Answer).await;
    let n = TestNode::start(&http_lb(&[&b], "30s")).await;
    let mut c = Client::connect(n.addr("fe")).await;
    for i in 0..20 {
        let r = c.get(&format!("/page/{i}?q=1"), "").await;
        assert_eq!(r.status, 200);
        assert!(r.body.starts_with("a\n"), "{}", r.body);
        assert!(
            r.body.contains(&format!("GET /page/{i}?q=1 HTTP/1.1")),
            "{}",
            r.body
        );
    }
    assert_eq!(
        b.conns.load(Ordering::SeqCst),
        1,
        "one upstream connection carried all 20 requests"
    );
    // A second client is served over the same pooled connection.
    let mut c2 = Client::connect(n.addr("fe")).await;
    assert_eq!(c2.get("/", "").await.status, 200);
    assert_eq!(b.conns.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_is_appended_host_kept_and_hop_by_hop_headers_dropped() {
    let b = HttpBackend::start("a", Behaviour::Answer).await;
    let n = TestNode::start(&http_lb(&[&b], "30s")).await;
    let mut c = Client::connect(n.addr("fe")).await;
    let r = c
        .get(
            "/",
            "X-Forwarded-For: 203.0.113.9\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=9\r\nX-Kept: yes\r\n",
        )
        .await;
    assert_eq!(r.status, 200);
    let head = b.heads.lock().unwrap()[0].to_ascii_lowercase();
    let xff: Vec<&str> = head
        .lines()
        .filter_map(|l| l.strip_prefix("x-forwarded-for: "))
        .collect();
    assert_eq!(xff, ["203.0.113.9", "127.0.0.1"], "{head}");
    assert!(head.contains("host: example.com"), "{head}");
    assert!(head.contains("x-forwarded-proto: http"), "{head}");
    assert!(head.contains("x-kept: yes"), "{head}");
    for gone in ["x-secret", "keep-alive:", "connection:"] {
        assert!(!head.contains(gone), "{gone} reached the server: {head}");
    }
    // The server's own hop-by-hop headers do not reach the client.
    assert_eq!(r.header("keep-alive"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_server_is_503_a_broken_response_502_and_a_silent_server_504() {
    // 503: the only server is down (nothing listens there).
    let free = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = free.local_addr().unwrap();
    drop(free);
    let doc = format!(
        r#"
[frontends.fe]
bind = ["127.0.0.1:0"]
mode = "http"
default_backend = "be"

[backends.be]
mode = "http"
timeout = {{ connect = "1s", server = "300ms" }}
servers = [ {{ name = "s", address = "{dead}", check = true, inter = "100ms", fall = 1 }} ]
"#
    );
    let n = TestNode::start(&doc).await;
    let end = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = Client::connect(n.addr("fe")).await;
        let r = c.get("/", "").await;
        if r.status == 503 {
            break;
        }
        assert_eq!(
            r.status, 502,
            "before the check marks it down: connect fails"
        );
        assert!(
            std::time::Instant::now() < end,
            "the server never went down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 502: the server answers with something that is not HTTP.
    let garbage = HttpBackend::start("g", Behaviour::Garbage).await;
    let n = TestNode::start(&http_lb(&[&garbage], "2s")).await;
    let mut c = Client::connect(n.addr("fe")).await;
    let r = c.get("/", "").await;
    assert_eq!(r.status, 502);
    assert!(r.body.contains("502 Bad Gateway"), "{}", r.body);

    // 504: the server says nothing within `timeout server`.
    let silent = HttpBackend::start("s", Behaviour::Silent).await;
    let n = TestNode::start(&http_lb(&[&silent], "300ms")).await;
    let mut c = Client::connect(n.addr("fe")).await;
    let r = c.get("/", "").await;
    assert_eq!(r.status, 504);
    // The client's connection stays usable after an error page.
    assert_eq!(c.get("/again", "").await.status, 504);
    assert_eq!(silent.heads.lock().unwrap().len(), 2);
}

/// Backends blog, api, web, each answering with its name; a frontend with
/// the issue's example rules plus one per fetch.
async fn routed(extra_rules: &str, default: bool) -> (TestNode, Vec<HttpBackend>) {
    let names = ["blog", "api", "web", "img", "admin", "office"];
    let mut backends = Vec::new();
    let mut doc = String::from(
        "[defaults]\nmode = \"http\"\ntimeout = { connect = \"2s\", client = \"30s\", server = \"30s\" }\n\n",
    );
    for name in names {
        let b = HttpBackend::start(name, Behaviour::Answer).await;
        doc.push_str(&format!(
            "[backends.{name}]\nservers = [ {{ name = \"s\", address = \"{}\" }} ]\n\n",
            b.addr
        ));
        backends.push(b);
    }
    doc.push_str(&format!(
        r#"[frontends.fe]
bind = ["127.0.0.1:0"]
{}
acl = {{ is_blog = "path_beg /blog", is_api = "hdr(host) -i api.example.com", is_post = "method POST", office = "src 127.0.0.0/8", img = ["path_end .png .jpg", "path_reg ^/pics/"], adm = "hdr_dom(host) -i admin" }}
use_backend = [
  {extra_rules}
  {{ backend = "blog", if = "is_blog" }},
  {{ backend = "api", if = "is_api !is_post or img adm" }},
  {{ backend = "img", if = "img" }},
]
"#,
        if default { "default_backend = \"web\"" } else { "" }
    ));
    (TestNode::start(&doc).await, backends)
}

async fn via(c: &mut Client, method: &str, path: &str, host: &str) -> (u16, String) {
    let r = c
        .send(&format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n"
        ))
        .await;
    (r.status, r.body.lines().next().unwrap_or("").to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_backend_rules_route_in_order_with_negation_or_and_the_default() {
    let (n, _b) = routed("", true).await;
    let mut c = Client::connect(n.addr("fe")).await;
    let cases = [
        ("GET", "/blog/post/1", "www.example.com", "blog"),
        ("GET", "/blogroll", "www.example.com", "blog"),
        ("GET", "/x", "API.Example.com", "api"),
        // is_api but POST: the first group fails, the second (img adm) too.
        ("POST", "/x", "api.example.com", "web"),
        // First match wins: a blog path on the API host goes to blog.
        ("GET", "/blog/a", "api.example.com", "blog"),
        ("GET", "/a/b.png", "www.example.com", "img"),
        ("GET", "/pics/1", "www.example.com", "img"),
        ("GET", "/pics/1.gif?x=1", "www.example.com", "img"),
        // `or`: img AND adm picks api, before the img rule.
        ("GET", "/a.jpg", "admin.example.com", "api"),
        ("GET", "/other", "www.example.com", "web"),
    ];
    for (method, path, host, want) in cases {
        assert_eq!(
            via(&mut c, method, path, host).await,
            (200, want.to_string()),
            "{method} {path} Host: {host}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_default_backend_a_request_no_rule_matches_gets_503() {
    let (n, _b) = routed(
        r#"{ backend = "office", unless = "!office" }, { backend = "admin", if = "{ path_beg /never }" },"#,
        false,
    )
    .await;
    let mut c = Client::connect(n.addr("fe")).await;
    // `unless !office` from 127.0.0.1: the office rule applies first.
    assert_eq!(
        via(&mut c, "GET", "/blog", "x").await,
        (200, "office".into())
    );
    let (n, _b) = routed("", false).await;
    let mut c = Client::connect(n.addr("fe")).await;
    assert_eq!(via(&mut c, "GET", "/blog", "x").await, (200, "blog".into()));
    let (status, _) = via(&mut c, "GET", "/nothing", "x").await;
    assert_eq!(status, 503);
    // The connection stays usable.
    assert_eq!(via(&mut c, "GET", "/blog", "x").await, (200, "blog".into()));
}

/// Sends raw bytes on a new connection; returns the status line's code (0
/// when the connection closed without a response).
async fn raw(addr: SocketAddr, bytes: &[u8]) -> u16 {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let mut chunk = [0u8; 4096];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_vectors_get_400_and_never_reach_the_server() {
    let b = HttpBackend::start("a", Behaviour::Answer).await;
    let n = TestNode::start(&http_lb(&[&b], "30s")).await;
    let addr = n.addr("fe");
    let vectors: [(&str, &[u8]); 6] = [
        (
            "Content-Length and Transfer-Encoding",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        ),
        (
            "two different Content-Lengths",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
        ),
        (
            "an invalid chunk size",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        ),
        (
            "obs-fold",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n",
        ),
        (
            "a bare CR in a header",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Bad: a\rb\r\n\r\n",
        ),
        (
            "a Transfer-Encoding other than chunked",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc",
        ),
    ];
    for (what, bytes) in vectors {
        assert_eq!(raw(addr, bytes).await, 400, "{what}");
    }
    assert_eq!(
        b.heads.lock().unwrap().len(),
        0,
        "a request reached the server: {:?}",
        b.heads.lock().unwrap()
    );
    // A well-formed request still goes through.
    let mut c = Client::connect(addr).await;
    assert_eq!(c.get("/", "").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlong_uri_gets_414_and_overlong_headers_431() {
    let b = HttpBackend::start("a", Behaviour::Answer).await;
    let n = TestNode::start(&http_lb(&[&b], "30s")).await;
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000));
    assert_eq!(raw(n.addr("fe"), long_uri.as_bytes()).await, 414);
    let long_headers = format!(
        "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..2000)
            .map(|i| format!("X-H{i}: {}\r\n", "v".repeat(40)))
            .collect::<String>()
    );
    assert_eq!(raw(n.addr("fe"), long_headers.as_bytes()).await, 431);
    assert_eq!(b.heads.lock().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_client_is_cut_at_timeout_http_request_while_others_are_served() {
    let b = HttpBackend::start("a", Behaviour::Answer).await;
    let doc = http_lb_fe_timeouts(&[&b], "30s", "http_request = \"300ms\"");
    let n = TestNode::start(&doc).await;
    let mut slow = TcpStream::connect(n.addr("fe")).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // One more header line every 100 ms, for 10 s: never a whole head. The
    // proxy closes the connection at 300 ms, and the writes start failing.
    let drip = async {
        for i in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if slow
                .write_all(format!("X-Drip-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                return i;
            }
        }
        100
    };
    let served = async {
        let mut c = Client::connect(n.addr("fe")).await;
        for _ in 0..5 {
            assert_eq!(c.get("/", "").await.status, 200);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let (dripped, ()) = tokio::join!(drip, served);
    assert!(dripped < 100, "the slow client was never cut off");
    assert!(
        b.heads
            .lock()
            .unwrap()
            .iter()
            .all(|h| !h.to_ascii_lowercase().contains("x-drip")),
        "the slow request reached the server"
    );
}

/// A frontend over servers s0..sN (`backends`) with `balance`.
fn hashed_lb(backends: &[&HttpBackend], balance: &str) -> String {
    let named: Vec<(usize, &HttpBackend)> = backends.iter().copied().enumerate().collect();
    named_lb(&named, balance)
}

/// A frontend over servers `s{i}` with `balance`.
fn named_lb(backends: &[(usize, &HttpBackend)], balance: &str) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|(i, b)| format!("{{ name = \"s{i}\", address = \"{}\" }}", b.addr))
        .collect();
    format!(
        "[defaults]\nmode = \"http\"\ntimeout = {{ connect = \"2s\", client = \"30s\", server = \"30s\" }}\n\
         [frontends.fe]\nbind = [\"127.0.0.1:0\"]\ndefault_backend = \"be\"\n\
         [backends.be]\nbalance = \"{balance}\"\nservers = [ {} ]\n",
        list.join(", ")
    )
}

/// Which backend serves each of `paths` (with `Host: host`).
async fn servers_for(n: &TestNode, paths: &[String], host: &str) -> Vec<String> {
    let mut c = Client::connect(n.addr("fe")).await;
    let mut out = Vec::new();
    for p in paths {
        let r = c.get(p, &format!("X-Key: {host}\r\n")).await;
        assert_eq!(r.status, 200);
        out.push(r.body.lines().next().unwrap().to_string());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uri_hashing_is_stable_and_removing_one_of_four_servers_moves_only_its_share() {
    let names = ["b0", "b1", "b2", "b3"];
    let mut backends = Vec::new();
    for name in names {
        backends.push(HttpBackend::start(name, Behaviour::Answer).await);
    }
    let all: Vec<&HttpBackend> = backends.iter().collect();
    let n = TestNode::start(&hashed_lb(&all, "uri")).await;
    let paths: Vec<String> = (0..200).map(|i| format!("/item/{i}?session={i}")).collect();
    let first = servers_for(&n, &paths, "h").await;
    assert_eq!(servers_for(&n, &paths, "h").await, first, "stable");
    let used: std::collections::BTreeSet<&String> = first.iter().collect();
    assert_eq!(used.len(), 4, "every server gets a share");
    // The query is not hashed without `whole`: same path, other query.
    let requery: Vec<String> = (0..200).map(|i| format!("/item/{i}?other")).collect();
    assert_eq!(servers_for(&n, &requery, "h").await, first);
    // b2 (server s2) leaves the config: only its keys move.
    let survivors: Vec<(usize, &HttpBackend)> =
        [0usize, 1, 3].iter().map(|i| (*i, &backends[*i])).collect();
    let v = n
        .node
        .reload(
            named_lb(&survivors, "uri"),
            raftlb_proto::Format::Toml,
            "three",
        )
        .await
        .unwrap();
    n.node
        .wait_applied(v, Duration::from_secs(10))
        .await
        .unwrap();
    let after = servers_for(&n, &paths, "h").await;
    let moved = first.iter().zip(&after).filter(|(a, b)| a != b).count();
    let b2_share = first.iter().filter(|s| *s == "b2").count();
    assert_eq!(moved, b2_share, "only b2's keys moved");
    assert!(
        moved * 100 / paths.len() <= 30,
        "{moved} of {}",
        paths.len()
    );
    assert!(after.iter().all(|s| s != "b2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hdr_hashing_sticks_a_header_value_to_a_server_and_round_robins_without_it() {
    let (a, b) = (
        HttpBackend::start("a", Behaviour::Answer).await,
        HttpBackend::start("b", Behaviour::Answer).await,
    );
    let n = TestNode::start(&hashed_lb(&[&a, &b], "hdr(X-Key)")).await;
    let paths: Vec<String> = (0..20).map(|i| format!("/p/{i}")).collect();
    for key in ["alice", "bob", "carol", "dave"] {
        let seen = servers_for(&n, &paths, key).await;
        assert!(seen.iter().all(|s| *s == seen[0]), "{key}: {seen:?}");
    }
    // Without the header: round robin over both.
    let mut c = Client::connect(n.addr("fe")).await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let r = c.get("/", "").await;
        seen.insert(r.body.lines().next().unwrap().to_string());
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inserted_cookie_keeps_a_client_on_its_server_and_moves_it_when_the_server_is_down() {
    let a = HttpBackend::start("a", Behaviour::Answer).await;
    let b = HttpBackend::start("b", Behaviour::Answer).await;
    let doc = format!(
        "[defaults]\nmode = \"http\"\ntimeout = {{ connect = \"2s\", client = \"30s\", server = \"30s\" }}\n\
         [frontends.fe]\nbind = [\"127.0.0.1:0\"]\ndefault_backend = \"be\"\n\
         [backends.be]\ncookie = {{ name = \"SERVERID\", mode = \"insert\", indirect = true, nocache = true }}\n\
         servers = [ {{ name = \"sa\", address = \"{}\", cookie = \"A\", check = true, inter = \"100ms\", fall = 1 }}, \
                     {{ name = \"sb\", address = \"{}\", cookie = \"B\", check = true, inter = \"100ms\", fall = 1 }} ]\n",
        a.addr, b.addr
    );
    let n = TestNode::start(&doc).await;
    let mut c = Client::connect(n.addr("fe")).await;
    // No cookie yet: the balancer picks, and the response sets it.
    let first = c.get("/", "").await;
    let set = first.header("set-cookie").expect("Set-Cookie").to_string();
    let (value, server) = match set.as_str() {
        "SERVERID=A; path=/" => ("A", "a"),
        "SERVERID=B; path=/" => ("B", "b"),
        other => panic!("unexpected Set-Cookie {other:?}"),
    };
    assert_eq!(first.body.lines().next(), Some(server));
    assert_eq!(first.header("cache-control"), Some("private"), "nocache");
    // With the cookie: always the same server, nothing set again, and the
    // server never sees the cookie (indirect) but sees the others.
    for i in 0..10 {
        let r = c
            .get(
                &format!("/{i}"),
                &format!("Cookie: theme=dark; SERVERID={value}; lang=fr\r\n"),
            )
            .await;
        assert_eq!(r.body.lines().next(), Some(server), "request {i}");
        assert_eq!(r.header("set-cookie"), None);
        let head = r.body.to_ascii_lowercase();
        assert!(head.contains("cookie: theme=dark; lang=fr"), "{head}");
        assert!(!head.contains("serverid"), "{head}");
    }
    // Its server goes down: the client is balanced to the other, which sets
    // the cookie anew.
    let (other_value, other) = if server == "a" {
        ("B", "b")
    } else {
        ("A", "a")
    };
    let (down, _up) = if server == "a" { (a, b) } else { (b, a) };
    drop(down);
    let end = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = Client::connect(n.addr("fe")).await;
        let r = c.get("/", &format!("Cookie: SERVERID={value}\r\n")).await;
        if r.status == 200 && r.body.lines().next() == Some(other) {
            assert_eq!(
                r.header("set-cookie"),
                Some(format!("SERVERID={other_value}; path=/").as_str())
            );
            break;
        }
        assert!(std::time::Instant::now() < end, "never redispatched");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_layer7_marks_a_server_answering_500_down() {
    let bad = HttpBackend::start("bad", Behaviour::Fail).await;
    let good = HttpBackend::start("good", Behaviour::Answer).await;
    let doc = format!(
        "[defaults]\nmode = \"http\"\ntimeout = {{ connect = \"2s\", client = \"30s\", server = \"30s\" }}\n\
         [frontends.fe]\nbind = [\"127.0.0.1:0\"]\ndefault_backend = \"be\"\n\
         [backends.be]\nservers = [ \
           {{ name = \"bad\", address = \"{}\", check = true, inter = \"1h\", observe = \"layer7\", error_limit = 3, on_error = \"mark-down\" }}, \
           {{ name = \"good\", address = \"{}\" }} ]\n",
        bad.addr, good.addr
    );
    let n = TestNode::start(&doc).await;
    let mut c = Client::connect(n.addr("fe")).await;
    let mut seen = Vec::new();
    for _ in 0..12 {
        let r = c.get("/", "").await;
        seen.push((r.status, r.body.lines().next().unwrap_or("").to_string()));
    }
    // Round robin until the third 500, then only the good server.
    let fails = seen.iter().filter(|(s, _)| *s == 500).count();
    assert_eq!(fails, 3, "{seen:?}");
    assert!(
        seen[6..].iter().all(|(s, b)| *s == 200 && b == "good"),
        "{seen:?}"
    );
    let status = n.node.runtime.status();
    let text = serde_json::to_string(&status).unwrap();
    assert!(text.contains("L7STS"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connect_is_retried_and_redispatched_to_another_server() {
    let free = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = free.local_addr().unwrap();
    drop(free);
    let alive = HttpBackend::start("alive", Behaviour::Answer).await;
    let doc = format!(
        "[defaults]\nmode = \"http\"\ntimeout = {{ connect = \"100ms\", client = \"30s\", server = \"30s\" }}\n\
         [frontends.fe]\nbind = [\"127.0.0.1:0\"]\ndefault_backend = \"be\"\n\
         [backends.be]\nbalance = \"first\"\nretries = 2\nredispatch = true\n\
         servers = [ {{ name = \"dead\", address = \"{dead}\" }}, {{ name = \"alive\", address = \"{}\" }} ]\n",
        alive.addr
    );
    let n = TestNode::start(&doc).await;
    let mut c = Client::connect(n.addr("fe")).await;
    // `first` picks the dead server; two attempts there, the last on the
    // other one.
    let r = c.get("/", "").await;
    assert_eq!((r.status, r.body.lines().next()), (200, Some("alive")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_the_server_closed_is_replaced_without_an_error() {
    let b = HttpBackend::start("a", Behaviour::Answer).await;
    let n = TestNode::start(&http_lb(&[&b], "30s")).await;
    let mut c = Client::connect(n.addr("fe")).await;
    assert_eq!(c.get("/1", "").await.status, 200);
    // The server restarts: its connection in the proxy's pool is dead.
    let addr = b.addr;
    drop(b);
    let b2 = {
        // Same address again, once the old listener is gone.
        let end = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(_) if std::time::Instant::now() < end => {
                    tokio::time::sleep(Duration::from_millis(10)).await
                }
                Err(e) => panic!("rebind {addr}: {e}"),
            }
        }
    };
    let accepts = tokio::spawn(async move {
        let (mut s, _) = b2.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await;
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nnew")
            .await
            .unwrap();
        s
    });
    let r = c.get("/2", "").await;
    assert_eq!((r.status, r.body.as_str()), (200, "new"));
    drop(accepts.await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upgrade_becomes_a_tunnel_that_echoes_frames_through_the_proxy() {
    let b = HttpBackend::start("ws", Behaviour::Upgrade).await;
    let n = TestNode::start(&http_lb(&[&b], "30s")).await;
    let mut s = TcpStream::connect(n.addr("fe")).await.unwrap();
    s.write_all(
        b"GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    // The server saw the upgrade headers and the key.
    let seen = b.heads.lock().unwrap()[0].to_ascii_lowercase();
    assert!(
        seen.contains("upgrade: websocket") && seen.contains("connection: upgrade"),
        "{seen}"
    );
    assert!(
        seen.contains("sec-websocket-key: dghlihnhbxbszsbub25jzq=="),
        "{seen}"
    );
    // WebSocket frames (masked text frames, RFC 6455 §5.2) both ways.
    for msg in ["hello", "through the tunnel", "bye"] {
        let mask = [0x11u8, 0x22, 0x33, 0x44];
        let mut frame = vec![0x81, 0x80 | msg.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(msg.bytes().enumerate().map(|(i, c)| c ^ mask[i % 4]));
        s.write_all(&frame).await.unwrap();
        let mut back = vec![0u8; frame.len()];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back))
            .await
            .expect("echo")
            .unwrap();
        assert_eq!(back, frame);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let a = HttpBackend::start("a", Behaviour::Answer).await;
    let b = HttpBackend::start("b", Behaviour::Answer).await;
    let n = TestNode::start(&http_lb(&[&a, &b], "30s")).await;
    let mut c = Client::connect(n.addr("fe")).await;
    // Three requests in one write, one with a body in between.
    c.w.write_all(
        b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n\
POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
GET /three HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await
    .unwrap();
    for (want, body) in [
        ("GET /one ", "body=\n"),
        ("POST /two ", "body=hello\n"),
        ("GET /three ", "body=\n"),
    ] {
        let r = c.read().await;
        assert_eq!(r.status, 200);
        assert!(r.body.contains(want), "{want}: {}", r.body);
        assert!(r.body.ends_with(body), "{want}: {}", r.body);
    }
}

/// A connection through `fe` upgraded to a WebSocket tunnel (101 read).
async fn upgraded(fe: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(fe).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_tunnel_is_closed_at_timeout_tunnel() {
    let b = HttpBackend::start("ws", Behaviour::Upgrade).await;
    let doc = http_lb(&[&b], "30s").replace(
        "server = \"30s\" }",
        "server = \"30s\", tunnel = \"300ms\" }",
    );
    assert!(doc.contains("tunnel = \"300ms\""));
    let n = TestNode::start(&doc).await;
    let mut s = upgraded(n.addr("fe")).await;
    s.write_all(b"ping").await.unwrap();
    let mut back = [0u8; 4];
    s.read_exact(&mut back).await.unwrap();
    // Then silence: the proxy closes the tunnel (EOF), well before the
    // 30 s timeout server would.
    let mut rest = Vec::new();
    let eof = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
    assert!(eof.is_ok(), "the idle tunnel stayed open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_idle_longer_than_the_head_timers_lives_on_until_timeout_tunnel() {
    // Once upgraded, only `timeout tunnel` applies: not `timeout client`
    // (here also the head timer, `http_request` unset), nor `http_keep_alive`.
    let b = HttpBackend::start("ws", Behaviour::Upgrade).await;
    let doc = http_lb(&[&b], "30s")
        .replace("client = \"30s\"", "client = \"400ms\"")
        .replace("server = \"30s\" }", "server = \"30s\", tunnel = \"30s\" }")
        .replace(
            "forwardfor = true",
            "forwardfor = true\ntimeout = { http_keep_alive = \"300ms\" }",
        );
    assert!(doc.contains("tunnel = \"30s\"") && doc.contains("client = \"400ms\""));
    let n = TestNode::start(&doc).await;
    let mut s = upgraded(n.addr("fe")).await;
    for word in [&b"ping"[..], b"pong"] {
        // Idle for longer than every head timer, then traffic both ways.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        s.write_all(word).await.unwrap();
        let mut back = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back))
            .await
            .expect("an echo")
            .expect("the tunnel is open");
        assert_eq!(&back, word);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwardfor_except_networks_a_header_name_and_via() {
    let b = HttpBackend::start("a", Behaviour::Answer).await;
    let base = http_lb(&[&b], "30s");
    // Loopback clients are excepted: no header.
    let n = TestNode::start(&base.replace(
        "forwardfor = true",
        "forwardfor = { except = \"10.0.0.0/8 127.0.0.0/8\" }",
    ))
    .await;
    let r = Client::connect(n.addr("fe")).await.get("/", "").await;
    assert!(
        !r.body.to_ascii_lowercase().contains("x-forwarded-for"),
        "{}",
        r.body
    );
    // Another header name, and Via both ways.
    let n = TestNode::start(&base.replace(
        "forwardfor = true",
        "forwardfor = { header = \"X-Client-IP\" }\nvia = true",
    ))
    .await;
    let r = Client::connect(n.addr("fe")).await.get("/", "").await;
    let head = r.body.to_ascii_lowercase();
    assert!(head.contains("x-client-ip: 127.0.0.1"), "{head}");
    assert!(!head.contains("x-forwarded-for"), "{head}");
    assert!(head.contains("via: 1.1 raftlb"), "{head}");
    assert_eq!(r.header("via"), Some("1.1 raftlb"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_is_closed_at_timeout_http_keep_alive_but_not_mid_response() {
    let b = HttpBackend::start("a", Behaviour::Answer).await;
    let doc = http_lb_fe_timeouts(
        &[&b],
        "30s",
        "http_request = \"10s\", http_keep_alive = \"300ms\"",
    );
    let n = TestNode::start(&doc).await;
    let mut c = Client::connect(n.addr("fe")).await;
    assert_eq!(c.get("/", "").await.status, 200);
    // Idle after the response: closed at 300 ms, long before the 10 s
    // http_request.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), c.r.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the idle connection stayed open");
    assert!(rest.is_empty(), "closed silently: {rest:?}");

    // A response that takes longer than the keep-alive timeout is not cut.
    let silent = HttpBackend::start("s", Behaviour::Silent).await;
    let doc = http_lb_fe_timeouts(
        &[&silent],
        "900ms",
        "http_request = \"10s\", http_keep_alive = \"300ms\"",
    );
    let n = TestNode::start(&doc).await;
    let mut c = Client::connect(n.addr("fe")).await;
    assert_eq!(
        c.get("/", "").await.status,
        504,
        "the 504 came, not a close"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keep_alive_timeout_holds_after_responses_longer_than_itself() {
    // Each response takes longer than the idle timeout (http_request,
    // 300 ms, stands for it): the head timer armed before a response fires
    // while it is on its way, which must neither cut the response nor leave
    // the connection without a timer once it is idle.
    let b = HttpBackend::start("slow", Behaviour::Slow(Duration::from_millis(700))).await;
    let doc = http_lb_fe_timeouts(&[&b], "5s", "http_request = \"300ms\"");
    let n = TestNode::start(&doc).await;
    let mut c = Client::connect(n.addr("fe")).await;
    for round in 0..2 {
        assert_eq!(c.get("/", "").await.status, 200, "response {round}");
    }
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), c.r.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the idle connection stayed open");
    assert!(rest.is_empty(), "closed silently: {rest:?}");
}

/// A request: method, path, Host.
type Req3<'a> = (&'a str, &'a str, &'a str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fetch_and_match_flag_routes_over_a_real_connection() {
    let hit = HttpBackend::start("hit", Behaviour::Answer).await;
    let miss = HttpBackend::start("miss", Behaviour::Answer).await;
    // (ACL, a request it matches, one it does not): method, path, Host.
    let cases: &[(&str, Req3, Req3)] = &[
        (
            "path /exact",
            ("GET", "/exact?q=1", "h"),
            ("GET", "/exact/more", "h"),
        ),
        (
            "path_beg /blog",
            ("GET", "/blog/x", "h"),
            ("GET", "/b", "h"),
        ),
        (
            "path_end .css",
            ("GET", "/a/site.css", "h"),
            ("GET", "/a/site.js", "h"),
        ),
        (
            "path_sub admin",
            ("GET", "/x/admin/y", "h"),
            ("GET", "/x/y", "h"),
        ),
        (
            "path_reg ^/v[0-9]+/",
            ("GET", "/v2/users", "h"),
            ("GET", "/vx/users", "h"),
        ),
        (
            "path_dir images",
            ("GET", "/static/images/a.png", "h"),
            ("GET", "/imagesx/a", "h"),
        ),
        (
            "hdr(host) -i API.example.com",
            ("GET", "/", "api.EXAMPLE.com"),
            ("GET", "/", "www.example.com"),
        ),
        (
            "hdr_beg(host) www.",
            ("GET", "/", "www.example.com"),
            ("GET", "/", "api.example.com"),
        ),
        (
            "hdr_end(host) .org",
            ("GET", "/", "example.org"),
            ("GET", "/", "example.com"),
        ),
        (
            "hdr_sub(host) ample",
            ("GET", "/", "example.com"),
            ("GET", "/", "other.net"),
        ),
        (
            "hdr_dom(host) shop",
            ("GET", "/", "eu.shop.example.com"),
            ("GET", "/", "shopping.example.com"),
        ),
        (
            "hdr(host) -m beg www.",
            ("GET", "/", "www.x"),
            ("GET", "/", "ww.x"),
        ),
        (
            "hdr(host) -m end .io",
            ("GET", "/", "a.io"),
            ("GET", "/", "a.iox"),
        ),
        (
            "hdr(host) -m sub mid",
            ("GET", "/", "amidb"),
            ("GET", "/", "ab"),
        ),
        (
            "hdr(host) -m str exact.example",
            ("GET", "/", "exact.example"),
            ("GET", "/", "exact.example.com"),
        ),
        (
            "hdr(host) -m reg ^[0-9]+\\.example$",
            ("GET", "/", "42.example"),
            ("GET", "/", "x42.example"),
        ),
        (
            "hdr(host) -m dom b",
            ("GET", "/", "a.b.c"),
            ("GET", "/", "a.bb.c"),
        ),
        (
            "hdr(x-missing) -m found",
            ("GET", "/", "h"),
            ("GET", "/", "h"),
        ),
        ("method POST PUT", ("PUT", "/", "h"), ("GET", "/", "h")),
        ("src 127.0.0.0/8", ("GET", "/", "h"), ("GET", "/", "h")),
        ("src 10.0.0.0/8", ("GET", "/", "h"), ("GET", "/", "h")),
    ];
    for (acl, yes, no) in cases {
        let doc = format!(
            "[defaults]\nmode = \"http\"\ntimeout = {{ connect = \"2s\", client = \"30s\", server = \"30s\" }}\n\
             [frontends.fe]\nbind = [\"127.0.0.1:0\"]\ndefault_backend = \"miss\"\n\
             acl = {{ it = {acl:?} }}\nuse_backend = [ {{ backend = \"hit\", if = \"it\" }} ]\n\
             [backends.hit]\nservers = [ {{ name = \"s\", address = \"{}\" }} ]\n\
             [backends.miss]\nservers = [ {{ name = \"s\", address = \"{}\" }} ]\n",
            hit.addr, miss.addr
        );
        let n = TestNode::start(&doc).await;
        let mut c = Client::connect(n.addr("fe")).await;
        let (want_yes, want_no) = match *acl {
            // Header absent in both requests; the client is on loopback.
            "hdr(x-missing) -m found" | "src 10.0.0.0/8" => ("miss", "miss"),
            "src 127.0.0.0/8" => ("hit", "hit"),
            _ => ("hit", "miss"),
        };
        assert_eq!(
            via(&mut c, yes.0, yes.1, yes.2).await.1,
            want_yes,
            "{acl} on {yes:?}"
        );
        assert_eq!(
            via(&mut c, no.0, no.1, no.2).await.1,
            want_no,
            "{acl} on {no:?}"
        );
    }
}

/// Reads one message's head (lower-cased) and body off `r`: a
/// Content-Length body, a chunked one (trailers dropped), or none.
async fn read_message<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> (String, Vec<u8>) {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        assert!(
            r.read_line(&mut line).await.unwrap() > 0,
            "cut off in the head: {head:?}"
        );
        head.push_str(&line.to_ascii_lowercase());
        if line == "\r\n" {
            break;
        }
    }
    let mut body = Vec::new();
    if head.contains("transfer-encoding: chunked") {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).await.unwrap();
            let size = size.trim_end().split(';').next().unwrap();
            let n =
                usize::from_str_radix(size, 16).unwrap_or_else(|_| panic!("chunk size {size:?}"));
            if n == 0 {
                // Trailers, up to the empty line.
                loop {
                    let mut line = String::new();
                    r.read_line(&mut line).await.unwrap();
                    if line == "\r\n" {
                        break;
                    }
                }
                break;
            }
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).await.unwrap();
            assert!(chunk.ends_with(b"\r\n"));
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(len) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
    {
        body = vec![0; len.trim().parse().unwrap()];
        r.read_exact(&mut body).await.unwrap();
    }
    (head, body)
}

/// A chunked request body goes to the server chunked; a chunked response
/// (with an extension and a trailer), one after an interim 100, and one
/// delimited by the server's close all reach the client whole, over one
/// client connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_in_every_framing_pass_through_both_ways() {
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let script = tokio::spawn(async move {
        // Each exchange on a connection of its own: whether the proxy
        // reuses one is not what this test is about.
        let next = || async {
            let (s, _) = server.accept().await.unwrap();
            let mut s = BufReader::new(s);
            let message = read_message(&mut s).await;
            (s, message)
        };
        let (mut s, (head, body)) = next().await;
        assert!(head.starts_with("post /up http/1.1"), "{head}");
        assert!(head.contains("transfer-encoding: chunked"), "{head}");
        s.get_mut()
            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n3;x=y\r\ndef\r\n0\r\nx-t: 1\r\n\r\n")
            .await
            .unwrap();
        drop(s);
        let (mut s, (head, _)) = next().await;
        assert!(head.starts_with("get /interim"), "{head}");
        s.get_mut()
            .write_all(
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
            )
            .await
            .unwrap();
        drop(s);
        let (mut s, (head, _)) = next().await;
        assert!(head.starts_with("get /close"), "{head}");
        s.get_mut()
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nto the close")
            .await
            .unwrap();
        body
    });
    let doc = format!(
        "[defaults]\nmode = \"http\"\ntimeout = {{ connect = \"2s\", client = \"30s\", server = \"30s\" }}\n\
         [frontends.fe]\nbind = [\"127.0.0.1:0\"]\ndefault_backend = \"be\"\n\
         [backends.be]\nservers = [ {{ name = \"s\", address = \"{addr}\" }} ]\n"
    );
    let n = TestNode::start(&doc).await;
    let (r, mut w) = TcpStream::connect(n.addr("fe")).await.unwrap().into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = read_message(&mut r).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, b"abcdef");
    w.write_all(b"GET /interim HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = read_message(&mut r).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, b"ok");
    w.write_all(b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = read_message(&mut r).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, b"to the close");
    assert_eq!(script.await.unwrap(), b"helloworld");
}
