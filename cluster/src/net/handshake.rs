//! The node-to-node handshake: a mutual HMAC-SHA256 challenge–response over
//! the cluster secret, run on every new connection before any frame is
//! read. Its messages are fixed-size raw bytes (no bincode), so nothing from
//! an unauthenticated peer ever reaches a decoder.
//!
//! ```text
//! client → server  Hello      "RLB\0" | u16 version | u64 from | u64 to | nonce_c[32]   (54 bytes)
//! server → client  Challenge  0x00 | u64 server id | nonce_s[32] | proof_s[32]          (73 bytes)
//!              or  refusal    0x01 | u16 server's newest    a version it does not speak
//!                             0x02 | u64 server id          `to` is not this node
//!                             0x04                          bad magic: not raftlb
//! client → server  Proof      0x00 | proof_c[32]                                         (33 bytes)
//!              or             0x03 | 0[32]                  proof_s was wrong
//! server → client  Verdict    0x00 (welcome) or 0x03 (proof_c was wrong)
//!
//! transcript = Hello | u64 server id | nonce_s
//! proof_s    = HMAC-SHA256(secret, "raftlb server" | transcript)
//! proof_c    = HMAC-SHA256(secret, "raftlb client" | transcript)
//! ```
//!
//! **Versions.** The client offers the newest version it speaks; a server
//! that speaks it (its [`Versions`] range holds it) answers in it, and the
//! connection speaks it from then on. A server that does not refuses with
//! its own newest version, and a client that speaks that one too dials
//! again offering it ([`TcpTransport`](super::tcp::TcpTransport) does):
//! so a release and the next one, each speaking its predecessor's version,
//! agree on the newest version both speak, whichever side calls. The
//! version is inside the transcript: an attacker cannot make two nodes
//! agree on an older one.
//!
//! Integers are big-endian. `to` = [`ANY_NODE`] (0) accepts whichever node
//! answers (a joining node knows only its peer's address). Each side's
//! nonce makes the other's proof fresh; the labels keep one side's proof
//! from being replayed as the other's. The side that refuses sends its
//! refusal code, then closes.

use super::secret::ClusterSecret;
use hmac::{Hmac, Mac};
use raftlb_proto::wire::{MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
use raftlb_proto::NodeId;
use sha2::Sha256;
use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How long the whole handshake may take, on either side.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// A `to` that accepts whichever node answers.
pub const ANY_NODE: NodeId = 0;

/// The protocol versions a node speaks: from `min` to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions {
    /// The oldest.
    pub min: u16,
    /// The newest: what a client offers first.
    pub max: u16,
}

impl Versions {
    /// The versions this build speaks.
    pub const THIS: Versions = Versions {
        min: MIN_PROTOCOL_VERSION,
        max: PROTOCOL_VERSION,
    };

    /// Whether `v` is one of them.
    pub fn speaks(&self, v: u16) -> bool {
        (self.min..=self.max).contains(&v)
    }
}

const MAGIC: [u8; 4] = *b"RLB\0";
const NONCE: usize = 32;
const PROOF: usize = 32;
/// Magic and version: what is read before anything else.
const PREFIX: usize = 6;
const HELLO: usize = PREFIX + 8 + 8 + NONCE;
const CHALLENGE: usize = 1 + 8 + NONCE + PROOF;

const OK: u8 = 0x00;
const REFUSE_VERSION: u8 = 0x01;
const REFUSE_NODE: u8 = 0x02;
const REFUSE_PROOF: u8 = 0x03;
const REFUSE_MAGIC: u8 = 0x04;

/// Why a handshake failed. Nothing was decoded, and the connection must be
/// closed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The peer does not speak raftlb's node protocol at all.
    #[error("not a raftlb node (bad handshake magic)")]
    BadMagic,
    /// The peer does not speak the offered protocol version; the server
    /// says the newest it speaks (a server reports the version offered).
    #[error("protocol version mismatch: the peer speaks protocol version {0} at newest, or was offered it and does not speak it (this node speaks {MIN_PROTOCOL_VERSION} to {PROTOCOL_VERSION})")]
    WrongVersion(u16),
    /// The node at the address is not the one meant.
    #[error("reached node {reached}, not {meant}")]
    WrongNode {
        /// The node that answered.
        reached: NodeId,
        /// The node the client meant to reach.
        meant: NodeId,
    },
    /// A proof did not verify: the two sides hold different secrets.
    #[error("wrong secret: the peer does not hold this cluster's secret")]
    BadProof,
    /// The peer sent a byte the protocol does not allow here.
    #[error("unexpected handshake byte {0:#04x}")]
    Unexpected(u8),
    /// Reading or writing failed (often: the peer closed the connection).
    #[error("handshake I/O: {0}")]
    Io(#[from] io::Error),
    /// The handshake did not finish in time.
    #[error("handshake not finished within {} ms", .0.as_millis())]
    Timeout(Duration),
}

/// Authenticates a fresh connection as node `from`, to node `to` (or
/// [`ANY_NODE`]), offering this build's newest protocol version. Returns
/// the id of the node that answered, proven to hold `secret`.
pub async fn client<S>(
    stream: &mut S,
    secret: &ClusterSecret,
    from: NodeId,
    to: NodeId,
) -> Result<NodeId, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    client_speaking(stream, secret, from, to, PROTOCOL_VERSION).await
}

/// As [`client`], offering protocol `version`: the connection speaks it
/// once the handshake succeeds. A server that does not speak it refuses
/// with [`HandshakeError::WrongVersion`] and the newest it speaks.
pub async fn client_speaking<S>(
    stream: &mut S,
    secret: &ClusterSecret,
    from: NodeId,
    to: NodeId,
    version: u16,
) -> Result<NodeId, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    within(
        HANDSHAKE_TIMEOUT,
        client_steps(stream, secret, from, to, version),
    )
    .await
}

/// Authenticates a fresh connection accepted by node `own_id`, which speaks
/// this build's protocol versions. Returns the id the peer claimed, proven
/// by its knowledge of `secret`, and the version the connection speaks. On
/// failure the peer was sent its refusal code; the caller logs and closes.
pub async fn server<S>(
    stream: &mut S,
    secret: &ClusterSecret,
    own_id: NodeId,
) -> Result<(NodeId, u16), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    server_speaking(stream, secret, own_id, Versions::THIS).await
}

/// As [`server`], for a node that speaks `versions`.
pub async fn server_speaking<S>(
    stream: &mut S,
    secret: &ClusterSecret,
    own_id: NodeId,
    versions: Versions,
) -> Result<(NodeId, u16), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    within(
        HANDSHAKE_TIMEOUT,
        server_steps(stream, secret, own_id, versions),
    )
    .await
}

async fn within<T>(
    limit: Duration,
    steps: impl std::future::Future<Output = Result<T, HandshakeError>>,
) -> Result<T, HandshakeError> {
    tokio::time::timeout(limit, steps)
        .await
        .unwrap_or(Err(HandshakeError::Timeout(limit)))
}

/// The Hello message, offering protocol `version`.
fn hello(version: u16, from: NodeId, to: NodeId, nonce: &[u8; NONCE]) -> [u8; HELLO] {
    let mut h = [0u8; HELLO];
    h[..4].copy_from_slice(&MAGIC);
    h[4..6].copy_from_slice(&version.to_be_bytes());
    h[6..14].copy_from_slice(&from.to_be_bytes());
    h[14..22].copy_from_slice(&to.to_be_bytes());
    h[22..].copy_from_slice(nonce);
    h
}

fn u64_at(bytes: &[u8], at: usize) -> NodeId {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_be_bytes(b)
}

/// The MAC over the transcript, under one side's label.
fn mac(
    secret: &ClusterSecret,
    label: &[u8],
    hello: &[u8; HELLO],
    server_id: NodeId,
    nonce_s: &[u8],
) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    m.update(label);
    m.update(hello);
    m.update(&server_id.to_be_bytes());
    m.update(nonce_s);
    m
}

const SERVER_LABEL: &[u8] = b"raftlb server";
const CLIENT_LABEL: &[u8] = b"raftlb client";

async fn client_steps<S>(
    stream: &mut S,
    secret: &ClusterSecret,
    from: NodeId,
    to: NodeId,
    version: u16,
) -> Result<NodeId, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let hello = hello(version, from, to, &rand::random());
    stream.write_all(&hello).await?;
    stream.flush().await?;

    let mut challenge = [0u8; CHALLENGE];
    stream.read_exact(&mut challenge[..1]).await?;
    match challenge[0] {
        OK => {}
        REFUSE_VERSION => {
            let mut v = [0u8; 2];
            stream.read_exact(&mut v).await?;
            return Err(HandshakeError::WrongVersion(u16::from_be_bytes(v)));
        }
        REFUSE_NODE => {
            let mut id = [0u8; 8];
            stream.read_exact(&mut id).await?;
            return Err(HandshakeError::WrongNode {
                reached: u64::from_be_bytes(id),
                meant: to,
            });
        }
        REFUSE_MAGIC => return Err(HandshakeError::BadMagic),
        other => return Err(HandshakeError::Unexpected(other)),
    }
    stream.read_exact(&mut challenge[1..]).await?;
    let server_id = u64_at(&challenge, 1);
    let nonce_s = &challenge[9..9 + NONCE];
    let proof_s = &challenge[9 + NONCE..];
    if mac(secret, SERVER_LABEL, &hello, server_id, nonce_s)
        .verify_slice(proof_s)
        .is_err()
    {
        refuse(stream, &[REFUSE_PROOF; 1 + PROOF]).await;
        return Err(HandshakeError::BadProof);
    }
    if to != ANY_NODE && server_id != to {
        // The server checks `to` itself; only a confused one gets here.
        refuse(stream, &[REFUSE_NODE; 1 + PROOF]).await;
        return Err(HandshakeError::WrongNode {
            reached: server_id,
            meant: to,
        });
    }
    let proof_c = mac(secret, CLIENT_LABEL, &hello, server_id, nonce_s)
        .finalize()
        .into_bytes();
    let mut reply = [0u8; 1 + PROOF];
    reply[0] = OK;
    reply[1..].copy_from_slice(&proof_c);
    stream.write_all(&reply).await?;
    stream.flush().await?;

    let mut verdict = [0u8; 1];
    stream.read_exact(&mut verdict).await?;
    match verdict[0] {
        OK => Ok(server_id),
        REFUSE_PROOF => Err(HandshakeError::BadProof),
        other => Err(HandshakeError::Unexpected(other)),
    }
}

async fn server_steps<S>(
    stream: &mut S,
    secret: &ClusterSecret,
    own_id: NodeId,
    versions: Versions,
) -> Result<(NodeId, u16), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Magic and version first: a peer of another version may send a Hello
    // of another size.
    let mut hello = [0u8; HELLO];
    stream.read_exact(&mut hello[..PREFIX]).await?;
    if hello[..4] != MAGIC {
        refuse(stream, &[REFUSE_MAGIC]).await;
        return Err(HandshakeError::BadMagic);
    }
    let version = u16::from_be_bytes([hello[4], hello[5]]);
    if !versions.speaks(version) {
        let v = versions.max.to_be_bytes();
        refuse(stream, &[REFUSE_VERSION, v[0], v[1]]).await;
        return Err(HandshakeError::WrongVersion(version));
    }
    stream.read_exact(&mut hello[PREFIX..]).await?;
    let from = u64_at(&hello, 6);
    let to = u64_at(&hello, 14);
    if to != ANY_NODE && to != own_id {
        let mut refusal = [REFUSE_NODE; 9];
        refusal[1..].copy_from_slice(&own_id.to_be_bytes());
        refuse(stream, &refusal).await;
        return Err(HandshakeError::WrongNode {
            reached: own_id,
            meant: to,
        });
    }

    let nonce_s: [u8; NONCE] = rand::random();
    let proof_s = mac(secret, SERVER_LABEL, &hello, own_id, &nonce_s)
        .finalize()
        .into_bytes();
    let mut challenge = [0u8; CHALLENGE];
    challenge[0] = OK;
    challenge[1..9].copy_from_slice(&own_id.to_be_bytes());
    challenge[9..9 + NONCE].copy_from_slice(&nonce_s);
    challenge[9 + NONCE..].copy_from_slice(&proof_s);
    stream.write_all(&challenge).await?;
    stream.flush().await?;

    let mut reply = [0u8; 1 + PROOF];
    stream.read_exact(&mut reply).await?;
    match reply[0] {
        OK => {}
        REFUSE_PROOF => return Err(HandshakeError::BadProof),
        other => return Err(HandshakeError::Unexpected(other)),
    }
    if mac(secret, CLIENT_LABEL, &hello, own_id, &nonce_s)
        .verify_slice(&reply[1..])
        .is_err()
    {
        refuse(stream, &[REFUSE_PROOF]).await;
        return Err(HandshakeError::BadProof);
    }
    stream.write_all(&[OK]).await?;
    stream.flush().await?;
    Ok((from, version))
}

/// Sends a refusal and closes our side, then reads (and drops) what the
/// peer still sends until it closes too, for a short while: closing with
/// unread bytes would reset the connection, and the peer could lose the
/// refusal before reading it.
async fn refuse<S>(stream: &mut S, refusal: &[u8])
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let linger = async {
        stream.write_all(refusal).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 512];
        let mut left = 64 * 1024;
        while left > 0 {
            match stream.read(&mut sink).await? {
                0 => break,
                n => left -= n.min(left),
            }
        }
        Ok::<_, io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_millis(500), linger).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    fn pair() -> (tokio::io::DuplexStream, tokio::io::DuplexStream) {
        duplex(4096)
    }

    async fn run(
        client_secret: &ClusterSecret,
        server_secret: &ClusterSecret,
        from: NodeId,
        to: NodeId,
        own: NodeId,
    ) -> (
        Result<NodeId, HandshakeError>,
        Result<NodeId, HandshakeError>,
    ) {
        let (mut c, mut s) = pair();
        let (c, s) = tokio::join!(
            client(&mut c, client_secret, from, to),
            server(&mut s, server_secret, own)
        );
        (
            c,
            s.map(|(peer, version)| {
                assert_eq!(version, PROTOCOL_VERSION);
                peer
            }),
        )
    }

    #[test]
    fn the_hello_layout_is_pinned() {
        let h = hello(PROTOCOL_VERSION, 1, 0x0203, &[7; 32]);
        let mut want = vec![b'R', b'L', b'B', 0, 0, 3];
        want.extend([0, 0, 0, 0, 0, 0, 0, 1]);
        want.extend([0, 0, 0, 0, 0, 0, 2, 3]);
        want.extend([7; 32]);
        assert_eq!(h.to_vec(), want);
        assert_eq!(
            PROTOCOL_VERSION, 3,
            "the Hello carries the version: update this test"
        );
    }

    #[tokio::test]
    async fn same_secret_authenticates_both_sides() {
        let s = ClusterSecret::generate();
        let (c, srv) = run(&s, &s, 1, 2, 2).await;
        assert_eq!(c.unwrap(), 2);
        assert_eq!(srv.unwrap(), 1);
        // A joiner that knows only the address reaches whichever node.
        let (c, srv) = run(&s, &s, 9, ANY_NODE, 2).await;
        assert_eq!(c.unwrap(), 2);
        assert_eq!(srv.unwrap(), 9);
    }

    #[tokio::test]
    async fn a_wrong_secret_is_refused_on_both_sides() {
        let (c, srv) = run(
            &ClusterSecret::generate(),
            &ClusterSecret::generate(),
            1,
            2,
            2,
        )
        .await;
        assert!(matches!(c, Err(HandshakeError::BadProof)), "{c:?}");
        assert!(matches!(srv, Err(HandshakeError::BadProof)), "{srv:?}");
        assert!(c.unwrap_err().to_string().contains("wrong secret"));
    }

    #[tokio::test]
    async fn a_forged_client_proof_is_refused() {
        let s = ClusterSecret::generate();
        let (mut c, mut srv) = pair();
        let attacker = async {
            c.write_all(&hello(PROTOCOL_VERSION, 1, 2, &[0; 32]))
                .await
                .unwrap();
            let mut challenge = [0u8; CHALLENGE];
            c.read_exact(&mut challenge).await.unwrap();
            // Replays the server's own proof as its answer.
            let mut reply = [OK; 1 + PROOF];
            reply[1..].copy_from_slice(&challenge[9 + NONCE..]);
            c.write_all(&reply).await.unwrap();
            let mut verdict = [0u8; 1];
            c.read_exact(&mut verdict).await.unwrap();
            verdict[0]
        };
        let (verdict, result) = tokio::join!(attacker, server(&mut srv, &s, 2));
        assert_eq!(verdict, REFUSE_PROOF);
        assert!(
            matches!(result, Err(HandshakeError::BadProof)),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn the_wrong_node_is_refused() {
        let s = ClusterSecret::generate();
        let (c, srv) = run(&s, &s, 1, 3, 2).await;
        let c = c.unwrap_err();
        assert!(
            matches!(
                c,
                HandshakeError::WrongNode {
                    reached: 2,
                    meant: 3
                }
            ),
            "{c:?}"
        );
        assert_eq!(c.to_string(), "reached node 2, not 3");
        assert!(matches!(
            srv,
            Err(HandshakeError::WrongNode {
                reached: 2,
                meant: 3
            })
        ));
    }

    #[tokio::test]
    async fn the_server_speaks_any_version_of_its_range_and_names_its_newest_when_refusing() {
        let s = ClusterSecret::generate();
        let range = Versions { min: 2, max: 4 };
        for offered in 2..=4 {
            let (mut c, mut srv) = pair();
            let (c, srv) = tokio::join!(
                client_speaking(&mut c, &s, 1, 2, offered),
                server_speaking(&mut srv, &s, 2, range)
            );
            assert_eq!(c.unwrap(), 2);
            assert_eq!(srv.unwrap(), (1, offered));
        }
        for offered in [1, 5] {
            let (mut c, mut srv) = pair();
            let (c, srv) = tokio::join!(
                client_speaking(&mut c, &s, 1, 2, offered),
                server_speaking(&mut srv, &s, 2, range)
            );
            assert!(matches!(c, Err(HandshakeError::WrongVersion(4))), "{c:?}");
            assert!(
                matches!(srv, Err(HandshakeError::WrongVersion(v)) if v == offered),
                "{srv:?}"
            );
        }
    }

    #[tokio::test]
    async fn another_version_or_protocol_is_refused() {
        let s = ClusterSecret::generate();
        let (mut c, mut srv) = pair();
        let mut h = hello(PROTOCOL_VERSION, 1, 2, &[0; 32]);
        h[5] = 9;
        let peer = async move {
            c.write_all(&h).await.unwrap();
            let mut answer = Vec::new();
            c.read_to_end(&mut answer).await.unwrap();
            answer
        };
        let (answer, result) = tokio::join!(peer, server(&mut srv, &s, 2));
        assert_eq!(answer, [REFUSE_VERSION, 0, 3]);
        assert!(
            matches!(result, Err(HandshakeError::WrongVersion(9))),
            "{result:?}"
        );

        let (mut c, mut srv) = pair();
        let peer = async move {
            c.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
            let mut answer = Vec::new();
            c.read_to_end(&mut answer).await.unwrap();
            answer
        };
        let (answer, result) = tokio::join!(peer, server(&mut srv, &s, 2));
        assert_eq!(answer, [REFUSE_MAGIC]);
        assert!(
            matches!(result, Err(HandshakeError::BadMagic)),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn a_client_learns_the_servers_version() {
        let s = ClusterSecret::generate();
        let (mut c, mut srv) = pair();
        let other_server = async {
            let mut h = [0u8; HELLO];
            srv.read_exact(&mut h).await.unwrap();
            srv.write_all(&[REFUSE_VERSION, 0, 7]).await.unwrap();
        };
        let (result, ()) = tokio::join!(client(&mut c, &s, 1, 2), other_server);
        assert!(
            matches!(result, Err(HandshakeError::WrongVersion(7))),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn a_silent_peer_times_out() {
        let s = ClusterSecret::generate();
        let limit = Duration::from_millis(100);
        let (_c, mut srv) = pair();
        let r = within(limit, server_steps(&mut srv, &s, 2, Versions::THIS)).await;
        assert!(
            matches!(r, Err(HandshakeError::Timeout(l)) if l == limit),
            "{r:?}"
        );
        let (mut c, _srv) = pair();
        let r = within(limit, client_steps(&mut c, &s, 1, 2, PROTOCOL_VERSION)).await;
        assert!(matches!(r, Err(HandshakeError::Timeout(_))), "{r:?}");
        assert!(r.unwrap_err().to_string().contains("100 ms"));
    }

    /// Random bytes from the network are an error, never a panic.
    #[tokio::test]
    async fn random_bytes_never_panic() {
        let s = ClusterSecret::generate();
        for i in 0..300usize {
            let len = i % (HELLO + CHALLENGE + 10);
            let mut junk: Vec<u8> = (0..len).map(|_| rand::random()).collect();
            if i % 2 == 0 && len >= PREFIX {
                // Get past the magic and version checks.
                junk[..PREFIX].copy_from_slice(&hello(PROTOCOL_VERSION, 0, 0, &[0; 32])[..PREFIX]);
            }
            let (mut c, mut srv) = pair();
            c.write_all(&junk).await.unwrap();
            drop(c);
            assert!(server(&mut srv, &s, 2).await.is_err());

            if i % 3 == 0 && len > 0 {
                junk[0] = OK;
            }
            let (mut c, mut srv) = pair();
            let other = async move {
                let mut h = [0u8; HELLO];
                srv.read_exact(&mut h).await.unwrap();
                srv.write_all(&junk).await.unwrap();
                // Drops `srv`: the client reads the end of the stream.
            };
            let (result, ()) = tokio::join!(client(&mut c, &s, 1, 2), other);
            assert!(result.is_err());
        }
    }
}
