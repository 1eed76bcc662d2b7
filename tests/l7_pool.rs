//! Pooled upstream connections and servers that close them (issue 15,
//! item 5): a server whose keep-alive timeout fires as a request arrives
//! (the extreme of Node.js's `keepAliveTimeout` race), the idle limit, and
//! a server's `Keep-Alive: timeout=`.

mod common;

use common::TestNode;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A server that answers at most `answers` requests per connection; the
/// next request on that connection it reads and then closes without a byte
/// back. It announces `keep_alive` (a `Keep-Alive` value) if given, and
/// records each request's first line and connection number.
/// A request as the server got it: its connection's number and its head
/// lines.
type Seen = (usize, Vec<String>);

struct Server {
    addr: SocketAddr,
    conns: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start(answers: usize, keep_alive: Option<&'static str>) -> Server {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let conns = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (c, sn) = (conns.clone(), seen.clone());
        let task = tokio::spawn(async move {
            let mut set = tokio::task::JoinSet::new();
            loop {
                let Ok((s, _)) = l.accept().await else { return };
                let n = c.fetch_add(1, Ordering::SeqCst) + 1;
                let sn = sn.clone();
                set.spawn(async move {
                    let (r, mut w) = s.into_split();
                    let mut r = BufReader::new(r);
                    for i in 0.. {
                        let mut head = Vec::new();
                        loop {
                            let mut line = String::new();
                            match r.read_line(&mut line).await {
                                Ok(0) | Err(_) => return,
                                Ok(_) if line == "\r\n" => break,
                                Ok(_) => head.push(line),
                            }
                        }
                        let len = head
                            .iter()
                            .find_map(|l| {
                                let l = l.to_ascii_lowercase();
                                l.strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        let mut body = vec![0; len];
                        if r.read_exact(&mut body).await.is_err() {
                            return;
                        }
                        sn.lock()
                            .unwrap()
                            .push((n, head.iter().map(|l| l.trim_end().to_string()).collect()));
                        if i == answers {
                            // Closed, the request unanswered.
                            return;
                        }
                        let ka =
                            keep_alive.map_or(String::new(), |k| format!("Keep-Alive: {k}\r\n"));
                        let reply =
                            format!("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n{ka}\r\nc{n}\n");
                        if w.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Server {
            addr,
            conns,
            seen,
            task,
        }
    }

    /// Each request's connection number and request line.
    fn seen(&self) -> Vec<(usize, String)> {
        let seen = self.seen.lock().unwrap();
        seen.iter().map(|(n, h)| (*n, h[0].clone())).collect()
    }

    /// The head lines of each request, in order.
    fn heads(&self) -> Vec<Vec<String>> {
        let seen = self.seen.lock().unwrap();
        seen.iter().map(|(_, h)| h.clone()).collect()
    }
}

fn lb(s: &Server) -> String {
    format!(
        r#"
[defaults]
mode = "http"
timeout = {{ connect = "2s", client = "30s", server = "30s" }}

[frontends.fe]
bind = ["127.0.0.1:0"]
default_backend = "be"

[backends.be]
servers = [ {{ name = "s1", address = "{}" }} ]
"#,
        s.addr
    )
}

/// A keep-alive client on one connection.
struct Client {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let (r, w) = TcpStream::connect(addr).await.unwrap().into_split();
        Client {
            r: BufReader::new(r),
            w,
        }
    }

    /// Sends `method path` (with `body`, if any); the status and body back.
    async fn ask(&mut self, method: &str, path: &str, body: &str) -> (u16, String) {
        let len = if body.is_empty() {
            String::new()
        } else {
            format!("Content-Length: {}\r\n", body.len())
        };
        // A repeated header: a request sent again keeps both, in order.
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: example.com\r\nX-Tag: a\r\nX-Tag: b\r\n{len}\r\n{body}"
        );
        self.w.write_all(req.as_bytes()).await.unwrap();
        let mut line = String::new();
        self.r.read_line(&mut line).await.unwrap();
        let status = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_else(|| panic!("no status line: {line:?}"))
            .parse()
            .unwrap();
        let mut len = 0;
        loop {
            let mut h = String::new();
            self.r.read_line(&mut h).await.unwrap();
            if h == "\r\n" {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut b = vec![0; len];
        self.r.read_exact(&mut b).await.unwrap();
        (status, String::from_utf8_lossy(&b).into_owned())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_the_server_drops_on_a_reused_connection_is_sent_again_on_a_new_one() {
    let s = Server::start(1, None).await;
    let n = TestNode::start(&lb(&s)).await;
    let mut c = Client::connect(n.addr("fe")).await;
    assert_eq!(c.ask("GET", "/1", "").await, (200, "c1\n".into()));
    // Its connection is in the pool; the server closes it on the next
    // request, unanswered. The client must not see it.
    assert_eq!(c.ask("GET", "/2", "").await, (200, "c2\n".into()));
    assert_eq!(
        s.seen(),
        [
            (1, "GET /1 HTTP/1.1".into()),
            (1, "GET /2 HTTP/1.1".into()),
            (2, "GET /2 HTTP/1.1".into())
        ]
    );
    // Sent again as it was the first time: every header, in its order.
    let heads = s.heads();
    assert_eq!(heads[1], heads[2]);
    let tags: Vec<_> = heads[2].iter().filter(|l| l.starts_with("x-tag")).collect();
    assert_eq!(tags, ["x-tag: a", "x-tag: b"], "{:?}", heads[2]);
    // And again, on the new connection: the same once more.
    assert_eq!(c.ask("GET", "/3", "").await, (200, "c3\n".into()));
    assert_eq!(s.conns.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_the_server_drops_is_not_sent_twice() {
    let s = Server::start(1, None).await;
    let n = TestNode::start(&lb(&s)).await;
    let mut c = Client::connect(n.addr("fe")).await;
    assert_eq!(c.ask("GET", "/1", "").await.0, 200);
    // Not idempotent: the server may have acted on it; a 502, and the
    // server saw it once.
    assert_eq!(c.ask("POST", "/order", "x=1").await.0, 502);
    let posts = s
        .seen()
        .iter()
        .filter(|(_, l)| l.starts_with("POST"))
        .count();
    assert_eq!(posts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_reused_within_two_seconds_and_not_after() {
    let s = Server::start(usize::MAX, None).await;
    let n = TestNode::start(&lb(&s)).await;
    let mut c = Client::connect(n.addr("fe")).await;
    assert_eq!(c.ask("GET", "/1", "").await.0, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(c.ask("GET", "/2", "").await, (200, "c1\n".into()), "reused");
    // Idle 2 s and more: closed, not reused (Node.js's default keep-alive
    // timeout is 5 s: a request must not race it).
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert_eq!(
        c.ask("GET", "/3", "").await,
        (200, "c2\n".into()),
        "a new connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_announcing_keep_alive_timeout_1_gets_no_request_on_a_connection_idle_half_a_second(
) {
    let s = Server::start(usize::MAX, Some("timeout=1, max=100")).await;
    let n = TestNode::start(&lb(&s)).await;
    let mut c = Client::connect(n.addr("fe")).await;
    assert_eq!(c.ask("GET", "/1", "").await.0, 200);
    assert_eq!(
        c.ask("GET", "/2", "").await,
        (200, "c1\n".into()),
        "reused at once"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        c.ask("GET", "/3", "").await,
        (200, "c2\n".into()),
        "a new connection"
    );
}
