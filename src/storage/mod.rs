//! Durable storage: the write-ahead transaction log, tree snapshots and small state files.
//!
//! Everything here is about one promise: what the server acknowledged survives a crash, and
//! damage is reported, never silently dropped. The pieces:
//!
//! - [`wal`]: the write-ahead log, segment files of CRC32C-framed records keyed by zxid,
//!   with torn-tail recovery, truncation (for followers) and purging.
//! - [`writer`]: the group-commit thread that owns the log: batches appends, fdatasyncs once
//!   per batch, and is the only thing that can publish "durable up to zxid N".
//! - [`snapshot`]: checksummed, streamed snapshots of the tree, written atomically.
//! - [`atomic`]: small state files (epochs) replaced atomically, with a checksum.
//! - [`purge`]: deleting snapshots and log segments no longer needed ([`purge_data`]).
//!
//! # Directory layout
//!
//! ZooKeeper keeps its files in `version-2/` under `dataDir` and `dataLogDir`; Corral's
//! formats are its own, so they live in `corral-v1/` instead, and a Corral server can share
//! a data directory with ZooKeeper files (for a future import) without confusing either.
//!
//! ```text
//! <dataDir>/corral-v1/
//!     .lock                      flock'd by the running server: one server per directory
//!     snapshot.<zxid hex16>      snapshots (snapshot.<zxid>.tmp while being written)
//!     currentEpoch, acceptedEpoch
//! <dataLogDir>/corral-v1/        (dataLogDir defaults to dataDir; a separate disk for the
//!     log.<zxid hex16>            log keeps fsync latency low, as with ZooKeeper)
//! ```
//!
//! The storage code is synchronous. The log runs on its own thread ([`writer`]); snapshots
//! are meant to be written from a blocking task, so the async runtime never waits on a disk.

pub mod atomic;
pub mod purge;
pub mod snapshot;
pub mod txn_codec;
pub mod wal;
pub mod writer;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub use atomic::{read_small, sync_dir, write_atomic, AtomicError};
pub use purge::{purge_data, PurgeSummary, MIN_RETAIN_COUNT};
pub use snapshot::{
    list_snapshots, purge as purge_snapshots, SnapAcl, SnapNode, SnapSession, SnapshotError,
    SnapshotHeader, SnapshotInfo, SnapshotItem, SnapshotReader, SnapshotWriter,
};
pub use wal::{RecoveryReport, SegmentInfo, Wal, WalError, WalOptions, WalReader};
pub use writer::{Durability, LogStore, LogWriter, WriterError, WriterOptions, WriterThread};

/// Name of the subdirectory Corral uses under `dataDir` and `dataLogDir`.
pub const STORAGE_SUBDIR: &str = "corral-v1";
/// File holding the epoch this server last acknowledged as leader's (ZAB's currentEpoch).
pub const CURRENT_EPOCH_FILE: &str = "currentEpoch";
/// File holding the newest epoch this server promised to follow (ZAB's acceptedEpoch).
pub const ACCEPTED_EPOCH_FILE: &str = "acceptedEpoch";
const LOCK_FILE: &str = ".lock";
const PROBE_FILE: &str = ".write-probe";

/// Errors of setting up and using the data directories.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("data directory {path} is not usable: {source}")]
    Unusable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("data directory {path} is in use by another process")]
    Locked { path: PathBuf },
    #[error("{path}: expected an 8-byte epoch, found {len} bytes")]
    BadEpoch { path: PathBuf, len: usize },
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    State(#[from] AtomicError),
    #[error("the thread checking the log stopped unexpectedly (panicked)")]
    ThreadPanicked,
}

/// The server's storage directories, created, checked for writability and locked.
#[derive(Debug)]
pub struct DataDirs {
    snap_dir: PathBuf,
    log_dir: PathBuf,
    /// Held open for the life of the server: the flock on it keeps a second server out.
    _lock: File,
}

fn unusable<'a>(path: &'a Path) -> impl FnOnce(io::Error) -> StorageError + 'a {
    move |source| StorageError::Unusable {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `dir` (and its parents) and proves it writable by creating, syncing and removing
/// a file: permission bits do not stop root, a read-only or full filesystem does.
fn prepare_dir(dir: &Path) -> Result<(), StorageError> {
    fs::create_dir_all(dir).map_err(unusable(dir))?;
    // The new directory's own entry is durable only once its parent is synced.
    if let Some(parent) = dir.parent() {
        sync_dir(parent).map_err(unusable(parent))?;
    }
    let probe = dir.join(PROBE_FILE);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe)
        .map_err(unusable(dir))?;
    file.write_all(b"probe").map_err(unusable(dir))?;
    file.sync_all().map_err(unusable(dir))?;
    drop(file);
    fs::remove_file(&probe).map_err(unusable(dir))?;
    sync_dir(dir).map_err(unusable(dir))?;
    Ok(())
}

/// Takes an exclusive, non-blocking flock on `dir/.lock`.
fn lock_dir(dir: &Path) -> Result<File, StorageError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(unusable(dir))?;
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: flock only takes the descriptor and flags; `file` owns the descriptor and
        // outlives the call.
        let ret = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if ret != 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::WouldBlock {
                return Err(StorageError::Locked {
                    path: dir.to_path_buf(),
                });
            }
            return Err(unusable(dir)(err));
        }
    }
    Ok(file)
}

impl DataDirs {
    /// Sets up `<data_dir>/corral-v1` and `<data_log_dir or data_dir>/corral-v1`: creates
    /// them, checks they are writable and locks the data directory against a second server.
    pub fn open(data_dir: &Path, data_log_dir: Option<&Path>) -> Result<DataDirs, StorageError> {
        let snap_dir = data_dir.join(STORAGE_SUBDIR);
        let log_dir = data_log_dir.unwrap_or(data_dir).join(STORAGE_SUBDIR);
        prepare_dir(&snap_dir)?;
        if log_dir != snap_dir {
            prepare_dir(&log_dir)?;
        }
        let lock = lock_dir(&snap_dir)?;
        Ok(DataDirs {
            snap_dir,
            log_dir,
            _lock: lock,
        })
    }

    /// Where snapshots and epoch files live.
    pub fn snap_dir(&self) -> &Path {
        &self.snap_dir
    }

    /// Where the log segments live.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    pub fn current_epoch_path(&self) -> PathBuf {
        self.snap_dir.join(CURRENT_EPOCH_FILE)
    }

    pub fn accepted_epoch_path(&self) -> PathBuf {
        self.snap_dir.join(ACCEPTED_EPOCH_FILE)
    }

    /// Opens the write-ahead log in [`log_dir`](Self::log_dir).
    pub fn open_wal(&self, opts: WalOptions) -> Result<(Wal, RecoveryReport), StorageError> {
        Ok(Wal::open(&self.log_dir, opts)?)
    }
}

/// Reads an epoch file; `Ok(None)` if it does not exist yet, an error if it is damaged.
pub fn read_epoch(path: &Path) -> Result<Option<u64>, StorageError> {
    let Some(bytes) = read_small(path)? else {
        return Ok(None);
    };
    let raw: [u8; 8] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| StorageError::BadEpoch {
            path: path.to_path_buf(),
            len: bytes.len(),
        })?;
    Ok(Some(u64::from_le_bytes(raw)))
}

/// Durably replaces an epoch file (temp file, fsync, rename, fsync directory).
pub fn write_epoch(path: &Path, epoch: u64) -> Result<(), StorageError> {
    Ok(write_atomic(path, &epoch.to_le_bytes())?)
}

/// Reads the accepted-epoch file: the epoch and the leader it was accepted from. A file of
/// the plain epoch format (8 bytes) reads as leader 0.
pub fn read_accepted_epoch(path: &Path) -> Result<Option<(u64, u64)>, StorageError> {
    let Some(bytes) = read_small(path)? else {
        return Ok(None);
    };
    let bad = || StorageError::BadEpoch {
        path: path.to_path_buf(),
        len: bytes.len(),
    };
    let word = |i: usize| -> Result<u64, StorageError> {
        let raw: [u8; 8] = bytes
            .get(i * 8..i * 8 + 8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(bad)?;
        Ok(u64::from_le_bytes(raw))
    };
    match bytes.len() {
        8 => Ok(Some((word(0)?, 0))),
        16 => Ok(Some((word(0)?, word(1)?))),
        _ => Err(bad()),
    }
}

/// Durably replaces the accepted-epoch file with `epoch` and the `leader` it was accepted from.
pub fn write_accepted_epoch(path: &Path, epoch: u64, leader: u64) -> Result<(), StorageError> {
    let mut raw = [0u8; 16];
    raw[..8].copy_from_slice(&epoch.to_le_bytes());
    raw[8..].copy_from_slice(&leader.to_le_bytes());
    Ok(write_atomic(path, &raw)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_lock_and_epochs() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        let logs = root.path().join("logs");
        let dirs = DataDirs::open(&data, Some(&logs)).unwrap();
        assert_eq!(dirs.snap_dir(), data.join("corral-v1"));
        assert_eq!(dirs.log_dir(), logs.join("corral-v1"));
        assert!(!dirs.snap_dir().join(PROBE_FILE).exists());

        // A second server on the same directory is refused while the first holds it.
        assert!(matches!(
            DataDirs::open(&data, None),
            Err(StorageError::Locked { .. })
        ));

        let epoch = dirs.current_epoch_path();
        assert_eq!(read_epoch(&epoch).unwrap(), None);
        write_epoch(&epoch, 7).unwrap();
        assert_eq!(read_epoch(&epoch).unwrap(), Some(7));
        write_atomic(&epoch, b"xyz").unwrap();
        assert!(matches!(
            read_epoch(&epoch),
            Err(StorageError::BadEpoch { len: 3, .. })
        ));

        let accepted = dirs.accepted_epoch_path();
        assert_eq!(read_accepted_epoch(&accepted).unwrap(), None);
        write_epoch(&accepted, 3).unwrap();
        assert_eq!(read_accepted_epoch(&accepted).unwrap(), Some((3, 0)));
        write_accepted_epoch(&accepted, 4, 2).unwrap();
        assert_eq!(read_accepted_epoch(&accepted).unwrap(), Some((4, 2)));
        write_atomic(&accepted, b"0123456789").unwrap();
        assert!(read_accepted_epoch(&accepted).is_err());

        let (mut wal, _) = dirs.open_wal(WalOptions::default()).unwrap();
        wal.append(1, b"one").unwrap();
        wal.sync().unwrap();
        assert!(wal.segments()[0].path.starts_with(&logs));
        drop(dirs);
        // Released with the first DataDirs.
        DataDirs::open(&data, None).unwrap();
    }

    #[test]
    fn unusable_directory_is_a_clear_error() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("not-a-dir");
        fs::write(&file, b"x").unwrap();
        let err = DataDirs::open(&file.join("data"), None).unwrap_err();
        assert!(matches!(err, StorageError::Unusable { .. }), "{err}");
        assert!(err.to_string().contains("not-a-dir"), "{err}");
    }
}
