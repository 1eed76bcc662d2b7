//! Tests of the store: openraft's storage suite, reopening, torn tails,
//! flush ordering, compaction, snapshots and apply.

use super::fsio::{self, Next};
use super::wal::{Record, LOG_FILE};
use super::*;
use crate::types::{Entry, StorageError, StoredMembership, TypeConfig, Vote};
use openraft::entry::RaftEntry;
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftSnapshotBuilder, RaftStateMachine};
use openraft::testing::{blank_ent, log_id, StoreBuilder, Suite};
use openraft::{AnyError, EntryPayload, Membership, RaftLogReader, StorageIOError};
use raftlb_proto::{Command, Format, OperatorState, ReplicatedState, ServerKey};
use std::collections::BTreeSet;
use std::path::Path;
use tempfile::TempDir;

const DOC: &str = r#"
[frontends.f]
bind = "127.0.0.1:1"
default_backend = "web"
[backends.web]
servers = [ { name = "s1", address = "127.0.0.1:2" }, { name = "s2", address = "127.0.0.1:3" } ]
"#;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
        let (log, sm, _applied) = open(dir.path())
            .await
            .map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).unwrap();
}

fn cmd(i: u64) -> Command {
    Command::SetWeight {
        server: ServerKey::new("web", "s1"),
        weight: i as u32,
    }
}

fn ent(term: u64, index: u64) -> Entry {
    Entry {
        log_id: log_id(term, 1, index),
        payload: EntryPayload::Normal(cmd(index)),
    }
}

fn dbg<T: std::fmt::Debug>(v: &T) -> String {
    format!("{v:?}")
}

/// Everything the log store reports, for comparisons.
async fn view(log: &mut LogStore) -> String {
    let state = log.get_log_state().await.unwrap();
    let entries = log.try_get_log_entries(0..1000).await.unwrap();
    let vote = log.read_vote().await.unwrap();
    let committed = log.read_committed().await.unwrap();
    dbg(&(
        state.last_purged_log_id,
        state.last_log_id,
        entries,
        vote,
        committed,
    ))
}

async fn indexes(log: &mut LogStore) -> Vec<u64> {
    let entries = log.try_get_log_entries(..).await.unwrap();
    entries.iter().map(|e| e.log_id.index).collect()
}

/// The records of the log file, as on disk now.
fn records_on_disk(dir: &Path) -> Vec<Record<'static>> {
    let buf = std::fs::read(dir.join("raft").join(LOG_FILE)).unwrap();
    let mut off = 0;
    let mut out = Vec::new();
    while let Next::Frame(payload, n) = fsio::next_frame(&buf[off..]) {
        out.push(fsio::decode(payload).unwrap());
        off += n;
    }
    assert_eq!(off, buf.len(), "the file ends with a whole record");
    out
}

fn entry_indexes_on_disk(dir: &Path) -> BTreeSet<u64> {
    let recs = records_on_disk(dir);
    recs.iter()
        .filter_map(|r| match r {
            Record::Entry(e) => Some(e.log_id.index),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn everything_reads_back_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, sm, _) = open(dir.path()).await.unwrap();
    log.blocking_append((1..=10).map(|i| ent(1, i)))
        .await
        .unwrap();
    log.save_vote(&Vote::new(2, 1)).await.unwrap();
    log.purge(log_id(1, 1, 3)).await.unwrap();
    log.truncate(log_id(1, 1, 8)).await.unwrap();
    assert_eq!(indexes(&mut log).await, vec![4, 5, 6, 7]);
    log.blocking_append([ent(2, 8), ent(2, 9)]).await.unwrap();
    log.save_committed(Some(log_id(2, 1, 8))).await.unwrap();
    let before = view(&mut log).await;
    drop((log, sm));

    let (mut log, _sm, _) = open(dir.path()).await.unwrap();
    assert_eq!(view(&mut log).await, before);
    assert_eq!(indexes(&mut log).await, vec![4, 5, 6, 7, 8, 9]);
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 3)));
    assert_eq!(state.last_log_id, Some(log_id(2, 1, 9)));
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(2, 1)));
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(2, 1, 8)));

    // Purging past the last entry leaves the purge point as the last id.
    log.purge(log_id(3, 1, 20)).await.unwrap();
    drop(log);
    let mut log = LogStore::open(&dir.path().join("raft")).await.unwrap();
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(3, 1, 20)));
    assert_eq!(state.last_log_id, Some(log_id(3, 1, 20)));
    assert!(indexes(&mut log).await.is_empty());
}

/// Writes entries 1..=5 and returns the log file's path and length.
async fn five_entries(dir: &Path) -> (std::path::PathBuf, u64) {
    let mut log = LogStore::open(&dir.join("raft")).await.unwrap();
    log.blocking_append((1..=5).map(|i| ent(1, i)))
        .await
        .unwrap();
    drop(log);
    let path = dir.join("raft").join(LOG_FILE);
    let len = std::fs::metadata(&path).unwrap().len();
    (path, len)
}

#[tokio::test]
async fn a_torn_tail_is_cut_and_whole_records_kept() {
    // Garbage after the last record: all five kept, the garbage cut.
    for garbage in [
        &[0xde, 0xad, 0xbe][..],
        &[9, 0, 0, 0, 1, 2, 3, 4, 5][..],
        &[0; 40][..],
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (path, len) = five_entries(dir.path()).await;
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(garbage);
        std::fs::write(&path, &bytes).unwrap();
        let mut log = LogStore::open(&dir.path().join("raft")).await.unwrap();
        assert_eq!(
            indexes(&mut log).await,
            vec![1, 2, 3, 4, 5],
            "garbage {garbage:?}"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
        // Appends after the cut are readable after the next reopen.
        log.blocking_append([ent(1, 6)]).await.unwrap();
        drop(log);
        let mut log = LogStore::open(&dir.path().join("raft")).await.unwrap();
        assert_eq!(indexes(&mut log).await, vec![1, 2, 3, 4, 5, 6]);
    }

    // The last record cut short, or with a flipped byte: the four before kept.
    for cut in [1u64, 3, 9] {
        let dir = tempfile::tempdir().unwrap();
        let (path, len) = five_entries(dir.path()).await;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - cut)
            .unwrap();
        let mut log = LogStore::open(&dir.path().join("raft")).await.unwrap();
        assert_eq!(indexes(&mut log).await, vec![1, 2, 3, 4], "cut {cut}");
    }
    let dir = tempfile::tempdir().unwrap();
    let (path, len) = five_entries(dir.path()).await;
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[len as usize - 2] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    let mut log = LogStore::open(&dir.path().join("raft")).await.unwrap();
    assert_eq!(indexes(&mut log).await, vec![1, 2, 3, 4]);
    assert!(std::fs::metadata(&path).unwrap().len() < len);
}

#[tokio::test]
async fn the_flush_callback_fires_after_the_bytes_are_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _sm, _) = open(dir.path()).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // Several appends queued at once, none awaited.
    for batch in [1..=3u64, 4..=4, 5..=9] {
        let want: BTreeSet<u64> = batch.clone().collect();
        let (tx, root) = (tx.clone(), dir.path().to_path_buf());
        let done = Box::new(move |r: std::io::Result<()>| {
            r.unwrap();
            let on_disk = entry_indexes_on_disk(&root);
            tx.send((*want.first().unwrap(), want.is_subset(&on_disk)))
                .unwrap();
        });
        log.append_with(batch.clone().map(|i| ent(1, i)), done)
            .unwrap();
        // Readable as soon as append returns.
        let read = log.try_get_log_entries(batch.clone()).await.unwrap();
        assert_eq!(read.len(), batch.count());
    }
    let mut fired = Vec::new();
    for _ in 0..3 {
        fired.push(rx.recv().await.unwrap());
    }
    assert_eq!(
        fired,
        vec![(1, true), (4, true), (5, true)],
        "in order, each on disk"
    );
}

#[tokio::test]
async fn compaction_keeps_only_live_records() {
    let dir = tempfile::tempdir().unwrap();
    let raft = dir.path().join("raft");
    let mut log = LogStore::open_with(&raft, 0).await.unwrap();
    for i in 1..=100 {
        log.blocking_append([ent(1, i)]).await.unwrap();
        log.save_committed(Some(log_id(1, 1, i))).await.unwrap();
    }
    log.purge(log_id(1, 1, 90)).await.unwrap();
    log.save_vote(&Vote::new(1, 1)).await.unwrap();
    // The writer compacts after the batch that carried the purge (the vote
    // may have been in the same batch, answered before the compaction).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut recs = records_on_disk(dir.path());
    while recs.len() != 12 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        recs = records_on_disk(dir.path());
    }
    assert_eq!(recs.len(), 12, "{recs:?}");
    assert!(matches!(recs[0], Record::Purge(p) if p == log_id(1, 1, 90)));
    assert!(matches!(recs[11], Record::Committed(Some(c)) if c == log_id(1, 1, 100)));
    assert!(!raft.join("log.tmp").exists());
    let before = view(&mut log).await;
    log.blocking_append([ent(1, 101)]).await.unwrap();
    drop(log);
    let mut log = LogStore::open(&raft).await.unwrap();
    assert_eq!(indexes(&mut log).await, (91..=101).collect::<Vec<_>>());
    log.truncate(log_id(1, 1, 101)).await.unwrap();
    assert_eq!(view(&mut log).await, before);
}

fn normal(index: u64, cmd: Command) -> Entry {
    Entry {
        log_id: log_id(1, 1, index),
        payload: EntryPayload::Normal(cmd),
    }
}

fn apply_config(expected: Option<u64>) -> Command {
    Command::ApplyConfig {
        doc: DOC.into(),
        format: Format::Toml,
        expected_version: expected,
    }
}

fn health(node: u64) -> Command {
    Command::ReportHealth {
        node,
        server: ServerKey::new("web", "s1"),
        up: matches!(node, 2 | 4),
        reason: format!("from {node}"),
    }
}

fn members(voters: &[u64], learners: &[u64]) -> Membership<u64, crate::PeerNode> {
    let voters: BTreeSet<u64> = voters.iter().copied().collect();
    let learners: BTreeSet<u64> = learners.iter().copied().collect();
    Membership::new(vec![voters], learners)
}

#[tokio::test]
async fn apply_matches_replicated_state_and_forgets_removed_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sm, mut applied) = StateMachine::open(dir.path()).unwrap();
    let s1 = ServerKey::new("web", "s1");
    let cmds = vec![
        apply_config(Some(0)),
        apply_config(Some(0)),
        Command::SetServerState {
            server: s1.clone(),
            state: OperatorState::Drain,
        },
        Command::SetServerState {
            server: ServerKey::new("web", "nope"),
            state: OperatorState::Maint,
        },
        health(1),
        health(2),
        health(3),
        health(4),
    ];
    let mut reference = ReplicatedState::default();
    let want: Vec<_> = cmds.iter().map(|c| reference.apply(c)).collect();
    let entries: Vec<Entry> = cmds
        .into_iter()
        .zip(1..)
        .map(|(c, i)| normal(i, c))
        .collect();
    assert_eq!(sm.apply(entries).await.unwrap(), want);
    assert!(applied.has_changed().unwrap());
    assert_eq!(*applied.borrow_and_update().state, reference);
    assert_eq!(applied.borrow().last_applied, Some(log_id(1, 1, 8)));

    // A blank, then a membership without nodes 2 and 4.
    let m = members(&[1, 3], &[5]);
    let out = sm
        .apply([
            blank_ent::<TypeConfig>(1, 1, 9),
            Entry::new_membership(log_id(1, 1, 10), m.clone()),
        ])
        .await
        .unwrap();
    assert_eq!(
        out,
        vec![raftlb_proto::Outcome::Done, raftlb_proto::Outcome::Done]
    );
    reference.forget_node(2);
    reference.forget_node(4);
    let now = applied.borrow_and_update().clone();
    assert_eq!(*now.state, reference);
    let views: Vec<u64> = now.state.health[&s1].keys().copied().collect();
    assert_eq!(views, vec![1, 3]);
    assert_eq!(now.last_applied, Some(log_id(1, 1, 10)));
    assert_eq!(
        now.membership,
        StoredMembership::new(Some(log_id(1, 1, 10)), m.clone())
    );
    assert_eq!(
        sm.applied_state().await.unwrap(),
        (now.last_applied, now.membership)
    );
}

#[tokio::test]
async fn snapshots_survive_reopen_and_install() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sm, rx) = StateMachine::open(dir.path()).unwrap();
    assert!(sm.get_current_snapshot().await.unwrap().is_none());
    let m = members(&[1, 2, 3], &[]);
    sm.apply([
        Entry::new_membership(log_id(1, 1, 1), m.clone()),
        normal(2, apply_config(None)),
        normal(3, health(2)),
    ])
    .await
    .unwrap();
    let want = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let state_then = rx.borrow().state.clone();
    // Applied after the snapshot: lost at reopen (openraft re-applies it).
    sm.apply([normal(4, health(3))]).await.unwrap();
    let snap2 = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert_ne!(snap2.meta.snapshot_id, want.meta.snapshot_id);
    drop(sm);
    std::fs::copy(dir.path().join("snapshot"), dir.path().join("second")).unwrap();

    // Reopen at the second snapshot.
    let (mut sm, applied) = StateMachine::open(dir.path()).unwrap();
    assert_eq!(applied.borrow().last_applied, Some(log_id(1, 1, 4)));
    let cur = sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(cur.meta, snap2.meta);
    assert_eq!(cur.snapshot.get_ref(), snap2.snapshot.get_ref());

    // Install the first one into a fresh state machine, then reopen it.
    let other = tempfile::tempdir().unwrap();
    let (mut sm2, mut rx2) = StateMachine::open(other.path()).unwrap();
    let mut data = sm2.begin_receiving_snapshot().await.unwrap();
    *data = *want.snapshot.clone();
    sm2.install_snapshot(&want.meta, data).await.unwrap();
    assert!(rx2.has_changed().unwrap());
    assert_eq!(rx2.borrow_and_update().state, state_then);
    assert_eq!(
        sm2.applied_state().await.unwrap(),
        (
            Some(log_id(1, 1, 3)),
            StoredMembership::new(Some(log_id(1, 1, 1)), m)
        )
    );
    drop(sm2);
    let (mut sm2, rx2) = StateMachine::open(other.path()).unwrap();
    assert_eq!(rx2.borrow().state, state_then);
    assert_eq!(
        sm2.get_current_snapshot().await.unwrap().unwrap().meta,
        want.meta
    );

    // Installing replaces the newer snapshot file too (openraft decides).
    let mut data = sm.begin_receiving_snapshot().await.unwrap();
    *data = *want.snapshot.clone();
    sm.install_snapshot(&want.meta, data).await.unwrap();
    assert_eq!(
        sm.get_current_snapshot().await.unwrap().unwrap().meta,
        want.meta
    );

    // A snapshot whose data contradicts its meta is refused.
    let mut data = sm.begin_receiving_snapshot().await.unwrap();
    *data = *snap2.snapshot.clone();
    assert!(sm.install_snapshot(&want.meta, data).await.is_err());

    // A snapshot file that does not decode is an error, not an empty state.
    let mut bytes = std::fs::read(dir.path().join("second")).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    std::fs::write(dir.path().join("snapshot"), &bytes).unwrap();
    let err = StateMachine::open(dir.path())
        .err()
        .expect("a corrupt snapshot fails open");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
}

#[tokio::test]
async fn open_lays_out_files_under_raft() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, mut sm, _) = open(dir.path()).await.unwrap();
    log.blocking_append([ent(1, 1)]).await.unwrap();
    log.save_vote(&Vote::new(1, 1)).await.unwrap();
    sm.get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let mut names: Vec<String> = std::fs::read_dir(dir.path().join("raft"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["log", "snapshot", "vote.slots"]);
}
