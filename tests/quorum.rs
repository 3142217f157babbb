//! Quorum mode (issue #4): ensembles of real `corral server` processes on loopback
//! (`tests/common/ensemble.rs`), driven with the `zookeeper-client` crate.
//!
//! Election, writes through every member (observers included; sequential nodes and multis
//! too), local reads and `sync`, global sessions (moving to another member, surviving a leader
//! failover, expiry seen everywhere, sessions of a dead member expiring), and crashes under
//! write load: the leader killed with SIGKILL, a follower killed and caught up by diff and by
//! snapshot, a rolling restart, the whole ensemble killed and restarted. Every load test ends
//! with [`verify_writes`]: every acknowledged write is on every member, with the zxid it was
//! acknowledged with, in the order it was acknowledged, and all members hold the same nodes.
//!
//! With `CORRAL_TEST_TARGET=zookeeper` the same tests run against Apache ZooKeeper 3.8, which
//! is how the tests themselves were checked.

mod common;

use std::time::Duration;

use common::ensemble::*;
use common::*;
use zookeeper_client as zk;

/// The zxid of every member's view of `path` after a `sync` there.
async fn czxid_everywhere(ens: &Ensemble, ids: &[u64], path: &str) -> Vec<i64> {
    let mut out = Vec::new();
    for &id in ids {
        let c = ens.client(id).await;
        within("sync", c.sync(path)).await.expect("sync");
        let (_, stat) = c
            .get_data(path)
            .await
            .unwrap_or_else(|e| panic!("member {id}: get {path}: {e:?}"));
        out.push(stat.czxid);
    }
    out
}

/// Roles by id must match the configuration: the leader a voter, other voters followers,
/// observers observers; `mntr` must agree with `srvr`.
fn assert_roles(ens: &Ensemble, leader: u64) {
    for id in ens.ids() {
        let want = if id == leader {
            "leader"
        } else if ens.observer_ids().contains(&id) {
            "observer"
        } else {
            "follower"
        };
        assert_eq!(
            ens.mode(id).as_deref(),
            Some(want),
            "member {id}; modes {:?}",
            ens.modes()
        );
        assert_eq!(
            ens.member(id).mntr("zk_server_state").as_deref(),
            Some(want),
            "mntr zk_server_state of member {id}"
        );
    }
    assert!(ens.voter_ids().contains(&leader), "observer {leader} leads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_voters_elect_one_leader_and_serve_on_every_member() {
    let mut ens = EnsembleBuilder::new(3).start();
    let leader = ens.wait_formed();
    assert_roles(&ens, leader);
    assert_eq!(
        ens.member(leader).mntr("zk_synced_followers").as_deref(),
        Some("2")
    );
    for id in ens.ids() {
        if id != leader {
            assert_eq!(
                ens.member(id).mntr("zk_synced_followers"),
                None,
                "only the leader reports synced followers (member {id})"
            );
        }
    }

    // A write through each member, each read back through every member.
    let ids = ens.ids();
    let mut zxids = Vec::new();
    for &id in &ids {
        let c = ens.client(id).await;
        let path = format!("/via{id}");
        let (stat, _) = c
            .create(&path, format!("from {id}").as_bytes(), &persistent())
            .await
            .unwrap_or_else(|e| panic!("create through member {id}: {e:?}"));
        zxids.push(stat.czxid);
        // Read-your-writes on the member that forwarded the write, without a sync.
        let (data, st) = c.get_data(&path).await.expect("read own write");
        assert_eq!(data, format!("from {id}").as_bytes());
        assert_eq!(st.czxid, stat.czxid);
    }
    assert!(
        zxids.windows(2).all(|w| w[0] < w[1]),
        "writes issued one after the other got zxids {zxids:x?}"
    );
    let epoch = epoch_of(zxids[0]);
    assert!(epoch > 0, "zxid {:#x} has epoch 0", zxids[0]);
    assert!(zxids.iter().all(|&z| epoch_of(z) == epoch), "{zxids:x?}");
    for (&writer, &zxid) in ids.iter().zip(&zxids) {
        let path = format!("/via{writer}");
        assert_eq!(
            czxid_everywhere(&ens, &ids, &path).await,
            vec![zxid; ids.len()],
            "{path}"
        );
    }

    // setData through a follower and a delete through the leader are seen everywhere.
    let follower = ids.iter().copied().find(|&id| id != leader).unwrap();
    let cf = ens.client(follower).await;
    let st = cf.set_data("/via1", b"changed", None).await.expect("set");
    assert_eq!(st.version, 1);
    let cl = ens.client(leader).await;
    cl.delete("/via2", None).await.expect("delete");
    for &id in &ids {
        let c = ens.client(id).await;
        c.sync("/").await.expect("sync");
        let (data, stat) = c.get_data("/via1").await.expect("get");
        assert_eq!(
            (data.as_slice(), stat.version),
            (&b"changed"[..], 1),
            "member {id}"
        );
        assert_eq!(stat.mzxid, st.mzxid, "member {id}");
        assert_eq!(
            c.check_stat("/via2").await.expect("exists"),
            None,
            "member {id}"
        );
    }

    // A data watch on every member fires for a change made through another one, with the
    // change's zxid.
    let mut watches = Vec::new();
    for &id in &ids {
        let c = ens.client(id).await;
        c.sync("/via3").await.expect("sync");
        let (_, _, w) = c.get_and_watch_data("/via3").await.expect("watch");
        watches.push((id, w, c));
    }
    let st = cf.set_data("/via3", b"watched", None).await.expect("set");
    for (id, w, _c) in watches {
        let ev = within(&format!("NodeDataChanged on member {id}"), w.changed()).await;
        assert_eq!(ev.event_type, zk::EventType::NodeDataChanged, "member {id}");
        if is_corral() {
            assert_eq!(ev.zxid, st.mzxid, "notification zxid on member {id}");
        }
    }

    // Nobody changes role while all is well.
    assert_eq!(ens.wait_leader(), leader);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_then_read_sees_what_was_committed_through_another_member() {
    let mut ens = EnsembleBuilder::new(3).start();
    ens.wait_formed();
    let ids = ens.ids();
    let mut clients = Vec::new();
    for &id in &ids {
        clients.push(ens.client(id).await);
    }
    clients[0]
        .create("/s", b"-1", &persistent())
        .await
        .expect("create /s");
    for i in 0..60usize {
        let w = i % ids.len();
        let r = (i + 1 + i / ids.len()) % ids.len();
        let r = if r == w { (r + 1) % ids.len() } else { r };
        let value = i.to_string();
        let st = clients[w]
            .set_data("/s", value.as_bytes(), None)
            .await
            .unwrap_or_else(|e| panic!("set through member {}: {e:?}", ids[w]));
        clients[r].sync("/s").await.expect("sync");
        let (data, stat) = clients[r].get_data("/s").await.expect("get");
        assert_eq!(
            (String::from_utf8_lossy(&data).into_owned(), stat.mzxid),
            (value, st.mzxid),
            "round {i}: written through member {}, read after sync on member {}",
            ids[w],
            ids[r]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn observer_forwards_writes_serves_reads_and_never_votes() {
    let mut ens = EnsembleBuilder::new(3).observers(1).start();
    let leader = ens.wait_formed();
    assert_roles(&ens, leader);
    assert_eq!(ens.observer_ids(), [4]);
    let lm = ens.member(leader);
    assert_eq!(lm.mntr("zk_synced_followers").as_deref(), Some("2"));
    assert_eq!(lm.mntr("zk_synced_observers").as_deref(), Some("1"));

    // Writes through the observer and through a voter, read on every member.
    let co = ens.client(4).await;
    let (st_o, _) = co
        .create("/obs", b"observer", &persistent())
        .await
        .expect("create through the observer");
    let (data, _) = co.get_data("/obs").await.expect("observer reads its write");
    assert_eq!(data, b"observer");
    let cv = ens.client(1).await;
    let (st_v, _) = cv
        .create("/voter", b"voter", &persistent())
        .await
        .expect("create through member 1");
    assert!(st_o.czxid < st_v.czxid);
    let ids = ens.ids();
    assert_eq!(
        czxid_everywhere(&ens, &ids, "/obs").await,
        vec![st_o.czxid; 4]
    );
    assert_eq!(
        czxid_everywhere(&ens, &ids, "/voter").await,
        vec![st_v.czxid; 4]
    );
    // The observer sees the voter's write once it is committed (sync), and an ephemeral of
    // a session on the observer is visible on the voters.
    let e = ens.client(4).await;
    e.create("/obs-eph", b"", &ephemeral())
        .await
        .expect("ephemeral through the observer");
    for &id in &ens.voter_ids() {
        let c = ens.client(id).await;
        c.sync("/").await.expect("sync");
        let stat = c.check_stat("/obs-eph").await.expect("exists").unwrap();
        assert_eq!(stat.ephemeral_owner, e.session_id().0, "member {id}");
    }
    drop(e);

    // Two voters down: the remaining voter and the observer are two of four members, but
    // only one of three votes, so nobody may serve.
    let down: Vec<u64> = ens.voter_ids().into_iter().filter(|&id| id != 1).collect();
    for &id in &down {
        ens.kill9(id);
    }
    ens.wait_not_serving(1);
    ens.wait_not_serving(4);
    assert!(!ens.accepts_sessions(1));
    assert!(!ens.accepts_sessions(4));

    // One voter back: a quorum of voters again, the observer serves again and has everything.
    ens.start(down[0]);
    let leader = ens.wait_leader();
    assert_ne!(leader, 4);
    assert_eq!(ens.wait_serving(4), "observer");
    let c = ens.client(4).await;
    c.create("/after", b"", &persistent())
        .await
        .expect("write through the observer after the outage");
    ens.start(down[1]);
    ens.wait_formed();
    assert_eq!(
        czxid_everywhere(&ens, &ids, "/voter").await,
        vec![st_v.czxid; 4]
    );
    let z = czxid_everywhere(&ens, &ids, "/after").await;
    assert!(z.iter().all(|&x| x == z[0]), "{z:x?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn session_moves_to_another_member_and_keeps_its_ephemerals() {
    let mut ens = EnsembleBuilder::new(3).start();
    let leader = ens.wait_formed();
    let ids = ens.ids();
    // Start on a follower, move to the other follower, then to the leader.
    let followers: Vec<u64> = ids.iter().copied().filter(|&id| id != leader).collect();
    let route = [followers[0], followers[1], leader];

    let a = zk::Client::connector()
        .with_detached()
        .with_session_timeout(Duration::from_secs(10))
        .connect(&ens.member(route[0]).addr())
        .await
        .expect("connect");
    let sid = a.session_id();
    a.create("/eph0", b"0", &ephemeral())
        .await
        .expect("ephemeral");
    let mut info = a.session().clone();
    drop(a);

    for (hop, &id) in route.iter().enumerate().skip(1) {
        let b = zk::Client::connector()
            .with_detached()
            .with_session(info)
            .with_session_timeout(Duration::from_secs(10))
            .connect(&ens.member(id).addr())
            .await
            .unwrap_or_else(|e| panic!("resume the session on member {id}: {e:?}"));
        assert_eq!(b.session_id(), sid, "same session on member {id}");
        b.sync("/").await.expect("sync");
        let mut mine = b.list_ephemerals("/").await.expect("getEphemerals");
        mine.sort();
        let want: Vec<String> = (0..hop).map(|i| format!("/eph{i}")).collect();
        assert_eq!(mine, want, "ephemerals of the session seen on member {id}");
        for p in &want {
            let (_, st) = b.get_data(p).await.expect("get ephemeral");
            assert_eq!(st.ephemeral_owner, sid.0, "{p} on member {id}");
        }
        b.create(
            &format!("/eph{hop}"),
            hop.to_string().as_bytes(),
            &ephemeral(),
        )
        .await
        .unwrap_or_else(|e| panic!("ephemeral through member {id}: {e:?}"));
        info = b.session().clone();
        drop(b);
    }

    // Every member sees the three ephemerals, owned by the session.
    for &id in &ids {
        let c = ens.client(id).await;
        c.sync("/").await.expect("sync");
        for i in 0..3 {
            let st = c
                .check_stat(&format!("/eph{i}"))
                .await
                .expect("exists")
                .unwrap_or_else(|| panic!("member {id} lacks /eph{i}"));
            assert_eq!(st.ephemeral_owner, sid.0);
        }
    }

    // Closing the session (from where it is now) removes them everywhere.
    let b = zk::Client::connector()
        .with_session(info)
        .with_session_timeout(Duration::from_secs(10))
        .connect(&ens.member(followers[1]).addr())
        .await
        .expect("resume for close");
    drop(b); // not detached: closes the session
    for &id in &ids {
        let c = ens.client(id).await;
        poll_until_async(&format!("ephemerals gone on member {id}"), || async {
            c.sync("/").await.ok()?;
            for i in 0..3 {
                if c.check_stat(&format!("/eph{i}")).await.ok()?.is_some() {
                    return None;
                }
            }
            Some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ephemeral_of_an_expired_session_vanishes_on_every_member() {
    let mut ens = EnsembleBuilder::new(3).observers(1).start();
    let leader = ens.wait_formed();
    let ids = ens.ids();
    let owner_member = ids.iter().copied().find(|&id| id != leader).unwrap();

    // Watchers on every member first, so that each member must deliver the deletion.
    let mut watchers = Vec::new();
    let mut clients = Vec::new();
    let owner = zk::Client::connector()
        .with_detached()
        .with_session_timeout(Duration::from_millis(1000))
        .connect(&ens.member(owner_member).addr())
        .await
        .expect("connect");
    let sid = owner.session_id().0;
    owner
        .create("/short", b"", &ephemeral())
        .await
        .expect("ephemeral");
    for &id in &ids {
        let c = ens.client(id).await;
        c.sync("/").await.expect("sync");
        let (_, st, w) = c
            .get_and_watch_data("/short")
            .await
            .unwrap_or_else(|e| panic!("member {id} does not have the ephemeral: {e:?}"));
        assert_eq!(st.ephemeral_owner, sid, "member {id}");
        watchers.push((id, w));
        clients.push(c);
    }

    // The owner vanishes without closing its session (detached, dropped): it expires.
    let info = owner.session().clone();
    drop(owner);
    let mut zxids = Vec::new();
    for (id, w) in watchers {
        let ev = within(&format!("deletion seen on member {id}"), w.changed()).await;
        assert_eq!(ev.event_type, zk::EventType::NodeDeleted, "member {id}");
        assert_eq!(ev.path, "/short");
        zxids.push(ev.zxid);
    }
    if is_corral() {
        // One expiry, one zxid, announced by every member (ZooKeeper 3.8 sends -1 here).
        assert!(zxids.iter().all(|&z| z == zxids[0] && z > 0), "{zxids:x?}");
    }
    for (c, &id) in clients.iter().zip(&ids) {
        assert_eq!(
            c.check_stat("/short").await.expect("exists"),
            None,
            "member {id}"
        );
    }
    // The session is gone everywhere: resuming it on any member is refused.
    for &id in &ids {
        let r = zk::Client::connector()
            .with_session(info.clone())
            .with_session_timeout(Duration::from_millis(1000))
            .connect(&ens.member(id).addr())
            .await;
        assert!(
            matches!(r, Err(zk::Error::SessionExpired)),
            "resuming the expired session on member {id}: {:?}",
            r.map(|c| c.session_id())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_killed_under_write_load_new_leader_and_no_acknowledged_write_lost() {
    let mut ens = EnsembleBuilder::new(3).start();
    let old = ens.wait_formed();
    let setup = ens.client_any().await;
    let load = Load::start(&setup, "/load", 4, &[ens.connect_string()]).await;
    drop(setup);
    load.wait_more_acks(100, "before the kill").await;

    ens.kill9(old);
    let survivors: Vec<u64> = ens.ids().into_iter().filter(|&id| id != old).collect();
    let new = ens.wait_leader_among(&survivors);
    assert_ne!(new, old, "a dead member cannot lead");
    load.wait_more_acks(100, "writers carry on with the new leader")
        .await;

    // The old leader comes back as a follower and catches up, still under load.
    ens.start(old);
    assert_eq!(ens.wait_formed(), new, "the new leader stays");
    assert_eq!(ens.mode(old).as_deref(), Some("follower"));
    load.wait_more_acks(50, "after the old leader rejoined")
        .await;

    let logs = load.stop().await;
    let first = logs
        .iter()
        .filter_map(|l| l.acked.first())
        .map(|a| a.1)
        .min();
    let last = logs
        .iter()
        .filter_map(|l| l.acked.last())
        .map(|a| a.1)
        .max();
    let (first, last) = (first.unwrap(), last.unwrap());
    assert!(
        epoch_of(last) > epoch_of(first),
        "a new leader must use a new epoch: first ack {first:#x}, last {last:#x}"
    );
    let n = verify_writes(&ens, &logs, "/load", &ens.ids()).await;
    assert!(n >= 250, "{n} acknowledged writes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_voters_survive_two_failures_including_the_leader() {
    let mut ens = EnsembleBuilder::new(5).start();
    let leader = ens.wait_formed();
    assert_roles(&ens, leader);
    assert_eq!(
        ens.member(leader).mntr("zk_synced_followers").as_deref(),
        Some("4")
    );
    let setup = ens.client_any().await;
    let load = Load::start(&setup, "/five", 5, &[ens.connect_string()]).await;
    drop(setup);
    load.wait_more_acks(50, "before the kills").await;

    let follower = ens.ids().into_iter().find(|&id| id != leader).unwrap();
    ens.kill9(leader);
    ens.kill9(follower);
    let rest: Vec<u64> = ens
        .ids()
        .into_iter()
        .filter(|&id| id != leader && id != follower)
        .collect();
    let new = ens.wait_leader_among(&rest);
    assert!(rest.contains(&new));
    load.wait_more_acks(100, "three of five voters carry on")
        .await;

    ens.start(leader);
    ens.start(follower);
    ens.wait_formed();
    load.wait_more_acks(50, "all five back").await;
    let logs = load.stop().await;
    verify_writes(&ens, &logs, "/five", &ens.ids()).await;
}

/// Kill a follower, write while it is down, bring it back; returns (follower, its log since
/// the restart). With a small `snapCount` and many writes, the leader has a snapshot beyond
/// what the follower has.
async fn follower_down_then_back(ens: &mut Ensemble, writes_while_down: usize) -> (u64, String) {
    let leader = ens.wait_formed();
    let follower = ens.ids().into_iter().find(|&id| id != leader).unwrap();
    let setup = ens.client(leader).await;
    let load = Load::start(&setup, "/catchup", 3, &[ens.connect_string()]).await;
    drop(setup);
    load.wait_more_acks(30, "before the follower dies").await;
    ens.kill9(follower);
    load.wait_more_acks(writes_while_down, "while the follower is down")
        .await;
    ens.start(follower);
    assert_eq!(ens.wait_formed(), leader);
    assert_eq!(ens.mode(follower).as_deref(), Some("follower"));
    load.wait_more_acks(30, "after the follower is back").await;
    let logs = load.stop().await;
    verify_writes(ens, &logs, "/catchup", &ens.ids()).await;
    (follower, ens.member(follower).log_contents())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follower_killed_catches_up_by_diff() {
    let mut ens = EnsembleBuilder::new(3).start();
    let (follower, log) = follower_down_then_back(&mut ens, 60).await;
    let kinds = sync_kinds(&log);
    // The first sync after the restart; a busy machine may make it reconnect later (diff).
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("diff"),
        "member {follower} (a few writes behind) must first sync by diff (all syncs: {kinds:?}); its log:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follower_killed_catches_up_by_snapshot() {
    let mut ens = EnsembleBuilder::new(3).snap_count(50).start();
    let (follower, log) = follower_down_then_back(&mut ens, 400).await;
    let kinds = sync_kinds(&log);
    // The first sync after the restart; a busy machine may make it reconnect later (diff).
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("snapshot"),
        "member {follower} (behind the leader's snapshots) must first sync by snapshot (all syncs: {kinds:?}); its log:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rolling_restart_of_every_member_under_load() {
    let mut ens = EnsembleBuilder::new(3).observers(1).start();
    ens.wait_formed();
    let setup = ens.client_any().await;
    let load = Load::start(&setup, "/roll", 4, &[ens.connect_string()]).await;
    drop(setup);
    load.wait_more_acks(50, "before the first restart").await;
    let mut epochs_seen = Vec::new();
    for id in ens.ids() {
        ens.stop(id);
        load.wait_more_acks(30, &format!("while member {id} is down"))
            .await;
        ens.start(id);
        let leader = ens.wait_formed();
        assert_roles(&ens, leader);
        load.wait_more_acks(30, &format!("after member {id} is back"))
            .await;
        epochs_seen.push((id, leader));
    }
    let logs = load.stop().await;
    let n = verify_writes(&ens, &logs, "/roll", &ens.ids()).await;
    assert!(n >= 50 + 60 * 4, "{n} acknowledged writes");
    eprintln!("leaders after each restart: {epochs_seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn whole_ensemble_killed_and_restarted_loses_no_acknowledged_write() {
    let mut ens = EnsembleBuilder::new(3).start();
    ens.wait_formed();
    let setup = ens.client_any().await;
    let load = Load::start(&setup, "/all", 4, &[ens.connect_string()]).await;
    drop(setup);
    load.wait_more_acks(200, "before the crash").await;
    for id in ens.ids() {
        ens.kill9(id);
    }
    let logs = load.stop().await;
    let acked: usize = logs.iter().map(|l| l.acked.len()).sum();
    assert!(acked >= 200);

    ens.start_all();
    verify_writes(&ens, &logs, "/all", &ens.ids()).await;

    // And the restarted ensemble takes writes in a later epoch.
    let last = logs
        .iter()
        .filter_map(|l| l.acked.last())
        .map(|a| a.1)
        .max()
        .unwrap();
    let c = ens.client_any().await;
    let (st, _) = c
        .create("/after-restart", b"", &persistent())
        .await
        .expect("write after the restart");
    assert!(
        st.czxid > last && epoch_of(st.czxid) > epoch_of(last),
        "after a restart: {:#x}, last acknowledged before: {last:#x}",
        st.czxid
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sequential_nodes_and_multis_through_every_member_agree_everywhere() {
    let mut ens = EnsembleBuilder::new(3).observers(1).start();
    ens.wait_formed();
    let ids = ens.ids();
    let setup = ens.client(ids[0]).await;
    create_all(&setup, "/seq").await;

    // Sequential creates through every member at once: the leader numbers them.
    let mut tasks = Vec::new();
    for &id in &ids {
        let c = ens.client(id).await;
        tasks.push(tokio::spawn(async move {
            let mut made = Vec::new();
            for _ in 0..25 {
                let (stat, seq) = c
                    .create(
                        "/seq/n-",
                        id.to_string().as_bytes(),
                        &mode(zk::CreateMode::PersistentSequential),
                    )
                    .await
                    .unwrap_or_else(|e| panic!("sequential create through member {id}: {e:?}"));
                made.push((format!("n-{seq}"), stat.czxid));
            }
            made
        }));
    }
    let mut made = Vec::new();
    for t in tasks {
        made.extend(t.await.unwrap());
    }
    let names: std::collections::BTreeSet<String> = made.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(
        names.len(),
        made.len(),
        "a sequence number was given twice: {made:?}"
    );
    made.sort_by_key(|(_, z)| *z);
    assert!(
        made.windows(2).all(|w| w[0].0 < w[1].0),
        "sequence numbers must follow the commit order: {made:?}"
    );
    let want: Vec<String> = names.into_iter().collect();
    for &id in &ids {
        let c = ens.client(id).await;
        c.sync("/seq").await.expect("sync");
        let mut children = c.list_children("/seq").await.expect("children");
        children.sort();
        assert_eq!(children, want, "children of /seq on member {id}");
        for (name, czxid) in &made {
            let (_, st) = c.get_data(&format!("/seq/{name}")).await.expect("get");
            assert_eq!(st.czxid, *czxid, "/seq/{name} on member {id}");
        }
    }

    // A multi through each member: one zxid for all its ops, everywhere; a failing multi
    // leaves nothing behind anywhere.
    let mut multi_zxids = Vec::new();
    for &id in &ids {
        let c = ens.client(id).await;
        let mut w = c.new_multi_writer();
        w.add_create(&format!("/m{id}"), b"", &persistent())
            .unwrap();
        w.add_create(&format!("/m{id}/a"), b"", &persistent())
            .unwrap();
        w.add_set_data("/seq", id.to_string().as_bytes(), None)
            .unwrap();
        let res = w
            .commit()
            .await
            .unwrap_or_else(|e| panic!("multi through member {id}: {e:?}"));
        let zxids: Vec<i64> = res
            .iter()
            .filter_map(|r| match r {
                zk::MultiWriteResult::Create { stat, .. } if !stat.is_invalid() => Some(stat.czxid),
                zk::MultiWriteResult::SetData { stat } => Some(stat.mzxid),
                _ => None,
            })
            .collect();
        assert!(!zxids.is_empty());
        assert!(
            zxids.iter().all(|&z| z == zxids[0]),
            "ops of one multi through member {id}: {zxids:x?}"
        );
        multi_zxids.push((id, zxids[0]));

        let mut w = c.new_multi_writer();
        w.add_create(&format!("/f{id}"), b"", &persistent())
            .unwrap();
        w.add_create(&format!("/m{id}"), b"", &persistent())
            .unwrap();
        assert!(
            w.commit().await.is_err(),
            "a multi creating an existing node through member {id} must fail"
        );
    }
    for &reader in &ids {
        let c = ens.client(reader).await;
        c.sync("/").await.expect("sync");
        for &(id, zxid) in &multi_zxids {
            for p in [format!("/m{id}"), format!("/m{id}/a")] {
                let (_, st) = c
                    .get_data(&p)
                    .await
                    .unwrap_or_else(|e| panic!("{p} on member {reader}: {e:?}"));
                assert_eq!(st.czxid, zxid, "{p} on member {reader}");
            }
            assert_eq!(
                c.check_stat(&format!("/f{id}")).await.expect("exists"),
                None,
                "half of a failed multi on member {reader}"
            );
        }
        let (data, st) = c.get_data("/seq").await.expect("get /seq");
        let last = multi_zxids.last().unwrap();
        assert_eq!((data, st.mzxid), (last.0.to_string().into_bytes(), last.1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn session_and_its_ephemerals_survive_a_leader_failover() {
    let mut ens = EnsembleBuilder::new(3).start();
    let old = ens.wait_formed();
    let c = connect(&ens.connect_string(), Duration::from_secs(20)).await;
    let sid = c.session_id().0;
    c.create("/keep", b"", &ephemeral())
        .await
        .expect("ephemeral");

    ens.kill9(old);
    let survivors: Vec<u64> = ens.ids().into_iter().filter(|&id| id != old).collect();
    ens.wait_leader_among(&survivors);
    // The same session carries on, through a survivor if it was on the old leader.
    within("a write in the same session after the failover", async {
        loop {
            match c.create("/after", b"", &ephemeral()).await {
                Ok(_) | Err(zk::Error::NodeExists) => return,
                Err(zk::Error::ConnectionLoss | zk::Error::Custom(_)) => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("session lost in a leader failover: {e:?}"),
            }
        }
    })
    .await;
    assert_eq!(c.session_id().0, sid);

    ens.start(old);
    ens.wait_formed();
    for id in ens.ids() {
        let r = ens.client(id).await;
        r.sync("/").await.expect("sync");
        for p in ["/keep", "/after"] {
            let st = r
                .check_stat(p)
                .await
                .expect("exists")
                .unwrap_or_else(|| panic!("member {id} lacks {p}"));
            assert_eq!(st.ephemeral_owner, sid, "{p} on member {id}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_of_a_dead_member_expire_and_their_ephemerals_vanish() {
    let mut ens = EnsembleBuilder::new(3).start();
    let leader = ens.wait_formed();
    let f = ens.ids().into_iter().find(|&id| id != leader).unwrap();
    let survivors: Vec<u64> = ens.ids().into_iter().filter(|&id| id != f).collect();
    // The owner can only ever reach member f.
    let owner = connect(&ens.member(f).addr(), Duration::from_millis(1500)).await;
    owner
        .create("/orphan", b"", &ephemeral())
        .await
        .expect("ephemeral");
    let mut watchers = Vec::new();
    for &id in &survivors {
        let c = ens.client(id).await;
        c.sync("/").await.expect("sync");
        let (_, st, w) = c
            .get_and_watch_data("/orphan")
            .await
            .unwrap_or_else(|e| panic!("member {id}: {e:?}"));
        assert_eq!(st.ephemeral_owner, owner.session_id().0);
        watchers.push((id, w, c));
    }

    ens.kill9(f);
    for (id, w, _c) in watchers {
        let ev = within(&format!("/orphan deleted on member {id}"), w.changed()).await;
        assert_eq!(ev.event_type, zk::EventType::NodeDeleted, "member {id}");
    }
    drop(owner);
    ens.start(f);
    ens.wait_formed();
    let c = ens.client(f).await;
    c.sync("/").await.expect("sync");
    assert_eq!(c.check_stat("/orphan").await.expect("exists"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn member_with_a_wiped_data_dir_gets_everything_back() {
    let mut ens = EnsembleBuilder::new(3).observers(1).start();
    let leader = ens.wait_formed();
    let setup = ens.client_any().await;
    let load = Load::start(&setup, "/wiped", 3, &[ens.connect_string()]).await;
    drop(setup);
    load.wait_more_acks(100, "before the disk is replaced")
        .await;
    // A follower and the observer lose their disks.
    let f = ens
        .voter_ids()
        .into_iter()
        .find(|&id| id != leader)
        .unwrap();
    for id in [f, 4] {
        ens.kill9(id);
        ens.wipe_data(id);
    }
    load.wait_more_acks(50, "while they are down").await;
    for id in [f, 4] {
        ens.start(id);
    }
    assert_eq!(ens.wait_formed(), leader);
    assert_eq!(ens.mode(f).as_deref(), Some("follower"));
    assert_eq!(ens.mode(4).as_deref(), Some("observer"));
    load.wait_more_acks(50, "after they are back").await;
    let logs = load.stop().await;
    verify_writes(&ens, &logs, "/wiped", &ens.ids()).await;
}

/// Leader churn: the leader is killed with SIGKILL again and again under load, each time
/// coming back as a follower; every epoch's acknowledged writes survive all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repeated_leader_kills_under_load() {
    let mut ens = EnsembleBuilder::new(3).start();
    ens.wait_formed();
    let setup = ens.client_any().await;
    let load = Load::start(&setup, "/churn", 4, &[ens.connect_string()]).await;
    drop(setup);
    load.wait_more_acks(50, "before the first kill").await;
    let mut leaders = Vec::new();
    for round in 0..4 {
        let leader = ens.wait_formed();
        leaders.push(leader);
        ens.kill9(leader);
        let rest: Vec<u64> = ens.ids().into_iter().filter(|&id| id != leader).collect();
        let new = ens.wait_leader_among(&rest);
        assert_ne!(new, leader);
        load.wait_more_acks(30, &format!("round {round}: under leader {new}"))
            .await;
        ens.start(leader);
        assert_eq!(ens.wait_formed(), new, "round {round}");
        load.wait_more_acks(30, &format!("round {round}: {leader} is back"))
            .await;
    }
    let logs = load.stop().await;
    let mut epochs: Vec<i64> = logs
        .iter()
        .flat_map(|l| l.acked.iter().map(|a| epoch_of(a.1)))
        .collect();
    epochs.sort();
    epochs.dedup();
    assert!(
        epochs.len() >= 5,
        "writes acknowledged in epochs {epochs:?} under leaders {leaders:?} and after"
    );
    verify_writes(&ens, &logs, "/churn", &ens.ids()).await;
}

/// A member that does not know a session asks the leader how far it has got before refusing
/// it: a session created through one follower resumes at once on another, and a session that
/// was closed is refused as expired by every member.
#[tokio::test(flavor = "multi_thread")]
async fn unknown_session_is_revalidated_through_the_leader() {
    let mut ens = EnsembleBuilder::new(3).start();
    let leader = ens.wait_formed();
    let followers: Vec<u64> = ens.ids().into_iter().filter(|&id| id != leader).collect();
    for round in 0..5 {
        let a = zk::Client::connector()
            .with_detached()
            .with_session_timeout(Duration::from_secs(10))
            .connect(&ens.member(followers[0]).addr())
            .await
            .expect("connect");
        let info = a.session().clone();
        let sid = a.session_id();
        drop(a);
        // Straight to the other follower, with nothing in between.
        let b = zk::Client::connector()
            .with_session(info)
            .with_session_timeout(Duration::from_secs(10))
            .connect(&ens.member(followers[1]).addr())
            .await
            .unwrap_or_else(|e| panic!("round {round}: resume on the other follower: {e:?}"));
        assert_eq!(b.session_id(), sid, "round {round}");
        let closed = b.session().clone();
        let eph = format!("/reval{round}");
        b.create(&eph, b"x", &ephemeral()).await.expect("ephemeral");
        drop(b); // closes the session
        let watcher = ens.client(leader).await;
        poll_until_async("the closed session's ephemeral is gone", || async {
            watcher
                .check_stat(&eph)
                .await
                .expect("exists")
                .is_none()
                .then_some(())
        })
        .await;
        for &id in &ens.ids() {
            let err = zk::Client::connector()
                .with_session(closed.clone())
                .with_session_timeout(Duration::from_secs(10))
                .connect(&ens.member(id).addr())
                .await
                .map(|_| ())
                .expect_err("a closed session must not resume");
            assert!(
                matches!(err, zk::Error::SessionExpired),
                "round {round}, member {id}: {err:?}"
            );
        }
    }
}

/// "/zookeeper/config" holds the membership on every member, as ZooKeeper 3.5+ has it
/// (zkCli's `config`, Curator's ensemble tracker): one `server.N=` line per member with its
/// role and client address, then `version=0`; dataVersion -1 and mzxid 0, since it is not
/// written through the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn config_node_lists_the_membership_on_every_member() {
    let mut ens = EnsembleBuilder::new(3).observers(1).start();
    ens.wait_formed();
    let mut expected = String::new();
    for id in ens.ids() {
        let m = ens.member(id);
        let role = match m.role {
            Role::Voter => "participant",
            Role::Observer => "observer",
        };
        expected += &format!(
            "server.{id}={}:{}:{role};{}\n",
            m.quorum_addr(),
            m.election_port,
            m.addr()
        );
    }
    expected += "version=0";
    for id in ens.ids() {
        let c = ens.client(id).await;
        let (data, stat) = c
            .get_data("/zookeeper/config")
            .await
            .unwrap_or_else(|e| panic!("get /zookeeper/config on member {id}: {e:?}"));
        assert_eq!(String::from_utf8_lossy(&data), expected, "member {id}");
        assert_eq!(
            (stat.version, stat.mzxid, stat.czxid, stat.aversion),
            (-1, 0, 0, -1),
            "member {id}"
        );
        assert_eq!(stat.data_length as usize, expected.len(), "member {id}");
    }
    // A member that comes back syncs with the leader and has it again.
    let follower = ens
        .voter_ids()
        .into_iter()
        .find(|&id| id != ens.wait_leader())
        .unwrap();
    ens.restart(follower);
    ens.wait_serving(follower);
    let (data, _) = ens
        .client(follower)
        .await
        .get_data("/zookeeper/config")
        .await
        .expect("get after restart");
    assert_eq!(String::from_utf8_lossy(&data), expected);
}
