//! The proxy: listeners, frontends and backends at run time, and the L4 path
//! from an accepted connection to a server.

pub mod backend;
pub mod balance;
pub mod frontend;
pub mod http;
pub mod limit;
pub mod listener;
pub mod relay;
pub mod session;
pub mod stats;

pub use frontend::FrontendRt;
