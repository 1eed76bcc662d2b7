//! Counting on a stick table's entries (`store`): a tracked connection's
//! arrival (`conn_cur`, `conn_rate`) and end (`conn_cur`, `bytes_in_rate`),
//! its HTTP requests (`http_req_rate`); and the values the `sc0_*` and
//! `src_*` fetches read. `conn_cur` is this node's own: its decrement is
//! not a write peers hear of, and a peer's value is never taken.

use super::table::StickTable;
use raftlb_proto::config::acl::CounterKind;
use raftlb_proto::config::StickData;
use raftlb_proto::stick::{Stamp, StickEntry, TableKey};

impl StickTable {
    /// Whether it stores any counter.
    pub fn counts(&self) -> bool {
        !self.store.is_empty()
    }

    /// Whether it stores a counter of `kind`.
    pub fn stores(&self, kind: CounterKind) -> bool {
        self.store.iter().any(|d| d.kind() == kind)
    }

    /// Counts `events` (each: what, how many) for `key` at `now_ms`: the
    /// entry is made if it is not there, its expiry renewed, and the write
    /// stamped as this node's. Counters the table does not store are not
    /// counted.
    pub fn count(&self, key: &TableKey, events: &[(CounterKind, u64)], now_ms: u64) {
        if self.store.is_empty() {
            return;
        }
        let mut shard = self.shard(key);
        let (expire_at_ms, me) = (self.expiry(now_ms), self.me);
        let add = |entry: &mut StickEntry| {
            for (d, c) in entry.counters.iter_mut() {
                for (kind, n) in events {
                    if d.kind() == *kind {
                        c.add(*n, d.period_ms().unwrap_or(0), now_ms);
                    }
                }
            }
            entry.expire_at_ms = expire_at_ms;
            entry.written = Stamp {
                at_ms: now_ms,
                node: me,
            };
        };
        // In place while peers heard of it lately (they hear of the counts
        // at the next write put at a position, within `quiet_ms`).
        let renewed = shard.touch(key, now_ms, self.quiet_ms(), |e| {
            add(e);
            true
        });
        if renewed {
            return;
        }
        let mut entry = match shard.take(key) {
            Some(e) if !e.expired(now_ms) => e,
            _ => StickEntry {
                server: None,
                expire_at_ms: None,
                written: Stamp::default(),
                counters: self.counters_from(&[]),
            },
        };
        add(&mut entry);
        shard.put(key.clone(), entry);
    }

    /// A connection tracked in `key`'s entry ended: one less in its
    /// `conn_cur`, in place (peers are not told).
    pub fn release(&self, key: &TableKey) {
        let mut shard = self.shard(key);
        if let Some(e) = shard.get_mut(key) {
            for (d, c) in e.counters.iter_mut() {
                if *d == StickData::ConnCur {
                    c.sub(1);
                }
            }
        }
    }

    /// The value of `key`'s counter of `kind` at `now_ms`: 0 without an
    /// entry, `None` if the table stores no such counter.
    pub fn counter(&self, key: &TableKey, kind: CounterKind, now_ms: u64) -> Option<u64> {
        let d = *self.store.iter().find(|d| d.kind() == kind)?;
        let shard = self.shard(key);
        let value = shard
            .get(key)
            .filter(|e| !e.expired(now_ms))
            .and_then(|e| e.counters.iter().find(|(x, _)| *x == d))
            .map_or(0, |(_, c)| c.value(d.period_ms().unwrap_or(0), now_ms));
        Some(value)
    }
}
