//! Where znodes live: a slab of fixed-size [`Node`] records addressed by a 32-bit id, and a
//! path index over it.
//!
//! # Layout, and why
//!
//! Memory per znode is what this layout is for (issue #5: at most a third of Apache
//! ZooKeeper's ~780 bytes of RSS per 100-byte znode). A node costs:
//! - its 96-byte record in `nodes` (stat fields, links, lengths; see [`Node`]);
//! - one heap block holding its name and its data (no path: the path is the names up the
//!   parent chain, so a long common prefix is stored once, by the ancestors);
//! - one 8-byte entry (id, 32-bit path hash) plus a control byte in the index, a hashbrown
//!   `HashTable` kept between 7/16 and 7/8 full.
//!
//! The index is keyed by a hash of the full path, so a lookup is one probe; a candidate is
//! confirmed by comparing the path's components with the names up the parent chain, from
//! the leaf (the ancestors it walks through are few and hot in cache). Entries carry their
//! hash, so growing the table never touches the records (a rehash of 2M entries reads 16 MB
//! sequentially instead of following 2M pointers).
//!
//! Ids are stable for a node's lifetime and freed ids are reused, except while a snapshot is
//! in progress (the caller decides: see `insert`'s `reuse` flag), which is what gives the
//! background snapshot its stable iteration order (see `snapshot.rs`). The lowest free id is
//! reused first ([`FreeIds`]): after a million nodes came and went, the next ten thousand
//! are packed at the low end of the slab again instead of scattered over it, where every
//! lookup was a cache and TLB miss (ensemble `multi` after a large `create` ran 20-25 %
//! slower, with path lookups at a quarter of a follower's samples). For the same reason the
//! slab's all-free tail is cut off whenever no snapshot is walking it
//! ([`Store::trim_free_tail`]), so snapshots and memory follow the live tree, not the
//! largest it ever was.
//!
//! The previous layout (a `HashMap<Arc<str>, Node>` with a 112-byte node inline in each
//! bucket, a `HashSet<Box<str>>` of child names per parent, the data as `Bytes` and a slot
//! vector of shared paths) used about 530–560 bytes per such znode.

use bytes::Bytes;
use hashbrown::{DefaultHashBuilder, HashMap, HashTable};
use std::hash::BuildHasher;

use super::node::{DataRepr, Node, LARGE_DATA, NIL};
use crate::jute::Stat;

/// The id of the root node, which `Store::new` creates and nothing removes.
pub const ROOT: u32 = 0;

/// The index is never shrunk below this many entries' room.
const INDEX_SHRINK_MIN_CAPACITY: usize = 1 << 16;

/// The slab's capacity is never given back below this many records.
const NODES_SHRINK_MIN_CAPACITY: usize = 1 << 14;

/// A set of free ids that hands out its lowest member first: a bitmap (bit `i % 64` of
/// `words[i / 64]` set when id `i` is free) with a summary bitmap over its non-zero words, so
/// finding the lowest free id reads a few words instead of scanning the slab. 1 bit per id
/// ever freed, plus 1/64 of that.
#[derive(Debug, Clone, Default)]
struct FreeIds {
    words: Vec<u64>,
    /// Bit `w % 64` of `summary[w / 64]` is set when `words[w]` is not zero.
    summary: Vec<u64>,
    /// No summary word below this one is non-zero.
    first: usize,
    count: usize,
}

impl FreeIds {
    fn len(&self) -> usize {
        self.count
    }

    fn push(&mut self, id: u32) {
        let (w, s) = (id as usize / 64, id as usize / 4096);
        if self.words.len() <= w {
            self.words.resize(w + 1, 0);
            self.summary.resize(s + 1, 0);
        }
        let bit = 1u64 << (id % 64);
        if self.words[w] & bit != 0 {
            return;
        }
        self.words[w] |= bit;
        self.summary[s] |= 1u64 << (w % 64);
        self.first = self.first.min(s);
        self.count += 1;
    }

    fn pop_lowest(&mut self) -> Option<u32> {
        if self.count == 0 {
            return None;
        }
        let s = self.first + self.summary[self.first..].iter().position(|&x| x != 0)?;
        self.first = s;
        let w = s * 64 + self.summary[s].trailing_zeros() as usize;
        let b = self.words[w].trailing_zeros() as usize;
        self.words[w] &= !(1u64 << b);
        if self.words[w] == 0 {
            self.summary[s] &= !(1u64 << (w % 64));
        }
        self.count -= 1;
        u32::try_from(w * 64 + b).ok()
    }

    /// Forgets every id at or above `len` (the slab was cut back to `len` slots).
    fn truncate(&mut self, len: usize) {
        let word_len = len.div_ceil(64);
        if word_len < self.words.len() {
            let dropped: u32 = self.words[word_len..].iter().map(|w| w.count_ones()).sum();
            self.count -= dropped as usize;
            self.words.truncate(word_len);
        }
        if len % 64 != 0 {
            if let Some(last) = self.words.get_mut(word_len - 1) {
                let keep = (1u64 << (len % 64)) - 1;
                self.count -= (*last & !keep).count_ones() as usize;
                *last &= keep;
            }
        }
        let summary_len = word_len.div_ceil(64);
        self.summary.truncate(summary_len);
        if let Some(s) = summary_len
            .checked_sub(1)
            .filter(|&s| s < self.summary.len())
        {
            // Rebuild the last summary word from the words that are left under it.
            self.summary[s] = self.words[s * 64..]
                .iter()
                .enumerate()
                .filter(|(_, &w)| w != 0)
                .fold(0, |acc, (i, _)| acc | 1u64 << i);
        }
        self.first = self.first.min(self.summary.len());
        // A slab cut back to a tenth of its size should not keep the bitmap of the largest one.
        if self.words.capacity() > 4 * self.words.len().max(64) {
            self.words.shrink_to(self.words.len() * 2);
            self.summary.shrink_to(self.summary.len() * 2);
        }
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    /// Records by id; freed ids hold a `Node::free()` record.
    nodes: Vec<Node>,
    /// (id, path hash) of every live node.
    index: HashTable<(u32, u32)>,
    /// Freed ids, reused lowest first (when the caller allows) before `nodes` grows.
    free: FreeIds,
    hasher: DefaultHashBuilder,
    /// Raw ephemeralOwner of the nodes that have one (`Node::has_owner`).
    owners: HashMap<u32, i64>,
    /// Data of the nodes whose data is longer than `LARGE_DATA` (`Node::is_large`).
    large: HashMap<u32, Bytes>,
}

/// Spreads a 32-bit hash over the 64 bits hashbrown looks at: it takes the bucket from the
/// low bits and a 7-bit tag from the top ones.
#[inline]
fn wide(h: u32) -> u64 {
    u64::from(h).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

impl Store {
    /// A store holding only the root ("/", empty name), with `data`, ACL `acl`.
    pub fn new(data: Option<&[u8]>, acl: u32) -> Store {
        let mut s = Store {
            nodes: Vec::new(),
            index: HashTable::new(),
            free: FreeIds::default(),
            hasher: DefaultHashBuilder::default(),
            owners: HashMap::new(),
            large: HashMap::new(),
        };
        let root = Node::new(0, 0, "", None, false, false, acl);
        s.nodes.push(root);
        let h = s.hash("/");
        s.index.insert_unique(wide(h), (ROOT, h), |&(_, h)| wide(h));
        s.set_data(ROOT, data);
        s
    }

    /// A store without any node, not even the root: the start of a restore. The root must be
    /// inserted first (`insert_root`).
    pub fn empty() -> Store {
        Store {
            nodes: Vec::new(),
            index: HashTable::new(),
            free: FreeIds::default(),
            hasher: DefaultHashBuilder::default(),
            owners: HashMap::new(),
            large: HashMap::new(),
        }
    }

    #[inline]
    pub fn hash(&self, path: &str) -> u32 {
        self.hasher.hash_one(path) as u32
    }

    /// Number of live nodes.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Ids handed out so far (live or free): live ids are below this.
    pub fn id_count(&self) -> usize {
        self.nodes.len()
    }

    /// Nodes the index holds without growing.
    pub fn capacity(&self) -> usize {
        self.index.capacity()
    }

    /// Makes room for `additional` more nodes without growing the index or the slab.
    pub fn reserve(&mut self, additional: usize) {
        self.index.reserve(additional, |&(_, h)| wide(h));
        self.nodes.reserve(additional);
    }

    pub fn is_live(&self, id: u32) -> bool {
        self.nodes.get(id as usize).is_some_and(|n| !n.is_free())
    }

    /// The live node `id`. Callers only pass ids they got from this store.
    #[inline]
    pub fn get(&self, id: u32) -> &Node {
        &self.nodes[id as usize]
    }

    #[inline]
    pub fn get_mut(&mut self, id: u32) -> &mut Node {
        &mut self.nodes[id as usize]
    }

    /// The id of the node at `path`, if any.
    pub fn lookup(&self, path: &str) -> Option<u32> {
        self.lookup_hashed(path, self.hash(path))
    }

    /// [`Store::lookup`] with the path's hash already computed.
    pub fn lookup_hashed(&self, path: &str, h: u32) -> Option<u32> {
        self.index
            .find(wide(h), |&(id, eh)| eh == h && self.path_is(id, path))
            .map(|&(id, _)| id)
    }

    /// Whether `id`'s path is `path`: the names up the parent chain, compared from the leaf.
    fn path_is(&self, mut id: u32, path: &str) -> bool {
        let mut rest = path.as_bytes();
        loop {
            let n = &self.nodes[id as usize];
            if n.parent == NIL {
                return rest == b"/";
            }
            let name = n.name();
            if rest.len() <= name.len() || !rest.ends_with(name) {
                return false;
            }
            let cut = rest.len() - name.len() - 1;
            if rest[cut] != b'/' {
                return false;
            }
            rest = &rest[..cut];
            if rest.is_empty() {
                // A top-level node: its parent must be the root.
                return self.nodes[n.parent as usize].parent == NIL;
            }
            id = n.parent;
        }
    }

    /// Appends the path of `id` to `out`.
    pub fn write_path(&self, id: u32, out: &mut Vec<u8>) {
        let mut chain: Vec<u32> = Vec::new();
        let mut cur = id;
        while let Some(n) = self.nodes.get(cur as usize) {
            if n.parent == NIL {
                break;
            }
            chain.push(cur);
            cur = n.parent;
        }
        if chain.is_empty() {
            out.push(b'/');
        }
        for &c in chain.iter().rev() {
            out.push(b'/');
            out.extend_from_slice(self.nodes[c as usize].name());
        }
    }

    /// The path of `id`.
    pub fn path_of(&self, id: u32) -> String {
        let mut v = Vec::new();
        self.write_path(id, &mut v);
        utf8(v)
    }

    /// The name of `id` as a string.
    pub fn name_of(&self, id: u32) -> String {
        String::from_utf8_lossy(self.get(id).name()).into_owned()
    }

    /// Ids of the children of `id`, in no particular order.
    pub fn children(&self, id: u32) -> Children<'_> {
        Children {
            store: self,
            next: self.get(id).first_child,
        }
    }

    /// Sorted child names of `id`.
    pub fn child_names(&self, id: u32) -> Vec<String> {
        let mut v: Vec<String> = self.children(id).map(|c| self.name_of(c)).collect();
        v.sort_unstable();
        v
    }

    /// Inserts a new node at `path` (hash `h`, not in the store: the caller checked) under
    /// `parent`, taking its name from `path`. Reuses a freed id if `reuse`, else appends.
    /// Returns the new id.
    #[allow(clippy::too_many_arguments)]
    pub fn insert(
        &mut self,
        path: &str,
        h: u32,
        parent: u32,
        zxid: i64,
        time_ms: i64,
        data: Option<&[u8]>,
        owner: i64,
        acl: u32,
        reuse: bool,
    ) -> u32 {
        let name = super::path::name_of(path);
        let large = data.is_some_and(|d| d.len() > LARGE_DATA);
        let mut node = Node::new(zxid, time_ms, name, data, large, owner != 0, acl);
        node.parent = parent;
        let id = match if reuse { self.free.pop_lowest() } else { None } {
            Some(id) => {
                self.nodes[id as usize] = node;
                id
            }
            None => {
                // More than 4 billion znodes do not fit in memory long before this.
                let id = u32::try_from(self.nodes.len()).unwrap_or(NIL - 1);
                self.nodes.push(node);
                id
            }
        };
        if large {
            if let Some(d) = data {
                self.large.insert(id, Bytes::copy_from_slice(d));
            }
        }
        if owner != 0 {
            self.owners.insert(id, owner);
        }
        // Link at the head of the parent's child list.
        let first = self.nodes[parent as usize].first_child;
        if first != NIL {
            self.nodes[first as usize].prev = id;
        }
        self.nodes[id as usize].next = first;
        let p = &mut self.nodes[parent as usize];
        p.first_child = id;
        p.num_children += 1;
        self.index
            .insert_unique(wide(h), (id, h), |&(_, h)| wide(h));
        id
    }

    /// Removes the childless node `id` (path hash `h`) and frees its id.
    pub fn remove(&mut self, id: u32, h: u32) {
        if let Ok(e) = self.index.find_entry(wide(h), |&(i, _)| i == id) {
            e.remove();
        }
        // An index sized for a tree that has since lost most of its nodes spreads the live
        // entries over memory that no longer fits in a cache, and every lookup pays for it
        // (measured: `set` 10-20 % slower after a million creates and deletes). Shrink it
        // once it is seven-eighths empty; it must lose that much again before the next
        // shrink, so the rehash is amortised over the deletes.
        let cap = self.index.capacity();
        if cap > INDEX_SHRINK_MIN_CAPACITY && self.index.len() < cap / 8 {
            self.index
                .shrink_to(self.index.len() * 2, |&(_, h)| wide(h));
        }
        let n = std::mem::replace(&mut self.nodes[id as usize], Node::free());
        if n.parent != NIL {
            if n.prev != NIL {
                self.nodes[n.prev as usize].next = n.next;
            } else {
                self.nodes[n.parent as usize].first_child = n.next;
            }
            if n.next != NIL {
                self.nodes[n.next as usize].prev = n.prev;
            }
            let p = &mut self.nodes[n.parent as usize];
            p.num_children = p.num_children.saturating_sub(1);
        }
        if n.has_owner() {
            self.owners.remove(&id);
        }
        if n.is_large() {
            self.large.remove(&id);
        }
        self.free.push(id);
    }

    /// Cuts the slab back to just past its highest live id, giving the freed tail's memory
    /// back once the slab is mostly empty. Ids must not be renumbered while a snapshot walks
    /// them, so the caller only calls this when none is in progress.
    ///
    /// Why: after a million nodes came and went, the slab kept a million slots, and every
    /// snapshot walked all of them (a cache miss each) to find the few live ones; a server
    /// that had once held 4M nodes ran `set` 17 % slower. Because freed ids are reused lowest
    /// first, the live nodes end up at the low end and the free ones in the tail, so this
    /// usually cuts off nearly all of them.
    pub fn trim_free_tail(&mut self) {
        let before = self.nodes.len();
        while self.nodes.len() > 1 && self.nodes.last().is_some_and(Node::is_free) {
            self.nodes.pop();
        }
        if self.nodes.len() == before {
            return;
        }
        self.free.truncate(self.nodes.len());
        let len = self.nodes.len();
        if self.nodes.capacity() > 4 * len.max(NODES_SHRINK_MIN_CAPACITY) {
            self.nodes.shrink_to(len * 2);
        }
    }

    /// Raw ephemeralOwner of `id` (0 for a plain persistent node).
    pub fn owner(&self, id: u32) -> i64 {
        if self.get(id).has_owner() {
            self.owners.get(&id).copied().unwrap_or(0)
        } else {
            0
        }
    }

    /// `id`'s data, borrowed.
    pub fn data(&self, id: u32) -> Option<&[u8]> {
        match self.get(id).data_repr() {
            DataRepr::Null => None,
            DataRepr::Inline(d) => Some(d),
            DataRepr::Large => Some(self.large.get(&id).map_or(&[][..], |b| &b[..])),
        }
    }

    /// `id`'s data as `Bytes`: a copy of small data, a shared handle to large data.
    pub fn data_bytes(&self, id: u32) -> Option<Bytes> {
        match self.get(id).data_repr() {
            DataRepr::Null => None,
            DataRepr::Inline(d) => Some(Bytes::copy_from_slice(d)),
            DataRepr::Large => Some(self.large.get(&id).cloned().unwrap_or_default()),
        }
    }

    pub fn data_len(&self, id: u32) -> usize {
        self.data(id).map_or(0, <[u8]>::len)
    }

    /// Replaces `id`'s data (copied: the store never pins a caller's buffer).
    pub fn set_data(&mut self, id: u32, data: Option<&[u8]>) {
        let large = data.is_some_and(|d| d.len() > LARGE_DATA);
        if self.get(id).is_large() {
            self.large.remove(&id);
        }
        self.get_mut(id).set_data(data, large);
        if large {
            if let Some(d) = data {
                self.large.insert(id, Bytes::copy_from_slice(d));
            }
        }
    }

    /// The Stat clients see.
    pub fn stat(&self, id: u32, extended: bool) -> Stat {
        self.get(id)
            .stat(self.owner(id), self.data_len(id), extended)
    }

    /// Every live id, in id order.
    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| !n.is_free())
            .map(|(i, _)| i as u32)
    }

    /// Structural self-check (tests and debug builds): links, counts, index, side tables.
    pub fn check(&self) -> Result<(), String> {
        let live = self.ids().count();
        if live != self.index.len() {
            return Err(format!("{live} live nodes, {} indexed", self.index.len()));
        }
        if live + self.free.len() != self.nodes.len() {
            return Err(format!(
                "{live} live + {} free of {} ids",
                self.free.len(),
                self.nodes.len()
            ));
        }
        for &(id, h) in self.index.iter() {
            let path = self.path_of(id);
            if self.hash(&path) != h || self.lookup(&path) != Some(id) {
                return Err(format!("{path}: index entry does not find it"));
            }
        }
        let (mut owners, mut large) = (0, 0);
        for id in self.ids() {
            let n = self.get(id);
            let mut count = 0;
            let mut prev = NIL;
            for c in self.children(id) {
                let child = self.get(c);
                if child.parent != id || child.prev != prev || child.is_free() {
                    return Err(format!("{}: child list broken", self.path_of(id)));
                }
                prev = c;
                count += 1;
            }
            if count != n.num_children {
                return Err(format!("{}: child count", self.path_of(id)));
            }
            if n.parent == NIL && id != ROOT {
                return Err(format!("node {id} has no parent"));
            }
            if n.has_owner() {
                owners += 1;
                if !self.owners.contains_key(&id) {
                    return Err(format!("{}: owner missing", self.path_of(id)));
                }
            }
            if n.is_large() {
                large += 1;
                if !self.large.contains_key(&id) {
                    return Err(format!("{}: data missing", self.path_of(id)));
                }
            }
        }
        if owners != self.owners.len() || large != self.large.len() {
            return Err("stale side-table entries".into());
        }
        Ok(())
    }
}

/// Iterator over a node's children.
pub struct Children<'a> {
    store: &'a Store,
    next: u32,
}

impl Iterator for Children<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        if self.next == NIL {
            return None;
        }
        let id = self.next;
        self.next = self.store.get(id).next;
        Some(id)
    }
}

/// Paths are built from names that came in as `str`, so this never needs the lossy branch.
fn utf8(v: Vec<u8>) -> String {
    String::from_utf8(v).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(s: &mut Store, path: &str, data: &[u8]) -> u32 {
        let parent = s
            .lookup(super::super::path::parent_of(path).unwrap())
            .unwrap();
        let h = s.hash(path);
        s.insert(path, h, parent, 1, 1, Some(data), 0, 0, true)
    }

    fn remove(s: &mut Store, id: u32) {
        let p = s.path_of(id);
        s.remove(id, s.hash(&p));
    }

    #[test]
    fn paths_resolve_through_the_parent_chain() {
        let mut s = Store::new(Some(b""), 0);
        let a = add(&mut s, "/a", b"1");
        let ab = add(&mut s, "/a/b", b"2");
        let b = add(&mut s, "/b", b"3");
        assert_eq!(s.lookup("/"), Some(ROOT));
        assert_eq!(s.lookup("/a"), Some(a));
        assert_eq!(s.lookup("/a/b"), Some(ab));
        assert_eq!(s.lookup("/b"), Some(b));
        for missing in [
            "", "a", "/a/", "//a", "/b/b", "/a/b/c", "/ab", "a/b", "/x/a/b",
        ] {
            assert_eq!(s.lookup(missing), None, "{missing}");
        }
        assert_eq!(s.path_of(ab), "/a/b");
        assert_eq!(s.path_of(ROOT), "/");
        assert_eq!(s.child_names(ROOT), ["a", "b"]);
        assert_eq!(s.data(ab), Some(&b"2"[..]));
        s.check().unwrap();
    }

    #[test]
    fn index_shrinks_after_mass_deletes_and_still_finds_everything() {
        let mut s = Store::new(None, 0);
        let n = 200_000;
        let ids: Vec<u32> = (0..n)
            .map(|i| add(&mut s, &format!("/n{i}"), b"x"))
            .collect();
        let grown = s.capacity();
        assert!(grown >= n);
        for (i, &id) in ids.iter().enumerate().skip(1000) {
            s.remove(id, s.hash(&format!("/n{i}")));
        }
        assert!(
            s.capacity() <= INDEX_SHRINK_MIN_CAPACITY && s.capacity() < grown / 2,
            "capacity {} after deleting down to 1000 of {grown}",
            s.capacity()
        );
        for (i, &id) in ids.iter().enumerate().take(1000) {
            assert_eq!(s.lookup(&format!("/n{i}")), Some(id));
        }
        assert_eq!(s.lookup("/n1000"), None);
        s.check().unwrap();
    }

    #[test]
    fn removal_unlinks_and_ids_are_reused() {
        let mut s = Store::new(None, 0);
        let ids: Vec<u32> = (0..5)
            .map(|i| add(&mut s, &format!("/n{i}"), b"x"))
            .collect();
        for &i in &[ids[2], ids[0], ids[4]] {
            remove(&mut s, i);
            s.check().unwrap();
        }
        assert_eq!(s.child_names(ROOT), ["n1", "n3"]);
        assert_eq!(s.get(ROOT).num_children(), 2);
        let again = add(&mut s, "/z", b"");
        assert!(ids.contains(&again), "a freed id is reused");
        s.check().unwrap();
    }

    #[test]
    fn the_free_tail_is_cut_off_and_its_ids_forgotten() {
        let mut s = Store::new(None, 0);
        let ids: Vec<u32> = (0..100_000)
            .map(|i| add(&mut s, &format!("/n{i}"), b"x"))
            .collect();
        // Keep a few low nodes and one in the middle; free the rest in a scattered order.
        let keep = [ids[0], ids[5], ids[63], ids[64], ids[4_100], ids[50_000]];
        let mut doomed: Vec<u32> = ids
            .iter()
            .copied()
            .filter(|id| !keep.contains(id))
            .collect();
        doomed.sort_unstable_by_key(|&id| id.wrapping_mul(2_654_435_761));
        for id in doomed {
            remove(&mut s, id);
        }
        let big = s.nodes.capacity();
        s.trim_free_tail();
        s.check().unwrap();
        // Cut back to just past the highest live node, which holds the rest up.
        assert_eq!(s.id_count(), ids[50_000] as usize + 1);
        remove(&mut s, ids[50_000]);
        s.trim_free_tail();
        s.check().unwrap();
        assert_eq!(s.id_count(), ids[4_100] as usize + 1);
        assert!(
            s.nodes.capacity() < big / 4,
            "the slab's memory was not given back"
        );
        // The freed ids left below still go out lowest first, then the slab grows again.
        let again: Vec<u32> = (0..ids[4_100])
            .map(|i| add(&mut s, &format!("/m{i}"), b"y"))
            .collect();
        let holes: Vec<u32> = (1..ids[4_100]).filter(|id| !keep.contains(id)).collect();
        assert_eq!(&again[..holes.len()], &holes[..]);
        assert_eq!(again[holes.len()], ids[4_100] + 1);
        s.check().unwrap();
        // Nothing to cut: a no-op.
        let n = s.id_count();
        s.trim_free_tail();
        assert_eq!(s.id_count(), n);
    }

    #[test]
    fn freed_ids_are_reused_lowest_first() {
        let mut s = Store::new(None, 0);
        let ids: Vec<u32> = (0..10_000)
            .map(|i| add(&mut s, &format!("/n{i}"), b"x"))
            .collect();
        // Free all but the first ten, in an order unrelated to the ids.
        let mut doomed: Vec<u32> = ids[10..].to_vec();
        doomed.sort_unstable_by_key(|&id| id.wrapping_mul(2_654_435_761));
        for id in doomed {
            remove(&mut s, id);
        }
        s.check().unwrap();
        // New nodes fill the lowest holes, in order, instead of the last ones freed.
        let again: Vec<u32> = (0..100)
            .map(|i| add(&mut s, &format!("/m{i}"), b"y"))
            .collect();
        assert_eq!(again, ids[10..110].to_vec());
        s.check().unwrap();
        // A hole below the others is taken next.
        remove(&mut s, ids[3]);
        assert_eq!(add(&mut s, "/low", b""), ids[3]);
        s.check().unwrap();
    }

    #[test]
    fn large_data_is_shared_not_copied() {
        let mut s = Store::new(None, 0);
        let big = vec![7u8; LARGE_DATA + 1];
        let id = add(&mut s, "/big", &big);
        let a = s.data_bytes(id).unwrap();
        let b = s.data_bytes(id).unwrap();
        assert_eq!(a.as_ptr(), b.as_ptr());
        assert_eq!(s.data_len(id), LARGE_DATA + 1);
        s.set_data(id, Some(b"small"));
        assert_eq!(s.data(id), Some(&b"small"[..]));
        s.check().unwrap();
        s.set_data(id, Some(&big));
        s.remove(id, s.hash("/big"));
        s.check().unwrap();
    }
}
