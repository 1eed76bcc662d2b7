//! Node-to-node transport. [`Transport`] is what the Raft network and the
//! write forwarding use to call another node; [`Handler`] is what answers on
//! the other side. `tcp` implements both over authenticated TCP; `mem` is an
//! in-process network whose links tests can cut and heal.

pub mod handshake;
pub mod mem;
pub mod raft;
pub mod secret;
pub mod tcp;
#[cfg(test)]
mod tcp_tests;
mod transport;

pub use transport::{BoxFuture, CallError, Handler, Transport};
