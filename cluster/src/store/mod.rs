//! The durable store: Raft's vote and log, and the state machine with its
//! snapshots, in files under the node's data directory.
