//! Conditions (HAProxy §7.2): ACL names, each optionally negated with `!`,
//! side by side for AND, in groups separated by `or` or `||` for OR (AND
//! binds tighter; there are no parentheses); `{ ... }` holds an anonymous
//! ACL.

use super::error::AclError;
use super::expr::Acl;
use super::lex::{self, Token};
use super::parse::{is_fetch_keyword, parse_acl};
use super::request::RequestView;
use super::set::AclSet;
use crate::config::suggest::closest;
use serde::{Deserialize, Serialize};
use std::fmt;

/// HAProxy's predefined ACLs (§7.4) that apply here. A name defined in the
/// [`AclSet`] takes precedence, as in HAProxy.
const PREDEFINED: &[(&str, &str)] = &[
    ("FALSE", "always_false"),
    ("LOCALHOST", "src 127.0.0.1/8 ::1"),
    ("METH_CONNECT", "method CONNECT"),
    ("METH_DELETE", "method DELETE"),
    ("METH_GET", "method GET HEAD"),
    ("METH_HEAD", "method HEAD"),
    ("METH_OPTIONS", "method OPTIONS"),
    ("METH_POST", "method POST"),
    ("METH_PUT", "method PUT"),
    ("METH_TRACE", "method TRACE"),
    ("TRUE", "always_true"),
];

/// A parsed condition: true when all terms of any group are true. The ACLs
/// it names are copied in, so it evaluates on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    groups: Vec<Vec<Term>>,
}

/// One ACL in a condition, maybe negated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Term {
    /// Written with `!`: true when the ACL does not match.
    pub negated: bool,
    /// The ACL.
    pub acl: AclRef,
}

/// The ACL a term tests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AclRef {
    /// A named ACL (from the set, or predefined) with its definitions; it
    /// matches when any definition does.
    Named {
        /// The name as written.
        name: String,
        /// Its definitions.
        definitions: Vec<Acl>,
    },
    /// An ACL written in place between braces.
    Anonymous(Acl),
}

impl Condition {
    /// Every fetch its ACLs read: to check them against what the proxy
    /// holds where the condition is used (a counter its stick table
    /// stores; no HTTP fetch before a request).
    pub fn fetches(&self) -> impl Iterator<Item = &crate::config::acl::Fetch> + '_ {
        self.groups.iter().flatten().flat_map(|t| {
            let acls: &[Acl] = match &t.acl {
                AclRef::Named { definitions, .. } => definitions,
                AclRef::Anonymous(a) => std::slice::from_ref(a),
            };
            acls.iter().map(|a| a.fetch())
        })
    }

    /// Parses `text` (e.g. `is_api !is_post or office`), resolving names in
    /// `acls` and then among the predefined ACLs. Columns in the error count
    /// from 1 at the first character of `text`.
    pub fn parse(text: &str, acls: &AclSet) -> Result<Condition, AclError> {
        let tokens = lex::tokenize(text)?;
        let mut groups = Vec::new();
        let mut group = Vec::new();
        let mut last_or = None;
        let mut negation: Option<usize> = None;
        let mut negated = false;
        let mut i = 0;
        while let Some(token) = tokens.get(i) {
            i += 1;
            let bangs = if token.bare {
                token.text.chars().take_while(|&c| c == '!').count()
            } else {
                0
            };
            if bangs > 0 {
                negated ^= bangs % 2 == 1;
                negation.get_or_insert(token.column);
            }
            let word = &token.text[bangs..];
            let column = token.column + bangs;
            let keyword = |k: &str| token.bare && word == k;
            if word.is_empty() {
                continue;
            }
            if keyword("||") || (token.bare && word.eq_ignore_ascii_case("or")) {
                if let Some(bang) = negation {
                    return Err(dangling_bang(bang));
                }
                if group.is_empty() {
                    return Err(AclError::new(
                        column,
                        format!("dangling \"{word}\": no ACL before it"),
                    ));
                }
                groups.push(std::mem::take(&mut group));
                last_or = Some((column, word));
                continue;
            }
            let acl = if keyword("{") {
                let Some(close) = tokens[i..].iter().position(|t| t.bare && t.text == "}") else {
                    return Err(AclError::new(
                        column,
                        "unbalanced braces: this \"{\" is never closed by a \"}\"",
                    ));
                };
                let inner = &tokens[i..i + close];
                let acl = parse_acl(inner, tokens[i + close].column)?;
                i += close + 1;
                AclRef::Anonymous(acl)
            } else if keyword("}") {
                return Err(AclError::new(
                    column,
                    "unbalanced braces: this \"}\" closes no \"{\"",
                ));
            } else {
                resolve(word, column, acls)?
            };
            group.push(Term { negated, acl });
            negated = false;
            negation = None;
        }
        if let Some(bang) = negation {
            return Err(dangling_bang(bang));
        }
        if group.is_empty() {
            return Err(match last_or {
                Some((column, word)) => {
                    AclError::new(column, format!("dangling \"{word}\": no ACL after it"))
                }
                None => AclError::new(1, "empty condition: name at least one ACL"),
            });
        }
        groups.push(group);
        Ok(Condition { groups })
    }

    /// Whether the request meets the condition.
    pub fn eval(&self, req: &RequestView<'_>) -> bool {
        self.groups
            .iter()
            .any(|group| group.iter().all(|term| term.matches(req)))
    }

    /// The OR groups, each a conjunction of terms.
    pub fn groups(&self) -> &[Vec<Term>] {
        &self.groups
    }

    /// The names of the ACLs the condition uses, in order (with repeats).
    pub fn acl_names(&self) -> impl Iterator<Item = &str> {
        self.groups.iter().flatten().filter_map(|t| match &t.acl {
            AclRef::Named { name, .. } => Some(name.as_str()),
            AclRef::Anonymous(_) => None,
        })
    }
}

impl Term {
    /// Whether this term is true for the request.
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        let matched = match &self.acl {
            AclRef::Named { definitions, .. } => definitions.iter().any(|a| a.matches(req)),
            AclRef::Anonymous(acl) => acl.matches(req),
        };
        matched != self.negated
    }
}

fn dangling_bang(column: usize) -> AclError {
    AclError::new(column, "\"!\" must be followed by an ACL")
}

/// The named ACL `word`, from the set or the predefined ones.
fn resolve(word: &str, column: usize, acls: &AclSet) -> Result<AclRef, AclError> {
    let definitions = if let Some(defs) = acls.get(word) {
        defs.to_vec()
    } else if let Some((_, text)) = PREDEFINED.iter().find(|(n, _)| *n == word) {
        let tokens: Vec<Token> = lex::tokenize(text).expect("predefined ACLs tokenize");
        vec![parse_acl(&tokens, 0).expect("predefined ACLs parse")]
    } else {
        let known = acls.names().chain(PREDEFINED.iter().map(|(n, _)| *n));
        let hint = match closest(word, known) {
            Some(name) => format!(" (did you mean \"{name}\"?)"),
            None if is_fetch_keyword(word) => {
                format!(" (to test a fetch in place, put it in braces: {{ {word} ... }})")
            }
            None => String::new(),
        };
        return Err(AclError::new(
            column,
            format!("unknown ACL \"{word}\"{hint}"),
        ));
    };
    Ok(AclRef::Named {
        name: word.to_owned(),
        definitions,
    })
}

/// Canonical text: `a !b or { path_beg /x }`.
impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (g, group) in self.groups.iter().enumerate() {
            if g > 0 {
                f.write_str(" or ")?;
            }
            for (t, term) in group.iter().enumerate() {
                if t > 0 {
                    f.write_str(" ")?;
                }
                if term.negated {
                    f.write_str("!")?;
                }
                match &term.acl {
                    AclRef::Named { name, .. } => f.write_str(name)?,
                    AclRef::Anonymous(acl) => write!(f, "{{ {acl} }}")?,
                }
            }
        }
        Ok(())
    }
}
