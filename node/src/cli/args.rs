//! The command line's grammar (clap): every command, its arguments and its
//! help text.

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// raftlb: replicated, highly available TCP load balancers with HAProxy's
/// semantics.
#[derive(Debug, Parser)]
#[command(name = "raftlb", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Where the node to talk to listens, and how to print its answer.
#[derive(Debug, Clone, Args)]
pub struct Remote {
    /// The node's admin API.
    #[arg(long, env = "RAFTLB_ADMIN", default_value = "127.0.0.1:9900")]
    pub admin: SocketAddr,
    /// The node file of the node at --admin: writes send the admin token
    /// from its data_dir (readable by root and the raftlb user).
    #[arg(long, value_name = "FILE", default_value = "/etc/raftlb/node.toml")]
    pub node: PathBuf,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

/// A cluster config file's format named on the command line.
fn format_arg(name: &str) -> Result<raftlb_proto::Format, String> {
    raftlb_proto::Format::from_name(name)
        .ok_or_else(|| format!("{name:?}: expected toml, yaml, json or haproxy"))
}

/// A form `config show --format` writes.
fn show_format(name: &str) -> Result<raftlb_proto::Format, String> {
    match format_arg(name)? {
        f @ (raftlb_proto::Format::Haproxy | raftlb_proto::Format::Toml) => Ok(f),
        _ => Err(format!("{name:?}: expected haproxy or toml")),
    }
}

/// The cluster config file a node starts on and SIGHUP re-reads.
#[derive(Debug, Clone, Args)]
pub struct LbArgs {
    /// The cluster config: the first config of a new cluster, and the file
    /// SIGHUP re-reads.
    #[arg(long, value_name = "FILE")]
    pub lb: Option<PathBuf>,
    /// The format of --lb: toml, yaml, json or haproxy (default: from its
    /// extension; `.cfg` is a haproxy.cfg).
    #[arg(long, value_name = "FORMAT", requires = "lb", value_parser = format_arg)]
    pub format: Option<raftlb_proto::Format>,
}

impl LbArgs {
    /// The file, if one was given.
    pub fn file(&self) -> Option<crate::handle::LbFile> {
        self.lb.clone().map(|path| crate::handle::LbFile {
            path,
            format: self.format,
        })
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node: from its state; with none, as its node file says
    /// (`[cluster] bootstrap` forms a cluster on `--lb`, `[cluster] join`
    /// joins one; with no `[cluster] listen`, a cluster of one on `--lb`).
    ///
    /// SIGHUP re-reads `--lb` and applies it through the cluster (refused
    /// with its errors if it has any; the running config stays).
    /// SIGTERM/SIGINT stop accepting, then drain connections for up to 10 s.
    Run {
        /// The node file (this machine's settings).
        #[arg(long, value_name = "FILE")]
        node: PathBuf,
        #[command(flatten)]
        lb: LbArgs,
    },
    /// Validate config files (a node file or a cluster config, told apart by
    /// their keys), like `haproxy -c -f`.
    ///
    /// Exit 0 and one line per valid file; exit 1 and every error otherwise.
    Check {
        /// A file to check (repeat for several).
        #[arg(short = 'c', long = "config", value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
        /// Read every file as a cluster config in this format: toml, yaml,
        /// json or haproxy (default: from each file's extension and keys).
        #[arg(long, value_name = "FORMAT", value_parser = format_arg)]
        format: Option<raftlb_proto::Format>,
    },
    /// Print a cluster config (a haproxy.cfg, YAML or JSON) as the lb.toml
    /// that gives the same config; notes on stderr, and nothing but every
    /// error for an invalid file.
    Convert {
        /// The file to convert.
        file: PathBuf,
        /// Its format: toml, yaml, json or haproxy (default: from its
        /// extension).
        #[arg(long, value_name = "FORMAT", value_parser = format_arg)]
        format: Option<raftlb_proto::Format>,
        /// Write the TOML to this file instead of standard output.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Start a demo on loopback: one node and two small HTTP backends.
    Demo {
        /// The demo frontend's address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// The admin API's address.
        #[arg(long, default_value = "127.0.0.1:9900")]
        admin: SocketAddr,
    },
    /// Show a running node's frontends and servers.
    Status {
        #[command(flatten)]
        remote: Remote,
    },
    /// Form, grow, shrink and inspect the cluster.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// The replicated cluster config.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// A server's operator state and weight, on every node.
    #[command(subcommand)]
    Server(ServerCommand),
    /// This machine's virtual IPs.
    #[command(subcommand)]
    Vip(VipCommand),
    /// Stick tables (HAProxy's `show table`, `clear table`).
    #[command(subcommand)]
    Table(TableCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish,
    /// powershell), e.g. `raftlb completions bash >
    /// /usr/share/bash-completion/completions/raftlb`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page raftlb(1), in roff (the .deb installs it).
    #[command(hide = true)]
    Manpage,
}

/// `raftlb table …`.
#[derive(Debug, Subcommand)]
pub enum TableCommand {
    /// A node's stick tables and their entries: key, server, expiry left,
    /// and which node wrote it last.
    Show {
        /// One table, by its name or by a backend that sticks on it.
        table: Option<String>,
        /// Only this key (an address, an integer or a string, as the
        /// table's type says); needs TABLE.
        #[arg(long, requires = "table")]
        key: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Clear a table (HAProxy's `clear table`), or one of its entries, on
    /// every node: its clients are balanced anew.
    Clear {
        /// The table.
        table: String,
        /// Only this key.
        #[arg(long)]
        key: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
}

/// `raftlb vip …`.
#[derive(Debug, Subcommand)]
pub enum VipCommand {
    /// Remove from `[vip] interface` every VIP of the last config this node
    /// applied. For systemd's `ExecStopPost=`: a crashed process's VIP goes
    /// before the restart. (A starting node does the same by itself.)
    Release {
        /// The node file.
        #[arg(long, value_name = "FILE")]
        node: PathBuf,
    },
}

/// `raftlb cluster …`.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Create a new cluster with this node as its only member, print the
    /// join token, then run the node.
    Init {
        /// The node file.
        #[arg(long, value_name = "FILE")]
        node: PathBuf,
        #[command(flatten)]
        lb: LbArgs,
    },
    /// Join an existing cluster through one of its members (as a learner,
    /// then a voter once caught up), then run the node.
    Join {
        /// The node file.
        #[arg(long, value_name = "FILE")]
        node: PathBuf,
        /// A member's node-to-node address (HOST:PORT).
        #[arg(long)]
        peer: String,
        /// The join token `cluster init` printed.
        #[arg(long, env = "RAFTLB_TOKEN", hide_env_values = true)]
        token: String,
    },
    /// Print the cluster's join token, from this node's data directory
    /// (run it as root or the raftlb user): what `cluster join --token`
    /// and the node file's `[cluster] token` take.
    Token {
        /// The node file.
        #[arg(long, value_name = "FILE")]
        node: PathBuf,
    },
    /// Remove a node from the cluster (the node at --admin by default). The
    /// removed node stops.
    Leave {
        /// The node to remove.
        #[arg(long)]
        node_id: Option<u64>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Members, roles, leader, term, log indexes, lag, last contact, and
    /// every node's view of every server.
    Status {
        #[command(flatten)]
        remote: Remote,
    },
}

/// `raftlb config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a cluster config here, then commit it; every node applies it.
    Apply {
        /// The cluster config (format from the extension).
        file: PathBuf,
        /// Its format: toml, yaml, json or haproxy (default: from its
        /// extension).
        #[arg(long, value_name = "FORMAT", value_parser = format_arg)]
        format: Option<raftlb_proto::Format>,
        /// Only if this version is the committed one (optimistic concurrency).
        #[arg(long)]
        expected_version: Option<u64>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Print the committed cluster config: the document as committed, or
    /// the config it gives written as a haproxy.cfg or as TOML.
    Show {
        /// Write it in this form: haproxy (a haproxy.cfg that reads back as
        /// the same config; what a haproxy.cfg cannot say is named on
        /// stderr) or toml.
        #[arg(long, value_name = "FORMAT", value_parser = show_format)]
        format: Option<raftlb_proto::Format>,
        #[command(flatten)]
        remote: Remote,
    },
}

/// `raftlb server …` (a server is `BACKEND/SERVER`).
#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// Back in service.
    Ready {
        /// `BACKEND/SERVER`.
        server: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// No new connections; established ones continue.
    Drain {
        /// `BACKEND/SERVER`.
        server: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Out of service: no new connections.
    Maint {
        /// `BACKEND/SERVER`.
        server: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Override the server's weight (0–256).
    Weight {
        /// `BACKEND/SERVER`.
        server: String,
        /// The new weight.
        weight: u32,
        #[command(flatten)]
        remote: Remote,
    },
}

impl ServerCommand {
    /// The server, the change as the admin API's query says it
    /// (`state=drain`, `weight=3`), and the node to ask.
    pub fn change(self) -> (String, String, Remote) {
        match self {
            ServerCommand::Ready { server, remote } => (server, "state=ready".to_string(), remote),
            ServerCommand::Drain { server, remote } => (server, "state=drain".to_string(), remote),
            ServerCommand::Maint { server, remote } => (server, "state=maint".to_string(), remote),
            ServerCommand::Weight {
                server,
                weight,
                remote,
            } => (server, format!("weight={weight}"), remote),
        }
    }
}
