//! Real `raftlb` processes in the network-namespace lab (one namespace per
//! node, backend and client): a cluster formed with `cluster init` and two
//! `cluster join`s; config applied on a follower serving on every node;
//! SIGKILL of the leader and a restart from disk; leave and join; a wrong
//! token; a minority that cannot commit; a drain that reaches every node.

use raftlb_testkit::lab::{Host, Lab};
use raftlb_testkit::{wait_until, Backend, Proc, TempDir};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_raftlb");
const DEADLINE: Duration = Duration::from_secs(20);
const FRONT: u16 = 8080;
const RAFT: u16 = 7000;

/// One lab cluster: nodes at .1–.9, backends at .200+, a client at .100.
struct World {
    lab: Lab,
    dir: TempDir,
    nodes: Vec<Host>,
    procs: Vec<Option<Proc>>,
    client: Host,
    backend_hosts: Vec<Host>,
    _backends: Vec<Backend>,
    token: String,
}

fn lb_doc(servers: &[(&str, &Host)]) -> String {
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
    fn new(n: u8, names: &[&str]) -> World {
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
        }
    }

    fn host(&self, id: u64) -> &Host {
        &self.nodes[id as usize - 1]
    }

    /// The `index`th backend's host.
    fn backend_host(&self, index: usize) -> Host {
        self.backend_hosts[index].clone()
    }

    fn node_file(&self, id: u64) -> PathBuf {
        let p = self.dir.path(&format!("n{id}.toml"));
        std::fs::write(
            &p,
            format!(
                "id = {id}\nname = \"n{id}\"\ndata_dir = \"{}\"\n[cluster]\nlisten = \"{}\"\n[log]\nlevel = \"info,openraft=warn\"\n",
                self.dir.path(&format!("data{id}")).display(),
                self.host(id).addr(RAFT)
            ),
        )
        .unwrap();
        p
    }

    fn spawn(&mut self, id: u64, args: &[&str]) {
        let node = self.node_file(id);
        let mut c = self.lab.command(self.host(id), Path::new(BIN));
        c.env_remove("RAFTLB_ADMIN").env_remove("RAFTLB_LOG");
        c.args(args).arg("--node").arg(&node);
        let log = self
            .dir
            .path(&format!("n{id}.{}.log", self.procs_started(id)));
        self.procs[id as usize] = Some(Proc::spawn(c, &log));
    }

    fn procs_started(&self, id: u64) -> usize {
        (0..100)
            .find(|k| !self.dir.path(&format!("n{id}.{k}.log")).exists())
            .unwrap()
    }

    fn output(&self, id: u64) -> String {
        self.procs[id as usize]
            .as_ref()
            .map(|p| p.output())
            .unwrap_or_default()
    }

    /// Runs a client command against node `id`'s admin API (inside its
    /// namespace, on loopback).
    fn cli(&self, id: u64, args: &[&str]) -> std::process::Output {
        let mut c = self.lab.command(self.host(id), Path::new(BIN));
        c.env_remove("RAFTLB_ADMIN").env_remove("RAFTLB_LOG");
        c.args(args).output().unwrap()
    }

    fn status(&self, id: u64) -> Option<Value> {
        let out = self.cli(id, &["cluster", "status", "--json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    /// `cluster init` on node 1 with `lb`, then waits for its token.
    async fn init(&mut self, lb: &str) {
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
    async fn join(&mut self, id: u64, voters: usize) {
        let peer = self.host(1).addr(RAFT).to_string();
        let token = self.token.clone();
        self.spawn(id, &["cluster", "join", "--peer", &peer, "--token", &token]);
        self.wait_voters(id, voters).await;
    }

    async fn wait_voters(&self, on: u64, count: usize) {
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

    async fn three(names: &[&str], lb: impl Fn(&World) -> String) -> World {
        let mut w = World::new(3, names);
        let doc = lb(&w);
        w.init(&doc).await;
        w.join(2, 2).await;
        w.join(3, 3).await;
        w
    }

    /// The leader, as a majority of `among` reports it.
    async fn leader(&self, among: &[u64]) -> u64 {
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
    async fn through(&self, id: u64) -> Option<String> {
        self.lab
            .connect(&self.client, self.host(id).addr(FRONT))
            .await
            .ok()
            .map(|c| c.server)
    }

    async fn wait_serving(&self, id: u64, server: &str) {
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

    fn apply(&self, on: u64, doc: &str, name: &str) -> std::process::Output {
        let p = self.dir.path(name);
        std::fs::write(&p, doc).unwrap();
        self.cli(on, &["config", "apply", &p.display().to_string()])
    }

    fn config_version(&self, id: u64) -> u64 {
        self.status(id)
            .map_or(0, |s| s["config_version"].as_u64().unwrap_or(0))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_applied_on_a_follower_serves_on_every_node_and_a_drain_reaches_all() {
    let w = World::three(&["a", "b1", "b2"], |w| lb_doc(&[("a", &w.backend_host(0))])).await;
    for id in 1..=3 {
        w.wait_serving(id, "a").await;
    }
    let leader = w.leader(&[1, 2, 3]).await;
    let follower = if leader == 3 { 2 } else { 3 };
    let doc = lb_doc(&[("b1", &w.backend_host(1)), ("b2", &w.backend_host(2))]);
    let out = w.apply(follower, &doc, "two.toml");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("config version 2"));
    for id in 1..=3 {
        w.wait_serving(id, "b1").await;
        w.wait_serving(id, "b2").await;
    }
    // A typo is refused with its line, on any node, and nothing changes.
    let out = w.apply(follower, &doc.replace("servers", "servres"), "bad.toml");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:") && err.contains("servres"),
        "{err}"
    );
    assert_eq!(w.config_version(leader), 2);

    // Drain b1 through one node: no node sends it new connections.
    let out = w.cli(follower, &["server", "drain", "web/b1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for id in 1..=3 {
        wait_until("the drain reaches the node", DEADLINE, || async {
            let st = w.cli(id, &["status", "--json"]);
            let v: Value = serde_json::from_slice(&st.stdout).unwrap_or_default();
            v["backends"]["web"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["name"] == "b1" && s["admin"] == "drain"))
        })
        .await;
        for _ in 0..6 {
            assert_eq!(w.through(id).await.as_deref(), Some("b2"), "node {id}");
        }
    }
    let status = w.cli(1, &["cluster", "status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("web/b1") && text.contains("[drain]"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_killed_a_new_one_leads_and_the_killed_node_comes_back_from_disk() {
    let mut w = World::three(&["a", "b"], |w| lb_doc(&[("a", &w.backend_host(0))])).await;
    let old = w.leader(&[1, 2, 3]).await;
    let rest: Vec<u64> = (1..=3).filter(|i| *i != old).collect();
    w.procs[old as usize]
        .as_ref()
        .unwrap()
        .signal(libc::SIGKILL);
    let killed = Instant::now();
    let new = w.leader(&rest).await;
    let took = killed.elapsed();
    eprintln!("new leader {new} after {took:?}");
    assert!(
        took < Duration::from_secs(2),
        "no new leader within 2 s: {took:?}"
    );
    assert_eq!(w.config_version(new), 1, "the config is intact");
    let doc = lb_doc(&[("b", &w.backend_host(1))]);
    let out = w.apply(new, &doc, "b.toml");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Restarted from its disk, without joining again.
    w.procs[old as usize] = None;
    w.spawn(old, &["run"]);
    w.wait_serving(old, "b").await;
    assert_eq!(w.config_version(old), 2);
    w.wait_voters(old, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_shrinks_to_two_and_a_fresh_node_grows_it_back() {
    let mut w = World::new(4, &["a"]);
    let doc = lb_doc(&[("a", &w.backend_host(0))]);
    w.init(&doc).await;
    w.join(2, 2).await;
    w.join(3, 3).await;
    let out = w.cli(1, &["cluster", "leave", "--node-id", "3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    w.wait_voters(1, 2).await;
    // The removed node stops by itself.
    let end = Instant::now() + DEADLINE;
    loop {
        let p = w.procs[3].as_mut().unwrap();
        if let Some(status) = p.child.try_wait().unwrap() {
            assert!(!status.success());
            break;
        }
        assert!(
            Instant::now() < end,
            "node 3 did not stop:\n{}",
            w.output(3)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        w.output(3).contains("removed from the cluster"),
        "{}",
        w.output(3)
    );
    // A fresh node joins: three voters again, serving the config.
    w.join(4, 3).await;
    w.wait_voters(1, 3).await;
    w.wait_serving(4, "a").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_wrong_token_is_refused() {
    let mut w = World::new(2, &["a"]);
    let doc = lb_doc(&[("a", &w.backend_host(0))]);
    w.init(&doc).await;
    let peer = w.host(1).addr(RAFT).to_string();
    let wrong = format!("rlb1-{}", "ab".repeat(32));
    w.spawn(2, &["cluster", "join", "--peer", &peer, "--token", &wrong]);
    let end = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(s) = w.procs[2].as_mut().unwrap().child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < end,
            "the joiner did not give up:\n{}",
            w.output(2)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success());
    assert!(w.output(2).contains("wrong secret"), "{}", w.output(2));
    assert!(w.output(1).contains("refused"), "{}", w.output(1));
    w.wait_voters(1, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_cannot_commit_and_says_so() {
    let w = World::three(&["a", "b"], |w| lb_doc(&[("a", &w.backend_host(0))])).await;
    let cut = w.leader(&[1, 2, 3]).await;
    w.lab.cut(w.host(cut));
    let doc = lb_doc(&[("b", &w.backend_host(1))]);
    let out = w.apply(cut, &doc, "b.toml");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no quorum"), "{err}");
    // The majority commits; healed, the cut node follows it.
    let rest: Vec<u64> = (1..=3).filter(|i| *i != cut).collect();
    let out = w.apply(rest[0], &doc, "b.toml");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    w.lab.heal(w.host(cut));
    w.wait_serving(cut, "b").await;
}
