//! Write validation: turns a client write request into a transaction body, with the checks
//! and error codes of ZooKeeper's `PrepRequestProcessor`, in the same order (the order decides
//! which code a request with several problems gets).
//!
//! Ops inside a multi see the effects of the earlier ops through an overlay of pending
//! changes; if one op fails, the overlay is discarded and the multi becomes a list of error
//! entries: `Ok` for the ops before the failure, the failure's code, then
//! `RuntimeInconsistency` for the rest (what ZooKeeper clients receive).

use std::collections::VecDeque;
use std::sync::Arc;

use hashbrown::HashMap;

use super::acl;
use super::node::{ttl_owner, EphemeralType, CONTAINER_OWNER};
use super::path::{parent_of, validate_path};
use super::txn::{NodeKind, TxnBody};
use super::{is_special_path, Database, RequestContext};
use crate::jute::request::CreateRequest;
use crate::jute::{create_flags, perms, Acl, ErrorCode, MultiOp, OpCode, Request};

/// What prep needs to know about a node (ZooKeeper's `ChangeRecord`).
#[derive(Debug, Clone)]
struct View {
    acl: Arc<[Acl]>,
    version: i32,
    aversion: i32,
    /// Stored (create-counting) cversion.
    cversion: i32,
    owner: i64,
    child_count: i64,
}

/// Changes of writes that were prepped but not applied yet (ZooKeeper's
/// `outstandingChanges`). A leader that pipelines writes preps request N+1 before request N
/// is applied; passing the same `Pending` to [`Database::prep_pipelined`] makes N+1 see N's
/// effects (sequence numbers, NodeExists, versions). Call [`Pending::applied`] after each
/// apply.
#[derive(Debug, Default, Clone)]
pub struct Pending {
    /// path -> (zxid of the last txn that touched it, state after it; None = deleted).
    changes: HashMap<String, (i64, Option<View>)>,
    /// (zxid, path) of every recorded change in zxid order, so that `applied` forgets in
    /// time proportional to what it forgets rather than to everything pending.
    order: VecDeque<(i64, String)>,
}

impl Pending {
    pub fn new() -> Self {
        Pending::default()
    }

    /// Forgets the changes of every txn up to and including `zxid` (now in the tree).
    pub fn applied(&mut self, zxid: i64) {
        while let Some((z, _)) = self.order.front() {
            if *z > zxid {
                break;
            }
            let Some((_, path)) = self.order.pop_front() else {
                break;
            };
            // A later write to the same path keeps the entry.
            if self.changes.get(&path).is_some_and(|(z, _)| *z <= zxid) {
                self.changes.remove(&path);
            }
        }
    }

    /// Forgets everything (e.g. after a leader change).
    pub fn clear(&mut self) {
        self.changes.clear();
        self.order.clear();
    }

    pub fn len(&self) -> usize {
        self.changes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// The tree as prep sees it: the database, then the pending changes of earlier unapplied
/// writes, then the changes of the current request (earlier ops of the same multi).
struct Overlay<'a> {
    db: &'a Database,
    pending: Option<&'a Pending>,
    changes: HashMap<String, Option<View>>,
}

impl<'a> Overlay<'a> {
    fn new(db: &'a Database, pending: Option<&'a Pending>) -> Self {
        Overlay {
            db,
            pending,
            changes: HashMap::new(),
        }
    }

    fn lookup(&self, path: &str) -> Option<View> {
        // ZooKeeper's parent of "/x" is "", which it stores as the root.
        let path = if path.is_empty() { "/" } else { path };
        if let Some(change) = self.changes.get(path) {
            return change.clone();
        }
        if let Some((_, change)) = self.pending.and_then(|p| p.changes.get(path)) {
            return change.clone();
        }
        let id = self.db.id_of(path)?;
        let n = self.db.store.get(id);
        Some(View {
            acl: self.db.acls.get(n.acl).clone(),
            version: n.version,
            aversion: n.aversion,
            cversion: n.cversion,
            owner: self.db.store.owner(id),
            child_count: n.num_children() as i64,
        })
    }

    fn get(&self, path: &str) -> Result<View, ErrorCode> {
        self.lookup(path).ok_or(ErrorCode::NoNode)
    }

    fn set(&mut self, path: &str, view: Option<View>) {
        let path = if path.is_empty() { "/" } else { path };
        self.changes.insert(path.to_string(), view);
    }
}

/// `checkAndIncVersion`: -1 matches anything; the next version skips -1 (ZOOKEEPER-4743).
fn check_and_inc(current: i32, expected: i32) -> Result<i32, ErrorCode> {
    if expected != -1 && expected != current {
        return Err(ErrorCode::BadVersion);
    }
    let next = current.wrapping_add(1);
    Ok(if next == -1 { 0 } else { next })
}

/// `getParentPathAndValidate` (delete, deleteContainer): only the cheap checks, no full path
/// validation.
fn parent_for_delete(path: &str) -> Result<&str, ErrorCode> {
    if path.contains('\0') || is_special_path(path) {
        return Err(ErrorCode::BadArguments);
    }
    parent_of(path).ok_or(ErrorCode::BadArguments)
}

impl Database {
    /// Validates a write request against the current tree and turns it into a transaction
    /// body (see the module docs of `prep.rs`). `Err` carries the code the reply must have;
    /// a multi never fails as a whole because of its ops: it returns `Ok(TxnBody::Multi)` with
    /// error entries.
    pub fn prep(&self, ctx: &RequestContext, req: &Request) -> Result<TxnBody, ErrorCode> {
        let mut ov = Overlay::new(self, None);
        self.prep_in(&mut ov, ctx, req)
    }

    /// `prep` for a pipelining leader: validates against the tree plus `pending` (writes
    /// prepped but not yet applied) and, on success, records this write's effects in
    /// `pending` under `zxid`, the zxid the txn will be committed with. A failed multi
    /// records nothing.
    pub fn prep_pipelined(
        &self,
        pending: &mut Pending,
        zxid: i64,
        ctx: &RequestContext,
        req: &Request,
    ) -> Result<TxnBody, ErrorCode> {
        let (body, changes) = {
            let mut ov = Overlay::new(self, Some(pending));
            let body = self.prep_in(&mut ov, ctx, req)?;
            if let TxnBody::CloseSession = body {
                self.record_close_session(&mut ov, ctx.session_id);
            }
            (body, ov.changes)
        };
        let failed_multi = matches!(&body, TxnBody::Multi(subs) if subs.iter().any(|s| matches!(s, TxnBody::Error(_))));
        if !failed_multi {
            for (path, view) in changes {
                pending.order.push_back((zxid, path.clone()));
                pending.changes.insert(path, (zxid, view));
            }
        }
        Ok(body)
    }

    /// Marks every ephemeral the session will own when its close is applied as deleted.
    fn record_close_session(&self, ov: &mut Overlay, session: i64) {
        let mut paths: Vec<String> = self.session_ephemerals(session);
        if let Some(p) = ov.pending {
            for (path, (_, view)) in &p.changes {
                if view.as_ref().is_some_and(|v| v.owner == session) {
                    paths.push(path.clone());
                }
            }
        }
        paths.sort();
        paths.dedup();
        for path in paths {
            let Some(node) = ov.lookup(&path) else {
                continue;
            };
            if node.owner != session {
                continue;
            }
            let Some(parent_path) = parent_of(&path) else {
                continue;
            };
            if let Some(parent) = ov.lookup(parent_path) {
                self.record_delete(ov, &path, parent_path, parent);
            }
        }
    }

    fn prep_in(
        &self,
        ov: &mut Overlay,
        ctx: &RequestContext,
        req: &Request,
    ) -> Result<TxnBody, ErrorCode> {
        let ov = &mut *ov;
        match req {
            Request::Create(c) => self.prep_create(ov, ctx, c),
            Request::Delete { path, version } => self.prep_delete(ov, ctx, path, *version),
            Request::DeleteContainer { path } => self.prep_delete_container(ov, path),
            Request::SetData {
                path,
                data,
                version,
            } => self.prep_set_data(ov, ctx, path, data, *version),
            Request::SetAcl { path, acl, version } => {
                self.prep_set_acl(ov, ctx, path, acl, *version)
            }
            Request::Check { path, version } => self.prep_check(ov, ctx, path, *version),
            Request::Multi(ops) => self.prep_multi(ov, ctx, ops),
            Request::CloseSession => Ok(TxnBody::CloseSession),
            _ => Err(ErrorCode::Unimplemented),
        }
    }

    fn prep_multi(
        &self,
        ov: &mut Overlay,
        ctx: &RequestContext,
        ops: &[MultiOp],
    ) -> Result<TxnBody, ErrorCode> {
        let mut bodies = Vec::with_capacity(ops.len());
        let mut failed: Option<(usize, ErrorCode)> = None;
        for (i, op) in ops.iter().enumerate() {
            let res = match op {
                MultiOp::Create(c) => self.prep_create(ov, ctx, c),
                MultiOp::Delete { path, version } => self.prep_delete(ov, ctx, path, *version),
                MultiOp::SetData {
                    path,
                    data,
                    version,
                } => self.prep_set_data(ov, ctx, path, data, *version),
                MultiOp::Check { path, version } => self.prep_check(ov, ctx, path, *version),
                // Reads have no place in a write multi; ZooKeeper mishandles them, we refuse.
                MultiOp::GetChildren { .. } | MultiOp::GetData { .. } => {
                    return Err(ErrorCode::MarshallingError)
                }
            };
            match res {
                Ok(body) => bodies.push(body),
                Err(e) => {
                    failed = Some((i, e));
                    break;
                }
            }
        }
        let Some((at, code)) = failed else {
            return Ok(TxnBody::Multi(bodies));
        };
        let entries = (0..ops.len())
            .map(|i| {
                TxnBody::Error(match i.cmp(&at) {
                    std::cmp::Ordering::Less => ErrorCode::Ok,
                    std::cmp::Ordering::Equal => code,
                    std::cmp::Ordering::Greater => ErrorCode::RuntimeInconsistency,
                })
            })
            .collect();
        Ok(TxnBody::Multi(entries))
    }

    fn prep_create(
        &self,
        ov: &mut Overlay,
        ctx: &RequestContext,
        c: &CreateRequest,
    ) -> Result<TxnBody, ErrorCode> {
        use create_flags::*;
        let flags = c.flags;
        if !(PERSISTENT..=PERSISTENT_SEQUENTIAL_WITH_TTL).contains(&flags) {
            return Err(ErrorCode::BadArguments);
        }
        let is_ttl = matches!(flags, PERSISTENT_WITH_TTL | PERSISTENT_SEQUENTIAL_WITH_TTL);
        let is_sequential = matches!(
            flags,
            PERSISTENT_SEQUENTIAL | EPHEMERAL_SEQUENTIAL | PERSISTENT_SEQUENTIAL_WITH_TTL
        );
        let is_ephemeral = matches!(flags, EPHEMERAL | EPHEMERAL_SEQUENTIAL);
        // validateCreateRequest
        if is_ttl && !self.opts.extended_types_enabled {
            return Err(ErrorCode::Unimplemented);
        }
        let ttl = if c.op == OpCode::CreateTtl {
            c.ttl_ms
        } else {
            -1
        };
        if is_ttl {
            ttl_owner(ttl).ok_or(ErrorCode::BadArguments)?;
        } else if ttl >= 0 || c.op == OpCode::CreateTtl {
            return Err(ErrorCode::BadArguments);
        }
        // validatePathForCreate
        let Some(slash) = c.path.rfind('/') else {
            return Err(ErrorCode::BadArguments);
        };
        if c.path.contains('\0') {
            return Err(ErrorCode::BadArguments);
        }
        let parent_path = &c.path[..slash];
        let acl = acl::fixup(&c.acl, ctx.ids)?;
        let parent = ov.get(parent_path)?;
        acl::require(&parent.acl, perms::CREATE, ctx.ids, ctx.is_super)?;
        let path = if is_sequential {
            format!("{}{:010}", c.path, parent.cversion)
        } else {
            c.path.clone()
        };
        validate_path(&path)?;
        if ov.lookup(&path).is_some() {
            return Err(ErrorCode::NodeExists);
        }
        if EphemeralType::of(parent.owner, self.opts.extended_types_enabled)
            == EphemeralType::Normal
        {
            return Err(ErrorCode::NoChildrenForEphemerals);
        }
        let new_cversion = parent.cversion.wrapping_add(1);
        // The node kind follows the txn type ZooKeeper would log: createContainer and
        // createTTL have their own txns; create/create2 only know "ephemeral or not", so a
        // container flag sent with create/create2 makes a persistent node there too.
        let (kind, owner) = match c.op {
            OpCode::CreateContainer => (NodeKind::Container, CONTAINER_OWNER),
            OpCode::CreateTtl => (NodeKind::Ttl(ttl), ttl_owner(ttl).unwrap_or(0)),
            _ if is_ephemeral => (NodeKind::Ephemeral(ctx.session_id), ctx.session_id),
            _ => (NodeKind::Persistent, 0),
        };
        let parent_view = View {
            cversion: new_cversion,
            child_count: parent.child_count + 1,
            ..parent
        };
        ov.set(parent_path, Some(parent_view));
        ov.set(
            &path,
            Some(View {
                acl: Arc::from(acl.as_slice()),
                version: 0,
                aversion: 0,
                cversion: 0,
                owner,
                child_count: 0,
            }),
        );
        Ok(TxnBody::Create {
            path,
            data: c.data.clone(),
            acl,
            kind,
            parent_cversion: new_cversion,
            op: c.op,
        })
    }

    fn prep_delete(
        &self,
        ov: &mut Overlay,
        ctx: &RequestContext,
        path: &str,
        version: i32,
    ) -> Result<TxnBody, ErrorCode> {
        let parent_path = parent_for_delete(path)?;
        let parent = ov.get(parent_path)?;
        acl::require(&parent.acl, perms::DELETE, ctx.ids, ctx.is_super)?;
        let node = ov.get(path)?;
        check_and_inc(node.version, version)?;
        if node.child_count > 0 {
            return Err(ErrorCode::NotEmpty);
        }
        self.record_delete(ov, path, parent_path, parent);
        Ok(TxnBody::Delete {
            path: path.to_string(),
        })
    }

    fn record_delete(&self, ov: &mut Overlay, path: &str, parent_path: &str, parent: View) {
        let parent_view = View {
            child_count: parent.child_count - 1,
            ..parent
        };
        ov.set(parent_path, Some(parent_view));
        ov.set(path, None);
    }

    fn prep_delete_container(&self, ov: &mut Overlay, path: &str) -> Result<TxnBody, ErrorCode> {
        let parent_path = parent_for_delete(path)?;
        let node = ov.get(path)?;
        if node.child_count > 0 {
            return Err(ErrorCode::NotEmpty);
        }
        // ZooKeeper only refuses session-owned ephemerals here (with BadVersion).
        if EphemeralType::of(node.owner, self.opts.extended_types_enabled) == EphemeralType::Normal
        {
            return Err(ErrorCode::BadVersion);
        }
        let parent = ov.get(parent_path)?;
        self.record_delete(ov, path, parent_path, parent);
        Ok(TxnBody::Delete {
            path: path.to_string(),
        })
    }

    fn prep_set_data(
        &self,
        ov: &mut Overlay,
        ctx: &RequestContext,
        path: &str,
        data: &Option<bytes::Bytes>,
        version: i32,
    ) -> Result<TxnBody, ErrorCode> {
        validate_path(path)?;
        let node = ov.get(path)?;
        acl::require(&node.acl, perms::WRITE, ctx.ids, ctx.is_super)?;
        let new_version = check_and_inc(node.version, version)?;
        ov.set(
            path,
            Some(View {
                version: new_version,
                ..node
            }),
        );
        Ok(TxnBody::SetData {
            path: path.to_string(),
            data: data.clone(),
            version: new_version,
        })
    }

    fn prep_set_acl(
        &self,
        ov: &mut Overlay,
        ctx: &RequestContext,
        path: &str,
        acl_list: &[Acl],
        version: i32,
    ) -> Result<TxnBody, ErrorCode> {
        validate_path(path)?;
        let fixed = acl::fixup(acl_list, ctx.ids)?;
        let node = ov.get(path)?;
        acl::require(&node.acl, perms::ADMIN, ctx.ids, ctx.is_super)?;
        let new_version = check_and_inc(node.aversion, version)?;
        ov.set(
            path,
            Some(View {
                aversion: new_version,
                acl: Arc::from(fixed.as_slice()),
                ..node
            }),
        );
        Ok(TxnBody::SetAcl {
            path: path.to_string(),
            acl: fixed,
            version: new_version,
        })
    }

    fn prep_check(
        &self,
        ov: &mut Overlay,
        ctx: &RequestContext,
        path: &str,
        version: i32,
    ) -> Result<TxnBody, ErrorCode> {
        validate_path(path)?;
        let node = ov.get(path)?;
        acl::require(&node.acl, perms::READ, ctx.ids, ctx.is_super)?;
        check_and_inc(node.version, version)?;
        Ok(TxnBody::Check {
            path: path.to_string(),
            version: node.version,
        })
    }
}
