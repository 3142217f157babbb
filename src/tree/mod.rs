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
//! Storage: see [`store`]. Znodes live in a slab of compact records addressed by 32-bit
//! ids, with a path-hash index over it; each node stores its name (not its path) and its
//! data in one heap block, and its children as a linked list through their records. The ACL
//! is a 4-byte index into a reference-counted table of distinct ACL lists. A node's id is
//! stable while it lives, which gives the background snapshot an iteration order that
//! mutations cannot disturb; see [`snapshot`].

pub mod acl;
mod apply;
pub mod node;
pub mod path;
pub mod prep;
mod read;
pub mod snapshot;
mod store;
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
use store::Store;
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

/// One znode as seen by snapshot code and tests.
#[derive(Debug, Clone)]
pub struct NodeEntry {
    pub path: String,
    pub data: Option<Bytes>,
    pub acl: Arc<[Acl]>,
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
    /// The nodes and the path index.
    store: Store,
    /// The background snapshot in progress, if any.
    snap: Option<Box<snapshot::SnapState>>,
    acls: AclTable,
    /// Node ids, by owning session / kind.
    ephemerals: HashMap<i64, HashSet<u32>>,
    containers: HashSet<u32>,
    ttls: HashSet<u32>,
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
        let mut acls = AclTable::default();
        let open = Acl::open_unsafe();
        let root_acl = acls.intern(&open);
        let mut db = Database::with_store(opts, Store::new(Some(b""), root_acl), acls);
        for path in ["/zookeeper", "/zookeeper/quota"] {
            let acl = db.acls.intern(&open);
            db.insert_path(path, Some(b""), acl);
        }
        let read_only = db.acls.intern(&Acl::read_unsafe());
        if let Some(id) = db.insert_path("/zookeeper/config", Some(b""), read_only) {
            db.store.get_mut(id).aversion = -1;
        }
        db.data_size += 1; // "/"
        db.debug_check();
        db
    }

    fn with_store(opts: TreeOptions, store: Store, acls: AclTable) -> Self {
        Database {
            opts,
            store,
            snap: None,
            acls,
            ephemerals: HashMap::new(),
            containers: HashSet::new(),
            ttls: HashSet::new(),
            data_watches: WatchManager::default(),
            child_watches: WatchManager::default(),
            data_size: 0,
            last_zxid: 0,
        }
    }

    /// Inserts a node at `path` (hash `h`) under `parent`, its parent's id (the caller has
    /// checked that `path` is not in the tree), indexing its owner. Returns its id. While a
    /// snapshot is in progress new nodes always get a fresh id past the snapshot's end, so
    /// the snapshot never sees them.
    #[allow(clippy::too_many_arguments)]
    fn insert_node(
        &mut self,
        path: &str,
        h: u32,
        parent: u32,
        zxid: i64,
        time_ms: i64,
        data: Option<&[u8]>,
        owner: i64,
        acl: u32,
    ) -> u32 {
        let reuse = self.snap.is_none();
        let id = self
            .store
            .insert(path, h, parent, zxid, time_ms, data, owner, acl, reuse);
        self.data_size += (path.len() + data.map_or(0, <[u8]>::len)) as u64;
        match EphemeralType::of(owner, self.opts.extended_types_enabled) {
            EphemeralType::Void => {}
            EphemeralType::Container => {
                self.containers.insert(id);
            }
            EphemeralType::Ttl => {
                self.ttls.insert(id);
            }
            EphemeralType::Normal => {
                self.ephemerals.entry(owner).or_default().insert(id);
            }
        }
        id
    }

    /// [`Database::insert_node`] for a path whose parent is looked up here; None if the parent
    /// is missing.
    fn insert_path(&mut self, path: &str, data: Option<&[u8]>, acl: u32) -> Option<u32> {
        let parent = self.id_of(path::parent_of(path)?)?;
        let h = self.store.hash(path);
        Some(self.insert_node(path, h, parent, 0, 0, data, 0, acl))
    }

    /// Sets the data of "/zookeeper/config" to the ensemble's membership, outside the
    /// transaction log, as every ZooKeeper member does when it starts serving: mzxid is the
    /// configuration's version, dataVersion -1, mtime `time_ms`. No watch fires (nobody can
    /// be watching yet: a member serves no client until it has a role). Does nothing if the
    /// node is missing (a restored image always has it).
    pub fn set_config_node(&mut self, data: &[u8], version: i64, time_ms: i64) {
        let Some(id) = self.id_of("/zookeeper/config") else {
            return;
        };
        self.before_change(id);
        let old_len = self.store.data_len(id) as u64;
        self.store.set_data(id, Some(data));
        let n = self.store.get_mut(id);
        n.mzxid = version;
        n.mtime = time_ms;
        n.version = -1;
        self.data_size = self.data_size.saturating_sub(old_len) + data.len() as u64;
    }

    /// The id of `path`, if it is in the tree.
    fn id_of(&self, path: &str) -> Option<u32> {
        self.store.lookup(path)
    }

    /// A node's record, for tests that need to force odd stat values.
    #[cfg(test)]
    pub(crate) fn node_mut(&mut self, path: &str) -> Option<&mut node::Node> {
        let id = self.id_of(path)?;
        Some(self.store.get_mut(id))
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
        self.id_of(path)
            .map(|id| self.store.stat(id, self.opts.extended_types_enabled))
    }

    /// Data of `path` (no ACL check, no watch).
    pub fn data(&self, path: &str) -> Option<Option<Bytes>> {
        self.id_of(path).map(|id| self.store.data_bytes(id))
    }

    /// ACL of `path` (no ACL check).
    pub fn acl(&self, path: &str) -> Option<Arc<[Acl]>> {
        self.id_of(path)
            .map(|id| self.acls.get(self.store.get(id).acl).clone())
    }

    /// Sorted child names of `path` (no ACL check, no watch).
    pub fn children(&self, path: &str) -> Option<Vec<String>> {
        self.id_of(path).map(|id| self.store.child_names(id))
    }

    pub fn exists(&self, path: &str) -> bool {
        self.id_of(path).is_some()
    }

    /// Node count as ZooKeeper reports it (`zk_znode_count`): ZooKeeper stores the root
    /// twice (under "" and "/"), so a fresh server reports 5 for its 4 nodes. Matched here.
    pub fn node_count(&self) -> usize {
        self.store.len() + 1
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
            .map(|(s, ids)| (*s, self.sorted_paths(ids.iter().copied())))
            .collect();
        out.sort();
        out
    }

    fn sorted_paths(&self, ids: impl Iterator<Item = u32>) -> Vec<String> {
        let mut v: Vec<String> = ids.map(|id| self.store.path_of(id)).collect();
        v.sort();
        v
    }

    /// Number of ephemeral znodes (`zk_ephemerals_count`).
    pub fn ephemeral_count(&self) -> usize {
        self.ephemerals.values().map(|s| s.len()).sum()
    }

    /// Sorted ephemeral paths of one session.
    pub fn session_ephemerals(&self, session_id: i64) -> Vec<String> {
        match self.ephemerals.get(&session_id) {
            Some(ids) => self.sorted_paths(ids.iter().copied()),
            None => Vec::new(),
        }
    }

    /// Number of distinct ACL lists in use.
    pub fn distinct_acl_count(&self) -> usize {
        self.acls.len()
    }

    /// Every znode, in no particular order.
    pub fn iter_nodes(&self) -> impl Iterator<Item = NodeEntry> + '_ {
        let extended = self.opts.extended_types_enabled;
        self.store.ids().map(move |id| {
            let n = self.store.get(id);
            let owner = self.store.owner(id);
            NodeEntry {
                path: self.store.path_of(id),
                data: self.store.data_bytes(id),
                acl: self.acls.get(n.acl).clone(),
                stat: self.store.stat(id, extended),
                ephemeral_owner: owner,
                stored_cversion: n.cversion,
                kind: EphemeralType::of(owner, extended),
            }
        })
    }

    /// Paths the container/TTL sweeper should delete now (`ContainerManager.getCandidates`,
    /// without the "never used" grace rule): containers that had a child and have none, and
    /// childless TTL nodes whose ttl has passed since their mtime. Sorted.
    pub fn expired_nodes(&self, now_ms: i64) -> Vec<String> {
        let extended = self.opts.extended_types_enabled;
        let mut out = Vec::new();
        for &id in &self.containers {
            let n = self.store.get(id);
            if n.num_children() == 0 && n.cversion > 0 {
                out.push(self.store.path_of(id));
            }
        }
        for &id in &self.ttls {
            let n = self.store.get(id);
            let owner = self.store.owner(id);
            if n.num_children() == 0 && EphemeralType::of(owner, extended) == EphemeralType::Ttl {
                let ttl = node::ttl_of(owner);
                if ttl != 0 && now_ms.saturating_sub(n.mtime) > ttl {
                    out.push(self.store.path_of(id));
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
        self.store.check()?;
        let mut size = 0u64;
        let mut acl_refs: HashMap<u32, u64> = HashMap::new();
        let extended = self.opts.extended_types_enabled;
        let mut special = 0;
        for id in self.store.ids() {
            let n = self.store.get(id);
            let path = self.store.path_of(id);
            size += (path.len() + self.store.data_len(id)) as u64;
            *acl_refs.entry(n.acl).or_default() += 1;
            let owner = self.store.owner(id);
            if owner != 0 {
                special += 1;
            }
            let listed = match EphemeralType::of(owner, extended) {
                EphemeralType::Void => true,
                EphemeralType::Container => self.containers.contains(&id),
                EphemeralType::Ttl => self.ttls.contains(&id),
                EphemeralType::Normal => {
                    self.ephemerals.get(&owner).is_some_and(|s| s.contains(&id))
                }
            };
            if !listed {
                return Err(format!("{path}: owner {owner:#x} not indexed"));
            }
        }
        if size != self.data_size {
            return Err(format!("data size {} != {}", self.data_size, size));
        }
        for (id, n) in &acl_refs {
            if self.acls.refs(*id) != *n {
                return Err(format!(
                    "acl {id}: {} refs, {} users",
                    self.acls.refs(*id),
                    n
                ));
            }
        }
        if self.acls.len() != acl_refs.len() {
            return Err("unused ACL lists kept".into());
        }
        let indexed = self.ephemeral_count() + self.containers.len() + self.ttls.len();
        if indexed != special {
            return Err(format!("{indexed} indexed, {special} special nodes"));
        }
        if self.ephemerals.values().any(|s| s.is_empty()) {
            return Err("empty ephemeral set kept".into());
        }
        if !self.data_watches.check_invariants() || !self.child_watches.check_invariants() {
            return Err("watch tables disagree".into());
        }
        Ok(())
    }

    fn debug_check(&self) {
        #[cfg(debug_assertions)]
        {
            #[cfg(test)]
            if SKIP_DEBUG_CHECK.with(|c| c.get()) {
                return;
            }
            if self.store.len() < 1_000 {
                if let Err(e) = self.check_invariants() {
                    debug_assert!(false, "tree invariant broken: {e}");
                }
            }
        }
    }
}
