//! Passive health (`observe layer4` / `layer7`): what HTTP traffic says of
//! a server, fed to its live state as HAProxy counts it.

use crate::proxy::backend::ServerRt;
use crate::server::log_transition;

/// Passive health (`observe`): what real traffic says of a server, counted
/// as HAProxy counts it. `layer` is what this outcome is about.
pub(super) fn observe(
    srv: &ServerRt,
    layer: raftlb_proto::config::Observe,
    outcome: Result<(), &str>,
) {
    if srv.cfg.check.is_none() || srv.cfg.observe != Some(layer) {
        return;
    }
    match outcome {
        Ok(()) => srv.state.observed_ok(),
        Err(reason) => {
            let t = srv
                .state
                .observed_error(srv.cfg.on_error, srv.cfg.error_limit, reason);
            log_transition(&srv.state, t, reason, "observed traffic");
        }
    }
}

/// Whether HAProxy's `observe layer7` counts a status as valid: 100–499,
/// 501 and 505.
pub(super) fn layer7_ok(status: u16) -> bool {
    (100..500).contains(&status) || status == 501 || status == 505
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer7_counts_statuses_as_haproxy() {
        for ok in [100, 200, 302, 404, 499, 501, 505] {
            assert!(layer7_ok(ok), "{ok}");
        }
        for bad in [500, 502, 503, 504, 506, 599] {
            assert!(!layer7_ok(bad), "{bad}");
        }
    }
}
