//! The `raftlb` binary: `check`, `run` with SIGHUP reloads, `status`, and an
//! accept loop that survives running out of file descriptors.

use raftlb_testkit::{connect, free_port, wait_until, which, Backend, Proc, TempDir};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_raftlb");
const DEADLINE: Duration = Duration::from_secs(15);

fn raftlb() -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("RAFTLB_ADMIN").env_remove("RAFTLB_LOG");
    c
}

#[test]
fn check_names_every_mistake_with_path_and_line() {
    let dir = TempDir::new("raftlb-check");
    let bad = dir.path("bad.toml");
    std::fs::write(
        &bad,
        r#"[frontends.web]
bind = ["127.0.0.1:8080"]
default_backend = "wbe"

[backends.web]
balance = "roundrobin"
servers = [
  { name = "s1", address = "127.0.0.1:9001", chek = true },
  { name = "s2", address = "127.0.0.1:99999" },
]
"#,
    )
    .unwrap();
    let out = raftlb().args(["check", "-c"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let shown = bad.display().to_string();
    assert!(
        err.contains(&format!(
            "{shown}:3: frontends.web.default_backend: unknown backend \"wbe\""
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{shown}:8: backends.web.servers[0].chek: unknown key `chek` (did you mean `check`?)"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{shown}:9: backends.web.servers[1].address: invalid address \"127.0.0.1:99999\""
        )),
        "{err}"
    );
    assert!(err.contains("3 error(s)"), "{err}");
}

#[test]
fn check_tells_node_files_from_cluster_configs() {
    let dir = TempDir::new("raftlb-check-node");
    let good = dir.path("node.toml");
    std::fs::write(
        &good,
        "id = 3\nname = \"lb3\"\ndata_dir = \"/tmp/x\"\n[admin]\nlisten = \"127.0.0.1:9901\"\n",
    )
    .unwrap();
    let out = raftlb().args(["check", "-c"]).arg(&good).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("node file is valid (node 3 \"lb3\")"));

    let bad = dir.path("bad-node.toml");
    std::fs::write(
        &bad,
        "id = 3\nname = \"lb3\"\ndata_dir = \"/tmp/x\"\n[vip]\npriority = 900\n",
    )
    .unwrap();
    let out = raftlb().args(["check", "-c"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("priority"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn help_reads_well() {
    let out = raftlb().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in ["run", "check", "demo", "status"] {
        assert!(help.contains(cmd), "{help}");
    }
    let out = raftlb().args(["status", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("RAFTLB_ADMIN"));
}

struct Running {
    proc: Proc,
    dir: TempDir,
    fe: SocketAddr,
    admin: SocketAddr,
}

fn lb_doc(fe: SocketAddr, servers: &[&Backend], extra: &str) -> String {
    let list: String = servers
        .iter()
        .map(|b| format!("{{ name = \"{}\", address = \"{}\" }},", b.name, b.addr))
        .collect();
    format!(
        "{extra}\n[defaults]\ntimeout = {{ connect = \"2s\", client = \"30s\", server = \"30s\" }}\n\
         [frontends.fe]\nbind = [\"{fe}\"]\ndefault_backend = \"be\"\n[backends.be]\nservers = [{list}]\n"
    )
}

async fn start(doc_for: impl Fn(SocketAddr) -> String, shell_prefix: Option<&str>) -> Running {
    let dir = TempDir::new("raftlb-run");
    let fe: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    std::fs::write(
        dir.path("node.toml"),
        format!(
            "id = 1\nname = \"t\"\ndata_dir = \"{}\"\n[admin]\nlisten = \"{admin}\"\n",
            dir.path("data").display()
        ),
    )
    .unwrap();
    std::fs::write(dir.path("lb.toml"), doc_for(fe)).unwrap();
    let node = dir.path("node.toml").display().to_string();
    let lb = dir.path("lb.toml").display().to_string();
    let cmd = match shell_prefix {
        None => {
            let mut c = raftlb();
            c.args(["run", "--node", &node, "--lb", &lb]);
            c
        }
        Some(prefix) => {
            let mut c = Command::new("sh");
            c.env_remove("RAFTLB_ADMIN").env_remove("RAFTLB_LOG");
            c.args([
                "-c",
                &format!("{prefix}; exec \"$0\" run --node \"$1\" --lb \"$2\""),
                BIN,
                &node,
                &lb,
            ]);
            c
        }
    };
    let proc = Proc::spawn(cmd, &dir.path("raftlb.log"));
    let ready = async {
        loop {
            if raftlb::admin::get(admin, "/health").await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    if tokio::time::timeout(DEADLINE, ready).await.is_err() {
        panic!("raftlb did not become ready:\n{}", proc.output());
    }
    Running {
        proc,
        dir,
        fe,
        admin,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reload_keeps_connections_and_refuses_a_bad_file() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let r = start(|fe| lb_doc(fe, &[&a], ""), None).await;
    let mut established = connect(r.fe).await.unwrap();
    assert_eq!(established.server, "a");

    // A file with a typo: refused, logged, old routing stays.
    std::fs::write(
        r.dir.path("lb.toml"),
        lb_doc(r.fe, &[&b], "").replace("servers", "servres"),
    )
    .unwrap();
    r.proc.signal(libc::SIGHUP);
    wait_until("the refusal is logged", DEADLINE, || async {
        r.proc.output().contains("reload refused")
    })
    .await;
    assert!(
        r.proc.output().contains("did you mean `servers`"),
        "{}",
        r.proc.output()
    );
    assert_eq!(which(r.fe).await, "a");
    assert_eq!(
        established.echo("after bad reload").await.unwrap(),
        "after bad reload"
    );

    // A good file: new connections follow it; the established one goes on.
    std::fs::write(r.dir.path("lb.toml"), lb_doc(r.fe, &[&b], "")).unwrap();
    r.proc.signal(libc::SIGHUP);
    wait_until("new connections reach b", DEADLINE, || async {
        which(r.fe).await == "b"
    })
    .await;
    assert_eq!(
        established.echo("after good reload").await.unwrap(),
        "after good reload"
    );

    let out = raftlb()
        .args(["status", "--admin", &r.admin.to_string()])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{status}");
    assert!(status.contains("config version 2 (applied 2)"), "{status}");
    assert!(status.contains("backend be"), "{status}");
    assert!(
        status.lines().any(|l| l.trim_start().starts_with("b ")
            && l.contains(&b.addr.to_string())
            && l.contains(" UP ")),
        "{status}"
    );
    let log = r.proc.output();
    assert!(
        log.contains("raftlb::tcplog"),
        "one log line per connection:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_loop_survives_running_out_of_file_descriptors() {
    let a = Backend::start("a").await;
    // 64 descriptors, and a global maxconn high enough not to stop accepting first.
    let r = start(
        |fe| lb_doc(fe, &[&a], "[global]\nmaxconn = 1000"),
        Some("ulimit -n 64"),
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..60 {
        match tokio::net::TcpStream::connect(r.fe).await {
            Ok(s) => held.push(s),
            Err(_) => break,
        }
    }
    wait_until("accept hits EMFILE", DEADLINE, || async {
        r.proc.output().contains("accept failed")
    })
    .await;
    assert!(
        r.proc.output().contains("Too many open files"),
        "{}",
        r.proc.output()
    );
    drop(held);
    // Once descriptors are free again, new clients are served.
    wait_until("a new client is served", DEADLINE, || async {
        matches!(tokio::time::timeout(Duration::from_secs(2), connect(r.fe)).await, Ok(Ok(c)) if c.server == "a")
    })
    .await;
}

#[test]
fn run_refuses_a_bad_cluster_config_with_its_errors() {
    let dir = TempDir::new("raftlb-run-bad");
    std::fs::write(
        dir.path("node.toml"),
        format!(
            "id = 1\nname = \"t\"\ndata_dir = \"{}\"\n",
            dir.path("d").display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path("lb.toml"),
        "[frontends.f]\nbind = \"nowhere\"\ndefault_backend = \"b\"\n[backends.b]\n",
    )
    .unwrap();
    let out = raftlb()
        .args(["run", "--node"])
        .arg(dir.path("node.toml"))
        .arg("--lb")
        .arg(dir.path("lb.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("lb.toml:2: frontends.f.bind: invalid address \"nowhere\""),
        "{err}"
    );
}

/// The server's line in `raftlb status --json`.
fn server_status(admin: SocketAddr, name: &str) -> Option<serde_json::Value> {
    let out = raftlb()
        .args(["status", "--json", "--admin", &admin.to_string()])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["backends"]["be"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_starts_from_the_health_view_the_cluster_kept() {
    // A checked server nobody listens on: the node sees it DOWN and the
    // cluster (of one) records that view.
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let doc = |fe: SocketAddr| {
        format!(
            "[frontends.fe]\nbind = [\"{fe}\"]\ndefault_backend = \"be\"\n[backends.be]\n\
             servers = [ {{ name = \"gone\", address = \"{dead}\", check = true, inter = \"100ms\", fall = 1, rise = 3 }} ]\n"
        )
    };
    let mut r = start(doc, None).await;
    wait_until(
        "the node records its DOWN view in the cluster",
        DEADLINE,
        || async {
            let out = raftlb()
                .args([
                    "cluster",
                    "status",
                    "--json",
                    "--admin",
                    &r.admin.to_string(),
                ])
                .output()
                .unwrap();
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            v["health"]["be/gone"]["1"]["up"] == false
        },
    )
    .await;
    // Killed and restarted from its disk: the server comes back DOWN at once,
    // with the remembered reason, instead of HAProxy's optimistic UP.
    r.proc.signal(libc::SIGKILL);
    let _ = r.proc.child.wait();
    let node = r.dir.path("node.toml").display().to_string();
    let mut c = raftlb();
    c.args(["run", "--node", &node]);
    r.proc = Proc::spawn(c, &r.dir.path("raftlb2.log"));
    wait_until(
        "the restarted node shows the remembered view",
        DEADLINE,
        || async {
            server_status(r.admin, "gone").is_some_and(|s| {
                s["up"] == false
                    && s["last_change"]
                        .as_str()
                        .is_some_and(|c| c.contains("remembered by the cluster"))
            })
        },
    )
    .await;
}

/// Holding a VIP needs CAP_NET_ADMIN and CAP_NET_RAW: a node with `[vip]
/// interface` set and one of them missing refuses to start, and says which;
/// `raftlb vip release` likewise.
#[test]
fn a_vip_node_without_net_admin_refuses_to_start_and_says_why() {
    let dir = TempDir::new("raftlb-vip-caps");
    let node = dir.path("node.toml");
    std::fs::write(
        &node,
        format!(
            "id = 1\nname = \"n1\"\ndata_dir = \"{}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[vip]\ninterface = \"lo\"\n",
            dir.path("data").display()
        ),
    )
    .unwrap();
    let lb = dir.path("lb.toml");
    std::fs::write(&lb, "").unwrap();
    for (args, what) in [
        (vec!["run", "--lb", lb.to_str().unwrap()], "run"),
        (vec!["vip", "release"], "vip release"),
    ] {
        // The bounding set without CAP_NET_ADMIN: root's effective set at
        // exec lacks it too.
        let out = Command::new("setpriv")
            .args(["--bounding-set", "-net_admin", "--", BIN])
            .env_remove("RAFTLB_ADMIN")
            .env_remove("RAFTLB_LOG")
            .args(&args)
            .arg("--node")
            .arg(&node)
            .output()
            .expect("setpriv (util-linux)");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what} must fail: {err}");
        assert!(
            err.contains("holding a VIP needs CAP_NET_ADMIN")
                && err.contains("AmbientCapabilities"),
            "{what}: {err}"
        );
    }
}

/// A bad ACL or condition is refused by `check` with the rule's path, its
/// line, and the column in the rule.
#[test]
fn check_refuses_a_bad_acl_with_its_position() {
    let dir = TempDir::new("raftlb-check-acl");
    let bad = dir.path("acl.toml");
    std::fs::write(
        &bad,
        r#"[defaults]
mode = "http"

[frontends.web]
bind = ["127.0.0.1:8080"]
default_backend = "web"
acl = { is_blog = "path_bgn /blog", is_post = "method POST" }
use_backend = [ { backend = "web", if = "is_post or is_pots" } ]

[backends.web]
servers = [ { name = "s1", address = "127.0.0.1:9001" } ]
"#,
    )
    .unwrap();
    let out = raftlb().args(["check", "-c"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let shown = bad.display().to_string();
    for want in [
        format!("{shown}:7: frontends.web.acl.is_blog: column 1: unknown fetch \"path_bgn\""),
        format!("{shown}:8: frontends.web.use_backend[0].if: column 12: unknown ACL \"is_pots\" (did you mean \"is_post\"?)"),
    ] {
        assert!(err.contains(&want), "want {want:?} in:\n{err}");
    }
}

/// In HTTP mode each request writes one httplog line: client, date,
/// frontend, backend/server, TR/Tw/Tc/Tr/Ta, status, bytes, termination
/// state and the request line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_mode_writes_one_httplog_line_per_request() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let srv = l.local_addr().unwrap();
    tokio::spawn(raftlb::demo::http_backend(l, "web-1"));
    let r = start(
        |fe| {
            format!(
                "[defaults]\nmode = \"http\"\ntimeout = {{ connect = \"2s\", client = \"30s\", server = \"30s\" }}\n\
                 [frontends.fe]\nbind = [\"{fe}\"]\nacl = {{ never = \"path_beg /never\" }}\n\
                 use_backend = [ {{ backend = \"be\", if = \"!never\" }} ]\n\
                 [backends.be]\nservers = [ {{ name = \"s1\", address = \"{srv}\" }} ]\n"
            )
        },
        None,
    )
    .await;
    let mut s = tokio::net::TcpStream::connect(r.fe).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"GET /hello?x=1 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let line = |out: &str| {
        out.lines()
            .find(|l| l.contains("raftlb::httplog"))
            .map(str::to_string)
    };
    wait_until("the httplog line", DEADLINE, || async {
        line(&r.proc.output()).is_some()
    })
    .await;
    let l = line(&r.proc.output()).unwrap();
    assert!(is_httplog_line(&l), "{l}");
}

/// `127.0.0.1:PORT [DD/Mon/YYYY:HH:MM:SS.mmm] fe be/s1 N/N/N/N/N 200 N - - ---- "GET /hello?x=1 HTTP/1.1"`
fn is_httplog_line(line: &str) -> bool {
    let Some(rest) = line.split("127.0.0.1:").nth(1) else {
        return false;
    };
    let parts: Vec<&str> = rest.split_whitespace().collect();
    let date_ok = parts.get(1).is_some_and(|d| {
        d.starts_with('[') && d.ends_with(']') && d.len() == "[21/Nov/2026:22:15:01.123]".len()
    });
    let timers_ok = parts.get(4).is_some_and(|t| {
        let v: Vec<&str> = t.split('/').collect();
        v.len() == 5 && v.iter().all(|x| x.parse::<i64>().is_ok_and(|n| n >= 0))
    });
    date_ok
        && parts.get(2) == Some(&"fe")
        && parts.get(3) == Some(&"be/s1")
        && timers_ok
        && parts.get(5) == Some(&"200")
        && parts
            .get(6)
            .is_some_and(|b| b.parse::<u64>().is_ok_and(|n| n > 0))
        && parts.get(9) == Some(&"----")
        && rest.ends_with("\"GET /hello?x=1 HTTP/1.1\"")
}

/// The CLI's writes carry the admin token of the node `--node` names (from
/// its data_dir); with no such file, or another node's, nothing changes and
/// the CLI says why. Reads need no node file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_writes_carry_the_admin_token_of_the_node_file() {
    let a = Backend::start("a").await;
    let r = start(|fe| lb_doc(fe, &[&a], ""), None).await;
    let admin = r.admin.to_string();
    let node = r.dir.path("node.toml").display().to_string();
    let run = |args: &[&str]| {
        let out = raftlb()
            .args(args)
            .args(["--admin", &admin])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let (ok, out) = run(&["server", "drain", "be/a", "--node", &node]);
    assert!(ok, "{out}");
    assert!(out.contains("be/a: state drain on every node"), "{out}");
    assert_eq!(server_status(r.admin, "a").unwrap()["admin"], "drain");
    let lb = r.dir.path("lb.toml");
    std::fs::write(&lb, lb_doc(r.fe, &[&a], "[global]\nmaxconn = 500")).unwrap();
    let lb = lb.display().to_string();
    let (ok, out) = run(&["config", "apply", &lb, "--node", &node]);
    assert!(ok && out.contains("committed as config version 2"), "{out}");

    // No node file there: refused here, nothing sent.
    let missing = r.dir.path("missing.toml").display().to_string();
    let (ok, out) = run(&["server", "ready", "be/a", "--node", &missing]);
    assert!(!ok && out.contains("admin token"), "{out}");
    // Another node's file (another data_dir, another token): 401.
    let other = r.dir.path("other.toml");
    std::fs::write(
        &other,
        format!(
            "id = 2\nname = \"o\"\ndata_dir = \"{}\"\n",
            r.dir.path("other").display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all(r.dir.path("other")).unwrap();
    std::fs::write(r.dir.path("other/admin.token"), "0".repeat(64) + "\n").unwrap();
    let other = other.display().to_string();
    let (ok, out) = run(&["server", "ready", "be/a", "--node", &other]);
    assert!(!ok && out.contains("admin token"), "{out}");
    assert_eq!(server_status(r.admin, "a").unwrap()["admin"], "drain");
    // Reads: no node file needed.
    let (ok, out) = run(&["config", "show", "--node", &missing]);
    assert!(ok && out.contains("# config version 2"), "{out}");
}
