//! What goes wrong with a VIP ([`VipError`]), and the capabilities holding
//! one needs.

/// What went wrong with a VIP.
#[derive(Debug, thiserror::Error)]
pub enum VipError {
    /// `[vip] interface` names no interface of this machine.
    #[error("no interface {0:?} on this machine ([vip] interface in the node file)")]
    NoInterface(String),
    /// An rtnetlink request failed.
    #[error("cannot {what}: {error}")]
    Netlink {
        /// What was asked.
        what: String,
        /// The kernel's answer.
        error: String,
    },
    /// An announcement could not be sent.
    #[error("cannot announce the VIP: {0}")]
    Announce(String),
    /// The process lacks a capability that holding a VIP needs.
    #[error(
        "holding a VIP needs {0} (adding an address needs CAP_NET_ADMIN, announcing it CAP_NET_RAW): run raftlb as root, or grant them (systemd: AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW)"
    )]
    Capability(&'static str),
}

/// The capabilities holding a VIP needs, checked in the effective set.
pub fn check_capabilities() -> Result<(), VipError> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or(0);
    const NET_ADMIN: u64 = 1 << 12;
    const NET_RAW: u64 = 1 << 13;
    match (eff & NET_ADMIN != 0, eff & NET_RAW != 0) {
        (true, true) => Ok(()),
        (false, true) => Err(VipError::Capability("CAP_NET_ADMIN")),
        (true, false) => Err(VipError::Capability("CAP_NET_RAW")),
        (false, false) => Err(VipError::Capability("CAP_NET_ADMIN and CAP_NET_RAW")),
    }
}
