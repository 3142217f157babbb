//! The core in quorum mode: drives the election and the ZAB core (`crate::quorum`), carries out
//! their commands against the log, the tree, the sessions and the peer networks, and routes
//! client requests through the leader.
//!
//! How a write travels: a follower or observer forwards it to the leader (`ForwardRequest`,
//! with the identities the client authenticated with); the leader prepares it against its tree
//! plus the effects of its not-yet-committed proposals (`Pending`, ZooKeeper's outstanding
//! changes) and proposes the transaction; every member applies it when ZAB says it is
//! committed (`Command::Apply`), and the member the client is connected to answers then.
//! Until then the session's later requests wait in its queue, so a session reads its own
//! writes and gets its replies in order. Sessions are global: createSession and closeSession
//! are transactions, members report client activity to the leader (`SessionTouch`), and only
//! the leader expires sessions.
//!
//! A member that is not in an established role (looking for a leader, or still synchronising)
//! closes every client connection and refuses new ones, so clients move to a member that serves.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tracing::{debug, error, info, warn};

use super::{response_for, wall_ms, Connecting, Core, Outbound, Queued, Revalidating};
use crate::jute::codec::{Reader, Writer};
use crate::jute::{ErrorCode, Id, OpCode, Request, Response};
use crate::quorum::election::{self, Notification, Out};
use crate::quorum::zab::pb::{self, peer_message::Body as PeerBody, zab_message, PeerMessage};
use crate::quorum::zab::{Command, Event, Role};
use crate::quorum::zxid;
use crate::server::four_letter::Mode;
use crate::server::session::ConnId;
use crate::storage::txn_codec::{decode_txn, encode_txn};
use crate::tree::{RequestContext, Txn, TxnBody};

/// The cxid of a `SyncRequest` that revalidates a reconnecting session rather than answering a
/// client's sync (client cxids are never negative on the wire for syncs; -3 is unused by
/// ZooKeeper's special xids -1, -2, -4, -8).
const REVALIDATE_CXID: i32 = -3;

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Looking => "looking",
        Role::Leading { .. } => "leader",
        Role::Following { .. } => "follower",
        Role::Observing { .. } => "observer",
    }
}

impl Core {
    // ------------------------------------------------------------------ role queries

    /// Whether this server may decide on its own to change state (expire sessions, reap
    /// containers): standalone, or the established leader.
    pub(super) fn is_writer(&self) -> bool {
        match &self.repl {
            None => true,
            Some(r) => matches!(r.role, Role::Leading { .. }),
        }
    }

    /// Whether clients are served: standalone, or in an established role.
    pub(super) fn is_serving(&self) -> bool {
        match &self.repl {
            None => true,
            Some(r) => r.role != Role::Looking,
        }
    }

    pub(super) fn mode(&self) -> Mode {
        match &self.repl {
            None => Mode::Standalone,
            Some(r) => match r.role {
                Role::Looking => Mode::NotServing,
                Role::Leading { .. } => Mode::Leader,
                Role::Following { .. } => Mode::Follower,
                Role::Observing { .. } => Mode::Observer,
            },
        }
    }

    // ------------------------------------------------------------------ driving the machines

    /// Starts looking for a leader (at boot).
    pub(super) fn quorum_start(&mut self) {
        let Some(r) = self.repl.as_mut() else { return };
        r.looking_since = Instant::now();
        let outs = r.election.start();
        self.election_outs(outs);
    }

    /// Feeds one event to the ZAB core and carries out everything that follows from it.
    fn zab_event(&mut self, ev: Event) {
        let Some(r) = self.repl.as_mut() else { return };
        r.events.push_back(ev);
        self.pump();
    }

    /// Runs queued events through the ZAB core and executes its commands until both are
    /// drained. Re-entrant calls (a command that produces an event) just queue.
    fn pump(&mut self) {
        let Some(r) = self.repl.as_mut() else { return };
        if r.pumping {
            return;
        }
        r.pumping = true;
        loop {
            let Some(r) = self.repl.as_mut() else { return };
            if let Some(ev) = r.events.pop_front() {
                if let Err(e) = r.zab.step(ev) {
                    debug!(error = %e, "zab: input ignored");
                }
            }
            let cmds = r.zab.take_commands();
            if cmds.is_empty() && r.events.is_empty() {
                r.pumping = false;
                return;
            }
            for c in cmds {
                self.execute(c);
                if self.fatal {
                    if let Some(r) = self.repl.as_mut() {
                        r.pumping = false;
                    }
                    return;
                }
            }
        }
    }

    fn execute(&mut self, cmd: Command) {
        let Some(r) = self.repl.as_mut() else { return };
        match cmd {
            Command::Persist { id, entries } => {
                for e in entries {
                    r.log_last = e.zxid;
                    self.persist.log_raw(e.zxid, e.payload);
                }
                r.writes.push_back((id, r.log_last));
            }
            Command::Truncate { id, after_zxid } => match self.persist.truncate_after(after_zxid) {
                Ok(d) => {
                    self.new_durability = Some(d);
                    r.writes.clear();
                    r.log_last = r.log_last.min(after_zxid);
                    r.events.push_back(Event::Persisted { up_to: id });
                }
                Err(e) => {
                    error!(error = %e, "cannot truncate the log as the leader asked; stopping");
                    self.fatal = true;
                }
            },
            Command::InstallSnapshot { id, zxid, state } => {
                info!(
                    zxid = format_args!("0x{zxid:x}"),
                    size_bytes = state.len(),
                    "installing the leader's snapshot"
                );
                if self.snap_tx.take().is_some() {
                    // Its writer aborts on the closed channel; its report is ignored.
                    self.snaps_abandoned += 1;
                    self.snap_finishing = false;
                }
                let opts = crate::tree::TreeOptions {
                    extended_types_enabled: self.opts.extended_types_enabled,
                };
                match self.persist.install_snapshot(zxid, &state, opts) {
                    Ok((loaded, d)) => {
                        self.db = loaded.db;
                        self.init_config_node();
                        self.reset_sessions(&loaded.sessions);
                        self.last_zxid = zxid;
                        self.durable_zxid = zxid;
                        self.new_durability = Some(d);
                        if let Some(r) = self.repl.as_mut() {
                            r.writes.clear();
                            r.log_last = zxid;
                            r.events.push_back(Event::Persisted { up_to: id });
                        }
                    }
                    Err(e) => {
                        error!(error = %e, "cannot install the leader's snapshot; stopping");
                        self.fatal = true;
                    }
                }
            }
            Command::PersistEpoch(rec) => {
                let result = match rec {
                    crate::quorum::zab::EpochRecord::Accepted(a) => {
                        self.persist.write_accepted_epoch(a.epoch, a.leader)
                    }
                    crate::quorum::zab::EpochRecord::Current(e) => {
                        self.persist.write_current_epoch(e)
                    }
                };
                match result {
                    Ok(()) => r.events.push_back(Event::EpochPersisted(rec)),
                    Err(e) => {
                        error!(error = %e, "cannot write the epoch file; stopping");
                        self.fatal = true;
                    }
                }
            }
            Command::Send { to, msg } => {
                let msg = PeerMessage {
                    body: Some(PeerBody::Zab(msg)),
                };
                if let Err(e) = r.zab_net.send(to, msg) {
                    debug!(peer = to, error = %e, "cannot send to peer");
                }
            }
            Command::Apply { zxid, payload } => self.apply_committed(zxid, payload),
            Command::TakeSnapshotForPeer { peer } => {
                let dir = self.persist.snap_dir().to_path_buf();
                let up_to = self.last_zxid;
                let tx = self.peer_snap_tx.clone();
                tokio::task::spawn_blocking(move || {
                    let image = match crate::server::persist::snapshot_image(&dir, up_to) {
                        Ok(i) => i,
                        Err(e) => {
                            warn!(peer, error = %e, "cannot read a snapshot for a peer");
                            None
                        }
                    };
                    let _ = tx.blocking_send((peer, image));
                });
            }
            Command::RoleChanged(role) => self.on_role(role),
        }
    }

    fn on_role(&mut self, role: Role) {
        let Some(r) = self.repl.as_mut() else { return };
        let was = r.role;
        r.role = role;
        match role {
            Role::Looking => self.leave_role(was),
            Role::Leading { epoch }
            | Role::Following { epoch, .. }
            | Role::Observing { epoch, .. } => {
                r.election.set_epoch(epoch);
                self.init_config_node();
                let Some(r) = self.repl.as_mut() else { return };
                info!(
                    mode = %role_name(role),
                    epoch,
                    myid = r.membership.myid,
                    election_ms = r.looking_since.elapsed().as_millis() as u64,
                    last_zxid = %zxid::display(r.zab.last_zxid()),
                    "serving"
                );
                if let Role::Leading { .. } = role {
                    r.pending.clear();
                    // A new leader gives every session a full timeout from now, as ZooKeeper
                    // does: it cannot know when members last heard from their clients.
                    let now = self.mono_ms();
                    let ids: Vec<i64> = self.sessions.iter().map(|s| s.id).collect();
                    for sid in ids {
                        self.sessions.touch(sid, now);
                    }
                }
            }
        }
    }

    /// Puts the ensemble's membership into "/zookeeper/config", as a ZooKeeper member does at
    /// start and after every sync with a leader (`config` in zkCli, Curator's ensemble
    /// tracker). Version 0: the membership is static (no reconfig).
    fn init_config_node(&mut self) {
        let Some(r) = self.repl.as_ref() else { return };
        let text = r.membership.config_text.clone();
        self.db.set_config_node(text.as_bytes(), 0, wall_ms());
    }

    /// This member lost its role: clients go elsewhere, and a new election starts.
    fn leave_role(&mut self, was: Role) {
        if was != Role::Looking {
            warn!(
                was = role_name(was),
                "no longer part of an established ensemble; closing client connections"
            );
        }
        let all: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn_id in all {
            self.drop_conn(conn_id);
        }
        for (_, c) in self.connecting.drain() {
            let _ = c.tx.try_send(Outbound::Close);
        }
        for (_, r) in self.revalidating.drain() {
            let _ = r.tx.try_send(Outbound::Close);
        }
        self.queues.clear();
        let Some(r) = self.repl.as_mut() else { return };
        r.sync_sessions.clear();
        r.role = Role::Looking;
        r.pending.clear();
        r.touched.clear();
        r.leader_link = None;
        r.looking_since = Instant::now();
        let outs = r.election.restart(r.zab.last_zxid(), r.zab.current_epoch());
        self.election_outs(outs);
    }

    fn election_outs(&mut self, outs: Vec<Out>) {
        for out in outs {
            let Some(r) = self.repl.as_mut() else { return };
            match out {
                Out::Send { to, notification } => {
                    let msg = election::pb::Notification::from(&notification);
                    if let Err(e) = r.elect_net.send(to, msg) {
                        debug!(peer = to, error = %e, "cannot send a vote");
                    }
                }
                Out::Decided {
                    leader,
                    epoch,
                    role,
                } => {
                    if !r.zab.is_looking() {
                        continue;
                    }
                    info!(
                        leader,
                        epoch,
                        ?role,
                        election_ms = r.looking_since.elapsed().as_millis() as u64,
                        "election decided"
                    );
                    let ev = match role {
                        election::Role::Leading => Event::BecomeLeader { epoch_hint: None },
                        election::Role::Following => Event::BecomeFollower { leader },
                        election::Role::Observing => Event::BecomeObserver { leader },
                    };
                    // Watch the link to the leader from now on (see `on_links_changed`).
                    r.leader_link = r
                        .zab_net
                        .peer_stats(leader)
                        .filter(|s| s.connected && leader != r.membership.myid)
                        .map(|s| s.connects);
                    self.zab_event(ev);
                }
            }
        }
    }

    pub(super) fn on_election_message(&mut self, from: u64, n: election::pb::Notification) {
        let Some(r) = self.repl.as_mut() else { return };
        let n = match Notification::try_from(n) {
            Ok(n) => n,
            Err(e) => {
                debug!(peer = from, error = %e, "undecodable vote ignored");
                return;
            }
        };
        match r.election.on_notification(from, n) {
            Ok(outs) => self.election_outs(outs),
            Err(e) => debug!(peer = from, error = ?e, "vote ignored"),
        }
    }

    pub(super) fn on_quorum_tick(&mut self) {
        let Some(r) = self.repl.as_mut() else { return };
        r.ticks += 1;
        let now_ms = r.now_ms();
        let outs = r.election.on_tick(now_ms);
        self.election_outs(outs);
        self.zab_event(Event::Tick);
        let Some(r) = self.repl.as_mut() else { return };
        if r.ticks % r.ping_interval_ticks == 0 && !r.touched.is_empty() {
            if let Some(leader) = r.leader() {
                let session_ids: Vec<i64> = r.touched.drain().collect();
                let msg = PeerMessage {
                    body: Some(PeerBody::Touch(pb::SessionTouch { session_ids })),
                };
                let _ = r.zab_net.send(leader, msg);
            }
        }
    }

    /// A peer link went up or down. Losing the connection to the leader means messages may
    /// have been lost and the leader may be gone: look for a leader again at once rather than
    /// waiting for the sync limit.
    pub(super) fn on_links_changed(&mut self) {
        let Some(r) = self.repl.as_mut() else { return };
        let leader = match r.zab.role() {
            Role::Following { leader, .. } | Role::Observing { leader, .. } => leader,
            _ if !r.zab.is_looking() && !r.zab.is_leading() => match r.election.decided() {
                Some((leader, _, _)) => leader,
                None => return,
            },
            _ => return,
        };
        let Some(stats) = r.zab_net.peer_stats(leader) else {
            return;
        };
        match r.leader_link {
            None if stats.connected => r.leader_link = Some(stats.connects),
            Some(connects) if !stats.connected || stats.connects != connects => {
                warn!(leader, "lost the connection to the leader");
                self.zab_event(Event::Looking);
                self.on_role(Role::Looking);
            }
            _ => {}
        }
    }

    pub(super) fn on_durable_quorum(&mut self, durable_zxid: i64) {
        let Some(r) = self.repl.as_mut() else { return };
        let mut up_to = None;
        while let Some(&(id, z)) = r.writes.front() {
            if z > durable_zxid {
                break;
            }
            r.writes.pop_front();
            up_to = Some(id);
        }
        if let Some(up_to) = up_to {
            self.zab_event(Event::Persisted { up_to });
        }
    }

    pub(super) fn on_peer_snapshot(&mut self, (peer, image): super::PeerSnapshot) {
        match image {
            Some((zxid, state)) => {
                info!(
                    peer,
                    zxid = format_args!("0x{zxid:x}"),
                    size_bytes = state.len(),
                    "sending a snapshot to a lagging peer"
                );
                self.zab_event(Event::SnapshotReady { peer, zxid, state });
            }
            None => warn!(peer, "no snapshot on disk to send to a lagging peer"),
        }
    }

    pub(super) fn quorum_compacted(&mut self, zxid: i64) {
        self.zab_event(Event::Compacted { up_to_zxid: zxid });
    }

    // ------------------------------------------------------------------ peer messages

    pub(super) fn on_peer_message(&mut self, from: u64, msg: PeerMessage) {
        let Some(body) = msg.body else {
            debug!(peer = from, "empty peer message ignored");
            return;
        };
        match body {
            PeerBody::Zab(m) => {
                if let Some(zab_message::Body::Sync(s)) = &m.body {
                    let kind = match &s.start {
                        Some(pb::sync::Start::Diff(_)) => "diff",
                        Some(pb::sync::Start::Trunc(_)) => "truncate",
                        Some(pb::sync::Start::Snap(_)) => "snapshot",
                        None => "none",
                    };
                    info!(
                        leader = from,
                        sync = %kind,
                        entries = s.entries.len(),
                        "synchronising with leader"
                    );
                }
                self.zab_event(Event::Message { from, msg: m });
            }
            PeerBody::Forward(f) => {
                if !self.is_leader() {
                    debug!(peer = from, "forwarded request while not leading; dropped");
                    return;
                }
                let ids: Vec<Id> = f.ids.into_iter().map(|i| Id::new(i.scheme, i.id)).collect();
                let body = match Request::decode(f.op, &mut Reader::new(f.request)) {
                    Ok(req) => Ok(req),
                    Err(_) => Err(ErrorCode::MarshallingError),
                };
                match body {
                    Ok(req) => self.leader_submit(f.session_id, f.cxid, &req, &ids, f.is_super),
                    Err(e) => self.leader_propose(f.session_id, f.cxid, TxnBody::Error(e)),
                }
            }
            PeerBody::CreateSession(c) => {
                if self.is_leader() {
                    self.leader_propose(
                        c.session_id,
                        0,
                        TxnBody::CreateSession {
                            timeout_ms: c.timeout_ms,
                        },
                    );
                }
            }
            PeerBody::Touch(t) => {
                if self.is_leader() {
                    let now = self.mono_ms();
                    for sid in t.session_ids {
                        self.sessions.touch(sid, now);
                    }
                }
            }
            PeerBody::SyncRequest(s) => {
                let Some(r) = self.repl.as_mut() else { return };
                if !matches!(r.role, Role::Leading { .. }) {
                    return;
                }
                // Everything proposed so far is what the sync must make visible; the follower
                // answers once it has applied that far.
                let msg = PeerMessage {
                    body: Some(PeerBody::SyncDone(pb::SyncDone {
                        session_id: s.session_id,
                        cxid: s.cxid,
                        zxid: r.zab.last_zxid(),
                    })),
                };
                let _ = r.zab_net.send(from, msg);
            }
            PeerBody::SyncDone(d) if d.cxid == REVALIDATE_CXID => {
                for r in self.revalidating.values_mut() {
                    if r.req.session_id == d.session_id && r.until.is_none() {
                        r.until = Some(d.zxid);
                    }
                }
                self.release_revalidated();
            }
            PeerBody::SyncDone(d) => {
                if let Some(q) = self.queues.get_mut(&d.session_id) {
                    for w in q.iter_mut() {
                        if let Queued::Sync { cxid, until, .. } = w {
                            if *cxid == d.cxid && until.is_none() {
                                *until = Some(d.zxid);
                                break;
                            }
                        }
                    }
                }
                self.drain_queue(d.session_id);
            }
        }
    }

    fn is_leader(&self) -> bool {
        self.repl
            .as_ref()
            .is_some_and(|r| matches!(r.role, Role::Leading { .. }))
    }

    fn send_to_leader(&mut self, body: PeerBody) -> bool {
        let Some(r) = self.repl.as_mut() else {
            return false;
        };
        let Some(leader) = r.leader() else {
            return false;
        };
        r.zab_net
            .send(leader, PeerMessage { body: Some(body) })
            .is_ok()
    }

    // ------------------------------------------------------------------ the leader's side

    /// Prepares a client request against the tree plus pending proposals and proposes it.
    fn leader_submit(&mut self, sid: i64, cxid: i32, req: &Request, ids: &[Id], is_super: bool) {
        let Some(r) = self.repl.as_mut() else { return };
        let Some(z) = r.next_zxid() else { return };
        let ctx = RequestContext {
            session_id: sid,
            ids,
            is_super,
        };
        let body = match req {
            Request::Reconfig { .. } => Err(ErrorCode::ReconfigDisabled),
            _ => self.db.prep_pipelined(&mut r.pending, z, &ctx, req),
        };
        if let Request::CloseSession = req {
            self.sessions.mark_closing(sid);
        }
        self.leader_propose(sid, cxid, body.unwrap_or_else(TxnBody::Error));
    }

    /// Proposes one transaction (established leader only).
    fn leader_propose(&mut self, sid: i64, cxid: i32, body: TxnBody) {
        let Some(r) = self.repl.as_mut() else { return };
        let Some(expected) = r.next_zxid() else {
            return;
        };
        let txn = Txn {
            session_id: sid,
            cxid,
            zxid: expected,
            time_ms: wall_ms(),
            body,
        };
        let mut buf = BytesMut::with_capacity(128);
        encode_txn(&txn, &mut buf);
        match r.zab.propose(buf.freeze()) {
            Ok(z) if z == expected => {}
            Ok(z) => {
                // Cannot happen while next_zxid mirrors the core; stay safe if it does.
                warn!(expected = %zxid::display(expected), got = %zxid::display(z), "proposal numbered unexpectedly");
                r.pending.clear();
            }
            Err(e) => {
                warn!(error = %e, "cannot propose");
                return;
            }
        }
        self.pump();
    }

    pub(super) fn quorum_expire_session(&mut self, sid: i64) {
        if !self.is_leader() {
            return;
        }
        self.leader_submit(sid, 0, &Request::CloseSession, &[], true);
    }

    pub(super) fn quorum_delete_container(&mut self, path: String) {
        let Some(r) = self.repl.as_mut() else { return };
        let Some(z) = r.next_zxid() else { return };
        let req = Request::DeleteContainer { path };
        let ctx = RequestContext {
            session_id: 0,
            ids: &[],
            is_super: true,
        };
        // A container that gained a child (or is already being deleted) stays.
        if let Ok(body) = self.db.prep_pipelined(&mut r.pending, z, &ctx, &req) {
            self.leader_propose(0, 0, body);
        }
    }

    // ------------------------------------------------------------------ clients

    /// A handshake for a new session: its createSession goes through the leader; the client
    /// is answered when it is committed.
    pub(super) fn quorum_create_session(&mut self, sid: i64, c: Connecting) {
        let timeout_ms = c.timeout_ms;
        self.connecting.insert(sid, c);
        if self.is_leader() {
            self.leader_propose(sid, 0, TxnBody::CreateSession { timeout_ms });
        } else {
            let sent = self.send_to_leader(PeerBody::CreateSession(pb::ForwardCreateSession {
                session_id: sid,
                timeout_ms,
            }));
            if !sent {
                if let Some(c) = self.connecting.remove(&sid) {
                    let _ = c.tx.try_send(Outbound::Close);
                }
            }
        }
    }

    /// A request of an attached session, in quorum mode.
    pub(super) fn quorum_request(
        &mut self,
        conn_id: ConnId,
        sid: i64,
        xid: i32,
        req: Request,
        received_at: Instant,
    ) {
        if let Some(r) = self.repl.as_mut() {
            if !matches!(r.role, Role::Leading { .. }) {
                r.touched.insert(sid);
            }
        }
        let op = req.op_code();
        if let Request::Sync { path } = req {
            let until = self
                .repl
                .as_ref()
                .filter(|r| matches!(r.role, Role::Leading { .. }))
                .map(|r| r.zab.last_zxid());
            self.queues.entry(sid).or_default().push_back(Queued::Sync {
                conn_id,
                cxid: xid,
                path,
                until,
                received_at,
            });
            if let Some(r) = self.repl.as_mut() {
                r.sync_sessions.insert(sid);
            }
            if until.is_none() {
                self.send_to_leader(PeerBody::SyncRequest(pb::SyncRequest {
                    session_id: sid,
                    cxid: xid,
                }));
            }
            self.drain_queue(sid);
            return;
        }
        if !op.is_write() {
            match self.queues.get_mut(&sid) {
                Some(q) if !q.is_empty() => q.push_back(Queued::Local {
                    conn_id,
                    xid,
                    req,
                    received_at,
                }),
                _ => self.dispatch(conn_id, sid, xid, req, received_at),
            }
            return;
        }
        self.queues
            .entry(sid)
            .or_default()
            .push_back(Queued::Write {
                conn_id,
                cxid: xid,
                op,
                received_at,
            });
        let (ids, is_super) = self.identities(conn_id, sid);
        if self.is_leader() {
            self.leader_submit(sid, xid, &req, &ids, is_super);
            return;
        }
        let mut w = Writer::new();
        req.encode(&mut w);
        let fwd = pb::ForwardRequest {
            session_id: sid,
            cxid: xid,
            op: op.code(),
            request: w.into_inner().freeze(),
            ids: ids
                .into_iter()
                .map(|i| pb::AuthIdent {
                    scheme: i.scheme,
                    id: i.id,
                })
                .collect(),
            is_super,
        };
        if !self.send_to_leader(PeerBody::Forward(fwd)) {
            // No leader to forward to: the client will reconnect elsewhere.
            self.drop_conn(conn_id);
        }
    }

    /// Applies one committed transaction and answers whoever waits for it here.
    fn apply_committed(&mut self, zxid: i64, payload: Bytes) {
        let txn = match decode_txn(zxid, payload) {
            Ok(t) => t,
            Err(e) => {
                error!(zxid = %zxid::display(zxid), error = %e, "committed transaction does not decode; stopping");
                self.fatal = true;
                return;
            }
        };
        let outcome = self.db.apply(&txn);
        self.last_zxid = zxid;
        self.durable_zxid = zxid;
        self.txns_since_snapshot += 1;
        if let Some(r) = self.repl.as_mut() {
            r.pending.applied(zxid);
        }
        let sid = txn.session_id;
        if let TxnBody::CreateSession { timeout_ms } = txn.body {
            let now = self.mono_ms();
            self.sessions.add(sid, timeout_ms, now);
            if let Some(c) = self.connecting.remove(&sid) {
                debug!(peer = %c.peer, session = format_args!("0x{sid:x}"), timeout_ms, "session created");
                self.attach(c.conn_id, c.peer, c.tx, sid, timeout_ms, c.read_only);
            }
        }
        self.deliver_events(outcome.events);
        // The reply to the session's write, if its client is connected here.
        let front_matches = matches!(
            self.queues.get(&sid).and_then(|q| q.front()),
            Some(Queued::Write { cxid, .. }) if *cxid == txn.cxid
        );
        if front_matches {
            if let Some(Queued::Write {
                conn_id,
                cxid,
                op,
                received_at,
            }) = self.queues.get_mut(&sid).and_then(|q| q.pop_front())
            {
                let (err, resp) = response_for(op, outcome.result);
                self.reply(conn_id, cxid, zxid, err, resp, op, received_at);
            }
        }
        if let TxnBody::CloseSession = txn.body {
            let conn = self.sessions.remove(sid).and_then(|s| s.conn);
            self.db.remove_session_watches(sid);
            self.queues.remove(&sid);
            if let Some(conn_id) = conn {
                self.drop_conn(conn_id);
            }
        } else {
            self.drain_queue(sid);
        }
        self.drain_syncs();
        if !self.revalidating.is_empty() {
            self.release_revalidated();
        }
    }

    /// A reconnect naming a session this member does not know: ask the leader how far it
    /// has got, and decide once this member has applied that far.
    pub(super) fn quorum_revalidate(
        &mut self,
        conn_id: ConnId,
        peer: std::net::SocketAddr,
        req: crate::jute::ConnectRequest,
        tx: tokio::sync::mpsc::Sender<Outbound>,
    ) {
        let sid = req.session_id;
        self.revalidating.insert(
            conn_id,
            Revalidating {
                peer,
                req,
                tx,
                until: None,
            },
        );
        let sent = self.send_to_leader(PeerBody::SyncRequest(pb::SyncRequest {
            session_id: sid,
            cxid: REVALIDATE_CXID,
        }));
        if !sent {
            if let Some(r) = self.revalidating.remove(&conn_id) {
                let _ = r.tx.try_send(Outbound::Close);
            }
        }
    }

    /// Finishes the reconnects whose catch-up point is applied.
    fn release_revalidated(&mut self) {
        let last = self.last_zxid;
        let ready: Vec<ConnId> = self
            .revalidating
            .iter()
            .filter(|(_, r)| r.until.is_some_and(|u| u <= last))
            .map(|(&c, _)| c)
            .collect();
        for conn_id in ready {
            if let Some(r) = self.revalidating.remove(&conn_id) {
                self.on_connect(conn_id, r.peer, r.req, r.tx, true);
            }
        }
    }

    /// Serves what waits at the head of a session's queue, up to its next pending write.
    fn drain_queue(&mut self, sid: i64) {
        loop {
            let Some(q) = self.queues.get_mut(&sid) else {
                return;
            };
            let ready = match q.front() {
                None => {
                    self.queues.remove(&sid);
                    return;
                }
                Some(Queued::Write { .. }) => false,
                Some(Queued::Sync { until, .. }) => until.is_some_and(|u| u <= self.last_zxid),
                Some(Queued::Local { .. }) => true,
            };
            if !ready {
                return;
            }
            let Some(item) = q.pop_front() else { return };
            match item {
                Queued::Sync {
                    conn_id,
                    cxid,
                    path,
                    received_at,
                    ..
                } => self.reply(
                    conn_id,
                    cxid,
                    self.last_zxid,
                    ErrorCode::Ok,
                    Response::Sync { path },
                    OpCode::Sync,
                    received_at,
                ),
                Queued::Local {
                    conn_id,
                    xid,
                    req,
                    received_at,
                } => self.dispatch(conn_id, sid, xid, req, received_at),
                Queued::Write { .. } => return,
            }
        }
    }

    /// Syncs wait at the head of their queue until their zxid is applied; after each apply,
    /// release those now due. Only sessions whose head is a sync are looked at.
    fn drain_syncs(&mut self) {
        let Some(r) = self.repl.as_mut() else { return };
        if r.sync_sessions.is_empty() {
            return;
        }
        let last = self.last_zxid;
        let sids: Vec<i64> = r.sync_sessions.iter().copied().collect();
        for sid in sids {
            let due = matches!(
                self.queues.get(&sid).and_then(|q| q.front()),
                Some(Queued::Sync { until: Some(u), .. }) if *u <= last
            );
            if due {
                self.drain_queue(sid);
            }
        }
        let queues = &self.queues;
        if let Some(r) = self.repl.as_mut() {
            r.sync_sessions.retain(|sid| {
                queues
                    .get(sid)
                    .is_some_and(|q| q.iter().any(|w| matches!(w, Queued::Sync { .. })))
            });
        }
    }
}
