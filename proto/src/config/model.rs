//! The validated cluster configuration as plain types: [`ClusterConfig`]
//! and its global settings, frontends, backends, servers and VIPs. Reading
//! them from a document is in `parse`.

use super::acl;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// A validated cluster configuration: what every node applies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterConfig {
    /// Process-wide limits (`[global]`).
    pub global: Global,
    /// Frontends by name.
    pub frontends: BTreeMap<String, Frontend>,
    /// Backends by name.
    pub backends: BTreeMap<String, Backend>,
    /// Stick tables by name: the named ones (`[stick_tables.NAME]`) and each
    /// backend's own (`stick_table = { … }`, named after the backend).
    pub stick_tables: BTreeMap<String, StickTable>,
    /// Virtual IPs the leader holds (`[[vips]]`), in declaration order.
    pub vips: Vec<Vip>,
}
/// `[global]`: process-wide settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Global {
    /// Most concurrent client connections over all frontends. `None`: derived
    /// from the open-file limit at run time, as HAProxy does.
    pub maxconn: Option<u32>,
}

/// A virtual IP (`[[vips]]`): the Raft leader whose lease is valid adds it
/// to its `[vip] interface` and announces it (gratuitous ARP for IPv4,
/// unsolicited neighbour advertisements for IPv6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vip {
    /// The address.
    pub address: IpAddr,
    /// Its prefix length on the interface (`/24`).
    pub prefix: u8,
    /// Announcements sent on taking the VIP (keepalived's `garp_master_repeat`).
    pub garp_repeat: u32,
    /// Time between the announcements of that burst.
    pub garp_interval: Duration,
    /// One more announcement this often while holding it (`None`: never).
    pub garp_refresh: Option<Duration>,
}

impl Vip {
    /// `address/prefix`, as written in the config.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.address, self.prefix)
    }
}

/// Proxy mode of a frontend or backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// Layer 4: a full-duplex TCP relay.
    Tcp,
    /// Layer 7: HTTP/1.1.
    Http,
}

/// A frontend: where clients connect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frontend {
    /// The frontend's name.
    pub name: String,
    /// Listening addresses (IPv4 and IPv6).
    pub bind: Vec<SocketAddr>,
    /// Proxy mode.
    pub mode: Mode,
    /// Backend used when no `use_backend` rule matches (required in TCP
    /// mode; in HTTP mode, without one a request no rule matches gets 503).
    pub default_backend: Option<String>,
    /// Most concurrent connections; the excess waits in the kernel's listen queue.
    pub maxconn: u32,
    /// Client-side inactivity timeout (`None`: no limit).
    pub timeout_client: Option<Duration>,
    /// HTTP mode: most time to receive a request's whole head: the first
    /// from the accept, a later one from its first byte (slowloris);
    /// `None`: `timeout_client`.
    pub timeout_http_request: Option<Duration>,
    /// HTTP mode: most time to wait for the next request after a response
    /// (silently closed then); `None`: `timeout_http_request`.
    pub timeout_http_keep_alive: Option<Duration>,
    /// HTTP mode: the named ACLs (`acl = { name = "fetch patterns" }`).
    pub acls: acl::AclSet,
    /// HTTP mode: `use_backend` rules, in order; the first that matches wins.
    pub use_backend: Vec<UseBackend>,
    /// HTTP mode: append `X-Forwarded-For: <client>` (and set
    /// `X-Forwarded-Proto`) to requests, as HAProxy's `option forwardfor`.
    pub forwardfor: Option<ForwardFor>,
    /// HTTP mode: add `Via: 1.1 raftlb` to requests and responses.
    pub via: bool,
    /// `track_sc0`: the stick table each connection's client (`src`) is
    /// counted in (HAProxy's `track-sc0 src`), for the `sc0_*` fetches.
    pub track_sc0: Option<String>,
    /// `tcp_request_connection`: rules on each new connection, in order;
    /// the first that applies decides (HAProxy's `tcp-request connection`).
    pub tcp_request_connection: Vec<ConnRule>,
    /// `http_request`: rules on each HTTP request before it is routed, in
    /// order; the first that applies decides (HAProxy's `http-request`).
    pub http_request: Vec<HttpRule>,
}

/// A `tcp_request_connection` rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnRule {
    /// What it does.
    pub action: ConnAction,
    /// When.
    pub cond: acl::Condition,
    /// `unless`: it applies when the condition is false.
    pub unless: bool,
}

/// What a connection rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnAction {
    /// Serve the connection (no later rule is looked at).
    Accept,
    /// Close it at once, without a byte.
    Reject,
}

/// An `http_request` rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpRule {
    /// What it does.
    pub action: HttpAction,
    /// When.
    pub cond: acl::Condition,
    /// `unless`: it applies when the condition is false.
    pub unless: bool,
}

/// What an HTTP request rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HttpAction {
    /// Go on with the request (no later rule is looked at).
    Allow,
    /// Answer with `status` (403 unless given; 429 for rate limits) and
    /// close; no server sees the request.
    Deny {
        /// The status.
        status: u16,
    },
}

impl ConnRule {
    /// Whether it applies to `req`.
    pub fn applies(&self, req: &acl::RequestView<'_>) -> bool {
        self.cond.eval(req) != self.unless
    }
}

impl HttpRule {
    /// Whether it applies to `req`.
    pub fn applies(&self, req: &acl::RequestView<'_>) -> bool {
        self.cond.eval(req) != self.unless
    }
}

/// `forwardfor = true`, or `{ except = "10.0.0.0/8", header = "X-Client-IP" }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForwardFor {
    /// Clients from these networks get no header (`src` patterns).
    pub except: Option<acl::Acl>,
    /// The header's name (default `X-Forwarded-For`).
    pub header: String,
}

/// A `use_backend` rule: `{ backend = "api", if = "is_api !is_post" }` (or
/// `unless = "…"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UseBackend {
    /// The backend.
    pub backend: String,
    /// The condition.
    pub cond: acl::Condition,
    /// `unless`: the rule applies when the condition is false.
    pub unless: bool,
}

impl UseBackend {
    /// Whether this rule sends `req` to its backend.
    pub fn applies(&self, req: &acl::RequestView<'_>) -> bool {
        self.cond.eval(req) != self.unless
    }
}

/// Balance algorithm of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Balance {
    /// Weighted turns; weights may change at run time (slow start).
    RoundRobin,
    /// Weighted turns with the configured weights only.
    StaticRr,
    /// Fewest connections per weight; round robin among ties.
    LeastConn,
    /// First server (in declaration order) with a free connection slot.
    First,
    /// Hash of the client's IP address over the running servers' weights.
    Source,
    /// Power of two random choices, weighted; the less loaded of the two.
    Random,
    /// HTTP: consistent hash of the request's URI (see [`HashKey::Uri`]).
    Uri,
    /// HTTP: consistent hash of a request header (see [`HashKey::Hdr`]);
    /// round robin for requests without it.
    Hdr,
}

/// Cookie persistence, HAProxy's `cookie NAME insert [indirect] [nocache]`:
/// a request carrying `NAME=<a server's cookie value>` goes to that server
/// while it is up; a response from a server the request was not sent to by
/// its cookie gets `Set-Cookie: NAME=<value>; path=/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cookie {
    /// The cookie's name.
    pub name: String,
    /// Remove the cookie from requests before they reach the server.
    pub indirect: bool,
    /// Mark responses that set it `Cache-Control: private`, so that no
    /// shared cache hands one client's cookie to others.
    pub nocache: bool,
}

/// What `balance uri` / `balance hdr(name)` hash. Both use consistent
/// hashing (HAProxy's `hash-type consistent`): a server that goes or comes
/// moves only its own share of the keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HashKey {
    /// The URI's path (with `whole`, its query too), cut to its first
    /// `depth` directories and then to `len` characters (0: no limit).
    Uri {
        /// Hash the query string too.
        whole: bool,
        /// Characters hashed (0: all).
        len: u32,
        /// Directories hashed (0: all).
        depth: u32,
    },
    /// The first value of this header (lower-case name).
    Hdr {
        /// The header.
        name: String,
    },
}

/// The timeouts that apply to a backend's connections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendTimeouts {
    /// Most time for a server connect to succeed.
    pub connect: Option<Duration>,
    /// Server-side inactivity timeout.
    pub server: Option<Duration>,
    /// Most time a connection waits in the queue for a server slot
    /// (defaults to `connect`, as HAProxy).
    pub queue: Option<Duration>,
    /// Inactivity timeout in both directions once relaying; supersedes
    /// `client` and `server` in TCP mode when set.
    pub tunnel: Option<Duration>,
    /// Extra time a health check may take after connecting (`None`: `inter`).
    pub check: Option<Duration>,
}

/// A backend: a set of servers and how to choose between them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backend {
    /// The backend's name.
    pub name: String,
    /// Proxy mode.
    pub mode: Mode,
    /// Balance algorithm.
    pub balance: Balance,
    /// What `uri` and `hdr` hash (set for those two only).
    pub hash_key: Option<HashKey>,
    /// HTTP: cookie persistence (HAProxy's `cookie NAME insert …`).
    pub cookie: Option<Cookie>,
    /// Connect attempts after the first failure.
    pub retries: u32,
    /// Whether the last retry may go to another server.
    pub redispatch: bool,
    /// Whether all backup servers share the load (not only the first).
    pub allbackups: bool,
    /// Timeouts.
    pub timeout: BackendTimeouts,
    /// Active health check method for servers with `check`.
    pub health_check: HealthCheck,
    /// Servers in declaration order (their position is their id for `first`).
    pub servers: Vec<Server>,
    /// `stick_on`: the key that makes a client stick to a server, and the
    /// table that remembers it (HAProxy's `stick on`).
    pub stick_on: Option<StickOn>,
}

/// A stick table (HAProxy's `stick-table`): client keys and the server each
/// one sticks to, with an expiry, in at most `size` entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StickTable {
    /// Its name: the `[stick_tables]` key, or the backend's own name.
    pub name: String,
    /// What its keys are.
    pub key_type: StickType,
    /// Most entries; when full, the entry that expires first goes.
    pub size: u32,
    /// How long an entry lives after its last use (`None`: until evicted).
    pub expire: Option<Duration>,
    /// The counters kept per entry.
    pub store: Vec<StickData>,
}

/// The type of a stick table's keys (HAProxy's `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StickType {
    /// IPv4 and IPv6 addresses in one table.
    Ip,
    /// Unsigned integers.
    Integer,
    /// Strings of at most `len` bytes (longer keys are cut, as HAProxy).
    String {
        /// The most bytes of a key kept.
        len: u32,
    },
}

/// A counter a stick table keeps per entry (HAProxy's `store`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum StickData {
    /// Connections open now from this key, on this node (never learned
    /// from peers).
    ConnCur,
    /// New connections per period.
    ConnRate(Duration),
    /// HTTP requests per period.
    HttpReqRate(Duration),
    /// Bytes received from the client per period.
    BytesInRate(Duration),
}

impl StickData {
    /// What it counts, as fetches name it.
    pub fn kind(self) -> acl::CounterKind {
        match self {
            StickData::ConnCur => acl::CounterKind::ConnCur,
            StickData::ConnRate(_) => acl::CounterKind::ConnRate,
            StickData::HttpReqRate(_) => acl::CounterKind::HttpReqRate,
            StickData::BytesInRate(_) => acl::CounterKind::BytesInRate,
        }
    }

    /// A rate's period in ms (none for a gauge).
    pub fn period_ms(self) -> Option<u64> {
        match self {
            StickData::ConnCur => None,
            StickData::ConnRate(d) | StickData::HttpReqRate(d) | StickData::BytesInRate(d) => {
                Some(d.as_millis().max(1) as u64)
            }
        }
    }
}

impl std::fmt::Display for StickData {
    /// As `store` writes it: `conn_cur`, `conn_rate(10s)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.period_ms() {
            None => f.write_str(self.kind().as_str()),
            Some(ms) => {
                let period = match ms {
                    m if m % 3_600_000 == 0 => format!("{}h", m / 3_600_000),
                    m if m % 60_000 == 0 => format!("{}m", m / 60_000),
                    m if m % 1000 == 0 => format!("{}s", m / 1000),
                    m => format!("{m}ms"),
                };
                write!(f, "{}({period})", self.kind().as_str())
            }
        }
    }
}

/// What a client is recognized by for stickiness (`stick_on`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StickKey {
    /// Its source address (`src`).
    Src,
    /// HTTP: the value of a request cookie (`req.cook(NAME)`).
    ReqCookie(String),
    /// HTTP: the first value of a request header (`req.hdr(NAME)`, the name
    /// in lower case).
    ReqHdr(String),
}

/// A backend's `stick_on`: the key, and the table (the backend's own, or a
/// named one) where it is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StickOn {
    /// What identifies the client.
    pub key: StickKey,
    /// The name of the stick table.
    pub table: String,
}

/// How an active health check probes a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HealthCheck {
    /// A TCP connect succeeds.
    Tcp,
    /// An HTTP request gets an expected status.
    Http {
        /// Request method.
        method: String,
        /// Request path.
        path: String,
        /// `Host` header, if any.
        host: Option<String>,
        /// Expected statuses; empty means any 2xx or 3xx.
        expect_status: Vec<u16>,
    },
}

/// Passive health observation of real traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Observe {
    /// Connect success and failure.
    Layer4,
    /// HTTP responses (HTTP backends).
    Layer7,
}

/// What to do when `error_limit` consecutive errors were observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OnError {
    /// Check at `fastinter` from now on.
    FastInter,
    /// Count as one failed check (and check at `fastinter`).
    FailCheck,
    /// One more failed check marks the server down.
    SuddenDeath,
    /// Mark the server down at once.
    MarkDown,
}

/// Health check settings of one server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckParams {
    /// Interval between checks while up.
    pub inter: Duration,
    /// Interval while changing state (defaults to `inter`).
    pub fastinter: Duration,
    /// Interval while down (defaults to `inter`).
    pub downinter: Duration,
    /// Consecutive successes to go up.
    pub rise: u32,
    /// Consecutive failures to go down.
    pub fall: u32,
}

/// A server of a backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Server {
    /// The server's name, unique in its backend.
    pub name: String,
    /// Where to connect.
    pub address: SocketAddr,
    /// Relative share of the load, 0–256 (0: only sticky traffic).
    pub weight: u32,
    /// Most concurrent connections (0: no limit); the excess is queued.
    pub maxconn: u32,
    /// Used only when no non-backup server is up.
    pub backup: bool,
    /// Active health checks, when `check = true`.
    pub check: Option<CheckParams>,
    /// Passive health observation.
    pub observe: Option<Observe>,
    /// Consecutive observed errors that trigger `on_error`.
    pub error_limit: u32,
    /// Action after `error_limit` observed errors.
    pub on_error: OnError,
    /// After recovering, ramp weight and maxconn up over this time.
    pub slowstart: Option<Duration>,
    /// HTTP: the value of the backend's persistence cookie that sends a
    /// client to this server (none: this server gets no persistence).
    pub cookie: Option<String>,
}
