//! One running node: opens its Raft state under `data_dir` (a cluster of one
//! when it has no peers), serves its peers and the admin API, applies every
//! committed state to the proxy, reports its health view, reloads on SIGHUP,
//! and stops in two phases (stop accepting, drain).

use crate::admin::{self, AdminState};
use crate::nodefile::NodeConfig;
use crate::runtime::Runtime;
use raftlb_cluster::net::secret::{ClusterSecret, SECRET_FILE};
use raftlb_cluster::net::tcp::{self, TcpTransport};
use raftlb_cluster::{Applied, ClusterError, PeerNode, RaftCluster, WriteFailure};
use raftlb_proto::{ClusterConfig, Command, Format, Outcome};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// The cluster handle a node holds.
pub type Cluster = RaftCluster<TcpTransport>;

/// Why a node could not start or a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// The cluster config has mistakes (rendered one per line).
    #[error("{0}")]
    Invalid(String),
    /// The config is valid but could not be applied.
    #[error(transparent)]
    Apply(#[from] crate::runtime::ApplyError),
    /// A socket of the node's own (admin API, cluster, demo backend) could
    /// not listen.
    #[error("cannot listen for the {what} on {addr}: {source}")]
    Listen {
        /// What it was for.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The system's error.
        source: std::io::Error,
    },
    /// The data directory could not be made or written.
    #[error("data_dir {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// The node's state does not allow what was asked.
    #[error("{0}")]
    State(String),
    /// The cluster could not be opened or formed.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// A write did not commit.
    #[error(transparent)]
    Write(#[from] WriteFailure),
    /// The VIP interface or the rights to hold a VIP are missing.
    #[error(transparent)]
    Vip(#[from] crate::vip::VipError),
}

/// How a node comes up.
#[derive(Debug, Clone)]
pub enum Startup {
    /// From the state in `data_dir`. A node with no state and no peers
    /// (`[cluster] listen` unset) becomes a cluster of one, with `initial`
    /// as its first config.
    Resume {
        /// The first config of a new cluster of one: document, format, name.
        initial: Option<(String, Format, String)>,
    },
    /// `cluster init`: a new cluster with this node its only member.
    Init {
        /// The first config, if any: document, format, name.
        initial: Option<(String, Format, String)>,
    },
    /// `cluster join`: join the cluster of the node at `peer`.
    Join {
        /// A member's node-to-node address.
        peer: String,
        /// The secret from the join token.
        secret: ClusterSecret,
    },
}

/// A started node.
pub struct Node {
    /// The proxy.
    pub runtime: Arc<Runtime>,
    /// The replicated state.
    pub cluster: Arc<Cluster>,
    /// Where the admin API listens.
    pub admin_addr: SocketAddr,
    /// Where peers reach this node (if it listens for them).
    pub cluster_addr: Option<SocketAddr>,
    /// The join token (the cluster secret), for `cluster init` to print.
    pub token: String,
    /// Fires when the cluster removed this node: it must stop.
    pub removed: Arc<Notify>,
    admin_state: Arc<AdminState>,
    vip: Arc<crate::vip::VipControl>,
    _tasks: Tasks,
}

/// The node's background tasks, aborted when dropped (also when start-up
/// fails half-way).
#[derive(Default)]
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Reads a cluster config file (format from its extension).
pub fn read_lb(path: &Path) -> Result<(String, Format), NodeError> {
    let text = std::fs::read_to_string(path).map_err(|source| NodeError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok((text, Format::from_path(&path.to_string_lossy())))
}

/// Validates a document before it goes anywhere near the log.
fn validate(doc: &str, format: Format, source: &str) -> Result<(), NodeError> {
    ClusterConfig::parse(doc, format)
        .map(|_| ())
        .map_err(|errs| NodeError::Invalid(errs.render(source).trim_end().to_string()))
}

/// The marker a removed node leaves so that it does not come back by itself.
const REMOVED_FILE: &str = "removed";

fn data_err(path: &Path) -> impl Fn(std::io::Error) -> NodeError + '_ {
    move |source| NodeError::DataDir {
        path: path.to_path_buf(),
        source,
    }
}

impl Node {
    /// Starts a node with an initial cluster config document (used when the
    /// node has no state yet: a cluster of one). `source` names the document
    /// in error messages.
    pub async fn start(
        node: &NodeConfig,
        doc: String,
        format: Format,
        source: &str,
    ) -> Result<Node, NodeError> {
        Self::open(
            node,
            Startup::Resume {
                initial: Some((doc, format, source.to_string())),
            },
        )
        .await
    }

    /// Starts a node as `startup` says.
    pub async fn open(node: &NodeConfig, startup: Startup) -> Result<Node, NodeError> {
        let dir = &node.data_dir;
        std::fs::create_dir_all(dir).map_err(data_err(dir))?;
        if dir.join(REMOVED_FILE).exists() {
            return Err(NodeError::State(format!(
                "this node was removed from its cluster; to join again, empty {} and run `raftlb cluster join`",
                dir.display()
            )));
        }
        // Validate what we were given before touching any state.
        let initial = match &startup {
            Startup::Resume { initial } | Startup::Init { initial } => initial.clone(),
            Startup::Join { .. } => None,
        };
        if let Some((doc, format, source)) = &initial {
            validate(doc, *format, source)?;
        }
        // A VIP left on the interface by a crashed process goes first; and
        // without the rights to hold a VIP, say so now.
        crate::vip::release_recorded(node).await?;
        let secret_path = dir.join(SECRET_FILE);
        let secret = match &startup {
            Startup::Join { secret, .. } => secret.clone(),
            _ if secret_path.exists() => {
                ClusterSecret::load(&secret_path).map_err(data_err(&secret_path))?
            }
            _ => ClusterSecret::generate(),
        };
        let secret = Arc::new(secret);

        // The node-to-node listener first: its address goes into membership.
        let (cluster_listener, cluster_addr) = match node.cluster.listen {
            Some(addr) => {
                let l = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| NodeError::Listen {
                        what: "cluster",
                        addr,
                        source,
                    })?;
                let bound = l.local_addr().map_err(|source| NodeError::Listen {
                    what: "cluster",
                    addr,
                    source,
                })?;
                (Some(l), Some(bound))
            }
            None => (None, None),
        };
        let advertise = node
            .cluster
            .advertise
            .or(cluster_addr)
            .map(|a| a.to_string())
            .unwrap_or_default();
        let me = PeerNode {
            addr: advertise,
            name: node.name.clone(),
        };

        let transport = TcpTransport::new(node.id, secret.clone());
        let cluster =
            Arc::new(RaftCluster::open(node.id, dir, transport, node.cluster_options()).await?);
        let mut tasks = Tasks::default();
        if let Some(l) = cluster_listener {
            tasks.0.push(tokio::spawn(tcp::serve(
                l,
                node.id,
                secret.clone(),
                cluster.handler(),
            )));
        }
        let has_state = cluster.is_initialized().await;
        let fresh_single = matches!(startup, Startup::Resume { .. })
            && !has_state
            && node.cluster.listen.is_none();
        match &startup {
            Startup::Init { .. } | Startup::Join { .. } if has_state => {
                return Err(NodeError::State(format!(
                    "{} already holds cluster state; start it with `raftlb run`",
                    dir.display()
                )))
            }
            Startup::Resume { .. } if !has_state && !fresh_single => {
                return Err(NodeError::State(format!(
                    "{} holds no cluster state: run `raftlb cluster init` (first node) or `raftlb cluster join` first",
                    dir.display()
                )))
            }
            _ => {}
        }
        let new_cluster = matches!(startup, Startup::Init { .. }) || fresh_single;
        if new_cluster || matches!(startup, Startup::Join { .. }) {
            secret.save(&secret_path).map_err(data_err(&secret_path))?;
        }
        if new_cluster {
            cluster.initialize(me.clone()).await?;
            tracing::info!(id = node.id, "initialized a new cluster with this node");
        }

        let runtime = Arc::new(Runtime::with_reuseport(node.reuseport));
        let admin_listener = tokio::net::TcpListener::bind(node.admin.listen)
            .await
            .map_err(|source| NodeError::Listen {
                what: "admin API",
                addr: node.admin.listen,
                source,
            })?;
        let admin_addr = admin_listener
            .local_addr()
            .map_err(|source| NodeError::Listen {
                what: "admin API",
                addr: node.admin.listen,
                source,
            })?;
        let admin_state = Arc::new(AdminState {
            node: node.name.clone(),
            runtime: runtime.clone(),
            cluster: cluster.clone(),
            applied: std::sync::Mutex::new((0, None)),
            ready: Default::default(),
            vip: Default::default(),
        });
        tasks.0.push(tokio::spawn(admin::serve(
            admin_listener,
            admin_state.clone(),
        )));
        tasks.0.push(tokio::spawn(apply_committed(
            cluster.watch(),
            runtime.clone(),
            admin_state.clone(),
            node.id,
        )));
        tasks.0.push(tokio::spawn(report_health(
            cluster.clone(),
            runtime.clone(),
        )));
        let vip = {
            let state = admin_state.clone();
            let fitness = crate::vip::Fitness {
                settings: node.vip.clone(),
                apply_error: Box::new(move || {
                    state.applied.lock().expect("applied lock").1.clone()
                }),
            };
            Arc::new(crate::vip::VipControl::start(
                cluster.clone(),
                fitness,
                dir.clone(),
            ))
        };
        let _ = admin_state.vip.set(vip.clone());
        let removed = Arc::new(Notify::new());
        {
            let (cluster, removed, marker) =
                (cluster.clone(), removed.clone(), dir.join(REMOVED_FILE));
            tasks.0.push(tokio::spawn(async move {
                cluster.removed().await;
                if let Err(e) = std::fs::write(&marker, b"removed from the cluster\n") {
                    tracing::error!(file = %marker.display(), error = %e, "cannot mark this node removed");
                }
                removed.notify_one();
            }));
        }
        let n = Node {
            runtime,
            cluster,
            admin_addr,
            cluster_addr,
            token: secret.to_token(),
            removed,
            admin_state,
            vip,
            _tasks: tasks,
        };
        if let Startup::Join { peer, .. } = &startup {
            tracing::info!(peer = %peer, "asking the cluster to add this node");
            n.cluster.join(me, peer).await?;
            tracing::info!("joined the cluster");
        }
        if new_cluster {
            if let Some((doc, format, source)) = initial {
                let v = n.apply_config(doc, format, &source, None).await?;
                n.wait_applied(v, Duration::from_secs(10))
                    .await
                    .map_err(NodeError::State)?;
            }
        }
        n.admin_state
            .ready
            .store(true, std::sync::atomic::Ordering::Release);
        tracing::info!(node = %node.name, admin = %admin_addr, cluster = ?cluster_addr, "node started");
        Ok(n)
    }

    /// Validates a config document, then commits it through the cluster
    /// (with `expected_version`, only if that is the committed version).
    /// Returns the committed version.
    pub async fn apply_config(
        &self,
        doc: String,
        format: Format,
        source: &str,
        expected_version: Option<u64>,
    ) -> Result<u64, NodeError> {
        apply_config(&self.cluster, doc, format, source, expected_version).await
    }

    /// Validates and commits a new config document; the proxy applies it
    /// when it is committed. A document with mistakes changes nothing.
    pub async fn reload(
        &self,
        doc: String,
        format: Format,
        source: &str,
    ) -> Result<u64, NodeError> {
        self.apply_config(doc, format, source, None).await
    }

    /// Waits until the proxy runs config `version` (or failed to apply it),
    /// for at most `within`.
    pub async fn wait_applied(&self, version: u64, within: Duration) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "config version {version} not applied within {within:?}"
                ));
            }
            {
                let (v, err) = self
                    .admin_state
                    .applied
                    .lock()
                    .expect("applied lock")
                    .clone();
                if v >= version {
                    return match err {
                        Some(e) => Err(e),
                        None => Ok(()),
                    };
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops accepting, then waits up to `grace` for connections to finish;
    /// then stops Raft.
    pub async fn shutdown(&self, grace: Duration) {
        self.vip.stop().await;
        let active = self.runtime.stop_listening();
        tracing::info!(active, "stopped accepting; draining connections");
        let deadline = tokio::time::Instant::now() + grace;
        while self.runtime.active_connections() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let left = self.runtime.active_connections();
        if left > 0 {
            tracing::warn!(left, "grace period over; closing remaining connections");
        }
        self.cluster.shutdown().await;
    }
}

/// Validates, then commits a config through the cluster.
pub async fn apply_config(
    cluster: &Cluster,
    doc: String,
    format: Format,
    source: &str,
    expected_version: Option<u64>,
) -> Result<u64, NodeError> {
    validate(&doc, format, source)?;
    let outcome = cluster
        .write(Command::ApplyConfig {
            doc,
            format,
            expected_version,
        })
        .await?;
    match outcome {
        Outcome::ConfigCommitted { version } => Ok(version),
        Outcome::Stale { expected, current } => Err(NodeError::State(format!(
            "{source}: config version {current} is committed, not {expected}: someone else changed it; re-read it (`raftlb config show`) and apply again"
        ))),
        Outcome::Refused(why) => Err(NodeError::Invalid(format!("{source}: {why}"))),
        Outcome::Done => Err(NodeError::State("unexpected outcome for a config".into())),
    }
}

/// Applies every newly committed state to the proxy: a new config version
/// through the diff/apply path, operator states on every change.
async fn apply_committed(
    mut rx: tokio::sync::watch::Receiver<Applied>,
    runtime: Arc<Runtime>,
    state: Arc<AdminState>,
    me: raftlb_proto::NodeId,
) {
    let mut running = 0u64;
    loop {
        let applied = rx.borrow_and_update().clone();
        let st = &applied.state;
        let version = st.config_version();
        if version != running {
            if let Some(config) = st.parsed_config() {
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
async fn report_health(cluster: Arc<Cluster>, runtime: Arc<Runtime>) {
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

/// `raftlb run` (and `cluster init`/`join`, which start the same way): runs
/// until SIGINT or SIGTERM, or until the cluster removes this node. SIGHUP
/// re-reads `lb_path`, if given, and applies it through the cluster.
pub async fn run(
    node: NodeConfig,
    startup: Startup,
    lb_path: Option<PathBuf>,
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
    on_started(&n);
    loop {
        tokio::select! {
            _ = hup.recv() => {
                let Some(path) = &lb_path else {
                    tracing::warn!("SIGHUP: no --lb file to reload; use `raftlb config apply`");
                    continue;
                };
                let source = path.display().to_string();
                tracing::info!(file = %source, "SIGHUP: reloading");
                let result = match read_lb(path) {
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
            _ = n.removed.notified() => {
                tracing::warn!("removed from the cluster: stopping");
                n.shutdown(Duration::from_secs(10)).await;
                return Err(NodeError::State("this node was removed from the cluster".into()));
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    n.shutdown(Duration::from_secs(10)).await;
    Ok(())
}
