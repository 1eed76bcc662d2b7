//! Holding the VIPs: following the lease (take on gaining it, release at
//! once on losing it, or when this node cannot serve, or when a VIP leaves
//! the config), the announcement schedule of each held VIP (a burst, then a
//! refresh), and the report of what is held.

use super::fitness::Fitness;
use super::recorded::record;
use super::report::{unix_ms, VipReport, VipState};
use super::{announce, netlink};
use crate::handle::Cluster;
use raftlb_proto::config::Vip;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

/// A take or a release, for the `notify` command: state, address, reason.
pub(super) type Notice = (&'static str, String, String);

/// A VIP this node holds.
pub(super) struct Held {
    pub(super) vip: Vip,
    pub(super) since: SystemTime,
    /// Announcements sent since taking it.
    pub(super) sent: u64,
    pub(super) next: Option<Instant>,
    pub(super) last: Option<SystemTime>,
}

/// The lifetime (whole seconds) of a held VIP on the interface: half the
/// shortest election timeout, rounded up, at least 1 s. Renewed every
/// quarter of it while held (a stall of the holder shorter than three
/// quarters keeps the address), so the kernel itself removes the address
/// of a holder that crashed or froze soon after it stopped renewing it,
/// and with `election_timeout_min` of 1.2 s or more before any other node
/// can be elected.
pub(super) fn lifetime_for(election_min: std::time::Duration) -> u32 {
    (election_min.as_millis().div_ceil(2000) as u32).max(1)
}

/// The task that holds this node's VIPs.
pub(super) struct Holder {
    pub(super) cluster: Arc<Cluster>,
    pub(super) fitness: Arc<Fitness>,
    data_dir: PathBuf,
    report: Arc<Mutex<VipReport>>,
    pub(super) notify: mpsc::UnboundedSender<Notice>,
    pub(super) nl: Option<netlink::Addresses>,
    pub(super) held: BTreeMap<IpAddr, Held>,
    /// A held VIP's lifetime on the interface, in seconds.
    pub(super) lifetime: u32,
}

/// The VIPs of the committed config (none before one).
fn configured(cluster: &Cluster) -> Vec<Vip> {
    let state = cluster.watch().borrow().state.clone();
    state.parsed_config().map(|c| c.vips).unwrap_or_default()
}

impl Holder {
    /// A holder that holds nothing yet.
    pub(super) fn new(
        cluster: Arc<Cluster>,
        fitness: Arc<Fitness>,
        data_dir: PathBuf,
        report: Arc<Mutex<VipReport>>,
        notify: mpsc::UnboundedSender<Notice>,
        election_min: Duration,
    ) -> Holder {
        Holder {
            cluster,
            fitness,
            data_dir,
            report,
            notify,
            nl: None,
            held: BTreeMap::new(),
            lifetime: lifetime_for(election_min),
        }
    }

    /// Follows the lease, the committed VIPs and this node's fitness until
    /// `stop`; then releases every VIP it holds.
    pub(super) async fn run(mut self, stop: Arc<Notify>) {
        let mut lease = self.cluster.lease();
        let mut applied = self.cluster.watch();
        let mut vips = configured(&self.cluster);
        record(&self.data_dir, &vips);
        let mut released: BTreeMap<IpAddr, (SystemTime, String)> = BTreeMap::new();
        let mut check = tokio::time::interval(Duration::from_secs(1));
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut renew = tokio::time::interval(Duration::from_secs(self.lifetime.into()) / 4);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut unfit = self.fitness.unfit(&vips);
        loop {
            let want = *lease.borrow_and_update() && unfit.is_none();
            self.follow(want, &vips, &unfit, &mut released).await;
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
                _ = renew.tick(), if !self.held.is_empty() => self.renew().await,
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

    /// One turn: releases first (nothing else may wait for them), then
    /// takes what this node should hold (`want`), then sends the
    /// announcements that are due, then publishes the report.
    async fn follow(
        &mut self,
        want: bool,
        vips: &[Vip],
        unfit: &Option<String>,
        released: &mut BTreeMap<IpAddr, (SystemTime, String)>,
    ) {
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
            } else if let Some(u) = unfit {
                format!("this node cannot serve: {u}")
            } else {
                self.lease_lost()
            };
            self.release(addr, &why).await;
            released.insert(addr, (SystemTime::now(), why));
        }
        if want {
            for v in vips {
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
        self.publish(vips, unfit, released);
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

    /// Sends the announcements of `due` and schedules the next ones.
    pub(super) fn announce(&mut self, due: &[IpAddr]) {
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

#[cfg(test)]
mod tests {
    use super::lifetime_for;
    use std::time::Duration;

    #[test]
    fn the_lifetime_is_half_the_election_timeout_rounded_up_at_least_a_second() {
        let ms = Duration::from_millis;
        assert_eq!(lifetime_for(ms(90)), 1);
        assert_eq!(lifetime_for(ms(1200)), 1);
        assert_eq!(lifetime_for(ms(2000)), 1);
        assert_eq!(lifetime_for(ms(2001)), 2);
        assert_eq!(lifetime_for(ms(3000)), 2);
    }
}
