//! A cluster of one (the state in this process, a write commits at once);
//! kept until the node runs on Raft.





use raftlb_proto::{ClusterConfig, ConfigErrors, Format};
use std::sync::Arc;
use tokio::sync::watch;

/// A committed cluster config: the document as written, and its version.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    /// Starts at 1 and grows by one with every committed change.
    pub version: u64,
    /// The document's text.
    pub doc: String,
    /// The document's format.
    pub format: Format,
    /// The validated config.
    pub config: ClusterConfig,
}

/// Why a write was refused.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The document is not a valid config.
    #[error("invalid config:\n{0}")]
    Invalid(#[from] ConfigErrors),
    /// Someone else committed first (optimistic concurrency).
    #[error("config version {current} is committed, not {expected}: re-read it and apply again")]
    Stale {
        /// The version the writer based its change on.
        expected: u64,
        /// The version committed now.
        current: u64,
    },
}

/// The handle to the replicated state.
#[derive(Debug, Clone)]
pub struct Cluster {
    tx: Arc<watch::Sender<Option<Arc<Committed>>>>,
}

impl Default for Cluster {
    fn default() -> Self {
        Self::single_node()
    }
}

impl Cluster {
    /// A cluster of one, with nothing committed yet.
    pub fn single_node() -> Cluster {
        Cluster {
            tx: Arc::new(watch::channel(None).0),
        }
    }

    /// Validates and commits a config document. With `expected_version`,
    /// refuses if another version is committed now.
    pub fn apply_config(
        &self,
        doc: String,
        format: Format,
        expected_version: Option<u64>,
    ) -> Result<Arc<Committed>, WriteError> {
        let config = ClusterConfig::parse(&doc, format)?;
        let mut result = None;
        self.tx.send_if_modified(|cur| {
            let current = cur.as_ref().map_or(0, |c| c.version);
            if let Some(expected) = expected_version {
                if expected != current {
                    result = Some(Err(WriteError::Stale { expected, current }));
                    return false;
                }
            }
            let c = Arc::new(Committed {
                version: current + 1,
                doc: doc.clone(),
                format,
                config: config.clone(),
            });
            *cur = Some(c.clone());
            result = Some(Ok(c));
            true
        });
        result.expect("send_if_modified ran the closure")
    }

    /// The committed config now, if any.
    pub fn committed(&self) -> Option<Arc<Committed>> {
        self.tx.borrow().clone()
    }

    /// A receiver that sees every newly committed config.
    pub fn watch(&self) -> watch::Receiver<Option<Arc<Committed>>> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str =
        "[frontends.f]\nbind = \"127.0.0.1:1\"\ndefault_backend = \"b\"\n[backends.b]\n";

    #[test]
    fn versions_grow_and_stale_writes_are_refused() {
        let c = Cluster::single_node();
        let mut w = c.watch();
        assert!(c.committed().is_none());
        let v1 = c.apply_config(DOC.into(), Format::Toml, Some(0)).unwrap();
        assert_eq!(v1.version, 1);
        assert!(w.has_changed().unwrap());
        w.mark_unchanged();
        let err = c
            .apply_config(DOC.into(), Format::Toml, Some(0))
            .unwrap_err();
        assert!(
            matches!(
                err,
                WriteError::Stale {
                    expected: 0,
                    current: 1
                }
            ),
            "{err}"
        );
        assert!(!w.has_changed().unwrap());
        assert_eq!(
            c.apply_config(DOC.into(), Format::Toml, None)
                .unwrap()
                .version,
            2
        );
    }

    #[test]
    fn invalid_documents_never_commit() {
        let c = Cluster::single_node();
        let err = c
            .apply_config("[frontends.f]\nbnd = 1\n".into(), Format::Toml, None)
            .unwrap_err();
        assert!(matches!(err, WriteError::Invalid(_)));
        assert!(c.committed().is_none());
    }
}
