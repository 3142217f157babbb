//! Purging old snapshots and the log segments only they needed (ZooKeeper's `PurgeTxnLog`).
//!
//! [`purge_data`] keeps the newest `retain_count` valid snapshots, deletes every older
//! snapshot (and stale `.tmp` files older than them), and deletes the log segments that hold
//! only records at or before the oldest kept snapshot. It takes no lock: it only ever deletes
//! whole files that a running server no longer reads at start-up, so the `corral purge`
//! command may run beside a server, and the server can call it on `autopurge.purgeInterval`.
//!
//! What is never deleted:
//!
//! - a snapshot newer than the oldest retained valid one, even a damaged one (kept for
//!   inspection), nor a `.tmp` file that new (it may be a snapshot being written right now);
//! - the log segment that holds the oldest retained snapshot's zxid, nor any after it, so
//!   every retained snapshot can be brought up to date by replaying the log. In particular the
//!   last (active) segment is never deleted;
//! - anything at all when fewer than `retain_count` valid snapshots exist.
//!
//! Segments are deleted oldest first with the directory fsync'd after each, as
//! [`Wal::purge_before`](super::Wal::purge_before) does, so a crash leaves a gap-free suffix
//! of the log. A file that disappears while purging (the server removed it itself) is not
//! an error.
//!
//! A running [`Wal`](super::Wal) does not notice segments deleted from outside: its
//! in-memory list still names them, and reading from before the new start of the log then
//! fails with an I/O error (file not found) instead of [`WalError::NotRetained`].

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::atomic::sync_dir;
use super::snapshot::{self, SnapshotError, SNAPSHOT_PREFIX};
use super::wal::{self, WalError};
use super::StorageError;

/// Fewest snapshots [`purge_data`] keeps, as in ZooKeeper (smaller counts are raised to it).
pub const MIN_RETAIN_COUNT: usize = 3;

/// What [`purge_data`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeSummary {
    /// The newest valid snapshots, newest first, at most `retain_count` of them. Fewer than
    /// that: nothing was deleted.
    pub retained_snapshots: Vec<PathBuf>,
    /// Zxid of the oldest retained valid snapshot, from which on the log is kept (from the
    /// segment holding it). `None` when too few valid snapshots exist: nothing was deleted.
    pub oldest_retained_zxid: Option<i64>,
    /// Snapshot files deleted (including stale temporary ones), oldest first.
    pub removed_snapshots: Vec<PathBuf>,
    /// Log segments deleted, oldest first.
    pub removed_log_segments: Vec<PathBuf>,
    /// Snapshots that failed verification, with the reason: skipped when counting the ones
    /// to keep (and deleted only if older than the oldest kept one). Worth a warning.
    pub invalid_snapshots: Vec<(PathBuf, String)>,
}

impl PurgeSummary {
    /// Whether enough valid snapshots existed for anything to be considered for deletion.
    pub fn purged(&self) -> bool {
        self.oldest_retained_zxid.is_some()
    }
}

/// Parses `snapshot.<16 hex digits>.tmp`, the name of a snapshot being (or left half) written.
fn parse_tmp_snapshot_name(name: &str) -> Option<i64> {
    let hex = name.strip_prefix(SNAPSHOT_PREFIX)?.strip_suffix(".tmp")?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok().map(|z| z as i64)
}

fn snap_io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SnapshotError + 'a {
    move |source| SnapshotError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn wal_io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> WalError + 'a {
    move |source| WalError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Removes `path`; `Ok(false)` if it was already gone.
fn remove_if_present(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Keeps the newest `retain_count` (at least [`MIN_RETAIN_COUNT`]) valid snapshots in
/// `snap_dir` and the log segments in `log_dir` needed to replay from the oldest of them;
/// deletes older snapshots and segments. `snap_dir` and `log_dir` are the `corral-v1`
/// directories themselves ([`DataDirs::snap_dir`](super::DataDirs::snap_dir) and
/// [`log_dir`](super::DataDirs::log_dir)). A missing `log_dir` counts as an empty log.
///
/// Every candidate snapshot is verified (read whole, checksum checked) before it counts as
/// retained, so this reads up to `retain_count` snapshots: run it from a blocking thread.
pub fn purge_data(
    snap_dir: &Path,
    log_dir: &Path,
    retain_count: usize,
) -> Result<PurgeSummary, StorageError> {
    let retain_count = retain_count.max(MIN_RETAIN_COUNT);
    let snapshots = snapshot::list_snapshots(snap_dir)?; // newest first
    let mut summary = PurgeSummary::default();
    for snap in &snapshots {
        if summary.retained_snapshots.len() == retain_count {
            break;
        }
        match snapshot::verify(&snap.path) {
            Ok(_) => {
                summary.retained_snapshots.push(snap.path.clone());
                summary.oldest_retained_zxid = Some(snap.zxid);
            }
            Err(error) => summary
                .invalid_snapshots
                .push((snap.path.clone(), error.to_string())),
        }
    }
    if summary.retained_snapshots.len() < retain_count {
        // Too few to choose from: keep everything, snapshots and log alike.
        summary.oldest_retained_zxid = None;
        return Ok(summary);
    }
    let Some(cutoff) = summary.oldest_retained_zxid else {
        return Ok(summary);
    };

    // Snapshots and stale temporary files older than the cutoff, oldest first.
    let mut doomed: Vec<(i64, PathBuf)> = snapshots
        .iter()
        .filter(|s| s.zxid < cutoff)
        .map(|s| (s.zxid, s.path.clone()))
        .collect();
    for entry in fs::read_dir(snap_dir).map_err(snap_io("list", snap_dir))? {
        let entry = entry.map_err(snap_io("list", snap_dir))?;
        if let Some(zxid) = entry.file_name().to_str().and_then(parse_tmp_snapshot_name) {
            if zxid < cutoff {
                doomed.push((zxid, entry.path()));
            }
        }
    }
    doomed.sort();
    for (_, path) in doomed {
        if remove_if_present(&path).map_err(snap_io("remove", &path))? {
            summary.removed_snapshots.push(path);
        }
    }
    if !summary.removed_snapshots.is_empty() {
        sync_dir(snap_dir).map_err(snap_io("fsync directory", snap_dir))?;
    }

    if !log_dir.is_dir() {
        return Ok(summary);
    }
    // Oldest first. Keep the segment that holds the cutoff (the newest one starting at or
    // before it) and everything after it: the last segment is therefore always kept.
    let segments = wal::list_segments(log_dir)?;
    let Some(keep_from) = segments.iter().rposition(|(first, _)| *first <= cutoff) else {
        return Ok(summary);
    };
    for (_, path) in &segments[..keep_from] {
        if remove_if_present(path).map_err(wal_io("remove", path))? {
            // Each removal durable before the next: a crash leaves a suffix with no gap.
            sync_dir(log_dir).map_err(wal_io("fsync directory", log_dir))?;
            summary.removed_log_segments.push(path.clone());
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::snapshot::{SnapNode, SnapshotWriter};
    use crate::storage::wal::{Wal, WalOptions};

    fn write_snapshot(dir: &Path, zxid: i64) -> PathBuf {
        let mut w = SnapshotWriter::create(dir, zxid, 1_700_000_000_000).unwrap();
        w.write_node(&SnapNode {
            path: "/".into(),
            ..SnapNode::default()
        })
        .unwrap();
        w.finish().unwrap().path
    }

    /// A log of records 1..=n in small segments (about 10 records each).
    fn write_log(dir: &Path, n: i64) -> Wal {
        let opts = WalOptions {
            segment_size_bytes: 32 + 10 * (16 + 100),
            preallocate: false,
            ..WalOptions::default()
        };
        let (mut wal, _) = Wal::open(dir, opts).unwrap();
        for zxid in 1..=n {
            wal.append(zxid, &[zxid as u8; 100]).unwrap();
        }
        wal.sync().unwrap();
        wal
    }

    fn names(paths: &[PathBuf]) -> Vec<String> {
        paths
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn keeps_newest_snapshots_and_the_log_they_need() {
        let root = tempfile::tempdir().unwrap();
        let snap_dir = root.path().join("snap");
        let log_dir = root.path().join("log");
        fs::create_dir_all(&snap_dir).unwrap();
        let wal = write_log(&log_dir, 100);
        let segments = wal.segments();
        assert!(segments.len() >= 8, "{}", segments.len());
        for zxid in [10, 25, 47, 63, 90] {
            write_snapshot(&snap_dir, zxid);
        }
        fs::write(snap_dir.join("snapshot.0000000000000005.tmp"), b"x").unwrap();
        fs::write(snap_dir.join("snapshot.00000000000000ff.tmp"), b"x").unwrap();

        let summary = purge_data(&snap_dir, &log_dir, 3).unwrap();
        assert_eq!(summary.oldest_retained_zxid, Some(47));
        assert_eq!(
            names(&summary.retained_snapshots),
            [
                "snapshot.000000000000005a",
                "snapshot.000000000000003f",
                "snapshot.000000000000002f"
            ]
        );
        assert_eq!(
            names(&summary.removed_snapshots),
            [
                "snapshot.0000000000000005.tmp",
                "snapshot.000000000000000a",
                "snapshot.0000000000000019"
            ]
        );
        assert!(snap_dir.join("snapshot.00000000000000ff.tmp").exists());
        let holder = segments
            .iter()
            .position(|s| s.first_zxid <= 47 && 47 <= s.last_zxid)
            .unwrap();
        let expected: Vec<PathBuf> = segments[..holder].iter().map(|s| s.path.clone()).collect();
        assert_eq!(summary.removed_log_segments, expected);
        drop(wal);
        // The log still replays from the oldest kept snapshot on.
        let (mut wal, report) = Wal::open(&log_dir, WalOptions::default()).unwrap();
        assert_eq!(report.last_zxid, 100);
        assert_eq!(wal.read_from(48).unwrap().count(), 53);

        // Again: nothing more to do.
        let again = purge_data(&snap_dir, &log_dir, 3).unwrap();
        assert!(again.removed_snapshots.is_empty() && again.removed_log_segments.is_empty());
    }

    #[test]
    fn too_few_valid_snapshots_delete_nothing_and_damage_is_reported() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path();
        let wal = write_log(dir, 60);
        for zxid in [10, 20, 30] {
            write_snapshot(dir, zxid);
        }
        let damaged = write_snapshot(dir, 40);
        let mut bytes = fs::read(&damaged).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&damaged, bytes).unwrap();

        // 3 valid of 4 files: asking for 4 keeps everything.
        let summary = purge_data(dir, dir, 4).unwrap();
        assert!(!summary.purged());
        assert!(summary.removed_snapshots.is_empty() && summary.removed_log_segments.is_empty());
        assert_eq!(summary.invalid_snapshots.len(), 1);
        assert_eq!(summary.invalid_snapshots[0].0, damaged);

        // A count below the minimum is raised to 3: the damaged newest one is kept as well.
        let summary = purge_data(dir, dir, 1).unwrap();
        assert_eq!(summary.oldest_retained_zxid, Some(10));
        assert!(summary.removed_snapshots.is_empty());
        assert!(damaged.exists());
        assert_eq!(
            summary.removed_log_segments.len(),
            0,
            "segment 1..=10 holds zxid 10"
        );
        assert_eq!(wal.segments().len(), wal::list_segments(dir).unwrap().len());
    }

    #[test]
    fn the_active_segment_is_never_deleted() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path();
        let wal = write_log(dir, 35);
        // Snapshots far beyond the log (the log was reset after a newer snapshot).
        for zxid in [1000, 2000, 3000] {
            write_snapshot(dir, zxid);
        }
        let summary = purge_data(dir, dir, 3).unwrap();
        let left = wal::list_segments(dir).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].1, wal.segments().last().unwrap().path);
        assert_eq!(summary.removed_log_segments.len(), wal.segments().len() - 1);
    }

    #[test]
    fn missing_log_dir_is_an_empty_log() {
        let root = tempfile::tempdir().unwrap();
        for zxid in [1, 2, 3, 4] {
            write_snapshot(root.path(), zxid);
        }
        let summary = purge_data(root.path(), &root.path().join("nope"), 3).unwrap();
        assert_eq!(
            names(&summary.removed_snapshots),
            ["snapshot.0000000000000001"]
        );
    }
}
