//! `[log]` of the node file: lines to syslog as RFC 5424 messages (to a
//! unix datagram socket this test owns, as `/dev/log` would be), with the
//! facility and each event's severity; to stderr when the socket is not
//! there; JSON lines; and a facility syslog does not know refused.

use raftlb_testkit::{free_port, wait_until, which, Backend, Proc, TempDir};
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_raftlb");
const DEADLINE: Duration = Duration::from_secs(15);

fn raftlb() -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("RAFTLB_ADMIN").env_remove("RAFTLB_LOG");
    c
}

/// `raftlb run` of one node with `log` as its `[log]` section, one TCP
/// frontend to `server` (health-checked every 100 ms), ready.
struct Node {
    proc: Proc,
    fe: SocketAddr,
    _dir: TempDir,
}

async fn start(dir: TempDir, log: &str, server: SocketAddr) -> Node {
    let fe: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    std::fs::write(
        dir.path("node.toml"),
        format!(
            "id = 1\nname = \"t\"\ndata_dir = \"{}\"\n[admin]\nlisten = \"{admin}\"\n[log]\n{log}\n",
            dir.path("data").display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path("lb.toml"),
        format!(
            "[defaults]\ntimeout = {{ connect = \"2s\", client = \"30s\", server = \"30s\" }}\n\
             [frontends.fe]\nbind = [\"{fe}\"]\ndefault_backend = \"be\"\n\
             [backends.be]\nservers = [ {{ name = \"s\", address = \"{server}\", check = true, inter = \"100ms\", fall = 1 }} ]\n"
        ),
    )
    .unwrap();
    let mut c = raftlb();
    c.arg("run")
        .arg("--node")
        .arg(dir.path("node.toml"))
        .arg("--lb")
        .arg(dir.path("lb.toml"));
    let proc = Proc::spawn(c, &dir.path("raftlb.out"));
    wait_until("the node is ready", DEADLINE, || async {
        raftlb::admin::get(admin, "/health").await.is_ok()
    })
    .await;
    Node {
        proc,
        fe,
        _dir: dir,
    }
}

/// A syslog socket of the test's: a thread reads every message into
/// `msgs` until this is dropped.
struct Syslog {
    msgs: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Syslog {
    fn bind(path: &std::path::Path) -> Syslog {
        let sock = UnixDatagram::bind(path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let (msgs, stop) = (
            Arc::new(Mutex::new(Vec::new())),
            Arc::new(AtomicBool::new(false)),
        );
        let (m, st) = (msgs.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0; 65536];
            while !st.load(Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    m.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
            }
        });
        Syslog {
            msgs,
            stop,
            thread: Some(thread),
        }
    }

    /// The first message with `what`, waiting for it.
    async fn first(&self, what: &str) -> String {
        let found = || {
            self.msgs
                .lock()
                .unwrap()
                .iter()
                .find(|m| m.contains(what))
                .cloned()
        };
        wait_until(
            &format!("a syslog message with {what:?}"),
            DEADLINE,
            || async { found().is_some() },
        )
        .await;
        found().unwrap()
    }
}

impl Drop for Syslog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID - - MSG`: its parts.
fn rfc5424(
    m: &str,
) -> (
    u32,
    chrono::DateTime<chrono::FixedOffset>,
    String,
    String,
    u32,
    String,
) {
    let (pri, rest) = m
        .strip_prefix('<')
        .and_then(|r| r.split_once(">1 "))
        .unwrap_or_else(|| panic!("no <PRI>1 header: {m}"));
    let f: Vec<&str> = rest.splitn(7, ' ').collect();
    assert_eq!(f.len(), 7, "{m}");
    assert_eq!(
        (f[4], f[5]),
        ("-", "-"),
        "no MSGID and no structured data: {m}"
    );
    (
        pri.parse().unwrap(),
        chrono::DateTime::parse_from_rfc3339(f[0]).unwrap_or_else(|e| panic!("{e}: {m}")),
        f[1].to_string(),
        f[2].to_string(),
        f[3].parse().unwrap(),
        f[6].to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_gets_one_rfc5424_message_per_line_with_facility_and_severity() {
    let dir = TempDir::new("raftlb-syslog");
    let path = dir.path("log.sock");
    let syslog = Syslog::bind(&path);
    let mut backend = Backend::start("s").await;
    let log = format!(
        "target = \"syslog\"\naddress = \"{}\"\nfacility = \"local3\"\ntag = \"lb-test\"",
        path.display()
    );
    let n = start(dir, &log, backend.addr).await;

    assert_eq!(which(n.fe).await, "s");
    let tcplog = syslog.first("raftlb::tcplog").await;
    let (pri, ts, host, app, pid, msg) = rfc5424(&tcplog);
    // local3 (19) × 8 + informational (6).
    assert_eq!(pri, 19 * 8 + 6, "{tcplog}");
    let age = chrono::Utc::now().signed_duration_since(ts);
    assert!(age.num_seconds().abs() < 60, "{ts}");
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(host, hostname.trim());
    assert_eq!((app.as_str(), pid), ("lb-test", n.proc.pid() as u32));
    assert!(msg.contains(" fe be/s "), "HAProxy's tcplog fields: {msg}");
    assert!(!msg.ends_with('\n'), "{msg:?}");

    // The server goes down: a warning, severity 4.
    backend.stop().await;
    let down = syslog.first("is DOWN").await;
    assert_eq!(rfc5424(&down).0, 19 * 8 + 4, "{down}");
    // Nothing of it on stderr.
    let out = n.proc.output();
    assert!(!out.contains("raftlb::tcplog"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_syslog_socket_lines_go_to_stderr() {
    let dir = TempDir::new("raftlb-syslog-none");
    let missing = dir.path("no-such.sock");
    let backend = Backend::start("s").await;
    let log = format!("target = \"syslog\"\naddress = \"{}\"", missing.display());
    let n = start(dir, &log, backend.addr).await;
    assert_eq!(which(n.fe).await, "s");
    wait_until("the tcplog line on stderr", DEADLINE, || async {
        n.proc.output().contains("raftlb::tcplog")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_carry_level_target_and_fields() {
    let dir = TempDir::new("raftlb-json-log");
    let backend = Backend::start("s").await;
    let n = start(dir, "format = \"json\"", backend.addr).await;
    assert_eq!(which(n.fe).await, "s");
    let tcplog = || {
        n.proc
            .output()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["target"] == "raftlb::tcplog")
    };
    wait_until("the tcplog line as JSON", DEADLINE, || async {
        tcplog().is_some()
    })
    .await;
    let v = tcplog().unwrap();
    assert_eq!(v["level"], "INFO", "{v}");
    assert_eq!(v["fields"]["frontend"], "fe", "{v}");
    assert_eq!(v["fields"]["server"], "s", "{v}");
    assert!(v["timestamp"].is_string(), "{v}");
    // No log line in text form (the CLI's own words, such as "node
    // running", are no log lines).
    let out = n.proc.output();
    for level in [" INFO ", " WARN ", " ERROR "] {
        assert!(!out.contains(level), "{out}");
    }
}

#[test]
fn a_facility_syslog_does_not_know_is_refused_by_name() {
    let dir = TempDir::new("raftlb-log-check");
    let file = dir.path("node.toml");
    std::fs::write(
        &file,
        "id = 1\nname = \"t\"\ndata_dir = \"/tmp/x\"\n[log]\ntarget = \"syslog\"\nfacility = \"local9\"\n",
    )
    .unwrap();
    let out = raftlb().args(["check", "-c"]).arg(&file).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("log.facility")
            && err.contains("\"local9\" is no syslog facility")
            && err.contains("local7"),
        "{err}"
    );
}
