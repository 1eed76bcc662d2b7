//! The virtual IPs: held by the one node that leads with a valid lease (a
//! quorum acknowledged it within the shortest election timeout) and whose
//! proxy can serve. Taking a VIP adds it to `[vip] interface` (rtnetlink)
//! and announces it at once, then `garp_repeat - 1` more times every
//! `garp_interval`, then every `garp_refresh`. Losing the lease removes it
//! at once: the lease lapses before any other node can be elected, so two
//! nodes never hold it together.
//!
//! Also here: the start-up removal of VIPs a crashed process left behind,
//! the node's standing (priority, fitness) replicated for the others, and
//! preemption: a fit node of higher priority, or any fit node while the
//! leader is unfit, campaigns for leadership.

pub mod announce;
pub mod netlink;

use crate::node::Cluster;
use crate::nodefile::{NodeConfig, VipSection};
use raftlb_proto::config::Vip;
use raftlb_proto::{Command, NodeId, NodeView};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

/// Where a node keeps the VIPs of the last config it applied, so that a
/// restart (or `raftlb vip release`) can remove them before anything else.
pub const VIPS_FILE: &str = "vips";

/// What went wrong with a VIP.
#[derive(Debug, thiserror::Error)]
pub enum VipError {
    /// `[vip] interface` names no interface of this machine.
    #[error("no interface {0:?} on this machine ([vip] interface in the node file)")]
    NoInterface(String),
    /// An rtnetlink request failed.
    #[error("cannot {what}: {error}")]
    Netlink {
        /// What was asked.
        what: String,
        /// The kernel's answer.
        error: String,
    },
    /// An announcement could not be sent.
    #[error("cannot announce the VIP: {0}")]
    Announce(String),
    /// The process lacks a capability that holding a VIP needs.
    #[error(
        "holding a VIP needs {0} (adding an address needs CAP_NET_ADMIN, announcing it CAP_NET_RAW): run raftlb as root, or grant them (systemd: AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW)"
    )]
    Capability(&'static str),
}

/// The capabilities holding a VIP needs, checked in the effective set.
pub fn check_capabilities() -> Result<(), VipError> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or(0);
    const NET_ADMIN: u64 = 1 << 12;
    const NET_RAW: u64 = 1 << 13;
    match (eff & NET_ADMIN != 0, eff & NET_RAW != 0) {
        (true, true) => Ok(()),
        (false, true) => Err(VipError::Capability("CAP_NET_ADMIN")),
        (true, false) => Err(VipError::Capability("CAP_NET_RAW")),
        (false, false) => Err(VipError::Capability("CAP_NET_ADMIN and CAP_NET_RAW")),
    }
}

/// The VIPs recorded in `data_dir` (none if the file is absent).
fn recorded(data_dir: &Path) -> Vec<(IpAddr, u8)> {
    let text = std::fs::read_to_string(data_dir.join(VIPS_FILE)).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (a, p) = l.trim().split_once('/')?;
            Some((a.parse().ok()?, p.parse().ok()?))
        })
        .collect()
}

fn record(data_dir: &Path, vips: &[Vip]) {
    let text: String = vips.iter().map(|v| format!("{}\n", v.cidr())).collect();
    let (path, tmp) = (data_dir.join(VIPS_FILE), data_dir.join("vips.tmp"));
    let wrote = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = wrote {
        tracing::error!(file = %path.display(), error = %e, "cannot record the configured VIPs");
    }
}

/// Removes from `[vip] interface` every VIP recorded in the data dir: what a
/// crashed process left behind. Checks the capabilities and the interface
/// first. Returns the addresses it removed. Does nothing without an
/// interface in the node file.
pub async fn release_recorded(node: &NodeConfig) -> Result<Vec<String>, VipError> {
    let Some(name) = &node.vip.interface else {
        return Ok(Vec::new());
    };
    check_capabilities()?;
    let iface = announce::interface(name)?;
    let nl = netlink::Addresses::open()?;
    let mut removed = Vec::new();
    for (addr, prefix) in recorded(&node.data_dir) {
        if nl.remove(iface.index, addr).await? {
            tracing::warn!(vip = %format!("{addr}/{prefix}"), interface = %name, "released VIP: left on the interface by an earlier process");
            removed.push(format!("{addr}/{prefix}"));
        }
    }
    Ok(removed)
}

/// One VIP as the node reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VipState {
    /// `address/prefix`.
    pub address: String,
    /// Whether this node holds it now.
    pub held: bool,
    /// Since when it holds or released it (ms since the Unix epoch).
    pub since_ms: u64,
    /// Why it was last taken or released.
    pub reason: String,
    /// The last announcement sent (ms since the Unix epoch).
    pub last_announce_ms: Option<u64>,
    /// Announcements sent since it was taken.
    pub announcements: u64,
}

/// A node's VIP report (what `cluster status` shows).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VipReport {
    /// The node.
    pub node: NodeId,
    /// Its interface for VIPs.
    pub interface: Option<String>,
    /// Why it may not hold the VIPs now, if so.
    pub unfit: Option<String>,
    /// The configured VIPs and this node's hold on them.
    pub vips: Vec<VipState>,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What decides whether this node's proxy can serve.
pub struct Fitness {
    /// The node's `[vip]` settings.
    pub settings: VipSection,
    /// The error of the last config apply, if it failed.
    pub apply_error: Box<dyn Fn() -> Option<String> + Send + Sync>,
}

impl Fitness {
    /// `None` if this node could hold `vips` now, else why not.
    pub fn unfit(&self, vips: &[Vip]) -> Option<String> {
        if let Some(e) = (self.apply_error)() {
            return Some(format!("config not applied: {e}"));
        }
        if vips.is_empty() {
            return None;
        }
        let Some(name) = &self.settings.interface else {
            return Some("no [vip] interface in the node file".into());
        };
        match announce::interface(name) {
            Ok(i) if i.is_up() && i.is_running() => None,
            Ok(_) => Some(format!("interface {name} is down")),
            Err(e) => Some(e.to_string()),
        }
    }
}

/// The running VIP controller.
pub struct VipControl {
    report: Arc<Mutex<VipReport>>,
    stop: Arc<Notify>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    others: Vec<tokio::task::JoinHandle<()>>,
}

impl VipControl {
    /// Starts holding, reporting and preempting for this node.
    pub fn start(cluster: Arc<Cluster>, fitness: Fitness, data_dir: PathBuf) -> VipControl {
        let report = Arc::new(Mutex::new(VipReport {
            node: cluster.id(),
            interface: fitness.settings.interface.clone(),
            ..Default::default()
        }));
        let fitness = Arc::new(fitness);
        let stop = Arc::new(Notify::new());
        let (notify_tx, notify_rx) = mpsc::unbounded_channel();
        let mut others = Vec::new();
        if let Some(cmd) = fitness.settings.notify.clone() {
            others.push(tokio::spawn(notifier(cmd, notify_rx)));
        }
        others.push(tokio::spawn(standing(cluster.clone(), fitness.clone())));
        let holder = Holder {
            cluster: cluster.clone(),
            fitness,
            data_dir,
            report: report.clone(),
            notify: notify_tx,
            nl: None,
            held: BTreeMap::new(),
        };
        let task = tokio::spawn(holder.run(stop.clone()));
        {
            let report = report.clone();
            cluster.set_reporter(move || {
                serde_json::to_vec(&*report.lock().expect("vip report")).unwrap_or_default()
            });
        }
        VipControl {
            report,
            stop,
            task: Mutex::new(Some(task)),
            others,
        }
    }

    /// This node's report now.
    pub fn report(&self) -> VipReport {
        self.report.lock().expect("vip report").clone()
    }

    /// Releases every VIP this node holds and stops.
    pub async fn stop(&self) {
        self.stop.notify_one();
        let task = self.task.lock().expect("vip task").take();
        if let Some(t) = task {
            let _ = t.await;
        }
        for t in &self.others {
            t.abort();
        }
    }
}

/// A VIP this node holds.
struct Held {
    vip: Vip,
    since: SystemTime,
    /// Announcements sent since taking it.
    sent: u64,
    next: Option<Instant>,
    last: Option<SystemTime>,
}

struct Holder {
    cluster: Arc<Cluster>,
    fitness: Arc<Fitness>,
    data_dir: PathBuf,
    report: Arc<Mutex<VipReport>>,
    notify: mpsc::UnboundedSender<(&'static str, String, String)>,
    nl: Option<netlink::Addresses>,
    held: BTreeMap<IpAddr, Held>,
}

/// The VIPs of the committed config (none before one).
fn configured(cluster: &Cluster) -> Vec<Vip> {
    let state = cluster.watch().borrow().state.clone();
    state.parsed_config().map(|c| c.vips).unwrap_or_default()
}

impl Holder {
    async fn run(mut self, stop: Arc<Notify>) {
        let mut lease = self.cluster.lease();
        let mut applied = self.cluster.watch();
        let mut vips = configured(&self.cluster);
        record(&self.data_dir, &vips);
        let mut released: BTreeMap<IpAddr, (SystemTime, String)> = BTreeMap::new();
        let mut check = tokio::time::interval(Duration::from_secs(1));
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut unfit = self.fitness.unfit(&vips);
        loop {
            let has_lease = *lease.borrow_and_update();
            let want = has_lease && unfit.is_none();
            // Releases first: nothing else may wait for them.
            let drop_now: Vec<IpAddr> = self
                .held
                .keys()
                .filter(|a| !want || !vips.iter().any(|v| v.address == **a))
                .copied()
                .collect();
            for addr in drop_now {
                let why = if !vips.iter().any(|v| v.address == addr) {
                    "removed from the config".to_string()
                } else if let Some(u) = &unfit {
                    format!("this node cannot serve: {u}")
                } else {
                    self.lease_lost()
                };
                self.release(addr, &why).await;
                released.insert(addr, (SystemTime::now(), why));
            }
            if want {
                for v in &vips {
                    if !self.held.contains_key(&v.address) {
                        self.take(v).await;
                    }
                }
            }
            let now = Instant::now();
            let due: Vec<IpAddr> = self
                .held
                .iter()
                .filter(|(_, h)| h.next.is_some_and(|n| n <= now))
                .map(|(a, _)| *a)
                .collect();
            if !due.is_empty() {
                self.announce(&due);
            }
            self.publish(&vips, &unfit, &released);
            let next = self.held.values().filter_map(|h| h.next).min();
            let announce_due = async {
                match next {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = stop.notified() => break,
                r = lease.changed() => if r.is_err() { break },
                r = applied.changed() => {
                    if r.is_err() { break }
                    let now_vips = configured(&self.cluster);
                    if now_vips != vips {
                        vips = now_vips;
                        record(&self.data_dir, &vips);
                    }
                    unfit = self.fitness.unfit(&vips);
                }
                _ = announce_due => {}
                _ = check.tick() => {
                    unfit = self.fitness.unfit(&vips);
                    self.reconcile(&vips).await;
                }
            }
        }
        let all: Vec<IpAddr> = self.held.keys().copied().collect();
        for addr in all {
            self.release(addr, "raftlb is stopping").await;
        }
    }

    /// Why the lease is gone, as the log and `cluster status` say it.
    fn lease_lost(&self) -> String {
        let s = self.cluster.status();
        match (s.role, s.millis_since_quorum_ack) {
            ("leader", Some(ms)) => format!("lease lost: no quorum heard for {ms} ms"),
            ("leader", None) => "lease lost: no quorum heard".into(),
            (role, _) => format!("lease lost: this node is now a {role}"),
        }
    }

    fn index(&self) -> Option<(u32, String)> {
        let name = self.fitness.settings.interface.clone()?;
        announce::interface(&name).ok().map(|i| (i.index, name))
    }

    fn nl(&mut self) -> Option<&netlink::Addresses> {
        if self.nl.is_none() {
            match netlink::Addresses::open() {
                Ok(nl) => self.nl = Some(nl),
                Err(e) => tracing::error!(error = %e, "VIP: no netlink"),
            }
        }
        self.nl.as_ref()
    }

    async fn take(&mut self, v: &Vip) {
        let Some((index, iface)) = self.index() else {
            return;
        };
        let Some(nl) = self.nl() else { return };
        if let Err(e) = nl.add(index, v.address, v.prefix).await {
            tracing::error!(vip = %v.cidr(), error = %e, "cannot take the VIP");
            return;
        }
        let s = self.cluster.status();
        tracing::info!(vip = %v.cidr(), interface = %iface, term = s.term, "took VIP: leader with a quorum lease");
        self.held.insert(
            v.address,
            Held {
                vip: v.clone(),
                since: SystemTime::now(),
                sent: 0,
                next: Some(Instant::now()),
                last: None,
            },
        );
        self.announce(&[v.address]);
        let _ = self.notify.send((
            "MASTER",
            v.cidr(),
            "took: leader with a quorum lease".into(),
        ));
    }

    async fn release(&mut self, addr: IpAddr, why: &str) {
        let Some(h) = self.held.remove(&addr) else {
            return;
        };
        let cidr = h.vip.cidr();
        match self.index() {
            Some((index, iface)) => match self.nl() {
                Some(nl) => match nl.remove(index, addr).await {
                    Ok(_) => {
                        tracing::warn!(vip = %cidr, interface = %iface, reason = %why, "released VIP")
                    }
                    Err(e) => tracing::error!(vip = %cidr, error = %e, "cannot release the VIP"),
                },
                None => tracing::error!(vip = %cidr, "cannot release the VIP: no netlink"),
            },
            None => {
                tracing::warn!(vip = %cidr, reason = %why, "released VIP (its interface is gone)")
            }
        }
        let _ = self.notify.send(("BACKUP", cidr, why.to_string()));
    }

    /// Sends the announcements of `due` and schedules the next ones.
    fn announce(&mut self, due: &[IpAddr]) {
        let Some(name) = self.fitness.settings.interface.clone() else {
            return;
        };
        let result = announce::interface(&name).and_then(|i| announce::send(&i, due));
        let now = Instant::now();
        for addr in due {
            let Some(h) = self.held.get_mut(addr) else {
                continue;
            };
            match &result {
                Ok(()) => {
                    h.sent += 1;
                    h.last = Some(SystemTime::now());
                }
                Err(e) => tracing::warn!(vip = %h.vip.cidr(), error = %e, "announcement not sent"),
            }
            h.next = if h.sent < u64::from(h.vip.garp_repeat) && result.is_ok() {
                Some(now + h.vip.garp_interval)
            } else {
                h.vip.garp_refresh.map(|r| now + r)
            };
        }
    }

    /// Makes the interface agree: a held VIP someone removed goes back (and
    /// is announced again); a configured VIP this node does not hold goes
    /// (a crashed process's leftover, or one added by hand).
    async fn reconcile(&mut self, vips: &[Vip]) {
        let Some((index, iface)) = self.index() else {
            return;
        };
        let Some(nl) = self.nl() else { return };
        let present = match nl.list(index).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the interface's addresses");
                return;
            }
        };
        let mut readd = Vec::new();
        let mut stale = Vec::new();
        for v in vips {
            let on = present.iter().any(|(a, _)| *a == v.address);
            match (self.held.contains_key(&v.address), on) {
                (true, false) => readd.push(v.clone()),
                (false, true) => stale.push(v.clone()),
                _ => {}
            }
        }
        for v in readd {
            tracing::warn!(vip = %v.cidr(), interface = %iface, "held VIP was removed from the interface: adding it back");
            if let Some(nl) = self.nl() {
                if let Err(e) = nl.add(index, v.address, v.prefix).await {
                    tracing::error!(vip = %v.cidr(), error = %e, "cannot add the VIP back");
                }
            }
            self.announce(&[v.address]);
        }
        for v in stale {
            if let Some(nl) = self.nl() {
                match nl.remove(index, v.address).await {
                    Ok(_) => {
                        tracing::warn!(vip = %v.cidr(), interface = %iface, reason = "this node does not hold it (left by a crash, or added by hand)", "released VIP")
                    }
                    Err(e) => {
                        tracing::error!(vip = %v.cidr(), error = %e, "cannot remove a stale VIP")
                    }
                }
            }
        }
    }

    fn publish(
        &self,
        vips: &[Vip],
        unfit: &Option<String>,
        released: &BTreeMap<IpAddr, (SystemTime, String)>,
    ) {
        let states = vips
            .iter()
            .map(|v| match self.held.get(&v.address) {
                Some(h) => VipState {
                    address: v.cidr(),
                    held: true,
                    since_ms: unix_ms(h.since),
                    reason: "leader with a quorum lease".into(),
                    last_announce_ms: h.last.map(unix_ms),
                    announcements: h.sent,
                },
                None => {
                    let (since, reason) = released
                        .get(&v.address)
                        .cloned()
                        .unwrap_or((SystemTime::UNIX_EPOCH, "never held".into()));
                    VipState {
                        address: v.cidr(),
                        held: false,
                        since_ms: unix_ms(since),
                        reason,
                        last_announce_ms: None,
                        announcements: 0,
                    }
                }
            })
            .collect();
        let mut r = self.report.lock().expect("vip report");
        r.vips = states;
        r.unfit = unfit.clone();
    }
}

/// Runs the `notify` command for each take and release, in order:
/// `COMMAND MASTER|BACKUP ADDRESS/PREFIX REASON` through `sh -c`.
async fn notifier(cmd: String, mut rx: mpsc::UnboundedReceiver<(&'static str, String, String)>) {
    while let Some((state, vip, reason)) = rx.recv().await {
        let child = tokio::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("{cmd} \"$@\""))
            .arg("raftlb-notify")
            .args([state, &vip, &reason])
            .kill_on_drop(true)
            .spawn();
        let status = match child {
            Ok(mut c) => tokio::time::timeout(Duration::from_secs(30), c.wait()).await,
            Err(e) => {
                tracing::error!(command = %cmd, error = %e, "notify: cannot run");
                continue;
            }
        };
        match status {
            Ok(Ok(s)) if s.success() => {
                tracing::info!(command = %cmd, state, vip = %vip, "notify ran")
            }
            Ok(Ok(s)) => {
                tracing::warn!(command = %cmd, state, vip = %vip, status = %s, "notify failed")
            }
            Ok(Err(e)) => tracing::error!(command = %cmd, error = %e, "notify: cannot wait"),
            Err(_) => {
                tracing::error!(command = %cmd, state, vip = %vip, "notify ran over 30 s: killed")
            }
        }
    }
}

/// Between two ranks of candidates, more than the election loop's random
/// spread (20 ms) and a round trip: the better-ranked node campaigns first.
const RANK_STEP: Duration = Duration::from_millis(25);

/// How much later than the best-ranked node this one campaigns when the
/// leader falls silent: the voters other than the leader, ranked fit first,
/// then by priority (high first), then by id, `RANK_STEP` apart. So the
/// preferred node takes over directly (no election, then a preemption), and
/// two nodes never campaign together, even at equal priorities.
fn campaign_delay(
    me: NodeId,
    mine: &NodeView,
    state: &raftlb_proto::ReplicatedState,
    s: &raftlb_cluster::ClusterStatus,
) -> Duration {
    let key = |id: NodeId| {
        let v = if id == me {
            Some(mine)
        } else {
            state.nodes.get(&id)
        };
        let fit = v.is_none_or(|v| v.unfit.is_none());
        let priority = v.map_or(100, |v| v.priority);
        (!fit, std::cmp::Reverse(priority), id)
    };
    let mut ranked: Vec<NodeId> = s
        .members
        .iter()
        .filter(|m| m.role == "voter" && Some(m.id) != s.leader)
        .map(|m| m.id)
        .collect();
    ranked.sort_by_key(|id| key(*id));
    let rank = ranked
        .iter()
        .position(|id| *id == me)
        .unwrap_or(ranked.len());
    RANK_STEP * rank as u32
}

/// How long a fit, caught-up node of higher priority waits, following a
/// leader it would replace, before it campaigns (plus a little per
/// priority step, so that the highest-priority node goes first).
const PREEMPT_DELAY: Duration = Duration::from_secs(1);

/// Keeps this node's standing (priority, preempt, fitness) in the
/// replicated state, and campaigns when this node should lead instead of
/// the current leader: it is fit and the leader is not, or it may preempt
/// and its priority is higher than the leader's.
async fn standing(cluster: Arc<Cluster>, fitness: Arc<Fitness>) {
    let me = cluster.id();
    let settings = fitness.settings.clone();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut better_since: Option<(NodeId, Instant)> = None;
    let mut last_report = Instant::now() - Duration::from_secs(3600);
    // The configured VIPs, parsed once per config version.
    let mut cache: (u64, Vec<Vip>) = (0, Vec::new());
    loop {
        tick.tick().await;
        let state = cluster.watch().borrow().state.clone();
        if state.config_version() != cache.0 {
            let parsed = state.parsed_config().map(|c| c.vips).unwrap_or_default();
            cache = (state.config_version(), parsed);
        }
        let vips = &cache.1;
        let view = NodeView {
            priority: settings.priority,
            preempt: settings.preempt,
            unfit: fitness.unfit(vips),
        };
        let known = state.nodes.get(&me);
        if known != Some(&view) && last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            let cmd = Command::ReportNode {
                node: me,
                view: view.clone(),
            };
            if let Err(e) = cluster.write(cmd).await {
                tracing::debug!(error = %e, "standing not committed; will retry");
            }
        }
        let s = cluster.status();
        cluster.set_campaign_delay(campaign_delay(me, &view, &state, &s));
        // Preemption: only with VIPs to hold, from a follower that hears
        // its leader and has applied all it has.
        let leader = match s.leader {
            Some(l) if l != me && s.role == "follower" && !vips.is_empty() => l,
            _ => {
                better_since = None;
                continue;
            }
        };
        let caught_up = s.last_log_index.is_some() && s.last_log_index == s.applied_index;
        let theirs = state.nodes.get(&leader);
        let reason = match theirs {
            _ if view.unfit.is_some() || !caught_up => None,
            Some(t) if t.unfit.is_some() => Some(format!(
                "leader {leader} cannot serve ({})",
                t.unfit.as_deref().unwrap_or("")
            )),
            Some(t) if view.preempt && view.priority > t.priority => Some(format!(
                "leader {leader} has priority {} < {} (preempt)",
                t.priority, view.priority
            )),
            _ => None,
        };
        let Some(reason) = reason else {
            better_since = None;
            continue;
        };
        let since = match better_since {
            Some((l, t)) if l == leader => t,
            _ => {
                better_since = Some((leader, Instant::now()));
                continue;
            }
        };
        let wait = PREEMPT_DELAY + Duration::from_millis(4 * u64::from(255 - view.priority));
        if since.elapsed() >= wait {
            tracing::info!(reason = %reason, "campaigning for leadership");
            if let Err(e) = cluster.raft().trigger().elect().await {
                tracing::warn!(error = %e, "cannot campaign");
            }
            better_since = None;
        }
    }
}
