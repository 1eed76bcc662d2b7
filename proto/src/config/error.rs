//! Configuration errors: each names the path of the bad value and, when the
//! format tells, the line in the file.

use std::fmt;

/// One mistake in a configuration document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where the mistake is, e.g. `backends.web.servers[1].address`. Empty for
    /// errors about the whole document (a syntax error).
    pub path: String,
    /// The 1-based line in the source file, when the format gives one.
    pub line: Option<u32>,
    /// What is wrong, in words.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Every mistake found in a document (never empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The errors, each on its own line, prefixed by `source` (a file name).
    pub fn render(&self, source: &str) -> String {
        let mut out = String::new();
        for e in &self.0 {
            out.push_str(source);
            out.push(':');
            if let Some(line) = e.line {
                out.push_str(&line.to_string());
                out.push(':');
            }
            out.push(' ');
            if !e.path.is_empty() {
                out.push_str(&e.path);
                out.push_str(": ");
            }
            out.push_str(&e.message);
            out.push('\n');
        }
        out
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}
