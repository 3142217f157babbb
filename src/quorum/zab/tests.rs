//! Engine tests: given this state and this event, these are the commands.
//!
//! Named after the protocol phase they check (discovery, synchronisation, broadcast) and the
//! rule that makes ZAB safe in each.

use super::*;

fn cfg(myid: PeerId, voters: &[PeerId], observers: &[PeerId]) -> Config {
    Config {
        myid,
        voters: voters.iter().copied().collect(),
        observers: observers.iter().copied().collect(),
        init_limit_ticks: 10,
        sync_limit_ticks: 5,
        ping_interval_ticks: 2,
        retry_interval_ticks: 2,
    }
}

fn z(epoch: u64, counter: u64) -> i64 {
    zxid::make(epoch, counter)
}

fn entry(epoch: u64, counter: u64) -> Entry {
    Entry {
        zxid: z(epoch, counter),
        payload: Bytes::from(format!("t{epoch}.{counter}")),
    }
}

fn disk(accepted: (u64, PeerId), current: u64, log: Vec<Entry>) -> PersistentState {
    PersistentState {
        accepted: AcceptedEpoch {
            epoch: accepted.0,
            leader: accepted.1,
        },
        current_epoch: current,
        snapshot_zxid: 0,
        log,
    }
}

fn member(c: Config, state: PersistentState) -> Zab {
    Zab::new(c, state, 7).expect("valid member")
}

/// Steps one event and returns the commands it produced.
fn run(zab: &mut Zab, ev: Event) -> Vec<Command> {
    zab.step(ev).expect("event accepted");
    zab.take_commands()
}

fn from(peer: PeerId, body: Body) -> Event {
    Event::Message {
        from: peer,
        msg: msg(body),
    }
}

fn send(to: PeerId, body: Body) -> Command {
    Command::Send { to, msg: msg(body) }
}

fn info(nonce: u64, accepted: u64, leader: PeerId) -> Body {
    Body::FollowerInfo(pb::FollowerInfo {
        nonce,
        accepted_epoch: accepted,
        observer: false,
        accepted_leader: leader,
    })
}

fn ack_epoch(session: u64, epoch: u64, current: u64, last: i64) -> Body {
    Body::AckEpoch(pb::AckEpoch {
        session,
        epoch,
        current_epoch: current,
        last_zxid: last,
    })
}

fn ack(session: u64, epoch: u64, zxid: i64) -> Body {
    Body::Ack(pb::Ack {
        session,
        epoch,
        zxid,
    })
}

/// The follower's first message after BecomeFollower, to read its nonce.
fn nonce_of(cmds: &[Command]) -> u64 {
    match cmds {
        [Command::Send {
            msg: ZabMessage {
                body: Some(Body::FollowerInfo(fi)),
            },
            ..
        }] => fi.nonce,
        other => panic!("expected one FollowerInfo, got {other:?}"),
    }
}

/// Member 2 of {1,2,3}, following 1 in `epoch`, synchronised with a Diff on `log`, the epoch
/// durable and NEWLEADER acknowledged. Returns the member and its session.
fn synced_follower(epoch: u64, log: Vec<Entry>) -> Zab {
    let last = log.last().map_or(0, |e| e.zxid);
    let mut f = member(
        cfg(2, &[1, 2, 3], &[]),
        disk((epoch - 1, 1), epoch - 1, log),
    );
    let nonce = nonce_of(&run(&mut f, Event::BecomeFollower { leader: 1 }));
    let li = Body::LeaderInfo(pb::LeaderInfo {
        nonce,
        session: 4,
        epoch,
    });
    run(&mut f, from(1, li));
    let rec = AcceptedEpoch { epoch, leader: 1 };
    run(&mut f, Event::EpochPersisted(EpochRecord::Accepted(rec)));
    let sync = Body::Sync(pb::Sync {
        session: 4,
        epoch,
        start: Some(Start::Diff(pb::Diff { after_zxid: last })),
        entries: vec![],
        commit_zxid: 0,
    });
    assert_eq!(
        run(&mut f, from(1, sync)),
        vec![Command::PersistEpoch(EpochRecord::Current(epoch))]
    );
    assert_eq!(
        run(&mut f, Event::EpochPersisted(EpochRecord::Current(epoch))),
        vec![send(1, ack(4, epoch, last))]
    );
    f
}

#[test]
fn discovery_leader_picks_an_epoch_above_a_quorums_accepted_epochs() {
    let mut l = member(cfg(1, &[1, 2, 3], &[]), disk((3, 1), 3, vec![]));
    // Alone it is no quorum: nothing yet.
    assert_eq!(
        run(&mut l, Event::BecomeLeader { epoch_hint: None }),
        vec![]
    );
    let rec = AcceptedEpoch {
        epoch: 6,
        leader: 1,
    };
    assert_eq!(
        run(&mut l, from(2, info(9, 5, 3))),
        vec![Command::PersistEpoch(EpochRecord::Accepted(rec))]
    );
    // LeaderInfo only once the epoch is durable.
    assert_eq!(
        run(&mut l, Event::EpochPersisted(EpochRecord::Accepted(rec))),
        vec![send(
            2,
            Body::LeaderInfo(pb::LeaderInfo {
                nonce: 9,
                session: 1,
                epoch: 6
            })
        )]
    );
}

#[test]
fn discovery_follower_makes_the_epoch_durable_before_acknowledging_it() {
    let log = vec![entry(1, 1), entry(1, 2)];
    let mut f = member(cfg(2, &[1, 2, 3], &[]), disk((1, 1), 1, log));
    let nonce = nonce_of(&run(&mut f, Event::BecomeFollower { leader: 3 }));
    let li = Body::LeaderInfo(pb::LeaderInfo {
        nonce,
        session: 2,
        epoch: 4,
    });
    let rec = AcceptedEpoch {
        epoch: 4,
        leader: 3,
    };
    assert_eq!(
        run(&mut f, from(3, li)),
        vec![Command::PersistEpoch(EpochRecord::Accepted(rec))]
    );
    assert_eq!(
        run(&mut f, Event::EpochPersisted(EpochRecord::Accepted(rec))),
        vec![send(3, ack_epoch(2, 4, 1, z(1, 2)))]
    );
}

#[test]
fn discovery_follower_refuses_an_epoch_it_promised_to_a_rival() {
    let mut f = member(cfg(2, &[1, 2, 3], &[]), disk((6, 3), 5, vec![]));
    let nonce = nonce_of(&run(&mut f, Event::BecomeFollower { leader: 1 }));
    let li = Body::LeaderInfo(pb::LeaderInfo {
        nonce,
        session: 1,
        epoch: 6,
    });
    assert_eq!(
        run(&mut f, from(1, li)),
        vec![Command::RoleChanged(Role::Looking)]
    );
    assert_eq!(f.accepted_epoch().leader, 3);
}

#[test]
fn discovery_leader_steps_aside_for_a_follower_that_cannot_join() {
    let mut l = member(cfg(1, &[1, 2, 3], &[]), disk((3, 1), 3, vec![]));
    run(&mut l, Event::BecomeLeader { epoch_hint: None });
    run(&mut l, from(2, info(1, 3, 1))); // epoch 4 chosen
                                         // Member 3 promised epoch 4 to someone else: only a new election can include it.
    assert_eq!(
        run(&mut l, from(3, info(1, 4, 2))),
        vec![Command::RoleChanged(Role::Looking)]
    );
}

/// Leader 1 of {1,2,3} (+ observer 4 if `observer`) with `log`, discovery done with member 2.
fn discovered_leader(log: Vec<Entry>, peer_last: i64, observer: bool) -> Zab {
    let obs: &[PeerId] = if observer { &[4] } else { &[] };
    let mut l = member(cfg(1, &[1, 2, 3], obs), disk((1, 1), 1, log));
    run(&mut l, Event::BecomeLeader { epoch_hint: None });
    run(&mut l, from(2, info(1, 1, 1)));
    let rec = AcceptedEpoch {
        epoch: 2,
        leader: 1,
    };
    run(&mut l, Event::EpochPersisted(EpochRecord::Accepted(rec)));
    let cmds = run(&mut l, from(2, ack_epoch(1, 2, 1, peer_last)));
    assert!(
        cmds.contains(&Command::PersistEpoch(EpochRecord::Current(2))),
        "{cmds:?}"
    );
    l
}

#[test]
fn sync_leader_refuses_a_follower_ahead_of_it() {
    let mut l = member(cfg(1, &[1, 2, 3], &[]), disk((1, 1), 1, vec![entry(1, 1)]));
    run(&mut l, Event::BecomeLeader { epoch_hint: None });
    run(&mut l, from(2, info(1, 1, 1)));
    let rec = AcceptedEpoch {
        epoch: 2,
        leader: 1,
    };
    run(&mut l, Event::EpochPersisted(EpochRecord::Accepted(rec)));
    // Member 2 has a longer history of the same epoch: no Sync, and no discovery quorum.
    assert_eq!(run(&mut l, from(2, ack_epoch(1, 2, 1, z(1, 2)))), vec![]);
    assert!(l.propose(Bytes::from_static(b"x")).is_err());
}

#[test]
fn sync_diff_trunc_or_snapshot_depending_on_the_followers_history() {
    let log = vec![entry(1, 1), entry(1, 2), entry(1, 3)];
    // Behind: the missing entries.
    let mut l = member(cfg(1, &[1, 2, 3], &[]), disk((1, 1), 1, log.clone()));
    run(&mut l, Event::BecomeLeader { epoch_hint: None });
    run(&mut l, from(2, info(1, 1, 1)));
    let rec = AcceptedEpoch {
        epoch: 2,
        leader: 1,
    };
    run(&mut l, Event::EpochPersisted(EpochRecord::Accepted(rec)));
    let cmds = run(&mut l, from(2, ack_epoch(1, 2, 1, z(1, 1))));
    let expected = send(
        2,
        Body::Sync(pb::Sync {
            session: 1,
            epoch: 2,
            start: Some(Start::Diff(pb::Diff {
                after_zxid: z(1, 1),
            })),
            entries: log[1..].to_vec(),
            commit_zxid: 0,
        }),
    );
    assert_eq!(cmds[0], expected);
    // Diverged (an entry of epoch 1 the leader never had, counter 5): cut at the leader's
    // greatest zxid below it. Member 3 joins after discovery and is synchronised at once.
    let c3 = run(&mut l, from(3, info(1, 1, 1)));
    assert_eq!(c3.len(), 1, "{c3:?}");
    let cmds = run(&mut l, from(3, ack_epoch(2, 2, 0, z(0, 5))));
    assert_eq!(
        cmds,
        vec![send(
            3,
            Body::Sync(pb::Sync {
                session: 2,
                epoch: 2,
                start: Some(Start::Trunc(pb::Trunc { after_zxid: 0 })),
                entries: log.clone(),
                commit_zxid: 0,
            })
        )]
    );
}

#[test]
fn sync_snapshot_when_the_follower_is_behind_the_retained_log() {
    let log = [entry(1, 1), entry(1, 2), entry(1, 3)];
    // It applied up to 1.2, took a snapshot there and forgot the log before it.
    let mut st = disk((1, 1), 1, log[2..].to_vec());
    st.snapshot_zxid = z(1, 2);
    let mut l = member(cfg(1, &[1, 2, 3], &[]), st);
    run(&mut l, Event::BecomeLeader { epoch_hint: None });
    run(&mut l, from(2, info(1, 1, 1)));
    let rec = AcceptedEpoch {
        epoch: 2,
        leader: 1,
    };
    run(&mut l, Event::EpochPersisted(EpochRecord::Accepted(rec)));
    let cmds = run(&mut l, from(2, ack_epoch(1, 2, 1, z(1, 1))));
    assert_eq!(cmds[0], Command::TakeSnapshotForPeer { peer: 2 });
    let state = Bytes::from_static(b"state@1.2");
    let cmds = run(
        &mut l,
        Event::SnapshotReady {
            peer: 2,
            zxid: z(1, 2),
            state: state.clone(),
        },
    );
    assert_eq!(
        cmds,
        vec![send(
            2,
            Body::Sync(pb::Sync {
                session: 1,
                epoch: 2,
                start: Some(Start::Snap(pb::Snap {
                    zxid: z(1, 2),
                    state
                })),
                entries: log[2..].to_vec(),
                commit_zxid: z(1, 2),
            })
        )]
    );
}

#[test]
fn sync_follower_truncates_and_records_the_epoch_only_once_the_log_is_durable() {
    let mut f = member(
        cfg(2, &[1, 2, 3], &[]),
        disk((1, 1), 1, vec![entry(1, 1), entry(1, 2), entry(1, 3)]),
    );
    let nonce = nonce_of(&run(&mut f, Event::BecomeFollower { leader: 1 }));
    let li = Body::LeaderInfo(pb::LeaderInfo {
        nonce,
        session: 3,
        epoch: 3,
    });
    run(&mut f, from(1, li));
    let rec = AcceptedEpoch {
        epoch: 3,
        leader: 1,
    };
    run(&mut f, Event::EpochPersisted(EpochRecord::Accepted(rec)));
    let sync = Body::Sync(pb::Sync {
        session: 3,
        epoch: 3,
        start: Some(Start::Trunc(pb::Trunc {
            after_zxid: z(1, 1),
        })),
        entries: vec![entry(2, 1)],
        commit_zxid: z(1, 1),
    });
    assert_eq!(
        run(&mut f, from(1, sync)),
        vec![
            Command::Truncate {
                id: WriteId(1),
                after_zxid: z(1, 1)
            },
            Command::Persist {
                id: WriteId(2),
                entries: vec![entry(2, 1)]
            },
            Command::Apply {
                zxid: z(1, 1),
                payload: entry(1, 1).payload
            },
        ]
    );
    // The truncation alone being durable is not enough.
    assert_eq!(run(&mut f, Event::Persisted { up_to: WriteId(1) }), vec![]);
    assert_eq!(
        run(&mut f, Event::Persisted { up_to: WriteId(2) }),
        vec![Command::PersistEpoch(EpochRecord::Current(3))]
    );
    assert_eq!(
        run(&mut f, Event::EpochPersisted(EpochRecord::Current(3))),
        vec![send(1, ack(3, 3, z(2, 1)))]
    );
}

#[test]
fn sync_follower_refuses_to_truncate_what_it_applied() {
    let mut f = member(
        cfg(2, &[1, 2, 3], &[]),
        disk((1, 1), 1, vec![entry(1, 1), entry(1, 2)]),
    );
    let nonce = nonce_of(&run(&mut f, Event::BecomeFollower { leader: 1 }));
    let li = Body::LeaderInfo(pb::LeaderInfo {
        nonce,
        session: 1,
        epoch: 2,
    });
    run(&mut f, from(1, li));
    let rec = AcceptedEpoch {
        epoch: 2,
        leader: 1,
    };
    run(&mut f, Event::EpochPersisted(EpochRecord::Accepted(rec)));
    // Cutting after 0x1:7, which it does not have, is refused.
    let sync = Body::Sync(pb::Sync {
        session: 1,
        epoch: 2,
        start: Some(Start::Trunc(pb::Trunc {
            after_zxid: z(1, 7),
        })),
        entries: vec![],
        commit_zxid: 0,
    });
    assert!(matches!(
        f.step(from(1, sync)),
        Err(ZabError::Protocol { from: 1, .. })
    ));
    assert_eq!(f.take_commands(), vec![Command::RoleChanged(Role::Looking)]);
}

#[test]
fn broadcast_follower_acknowledges_only_what_is_durable() {
    let mut f = synced_follower(2, vec![entry(1, 1)]);
    let p = Body::Proposal(pb::Proposal {
        session: 4,
        epoch: 2,
        entry: Some(entry(2, 1)),
    });
    // Logged, not acknowledged.
    assert_eq!(
        run(&mut f, from(1, p)),
        vec![Command::Persist {
            id: WriteId(1),
            entries: vec![entry(2, 1)]
        }]
    );
    assert_eq!(
        run(&mut f, Event::Persisted { up_to: WriteId(1) }),
        vec![send(1, ack(4, 2, z(2, 1)))]
    );
    // Committed: applied, with everything before it.
    let c = Body::Commit(pb::Commit {
        session: 4,
        epoch: 2,
        zxid: z(2, 1),
    });
    assert_eq!(
        run(&mut f, from(1, c)),
        vec![
            Command::Apply {
                zxid: z(1, 1),
                payload: entry(1, 1).payload
            },
            Command::Apply {
                zxid: z(2, 1),
                payload: entry(2, 1).payload
            }
        ]
    );
}

#[test]
fn broadcast_follower_drops_other_sessions_and_gives_up_on_a_gap() {
    let mut f = synced_follower(2, vec![]);
    // Another session: ignored.
    let stale = Body::Proposal(pb::Proposal {
        session: 3,
        epoch: 2,
        entry: Some(entry(2, 1)),
    });
    assert_eq!(run(&mut f, from(1, stale)), vec![]);
    // 2.2 before 2.1: a message was lost; resynchronise.
    let gap = Body::Proposal(pb::Proposal {
        session: 4,
        epoch: 2,
        entry: Some(entry(2, 2)),
    });
    assert_eq!(
        run(&mut f, from(1, gap)),
        vec![Command::RoleChanged(Role::Looking)]
    );
}

#[test]
fn broadcast_leader_commits_on_a_quorum_and_informs_observers() {
    let mut l = discovered_leader(vec![entry(1, 1)], z(1, 1), true);
    // Observer 4 joins.
    let fi = Body::FollowerInfo(pb::FollowerInfo {
        nonce: 5,
        accepted_epoch: 1,
        observer: true,
        accepted_leader: 1,
    });
    run(&mut l, from(4, fi));
    run(&mut l, from(4, ack_epoch(2, 2, 1, z(1, 1))));
    // The leader's own NEWLEADER plus member 2's make a quorum: established, history committed.
    run(&mut l, Event::EpochPersisted(EpochRecord::Current(2)));
    let cmds = run(&mut l, from(2, ack(1, 2, z(1, 1))));
    assert_eq!(
        cmds,
        vec![
            Command::RoleChanged(Role::Leading { epoch: 2 }),
            Command::Apply {
                zxid: z(1, 1),
                payload: entry(1, 1).payload
            },
            send(
                2,
                Body::Commit(pb::Commit {
                    session: 1,
                    epoch: 2,
                    zxid: z(1, 1)
                })
            ),
            send(
                4,
                Body::Inform(pb::Inform {
                    session: 2,
                    epoch: 2,
                    entry: Some(entry(1, 1))
                })
            ),
            send(
                2,
                Body::UpToDate(pb::UpToDate {
                    session: 1,
                    epoch: 2,
                    commit_zxid: z(1, 1)
                })
            ),
        ]
    );
    let payload = Bytes::from_static(b"w");
    let zx = l.propose(payload.clone()).expect("established");
    assert_eq!(zx, z(2, 1));
    let e = Entry {
        zxid: zx,
        payload: payload.clone(),
    };
    assert_eq!(
        l.take_commands(),
        vec![
            Command::Persist {
                id: WriteId(1),
                entries: vec![e.clone()]
            },
            send(
                2,
                Body::Proposal(pb::Proposal {
                    session: 1,
                    epoch: 2,
                    entry: Some(e.clone())
                })
            ),
        ]
    );
    // Member 2's ack alone is a quorum with... nothing: the leader's own write is not durable.
    assert_eq!(run(&mut l, from(2, ack(1, 2, zx))), vec![]);
    let cmds = run(&mut l, Event::Persisted { up_to: WriteId(1) });
    assert_eq!(
        cmds,
        vec![
            Command::Apply { zxid: zx, payload },
            send(
                2,
                Body::Commit(pb::Commit {
                    session: 1,
                    epoch: 2,
                    zxid: zx
                })
            ),
            send(
                4,
                Body::Inform(pb::Inform {
                    session: 2,
                    epoch: 2,
                    entry: Some(e)
                })
            ),
        ]
    );
}

#[test]
fn broadcast_propose_needs_an_established_leader() {
    let mut f = synced_follower(2, vec![]);
    assert_eq!(f.propose(Bytes::new()), Err(ZabError::NotLeader));
    let mut l = member(cfg(1, &[1, 2, 3], &[]), PersistentState::default());
    run(&mut l, Event::BecomeLeader { epoch_hint: None });
    assert_eq!(l.propose(Bytes::new()), Err(ZabError::NotLeader));
}

#[test]
fn liveness_leader_without_a_quorum_steps_down() {
    let mut l = member(cfg(1, &[1, 2, 3], &[]), PersistentState::default());
    run(&mut l, Event::BecomeLeader { epoch_hint: None });
    let mut all = Vec::new();
    for _ in 0..11 {
        all.extend(run(&mut l, Event::Tick));
    }
    assert_eq!(all, vec![Command::RoleChanged(Role::Looking)]);
}

#[test]
fn garbled_messages_are_errors_not_panics() {
    let mut f = synced_follower(2, vec![]);
    let empty = Event::Message {
        from: 1,
        msg: ZabMessage { body: None },
    };
    assert!(matches!(f.step(empty), Err(ZabError::Malformed { .. })));
    let stranger = from(9, Body::Pong(pb::Pong::default()));
    assert_eq!(f.step(stranger), Err(ZabError::UnknownPeer(9)));
    let no_entry = Body::Proposal(pb::Proposal {
        session: 4,
        epoch: 2,
        entry: None,
    });
    assert!(matches!(
        f.step(from(1, no_entry)),
        Err(ZabError::Malformed { .. })
    ));
    // A leader told of an ack for something it never sent.
    let mut l = discovered_leader(vec![], 0, false);
    assert!(matches!(
        l.step(from(2, ack(1, 2, z(9, 9)))),
        Err(ZabError::Protocol { .. })
    ));
}

#[test]
fn restart_rejects_a_log_out_of_order() {
    let st = disk((1, 1), 1, vec![entry(1, 2), entry(1, 1)]);
    assert!(matches!(
        Zab::new(cfg(1, &[1, 2, 3], &[]), st, 0),
        Err(ZabError::InvalidState(_))
    ));
}

#[test]
fn sync_follower_waits_for_a_bare_truncation_before_recording_the_epoch() {
    let mut f = member(
        cfg(2, &[1, 2, 3], &[]),
        disk((1, 1), 1, vec![entry(1, 1), entry(1, 2)]),
    );
    let nonce = nonce_of(&run(&mut f, Event::BecomeFollower { leader: 1 }));
    let li = Body::LeaderInfo(pb::LeaderInfo {
        nonce,
        session: 1,
        epoch: 2,
    });
    run(&mut f, from(1, li));
    let rec = AcceptedEpoch {
        epoch: 2,
        leader: 1,
    };
    run(&mut f, Event::EpochPersisted(EpochRecord::Accepted(rec)));
    let sync = Body::Sync(pb::Sync {
        session: 1,
        epoch: 2,
        start: Some(Start::Trunc(pb::Trunc {
            after_zxid: z(1, 1),
        })),
        entries: vec![],
        commit_zxid: 0,
    });
    // What it keeps was durable already; the cut is not yet, so no current epoch.
    assert_eq!(
        run(&mut f, from(1, sync)),
        vec![Command::Truncate {
            id: WriteId(1),
            after_zxid: z(1, 1)
        }]
    );
    assert_eq!(
        run(&mut f, Event::Persisted { up_to: WriteId(1) }),
        vec![Command::PersistEpoch(EpochRecord::Current(2))]
    );
}

/// A one-voter ensemble (ZooKeeper's standaloneEnabled=false) establishes itself from its own
/// durable epoch records, commits its history, and commits each proposal once it is durable.
#[test]
fn discovery_one_voter_establishes_alone() {
    let mut zab = member(cfg(1, &[1], &[]), disk((1, 1), 1, vec![entry(1, 1)]));
    let cmds = run(&mut zab, Event::BecomeLeader { epoch_hint: None });
    let accepted = EpochRecord::Accepted(AcceptedEpoch {
        epoch: 2,
        leader: 1,
    });
    assert_eq!(cmds, vec![Command::PersistEpoch(accepted)]);
    let cmds = run(&mut zab, Event::EpochPersisted(accepted));
    assert_eq!(cmds, vec![Command::PersistEpoch(EpochRecord::Current(2))]);
    let cmds = run(&mut zab, Event::EpochPersisted(EpochRecord::Current(2)));
    assert_eq!(cmds[0], Command::RoleChanged(Role::Leading { epoch: 2 }));
    assert!(cmds.contains(&Command::Apply {
        zxid: z(1, 1),
        payload: entry(1, 1).payload
    }));
    let zx = zab.propose(Bytes::from_static(b"p")).unwrap();
    assert_eq!(zx, z(2, 1));
    let cmds = zab.take_commands();
    let Some(Command::Persist { id, .. }) = cmds.first().cloned() else {
        panic!("expected a log write, got {cmds:?}");
    };
    assert!(!cmds.iter().any(|c| matches!(c, Command::Apply { .. })));
    let cmds = run(&mut zab, Event::Persisted { up_to: id });
    assert_eq!(
        cmds,
        vec![Command::Apply {
            zxid: zx,
            payload: Bytes::from_static(b"p")
        }]
    );
}
