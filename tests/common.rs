//! Shared by the integration tests: start an in-process node on a config.
#![allow(dead_code)]

use raftlb::node::Node;
use raftlb::nodefile::{AdminSection, NodeConfig};
use raftlb_proto::Format;
use raftlb_testkit::TempDir;
use std::net::SocketAddr;

pub struct TestNode {
    pub node: Node,
    cfg: NodeConfig,
    _dir: TempDir,
}

impl TestNode {
    pub async fn start(lb: &str) -> TestNode {
        let dir = TempDir::new("raftlb-it");
        let cfg = NodeConfig {
            id: 1,
            name: "test".into(),
            data_dir: dir.path("data"),
            threads: 0,
            reuseport: false,
            cluster: Default::default(),
            admin: AdminSection {
                listen: "127.0.0.1:0".parse().unwrap(),
            },
            vip: Default::default(),
            log: Default::default(),
        };
        let node = Node::start(&cfg, lb.to_string(), Format::Toml, "test lb.toml")
            .await
            .unwrap_or_else(|e| panic!("node did not start: {e}"));
        TestNode {
            node,
            cfg,
            _dir: dir,
        }
    }

    /// Stops the node gracefully (as SIGTERM does) and starts it again from
    /// its data directory (its listeners on new ports).
    pub async fn restart(self) -> TestNode {
        self.node.shutdown(std::time::Duration::from_secs(1)).await;
        let TestNode { node, cfg, _dir } = self;
        drop(node);
        let node = Node::open(&cfg, raftlb::node::Startup::Resume { initial: None })
            .await
            .unwrap_or_else(|e| panic!("node did not start again: {e}"));
        TestNode { node, cfg, _dir }
    }

    /// The first address frontend `fe` is bound to.
    pub fn addr(&self, fe: &str) -> SocketAddr {
        self.node.runtime.bound_addrs(fe)[0]
    }

    /// Which server a new connection reaches. Returns once the proxy has
    /// seen that connection close, so the next one meets settled counts.
    pub async fn which(&self, fe: &str) -> String {
        let rt = &self.node.runtime;
        let before = rt.active_connections();
        let s = raftlb_testkit::which(self.addr(fe)).await;
        let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while rt.active_connections() > before {
            assert!(
                std::time::Instant::now() < end,
                "the proxy did not see the close"
            );
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        s
    }

    /// The servers `count` new connections reach, one after the other.
    pub async fn sequence(&self, fe: &str, count: usize) -> Vec<String> {
        let mut seen = Vec::with_capacity(count);
        for _ in 0..count {
            seen.push(self.which(fe).await);
        }
        seen
    }

    pub fn is_up(&self, be: &str, srv: &str) -> bool {
        self.node
            .runtime
            .server(be, srv)
            .expect("server exists")
            .is_up()
    }
}

/// A TCP frontend `fe` on a free port in front of backend `be` with `servers`
/// (inline tables) and `extra` backend keys.
pub fn lb(servers: &str, extra: &str) -> String {
    format!(
        r#"
[defaults]
mode = "tcp"
timeout = {{ connect = "2s", client = "30s", server = "30s" }}

[frontends.fe]
bind = ["127.0.0.1:0"]
default_backend = "be"

[backends.be]
{extra}
servers = [
{servers}
]
"#
    )
}
