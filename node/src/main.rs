//! The `raftlb` binary: everything lives in the library.

/// mimalloc rather than glibc's malloc: the proxy allocates and frees small
/// blocks on every request (hyper's heads and bodies, the request's state),
/// and glibc's bins spent about 4% of the L7 keep-alive CPU on them.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    raftlb::cli::main()
}
