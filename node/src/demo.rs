//! `raftlb demo`: one node on loopback in front of two small HTTP backends
//! started in the same process, on the embedded default config.

use crate::node::Node;
use crate::nodefile::{AdminSection, NodeConfig};
use raftlb_proto::Format;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The demo's cluster config; `{listen}`, `{s1}`, `{s2}` are filled in.
pub const DEMO_LB: &str = include_str!("demo.toml");

/// Runs the demo until Ctrl-C.
pub async fn run(listen: SocketAddr, admin: SocketAddr) -> Result<(), crate::node::NodeError> {
    let any: SocketAddr = ([127, 0, 0, 1], 0).into();
    let io = |source| crate::node::NodeError::Listen {
        what: "demo backends",
        addr: any,
        source,
    };
    let b1 = TcpListener::bind(any).await.map_err(io)?;
    let b2 = TcpListener::bind(any).await.map_err(io)?;
    let (a1, a2) = (b1.local_addr().map_err(io)?, b2.local_addr().map_err(io)?);
    tokio::spawn(http_backend(b1, "demo-1"));
    tokio::spawn(http_backend(b2, "demo-2"));
    let doc = DEMO_LB
        .replace("{listen}", &listen.to_string())
        .replace("{s1}", &a1.to_string())
        .replace("{s2}", &a2.to_string());
    let data_dir = std::env::temp_dir().join(format!("raftlb-demo-{}", std::process::id()));
    let node = NodeConfig {
        id: 1,
        name: "demo".into(),
        data_dir: data_dir.clone(),
        threads: 0,
        cluster: Default::default(),
        admin: AdminSection { listen: admin },
        vip: Default::default(),
        log: Default::default(),
    };
    let n = Node::start(&node, doc, Format::Toml, "demo config").await?;
    println!(
        "\nraftlb demo is running: frontend {listen} -> backends demo-1 ({a1}) and demo-2 ({a2}), roundrobin, TCP checks every 2s.\n\n\
         Try:\n  curl -s http://{listen}/         # run it a few times: demo-1, demo-2, demo-1 ...\n  \
         nc {} {}                  # a raw TCP session through the proxy\n  \
         raftlb status --admin {}   # servers, health, connections\n\n\
         Ctrl-C stops it.\n",
        listen.ip(),
        listen.port(),
        n.admin_addr
    );
    let _ = tokio::signal::ctrl_c().await;
    n.shutdown(Duration::from_secs(2)).await;
    let _ = std::fs::remove_dir_all(&data_dir);
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
