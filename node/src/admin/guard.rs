//! Who may use the admin API, decided from a request's head before its body
//! is read: nothing a browser sends for a page (`Origin`, a `Sec-Fetch-Site`
//! other than `none`: 403) but the stats page's own reads (`same-origin`
//! GETs to a loopback host name), and a write (any method but GET and
//! HEAD) only with the node's admin token (401) and the CLI's Content-Type
//! (415).

use super::http::{error, Answer};
use super::token::AdminToken;
use super::users::{Role, Users};
use hyper::header::{self, HeaderMap};
use hyper::Method;

/// The Content-Type of every write, as the CLI sends it: the body is a
/// config document in the format `?format=` names, or empty. It is none of
/// the three a page can send without the browser asking first.
pub const WRITE_CONTENT_TYPE: &str = "application/octet-stream";

/// Who sent a request, by its bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Caller {
    /// No token (or, without a token file, a read).
    Anonymous,
    /// The node's own admin token: the CLI on this machine.
    Node,
    /// A token of `[admin] token_file`.
    User { name: String, role: Role },
}

impl Caller {
    /// How the logs name the caller.
    pub(super) fn name(&self) -> String {
        match self {
            Caller::Anonymous => "anonymous".into(),
            Caller::Node => "the node's admin token".into(),
            Caller::User { name, role } => format!("{name} ({})", role.as_str()),
        }
    }
}

/// The tokens a request is checked against.
#[derive(Clone, Copy)]
pub(super) struct Keys<'a> {
    /// The node's own.
    pub node: &'a AdminToken,
    /// `[admin] token_file`'s, if the node has one: then reads need a
    /// token too.
    pub users: Option<&'a Users>,
}

/// Who sent the request whose head is `method`, `path` and `headers`, or
/// why it is refused. `GET /health` is open to all, as HAProxy's
/// `monitor-uri`: it says `ok` or `starting`, nothing more.
pub(super) fn admit(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    keys: Keys<'_>,
) -> Result<Caller, Answer> {
    from_a_page(method, headers)?;
    let read = *method == Method::GET || *method == Method::HEAD;
    let caller = match bearer(headers) {
        None => Caller::Anonymous,
        Some(t) if keys.node.accepts(t) => Caller::Node,
        Some(t) => match keys.users.and_then(|u| u.find(t)) {
            Some(u) => Caller::User {
                name: u.name.clone(),
                role: u.role,
            },
            // Without a token file a read needs no token: a stale one
            // (another node's file) is no reason to refuse it.
            None if read && keys.users.is_none() => Caller::Anonymous,
            None => {
                return Err(error(
                    401,
                    "unknown token: not this node's admin token (admin.token in its data_dir; `raftlb` reads it through --node), nor one of its admin.token_file",
                ))
            }
        },
    };
    if read {
        if keys.users.is_some() && caller == Caller::Anonymous && path != "/health" {
            return Err(error(
                401,
                "this admin API has a token file: reads need a token too (Authorization: Bearer)",
            ));
        }
        return Ok(caller);
    }
    match &caller {
        Caller::Anonymous => {
            return Err(error(
                401,
                "a write needs the node's admin token (Authorization: Bearer, from admin.token in its data_dir; `raftlb` reads it through --node)",
            ))
        }
        Caller::User {
            name,
            role: Role::Read,
        } => {
            return Err(error(
                403,
                format!("{name} has the read role: it cannot write"),
            ))
        }
        Caller::Node | Caller::User { .. } => {}
    }
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim());
    if !media.is_some_and(|m| m.eq_ignore_ascii_case(WRITE_CONTENT_TYPE)) {
        return Err(error(
            415,
            format!("a write's Content-Type is {WRITE_CONTENT_TYPE}"),
        ));
    }
    Ok(caller)
}

/// Refuses what a browser sends for a web page, but the stats page's own
/// requests: same origin, by a name no other site can take (DNS rebinding
/// gives a page of another site this origin, with its own host name);
/// reads, and writes that carry a token (the page's operator buttons, once
/// the page was given one: a page of another origin can neither read it
/// nor send `Authorization` here without a preflight, which is refused).
fn from_a_page(method: &Method, headers: &HeaderMap) -> Result<(), Answer> {
    let site = headers.get("sec-fetch-site").map(|s| s.as_bytes());
    let read = *method == Method::GET || *method == Method::HEAD;
    let own_page = site == Some(b"same-origin")
        && loopback_host(headers)
        && (read || (bearer(headers).is_some() && origin_is_host(headers)));
    if headers.contains_key(header::ORIGIN) && !own_page {
        return Err(error(
            403,
            "requests from a web page (with an Origin header) are refused",
        ));
    }
    if let Some(site) = site {
        if site != b"none" && !own_page {
            return Err(error(
                403,
                "requests a browser marks as from a site (Sec-Fetch-Site) are refused",
            ));
        }
    }
    Ok(())
}

/// Whether the request's `Origin` is `http://` and its `Host`.
fn origin_is_host(headers: &HeaderMap) -> bool {
    let get = |h| {
        headers
            .get(h)
            .and_then(|v: &header::HeaderValue| v.to_str().ok())
    };
    match (get(header::ORIGIN), get(header::HOST)) {
        (Some(origin), Some(host)) => origin.strip_prefix("http://") == Some(host),
        _ => false,
    }
}

/// Whether the request's `Host` is an IP address or `localhost` (with a
/// port or not): a name no one else's DNS answers for.
fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    if host.parse::<std::net::SocketAddr>().is_ok() || host.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let name = host.rsplit_once(':').map_or(host, |(n, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            n
        } else {
            host
        }
    });
    name.eq_ignore_ascii_case("localhost")
}

/// The token of an `Authorization: Bearer TOKEN` header.
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let v = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = v.split_at(v.iter().position(|&c| c == b' ')?);
    scheme
        .eq_ignore_ascii_case(b"bearer")
        .then(|| rest.trim_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn head(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn code(method: Method, pairs: &[(&'static str, &str)], token: &AdminToken) -> u16 {
        let keys = Keys {
            node: token,
            users: None,
        };
        admit(&method, "/status", &head(pairs), keys).map_or_else(|(c, _)| c, |_| 200)
    }

    #[test]
    fn pages_are_refused_writes_need_the_token_then_the_content_type() {
        let t = AdminToken::for_tests("ab".repeat(32));
        let auth = format!("Bearer {}", t.as_str());
        let good = [
            ("authorization", auth.as_str()),
            ("content-type", WRITE_CONTENT_TYPE),
        ];
        assert_eq!(code(Method::GET, &[], &t), 200);
        assert_eq!(code(Method::GET, &[("sec-fetch-site", "none")], &t), 200);
        assert_eq!(code(Method::GET, &[("origin", "null")], &t), 403);
        assert_eq!(
            code(Method::GET, &[("sec-fetch-site", "same-origin")], &t),
            403
        );
        // The stats page reading its own node, by address or `localhost`
        // (an SSH tunnel's port too); not by a name DNS could rebind, and
        // never a write.
        let same = |host| [("sec-fetch-site", "same-origin"), ("host", host)];
        for host in [
            "127.0.0.1:9900",
            "localhost:8000",
            "[::1]:9900",
            "LOCALHOST",
            "127.0.0.1",
        ] {
            assert_eq!(code(Method::GET, &same(host), &t), 200, "{host}");
        }
        for host in [
            "evil.example:9900",
            "localhost.evil.example",
            "127.0.0.1.nip.io:9900",
        ] {
            assert_eq!(code(Method::GET, &same(host), &t), 403, "{host}");
        }
        let mut post = same("127.0.0.1:9900").to_vec();
        post.extend(good);
        // A write from the page without its Origin, or from another origin:
        // refused.
        assert_eq!(code(Method::POST, &post, &t), 403);
        let mut other = post.clone();
        other.push(("origin", "http://evil.example:9900"));
        assert_eq!(code(Method::POST, &other, &t), 403);
        // The page's own button, with the token it was given: served.
        let mut own = post.clone();
        own.push(("origin", "http://127.0.0.1:9900"));
        assert_eq!(code(Method::POST, &own, &t), 200);
        // Without a token it stays a page's write: refused before the token
        // check (403, not 401).
        let no_token: Vec<_> = own
            .iter()
            .filter(|(k, _)| *k != "authorization")
            .copied()
            .collect();
        assert_eq!(code(Method::POST, &no_token, &t), 403);
        assert_eq!(
            code(
                Method::GET,
                &[("sec-fetch-site", "cross-site"), ("host", "127.0.0.1:9900")],
                &t
            ),
            403
        );
        assert_eq!(code(Method::POST, &good, &t), 200);
        let lower = format!("bearer  {} ", t.as_str());
        let typed = "Application/Octet-Stream; charset=x";
        assert_eq!(
            code(
                Method::PUT,
                &[("authorization", &lower), ("content-type", typed)],
                &t
            ),
            200
        );
        let mut with_origin = good.to_vec();
        with_origin.push(("origin", "http://evil.example"));
        assert_eq!(code(Method::POST, &with_origin, &t), 403);
        for auth in [
            "",
            "Bearer",
            "Bearer ",
            "Basic abab",
            &auth[..40],
            t.as_str(),
        ] {
            let pairs = [
                ("authorization", auth),
                ("content-type", WRITE_CONTENT_TYPE),
            ];
            assert_eq!(code(Method::DELETE, &pairs, &t), 401, "{auth:?}");
        }
        assert_eq!(code(Method::POST, &good[..1], &t), 415);
        let plain = [
            ("authorization", auth.as_str()),
            ("content-type", "text/plain"),
        ];
        assert_eq!(code(Method::POST, &plain, &t), 415);
    }

    #[test]
    fn with_a_token_file_reads_need_a_token_and_the_read_role_cannot_write() {
        let t = AdminToken::for_tests("ab".repeat(32));
        let users = Users::parse(&format!(
            "grafana read {}\nalice operator {}\n",
            "r".repeat(32),
            "o".repeat(32)
        ))
        .unwrap();
        let keys = Keys {
            node: &t,
            users: Some(&users),
        };
        let ask = |method: Method, token: &str| {
            let auth = format!("Bearer {token}");
            let h = head(&[
                ("authorization", &auth),
                ("content-type", WRITE_CONTENT_TYPE),
            ]);
            admit(&method, "/server", &h, keys)
        };
        assert_eq!(
            admit(&Method::GET, "/status", &head(&[]), keys)
                .unwrap_err()
                .0,
            401
        );
        assert_eq!(
            admit(&Method::GET, "/health", &head(&[]), keys).unwrap(),
            Caller::Anonymous
        );
        let reader = ask(Method::GET, &"r".repeat(32)).unwrap();
        assert_eq!(reader.name(), "grafana (read)");
        assert_eq!(ask(Method::POST, &"r".repeat(32)).unwrap_err().0, 403);
        assert_eq!(
            ask(Method::POST, &"o".repeat(32)).unwrap().name(),
            "alice (operator)"
        );
        assert_eq!(ask(Method::POST, t.as_str()).unwrap(), Caller::Node);
        assert_eq!(ask(Method::GET, &"x".repeat(32)).unwrap_err().0, 401);
    }
}
