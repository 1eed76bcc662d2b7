//! A cluster config written as TOML (`raftlb convert`): the document tree a
//! haproxy.cfg (or a YAML or JSON document) is read into, printed as the
//! `lb.toml` that gives the same validated config. The document is
//! validated first; nothing is printed for an invalid one. A haproxy.cfg's
//! comments that sit on lines of their own go with the statement after
//! them: before the TOML line it became, or at the top when it became none
//! (`user`, `log`, a `defaults` header).

use super::error::{ConfigError, ConfigErrors};
use super::format::Format;
use super::tree::{self, Entry, Val};
use super::{haproxy, parse};
use std::collections::BTreeMap;

/// The collections whose members get a `[KEY.NAME]` header each.
const NAMED: &[&str] = &["frontends", "backends", "stick_tables"];

/// `text` in `format` as TOML, with the notes on it; every error if it is
/// not valid.
pub fn to_toml(text: &str, format: Format) -> Result<(String, Vec<ConfigError>), ConfigErrors> {
    let (_, notes) = parse::parse(text, format)?;
    let root = match format {
        Format::Haproxy => haproxy::translate(text).root,
        other => tree::load(text, other)?,
    };
    let mut p = Printer {
        out: String::new(),
        comments: match format {
            Format::Haproxy => comments(text),
            _ => BTreeMap::new(),
        },
    };
    if let Val::Table(entries) = &root.val {
        top(&mut p, entries);
    }
    let last = p.comments.remove(&u32::MAX).unwrap_or_default();
    let rest: Vec<String> = std::mem::take(&mut p.comments)
        .into_values()
        .flatten()
        .collect();
    let mut out = match rest.is_empty() {
        true => p.out,
        false => format!("{}\n\n{}", rest.join("\n"), p.out),
    };
    if !last.is_empty() {
        out = format!("{out}\n{}\n", last.join("\n"));
    }
    Ok((out, notes))
}

/// What is printed, and the comments not printed yet by the line of the
/// statement each goes before.
struct Printer {
    out: String,
    comments: BTreeMap<u32, Vec<String>>,
}

impl Printer {
    /// The comments that go before `line`, once, indented by `indent`.
    fn comments_at(&mut self, line: Option<u32>, indent: &str) {
        let Some(found) = line.and_then(|l| self.comments.remove(&l)) else {
            return;
        };
        for c in found {
            self.out.push_str(indent);
            self.out.push_str(&c);
            self.out.push('\n');
        }
    }
}

/// The comments of a haproxy.cfg on lines of their own, by the line of the
/// statement after them (those after the last statement at `u32::MAX`).
fn comments(text: &str) -> BTreeMap<u32, Vec<String>> {
    let (mut by_line, mut pending) = (BTreeMap::new(), Vec::new());
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.starts_with('#') {
            pending.push(t.to_string());
        } else if !t.is_empty() && !pending.is_empty() {
            by_line.insert(i as u32 + 1, std::mem::take(&mut pending));
        }
    }
    if !pending.is_empty() {
        by_line.insert(u32::MAX, pending);
    }
    by_line
}

fn top(p: &mut Printer, entries: &[Entry]) {
    let (plain, tables): (Vec<&Entry>, Vec<&Entry>) = entries
        .iter()
        .partition(|e| !matches!(e.item.val, Val::Table(_)));
    lines(p, &plain);
    for e in tables {
        let Val::Table(inner) = &e.item.val else {
            continue;
        };
        if NAMED.contains(&e.key.as_str()) {
            for member in inner {
                if let Val::Table(fields) = &member.item.val {
                    let header = format!("{}.{}", key(&e.key), key(&member.key));
                    section(p, &header, member.key_line, fields);
                }
            }
        } else {
            section(p, &key(&e.key), e.key_line, inner);
        }
    }
}

fn section(p: &mut Printer, header: &str, line: Option<u32>, fields: &[Entry]) {
    if !p.out.is_empty() {
        p.out.push('\n');
    }
    p.comments_at(line, "");
    p.out.push_str(&format!("[{header}]\n"));
    lines(p, &fields.iter().collect::<Vec<_>>());
}

/// `key = value` lines; a list of tables one per line.
fn lines(p: &mut Printer, entries: &[&Entry]) {
    for e in entries {
        match &e.item.val {
            Val::Array(items) if items.iter().any(|i| matches!(i.val, Val::Table(_))) => {
                p.out.push_str(&format!("{} = [\n", key(&e.key)));
                for i in items {
                    if let Some(v) = value(&i.val) {
                        p.comments_at(i.line, "  ");
                        p.out.push_str(&format!("  {v},\n"));
                    }
                }
                p.out.push_str("]\n");
            }
            other => {
                if let Some(v) = value(other) {
                    p.comments_at(e.key_line.or(e.item.line), "");
                    p.out.push_str(&format!("{} = {v}\n", key(&e.key)));
                }
            }
        }
    }
}

/// A key, quoted unless bare.
fn key(k: &str) -> String {
    let bare = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        k.to_string()
    } else {
        toml_edit::Value::from(k).to_string()
    }
}

fn value(v: &Val) -> Option<toml_edit::Value> {
    Some(match v {
        Val::Str(s) => toml_edit::Value::from(s.as_str()),
        Val::Int(i) => toml_edit::Value::from(*i),
        Val::Bool(b) => toml_edit::Value::from(*b),
        Val::Array(items) => {
            let mut a: toml_edit::Array = items.iter().filter_map(|i| value(&i.val)).collect();
            a.fmt();
            toml_edit::Value::Array(a)
        }
        Val::Table(entries) => {
            let mut t = toml_edit::InlineTable::new();
            for e in entries {
                if let Some(v) = value(&e.item.val) {
                    t.insert(&e.key, v);
                }
            }
            t.fmt();
            toml_edit::Value::InlineTable(t)
        }
        Val::Float | Val::Null => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClusterConfig;

    #[test]
    fn the_toml_gives_the_same_config() {
        let cfg = "global\n  maxconn 100\n  user haproxy\ndefaults\n  mode http\n  timeout connect 5s\n\
frontend \"f.1\"\n  bind :80\n  acl blog path_beg /blog \"/x y\"\n  use_backend b if blog\n  default_backend b\n\
backend b\n  cookie S insert nocache\n  option httpchk GET /h\n  server s1 127.0.0.1:1 check cookie s1\n  server s2 127.0.0.1:2 backup\n\
backend st\n  stick-table type ip size 1k store conn_cur\n";
        let (toml, notes) = to_toml(cfg, Format::Haproxy).unwrap();
        assert_eq!(notes.len(), 1, "{notes:?}");
        let from_cfg = ClusterConfig::parse(cfg, Format::Haproxy).unwrap();
        let from_toml =
            ClusterConfig::parse(&toml, Format::Toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
        assert_eq!(from_cfg, from_toml, "{toml}");
        assert!(toml.contains("[frontends.\"f.1\"]"), "{toml}");
        assert!(toml.contains("servers = [\n  { name = \"s1\""), "{toml}");
    }

    #[test]
    fn comments_on_lines_of_their_own_go_before_what_follows_them() {
        let cfg = "# The site.\n\nglobal\n  # who runs it\n  user haproxy\n\
# the web frontend\nfrontend web\n  bind :80 # not carried\n  # its backend\n  default_backend b\n\
backend b\n  # the first server\n  server s1 127.0.0.1:1\n  server s2 127.0.0.1:2\n# the end\n";
        let (toml, _) = to_toml(cfg, Format::Haproxy).unwrap();
        let want = "# The site.\n# who runs it\n\n[backends.b]\nservers = [\n  # the first server\n  { name = \"s1\"";
        assert!(toml.starts_with(want), "{toml}");
        assert!(
            toml.contains("# the web frontend\n[frontends.web]\n"),
            "{toml}"
        );
        assert!(
            toml.contains("# its backend\ndefault_backend = \"b\"\n"),
            "{toml}"
        );
        assert!(!toml.contains("not carried"), "{toml}");
        assert!(toml.ends_with("\n\n# the end\n"), "{toml}");
        let from_toml = ClusterConfig::parse(&toml, Format::Toml).unwrap();
        assert_eq!(
            from_toml,
            ClusterConfig::parse(cfg, Format::Haproxy).unwrap()
        );
    }

    #[test]
    fn nothing_for_an_invalid_document() {
        assert!(to_toml("backend b\n  servr s 127.0.0.1:1\n", Format::Haproxy).is_err());
    }
}
