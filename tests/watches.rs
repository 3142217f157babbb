//! Watches: one-shot trigger rules, persistent and recursive watches, ordering against replies,
//! re-registration after reconnect.

mod common;

use common::raw::{err, event, op, Enc, Event, Raw};
use common::*;
use zookeeper_client as zk;

/// Read `/` with the watching session and return the events it got before that reply. Every
/// event for a change that completed before the read was sent must be there.
fn drain_events(w: &mut Raw) -> Vec<(i32, String)> {
    assert_eq!(w.exists("/", false).err, err::OK);
    let evs: Vec<Event> = std::mem::take(&mut w.events);
    for e in &evs {
        assert_eq!(e.state, 3, "SyncConnected");
    }
    evs.into_iter().map(|e| (e.event_type, e.path)).collect()
}

fn ev(t: i32, p: &str) -> (i32, String) {
    (t, p.to_string())
}

#[test]
fn data_watch_rules() {
    let s = ServerBuilder::new().start();
    let mut w = Raw::connect(&s.addr(), 10_000);
    let mut o = Raw::connect(&s.addr(), 10_000);
    assert_eq!(o.create("/d", b"", 0).err, err::OK);

    // getData watch fires once on setData.
    assert_eq!(w.get_data("/d", true).err, err::OK);
    assert_eq!(o.set_data("/d", b"1", -1).err, err::OK);
    assert_eq!(o.set_data("/d", b"2", -1).err, err::OK);
    assert_eq!(
        drain_events(&mut w),
        vec![ev(event::NODE_DATA_CHANGED, "/d")]
    );
    // Not re-armed.
    assert_eq!(o.set_data("/d", b"3", -1).err, err::OK);
    assert_eq!(drain_events(&mut w), vec![]);

    // Child changes do not fire data watches.
    assert_eq!(w.get_data("/d", true).err, err::OK);
    assert_eq!(o.create("/d/kid", b"", 0).err, err::OK);
    assert_eq!(drain_events(&mut w), vec![]);
    assert_eq!(o.delete("/d/kid", -1).err, err::OK);
    assert_eq!(drain_events(&mut w), vec![]);

    // ... but deleting the node does (the same watch is still armed).
    assert_eq!(o.delete("/d", -1).err, err::OK);
    assert_eq!(drain_events(&mut w), vec![ev(event::NODE_DELETED, "/d")]);

    // getData and exists on the same path in one session share one watch: one event.
    assert_eq!(o.create("/d", b"", 0).err, err::OK);
    assert_eq!(w.get_data("/d", true).err, err::OK);
    assert_eq!(w.exists("/d", true).err, err::OK);
    assert_eq!(o.set_data("/d", b"x", -1).err, err::OK);
    assert_eq!(
        drain_events(&mut w),
        vec![ev(event::NODE_DATA_CHANGED, "/d")]
    );

    // A setData that fails (bad version) fires nothing.
    assert_eq!(w.get_data("/d", true).err, err::OK);
    assert_eq!(o.set_data("/d", b"y", 99).err, err::BAD_VERSION);
    assert_eq!(drain_events(&mut w), vec![]);
    // setACL does not fire data watches either.
    let acl = Enc::new()
        .string("/d")
        .acls(common::raw::WORLD_ALL)
        .int(-1)
        .into_vec();
    assert_eq!(o.call(op::SET_ACL, &acl).err, err::OK);
    assert_eq!(drain_events(&mut w), vec![]);
    // Setting the same data still fires.
    assert_eq!(o.set_data("/d", b"x", -1).err, err::OK);
    assert_eq!(
        drain_events(&mut w),
        vec![ev(event::NODE_DATA_CHANGED, "/d")]
    );
}

#[test]
fn exists_watch_rules() {
    let s = ServerBuilder::new().start();
    let mut w = Raw::connect(&s.addr(), 10_000);
    let mut o = Raw::connect(&s.addr(), 10_000);
    // exists watch on a missing node fires NodeCreated.
    assert_eq!(w.exists("/e", true).err, err::NO_NODE);
    assert_eq!(o.create("/e", b"", 0).err, err::OK);
    assert_eq!(drain_events(&mut w), vec![ev(event::NODE_CREATED, "/e")]);
    // On an existing node: NodeDataChanged, then NodeDeleted.
    assert_eq!(w.exists("/e", true).err, err::OK);
    assert_eq!(o.set_data("/e", b"1", -1).err, err::OK);
    assert_eq!(
        drain_events(&mut w),
        vec![ev(event::NODE_DATA_CHANGED, "/e")]
    );
    assert_eq!(w.exists("/e", true).err, err::OK);
    assert_eq!(o.delete("/e", -1).err, err::OK);
    assert_eq!(drain_events(&mut w), vec![ev(event::NODE_DELETED, "/e")]);
    // getData on a missing node does not leave a watch.
    assert_eq!(w.get_data("/e", true).err, err::NO_NODE);
    assert_eq!(o.create("/e", b"", 0).err, err::OK);
    assert_eq!(drain_events(&mut w), vec![]);
    // getChildren on a missing node does not either.
    assert_eq!(w.get_children("/f", true).err, err::NO_NODE);
    assert_eq!(o.create("/f", b"", 0).err, err::OK);
    assert_eq!(o.create("/f/x", b"", 0).err, err::OK);
    assert_eq!(drain_events(&mut w), vec![]);
}

#[test]
fn child_watch_rules() {
    let s = ServerBuilder::new().start();
    let mut w = Raw::connect(&s.addr(), 10_000);
    let mut o = Raw::connect(&s.addr(), 10_000);
    assert_eq!(o.create("/c", b"", 0).err, err::OK);
    assert_eq!(w.get_children("/c", true).err, err::OK);
    // Data changes of the node or of children do not fire child watches.
    assert_eq!(o.set_data("/c", b"1", -1).err, err::OK);
    assert_eq!(drain_events(&mut w), vec![]);
    assert_eq!(o.create("/c/a", b"", 0).err, err::OK);
    assert_eq!(o.create("/c/b", b"", 0).err, err::OK);
    assert_eq!(
        drain_events(&mut w),
        vec![ev(event::NODE_CHILDREN_CHANGED, "/c")]
    );
    assert_eq!(w.get_children("/c", true).err, err::OK);
    assert_eq!(o.set_data("/c/a", b"1", -1).err, err::OK);
    assert_eq!(o.create("/c/a/deeper", b"", 0).err, err::OK);
    assert_eq!(drain_events(&mut w), vec![]);
    assert_eq!(o.delete("/c/b", -1).err, err::OK);
    assert_eq!(
        drain_events(&mut w),
        vec![ev(event::NODE_CHILDREN_CHANGED, "/c")]
    );
    // Deleting the watched node fires NodeDeleted on a child watch.
    assert_eq!(o.delete("/c/a/deeper", -1).err, err::OK);
    assert_eq!(o.delete("/c/a", -1).err, err::OK);
    assert_eq!(w.get_children("/c", true).err, err::OK);
    assert_eq!(o.delete("/c", -1).err, err::OK);
    assert_eq!(drain_events(&mut w), vec![ev(event::NODE_DELETED, "/c")]);
    // Child watch on the root reports path "/".
    assert_eq!(w.get_children("/", true).err, err::OK);
    assert_eq!(o.create("/top", b"", 0).err, err::OK);
    assert_eq!(
        drain_events(&mut w),
        vec![ev(event::NODE_CHILDREN_CHANGED, "/")]
    );
}

#[test]
fn both_data_and_child_watch_fire_on_delete() {
    let s = ServerBuilder::new().start();
    let mut w = Raw::connect(&s.addr(), 10_000);
    let mut o = Raw::connect(&s.addr(), 10_000);
    assert_eq!(o.create("/p", b"", 0).err, err::OK);
    assert_eq!(o.create("/p/x", b"", 0).err, err::OK);
    assert_eq!(w.get_data("/p/x", true).err, err::OK);
    assert_eq!(w.get_children("/p/x", true).err, err::OK);
    assert_eq!(w.get_children("/p", true).err, err::OK);
    assert_eq!(o.delete("/p/x", -1).err, err::OK);
    let mut got = drain_events(&mut w);
    got.sort();
    // One NodeDeleted for /p/x (data and child watch of the same session are merged) and the
    // parent's NodeChildrenChanged.
    assert_eq!(
        got,
        vec![
            ev(event::NODE_DELETED, "/p/x"),
            ev(event::NODE_CHILDREN_CHANGED, "/p")
        ]
    );
}

#[test]
fn notification_header_zxid() {
    let s = ServerBuilder::new().start();
    let mut w = Raw::connect(&s.addr(), 10_000);
    let mut o = Raw::connect(&s.addr(), 10_000);
    assert_eq!(o.create("/z", b"", 0).err, err::OK);
    assert_eq!(w.get_data("/z", true).err, err::OK);
    let change = o.set_data("/z", b"1", -1);
    let e = w.next_event();
    assert_eq!(e.event_type, event::NODE_DATA_CHANGED);
    if is_zookeeper_38() {
        assert_eq!(e.zxid, -1, "3.8 sends -1 in notification headers");
    } else {
        assert_eq!(
            e.zxid, change.zxid,
            "3.9: notification carries the change's zxid"
        );
    }
}

#[test]
fn watch_event_arrives_before_later_read_reply() {
    let s = ServerBuilder::new().start();
    let mut w = Raw::connect(&s.addr(), 10_000);
    let mut o = Raw::connect(&s.addr(), 10_000);
    assert_eq!(o.create("/order", b"0", 0).err, err::OK);
    for i in 1..=20 {
        assert_eq!(w.get_data("/order", true).err, err::OK);
        let val = i.to_string();
        assert_eq!(o.set_data("/order", val.as_bytes(), -1).err, err::OK);
        let x = w.next_xid();
        w.send(
            x,
            op::GET_DATA,
            &Enc::new().string("/order").bool(false).into_vec(),
        );
        let first = w.read_any().unwrap();
        assert_eq!(
            first.xid, -1,
            "round {i}: the event must come before the read's reply"
        );
        let e = common::raw::parse_event(&first);
        assert_eq!(
            (e.event_type, e.path.as_str()),
            (event::NODE_DATA_CHANGED, "/order")
        );
        let reply = w.read_any().unwrap();
        assert_eq!(reply.xid, x);
        assert_eq!(reply.dec().buffer().unwrap(), val.as_bytes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oneshot_watchers_via_client() {
    let s = ServerBuilder::new().start();
    let c = s.client().await;
    let o = s.client().await;
    let (_, exists_w) = c.check_and_watch_stat("/n").await.unwrap();
    o.create("/n", b"", &persistent()).await.unwrap();
    let e = within("NodeCreated", exists_w.changed()).await;
    assert_eq!(e.event_type, zk::EventType::NodeCreated);
    assert_eq!(e.path, "/n");
    let (_, _, data_w) = c.get_and_watch_data("/n").await.unwrap();
    let (_, _, child_w) = c.get_and_watch_children("/n").await.unwrap();
    o.create("/n/k", b"", &persistent()).await.unwrap();
    let e = within("children", child_w.changed()).await;
    assert_eq!(e.event_type, zk::EventType::NodeChildrenChanged);
    o.set_data("/n", b"v", None).await.unwrap();
    let e = within("data", data_w.changed()).await;
    assert_eq!(e.event_type, zk::EventType::NodeDataChanged);
    if !is_zookeeper_38() {
        let (_, st) = c.get_data("/n").await.unwrap();
        assert_eq!(e.zxid, st.mzxid);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_watch() {
    let s = ServerBuilder::new().start();
    let c = s.client().await;
    let o = s.client().await;
    let mut pw = c.watch("/pw", zk::AddWatchMode::Persistent).await.unwrap();
    o.create("/pw", b"", &persistent()).await.unwrap();
    o.set_data("/pw", b"1", None).await.unwrap();
    o.set_data("/pw", b"2", None).await.unwrap();
    o.create("/pw/kid", b"", &persistent()).await.unwrap();
    o.set_data("/pw/kid", b"x", None).await.unwrap(); // not reported: not recursive
    o.create("/pw/kid/grandkid", b"", &persistent())
        .await
        .unwrap(); // not reported
    o.delete("/pw/kid/grandkid", None).await.unwrap(); // not reported
    o.delete("/pw/kid", None).await.unwrap();
    o.delete("/pw", None).await.unwrap();
    o.create("/pw", b"", &persistent()).await.unwrap();
    use zk::EventType::*;
    let want = [
        (NodeCreated, "/pw"),
        (NodeDataChanged, "/pw"),
        (NodeDataChanged, "/pw"),
        (NodeChildrenChanged, "/pw"),
        (NodeChildrenChanged, "/pw"),
        (NodeDeleted, "/pw"),
        (NodeCreated, "/pw"),
    ];
    for (t, p) in want {
        let e = within("persistent event", pw.changed()).await;
        assert_eq!((e.event_type, e.path.as_str()), (t, p));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_recursive_watch() {
    let s = ServerBuilder::new().start();
    let c = s.client().await;
    let o = s.client().await;
    o.create("/r", b"", &persistent()).await.unwrap();
    let mut rw = c
        .watch("/r", zk::AddWatchMode::PersistentRecursive)
        .await
        .unwrap();
    o.create("/r/a", b"", &persistent()).await.unwrap();
    o.create("/r/a/b", b"", &persistent()).await.unwrap();
    o.set_data("/r/a/b", b"1", None).await.unwrap();
    o.set_data("/r", b"1", None).await.unwrap();
    o.create("/elsewhere", b"", &persistent()).await.unwrap(); // not under /r
    o.create("/r2", b"", &persistent()).await.unwrap(); // prefix, but not under /r
    o.delete("/r/a/b", None).await.unwrap();
    o.delete("/r/a", None).await.unwrap();
    use zk::EventType::*;
    // No NodeChildrenChanged for recursive watches.
    let want = [
        (NodeCreated, "/r/a"),
        (NodeCreated, "/r/a/b"),
        (NodeDataChanged, "/r/a/b"),
        (NodeDataChanged, "/r"),
        (NodeDeleted, "/r/a/b"),
        (NodeDeleted, "/r/a"),
    ];
    for (t, p) in want {
        let e = within("recursive event", rw.changed()).await;
        assert_eq!((e.event_type, e.path.as_str()), (t, p));
    }
}

#[test]
fn add_watch_raw_and_wchs() {
    let s = ServerBuilder::new().start();
    let mut w = Raw::connect(&s.addr(), 10_000);
    let mut o = Raw::connect(&s.addr(), 10_000);
    // addWatch(path, mode): 0 = persistent, 1 = persistent recursive. Path need not exist.
    let rep = w.call(op::ADD_WATCH, &Enc::new().string("/aw").int(1).into_vec());
    assert_eq!(rep.err, err::OK);
    // The reply body is an ErrorResponse carrying 0.
    assert_eq!(rep.body, vec![0, 0, 0, 0]);
    assert_eq!(o.create("/aw", b"", 0).err, err::OK);
    assert_eq!(o.create("/aw/x", b"", 0).err, err::OK);
    assert_eq!(
        drain_events(&mut w),
        vec![
            ev(event::NODE_CREATED, "/aw"),
            ev(event::NODE_CREATED, "/aw/x")
        ]
    );
    // Remove it (removeWatches type 3 = any; persistent watches need "any").
    let rep = w.call(
        op::REMOVE_WATCHES,
        &Enc::new().string("/aw").int(3).into_vec(),
    );
    assert_eq!(rep.err, err::OK);
    assert_eq!(o.create("/aw/y", b"", 0).err, err::OK);
    assert_eq!(drain_events(&mut w), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_survive_reconnect_via_set_watches() {
    let s = ServerBuilder::new().start();
    let proxy = common::proxy::Proxy::start(&s.addr()).await;
    let c = zk::Client::connector()
        .with_session_timeout(std::time::Duration::from_secs(20))
        .connect(&proxy.addr())
        .await
        .unwrap();
    let o = s.client().await;
    o.create("/rw", b"", &persistent()).await.unwrap();
    o.create("/rw-kids", b"", &persistent()).await.unwrap();
    let (_, _, data_w) = c.get_and_watch_data("/rw").await.unwrap();
    let (_, exist_w) = c.check_and_watch_stat("/rw-new").await.unwrap();
    let (_, child_w) = c.list_and_watch_children("/rw-kids").await.unwrap();
    // Persistent watches are not part of this test: zookeeper-client 0.11.2 never re-registers
    // them after a reconnect (resend_watches computes `index.max(index)` instead of
    // `index.max(i)`, so it always sends SetWatches (101) without the persistent groups).
    // setWatches2 is covered with the raw client below.
    let mut state = c.state_watcher();

    // Disconnect the client and keep it away while changes happen.
    proxy.block();
    proxy.cut();
    within("Disconnected", async {
        while state.changed().await != zk::SessionState::Disconnected {}
    })
    .await;
    o.set_data("/rw", b"changed", None).await.unwrap();
    o.create("/rw-new", b"", &persistent()).await.unwrap();
    o.create("/rw-kids/k", b"", &persistent()).await.unwrap();
    proxy.unblock();

    // After reconnecting, the client re-registers its watches relative to the last zxid it
    // saw; the server fires the ones whose nodes changed meanwhile.
    let e = within("data watch after reconnect", data_w.changed()).await;
    assert_eq!(e.event_type, zk::EventType::NodeDataChanged);
    assert_eq!(e.path, "/rw");
    let e = within("exist watch after reconnect", exist_w.changed()).await;
    assert_eq!(e.event_type, zk::EventType::NodeCreated);
    let e = within("child watch after reconnect", child_w.changed()).await;
    assert_eq!(e.event_type, zk::EventType::NodeChildrenChanged);
    assert_eq!(c.get_data("/rw").await.unwrap().0, b"changed");
}

#[test]
fn set_watches2_registers_persistent_watches() {
    let s = ServerBuilder::new().start();
    let mut o = Raw::connect(&s.addr(), 10_000);
    assert_eq!(o.create("/p1", b"", 0).err, err::OK);
    assert_eq!(o.create("/p2", b"", 0).err, err::OK);
    let seen = o.exists("/", false).zxid;
    let mut w = Raw::connect(&s.addr(), 10_000);
    let body = Enc::new()
        .long(seen)
        .strings(&[]) // data
        .strings(&[]) // exist
        .strings(&[]) // child
        .strings(&["/p1"]) // persistent
        .strings(&["/p2"]) // persistent recursive
        .into_vec();
    w.send(common::raw::xid::SET_WATCHES, op::SET_WATCHES2, &body);
    let rep = w.read_reply();
    assert_eq!(rep.xid, common::raw::xid::SET_WATCHES);
    assert_eq!(rep.err, err::OK);
    assert_eq!(o.set_data("/p1", b"1", -1).err, err::OK);
    assert_eq!(o.set_data("/p1", b"2", -1).err, err::OK);
    assert_eq!(o.create("/p1/x", b"", 0).err, err::OK);
    assert_eq!(o.create("/p2/y", b"", 0).err, err::OK);
    assert_eq!(o.set_data("/p2/y", b"1", -1).err, err::OK);
    assert_eq!(
        drain_events(&mut w),
        vec![
            ev(event::NODE_DATA_CHANGED, "/p1"),
            ev(event::NODE_DATA_CHANGED, "/p1"),
            ev(event::NODE_CHILDREN_CHANGED, "/p1"),
            ev(event::NODE_CREATED, "/p2/y"),
            ev(event::NODE_DATA_CHANGED, "/p2/y"),
        ]
    );
}
