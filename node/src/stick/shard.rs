//! One shard of a stick table: its entries behind the shard's lock, in
//! two orders (by expiry, for purging and eviction; by position, for the
//! peers' sync), and the queue of entries renewed in place that peers have
//! yet to hear of.

use raftlb_proto::stick::{StickEntry, TableKey};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// Where an entry stands in its shard's eviction order: when it expires
/// (entries that do not expire come last), then its position (the order
/// of writes). An entry renewed in place ([`Shard::touch`]) keeps its rank
/// until purging or eviction reaches it, which ranks it again then.
type Rank = (u64, u64);

/// An entry in its shard: the entry, its rank, when it was last put at a
/// position (a write peers hear of), and whether it was renewed in place
/// since (and so waits in the shard's `renewed` queue).
#[derive(Debug)]
struct Slot {
    entry: StickEntry,
    rank: Rank,
    put_ms: u64,
    renewed: bool,
}

/// One shard: its entries, and two orders on them, both by position
/// (every write gives the entry the shard's next one): by expiry, for
/// eviction and purging, and by position alone, for the peers' sync
/// (what changed after the last position a peer took).
#[derive(Debug, Default)]
pub(super) struct Shard {
    entries: HashMap<TableKey, Slot>,
    by_expiry: BTreeSet<Rank>,
    by_position: BTreeMap<u64, TableKey>,
    /// The keys renewed in place since they were put at a position, in the
    /// order of their first such renewal (when, the key, and the put it
    /// followed): each is put at a new position `quiet_ms` after that
    /// renewal ([`Shard::settle`]), so peers never lag by more.
    renewed: VecDeque<(u64, TableKey, u64)>,
    next: u64,
    cap: usize,
}

impl Shard {
    /// `key`'s entry.
    pub(super) fn get(&self, key: &TableKey) -> Option<&StickEntry> {
        self.entries.get(key).map(|s| &s.entry)
    }

    /// `key`'s entry, to change in place without a new position (a change
    /// peers are not told of: `conn_cur`).
    pub(super) fn get_mut(&mut self, key: &TableKey) -> Option<&mut StickEntry> {
        self.entries.get_mut(key).map(|s| &mut s.entry)
    }

    /// Renews `key`'s live entry in place, without a new position, if it was
    /// put at one within `quiet_ms` and `change` makes a change peers may
    /// hear of later (it returns whether it did: a server kept, counters
    /// counted). Returns whether it was renewed so; if not, the caller puts
    /// the new version at a position. So a key written at every request is
    /// pushed to peers at most once per `quiet_ms`, while a new entry or a
    /// new server goes at once.
    pub(super) fn touch(
        &mut self,
        key: &TableKey,
        now_ms: u64,
        quiet_ms: u64,
        change: impl FnOnce(&mut StickEntry) -> bool,
    ) -> bool {
        let Some(slot) = self.entries.get_mut(key) else {
            return false;
        };
        if slot.entry.expired(now_ms) || now_ms.saturating_sub(slot.put_ms) >= quiet_ms {
            return false;
        }
        if !change(&mut slot.entry) {
            return false;
        }
        if !slot.renewed {
            slot.renewed = true;
            self.renewed.push_back((now_ms, key.clone(), slot.put_ms));
        }
        true
    }

    /// Puts at a new position every key first renewed in place `quiet_ms`
    /// or more before `now_ms`, so that peers hear of its renewals.
    pub(super) fn settle(&mut self, now_ms: u64, quiet_ms: u64) {
        while let Some((since, ..)) = self.renewed.front() {
            if now_ms.saturating_sub(*since) < quiet_ms {
                return;
            }
            let Some((_, key, put_ms)) = self.renewed.pop_front() else {
                return;
            };
            // Put again since (a stale item): nothing to do.
            let current = self
                .entries
                .get(&key)
                .is_some_and(|s| s.renewed && s.put_ms == put_ms);
            if current {
                self.reposition(&key);
            }
        }
    }

    /// Gives `key`'s entry the next position, and its rank by its expiry
    /// now: a write peers hear of.
    fn reposition(&mut self, key: &TableKey) {
        let Some(slot) = self.entries.get_mut(key) else {
            return;
        };
        self.next += 1;
        let old = slot.rank;
        let new = (slot.entry.expire_at_ms.unwrap_or(u64::MAX), self.next);
        slot.rank = new;
        slot.put_ms = slot.entry.written.at_ms;
        slot.renewed = false;
        self.by_expiry.remove(&old);
        self.by_expiry.insert(new);
        if let Some(k) = self.by_position.remove(&old.1) {
            self.by_position.insert(new.1, k);
        }
    }

    /// Puts `entry` under `key` at the next position, making room by
    /// evicting the entry that expires first.
    pub(super) fn put(&mut self, key: TableKey, entry: StickEntry) {
        self.next += 1;
        let rank = (entry.expire_at_ms.unwrap_or(u64::MAX), self.next);
        if let Some(old) = self.entries.get(&key).map(|s| s.rank) {
            self.by_expiry.remove(&old);
            self.by_position.remove(&old.1);
        } else {
            while self.entries.len() >= self.cap {
                let Some(victim) = self.first_to_go() else {
                    break;
                };
                self.remove_at(victim);
            }
        }
        self.by_expiry.insert(rank);
        self.by_position.insert(rank.1, key.clone());
        let put_ms = entry.written.at_ms;
        self.entries.insert(
            key,
            Slot {
                entry,
                rank,
                put_ms,
                renewed: false,
            },
        );
    }

    /// The rank of the entry that expires first (of entries that do not
    /// expire, the one written first), putting on the way the entries
    /// renewed in place since they were put at their position at a new
    /// one (which also sends their last version to peers).
    fn first_to_go(&mut self) -> Option<Rank> {
        loop {
            let rank = *self.by_expiry.first()?;
            let Some(key) = self.by_position.get(&rank.1) else {
                return Some(rank);
            };
            if !self.entries.get(key).is_some_and(|s| s.renewed) {
                return Some(rank);
            }
            let key = key.clone();
            self.reposition(&key);
        }
    }

    /// Takes `key`'s entry out (to put it back changed, at a new
    /// position, with no eviction to make room for it).
    pub(super) fn take(&mut self, key: &TableKey) -> Option<StickEntry> {
        let slot = self.entries.remove(key)?;
        self.by_expiry.remove(&slot.rank);
        self.by_position.remove(&slot.rank.1);
        Some(slot.entry)
    }

    /// Removes the entry of rank `rank`.
    fn remove_at(&mut self, rank: Rank) {
        self.by_expiry.remove(&rank);
        if let Some(key) = self.by_position.remove(&rank.1) {
            self.entries.remove(&key);
        }
    }

    /// Removes every entry expired at `now_ms`; returns how many.
    pub(super) fn purge(&mut self, now_ms: u64) -> usize {
        let mut gone = 0;
        while let Some(rank) = self.first_to_go() {
            if rank.0 > now_ms {
                break;
            }
            self.remove_at(rank);
            gone += 1;
        }
        gone
    }

    /// The live entries written after position `after`, in the order
    /// written, at most `limit` of them and only those `keep` keeps; and
    /// the position of the last one looked at.
    pub(super) fn written_after(
        &self,
        after: u64,
        limit: usize,
        now_ms: u64,
        keep: impl Fn(&StickEntry) -> bool,
    ) -> (Vec<(TableKey, StickEntry)>, u64) {
        let mut out = Vec::new();
        let mut last = after;
        for (&pos, key) in self.by_position.range(after + 1..) {
            if out.len() >= limit {
                break;
            }
            last = pos;
            let entry = &self.entries[key].entry;
            if !entry.expired(now_ms) && keep(entry) {
                out.push((key.clone(), entry.clone()));
            }
        }
        (out, last)
    }
}

impl Shard {
    /// An empty shard of at most `cap` entries.
    pub(super) fn with_cap(cap: usize) -> Shard {
        Shard {
            cap,
            ..Shard::default()
        }
    }

    /// How many entries it holds.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Every entry, in no order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&TableKey, &StickEntry)> {
        self.entries.iter().map(|(k, s)| (k, &s.entry))
    }
}
