//! The I/O half of the import: a [`ConvertedTree`] becomes a Corral data directory holding one
//! snapshot, an empty log that continues after it, and the epoch files.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::storage::{
    self, write_epoch, DataDirs, SnapshotInfo, SnapshotWriter, WalOptions, STORAGE_SUBDIR,
};

use super::{ConvertedTree, ImportError};

/// Choices for [`write_corral_data_dir_with`].
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// Replace an existing Corral state (snapshots, log, epochs) instead of refusing.
    pub force: bool,
    /// The server's `dataLogDir`, when its log is not under the data directory.
    pub data_log_dir: Option<PathBuf>,
}

/// What [`write_corral_data_dir`] produced.
#[derive(Debug, Clone)]
pub struct WriteReport {
    pub snapshot: SnapshotInfo,
    /// Files of an earlier Corral state removed because of `force`.
    pub removed: Vec<PathBuf>,
}

/// [`write_corral_data_dir_with`] that refuses a data directory already holding Corral state.
pub fn write_corral_data_dir(
    tree: &ConvertedTree,
    data_dir: &Path,
) -> Result<WriteReport, ImportError> {
    write_corral_data_dir_with(tree, data_dir, WriteOptions::default())
}

/// Writes `tree` as `<data_dir>/corral-v1/snapshot.<zxid>` and prepares the log (under
/// `opts.data_log_dir` if given, else `data_dir`) to continue at
/// `zxid + 1`; `currentEpoch` and `acceptedEpoch` are set as [`epochs`] says.
///
/// The directory is locked like a server locks it, so this fails while a server runs on it.
/// Files other than Corral's own (e.g. ZooKeeper's `version-2/`) are left alone.
pub fn write_corral_data_dir_with(
    tree: &ConvertedTree,
    data_dir: &Path,
    opts: WriteOptions,
) -> Result<WriteReport, ImportError> {
    if tree.zxid < 0 {
        return Err(ImportError::NegativeZxid { zxid: tree.zxid });
    }
    let dirs = DataDirs::open(data_dir, opts.data_log_dir.as_deref())?;
    let snap_dir = dirs.snap_dir().to_path_buf();
    let mut existing = corral_state_files(&snap_dir)?;
    if dirs.log_dir() != snap_dir {
        existing.extend(corral_state_files(dirs.log_dir())?);
    }
    let mut removed = Vec::new();
    if !existing.is_empty() {
        if !opts.force {
            return Err(ImportError::NotEmpty {
                dir: snap_dir,
                files: existing,
            });
        }
        for path in existing {
            fs::remove_file(&path).map_err(|source| ImportError::Io {
                op: "remove",
                path: path.clone(),
                source,
            })?;
            removed.push(path);
        }
        for dir in [dirs.snap_dir(), dirs.log_dir()] {
            storage::sync_dir(dir).map_err(|source| ImportError::Io {
                op: "fsync directory",
                path: dir.to_path_buf(),
                source,
            })?;
        }
    }

    let (mut wal, _) = dirs.open_wal(WalOptions::default())?;
    wal.reset_after(tree.zxid)?;
    drop(wal);

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut w = SnapshotWriter::create(&snap_dir, tree.zxid, now)?;
    for acl in &tree.acls {
        w.write_acl(acl)?;
    }
    for node in &tree.nodes {
        w.write_node(node)?;
    }
    for session in &tree.sessions {
        w.write_session(session)?;
    }
    let snapshot = w.finish()?;

    let (current, accepted) = epochs(tree);
    write_epoch(&dirs.current_epoch_path(), current)?;
    write_epoch(&dirs.accepted_epoch_path(), accepted)?;
    Ok(WriteReport { snapshot, removed })
}

/// `(currentEpoch, acceptedEpoch)`: the last zxid's epoch, raised to ZooKeeper's own files'
/// values when it had them; accepted is never below current.
pub fn epochs(tree: &ConvertedTree) -> (u64, u64) {
    let mut current = (tree.zxid as u64) >> 32;
    let mut accepted = current;
    if let Some(zk) = tree.zk_epochs {
        current = current.max(zk.current);
        accepted = accepted.max(zk.accepted);
    }
    (current, accepted.max(current))
}

/// Corral's own files in `corral-v1/`: snapshots (finished or not), log segments, epochs.
fn corral_state_files(dir: &Path) -> Result<Vec<PathBuf>, ImportError> {
    let io = |source| ImportError::Io {
        op: "list",
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let ours = name.starts_with("snapshot.")
            || name.starts_with("log.")
            || name == storage::CURRENT_EPOCH_FILE
            || name == storage::ACCEPTED_EPOCH_FILE;
        if ours && entry.file_type().map_err(io)?.is_file() {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// `<data_dir>/corral-v1`.
pub fn corral_snap_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(STORAGE_SUBDIR)
}
