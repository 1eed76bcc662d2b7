//! The admin API's HTTP/1.0: reading a request (head, `Content-Length`
//! body, query string), percent-encoding, and writing an answer.

use serde::Serialize;
use std::collections::BTreeMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest request body (a config document).
const MAX_BODY: usize = 4 << 20;

/// A request as the routes see it.
pub(super) struct Req {
    pub(super) method: String,
    pub(super) path: String,
    pub(super) query: BTreeMap<String, String>,
    pub(super) body: String,
}

/// Reads one request: `None` when the client closed first, `Err` for a
/// request the API refuses (400).
pub(super) async fn read_request(
    s: &mut TcpStream,
) -> std::io::Result<Option<Result<Req, &'static str>>> {
    let mut buf = vec![0u8; 8192];
    let mut n = 0;
    let head_end = loop {
        if let Some(i) = buf[..n].windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if n == buf.len() {
            return Ok(Some(Err("request head too large")));
        }
        let m = s.read(&mut buf[n..]).await?;
        if m == 0 {
            return Ok(None);
        }
        n += m;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut parts = lines.next().unwrap_or("").split_ascii_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let mut len = 0usize;
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                let Ok(l) = v.trim().parse::<usize>() else {
                    return Ok(Some(Err("bad Content-Length")));
                };
                len = l;
            }
        }
    }
    if len > MAX_BODY {
        return Ok(Some(Err("body too large")));
    }
    let mut body = buf[head_end..n].to_vec();
    while body.len() < len {
        let mut chunk = vec![0u8; (len - body.len()).min(65536)];
        let m = s.read(&mut chunk).await?;
        if m == 0 {
            return Ok(Some(Err("body shorter than Content-Length")));
        }
        body.extend_from_slice(&chunk[..m]);
    }
    body.truncate(len);
    let Ok(body) = String::from_utf8(body) else {
        return Ok(Some(Err("body is not UTF-8")));
    };
    let (path, qs) = target.split_once('?').unwrap_or((target, ""));
    let query = qs
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (unescape(k), unescape(v))
        })
        .collect();
    Ok(Some(Ok(Req {
        method: method.to_string(),
        path: path.to_string(),
        query,
        body,
    })))
}

/// Undoes percent-encoding (`%2F`) and `+`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(v) => {
                    out.push(v);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes a query value.
pub fn escape(s: &str) -> String {
    s.bytes()
        .map(|c| match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (c as char).to_string()
            }
            c => format!("%{c:02X}"),
        })
        .collect()
}

/// A status code and a body.
pub(super) type Answer = (u16, String);

/// 200 with `v` as pretty JSON.
pub(super) fn json<T: Serialize>(v: &T) -> Answer {
    (
        200,
        serde_json::to_string_pretty(v).unwrap_or_default() + "\n",
    )
}

/// `code` with `msg` as text.
pub(super) fn error(code: u16, msg: impl std::fmt::Display) -> Answer {
    (code, format!("{msg}\n"))
}

/// Writes `answer` as an HTTP/1.0 response and closes.
pub(super) async fn respond(s: &mut TcpStream, (code, body): Answer) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    };
    let ctype = if body.starts_with('{') {
        "application/json"
    } else {
        "text/plain"
    };
    let msg = format!(
        "HTTP/1.0 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(msg.as_bytes()).await?;
    s.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_round_trip() {
        for v in ["web/s1", "a b&c=d", "é%", ""] {
            assert_eq!(unescape(&escape(v)), v);
        }
        assert_eq!(unescape("%zz"), "%zz");
        assert_eq!(unescape("%4"), "%4");
    }
}
