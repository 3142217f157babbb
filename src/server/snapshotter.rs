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
    let mut reader = SnapshotReader::open(path).map_err(snap_err)?;
    let zxid = reader.header().zxid;
    let mut restorer = Database::restore_begin(opts, zxid);
    let mut acls: HashMap<u64, Arc<[Acl]>> = HashMap::new();
    let mut sessions = Vec::new();
    while let Some(item) = reader.next_item().map_err(snap_err)? {
        match item {
            SnapshotItem::Acl(a) => {
                let list: Arc<[Acl]> = a
                    .acls
                    .into_iter()
                    .map(|x| Acl {
                        perms: x.perms,
                        id: Id::new(x.scheme, x.id),
                    })
                    .collect();
                acls.insert(a.index, list);
            }
            SnapshotItem::Session(s) => sessions.push((s.id, s.timeout_ms)),
            SnapshotItem::Node(n) => {
                let acl = acls.get(&n.acl_index).cloned().ok_or_else(|| {
                    invalid(format!("{}: unknown ACL index {}", n.path, n.acl_index))
                })?;
                restorer
                    .add(tree::SnapNode {
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
                    })
                    .map_err(|e| invalid(e.to_string()))?;
            }
        }
    }
    let db = restorer.finish().map_err(|e| invalid(e.to_string()))?;
    Ok(Loaded { db, sessions, zxid })
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
