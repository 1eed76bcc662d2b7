//! `[log] target = "syslog"`: each log line one RFC 5424 message, to a unix
//! datagram socket (`/dev/log`, as HAProxy's `log /dev/log local0`) or over
//! UDP. The severity comes from the event's level; a line the socket
//! refuses (no syslog daemon yet, a full queue: the socket never blocks the
//! node) goes to stderr instead, so nothing is lost silently.

use std::io::Write;
use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// Where the messages go.
#[derive(Debug)]
enum Sink {
    Unix(UnixDatagram, PathBuf),
    Udp(UdpSocket),
}

/// The syslog writer: one message per event.
#[derive(Debug)]
pub struct Syslog {
    sink: Sink,
    facility: u8,
    hostname: String,
    app: String,
    pid: u32,
}

impl Syslog {
    /// A writer to `address` (a socket path, or `HOST:PORT` for UDP), with
    /// `facility`'s code and `app` as APP-NAME.
    pub fn open(address: &str, facility: u8, app: &str) -> std::io::Result<Syslog> {
        // Never blocking: a syslog that does not keep up (a full queue)
        // must not stop the node; its lines go to stderr then.
        let sink = if address.starts_with('/') {
            let s = UnixDatagram::unbound()?;
            s.set_nonblocking(true)?;
            Sink::Unix(s, PathBuf::from(address))
        } else {
            let to: std::net::SocketAddr = address.parse().map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("{address:?}: neither a socket path nor HOST:PORT ({e})"),
                )
            })?;
            let bind = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
            let s = UdpSocket::bind(bind)?;
            s.set_nonblocking(true)?;
            s.connect(to)?;
            Sink::Udp(s)
        };
        Ok(Syslog {
            sink,
            facility,
            hostname: hostname(),
            app: app.to_string(),
            pid: std::process::id(),
        })
    }

    /// The message of one line: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID
    /// MSGID STRUCTURED-DATA MSG` (RFC 5424 §6), no MSGID or data.
    fn message(&self, severity: u8, line: &[u8]) -> Vec<u8> {
        let pri = u32::from(self.facility) * 8 + u32::from(severity);
        let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let mut m = format!(
            "<{pri}>1 {ts} {} {} {} - - ",
            self.hostname, self.app, self.pid
        )
        .into_bytes();
        m.extend_from_slice(line.strip_suffix(b"\n").unwrap_or(line));
        m
    }

    fn line(&self, severity: u8) -> Line<'_> {
        Line {
            to: self,
            severity,
            buf: Vec::new(),
        }
    }

    fn send(&self, message: &[u8]) -> std::io::Result<()> {
        match &self.sink {
            Sink::Unix(s, path) => s.send_to(message, path).map(drop),
            Sink::Udp(s) => s.send(message).map(drop),
        }
    }
}

/// The RFC 5424 severity of a tracing level.
fn severity(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// This machine's name, as syslog's HOSTNAME (`-` if it has none).
fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    match name.trim() {
        "" => "-".to_string(),
        n => n.to_string(),
    }
}

/// One event's line, sent as one message when the formatter is done.
pub struct Line<'a> {
    to: &'a Syslog,
    severity: u8,
    buf: Vec<u8>,
}

impl Write for Line<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line<'_> {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let m = self.to.message(self.severity, &self.buf);
        if self.to.send(&m).is_err() {
            let _ = std::io::stderr().write_all(&self.buf);
        }
    }
}

impl<'a> MakeWriter<'a> for Syslog {
    type Writer = Line<'a>;

    /// A line of no known level: `info`.
    fn make_writer(&'a self) -> Line<'a> {
        self.line(6)
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line<'a> {
        self.line(severity(meta.level()))
    }
}
