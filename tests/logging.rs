//! `[log]` of the node file: lines to syslog as RFC 5424 messages (to a
//! unix datagram socket this test owns, as `/dev/log` would be), with the
//! facility and each event's severity; to stderr when the socket is not
//! there; JSON lines; entries in the journal's native protocol (the node in
//! a mount namespace of its own whose `/run/systemd/journal/socket` is the
//! test's); and a facility syslog does not know refused.

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
    start_with(raftlb(), dir, log, server).await
}

/// As [`start`], with `c` (the binary, or a wrapper that runs it) as the
/// command `run …` is appended to.
async fn start_with(mut c: Command, dir: TempDir, log: &str, server: SocketAddr) -> Node {
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

/// A datagram socket of the test's (a syslog's, a journal's): a thread
/// reads every message into `msgs` until this is dropped.
struct Syslog {
    msgs: Arc<Mutex<Vec<Vec<u8>>>>,
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
                    m.lock().unwrap().push(buf[..n].to_vec());
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
            let msgs = self.msgs.lock().unwrap();
            msgs.iter()
                .map(|m| String::from_utf8_lossy(m).into_owned())
                .find(|m| m.contains(what))
        };
        wait_until(&format!("a message with {what:?}"), DEADLINE, || async {
            found().is_some()
        })
        .await;
        found().unwrap()
    }

    /// The first journal entry with the field `key` = `value`, waiting
    /// for it: its fields.
    async fn entry(&self, key: &str, value: &str) -> Vec<(String, String)> {
        let found = || {
            let msgs = self.msgs.lock().unwrap();
            msgs.iter()
                .map(|m| journal_fields(m))
                .find(|f| f.iter().any(|(k, v)| k == key && v == value))
        };
        wait_until(
            &format!("a journal entry with {key}={value}"),
            DEADLINE,
            || async { found().is_some() },
        )
        .await;
        found().unwrap()
    }
}

/// The fields of one datagram of the journal's native protocol: `KEY=value`
/// lines, or `KEY`, a newline, the value's length (64-bit little-endian),
/// the value and a newline.
fn journal_fields(mut m: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while !m.is_empty() {
        let Some(end) = m.iter().position(|&b| b == b'=' || b == b'\n') else {
            break;
        };
        let key = String::from_utf8_lossy(&m[..end]).into_owned();
        if m[end] == b'=' {
            let rest = &m[end + 1..];
            let nl = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            out.push((key, String::from_utf8_lossy(&rest[..nl]).into_owned()));
            m = rest.get(nl + 1..).unwrap_or_default();
        } else {
            let rest = &m[end + 1..];
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            out.push((key, String::from_utf8_lossy(&rest[8..8 + len]).into_owned()));
            m = rest.get(8 + len + 1..).unwrap_or_default();
        }
    }
    out
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journald_gets_one_entry_per_line_with_its_fields() {
    let dir = TempDir::new("raftlb-journald");
    let journal = dir.path("journal");
    std::fs::create_dir_all(&journal).unwrap();
    let socket = Syslog::bind(&journal.join("socket"));
    let backend = Backend::start("s").await;
    // The node sees the test's directory as /run/systemd/journal, in a
    // mount namespace of its own (the machine's /run stays as it is).
    let mut c = Command::new("unshare");
    c.env_remove("RAFTLB_ADMIN").env_remove("RAFTLB_LOG");
    c.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        "mount -t tmpfs none /run && mkdir -p /run/systemd/journal && \
         mount --bind \"$1\" /run/systemd/journal && shift && exec \"$@\"",
        "sh",
    ])
    .arg(&journal)
    .arg(BIN);
    let n = start_with(
        c,
        dir,
        "target = \"journald\"\ntag = \"lb-journal\"",
        backend.addr,
    )
    .await;
    assert_eq!(which(n.fe).await, "s");
    let entry = socket.entry("TARGET", "raftlb::tcplog").await;
    let field = |k: &str| {
        entry
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    // tracing-journald's levels: info is the journal's notice (5).
    assert_eq!(field("PRIORITY"), Some("5"), "{entry:?}");
    assert_eq!(field("SYSLOG_IDENTIFIER"), Some("lb-journal"), "{entry:?}");
    assert_eq!(field("F_FRONTEND"), Some("fe"), "{entry:?}");
    assert!(
        field("MESSAGE").is_some_and(|m| m.contains(" fe be/s ")),
        "{entry:?}"
    );
    let out = n.proc.output();
    assert!(!out.contains("raftlb::tcplog"), "{out}");
}
