//! What a command that runs in this process needs: logging, the open-file
//! limit, the async runtime; the node itself (`run`, `cluster init|join`)
//! and `vip release`.

use crate::node::Startup;
use crate::nodefile::{LogFormat, LogSection, LogTarget, NodeConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use tracing_subscriber::{Layer, Registry};

fn load_node(path: &std::path::Path) -> Result<NodeConfig, ExitCode> {
    let node = NodeConfig::load(path).map_err(|e| fail(&e.to_string()))?;
    init_logging(&node.log);
    raise_nofile_limit();
    Ok(node)
}

pub(super) fn read_initial(
    lb: &Option<crate::handle::LbFile>,
) -> Result<Option<(String, raftlb_proto::Format, String)>, ExitCode> {
    match lb {
        None => Ok(None),
        Some(f) => crate::handle::read_lb(f)
            .map(|(doc, format)| Some((doc, format, f.path.display().to_string())))
            .map_err(|e| fail(&e.to_string())),
    }
}

pub(super) fn run_node(
    node: PathBuf,
    startup: impl FnOnce(&NodeConfig) -> Result<Startup, ExitCode>,
    lb: Option<crate::handle::LbFile>,
    print_token: bool,
) -> ExitCode {
    let node = match load_node(&node) {
        Ok(n) => n,
        Err(code) => return code,
    };
    let startup = match startup(&node) {
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

/// `raftlb vip release`.
pub(super) fn vip_release(path: &std::path::Path) -> ExitCode {
    let node = match NodeConfig::load(path) {
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

pub(super) fn fail(msg: &str) -> ExitCode {
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

/// Starts logging as `[log]` says: its level (or `RAFTLB_LOG`), to stderr
/// or syslog, as text or JSON lines.
pub(super) fn init_logging(log: &LogSection) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = std::env::var("RAFTLB_LOG").unwrap_or_else(|_| log.level.clone());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|e| {
        eprintln!("raftlb: bad log filter {filter:?} ({e}); using \"info\"");
        tracing_subscriber::EnvFilter::new("info")
    });
    let json = log.format == LogFormat::Json;
    let layer = match log.target {
        LogTarget::Journald => match tracing_journald::layer() {
            Ok(journal) => journal.with_syslog_identifier(log.tag.clone()).boxed(),
            Err(e) => {
                eprintln!("raftlb: cannot log to the journal ({e}); logging to stderr");
                lines(std::io::stderr, json, false, true)
            }
        },
        LogTarget::Stderr => {
            let ansi = !json && std::io::IsTerminal::is_terminal(&std::io::stderr());
            lines(std::io::stderr, json, ansi, true)
        }
        LogTarget::Syslog => {
            match super::syslog::Syslog::open(&log.address, log.facility.code(), &log.tag) {
                // The message carries the time.
                Ok(syslog) => lines(syslog, json, false, json),
                Err(e) => {
                    eprintln!(
                        "raftlb: cannot log to syslog at {} ({e}); logging to stderr",
                        log.address
                    );
                    lines(std::io::stderr, json, false, true)
                }
            }
        }
    };
    tracing_subscriber::registry()
        .with(layer)
        .with(filter)
        .init();
}

/// The formatting layer: text or JSON lines to `w`, with the event's
/// target, coloured if `ansi`, timed if `time`.
fn lines<W>(w: W, json: bool, ansi: bool, time: bool) -> Box<dyn Layer<Registry> + Send + Sync>
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let l = tracing_subscriber::fmt::layer()
        .with_writer(w)
        .with_target(true)
        .with_ansi(ansi);
    match (json, time) {
        (true, _) => l.json().boxed(),
        (false, true) => l.boxed(),
        (false, false) => l.without_time().boxed(),
    }
}

/// Runs `fut` with `threads` proxy threads (0: one per core). One thread:
/// a current-thread runtime for everything, with no work-stealing to pay
/// for. More: the data path on that many workers (see [`crate::workers`]),
/// and the rest (cluster, health checks, admin) on a current-thread runtime
/// of its own, on this thread.
pub(super) fn with_runtime<E: std::fmt::Display>(
    threads: usize,
    fut: impl std::future::Future<Output = Result<(), E>>,
) -> ExitCode {
    let threads = match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    if threads > 1 {
        if let Err(e) = crate::workers::start(threads) {
            return fail(&format!("cannot start {threads} worker threads: {e}"));
        }
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string()),
    }
}

/// `raftlb cluster token`: the join token of the cluster this node is a
/// member of, from its data directory.
pub(super) fn print_token(path: &std::path::Path) -> ExitCode {
    let node = match NodeConfig::load(path) {
        Ok(n) => n,
        Err(e) => return fail(&e.to_string()),
    };
    let file = node.data_dir.join(raftlb_cluster::net::secret::SECRET_FILE);
    match raftlb_cluster::net::secret::ClusterSecret::load(&file) {
        Ok(s) => {
            println!("{}", s.to_token());
            ExitCode::SUCCESS
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fail(&format!(
            "{}: no cluster secret: this node has not formed or joined a cluster",
            file.display()
        )),
        Err(e) => fail(&format!("{}: {e}", file.display())),
    }
}
