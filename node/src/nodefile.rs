//! The node file (`node.toml`): settings of this machine only, loaded with the
//! `config` crate; every key can be overridden by a `RAFTLB_*` environment
//! variable (`RAFTLB_DATA_DIR`, `RAFTLB_ADMIN__LISTEN`: `__` enters a table).

use serde::Deserialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Environment variables that belong to the command line, not the node file.
const NOT_NODE_KEYS: &[&str] = &["RAFTLB_ADMIN", "RAFTLB_LOG"];

/// The node file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Node id, unique in the cluster.
    pub id: u64,
    /// Human name.
    pub name: String,
    /// Where the node keeps its state.
    pub data_dir: PathBuf,
    /// Proxy worker threads (0: one per core): above 1, one event loop per
    /// worker (see `crate::workers`); 1, one event loop for everything.
    #[serde(default)]
    pub threads: usize,
    /// Let other processes of this machine listen on the same frontend
    /// addresses (SO_REUSEPORT; the kernel spreads connections). HAProxy
    /// sets it for its reloads; raftlb keeps its sockets across reloads, so
    /// it is off by default — a port already in use is then an error, not
    /// a silent share. Turn it on to run several nodes on one host.
    #[serde(default)]
    pub reuseport: bool,
    /// Node-to-node settings.
    #[serde(default)]
    pub cluster: ClusterSection,
    /// Admin API settings.
    #[serde(default)]
    pub admin: AdminSection,
    /// Virtual IP settings.
    #[serde(default)]
    pub vip: VipSection,
    /// Logging.
    #[serde(default)]
    pub log: LogSection,
}

/// `[cluster]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// Address for node-to-node traffic.
    pub listen: Option<SocketAddr>,
    /// Address other nodes reach this one at (defaults to `listen`).
    pub advertise: Option<SocketAddr>,
    /// Raft leader heartbeat (default `25ms`).
    pub heartbeat: Option<String>,
    /// Shortest election timeout (default `90ms`): the leader holds its
    /// lease (and the VIP) while a quorum acknowledged it within this.
    pub election_timeout_min: Option<String>,
    /// Longest election timeout (default `150ms`): how long voters refuse a
    /// new candidate after hearing their leader, and how long a follower
    /// waits for a silent leader before it campaigns.
    pub election_timeout_max: Option<String>,
    /// How long a write waits for a quorum before it fails (default `5s`).
    pub write_timeout: Option<String>,
    /// `raftlb run` with no cluster state forms a new cluster with this
    /// node as its only member and `--lb` as its first config (as `cluster
    /// init`): the first node of a cluster run by systemd.
    #[serde(default)]
    pub bootstrap: bool,
    /// `raftlb run` with no cluster state joins the cluster of the member at
    /// this node-to-node address (HOST:PORT), with `token` (as `cluster
    /// join`): the other nodes of a cluster run by systemd.
    pub join: Option<String>,
    /// The join token (`raftlb cluster token` on a member prints it).
    pub token: Option<String>,
}

/// `[admin]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// The admin API's address (default `127.0.0.1:9900`). Beyond
    /// loopback only with a `token_file`.
    #[serde(default = "default_admin")]
    pub listen: SocketAddr,
    /// Bearer tokens with their roles, one `NAME ROLE TOKEN` a line (`read`
    /// or `operator`): with it, every request needs a token, reads too.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

impl Default for AdminSection {
    fn default() -> Self {
        AdminSection {
            listen: default_admin(),
            token_file: None,
        }
    }
}

/// The admin API's default address.
pub fn default_admin() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9900))
}

/// `[vip]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VipSection {
    /// Interface the virtual IPs go on.
    pub interface: Option<String>,
    /// Preference for holding the VIP, 1–255 (higher wins); 0: a witness,
    /// which votes and may lead the cluster but never holds a VIP (a
    /// fit node takes leadership from it).
    #[serde(default = "default_priority")]
    pub priority: u8,
    /// Take leadership (and so the VIP) from a leader of lower priority
    /// once this node is fit and caught up (keepalived's default; `false`
    /// is its `nopreempt`).
    #[serde(default = "default_preempt")]
    pub preempt: bool,
    /// A command run on each take and release of a VIP, with the arguments
    /// `MASTER|BACKUP ADDRESS/PREFIX REASON` (keepalived's `notify`).
    pub notify: Option<String>,
}

impl Default for VipSection {
    fn default() -> Self {
        VipSection {
            interface: None,
            priority: default_priority(),
            preempt: default_preempt(),
            notify: None,
        }
    }
}

fn default_preempt() -> bool {
    true
}

fn default_priority() -> u8 {
    100
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// `error`, `warn`, `info` (one line per connection), `debug`, or a
    /// tracing filter such as `info,raftlb::tcplog=off`.
    #[serde(default = "default_level")]
    pub level: String,
    /// Where the lines go: `stderr` (the default; under systemd, the
    /// journal as plain lines), `syslog` (HAProxy's `log /dev/log
    /// local0`) or `journald` (the journal's own protocol: each field of a
    /// line a field of the entry).
    #[serde(default)]
    pub target: LogTarget,
    /// `text` (the default) or `json`: one JSON object per line.
    #[serde(default)]
    pub format: LogFormat,
    /// `syslog`: a unix datagram socket (default `/dev/log`), or
    /// `HOST:PORT` for UDP (RFC 5424 messages either way).
    #[serde(default = "default_syslog_address")]
    pub address: String,
    /// `syslog`: the facility (`kern` … `local7`; default `local0`).
    #[serde(default)]
    pub facility: Facility,
    /// `syslog`: the APP-NAME of each message; `journald`: the
    /// `SYSLOG_IDENTIFIER` of each entry (default `raftlb`).
    #[serde(default = "default_tag")]
    pub tag: String,
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogTarget {
    #[default]
    Stderr,
    Syslog,
    Journald,
}

/// How a log line is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// A syslog facility (RFC 5424 §6.2.1), by name: `kern` … `local7`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Facility(u8);

/// The facilities' names, in code order (`local0` is 16).
const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];

impl Facility {
    /// The facility's code.
    pub fn code(self) -> u8 {
        self.0
    }
}

impl Default for Facility {
    /// `local0`, as HAProxy's examples log.
    fn default() -> Self {
        Facility(16)
    }
}

impl TryFrom<String> for Facility {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        FACILITIES
            .iter()
            .position(|f| *f == name)
            .map(|code| Facility(code as u8))
            .ok_or_else(|| {
                format!(
                    "{name:?} is no syslog facility (one of {})",
                    FACILITIES.join(", ")
                )
            })
    }
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            level: default_level(),
            target: LogTarget::default(),
            format: LogFormat::default(),
            address: default_syslog_address(),
            facility: Facility::default(),
            tag: default_tag(),
        }
    }
}

fn default_level() -> String {
    "info".to_string()
}

fn default_syslog_address() -> String {
    "/dev/log".to_string()
}

fn default_tag() -> String {
    "raftlb".to_string()
}

/// Why a node file was refused.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct NodeFileError {
    /// The file.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl NodeConfig {
    /// `[cluster] bootstrap`, `join` and `token` make sense together: a
    /// join needs a valid token and a cluster to join (`listen`), and a
    /// node does not both form a cluster and join one.
    fn check_formation(&self) -> Result<(), String> {
        let c = &self.cluster;
        if c.bootstrap && c.join.is_some() {
            return Err("cluster.bootstrap and cluster.join: a node forms a new cluster or joins one, not both".into());
        }
        if (c.bootstrap || c.join.is_some()) && c.listen.is_none() {
            return Err("cluster.listen: needed to form or join a cluster".into());
        }
        match (&c.join, &c.token) {
            (Some(_), None) => Err("cluster.token: a join needs the cluster's token (`raftlb cluster token` on a member)".into()),
            (None, Some(_)) => Err("cluster.token: given without cluster.join".into()),
            (Some(_), Some(t)) => raftlb_cluster::net::secret::ClusterSecret::from_token(t)
                .map(|_| ())
                .map_err(|e| format!("cluster.token: {e}")),
            (None, None) => Ok(()),
        }
    }

    /// The secret of `[cluster] token`, with the address to join.
    pub fn join(&self) -> Option<(String, raftlb_cluster::net::secret::ClusterSecret)> {
        let peer = self.cluster.join.clone()?;
        let token = self.cluster.token.as_deref()?;
        let secret = raftlb_cluster::net::secret::ClusterSecret::from_token(token).ok()?;
        Some((peer, secret))
    }

    /// Raft's timing from `[cluster]`, with defaults for what is unset.
    pub fn cluster_options(&self) -> raftlb_cluster::Options {
        self.try_cluster_options()
            .expect("checked when the node file was loaded")
    }

    fn try_cluster_options(&self) -> Result<raftlb_cluster::Options, String> {
        let mut o = raftlb_cluster::Options::default();
        let c = &self.cluster;
        let dur = |key: &str, v: &Option<String>, into: &mut std::time::Duration| {
            if let Some(v) = v {
                *into = raftlb_proto::config::parse_duration(v)
                    .map_err(|e| format!("cluster.{key}: {e}"))?;
            }
            Ok::<(), String>(())
        };
        dur("heartbeat", &c.heartbeat, &mut o.heartbeat)?;
        dur(
            "election_timeout_min",
            &c.election_timeout_min,
            &mut o.election.0,
        )?;
        dur(
            "election_timeout_max",
            &c.election_timeout_max,
            &mut o.election.1,
        )?;
        dur("write_timeout", &c.write_timeout, &mut o.write_timeout)?;
        if o.heartbeat.is_zero() || o.election.0 <= o.heartbeat || o.election.1 <= o.election.0 {
            return Err(format!(
                "cluster: need 0 < heartbeat ({:?}) < election_timeout_min ({:?}) < election_timeout_max ({:?})",
                o.heartbeat, o.election.0, o.election.1
            ));
        }
        Ok(o)
    }

    /// Loads `path`, then the `RAFTLB_*` environment over it.
    pub fn load(path: &Path) -> Result<NodeConfig, NodeFileError> {
        let env: HashMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("RAFTLB_") && !NOT_NODE_KEYS.contains(&k.as_str()))
            .collect();
        Self::load_with_env(path, env)
    }

    /// Loads `path` with `env` as the environment (for tests).
    pub fn load_with_env(
        path: &Path,
        env: HashMap<String, String>,
    ) -> Result<NodeConfig, NodeFileError> {
        let err = |message: String| NodeFileError {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let mut from_env: Vec<String> = env.keys().cloned().collect();
        from_env.sort();
        let env_note = if from_env.is_empty() {
            String::new()
        } else {
            format!(" (environment overrides read: {})", from_env.join(", "))
        };
        let cfg: NodeConfig = config::Config::builder()
            .add_source(config::File::from_str(&text, config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("RAFTLB")
                    .prefix_separator("_")
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(env)),
            )
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| err(format!("{e}{env_note}")))?;
        if cfg.name.trim().is_empty() {
            return Err(err("name: must not be empty".into()));
        }
        if !cfg.admin.listen.ip().is_loopback() && cfg.admin.token_file.is_none() {
            return Err(err(format!(
                "admin.listen: {} is not a loopback address: on a network the admin API needs admin.token_file (tokens with the read or operator role; without it, reads need no token, so it listens on loopback only)",
                cfg.admin.listen
            )));
        }
        if cfg.id == 0 {
            return Err(err("id: must be 1 or more".into()));
        }
        cfg.check_formation().map_err(err)?;
        cfg.try_cluster_options().map_err(err)?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempdir::Dir, PathBuf) {
        let d = tempdir::Dir::new();
        let p = d.0.join("node.toml");
        std::fs::write(&p, text).unwrap();
        (d, p)
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                let p = std::env::temp_dir().join(format!(
                    "raftlb-nodefile-{}-{}",
                    std::process::id(),
                    rand::random::<u64>()
                ));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    const NODE: &str = r#"
id = 1
name = "lb1"
data_dir = "/var/lib/raftlb"
[cluster]
listen = "198.51.100.1:7000"
[vip]
interface = "eth0"
priority = 150
"#;

    #[test]
    fn loads_with_defaults() {
        let (_d, p) = write(NODE);
        let c = NodeConfig::load_with_env(&p, HashMap::new()).unwrap();
        assert_eq!(c.id, 1);
        assert_eq!(c.admin.listen, default_admin());
        assert_eq!(c.vip.priority, 150);
        assert_eq!(c.vip.interface.as_deref(), Some("eth0"));
        assert_eq!(c.log.level, "info");
    }

    #[test]
    fn environment_overrides_every_key() {
        let (_d, p) = write(NODE);
        let env = HashMap::from([
            ("RAFTLB_ID".to_string(), "7".to_string()),
            ("RAFTLB_DATA_DIR".to_string(), "/tmp/x".to_string()),
            (
                "RAFTLB_ADMIN__LISTEN".to_string(),
                "127.0.0.1:9911".to_string(),
            ),
            ("RAFTLB_VIP__PRIORITY".to_string(), "9".to_string()),
        ]);
        let c = NodeConfig::load_with_env(&p, env).unwrap();
        assert_eq!(c.id, 7);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.admin.listen.port(), 9911);
        assert_eq!(c.vip.priority, 9);
    }

    #[test]
    fn a_stray_environment_variable_is_named() {
        let (_d, p) = write(NODE);
        let env = HashMap::from([("RAFTLB_BIN".to_string(), "/x".to_string())]);
        let e = NodeConfig::load_with_env(&p, env).unwrap_err();
        assert!(
            e.message.contains("bin") && e.message.contains("RAFTLB_BIN"),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let (_d, p) = write(&NODE.replace("priority = 150", "priorty = 150"));
        let e = NodeConfig::load_with_env(&p, HashMap::new()).unwrap_err();
        assert!(e.message.contains("priorty"), "{e}");
        let (_d, p) = write(&format!("{NODE}[admin]\nlisten = \"0.0.0.0:9900\"\n"));
        let e = NodeConfig::load_with_env(&p, HashMap::new()).unwrap_err();
        assert!(e.message.contains("not a loopback address"), "{e}");
        let (_d, p) = write(&NODE.replace("198.51.100.1:7000", "nowhere"));
        let e = NodeConfig::load_with_env(&p, HashMap::new()).unwrap_err();
        assert!(
            e.to_string().contains("cluster.listen") || e.to_string().contains("invalid"),
            "{e}"
        );
    }
}
