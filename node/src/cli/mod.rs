//! The command line (clap): `run`, `check`, `demo`, `status`.

use crate::nodefile::NodeConfig;
use clap::{Parser, Subcommand};
use raftlb_proto::{ClusterConfig, Format};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node: the proxy, health checks and the admin API.
    ///
    /// SIGHUP re-reads the cluster config (refused with its errors if it has
    /// any; the running config stays). SIGTERM/SIGINT stop accepting, then
    /// drain connections for up to 10 s.
    Run {
        /// The node file (this machine's settings).
        #[arg(long, value_name = "FILE")]
        node: PathBuf,
        /// The cluster config (load balancer: frontends, backends, servers).
        #[arg(long, value_name = "FILE")]
        lb: PathBuf,
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
        /// The node's admin API.
        #[arg(long, env = "RAFTLB_ADMIN", default_value = "127.0.0.1:9900")]
        admin: SocketAddr,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { files } => check(&files),
        Command::Run { node, lb } => {
            let node = match NodeConfig::load(&node) {
                Ok(n) => n,
                Err(e) => return fail(&e.to_string()),
            };
            init_logging(&node.log.level);
            raise_nofile_limit();
            with_runtime(node.threads, crate::node::run(node, lb))
        }
        Command::Demo { listen, admin } => {
            init_logging("info");
            with_runtime(0, crate::demo::run(listen, admin))
        }
        Command::Status { admin, json } => with_runtime(1, status(admin, json)),
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

/// Which kind of file a check looks at.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Node,
    Cluster,
}

/// A TOML file with a top-level `id`, `name` or `data_dir` is a node file;
/// everything else is a cluster config.
fn kind_of(path: &Path, text: &str) -> Kind {
    if Format::from_path(&path.to_string_lossy()) != Format::Toml {
        return Kind::Cluster;
    }
    let keys: Vec<String> = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .build()
        .and_then(|c| c.try_deserialize::<std::collections::HashMap<String, config::Value>>())
        .map(|m| m.into_keys().collect())
        .unwrap_or_default();
    let node_keys = ["id", "name", "data_dir"];
    if keys.iter().any(|k| node_keys.contains(&k.as_str())) {
        Kind::Node
    } else {
        Kind::Cluster
    }
}

/// `raftlb check`.
pub fn check(files: &[PathBuf]) -> ExitCode {
    let mut ok = true;
    for path in files {
        let shown = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{shown}: cannot read: {e}");
                ok = false;
                continue;
            }
        };
        match kind_of(path, &text) {
            Kind::Node => match NodeConfig::load_with_env(path, Default::default()) {
                Ok(n) => println!("{shown}: node file is valid (node {} {:?})", n.id, n.name),
                Err(e) => {
                    eprintln!("{e}");
                    ok = false;
                }
            },
            Kind::Cluster => match ClusterConfig::parse(&text, Format::from_path(&shown)) {
                Ok(c) => {
                    let servers: usize = c.backends.values().map(|b| b.servers.len()).sum();
                    println!(
                        "{shown}: cluster config is valid ({} frontends, {} backends, {servers} servers)",
                        c.frontends.len(),
                        c.backends.len()
                    );
                }
                Err(errs) => {
                    eprint!("{}", errs.render(&shown));
                    eprintln!("{shown}: {} error(s)", errs.0.len());
                    ok = false;
                }
            },
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn status(admin: SocketAddr, json: bool) -> Result<(), crate::admin::ClientError> {
    let body = crate::admin::get(admin, "/status").await?;
    if json {
        print!("{body}");
        return Ok(());
    }
    let v: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| crate::admin::ClientError::Protocol {
            addr: admin,
            message: e.to_string(),
        })?;
    println!(
        "node {}  config version {} (applied {})",
        v["node"].as_str().unwrap_or("?"),
        v["config_version"],
        v["applied_version"]
    );
    if let Some(e) = v["apply_error"].as_str() {
        println!("last apply failed: {e}");
    }
    if let Some(fes) = v["frontends"].as_object() {
        for (name, addrs) in fes {
            println!("frontend {name}: {addrs}");
        }
    }
    if let Some(bes) = v["backends"].as_object() {
        for (name, servers) in bes {
            println!("backend {name}");
            for s in servers.as_array().into_iter().flatten() {
                println!(
                    "  {:<12} {:<22} {:<4} {:>6} conns {:>8} total  {}{}",
                    s["name"].as_str().unwrap_or("?"),
                    s["address"].as_str().unwrap_or("?"),
                    if s["up"].as_bool() == Some(true) {
                        "UP"
                    } else {
                        "DOWN"
                    },
                    s["cur_conns"],
                    s["total_conns"],
                    if s["backup"].as_bool() == Some(true) {
                        "backup, "
                    } else {
                        ""
                    },
                    s["last_change"].as_str().unwrap_or(""),
                );
            }
        }
    }
    Ok(())
}
