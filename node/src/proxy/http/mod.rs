//! One client connection in HTTP mode (HTTP/1.1, hyper): each request is
//! routed to a backend, takes a server slot (`maxconn` counts concurrent
//! requests, as in HAProxy), and goes over a pooled upstream connection. An
//! upstream connection goes back to its server's pool only once its response
//! was read to the end; one that failed or whose body was left unread is
//! closed.
//!
//! What is here: `use_backend` rules over HAProxy ACLs (first match wins,
//! then the default backend, else 503), cookie persistence and `uri`/`hdr`
//! hashing, keep-alive on both sides, the upstream pool with retries,
//! hop-by-hop headers removed, `forwardfor`, `via`, `Host` kept (exactly
//! one; an absolute-form target's authority replaces it), upgrades
//! and CONNECT as tunnels, the head timers (`timeout http_request` and
//! `http_keep_alive`, armed lazily), request-smuggling checks with the
//! [`scan`]ner below hyper, 502/503/504, and the httplog line.
//!
//! Where it is, in the order a request meets it: `intake` (the connection
//! loop and the smuggling checks) over `conn` (the scanned reader, the head
//! timers), `handle` (one request's phases), `routing` (rules, cookie, hash
//! key), `upstream` (slot, connection, retries) over the server's pool
//! ([`crate::server::pool`]), `response`
//! (the bodies, error pages), `headers` (hop-by-hop), `tunnel` (upgrades and
//! CONNECT), `observe` (passive health), `log` (the httplog line). This file
//! only declares them; the children import each other, never this file.

mod conn;
mod handle;
mod headers;
mod idle;
mod intake;
mod log;
mod observe;
mod response;
mod routing;
pub mod scan;
mod tunnel;
mod upstream;

pub use conn::Tracked;
pub use intake::serve;
pub use log::HttpLog;
pub use response::{BodyError, ProxyBody, Upstream};
