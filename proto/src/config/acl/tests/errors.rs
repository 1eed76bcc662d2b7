//! Each ACL parse error: its column and its words.

use super::*;

/// The error of parsing `text`, as (column, message).
fn error(text: &str) -> (usize, String) {
    match Acl::parse(text) {
        Ok(a) => panic!("{text:?} parsed as {a}"),
        Err(e) => (e.position, e.message),
    }
}

/// Asserts that `text` fails at `column` with a message containing `words`.
fn fails(text: &str, column: usize, words: &str) {
    let (at, message) = error(text);
    assert_eq!(at, column, "{text:?}: {message}");
    assert!(
        message.contains(words),
        "{text:?}: {message:?} lacks {words:?}"
    );
}

#[test]
fn display_names_the_column() {
    let e = Acl::parse("path_beg /a\\xZZ").expect_err("bad escape");
    assert_eq!(
        e.to_string(),
        "column 12: bad escape: \\x needs two hex digits of an ASCII byte (00-7f)"
    );
    let e = Acl::parse("pth_beg /blog").expect_err("unknown fetch");
    assert_eq!(
        e.to_string(),
        "column 1: unknown fetch \"pth_beg\" (did you mean \"path_beg\"?)"
    );
}

#[test]
fn unknown_fetch() {
    fails(
        "pth_beg /x",
        1,
        "unknown fetch \"pth_beg\" (did you mean \"path_beg\"?)",
    );
    fails("hdrr(host) x", 1, "(did you mean \"hdr\"?)");
    fails("  metod GET", 3, "(did you mean \"method\"?)");
    fails("url_beg /x", 1, "unknown fetch \"url_beg\"");
    fails("xyzzy /x", 1, "known fetches: path, path_beg,");
}

#[test]
fn empty_acl() {
    fails("", 1, "empty ACL");
    fails("   ", 4, "empty ACL");
}

#[test]
fn missing_pattern() {
    fails(
        "path_beg",
        9,
        "missing pattern: \"path_beg\" needs at least one value",
    );
    fails("path_beg -i", 12, "missing pattern");
    fails(
        "hdr(host) -i --",
        16,
        "(or \"-m found\" to test that the header is present)",
    );
    fails("src", 4, "missing pattern");
}

#[test]
fn found_and_bool_take_no_pattern() {
    fails("hdr(x) -m found yes", 17, "takes no pattern");
    fails(
        "always_true x",
        13,
        "\"always_true\" with matching method \"bool\" takes no pattern",
    );
}

#[test]
fn bad_m_values() {
    fails(
        "path -m begin /x",
        9,
        "unknown matching method \"begin\" (did you mean \"beg\"?)",
    );
    fails(
        "path -m zzzzzz /x",
        9,
        "(one of found, bool, str, beg, end, sub, dir, dom, reg, ip, int)",
    );
    fails(
        "path -m len 3",
        9,
        "matching method \"len\" is not supported",
    );
    fails("path -m", 8, "\"-m\" needs a matching method");
    fails("path -m beg -m end /x", 13, "only one \"-m\"");
    fails(
        "src -m beg 10.",
        8,
        "matching method \"beg\" cannot be used with fetch \"src\"",
    );
    fails("path -m bool", 9, "cannot be used with fetch \"path\"");
    fails(
        "always_true -m str x",
        16,
        "cannot be used with fetch \"always_true\"",
    );
}

#[test]
fn bad_flags() {
    fails("path -x /a", 6, "unknown flag \"-x\"");
    fails(
        "path_end -old",
        10,
        "put \"--\" before a pattern that begins with \"-\"",
    );
    fails(
        "path -f /etc/list",
        6,
        "flag \"-f\" (patterns from a file) is not supported",
    );
    fails("path -u 3 /x", 6, "flag \"-u\" is not supported");
}

#[test]
fn bad_cidr() {
    fails(
        "src 198.51.100.0/33",
        5,
        "bad address or CIDR \"198.51.100.0/33\": bad IPv4 prefix length",
    );
    fails(
        "src 10.0.0.1 10.12",
        14,
        "write all four parts of \"10.12\"",
    );
    fails(
        "src 10.0.0.0/8 example.com",
        16,
        "is not an IPv4 or IPv6 address (host names are not resolved)",
    );
    fails("src ::1/129", 5, "bad IPv6 prefix length \"129\"");
    fails("src 2001:db8::/255.0.0.0", 5, "bad IPv6 prefix length");
    fails("src 2001:db8:::1", 5, "is not an IPv6 address");
    fails("src 10.0.0.0/255.0.0.256", 5, "bad IPv4 netmask");
    fails("src 10.0.0.0/", 5, "bad IPv4 prefix length \"\"");
    fails("hdr(x) -m ip 10.0.0.300", 14, "bad address or CIDR");
}

#[test]
fn bad_regex() {
    fails(
        "path_reg ^/(api",
        10,
        "bad regex \"^/(api\": unclosed group",
    );
    fails("path -m reg ok [z-a]", 16, "bad regex \"[z-a]\"");
    fails("hdr_reg(x) a{2,1}", 12, "bad regex");
    let (_, message) = error("path_reg (");
    assert!(!message.contains('\n'), "{message:?}");
}

#[test]
fn bad_fetch_arguments() {
    fails("hdr x", 1, "\"hdr\" needs a header name, e.g. hdr(host)");
    fails("hdr() x", 1, "\"hdr\" needs a header name");
    fails(
        "hdr_beg x",
        1,
        "\"hdr_beg\" needs a header name, e.g. hdr_beg(host)",
    );
    fails("hdr(h@st) x", 6, "bad header name \"h@st\"");
    fails("hdr(,1) x", 5, "bad header name \"\"");
    fails("hdr(host,x) x", 10, "bad occurrence \"x\"");
    fails("hdr(host,1,2) x", 10, "bad occurrence \"1,2\"");
    fails("hdr(host x", 4, "\"hdr(\" is missing its closing \")\"");
    fails(
        "hdr(host),lower x",
        10,
        "converters (\",lower\") are not supported",
    );
    fails(
        "path,lower /x",
        5,
        "converters (\",lower\") are not supported",
    );
    fails("hdr(host)x y", 10, "unexpected \"x\" after the fetch");
    fails("path(x) /x", 5, "\"path\" takes no argument");
    fails("src() 10.0.0.1", 4, "\"src\" takes no argument");
}

#[test]
fn bad_dir_and_dom_patterns() {
    fails(
        "path_dom ..",
        10,
        "pattern \"..\" has nothing between its delimiters",
    );
    fails("path_dir / x", 10, "nothing between its delimiters");
}

#[test]
fn unterminated_quotes() {
    fails("hdr(ua) 'Mozilla 5", 9, "unterminated single quote");
    fails("hdr(ua) a \"b", 11, "unterminated double quote");
    fails("hdr(ua) \\x4", 9, "bad escape");
    fails("hdr(ua) \\xe9", 9, "ASCII byte");
}

#[test]
fn columns_count_characters_not_bytes() {
    fails("hdr(é) x", 5, "bad header name \"é\"");
    fails("hdr(x) 'é' \"é\" \"b", 16, "unterminated double quote");
    let (at, _) = error("hdr(x) -m é x");
    assert_eq!(at, 11);
}
