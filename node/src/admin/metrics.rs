//! `GET /metrics`: this node in Prometheus' text format (0.0.4), with the
//! names of HAProxy's built-in exporter under a `raftlb_` prefix, so a
//! dashboard moves over by renaming, and what only raftlb has (the Raft
//! state, the VIPs, the config version). The values are read on each
//! scrape from what the admin API reads anyway, and from the frontends'
//! per-thread counters, summed (see [`crate::proxy::stats`]).

use super::http::{error, Answer};
use super::state::AdminState;
use crate::proxy::stats::{FrontendTotals, CODE_CLASSES};
use crate::runtime::{ServerStatusLine, Status};
use prometheus::{
    Encoder, GaugeVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// HAProxy's server states, as its exporter labels `haproxy_server_status`.
const STATES: &[&str] = &["DOWN", "UP", "MAINT", "DRAIN"];

/// `GET /metrics`.
pub(super) fn metrics(state: &AdminState) -> Answer {
    let reg = Registry::new_custom(Some("raftlb".into()), None).expect("a valid prefix");
    let status = state.runtime.status();
    let built = cluster(&reg, state)
        .and_then(|()| frontends(&reg, &status))
        .and_then(|()| backends(&reg, &status))
        .and_then(|()| servers(&reg, &status))
        .and_then(|()| tables(&reg, state))
        .and_then(|()| vips(&reg, state));
    let mut body = Vec::new();
    match built.and_then(|()| TextEncoder::new().encode(&reg.gather(), &mut body)) {
        Ok(()) => (200, String::from_utf8_lossy(&body).into_owned()),
        Err(e) => error(500, format!("building the metrics: {e}")),
    }
}

type Built = Result<(), prometheus::Error>;

/// A gauge of one value, registered.
fn gauge(reg: &Registry, name: &str, help: &str, v: i64) -> Built {
    let g = IntGauge::new(name, help)?;
    g.set(v);
    reg.register(Box::new(g))
}

/// A family of gauges with the label names `labels`, one value per set of
/// label values, registered.
fn gauges<const N: usize>(
    reg: &Registry,
    name: &str,
    help: &str,
    labels: [&str; N],
    values: Vec<([String; N], i64)>,
) -> Built {
    let f = IntGaugeVec::new(Opts::new(name, help), &labels)?;
    for (vals, v) in values {
        let vals: Vec<&str> = vals.iter().map(String::as_str).collect();
        f.get_metric_with_label_values(&vals)?.set(v);
    }
    reg.register(Box::new(f))
}

/// The Raft state this node sees, and the config it runs.
fn cluster(reg: &Registry, state: &AdminState) -> Built {
    let st = state.cluster.status();
    let leads = st.leader == Some(st.id);
    gauge(
        reg,
        "cluster_leader",
        "1 on the node that leads the cluster, 0 on the others",
        leads as i64,
    )?;
    gauge(
        reg,
        "cluster_leader_id",
        "The id of the leader this node knows of (0: none)",
        st.leader.unwrap_or(0) as i64,
    )?;
    gauge(
        reg,
        "cluster_lease",
        "1 while this node holds the leader's lease (it may hold the VIPs)",
        st.lease as i64,
    )?;
    gauge(reg, "raft_term", "The current Raft term", st.term as i64)?;
    gauge(
        reg,
        "raft_last_log_index",
        "The last index of this node's Raft log",
        st.last_log_index.unwrap_or(0) as i64,
    )?;
    gauge(
        reg,
        "raft_applied_index",
        "The last log index applied to this node's state",
        st.applied_index.unwrap_or(0) as i64,
    )?;
    let lease_left = prometheus::Gauge::new(
        "vip_lease_remaining_seconds",
        "How long this node's leader's lease (and so its VIPs) holds without another quorum acknowledgement; 0 without the lease",
    )?;
    lease_left.set(st.lease_remaining_ms.unwrap_or(0) as f64 / 1000.0);
    reg.register(Box::new(lease_left))?;
    peers(reg, state, &st)?;
    let committed = state.cluster.watch().borrow().state.config_version();
    gauge(
        reg,
        "config_version",
        "The committed cluster config version (0: none)",
        committed as i64,
    )?;
    let applied = state.applied.lock().expect("applied lock").0;
    gauge(
        reg,
        "config_applied_version",
        "The cluster config version this node's proxy runs",
        applied as i64,
    )
}

/// A family of counters with the label names `labels`, registered.
fn counters<const N: usize>(
    reg: &Registry,
    name: &str,
    help: &str,
    labels: [&str; N],
    values: Vec<([String; N], u64)>,
) -> Built {
    let f = IntCounterVec::new(Opts::new(name, help), &labels)?;
    for (vals, v) in values {
        let vals: Vec<&str> = vals.iter().map(String::as_str).collect();
        f.get_metric_with_label_values(&vals)?.inc_by(v);
    }
    reg.register(Box::new(f))
}

/// Per peer: when this node last heard from it, and how far behind its
/// copy of this node's stick-table writes is.
fn peers(reg: &Registry, state: &AdminState, st: &raftlb_cluster::ClusterStatus) -> Built {
    let contact = GaugeVec::new(
        Opts::new(
            "peer_last_contact_seconds",
            "Time since this node last exchanged a message with the peer",
        ),
        &["peer"],
    )?;
    for m in st.members.iter().filter(|m| m.id != st.id) {
        if let Some(ms) = m.last_contact_ms {
            contact
                .get_metric_with_label_values(&[&m.name])?
                .set(ms as f64 / 1000.0);
        }
    }
    reg.register(Box::new(contact))?;
    let lag = GaugeVec::new(
        Opts::new(
            "stick_sync_lag_seconds",
            "How long ago the peer last had every stick-table write of this node (0: it has)",
        ),
        &["peer"],
    )?;
    let name = |id: raftlb_proto::NodeId| {
        st.members
            .iter()
            .find(|m| m.id == id)
            .map_or(id.to_string(), |m| m.name.clone())
    };
    for (peer, behind) in state.stick_lag.lags(crate::stick::now_ms()) {
        lag.get_metric_with_label_values(&[&name(peer)])?
            .set(behind.as_secs_f64());
    }
    reg.register(Box::new(lag))?;
    Ok(())
}

/// Per frontend, summed over the worker threads.
fn frontends(reg: &Registry, status: &Status) -> Built {
    let totals = &status.traffic;
    let per = |f: fn(&FrontendTotals) -> u64| {
        totals
            .iter()
            .map(|(name, t)| ([name.clone()], f(t)))
            .collect::<Vec<_>>()
    };
    let proxy = ["proxy"];
    let current = per(|t| t.current)
        .into_iter()
        .map(|(l, v)| (l, v as i64))
        .collect();
    gauges(
        reg,
        "frontend_current_sessions",
        "Current client connections",
        proxy,
        current,
    )?;
    counters(
        reg,
        "frontend_sessions_total",
        "Client connections accepted",
        proxy,
        per(|t| t.sessions),
    )?;
    counters(
        reg,
        "frontend_bytes_in_total",
        "Bytes received from clients",
        proxy,
        per(|t| t.bytes_in),
    )?;
    counters(
        reg,
        "frontend_bytes_out_total",
        "Bytes sent to clients",
        proxy,
        per(|t| t.bytes_out),
    )?;
    counters(
        reg,
        "frontend_denied_connections_total",
        "Connections refused by a tcp_request_connection rule",
        proxy,
        per(|t| t.denied),
    )?;
    counters(
        reg,
        "frontend_http_requests_total",
        "HTTP requests received",
        proxy,
        per(|t| t.requests),
    )?;
    counters(
        reg,
        "frontend_request_errors_total",
        "Requests refused as malformed",
        proxy,
        per(|t| t.request_errors),
    )?;
    let mut responses = Vec::new();
    for (name, t) in totals {
        for (code, n) in CODE_CLASSES.iter().zip(t.responses) {
            responses.push(([name.clone(), code.to_string()], n));
        }
    }
    counters(
        reg,
        "frontend_http_responses_total",
        "HTTP responses sent, by status class",
        ["proxy", "code"],
        responses,
    )
}

/// Per backend: servers that take new connections, and the queue.
fn backends(reg: &Registry, status: &Status) -> Built {
    let (mut active, mut backup) = (Vec::new(), Vec::new());
    for (backend, lines) in &status.backends {
        let taking = |b: bool| {
            let up = |s: &&ServerStatusLine| s.status.up && s.status.admin == "ready";
            lines.iter().filter(up).filter(|s| s.backup == b).count() as i64
        };
        active.push(([backend.clone()], taking(false)));
        backup.push(([backend.clone()], taking(true)));
    }
    let proxy = ["proxy"];
    let help = "Non-backup servers of the backend that take new connections";
    gauges(reg, "backend_active_servers", help, proxy, active)?;
    let help = "Backup servers of the backend that take new connections";
    gauges(reg, "backend_backup_servers", help, proxy, backup)?;
    let queued = status
        .queued
        .iter()
        .map(|(b, n)| ([b.clone()], *n as i64))
        .collect();
    let help = "Connections waiting for a server slot";
    gauges(reg, "backend_current_queue", help, proxy, queued)
}

/// Per server, as HAProxy's exporter names them.
fn servers(reg: &Registry, status: &Status) -> Built {
    let (mut states, mut cur, mut weight) = (Vec::new(), Vec::new(), Vec::new());
    let (mut total, mut failures, mut downs) = (Vec::new(), Vec::new(), Vec::new());
    let (mut econ, mut retries, mut redispatches) = (Vec::new(), Vec::new(), Vec::new());
    for (backend, lines) in &status.backends {
        for s in lines {
            let labels = || [backend.clone(), s.name.clone()];
            let now = match (s.status.admin, s.status.up) {
                ("maint", _) => "MAINT",
                ("drain", _) => "DRAIN",
                (_, true) => "UP",
                (_, false) => "DOWN",
            };
            for st in STATES {
                let [proxy, server] = labels();
                states.push(([proxy, server, st.to_string()], (*st == now) as i64));
            }
            cur.push((labels(), s.status.cur_conns as i64));
            total.push((labels(), s.status.total_conns));
            econ.push((labels(), s.status.connect_errors));
            retries.push((labels(), s.status.retries));
            redispatches.push((labels(), s.status.redispatches));
            if s.check {
                failures.push((labels(), s.status.check_failures));
                downs.push((labels(), s.status.check_up_down));
            }
            if let Some(w) = s.status.weight_override {
                weight.push((labels(), w as i64));
            }
        }
    }
    let server = ["proxy", "server"];
    let help = "Current status of the server, per state label value (1: in that state)";
    gauges(
        reg,
        "server_status",
        help,
        ["proxy", "server", "state"],
        states,
    )?;
    let help = "Current connections to the server";
    gauges(reg, "server_current_sessions", help, server, cur)?;
    let help = "Connections made to the server";
    counters(reg, "server_sessions_total", help, server, total)?;
    let help = "Connects to the server that failed";
    counters(reg, "server_connection_errors_total", help, server, econ)?;
    let help = "Connects tried again after one to the server failed";
    counters(reg, "server_retry_warnings_total", help, server, retries)?;
    let help = "Connections that went on to another server after one to this server failed";
    counters(
        reg,
        "server_redispatch_warnings_total",
        help,
        server,
        redispatches,
    )?;
    let help = "Active health checks that failed";
    counters(reg, "server_check_failures_total", help, server, failures)?;
    let help = "Times the server went from UP to DOWN";
    counters(reg, "server_check_up_down_total", help, server, downs)?;
    let help = "The operator's weight of the server, where it overrides the config's";
    gauges(reg, "server_weight_override", help, server, weight)
}

/// Each stick table's entries and room.
fn tables(reg: &Registry, state: &AdminState) -> Built {
    let (mut used, mut size) = (Vec::new(), Vec::new());
    for t in state.runtime.stick_tables() {
        used.push(([t.name().to_string()], t.len() as i64));
        size.push(([t.name().to_string()], t.size() as i64));
    }
    gauges(
        reg,
        "stick_table_entries",
        "Entries in the stick table on this node",
        ["table"],
        used,
    )?;
    gauges(
        reg,
        "stick_table_size",
        "Most entries the stick table holds",
        ["table"],
        size,
    )
}

/// The VIPs this node holds.
fn vips(reg: &Registry, state: &AdminState) -> Built {
    let report = state.vip.get().map(|v| v.report()).unwrap_or_default();
    let held = report
        .vips
        .iter()
        .map(|v| ([v.address.clone()], v.held as i64))
        .collect();
    gauges(
        reg,
        "vip_held",
        "1 while this node holds the virtual IP",
        ["address"],
        held,
    )
}
