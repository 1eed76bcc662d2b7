//! The failover scenario, one code for the network-namespace lab
//! (`tests/failover.rs`) and the Vagrant VMs (`vagrant/failover`, the
//! `raftlb-vms` binary): clients through the VIP, then the VIP holder
//! is powered off, its raftlb is killed with SIGKILL, its network is cut;
//! each time the client outage is measured, every node's addresses are
//! sampled all along (never two holders), the node is brought back, and it
//! must rejoin without taking the VIP back unless it is the preferred node
//! with preemption on. Where the two worlds differ (how to power off a
//! machine, how to see its addresses) is behind [`Machines`].

use crate::probe::Prober;
use serde_json::Value;
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A fault done to the node that holds the VIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The machine is powered off (`vagrant halt --force`; in the lab, the
    /// process SIGKILLed and the link cut at once).
    Halt,
    /// `kill -9` of raftlb; the machine lives on and its supervisor (the
    /// systemd unit: `ExecStopPost=raftlb vip release`, `Restart=always`)
    /// cleans up and starts it again.
    Kill,
    /// The machine's link to the cluster network goes down; it keeps
    /// running, cut off.
    Cut,
}

impl Fault {
    /// Every fault, in the order the scenario does them.
    pub const ALL: [Fault; 3] = [Fault::Halt, Fault::Kill, Fault::Cut];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Halt => "machine powered off",
            Fault::Kill => "raftlb killed (SIGKILL)",
            Fault::Cut => "network cut",
        }
    }
}

/// A boxed future (holder sources run on the watcher's task).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where the watcher reads which nodes hold the VIP now. A node that is
/// powered off holds nothing, whatever its last state was.
pub trait HolderSource: Send + 'static {
    /// The nodes that have the VIP on their interface now.
    fn sample(&mut self) -> BoxFuture<'_, Vec<u64>>;
}

/// The nodes under test and what can be done to them.
pub trait Machines {
    /// Every node's id.
    fn nodes(&self) -> Vec<u64>;
    /// A node's name in reports.
    fn name(&self, id: u64) -> String;
    /// The node that takes the VIP back when it returns (the highest
    /// priority, with preemption on), if any.
    fn preferred(&self) -> Option<u64>;
    /// A source of samples for the watcher.
    fn holders(&self) -> Box<dyn HolderSource>;
    /// Does `fault` to node `id`.
    fn inflict(&mut self, id: u64, fault: Fault) -> impl Future<Output = ()>;
    /// Undoes it: powers the machine on, lets the supervisor restart raftlb,
    /// brings the link up.
    fn recover(&mut self, id: u64, fault: Fault) -> impl Future<Output = ()>;
    /// `raftlb cluster status --json` on node `id`, if it answers.
    fn status(&self, id: u64) -> impl Future<Output = Option<Value>>;
}

/// Time limits of the scenario.
#[derive(Clone, Debug)]
pub struct Limits {
    /// For each wait (a new holder, an answer, a rejoin).
    pub deadline: Duration,
    /// How long the holder must stay put after a node that may not take the
    /// VIP back has rejoined.
    pub settle: Duration,
    /// The watcher's sampling period.
    pub sample_every: Duration,
}

/// What one fault did.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The fault.
    pub fault: Fault,
    /// The node it hit (the VIP holder).
    pub node: String,
    /// The node that took the VIP.
    pub new_holder: String,
    /// The longest time the client went without an answer.
    pub outage: Duration,
    /// From the start of the recovery until the node counts as a caught-up
    /// follower again.
    pub rejoin: Duration,
    /// Who holds the VIP after the rejoin (and the settle time).
    pub holder_after: String,
    /// When the node took the VIP back (it is preferred): the outage then.
    pub takeback_outage: Option<Duration>,
}

/// The whole run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// One per fault.
    pub outcomes: Vec<Outcome>,
    /// Samples the watcher took across all nodes.
    pub samples: u64,
    /// Every sample with more than one holder: when (since the start) and who.
    pub dual: Vec<(Duration, Vec<u64>)>,
    /// Each change of holders the watcher saw, in order.
    pub holders_seen: Vec<Vec<u64>>,
    /// Client connections answered and not.
    pub probes: (usize, u64),
}

impl Report {
    /// A Markdown table of the outcomes, then the watcher's counts.
    pub fn markdown(&self) -> String {
        let ms = |d: Duration| format!("{:.0}", d.as_secs_f64() * 1e3);
        let mut s = String::from(
            "| fault | node | new holder | client outage ms | rejoin s | holder after | take-back outage ms |\n|---|---|---|---|---|---|---|\n",
        );
        for o in &self.outcomes {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {:.1} | {} | {} |",
                o.fault.name(),
                o.node,
                o.new_holder,
                ms(o.outage),
                o.rejoin.as_secs_f64(),
                o.holder_after,
                o.takeback_outage.map(ms).unwrap_or_else(|| "-".into()),
            );
        }
        let _ = writeln!(
            s,
            "\nHolder samples: {} across all nodes, **{} with two holders**; holders seen in turn: {:?}. Client connections: {} answered, {} not.",
            self.samples,
            self.dual.len(),
            self.holders_seen,
            self.probes.0,
            self.probes.1
        );
        s
    }
}

#[derive(Default)]
struct Seen {
    latest: Vec<u64>,
    since: Option<Instant>,
    samples: u64,
    dual: Vec<(Duration, Vec<u64>)>,
    changes: Vec<Vec<u64>>,
}

/// Samples the holders every period on its own task, for the whole run
/// (of the scenario, or of anything else that moves the VIP).
pub struct Watcher {
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Watcher {
    /// Starts sampling `source` every `every`.
    pub fn start(mut source: Box<dyn HolderSource>, every: Duration) -> Watcher {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let shared = seen.clone();
        let task = tokio::spawn(async move {
            let t0 = Instant::now();
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let mut h = source.sample().await;
                h.sort();
                let mut s = shared.lock().unwrap();
                s.samples += 1;
                if h.len() > 1 {
                    s.dual.push((t0.elapsed(), h.clone()));
                }
                if s.changes.last() != Some(&h) {
                    s.changes.push(h.clone());
                }
                if s.latest != h || s.since.is_none() {
                    s.since = Some(Instant::now());
                }
                s.latest = h;
            }
        });
        Watcher { seen, task }
    }

    /// Waits until the holders satisfy `cond`; returns them.
    pub async fn wait(
        &self,
        what: &str,
        deadline: Duration,
        cond: impl Fn(&[u64]) -> bool,
    ) -> Vec<u64> {
        let end = Instant::now() + deadline;
        loop {
            let h = self.seen.lock().unwrap().latest.clone();
            if self.seen.lock().unwrap().since.is_some() && cond(&h) {
                return h;
            }
            assert!(Instant::now() < end, "{what}: holders now {h:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until exactly one node holds the VIP and has for `stable`.
    pub async fn one_holder(&self, deadline: Duration, stable: Duration) -> u64 {
        let end = Instant::now() + deadline;
        loop {
            {
                let s = self.seen.lock().unwrap();
                if s.latest.len() == 1 && s.since.is_some_and(|t| t.elapsed() >= stable) {
                    return s.latest[0];
                }
                assert!(
                    Instant::now() < end,
                    "one stable holder: holders now {:?}",
                    s.latest
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops sampling; puts its counts in `report`.
    pub fn finish(self, report: &mut Report) {
        self.task.abort();
        let s = self.seen.lock().unwrap();
        report.samples = s.samples;
        report.dual = s.dual.clone();
        report.holders_seen = s.changes.clone();
    }
}

/// Whether node `id` is back: its own status names a leader (another
/// node, which it follows, or itself: a preferred node may take the lead
/// back between two looks, on the VMs where a look takes a second), and
/// the leader counts every member as caught up.
pub async fn rejoined<M: Machines>(m: &M, id: u64) -> bool {
    let Some(me) = m.status(id).await else {
        return false;
    };
    let Some(leader) = me["leader"].as_u64() else {
        return false;
    };
    let role = if leader == id { "leader" } else { "follower" };
    if me["role"] != role {
        return false;
    }
    let ls = if leader == id {
        me
    } else {
        let Some(ls) = m.status(leader).await else {
            return false;
        };
        ls
    };
    ls["members"].as_array().is_some_and(|members| {
        members.len() == m.nodes().len()
            && members
                .iter()
                .all(|x| x["role"] == "voter" && x["lag"].as_u64().is_none_or(|l| l == 0))
    })
}

/// Runs `faults` in turn on whoever holds the VIP, with `prober` as the
/// client. Panics (with what it waited for) when a step does not happen in
/// time; the caller checks [`Report::dual`].
pub async fn run<M: Machines>(m: &mut M, prober: &Prober, faults: &[Fault], l: &Limits) -> Report {
    let watcher = Watcher::start(m.holders(), l.sample_every);
    let mut report = Report::default();
    let stable = Duration::from_secs(1);
    for &fault in faults {
        let holder = watcher.one_holder(l.deadline, stable).await;
        prober
            .wait_success_after(Instant::now(), "the client reaches the VIP", l.deadline)
            .await;
        let before = Instant::now();
        m.inflict(holder, fault).await;
        let moved = watcher
            .wait("another node takes the VIP", l.deadline, |h| {
                h.len() == 1 && h[0] != holder
            })
            .await[0];
        let answered = prober
            .wait_success_after(
                Instant::now(),
                "the client reaches the VIP again",
                l.deadline,
            )
            .await;
        let outage = prober.longest_gap(before, answered - Duration::from_nanos(1));

        let recovering = Instant::now();
        m.recover(holder, fault).await;
        let end = Instant::now() + l.deadline;
        while !rejoined(m, holder).await {
            assert!(
                Instant::now() < end,
                "{} rejoins the cluster",
                m.name(holder)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let rejoin = recovering.elapsed();
        let mut takeback_outage = None;
        if m.preferred() == Some(holder) {
            let from = Instant::now();
            watcher
                .wait("the preferred node takes the VIP back", l.deadline, |h| {
                    h == [holder]
                })
                .await;
            let answered = prober
                .wait_success_after(
                    Instant::now(),
                    "the client reaches the VIP back home",
                    l.deadline,
                )
                .await;
            takeback_outage = Some(prober.longest_gap(from, answered - Duration::from_nanos(1)));
        } else {
            let end = Instant::now() + l.settle;
            while Instant::now() < end {
                let h = watcher.wait("a holder", l.deadline, |_| true).await;
                assert_eq!(h, [moved], "{} does not take the VIP back", m.name(holder));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let after = watcher.one_holder(l.deadline, Duration::ZERO).await;
        let outcome = Outcome {
            fault,
            node: m.name(holder),
            new_holder: m.name(moved),
            outage,
            rejoin,
            holder_after: m.name(after),
            takeback_outage,
        };
        eprintln!("failover: {outcome:?}");
        report.outcomes.push(outcome);
    }
    report.probes = prober.counts();
    watcher.finish(&mut report);
    report
}
