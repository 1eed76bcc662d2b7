//! One stick table at run time: its entries in shards (each behind its own
//! short lock, so connections on different threads rarely meet), each shard
//! bounded and evicting the entry that expires first when full, as HAProxy
//! purges its oldest entries. Time is passed in (ms since the Unix epoch),
//! so the table is tested with a clock of the test's own.

use super::shard::Shard;
use raftlb_proto::config::{StickData, StickTable as Spec, StickType};
use raftlb_proto::state::NodeId;
use raftlb_proto::stick::{merge, Counter, Stamp, StickEntry, StuckServer, TableKey};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// How long a cleared entry's tombstone lives in a table without
/// `expire`: longer than any version written before the clear takes to
/// reach this node from a peer that was away.
pub const TOMBSTONE_MS: u64 = 24 * 3600 * 1000;

/// The longest a key's renewals stay unpushed ([`StickTable::quiet_ms`]).
pub const QUIET_MS: u64 = 5000;

/// The most shards a table has.
const MAX_SHARDS: usize = 64;

/// The fewest entries a shard holds: a smaller table has fewer shards (one,
/// under twice this), so that it fills up before it evicts (a shard evicts
/// when it is full, whatever the others hold).
const MIN_PER_SHARD: usize = 1024;

/// A stick table.
#[derive(Debug)]
pub struct StickTable {
    name: String,
    key_type: StickType,
    size: u32,
    /// `expire` in ms; 0: entries live until evicted.
    pub(super) expire_ms: AtomicU64,
    /// The counters each entry keeps (`store`).
    pub(super) store: Vec<StickData>,
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    pub(super) me: NodeId,
    /// Unique to this table object (see [`StickTable::id`]).
    id: u64,
}

/// The next table's [`StickTable::id`].
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl StickTable {
    /// An empty table as `spec` says, whose writes this node (`me`) stamps.
    pub fn new(spec: &Spec, me: NodeId) -> StickTable {
        let n = shard_count(spec.size);
        let cap = (spec.size as usize / n).max(1);
        let shards = (0..n).map(|_| Mutex::new(Shard::with_cap(cap))).collect();
        StickTable {
            name: spec.name.clone(),
            key_type: spec.key_type,
            size: spec.size,
            expire_ms: AtomicU64::new(expire_ms(spec)),
            store: spec.store.clone(),
            shards,
            hasher: RandomState::new(),
            me,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Whether this table can follow `spec` in place: the same key type,
    /// size and counters. (A new `expire` applies to the entries written
    /// from now on.)
    pub fn fits(&self, spec: &Spec) -> bool {
        self.key_type == spec.key_type && self.size == spec.size && self.store == spec.store
    }

    /// Takes `spec`'s `expire` for new writes.
    pub fn reconfigure(&self, spec: &Spec) {
        self.expire_ms.store(expire_ms(spec), Ordering::Relaxed);
    }

    /// A table as `spec` says with the live entries of `old` (for a change
    /// of size: the entries that expire last are kept).
    pub fn resized(old: &StickTable, spec: &Spec, now_ms: u64) -> StickTable {
        let new = StickTable::new(spec, old.me);
        if old.key_type == spec.key_type {
            let mut entries = old.entries(now_ms);
            entries.sort_by_key(|(_, e)| e.expire_at_ms.unwrap_or(u64::MAX));
            for (key, mut entry) in entries {
                entry.counters = new.counters_from(&entry.counters);
                new.shard(&key).put(key, entry);
            }
        }
        new
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The type of its keys.
    pub fn key_type(&self) -> StickType {
        self.key_type
    }

    /// Its most entries.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// This table object's identity: a table made anew (for a change of
    /// size) has another, and positions in the old one mean nothing in it.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The node that stamps this table's writes.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// How many shards it has.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The live entries of shard `shard` written after position `after`,
    /// in the order written, at most `limit` and only those `keep` keeps;
    /// and the position up to which it looked (`after` if nothing was
    /// written since).
    pub fn written_after(
        &self,
        shard: usize,
        after: u64,
        limit: usize,
        now_ms: u64,
        keep: impl Fn(&StickEntry) -> bool,
    ) -> (Vec<(TableKey, StickEntry)>, u64) {
        let quiet_ms = self.quiet_ms();
        match self.shards.get(shard) {
            Some(s) => {
                let mut s = s.lock().unwrap_or_else(|e| e.into_inner());
                s.settle(now_ms, quiet_ms);
                s.written_after(after, limit, now_ms, keep)
            }
            None => (Vec::new(), after),
        }
    }

    /// The counters this table stores, from `old` where it counts the
    /// same thing (over the same period), else at zero.
    pub(super) fn counters_from(&self, old: &[(StickData, Counter)]) -> Vec<(StickData, Counter)> {
        self.store
            .iter()
            .map(|d| {
                let kept = old.iter().find(|(o, _)| o == d).map(|(_, c)| *c);
                (*d, kept.unwrap_or_else(|| Counter::new(*d)))
            })
            .collect()
    }

    /// How long a key's renewals (the same server, counters counted) stay
    /// in place before one is put at a position and pushed to peers: an
    /// eighth of `expire` (so a peer's copy never lags by more than that),
    /// at most [`QUIET_MS`].
    pub(super) fn quiet_ms(&self) -> u64 {
        match self.expire_ms.load(Ordering::Relaxed) {
            0 => QUIET_MS,
            e => (e / 8).min(QUIET_MS),
        }
    }

    /// Its entries' expiry if written at `now_ms`.
    pub(super) fn expiry(&self, now_ms: u64) -> Option<u64> {
        let expire = self.expire_ms.load(Ordering::Relaxed);
        (expire > 0).then(|| now_ms.saturating_add(expire))
    }

    pub(super) fn shard(&self, key: &TableKey) -> std::sync::MutexGuard<'_, Shard> {
        let h = self.hasher.hash_one(key);
        let i = (h >> 32) as usize % self.shards.len();
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What `f` makes of the server `key` sticks to, if its entry is there
    /// and alive (`f` runs under the shard's lock: keep it short).
    pub fn find<R>(
        &self,
        key: &TableKey,
        now_ms: u64,
        f: impl FnOnce(&StuckServer) -> R,
    ) -> Option<R> {
        let shard = self.shard(key);
        let entry = shard.get(key)?;
        if entry.expired(now_ms) {
            return None;
        }
        entry.server.as_ref().map(f)
    }

    /// As [`StickTable::find`], and whether the entry was written within
    /// [`StickTable::refresh_ms`] (a client whose entry is that fresh needs
    /// no renewal yet).
    pub fn find_fresh<R>(
        &self,
        key: &TableKey,
        now_ms: u64,
        f: impl FnOnce(&StuckServer) -> R,
    ) -> Option<(R, bool)> {
        let refresh = self.refresh_ms();
        let shard = self.shard(key);
        let entry = shard.get(key)?;
        if entry.expired(now_ms) {
            return None;
        }
        let fresh = now_ms.saturating_sub(entry.written.at_ms) < refresh;
        entry.server.as_ref().map(|s| (f(s), fresh))
    }

    /// How long an entry needs no renewal: half of `quiet_ms` (so a
    /// client's expiry is never more than that behind its last request).
    pub fn refresh_ms(&self) -> u64 {
        self.quiet_ms() / 2
    }

    /// `key`'s entry, if it is there and alive (cleared ones included).
    pub fn get(&self, key: &TableKey, now_ms: u64) -> Option<StickEntry> {
        let shard = self.shard(key);
        let entry = shard.get(key)?;
        (!entry.expired(now_ms)).then(|| entry.clone())
    }

    /// A string key from `bytes`, cut to this table's `len`.
    pub fn string_key(&self, bytes: &[u8]) -> TableKey {
        match self.key_type {
            StickType::String { len } => TableKey::string(bytes, len),
            _ => TableKey::string(bytes, u32::MAX),
        }
    }

    /// Makes `key` stick to `server` from now (a new entry, or the entry
    /// rewritten and its expiry renewed), stamped by this node.
    pub fn stick(&self, key: TableKey, server: StuckServer, now_ms: u64) {
        let mut shard = self.shard(&key);
        let (expire_at_ms, me) = (self.expiry(now_ms), self.me);
        let renewed = shard.touch(&key, now_ms, self.quiet_ms(), |e| {
            if e.server.as_ref() != Some(&server) {
                return false;
            }
            e.expire_at_ms = expire_at_ms;
            e.written = Stamp {
                at_ms: now_ms,
                node: me,
            };
            true
        });
        if renewed {
            return;
        }
        let counters = match shard.take(&key) {
            Some(e) if !e.expired(now_ms) => e.counters,
            _ => self.counters_from(&[]),
        };
        let entry = StickEntry {
            server: Some(server),
            expire_at_ms: self.expiry(now_ms),
            written: Stamp {
                at_ms: now_ms,
                node: self.me,
            },
            counters,
        };
        shard.put(key, entry);
    }

    /// Takes a version of `key`'s entry written elsewhere (a peer, or the
    /// table saved at a stop): it replaces this node's only if it was
    /// written later ([`merge`]). Expired versions, and keys of another
    /// type, are dropped; returns whether it was taken (whether the entry
    /// changed).
    pub fn learn(&self, key: TableKey, entry: StickEntry, now_ms: u64) -> bool {
        if entry.expired(now_ms) || !key.fits(self.key_type) {
            return false;
        }
        let mut shard = self.shard(&key);
        // `conn_cur` counts this node's connections: never a peer's.
        let mut entry = entry;
        let mine = shard.get(&key);
        let here = mine.map_or(0, conn_cur);
        for (d, c) in entry.counters.iter_mut() {
            if *d == StickData::ConnCur {
                *c = Counter::Gauge(here);
            }
        }
        let merged = match mine {
            Some(mine) if *mine == merge(mine.clone(), entry.clone()) => return false,
            Some(mine) => merge(mine.clone(), entry),
            None => entry,
        };
        shard.put(key, merged);
        true
    }

    /// Clears `key`'s entry, or every entry (`table clear`): each becomes
    /// a tombstone, an entry of no server written by this node now, so
    /// that the clear reaches the peers as any write does and wins over
    /// the versions written before it. A tombstone lives as long as an
    /// entry would ([`TOMBSTONE_MS`] in a table without `expire`). Returns
    /// how many entries were cleared.
    pub fn forget(&self, key: Option<&TableKey>, now_ms: u64) -> usize {
        let expire = match self.expire_ms.load(Ordering::Relaxed) {
            0 => TOMBSTONE_MS,
            e => e,
        };
        let tombstone = StickEntry {
            server: None,
            expire_at_ms: Some(now_ms.saturating_add(expire)),
            written: Stamp {
                at_ms: now_ms,
                node: self.me,
            },
            counters: Vec::new(),
        };
        let live =
            |e: &StickEntry| (e.server.is_some() || !e.counters.is_empty()) && !e.expired(now_ms);
        match key {
            Some(k) => {
                let mut shard = self.shard(k);
                let cleared = shard.get(k).is_some_and(live);
                if cleared {
                    shard.put(k.clone(), tombstone);
                }
                usize::from(cleared)
            }
            None => self
                .shards
                .iter()
                .map(|s| {
                    let mut s = s.lock().unwrap_or_else(|e| e.into_inner());
                    let keys: Vec<TableKey> = s
                        .iter()
                        .filter(|(_, e)| live(e))
                        .map(|(k, _)| k.clone())
                        .collect();
                    for k in &keys {
                        s.put(k.clone(), tombstone.clone());
                    }
                    keys.len()
                })
                .sum(),
        }
    }

    /// Removes every entry expired at `now_ms`; returns how many.
    pub fn purge(&self, now_ms: u64) -> usize {
        let quiet_ms = self.quiet_ms();
        self.shards
            .iter()
            .map(|s| {
                let mut s = s.lock().unwrap_or_else(|e| e.into_inner());
                s.settle(now_ms, quiet_ms);
                s.purge(now_ms)
            })
            .sum()
    }

    /// The live entries now (a copy).
    pub fn entries(&self, now_ms: u64) -> Vec<(TableKey, StickEntry)> {
        let mut out = Vec::new();
        for s in self.shards.iter() {
            let s = s.lock().unwrap_or_else(|e| e.into_inner());
            out.extend(
                s.iter()
                    .filter(|(_, e)| !e.expired(now_ms))
                    .map(|(k, e)| (k.clone(), e.clone())),
            );
        }
        out
    }

    /// How many entries it holds (expired ones not yet purged included).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A power of two, at most [`MAX_SHARDS`], with at least [`MIN_PER_SHARD`]
/// entries a shard: every shard holds `size / shards` entries, so the table
/// never holds more than `size`.
fn shard_count(size: u32) -> usize {
    let mut n = 1;
    while n * 2 <= MAX_SHARDS && n * 2 * MIN_PER_SHARD <= size as usize {
        n *= 2;
    }
    n
}

fn expire_ms(spec: &Spec) -> u64 {
    spec.expire.map_or(0, |d| d.as_millis().max(1) as u64)
}

/// Milliseconds since the Unix epoch now: the clock of stick-table
/// entries (wall time, so that an entry's expiry means the same on every
/// node and after a restart).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// An entry's `conn_cur` (0 if it stores none).
fn conn_cur(e: &StickEntry) -> u64 {
    e.counters
        .iter()
        .find_map(|(d, c)| match (d, c) {
            (StickData::ConnCur, Counter::Gauge(g)) => Some(*g),
            _ => None,
        })
        .unwrap_or(0)
}

/// A server of a backend, as an entry names it.
pub fn stuck(backend: &Arc<str>, server: &Arc<str>) -> StuckServer {
    StuckServer {
        backend: backend.clone(),
        server: server.clone(),
    }
}
