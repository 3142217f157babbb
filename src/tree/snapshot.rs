//! Point-in-time snapshots taken in the background, restore, and the tree digest.
//!
//! # Taking a snapshot
//!
//! The core calls [`Database::begin_snapshot`], then [`Database::snapshot_chunk`] between
//! message batches until it returns None, and keeps applying transactions in between. The
//! chunks together are exactly the tree as of the zxid recorded at begin (a point-in-time
//! image, not ZooKeeper's fuzzy snapshot), so recovery is "restore the image, replay the log
//! after its zxid".
//!
//! It works copy-on-write, one node at a time:
//! - Every node has an *id*, its index in the store's slab (see `store.rs`). The snapshot
//!   walks ids `0..end`, where `end` is the id count at begin. While a snapshot is in
//!   progress, new nodes always get fresh ids `>= end` (freed ids are not reused), so the walk
//!   never meets them, and id order does not move when other nodes come and go.
//! - Before `apply` changes a node (its data, ACL, stat, or its child list, which covers
//!   parents of created and deleted nodes) or deletes it, `Database::before_change` saves
//!   the node's current state as a [`SnapNode`] if its id is still ahead of the cursor and
//!   not saved yet. The walk emits the saved pre-image instead of the live node when it gets
//!   there. Live nodes it meets unsaved have not changed since begin.
//!
//! Cost. When no snapshot runs: one `Option::is_some` test per node changed by `apply`.
//! Begin is O(1); each chunk is O(chunk) (plus at most 16 free ids per requested node); the
//! extra memory during a snapshot is one pre-image per node changed ahead of the cursor.
//! A chunk builds each node's path from the names up its parent chain and copies small data
//! out of the node (large data is shared).
//!
//! ACLs travel as `Arc<[Acl]>` per node (refcounted, no copy), so ACL-table slot reuse
//! during the snapshot cannot confuse the image; writers can deduplicate by pointer. The
//! ephemerals, containers and TTL indexes are rebuilt from the nodes' raw ephemeralOwner.
//!
//! # Restoring
//!
//! [`Database::restore_begin`] gives a [`Restorer`]; feed it every [`SnapNode`] in any order,
//! then [`Restorer::finish`] checks the structure and returns the tree. A node is linked
//! under its parent as it arrives; the few that arrive before their parent (an id freed and
//! reused for a deeper node) wait and are linked at `finish`, shallowest first. A malformed
//! image is a [`TreeError`], never a panic.
//!
//! # Digest
//!
//! [`Database::digest`] is an order-independent 64-bit hash of every node's path, data,
//! stored stat fields and ACL: the wrapping sum of per-node hashes ([`SnapNode::digest`]
//! gives the same per-node value, so a writer can compute the image's digest while
//! streaming). The hash function is fixed here (not std's unspecified `DefaultHasher`), so
//! every build agrees.

use std::sync::Arc;

use bytes::Bytes;
use hashbrown::hash_map::Entry;
use hashbrown::HashMap;

use super::acl::AclTable;
use super::node::{EphemeralType, MAX_NAME_LEN, NIL};
use super::path::parent_of;
use super::store::{Store, ROOT};
use super::{Database, TreeOptions};
use crate::jute::{Acl, Stat};

/// Errors of snapshot and restore.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    #[error("a snapshot is already in progress")]
    SnapshotInProgress,
    #[error("snapshot node {0:?} has a malformed path")]
    BadPath(String),
    #[error("snapshot holds {0:?} twice")]
    Duplicate(String),
    #[error("snapshot node {0:?} has no parent in the snapshot")]
    Orphan(String),
    #[error("snapshot has no root node")]
    NoRoot,
    #[error("snapshot node {path:?} declares {declared} children but has {actual}")]
    ChildCount {
        path: String,
        declared: i32,
        actual: i32,
    },
    #[error("snapshot node {0:?} carries a zxid later than the snapshot's")]
    FutureZxid(String),
}

/// One znode of a snapshot image: everything needed to restore it exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapNode {
    /// Full path.
    pub path: String,
    pub data: Option<Bytes>,
    pub acl: Arc<[Acl]>,
    pub czxid: i64,
    pub mzxid: i64,
    pub pzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    /// Stored (create-counting) cversion, not the client-visible one.
    pub cversion: i32,
    pub aversion: i32,
    /// Raw ephemeralOwner (container and TTL encodings included).
    pub ephemeral_owner: i64,
    /// Children at the snapshot's zxid; checked on restore.
    pub num_children: i32,
}

impl SnapNode {
    fn of(store: &Store, id: u32, acls: &AclTable) -> SnapNode {
        let n = store.get(id);
        SnapNode {
            path: store.path_of(id),
            data: store.data_bytes(id),
            acl: acls.get(n.acl).clone(),
            czxid: n.czxid,
            mzxid: n.mzxid,
            pzxid: n.pzxid,
            ctime: n.ctime,
            mtime: n.mtime,
            version: n.version,
            cversion: n.cversion,
            aversion: n.aversion,
            ephemeral_owner: store.owner(id),
            num_children: n.num_children() as i32,
        }
    }

    /// The client-visible Stat this node had.
    pub fn stat(&self, extended: bool) -> Stat {
        let owner = match EphemeralType::of(self.ephemeral_owner, extended) {
            EphemeralType::Normal => self.ephemeral_owner,
            _ => 0,
        };
        Stat {
            czxid: self.czxid,
            mzxid: self.mzxid,
            ctime: self.ctime,
            mtime: self.mtime,
            version: self.version,
            cversion: self
                .cversion
                .wrapping_mul(2)
                .wrapping_sub(self.num_children),
            aversion: self.aversion,
            ephemeral_owner: owner,
            data_length: self.data.as_ref().map_or(0, |d| d.len() as i32),
            num_children: self.num_children,
            pzxid: self.pzxid,
        }
    }

    /// This node's share of [`Database::digest`].
    pub fn digest(&self) -> u64 {
        node_digest(
            self.path.as_bytes(),
            self.data.as_deref(),
            &self.acl,
            [
                self.czxid,
                self.mzxid,
                self.pzxid,
                self.ctime,
                self.mtime,
                self.version.into(),
                self.cversion.into(),
                self.aversion.into(),
                self.ephemeral_owner,
                self.num_children.into(),
            ],
        )
    }
}

/// What a snapshot is of; known at begin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotHeader {
    /// The image is the tree after applying exactly the transactions up to this zxid.
    pub zxid: i64,
    /// Nodes the chunks will hold in total.
    pub node_count: usize,
    pub options: TreeOptions,
}

/// The next nodes of the image, in no particular order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotChunk {
    pub nodes: Vec<SnapNode>,
}

/// An in-progress snapshot.
#[derive(Debug, Clone)]
pub(crate) struct SnapState {
    zxid: i64,
    /// Next id to visit.
    cursor: usize,
    /// Id count at begin: ids at or past it were never part of the image.
    end: usize,
    /// Pre-images of nodes changed or deleted since begin whose id is `>= cursor`.
    saved: HashMap<u32, SnapNode>,
    /// Nodes still to emit (the image's count minus those emitted).
    remaining: usize,
}

/// Free ids a chunk may skip per node it is allowed to emit (bounds a chunk's work when the
/// slab has holes).
const SKIP_PER_NODE: usize = 16;

impl Database {
    /// Starts a background snapshot of the tree as it is now (at [`Database::last_zxid`]).
    /// O(1). Fails if one is already in progress (finish or abort it first).
    pub fn begin_snapshot(&mut self) -> Result<SnapshotHeader, TreeError> {
        if self.snap.is_some() {
            return Err(TreeError::SnapshotInProgress);
        }
        self.snap = Some(Box::new(SnapState {
            zxid: self.last_zxid,
            cursor: 0,
            end: self.store.id_count(),
            saved: HashMap::new(),
            remaining: self.store.len(),
        }));
        Ok(SnapshotHeader {
            zxid: self.last_zxid,
            node_count: self.store.len(),
            options: self.opts,
        })
    }

    /// The zxid of the snapshot in progress, if any.
    pub fn snapshot_zxid(&self) -> Option<i64> {
        self.snap.as_ref().map(|s| s.zxid)
    }

    /// Drops the snapshot in progress (if any) and its saved pre-images.
    pub fn abort_snapshot(&mut self) {
        self.snap = None;
        self.store.trim_free_tail();
    }

    /// The next at most `max_nodes` (at least 1) nodes of the image; None once every node was
    /// emitted (the snapshot is then over) or when no snapshot is in progress. A chunk may be
    /// empty when it only skipped free slots.
    pub fn snapshot_chunk(&mut self, max_nodes: usize) -> Option<SnapshotChunk> {
        let snap = self.snap.as_deref_mut()?;
        if snap.cursor >= snap.end {
            debug_assert!(snap.saved.is_empty() && snap.remaining == 0);
            self.snap = None;
            // Deletes during the walk could not cut the slab's free tail; do it now.
            self.store.trim_free_tail();
            return None;
        }
        let max = max_nodes.max(1);
        let mut budget = max.saturating_mul(SKIP_PER_NODE);
        let mut nodes = Vec::with_capacity(max.min(snap.remaining));
        while snap.cursor < snap.end && nodes.len() < max && budget > 0 {
            let slot = snap.cursor;
            snap.cursor += 1;
            budget -= 1;
            let id = slot as u32;
            let node = match snap.saved.remove(&id) {
                Some(pre) => Some(pre),
                None if self.store.is_live(id) => Some(SnapNode::of(&self.store, id, &self.acls)),
                None => None,
            };
            if let Some(n) = node {
                nodes.push(n);
            }
        }
        snap.remaining = snap.remaining.saturating_sub(nodes.len());
        Some(SnapshotChunk { nodes })
    }

    /// Called by `apply` before it changes or deletes node `id` (a parent counts as changed
    /// when a child is created or deleted).
    #[inline]
    pub(super) fn before_change(&mut self, id: u32) {
        if self.snap.is_some() {
            self.preserve(id);
        }
    }

    #[inline(never)]
    fn preserve(&mut self, id: u32) {
        let Some(snap) = self.snap.as_deref_mut() else {
            return;
        };
        let slot = id as usize;
        if slot < snap.cursor || slot >= snap.end || !self.store.is_live(id) {
            return;
        }
        if let Entry::Vacant(v) = snap.saved.entry(id) {
            v.insert(SnapNode::of(&self.store, id, &self.acls));
        }
    }

    /// Starts rebuilding a tree from a snapshot image taken at `zxid`.
    pub fn restore_begin(opts: TreeOptions, zxid: i64) -> Restorer {
        let mut db = Database::with_store(opts, Store::empty(), AclTable::default());
        db.last_zxid = zxid;
        Restorer {
            db,
            declared: Vec::new(),
            deferred: Vec::new(),
            last_parent: None,
        }
    }

    /// Order-independent hash of every node (path, data, stat, ACL). Two trees with equal
    /// digests hold the same nodes (up to 64-bit hash collisions). O(n).
    pub fn digest(&self) -> u64 {
        let mut path = Vec::new();
        let mut sum = 0u64;
        for id in self.store.ids() {
            let n = self.store.get(id);
            path.clear();
            self.store.write_path(id, &mut path);
            let d = node_digest(
                &path,
                self.store.data(id),
                self.acls.get(n.acl),
                [
                    n.czxid,
                    n.mzxid,
                    n.pzxid,
                    n.ctime,
                    n.mtime,
                    n.version.into(),
                    n.cversion.into(),
                    n.aversion.into(),
                    self.store.owner(id),
                    n.num_children() as i64,
                ],
            );
            sum = sum.wrapping_add(d);
        }
        sum
    }
}

/// Rebuilds a [`Database`] from the nodes of a snapshot image.
#[derive(Debug)]
pub struct Restorer {
    db: Database,
    /// Declared child count, by node id.
    declared: Vec<i32>,
    /// Nodes that came before their parent; linked in `finish`, parents first.
    deferred: Vec<SnapNode>,
    /// The parent (path, id) of the node added last.
    last_parent: Option<(String, u32)>,
}

/// "/" or slash-separated names, none empty or longer than `MAX_NAME_LEN` bytes; one pass over
/// the bytes, as restoring checks every path of a snapshot.
fn well_formed(path: &str) -> bool {
    let b = path.as_bytes();
    if b == b"/" {
        return true;
    }
    if b.first() != Some(&b'/') {
        return false;
    }
    let mut len = 0usize;
    for &c in &b[1..] {
        if c == b'/' {
            if len == 0 {
                return false;
            }
            len = 0;
        } else {
            len += 1;
            if len > MAX_NAME_LEN {
                return false;
            }
        }
    }
    len > 0
}

impl Restorer {
    /// Adds one node. Checks what can be checked alone: path shape, duplicates, zxids not
    /// after the snapshot's. Data is copied so the tree never pins a reader's buffer.
    pub fn add(&mut self, n: SnapNode) -> Result<(), TreeError> {
        self.add_ref(&n)
    }

    /// [`Restorer::add`] without taking the node: copied only if its parent has not come
    /// yet. Lets a loader free what it decoded on the thread that allocated it.
    pub fn add_ref(&mut self, n: &SnapNode) -> Result<(), TreeError> {
        let path: &str = &n.path;
        if !well_formed(path) {
            return Err(TreeError::BadPath(path.to_string()));
        }
        let zxid = self.db.last_zxid;
        if n.czxid > zxid || n.mzxid > zxid || n.pzxid > zxid {
            return Err(TreeError::FutureZxid(path.to_string()));
        }
        if path == "/" {
            if self.db.store.id_count() > 0 {
                return Err(TreeError::Duplicate(path.to_string()));
            }
            return self.insert(n, NIL);
        }
        let Some(parent_path) = parent_of(path) else {
            return Err(TreeError::BadPath(path.to_string()));
        };
        // Siblings usually come one after another (ids are handed out in creation order):
        // the previous node's parent saves a lookup.
        let parent = match &self.last_parent {
            Some((p, id)) if p == parent_path && self.db.store.is_live(*id) => Some(*id),
            _ => self.db.id_of(parent_path),
        };
        match parent {
            Some(parent) => {
                if !matches!(&self.last_parent, Some((p, _)) if p == parent_path) {
                    self.last_parent = Some((parent_path.to_string(), parent));
                }
                self.insert(n, parent)
            }
            None => {
                self.deferred.push(n.clone());
                Ok(())
            }
        }
    }

    /// Inserts `n` under `parent` (NIL: `n` is the root).
    fn insert(&mut self, n: &SnapNode, parent: u32) -> Result<(), TreeError> {
        let path: &str = &n.path;
        let db = &mut self.db;
        let h = db.store.hash(path);
        if parent != NIL && db.store.lookup_hashed(path, h).is_some() {
            return Err(TreeError::Duplicate(path.to_string()));
        }
        let acl = db.acls.intern(&n.acl);
        let id = if parent == NIL {
            let reserved = db.store.capacity();
            db.store = Store::new(n.data.as_deref(), acl);
            db.store.reserve(reserved);
            db.data_size += (path.len() + n.data.as_ref().map_or(0, |d| d.len())) as u64;
            ROOT
        } else {
            db.insert_node(
                path,
                h,
                parent,
                n.czxid,
                n.ctime,
                n.data.as_deref(),
                n.ephemeral_owner,
                acl,
            )
        };
        let node = db.store.get_mut(id);
        node.czxid = n.czxid;
        node.ctime = n.ctime;
        node.mzxid = n.mzxid;
        node.pzxid = n.pzxid;
        node.mtime = n.mtime;
        node.version = n.version;
        node.cversion = n.cversion;
        node.aversion = n.aversion;
        let slot = id as usize;
        if self.declared.len() <= slot {
            self.declared.resize(slot + 1, 0);
        }
        self.declared[slot] = n.num_children;
        Ok(())
    }

    /// Makes room for `additional` more nodes up front (e.g. the count an image declares), so
    /// that the index is not rebuilt as it grows.
    pub fn reserve(&mut self, additional: usize) {
        self.db.store.reserve(additional);
        self.declared.reserve(additional);
    }

    /// Nodes added so far (compare with [`SnapshotHeader::node_count`]).
    pub fn len(&self) -> usize {
        self.db.store.len() + self.deferred.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Links the nodes that came before their parents, checks the structure (a root, no
    /// orphans, every node's declared child count matches) and returns the tree.
    pub fn finish(mut self) -> Result<Database, TreeError> {
        if self.db.store.id_count() == 0 {
            return Err(TreeError::NoRoot);
        }
        let mut deferred = std::mem::take(&mut self.deferred);
        // A parent has fewer components than its children: in this order every parent comes
        // before its children.
        deferred.sort_by_key(|n| n.path.bytes().filter(|&b| b == b'/').count());
        for n in deferred {
            match parent_of(&n.path).and_then(|p| self.db.id_of(p)) {
                Some(parent) => self.insert(&n, parent)?,
                None => return Err(TreeError::Orphan(n.path)),
            }
        }
        let db = self.db;
        for id in db.store.ids() {
            let declared = self.declared.get(id as usize).copied().unwrap_or(-1);
            let actual = db.store.get(id).num_children() as i32;
            if declared != actual {
                return Err(TreeError::ChildCount {
                    path: db.store.path_of(id),
                    declared,
                    actual,
                });
            }
        }
        db.debug_check();
        Ok(db)
    }
}

/// A fixed, word-at-a-time 64-bit hash (FxHash-style mixing, splitmix64 finalizer).
struct Fold(u64);

const K: u64 = 0x9e37_79b9_7f4a_7c15;

impl Fold {
    fn word(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(K);
    }

    fn bytes(&mut self, b: &[u8]) {
        self.word(b.len() as u64);
        let mut chunks = b.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.word(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.word(u64::from_le_bytes(w));
        }
    }

    fn finish(self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn node_digest(path: &[u8], data: Option<&[u8]>, acl: &[Acl], fields: [i64; 10]) -> u64 {
    let mut h = Fold(0x5a4b_3c2d_1e0f_0102);
    h.bytes(path);
    match data {
        None => h.word(0),
        Some(d) => {
            h.word(1);
            h.bytes(d);
        }
    }
    for f in fields {
        h.word(f as u64);
    }
    h.word(acl.len() as u64);
    for a in acl {
        h.word(a.perms as u32 as u64);
        h.bytes(a.id.scheme.as_bytes());
        h.bytes(a.id.id.as_bytes());
    }
    h.finish()
}
