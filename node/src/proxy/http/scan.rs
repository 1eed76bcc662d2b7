//! A second look at the client's bytes, below hyper: hyper follows RFC 9112
//! §6.3 and silently drops `Content-Length` when `Transfer-Encoding` is also
//! present, so the proxy never sees that a request carried both. HAProxy
//! refuses such requests (request smuggling), and so does raftlb: this
//! scanner follows the message framing on the client connection as hyper
//! reads it, and records one verdict per request head, in order; the
//! request handler takes them in the same order.
//!
//! The scanner only observes. When it cannot follow the framing (a head too
//! large, a chunk-size line over 1 KiB, a malformed chunk), it stops and
//! says it [`lost`](Scanner::lost) track: the requests after that point
//! would go unchecked, so the connection ends with the current request,
//! and one that finds no verdict is refused (400) before any server sees
//! it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A head larger than this is hyper's to refuse (431); the scanner stops.
const MAX_HEAD: usize = 64 * 1024;

/// What the scanner saw in one request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing wrong.
    Clean,
    /// Both `Content-Length` and `Transfer-Encoding`.
    BothLengths,
}

#[derive(Debug)]
enum State {
    /// Reading a head (bytes so far).
    Head(Vec<u8>),
    /// Skipping this many body bytes.
    Body(u64),
    /// Reading a chunk-size line.
    ChunkSize(Vec<u8>),
    /// Skipping a chunk's data, then its CRLF.
    ChunkData(u64),
    /// Reading trailer lines until an empty one.
    Trailers(Vec<u8>),
    /// Lost track: no more verdicts.
    Stopped,
}

/// What the scanner saw of one request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// The verdict.
    pub verdict: Verdict,
    /// From its first byte to its last (HAProxy's `TR`).
    pub receive: Duration,
}

/// The verdicts, shared between the reading side and the handler.
#[derive(Debug, Clone, Default)]
pub struct Verdicts(Arc<Mutex<VecDeque<Seen>>>);

impl Verdicts {
    /// What the scanner saw of the next request head, if it could follow.
    pub fn next(&self) -> Option<Seen> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).pop_front()
    }
}

/// Follows the framing of the requests on one connection.
#[derive(Debug)]
pub struct Scanner {
    state: State,
    out: Verdicts,
    /// When the head being read began.
    head_start: Option<Instant>,
}

impl Scanner {
    /// A scanner at the start of a connection, and where its verdicts go.
    pub fn new() -> (Scanner, Verdicts) {
        let out = Verdicts::default();
        (
            Scanner {
                state: State::Head(Vec::new()),
                out: out.clone(),
                head_start: None,
            },
            out,
        )
    }

    /// Whether the connection is between requests or inside a request head
    /// (`Some(when the head's first byte came)`, or `Some(None)` before
    /// it); `None` while a body is read or once the scanner stopped.
    pub fn head_phase(&self) -> Option<Option<Instant>> {
        match self.state {
            State::Head(_) => Some(self.head_start),
            _ => None,
        }
    }

    /// Whether the scanner lost track of the framing (for good).
    pub fn lost(&self) -> bool {
        matches!(self.state, State::Stopped)
    }

    /// Looks at the next bytes the client sent.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let state = std::mem::replace(&mut self.state, State::Stopped);
            self.state = match state {
                State::Stopped => return,
                // The common case, a whole head in one read: no copy.
                State::Head(buf)
                    if buf.is_empty() && !data.starts_with(b"\r\n") && !data.starts_with(b"\n") =>
                {
                    match find_head_end(data) {
                        Some(end) => {
                            let next = self.head(&data[..end]);
                            data = &data[end..];
                            next
                        }
                        None => {
                            let mut buf = buf;
                            take_head(&mut buf, &mut data);
                            State::Head(buf)
                        }
                    }
                }
                State::Head(mut buf) => match take_head(&mut buf, &mut data) {
                    None if buf.len() > MAX_HEAD => State::Stopped,
                    None => State::Head(buf),
                    Some(head) => self.head(&head),
                },
                State::Body(n) => {
                    let k = (n as usize).min(data.len());
                    data = &data[k..];
                    match n - k as u64 {
                        0 => State::Head(Vec::new()),
                        left => State::Body(left),
                    }
                }
                State::ChunkSize(mut buf) => match take_line(&mut buf, &mut data) {
                    None if buf.len() > 1024 => State::Stopped,
                    None => State::ChunkSize(buf),
                    Some(line) => match chunk_size(&line) {
                        None => State::Stopped,
                        Some(0) => State::Trailers(Vec::new()),
                        // The data, then its CRLF.
                        Some(n) => State::ChunkData(n + 2),
                    },
                },
                State::ChunkData(n) => {
                    let k = (n as usize).min(data.len());
                    data = &data[k..];
                    match n - k as u64 {
                        0 => State::ChunkSize(Vec::new()),
                        left => State::ChunkData(left),
                    }
                }
                State::Trailers(mut buf) => match take_line(&mut buf, &mut data) {
                    None if buf.len() > MAX_HEAD => State::Stopped,
                    None => State::Trailers(buf),
                    Some(line) if line.is_empty() => State::Head(Vec::new()),
                    Some(_) => State::Trailers(Vec::new()),
                },
            };
        }
        // A head begun but not whole: its time starts now. (A head whole in
        // one read took no time to receive, and costs no clock reading.)
        if matches!(&self.state, State::Head(b) if !b.is_empty()) && self.head_start.is_none() {
            self.head_start = Some(Instant::now());
        }
    }

    /// Judges a complete head and says what follows it. Only the header
    /// names matter here: hyper parses the same bytes and refuses a
    /// malformed head itself (then closes the connection), so a plain look
    /// at each line's name agrees with it on every head it accepts.
    fn head(&mut self, head: &[u8]) -> State {
        let (mut cl, mut te_chunked, mut has_te, mut has_cl) = (None, false, false, false);
        // The request line first, then a header per line to the empty one.
        for line in head.split(|&b| b == b'\n').skip(1) {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue; // the empty line, or one hyper refuses
            };
            let (name, value) = (&line[..colon], &line[colon + 1..]);
            if name.eq_ignore_ascii_case(b"content-length") {
                has_cl = true;
                cl = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok());
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                has_te = true;
                te_chunked = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.rsplit(',').next())
                    .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
            }
        }
        let verdict = if has_cl && has_te {
            Verdict::BothLengths
        } else {
            Verdict::Clean
        };
        let receive = self
            .head_start
            .take()
            .map_or(Duration::ZERO, |t| t.elapsed());
        self.out
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(Seen { verdict, receive });
        if has_te {
            // Not chunked at the end: refused anyway (hyper answers 400 and
            // closes the connection).
            return if te_chunked {
                State::ChunkSize(Vec::new())
            } else {
                State::Stopped
            };
        }
        match (has_cl, cl) {
            (false, _) | (true, Some(0)) => State::Head(Vec::new()),
            (true, Some(n)) => State::Body(n),
            (true, None) => State::Stopped,
        }
    }
}

/// Moves bytes from `data` into `buf` up to the end of a line; the line
/// without its end, once complete.
fn take_line(buf: &mut Vec<u8>, data: &mut &[u8]) -> Option<Vec<u8>> {
    match data.iter().position(|b| *b == b'\n') {
        Some(i) => {
            buf.extend_from_slice(&data[..i]);
            *data = &data[i + 1..];
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            Some(std::mem::take(buf))
        }
        None => {
            buf.extend_from_slice(data);
            *data = &[];
            None
        }
    }
}

/// Moves bytes from `data` into `buf` up to the end of a head (an empty
/// line); the whole head, once complete.
fn take_head(buf: &mut Vec<u8>, data: &mut &[u8]) -> Option<Vec<u8>> {
    for (i, b) in data.iter().enumerate() {
        buf.push(*b);
        // Leading empty lines before a request line are ignored (RFC 9112 §2.2).
        if buf == b"\r\n" || buf == b"\n" {
            buf.clear();
            continue;
        }
        if buf.ends_with(b"\n\r\n") || buf.ends_with(b"\n\n") {
            *data = &data[i + 1..];
            return Some(std::mem::take(buf));
        }
    }
    *data = &[];
    None
}

/// Where the head at the start of `data` ends (after its empty line): at
/// the first line end followed by an empty line, CRLF or bare LF, as
/// httparse (and so hyper) reads it.
fn find_head_end(data: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = data[from..].iter().position(|&b| b == b'\n') {
        let at = from + i;
        match (data.get(at + 1), data.get(at + 2)) {
            (Some(b'\n'), _) => return Some(at + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(at + 3),
            _ => from = at + 1,
        }
    }
    None
}

/// A chunk-size line's size (hex, extensions ignored).
fn chunk_size(line: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(line).ok()?;
    let size = text.split(';').next()?.trim();
    if size.is_empty() || size.len() > 16 {
        return None;
    }
    u64::from_str_radix(size, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdicts(stream: &[u8], step: usize) -> Vec<Verdict> {
        let (mut s, out) = Scanner::new();
        for part in stream.chunks(step) {
            s.feed(part);
        }
        std::iter::from_fn(|| out.next().map(|s| s.verdict)).collect()
    }

    #[test]
    fn pipelined_requests_of_every_framing_each_get_a_verdict_in_order() {
        let stream = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\
POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\nX-T: 1\r\n\r\n\
POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
GET /d HTTP/1.1\r\nHost: x\r\n\r\n";
        let want = [
            Verdict::Clean,
            Verdict::Clean,
            Verdict::Clean,
            Verdict::BothLengths,
            Verdict::Clean,
        ];
        // Whatever the read sizes.
        for step in [1, 2, 3, 7, 64, stream.len()] {
            assert_eq!(verdicts(stream, step), want, "step {step}");
        }
    }

    #[test]
    fn a_body_that_looks_like_a_head_is_skipped() {
        let body = "GET /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let stream = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}GET /y HTTP/1.1\r\n\r\n",
            body.len()
        );
        assert_eq!(
            verdicts(stream.as_bytes(), 5),
            [Verdict::Clean, Verdict::Clean]
        );
    }

    #[test]
    fn a_head_ends_where_httparse_ends_it() {
        // CRLF, bare LF, and a bare LF line followed by a CRLF empty line:
        // the body after each is skipped, not read as a head.
        let body = "GET /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        for (eol, end) in [("\r\n", "\r\n"), ("\n", "\n"), ("\n", "\r\n")] {
            let stream = format!(
                "POST / HTTP/1.1{eol}Content-Length: {}{eol}{end}{body}GET /y HTTP/1.1\r\n\r\n",
                body.len()
            );
            for step in [1, 3, stream.len()] {
                assert_eq!(
                    verdicts(stream.as_bytes(), step),
                    [Verdict::Clean, Verdict::Clean],
                    "{eol:?} {end:?} step {step}"
                );
            }
        }
    }

    #[test]
    fn a_chunk_size_line_over_1_kib_in_pieces_is_lost_track_of() {
        let (mut s, out) = Scanner::new();
        s.feed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;e=");
        assert!(!s.lost());
        s.feed(&[b'e'; 1100]);
        assert!(s.lost());
        s.feed(b"\r\nhello\r\n0\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(out.next().map(|s| s.verdict), Some(Verdict::Clean));
        assert_eq!(out.next(), None, "no verdict after losing track");
    }

    #[test]
    fn a_malformed_chunk_stops_the_scanner() {
        let stream = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\
GET /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(verdicts(stream, 4), [Verdict::Clean]);
    }
}
