//! L7 message framing over real sockets (issue 15): `Host` as RFC 9112
//! §3.2 wants it (exactly one in HTTP/1.1, the authority of an
//! absolute-form target replacing it). Each test talks raw bytes to
//! the proxy and looks at what a raw backend received.

mod common;

use common::TestNode;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
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
