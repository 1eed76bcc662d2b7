//! Stick tables in the lab: real `raftlb` processes, one network namespace
//! per node, 20 clients (10 IPv4, 10 IPv6 source addresses) through the
//! VIP with `balance roundrobin` and `stick_on src`. The leader's machine
//! dies: after the failover every client lands on the server it had; then
//! every node restarts, and they still do. And a node cut off while
//! entries are written gets them when its link comes back, without a
//! restart.

mod world;

use raftlb_testkit::lab::IFACE;
use raftlb_testkit::wait_until;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;
use world::*;

const VIP4: &str = "198.51.100.50";
const VIP6: &str = "2001:db8::50";
const FRONT6: u16 = 8086;

/// The clients' source addresses: .100–.109 and 2001:db8::100–109.
fn clients() -> Vec<IpAddr> {
    let v4 = (100..110).map(|i| format!("198.51.100.{i}"));
    let v6 = (0x100..0x10a).map(|i| format!("2001:db8::{i:x}"));
    v4.chain(v6).map(|a| a.parse().unwrap()).collect()
}

fn doc(w: &World) -> String {
    let servers: Vec<String> = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, n)| {
            format!(
                "{{ name = \"{n}\", address = \"{}\" }}",
                w.backend_host(i).addr(9000)
            )
        })
        .collect();
    format!(
        r#"[frontends.fe]
bind = ["0.0.0.0:{FRONT}", "[::]:{FRONT6}"]
default_backend = "web"

[backends.web]
balance = "roundrobin"
stick_table = {{ type = "ip", size = "1k", expire = "30m" }}
stick_on = "src"
servers = [ {} ]

[[vips]]
address = "{VIP4}/24"

[[vips]]
address = "{VIP6}/64"
"#,
        servers.join(", ")
    )
}

/// Three nodes that may all hold the VIPs, and a client host with every
/// source address of [`clients`].
async fn sticky_world() -> World {
    let mut w = World::new(3, &["a", "b", "c"]);
    for id in 1..=3 {
        w.extra.insert(
            id,
            format!("[vip]\ninterface = \"{IFACE}\"\npriority = 100\n"),
        );
    }
    for a in clients() {
        match a {
            IpAddr::V4(v4) if v4 == w.client.ip => {}
            IpAddr::V4(v4) => w.lab.add_address(&w.client, &format!("{v4}/24")),
            IpAddr::V6(v6) => w.lab.add_address(&w.client, &format!("{v6}/64")),
        }
    }
    w.lab.add_address(&w.client, "2001:db8::110/64");
    let d = doc(&w);
    w.init(&d).await;
    w.join(2, 2).await;
    w.join(3, 3).await;
    w
}

/// The VIP of `src`'s family.
fn vip_for(src: IpAddr) -> SocketAddr {
    match src {
        IpAddr::V4(_) => format!("{VIP4}:{FRONT}"),
        IpAddr::V6(_) => format!("[{VIP6}]:{FRONT6}"),
    }
    .parse()
    .unwrap()
}

/// The server a new connection from `src` through the VIP reaches.
async fn via_vip(w: &World, src: IpAddr) -> Option<String> {
    let c = w.lab.connect_from(&w.client, src, vip_for(src)).await;
    c.ok().map(|c| c.server)
}

/// Waits until both VIPs answer (a node holds them and serves).
async fn wait_vips(w: &World) {
    let (v4, v6) = (
        "198.51.100.100".parse().unwrap(),
        "2001:db8::110".parse().unwrap(),
    );
    wait_until("a node holds both VIPs and serves", DEADLINE, || async {
        via_vip(w, v4).await.is_some() && via_vip(w, v6).await.is_some()
    })
    .await;
}

/// Node `id`'s table `web` as key -> server, from `raftlb table show`.
fn table(w: &World, id: u64) -> BTreeMap<String, String> {
    let out = w.cli(id, &["table", "show", "web", "--json"]);
    if !out.status.success() {
        return BTreeMap::new();
    }
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v[0]["entries"]
        .as_array()
        .map(|es| {
            es.iter()
                .map(|e| {
                    let k = e["key"].as_str().unwrap_or_default().to_string();
                    (k, e["server"].as_str().unwrap_or_default().to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `table` holds every entry of `want` (and maybe more: the probes
/// of [`wait_vips`] write entries too).
fn holds(table: &BTreeMap<String, String>, want: &BTreeMap<String, String>) -> bool {
    want.iter().all(|(k, s)| table.get(k) == Some(s))
}

/// The key a client's entry has, as `table show` prints it.
fn key_of(c: IpAddr) -> String {
    c.to_string()
}

/// Every client reaches the server `want` says, connecting in reverse order
/// after a client new to the table (so that roundrobin alone would deal the
/// servers out differently).
async fn assert_sticks(w: &World, want: &BTreeMap<IpAddr, String>, when: &str) {
    via_vip(w, "2001:db8::110".parse().unwrap())
        .await
        .expect("a new client connects");
    for (c, s) in want.iter().rev() {
        assert_eq!(
            via_vip(w, *c).await.as_deref(),
            Some(s.as_str()),
            "client {c} {when}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_clients_keep_their_servers_through_a_failover_and_a_whole_cluster_restart() {
    let mut w = sticky_world().await;
    wait_vips(&w).await;
    let mut first = BTreeMap::new();
    for c in clients() {
        let s = via_vip(&w, c).await.expect("client connects");
        assert_eq!(via_vip(&w, c).await.as_ref(), Some(&s), "client {c} sticks");
        first.insert(c, s);
    }
    let mut used: Vec<&String> = first.values().collect();
    used.dedup();
    assert!(used.len() > 1, "roundrobin spread new clients: {first:?}");
    let want: BTreeMap<String, String> =
        first.iter().map(|(c, s)| (key_of(*c), s.clone())).collect();
    for id in 1..=3 {
        wait_until("every node holds the 20 entries", DEADLINE, || async {
            holds(&table(&w, id), &want)
        })
        .await;
    }

    // The leader's machine dies.
    let old = w.leader(&[1, 2, 3]).await;
    w.kill(old);
    w.lab.cut(w.host(old));
    let died = Instant::now();
    wait_vips(&w).await;
    eprintln!("clients reach the VIPs again {:?} after", died.elapsed());
    assert_sticks(&w, &first, "after the failover").await;

    // It comes back; then every node restarts (each saves its tables at
    // SIGTERM and reads them back).
    w.lab.heal(w.host(old));
    w.spawn(old, &["run"]);
    w.wait_voters(old, 3).await;
    for id in 1..=3 {
        w.stop(id).await;
    }
    for id in 1..=3 {
        w.spawn(id, &["run"]);
    }
    w.wait_voters(1, 3).await;
    wait_vips(&w).await;
    assert_sticks(&w, &first, "after every node restarted").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_while_entries_are_written_gets_them_when_it_is_back() {
    let w = sticky_world().await;
    wait_vips(&w).await;
    let leader = w.leader(&[1, 2, 3]).await;
    let away = if leader == 3 { 2 } else { 3 };
    w.lab.cut(w.host(away));
    let mut want = BTreeMap::new();
    // The IPv6 clients: the probes of `wait_vips` wrote none of theirs.
    for c in clients().into_iter().skip(10) {
        let s = via_vip(&w, c).await.expect("the leader serves");
        want.insert(key_of(c), s);
    }
    wait_until("the leader holds the entries", DEADLINE, || async {
        holds(&table(&w, leader), &want)
    })
    .await;
    // (The probes' entries, written just before the cut, may or may not
    // have reached it: only those written while it was away count.)
    let there = table(&w, away);
    assert!(
        want.keys().all(|k| !there.contains_key(k)),
        "nothing written while it was cut off reached it: {there:?}"
    );
    w.lab.heal(w.host(away));
    wait_until(
        "the entries reach the node once it is back",
        DEADLINE,
        || async { holds(&table(&w, away), &want) },
    )
    .await;
    assert_eq!(w.procs_started(away), 1, "it was never restarted");
}
