//! Stick-table entries as data: a key ([`TableKey`]), the server it sticks
//! to, when it expires, and who wrote it last ([`Stamp`]). Nodes that hold
//! different versions of an entry agree on one by [`merge`]: the last
//! writer wins, by (time, node id), as HAProxy's peers converge ("the last
//! one applying a change has the last say"), but deterministically.

use crate::config::{StickData, StickType};
use crate::state::NodeId;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

/// A stick table's key. IPv4 addresses are kept as IPv4-mapped IPv6 ones,
/// so one `ip` table holds both families.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TableKey {
    /// An address (`type = "ip"`).
    Ip([u8; 16]),
    /// An integer (`type = "integer"`).
    Integer(u64),
    /// Bytes, cut to the table's `len` (`type = "string"`).
    String(Box<[u8]>),
}

impl TableKey {
    /// The key of a client address.
    pub fn ip(addr: IpAddr) -> TableKey {
        let v6 = match addr {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        TableKey::Ip(v6.octets())
    }

    /// A string key, cut to `len` bytes as HAProxy cuts them.
    pub fn string(bytes: &[u8], len: u32) -> TableKey {
        let n = bytes.len().min(len as usize);
        TableKey::String(bytes[..n].into())
    }

    /// A key as an operator writes it (`198.51.100.7`, `2001:db8::1`, `42`,
    /// `abc`), for a table of type `ty`.
    pub fn parse(ty: StickType, text: &str) -> Result<TableKey, String> {
        match ty {
            StickType::Ip => text
                .parse::<IpAddr>()
                .map(TableKey::ip)
                .map_err(|_| format!("{text:?} is not an IPv4 or IPv6 address")),
            StickType::Integer => text
                .parse::<u64>()
                .map(TableKey::Integer)
                .map_err(|_| format!("{text:?} is not an unsigned integer")),
            StickType::String { len } => Ok(TableKey::string(text.as_bytes(), len)),
        }
    }

    /// Whether this key fits a table of type `ty` (a string one no longer
    /// than the table's `len`).
    pub fn fits(&self, ty: StickType) -> bool {
        match (self, ty) {
            (TableKey::Ip(_), StickType::Ip) | (TableKey::Integer(_), StickType::Integer) => true,
            (TableKey::String(b), StickType::String { len }) => b.len() <= len as usize,
            _ => false,
        }
    }
}

impl fmt::Display for TableKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableKey::Ip(octets) => {
                let v6 = Ipv6Addr::from(*octets);
                match v6.to_ipv4_mapped() {
                    Some(v4) => write!(f, "{v4}"),
                    None => write!(f, "{v6}"),
                }
            }
            TableKey::Integer(n) => write!(f, "{n}"),
            TableKey::String(b) => write!(f, "{}", String::from_utf8_lossy(b)),
        }
    }
}

/// Who wrote an entry, and when (ms since the Unix epoch, on the writer's
/// clock). Ordered by time, then by node id: of two writes, the later one
/// wins, and two writes at the same millisecond are decided by node id.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct Stamp {
    /// When.
    pub at_ms: u64,
    /// By which node.
    pub node: NodeId,
}

/// A server an entry sticks to, by name (never by position: reordering or
/// adding servers keeps affinity).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StuckServer {
    /// The backend that stored it.
    pub backend: Arc<str>,
    /// The server's name.
    pub server: Arc<str>,
}

/// One entry of a stick table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StickEntry {
    /// The server the key sticks to (none for an entry that only counts).
    pub server: Option<StuckServer>,
    /// When it expires (ms since the Unix epoch; `None`: when evicted).
    pub expire_at_ms: Option<u64>,
    /// The last write.
    pub written: Stamp,
    /// The counters the table stores (`store`), each with what it counts.
    pub counters: Vec<(StickData, Counter)>,
}

/// A counter of an entry: a gauge (`conn_cur`), or events per period as
/// HAProxy's frequency counters keep them: the count of the current
/// period, which began at `start_ms` (periods are aligned on the epoch, so
/// every node cuts them alike), and the count of the one before. The rate
/// read at a time is the current count plus the previous one weighted by
/// how much of a period ago it still covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Counter {
    /// A value now.
    Gauge(u64),
    /// Events in the current and the previous period.
    Rate {
        /// When the current period began (ms since the Unix epoch).
        start_ms: u64,
        /// Events in it so far.
        curr: u64,
        /// Events in the period before it.
        prev: u64,
    },
}

impl Counter {
    /// A counter at zero for `data`.
    pub fn new(data: StickData) -> Counter {
        match data.period_ms() {
            None => Counter::Gauge(0),
            Some(_) => Counter::Rate {
                start_ms: 0,
                curr: 0,
                prev: 0,
            },
        }
    }

    /// Moves a rate on to the period that holds `now_ms` (`period_ms` long).
    fn roll(&mut self, period_ms: u64, now_ms: u64) {
        if let Counter::Rate {
            start_ms,
            curr,
            prev,
        } = self
        {
            // A clock that went back counts in the current period.
            let elapsed = now_ms.saturating_sub(*start_ms);
            if elapsed >= period_ms {
                let periods = elapsed / period_ms;
                *prev = if periods == 1 { *curr } else { 0 };
                *curr = 0;
                *start_ms += periods * period_ms;
            }
        }
    }

    /// Adds `n` events at `now_ms` (a gauge: adds `n`).
    pub fn add(&mut self, n: u64, period_ms: u64, now_ms: u64) {
        self.roll(period_ms, now_ms);
        match self {
            Counter::Gauge(g) => *g = g.saturating_add(n),
            Counter::Rate { curr, .. } => *curr = curr.saturating_add(n),
        }
    }

    /// Takes `n` off a gauge (a rate is left as it is).
    pub fn sub(&mut self, n: u64) {
        if let Counter::Gauge(g) = self {
            *g = g.saturating_sub(n);
        }
    }

    /// The value at `now_ms`: a gauge's value, or the events per period.
    pub fn value(&self, period_ms: u64, now_ms: u64) -> u64 {
        let mut c = *self;
        c.roll(period_ms, now_ms);
        match c {
            Counter::Gauge(g) => g,
            Counter::Rate {
                start_ms,
                curr,
                prev,
            } => {
                let into = now_ms.saturating_sub(start_ms).min(period_ms);
                let left = period_ms - into;
                let weighted = (u128::from(prev) * u128::from(left) / u128::from(period_ms)) as u64;
                curr.saturating_add(weighted)
            }
        }
    }
}

impl StickEntry {
    /// Whether it has expired at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expire_at_ms.is_some_and(|e| e <= now_ms)
    }
}

/// One table's entries, by name: what a node saves at a stop, pushes to a
/// peer, or answers a peer's full resync with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableEntries {
    /// The table's name.
    pub name: String,
    /// Its entries.
    pub entries: Vec<(TableKey, StickEntry)>,
}

/// Where a full resync goes on: the next entries of table `table` after
/// those up to `after` in its shard `shard` (positions are the answering
/// node's own, opaque to the asking one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullFrom {
    /// The table.
    pub table: String,
    /// The shard.
    pub shard: u32,
    /// The last position already sent.
    pub after: u64,
}

/// One page of a full resync: entries of one or more tables, and where the
/// next page starts (`None`: that was the last).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StickPage {
    /// The entries.
    pub tables: Vec<TableEntries>,
    /// Where to go on.
    pub next: Option<PullFrom>,
}

/// The version of an entry two nodes agree on: the one written last (by
/// [`Stamp`]). Commutative, associative and idempotent, so every node
/// reaches the same entry whatever order the versions arrive in. Two
/// versions with the same stamp (the same write, seen twice) are equal; if
/// they were not, the greater one wins, so even then the order does not
/// matter.
pub fn merge(a: StickEntry, b: StickEntry) -> StickEntry {
    match a.written.cmp(&b.written) {
        std::cmp::Ordering::Less => b,
        std::cmp::Ordering::Greater => a,
        std::cmp::Ordering::Equal => a.max(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(server: &str, at_ms: u64, node: NodeId) -> StickEntry {
        StickEntry {
            server: Some(StuckServer {
                backend: "web".into(),
                server: server.into(),
            }),
            expire_at_ms: Some(at_ms + 1000),
            written: Stamp { at_ms, node },
            counters: Vec::new(),
        }
    }

    #[test]
    fn the_last_writer_wins_and_node_ids_break_ties() {
        let (old, new) = (entry("s1", 10, 3), entry("s2", 11, 1));
        assert_eq!(merge(old.clone(), new.clone()), new);
        assert_eq!(merge(new.clone(), old), new);
        let (n1, n2) = (entry("s1", 10, 1), entry("s2", 10, 2));
        assert_eq!(merge(n1.clone(), n2.clone()), n2);
        assert_eq!(merge(n2.clone(), n1), n2);
    }

    #[test]
    fn merge_is_commutative_associative_and_idempotent() {
        let servers = ["s1", "s2", "s3"];
        let mut all = Vec::new();
        for at in [5, 6, 7] {
            for node in [1, 2] {
                for s in servers {
                    all.push(entry(s, at, node));
                }
            }
        }
        for a in &all {
            assert_eq!(merge(a.clone(), a.clone()), *a);
            for b in &all {
                let ab = merge(a.clone(), b.clone());
                assert_eq!(ab, merge(b.clone(), a.clone()));
                for c in &all {
                    assert_eq!(
                        merge(ab.clone(), c.clone()),
                        merge(a.clone(), merge(b.clone(), c.clone()))
                    );
                }
            }
        }
    }

    #[test]
    fn keys_of_both_families_share_an_ip_table_and_print_as_written() {
        let v4 = TableKey::parse(StickType::Ip, "198.51.100.7").unwrap();
        assert_eq!(v4, TableKey::ip("198.51.100.7".parse().unwrap()));
        assert_eq!(v4.to_string(), "198.51.100.7");
        let v6 = TableKey::parse(StickType::Ip, "2001:db8::1").unwrap();
        assert_ne!(v4, v6);
        assert_eq!(v6.to_string(), "2001:db8::1");
        assert!(v4.fits(StickType::Ip) && !v4.fits(StickType::Integer));
        assert!(TableKey::parse(StickType::Ip, "198.51.100.300").is_err());
        assert!(TableKey::parse(StickType::Ip, "10.0.0.1/8").is_err());
    }

    #[test]
    fn string_keys_are_cut_to_the_tables_length_and_integers_parse() {
        let ty = StickType::String { len: 4 };
        assert_eq!(
            TableKey::parse(ty, "abcdef").unwrap(),
            TableKey::String(b"abcd"[..].into())
        );
        assert_eq!(TableKey::parse(ty, "ab").unwrap().to_string(), "ab");
        assert_eq!(
            TableKey::parse(StickType::Integer, "42").unwrap(),
            TableKey::Integer(42)
        );
        assert!(TableKey::parse(StickType::Integer, "-1").is_err());
        let long = TableKey::String(b"abcde"[..].into());
        assert!(!long.fits(ty) && long.fits(StickType::String { len: 5 }));
    }

    #[test]
    fn an_entry_expires_at_its_time_and_one_without_expiry_never() {
        let e = entry("s1", 10, 1);
        assert!(!e.expired(1009) && e.expired(1010));
        let forever = StickEntry {
            expire_at_ms: None,
            ..e
        };
        assert!(!forever.expired(u64::MAX));
    }

    #[test]
    fn a_rate_counts_this_period_and_weighs_the_last_one_by_what_it_still_covers() {
        let data = StickData::ConnRate(std::time::Duration::from_secs(10));
        let p = 10_000;
        let mut c = Counter::new(data);
        // A paused clock: every time is given.
        for t in [100_000, 101_000, 102_000, 109_999] {
            c.add(1, p, t);
        }
        assert_eq!(c.value(p, 109_999), 4, "four in the period of 100 000");
        // Half-way through the next period: nothing new, half the last.
        assert_eq!(c.value(p, 115_000), 2);
        c.add(3, p, 115_000);
        assert_eq!(c.value(p, 115_000), 5);
        // Two periods on, the old ones are gone.
        assert_eq!(c.value(p, 130_000), 0);
        assert_eq!(c.value(p, 125_000), 1, "3 weighed by half");
        // A clock that went back counts in the current period.
        c.add(1, p, 90_000);
        assert_eq!(c.value(p, 115_000), 6);
    }

    #[test]
    fn a_gauge_goes_up_and_down_and_never_below_zero() {
        let mut g = Counter::new(StickData::ConnCur);
        g.add(2, 0, 5);
        g.sub(1);
        assert_eq!(g.value(0, 10), 1);
        g.sub(5);
        assert_eq!(g.value(0, 10), 0);
    }
}
