//! The table: stickiness, expiry, eviction at `size`, learning by the last
//! writer, clearing and resizing, with a clock of the test's own.

use super::*;
use raftlb_proto::config::{StickTable as Spec, StickType};
use raftlb_proto::stick::{Stamp, StickEntry, StuckServer, TableKey};
use std::time::Duration;

fn spec(size: u32, expire: Option<u64>) -> Spec {
    Spec {
        name: "t".into(),
        key_type: StickType::Ip,
        size,
        expire: expire.map(Duration::from_millis),
        store: Vec::new(),
    }
}

fn key(n: u32) -> TableKey {
    TableKey::ip(std::net::Ipv4Addr::from(0xc633_6400 + n).into())
}

fn server(name: &str) -> StuckServer {
    StuckServer {
        backend: "web".into(),
        server: name.into(),
    }
}

fn found(t: &StickTable, k: &TableKey, now: u64) -> Option<String> {
    t.find(k, now, |s| s.server.to_string())
}

#[test]
fn a_key_sticks_until_it_expires_and_a_rewrite_renews_it() {
    let t = StickTable::new(&spec(100, Some(1000)), 1);
    t.stick(key(1), server("s1"), 10_000);
    assert_eq!(found(&t, &key(1), 10_999).as_deref(), Some("s1"));
    assert_eq!(found(&t, &key(1), 11_000), None, "expired at 11 000");
    t.stick(key(1), server("s2"), 10_500);
    assert_eq!(found(&t, &key(1), 11_499).as_deref(), Some("s2"));
    assert_eq!(found(&t, &key(2), 10_000), None);
}

#[test]
fn purge_removes_only_what_expired() {
    let t = StickTable::new(&spec(100, Some(1000)), 1);
    t.stick(key(1), server("s1"), 0);
    t.stick(key(2), server("s1"), 500);
    assert_eq!(t.purge(999), 0);
    assert_eq!(t.purge(1000), 1);
    assert_eq!(t.len(), 1);
    assert_eq!(t.purge(1500), 1);
    assert!(t.is_empty());
}

#[test]
fn a_full_table_evicts_the_entry_that_expires_first() {
    // A small table: one shard.
    let t = StickTable::new(&spec(4, Some(10_000)), 1);
    for n in 0..4 {
        t.stick(key(n), server("s1"), 100 + u64::from(n));
    }
    // Key 0 is renewed: key 1 now expires first.
    t.stick(key(0), server("s1"), 200);
    t.stick(key(9), server("s1"), 300);
    assert_eq!(t.len(), 4);
    assert_eq!(found(&t, &key(1), 300), None);
    for n in [0, 2, 3, 9] {
        assert!(found(&t, &key(n), 300).is_some(), "key {n}");
    }
}

#[test]
fn a_table_never_holds_more_than_its_size() {
    for size in [1, 3, 10, 100, 2048, 5000, 100_000] {
        let t = StickTable::new(&spec(size, None), 1);
        for n in 0..size * 3 {
            t.stick(key(n), server("s1"), u64::from(n));
        }
        assert!(t.len() <= size as usize, "size {size}: {}", t.len());
        assert!(
            t.len() * 2 >= size as usize,
            "size {size}: only {}",
            t.len()
        );
    }
}

#[test]
fn without_expire_entries_stay_and_the_oldest_write_goes_first() {
    let t = StickTable::new(&spec(2, None), 1);
    t.stick(key(1), server("s1"), 1);
    t.stick(key(2), server("s1"), 2);
    assert_eq!(t.purge(u64::MAX - 1), 0);
    t.stick(key(3), server("s1"), 3);
    assert_eq!(found(&t, &key(1), 4), None);
    assert!(found(&t, &key(2), 4).is_some() && found(&t, &key(3), 4).is_some());
}

#[test]
fn learned_versions_replace_only_older_ones() {
    let t = StickTable::new(&spec(100, Some(1000)), 1);
    t.stick(key(1), server("mine"), 5000);
    let theirs = |at_ms, node, name: &str| StickEntry {
        server: Some(server(name)),
        expire_at_ms: Some(at_ms + 1000),
        written: Stamp { at_ms, node },
    };
    t.learn(key(1), theirs(4999, 2, "older"), 5000);
    assert_eq!(found(&t, &key(1), 5000).as_deref(), Some("mine"));
    t.learn(key(1), theirs(5000, 2, "same ms, higher id"), 5000);
    assert_eq!(
        found(&t, &key(1), 5000).as_deref(),
        Some("same ms, higher id")
    );
    t.learn(key(2), theirs(1000, 3, "expired"), 5000);
    assert_eq!(found(&t, &key(2), 5000), None);
    t.learn(TableKey::Integer(7), theirs(5000, 3, "wrong type"), 5000);
    assert_eq!(t.len(), 1);
}

#[test]
fn clear_removes_one_key_or_all() {
    let t = StickTable::new(&spec(100, None), 1);
    for n in 0..10 {
        t.stick(key(n), server("s1"), 1);
    }
    assert_eq!(t.clear(Some(&key(3))), 1);
    assert_eq!(t.clear(Some(&key(3))), 0);
    assert_eq!(t.len(), 9);
    assert_eq!(t.clear(None), 9);
    assert!(t.is_empty());
}

#[test]
fn a_resized_table_keeps_the_entries_that_expire_last() {
    let t = StickTable::new(&spec(100, Some(10_000)), 1);
    for n in 0..10 {
        t.stick(key(n), server("s1"), u64::from(n) * 10);
    }
    let small = StickTable::resized(&t, &spec(4, Some(10_000)), 100);
    assert_eq!(small.len(), 4);
    for n in 6..10 {
        assert!(found(&small, &key(n), 100).is_some(), "key {n}");
    }
    assert!(t.fits(&spec(100, Some(5))) && !t.fits(&spec(4, Some(10_000))));
}

#[test]
fn string_keys_are_cut_to_the_tables_len() {
    let mut s = spec(10, None);
    s.key_type = StickType::String { len: 3 };
    let t = StickTable::new(&s, 1);
    assert_eq!(t.string_key(b"abcdef"), TableKey::String(b"abc"[..].into()));
}

#[test]
fn saved_tables_read_back_as_written_and_a_torn_file_is_an_error() {
    let dir = raftlb_testkit::TempDir::new("raftlb-stick-saved");
    let path = dir.path(saved::FILE);
    assert_eq!(saved::load(&path).unwrap(), Vec::new(), "no file: nothing");
    let t = std::sync::Arc::new(StickTable::new(&spec(100, Some(60_000)), 2));
    t.stick(key(1), server("s1"), 1000);
    t.stick(key(2), server("s2"), 2000);
    assert_eq!(
        saved::save(&path, std::slice::from_ref(&t), 2000).unwrap(),
        2
    );
    let back = saved::load(&path).unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].name, "t");
    let mut entries = back[0].entries.clone();
    entries.sort();
    let mut want = t.entries(2000);
    want.sort();
    assert_eq!(entries, want);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    assert!(saved::load(&path).is_err());
}
