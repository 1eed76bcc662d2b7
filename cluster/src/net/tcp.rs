//! The node-to-node transport over TCP: [`TcpTransport`] calls other nodes
//! over pooled, authenticated connections; [`serve`] answers them. Every
//! connection starts with the [`handshake`], which agrees on the protocol
//! version it speaks, then carries one `raftlb_proto::wire` frame of that
//! version per request and one per answer, one request in flight at a time.

use super::handshake::{self, HandshakeError, Versions, HANDSHAKE_TIMEOUT};
use super::secret::ClusterSecret;
use super::transport::{CallError, Handler, Transport};
use crate::types::{Request, Response};
use raftlb_proto::wire::{self, WireError};
use raftlb_proto::NodeId;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// The server closes a connection silent for this long.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// A pooled connection unused for this long is not reused (well before the
/// server's [`IDLE_TIMEOUT`], so that the server does not close it as we
/// send on it).
const POOL_IDLE: Duration = Duration::from_secs(60);

/// The longest a TCP connect to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(250);

/// Idle connections kept per target.
const POOL_MAX: usize = 4;

/// Connections [`serve`] holds at once; beyond, it waits before accepting.
const MAX_CONNECTIONS: usize = 1024;

/// How long a late answer is waited for before its connection is dropped.
const DRAIN_LATE: Duration = Duration::from_secs(2);

/// A Raft message answered slower than this is logged.
const SLOW_ANSWER: Duration = Duration::from_millis(25);

/// The pause after a failed `accept` (EMFILE and the like).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// An authenticated connection, and the protocol version it speaks.
struct Conn {
    stream: TcpStream,
    version: u16,
}

/// An authenticated connection waiting in the pool.
struct Idle {
    conn: Conn,
    since: Instant,
}

/// Calls other nodes over TCP. Cheap to clone: clones share the pool.
#[derive(Clone)]
pub struct TcpTransport {
    inner: Arc<Inner>,
}

struct Inner {
    own_id: NodeId,
    secret: Arc<ClusterSecret>,
    /// The protocol versions it offers.
    versions: Versions,
    /// Idle connections by target and address (a node that moved gets new
    /// connections).
    idle: Mutex<HashMap<(NodeId, String), Vec<Idle>>>,
    /// Connections dialled so far.
    dials: AtomicU64,
    /// Targets being dialled now: one dial at a time per target (a peer
    /// whose link is down must not collect a pending dial per heartbeat).
    dialing: Mutex<std::collections::HashSet<(NodeId, String)>>,
}

impl std::fmt::Debug for TcpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpTransport")
            .field("own_id", &self.inner.own_id)
            .finish_non_exhaustive()
    }
}

impl TcpTransport {
    /// The transport node `own_id` calls with, proving `secret`.
    pub fn new(own_id: NodeId, secret: Arc<ClusterSecret>) -> TcpTransport {
        Self::speaking(own_id, secret, Versions::THIS)
    }

    /// As [`TcpTransport::new`], speaking `versions` (another release's,
    /// in tests).
    pub fn speaking(
        own_id: NodeId,
        secret: Arc<ClusterSecret>,
        versions: Versions,
    ) -> TcpTransport {
        TcpTransport {
            inner: Arc::new(Inner {
                own_id,
                secret,
                versions,
                idle: Mutex::new(HashMap::new()),
                dials: AtomicU64::new(0),
                dialing: Mutex::new(Default::default()),
            }),
        }
    }

    /// How many connections this transport (and its clones) dialled.
    #[cfg(test)]
    pub(crate) fn dials(&self) -> u64 {
        self.inner.dials.load(Ordering::Relaxed)
    }

    /// How many idle connections to `target` at `addr` are pooled.
    #[cfg(test)]
    pub(crate) fn idle(&self, target: NodeId, addr: &str) -> usize {
        self.pool()
            .get(&(target, addr.to_string()))
            .map_or(0, Vec::len)
    }

    /// The protocol version of the newest idle connection to `target`.
    #[cfg(test)]
    pub(crate) fn idle_version(&self, target: NodeId, addr: &str) -> Option<u16> {
        let pool = self.pool();
        pool.get(&(target, addr.to_string()))?
            .last()
            .map(|c| c.conn.version)
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, HashMap<(NodeId, String), Vec<Idle>>> {
        // The pool holds no invariant a panic could break.
        self.inner.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently used idle connection that still looks open.
    fn take_idle(&self, target: NodeId, addr: &str) -> Option<Conn> {
        let mut pool = self.pool();
        let conns = pool.get_mut(&(target, addr.to_string()))?;
        while let Some(c) = conns.pop() {
            if c.since.elapsed() < POOL_IDLE && looks_open(&c.conn.stream) {
                return Some(c.conn);
            }
        }
        None
    }

    fn put_idle(&self, target: NodeId, addr: &str, conn: Conn) {
        let mut pool = self.pool();
        let conns = pool.entry((target, addr.to_string())).or_default();
        conns.retain(|c| c.since.elapsed() < POOL_IDLE);
        if conns.len() < POOL_MAX {
            conns.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    /// Connects and authenticates, offering the newest protocol version;
    /// a peer that speaks only an older one of ours refuses it with its
    /// newest, and is dialled again offering that one. Every failure is
    /// `Unreachable`: nothing was sent yet.
    async fn dial(&self, target: NodeId, addr: &str) -> Result<Conn, CallError> {
        let versions = self.inner.versions;
        match self.dial_speaking(target, addr, versions.max).await {
            Err(DialError::Handshake(_, HandshakeError::WrongVersion(theirs)))
                if theirs < versions.max && versions.speaks(theirs) =>
            {
                tracing::info!(node = target, peer = %addr, version = theirs, "the peer speaks an older protocol version: speaking it");
                self.dial_speaking(target, addr, theirs).await
            }
            other => other,
        }
        .map_err(|e| CallError::Unreachable {
            node: target,
            reason: e.to_string(),
        })
    }

    /// Connects and authenticates, offering protocol `version`.
    async fn dial_speaking(
        &self,
        target: NodeId,
        addr: &str,
        version: u16,
    ) -> Result<Conn, DialError> {
        let unreachable = DialError::Connect;
        self.inner.dials.fetch_add(1, Ordering::Relaxed);
        // A SYN lost to a dead link is only retried after a second: give up
        // sooner and let the next call dial afresh.
        let mut stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await
        {
            Ok(c) => c.map_err(|e| unreachable(format!("cannot connect to {addr}: {e}")))?,
            Err(_) => {
                return Err(unreachable(format!(
                    "cannot connect to {addr}: no answer within {} ms",
                    CONNECT_TIMEOUT.as_millis()
                )))
            }
        };
        stream
            .set_nodelay(true)
            .map_err(|e| unreachable(format!("{addr}: {e}")))?;
        let (secret, me) = (&self.inner.secret, self.inner.own_id);
        handshake::client_speaking(&mut stream, secret, me, target, version)
            .await
            .map_err(|e| DialError::Handshake(addr.to_string(), e))?;
        Ok(Conn { stream, version })
    }
}

/// Whether an idle connection was not closed by the peer meanwhile (it
/// sends nothing unasked, so anything readable means closed or broken).
fn looks_open(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.try_read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// How an exchange on an open connection failed.
enum Failed {
    /// Before the whole request was handed to the kernel: the peer cannot
    /// have decoded it.
    NotSent(io::Error),
    /// After: it may have been handled.
    AfterSend(String),
}

/// How far an exchange got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    Sending,
    /// The request is sent and no byte of the answer was read yet.
    Waiting,
    Reading,
}

async fn exchange(
    conn: &mut Conn,
    frame: &[u8],
    progress: &mut Progress,
) -> Result<Response, Failed> {
    let stream = &mut conn.stream;
    stream.write_all(frame).await.map_err(Failed::NotSent)?;
    *progress = Progress::Waiting;
    // Wait for the answer without taking any of it: a call given up here
    // leaves the connection whole, to be drained (see `drain_late`).
    let mut byte = [0u8; 1];
    stream
        .peek(&mut byte)
        .await
        .map_err(|e| Failed::AfterSend(e.to_string()))?;
    *progress = Progress::Reading;
    match read_frame::<Response, _>(stream, conn.version).await {
        Ok(Some(resp)) => Ok(resp),
        Ok(None) => Err(Failed::AfterSend(
            "the peer closed the connection without answering".into(),
        )),
        Err(e) => Err(Failed::AfterSend(e.to_string())),
    }
}

impl Transport for TcpTransport {
    async fn call(
        &self,
        target: NodeId,
        addr: &str,
        req: Request,
        timeout: Duration,
    ) -> Result<Response, CallError> {
        let deadline = Instant::now() + timeout;
        let mut conn = match self.take_idle(target, addr) {
            Some(c) => c,
            None => self.fresh_connection(target, addr, timeout).await?,
        };
        if req.since() > conn.version {
            let speaks = conn.version;
            self.put_idle(target, addr, conn);
            return Err(CallError::Unsupported {
                node: target,
                speaks,
                needs: req.since(),
            });
        }
        let frame = wire::encode_as(&req, conn.version).map_err(|e| CallError::Network {
            node: target,
            reason: e.to_string(),
        })?;
        let mut progress = Progress::Sending;
        let exchanged =
            tokio::time::timeout_at(deadline, exchange(&mut conn, &frame, &mut progress)).await;
        match exchanged {
            Ok(Ok(resp)) => {
                self.put_idle(target, addr, conn);
                Ok(resp)
            }
            Ok(Err(Failed::NotSent(e))) => Err(CallError::Unreachable {
                node: target,
                reason: format!("{addr}: connection lost before the request was sent: {e}"),
            }),
            Ok(Err(Failed::AfterSend(reason))) => Err(CallError::Network {
                node: target,
                reason: format!("{addr}: {reason}"),
            }),
            Err(_) => {
                if progress == Progress::Waiting {
                    self.drain_late(target, addr, conn);
                }
                Err(CallError::Timeout {
                    node: target,
                    after: timeout,
                })
            }
        }
    }
}

impl TcpTransport {
    /// A new connection for a call that found none idle, waited for up to
    /// the call's `timeout`: one dial at a time per target, every failure
    /// `Unreachable`.
    async fn fresh_connection(
        &self,
        target: NodeId,
        addr: &str,
        timeout: Duration,
    ) -> Result<Conn, CallError> {
        // The dial has its own time limit, not the call's: Raft's heartbeat
        // timeout (tens of ms) can be shorter than a connect and handshake
        // on a busy machine. A connection that arrives too late for this
        // call waits in the pool for the next one, instead of being dialled
        // again forever.
        let key = (target, addr.to_string());
        let first = {
            let mut d = self.inner.dialing.lock().unwrap_or_else(|e| e.into_inner());
            d.insert(key.clone())
        };
        if !first {
            return Err(CallError::Unreachable {
                node: target,
                reason: format!("{addr}: still connecting"),
            });
        }
        let me = self.clone();
        let mut dial = tokio::spawn(async move {
            let r = tokio::time::timeout(HANDSHAKE_TIMEOUT, me.dial(target, &key.1)).await;
            let mut d = me.inner.dialing.lock().unwrap_or_else(|e| e.into_inner());
            d.remove(&key);
            r
        });
        match tokio::time::timeout(timeout, &mut dial).await {
            Ok(Ok(Ok(dialled))) => dialled,
            Ok(Ok(Err(_))) | Ok(Err(_)) => Err(CallError::Unreachable {
                node: target,
                reason: format!(
                    "{addr}: no authenticated connection within {} ms",
                    HANDSHAKE_TIMEOUT.as_millis()
                ),
            }),
            Err(_) => {
                let (me, to) = (self.clone(), addr.to_string());
                tokio::spawn(async move {
                    if let Ok(Ok(Ok(conn))) = dial.await {
                        me.put_idle(target, &to, conn);
                    }
                });
                Err(CallError::Unreachable {
                    node: target,
                    reason: format!("{addr}: still connecting after {} ms", timeout.as_millis()),
                })
            }
        }
    }

    /// Takes the late answer off a connection whose call timed out while
    /// waiting, then pools it again: a peer that is merely slow (a loaded
    /// host) costs no new connection and handshake per late answer, which
    /// would make the next calls later still.
    fn drain_late(&self, target: NodeId, addr: &str, mut conn: Conn) {
        let (me, addr) = (self.clone(), addr.to_string());
        tokio::spawn(async move {
            let read = read_frame::<Response, _>(&mut conn.stream, conn.version);
            if let Ok(Ok(Some(_))) = tokio::time::timeout(DRAIN_LATE, read).await {
                me.put_idle(target, &addr, conn);
            }
        });
    }
}

/// Why a dial failed.
#[derive(Debug, thiserror::Error)]
enum DialError {
    /// No TCP connection.
    #[error("{0}")]
    Connect(String),
    /// The handshake with the peer at the address failed.
    #[error("{0}: {1}")]
    Handshake(String, HandshakeError),
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
enum FrameError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Wire(#[from] WireError),
}

/// Reads one frame of protocol `version`. `None`: the peer closed the
/// connection between frames. The length is checked before the body is
/// allocated.
async fn read_frame<T, S>(stream: &mut S, version: u16) -> Result<Option<T>, FrameError>
where
    T: DeserializeOwned,
    S: AsyncRead + Unpin,
{
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < len.len() {
        match stream.read(&mut len[got..]).await? {
            0 if got == 0 => return Ok(None),
            0 => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
            n => got += n,
        }
    }
    let mut body = vec![0u8; wire::body_len(len)?];
    stream.read_exact(&mut body).await?;
    Ok(Some(wire::decode_body_as(&body, version)?))
}

/// Answers node-to-node connections on `listener` as node `own_id`, until
/// the returned future is dropped (which closes every connection it
/// accepted). Peers must prove `secret` in the handshake; their requests go
/// to `handler`. A failed accept is logged and retried after a pause; a
/// failed handshake or a bad frame closes that connection only.
pub async fn serve(
    listener: TcpListener,
    own_id: NodeId,
    secret: Arc<ClusterSecret>,
    handler: Arc<dyn Handler>,
) {
    serve_speaking(listener, own_id, secret, handler, Versions::THIS).await
}

/// As [`serve`], speaking `versions` (another release's, in tests).
pub async fn serve_speaking(
    listener: TcpListener,
    own_id: NodeId,
    secret: Arc<ClusterSecret>,
    handler: Arc<dyn Handler>,
    versions: Versions,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            Some(done) = conns.join_next(), if !conns.is_empty() => {
                if let Err(e) = done {
                    if e.is_panic() {
                        tracing::error!(error = %e, "a node-to-node connection task panicked");
                    }
                }
            }
            accepted = listener.accept(), if conns.len() < MAX_CONNECTIONS => match accepted {
                Ok((stream, peer)) => {
                    let (secret, handler) = (secret.clone(), handler.clone());
                    conns.spawn(connection(stream, peer, (own_id, versions), secret, handler));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "node-to-node accept failed; retrying");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
}

/// One accepted connection: handshake, then requests until the peer closes,
/// falls silent for [`IDLE_TIMEOUT`], or breaks the protocol.
async fn connection(
    mut stream: TcpStream,
    addr: SocketAddr,
    (own_id, versions): (NodeId, Versions),
    secret: Arc<ClusterSecret>,
    handler: Arc<dyn Handler>,
) {
    let _ = stream.set_nodelay(true);
    let handshake = handshake::server_speaking(&mut stream, &secret, own_id, versions);
    let (peer, version) = match handshake.await {
        Ok(agreed) => agreed,
        Err(e) => {
            tracing::warn!(peer = %addr, reason = %e, "refused a node-to-node connection");
            return;
        }
    };
    tracing::debug!(peer = %addr, node = peer, version, "node connected");
    loop {
        let read = read_frame::<Request, _>(&mut stream, version);
        let req = match tokio::time::timeout(IDLE_TIMEOUT, read).await {
            Ok(Ok(Some(req))) => req,
            Ok(Ok(None)) => return,
            Ok(Err(FrameError::Wire(e))) => {
                tracing::warn!(peer = %addr, node = peer, reason = %e, "bad frame; closing the connection");
                return;
            }
            Ok(Err(FrameError::Io(e))) => {
                tracing::debug!(peer = %addr, node = peer, error = %e, "connection lost");
                return;
            }
            Err(_) => {
                tracing::debug!(peer = %addr, node = peer, "closing an idle connection");
                return;
            }
        };
        if req.since() > version {
            tracing::warn!(peer = %addr, node = peer, kind = req.kind(), version, "a request this connection's protocol version does not have; closing the connection");
            return;
        }
        // The caller sends nothing while it waits: if the connection turns
        // readable, it gave up (timeout) or broke the protocol.
        let mut byte = [0u8; 1];
        let began = Instant::now();
        let resp = tokio::select! {
            biased;
            resp = handler.handle(peer, req) => resp,
            _ = stream.peek(&mut byte) => {
                tracing::debug!(peer = %addr, node = peer, "the caller left before the answer");
                return;
            }
        };
        note_slow(peer, &resp, began.elapsed());
        let frame = match wire::encode_as(&resp, version) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(peer = %addr, node = peer, reason = %e, "cannot send an answer; closing the connection");
                return;
            }
        };
        match tokio::time::timeout(IDLE_TIMEOUT, stream.write_all(&frame)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(peer = %addr, node = peer, error = %e, "connection lost");
                return;
            }
            Err(_) => {
                tracing::debug!(peer = %addr, node = peer, "the caller does not read; closing");
                return;
            }
        }
    }
}

/// Logs an answer to one of Raft's own messages that took `took` to make,
/// if that is slow (a write or a join waits for a commit: not counted).
fn note_slow(peer: NodeId, resp: &Response, took: Duration) {
    let raft = matches!(
        resp,
        Response::Append(_) | Response::Vote(_) | Response::PreVote(_)
    );
    if raft && took > SLOW_ANSWER {
        tracing::info!(
            node = peer,
            kind = resp.kind(),
            took_ms = took.as_millis() as u64,
            "slow answer to a peer"
        );
    }
}
