//! Reader for Apache ZooKeeper data directories (`<dataDir>/version-2/`), for importing a
//! ZooKeeper ensemble's state into Corral.
//!
//! ZooKeeper keeps two kinds of files there, both starting with a 16-byte `FileHeader` and
//! written in jute (big-endian) encoding:
//!
//! - `snapshot.<zxid hex>`: a fuzzy dump of the tree and the session table, see [`snapshot`];
//! - `log.<zxid hex>`: transactions, named after the first zxid they hold, see [`txnlog`].
//!
//! Parsing is pure ([`parse_snapshot`], [`parse_log`] take `Bytes`); [`read_data_dir`] reads a
//! directory and picks what ZooKeeper itself would load on start-up: the newest snapshot that
//! parses and checksums, plus the logged transactions after its zxid, in zxid order.
//!
//! Not covered: `.gz`/`.snappy` compressed snapshots (reported and skipped), applying the
//! transactions to a tree (ZooKeeper's replay rules are summarised in [`snapshot`]).

pub mod adler32;
pub mod error;
pub mod records;
pub mod snapshot;
pub mod txnlog;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use bytes::Bytes;

pub use error::{ZkDataError, ZkDataErrorKind};
pub use records::{zxid_from_file_name, EphemeralKind, FileHeader, ZkStat};
pub use snapshot::{parse_snapshot, ZkNode, ZkSnapshot, ZkSnapshotDigest};
pub use txnlog::{parse_log, TornTail, TxnDigest, TxnHeader, ZkLog, ZkSubTxn, ZkTxn, ZkTxnBody};

/// What ZooKeeper would load from a data directory.
#[derive(Debug)]
pub struct ZkDataDir {
    /// The `version-2` directory the files came from.
    pub version2_dir: PathBuf,
    /// The newest snapshot that parsed and verified.
    pub snapshot_file: PathBuf,
    pub snapshot: ZkSnapshot,
    /// Newer snapshots that were passed over, with why (newest first).
    pub skipped_snapshots: Vec<ZkDataError>,
    /// The log files read, in zxid order: the one starting at or before the snapshot's zxid and
    /// every later one.
    pub log_files: Vec<PathBuf>,
    /// Every logged transaction with a zxid above the snapshot's, in zxid order.
    pub txns: Vec<ZkTxn>,
    /// Logs that end in a partial record (normally only the newest, after a crash).
    pub torn_tails: Vec<(PathBuf, TornTail)>,
    /// `(before, after)` zxid pairs within one epoch with transactions missing between them
    /// (e.g. a purged log), including between the snapshot's zxid and the first transaction.
    pub gaps: Vec<(i64, i64)>,
}

impl ZkDataDir {
    /// The zxid of the last transaction, or the snapshot's if no transaction follows it.
    pub fn last_zxid(&self) -> i64 {
        self.txns
            .last()
            .map_or(self.snapshot.zxid, |t| t.header.zxid)
    }
}

/// Reads a ZooKeeper data directory: `dir` is either the `dataDir` (holding `version-2`) or the
/// `version-2` directory itself. Snapshots and logs are expected in the same place, as with a
/// `zoo.cfg` without `dataLogDir`; otherwise use [`read_data_dirs`].
pub fn read_data_dir(dir: impl AsRef<Path>) -> Result<ZkDataDir, ZkDataError> {
    let dir = dir.as_ref();
    read_data_dirs(dir, dir)
}

/// Like [`read_data_dir`] with snapshots under `snap_dir` (`dataDir`) and logs under `log_dir`
/// (`dataLogDir`).
pub fn read_data_dirs(
    snap_dir: impl AsRef<Path>,
    log_dir: impl AsRef<Path>,
) -> Result<ZkDataDir, ZkDataError> {
    let snap_v2 = version2_dir(snap_dir.as_ref())?;
    let log_v2 = version2_dir(log_dir.as_ref())?;

    let mut snaps = list_files(&snap_v2, "snapshot")?;
    if snaps.is_empty() {
        return Err(ZkDataError::new(ZkDataErrorKind::NoSnapshot).in_file(&snap_v2));
    }
    snaps.sort_by_key(|(zxid, _)| std::cmp::Reverse(*zxid));
    let mut skipped = Vec::new();
    let mut chosen = None;
    for (zxid, path) in snaps {
        match read_snapshot_file(&path, zxid) {
            Ok(snap) => {
                chosen = Some((path, snap));
                break;
            }
            Err(e) => skipped.push(e),
        }
    }
    let Some((snapshot_file, snapshot)) = chosen else {
        return Err(
            ZkDataError::new(ZkDataErrorKind::NoValidSnapshot { tried: skipped }).in_file(&snap_v2),
        );
    };

    let mut logs = list_files(&log_v2, "log")?;
    logs.sort_by_key(|(zxid, _)| *zxid);
    let first = logs
        .iter()
        .rposition(|(start, _)| *start <= snapshot.zxid)
        .unwrap_or(0);
    let logs = logs.split_off(first);

    let mut txns: Vec<ZkTxn> = Vec::new();
    let mut torn_tails = Vec::new();
    let mut gaps = Vec::new();
    let mut prev = snapshot.zxid;
    let mut log_files = Vec::new();
    for (_, path) in logs {
        let bytes = read_file(&path)?;
        if bytes.is_empty() {
            // ZooKeeper can leave an empty newest log when it crashes before the header.
            torn_tails.push((
                path.clone(),
                TornTail {
                    offset: 0,
                    reason: "empty file".to_owned(),
                },
            ));
            log_files.push(path);
            continue;
        }
        let log = parse_log(bytes).map_err(|e| e.in_file(&path))?;
        for txn in log.txns {
            let zxid = txn.header.zxid;
            if zxid <= snapshot.zxid {
                continue;
            }
            if zxid <= prev {
                return Err(ZkDataError::new(ZkDataErrorKind::OutOfOrder {
                    prev_zxid: prev,
                    zxid,
                })
                .in_file(&path));
            }
            if zxid >> 32 == prev >> 32 && zxid != prev + 1 {
                gaps.push((prev, zxid));
            }
            prev = zxid;
            txns.push(txn);
        }
        if let Some(t) = log.torn_tail {
            torn_tails.push((path.clone(), t));
        }
        log_files.push(path);
    }

    Ok(ZkDataDir {
        version2_dir: snap_v2,
        snapshot_file,
        snapshot,
        skipped_snapshots: skipped,
        log_files,
        txns,
        torn_tails,
        gaps,
    })
}

/// Reads and parses one snapshot file; `zxid` is the one in its name.
pub fn read_snapshot_file(path: &Path, zxid: i64) -> Result<ZkSnapshot, ZkDataError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    for method in ["gz", "snappy"] {
        if name.ends_with(&format!(".{method}")) {
            return Err(ZkDataError::new(ZkDataErrorKind::UnsupportedCompression {
                method: method.to_owned(),
            })
            .in_file(path));
        }
    }
    let bytes = read_file(path)?;
    parse_snapshot(zxid, bytes).map_err(|e| e.in_file(path))
}

/// Reads and parses one log file.
pub fn read_log_file(path: &Path) -> Result<ZkLog, ZkDataError> {
    parse_log(read_file(path)?).map_err(|e| e.in_file(path))
}

fn read_file(path: &Path) -> Result<Bytes, ZkDataError> {
    std::fs::read(path)
        .map(Bytes::from)
        .map_err(|e| ZkDataError::new(ZkDataErrorKind::Io(e)).in_file(path))
}

fn version2_dir(dir: &Path) -> Result<PathBuf, ZkDataError> {
    let nested = dir.join("version-2");
    if nested.is_dir() {
        return Ok(nested);
    }
    if dir.file_name().is_some_and(|n| n == "version-2") && dir.is_dir() {
        return Ok(dir.to_path_buf());
    }
    if !dir.exists() {
        let e = std::io::Error::new(std::io::ErrorKind::NotFound, "directory does not exist");
        return Err(ZkDataError::new(ZkDataErrorKind::Io(e)).in_file(dir));
    }
    Err(ZkDataError::new(ZkDataErrorKind::NoVersion2Dir).in_file(dir))
}

/// `(zxid, path)` of the files named `<prefix>.<hex>[.ext]` in `dir`.
fn list_files(dir: &Path, prefix: &str) -> Result<Vec<(i64, PathBuf)>, ZkDataError> {
    let io = |e| ZkDataError::new(ZkDataErrorKind::Io(e)).in_file(dir);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(zxid) = zxid_from_file_name(name, prefix) {
            if entry.file_type().map_err(io)?.is_file() {
                out.push((zxid, entry.path()));
            }
        }
    }
    Ok(out)
}
