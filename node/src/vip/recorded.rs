//! The VIPs of the last applied config, recorded in `data_dir`, so that a
//! restart (or `raftlb vip release`) removes what a crashed process left on
//! the interface before anything else.

use super::error::{check_capabilities, VipError};
use super::{announce, netlink};
use crate::nodefile::NodeConfig;
use raftlb_proto::config::Vip;
use std::net::IpAddr;
use std::path::Path;

/// Where a node keeps the VIPs of the last config it applied, so that a
/// restart (or `raftlb vip release`) can remove them before anything else.
pub const VIPS_FILE: &str = "vips";

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

pub(super) fn record(data_dir: &Path, vips: &[Vip]) {
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
