//! Background snapshots and loading them at start-up.
//!
//! The core takes a point-in-time image of the tree in chunks (`Database::begin_snapshot` /
//! `snapshot_chunk`: no pause proportional to the tree) and hands each chunk to a dedicated
//! thread that encodes and writes it (`storage::snapshot::SnapshotWriter`: temp file, fsync,
//! rename). ACL lists are written once each, the first time a node uses them. The chunk channel
//! is bounded; the core only produces a chunk when there is room, so a slow disk slows the
//! snapshot, not the clients.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hashbrown::HashMap;
use thiserror::Error;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::jute::{Acl, Id};
use crate::storage::snapshot::{
    self as snapfile, SnapAcl, SnapSession, SnapshotError, SnapshotInfo, SnapshotItem,
    SnapshotReader, SnapshotWriter,
};
use crate::tree::{self, Database, TreeOptions};

/// Chunks in flight between the core and the writer thread.
pub const CHUNK_QUEUE_CAPACITY: usize = 16;
/// Nodes per chunk: small enough that producing one is a fraction of a millisecond.
pub const CHUNK_NODES: usize = 250;
/// Loading: items per batch handed from the reading thread to the inserting one.
const LOAD_BATCH_ITEMS: usize = 1024;
/// Loading: batches read ahead of the inserting thread.
const LOAD_BATCHES_IN_FLIGHT: usize = 8;

/// What the core sends to the writer thread.
pub enum SnapMsg {
    Chunk(Vec<tree::SnapNode>),
    /// Every node was sent: finish the file.
    Finish,
}

/// The writer thread's report.
pub struct SnapDone {
    pub zxid: i64,
    pub result: Result<SnapshotInfo, SnapshotError>,
}

#[derive(Debug, Error)]
pub enum LoadError {
    #[error("snapshot {path}: {source}")]
    Snapshot {
        path: PathBuf,
        source: SnapshotError,
    },
    #[error("snapshot {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// Starts the writer thread for a snapshot at `zxid`. Returns the chunk sender.
pub fn start(
    dir: &Path,
    zxid: i64,
    timestamp_ms: i64,
    sessions: Vec<(i64, i32)>,
    done: mpsc::Sender<SnapDone>,
) -> Result<mpsc::Sender<SnapMsg>, SnapshotError> {
    let mut writer = SnapshotWriter::create(dir, zxid, timestamp_ms)?;
    let (tx, mut rx) = mpsc::channel::<SnapMsg>(CHUNK_QUEUE_CAPACITY);
    let spawned = std::thread::Builder::new()
        .name("corral-snapshot".into())
        .spawn(move || {
            lower_thread_priority();
            let result = (|| {
                for (id, timeout_ms) in sessions {
                    writer.write_session(&SnapSession { id, timeout_ms })?;
                }
                // ACL lists by the address of their shared allocation; the Arcs are kept so
                // an address cannot be reused by another list while the snapshot runs.
                let mut acl_index: HashMap<usize, u64> = HashMap::new();
                let mut keep_alive: Vec<Arc<[Acl]>> = Vec::new();
                while let Some(msg) = rx.blocking_recv() {
                    match msg {
                        SnapMsg::Chunk(nodes) => {
                            for n in nodes {
                                let key = Arc::as_ptr(&n.acl) as *const Acl as usize;
                                let index = match acl_index.get(&key) {
                                    Some(i) => *i,
                                    None => {
                                        let i = acl_index.len() as u64;
                                        writer.write_acl(&SnapAcl {
                                            index: i,
                                            acls: n
                                                .acl
                                                .iter()
                                                .map(|a| snapfile::Acl {
                                                    perms: a.perms,
                                                    scheme: a.id.scheme.clone(),
                                                    id: a.id.id.clone(),
                                                })
                                                .collect(),
                                        })?;
                                        acl_index.insert(key, i);
                                        keep_alive.push(n.acl.clone());
                                        i
                                    }
                                };
                                writer.write_node(&snapfile::SnapNode {
                                    path: n.path,
                                    data: n.data.clone(),
                                    acl_index: index,
                                    czxid: n.czxid,
                                    mzxid: n.mzxid,
                                    ctime: n.ctime,
                                    mtime: n.mtime,
                                    version: n.version,
                                    cversion: n.cversion,
                                    aversion: n.aversion,
                                    ephemeral_owner: n.ephemeral_owner,
                                    pzxid: n.pzxid,
                                    num_children: n.num_children,
                                })?;
                            }
                        }
                        SnapMsg::Finish => return writer.finish(),
                    }
                }
                // The core gave up on this snapshot: dropping the writer removes the file.
                Err(SnapshotError::Aborted)
            })();
            let _ = done.blocking_send(SnapDone { zxid, result });
        });
    spawned.map_err(|e| SnapshotError::Io {
        op: "spawn snapshot thread",
        path: dir.to_path_buf(),
        source: e,
    })?;
    Ok(tx)
}

/// Lets the snapshot writer use idle CPU only: client work on the other threads comes first.
fn lower_thread_priority() {
    // SAFETY: gettid has no preconditions; setpriority on our own thread id only changes
    // this thread's nice value. Failure is harmless (the snapshot just competes normally).
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 19);
    }
}

/// A snapshot loaded into a tree.
pub struct Loaded {
    pub db: Database,
    pub sessions: Vec<(i64, i32)>,
    pub zxid: i64,
}

/// Loads one snapshot file into a fresh tree.
pub fn load(path: &Path, opts: TreeOptions) -> Result<Loaded, LoadError> {
    let snap_err = |source| LoadError::Snapshot {
        path: path.to_path_buf(),
        source,
    };
    let invalid = |reason: String| LoadError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let reader = SnapshotReader::open(path).map_err(snap_err)?;
    let zxid = reader.header().zxid;
    let mut restorer = Database::restore_begin(opts, zxid);
    let mut decoder = Decoder::new(reader, path);
    // Reading, checksumming and decoding the file take about as long as inserting into the
    // tree: a second thread decodes batches of nodes while this one inserts them. Batches
    // go back to the decoding thread to be freed there: freeing memory another thread
    // allocated is the allocator's slow path (a lock per block in glibc's, an atomic
    // hand-back in mimalloc's).
    let (to_insert, batches) =
        std::sync::mpsc::sync_channel::<Vec<tree::SnapNode>>(LOAD_BATCHES_IN_FLIGHT);
    let (to_free, used) =
        std::sync::mpsc::sync_channel::<Vec<tree::SnapNode>>(LOAD_BATCHES_IN_FLIGHT + 2);
    let sessions = std::thread::scope(|scope| -> Result<Vec<(i64, i32)>, LoadError> {
        let decoding = std::thread::Builder::new()
            .name("corral-snap-read".into())
            .spawn_scoped(scope, move || -> Result<Vec<(i64, i32)>, LoadError> {
                loop {
                    let mut batch = match used.try_recv() {
                        Ok(mut old) => {
                            old.clear();
                            old
                        }
                        Err(_) => Vec::with_capacity(LOAD_BATCH_ITEMS),
                    };
                    let more = decoder.fill(&mut batch, LOAD_BATCH_ITEMS)?;
                    if !batch.is_empty() && to_insert.send(batch).is_err() {
                        // The inserting side gave up; it reports why.
                        return Ok(decoder.sessions);
                    }
                    if !more {
                        return Ok(decoder.sessions);
                    }
                }
            });
        let decoding = match decoding {
            Ok(handle) => handle,
            Err(_) => {
                // No thread to be had: decode and insert here, a batch at a time.
                drop(to_free);
                let mut decoder = Decoder::new(SnapshotReader::open(path).map_err(snap_err)?, path);
                let mut batch = Vec::with_capacity(LOAD_BATCH_ITEMS);
                loop {
                    batch.clear();
                    let more = decoder.fill(&mut batch, LOAD_BATCH_ITEMS)?;
                    for n in &batch {
                        restorer.add_ref(n).map_err(|e| invalid(e.to_string()))?;
                    }
                    if !more {
                        return Ok(decoder.sessions);
                    }
                }
            }
        };
        let mut inserted: Result<(), LoadError> = Ok(());
        for batch in batches.iter() {
            for n in &batch {
                if let Err(e) = restorer.add_ref(n) {
                    inserted = Err(invalid(e.to_string()));
                    break;
                }
            }
            if inserted.is_err() {
                break;
            }
            // If the decoding side has finished it no longer takes them back: free here.
            let _ = to_free.try_send(batch);
        }
        drop(batches);
        drop(to_free);
        // The file's trailer and checksum are checked by the decoding side at the end.
        let decoded = decoding
            .join()
            .unwrap_or_else(|_| Err(invalid("the snapshot reading thread panicked".into())));
        inserted?;
        decoded
    })?;
    let db = restorer.finish().map_err(|e| invalid(e.to_string()))?;
    Ok(Loaded { db, sessions, zxid })
}

/// The decoding half of [`load`]: snapshot items become tree nodes with their ACL lists.
struct Decoder<'a> {
    reader: SnapshotReader,
    path: &'a Path,
    acls: HashMap<u64, Arc<[Acl]>>,
    sessions: Vec<(i64, i32)>,
}

impl<'a> Decoder<'a> {
    fn new(reader: SnapshotReader, path: &'a Path) -> Self {
        Decoder {
            reader,
            path,
            acls: HashMap::new(),
            sessions: Vec::new(),
        }
    }

    /// Appends up to `max` nodes to `batch`; `false` once the snapshot has ended (and its
    /// trailer and checksum have been verified).
    fn fill(&mut self, batch: &mut Vec<tree::SnapNode>, max: usize) -> Result<bool, LoadError> {
        while batch.len() < max {
            let item = self
                .reader
                .next_item()
                .map_err(|source| LoadError::Snapshot {
                    path: self.path.to_path_buf(),
                    source,
                })?;
            match item {
                None => return Ok(false),
                Some(SnapshotItem::Acl(a)) => {
                    let list: Arc<[Acl]> = a
                        .acls
                        .into_iter()
                        .map(|x| Acl {
                            perms: x.perms,
                            id: Id::new(x.scheme, x.id),
                        })
                        .collect();
                    self.acls.insert(a.index, list);
                }
                Some(SnapshotItem::Session(s)) => self.sessions.push((s.id, s.timeout_ms)),
                Some(SnapshotItem::Node(n)) => {
                    let acl =
                        self.acls
                            .get(&n.acl_index)
                            .cloned()
                            .ok_or_else(|| LoadError::Invalid {
                                path: self.path.to_path_buf(),
                                reason: format!("{}: unknown ACL index {}", n.path, n.acl_index),
                            })?;
                    batch.push(tree::SnapNode {
                        path: n.path,
                        data: n.data,
                        acl,
                        czxid: n.czxid,
                        mzxid: n.mzxid,
                        pzxid: n.pzxid,
                        ctime: n.ctime,
                        mtime: n.mtime,
                        version: n.version,
                        cversion: n.cversion,
                        aversion: n.aversion,
                        ephemeral_owner: n.ephemeral_owner,
                        num_children: n.num_children,
                    });
                }
            }
        }
        Ok(true)
    }
}

/// Loads the newest snapshot that loads, falling back to older ones (with a warning each).
/// `None` when there is no usable snapshot at all.
pub fn load_newest(dir: &Path, opts: TreeOptions) -> Result<Option<Loaded>, SnapshotError> {
    load_newest_up_to(dir, opts, i64::MAX)
}

/// Like [`load_newest`], ignoring snapshots newer than `up_to_zxid`.
pub fn load_newest_up_to(
    dir: &Path,
    opts: TreeOptions,
    up_to_zxid: i64,
) -> Result<Option<Loaded>, SnapshotError> {
    for info in snapfile::list_snapshots(dir)? {
        if info.zxid > up_to_zxid {
            continue;
        }
        match load(&info.path, opts) {
            Ok(loaded) => {
                info!(path = %info.path.display(), zxid = format_args!("0x{:x}", loaded.zxid), "snapshot loaded");
                return Ok(Some(loaded));
            }
            Err(e) => warn!(error = %e, "skipping unusable snapshot; trying an older one"),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::jute::OpCode;
    use crate::tree::{NodeKind, Txn, TxnBody};

    const NODES: usize = 3 * LOAD_BATCH_ITEMS + 17;

    fn opts() -> TreeOptions {
        TreeOptions {
            extended_types_enabled: true,
        }
    }

    /// A tree of `NODES` nodes (two levels, so children follow their parents across batch
    /// boundaries) written as a snapshot the way the core writes one. Returns its path.
    async fn write_snapshot(dir: &Path) -> (PathBuf, Database) {
        let mut db = Database::new(opts());
        let mut z = 0;
        let mut create = |db: &mut Database, path: String, data: &'static [u8]| {
            z += 1;
            db.apply(&Txn {
                session_id: 0,
                cxid: 0,
                zxid: z,
                time_ms: 0,
                body: TxnBody::Create {
                    path,
                    data: Some(Bytes::from_static(data)),
                    acl: Acl::open_unsafe(),
                    kind: NodeKind::Persistent,
                    parent_cversion: 1,
                    op: OpCode::Create,
                },
            });
        };
        for d in 0..NODES.div_ceil(100) {
            create(&mut db, format!("/d{d}"), b"dir");
            for c in 0..99 {
                create(&mut db, format!("/d{d}/c{c}"), b"leaf");
            }
        }
        db.begin_snapshot().unwrap();
        let (done_tx, mut done_rx) = mpsc::channel(1);
        let tx = start(dir, db.last_zxid(), 0, vec![(7, 4000), (8, 6000)], done_tx).unwrap();
        while let Some(chunk) = db.snapshot_chunk(100) {
            tx.send(SnapMsg::Chunk(chunk.nodes)).await.unwrap();
        }
        tx.send(SnapMsg::Finish).await.unwrap();
        let info = done_rx.recv().await.unwrap().result.unwrap();
        (info.path, db)
    }

    #[tokio::test]
    async fn load_restores_every_node_and_session_across_batches() {
        let dir = tempfile::tempdir().unwrap();
        let (path, db) = write_snapshot(dir.path()).await;
        let loaded = load(&path, opts()).unwrap();
        assert_eq!(loaded.zxid, db.last_zxid());
        assert_eq!(loaded.db.node_count(), db.node_count());
        assert!(loaded.db.node_count() > 3 * LOAD_BATCH_ITEMS);
        assert_eq!(loaded.sessions, vec![(7, 4000), (8, 6000)]);
        for p in ["/d0", "/d7/c98", "/d30/c0"] {
            assert!(loaded.db.exists(p), "{p} missing");
            assert_eq!(loaded.db.stat(p), db.stat(p), "{p}");
            assert_eq!(loaded.db.data(p), db.data(p), "{p}");
        }
        loaded.db.check_invariants().unwrap();
    }

    #[tokio::test]
    async fn load_refuses_a_damaged_or_cut_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = write_snapshot(dir.path()).await;
        let good = std::fs::read(&path).unwrap();

        let mut flipped = good.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0x55;
        std::fs::write(&path, &flipped).unwrap();
        let err = load(&path, opts()).map(|_| ()).unwrap_err();
        assert!(
            matches!(err, LoadError::Snapshot { .. } | LoadError::Invalid { .. }),
            "{err}"
        );

        std::fs::write(&path, &good[..good.len() - 100]).unwrap();
        let err = load(&path, opts()).map(|_| ()).unwrap_err();
        assert!(matches!(err, LoadError::Snapshot { .. }), "{err}");

        std::fs::write(&path, &good).unwrap();
        assert!(load(&path, opts()).is_ok());
    }
}
