//! Conversion against the real ZooKeeper 3.8 fixture (`tests/fixtures/zk/basic`) and against
//! hand-built snapshots and logs for the fuzzy-snapshot and error cases.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::*;
use crate::jute::{Acl, OpCode, Stat};
use crate::storage::SnapNode;
use crate::zkdata::records::{FileHeader, SNAP_MAGIC};
use crate::zkdata::snapshot::parent_path;
use crate::zkdata::{
    read_data_dir, read_log_file, read_snapshot_file, zxid_from_file_name, TxnHeader, ZkDataDir,
    ZkNode, ZkSnapshot, ZkStat, ZkSubTxn, ZkTxn, ZkTxnBody,
};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/zk/basic")
}

/// `path -> (data hex, ACL, client Stat)` from `expected.tsv`.
fn expected_tree() -> BTreeMap<String, (String, Vec<Acl>, Stat)> {
    let text = std::fs::read_to_string(fixture_dir().join("expected.tsv")).expect("expected.tsv");
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 14, "bad row {line:?}");
        let acl = f[2]
            .split('|')
            .map(|a| {
                let p: Vec<&str> = a.splitn(3, ',').collect();
                Acl::new(p[0].parse().expect("perms"), p[1], p[2])
            })
            .collect();
        let n = |i: usize| f[i].parse::<i64>().expect("number");
        let stat = Stat {
            czxid: n(3),
            mzxid: n(4),
            ctime: n(5),
            mtime: n(6),
            version: n(7) as i32,
            cversion: n(8) as i32,
            aversion: n(9) as i32,
            ephemeral_owner: n(10),
            pzxid: n(11),
            data_length: n(12) as i32,
            num_children: n(13) as i32,
        };
        out.insert(f[0].to_owned(), (f[1].to_owned(), acl, stat));
    }
    out
}

/// The client's view of a converted tree, as ZooKeeper's `DataNode.copyStat` derives it.
fn client_view(t: &ConvertedTree) -> BTreeMap<String, (String, Vec<Acl>, Stat)> {
    let mut kids: HashMap<&str, i32> = HashMap::new();
    for n in &t.nodes {
        if let Some(p) = parent_path(&n.path) {
            *kids.entry(p).or_default() += 1;
        }
    }
    t.nodes
        .iter()
        .map(|n| {
            let acl = t.acls[n.acl_index as usize]
                .acls
                .iter()
                .map(|a| Acl::new(a.perms, &a.scheme, &a.id))
                .collect();
            let data = n.data.clone().unwrap_or_default();
            let stat = zk_stat(n).to_client_stat(
                data.len() as i32,
                kids.get(n.path.as_str()).copied().unwrap_or(0),
            );
            let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
            (n.path.clone(), (hex, acl, stat))
        })
        .collect()
}

fn zk_stat(n: &SnapNode) -> ZkStat {
    ZkStat {
        czxid: n.czxid,
        mzxid: n.mzxid,
        ctime: n.ctime,
        mtime: n.mtime,
        version: n.version,
        cversion: n.cversion,
        aversion: n.aversion,
        ephemeral_owner: n.ephemeral_owner,
        pzxid: n.pzxid,
    }
}

fn assert_tree_eq(got: &ConvertedTree, what: &str) {
    let expected = expected_tree();
    let got = client_view(got);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "{what}"
    );
    for (path, want) in &expected {
        assert_eq!(&got[path], want, "{what}: node {path}");
    }
}

#[test]
fn fixture_converts_to_the_tree_zookeeper_served() {
    let zk = read_data_dir(fixture_dir()).expect("fixture");
    let t = convert(&zk).expect("convert");
    assert_tree_eq(&t, "newest snapshot");
    assert_eq!(t.zxid, zk.last_zxid());
    assert_eq!(t.zxid, expected_tree()["/last"].2.czxid);
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);

    // Pre-order, root first; ACL indexes dense and each list written once.
    assert_eq!(t.nodes[0].path, "/");
    for (i, n) in t.nodes.iter().enumerate().skip(1) {
        let parent = parent_path(&n.path).expect("parent");
        assert!(
            t.nodes[..i].iter().any(|p| p.path == parent),
            "{} before its parent",
            n.path
        );
    }
    for (i, a) in t.acls.iter().enumerate() {
        assert_eq!(a.index, i as u64);
    }
    // Null data stays null, empty stays empty.
    let node = |p: &str| t.nodes.iter().find(|n| n.path == p).expect(p);
    assert_eq!(node("/empty").data, Some(Bytes::new()));
    for n in &zk.snapshot.nodes {
        if let Some(c) = t
            .nodes
            .iter()
            .find(|c| c.path == n.path && c.mzxid == n.stat.mzxid)
        {
            assert_eq!(c.data, n.data, "{}", n.path);
        }
    }
    // Raw owners: containers and TTL nodes keep ZooKeeper's encodings.
    assert_eq!(node("/cont").ephemeral_owner, i64::MIN);
    assert_eq!(
        node("/ttl").ephemeral_owner,
        crate::zkdata::EphemeralKind::Ttl(3_600_000).to_owner()
    );

    // The sessions open at shutdown are live.
    let text = std::fs::read_to_string(fixture_dir().join("sessions.tsv")).expect("sessions");
    for l in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let f: Vec<&str> = l.split('\t').collect();
        let id: i64 = f[0].parse().expect("id");
        let timeout: i32 = f[1].parse().expect("timeout");
        assert!(
            t.sessions
                .iter()
                .any(|s| s.id == id && s.timeout_ms == timeout),
            "session {id:#x}"
        );
    }
    // Session c closed: not live, and its ephemeral is gone.
    assert!(!t.nodes.iter().any(|n| n.path == "/app/eph-c"));
}

fn fixture_files(prefix: &str) -> Vec<(i64, PathBuf)> {
    let mut out: Vec<(i64, PathBuf)> = std::fs::read_dir(fixture_dir().join("version-2"))
        .expect("fixture")
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().into_string().ok()?;
            Some((zxid_from_file_name(&name, prefix)?, e.path()))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_fixture_snapshot_converts_to_the_same_tree() {
    let txns: Vec<ZkTxn> = fixture_files("log")
        .iter()
        .flat_map(|(_, p)| read_log_file(p).expect("log").txns)
        .collect();
    let newest = read_data_dir(fixture_dir()).expect("fixture");
    let want = convert(&newest).expect("newest");
    for (zxid, path) in fixture_files("snapshot") {
        let snapshot = read_snapshot_file(&path, zxid).expect("snapshot");
        let zk = ZkDataDir {
            version2_dir: fixture_dir().join("version-2"),
            snapshot_file: path.clone(),
            snapshot,
            skipped_snapshots: Vec::new(),
            log_files: newest.log_files.clone(),
            txns: txns
                .iter()
                .filter(|t| t.header.zxid > zxid)
                .cloned()
                .collect(),
            torn_tails: Vec::new(),
            gaps: Vec::new(),
        };
        let got = convert(&zk).expect("convert");
        assert_tree_eq(&got, &format!("from {path:?}"));
        assert_eq!(got.nodes, want.nodes, "from {path:?}");
        assert_eq!(got.zxid, want.zxid);
    }
}

// ---------------------------------------------------------------------------------------------
// Hand-built data.

fn stat(czxid: i64, cversion: i32, owner: i64) -> ZkStat {
    ZkStat {
        czxid,
        mzxid: czxid,
        ctime: czxid * 10,
        mtime: czxid * 10,
        version: 0,
        cversion,
        aversion: 0,
        ephemeral_owner: owner,
        pzxid: czxid,
    }
}

fn node(path: &str, stat: ZkStat) -> ZkNode {
    ZkNode {
        path: path.to_owned(),
        data: Some(Bytes::from_static(b"x")),
        acl_index: -1,
        stat,
    }
}

fn snapshot(zxid: i64, nodes: Vec<ZkNode>, sessions: Vec<(i64, i32)>) -> ZkSnapshot {
    ZkSnapshot {
        zxid,
        header: FileHeader {
            magic: SNAP_MAGIC,
            version: 2,
            dbid: -1,
        },
        sessions,
        acls: Vec::new(),
        nodes,
        digest: None,
        last_processed_zxid: None,
    }
}

fn txn(zxid: i64, session: i64, txn_type: OpCode, body: ZkTxnBody) -> ZkTxn {
    ZkTxn {
        offset: 0,
        header: TxnHeader {
            client_id: session,
            cxid: 1,
            zxid,
            time: zxid * 10,
            txn_type: txn_type.code(),
        },
        body,
        digest: None,
    }
}

fn create(path: &str, ephemeral: bool, parent_cversion: i32) -> ZkTxnBody {
    ZkTxnBody::Create {
        path: path.to_owned(),
        data: None,
        acl: Acl::open_unsafe(),
        ephemeral,
        parent_cversion,
    }
}

fn data_dir(snapshot: ZkSnapshot, txns: Vec<ZkTxn>) -> ZkDataDir {
    ZkDataDir {
        version2_dir: PathBuf::from("/nonexistent/version-2"),
        snapshot_file: PathBuf::from("/nonexistent/version-2/snapshot.0"),
        snapshot,
        skipped_snapshots: Vec::new(),
        log_files: vec![PathBuf::from("/nonexistent/version-2/log.1")],
        txns,
        torn_tails: Vec::new(),
        gaps: Vec::new(),
    }
}

fn find<'a>(t: &'a ConvertedTree, path: &str) -> Option<&'a SnapNode> {
    t.nodes.iter().find(|n| n.path == path)
}

#[test]
fn fuzzy_snapshot_replay_follows_zookeeper() {
    // The snapshot (zxid 3) was still being written when zxids 4 and 5 were applied: /a/x
    // (created at 4) is in it and /a's stored cversion is already 1.
    let snap = snapshot(
        3,
        vec![
            node("/", stat(0, 1, 0)),
            node("/a", stat(2, 1, 0)),
            node("/a/x", stat(4, 0, 0)),
        ],
        vec![(0x10, 5000)],
    );
    let txns = vec![
        // Already in the snapshot: NODEEXISTS, cversion/pzxid only raised.
        txn(4, 0x10, OpCode::Create, create("/a/x", false, 1)),
        txn(5, 0x10, OpCode::Create, create("/a/y", false, 2)),
        // A create under a missing parent is ignored.
        txn(6, 0x10, OpCode::Create, create("/nope/z", false, 1)),
        // Deleting a missing node still raises the parent's pzxid.
        txn(
            7,
            0x10,
            OpCode::Delete,
            ZkTxnBody::Delete {
                path: "/a/gone".into(),
            },
        ),
        txn(
            8,
            0x20,
            OpCode::CreateSession,
            ZkTxnBody::CreateSession { timeout_ms: 7000 },
        ),
        txn(9, 0x20, OpCode::Create, create("/a/e1", true, 3)),
        txn(10, 0x20, OpCode::Create, create("/a/e2", true, 4)),
        txn(11, 0x10, OpCode::Create, create("/a/e3", true, 5)),
        // closeSession lists only e1; killSession also removes e2. e3 (session 0x10) stays.
        txn(
            12,
            0x20,
            OpCode::CloseSession,
            ZkTxnBody::CloseSession {
                paths_to_delete: Some(vec!["/a/e1".into()]),
            },
        ),
        // A failed multi changes nothing.
        txn(
            13,
            0x10,
            OpCode::Multi,
            ZkTxnBody::Multi(vec![
                ZkSubTxn {
                    txn_type: OpCode::Create.code(),
                    body: create("/a/m", false, 6),
                },
                ZkSubTxn {
                    txn_type: OpCode::Error.code(),
                    body: ZkTxnBody::Error { err: -103 },
                },
            ]),
        ),
        txn(
            14,
            0x10,
            OpCode::SetData,
            ZkTxnBody::SetData {
                path: "/a".into(),
                data: Some(Bytes::new()),
                version: 1,
            },
        ),
        txn(
            15,
            0x10,
            OpCode::SetAcl,
            ZkTxnBody::SetAcl {
                path: "/a/y".into(),
                acl: Acl::read_unsafe(),
                version: 1,
            },
        ),
        txn(
            16,
            0x10,
            OpCode::CreateContainer,
            ZkTxnBody::CreateContainer {
                path: "/c".into(),
                data: Some(Bytes::from_static(b"c")),
                acl: Acl::open_unsafe(),
                parent_cversion: 2,
            },
        ),
    ];
    let t = convert(&data_dir(snap, txns)).expect("convert");
    assert_eq!(t.zxid, 16);
    let paths: Vec<&str> = t.nodes.iter().map(|n| n.path.as_str()).collect();
    assert_eq!(paths, ["/", "/a", "/a/e3", "/a/x", "/a/y", "/c"]);
    let a = find(&t, "/a").expect("/a");
    assert_eq!(a.cversion, 5); // creations: x, y, e1, e2, e3
    assert_eq!(a.pzxid, 12);
    assert_eq!(a.data, Some(Bytes::new()));
    assert_eq!((a.version, a.mzxid, a.mtime), (1, 14, 140));
    let x = find(&t, "/a/x").expect("/a/x");
    assert_eq!(x.czxid, 4);
    let y = find(&t, "/a/y").expect("/a/y");
    assert_eq!((y.czxid, y.aversion, y.data.clone()), (5, 1, None));
    assert_eq!(t.acls[y.acl_index as usize].acls.len(), 1);
    assert_eq!(t.acls[y.acl_index as usize].acls[0].perms, 1);
    assert_eq!(find(&t, "/a/e3").expect("e3").ephemeral_owner, 0x10);
    assert_eq!(find(&t, "/c").expect("/c").ephemeral_owner, i64::MIN);
    let root = find(&t, "/").expect("/");
    assert_eq!((root.cversion, root.pzxid), (2, 16));
    // Session 0x20 came and went; 0x10 is live.
    assert_eq!(t.sessions.len(), 1);
    assert_eq!((t.sessions[0].id, t.sessions[0].timeout_ms), (0x10, 5000));
    assert!(t.ops_already_applied >= 3);
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
}

#[test]
fn gaps_and_missing_log_are_errors_unless_allowed() {
    let snap = snapshot(
        5,
        vec![node("/", stat(0, 1, 0)), node("/late", stat(7, 0, 0))],
        vec![],
    );
    // The tree holds zxid 7 but no transaction follows the snapshot.
    let err = convert(&data_dir(snap.clone(), vec![])).expect_err("nodes after the log");
    assert!(
        matches!(
            err,
            ImportError::NodesAfterLog {
                newest_in_tree: 7,
                last_logged: 5
            }
        ),
        "{err}"
    );
    let t = convert_with(
        &data_dir(snap.clone(), vec![]),
        ConvertOptions { allow_gaps: true },
    )
    .expect("allowed");
    assert_eq!(t.zxid, 7);
    assert_eq!(t.warnings.len(), 1);

    let mut zk = data_dir(
        snap,
        vec![txn(9, 1, OpCode::Create, create("/b", false, 2))],
    );
    zk.gaps = vec![(5, 9)];
    let err = convert(&zk).expect_err("gap");
    assert!(matches!(err, ImportError::Gaps { .. }), "{err}");
    assert!(err.to_string().contains("--allow-gaps"), "{err}");
    let t = convert_with(&zk, ConvertOptions { allow_gaps: true }).expect("allowed");
    assert_eq!(t.zxid, 9);
    assert!(t.warnings.iter().any(|w| matches!(
        w,
        ImportWarning::Gap {
            before: 5,
            after: 9
        }
    )));
}

#[test]
fn bad_input_is_a_typed_error() {
    let mut snap = snapshot(1, vec![node("/", stat(0, 0, 0))], vec![]);
    snap.nodes[0].acl_index = 7;
    let err = convert(&data_dir(snap, vec![])).expect_err("unknown ACL");
    assert!(
        matches!(err, ImportError::UnknownAclIndex { index: 7, .. }),
        "{err}"
    );

    let snap = snapshot(1, vec![node("/", stat(0, 0, 0))], vec![]);
    for path in ["", "/", "a", "/a//b", "/a/"] {
        let zk = data_dir(
            snap.clone(),
            vec![txn(2, 1, OpCode::Create, create(path, false, 1))],
        );
        let err = convert(&zk).expect_err("bad path");
        assert!(
            matches!(err, ImportError::BadTxnPath { .. }),
            "{path:?}: {err}"
        );
    }
    let zk = data_dir(
        snap,
        vec![txn(
            2,
            1,
            OpCode::Create,
            ZkTxnBody::Unknown {
                raw: Bytes::from_static(b"??"),
            },
        )],
    );
    assert!(matches!(
        convert(&zk),
        Err(ImportError::UnknownTxnType { zxid: 2, .. })
    ));
}

#[test]
fn orphan_ephemerals_are_kept_with_a_warning() {
    let snap = snapshot(
        3,
        vec![node("/", stat(0, 1, 0)), node("/e", stat(3, 0, 0x99))],
        vec![],
    );
    let t = convert(&data_dir(snap, vec![])).expect("convert");
    assert!(find(&t, "/e").is_some());
    assert!(matches!(
        &t.warnings[..],
        [ImportWarning::OrphanEphemerals { session: 0x99, .. }]
    ));
}

#[test]
fn write_refuses_existing_state_unless_forced() {
    let zk = read_data_dir(fixture_dir()).expect("fixture");
    let t = convert(&zk).expect("convert");
    let tmp = tempfile::tempdir().expect("tmp");
    let first = write_corral_data_dir(&t, tmp.path()).expect("write");
    assert_eq!(first.snapshot.zxid, t.zxid);
    let err = write_corral_data_dir(&t, tmp.path()).expect_err("not empty");
    assert!(matches!(err, ImportError::NotEmpty { .. }), "{err}");
    let again = write_corral_data_dir_with(
        &t,
        tmp.path(),
        WriteOptions {
            force: true,
            ..WriteOptions::default()
        },
    )
    .expect("forced");
    assert!(!again.removed.is_empty());

    // The log is empty and continues after the snapshot.
    let dirs = crate::storage::DataDirs::open(tmp.path(), None).expect("open");
    let (mut wal, _) = dirs
        .open_wal(crate::storage::WalOptions::default())
        .expect("wal");
    assert_eq!(wal.last_zxid(), 0);
    wal.reset_after(t.zxid).expect("reset");
    wal.append(t.zxid + 1, b"next").expect("append");
    let epoch = crate::storage::read_epoch(&dirs.current_epoch_path()).expect("epoch");
    assert_eq!(epoch, Some((t.zxid as u64) >> 32));
}

#[test]
fn epochs_come_from_the_zxid_and_zookeepers_epoch_files() {
    let zk = read_data_dir(fixture_dir()).expect("fixture");
    let mut t = convert(&zk).expect("convert");
    t.zxid = 0x2_0000_0005;
    assert_eq!(write::epochs(&t), (2, 2));

    let tmp = tempfile::tempdir().expect("tmp");
    let mut warnings = Vec::new();
    assert_eq!(read_zk_epochs(tmp.path(), &mut warnings), None);
    std::fs::write(tmp.path().join("currentEpoch"), "3").expect("write");
    std::fs::write(tmp.path().join("acceptedEpoch"), "4\n").expect("write");
    t.zk_epochs = read_zk_epochs(tmp.path(), &mut warnings);
    assert_eq!(
        t.zk_epochs,
        Some(ZkEpochs {
            current: 3,
            accepted: 4
        })
    );
    assert_eq!(write::epochs(&t), (3, 4));
    assert!(warnings.is_empty());

    std::fs::write(tmp.path().join("acceptedEpoch"), "x").expect("write");
    let e = read_zk_epochs(tmp.path(), &mut warnings).expect("current still read");
    assert_eq!((e.current, e.accepted), (3, 3));
    assert!(matches!(
        &warnings[..],
        [ImportWarning::BadEpochFile { .. }]
    ));
}
