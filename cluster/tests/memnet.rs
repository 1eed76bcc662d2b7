//! The cluster on an in-process network whose links the test cuts and heals:
//! forming, forwarding, partitions, restarts from disk, snapshots, leave.
//! Real Raft, real stores in temporary directories; only the wire is memory.

use raftlb_cluster::net::mem::{MemNet, MemTransport};
use raftlb_cluster::{Options, PeerNode, RaftCluster, WriteFailure};
use raftlb_proto::{Command, Format, OperatorState, Outcome, ServerKey};
use std::sync::Arc;
use std::time::{Duration, Instant};

type Node = Arc<RaftCluster<MemTransport>>;

const DEADLINE: Duration = Duration::from_secs(10);

fn doc(port: u16) -> String {
    format!(
        "[frontends.f]\nbind = \"127.0.0.1:{port}\"\ndefault_backend = \"web\"\n[backends.web]\nservers = [ {{ name = \"s1\", address = \"127.0.0.1:2\" }} ]\n"
    )
}

fn apply(port: u16) -> Command {
    Command::ApplyConfig {
        doc: doc(port),
        format: Format::Toml,
        expected_version: None,
    }
}

struct Lab {
    net: MemNet,
    dir: tempfile::TempDir,
    nodes: Vec<Option<Node>>,
    opts: Options,
}

fn addr(id: u64) -> String {
    format!("node-{id}")
}

fn me(id: u64) -> PeerNode {
    PeerNode {
        addr: addr(id),
        name: format!("n{id}"),
    }
}

impl Lab {
    fn new() -> Lab {
        Lab {
            net: MemNet::new(),
            dir: tempfile::tempdir().unwrap(),
            nodes: vec![None; 8],
            opts: Options {
                heartbeat: Duration::from_millis(50),
                election: (Duration::from_millis(200), Duration::from_millis(400)),
                write_timeout: Duration::from_millis(1500),
                join_timeout: Duration::from_secs(10),
                snapshot_every: 8,
            },
        }
    }

    /// Starts (or restarts) node `id` from its directory.
    async fn start(&mut self, id: u64) -> Node {
        let dir = self.dir.path().join(format!("n{id}"));
        let n = Arc::new(
            RaftCluster::open(id, &dir, self.net.transport(id), self.opts.clone())
                .await
                .unwrap(),
        );
        self.net.register(id, &addr(id), n.handler());
        self.nodes[id as usize] = Some(n.clone());
        n
    }

    /// Kills node `id`: it vanishes from the network, Raft stops.
    async fn crash(&mut self, id: u64) {
        self.net.unregister(&addr(id));
        if let Some(n) = self.nodes[id as usize].take() {
            n.shutdown().await;
        }
    }

    fn node(&self, id: u64) -> &Node {
        self.nodes[id as usize].as_ref().expect("node running")
    }

    /// A three-node cluster: 1 initializes, 2 and 3 join through 1.
    async fn three() -> Lab {
        let mut lab = Lab::new();
        let n1 = lab.start(1).await;
        n1.initialize(me(1)).await.unwrap();
        assert_eq!(
            n1.write(apply(1000)).await,
            Ok(Outcome::ConfigCommitted { version: 1 })
        );
        for id in [2, 3] {
            let n = lab.start(id).await;
            n.join(me(id), &addr(1)).await.unwrap();
        }
        lab
    }

    /// Waits until every running node listed has applied config `version`.
    async fn converged(&self, ids: &[u64], version: u64) {
        let end = Instant::now() + DEADLINE;
        for &id in ids {
            let mut rx = self.node(id).watch();
            while rx.borrow().state.config_version() < version {
                let left = end.saturating_duration_since(Instant::now());
                assert!(
                    tokio::time::timeout(left, rx.changed()).await.is_ok(),
                    "node {id} did not reach config version {version}"
                );
            }
        }
        let states: Vec<_> = ids
            .iter()
            .map(|id| self.node(*id).watch().borrow().state.clone())
            .collect();
        for s in &states[1..] {
            if s.config_version() == states[0].config_version() {
                assert_eq!(s.config, states[0].config);
            }
        }
    }

    async fn leader(&self, among: &[u64]) -> u64 {
        let end = Instant::now() + DEADLINE;
        loop {
            for &id in among {
                let s = self.node(id).status();
                if s.role == "leader" && s.leader == Some(id) {
                    return id;
                }
            }
            assert!(Instant::now() < end, "no leader among {among:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn voters(n: &Node) -> Vec<u64> {
    let s = n.status();
    s.members
        .iter()
        .filter(|m| m.role == "voter")
        .map(|m| m.id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_and_a_write_on_a_follower_is_forwarded() {
    let lab = Lab::three().await;
    assert_eq!(voters(lab.node(1)), vec![1, 2, 3]);
    lab.converged(&[1, 2, 3], 1).await;
    let follower = if lab.leader(&[1, 2, 3]).await == 3 {
        2
    } else {
        3
    };
    // A follower shows the members as the leader sees them.
    let leader = lab.leader(&[1, 2, 3]).await;
    let st = lab.node(follower).status_with_leader().await;
    assert_eq!(st.members_from, leader);
    assert!(st.members.iter().all(|m| m.matched.is_some()), "{st:?}");
    assert!(lab
        .node(follower)
        .status()
        .members
        .iter()
        .all(|m| m.matched.is_none()));
    let out = lab.node(follower).write(apply(1001)).await;
    assert_eq!(out, Ok(Outcome::ConfigCommitted { version: 2 }));
    lab.converged(&[1, 2, 3], 2).await;
    // A stale write is refused, and changes nothing.
    let stale = Command::ApplyConfig {
        doc: doc(1002),
        format: Format::Toml,
        expected_version: Some(1),
    };
    assert_eq!(
        lab.node(follower).write(stale).await,
        Ok(Outcome::Stale {
            expected: 1,
            current: 2
        })
    );
    // Operator state reaches every node.
    let drain = Command::SetServerState {
        server: ServerKey::new("web", "s1"),
        state: OperatorState::Drain,
    };
    assert_eq!(lab.node(2).write(drain).await, Ok(Outcome::Done));
    let end = Instant::now() + DEADLINE;
    for id in [1, 2, 3] {
        while lab.node(id).watch().borrow().state.operator.is_empty() {
            assert!(Instant::now() < end, "node {id} did not see the drain");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_leader_cannot_commit_and_the_majority_goes_on() {
    let lab = Lab::three().await;
    let old = lab.leader(&[1, 2, 3]).await;
    let rest: Vec<u64> = [1, 2, 3].into_iter().filter(|i| *i != old).collect();
    lab.net.isolate(old, &rest);
    // The minority side says so instead of committing.
    let err = lab.node(old).write(apply(2000)).await.unwrap_err();
    assert!(matches!(err, WriteFailure::NoQuorum(_)), "{err:?}");
    // The majority elects a leader and commits.
    let new = lab.leader(&rest).await;
    assert_ne!(new, old);
    assert_eq!(
        lab.node(rest[0]).write(apply(2001)).await,
        Ok(Outcome::ConfigCommitted { version: 2 })
    );
    // Healed, the old leader follows and holds the majority's config (the
    // entry it could not commit is gone).
    lab.net.heal_all();
    lab.converged(&[1, 2, 3], 2).await;
    let end = Instant::now() + DEADLINE;
    loop {
        let states: Vec<_> = [1, 2, 3]
            .iter()
            .map(|i| lab.node(*i).watch().borrow().state.clone())
            .collect();
        if states.iter().all(|s| s.config == states[0].config) {
            assert!(states[0].config.as_ref().unwrap().doc.contains("2001"));
            break;
        }
        assert!(Instant::now() < end, "states did not converge");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_node_comes_back_from_disk_and_catches_up_through_a_snapshot() {
    let mut lab = Lab::three().await;
    lab.crash(3).await;
    // More writes than the snapshot interval, so the log is purged past
    // what node 3 has.
    for i in 0..20u16 {
        lab.node(1).write(apply(3000 + i)).await.unwrap();
    }
    lab.converged(&[1, 2], 21).await;
    let n3 = lab.start(3).await;
    // It resumes as a member: no join.
    let end = Instant::now() + DEADLINE;
    while voters(&n3) != vec![1, 2, 3] {
        assert!(Instant::now() < end, "node 3 did not resume as a voter");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    lab.converged(&[1, 2, 3], 21).await;
    assert!(lab.node(1).raft().metrics().borrow().purged.is_some());
    // Its log was behind the purged point: it caught up through a snapshot.
    assert!(lab.node(3).raft().metrics().borrow().snapshot.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_shrinks_the_cluster_and_the_removed_node_learns_it() {
    let mut lab = Lab::three().await;
    let leader = lab.leader(&[1, 2, 3]).await;
    let gone = if leader == 3 { 2 } else { 3 };
    lab.node(leader).leave(gone).await.unwrap();
    let rest: Vec<u64> = [1, 2, 3].into_iter().filter(|i| *i != gone).collect();
    assert_eq!(voters(lab.node(leader)), rest);
    tokio::time::timeout(DEADLINE, lab.node(gone).removed())
        .await
        .expect("the removed node learns it was removed");
    lab.crash(gone).await;
    // The two left still commit; a fresh node grows it back to three.
    lab.node(rest[0]).write(apply(4000)).await.unwrap();
    let n4 = lab.start(4).await;
    n4.join(me(4), &addr(rest[1])).await.unwrap();
    let mut want = rest.clone();
    want.push(4);
    assert_eq!(voters(lab.node(leader)), want);
    lab.converged(&[rest[0], rest[1], 4], 2).await;
    // The last voter cannot leave.
    let mut solo = Lab::new();
    let s1 = solo.start(1).await;
    s1.initialize(me(1)).await.unwrap();
    assert!(matches!(s1.leave(1).await, Err(WriteFailure::Other(m)) if m.contains("last voter")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_through_a_node_that_is_not_there_fails_clearly() {
    let mut lab = Lab::new();
    let n1 = lab.start(1).await;
    let err = n1.join(me(1), "nowhere").await.unwrap_err();
    assert!(err.to_string().contains("unreachable"), "{err}");
}

/// How many nodes hold the lease now.
fn holders(lab: &Lab, ids: &[u64]) -> Vec<u64> {
    ids.iter()
        .copied()
        .filter(|id| *lab.node(*id).lease().borrow())
        .collect()
}

async fn wait_holder(lab: &Lab, ids: &[u64]) -> u64 {
    let end = Instant::now() + DEADLINE;
    loop {
        if let [one] = holders(lab, ids)[..] {
            return one;
        }
        assert!(Instant::now() < end, "no single lease holder among {ids:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_lapses_on_a_cut_off_leader_before_anyone_else_holds_it() {
    let lab = Arc::new(Lab::three().await);
    let all = [1u64, 2, 3];
    let old = wait_holder(&lab, &all).await;
    assert_eq!(lab.leader(&all).await, old);
    // The invariant, sampled every millisecond while the test runs: never
    // two holders.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let checker = {
        let (lab, stop) = (lab.clone(), stop.clone());
        tokio::spawn(async move {
            let mut samples = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let h = holders(&lab, &all);
                assert!(h.len() <= 1, "two lease holders at once: {h:?}");
                samples += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            samples
        })
    };
    for _ in 0..3 {
        let leader = wait_holder(&lab, &all).await;
        let rest: Vec<u64> = all.into_iter().filter(|i| *i != leader).collect();
        lab.net.isolate(leader, &rest);
        // The cut-off leader still says Leader, but its lease lapses; the
        // majority elects another that then holds it.
        let end = Instant::now() + DEADLINE;
        while *lab.node(leader).lease().borrow() {
            assert!(Instant::now() < end, "the cut-off leader kept its lease");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let new = wait_holder(&lab, &rest).await;
        assert_ne!(new, leader);
        assert!(!*lab.node(leader).lease().borrow());
        lab.net.heal_all();
        // Healed: one holder in the end.
        wait_holder(&lab, &all).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let samples = checker.await.expect("the invariant held");
    assert!(samples > 100, "the checker sampled only {samples} times");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_quorum_nobody_holds_the_lease() {
    let mut lab = Lab::three().await;
    let leader = wait_holder(&lab, &[1, 2, 3]).await;
    let survivor = if leader == 1 { 2 } else { 1 };
    for id in [1, 2, 3] {
        if id != survivor {
            lab.crash(id).await;
        }
    }
    let end = Instant::now() + DEADLINE;
    while *lab.node(survivor).lease().borrow() {
        assert!(
            Instant::now() < end,
            "the survivor kept a lease with no quorum"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // And it does not get one while alone, however long it tries.
    let alone_until = Instant::now() + Duration::from_secs(2);
    let mut rx = lab.node(survivor).lease();
    let got = tokio::time::timeout_at(alone_until.into(), rx.wait_for(|held| *held)).await;
    assert!(got.is_err(), "a lone node of three took the lease");
}

/// Without pre-vote, a follower cut off for a while would campaign alone,
/// raising its term again and again, and on heal its term would depose the
/// healthy leader. With it, the cut-off node never campaigns (nobody would
/// vote), and the leader and its term stay through the cut and the heal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_follower_does_not_depose_the_leader_when_it_comes_back() {
    let lab = Lab::three().await;
    let leader = lab.leader(&[1, 2, 3]).await;
    let term = lab.node(leader).status().term;
    let follower = [1, 2, 3].into_iter().find(|i| *i != leader).unwrap();
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|i| *i != follower).collect();
    lab.net.isolate(follower, &others);
    // Ten times the longest election timeout alone.
    tokio::time::sleep(lab.opts.election.1 * 10).await;
    assert_eq!(
        lab.node(follower).status().term,
        term,
        "it never campaigned"
    );
    lab.net.heal_all();
    assert_eq!(
        lab.node(leader).write(apply(3000)).await,
        Ok(Outcome::ConfigCommitted { version: 2 })
    );
    lab.converged(&[1, 2, 3], 2).await;
    let s = lab.node(leader).status();
    assert_eq!(
        (s.role, s.term),
        ("leader", term),
        "the same leader, the same term"
    );
}

/// A loaded host answers late for a while: every Raft AppendEntries, whose
/// hard time limit is the heartbeat interval, times out. The leader must
/// keep its lease (its VIP) and its term: the lease heartbeats, which may
/// take up to the lease to come back, still do, and the followers, which
/// still hear their leader, neither campaign nor vote for anyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_answers_for_a_while_neither_lapse_the_lease_nor_depose_the_leader() {
    let lab = Lab::three().await;
    let all = [1u64, 2, 3];
    let leader = wait_holder(&lab, &all).await;
    let term = lab.node(leader).status().term;
    let followers: Vec<u64> = all.into_iter().filter(|i| *i != leader).collect();
    // Every change of the leader's lease from now on.
    let mut lease = lab.node(leader).lease();
    let lapses = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let watcher = {
        let lapses = lapses.clone();
        tokio::spawn(async move {
            while lease.changed().await.is_ok() {
                if !*lease.borrow_and_update() {
                    lapses.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        })
    };
    // Later than the heartbeat interval, well within the lease.
    let late = lab.opts.heartbeat + lab.opts.heartbeat / 2;
    assert!(late * 2 < lab.opts.election.0);
    for f in &followers {
        lab.net.answer_late(*f, late);
    }
    // For six leases: long enough that a lease resting on Raft's own
    // answers would lapse several times over, and well within the 2 s that
    // Raft may go without a quorum before the heartbeats stop standing in.
    let window = lab.opts.election.0 * 6;
    assert!(window < Duration::from_secs(2));
    let end = Instant::now() + window;
    let mut longest_raft_silence = 0u64;
    while Instant::now() < end {
        let m = lab.node(leader).raft().metrics().borrow().clone();
        longest_raft_silence = longest_raft_silence.max(m.millis_since_quorum_ack.unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The fault was real: Raft itself heard no quorum for longer than a
    // lease.
    assert!(
        longest_raft_silence > lab.opts.election.0.as_millis() as u64,
        "Raft's answers kept coming ({longest_raft_silence} ms at most without a quorum)"
    );
    for f in &followers {
        lab.net.answer_late(*f, Duration::ZERO);
    }
    assert_eq!(
        lab.node(leader).write(apply(4000)).await,
        Ok(Outcome::ConfigCommitted { version: 2 })
    );
    lab.converged(&all, 2).await;
    for id in all {
        assert_eq!(lab.node(id).status().term, term, "node {id}: a new term");
    }
    assert!(*lab.node(leader).lease().borrow());
    watcher.abort();
    let lapses = lapses.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(lapses, 0, "the leader's lease lapsed {lapses} times");
}

/// A follower that confirms its leader's lease heartbeats votes for no one
/// else, even when Raft's own messages no longer reach it (its core would
/// then grant the vote: openraft's voters only count AppendEntries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_hears_the_leaders_heartbeats_votes_for_no_one_else() {
    use raftlb_cluster::net::Transport;
    use raftlb_cluster::types::{Request, Response};
    let lab = Lab::three().await;
    let all = [1u64, 2, 3];
    let leader = wait_holder(&lab, &all).await;
    let term = lab.node(leader).status().term;
    let mut followers = all.into_iter().filter(|i| *i != leader);
    let (voter, candidate) = (followers.next().unwrap(), followers.next().unwrap());
    lab.net.lose(voter, "Append", true);
    // Longer than openraft's voters refuse other candidates after an
    // AppendEntries.
    tokio::time::sleep(lab.opts.election.1 * 2).await;
    let last_log_id = lab.node(candidate).raft().metrics().borrow().last_applied;
    let ask = Request::Vote(openraft::raft::VoteRequest::new(
        openraft::Vote::new(term + 1, candidate),
        last_log_id,
    ));
    let answer = lab
        .net
        .transport(candidate)
        .call(voter, &addr(voter), ask, Duration::from_secs(2))
        .await;
    let Ok(Response::Vote(Ok(r))) = answer else {
        panic!("no vote answer: {answer:?}");
    };
    assert!(
        !r.vote_granted,
        "voted for {candidate} while hearing {leader}: {r:?}"
    );
    lab.net.lose(voter, "Append", false);
    assert_eq!(
        lab.node(leader).write(apply(5000)).await,
        Ok(Outcome::ConfigCommitted { version: 2 })
    );
    lab.converged(&all, 2).await;
    for id in all {
        assert_eq!(lab.node(id).status().term, term, "node {id}: a new term");
    }
}

/// Two nodes joining at once: the second's membership change waits for the
/// first's to be committed instead of failing ("already undergoing a
/// configuration change").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_joining_at_once_both_become_voters() {
    let mut lab = Lab::new();
    let n1 = lab.start(1).await;
    n1.initialize(me(1)).await.unwrap();
    let n2 = lab.start(2).await;
    let n3 = lab.start(3).await;
    let through = addr(1);
    let (a, b) = tokio::join!(n2.join(me(2), &through), n3.join(me(3), &through));
    a.unwrap();
    b.unwrap();
    assert_eq!(voters(lab.node(1)), vec![1, 2, 3]);
}
