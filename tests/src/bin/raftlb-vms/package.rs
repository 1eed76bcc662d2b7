//! `raftlb-vms package`: the package's life on the running cluster of
//! three VMs: a rolling upgrade to a newer .deb (the witness, the standby,
//! then the holder), a reload of a changed `lb.toml` and one with a mistake,
//! `cluster leave` of the witness, `dpkg -r` then `--purge`, and a fresh
//! install that joins again; the client served and the VIP watched all
//! along.

use super::{name, prober, Vms, DEADLINE};
use raftlb_testkit::failover::{self, Machines, Watcher};
use raftlb_testkit::probe::Prober;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

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
pub(super) async fn package(vms: &mut Vms, deb: &str) -> (String, Vec<String>) {
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
    // The files are root:raftlb 0640: the ssh user reads them with sudo.
    let sum = "sudo md5sum /etc/raftlb/node.toml /etc/raftlb/lb.toml";

    // A rolling upgrade: the witness, the standby, then the holder; each
    // restarts on the new package (postinst: try-restart, which drains
    // first) and must rejoin with its state before the next one goes.
    for id in [3, 2, 1] {
        vms.copy(id, deb, "/tmp/raftlb-new.deb").await?;
        let confs = vms
            .run(id, sum)
            .await
            .ok_or_else(|| format!("{}: {sum} failed", name(id)))?;
        let from = Instant::now();
        vms.check_for(id, "sudo dpkg -i /tmp/raftlb-new.deb", DEADLINE)
            .await
            .map_err(|e| format!("{}: dpkg -i of {deb}: {e}", name(id)))?;
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
        if vms.run(id, sum).await.as_ref() != Some(&confs) {
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
    vms.check(2, "sudo sed -i 's/inter = \"1s\" },$/inter = \"2s\" },/' /etc/raftlb/lb.toml && sudo grep -q 'inter = \"2s\"' /etc/raftlb/lb.toml && sudo systemctl reload raftlb", "lb2: edit lb.toml and reload")
        .await?;
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
    vms.check(2, "echo 'garp_refreshh = \"1s\"' | sudo tee -a /etc/raftlb/lb.toml >/dev/null && sudo systemctl reload raftlb", "lb2: a mistake in lb.toml")
        .await?;
    let lines = vms
        .run(2, "sudo cat /etc/raftlb/lb.toml | wc -l")
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .ok_or("lb2: count the lines of lb.toml")?;
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
    vms.check(2, "systemctl is-active raftlb && sudo sed -i '$d' /etc/raftlb/lb.toml && sudo raftlb check -c /etc/raftlb/node.toml -c /etc/raftlb/lb.toml", "lb2: still running, and lb.toml put back")
        .await?;
    let step = "reload refused (a mistake, named with its line)";
    row(md, prober, step, 2, from).await;

    // The witness leaves; its unit stops for good (a removed node does
    // not come back by itself); the package goes, then its data.
    let from = Instant::now();
    vms.check(
        1,
        "sudo raftlb cluster leave --node-id 3",
        "cluster leave --node-id 3",
    )
    .await?;
    wait_status(vms, 1, "two voters after the witness left", |s| {
        s["members"].as_array().is_some_and(|m| m.len() == 2)
    })
    .await?;
    row(md, prober, "cluster leave", 3, from).await;
    let from = Instant::now();
    vms.check(3, "sudo dpkg -r raftlb && getent passwd raftlb && sudo test -d /var/lib/raftlb && sudo test -f /etc/raftlb/node.toml && ! systemctl is-active raftlb", "witness: dpkg -r keeps the user, the data and the conffiles, and stops the node")
        .await?;
    vms.check(3, "sudo dpkg --purge raftlb && ! getent passwd raftlb && ! sudo test -e /var/lib/raftlb && ! sudo test -e /etc/raftlb", "witness: dpkg --purge removes the user, the data and /etc/raftlb")
        .await?;
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
    vms.check_for(
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
    .map_err(|e| format!("witness: install and join again: {e}"))?;
    wait_rejoined(vms, 3).await?;
    row(md, prober, "fresh install and join", 3, from).await;
    watcher
        .wait("lb1 holds the VIP", DEADLINE, |h| h == [1])
        .await;
    Ok(())
}
