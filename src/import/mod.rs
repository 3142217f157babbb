//! `corral import-zk`: turns an Apache ZooKeeper (3.5–3.9) data directory into a Corral data
//! directory, so an ensemble's state can move to Corral with every znode exactly as clients
//! saw it.
//!
//! The steps:
//!
//! 1. [`crate::zkdata::read_data_dirs`] picks what ZooKeeper itself would load: the newest
//!    valid snapshot and the logged transactions after its zxid.
//! 2. [`convert()`] (pure) replays those transactions onto the snapshot's tree with ZooKeeper's
//!    fuzzy-snapshot rules ([`replay`]), rebuilds the live sessions (snapshot sessions, plus
//!    createSession, minus closeSession, whose ephemerals go with it), and lays the result out
//!    as Corral snapshot items. Every node keeps its path, data (null distinct from empty),
//!    ACL and persisted stat: czxid, mzxid, ctime, mtime, version, stored (create-counting)
//!    cversion, aversion, raw ephemeralOwner (session id, container `i64::MIN`, ZooKeeper's
//!    TTL encoding) and pzxid. `dataLength` and `numChildren` are derived, as in ZooKeeper.
//! 3. [`write_corral_data_dir`] writes ONE snapshot at the last zxid into
//!    `<dataDir>/corral-v1/`, resets the log so it continues at the next zxid, and writes the
//!    epoch files.
//!
//! Missing transactions (a gap inside an epoch, or nodes newer than the log) are an error
//! unless `--allow-gaps`; a torn log tail (a crash mid-write) is a warning, as ZooKeeper also
//! ignores it. ZooKeeper's data is only read, never modified.

pub mod convert;
pub mod replay;
pub mod write;

#[cfg(test)]
mod tests;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub use convert::{convert, convert_with, ConvertOptions, ConvertedTree, ImportWarning, ZkEpochs};
pub use write::{write_corral_data_dir, write_corral_data_dir_with, WriteOptions, WriteReport};

use crate::storage::{SnapshotError, StorageError, WalError};
use crate::zkdata::{self, ZkDataError};

/// Errors of the import. Nothing is written to the Corral data directory unless reading and
/// converting succeeded.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("reading the ZooKeeper data: {0}")]
    ZkData(#[from] ZkDataError),
    #[error(
        "transactions are missing from the ZooKeeper log (zxid ranges with nothing between \
         them: {}); a log file was purged or lost. Use --allow-gaps to import anyway",
        fmt_gaps(.gaps)
    )]
    Gaps { gaps: Vec<(i64, i64)> },
    #[error(
        "no ZooKeeper transaction log (log.<zxid>) in {}: the transactions after the snapshot \
         would be lost. If ZooKeeper's dataLogDir is a separate directory, pass it with \
         --zk-data-log-dir; to import the snapshot alone, use --allow-gaps",
        dir.display()
    )]
    NoLogs { dir: PathBuf },
    #[error(
        "the ZooKeeper snapshot holds zxid {newest_in_tree:#x} but the log ends at \
         {last_logged:#x}: transactions are missing (use --allow-gaps to import anyway)"
    )]
    NodesAfterLog {
        last_logged: i64,
        newest_in_tree: i64,
    },
    #[error(
        "ZooKeeper snapshot node {path} names ACL index {index}, which is not in the ACL cache"
    )]
    UnknownAclIndex { path: String, index: i64 },
    #[error("transaction {zxid:#x} has type {txn_type}, which ZooKeeper 3.5-3.9 does not log")]
    UnknownTxnType { zxid: i64, txn_type: i32 },
    #[error("transaction {zxid:#x} names a malformed path {path:?}")]
    BadTxnPath { zxid: i64, path: String },
    #[error("the ZooKeeper tree has no root node")]
    NoRoot,
    #[error("last zxid {zxid:#x} is negative")]
    NegativeZxid { zxid: i64 },
    #[error(
        "{} already holds Corral data ({} file(s), e.g. {}); use --force to replace it",
        dir.display(),
        files.len(),
        files.first().map(|f| f.display().to_string()).unwrap_or_default()
    )]
    NotEmpty { dir: PathBuf, files: Vec<PathBuf> },
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Wal(#[from] WalError),
}

fn fmt_gaps(gaps: &[(i64, i64)]) -> String {
    gaps.iter()
        .map(|(a, b)| format!("{a:#x}..{b:#x}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Arguments of `corral import-zk`.
#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// ZooKeeper's dataDir (the directory holding version-2/, or version-2/ itself).
    #[arg(long, value_name = "DIR")]
    pub zk_data_dir: PathBuf,
    /// ZooKeeper's dataLogDir, when the logs are kept apart from the snapshots.
    #[arg(long, value_name = "DIR")]
    pub zk_data_log_dir: Option<PathBuf>,
    /// Corral's dataDir to create (the server's `dataDir`); the state goes in corral-v1/.
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Corral's dataLogDir (the server's `dataLogDir`), when its log is kept apart from
    /// --data-dir.
    #[arg(long, value_name = "DIR")]
    pub data_log_dir: Option<PathBuf>,
    /// Replace Corral state already in --data-dir (snapshots, log, epochs).
    #[arg(long)]
    pub force: bool,
    /// Import even if transactions are missing from the ZooKeeper log.
    #[arg(long)]
    pub allow_gaps: bool,
}

/// What an import did.
#[derive(Debug, Clone)]
pub struct ImportReport {
    pub tree: ConvertedTree,
    pub written: WriteReport,
    pub log_files: usize,
}

impl ImportReport {
    /// The human-readable summary `corral import-zk` prints.
    pub fn summary(&self) -> String {
        let t = &self.tree;
        let (ephemeral, containers, ttl) = t.special_node_counts();
        let mut s = String::new();
        let _ = writeln!(
            s,
            "read {} (zxid {:#x}) and {} transaction(s) after it from {} log file(s)",
            t.source_snapshot.display(),
            t.source_snapshot_zxid,
            t.txns_replayed,
            self.log_files
        );
        let _ = writeln!(
            s,
            "nodes: {} ({ephemeral} ephemeral, {containers} container, {ttl} TTL), ACL lists: {}",
            t.nodes.len(),
            t.acls.len()
        );
        let _ = writeln!(s, "sessions: {}", t.sessions.len());
        let _ = writeln!(s, "last zxid: {:#x}", t.zxid);
        let _ = writeln!(
            s,
            "wrote {} ({} bytes); the log continues at zxid {:#x}",
            self.written.snapshot.path.display(),
            self.written.snapshot.size_bytes,
            t.zxid.wrapping_add(1)
        );
        let (current, accepted) = write::epochs(t);
        let _ = writeln!(s, "epochs: current {current}, accepted {accepted}");
        for p in &self.written.removed {
            let _ = writeln!(s, "removed (--force): {}", p.display());
        }
        for w in &t.warnings {
            let _ = writeln!(s, "warning: {w}");
        }
        s
    }
}

/// Reads, converts and writes, as `corral import-zk` does; returns the report without printing.
pub fn import(args: &ImportArgs) -> Result<ImportReport, ImportError> {
    let log_dir = args.zk_data_log_dir.as_ref().unwrap_or(&args.zk_data_dir);
    let zk = zkdata::read_data_dirs(&args.zk_data_dir, log_dir)?;
    let mut tree = convert_with(
        &zk,
        ConvertOptions {
            allow_gaps: args.allow_gaps,
        },
    )?;
    tree.zk_epochs = read_zk_epochs(&zk.version2_dir, &mut tree.warnings);
    let written = write_corral_data_dir_with(
        &tree,
        &args.data_dir,
        WriteOptions {
            force: args.force,
            data_log_dir: args.data_log_dir.clone(),
        },
    )?;
    Ok(ImportReport {
        tree,
        written,
        log_files: zk.log_files.len(),
    })
}

/// ZooKeeper's `currentEpoch` and `acceptedEpoch` (decimal text in `version-2/`, written by
/// quorum members only). Missing files give `None`; unreadable ones a warning and `None`.
pub fn read_zk_epochs(version2_dir: &Path, warnings: &mut Vec<ImportWarning>) -> Option<ZkEpochs> {
    let mut read = |name: &str| -> Option<u64> {
        let file = version2_dir.join(name);
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                warnings.push(ImportWarning::BadEpochFile {
                    file,
                    error: e.to_string(),
                });
                return None;
            }
        };
        match text.trim().parse::<u64>() {
            Ok(v) => Some(v),
            Err(e) => {
                warnings.push(ImportWarning::BadEpochFile {
                    file,
                    error: format!("{:?} is not an epoch: {e}", text.trim()),
                });
                None
            }
        }
    };
    let current = read("currentEpoch");
    let accepted = read("acceptedEpoch");
    if current.is_none() && accepted.is_none() {
        return None;
    }
    let current = current.unwrap_or(0);
    Some(ZkEpochs {
        current,
        accepted: accepted.unwrap_or(current),
    })
}

/// `corral import-zk`: imports and prints the summary on stdout.
pub fn run(args: ImportArgs) -> Result<(), ImportError> {
    let report = import(&args)?;
    print!("{}", report.summary());
    Ok(())
}
