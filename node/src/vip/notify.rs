//! keepalived's `notify`: a command run on every take and release of a VIP.

use std::time::Duration;
use tokio::sync::mpsc;

/// Runs the `notify` command for each take and release, in order:
/// `COMMAND MASTER|BACKUP ADDRESS/PREFIX REASON` through `sh -c`.
pub(super) async fn notifier(
    cmd: String,
    mut rx: mpsc::UnboundedReceiver<(&'static str, String, String)>,
) {
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
