//! The document formats a cluster config may be written in ([`Format`]),
//! named by file extension or by name.

use serde::{Deserialize, Serialize};

/// The document formats a cluster config may be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Format {
    /// TOML (the default; errors carry lines for every value).
    Toml,
    /// YAML.
    Yaml,
    /// JSON.
    Json,
    /// HAProxy's configuration language (a haproxy.cfg); errors carry lines.
    Haproxy,
}

impl Format {
    /// The format a file name's extension names (`.yaml`/`.yml`, `.json`,
    /// `.cfg` for HAProxy's, else TOML).
    pub fn from_path(path: &str) -> Format {
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".yaml") || lower.ends_with(".yml") {
            Format::Yaml
        } else if lower.ends_with(".json") {
            Format::Json
        } else if lower.ends_with(".cfg") {
            Format::Haproxy
        } else {
            Format::Toml
        }
    }

    /// The format's name: `toml`, `yaml`, `json` or `haproxy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Toml => "toml",
            Format::Yaml => "yaml",
            Format::Json => "json",
            Format::Haproxy => "haproxy",
        }
    }

    /// The format [`Format::as_str`] names.
    pub fn from_name(name: &str) -> Option<Format> {
        [Format::Toml, Format::Yaml, Format::Json, Format::Haproxy]
            .into_iter()
            .find(|f| f.as_str() == name)
    }
}
