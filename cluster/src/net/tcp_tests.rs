//! Tests of the TCP transport over real sockets on 127.0.0.1 (port 0): the
//! pool, authentication, refusals, bad frames, timeouts and reconnection.

use super::handshake;
use super::handshake::Versions;
use super::secret::ClusterSecret;
use super::tcp::{serve, serve_speaking, TcpTransport};
use super::transport::{BoxFuture, CallError, Handler, Transport};
use crate::types::{Request, Response};
use raftlb_proto::{wire, NodeId};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const T: Duration = Duration::from_secs(5);

/// This id makes the handler wait forever.
const HANG: NodeId = 999;

/// This id makes the handler answer after [`SLOW_BY`].
const SLOW: NodeId = 997;
const SLOW_BY: Duration = Duration::from_millis(300);

/// Answers `IsMember { id }` with whether `id` is even; counts requests.
#[derive(Default)]
struct Even {
    handled: AtomicUsize,
}

impl Handler for Even {
    fn handle(&self, _from: NodeId, req: Request) -> BoxFuture<'_, Response> {
        self.handled.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            match req {
                Request::IsMember { id: HANG } => std::future::pending().await,
                Request::IsMember { id: SLOW } => {
                    tokio::time::sleep(SLOW_BY).await;
                    Response::IsMember(Some(false))
                }
                Request::IsMember { id } => Response::IsMember(Some(id % 2 == 0)),
                _ => Response::IsMember(None),
            }
        })
    }
}

impl Even {
    fn handled(&self) -> usize {
        self.handled.load(Ordering::SeqCst)
    }
}

struct Server {
    addr: SocketAddr,
    handler: Arc<Even>,
    task: JoinHandle<()>,
}

impl Server {
    async fn start(id: NodeId, secret: &Arc<ClusterSecret>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Server::on(listener, id, secret)
    }

    fn on(listener: TcpListener, id: NodeId, secret: &Arc<ClusterSecret>) -> Server {
        let addr = listener.local_addr().unwrap();
        let handler = Arc::new(Even::default());
        let task = tokio::spawn(serve(listener, id, secret.clone(), handler.clone()));
        Server {
            addr,
            handler,
            task,
        }
    }

    fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Stops accepting and closes every connection.
    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

fn secret() -> Arc<ClusterSecret> {
    Arc::new(ClusterSecret::generate())
}

async fn is_member(
    t: &TcpTransport,
    target: NodeId,
    addr: &str,
    id: NodeId,
) -> Result<Option<bool>, CallError> {
    match t.call(target, addr, Request::IsMember { id }, T).await? {
        Response::IsMember(answer) => Ok(answer),
        other => panic!("unexpected answer {other:?}"),
    }
}

fn unreachable_reason(r: Result<Option<bool>, CallError>) -> String {
    match r {
        Err(CallError::Unreachable { reason, .. }) => reason,
        other => panic!("expected Unreachable, got {other:?}"),
    }
}

/// An authenticated raw connection to `server`, as node 1.
async fn raw(server: &Server, secret: &ClusterSecret) -> TcpStream {
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(handshake::client(&mut s, secret, 1, 2).await.unwrap(), 2);
    s
}

/// Waits for the server to close `s` (end of stream or reset).
async fn closed(mut s: TcpStream) {
    let mut buf = [0u8; 64];
    let r = tokio::time::timeout(T, s.read(&mut buf)).await;
    assert!(
        matches!(r, Ok(Ok(0)) | Ok(Err(_))),
        "the connection should be closed: {r:?}"
    );
}

#[tokio::test]
async fn calls_reuse_one_connection() {
    let s = secret();
    let server = Server::start(2, &s).await;
    let t = TcpTransport::new(1, s.clone());
    for id in 0..50 {
        assert_eq!(
            is_member(&t, 2, &server.addr(), id).await,
            Ok(Some(id % 2 == 0))
        );
    }
    assert_eq!(server.handler.handled(), 50);
    assert_eq!(t.dials(), 1);
    assert_eq!(t.idle(2, &server.addr()), 1);

    // Concurrent calls each get a connection; the pool keeps a few.
    let calls = (0..16).map(|id| {
        let (t, addr) = (t.clone(), server.addr());
        tokio::spawn(async move { is_member(&t, 2, &addr, id).await })
    });
    for (id, call) in calls.enumerate() {
        assert_eq!(call.await.unwrap(), Ok(Some(id % 2 == 0)));
    }
    assert_eq!(server.handler.handled(), 66);
    assert!(t.dials() <= 17, "{} dials", t.dials());
    assert!((1..=4).contains(&t.idle(2, &server.addr())));
    server.stop().await;
}

#[tokio::test]
async fn a_wrong_secret_is_unreachable_and_nothing_is_handled() {
    let server = Server::start(2, &secret()).await;
    let t = TcpTransport::new(1, secret());
    let reason = unreachable_reason(is_member(&t, 2, &server.addr(), 4).await);
    assert!(reason.contains("wrong secret"), "{reason}");
    assert_eq!(server.handler.handled(), 0);
    assert_eq!(t.idle(2, &server.addr()), 0);
    server.stop().await;
}

#[tokio::test]
async fn the_wrong_node_is_unreachable_and_nothing_is_handled() {
    let s = secret();
    let server = Server::start(2, &s).await;
    let t = TcpTransport::new(1, s.clone());
    let reason = unreachable_reason(is_member(&t, 3, &server.addr(), 4).await);
    assert!(reason.contains("reached node 2, not 3"), "{reason}");
    assert_eq!(server.handler.handled(), 0);
    // A joiner that knows only the address reaches whichever node is there.
    assert_eq!(
        is_member(&t, handshake::ANY_NODE, &server.addr(), 4).await,
        Ok(Some(true))
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_frames_close_only_their_connection() {
    let s = secret();
    let server = Server::start(2, &s).await;
    let t = TcpTransport::new(1, s.clone());
    assert_eq!(is_member(&t, 2, &server.addr(), 2).await, Ok(Some(true)));

    // A frame whose payload does not decode.
    let mut bad = raw(&server, &s).await;
    bad.write_all(&[0, 0, 0, 5, 0, 1, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    closed(bad).await;
    // A length over the limit: refused before anything is allocated.
    let mut big = raw(&server, &s).await;
    big.write_all(&[0xff, 0xff, 0xff, 0xff, 0, 1])
        .await
        .unwrap();
    closed(big).await;
    // A frame of another protocol version.
    let mut frame = wire::encode(&Request::IsMember { id: 2 }).unwrap();
    frame[5] = 9;
    let mut other = raw(&server, &s).await;
    other.write_all(&frame).await.unwrap();
    closed(other).await;
    // A frame shorter than its header.
    let mut short = raw(&server, &s).await;
    short.write_all(&[0, 0, 0, 1, 0]).await.unwrap();
    closed(short).await;

    // The good connection was not disturbed.
    assert_eq!(is_member(&t, 2, &server.addr(), 3).await, Ok(Some(false)));
    assert_eq!(t.dials(), 1);
    assert_eq!(server.handler.handled(), 2);

    // A well-formed frame on a raw connection is answered.
    let mut good = raw(&server, &s).await;
    good.write_all(&wire::encode(&Request::IsMember { id: 6 }).unwrap())
        .await
        .unwrap();
    let mut len = [0u8; 4];
    good.read_exact(&mut len).await.unwrap();
    let mut body = vec![0u8; wire::body_len(len).unwrap()];
    good.read_exact(&mut body).await.unwrap();
    assert!(matches!(
        wire::decode_body::<Response>(&body).unwrap(),
        Response::IsMember(Some(true))
    ));
    server.stop().await;
}

#[tokio::test]
async fn another_protocol_version_is_refused() {
    let s = secret();
    let server = Server::start(2, &s).await;
    let mut peer = TcpStream::connect(server.addr).await.unwrap();
    let mut hello = Vec::from(*b"RLB\0");
    hello.extend(9u16.to_be_bytes());
    hello.extend(1u64.to_be_bytes());
    hello.extend(2u64.to_be_bytes());
    hello.extend([0u8; 32]);
    peer.write_all(&hello).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(T, peer.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    // Refused (version code, then this node's newest version), then closed.
    assert_eq!(answer, [0x01, 0, 3]);

    // Something that is not raftlb at all.
    let mut http = TcpStream::connect(server.addr).await.unwrap();
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(T, http.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer, [0x04]);
    assert_eq!(server.handler.handled(), 0);
    server.stop().await;
}

#[tokio::test]
async fn a_handler_that_never_answers_times_out() {
    let s = secret();
    let server = Server::start(2, &s).await;
    let t = TcpTransport::new(1, s.clone());
    let after = Duration::from_millis(200);
    let r = t
        .call(2, &server.addr(), Request::IsMember { id: HANG }, after)
        .await;
    assert!(
        matches!(r, Err(CallError::Timeout { node: 2, after: a }) if a == after),
        "{r:?}"
    );
    // Its connection waits for an answer that never comes, out of the pool;
    // the next call dials a new one.
    assert_eq!(t.idle(2, &server.addr()), 0);
    assert_eq!(is_member(&t, 2, &server.addr(), 8).await, Ok(Some(true)));
    assert_eq!(t.dials(), 2);
    server.stop().await;
}

#[tokio::test]
async fn a_late_answer_is_drained_and_its_connection_reused() {
    let s = secret();
    let server = Server::start(2, &s).await;
    let t = TcpTransport::new(1, s.clone());
    let after = Duration::from_millis(50);
    let r = t
        .call(2, &server.addr(), Request::IsMember { id: SLOW }, after)
        .await;
    assert!(
        matches!(r, Err(CallError::Timeout { node: 2, .. })),
        "{r:?}"
    );
    // The late answer arrives and is thrown away; the connection is pooled
    // again and the next call goes over it, not over a new one.
    let end = tokio::time::Instant::now() + T;
    while t.idle(2, &server.addr()) == 0 {
        assert!(
            tokio::time::Instant::now() < end,
            "the connection never came back"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(is_member(&t, 2, &server.addr(), 8).await, Ok(Some(true)));
    assert_eq!(t.dials(), 1);
    assert_eq!(server.handler.handled(), 2);
    server.stop().await;
}

#[tokio::test]
async fn nothing_listening_is_unreachable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let t = TcpTransport::new(1, secret());
    let reason = unreachable_reason(is_member(&t, 2, &addr, 2).await);
    assert!(reason.contains("cannot connect"), "{reason}");
}

#[tokio::test]
async fn a_restarted_server_is_reached_again() {
    let s = secret();
    let server = Server::start(2, &s).await;
    let addr = server.addr;
    let t = TcpTransport::new(1, s.clone());
    assert_eq!(is_member(&t, 2, &addr.to_string(), 2).await, Ok(Some(true)));
    assert_eq!(t.idle(2, &addr.to_string()), 1);

    server.stop().await;
    // Down: the pooled connection is dead and nothing listens.
    assert!(is_member(&t, 2, &addr.to_string(), 2).await.is_err());

    let server = Server::on(TcpListener::bind(addr).await.unwrap(), 2, &s);
    assert_eq!(is_member(&t, 2, &addr.to_string(), 4).await, Ok(Some(true)));
    assert_eq!(server.handler.handled(), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_stale_pooled_connection_is_not_used() {
    let s = secret();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    // A server that authenticates, answers once, then closes.
    let secret = s.clone();
    let (closed_tx, mut closed_rx) = tokio::sync::mpsc::unbounded_channel();
    let once = tokio::spawn(async move {
        loop {
            let (mut c, _) = listener.accept().await.unwrap();
            let (from, _) = handshake::server(&mut c, &secret, 2).await.unwrap();
            assert_eq!(from, 1);
            let mut len = [0u8; 4];
            c.read_exact(&mut len).await.unwrap();
            let mut body = vec![0u8; wire::body_len(len).unwrap()];
            c.read_exact(&mut body).await.unwrap();
            let answer = wire::encode(&Response::IsMember(Some(true))).unwrap();
            c.write_all(&answer).await.unwrap();
            c.shutdown().await.unwrap();
            closed_tx.send(()).unwrap();
        }
    });
    let t = TcpTransport::new(1, s.clone());
    assert_eq!(is_member(&t, 2, &addr, 2).await, Ok(Some(true)));
    // Once the server closed it, the pooled connection is not used: a
    // fresh one is dialled instead of failing the call.
    closed_rx.recv().await.unwrap();
    assert_eq!(is_member(&t, 2, &addr, 2).await, Ok(Some(true)));
    assert_eq!(t.dials(), 2);
    once.abort();
}

/// A server of a release that speaks `versions`.
async fn server_speaking(id: NodeId, secret: &Arc<ClusterSecret>, versions: Versions) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = Arc::new(Even::default());
    let h: Arc<dyn Handler> = handler.clone();
    let task = tokio::spawn(serve_speaking(listener, id, secret.clone(), h, versions));
    Server {
        addr,
        handler,
        task,
    }
}

#[tokio::test]
async fn a_release_and_the_next_agree_on_the_newest_version_both_speak() {
    let old = Versions { min: 1, max: 1 };
    let next = Versions { min: 1, max: 2 };
    let s = secret();
    // The next release calls the old one: refused in 2, it dials again in 1.
    let server = server_speaking(2, &s, old).await;
    let t = TcpTransport::speaking(1, s.clone(), next);
    assert_eq!(
        is_member(&t, 2, &server.addr(), 4).await.unwrap(),
        Some(true)
    );
    assert_eq!(t.dials(), 2);
    assert_eq!(t.idle_version(2, &server.addr()), Some(1));
    // And keeps that connection: no more dials.
    assert_eq!(
        is_member(&t, 2, &server.addr(), 3).await.unwrap(),
        Some(false)
    );
    assert_eq!(t.dials(), 2);
    server.stop().await;

    // The old release calls the next one: it answers in 1.
    let server = server_speaking(2, &s, next).await;
    let t = TcpTransport::speaking(1, s.clone(), old);
    assert_eq!(
        is_member(&t, 2, &server.addr(), 4).await.unwrap(),
        Some(true)
    );
    assert_eq!((t.dials(), t.idle_version(2, &server.addr())), (1, Some(1)));
    // Two of the next release speak 2.
    let t = TcpTransport::speaking(1, s.clone(), next);
    assert_eq!(
        is_member(&t, 2, &server.addr(), 4).await.unwrap(),
        Some(true)
    );
    assert_eq!((t.dials(), t.idle_version(2, &server.addr())), (1, Some(2)));
    assert_eq!(server.handler.handled(), 2);
    server.stop().await;
}

#[tokio::test]
async fn a_request_newer_than_the_connections_version_is_not_sent() {
    let s = secret();
    let server = server_speaking(2, &s, Versions { min: 1, max: 1 }).await;
    let t = TcpTransport::speaking(1, s.clone(), Versions::THIS);
    // A request of version 1 first: the connection speaks 1.
    assert_eq!(
        is_member(&t, 2, &server.addr(), 4).await.unwrap(),
        Some(true)
    );
    let push = Request::StickPush(Vec::new());
    assert_eq!(push.since(), 2);
    let r = t.call(2, &server.addr(), push, T).await;
    assert!(
        matches!(
            r,
            Err(CallError::Unsupported {
                speaks: 1,
                needs: 2,
                ..
            })
        ),
        "{r:?}"
    );
    assert_eq!(server.handler.handled(), 1, "the push never reached it");
    // The connection stays good for what it speaks.
    assert_eq!(
        is_member(&t, 2, &server.addr(), 3).await.unwrap(),
        Some(false)
    );
    assert_eq!(t.dials(), 2);
    server.stop().await;
}

#[tokio::test]
async fn releases_with_no_version_in_common_are_unreachable_and_nothing_is_handled() {
    let s = secret();
    let server = server_speaking(2, &s, Versions { min: 3, max: 3 }).await;
    let t = TcpTransport::speaking(1, s.clone(), Versions { min: 1, max: 2 });
    let reason = unreachable_reason(is_member(&t, 2, &server.addr(), 4).await);
    assert!(reason.contains("protocol version mismatch"), "{reason}");
    assert_eq!(
        t.dials(),
        1,
        "3 is newer than anything this side speaks: no second dial"
    );
    let server_old = server_speaking(3, &s, Versions { min: 1, max: 1 }).await;
    let t = TcpTransport::speaking(1, s.clone(), Versions { min: 2, max: 2 });
    let reason = unreachable_reason(is_member(&t, 3, &server_old.addr(), 4).await);
    assert!(reason.contains("protocol version mismatch"), "{reason}");
    assert_eq!(server.handler.handled() + server_old.handler.handled(), 0);
    server.stop().await;
    server_old.stop().await;
}

#[tokio::test]
async fn a_hand_over_is_not_sent_to_a_node_of_the_release_before() {
    let s = secret();
    let server = server_speaking(2, &s, Versions { min: 1, max: 2 }).await;
    let t = TcpTransport::speaking(1, s.clone(), Versions::THIS);
    let take = Request::TakeOver { last_log: None };
    assert_eq!(take.since(), 3);
    let r = t.call(2, &server.addr(), take, T).await;
    assert!(
        matches!(
            r,
            Err(CallError::Unsupported {
                speaks: 2,
                needs: 3,
                ..
            })
        ),
        "{r:?}"
    );
    assert_eq!(
        server.handler.handled(),
        0,
        "the hand-over never reached it"
    );
    server.stop().await;
}
