//! ACL parsing and evaluation: every fetch, flag and matching method, the
//! canonical text, and each parse error with its column.

mod cond;
mod errors;

use super::*;

/// A request with these facts.
fn view<'a>(method: &'a str, uri: &'a str, headers: &'a dyn Headers, src: &str) -> RequestView<'a> {
    RequestView {
        method,
        uri,
        headers,
        src: src.parse().expect("test address"),
        counters: None,
    }
}

/// No header at all.
const NO_HEADERS: [(&str, &str); 0] = [];

fn acl(text: &str) -> Acl {
    Acl::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

/// Whether ACL `text` matches a GET of `uri` from 192.0.2.1 with `headers`.
fn on(text: &str, uri: &str, headers: &[(&str, &str)]) -> bool {
    acl(text).matches(&view("GET", uri, &headers, "192.0.2.1"))
}

fn path(text: &str, uri: &str) -> bool {
    on(text, uri, &[])
}

fn host(text: &str, host: &str) -> bool {
    on(text, "/", &[("Host", host)])
}

fn src(text: &str, client: &str) -> bool {
    acl(text).matches(&view("GET", "/", &NO_HEADERS, client))
}

fn method(text: &str, method: &str) -> bool {
    acl(text).matches(&view(method, "/", &NO_HEADERS, "192.0.2.1"))
}

#[test]
fn path_is_the_target_without_its_query() {
    assert!(path("path /a/b", "/a/b"));
    assert!(path("path /a/b", "/a/b?x=1&y=/a/c"));
    assert!(!path("path /a/b", "/a/b/"));
    assert!(!path("path /a/b", "/A/B"));
    assert!(path("path /", "/?q"));
    // The absolute form: scheme and authority are skipped.
    assert!(path("path /a", "http://example.com/a?x"));
    assert!(path("path_beg /x", "https://u@h:8443/x/y"));
    // No path at all: `*`, authority form, absolute form without a path.
    assert!(!path("path_reg .*", "*"));
    assert!(!path("path_reg .*", "example.com:443"));
    assert!(!path("path_reg .*", "http://example.com"));
    assert!(!path("path_reg .*", "http://example.com?a=/b"));
    assert!(!path("path -m found", "*"));
    assert!(path("path -m found", "/"));
}

#[test]
fn path_suffixed_fetches() {
    assert!(path("path_beg /blog /static", "/static/x.css"));
    assert!(path("path_beg /blog /static", "/blog"));
    assert!(!path("path_beg /blog /static", "/img/blog"));
    assert!(!path("path_beg /blog", "/?/blog"));
    assert!(path("path_end .png .jpg", "/a/b.jpg?size=.gif"));
    assert!(!path("path_end .png", "/a.png/x"));
    assert!(path("path_sub /api/", "/v1/api/users"));
    assert!(!path("path_sub /api/", "/v1/apix/users"));
    assert!(path("path_reg ^/img/.*\\.png$", "/img/a/b.png"));
    assert!(!path("path_reg ^/img/.*\\.png$", "/img/a/bxpng"));
    assert!(path("path -m reg ^/api/v[0-9]+/", "/api/v12/x"));
    assert!(!path("path -m reg ^/api/v[0-9]+/", "/api/vx/x"));
}

#[test]
fn path_dir_matches_slash_delimited_parts() {
    // The manual's example, §7.1.3. It says "png" does not match, but it is
    // slash-delimited in "/images/png/logo" and HAProxy's match_word finds it.
    let uri = "/images/png/logo/32x32.png";
    for yes in [
        "/images",
        "/images/png",
        "images/png",
        "/png/logo",
        "logo/32x32.png",
        "32x32.png",
        "png",
    ] {
        assert!(path(&format!("path_dir {yes}"), uri), "{yes}");
    }
    for no in ["32x32", "image", "images/pn", "png/32x32.png"] {
        assert!(!path(&format!("path_dir {no}"), uri), "{no}");
    }
    assert!(path("path -m dir logo", uri));
}

#[test]
fn dom_matches_delimited_words() {
    // The manual's example, §7.1.3, through a header (the path has no host).
    // It also lists "dc-eu.example:80", which is not in the string; HAProxy's
    // match_word does not find it either.
    let value = "http://www1.dc-eu.example.com:80/blah";
    let test = |pattern: &str| {
        on(
            &format!("hdr_dom(x-url) {pattern}"),
            "/",
            &[("x-url", value)],
        )
    };
    for yes in [
        "http",
        "www1",
        ".www1",
        "dc-eu",
        "example",
        "com",
        "80",
        "dc-eu.example",
        "blah",
        ":www1:",
        "example.com:80",
        "blah/",
    ] {
        assert!(test(yes), "{yes}");
    }
    for no in [
        "eu",
        "dc",
        "ww1",
        "example.co",
        "dc-eu.example:80",
        "www1.dc",
    ] {
        assert!(!test(no), "{no}");
    }
}

#[test]
fn hdr_dom_on_host_and_its_trap() {
    assert!(host("hdr_dom(host) -i example.com", "www.EXAMPLE.com"));
    assert!(host("hdr_dom(host) -i example.com", "example.com:8080"));
    assert!(!host("hdr_dom(host) -i example.com", "notexample.com"));
    assert!(!host("hdr_dom(host) example.com", "www.EXAMPLE.com"));
    // As the manual warns: a prefix in front of another domain fools it.
    assert!(host("hdr_dom(host) -i example.com", "example.com.evil.net"));
}

#[test]
fn hdr_exact_and_case() {
    assert!(host(
        "hdr(host) -i api.example.com www.example.com",
        "WWW.example.com"
    ));
    assert!(!host("hdr(host) api.example.com", "API.example.com"));
    assert!(host("hdr(host) api.example.com", "api.example.com"));
    assert!(host("req.hdr(host) api.example.com", "api.example.com"));
    // Header names ignore case either way.
    assert!(on("hdr(HOST) a", "/", &[("host", "a")]));
    assert!(on("hdr(host) a", "/", &[("HoSt", "a")]));
    // Surrounding whitespace is not part of the value.
    assert!(on("hdr(host) a", "/", &[("host", " \ta  ")]));
}

#[test]
fn hdr_suffixed_fetches_and_m_variants() {
    let h = |text: &str, v: &str| on(text, "/", &[("x-foo", v)]);
    assert!(h("hdr_beg(x-foo) ab", "abc"));
    assert!(h("hdr(x-foo) -m beg ab", "abc"));
    // §7.1: -m on a suffixed fetch replaces its method.
    assert!(h("hdr_dom(x-foo) -m beg ab", "abc"));
    assert!(h("hdr_end(x-foo) bc", "abc"));
    assert!(h("hdr(x-foo) -m end bc", "abc"));
    assert!(h("hdr_sub(x-foo) bar", "foobarbaz"));
    assert!(h("hdr(x-foo) -m sub bar", "foobarbaz"));
    assert!(!h("hdr(x-foo) -m sub bar", "foobaz"));
    assert!(h("hdr(x-foo) -i -m sub BAR", "fooBaRbaz"));
    assert!(h("hdr(x-foo) -m sub -i BAR", "fooBaRbaz"));
    assert!(h("hdr_reg(x-foo) ^a.c$", "abc"));
    assert!(h("hdr_reg(x-foo) -i ^A.C$", "abc"));
    assert!(!h("hdr_reg(x-foo) ^A.C$", "abc"));
    assert!(h("hdr_dir(x-foo) b", "a/b/c"));
    assert!(h("hdr(x-foo) -m str abc", "abc"));
    assert!(!h("hdr(x-foo) -m str ab", "abc"));
    assert!(h("hdr(x-foo) -m sub \"\"", "anything"));
}

#[test]
fn hdr_tests_every_occurrence_and_comma_separated_value() {
    let headers = [
        ("X-Fwd", "1.1.1.1, 2.2.2.2"),
        ("x-other", "9"),
        ("x-fwd", "3.3.3.3"),
    ];
    let h = |text: &str| on(text, "/", &headers);
    assert!(h("hdr(x-fwd) 1.1.1.1"));
    assert!(h("hdr(x-fwd) 2.2.2.2"));
    assert!(h("hdr(x-fwd) 3.3.3.3"));
    assert!(!h("hdr(x-fwd) 9"));
    assert!(!h("hdr(x-fwd) 1.1.1.1,"));
    // req.fhdr keeps whole lines.
    assert!(h("req.fhdr(x-fwd) '1.1.1.1, 2.2.2.2'"));
    assert!(!h("req.fhdr(x-fwd) 2.2.2.2"));
    assert!(h("req.fhdr(x-fwd) -m end 2.2.2.2"));
    // Occurrences: 1 is the first value, -1 the last.
    assert!(h("hdr(x-fwd,1) 1.1.1.1"));
    assert!(!h("hdr(x-fwd,1) 2.2.2.2"));
    assert!(h("hdr(x-fwd,2) 2.2.2.2"));
    assert!(h("hdr(x-fwd,-1) 3.3.3.3"));
    assert!(!h("hdr(x-fwd,-1) 2.2.2.2"));
    assert!(h("hdr(x-fwd,-3) 1.1.1.1"));
    assert!(!h("hdr(x-fwd,-4) -m found"));
    assert!(!h("hdr(x-fwd,4) -m found"));
    assert!(h("hdr(x-fwd,3) -m found"));
    assert!(h("req.fhdr(x-fwd,-1) 3.3.3.3"));
    assert!(h("req.fhdr(x-fwd,-2) -m sub 2.2"));
    // A client address behind a proxy, tested as an address.
    assert!(h("hdr(x-fwd,-1) -m ip 3.3.3.0/24"));
    assert!(!h("hdr(x-fwd,-1) -m ip 1.1.1.1"));
    assert!(h("hdr(x-fwd) -m ip 2.2.2.2"));
    assert!(!on(
        "hdr(x-fwd) -m ip 0.0.0.0/0",
        "/",
        &[("x-fwd", "unknown")]
    ));
}

#[test]
fn comma_splitting_respects_quotes_and_keeps_empty_values() {
    let h = |text: &str, v: &str| on(text, "/", &[("x", v)]);
    assert!(!h("hdr(x) 'b,c'", "a, \"b,c\""));
    assert!(h("hdr(x) '\"b,c\"'", "a, \"b,c\""));
    assert!(h("hdr(x) '\"b\\\",c\"'", "\"b\\\",c\", d"));
    assert!(h("hdr(x) d", "\"b\\\",c\", d"));
    assert!(h("hdr(x) ''", "a,,b"));
    assert!(h("hdr(x) ''", "a,"));
    assert!(h("hdr(x) ''", ""));
    assert!(!h("hdr(x) ''", "a,b"));
}

#[test]
fn missing_header_never_matches() {
    for text in [
        "hdr(x-none) a",
        "hdr_reg(x-none) .*",
        "hdr_sub(x-none) ''",
        "hdr(x-none) -m found",
        "req.fhdr(x-none) -m reg .*",
    ] {
        assert!(!on(text, "/", &[("host", "a")]), "{text}");
    }
    assert!(on("hdr(x-empty) -m found", "/", &[("x-empty", "")]));
    assert!(on("hdr(x-empty) ''", "/", &[("x-empty", "")]));
}

#[test]
fn header_values_are_bytes() {
    let headers: [(&str, &[u8]); 2] = [("x-bin", b"caf\xe9"), ("x-utf8", "café".as_bytes())];
    let req = RequestView {
        method: "GET",
        uri: "/",
        headers: &headers,
        src: "192.0.2.1".parse().expect("address"),
        counters: None,
    };
    assert!(acl("hdr_beg(x-bin) caf").matches(&req));
    assert!(acl("hdr_reg(x-bin) ^caf").matches(&req));
    assert!(!acl("hdr(x-bin) -m ip 0.0.0.0/0").matches(&req));
    assert!(acl("hdr(x-utf8) café").matches(&req));
    assert!(acl("hdr_reg(x-utf8) ^caf.$").matches(&req));
}

#[test]
fn method_ignores_case_unless_m_str() {
    assert!(method("method GET HEAD", "HEAD"));
    assert!(method("method GET HEAD", "get"));
    assert!(method("method get", "GET"));
    assert!(!method("method GET HEAD", "POST"));
    assert!(method("method PURGE", "PURGE"));
    assert!(!method("method GET", "GETX"));
    assert!(method("method -m str GET", "GET"));
    assert!(!method("method -m str GET", "get"));
    assert!(method("method -m str -i GET", "get"));
    assert!(method("method -m beg PO", "POST"));
}

#[test]
fn src_v4_and_v6() {
    let office = "src 198.51.100.0/24 10.0.0.1";
    assert!(src(office, "198.51.100.7"));
    assert!(src(office, "10.0.0.1"));
    assert!(!src(office, "10.0.0.2"));
    assert!(!src(office, "198.51.101.7"));
    // Host bits in the pattern are ignored, as HAProxy's `10.0.0.12/8`.
    assert!(src("src 10.0.0.12/8", "10.200.0.1"));
    // Dotted masks, even non-contiguous.
    assert!(src("src 10.0.0.0/255.0.255.0", "10.9.0.9"));
    assert!(!src("src 10.0.0.0/255.0.255.0", "10.9.1.9"));
    assert!(src("src 0.0.0.0/0", "203.0.113.9"));
    let v6 = "src 2001:db8::/32 ::1";
    assert!(src(v6, "2001:db8:1::5"));
    assert!(src(v6, "::1"));
    assert!(!src(v6, "2001:db9::1"));
    assert!(!src(v6, "192.0.2.1"));
}

#[test]
fn src_mixes_families_as_haproxy() {
    let v4 = "src 198.51.100.0/24";
    // IPv6 clients embedding an IPv4 address: mapped, compatible, 6to4.
    assert!(src(v4, "::ffff:198.51.100.7"));
    assert!(src(v4, "::198.51.100.7"));
    assert!(src(v4, "2002:c633:6407::1"));
    assert!(!src(v4, "::ffff:198.51.101.7"));
    assert!(!src(v4, "2001:db8::c633:6407"));
    // An IPv4 client against an IPv6 pattern is seen as ::ffff:a.b.c.d.
    assert!(src("src ::ffff:0:0/96", "203.0.113.9"));
    assert!(src("src ::ffff:198.51.100.0/120", "198.51.100.200"));
    assert!(!src("src ::/96", "203.0.113.9"));
    assert!(src("src -m found", "::1"));
}

#[test]
fn booleans_and_found() {
    assert!(on("always_true", "/", &[]));
    assert!(!on("always_false", "/", &[]));
    assert!(on("always_false -m found", "/", &[]));
    assert!(on("always_true -m bool", "/", &[]));
    assert!(on("hdr(host) -m found", "/", &[("host", "x")]));
}

#[test]
fn flags_dash_dash_and_patterns_beginning_with_dash() {
    assert!(path("path_end -- -old", "/a-old"));
    assert!(path("path_end -i -- -OLD", "/a-old"));
    // Flags stop at the first pattern; a later "-i" is a pattern.
    assert!(path("path_end x -i", "/a-i"));
    assert!(!path("path_end x -i", "/A-I"));
}

#[test]
fn quotes_and_escapes() {
    assert!(on("hdr(ua) 'Mozilla 5.0'", "/", &[("ua", "Mozilla 5.0")]));
    assert!(on("hdr(ua) \"Mozilla 5.0\"", "/", &[("ua", "Mozilla 5.0")]));
    assert!(on("hdr(ua) Mozilla\\ 5.0", "/", &[("ua", "Mozilla 5.0")]));
    assert!(on("hdr(ua) a\\\\b", "/", &[("ua", "a\\b")]));
    assert!(on("hdr(ua) '\\x'", "/", &[("ua", "\\x")]));
    assert!(on("hdr(ua) \\x41", "/", &[("ua", "A")]));
    assert!(on(
        "hdr(ua) \"say \\\"hi\\\"\"",
        "/",
        &[("ua", "say \"hi\"")]
    ));
    assert!(on("hdr(ua) \"\"", "/", &[("ua", "")]));
}

#[test]
fn canonical_text_round_trips() {
    let cases = [
        ("path_beg /blog /static", "path_beg /blog /static"),
        ("path  -m  beg /x", "path_beg /x"),
        (
            "hdr(Host) -i API.example.com",
            "hdr(host) -i api.example.com",
        ),
        ("req.hdr(host) a", "hdr(host) a"),
        ("hdr_dom(host) -m beg www.", "hdr_beg(host) www."),
        ("hdr(x-foo) -m sub bar", "hdr_sub(x-foo) bar"),
        (
            "hdr(x-fwd,-1) -m ip 10.0.0.1/8",
            "hdr(x-fwd,-1) -m ip 10.0.0.0/8",
        ),
        ("req.fhdr(ua) -m found", "req.fhdr(ua) -m found"),
        ("req.fhdr(ua) 'a b'", "req.fhdr(ua) 'a b'"),
        ("method get head", "method GET HEAD"),
        ("method -m str -i GET", "method GET"),
        ("method -m str GET", "method -m str GET"),
        ("method -m beg P", "method -m beg P"),
        (
            "src 198.51.100.7/24 ::1 2001:db8::/32",
            "src 198.51.100.0/24 ::1 2001:db8::/32",
        ),
        ("src 10.0.0.0/255.0.255.0", "src 10.0.0.0/255.0.255.0"),
        ("src 10.0.0.0/255.255.0.0", "src 10.0.0.0/16"),
        ("path_reg ^/img/.*\\.png$", "path_reg ^/img/.*\\.png$"),
        ("path -i -m reg ^/API", "path_reg -i ^/API"),
        ("path_dom .example.", "path_dom example"),
        ("path_end -- -old x", "path_end -- -old x"),
        (
            "hdr(x) '' \"it's\" 'a\\tb' '{' \\\\",
            "hdr(x) '' \"it's\" 'a\\tb' '{' \\",
        ),
        ("always_true", "always_true"),
        ("always_false -m found", "always_false -m found"),
        ("src -i 10.0.0.1", "src -i 10.0.0.1"),
        ("hdr(x\\'y) a", "\"hdr(x'y)\" a"),
    ];
    for (input, canonical) in cases {
        let parsed = acl(input);
        assert_eq!(parsed.to_string(), canonical, "{input}");
        assert_eq!(acl(canonical), parsed, "{input}");
    }
}

#[test]
fn equality_is_by_meaning_of_the_text() {
    assert_eq!(
        acl("hdr(Host) -i Example.COM"),
        acl("hdr(host) -i example.com")
    );
    assert_eq!(acl("hdr(x) -m sub bar"), acl("hdr_sub(x) bar"));
    assert_eq!(acl("path_reg ^/a"), acl("path -m reg ^/a"));
    assert_ne!(acl("path_reg ^/a"), acl("path_reg -i ^/a"));
    assert_ne!(acl("path_reg ^/a"), acl("path_reg ^/b"));
    assert_ne!(acl("hdr(x) a"), acl("hdr(x,1) a"));
    assert_ne!(acl("hdr(x) a"), acl("req.fhdr(x) a"));
}

#[test]
fn accessors() {
    let a = acl("hdr_dom(Host,2) -i example.com");
    assert_eq!(
        a.fetch(),
        &Fetch::Header {
            name: "host".into(),
            occurrence: 2,
            full_line: false
        }
    );
    assert_eq!(a.match_method(), MatchMethod::Dom);
    assert!(a.ignore_case());
    assert_eq!(acl("src 10.0.0.1").match_method(), MatchMethod::Ip);
    assert!(acl("method GET").ignore_case());
}

#[test]
fn serde_uses_the_canonical_text() {
    let a = acl("hdr(Host) -i API.example.com www.example.com");
    let json = serde_json::to_string(&a).expect("serialize");
    assert_eq!(json, "\"hdr(host) -i api.example.com www.example.com\"");
    assert_eq!(serde_json::from_str::<Acl>(&json).expect("deserialize"), a);
    let bad = serde_json::from_str::<Acl>("\"pth /x\"").expect_err("bad ACL");
    assert!(bad.to_string().contains("unknown fetch \"pth\""), "{bad}");
    let regex = acl("path_reg -i ^/img/.*\\.png$");
    let back: Acl = serde_json::from_str(&serde_json::to_string(&regex).expect("ser")).expect("de");
    assert_eq!(back, regex);
    assert!(back.matches(&view("GET", "/IMG/a.PNG", &NO_HEADERS, "192.0.2.1")));
}

#[test]
fn headers_from_a_closure() {
    let stored = [("x-fwd", "10.0.0.1, 10.0.0.2")];
    let calls = std::cell::Cell::new(0);
    let headers = |name: &str, f: &mut dyn FnMut(&[u8]) -> bool| {
        calls.set(calls.get() + 1);
        assert_eq!(name, "x-fwd", "names arrive lowercase");
        stored
            .iter()
            .filter(|(n, _)| *n == name)
            .any(|(_, v)| f(v.as_bytes()))
    };
    let req = RequestView {
        method: "GET",
        uri: "/",
        headers: &headers,
        src: "192.0.2.1".parse().expect("address"),
        counters: None,
    };
    assert!(acl("hdr(X-Fwd) 10.0.0.2").matches(&req));
    assert!(acl("hdr(X-FWD,-1) -m ip 10.0.0.0/24").matches(&req));
    assert_eq!(
        calls.get(),
        3,
        "one pass, then two for a count from the end"
    );
}

/// Counters as a stick table would give them: sc0's, and per table.
struct FakeCounters;

impl super::Counters for FakeCounters {
    fn counter(&self, of: &super::CounterOf, kind: super::CounterKind) -> Option<u64> {
        use super::{CounterKind as K, CounterOf as O};
        match (of, kind) {
            (O::Sc0, K::ConnRate) => Some(120),
            (O::Sc0, K::ConnCur) => Some(4),
            (O::Src { table: Some(t) }, K::HttpReqRate) if t == "abuse" => Some(7),
            (O::Src { table: None }, K::HttpReqRate) => Some(3),
            _ => None,
        }
    }
}

#[test]
fn counter_fetches_compare_integers_and_print_back_as_written() {
    let counters = FakeCounters;
    let req = RequestView::connection("198.51.100.7".parse().unwrap(), Some(&counters));
    for (text, want) in [
        ("sc0_conn_rate gt 100", true),
        ("sc0_conn_rate gt 120", false),
        ("sc0_conn_rate ge 120", true),
        ("sc0_conn_rate lt 121", true),
        ("sc0_conn_rate le 119", false),
        ("sc0_conn_rate 120", true),
        ("sc0_conn_rate eq 7 120", true),
        ("sc0_conn_cur 3:5", true),
        ("sc0_conn_cur :3", false),
        ("sc0_conn_cur 5:", false),
        ("src_http_req_rate(abuse) 7", true),
        ("src_http_req_rate 3", true),
        ("sc0_bytes_in_rate ge 0", false),
        ("sc0_bytes_in_rate -m found", false),
        ("sc0_conn_cur -m found", true),
    ] {
        let a = acl(text);
        assert_eq!(a.matches(&req), want, "{text}");
        assert_eq!(a.to_string().as_str(), text.replace("eq 7", "7"), "{text}");
        assert_eq!(Acl::parse(&a.to_string()).unwrap(), a, "{text}");
    }
    // Without counters (an HTTP request of a frontend that tracks none),
    // a counter fetch yields nothing.
    let none: [(&str, &str); 0] = [];
    let plain = view("GET", "/", &none, "198.51.100.7");
    assert!(!acl("sc0_conn_rate ge 0").matches(&plain));
}

#[test]
fn bad_integer_patterns_and_counter_arguments_are_refused_with_their_column() {
    for (text, column, message) in [
        ("sc0_conn_rate gt", 17, "\"gt\" needs a number"),
        ("sc0_conn_rate gt ten", 18, "not an unsigned integer"),
        ("sc0_conn_rate 5:3", 15, "its start is after its end"),
        ("sc0_conn_rate a:3", 15, "bad range"),
        ("sc0_conn_rate(t) 1", 14, "takes no argument"),
        ("src_conn_rate() 1", 15, "one argument"),
        ("sc0_conn_rat 1", 1, "did you mean \"sc0_conn_rate\""),
        ("sc0_conn_rate -m str 1", 18, "cannot be used"),
    ] {
        let e = Acl::parse(text).expect_err(text);
        assert_eq!(e.position, column, "{text}: {e}");
        assert!(e.message.contains(message), "{text}: {e}");
    }
}
