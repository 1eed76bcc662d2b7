//! The httplog line (HAProxy's `option httplog`): what one request records
//! as it goes, and the line it writes at its end.

use crate::proxy::backend::BackendRt;
use crate::proxy::frontend::FrontendRt;
use hyper::body::Incoming;
use hyper::Request;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One httplog line, filled in as the request goes (HAProxy's `option
/// httplog`): `client [accept date] frontend backend/server TR/Tw/Tc/Tr/Ta
/// status bytes - - state "request line"`; -1 for a phase not reached.
pub struct HttpLog {
    /// Whether the line is written: without it, no clock is read either.
    on: bool,
    peer: SocketAddr,
    fe: Arc<FrontendRt>,
    start: Option<Instant>,
    date: std::time::SystemTime,
    /// The request line (only when the log is on: it costs an allocation).
    request: String,
    tr_head: Option<Duration>,
    /// A CONNECT request (known even when the log is off).
    pub(super) connect: bool,
    pub(super) backend: Option<Arc<BackendRt>>,
    /// The server's position in `backend`.
    pub(super) server: Option<usize>,
    pub(super) tw: Option<Duration>,
    pub(super) tc: Option<Duration>,
    pub(super) tr: Option<Duration>,
    pub(super) status: u16,
    pub(super) bytes: u64,
    pub(super) state: (char, char),
}

impl HttpLog {
    pub(super) fn new(
        fe: &Arc<FrontendRt>,
        peer: SocketAddr,
        req: &Request<Incoming>,
        head: Option<Duration>,
    ) -> HttpLog {
        let enabled = tracing::enabled!(target: "raftlb::httplog", tracing::Level::INFO);
        fe.stats.request();
        HttpLog {
            on: enabled,
            peer,
            fe: fe.clone(),
            start: enabled.then(Instant::now),
            date: if enabled {
                std::time::SystemTime::now()
            } else {
                std::time::UNIX_EPOCH
            },
            request: if enabled {
                format!("{} {} {:?}", req.method(), req.uri(), req.version())
            } else {
                String::new()
            },
            tr_head: head,
            connect: req.method() == hyper::Method::CONNECT,
            backend: None,
            server: None,
            tw: None,
            tc: None,
            tr: None,
            status: 0,
            bytes: 0,
            state: ('-', '-'),
        }
    }

    /// Now, when the line is written (a phase's start).
    pub(super) fn clock(&self) -> Option<Instant> {
        self.on.then(Instant::now)
    }

    /// Counts the request as malformed (HAProxy's request errors).
    pub(super) fn malformed(&self) {
        self.fe.stats.request_error();
    }

    /// The request's end: its response counted by status class, and its
    /// line written if the log is on.
    pub(super) fn write(&self) {
        self.fe.stats.response(self.status);
        if !self.on {
            return;
        }
        let ms = |d: Option<Duration>| d.map_or(-1, |d| d.as_millis() as i64);
        let (st, ph) = self.state;
        tracing::info!(
            target: "raftlb::httplog",
            "{} [{}] {} {}/{} {}/{}/{}/{}/{} {} {} - - {st}{ph}-- \"{}\"",
            self.peer,
            log_date(self.date),
            self.fe.cfg.name,
            self.backend.as_ref().map_or("<NOSRV>", |b| b.cfg.name.as_str()),
            self.backend
                .as_ref()
                .zip(self.server)
                .map_or("<NOSRV>", |(b, i)| b.servers[i].cfg.name.as_str()),
            ms(self.tr_head),
            ms(self.tw),
            ms(self.tc),
            ms(self.tr),
            ms(self.start.map(|t| t.elapsed())),
            self.status,
            self.bytes,
            self.request,
        );
    }
}

/// HAProxy's log date, in UTC: `21/Nov/2026:22:15:01.123`.
fn log_date(t: std::time::SystemTime) -> String {
    let ms = t
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{day:02}/{}/{year}:{:02}:{:02}:{:02}.{:03}",
        MONTHS[(month - 1) as usize],
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
        ms_of_day % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_dates_are_haproxys() {
        let at = |ms: u64| std::time::UNIX_EPOCH + Duration::from_millis(ms);
        assert_eq!(log_date(at(0)), "01/Jan/1970:00:00:00.000");
        // 2026-11-21T22:15:01.123Z
        assert_eq!(log_date(at(1_795_299_301_123)), "21/Nov/2026:22:15:01.123");
        // 2024-02-29T23:59:59.999Z, a leap day.
        assert_eq!(log_date(at(1_709_251_199_999)), "29/Feb/2024:23:59:59.999");
    }
}
