//! Tests against the real ZooKeeper 3.8 data directory in `tests/fixtures/zk/basic` (made by
//! `tools/make-zk-fixtures.sh`) and against hand-built records for layouts 3.8 does not write.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::*;
use crate::jute::{Acl, OpCode, Writer};

/// The committed fixture, or another run of `tools/make-zk-fixtures.sh DIR` named by
/// `CORRAL_ZK_FIXTURE=DIR` (to check the tests against freshly generated data).
fn fixture_dir() -> PathBuf {
    match std::env::var_os("CORRAL_ZK_FIXTURE") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/zk/basic"),
    }
}

fn v2() -> PathBuf {
    fixture_dir().join("version-2")
}

/// `(zxid, path)` of the fixture's files with this prefix, in zxid order.
fn fixture_files(prefix: &str) -> Vec<(i64, PathBuf)> {
    let mut out: Vec<(i64, PathBuf)> = std::fs::read_dir(v2())
        .expect("fixture dir")
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().into_string().ok()?;
            Some((zxid_from_file_name(&name, prefix)?, e.path()))
        })
        .collect();
    out.sort();
    out
}

fn read(path: &Path) -> Bytes {
    Bytes::from(std::fs::read(path).expect("fixture file"))
}

/// One row of `expected.tsv`: the tree as kazoo read it back before ZooKeeper stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    data_hex: String,
    acl: Vec<Acl>,
    stat: crate::jute::Stat,
}

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
        let stat = crate::jute::Stat {
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
        out.insert(
            f[0].to_owned(),
            Row {
                data_hex: f[1].to_owned(),
                acl,
                stat,
            },
        );
    }
    out
}

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

fn hex(data: &Option<Bytes>) -> String {
    data.as_deref()
        .unwrap_or_default()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// A reference replay of ZooKeeper's DataTree.processTxn rules, only to check that the parsed
// snapshot + log reproduce the tree ZooKeeper served. (Importing into Corral is done elsewhere.)

#[derive(Debug, Clone)]
struct ModelNode {
    data: Option<Bytes>,
    acl: Vec<Acl>,
    stat: ZkStat,
}

struct Model {
    nodes: BTreeMap<String, ModelNode>,
    sessions: BTreeMap<i64, i32>,
}

impl Model {
    fn from_snapshot(s: &ZkSnapshot) -> Model {
        let nodes = s
            .nodes
            .iter()
            .map(|n| {
                let acl = s.acl(n.acl_index).expect("ACL index in cache");
                (
                    n.path.clone(),
                    ModelNode {
                        data: n.data.clone(),
                        acl,
                        stat: n.stat,
                    },
                )
            })
            .collect();
        Model {
            nodes,
            sessions: s.sessions.iter().copied().collect(),
        }
    }

    fn set_cversion_pzxid(&mut self, parent: &str, mut cversion: i32, zxid: i64) {
        if let Some(p) = self.nodes.get_mut(parent) {
            if cversion == -1 {
                cversion = p.stat.cversion + 1;
            }
            if cversion > p.stat.cversion {
                p.stat.cversion = cversion;
                p.stat.pzxid = zxid;
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        h: &TxnHeader,
        txn_type: i32,
        path: &str,
        data: &Option<Bytes>,
        acl: &[Acl],
        owner: i64,
        parent_cversion: i32,
    ) {
        let parent = snapshot::parent_path(path).expect("parent").to_owned();
        if !self.nodes.contains_key(&parent) {
            return;
        }
        if self.nodes.contains_key(path) {
            // NODEEXISTS while replaying over a fuzzy snapshot.
            if txn_type == OpCode::Create.code() {
                self.set_cversion_pzxid(&parent, parent_cversion, h.zxid);
            }
            return;
        }
        self.set_cversion_pzxid(&parent, parent_cversion, h.zxid);
        let stat = ZkStat {
            czxid: h.zxid,
            mzxid: h.zxid,
            ctime: h.time,
            mtime: h.time,
            version: 0,
            cversion: 0,
            aversion: 0,
            ephemeral_owner: owner,
            pzxid: h.zxid,
        };
        self.nodes.insert(
            path.to_owned(),
            ModelNode {
                data: data.clone(),
                acl: acl.to_vec(),
                stat,
            },
        );
    }

    fn delete(&mut self, path: &str, zxid: i64) {
        let parent = snapshot::parent_path(path).expect("parent").to_owned();
        let Some(p) = self.nodes.get_mut(&parent) else {
            return;
        };
        if zxid > p.stat.pzxid {
            p.stat.pzxid = zxid;
        }
        self.nodes.remove(path);
    }

    fn apply(&mut self, h: &TxnHeader, txn_type: i32, body: &ZkTxnBody) {
        match body {
            ZkTxnBody::Create {
                path,
                data,
                acl,
                ephemeral,
                parent_cversion,
            } => {
                let owner = if *ephemeral { h.client_id } else { 0 };
                self.create(h, txn_type, path, data, acl, owner, *parent_cversion)
            }
            ZkTxnBody::CreateContainer {
                path,
                data,
                acl,
                parent_cversion,
            } => self.create(h, txn_type, path, data, acl, i64::MIN, *parent_cversion),
            ZkTxnBody::CreateTtl {
                path,
                data,
                acl,
                parent_cversion,
                ttl_ms,
            } => {
                let owner = EphemeralKind::Ttl(*ttl_ms).to_owner();
                self.create(h, txn_type, path, data, acl, owner, *parent_cversion)
            }
            ZkTxnBody::Delete { path } => self.delete(path, h.zxid),
            ZkTxnBody::SetData {
                path,
                data,
                version,
            }
            | ZkTxnBody::Reconfig {
                path,
                data,
                version,
            } => {
                if let Some(n) = self.nodes.get_mut(path) {
                    n.data = data.clone();
                    n.stat.mtime = h.time;
                    n.stat.mzxid = h.zxid;
                    n.stat.version = *version;
                }
            }
            ZkTxnBody::SetAcl { path, acl, version } => {
                if let Some(n) = self.nodes.get_mut(path) {
                    n.acl = acl.clone();
                    n.stat.aversion = *version;
                }
            }
            ZkTxnBody::CreateSession { timeout_ms } => {
                self.sessions.insert(h.client_id, *timeout_ms);
            }
            ZkTxnBody::CloseSession { paths_to_delete } => {
                self.sessions.remove(&h.client_id);
                let paths: Vec<String> = match paths_to_delete {
                    Some(p) => p.clone(),
                    None => self
                        .nodes
                        .iter()
                        .filter(|(_, n)| n.stat.ephemeral_owner == h.client_id)
                        .map(|(p, _)| p.clone())
                        .collect(),
                };
                for p in paths {
                    self.delete(&p, h.zxid);
                }
            }
            ZkTxnBody::Multi(subs) => {
                if subs
                    .iter()
                    .any(|s| matches!(s.body, ZkTxnBody::Error { .. }))
                {
                    return;
                }
                for s in subs {
                    self.apply(h, s.txn_type, &s.body);
                }
            }
            ZkTxnBody::Check { .. } | ZkTxnBody::Error { .. } | ZkTxnBody::Unknown { .. } => {}
        }
    }

    fn client_view(&self) -> BTreeMap<String, Row> {
        let mut children: HashMap<&str, i32> = HashMap::new();
        for path in self.nodes.keys() {
            if let Some(p) = snapshot::parent_path(path) {
                *children.entry(p).or_default() += 1;
            }
        }
        self.nodes
            .iter()
            .map(|(path, n)| {
                let len = n.data.as_ref().map_or(0, |d| d.len() as i32);
                let kids = children.get(path.as_str()).copied().unwrap_or(0);
                (
                    path.clone(),
                    Row {
                        data_hex: hex(&n.data),
                        acl: n.acl.clone(),
                        stat: n.stat.to_client_stat(len, kids),
                    },
                )
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// The real fixture.

#[test]
fn fixture_data_dir_replays_to_the_tree_zookeeper_served() {
    let dir = read_data_dir(fixture_dir()).expect("read fixture data dir");
    let newest = fixture_files("snapshot").last().expect("a snapshot").0;
    assert_eq!(dir.snapshot.zxid, newest);
    assert!(dir.skipped_snapshots.is_empty());
    assert!(dir.torn_tails.is_empty(), "{:?}", dir.torn_tails);
    assert!(dir.gaps.is_empty(), "{:?}", dir.gaps);
    assert_eq!(dir.txns.first().map(|t| t.header.zxid), Some(newest + 1));
    let mut model = Model::from_snapshot(&dir.snapshot);
    for t in &dir.txns {
        model.apply(&t.header, t.header.txn_type, &t.body);
    }
    let expected = expected_tree();
    let got = model.client_view();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (path, want) in &expected {
        assert_eq!(&got[path], want, "node {path}");
    }
    assert_eq!(dir.last_zxid(), expected["/last"].stat.czxid);
    // The sessions still open when the server stopped.
    for (id, timeout) in expected_sessions() {
        assert_eq!(model.sessions.get(&id), Some(&timeout), "session {id:#x}");
    }
}

#[test]
fn every_fixture_snapshot_replays_to_the_same_tree() {
    // Start from each snapshot in turn (the fallback path when newer ones are damaged).
    let logs: Vec<ZkLog> = fixture_files("log")
        .iter()
        .map(|(_, p)| read_log_file(p).expect("log"))
        .collect();
    let all: Vec<&ZkTxn> = logs.iter().flat_map(|l| &l.txns).collect();
    let expected = expected_tree();
    for (zxid, path) in fixture_files("snapshot") {
        let snap = read_snapshot_file(&path, zxid).expect("snapshot");
        let mut model = Model::from_snapshot(&snap);
        for t in all.iter().filter(|t| t.header.zxid > zxid) {
            model.apply(&t.header, t.header.txn_type, &t.body);
        }
        assert_eq!(model.client_view(), expected, "starting from {path:?}");
    }
}

#[test]
fn fixture_snapshot_contents() {
    let (zxid, path) = fixture_files("snapshot").pop().expect("a snapshot");
    let snap = read_snapshot_file(&path, zxid).expect("snapshot");
    assert_eq!(snap.header.dbid, -1); // FileSnap's dbId; logs write 0.
                                      // ZooKeeper 3.8 writes the digest section; 3.9's lastProcessedZxid section is absent.
    let digest = snap.digest.as_ref().expect("digest section");
    assert_eq!(digest.digest_version, 2);
    assert!(digest.zxid >= zxid);
    assert_eq!(snap.last_processed_zxid, None);

    assert_eq!(snap.nodes[0].path, "/");
    let root = snap.node("/").expect("root");
    assert_eq!(root.stat.czxid, 0);
    let zk = snap.node("/zookeeper").expect("/zookeeper");
    assert_eq!(zk.acl_index, snapshot::OPEN_ACL_UNSAFE_INDEX);
    assert_eq!(
        snap.acl(snap.node("/zookeeper/config").expect("config").acl_index),
        Some(Acl::read_unsafe())
    );

    let secure = snap.node("/secure").expect("/secure");
    assert_eq!(secure.data.as_deref(), Some(&b"top-secret"[..]));
    let acl = snap.acl(secure.acl_index).expect("cached ACL");
    assert_eq!(acl.len(), 1);
    assert_eq!(acl[0].perms, crate::jute::perms::ALL);
    assert_eq!(acl[0].id.scheme, "digest");
    assert!(acl[0].id.id.starts_with("alice:"));

    let binary = snap.node("/binary").expect("/binary");
    assert_eq!(
        binary.data.as_deref(),
        Some(&(0..=255u8).collect::<Vec<_>>()[..])
    );

    let cont = snap.node("/cont").expect("/cont");
    assert_eq!(cont.stat.ephemeral_kind(), EphemeralKind::Container);
    let ttl = snap.node("/ttl").expect("/ttl");
    assert_eq!(ttl.stat.ephemeral_kind(), EphemeralKind::Ttl(3_600_000));
    assert_eq!(ttl.stat.to_client_stat(0, 0).ephemeral_owner, 0);

    let sessions: HashMap<i64, i32> = snap.sessions.iter().copied().collect();
    for (id, timeout) in expected_sessions() {
        assert_eq!(sessions.get(&id), Some(&timeout));
        let eph = snap.node("/app/eph-b").expect("/app/eph-b");
        if timeout == 30_000 {
            assert_eq!(eph.stat.ephemeral_kind(), EphemeralKind::Session(id));
        }
    }
    // Derived numChildren.
    let counts = snap.child_counts();
    assert_eq!(counts["/zookeeper"], 2);
    assert_eq!(counts["/app/config"], 0);
}

#[test]
fn fixture_logs_match_zookeepers_own_dump() {
    // TxnLogToolkit's dump: "== log.N" then one "... zxid 0x.. <type> ..." line per txn.
    let dump = std::fs::read_to_string(fixture_dir().join("zk-txnlog-dump.txt")).expect("dump");
    let mut per_file: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
    let mut current = String::new();
    for line in dump.lines() {
        if let Some(name) = line.strip_prefix("== ") {
            current = name.to_owned();
            per_file.entry(current.clone()).or_default();
        } else if let Some(i) = line.find(" zxid 0x") {
            let mut words = line[i + 8..].split(' ');
            let zxid = i64::from_str_radix(words.next().expect("zxid"), 16).expect("hex");
            let op = words.next().expect("op").to_owned();
            per_file
                .entry(current.clone())
                .or_default()
                .push((zxid, op));
        }
    }
    let files = fixture_files("log");
    assert_eq!(per_file.len(), files.len());
    let mut prev = 0;
    let mut seen = BTreeSet::new();
    for (_, path) in &files {
        let name = path.file_name().and_then(|n| n.to_str()).expect("name");
        let log = read_log_file(path).expect("log");
        assert!(log.torn_tail.is_none());
        assert_eq!(log.header.magic, records::LOG_MAGIC);
        // Files are preallocated: valid records end well before the zero padding does.
        assert!(log.end_offset < std::fs::metadata(path).expect("len").len() as usize);
        let zk: Vec<(i64, String)> = per_file[name].clone();
        let ours: Vec<(i64, String)> = log
            .txns
            .iter()
            .map(|t| (t.header.zxid, toolkit_name(t.header.txn_type)))
            .collect();
        assert_eq!(ours, zk, "{name}");
        for t in &log.txns {
            assert_eq!(t.header.zxid, prev + 1, "zxids are consecutive");
            prev = t.header.zxid;
            // 3.8 logs a digest with every txn except failed ones.
            let is_error = matches!(t.body, ZkTxnBody::Error { .. });
            assert_eq!(
                t.digest.is_some(),
                !is_error,
                "digest of {:#x}",
                t.header.zxid
            );
            seen.insert(t.header.txn_type);
        }
    }
    for op in [
        OpCode::CreateSession,
        OpCode::CloseSession,
        OpCode::Create,
        OpCode::CreateContainer,
        OpCode::CreateTtl,
        OpCode::Delete,
        OpCode::SetData,
        OpCode::SetAcl,
        OpCode::Error,
        OpCode::Multi,
    ] {
        assert!(seen.contains(&op.code()), "{op:?} logged");
    }
}

/// The type names `TxnLogToolkit` prints (`Request.op2String`).
fn toolkit_name(t: i32) -> String {
    match OpCode::from_code(t) {
        Some(OpCode::CreateTtl) => "createTtl".into(),
        Some(OpCode::SetAcl) => "setACL".into(),
        Some(op) => {
            let s = format!("{op:?}");
            let mut c = s.chars();
            let first = c.next().map(|c| c.to_ascii_lowercase()).unwrap_or_default();
            std::iter::once(first).chain(c).collect()
        }
        None => format!("unknown {t}"),
    }
}

#[test]
fn fixture_log_records_decode_to_what_the_script_did() {
    let txns: Vec<ZkTxn> = fixture_files("log")
        .iter()
        .flat_map(|(_, p)| read_log_file(p).expect("log").txns)
        .collect();
    let find = |pred: &dyn Fn(&ZkTxn) -> bool| txns.iter().find(|t| pred(t)).cloned();

    let ttl = find(&|t| matches!(&t.body, ZkTxnBody::CreateTtl { path, .. } if path == "/ttl"))
        .expect("TTL create");
    assert!(
        matches!(ttl.body, ZkTxnBody::CreateTtl { ttl_ms: 3_600_000, ref data, .. } if data.as_deref() == Some(&b"ttl-data"[..]))
    );

    let set_acl = find(&|t| matches!(t.body, ZkTxnBody::SetAcl { .. })).expect("setACL");
    let ZkTxnBody::SetAcl { path, acl, version } = set_acl.body else {
        unreachable!()
    };
    assert_eq!((path.as_str(), version, acl.len()), ("/app/config", 1, 2));

    let dup = find(&|t| matches!(t.body, ZkTxnBody::Error { .. })).expect("error txn");
    assert_eq!(dup.body, ZkTxnBody::Error { err: -110 }); // NODEEXISTS

    let close = find(&|t| matches!(t.body, ZkTxnBody::CloseSession { .. })).expect("close");
    assert_eq!(
        close.body,
        ZkTxnBody::CloseSession {
            paths_to_delete: Some(vec!["/app/eph-c".to_owned()])
        }
    );

    let multis: Vec<&ZkTxn> = txns
        .iter()
        .filter(|t| matches!(t.body, ZkTxnBody::Multi(_)))
        .collect();
    assert_eq!(multis.len(), 2);
    let ZkTxnBody::Multi(ok) = &multis[0].body else {
        unreachable!()
    };
    let types: Vec<i32> = ok.iter().map(|s| s.txn_type).collect();
    assert_eq!(
        types,
        [
            OpCode::Create,
            OpCode::SetData,
            OpCode::Check,
            OpCode::Delete
        ]
        .map(OpCode::code)
    );
    // CheckVersionTxn holds the checked version + 1 (what ZooKeeper's prep step computes).
    assert_eq!(
        ok[2].body,
        ZkTxnBody::Check {
            path: "/app/config".into(),
            version: 3
        }
    );
    let ZkTxnBody::Multi(failed) = &multis[1].body else {
        unreachable!()
    };
    // The failing check became an error (BADVERSION); ops before it stay as prepared.
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[1].body, ZkTxnBody::Error { err: -103 });
}

// ---------------------------------------------------------------------------------------------
// Damage.

fn newest_snapshot() -> (i64, Bytes) {
    let (zxid, path) = fixture_files("snapshot").pop().expect("a snapshot");
    (zxid, read(&path))
}

/// The first log with a multi in it, and the bytes.
fn a_log() -> Bytes {
    let (_, path) = fixture_files("log").into_iter().next().expect("a log");
    read(&path)
}

#[test]
fn corrupted_snapshot_byte_is_a_checksum_error_with_offset() {
    let (zxid, bytes) = newest_snapshot();
    let snap = parse_snapshot(zxid, bytes.clone()).expect("intact");
    // Flip a byte inside /binary's data: the structure stays valid, the seal does not.
    let data = snap
        .node("/binary")
        .and_then(|n| n.data.clone())
        .expect("data");
    let at = data.as_ptr() as usize - bytes.as_ptr() as usize + 100;
    let mut bad = bytes.to_vec();
    bad[at] ^= 0x01;
    let err = parse_snapshot(zxid, Bytes::from(bad)).expect_err("must fail");
    let ZkDataErrorKind::Checksum { offset, .. } = err.kind else {
        panic!("expected a checksum error, got {err}");
    };
    assert!(offset > at, "the seal comes after the data");
    assert!(
        err.to_string().contains(&format!("offset {offset}")),
        "{err}"
    );

    // Damaging the stored checksum of the second (digest) seal is caught too.
    let mut bad = bytes.to_vec();
    let second_seal = bytes.len() - 13;
    bad[second_seal + 7] ^= 0x10;
    let err = parse_snapshot(zxid, Bytes::from(bad)).expect_err("must fail");
    assert!(
        matches!(err.kind, ZkDataErrorKind::Checksum { offset, .. } if offset == second_seal),
        "{err}"
    );
}

#[test]
fn every_snapshot_prefix_is_an_error_not_a_panic() {
    let (zxid, bytes) = newest_snapshot();
    // Cut right after the first seal, a snapshot is a complete pre-3.6 one (no digest
    // section); ZooKeeper accepts that too.
    let without_digest = bytes.len() - (8 + 4 + 8 + 8 + 5);
    let old = parse_snapshot(zxid, bytes.slice(..without_digest)).expect("pre-digest layout");
    assert_eq!(old.digest, None);
    for len in (0..bytes.len()).filter(|&l| l != without_digest) {
        assert!(
            parse_snapshot(zxid, bytes.slice(..len)).is_err(),
            "prefix {len}"
        );
    }
    let err = parse_snapshot(zxid, bytes.slice(..bytes.len() / 2)).expect_err("half");
    assert!(
        matches!(err.kind, ZkDataErrorKind::Truncated { .. }),
        "{err}"
    );
}

#[test]
fn bad_magic_and_version() {
    let (zxid, bytes) = newest_snapshot();
    let err = parse_log(bytes.clone()).expect_err("a snapshot is not a log");
    assert!(
        matches!(err.kind, ZkDataErrorKind::BadMagic { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("ZKSN"), "{err}");
    let mut bad = bytes.to_vec();
    bad[7] = 3;
    let err = parse_snapshot(zxid, Bytes::from(bad)).expect_err("version 3");
    assert!(matches!(
        err.kind,
        ZkDataErrorKind::UnsupportedVersion { found: 3 }
    ));
}

#[test]
fn corrupted_log_byte_is_a_checksum_error_at_the_record() {
    let bytes = a_log();
    let log = parse_log(bytes.clone()).expect("intact");
    let victim = &log.txns[3];
    let mut bad = bytes.to_vec();
    bad[victim.offset + 12 + 40] ^= 0x04; // inside the txn bytes, past the header
    let err = parse_log(Bytes::from(bad)).expect_err("must fail");
    assert!(
        matches!(err.kind, ZkDataErrorKind::Checksum { offset, .. } if offset == victim.offset),
        "{err}"
    );
}

#[test]
fn truncated_log_tail_is_flagged_and_the_padding_is_optional() {
    let bytes = a_log();
    let log = parse_log(bytes.clone()).expect("intact");
    assert!(log.torn_tail.is_none());
    let n = log.txns.len();

    // Without the zero padding (as if trimmed) the log parses the same, cleanly.
    let trimmed = parse_log(bytes.slice(..log.end_offset)).expect("trimmed");
    assert_eq!(trimmed.txns, log.txns);
    assert!(trimmed.torn_tail.is_none());
    // Part of the padding left: still clean.
    let partial = parse_log(bytes.slice(..log.end_offset + 7)).expect("partial padding");
    assert_eq!(partial.txns.len(), n);
    assert!(partial.torn_tail.is_none());

    // Cut inside the last record: flagged, earlier records kept.
    let last = log.txns[n - 1].offset;
    for cut in [last + 5, last + 20, log.end_offset - 1] {
        let torn = parse_log(bytes.slice(..cut)).expect("torn is not an error");
        assert_eq!(torn.txns.len(), n - 1, "cut at {cut}");
        let tail = torn.torn_tail.expect("flagged");
        assert_eq!(tail.offset, last);
        assert_eq!(torn.end_offset, last);
    }
    // A record written into the preallocated zeros but missing its end marker.
    let mut bad = bytes.to_vec();
    bad[log.end_offset - 1] = 0;
    let torn = parse_log(Bytes::from(bad)).expect("torn");
    assert_eq!(torn.torn_tail.map(|t| t.offset), Some(last));

    // Every prefix parses without panicking.
    for len in 0..log.end_offset + 16 {
        let _ = parse_log(bytes.slice(..len));
    }
}

#[test]
fn data_dir_errors_are_clear() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let err = read_data_dir(tmp.path()).expect_err("empty dir");
    assert!(matches!(err.kind, ZkDataErrorKind::NoVersion2Dir), "{err}");
    assert!(err.to_string().contains("no version-2 directory"), "{err}");

    std::fs::create_dir(tmp.path().join("version-2")).expect("mkdir");
    let err = read_data_dir(tmp.path()).expect_err("empty version-2");
    assert!(matches!(err.kind, ZkDataErrorKind::NoSnapshot), "{err}");
    assert!(err.to_string().contains("version-2"), "{err}");

    let err = read_data_dir(tmp.path().join("missing")).expect_err("missing");
    assert!(matches!(err.kind, ZkDataErrorKind::Io(_)), "{err}");
}

fn copy_fixture() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dst = tmp.path().join("version-2");
    std::fs::create_dir(&dst).expect("mkdir");
    for e in std::fs::read_dir(v2()).expect("fixture") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), dst.join(e.file_name())).expect("copy");
    }
    tmp
}

#[test]
fn data_dir_falls_back_past_a_damaged_snapshot_and_flags_a_torn_log() {
    let tmp = copy_fixture();
    let snaps = fixture_files("snapshot");
    let (newest, newest_path) = snaps.last().cloned().expect("snap");
    let (older, _) = snaps[snaps.len() - 2].clone();
    let target = tmp
        .path()
        .join("version-2")
        .join(newest_path.file_name().expect("name"));
    let mut bytes = std::fs::read(&target).expect("read");
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(&target, &bytes).expect("write");

    // Tear the newest log's last record.
    let (_, log_path) = fixture_files("log").pop().expect("log");
    let log_target = tmp
        .path()
        .join("version-2")
        .join(log_path.file_name().expect("name"));
    let log = read_log_file(&log_target).expect("log");
    let log_bytes = std::fs::read(&log_target).expect("read");
    std::fs::write(&log_target, &log_bytes[..log.end_offset - 3]).expect("write");

    let dir = read_data_dir(tmp.path().join("version-2")).expect("falls back");
    assert_eq!(dir.snapshot.zxid, older);
    assert_eq!(dir.skipped_snapshots.len(), 1);
    assert!(dir.skipped_snapshots[0]
        .to_string()
        .contains(&format!("{newest:x}")));
    assert_eq!(dir.torn_tails.len(), 1);
    assert_eq!(
        dir.torn_tails[0].1.offset,
        log.txns.last().expect("txn").offset
    );
    assert!(dir.gaps.is_empty());
    assert_eq!(dir.txns.first().map(|t| t.header.zxid), Some(older + 1));
    // Everything up to the torn record survives (zxids are consecutive).
    let torn_zxid = log.txns.last().expect("txn").header.zxid;
    assert_eq!(dir.last_zxid(), torn_zxid - 1);

    // The log that starts before the snapshot's zxid is included.
    let first_log = zxid_from_file_name(
        dir.log_files[0]
            .file_name()
            .and_then(|n| n.to_str())
            .expect("name"),
        "log",
    )
    .expect("log name");
    assert!(first_log <= older);

    // Every snapshot damaged: a clear error listing each.
    for (_, p) in &snaps {
        let t = tmp
            .path()
            .join("version-2")
            .join(p.file_name().expect("name"));
        std::fs::write(&t, b"ZKSN").expect("write");
    }
    let err = read_data_dir(tmp.path()).expect_err("nothing valid");
    let ZkDataErrorKind::NoValidSnapshot { tried } = &err.kind else {
        panic!("{err}");
    };
    assert_eq!(tried.len(), snaps.len());
}

#[test]
fn a_deleted_log_shows_up_as_a_gap() {
    let tmp = copy_fixture();
    let logs = fixture_files("log");
    let (_, middle) = &logs[logs.len() - 2];
    std::fs::remove_file(
        tmp.path()
            .join("version-2")
            .join(middle.file_name().expect("n")),
    )
    .expect("rm");
    // Keep only the oldest snapshot so the missing log matters.
    for (zxid, p) in fixture_files("snapshot").iter().skip(1) {
        let _ = zxid;
        std::fs::remove_file(tmp.path().join("version-2").join(p.file_name().expect("n")))
            .expect("rm");
    }
    let dir = read_data_dir(tmp.path()).expect("reads");
    assert_eq!(dir.gaps.len(), 1, "{:?}", dir.gaps);
}

// ---------------------------------------------------------------------------------------------
// Layouts ZooKeeper 3.8 does not write here, built by hand.

fn log_file(records: &[Vec<u8>]) -> Bytes {
    let mut w = Writer::new();
    w.write_i32(records::LOG_MAGIC);
    w.write_i32(2);
    w.write_i64(0);
    for r in records {
        w.write_i64(i64::from(adler32::adler32(r)));
        w.write_buffer(Some(r));
        w.buf_mut().extend_from_slice(b"B");
    }
    w.buf_mut().extend_from_slice(&[0u8; 64]);
    w.into_inner().freeze()
}

fn txn(zxid: i64, txn_type: i32, body: impl FnOnce(&mut Writer)) -> Vec<u8> {
    let mut w = Writer::new();
    w.write_i64(0x42);
    w.write_i32(7);
    w.write_i64(zxid);
    w.write_i64(1_000);
    w.write_i32(txn_type);
    body(&mut w);
    w.into_inner().to_vec()
}

#[test]
fn old_and_unusual_txn_layouts() {
    let log = log_file(&[
        // V0 create: no parentCVersion, no digest.
        txn(1, OpCode::Create.code(), |w| {
            w.write_string("/a");
            w.write_buffer(None);
            Acl::write_vec(&Acl::open_unsafe(), w);
            w.write_bool(false);
        }),
        // closeSession without CloseSessionTxn, with a digest.
        txn(2, OpCode::CloseSession.code(), |w| {
            w.write_i32(2);
            w.write_i64(-5);
        }),
        // closeSession without anything.
        txn(3, OpCode::CloseSession.code(), |_| {}),
        // reconfig.
        txn(4, OpCode::Reconfig.code(), |w| {
            w.write_string("/zookeeper/config");
            w.write_buffer(Some(b"server.1=a:1:2"));
            w.write_i32(3);
        }),
        // An opcode this reader does not know.
        txn(5, 99, |w| w.write_i64(7)),
        // A multi with an unknown sub-op and a deleteContainer.
        txn(6, OpCode::Multi.code(), |w| {
            w.write_i32(2);
            w.write_i32(OpCode::DeleteContainer.code());
            let mut sub = Writer::new();
            sub.write_string("/c");
            w.write_buffer(Some(&sub.into_inner()));
            w.write_i32(77);
            w.write_buffer(Some(b"??"));
        }),
    ]);
    let parsed = parse_log(log).expect("parses");
    assert!(parsed.torn_tail.is_none());
    let bodies: Vec<&ZkTxnBody> = parsed.txns.iter().map(|t| &t.body).collect();
    assert!(matches!(
        bodies[0],
        ZkTxnBody::Create {
            parent_cversion: -1,
            data: None,
            ..
        }
    ));
    assert_eq!(parsed.txns[0].digest, None);
    assert_eq!(
        bodies[1],
        &ZkTxnBody::CloseSession {
            paths_to_delete: None
        }
    );
    assert_eq!(
        parsed.txns[1].digest,
        Some(TxnDigest {
            version: 2,
            tree_digest: -5
        })
    );
    assert_eq!(
        bodies[2],
        &ZkTxnBody::CloseSession {
            paths_to_delete: None
        }
    );
    assert!(matches!(bodies[3], ZkTxnBody::Reconfig { version: 3, .. }));
    assert_eq!(
        bodies[4],
        &ZkTxnBody::Unknown {
            raw: Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 7])
        }
    );
    let ZkTxnBody::Multi(subs) = bodies[5] else {
        panic!("multi")
    };
    assert_eq!(subs[0].body, ZkTxnBody::Delete { path: "/c".into() });
    assert_eq!(subs[0].txn_type, OpCode::DeleteContainer.code());
    assert_eq!(
        subs[1].body,
        ZkTxnBody::Unknown {
            raw: Bytes::from_static(b"??")
        }
    );

    // Trailing garbage after a known record is an error, not silently ignored.
    let bad = log_file(&[txn(1, OpCode::Delete.code(), |w| {
        w.write_string("/a");
        w.write_i32(1);
    })]);
    let err = parse_log(bad).expect_err("4 stray bytes");
    assert!(
        matches!(err.kind, ZkDataErrorKind::Malformed { .. }),
        "{err}"
    );
}

#[test]
fn snapshot_trailing_sections() {
    // Build: no sessions, no ACLs, root only; then a v1 (hex string) digest and a
    // lastProcessedZxid section, each sealed.
    let mut w = Writer::new();
    w.write_i32(records::SNAP_MAGIC);
    w.write_i32(2);
    w.write_i64(0);
    w.write_i32(1);
    w.write_i64(0x77);
    w.write_i32(4000);
    w.write_i32(0);
    w.write_string("");
    w.write_buffer(Some(b""));
    w.write_i64(-1);
    // StatPersisted: czxid, mzxid, ctime, mtime; version, cversion, aversion; owner, pzxid.
    for _ in 0..4 {
        w.write_i64(0);
    }
    for _ in 0..3 {
        w.write_i32(0);
    }
    w.write_i64(0);
    w.write_i64(0);
    let seal = |w: &mut Writer| {
        let sum = adler32::adler32(w.buf_mut());
        w.write_i64(i64::from(sum));
        w.write_string("/");
    };
    w.write_string("/");
    seal(&mut w);
    w.write_i64(5);
    w.write_i32(1);
    w.write_string("ff");
    seal(&mut w);
    w.write_i64(9);
    seal(&mut w);
    let snap = parse_snapshot(9, w.into_inner().freeze()).expect("parses");
    assert_eq!(snap.sessions, vec![(0x77, 4000)]);
    assert_eq!(snap.nodes.len(), 1);
    assert_eq!(snap.nodes[0].data.as_deref(), Some(&b""[..]));
    assert_eq!(
        snap.digest,
        Some(ZkSnapshotDigest {
            zxid: 5,
            digest_version: 1,
            digest: 0xff
        })
    );
    assert_eq!(snap.last_processed_zxid, Some(9));
}

#[test]
fn fixture_snapshot_matches_zookeepers_snapshot_formatter() {
    use base64::Engine as _;
    // SnapshotFormatter's dump of the newest snapshot: one "----"-separated block per node
    // with the persisted stat (raw cversion, raw ephemeralOwner) and base64 data, then the
    // session table.
    let dump = std::fs::read_to_string(fixture_dir().join("zk-snapshot-dump.txt")).expect("dump");
    let (zxid, path) = fixture_files("snapshot").pop().expect("a snapshot");
    assert!(dump.starts_with(&format!("== snapshot.{zxid:x}\n")));
    let snap = read_snapshot_file(&path, zxid).expect("snapshot");

    let (nodes_part, sessions_part) = dump.split_once("Session Details").expect("session section");
    let mut dumped = Vec::new();
    for block in nodes_part
        .split("----\n")
        .skip(1)
        .filter(|b| !b.trim().is_empty())
    {
        let mut lines = block.lines();
        let path = lines.next().expect("path").to_owned();
        let fields: HashMap<&str, &str> = lines
            .filter_map(|l| l.trim_start().split_once(" = "))
            .collect();
        let num = |k: &str| -> i64 {
            let v = fields[k];
            match v.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16).expect("hex") as i64,
                None => v.parse().expect("dec"),
            }
        };
        let data = base64::engine::general_purpose::STANDARD
            .decode(fields.get("data").copied().unwrap_or("").trim())
            .expect("base64");
        dumped.push((
            path,
            [
                num("cZxid"),
                num("mZxid"),
                num("pZxid"),
                num("cversion"),
                num("dataVersion"),
                num("aclVersion"),
                num("ephemeralOwner"),
            ],
            data,
        ));
    }
    let ours: Vec<(String, [i64; 7], Vec<u8>)> = snap
        .nodes
        .iter()
        .map(|n| {
            let s = n.stat;
            (
                n.path.clone(),
                [
                    s.czxid,
                    s.mzxid,
                    s.pzxid,
                    i64::from(s.cversion),
                    i64::from(s.version),
                    i64::from(s.aversion),
                    s.ephemeral_owner,
                ],
                n.data.as_deref().unwrap_or_default().to_vec(),
            )
        })
        .collect();
    assert_eq!(ours, dumped);

    let mut sessions: Vec<(i64, i32)> = sessions_part
        .lines()
        .filter_map(|l| {
            let mut f = l.split(", ");
            let id = i64::from_str_radix(f.next()?.strip_prefix("0x")?, 16).ok()?;
            Some((id, f.next()?.parse().ok()?))
        })
        .collect();
    sessions.sort_unstable();
    let mut ours = snap.sessions.clone();
    ours.sort_unstable();
    assert_eq!(ours, sessions);
}
