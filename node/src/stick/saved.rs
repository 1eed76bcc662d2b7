//! Stick tables saved at a graceful stop and read back at the next start
//! (`data_dir/stick-tables`): entries keep their expiry (absolute times)
//! and their stamps, so even a whole-cluster restart keeps affinity
//! (HAProxy loses its tables on reload: its issues #1216, #842).

use super::table::StickTable;
use raftlb_proto::stick::TableEntries;
use serde::{Deserialize, Serialize};
use std::io;
use std::path::Path;
use std::sync::Arc;

/// The file, in the data directory.
pub const FILE: &str = "stick-tables";

/// The layout of the file this version writes; another is refused (and the
/// tables start empty) rather than misread. 2: entries keep counters.
const VERSION: u32 = 2;

#[derive(Serialize, Deserialize)]
struct Saved {
    version: u32,
    tables: Vec<SavedTable>,
}

/// One table's entries as saved (or as a peer sent them).
pub type SavedTable = TableEntries;

/// Writes the live entries of `tables` at `now_ms` to `path` (atomically);
/// returns how many.
pub fn save(path: &Path, tables: &[Arc<StickTable>], now_ms: u64) -> io::Result<usize> {
    let tables: Vec<SavedTable> = tables
        .iter()
        .map(|t| SavedTable {
            name: t.name().to_string(),
            entries: t.entries(now_ms),
        })
        .collect();
    let n = tables.iter().map(|t| t.entries.len()).sum();
    let saved = Saved {
        version: VERSION,
        tables,
    };
    raftlb_cluster::store::save_value(path, &saved)?;
    Ok(n)
}

/// What [`save`] wrote to `path` (nothing if there is no file).
pub fn load(path: &Path) -> io::Result<Vec<SavedTable>> {
    match raftlb_cluster::store::load_value::<Saved>(path)? {
        None => Ok(Vec::new()),
        Some(s) if s.version == VERSION => Ok(s.tables),
        Some(s) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: saved by another version (layout {}, this one reads {VERSION})",
                path.display(),
                s.version
            ),
        )),
    }
}
