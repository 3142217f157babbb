//! Snapshots of the tree: checksummed files, streamed in and out one item at a time.
//!
//! Start-up loads the newest valid snapshot and replays the log after its zxid; old log
//! segments can be purged once a snapshot covers them. A snapshot must therefore never be
//! taken for valid when it is not: every file ends in a CRC32C over everything before it, so
//! a torn or damaged snapshot is an error and start-up falls back to the previous one.
//!
//! # On disk
//!
//! `snapshot.<zxid as 16 hex digits>`, written as `snapshot.<zxid>.tmp`, fsync'd, renamed,
//! and the directory fsync'd, so a snapshot either exists whole or not at all. Layout (all
//! integers little-endian; the messages are in `proto/snapshot.proto`):
//!
//! ```text
//! header  32 bytes: magic "CRLSNAP\0" | version u32 | reserved u32 | zxid u64 | timestamp_ms u64
//! items   SnapItem messages, each prefixed by its length as a varint; the last is a trailer
//!         with the number of nodes, ACL lists and sessions, which the reader checks
//! footer  12 bytes: crc32c u32 over header and items | magic "CRLSEND\0"
//! ```
//!
//! # Streaming
//!
//! [`SnapshotWriter`] takes nodes, ACL lists and sessions one by one, so the tree can walk
//! itself without building a second copy in memory. [`SnapshotReader`] yields them one by
//! one and verifies the trailer and checksum at the end: a loader must treat an error at any
//! point, including after the last item, as "this snapshot is invalid", and discard what it
//! built from it. Node data is returned as `Bytes` sharing the item's buffer (no copy).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use prost::Message;

use super::atomic::sync_dir;

/// Generated from `proto/snapshot.proto`.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/corral.snapshot.rs"));
}

pub use pb::{Acl, SnapAcl, SnapNode, SnapSession, SnapTrailer};

/// First bytes of every snapshot.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"CRLSNAP\0";
/// Last bytes of every complete snapshot.
pub const FOOTER_MAGIC: [u8; 8] = *b"CRLSEND\0";
/// Format version written by this code.
pub const SNAPSHOT_VERSION: u32 = 1;
/// File name prefix of snapshots.
pub const SNAPSHOT_PREFIX: &str = "snapshot.";
/// Largest encoded item accepted (a node with its data, or one ACL list).
pub const MAX_ITEM_BYTES: usize = 128 << 20;

const HEADER_BYTES: usize = 32;
const FOOTER_BYTES: usize = 12;
const TMP_SUFFIX: &str = ".tmp";
const TAG_NODE: u32 = 1;
const TAG_ACL: u32 = 2;
const TAG_SESSION: u32 = 3;
const TAG_TRAILER: u32 = 4;

/// Errors of writing, reading and purging snapshots.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("corrupt snapshot {path} at byte {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: &'static str,
    },
    #[error("corrupt snapshot {path} at byte {offset}: {source}")]
    Decode {
        path: PathBuf,
        offset: u64,
        #[source]
        source: prost::DecodeError,
    },
    #[error("snapshot item of {len} bytes exceeds the limit of {MAX_ITEM_BYTES}")]
    ItemTooLarge { len: usize },
    #[error("snapshot abandoned before it was complete")]
    Aborted,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SnapshotError + 'a {
    move |source| SnapshotError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The fixed header of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotHeader {
    /// Every transaction up to and including this zxid is in the snapshot.
    pub zxid: i64,
    /// Wall-clock milliseconds since the Unix epoch when the snapshot was started.
    pub timestamp_ms: i64,
}

/// A snapshot file found by [`list_snapshots`] or written by [`SnapshotWriter::finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub zxid: i64,
    pub path: PathBuf,
    pub size_bytes: u64,
}

/// One item of a snapshot, as yielded by [`SnapshotReader`].
#[derive(Debug, Clone, PartialEq)]
pub enum SnapshotItem {
    Node(SnapNode),
    Acl(SnapAcl),
    Session(SnapSession),
}

/// Path of the snapshot covering `zxid`.
pub fn snapshot_path(dir: &Path, zxid: i64) -> PathBuf {
    dir.join(format!("{SNAPSHOT_PREFIX}{:016x}", zxid as u64))
}

fn parse_snapshot_name(name: &str) -> Option<(i64, bool)> {
    let rest = name.strip_prefix(SNAPSHOT_PREFIX)?;
    let (hex, tmp) = match rest.strip_suffix(TMP_SUFFIX) {
        Some(hex) => (hex, true),
        None => (rest, false),
    };
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok().map(|z| (z as i64, tmp))
}

fn encode_header(header: &SnapshotHeader) -> [u8; HEADER_BYTES] {
    let mut h = [0u8; HEADER_BYTES];
    h[0..8].copy_from_slice(&SNAPSHOT_MAGIC);
    h[8..12].copy_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&header.zxid.to_le_bytes());
    h[24..32].copy_from_slice(&header.timestamp_ms.to_le_bytes());
    h
}

/// Asks the kernel to start writing a range of `file` back now (no waiting). Only a hint:
/// durability still comes from the fsync in `finish`.
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range only reads its integer arguments; the descriptor is owned by
    // `file` and open for the duration of the call. Errors are ignored (it is a hint).
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// Writes one snapshot, item by item. Dropped without [`finish`](Self::finish), it removes
/// its temporary file and leaves no snapshot behind.
#[derive(Debug)]
pub struct SnapshotWriter {
    dir: PathBuf,
    tmp_path: PathBuf,
    header: SnapshotHeader,
    out: Option<BufWriter<File>>,
    crc: u32,
    size_bytes: u64,
    /// Encoding buffer, reused for every item.
    buf: Vec<u8>,
    counts: SnapTrailer,
    /// Bytes up to here were handed to the kernel's writeback already.
    writeback_from: u64,
}

/// Snapshot bytes are pushed to disk in steps of this size while being written, so the final
/// fsync is short and the transaction log's fsyncs never queue behind a whole snapshot's worth
/// of dirty pages.
const WRITEBACK_STEP_BYTES: u64 = 8 << 20;

impl SnapshotWriter {
    /// Starts `snapshot.<zxid>` in `dir` (as a temporary file until `finish`).
    pub fn create(dir: &Path, zxid: i64, timestamp_ms: i64) -> Result<Self, SnapshotError> {
        let final_path = snapshot_path(dir, zxid);
        let mut tmp_name = final_path.as_os_str().to_owned();
        tmp_name.push(TMP_SUFFIX);
        let tmp_path = PathBuf::from(tmp_name);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp_path)
            .map_err(io_err("create", &tmp_path))?;
        let header = SnapshotHeader { zxid, timestamp_ms };
        let mut writer = Self {
            dir: dir.to_path_buf(),
            tmp_path,
            header,
            out: Some(BufWriter::with_capacity(1 << 20, file)),
            crc: 0,
            size_bytes: 0,
            buf: Vec::with_capacity(4096),
            counts: SnapTrailer::default(),
            writeback_from: 0,
        };
        writer.put(&encode_header(&header))?;
        Ok(writer)
    }

    /// The header this snapshot will have.
    pub fn header(&self) -> SnapshotHeader {
        self.header
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        let Some(out) = self.out.as_mut() else {
            return Err(SnapshotError::Io {
                op: "write",
                path: self.tmp_path.clone(),
                source: io::Error::other("snapshot writer already finished"),
            });
        };
        out.write_all(bytes)
            .map_err(io_err("write", &self.tmp_path))?;
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.size_bytes += bytes.len() as u64;
        let in_kernel = self.size_bytes - out.buffer().len() as u64;
        if in_kernel - self.writeback_from >= WRITEBACK_STEP_BYTES {
            start_writeback(
                out.get_ref(),
                self.writeback_from,
                in_kernel - self.writeback_from,
            );
            self.writeback_from = in_kernel;
        }
        Ok(())
    }

    /// Encodes `msg` as a length-delimited `SnapItem` whose oneof field is `tag`, without
    /// moving it into a `SnapItem` (the caller keeps its message).
    fn put_item<M: Message>(&mut self, tag: u32, msg: &M) -> Result<(), SnapshotError> {
        let inner = msg.encoded_len();
        let item = prost::encoding::key_len(tag)
            + prost::encoding::encoded_len_varint(inner as u64)
            + inner;
        if item > MAX_ITEM_BYTES {
            return Err(SnapshotError::ItemTooLarge { len: item });
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        prost::encoding::encode_varint(item as u64, &mut buf);
        prost::encoding::message::encode(tag, msg, &mut buf);
        let result = self.put(&buf);
        self.buf = buf;
        result
    }

    /// Adds one node. Nodes must come in pre-order (parents first).
    pub fn write_node(&mut self, node: &SnapNode) -> Result<(), SnapshotError> {
        self.put_item(TAG_NODE, node)?;
        self.counts.node_count += 1;
        Ok(())
    }

    /// Adds one ACL list; write it before any node naming its index.
    pub fn write_acl(&mut self, acl: &SnapAcl) -> Result<(), SnapshotError> {
        self.put_item(TAG_ACL, acl)?;
        self.counts.acl_count += 1;
        Ok(())
    }

    /// Adds one session.
    pub fn write_session(&mut self, session: &SnapSession) -> Result<(), SnapshotError> {
        self.put_item(TAG_SESSION, session)?;
        self.counts.session_count += 1;
        Ok(())
    }

    /// Writes the trailer and checksum, fsyncs, renames the file into place and fsyncs the
    /// directory. When this returns `Ok`, the snapshot survives a crash.
    pub fn finish(mut self) -> Result<SnapshotInfo, SnapshotError> {
        let counts = self.counts;
        self.put_item(TAG_TRAILER, &counts)?;
        let mut footer = [0u8; FOOTER_BYTES];
        footer[0..4].copy_from_slice(&self.crc.to_le_bytes());
        footer[4..12].copy_from_slice(&FOOTER_MAGIC);
        self.put(&footer)?;
        let Some(out) = self.out.take() else {
            return Err(SnapshotError::Io {
                op: "write",
                path: self.tmp_path.clone(),
                source: io::Error::other("snapshot writer already finished"),
            });
        };
        let file = out
            .into_inner()
            .map_err(|e| io_err("write", &self.tmp_path)(e.into_error()))?;
        file.sync_all().map_err(io_err("fsync", &self.tmp_path))?;
        drop(file);
        let final_path = snapshot_path(&self.dir, self.header.zxid);
        fs::rename(&self.tmp_path, &final_path).map_err(io_err("rename", &self.tmp_path))?;
        // From here on the temporary file is gone; Drop must not touch the final one.
        self.tmp_path = PathBuf::new();
        sync_dir(&self.dir).map_err(io_err("fsync directory", &self.dir))?;
        Ok(SnapshotInfo {
            zxid: self.header.zxid,
            path: final_path,
            size_bytes: self.size_bytes,
        })
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        if !self.tmp_path.as_os_str().is_empty() {
            self.out = None;
            let _ = fs::remove_file(&self.tmp_path);
        }
    }
}

/// Reads a snapshot item by item; the last call verifies the trailer and checksum.
#[derive(Debug)]
pub struct SnapshotReader {
    path: PathBuf,
    reader: BufReader<File>,
    header: SnapshotHeader,
    crc: u32,
    offset: u64,
    counts: SnapTrailer,
    done: bool,
    /// Item bodies are carved out of this buffer, so a snapshot of a million small items
    /// costs a few hundred allocations rather than a million (and as many frees once the
    /// tree has copied what it keeps).
    arena: BytesMut,
}

/// Size of each buffer item bodies are carved from.
const ARENA_BYTES: usize = 1 << 20;

impl SnapshotReader {
    /// Opens a snapshot and checks its header.
    pub fn open(path: &Path) -> Result<Self, SnapshotError> {
        let file = File::open(path).map_err(io_err("open", path))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut h = [0u8; HEADER_BYTES];
        read_exact_or_corrupt(&mut reader, &mut h, path, 0)?;
        let corrupt = |reason| SnapshotError::Corrupt {
            path: path.to_path_buf(),
            offset: 0,
            reason,
        };
        if h[0..8] != SNAPSHOT_MAGIC {
            return Err(corrupt("bad magic"));
        }
        if h[8..12] != SNAPSHOT_VERSION.to_le_bytes() {
            return Err(corrupt("unsupported version"));
        }
        let mut zxid = [0u8; 8];
        zxid.copy_from_slice(&h[16..24]);
        let mut timestamp = [0u8; 8];
        timestamp.copy_from_slice(&h[24..32]);
        Ok(Self {
            path: path.to_path_buf(),
            reader,
            header: SnapshotHeader {
                zxid: i64::from_le_bytes(zxid),
                timestamp_ms: i64::from_le_bytes(timestamp),
            },
            crc: crc32c::crc32c(&h),
            offset: HEADER_BYTES as u64,
            counts: SnapTrailer::default(),
            done: false,
            arena: BytesMut::new(),
        })
    }

    /// The header (zxid covered, timestamp). Trust it only once the reader has finished.
    pub fn header(&self) -> SnapshotHeader {
        self.header
    }

    fn corrupt(&self, offset: u64, reason: &'static str) -> SnapshotError {
        SnapshotError::Corrupt {
            path: self.path.clone(),
            offset,
            reason,
        }
    }

    /// Reads one byte, `None` at the end of the file.
    fn read_byte(&mut self) -> Result<Option<u8>, SnapshotError> {
        loop {
            match self.reader.fill_buf() {
                Ok([]) => return Ok(None),
                Ok(buf) => {
                    let b = buf[0];
                    self.reader.consume(1);
                    return Ok(Some(b));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err("read", &self.path)(e)),
            }
        }
    }

    /// The next item, `Ok(None)` once the trailer and checksum have been verified.
    pub fn next_item(&mut self) -> Result<Option<SnapshotItem>, SnapshotError> {
        if self.done {
            return Ok(None);
        }
        let item_at = self.offset;
        // The varint length prefix, read byte by byte into the checksum.
        let mut len = 0u64;
        let mut prefix = [0u8; 10];
        let mut prefix_len = 0;
        loop {
            let Some(b) = self.read_byte()? else {
                return Err(self.corrupt(item_at, "truncated: ends before its trailer"));
            };
            if prefix_len == prefix.len() {
                return Err(self.corrupt(item_at, "bad item length"));
            }
            prefix[prefix_len] = b;
            len |= u64::from(b & 0x7f) << (7 * prefix_len);
            prefix_len += 1;
            if b & 0x80 == 0 {
                break;
            }
        }
        if len > MAX_ITEM_BYTES as u64 {
            return Err(self.corrupt(item_at, "item length exceeds the limit"));
        }
        let len = len as usize;
        if self.arena.capacity() < len {
            self.arena = BytesMut::with_capacity(len.max(ARENA_BYTES));
        }
        // Copied straight from the read buffer: no zero-filling first.
        let mut missing = len;
        while missing > 0 {
            let chunk = match self.reader.fill_buf() {
                Ok([]) => return Err(self.corrupt(item_at, "truncated")),
                Ok(chunk) => chunk,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err("read", &self.path)(e)),
            };
            let n = chunk.len().min(missing);
            self.arena.extend_from_slice(&chunk[..n]);
            self.reader.consume(n);
            missing -= n;
        }
        let body = self.arena.split();
        self.crc = crc32c::crc32c_append(self.crc, &prefix[..prefix_len]);
        self.crc = crc32c::crc32c_append(self.crc, &body);
        self.offset += (prefix_len + body.len()) as u64;
        let decoded =
            pb::SnapItem::decode(Bytes::from(body)).map_err(|source| SnapshotError::Decode {
                path: self.path.clone(),
                offset: item_at,
                source,
            })?;
        let item = match decoded.item {
            Some(pb::snap_item::Item::Node(node)) => {
                self.counts.node_count += 1;
                SnapshotItem::Node(node)
            }
            Some(pb::snap_item::Item::Acl(acl)) => {
                self.counts.acl_count += 1;
                SnapshotItem::Acl(acl)
            }
            Some(pb::snap_item::Item::Session(session)) => {
                self.counts.session_count += 1;
                SnapshotItem::Session(session)
            }
            Some(pb::snap_item::Item::Trailer(trailer)) => {
                if trailer != self.counts {
                    return Err(self.corrupt(item_at, "trailer counts differ from the items"));
                }
                self.finish_footer()?;
                self.done = true;
                return Ok(None);
            }
            None => return Err(self.corrupt(item_at, "item of unknown kind")),
        };
        Ok(Some(item))
    }

    /// Checks the checksum and end magic after the trailer, and that nothing follows.
    fn finish_footer(&mut self) -> Result<(), SnapshotError> {
        let at = self.offset;
        let mut footer = [0u8; FOOTER_BYTES];
        read_exact_or_corrupt(&mut self.reader, &mut footer, &self.path, at)?;
        let mut crc = [0u8; 4];
        crc.copy_from_slice(&footer[0..4]);
        if footer[4..12] != FOOTER_MAGIC {
            return Err(self.corrupt(at, "bad footer magic"));
        }
        if u32::from_le_bytes(crc) != self.crc {
            return Err(self.corrupt(at, "checksum mismatch"));
        }
        if self.read_byte()?.is_some() {
            return Err(self.corrupt(at + FOOTER_BYTES as u64, "data after the footer"));
        }
        Ok(())
    }
}

fn read_exact_or_corrupt(
    reader: &mut impl Read,
    buf: &mut [u8],
    path: &Path,
    offset: u64,
) -> Result<(), SnapshotError> {
    reader.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            SnapshotError::Corrupt {
                path: path.to_path_buf(),
                offset,
                reason: "truncated",
            }
        } else {
            io_err("read", path)(e)
        }
    })
}

impl Iterator for SnapshotReader {
    type Item = Result<SnapshotItem, SnapshotError>;

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.next_item().transpose();
        if matches!(item, Some(Err(_))) {
            self.done = true;
        }
        item
    }
}

/// Reads a whole snapshot, checking everything; returns its header.
pub fn verify(path: &Path) -> Result<SnapshotHeader, SnapshotError> {
    let mut reader = SnapshotReader::open(path)?;
    while reader.next_item()?.is_some() {}
    Ok(reader.header())
}

fn list_entries(dir: &Path) -> Result<Vec<(i64, bool, PathBuf, u64)>, SnapshotError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        if let Some((zxid, tmp)) = entry.file_name().to_str().and_then(parse_snapshot_name) {
            let size = entry
                .metadata()
                .map_err(io_err("stat", &entry.path()))?
                .len();
            found.push((zxid, tmp, entry.path(), size));
        }
    }
    found.sort_by_key(|entry| std::cmp::Reverse(entry.0));
    Ok(found)
}

/// Snapshot files in `dir`, newest first (temporary files excluded, nothing verified).
pub fn list_snapshots(dir: &Path) -> Result<Vec<SnapshotInfo>, SnapshotError> {
    Ok(list_entries(dir)?
        .into_iter()
        .filter(|(_, tmp, _, _)| !tmp)
        .map(|(zxid, _, path, size_bytes)| SnapshotInfo {
            zxid,
            path,
            size_bytes,
        })
        .collect())
}

/// What [`purge`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeReport {
    pub removed: Vec<PathBuf>,
    /// Zxid of the oldest valid snapshot kept: the log must keep every record after it
    /// (`Wal::purge_before(zxid)`). `None` if no valid snapshot exists: purge no log.
    pub oldest_retained_zxid: Option<i64>,
}

/// Keeps the newest `retain_count` (at least 1) valid snapshots and removes every snapshot
/// older than the oldest of them, valid or not, and stale temporary files. Damaged snapshots
/// newer than that are kept for inspection. If fewer than `retain_count` valid snapshots
/// exist, nothing is removed.
pub fn purge(dir: &Path, retain_count: usize) -> Result<PurgeReport, SnapshotError> {
    let retain_count = retain_count.max(1);
    let entries = list_entries(dir)?;
    let mut valid = 0;
    let mut oldest_retained = None;
    for (zxid, tmp, path, _) in &entries {
        if *tmp {
            continue;
        }
        match verify(path) {
            Ok(_) => {
                valid += 1;
                oldest_retained = Some(*zxid);
                if valid == retain_count {
                    break;
                }
            }
            Err(error) => tracing::warn!(%error, "skipping an invalid snapshot"),
        }
    }
    let mut report = PurgeReport {
        removed: Vec::new(),
        oldest_retained_zxid: oldest_retained,
    };
    let Some(cutoff) = oldest_retained.filter(|_| valid == retain_count) else {
        return Ok(report);
    };
    for (zxid, _, path, _) in entries {
        // A temporary file newer than the cutoff may belong to a snapshot being written now.
        if zxid < cutoff {
            fs::remove_file(&path).map_err(io_err("remove", &path))?;
            report.removed.push(path);
        }
    }
    if !report.removed.is_empty() {
        sync_dir(dir).map_err(io_err("fsync directory", dir))?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(i: u64) -> SnapNode {
        SnapNode {
            path: if i == 0 {
                "/".into()
            } else {
                format!("/app/node-{i:05}")
            },
            data: Some(Bytes::from(vec![i as u8; (i % 50) as usize])),
            acl_index: i % 3,
            czxid: i as i64,
            mzxid: i as i64 * 2,
            ctime: 1_700_000_000_000 + i as i64,
            mtime: 1_700_000_000_500 + i as i64,
            version: (i % 7) as i32,
            cversion: (i % 11) as i32,
            aversion: 0,
            ephemeral_owner: if i % 10 == 0 { 0x1234 } else { 0 },
            pzxid: i as i64 * 3,
            num_children: 0,
        }
    }

    fn acl(index: u64) -> SnapAcl {
        SnapAcl {
            index,
            acls: vec![Acl {
                perms: 31,
                scheme: "world".into(),
                id: format!("anyone-{index}"),
            }],
        }
    }

    fn write_snapshot(dir: &Path, zxid: i64, nodes: u64) -> SnapshotInfo {
        let mut w = SnapshotWriter::create(dir, zxid, 1_700_000_000_000).unwrap();
        for i in 0..3 {
            w.write_acl(&acl(i)).unwrap();
        }
        for i in 0..nodes {
            w.write_node(&node(i)).unwrap();
        }
        w.write_session(&SnapSession {
            id: 0x1234,
            timeout_ms: 30_000,
        })
        .unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn round_trip_ten_thousand_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let info = write_snapshot(dir.path(), 0x1_0000_0042, 10_000);
        assert_eq!(info.path.file_name().unwrap(), "snapshot.0000000100000042");
        assert_eq!(fs::metadata(&info.path).unwrap().len(), info.size_bytes);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );

        let mut reader = SnapshotReader::open(&info.path).unwrap();
        assert_eq!(
            reader.header(),
            SnapshotHeader {
                zxid: 0x1_0000_0042,
                timestamp_ms: 1_700_000_000_000
            }
        );
        let items: Vec<SnapshotItem> = reader.by_ref().collect::<Result<_, _>>().unwrap();
        assert_eq!(items.len(), 3 + 10_000 + 1);
        for i in 0..3 {
            assert_eq!(items[i as usize], SnapshotItem::Acl(acl(i)));
        }
        for i in 0..10_000u64 {
            assert_eq!(items[3 + i as usize], SnapshotItem::Node(node(i)));
        }
        assert_eq!(
            items[10_003],
            SnapshotItem::Session(SnapSession {
                id: 0x1234,
                timeout_ms: 30_000
            })
        );
        assert!(reader.next().is_none());
        assert_eq!(verify(&info.path).unwrap().zxid, 0x1_0000_0042);
    }

    #[test]
    fn corrupt_or_truncated_snapshot_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let info = write_snapshot(dir.path(), 7, 200);
        let good = fs::read(&info.path).unwrap();
        let bad_path = dir.path().join("snapshot.0000000000000008");
        // A flipped bit anywhere (sampled), every truncation near the end, and a sample of
        // truncations elsewhere.
        for bit in (0..good.len() * 8).step_by(13) {
            let mut bad = good.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            fs::write(&bad_path, &bad).unwrap();
            assert!(verify(&bad_path).is_err(), "flipped bit {bit} not detected");
        }
        let tail = good.len() - 64;
        for len in (0..tail).step_by(97).chain(tail..good.len()) {
            fs::write(&bad_path, &good[..len]).unwrap();
            assert!(
                verify(&bad_path).is_err(),
                "truncation to {len} not detected"
            );
        }
        let mut longer = good.clone();
        longer.push(0);
        fs::write(&bad_path, &longer).unwrap();
        assert!(verify(&bad_path).is_err());
    }

    #[test]
    fn dropped_writer_leaves_no_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SnapshotWriter::create(dir.path(), 9, 0).unwrap();
        w.write_node(&node(1)).unwrap();
        drop(w);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(list_snapshots(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn list_newest_first_and_purge_keeps_newest_valid() {
        let dir = tempfile::tempdir().unwrap();
        for zxid in [5, 1, 30, 12, 20] {
            write_snapshot(dir.path(), zxid, 10);
        }
        // A stale temporary file from a crash, and a damaged newest snapshot.
        fs::write(dir.path().join("snapshot.0000000000000002.tmp"), b"partial").unwrap();
        let newest = write_snapshot(dir.path(), 40, 10);
        let mut bytes = fs::read(&newest.path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        fs::write(&newest.path, &bytes).unwrap();
        fs::write(dir.path().join("unrelated"), b"x").unwrap();

        let zxids: Vec<i64> = list_snapshots(dir.path())
            .unwrap()
            .iter()
            .map(|s| s.zxid)
            .collect();
        assert_eq!(zxids, vec![40, 30, 20, 12, 5, 1]);

        let report = purge(dir.path(), 3).unwrap();
        assert_eq!(report.oldest_retained_zxid, Some(12));
        assert_eq!(report.removed.len(), 3); // 5, 1 and the temporary file
        let zxids: Vec<i64> = list_snapshots(dir.path())
            .unwrap()
            .iter()
            .map(|s| s.zxid)
            .collect();
        assert_eq!(zxids, vec![40, 30, 20, 12]);
        assert!(dir.path().join("unrelated").exists());

        // Fewer valid snapshots than asked for: nothing goes.
        let report = purge(dir.path(), 10).unwrap();
        assert!(report.removed.is_empty());
        assert_eq!(report.oldest_retained_zxid, Some(12));
    }
}
