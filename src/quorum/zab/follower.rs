//! The follower's (and observer's) side of ZAB: joining a leader, accepting its epoch
//! durably, adopting its history, recording the epoch as current only once that history is
//! durable, then logging proposals in order and acknowledging what is durable.

use super::*;

impl Zab {
    pub(super) fn become_follower(
        &mut self,
        leader: PeerId,
        observer: bool,
    ) -> Result<(), ZabError> {
        if leader == self.cfg.myid || !self.cfg.voters.contains(&leader) {
            return Err(ZabError::InvalidRequest(format!(
                "cannot follow {leader}: not another voter"
            )));
        }
        if observer != self.cfg.observers.contains(&self.cfg.myid) {
            return Err(ZabError::InvalidRequest(
                "observers observe and voters follow".into(),
            ));
        }
        self.attempts += 1;
        self.state = State::Following(Follower {
            leader,
            observer,
            nonce: (self.incarnation << 32) ^ self.attempts,
            phase: Phase::Discovery,
            phase_started: self.tick,
            last_heard: self.tick,
            last_retry: self.tick,
            leader_commit: zxid::NONE,
            ping_target: zxid::NONE,
            lagging_pings: 0,
        });
        self.follower_send_info();
        Ok(())
    }

    pub(super) fn follower_send_info(&mut self) {
        let State::Following(f) = &self.state else {
            return;
        };
        self.out.push(Command::Send {
            to: f.leader,
            msg: msg(Body::FollowerInfo(pb::FollowerInfo {
                nonce: f.nonce,
                accepted_epoch: self.accepted.epoch,
                accepted_leader: self.accepted.leader,
                observer: f.observer,
            })),
        });
    }

    pub(super) fn follower_send_ack_epoch(&mut self) {
        let State::Following(f) = &self.state else {
            return;
        };
        let Phase::AwaitSync { session, epoch } = f.phase else {
            return;
        };
        self.out.push(Command::Send {
            to: f.leader,
            msg: msg(Body::AckEpoch(pb::AckEpoch {
                session,
                epoch,
                current_epoch: self.current_epoch,
                last_zxid: self.log.last(),
            })),
        });
    }

    /// The follower state, if `from` is its leader; counts as hearing from it.
    pub(super) fn follower_from_leader(&mut self, from: PeerId) -> Option<&mut Follower> {
        let now = self.tick;
        match &mut self.state {
            State::Following(f) if f.leader == from => {
                f.last_heard = now;
                Some(f)
            }
            _ => None,
        }
    }

    /// The synced session's epoch if the message belongs to it.
    pub(super) fn follower_synced(
        &mut self,
        from: PeerId,
        session: u64,
        epoch: u64,
    ) -> Option<u64> {
        let f = self.follower_from_leader(from)?;
        match f.phase {
            Phase::Synced {
                session: s,
                epoch: e,
                ..
            } if s == session && e == epoch => Some(e),
            _ => None,
        }
    }

    pub(super) fn follower_on_leader_info(
        &mut self,
        from: PeerId,
        li: pb::LeaderInfo,
    ) -> Result<(), ZabError> {
        let accepted = self.accepted;
        let now = self.tick;
        let Some(f) = self.follower_from_leader(from) else {
            return Ok(());
        };
        if f.phase != Phase::Discovery || li.nonce != f.nonce {
            return Ok(());
        }
        if li.epoch == 0 || li.epoch > zxid::MAX_EPOCH {
            return Err(protocol(from, format!("epoch {} out of range", li.epoch)));
        }
        let e = li.epoch;
        if e < accepted.epoch || (e == accepted.epoch && accepted.leader != from) {
            // Promised to someone else (or a later epoch): this leader cannot have us.
            self.step_down();
            return Ok(());
        }
        f.phase = Phase::AwaitEpochDurable {
            session: li.session,
            epoch: e,
        };
        f.phase_started = now;
        let rec = AcceptedEpoch {
            epoch: e,
            leader: from,
        };
        // Always (re)write the record and answer when it is durable: simple, and correct
        // whether or not an earlier write of the same record has completed.
        self.accepted = rec;
        self.out
            .push(Command::PersistEpoch(EpochRecord::Accepted(rec)));
        Ok(())
    }

    pub(super) fn follower_on_sync(&mut self, from: PeerId, s: pb::Sync) -> Result<(), ZabError> {
        let now = self.tick;
        let applied = self.applied;
        let Some(f) = self.follower_from_leader(from) else {
            return Ok(());
        };
        if f.phase
            != (Phase::AwaitSync {
                session: s.session,
                epoch: s.epoch,
            })
        {
            return Ok(());
        }
        let epoch = s.epoch;
        // Validate everything before changing anything.
        let Some(start) = s.start else {
            self.step_down();
            return Err(ZabError::Malformed {
                from,
                reason: "sync without a start",
            });
        };
        let point = match &start {
            Start::Diff(d) => {
                if d.after_zxid != self.log.last() {
                    self.step_down();
                    return Err(protocol(from, "diff does not start at our last zxid"));
                }
                d.after_zxid
            }
            Start::Trunc(t) => {
                let t = t.after_zxid;
                if t >= self.log.last() || t < applied || !self.log.has_point(t) {
                    self.step_down();
                    return Err(protocol(
                        from,
                        format!("cannot truncate after {}", zxid::display(t)),
                    ));
                }
                t
            }
            Start::Snap(sn) => {
                if sn.zxid < applied || sn.zxid < 0 || zxid::epoch(sn.zxid) > epoch {
                    self.step_down();
                    return Err(protocol(from, "snapshot older than our applied state"));
                }
                sn.zxid
            }
        };
        let mut prev = point;
        for e in &s.entries {
            if e.zxid <= prev || zxid::epoch(e.zxid) > epoch {
                self.step_down();
                return Err(protocol(from, "sync entries out of order"));
            }
            prev = e.zxid;
        }
        if s.commit_zxid < 0 {
            self.step_down();
            return Err(protocol(from, "negative commit zxid"));
        }
        // Now change the log.
        match start {
            Start::Diff(_) => {}
            Start::Trunc(_) => {
                self.log.truncate_after(point);
                self.dur.cut(point);
                let id = self.dur.issue(point);
                self.out.push(Command::Truncate {
                    id,
                    after_zxid: point,
                });
            }
            Start::Snap(sn) => {
                self.log.entries.clear();
                self.log.base = point;
                self.dur.cut(zxid::NONE);
                let id = self.dur.issue(point);
                self.applied = point;
                self.out.push(Command::InstallSnapshot {
                    id,
                    zxid: point,
                    state: sn.state,
                });
            }
        }
        if !s.entries.is_empty() {
            let id = self.dur.issue(prev);
            self.log.entries.extend(s.entries.iter().cloned());
            self.out.push(Command::Persist {
                id,
                entries: s.entries,
            });
        }
        let State::Following(f) = &mut self.state else {
            return Ok(());
        };
        f.phase = Phase::Synced {
            session: s.session,
            epoch,
            sync_last: self.log.last(),
            sync_write: self.dur.last_issued(),
            epoch_requested: false,
            up_to_date: false,
            acked: None,
        };
        f.phase_started = now;
        f.leader_commit = f.leader_commit.max(s.commit_zxid);
        let c = f.leader_commit;
        self.apply_up_to(c);
        self.follower_maybe_persist_current();
        self.follower_maybe_ack();
        Ok(())
    }

    /// After the synced history is durable, record the leader's epoch as current. Every
    /// write of the synchronisation must be confirmed, the truncation included: a current
    /// epoch on disk above a log that still has the cut entries would vouch for them.
    pub(super) fn follower_maybe_persist_current(&mut self) {
        let current = self.current_epoch;
        let State::Following(f) = &mut self.state else {
            return;
        };
        let Phase::Synced {
            epoch,
            sync_write,
            ref mut epoch_requested,
            ..
        } = f.phase
        else {
            return;
        };
        if *epoch_requested || !self.dur.confirmed(sync_write) {
            return;
        }
        *epoch_requested = true;
        if current != epoch {
            self.current_epoch = epoch;
            self.out
                .push(Command::PersistEpoch(EpochRecord::Current(epoch)));
        }
    }

    /// Acknowledges the durable watermark if it moved (the first one is the NEWLEADER ack).
    pub(super) fn follower_maybe_ack(&mut self) {
        self.follower_ack(false);
    }

    /// Sends an Ack of the durable watermark if the session allows one (the synced history
    /// and the current epoch are durable) and it is new or `repeat` is set. This and the
    /// leader's own count are the only readers of the watermark, which only `Persisted` raises.
    pub(super) fn follower_ack(&mut self, repeat: bool) -> bool {
        let durable = self.dur.durable();
        let current_durable = self.current_epoch_durable;
        let State::Following(f) = &mut self.state else {
            return false;
        };
        let Phase::Synced {
            session,
            epoch,
            sync_last,
            ref mut acked,
            ..
        } = f.phase
        else {
            return false;
        };
        let news = acked.is_none_or(|a| durable > a);
        if current_durable != epoch || durable < sync_last || !(news || repeat) {
            return false;
        }
        *acked = Some(durable);
        self.out.push(Command::Send {
            to: f.leader,
            msg: msg(Body::Ack(pb::Ack {
                session,
                epoch,
                zxid: durable,
            })),
        });
        true
    }

    pub(super) fn follower_apply(&mut self) {
        if let State::Following(f) = &self.state {
            let c = f.leader_commit;
            self.apply_up_to(c);
        }
    }

    pub(super) fn follower_on_proposal(
        &mut self,
        from: PeerId,
        p: pb::Proposal,
    ) -> Result<(), ZabError> {
        let Some(epoch) = self.follower_synced(from, p.session, p.epoch) else {
            return Ok(());
        };
        let Some(entry) = p.entry else {
            return Err(ZabError::Malformed {
                from,
                reason: "proposal without entry",
            });
        };
        if matches!(&self.state, State::Following(f) if f.observer) {
            return Err(protocol(from, "proposal sent to an observer"));
        }
        self.follower_append(entry, epoch);
        Ok(())
    }

    /// Appends the next entry of the leader's stream; anything else is a duplicate (ignored)
    /// or a gap (a lost message: give up this session).
    pub(super) fn follower_append(&mut self, entry: Entry, epoch: u64) {
        let last = self.log.last();
        if entry.zxid <= last {
            return;
        }
        if Some(entry.zxid) != next_zxid(last, epoch) {
            self.step_down();
            return;
        }
        let id = self.dur.issue(entry.zxid);
        self.log.entries.push(entry.clone());
        self.out.push(Command::Persist {
            id,
            entries: vec![entry],
        });
    }

    pub(super) fn follower_on_commit(
        &mut self,
        from: PeerId,
        session: u64,
        epoch: u64,
        z: i64,
    ) -> Result<(), ZabError> {
        if self.follower_synced(from, session, epoch).is_none() {
            return Ok(());
        }
        if let State::Following(f) = &mut self.state {
            f.leader_commit = f.leader_commit.max(z);
        }
        self.follower_apply();
        Ok(())
    }

    pub(super) fn follower_on_inform(
        &mut self,
        from: PeerId,
        i: pb::Inform,
    ) -> Result<(), ZabError> {
        let Some(epoch) = self.follower_synced(from, i.session, i.epoch) else {
            return Ok(());
        };
        let Some(entry) = i.entry else {
            return Err(ZabError::Malformed {
                from,
                reason: "inform without entry",
            });
        };
        if !matches!(&self.state, State::Following(f) if f.observer) {
            return Err(protocol(from, "inform sent to a voter"));
        }
        let z = entry.zxid;
        self.follower_append(entry, epoch);
        if let State::Following(f) = &mut self.state {
            if self.log.last() >= z {
                f.leader_commit = f.leader_commit.max(z);
            }
        }
        self.follower_apply();
        Ok(())
    }

    pub(super) fn follower_on_ping(&mut self, from: PeerId, p: pb::Ping) -> Result<(), ZabError> {
        if self.follower_synced(from, p.session, p.epoch).is_none() {
            return Ok(());
        }
        let last = self.log.last();
        let mut lost = false;
        if let State::Following(f) = &mut self.state {
            f.leader_commit = f.leader_commit.max(p.commit_zxid);
            // Still short of what the leader had a ping ago: a message was lost.
            if last < f.ping_target {
                f.lagging_pings += 1;
                lost = f.lagging_pings >= LAGGING_PINGS;
            } else {
                f.lagging_pings = 0;
            }
            f.ping_target = p.last_zxid;
        }
        if lost {
            self.step_down();
            return Ok(());
        }
        if p.up_to_date {
            self.follower_serve();
        }
        self.follower_apply();
        // Answer with the durable watermark if it may be acknowledged, else just "alive".
        if !self.follower_ack(true) {
            if let State::Following(f) = &self.state {
                self.out.push(Command::Send {
                    to: f.leader,
                    msg: msg(Body::Pong(pb::Pong {
                        session: p.session,
                        epoch: p.epoch,
                    })),
                });
            }
        }
        Ok(())
    }

    pub(super) fn follower_on_up_to_date(
        &mut self,
        from: PeerId,
        u: pb::UpToDate,
    ) -> Result<(), ZabError> {
        if self.follower_synced(from, u.session, u.epoch).is_none() {
            return Ok(());
        }
        if let State::Following(f) = &mut self.state {
            f.leader_commit = f.leader_commit.max(u.commit_zxid);
        }
        self.follower_serve();
        self.follower_apply();
        Ok(())
    }

    /// The leader is established and counts this member: start serving.
    pub(super) fn follower_serve(&mut self) {
        let mut changed = None;
        if let State::Following(f) = &mut self.state {
            if let Phase::Synced {
                epoch,
                ref mut up_to_date,
                ..
            } = f.phase
            {
                if !*up_to_date {
                    *up_to_date = true;
                    changed = Some(if f.observer {
                        Role::Observing {
                            leader: f.leader,
                            epoch,
                        }
                    } else {
                        Role::Following {
                            leader: f.leader,
                            epoch,
                        }
                    });
                }
            }
        }
        if let Some(r) = changed {
            self.out.push(Command::RoleChanged(r));
        }
    }
}
