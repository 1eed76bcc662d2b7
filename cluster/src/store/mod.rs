//! The durable store: Raft's vote and log, and the state machine with its
//! snapshots, in files under the node's data directory.
//!
//! Layout, under `DATA_DIR/raft/`: `log` (append-only checksummed records:
//! entries, truncations, purges, committed ids), `vote`, and `snapshot`
//! (the latest snapshot with its meta). Each `*.tmp` file is a half-done
//! atomic replace, removed at open.

mod fsio;
mod log;
mod sm;
mod wal;

#[cfg(test)]
mod tests;

pub use log::{LastLog, LogReader, LogStore};
pub use sm::{Applied, SnapshotBuilder, StateMachine};

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
