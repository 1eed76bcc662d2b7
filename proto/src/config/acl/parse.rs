//! Reading one ACL expression from its words: `<fetch> [flags] <patterns>`.
//! Writing it back as canonical text is in `text`.

use super::error::AclError;
use super::expr::{Acl, CounterKind, CounterOf, Fetch, MatchMethod, Pattern};
use super::int::parse_int_patterns;
use super::ip::IpPattern;
use super::lex::{self, Regex, Token};
use crate::config::suggest::closest;

/// What a fetch keyword names: the fetch kind, its default matching method.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Path,
    Header {
        full_line: bool,
    },
    Method,
    Src,
    AlwaysTrue,
    AlwaysFalse,
    /// `sc0_*` (`sc0`) or `src_*([table])`.
    Counter {
        sc0: bool,
        kind: CounterKind,
    },
}

/// The fetch keywords: name, kind, implied matching method.
const KEYWORDS: &[(&str, Kind, MatchMethod)] = &[
    ("path", Kind::Path, MatchMethod::Str),
    ("path_beg", Kind::Path, MatchMethod::Beg),
    ("path_dir", Kind::Path, MatchMethod::Dir),
    ("path_dom", Kind::Path, MatchMethod::Dom),
    ("path_end", Kind::Path, MatchMethod::End),
    ("path_reg", Kind::Path, MatchMethod::Reg),
    ("path_sub", Kind::Path, MatchMethod::Sub),
    ("hdr", HDR, MatchMethod::Str),
    ("hdr_beg", HDR, MatchMethod::Beg),
    ("hdr_dir", HDR, MatchMethod::Dir),
    ("hdr_dom", HDR, MatchMethod::Dom),
    ("hdr_end", HDR, MatchMethod::End),
    ("hdr_reg", HDR, MatchMethod::Reg),
    ("hdr_sub", HDR, MatchMethod::Sub),
    ("req.hdr", HDR, MatchMethod::Str),
    (
        "req.fhdr",
        Kind::Header { full_line: true },
        MatchMethod::Str,
    ),
    ("method", Kind::Method, MatchMethod::Str),
    ("src", Kind::Src, MatchMethod::Ip),
    ("always_true", Kind::AlwaysTrue, MatchMethod::Bool),
    ("always_false", Kind::AlwaysFalse, MatchMethod::Bool),
    ("sc0_conn_cur", sc0(CounterKind::ConnCur), MatchMethod::Int),
    (
        "sc0_conn_rate",
        sc0(CounterKind::ConnRate),
        MatchMethod::Int,
    ),
    (
        "sc0_http_req_rate",
        sc0(CounterKind::HttpReqRate),
        MatchMethod::Int,
    ),
    (
        "sc0_bytes_in_rate",
        sc0(CounterKind::BytesInRate),
        MatchMethod::Int,
    ),
    ("src_conn_cur", src(CounterKind::ConnCur), MatchMethod::Int),
    (
        "src_conn_rate",
        src(CounterKind::ConnRate),
        MatchMethod::Int,
    ),
    (
        "src_http_req_rate",
        src(CounterKind::HttpReqRate),
        MatchMethod::Int,
    ),
    (
        "src_bytes_in_rate",
        src(CounterKind::BytesInRate),
        MatchMethod::Int,
    ),
];

const fn sc0(kind: CounterKind) -> Kind {
    Kind::Counter { sc0: true, kind }
}

const fn src(kind: CounterKind) -> Kind {
    Kind::Counter { sc0: false, kind }
}
const HDR: Kind = Kind::Header { full_line: false };

/// The `-m` methods this implementation has.
const METHODS: &[MatchMethod] = &[
    MatchMethod::Found,
    MatchMethod::Bool,
    MatchMethod::Str,
    MatchMethod::Beg,
    MatchMethod::End,
    MatchMethod::Sub,
    MatchMethod::Dir,
    MatchMethod::Dom,
    MatchMethod::Reg,
    MatchMethod::Ip,
    MatchMethod::Int,
];

impl Acl {
    /// Parses one ACL definition, e.g. `path_beg /blog /static`. Columns in
    /// the error count from 1 at the first character of `text`.
    pub fn parse(text: &str) -> Result<Acl, AclError> {
        let tokens = lex::tokenize(text)?;
        parse_acl(&tokens, text.chars().count() + 1)
    }
}

/// Parses `tokens` as one ACL. `end_column` is where text ends (or the
/// closing brace of an anonymous ACL), for "missing" errors.
pub(super) fn parse_acl(tokens: &[Token], end_column: usize) -> Result<Acl, AclError> {
    let Some((first, rest)) = tokens.split_first() else {
        return Err(AclError::new(
            end_column,
            "empty ACL: expected a fetch and patterns, e.g. \"path_beg /blog\"",
        ));
    };
    let (keyword, kind, implied, fetch) = parse_fetch(first)?;
    let flags = parse_flags(rest, end_column)?;
    let method = match flags.forced {
        Some((m, column)) => {
            if !compatible(kind, m) {
                return Err(AclError::new(
                    column,
                    format!(
                        "matching method \"{}\" cannot be used with fetch \"{keyword}\"",
                        m.as_str()
                    ),
                ));
            }
            m
        }
        None => implied,
    };
    // HAProxy §7.3.6: the `method` ACL matches case-insensitively.
    let ignore_case = flags.ignore_case || (kind == Kind::Method && flags.forced.is_none());

    let words = &rest[flags.consumed..];
    check_pattern_count(words, keyword, kind, method, end_column)?;
    let patterns = if method == MatchMethod::Int {
        parse_int_patterns(words, end_column)?
            .into_iter()
            .map(Pattern::Int)
            .collect()
    } else {
        words
            .iter()
            .map(|w| parse_pattern(w, method, ignore_case))
            .collect::<Result<_, _>>()?
    };
    Ok(Acl {
        fetch,
        method,
        ignore_case,
        patterns,
    })
}

/// The flags before an ACL's patterns.
struct Flags {
    /// `-i` was given.
    ignore_case: bool,
    /// `-m <method>`, with the method's column.
    forced: Option<(MatchMethod, usize)>,
    /// How many words the flags took (with `--`, if any).
    consumed: usize,
}

/// Reads the flags (`-i`, `-m <method>`, `--`) at the start of `rest`.
fn parse_flags(rest: &[Token], end_column: usize) -> Result<Flags, AclError> {
    let mut ignore_case = false;
    let mut forced: Option<(MatchMethod, usize)> = None;
    let mut i = 0;
    while let Some(flag) = rest.get(i).filter(|t| t.text.starts_with('-')) {
        i += 1;
        match flag.text.as_str() {
            "--" => break,
            "-i" => ignore_case = true,
            "-m" => {
                let Some(name) = rest.get(i) else {
                    return Err(AclError::new(
                        end_column,
                        format!("\"-m\" needs a matching method ({})", method_list()),
                    ));
                };
                i += 1;
                if forced.is_some() {
                    return Err(AclError::new(
                        flag.column,
                        "only one \"-m\" matching method may be given",
                    ));
                }
                forced = Some((parse_method(name)?, name.column));
            }
            _ => return Err(unsupported_flag(flag)),
        }
    }
    Ok(Flags {
        ignore_case,
        forced,
        consumed: i,
    })
}

/// The error for a flag other than `-i`, `-m` and `--`.
fn unsupported_flag(flag: &Token) -> AclError {
    match flag.text.as_str() {
        "-f" => AclError::new(
            flag.column,
            "flag \"-f\" (patterns from a file) is not supported: write the patterns inline",
        ),
        "-M" | "-u" | "-n" => AclError::new(
            flag.column,
            format!(
                "flag \"{}\" is not supported (flags are -i, -m and --)",
                flag.text
            ),
        ),
        other => AclError::new(
            flag.column,
            format!(
                "unknown flag \"{other}\" (flags are -i, -m and --; \
                 put \"--\" before a pattern that begins with \"-\")"
            ),
        ),
    }
}

/// `found` and `bool` take no pattern; every other method needs one at least.
fn check_pattern_count(
    words: &[Token],
    keyword: &str,
    kind: Kind,
    method: MatchMethod,
    end_column: usize,
) -> Result<(), AclError> {
    if matches!(method, MatchMethod::Found | MatchMethod::Bool) {
        if let Some(extra) = words.first() {
            return Err(AclError::new(
                extra.column,
                format!(
                    "\"{keyword}\" with matching method \"{}\" takes no pattern",
                    method.as_str()
                ),
            ));
        }
    } else if words.is_empty() {
        return Err(AclError::new(
            end_column,
            format!(
                "missing pattern: \"{keyword}\" needs at least one value to match{}",
                if matches!(kind, Kind::Header { .. }) {
                    " (or \"-m found\" to test that the header is present)"
                } else {
                    ""
                }
            ),
        ));
    }
    Ok(())
}

/// Reads `name[(args)]` into the keyword, its kind and implied method, and
/// the fetch with its arguments.
fn parse_fetch(token: &Token) -> Result<(&str, Kind, MatchMethod, Fetch), AclError> {
    let text = token.text.as_str();
    let name_end = text.find(['(', ',']).unwrap_or(text.len());
    let name = &text[..name_end];
    let (keyword, kind, implied) = find_keyword(token, name)?;
    let column_of = |byte: usize| token.column_at(text[..byte].chars().count());
    let args = fetch_args(text, name, name_end, &column_of)?;
    let fetch = match kind {
        Kind::Header { full_line } => {
            let Some((args, start)) = args.filter(|(a, _)| !a.is_empty()) else {
                return Err(AclError::new(
                    token.column,
                    format!("\"{name}\" needs a header name, e.g. {name}(host)"),
                ));
            };
            header_fetch(args, start, full_line, &column_of)?
        }
        Kind::Counter { sc0: false, kind } => {
            let table = match args {
                None => None,
                Some((a, start)) if a.is_empty() || a.contains(',') => {
                    return Err(AclError::new(
                        column_of(start),
                        format!("\"{name}\" takes one argument, a stick table's name, or none"),
                    ))
                }
                Some((a, _)) => Some(a.to_string()),
            };
            Fetch::Counter {
                of: CounterOf::Src { table },
                kind,
            }
        }
        _ if args.is_some() => {
            return Err(AclError::new(
                column_of(name_end),
                format!("\"{name}\" takes no argument"),
            ))
        }
        Kind::Path => Fetch::Path,
        Kind::Method => Fetch::Method,
        Kind::Src => Fetch::Src,
        Kind::AlwaysTrue => Fetch::AlwaysTrue,
        Kind::AlwaysFalse => Fetch::AlwaysFalse,
        Kind::Counter { sc0: true, kind } => Fetch::Counter {
            of: CounterOf::Sc0,
            kind,
        },
    };
    Ok((keyword, kind, implied, fetch))
}

/// The entry of [`KEYWORDS`] named `name`, or an error with a suggestion.
fn find_keyword(token: &Token, name: &str) -> Result<(&'static str, Kind, MatchMethod), AclError> {
    if let Some(&found) = KEYWORDS.iter().find(|(k, ..)| *k == name) {
        return Ok(found);
    }
    let hint = match closest(name, KEYWORDS.iter().map(|(k, ..)| *k)) {
        Some(k) => format!(" (did you mean \"{k}\"?)"),
        None => {
            let all: Vec<&str> = KEYWORDS.iter().map(|(k, ..)| *k).collect();
            format!(" (known fetches: {})", all.join(", "))
        }
    };
    Err(AclError::new(
        token.column,
        format!("unknown fetch \"{name}\"{hint}"),
    ))
}

/// The text between the parentheses after the fetch's name (with the byte
/// where it starts), if any; nothing may follow them.
fn fetch_args<'t>(
    text: &'t str,
    name: &str,
    name_end: usize,
    column_of: &dyn Fn(usize) -> usize,
) -> Result<Option<(&'t str, usize)>, AclError> {
    let mut args: Option<(&str, usize)> = None;
    let mut after = name_end;
    if text[name_end..].starts_with('(') {
        let Some(close) = text[name_end..].find(')') else {
            return Err(AclError::new(
                column_of(name_end),
                format!("\"{name}(\" is missing its closing \")\""),
            ));
        };
        args = Some((&text[name_end + 1..name_end + close], name_end + 1));
        after = name_end + close + 1;
    }
    if after < text.len() {
        let message = if text[after..].starts_with(',') {
            format!("converters (\"{}\") are not supported", &text[after..])
        } else {
            format!("unexpected \"{}\" after the fetch", &text[after..])
        };
        return Err(AclError::new(column_of(after), message));
    }
    Ok(args)
}

/// `<name>[,<occ>]` of a header fetch; `start` is the byte where `args`
/// starts in the fetch's text.
fn header_fetch(
    args: &str,
    start: usize,
    full_line: bool,
    column_of: &dyn Fn(usize) -> usize,
) -> Result<Fetch, AclError> {
    let (header, occurrence) = match args.split_once(',') {
        None => (args, 0),
        Some((header, occ)) => match occ.parse::<i32>() {
            Ok(n) => (header, n),
            Err(_) => {
                return Err(AclError::new(
                    column_of(start + header.len() + 1),
                    format!("bad occurrence \"{occ}\": expected a number such as 1 or -1"),
                ))
            }
        },
    };
    if let Some(bad) = header
        .find(|c: char| !is_tchar(c))
        .or(header.is_empty().then_some(0))
    {
        return Err(AclError::new(
            column_of(start + bad),
            format!("bad header name \"{header}\""),
        ));
    }
    Ok(Fetch::Header {
        name: header.to_ascii_lowercase(),
        occurrence,
        full_line,
    })
}

/// RFC 9110 token characters, those of a header name.
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn parse_method(token: &Token) -> Result<MatchMethod, AclError> {
    let name = token.text.as_str();
    if let Some(m) = METHODS.iter().find(|m| m.as_str() == name) {
        return Ok(*m);
    }
    let message = if ["bin", "len"].contains(&name) {
        format!(
            "matching method \"{name}\" is not supported ({})",
            method_list()
        )
    } else {
        let hint = match closest(name, METHODS.iter().map(|m| m.as_str())) {
            Some(m) => format!("did you mean \"{m}\"?"),
            None => method_list(),
        };
        format!("unknown matching method \"{name}\" ({hint})")
    };
    Err(AclError::new(token.column, message))
}

fn method_list() -> String {
    let names: Vec<&str> = METHODS.iter().map(|m| m.as_str()).collect();
    format!("one of {}", names.join(", "))
}

/// Whether `-m method` applies to what `kind` fetches.
fn compatible(kind: Kind, method: MatchMethod) -> bool {
    match kind {
        Kind::AlwaysTrue | Kind::AlwaysFalse => {
            matches!(method, MatchMethod::Bool | MatchMethod::Found)
        }
        Kind::Src => matches!(method, MatchMethod::Ip | MatchMethod::Found),
        Kind::Counter { .. } => matches!(method, MatchMethod::Int | MatchMethod::Found),
        Kind::Path | Kind::Header { .. } | Kind::Method => method != MatchMethod::Bool,
    }
}

fn parse_pattern(
    word: &Token,
    method: MatchMethod,
    ignore_case: bool,
) -> Result<Pattern, AclError> {
    let text = &word.text;
    let folded = || {
        if ignore_case {
            text.to_ascii_lowercase()
        } else {
            text.clone()
        }
    };
    Ok(match method {
        MatchMethod::Reg => Pattern::Regex(
            Regex::new(text, ignore_case)
                .map_err(|e| AclError::new(word.column, format!("bad regex \"{text}\": {e}")))?,
        ),
        MatchMethod::Ip => Pattern::Ip(IpPattern::parse(text).map_err(|e| {
            AclError::new(word.column, format!("bad address or CIDR \"{text}\": {e}"))
        })?),
        MatchMethod::Dir | MatchMethod::Dom => {
            let delimiters: &[char] = if method == MatchMethod::Dir {
                &['/', '?']
            } else {
                &['/', '?', '.', ':']
            };
            // As HAProxy: delimiters at the pattern's ends are ignored.
            let trimmed = folded().trim_matches(delimiters).to_owned();
            if trimmed.is_empty() {
                return Err(AclError::new(
                    word.column,
                    format!("pattern \"{text}\" has nothing between its delimiters"),
                ));
            }
            Pattern::Text(trimmed)
        }
        _ => Pattern::Text(folded()),
    })
}

/// Whether `word` (maybe with arguments) starts with a fetch keyword.
pub(super) fn is_fetch_keyword(word: &str) -> bool {
    let name = word.split(['(', ',']).next().unwrap_or(word);
    KEYWORDS.iter().any(|(k, ..)| *k == name)
}

/// The matching method fetch keyword `keyword` implies, if it is one.
pub(super) fn implied_method(keyword: &str) -> Option<MatchMethod> {
    KEYWORDS
        .iter()
        .find(|(k, ..)| *k == keyword)
        .map(|(_, _, m)| *m)
}
