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

/// Node `id`'s settings, its data in `dir`, listening for peers on
/// `cluster` if given.
fn node_config(id: u64, dir: &TempDir, cluster: Option<SocketAddr>) -> NodeConfig {
    NodeConfig {
        id,
        name: format!("n{id}"),
        data_dir: dir.path("data"),
        threads: 0,
        reuseport: false,
        cluster: raftlb::nodefile::ClusterSection {
            listen: cluster,
            ..Default::default()
        },
        admin: AdminSection {
            listen: "127.0.0.1:0".parse().unwrap(),
            token_file: None,
        },
        vip: Default::default(),
        log: Default::default(),
    }
}

impl TestNode {
    pub async fn start(lb: &str) -> TestNode {
        TestNode::start_as(lb, Format::Toml).await
    }

    /// A node on a cluster config in `format`.
    pub async fn start_as(lb: &str, format: Format) -> TestNode {
        let dir = TempDir::new("raftlb-it");
        let cfg = node_config(1, &dir, None);
        let source = format!("test lb ({})", format.as_str());
        let node = Node::start(&cfg, lb.to_string(), format, &source)
            .await
            .unwrap_or_else(|e| panic!("node did not start: {e}"));
        TestNode {
            node,
            cfg,
            _dir: dir,
        }
    }

    /// Three nodes in this process, peers on loopback: node 1 forms the
    /// cluster with `lb`, nodes 2 and 3 join it.
    pub async fn three(lb: &str) -> [TestNode; 3] {
        let dirs = [1, 2, 3].map(|_| TempDir::new("raftlb-it"));
        let cfgs: Vec<NodeConfig> = (0..3)
            .map(|i| {
                let addr = SocketAddr::from(([127, 0, 0, 1], raftlb_testkit::free_port()));
                node_config(i as u64 + 1, &dirs[i], Some(addr))
            })
            .collect();
        let initial = Some((lb.to_string(), Format::Toml, "test lb.toml".to_string()));
        let first = Node::open(&cfgs[0], raftlb::node::Startup::Init { initial })
            .await
            .unwrap_or_else(|e| panic!("node 1 did not start: {e}"));
        let peer = first.cluster_addr.expect("node 1 listens").to_string();
        let secret = raftlb_cluster::net::secret::ClusterSecret::from_token(&first.token)
            .expect("the join token");
        let mut nodes = vec![first];
        for cfg in &cfgs[1..] {
            let startup = raftlb::node::Startup::Join {
                peer: peer.clone(),
                secret: secret.clone(),
            };
            let n = Node::open(cfg, startup)
                .await
                .unwrap_or_else(|e| panic!("node {} did not join: {e}", cfg.id));
            nodes.push(n);
        }
        let mut out = Vec::new();
        for ((node, cfg), dir) in nodes.into_iter().zip(cfgs).zip(dirs) {
            let n = TestNode {
                node,
                cfg,
                _dir: dir,
            };
            n.wait_running(1).await;
            out.push(n);
        }
        out.try_into().unwrap_or_else(|_| unreachable!())
    }

    /// Waits until the node runs config `version`.
    pub async fn wait_running(&self, version: u64) {
        let within = std::time::Duration::from_secs(10);
        self.node
            .wait_applied(version, within)
            .await
            .unwrap_or_else(|e| panic!("node {}: {e}", self.cfg.id));
    }

    /// The node's id.
    pub fn id(&self) -> u64 {
        self.cfg.id
    }

    /// The node's data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.cfg.data_dir
    }

    /// The node's admin token, for writes to its admin API.
    pub fn admin_token(&self) -> raftlb::admin::AdminToken {
        raftlb::admin::AdminToken::load(&self.cfg.data_dir).expect("the node's admin token")
    }

    /// Stops the node gracefully, but loses the stick tables it saved (as
    /// a `kill -9` would: it did not save them), then starts it again.
    pub async fn restart_without_saved_tables(self) -> TestNode {
        self.node.shutdown(std::time::Duration::from_secs(1)).await;
        let file = self.cfg.data_dir.join(raftlb::stick::saved::FILE);
        std::fs::remove_file(&file).expect("the saved tables");
        self.start_again().await
    }

    /// Stops the node gracefully (as SIGTERM does) and starts it again from
    /// its data directory (its listeners on new ports).
    pub async fn restart(self) -> TestNode {
        self.node.shutdown(std::time::Duration::from_secs(1)).await;
        self.start_again().await
    }

    /// Stops the node, without saving anything or letting it say goodbye.
    pub async fn stop(self) -> StoppedNode {
        self.node.cluster.shutdown().await;
        let TestNode { node, cfg, _dir } = self;
        node.close().await;
        StoppedNode { cfg, _dir }
    }

    async fn start_again(self) -> TestNode {
        let TestNode { node, cfg, _dir } = self;
        node.close().await;
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

/// A node stopped, its data directory kept.
pub struct StoppedNode {
    cfg: NodeConfig,
    _dir: TempDir,
}

impl StoppedNode {
    /// Starts it again from its data directory.
    pub async fn start(self) -> TestNode {
        let StoppedNode { cfg, _dir } = self;
        let node = Node::open(&cfg, raftlb::node::Startup::Resume { initial: None })
            .await
            .unwrap_or_else(|e| panic!("node did not start again: {e}"));
        TestNode { node, cfg, _dir }
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

/// Stick-table tests' helpers: servers, clients of their own addresses,
/// and the tables as the admin API shows them.
pub mod sticky {
    use super::TestNode;
    use raftlb_testkit::{connect_from, Backend};
    use serde_json::Value;
    use std::collections::BTreeMap;
    use std::net::IpAddr;

    pub const TABLE: &str =
        "stick_table = { type = \"ip\", size = \"1k\", expire = \"10m\" }\nstick_on = \"src\"";

    pub fn srv(b: &Backend, opts: &str) -> String {
        format!(
            "{{ name = \"{}\", address = \"{}\" {opts} }},",
            b.name, b.addr
        )
    }

    pub fn client(i: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, 10 + i])
    }

    pub async fn via(n: &TestNode, from: IpAddr) -> String {
        connect_from(Some(from), n.addr("fe"))
            .await
            .expect("connect through the proxy")
            .server
    }

    /// `GET path` on the node's admin API, as JSON.
    pub async fn admin(n: &TestNode, path: &str) -> (u16, String) {
        match raftlb::admin::get(n.node.admin_addr, path).await {
            Ok(body) => (200, body),
            Err(raftlb::admin::ClientError::Refused { status, message }) => (status, message),
            Err(e) => panic!("admin API: {e}"),
        }
    }

    /// The table's entries as key -> "backend/server".
    pub async fn entries(n: &TestNode, table: &str) -> BTreeMap<String, String> {
        let (code, body) = admin(n, &format!("/tables?name={table}")).await;
        assert_eq!(code, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        v[0]["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let server = format!(
                    "{}/{}",
                    e["backend"].as_str().unwrap(),
                    e["server"].as_str().unwrap()
                );
                (e["key"].as_str().unwrap().to_string(), server)
            })
            .collect()
    }
}
