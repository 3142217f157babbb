//! Reads and watch management: exists, getData, getACL, getChildren(2),
//! getAllChildrenNumber, getEphemerals, multiRead, addWatch, checkWatches, removeWatches and
//! setWatches, with the ACL checks and watch registration of ZooKeeper's
//! `FinalRequestProcessor` and `DataTree`.

use super::acl;
use super::node;
use super::txn::WatchFired;
use super::watch::mode;
use super::{Database, RequestContext};
use crate::jute::request::SetWatches;
use crate::jute::{
    add_watch_mode, event_type, keeper_state, perms, watcher_type, Acl, ErrorCode, Id, MultiOp,
    OpResult, Request, Response, WatcherEvent,
};

impl Database {
    /// Answers a read or watch-management request. Watches are registered only when asked,
    /// and `exists` registers on a missing node too (then returns `Err(NoNode)`).
    /// Any other request is `Err(Unimplemented)`.
    pub fn read(&mut self, ctx: &RequestContext, req: &Request) -> Result<Response, ErrorCode> {
        match req {
            Request::Exists { path, watch } => {
                if path.contains('\0') {
                    return Err(ErrorCode::BadArguments);
                }
                let id = self.id_of(path);
                if let Some(id) = id {
                    let acl = self.acls.get(self.store.get(id).acl);
                    acl::require(acl, perms::READ, ctx.ids, ctx.is_super)?;
                }
                if *watch {
                    self.data_watches.add(path, ctx.session_id, mode::STANDARD);
                }
                let extended = self.opts.extended_types_enabled;
                id.map(|id| Response::Stat(self.store.stat(id, extended)))
                    .ok_or(ErrorCode::NoNode)
            }
            Request::GetData { path, watch } => {
                let (data, stat) = self.get_data(ctx, path)?;
                if *watch {
                    self.data_watches.add(path, ctx.session_id, mode::STANDARD);
                }
                Ok(Response::GetData { data, stat })
            }
            Request::GetAcl { path } => self.get_acl(ctx, path),
            Request::GetChildren {
                path,
                watch,
                with_stat,
            } => {
                let (id, children) = self.get_children(ctx, path)?;
                if *watch {
                    self.child_watches.add(path, ctx.session_id, mode::STANDARD);
                }
                if *with_stat {
                    let stat = self.store.stat(id, self.opts.extended_types_enabled);
                    Ok(Response::GetChildren2 { children, stat })
                } else {
                    Ok(Response::GetChildren { children })
                }
            }
            Request::GetAllChildrenNumber { path } => {
                let id = self.id_of(path).ok_or(ErrorCode::NoNode)?;
                let acl = self.acls.get(self.store.get(id).acl);
                acl::require(acl, perms::READ, ctx.ids, ctx.is_super)?;
                Ok(Response::GetAllChildrenNumber {
                    total: self.descendant_count(path) as i32,
                })
            }
            Request::GetEphemerals { prefix_path } => {
                let all = self.session_ephemerals(ctx.session_id);
                let trimmed = prefix_path.trim();
                let paths = if trimmed.is_empty() || trimmed == "/" {
                    all
                } else {
                    all.into_iter()
                        .filter(|p| p.starts_with(prefix_path.as_str()))
                        .collect()
                };
                Ok(Response::GetEphemerals { paths })
            }
            Request::MultiRead(ops) => {
                let mut results = Vec::with_capacity(ops.len());
                for op in ops {
                    let r = match op {
                        MultiOp::GetChildren { path } => match self.get_children(ctx, path) {
                            Ok((_, children)) => OpResult::GetChildren { children },
                            Err(e) => OpResult::Error(e),
                        },
                        MultiOp::GetData { path } => match self.get_data(ctx, path) {
                            Ok((data, stat)) => OpResult::GetData { data, stat },
                            Err(e) => OpResult::Error(e),
                        },
                        _ => return Err(ErrorCode::MarshallingError),
                    };
                    results.push(r);
                }
                Ok(Response::Multi(results))
            }
            Request::AddWatch { path, mode: m } => {
                match *m {
                    add_watch_mode::PERSISTENT => {
                        self.data_watches
                            .add(path, ctx.session_id, mode::PERSISTENT);
                        self.child_watches
                            .add(path, ctx.session_id, mode::PERSISTENT);
                    }
                    add_watch_mode::PERSISTENT_RECURSIVE => {
                        self.data_watches
                            .add(path, ctx.session_id, mode::PERSISTENT_RECURSIVE);
                    }
                    _ => return Err(ErrorCode::MarshallingError),
                }
                // ZooKeeper replies with an ErrorResponse body (one int, 0) that the Java
                // client reads.
                Ok(Response::ErrorBody(ErrorCode::Ok))
            }
            Request::CheckWatches { path, watcher_type } => {
                if self.contains_watch(path, *watcher_type, ctx.session_id)? {
                    Ok(Response::Empty)
                } else {
                    Err(ErrorCode::NoWatcher)
                }
            }
            Request::RemoveWatches { path, watcher_type } => {
                if self.remove_watch(path, *watcher_type, ctx.session_id)? {
                    Ok(Response::Empty)
                } else {
                    Err(ErrorCode::NoWatcher)
                }
            }
            _ => Err(ErrorCode::Unimplemented),
        }
    }

    fn get_data(
        &self,
        ctx: &RequestContext,
        path: &str,
    ) -> Result<(Option<bytes::Bytes>, crate::jute::Stat), ErrorCode> {
        let id = self.id_of(path).ok_or(ErrorCode::NoNode)?;
        let acl = self.acls.get(self.store.get(id).acl);
        acl::require(acl, perms::READ, ctx.ids, ctx.is_super)?;
        let stat = self.store.stat(id, self.opts.extended_types_enabled);
        Ok((self.store.data_bytes(id), stat))
    }

    /// The node's id and its sorted child names.
    fn get_children(
        &self,
        ctx: &RequestContext,
        path: &str,
    ) -> Result<(u32, Vec<String>), ErrorCode> {
        let id = self.id_of(path).ok_or(ErrorCode::NoNode)?;
        let acl = self.acls.get(self.store.get(id).acl);
        acl::require(acl, perms::READ, ctx.ids, ctx.is_super)?;
        Ok((id, self.store.child_names(id)))
    }

    /// getACL: READ or ADMIN suffices; without ADMIN, digest ids come back as "user:x".
    fn get_acl(&self, ctx: &RequestContext, path: &str) -> Result<Response, ErrorCode> {
        let id = self.id_of(path).ok_or(ErrorCode::NoNode)?;
        let list = self.acls.get(self.store.get(id).acl);
        acl::require(list, perms::READ | perms::ADMIN, ctx.ids, ctx.is_super)?;
        let stat = self.store.stat(id, self.opts.extended_types_enabled);
        let admin = acl::check(list, perms::ADMIN, ctx.ids, ctx.is_super);
        let acl: Vec<Acl> = list
            .iter()
            .map(|a| {
                if !admin && a.id.scheme == "digest" {
                    let user = match a.id.id.find(':') {
                        Some(i) => format!("{}:x", &a.id.id[..i]),
                        None => a.id.id.clone(),
                    };
                    Acl {
                        perms: a.perms,
                        id: Id::new("digest", user),
                    }
                } else {
                    a.clone()
                }
            })
            .collect();
        Ok(Response::GetAcl { acl, stat })
    }

    /// Number of descendants of `path` (not counting itself).
    pub fn descendant_count(&self, path: &str) -> usize {
        let Some(id) = self.id_of(path) else {
            return 0;
        };
        if self.store.get(id).parent == node::NIL {
            return self.store.len() - 1;
        }
        let mut count = 0;
        let mut stack: Vec<u32> = vec![id];
        while let Some(p) = stack.pop() {
            count += self.store.get(p).num_children();
            stack.extend(self.store.children(p));
        }
        count
    }

    fn contains_watch(&self, path: &str, wtype: i32, session: i64) -> Result<bool, ErrorCode> {
        Ok(match wtype {
            watcher_type::CHILDREN => {
                self.child_watches
                    .contains(path, session, Some(mode::STANDARD))
            }
            watcher_type::DATA => self
                .data_watches
                .contains(path, session, Some(mode::STANDARD)),
            watcher_type::PERSISTENT => {
                self.data_watches
                    .contains(path, session, Some(mode::PERSISTENT))
            }
            watcher_type::PERSISTENT_RECURSIVE => {
                self.data_watches
                    .contains(path, session, Some(mode::PERSISTENT_RECURSIVE))
            }
            watcher_type::ANY => {
                self.child_watches.contains(path, session, None)
                    || self.data_watches.contains(path, session, None)
            }
            _ => return Err(ErrorCode::MarshallingError),
        })
    }

    fn remove_watch(&mut self, path: &str, wtype: i32, session: i64) -> Result<bool, ErrorCode> {
        Ok(match wtype {
            watcher_type::CHILDREN => {
                self.child_watches
                    .remove(path, session, Some(mode::STANDARD))
            }
            watcher_type::DATA => self
                .data_watches
                .remove(path, session, Some(mode::STANDARD)),
            watcher_type::PERSISTENT => {
                let a = self
                    .child_watches
                    .remove(path, session, Some(mode::PERSISTENT));
                let b = self
                    .data_watches
                    .remove(path, session, Some(mode::PERSISTENT));
                a || b
            }
            watcher_type::PERSISTENT_RECURSIVE => {
                self.data_watches
                    .remove(path, session, Some(mode::PERSISTENT_RECURSIVE))
            }
            watcher_type::ANY => {
                let a = self.child_watches.remove(path, session, None);
                let b = self.data_watches.remove(path, session, None);
                a || b
            }
            _ => return Err(ErrorCode::MarshallingError),
        })
    }

    /// A reconnecting client's setWatches/setWatches2 (`DataTree.setWatches`): re-registers
    /// each watch, or returns the event the client missed since `relative_zxid` instead.
    /// The events have zxid -1 and no ACL filter, as in ZooKeeper.
    pub fn set_watches(&mut self, session_id: i64, sw: &SetWatches) -> Vec<WatchFired> {
        let mut out = Vec::new();
        let rel = sw.relative_zxid;
        let mut missed = |kind: i32, path: &str| {
            out.push(WatchFired {
                session_id,
                zxid: -1,
                event: WatcherEvent {
                    event_type: kind,
                    state: keeper_state::SYNC_CONNECTED,
                    path: path.to_string(),
                },
                acl: None,
            });
        };
        for p in &sw.data {
            match self.id_of(p).map(|id| self.store.get(id)) {
                None => missed(event_type::NODE_DELETED, p),
                Some(n) if n.mzxid > rel => missed(event_type::NODE_DATA_CHANGED, p),
                Some(_) => {
                    self.data_watches.add(p, session_id, mode::STANDARD);
                }
            }
        }
        for p in &sw.exist {
            if self.id_of(p).is_some() {
                missed(event_type::NODE_CREATED, p);
            } else {
                self.data_watches.add(p, session_id, mode::STANDARD);
            }
        }
        for p in &sw.child {
            match self.id_of(p).map(|id| self.store.get(id)) {
                None => missed(event_type::NODE_DELETED, p),
                Some(n) if n.pzxid > rel => missed(event_type::NODE_CHILDREN_CHANGED, p),
                Some(_) => {
                    self.child_watches.add(p, session_id, mode::STANDARD);
                }
            }
        }
        for p in &sw.persistent {
            self.child_watches.add(p, session_id, mode::PERSISTENT);
            self.data_watches.add(p, session_id, mode::PERSISTENT);
        }
        for p in &sw.persistent_recursive {
            self.data_watches
                .add(p, session_id, mode::PERSISTENT_RECURSIVE);
        }
        out
    }
}
