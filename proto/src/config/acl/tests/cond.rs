//! Conditions: precedence, negation, anonymous and predefined ACLs, errors.

use super::*;

/// The issue's example set.
fn example() -> AclSet {
    let mut set = AclSet::new();
    for (name, text) in [
        ("is_blog", "path_beg /blog"),
        ("is_api", "hdr(host) -i api.example.com"),
        ("is_post", "method POST"),
        ("office", "src 198.51.100.0/24"),
    ] {
        set.define(name, text)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    set
}

/// A set whose ACLs `a`, `b`, `c` match when the request has header `a`,
/// `b`, `c` (any value).
fn abc() -> AclSet {
    let mut set = AclSet::new();
    for name in ["a", "b", "c"] {
        set.define(name, &format!("hdr({name}) -m found"))
            .expect("define");
    }
    set
}

fn cond(text: &str, set: &AclSet) -> Condition {
    Condition::parse(text, set).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

/// Evaluates `text` over `abc()` with the headers named in `present`.
fn truth(text: &str, present: &[&str]) -> bool {
    let headers: Vec<(&str, &str)> = present.iter().map(|h| (*h, "1")).collect();
    cond(text, &abc()).eval(&view("GET", "/", &headers, "192.0.2.1"))
}

/// All eight combinations of a, b, c present.
fn table(text: &str) -> Vec<bool> {
    let mut out = Vec::new();
    for bits in 0..8u8 {
        let present: Vec<&str> = ["a", "b", "c"]
            .into_iter()
            .enumerate()
            .filter(|(i, _)| bits & (1 << i) != 0)
            .map(|(_, n)| n)
            .collect();
        out.push(truth(text, &present));
    }
    out
}

fn error(text: &str, set: &AclSet) -> AclError {
    match Condition::parse(text, set) {
        Ok(c) => panic!("{text:?} parsed as {c}"),
        Err(e) => e,
    }
}

fn fails(text: &str, column: usize, words: &str) {
    let e = error(text, &example());
    assert_eq!(e.position, column, "{text:?}: {}", e.message);
    assert!(
        e.message.contains(words),
        "{text:?}: {:?} lacks {words:?}",
        e.message
    );
}

#[test]
fn the_issue_example() {
    let set = example();
    let blog = cond("is_blog", &set);
    let api = cond("is_api !is_post or office", &set);
    let req = |method, uri, host, src| {
        let headers = [("Host", host)];
        let r = view(method, uri, &headers, src);
        (blog.eval(&r), api.eval(&r))
    };
    assert_eq!(
        req("GET", "/blog/x", "www.example.com", "192.0.2.1"),
        (true, false)
    );
    assert_eq!(
        req("GET", "/v1", "API.example.com", "192.0.2.1"),
        (false, true)
    );
    assert_eq!(
        req("POST", "/v1", "api.example.com", "192.0.2.1"),
        (false, false)
    );
    assert_eq!(
        req("POST", "/v1", "www.example.com", "198.51.100.9"),
        (false, true)
    );
    assert_eq!(
        req("post", "/v1", "api.example.com", "192.0.2.1"),
        (false, false)
    );
}

#[test]
fn and_binds_tighter_than_or() {
    let expect = |f: fn(bool, bool, bool) -> bool| {
        (0..8u8)
            .map(|b| f(b & 1 != 0, b & 2 != 0, b & 4 != 0))
            .collect::<Vec<_>>()
    };
    assert_eq!(table("a b"), expect(|a, b, _| a && b));
    assert_eq!(table("a or b c"), expect(|a, b, c| a || (b && c)));
    assert_eq!(table("a b or c"), expect(|a, b, c| (a && b) || c));
    assert_eq!(table("a !b or !c"), expect(|a, b, c| (a && !b) || !c));
    assert_eq!(table("!a !b !c"), expect(|a, b, c| !a && !b && !c));
    assert_eq!(table("a or b or c"), expect(|a, b, c| a || b || c));
    assert_eq!(table("a a a"), expect(|a, _, _| a));
}

#[test]
fn pipes_and_upper_case_or_equal_or() {
    for text in ["a || b c", "a or b c", "a OR b c", "a Or b c"] {
        assert_eq!(table(text), table("a or b c"), "{text}");
        assert_eq!(cond(text, &abc()), cond("a or b c", &abc()), "{text}");
    }
}

#[test]
fn negation_forms() {
    assert_eq!(table("! a"), table("!a"));
    assert_eq!(table("!!a"), table("a"));
    assert_eq!(table("! !a"), table("a"));
    assert_eq!(table("!!!a b"), table("!a b"));
    assert!(truth("!a", &[]));
    // A negated ACL on a missing sample is true, as HAProxy.
    assert!(truth("!a", &["b"]));
}

#[test]
fn anonymous_acls() {
    let set = abc();
    let r = |uri: &'static str, method: &'static str| view(method, uri, &NO_HEADERS, "10.1.2.3");
    let c = cond("{ path_beg /x } !{ method POST }", &set);
    assert!(c.eval(&r("/x/1", "GET")));
    assert!(!c.eval(&r("/x/1", "POST")));
    assert!(!c.eval(&r("/y", "GET")));
    let c = cond("{ src 192.0.2.0/24 } || { path /admin } a", &set);
    assert!(c.eval(&view("GET", "/admin", &[("a", "")], "203.0.113.1")));
    assert!(!c.eval(&view("GET", "/admin", &NO_HEADERS, "203.0.113.1")));
    assert!(c.eval(&view("GET", "/", &NO_HEADERS, "192.0.2.9")));
    // Everything between the braces belongs to the ACL, `or` included.
    let c = cond("{ hdr(x) -i a or }", &set);
    assert!(c.eval(&view("GET", "/", &[("x", "OR")], "192.0.2.9")));
    // A quoted brace is a pattern.
    let c = cond("{ path_end '}' } a", &set);
    assert!(c.eval(&view("GET", "/}", &[("a", "")], "192.0.2.9")));
}

#[test]
fn predefined_acls() {
    let set = AclSet::new();
    let eval = |text: &str, method: &str, src: &str| {
        cond(text, &set).eval(&view(method, "/", &NO_HEADERS, src))
    };
    assert!(eval("TRUE", "GET", "192.0.2.1"));
    assert!(!eval("FALSE", "GET", "192.0.2.1"));
    assert!(eval("METH_GET", "HEAD", "192.0.2.1"));
    assert!(!eval("METH_GET", "POST", "192.0.2.1"));
    assert!(eval("METH_POST METH_POST", "POST", "192.0.2.1"));
    for (m, name) in [
        ("CONNECT", "METH_CONNECT"),
        ("DELETE", "METH_DELETE"),
        ("HEAD", "METH_HEAD"),
        ("OPTIONS", "METH_OPTIONS"),
        ("PUT", "METH_PUT"),
        ("TRACE", "METH_TRACE"),
    ] {
        assert!(eval(name, m, "192.0.2.1"), "{name}");
        assert!(!eval(name, "GET", "192.0.2.1"), "{name}");
    }
    assert!(eval("LOCALHOST", "GET", "127.0.0.9"));
    assert!(eval("LOCALHOST", "GET", "::1"));
    assert!(eval("LOCALHOST", "GET", "::ffff:127.0.0.1"));
    assert!(!eval("LOCALHOST", "GET", "192.0.2.1"));
    // A defined name takes precedence.
    let mut own = AclSet::new();
    own.define("TRUE", "always_false").expect("define");
    assert!(!cond("TRUE", &own).eval(&view("GET", "/", &NO_HEADERS, "192.0.2.1")));
}

#[test]
fn overloaded_names_match_when_any_definition_does() {
    let mut set = AclSet::new();
    set.define("static", "path_beg /static").expect("define");
    set.define("static", "path_end .png").expect("define");
    assert_eq!(set.get("static").map(<[Acl]>::len), Some(2));
    let c = cond("static", &set);
    let r = |uri| view("GET", uri, &NO_HEADERS, "192.0.2.1");
    assert!(c.eval(&r("/static/a")));
    assert!(c.eval(&r("/a.png")));
    assert!(!c.eval(&r("/a.gif")));
    assert!(cond("!static", &set).eval(&r("/a.gif")));
}

#[test]
fn acl_set_names() {
    let mut set = example();
    assert_eq!(set.len(), 4);
    assert!(!set.is_empty());
    assert!(AclSet::new().is_empty());
    assert_eq!(
        set.names().collect::<Vec<_>>(),
        ["is_api", "is_blog", "is_post", "office"]
    );
    for ok in ["a-b_c.d:e", "X1", "-x"] {
        set.define(ok, "always_true")
            .unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for (bad, words) in [
        ("", "cannot be empty"),
        ("a b", "invalid ACL name \"a b\""),
        ("!x", "invalid ACL name"),
        ("{", "invalid ACL name"),
        ("OR", "\"or\" is the condition operator"),
    ] {
        let e = set.define(bad, "always_true").expect_err(bad);
        assert_eq!(e.position, 0, "{bad}");
        assert!(e.message.contains(words), "{bad}: {}", e.message);
        assert_eq!(e.to_string(), e.message, "no column for a name");
    }
    let e = set.define("ok", "path_beg").expect_err("bad definition");
    assert_eq!(
        e.to_string(),
        "column 9: missing pattern: \"path_beg\" needs at least one value to match"
    );
    assert!(set.get("ok").is_none());
}

#[test]
fn display_round_trips_and_lists_names() {
    let set = example();
    for (input, canonical) in [
        ("is_api  !is_post ||  office", "is_api !is_post or office"),
        ("!!is_api", "is_api"),
        ("! is_api", "!is_api"),
        (
            "{ hdr(Host) -i X }   OR is_blog",
            "{ hdr(host) -i x } or is_blog",
        ),
        ("!{ path_end '}' } METH_GET", "!{ path_end '}' } METH_GET"),
    ] {
        let c = cond(input, &set);
        assert_eq!(c.to_string(), canonical, "{input}");
        assert_eq!(cond(canonical, &set), c, "{input}");
    }
    let c = cond("is_api !is_post or office { path / } is_api", &set);
    assert_eq!(
        c.acl_names().collect::<Vec<_>>(),
        ["is_api", "is_post", "office", "is_api"]
    );
    assert_eq!(c.groups().len(), 2);
    assert!(c.groups()[0][1].negated);
}

#[test]
fn serde_round_trips() {
    let set = example();
    let c = cond("is_api !is_post or { src 10.0.0.0/8 } METH_GET", &set);
    let json = serde_json::to_string(&c).expect("serialize");
    assert_eq!(
        serde_json::from_str::<Condition>(&json).expect("deserialize"),
        c
    );
    let config = bincode::config::standard();
    let bytes = bincode::serde::encode_to_vec(&c, config).expect("encode");
    let (back, _): (Condition, usize) =
        bincode::serde::decode_from_slice(&bytes, config).expect("decode");
    assert_eq!(back, c);
    let json = serde_json::to_string(&set).expect("serialize set");
    assert!(
        json.contains("\"office\":[\"src 198.51.100.0/24\"]"),
        "{json}"
    );
    assert_eq!(
        serde_json::from_str::<AclSet>(&json).expect("deserialize set"),
        set
    );
}

#[test]
fn unknown_acl_names_suggest_the_closest() {
    // Operators are words of their own, as in HAProxy.
    fails(
        "is_api ||office",
        8,
        "unknown ACL \"||office\" (did you mean \"office\"?)",
    );
    let e = error("is_api or !is_pots", &example());
    assert_eq!(
        e.to_string(),
        "column 12: unknown ACL \"is_pots\" (did you mean \"is_post\"?)"
    );
    fails(
        "ofice",
        1,
        "unknown ACL \"ofice\" (did you mean \"office\"?)",
    );
    fails("is_api METH_GTE", 8, "(did you mean \"METH_GET\"?)");
    fails("zzzzzzzz", 1, "unknown ACL \"zzzzzzzz\"");
    fails("path_beg /x", 1, "put it in braces: { path_beg ... }");
    fails("hdr(host) x", 1, "put it in braces: { hdr(host) ... }");
    // Quoting takes away the operator's meaning.
    fails("is_api 'or' office", 8, "unknown ACL \"or\"");
    fails("is_api \"!is_post\"", 8, "unknown ACL \"!is_post\"");
    // Names are case-sensitive.
    fails("IS_API", 1, "unknown ACL \"IS_API\"");
}

#[test]
fn empty_and_dangling() {
    fails("", 1, "empty condition");
    fails("   ", 1, "empty condition");
    fails("or is_api", 1, "dangling \"or\": no ACL before it");
    fails("|| is_api", 1, "dangling \"||\": no ACL before it");
    fails("is_api or", 8, "dangling \"or\": no ACL after it");
    fails("is_api ||", 8, "dangling \"||\": no ACL after it");
    fails(
        "is_api or or office",
        11,
        "dangling \"or\": no ACL before it",
    );
    fails("is_api !", 8, "\"!\" must be followed by an ACL");
    fails("is_api ! or office", 8, "\"!\" must be followed by an ACL");
    fails("!or office", 1, "\"!\" must be followed by an ACL");
    fails("!", 1, "\"!\" must be followed by an ACL");
}

#[test]
fn unbalanced_braces() {
    fails(
        "is_api { path_beg /x",
        8,
        "unbalanced braces: this \"{\" is never closed",
    );
    fails("is_api !{ path_beg /x", 9, "never closed");
    fails(
        "is_api }",
        8,
        "unbalanced braces: this \"}\" closes no \"{\"",
    );
    fails("{ path /a } }", 13, "closes no");
    // `{x` is not a brace: it is an (unknown) name.
    fails("{x", 1, "unknown ACL \"{x\"");
}

#[test]
fn errors_inside_anonymous_acls_have_columns_in_the_condition() {
    fails(
        "is_api { pth_beg /x }",
        10,
        "unknown fetch \"pth_beg\" (did you mean \"path_beg\"?)",
    );
    fails("{ path_beg }", 12, "missing pattern");
    fails("{ }", 3, "empty ACL");
    fails("{ src 10.0.0.0/40 }", 7, "bad address or CIDR");
    fails("{ path_reg ^( }", 12, "bad regex");
    fails("is_api \"unterminated", 8, "unterminated double quote");
}
