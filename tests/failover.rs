//! The failover scenario of `vagrant/failover`, in the namespace lab: the
//! three nodes of `deploy/three-vms` (lb1 priority 150, lb2 100, a witness
//! with priority 0, preemption on), clients through the VIP, and the VIP
//! holder powered off, its raftlb killed, its network cut, each in turn.
//! The scenario itself is `raftlb_testkit::failover`; this file says what
//! those faults are in the lab.

mod world;

use raftlb_testkit::failover::{self, BoxFuture, Fault, HolderSource, Limits, Machines};
use raftlb_testkit::lab::IFACE;
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use world::holders::Holders;
use world::*;

const VIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 50);
const NAMES: [&str; 3] = ["lb1", "lb2", "witness"];

/// Nodes powered off: they hold nothing, whatever their namespace shows.
type Dead = Arc<Mutex<BTreeSet<u64>>>;

struct Lab3 {
    w: World,
    dead: Dead,
    /// Node 1 takes the VIP back when it returns.
    preempt: bool,
}

struct Sampler {
    holders: Holders,
    dead: Dead,
}

impl HolderSource for Sampler {
    fn sample(&mut self) -> BoxFuture<'_, Vec<u64>> {
        Box::pin(async move {
            let dead = self.dead.lock().unwrap().clone();
            self.holders.now_except(|id| dead.contains(&id)).await
        })
    }
}

impl Lab3 {
    /// The three nodes of `deploy/three-vms`, formed; node 1's preemption
    /// is `preempt`.
    async fn start(preempt: bool) -> Lab3 {
        let mut w = World::new(3, &["a"]);
        for (id, (priority, pre)) in [(1u64, (150, preempt)), (2, (100, true)), (3, (0, true))] {
            w.extra.insert(
                id,
                format!("[vip]\ninterface = \"{IFACE}\"\npriority = {priority}\npreempt = {pre}\n"),
            );
        }
        let doc = format!(
            "{}\n[[vips]]\naddress = \"{VIP}/24\"\ngarp_refresh = \"500ms\"\n",
            lb_doc(&[("a", &w.backend_host(0))])
        );
        w.init(&doc).await;
        w.join(2, 2).await;
        w.join(3, 3).await;
        Lab3 {
            w,
            dead: Dead::default(),
            preempt,
        }
    }

    /// What the unit's `ExecStopPost=raftlb vip release` does.
    fn release(&self, id: u64) {
        let node = self.w.node_file(id);
        let out = self
            .w
            .lab
            .command(self.w.host(id), Path::new(BIN))
            .args(["vip", "release", "--node"])
            .arg(&node)
            .output()
            .unwrap();
        assert!(out.status.success(), "vip release: {out:?}");
    }
}

impl Machines for Lab3 {
    fn nodes(&self) -> Vec<u64> {
        vec![1, 2, 3]
    }

    fn name(&self, id: u64) -> String {
        NAMES[id as usize - 1].to_string()
    }

    fn preferred(&self) -> Option<u64> {
        self.preempt.then_some(1)
    }

    fn holders(&self) -> Box<dyn HolderSource> {
        Box::new(Sampler {
            holders: Holders::new(&self.w, VIP),
            dead: self.dead.clone(),
        })
    }

    async fn inflict(&mut self, id: u64, fault: Fault) {
        match fault {
            Fault::Halt => {
                self.dead.lock().unwrap().insert(id);
                self.w.kill(id);
                self.w.lab.cut(self.w.host(id));
            }
            Fault::Kill => {
                self.w.kill(id);
                self.release(id);
            }
            Fault::Cut => self.w.lab.cut(self.w.host(id)),
        }
    }

    async fn recover(&mut self, id: u64, fault: Fault) {
        match fault {
            Fault::Halt => {
                // A machine that was powered off comes back without the
                // addresses it had.
                let _ = std::process::Command::new("ip")
                    .args(["-n", &self.w.host(id).ns, "addr", "del"])
                    .arg(format!("{VIP}/24"))
                    .args(["dev", IFACE])
                    .output();
                self.w.lab.heal(self.w.host(id));
                self.w.spawn(id, &["run"]);
                self.dead.lock().unwrap().remove(&id);
            }
            // The supervisor starts it again (`Restart=always`).
            Fault::Kill => self.w.spawn(id, &["run"]),
            Fault::Cut => self.w.lab.heal(self.w.host(id)),
        }
    }

    async fn status(&self, id: u64) -> Option<Value> {
        self.w.status(id)
    }
}

fn limits() -> Limits {
    Limits {
        deadline: DEADLINE,
        settle: Duration::from_secs(3),
        sample_every: Duration::from_millis(10),
    }
}

fn check(report: &failover::Report, faults: usize) {
    eprintln!("{}", report.markdown());
    assert_eq!(report.outcomes.len(), faults);
    assert!(
        report.samples > 100,
        "the watcher sampled: {}",
        report.samples
    );
    assert!(
        report.dual.is_empty(),
        "two holders at once: {:?}",
        report.dual
    );
    for o in &report.outcomes {
        assert_ne!(o.new_holder, "witness", "the witness never holds the VIP");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preferred_node_fails_three_ways_and_takes_the_vip_back_each_time() {
    let mut m = Lab3::start(true).await;
    let p = m.w.vip_prober(VIP);
    let report = failover::run(&mut m, &p, &Fault::ALL, &limits()).await;
    check(&report, 3);
    for o in &report.outcomes {
        assert_eq!((o.node.as_str(), o.new_holder.as_str()), ("lb1", "lb2"));
        assert_eq!(
            o.holder_after, "lb1",
            "{:?}: lb1 takes the VIP back",
            o.fault
        );
        assert!(o.takeback_outage.is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_preemption_a_returning_node_leaves_the_vip_where_it_is() {
    let mut m = Lab3::start(false).await;
    let p = m.w.vip_prober(VIP);
    let report = failover::run(&mut m, &p, &Fault::ALL, &limits()).await;
    check(&report, 3);
    // The VIP goes back and forth between lb1 and lb2, and stays where it
    // went each time.
    for o in &report.outcomes {
        assert_eq!(o.holder_after, o.new_holder, "{:?}", o.fault);
        assert!(o.takeback_outage.is_none());
    }
    let hit: Vec<&str> = report.outcomes.iter().map(|o| o.node.as_str()).collect();
    assert_eq!(hit, ["lb1", "lb2", "lb1"]);
}
