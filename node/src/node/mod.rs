//! One running node: opens its Raft state under `data_dir` (a cluster of one
//! when it has no peers), serves its peers and the admin API, applies every
//! committed state to the proxy, reports its health view, reloads on SIGHUP,
//! and stops in two phases (stop accepting, drain).
//!
//! [`start`] brings it up, [`follow`] keeps it in step with the committed
//! state, [`run`](mod@run) is the foreground process around it.

mod follow;
mod run;
mod start;
pub mod systemd;

pub use run::run;
pub use start::{Node, Startup};
