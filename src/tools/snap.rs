//! `corral snap dump`: a snapshot's header, counts, ACL lists, nodes and sessions (like
//! zkSnapShotToolkit).
//!
//! The snapshot is read twice: a first pass verifies it whole (checksum, trailer counts) and
//! gathers the counts, the total data size, the ACL lists and the sessions (few and small);
//! only then is anything printed, and a second pass streams the nodes, so a snapshot of any
//! size is dumped in constant memory and a damaged one prints nothing but the error.
//!
//! Without an explicit file the newest valid snapshot of the data directory is dumped; newer
//! damaged ones are skipped with a note on stderr, as a server skips them at start-up.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{acl_entry_text, base64, hex, iso_time, AclJson, ToolError};
use crate::storage::snapshot::{self, SnapAcl, SnapNode, SnapSession, SnapshotItem};
use crate::storage::{SnapshotError, SnapshotHeader, SnapshotReader};
use crate::tree::node::ttl_of;
use crate::tree::EphemeralType;

/// What to print.
#[derive(Debug, Clone, Default)]
pub struct SnapDumpOptions {
    /// Only the header and the counts.
    pub summary: bool,
    /// JSON instead of text.
    pub json: bool,
    /// Include node data (base64) in JSON output.
    pub data: bool,
}

/// What the verifying first pass found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SnapStats {
    pub zxid: i64,
    pub timestamp_ms: i64,
    pub size_bytes: u64,
    pub nodes: u64,
    pub acl_lists: u64,
    pub sessions: u64,
    /// Sum of the nodes' data lengths.
    pub data_bytes: u64,
    pub acls: Vec<SnapAcl>,
    pub session_list: Vec<SnapSession>,
}

/// Reads the whole snapshot, verifying it, and gathers [`SnapStats`].
pub fn scan(path: &Path) -> Result<SnapStats, SnapshotError> {
    let size_bytes = std::fs::metadata(path)
        .map_err(|source| SnapshotError::Io {
            op: "stat",
            path: path.to_path_buf(),
            source,
        })?
        .len();
    let mut reader = SnapshotReader::open(path)?;
    let mut stats = SnapStats {
        size_bytes,
        ..SnapStats::default()
    };
    while let Some(item) = reader.next_item()? {
        match item {
            SnapshotItem::Node(node) => {
                stats.nodes += 1;
                stats.data_bytes += node.data.as_ref().map_or(0, |d| d.len() as u64);
            }
            SnapshotItem::Acl(acl) => {
                stats.acl_lists += 1;
                stats.acls.push(acl);
            }
            SnapshotItem::Session(session) => {
                stats.sessions += 1;
                stats.session_list.push(session);
            }
        }
    }
    let SnapshotHeader { zxid, timestamp_ms } = reader.header();
    stats.zxid = zxid;
    stats.timestamp_ms = timestamp_ms;
    Ok(stats)
}

/// The newest snapshot in `dir` (a `corral-v1` data directory) that verifies; damaged newer
/// ones are skipped with a note to `notes`.
pub fn newest_valid_snapshot(dir: &Path, notes: &mut dyn Write) -> Result<PathBuf, ToolError> {
    if !dir.is_dir() {
        return Err(ToolError::NoDir(dir.to_path_buf()));
    }
    let mut newest_error = None;
    for info in snapshot::list_snapshots(dir)? {
        match snapshot::verify(&info.path) {
            Ok(_) => return Ok(info.path),
            Err(error) => {
                writeln!(notes, "note: skipping damaged snapshot: {error}")?;
                newest_error.get_or_insert(error);
            }
        }
    }
    Err(match newest_error {
        Some(cause) => ToolError::NoValidSnapshot {
            dir: dir.to_path_buf(),
            cause,
        },
        None => ToolError::NoSnapshot(dir.to_path_buf()),
    })
}

/// Prints the snapshot at `path` to `out`. Fails, printing nothing, if it does not verify.
pub fn dump_snapshot(
    path: &Path,
    opts: &SnapDumpOptions,
    out: &mut dyn Write,
) -> Result<SnapStats, ToolError> {
    let stats = scan(path)?;
    if opts.json {
        write_json(path, &stats, opts, out)?;
    } else {
        write_text(path, &stats, opts, out)?;
    }
    Ok(stats)
}

/// Calls `f` on every node of the snapshot (second pass).
fn for_each_node(
    path: &Path,
    mut f: impl FnMut(&SnapNode) -> Result<(), ToolError>,
) -> Result<(), ToolError> {
    let mut reader = SnapshotReader::open(path)?;
    while let Some(item) = reader.next_item()? {
        if let SnapshotItem::Node(node) = item {
            f(&node)?;
        }
    }
    Ok(())
}

fn acl_list_text(acl: &SnapAcl) -> String {
    let entries: Vec<String> = acl
        .acls
        .iter()
        .map(|a| acl_entry_text(a.perms, &a.scheme, &a.id))
        .collect();
    entries.join(",")
}

/// The kind of node an ephemeralOwner value makes, for display.
fn owner_text(owner: i64) -> Option<String> {
    match EphemeralType::of(owner, true) {
        EphemeralType::Void => None,
        EphemeralType::Normal => Some(format!("owner={owner:#x}")),
        EphemeralType::Container => Some("container".into()),
        EphemeralType::Ttl => Some(format!("ttl={}", ttl_of(owner))),
    }
}

fn write_text(
    path: &Path,
    stats: &SnapStats,
    opts: &SnapDumpOptions,
    out: &mut dyn Write,
) -> Result<(), ToolError> {
    writeln!(out, "snapshot   {}", path.display())?;
    writeln!(out, "zxid       {:#x}", stats.zxid)?;
    writeln!(out, "time       {}", iso_time(stats.timestamp_ms))?;
    writeln!(out, "size       {} bytes", stats.size_bytes)?;
    writeln!(out, "nodes      {}", stats.nodes)?;
    writeln!(out, "acl lists  {}", stats.acl_lists)?;
    writeln!(out, "sessions   {}", stats.sessions)?;
    writeln!(out, "data       {} bytes", stats.data_bytes)?;
    if opts.summary {
        return Ok(());
    }
    writeln!(out, "ACL lists:")?;
    for acl in &stats.acls {
        writeln!(out, "  {} [{}]", acl.index, acl_list_text(acl))?;
    }
    writeln!(out, "Nodes:")?;
    for_each_node(path, |n| {
        write!(
            out,
            "  {} czxid={:#x} mzxid={:#x} pzxid={:#x} ctime={} mtime={} version={} cversion={} \
             aversion={}",
            n.path,
            n.czxid,
            n.mzxid,
            n.pzxid,
            iso_time(n.ctime),
            iso_time(n.mtime),
            n.version,
            n.cversion,
            n.aversion
        )?;
        if let Some(owner) = owner_text(n.ephemeral_owner) {
            write!(out, " {owner}")?;
        }
        match &n.data {
            Some(d) => write!(out, " len={}", d.len())?,
            None => write!(out, " len=null")?,
        }
        writeln!(out, " acl={}", n.acl_index)?;
        Ok(())
    })?;
    writeln!(out, "Sessions:")?;
    for s in &stats.session_list {
        writeln!(out, "  {:#x} timeout={}", s.id, s.timeout_ms)?;
    }
    Ok(())
}

#[derive(Serialize)]
struct HeaderJson<'a> {
    file: &'a str,
    zxid: String,
    time: String,
    time_ms: i64,
    size_bytes: u64,
    counts: CountsJson,
}

#[derive(Serialize)]
struct CountsJson {
    nodes: u64,
    acl_lists: u64,
    sessions: u64,
    data_bytes: u64,
}

#[derive(Serialize)]
struct AclListJson<'a> {
    index: u64,
    acl: Vec<AclJson<'a>>,
}

#[derive(Serialize)]
struct NodeJson<'a> {
    path: &'a str,
    czxid: String,
    mzxid: String,
    pzxid: String,
    ctime: String,
    ctime_ms: i64,
    mtime: String,
    mtime_ms: i64,
    version: i32,
    /// Stored cversion (child creations only).
    cversion: i32,
    aversion: i32,
    ephemeral_owner: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    node_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl_ms: Option<i64>,
    data_len: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Option<String>>,
    acl: u64,
}

#[derive(Serialize)]
struct SessionJson {
    id: String,
    timeout_ms: i32,
}

/// One JSON document, streamed: the header object's fields, then `acls`, `nodes` (one per
/// line) and `sessions` arrays unless `--summary`.
fn write_json(
    path: &Path,
    stats: &SnapStats,
    opts: &SnapDumpOptions,
    out: &mut dyn Write,
) -> Result<(), ToolError> {
    let file = path.display().to_string();
    let header = HeaderJson {
        file: &file,
        zxid: hex(stats.zxid),
        time: iso_time(stats.timestamp_ms),
        time_ms: stats.timestamp_ms,
        size_bytes: stats.size_bytes,
        counts: CountsJson {
            nodes: stats.nodes,
            acl_lists: stats.acl_lists,
            sessions: stats.sessions,
            data_bytes: stats.data_bytes,
        },
    };
    let header = serde_json::to_string(&header)?;
    if opts.summary {
        writeln!(out, "{header}")?;
        return Ok(());
    }
    // Reopen the header object to append the arrays.
    out.write_all(&header.as_bytes()[..header.len() - 1])?;
    let acls: Vec<AclListJson<'_>> = stats
        .acls
        .iter()
        .map(|a| AclListJson {
            index: a.index,
            acl: a
                .acls
                .iter()
                .map(|e| AclJson {
                    perms: e.perms,
                    scheme: &e.scheme,
                    id: &e.id,
                })
                .collect(),
        })
        .collect();
    write!(out, ",\"acls\":")?;
    serde_json::to_writer(&mut *out, &acls)?;
    write!(out, ",\"nodes\":[")?;
    let mut first = true;
    for_each_node(path, |n| {
        out.write_all(if first { b"\n" } else { b",\n" })?;
        first = false;
        let kind = EphemeralType::of(n.ephemeral_owner, true);
        let node = NodeJson {
            path: &n.path,
            czxid: hex(n.czxid),
            mzxid: hex(n.mzxid),
            pzxid: hex(n.pzxid),
            ctime: iso_time(n.ctime),
            ctime_ms: n.ctime,
            mtime: iso_time(n.mtime),
            mtime_ms: n.mtime,
            version: n.version,
            cversion: n.cversion,
            aversion: n.aversion,
            ephemeral_owner: hex(n.ephemeral_owner),
            node_type: match kind {
                EphemeralType::Void => None,
                EphemeralType::Normal => Some("ephemeral"),
                EphemeralType::Container => Some("container"),
                EphemeralType::Ttl => Some("ttl"),
            },
            ttl_ms: (kind == EphemeralType::Ttl).then(|| ttl_of(n.ephemeral_owner)),
            data_len: n.data.as_ref().map(|d| d.len()),
            data: opts.data.then(|| n.data.as_ref().map(|d| base64(d))),
            acl: n.acl_index,
        };
        serde_json::to_writer(&mut *out, &node)?;
        Ok(())
    })?;
    write!(out, "\n],\"sessions\":")?;
    let sessions: Vec<SessionJson> = stats
        .session_list
        .iter()
        .map(|s| SessionJson {
            id: hex(s.id),
            timeout_ms: s.timeout_ms,
        })
        .collect();
    serde_json::to_writer(&mut *out, &sessions)?;
    writeln!(out, "}}")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::snapshot::{Acl, SnapshotWriter};
    use bytes::Bytes;
    use std::fs;

    const T0: i64 = 1_795_895_866_000;

    fn node(path: &str, data: Option<&'static [u8]>, owner: i64) -> SnapNode {
        SnapNode {
            path: path.into(),
            data: data.map(Bytes::from_static),
            acl_index: 0,
            czxid: 2,
            mzxid: 3,
            ctime: T0,
            mtime: T0 + 1,
            version: 1,
            cversion: 0,
            aversion: 0,
            ephemeral_owner: owner,
            pzxid: 2,
            num_children: 0,
        }
    }

    fn write_snapshot(dir: &Path, zxid: i64) -> PathBuf {
        let mut w = SnapshotWriter::create(dir, zxid, T0).unwrap();
        w.write_acl(&SnapAcl {
            index: 0,
            acls: vec![Acl {
                perms: 31,
                scheme: "world".into(),
                id: "anyone".into(),
            }],
        })
        .unwrap();
        w.write_node(&node("/", Some(b""), 0)).unwrap();
        w.write_node(&node("/app", Some(b"hello"), 0)).unwrap();
        w.write_node(&node("/app/e", None, 0x55)).unwrap();
        w.write_node(&node("/c", Some(b"xy"), i64::MIN)).unwrap();
        w.write_session(&SnapSession {
            id: 0x55,
            timeout_ms: 30_000,
        })
        .unwrap();
        w.finish().unwrap().path
    }

    fn dump(path: &Path, opts: &SnapDumpOptions) -> Result<String, ToolError> {
        let mut out = Vec::new();
        dump_snapshot(path, opts, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn text_dump_lists_header_acls_nodes_and_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_snapshot(dir.path(), 0x1_0000_0007);
        let out = dump(&path, &SnapDumpOptions::default()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], format!("snapshot   {}", path.display()));
        assert_eq!(lines[1], "zxid       0x100000007");
        assert_eq!(lines[2], "time       2026-11-28T19:57:46.000Z");
        assert_eq!(lines[4], "nodes      4");
        assert_eq!(lines[5], "acl lists  1");
        assert_eq!(lines[6], "sessions   1");
        assert_eq!(lines[7], "data       7 bytes");
        assert_eq!(lines[8], "ACL lists:");
        assert_eq!(lines[9], "  0 [world:anyone=cdrwa]");
        assert_eq!(lines[10], "Nodes:");
        assert_eq!(
            lines[12],
            "  /app czxid=0x2 mzxid=0x3 pzxid=0x2 ctime=2026-11-28T19:57:46.000Z \
             mtime=2026-11-28T19:57:46.001Z version=1 cversion=0 aversion=0 len=5 acl=0"
        );
        assert!(
            lines[13].ends_with(" owner=0x55 len=null acl=0"),
            "{}",
            lines[13]
        );
        assert!(
            lines[14].ends_with(" container len=2 acl=0"),
            "{}",
            lines[14]
        );
        assert_eq!(lines[15], "Sessions:");
        assert_eq!(lines[16], "  0x55 timeout=30000");
        assert_eq!(lines.len(), 17);

        let summary = SnapDumpOptions {
            summary: true,
            ..SnapDumpOptions::default()
        };
        assert_eq!(dump(&path, &summary).unwrap().lines().count(), 8);
    }

    #[test]
    fn json_dump_is_one_document() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_snapshot(dir.path(), 7);
        let opts = SnapDumpOptions {
            json: true,
            data: true,
            ..SnapDumpOptions::default()
        };
        let v: serde_json::Value = serde_json::from_str(&dump(&path, &opts).unwrap()).unwrap();
        assert_eq!(v["zxid"], "0x7");
        assert_eq!(v["counts"]["nodes"], 4);
        assert_eq!(v["counts"]["data_bytes"], 7);
        assert_eq!(v["acls"][0]["acl"][0]["id"], "anyone");
        assert_eq!(v["nodes"][1]["path"], "/app");
        assert_eq!(v["nodes"][1]["data"], "aGVsbG8=");
        assert_eq!(v["nodes"][2]["data_len"], serde_json::Value::Null);
        assert_eq!(v["nodes"][2]["node_type"], "ephemeral");
        assert_eq!(v["nodes"][3]["node_type"], "container");
        assert_eq!(v["sessions"][0]["id"], "0x55");

        let summary = SnapDumpOptions {
            json: true,
            summary: true,
            ..SnapDumpOptions::default()
        };
        let v: serde_json::Value = serde_json::from_str(&dump(&path, &summary).unwrap()).unwrap();
        assert_eq!(v["counts"]["sessions"], 1);
        assert!(v.get("nodes").is_none());
    }

    #[test]
    fn corrupt_snapshot_prints_nothing_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_snapshot(dir.path(), 7);
        let mut bytes = fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        let mut out = Vec::new();
        let err = dump_snapshot(&path, &SnapDumpOptions::default(), &mut out).unwrap_err();
        assert!(out.is_empty());
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        // Not a snapshot at all.
        let junk = dir.path().join("junk");
        fs::write(&junk, b"hello").unwrap();
        assert!(dump(&junk, &SnapDumpOptions::default()).is_err());
    }

    #[test]
    fn newest_valid_snapshot_skips_damaged_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut notes = Vec::new();
        assert!(matches!(
            newest_valid_snapshot(dir.path(), &mut notes),
            Err(ToolError::NoSnapshot(_))
        ));
        let good = write_snapshot(dir.path(), 5);
        let bad = write_snapshot(dir.path(), 9);
        let len = fs::metadata(&bad).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(&bad)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        assert_eq!(newest_valid_snapshot(dir.path(), &mut notes).unwrap(), good);
        let notes = String::from_utf8(notes).unwrap();
        assert!(notes.contains(&bad.display().to_string()), "{notes}");
        fs::remove_file(&good).unwrap();
        let err = newest_valid_snapshot(dir.path(), &mut Vec::new()).unwrap_err();
        assert!(matches!(err, ToolError::NoValidSnapshot { .. }), "{err}");
    }
}
