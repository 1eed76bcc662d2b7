//! The openraft type config and the messages nodes exchange: Raft's own
//! RPCs plus forwarded writes and membership requests. Every message travels
//! in `raftlb_proto::wire` frames.

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use raftlb_proto::stick::{PullFrom, StickPage, TableEntries, TableKey};
use raftlb_proto::{Command, NodeId, Outcome};
use serde::{Deserialize, Serialize};
use std::io::Cursor;

/// A member as Raft records it: where its peers reach it, and its name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerNode {
    /// The node-to-node address (`HOST:PORT`).
    pub addr: String,
    /// The node's name, for humans.
    pub name: String,
}

impl std::fmt::Display for PeerNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name, self.addr)
    }
}

/// One member as `cluster status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// Node id.
    pub id: NodeId,
    /// Name.
    pub name: String,
    /// Node-to-node address.
    pub addr: String,
    /// `voter` or `learner`.
    pub role: String,
    /// Highest log index known replicated to it (leader only).
    pub matched: Option<u64>,
    /// How far behind the leader's log it is (leader only).
    pub lag: Option<u64>,
    /// Milliseconds since this node last exchanged a message with it.
    pub last_contact_ms: Option<u64>,
}

openraft::declare_raft_types!(
    /// raftlb's Raft: commands in, outcomes out, u64 node ids.
    pub TypeConfig:
        D = Command,
        R = Outcome,
        NodeId = NodeId,
        Node = PeerNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The Raft instance.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id.
pub type LogId = openraft::LogId<NodeId>;
/// A vote.
pub type Vote = openraft::Vote<NodeId>;
/// Membership as stored.
pub type StoredMembership = openraft::StoredMembership<NodeId, PeerNode>;
/// A snapshot's metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, PeerNode>;
/// A snapshot.
pub type Snapshot = openraft::Snapshot<TypeConfig>;
/// A storage error.
pub type StorageError = openraft::StorageError<NodeId>;

/// A request from one node to another.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// Raft: append entries (and heartbeats).
    Append(AppendEntriesRequest<TypeConfig>),
    /// Raft: request a vote.
    Vote(VoteRequest<NodeId>),
    /// Raft: one chunk of a snapshot.
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// A client write forwarded to the node believed to lead.
    Write(Command),
    /// Add a node: as a learner, then (once it caught up) as a voter.
    Join {
        /// The new node's id.
        id: NodeId,
        /// Where to reach it.
        node: PeerNode,
    },
    /// Remove a node from the voters and the learners.
    Leave {
        /// The node's id.
        id: NodeId,
    },
    /// Is `id` still a member? Asked by a node that may have been removed.
    IsMember {
        /// The asking node's id.
        id: NodeId,
    },
    /// The members as the leader sees them (for `cluster status` on a
    /// follower).
    Members,
    /// The answering node's own report (opaque to the cluster: the node
    /// fills it, e.g. with the VIPs it holds).
    Report,
    /// Would you vote for a candidate with this last log entry? Asked
    /// before campaigning, so that a node that cannot win (its log is
    /// behind, or the others still hear their leader) does not depose the
    /// leader with its higher term.
    PreVote {
        /// The would-be candidate's last log id.
        last_log: Option<openraft::LogId<NodeId>>,
    },
    /// The leader's lease heartbeat: "I lead with this vote". Answered from
    /// the node's vote and clock, without Raft's core or its disk (see
    /// lease.rs).
    Heartbeat {
        /// The leader's vote.
        vote: openraft::Vote<NodeId>,
    },
    /// Stick-table entries this node wrote, pushed to a peer (protocol
    /// version 2 on).
    StickPush(Vec<TableEntries>),
    /// A page of the peer's stick tables, from the start or from where the
    /// last page ended: a full resync (protocol version 2 on).
    StickPull(Option<PullFrom>),
    /// `table clear`, asked of every node by the node the operator asked:
    /// clear table `table` (its entry `key` only, if given) (protocol
    /// version 2 on).
    StickClear {
        /// The table.
        table: String,
        /// One entry only.
        key: Option<TableKey>,
    },
    /// The leader, stopping, asks a caught-up voter to campaign now
    /// instead of after the leader's silence: it has dropped its VIPs and
    /// will vote for it (protocol version 3 on).
    TakeOver {
        /// The leader's last log id: the asked node campaigns only if its
        /// log is as recent.
        last_log: Option<openraft::LogId<NodeId>>,
    },
}

impl Request {
    /// The request's name, for messages (and tests that pick some out).
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Append(_) => "Append",
            Request::Vote(_) => "Vote",
            Request::Snapshot(_) => "Snapshot",
            Request::Write(_) => "Write",
            Request::Join { .. } => "Join",
            Request::Leave { .. } => "Leave",
            Request::IsMember { .. } => "IsMember",
            Request::Members => "Members",
            Request::Report => "Report",
            Request::PreVote { .. } => "PreVote",
            Request::Heartbeat { .. } => "Heartbeat",
            Request::StickPush(_) => "StickPush",
            Request::StickPull(_) => "StickPull",
            Request::StickClear { .. } => "StickClear",
            Request::TakeOver { .. } => "TakeOver",
        }
    }

    /// The oldest protocol version that has this request: it is sent only
    /// on connections that speak that version or a newer one, and a peer
    /// refuses it on an older one.
    pub fn since(&self) -> u16 {
        match self {
            Request::StickPush(_) | Request::StickPull(_) | Request::StickClear { .. } => 2,
            Request::TakeOver { .. } => 3,
            _ => 1,
        }
    }
}

/// The answer to a [`Request`], in the same order.
#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    /// To [`Request::Append`].
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    /// To [`Request::Vote`].
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    /// To [`Request::Snapshot`].
    Snapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    /// To [`Request::Write`].
    Write(Result<Outcome, WriteFailure>),
    /// To [`Request::Join`] and [`Request::Leave`].
    Membership(Result<(), WriteFailure>),
    /// To [`Request::IsMember`]: `None` if the answering node does not lead.
    IsMember(Option<bool>),
    /// To [`Request::Members`]: `None` if the answering node does not lead.
    Members(Option<Vec<MemberStatus>>),
    /// To [`Request::Report`]: empty if the node set no reporter.
    Report(Vec<u8>),
    /// To [`Request::PreVote`]: whether it would vote.
    PreVote(bool),
    /// To [`Request::Heartbeat`]: whether this node follows that vote (and
    /// so votes for no one else for the voters' lease).
    Heartbeat(bool),
    /// To [`Request::StickPush`]: how many entries the peer took (an
    /// entry older than its own version is not taken, and is no error).
    StickTaken(u64),
    /// To [`Request::StickPull`].
    StickPage(StickPage),
    /// To [`Request::StickClear`]: how many entries it cleared; `None` if
    /// it runs no table of that name.
    StickCleared(Option<u64>),
    /// To [`Request::TakeOver`]: whether this node campaigns.
    TakeOver(bool),
}

impl Response {
    /// The answer's name, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Response::Append(_) => "Append",
            Response::Vote(_) => "Vote",
            Response::Snapshot(_) => "Snapshot",
            Response::Write(_) => "Write",
            Response::Membership(_) => "Membership",
            Response::IsMember(_) => "IsMember",
            Response::Members(_) => "Members",
            Response::Report(_) => "Report",
            Response::PreVote(_) => "PreVote",
            Response::Heartbeat(_) => "Heartbeat",
            Response::StickTaken(_) => "StickTaken",
            Response::StickPage(_) => "StickPage",
            Response::StickCleared(_) => "StickCleared",
            Response::TakeOver(_) => "TakeOver",
        }
    }
}

/// Why a write (or membership change) did not commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum WriteFailure {
    /// This node does not lead; the leader it knows of, if any.
    #[error("not the leader (leader: {})", leader.map_or("unknown".to_string(), |l| l.to_string()))]
    NotLeader {
        /// The leader's id.
        leader: Option<NodeId>,
        /// The leader's address.
        addr: Option<String>,
    },
    /// No quorum answered in time: nothing was committed as far as this
    /// node knows (it may still commit if the partition heals).
    #[error("no quorum: the write was not confirmed within {0} ms (is a majority of the nodes up and reachable?)")]
    NoQuorum(u64),
    /// Anything else, as text.
    #[error("{0}")]
    Other(String),
}
