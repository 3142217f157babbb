//! Semantic tests of the tree against ZooKeeper 3.9 behaviour: exact stats, error codes,
//! multi results and watch events for each operation.

use bytes::Bytes;

use super::*;
use crate::jute::request::{CreateRequest, SetWatches};
use crate::jute::{
    create_flags, event_type, perms, watcher_type, ErrorCode, MultiOp, OpCode, OpResult, Request,
    Response,
};

const S1: i64 = 0x100;
const S2: i64 = 0x200;

/// A tree plus a leader's zxid/clock, and per-session identities.
struct H {
    db: Database,
    zxid: i64,
    ids: Vec<(i64, Vec<Id>)>,
}

fn ip() -> Id {
    Id::new("ip", "127.0.0.1")
}

/// The context of a request from session `s` (not a superuser) authenticated as `ids`.
fn plain_ctx(s: i64, ids: &[Id]) -> RequestContext<'_> {
    RequestContext {
        session_id: s,
        ids,
        is_super: false,
    }
}

impl H {
    fn new() -> H {
        H::with(false)
    }

    fn with(extended: bool) -> H {
        H {
            db: Database::new(TreeOptions {
                extended_types_enabled: extended,
            }),
            zxid: 0,
            ids: Vec::new(),
        }
    }

    fn ids_of(&self, s: i64) -> Vec<Id> {
        self.ids
            .iter()
            .find(|(x, _)| *x == s)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| vec![ip()])
    }

    fn auth(&mut self, s: i64, user_pass: &str) {
        let mut v = self.ids_of(s);
        v.push(acl::authenticate("digest", user_pass.as_bytes()).unwrap());
        self.ids.retain(|(x, _)| *x != s);
        self.ids.push((s, v));
    }

    fn prep(&self, s: i64, req: &Request) -> Result<TxnBody, ErrorCode> {
        let ids = self.ids_of(s);
        let ctx = plain_ctx(s, &ids);
        self.db.prep(&ctx, req)
    }

    fn commit(&mut self, s: i64, body: TxnBody) -> ApplyOutcome {
        self.zxid += 1;
        let out = self.db.apply(&Txn {
            session_id: s,
            cxid: 1,
            zxid: self.zxid,
            time_ms: self.zxid * 1000,
            body,
        });
        self.db.check_invariants().unwrap();
        out
    }

    fn write(&mut self, s: i64, req: Request) -> Result<ApplyOutcome, ErrorCode> {
        let body = self.prep(s, &req)?;
        Ok(self.commit(s, body))
    }

    fn read(&mut self, s: i64, req: Request) -> Result<Response, ErrorCode> {
        let ids = self.ids_of(s);
        let ctx = plain_ctx(s, &ids);
        self.db.read(&ctx, &req)
    }

    fn create(&mut self, s: i64, path: &str, flags: i32) -> Result<ApplyOutcome, ErrorCode> {
        self.write(s, create_req(OpCode::Create2, path, flags))
    }

    fn created_path(&mut self, s: i64, path: &str, flags: i32) -> String {
        match self.create(s, path, flags).unwrap().result {
            TxnResult::Created { path, .. } => path,
            r => panic!("{r:?}"),
        }
    }

    fn stat(&self, path: &str) -> Stat {
        self.db.stat(path).unwrap()
    }
}

fn create_req(op: OpCode, path: &str, flags: i32) -> Request {
    Request::Create(CreateRequest {
        op,
        path: path.into(),
        data: Some(Bytes::from_static(b"d")),
        acl: Acl::open_unsafe(),
        flags,
        ttl_ms: -1,
    })
}

fn create_with_acl(path: &str, acl: Vec<Acl>) -> Request {
    Request::Create(CreateRequest {
        op: OpCode::Create,
        path: path.into(),
        data: None,
        acl,
        flags: 0,
        ttl_ms: -1,
    })
}

fn set_data(path: &str, data: &'static [u8], version: i32) -> Request {
    Request::SetData {
        path: path.into(),
        data: Some(Bytes::from_static(data)),
        version,
    }
}

fn events(out: &ApplyOutcome) -> Vec<(i64, i32, String)> {
    out.events
        .iter()
        .map(|e| (e.session_id, e.event.event_type, e.event.path.clone()))
        .collect()
}

fn ev(s: i64, t: i32, p: &str) -> (i64, i32, String) {
    (s, t, p.to_string())
}

#[test]
fn fresh_tree_matches_standalone_zookeeper() {
    let h = H::new();
    let root = h.stat("/");
    assert_eq!(
        root,
        Stat {
            cversion: -1,
            num_children: 1,
            ..Stat::default()
        }
    );
    let zk = h.stat("/zookeeper");
    assert_eq!((zk.cversion, zk.num_children), (-2, 2));
    let config = h.stat("/zookeeper/config");
    assert_eq!(config.aversion, -1);
    assert_eq!(config.data_length, 0);
    assert_eq!(
        &*h.db.acl("/zookeeper/config").unwrap(),
        &Acl::read_unsafe()[..]
    );
    assert_eq!(&*h.db.acl("/").unwrap(), &Acl::open_unsafe()[..]);
    assert_eq!(h.db.data("/"), Some(Some(Bytes::new())));
    assert_eq!(
        h.db.children("/zookeeper").unwrap(),
        vec!["config", "quota"]
    );
    assert_eq!(h.db.node_count(), 5);
    assert_eq!(h.db.approximate_data_size(), 1 + 10 + 16 + 17);
    assert_eq!(h.db.descendant_count("/"), 3);
    assert_eq!(h.db.distinct_acl_count(), 2);
    h.db.check_invariants().unwrap();

    // A quorum member puts its membership there, outside the log.
    let mut h = h;
    let text = b"server.1=a:1:2:participant\nversion=0";
    h.db.set_config_node(text, 0, 1234);
    let config = h.stat("/zookeeper/config");
    assert_eq!(
        (config.version, config.mzxid, config.mtime, config.aversion),
        (-1, 0, 1234, -1)
    );
    assert_eq!(config.data_length as usize, text.len());
    assert_eq!(
        h.db.data("/zookeeper/config"),
        Some(Some(Bytes::from_static(text)))
    );
    assert_eq!(
        h.db.approximate_data_size(),
        1 + 10 + 16 + 17 + text.len() as u64
    );
    h.db.check_invariants().unwrap();
}

#[test]
fn create_sets_stats_and_parent() {
    let mut h = H::new();
    let out = h.create(S1, "/a", 0).unwrap();
    let expect = Stat {
        czxid: 1,
        mzxid: 1,
        pzxid: 1,
        ctime: 1000,
        mtime: 1000,
        data_length: 1,
        ..Stat::default()
    };
    assert_eq!(
        out.result,
        TxnResult::Created {
            path: "/a".into(),
            stat: expect,
            op: OpCode::Create2
        }
    );
    let root = h.stat("/");
    assert_eq!((root.cversion, root.num_children, root.pzxid), (0, 2, 1));
    h.create(S1, "/a/b", 0).unwrap();
    let a = h.stat("/a");
    assert_eq!((a.cversion, a.num_children, a.pzxid, a.mzxid), (1, 1, 2, 1));
    // Null data stays null.
    h.write(S1, create_with_acl("/n", Acl::open_unsafe()))
        .unwrap();
    assert_eq!(h.db.data("/n"), Some(None));
    assert_eq!(h.db.approximate_data_size(), 44 + 3 + 5 + 2);
}

#[test]
fn create_errors_in_zookeeper_order() {
    let mut h = H::new();
    h.create(S1, "/a", 0).unwrap();
    h.create(S1, "/e", create_flags::EPHEMERAL).unwrap();
    let e = |h: &H, p: &str, f: i32| h.prep(S1, &create_req(OpCode::Create, p, f)).unwrap_err();
    assert_eq!(e(&h, "/a", 0), ErrorCode::NodeExists);
    assert_eq!(e(&h, "/", 0), ErrorCode::NodeExists);
    assert_eq!(e(&h, "/x/y", 0), ErrorCode::NoNode);
    assert_eq!(e(&h, "/e/c", 0), ErrorCode::NoChildrenForEphemerals);
    assert_eq!(
        e(&h, "/e/c", create_flags::PERSISTENT_SEQUENTIAL),
        ErrorCode::NoChildrenForEphemerals
    );
    assert_eq!(e(&h, "abc", 0), ErrorCode::BadArguments);
    // No leading slash but a slash somewhere: ZooKeeper looks the "parent" up first.
    assert_eq!(e(&h, "a/b", 0), ErrorCode::NoNode);
    assert_eq!(e(&h, "/a/", 0), ErrorCode::BadArguments);
    assert_eq!(e(&h, "/x/", 0), ErrorCode::NoNode);
    assert_eq!(e(&h, "/a/./b", 0), ErrorCode::NoNode);
    assert_eq!(e(&h, "/a/.", 0), ErrorCode::BadArguments);
    assert_eq!(e(&h, "/a\0b", 0), ErrorCode::BadArguments);
    assert_eq!(e(&h, "/b", 7), ErrorCode::BadArguments);
    assert_eq!(e(&h, "/b", -1), ErrorCode::BadArguments);
    assert_eq!(
        e(&h, "/b", create_flags::PERSISTENT_WITH_TTL),
        ErrorCode::Unimplemented
    );
    let mut bad_acl = create_with_acl("/b", vec![]);
    assert_eq!(h.prep(S1, &bad_acl).unwrap_err(), ErrorCode::InvalidAcl);
    bad_acl = create_with_acl("/x/y", vec![]);
    assert_eq!(
        h.prep(S1, &bad_acl).unwrap_err(),
        ErrorCode::InvalidAcl,
        "ACL checked before parent"
    );
    let auth_acl = create_with_acl("/b", vec![Acl::new(perms::ALL, "auth", "")]);
    assert_eq!(h.prep(S1, &auth_acl).unwrap_err(), ErrorCode::InvalidAcl);
    // Sequential on a trailing slash is fine: the suffix makes the name.
    assert_eq!(
        h.created_path(S1, "/a/", create_flags::PERSISTENT_SEQUENTIAL),
        "/a/0000000000"
    );
}

#[test]
fn sequence_numbers_count_creations_and_cversion_counts_changes() {
    let mut h = H::new();
    assert_eq!(
        h.created_path(S1, "/x", create_flags::PERSISTENT_SEQUENTIAL),
        "/x0000000000"
    );
    h.create(S1, "/q", 0).unwrap();
    assert_eq!(
        h.created_path(S1, "/q/n-", create_flags::PERSISTENT_SEQUENTIAL),
        "/q/n-0000000000"
    );
    assert_eq!(
        h.created_path(S1, "/q/n-", create_flags::EPHEMERAL_SEQUENTIAL),
        "/q/n-0000000001"
    );
    h.write(
        S1,
        Request::Delete {
            path: "/q/n-0000000000".into(),
            version: -1,
        },
    )
    .unwrap();
    let q = h.stat("/q");
    assert_eq!((q.cversion, q.num_children), (3, 1));
    // The deletion does not advance the sequence.
    assert_eq!(
        h.created_path(S1, "/q/n-", create_flags::PERSISTENT_SEQUENTIAL),
        "/q/n-0000000002"
    );
    assert_eq!(h.stat("/q").cversion, 4);
    // Negative stored cversion after overflow is formatted like Java's %010d.
    h.db.node_mut("/q").unwrap().cversion = -5;
    assert_eq!(
        h.created_path(S1, "/q/n-", create_flags::PERSISTENT_SEQUENTIAL),
        "/q/n--000000005"
    );
}

#[test]
fn delete_rules() {
    let mut h = H::new();
    h.create(S1, "/a", 0).unwrap();
    h.create(S1, "/a/b", 0).unwrap();
    let del = |p: &str, v: i32| Request::Delete {
        path: p.into(),
        version: v,
    };
    for p in [
        "/",
        "/zookeeper",
        "/zookeeper/quota",
        "/zookeeper/config",
        "nope",
        "/a\0",
    ] {
        assert_eq!(
            h.prep(S1, &del(p, -1)).unwrap_err(),
            ErrorCode::BadArguments,
            "{p}"
        );
    }
    assert_eq!(h.prep(S1, &del("/a", -1)).unwrap_err(), ErrorCode::NotEmpty);
    assert_eq!(h.prep(S1, &del("/a/c", -1)).unwrap_err(), ErrorCode::NoNode);
    assert_eq!(h.prep(S1, &del("/x/c", -1)).unwrap_err(), ErrorCode::NoNode);
    assert_eq!(
        h.prep(S1, &del("/a/b", 3)).unwrap_err(),
        ErrorCode::BadVersion
    );
    // Version is checked before emptiness.
    assert_eq!(
        h.prep(S1, &del("/a", 5)).unwrap_err(),
        ErrorCode::BadVersion
    );
    let out = h.write(S1, del("/a/b", 0)).unwrap();
    assert_eq!(out.result, TxnResult::Deleted);
    let a = h.stat("/a");
    assert_eq!((a.cversion, a.num_children, a.pzxid), (2, 0, 3));
    // /zookeeper's children can be created and deleted like any other.
    h.create(S1, "/zookeeper/mine", 0).unwrap();
    h.write(S1, del("/zookeeper/mine", -1)).unwrap();
}

#[test]
fn set_data_versions() {
    let mut h = H::new();
    h.create(S1, "/a", 0).unwrap();
    let out = h.write(S1, set_data("/a", b"hello", 0)).unwrap();
    let TxnResult::Stat(st) = out.result else {
        panic!()
    };
    assert_eq!(
        (st.version, st.mzxid, st.mtime, st.data_length, st.czxid),
        (1, 2, 2000, 5, 1)
    );
    assert_eq!(
        h.prep(S1, &set_data("/a", b"x", 0)).unwrap_err(),
        ErrorCode::BadVersion
    );
    assert_eq!(
        h.prep(S1, &set_data("/b", b"x", -1)).unwrap_err(),
        ErrorCode::NoNode
    );
    assert_eq!(
        h.prep(S1, &set_data("/a/", b"x", -1)).unwrap_err(),
        ErrorCode::BadArguments
    );
    // The version after i32::MAX skips -1 (which would mean "any").
    h.db.node_mut("/a").unwrap().version = -2;
    assert_eq!(
        h.prep(S1, &set_data("/a", b"x", -2)).unwrap(),
        TxnBody::SetData {
            path: "/a".into(),
            data: Some(Bytes::from_static(b"x")),
            version: 0
        }
    );
    assert_eq!(h.db.approximate_data_size(), 44 + 2 + 5);
}

#[test]
fn acl_enforcement() {
    let mut h = H::new();
    h.auth(S1, "alice:pw");
    let alice = acl::digest("alice:pw");
    // auth expands to the digest identity only (never ip).
    h.write(
        S1,
        create_with_acl("/p", vec![Acl::new(perms::ALL, "auth", "")]),
    )
    .unwrap();
    assert_eq!(
        &*h.db.acl("/p").unwrap(),
        &[Acl::new(perms::ALL, "digest", &alice)][..]
    );
    let read_only = vec![
        Acl::new(perms::READ, "world", "anyone"),
        Acl::new(perms::ALL, "digest", &alice),
    ];
    h.write(S1, create_with_acl("/r", read_only)).unwrap();
    // S2 can read but not write, create under, delete under or change the ACL.
    assert!(h
        .read(
            S2,
            Request::GetData {
                path: "/r".into(),
                watch: false
            }
        )
        .is_ok());
    assert_eq!(
        h.prep(S2, &set_data("/r", b"x", -1)).unwrap_err(),
        ErrorCode::NoAuth
    );
    assert_eq!(
        h.prep(S2, &create_with_acl("/r/c", Acl::open_unsafe()))
            .unwrap_err(),
        ErrorCode::NoAuth
    );
    let set_acl = Request::SetAcl {
        path: "/r".into(),
        acl: Acl::open_unsafe(),
        version: -1,
    };
    assert_eq!(h.prep(S2, &set_acl).unwrap_err(), ErrorCode::NoAuth);
    assert_eq!(
        h.prep(
            S2,
            &Request::Check {
                path: "/p".into(),
                version: -1
            }
        )
        .unwrap_err(),
        ErrorCode::NoAuth
    );
    h.write(S1, create_with_acl("/r/c", Acl::open_unsafe()))
        .unwrap();
    assert_eq!(
        h.prep(
            S2,
            &Request::Delete {
                path: "/r/c".into(),
                version: -1
            }
        )
        .unwrap_err(),
        ErrorCode::NoAuth
    );
    // S2 cannot even see /p exists-wise, nor read it.
    assert_eq!(
        h.read(
            S2,
            Request::Exists {
                path: "/p".into(),
                watch: true
            }
        )
        .unwrap_err(),
        ErrorCode::NoAuth
    );
    assert_eq!(
        h.db.watch_count(),
        0,
        "no watch left behind by a refused exists"
    );
    assert_eq!(
        h.read(
            S2,
            Request::GetChildren {
                path: "/p".into(),
                watch: false,
                with_stat: false
            }
        )
        .unwrap_err(),
        ErrorCode::NoAuth
    );
    assert_eq!(
        h.read(S2, Request::GetAllChildrenNumber { path: "/p".into() })
            .unwrap_err(),
        ErrorCode::NoAuth
    );
    assert_eq!(
        h.read(S2, Request::GetAcl { path: "/p".into() })
            .unwrap_err(),
        ErrorCode::NoAuth
    );
    // getACL with READ but no ADMIN hides digest hashes.
    let Response::GetAcl { acl, .. } = h.read(S2, Request::GetAcl { path: "/r".into() }).unwrap()
    else {
        panic!()
    };
    assert_eq!(acl[1].id.id, "alice:x");
    let Response::GetAcl { acl, .. } = h.read(S1, Request::GetAcl { path: "/r".into() }).unwrap()
    else {
        panic!()
    };
    assert_eq!(acl[1].id.id, alice);
    // Super passes everything.
    let ids = vec![ip()];
    let ctx = RequestContext {
        session_id: S2,
        ids: &ids,
        is_super: true,
    };
    assert!(h.db.prep(&ctx, &set_data("/p", b"x", -1)).is_ok());
    // ip ACLs match by mask.
    h.write(
        S1,
        create_with_acl("/ip", vec![Acl::new(perms::ALL, "ip", "127.0.0.0/8")]),
    )
    .unwrap();
    assert!(h
        .read(
            S2,
            Request::GetData {
                path: "/ip".into(),
                watch: false
            }
        )
        .is_ok());
    h.ids.push((S2 + 1, vec![Id::new("ip", "10.1.1.1")]));
    assert_eq!(
        h.read(
            S2 + 1,
            Request::GetData {
                path: "/ip".into(),
                watch: false
            }
        )
        .unwrap_err(),
        ErrorCode::NoAuth
    );
}

#[test]
fn set_acl_versions_and_dedup() {
    let mut h = H::new();
    h.create(S1, "/a", 0).unwrap();
    h.create(S1, "/b", 0).unwrap();
    assert_eq!(h.db.distinct_acl_count(), 2);
    let req = |v: i32, acl: Vec<Acl>| Request::SetAcl {
        path: "/a".into(),
        acl,
        version: v,
    };
    assert_eq!(
        h.prep(S1, &req(-1, vec![])).unwrap_err(),
        ErrorCode::InvalidAcl
    );
    assert_eq!(
        h.prep(S1, &req(3, Acl::read_unsafe())).unwrap_err(),
        ErrorCode::BadVersion
    );
    let out = h.write(S1, req(0, Acl::read_unsafe())).unwrap();
    let TxnResult::Stat(st) = out.result else {
        panic!()
    };
    assert_eq!((st.aversion, st.version, st.mzxid), (1, 0, 1));
    assert!(out.events.is_empty());
    assert_eq!(
        h.db.distinct_acl_count(),
        2,
        "shares /zookeeper/config's list"
    );
    h.write(
        S1,
        Request::SetAcl {
            path: "/zookeeper/config".into(),
            acl: Acl::open_unsafe(),
            version: -1,
        },
    )
    .unwrap_err();
}

#[test]
fn multi_success_results_and_visibility() {
    let mut h = H::new();
    let mut c2 = match create_req(OpCode::Create2, "/m/b", 0) {
        Request::Create(c) => c,
        _ => unreachable!(),
    };
    c2.data = None;
    let ops = vec![
        MultiOp::Create(match create_req(OpCode::Create, "/m", 0) {
            Request::Create(c) => c,
            _ => unreachable!(),
        }),
        MultiOp::Create(c2),
        MultiOp::SetData {
            path: "/m/b".into(),
            data: Some(Bytes::from_static(b"zz")),
            version: 0,
        },
        MultiOp::Check {
            path: "/m/b".into(),
            version: 1,
        },
        MultiOp::Create(
            match create_req(OpCode::CreateContainer, "/m/c", create_flags::CONTAINER) {
                Request::Create(c) => c,
                _ => unreachable!(),
            },
        ),
        MultiOp::Delete {
            path: "/m/c".into(),
            version: 0,
        },
    ];
    let out = h.write(S1, Request::Multi(ops)).unwrap();
    let TxnResult::Multi(results) = &out.result else {
        panic!()
    };
    assert_eq!(results[0], OpResult::Create { path: "/m".into() });
    let OpResult::Create2 { path, stat } = &results[1] else {
        panic!("{results:?}")
    };
    assert_eq!(
        (path.as_str(), stat.czxid, stat.data_length),
        ("/m/b", 1, 0)
    );
    let OpResult::SetData { stat } = &results[2] else {
        panic!()
    };
    assert_eq!(stat.version, 1);
    assert_eq!(results[3], OpResult::Check);
    assert!(matches!(results[4], OpResult::Create2 { .. }));
    assert_eq!(results[5], OpResult::Delete);
    let m = h.stat("/m");
    assert_eq!((m.num_children, m.cversion, m.pzxid), (1, 3, 1));
    assert_eq!(h.db.data("/m/b"), Some(Some(Bytes::from_static(b"zz"))));
}

#[test]
fn multi_failure_is_all_or_nothing_with_zookeeper_codes() {
    let mut h = H::new();
    h.create(S1, "/x", 0).unwrap();
    let before: Vec<_> =
        h.db.iter_nodes()
            .map(|n| (n.path.to_string(), n.stat))
            .collect();
    let ops = vec![
        MultiOp::Create(match create_req(OpCode::Create, "/new", 0) {
            Request::Create(c) => c,
            _ => unreachable!(),
        }),
        MultiOp::Delete {
            path: "/x".into(),
            version: 0,
        },
        MultiOp::Check {
            path: "/x".into(),
            version: -1,
        },
        MultiOp::SetData {
            path: "/x".into(),
            data: None,
            version: -1,
        },
    ];
    let body = h.prep(S1, &Request::Multi(ops)).unwrap();
    assert_eq!(
        body,
        TxnBody::Multi(vec![
            TxnBody::Error(ErrorCode::Ok),
            TxnBody::Error(ErrorCode::Ok),
            TxnBody::Error(ErrorCode::NoNode),
            TxnBody::Error(ErrorCode::RuntimeInconsistency),
        ])
    );
    let out = h.commit(S1, body);
    assert_eq!(
        out.result,
        TxnResult::Multi(vec![
            OpResult::Error(ErrorCode::Ok),
            OpResult::Error(ErrorCode::Ok),
            OpResult::Error(ErrorCode::NoNode),
            OpResult::Error(ErrorCode::RuntimeInconsistency),
        ])
    );
    assert_eq!(out.result.err(), ErrorCode::Ok);
    let mut after: Vec<_> =
        h.db.iter_nodes()
            .map(|n| (n.path.to_string(), n.stat))
            .collect();
    let mut before = before;
    before.sort_by(|a, b| a.0.cmp(&b.0));
    after.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(before, after);
    // Sequential numbering inside a multi sees earlier creates.
    let seq = |p: &str| {
        MultiOp::Create(
            match create_req(OpCode::Create, p, create_flags::PERSISTENT_SEQUENTIAL) {
                Request::Create(c) => c,
                _ => unreachable!(),
            },
        )
    };
    let out = h
        .write(S1, Request::Multi(vec![seq("/x/s"), seq("/x/s")]))
        .unwrap();
    assert_eq!(
        out.result,
        TxnResult::Multi(vec![
            OpResult::Create {
                path: "/x/s0000000000".into()
            },
            OpResult::Create {
                path: "/x/s0000000001".into()
            },
        ])
    );
    // Reads in a write multi are refused outright.
    assert_eq!(
        h.prep(
            S1,
            &Request::Multi(vec![MultiOp::GetData { path: "/x".into() }])
        )
        .unwrap_err(),
        ErrorCode::MarshallingError
    );
    assert_eq!(
        h.write(S1, Request::Multi(vec![])).unwrap().result,
        TxnResult::Multi(vec![])
    );
}

#[test]
fn data_exist_and_child_watches() {
    let mut h = H::new();
    h.read(
        S1,
        Request::Exists {
            path: "/a".into(),
            watch: true,
        },
    )
    .unwrap_err();
    h.read(
        S2,
        Request::GetChildren {
            path: "/".into(),
            watch: true,
            with_stat: false,
        },
    )
    .unwrap();
    let out = h.create(S1, "/a", 0).unwrap();
    assert_eq!(
        events(&out),
        vec![
            ev(S1, event_type::NODE_CREATED, "/a"),
            ev(S2, event_type::NODE_CHILDREN_CHANGED, "/")
        ]
    );
    assert!(out.events.iter().all(|e| e.zxid == 1 && e.event.state == 3));
    // One-shot: the next create fires nothing.
    assert!(h.create(S1, "/b", 0).unwrap().events.is_empty());
    h.read(
        S1,
        Request::GetData {
            path: "/a".into(),
            watch: true,
        },
    )
    .unwrap();
    h.read(
        S2,
        Request::Exists {
            path: "/a".into(),
            watch: true,
        },
    )
    .unwrap();
    let out = h.write(S1, set_data("/a", b"1", -1)).unwrap();
    assert_eq!(
        events(&out),
        vec![
            ev(S1, event_type::NODE_DATA_CHANGED, "/a"),
            ev(S2, event_type::NODE_DATA_CHANGED, "/a")
        ]
    );
    // Delete: data + child watchers on the node get one NodeDeleted each; parent watchers
    // get NodeChildrenChanged.
    h.read(
        S1,
        Request::GetData {
            path: "/a".into(),
            watch: true,
        },
    )
    .unwrap();
    h.read(
        S1,
        Request::GetChildren {
            path: "/a".into(),
            watch: true,
            with_stat: true,
        },
    )
    .unwrap();
    h.read(
        S2,
        Request::GetChildren {
            path: "/a".into(),
            watch: true,
            with_stat: false,
        },
    )
    .unwrap();
    h.read(
        S2,
        Request::GetChildren {
            path: "/".into(),
            watch: true,
            with_stat: false,
        },
    )
    .unwrap();
    assert_eq!(h.db.watch_count(), 4);
    let out = h
        .write(
            S1,
            Request::Delete {
                path: "/a".into(),
                version: -1,
            },
        )
        .unwrap();
    assert_eq!(
        events(&out),
        vec![
            ev(S1, event_type::NODE_DELETED, "/a"),
            ev(S2, event_type::NODE_DELETED, "/a"),
            ev(S2, event_type::NODE_CHILDREN_CHANGED, "/")
        ]
    );
    assert_eq!(h.db.watch_count(), 0);
    // getData/getChildren on a missing node register nothing.
    h.read(
        S1,
        Request::GetData {
            path: "/zz".into(),
            watch: true,
        },
    )
    .unwrap_err();
    h.read(
        S1,
        Request::GetChildren {
            path: "/zz".into(),
            watch: true,
            with_stat: false,
        },
    )
    .unwrap_err();
    assert_eq!(h.db.watch_count(), 0);
}

#[test]
fn persistent_and_recursive_watches() {
    let mut h = H::new();
    h.read(
        S1,
        Request::AddWatch {
            path: "/a".into(),
            mode: 0,
        },
    )
    .unwrap();
    h.read(
        S2,
        Request::AddWatch {
            path: "/".into(),
            mode: 1,
        },
    )
    .unwrap();
    let out = h.create(S1, "/a", 0).unwrap();
    assert_eq!(
        events(&out),
        vec![
            ev(S1, event_type::NODE_CREATED, "/a"),
            ev(S2, event_type::NODE_CREATED, "/a")
        ]
    );
    let out = h.create(S1, "/a/b", 0).unwrap();
    // The persistent watch on /a sees its child change; the recursive one sees the create only.
    assert_eq!(
        events(&out),
        vec![
            ev(S2, event_type::NODE_CREATED, "/a/b"),
            ev(S1, event_type::NODE_CHILDREN_CHANGED, "/a")
        ]
    );
    let out = h.write(S1, set_data("/a/b", b"x", -1)).unwrap();
    assert_eq!(
        events(&out),
        vec![ev(S2, event_type::NODE_DATA_CHANGED, "/a/b")]
    );
    let out = h
        .write(
            S1,
            Request::Delete {
                path: "/a/b".into(),
                version: -1,
            },
        )
        .unwrap();
    assert_eq!(
        events(&out),
        vec![
            ev(S2, event_type::NODE_DELETED, "/a/b"),
            ev(S1, event_type::NODE_CHILDREN_CHANGED, "/a")
        ]
    );
    // A standard watch plus the persistent one on the same path: still one event.
    h.read(
        S1,
        Request::GetData {
            path: "/a".into(),
            watch: true,
        },
    )
    .unwrap();
    let out = h.write(S1, set_data("/a", b"x", -1)).unwrap();
    assert_eq!(
        events(&out),
        vec![
            ev(S1, event_type::NODE_DATA_CHANGED, "/a"),
            ev(S2, event_type::NODE_DATA_CHANGED, "/a")
        ]
    );
    let chk = |h: &mut H, s: i64, p: &str, t: i32| {
        h.read(
            s,
            Request::CheckWatches {
                path: p.into(),
                watcher_type: t,
            },
        )
    };
    assert_eq!(
        chk(&mut h, S1, "/a", watcher_type::PERSISTENT),
        Ok(Response::Empty)
    );
    assert_eq!(
        chk(&mut h, S1, "/a", watcher_type::DATA),
        Err(ErrorCode::NoWatcher)
    );
    assert_eq!(
        chk(&mut h, S1, "/a", watcher_type::CHILDREN),
        Err(ErrorCode::NoWatcher)
    );
    assert_eq!(
        chk(&mut h, S1, "/a", watcher_type::ANY),
        Ok(Response::Empty)
    );
    assert_eq!(
        chk(&mut h, S2, "/", watcher_type::PERSISTENT_RECURSIVE),
        Ok(Response::Empty)
    );
    assert_eq!(
        chk(&mut h, S2, "/", watcher_type::PERSISTENT),
        Err(ErrorCode::NoWatcher)
    );
    assert_eq!(chk(&mut h, S2, "/", 9), Err(ErrorCode::MarshallingError));
    let rm = |h: &mut H, s: i64, p: &str, t: i32| {
        h.read(
            s,
            Request::RemoveWatches {
                path: p.into(),
                watcher_type: t,
            },
        )
    };
    assert_eq!(
        rm(&mut h, S1, "/a", watcher_type::DATA),
        Err(ErrorCode::NoWatcher)
    );
    assert_eq!(
        rm(&mut h, S1, "/a", watcher_type::PERSISTENT),
        Ok(Response::Empty)
    );
    assert_eq!(
        rm(&mut h, S1, "/a", watcher_type::ANY),
        Err(ErrorCode::NoWatcher)
    );
    assert_eq!(rm(&mut h, S2, "/", watcher_type::ANY), Ok(Response::Empty));
    assert_eq!(h.db.watch_count(), 0);
    assert!(h.create(S1, "/a/c", 0).unwrap().events.is_empty());
    assert_eq!(
        h.read(
            S1,
            Request::AddWatch {
                path: "/a".into(),
                mode: 2
            }
        ),
        Err(ErrorCode::MarshallingError)
    );
}

#[test]
fn remove_specific_watch_types() {
    let mut h = H::new();
    h.create(S1, "/a", 0).unwrap();
    h.read(
        S1,
        Request::GetData {
            path: "/a".into(),
            watch: true,
        },
    )
    .unwrap();
    h.read(
        S1,
        Request::GetChildren {
            path: "/a".into(),
            watch: true,
            with_stat: false,
        },
    )
    .unwrap();
    let rm = |h: &mut H, t: i32| {
        h.read(
            S1,
            Request::RemoveWatches {
                path: "/a".into(),
                watcher_type: t,
            },
        )
    };
    assert_eq!(rm(&mut h, watcher_type::CHILDREN), Ok(Response::Empty));
    assert_eq!(
        rm(&mut h, watcher_type::CHILDREN),
        Err(ErrorCode::NoWatcher)
    );
    assert_eq!(h.db.watch_count(), 1);
    assert_eq!(
        h.db.watches_by_session(),
        vec![(S1, vec!["/a".to_string()])]
    );
    assert_eq!(h.db.watches_by_path(), vec![("/a".to_string(), vec![S1])]);
    h.db.remove_session_watches(S1);
    assert_eq!(h.db.watch_count(), 0);
}

#[test]
fn watch_events_carry_acl_for_filtering() {
    let mut h = H::new();
    h.auth(S1, "alice:pw");
    h.read(
        S2,
        Request::Exists {
            path: "/secret".into(),
            watch: true,
        },
    )
    .unwrap_err();
    let out = h
        .write(
            S1,
            create_with_acl("/secret", vec![Acl::new(perms::ALL, "auth", "")]),
        )
        .unwrap();
    assert_eq!(out.events.len(), 1);
    let e = &out.events[0];
    assert!(!e.visible_to(&[ip()], false));
    assert!(e.visible_to(&[ip()], true));
    assert!(e.visible_to(&h.ids_of(S1), false));
}

#[test]
fn set_watches_reports_missed_changes() {
    let mut h = H::new();
    h.create(S1, "/d", 0).unwrap(); // zxid 1
    h.create(S1, "/c", 0).unwrap(); // zxid 2
    h.create(S1, "/exists", 0).unwrap(); // zxid 3
    h.write(S1, set_data("/d", b"x", -1)).unwrap(); // zxid 4
    h.create(S1, "/c/k", 0).unwrap(); // zxid 5
    let sw = SetWatches {
        relative_zxid: 3,
        data: vec!["/d".into(), "/exists".into(), "/gone".into()],
        exist: vec!["/exists".into(), "/nothere".into()],
        child: vec!["/c".into(), "/d".into(), "/gone".into()],
        persistent: vec!["/p".into()],
        persistent_recursive: vec!["/r".into()],
    };
    let fired = h.db.set_watches(S2, &sw);
    let got: Vec<_> = fired
        .iter()
        .map(|f| (f.session_id, f.event.event_type, f.event.path.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            ev(S2, event_type::NODE_DATA_CHANGED, "/d"),
            ev(S2, event_type::NODE_DELETED, "/gone"),
            ev(S2, event_type::NODE_CREATED, "/exists"),
            ev(S2, event_type::NODE_CHILDREN_CHANGED, "/c"),
            ev(S2, event_type::NODE_DELETED, "/gone"),
        ]
    );
    assert!(fired.iter().all(|f| f.zxid == -1 && f.acl.is_none()));
    // Re-registered: data on /exists, exist on /nothere, child on /d, persistent /p (both
    // tables), recursive /r.
    assert_eq!(h.db.watch_count(), 6);
    let out = h.create(S1, "/nothere", 0).unwrap();
    assert_eq!(
        events(&out),
        vec![ev(S2, event_type::NODE_CREATED, "/nothere")]
    );
    let out = h.create(S1, "/r/x", 0).unwrap_err();
    assert_eq!(out, ErrorCode::NoNode);
}

#[test]
fn ephemerals_and_close_session() {
    let mut h = H::new();
    h.create(S1, "/app", 0).unwrap();
    h.create(S1, "/app/e1", create_flags::EPHEMERAL).unwrap();
    h.create(S1, "/e2", create_flags::EPHEMERAL).unwrap();
    h.create(S2, "/app/other", create_flags::EPHEMERAL).unwrap();
    assert_eq!(h.stat("/e2").ephemeral_owner, S1);
    assert_eq!(h.db.ephemeral_count(), 3);
    let get = |h: &mut H, s: i64, p: &str| match h
        .read(
            s,
            Request::GetEphemerals {
                prefix_path: p.into(),
            },
        )
        .unwrap()
    {
        Response::GetEphemerals { paths } => paths,
        r => panic!("{r:?}"),
    };
    assert_eq!(get(&mut h, S1, "/"), vec!["/app/e1", "/e2"]);
    assert_eq!(get(&mut h, S1, " "), vec!["/app/e1", "/e2"]);
    assert_eq!(get(&mut h, S1, "/app"), vec!["/app/e1"]);
    assert_eq!(get(&mut h, S1, "/ap"), vec!["/app/e1"]);
    assert_eq!(get(&mut h, S2, "/e"), Vec::<String>::new());
    h.read(
        S2,
        Request::GetChildren {
            path: "/app".into(),
            watch: true,
            with_stat: false,
        },
    )
    .unwrap();
    h.read(
        S2,
        Request::Exists {
            path: "/e2".into(),
            watch: true,
        },
    )
    .unwrap();
    assert_eq!(
        h.prep(S1, &Request::CloseSession),
        Ok(TxnBody::CloseSession)
    );
    let out = h.commit(S1, TxnBody::CloseSession);
    assert_eq!(out.result, TxnResult::Session);
    assert_eq!(
        events(&out),
        vec![
            ev(S2, event_type::NODE_CHILDREN_CHANGED, "/app"),
            ev(S2, event_type::NODE_DELETED, "/e2")
        ]
    );
    assert!(!h.db.exists("/app/e1") && !h.db.exists("/e2"));
    assert_eq!(
        h.db.ephemerals_by_session(),
        vec![(S2, vec!["/app/other".to_string()])]
    );
    let app = h.stat("/app");
    assert_eq!((app.pzxid, app.cversion, app.num_children), (5, 3, 1));
}

#[test]
fn containers() {
    let mut h = H::new();
    let out = h
        .write(
            S1,
            create_req(OpCode::CreateContainer, "/c", create_flags::CONTAINER),
        )
        .unwrap();
    let TxnResult::Created { stat, op, .. } = out.result else {
        panic!()
    };
    assert_eq!(op, OpCode::CreateContainer);
    assert_eq!(stat.ephemeral_owner, 0, "clients see 0 for containers");
    assert_eq!(
        h.db.iter_nodes()
            .find(|n| n.path == "/c")
            .unwrap()
            .ephemeral_owner,
        i64::MIN
    );
    assert!(h.db.expired_nodes(i64::MAX).is_empty(), "never had a child");
    h.create(S1, "/c/x", 0).unwrap();
    assert!(h.db.expired_nodes(0).is_empty());
    let dc = Request::DeleteContainer { path: "/c".into() };
    assert_eq!(h.prep(S1, &dc).unwrap_err(), ErrorCode::NotEmpty);
    h.write(
        S1,
        Request::Delete {
            path: "/c/x".into(),
            version: -1,
        },
    )
    .unwrap();
    assert_eq!(h.db.expired_nodes(0), vec!["/c"]);
    h.write(S1, dc.clone()).unwrap();
    assert!(h.db.expired_nodes(0).is_empty());
    assert_eq!(h.prep(S1, &dc).unwrap_err(), ErrorCode::NoNode);
    h.create(S1, "/e", create_flags::EPHEMERAL).unwrap();
    assert_eq!(
        h.prep(S1, &Request::DeleteContainer { path: "/e".into() })
            .unwrap_err(),
        ErrorCode::BadVersion
    );
    assert_eq!(
        h.prep(
            S1,
            &Request::DeleteContainer {
                path: "/zookeeper".into()
            }
        )
        .unwrap_err(),
        ErrorCode::BadArguments
    );
    // A container flag sent with plain create makes a persistent node, as in ZooKeeper.
    h.create(S1, "/notc", create_flags::CONTAINER).unwrap();
    assert_eq!(
        h.db.iter_nodes().find(|n| n.path == "/notc").unwrap().kind,
        EphemeralType::Void
    );
    // Children of containers are allowed.
    let c = h.stat("/");
    assert!(c.num_children >= 3);
}

#[test]
fn ttl_nodes() {
    let ttl_req = |path: &str, flags: i32, ttl: i64| {
        Request::Create(CreateRequest {
            op: OpCode::CreateTtl,
            path: path.into(),
            data: None,
            acl: Acl::open_unsafe(),
            flags,
            ttl_ms: ttl,
        })
    };
    let h = H::new();
    assert_eq!(
        h.prep(S1, &ttl_req("/t", create_flags::PERSISTENT_WITH_TTL, 100))
            .unwrap_err(),
        ErrorCode::Unimplemented
    );
    let mut h = H::with(true);
    assert_eq!(
        h.prep(S1, &ttl_req("/t", create_flags::PERSISTENT_WITH_TTL, 0))
            .unwrap_err(),
        ErrorCode::BadArguments
    );
    assert_eq!(
        h.prep(
            S1,
            &ttl_req("/t", create_flags::PERSISTENT_WITH_TTL, MAX_TTL_MS + 1)
        )
        .unwrap_err(),
        ErrorCode::BadArguments
    );
    assert_eq!(
        h.prep(S1, &ttl_req("/t", create_flags::PERSISTENT, 100))
            .unwrap_err(),
        ErrorCode::BadArguments
    );
    assert_eq!(
        h.prep(
            S1,
            &create_req(OpCode::Create2, "/t", create_flags::PERSISTENT_WITH_TTL)
        )
        .unwrap_err(),
        ErrorCode::BadArguments
    );
    let out = h
        .write(S1, ttl_req("/t", create_flags::PERSISTENT_WITH_TTL, 500))
        .unwrap(); // zxid 1, mtime 1000
    let TxnResult::Created { stat, .. } = out.result else {
        panic!()
    };
    assert_eq!(stat.ephemeral_owner, 0);
    assert_eq!(
        h.created_path(S1, "/t/", create_flags::PERSISTENT_SEQUENTIAL),
        "/t/0000000000"
    );
    assert!(h.db.expired_nodes(10_000).is_empty(), "has a child");
    h.write(
        S1,
        Request::Delete {
            path: "/t/0000000000".into(),
            version: -1,
        },
    )
    .unwrap();
    assert!(h.db.expired_nodes(1500).is_empty());
    assert_eq!(h.db.expired_nodes(1501), vec!["/t"]);
    let s = h
        .write(
            S1,
            ttl_req("/s", create_flags::PERSISTENT_SEQUENTIAL_WITH_TTL, 5),
        )
        .unwrap();
    assert!(matches!(s.result, TxnResult::Created { ref path, .. } if path == "/s0000000001"));
    h.write(S1, Request::DeleteContainer { path: "/t".into() })
        .unwrap();
    assert!(!h.db.exists("/t"));
}

#[test]
fn reads() {
    let mut h = H::new();
    h.create(S1, "/a", 0).unwrap();
    h.create(S1, "/a/b", 0).unwrap();
    h.create(S1, "/a/b/c", 0).unwrap();
    h.create(S1, "/a/a", 0).unwrap();
    assert_eq!(
        h.read(S1, Request::GetAllChildrenNumber { path: "/a".into() }),
        Ok(Response::GetAllChildrenNumber { total: 3 })
    );
    assert_eq!(
        h.read(S1, Request::GetAllChildrenNumber { path: "/".into() }),
        Ok(Response::GetAllChildrenNumber { total: 7 })
    );
    assert_eq!(
        h.read(S1, Request::GetAllChildrenNumber { path: "/q".into() }),
        Err(ErrorCode::NoNode)
    );
    let Response::GetChildren2 { children, stat } = h
        .read(
            S1,
            Request::GetChildren {
                path: "/a".into(),
                watch: false,
                with_stat: true,
            },
        )
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(children, vec!["a", "b"]);
    assert_eq!(stat, h.stat("/a"));
    assert_eq!(
        h.read(
            S1,
            Request::Exists {
                path: "/a\0".into(),
                watch: false
            }
        ),
        Err(ErrorCode::BadArguments)
    );
    assert_eq!(
        h.read(
            S1,
            Request::Exists {
                path: "/nope".into(),
                watch: false
            }
        ),
        Err(ErrorCode::NoNode)
    );
    assert_eq!(
        h.read(
            S1,
            Request::Exists {
                path: "/a".into(),
                watch: false
            }
        ),
        Ok(Response::Stat(h.stat("/a")))
    );
    let Response::GetData { data, .. } = h
        .read(
            S1,
            Request::GetData {
                path: "/a".into(),
                watch: false,
            },
        )
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(data, Some(Bytes::from_static(b"d")));
    let mr = h
        .read(
            S1,
            Request::MultiRead(vec![
                MultiOp::GetChildren {
                    path: "/a/b".into(),
                },
                MultiOp::GetData {
                    path: "/missing".into(),
                },
                MultiOp::GetData {
                    path: "/a/b/c".into(),
                },
            ]),
        )
        .unwrap();
    let Response::Multi(r) = mr else { panic!() };
    assert_eq!(
        r[0],
        OpResult::GetChildren {
            children: vec!["c".into()]
        }
    );
    assert_eq!(r[1], OpResult::Error(ErrorCode::NoNode));
    assert!(matches!(r[2], OpResult::GetData { .. }));
    assert_eq!(
        h.read(
            S1,
            Request::MultiRead(vec![MultiOp::Delete {
                path: "/a".into(),
                version: -1
            }])
        ),
        Err(ErrorCode::MarshallingError)
    );
    assert_eq!(h.read(S1, Request::Ping), Err(ErrorCode::Unimplemented));
    assert_eq!(
        h.prep(S1, &Request::GetAcl { path: "/".into() }),
        Err(ErrorCode::Unimplemented)
    );
}

#[test]
fn apply_survives_inconsistent_txns() {
    let mut h = H::new();
    let bad = vec![
        TxnBody::Create {
            path: "/x/y".into(),
            data: None,
            acl: Acl::open_unsafe(),
            kind: NodeKind::Persistent,
            parent_cversion: 1,
            op: OpCode::Create,
        },
        TxnBody::Create {
            path: "/".into(),
            data: None,
            acl: Acl::open_unsafe(),
            kind: NodeKind::Persistent,
            parent_cversion: 1,
            op: OpCode::Create,
        },
        TxnBody::Create {
            path: "nope".into(),
            data: None,
            acl: Acl::open_unsafe(),
            kind: NodeKind::Persistent,
            parent_cversion: 1,
            op: OpCode::Create,
        },
        TxnBody::Create {
            path: "/t".into(),
            data: None,
            acl: Acl::open_unsafe(),
            kind: NodeKind::Ttl(-5),
            parent_cversion: 1,
            op: OpCode::CreateTtl,
        },
        TxnBody::Delete { path: "/".into() },
        TxnBody::Delete {
            path: "/zookeeper".into(),
        },
        TxnBody::Delete {
            path: "/nope".into(),
        },
        TxnBody::Delete { path: "".into() },
        TxnBody::SetData {
            path: "/nope".into(),
            data: None,
            version: 1,
        },
        TxnBody::SetAcl {
            path: "/nope".into(),
            acl: vec![],
            version: 1,
        },
        TxnBody::Check {
            path: "/nope".into(),
            version: 1,
        },
        TxnBody::Multi(vec![TxnBody::Multi(vec![]), TxnBody::CloseSession]),
        TxnBody::CloseSession,
        TxnBody::Error(ErrorCode::NodeExists),
    ];
    for b in bad {
        let out = h.commit(S1, b.clone());
        assert!(out.events.is_empty(), "{b:?}");
        match out.result {
            TxnResult::Error(_) | TxnResult::Session => {}
            TxnResult::Multi(r) => assert!(r.iter().all(|x| matches!(x, OpResult::Error(_)))),
            r => panic!("{b:?} gave {r:?}"),
        }
    }
    assert_eq!(h.db.node_count(), 5);
}

#[test]
fn same_txns_give_same_tree() {
    let mut h = H::new();
    let mut log = Vec::new();
    let reqs = vec![
        create_req(OpCode::Create, "/a", 0),
        create_req(OpCode::Create, "/a/s", create_flags::EPHEMERAL_SEQUENTIAL),
        create_req(OpCode::Create, "/a/s", create_flags::PERSISTENT_SEQUENTIAL),
        set_data("/a", b"xyz", -1),
        Request::Delete {
            path: "/a/s0000000001".into(),
            version: -1,
        },
        Request::SetAcl {
            path: "/a".into(),
            acl: Acl::read_unsafe(),
            version: -1,
        },
    ];
    for r in reqs {
        let body = h.prep(S1, &r).unwrap();
        log.push(body.clone());
        h.commit(S1, body);
    }
    let mut replica = Database::new(TreeOptions::default());
    for (i, body) in log.into_iter().enumerate() {
        let zxid = i as i64 + 1;
        replica.apply(&Txn {
            session_id: S1,
            cxid: 0,
            zxid,
            time_ms: zxid * 1000,
            body,
        });
    }
    let dump = |db: &Database| {
        let mut v: Vec<_> = db
            .iter_nodes()
            .map(|n| {
                (
                    n.path.to_string(),
                    n.stat,
                    n.data.clone(),
                    n.acl.to_vec(),
                    n.stored_cversion,
                )
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    assert_eq!(dump(&h.db), dump(&replica));
    assert_eq!(replica.last_zxid(), 6);
}

#[test]
fn pipelined_prep_sees_unapplied_writes() {
    let mut h = H::new();
    let ids = vec![ip()];
    let ctx = plain_ctx(S1, &ids);
    let mut pending = Pending::new();
    let seq = create_req(OpCode::Create, "/s", create_flags::PERSISTENT_SEQUENTIAL);
    let b1 = h.db.prep_pipelined(&mut pending, 1, &ctx, &seq).unwrap();
    let b2 = h.db.prep_pipelined(&mut pending, 2, &ctx, &seq).unwrap();
    let b3 =
        h.db.prep_pipelined(
            &mut pending,
            3,
            &ctx,
            &create_req(OpCode::Create, "/e", create_flags::EPHEMERAL),
        )
        .unwrap();
    let b4 =
        h.db.prep_pipelined(
            &mut pending,
            4,
            &ctx,
            &create_req(OpCode::Create, "/e/x", 0),
        )
        .unwrap_err();
    assert_eq!(b4, ErrorCode::NoChildrenForEphemerals);
    assert_eq!(
        h.db.prep_pipelined(&mut pending, 4, &ctx, &create_req(OpCode::Create, "/e", 0)),
        Err(ErrorCode::NodeExists)
    );
    // A failed multi records nothing.
    let bad = Request::Multi(vec![
        MultiOp::Delete {
            path: "/e".into(),
            version: -1,
        },
        MultiOp::Delete {
            path: "/nope".into(),
            version: -1,
        },
    ]);
    assert!(matches!(
        h.db.prep_pipelined(&mut pending, 4, &ctx, &bad),
        Ok(TxnBody::Multi(_))
    ));
    let close =
        h.db.prep_pipelined(&mut pending, 4, &ctx, &Request::CloseSession)
            .unwrap();
    // After the close (not yet applied) /e is gone for later writes.
    let b5 =
        h.db.prep_pipelined(&mut pending, 5, &ctx, &create_req(OpCode::Create, "/e", 0))
            .unwrap();
    for (i, b) in [b1, b2, b3, close, b5].into_iter().enumerate() {
        let out = h.commit(S1, b);
        pending.applied(i as i64 + 1);
        assert!(!matches!(out.result, TxnResult::Error(_)), "{out:?}");
    }
    assert!(pending.is_empty());
    assert_eq!(
        h.db.children("/").unwrap(),
        vec!["e", "s0000000000", "s0000000001", "zookeeper"]
    );
    assert_eq!(h.stat("/e").ephemeral_owner, 0);
}

#[test]
fn pending_keeps_a_path_until_its_last_write_is_applied() {
    let h = H::new();
    let ids = vec![ip()];
    let ctx = plain_ctx(S1, &ids);
    let mut pending = Pending::new();
    h.db.prep_pipelined(&mut pending, 1, &ctx, &create_req(OpCode::Create, "/a", 0))
        .unwrap();
    h.db.prep_pipelined(&mut pending, 2, &ctx, &create_req(OpCode::Create, "/b", 0))
        .unwrap();
    let set_a = Request::SetData {
        path: "/a".into(),
        data: Some(Bytes::from_static(b"x")),
        version: 0,
    };
    h.db.prep_pipelined(&mut pending, 3, &ctx, &set_a).unwrap();
    // /a (zxid 1, rewritten by 3), /b (2), and the root's child count (1 and 2).
    let before = pending.len();
    pending.applied(1);
    // Zxid 3 still has to come: /a must still read as version 1 to the next write.
    assert_eq!(
        h.db.prep_pipelined(&mut pending, 4, &ctx, &set_a),
        Err(ErrorCode::BadVersion)
    );
    assert!(pending.len() <= before);
    pending.applied(3);
    assert!(pending.is_empty(), "{pending:?}");
}

/// Not a test: the longest single `apply` while 2.5M creates grow the tree through several
/// index resizes, next to the same inserts into a map shaped like the previous layout (a
/// `HashMap<Arc<str>, 112-byte node>`). Run with
/// `cargo test --release --lib create_stalls -- --ignored --nocapture`.
#[test]
#[ignore]
fn create_stalls() {
    use std::time::{Duration, Instant};
    const N: usize = 2_500_000;
    SKIP_DEBUG_CHECK.with(|c| c.set(true));
    let mut db = Database::new(TreeOptions::default());
    let value = Bytes::from(vec![b'v'; 100]);
    let txn = |db: &mut Database, zxid: i64, body: TxnBody| {
        db.apply(&Txn {
            session_id: S1,
            cxid: 0,
            zxid,
            time_ms: zxid,
            body,
        })
    };
    txn(
        &mut db,
        1,
        TxnBody::Create {
            path: "/bench".into(),
            data: None,
            acl: Acl::open_unsafe(),
            kind: NodeKind::Persistent,
            parent_cversion: -1,
            op: OpCode::Create,
        },
    );
    let report = |what: &str, times: &mut Vec<Duration>, total: Duration| {
        times.sort_unstable();
        let top: Vec<String> = times
            .iter()
            .rev()
            .take(5)
            .map(|d| format!("{:.1}", d.as_secs_f64() * 1e3))
            .collect();
        println!(
            "{what}: {N} inserts in {:.2} s; p99.99 {:.1} us; longest (ms): {}",
            total.as_secs_f64(),
            times[times.len() * 9999 / 10000].as_secs_f64() * 1e6,
            top.join(", ")
        );
    };
    let mut times = Vec::with_capacity(N);
    let start = Instant::now();
    for i in 0..N {
        let body = TxnBody::Create {
            path: format!("/bench/node-{i:08}"),
            data: Some(value.clone()),
            acl: Acl::open_unsafe(),
            kind: NodeKind::Persistent,
            parent_cversion: -1,
            op: OpCode::Create,
        };
        let t = Instant::now();
        let out = txn(&mut db, 2 + i as i64, body);
        times.push(t.elapsed());
        assert_eq!(out.result.err(), ErrorCode::Ok);
    }
    report("apply(create), this layout", &mut times, start.elapsed());
    drop(db);
    let mut old: hashbrown::HashMap<Arc<str>, [u64; 14]> = hashbrown::HashMap::new();
    let mut times = Vec::with_capacity(N);
    let start = Instant::now();
    for i in 0..N {
        let key: Arc<str> = Arc::from(format!("/bench/node-{i:08}"));
        let t = Instant::now();
        old.insert(key, [i as u64; 14]);
        times.push(t.elapsed());
    }
    report(
        "HashMap<Arc<str>, 112 B> insert",
        &mut times,
        start.elapsed(),
    );
}
