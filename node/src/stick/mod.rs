//! Stick tables at run time: [`StickTable`] (entries in bounded shards,
//! expiry, eviction, last-writer-wins learning), and the task that purges
//! each table's expired entries. The proxy consults a backend's table
//! before its balance algorithm (`proxy/backend.rs`); the runtime keeps the
//! tables across reloads, a graceful stop saves them for the next start
//! ([`saved`]), and peers keep each other's tables in step ([`sync`]).

mod count;
pub mod saved;
mod shard;
pub mod sync;
mod table;

pub use saved::SavedTable;
pub use table::{now_ms, stuck, StickTable};

use std::sync::{Arc, Weak};
use std::time::Duration;

/// How often expired entries are removed (a lookup never returns one
/// meanwhile).
const PURGE_EVERY: Duration = Duration::from_secs(1);

/// Purges `table`'s expired entries every second, until the table is
/// dropped.
pub fn spawn_purge(table: &Arc<StickTable>) {
    let weak: Weak<StickTable> = Arc::downgrade(table);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PURGE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(table) = weak.upgrade() else { return };
            table.purge(now_ms());
        }
    });
}

#[cfg(test)]
mod tests;
