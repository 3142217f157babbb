//! Every client operation: results, error codes, versions.

mod common;

use common::raw::{self, err, op, Enc, Raw, WORLD_ALL};
use common::*;
use zookeeper_client as zk;

#[test]
fn create_variants_reply_bodies() {
    let s = ServerBuilder::new().start();
    let mut r = Raw::connect(&s.addr(), 10_000);
    // create (1): path only.
    let rep = r.create("/c1", b"d", 0);
    assert_eq!(rep.err, err::OK);
    let mut d = rep.dec();
    assert_eq!(d.string().unwrap(), "/c1");
    assert!(d.is_empty(), "create (1) returns only the path");
    // create2 (15): path and stat.
    let body = Enc::new()
        .string("/c2")
        .buffer(b"dd")
        .acls(WORLD_ALL)
        .int(0)
        .into_vec();
    let rep = r.call(op::CREATE2, &body);
    assert_eq!(rep.err, err::OK);
    let mut d = rep.dec();
    assert_eq!(d.string().unwrap(), "/c2");
    let st = d.stat();
    assert!(d.is_empty());
    assert_eq!(st.czxid, rep.zxid, "reply header zxid is the create's zxid");
    assert_eq!(st.data_length, 2);
    // createContainer (19): path and stat; flags must be container (4).
    let body = Enc::new()
        .string("/c3")
        .buffer(b"")
        .acls(WORLD_ALL)
        .int(4)
        .into_vec();
    let rep = r.call(op::CREATE_CONTAINER, &body);
    assert_eq!(rep.err, err::OK);
    let mut d = rep.dec();
    assert_eq!(d.string().unwrap(), "/c3");
    assert_eq!(d.stat().czxid, rep.zxid);
    // NodeExists / NoNode.
    assert_eq!(r.create("/c1", b"", 0).err, err::NODE_EXISTS);
    assert_eq!(r.create("/nope/child", b"", 0).err, err::NO_NODE);
    // Sequential create returns the actual name.
    let rep = r.create("/c1/s-", b"", 2);
    assert_eq!(rep.dec().string().unwrap(), "/c1/s-0000000000");
    s.assert_healthy_raw();
}

#[test]
fn reply_zxids_track_writes() {
    let s = ServerBuilder::new().start();
    let mut r = Raw::connect(&s.addr(), 10_000);
    let a = r.create("/z", b"", 0);
    let b = r.set_data("/z", b"1", -1);
    assert_eq!(b.zxid, a.zxid + 1, "each write consumes exactly one zxid");
    let st = b.dec().stat();
    assert_eq!(st.mzxid, b.zxid);
    // Reads report the last committed zxid.
    let g = r.get_data("/z", false);
    assert_eq!(g.zxid, b.zxid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_rules() {
    let s = ServerBuilder::new().start();
    let c = s.client().await;
    c.create("/d", b"", &persistent()).await.unwrap();
    c.create("/d/x", b"", &persistent()).await.unwrap();
    assert_eq!(c.delete("/d", None).await.unwrap_err(), zk::Error::NotEmpty);
    assert_eq!(
        c.delete("/missing", None).await.unwrap_err(),
        zk::Error::NoNode
    );
    c.set_data("/d/x", b"1", None).await.unwrap();
    assert_eq!(
        c.delete("/d/x", Some(0)).await.unwrap_err(),
        zk::Error::BadVersion
    );
    c.delete("/d/x", Some(1)).await.unwrap();
    c.delete("/d", Some(0)).await.unwrap();
    assert_eq!(c.check_stat("/d").await.unwrap(), None);
    // NoNode beats BadVersion.
    assert_eq!(
        c.delete("/d", Some(7)).await.unwrap_err(),
        zk::Error::NoNode
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exists_get_set() {
    let s = ServerBuilder::new().start();
    let c = s.client().await;
    assert_eq!(c.check_stat("/x").await.unwrap(), None);
    assert_eq!(c.get_data("/x").await.unwrap_err(), zk::Error::NoNode);
    assert_eq!(
        c.set_data("/x", b"", None).await.unwrap_err(),
        zk::Error::NoNode
    );
    let (created, _) = c.create("/x", b"one", &persistent()).await.unwrap();
    assert_eq!(c.check_stat("/x").await.unwrap(), Some(created));
    assert_eq!(
        c.set_data("/x", b"two", Some(5)).await.unwrap_err(),
        zk::Error::BadVersion
    );
    let st = c.set_data("/x", b"two", Some(0)).await.unwrap();
    assert_eq!(st.version, 1);
    let (data, st2) = c.get_data("/x").await.unwrap();
    assert_eq!(data, b"two");
    assert_eq!(st2, st);
    // -1 matches any version.
    let st3 = c.set_data("/x", b"three", None).await.unwrap();
    assert_eq!(st3.version, 2);
    // Empty and binary data round-trip.
    let bin: Vec<u8> = (0..=255u8).collect();
    c.set_data("/x", &bin, None).await.unwrap();
    assert_eq!(c.get_data("/x").await.unwrap().0, bin);
    c.set_data("/x", b"", None).await.unwrap();
    let (d, st) = c.get_data("/x").await.unwrap();
    assert!(d.is_empty());
    assert_eq!(st.data_length, 0);
}

#[test]
fn null_data_reads_back_as_empty() {
    let s = ServerBuilder::new().start();
    let mut r = Raw::connect(&s.addr(), 10_000);
    let body = Enc::new()
        .string("/null")
        .null()
        .acls(WORLD_ALL)
        .int(0)
        .into_vec();
    assert_eq!(r.call(op::CREATE, &body).err, err::OK);
    let rep = r.get_data("/null", false);
    assert_eq!(rep.err, err::OK);
    let mut d = rep.dec();
    let data = d.buffer();
    assert!(data.as_deref().unwrap_or(&[]).is_empty(), "{data:?}");
    assert_eq!(d.stat().data_length, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_get_set_versions() {
    let s = ServerBuilder::new().start();
    let c = s.client().await;
    c.create("/a", b"", &persistent()).await.unwrap();
    let (acls, st) = c.get_acl("/a").await.unwrap();
    assert_eq!(
        acls,
        vec![zk::Acl::new(zk::Permission::ALL, zk::AuthId::anyone())]
    );
    assert_eq!(st.aversion, 0);
    let read_only = [zk::Acl::new(
        zk::Permission::READ | zk::Permission::ADMIN,
        zk::AuthId::anyone(),
    )];
    assert_eq!(
        c.set_acl("/a", &zk::Acls::new(&read_only), Some(3))
            .await
            .unwrap_err(),
        zk::Error::BadVersion
    );
    let st = c
        .set_acl("/a", &zk::Acls::new(&read_only), Some(0))
        .await
        .unwrap();
    assert_eq!(st.aversion, 1);
    let (acls, st2) = c.get_acl("/a").await.unwrap();
    assert_eq!(acls, read_only.to_vec());
    assert_eq!(st2.aversion, 1);
    assert_eq!(c.get_acl("/missing").await.unwrap_err(), zk::Error::NoNode);
    assert_eq!(
        c.set_acl("/missing", &zk::Acls::anyone_all(), None)
            .await
            .unwrap_err(),
        zk::Error::NoNode
    );
    // The new ACL is enforced: no WRITE any more.
    assert_eq!(
        c.set_data("/a", b"x", None).await.unwrap_err(),
        zk::Error::NoAuth
    );
    // Root and /zookeeper ACLs are world:anyone ALL.
    let (acls, _) = c.get_acl("/").await.unwrap();
    assert_eq!(
        acls,
        vec![zk::Acl::new(zk::Permission::ALL, zk::AuthId::anyone())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_and_children2() {
    let s = ServerBuilder::new().start();
    let c = s.client().await;
    c.create("/k", b"", &persistent()).await.unwrap();
    for n in ["b", "a", "c"] {
        c.create(&format!("/k/{n}"), b"", &persistent())
            .await
            .unwrap();
    }
    let mut kids = c.list_children("/k").await.unwrap();
    kids.sort();
    assert_eq!(kids, vec!["a", "b", "c"]);
    let (mut kids2, st) = c.get_children("/k").await.unwrap();
    kids2.sort();
    assert_eq!(kids2, kids);
    assert_eq!(st.num_children, 3);
    assert_eq!(Some(st), c.check_stat("/k").await.unwrap());
    assert_eq!(
        c.list_children("/missing").await.unwrap_err(),
        zk::Error::NoNode
    );
    assert_eq!(
        c.get_children("/missing").await.unwrap_err(),
        zk::Error::NoNode
    );
    assert_eq!(c.list_children("/k/a").await.unwrap(), Vec::<String>::new());

    // Raw getChildren (8) has no stat; getChildren2 (12) has one.
    let mut r = Raw::connect(&s.addr(), 10_000);
    let rep = r.get_children("/k", false);
    let mut d = rep.dec();
    assert_eq!(d.strings().len(), 3);
    assert!(d.is_empty());
    let rep = r.call(
        op::GET_CHILDREN2,
        &Enc::new().string("/k").bool(false).into_vec(),
    );
    let mut d = rep.dec();
    assert_eq!(d.strings().len(), 3);
    assert_eq!(d.stat().num_children, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_echoes_path() {
    let s = ServerBuilder::new().start();
    let c = s.client().await;
    c.sync("/").await.unwrap();
    c.sync("/zookeeper").await.unwrap();
    let mut r = Raw::connect(&s.addr(), 10_000);
    for p in ["/zookeeper", "/does/not/exist"] {
        let rep = r.call(op::SYNC, &Enc::new().string(p).into_vec());
        assert_eq!(rep.err, err::OK, "sync {p}");
        assert_eq!(rep.dec().string().unwrap(), p);
    }
}

#[test]
fn standalone_check() {
    let s = ServerBuilder::new().start();
    let mut r = Raw::connect(&s.addr(), 10_000);
    assert_eq!(r.create("/chk", b"", 0).err, err::OK);
    let check = |path: &str, v: i32| Enc::new().string(path).int(v).into_vec();
    assert_eq!(r.call(op::CHECK, &check("/chk", 3)).err, err::BAD_VERSION);
    assert_eq!(r.call(op::CHECK, &check("/nope", -1)).err, err::NO_NODE);
    if is_corral() {
        // ZooKeeper 3.8.0 fails to serialize the reply of a successful standalone check (and
        // sends nothing); 3.9 answers OK.
        assert_eq!(r.call(op::CHECK, &check("/chk", 0)).err, err::OK);
        assert_eq!(r.call(op::CHECK, &check("/chk", -1)).err, err::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_read() {
    let s = ServerBuilder::new().start();
    let c = s.client().await;
    c.create("/m", b"md", &persistent()).await.unwrap();
    c.create("/m/a", b"", &persistent()).await.unwrap();
    let mut reader = c.new_multi_reader();
    reader.add_get_data("/m").unwrap();
    reader.add_get_children("/m").unwrap();
    reader.add_get_data("/missing").unwrap();
    reader.add_get_children("/missing").unwrap();
    let results = reader.commit().await.unwrap();
    assert_eq!(results.len(), 4);
    match &results[0] {
        zk::MultiReadResult::Data { data, stat } => {
            assert_eq!(data, b"md");
            assert_eq!(stat.num_children, 1);
        }
        other => panic!("{other:?}"),
    }
    match &results[1] {
        zk::MultiReadResult::Children { children } => assert_eq!(children, &vec!["a".to_string()]),
        other => panic!("{other:?}"),
    }
    for r in &results[2..] {
        match r {
            zk::MultiReadResult::Error { err } => assert_eq!(err, &zk::Error::NoNode),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_ephemerals_and_all_children_number() {
    let s = ServerBuilder::new().start();
    let c = s.client().await;
    c.create("/t", b"", &persistent()).await.unwrap();
    c.create("/t/e1", b"", &ephemeral()).await.unwrap();
    c.create("/t/p", b"", &persistent()).await.unwrap();
    c.create("/t/p/e2", b"", &ephemeral()).await.unwrap();
    c.create("/other-e", b"", &ephemeral()).await.unwrap();
    let mut all = c.list_ephemerals("/").await.unwrap();
    all.sort();
    assert_eq!(all, vec!["/other-e", "/t/e1", "/t/p/e2"]);
    let mut under = c.list_ephemerals("/t").await.unwrap();
    under.sort();
    assert_eq!(under, vec!["/t/e1", "/t/p/e2"]);
    // Prefix match on the path string, not on whole components.
    let mut pre = c.list_ephemerals("/t/p").await.unwrap();
    pre.sort();
    assert_eq!(pre, vec!["/t/p/e2"]);
    assert_eq!(
        c.list_ephemerals("/nowhere").await.unwrap(),
        Vec::<String>::new()
    );

    assert_eq!(c.count_descendants_number("/t").await.unwrap(), 3);
    assert_eq!(c.count_descendants_number("/t/p/e2").await.unwrap(), 0);
    // / has /zookeeper, /zookeeper/quota, /zookeeper/config, /t (+3) and /other-e.
    assert_eq!(
        c.count_descendants_number("/").await.unwrap(),
        3 + 1 + 3 + 1
    );
    assert_eq!(
        c.count_descendants_number("/missing").await.unwrap_err(),
        zk::Error::NoNode
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_am_i_and_digest_auth() {
    let s = ServerBuilder::new().start();
    let c = s.client().await;
    let users = c.list_auth_users().await.unwrap();
    assert_eq!(users, vec![zk::AuthUser::new("ip", "127.0.0.1")]);
    c.auth("digest", b"alice:secret").await.unwrap();
    let mut users = c.list_auth_users().await.unwrap();
    users.sort_by(|a, b| a.scheme().cmp(b.scheme()));
    assert_eq!(
        users,
        vec![
            zk::AuthUser::new("digest", "alice"),
            zk::AuthUser::new("ip", "127.0.0.1")
        ]
    );
}

#[test]
fn sasl_on_a_server_without_sasl() {
    let s = ServerBuilder::new().start();
    let mut r = Raw::connect(&s.addr(), 10_000);
    let rep = r.call(op::SASL, &Enc::new().buffer(b"token").into_vec());
    // A server with SASL off answers OK with a null token and keeps the connection.
    assert_eq!(rep.err, err::OK);
    assert_eq!(rep.dec().buffer(), None);
    assert_eq!(r.exists("/", false).err, err::OK);
    s.assert_healthy_raw();
}

#[test]
fn reconfig_is_disabled() {
    let s = ServerBuilder::new().start();
    let mut r = Raw::connect(&s.addr(), 10_000);
    let body = Enc::new()
        .string("")
        .string("")
        .string("")
        .long(-1)
        .into_vec();
    let rep = r.call(op::RECONFIG, &body);
    assert_eq!(rep.err, err::RECONFIG_DISABLED);
    assert!(rep.body.is_empty());
    assert_eq!(r.exists("/", false).err, err::OK);
    s.assert_healthy_raw();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconfig_through_client_is_disabled() {
    let s = ServerBuilder::new().start();
    let c = s.client().await;
    let r = c
        .update_ensemble(
            zk::EnsembleUpdate::New {
                ensemble: ["server.1=127.0.0.1:2888:3888;2181"].iter().copied(),
            },
            None,
        )
        .await;
    assert_eq!(r.unwrap_err(), zk::Error::ReconfigDisabled);
}

#[test]
fn check_and_remove_watches() {
    let s = ServerBuilder::new().start();
    let mut r = Raw::connect(&s.addr(), 10_000);
    let mut w = Raw::connect(&s.addr(), 10_000);
    assert_eq!(r.create("/cw", b"", 0).err, err::OK);
    let wt = |p: &str, t: i32| Enc::new().string(p).int(t).into_vec();
    const CHILD: i32 = 1;
    const DATA: i32 = 2;
    const ANY: i32 = 3;
    assert_eq!(
        w.call(op::CHECK_WATCHES, &wt("/cw", DATA)).err,
        err::NO_WATCHER
    );
    assert_eq!(w.get_data("/cw", true).err, err::OK);
    assert_eq!(w.call(op::CHECK_WATCHES, &wt("/cw", DATA)).err, err::OK);
    assert_eq!(
        w.call(op::CHECK_WATCHES, &wt("/cw", CHILD)).err,
        err::NO_WATCHER
    );
    assert_eq!(w.call(op::CHECK_WATCHES, &wt("/cw", ANY)).err, err::OK);
    // Another session's watches are not ours. (ZooKeeper 3.8's containsWatcher ignores whose
    // watch it is and answers OK here — a bug; corral must answer NoWatcher.)
    let other = r.call(op::CHECK_WATCHES, &wt("/cw", DATA)).err;
    if is_corral() {
        assert_eq!(other, err::NO_WATCHER);
    } else {
        assert_eq!(other, err::OK);
    }
    // Removing someone else's watch is refused by both.
    assert_eq!(
        r.call(op::REMOVE_WATCHES, &wt("/cw", DATA)).err,
        err::NO_WATCHER
    );
    assert_eq!(w.call(op::REMOVE_WATCHES, &wt("/cw", DATA)).err, err::OK);
    assert_eq!(
        w.call(op::REMOVE_WATCHES, &wt("/cw", DATA)).err,
        err::NO_WATCHER
    );
    assert_eq!(
        w.call(op::CHECK_WATCHES, &wt("/cw", ANY)).err,
        err::NO_WATCHER
    );
    // The removed watch does not fire.
    assert_eq!(r.set_data("/cw", b"1", -1).err, err::OK);
    assert_eq!(w.get_data("/cw", false).err, err::OK);
    assert!(w.events.is_empty(), "removed watch fired: {:?}", w.events);
    // Child watch: remove with ANY.
    assert_eq!(w.get_children("/cw", true).err, err::OK);
    assert_eq!(w.call(op::CHECK_WATCHES, &wt("/cw", CHILD)).err, err::OK);
    assert_eq!(w.call(op::REMOVE_WATCHES, &wt("/cw", ANY)).err, err::OK);
    assert_eq!(r.create("/cw/kid", b"", 0).err, err::OK);
    assert_eq!(w.get_data("/cw", false).err, err::OK);
    assert!(
        w.events.is_empty(),
        "removed child watch fired: {:?}",
        w.events
    );
}

#[test]
fn set_watches_fires_for_changes_since_relative_zxid() {
    let s = ServerBuilder::new().start();
    let mut a = Raw::connect(&s.addr(), 10_000);
    assert_eq!(a.create("/sw", b"", 0).err, err::OK);
    assert_eq!(a.create("/sw-kids", b"", 0).err, err::OK);
    assert_eq!(a.create("/sw-gone", b"", 0).err, err::OK);
    assert_eq!(a.create("/sw-untouched", b"", 0).err, err::OK);
    let seen = a.exists("/", false).zxid;
    // Changes made "while we were away".
    let mut b = Raw::connect(&s.addr(), 10_000);
    assert_eq!(b.set_data("/sw", b"new", -1).err, err::OK);
    assert_eq!(b.create("/sw-new", b"", 0).err, err::OK);
    assert_eq!(b.create("/sw-kids/k", b"", 0).err, err::OK);
    assert_eq!(b.delete("/sw-gone", -1).err, err::OK);
    // A fresh session re-registers watches as of `seen`.
    let mut c = Raw::connect(&s.addr(), 10_000);
    let body = Enc::new()
        .long(seen)
        .strings(&["/sw", "/sw-gone", "/sw-untouched", "/sw-absent"]) // data watches
        .strings(&["/sw-new", "/sw-never"]) // exist watches
        .strings(&["/sw-kids"]) // child watches
        .into_vec();
    c.send(raw::xid::SET_WATCHES, op::SET_WATCHES, &body);
    let mut events = Vec::new();
    loop {
        let f = c.read_any().unwrap();
        if f.xid == raw::xid::SET_WATCHES {
            assert_eq!(f.err, err::OK);
            break;
        }
        assert_eq!(f.xid, raw::xid::NOTIFICATION);
        events.push(raw::parse_event(&f));
    }
    // Events for changes since `seen` may come before or right after the reply.
    assert_eq!(c.exists("/", false).err, err::OK);
    events.append(&mut c.events);
    let mut got: Vec<(i32, String)> = events
        .iter()
        .map(|e| (e.event_type, e.path.clone()))
        .collect();
    got.sort();
    let mut want = vec![
        (raw::event::NODE_DATA_CHANGED, "/sw".to_string()),
        (raw::event::NODE_DELETED, "/sw-gone".to_string()),
        (raw::event::NODE_CREATED, "/sw-new".to_string()),
        (raw::event::NODE_CHILDREN_CHANGED, "/sw-kids".to_string()),
        // A data watch on a node that does not exist is reported as deleted.
        (raw::event::NODE_DELETED, "/sw-absent".to_string()),
    ];
    want.sort();
    assert_eq!(got, want);
    // The untouched ones are now registered: a change fires them.
    assert_eq!(b.set_data("/sw-untouched", b"", -1).err, err::OK);
    let ev = c.next_event();
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (raw::event::NODE_DATA_CHANGED, "/sw-untouched")
    );
    assert_eq!(b.create("/sw-never", b"", 0).err, err::OK);
    let ev = c.next_event();
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (raw::event::NODE_CREATED, "/sw-never")
    );
}
