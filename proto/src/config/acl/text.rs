//! An ACL's canonical text: its `Display`, which parses back to an equal
//! [`Acl`], and the serde conversions through that text.

use super::error::AclError;
use super::expr::{Acl, CounterOf, Fetch, MatchMethod, Pattern};
use super::lex;
use super::parse::implied_method;
use std::fmt;

impl From<Acl> for String {
    fn from(acl: Acl) -> String {
        acl.to_string()
    }
}

impl TryFrom<String> for Acl {
    type Error = AclError;

    fn try_from(text: String) -> Result<Acl, AclError> {
        Acl::parse(&text)
    }
}

/// Canonical text: the suffixed keyword when one exists (`hdr_beg(host)`),
/// else the fetch with `-m`; `-i` when it is not implied; `--` when a pattern
/// begins with `-`.
impl fmt::Display for Acl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.method;
        let (base, args, suffixable) = self.keyword_parts();
        let base = base.as_str();
        let implied = implied_method(base);
        let suffixed = suffixable
            && matches!(
                m,
                MatchMethod::Beg
                    | MatchMethod::End
                    | MatchMethod::Sub
                    | MatchMethod::Dir
                    | MatchMethod::Dom
                    | MatchMethod::Reg
            );
        let keyword = if suffixed {
            format!("{base}_{}{args}", m.as_str())
        } else {
            format!("{base}{args}")
        };
        // A header name may hold a quote character.
        f.write_str(&lex::quote(&keyword))?;
        let method_default = self.fetch == Fetch::Method && implied == Some(m) && self.ignore_case;
        if self.ignore_case && !method_default {
            f.write_str(" -i")?;
        }
        let method_forced =
            self.fetch == Fetch::Method && m == MatchMethod::Str && !self.ignore_case;
        if (!suffixed && implied != Some(m)) || method_forced {
            write!(f, " -m {}", m.as_str())?;
        }
        // Methods read better in capitals; case does not matter to them here.
        let upper = self.fetch == Fetch::Method && self.ignore_case;
        let text = |p: &Pattern| match p {
            Pattern::Text(t) if upper => t.to_ascii_uppercase(),
            Pattern::Text(t) => t.clone(),
            Pattern::Regex(r) => r.source.clone(),
            Pattern::Ip(ip) => ip.to_string(),
            Pattern::Int(i) => i.to_string(),
        };
        if self
            .patterns
            .first()
            .is_some_and(|p| text(p).starts_with('-'))
        {
            f.write_str(" --")?;
        }
        for p in &self.patterns {
            match p {
                // `gt 100`: an operator and a number, two words.
                Pattern::Int(i) => write!(f, " {i}")?,
                p => write!(f, " {}", lex::quote(&text(p)))?,
            }
        }
        Ok(())
    }
}

impl Acl {
    /// The fetch's keyword without a method suffix, its arguments as
    /// written (`(host)`), and whether a method suffix may follow.
    fn keyword_parts(&self) -> (String, String, bool) {
        let s = |k: &str| k.to_string();
        match &self.fetch {
            Fetch::Path => (s("path"), String::new(), true),
            Fetch::Counter { of, kind } => {
                let (prefix, args) = match of {
                    CounterOf::Sc0 => ("sc0", String::new()),
                    CounterOf::Src { table: None } => ("src", String::new()),
                    CounterOf::Src { table: Some(t) } => ("src", format!("({t})")),
                };
                (format!("{prefix}_{}", kind.as_str()), args, false)
            }
            Fetch::Header {
                name,
                occurrence,
                full_line,
            } => {
                let args = match occurrence {
                    0 => format!("({name})"),
                    n => format!("({name},{n})"),
                };
                let base = if *full_line { "req.fhdr" } else { "hdr" };
                (s(base), args, !full_line)
            }
            Fetch::Method => (s("method"), String::new(), false),
            Fetch::Src => (s("src"), String::new(), false),
            Fetch::AlwaysTrue => (s("always_true"), String::new(), false),
            Fetch::AlwaysFalse => (s("always_false"), String::new(), false),
        }
    }
}
