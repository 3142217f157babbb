//! The leader's side of ZAB: discovery (choosing and owning an epoch), synchronising each
//! follower (diff, truncation or snapshot, then NEWLEADER), establishment, and broadcast
//! (numbering proposals, counting cumulative acknowledgements, committing, informing
//! observers).

use super::*;

impl Zab {
    pub(super) fn become_leader(&mut self, epoch_hint: u64) -> Result<(), ZabError> {
        if !self.cfg.voters.contains(&self.cfg.myid) {
            return Err(ZabError::InvalidRequest("an observer cannot lead".into()));
        }
        let mut infos = BTreeMap::new();
        infos.insert(self.cfg.myid, self.accepted.epoch);
        self.state = State::Leading(Box::new(Leader {
            started: self.tick,
            epoch_hint,
            infos,
            epoch: None,
            epoch_durable: false,
            initial_epoch: self.current_epoch,
            initial_last: self.log.last(),
            initial_write: self.dur.last_issued(),
            discovered: false,
            current_requested: false,
            established: false,
            next_session: 1,
            peers: BTreeMap::new(),
        }));
        self.leader_maybe_choose_epoch()
    }

    pub(super) fn leader_maybe_choose_epoch(&mut self) -> Result<(), ZabError> {
        let State::Leading(l) = &mut self.state else {
            return Ok(());
        };
        if l.epoch.is_some() || l.infos.len() < self.cfg.quorum() {
            return Ok(());
        }
        let max = l.infos.values().copied().max().unwrap_or(0);
        let epoch = (max + 1).max(l.epoch_hint);
        if epoch > zxid::MAX_EPOCH {
            self.step_down();
            return Err(ZabError::EpochExhausted(epoch));
        }
        l.epoch = Some(epoch);
        self.accepted = AcceptedEpoch {
            epoch,
            leader: self.cfg.myid,
        };
        self.out
            .push(Command::PersistEpoch(EpochRecord::Accepted(self.accepted)));
        Ok(())
    }

    /// Sends LeaderInfo to every peer waiting for it (once the epoch is durable).
    pub(super) fn leader_send_infos(&mut self) {
        let State::Leading(l) = &mut self.state else {
            return;
        };
        let Some(epoch) = l.epoch.filter(|_| l.epoch_durable) else {
            return;
        };
        for (&to, p) in &mut l.peers {
            if p.stage == Stage::Info {
                p.stage = Stage::EpochSent;
                self.out.push(Command::Send {
                    to,
                    msg: msg(Body::LeaderInfo(pb::LeaderInfo {
                        nonce: p.nonce,
                        session: p.session,
                        epoch,
                    })),
                });
            }
        }
    }

    pub(super) fn leader_on_follower_info(
        &mut self,
        from: PeerId,
        fi: pb::FollowerInfo,
    ) -> Result<(), ZabError> {
        let observer = self.cfg.observers.contains(&from);
        if fi.observer != observer {
            return Err(protocol(
                from,
                "observer flag does not match the configuration",
            ));
        }
        let now = self.tick;
        let myid = self.cfg.myid;
        let State::Leading(l) = &mut self.state else {
            return Ok(());
        };
        if let Some(e) = l.epoch {
            if fi.accepted_epoch > e || (fi.accepted_epoch == e && fi.accepted_leader != myid) {
                // It promised a later epoch (or this one to a rival) and can never join this
                // one: make room for an election that picks an epoch above its promise.
                self.step_down();
                return Ok(());
            }
        }
        if let Some(p) = l.peers.get_mut(&from) {
            if p.nonce == fi.nonce {
                // A retransmission: repeat LeaderInfo if it may have been lost.
                p.last_heard = now;
                if p.stage == Stage::EpochSent {
                    p.stage = Stage::Info;
                    self.leader_send_infos();
                }
                return Ok(());
            }
        }
        let session = l.next_session;
        l.next_session += 1;
        l.peers.insert(
            from,
            Peer {
                nonce: fi.nonce,
                session,
                observer,
                stage: Stage::Info,
                their_last: zxid::NONE,
                acked: zxid::NONE,
                nl_acked: false,
                last_heard: now,
            },
        );
        if !observer {
            l.infos.insert(from, fi.accepted_epoch);
        }
        self.leader_maybe_choose_epoch()?;
        self.leader_send_infos();
        Ok(())
    }

    /// Looks up the peer of a session message; `None` if it is stale or not in a session.
    pub(super) fn leader_session_peer(
        &mut self,
        from: PeerId,
        session: u64,
        epoch: u64,
    ) -> Option<&mut Peer> {
        let now = self.tick;
        let State::Leading(l) = &mut self.state else {
            return None;
        };
        if l.epoch != Some(epoch) {
            return None;
        }
        let p = l.peers.get_mut(&from)?;
        if p.session != session || p.stage == Stage::Refused {
            return None;
        }
        p.last_heard = now;
        Some(p)
    }

    pub(super) fn leader_on_ack_epoch(
        &mut self,
        from: PeerId,
        a: pb::AckEpoch,
    ) -> Result<(), ZabError> {
        if a.last_zxid < 0 {
            return Err(protocol(from, "negative last zxid"));
        }
        let (established, mine) = match &self.state {
            State::Leading(l) => (l.established, (l.initial_epoch, l.initial_last)),
            _ => return Ok(()),
        };
        let Some(p) = self.leader_session_peer(from, a.session, a.epoch) else {
            return Ok(());
        };
        match p.stage {
            Stage::EpochSent => {}
            // A retransmitted AckEpoch: the Sync may have been lost; send a fresh one.
            Stage::Synced { .. } if !p.nl_acked && p.their_last == a.last_zxid => {}
            _ => return Ok(()),
        }
        if !p.observer && !established && (a.current_epoch, a.last_zxid) > mine {
            // Zab 1.0: the leader's history must be the most up-to-date of its quorum.
            p.stage = Stage::Refused;
            return Ok(());
        }
        p.their_last = a.last_zxid;
        let resync = p.stage != Stage::EpochSent;
        p.stage = Stage::EpochAcked;
        if resync {
            self.leader_start_sync(from);
        } else {
            self.leader_maybe_discovered();
        }
        Ok(())
    }

    /// Synchronises every peer that acknowledged the epoch, once a quorum has. Not before:
    /// NEWLEADER makes followers adopt this leader's history as that of the epoch, which is
    /// only safe once it is known to be the most up-to-date history of a quorum.
    pub(super) fn leader_maybe_discovered(&mut self) {
        let State::Leading(l) = &mut self.state else {
            return;
        };
        if !l.discovered {
            let acked = 1 + l
                .peers
                .values()
                .filter(|p| {
                    !p.observer
                        && matches!(
                            p.stage,
                            Stage::EpochAcked | Stage::AwaitSnapshot | Stage::Synced { .. }
                        )
                })
                .count();
            if !l.epoch_durable || acked < self.cfg.quorum() {
                return;
            }
            l.discovered = true;
        }
        let waiting: Vec<PeerId> = l
            .peers
            .iter()
            .filter(|(_, p)| p.stage == Stage::EpochAcked)
            .map(|(&id, _)| id)
            .collect();
        for peer in waiting {
            self.leader_start_sync(peer);
        }
        self.leader_maybe_persist_current();
    }

    pub(super) fn leader_start_sync(&mut self, peer: PeerId) {
        let State::Leading(l) = &mut self.state else {
            return;
        };
        let Some(epoch) = l.epoch else { return };
        let Some(p) = l.peers.get_mut(&peer) else {
            return;
        };
        let f = p.their_last;
        if f < self.log.base {
            p.stage = Stage::AwaitSnapshot;
            self.out.push(Command::TakeSnapshotForPeer { peer });
            return;
        }
        let point = self.log.floor(f);
        let start = if point == f {
            Start::Diff(pb::Diff { after_zxid: f })
        } else {
            Start::Trunc(pb::Trunc { after_zxid: point })
        };
        p.stage = Stage::Synced {
            sync_last: self.log.last(),
        };
        let sync = pb::Sync {
            session: p.session,
            epoch,
            start: Some(start),
            entries: self.log.after(point).to_vec(),
            commit_zxid: self.applied,
        };
        self.out.push(Command::Send {
            to: peer,
            msg: msg(Body::Sync(sync)),
        });
    }

    pub(super) fn on_snapshot_ready(
        &mut self,
        peer: PeerId,
        z: i64,
        state: Bytes,
    ) -> Result<(), ZabError> {
        let applied = self.applied;
        let State::Leading(l) = &mut self.state else {
            return Ok(());
        };
        let Some(epoch) = l.epoch else { return Ok(()) };
        let Some(p) = l.peers.get_mut(&peer) else {
            return Ok(());
        };
        if p.stage != Stage::AwaitSnapshot {
            return Ok(()); // no longer wanted
        }
        if z > applied {
            return Err(ZabError::InvalidRequest(format!(
                "snapshot at {} is beyond the applied {}",
                zxid::display(z),
                zxid::display(applied)
            )));
        }
        if z < self.log.base {
            // The log moved past this snapshot meanwhile; ask for a newer one.
            self.out.push(Command::TakeSnapshotForPeer { peer });
            return Ok(());
        }
        p.stage = Stage::Synced {
            sync_last: self.log.last(),
        };
        let sync = pb::Sync {
            session: p.session,
            epoch,
            start: Some(Start::Snap(pb::Snap { zxid: z, state })),
            entries: self.log.after(z).to_vec(),
            commit_zxid: self.applied,
        };
        self.out.push(Command::Send {
            to: peer,
            msg: msg(Body::Sync(sync)),
        });
        Ok(())
    }

    pub(super) fn leader_on_ack(&mut self, from: PeerId, a: pb::Ack) -> Result<(), ZabError> {
        let last = self.log.last();
        let established = matches!(&self.state, State::Leading(l) if l.established);
        let applied = self.applied;
        let Some(p) = self.leader_session_peer(from, a.session, a.epoch) else {
            return Ok(());
        };
        let Stage::Synced { sync_last } = p.stage else {
            return Ok(());
        };
        if a.zxid > last {
            return Err(protocol(from, "acknowledged a zxid the leader never sent"));
        }
        p.acked = p.acked.max(a.zxid);
        let mut up_to_date = None;
        if !p.nl_acked && p.acked >= sync_last {
            p.nl_acked = true;
            if established {
                up_to_date = Some((p.session, a.epoch));
            }
        }
        if let Some((session, epoch)) = up_to_date {
            self.out.push(Command::Send {
                to: from,
                msg: msg(Body::UpToDate(pb::UpToDate {
                    session,
                    epoch,
                    commit_zxid: applied,
                })),
            });
        }
        self.leader_maybe_establish();
        self.leader_maybe_commit();
        Ok(())
    }

    /// The leader's own NEWLEADER: once its epoch is accepted durably and its initial history
    /// is durable, it records the epoch as current.
    pub(super) fn leader_maybe_persist_current(&mut self) {
        let State::Leading(l) = &mut self.state else {
            return;
        };
        let Some(epoch) = l.epoch else { return };
        if !l.discovered || l.current_requested || !self.dur.confirmed(l.initial_write) {
            return;
        }
        l.current_requested = true;
        self.current_epoch = epoch;
        self.out
            .push(Command::PersistEpoch(EpochRecord::Current(epoch)));
    }

    pub(super) fn leader_maybe_establish(&mut self) {
        let State::Leading(l) = &mut self.state else {
            return;
        };
        let Some(epoch) = l.epoch else { return };
        if l.established || !l.epoch_durable || self.current_epoch_durable != epoch {
            return;
        }
        let acks = 1 + l
            .peers
            .values()
            .filter(|p| !p.observer && p.nl_acked)
            .count();
        if acks < self.cfg.quorum() {
            return;
        }
        l.established = true;
        let initial_last = l.initial_last;
        self.out.push(Command::RoleChanged(Role::Leading { epoch }));
        self.leader_commit_to(initial_last);
        let State::Leading(l) = &self.state else {
            return;
        };
        for (&to, p) in &l.peers {
            if p.nl_acked {
                self.out.push(Command::Send {
                    to,
                    msg: msg(Body::UpToDate(pb::UpToDate {
                        session: p.session,
                        epoch,
                        commit_zxid: self.applied,
                    })),
                });
            }
        }
    }

    pub(super) fn leader_maybe_commit(&mut self) {
        let State::Leading(l) = &self.state else {
            return;
        };
        let Some(epoch) = l.epoch.filter(|_| l.established) else {
            return;
        };
        let mut acks: Vec<i64> = l
            .peers
            .iter()
            .filter(|(id, p)| self.cfg.voters.contains(id) && !p.observer && p.nl_acked)
            .map(|(_, p)| p.acked)
            .collect();
        if self.current_epoch_durable == epoch {
            acks.push(self.dur.durable());
        }
        let q = self.cfg.quorum();
        if acks.len() < q {
            return;
        }
        acks.sort_unstable_by(|a, b| b.cmp(a));
        let c = acks[q - 1];
        if c > self.applied {
            self.leader_commit_to(c);
        }
    }

    pub(super) fn leader_commit_to(&mut self, c: i64) {
        let from = self.applied;
        self.apply_up_to(c);
        if self.applied == from {
            return;
        }
        let State::Leading(l) = &self.state else {
            return;
        };
        let Some(epoch) = l.epoch else { return };
        // Only observers are sent the entries themselves.
        let newly: Vec<Entry> = if l.peers.values().any(|p| p.observer) {
            self.log
                .after(from)
                .iter()
                .take_while(|e| e.zxid <= self.applied)
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        for (&to, p) in &l.peers {
            if !matches!(p.stage, Stage::Synced { .. }) {
                continue;
            }
            if p.observer {
                for e in &newly {
                    self.out.push(Command::Send {
                        to,
                        msg: msg(Body::Inform(pb::Inform {
                            session: p.session,
                            epoch,
                            entry: Some(e.clone()),
                        })),
                    });
                }
            } else {
                self.out.push(Command::Send {
                    to,
                    msg: msg(Body::Commit(pb::Commit {
                        session: p.session,
                        epoch,
                        zxid: self.applied,
                    })),
                });
            }
        }
    }
}
