//! What an ACL reads from a request: the [`RequestView`] the HTTP layer
//! builds, and the [`Headers`] access it goes through.

use super::expr::{CounterKind, CounterOf};
use std::fmt;
use std::net::IpAddr;

/// The facts of one request that ACLs read. Built by the HTTP layer from
/// borrowed parts of the request, without copying.
#[derive(Clone, Copy)]
pub struct RequestView<'a> {
    /// The method, as sent (`GET`).
    pub method: &'a str,
    /// The request target as in the request line (`/blog/a?x=1`), or the
    /// absolute form (`http://host/blog/a?x=1`); `path` is taken from it.
    pub uri: &'a str,
    /// The request's header fields.
    pub headers: &'a dyn Headers,
    /// The client's address (IPv4-mapped IPv6 addresses may be left as they
    /// are: `src` matching treats them as HAProxy does).
    pub src: IpAddr,
    /// The stick-table counters the `sc0_*` and `src_*` fetches read (none:
    /// those fetches yield nothing).
    pub counters: Option<&'a dyn Counters>,
}

/// The stick-table counters a request's fetches read, from the proxy.
pub trait Counters {
    /// The value of counter `kind` of the entry `of` names; `None` if the
    /// fetch yields nothing (nothing tracked, or no such table).
    fn counter(&self, of: &CounterOf, kind: CounterKind) -> Option<u64>;
}

impl<'a> RequestView<'a> {
    /// A view of a connection that carries no request yet (HAProxy's
    /// `tcp-request connection` rules): its source address and counters
    /// only.
    pub fn connection(src: IpAddr, counters: Option<&'a dyn Counters>) -> RequestView<'a> {
        RequestView {
            method: "",
            uri: "",
            headers: &NO_HEADERS,
            src,
            counters,
        }
    }
}

/// No header fields.
static NO_HEADERS: [(&str, &str); 0] = [];

impl fmt::Debug for RequestView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestView")
            .field("method", &self.method)
            .field("uri", &self.uri)
            .field("src", &self.src)
            .finish_non_exhaustive()
    }
}

/// Read access to a request's header fields. Implemented for closures of the
/// same signature (the easy way to read a `http::HeaderMap`), and for
/// slices, arrays and `Vec`s of name–value pairs.
pub trait Headers {
    /// Calls `f` on the value of each field line named `name` (given ASCII
    /// lowercase; compare names case-insensitively), in order, until `f`
    /// returns true. Returns whether it did.
    fn any_value(&self, name: &str, f: &mut dyn FnMut(&[u8]) -> bool) -> bool;
}

/// A closure with [`Headers::any_value`]'s signature, e.g. over a
/// `http::HeaderMap`: `&|name: &str, f: &mut dyn FnMut(&[u8]) -> bool| {
/// map.get_all(name).iter().any(|v| f(v.as_bytes())) }`.
impl<F> Headers for F
where
    F: Fn(&str, &mut dyn FnMut(&[u8]) -> bool) -> bool,
{
    fn any_value(&self, name: &str, f: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        self(name, f)
    }
}

/// Name–value pairs, for tests and simple callers: a slice, an array or a
/// `Vec` of (`&str` or `String`, `&str`, `&[u8]` or `String`).
fn pairs_any_value<N: AsRef<str>, V: AsRef<[u8]>>(
    pairs: &[(N, V)],
    name: &str,
    f: &mut dyn FnMut(&[u8]) -> bool,
) -> bool {
    pairs
        .iter()
        .filter(|(n, _)| n.as_ref().eq_ignore_ascii_case(name))
        .any(|(_, v)| f(v.as_ref()))
}

impl<N: AsRef<str>, V: AsRef<[u8]>> Headers for &[(N, V)] {
    fn any_value(&self, name: &str, f: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        pairs_any_value(self, name, f)
    }
}

impl<N: AsRef<str>, V: AsRef<[u8]>, const K: usize> Headers for [(N, V); K] {
    fn any_value(&self, name: &str, f: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        pairs_any_value(self, name, f)
    }
}

impl<N: AsRef<str>, V: AsRef<[u8]>> Headers for Vec<(N, V)> {
    fn any_value(&self, name: &str, f: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        pairs_any_value(self, name, f)
    }
}
