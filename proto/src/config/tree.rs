//! A format-neutral document tree that remembers source lines, built from
//! TOML (lines for every key and value), YAML or JSON (lines for syntax errors);
//! `haproxy` translates a haproxy.cfg into it.

use super::error::{ConfigError, ConfigErrors};
use super::format::Format;

/// A value with the line it came from.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub val: Val,
    pub line: Option<u32>,
}

/// A key with the line it stands on, and its value.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub key: String,
    pub key_line: Option<u32>,
    pub item: Item,
}

#[derive(Debug, Clone)]
pub(crate) enum Val {
    Table(Vec<Entry>),
    Array(Vec<Item>),
    Str(String),
    Int(i64),
    Float,
    Bool(bool),
    Null,
}

impl Val {
    pub fn kind(&self) -> &'static str {
        match self {
            Val::Table(_) => "a table",
            Val::Array(_) => "an array",
            Val::Str(_) => "a string",
            Val::Int(_) => "an integer",
            Val::Float => "a float",
            Val::Bool(_) => "a boolean",
            Val::Null => "null",
        }
    }
}

pub(crate) fn load(text: &str, format: Format) -> Result<Item, ConfigErrors> {
    match format {
        Format::Toml => from_toml(text),
        Format::Yaml => {
            let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(|e| {
                syntax(
                    e.location().map(|l| l.line() as u32),
                    format!("invalid YAML: {e}"),
                )
            })?;
            Ok(from_yaml(&v))
        }
        Format::Json => {
            let v: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| syntax(Some(e.line() as u32), format!("invalid JSON: {e}")))?;
            Ok(from_json(&v))
        }
        Format::Haproxy => Err(syntax(
            None,
            "a haproxy.cfg is translated by config::haproxy, not loaded here".into(),
        )),
    }
}

fn syntax(line: Option<u32>, message: String) -> ConfigErrors {
    ConfigErrors(vec![ConfigError {
        path: String::new(),
        line,
        message,
    }])
}

struct Lines(Vec<usize>);

impl Lines {
    fn new(text: &str) -> Lines {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Lines(starts)
    }
    fn line(&self, span: Option<std::ops::Range<usize>>) -> Option<u32> {
        let at = span?.start;
        Some(self.0.partition_point(|&s| s <= at) as u32)
    }
}

fn from_toml(text: &str) -> Result<Item, ConfigErrors> {
    let doc = toml_edit::Document::parse(text).map_err(|e| {
        let lines = Lines::new(text);
        let line = lines.line(e.span());
        syntax(line, format!("invalid TOML: {}", e.message().trim()))
    })?;
    let lines = Lines::new(text);
    Ok(Item {
        val: toml_table(&lines, doc.as_table()),
        line: Some(1),
    })
}

fn toml_table(lines: &Lines, t: &toml_edit::Table) -> Val {
    let mut entries = Vec::new();
    for (k, item) in t.iter() {
        let key_line = t
            .get_key_value(k)
            .and_then(|(key, _)| lines.line(key.span()));
        if let Some(item) = toml_item(lines, item) {
            entries.push(Entry {
                key: k.to_string(),
                key_line,
                item,
            });
        }
    }
    Val::Table(entries)
}

fn toml_item(lines: &Lines, item: &toml_edit::Item) -> Option<Item> {
    match item {
        toml_edit::Item::None => None,
        toml_edit::Item::Value(v) => Some(toml_value(lines, v)),
        toml_edit::Item::Table(t) => Some(Item {
            val: toml_table(lines, t),
            line: lines.line(t.span()),
        }),
        toml_edit::Item::ArrayOfTables(a) => Some(Item {
            val: Val::Array(
                a.iter()
                    .map(|t| Item {
                        val: toml_table(lines, t),
                        line: lines.line(t.span()),
                    })
                    .collect(),
            ),
            line: lines.line(a.span()),
        }),
    }
}

fn toml_value(lines: &Lines, v: &toml_edit::Value) -> Item {
    use toml_edit::Value as V;
    let line = lines.line(v.span());
    let val = match v {
        V::String(s) => Val::Str(s.value().clone()),
        V::Integer(i) => Val::Int(*i.value()),
        V::Float(_) => Val::Float,
        V::Boolean(b) => Val::Bool(*b.value()),
        V::Datetime(d) => Val::Str(d.value().to_string()),
        V::Array(a) => Val::Array(a.iter().map(|v| toml_value(lines, v)).collect()),
        V::InlineTable(t) => Val::Table(
            t.iter()
                .map(|(k, v)| Entry {
                    key: k.to_string(),
                    key_line: t
                        .get_key_value(k)
                        .and_then(|(key, _)| lines.line(key.span())),
                    item: toml_value(lines, v),
                })
                .collect(),
        ),
    };
    Item { val, line }
}

fn from_yaml(v: &serde_yaml_ng::Value) -> Item {
    use serde_yaml_ng::Value as V;
    let val = match v {
        V::Null => Val::Null,
        V::Bool(b) => Val::Bool(*b),
        V::Number(n) => match n.as_i64() {
            Some(i) => Val::Int(i),
            None => Val::Float,
        },
        V::String(s) => Val::Str(s.clone()),
        V::Sequence(s) => Val::Array(s.iter().map(from_yaml).collect()),
        V::Mapping(m) => Val::Table(
            m.iter()
                .map(|(k, v)| Entry {
                    key: match k {
                        V::String(s) => s.clone(),
                        other => serde_yaml_ng::to_string(other)
                            .unwrap_or_default()
                            .trim()
                            .to_string(),
                    },
                    key_line: None,
                    item: from_yaml(v),
                })
                .collect(),
        ),
        V::Tagged(t) => return from_yaml(&t.value),
    };
    Item { val, line: None }
}

fn from_json(v: &serde_json::Value) -> Item {
    use serde_json::Value as V;
    let val = match v {
        V::Null => Val::Null,
        V::Bool(b) => Val::Bool(*b),
        V::Number(n) => match n.as_i64() {
            Some(i) => Val::Int(i),
            None => Val::Float,
        },
        V::String(s) => Val::Str(s.clone()),
        V::Array(a) => Val::Array(a.iter().map(from_json).collect()),
        V::Object(o) => Val::Table(
            o.iter()
                .map(|(k, v)| Entry {
                    key: k.clone(),
                    key_line: None,
                    item: from_json(v),
                })
                .collect(),
        ),
    };
    Item { val, line: None }
}
