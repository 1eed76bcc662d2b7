//! The admin API over real sockets, as a browser or a careless client would
//! talk to it: cross-site requests are refused, writes need the node's
//! admin token and the CLI's Content-Type, and a malformed request (a bad
//! percent escape, an oversized head or body) gets its 4xx, never a panic.

mod common;

use common::sticky::{srv, TABLE};
use common::{lb, TestNode};
use raftlb_testkit::Backend;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DEADLINE: Duration = Duration::from_secs(10);

/// What the CLI sends as the Content-Type of every write.
const CLI_TYPE: &str = "application/octet-stream";

/// Sends `request` as it is and reads the answer until the node closes:
/// the status (0 if the node closed without answering) and the body.
async fn raw(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr)
        .await
        .expect("connect to the admin API");
    s.write_all(request).await.expect("send the request");
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    // Read what came before a reset too: a node that refuses a head it did
    // not read to the end may reset the connection after its answer.
    while let Ok(Ok(n)) = tokio::time::timeout(DEADLINE, s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
}

/// One request with `headers` (each a full `Name: value` line) and `body`.
async fn send(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[&str],
    body: &str,
) -> (u16, String) {
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for h in headers {
        req += &format!("{h}\r\n");
    }
    req += &format!("Content-Length: {}\r\n\r\n{body}", body.len());
    raw(addr, req.as_bytes()).await
}

/// The node's admin token, as its data directory holds it (empty if none).
fn token(n: &TestNode) -> String {
    std::fs::read_to_string(n.data_dir().join("admin.token"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The committed config's version, as `GET /config` says.
async fn config_version(addr: SocketAddr) -> u64 {
    let (code, body) = send(addr, "GET", "/config", &[], "").await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["version"].as_u64().unwrap()
}

/// Server `be/a`'s operator state, as `GET /status` says.
async fn admin_state(addr: SocketAddr) -> String {
    let (code, body) = send(addr, "GET", "/status", &[], "").await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["backends"]["be"][0]["admin"]
        .as_str()
        .unwrap_or("ready")
        .to_string()
}

async fn one_node() -> (TestNode, Backend) {
    let a = Backend::start("a").await;
    let n = TestNode::start(&lb(&srv(&a, ""), TABLE)).await;
    (n, a)
}

/// A page on another site posting a config to the node on the browser's
/// loopback (a "simple" request: text/plain, no preflight) is refused, as is
/// any request a browser marks cross-site, and any write a page sends;
/// nothing is applied. Only the stats page's own reads pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_requests_are_refused_and_change_nothing() {
    let (n, a) = one_node().await;
    let addr = n.node.admin_addr;
    assert_eq!(config_version(addr).await, 1);
    let evil_doc = lb(&srv(&a, ", weight = 7"), "");
    let target = "/config?format=toml&source=evil";
    let (code, body) = send(
        addr,
        "POST",
        target,
        &["Content-Type: text/plain", "Origin: http://evil.example"],
        &evil_doc,
    )
    .await;
    assert_eq!(code, 403, "{body}");
    // Not even with the token and the CLI's Content-Type (a page cannot
    // have them, but an Origin alone is reason enough).
    let auth = format!("Authorization: Bearer {}", token(&n));
    let ctype = format!("Content-Type: {CLI_TYPE}");
    for cross in [
        "Origin: http://evil.example",
        "Sec-Fetch-Site: cross-site",
        "Sec-Fetch-Site: same-origin",
    ] {
        let (code, body) = send(addr, "POST", target, &[&auth, &ctype, cross], &evil_doc).await;
        assert_eq!(code, 403, "{cross}: {body}");
    }
    assert_eq!(config_version(addr).await, 1, "nothing was applied");

    // Reads too: a page must not read the cluster's config either.
    for cross in [
        "Origin: http://evil.example",
        "Origin: null",
        "Sec-Fetch-Site: cross-site",
        "Sec-Fetch-Site: same-site",
    ] {
        let (code, body) = send(addr, "GET", "/config", &[cross], "").await;
        assert_eq!(code, 403, "{cross}: {body}");
    }
    // A page of another site that rebound its name to the node's address
    // is same-origin to the browser, but its Host is that name.
    let rebound = format!(
        "GET /config HTTP/1.1\r\nHost: evil.example:{}\r\nSec-Fetch-Site: same-origin\r\n\
         Connection: close\r\nContent-Length: 0\r\n\r\n",
        addr.port()
    );
    let (code, body) = raw(addr, rebound.as_bytes()).await;
    assert_eq!(code, 403, "{body}");
    // The stats page's own reads: same origin, the node's address as Host.
    let (code, body) = send(addr, "GET", "/status", &["Sec-Fetch-Site: same-origin"], "").await;
    assert_eq!(code, 200, "{body}");
    // Typed into the address bar (`none`), or from curl (no header): served.
    let (code, body) = send(addr, "GET", "/status", &["Sec-Fetch-Site: none"], "").await;
    assert_eq!(code, 200, "{body}");
}

/// Writes need the token the node keeps in its data directory (mode 0600)
/// as `Authorization: Bearer`, and the CLI's Content-Type; reads need
/// neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_need_the_admin_token_and_the_cli_content_type() {
    let (n, _a) = one_node().await;
    let addr = n.node.admin_addr;
    let file = n.data_dir().join("admin.token");
    let meta = std::fs::metadata(&file).expect("the node made its admin token");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let tok = token(&n);
    assert_eq!(tok.len(), 64, "{tok:?}");
    assert!(tok.bytes().all(|c| c.is_ascii_hexdigit()), "{tok:?}");

    let drain = "/server?name=be/a&state=drain";
    let ctype = format!("Content-Type: {CLI_TYPE}");
    let mut wrong = tok.clone();
    wrong.replace_range(63.., if tok.ends_with('0') { "1" } else { "0" });
    for auth in [
        None,
        Some(format!("Authorization: Bearer {wrong}")),
        Some(format!("Authorization: Bearer {}", &tok[..32])),
        Some("Authorization: Bearer ".to_string()),
        Some(format!("Authorization: Basic {tok}")),
        Some(format!("Authorization: {tok}")),
    ] {
        let mut headers = vec![ctype.as_str()];
        headers.extend(auth.as_deref());
        let (code, body) = send(addr, "POST", drain, &headers, "").await;
        assert_eq!(code, 401, "{auth:?}: {body}");
    }
    let auth = format!("Authorization: Bearer {tok}");
    for other in [
        None,
        Some("Content-Type: text/plain"),
        Some("Content-Type: application/x-www-form-urlencoded"),
        Some("Content-Type: multipart/form-data; boundary=x"),
    ] {
        let mut headers = vec![auth.as_str()];
        headers.extend(other);
        let (code, body) = send(addr, "POST", drain, &headers, "").await;
        assert_eq!(code, 415, "{other:?}: {body}");
    }
    assert_eq!(admin_state(addr).await, "ready", "nothing was changed");
    let (code, body) = send(addr, "POST", drain, &[&auth, &ctype], "").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(admin_state(addr).await, "drain");
    // The same token after a restart: the node keeps it.
    let n = n.restart().await;
    assert_eq!(token(&n), tok);
}

/// A bad percent escape in the query (`%a` then a multi-byte character
/// panicked the old handler), one that is not hex, or one that decodes to
/// bytes that are not UTF-8: 400, and the node serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_query_escapes_are_refused_not_panicked_on() {
    let (n, _a) = one_node().await;
    let addr = n.node.admin_addr;
    let (code, body) = raw(
        addr,
        "GET /tables?name=%aé HTTP/1.0\r\nHost: x\r\n\r\n".as_bytes(),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    for bad in ["%zz", "%4", "be%", "%C3%28", "%FF", "b%e"] {
        let (code, body) = send(addr, "GET", &format!("/tables?name={bad}"), &[], "").await;
        assert_eq!(code, 400, "{bad}: {body}");
    }
    // A good escape still decodes (`%62` is `b`, `+` a space).
    let (code, body) = send(addr, "GET", "/tables?name=%62e", &[], "").await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"name\": \"be\""), "{body}");
    let (code, body) = send(addr, "GET", "/tables?name=b+e", &[], "").await;
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("\"b e\""), "{body}");
    let (code, body) = send(addr, "GET", "/health", &[], "").await;
    assert_eq!((code, body.as_str()), (200, "ok\n"));
}

/// A head over 16 KiB gets 431; a body over 8 MiB gets 413 before it is
/// read; a config between the old 4 MiB limit and 8 MiB is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_and_bodies_are_refused() {
    let (n, a) = one_node().await;
    let addr = n.node.admin_addr;
    let big = format!("X-Filler: {}", "x".repeat(20 * 1024));
    let (code, body) = send(addr, "GET", "/status", &[&big], "").await;
    assert_eq!(code, 431, "{body}");

    let auth = format!("Authorization: Bearer {}", token(&n));
    let ctype = format!("Content-Type: {CLI_TYPE}");
    let over = format!(
        "POST /config?format=toml HTTP/1.1\r\nHost: x\r\n{auth}\r\n{ctype}\r\nContent-Length: {}\r\n\r\n",
        8 * 1024 * 1024 + 1
    );
    let (code, body) = raw(addr, over.as_bytes()).await;
    assert_eq!(code, 413, "{body}");

    // 5 MiB: a comment after a good config (with one change, to see it
    // applied).
    let doc = lb(&srv(&a, ", weight = 7"), TABLE) + "#" + &"x".repeat(5 << 20) + "\n";
    let (code, body) = send(addr, "POST", "/config?format=toml", &[&auth, &ctype], &doc).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(config_version(addr).await, 2);
}
