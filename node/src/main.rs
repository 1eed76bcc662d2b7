//! The `raftlb` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    raftlb::cli::main()
}
