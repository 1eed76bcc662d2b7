//! `raftlb run`: a started node in the foreground, until a signal or the
//! cluster ends it; SIGHUP reloads the cluster config file; systemd is told
//! when it is ready and when it stops.

use super::start::{Node, Startup};
use super::systemd;
use crate::handle::{read_lb, LbFile, NodeError};
use crate::nodefile::NodeConfig;
use std::time::Duration;

/// `raftlb run` (and `cluster init`/`join`, which start the same way): runs
/// until SIGINT or SIGTERM, or until the cluster removes this node. SIGHUP
/// re-reads `lb_path`, if given, and applies it through the cluster.
pub async fn run(
    node: NodeConfig,
    startup: Startup,
    lb_path: Option<LbFile>,
    on_started: impl FnOnce(&Node),
) -> Result<(), NodeError> {
    use tokio::signal::unix::{signal, SignalKind};
    // Handlers first: the admin API answers during start-up, and a SIGHUP
    // sent as soon as it does must not end the process.
    let sig = |k| signal(k).expect("installing a signal handler");
    let (mut hup, mut term, mut int) = (
        sig(SignalKind::hangup()),
        sig(SignalKind::terminate()),
        sig(SignalKind::interrupt()),
    );
    let n = Node::open(&node, startup).await?;
    n.wait_serving(Duration::from_secs(30)).await;
    on_started(&n);
    // systemd (`Type=notify`): ready now that the node joined or formed its
    // cluster and runs the committed config; the watchdog fed from here on.
    systemd::notify("READY=1\nSTATUS=serving");
    let _watchdog = systemd::spawn_watchdog().map(AbortOnDrop);
    loop {
        tokio::select! {
            _ = hup.recv() => {
                let Some(path) = &lb_path else {
                    tracing::warn!("SIGHUP: no --lb file to reload; use `raftlb config apply`");
                    continue;
                };
                reload(&n, path).await;
            }
            _ = n.removed.notified() => {
                tracing::warn!("removed from the cluster: stopping");
                systemd::notify("STOPPING=1\nSTATUS=removed from the cluster");
                n.shutdown(Duration::from_secs(10)).await;
                return Err(NodeError::State("this node was removed from the cluster".into()));
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    systemd::notify("STOPPING=1\nSTATUS=draining");
    n.shutdown(Duration::from_secs(10)).await;
    Ok(())
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// SIGHUP: re-reads the cluster config file and commits it; a file that
/// cannot be read or has mistakes changes nothing, and every error is
/// logged.
async fn reload(n: &Node, file: &LbFile) {
    let source = file.path.display().to_string();
    tracing::info!(file = %source, "SIGHUP: reloading");
    let result = match read_lb(file) {
        Ok((doc, format)) => n.reload(doc, format, &source).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(v) => tracing::info!(version = v, "reload committed"),
        Err(e) => {
            for line in e.to_string().lines() {
                tracing::error!("reload refused: {line}");
            }
            tracing::error!("reload refused; the running config stays");
        }
    }
}
