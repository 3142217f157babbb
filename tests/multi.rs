//! multi: atomicity, per-op results, versions seen inside the transaction.

mod common;

use common::raw::{err, op, Dec, Enc, Raw, WORLD_ALL};
use common::*;
use zookeeper_client as zk;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_success_results() {
    let s = ServerBuilder::new().start();
    let c = s.client().await;
    c.create("/old", b"", &persistent()).await.unwrap();
    let mut w = c.new_multi_writer();
    w.add_create("/m", b"one", &persistent()).unwrap();
    w.add_set_data("/m", b"two", Some(0)).unwrap();
    w.add_check_version("/m", 1).unwrap();
    w.add_create("/m/seq-", b"", &mode(zk::CreateMode::PersistentSequential))
        .unwrap();
    w.add_delete("/old", Some(0)).unwrap();
    let results = w.commit().await.unwrap();
    assert_eq!(results.len(), 5);
    let (path0, stat0) = match &results[0] {
        zk::MultiWriteResult::Create { path, stat } => (path.clone(), *stat),
        other => panic!("{other:?}"),
    };
    assert_eq!(path0, "/m");
    let set_stat = match &results[1] {
        zk::MultiWriteResult::SetData { stat } => *stat,
        other => panic!("{other:?}"),
    };
    assert_eq!(set_stat.version, 1);
    assert_eq!(set_stat.data_length, 3);
    assert_eq!(
        set_stat.mzxid, set_stat.czxid,
        "all ops of a multi share one zxid"
    );
    assert!(matches!(results[2], zk::MultiWriteResult::Check));
    match &results[3] {
        zk::MultiWriteResult::Create { path, .. } => assert_eq!(path, "/m/seq-0000000000"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(results[4], zk::MultiWriteResult::Delete));
    if is_zookeeper_38() {
        // ZOOKEEPER-4026: 3.8 answers a create2 inside multi with a plain create result.
        assert!(stat0.is_invalid());
    } else {
        assert!(!stat0.is_invalid());
        assert_eq!(stat0.czxid, set_stat.czxid);
        assert_eq!(stat0.version, 0);
        assert_eq!(stat0.data_length, 3);
    }
    let (data, st) = c.get_data("/m").await.unwrap();
    assert_eq!(data, b"two");
    assert_eq!(st, set_stat.clone_with_children(1));
    assert_eq!(c.check_stat("/old").await.unwrap(), None);
}

trait WithChildren {
    fn clone_with_children(&self, n: i32) -> zk::Stat;
}

impl WithChildren for zk::Stat {
    /// The stat after a child was added in the same multi (cversion, numChildren, pzxid).
    fn clone_with_children(&self, n: i32) -> zk::Stat {
        let mut s = *self;
        s.num_children = n;
        s.cversion = n;
        s.pzxid = s.czxid;
        s
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_failure_is_atomic() {
    let s = ServerBuilder::new().start();
    let c = s.client().await;
    c.create("/base", b"v0", &persistent()).await.unwrap();
    let (_, before) = c.get_data("/base").await.unwrap();
    let mut w = c.new_multi_writer();
    w.add_create("/new1", b"", &persistent()).unwrap();
    w.add_set_data("/base", b"v1", None).unwrap();
    w.add_delete("/missing", None).unwrap();
    w.add_create("/new2", b"", &persistent()).unwrap();
    let e = w.commit().await.unwrap_err();
    assert_eq!(
        e,
        zk::MultiWriteError::OperationFailed {
            index: 2,
            source: zk::Error::NoNode
        }
    );
    assert_eq!(c.check_stat("/new1").await.unwrap(), None);
    assert_eq!(c.check_stat("/new2").await.unwrap(), None);
    let (data, after) = c.get_data("/base").await.unwrap();
    assert_eq!(data, b"v0");
    assert_eq!(after, before);
    let (_, root) = c.get_data("/").await.unwrap();
    assert_eq!(root.num_children, 2, "/zookeeper and /base only");

    // A failing version check fails the whole multi.
    let mut w = c.new_multi_writer();
    w.add_set_data("/base", b"v1", None).unwrap();
    w.add_check_version("/base", 0).unwrap(); // version is 1 after the setData above
    let e = w.commit().await.unwrap_err();
    assert_eq!(
        e,
        zk::MultiWriteError::OperationFailed {
            index: 1,
            source: zk::Error::BadVersion
        }
    );
    assert_eq!(c.get_data("/base").await.unwrap().0, b"v0");

    // Creating twice in one multi fails on the second create.
    let mut w = c.new_multi_writer();
    w.add_create("/dup", b"", &persistent()).unwrap();
    w.add_create("/dup", b"", &persistent()).unwrap();
    assert_eq!(
        w.commit().await.unwrap_err(),
        zk::MultiWriteError::OperationFailed {
            index: 1,
            source: zk::Error::NodeExists
        }
    );
    assert_eq!(c.check_stat("/dup").await.unwrap(), None);
    // Ops inside see earlier ops: create then delete then create again works.
    let mut w = c.new_multi_writer();
    w.add_create("/dup", b"", &persistent()).unwrap();
    w.add_delete("/dup", Some(0)).unwrap();
    w.add_create("/dup", b"2", &persistent()).unwrap();
    w.commit().await.unwrap();
    assert_eq!(c.get_data("/dup").await.unwrap().0, b"2");
    s.assert_healthy().await;
}

fn multi_header(t: i32, done: bool, e: i32) -> Enc {
    Enc::new().int(t).bool(done).int(e)
}

/// Decode a multi response into (type, err-or-0, path) per op.
fn decode_multi(mut d: Dec<'_>) -> Vec<(i32, i32, Option<String>)> {
    let mut out = Vec::new();
    loop {
        let t = d.int();
        let done = d.bool();
        let e = d.int();
        if done {
            assert_eq!(t, -1);
            assert_eq!(e, -1);
            break;
        }
        match t {
            -1 => {
                let code = d.int();
                assert_eq!(code, e, "ErrorResult body repeats the header err");
                out.push((t, code, None));
            }
            1 => out.push((t, e, d.string())),
            15 => {
                let p = d.string();
                let _ = d.stat();
                out.push((t, e, p))
            }
            5 => {
                let _ = d.stat();
                out.push((t, e, None))
            }
            2 | 13 => out.push((t, e, None)),
            other => panic!("unexpected multi result type {other}"),
        }
    }
    assert!(d.is_empty());
    out
}

#[test]
fn multi_per_op_error_results() {
    let s = ServerBuilder::new().start();
    let mut r = Raw::connect(&s.addr(), 10_000);
    assert_eq!(r.create("/x", b"", 0).err, err::OK);
    let body = Enc::new()
        .raw(&multi_header(op::CREATE2, false, -1).into_vec())
        .raw(
            &Enc::new()
                .string("/y")
                .buffer(b"")
                .acls(WORLD_ALL)
                .int(0)
                .into_vec(),
        )
        .raw(&multi_header(op::SET_DATA, false, -1).into_vec())
        .raw(&Enc::new().string("/x").buffer(b"1").int(-1).into_vec())
        .raw(&multi_header(op::DELETE, false, -1).into_vec())
        .raw(&Enc::new().string("/nope").int(-1).into_vec())
        .raw(&multi_header(op::CHECK, false, -1).into_vec())
        .raw(&Enc::new().string("/x").int(0).into_vec())
        .raw(&multi_header(-1, true, -1).into_vec())
        .into_vec();
    let rep = r.call(op::MULTI, &body);
    // The reply header carries OK; the failure is in the per-op results.
    assert_eq!(rep.err, err::OK);
    let results = decode_multi(rep.dec());
    assert_eq!(
        results,
        vec![
            (-1, 0, None),    // before the failure: rolled back, reported as OK
            (-1, 0, None),    //
            (-1, -101, None), // the failing op: NoNode
            (-1, -2, None),   // after the failure: RuntimeInconsistency
        ]
    );
    assert_eq!(r.exists("/y", false).err, err::NO_NODE);
    let st = r.exists("/x", false).dec().stat();
    assert_eq!(st.version, 0);

    // Successful raw multi: result types mirror the ops.
    let body = Enc::new()
        .raw(&multi_header(op::CREATE2, false, -1).into_vec())
        .raw(
            &Enc::new()
                .string("/y")
                .buffer(b"")
                .acls(WORLD_ALL)
                .int(0)
                .into_vec(),
        )
        .raw(&multi_header(op::CREATE, false, -1).into_vec())
        .raw(
            &Enc::new()
                .string("/z")
                .buffer(b"")
                .acls(WORLD_ALL)
                .int(0)
                .into_vec(),
        )
        .raw(&multi_header(op::SET_DATA, false, -1).into_vec())
        .raw(&Enc::new().string("/x").buffer(b"1").int(-1).into_vec())
        .raw(&multi_header(op::CHECK, false, -1).into_vec())
        .raw(&Enc::new().string("/x").int(1).into_vec())
        .raw(&multi_header(op::DELETE, false, -1).into_vec())
        .raw(&Enc::new().string("/z").int(-1).into_vec())
        .raw(&multi_header(-1, true, -1).into_vec())
        .into_vec();
    let rep = r.call(op::MULTI, &body);
    assert_eq!(rep.err, err::OK);
    let results = decode_multi(rep.dec());
    let create2_type = if is_zookeeper_38() {
        op::CREATE
    } else {
        op::CREATE2
    };
    assert_eq!(
        results,
        vec![
            (create2_type, 0, Some("/y".to_string())),
            (op::CREATE, 0, Some("/z".to_string())),
            (op::SET_DATA, 0, None),
            (op::CHECK, 0, None),
            (op::DELETE, 0, None),
        ]
    );
    let y = r.exists("/y", false);
    assert_eq!(y.dec().stat().czxid, rep.zxid, "the multi's zxid");

    // An empty multi succeeds with no results.
    let rep = r.call(op::MULTI, &multi_header(-1, true, -1).into_vec());
    assert_eq!(rep.err, err::OK);
    assert!(decode_multi(rep.dec()).is_empty());
    s.assert_healthy_raw();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_fires_watches_once_committed() {
    let s = ServerBuilder::new().start();
    let c = s.client().await;
    let watcher = s.client().await;
    c.create("/w", b"", &persistent()).await.unwrap();
    let (_, _, data_w) = watcher.get_and_watch_data("/w").await.unwrap();
    let (_, child_w) = watcher.list_and_watch_children("/w").await.unwrap();
    let mut w = c.new_multi_writer();
    w.add_set_data("/w", b"x", None).unwrap();
    w.add_create("/w/kid", b"", &persistent()).unwrap();
    w.commit().await.unwrap();
    let ev = within("data watch", data_w.changed()).await;
    assert_eq!(ev.event_type, zk::EventType::NodeDataChanged);
    let ev = within("child watch", child_w.changed()).await;
    assert_eq!(ev.event_type, zk::EventType::NodeChildrenChanged);
    // Failed multi fires nothing: set a new watch, fail a multi, then change for real.
    let (_, _, data_w) = watcher.get_and_watch_data("/w").await.unwrap();
    let mut w = c.new_multi_writer();
    w.add_set_data("/w", b"y", None).unwrap();
    w.add_delete("/missing", None).unwrap();
    assert!(w.commit().await.is_err());
    c.set_data("/w", b"z", None).await.unwrap();
    let ev = within("data watch 2", data_w.changed()).await;
    assert_eq!(ev.event_type, zk::EventType::NodeDataChanged);
    let (data, st) = watcher.get_data("/w").await.unwrap();
    assert_eq!(data, b"z");
    assert_eq!(st.version, 2, "the failed multi did not bump the version");
}
