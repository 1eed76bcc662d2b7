//! Bringing a node up, step by step: its data directory and secret, the
//! node-to-node listener, the Raft cluster (opened, formed or joined), the
//! admin API (and its token), the loops that follow the committed state, and the VIP
//! holder; and the [`Node`] that start-up returns.

use super::follow::{apply_committed, report_health};
use crate::admin::{self, AdminState};
use crate::handle::{apply_config, validate, Cluster, NodeError};
use crate::nodefile::NodeConfig;
use crate::runtime::Runtime;
use crate::stick;
use crate::vip::{Fitness, VipControl};
use raftlb_cluster::net::secret::{ClusterSecret, SECRET_FILE};
use raftlb_cluster::net::tcp::{self, TcpTransport};
use raftlb_cluster::{PeerNode, RaftCluster};
use raftlb_proto::Format;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;

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
    /// `raftlb run` as the node file says (the systemd unit's way): from the
    /// state in `data_dir` if there is some; else a new cluster
    /// (`[cluster] bootstrap`), or a join (`[cluster] join` and `token`),
    /// or as [`Startup::Resume`].
    Auto {
        /// The first config of a new cluster: document, format, name.
        initial: Option<(String, Format, String)>,
        /// `[cluster] bootstrap`.
        bootstrap: bool,
        /// `[cluster] join` and the secret of its `token`.
        join: Option<(String, ClusterSecret)>,
    },
}

impl Startup {
    /// What an [`Startup::Auto`] start does, now that whether `data_dir`
    /// holds cluster state is known; any other start as it is.
    fn resolved(self, has_state: bool) -> Startup {
        match self {
            Startup::Auto { initial, .. } if has_state => Startup::Resume { initial },
            Startup::Auto {
                join: Some((peer, secret)),
                ..
            } => Startup::Join { peer, secret },
            Startup::Auto {
                initial,
                bootstrap: true,
                ..
            } => Startup::Init { initial },
            Startup::Auto { initial, .. } => Startup::Resume { initial },
            other => other,
        }
    }
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
    vip: Arc<VipControl>,
    data_dir: std::path::PathBuf,
    _tasks: Tasks,
}

/// The node's background tasks, aborted when dropped (also when start-up
/// fails half-way).
#[derive(Default)]
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Tasks {
    /// Aborts every task and waits until each has ended (its sockets
    /// closed).
    async fn stop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
        for t in self.0.drain(..) {
            let _ = t.await;
        }
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// The marker a removed node leaves so that it does not come back by itself.
const REMOVED_FILE: &str = "removed";

fn data_err(path: &Path) -> impl Fn(std::io::Error) -> NodeError + '_ {
    move |source| NodeError::DataDir {
        path: path.to_path_buf(),
        source,
    }
}

/// The data directory exists, and this node was not removed from its
/// cluster.
fn prepare_data_dir(dir: &Path) -> Result<(), NodeError> {
    std::fs::create_dir_all(dir).map_err(data_err(dir))?;
    if dir.join(REMOVED_FILE).exists() {
        return Err(NodeError::State(format!(
            "this node was removed from its cluster; to join again, empty {} and run `raftlb cluster join`",
            dir.display()
        )));
    }
    Ok(())
}

/// The cluster secret: the join token's, the one in `data_dir`, or a new
/// one.
fn secret_for(startup: &Startup, path: &Path) -> Result<ClusterSecret, NodeError> {
    Ok(match startup {
        Startup::Join { secret, .. } => secret.clone(),
        _ if path.exists() => ClusterSecret::load(path).map_err(data_err(path))?,
        Startup::Auto {
            join: Some((_, secret)),
            ..
        } => secret.clone(),
        _ => ClusterSecret::generate(),
    })
}

/// Binds one of the node's own listeners; returns it with its address.
async fn bind(
    what: &'static str,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), NodeError> {
    let err = |source| NodeError::Listen { what, addr, source };
    let l = TcpListener::bind(addr).await.map_err(err)?;
    let bound = l.local_addr().map_err(err)?;
    Ok((l, bound))
}

/// Whether `startup` fits what `data_dir` holds; `Ok(true)` when this
/// start forms a new cluster.
fn new_cluster(startup: &Startup, has_state: bool, node: &NodeConfig) -> Result<bool, NodeError> {
    let dir = node.data_dir.display();
    let fresh_single =
        matches!(startup, Startup::Resume { .. }) && !has_state && node.cluster.listen.is_none();
    match startup {
        Startup::Init { .. } | Startup::Join { .. } if has_state => Err(NodeError::State(format!(
            "{dir} already holds cluster state; start it with `raftlb run`"
        ))),
        Startup::Resume { .. } if !has_state && !fresh_single => Err(NodeError::State(format!(
            "{dir} holds no cluster state: run `raftlb cluster init` (first node) or `raftlb cluster join` first"
        ))),
        _ => Ok(matches!(startup, Startup::Init { .. }) || fresh_single),
    }
}

/// The proxy, the admin API and the loops that keep the proxy in step with
/// the committed state and report its health view.
async fn start_proxy(
    node: &NodeConfig,
    cluster: &Arc<Cluster>,
    tasks: &mut Tasks,
) -> Result<(Arc<Runtime>, Arc<AdminState>, SocketAddr), NodeError> {
    let runtime = Arc::new(Runtime::for_node(node.id, node.reuseport));
    restore_stick_tables(&runtime, &node.data_dir);
    let token_path = admin::AdminToken::path(&node.data_dir);
    let token = admin::AdminToken::load_or_create(&node.data_dir).map_err(data_err(&token_path))?;
    let users = match &node.admin.token_file {
        None => None,
        Some(path) => Some(
            admin::Users::load(path)
                .map_err(|e| NodeError::Invalid(format!("admin.token_file: {e}")))?,
        ),
    };
    let (admin_listener, admin_addr) = bind("admin API", node.admin.listen).await?;
    let admin_state = Arc::new(AdminState {
        node: node.name.clone(),
        token,
        users,
        runtime: runtime.clone(),
        cluster: cluster.clone(),
        applied: std::sync::Mutex::new((0, None)),
        ready: Default::default(),
        vip: Default::default(),
        stick_lag: Default::default(),
    });
    tasks.0.push(tokio::spawn(admin::serve(
        admin_listener,
        admin_state.clone(),
    )));
    cluster.set_stick_peer(Arc::new(stick::sync::Peering::new(runtime.clone())));
    tasks.0.push(tokio::spawn(stick::sync::push_to_peers(
        cluster.clone(),
        runtime.clone(),
        admin_state.stick_lag.clone(),
    )));
    let (rt, st) = (runtime.clone(), admin_state.clone());
    tasks.0.push(tokio::spawn(apply_committed(
        cluster.clone(),
        rt,
        st,
        node.id,
    )));
    tasks.0.push(tokio::spawn(report_health(
        cluster.clone(),
        runtime.clone(),
    )));
    Ok((runtime, admin_state, admin_addr))
}

/// The stick tables saved at the last graceful stop go back in with the
/// first config applied; a file that cannot be read is logged and left
/// (the tables start empty).
fn restore_stick_tables(runtime: &Runtime, dir: &Path) {
    let path = dir.join(stick::saved::FILE);
    match stick::saved::load(&path) {
        Ok(saved) if saved.is_empty() => {}
        Ok(saved) => runtime.restore_stick_tables(saved),
        Err(e) => {
            tracing::error!(error = %e, "cannot read the saved stick tables; they start empty")
        }
    }
}

/// Saves the stick tables for the next start (a graceful stop).
fn save_stick_tables(runtime: &Runtime, dir: &Path) {
    let path = dir.join(stick::saved::FILE);
    match stick::saved::save(&path, &runtime.stick_tables(), stick::now_ms()) {
        Ok(n) => tracing::info!(entries = n, file = %path.display(), "saved the stick tables"),
        Err(e) => tracing::error!(error = %e, "cannot save the stick tables"),
    }
}

/// The VIP holder, fit only while the last config applied.
fn start_vip(
    node: &NodeConfig,
    cluster: &Arc<Cluster>,
    state: &Arc<AdminState>,
) -> Arc<VipControl> {
    let applied = state.clone();
    let fitness = Fitness {
        settings: node.vip.clone(),
        apply_error: Box::new(move || applied.applied.lock().expect("applied lock").1.clone()),
    };
    let vip = Arc::new(VipControl::start(
        cluster.clone(),
        fitness,
        node.data_dir.clone(),
        node.cluster_options().election.0,
    ));
    let _ = state.vip.set(vip.clone());
    vip
}

/// Fires the returned notification when the cluster removes this node,
/// after marking `data_dir` so that it does not come back by itself.
fn watch_removal(cluster: &Arc<Cluster>, dir: &Path, tasks: &mut Tasks) -> Arc<Notify> {
    let removed = Arc::new(Notify::new());
    let (cluster, notify, marker) = (cluster.clone(), removed.clone(), dir.join(REMOVED_FILE));
    tasks.0.push(tokio::spawn(async move {
        cluster.removed().await;
        if let Err(e) = std::fs::write(&marker, b"removed from the cluster\n") {
            tracing::error!(file = %marker.display(), error = %e, "cannot mark this node removed");
        }
        notify.notify_one();
    }));
    removed
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
        let initial = Some((doc, format, source.to_string()));
        Self::open(node, Startup::Resume { initial }).await
    }

    /// Starts a node as `startup` says.
    pub async fn open(node: &NodeConfig, startup: Startup) -> Result<Node, NodeError> {
        let dir = &node.data_dir;
        prepare_data_dir(dir)?;
        // Validate what we were given before touching any state.
        let initial = match &startup {
            Startup::Resume { initial }
            | Startup::Init { initial }
            | Startup::Auto { initial, .. } => initial.clone(),
            Startup::Join { .. } => None,
        };
        if let Some((doc, format, source)) = &initial {
            validate(doc, *format, source)?;
        }
        // A VIP left on the interface by a crashed process goes first; and
        // without the rights to hold a VIP, say so now.
        crate::vip::release_recorded(node).await?;
        let secret_path = dir.join(SECRET_FILE);
        let secret = Arc::new(secret_for(&startup, &secret_path)?);

        // The node-to-node listener first: its address goes into membership.
        let (cluster_listener, cluster_addr) = match node.cluster.listen {
            Some(addr) => bind("cluster", addr)
                .await
                .map(|(l, a)| (Some(l), Some(a)))?,
            None => (None, None),
        };
        let advertise = node.cluster.advertise.or(cluster_addr);
        let me = PeerNode {
            addr: advertise.map(|a| a.to_string()).unwrap_or_default(),
            name: node.name.clone(),
        };

        let transport = TcpTransport::new(node.id, secret.clone());
        let cluster =
            Arc::new(RaftCluster::open(node.id, dir, transport, node.cluster_options()).await?);
        let mut tasks = Tasks::default();
        if let Some(l) = cluster_listener {
            let handler = cluster.handler();
            tasks.0.push(tokio::spawn(tcp::serve(
                l,
                node.id,
                secret.clone(),
                handler,
            )));
        }
        let has_state = cluster.is_initialized().await;
        let startup = startup.resolved(has_state);
        let new_cluster = new_cluster(&startup, has_state, node)?;
        if new_cluster || matches!(startup, Startup::Join { .. }) {
            secret.save(&secret_path).map_err(data_err(&secret_path))?;
        }
        if new_cluster {
            cluster.initialize(me.clone()).await?;
            tracing::info!(id = node.id, "initialized a new cluster with this node");
        }

        let (runtime, admin_state, admin_addr) = start_proxy(node, &cluster, &mut tasks).await?;
        let vip = start_vip(node, &cluster, &admin_state);
        let removed = watch_removal(&cluster, dir, &mut tasks);
        let n = Node {
            runtime,
            cluster,
            admin_addr,
            cluster_addr,
            token: secret.to_token(),
            removed,
            admin_state,
            vip,
            data_dir: dir.clone(),
            _tasks: tasks,
        };
        n.come_up(&startup, me, new_cluster.then_some(initial).flatten())
            .await?;
        tracing::info!(node = %node.name, admin = %admin_addr, cluster = ?cluster_addr, "node started");
        Ok(n)
    }

    /// The last step of start-up: join the cluster (`cluster join`), or
    /// commit the first config of a new one; then tell the admin API it is
    /// ready.
    async fn come_up(
        &self,
        startup: &Startup,
        me: PeerNode,
        first_config: Option<(String, Format, String)>,
    ) -> Result<(), NodeError> {
        if let Startup::Join { peer, .. } = startup {
            tracing::info!(peer = %peer, "asking the cluster to add this node");
            self.cluster.join(me, peer).await?;
            tracing::info!("joined the cluster");
        }
        if let Some((doc, format, source)) = first_config {
            let v = self.apply_config(doc, format, &source, None).await?;
            self.wait_applied(v, Duration::from_secs(10))
                .await
                .map_err(NodeError::State)?;
        }
        self.admin_state
            .ready
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(())
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

    /// Waits, for at most `within`, until the proxy runs the config the
    /// cluster has committed (its frontends bound), if it has one; a wait
    /// cut short is logged.
    pub async fn wait_serving(&self, within: Duration) {
        let version = self.cluster.watch().borrow().state.config_version();
        if version == 0 {
            return;
        }
        if let Err(e) = self.wait_applied(version, within).await {
            tracing::warn!(version, error = %e, "the committed config is not running yet");
        }
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

    /// Drops the VIPs and, if this node leads, hands the leadership over
    /// to the best fit voter (so that the VIP moves at once, not after the
    /// drain and the followers' wait); stops accepting, then waits up to
    /// `grace` for connections to finish; then saves the stick tables and
    /// stops Raft.
    pub async fn shutdown(&self, grace: Duration) {
        self.vip.stop().await;
        let successors = crate::vip::successors(&self.cluster);
        if let Some(to) = self.cluster.hand_over(&successors).await {
            tracing::info!(to, "stopping: node {to} leads now");
        }
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
        save_stick_tables(&self.runtime, &self.data_dir);
        self.cluster.shutdown().await;
    }

    /// Ends the node's tasks and waits until they are gone, so that its
    /// listeners are closed when this returns (to start it again in the
    /// same process, as tests do).
    pub async fn close(mut self) {
        self._tasks.stop().await;
    }
}
