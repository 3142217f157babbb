//! `snapshot.<zxid>`: a fuzzy dump of ZooKeeper's data tree and session table.
//!
//! Layout (uncompressed snapshots, `zookeeper.snapshot.compression.method` unset; all integers
//! big-endian jute):
//!
//! ```text
//! FileHeader      int magic "ZKSN" | int version 2 | long dbid
//! sessions        int count, then count × (long sessionId, int timeoutMs)
//! ACL cache       int count, then count × (long index, vector<ACL>)
//!                   ACL = int perms, ustring scheme, ustring id
//! nodes           pre-order walk from the root, each:
//!                   ustring path ("" for the root, then "/zookeeper", ...),
//!                   buffer data (-1 = null), long aclIndex (-1 = OPEN_ACL_UNSAFE, not in the
//!                   cache), StatPersisted (long czxid, mzxid, ctime, mtime; int version,
//!                   cversion, aversion; long ephemeralOwner, pzxid)
//!                 terminated by the path "/"
//! seal            long Adler-32 of every byte from offset 0 up to this long, then ustring "/"
//! [digest]        3.6+ with digests on: long zxid, int digestVersion,
//!                   digestVersion >= 2: long digest; < 2: ustring hex digest
//!                 followed by another seal (Adler-32 from offset 0 again)
//! [lastZxid]      3.9+ when enabled: long lastProcessedZxid, then another seal
//! ```
//!
//! The snapshot's zxid is the one in its file name: ZooKeeper serializes the tree while it keeps
//! applying transactions, so nodes may already reflect transactions after that zxid, and the
//! log must be replayed from the zxid after it with ZooKeeper's idempotent rules (creating an
//! existing node and deleting a missing one are ignored, a create's parent cversion/pzxid are
//! only raised).
//!
//! Stats: `StatPersisted` has no `dataLength` and no `numChildren`; they are derived from the
//! data and from the nodes whose parent is the node (see [`ZkSnapshot::child_counts`] and
//! [`super::ZkStat::to_client_stat`]).

use std::collections::{HashMap, HashSet};

use bytes::Bytes;

use super::adler32::Adler32;
use super::error::{ZkDataError, ZkDataErrorKind};
use super::records::{FileHeader, ZkStat, SNAP_MAGIC};
use crate::jute::{Acl, DecodeError, Reader};

/// A parsed ZooKeeper snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkSnapshot {
    /// The zxid from the file name: every transaction up to it is reflected in the tree.
    pub zxid: i64,
    pub header: FileHeader,
    /// `(session id, negotiated timeout in ms)`, in file order (a Java HashMap's order).
    pub sessions: Vec<(i64, i32)>,
    /// The ACL cache: `(index, ACL list)`. Index -1 (world:anyone, all permissions) is implied.
    pub acls: Vec<(i64, Vec<Acl>)>,
    /// Nodes in file order, which is a pre-order walk: every parent before its children.
    pub nodes: Vec<ZkNode>,
    /// The tree digest, when the server had digests enabled (3.6+ default).
    pub digest: Option<ZkSnapshotDigest>,
    /// `lastProcessedZxid`, written by 3.9+ servers when enabled.
    pub last_processed_zxid: Option<i64>,
}

/// One znode of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkNode {
    /// Absolute path; the root, stored as "" on disk, is "/" here.
    pub path: String,
    /// `None` when ZooKeeper stored null data (e.g. the root, `/zookeeper`).
    pub data: Option<Bytes>,
    /// Key into [`ZkSnapshot::acls`]; -1 means `world:anyone` with all permissions.
    pub acl_index: i64,
    pub stat: ZkStat,
}

/// The `ZxidDigest` section: the tree digest ZooKeeper had at `zxid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkSnapshotDigest {
    pub zxid: i64,
    pub digest_version: i32,
    pub digest: i64,
}

/// The ACL index ZooKeeper uses for `OPEN_ACL_UNSAFE` without storing it in the cache.
pub const OPEN_ACL_UNSAFE_INDEX: i64 = -1;

impl ZkSnapshot {
    /// The ACL list of an index: the cached list, `world:anyone` ALL for -1, `None` if the index
    /// is not in the cache (ZooKeeper fails on such a node when its ACL is read).
    pub fn acl(&self, index: i64) -> Option<Vec<Acl>> {
        if index == OPEN_ACL_UNSAFE_INDEX {
            return Some(Acl::open_unsafe());
        }
        self.acls
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, acl)| acl.clone())
    }

    /// `numChildren` of every node, derived from the paths.
    pub fn child_counts(&self) -> HashMap<&str, i32> {
        let mut counts: HashMap<&str, i32> = self.nodes.iter().map(|n| (&*n.path, 0)).collect();
        for node in &self.nodes {
            if let Some(parent) = parent_path(&node.path) {
                if let Some(c) = counts.get_mut(parent) {
                    *c += 1;
                }
            }
        }
        counts
    }

    /// The node at `path` (a linear scan).
    pub fn node(&self, path: &str) -> Option<&ZkNode> {
        self.nodes.iter().find(|n| n.path == path)
    }
}

/// The parent of an absolute path; `None` for the root.
pub fn parent_path(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    let i = path.rfind('/')?;
    Some(if i == 0 { "/" } else { &path[..i] })
}

/// Parses an uncompressed snapshot whose file name carries `zxid`, verifying every seal.
pub fn parse_snapshot(zxid: i64, bytes: Bytes) -> Result<ZkSnapshot, ZkDataError> {
    let header = FileHeader::parse(&bytes, SNAP_MAGIC)?;
    let mut p = SnapParser {
        r: Reader::new(bytes.clone()),
        bytes,
        sum: Adler32::new(),
        summed_to: 0,
    };
    p.r.read_i64().map_err(|e| p.err("file header", e))?;
    p.r.read_i64().map_err(|e| p.err("file header", e))?;

    let session_count = p.count("session count")?;
    let mut sessions = Vec::with_capacity(session_count.min(p.r.remaining() / 12));
    for _ in 0..session_count {
        let id = p.r.read_i64().map_err(|e| p.err("session id", e))?;
        let timeout = p.r.read_i32().map_err(|e| p.err("session timeout", e))?;
        sessions.push((id, timeout));
    }

    let acl_count = p.count("ACL cache size")?;
    let mut acls = Vec::with_capacity(acl_count.min(p.r.remaining() / 12));
    for _ in 0..acl_count {
        let index = p.r.read_i64().map_err(|e| p.err("ACL index", e))?;
        let list = Acl::read_vec(&mut p.r).map_err(|e| p.err("ACL list", e))?;
        acls.push((index, list));
    }

    let mut nodes = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    loop {
        let at = p.r.position();
        let stored = p.r.read_string().map_err(|e| p.err("node path", e))?;
        if stored == "/" {
            break;
        }
        let path = if stored.is_empty() {
            "/".to_owned()
        } else {
            stored
        };
        if path != "/" {
            let parent = parent_path(&path).filter(|_| path.starts_with('/'));
            match parent {
                Some(parent) if seen.contains(parent) => {}
                _ => {
                    return Err(ZkDataError::malformed(
                        at,
                        format!("node {path:?} comes before its parent"),
                    ))
                }
            }
        }
        if !seen.insert(path.clone()) {
            return Err(ZkDataError::malformed(
                at,
                format!("node {path:?} appears twice"),
            ));
        }
        let data = p.r.read_buffer().map_err(|e| p.err("node data", e))?;
        let acl_index = p.r.read_i64().map_err(|e| p.err("node ACL index", e))?;
        let stat = ZkStat::read(&mut p.r).map_err(|e| p.err("node stat", e))?;
        nodes.push(ZkNode {
            path,
            data,
            acl_index,
            stat,
        });
    }
    p.seal()?;

    let mut digest = None;
    let mut last_processed_zxid = None;
    // What follows the first seal depends on server settings not recorded in the file: a
    // digest section (33 bytes with a numeric digest) and/or a lastProcessedZxid section
    // (8 + 13 bytes). Each is followed by its own seal.
    const LAST_ZXID_SECTION: usize = 8 + 8 + 5;
    if p.r.remaining() > 0 && p.r.remaining() != LAST_ZXID_SECTION {
        let zxid = p.r.read_i64().map_err(|e| p.err("digest zxid", e))?;
        let digest_version = p.r.read_i32().map_err(|e| p.err("digest version", e))?;
        let value = if digest_version < 2 {
            let at = p.r.position();
            let hex = p.r.read_string().map_err(|e| p.err("digest", e))?;
            u64::from_str_radix(&hex, 16)
                .map_err(|_| ZkDataError::malformed(at, format!("digest {hex:?} is not hex")))?
                as i64
        } else {
            p.r.read_i64().map_err(|e| p.err("digest", e))?
        };
        p.seal()?;
        digest = Some(ZkSnapshotDigest {
            zxid,
            digest_version,
            digest: value,
        });
    }
    if p.r.remaining() > 0 {
        last_processed_zxid = Some(p.r.read_i64().map_err(|e| p.err("lastProcessedZxid", e))?);
        p.seal()?;
    }
    if p.r.remaining() > 0 {
        return Err(ZkDataError::malformed(
            p.r.position(),
            format!("{} unexpected bytes after the last seal", p.r.remaining()),
        ));
    }
    Ok(ZkSnapshot {
        zxid,
        header,
        sessions,
        acls,
        nodes,
        digest,
        last_processed_zxid,
    })
}

struct SnapParser {
    r: Reader,
    bytes: Bytes,
    sum: Adler32,
    summed_to: usize,
}

impl SnapParser {
    fn err(&self, what: &str, e: DecodeError) -> ZkDataError {
        ZkDataError::decode(0, what, e)
    }

    fn count(&mut self, what: &str) -> Result<usize, ZkDataError> {
        let at = self.r.position();
        let n = self.r.read_i32().map_err(|e| self.err(what, e))?;
        usize::try_from(n).map_err(|_| ZkDataError::malformed(at, format!("{what} is {n}")))
    }

    /// Reads a seal at the current position: the running Adler-32 of everything before it, and
    /// the string "/".
    fn seal(&mut self) -> Result<(), ZkDataError> {
        let at = self.r.position();
        self.sum.update(&self.bytes[self.summed_to..at]);
        self.summed_to = at;
        let stored = self.r.read_i64().map_err(|e| self.err("checksum", e))?;
        let computed = self.sum.value();
        if stored != i64::from(computed) {
            return Err(ZkDataError::new(ZkDataErrorKind::Checksum {
                offset: at,
                stored,
                computed,
            }));
        }
        let slash_at = self.r.position();
        let slash = self
            .r
            .read_opt_string()
            .map_err(|e| self.err("seal terminator", e))?;
        if slash.as_deref() != Some("/") {
            return Err(ZkDataError::malformed(
                slash_at,
                format!("seal terminator is {slash:?}, not \"/\""),
            ));
        }
        Ok(())
    }
}
