//! A cluster config written as TOML (`raftlb convert`): the document tree a
//! haproxy.cfg (or a YAML or JSON document) is read into, printed as the
//! `lb.toml` that gives the same validated config. The document is
//! validated first; nothing is printed for an invalid one.

use super::error::{ConfigError, ConfigErrors};
use super::format::Format;
use super::tree::{self, Entry, Val};
use super::{haproxy, parse};

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
    let mut out = String::new();
    if let Val::Table(entries) = &root.val {
        top(&mut out, entries);
    }
    Ok((out, notes))
}

fn top(out: &mut String, entries: &[Entry]) {
    let (plain, tables): (Vec<&Entry>, Vec<&Entry>) = entries
        .iter()
        .partition(|e| !matches!(e.item.val, Val::Table(_)));
    lines(out, &plain);
    for e in tables {
        let Val::Table(inner) = &e.item.val else {
            continue;
        };
        if NAMED.contains(&e.key.as_str()) {
            for member in inner {
                if let Val::Table(fields) = &member.item.val {
                    section(
                        out,
                        &format!("{}.{}", key(&e.key), key(&member.key)),
                        fields,
                    );
                }
            }
        } else {
            section(out, &key(&e.key), inner);
        }
    }
}

fn section(out: &mut String, header: &str, fields: &[Entry]) {
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(&format!("[{header}]\n"));
    lines(out, &fields.iter().collect::<Vec<_>>());
}

/// `key = value` lines; a list of tables one per line.
fn lines(out: &mut String, entries: &[&Entry]) {
    for e in entries {
        match &e.item.val {
            Val::Array(items) if items.iter().any(|i| matches!(i.val, Val::Table(_))) => {
                out.push_str(&format!("{} = [\n", key(&e.key)));
                for i in items {
                    if let Some(v) = value(&i.val) {
                        out.push_str(&format!("  {v},\n"));
                    }
                }
                out.push_str("]\n");
            }
            other => {
                if let Some(v) = value(other) {
                    out.push_str(&format!("{} = {v}\n", key(&e.key)));
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
    fn nothing_for_an_invalid_document() {
        assert!(to_toml("backend b\n  servr s 127.0.0.1:1\n", Format::Haproxy).is_err());
    }
}
