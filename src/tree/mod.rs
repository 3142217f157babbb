//! The znode tree: a pure, I/O-free database of znodes, their ACLs, ephemerals, containers,
//! TTL nodes and watches.
//!
//! The server drives it in three ways:
//! - [`Database::prep`] validates a write request against the current tree (ZooKeeper's
//!   `PrepRequestProcessor`) and turns it into a fully resolved [`TxnBody`];
//! - [`Database::apply`] applies a committed [`Txn`] (ZooKeeper's `DataTree.processTxn`) and
//!   returns the reply material plus the watch notifications it fired;
//! - [`Database::read`] answers reads and watch-management requests
//!   (ZooKeeper's `FinalRequestProcessor` for non-transactional opcodes).
//!
//! Time and zxids come in as arguments; nothing here touches a clock, a socket or a file.
//!
//! Storage: znodes live in one hash map keyed by full path; each node keeps its children as a
//! set of names (not paths), its Stat fields in place, its data as `Option<Bytes>`, and a
//! 4-byte index into a reference-counted table of distinct ACL lists. Every node also has a
//! stable *slot*: an index into a side vector holding (a shared handle to) its path, which
//! gives the background snapshot an iteration order that mutations cannot disturb; see
//! [`snapshot`].

pub mod acl;
mod apply;
pub mod node;
pub mod path;
pub mod prep;
mod read;
pub mod snapshot;
pub mod txn;
pub mod watch;

#[cfg(test)]
mod snapshot_tests;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use bytes::Bytes;
use hashbrown::{HashMap, HashSet};

use crate::jute::{Acl, Id, Stat};

pub use acl::{authenticate, digest};
pub use node::{EphemeralType, MAX_TTL_MS};
pub use prep::Pending;
pub use snapshot::{Restorer, SnapNode, SnapshotChunk, SnapshotHeader, TreeError};
pub use txn::{ApplyOutcome, NodeKind, Txn, TxnBody, TxnResult, WatchFired};

use acl::AclTable;
use node::Node;
use watch::WatchManager;

/// Tree-wide switches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeOptions {
    /// `zookeeper.extendedTypesEnabled`: allows TTL nodes.
    pub extended_types_enabled: bool,
}

/// Who is asking: the session and every identity it has proven.
#[derive(Debug, Clone, Copy)]
pub struct RequestContext<'a> {
    pub session_id: i64,
    /// Always `("ip", "<client address>")`, plus one `("digest", "user:hash")` per successful
    /// digest auth. `world:anyone` is implicit.
    pub ids: &'a [Id],
    /// Super users pass every ACL check.
    pub is_super: bool,
}

/// One znode as seen by snapshot code.
#[derive(Debug, Clone)]
pub struct NodeEntry<'a> {
    pub path: &'a str,
    pub data: Option<&'a Bytes>,
    pub acl: &'a Arc<[Acl]>,
    /// The client-visible Stat.
    pub stat: Stat,
    /// Raw ephemeralOwner (container/TTL encodings included).
    pub ephemeral_owner: i64,
    /// Stored (create-counting) cversion, needed to restore the node exactly.
    pub stored_cversion: i32,
    pub kind: EphemeralType,
}

/// The znode database.
#[derive(Debug, Clone)]
pub struct Database {
    opts: TreeOptions,
    /// Keyed by full path. The key is shared with `slots` (one allocation per path).
    nodes: HashMap<Arc<str>, Node>,
    /// `slots[node.slot]` is the node's path; None for a free slot. Append-only while a
    /// snapshot is in progress, so slot order is a stable iteration order.
    slots: Vec<Option<Arc<str>>>,
    /// Free slots, reused (when no snapshot is in progress) before `slots` grows.
    free_slots: Vec<u32>,
    /// The background snapshot in progress, if any.
    snap: Option<Box<snapshot::SnapState>>,
    acls: AclTable,
    ephemerals: HashMap<i64, HashSet<Box<str>>>,
    containers: HashSet<Box<str>>,
    ttls: HashSet<Box<str>>,
    data_watches: WatchManager,
    child_watches: WatchManager,
    /// Sum of path length + data length over all nodes (`approximateDataSize`).
    data_size: u64,
    last_zxid: i64,
}

#[cfg(test)]
thread_local! {
    /// Lets a long randomized test (which checks invariants itself, where it matters) skip
    /// the O(n) check after every `apply`. Per thread, so other tests keep it.
    pub(crate) static SKIP_DEBUG_CHECK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The paths ZooKeeper refuses to delete (`DataTree.isSpecialPath`).
pub(crate) fn is_special_path(path: &str) -> bool {
    matches!(
        path,
        "/" | "/zookeeper" | "/zookeeper/quota" | "/zookeeper/config"
    )
}

impl Database {
    /// A tree as a fresh standalone ZooKeeper 3.9 has it: "/", "/zookeeper",
    /// "/zookeeper/quota" and "/zookeeper/config", all zero stats and empty (non-null) data;
    /// "/zookeeper/config" is world-readable only and has aversion -1.
    pub fn new(opts: TreeOptions) -> Self {
        let mut db = Database::empty(opts);
        let open = Acl::open_unsafe();
        for path in ["/", "/zookeeper", "/zookeeper/quota"] {
            let acl = db.acls.intern(&open);
            db.insert_raw(path, Node::new(0, 0, 0, acl, Some(Bytes::new())));
        }
        let read_only = db.acls.intern(&Acl::read_unsafe());
        let mut config = Node::new(0, 0, 0, read_only, Some(Bytes::new()));
        config.aversion = -1;
        db.insert_raw("/zookeeper/config", config);
        for (parent, child) in [
            ("/", "zookeeper"),
            ("/zookeeper", "quota"),
            ("/zookeeper", "config"),
        ] {
            if let Some(p) = db.nodes.get_mut(parent) {
                p.add_child(child);
            }
        }
        db.debug_check();
        db
    }

    /// A database without a single node (not even "/"): the start of a restore.
    fn empty(opts: TreeOptions) -> Self {
        Database {
            opts,
            nodes: HashMap::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            snap: None,
            acls: AclTable::default(),
            ephemerals: HashMap::new(),
            containers: HashSet::new(),
            ttls: HashSet::new(),
            data_watches: WatchManager::default(),
            child_watches: WatchManager::default(),
            data_size: 0,
            last_zxid: 0,
        }
    }

    /// Inserts a node that is not in the tree yet (the caller has checked), giving it a slot.
    /// While a snapshot is in progress new nodes always get a fresh slot past the snapshot's
    /// end, so the snapshot never sees them.
    fn insert_raw(&mut self, path: &str, node: Node) {
        self.insert_key(Arc::from(path), node);
    }

    /// [`Database::insert_raw`] with an already shared key.
    fn insert_key(&mut self, key: Arc<str>, mut node: Node) {
        self.data_size += (key.len() + node.data_len()) as u64;
        let reuse = if self.snap.is_none() {
            self.free_slots.pop()
        } else {
            None
        };
        let slot = match reuse {
            Some(s) => {
                if let Some(entry) = self.slots.get_mut(s as usize) {
                    *entry = Some(key.clone());
                }
                s
            }
            None => {
                self.slots.push(Some(key.clone()));
                // More than 4 billion znodes do not fit in memory long before this.
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        node.slot = slot;
        if let Some(old) = self.nodes.insert(key, node) {
            // Never happens: callers check for absence. Keep the slot table consistent.
            self.free_slot(old.slot);
        }
    }

    /// Removes a node and frees its slot. The caller preserves the snapshot pre-image first.
    fn remove_raw(&mut self, path: &str) -> Option<Node> {
        let node = self.nodes.remove(path)?;
        self.free_slot(node.slot);
        Some(node)
    }

    fn free_slot(&mut self, slot: u32) {
        if let Some(entry) = self.slots.get_mut(slot as usize) {
            if entry.take().is_some() {
                self.free_slots.push(slot);
            }
        }
    }

    pub fn options(&self) -> TreeOptions {
        self.opts
    }

    /// Highest zxid applied so far.
    pub fn last_zxid(&self) -> i64 {
        self.last_zxid
    }

    /// The client-visible Stat of `path`.
    pub fn stat(&self, path: &str) -> Option<Stat> {
        self.nodes
            .get(path)
            .map(|n| n.stat(self.opts.extended_types_enabled))
    }

    /// Data of `path` (no ACL check, no watch).
    pub fn data(&self, path: &str) -> Option<Option<Bytes>> {
        self.nodes.get(path).map(|n| n.data.clone())
    }

    /// ACL of `path` (no ACL check).
    pub fn acl(&self, path: &str) -> Option<Arc<[Acl]>> {
        self.nodes.get(path).map(|n| self.acls.get(n.acl).clone())
    }

    /// Sorted child names of `path` (no ACL check, no watch).
    pub fn children(&self, path: &str) -> Option<Vec<String>> {
        self.nodes.get(path).map(|n| n.child_names())
    }

    pub fn exists(&self, path: &str) -> bool {
        self.nodes.contains_key(path)
    }

    /// Node count as ZooKeeper reports it (`zk_znode_count`): ZooKeeper stores the root
    /// twice (under "" and "/"), so a fresh server reports 5 for its 4 nodes. Matched here.
    pub fn node_count(&self) -> usize {
        self.nodes.len() + 1
    }

    /// Sum of path length plus data length over every znode (`zk_approximate_data_size`).
    pub fn approximate_data_size(&self) -> u64 {
        self.data_size
    }

    /// Total watches: data/exist watches plus child watches (`zk_watch_count`).
    pub fn watch_count(&self) -> usize {
        self.data_watches.size() + self.child_watches.size()
    }

    /// Paths with a data/exist/persistent watch (ZooKeeper's `wchs` counts the data table).
    pub fn watched_path_count(&self) -> usize {
        self.data_watches.path_count()
    }

    /// Sessions holding data/exist/persistent watches (the `wchs` connection count).
    pub fn watching_session_count(&self) -> usize {
        self.data_watches.session_count()
    }

    /// `wchc`: per session, the paths it watches. ZooKeeper reports the data-watch table
    /// only; child watches are not listed. Both lists are sorted.
    pub fn watches_by_session(&self) -> Vec<(i64, Vec<String>)> {
        self.data_watches.by_session()
    }

    /// `wchp`: per path, the sessions watching it (data-watch table, as ZooKeeper).
    pub fn watches_by_path(&self) -> Vec<(String, Vec<i64>)> {
        self.data_watches.by_path()
    }

    /// Child-watch table, for diagnostics.
    pub fn child_watches_by_session(&self) -> Vec<(i64, Vec<String>)> {
        self.child_watches.by_session()
    }

    /// `dump`: per session, its ephemeral paths; both sorted.
    pub fn ephemerals_by_session(&self) -> Vec<(i64, Vec<String>)> {
        let mut out: Vec<(i64, Vec<String>)> = self
            .ephemerals
            .iter()
            .map(|(s, paths)| {
                let mut v: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
                v.sort();
                (*s, v)
            })
            .collect();
        out.sort();
        out
    }

    /// Number of ephemeral znodes (`zk_ephemerals_count`).
    pub fn ephemeral_count(&self) -> usize {
        self.ephemerals.values().map(|s| s.len()).sum()
    }

    /// Sorted ephemeral paths of one session.
    pub fn session_ephemerals(&self, session_id: i64) -> Vec<String> {
        let mut v: Vec<String> = self
            .ephemerals
            .get(&session_id)
            .map(|s| s.iter().map(|p| p.to_string()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Number of distinct ACL lists in use.
    pub fn distinct_acl_count(&self) -> usize {
        self.acls.len()
    }

    /// Every znode, in no particular order.
    pub fn iter_nodes(&self) -> impl Iterator<Item = NodeEntry<'_>> {
        let extended = self.opts.extended_types_enabled;
        self.nodes.iter().map(move |(path, n)| NodeEntry {
            path,
            data: n.data.as_ref(),
            acl: self.acls.get(n.acl),
            stat: n.stat(extended),
            ephemeral_owner: n.ephemeral_owner,
            stored_cversion: n.cversion,
            kind: EphemeralType::of(n.ephemeral_owner, extended),
        })
    }

    /// Paths the container/TTL sweeper should delete now (`ContainerManager.getCandidates`,
    /// without the "never used" grace rule): containers that had a child and have none, and
    /// childless TTL nodes whose ttl has passed since their mtime. Sorted.
    pub fn expired_nodes(&self, now_ms: i64) -> Vec<String> {
        let extended = self.opts.extended_types_enabled;
        let mut out = Vec::new();
        for p in &self.containers {
            if let Some(n) = self.nodes.get(&**p) {
                if n.num_children() == 0 && n.cversion > 0 {
                    out.push(p.to_string());
                }
            }
        }
        for p in &self.ttls {
            if let Some(n) = self.nodes.get(&**p) {
                if n.num_children() == 0
                    && EphemeralType::of(n.ephemeral_owner, extended) == EphemeralType::Ttl
                {
                    let ttl = node::ttl_of(n.ephemeral_owner);
                    if ttl != 0 && now_ms.saturating_sub(n.mtime) > ttl {
                        out.push(p.to_string());
                    }
                }
            }
        }
        out.sort();
        out
    }

    /// Drops every watch a session holds (session closed or expired).
    pub fn remove_session_watches(&mut self, session_id: i64) {
        self.data_watches.remove_session(session_id);
        self.child_watches.remove_session(session_id);
    }

    /// Full consistency check; cheap enough for tests, O(n) so only run under debug builds
    /// at construction and from tests.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut size = 0u64;
        let mut acl_refs: HashMap<u32, u64> = HashMap::new();
        for (path, n) in &self.nodes {
            size += (path.len() + n.data_len()) as u64;
            *acl_refs.entry(n.acl).or_default() += 1;
            if let Some(children) = &n.children {
                if children.is_empty() {
                    return Err(format!("{path}: empty child set kept"));
                }
                for c in children.iter() {
                    let child = path::join(path, c);
                    if !self.nodes.contains_key(child.as_str()) {
                        return Err(format!("{path}: child {c} missing"));
                    }
                }
            }
            if &**path != "/" {
                let Some(parent) = path::parent_of(path).and_then(|p| self.nodes.get(p)) else {
                    return Err(format!("{path}: parent missing"));
                };
                if !parent.has_child(path::name_of(path)) {
                    return Err(format!("{path}: not in parent's children"));
                }
            }
            let kind = EphemeralType::of(n.ephemeral_owner, self.opts.extended_types_enabled);
            let listed = match kind {
                EphemeralType::Void => true,
                EphemeralType::Container => self.containers.contains(&**path),
                EphemeralType::Ttl => self.ttls.contains(&**path),
                EphemeralType::Normal => self
                    .ephemerals
                    .get(&n.ephemeral_owner)
                    .is_some_and(|s| s.contains(&**path)),
            };
            if !listed {
                return Err(format!("{path}: {kind:?} not indexed"));
            }
        }
        if size != self.data_size {
            return Err(format!("data size {} != {}", self.data_size, size));
        }
        for (id, n) in acl_refs {
            if self.acls.refs(id) != n {
                return Err(format!(
                    "acl {id}: {} refs, {} users",
                    self.acls.refs(id),
                    n
                ));
            }
        }
        if self.acls.len()
            != self
                .nodes
                .values()
                .map(|n| n.acl)
                .collect::<HashSet<_>>()
                .len()
        {
            return Err("unused ACL lists kept".into());
        }
        let indexed = self.ephemeral_count() + self.containers.len() + self.ttls.len();
        let special = self
            .nodes
            .values()
            .filter(|n| n.ephemeral_owner != 0)
            .count();
        if indexed != special {
            return Err(format!("{indexed} indexed, {special} special nodes"));
        }
        if self.ephemerals.values().any(|s| s.is_empty()) {
            return Err("empty ephemeral set kept".into());
        }
        for (path, n) in &self.nodes {
            match self.slots.get(n.slot as usize) {
                Some(Some(p)) if Arc::ptr_eq(p, path) => {}
                _ => return Err(format!("{path}: slot {} does not name it", n.slot)),
            }
        }
        let used = self.slots.iter().filter(|s| s.is_some()).count();
        if used != self.nodes.len() || used + self.free_slots.len() != self.slots.len() {
            return Err(format!(
                "{used} used + {} free slots of {}, {} nodes",
                self.free_slots.len(),
                self.slots.len(),
                self.nodes.len()
            ));
        }
        if !self.data_watches.check_invariants() || !self.child_watches.check_invariants() {
            return Err("watch tables disagree".into());
        }
        Ok(())
    }

    fn debug_check(&self) {
        #[cfg(test)]
        if SKIP_DEBUG_CHECK.with(|c| c.get()) {
            return;
        }
        #[cfg(debug_assertions)]
        if self.nodes.len() < 1_000 {
            if let Err(e) = self.check_invariants() {
                debug_assert!(false, "tree invariant broken: {e}");
            }
        }
    }
}
