//! The cluster's settings: Raft's timings (heartbeat, election timeout,
//! write and join timeouts) and compaction, and how they become openraft's
//! own.

use openraft::SnapshotPolicy;
use std::time::Duration;

/// Timing and compaction settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Leader heartbeat (also the AppendEntries timeout).
    pub heartbeat: Duration,
    /// Election timeout range; each node draws once from `[min, max)`.
    pub election: (Duration, Duration),
    /// The longest a write waits for a commit before it fails.
    pub write_timeout: Duration,
    /// The longest a joining node may take to catch up.
    pub join_timeout: Duration,
    /// Build a snapshot (and purge the log) every this many entries.
    pub snapshot_every: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            // A follower campaigns once its leader was silent for max
            // (+ 10 ms + its rank delay + a random 0-20 ms; see
            // election.rs): a new leader about 0.2 s after the old one's
            // death. The leader's lease (min) lapses before any other node
            // can be elected: at least max - min = 60 ms before on Raft's
            // own acknowledgements, 30 ms on the lease heartbeats (see
            // lease.rs). Heartbeats every 25 ms: three chances or more to
            // renew the lease.
            heartbeat: Duration::from_millis(25),
            election: (Duration::from_millis(90), Duration::from_millis(150)),
            write_timeout: Duration::from_secs(5),
            join_timeout: Duration::from_secs(30),
            snapshot_every: 1000,
        }
    }
}

/// openraft's settings from ours (to be checked with `validate`).
pub(crate) fn raft_config(opts: &Options) -> openraft::Config {
    openraft::Config {
        cluster_name: "raftlb".into(),
        heartbeat_interval: opts.heartbeat.as_millis() as u64,
        // openraft's own election timer is off (election.rs): its min
        // is then only how long a vote may take to come back, and a
        // voter writes its vote to disk before it answers. The lease is
        // still `election.0` (lease.rs).
        election_timeout_min: (opts.election.1.as_millis() as u64)
            .saturating_sub(1)
            .max(opts.election.0.as_millis() as u64),
        election_timeout_max: opts.election.1.as_millis() as u64,
        install_snapshot_timeout: 2000,
        snapshot_max_chunk_size: 1 << 20,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(opts.snapshot_every),
        max_in_snapshot_log_to_keep: opts.snapshot_every / 2,
        replication_lag_threshold: opts.snapshot_every * 2,
        ..Default::default()
    }
}
