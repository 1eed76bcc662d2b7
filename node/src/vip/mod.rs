//! The virtual IPs: held by the one node that leads with a valid lease (a
//! quorum acknowledged it within the shortest election timeout) and whose
//! proxy can serve. Taking a VIP adds it to `[vip] interface` (rtnetlink)
//! and announces it at once, then `garp_repeat - 1` more times every
//! `garp_interval`, then every `garp_refresh`. Losing the lease removes it
//! at once: the lease lapses before any other node can be elected, so two
//! nodes never hold it together.
//!
//! Also here: the start-up removal of VIPs a crashed process left behind,
//! the node's standing (priority, fitness) replicated for the others, and
//! preemption: a fit node of higher priority, or any fit node while the
//! leader is unfit, campaigns for leadership.

mod address;
pub mod announce;
mod control;
mod error;
mod fitness;
mod holder;
pub mod netlink;
mod notify;
mod recorded;
mod report;
mod standing;

pub use control::VipControl;
pub use error::{check_capabilities, VipError};
pub use fitness::Fitness;
pub use recorded::{release_recorded, VIPS_FILE};
pub use report::{VipReport, VipState};
pub use standing::successors;
