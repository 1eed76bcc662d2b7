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

use raftlb_testkit::failover::{self, BoxFuture, Fault, HolderSource, Limits, Machines};
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
        let control = std::env::temp_dir().join(format!("raftlb-vms-{}", std::process::id()));
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
        self.check_for(id, script, within).await.ok()
    }

    /// Runs `script` in VM `id`: its stdout if it succeeded within
    /// `within`, else why not (its exit status and the end of its stderr).
    async fn check_for(&self, id: u64, script: &str, within: Duration) -> Result<Vec<u8>, String> {
        let out = tokio::time::timeout(
            within,
            ssh(&self.ssh_config, &self.control, id, script).output(),
        )
        .await
        .map_err(|_| format!("no answer within {} s", within.as_secs()))?
        .map_err(|e| format!("ssh: {e}"))?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        Err(format!("{}; stderr: {}", out.status, tail.join(" | ")))
    }

    /// Like [`Vms::check_for`], within 30 s, the error naming `what` failed.
    async fn check(&self, id: u64, script: &str, what: &str) -> Result<Vec<u8>, String> {
        self.check_for(id, script, Duration::from_secs(30))
            .await
            .map_err(|e| format!("{what}: {e}"))
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

mod package;

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
        [_, _, deb, _] => package::package(&mut vms, deb).await,
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
            eprintln!("raftlb-vms: {e}");
            ExitCode::FAILURE
        }
    }
}
