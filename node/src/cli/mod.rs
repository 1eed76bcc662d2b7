//! The command line (clap): the node (`run`, `cluster init`, `cluster join`,
//! `demo`), file checks and conversion (`check`, `convert`), and client commands that talk to a
//! running node's admin API (`status`, `cluster status|leave`, `config
//! apply|show`, `server ready|drain|maint|weight`).

mod args;
mod check;
mod docs;
mod process;
mod remote;
mod syslog;

pub use args::{
    Cli, ClusterCommand, Command, ConfigCommand, Remote, ServerCommand, TableCommand, VipCommand,
};
pub use check::check;

use crate::node::Startup;
use crate::nodefile::NodeConfig;
use clap::Parser;
use process::{fail, init_logging, print_token, read_initial, run_node, vip_release, with_runtime};
use raftlb_cluster::net::secret::ClusterSecret;
use std::process::ExitCode;

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    quiet_sigpipe(&cli.command);
    dispatch(cli.command)
}

/// A client command piped into `head` ends quietly, as other Unix tools
/// do. (Nodes keep SIGPIPE ignored: a peer closing a socket must not end
/// the process.)
fn quiet_sigpipe(command: &Command) {
    if matches!(
        command,
        Command::Status { .. }
            | Command::Cluster(ClusterCommand::Status { .. } | ClusterCommand::Leave { .. })
            | Command::Config(_)
            | Command::Server(_)
            | Command::Table(_)
            | Command::Completions { .. }
            | Command::Manpage
    ) {
        // SAFETY: restores the default action before any thread exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
}

/// `raftlb config …`.
fn config(cmd: ConfigCommand) -> ExitCode {
    match cmd {
        ConfigCommand::Apply {
            file,
            format,
            expected_version,
            remote,
        } => {
            let file = crate::handle::LbFile { path: file, format };
            with_runtime(1, remote::config_apply(remote, file, expected_version))
        }
        ConfigCommand::Show { format, remote } => {
            with_runtime(1, remote::config_show(remote, format))
        }
    }
}

/// Runs `command`.
fn dispatch(command: Command) -> ExitCode {
    match command {
        Command::Check { files, format } => check(&files, format),
        Command::Convert {
            file,
            format,
            output,
        } => check::convert(
            &crate::handle::LbFile { path: file, format },
            output.as_deref(),
        ),
        Command::Completions { shell } => docs::completions(shell),
        Command::Manpage => docs::manpage(),
        Command::Vip(VipCommand::Release { node }) => vip_release(&node),
        Command::Run { node, lb } => {
            let lb = lb.file();
            let initial = match read_initial(&lb) {
                Ok(i) => i,
                Err(code) => return code,
            };
            let startup = |n: &NodeConfig| {
                Ok(Startup::Auto {
                    initial,
                    bootstrap: n.cluster.bootstrap,
                    join: n.join(),
                })
            };
            run_node(node, startup, lb, false)
        }
        Command::Cluster(ClusterCommand::Init { node, lb }) => {
            let lb = lb.file();
            let initial = match read_initial(&lb) {
                Ok(i) => i,
                Err(code) => return code,
            };
            run_node(node, |_| Ok(Startup::Init { initial }), lb, true)
        }
        Command::Cluster(ClusterCommand::Join { node, peer, token }) => {
            let startup = |_: &NodeConfig| {
                let secret = ClusterSecret::from_token(&token)
                    .map_err(|e| fail(&format!("--token: {e}")))?;
                Ok(Startup::Join { peer, secret })
            };
            run_node(node, startup, None, false)
        }
        Command::Cluster(ClusterCommand::Token { node }) => print_token(&node),
        Command::Demo { listen, admin } => {
            init_logging(&crate::nodefile::LogSection::default());
            with_runtime(0, crate::demo::run(listen, admin))
        }
        Command::Status { remote } => with_runtime(1, remote::status(remote)),
        Command::Cluster(ClusterCommand::Status { remote }) => {
            with_runtime(1, remote::cluster_status(remote))
        }
        Command::Cluster(ClusterCommand::Leave { node_id, remote }) => {
            with_runtime(1, remote::leave(remote, node_id))
        }
        Command::Config(cmd) => config(cmd),
        Command::Server(cmd) => {
            let (server, change, remote) = cmd.change();
            with_runtime(1, remote::server(remote, server, change))
        }
        Command::Table(TableCommand::Show { table, key, remote }) => {
            with_runtime(1, remote::table_show(remote, table, key))
        }
        Command::Table(TableCommand::Clear { table, key, remote }) => {
            with_runtime(1, remote::table_clear(remote, table, key))
        }
    }
}
