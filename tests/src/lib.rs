//! Test support for raftlb's integration tests: small backends that say who
//! they are, readiness polls with deadlines, and child processes owned by PID
//! that are killed on drop (even when the test panics), and the network
//! namespace lab ([`lab`]).

pub mod failover;
pub mod house;
pub mod lab;
pub mod probe;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinSet;

/// A keep-alive HTTP/1.1 server on loopback, for the L7 tests that need
/// one answer only: every request (a head, no body) gets `200` with the
/// body `body(n)`, `n` the number of its connection from 1. Returns its
/// address and how many connections it accepted; it serves until the test's
/// runtime ends.
pub async fn http_server(
    body: fn(usize) -> String,
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let conns = std::sync::Arc::new(AtomicUsize::new(0));
    let c = conns.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let n = c.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::spawn(async move {
                let (r, mut w) = s.into_split();
                let mut r = BufReader::new(r);
                loop {
                    let mut line = String::new();
                    match r.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) if line == "\r\n" => {
                            let b = body(n);
                            let reply = format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{b}",
                                b.len()
                            );
                            if w.write_all(reply.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                        Ok(_) => {}
                    }
                }
            });
        }
    });
    (addr, conns)
}

/// A TCP backend on loopback. On each connection it first writes its name
/// and a newline, then echoes every byte; when the client half-closes it
/// writes `bye\n` and closes. Stopping it closes the listener and every
/// connection, like a killed server process.
pub struct Backend {
    /// Its name (the first line it sends).
    pub name: String,
    /// Its address.
    pub addr: SocketAddr,
    tasks: Option<JoinSet<()>>,
}

impl Backend {
    /// Starts a backend on a free loopback port.
    pub async fn start(name: &str) -> Backend {
        Self::start_on(name, "127.0.0.1:0".parse().unwrap()).await
    }

    /// Starts a backend on `addr` (to bring a stopped one back).
    pub async fn start_on(name: &str, addr: SocketAddr) -> Backend {
        let listener = TcpListener::bind(addr).await.expect("bind backend");
        Self::on_listener(name, listener)
    }

    /// Starts a backend on a listener the caller bound (e.g. in a lab
    /// namespace).
    pub fn on_listener(name: &str, listener: TcpListener) -> Backend {
        let addr = listener.local_addr().unwrap();
        let mut tasks = JoinSet::new();
        let (conn_tx, mut conn_rx) = tokio::sync::mpsc::unbounded_channel::<TcpStream>();
        let n = name.to_string();
        tasks.spawn(async move {
            loop {
                if let Ok((s, _)) = listener.accept().await {
                    if conn_tx.send(s).is_err() {
                        return;
                    }
                }
            }
        });
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            while let Some(s) = conn_rx.recv().await {
                conns.spawn(serve(s, n.clone()));
            }
        });
        Backend {
            name: name.to_string(),
            addr,
            tasks: Some(tasks),
        }
    }

    /// Stops it: closes the listener and every open connection. Returns once
    /// the listener is closed, so a connect that follows is refused (not
    /// queued on a listener about to close, then reset).
    pub async fn stop(&mut self) {
        if let Some(mut tasks) = self.tasks.take() {
            tasks.shutdown().await;
        }
    }
}

async fn serve(mut s: TcpStream, name: String) {
    if s.write_all(format!("{name}\n").as_bytes()).await.is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) => {
                let _ = s.write_all(b"bye\n").await;
                return;
            }
            Ok(n) => {
                if s.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// A client connection that has read the greeting of the backend behind it.
pub struct Conn {
    /// Which backend answered.
    pub server: String,
    /// The stream, after the greeting.
    pub stream: BufReader<TcpStream>,
}

impl Conn {
    /// Sends `msg` and reads the same number of bytes back.
    pub async fn echo(&mut self, msg: &str) -> std::io::Result<String> {
        self.stream.get_mut().write_all(msg.as_bytes()).await?;
        let mut back = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(5), self.stream.read_exact(&mut back))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        Ok(String::from_utf8_lossy(&back).into_owned())
    }

    /// Whether the proxy has closed the connection: reads until EOF or an
    /// error within `within`; false if it is still open then.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let mut buf = [0u8; 256];
        let read = async {
            loop {
                match self.stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(within, read).await.is_ok()
    }
}

/// Connects through `addr` and reads the backend's greeting.
pub async fn connect(addr: SocketAddr) -> std::io::Result<Conn> {
    connect_from(None, addr).await
}

/// Like [`connect`], from a chosen source address (e.g. `127.0.0.7`).
pub async fn connect_from(
    src: Option<std::net::IpAddr>,
    addr: SocketAddr,
) -> std::io::Result<Conn> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = src {
        sock.bind(SocketAddr::new(ip, 0))?;
    }
    let s = tokio::time::timeout(Duration::from_secs(5), sock.connect(addr))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    greeting(s).await
}

/// Reads the greeting of the backend behind a connected stream.
pub async fn greeting(s: TcpStream) -> std::io::Result<Conn> {
    let mut stream = BufReader::new(s);
    let mut line = String::new();
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read_line(&mut line))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "closed before a greeting",
        ));
    }
    Ok(Conn {
        server: line.trim_end().to_string(),
        stream,
    })
}

/// Which backend serves a new connection through `addr` (the connection is closed).
pub async fn which(addr: SocketAddr) -> String {
    connect(addr)
        .await
        .expect("connect through the proxy")
        .server
}

/// Polls `cond` every 10 ms until it holds; panics with `what` after `deadline`.
pub async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if cond().await {
            return;
        }
        if tokio::time::Instant::now() > end {
            panic!("timed out after {deadline:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A port that was free a moment ago (for configs of child processes and
/// nodes that must come back on the same address).
///
/// It is taken below the kernel's ephemeral range: a port from that range
/// (what binding port 0 gives) can be taken, between this call and the
/// test's bind, by any outbound connection on the machine, such as one
/// node dialling another (seen in CI: "Address already in use" on a join).
/// Each process starts at its own offset and never hands out a port twice.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (low, high) = (10_000u32, ephemeral_low().clamp(10_001, 65_535));
    let span = high - low;
    let start = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (low + (start + n) % span) as u16;
        let free = |a: &str| std::net::TcpListener::bind((a, port)).is_ok();
        if free("127.0.0.1") && free("0.0.0.0") {
            return port;
        }
    }
    panic!("no free port below {high}");
}

/// The lowest port of the kernel's ephemeral range.
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// A temporary directory removed on drop (kept when `KEEP_TEST_DIRS` is
/// set, to read the logs of a failed run).
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh directory named after `prefix`, the PID and a counter.
    pub fn new(prefix: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    /// A path inside it.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A child process owned by PID: SIGKILLed and reaped on drop.
pub struct Proc {
    /// The child.
    pub child: std::process::Child,
    /// Where its stderr goes.
    pub log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with stdout and stderr into `log`.
    pub fn spawn(mut cmd: std::process::Command, log: &Path) -> Proc {
        let f = std::fs::File::create(log).unwrap();
        cmd.stdout(f.try_clone().unwrap())
            .stderr(f)
            .stdin(std::process::Stdio::null());
        Proc {
            child: cmd.spawn().expect("spawn child"),
            log: log.to_path_buf(),
        }
    }

    /// The child's PID.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `sig` to the child.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on a PID we spawned and have not reaped.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// What the child has logged so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
