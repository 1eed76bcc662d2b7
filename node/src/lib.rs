//! raftlb's node: the `raftlb` binary's library. `node` runs one node (proxy,
//! health checks, admin API, reloads); `cli` is the command line; `main.rs`
//! only calls [`cli::main`].

pub mod admin;
pub mod cli;
pub mod demo;
pub mod handle;
pub mod health;
pub mod node;
pub mod nodefile;
pub mod proxy;
pub mod runtime;
pub mod server;
pub mod stick;
pub mod vip;
pub mod workers;
