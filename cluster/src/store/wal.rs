//! The log file on disk (and the vote's, through [`VoteFile`]): the record format, replay at open
//! (a torn or corrupt tail is cut off), and the one writer thread that
//! performs every write in order, batches fsyncs and compacts the log.

use super::fsio::{self, Next};
use super::vote::VoteFile;
use crate::types::{Entry, LogId, Vote};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use tokio::sync::oneshot;

/// The log file's name in the store directory.
pub(crate) const LOG_FILE: &str = "log";
/// Compact the log once it is this big and mostly dead records.
pub(crate) const COMPACT_MIN_BYTES: u64 = 1 << 20;
/// At most this many queued operations share one fsync.
const MAX_BATCH: usize = 1024;

/// One record of the log file.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Record<'a> {
    /// An appended entry (replaces any entry at its index).
    Entry(Cow<'a, Entry>),
    /// Entries from this index on were deleted.
    Truncate {
        /// The first deleted index.
        from: u64,
    },
    /// Entries up to this log id (inclusive) were purged.
    Purge(LogId),
    /// The committed log id.
    Committed(Option<LogId>),
}

/// Called once an append is on disk (or failed to get there).
pub(crate) type Done = Box<dyn FnOnce(io::Result<()>) + Send>;
/// The answer to a write the caller waits for.
pub(crate) type Reply = oneshot::Sender<io::Result<()>>;

/// A write for the writer thread.
pub(crate) enum Op {
    /// Framed entry records, by index; `done` fires after the fsync.
    Append {
        frames: Vec<(u64, Vec<u8>)>,
        done: Done,
    },
    /// Delete entries from `from` on; replies after the fsync.
    Truncate { from: u64, reply: Reply },
    /// Purge entries up to `upto`; replies after the fsync.
    Purge { upto: LogId, reply: Reply },
    /// Record the committed log id (no fsync of its own).
    Committed(Option<LogId>),
    /// Replace the vote file; replies once it is durable.
    Vote { vote: Vote, reply: Reply },
}

/// A disk write slower than this is logged: Raft waits for it (a vote is
/// durable before it counts), and past the election timeout it delays
/// failover.
const SLOW_DISK: std::time::Duration = std::time::Duration::from_millis(100);

fn slow_disk(what: &str, began: std::time::Instant) {
    let took = began.elapsed();
    if took > SLOW_DISK {
        tracing::warn!(took_ms = took.as_millis() as u64, "slow disk: {what}");
    }
}

/// The durable state found at open.
pub(crate) struct Loaded {
    pub(crate) log: BTreeMap<u64, Entry>,
    pub(crate) last_purged: Option<LogId>,
    pub(crate) committed: Option<LogId>,
    pub(crate) vote: Option<Vote>,
}

/// Replays the files under `dir` and starts the writer thread.
pub(crate) async fn open(dir: &Path, compact_min: u64) -> io::Result<(Loaded, mpsc::Sender<Op>)> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| fsio::at(dir, e))?;
    let dir = tokio::fs::canonicalize(dir)
        .await
        .map_err(|e| fsio::at(dir, e))?;
    let lock = fsio::DirLock::acquire(dir.clone()).await?;
    let (loaded, writer) = tokio::task::spawn_blocking(move || replay(dir, compact_min))
        .await
        .map_err(io::Error::other)??;
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("raft-log-writer".into())
        .spawn(move || {
            let _lock = lock;
            writer.run(rx)
        })?;
    Ok((loaded, tx))
}

/// Reads the vote and the log, cutting the log's torn tail.
fn replay(dir: PathBuf, compact_min: u64) -> io::Result<(Loaded, Writer)> {
    let (votes, vote) = VoteFile::open(&dir)?;
    let path = dir.join(LOG_FILE);
    fsio::remove_tmp(&path)?;
    let buf = fsio::read_if_exists(&path)?.unwrap_or_default();
    let mut loaded = Loaded {
        log: BTreeMap::new(),
        last_purged: None,
        committed: None,
        vote,
    };
    let mut frames = BTreeMap::new();
    let (mut off, mut records) = (0usize, 0u64);
    let bad = loop {
        let (payload, n) = match fsio::next_frame(&buf[off..]) {
            Next::End => break None,
            Next::Torn(why) => break Some(why.to_string()),
            Next::Frame(payload, n) => (payload, n),
        };
        match fsio::decode::<Record<'static>>(payload) {
            Err(e) => break Some(format!("undecodable record: {e}")),
            Ok(Record::Entry(e)) => {
                let e = e.into_owned();
                frames.insert(e.log_id.index, buf[off..off + n].to_vec());
                loaded.log.insert(e.log_id.index, e);
            }
            Ok(Record::Truncate { from }) => {
                loaded.log.split_off(&from);
                frames.split_off(&from);
            }
            Ok(Record::Purge(upto)) => {
                loaded.last_purged = Some(upto);
                loaded.log = loaded.log.split_off(&upto.index.saturating_add(1));
                frames = frames.split_off(&upto.index.saturating_add(1));
            }
            Ok(Record::Committed(c)) => loaded.committed = c,
        }
        off += n;
        records += 1;
    };
    if let Some(why) = bad {
        tracing::warn!(
            path = %path.display(),
            offset = off,
            dropped_bytes = buf.len() - off,
            "Raft log ends with a torn or corrupt record ({why}); cutting it off"
        );
        let f = OpenOptions::new().write(true).open(&path)?;
        f.set_len(off as u64)?;
        f.sync_all()?;
    }
    let existed = path.exists();
    let file = OpenOptions::new().create(true).append(true).open(&path)?;
    if !existed {
        fsio::sync_dir(&dir)?;
    }
    let writer = Writer {
        path,
        dir,
        file,
        len: off as u64,
        records,
        entries: frames,
        last_purged: loaded.last_purged,
        committed: loaded.committed,
        buf: Vec::new(),
        need_sync: false,
        waiting: Vec::new(),
        failed: None,
        compact_min,
        votes,
    };
    Ok((loaded, writer))
}

/// The writer thread's state: the file and a mirror of its live records.
struct Writer {
    path: PathBuf,
    dir: PathBuf,
    file: File,
    /// Bytes in the file (not counting `buf`).
    len: u64,
    /// Records in the file and in `buf`.
    records: u64,
    /// The framed record of every live entry.
    entries: BTreeMap<u64, Vec<u8>>,
    last_purged: Option<LogId>,
    committed: Option<LogId>,
    /// Records not yet written to the file.
    buf: Vec<u8>,
    /// Something written since the last fsync needs one.
    need_sync: bool,
    /// Append callbacks waiting for the next fsync.
    waiting: Vec<Done>,
    /// Set by the first failed write: nothing is written after it.
    failed: Option<(io::ErrorKind, String)>,
    compact_min: u64,
    /// The vote's slots file.
    votes: VoteFile,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Op>) {
        while let Ok(op) = rx.recv() {
            self.handle(op);
            for _ in 1..MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => self.handle(op),
                    Err(_) => break,
                }
            }
            if self.sync().is_ok() {
                self.maybe_compact();
            }
        }
    }

    fn failure(&self) -> Option<io::Error> {
        let (kind, msg) = self.failed.as_ref()?;
        Some(io::Error::new(
            *kind,
            format!("an earlier log write failed: {msg}"),
        ))
    }

    fn handle(&mut self, op: Op) {
        match op {
            Op::Append { frames, done } => {
                if let Some(e) = self.failure() {
                    return done(Err(e));
                }
                for (index, frame) in frames {
                    self.buf.extend_from_slice(&frame);
                    self.entries.insert(index, frame);
                    self.records += 1;
                }
                self.need_sync = true;
                self.waiting.push(done);
            }
            Op::Truncate { from, reply } => {
                self.entries.split_off(&from);
                let r = self
                    .push(&Record::Truncate { from })
                    .and_then(|()| self.sync());
                let _ = reply.send(r);
            }
            Op::Purge { upto, reply } => {
                self.last_purged = Some(upto);
                self.entries = self.entries.split_off(&upto.index.saturating_add(1));
                let r = self.push(&Record::Purge(upto)).and_then(|()| self.sync());
                let _ = reply.send(r);
            }
            Op::Committed(c) => {
                self.committed = c;
                if let Err(e) = self.push(&Record::Committed(c)) {
                    tracing::error!("cannot record the committed log id: {e}");
                }
            }
            Op::Vote { vote, reply } => {
                let r = self.sync().and_then(|()| {
                    let began = std::time::Instant::now();
                    let r = self.votes.write(&vote);
                    slow_disk("vote write (in place, one fdatasync)", began);
                    r.map_err(|e| self.fail(e))
                });
                let _ = reply.send(r);
            }
        }
    }

    /// Queues one record (failing if an earlier write failed).
    fn push(&mut self, rec: &Record<'_>) -> io::Result<()> {
        if let Some(e) = self.failure() {
            return Err(e);
        }
        self.buf.extend_from_slice(&fsio::encode_frame(rec)?);
        self.records += 1;
        self.need_sync = true;
        Ok(())
    }

    /// Writes the queued records, fsyncs if needed, then fires the waiting
    /// append callbacks.
    fn sync(&mut self) -> io::Result<()> {
        if let Some(e) = self.failure() {
            return Err(e);
        }
        if !self.buf.is_empty() {
            if let Err(e) = self.file.write_all(&self.buf) {
                return Err(self.fail(e));
            }
            self.len += self.buf.len() as u64;
            self.buf.clear();
        }
        if self.need_sync {
            let began = std::time::Instant::now();
            if let Err(e) = self.file.sync_data() {
                return Err(self.fail(e));
            }
            slow_disk("log fsync", began);
            self.need_sync = false;
        }
        for done in self.waiting.drain(..) {
            done(Ok(()));
        }
        Ok(())
    }

    /// Records a failure: every waiting and later write fails.
    fn fail(&mut self, e: io::Error) -> io::Error {
        tracing::error!(path = %self.path.display(), "Raft log write failed: {e}");
        self.failed = Some((e.kind(), e.to_string()));
        self.buf.clear();
        for done in self.waiting.drain(..) {
            done(Err(io::Error::new(e.kind(), e.to_string())));
        }
        e
    }

    fn live_records(&self) -> u64 {
        self.entries.len() as u64
            + u64::from(self.last_purged.is_some())
            + u64::from(self.committed.is_some())
    }

    /// Rewrites the file with only the live records if most are dead.
    fn maybe_compact(&mut self) {
        let live = self.live_records();
        if self.len < self.compact_min || self.records <= 2 * live {
            return;
        }
        let mut out = Vec::new();
        let tmp = fsio::tmp_path(&self.path);
        let written = (|| {
            if let Some(p) = self.last_purged {
                out.extend(fsio::encode_frame(&Record::Purge(p))?);
            }
            for frame in self.entries.values() {
                out.extend_from_slice(frame);
            }
            if self.committed.is_some() {
                out.extend(fsio::encode_frame(&Record::Committed(self.committed))?);
            }
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            f.write_all(&out)?;
            f.sync_all()
        })();
        if let Err(e) = written {
            // The old file is untouched: keep using it.
            tracing::warn!(path = %tmp.display(), "cannot compact the Raft log: {e}");
            let _ = std::fs::remove_file(&tmp);
            return;
        }
        let swapped = std::fs::rename(&tmp, &self.path)
            .and_then(|()| fsio::sync_dir(&self.dir))
            .and_then(|()| OpenOptions::new().append(true).open(&self.path));
        match swapped {
            Ok(file) => {
                tracing::debug!(
                    before = self.len,
                    after = out.len(),
                    "compacted the Raft log"
                );
                self.file = file;
                self.len = out.len() as u64;
                self.records = live;
            }
            Err(e) => {
                self.fail(e);
            }
        }
    }
}
