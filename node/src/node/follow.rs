//! Keeping the node in step with the committed state: every new config
//! version goes to the proxy (diff and apply), operator states on every
//! change, servers new to this node start from the health view the cluster
//! holds for it; and this node's own health view goes back into the
//! replicated state.

use crate::admin::AdminState;
use crate::handle::Cluster;
use crate::runtime::Runtime;
use crate::stick;
use raftlb_proto::{ClusterConfig, Command};
use std::sync::Arc;
use std::time::Duration;

/// Applies every newly committed state to the proxy: a new config version
/// through the diff/apply path, operator states on every change. Before the
/// first config, the stick tables are resynced from a peer, so that the
/// frontends open with them.
pub(super) async fn apply_committed(
    cluster: Arc<Cluster>,
    runtime: Arc<Runtime>,
    state: Arc<AdminState>,
    me: raftlb_proto::NodeId,
) {
    let mut rx = cluster.watch();
    let mut running = 0u64;
    loop {
        let applied = rx.borrow_and_update().clone();
        let st = &applied.state;
        let version = st.config_version();
        if version != running {
            if let Some(config) = st.parsed_config() {
                if running == 0 && !config.stick_tables.is_empty() {
                    let peers = stick::sync::resync(&cluster, stick::sync::RESYNC_WITHIN).await;
                    runtime.restore_stick_tables(peers);
                }
                let err = match runtime.apply(&config) {
                    Ok(report) => {
                        remembered_health(&runtime, &config, &report.new_servers, st, me);
                        tracing::info!(
                            version,
                            bound = ?report.bound,
                            closed = ?report.closed,
                            kept = report.kept,
                            checkers_started = report.checkers_started,
                            checkers_stopped = report.checkers_stopped,
                            stick_entries_restored = report.restored,
                            "config applied"
                        );
                        None
                    }
                    Err(e) => {
                        tracing::error!(version, error = %e, "config not applied; the previous one keeps running");
                        Some(e.to_string())
                    }
                };
                *state.applied.lock().expect("applied lock") = (version, err);
            }
            running = version;
        }
        runtime.set_operator(&st.operator);
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// A server this node starts (after a restart, or a rejoin) begins from the
/// view the cluster holds for this node, not from "up": a server it saw down
/// before it stopped stays down until `rise` good checks. (Servers without
/// active checks start up: nothing would bring them back.)
fn remembered_health(
    runtime: &Runtime,
    config: &ClusterConfig,
    new_servers: &[(String, String)],
    state: &raftlb_proto::ReplicatedState,
    me: raftlb_proto::NodeId,
) {
    for (backend, server) in new_servers {
        let checked = config
            .backends
            .get(backend)
            .and_then(|b| b.servers.iter().find(|s| &s.name == server))
            .is_some_and(|s| s.check.is_some());
        if !checked {
            continue;
        }
        let key = raftlb_proto::ServerKey::new(backend.clone(), server.clone());
        let view = state.health.get(&key).and_then(|v| v.get(&me));
        if let (Some(view), Some(s)) = (view, runtime.server(backend, server)) {
            if !view.up {
                s.start_down(&view.reason);
                tracing::info!(server = %key, reason = %view.reason, "starting down, as this node last saw it");
            }
        }
    }
}

/// Keeps this node's replicated health view equal to its own: every second
/// (and at start), each server whose local state differs from what the
/// cluster holds for this node is reported. A report that fails (no quorum)
/// is simply tried again on the next round.
pub(super) async fn report_health(cluster: Arc<Cluster>, runtime: Arc<Runtime>) {
    let me = cluster.id();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let state = cluster.watch().borrow().state.clone();
        for (server, up, reason) in runtime.health_views() {
            let known = state.health.get(&server).and_then(|v| v.get(&me));
            if known.is_some_and(|k| k.up == up) {
                continue;
            }
            let cmd = Command::ReportHealth {
                node: me,
                server: server.clone(),
                up,
                reason,
            };
            if let Err(e) = cluster.write(cmd).await {
                tracing::debug!(server = %server, error = %e, "health report not committed; will retry");
                break;
            }
        }
    }
}
