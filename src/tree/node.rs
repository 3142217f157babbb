//! One znode as stored, and ZooKeeper's `EphemeralType` encoding of the ephemeralOwner field.
//!
//! The stored cversion counts child creations only (as ZooKeeper's `StatPersisted` does);
//! the cversion clients see is `2 * stored - numChildren`, i.e. creations plus deletions
//! (`DataNode.copyStat`). Sequence suffixes use the stored value.

use bytes::Bytes;
use hashbrown::HashSet;

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

/// A stored znode. Its path is the key it is stored under; children are stored by name.
#[derive(Debug, Clone)]
pub struct Node {
    pub czxid: i64,
    pub mzxid: i64,
    pub pzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub ephemeral_owner: i64,
    pub version: i32,
    /// Child creations (not the client-visible cversion).
    pub cversion: i32,
    pub aversion: i32,
    pub acl: AclId,
    pub data: Option<Bytes>,
    /// Child names; None while the node has never needed a set (saves memory on leaves).
    pub children: Option<Box<HashSet<Box<str>>>>,
    /// Index in the database's slot table (see `Database::insert_raw`); set on insertion.
    pub(crate) slot: u32,
}

impl Node {
    pub fn new(zxid: i64, time_ms: i64, owner: i64, acl: AclId, data: Option<Bytes>) -> Node {
        Node {
            czxid: zxid,
            mzxid: zxid,
            pzxid: zxid,
            ctime: time_ms,
            mtime: time_ms,
            ephemeral_owner: owner,
            version: 0,
            cversion: 0,
            aversion: 0,
            acl,
            data,
            children: None,
            slot: 0,
        }
    }

    pub fn num_children(&self) -> usize {
        self.children.as_ref().map_or(0, |c| c.len())
    }

    pub fn data_len(&self) -> usize {
        self.data.as_ref().map_or(0, |d| d.len())
    }

    pub fn add_child(&mut self, name: &str) -> bool {
        self.children
            .get_or_insert_with(Default::default)
            .insert(Box::from(name))
    }

    pub fn remove_child(&mut self, name: &str) -> bool {
        let Some(set) = self.children.as_mut() else {
            return false;
        };
        let removed = set.remove(name);
        if set.is_empty() {
            self.children = None;
        }
        removed
    }

    pub fn has_child(&self, name: &str) -> bool {
        self.children.as_ref().is_some_and(|c| c.contains(name))
    }

    /// Child names, sorted.
    pub fn child_names(&self) -> Vec<String> {
        let mut v: Vec<String> = match &self.children {
            Some(c) => c.iter().map(|n| n.to_string()).collect(),
            None => Vec::new(),
        };
        v.sort_unstable();
        v
    }

    /// The Stat clients see (`DataNode.copyStat`).
    pub fn stat(&self, extended: bool) -> Stat {
        let n = self.num_children() as i32;
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
            cversion: self.cversion.wrapping_mul(2).wrapping_sub(n),
            aversion: self.aversion,
            ephemeral_owner: owner,
            data_length: self.data_len() as i32,
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
        // Stat fields + ACL index + data handle + optional child set + snapshot slot
        // (4 bytes, padded to 8).
        assert!(
            std::mem::size_of::<Node>() <= 112,
            "{}",
            std::mem::size_of::<Node>()
        );
    }

    #[test]
    fn client_cversion_counts_creates_and_deletes() {
        let mut n = Node::new(1, 1, 0, 0, None);
        n.cversion = 3;
        n.add_child("a");
        // 3 creates, 1 child left => 2 deletes => 5 changes.
        assert_eq!(n.stat(false).cversion, 5);
        assert_eq!(n.stat(false).num_children, 1);
    }
}
