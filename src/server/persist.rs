//! Persistence glue between the core and `storage`: recovery at start-up (snapshot, then the
//! log after it) and the hand-off of committed transactions to the group-commit log writer.
//!
//! The core encodes each transaction as it commits it and queues the record here; after each
//! batch of messages it flushes the queue to the writer thread in one go. Durability comes back
//! on a watch channel that the core listens to; only then are replies released.

use std::path::Path;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use thiserror::Error;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::storage::txn_codec::{decode_txn, encode_txn, TxnCodecError};
use crate::storage::wal::{Wal, WalError, WalOptions, WalReader};
use crate::storage::writer::{
    AppendRequest, Durability, LogWriter, WriterError, WriterOptions, WriterStopped, WriterThread,
};
use crate::storage::{DataDirs, StorageError};
use crate::tree::{Database, TreeOptions, Txn, TxnBody};

#[derive(Debug, Error)]
pub enum PersistError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error(transparent)]
    Writer(#[from] WriterError),
    #[error(transparent)]
    Snapshot(#[from] crate::storage::snapshot::SnapshotError),
    #[error("the log in {dir} does not reach back to the newest snapshot (0x{snapshot_zxid:x}): records after it were purged or lost")]
    LogGap { dir: String, snapshot_zxid: i64 },
    #[error(transparent)]
    Load(#[from] super::snapshotter::LoadError),
    #[error("the log writer is not running")]
    WriterGone,
    #[error("cannot write {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("log record 0x{zxid:x} in {dir}: {source}")]
    Record {
        zxid: i64,
        dir: String,
        source: TxnCodecError,
    },
}

/// What recovery rebuilt.
pub struct Recovered {
    pub db: Database,
    /// Zxid of the snapshot recovery started from (0: none).
    pub snapshot_zxid: i64,
    /// Live sessions: (id, timeout in ms).
    pub sessions: Vec<(i64, i32)>,
    pub last_zxid: i64,
}

/// What quorum-mode recovery found. Unlike standalone recovery the log is not applied: in an
/// ensemble an entry may still be undone by a new leader, so the tree is the snapshot alone and
/// the log after it goes to the ZAB core, which applies entries once they are committed.
pub struct QuorumRecovered {
    pub db: Database,
    pub sessions: Vec<(i64, i32)>,
    pub snapshot_zxid: i64,
    /// Log records after `snapshot_zxid`, in zxid order.
    pub log: Vec<(i64, Bytes)>,
    /// The accepted epoch and the leader it was accepted from.
    pub accepted: (u64, u64),
    pub current_epoch: u64,
}

/// The first half of recovery, shared by both modes: directories, newest snapshot, the log
/// opened (torn tail cut) and checked to reach back to the snapshot.
struct Opened {
    dirs: DataDirs,
    db: Database,
    sessions: hashbrown::HashMap<i64, i32>,
    snapshot_zxid: i64,
    wal: Wal,
}

fn open_common(
    data_dir: &Path,
    data_log_dir: Option<&Path>,
    log_segment_bytes: u64,
    tree_opts: TreeOptions,
) -> Result<Opened, PersistError> {
    let dirs = DataDirs::open(data_dir, data_log_dir)?;
    let wal_opts = WalOptions {
        segment_size_bytes: log_segment_bytes,
        ..WalOptions::default()
    };
    // Loading the snapshot and checking every log segment are independent and each takes
    // a while on a big data set: do them side by side (restart to serving is what a
    // crashed ensemble member, or a standalone server's users, wait for).
    let (loaded, opened_wal) = std::thread::scope(|scope| {
        let wal_check = std::thread::Builder::new()
            .name("corral-log-check".into())
            .spawn_scoped(scope, || dirs.open_wal(wal_opts.clone()));
        let loaded = super::snapshotter::load_newest(dirs.snap_dir(), tree_opts);
        let opened_wal = match wal_check {
            Ok(handle) => handle
                .join()
                .unwrap_or_else(|_| Err(crate::storage::StorageError::ThreadPanicked)),
            // No thread to be had: check the log here instead.
            Err(_) => dirs.open_wal(wal_opts.clone()),
        };
        (loaded, opened_wal)
    });
    let loaded = loaded?;
    let (db, sessions, snapshot_zxid) = match loaded {
        Some(l) => (l.db, l.sessions.into_iter().collect(), l.zxid),
        None => (Database::new(tree_opts), hashbrown::HashMap::new(), 0),
    };
    let (mut wal, report) = opened_wal?;
    if let Some(torn) = &report.torn_tail {
        warn!(
            ?torn,
            "the log ended in a torn record (a crash mid-write); it was truncated"
        );
    }
    if wal.last_zxid() <= snapshot_zxid {
        // Nothing in the log is newer than the snapshot (or the log is empty): continue
        // numbering after the snapshot.
        if snapshot_zxid > 0 && wal.last_zxid() < snapshot_zxid {
            wal.reset_after(snapshot_zxid)?;
        }
    } else if snapshot_zxid < wal.retained_after() {
        return Err(PersistError::LogGap {
            dir: dirs.log_dir().display().to_string(),
            snapshot_zxid,
        });
    }
    Ok(Opened {
        dirs,
        db,
        sessions,
        snapshot_zxid,
        wal,
    })
}

/// Writes `bytes` to `path` durably: a temporary file, fsync, rename, fsync the directory.
fn write_file_durably(path: &Path, bytes: &[u8]) -> Result<(), PersistError> {
    use std::io::Write;
    let io = |source| PersistError::Io {
        path: path.display().to_string(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.incoming"));
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)
}

/// The newest snapshot file at or below `up_to_zxid`, as bytes, for a peer that is too far
/// behind to be sent log entries. `None` if there is none.
pub fn snapshot_image(
    snap_dir: &Path,
    up_to_zxid: i64,
) -> Result<Option<(i64, Bytes)>, PersistError> {
    for info in crate::storage::snapshot::list_snapshots(snap_dir)? {
        if info.zxid > up_to_zxid {
            continue;
        }
        let bytes = std::fs::read(&info.path).map_err(|source| PersistError::Io {
            path: info.path.display().to_string(),
            source,
        })?;
        return Ok(Some((info.zxid, Bytes::from(bytes))));
    }
    Ok(None)
}

/// The live sessions recovered, in id order.
fn sorted(sessions: hashbrown::HashMap<i64, i32>) -> Vec<(i64, i32)> {
    let mut sessions: Vec<(i64, i32)> = sessions.into_iter().collect();
    sessions.sort_unstable();
    sessions
}

/// The open data directories and the log writer.
pub struct Persistence {
    dirs: DataDirs,
    writer: Option<LogWriter>,
    thread: Option<WriterThread<Wal>>,
    buf: BytesMut,
    pending: Vec<(i64, Bytes)>,
}

/// Keeps the session set up to date while transactions are replayed.
fn track_sessions(sessions: &mut hashbrown::HashMap<i64, i32>, txn: &Txn) {
    match &txn.body {
        TxnBody::CreateSession { timeout_ms } => {
            sessions.insert(txn.session_id, *timeout_ms);
        }
        TxnBody::CloseSession => {
            sessions.remove(&txn.session_id);
        }
        _ => {}
    }
}

/// Applies log records to the tree and the session set. Returns how many were applied and
/// the last zxid (`last_zxid` if none).
fn replay(
    reader: WalReader,
    db: &mut Database,
    sessions: &mut hashbrown::HashMap<i64, i32>,
    log_dir: &Path,
    mut last_zxid: i64,
) -> Result<(u64, i64), PersistError> {
    let mut replayed = 0;
    for rec in reader {
        let (zxid, payload) = rec?;
        let txn = decode_txn(zxid, payload).map_err(|source| PersistError::Record {
            zxid,
            dir: log_dir.display().to_string(),
            source,
        })?;
        track_sessions(sessions, &txn);
        let _ = db.apply(&txn);
        last_zxid = zxid;
        replayed += 1;
    }
    Ok((replayed, last_zxid))
}

impl Persistence {
    fn new(dirs: DataDirs, writer: LogWriter, thread: WriterThread<Wal>) -> Persistence {
        Persistence {
            dirs,
            writer: Some(writer),
            thread: Some(thread),
            buf: BytesMut::with_capacity(64 * 1024),
            pending: Vec::with_capacity(1024),
        }
    }

    /// Opens (creating if needed) the data directories, rebuilds the tree and the session set
    /// from disk, and starts the log writer.
    pub fn open(
        data_dir: &Path,
        data_log_dir: Option<&Path>,
        log_segment_bytes: u64,
        tree_opts: TreeOptions,
    ) -> Result<(Persistence, Recovered, watch::Receiver<Durability>), PersistError> {
        let started = Instant::now();
        let Opened {
            dirs,
            mut db,
            mut sessions,
            snapshot_zxid,
            mut wal,
        } = open_common(data_dir, data_log_dir, log_segment_bytes, tree_opts)?;
        let mut replayed = 0u64;
        let mut last_zxid = snapshot_zxid;
        if wal.last_zxid() > snapshot_zxid {
            let reader = wal.read_from(snapshot_zxid + 1)?;
            (replayed, last_zxid) =
                replay(reader, &mut db, &mut sessions, dirs.log_dir(), last_zxid)?;
        }
        let durable = wal.last_zxid().max(last_zxid);
        let (writer, durability, thread) =
            LogWriter::spawn(wal, durable, WriterOptions::default())?;
        info!(
            snapshot_zxid = format_args!("0x{snapshot_zxid:x}"),
            replayed_txns = replayed,
            last_zxid = format_args!("0x{last_zxid:x}"),
            sessions = sessions.len(),
            znodes = db.node_count(),
            recovery_ms = started.elapsed().as_millis() as u64,
            "data loaded"
        );
        crate::alloc::release_free_memory();
        Ok((
            Persistence::new(dirs, writer, thread),
            Recovered {
                db,
                snapshot_zxid,
                sessions: sorted(sessions),
                last_zxid,
            },
            durability,
        ))
    }

    /// Opens the data directories for a quorum member: the newest snapshot, the log after it
    /// (not applied; see [`QuorumRecovered`]) and the epoch files; starts the log writer.
    pub fn open_quorum(
        data_dir: &Path,
        data_log_dir: Option<&Path>,
        log_segment_bytes: u64,
        tree_opts: TreeOptions,
    ) -> Result<(Persistence, QuorumRecovered, watch::Receiver<Durability>), PersistError> {
        let started = Instant::now();
        let Opened {
            dirs,
            db,
            sessions,
            snapshot_zxid,
            mut wal,
        } = open_common(data_dir, data_log_dir, log_segment_bytes, tree_opts)?;
        let mut log = Vec::new();
        if wal.last_zxid() > snapshot_zxid {
            for rec in wal.read_from(snapshot_zxid + 1)? {
                log.push(rec?);
            }
        }
        let accepted =
            crate::storage::read_accepted_epoch(&dirs.accepted_epoch_path())?.unwrap_or((0, 0));
        let current_epoch = crate::storage::read_epoch(&dirs.current_epoch_path())?.unwrap_or(0);
        let durable = wal.last_zxid().max(snapshot_zxid);
        let (writer, durability, thread) =
            LogWriter::spawn(wal, durable, WriterOptions::default())?;
        info!(
            snapshot_zxid = format_args!("0x{snapshot_zxid:x}"),
            log_entries = log.len(),
            accepted_epoch = accepted.0,
            current_epoch,
            znodes = db.node_count(),
            recovery_ms = started.elapsed().as_millis() as u64,
            "data loaded"
        );
        crate::alloc::release_free_memory();
        Ok((
            Persistence::new(dirs, writer, thread),
            QuorumRecovered {
                db,
                sessions: sorted(sessions),
                snapshot_zxid,
                log,
                accepted,
                current_epoch,
            },
            durability,
        ))
    }

    /// Queues one already-encoded log record (a quorum log entry).
    pub fn log_raw(&mut self, zxid: i64, payload: Bytes) {
        self.pending.push((zxid, payload));
    }

    /// Stops the writer thread once everything handed to it is durable, writes what is still
    /// queued here directly, and returns the log. For the rare operations that rewrite the
    /// log's end; the caller's thread waits for the fsync.
    fn stop_writer(&mut self) -> Result<Wal, PersistError> {
        self.writer = None;
        let thread = self.thread.take().ok_or(PersistError::WriterGone)?;
        let mut wal = thread.join()?;
        for (zxid, payload) in self.pending.drain(..) {
            wal.append(zxid, &payload)?;
        }
        wal.sync()?;
        Ok(wal)
    }

    fn start_writer(&mut self, wal: Wal) -> Result<watch::Receiver<Durability>, PersistError> {
        let durable = wal.last_zxid();
        let (writer, durability, thread) =
            LogWriter::spawn(wal, durable, WriterOptions::default())?;
        self.writer = Some(writer);
        self.thread = Some(thread);
        Ok(durability)
    }

    /// Removes every log record after `zxid` durably (a leader told this member its log went
    /// further than the leader's history). Every earlier write is durable when this returns.
    /// Returns the new writer's durability watch.
    pub fn truncate_after(
        &mut self,
        zxid: i64,
    ) -> Result<watch::Receiver<Durability>, PersistError> {
        let mut wal = self.stop_writer()?;
        let last = wal.truncate_after(zxid)?;
        info!(
            after_zxid = format_args!("0x{zxid:x}"),
            last_zxid = format_args!("0x{last:x}"),
            "log truncated"
        );
        self.start_writer(wal)
    }

    /// Replaces this member's state with a leader's snapshot image at `zxid`: the file is
    /// written durably and loaded, then the log is emptied to continue after `zxid`.
    pub fn install_snapshot(
        &mut self,
        zxid: i64,
        image: &[u8],
        tree_opts: TreeOptions,
    ) -> Result<(super::snapshotter::Loaded, watch::Receiver<Durability>), PersistError> {
        let mut wal = self.stop_writer()?;
        let path = crate::storage::snapshot::snapshot_path(self.dirs.snap_dir(), zxid);
        let result = write_file_durably(&path, image)
            .and_then(|()| Ok(super::snapshotter::load(&path, tree_opts)?));
        let loaded = match result {
            Ok(l) if l.zxid == zxid => l,
            Ok(l) => {
                let _ = std::fs::remove_file(&path);
                self.start_writer(wal)?;
                return Err(PersistError::Io {
                    path: path.display().to_string(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "snapshot from the leader is at 0x{:x}, expected 0x{zxid:x}",
                            l.zxid
                        ),
                    ),
                });
            }
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                self.start_writer(wal)?;
                return Err(e);
            }
        };
        wal.reset_after(zxid)?;
        let durability = self.start_writer(wal)?;
        Ok((loaded, durability))
    }

    /// Writes the accepted epoch (with its leader) durably.
    pub fn write_accepted_epoch(&self, epoch: u64, leader: u64) -> Result<(), PersistError> {
        Ok(crate::storage::write_accepted_epoch(
            &self.dirs.accepted_epoch_path(),
            epoch,
            leader,
        )?)
    }

    /// Writes the current epoch durably.
    pub fn write_current_epoch(&self, epoch: u64) -> Result<(), PersistError> {
        Ok(crate::storage::write_epoch(
            &self.dirs.current_epoch_path(),
            epoch,
        )?)
    }

    /// Rebuilds the state as of `up_to_zxid` from disk alone (after the log failed, the
    /// memory holds transactions that never became durable and must not be shown).
    pub fn reload(
        &self,
        tree_opts: TreeOptions,
        up_to_zxid: i64,
    ) -> Result<Recovered, PersistError> {
        let loaded =
            super::snapshotter::load_newest_up_to(self.dirs.snap_dir(), tree_opts, up_to_zxid)?;
        let (mut db, mut sessions, snapshot_zxid) = match loaded {
            Some(l) => (l.db, l.sessions.into_iter().collect(), l.zxid),
            None => (Database::new(tree_opts), hashbrown::HashMap::new(), 0),
        };
        let mut last_zxid = snapshot_zxid;
        if up_to_zxid > snapshot_zxid {
            let reader = crate::storage::wal::WalReader::open_dir(
                self.dirs.log_dir(),
                snapshot_zxid + 1,
                up_to_zxid,
                WalOptions::default().max_record_bytes,
            )?;
            (_, last_zxid) = replay(
                reader,
                &mut db,
                &mut sessions,
                self.dirs.log_dir(),
                last_zxid,
            )?;
        }
        Ok(Recovered {
            db,
            snapshot_zxid,
            sessions: sorted(sessions),
            last_zxid,
        })
    }

    /// Queues a committed transaction for the log.
    pub fn log(&mut self, txn: &Txn) {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(64 * 1024);
        }
        encode_txn(txn, &mut self.buf);
        let payload = self.buf.split().freeze();
        self.pending.push((txn.zxid, payload));
    }

    /// Where snapshots go.
    pub fn snap_dir(&self) -> &Path {
        self.dirs.snap_dir()
    }

    /// Where log segments go.
    pub fn log_dir(&self) -> &Path {
        self.dirs.log_dir()
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Hands everything queued to the writer thread, waiting while its queue is full.
    pub async fn flush(&mut self) -> Result<(), WriterStopped> {
        let Some(writer) = &self.writer else {
            self.pending.clear();
            return Err(WriterStopped);
        };
        let records = self
            .pending
            .drain(..)
            .map(|(zxid, payload)| AppendRequest { zxid, payload })
            .collect();
        writer.append_all(records).await
    }

    /// Stops the writer after it has made everything queued durable.
    pub fn close(&mut self) {
        self.writer = None;
        if let Some(thread) = self.thread.take() {
            if let Err(e) = thread.join() {
                warn!(error = %e, "log writer ended with an error");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jute::{Acl, OpCode};
    use crate::quorum::zxid;
    use crate::tree::NodeKind;

    fn opts() -> TreeOptions {
        TreeOptions {
            extended_types_enabled: true,
        }
    }

    fn create_txn(z: i64, path: &str) -> Txn {
        Txn {
            session_id: 0,
            cxid: 0,
            zxid: z,
            time_ms: 0,
            body: TxnBody::Create {
                path: path.into(),
                data: Some(Bytes::from_static(b"v")),
                acl: Acl::open_unsafe(),
                kind: NodeKind::Persistent,
                parent_cversion: 1,
                op: OpCode::Create,
            },
        }
    }

    fn record(z: i64, path: &str) -> (i64, Bytes) {
        let mut buf = BytesMut::new();
        encode_txn(&create_txn(z, path), &mut buf);
        (z, buf.freeze())
    }

    async fn wait_durable(d: &mut watch::Receiver<Durability>, z: i64) {
        while d.borrow_and_update().durable_zxid() < z {
            d.changed().await.unwrap();
        }
    }

    /// A snapshot image of a tree holding `paths` at zxid `z`, as a leader would send it.
    async fn image_of(dir: &Path, z: i64, paths: &[&str]) -> Bytes {
        let mut db = Database::new(opts());
        for (i, p) in paths.iter().enumerate() {
            db.apply(&create_txn(z - (paths.len() - 1 - i) as i64, p));
        }
        db.begin_snapshot().unwrap();
        let (done_tx, mut done_rx) = tokio::sync::mpsc::channel(1);
        let tx = super::super::snapshotter::start(dir, z, 0, vec![(7, 4000)], done_tx).unwrap();
        while let Some(chunk) = db.snapshot_chunk(10) {
            tx.send(super::super::snapshotter::SnapMsg::Chunk(chunk.nodes))
                .await
                .unwrap();
        }
        tx.send(super::super::snapshotter::SnapMsg::Finish)
            .await
            .unwrap();
        let done = done_rx.recv().await.unwrap();
        let info = done.result.unwrap();
        Bytes::from(std::fs::read(info.path).unwrap())
    }

    #[tokio::test]
    async fn quorum_log_survives_reopen_and_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let z = |c| zxid::make(1, c);
        let (mut p, rec, mut d) =
            Persistence::open_quorum(dir.path(), None, 1 << 20, opts()).unwrap();
        assert!(rec.log.is_empty());
        assert_eq!((rec.accepted, rec.current_epoch), ((0, 0), 0));
        for c in 1..=5 {
            let (zx, payload) = record(z(c), &format!("/n{c}"));
            p.log_raw(zx, payload);
        }
        p.flush().await.unwrap();
        wait_durable(&mut d, z(5)).await;
        p.write_accepted_epoch(2, 3).unwrap();
        p.write_current_epoch(1).unwrap();

        // Cut after the third; the writer keeps going from there.
        let mut d = p.truncate_after(z(3)).unwrap();
        assert_eq!(d.borrow().durable_zxid(), z(3));
        let (zx, payload) = record(zxid::make(2, 1), "/after");
        p.log_raw(zx, payload);
        p.flush().await.unwrap();
        wait_durable(&mut d, zxid::make(2, 1)).await;
        p.close();
        drop(p);

        let (_p, rec, _d) = Persistence::open_quorum(dir.path(), None, 1 << 20, opts()).unwrap();
        let zxids: Vec<i64> = rec.log.iter().map(|(z, _)| *z).collect();
        assert_eq!(zxids, vec![z(1), z(2), z(3), zxid::make(2, 1)]);
        assert_eq!(rec.accepted, (2, 3));
        assert_eq!(rec.current_epoch, 1);
        // Quorum recovery does not apply the log: the tree is the (empty) snapshot state.
        assert!(!rec.db.exists("/n1"));
    }

    #[tokio::test]
    async fn installs_a_leaders_snapshot_and_serves_it_to_peers() {
        let leader = tempfile::tempdir().unwrap();
        let z = zxid::make(3, 9);
        let image = image_of(leader.path(), z, &["/a", "/b"]).await;
        assert_eq!(
            snapshot_image(leader.path(), z)
                .unwrap()
                .map(|(zx, b)| (zx, b.len())),
            Some((z, image.len()))
        );
        assert!(snapshot_image(leader.path(), z - 1).unwrap().is_none());

        let dir = tempfile::tempdir().unwrap();
        let (mut p, _rec, _d) =
            Persistence::open_quorum(dir.path(), None, 1 << 20, opts()).unwrap();
        let (zx, payload) = record(zxid::make(1, 1), "/old");
        p.log_raw(zx, payload);
        let (loaded, d) = p.install_snapshot(z, &image, opts()).unwrap();
        assert_eq!(loaded.zxid, z);
        assert!(loaded.db.exists("/a"));
        assert_eq!(loaded.sessions, vec![(7, 4000)]);
        assert_eq!(d.borrow().durable_zxid(), z);
        // A damaged image is refused and leaves the log usable.
        let mut bad = image.to_vec();
        let mid = bad.len() / 2;
        bad[mid] ^= 0xff;
        assert!(p.install_snapshot(zxid::make(3, 10), &bad, opts()).is_err());
        p.close();
        drop(p);

        let (_p, rec, _d) = Persistence::open_quorum(dir.path(), None, 1 << 20, opts()).unwrap();
        assert_eq!(rec.snapshot_zxid, z);
        assert!(rec.log.is_empty(), "the log before the snapshot is gone");
        assert!(rec.db.exists("/b"));
    }
}
