//! L7 message framing over real sockets (issue 15): `Host` as RFC 9112
//! §3.2 wants it (exactly one in HTTP/1.1, the authority of an
//! absolute-form target replacing it), and a request body that turns
//! malformed once its head was forwarded (the client's fault, not the
//! server's), and the smuggling scanner losing track (the connection ends
//! there). Each test talks raw bytes to the proxy and looks at what a
//! raw backend received. The httplog lines of this test binary are
//! captured, to read their termination state.

mod common;

use common::TestNode;
use raftlb_testkit::wait_until;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const DEADLINE: Duration = Duration::from_secs(10);

/// A backend that records each request head it receives (as sent, before
/// its body) and answers `200 ok` once the whole request is in; it drops a
/// connection whose bytes it cannot read as HTTP.
struct RawBackend {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawBackend {
    async fn start() -> RawBackend {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let h = heads.clone();
        let task = tokio::spawn(async move {
            // Connections live in this set: dropping the task closes them.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((s, _)) = l.accept().await else { return };
                conns.spawn(serve_raw(s, h.clone()));
            }
        });
        RawBackend { addr, heads, task }
    }

    /// The request lines received so far.
    fn request_lines(&self) -> Vec<String> {
        let heads = self.heads.lock().unwrap();
        heads
            .iter()
            .map(|h| h.lines().next().unwrap_or("").to_string())
            .collect()
    }
}

async fn serve_raw(s: TcpStream, heads: Arc<Mutex<Vec<String>>>) -> std::io::Result<()> {
    let bad = || std::io::Error::from(std::io::ErrorKind::InvalidData);
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let lower = head.to_ascii_lowercase();
        heads.lock().unwrap().push(head);
        if lower.contains("transfer-encoding: chunked") {
            loop {
                let mut size = String::new();
                r.read_line(&mut size).await?;
                let size = size.trim_end().split(';').next().unwrap_or("");
                let n = usize::from_str_radix(size, 16).map_err(|_| bad())?;
                if n == 0 {
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).await? == 0 || line == "\r\n" {
                            break;
                        }
                    }
                    break;
                }
                let mut chunk = vec![0; n + 2];
                r.read_exact(&mut chunk).await?;
            }
        } else if let Some(len) = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
        {
            let mut body = vec![0; len.trim().parse().map_err(|_| bad())?];
            r.read_exact(&mut body).await?;
        }
        w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .await?;
    }
}

/// An HTTP frontend `fe` in front of backend `be` with one server `s0` at
/// `addr` (its inline-table `opts` after the address); `fe_extra` goes in
/// the frontend's section, `extra` after everything.
fn lb(addr: SocketAddr, opts: &str, fe_extra: &str, extra: &str) -> String {
    format!(
        "[defaults]\nmode = \"http\"\ntimeout = {{ connect = \"2s\", client = \"30s\", server = \"30s\" }}\n\
         [frontends.fe]\nbind = [\"127.0.0.1:0\"]\ndefault_backend = \"be\"\n{fe_extra}\n\
         [backends.be]\nservers = [ {{ name = \"s0\", address = \"{addr}\" {opts} }} ]\n{extra}"
    )
}

/// Sends `bytes` on a new connection and reads until the proxy closes it
/// (or the deadline); returns the status codes of the responses read.
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u16> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, s.read_to_end(&mut got)).await;
    statuses(&got)
}

/// The status code of every response in `raw`.
fn statuses(raw: &[u8]) -> Vec<u16> {
    String::from_utf8_lossy(raw)
        .split("HTTP/1.")
        .skip(1)
        .filter_map(|r| r.get(2..5)?.parse().ok())
        .collect()
}

/// The httplog lines of this test binary.
fn httplog() -> &'static Mutex<String> {
    static LINES: OnceLock<Mutex<String>> = OnceLock::new();
    LINES.get_or_init(|| Mutex::new(String::new()))
}

/// Where the captured lines are written.
struct Capture;

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        httplog()
            .lock()
            .unwrap()
            .push_str(&String::from_utf8_lossy(b));
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures the httplog lines (once per test binary; before any node).
fn capture_httplog() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("raftlb::httplog=info"))
            .with_ansi(false)
            .with_writer(|| Capture)
            .try_init();
    });
}

/// The httplog line of the one request of client `client`, once written.
async fn log_line_of(client: SocketAddr) -> String {
    let find = || {
        let prefix = format!("{client} [");
        httplog()
            .lock()
            .unwrap()
            .lines()
            .find(|l| l.contains(&prefix))
            .map(str::to_string)
    };
    wait_until("the request's httplog line", DEADLINE, || async {
        find().is_some()
    })
    .await;
    find().unwrap()
}

/// RFC 9112 §3.2: an HTTP/1.1 request without `Host`, or with more than
/// one (alike or not), is answered 400 and reaches no server; HTTP/1.0
/// without `Host` is still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http11_without_host_or_with_two_gets_400_and_never_reaches_the_server() {
    let b = RawBackend::start().await;
    let n = TestNode::start(&lb(b.addr, "", "", "")).await;
    let fe = n.addr("fe");
    let vectors: [(&str, &[u8]); 4] = [
        ("no Host", b"GET /none HTTP/1.1\r\nX-A: 1\r\n\r\n"),
        (
            "two alike",
            b"GET /alike HTTP/1.1\r\nHost: x\r\nHost: x\r\n\r\n",
        ),
        (
            "two differing",
            b"GET /differ HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
        ),
        (
            "absolute-form without Host",
            b"GET http://x/abs HTTP/1.1\r\n\r\n",
        ),
    ];
    for (what, bytes) in vectors {
        assert_eq!(exchange(fe, bytes).await, [400], "{what}");
    }
    assert_eq!(b.request_lines(), Vec::<String>::new());
    let ok = exchange(fe, b"GET /old HTTP/1.0\r\n\r\n").await;
    assert_eq!(ok, [200], "HTTP/1.0 without Host");
    assert_eq!(b.request_lines(), ["GET /old HTTP/1.1"]);
}

/// RFC 9112 §3.2.2: the authority of an absolute-form target replaces
/// `Host`; the server gets origin-form, and `hdr(host)` ACLs route on the
/// replaced host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absolute_form_target_becomes_origin_form_with_its_authority_as_host() {
    let (b, other) = (RawBackend::start().await, RawBackend::start().await);
    let doc = lb(
        b.addr,
        "",
        "acl = { is_other = \"hdr(host) -i other.example\" }\n\
         use_backend = [ { backend = \"other\", if = \"is_other\" } ]",
        &format!(
            "[backends.other]\nservers = [ {{ name = \"o\", address = \"{}\" }} ]\n",
            other.addr
        ),
    );
    let n = TestNode::start(&doc).await;
    let got = exchange(
        n.addr("fe"),
        b"GET http://other.example/p?q=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(got, [200]);
    assert_eq!(b.request_lines(), Vec::<String>::new(), "routed on Host: x");
    let heads = other.heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "{heads:?}");
    let head = heads[0].to_ascii_lowercase();
    assert!(head.starts_with("get /p?q=1 http/1.1\r\n"), "{head}");
    let hosts: Vec<&str> = head
        .lines()
        .filter_map(|l| l.strip_prefix("host:"))
        .map(str::trim)
        .collect();
    assert_eq!(hosts, ["other.example"], "{head}");
}

/// A chunked body that turns malformed after its head went to the server
/// is the client's fault: 400 (no response had started), a client-side
/// termination state in the log, and nothing counted against the server's
/// passive health (one error would mark it down).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_malformed_after_the_head_was_forwarded_is_the_clients_fault() {
    capture_httplog();
    let b = RawBackend::start().await;
    let opts = ", check = true, inter = \"1h\", observe = \"layer7\", error_limit = 1, on_error = \"mark-down\"";
    let n = TestNode::start(&lb(b.addr, opts, "", "")).await;
    let mut s = TcpStream::connect(n.addr("fe")).await.unwrap();
    let me = s.local_addr().unwrap();
    s.write_all(
        b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    )
    .await
    .unwrap();
    wait_until("the head at the server", DEADLINE, || async {
        !b.request_lines().is_empty()
    })
    .await;
    s.write_all(b"zz\r\nabc\r\n0\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, s.read_to_end(&mut got)).await;
    assert_eq!(statuses(&got), [400], "{}", String::from_utf8_lossy(&got));
    let line = log_line_of(me).await;
    assert!(line.contains(" 400 "), "{line}");
    assert!(line.contains(" CH-- "), "{line}");
    assert!(n.is_up("be", "s0"), "the server paid for the client's body");
    assert_eq!(b.request_lines(), ["POST /up HTTP/1.1"]);
}

/// As above once the server's response had started: the response breaks
/// off, logged as the client's doing (`CD`), not the server's (`SD`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_malformed_during_the_response_is_logged_as_the_clients_fault() {
    capture_httplog();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    // Answers at the head, with a response body that never ends.
    let server = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let mut s = BufReader::new(s);
        let mut line = String::new();
        while s.read_line(&mut line).await.unwrap_or(0) > 0 && !line.ends_with("\r\n\r\n") {}
        s.get_mut()
            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
            .await
            .unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
    });
    let n = TestNode::start(&lb(addr, "", "", "")).await;
    let mut s = TcpStream::connect(n.addr("fe")).await.unwrap();
    let me = s.local_addr().unwrap();
    s.write_all(
        b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    )
    .await
    .unwrap();
    // The response has started once its first chunk is here.
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"abc\r\n") {
        let k = tokio::time::timeout(DEADLINE, s.read(&mut buf))
            .await
            .expect("the response's first chunk")
            .unwrap();
        assert!(k > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..k]);
    }
    s.write_all(b"zz\r\n").await.unwrap();
    let _ = tokio::time::timeout(DEADLINE, s.read_to_end(&mut got)).await;
    assert_eq!(statuses(&got), [200]);
    let line = log_line_of(me).await;
    assert!(line.contains(" 200 "), "{line}");
    assert!(line.contains(" CD-- "), "{line}");
    server.abort();
}

/// A chunk-size line over 1,024 bytes (hyper takes extensions up to 16 KiB;
/// the scanner cannot follow such a line) ends the connection after that
/// request: a request carrying both lengths after it, and what it
/// smuggles, never reach the server. The line is longer than hyper's first
/// read (8 KiB), so the scanner sees it in pieces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_long_chunk_size_line_a_smuggling_attempt_never_reaches_the_server() {
    let b = RawBackend::start().await;
    let n = TestNode::start(&lb(b.addr, "", "", "")).await;
    let stream = format!(
        "POST /one HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
         5;ext={}\r\nhello\r\n0\r\n\r\n\
         POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n\
         0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        "e".repeat(12_000)
    );
    let got = exchange(n.addr("fe"), stream.as_bytes()).await;
    assert_eq!(b.request_lines(), ["POST /one HTTP/1.1"]);
    assert_eq!(got.first(), Some(&200), "{got:?}");
    assert!(got[1..].iter().all(|&s| s == 400), "{got:?}");
}
