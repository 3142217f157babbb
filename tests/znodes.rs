//! Znode kinds and Stat fields: persistent, ephemeral, sequential, containers, TTL nodes, the
//! /zookeeper subtree, and path validation.

mod common;

use std::time::Duration;

use common::raw::{err, op, Enc, Raw, WORLD_ALL};
use common::*;
use zookeeper_client as zk;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_node_stat_fields() {
    let s = ServerBuilder::new().start();
    let c = s.client().await;
    let (st, seq) = c.create("/n", b"abc", &persistent()).await.unwrap();
    assert_eq!(seq.into_i64(), -1);
    assert!(st.czxid > 0);
    assert_eq!(st.mzxid, st.czxid);
    assert_eq!(st.pzxid, st.czxid, "a new node's pzxid is its czxid");
    assert!(st.ctime > 0);
    assert_eq!(st.mtime, st.ctime);
    assert_eq!(st.version, 0);
    assert_eq!(st.cversion, 0);
    assert_eq!(st.aversion, 0);
    assert_eq!(st.ephemeral_owner, 0);
    assert_eq!(st.data_length, 3);
    assert_eq!(st.num_children, 0);
    let (data, st2) = c.get_data("/n").await.unwrap();
    assert_eq!(data, b"abc");
    assert_eq!(st2, st, "getData returns the same stat as create2");

    let st3 = c.set_data("/n", b"hello!", None).await.unwrap();
    assert_eq!(st3.czxid, st.czxid);
    assert!(st3.mzxid > st.czxid);
    assert_eq!(st3.pzxid, st.pzxid, "setData does not touch pzxid");
    assert_eq!(st3.ctime, st.ctime);
    assert!(st3.mtime >= st.mtime);
    assert_eq!(st3.version, 1);
    assert_eq!(st3.cversion, 0);
    assert_eq!(st3.data_length, 6);
    let st4 = c.set_data("/n", b"", Some(1)).await.unwrap();
    assert_eq!(st4.version, 2);
    assert_eq!(st4.data_length, 0);
    assert!(st4.mzxid > st3.mzxid);

    // Children: parent cversion, numChildren and pzxid.
    let (c1, _) = c.create("/n/c1", b"", &persistent()).await.unwrap();
    let (c2, _) = c.create("/n/c2", b"", &persistent()).await.unwrap();
    assert!(c2.czxid > c1.czxid);
    let (_, p) = c.get_data("/n").await.unwrap();
    assert_eq!(p.num_children, 2);
    assert_eq!(p.cversion, 2);
    assert_eq!(
        p.pzxid, c2.czxid,
        "parent pzxid is the czxid of the newest child"
    );
    assert_eq!(
        p.mzxid, st4.mzxid,
        "child changes do not touch the parent's mzxid"
    );
    assert_eq!(p.version, 2);
    c.delete("/n/c1", None).await.unwrap();
    let (_, p2) = c.get_data("/n").await.unwrap();
    assert_eq!(p2.num_children, 1);
    assert_eq!(p2.cversion, 3);
    assert!(p2.pzxid > c2.czxid, "deleting a child moves pzxid");
    // Children's data changes do not touch the parent.
    c.set_data("/n/c2", b"zz", None).await.unwrap();
    let (_, p3) = c.get_data("/n").await.unwrap();
    assert_eq!(p3, p2);

    // setACL bumps aversion only.
    c.set_acl("/n", &zk::Acls::anyone_all(), None)
        .await
        .unwrap();
    let (_, p4) = c.get_data("/n").await.unwrap();
    assert_eq!(p4.aversion, 1);
    assert_eq!(p4.mzxid, p3.mzxid);
    assert_eq!(p4.version, p3.version);
}

#[test]
fn delete_zxid_becomes_parent_pzxid() {
    let s = ServerBuilder::new().start();
    let mut r = Raw::connect(&s.addr(), 10_000);
    assert_eq!(r.create("/p", b"", 0).err, err::OK);
    let c = r.create("/p/c", b"", 0);
    assert_eq!(c.err, err::OK);
    let d = r.delete("/p/c", -1);
    assert_eq!(d.err, err::OK);
    assert!(d.zxid > c.zxid);
    let g = r.exists("/p", false);
    let st = g.dec().stat();
    assert_eq!(st.pzxid, d.zxid, "pzxid is the zxid of the delete");
    assert_eq!(st.cversion, 2);
    // A failed write does not change the tree and does not move pzxid.
    assert_eq!(r.delete("/p/c", -1).err, err::NO_NODE);
    let st2 = r.exists("/p", false).dec().stat();
    assert_eq!(st2, st);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_nodes() {
    let s = ServerBuilder::new().start();
    let c = s.client().await;
    let (st, _) = c.create("/e", b"x", &ephemeral()).await.unwrap();
    assert_eq!(st.ephemeral_owner, c.session_id().0);
    assert_ne!(st.ephemeral_owner, 0);
    assert_eq!(
        c.create("/e/child", b"", &persistent()).await.unwrap_err(),
        zk::Error::NoChildrenForEphemerals
    );
    assert_eq!(
        c.create("/e/child", b"", &ephemeral()).await.unwrap_err(),
        zk::Error::NoChildrenForEphemerals
    );
    let other = s.client().await;
    let (_, st2) = other.get_data("/e").await.unwrap();
    assert_eq!(st2.ephemeral_owner, c.session_id().0);
    assert_eq!(
        other.list_ephemerals("/").await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        c.list_ephemerals("/").await.unwrap(),
        vec!["/e".to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_numbers_follow_parent_cversion() {
    let s = ServerBuilder::new().start();
    let c = s.client().await;
    c.create("/s", b"", &persistent()).await.unwrap();
    let seq = mode(zk::CreateMode::PersistentSequential);
    let (_, n0) = c.create("/s/q-", b"", &seq).await.unwrap();
    assert_eq!(n0.into_i64(), 0);
    assert_eq!(n0.to_string(), "0000000000");
    assert!(c.check_stat("/s/q-0000000000").await.unwrap().is_some());
    // The counter is the number of children ever created under the parent (ZooKeeper's
    // internal cversion): other creates consume numbers, deletes do not.
    c.create("/s/plain", b"", &persistent()).await.unwrap(); // creates: 2
    c.delete("/s/plain", None).await.unwrap(); // creates: still 2
    let (_, n2) = c.create("/s/q-", b"", &seq).await.unwrap();
    assert_eq!(n2.into_i64(), 2);
    assert!(c.check_stat("/s/q-0000000002").await.unwrap().is_some());
    // Different prefixes share the parent's counter.
    let (_, n3) = c.create("/s/other-", b"", &seq).await.unwrap();
    assert_eq!(n3.into_i64(), 3);
    assert!(c.check_stat("/s/other-0000000003").await.unwrap().is_some());
    // Ephemeral sequential.
    let eseq = mode(zk::CreateMode::EphemeralSequential);
    let (st, n4) = c.create("/s/e-", b"", &eseq).await.unwrap();
    assert_eq!(n4.into_i64(), 4);
    assert_eq!(st.ephemeral_owner, c.session_id().0);
    let mut children = c.list_children("/s").await.unwrap();
    children.sort();
    assert_eq!(
        children,
        vec![
            "e-0000000004",
            "other-0000000003",
            "q-0000000000",
            "q-0000000002"
        ]
    );
    // The visible cversion counts creates and deletes: 2 * creates - numChildren = 2*5 - 4.
    let (_, parent) = c.get_data("/s").await.unwrap();
    assert_eq!(parent.cversion, 6);
}

#[test]
fn sequential_name_can_be_empty_prefix() {
    let s = ServerBuilder::new().start();
    let mut r = Raw::connect(&s.addr(), 10_000);
    assert_eq!(r.create("/s", b"", 0).err, err::OK);
    let rep = r.create("/s/", b"", 2);
    assert_eq!(rep.err, err::OK);
    assert_eq!(rep.dec().string().unwrap(), "/s/0000000000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_is_deleted_after_last_child_goes() {
    let s = ServerBuilder::new().start();
    let c = s.client().await;
    let (st, _) = c
        .create("/box", b"", &mode(zk::CreateMode::Container))
        .await
        .unwrap();
    assert_eq!(st.ephemeral_owner, 0);
    c.create("/box/item", b"", &persistent()).await.unwrap();
    c.delete("/box/item", None).await.unwrap();
    poll_until_async("empty container reaped", || async {
        c.check_stat("/box").await.unwrap().is_none().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_with_children_is_kept() {
    let s = ServerBuilder::new().start();
    let c = s.client().await;
    c.create("/box", b"", &mode(zk::CreateMode::Container))
        .await
        .unwrap();
    c.create("/box/a", b"", &persistent()).await.unwrap();
    c.create("/box/b", b"", &persistent()).await.unwrap();
    c.delete("/box/a", None).await.unwrap();
    // A second, empty container that had a child is our "reaper ran" signal.
    c.create("/probe", b"", &mode(zk::CreateMode::Container))
        .await
        .unwrap();
    c.create("/probe/x", b"", &persistent()).await.unwrap();
    c.delete("/probe/x", None).await.unwrap();
    poll_until_async("probe container reaped", || async {
        c.check_stat("/probe")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(c.check_stat("/box").await.unwrap().is_some());
    assert_eq!(
        c.list_children("/box").await.unwrap(),
        vec!["b".to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_node_expires() {
    let s = ServerBuilder::new().start();
    let c = s.client().await;
    let opts = persistent().with_ttl(Duration::from_millis(100));
    let (st, _) = c.create("/ttl", b"x", &opts).await.unwrap();
    // TTL nodes are stored with a special ephemeralOwner, but clients see 0.
    assert_eq!(st.ephemeral_owner, 0);
    poll_until_async("ttl node reaped", || async {
        c.check_stat("/ttl").await.unwrap().is_none().then_some(())
    })
    .await;
    // Sequential TTL nodes too.
    let opts = mode(zk::CreateMode::PersistentSequential).with_ttl(Duration::from_millis(100));
    let (_, n) = c.create("/ttlseq-", b"", &opts).await.unwrap();
    let path = format!("/ttlseq-{n}");
    poll_until_async("sequential ttl node reaped", || async {
        c.check_stat(&path).await.unwrap().is_none().then_some(())
    })
    .await;
}

#[test]
fn ttl_rules() {
    let s = ServerBuilder::new().start();
    let mut r = Raw::connect(&s.addr(), 10_000);
    let ttl = |path: &str, flags: i32, ttl: i64| {
        Enc::new()
            .string(path)
            .buffer(b"")
            .acls(WORLD_ALL)
            .int(flags)
            .long(ttl)
            .into_vec()
    };
    // ttl must be > 0 and the mode must be persistent (TTL flags 5/6).
    assert_eq!(
        r.call(op::CREATE_TTL, &ttl("/t0", 5, 0)).err,
        err::BAD_ARGUMENTS
    );
    assert_eq!(
        r.call(op::CREATE_TTL, &ttl("/t1", 5, -5)).err,
        err::BAD_ARGUMENTS
    );
    assert_eq!(
        r.call(op::CREATE_TTL, &ttl("/t2", 1, 1000)).err,
        err::BAD_ARGUMENTS
    );
    let ok = r.call(op::CREATE_TTL, &ttl("/t3", 5, 60_000));
    assert_eq!(ok.err, err::OK);
    let mut d = ok.dec();
    assert_eq!(d.string().unwrap(), "/t3");
    let st = d.stat();
    assert_eq!(st.ephemeral_owner, 0);
    assert_eq!(st.czxid, ok.zxid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_unimplemented_when_extended_types_disabled() {
    let s = ServerBuilder::new().extended_types_enabled(false).start();
    let c = s.client().await;
    let opts = persistent().with_ttl(Duration::from_millis(1000));
    assert_eq!(
        c.create("/ttl", b"x", &opts).await.unwrap_err(),
        zk::Error::Unimplemented
    );
    assert_eq!(c.check_stat("/ttl").await.unwrap(), None);
    // Containers do not need extended types.
    c.create("/box", b"", &mode(zk::CreateMode::Container))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_subtree_exists() {
    let s = ServerBuilder::new().start();
    let c = s.client().await;
    let (_, root) = c.get_data("/").await.unwrap();
    assert_eq!(root.num_children, 1, "fresh tree: only /zookeeper under /");
    assert_eq!(
        c.list_children("/").await.unwrap(),
        vec!["zookeeper".to_string()]
    );
    let mut kids = c.list_children("/zookeeper").await.unwrap();
    kids.sort();
    assert_eq!(kids, vec!["config".to_string(), "quota".to_string()]);
    assert!(c.check_stat("/zookeeper/quota").await.unwrap().is_some());
    let (_, st) = c.get_data("/zookeeper/config").await.unwrap();
    assert_eq!(st.ephemeral_owner, 0);
    let (config, _) = c.get_config().await.unwrap();
    // Standalone without dynamic reconfig: the config node is empty.
    assert!(config.is_empty(), "{:?}", String::from_utf8_lossy(&config));
}

/// Creates a node at `path` with the raw client and returns the error code.
fn raw_create(r: &mut Raw, path: &[u8], flags: i32) -> i32 {
    let b = Enc::new()
        .buffer(path)
        .buffer(b"")
        .acls(WORLD_ALL)
        .int(flags)
        .into_vec();
    r.call(op::CREATE, &b).err
}

#[test]
fn path_validation() {
    let s = ServerBuilder::new().start();
    let mut r = Raw::connect(&s.addr(), 10_000);
    assert_eq!(raw_create(&mut r, b"/p", 0), err::OK);
    let bad_args: &[&[u8]] = &[
        b"",
        b"a",
        b"//a",
        b"/\0",
        b"/.",
        b"/..",
        b"/p/",
        b"/p/.",
        b"/p/..",
        b"/p/\0",
        b"/p/a\x01b",
        b"/p/\x1f",
        b"/p/\x7f",
        "/p/\u{85}".as_bytes(),
        "/p/\u{9f}".as_bytes(),
        "/p/\u{ffff}".as_bytes(),
        "/p/\u{e000}".as_bytes(),
    ];
    for p in bad_args {
        assert_eq!(
            raw_create(&mut r, p, 0),
            err::BAD_ARGUMENTS,
            "create {:?}",
            String::from_utf8_lossy(p)
        );
    }
    // ZooKeeper looks the parent up before validating the last component: a path whose parent
    // cannot exist answers NoNode.
    for p in ["/p/./b", "/p/../b", "/p//b", "/missing/", "/missing/x"] {
        assert_eq!(
            raw_create(&mut r, p.as_bytes(), 0),
            err::NO_NODE,
            "create {p:?}"
        );
    }
    assert_eq!(raw_create(&mut r, b"/", 0), err::NODE_EXISTS);
    // Dots are fine inside names; so are non-control unicode characters.
    for p in [
        "/p/a..b",
        "/p/.a",
        "/p/a.",
        "/p/zookeeper",
        "/p/\u{e9}t\u{e9}",
        "/p/\u{2000}",
    ] {
        assert_eq!(raw_create(&mut r, p.as_bytes(), 0), err::OK, "create {p:?}");
    }
    // Reads do not validate: an invalid path simply does not exist.
    for p in ["a", "/p/", "//a"] {
        assert_eq!(r.get_data(p, false).err, err::NO_NODE, "getData {p:?}");
    }
    // zookeeper-client rejects these before sending. ZooKeeper's delete does not validate the
    // path beyond needing a '/': an invalid one just does not exist. setData validates.
    assert_eq!(r.delete("a", -1).err, err::BAD_ARGUMENTS);
    assert_eq!(r.delete("", -1).err, err::BAD_ARGUMENTS);
    assert_eq!(r.delete("/p/", -1).err, err::NO_NODE);
    assert_eq!(r.delete("//a", -1).err, err::NO_NODE);
    assert_eq!(r.set_data("a", b"x", -1).err, err::BAD_ARGUMENTS);
    assert_eq!(r.set_data("/p/", b"x", -1).err, err::BAD_ARGUMENTS);
    s.assert_healthy_raw();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cannot_delete_or_create_root_or_system_nodes() {
    let s = ServerBuilder::new().start();
    let mut r = Raw::connect(&s.addr(), 10_000);
    let del_root = r.delete("/", -1);
    assert_eq!(del_root.err, err::BAD_ARGUMENTS);
    for p in ["/zookeeper", "/zookeeper/quota", "/zookeeper/config"] {
        assert_eq!(r.delete(p, -1).err, err::BAD_ARGUMENTS, "delete {p}");
    }
    assert_eq!(r.create("/zookeeper", b"", 0).err, err::NODE_EXISTS);
    s.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_reaped_after_ephemeral_child_session_closes() {
    let s = ServerBuilder::new().start();
    let c = s.client().await;
    c.create("/box", b"", &mode(zk::CreateMode::Container))
        .await
        .unwrap();
    let owner = s.client().await;
    owner.create("/box/e", b"", &ephemeral()).await.unwrap();
    drop(owner);
    poll_until_async("container emptied by session close is reaped", || async {
        c.check_stat("/box").await.unwrap().is_none().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_node_with_children_is_kept() {
    let s = ServerBuilder::new().start();
    let c = s.client().await;
    let ttl = persistent().with_ttl(Duration::from_millis(100));
    c.create("/t", b"", &ttl).await.unwrap();
    c.create("/t/kid", b"", &persistent()).await.unwrap();
    // Signal that the reaper ran: a childless TTL node created afterwards disappears.
    c.create("/probe", b"", &ttl).await.unwrap();
    poll_until_async("probe ttl node reaped", || async {
        c.check_stat("/probe")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(c.check_stat("/t").await.unwrap().is_some());
    c.delete("/t/kid", None).await.unwrap();
    poll_until_async("ttl node reaped once childless", || async {
        c.check_stat("/t").await.unwrap().is_none().then_some(())
    })
    .await;
}

#[test]
fn many_children() {
    let s = ServerBuilder::new().start();
    let mut r = Raw::connect(&s.addr(), 10_000);
    assert_eq!(r.create("/many", b"", 0).err, err::OK);
    let mut bytes = Vec::new();
    for i in 0..1000 {
        let body = Enc::new()
            .int(10_000 + i)
            .int(op::CREATE)
            .string(&format!("/many/c{i:04}"))
            .buffer(b"")
            .acls(WORLD_ALL)
            .int(0)
            .into_vec();
        bytes.extend(common::raw::frame(&body));
    }
    r.write_raw(&bytes).unwrap();
    for i in 0..1000 {
        let rep = r.read_reply();
        assert_eq!((rep.xid, rep.err), (10_000 + i, err::OK));
    }
    let rep = r.call(
        op::GET_CHILDREN2,
        &Enc::new().string("/many").bool(false).into_vec(),
    );
    let mut d = rep.dec();
    let mut kids = d.strings();
    kids.sort();
    assert_eq!(kids.len(), 1000);
    assert_eq!(kids[0], "c0000");
    assert_eq!(kids[999], "c0999");
    let st = d.stat();
    assert_eq!(st.num_children, 1000);
    assert_eq!(st.cversion, 1000);
    let rep = r.call(
        op::GET_ALL_CHILDREN_NUMBER,
        &Enc::new().string("/many").into_vec(),
    );
    assert_eq!(rep.dec().int(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_sessions_may_delete_an_ephemeral() {
    let s = ServerBuilder::new().start();
    let owner = s.client().await;
    let other = s.client().await;
    owner.create("/e", b"", &ephemeral()).await.unwrap();
    other.delete("/e", None).await.unwrap();
    assert_eq!(owner.check_stat("/e").await.unwrap(), None);
    assert_eq!(
        owner.list_ephemerals("/").await.unwrap(),
        Vec::<String>::new()
    );
    // The owner can create it again.
    owner.create("/e", b"", &ephemeral()).await.unwrap();
}
