//! The Raft log and vote as openraft sees them: [`LogStore`] keeps the log in
//! memory for reads and hands every write, in order, to the writer thread of
//! [`super::wal`]; [`LogReader`] is the cloneable read side.

use super::fsio;
use super::wal::{self, Done, Op, Record};
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, RaftLogReader, StorageIOError};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::oneshot;

/// What the log holds, as readers see it.
#[derive(Debug, Default)]
struct Shared {
    log: BTreeMap<u64, Entry>,
    last_purged: Option<LogId>,
    committed: Option<LogId>,
    vote: Option<Vote>,
}

/// Raft's durable log and vote, in files under one directory: `log` (an
/// append-only file of checksummed records) and `vote`.
///
/// Reads are served from memory. Writes go, in order, to one writer thread
/// that never runs on the async runtime: an append is readable when
/// [`RaftLogStorage::append`] returns and its callback fires once the bytes
/// are fsynced; vote, truncate and purge return once durable.
pub struct LogStore {
    shared: Arc<Mutex<Shared>>,
    tx: mpsc::Sender<Op>,
}

/// A cloneable reader of a [`LogStore`]'s entries.
#[derive(Clone)]
pub struct LogReader {
    shared: Arc<Mutex<Shared>>,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

fn write_err(e: io::Error) -> StorageError {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

/// Copies the entries in `range`, ignoring absent ones.
fn entries_in<RB: RangeBounds<u64>>(shared: &Mutex<Shared>, range: RB) -> Vec<Entry> {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => Bound::Included(e),
        Bound::Excluded(&e) => Bound::Excluded(e),
        Bound::Unbounded => Bound::Unbounded,
    };
    let empty = match end {
        Bound::Included(e) => e < start,
        Bound::Excluded(e) => e <= start,
        Bound::Unbounded => false,
    };
    if empty {
        return Vec::new();
    }
    lock(shared)
        .log
        .range((Bound::Included(start), end))
        .map(|(_, e)| e.clone())
        .collect()
}

impl LogStore {
    /// Opens (creating it if missing) the log under `dir`, replaying the
    /// files; a torn or corrupt tail of the log file is cut off with a
    /// warning. Waits up to 10 s for an earlier store on the same directory,
    /// in this process, to finish its writes.
    pub async fn open(dir: &Path) -> Result<LogStore, io::Error> {
        Self::open_with(dir, wal::COMPACT_MIN_BYTES).await
    }

    /// [`LogStore::open`], compacting once the file is `compact_min` bytes.
    pub(crate) async fn open_with(dir: &Path, compact_min: u64) -> io::Result<LogStore> {
        let (loaded, tx) = wal::open(dir, compact_min).await?;
        let shared = Shared {
            log: loaded.log,
            last_purged: loaded.last_purged,
            committed: loaded.committed,
            vote: loaded.vote,
        };
        Ok(LogStore {
            shared: Arc::new(Mutex::new(shared)),
            tx,
        })
    }

    fn send(&self, op: Op) -> io::Result<()> {
        self.tx
            .send(op)
            .map_err(|_| io::Error::other("the Raft log writer thread has stopped"))
    }

    /// Sends a write and waits for the writer's reply.
    async fn request(&self, op: impl FnOnce(wal::Reply) -> Op) -> io::Result<()> {
        let (reply, rx) = oneshot::channel();
        self.send(op(reply))?;
        rx.await
            .map_err(|_| io::Error::other("the Raft log writer thread has stopped"))?
    }

    /// Appends entries: readable on return, `done` runs after the fsync.
    pub(crate) fn append_with(
        &mut self,
        entries: impl IntoIterator<Item = Entry>,
        done: Done,
    ) -> io::Result<()> {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let mut frames = Vec::with_capacity(entries.len());
        for e in &entries {
            frames.push((
                e.log_id.index,
                fsio::encode_frame(&Record::Entry(Cow::Borrowed(e)))?,
            ));
        }
        {
            let mut shared = lock(&self.shared);
            for e in entries {
                shared.log.insert(e.log_id.index, e);
            }
        }
        self.send(Op::Append { frames, done })
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(entries_in(&self.shared, range))
    }
}

/// The last log id of a [`LogStore`], readable while Raft owns the store.
#[derive(Clone)]
pub struct LastLog(Arc<Mutex<Shared>>);

impl LastLog {
    /// The last entry's id (or the last purged one), as readable now.
    pub fn get(&self) -> Option<LogId> {
        let shared = lock(&self.0);
        let last = shared.log.last_key_value().map(|(_, e)| e.log_id);
        last.or(shared.last_purged)
    }
}

impl LogStore {
    /// A handle on the last log id.
    pub fn last_log(&self) -> LastLog {
        LastLog(self.shared.clone())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(entries_in(&self.shared, range))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let shared = lock(&self.shared);
        let last = shared.log.last_key_value().map(|(_, e)| e.log_id);
        Ok(LogState {
            last_purged_log_id: shared.last_purged,
            last_log_id: last.or(shared.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> LogReader {
        LogReader {
            shared: self.shared.clone(),
        }
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let vote = *vote;
        self.request(|reply| Op::Vote { vote, reply })
            .await
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)))?;
        lock(&self.shared).vote = Some(vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(lock(&self.shared).vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        lock(&self.shared).committed = committed;
        self.send(Op::Committed(committed)).map_err(write_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(lock(&self.shared).committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let done: Done = Box::new(move |r| callback.log_io_completed(r));
        self.append_with(entries, done).map_err(write_err)
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let from = log_id.index;
        // Unreadable at once; durable before returning.
        lock(&self.shared).log.split_off(&from);
        self.request(|reply| Op::Truncate { from, reply })
            .await
            .map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // The purge point is durable before any entry is forgotten.
        self.request(|reply| Op::Purge {
            upto: log_id,
            reply,
        })
        .await
        .map_err(write_err)?;
        let mut shared = lock(&self.shared);
        shared.last_purged = Some(log_id);
        let kept = shared.log.split_off(&log_id.index.saturating_add(1));
        shared.log = kept;
        Ok(())
    }
}
