//! `raftlb demo`: a three-node cluster on loopback — three `raftlb`
//! processes (this binary: `cluster init` and two `cluster join`s) in front
//! of two small HTTP backends served by the demo process itself, on the
//! embedded default config. The nodes share the frontend's port (node files
//! with `reuseport = true`), so it keeps answering when any one of them dies.

use crate::handle::NodeError;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The demo's cluster config; `{listen}`, `{s1}`, `{s2}` are filled in.
pub const DEMO_LB: &str = include_str!("demo.toml");

/// The demo's node processes, killed (by PID) when it ends.
struct Nodes(Vec<Child>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn node_file(dir: &Path, id: u32, admin: SocketAddr) -> std::io::Result<PathBuf> {
    let path = dir.join(format!("node{id}.toml"));
    std::fs::write(
        &path,
        format!(
            "id = {id}\nname = \"demo{id}\"\nreuseport = true\ndata_dir = \"{}\"\n[cluster]\nlisten = \"127.0.0.1:{}\"\n[admin]\nlisten = \"{admin}\"\n[log]\nlevel = \"warn,raftlb::health=warn\"\n",
            dir.join(format!("data{id}")).display(),
            7100 + id,
        ),
    )?;
    Ok(path)
}

async fn wait_token(log: &Path, within: Duration) -> Option<String> {
    let end = Instant::now() + within;
    while Instant::now() < end {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(t) = text
            .split("--token ")
            .nth(1)
            .and_then(|t| t.split_whitespace().next())
        {
            return Some(t.to_string());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

async fn wait_admin(admin: SocketAddr, within: Duration) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if crate::admin::get(admin, "/health").await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// The two demo backends, on free loopback ports.
async fn start_backends() -> Result<(SocketAddr, SocketAddr), NodeError> {
    let any: SocketAddr = ([127, 0, 0, 1], 0).into();
    let io = |source| NodeError::Listen {
        what: "demo backends",
        addr: any,
        source,
    };
    let b1 = TcpListener::bind(any).await.map_err(io)?;
    let b2 = TcpListener::bind(any).await.map_err(io)?;
    let (a1, a2) = (b1.local_addr().map_err(io)?, b2.local_addr().map_err(io)?);
    tokio::spawn(http_backend(b1, "demo-1"));
    tokio::spawn(http_backend(b2, "demo-2"));
    Ok((a1, a2))
}

/// Starts node `id`: `cluster init` on `lb` for node 1, `cluster join` with
/// `token` for the others; its output goes to `dir/node{id}.log`, which is
/// returned with the child.
fn spawn_node(
    exe: &Path,
    dir: &Path,
    lb: &Path,
    id: u32,
    admin: SocketAddr,
    token: &str,
) -> std::io::Result<(Child, PathBuf)> {
    let node = node_file(dir, id, admin)?;
    let log = dir.join(format!("node{id}.log"));
    let out = std::fs::File::create(&log)?;
    let mut cmd = Command::new(exe);
    if id == 1 {
        cmd.args(["cluster", "init", "--lb"]).arg(lb);
    } else {
        cmd.args([
            "cluster",
            "join",
            "--peer",
            "127.0.0.1:7101",
            "--token",
            token,
        ]);
    }
    cmd.arg("--node").arg(&node);
    cmd.stdout(out.try_clone()?)
        .stderr(out)
        .stdin(Stdio::null());
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("RAFTLB_")) {
        cmd.env_remove(k);
    }
    Ok((cmd.spawn()?, log))
}

/// Runs the demo until Ctrl-C. `admin` is node 1's admin API; nodes 2 and 3
/// take the next two ports.
pub async fn run(listen: SocketAddr, admin: SocketAddr) -> Result<(), NodeError> {
    // Ctrl-C, or SIGTERM (a supervisor, `kill`), even during start-up: the
    // nodes go with the demo.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a signal handler");
    let (a1, a2) = start_backends().await?;
    let doc = DEMO_LB
        .replace("{listen}", &listen.to_string())
        .replace("{s1}", &a1.to_string())
        .replace("{s2}", &a2.to_string());
    let dir = std::env::temp_dir().join(format!("raftlb-demo-{}", std::process::id()));
    let data = |source| NodeError::DataDir {
        path: dir.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(data)?;
    let lb = dir.join("lb.toml");
    std::fs::write(&lb, &doc).map_err(data)?;
    let exe = std::env::current_exe().map_err(data)?;
    let admins: Vec<SocketAddr> = (0..3)
        .map(|i| SocketAddr::new(admin.ip(), admin.port() + i))
        .collect();
    let mut nodes = Nodes(Vec::new());
    let mut token = String::new();
    for id in 1..=3u32 {
        let admin = admins[id as usize - 1];
        let (child, log) = spawn_node(&exe, &dir, &lb, id, admin, &token).map_err(data)?;
        nodes.0.push(child);
        if id == 1 {
            token = wait_token(&log, Duration::from_secs(15))
                .await
                .ok_or_else(|| {
                    NodeError::State(format!("node 1 did not start; see {}", log.display()))
                })?;
        }
        if !wait_admin(admin, Duration::from_secs(30)).await {
            return Err(NodeError::State(format!(
                "node {id} did not start; see {}",
                log.display()
            )));
        }
    }
    let pids: Vec<u32> = nodes.0.iter().map(Child::id).collect();
    println!(
        "\nraftlb demo: a three-node cluster on loopback.\n\
         frontend {listen} (served by all three nodes) -> demo-1 ({a1}), demo-2 ({a2}), roundrobin.\n\
         nodes: demo1 pid {} admin {}, demo2 pid {} admin {}, demo3 pid {} admin {}; files in {}\n\n\
         Try:\n  \
         curl -s http://{listen}/                               # demo-1 or demo-2: each node balances roundrobin\n  \
         raftlb cluster status --admin {}               # members, leader, term, each node's view\n  \
         raftlb config show --admin {} > my.toml        # edit it, then:\n  \
         raftlb config apply my.toml --admin {} --node {}   # on a follower (writes send its admin token): every node applies it\n  \
         raftlb server drain demo/demo-1 --admin {} --node {}   # every node stops sending it new connections\n  \
         kill -9 <the leader's pid>                                # a new leader within a second; curl still works\n  \
         {} run --node {}   # bring a killed node back from its disk\n\n\
         Ctrl-C (or SIGTERM) stops everything.\n",
        pids[0], admins[0], pids[1], admins[1], pids[2], admins[2], dir.display(),
        admins[0], admins[1], admins[1], dir.join("node2.toml").display(),
        admins[2], dir.join("node3.toml").display(),
        exe.display(), dir.join("node1.toml").display(),
    );
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    drop(nodes);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A tiny HTTP/1.1 server that answers every request with its own name.
pub async fn http_backend(listener: TcpListener, name: &'static str) {
    loop {
        let Ok((s, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        tokio::spawn(answer(s, name));
    }
}

async fn answer(mut s: TcpStream, name: &'static str) {
    let mut buf = vec![0u8; 4096];
    let mut have = 0;
    loop {
        while !buf[..have].windows(4).any(|w| w == b"\r\n\r\n") {
            if have == buf.len() {
                return;
            }
            match s.read(&mut buf[have..]).await {
                Ok(0) | Err(_) => return,
                Ok(n) => have += n,
            }
        }
        let end = buf[..have]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(have, |p| p + 4);
        let close = String::from_utf8_lossy(&buf[..end])
            .to_ascii_lowercase()
            .contains("connection: close");
        let body = format!("hello from {name}\n");
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n{body}",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        if s.write_all(resp.as_bytes()).await.is_err() || close {
            return;
        }
        buf.copy_within(end..have, 0);
        have -= end;
    }
}
