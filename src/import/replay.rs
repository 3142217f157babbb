//! ZooKeeper's transaction replay (`DataTree.processTxn` as `FileTxnSnapLog.restore` drives it),
//! on the tree of a fuzzy snapshot.
//!
//! A ZooKeeper snapshot is written while transactions keep being applied, so its nodes may
//! already reflect some of the logged transactions after its zxid. ZooKeeper replays those
//! transactions anyway and relies on these rules to converge (ZooKeeper 3.5–3.9):
//!
//! - **create** (all kinds): a missing parent is ignored (NONODE). An existing node is left
//!   alone (NODEEXISTS), but for plain `create` (type 1, also inside a multi) the parent's
//!   cversion/pzxid are still raised to the txn's `parentCVersion`. Otherwise the node is
//!   added with czxid = mzxid = pzxid = zxid, ctime = mtime = txn time, versions 0, and the
//!   parent's stored cversion is set to `parentCVersion` (-1: current + 1) and its pzxid to
//!   the zxid **only if** that raises the cversion.
//! - **delete**: the parent's pzxid is raised to the zxid if lower, even when the child is
//!   already gone (NONODE is ignored).
//! - **setData / reconfig**: data, mtime, mzxid and version (the txn's) on an existing node.
//! - **setACL**: ACL and aversion (the txn's).
//! - **createSession / closeSession**: the session table; closeSession deletes the paths its
//!   txn lists and then every remaining ephemeral of the session (`DataTree.killSession`), with
//!   the delete rules above.
//! - **multi**: if any sub-record is an error record, nothing is applied; otherwise every
//!   sub-record in order, with the same zxid and time.
//! - **check** and **error** change nothing.
//!
//! Stats are kept in ZooKeeper's persisted form ([`ZkStat`]): stored (create-counting)
//! cversion and raw ephemeralOwner.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;

use crate::jute::{Acl, OpCode};
use crate::zkdata::snapshot::parent_path;
use crate::zkdata::{EphemeralKind, ZkSnapshot, ZkStat, ZkTxn, ZkTxnBody};

use super::ImportError;

/// One node during replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayNode {
    pub data: Option<Bytes>,
    /// Index into [`ReplayTree::acls`].
    pub acl: usize,
    pub stat: ZkStat,
}

/// A ZooKeeper tree and session table being rebuilt from a snapshot and a log.
#[derive(Debug, Clone, Default)]
pub struct ReplayTree {
    /// Every node by absolute path ("/" is the root). Sorted, so a node's descendants follow
    /// it contiguously (as `path + "/"` prefixed keys).
    pub nodes: BTreeMap<String, ReplayNode>,
    /// Distinct ACL lists; nodes refer to them by position.
    pub acls: Vec<Vec<Acl>>,
    acl_ids: HashMap<Vec<Acl>, usize>,
    /// Live sessions: id → negotiated timeout (ms).
    pub sessions: BTreeMap<i64, i32>,
    /// Ephemeral paths by owning session (raw owners that are session ids only).
    ephemerals: HashMap<i64, BTreeSet<String>>,
    /// Transactions whose effect was already in the snapshot, or that ZooKeeper would ignore
    /// (NONODE/NODEEXISTS during replay). Normal for a fuzzy snapshot.
    pub ignored_ops: u64,
    /// Nodes deleted while they still had children (their descendants went with them).
    pub non_empty_deletes: Vec<String>,
}

fn bad_path(zxid: i64, path: &str) -> ImportError {
    ImportError::BadTxnPath {
        zxid,
        path: path.to_owned(),
    }
}

/// The parent of a txn path, checking the path's shape as ZooKeeper's request processor
/// would have (ZooKeeper itself fails on a malformed path during replay).
fn txn_parent(zxid: i64, path: &str) -> Result<String, ImportError> {
    let well_formed =
        path.len() > 1 && path.starts_with('/') && path[1..].split('/').all(|c| !c.is_empty());
    if !well_formed {
        return Err(bad_path(zxid, path));
    }
    parent_path(path)
        .map(str::to_owned)
        .ok_or_else(|| bad_path(zxid, path))
}

impl ReplayTree {
    /// The tree and sessions of a parsed snapshot.
    pub fn from_snapshot(snap: &ZkSnapshot) -> Result<ReplayTree, ImportError> {
        let mut tree = ReplayTree::default();
        let mut by_zk_index: HashMap<i64, usize> = HashMap::new();
        for node in &snap.nodes {
            let acl = match by_zk_index.get(&node.acl_index) {
                Some(&i) => i,
                None => {
                    let list =
                        snap.acl(node.acl_index)
                            .ok_or_else(|| ImportError::UnknownAclIndex {
                                path: node.path.clone(),
                                index: node.acl_index,
                            })?;
                    let i = tree.intern_acl(&list);
                    by_zk_index.insert(node.acl_index, i);
                    i
                }
            };
            tree.insert(
                node.path.clone(),
                ReplayNode {
                    data: node.data.clone(),
                    acl,
                    stat: node.stat,
                },
            );
        }
        tree.sessions = snap.sessions.iter().copied().collect();
        Ok(tree)
    }

    fn intern_acl(&mut self, acl: &[Acl]) -> usize {
        if let Some(&i) = self.acl_ids.get(acl) {
            return i;
        }
        let i = self.acls.len();
        self.acls.push(acl.to_vec());
        self.acl_ids.insert(acl.to_vec(), i);
        i
    }

    fn insert(&mut self, path: String, node: ReplayNode) {
        if let EphemeralKind::Session(owner) = node.stat.ephemeral_kind() {
            self.ephemerals
                .entry(owner)
                .or_default()
                .insert(path.clone());
        }
        self.nodes.insert(path, node);
    }

    /// Removes `path` and (defensively) anything below it.
    fn remove_subtree(&mut self, path: &str) {
        let prefix = format!("{path}/");
        let below: Vec<String> = self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(p, _)| p.starts_with(&prefix))
            .map(|(p, _)| p.clone())
            .collect();
        if !below.is_empty() {
            self.non_empty_deletes.push(path.to_owned());
        }
        for p in below.iter().map(String::as_str).chain([path]) {
            if let Some(node) = self.nodes.remove(p) {
                if let EphemeralKind::Session(owner) = node.stat.ephemeral_kind() {
                    if let Some(set) = self.ephemerals.get_mut(&owner) {
                        set.remove(p);
                        if set.is_empty() {
                            self.ephemerals.remove(&owner);
                        }
                    }
                }
            }
        }
    }

    /// `DataTree.setCversionPzxid`.
    fn set_cversion_pzxid(&mut self, parent: &str, mut cversion: i32, zxid: i64) {
        if let Some(p) = self.nodes.get_mut(parent) {
            if cversion == -1 {
                cversion = p.stat.cversion.wrapping_add(1);
            }
            if cversion > p.stat.cversion {
                p.stat.cversion = cversion;
                p.stat.pzxid = zxid;
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        txn: &ZkTxn,
        txn_type: i32,
        path: &str,
        data: &Option<Bytes>,
        acl: &[Acl],
        owner: i64,
        parent_cversion: i32,
    ) -> Result<(), ImportError> {
        let h = &txn.header;
        let parent = txn_parent(h.zxid, path)?;
        if !self.nodes.contains_key(&parent) {
            self.ignored_ops += 1;
            return Ok(());
        }
        if self.nodes.contains_key(path) {
            self.ignored_ops += 1;
            if txn_type == OpCode::Create.code() {
                self.set_cversion_pzxid(&parent, parent_cversion, h.zxid);
            }
            return Ok(());
        }
        self.set_cversion_pzxid(&parent, parent_cversion, h.zxid);
        let acl = self.intern_acl(acl);
        let stat = ZkStat {
            czxid: h.zxid,
            mzxid: h.zxid,
            ctime: h.time,
            mtime: h.time,
            version: 0,
            cversion: 0,
            aversion: 0,
            ephemeral_owner: owner,
            pzxid: h.zxid,
        };
        self.insert(
            path.to_owned(),
            ReplayNode {
                data: data.clone(),
                acl,
                stat,
            },
        );
        Ok(())
    }

    /// `DataTree.deleteNode`.
    fn delete(&mut self, path: &str, zxid: i64) -> Result<(), ImportError> {
        let parent = txn_parent(zxid, path)?;
        let Some(p) = self.nodes.get_mut(&parent) else {
            self.ignored_ops += 1;
            return Ok(());
        };
        if zxid > p.stat.pzxid {
            p.stat.pzxid = zxid;
        }
        if self.nodes.contains_key(path) {
            self.remove_subtree(path);
        } else {
            self.ignored_ops += 1;
        }
        Ok(())
    }

    /// Applies one logged transaction.
    pub fn apply(&mut self, txn: &ZkTxn) -> Result<(), ImportError> {
        self.apply_body(txn, txn.header.txn_type, &txn.body)
    }

    fn apply_body(
        &mut self,
        txn: &ZkTxn,
        txn_type: i32,
        body: &ZkTxnBody,
    ) -> Result<(), ImportError> {
        let h = &txn.header;
        match body {
            ZkTxnBody::Create {
                path,
                data,
                acl,
                ephemeral,
                parent_cversion,
            } => {
                let owner = if *ephemeral { h.client_id } else { 0 };
                self.create(txn, txn_type, path, data, acl, owner, *parent_cversion)
            }
            ZkTxnBody::CreateContainer {
                path,
                data,
                acl,
                parent_cversion,
            } => {
                let owner = EphemeralKind::Container.to_owner();
                self.create(txn, txn_type, path, data, acl, owner, *parent_cversion)
            }
            ZkTxnBody::CreateTtl {
                path,
                data,
                acl,
                parent_cversion,
                ttl_ms,
            } => {
                let owner = EphemeralKind::Ttl(*ttl_ms).to_owner();
                self.create(txn, txn_type, path, data, acl, owner, *parent_cversion)
            }
            ZkTxnBody::Delete { path } => self.delete(path, h.zxid),
            ZkTxnBody::SetData {
                path,
                data,
                version,
            }
            | ZkTxnBody::Reconfig {
                path,
                data,
                version,
            } => {
                match self.nodes.get_mut(path) {
                    Some(n) => {
                        n.data = data.clone();
                        n.stat.mtime = h.time;
                        n.stat.mzxid = h.zxid;
                        n.stat.version = *version;
                    }
                    None => self.ignored_ops += 1,
                }
                Ok(())
            }
            ZkTxnBody::SetAcl { path, acl, version } => {
                if self.nodes.contains_key(path) {
                    let acl = self.intern_acl(acl);
                    if let Some(n) = self.nodes.get_mut(path) {
                        n.acl = acl;
                        n.stat.aversion = *version;
                    }
                } else {
                    self.ignored_ops += 1;
                }
                Ok(())
            }
            ZkTxnBody::CreateSession { timeout_ms } => {
                self.sessions.insert(h.client_id, *timeout_ms);
                Ok(())
            }
            ZkTxnBody::CloseSession { paths_to_delete } => {
                self.sessions.remove(&h.client_id);
                for p in paths_to_delete.iter().flatten() {
                    self.delete(p, h.zxid)?;
                }
                let rest: Vec<String> = self
                    .ephemerals
                    .get(&h.client_id)
                    .map(|s| s.iter().cloned().collect())
                    .unwrap_or_default();
                for p in rest {
                    self.delete(&p, h.zxid)?;
                }
                Ok(())
            }
            ZkTxnBody::Multi(subs) => {
                if subs
                    .iter()
                    .any(|s| matches!(s.body, ZkTxnBody::Error { .. }))
                {
                    return Ok(());
                }
                for s in subs {
                    self.apply_body(txn, s.txn_type, &s.body)?;
                }
                Ok(())
            }
            ZkTxnBody::Check { .. } | ZkTxnBody::Error { .. } => Ok(()),
            ZkTxnBody::Unknown { .. } => Err(ImportError::UnknownTxnType {
                zxid: h.zxid,
                txn_type,
            }),
        }
    }

    /// Sessions that own ephemeral nodes but are not in the session table, with their nodes.
    pub fn orphan_ephemerals(&self) -> Vec<(i64, Vec<String>)> {
        self.ephemerals
            .iter()
            .filter(|(owner, paths)| !self.sessions.contains_key(owner) && !paths.is_empty())
            .map(|(owner, paths)| (*owner, paths.iter().cloned().collect()))
            .collect::<BTreeMap<_, _>>()
            .into_iter()
            .collect()
    }
}
