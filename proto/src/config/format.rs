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
}

impl Format {
    /// The format a file name's extension names (`.yaml`/`.yml`, `.json`, else TOML).
    pub fn from_path(path: &str) -> Format {
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".yaml") || lower.ends_with(".yml") {
            Format::Yaml
        } else if lower.ends_with(".json") {
            Format::Json
        } else {
            Format::Toml
        }
    }

    /// The format's name: `toml`, `yaml` or `json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Toml => "toml",
            Format::Yaml => "yaml",
            Format::Json => "json",
        }
    }

    /// The format [`Format::as_str`] names.
    pub fn from_name(name: &str) -> Option<Format> {
        [Format::Toml, Format::Yaml, Format::Json]
            .into_iter()
            .find(|f| f.as_str() == name)
    }
}
