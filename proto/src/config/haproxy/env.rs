//! Environment variables in a haproxy.cfg (`"${NAME}"`, `"$NAME"`: only
//! inside double quotes, as HAProxy), expanded into the text once, where
//! the file is read, so that the document the cluster replicates means the
//! same on every node. A variable that is not set expands to nothing, as
//! HAProxy does, with a note.

use crate::config::error::ConfigError;

/// The text with its variables expanded, and a note for each one not set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded {
    /// The text, variables replaced by their values (escaped so that they
    /// stay one quoted string, newlines as `\n`: lines do not move).
    pub text: String,
    /// One note per variable that is not set.
    pub notes: Vec<ConfigError>,
}

/// Expands the variables of a haproxy.cfg, reading them with `lookup`.
pub fn expand_env(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Expanded {
    let mut out = String::with_capacity(text.len());
    let mut notes = Vec::new();
    let (mut dq, mut sq, mut comment, mut line) = (false, false, false, 1u32);
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if c == '\n' {
            (dq, sq, comment) = (false, false, false);
            line += 1;
        } else if comment {
        } else if c == '\\' && !sq {
            out.push(c);
            if let Some((_, n)) = chars.next_if(|&(_, n)| n != '\n') {
                out.push(n);
            }
            continue;
        } else if c == '"' && !sq {
            dq = !dq;
        } else if c == '\'' && !dq {
            sq = !sq;
        } else if c == '#' && !dq && !sq {
            comment = true;
        } else if c == '$' && dq {
            if let Some((name, len)) = variable(&text[at + 1..]) {
                match lookup(name) {
                    Some(v) => out.push_str(&escaped(&v)),
                    None => notes.push(ConfigError {
                        path: String::new(),
                        line: Some(line),
                        message: format!(
                            "environment variable {name} is not set: it expands to nothing, as in HAProxy"
                        ),
                    }),
                }
                for _ in 0..len {
                    chars.next();
                }
                continue;
            }
        }
        out.push(c);
    }
    Expanded { text: out, notes }
}

/// `{NAME}` or `NAME` at the start of `rest`: the name and the characters
/// it takes.
fn variable(rest: &str) -> Option<(&str, usize)> {
    let ident = |s: &str| {
        s.char_indices()
            .find(|&(_, c)| !(c == '_' || c.is_ascii_alphanumeric()))
            .map_or(s.len(), |(i, _)| i)
    };
    if let Some(inner) = rest.strip_prefix('{') {
        let n = ident(inner);
        let starts_well = inner.starts_with(|c: char| c == '_' || c.is_ascii_alphabetic());
        (starts_well && inner[n..].starts_with('}')).then(|| (&inner[..n], n + 2))
    } else {
        let n = ident(rest);
        let starts_well = rest.starts_with(|c: char| c == '_' || c.is_ascii_alphabetic());
        starts_well.then(|| (&rest[..n], n))
    }
}

/// `v` written inside double quotes.
fn escaped(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' | '"' | '$' | '#' | '\'' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("8080".into()),
            "ODD" => Some("a\"b $c\nd".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_in_double_quotes_only() {
        let e = expand_env(
            "bind \"127.0.0.1:${PORT}\" '${PORT}' ${PORT} \"$PORT\"\n",
            env,
        );
        assert_eq!(
            e.text,
            "bind \"127.0.0.1:8080\" '${PORT}' ${PORT} \"8080\"\n"
        );
        assert!(e.notes.is_empty());
    }

    #[test]
    fn values_stay_one_word_on_one_line() {
        let e = expand_env("x \"${ODD}\"\n", env);
        assert_eq!(e.text, "x \"a\\\"b \\$c\\nd\"\n");
        let (stmts, errs) = super::super::lex::lex(&e.text);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(stmts[0].words[1].text, "a\"b $c\nd");
    }

    #[test]
    fn unset_is_empty_with_a_note() {
        let e = expand_env("a\nb \"x${NOPE}y\"\n", env);
        assert_eq!(e.text, "a\nb \"xy\"\n");
        assert_eq!(e.notes.len(), 1);
        assert_eq!(e.notes[0].line, Some(2));
        assert!(e.notes[0].message.contains("NOPE"));
    }

    #[test]
    fn escaped_dollars_comments_and_odd_forms_are_kept() {
        for t in [
            "\"\\${PORT}\"",
            "# \"${PORT}\"",
            "\"${1X}\"",
            "\"$ x\"",
            "\"${PORT\"",
        ] {
            assert_eq!(expand_env(t, env).text, t, "{t}");
        }
    }
}
