//! `corral purge`: keep the newest snapshots and the log they need, delete the rest (like
//! ZooKeeper's `PurgeTxnLog`). The work is [`crate::storage::purge_data`]; this prints it.

use std::io::Write;
use std::path::Path;

use super::{hex, ToolError};
use crate::storage::{purge_data, PurgeSummary, MIN_RETAIN_COUNT};

/// Purges `snap_dir` and `log_dir` (both `corral-v1` directories) keeping `count` snapshots
/// (at least [`MIN_RETAIN_COUNT`], else an error); prints each deleted file and a summary
/// line to `out`, warnings about damaged snapshots to `notes`.
pub fn purge_dirs(
    snap_dir: &Path,
    log_dir: &Path,
    count: usize,
    out: &mut dyn Write,
    notes: &mut dyn Write,
) -> Result<PurgeSummary, ToolError> {
    if count < MIN_RETAIN_COUNT {
        return Err(ToolError::RetainTooSmall(count));
    }
    if !snap_dir.is_dir() {
        return Err(ToolError::NoDir(snap_dir.to_path_buf()));
    }
    let summary = purge_data(snap_dir, log_dir, count)?;
    for (path, reason) in &summary.invalid_snapshots {
        writeln!(
            notes,
            "warning: damaged snapshot {} (not counted): {reason}",
            path.display()
        )?;
    }
    for path in &summary.removed_snapshots {
        writeln!(out, "removed snapshot {}", path.display())?;
    }
    for path in &summary.removed_log_segments {
        writeln!(out, "removed log segment {}", path.display())?;
    }
    match summary.oldest_retained_zxid {
        Some(zxid) => writeln!(
            out,
            "kept {} snapshots, the oldest at zxid {}, and the log from there on; removed {} \
             snapshot files and {} log segments",
            summary.retained_snapshots.len(),
            hex(zxid),
            summary.removed_snapshots.len(),
            summary.removed_log_segments.len()
        )?,
        None => writeln!(
            out,
            "nothing removed: {} valid snapshots in {}, fewer than the {count} to keep",
            summary.retained_snapshots.len(),
            snap_dir.display()
        )?,
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::snapshot::{SnapNode, SnapshotWriter};
    use crate::storage::wal::{self, Wal, WalOptions};
    use std::fs;

    fn snapshot(dir: &Path, zxid: i64) {
        let mut w = SnapshotWriter::create(dir, zxid, 0).unwrap();
        w.write_node(&SnapNode {
            path: "/".into(),
            ..SnapNode::default()
        })
        .unwrap();
        w.finish().unwrap();
    }

    #[test]
    fn prints_what_it_removed() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path();
        let opts = WalOptions {
            segment_size_bytes: 32 + 4 * 26,
            preallocate: false,
            ..WalOptions::default()
        };
        let (mut wal, _) = Wal::open(dir, opts).unwrap();
        for zxid in 1..=40 {
            wal.append(zxid, b"0123456789").unwrap();
        }
        wal.sync().unwrap();
        let before = wal::list_segments(dir).unwrap().len();
        for zxid in [4, 8, 21, 30, 38] {
            snapshot(dir, zxid);
        }
        fs::write(dir.join("snapshot.0000000000000063"), b"damaged").unwrap();

        let mut out = Vec::new();
        let mut notes = Vec::new();
        let summary = purge_dirs(dir, dir, 3, &mut out, &mut notes).unwrap();
        let out = String::from_utf8(out).unwrap();
        let notes = String::from_utf8(notes).unwrap();
        assert!(notes.contains("snapshot.0000000000000063"), "{notes}");
        let lines: Vec<&str> = out.lines().collect();
        assert!(
            lines[0].starts_with("removed snapshot ")
                && lines[0].ends_with("snapshot.0000000000000004")
        );
        assert!(lines[1].ends_with("snapshot.0000000000000008"));
        // Segments of 4 records: 1-4, 5-8, ..., 17-20 go; 21-24 holds the oldest kept snapshot.
        assert_eq!(summary.removed_log_segments.len(), 5);
        assert!(
            lines[2].starts_with("removed log segment ")
                && lines[2].ends_with("log.0000000000000001")
        );
        assert_eq!(
            *lines.last().unwrap(),
            "kept 3 snapshots, the oldest at zxid 0x15, and the log from there on; removed 2 snapshot files and 5 log segments"
        );
        assert_eq!(wal::list_segments(dir).unwrap().len(), before - 5);
        assert!(dir.join("snapshot.0000000000000063").exists());

        let mut out = Vec::new();
        let err = purge_dirs(dir, dir, 2, &mut out, &mut Vec::new()).unwrap_err();
        assert!(matches!(err, ToolError::RetainTooSmall(2)));
        purge_dirs(dir, dir, 4, &mut out, &mut Vec::new()).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.starts_with("nothing removed: 3 valid snapshots"),
            "{out}"
        );
    }
}
