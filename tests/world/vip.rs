//! What the VIP tests share: a three-node cluster with `[vip]` settings and
//! one VIP, the every-10-ms check for two holders, and looks at the lab's
//! neighbour tables and addresses.

use super::holders::Holders;
use super::*;
use raftlb_testkit::lab::{Host, IFACE};
use raftlb_testkit::wait_until;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 50);

pub fn lb(w: &World) -> String {
    format!(
        "{}\n[[vips]]\naddress = \"{VIP}/24\"\ngarp_refresh = \"500ms\"\n",
        lb_doc(&[("a", &w.backend_host(0))])
    )
}

pub fn vip_section(priority: u8, preempt: bool) -> String {
    format!("[vip]\ninterface = \"{IFACE}\"\npriority = {priority}\npreempt = {preempt}\n")
}

/// Three nodes with `[vip]` settings (priority, preempt) each, formed.
pub async fn cluster(settings: [(u8, bool); 3]) -> World {
    let mut w = World::new(3, &["a"]);
    for (i, (p, pre)) in settings.into_iter().enumerate() {
        w.extra.insert(i as u64 + 1, vip_section(p, pre));
    }
    let doc = lb(&w);
    w.init(&doc).await;
    w.join(2, 2).await;
    w.join(3, 3).await;
    w
}

/// Polls every namespace every 10 ms while it lives; remembers each sample
/// with more than one holder.
pub struct Invariant {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Samples>,
}

/// How many samples, and each with more than one holder (when, who).
pub type Samples = (u64, Vec<(Duration, Vec<u64>)>);

impl Invariant {
    pub fn start(holders: Holders) -> Invariant {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let t0 = Instant::now();
            let (mut samples, mut bad) = (0u64, Vec::new());
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            while !flag.load(Ordering::Relaxed) {
                tick.tick().await;
                let h = holders.now().await;
                samples += 1;
                if h.len() > 1 {
                    bad.push((t0.elapsed(), h));
                }
            }
            (samples, bad)
        });
        Invariant { stop, task }
    }

    pub async fn finish(self) -> Samples {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

pub fn ip_out(args: &[&str]) -> String {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn mac_of(h: &Host) -> String {
    let link = ip_out(&["-n", &h.ns, "-o", "link", "show", IFACE]);
    link.split("link/ether ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_string()
}

/// The MAC the client's neighbour table has for the VIP, if any.
pub fn client_sees(w: &World) -> Option<String> {
    let n = ip_out(&["-n", &w.client.ns, "neigh", "show", &VIP.to_string()]);
    n.split("lladdr ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .map(str::to_string)
}

/// The nodes among `ids` whose `/metrics` says they hold `VIP`
/// (`raftlb_vip_held{address} 1`).
pub fn held_per_metrics(w: &World, ids: &[u64]) -> Vec<u64> {
    let vip = format!("{VIP}/24");
    ids.iter()
        .copied()
        .filter(|id| {
            let Some(body) = w.admin_get(*id, "/metrics") else {
                return false;
            };
            let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
                .expect("a Prometheus text-format scrape");
            scrape.samples.iter().any(|s| {
                s.metric == "raftlb_vip_held"
                    && s.labels.get("address") == Some(vip.as_str())
                    && matches!(s.value, prometheus_parse::Value::Gauge(v) if v == 1.0)
            })
        })
        .collect()
}

pub fn only(h: &[u64]) -> u64 {
    assert_eq!(h.len(), 1, "exactly one holder: {h:?}");
    h[0]
}

/// Brings node `id` back (link up, `raftlb run` on its data dir) and waits
/// until the cluster counts it again.
pub async fn revive(w: &mut World, id: u64) {
    w.lab.heal(w.host(id));
    w.spawn(id, &["run"]);
    w.wait_voters(id, 3).await;
    wait_until("the leader reaches the revived node", DEADLINE, || async {
        w.status(id).is_some_and(|s| {
            s["role"] == "follower" && s["leader"].as_u64().is_some_and(|l| l != id)
        })
    })
    .await;
    let others: Vec<u64> = (1..=3).filter(|o| *o != id).collect();
    wait_until("the revived node is caught up", DEADLINE, || async {
        w.status(others[0]).is_some_and(|s| {
            s["members"]
                .as_array()
                .is_some_and(|m| m.iter().all(|m| m["lag"].as_u64().is_none_or(|l| l == 0)))
        })
    })
    .await;
}
