//! The pure half of the import: a ZooKeeper data directory as read by [`crate::zkdata`] becomes
//! the items of one Corral snapshot.

use std::fmt;
use std::path::PathBuf;

use crate::storage::snapshot::pb;
use crate::storage::{SnapAcl, SnapNode, SnapSession};
use crate::zkdata::{EphemeralKind, ZkDataDir};

use super::replay::ReplayTree;
use super::ImportError;

/// Choices for [`convert_with`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ConvertOptions {
    /// Import even though transactions are missing from the log (a purged or lost log
    /// file): the result is the snapshot plus whatever transactions are there, which is not
    /// a state ZooKeeper ever had. Off by default: such data is an error.
    pub allow_gaps: bool,
}

/// Something the operator should know about, but which does not stop the import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportWarning {
    /// A log ends in a partial record (what a crash mid-write leaves); it was ignored, as
    /// ZooKeeper does.
    TornTail {
        file: PathBuf,
        offset: usize,
        reason: String,
    },
    /// A newer snapshot could not be read; an older one was used.
    SkippedSnapshot { error: String },
    /// No transaction log at all (only with `allow_gaps`): the snapshot alone was imported.
    NoLogs { dir: PathBuf },
    /// Transactions between these zxids are missing (only with `allow_gaps`).
    Gap { before: i64, after: i64 },
    /// Nodes of the snapshot carry a zxid later than the last logged transaction (the log
    /// after the snapshot is missing; only with `allow_gaps`). The snapshot is written at
    /// this zxid instead.
    NodesAfterLog {
        last_logged: i64,
        newest_in_tree: i64,
    },
    /// Ephemeral nodes whose session is not live. ZooKeeper keeps such nodes until they are
    /// deleted explicitly; so does the import.
    OrphanEphemerals { session: i64, paths: Vec<String> },
    /// ZooKeeper's epoch file could not be read; the epoch comes from the last zxid.
    BadEpochFile { file: PathBuf, error: String },
    /// A delete removed a node that still had children (only possible with a damaged log or
    /// snapshot); the children were removed too.
    NonEmptyDelete { path: String },
}

impl fmt::Display for ImportWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportWarning::TornTail {
                file,
                offset,
                reason,
            } => write!(
                f,
                "{} ends in a partial record at offset {offset} ({reason}); ignored, as \
                 ZooKeeper does",
                file.display()
            ),
            ImportWarning::SkippedSnapshot { error } => {
                write!(f, "skipped an unreadable snapshot: {error}")
            }
            ImportWarning::NoLogs { dir } => write!(
                f,
                "no transaction log in {}: the snapshot was imported alone, without the \
                 transactions after it",
                dir.display()
            ),
            ImportWarning::Gap { before, after } => write!(
                f,
                "transactions missing from the log between zxid {before:#x} and {after:#x}"
            ),
            ImportWarning::NodesAfterLog {
                last_logged,
                newest_in_tree,
            } => write!(
                f,
                "the tree holds zxid {newest_in_tree:#x} but the log ends at {last_logged:#x}; \
                 transactions are missing"
            ),
            ImportWarning::OrphanEphemerals { session, paths } => write!(
                f,
                "{} ephemeral node(s) owned by session {session:#x}, which is not live: {}",
                paths.len(),
                paths.join(", ")
            ),
            ImportWarning::BadEpochFile { file, error } => write!(
                f,
                "{}: {error}; the epoch is taken from the last zxid",
                file.display()
            ),
            ImportWarning::NonEmptyDelete { path } => write!(
                f,
                "a delete of {path} removed a node that still had children"
            ),
        }
    }
}

/// One Corral snapshot's worth of state, ready for [`super::write_corral_data_dir`].
#[derive(Debug, Clone, PartialEq)]
pub struct ConvertedTree {
    /// The zxid the snapshot covers: the last transaction's (or the ZooKeeper snapshot's if
    /// no transaction follows it).
    pub zxid: i64,
    /// Distinct ACL lists, `acls[i].index == i`; each is named by at least one node.
    pub acls: Vec<SnapAcl>,
    /// Every node in pre-order (a parent before its children, siblings by name).
    pub nodes: Vec<SnapNode>,
    /// Live sessions, by id.
    pub sessions: Vec<SnapSession>,
    /// The ZooKeeper snapshot the tree started from, and its zxid.
    pub source_snapshot: PathBuf,
    pub source_snapshot_zxid: i64,
    /// Transactions replayed on top of it.
    pub txns_replayed: usize,
    /// Replayed operations that had no effect (already in the fuzzy snapshot).
    pub ops_already_applied: u64,
    /// ZooKeeper's `currentEpoch`/`acceptedEpoch` files (written by quorum members only),
    /// filled in by [`super::import`]; the epochs written never go below them.
    pub zk_epochs: Option<ZkEpochs>,
    pub warnings: Vec<ImportWarning>,
}

/// The epochs a ZooKeeper quorum member recorded next to its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZkEpochs {
    pub current: u64,
    pub accepted: u64,
}

/// [`convert_with`] with the default (strict) options.
pub fn convert(zk: &ZkDataDir) -> Result<ConvertedTree, ImportError> {
    convert_with(zk, ConvertOptions::default())
}

/// Replays `zk`'s transactions onto its snapshot with ZooKeeper's rules and lays out the
/// result as Corral snapshot items. Stats stay in ZooKeeper's persisted form (stored
/// cversion, raw ephemeralOwner), data keeps null distinct from empty.
pub fn convert_with(zk: &ZkDataDir, opts: ConvertOptions) -> Result<ConvertedTree, ImportError> {
    let mut warnings = Vec::new();
    for e in &zk.skipped_snapshots {
        warnings.push(ImportWarning::SkippedSnapshot {
            error: e.to_string(),
        });
    }
    for (file, tail) in &zk.torn_tails {
        warnings.push(ImportWarning::TornTail {
            file: file.clone(),
            offset: tail.offset,
            reason: tail.reason.clone(),
        });
    }
    if zk.log_files.is_empty() {
        if !opts.allow_gaps {
            return Err(ImportError::NoLogs {
                dir: zk.version2_dir.clone(),
            });
        }
        warnings.push(ImportWarning::NoLogs {
            dir: zk.version2_dir.clone(),
        });
    }
    if !zk.gaps.is_empty() {
        if !opts.allow_gaps {
            return Err(ImportError::Gaps {
                gaps: zk.gaps.clone(),
            });
        }
        for &(before, after) in &zk.gaps {
            warnings.push(ImportWarning::Gap { before, after });
        }
    }

    let mut tree = ReplayTree::from_snapshot(&zk.snapshot)?;
    for txn in &zk.txns {
        tree.apply(txn)?;
    }

    let mut zxid = zk.last_zxid();
    let newest = tree
        .nodes
        .values()
        .map(|n| n.stat.czxid.max(n.stat.mzxid).max(n.stat.pzxid))
        .max()
        .unwrap_or(0);
    if newest > zxid {
        if !opts.allow_gaps {
            return Err(ImportError::NodesAfterLog {
                last_logged: zxid,
                newest_in_tree: newest,
            });
        }
        warnings.push(ImportWarning::NodesAfterLog {
            last_logged: zxid,
            newest_in_tree: newest,
        });
        zxid = newest;
    }
    for path in &tree.non_empty_deletes {
        warnings.push(ImportWarning::NonEmptyDelete { path: path.clone() });
    }
    for (session, paths) in tree.orphan_ephemerals() {
        warnings.push(ImportWarning::OrphanEphemerals { session, paths });
    }
    if !tree.nodes.contains_key("/") {
        return Err(ImportError::NoRoot);
    }

    // Pre-order: compare paths component by component ("/a" < "/a/b" < "/a-b").
    let mut paths: Vec<&String> = tree.nodes.keys().collect();
    paths.sort_by(|a, b| components(a).cmp(components(b)));

    // ACL lists renumbered in order of first use, so only used lists are written.
    let mut acl_map: Vec<Option<u64>> = vec![None; tree.acls.len()];
    let mut acls = Vec::new();
    let mut nodes = Vec::with_capacity(paths.len());
    // Child counts: the snapshot records them and loading checks them.
    let mut child_counts: std::collections::HashMap<&str, i32> = std::collections::HashMap::new();
    for path in paths.iter() {
        if path.as_str() != "/" {
            let parent = match path.rfind('/') {
                Some(0) => "/",
                Some(i) => &path[..i],
                None => continue,
            };
            *child_counts.entry(parent).or_insert(0) += 1;
        }
    }
    for path in paths.iter() {
        let n = &tree.nodes[path.as_str()];
        let index = match acl_map[n.acl] {
            Some(i) => i,
            None => {
                let i = acls.len() as u64;
                acl_map[n.acl] = Some(i);
                acls.push(SnapAcl {
                    index: i,
                    acls: tree.acls[n.acl]
                        .iter()
                        .map(|a| pb::Acl {
                            perms: a.perms,
                            scheme: a.id.scheme.clone(),
                            id: a.id.id.clone(),
                        })
                        .collect(),
                });
                i
            }
        };
        let s = n.stat;
        nodes.push(SnapNode {
            path: (*path).clone(),
            data: n.data.clone(),
            acl_index: index,
            czxid: s.czxid,
            mzxid: s.mzxid,
            ctime: s.ctime,
            mtime: s.mtime,
            version: s.version,
            cversion: s.cversion,
            aversion: s.aversion,
            ephemeral_owner: s.ephemeral_owner,
            pzxid: s.pzxid,
            num_children: child_counts.get(path.as_str()).copied().unwrap_or(0),
        });
    }
    let sessions = tree
        .sessions
        .iter()
        .map(|(&id, &timeout_ms)| SnapSession { id, timeout_ms })
        .collect();
    Ok(ConvertedTree {
        zxid,
        acls,
        nodes,
        sessions,
        source_snapshot: zk.snapshot_file.clone(),
        source_snapshot_zxid: zk.snapshot.zxid,
        txns_replayed: zk.txns.len(),
        ops_already_applied: tree.ignored_ops,
        zk_epochs: None,
        warnings,
    })
}

fn components(path: &str) -> impl Iterator<Item = &str> + Clone {
    path.split('/').filter(|c| !c.is_empty())
}

impl ConvertedTree {
    /// Counts of each kind of node: (ephemeral, container, TTL).
    pub fn special_node_counts(&self) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for n in &self.nodes {
            match EphemeralKind::from_owner(n.ephemeral_owner) {
                EphemeralKind::Session(_) => counts.0 += 1,
                EphemeralKind::Container => counts.1 += 1,
                EphemeralKind::Ttl(_) => counts.2 += 1,
                EphemeralKind::Persistent => {}
            }
        }
        counts
    }
}
