//! What the command line tells of itself: shell completion scripts and the
//! man page raftlb(1), both generated from its grammar (`args.rs`).

use super::args::Cli;
use super::process::fail;
use clap::CommandFactory;
use std::process::ExitCode;

/// `raftlb completions SHELL`: the completion script, on stdout.
pub(super) fn completions(shell: clap_complete::Shell) -> ExitCode {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "raftlb", &mut std::io::stdout());
    ExitCode::SUCCESS
}

/// `raftlb manpage`: raftlb(1) in roff, on stdout.
pub(super) fn manpage() -> ExitCode {
    match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("cannot write the man page: {e}")),
    }
}
