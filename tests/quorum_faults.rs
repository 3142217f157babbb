//! Network partitions of a quorum ensemble (issue #4).
//!
//! Every peer link goes through proxies: for each ordered pair of members (a, b), a's config
//! names two proxies (quorum and election) in front of b's real ports, so whichever side dials
//! (in Corral the higher id dials the lower one, on both ports) the connection crosses proxies
//! that only that pair uses. The cluster identity does not include addresses, so members with
//! different configs still form one ensemble. Isolating member k acts on every proxy of a pair
//! that includes k, in one of two ways:
//!
//! * loud ([`Proxy`]): new connections are accepted and closed at once, existing ones are
//!   closed — the members learn at once that the link is down;
//! * silent ([`SilentProxy`]): connections stay open but nothing passes — the members must
//!   notice the silence themselves (syncLimit ticks).
//!
//! Healing lets connections through again; the members reconnect by themselves. Each test
//! checks that the isolated member stops serving (`srvr`, its client connections, new
//! sessions, no write acknowledged through it), that the majority keeps (or elects, in a new
//! epoch) a leader and takes writes, and that after healing the member rejoins and has every
//! write, in the same order ([`verify_writes`]).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::ensemble::*;
use common::proxy::Proxy;
use common::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use zookeeper_client as zk;

/// A TCP proxy that can go silent, as when a network drops every packet: the connections it
/// carries stay open but no byte passes either way, and new ones are accepted but never
/// forwarded. Healing closes what it held (as the peers' TCP stacks eventually would) and
/// forwards new connections again. Unlike [`Proxy::cut`], nobody is told anything: the
/// members must notice the silence themselves (syncLimit, election timeouts).
struct SilentProxy {
    addr: String,
    silent: Arc<watch::Sender<bool>>,
    accept: JoinHandle<()>,
}

impl SilentProxy {
    async fn start(upstream: &str) -> SilentProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let silent = Arc::new(watch::Sender::new(false));
        let upstream = upstream.to_string();
        let accept = {
            let silent = silent.clone();
            tokio::spawn(async move {
                let mut conns = tokio::task::JoinSet::new();
                loop {
                    let Ok((mut down, _)) = listener.accept().await else {
                        return;
                    };
                    let mut rx = silent.subscribe();
                    let upstream = upstream.clone();
                    conns.spawn(async move {
                        if !*rx.borrow_and_update() {
                            let Ok(mut up) = TcpStream::connect(&upstream).await else {
                                return;
                            };
                            let went_silent = tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut down, &mut up) => false,
                                _ = rx.wait_for(|s| *s) => true,
                            };
                            if !went_silent {
                                return;
                            }
                            // Hold both sockets, pass nothing, until healed; then close.
                            let _ = rx.wait_for(|s| !*s).await;
                            drop(up);
                        } else {
                            let _ = rx.wait_for(|s| !*s).await;
                        }
                        drop(down);
                    });
                    // Reap finished connections.
                    while conns.try_join_next().is_some() {}
                }
            })
        };
        SilentProxy {
            addr,
            silent,
            accept,
        }
    }
}

impl Drop for SilentProxy {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection.
        self.accept.abort();
    }
}

/// One direction of a peer link: a proxy in front of the quorum port and one in front of the
/// election port.
enum Link {
    /// Partition = refuse and close connections ([`Proxy`]).
    Loud(Proxy, Proxy),
    /// Partition = silence ([`SilentProxy`]).
    Silent(SilentProxy, SilentProxy),
}

impl Link {
    fn addrs(&self) -> (String, String) {
        match self {
            Link::Loud(q, e) => (q.addr(), e.addr()),
            Link::Silent(q, e) => (q.addr.clone(), e.addr.clone()),
        }
    }
    fn block(&self) {
        match self {
            Link::Loud(q, e) => {
                q.block();
                e.block();
                q.cut();
                e.cut();
            }
            Link::Silent(q, e) => {
                q.silent.send_replace(true);
                e.silent.send_replace(true);
            }
        }
    }
    fn heal(&self) {
        match self {
            Link::Loud(q, e) => {
                q.unblock();
                e.unblock();
            }
            Link::Silent(q, e) => {
                q.silent.send_replace(false);
                e.silent.send_replace(false);
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Partition {
    Loud,
    Silent,
}

/// Proxies on every peer link: (from, to) -> the link's proxies.
struct Mesh {
    links: BTreeMap<(u64, u64), Link>,
}

impl Mesh {
    /// Puts proxies on every ordered pair of members of `ens` (before it starts).
    async fn new(ens: &mut Ensemble, kind: Partition) -> Mesh {
        let mut links = BTreeMap::new();
        for from in ens.ids() {
            for to in ens.ids() {
                if from == to {
                    continue;
                }
                let (q, e) = (ens.member(to).quorum_addr(), ens.member(to).election_addr());
                let link = match kind {
                    Partition::Loud => Link::Loud(Proxy::start(&q).await, Proxy::start(&e).await),
                    Partition::Silent => {
                        Link::Silent(SilentProxy::start(&q).await, SilentProxy::start(&e).await)
                    }
                };
                let (qa, ea) = link.addrs();
                ens.route_peer(from, to, &qa, &ea);
                links.insert((from, to), link);
            }
        }
        Mesh { links }
    }

    fn links_of(&self, k: u64) -> impl Iterator<Item = &Link> {
        self.links
            .iter()
            .filter(move |((a, b), _)| *a == k || *b == k)
            .map(|(_, l)| l)
    }

    /// Cut member `k` off from every other member.
    fn isolate(&self, k: u64) {
        for l in self.links_of(k) {
            l.block();
        }
    }

    fn heal(&self, k: u64) {
        for l in self.links_of(k) {
            l.heal();
        }
    }
}

/// A 3-voter ensemble behind a mesh of proxies, formed, with a write load running through
/// every member.
async fn partitioned_setup(root: &str, kind: Partition) -> (Ensemble, Mesh, Load) {
    let mut ens = EnsembleBuilder::new(3).build();
    let mesh = Mesh::new(&mut ens, kind).await;
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

/// The write `assert_stops_serving` tried through the isolated member is on every member or
/// on none, with the same zxid.
///
/// Giving up on that create only dropped its future: the request stays queued in `client`
/// and goes out whenever the client gets back to the member, which may be at any moment,
/// even between the checks of two members. So first settle it: a later request on the same
/// session is answered after it (a session's replies come in order), and once one is
/// answered, or the session has expired, the create has had its effect or never will.
async fn assert_isolated_write_all_or_nothing(ens: &Ensemble, client: &zk::Client) {
    within(
        "the isolated member's client to settle its queued requests",
        async {
            loop {
                match client.get_data("/").await {
                    Ok(_) | Err(zk::Error::SessionExpired) | Err(zk::Error::ClientClosed) => return,
                    // Not reconnected yet: ask again (the client waits for its connection).
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        },
    )
    .await;
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

/// Isolate a follower: it stops serving, the leader keeps leading with the other follower
/// (and counts one synced follower), writes go on; after healing the follower is back in
/// sync with every write.
async fn isolate_follower(kind: Partition, root: &str) {
    let (mut ens, mesh, load) = partitioned_setup(root, kind).await;
    let leader = ens.wait_formed();
    let f = ens.ids().into_iter().find(|&id| id != leader).unwrap();
    let others: Vec<u64> = ens.ids().into_iter().filter(|&id| id != f).collect();
    let (cf, state) = watched_session(&ens, f).await;

    mesh.isolate(f);
    assert_stops_serving(&ens, f, &cf, state).await;
    // The leader still has a quorum (itself and the other follower) and keeps leading.
    assert_eq!(ens.wait_leader_among(&others), leader);
    load.wait_more_acks(100, "the majority takes writes").await;
    assert_eq!(ens.mode(f), None, "member {f} still cut off");
    ens.wait_mntr(leader, "zk_synced_followers", "1");

    mesh.heal(f);
    assert_eq!(ens.wait_formed(), leader);
    assert_eq!(ens.wait_serving(f), "follower");
    load.wait_more_acks(50, "after healing").await;
    let logs = load.stop().await;
    verify_writes(&ens, &logs, root, &ens.ids()).await;
    assert_isolated_write_all_or_nothing(&ens, &cf).await;
}

/// Isolate the leader: it steps down, the other two elect one of them in a new epoch and
/// take writes; after healing the old leader follows and has every write.
async fn isolate_leader(kind: Partition, root: &str) {
    let (mut ens, mesh, load) = partitioned_setup(root, kind).await;
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
    verify_writes(&ens, &logs, root, &ens.ids()).await;
    assert_isolated_write_all_or_nothing(&ens, &cl).await;
    eprintln!(
        "old leader {old} synced after healing by: {:?}",
        log_lines_with(
            &ens.member(old).log_contents(),
            &["synchronising with leader"]
        )
    );

    // Writes sent to the old leader while it was cut off may sit in its log, never
    // committed. Whatever it did with them when it rejoined must survive a crash: after a
    // kill -9 and a restart (replaying its own log) it still agrees with the others.
    ens.kill9(old);
    ens.start(old);
    assert_eq!(ens.wait_formed(), new);
    verify_writes(&ens, &logs, root, &ens.ids()).await;
    assert_isolated_write_all_or_nothing(&ens, &cl).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn isolated_follower_stops_serving_and_rejoins_with_every_write() {
    isolate_follower(Partition::Loud, "/pf").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn isolated_leader_steps_down_majority_elects_and_old_leader_rejoins() {
    isolate_leader(Partition::Loud, "/pl").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn silently_isolated_follower_stops_serving_and_rejoins_with_every_write() {
    isolate_follower(Partition::Silent, "/spf").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn silently_isolated_leader_steps_down_majority_elects_and_old_leader_rejoins() {
    isolate_leader(Partition::Silent, "/spl").await;
}

/// A leader cut off (silently) from its followers keeps taking writes for a moment: it
/// proposes and logs them, but nobody else ever sees them, so they are never committed. The
/// majority elects a new leader and moves on; when the old leader rejoins it must drop those
/// entries (ZAB: truncate its log, or take a snapshot) — they never appear on any member,
/// not even on the old leader after a crash and a restart that replays its own log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_proposed_by_a_cut_off_leader_are_truncated_away() {
    let mut ens = EnsembleBuilder::new(3).build();
    let mesh = Mesh::new(&mut ens, Partition::Silent).await;
    ens.start_all();
    let old = ens.wait_formed();
    let others: Vec<u64> = ens.ids().into_iter().filter(|&id| id != old).collect();
    let c = ens.client(old).await;
    create_all(&c, "/t").await;
    c.create("/t/before", b"", &persistent())
        .await
        .expect("write before the partition");

    mesh.isolate(old);
    // Sent at once, these reach the leader long before it can notice the silence (syncLimit
    // ticks): it proposes them, but no follower receives them.
    let paths: Vec<String> = (0..5).map(|i| format!("/t/lost{i}")).collect();
    let lost: Vec<_> = paths
        .iter()
        .map(|p| c.create(p, b"", &persistent()))
        .collect();
    for (i, f) in lost.into_iter().enumerate() {
        let r = within("the write to fail", f).await;
        assert!(
            r.is_err(),
            "/t/lost{i} acknowledged by a leader cut off from its followers: {r:?}"
        );
    }
    drop(c);
    ens.wait_not_serving(old);
    let new = ens.wait_leader_among(&others);
    assert_ne!(new, old);
    let cn = ens.client(new).await;
    for i in 0..10 {
        cn.create(&format!("/t/new{i}"), b"", &persistent())
            .await
            .expect("write through the new leader");
    }

    mesh.heal(old);
    assert_eq!(ens.wait_formed(), new);
    assert_eq!(ens.mode(old).as_deref(), Some("follower"));
    let mut want: Vec<String> = (0..10).map(|i| format!("new{i}")).collect();
    want.push("before".to_string());
    want.sort();
    for (id, ch) in children_everywhere(&ens, "/t").await {
        assert_eq!(ch, want, "children of /t on member {id}");
    }
    let log = ens.member(old).log_contents();
    let kinds = sync_kinds(&log);
    assert!(
        matches!(
            kinds.first().map(String::as_str),
            Some("truncate" | "snapshot")
        ),
        "member {old} had uncommitted entries of the old epoch; it must truncate (or take a \
         snapshot) to rejoin, but synced by {kinds:?}: {:?}",
        log_lines_with(&log, &["synchronising with leader"])
    );

    // The old leader's own log no longer holds the lost writes.
    ens.kill9(old);
    ens.start(old);
    assert_eq!(ens.wait_formed(), new);
    for (id, ch) in children_everywhere(&ens, "/t").await {
        assert_eq!(
            ch, want,
            "children of /t on member {id} after restarting {old}"
        );
    }
}

/// The sorted children of `path` on every member, after a `sync` there.
async fn children_everywhere(ens: &Ensemble, path: &str) -> Vec<(u64, Vec<String>)> {
    let mut out = Vec::new();
    for id in ens.ids() {
        let c = ens.client(id).await;
        c.sync(path).await.expect("sync");
        let mut ch = c.list_children(path).await.expect("children");
        ch.sort();
        out.push((id, ch));
    }
    out
}
