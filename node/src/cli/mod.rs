//! The command line (clap): the node (`run`, `cluster init`, `cluster join`,
//! `demo`), file checks (`check`), and client commands that talk to a
//! running node's admin API (`status`, `cluster status|leave`, `config
//! apply|show`, `server ready|drain|maint|weight`).

mod check;
mod remote;

pub use check::check;

use crate::node::Startup;
use crate::nodefile::NodeConfig;
use clap::{Args, Parser, Subcommand};
use raftlb_cluster::net::secret::ClusterSecret;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node that already has state (or, with no `[cluster] listen`,
    /// a cluster of one on `--lb`).
    ///
    /// SIGHUP re-reads `--lb` and applies it through the cluster (refused
    /// with its errors if it has any; the running config stays).
    /// SIGTERM/SIGINT stop accepting, then drain connections for up to 10 s.
    Run {
        /// The node file (this machine's settings).
        #[arg(long, value_name = "FILE")]
        node: PathBuf,
        /// The cluster config: the first config of a new cluster of one,
        /// and the file SIGHUP re-reads.
        #[arg(long, value_name = "FILE")]
        lb: Option<PathBuf>,
    },
    /// Validate config files (a node file or a cluster config, told apart by
    /// their keys), like `haproxy -c -f`.
    ///
    /// Exit 0 and one line per valid file; exit 1 and every error otherwise.
    Check {
        /// A file to check (repeat for several).
        #[arg(short = 'c', long = "config", value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
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
        /// The first cluster config (and the file SIGHUP re-reads).
        #[arg(long, value_name = "FILE")]
        lb: Option<PathBuf>,
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
        /// Only if this version is the committed one (optimistic concurrency).
        #[arg(long)]
        expected_version: Option<u64>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Print the committed cluster config.
    Show {
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

fn load_node(path: &std::path::Path) -> Result<NodeConfig, ExitCode> {
    let node = NodeConfig::load(path).map_err(|e| fail(&e.to_string()))?;
    init_logging(&node.log.level);
    raise_nofile_limit();
    Ok(node)
}

fn read_initial(
    lb: &Option<PathBuf>,
) -> Result<Option<(String, raftlb_proto::Format, String)>, ExitCode> {
    match lb {
        None => Ok(None),
        Some(p) => crate::handle::read_lb(p)
            .map(|(doc, format)| Some((doc, format, p.display().to_string())))
            .map_err(|e| fail(&e.to_string())),
    }
}

fn run_node(
    node: PathBuf,
    startup: impl FnOnce() -> Result<Startup, ExitCode>,
    lb: Option<PathBuf>,
    print_token: bool,
) -> ExitCode {
    let node = match load_node(&node) {
        Ok(n) => n,
        Err(code) => return code,
    };
    let startup = match startup() {
        Ok(s) => s,
        Err(code) => return code,
    };
    let threads = node.threads;
    with_runtime(
        threads,
        crate::node::run(node, startup, lb, move |n| {
            if print_token {
                println!("cluster initialized; join other nodes with:");
                println!(
                    "  raftlb cluster join --node node.toml --peer {} --token {}",
                    n.cluster_addr
                        .map_or("<this node's [cluster] listen>".to_string(), |a| a
                            .to_string()),
                    n.token
                );
            }
            println!("node running; admin API on {}", n.admin_addr);
        }),
    )
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Command::Status { .. }
            | Command::Cluster(ClusterCommand::Status { .. } | ClusterCommand::Leave { .. })
            | Command::Config(_)
            | Command::Server(_)
    ) {
        // A client command piped into `head` ends quietly, as other Unix
        // tools do. (Nodes keep SIGPIPE ignored: a peer closing a socket
        // must not end the process.)
        // SAFETY: restores the default action before any thread exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match cli.command {
        Command::Check { files } => check(&files),
        Command::Vip(VipCommand::Release { node }) => vip_release(&node),
        Command::Run { node, lb } => {
            let initial = match read_initial(&lb) {
                Ok(i) => i,
                Err(code) => return code,
            };
            run_node(node, || Ok(Startup::Resume { initial }), lb, false)
        }
        Command::Cluster(ClusterCommand::Init { node, lb }) => {
            let initial = match read_initial(&lb) {
                Ok(i) => i,
                Err(code) => return code,
            };
            run_node(node, || Ok(Startup::Init { initial }), lb, true)
        }
        Command::Cluster(ClusterCommand::Join { node, peer, token }) => {
            let startup = || {
                let secret = ClusterSecret::from_token(&token)
                    .map_err(|e| fail(&format!("--token: {e}")))?;
                Ok(Startup::Join { peer, secret })
            };
            run_node(node, startup, None, false)
        }
        Command::Demo { listen, admin } => {
            init_logging("info");
            with_runtime(0, crate::demo::run(listen, admin))
        }
        Command::Status { remote } => with_runtime(1, remote::status(remote.admin, remote.json)),
        Command::Cluster(ClusterCommand::Status { remote }) => {
            with_runtime(1, remote::cluster_status(remote))
        }
        Command::Cluster(ClusterCommand::Leave { node_id, remote }) => {
            with_runtime(1, remote::leave(remote, node_id))
        }
        Command::Config(ConfigCommand::Apply {
            file,
            expected_version,
            remote,
        }) => with_runtime(1, remote::config_apply(remote, file, expected_version)),
        Command::Config(ConfigCommand::Show { remote }) => {
            with_runtime(1, remote::config_show(remote))
        }
        Command::Server(cmd) => {
            let (server, change, remote) = match cmd {
                ServerCommand::Ready { server, remote } => {
                    (server, "state=ready".to_string(), remote)
                }
                ServerCommand::Drain { server, remote } => {
                    (server, "state=drain".to_string(), remote)
                }
                ServerCommand::Maint { server, remote } => {
                    (server, "state=maint".to_string(), remote)
                }
                ServerCommand::Weight {
                    server,
                    weight,
                    remote,
                } => (server, format!("weight={weight}"), remote),
            };
            with_runtime(1, remote::server(remote, server, change))
        }
    }
}

/// `raftlb vip release`.
fn vip_release(path: &std::path::Path) -> ExitCode {
    let node = match crate::nodefile::NodeConfig::load(path) {
        Ok(n) => n,
        Err(e) => return fail(&e.to_string()),
    };
    let Some(iface) = node.vip.interface.clone() else {
        return fail(&format!("{}: no [vip] interface", path.display()));
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start a runtime: {e}")),
    };
    match rt.block_on(crate::vip::release_recorded(&node)) {
        Ok(removed) if removed.is_empty() => {
            println!("no VIP of this node on {iface}");
            ExitCode::SUCCESS
        }
        Ok(removed) => {
            for v in removed {
                println!("removed {v} from {iface}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e.to_string()),
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("raftlb: {msg}");
    ExitCode::FAILURE
}

/// Raises the soft open-file limit to the hard one, as HAProxy does: each
/// proxied connection needs two descriptors.
fn raise_nofile_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write only the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let wanted = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) != 0 {
                tracing::warn!("could not raise the open-file limit from {}", lim.rlim_cur);
            }
        }
    }
}

fn init_logging(level: &str) {
    let filter = std::env::var("RAFTLB_LOG").unwrap_or_else(|_| level.to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|e| {
        eprintln!("raftlb: bad log filter {filter:?} ({e}); using \"info\"");
        tracing_subscriber::EnvFilter::new("info")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
}

fn with_runtime<E: std::fmt::Display>(
    threads: usize,
    fut: impl std::future::Future<Output = Result<(), E>>,
) -> ExitCode {
    // One thread: a current-thread runtime, with no work-stealing to pay for.
    let mut b = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    if threads > 1 {
        b.worker_threads(threads);
    }
    let rt = match b.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string()),
    }
}
