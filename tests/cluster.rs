//! Real `raftlb` processes in the network-namespace lab (one namespace per
//! node, backend and client): a cluster formed with `cluster init` and two
//! `cluster join`s; config applied on a follower serving on every node;
//! SIGKILL of the leader and a restart from disk; leave and join; a wrong
//! token; a minority that cannot commit; a drain that reaches every node.

mod world;

use raftlb_testkit::wait_until;
use serde_json::Value;
use std::time::{Duration, Instant};
use world::*;

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
async fn after_every_follower_restarted_without_an_election_a_dead_leader_is_still_replaced() {
    // Seen on three VMs: the package's rolling upgrade restarted the
    // followers (the leader stayed), then the leader's machine died, and no
    // new leader came for minutes: the restarted nodes refused each other's
    // pre-votes.
    let mut w = World::three(&["a"], |w| lb_doc(&[("a", &w.backend_host(0))])).await;
    let old = w.leader(&[1, 2, 3]).await;
    let rest: Vec<u64> = (1..=3).filter(|i| *i != old).collect();
    for &f in &rest {
        w.kill(f);
        w.spawn(f, &["run"]);
        w.wait_voters(f, 3).await;
    }
    for &f in &rest {
        let s = w.status(f).expect("status");
        assert_eq!(
            (s["role"].as_str(), s["leader"].as_u64()),
            (Some("follower"), Some(old))
        );
    }
    w.kill(old);
    let new = w.leader(&rest).await;
    assert_ne!(new, old);
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
