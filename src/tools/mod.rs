//! Operator tools: `corral log dump`, `corral snap dump` and `corral purge`.
//!
//! The counterparts of ZooKeeper's `zkTxnLogToolkit`, `zkSnapShotToolkit` and `PurgeTxnLog`
//! for Corral's own storage formats (`corral-v1/` under `dataDir` and `dataLogDir`, see
//! [`crate::storage`]). All three take no lock and may run beside a live server: the dumps
//! only read (and stop at the last complete record), and purging only deletes whole files a
//! server no longer needs ([`crate::storage::purge_data`]).
//!
//! Each tool is a function writing into any `Write` (so tests can capture the output) plus a
//! `run_*` wrapper for the binary that resolves directories from the arguments, writes to
//! stdout and stderr, and treats a closed stdout (`| head`) as a normal end.
//!
//! - [`log`]: one line (or JSON object) per logged transaction.
//! - [`snap`]: a snapshot's header, counts, ACL lists, nodes and sessions.
//! - [`purge`]: the command-line face of [`crate::storage::purge_data`].

pub mod log;
pub mod purge;
pub mod snap;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::{ArgGroup, Args, Subcommand};

use crate::config::{Config, ConfigError};
use crate::jute::perms;
use crate::storage::txn_codec::TxnCodecError;
use crate::storage::{SnapshotError, StorageError, WalError, STORAGE_SUBDIR};

pub use log::{dump_log, LogDumpOptions, LogDumpStats};
pub use purge::purge_dirs;
pub use snap::{dump_snapshot, newest_valid_snapshot, SnapDumpOptions, SnapStats};

/// Why a tool failed. Every variant's message names the file or directory concerned.
///
/// The wrapped errors' messages already include their causes, so no variant reports a
/// `source()`: printed as an error chain (`{:#}`), nothing would otherwise appear twice.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{0}")]
    Config(ConfigError),
    #[error("{}: no such directory", .0.display())]
    NoDir(PathBuf),
    #[error("{0}")]
    Wal(WalError),
    #[error("{0}")]
    Snapshot(SnapshotError),
    #[error("{0}")]
    Storage(StorageError),
    #[error(
        "corrupt write-ahead log {} at byte {offset}: record {zxid:#x} passes its checksum but {cause}",
        path.display()
    )]
    BadRecord {
        path: PathBuf,
        offset: u64,
        zxid: i64,
        cause: TxnCodecError,
    },
    #[error("no snapshot in {}", .0.display())]
    NoSnapshot(PathBuf),
    #[error("no valid snapshot in {}; the newest is damaged: {cause}", dir.display())]
    NoValidSnapshot { dir: PathBuf, cause: SnapshotError },
    #[error("--from {from:#x} is after --to {to:#x}")]
    BadRange { from: i64, to: i64 },
    #[error("snapshot count {0} is too small: keep at least 3")]
    RetainTooSmall(usize),
    #[error("writing the output: {0}")]
    Output(io::Error),
}

impl From<ConfigError> for ToolError {
    fn from(e: ConfigError) -> Self {
        ToolError::Config(e)
    }
}

impl From<WalError> for ToolError {
    fn from(e: WalError) -> Self {
        ToolError::Wal(e)
    }
}

impl From<SnapshotError> for ToolError {
    fn from(e: SnapshotError) -> Self {
        ToolError::Snapshot(e)
    }
}

impl From<StorageError> for ToolError {
    fn from(e: StorageError) -> Self {
        ToolError::Storage(e)
    }
}

impl From<io::Error> for ToolError {
    fn from(e: io::Error) -> Self {
        ToolError::Output(e)
    }
}

impl From<serde_json::Error> for ToolError {
    fn from(e: serde_json::Error) -> Self {
        ToolError::Output(e.into())
    }
}

/// `corral log ...`
#[derive(Debug, Args)]
pub struct LogArgs {
    #[command(subcommand)]
    pub command: LogCommand,
}

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Print the transactions in the write-ahead log, one per line (like zkTxnLogToolkit).
    Dump(LogDumpArgs),
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["data_log_dir", "config"])))]
pub struct LogDumpArgs {
    /// The dataLogDir (or its corral-v1 subdirectory).
    #[arg(long, value_name = "DIR")]
    pub data_log_dir: Option<PathBuf>,
    /// A zoo.cfg-format file naming dataLogDir (or dataDir).
    #[arg(long, value_name = "CFG")]
    pub config: Option<PathBuf>,
    /// First zxid to print (decimal or 0x hex).
    #[arg(long, value_name = "ZXID", value_parser = parse_zxid)]
    pub from: Option<i64>,
    /// Last zxid to print (decimal or 0x hex).
    #[arg(long, value_name = "ZXID", value_parser = parse_zxid)]
    pub to: Option<i64>,
    /// One JSON object per line (JSON Lines) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Include node data, base64-encoded.
    #[arg(long)]
    pub data: bool,
}

/// `corral snap ...`
#[derive(Debug, Args)]
pub struct SnapArgs {
    #[command(subcommand)]
    pub command: SnapCommand,
}

#[derive(Debug, Subcommand)]
pub enum SnapCommand {
    /// Print a snapshot: header, counts, ACL lists, nodes and sessions (like zkSnapShotToolkit).
    Dump(SnapDumpArgs),
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["file", "data_dir", "config"])))]
pub struct SnapDumpArgs {
    /// A snapshot file (default: the newest valid snapshot of the data directory).
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The dataDir (or its corral-v1 subdirectory).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// A zoo.cfg-format file naming dataDir.
    #[arg(long, value_name = "CFG")]
    pub config: Option<PathBuf>,
    /// Only the header and the counts.
    #[arg(long)]
    pub summary: bool,
    /// JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Include node data, base64-encoded (JSON output).
    #[arg(long)]
    pub data: bool,
}

/// `corral purge`
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["data_dir", "config"])))]
pub struct PurgeArgs {
    /// A zoo.cfg-format file naming dataDir and dataLogDir.
    #[arg(long, value_name = "CFG")]
    pub config: Option<PathBuf>,
    /// The dataDir (or its corral-v1 subdirectory).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The dataLogDir, if not the dataDir.
    #[arg(long, value_name = "DIR", requires = "data_dir")]
    pub data_log_dir: Option<PathBuf>,
    /// Snapshots to keep, at least 3 (default: autopurge.snapRetainCount with --config, else 3).
    #[arg(short = 'n', long = "count", value_name = "COUNT")]
    pub count: Option<usize>,
}

/// Runs `corral log dump`.
pub fn run_log(args: LogArgs) -> Result<(), ToolError> {
    let LogCommand::Dump(args) = args.command;
    let dir = match (&args.data_log_dir, &args.config) {
        (Some(dir), _) => storage_dir(dir),
        (None, Some(cfg)) => load_config(cfg)?.data_log_dir.join(STORAGE_SUBDIR),
        (None, None) => unreachable!("clap requires a source"),
    };
    let opts = LogDumpOptions {
        from: args.from.unwrap_or(i64::MIN),
        to: args.to.unwrap_or(i64::MAX),
        json: args.json,
        data: args.data,
    };
    to_stdout(|out| dump_log(&dir, &opts, out, &mut io::stderr()).map(drop))
}

/// Runs `corral snap dump`.
pub fn run_snap(args: SnapArgs) -> Result<(), ToolError> {
    let SnapCommand::Dump(args) = args.command;
    let opts = SnapDumpOptions {
        summary: args.summary,
        json: args.json,
        data: args.data,
    };
    let file = match (&args.file, &args.data_dir, &args.config) {
        (Some(file), _, _) if !file.is_dir() => file.clone(),
        (Some(dir), _, _) | (None, Some(dir), _) => {
            newest_valid_snapshot(&storage_dir(dir), &mut io::stderr())?
        }
        (None, None, Some(cfg)) => newest_valid_snapshot(
            &load_config(cfg)?.data_dir.join(STORAGE_SUBDIR),
            &mut io::stderr(),
        )?,
        (None, None, None) => unreachable!("clap requires a source"),
    };
    to_stdout(|out| dump_snapshot(&file, &opts, out).map(drop))
}

/// Runs `corral purge`.
pub fn run_purge(args: PurgeArgs) -> Result<(), ToolError> {
    let (snap_dir, log_dir, default_count) = match (&args.data_dir, &args.config) {
        (Some(data), _) => {
            let snap_dir = storage_dir(data);
            let log_dir = args
                .data_log_dir
                .as_deref()
                .map_or_else(|| snap_dir.clone(), storage_dir);
            (snap_dir, log_dir, crate::storage::MIN_RETAIN_COUNT)
        }
        (None, Some(cfg)) => {
            let config = load_config(cfg)?;
            (
                config.data_dir.join(STORAGE_SUBDIR),
                config.data_log_dir.join(STORAGE_SUBDIR),
                config.autopurge_snap_retain_count as usize,
            )
        }
        (None, None) => unreachable!("clap requires a source"),
    };
    let count = args.count.unwrap_or(default_count);
    to_stdout(|out| purge_dirs(&snap_dir, &log_dir, count, out, &mut io::stderr()).map(drop))
}

/// Runs `f` on a buffered stdout; a reader that went away (`| head`) ends it quietly.
fn to_stdout(f: impl FnOnce(&mut dyn Write) -> Result<(), ToolError>) -> Result<(), ToolError> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(64 << 10, stdout.lock());
    let result = f(&mut out).and_then(|()| out.flush().map_err(ToolError::Output));
    match result {
        Err(ToolError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Reads a configuration for its directories. Unlike starting a server, a quorum config needs
/// no `myid` file here.
pub fn load_config(path: &Path) -> Result<Config, ToolError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    // As `Config::load`: UTF-8 when valid, else Latin-1 (Java properties files).
    let text = match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => e.into_bytes().iter().map(|&b| char::from(b)).collect(),
    };
    Ok(Config::parse(&text, &path.display().to_string())?)
}

/// The `corral-v1` directory for a `dataDir`/`dataLogDir` given on the command line: its
/// `corral-v1` subdirectory if it has one, else the directory itself (which lets an operator
/// point straight at `corral-v1`, or at a copy of its files).
pub fn storage_dir(dir: &Path) -> PathBuf {
    let sub = dir.join(STORAGE_SUBDIR);
    if sub.is_dir() {
        sub
    } else {
        dir.to_path_buf()
    }
}

/// Parses a zxid given as decimal or `0x` hex.
pub fn parse_zxid(s: &str) -> Result<i64, String> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).map(|z| z as i64),
        None => s.parse::<i64>(),
    };
    parsed.map_err(|_| format!("{s:?} is not a zxid (decimal or 0x hex)"))
}

/// Milliseconds since the Unix epoch as ISO-8601 UTC, e.g. `2026-11-24T19:57:46.123Z`.
pub fn iso_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    )
}

/// Permission bits as ZooKeeper's CLI shows them (`cdrwa`).
pub fn perms_text(bits: i32) -> String {
    let mut s = String::new();
    for (bit, c) in [
        (perms::CREATE, 'c'),
        (perms::DELETE, 'd'),
        (perms::READ, 'r'),
        (perms::WRITE, 'w'),
        (perms::ADMIN, 'a'),
    ] {
        if bits & bit != 0 {
            s.push(c);
        }
    }
    if s.is_empty() || bits & !perms::ALL != 0 {
        s = format!("{bits:#x}");
    }
    s
}

/// One ACL entry as `scheme:id=perms`, e.g. `world:anyone=cdrwa`.
pub fn acl_entry_text(perms: i32, scheme: &str, id: &str) -> String {
    format!("{scheme}:{id}={}", perms_text(perms))
}

/// Serialisable ACL entry, shared by both dumps.
#[derive(Debug, serde::Serialize)]
pub struct AclJson<'a> {
    pub perms: i32,
    pub scheme: &'a str,
    pub id: &'a str,
}

/// Base64 (standard alphabet, padded) of node data.
pub fn base64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Hex with `0x`, the way ZooKeeper's tools print zxids and session ids.
pub fn hex(v: i64) -> String {
    format!("{v:#x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_time_formats_utc() {
        assert_eq!(iso_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_time(1_795_895_866_123), "2026-11-28T19:57:46.123Z");
        assert_eq!(iso_time(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso_time(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn zxids_parse_in_hex_and_decimal() {
        assert_eq!(parse_zxid("0x1f"), Ok(31));
        assert_eq!(parse_zxid("31"), Ok(31));
        assert_eq!(parse_zxid("0xffffffffffffffff"), Ok(-1));
        assert!(parse_zxid("zz").unwrap_err().contains("zz"));
    }

    #[test]
    fn perms_read_like_zookeeper() {
        assert_eq!(perms_text(31), "cdrwa");
        assert_eq!(perms_text(perms::READ | perms::ADMIN), "ra");
        assert_eq!(perms_text(0), "0x0");
        assert_eq!(acl_entry_text(1, "world", "anyone"), "world:anyone=r");
    }
}
