//! Group commit: one OS thread owns the log, appends whatever is queued and fsyncs once.
//!
//! fdatasync blocks for a disk round trip (hundreds of microseconds to milliseconds), so it
//! must not run on the async runtime, and calling it once per transaction would cap writes
//! at the disk's sync rate. The [`LogWriter`] thread instead takes everything queued (up to
//! `max_batch`), appends it all, syncs ONCE and then publishes one [`Durability`] covering
//! the whole batch. Under load, batches grow by themselves.
//!
//! # Who may say "durable"
//!
//! [`Durability`] has private fields and no public constructor: the only value anyone can
//! observe is one this thread published, and it publishes a new `durable_zxid` only after
//! [`LogStore::sync`] returned `Ok`. The core releases client replies (and a follower sends
//! its ACK) up to `durable_zxid` and never further: "ACK only after fsync" is a type-level
//! fact rather than a comment.
//!
//! Durability is published on a `tokio::sync::watch` channel rather than a queue of
//! per-batch messages. Durability is cumulative (durable up to zxid N implies every earlier
//! zxid), so the newest value is all the core needs; a watch channel never blocks the writer
//! and cannot fill up, so the core awaiting room in the request queue while the writer waits
//! for room in a completion queue (a deadlock) cannot happen. It is still ordered: values
//! only grow.
//!
//! # Failure
//!
//! On an I/O error (disk full, EIO, a vanished directory) or a rejected append, the thread
//! publishes `failure`, stops acknowledging anything (the `durable_zxid` published before
//! stays the last one), closes its queue so senders get [`WriterStopped`], and exits. The
//! server then refuses writes and keeps serving reads.
//!
//! # Truncating, resetting, reading
//!
//! The thread owns the [`Wal`] while it runs. Operations that rewrite the log (a follower's
//! `truncate_after` or `reset_after` during synchronisation with a new leader) happen while
//! no writer runs: drop every [`LogWriter`], [`WriterThread::join`] to get the `Wal` back,
//! change it, and spawn a new writer. A leader reads committed records for a follower with
//! [`super::wal::WalReader::open_dir`], which needs no access to the `Wal`.

use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use super::wal::{Wal, WalError};

/// Default bound of the request queue (in hand-offs: one hand-off may carry many records).
pub const DEFAULT_QUEUE_CAPACITY: usize = 16 * 1024;
/// Default number of records appended per sync at most.
pub const DEFAULT_MAX_BATCH: usize = 4096;

/// The log operations the writer thread needs; [`Wal`] is the real one, tests inject faults.
pub trait LogStore: Send + 'static {
    /// Buffers one record.
    fn append(&mut self, zxid: i64, payload: &[u8]) -> Result<(), WalError>;
    /// Makes every appended record durable.
    fn sync(&mut self) -> Result<(), WalError>;
}

impl LogStore for Wal {
    fn append(&mut self, zxid: i64, payload: &[u8]) -> Result<(), WalError> {
        Wal::append(self, zxid, payload)
    }

    fn sync(&mut self) -> Result<(), WalError> {
        Wal::sync(self)
    }
}

/// Tuning of the writer thread.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Bound of the request queue, in hand-offs (see [`LogWriter::append_all`]): senders wait
    /// when it is full.
    pub queue_capacity: usize,
    /// Records appended before one sync: the writer stops taking more hand-offs once it has
    /// this many (one hand-off is never split).
    pub max_batch: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            max_batch: DEFAULT_MAX_BATCH,
        }
    }
}

/// One transaction to log.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    pub zxid: i64,
    pub payload: Bytes,
}

/// What is durable, as published by the writer thread (and only by it).
#[derive(Debug, Clone)]
pub struct Durability {
    durable_zxid: i64,
    failure: Option<Arc<WalError>>,
}

impl Durability {
    /// Every record with a zxid up to this one has been synced to disk.
    pub fn durable_zxid(&self) -> i64 {
        self.durable_zxid
    }

    /// Set once the writer has failed; nothing after `durable_zxid` will become durable.
    pub fn failure(&self) -> Option<&Arc<WalError>> {
        self.failure.as_ref()
    }
}

/// The writer no longer accepts records (it failed, or was shut down).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the log writer has stopped")]
pub struct WriterStopped;

/// Errors of starting or joining the writer thread.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error("cannot start the log writer thread: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("the log writer failed: {0}")]
    Failed(Arc<WalError>),
    #[error("the log writer thread panicked")]
    Panicked,
}

/// Sending side of the writer: cheap to clone, usable from async code without blocking.
#[derive(Debug, Clone)]
pub struct LogWriter {
    tx: mpsc::Sender<Vec<AppendRequest>>,
}

/// The writer thread; join it after every [`LogWriter`] is dropped to get the store back.
#[derive(Debug)]
pub struct WriterThread<S> {
    handle: JoinHandle<Result<S, Arc<WalError>>>,
}

impl LogWriter {
    /// Starts the writer thread on `store`. `durable_zxid` is what is already durable (the
    /// log's last zxid after recovery). Returns the sender, the durability watch and the
    /// thread.
    pub fn spawn<S: LogStore>(
        store: S,
        durable_zxid: i64,
        opts: WriterOptions,
    ) -> Result<(LogWriter, watch::Receiver<Durability>, WriterThread<S>), WriterError> {
        let (tx, rx) = mpsc::channel(opts.queue_capacity.max(1));
        let (durable_tx, durable_rx) = watch::channel(Durability {
            durable_zxid,
            failure: None,
        });
        let max_batch = opts.max_batch.max(1);
        let handle = std::thread::Builder::new()
            .name("corral-log-writer".into())
            .spawn(move || run(store, rx, durable_tx, max_batch))
            .map_err(WriterError::Spawn)?;
        Ok((LogWriter { tx }, durable_rx, WriterThread { handle }))
    }

    /// Queues one record, waiting (asynchronously) while the queue is full.
    pub async fn append(&self, zxid: i64, payload: Bytes) -> Result<(), WriterStopped> {
        self.append_all(vec![AppendRequest { zxid, payload }]).await
    }

    /// Queues `records` (in zxid order) as one hand-off, waiting while the queue is full. The
    /// core hands over everything one round of its work logged this way: records handed over
    /// one at a time woke the writer on the first, which then often took only part of the
    /// round and spent a second fsync on the rest.
    pub async fn append_all(&self, records: Vec<AppendRequest>) -> Result<(), WriterStopped> {
        if records.is_empty() {
            return Ok(());
        }
        self.tx.send(records).await.map_err(|_| WriterStopped)
    }

    /// Queues one record if there is room now. `Ok(false)` means the queue is full.
    pub fn try_append(&self, zxid: i64, payload: Bytes) -> Result<bool, WriterStopped> {
        match self.tx.try_send(vec![AppendRequest { zxid, payload }]) {
            Ok(()) => Ok(true),
            Err(mpsc::error::TrySendError::Full(_)) => Ok(false),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(WriterStopped),
        }
    }
}

impl<S> WriterThread<S> {
    /// Waits for the thread to end (it ends when every [`LogWriter`] is dropped and the
    /// queue is drained, or on failure) and returns the store.
    pub fn join(self) -> Result<S, WriterError> {
        match self.handle.join() {
            Ok(Ok(store)) => Ok(store),
            Ok(Err(error)) => Err(WriterError::Failed(error)),
            Err(_) => Err(WriterError::Panicked),
        }
    }
}

/// The thread body: batch, append, sync once, publish.
fn run<S: LogStore>(
    mut store: S,
    mut rx: mpsc::Receiver<Vec<AppendRequest>>,
    durable_tx: watch::Sender<Durability>,
    max_batch: usize,
) -> Result<S, Arc<WalError>> {
    let mut batch: Vec<AppendRequest> = Vec::with_capacity(max_batch);
    while let Some(mut first) = rx.blocking_recv() {
        batch.append(&mut first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(mut records) => batch.append(&mut records),
                Err(_) => break,
            }
        }
        let up_to_zxid = batch.last().map_or(0, |r| r.zxid);
        let result = batch
            .iter()
            .try_for_each(|r| store.append(r.zxid, &r.payload))
            .and_then(|()| store.sync());
        batch.clear();
        match result {
            Ok(()) => {
                // The only place a durable zxid is published: after sync returned Ok.
                durable_tx.send_modify(|d| d.durable_zxid = up_to_zxid);
            }
            Err(error) => {
                tracing::error!(%error, "transaction log write failed; refusing further writes");
                // Close first, so that anyone who sees the failure also finds the queue shut.
                rx.close();
                let error = Arc::new(error);
                durable_tx.send_modify(|d| d.failure = Some(Arc::clone(&error)));
                return Err(error);
            }
        }
    }
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::wal::{self, WalOptions, WalReader};
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc as std_mpsc;

    fn small_opts() -> WalOptions {
        WalOptions {
            segment_size_bytes: 64 << 10,
            ..WalOptions::default()
        }
    }

    /// Zxids up to `up_to` readable from the log files in `dir` right now, read the way a
    /// leader reads committed records while the writer keeps appending.
    fn readable_zxids(dir: &Path, up_to: i64) -> Vec<i64> {
        WalReader::open_dir(dir, 1, up_to, wal::DEFAULT_MAX_RECORD_BYTES)
            .unwrap()
            .map(|r| r.unwrap().0)
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_producers_every_durable_is_readable_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), small_opts()).unwrap();
        let opts = WriterOptions {
            queue_capacity: 64,
            max_batch: 32,
        };
        let (writer, mut durable, thread) = LogWriter::spawn(wal, 0, opts).unwrap();

        // Zxids are assigned in queue order, as the core does; producers race for the lock.
        let next = Arc::new(tokio::sync::Mutex::new(0i64));
        let producers = 4;
        let per_producer = 500;
        let mut tasks = Vec::new();
        for p in 0..producers {
            let writer = writer.clone();
            let next = Arc::clone(&next);
            tasks.push(tokio::spawn(async move {
                for i in 0..per_producer {
                    let mut guard = next.lock().await;
                    *guard += 1;
                    let payload = Bytes::from(format!("producer {p} item {i} zxid {}", *guard));
                    writer.append(*guard, payload).await.unwrap();
                }
            }));
        }
        drop(writer);

        let total = (producers * per_producer) as i64;
        let checker = {
            let dir = dir.path().to_path_buf();
            tokio::task::spawn_blocking(move || {
                let mut seen = 0;
                let mut checks = 0;
                while seen < total {
                    let Ok(()) = tokio::runtime::Handle::current().block_on(durable.changed())
                    else {
                        break;
                    };
                    let d = durable.borrow_and_update().clone();
                    assert!(d.failure().is_none());
                    assert!(d.durable_zxid() > seen, "durable zxid went backwards");
                    seen = d.durable_zxid();
                    let on_disk = readable_zxids(&dir, seen);
                    assert!(
                        on_disk.iter().copied().eq(1..=seen),
                        "durable up to {seen} but {} records on disk",
                        on_disk.len()
                    );
                    checks += 1;
                }
                (seen, checks)
            })
        };
        for task in tasks {
            task.await.unwrap();
        }
        let (seen, checks) = checker.await.unwrap();
        assert_eq!(seen, total);
        assert!(checks >= 1);
        let wal = tokio::task::spawn_blocking(move || thread.join())
            .await
            .unwrap()
            .unwrap();
        drop(wal);
        let (_, report) = Wal::open(dir.path(), small_opts()).unwrap();
        assert_eq!(report.last_zxid, total);
        assert_eq!(report.torn_tail, None);
    }

    /// A store that counts syncs, can hold the first sync until released, and can fail the
    /// n-th sync (the injected I/O error).
    struct TestStore {
        wal: Wal,
        syncs: Arc<AtomicUsize>,
        /// Signalled on entering the first sync, which then waits for the release.
        hold_first_sync: Option<(std_mpsc::Sender<()>, std_mpsc::Receiver<()>)>,
        fail_sync_number: Option<usize>,
    }

    impl LogStore for TestStore {
        fn append(&mut self, zxid: i64, payload: &[u8]) -> Result<(), WalError> {
            self.wal.append(zxid, payload)
        }

        fn sync(&mut self) -> Result<(), WalError> {
            if let Some((entered, release)) = self.hold_first_sync.take() {
                entered.send(()).unwrap();
                release.recv().unwrap();
            }
            let n = self.syncs.fetch_add(1, Ordering::SeqCst) + 1;
            if self.fail_sync_number == Some(n) {
                return Err(WalError::Io {
                    op: "fdatasync",
                    path: self.wal.dir().to_path_buf(),
                    source: std::io::Error::other("injected EIO"),
                });
            }
            self.wal.sync()
        }
    }

    #[tokio::test]
    async fn queued_records_share_one_sync() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), small_opts()).unwrap();
        let syncs = Arc::new(AtomicUsize::new(0));
        let (release, hold) = std_mpsc::channel();
        let (entered_tx, entered) = std_mpsc::channel();
        let store = TestStore {
            wal,
            syncs: Arc::clone(&syncs),
            hold_first_sync: Some((entered_tx, hold)),
            fail_sync_number: None,
        };
        let (writer, mut durable, thread) =
            LogWriter::spawn(store, 0, WriterOptions::default()).unwrap();
        writer
            .append(1, Bytes::from_static(b"first"))
            .await
            .unwrap();
        entered.recv().unwrap();
        // While the first batch is stuck in its sync, 100 more records queue up.
        for zxid in 2..=101 {
            writer
                .append(zxid, Bytes::from_static(b"queued"))
                .await
                .unwrap();
        }
        release.send(()).unwrap();
        while durable.borrow_and_update().durable_zxid() < 101 {
            durable.changed().await.unwrap();
        }
        assert_eq!(
            syncs.load(Ordering::SeqCst),
            2,
            "one sync for the first, one for the rest"
        );
        drop(writer);
        let store = tokio::task::spawn_blocking(move || thread.join())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(store.wal.last_zxid(), 101);
    }

    #[tokio::test]
    async fn one_hand_off_is_one_sync() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), small_opts()).unwrap();
        let syncs = Arc::new(AtomicUsize::new(0));
        let store = TestStore {
            wal,
            syncs: Arc::clone(&syncs),
            hold_first_sync: None,
            fail_sync_number: None,
        };
        let (writer, mut durable, thread) =
            LogWriter::spawn(store, 0, WriterOptions::default()).unwrap();
        // Handed to an idle writer, 50 records still go to disk with one sync: the writer
        // cannot wake on the first and sync before the others are there.
        let records = (1..=50)
            .map(|zxid| AppendRequest {
                zxid,
                payload: Bytes::from_static(b"round"),
            })
            .collect();
        writer.append_all(records).await.unwrap();
        writer.append_all(Vec::new()).await.unwrap();
        while durable.borrow_and_update().durable_zxid() < 50 {
            durable.changed().await.unwrap();
        }
        assert_eq!(syncs.load(Ordering::SeqCst), 1);
        drop(writer);
        let store = tokio::task::spawn_blocking(move || thread.join())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(store.wal.last_zxid(), 50);
        assert_eq!(readable_zxids(dir.path(), 50), (1..=50).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn failed_sync_stops_acknowledging() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), small_opts()).unwrap();
        let store = TestStore {
            wal,
            syncs: Arc::new(AtomicUsize::new(0)),
            hold_first_sync: None,
            fail_sync_number: Some(3),
        };
        let (writer, mut durable, thread) =
            LogWriter::spawn(store, 0, WriterOptions::default()).unwrap();
        for zxid in 1..=2 {
            writer
                .append(zxid, Bytes::from_static(b"ok"))
                .await
                .unwrap();
            while durable.borrow_and_update().durable_zxid() < zxid {
                durable.changed().await.unwrap();
            }
        }
        writer.append(3, Bytes::from_static(b"lost")).await.unwrap();
        while durable.borrow_and_update().failure().is_none() {
            durable.changed().await.unwrap();
        }
        let d = durable.borrow().clone();
        assert_eq!(
            d.durable_zxid(),
            2,
            "nothing after the failure is acknowledged"
        );
        assert!(d.failure().unwrap().to_string().contains("injected EIO"));
        // The queue is closed: further writes are refused at once.
        let refused = writer.append(4, Bytes::from_static(b"refused")).await;
        assert!(refused.is_err());
        assert!(writer.try_append(4, Bytes::new()).is_err());
        let joined = tokio::task::spawn_blocking(move || thread.join())
            .await
            .unwrap();
        assert!(matches!(joined, Err(WriterError::Failed(_))));
        assert_eq!(durable.borrow().durable_zxid(), 2);
    }

    #[tokio::test]
    async fn a_bad_zxid_from_the_core_is_a_failure_not_a_skip() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), small_opts()).unwrap();
        let (writer, mut durable, thread) =
            LogWriter::spawn(wal, 0, WriterOptions::default()).unwrap();
        writer.append(5, Bytes::new()).await.unwrap();
        writer.append(5, Bytes::new()).await.unwrap();
        while durable.borrow_and_update().failure().is_none() {
            durable.changed().await.unwrap();
        }
        // Depending on batching, the first record may or may not have been synced on its own.
        assert!(matches!(durable.borrow().durable_zxid(), 0 | 5));
        let joined = tokio::task::spawn_blocking(move || thread.join())
            .await
            .unwrap();
        assert!(matches!(joined, Err(WriterError::Failed(_))));
    }
}
