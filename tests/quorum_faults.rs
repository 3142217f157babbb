//! Network partitions of a quorum ensemble (issue #4).
//!
//! Every peer link goes through a [`Proxy`]: for each ordered pair of members (a, b), a's
//! config names two proxies (quorum and election) in front of b's real ports, so whichever
//! side dials (in Corral the higher id dials the lower one, on both ports) the connection
//! crosses a proxy that only that pair uses. The cluster identity does not include
//! addresses, so members with different configs still form one ensemble. Isolating member k
//! blocks (new connections accepted and closed at once) and cuts (existing connections
//! closed) every proxy of a pair that includes k; healing unblocks them and lets the members
//! reconnect by themselves.
//!
//! Each test checks that the isolated member stops serving, that the majority has (or
//! elects) a leader and keeps accepting writes, and that after healing the member rejoins
//! and has every write, in the same order ([`verify_writes`]).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::ensemble::*;
use common::proxy::Proxy;
use common::*;
use zookeeper_client as zk;

/// Proxies on every peer link: (from, to) -> (quorum proxy, election proxy).
struct Mesh {
    links: BTreeMap<(u64, u64), (Proxy, Proxy)>,
}

impl Mesh {
    /// Puts a proxy pair on every ordered pair of members of `ens` (before it starts).
    async fn new(ens: &mut Ensemble) -> Mesh {
        let mut links = BTreeMap::new();
        for from in ens.ids() {
            for to in ens.ids() {
                if from == to {
                    continue;
                }
                let q = Proxy::start(&ens.member(to).quorum_addr()).await;
                let e = Proxy::start(&ens.member(to).election_addr()).await;
                ens.route_peer(from, to, &q.addr(), &e.addr());
                links.insert((from, to), (q, e));
            }
        }
        Mesh { links }
    }

    fn links_of(&self, k: u64) -> impl Iterator<Item = &(Proxy, Proxy)> {
        self.links
            .iter()
            .filter(move |((a, b), _)| *a == k || *b == k)
            .map(|(_, p)| p)
    }

    /// Cut member `k` off from every other member.
    fn isolate(&self, k: u64) {
        for (q, e) in self.links_of(k) {
            q.block();
            e.block();
        }
        for (q, e) in self.links_of(k) {
            q.cut();
            e.cut();
        }
    }

    fn heal(&self, k: u64) {
        for (q, e) in self.links_of(k) {
            q.unblock();
            e.unblock();
        }
    }
}

/// A 3-voter ensemble behind a mesh of proxies, formed, with a write load running through
/// every member.
async fn partitioned_setup(root: &str) -> (Ensemble, Mesh, Load) {
    let mut ens = EnsembleBuilder::new(3).build();
    let mesh = Mesh::new(&mut ens).await;
    ens.start_all();
    let setup = ens.client_any().await;
    let load = Load::start(&setup, root, 4, &[ens.connect_string()]).await;
    drop(setup);
    load.wait_more_acks(50, "before the partition").await;
    (ens, mesh, load)
}

/// A session on member `id` only, which the test can watch lose its connection.
async fn watched_session(ens: &Ensemble, id: u64) -> (zk::Client, zk::StateWatcher) {
    let c = zk::Client::connector()
        .with_session_timeout(Duration::from_secs(20))
        .connect(&ens.member(id).addr())
        .await
        .expect("connect");
    c.get_data("/").await.expect("read");
    let w = c.state_watcher();
    (c, w)
}

/// The isolated member must stop serving: `srvr` says so, its client connections are
/// closed, and it takes no new session.
async fn assert_stops_serving(
    ens: &Ensemble,
    k: u64,
    client: &zk::Client,
    mut state: zk::StateWatcher,
) {
    ens.wait_not_serving(k);
    if client.state() == zk::SessionState::SyncConnected {
        let st = within(
            &format!("the session on member {k} to lose its connection"),
            state.changed(),
        )
        .await;
        assert_ne!(st, zk::SessionState::SyncConnected);
    }
    assert!(
        !ens.accepts_sessions(k),
        "isolated member {k} takes new sessions"
    );
    // A write through it cannot be acknowledged while it is cut off.
    let r = tokio::time::timeout(
        Duration::from_secs(2),
        client.create("/from-isolated", b"", &persistent()),
    )
    .await;
    assert!(
        !matches!(r, Ok(Ok(_))),
        "isolated member {k} acknowledged a write"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn isolated_follower_stops_serving_and_rejoins_with_every_write() {
    let (mut ens, mesh, load) = partitioned_setup("/pf").await;
    let leader = ens.wait_formed();
    let f = ens.ids().into_iter().find(|&id| id != leader).unwrap();
    let others: Vec<u64> = ens.ids().into_iter().filter(|&id| id != f).collect();
    let (cf, state) = watched_session(&ens, f).await;

    mesh.isolate(f);
    assert_stops_serving(&ens, f, &cf, state).await;
    // The leader still has a quorum (itself and the other follower) and keeps leading.
    assert_eq!(ens.wait_leader_among(&others), leader);
    ens.wait_mntr(leader, "zk_synced_followers", "1");
    load.wait_more_acks(100, "the majority takes writes").await;
    assert_eq!(ens.mode(f), None, "member {f} still cut off");

    mesh.heal(f);
    assert_eq!(ens.wait_formed(), leader);
    assert_eq!(ens.wait_serving(f), "follower");
    load.wait_more_acks(50, "after healing").await;
    let logs = load.stop().await;
    verify_writes(&ens, &logs, "/pf", &ens.ids()).await;
    // The write tried on the isolated member is everywhere or nowhere.
    let mut seen = Vec::new();
    for id in ens.ids() {
        let c = ens.client(id).await;
        c.sync("/").await.expect("sync");
        seen.push(
            c.check_stat("/from-isolated")
                .await
                .expect("exists")
                .map(|s| s.czxid),
        );
    }
    assert!(seen.iter().all(|s| *s == seen[0]), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn isolated_leader_steps_down_majority_elects_and_old_leader_rejoins() {
    let (mut ens, mesh, load) = partitioned_setup("/pl").await;
    let old = ens.wait_formed();
    let others: Vec<u64> = ens.ids().into_iter().filter(|&id| id != old).collect();
    let (cl, state) = watched_session(&ens, old).await;

    mesh.isolate(old);
    assert_stops_serving(&ens, old, &cl, state).await;
    let new = ens.wait_leader_among(&others);
    assert_ne!(new, old);
    load.wait_more_acks(100, "the majority takes writes under a new leader")
        .await;
    assert_eq!(ens.mode(old), None, "member {old} still cut off");

    mesh.heal(old);
    assert_eq!(ens.wait_formed(), new, "the new leader stays");
    assert_eq!(ens.wait_serving(old), "follower");
    load.wait_more_acks(50, "after healing").await;
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
    assert!(
        epoch_of(last.unwrap()) > epoch_of(first.unwrap()),
        "the new leader uses a new epoch: {first:x?} .. {last:x?}"
    );
    verify_writes(&ens, &logs, "/pl", &ens.ids()).await;
    let mut seen = Vec::new();
    for id in ens.ids() {
        let c = ens.client(id).await;
        c.sync("/").await.expect("sync");
        seen.push(
            c.check_stat("/from-isolated")
                .await
                .expect("exists")
                .map(|s| s.czxid),
        );
    }
    assert!(seen.iter().all(|s| *s == seen[0]), "{seen:?}");
}
