//! The table: stickiness, expiry, eviction at `size`, learning by the last
//! writer, clearing and resizing, with a clock of the test's own.

use super::*;
use raftlb_proto::config::{StickData, StickTable as Spec, StickType};
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
        counters: Vec::new(),
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
fn a_clear_leaves_tombstones_that_win_over_older_versions() {
    let t = StickTable::new(&spec(100, None), 1);
    for n in 0..10 {
        t.stick(key(n), server("s1"), 1);
    }
    assert_eq!(t.forget(Some(&key(3)), 5), 1);
    assert_eq!(t.forget(Some(&key(3)), 6), 0, "already cleared");
    assert_eq!(found(&t, &key(3), 6), None);
    assert_eq!(t.forget(None, 7), 9);
    assert!((0..10).all(|n| found(&t, &key(n), 8).is_none()));
    // A version written before the clear (a peer's, late) loses to it; a
    // write after it sticks again.
    assert!(!t.learn(key(4), learned("s2", 6, 2), 8));
    assert_eq!(found(&t, &key(4), 8), None);
    assert!(t.learn(key(4), learned("s2", 9, 2), 9));
    assert_eq!(found(&t, &key(4), 9).as_deref(), Some("s2"));
    // Tombstones are this node's writes, pushed to peers like any other.
    let (batch, _) = sync::Cursors::default().next_batch(&[Arc::new(t)], 1, 10);
    assert_eq!(batch[0].entries.len(), 9);
    assert!(batch[0].entries.iter().all(|(_, e)| e.server.is_none()));
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

fn learned(name: &str, at_ms: u64, node: u64) -> StickEntry {
    StickEntry {
        server: Some(server(name)),
        expire_at_ms: None,
        written: Stamp { at_ms, node },
        counters: Vec::new(),
    }
}

#[test]
fn a_resync_walks_every_entry_page_by_page_even_as_entries_are_written() {
    let t = Arc::new(StickTable::new(&spec(20_000, None), 1));
    for n in 0..9000 {
        if n % 2 == 0 {
            t.stick(key(n), server("s1"), 10);
        } else {
            t.learn(key(n), learned("s2", 10, 2), 10);
        }
    }
    let page = sync::page_of(std::slice::from_ref(&t), None, 20);
    let sent: Vec<_> = page.tables.iter().flat_map(|t| &t.entries).collect();
    assert_eq!(sent.len(), 4096, "a full page");
    assert!(
        sent.iter().any(|(_, e)| e.written.node == 2),
        "learned entries are sent too"
    );
    let tables = [t.clone()];
    let mut got = std::collections::BTreeMap::new();
    let mut from = None;
    let mut pages = 0;
    loop {
        let page = sync::page_of(&tables, from, 20);
        pages += 1;
        for te in page.tables {
            assert_eq!(te.name, "t");
            got.extend(te.entries);
        }
        // Written meanwhile: every entry is still sent once at least (a
        // rewrite moves it on in its shard; a later write of an entry
        // already sent reaches the asking node by its writer's push).
        if pages == 1 {
            for n in 0..9000 {
                t.stick(key(n), server("s3"), 30);
            }
        }
        match page.next {
            Some(next) => from = Some(next),
            None => break,
        }
    }
    assert!(pages >= 3, "4096 entries a page: {pages}");
    assert_eq!(got.len(), 9000);
}

#[test]
fn a_pusher_sends_this_nodes_writes_once_each_and_what_changed_since() {
    let t = Arc::new(StickTable::new(&spec(100, None), 1));
    t.stick(key(1), server("s1"), 10);
    t.stick(key(2), server("s1"), 10);
    t.learn(key(3), learned("s2", 10, 2), 10);
    let tables = [t.clone()];
    let none = sync::Cursors::default();
    let (batch, after) = none.next_batch(&tables, 1, 20);
    let keys: Vec<_> = batch[0].entries.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(keys, [key(1), key(2)], "only its own writes, in order");
    // Not acknowledged: the same batch again.
    assert_eq!(none.next_batch(&tables, 1, 20).0, batch);
    // Acknowledged: nothing until a write.
    assert!(after.next_batch(&tables, 1, 20).0.is_empty());
    t.stick(key(1), server("s2"), 15);
    t.stick(key(1), server("s3"), 16);
    t.learn(key(4), learned("s2", 17, 3), 17);
    let (batch, _) = after.next_batch(&tables, 1, 20);
    assert_eq!(batch.len(), 1);
    assert_eq!(
        batch[0].entries.len(),
        1,
        "two writes of one key: one entry"
    );
    assert_eq!(batch[0].entries[0].1.server, Some(server("s3")));
    // A table made anew (a new size) starts the peer over.
    let bigger = Arc::new(StickTable::resized(&t, &spec(5000, None), 20));
    let (batch, _) = after.next_batch(&[bigger], 1, 20);
    assert_eq!(batch[0].entries.len(), 2);
}

#[test]
fn a_version_already_held_is_not_taken_again() {
    let t = StickTable::new(&spec(100, None), 1);
    assert!(t.learn(key(1), learned("s2", 10, 2), 10));
    assert!(!t.learn(key(1), learned("s2", 10, 2), 11), "the same write");
    assert!(!t.learn(key(1), learned("s1", 9, 3), 11), "an older one");
    assert!(t.learn(key(1), learned("s1", 12, 3), 12));
}

fn counting(store: &[&str]) -> Spec {
    Spec {
        store: store
            .iter()
            .map(|d| match *d {
                "conn_cur" => StickData::ConnCur,
                "conn_rate" => StickData::ConnRate(Duration::from_secs(10)),
                "http_req_rate" => StickData::HttpReqRate(Duration::from_secs(10)),
                _ => StickData::BytesInRate(Duration::from_secs(10)),
            })
            .collect(),
        ..spec(100, Some(60_000))
    }
}

#[test]
fn counters_count_a_clients_connections_and_requests_over_a_paused_clock() {
    use raftlb_proto::config::acl::CounterKind as K;
    let t = StickTable::new(&counting(&["conn_cur", "conn_rate", "http_req_rate"]), 1);
    let k = key(1);
    assert_eq!(t.counter(&k, K::ConnRate, 100_000), Some(0), "no entry: 0");
    assert_eq!(t.counter(&k, K::BytesInRate, 100_000), None, "not stored");
    for at in [100_000, 101_000, 102_000] {
        t.count(&k, &[(K::ConnCur, 1), (K::ConnRate, 1)], at);
    }
    t.count(&k, &[(K::HttpReqRate, 5)], 102_000);
    assert_eq!(t.counter(&k, K::ConnCur, 102_000), Some(3));
    assert_eq!(t.counter(&k, K::ConnRate, 109_000), Some(3));
    assert_eq!(t.counter(&k, K::HttpReqRate, 109_000), Some(5));
    // Half-way through the next period: half of the last one's.
    assert_eq!(t.counter(&k, K::ConnRate, 115_000), Some(1));
    t.release(&k);
    assert_eq!(t.counter(&k, K::ConnCur, 115_000), Some(2));
    // Sticking the key to a server keeps its counters; counting keeps its
    // server.
    t.stick(k.clone(), server("s1"), 116_000);
    t.count(&k, &[(K::ConnRate, 1)], 117_000);
    assert_eq!(found(&t, &k, 117_000).as_deref(), Some("s1"));
    assert_eq!(t.counter(&k, K::ConnCur, 117_000), Some(2));
}

#[test]
fn a_peers_version_brings_its_rates_but_never_its_conn_cur() {
    use raftlb_proto::config::acl::CounterKind as K;
    let spec = counting(&["conn_cur", "conn_rate"]);
    let (here, there) = (StickTable::new(&spec, 1), StickTable::new(&spec, 2));
    let k = key(1);
    here.count(&k, &[(K::ConnCur, 1), (K::ConnRate, 1)], 100_000);
    for at in [100_001, 100_002, 100_003] {
        there.count(&k, &[(K::ConnCur, 1), (K::ConnRate, 1)], at);
    }
    let theirs = there.get(&k, 100_003).unwrap();
    assert!(here.learn(k.clone(), theirs, 100_004));
    assert_eq!(
        here.counter(&k, K::ConnRate, 100_004),
        Some(3),
        "their later write"
    );
    assert_eq!(
        here.counter(&k, K::ConnCur, 100_004),
        Some(1),
        "this node's own"
    );
    // And the rates' periods line up on every node (aligned on the epoch).
    here.count(&k, &[(K::ConnRate, 1)], 100_005);
    assert_eq!(here.counter(&k, K::ConnRate, 100_005), Some(4));
}

#[test]
fn renewals_stay_in_place_until_quiet_ms_and_purging_honours_them() {
    // expire 8 s: renewals stay unpushed for 1 s.
    let t = Arc::new(StickTable::new(&spec(1024, Some(8000)), 1));
    assert_eq!(t.quiet_ms(), 1000);
    t.stick(key(1), server("s1"), 10_000);
    t.stick(key(2), server("s1"), 10_000);
    let tables = [t.clone()];
    let (_, sent) = sync::Cursors::default().next_batch(&tables, 1, 10_000);
    // The same server again, 0.5 s later: renewed in place, not pushed.
    t.stick(key(1), server("s1"), 10_500);
    assert!(sent.next_batch(&tables, 1, 10_500).0.is_empty());
    assert_eq!(t.get(&key(1), 10_500).unwrap().expire_at_ms, Some(18_500));
    // 1 s after it was pushed: put again, pushed.
    t.stick(key(1), server("s1"), 11_000);
    let (batch, _) = sent.next_batch(&tables, 1, 11_000);
    assert_eq!(batch[0].entries.len(), 1);
    // Another server: at once.
    t.stick(key(2), server("s2"), 10_100);
    let (batch, sent) = sent.next_batch(&tables, 1, 11_000);
    assert_eq!(batch[0].entries.len(), 2);
    // Renewed in place again (expiry 19 500, ranked at 19 000): purging
    // goes by the renewed expiry, and puts the renewal at a position.
    t.stick(key(1), server("s1"), 11_500);
    assert_eq!(t.purge(19_100), 1, "key 2 (expired at 18 100) only");
    assert_eq!(found(&t, &key(1), 19_100).as_deref(), Some("s1"));
    let (batch, _) = sent.next_batch(&tables, 1, 19_100);
    assert_eq!(batch[0].entries[0].1.expire_at_ms, Some(19_500));
    assert_eq!(t.purge(19_500), 1);
    assert!(t.is_empty());
}

#[test]
fn eviction_ranks_again_the_entries_renewed_in_place() {
    let t = StickTable::new(&spec(2, None), 1);
    t.stick(key(1), server("s1"), 100);
    t.stick(key(2), server("s1"), 200);
    // Key 1 renewed in place: it is now the most recent write.
    t.stick(key(1), server("s1"), 300);
    t.stick(key(3), server("s1"), 400);
    assert_eq!(found(&t, &key(1), 500).as_deref(), Some("s1"));
    assert_eq!(found(&t, &key(2), 500), None, "the oldest write went");
}

#[test]
fn an_entry_written_within_refresh_ms_is_fresh() {
    // expire 8 s: quiet 1 s, refresh 0.5 s.
    let t = StickTable::new(&spec(100, Some(8000)), 1);
    assert_eq!(t.refresh_ms(), 500);
    t.stick(key(1), server("s1"), 10_000);
    let name = |s: &StuckServer| s.server.to_string();
    assert_eq!(
        t.find_fresh(&key(1), 10_499, name),
        Some(("s1".into(), true))
    );
    assert_eq!(
        t.find_fresh(&key(1), 10_500, name),
        Some(("s1".into(), false))
    );
    assert_eq!(t.find_fresh(&key(2), 10_000, name), None);
    assert_eq!(t.find_fresh(&key(1), 18_000, name), None, "expired");
}
