//! Whether this node's proxy can serve ([`Fitness`]): the last config
//! applied, and the VIP interface exists and is up. An unfit node holds no
//! VIP and gives up leadership to a fit one.

use super::announce;
use crate::nodefile::VipSection;
use raftlb_proto::config::Vip;

/// What decides whether this node's proxy can serve.
pub struct Fitness {
    /// The node's `[vip]` settings.
    pub settings: VipSection,
    /// The error of the last config apply, if it failed.
    pub apply_error: Box<dyn Fn() -> Option<String> + Send + Sync>,
}

impl Fitness {
    /// `None` if this node could hold `vips` now, else why not.
    pub fn unfit(&self, vips: &[Vip]) -> Option<String> {
        if let Some(e) = (self.apply_error)() {
            return Some(format!("config not applied: {e}"));
        }
        if vips.is_empty() {
            return None;
        }
        if self.settings.priority == 0 {
            return Some("priority 0: a witness, it votes and never holds a VIP".into());
        }
        let Some(name) = &self.settings.interface else {
            return Some("no [vip] interface in the node file".into());
        };
        match announce::interface(name) {
            Ok(i) if i.is_up() && i.is_running() => None,
            Ok(_) => Some(format!("interface {name} is down")),
            Err(e) => Some(e.to_string()),
        }
    }
}
