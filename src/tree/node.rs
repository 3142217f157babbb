//! One znode as stored (see [`Node`]), and ZooKeeper's `EphemeralType` encoding of the ephemeralOwner field.
//!
//! The stored cversion counts child creations only (as ZooKeeper's `StatPersisted` does);
//! the cversion clients see is `2 * stored - numChildren`, i.e. creations plus deletions
//! (`DataNode.copyStat`). Sequence suffixes use the stored value.

use super::acl::AclId;
use crate::jute::Stat;

/// ephemeralOwner of a container (`EphemeralType.CONTAINER_EPHEMERAL_OWNER`).
pub const CONTAINER_OWNER: i64 = i64::MIN;
const EXTENDED_MASK: i64 = 0xff00_0000_0000_0000_u64 as i64;
const RESERVED_BITS_MASK: i64 = 0x00ff_ff00_0000_0000;
const RESERVED_BITS_SHIFT: u32 = 40;
/// Largest TTL in milliseconds (about 34 years).
pub const MAX_TTL_MS: i64 = !(EXTENDED_MASK | RESERVED_BITS_MASK);

/// `EphemeralType`: how an ephemeralOwner value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EphemeralType {
    /// 0: a plain persistent node.
    Void,
    /// A session id.
    Normal,
    Container,
    Ttl,
}

impl EphemeralType {
    /// Classifies an ephemeralOwner; TTL encoding is only recognised with extended types on.
    pub fn of(owner: i64, extended: bool) -> EphemeralType {
        if extended
            && owner & EXTENDED_MASK == EXTENDED_MASK
            && (owner & RESERVED_BITS_MASK) >> RESERVED_BITS_SHIFT == 0
        {
            return EphemeralType::Ttl;
        }
        if owner == CONTAINER_OWNER {
            EphemeralType::Container
        } else if owner == 0 {
            EphemeralType::Void
        } else {
            EphemeralType::Normal
        }
    }
}

/// ephemeralOwner encoding of a TTL (`EphemeralType.TTL.toEphemeralOwner`); None if the TTL is
/// out of range (not in 1..=MAX_TTL_MS).
pub fn ttl_owner(ttl_ms: i64) -> Option<i64> {
    if ttl_ms <= 0 || ttl_ms > MAX_TTL_MS {
        None
    } else {
        Some(EXTENDED_MASK | ttl_ms)
    }
}

/// The TTL stored in a TTL owner value.
pub fn ttl_of(owner: i64) -> i64 {
    owner & MAX_TTL_MS
}

/// No node: the end of a child list, or the root's parent.
pub const NIL: u32 = u32::MAX;

/// `Node::meta` flags; the low bits hold the name's length.
const DATA_NULL: u32 = 1 << 31;
const HAS_OWNER: u32 = 1 << 30;
const FREE: u32 = 1 << 29;
const LARGE: u32 = 1 << 28;
const NAME_LEN_MASK: u32 = LARGE - 1;
/// Longest node name (one path component) the tree stores: 256 MiB, far beyond any request
/// the server accepts.
pub const MAX_NAME_LEN: usize = NAME_LEN_MASK as usize;

/// A stored znode: one 96-byte record in the store's slab plus one heap block holding its
/// name (the last path component) followed by its data. The full path is not stored: it is
/// the names up the `parent` chain. Children form a doubly linked list through
/// `first_child` / `prev` / `next`, so adding or removing a child is O(1) however many
/// siblings it has, and no node holds a per-parent set.
///
/// Rarely used parts live in side tables of the store, keyed by the node's id, so that the
/// common node does not pay for them: a non-zero ephemeralOwner (`HAS_OWNER`), and data
/// longer than [`LARGE_DATA`] bytes (`LARGE`), kept as shared `Bytes` so that reads of
/// big values do not copy them.
#[derive(Debug, Clone)]
pub struct Node {
    pub czxid: i64,
    pub mzxid: i64,
    pub pzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    /// Name bytes, then (unless `DATA_NULL` or `LARGE`) data bytes.
    blob: Box<[u8]>,
    pub version: i32,
    /// Child creations (not the client-visible cversion).
    pub cversion: i32,
    pub aversion: i32,
    pub acl: AclId,
    pub(super) parent: u32,
    pub(super) first_child: u32,
    pub(super) prev: u32,
    pub(super) next: u32,
    pub(super) num_children: u32,
    /// Name length and the flags above.
    meta: u32,
}

/// Data longer than this is kept as shared `Bytes` beside the node instead of in its block.
pub const LARGE_DATA: usize = 1024;

/// How a node's data is stored.
pub(super) enum DataRepr<'a> {
    Null,
    Inline(&'a [u8]),
    /// In the store's large-data table.
    Large,
}

impl Node {
    /// A fresh, unlinked node. `data` is stored inline unless `large` (the caller keeps it).
    pub(super) fn new(
        zxid: i64,
        time_ms: i64,
        name: &str,
        data: Option<&[u8]>,
        large: bool,
        has_owner: bool,
        acl: AclId,
    ) -> Node {
        let name_len = name.len().min(MAX_NAME_LEN);
        let inline = if large { None } else { data };
        let mut blob = Vec::with_capacity(name_len + inline.map_or(0, <[u8]>::len));
        blob.extend_from_slice(&name.as_bytes()[..name_len]);
        if let Some(d) = inline {
            blob.extend_from_slice(d);
        }
        let mut meta = name_len as u32;
        if data.is_none() {
            meta |= DATA_NULL;
        }
        if large && data.is_some() {
            meta |= LARGE;
        }
        if has_owner {
            meta |= HAS_OWNER;
        }
        Node {
            czxid: zxid,
            mzxid: zxid,
            pzxid: zxid,
            ctime: time_ms,
            mtime: time_ms,
            blob: blob.into_boxed_slice(),
            version: 0,
            cversion: 0,
            aversion: 0,
            acl,
            parent: NIL,
            first_child: NIL,
            prev: NIL,
            next: NIL,
            num_children: 0,
            meta,
        }
    }

    /// The record of a freed slot: no name, no data, no links.
    pub(super) fn free() -> Node {
        let mut n = Node::new(0, 0, "", None, false, false, 0);
        n.meta |= FREE;
        n
    }

    pub fn name(&self) -> &[u8] {
        let len = (self.meta & NAME_LEN_MASK) as usize;
        self.blob.get(..len).unwrap_or(&[])
    }

    pub(super) fn data_repr(&self) -> DataRepr<'_> {
        if self.meta & DATA_NULL != 0 {
            DataRepr::Null
        } else if self.meta & LARGE != 0 {
            DataRepr::Large
        } else {
            let len = (self.meta & NAME_LEN_MASK) as usize;
            DataRepr::Inline(self.blob.get(len..).unwrap_or(&[]))
        }
    }

    /// Replaces the data (the name stays). `large`: the caller keeps it in its table.
    pub(super) fn set_data(&mut self, data: Option<&[u8]>, large: bool) {
        let name_len = (self.meta & NAME_LEN_MASK) as usize;
        let inline = if large { None } else { data };
        let mut blob = Vec::with_capacity(name_len + inline.map_or(0, <[u8]>::len));
        blob.extend_from_slice(self.name());
        if let Some(d) = inline {
            blob.extend_from_slice(d);
        }
        self.blob = blob.into_boxed_slice();
        self.meta &= !(DATA_NULL | LARGE);
        if data.is_none() {
            self.meta |= DATA_NULL;
        } else if large {
            self.meta |= LARGE;
        }
    }

    pub fn is_large(&self) -> bool {
        self.meta & LARGE != 0
    }

    pub fn has_owner(&self) -> bool {
        self.meta & HAS_OWNER != 0
    }

    pub fn is_free(&self) -> bool {
        self.meta & FREE != 0
    }

    pub fn num_children(&self) -> usize {
        self.num_children as usize
    }

    /// The Stat clients see (`DataNode.copyStat`), given what the store keeps beside the
    /// node: its raw ephemeralOwner and data length.
    pub fn stat(&self, owner: i64, data_len: usize, extended: bool) -> Stat {
        let n = self.num_children as i32;
        let owner = match EphemeralType::of(owner, extended) {
            EphemeralType::Normal => owner,
            _ => 0,
        };
        Stat {
            czxid: self.czxid,
            mzxid: self.mzxid,
            ctime: self.ctime,
            mtime: self.mtime,
            version: self.version,
            cversion: self.cversion.wrapping_mul(2).wrapping_sub(n),
            aversion: self.aversion,
            ephemeral_owner: owner,
            data_length: data_len as i32,
            num_children: n,
            pzxid: self.pzxid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ephemeral_type_encoding() {
        assert_eq!(EphemeralType::of(0, true), EphemeralType::Void);
        assert_eq!(EphemeralType::of(5, true), EphemeralType::Normal);
        assert_eq!(EphemeralType::of(i64::MIN, false), EphemeralType::Container);
        assert_eq!(EphemeralType::of(i64::MIN, true), EphemeralType::Container);
        let owner = ttl_owner(1000).unwrap();
        assert_eq!(owner as u64, 0xff00_0000_0000_03e8);
        assert_eq!(EphemeralType::of(owner, true), EphemeralType::Ttl);
        assert_eq!(EphemeralType::of(owner, false), EphemeralType::Normal);
        assert_eq!(ttl_of(owner), 1000);
        assert_eq!(MAX_TTL_MS, 0x0000_00ff_ffff_ffff);
        assert!(ttl_owner(0).is_none());
        assert!(ttl_owner(MAX_TTL_MS + 1).is_none());
        assert!(ttl_owner(MAX_TTL_MS).is_some());
    }

    #[test]
    fn node_stays_compact() {
        // Five 8-byte stat fields, the name+data block (16), three versions and the ACL
        // index (16), four links and the child count (20), name length and flags (4).
        assert_eq!(std::mem::size_of::<Node>(), 96);
    }

    #[test]
    fn client_cversion_counts_creates_and_deletes() {
        let mut n = Node::new(1, 1, "x", None, false, false, 0);
        n.cversion = 3;
        n.num_children = 1;
        // 3 creates, 1 child left => 2 deletes => 5 changes.
        assert_eq!(n.stat(0, 0, false).cversion, 5);
        assert_eq!(n.stat(0, 0, false).num_children, 1);
    }

    #[test]
    fn name_and_data_share_one_block() {
        let mut n = Node::new(1, 1, "name", Some(b"data"), false, true, 0);
        assert_eq!(n.name(), b"name");
        assert!(matches!(n.data_repr(), DataRepr::Inline(b"data")));
        assert!(n.has_owner() && !n.is_large() && !n.is_free());
        n.set_data(None, false);
        assert!(matches!(n.data_repr(), DataRepr::Null));
        assert_eq!(n.name(), b"name");
        n.set_data(Some(b"big"), true);
        assert!(matches!(n.data_repr(), DataRepr::Large));
        assert!(n.is_large() && n.has_owner());
        n.set_data(Some(b""), false);
        assert!(matches!(n.data_repr(), DataRepr::Inline(b"")));
        assert!(Node::free().is_free());
    }
}
