//! Disk durability with real processes on loopback: three `raftlb` nodes,
//! 50 rounds of `config apply` raced against a SIGKILL of a random node at a
//! random moment, then a restart of that node from its disk. An apply served
//! by a node that stays up is acknowledged, whoever else dies; every
//! acknowledged config version survives on every node, the nodes converge to
//! the same (version, doc), one version never names two docs, and no node's
//! version goes backwards. An apply that was not acknowledged may still
//! commit, even a round later; the next apply's `--expected-version` then
//! refuses, rightly, and the same apply at the new version must go through.
//! The random choices come from a seed the test
//! prints; `RAFTLB_DURABILITY_SEED=N` replays them (the timing of the
//! processes themselves is not replayable).

use raftlb_testkit::{free_port, Proc, TempDir};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_raftlb");
/// How long any readiness or convergence may take.
const DEADLINE: Duration = Duration::from_secs(20);
/// How long one `config apply` may take (its own request timeout is 30 s).
const APPLY_DEADLINE: Duration = Duration::from_secs(45);
const ROUNDS: u32 = 50;
/// Fewer rounds than this in which the node serving the apply survives and
/// the test tested little (the seed draws them: 2 in 3 on average, so about
/// 33 of 50; fewer than 15 is more than five standard deviations away).
const MIN_SURVIVED: u32 = 15;
/// The SIGKILL lands 0..=this many ms after `config apply` was spawned. In
/// a debug build on loopback the whole `config apply` process (start,
/// validate, commit with fsyncs, answer) takes about 10 ms, so this range
/// puts kills before, during and after the commit.
const MAX_KILL_DELAY_MS: u64 = 20;
const POLL: Duration = Duration::from_millis(20);

/// A `raftlb` command with none of the test's environment (the binary
/// refuses unknown `RAFTLB_*` variables, and the test's own seed is one).
fn raftlb() -> Command {
    let mut c = Command::new(BIN);
    c.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        c.env("PATH", path);
    }
    c
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// One node: its files, addresses, the process running it (if any), and
/// what the test has seen of it.
struct Node {
    file: PathBuf,
    admin: SocketAddr,
    cluster: SocketAddr,
    proc: Option<Proc>,
    /// Log files of every process started for it, oldest first.
    logs: Vec<PathBuf>,
    /// The highest config version seen on it, across restarts.
    max_seen: u64,
    /// The highest config version seen from its current process.
    seen_now: u64,
}

/// What one node reports at one moment.
#[derive(Debug, Clone, PartialEq)]
struct Config {
    version: u64,
    doc: String,
}

/// An acknowledged apply.
struct Acked {
    round: u32,
    version: u64,
}

/// The three nodes, the docs, and what has been acknowledged.
struct World {
    dir: TempDir,
    nodes: Vec<Node>,
    fe_port: u16,
    backend_port: u16,
    seed: u64,
    /// Every version known to be committed, with its doc: from
    /// acknowledgements and from what nodes report.
    known: BTreeMap<u64, String>,
    acked: Vec<Acked>,
}

impl World {
    fn new(seed: u64) -> World {
        let dir = TempDir::new("raftlb-durability");
        let nodes = (1..=3u64)
            .map(|id| {
                let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
                let cluster: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
                let file = dir.path(&format!("n{id}.toml"));
                std::fs::write(
                    &file,
                    format!(
                        "id = {id}\nname = \"n{id}\"\ndata_dir = \"{}\"\n\
                         [cluster]\nlisten = \"{cluster}\"\n\
                         [admin]\nlisten = \"{admin}\"\n\
                         [log]\nlevel = \"info,openraft=warn\"\n",
                        dir.path(&format!("data{id}")).display()
                    ),
                )
                .unwrap();
                Node {
                    file,
                    admin,
                    cluster,
                    proc: None,
                    logs: Vec::new(),
                    max_seen: 0,
                    seen_now: 0,
                }
            })
            .collect();
        World {
            dir,
            nodes,
            fe_port: free_port(),
            backend_port: free_port(),
            seed,
            known: BTreeMap::new(),
            acked: Vec::new(),
        }
    }

    fn node(&self, id: u64) -> &Node {
        &self.nodes[id as usize - 1]
    }

    fn node_mut(&mut self, id: u64) -> &mut Node {
        &mut self.nodes[id as usize - 1]
    }

    /// The cluster config of `round` (0: the first one): valid, and unique
    /// through its comment and server name (comments are kept in the doc).
    fn doc(&self, round: u32) -> String {
        format!(
            "# round {round}\n[frontends.fe]\nbind = \"127.0.0.1:{}\"\ndefault_backend = \"web\"\n\n\
             [backends.web]\nservers = [ {{ name = \"s{round}\", address = \"127.0.0.1:{}\" }} ]\n",
            self.fe_port, self.backend_port
        )
    }

    /// Starts a process for node `id` (`args` then `--node FILE`); each
    /// process logs to a file of its own.
    fn spawn(&mut self, id: u64, args: &[&str]) {
        let log = self
            .dir
            .path(&format!("n{id}.{}.log", self.node(id).logs.len()));
        let mut c = raftlb();
        c.args(args).arg("--node").arg(&self.node(id).file);
        let proc = Proc::spawn(c, &log);
        let n = self.node_mut(id);
        n.proc = Some(proc);
        n.logs.push(log);
        n.seen_now = 0;
    }

    /// SIGKILLs node `id` and reaps it.
    fn kill(&mut self, id: u64) {
        if let Some(p) = self.node_mut(id).proc.take() {
            p.signal(libc::SIGKILL);
            drop(p);
        }
    }

    /// The tail of the logs of every node (the last two processes of each),
    /// for failure messages.
    fn logs(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            for log in n.logs.iter().rev().take(2).rev() {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                out.push_str(&format!(
                    "\n----- {} (last 30 lines) -----\n{}\n",
                    log.display(),
                    tail(&text, 30)
                ));
            }
        }
        out
    }

    /// Panics with `msg`, the seed, and the nodes' logs.
    fn fail(&self, msg: &str) -> ! {
        panic!(
            "{msg}\nseed {} (replay with RAFTLB_DURABILITY_SEED={})\nknown versions: {:?}\nacknowledged: {:?}{}",
            self.seed,
            self.seed,
            self.known.keys().collect::<Vec<_>>(),
            self.acked
                .iter()
                .map(|a| (a.version, a.round))
                .collect::<Vec<_>>(),
            self.logs()
        )
    }

    /// Node `id`'s process has not exited (it would be a crash).
    fn check_running(&mut self, id: u64) {
        let exited = self
            .node_mut(id)
            .proc
            .as_mut()
            .and_then(|p| p.child.try_wait().ok().flatten());
        if let Some(status) = exited {
            self.fail(&format!("node {id} exited by itself: {status}"));
        }
    }

    /// `GET path` on node `id`'s admin API, as JSON.
    async fn get(&self, id: u64, path: &str) -> Option<Value> {
        let body = raftlb::admin::get(self.node(id).admin, path).await.ok()?;
        serde_json::from_str(&body).ok()
    }

    /// Node `id`'s committed config, checked against everything seen so far:
    /// a version names one doc on every node, and a process never goes
    /// back to a lower version.
    /// Every node has applied its whole log, and the logs end at the same
    /// index: nothing is in flight.
    async fn settled(&mut self) -> bool {
        let mut ends = Vec::new();
        for id in 1..=3 {
            let Some(v) = self.get(id, "/cluster").await else {
                return false;
            };
            let (last, applied) = (v["last_log_index"].as_u64(), v["applied_index"].as_u64());
            if last.is_none() || last != applied {
                return false;
            }
            ends.push(last);
        }
        ends.windows(2).all(|w| w[0] == w[1])
    }

    async fn config(&mut self, id: u64) -> Option<Config> {
        let v = self.get(id, "/config").await?;
        let seen = Config {
            version: v["version"].as_u64()?,
            doc: v["doc"].as_str()?.to_string(),
        };
        self.observe(id, &seen);
        Some(seen)
    }

    fn observe(&mut self, id: u64, seen: &Config) {
        if seen.version > 0 {
            match self.known.get(&seen.version) {
                Some(doc) if *doc != seen.doc => self.fail(&format!(
                    "node {id} holds a different doc at config version {}:\n{}\nexpected:\n{doc}",
                    seen.version, seen.doc
                )),
                Some(_) => {}
                None => {
                    self.known.insert(seen.version, seen.doc.clone());
                }
            }
        }
        let n = self.node(id);
        if seen.version < n.seen_now {
            let was = n.seen_now;
            self.fail(&format!(
                "node {id} went back from config version {was} to {} without a restart",
                seen.version
            ));
        }
        let n = self.node_mut(id);
        n.seen_now = seen.version;
        n.max_seen = n.max_seen.max(seen.version);
    }

    /// Waits until node `id`'s admin API says it has started.
    async fn wait_health(&mut self, id: u64) {
        let end = Instant::now() + DEADLINE;
        loop {
            self.check_running(id);
            if raftlb::admin::get(self.node(id).admin, "/health")
                .await
                .is_ok()
            {
                return;
            }
            if Instant::now() > end {
                self.fail(&format!("node {id} not healthy within {DEADLINE:?}"));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until every node sees three voters and they all name the same
    /// leader in the same term; returns the leader.
    async fn wait_leader(&mut self) -> u64 {
        let end = Instant::now() + DEADLINE;
        loop {
            let mut views = Vec::new();
            for id in 1..=3 {
                self.check_running(id);
                views.push(self.get(id, "/cluster").await);
            }
            let agreed = views.iter().all(|v| {
                v.as_ref().is_some_and(|v| {
                    let voters = v["members"]
                        .as_array()
                        .map_or(0, |m| m.iter().filter(|m| m["role"] == "voter").count());
                    voters == 3
                        && v["leader"].is_u64()
                        && v["leader"] == views[0].as_ref().unwrap()["leader"]
                        && v["term"] == views[0].as_ref().unwrap()["term"]
                })
            });
            if agreed {
                let leader = views[0].as_ref().unwrap()["leader"].as_u64().unwrap();
                if views[leader as usize - 1].as_ref().unwrap()["role"] == "leader" {
                    return leader;
                }
            }
            if Instant::now() > end {
                self.fail(&format!(
                    "no leader that all three nodes agree on within {DEADLINE:?}: {views:?}"
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until every node holds the same config, at a version no lower
    /// than `at_least` nor than what the node itself held before; returns it.
    async fn wait_converged(&mut self, at_least: u64) -> Config {
        let end = Instant::now() + DEADLINE;
        loop {
            let mut seen = Vec::new();
            for id in 1..=3 {
                self.check_running(id);
                seen.push(self.config(id).await);
            }
            let first = seen[0].clone();
            if let Some(c) = first {
                let all_same = seen.iter().all(|s| s.as_ref() == Some(&c));
                let high_enough =
                    c.version >= at_least && self.nodes.iter().all(|n| c.version >= n.max_seen);
                // And no write still in flight: an apply that was not
                // acknowledged (its node was killed) may sit in the leader's
                // log until a follower acks it, and commit in a later round.
                if all_same && high_enough && self.settled().await {
                    return c;
                }
            }
            if Instant::now() > end {
                let max_seen: Vec<u64> = self.nodes.iter().map(|n| n.max_seen).collect();
                self.fail(&format!(
                    "the nodes did not converge on a config version >= {at_least} \
                     (nor >= their own highest seen, {max_seen:?}) within {DEADLINE:?}; they hold {:?}",
                    seen.iter()
                        .map(|s| s.as_ref().map(|c| c.version))
                        .collect::<Vec<_>>()
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Forms the cluster: `cluster init` on node 1 with the round-0 doc,
    /// then `cluster join` of nodes 2 and 3 through it.
    async fn form(&mut self) {
        let lb = self.dir.path("lb.toml");
        std::fs::write(&lb, self.doc(0)).unwrap();
        let lb = lb.display().to_string();
        self.spawn(1, &["cluster", "init", "--lb", &lb]);
        let end = Instant::now() + DEADLINE;
        let token = loop {
            self.check_running(1);
            let out = std::fs::read_to_string(&self.node(1).logs[0]).unwrap_or_default();
            if let Some(t) = out
                .split("--token ")
                .nth(1)
                .and_then(|t| t.split_whitespace().next())
            {
                break t.to_string();
            }
            if Instant::now() > end {
                self.fail("node 1 printed no join token");
            }
            tokio::time::sleep(POLL).await;
        };
        let peer = self.node(1).cluster.to_string();
        for id in [2, 3] {
            self.spawn(id, &["cluster", "join", "--peer", &peer, "--token", &token]);
            self.wait_health(id).await;
        }
        self.wait_leader().await;
        let first = self.wait_converged(1).await;
        if first.version != 1 || first.doc != self.doc(0) {
            self.fail(&format!(
                "the first config is not version 1 with lb.toml: {first:?}"
            ));
        }
    }

    /// Runs `raftlb config apply` of `round`'s doc against node `target`,
    /// expecting `expected` to be the committed version.
    fn start_apply(&self, round: u32, target: u64, expected: u64) -> Proc {
        let file = self.dir.path(&format!("round{round}.toml"));
        std::fs::write(&file, self.doc(round)).unwrap();
        let mut c = raftlb();
        c.args(["config", "apply"])
            .arg(&file)
            .args(["--expected-version", &expected.to_string()])
            .args(["--admin", &self.node(target).admin.to_string()])
            .arg("--node")
            .arg(&self.node(target).file);
        Proc::spawn(c, &self.dir.path(&format!("apply{round}.log")))
    }

    /// Waits for `apply` to end: the version it acknowledged, or its output.
    async fn finish_apply(&self, mut apply: Proc) -> Result<u64, String> {
        let end = Instant::now() + APPLY_DEADLINE;
        let status = loop {
            if let Some(status) = apply.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > end {
                self.fail(&format!(
                    "`config apply` did not end within {APPLY_DEADLINE:?}:\n{}",
                    apply.output()
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let out = apply.output();
        if !status.success() {
            return Err(out.trim().to_string());
        }
        let version = out
            .lines()
            .find(|l| l.contains("committed as config version"))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok());
        match version {
            Some(v) => Ok(v),
            None => self.fail(&format!(
                "`config apply` succeeded without naming a version:\n{out}"
            )),
        }
    }

    /// The final check through the CLI: `config show --json` on every node.
    fn show(&self, id: u64) -> Config {
        let out = raftlb()
            .args(["config", "show", "--json", "--admin"])
            .arg(self.node(id).admin.to_string())
            .output()
            .unwrap();
        if !out.status.success() {
            self.fail(&format!(
                "`config show` on node {id} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        Config {
            version: v["version"].as_u64().unwrap(),
            doc: v["doc"].as_str().unwrap().to_string(),
        }
    }
}

/// Counts of what the rounds did.
#[derive(Default)]
struct Tally {
    acked: u32,
    refused: u32,
    unacked_but_committed: u32,
    /// Unacknowledged applies seen committed only in a later round (the
    /// leader's log write outlasted the round's settling).
    late: u32,
    killed_leader: u32,
    killed_follower: u32,
    killed_target: u32,
    /// Kills that landed before `config apply` had exited.
    in_flight: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_config_survives_sigkill_and_restart_of_any_node() {
    let seed = match std::env::var("RAFTLB_DURABILITY_SEED") {
        Ok(s) => s
            .parse()
            .expect("RAFTLB_DURABILITY_SEED: not a number (u64)"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    };
    eprintln!("durability: seed {seed} (replay with RAFTLB_DURABILITY_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let mut w = World::new(seed);
    w.form().await;
    let mut leader = w.wait_leader().await;
    let mut current = 1u64;
    let mut tally = Tally::default();
    // Docs of applies that were neither acknowledged nor seen committed by
    // the end of their round: Raft may still commit one later (its node
    // died after the leader took it, and the leader's log write was slow),
    // and `config apply` said so ("may or may not have been committed").
    let mut unacked: Vec<String> = Vec::new();

    for round in 1..=ROUNDS {
        let target = rng.random_range(1..=3u64);
        let victim = rng.random_range(1..=3u64);
        let delay = Duration::from_millis(rng.random_range(0..=MAX_KILL_DELAY_MS));

        let mut apply = w.start_apply(round, target, current);
        let applying = Instant::now();
        // The one deliberate sleep: where the SIGKILL lands is the scenario.
        tokio::time::sleep(delay).await;
        let in_flight = apply.child.try_wait().unwrap().is_none();
        let kill_at = applying.elapsed();
        w.kill(victim);
        if in_flight {
            tally.in_flight += 1;
        }
        if victim == leader {
            tally.killed_leader += 1;
        } else {
            tally.killed_follower += 1;
        }
        if victim == target {
            tally.killed_target += 1;
        }
        let mut result = w.finish_apply(apply).await;
        // Refused by --expected-version because an earlier unacknowledged
        // apply committed since: correct, if that is what the cluster holds
        // now. Then the apply again, at the new version, must go through.
        if let Err(why) = &result {
            if victim != target && why.contains("is committed, not") {
                let now = w.config(target).await;
                match now {
                    Some(c) if c.version == current + 1 && unacked.contains(&c.doc) => {
                        eprintln!(
                            "round {round}: refused: version {} committed late, with {}",
                            c.version,
                            c.doc.lines().next().unwrap_or_default()
                        );
                        unacked.retain(|d| *d != c.doc);
                        tally.late += 1;
                        current = c.version;
                        result = w.finish_apply(w.start_apply(round, target, current)).await;
                    }
                    _ => {}
                }
            }
        }
        let apply_took = applying.elapsed();
        let outcome = match &result {
            Ok(version) => {
                if *version != current + 1 {
                    w.fail(&format!(
                        "round {round}: acknowledged as version {version}, expected {}",
                        current + 1
                    ));
                }
                let doc = w.doc(round);
                if let Some(other) = w.known.get(version).filter(|d| **d != doc) {
                    w.fail(&format!(
                        "round {round}: acknowledged as version {version}, which a node holds with another doc:\n{other}"
                    ));
                }
                w.known.insert(*version, doc);
                w.acked.push(Acked {
                    round,
                    version: *version,
                });
                tally.acked += 1;
                format!("acknowledged as version {version}")
            }
            // The node that took the apply stayed up, and two of three
            // nodes are a quorum: the change must commit, whoever died.
            Err(why) if victim != target => w.fail(&format!(
                "round {round}: apply via n{target} was not acknowledged though n{target} \
                 stayed up (SIGKILL n{victim} after {kill_at:.1?}):\n{why}"
            )),
            Err(why) => {
                tally.refused += 1;
                format!(
                    "not acknowledged ({})",
                    why.lines().last().unwrap_or_default()
                )
            }
        };

        // Back from its disk, without joining again.
        w.spawn(victim, &["run"]);
        w.wait_health(victim).await;
        let max_acked = w.acked.last().map_or(1, |a| a.version);
        let agreed = w.wait_converged(max_acked).await;
        // One apply per round, with --expected-version: the version moved by
        // one at most, and only to this round's doc.
        if agreed.version == current + 1 {
            if result.is_err() && unacked.contains(&agreed.doc) {
                unacked.retain(|d| *d != agreed.doc);
                tally.late += 1;
                unacked.push(w.doc(round));
            } else if agreed.doc != w.doc(round) {
                w.fail(&format!(
                    "round {round}: version {} holds another doc:\n{}",
                    agreed.version, agreed.doc
                ));
            } else if result.is_err() {
                tally.unacked_but_committed += 1;
            }
        } else if agreed.version == current {
            if result.is_err() {
                unacked.push(w.doc(round));
            }
        } else {
            w.fail(&format!(
                "round {round}: the nodes agree on version {}, expected {current} or {}",
                agreed.version,
                current + 1
            ));
        }
        current = agreed.version;
        let was_leader = leader;
        leader = w.wait_leader().await;
        eprintln!(
            "round {round:>2}: apply via n{target}, SIGKILL n{victim}{} after {kill_at:.1?} ({}): {outcome} after {apply_took:.0?}; \
             all at version {current}; leader n{leader}",
            if victim == was_leader { " (leader)" } else { "" },
            if in_flight { "apply in flight" } else { "apply done" },
        );
    }

    // Every node, through the CLI: the same config, at or after every
    // acknowledged version, never below what it held before.
    let last = w.acked.last().map_or(1, |a| a.version);
    let shown: Vec<Config> = (1..=3).map(|id| w.show(id)).collect();
    for (i, c) in shown.iter().enumerate() {
        let id = i as u64 + 1;
        if *c != shown[0] {
            w.fail(&format!(
                "node {id} shows version {} but node 1 shows {}",
                c.version, shown[0].version
            ));
        }
        if c.version < last || c.version < w.node(id).max_seen {
            w.fail(&format!(
                "node {id} shows version {}; acknowledged up to {last}, it held {} before",
                c.version,
                w.node(id).max_seen
            ));
        }
        if w.known.get(&c.version) != Some(&c.doc) {
            w.fail(&format!(
                "node {id} shows version {} with a doc never committed as it:\n{}",
                c.version, c.doc
            ));
        }
    }
    eprintln!(
        "durability: {ROUNDS} rounds, {} acknowledged, {} not ({} of those committed anyway, {} later), \
         SIGKILLs of {} leaders and {} followers ({} of the node serving the apply), \
         {} while the apply was in flight; final version {} on every node, {:.1?}, seed {seed}",
        tally.acked,
        tally.refused,
        tally.unacked_but_committed,
        tally.late,
        tally.killed_leader,
        tally.killed_follower,
        tally.killed_target,
        tally.in_flight,
        shown[0].version,
        started.elapsed()
    );
    eprintln!(
        "acknowledged (version, round): {:?}",
        w.acked
            .iter()
            .map(|a| (a.version, a.round))
            .collect::<Vec<_>>()
    );
    let survived = ROUNDS - tally.killed_target;
    assert!(
        survived >= MIN_SURVIVED,
        "only {survived} of {ROUNDS} rounds kept the node serving the apply (want {MIN_SURVIVED}); seed {seed}"
    );
}
