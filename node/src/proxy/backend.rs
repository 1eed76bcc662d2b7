//! A backend at run time: its servers' live state, server selection (health,
//! backups, weights) and the queue where connections wait for a free slot.

use super::balance::{Candidate, LbState};
use crate::server::ServerState;
use crate::stick::{now_ms, stuck, StickTable};
use raftlb_proto::config::{Backend, Server, StickKey};
use raftlb_proto::stick::TableKey;
use std::net::IpAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::Notify;

/// A server of a running backend: its config in this snapshot, and its live
/// state (shared with other snapshots that keep the server).
#[derive(Debug)]
pub struct ServerRt {
    /// Settings.
    pub cfg: Server,
    /// Its name, as stick-table entries hold it.
    pub name: Arc<str>,
    /// Live state.
    pub state: Arc<ServerState>,
}

/// A backend's `stick_on` at run time: what identifies a client, and the
/// table (kept across reloads, maybe shared with other backends).
#[derive(Debug)]
pub struct Stick {
    /// The key.
    pub key: StickKey,
    /// The table.
    pub table: Arc<StickTable>,
}

/// What a backend keeps across reloads: its queue.
#[derive(Debug, Default)]
pub struct BackendQueue {
    /// Notified when a slot frees or a server changes state.
    pub notify: Arc<Notify>,
    /// Connections waiting now.
    pub waiting: AtomicUsize,
}

/// A running backend (one per routing snapshot).
#[derive(Debug)]
pub struct BackendRt {
    /// Settings.
    pub cfg: Backend,
    /// Servers in declaration order.
    pub servers: Vec<ServerRt>,
    /// The queue, shared with the snapshots before and after this one.
    pub queue: Arc<BackendQueue>,
    lb: Mutex<LbState>,
    /// `balance uri` / `hdr`: the consistent-hash ring.
    ring: Option<super::balance::Ring>,
    /// `stick_on`, with its table.
    pub stick: Option<Stick>,
    /// Its name, as stick-table entries hold it.
    name: Arc<str>,
}

/// Why no server slot came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoSlot {
    /// No server was up.
    NoServer,
    /// The servers went down while waiting in the queue.
    NoServerQueued,
    /// `timeout queue` passed.
    QueueTimeout,
}

/// A slot taken on a server; gives it back on drop.
#[derive(Debug)]
pub struct Slot {
    /// The server.
    pub server: Arc<ServerState>,
    /// Its position in the backend.
    pub idx: usize,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.server.release();
    }
}

impl BackendRt {
    /// A backend over servers whose live state is given; `table` is the
    /// stick table its `stick_on` names.
    pub fn new(
        cfg: Backend,
        states: Vec<Arc<ServerState>>,
        queue: Arc<BackendQueue>,
        table: Option<Arc<StickTable>>,
    ) -> Self {
        let servers: Vec<ServerRt> = cfg
            .servers
            .iter()
            .cloned()
            .zip(states)
            .map(|(cfg, state)| ServerRt {
                name: cfg.name.as_str().into(),
                cfg,
                state,
            })
            .collect();
        let stick = cfg.stick_on.as_ref().zip(table).map(|(on, table)| Stick {
            key: on.key.clone(),
            table,
        });
        let lb = Mutex::new(LbState::new(servers.len()));
        let ring = cfg.hash_key.is_some().then(|| {
            let names: Vec<&str> = servers.iter().map(|s| s.cfg.name.as_str()).collect();
            let weights: Vec<u32> = servers.iter().map(|s| s.cfg.weight).collect();
            super::balance::Ring::new(&names, &weights)
        });
        BackendRt {
            name: cfg.name.as_str().into(),
            cfg,
            servers,
            queue,
            lb,
            ring,
            stick,
        }
    }

    /// The stick-table key of a client at `src`, for a backend that sticks
    /// on `src`.
    pub fn src_key(&self, src: IpAddr) -> Option<TableKey> {
        let stick = self.stick.as_ref()?;
        matches!(stick.key, StickKey::Src).then(|| TableKey::ip(src))
    }

    /// The server `key` sticks to, if that client may still go to it: the
    /// server is in this backend (by name: the entry may come from another
    /// config, node or backend sharing the table), healthy and not in
    /// maintenance (a drained server keeps its sticky clients).
    pub fn stuck(&self, key: &TableKey) -> Option<usize> {
        self.stuck_fresh(key).0
    }

    /// As [`BackendRt::stuck`], and whether the entry was written so lately
    /// that sticking the client to that same server again can wait
    /// ([`StickTable::refresh_ms`](crate::stick::StickTable::refresh_ms)):
    /// one lock of the table's shard per request instead of two.
    pub fn stuck_fresh(&self, key: &TableKey) -> (Option<usize>, bool) {
        let Some(stick) = self.stick.as_ref() else {
            return (None, false);
        };
        let found = stick.table.find_fresh(key, now_ms(), |s| {
            self.servers.iter().position(|srv| *srv.name == *s.server)
        });
        match found {
            Some((Some(idx), fresh)) if self.servers[idx].state.keeps_sticky() => {
                (Some(idx), fresh)
            }
            _ => (None, false),
        }
    }

    /// Makes `key` stick to server `idx` (HAProxy's `stick store-request`,
    /// once a server was chosen): a new entry, or the entry rewritten when
    /// its server could not take the client.
    pub fn stick_to(&self, key: TableKey, idx: usize) {
        if let Some(stick) = &self.stick {
            let server = stuck(&self.name, &self.servers[idx].name);
            stick.table.stick(key, server, now_ms());
        }
    }

    /// The servers that may take a new connection now: up, ready (not
    /// drained or in maintenance), weight > 0; and
    /// if none of the normal servers is, the first backup up (or all backups
    /// up, with `allbackups`).
    fn candidates(&self, now: Instant) -> Vec<Candidate> {
        let dynamic = !matches!(self.cfg.balance, raftlb_proto::config::Balance::StaticRr);
        let cand = |(idx, s): (usize, &ServerRt)| {
            let weight = if dynamic {
                s.state.effective_weight(&s.cfg, now)
            } else {
                s.cfg.weight
            };
            (s.state.takes_new() && weight > 0).then(|| Candidate {
                idx,
                weight,
                conns: s.state.cur_conns(),
            })
        };
        let primaries: Vec<Candidate> = self
            .servers
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.cfg.backup)
            .filter_map(cand)
            .collect();
        if !primaries.is_empty() {
            return primaries;
        }
        let backups = self
            .servers
            .iter()
            .enumerate()
            .filter(|(_, s)| s.cfg.backup)
            .filter_map(cand);
        if self.cfg.allbackups {
            backups.collect()
        } else {
            backups.take(1).collect()
        }
    }

    /// Servers in the order to try for a client at `src` (empty: none is up).
    pub fn order(&self, src: IpAddr) -> Vec<usize> {
        let cands = self.candidates(Instant::now());
        self.lb
            .lock()
            .expect("lb lock")
            .order(self.cfg.balance, &cands, src)
    }

    /// Servers in the order to try for a request whose hash key (`balance
    /// uri`/`hdr`) is `key`; without a key, as [`BackendRt::order`].
    pub fn order_key(&self, src: IpAddr, key: Option<u32>) -> Vec<usize> {
        match (&self.ring, key) {
            (Some(ring), Some(key)) => ring.order(key, &self.candidates(Instant::now())),
            _ => self.order(src),
        }
    }

    /// Waits for a slot on a server of `order` (called again after every
    /// wake-up: servers come and go): at once when one is free and nobody
    /// queues before, else in the backend's queue until `timeout queue`.
    /// Shared by the TCP and HTTP paths.
    pub async fn take_slot(
        &self,
        order: impl Fn(&BackendRt) -> Vec<usize>,
    ) -> Result<Slot, NoSlot> {
        use std::sync::atomic::Ordering;
        let first = order(self);
        if first.is_empty() {
            return Err(NoSlot::NoServer);
        }
        let queue = &self.queue;
        // Connections already waiting go first.
        if queue.waiting.load(Ordering::Acquire) == 0 {
            if let Some(slot) = self.try_take(&first) {
                return Ok(slot);
            }
        }
        queue.waiting.fetch_add(1, Ordering::AcqRel);
        let wait = async {
            loop {
                let notified = queue.notify.notified();
                tokio::pin!(notified);
                // Registered before looking, so no wake-up is lost in between.
                notified.as_mut().enable();
                let now = order(self);
                if now.is_empty() {
                    return Err(NoSlot::NoServerQueued);
                }
                if let Some(slot) = self.try_take(&now) {
                    return Ok(slot);
                }
                notified.await;
            }
        };
        let res = match self.cfg.timeout.queue {
            Some(limit) => tokio::time::timeout(limit, wait)
                .await
                .unwrap_or(Err(NoSlot::QueueTimeout)),
            None => wait.await,
        };
        queue.waiting.fetch_sub(1, Ordering::AcqRel);
        if res.is_ok() && queue.waiting.load(Ordering::Acquire) > 0 {
            // Pass the turn on if more slots are free.
            queue.notify.notify_one();
        }
        res
    }

    /// Takes a slot on the first server of `order` that has one free.
    pub fn try_take(&self, order: &[usize]) -> Option<Slot> {
        order.iter().find_map(|&idx| {
            let s = &self.servers[idx];
            s.state.try_acquire(s.cfg.maxconn).then(|| Slot {
                server: s.state.clone(),
                idx,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftlb_proto::{ClusterConfig, Format};

    fn backend(servers: &str, extra: &str) -> BackendRt {
        let text = format!(
            "[frontends.f]\nbind = \"127.0.0.1:1\"\ndefault_backend = \"b\"\n[backends.b]\n{extra}\nservers = [{servers}]\n"
        );
        let cfg = ClusterConfig::parse(&text, Format::Toml).unwrap().backends["b"].clone();
        let q = Arc::new(BackendQueue::default());
        let states = cfg
            .servers
            .iter()
            .map(|s| Arc::new(ServerState::new("b", s, q.notify.clone())))
            .collect();
        BackendRt::new(cfg, states, q, None)
    }

    fn down(b: &BackendRt, idx: usize) {
        let s = &b.servers[idx].state;
        while s.is_up() {
            s.check_result(false, "test");
        }
    }

    const SRC: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn backups_only_when_no_primary_is_up() {
        let b = backend(
            r#"{name="a", address="127.0.0.1:1", check=true}, {name="k1", address="127.0.0.1:2", backup=true, check=true}, {name="k2", address="127.0.0.1:3", backup=true}"#,
            "",
        );
        assert_eq!(b.order(SRC), [0]);
        down(&b, 0);
        assert_eq!(b.order(SRC), [1]);
        down(&b, 1);
        assert_eq!(b.order(SRC), [2]);
    }

    #[test]
    fn allbackups_shares_the_load() {
        let b = backend(
            r#"{name="a", address="127.0.0.1:1", check=true}, {name="k1", address="127.0.0.1:2", backup=true}, {name="k2", address="127.0.0.1:3", backup=true}"#,
            "allbackups = true",
        );
        down(&b, 0);
        let mut o = b.order(SRC);
        o.sort();
        assert_eq!(o, [1, 2]);
    }

    #[test]
    fn weight_zero_is_never_picked_and_no_server_means_empty() {
        let b = backend(r#"{name="a", address="127.0.0.1:1", weight=0}"#, "");
        assert!(b.order(SRC).is_empty());
    }

    #[test]
    fn maxconn_full_servers_are_skipped() {
        let b = backend(
            r#"{name="a", address="127.0.0.1:1", maxconn=1}, {name="c", address="127.0.0.1:2", maxconn=1}"#,
            "balance = \"first\"",
        );
        let s1 = b.try_take(&b.order(SRC)).unwrap();
        assert_eq!(s1.idx, 0);
        let s2 = b.try_take(&b.order(SRC)).unwrap();
        assert_eq!(s2.idx, 1);
        assert!(b.try_take(&b.order(SRC)).is_none());
        drop(s1);
        assert_eq!(b.try_take(&b.order(SRC)).unwrap().idx, 0);
    }
}
