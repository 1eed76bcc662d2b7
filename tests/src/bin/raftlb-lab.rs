//! `raftlb-lab`: the test lab from the command line, for scripts that run
//! without the Rust tests (the Vagrant scenario, benchmarks, a keepalived
//! comparison). Needs root, iproute2 and nftables.
//!
//! ```text
//! raftlb-lab up LAB HOST=LAST...   namespaces rlLAB-HOST at 198.51.100.LAST on one bridge
//! raftlb-lab cut LAB HOST=LAST     take the host's link down
//! raftlb-lab heal LAB HOST=LAST    bring it back
//! raftlb-lab drop LAB A=LAST B=LAST   drop packets between A and B (nftables in A)
//! raftlb-lab undrop LAB A=LAST     remove A's drops
//! raftlb-lab down LAB              remove everything of lab LAB
//! ```
//! Run a program on a host with `ip netns exec rlLAB-HOST PROGRAM`.

use raftlb_testkit::lab::{Host, Lab};
use std::process::ExitCode;

fn host(lab: &str, spec: &str) -> Result<(String, u8, Host), String> {
    let (name, last) = spec
        .split_once('=')
        .ok_or_else(|| format!("{spec:?}: expected HOST=LAST (e.g. n1=1)"))?;
    let last: u8 = last
        .parse()
        .map_err(|_| format!("{spec:?}: LAST is the address's last number, 1-254"))?;
    Ok((name.to_string(), last, Lab::find(lab, name, last)))
}

fn run(args: &[String]) -> Result<(), String> {
    let usage = "usage: raftlb-lab up|cut|heal|drop|undrop|down LAB [HOST=LAST ...]";
    let (cmd, lab) = match args {
        [cmd, lab, ..] => (cmd.as_str(), lab.as_str()),
        _ => return Err(usage.into()),
    };
    let hosts = args[2..]
        .iter()
        .map(|s| host(lab, s))
        .collect::<Result<Vec<_>, _>>()?;
    match (cmd, hosts.as_slice()) {
        ("up", hosts) if !hosts.is_empty() => {
            let mut l = Lab::named(lab);
            for (name, last, _) in hosts {
                let h = l.host(name, *last);
                println!("{} {}", h.ns, h.ip);
            }
            l.keep();
        }
        ("cut", [(_, _, h)]) => Lab::find_lab(lab).cut(h),
        ("heal", [(_, _, h)]) => Lab::find_lab(lab).heal(h),
        ("drop", [(_, _, a), (_, _, b)]) => Lab::find_lab(lab).drop_between(a, b),
        ("undrop", [(_, _, a)]) => Lab::find_lab(lab).heal_drops(a),
        ("down", []) => Lab::remove(lab),
        _ => return Err(usage.into()),
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("raftlb-lab: {e}");
            ExitCode::FAILURE
        }
    }
}
