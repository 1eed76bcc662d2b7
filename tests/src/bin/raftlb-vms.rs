//! `raftlb-vms`: what `vagrant/run` checks on the three Vagrant VMs of
//! `vagrant/` (lb1 priority 150 with preemption, lb2 100, the witness),
//! from inside `vagrant/run`'s network namespace, where libvirt's networks
//! live and this machine is 198.51.100.1 on the VMs' private network.
//!
//! ```text
//! raftlb-vms failover SSH_CONFIG REPORT.md         # the failover scenario
//! raftlb-vms package SSH_CONFIG NEW.deb REPORT.md  # rolling upgrade, reload, leave, purge, join
//! ```
//! SSH_CONFIG: `vagrant ssh-config` of the three VMs.
//!
//! `failover` plays `raftlb_testkit::failover` with these faults, done to
//! whichever VM holds the VIP:
//! - powered off: `virsh destroy` (the power cord; what `vagrant halt
//!   --force` does on libvirt), then `virsh start`: it boots with no state
//!   in memory and its unit starts raftlb;
//! - raftlb killed: `systemctl kill -s KILL raftlb` in the VM; the unit's
//!   `ExecStopPost=raftlb vip release` and `Restart=always` do the rest,
//!   with the restart held back (a runtime drop-in, `RestartSec=15s`)
//!   longer than an election: restarted at once, the node would be back
//!   as the leader before anyone noticed (seen here with 3-4 s elections),
//!   and the VIP would not move; the recovery starts it;
//! - network cut: `virsh domif-setlink` of its interface on the private
//!   network, down then up (ssh keeps working over the management network).
//!
//! `package` upgrades the nodes one at a time to NEW.deb (the witness, the
//! standby, then the holder), reloads a changed `lb.toml` and one with a
//! mistake, takes the witness out with `cluster leave`, removes and purges
//! its package, and installs and joins it again as a fresh node.
//!
//! Both keep a client on the VIP all along (`GET /` every 20 ms) and stream
//! each VM's addresses over ssh (`ip monitor`, plus a state line every
//! 0.5 s), so a VIP on two VMs at once is seen within milliseconds. They
//! write their report as Markdown and exit 1 when a check fails.

use raftlb_testkit::failover::{self, BoxFuture, Fault, HolderSource, Limits, Machines, Watcher};
use raftlb_testkit::probe::{Expect, Prober};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const VIP: &str = "198.51.100.50";
/// Node ids as in `deploy/three-vms`.
const NAMES: [&str; 3] = ["lb1", "lb2", "witness"];
/// The VMs' interface on the private network.
const IFACE: &str = "eth1";
/// The runtime drop-in that holds the unit's restart back after the kill.
const HELD: &str = "/run/systemd/system/raftlb.service.d";
/// libvirt's network that interface is on (the Vagrantfile's).
const NETWORK: &str = "raftlb-l2";

/// What each VM's stream last said: whether the VIP is on its interface,
/// and when an `ip monitor` event (not a periodic state line) last came.
#[derive(Clone, Copy, Default)]
struct Seen {
    held: bool,
    event: Option<Instant>,
}

type Shared = Arc<Mutex<BTreeMap<u64, Seen>>>;

struct Vms {
    ssh_config: PathBuf,
    control: PathBuf,
    /// libvirt domain and private-network MAC of each node.
    domains: BTreeMap<u64, (String, String)>,
    seen: Shared,
    /// Powered off: holds nothing, whatever its stream last said.
    dead: Arc<Mutex<BTreeSet<u64>>>,
}

fn name(id: u64) -> &'static str {
    NAMES[id as usize - 1]
}

fn ssh(config: &Path, control: &Path, id: u64, script: &str) -> Command {
    let mut c = Command::new("ssh");
    c.arg("-F")
        .arg(config)
        .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=5"])
        .args(["-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=3"])
        .args(["-o", "ControlMaster=auto", "-o", "ControlPersist=300"])
        .arg("-o")
        .arg(format!("ControlPath={}/%h", control.display()))
        .arg(name(id))
        .arg(script)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    c
}

async fn virsh(args: &[&str]) -> Result<String, String> {
    let out = Command::new("virsh")
        .args(["-c", "qemu:///system"])
        .args(args)
        .output()
        .await
        .map_err(|e| format!("virsh: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "virsh {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The domain Vagrant made for `vm` (`<project>_<vm>`) and the MAC of its
/// interface on [`NETWORK`].
async fn domain(vm: &str) -> Result<(String, String), String> {
    let list = virsh(&["list", "--all", "--name"]).await?;
    let dom = list
        .lines()
        .map(str::trim)
        .find(|d| d.ends_with(&format!("_{vm}")))
        .ok_or_else(|| format!("no libvirt domain for {vm} in {list:?}"))?
        .to_string();
    let ifaces = virsh(&["domiflist", &dom]).await?;
    let mac = ifaces
        .lines()
        .find(|l| l.split_whitespace().nth(2) == Some(NETWORK))
        .and_then(|l| l.split_whitespace().last())
        .ok_or_else(|| format!("{dom} has no interface on {NETWORK}: {ifaces}"))?
        .to_string();
    Ok((dom, mac))
}

/// Streams one VM's view of the VIP into `seen`, reconnecting while the VM
/// is down: an `ip monitor` line for every change, and the state every
/// 0.5 s (taken only when no change came in the last second, so a state
/// line read just before a change cannot undo it).
async fn stream(config: PathBuf, control: PathBuf, id: u64, seen: Shared) {
    let script = format!(
        "ip -o monitor address | grep --line-buffered ' {VIP}/' & \
         while :; do if ip -o addr show dev {IFACE} | grep -q ' {VIP}/'; then echo state 1; else echo state 0; fi; sleep 0.5; done"
    );
    loop {
        let child = ssh(&config, &control, id, &script)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn();
        if let Ok(mut child) = child {
            let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let now = Instant::now();
                let mut all = seen.lock().unwrap();
                let s = all.entry(id).or_default();
                if let Some(state) = line.strip_prefix("state ") {
                    if s.event.is_none_or(|t| now - t > Duration::from_secs(1)) {
                        s.held = state == "1";
                    }
                } else {
                    s.held = !line.starts_with("Deleted");
                    s.event = Some(now);
                }
            }
            let _ = child.kill().await;
        }
        seen.lock().unwrap().insert(id, Seen::default());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

struct Sampler {
    seen: Shared,
    dead: Arc<Mutex<BTreeSet<u64>>>,
}

impl HolderSource for Sampler {
    fn sample(&mut self) -> BoxFuture<'_, Vec<u64>> {
        let dead = self.dead.lock().unwrap().clone();
        let held = self
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(id, s)| s.held && !dead.contains(id))
            .map(|(id, _)| *id)
            .collect();
        Box::pin(async move { held })
    }
}

impl Vms {
    async fn new(ssh_config: PathBuf) -> Result<Vms, String> {
        let control = std::env::temp_dir().join(format!("raftlb-failover-{}", std::process::id()));
        std::fs::create_dir_all(&control).map_err(|e| e.to_string())?;
        let mut domains = BTreeMap::new();
        for id in 1..=3 {
            domains.insert(id, domain(name(id)).await?);
        }
        let seen = Shared::default();
        for id in 1..=3 {
            tokio::spawn(stream(
                ssh_config.clone(),
                control.clone(),
                id,
                seen.clone(),
            ));
        }
        Ok(Vms {
            ssh_config,
            control,
            domains,
            seen,
            dead: Default::default(),
        })
    }

    /// Runs `script` in VM `id`; its stdout if it succeeded in 30 s.
    async fn run(&self, id: u64, script: &str) -> Option<Vec<u8>> {
        self.run_for(id, script, Duration::from_secs(30)).await
    }

    async fn run_for(&self, id: u64, script: &str, within: Duration) -> Option<Vec<u8>> {
        let out = tokio::time::timeout(
            within,
            ssh(&self.ssh_config, &self.control, id, script).output(),
        )
        .await
        .ok()?
        .ok()?;
        out.status.success().then_some(out.stdout)
    }

    /// Copies a file of this machine to VM `id`.
    async fn copy(&self, id: u64, from: &str, to: &str) -> Result<(), String> {
        let st = Command::new("scp")
            .arg("-F")
            .arg(&self.ssh_config)
            .args(["-q", "-o", "BatchMode=yes"])
            .arg("-o")
            .arg(format!("ControlPath={}/%h", self.control.display()))
            .arg(from)
            .arg(format!("{}:{to}", name(id)))
            .status()
            .await
            .map_err(|e| format!("scp: {e}"))?;
        st.success()
            .then_some(())
            .ok_or_else(|| format!("scp {from} to {}: {st}", name(id)))
    }

    async fn virsh(&self, args: &[&str]) {
        if let Err(e) = virsh(args).await {
            panic!("{e}");
        }
    }
}

impl Drop for Vms {
    fn drop(&mut self) {
        // The ssh connections kept for reuse (ControlPersist) end with us.
        for id in 1..=3 {
            let _ = std::process::Command::new("ssh")
                .arg("-F")
                .arg(&self.ssh_config)
                .arg("-o")
                .arg(format!("ControlPath={}/%h", self.control.display()))
                .args(["-q", "-O", "exit", name(id)])
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.control);
    }
}

impl Machines for Vms {
    fn nodes(&self) -> Vec<u64> {
        vec![1, 2, 3]
    }

    fn name(&self, id: u64) -> String {
        name(id).to_string()
    }

    fn preferred(&self) -> Option<u64> {
        Some(1)
    }

    fn holders(&self) -> Box<dyn HolderSource> {
        Box::new(Sampler {
            seen: self.seen.clone(),
            dead: self.dead.clone(),
        })
    }

    async fn inflict(&mut self, id: u64, fault: Fault) {
        let (dom, mac) = self.domains[&id].clone();
        match fault {
            Fault::Halt => {
                self.dead.lock().unwrap().insert(id);
                self.virsh(&["destroy", &dom]).await;
            }
            Fault::Kill => {
                let script = format!(
                    "sudo mkdir -p {HELD} && printf '[Service]\\nRestartSec=15s\\n' | sudo tee {HELD}/held.conf >/dev/null \
                     && sudo systemctl daemon-reload && sudo systemctl kill -s KILL raftlb"
                );
                self.run(id, &script)
                    .await
                    .expect("systemctl kill in the VM");
            }
            Fault::Cut => self.virsh(&["domif-setlink", &dom, &mac, "down"]).await,
        }
    }

    async fn recover(&mut self, id: u64, fault: Fault) {
        let (dom, mac) = self.domains[&id].clone();
        match fault {
            Fault::Halt => {
                self.virsh(&["start", &dom]).await;
                self.dead.lock().unwrap().remove(&id);
            }
            // The restart that was held back, now.
            Fault::Kill => {
                let script = format!(
                    "sudo rm -rf {HELD} && sudo systemctl daemon-reload && sudo systemctl start raftlb"
                );
                self.run_for(id, &script, DEADLINE)
                    .await
                    .expect("start raftlb again in the VM");
            }
            Fault::Cut => self.virsh(&["domif-setlink", &dom, &mac, "up"]).await,
        }
    }

    async fn status(&self, id: u64) -> Option<Value> {
        let out = self.run(id, "raftlb cluster status --json").await?;
        serde_json::from_slice(&out).ok()
    }
}

/// The checks of `tests/failover.rs` with preemption on.
fn check(report: &failover::Report) -> Vec<String> {
    let mut bad = Vec::new();
    if report.outcomes.len() != Fault::ALL.len() {
        bad.push(format!(
            "{} faults done of {}",
            report.outcomes.len(),
            Fault::ALL.len()
        ));
    }
    if !report.dual.is_empty() {
        bad.push(format!("two holders at once: {:?}", report.dual));
    }
    for o in &report.outcomes {
        if (o.node.as_str(), o.new_holder.as_str()) != ("lb1", "lb2") {
            bad.push(format!(
                "{:?}: {} failed, {} took the VIP (lb1, lb2 expected)",
                o.fault, o.node, o.new_holder
            ));
        }
        if o.holder_after != "lb1" || o.takeback_outage.is_none() {
            bad.push(format!(
                "{:?}: lb1 did not take the VIP back ({} holds it)",
                o.fault, o.holder_after
            ));
        }
    }
    bad
}

fn prober() -> Prober {
    Prober::start(
        None,
        SocketAddr::new(VIP.parse().unwrap(), 80),
        Expect::Http200,
        Duration::from_millis(20),
        Duration::from_secs(1),
    )
}

/// The VMs run under software emulation here: a powered-off one takes a
/// minute or more to boot and rejoin.
const DEADLINE: Duration = Duration::from_secs(300);

async fn failover(vms: &mut Vms) -> (String, Vec<String>) {
    let prober = prober();
    let limits = Limits {
        deadline: DEADLINE,
        settle: Duration::from_secs(10),
        sample_every: Duration::from_millis(10),
    };
    let report = failover::run(vms, &prober, &Fault::ALL, &limits).await;
    (report.markdown(), check(&report))
}

/// Waits until `cond` holds on node `id`'s status.
async fn wait_status(
    vms: &Vms,
    id: u64,
    what: &str,
    cond: impl Fn(&Value) -> bool,
) -> Result<(), String> {
    let end = Instant::now() + DEADLINE;
    loop {
        if vms.status(id).await.is_some_and(|s| cond(&s)) {
            return Ok(());
        }
        if Instant::now() > end {
            return Err(format!("{}: {what}", name(id)));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_rejoined(vms: &Vms, id: u64) -> Result<(), String> {
    let end = Instant::now() + DEADLINE;
    while !failover::rejoined(vms, id).await {
        if Instant::now() > end {
            return Err(format!("{} did not rejoin", name(id)));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

fn versions(all: &[Option<Value>]) -> Vec<u64> {
    all.iter()
        .map(|s| {
            s.as_ref()
                .and_then(|s| s["config_version"].as_u64())
                .unwrap_or(0)
        })
        .collect()
}

/// The package's life on a running cluster; see the module's doc.
async fn package(vms: &mut Vms, deb: &str) -> (String, Vec<String>) {
    let prober = prober();
    let watcher = Watcher::start(vms.holders(), Duration::from_millis(10));
    let mut bad = Vec::new();
    let mut md = String::from("| step | node | took s | client outage ms |\n|---|---|---|---|\n");
    let res = package_steps(vms, deb, &prober, &watcher, &mut md).await;
    if let Err(e) = res {
        bad.push(e);
    }
    let mut report = failover::Report {
        probes: prober.counts(),
        ..Default::default()
    };
    watcher.finish(&mut report);
    if !report.dual.is_empty() {
        bad.push(format!("two holders at once: {:?}", report.dual));
    }
    let _ = std::fmt::Write::write_fmt(
        &mut md,
        format_args!(
            "\nHolder samples: {}, **{} with two holders**; holders seen in turn: {:?}. Client connections: {} answered, {} not.\n",
            report.samples,
            report.dual.len(),
            report.holders_seen,
            report.probes.0,
            report.probes.1
        ),
    );
    (md, bad)
}

/// A row of the package report: `step` on node `id` began at `from` and is
/// done; the longest time the client went unanswered from then until it
/// is answered again.
async fn row(md: &mut String, prober: &Prober, step: &str, id: u64, from: Instant) {
    let took = from.elapsed();
    let answered = prober
        .wait_success_after(Instant::now(), "the client is served", DEADLINE)
        .await;
    let outage = prober.longest_gap(from, answered - Duration::from_nanos(1));
    let _ = std::fmt::Write::write_fmt(
        md,
        format_args!(
            "| {step} | {} | {:.1} | {:.0} |\n",
            name(id),
            took.as_secs_f64(),
            outage.as_secs_f64() * 1e3
        ),
    );
}

async fn package_steps(
    vms: &mut Vms,
    deb: &str,
    prober: &Prober,
    watcher: &Watcher,
    md: &mut String,
) -> Result<(), String> {
    let version = Path::new(deb)
        .file_name()
        .and_then(|f| f.to_str())
        .and_then(|f| f.split('_').nth(1))
        .ok_or_else(|| format!("{deb}: not raftlb_VERSION_ARCH.deb"))?
        .to_string();
    watcher
        .wait("lb1 holds the VIP", DEADLINE, |h| h == [1])
        .await;
    let sum = "md5sum /etc/raftlb/node.toml /etc/raftlb/lb.toml";

    // A rolling upgrade: the witness, the standby, then the holder; each
    // restarts on the new package (postinst: try-restart, which drains
    // first) and must rejoin with its state before the next one goes.
    for id in [3, 2, 1] {
        vms.copy(id, deb, "/tmp/raftlb-new.deb").await?;
        let confs = vms.run(id, sum).await;
        let from = Instant::now();
        vms.run_for(id, "sudo dpkg -i /tmp/raftlb-new.deb", DEADLINE)
            .await
            .ok_or_else(|| format!("{}: dpkg -i of {deb} failed", name(id)))?;
        let got = vms
            .run(id, "dpkg-query -W -f='${Version}' raftlb")
            .await
            .unwrap_or_default();
        if String::from_utf8_lossy(&got) != version {
            return Err(format!(
                "{}: dpkg says {:?}, not {version}",
                name(id),
                String::from_utf8_lossy(&got)
            ));
        }
        if vms.run(id, sum).await != confs {
            return Err(format!("{}: the upgrade changed /etc/raftlb", name(id)));
        }
        wait_rejoined(vms, id).await?;
        if id == 1 {
            watcher
                .wait("lb1 takes the VIP back after its upgrade", DEADLINE, |h| {
                    h == [1]
                })
                .await;
        }
        row(md, prober, &format!("upgrade to {version}"), id, from).await;
    }

    // A reload of a changed lb.toml on the standby: committed once,
    // applied on every node.
    let before = versions(&[
        vms.status(1).await,
        vms.status(2).await,
        vms.status(3).await,
    ]);
    let from = Instant::now();
    vms.run(2, "sudo sed -i 's/inter = \"1s\" },$/inter = \"2s\" },/' /etc/raftlb/lb.toml && grep -q 'inter = \"2s\"' /etc/raftlb/lb.toml && sudo systemctl reload raftlb")
        .await
        .ok_or("lb2: edit lb.toml and reload")?;
    let want = before[1] + 1;
    for id in [1, 2, 3] {
        wait_status(
            vms,
            id,
            &format!("config version {want} after the reload"),
            |s| s["config_version"].as_u64() == Some(want),
        )
        .await?;
    }
    row(md, prober, "reload (changed lb.toml)", 2, from).await;

    // A reload with a mistake: refused with the file and line, nothing
    // changes, the node runs on.
    let from = Instant::now();
    let since = vms
        .run(2, "date +%s")
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    vms.run(2, "echo 'garp_refreshh = \"1s\"' | sudo tee -a /etc/raftlb/lb.toml >/dev/null && sudo systemctl reload raftlb")
        .await
        .ok_or("lb2: a mistake in lb.toml")?;
    let lines = vms
        .run(2, "wc -l < /etc/raftlb/lb.toml")
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let needle = format!("lb.toml:{lines}");
    let end = Instant::now() + DEADLINE;
    loop {
        let log = vms
            .run(
                2,
                &format!("sudo journalctl -u raftlb -o cat --since @{since}"),
            )
            .await
            .unwrap_or_default();
        if String::from_utf8_lossy(&log).contains(&needle) {
            break;
        }
        if Instant::now() > end {
            return Err(format!(
                "lb2: no {needle:?} in the journal after a reload with a mistake"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = versions(&[
        vms.status(1).await,
        vms.status(2).await,
        vms.status(3).await,
    ]);
    if after != [want; 3] {
        return Err(format!(
            "a refused reload changed the config: versions {after:?}, {want} expected"
        ));
    }
    vms.run(2, "systemctl is-active raftlb && sudo sed -i '$d' /etc/raftlb/lb.toml && sudo raftlb check -c /etc/raftlb/node.toml -c /etc/raftlb/lb.toml")
        .await
        .ok_or("lb2: still running, and lb.toml put back")?;
    let step = "reload refused (a mistake, named with its line)";
    row(md, prober, step, 2, from).await;

    // The witness leaves; its unit stops for good (a removed node does
    // not come back by itself); the package goes, then its data.
    let from = Instant::now();
    vms.run(1, "sudo raftlb cluster leave --node-id 3")
        .await
        .ok_or("cluster leave --node-id 3")?;
    wait_status(vms, 1, "two voters after the witness left", |s| {
        s["members"].as_array().is_some_and(|m| m.len() == 2)
    })
    .await?;
    row(md, prober, "cluster leave", 3, from).await;
    let from = Instant::now();
    vms.run(3, "sudo dpkg -r raftlb && getent passwd raftlb && test -d /var/lib/raftlb && test -f /etc/raftlb/node.toml && ! systemctl is-active raftlb")
        .await
        .ok_or("witness: dpkg -r keeps the user, the data and the conffiles, and stops the node")?;
    vms.run(3, "sudo dpkg --purge raftlb && ! getent passwd raftlb && ! test -e /var/lib/raftlb && ! test -e /etc/raftlb")
        .await
        .ok_or("witness: dpkg --purge removes the user, the data and /etc/raftlb")?;
    row(md, prober, "remove, then purge", 3, from).await;

    // The same VM, fresh, joins again as node 4 (README: "join a fresh VM
    // with id 4"): the package, its node file with `join` and the token,
    // `systemctl enable --now`.
    let token = vms
        .run(1, "sudo raftlb cluster token --node /etc/raftlb/node.toml")
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .ok_or("lb1: cluster token")?;
    let from = Instant::now();
    vms.run_for(
        3,
        &format!(
            "sudo dpkg -i /tmp/raftlb-new.deb && sudo install -m 0640 -g raftlb /tmp/node.toml /etc/raftlb/node.toml && \
             sudo install -m 0640 -g raftlb /tmp/lb.toml /etc/raftlb/lb.toml && \
             sudo sed -i -e 's|^id = 3|id = 4|' -e 's|^# join = |join = |' -e 's|^# token = .*|token = \"{token}\"|' /etc/raftlb/node.toml && \
             sudo systemctl enable --now raftlb"
        ),
        DEADLINE,
    )
    .await
    .ok_or("witness: install and join again")?;
    wait_rejoined(vms, 3).await?;
    row(md, prober, "fresh install and join", 3, from).await;
    watcher
        .wait("lb1 holds the VIP", DEADLINE, |h| h == [1])
        .await;
    Ok(())
}

async fn main_() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: raftlb-vms failover SSH_CONFIG REPORT.md | raftlb-vms package SSH_CONFIG NEW.deb REPORT.md";
    let (config, out) = match args.as_slice() {
        [cmd, config, out] if cmd == "failover" => (config, out),
        [cmd, config, _, out] if cmd == "package" => (config, out),
        _ => return Err(usage.into()),
    };
    let mut vms = Vms::new(PathBuf::from(config)).await?;
    let started = Instant::now();
    let (md, bad) = match args.as_slice() {
        [_, _, deb, _] => package(&mut vms, deb).await,
        _ => failover(&mut vms).await,
    };
    let md = format!("{md}\nRun took {:.0} s.\n", started.elapsed().as_secs_f64());
    std::fs::write(out, &md).map_err(|e| format!("{out}: {e}"))?;
    print!("{md}");
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join("\n"))
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match main_().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("raftlb-failover: {e}");
            ExitCode::FAILURE
        }
    }
}
