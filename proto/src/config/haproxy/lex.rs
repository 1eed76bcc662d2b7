//! The words of a haproxy.cfg, as HAProxy's manual §2.2 reads them: one
//! statement per line, `#` comments, `"…"` with backslash escapes, `'…'`
//! literal, backslash escapes outside quotes, and a `\` at the end of a line
//! continuing the statement on the next (raftlb's addition: HAProxy 2.6
//! has no continuation). Environment variables are expanded before (see
//! `env`); one left in the text here is an error.

use crate::config::error::ConfigError;

/// One word of a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Word {
    /// The word after quotes and escapes are resolved.
    pub text: String,
    /// The word as written (quotes and escapes kept), for text that is
    /// read again by a parser with the same rules (ACLs, conditions).
    pub raw: String,
}

/// One statement: its words, and the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stmt {
    /// The 1-based line of its first word.
    pub line: u32,
    /// Its words (never empty).
    pub words: Vec<Word>,
}

impl Stmt {
    /// The text of word `i`, if there is one.
    pub fn arg(&self, i: usize) -> Option<&str> {
        self.words.get(i).map(|w| w.text.as_str())
    }

    /// The raw text of the words from `i` on, joined by spaces.
    pub fn raw_from(&self, i: usize) -> String {
        let raw: Vec<&str> = self.words.iter().skip(i).map(|w| w.raw.as_str()).collect();
        raw.join(" ")
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    None,
    Double,
    Single,
}

/// The scanner's state: the statements so far and the one being read.
struct Scan<'t> {
    text: &'t str,
    line: u32,
    stmts: Vec<Stmt>,
    errors: Vec<ConfigError>,
    current: Vec<Word>,
    start_line: u32,
    word: Option<(usize, String)>,
    quote: Quote,
}

impl Scan<'_> {
    fn err(&mut self, message: String) {
        self.errors.push(ConfigError {
            path: String::new(),
            line: Some(self.line),
            message,
        });
    }

    /// Appends `c` to the word (starting one at byte `at` if none).
    fn push(&mut self, at: usize, c: Option<char>) {
        if self.current.is_empty() && self.word.is_none() {
            self.start_line = self.line;
        }
        let w = self.word.get_or_insert_with(|| (at, String::new()));
        w.1.extend(c);
    }

    fn end_word(&mut self, end: usize) {
        if let Some((start, text)) = self.word.take() {
            let raw = self.text[start..end].to_string();
            self.current.push(Word { text, raw });
        }
    }

    fn end_stmt(&mut self, end: usize) {
        self.end_word(end);
        if !self.current.is_empty() {
            let words = std::mem::take(&mut self.current);
            self.stmts.push(Stmt {
                line: self.start_line,
                words,
            });
        }
    }
}

/// The statements of `text`, and every lexical mistake (each with its line).
pub(crate) fn lex(text: &str) -> (Vec<Stmt>, Vec<ConfigError>) {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut s = Scan {
        text,
        line: 1,
        stmts: Vec::new(),
        errors: Vec::new(),
        current: Vec::new(),
        start_line: 1,
        word: None,
        quote: Quote::None,
    };
    let mut i = 0;
    while i < chars.len() {
        i = step(&mut s, &chars, i);
    }
    if s.quote != Quote::None {
        unterminated(&mut s);
    }
    s.end_stmt(text.len());
    (s.stmts, s.errors)
}

/// Reads the character at `i`; returns where to go on.
fn step(s: &mut Scan, chars: &[(usize, char)], i: usize) -> usize {
    let (at, c) = chars[i];
    let next = chars.get(i + 1).map(|&(_, c)| c);
    match (s.quote, c) {
        (q, '\n') => {
            if q != Quote::None {
                unterminated(s);
            }
            s.end_stmt(at);
            s.line += 1;
        }
        (Quote::Single, '\'') | (Quote::Double, '"') => {
            s.quote = Quote::None;
            s.push(at, None);
        }
        (Quote::Single, c) => s.push(at, Some(c)),
        (Quote::None, '\\') if matches!(next, None | Some('\n')) => {
            // A continuation: the statement goes on on the next line.
            s.end_word(at);
            s.line += 1;
            return i + 2;
        }
        (Quote::None, '\\')
            if next == Some('\r') && chars.get(i + 2).map(|c| c.1) == Some('\n') =>
        {
            s.end_word(at);
            s.line += 1;
            return i + 3;
        }
        (_, '\\') => return escape(s, chars, i),
        (Quote::Double, '$')
            if next.is_some_and(|n| n == '{' || n == '_' || n.is_ascii_alphabetic()) =>
        {
            s.err("an environment variable was not expanded: raftlb expands them where it reads the file (`raftlb check`, `run --lb`, `config apply`)".into());
            s.push(at, Some(c));
        }
        (Quote::Double, c) => s.push(at, Some(c)),
        (Quote::None, '#') => {
            s.end_word(at);
            return chars[i..]
                .iter()
                .position(|&(_, c)| c == '\n')
                .map_or(chars.len(), |p| i + p);
        }
        (Quote::None, '"') => {
            s.quote = Quote::Double;
            s.push(at, None);
        }
        (Quote::None, '\'') => {
            s.quote = Quote::Single;
            s.push(at, None);
        }
        (Quote::None, c) if c.is_whitespace() => s.end_word(at),
        (Quote::None, c) => s.push(at, Some(c)),
    }
    i + 1
}

fn unterminated(s: &mut Scan) {
    let kind = if s.quote == Quote::Double {
        "double"
    } else {
        "single"
    };
    s.err(format!("unterminated {kind} quote"));
    s.quote = Quote::None;
}

/// A backslash at `i` (outside single quotes), as HAProxy: `\ `, `\\`,
/// `\#`, `\"`, `\'`, `\$` stand for that character, `\t`, `\n`, `\r` for
/// tab, newline and CR, `\xHH` for a byte; before anything else the
/// backslash is kept.
fn escape(s: &mut Scan, chars: &[(usize, char)], i: usize) -> usize {
    let at = chars[i].0;
    let next = chars.get(i + 1).map(|&(_, c)| c);
    let (out, used) = match next {
        Some(c @ (' ' | '\\' | '#' | '"' | '\'' | '$')) => (c, 1),
        Some('t') => ('\t', 1),
        Some('n') => ('\n', 1),
        Some('r') => ('\r', 1),
        Some('x') => {
            let hex: String = chars[i + 2..].iter().take(2).map(|&(_, c)| c).collect();
            match u8::from_str_radix(&hex, 16) {
                Ok(b) if hex.len() == 2 && b.is_ascii() => (char::from(b), 3),
                _ => {
                    s.err(format!(
                        "bad escape \\x{hex}: \\x needs two hex digits of an ASCII byte (00-7f)"
                    ));
                    ('\\', 0)
                }
            }
        }
        _ => ('\\', 0),
    };
    s.push(at, Some(out));
    i + 1 + used
}

#[cfg(test)]
#[path = "lex_tests.rs"]
mod tests;
