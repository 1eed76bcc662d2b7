//! The VIP in the lab: real `raftlb` processes, one network namespace per
//! node, a client in its own. The leader with a valid lease holds the VIP;
//! a machine death (SIGKILL and link down) or a process crash (SIGKILL
//! only) moves it, a cut-off leader drops it before anyone else takes it
//! (checked every 10 ms in every namespace), a node without a quorum holds
//! none, priority brings it back to the preferred node, and a VIP left on
//! an interface by a crash goes when raftlb starts there.

mod world;

use raftlb_testkit::lab::IFACE;
use raftlb_testkit::wait_until;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use world::holders::Holders;
use world::vip::*;
use world::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_death_moves_the_vip_and_the_client_follows_its_new_mac() {
    let mut w = cluster([(100, true), (100, true), (100, true)]).await;
    let holders = Holders::new(&w, VIP);
    let prober = w.vip_prober(VIP);
    let mut gaps = Vec::new();
    for trial in 1..=10 {
        let holder = only(&holders.wait("one holder", |h| h.len() == 1).await);
        prober
            .wait_success_after(Instant::now(), "the client reaches the VIP", DEADLINE)
            .await;
        assert_eq!(client_sees(&w), Some(mac_of(w.host(holder))));
        wait_until(
            "/metrics names the holder, and only it",
            DEADLINE,
            || async { held_per_metrics(&w, &[1, 2, 3]) == [holder] },
        )
        .await;
        // The machine dies: the process and the link at once.
        w.kill(holder);
        w.lab.cut(w.host(holder));
        let died = Instant::now();
        // The dead machine's namespace keeps the address (a dead machine
        // answers nothing): only the living count.
        let living =
            |h: &[u64]| -> Vec<u64> { h.iter().copied().filter(|n| *n != holder).collect() };
        let new = only(&living(
            &holders
                .wait("another node takes the VIP", |h| !living(h).is_empty())
                .await,
        ));
        prober
            .wait_success_after(died, "the client reaches the VIP again", DEADLINE)
            .await;
        let gap = prober.gap_around(died);
        gaps.push(gap);
        assert_eq!(
            client_sees(&w),
            Some(mac_of(w.host(new))),
            "the client's neighbour entry follows the new holder"
        );
        let connected = w
            .lab
            .connect(&w.client, SocketAddr::from((VIP, FRONT)))
            .await
            .expect("a TCP connect to the VIP succeeds");
        assert_eq!(connected.server, "a");
        eprintln!(
            "trial {trial}: node {holder} died, node {new} holds the VIP; client outage {gap:?}"
        );
        revive(&mut w, holder).await;
    }
    gaps.sort();
    eprintln!(
        "machine death, 10 trials: outage p50 {:?}, max {:?}",
        gaps[gaps.len() / 2],
        gaps.last().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_leader_drops_the_vip_before_another_node_takes_it() {
    let w = cluster([(100, true), (100, true), (100, true)]).await;
    let holders = Holders::new(&w, VIP);
    let check = Invariant::start(Holders::new(&w, VIP));
    for trial in 1..=20 {
        let holder = only(&holders.wait("one holder", |h| h.len() == 1).await);
        let others: Vec<u64> = (1..=3).filter(|o| *o != holder).collect();
        // Odd trials take the link down; even ones drop its packets to
        // the peers (the link stays up: only the lease can tell).
        let by_link = trial % 2 == 1;
        if by_link {
            w.lab.cut(w.host(holder));
        } else {
            for o in &others {
                w.lab.drop_between(w.host(holder), w.host(*o));
            }
        }
        let new = only(
            &holders
                .wait("a node of the majority takes the VIP", |h| {
                    h.len() == 1 && h[0] != holder
                })
                .await,
        );
        let before = w.status(new).unwrap()["vips_here"]["vips"][0]["announcements"]
            .as_u64()
            .unwrap();
        if by_link {
            w.lab.heal(w.host(holder));
        } else {
            w.lab.heal_drops(w.host(holder));
        }
        w.wait_voters(holder, 3).await;
        wait_until(
            "the holder announces the VIP again after heal",
            DEADLINE,
            || async {
                w.status(new).is_some_and(|s| {
                    s["vips_here"]["vips"][0]["announcements"].as_u64() > Some(before)
                })
            },
        )
        .await;
        let after = holders.now().await;
        assert_eq!(after.len(), 1, "one holder after heal: {after:?}");
        eprintln!(
            "trial {trial}: node {holder} cut off ({}), node {new} took the VIP",
            if by_link {
                "link down"
            } else {
                "packets dropped"
            }
        );
    }
    let (samples, bad) = check.finish().await;
    eprintln!("{samples} samples of every namespace, 10 ms apart");
    assert!(samples > 100);
    assert!(bad.is_empty(), "two holders at once: {bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_a_quorum_holds_no_vip() {
    let mut w = World::new(3, &["a"]);
    // Every node runs `notify`, which appends its arguments to a file.
    let events = |w: &World, id: u64| w.dir.path(&format!("notify{id}"));
    for id in 1..=3 {
        let cmd = format!("printf '%s %s %s\\n' >> {}", events(&w, id).display());
        let text = format!("{}notify = \"{cmd}\"\n", vip_section(100, true));
        w.extra.insert(id, text);
    }
    let doc = lb(&w);
    w.init(&doc).await;
    w.join(2, 2).await;
    w.join(3, 3).await;
    let holders = Holders::new(&w, VIP);
    let holder = only(&holders.wait("one holder", |h| h.len() == 1).await);
    let file = events(&w, holder);
    let notified = move || std::fs::read_to_string(&file).unwrap_or_default();
    wait_until("notify ran on the holder's take", DEADLINE, || async {
        notified()
            .lines()
            .last()
            .is_some_and(|l| l.starts_with(&format!("MASTER {VIP}/24 took")))
    })
    .await;
    for o in (1..=3).filter(|o| *o != holder) {
        w.kill(o);
    }
    holders
        .wait("the survivor drops the VIP", |h| h.is_empty())
        .await;
    let s = w.status(holder).unwrap();
    assert_eq!(s["lease"], false);
    let reason = s["vips_here"]["vips"][0]["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("lease lost"), "{reason}");
    wait_until("notify ran on the release", DEADLINE, || async {
        notified()
            .lines()
            .last()
            .is_some_and(|l| l.starts_with(&format!("BACKUP {VIP}/24 lease lost")))
    })
    .await;
    // It stays without: sampled for three election timeouts' worth.
    let end = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < end {
        assert_eq!(holders.now().await, Vec::<u64>::new());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preferred_node_takes_the_vip_back_only_with_preempt() {
    let mut w = cluster([(200, true), (100, true), (50, true)]).await;
    let holders = Holders::new(&w, VIP);
    holders
        .wait("the preferred node holds the VIP", |h| h == [1])
        .await;
    // (The dead machine's namespace keeps the address: only the living count.)
    let living = |h: &[u64]| -> Vec<u64> { h.iter().copied().filter(|n| *n != 1).collect() };
    w.kill(1);
    w.lab.cut(w.host(1));
    holders
        .wait("the next node in priority takes it", |h| living(h) == [2])
        .await;
    revive(&mut w, 1).await;
    holders
        .wait("back on the preferred node (preempt = true)", |h| h == [1])
        .await;

    // Now without preemption: the holder keeps it.
    w.kill(1);
    w.lab.cut(w.host(1));
    let holder = only(&living(
        &holders
            .wait("the next node in priority takes it", |h| living(h) == [2])
            .await,
    ));
    w.extra.insert(1, vip_section(200, false));
    revive(&mut w, 1).await;
    wait_until("node 1 reports nopreempt", DEADLINE, || async {
        w.status(holder)
            .is_some_and(|s| s["nodes"]["1"]["preempt"] == false)
    })
    .await;
    // Longer than the preemption delay, with node 1 caught up.
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        assert_eq!(
            holders.now().await,
            vec![holder],
            "nopreempt: the holder keeps it"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A holder that stops (SIGTERM: `systemctl stop`, an upgrade) hands the
/// leadership, and so the VIP, to the next node in priority as soon as it
/// stops, and drains its connections as a follower: not leading on through
/// the drain and then leaving the others to wait out its silence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_holder_hands_the_vip_over_and_drains_as_a_follower() {
    let mut w = cluster([(200, true), (100, true), (50, true)]).await;
    let holders = Holders::new(&w, VIP);
    holders
        .wait("the preferred node holds the VIP", |h| h == [1])
        .await;
    let term = w.status(1).unwrap()["term"].as_u64().unwrap();
    // A connection through node 1 keeps its drain going (no client
    // timeout: up to the 10 s grace).
    let mut held = w
        .lab
        .connect(&w.client, w.host(1).addr(FRONT))
        .await
        .expect("a connection through node 1");
    let invariant = Invariant::start(Holders::new(&w, VIP));
    w.procs[1].as_ref().unwrap().signal(libc::SIGTERM);
    holders
        .wait("the next node in priority takes the VIP", |h| h == [2])
        .await;
    let s = w.status(2).unwrap();
    assert_eq!(s["role"], "leader");
    assert!(s["term"].as_u64().unwrap() > term, "{s}");
    // Node 1 handed over while it drains: it still runs, follows node 2,
    // and its connection still works.
    let p = w.procs[1].as_mut().unwrap();
    assert!(
        p.child.try_wait().unwrap().is_none(),
        "node 1 exited before node 2 took over: no hand-over\n{}",
        p.output()
    );
    assert!(
        w.status(1)
            .is_some_and(|s| s["role"] == "follower" && s["leader"] == 2),
        "{:?}",
        w.status(1)
    );
    assert_eq!(held.echo("still here\n").await.unwrap(), "still here\n");
    let through = w
        .lab
        .connect(&w.client, SocketAddr::new(VIP.into(), FRONT))
        .await
        .expect("clients reach the VIP on node 2");
    assert_eq!(through.server, "a");
    assert!(w.output(1).contains("node 2 leads now"), "{}", w.output(1));
    drop(held);
    w.stop(1).await;
    let (samples, bad) = invariant.finish().await;
    assert!(samples > 0);
    assert!(bad.is_empty(), "two holders: {bad:?}");
}

/// The VIP's line in `ip -o addr show` on `h`'s interface (empty without it).
fn vip_line(h: &raftlb_testkit::lab::Host) -> String {
    let out = std::process::Command::new("ip")
        .args(["-n", &h.ns, "-o", "addr", "show", "dev", IFACE])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.contains(&format!(" {VIP}/")))
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_holders_vip_expires_by_itself_and_raftlb_removes_a_leftover_when_it_starts() {
    let mut w = cluster([(100, true), (100, true), (100, true)]).await;
    let holders = Holders::new(&w, VIP);
    let prober = w.vip_prober(VIP);
    let holder = only(&holders.wait("one holder", |h| h.len() == 1).await);
    prober
        .wait_success_after(Instant::now(), "the client reaches the VIP", DEADLINE)
        .await;
    // The holder keeps the VIP with a lifetime it renews: the kernel's own
    // lease on the address.
    let line = vip_line(w.host(holder));
    assert!(
        line.contains("valid_lft") && !line.contains("valid_lft forever"),
        "{line}"
    );
    // The process crashes and nothing runs `vip release`; the machine lives
    // on. Its kernel drops the address when the lifetime runs out, and
    // another node holds the VIP.
    w.kill(holder);
    let died = Instant::now();
    let new = only(
        &holders
            .wait(
                "the crashed node's kernel drops the VIP; another node holds it",
                |h| h.len() == 1 && h[0] != holder,
            )
            .await,
    );
    prober
        .wait_success_after(died, "the client reaches the VIP again", DEADLINE)
        .await;
    wait_until(
        "the client's neighbour entry follows the new holder",
        DEADLINE,
        || async { client_sees(&w) == Some(mac_of(w.host(new))) },
    )
    .await;
    eprintln!("process crash: client outage {:?}", prober.gap_around(died));
    // `Restart=always`: raftlb starts again there, as a follower.
    w.spawn(holder, &["run"]);
    w.wait_voters(holder, 3).await;
    assert_eq!(holders.now().await, vec![new]);

    // A VIP added by hand to a follower goes when raftlb starts there;
    // `raftlb vip release` removes it on demand.
    let follower = (1..=3).find(|f| *f != new).unwrap();
    let h = w.host(follower).clone();
    w.kill(follower);
    let add = |w: &World| {
        let out = std::process::Command::new("ip")
            .args([
                "-n",
                &h.ns,
                "addr",
                "add",
                &format!("{VIP}/24"),
                "dev",
                IFACE,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = w;
    };
    add(&w);
    let node = w.node_file(follower);
    let out = w
        .lab
        .command(&h, std::path::Path::new(BIN))
        .args(["vip", "release", "--node"])
        .arg(&node)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("removed {VIP}/24 from {IFACE}")),
        "{text}"
    );
    assert_eq!(holders.now().await, vec![new]);
    add(&w);
    w.spawn(follower, &["run"]);
    holders
        .wait("raftlb starting as a follower removes it", |h| h == [new])
        .await;
    w.wait_voters(follower, 3).await;
    assert_eq!(holders.now().await, vec![new]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_cannot_serve_hands_the_vip_on() {
    let w = cluster([(100, true), (100, true), (100, true)]).await;
    let holders = Holders::new(&w, VIP);
    let holder = only(&holders.wait("one holder", |h| h.len() == 1).await);
    // A new frontend whose port is taken on the holder only: the config
    // commits everywhere and fails to apply there.
    let taken = w
        .lab
        .inside(w.host(holder), || {
            std::net::TcpListener::bind(("0.0.0.0", 8082))
        })
        .unwrap();
    let doc = format!(
        "{}\n[frontends.more]\nbind = \"0.0.0.0:8082\"\ndefault_backend = \"web\"\n",
        lb(&w)
    );
    let out = w.apply(holder, &doc, "more.toml");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new = only(
        &holders
            .wait("a fit node takes leadership and the VIP", |h| {
                h.len() == 1 && h[0] != holder
            })
            .await,
    );
    let s = w.status(new).unwrap();
    assert_eq!(s["role"], "leader");
    let why = s["nodes"][holder.to_string()]["unfit"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(why.contains("config not applied"), "{why}");
    // Once the port is free and a config applies there, it is fit again.
    drop(taken);
    let out = w.apply(new, &format!("{doc}\n# again\n"), "again.toml");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until(
        "the old holder reports itself fit again",
        DEADLINE,
        || async {
            w.status(new)
                .is_some_and(|s| s["nodes"][holder.to_string()]["unfit"].is_null())
        },
    )
    .await;
    assert_eq!(
        holders.now().await,
        vec![new],
        "equal priorities: no preemption"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv6_vip_moves_with_the_leader_and_clients_reach_it() {
    const VIP6: &str = "2001:db8::50";
    let mut w = World::new(3, &["a"]);
    for id in 1..=3 {
        w.extra.insert(id, vip_section(100, true));
    }
    let doc = format!(
        "{}\n[frontends.v6]\nbind = \"[::]:8086\"\ndefault_backend = \"web\"\n\n[[vips]]\naddress = \"{VIP6}/64\"\n",
        lb(&w)
    );
    w.init(&doc).await;
    w.join(2, 2).await;
    w.join(3, 3).await;
    // The client on the VIP's IPv6 network.
    let out = std::process::Command::new("ip")
        .args([
            "-n",
            &w.client.ns,
            "addr",
            "add",
            "2001:db8::100/64",
            "dev",
            IFACE,
            "nodad",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let nss: Vec<String> = (1..=3).map(|id| w.host(id).ns.clone()).collect();
    let holders_v6 = move || -> Vec<u64> {
        (1..=3u64)
            .filter(|id| {
                ip_out(&[
                    "-n",
                    &nss[*id as usize - 1],
                    "-o",
                    "addr",
                    "show",
                    "dev",
                    IFACE,
                ])
                .contains(VIP6)
            })
            .collect()
    };
    let to: SocketAddr = format!("[{VIP6}]:8086").parse().unwrap();
    wait_until(
        "one node holds the IPv6 VIP, and a client connects",
        DEADLINE,
        || async { holders_v6().len() == 1 && w.lab.connect(&w.client, to).await.is_ok() },
    )
    .await;
    let first = holders_v6()[0];
    w.kill(first);
    w.lab.cut(w.host(first));
    wait_until(
        "another node takes it and the client reaches it",
        DEADLINE,
        || async {
            let h: Vec<u64> = holders_v6().into_iter().filter(|n| *n != first).collect();
            h.len() == 1 && w.lab.connect(&w.client, to).await.is_ok()
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_votes_but_never_holds_the_vip() {
    let mut w = cluster([(150, true), (100, true), (0, true)]).await;
    let holders = Holders::new(&w, VIP);
    // Every 10 ms, whether the witness (node 3) holds the VIP (netlink
    // handles of its own: one dump at a time per socket).
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (holders, stop) = (Holders::new(&w, VIP), stop.clone());
        tokio::spawn(async move {
            let mut seen = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if holders.now().await.contains(&3) {
                    seen += 1;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            seen
        })
    };
    assert_eq!(
        only(&holders.wait("node 1 holds it", |h| h == [1]).await),
        1
    );
    wait_until(
        "the witness says why it holds nothing",
        DEADLINE,
        || async {
            w.status(1).is_some_and(|s| {
                s["nodes"]["3"]["unfit"]
                    .as_str()
                    .is_some_and(|u| u.contains("witness"))
            })
        },
    )
    .await;
    // The preferred node's machine dies: the standby takes over, with the
    // witness's vote, and the witness still holds nothing.
    w.kill(1);
    w.lab.cut(w.host(1));
    let living = |h: &[u64]| -> Vec<u64> { h.iter().copied().filter(|n| *n != 1).collect() };
    let h = holders
        .wait("the standby takes the VIP", |h| !living(h).is_empty())
        .await;
    assert_eq!(living(&h), [2]);
    // Back: it takes the VIP back (preempt), and the witness never had it.
    revive(&mut w, 1).await;
    holders.wait("node 1 holds it again", |h| h == [1]).await;
    stop.store(true, Ordering::Relaxed);
    assert_eq!(
        sampler.await.unwrap(),
        0,
        "samples with the witness holding"
    );
}
