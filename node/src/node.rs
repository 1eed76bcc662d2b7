//! One running node: commits the config it starts with to the (single-node)
//! cluster, applies every committed config to the proxy, serves the admin
//! API, reloads on SIGHUP, and stops in two phases (stop accepting, drain).

use crate::admin::{self, AdminState};
use crate::nodefile::NodeConfig;
use crate::runtime::Runtime;
use raftlb_cluster::{Cluster, WriteError};
use raftlb_proto::Format;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Why a node could not start or reload.
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
    /// A socket of the node's own (admin API, demo backend) could not listen.
    #[error("cannot listen for the {what} on {addr}: {source}")]
    Listen {
        /// What it was for.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The system's error.
        source: std::io::Error,
    },
    /// The data directory could not be made.
    #[error("cannot create data_dir {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
}

/// A started node.
pub struct Node {
    /// The proxy.
    pub runtime: Arc<Runtime>,
    /// The replicated state.
    pub cluster: Cluster,
    /// Where the admin API listens.
    pub admin_addr: SocketAddr,
    admin_state: Arc<AdminState>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        for t in &self.tasks {
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

fn invalid(source: &str, e: WriteError) -> NodeError {
    match e {
        WriteError::Invalid(errs) => NodeError::Invalid(errs.render(source).trim_end().to_string()),
        other => NodeError::Invalid(format!("{source}: {other}")),
    }
}

impl Node {
    /// Starts a node with an initial cluster config document. `source` names
    /// the document in error messages.
    pub async fn start(
        node: &NodeConfig,
        doc: String,
        format: Format,
        source: &str,
    ) -> Result<Node, NodeError> {
        std::fs::create_dir_all(&node.data_dir).map_err(|source| NodeError::DataDir {
            path: node.data_dir.clone(),
            source,
        })?;
        let cluster = Cluster::single_node();
        let committed = cluster
            .apply_config(doc, format, None)
            .map_err(|e| invalid(source, e))?;
        let runtime = Arc::new(Runtime::new());
        let report = runtime.apply(&committed.config)?;
        tracing::info!(
            version = committed.version,
            bound = ?report.bound,
            "config applied"
        );
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
            applied: std::sync::Mutex::new((committed.version, None)),
        });
        let mut tasks = vec![tokio::spawn(admin::serve(
            admin_listener,
            admin_state.clone(),
        ))];
        tasks.push(tokio::spawn(apply_committed(
            cluster.clone(),
            runtime.clone(),
            admin_state.clone(),
        )));
        tracing::info!(node = %node.name, admin = %admin_addr, "node started");
        Ok(Node {
            runtime,
            cluster,
            admin_addr,
            admin_state,
            tasks,
        })
    }

    /// Validates and commits a new config document; the proxy applies it
    /// when it is committed. A document with mistakes changes nothing.
    pub fn reload(&self, doc: String, format: Format, source: &str) -> Result<u64, NodeError> {
        let c = self
            .cluster
            .apply_config(doc, format, None)
            .map_err(|e| invalid(source, e))?;
        Ok(c.version)
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

    /// Stops accepting, then waits up to `grace` for connections to finish.
    pub async fn shutdown(&self, grace: Duration) {
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
    }
}

/// Applies every newly committed config to the proxy.
async fn apply_committed(cluster: Cluster, runtime: Arc<Runtime>, state: Arc<AdminState>) {
    let mut rx = cluster.watch();
    rx.mark_unchanged();
    while rx.changed().await.is_ok() {
        let Some(c) = rx.borrow_and_update().clone() else {
            continue;
        };
        let result = runtime.apply(&c.config);
        let err = match result {
            Ok(report) => {
                tracing::info!(
                    version = c.version,
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
                tracing::error!(version = c.version, error = %e, "config not applied; the previous one keeps running");
                Some(e.to_string())
            }
        };
        *state.applied.lock().expect("applied lock") = (c.version, err);
    }
}

/// `raftlb run`: runs until SIGINT or SIGTERM; SIGHUP re-reads `lb_path`.
pub async fn run(node: NodeConfig, lb_path: PathBuf) -> Result<(), NodeError> {
    use tokio::signal::unix::{signal, SignalKind};
    let source = lb_path.display().to_string();
    let (doc, format) = read_lb(&lb_path)?;
    let n = Node::start(&node, doc, format, &source).await?;
    let sig = |k| signal(k).expect("installing a signal handler");
    let (mut hup, mut term, mut int) = (
        sig(SignalKind::hangup()),
        sig(SignalKind::terminate()),
        sig(SignalKind::interrupt()),
    );
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!(file = %source, "SIGHUP: reloading");
                match read_lb(&lb_path).and_then(|(doc, format)| n.reload(doc, format, &source)) {
                    Ok(v) => tracing::info!(version = v, "reload committed"),
                    Err(e) => {
                        for line in e.to_string().lines() {
                            tracing::error!("reload refused: {line}");
                        }
                        tracing::error!("reload refused; the running config stays");
                    }
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    n.shutdown(Duration::from_secs(10)).await;
    Ok(())
}
