//! Applying committed transactions (ZooKeeper's `DataTree.processTxn`, `createNode`,
//! `deleteNode`, `setData`, `setACL`, `killSession`) and firing the watches they trigger.
//!
//! `apply` never panics: a transaction that does not fit the tree (which a correct leader
//! never produces) yields `TxnResult::Error` and leaves the tree consistent.

use std::sync::Arc;

use bytes::Bytes;

use super::node::{ttl_owner, EphemeralType, CONTAINER_OWNER, MAX_NAME_LEN};
use super::path::{name_of, parent_of};
use super::txn::{ApplyOutcome, NodeKind, Txn, TxnBody, TxnResult, WatchFired};
use super::Database;
use crate::jute::{event_type, keeper_state, Acl, ErrorCode, OpCode, OpResult, Stat, WatcherEvent};

/// Which watch table an event goes through.
#[derive(Clone, Copy)]
enum Table {
    Data,
    Child,
}

impl Database {
    /// Applies one committed transaction. Same transactions in the same order give the same
    /// tree. Events carry `txn.zxid`.
    pub fn apply(&mut self, txn: &Txn) -> ApplyOutcome {
        let mut events = Vec::new();
        let result = match &txn.body {
            TxnBody::Multi(subs) => TxnResult::Multi(self.apply_multi(txn, subs, &mut events)),
            TxnBody::CloseSession => {
                self.kill_session(txn.session_id, txn.zxid, &mut events);
                TxnResult::Session
            }
            TxnBody::CreateSession { .. } => TxnResult::Session,
            TxnBody::Error(e) => TxnResult::Error(*e),
            body => match self.apply_one(txn, body, &mut events) {
                Ok(r) => r,
                Err(e) => TxnResult::Error(e),
            },
        };
        if txn.zxid > self.last_zxid {
            self.last_zxid = txn.zxid;
        }
        self.debug_check();
        ApplyOutcome { result, events }
    }

    fn apply_one(
        &mut self,
        txn: &Txn,
        body: &TxnBody,
        events: &mut Vec<WatchFired>,
    ) -> Result<TxnResult, ErrorCode> {
        match body {
            TxnBody::Create {
                path,
                data,
                acl,
                kind,
                parent_cversion,
                op,
            } => {
                let stat = self.create_node(
                    path,
                    data,
                    acl,
                    *kind,
                    *parent_cversion,
                    txn.zxid,
                    txn.time_ms,
                    events,
                )?;
                Ok(TxnResult::Created {
                    path: path.clone(),
                    stat,
                    op: *op,
                })
            }
            TxnBody::Delete { path } => {
                self.delete_node(path, txn.zxid, events)?;
                Ok(TxnResult::Deleted)
            }
            TxnBody::SetData {
                path,
                data,
                version,
            } => Ok(TxnResult::Stat(self.set_data(
                path,
                data,
                *version,
                txn.zxid,
                txn.time_ms,
                events,
            )?)),
            TxnBody::SetAcl { path, acl, version } => {
                Ok(TxnResult::Stat(self.set_acl(path, acl, *version)?))
            }
            TxnBody::Check { path, .. } => {
                let stat = self.stat(path).ok_or(ErrorCode::NoNode)?;
                Ok(TxnResult::Checked(stat))
            }
            TxnBody::Error(e) => Err(*e),
            // Sessions and nested multis are not valid here.
            TxnBody::CreateSession { .. } | TxnBody::CloseSession | TxnBody::Multi(_) => {
                Err(ErrorCode::Unimplemented)
            }
        }
    }

    fn apply_multi(
        &mut self,
        txn: &Txn,
        subs: &[TxnBody],
        events: &mut Vec<WatchFired>,
    ) -> Vec<OpResult> {
        if subs.iter().any(|s| matches!(s, TxnBody::Error(_))) {
            // A failed multi changes nothing; entries before the first error report Ok,
            // entries after it RuntimeInconsistency (DataTree.processTxn).
            let mut post_failed = false;
            return subs
                .iter()
                .map(|s| match s {
                    TxnBody::Error(e) => {
                        post_failed = true;
                        OpResult::Error(*e)
                    }
                    _ if post_failed => OpResult::Error(ErrorCode::RuntimeInconsistency),
                    _ => OpResult::Error(ErrorCode::Ok),
                })
                .collect();
        }
        subs.iter()
            .map(|s| match self.apply_one(txn, s, events) {
                Ok(TxnResult::Created { path, stat, op }) => {
                    if op == OpCode::Create {
                        OpResult::Create { path }
                    } else {
                        OpResult::Create2 { path, stat }
                    }
                }
                Ok(TxnResult::Deleted) => OpResult::Delete,
                Ok(TxnResult::Stat(stat)) => OpResult::SetData { stat },
                Ok(TxnResult::Checked(_)) => OpResult::Check,
                Ok(TxnResult::Error(e)) | Err(e) => OpResult::Error(e),
                // SetAcl/session results cannot come from a multi's ops.
                Ok(_) => OpResult::Error(ErrorCode::Unimplemented),
            })
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    fn create_node(
        &mut self,
        path: &str,
        data: &Option<Bytes>,
        acl: &[Acl],
        kind: NodeKind,
        parent_cversion: i32,
        zxid: i64,
        time_ms: i64,
        events: &mut Vec<WatchFired>,
    ) -> Result<Stat, ErrorCode> {
        if path == "/" {
            return Err(ErrorCode::NodeExists);
        }
        let parent_path = parent_of(path).ok_or(ErrorCode::BadArguments)?;
        let name = name_of(path);
        if name.is_empty() {
            return Err(ErrorCode::BadArguments);
        }
        let Some(parent) = self.id_of(parent_path) else {
            return Err(ErrorCode::NoNode);
        };
        let h = self.store.hash(path);
        if self.store.lookup_hashed(path, h).is_some() {
            return Err(ErrorCode::NodeExists);
        }
        let owner = match kind {
            NodeKind::Persistent => 0,
            NodeKind::Ephemeral(s) => s,
            NodeKind::Container => CONTAINER_OWNER,
            NodeKind::Ttl(ttl) => ttl_owner(ttl).ok_or(ErrorCode::BadArguments)?,
        };
        if name.len() > MAX_NAME_LEN {
            return Err(ErrorCode::BadArguments);
        }
        let acl_id = self.acls.intern(acl);
        let node_acl = self.acls.get(acl_id).clone();
        self.before_change(parent);
        let p = self.store.get_mut(parent);
        let new_cversion = if parent_cversion == -1 {
            p.cversion.wrapping_add(1)
        } else {
            parent_cversion
        };
        if new_cversion > p.cversion {
            p.cversion = new_cversion;
            p.pzxid = zxid;
        }
        let parent_acl = self.acls.get(p.acl).clone();
        // The store copies the payload, so the tree never pins a network read buffer.
        let id = self.insert_node(
            path,
            h,
            parent,
            zxid,
            time_ms,
            data.as_deref(),
            owner,
            acl_id,
        );
        let stat = self.store.stat(id, self.opts.extended_types_enabled);
        self.fire(
            Table::Data,
            path,
            event_type::NODE_CREATED,
            zxid,
            &node_acl,
            &[],
            events,
        );
        self.fire(
            Table::Child,
            parent_path,
            event_type::NODE_CHILDREN_CHANGED,
            zxid,
            &parent_acl,
            &[],
            events,
        );
        Ok(stat)
    }

    fn delete_node(
        &mut self,
        path: &str,
        zxid: i64,
        events: &mut Vec<WatchFired>,
    ) -> Result<(), ErrorCode> {
        if path == "/" {
            return Err(ErrorCode::BadArguments);
        }
        let parent_path = parent_of(path).ok_or(ErrorCode::BadArguments)?;
        let h = self.store.hash(path);
        let Some(id) = self.store.lookup_hashed(path, h) else {
            return Err(ErrorCode::NoNode);
        };
        // ZooKeeper would orphan the children; refusing keeps the tree consistent.
        if self.store.get(id).num_children() > 0 {
            return Err(ErrorCode::NotEmpty);
        }
        let parent = self.store.get(id).parent;
        // Saving a pre-image of a node that then does not change is harmless.
        self.before_change(parent);
        self.before_change(id);
        let p = self.store.get_mut(parent);
        if zxid > p.pzxid {
            p.pzxid = zxid;
        }
        let parent_acl_id = p.acl;
        let owner = self.store.owner(id);
        let (node_acl_id, data_len) = (self.store.get(id).acl, self.store.data_len(id));
        self.store.remove(id, h);
        if self.snap.is_none() {
            self.store.trim_free_tail();
        }
        self.data_size = self
            .data_size
            .saturating_sub((path.len() + data_len) as u64);
        let node_acl = self.acls.get(node_acl_id).clone();
        self.acls.release(node_acl_id);
        let parent_acl = self.acls.get(parent_acl_id).clone();
        match EphemeralType::of(owner, self.opts.extended_types_enabled) {
            EphemeralType::Void => {}
            EphemeralType::Container => {
                self.containers.remove(&id);
            }
            EphemeralType::Ttl => {
                self.ttls.remove(&id);
            }
            EphemeralType::Normal => {
                if let Some(set) = self.ephemerals.get_mut(&owner) {
                    set.remove(&id);
                    if set.is_empty() {
                        self.ephemerals.remove(&owner);
                    }
                }
            }
        }
        let notified = self.fire(
            Table::Data,
            path,
            event_type::NODE_DELETED,
            zxid,
            &node_acl,
            &[],
            events,
        );
        self.fire(
            Table::Child,
            path,
            event_type::NODE_DELETED,
            zxid,
            &node_acl,
            &notified,
            events,
        );
        self.fire(
            Table::Child,
            parent_path,
            event_type::NODE_CHILDREN_CHANGED,
            zxid,
            &parent_acl,
            &[],
            events,
        );
        Ok(())
    }

    fn set_data(
        &mut self,
        path: &str,
        data: &Option<Bytes>,
        version: i32,
        zxid: i64,
        time_ms: i64,
        events: &mut Vec<WatchFired>,
    ) -> Result<Stat, ErrorCode> {
        let extended = self.opts.extended_types_enabled;
        let Some(id) = self.id_of(path) else {
            return Err(ErrorCode::NoNode);
        };
        self.before_change(id);
        let old_len = self.store.data_len(id) as u64;
        self.store.set_data(id, data.as_deref());
        let node = self.store.get_mut(id);
        node.mtime = time_ms;
        node.mzxid = zxid;
        node.version = version;
        let acl = self.acls.get(node.acl).clone();
        let new_len = self.store.data_len(id) as u64;
        let stat = self.store.stat(id, extended);
        self.data_size = self.data_size.saturating_sub(old_len) + new_len;
        self.fire(
            Table::Data,
            path,
            event_type::NODE_DATA_CHANGED,
            zxid,
            &acl,
            &[],
            events,
        );
        Ok(stat)
    }

    fn set_acl(&mut self, path: &str, acl: &[Acl], version: i32) -> Result<Stat, ErrorCode> {
        let extended = self.opts.extended_types_enabled;
        let Some(id) = self.id_of(path) else {
            return Err(ErrorCode::NoNode);
        };
        self.before_change(id);
        let new = self.acls.intern(acl);
        let node = self.store.get_mut(id);
        let old = std::mem::replace(&mut node.acl, new);
        node.aversion = version;
        self.acls.release(old);
        Ok(self.store.stat(id, extended))
    }

    /// Deletes every ephemeral of `session` (in path order, for determinism).
    fn kill_session(&mut self, session: i64, zxid: i64, events: &mut Vec<WatchFired>) {
        let paths = self.session_ephemerals(session);
        if paths.is_empty() {
            return;
        }
        for p in paths {
            // Ephemerals have no children, so this only fails on a broken tree.
            let _ = self.delete_node(&p, zxid, events);
        }
        self.ephemerals.remove(&session);
    }

    /// Triggers `table` for `path` and records one event per notified session, skipping
    /// `suppress`. Returns the sessions notified.
    #[allow(clippy::too_many_arguments)]
    fn fire(
        &mut self,
        table: Table,
        path: &str,
        kind: i32,
        zxid: i64,
        acl: &Arc<[Acl]>,
        suppress: &[i64],
        events: &mut Vec<WatchFired>,
    ) -> Vec<i64> {
        let sessions = match table {
            Table::Data => self.data_watches.trigger(path),
            Table::Child => self.child_watches.trigger(path),
        };
        for &s in &sessions {
            if suppress.binary_search(&s).is_ok() {
                continue;
            }
            events.push(WatchFired {
                session_id: s,
                zxid,
                event: WatcherEvent {
                    event_type: kind,
                    state: keeper_state::SYNC_CONNECTED,
                    path: path.to_string(),
                },
                acl: Some(acl.clone()),
            });
        }
        sessions
    }
}
