//! The operator tools through the real binary: `corral log dump`, `corral snap dump` and
//! `corral purge` on data directories built with the storage API (no server needed), with
//! their output and exit codes, including damaged files.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bytes::{Bytes, BytesMut};
use corral::jute::{Acl, OpCode};
use corral::storage::snapshot::{SnapAcl, SnapNode, SnapSession, SnapshotWriter};
use corral::storage::txn_codec::encode_txn;
use corral::storage::wal::{self, SEGMENT_HEADER_BYTES};
use corral::storage::{DataDirs, WalOptions};
use corral::tree::{NodeKind, Txn, TxnBody};

const T0: i64 = 1_795_895_866_000;
const SESSION: i64 = 0x100_0000_0000_0001;

fn corral(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(args)
        .env("CORRAL_LOG", "warn")
        .output()
        .expect("running corral")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Transaction `zxid`: a session at 1, then creates of `/n<zxid>` with 20 bytes of data.
fn txn(zxid: i64) -> Txn {
    let body = if zxid == 1 {
        TxnBody::CreateSession { timeout_ms: 30_000 }
    } else {
        TxnBody::Create {
            path: format!("/n{zxid}"),
            data: Some(Bytes::from(vec![b'x'; 20])),
            acl: vec![Acl::new(31, "world", "anyone")],
            kind: NodeKind::Persistent,
            parent_cversion: zxid as i32,
            op: OpCode::Create,
        }
    };
    Txn {
        session_id: SESSION,
        cxid: zxid as i32,
        zxid,
        time_ms: T0 + zxid,
        body,
    }
}

/// A data directory with records 1..=`records` in small segments (about 5 records each) and
/// snapshots at `snapshots`. Returns the open `DataDirs` (holding the lock, as a running
/// server would) and the `corral-v1` directory.
fn build(root: &Path, records: i64, snapshots: &[i64]) -> (DataDirs, PathBuf) {
    let data = root.join("data");
    let dirs = DataDirs::open(&data, None).unwrap();
    let opts = WalOptions {
        segment_size_bytes: 400,
        ..WalOptions::default()
    };
    let (mut wal, _) = dirs.open_wal(opts).unwrap();
    for zxid in 1..=records {
        let mut buf = BytesMut::new();
        encode_txn(&txn(zxid), &mut buf);
        wal.append(zxid, &buf).unwrap();
    }
    wal.sync().unwrap();
    for &zxid in snapshots {
        write_snapshot(dirs.snap_dir(), zxid);
    }
    let dir = dirs.snap_dir().to_path_buf();
    (dirs, dir)
}

fn write_snapshot(dir: &Path, zxid: i64) -> PathBuf {
    let mut w = SnapshotWriter::create(dir, zxid, T0).unwrap();
    w.write_acl(&SnapAcl {
        index: 0,
        acls: vec![corral::storage::snapshot::Acl {
            perms: 31,
            scheme: "world".into(),
            id: "anyone".into(),
        }],
    })
    .unwrap();
    for (i, path) in ["/", "/a", "/a/b"].into_iter().enumerate() {
        w.write_node(&SnapNode {
            path: path.into(),
            data: Some(Bytes::from(vec![b'd'; i * 10])),
            czxid: i as i64,
            mzxid: i as i64,
            ..SnapNode::default()
        })
        .unwrap();
    }
    w.write_session(&SnapSession {
        id: SESSION,
        timeout_ms: 30_000,
    })
    .unwrap();
    w.finish().unwrap().path
}

#[test]
fn log_dump_json_beside_a_locked_directory() {
    let root = tempfile::tempdir().unwrap();
    let (_dirs, _) = build(root.path(), 30, &[]);
    let data = root.path().join("data");
    let out = corral(&["log", "dump", "--data-log-dir", s(&data), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 30);
    assert_eq!(lines[0]["type"], "createSession");
    assert_eq!(lines[0]["timeout_ms"], 30_000);
    assert_eq!(lines[0]["session"], "0x100000000000001");
    assert_eq!(lines[29]["zxid"], "0x1e");
    assert_eq!(lines[29]["type"], "create");
    assert_eq!(lines[29]["path"], "/n30");
    assert_eq!(lines[29]["data_len"], 20);
    assert!(lines[29].get("data").is_none());

    // A range, with data, through a config file.
    let cfg = root.path().join("zoo.cfg");
    fs::write(
        &cfg,
        format!("tickTime=2000\ndataDir={}\nclientPort=2181\n", s(&data)),
    )
    .unwrap();
    let out = corral(&[
        "log",
        "dump",
        "--config",
        s(&cfg),
        "--from",
        "0x10",
        "--to",
        "17",
        "--json",
        "--data",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let zxids: Vec<&str> = lines.iter().map(|l| l["zxid"].as_str().unwrap()).collect();
    assert_eq!(zxids, ["0x10", "0x11"]);
    assert_eq!(lines[0]["data"], "eHh4eHh4eHh4eHh4eHh4eHh4eHg=");

    // Text: one line per record.
    let out = corral(&["log", "dump", "--data-log-dir", s(&data), "--to", "2"]);
    assert_eq!(
        stdout(&out),
        "2026-11-28T19:57:46.001Z session 0x100000000000001 cxid 0x1 zxid 0x1 createSession timeout=30000\n\
         2026-11-28T19:57:46.002Z session 0x100000000000001 cxid 0x2 zxid 0x2 create /n2 len=20 acl=[world:anyone=cdrwa] parentCVersion=2\n"
    );
}

#[test]
fn snap_dump_summary_of_the_newest_snapshot() {
    let root = tempfile::tempdir().unwrap();
    let (_dirs, dir) = build(root.path(), 5, &[3, 5]);
    let data = root.path().join("data");
    let out = corral(&["snap", "dump", "--data-dir", s(&data), "--summary"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        format!("snapshot   {}", s(&dir.join("snapshot.0000000000000005")))
    );
    assert_eq!(lines[1], "zxid       0x5");
    assert_eq!(lines[4], "nodes      3");
    assert_eq!(lines[5], "acl lists  1");
    assert_eq!(lines[6], "sessions   1");
    assert_eq!(lines[7], "data       30 bytes");
    assert_eq!(lines.len(), 8);

    // An explicit file, as JSON.
    let file = dir.join("snapshot.0000000000000003");
    let out = corral(&["snap", "dump", s(&file), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["zxid"], "0x3");
    assert_eq!(v["nodes"].as_array().unwrap().len(), 3);
    assert_eq!(v["nodes"][2]["path"], "/a/b");
    assert_eq!(v["sessions"][0]["timeout_ms"], 30_000);
}

#[test]
fn purge_keeps_three_snapshots_and_the_log_they_need() {
    let root = tempfile::tempdir().unwrap();
    let (_dirs, dir) = build(root.path(), 40, &[5, 12, 20, 27, 33]);
    let segments = wal::list_segments(&dir).unwrap();
    let data = root.path().join("data");
    let out = corral(&["purge", "--data-dir", s(&data)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "removed snapshot {}\n",
            s(&dir.join("snapshot.0000000000000005"))
        )),
        "{text}"
    );
    assert!(text.contains("snapshot.000000000000000c\n"), "{text}");
    assert!(!dir.join("snapshot.0000000000000005").exists());
    assert!(dir.join("snapshot.0000000000000014").exists());
    // Every segment before the one holding zxid 20 is gone, that one and later ones stay.
    let keep_from = segments
        .iter()
        .rposition(|(first, _)| *first <= 20)
        .unwrap();
    assert!(keep_from > 0);
    for (_, path) in &segments[..keep_from] {
        assert!(!path.exists(), "{}", path.display());
        assert!(text.contains(&format!("removed log segment {}\n", s(path))));
    }
    for (_, path) in &segments[keep_from..] {
        assert!(path.exists(), "{}", path.display());
    }
    assert!(text.ends_with(&format!(
        "kept 3 snapshots, the oldest at zxid 0x14, and the log from there on; removed 2 snapshot files and {keep_from} log segments\n"
    )));
    // The log still dumps from the oldest kept snapshot on.
    let out = corral(&["log", "dump", "--data-log-dir", s(&data), "--from", "21"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 20);

    // Fewer than 3 is refused.
    let out = corral(&["purge", "--data-dir", s(&data), "-n", "2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("at least 3"), "{}", stderr(&out));
}

#[test]
fn damaged_files_exit_1_naming_the_file() {
    let root = tempfile::tempdir().unwrap();
    let (_dirs, dir) = build(root.path(), 30, &[10, 20]);
    let data = root.path().join("data");

    // A flipped bit in the first record of a middle segment.
    let segments = wal::list_segments(&dir).unwrap();
    let victim = &segments[1].1;
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(victim)
        .unwrap();
    let at = SEGMENT_HEADER_BYTES + 20;
    let mut b = [0u8; 1];
    file.read_exact_at(&mut b, at).unwrap();
    file.write_all_at(&[b[0] ^ 0x04], at).unwrap();
    drop(file);
    let out = corral(&["log", "dump", "--data-log-dir", s(&data)]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(s(victim)), "{err}");
    assert!(
        err.contains(&format!("at byte {SEGMENT_HEADER_BYTES}")),
        "{err}"
    );
    // The records before the damage were printed.
    assert_eq!(
        stdout(&out).lines().count() as i64,
        segments[1].0 - 1,
        "{}",
        stdout(&out)
    );

    // A damaged snapshot named explicitly.
    let snap = dir.join("snapshot.0000000000000014");
    let mut bytes = fs::read(&snap).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    fs::write(&snap, bytes).unwrap();
    let out = corral(&["snap", "dump", s(&snap)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(s(&snap)), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    // Without a file, the newest valid one is dumped and the damaged one noted.
    let out = corral(&["snap", "dump", "--data-dir", s(&data), "--summary"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("zxid       0xa\n"));
    assert!(stderr(&out).contains(s(&snap)), "{}", stderr(&out));

    // A directory that does not exist.
    let out = corral(&[
        "log",
        "dump",
        "--data-log-dir",
        s(&root.path().join("nope")),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
}

#[test]
fn torn_tail_is_a_note_not_an_error() {
    let root = tempfile::tempdir().unwrap();
    let (dirs, dir) = build(root.path(), 12, &[]);
    drop(dirs);
    let (_, last) = wal::list_segments(&dir).unwrap().pop().unwrap();
    // Garbage in place of the next record's frame, cut short by the end of the file.
    let bytes = fs::read(&last).unwrap();
    let mut end = SEGMENT_HEADER_BYTES as usize;
    while end + 16 <= bytes.len() && bytes[end..end + 16].iter().any(|&b| b != 0) {
        end += 16 + u32::from_le_bytes(bytes[end..end + 4].try_into().unwrap()) as usize;
    }
    let file = fs::OpenOptions::new().write(true).open(&last).unwrap();
    file.set_len(end as u64 + 8).unwrap();
    file.write_all_at(&[0x30, 0, 0, 0, 1, 2, 3, 4], end as u64)
        .unwrap();
    drop(file);
    let out = corral(&[
        "log",
        "dump",
        "--data-log-dir",
        s(&root.path().join("data")),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 12);
    let err = stderr(&out);
    assert!(err.starts_with("note: "), "{err}");
    assert!(err.contains(s(&last)), "{err}");
}
