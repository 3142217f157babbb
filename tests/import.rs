//! `corral import-zk` end to end: the real binary imports the real ZooKeeper 3.8 data directory
//! in `tests/fixtures/zk/basic`, and the Corral snapshot it writes must hold the tree exactly as
//! ZooKeeper's clients saw it (`expected.tsv`) and the live sessions (`sessions.tsv`).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use corral::jute::{Acl, Stat};
use corral::storage::{
    list_snapshots, SnapAcl, SnapNode, SnapSession, SnapshotItem, SnapshotReader,
};
use corral::zkdata::ZkStat;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/zk/basic")
}

type Row = (String, Vec<Acl>, Stat);

/// `path -> (data hex, ACL, client Stat)` from `expected.tsv`.
fn expected_tree() -> BTreeMap<String, Row> {
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

/// `(session id, timeout)` of the sessions open when ZooKeeper stopped.
fn expected_sessions() -> Vec<(i64, i32)> {
    let text = std::fs::read_to_string(fixture_dir().join("sessions.tsv")).expect("sessions.tsv");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].parse().expect("id"), f[1].parse().expect("timeout"))
        })
        .collect()
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

fn import(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_corral"))
        .arg("import-zk")
        .args(args)
        .output()
        .expect("run corral import-zk")
}

fn import_into(zk_dir: &Path, data_dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "--zk-data-dir",
        zk_dir.to_str().expect("utf-8 path"),
        "--data-dir",
        data_dir.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(extra);
    import(&args)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A Corral snapshot read back with the storage layer's reader (checksum verified).
struct Read {
    zxid: i64,
    nodes: Vec<SnapNode>,
    acls: HashMap<u64, SnapAcl>,
    sessions: Vec<SnapSession>,
}

fn read_only_snapshot(data_dir: &Path) -> Read {
    let dir = data_dir.join("corral-v1");
    let snaps = list_snapshots(&dir).expect("list snapshots");
    assert_eq!(snaps.len(), 1, "exactly one snapshot: {snaps:?}");
    let mut r = SnapshotReader::open(&snaps[0].path).expect("open snapshot");
    let mut out = Read {
        zxid: r.header().zxid,
        nodes: Vec::new(),
        acls: HashMap::new(),
        sessions: Vec::new(),
    };
    while let Some(item) = r.next_item().expect("valid snapshot") {
        match item {
            SnapshotItem::Node(n) => {
                assert!(
                    out.acls.contains_key(&n.acl_index),
                    "ACL {} of {} written before the node",
                    n.acl_index,
                    n.path
                );
                out.nodes.push(n);
            }
            SnapshotItem::Acl(a) => {
                assert!(out.acls.insert(a.index, a).is_none(), "ACL index twice");
            }
            SnapshotItem::Session(s) => out.sessions.push(s),
        }
    }
    assert_eq!(snaps[0].zxid, out.zxid);
    out
}

/// The client's view of the snapshot: `dataLength`/`numChildren` derived, cversion
/// `2 * stored - numChildren`, container/TTL owners shown as 0 (ZooKeeper's `copyStat`).
fn client_view(r: &Read) -> BTreeMap<String, Row> {
    let mut kids: HashMap<&str, i32> = HashMap::new();
    for n in &r.nodes {
        if n.path != "/" {
            let i = n.path.rfind('/').expect("slash");
            *kids
                .entry(if i == 0 { "/" } else { &n.path[..i] })
                .or_default() += 1;
        }
    }
    r.nodes
        .iter()
        .map(|n| {
            let acl = r.acls[&n.acl_index]
                .acls
                .iter()
                .map(|a| Acl::new(a.perms, &a.scheme, &a.id))
                .collect();
            let data = n.data.clone().unwrap_or_default();
            let persisted = ZkStat {
                czxid: n.czxid,
                mzxid: n.mzxid,
                ctime: n.ctime,
                mtime: n.mtime,
                version: n.version,
                cversion: n.cversion,
                aversion: n.aversion,
                ephemeral_owner: n.ephemeral_owner,
                pzxid: n.pzxid,
            };
            let stat = persisted.to_client_stat(
                data.len() as i32,
                kids.get(n.path.as_str()).copied().unwrap_or(0),
            );
            (n.path.clone(), (hex(&data), acl, stat))
        })
        .collect()
}

#[test]
fn imported_snapshot_holds_the_tree_and_sessions_zookeeper_served() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data_dir = tmp.path().join("corral-data");
    let out = import_into(&fixture_dir(), &data_dir, &[]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);

    let r = read_only_snapshot(&data_dir);
    let expected = expected_tree();
    // The snapshot is at the last zxid, which created /last.
    assert_eq!(r.zxid, expected["/last"].2.czxid);
    assert!(
        stdout.contains(&format!("last zxid: {:#x}", r.zxid)),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("nodes: {}", expected.len())),
        "{stdout}"
    );
    assert!(!stdout.contains("warning"), "{stdout}");

    // Pre-order: every node after its parent.
    assert_eq!(r.nodes[0].path, "/");
    let got = client_view(&r);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (path, want) in &expected {
        assert_eq!(&got[path], want, "node {path}");
    }
    // Stored forms: raw owners of containers and TTL nodes, empty data distinct from null.
    let node = |p: &str| r.nodes.iter().find(|n| n.path == p).expect(p);
    assert_eq!(node("/cont").ephemeral_owner, i64::MIN);
    assert_eq!(node("/ttl").ephemeral_owner as u64, 0xff00_0000_0036_ee80);
    assert_eq!(node("/empty").data.as_deref(), Some(&b""[..]));

    let sessions: HashMap<i64, i32> = r.sessions.iter().map(|s| (s.id, s.timeout_ms)).collect();
    assert!(
        stdout.contains(&format!("sessions: {}", sessions.len())),
        "{stdout}"
    );
    for (id, timeout) in expected_sessions() {
        assert_eq!(sessions.get(&id), Some(&timeout), "session {id:#x}");
    }
    // Every ephemeral's owner is live.
    for n in &r.nodes {
        if expected[&n.path].2.ephemeral_owner != 0 {
            assert!(sessions.contains_key(&n.ephemeral_owner), "{}", n.path);
        }
    }

    // The log is empty (it continues after the snapshot) and the epochs match the zxid.
    let log_files: Vec<_> = std::fs::read_dir(data_dir.join("corral-v1"))
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("log."))
        .collect();
    assert!(log_files.is_empty());
    let epoch =
        corral::storage::read_epoch(&data_dir.join("corral-v1/currentEpoch")).expect("epoch");
    assert_eq!(epoch, Some((r.zxid as u64) >> 32));
}

#[test]
fn existing_corral_data_is_refused_unless_forced() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = import_into(&fixture_dir(), tmp.path(), &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = import_into(&fixture_dir(), tmp.path(), &[]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("--force") && !err.contains("panicked"),
        "{err}"
    );
    let out = import_into(&fixture_dir(), tmp.path(), &["--force"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("removed (--force)"));
    read_only_snapshot(tmp.path());

    // ZooKeeper's files may share the directory: importing in place works.
    let shared = tempfile::tempdir().expect("tmp");
    copy_dir(
        &fixture_dir().join("version-2"),
        &shared.path().join("version-2"),
    );
    let out = import_into(shared.path(), shared.path(), &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    read_only_snapshot(shared.path());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

#[test]
fn logs_in_a_separate_data_log_dir() {
    // zoo.cfg with dataLogDir: snapshots in one directory, logs in another.
    let tmp = tempfile::tempdir().expect("tmp");
    let (snaps, logs) = (tmp.path().join("snaps"), tmp.path().join("logs"));
    for d in [&snaps, &logs] {
        std::fs::create_dir_all(d.join("version-2")).expect("mkdir");
    }
    for e in std::fs::read_dir(fixture_dir().join("version-2")).expect("dir") {
        let e = e.expect("entry");
        let name = e.file_name();
        let to = if name.to_string_lossy().starts_with("log.") {
            &logs
        } else {
            &snaps
        };
        std::fs::copy(e.path(), to.join("version-2").join(&name)).expect("copy");
    }
    let out = import(&[
        "--zk-data-dir",
        snaps.to_str().expect("utf-8"),
        "--zk-data-log-dir",
        logs.to_str().expect("utf-8"),
        "--data-dir",
        tmp.path().join("corral").to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r = read_only_snapshot(&tmp.path().join("corral"));
    assert_eq!(client_view(&r), expected_tree());

    // Without the log directory the transactions after the snapshot would be lost: refused,
    // with a hint, unless --allow-gaps.
    let out = import_into(&snaps, &tmp.path().join("corral2"), &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("--zk-data-log-dir"), "{err}");
    let out = import_into(&snaps, &tmp.path().join("corral3"), &["--allow-gaps"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("warning: no transaction log"));
    let r = read_only_snapshot(&tmp.path().join("corral3"));
    assert_eq!(r.zxid, 0x50, "the snapshot's own zxid");
}

#[test]
fn bad_zookeeper_data_is_a_clean_error() {
    let tmp = tempfile::tempdir().expect("tmp");
    let target = tmp.path().join("out");
    // Not a ZooKeeper data dir, a missing one, and a damaged snapshot.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let missing = tmp.path().join("missing");
    let damaged = tmp.path().join("damaged");
    std::fs::create_dir_all(damaged.join("version-2")).expect("mkdir");
    std::fs::write(
        damaged.join("version-2/snapshot.5"),
        b"ZKSN\0\0\0\x02garbage",
    )
    .expect("write");
    for (dir, want) in [
        (&empty, "no version-2 directory"),
        (&missing, "does not exist"),
        (&damaged, "no valid snapshot"),
    ] {
        let out = import_into(dir, &target, &[]);
        assert_eq!(out.status.code(), Some(1), "{dir:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains(want) && !err.contains("panicked"),
            "{dir:?}: {err}"
        );
    }
    assert!(
        !target.join("corral-v1").exists()
            || list_snapshots(&target.join("corral-v1"))
                .expect("list")
                .is_empty(),
        "nothing written on failure"
    );
}

#[test]
fn a_missing_log_is_an_error_unless_allowed() {
    // Keep only the oldest snapshot and remove a log in the middle: transactions are missing.
    let tmp = tempfile::tempdir().expect("tmp");
    let zk = tmp.path().join("zk");
    copy_dir(&fixture_dir().join("version-2"), &zk.join("version-2"));
    let mut names: Vec<String> = std::fs::read_dir(zk.join("version-2"))
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort_by_key(|n| {
        let hex = n.rsplit('.').next().unwrap_or("0");
        i64::from_str_radix(hex, 16).unwrap_or(0)
    });
    let snaps: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with("snapshot."))
        .collect();
    for s in &snaps[1..] {
        std::fs::remove_file(zk.join("version-2").join(s)).expect("rm");
    }
    let logs: Vec<&String> = names.iter().filter(|n| n.starts_with("log.")).collect();
    std::fs::remove_file(zk.join("version-2").join(logs[logs.len() - 2])).expect("rm");

    let out = import_into(&zk, &tmp.path().join("a"), &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("--allow-gaps"), "{err}");

    let out = import_into(&zk, &tmp.path().join("b"), &["--allow-gaps"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("warning: transactions missing"));
    read_only_snapshot(&tmp.path().join("b"));
}

/// The ideal check: a Corral server started on the imported directory serves the same tree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corral_server_serves_the_imported_tree() {
    use zookeeper_client as zk;
    let mut s = common::ServerBuilder::new().start();
    s.stop();
    let out = import_into(&fixture_dir(), &s.data_dir(), &["--force"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    s.restart();

    let c = s.client().await;
    c.auth("digest", b"alice:secret").await.expect("auth");
    let expected = expected_tree();
    for (path, (data_hex, acl, stat)) in &expected {
        let (data, got) = c.get_data(path).await.expect(path);
        assert_eq!(&hex(&data), data_hex, "data of {path}");
        let got = Stat {
            czxid: got.czxid,
            mzxid: got.mzxid,
            ctime: got.ctime,
            mtime: got.mtime,
            version: got.version,
            cversion: got.cversion,
            aversion: got.aversion,
            ephemeral_owner: got.ephemeral_owner,
            pzxid: got.pzxid,
            data_length: got.data_length,
            num_children: got.num_children,
        };
        assert_eq!(&got, stat, "stat of {path}");
        let (acls, _) = c.get_acl(path).await.expect(path);
        let acls: Vec<Acl> = acls
            .iter()
            .map(|a| {
                let perms = [
                    zk::Permission::READ,
                    zk::Permission::WRITE,
                    zk::Permission::CREATE,
                    zk::Permission::DELETE,
                    zk::Permission::ADMIN,
                ]
                .iter()
                .enumerate()
                .filter(|(_, p)| a.permission().has(**p))
                .map(|(i, _)| 1 << i)
                .sum();
                Acl::new(perms, a.scheme(), a.id())
            })
            .collect();
        assert_eq!(&acls, acl, "ACL of {path}");
    }
    let mut children = c.list_children("/").await.expect("children");
    children.sort();
    let mut want: Vec<&str> = expected
        .keys()
        .filter(|p| p.len() > 1 && p[1..].find('/').is_none())
        .map(|p| &p[1..])
        .collect();
    want.sort();
    assert_eq!(children, want);
}

#[test]
fn a_torn_log_tail_is_a_warning() {
    // A crash mid-write: the newest log ends inside its last record. ZooKeeper ignores the
    // partial record, and so does the import (with a warning).
    let tmp = tempfile::tempdir().expect("tmp");
    let zk = tmp.path().join("zk");
    copy_dir(&fixture_dir().join("version-2"), &zk.join("version-2"));
    let newest_log = std::fs::read_dir(zk.join("version-2"))
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("log."))
        })
        .max_by_key(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            i64::from_str_radix(&name[4..], 16).expect("hex")
        })
        .expect("a log");
    let log = corral::zkdata::read_log_file(&newest_log).expect("log");
    let last = log.txns.last().expect("a txn");
    let bytes = std::fs::read(&newest_log).expect("read");
    std::fs::write(&newest_log, &bytes[..last.offset + 20]).expect("truncate");

    let out = import_into(&zk, &tmp.path().join("corral"), &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("warning:") && stdout.contains("partial record"),
        "{stdout}"
    );
    let r = read_only_snapshot(&tmp.path().join("corral"));
    assert_eq!(r.zxid, last.header.zxid - 1);
    // The torn record created /last: it is not there.
    assert!(!r.nodes.iter().any(|n| n.path == "/last"));
}

#[test]
fn a_separate_corral_log_dir_is_checked_and_cleared() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (data, logs) = (tmp.path().join("data"), tmp.path().join("logs"));
    // A stale log segment from an earlier Corral in the log directory.
    std::fs::create_dir_all(logs.join("corral-v1")).expect("mkdir");
    let stale = logs.join("corral-v1/log.0000000000000001");
    std::fs::write(&stale, b"old").expect("write");
    let log_arg = logs.to_str().expect("utf-8");
    let out = import_into(&fixture_dir(), &data, &["--data-log-dir", log_arg]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--force"),
        "{}",
        text(&out.stderr)
    );
    let out = import_into(
        &fixture_dir(),
        &data,
        &["--data-log-dir", log_arg, "--force"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!stale.exists());
    read_only_snapshot(&data);
}
