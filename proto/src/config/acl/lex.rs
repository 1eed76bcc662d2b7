//! Words of ACL and condition text as HAProxy's config parser splits them
//! (quotes, backslash escapes), their quoting back into text, and the
//! compiled-regex wrapper patterns keep.

use super::error::AclError;
use std::borrow::Cow;

/// One word of the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Token {
    /// The word after quotes and escapes are resolved.
    pub text: String,
    /// 1-based character column where the word starts.
    pub column: usize,
    /// Written without quotes or escapes, so `{`, `}`, `!`, `or` and `||`
    /// keep their meaning.
    pub bare: bool,
}

impl Token {
    /// The column of the character `offset` characters into the word; exact
    /// for bare words, the word's start otherwise.
    pub fn column_at(&self, offset: usize) -> usize {
        if self.bare {
            self.column + offset
        } else {
            self.column
        }
    }
}

/// Splits `text` into words at unquoted whitespace. As HAProxy: `"..."` and
/// `'...'` group (escapes work only inside double quotes); a backslash
/// escapes space, `\`, `#`, `'`, `"`, gives tab, newline and CR for `\t`,
/// `\n`, `\r`, and a byte for `\xHH` (ASCII only here); before any other
/// character it is kept as is, so regexes like `\.png` need no doubling.
pub(super) fn tokenize(text: &str) -> Result<Vec<Token>, AclError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut current: Option<Token> = None;
    let mut quote: Option<(char, usize)> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        if quote.is_none() && c.is_whitespace() {
            tokens.extend(current.take());
            i += 1;
            continue;
        }
        let token = current.get_or_insert_with(|| Token {
            text: String::new(),
            column,
            bare: true,
        });
        match (c, quote) {
            ('\'', None) | ('"', None) => {
                quote = Some((c, column));
                token.bare = false;
            }
            (q, Some((open, _))) if q == open => quote = None,
            ('\\', q) if q.map(|(open, _)| open) != Some('\'') => {
                let (escaped, used) = unescape(&chars[i + 1..], column)?;
                token.bare &= used == 0;
                token.text.push(escaped);
                i += used;
            }
            _ => token.text.push(c),
        }
        i += 1;
    }
    if let Some((open, column)) = quote {
        let kind = if open == '"' { "double" } else { "single" };
        return Err(AclError::new(column, format!("unterminated {kind} quote")));
    }
    tokens.extend(current);
    Ok(tokens)
}

/// The character a backslash followed by `rest` stands for, and how many
/// characters of `rest` it used.
fn unescape(rest: &[char], column: usize) -> Result<(char, usize), AclError> {
    Ok(match rest.first() {
        Some(&c @ (' ' | '\\' | '#' | '\'' | '"')) => (c, 1),
        Some('t') => ('\t', 1),
        Some('n') => ('\n', 1),
        Some('r') => ('\r', 1),
        Some('x') => {
            let hex: String = rest.iter().skip(1).take(2).collect();
            match u8::from_str_radix(&hex, 16) {
                Ok(b) if hex.len() == 2 && b.is_ascii() => (char::from(b), 3),
                _ => {
                    return Err(AclError::new(
                        column,
                        "bad escape: \\x needs two hex digits of an ASCII byte (00-7f)",
                    ))
                }
            }
        }
        _ => ('\\', 0),
    })
}

/// `word` written so that [`tokenize`] gives it back as one non-special word.
pub(super) fn quote(word: &str) -> Cow<'_, str> {
    let plain = !word.is_empty()
        && word != "{"
        && word != "}"
        && !word.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'')
        && !word
            .chars()
            .zip(word.chars().skip(1))
            .any(|(c, next)| c == '\\' && " \\#'\"tnrx".contains(next));
    if plain {
        Cow::Borrowed(word)
    } else if !word.contains('\'') {
        Cow::Owned(format!("'{word}'"))
    } else {
        let escaped = word.replace('\\', "\\\\").replace('"', "\\\"");
        Cow::Owned(format!("\"{escaped}\""))
    }
}

/// A compiled regex that compares, prints and serializes as its source.
#[derive(Debug, Clone)]
pub(super) struct Regex {
    pub source: String,
    pub compiled: regex::bytes::Regex,
}

impl Regex {
    /// Compiles `source`; the error is the regex library's reason, one line.
    pub fn new(source: &str, ignore_case: bool) -> Result<Regex, String> {
        regex::bytes::RegexBuilder::new(source)
            .case_insensitive(ignore_case)
            .build()
            .map(|compiled| Regex {
                source: source.to_owned(),
                compiled,
            })
            .map_err(|e| {
                let text = e.to_string();
                text.lines()
                    .find_map(|l| l.trim().strip_prefix("error: ").map(str::to_owned))
                    .unwrap_or_else(|| text.lines().last().unwrap_or_default().trim().to_owned())
            })
    }
}

impl PartialEq for Regex {
    fn eq(&self, other: &Regex) -> bool {
        self.source == other.source
    }
}
