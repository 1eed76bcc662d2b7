//! The durable store: Raft's vote and log, and the state machine with its
//! snapshots, in files under the node's data directory.
//!
//! Layout, under `DATA_DIR/raft/`: `log` (append-only checksummed records:
//! entries, truncations, purges, committed ids), `vote.slots` (the vote,
//! written in place in one of two slots), and `snapshot`
//! (the latest snapshot with its meta). Each `*.tmp` file is a half-done
//! atomic replace, removed at open.

mod fsio;
mod log;
mod sm;
mod vote;
mod wal;

#[cfg(test)]
mod tests;

pub use log::{LastLog, LogReader, LogStore};
pub use sm::{Applied, SnapshotBuilder, StateMachine};

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io;
use std::path::Path;
use tokio::sync::watch;

/// Opens the log and the state machine under `data_dir/raft/` (created if
/// missing), with a receiver of the applied state that starts at the last
/// snapshot's.
pub async fn open(
    data_dir: &Path,
) -> io::Result<(LogStore, StateMachine, watch::Receiver<Applied>)> {
    let dir = data_dir.join("raft");
    let log = LogStore::open(&dir).await?;
    let sm_dir = dir.clone();
    let (sm, applied) = tokio::task::spawn_blocking(move || StateMachine::open(&sm_dir))
        .await
        .map_err(io::Error::other)??;
    Ok((log, sm, applied))
}

/// Writes `value` to `path` as the store wrote its vote before
/// `vote.slots`: one checksummed bincode frame, replaced atomically and durably (a crash leaves the old
/// file or the new one). For other files of a node's data directory.
pub fn save_value<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    fsio::write_atomic(path, &fsio::encode_frame(value)?).map_err(|e| fsio::at(path, e))
}

/// Reads what [`save_value`] wrote; `None` if there is no file. A torn or
/// corrupt file is an error (`InvalidData`).
pub fn load_value<T: DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match fsio::read_if_exists(path).map_err(|e| fsio::at(path, e))? {
        Some(bytes) => fsio::decode_single(&bytes)
            .map(Some)
            .map_err(|e| fsio::at(path, e)),
        None => Ok(None),
    }
}
