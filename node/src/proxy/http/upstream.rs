//! The client side of an upstream connection: HTTP/1.1 written and read
//! here, in the task that serves the client's request. hyper's client runs
//! each connection in a task of its own and hands requests and responses
//! over channels: two task wake-ups and a channel push per request, which
//! the profile of `bench/l7` put at the largest share of what raftlb spent
//! above HAProxy per keep-alive request. Here a request is one `send` of
//! its head (and first body bytes), and the response is parsed where it is
//! read. The server side (the client's connection) stays hyper's.
//!
//! Response framing follows RFC 9112 §6.3: no body after HEAD, 1xx, 204 and
//! 304; chunked when the last transfer coding is chunked, else read to the
//! close; otherwise Content-Length (every value the same), else to the
//! close. A connection is reused only after a response read to its end,
//! with keep-alive and nothing more in the buffer.

use super::ReqBody;
use bytes::{Buf, Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, StatusCode, Version};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The longest response head taken (HAProxy's whole buffer is 16 kB).
pub const MAX_HEAD: usize = 64 * 1024;
/// The most header lines in a response head.
const MAX_HEADERS: usize = 128;
/// The longest chunk-size or trailer line.
const MAX_LINE: usize = 4096;
/// The most trailer bytes read (and dropped) after a chunked body.
const MAX_TRAILERS: usize = 64 * 1024;
/// What one read asks the kernel for.
const READ_CHUNK: usize = 16 * 1024;
/// Request body bytes sent with the head, in the same `send`.
const WITH_HEAD: usize = 16 * 1024;

/// One connection to a server.
pub struct Conn {
    io: TcpStream,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
}

/// Why an exchange failed.
#[derive(Debug)]
pub enum Failure {
    /// Not a byte of the request was sent (it may go again, elsewhere).
    NotSent(io::Error),
    /// The client's body broke off.
    Client(String),
    /// The server's answer is missing, malformed or cut short.
    Server(String),
}

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// This many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Whatever comes until the server closes.
    Close,
}

/// A response head.
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub framing: Framing,
    /// Whether the connection may carry another request after this body.
    pub keep_alive: bool,
}

fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// Parses a response head at the start of `buf` and takes it off: `Ok(None)`
/// when more bytes are needed. Header values share the head's bytes.
pub fn parse_head(buf: &mut BytesMut, method: &Method) -> Result<Option<Head>, String> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut slots);
    let n = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(format!("response head longer than {MAX_HEAD} bytes"))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("malformed response head: {e}")),
    };
    if n > MAX_HEAD {
        return Err(format!("response head longer than {MAX_HEAD} bytes"));
    }
    let status = resp
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or("malformed status code")?;
    let version = match resp.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let start = buf.as_ptr() as usize;
    let mut fields = Vec::with_capacity(resp.headers.len());
    for h in resp.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| format!("bad header name {:?}", h.name))?;
        let at = h.value.as_ptr() as usize - start;
        fields.push((name, at..at + h.value.len()));
    }
    let bytes = buf.split_to(n).freeze();
    let mut headers = HeaderMap::with_capacity(fields.len());
    for (name, range) in fields {
        let value = HeaderValue::from_maybe_shared(bytes.slice(range))
            .map_err(|_| format!("bad value in header {name}"))?;
        headers.append(name, value);
    }
    let te = headers.contains_key(header::TRANSFER_ENCODING);
    let framing = if *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || (*method == Method::CONNECT && status.is_success())
    {
        Framing::Empty
    } else if te {
        let last = headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .next_back()
            .and_then(|v| v.as_bytes().rsplit(|b| *b == b',').next())
            .map(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        if last == Some(true) {
            Framing::Chunked
        } else {
            Framing::Close
        }
    } else if headers.contains_key(header::CONTENT_LENGTH) {
        let mut length = None;
        for v in headers.get_all(header::CONTENT_LENGTH) {
            for t in v.as_bytes().split(|b| *b == b',') {
                let t = t.trim_ascii();
                let n = (!t.is_empty() && t.iter().all(u8::is_ascii_digit) && t.len() <= 19)
                    .then(|| std::str::from_utf8(t).ok()?.parse::<u64>().ok())
                    .flatten()
                    .ok_or("invalid Content-Length")?;
                if length.is_some_and(|l| l != n) {
                    return Err("differing Content-Lengths".into());
                }
                length = Some(n);
            }
        }
        match length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => return Err("invalid Content-Length".into()),
        }
    } else {
        Framing::Close
    };
    let keep_alive = framing != Framing::Close
        // Both lengths: the framing is in doubt; never reuse.
        && !(te && headers.contains_key(header::CONTENT_LENGTH))
        && match version {
            Version::HTTP_10 => has_token(&headers, &header::CONNECTION, "keep-alive"),
            _ => !has_token(&headers, &header::CONNECTION, "close"),
        };
    Ok(Some(Head {
        status,
        version,
        headers,
        framing,
        keep_alive,
    }))
}

/// Where a body's decoding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decode {
    /// This many bytes are left.
    Length(u64),
    /// Chunked: at a chunk-size line.
    ChunkSize,
    /// Chunked: this many bytes of the chunk are left.
    ChunkData(u64),
    /// Chunked: at the CRLF after a chunk's data.
    ChunkEnd,
    /// Chunked: in the trailers; this many bytes read so far.
    Trailers(usize),
    /// Until the server closes.
    Close,
    /// The body is over.
    Done,
}

/// One step of decoding.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Body bytes.
    Data(Bytes),
    /// More bytes are needed.
    More,
    /// The body is over.
    Done,
}

impl Decode {
    /// The decoding of a body framed so.
    pub fn new(framing: Framing) -> Decode {
        match framing {
            Framing::Empty | Framing::Length(0) => Decode::Done,
            Framing::Length(n) => Decode::Length(n),
            Framing::Chunked => Decode::ChunkSize,
            Framing::Close => Decode::Close,
        }
    }

    /// Takes what it can from `buf`.
    pub fn step(&mut self, buf: &mut BytesMut) -> Result<Step, String> {
        loop {
            match *self {
                Decode::Done => return Ok(Step::Done),
                Decode::Length(n) | Decode::ChunkData(n) => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    let take = buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
                    let left = n - take as u64;
                    *self = match (*self, left) {
                        (Decode::Length(_), 0) => Decode::Done,
                        (Decode::Length(_), l) => Decode::Length(l),
                        (_, 0) => Decode::ChunkEnd,
                        (_, l) => Decode::ChunkData(l),
                    };
                    return Ok(Step::Data(buf.split_to(take).freeze()));
                }
                Decode::Close => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    return Ok(Step::Data(buf.split().freeze()));
                }
                Decode::ChunkSize => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(Step::More);
                    };
                    let size = line[..].split(|b| *b == b';').next().unwrap_or_default();
                    let size = size.trim_ascii_end();
                    if size.is_empty() || size.len() > 16 || !size.iter().all(u8::is_ascii_hexdigit)
                    {
                        return Err("malformed chunk size".into());
                    }
                    let n = size.iter().fold(0u64, |n, d| {
                        n << 4 | u64::from((*d as char).to_digit(16).unwrap_or(0))
                    });
                    *self = if n == 0 {
                        Decode::Trailers(0)
                    } else {
                        Decode::ChunkData(n)
                    };
                }
                Decode::ChunkEnd => match buf.first() {
                    None => return Ok(Step::More),
                    Some(b'\n') => {
                        buf.advance(1);
                        *self = Decode::ChunkSize;
                    }
                    Some(b'\r') => match buf.get(1) {
                        None => return Ok(Step::More),
                        Some(b'\n') => {
                            buf.advance(2);
                            *self = Decode::ChunkSize;
                        }
                        Some(_) => return Err("no CRLF after a chunk".into()),
                    },
                    Some(_) => return Err("no CRLF after a chunk".into()),
                },
                Decode::Trailers(seen) => {
                    let before = buf.len();
                    let Some(line) = take_line(buf)? else {
                        return Ok(Step::More);
                    };
                    let seen = seen + (before - buf.len());
                    if seen > MAX_TRAILERS {
                        return Err("trailers too long".into());
                    }
                    // The trailers are dropped (as hop-by-hop framing).
                    *self = if line.is_empty() {
                        Decode::Done
                    } else {
                        Decode::Trailers(seen)
                    };
                }
            }
        }
    }
}

/// Takes one line off `buf` (without its LF or CRLF), if it is all there.
fn take_line(buf: &mut BytesMut) -> Result<Option<BytesMut>, String> {
    let Some(lf) = buf.iter().take(MAX_LINE + 1).position(|b| *b == b'\n') else {
        return if buf.len() > MAX_LINE {
            Err("chunk line too long".into())
        } else {
            Ok(None)
        };
    };
    let mut line = buf.split_to(lf + 1);
    line.truncate(lf);
    if line.last() == Some(&b'\r') {
        line.truncate(lf - 1);
    }
    Ok(Some(line))
}

impl Conn {
    /// A new connection over `io`.
    pub fn new(io: TcpStream) -> Conn {
        Conn {
            io,
            rbuf: BytesMut::new(),
            wbuf: Vec::new(),
        }
    }

    /// Whether an idle connection still looks usable: the server has not
    /// closed it, nor sent anything unasked. The socket is read only if the
    /// poller saw it turn readable since the last read (no system call for
    /// a quiet connection).
    pub fn is_open(&self) -> bool {
        if !self.rbuf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self.io.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                let mut byte = [0u8; 1];
                matches!(self.io.try_read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
            self.rbuf.reserve(READ_CHUNK);
        }
        // Through `AsyncRead`: a read that does not fill the buffer tells the
        // poller the socket is drained, so the next look needs no read.
        let read = tokio::io::AsyncReadExt::read_buf(&mut self.io, &mut self.rbuf);
        std::future::Future::poll(std::pin::pin!(read), cx)
    }

    async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }

    /// Sends the request: its head and, in the same `send`, the start of
    /// its body; then the rest of the body as it comes.
    pub async fn send(
        &mut self,
        parts: &hyper::http::request::Parts,
        body: &mut ReqBody,
    ) -> Result<(), Failure> {
        let w = &mut self.wbuf;
        w.clear();
        w.extend_from_slice(parts.method.as_str().as_bytes());
        w.push(b' ');
        match parts.uri.authority() {
            Some(a) if parts.method == Method::CONNECT => {
                w.extend_from_slice(a.as_str().as_bytes())
            }
            _ => w.extend_from_slice(
                parts
                    .uri
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .as_bytes(),
            ),
        }
        w.extend_from_slice(b" HTTP/1.1\r\n");
        for (name, value) in &parts.headers {
            w.extend_from_slice(name.as_str().as_bytes());
            w.extend_from_slice(b": ");
            w.extend_from_slice(value.as_bytes());
            w.extend_from_slice(b"\r\n");
        }
        let has_body = !body.is_end_stream();
        let chunked = has_body && !parts.headers.contains_key(header::CONTENT_LENGTH);
        if chunked {
            w.extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        w.extend_from_slice(b"\r\n");
        // The body read before a server was chosen goes with the head.
        let first = match body.first_data() {
            Some(d) if d.len() <= WITH_HEAD => {
                put_data(w, d, chunked);
                true
            }
            _ => false,
        };
        // Nothing sent yet: a failure here leaves the request whole.
        let mut sent = 0;
        while sent < self.wbuf.len() {
            match self.io.write(&self.wbuf[sent..]).await {
                Ok(0) => {
                    let e = io::Error::from(io::ErrorKind::WriteZero);
                    return Err(if sent == 0 {
                        Failure::NotSent(e)
                    } else {
                        Failure::Server(e.to_string())
                    });
                }
                Ok(n) => sent += n,
                Err(e) if sent == 0 => return Err(Failure::NotSent(e)),
                Err(e) => return Err(Failure::Server(format!("cannot send the request: {e}"))),
            }
        }
        if first {
            body.skip_first();
        }
        if !has_body {
            return Ok(());
        }
        let lost = |e: io::Error| Failure::Server(format!("cannot send the request body: {e}"));
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await
        {
            let frame = frame.map_err(|e| Failure::Client(e.to_string()))?;
            if let Ok(data) = frame.into_data() {
                if data.is_empty() {
                    continue;
                }
                self.wbuf.clear();
                if chunked {
                    put_data(&mut self.wbuf, &data, true);
                    self.io.write_all(&self.wbuf).await.map_err(lost)?;
                } else {
                    self.io.write_all(&data).await.map_err(lost)?;
                }
            }
        }
        if chunked {
            self.io.write_all(b"0\r\n\r\n").await.map_err(lost)?;
        }
        Ok(())
    }

    /// Reads the response head (after any interim 1xx but 101).
    pub async fn read_head(&mut self, method: &Method) -> Result<Head, Failure> {
        loop {
            if let Some(head) = parse_head(&mut self.rbuf, method).map_err(Failure::Server)? {
                if head.status.is_informational() && head.status != StatusCode::SWITCHING_PROTOCOLS
                {
                    continue;
                }
                return Ok(head);
            }
            match self.fill().await {
                Ok(0) if self.rbuf.is_empty() => {
                    return Err(Failure::Server(
                        "the server closed the connection without a response".into(),
                    ))
                }
                Ok(0) => {
                    return Err(Failure::Server(
                        "the server closed the connection in the middle of the response head"
                            .into(),
                    ))
                }
                Ok(_) => {}
                Err(e) => return Err(Failure::Server(format!("cannot read the response: {e}"))),
            }
        }
    }

    /// The socket and the bytes the server sent after the head (a tunnel).
    pub fn into_parts(self) -> (TcpStream, BytesMut) {
        (self.io, self.rbuf)
    }
}

/// Appends body bytes, as a chunk if `chunked`.
fn put_data(w: &mut Vec<u8>, data: &[u8], chunked: bool) {
    if chunked {
        w.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        w.extend_from_slice(data);
        w.extend_from_slice(b"\r\n");
    } else {
        w.extend_from_slice(data);
    }
}

/// A response body read off its connection.
pub struct UpstreamBody {
    conn: Option<Conn>,
    decode: Decode,
    keep_alive: bool,
    failed: bool,
}

/// A broken response body.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BodyError(String);

impl UpstreamBody {
    /// The body of a response with head `head`, read from `conn`.
    pub fn new(conn: Conn, head: &Head) -> UpstreamBody {
        UpstreamBody {
            conn: Some(conn),
            decode: Decode::new(head.framing),
            keep_alive: head.keep_alive,
            failed: false,
        }
    }

    /// Whether the body was read to its end.
    pub fn is_done(&self) -> bool {
        self.decode == Decode::Done
    }

    /// The connection, if it may carry another request: the body was read
    /// to its end, with keep-alive, and the server sent nothing more.
    pub fn reusable(&mut self) -> Option<Conn> {
        if !self.is_done() || !self.keep_alive || self.failed {
            return None;
        }
        self.conn.take().filter(|c| c.rbuf.is_empty())
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let me = self.get_mut();
        let Some(conn) = me.conn.as_mut() else {
            return Poll::Ready(None);
        };
        loop {
            match me.decode.step(&mut conn.rbuf) {
                Ok(Step::Data(d)) => return Poll::Ready(Some(Ok(Frame::data(d)))),
                Ok(Step::Done) => return Poll::Ready(None),
                Ok(Step::More) => {}
                Err(e) => {
                    me.failed = true;
                    return Poll::Ready(Some(Err(BodyError(e))));
                }
            }
            match ready!(conn.poll_fill(cx)) {
                Ok(0) if me.decode == Decode::Close => {
                    me.decode = Decode::Done;
                    me.keep_alive = false;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    me.failed = true;
                    return Poll::Ready(Some(Err(BodyError(
                        "the server closed the connection before the end of the body".into(),
                    ))));
                }
                Ok(_) => {}
                Err(e) => {
                    me.failed = true;
                    return Poll::Ready(Some(Err(BodyError(e.to_string()))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        match self.decode {
            Decode::Done => SizeHint::with_exact(0),
            Decode::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests;
