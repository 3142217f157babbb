//! Tests of background snapshots, restore and the digest: random transactions interleaved with
//! small chunks must still give exactly the point-in-time image, and restore + replay must
//! reach the live tree.

use std::sync::Arc;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::*;
use crate::jute::{perms, ErrorCode, OpCode};

fn opts() -> TreeOptions {
    TreeOptions {
        extended_types_enabled: true,
    }
}

/// What the generator needs to know of a node.
struct Info {
    path: String,
    owner: i64,
    cversion: i32,
    version: i32,
    aversion: i32,
    children: i32,
}

fn infos(db: &Database) -> Vec<Info> {
    let mut v: Vec<Info> = db
        .iter_nodes()
        .map(|n| Info {
            path: n.path.to_string(),
            owner: n.ephemeral_owner,
            cversion: n.stored_cversion,
            version: n.stat.version,
            aversion: n.stat.aversion,
            children: n.stat.num_children,
        })
        .collect();
    v.sort_by(|a, b| a.path.cmp(&b.path));
    v
}

fn acls() -> [Vec<Acl>; 3] {
    [
        Acl::open_unsafe(),
        Acl::read_unsafe(),
        vec![
            Acl::new(perms::ALL, "digest", "u:h"),
            Acl::new(perms::READ, "ip", "10.0.0.0/8"),
        ],
    ]
}

/// A random, mostly valid transaction for the current tree (session, body).
fn gen_body(db: &Database, rng: &mut StdRng) -> (i64, TxnBody) {
    let nodes = infos(db);
    let session = rng.gen_range(1..=4);
    let pick = |rng: &mut StdRng| &nodes[rng.gen_range(0..nodes.len())];
    let deletable = |n: &&Info| !is_special_path(&n.path);
    let r = rng.gen_range(0..100);
    let body = match r {
        0..=44 => gen_create(&nodes, rng, session),
        45..=54 => {
            let leaves: Vec<&Info> = nodes
                .iter()
                .filter(deletable)
                .filter(|n| n.children == 0)
                .collect();
            match leaves.choose(rng) {
                Some(n) => TxnBody::Delete {
                    path: n.path.clone(),
                },
                None => gen_create(&nodes, rng, session),
            }
        }
        55..=57 => {
            // A whole subtree, children first.
            // Not a top-level node, so the tree keeps growing overall.
            let roots: Vec<&Info> = nodes
                .iter()
                .filter(deletable)
                .filter(|n| n.path.matches('/').count() >= 2)
                .collect();
            match roots.choose(rng) {
                Some(root) => {
                    let prefix = format!("{}/", root.path);
                    let mut doomed: Vec<&str> = nodes
                        .iter()
                        .filter(|n| n.path == root.path || n.path.starts_with(&prefix))
                        .map(|n| n.path.as_str())
                        .collect();
                    doomed.sort_by(|a, b| b.cmp(a));
                    TxnBody::Multi(
                        doomed
                            .into_iter()
                            .map(|p| TxnBody::Delete { path: p.into() })
                            .collect(),
                    )
                }
                None => gen_create(&nodes, rng, session),
            }
        }
        58..=74 => {
            let n = pick(rng);
            TxnBody::SetData {
                path: n.path.clone(),
                data: gen_data(rng),
                version: n.version + 1,
            }
        }
        75..=82 => {
            let n = pick(rng);
            TxnBody::SetAcl {
                path: n.path.clone(),
                acl: acls()[rng.gen_range(0..3)].clone(),
                version: n.aversion + 1,
            }
        }
        83..=89 => TxnBody::CloseSession,
        90..=93 => {
            let n = pick(rng);
            TxnBody::Multi(vec![
                gen_create(&nodes, rng, session),
                TxnBody::SetData {
                    path: n.path.clone(),
                    data: gen_data(rng),
                    version: n.version + 1,
                },
            ])
        }
        94..=95 => TxnBody::Multi(vec![
            gen_create(&nodes, rng, session),
            TxnBody::Error(ErrorCode::NoNode),
        ]),
        96 => TxnBody::Error(ErrorCode::BadVersion),
        97 => TxnBody::CreateSession { timeout_ms: 30_000 },
        _ => TxnBody::Check {
            path: pick(rng).path.clone(),
            version: -1,
        },
    };
    (session, body)
}

fn gen_data(rng: &mut StdRng) -> Option<Bytes> {
    if rng.gen_bool(0.1) {
        return None;
    }
    let len = rng.gen_range(0..24);
    Some(Bytes::from(
        (0..len).map(|_| rng.gen()).collect::<Vec<u8>>(),
    ))
}

fn gen_create(nodes: &[Info], rng: &mut StdRng, session: i64) -> TxnBody {
    let parents: Vec<&Info> = nodes
        .iter()
        .filter(|n| EphemeralType::of(n.owner, true) != EphemeralType::Normal)
        .filter(|n| !n.path.starts_with("/zookeeper"))
        .collect();
    let parent = parents[rng.gen_range(0..parents.len())];
    let sequential = rng.gen_bool(0.3);
    let name = if sequential {
        format!("s{:010}", parent.cversion)
    } else {
        format!("{}", (b'a' + rng.gen_range(0..6u8)) as char)
    };
    let kind = match rng.gen_range(0..10) {
        0..=5 => NodeKind::Persistent,
        6..=7 => NodeKind::Ephemeral(session),
        8 => NodeKind::Container,
        _ => NodeKind::Ttl(1000),
    };
    TxnBody::Create {
        path: path::join(&parent.path, &name),
        data: gen_data(rng),
        acl: acls()[rng.gen_range(0..3)].clone(),
        kind,
        parent_cversion: if sequential || rng.gen_bool(0.5) {
            parent.cversion + 1
        } else {
            -1
        },
        op: if rng.gen_bool(0.5) {
            OpCode::Create
        } else {
            OpCode::Create2
        },
    }
}

/// A live tree plus the log of everything applied to it.
struct Live {
    db: Database,
    log: Vec<Txn>,
    /// What applying each logged txn returned.
    results: Vec<TxnResult>,
    rng: StdRng,
}

impl Live {
    fn step(&mut self) {
        let (session_id, body) = gen_body(&self.db, &mut self.rng);
        let zxid = self.log.len() as i64 + 1;
        let txn = Txn {
            session_id,
            cxid: 0,
            zxid,
            time_ms: zxid * 10,
            body,
        };
        self.results.push(self.db.apply(&txn).result);
        self.log.push(txn);
    }
}

/// Everything observable about a tree's nodes and indexes, sorted.
fn dump(db: &Database) -> Vec<String> {
    let mut v: Vec<String> = db
        .iter_nodes()
        .map(|n| {
            format!(
                "{} {:?} {:?} {:?} owner={} cv={}",
                n.path, n.stat, n.data, n.acl, n.ephemeral_owner, n.stored_cversion
            )
        })
        .collect();
    v.sort();
    v.push(format!("ephemerals {:?}", db.ephemerals_by_session()));
    v.push(format!("expired {:?}", db.expired_nodes(i64::MAX / 2)));
    v.push(format!(
        "size {} acls {} count {} zxid {}",
        db.approximate_data_size(),
        db.distinct_acl_count(),
        db.node_count(),
        db.last_zxid()
    ));
    v
}

fn restore(header: &SnapshotHeader, image: Vec<SnapNode>) -> Result<Database, TreeError> {
    let mut r = Database::restore_begin(header.options, header.zxid);
    for n in image {
        r.add(n)?;
    }
    r.finish()
}

/// Several snapshot rounds on one random history; every image must restore to exactly the
/// tree at its zxid (as built by a second tree that applied the log only up to there), and
/// replaying the rest of the log onto the restored tree must reach the live tree.
fn check_seed(seed: u64, chunk: usize) {
    let ctx = format!("seed {seed} chunk {chunk}");
    let mut live = Live {
        db: Database::new(opts()),
        log: Vec::new(),
        results: Vec::new(),
        rng: StdRng::seed_from_u64(seed),
    };
    // Follows the live tree's log, up to each snapshot's zxid.
    let mut shadow = Database::new(opts());
    for round in 0..2 {
        let steps = if round == 0 { 500 } else { 100 };
        for _ in 0..live.rng.gen_range(0..steps) {
            live.step();
        }
        let header = live.db.begin_snapshot().expect(&ctx);
        assert_eq!(header.zxid, live.db.last_zxid(), "{ctx}");
        assert_eq!(live.db.snapshot_zxid(), Some(header.zxid), "{ctx}");
        let split = live.log.len();
        let mut image = Vec::new();
        loop {
            for _ in 0..live.rng.gen_range(0..3) {
                live.step();
            }
            if live.rng.gen_ratio(1, 16) {
                live.db.check_invariants().expect(&ctx);
            }
            match live.db.snapshot_chunk(chunk) {
                Some(c) => {
                    assert!(c.nodes.len() <= chunk, "{ctx}");
                    image.extend(c.nodes);
                }
                None => break,
            }
        }
        assert_eq!(live.db.snapshot_zxid(), None, "{ctx}");
        live.db.check_invariants().expect(&ctx);
        for _ in 0..live.rng.gen_range(0..20) {
            live.step();
        }
        assert_eq!(image.len(), header.node_count, "{ctx}");
        if std::env::var("SNAP_STATS").is_ok() {
            eprintln!("STAT {ctx} round {round} nodes {}", header.node_count);
        }

        for t in &live.log[shadow.last_zxid() as usize..split] {
            shadow.apply(t);
        }
        assert_eq!(shadow.last_zxid(), header.zxid, "{ctx}");
        let image_digest = image
            .iter()
            .map(SnapNode::digest)
            .fold(0, u64::wrapping_add);
        assert_eq!(image_digest, shadow.digest(), "{ctx}");
        image.shuffle(&mut live.rng);
        let mut restored = restore(&header, image).expect(&ctx);
        restored.check_invariants().expect(&ctx);
        assert_eq!(dump(&restored), dump(&shadow), "{ctx}");
        assert_eq!(restored.digest(), shadow.digest(), "{ctx}");

        // Replaying the rest gives the live tree, with the same replies.
        for (t, r) in live.log[split..].iter().zip(&live.results[split..]) {
            assert_eq!(&restored.apply(t).result, r, "{ctx} zxid {}", t.zxid);
        }
        restored.check_invariants().expect(&ctx);
        assert_eq!(dump(&restored), dump(&live.db), "{ctx}");
        assert_eq!(restored.digest(), live.db.digest(), "{ctx}");
    }
}

#[test]
fn interleaved_snapshots_are_point_in_time() {
    SKIP_DEBUG_CHECK.with(|c| c.set(true));
    for chunk in [1, 7, 100] {
        for seed in 0..200 {
            check_seed(seed, chunk);
        }
    }
    // A chunk size between the others: most images take a few chunks.
    for seed in 1000..1040 {
        check_seed(seed, 30);
    }
}

fn small_tree() -> Database {
    let mut db = Database::new(opts());
    let bodies = [
        ("/a", NodeKind::Persistent),
        ("/a/b", NodeKind::Persistent),
        ("/a/b/c", NodeKind::Ephemeral(7)),
        ("/d", NodeKind::Container),
        ("/d/e", NodeKind::Ttl(5)),
    ];
    for (i, (path, kind)) in bodies.into_iter().enumerate() {
        let out = db.apply(&Txn {
            session_id: 7,
            cxid: 0,
            zxid: i as i64 + 1,
            time_ms: 100,
            body: TxnBody::Create {
                path: path.into(),
                data: Some(Bytes::from_static(b"x")),
                acl: Acl::open_unsafe(),
                kind,
                parent_cversion: -1,
                op: OpCode::Create,
            },
        });
        assert_eq!(out.result.err(), ErrorCode::Ok, "{path}");
    }
    db
}

fn image_of(db: &mut Database) -> (SnapshotHeader, Vec<SnapNode>) {
    let header = db.begin_snapshot().unwrap();
    let mut image = Vec::new();
    while let Some(c) = db.snapshot_chunk(3) {
        image.extend(c.nodes);
    }
    image.sort_by(|a, b| a.path.cmp(&b.path));
    (header, image)
}

#[test]
fn unchanged_tree_round_trips() {
    let mut db = small_tree();
    let (header, image) = image_of(&mut db);
    assert_eq!(header.node_count, 9);
    assert_eq!(image.len(), 9);
    for n in &image {
        assert_eq!(Some(n.stat(true)), db.stat(&n.path), "{}", n.path);
    }
    let restored = restore(&header, image).unwrap();
    assert_eq!(restored.digest(), db.digest());
    assert_eq!(dump(&restored), dump(&db));
    assert_eq!(restored.session_ephemerals(7), vec!["/a/b/c".to_string()]);
}

type Tweak = Box<dyn Fn(&mut SnapNode)>;

#[test]
fn digest_sees_every_field() {
    let db = small_tree();
    let base = db.digest();
    assert_eq!(base, db.clone().digest());
    let (_, image) = image_of(&mut db.clone());
    let sum = |v: &[SnapNode]| v.iter().map(SnapNode::digest).fold(0, u64::wrapping_add);
    assert_eq!(sum(&image), base);
    let tweaks: Vec<Tweak> = vec![
        Box::new(|n| n.path = "/zz".into()),
        Box::new(|n| n.data = None),
        Box::new(|n| n.data = Some(Bytes::from_static(b"y"))),
        Box::new(|n| n.acl = Arc::from(Acl::read_unsafe())),
        Box::new(|n| n.czxid += 1),
        Box::new(|n| n.mzxid += 1),
        Box::new(|n| n.pzxid += 1),
        Box::new(|n| n.ctime += 1),
        Box::new(|n| n.mtime += 1),
        Box::new(|n| n.version += 1),
        Box::new(|n| n.cversion += 1),
        Box::new(|n| n.aversion += 1),
        Box::new(|n| n.ephemeral_owner += 1),
        Box::new(|n| n.num_children += 1),
    ];
    let i = image.iter().position(|n| &*n.path == "/a").unwrap();
    for (k, tweak) in tweaks.iter().enumerate() {
        let mut v = image.clone();
        tweak(&mut v[i]);
        assert_ne!(sum(&v), base, "tweak {k}");
    }
}

#[test]
fn restore_rejects_inconsistent_images() {
    let mut db = small_tree();
    let (header, image) = image_of(&mut db);
    let without =
        |p: &str| -> Vec<SnapNode> { image.iter().filter(|n| &*n.path != p).cloned().collect() };
    let edited = |p: &str, f: &dyn Fn(&mut SnapNode)| -> Vec<SnapNode> {
        let mut v = image.clone();
        for n in v.iter_mut().filter(|n| &*n.path == p) {
            f(n);
        }
        v
    };
    assert_eq!(
        restore(&header, without("/a/b")).unwrap_err(),
        TreeError::Orphan("/a/b/c".into())
    );
    assert_eq!(
        restore(&header, without("/")).unwrap_err(),
        TreeError::NoRoot
    );
    let mut dup = image.clone();
    dup.push(image[1].clone());
    assert!(matches!(
        restore(&header, dup).unwrap_err(),
        TreeError::Duplicate(_)
    ));
    assert_eq!(
        restore(&header, edited("/a", &|n| n.num_children = 2)).unwrap_err(),
        TreeError::ChildCount {
            path: "/a".into(),
            declared: 2,
            actual: 1
        }
    );
    // A leaf whose child is missing from the image.
    assert!(matches!(
        restore(&header, without("/a/b/c")).unwrap_err(),
        TreeError::ChildCount { .. }
    ));
    for bad in ["a", "", "/a/", "/a//b", "//"] {
        let v = edited("/a/b/c", &|n| n.path = bad.into());
        assert_eq!(
            restore(&header, v).unwrap_err(),
            TreeError::BadPath(bad.into()),
            "{bad}"
        );
    }
    assert_eq!(
        restore(&header, edited("/d", &|n| n.mzxid = header.zxid + 1)).unwrap_err(),
        TreeError::FutureZxid("/d".into())
    );
    // Parents may come after their children.
    let mut rev = image.clone();
    rev.reverse();
    assert_eq!(restore(&header, rev).unwrap().digest(), db.digest());
}

#[test]
fn snapshot_lifecycle() {
    let mut db = small_tree();
    assert!(db.snapshot_chunk(10).is_none());
    let h = db.begin_snapshot().unwrap();
    assert_eq!(db.begin_snapshot(), Err(TreeError::SnapshotInProgress));
    assert_eq!(db.snapshot_chunk(2).unwrap().nodes.len(), 2);
    db.abort_snapshot();
    assert!(db.snapshot_chunk(10).is_none());
    let h2 = db.begin_snapshot().unwrap();
    assert_eq!(h, h2);
    let mut n = 0;
    while let Some(c) = db.snapshot_chunk(0) {
        assert!(c.nodes.len() <= 1);
        n += c.nodes.len();
    }
    assert_eq!(n, h.node_count);
    db.check_invariants().unwrap();
}

#[test]
fn created_after_begin_is_left_out_and_deleted_after_begin_is_kept() {
    let mut db = small_tree();
    let before = db.digest();
    let header = db.begin_snapshot().unwrap();
    let z = header.zxid;
    let txn = |zxid: i64, body: TxnBody| Txn {
        session_id: 7,
        cxid: 0,
        zxid,
        time_ms: 200,
        body,
    };
    db.apply(&txn(z + 1, TxnBody::CloseSession));
    db.apply(&txn(
        z + 2,
        TxnBody::Multi(vec![
            TxnBody::Delete {
                path: "/a/b".into(),
            },
            TxnBody::Create {
                path: "/a/b".into(),
                data: None,
                acl: Acl::read_unsafe(),
                kind: NodeKind::Persistent,
                parent_cversion: -1,
                op: OpCode::Create,
            },
            TxnBody::Create {
                path: "/new".into(),
                data: None,
                acl: Acl::read_unsafe(),
                kind: NodeKind::Persistent,
                parent_cversion: -1,
                op: OpCode::Create,
            },
        ]),
    ));
    assert!(!db.exists("/a/b/c"));
    let mut image = Vec::new();
    while let Some(c) = db.snapshot_chunk(2) {
        image.extend(c.nodes);
    }
    assert_eq!(image.len(), header.node_count);
    assert!(image.iter().all(|n| &*n.path != "/new"));
    let c = image.iter().find(|n| &*n.path == "/a/b/c").unwrap();
    assert_eq!(c.ephemeral_owner, 7);
    let restored = restore(&header, image).unwrap();
    assert_eq!(restored.digest(), before);
    assert_ne!(db.digest(), before);
}

/// Grows a flat-ish tree of `n` extra nodes, then snapshots it with churn between chunks.
fn big_snapshot(n: usize) {
    let mut db = Database::new(TreeOptions::default());
    let mut zxid = 0;
    let mut txn = |db: &mut Database, body: TxnBody| {
        zxid += 1;
        let out = db.apply(&Txn {
            session_id: 1,
            cxid: 0,
            zxid,
            time_ms: zxid,
            body,
        });
        debug_assert_eq!(out.result.err(), ErrorCode::Ok);
    };
    let create = |path: String| TxnBody::Create {
        path,
        data: Some(Bytes::from_static(b"payload")),
        acl: Acl::open_unsafe(),
        kind: NodeKind::Persistent,
        parent_cversion: -1,
        op: OpCode::Create,
    };
    let dirs = 100;
    for d in 0..dirs {
        txn(&mut db, create(format!("/d{d}")));
    }
    for i in 0..n - dirs {
        txn(&mut db, create(format!("/d{}/n{i}", i % dirs)));
    }
    let expected = db.digest();
    let header = db.begin_snapshot().unwrap();
    assert_eq!(header.node_count, n + 4);
    let mut emitted = 0usize;
    let mut digest = 0u64;
    let mut i = 0;
    while let Some(c) = db.snapshot_chunk(1000) {
        emitted += c.nodes.len();
        digest = c
            .nodes
            .iter()
            .map(SnapNode::digest)
            .fold(digest, u64::wrapping_add);
        // Churn: delete some old nodes, add new ones, rewrite data.
        for _ in 0..20 {
            let victim = format!("/d{}/n{i}", i % dirs);
            txn(&mut db, TxnBody::Delete { path: victim });
            txn(&mut db, create(format!("/d{}/m{i}", i % dirs)));
            i += 1;
        }
    }
    assert_eq!(emitted, n + 4);
    assert_eq!(digest, expected);
    db.check_invariants().unwrap();
}

#[test]
fn snapshot_of_100k_nodes_is_complete() {
    big_snapshot(100_000);
}

/// Deleting the newest nodes during a snapshot leaves the slab's ids alone (the walk still
/// needs them, and nodes created meanwhile must stay beyond its end); the free tail is cut
/// off once the snapshot is over, and deletes after that cut it straight away.
#[test]
fn free_tail_is_cut_only_outside_snapshots() {
    let mut db = Database::new(TreeOptions::default());
    let mut zxid = 0;
    let mut apply = |db: &mut Database, body: TxnBody| {
        zxid += 1;
        let t = Txn {
            session_id: 0,
            cxid: 0,
            zxid,
            time_ms: zxid,
            body,
        };
        assert_eq!(db.apply(&t).result.err(), ErrorCode::Ok, "{t:?}");
    };
    let create = |path: String| TxnBody::Create {
        path,
        data: Some(Bytes::from_static(b"v")),
        acl: Acl::open_unsafe(),
        kind: NodeKind::Persistent,
        parent_cversion: -1,
        op: OpCode::Create,
    };
    for i in 0..2_000 {
        apply(&mut db, create(format!("/n{i}")));
    }
    let full = db.store.id_count();
    let before = db.digest();
    let header = db.begin_snapshot().unwrap();
    for i in 100..2_000 {
        apply(
            &mut db,
            TxnBody::Delete {
                path: format!("/n{i}"),
            },
        );
    }
    assert_eq!(
        db.store.id_count(),
        full,
        "ids were renumbered under a snapshot"
    );
    apply(&mut db, create("/late".into()));
    assert_eq!(db.store.lookup("/late"), Some(full as u32));
    let mut image = Vec::new();
    while let Some(c) = db.snapshot_chunk(64) {
        image.extend(c.nodes);
    }
    assert_eq!(image.len(), header.node_count);
    assert_eq!(restore(&header, image).unwrap().digest(), before);
    // "/late" holds the tail up until it goes too.
    assert_eq!(db.store.id_count(), full + 1);
    apply(
        &mut db,
        TxnBody::Delete {
            path: "/late".into(),
        },
    );
    assert!(
        db.store.id_count() < 200,
        "{} ids left",
        db.store.id_count()
    );
    db.check_invariants().unwrap();
    // The cut-off ids are handed out again from the bottom of the free ones.
    apply(&mut db, create("/again".into()));
    db.check_invariants().unwrap();
    assert!(db.exists("/again") && db.exists("/n99") && !db.exists("/n100"));
}
