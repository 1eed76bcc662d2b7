//! The cluster configuration (`lb.toml`, also YAML, JSON or a haproxy.cfg) as validated types.
//! Words follow HAProxy's so an operator's knowledge carries over. Parse with
//! [`ClusterConfig::parse`]; every mistake in a document is reported at once.

pub mod acl;
mod convert;
pub mod defaults;
mod duration;
mod error;
mod format;
mod haproxy;
mod model;
mod parse;
mod suggest;
mod to_haproxy;
mod tree;

pub use convert::to_toml;
pub use duration::parse_duration;
pub use error::{ConfigError, ConfigErrors};
pub use format::Format;
pub use haproxy::{expand_env, Expanded};
pub use model::{
    Backend, BackendTimeouts, Balance, CheckParams, ClusterConfig, ConnAction, ConnRule, Cookie,
    ForwardFor, Frontend, Global, HashKey, HealthCheck, HttpAction, HttpRule, Mode, Observe,
    OnError, Server, StickData, StickKey, StickOn, StickTable, StickType, UseBackend, Vip,
};
pub use to_haproxy::{to_haproxy, Written};

impl ClusterConfig {
    /// Parses and validates a document, returning every error found.
    pub fn parse(text: &str, format: Format) -> Result<ClusterConfig, ConfigErrors> {
        parse::parse(text, format).map(|(config, _)| config)
    }

    /// As [`ClusterConfig::parse`], with the notes on a valid document: the
    /// keywords of a haproxy.cfg that are accepted but change nothing here
    /// (`user`, `log`, `option httplog` …), each with its line.
    pub fn parse_noted(
        text: &str,
        format: Format,
    ) -> Result<(ClusterConfig, Vec<ConfigError>), ConfigErrors> {
        parse::parse(text, format)
    }
}
