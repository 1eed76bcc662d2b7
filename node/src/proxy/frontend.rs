//! A frontend at run time: its settings in one routing snapshot, the
//! backends it routes to, its connection limit; and what it does with each
//! client before any backend sees it: counts it in the `track_sc0` table
//! ([`FrontendRt::track`]), and runs the `tcp_request_connection` and
//! `http_request` rules on the counters ([`FrontendRt::accepts`],
//! [`FrontendRt::denies`]).

use super::backend::BackendRt;
use super::limit::Limiter;
use super::stats::FrontendStats;
use crate::stick::{now_ms, StickTable};
use raftlb_proto::config::acl::{CounterKind, CounterOf, Counters, RequestView};
use raftlb_proto::config::{ConnAction, Frontend, HttpAction};
use raftlb_proto::stick::TableKey;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// A frontend in one routing snapshot: its settings, the backend it serves,
/// and its connection limit.
#[derive(Debug)]
pub struct FrontendRt {
    /// Settings.
    pub cfg: Frontend,
    /// The default backend (always there in TCP mode).
    pub backend: Option<Arc<BackendRt>>,
    /// HTTP mode: the `use_backend` rules with their backends, in order.
    pub rules: Vec<(raftlb_proto::config::UseBackend, Arc<BackendRt>)>,
    /// Frontend `maxconn`, shared by every snapshot of this frontend (a
    /// reload resizes it in place).
    pub maxconn: Arc<Limiter>,
    /// Its traffic counters, kept across reloads as `maxconn`.
    pub stats: Arc<FrontendStats>,
    /// `track_sc0`: the table its clients are counted in.
    pub tracked: Option<Arc<StickTable>>,
    /// The tables its rules' `src_*(NAME)` fetches read, by name.
    pub tables: HashMap<String, Arc<StickTable>>,
}

/// A client counted in the `track_sc0` table for as long as its
/// connection lasts: its `conn_cur` goes down, and the bytes it sent are
/// counted, when this is dropped.
pub struct Tracking {
    table: Arc<StickTable>,
    key: TableKey,
    /// Bytes received from the client, added to `bytes_in_rate` at the end.
    pub bytes_in: u64,
}

impl Drop for Tracking {
    fn drop(&mut self) {
        self.table.release(&self.key);
        if self.bytes_in > 0 && self.table.stores(CounterKind::BytesInRate) {
            let events = [(CounterKind::BytesInRate, self.bytes_in)];
            self.table.count(&self.key, &events, now_ms());
        }
    }
}

/// The counters a client's rules read: its entries in the frontend's
/// tables, at one time.
struct ClientCounters<'a> {
    fe: &'a FrontendRt,
    key: TableKey,
    now_ms: u64,
}

impl Counters for ClientCounters<'_> {
    fn counter(&self, of: &CounterOf, kind: CounterKind) -> Option<u64> {
        let table = match of {
            CounterOf::Sc0 | CounterOf::Src { table: None } => self.fe.tracked.as_ref()?,
            CounterOf::Src { table: Some(t) } => self.fe.tables.get(t)?,
        };
        table.counter(&self.key, kind, self.now_ms)
    }
}

impl FrontendRt {
    /// Counts a new connection from `src` in the `track_sc0` table, if the
    /// frontend tracks (`conn_cur` and `conn_rate` up).
    pub fn track(&self, src: IpAddr) -> Option<Tracking> {
        let table = self.tracked.clone()?;
        let key = TableKey::ip(src);
        let events = [(CounterKind::ConnCur, 1), (CounterKind::ConnRate, 1)];
        table.count(&key, &events, now_ms());
        Some(Tracking {
            table,
            key,
            bytes_in: 0,
        })
    }

    /// Whether the `tcp_request_connection` rules let a connection from
    /// `src` in (the first rule that applies decides; none: yes).
    pub fn accepts(&self, src: IpAddr) -> bool {
        if self.cfg.tcp_request_connection.is_empty() {
            return true;
        }
        let counters = self.counters(src);
        let view = RequestView::connection(src, Some(&counters));
        match self
            .cfg
            .tcp_request_connection
            .iter()
            .find(|r| r.applies(&view))
        {
            Some(r) => r.action == ConnAction::Accept,
            None => true,
        }
    }

    /// Counts an HTTP request from `src` in the `track_sc0` table, if the
    /// frontend tracks (`http_req_rate` up).
    pub fn count_request(&self, src: IpAddr) {
        if let Some(t) = self
            .tracked
            .as_ref()
            .filter(|t| t.stores(CounterKind::HttpReqRate))
        {
            let events = [(CounterKind::HttpReqRate, 1)];
            t.count(&TableKey::ip(src), &events, now_ms());
        }
    }

    /// The status to deny a request with, if an `http_request` rule says
    /// so (the first rule that applies decides; none: the request goes
    /// on). `view` is the request's, without counters.
    pub fn denies(&self, view: RequestView<'_>) -> Option<u16> {
        if self.cfg.http_request.is_empty() {
            return None;
        }
        let counters = self.counters(view.src);
        let view = RequestView {
            counters: Some(&counters),
            ..view
        };
        match self
            .cfg
            .http_request
            .iter()
            .find(|r| r.applies(&view))?
            .action
        {
            HttpAction::Allow => None,
            HttpAction::Deny { status } => Some(status),
        }
    }

    fn counters(&self, src: IpAddr) -> ClientCounters<'_> {
        ClientCounters {
            fe: self,
            key: TableKey::ip(src),
            now_ms: now_ms(),
        }
    }
}
