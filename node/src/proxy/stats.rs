//! A frontend's traffic counters, as HAProxy's stats and exporter count
//! them: sessions, bytes, HTTP requests and responses by status class,
//! request errors, denied connections. Each worker thread adds to a slot
//! of its own (one cache line each, see [`crate::workers::slot`]), so the
//! data path never shares a counter between threads; a scrape sums the
//! slots. A frontend keeps its counters across reloads, as its `maxconn`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// One thread's counters, on a cache line of their own.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Slot {
    sessions: AtomicU64,
    ended: AtomicU64,
    denied: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    requests: AtomicU64,
    request_errors: AtomicU64,
    /// Responses by status class: 1xx to 5xx, then any other.
    responses: [AtomicU64; 6],
}

/// A frontend's counters.
#[derive(Debug)]
pub struct FrontendStats {
    slots: Box<[Slot]>,
}

/// What a connection moved, counted when it ends.
#[derive(Debug, Default, Clone, Copy)]
pub struct Traffic {
    /// Bytes read from the client.
    pub bytes_in: u64,
    /// Bytes written to the client.
    pub bytes_out: u64,
}

/// A frontend's counters summed over the threads, at one time.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FrontendTotals {
    /// Connections accepted (denied ones too, as HAProxy's `stot`).
    pub sessions: u64,
    /// Connections being served now.
    pub current: u64,
    /// Connections refused by a `tcp_request_connection` rule.
    pub denied: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// HTTP requests received.
    pub requests: u64,
    /// Requests refused as malformed (400), and connections whose requests
    /// hyper could not parse.
    pub request_errors: u64,
    /// HTTP responses by status class: `1xx` … `5xx`, `other`.
    pub responses: [u64; 6],
}

/// The labels of [`FrontendTotals::responses`], as HAProxy's exporter
/// names them.
pub const CODE_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

impl Default for FrontendStats {
    fn default() -> Self {
        Self::new()
    }
}

impl FrontendStats {
    /// Counters at zero, one slot per thread that serves traffic.
    pub fn new() -> FrontendStats {
        FrontendStats {
            slots: (0..crate::workers::slots())
                .map(|_| Slot::default())
                .collect(),
        }
    }

    /// This thread's slot.
    fn mine(&self) -> &Slot {
        &self.slots[crate::workers::slot() % self.slots.len()]
    }

    /// A connection was accepted.
    pub fn session_started(&self) {
        self.mine().sessions.fetch_add(1, Relaxed);
    }

    /// A connection accepted on this thread ended, having moved `traffic`.
    pub fn session_ended(&self, traffic: Traffic) {
        let s = self.mine();
        s.ended.fetch_add(1, Relaxed);
        s.bytes_in.fetch_add(traffic.bytes_in, Relaxed);
        s.bytes_out.fetch_add(traffic.bytes_out, Relaxed);
    }

    /// A connection was refused by a rule.
    pub fn denied(&self) {
        self.mine().denied.fetch_add(1, Relaxed);
    }

    /// An HTTP request arrived.
    pub fn request(&self) {
        self.mine().requests.fetch_add(1, Relaxed);
    }

    /// A request was malformed.
    pub fn request_error(&self) {
        self.mine().request_errors.fetch_add(1, Relaxed);
    }

    /// A response with `status` went (or began to go) to the client.
    pub fn response(&self, status: u16) {
        let class = match status {
            100..=599 => status as usize / 100 - 1,
            _ => 5,
        };
        self.mine().responses[class].fetch_add(1, Relaxed);
    }

    /// The counters summed over the threads. `current` is what was
    /// accepted and has not ended; a slot read while its thread adds to it
    /// may be a moment old, never torn.
    pub fn totals(&self) -> FrontendTotals {
        let mut t = FrontendTotals::default();
        let mut ended = 0;
        for s in self.slots.iter() {
            t.sessions += s.sessions.load(Relaxed);
            ended += s.ended.load(Relaxed);
            t.denied += s.denied.load(Relaxed);
            t.bytes_in += s.bytes_in.load(Relaxed);
            t.bytes_out += s.bytes_out.load(Relaxed);
            t.requests += s.requests.load(Relaxed);
            t.request_errors += s.request_errors.load(Relaxed);
            for (sum, r) in t.responses.iter_mut().zip(&s.responses) {
                *sum += r.load(Relaxed);
            }
        }
        t.current = t.sessions.saturating_sub(ended);
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_sum_what_was_counted() {
        let s = FrontendStats::new();
        s.session_started();
        s.session_started();
        s.session_ended(Traffic {
            bytes_in: 10,
            bytes_out: 200,
        });
        s.denied();
        for status in [101, 200, 204, 302, 404, 503, 0, 700] {
            s.response(status);
        }
        s.request();
        s.request_error();
        assert_eq!(
            s.totals(),
            FrontendTotals {
                sessions: 2,
                current: 1,
                denied: 1,
                bytes_in: 10,
                bytes_out: 200,
                requests: 1,
                request_errors: 1,
                responses: [1, 2, 1, 1, 1, 2],
            }
        );
    }

    #[test]
    fn threads_count_in_slots_of_their_own() {
        assert_eq!(std::mem::align_of::<Slot>(), 128);
        assert!(std::mem::size_of::<Slot>() <= 128);
    }
}
