//! The admin API's requests and answers as the routes see them: a [`Req`]
//! read whole, its query string percent-decoded (a bad escape is the
//! client's mistake, not a panic), and an [`Answer`] of a status and a body.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Serialize;
use std::collections::BTreeMap;

/// A request as the routes see it.
pub(super) struct Req {
    pub(super) method: String,
    pub(super) path: String,
    pub(super) query: BTreeMap<String, String>,
    pub(super) body: String,
}

/// Reads a query string (`a=1&b=x%2Fy`) into its keys and values: `Err`
/// says what is wrong with it (a 400).
pub(super) fn parse_query(qs: &str) -> Result<BTreeMap<String, String>, String> {
    qs.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((unescape(k)?, unescape(v)?))
        })
        .collect()
}

/// Undoes percent-encoding (`%2F`) and `+` (a space); a `%` without two
/// hex digits after it, or bytes that are not UTF-8 once decoded, are an
/// error.
fn unescape(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let hex = |i: usize| b.get(i).is_some_and(u8::is_ascii_hexdigit);
    if (0..b.len()).any(|i| b[i] == b'%' && !(hex(i + 1) && hex(i + 2))) {
        return Err(format!(
            "query: {s:?}: a % must be followed by two hex digits"
        ));
    }
    let spaced = s.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|v| v.into_owned())
        .map_err(|_| format!("query: {s:?} is not UTF-8 once decoded"))
}

/// What [`escape`] leaves as it is: letters, digits and `-_.~`.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes a query value.
pub fn escape(s: &str) -> String {
    utf8_percent_encode(s, QUERY_VALUE).to_string()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_round_trip() {
        for v in ["web/s1", "a b&c=d", "é%", "+", ""] {
            assert_eq!(unescape(&escape(v)).as_deref(), Ok(v));
        }
        assert_eq!(escape("web/s 1"), "web%2Fs%201");
        assert_eq!(unescape("a+b%2B").as_deref(), Ok("a b+"));
        let q = parse_query("name=web%2Fs1&key=&flag&&x=%C3%A9").unwrap();
        let got: Vec<(&str, &str)> = q.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            [("flag", ""), ("key", ""), ("name", "web/s1"), ("x", "é")]
        );
    }

    #[test]
    fn bad_escapes_and_bytes_that_are_not_utf8_are_errors() {
        for bad in ["%zz", "%4", "%", "a%", "%aé", "%a%", "%C3%28", "%FF", "%e9"] {
            assert!(unescape(bad).is_err(), "{bad:?}");
            assert!(parse_query(&format!("name={bad}")).is_err(), "{bad:?}");
            assert!(parse_query(&format!("{bad}=1")).is_err(), "{bad:?}");
        }
    }
}
