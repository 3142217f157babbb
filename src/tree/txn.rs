//! Transactions: what `prep` produces, what the log stores and replicates, and what `apply`
//! consumes, plus the outcome of applying one (the reply material and the watch events).
//!
//! A transaction body is fully resolved: sequence suffixes are applied, ACLs fixed up, new
//! versions computed. Applying the same sequence of transactions to the same tree therefore
//! always gives the same tree, on every server.

use std::sync::Arc;

use bytes::Bytes;

use crate::jute::{Acl, ErrorCode, Id, OpCode, OpResult, Stat, WatcherEvent};

/// What kind of znode a create makes. Stored in the znode's ephemeralOwner the way ZooKeeper
/// encodes it (`EphemeralType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Persistent,
    /// Owned by this session; deleted when it closes.
    Ephemeral(i64),
    /// Deleted by the container sweeper once it had children and has none.
    Container,
    /// Deleted by the sweeper when it has no children and was not modified for `ttl_ms`.
    Ttl(i64),
}

/// One committed (or to-be-committed) transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Txn {
    pub session_id: i64,
    pub cxid: i32,
    pub zxid: i64,
    /// Wall-clock time assigned by the leader; becomes ctime/mtime.
    pub time_ms: i64,
    pub body: TxnBody,
}

/// The body of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnBody {
    /// A new session; nothing changes in the tree (sessions live in the server).
    CreateSession { timeout_ms: i32 },
    /// Deletes every ephemeral of the txn's session, firing their watches.
    CloseSession,
    Create {
        /// Final path (sequence suffix applied).
        path: String,
        data: Option<Bytes>,
        /// Fixed-up ACL (no `auth` entries left).
        acl: Vec<Acl>,
        kind: NodeKind,
        /// The parent's new (stored, create-counting) cversion.
        parent_cversion: i32,
        /// Which create opcode this came from: decides the reply shape.
        op: OpCode,
    },
    /// delete and deleteContainer.
    Delete { path: String },
    SetData {
        path: String,
        data: Option<Bytes>,
        /// The node's new version.
        version: i32,
    },
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        /// The node's new aversion.
        version: i32,
    },
    /// A version check (inside a multi, or alone); changes nothing.
    Check { path: String, version: i32 },
    /// All sub-transactions of a multi. If any entry is `Error`, the multi failed and applies
    /// nothing; the entries then carry ZooKeeper's per-op codes.
    Multi(Vec<TxnBody>),
    /// A failed write that still takes a zxid (ZooKeeper logs these as error txns).
    Error(ErrorCode),
}

/// The result of applying a transaction: what the reply needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnResult {
    /// createSession / closeSession / an Error txn at top level is `Error`.
    Session,
    /// A create: reply `Response::Create { path }` when `op` is `OpCode::Create`, else
    /// `Response::Create2 { path, stat }`.
    Created {
        path: String,
        stat: Stat,
        op: OpCode,
    },
    /// delete / deleteContainer: empty reply.
    Deleted,
    /// setData and setACL: `Response::Stat(stat)`.
    Stat(Stat),
    /// A top-level check: `Response::Stat(stat)` (ZooKeeper replies with a SetDataResponse).
    Checked(Stat),
    /// `Response::Multi(results)`, reply header err 0 even when the ops failed.
    Multi(Vec<OpResult>),
    /// The reply header carries this code and the body is empty.
    Error(ErrorCode),
}

impl TxnResult {
    /// The error code for the reply header.
    pub fn err(&self) -> ErrorCode {
        match self {
            TxnResult::Error(e) => *e,
            _ => ErrorCode::Ok,
        }
    }
}

/// A watch notification to deliver to one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchFired {
    pub session_id: i64,
    /// Goes in the notification's reply header: the zxid of the change, or -1 for the events
    /// setWatches generates (as ZooKeeper does).
    pub zxid: i64,
    pub event: WatcherEvent,
    /// ZooKeeper 3.9 only delivers a notification to a session that can READ the node (the
    /// parent for NodeChildrenChanged). None = deliver unconditionally (setWatches events).
    /// Use [`WatchFired::visible_to`].
    pub acl: Option<Arc<[Acl]>>,
}

impl WatchFired {
    /// Whether a session with these identities may receive this notification.
    pub fn visible_to(&self, ids: &[Id], is_super: bool) -> bool {
        match &self.acl {
            None => true,
            Some(acl) => super::acl::check(acl, crate::jute::perms::READ, ids, is_super),
        }
    }
}

/// Everything `apply` produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOutcome {
    pub result: TxnResult,
    pub events: Vec<WatchFired>,
}
