//! The response parser and body decoder: the framing rules one by one, then
//! randomized round trips (bodies framed at random, read in random pieces)
//! and random corruption of valid responses (never a panic, never a body
//! longer than what was sent).

use super::*;

fn head(text: &str, method: &Method) -> Result<Option<Head>, String> {
    parse_head(&mut BytesMut::from(text), method)
}

fn framing(text: &str) -> (Framing, bool) {
    let h = head(text, &Method::GET).unwrap().unwrap();
    (h.framing, h.keep_alive)
}

#[test]
fn framing_follows_rfc_9112() {
    use Framing::*;
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"),
        (Length(5), true)
    );
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n"),
        (Length(5), true)
    );
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
        (Empty, true)
    );
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"),
        (Chunked, true)
    );
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n"),
        (Chunked, true)
    );
    // Not chunked last: to the close.
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n"),
        (Close, false)
    );
    // Both: chunked wins, and the connection is not reused.
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n"),
        (Chunked, false)
    );
    assert_eq!(framing("HTTP/1.1 200 OK\r\n\r\n"), (Close, false));
    assert_eq!(
        framing("HTTP/1.1 204 No Content\r\ncontent-length: 7\r\n\r\n"),
        (Empty, true)
    );
    assert_eq!(framing("HTTP/1.1 304 Not Modified\r\n\r\n"), (Empty, true));
    assert_eq!(framing("HTTP/1.1 100 Continue\r\n\r\n"), (Empty, true));
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\n"),
        (Length(1), false)
    );
    assert_eq!(
        framing("HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n"),
        (Length(1), false)
    );
    assert_eq!(
        framing("HTTP/1.0 200 OK\r\nconnection: Keep-Alive\r\ncontent-length: 1\r\n\r\n"),
        (Length(1), true)
    );
    let h = head(
        "HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n",
        &Method::HEAD,
    )
    .unwrap()
    .unwrap();
    assert_eq!(h.framing, Empty);
    let h = head("HTTP/1.1 200 OK\r\n\r\n", &Method::CONNECT)
        .unwrap()
        .unwrap();
    assert_eq!(h.framing, Empty);
}

#[test]
fn bad_heads_are_errors_and_partial_ones_wait() {
    assert!(head("HTTP/1.1 200 OK\r\ncontent-le", &Method::GET)
        .unwrap()
        .is_none());
    for bad in [
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 0x10\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: \r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTX/1.1 200 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
    ] {
        assert!(head(bad, &Method::GET).is_err(), "{bad:?}");
    }
    let long = format!("HTTP/1.1 200 OK\r\nx: {}\r\n", "a".repeat(MAX_HEAD));
    assert!(head(&long, &Method::GET).is_err());
}

/// Decodes `wire` fed in pieces of the given sizes (cycled); the body and
/// whether it ended.
fn decode(framing: Framing, wire: &[u8], pieces: &[usize]) -> (Result<Vec<u8>, String>, bool) {
    let mut d = Decode::new(framing);
    let mut buf = BytesMut::new();
    let mut body = Vec::new();
    let mut at = 0;
    let mut sizes = pieces.iter().cycle();
    loop {
        match d.step(&mut buf) {
            Err(e) => return (Err(e), false),
            Ok(Step::Data(b)) => {
                assert!(!b.is_empty());
                body.extend_from_slice(&b);
            }
            Ok(Step::Done) => return (Ok(body), true),
            Ok(Step::More) => {
                if at == wire.len() {
                    return (Ok(body), false);
                }
                let n = (*sizes.next().unwrap()).clamp(1, wire.len() - at);
                buf.extend_from_slice(&wire[at..at + n]);
                at += n;
            }
        }
    }
}

#[test]
fn chunked_bodies_decode_in_any_pieces() {
    let wire = b"5;ext=1\r\nhello\r\n1\r\n \r\n6\nworld!\n0\r\nx-trailer: 1\r\n\r\n";
    for piece in 1..wire.len() {
        let (body, done) = decode(Framing::Chunked, wire, &[piece]);
        assert_eq!(body.unwrap(), b"hello world!");
        assert!(done);
    }
    for bad in [
        &b"g\r\n"[..],
        b"5\r\nhelloXX",
        b"\r\n",
        b"11111111111111111\r\n",
    ] {
        assert!(decode(Framing::Chunked, bad, &[3]).0.is_err(), "{bad:?}");
    }
    let (body, done) = decode(Framing::Length(3), b"abcdef", &[2]);
    assert_eq!((body.unwrap(), done), (b"abc".to_vec(), true));
}

/// A small deterministic generator (xorshift), so that a failure repeats.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A valid response with a random body and framing: the wire bytes, the
/// body, and the framing it must be read with.
fn random_response(r: &mut Rng) -> (Vec<u8>, Vec<u8>) {
    let len = match r.below(4) {
        0 => 0,
        1 => r.below(10),
        2 => r.below(300),
        _ => r.below(40_000),
    } as usize;
    let body: Vec<u8> = (0..len).map(|_| r.below(256) as u8).collect();
    let mut wire = b"HTTP/1.1 200 OK\r\nserver: fuzz\r\n".to_vec();
    for i in 0..r.below(5) {
        wire.extend_from_slice(format!("x-h{i}: v{}\r\n", r.next()).as_bytes());
    }
    if r.below(2) == 0 {
        wire.extend_from_slice(format!("content-length: {len}\r\n\r\n").as_bytes());
        wire.extend_from_slice(&body);
    } else {
        wire.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
        let mut at = 0;
        while at < len {
            let n = (1 + r.below(3000) as usize).min(len - at);
            let ext = if r.below(4) == 0 { ";a=b" } else { "" };
            let upper = r.below(2) == 0;
            let size = if upper {
                format!("{n:X}")
            } else {
                format!("{n:x}")
            };
            wire.extend_from_slice(format!("{size}{ext}\r\n").as_bytes());
            wire.extend_from_slice(&body[at..at + n]);
            wire.extend_from_slice(b"\r\n");
            at += n;
        }
        wire.extend_from_slice(b"0\r\n");
        if r.below(3) == 0 {
            wire.extend_from_slice(b"x-checksum: 1\r\n");
        }
        wire.extend_from_slice(b"\r\n");
    }
    (wire, body)
}

/// Parses a head then decodes the body, fed in random pieces.
fn read_response(wire: &[u8], r: &mut Rng) -> Result<(Vec<u8>, bool), String> {
    let mut buf = BytesMut::from(wire);
    let Some(h) = parse_head(&mut buf, &Method::GET)? else {
        return Err("incomplete head".into());
    };
    let pieces: Vec<usize> = (0..8).map(|_| 1 + r.below(5000) as usize).collect();
    let (body, done) = decode(h.framing, &buf, &pieces);
    Ok((body?, done))
}

#[test]
fn random_valid_responses_round_trip() {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3000 {
        let (wire, body) = random_response(&mut r);
        let (got, done) = read_response(&wire, &mut r).unwrap();
        assert!(done);
        assert_eq!(got, body);
    }
}

#[test]
fn corrupted_responses_never_panic_nor_grow() {
    let mut r = Rng(0x2545_f491_4f6c_dd1d);
    for _ in 0..20_000 {
        let (mut wire, _) = random_response(&mut r);
        for _ in 0..1 + r.below(4) {
            let at = r.below(wire.len() as u64) as usize;
            match r.below(3) {
                0 => wire[at] = r.below(256) as u8,
                1 => {
                    wire.remove(at);
                }
                _ => wire.insert(at, b"\r\n0;:x"[r.below(6) as usize]),
            }
        }
        if let Ok((body, _)) = read_response(&wire, &mut r) {
            assert!(body.len() <= wire.len());
        }
    }
}
