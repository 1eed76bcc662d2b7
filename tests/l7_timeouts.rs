//! Inactivity timeouts while a body moves (issue 15, item 2): a server that
//! stalls in the middle of its response, a client that stops reading one,
//! and an upload slower than `timeout server` that keeps moving.

mod common;

use common::TestNode;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const DEADLINE: Duration = Duration::from_secs(10);

fn lb(server: SocketAddr, client: &str, srv: &str) -> String {
    format!(
        r#"
[defaults]
mode = "http"
timeout = {{ connect = "2s", client = "{client}", server = "{srv}" }}

[frontends.fe]
bind = ["127.0.0.1:0"]
default_backend = "be"

[backends.be]
servers = [ {{ name = "s1", address = "{server}", maxconn = 1 }} ]
"#
    )
}

/// Reads a request head (and its body, by Content-Length) from `r`.
async fn read_request<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Option<Vec<u8>> {
    let mut len = 0;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).await.ok()?;
    Some(body)
}

/// Reads a response head; its status.
async fn read_head(r: &mut BufReader<TcpStream>) -> u16 {
    let mut status = String::new();
    r.read_line(&mut status).await.unwrap();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).await.unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
    }
    status.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stalling_mid_body_is_cut_at_timeout_server_and_frees_its_slot() {
    // The first response stops after 10 of its 100 bytes; later ones are whole.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let n_req = Arc::new(AtomicUsize::new(0));
    let count = n_req.clone();
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (s, _) = l.accept().await.unwrap();
            let count = count.clone();
            held.push(tokio::spawn(async move {
                let mut s = BufReader::new(s);
                while read_request(&mut s).await.is_some() {
                    let first = count.fetch_add(1, Ordering::SeqCst) == 0;
                    let s = s.get_mut();
                    s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
                        .await
                        .unwrap();
                    if first {
                        // Silent, connection open.
                        std::future::pending::<()>().await;
                    }
                    s.write_all(&[b'x'; 90]).await.unwrap();
                }
            }));
        }
    });
    let n = TestNode::start(&lb(addr, "30s", "500ms")).await;
    let mut c = BufReader::new(TcpStream::connect(n.addr("fe")).await.unwrap());
    c.get_mut()
        .write_all(b"GET /stalls HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_head(&mut c).await, 200);
    let mut got = Vec::new();
    let end = tokio::time::timeout(DEADLINE, c.read_to_end(&mut got)).await;
    assert!(end.is_ok(), "the stalled response was never cut");
    assert_eq!(
        got, b"0123456789",
        "the 10 bytes the server sent, then the cut"
    );
    // The slot (maxconn 1) is free again: the next request is served.
    let mut c = BufReader::new(TcpStream::connect(n.addr("fe")).await.unwrap());
    c.get_mut()
        .write_all(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let status = tokio::time::timeout(DEADLINE, read_head(&mut c)).await;
    assert_eq!(status.expect("the next request is served"), 200);
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_at_timeout_client() {
    // The server sends an endless body as fast as it can be taken; it sees
    // its connection closed once the proxy gives up on the client.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let mut s = BufReader::new(s);
        read_request(&mut s).await.unwrap();
        let s = s.get_mut();
        s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        let chunk = [b'y'; 16 * 1024];
        let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
        framed.extend_from_slice(&chunk);
        framed.extend_from_slice(b"\r\n");
        while s.write_all(&framed).await.is_ok() {}
        let _ = closed_tx.send(());
    });
    let n = TestNode::start(&lb(addr, "500ms", "30s")).await;
    let mut c = BufReader::new(TcpStream::connect(n.addr("fe")).await.unwrap());
    c.get_mut()
        .write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_head(&mut c).await, 200);
    // The client reads no more; it keeps its connection open.
    let cut = tokio::time::timeout(DEADLINE, closed_rx).await;
    assert!(
        cut.is_ok(),
        "the server's connection stayed open for a client that does not read"
    );
    drop(c);
    server.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_slower_than_timeout_server_that_keeps_moving_is_answered() {
    // 10 bytes, one every 200 ms: 2 s of upload with timeout server 500 ms.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let mut s = BufReader::new(s);
        let body = read_request(&mut s).await.unwrap();
        let reply = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
        s.get_mut().write_all(reply.as_bytes()).await.unwrap();
        s.get_mut().write_all(&body).await.unwrap();
    });
    let n = TestNode::start(&lb(addr, "30s", "500ms")).await;
    let mut c = BufReader::new(TcpStream::connect(n.addr("fe")).await.unwrap());
    c.get_mut()
        .write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
        .await
        .unwrap();
    for b in b"0123456789" {
        tokio::time::sleep(Duration::from_millis(200)).await;
        c.get_mut().write_all(&[*b]).await.unwrap();
    }
    let status = tokio::time::timeout(DEADLINE, read_head(&mut c))
        .await
        .unwrap();
    assert_eq!(status, 200, "a moving upload is no silent server");
    let mut back = [0u8; 10];
    c.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"0123456789");
    server.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_server_connection_times_its_server_from_each_request() {
    // One server connection: the first request is answered at once; the
    // second, sent after the first one's `timeout server` would have run
    // out, is answered within its own; the third never. Each goes on the
    // pooled connection, with the timer the one before left there.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let counted = accepts.clone();
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (s, _) = l.accept().await.unwrap();
            counted.fetch_add(1, Ordering::SeqCst);
            held.push(tokio::spawn(async move {
                let mut s = BufReader::new(s);
                let mut n = 0;
                while read_request(&mut s).await.is_some() {
                    n += 1;
                    match n {
                        2 => tokio::time::sleep(Duration::from_millis(100)).await,
                        3 => std::future::pending::<()>().await,
                        _ => {}
                    }
                    s.get_mut()
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await
                        .unwrap();
                }
            }));
        }
    });
    let n = TestNode::start(&lb(addr, "30s", "300ms")).await;
    let mut c = BufReader::new(TcpStream::connect(n.addr("fe")).await.unwrap());
    let mut statuses = Vec::new();
    for path in ["/at-once", "/within-its-timeout", "/never"] {
        c.get_mut()
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let status = tokio::time::timeout(DEADLINE, read_head(&mut c)).await;
        statuses.push(status.expect("a response comes"));
        if statuses.last() == Some(&200) {
            let mut body = [0u8; 2];
            c.read_exact(&mut body).await.unwrap();
        }
        if path == "/at-once" {
            // Idle past the first request's deadline: a timer still armed
            // at it would cut the second request short.
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    }
    assert_eq!(statuses, [200, 200, 504]);
    assert_eq!(
        accepts.load(Ordering::SeqCst),
        1,
        "every request reused the connection"
    );
    server.abort();
}
