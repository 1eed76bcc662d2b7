//! A cluster of real `raftlb` processes in the network-namespace lab, shared
//! by the lab tests: one namespace per node (.1–.9), backend (.200+) and
//! client (.100).

#![allow(dead_code)] // each test binary uses its own part

pub mod holders;
pub mod vip;

use raftlb_testkit::lab::{Host, Lab};
use raftlb_testkit::probe::{Expect, Prober};
use raftlb_testkit::{wait_until, Backend, Proc, TempDir};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_raftlb");
pub const DEADLINE: Duration = Duration::from_secs(20);
pub const FRONT: u16 = 8080;
pub const RAFT: u16 = 7000;

/// One lab cluster: nodes at .1–.9, backends at .200+, a client at .100.
pub struct World {
    pub lab: Lab,
    pub dir: TempDir,
    pub nodes: Vec<Host>,
    pub procs: Vec<Option<Proc>>,
    pub client: Host,
    pub backend_hosts: Vec<Host>,
    _backends: Vec<Backend>,
    pub token: String,
    /// More node-file text per node id (appended to the generated file).
    pub extra: std::collections::BTreeMap<u64, String>,
}

pub fn lb_doc(servers: &[(&str, &Host)]) -> String {
    let list: Vec<String> = servers
        .iter()
        .map(|(name, h)| format!("{{ name = \"{name}\", address = \"{}\" }}", h.addr(9000)))
        .collect();
    format!(
        "[frontends.fe]\nbind = \"0.0.0.0:{FRONT}\"\ndefault_backend = \"web\"\n\n[backends.web]\nservers = [ {} ]\n",
        list.join(", ")
    )
}

impl World {
    /// A lab with `n` node hosts and backends `names` (not yet running raftlb).
    pub fn new(n: u8, names: &[&str]) -> World {
        let mut lab = Lab::new();
        let nodes: Vec<Host> = (1..=n).map(|i| lab.host(&format!("n{i}"), i)).collect();
        let client = lab.host("client", 100);
        let backend_hosts: Vec<Host> = names
            .iter()
            .enumerate()
            .map(|(i, name)| lab.host(name, 200 + i as u8))
            .collect();
        let backends = names
            .iter()
            .zip(&backend_hosts)
            .map(|(name, h)| lab.backend(h, name, 9000))
            .collect();
        World {
            lab,
            dir: TempDir::new("raftlb-cluster"),
            procs: (0..=n).map(|_| None).collect(),
            nodes,
            client,
            backend_hosts,
            _backends: backends,
            token: String::new(),
            extra: Default::default(),
        }
    }

    pub fn host(&self, id: u64) -> &Host {
        &self.nodes[id as usize - 1]
    }

    /// The `index`th backend's host.
    pub fn backend_host(&self, index: usize) -> Host {
        self.backend_hosts[index].clone()
    }

    pub fn node_file(&self, id: u64) -> PathBuf {
        let p = self.dir.path(&format!("n{id}.toml"));
        std::fs::write(
            &p,
            format!(
                "id = {id}\nname = \"n{id}\"\ndata_dir = \"{}\"\n[cluster]\nlisten = \"{}\"\n[log]\nlevel = \"info,openraft=warn\"\n",
                self.dir.path(&format!("data{id}")).display(),
                self.host(id).addr(RAFT)
            ) + self.extra.get(&id).map_or("", |e| e.as_str()),
        )
        .unwrap();
        p
    }

    pub fn spawn(&mut self, id: u64, args: &[&str]) {
        let node = self.node_file(id);
        let mut c = self.lab.command(self.host(id), Path::new(BIN));
        c.env_remove("RAFTLB_ADMIN").env_remove("RAFTLB_LOG");
        c.args(args).arg("--node").arg(&node);
        let log = self
            .dir
            .path(&format!("n{id}.{}.log", self.procs_started(id)));
        self.procs[id as usize] = Some(Proc::spawn(c, &log));
    }

    /// SIGKILL to node `id`'s process (it stays registered as stopped).
    pub fn kill(&mut self, id: u64) {
        if let Some(p) = self.procs[id as usize].take() {
            p.signal(libc::SIGKILL);
        }
    }

    /// SIGTERM to node `id`'s process, then waits until it has exited (a
    /// graceful stop: it saves its stick tables).
    pub async fn stop(&mut self, id: u64) {
        let Some(mut p) = self.procs[id as usize].take() else {
            return;
        };
        p.signal(libc::SIGTERM);
        let end = Instant::now() + DEADLINE;
        while p.child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < end,
                "node {id} did not stop:\n{}",
                p.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn procs_started(&self, id: u64) -> usize {
        (0..100)
            .find(|k| !self.dir.path(&format!("n{id}.{k}.log")).exists())
            .unwrap()
    }

    pub fn output(&self, id: u64) -> String {
        self.procs[id as usize]
            .as_ref()
            .map(|p| p.output())
            .unwrap_or_default()
    }

    /// Runs a client command against node `id`'s admin API (inside its
    /// namespace, on loopback), with its node file (for the admin token).
    pub fn cli(&self, id: u64, args: &[&str]) -> std::process::Output {
        let mut c = self.lab.command(self.host(id), Path::new(BIN));
        c.env_remove("RAFTLB_ADMIN").env_remove("RAFTLB_LOG");
        let node = self.dir.path(&format!("n{id}.toml"));
        c.args(args).arg("--node").arg(node).output().unwrap()
    }

    pub fn status(&self, id: u64) -> Option<Value> {
        let out = self.cli(id, &["cluster", "status", "--json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    /// `cluster init` on node 1 with `lb`, then waits for its token.
    pub async fn init(&mut self, lb: &str) {
        let lb_path = self.dir.path("lb.toml");
        std::fs::write(&lb_path, lb).unwrap();
        let lb_arg = lb_path.display().to_string();
        self.spawn(1, &["cluster", "init", "--lb", &lb_arg]);
        wait_until("node 1 prints its join token", DEADLINE, || async {
            self.output(1).contains("--token ")
        })
        .await;
        let out = self.output(1);
        self.token = out
            .split("--token ")
            .nth(1)
            .and_then(|t| t.split_whitespace().next())
            .unwrap()
            .to_string();
    }

    /// `cluster join` of node `id` through node 1; waits until it sees
    /// `voters` voters.
    pub async fn join(&mut self, id: u64, voters: usize) {
        let peer = self.host(1).addr(RAFT).to_string();
        let token = self.token.clone();
        self.spawn(id, &["cluster", "join", "--peer", &peer, "--token", &token]);
        self.wait_voters(id, voters).await;
    }

    pub async fn wait_voters(&self, on: u64, count: usize) {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(s) = self.status(on) {
                let voters = s["members"]
                    .as_array()
                    .map(|m| m.iter().filter(|m| m["role"] == "voter").count())
                    .unwrap_or(0);
                if voters == count {
                    return;
                }
            }
            assert!(
                Instant::now() < end,
                "node {on} does not see {count} voters:\n{}",
                self.output(on)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn three(names: &[&str], lb: impl Fn(&World) -> String) -> World {
        let mut w = World::new(3, names);
        let doc = lb(&w);
        w.init(&doc).await;
        w.join(2, 2).await;
        w.join(3, 3).await;
        w
    }

    /// The leader, as a majority of `among` reports it.
    pub async fn leader(&self, among: &[u64]) -> u64 {
        let end = Instant::now() + DEADLINE;
        loop {
            for &id in among {
                if let Some(s) = self.status(id) {
                    if s["role"] == "leader" {
                        return id;
                    }
                }
            }
            assert!(Instant::now() < end, "no leader among {among:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Which backend a new connection through node `id`'s frontend reaches.
    pub async fn through(&self, id: u64) -> Option<String> {
        self.lab
            .connect(&self.client, self.host(id).addr(FRONT))
            .await
            .ok()
            .map(|c| c.server)
    }

    pub async fn wait_serving(&self, id: u64, server: &str) {
        let end = Instant::now() + DEADLINE;
        while self.through(id).await.as_deref() != Some(server) {
            assert!(
                Instant::now() < end,
                "node {id} does not route to {server}:\n{}",
                self.output(id)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn apply(&self, on: u64, doc: &str, name: &str) -> std::process::Output {
        let p = self.dir.path(name);
        std::fs::write(&p, doc).unwrap();
        self.cli(on, &["config", "apply", &p.display().to_string()])
    }

    /// A client in its own namespace that starts a connection to `vip`'s
    /// frontend every 10 ms and records when each one got the backend's
    /// greeting.
    pub fn vip_prober(&self, vip: std::net::Ipv4Addr) -> Prober {
        Prober::start(
            Some(PathBuf::from(format!("/var/run/netns/{}", self.client.ns))),
            std::net::SocketAddr::from((vip, FRONT)),
            Expect::Greeting,
            Duration::from_millis(10),
            Duration::from_millis(500),
        )
    }

    /// `GET path` on node `id`'s admin API (its default address, on the
    /// loopback of its namespace); `None` if it does not answer.
    pub fn admin_get(&self, id: u64, path: &str) -> Option<String> {
        let path = path.to_string();
        self.lab
            .inside(self.host(id), move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let admin = "127.0.0.1:9900".parse().expect("an address");
                Ok(rt.block_on(raftlb::admin::get(admin, &path)).ok())
            })
            .ok()
            .flatten()
    }

    pub fn config_version(&self, id: u64) -> u64 {
        self.status(id)
            .map_or(0, |s| s["config_version"].as_u64().unwrap_or(0))
    }
}
