//! What a node plugs into its peers' answers for the stick-table sync
//! ([`StickPeer`]): the entries a peer pushes, the pages of a full resync
//! a peer asks for, and `table clear`. The cluster carries them and knows nothing of
//! tables; without a [`StickPeer`] set, pushes are taken by nobody and a
//! resync finds nothing.

use raftlb_proto::stick::{PullFrom, StickPage, TableEntries, TableKey};
use raftlb_proto::NodeId;

/// The node's stick tables, as its peers reach them.
pub trait StickPeer: Send + Sync + 'static {
    /// Takes the entries that node `from` pushed; returns how many were
    /// taken (newer than this node's own versions).
    fn take(&self, from: NodeId, tables: Vec<TableEntries>) -> u64;
    /// The page of this node's tables that starts after `from` (`None`:
    /// the first page).
    fn page(&self, from: Option<PullFrom>) -> StickPage;
    /// Clears table `table` (its entry `key` only, if given); returns how
    /// many entries, or `None` without a table of that name.
    fn clear(&self, table: &str, key: Option<&TableKey>) -> Option<u64>;
}
