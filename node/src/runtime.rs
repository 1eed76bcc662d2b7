//! Applies a cluster config to the running proxy: parse → validate happen
//! before; here the new config is diffed against the running one and applied.
//! Listeners whose address stays keep their socket, servers that keep their
//! address keep their health and connection counts, checkers whose settings
//! did not change keep running, and established connections finish on the
//! snapshot they started with.

use crate::health::{self, CheckSpec};
use crate::proxy::backend::{BackendQueue, BackendRt};
use crate::proxy::limit::Limiter;
use crate::proxy::listener::{self, Listener, ProcessLimits};
use crate::proxy::stats::FrontendStats;
use crate::proxy::FrontendRt;
use crate::server::{ServerState, ServerStatus};
use crate::stick::{self, SavedTable, StickTable};
use raftlb_proto::ClusterConfig;
use raftlb_proto::NodeId;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;

/// Why a config could not be applied (the running one stays).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A new listening address could not be bound.
    #[error("frontend {frontend:?}: cannot bind {addr}: {source}")]
    Bind {
        /// The frontend.
        frontend: String,
        /// The address.
        addr: SocketAddr,
        /// The system's error.
        source: std::io::Error,
    },
}

/// What an apply changed, for the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    /// Addresses newly bound.
    pub bound: Vec<SocketAddr>,
    /// Addresses closed.
    pub closed: Vec<SocketAddr>,
    /// Listeners kept with their socket.
    pub kept: usize,
    /// Health checkers (re)started.
    pub checkers_started: usize,
    /// Health checkers stopped.
    pub checkers_stopped: usize,
    /// Servers that got a fresh state (new, or a new address).
    pub new_servers: Vec<(String, String)>,
    /// Saved stick-table entries put back (the first apply after a start).
    pub restored: usize,
}

type ServerKey = (String, String);

struct Checker {
    spec: CheckSpec,
    state: Arc<ServerState>,
    task: JoinHandle<()>,
}

impl Drop for Checker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Default)]
struct Inner {
    config: Option<ClusterConfig>,
    listeners: HashMap<SocketAddr, Listener>,
    servers: Servers,
    checkers: HashMap<ServerKey, Checker>,
    queues: Queues,
    frontends: BTreeMap<String, Arc<FrontendRt>>,
    stick_tables: Tables,
    /// Saved entries for the tables of the first config applied.
    restore: Vec<SavedTable>,
    global_maxconn: u32,
}

type Servers = HashMap<ServerKey, (SocketAddr, Arc<ServerState>)>;
type Queues = HashMap<String, Arc<BackendQueue>>;
type Tables = HashMap<String, Arc<StickTable>>;

/// The steps of [`Runtime::apply`], each from the running state and the new
/// config.
impl Inner {
    /// Binds every address of `new` that no listener has yet.
    fn bind_new(
        &self,
        new: &ClusterConfig,
        reuseport: bool,
    ) -> Result<HashMap<SocketAddr, listener::Bound>, ApplyError> {
        let mut fresh = HashMap::new();
        for fe in new.frontends.values() {
            for &addr in &fe.bind {
                if self.listeners.contains_key(&addr) {
                    continue;
                }
                let backlog = fe.maxconn.clamp(128, 65535);
                match listener::bind(addr, backlog, reuseport) {
                    Ok(l) => {
                        fresh.insert(addr, l);
                    }
                    Err(source) => {
                        return Err(ApplyError::Bind {
                            frontend: fe.name.clone(),
                            addr,
                            source,
                        })
                    }
                }
            }
        }
        Ok(fresh)
    }

    /// The servers, queues and backends of `new`: a server whose address
    /// stays keeps its live state (health, connections), reconfigured.
    fn servers_of(
        &self,
        new: &ClusterConfig,
        tables: &Tables,
        report: &mut ApplyReport,
    ) -> (Servers, Queues, HashMap<String, Arc<BackendRt>>) {
        let mut servers = HashMap::new();
        let mut queues = HashMap::new();
        let mut backends = HashMap::new();
        for be in new.backends.values() {
            let queue = self.queues.get(&be.name).cloned().unwrap_or_default();
            let mut states = Vec::new();
            for s in &be.servers {
                let key = (be.name.clone(), s.name.clone());
                let state = match self.servers.get(&key) {
                    Some((addr, st)) if *addr == s.address => {
                        st.reconfigure(s);
                        st.clone()
                    }
                    _ => {
                        report.new_servers.push(key.clone());
                        Arc::new(ServerState::new(&be.name, s, queue.notify.clone()))
                    }
                };
                servers.insert(key, (s.address, state.clone()));
                states.push(state);
            }
            let table = be
                .stick_on
                .as_ref()
                .and_then(|on| tables.get(&on.table).cloned());
            let rt = Arc::new(BackendRt::new(be.clone(), states, queue.clone(), table));
            queues.insert(be.name.clone(), queue);
            backends.insert(be.name.clone(), rt);
        }
        (servers, queues, backends)
    }

    /// The stick tables of `new`: a running table of the same name keeps
    /// its entries (in place, or copied into one of the new size); a
    /// table of another key type starts empty.
    fn tables_of(&self, new: &ClusterConfig, me: NodeId) -> Tables {
        new.stick_tables
            .values()
            .map(|spec| {
                let table = match self.stick_tables.get(&spec.name) {
                    Some(t) if t.fits(spec) => {
                        t.reconfigure(spec);
                        t.clone()
                    }
                    old => {
                        let t = match old {
                            Some(old) => StickTable::resized(old, spec, stick::now_ms()),
                            None => StickTable::new(spec, me),
                        };
                        let t = Arc::new(t);
                        stick::spawn_purge(&t);
                        t
                    }
                };
                (spec.name.clone(), table)
            })
            .collect()
    }

    /// The frontends of `new`, on `backends` and `tables`. Each keeps the
    /// connection limit and counters of the running frontend of its name
    /// (the limit resized when the config is committed, see
    /// [`Runtime::apply`]), else has new ones.
    fn frontends_of(
        &self,
        new: &ClusterConfig,
        backends: &HashMap<String, Arc<BackendRt>>,
        tables: &Tables,
    ) -> BTreeMap<String, Arc<FrontendRt>> {
        let mut frontends = BTreeMap::new();
        for fe in new.frontends.values() {
            let running = self.frontends.get(&fe.name);
            let rt = Arc::new(FrontendRt {
                cfg: fe.clone(),
                backend: fe.default_backend.as_ref().map(|b| backends[b].clone()),
                rules: fe
                    .use_backend
                    .iter()
                    .map(|r| (r.clone(), backends[&r.backend].clone()))
                    .collect(),
                maxconn: running
                    .map_or_else(|| Arc::new(Limiter::new(fe.maxconn)), |r| r.maxconn.clone()),
                stats: running.map_or_else(|| Arc::new(FrontendStats::new()), |r| r.stats.clone()),
                tracked: fe.track_sc0.as_ref().and_then(|t| tables.get(t).cloned()),
                tables: tables.clone(),
            });
            frontends.insert(fe.name.clone(), rt);
        }
        frontends
    }

    /// Starts an accept loop on each address bound in step 1, for its
    /// frontend in `frontends`. Nothing running changes: on failure, the
    /// ones started end when dropped.
    fn start_fresh(
        new: &ClusterConfig,
        frontends: &BTreeMap<String, Arc<FrontendRt>>,
        mut fresh: HashMap<SocketAddr, listener::Bound>,
        limits: &Arc<ProcessLimits>,
    ) -> Result<HashMap<SocketAddr, Listener>, ApplyError> {
        let mut started = HashMap::new();
        for fe in new.frontends.values() {
            for &addr in &fe.bind {
                let Some(sock) = fresh.remove(&addr) else {
                    continue;
                };
                let rt = frontends[&fe.name].clone();
                let l = Listener::start(addr, sock, rt, limits.clone()).map_err(|source| {
                    ApplyError::Bind {
                        frontend: fe.name.clone(),
                        addr,
                        source,
                    }
                })?;
                started.insert(addr, l);
            }
        }
        Ok(started)
    }

    /// The health checkers of `new`: one whose settings and server state
    /// stayed keeps running (its rhythm too); the others start, and the
    /// ones left behind stop when dropped.
    fn checkers_of(
        &mut self,
        new: &ClusterConfig,
        servers: &Servers,
        report: &mut ApplyReport,
    ) -> HashMap<ServerKey, Checker> {
        let mut checkers = HashMap::new();
        for be in new.backends.values() {
            for s in &be.servers {
                let Some(params) = s.check.clone() else {
                    continue;
                };
                let key = (be.name.clone(), s.name.clone());
                let state = servers[&key].1.clone();
                let spec = CheckSpec::new(
                    s.address,
                    params,
                    be.health_check.clone(),
                    be.timeout.connect,
                    be.timeout.check,
                );
                let checker = match self.checkers.remove(&key) {
                    Some(c) if c.spec == spec && Arc::ptr_eq(&c.state, &state) => c,
                    _ => {
                        report.checkers_started += 1;
                        Checker {
                            task: tokio::spawn(health::run_checker(state.clone(), spec.clone())),
                            spec,
                            state,
                        }
                    }
                };
                checkers.insert(key, checker);
            }
        }
        report.checkers_stopped = self.checkers.len();
        checkers
    }
}

/// Puts `saved` entries into the tables of the same name (by the last
/// writer, so a newer entry is kept); returns how many were taken.
fn restore(saved: Vec<SavedTable>, tables: &Tables) -> usize {
    let now = stick::now_ms();
    let mut n = 0;
    for s in saved {
        let Some(t) = tables.get(&s.name) else {
            continue;
        };
        for (key, entry) in s.entries {
            n += usize::from(t.learn(key, entry, now));
        }
    }
    n
}

/// The running proxy of one node.
pub struct Runtime {
    inner: Mutex<Inner>,
    limits: Arc<ProcessLimits>,
    reuseport: bool,
    /// The node whose writes to stick tables this runtime stamps.
    node: NodeId,
}

/// Status of the running proxy, for the admin API.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    /// Frontends: name → bound addresses.
    pub frontends: BTreeMap<String, Vec<SocketAddr>>,
    /// Frontends: name → traffic counters, summed over the threads.
    pub traffic: BTreeMap<String, crate::proxy::stats::FrontendTotals>,
    /// Backends: name → servers.
    pub backends: BTreeMap<String, Vec<ServerStatusLine>>,
    /// Backends: name → connections waiting for a server slot now.
    pub queued: BTreeMap<String, usize>,
}

/// One server in [`Status`].
#[derive(Debug, Clone, Serialize)]
pub struct ServerStatusLine {
    /// Server name.
    pub name: String,
    /// Its address.
    pub address: SocketAddr,
    /// Whether it is a backup.
    pub backup: bool,
    /// Whether it is health-checked.
    pub check: bool,
    /// Live state.
    #[serde(flatten)]
    pub status: ServerStatus,
}

/// `maxconn` when `[global]` sets none: what the open-file limit allows,
/// with two descriptors per proxied connection (as HAProxy derives it).
pub fn default_global_maxconn() -> u32 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and nothing else.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    let nofile = if ok { lim.rlim_cur } else { 1024 };
    (nofile.saturating_sub(64) / 2).clamp(1, 1_000_000) as u32
}

impl Default for Runtime {
    fn default() -> Self {
        Self::new()
    }
}

impl Runtime {
    /// A runtime serving nothing yet.
    pub fn new() -> Runtime {
        Self::for_node(0, false)
    }

    /// The runtime of node `node` (its id stamps its stick-table writes);
    /// its listeners share their addresses (SO_REUSEPORT) when `reuseport`.
    pub fn for_node(node: NodeId, reuseport: bool) -> Runtime {
        Runtime {
            node,
            reuseport,
            inner: Mutex::new(Inner::default()),
            limits: Arc::new(ProcessLimits {
                maxconn: Limiter::new(0),
                active: Default::default(),
            }),
        }
    }

    /// The config running now.
    pub fn config(&self) -> Option<ClusterConfig> {
        self.inner.lock().expect("runtime lock").config.clone()
    }

    /// Applies `new`. All or nothing: if a new address cannot be bound,
    /// nothing changes.
    pub fn apply(&self, new: &ClusterConfig) -> Result<ApplyReport, ApplyError> {
        let mut inner = self.inner.lock().expect("runtime lock");
        let inner = &mut *inner;
        let mut report = ApplyReport::default();
        // Staged first, with steps that may fail and change nothing
        // running: on failure the running config stays whole.
        // 1. Bind the new addresses.
        let fresh = inner.bind_new(new, self.reuseport)?;
        // 2. Stick tables, servers, backends, frontends: built beside the
        //    running ones (a table keeps its entries, a server whose address
        //    stays its live state).
        let tables = inner.tables_of(new, self.node);
        let (servers, queues, backends) = inner.servers_of(new, &tables, &mut report);
        let frontends = inner.frontends_of(new, &backends, &tables);
        // 3. The accept loops of the new addresses.
        let mut started = Inner::start_fresh(new, &frontends, fresh, &self.limits)?;

        // Then committed, with steps that cannot fail.
        // 4. The limits, resized in place (waiting clients see the change).
        let global_maxconn = new.global.maxconn.unwrap_or_else(default_global_maxconn);
        if global_maxconn != inner.global_maxconn {
            self.limits.maxconn.resize(global_maxconn);
            inner.global_maxconn = global_maxconn;
        }
        for fe in new.frontends.values() {
            frontends[&fe.name].maxconn.resize(fe.maxconn);
        }
        report.restored = restore(std::mem::take(&mut inner.restore), &tables);
        // 5. Listeners: a running one serves its new frontend (its socket
        //    kept); dropping the others ends their accept loops.
        let mut listeners = HashMap::new();
        for fe in new.frontends.values() {
            for &addr in &fe.bind {
                let l = match inner.listeners.remove(&addr) {
                    Some(l) => {
                        l.frontend.store(frontends[&fe.name].clone());
                        report.kept += 1;
                        l
                    }
                    None => {
                        report.bound.push(addr);
                        started.remove(&addr).expect("started in step 3")
                    }
                };
                listeners.insert(addr, l);
            }
        }
        report.closed = inner.listeners.keys().copied().collect();
        report.closed.sort();
        inner.listeners = listeners;
        // 6. Health checkers: keep those whose settings and server stayed.
        inner.checkers = inner.checkers_of(new, &servers, &mut report);
        inner.servers = servers;
        inner.queues = queues;
        inner.frontends = frontends;
        inner.stick_tables = tables;
        inner.config = Some(new.clone());
        // Queued connections look again at the new servers.
        for q in inner.queues.values() {
            q.notify.notify_waiters();
        }
        Ok(report)
    }

    /// Closes every listener (first phase of a shutdown) and returns the
    /// number of client connections still being served.
    pub fn stop_listening(&self) -> usize {
        self.inner.lock().expect("runtime lock").listeners.clear();
        self.active_connections()
    }

    /// Client connections being served now.
    pub fn active_connections(&self) -> usize {
        self.limits
            .active
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The addresses a frontend is bound to (resolves port 0).
    pub fn bound_addrs(&self, frontend: &str) -> Vec<SocketAddr> {
        let inner = self.inner.lock().expect("runtime lock");
        let Some(fe) = inner.frontends.get(frontend) else {
            return Vec::new();
        };
        fe.cfg
            .bind
            .iter()
            .filter_map(|a| inner.listeners.get(a).map(|l| l.local))
            .collect()
    }

    /// Live state of one server.
    pub fn server(&self, backend: &str, server: &str) -> Option<Arc<ServerState>> {
        let inner = self.inner.lock().expect("runtime lock");
        inner
            .servers
            .get(&(backend.to_string(), server.to_string()))
            .map(|(_, s)| s.clone())
    }

    /// Sets every server's operator state from the replicated state (servers
    /// it does not name are ready, with their config weight).
    pub fn set_operator(
        &self,
        views: &BTreeMap<raftlb_proto::ServerKey, raftlb_proto::state::OperatorView>,
    ) {
        let inner = self.inner.lock().expect("runtime lock");
        for ((backend, server), (_, state)) in &inner.servers {
            let key = raftlb_proto::ServerKey::new(backend.clone(), server.clone());
            state.set_operator(views.get(&key).copied().unwrap_or_default());
        }
    }

    /// Every server's health as this node sees it, with the reason.
    pub fn health_views(&self) -> Vec<(raftlb_proto::ServerKey, bool, String)> {
        let inner = self.inner.lock().expect("runtime lock");
        let mut out: Vec<_> = inner
            .servers
            .iter()
            .map(|((b, s), (_, st))| {
                let status = st.status();
                (
                    raftlb_proto::ServerKey::new(b.clone(), s.clone()),
                    status.up,
                    status.last_change,
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Saved stick-table entries (or a peer's, from a resync) to put back
    /// into the tables of the next config applied (at start, before the
    /// first); added to those given before.
    pub fn restore_stick_tables(&self, saved: Vec<SavedTable>) {
        self.inner
            .lock()
            .expect("runtime lock")
            .restore
            .extend(saved);
    }

    /// Takes stick-table entries a peer wrote, into the running tables of
    /// their names (by the last writer); before the first config is
    /// applied (a start: its tables do not exist yet), they wait with the
    /// saved ones for it. Returns how many were taken (or kept).
    pub fn learn_stick_entries(&self, tables: Vec<SavedTable>) -> u64 {
        let mut inner = self.inner.lock().expect("runtime lock");
        if inner.config.is_none() {
            let n = tables.iter().map(|t| t.entries.len() as u64).sum();
            inner.restore.extend(tables);
            return n;
        }
        let running = inner.stick_tables.clone();
        drop(inner);
        restore(tables, &running) as u64
    }

    /// The stick tables running now, by name.
    pub fn stick_tables(&self) -> Vec<Arc<StickTable>> {
        let inner = self.inner.lock().expect("runtime lock");
        let mut tables: Vec<_> = inner.stick_tables.values().cloned().collect();
        tables.sort_by(|a, b| a.name().cmp(b.name()));
        tables
    }

    /// Status of every frontend and server.
    pub fn status(&self) -> Status {
        let inner = self.inner.lock().expect("runtime lock");
        let mut status = Status::default();
        let Some(cfg) = &inner.config else {
            return status;
        };
        let fes = inner.frontends.iter();
        status.traffic = fes.map(|(n, fe)| (n.clone(), fe.stats.totals())).collect();
        let waiting = |q: &BackendQueue| q.waiting.load(std::sync::atomic::Ordering::Relaxed);
        status.queued = inner
            .queues
            .iter()
            .map(|(n, q)| (n.clone(), waiting(q)))
            .collect();
        for fe in cfg.frontends.values() {
            let addrs = fe
                .bind
                .iter()
                .filter_map(|a| inner.listeners.get(a).map(|l| l.local))
                .collect();
            status.frontends.insert(fe.name.clone(), addrs);
        }
        for be in cfg.backends.values() {
            let lines = be
                .servers
                .iter()
                .map(|s| ServerStatusLine {
                    name: s.name.clone(),
                    address: s.address,
                    backup: s.backup,
                    check: s.check.is_some(),
                    status: inner.servers[&(be.name.clone(), s.name.clone())].1.status(),
                })
                .collect();
            status.backends.insert(be.name.clone(), lines);
        }
        status
    }
}
