//! The admin API for a network: `[admin] token_file` gives bearer tokens
//! with a role (`read`, `operator`). With it every request needs a token
//! (but `GET /health`); the read role cannot drain a server; a wrong token
//! gets 401 and a log line; every write is logged with who sent it. A
//! non-loopback `listen` without a token file is refused at `check`.

use raftlb_testkit::{free_port, wait_until, Backend, Proc, TempDir};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_raftlb");
const DEADLINE: Duration = Duration::from_secs(15);
const READER: &str = "r3ad3r-r3ad3r-r3ad3r-r3ad3r-r3ad3r-0001";
const OPERATOR: &str = "0p3rat0r-0p3rat0r-0p3rat0r-0p3rat0r-0001";

fn raftlb() -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("RAFTLB_ADMIN").env_remove("RAFTLB_LOG");
    c
}

/// One request to `addr` with `token` (if any): the status (0: nothing
/// listens) and body.
async fn ask(addr: SocketAddr, method: &str, target: &str, token: Option<&str>) -> (u16, String) {
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req += &format!("Authorization: Bearer {t}\r\n");
    }
    if method == "POST" {
        req += &format!("Content-Type: {}\r\n", raftlb::admin::WRITE_CONTENT_TYPE);
    }
    req += "Content-Length: 0\r\n\r\n";
    // Not listening yet: status 0.
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return (0, String::new());
    };
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (
        code,
        out.split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_string(),
    )
}

/// A node file of `admin` (its `[admin]` lines), under `dir`.
fn node_file(dir: &TempDir, admin: &str) -> std::path::PathBuf {
    let f = dir.path("node.toml");
    std::fs::write(
        &f,
        format!(
            "id = 1\nname = \"t\"\ndata_dir = \"{}\"\n[admin]\n{admin}\n",
            dir.path("data").display()
        ),
    )
    .unwrap();
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_file_reads_need_a_token_and_only_operators_write() {
    let dir = TempDir::new("raftlb-admin-access");
    let tokens = dir.path("tokens");
    std::fs::write(
        &tokens,
        format!("# who may ask\ngrafana read {READER}\nalice operator {OPERATOR}\n"),
    )
    .unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let node = node_file(
        &dir,
        &format!(
            "listen = \"{admin}\"\ntoken_file = \"{}\"",
            tokens.display()
        ),
    );
    let backend = Backend::start("s").await;
    let lb = dir.path("lb.toml");
    std::fs::write(
        &lb,
        format!(
            "[defaults]\ntimeout = {{ connect = \"2s\", client = \"30s\", server = \"30s\" }}\n\
             [frontends.fe]\nbind = [\"127.0.0.1:{}\"]\ndefault_backend = \"be\"\n\
             [backends.be]\nservers = [ {{ name = \"s\", address = \"{}\" }} ]\n",
            free_port(),
            backend.addr
        ),
    )
    .unwrap();
    let mut c = raftlb();
    c.arg("run").arg("--node").arg(&node).arg("--lb").arg(&lb);
    let proc = Proc::spawn(c, &dir.path("raftlb.out"));
    // `/health` needs no token: what readiness checks ask.
    wait_until("the node is ready", DEADLINE, || async {
        ask(admin, "GET", "/health", None).await.0 == 200
    })
    .await;

    let admin_state = |body: &str| -> String {
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        v["backends"]["be"][0]["admin"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(ask(admin, "GET", "/status", None).await.0, 401);
    let (code, body) = ask(admin, "GET", "/status", Some(READER)).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(admin_state(&body), "ready");

    let drain = "/server?name=be/s&state=drain";
    let (code, body) = ask(admin, "POST", drain, Some(READER)).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("grafana has the read role"), "{body}");
    let (code, body) = ask(
        admin,
        "POST",
        drain,
        Some("not-a-token-of-this-node-at-all-0000"),
    )
    .await;
    assert_eq!(code, 401, "{body}");
    let (_, body) = ask(admin, "GET", "/status", Some(READER)).await;
    assert_eq!(admin_state(&body), "ready", "nothing changed");
    wait_until("the refusal logged", DEADLINE, || async {
        proc.output()
            .contains(&format!("admin API: refused POST {drain} from 127.0.0.1:"))
    })
    .await;

    let (code, body) = ask(admin, "POST", drain, Some(OPERATOR)).await;
    assert_eq!(code, 200, "{body}");
    wait_until("alice's drain applied", DEADLINE, || async {
        admin_state(&ask(admin, "GET", "/status", Some(READER)).await.1) == "drain"
    })
    .await;
    wait_until("the write logged with who sent it", DEADLINE, || async {
        let out = proc.output();
        out.lines().any(|l| {
            l.contains("admin API: alice (operator) from 127.0.0.1:")
                && l.contains(&format!("POST {drain} -> 200"))
        })
    })
    .await;

    // The CLI on the node sends the node's own token, reads too.
    let out = raftlb()
        .args(["status", "--admin", &admin.to_string(), "--node"])
        .arg(&node)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn beyond_loopback_the_admin_api_needs_a_token_file() {
    let dir = TempDir::new("raftlb-admin-bind");
    let open = node_file(&dir, "listen = \"0.0.0.0:9900\"");
    let out = raftlb().args(["check", "-c"]).arg(&open).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("node.toml")
            && err.contains("admin.listen: 0.0.0.0:9900")
            && err.contains("admin.token_file"),
        "{err}"
    );
    let tokens = dir.path("tokens");
    std::fs::write(&tokens, format!("alice operator {OPERATOR}\n")).unwrap();
    let guarded = node_file(
        &dir,
        &format!(
            "listen = \"0.0.0.0:9900\"\ntoken_file = \"{}\"",
            tokens.display()
        ),
    );
    let out = raftlb()
        .args(["check", "-c"])
        .arg(&guarded)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_token_file_with_a_mistake_stops_the_node_with_its_line() {
    let dir = TempDir::new("raftlb-admin-tokens");
    let tokens = dir.path("tokens");
    std::fs::write(
        &tokens,
        format!("alice operator {OPERATOR}\nbob admin {READER}\n"),
    )
    .unwrap();
    let node = node_file(
        &dir,
        &format!(
            "listen = \"127.0.0.1:{}\"\ntoken_file = \"{}\"",
            free_port(),
            tokens.display()
        ),
    );
    let out = raftlb()
        .args(["cluster", "init", "--node"])
        .arg(&node)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!("{}:2: role \"admin\"", tokens.display())),
        "{err}"
    );
}
