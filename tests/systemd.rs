//! `raftlb run` as a `Type=notify` systemd service sees it, without
//! systemd: the test binds the notification socket systemd would
//! (`$NOTIFY_SOCKET`) and asks for a watchdog (`$WATCHDOG_USEC`). `READY=1`
//! comes only once the node serves its frontend, `WATCHDOG=1` keeps coming,
//! and SIGTERM brings `STOPPING=1` before the process exits.

use raftlb_testkit::{connect, free_port, Backend, Proc, TempDir};
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_raftlb");
const DEADLINE: Duration = Duration::from_secs(15);

/// The next notification on `sock` that starts with `prefix` (others, such
/// as watchdog pings, are skipped), within the deadline.
fn next(sock: &UnixDatagram, prefix: &str) -> Option<String> {
    let end = Instant::now() + DEADLINE;
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).to_string();
                if msg.starts_with(prefix) {
                    return Some(msg);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("notification socket: {e}"),
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_only_once_serving_a_watchdog_while_running_and_stopping_on_sigterm() {
    let dir = TempDir::new("raftlb-systemd");
    let backend = Backend::start("a").await;
    let fe: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin = free_port();
    std::fs::write(
        dir.path("node.toml"),
        format!(
            "id = 1\nname = \"t\"\ndata_dir = \"{}\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n",
            dir.path("data").display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path("lb.toml"),
        format!(
            "[defaults]\nmode = \"tcp\"\ntimeout = {{ connect = \"2s\", client = \"30s\", server = \"30s\" }}\n\
             [frontends.fe]\nbind = [\"{fe}\"]\ndefault_backend = \"be\"\n\
             [backends.be]\nservers = [{{ name = \"a\", address = \"{}\" }}]\n",
            backend.addr
        ),
    )
    .unwrap();
    let socket = dir.path("notify");
    let sock = UnixDatagram::bind(&socket).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.env_remove("RAFTLB_ADMIN")
        .env_remove("RAFTLB_LOG")
        .env_remove("WATCHDOG_PID")
        .env("NOTIFY_SOCKET", &socket)
        .env("WATCHDOG_USEC", "300000")
        .args(["run", "--node"])
        .arg(dir.path("node.toml"))
        .arg("--lb")
        .arg(dir.path("lb.toml"));
    let proc = Proc::spawn(cmd, &dir.path("raftlb.log"));

    let ready = tokio::task::block_in_place(|| next(&sock, "READY=1"));
    assert!(ready.is_some(), "no READY=1:\n{}", proc.output());
    assert!(ready.unwrap().contains("STATUS=serving"));
    // Ready means serving: the frontend answers at once.
    let c = connect(fe)
        .await
        .expect("the frontend serves once READY=1 is sent");
    assert_eq!(c.server, "a");
    // The watchdog is fed (twice per 300 ms), more than once.
    for _ in 0..3 {
        let ping = tokio::task::block_in_place(|| next(&sock, "WATCHDOG=1"));
        assert!(ping.is_some(), "no watchdog ping:\n{}", proc.output());
    }
    // SIGTERM while a connection is open: STOPPING=1, then the drain (the
    // connection closes meanwhile), and a clean exit. Nothing reads the
    // notifications while the node drains (systemd does, but a full queue
    // must not hold the node up).
    proc.signal(libc::SIGTERM);
    let stopping = tokio::task::block_in_place(|| next(&sock, "STOPPING=1"));
    assert!(stopping.is_some(), "no STOPPING=1:\n{}", proc.output());
    drop(c);
    let mut proc = proc;
    let end = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(s) = proc.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "did not exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status:?}\n{}", proc.output());
}
