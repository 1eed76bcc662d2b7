//! Stick tables kept in step between peers, over the cluster transport
//! (not through Raft: entries change with every connection).
//!
//! - Each node pushes the entries it writes to every peer ([`push_to`]),
//!   batched, every [`PUSH_EVERY`]; a peer's answer acknowledges the batch,
//!   and the next one starts after it. A peer that cannot be reached gets
//!   the batch again, from the same place, when it can: positions are per
//!   table shard ([`StickTable::written_after`]), so an entry written many
//!   times while the peer was away is sent once, as it is now.
//! - A node that starts asks a peer for a full resync ([`resync`]) before
//!   it applies its first config (and so before its frontends accept),
//!   page by page, for at most [`RESYNC_WITHIN`]: a lone node still starts.
//! - Every version an entry reaches a node by (its own write, a push, a
//!   resync, the file saved at the last stop) is merged by the last writer
//!   ([`raftlb_proto::stick::merge`]), so the order does not matter.
//! - Only protocol version 2 connections carry the sync: a peer of an older
//!   release is left out (logged once), and nothing else changes for it.

use super::table::{now_ms, StickTable};
use crate::handle::Cluster;
use crate::runtime::Runtime;
use raftlb_cluster::net::CallError;
use raftlb_cluster::types::{Request, Response};
use raftlb_cluster::StickPeer;
use raftlb_proto::stick::{PullFrom, StickEntry, StickPage, TableEntries, TableKey};
use raftlb_proto::NodeId;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How often each peer's pusher looks for new writes: an entry reaches a
/// peer within this plus a round trip.
pub const PUSH_EVERY: Duration = Duration::from_millis(10);

/// The longest a start waits for a peer's tables.
pub const RESYNC_WITHIN: Duration = Duration::from_secs(3);

/// The most entries in one push or one resync page.
const BATCH_ENTRIES: usize = 4096;

/// The most bytes (roughly) in one push or one resync page: far under the
/// frame limit, so that a batch of long string keys still fits.
const BATCH_BYTES: usize = 1 << 20;

/// How long a push or a page may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// The pause between two tries of a call that did not reach its peer.
const RETRY_EVERY: Duration = Duration::from_millis(50);

/// The longest pause between tries to a peer that does not answer.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How often the set of peers is looked at again.
const PEERS_EVERY: Duration = Duration::from_secs(1);

/// How far each peer's copy of this node's writes is behind: since when
/// each pusher has had writes the peer has not acknowledged (ms since the
/// Unix epoch; none: the peer has them all).
#[derive(Debug, Default)]
pub struct SyncLag(std::sync::Mutex<HashMap<NodeId, Option<u64>>>);

impl SyncLag {
    /// `peer` has every write (`None`), or lacks some since `behind_since_ms`; a lag
    /// already counting keeps its start.
    fn set(&self, peer: NodeId, behind_since_ms: Option<u64>) {
        let mut m = self.0.lock().expect("sync lag");
        let e = m.entry(peer).or_insert(behind_since_ms);
        *e = behind_since_ms.map(|at| e.unwrap_or(at));
    }

    fn forget(&self, peer: NodeId) {
        self.0.lock().expect("sync lag").remove(&peer);
    }

    /// Each peer's lag at `now_ms`: how long it has lacked some of this
    /// node's writes (zero when it has them all).
    pub fn lags(&self, now_ms: u64) -> Vec<(NodeId, Duration)> {
        let lag = |since: &Option<u64>| {
            since.map_or(Duration::ZERO, |at| {
                Duration::from_millis(now_ms.saturating_sub(at))
            })
        };
        let m = self.0.lock().expect("sync lag");
        let mut out: Vec<_> = m.iter().map(|(p, since)| (*p, lag(since))).collect();
        out.sort();
        out
    }
}

/// The node's tables as its peers reach them.
pub struct Peering {
    runtime: Arc<Runtime>,
}

impl Peering {
    /// The peers' way into `runtime`'s tables.
    pub fn new(runtime: Arc<Runtime>) -> Peering {
        Peering { runtime }
    }
}

impl StickPeer for Peering {
    fn take(&self, from: NodeId, tables: Vec<TableEntries>) -> u64 {
        let n: usize = tables.iter().map(|t| t.entries.len()).sum();
        let taken = self.runtime.learn_stick_entries(tables);
        tracing::trace!(node = from, sent = n, taken, "stick entries from a peer");
        taken
    }

    fn page(&self, from: Option<PullFrom>) -> StickPage {
        page_of(&self.runtime.stick_tables(), from, now_ms())
    }

    fn clear(&self, table: &str, key: Option<&TableKey>) -> Option<u64> {
        clear_here(&self.runtime, table, key)
    }
}

/// Clears `runtime`'s table `table` (its entry `key` only): how many
/// entries, or `None` without such a table.
fn clear_here(runtime: &Runtime, table: &str, key: Option<&TableKey>) -> Option<u64> {
    let tables = runtime.stick_tables();
    let t = tables.iter().find(|t| t.name() == table)?;
    Some(t.forget(key, now_ms()) as u64)
}

/// What `table clear` did on one node.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Cleared {
    /// The node.
    pub node: NodeId,
    /// How many entries it cleared (none: it runs no such table).
    pub cleared: Option<u64>,
    /// Why it could not be asked.
    pub error: Option<String>,
}

/// `table clear` on every node: this one, then each peer in turn. A peer
/// that cannot be reached still gets this node's tombstones when it is
/// back (they are this node's writes); only entries no other node holds
/// stay there.
pub async fn clear_everywhere(
    cluster: &Cluster,
    runtime: &Runtime,
    table: &str,
    key: Option<&TableKey>,
) -> Vec<Cleared> {
    let here = clear_here(runtime, table, key);
    let mut out = vec![Cleared {
        node: cluster.id(),
        cleared: here,
        error: None,
    }];
    for (id, addr) in cluster.peers() {
        let ask = || Request::StickClear {
            table: table.to_string(),
            key: key.cloned(),
        };
        let (cleared, error) = match call(cluster, id, &addr, ask).await {
            Ok(Response::StickCleared(n)) => (n, None),
            Ok(other) => (None, Some(format!("unexpected answer {}", other.kind()))),
            Err(e) => (None, Some(e.to_string())),
        };
        out.push(Cleared {
            node: id,
            cleared,
            error,
        });
    }
    out
}

/// A rough size of an entry on the wire, to bound a batch in bytes.
fn wire_size(key: &TableKey, entry: &StickEntry) -> usize {
    let key = match key {
        TableKey::String(b) => b.len(),
        _ => 16,
    };
    let server = entry
        .server
        .as_ref()
        .map_or(0, |s| s.backend.len() + s.server.len());
    key + server + 32 + 24 * entry.counters.len()
}

/// A batch being filled: the entries by table, and how much is left.
struct Batch {
    tables: Vec<TableEntries>,
    entries: usize,
    bytes: usize,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            tables: Vec::new(),
            entries: 0,
            bytes: 0,
        }
    }

    fn room(&self) -> usize {
        if self.bytes >= BATCH_BYTES {
            0
        } else {
            BATCH_ENTRIES - self.entries
        }
    }

    fn add(&mut self, table: &str, entries: Vec<(TableKey, StickEntry)>) {
        if entries.is_empty() {
            return;
        }
        self.entries += entries.len();
        self.bytes += entries.iter().map(|(k, e)| wire_size(k, e)).sum::<usize>();
        match self.tables.last_mut() {
            Some(t) if t.name == table => t.entries.extend(entries),
            _ => self.tables.push(TableEntries {
                name: table.to_string(),
                entries,
            }),
        }
    }
}

/// The page of `tables` (sorted by name) that starts after `from`.
pub fn page_of(tables: &[Arc<StickTable>], from: Option<PullFrom>, now_ms: u64) -> StickPage {
    let mut batch = Batch::new();
    let start = from.unwrap_or(PullFrom {
        table: String::new(),
        shard: 0,
        after: 0,
    });
    for t in tables.iter().filter(|t| t.name() >= start.table.as_str()) {
        let same = t.name() == start.table;
        let first_shard = if same { start.shard as usize } else { 0 };
        for shard in first_shard..t.shard_count() {
            let after = if same && shard == first_shard {
                start.after
            } else {
                0
            };
            let (entries, last) = t.written_after(shard, after, batch.room(), now_ms, |_| true);
            batch.add(t.name(), entries);
            if batch.room() == 0 {
                let next = PullFrom {
                    table: t.name().to_string(),
                    shard: shard as u32,
                    after: last,
                };
                return StickPage {
                    tables: batch.tables,
                    next: Some(next),
                };
            }
        }
    }
    StickPage {
        tables: batch.tables,
        next: None,
    }
}

/// Where a peer's pusher stands in each table: the table object it counted
/// in, and the last position sent per shard.
#[derive(Debug, Clone, Default)]
pub struct Cursors(HashMap<String, (u64, Vec<u64>)>);

impl Cursors {
    /// The entries `me` wrote in `tables` since these cursors, at most one
    /// batch, and the cursors after them.
    pub fn next_batch(
        &self,
        tables: &[Arc<StickTable>],
        me: NodeId,
        now_ms: u64,
    ) -> (Vec<TableEntries>, Cursors) {
        let mut batch = Batch::new();
        let mut next = Cursors::default();
        for t in tables {
            let fresh = (t.id(), vec![0; t.shard_count()]);
            let (id, mut at) = match self.0.get(t.name()) {
                Some((id, at)) if *id == t.id() => (*id, at.clone()),
                _ => fresh,
            };
            for (shard, pos) in at.iter_mut().enumerate() {
                if batch.room() == 0 {
                    break;
                }
                let mine = |e: &StickEntry| e.written.node == me;
                let (entries, last) = t.written_after(shard, *pos, batch.room(), now_ms, mine);
                batch.add(t.name(), entries);
                *pos = last;
            }
            next.0.insert(t.name().to_string(), (id, at));
        }
        (batch.tables, next)
    }
}

/// Pushes this node's writes to every peer, each in its own task
/// ([`push_to`]), following the membership, keeping `lag`; until aborted.
pub async fn push_to_peers(cluster: Arc<Cluster>, runtime: Arc<Runtime>, lag: Arc<SyncLag>) {
    let mut pushers = Pushers(HashMap::new());
    let mut tick = tokio::time::interval(PEERS_EVERY);
    loop {
        tick.tick().await;
        let peers: HashMap<NodeId, String> = cluster.peers().into_iter().collect();
        pushers.0.retain(|id, (addr, task)| {
            let keep = peers.get(id) == Some(addr) && !task.is_finished();
            if !keep {
                task.abort();
                lag.forget(*id);
            }
            keep
        });
        for (id, addr) in peers {
            pushers.0.entry(id).or_insert_with(|| {
                let to = (id, addr.clone());
                let task = tokio::spawn(push_to(cluster.clone(), runtime.clone(), to, lag.clone()));
                (addr, task)
            });
        }
    }
}

/// Aborts every pusher when the supervisor goes.
struct Pushers(HashMap<NodeId, (String, JoinHandle<()>)>);

impl Drop for Pushers {
    fn drop(&mut self) {
        for (_, task) in self.0.values() {
            task.abort();
        }
    }
}

/// Calls `peer` at `addr` with the request `req` makes, within
/// [`CALL_TIMEOUT`]; a call that was certainly not delivered (the peer not
/// reached yet, or a connection to it still being made for another call)
/// is made again every [`RETRY_EVERY`] meanwhile.
async fn call(
    cluster: &Cluster,
    peer: NodeId,
    addr: &str,
    req: impl Fn() -> Request,
) -> Result<Response, CallError> {
    let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match cluster.call(peer, addr, req(), left).await {
            Err(CallError::Unreachable { .. }) if left > RETRY_EVERY * 2 => {
                tokio::time::sleep(RETRY_EVERY).await;
            }
            other => return other,
        }
    }
}

/// Pushes this node's writes to peer `peer` at `addr`, until aborted;
/// `lag` learns when the peer last had them all.
async fn push_to(
    cluster: Arc<Cluster>,
    runtime: Arc<Runtime>,
    (peer, addr): (NodeId, String),
    lag: Arc<SyncLag>,
) {
    let me = cluster.id();
    let mut cursors = Cursors::default();
    let mut pause = PUSH_EVERY;
    let mut failing = false;
    // Nothing is known of the peer yet: its lag counts from now.
    lag.set(peer, Some(now_ms()));
    loop {
        tokio::time::sleep(pause).await;
        let taken_ms = now_ms();
        let (batch, next) = cursors.next_batch(&runtime.stick_tables(), me, taken_ms);
        if batch.is_empty() {
            cursors = next;
            pause = PUSH_EVERY;
            lag.set(peer, None);
            continue;
        }
        lag.set(peer, Some(taken_ms));
        let full = batch.iter().map(|t| t.entries.len()).sum::<usize>() >= BATCH_ENTRIES;
        let push = || Request::StickPush(batch.clone());
        match call(&cluster, peer, &addr, push).await {
            Ok(Response::StickTaken(_)) => {
                if failing {
                    tracing::info!(node = peer, "stick-table sync to the peer resumed");
                    failing = false;
                }
                cursors = next;
                pause = if full { Duration::ZERO } else { PUSH_EVERY };
                if !full {
                    // The peer has every write up to when the batch was
                    // taken; a newer one starts a lag of its own.
                    lag.set(peer, None);
                }
            }
            Err(CallError::Unsupported { speaks, .. }) => {
                if !failing {
                    tracing::warn!(node = peer, version = speaks, "the peer speaks an older protocol: stick tables are not synced to it until it is upgraded");
                    failing = true;
                }
                pause = MAX_BACKOFF * 5;
            }
            other => {
                let why = match other {
                    Ok(r) => format!("unexpected answer {}", r.kind()),
                    Err(e) => e.to_string(),
                };
                if !failing {
                    tracing::info!(node = peer, reason = %why, "stick-table sync to the peer paused; it resumes from the last entry it took");
                    failing = true;
                }
                pause = (pause * 2).clamp(PUSH_EVERY * 10, MAX_BACKOFF);
            }
        }
    }
}

/// The peers' tables, for a node that starts: pages from one peer (the
/// leader first) until the last, or from the next peer if one fails, for
/// at most `within`. Every entry got is returned, also from a resync cut
/// short (each is a version written by someone, merged by the last writer).
pub async fn resync(cluster: &Cluster, within: Duration) -> Vec<TableEntries> {
    let mut peers = cluster.peers();
    let leader = cluster.status().leader;
    peers.sort_by_key(|(id, _)| Some(*id) != leader);
    let deadline = tokio::time::Instant::now() + within;
    let mut got = Vec::new();
    for (id, addr) in peers {
        let mut from = None;
        loop {
            let pull = || Request::StickPull(from.clone());
            match tokio::time::timeout_at(deadline, call(cluster, id, &addr, pull)).await {
                Ok(Ok(Response::StickPage(page))) => {
                    got.extend(page.tables);
                    match page.next {
                        Some(next) => from = Some(next),
                        None => {
                            let n: usize = got.iter().map(|t: &TableEntries| t.entries.len()).sum();
                            tracing::info!(
                                node = id,
                                entries = n,
                                "stick tables resynced from a peer"
                            );
                            return got;
                        }
                    }
                }
                Ok(other) => {
                    let why = match other {
                        Ok(r) => format!("unexpected answer {}", r.kind()),
                        Err(e) => e.to_string(),
                    };
                    tracing::info!(node = id, reason = %why, "no stick-table resync from this peer");
                    break;
                }
                Err(_) => {
                    tracing::warn!(
                        within_ms = within.as_millis() as u64,
                        "stick-table resync cut short: starting with what arrived"
                    );
                    return got;
                }
            }
        }
    }
    got
}
