//! The state machine as openraft sees it: the [`ReplicatedState`] with the
//! last applied log id and membership, its snapshots (the only thing it
//! persists: the file `snapshot`), and the [`Applied`] watch it publishes.

use super::fsio;
use crate::types::{
    Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{AnyError, EntryPayload, StorageIOError};
use raftlb_proto::{NodeId, Outcome, ReplicatedState};
use std::collections::BTreeSet;
use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::sync::{watch, Mutex};

/// The snapshot file's name in the store directory.
pub(crate) const SNAPSHOT_FILE: &str = "snapshot";

/// The state as of the last applied entry (or installed snapshot).
#[derive(Debug, Clone)]
pub struct Applied {
    /// The last log id applied, `None` before the first.
    pub last_applied: Option<LogId>,
    /// The membership as of `last_applied`.
    pub membership: StoredMembership,
    /// The replicated state.
    pub state: Arc<ReplicatedState>,
}

/// A snapshot as kept in memory and on disk: its meta and the encoded
/// `(last_applied, membership, state)`.
#[derive(Debug, Clone)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

impl StoredSnapshot {
    fn to_snapshot(&self) -> Snapshot {
        Snapshot {
            meta: self.meta.clone(),
            snapshot: Box::new(Cursor::new(self.data.clone())),
        }
    }
}

/// The current snapshot, shared by the state machine and its builders.
type Current = Arc<Mutex<Option<StoredSnapshot>>>;

/// Raft's state machine: applies committed commands to a
/// [`ReplicatedState`] and publishes every change as [`Applied`].
///
/// Only snapshots are persisted; after a restart the state is the last
/// snapshot's, and openraft re-applies the committed log after it.
pub struct StateMachine {
    dir: PathBuf,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    state: Arc<ReplicatedState>,
    current: Current,
    tx: watch::Sender<Applied>,
}

/// Builds a snapshot of the state machine as it was when the builder was
/// made, and persists it.
pub struct SnapshotBuilder {
    dir: PathBuf,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    state: Arc<ReplicatedState>,
    current: Current,
}

type Decoded = (Option<LogId>, StoredMembership, ReplicatedState);

fn decode_state(data: &[u8]) -> io::Result<Decoded> {
    fsio::decode(data)
}

/// A snapshot id no other snapshot of this store has: the last log id, a
/// per-process nonce and a counter.
fn snapshot_id(last: Option<LogId>) -> String {
    static NONCE: OnceLock<u32> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nonce = *NONCE.get_or_init(rand::random);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    match last {
        Some(l) => format!("{}-{}-{nonce:08x}{n}", l.leader_id.term, l.index),
        None => format!("0-0-{nonce:08x}{n}"),
    }
}

/// Writes the snapshot file atomically (replacing the previous snapshot).
async fn persist(dir: &Path, snap: &StoredSnapshot) -> Result<(), StorageError> {
    let sig = Some(snap.meta.signature());
    let err = |e: io::Error| {
        StorageError::from(StorageIOError::write_snapshot(
            sig.clone(),
            AnyError::new(&e),
        ))
    };
    let bytes = fsio::encode_frame(&(&snap.meta, &snap.data)).map_err(err)?;
    let path = dir.join(SNAPSHOT_FILE);
    tokio::task::spawn_blocking(move || fsio::write_atomic(&path, &bytes))
        .await
        .map_err(io::Error::other)
        .and_then(|r| r)
        .map_err(err)
}

impl StateMachine {
    /// Opens the state machine under `dir` (creating the directory if
    /// missing): the latest persisted snapshot's state if there is one, else
    /// empty. The receiver starts at that state. A snapshot file that does
    /// not decode is an error.
    pub fn open(dir: &Path) -> io::Result<(StateMachine, watch::Receiver<Applied>)> {
        std::fs::create_dir_all(dir).map_err(|e| fsio::at(dir, e))?;
        let path = dir.join(SNAPSHOT_FILE);
        fsio::remove_tmp(&path)?;
        let current = match fsio::read_if_exists(&path)? {
            None => None,
            Some(bytes) => {
                let (meta, data): (SnapshotMeta, Vec<u8>) =
                    fsio::decode_single(&bytes).map_err(|e| fsio::at(&path, e))?;
                Some(StoredSnapshot { meta, data })
            }
        };
        let (last_applied, membership, state) = match &current {
            None => (
                None,
                StoredMembership::default(),
                ReplicatedState::default(),
            ),
            Some(s) => decode_state(&s.data).map_err(|e| fsio::at(&path, e))?,
        };
        let state = Arc::new(state);
        let (tx, rx) = watch::channel(Applied {
            last_applied,
            membership: membership.clone(),
            state: state.clone(),
        });
        let sm = StateMachine {
            dir: dir.to_path_buf(),
            last_applied,
            membership,
            state,
            current: Arc::new(Mutex::new(current)),
            tx,
        };
        Ok((sm, rx))
    }

    fn publish(&self) {
        self.tx.send_replace(Applied {
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            state: self.state.clone(),
        });
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let data = fsio::encode(&(&self.last_applied, &self.membership, &*self.state))
            .map_err(|e| StorageIOError::write_snapshot(None, AnyError::new(&e)))?;
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id: snapshot_id(self.last_applied),
        };
        let built = StoredSnapshot { meta, data };
        let mut current = self.current.lock().await;
        // Never replace a newer snapshot (one installed meanwhile).
        let newest = match current.as_ref() {
            Some(c) => c.meta.last_log_id <= built.meta.last_log_id,
            None => true,
        };
        if newest {
            persist(&self.dir, &built).await?;
            *current = Some(built.clone());
        }
        Ok(built.to_snapshot())
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut entries = entries.into_iter().peekable();
        if entries.peek().is_none() {
            return Ok(Vec::new());
        }
        let state = Arc::make_mut(&mut self.state);
        let mut outcomes = Vec::new();
        for entry in entries {
            self.last_applied = Some(entry.log_id);
            let outcome = match entry.payload {
                EntryPayload::Blank => Outcome::Done,
                EntryPayload::Normal(cmd) => state.apply(&cmd),
                EntryPayload::Membership(m) => {
                    let members: BTreeSet<NodeId> = m.voter_ids().chain(m.learner_ids()).collect();
                    let gone: BTreeSet<NodeId> = state
                        .health
                        .values()
                        .flat_map(|views| views.keys().copied())
                        .filter(|id| !members.contains(id))
                        .collect();
                    for id in gone {
                        state.forget_node(id);
                    }
                    self.membership = StoredMembership::new(Some(entry.log_id), m);
                    Outcome::Done
                }
            };
            outcomes.push(outcome);
        }
        self.publish();
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            dir: self.dir.clone(),
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            state: self.state.clone(),
            current: self.current.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let sig = Some(meta.signature());
        let data = snapshot.into_inner();
        let (last_applied, membership, state) = decode_state(&data)
            .map_err(|e| StorageIOError::read_snapshot(sig.clone(), AnyError::new(&e)))?;
        if last_applied != meta.last_log_id {
            let e = io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "snapshot data ends at {last_applied:?}, its meta says {:?}",
                    meta.last_log_id
                ),
            );
            return Err(StorageIOError::read_snapshot(sig, AnyError::new(&e)).into());
        }
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        {
            let mut current = self.current.lock().await;
            persist(&self.dir, &stored).await?;
            *current = Some(stored);
        }
        self.last_applied = last_applied;
        self.membership = membership;
        self.state = Arc::new(state);
        self.publish();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        Ok(self
            .current
            .lock()
            .await
            .as_ref()
            .map(StoredSnapshot::to_snapshot))
    }
}
