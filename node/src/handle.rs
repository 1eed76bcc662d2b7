//! What the node's parts share below it: [`Cluster`], the handle on the
//! replicated state; [`NodeError`], why a node could not start or a change
//! was refused; and the one way a cluster config reaches the log: read,
//! validated here, then committed ([`apply_config`]).

use raftlb_cluster::net::tcp::TcpTransport;
use raftlb_cluster::{ClusterError, RaftCluster, WriteFailure};
use raftlb_proto::{ClusterConfig, Command, Format, Outcome};
use std::net::SocketAddr;
use std::path::PathBuf;

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

/// A cluster config file, and its format when the command line names one
/// (`--format haproxy` for a haproxy.cfg not ending in `.cfg`).
#[derive(Debug, Clone)]
pub struct LbFile {
    /// The file.
    pub path: PathBuf,
    /// Its format; `None`: from its extension.
    pub format: Option<Format>,
}

impl LbFile {
    /// The file's format: as given, else from its extension.
    pub fn format(&self) -> Format {
        self.format
            .unwrap_or_else(|| Format::from_path(&self.path.to_string_lossy()))
    }
}

/// Reads a cluster config file (format as [`LbFile::format`]). A haproxy.cfg
/// has its environment variables expanded here, where it is read, so that
/// the document every node parses is the same.
pub fn read_lb(file: &LbFile) -> Result<(String, Format), NodeError> {
    let path = file.path.as_path();
    let text = std::fs::read_to_string(path).map_err(|source| NodeError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let format = file.format();
    if format != Format::Haproxy {
        return Ok((text, format));
    }
    let expanded = expand_env(&text);
    for note in &expanded.notes {
        tracing::warn!(file = %path.display(), line = note.line, "{}", note.message);
    }
    Ok((expanded.text, format))
}

/// A haproxy.cfg's variables, expanded from this process's environment.
pub fn expand_env(text: &str) -> raftlb_proto::config::Expanded {
    raftlb_proto::config::expand_env(text, |name| std::env::var(name).ok())
}

/// Validates a document before it goes anywhere near the log.
pub fn validate(doc: &str, format: Format, source: &str) -> Result<(), NodeError> {
    ClusterConfig::parse(doc, format)
        .map(|_| ())
        .map_err(|errs| NodeError::Invalid(errs.render(source).trim_end().to_string()))
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
