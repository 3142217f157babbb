//! The write-ahead transaction log: segment files of CRC-framed records, one per zxid.
//!
//! A client may be told its write succeeded only once the transaction is on disk, and a ZAB
//! follower may acknowledge a proposal only after the same. This module is that disk: an
//! append-only log of opaque payloads (already-encoded transactions), each tagged with its
//! zxid, strictly increasing. It is synchronous and single-owner on purpose: the group-commit
//! thread in [`super::writer`] owns it and decides when to call [`Wal::sync`].
//!
//! # On disk
//!
//! A directory of segments named by the zxid of their first record, 16 hex digits:
//! `log.0000000100000001`. Each segment is preallocated to `segment_size_bytes` (so appends
//! do not grow the file and a full disk shows up when a segment is created, not in the middle
//! of a batch), and a new one is started when the next record does not fit. All integers are
//! little-endian.
//!
//! ```text
//! segment header, 32 bytes:
//!   magic "CRLWAL\0\0" | version u32 | crc32c u32 | first_zxid u64 | prev_last_zxid u64
//!   (the crc covers the other 28 bytes; prev_last_zxid is the last zxid of the segment
//!   before this one when it was created, so a missing segment is detected as a gap)
//! record frame, 16 bytes + payload:
//!   len u32 (payload bytes) | crc32c u32 (over zxid and payload) | zxid u64 | payload
//! after the last record: zeros (preallocated space) up to the end of the file
//! ```
//!
//! # Durability rules
//!
//! - `append` only buffers; [`Wal::sync`] writes the buffer and calls fdatasync. What was
//!   appended before a successful `sync` survives a crash.
//! - Before a new segment is created, the full one is fdatasync'd; the new one gets its header
//!   fsync'd and then its directory fsync'd. So only the last segment can end in a torn write.
//! - After any I/O error the `Wal` is poisoned and refuses further writes: after a failed
//!   fsync the state of the page cache is unknown, so nothing more may be acknowledged.
//!
//! # Recovery ([`Wal::open`])
//!
//! Segments are scanned in order and every frame is checked. The end of the records is an
//! all-zero frame header followed only by zeros, or the end of the file. In the LAST segment
//! a torn final write is cut off (with a `tracing::warn!`): a frame cut short by the end of
//! the file, or one whose checksum fails because its tail from a 512-byte sector boundary on
//! is still zeros, provided no valid record follows it. Anything else — a bad checksum with
//! valid records after it, garbage after the zeros, a bad header, a non-increasing zxid, a
//! gap between segments, damage in any segment but the last — is a [`WalError::Corrupt`]
//! naming the file and byte offset: the log never drops acknowledged data silently.
//! [`WalOptions::repair`] turns every damaged last-segment tail into a truncation, for an
//! operator who has decided to accept the loss.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::atomic::sync_dir;

/// First bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"CRLWAL\0\0";
/// Segment format version written by this code.
pub const SEGMENT_VERSION: u32 = 1;
/// Bytes of the segment header; the first record starts here.
pub const SEGMENT_HEADER_BYTES: u64 = 32;
/// Bytes of a record frame before its payload.
pub const FRAME_HEADER_BYTES: usize = 16;
/// Default size a segment is preallocated to and rolled at.
pub const DEFAULT_SEGMENT_SIZE_BYTES: u64 = 64 << 20;
/// Default limit on one payload; a larger length in a frame header is corruption.
pub const DEFAULT_MAX_RECORD_BYTES: u32 = 16 << 20;
/// File name prefix of segments.
pub const SEGMENT_PREFIX: &str = "log.";

/// Granularity at which a torn write leaves zeros (a disk sector; pages are multiples).
const SECTOR_BYTES: u64 = 512;
/// Appends are written to the file once this much is buffered, even before `sync`.
const WRITE_BUFFER_FLUSH_BYTES: usize = 1 << 20;

/// Tuning of a [`Wal`].
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// A segment is preallocated to this size and rolled when the next record does not fit.
    pub segment_size_bytes: u64,
    /// Largest payload accepted by `append`, and largest length believed when reading.
    pub max_record_bytes: u32,
    /// Preallocate segments (fallocate, falling back to `set_len`).
    pub preallocate: bool,
    /// Truncate any damaged tail of the last segment instead of refusing to open. Loses data
    /// that may have been acknowledged: for an operator's explicit repair only.
    pub repair: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        Self {
            segment_size_bytes: DEFAULT_SEGMENT_SIZE_BYTES,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            preallocate: true,
            repair: false,
        }
    }
}

/// What is wrong at a given place in a segment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorruptKind {
    #[error("bad segment header: {0}")]
    BadHeader(&'static str),
    #[error("record checksum mismatch")]
    BadCrc,
    #[error("record length {0} exceeds the limit")]
    BadLength(u32),
    #[error("record cut short by the end of the file")]
    Truncated,
    #[error("zxid {found:#x} does not follow {prev:#x}")]
    ZxidNotIncreasing { prev: i64, found: i64 },
    #[error("first record has zxid {found:#x}, the segment header says {expected:#x}")]
    FirstZxidMismatch { expected: i64, found: i64 },
    #[error("non-zero bytes after the end of the records")]
    TrailingData,
    #[error("segment holds no records but is not the last one")]
    EmptySegment,
    #[error("gap: segment follows zxid {header_prev:#x} but the previous segment ends at {previous_last:#x}")]
    Gap {
        header_prev: i64,
        previous_last: i64,
    },
}

/// Errors of the write-ahead log.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("corrupt write-ahead log {path} at byte {offset}: {kind}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        kind: CorruptKind,
    },
    #[error("zxid {zxid:#x} does not follow the last logged zxid {last:#x}")]
    ZxidNotIncreasing { zxid: i64, last: i64 },
    #[error("record of {len} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge { len: usize, max: u32 },
    #[error(
        "zxid {zxid:#x} is no longer in the log: it holds only records after {retained_after:#x}"
    )]
    NotRetained { zxid: i64, retained_after: i64 },
    #[error("the write-ahead log failed earlier and accepts no more writes")]
    Poisoned,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> WalError + 'a {
    move |source| WalError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(path: &Path, offset: u64, kind: CorruptKind) -> WalError {
    WalError::Corrupt {
        path: path.to_path_buf(),
        offset,
        kind,
    }
}

/// One segment as seen by [`Wal::segments`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Zxid of the first record (also the file name).
    pub first_zxid: i64,
    /// Zxid of the last record appended to it.
    pub last_zxid: i64,
    pub path: PathBuf,
    /// Bytes of header and records (not counting preallocated space).
    pub size_bytes: u64,
}

/// A torn final write cut off by [`Wal::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub path: PathBuf,
    /// Where the records now end.
    pub offset: u64,
    /// Non-zero bytes that were discarded.
    pub discarded_bytes: u64,
    pub kind: CorruptKind,
}

/// What [`Wal::open`] found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments: usize,
    pub records: u64,
    /// Zxid of the last record, 0 if the log is empty.
    pub last_zxid: i64,
    pub torn_tail: Option<TornTail>,
    /// Last segments removed because they held no record (created just before a crash).
    pub removed_segments: Vec<PathBuf>,
}

/// The write-ahead log. See the module documentation for the format and the rules.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    opts: WalOptions,
    /// Oldest first; the last one is the active segment.
    segments: Vec<Segment>,
    /// Open handle on the last segment.
    active: Option<File>,
    /// Appended frames not yet written to the active segment; reused, never shrunk.
    buf: Vec<u8>,
    /// Offset in the active segment at which `buf` starts.
    buf_offset: u64,
    /// Data written to the file since the last fdatasync.
    unsynced: bool,
    last_zxid: i64,
    /// The log holds every record after this zxid (prev_last_zxid of the first segment).
    retained_after: i64,
    poisoned: bool,
}

#[derive(Debug, Clone)]
struct Segment {
    first_zxid: i64,
    last_zxid: i64,
    prev_last_zxid: i64,
    path: PathBuf,
    /// End of header and appended records, including those still buffered.
    end_offset: u64,
}

impl Segment {
    fn info(&self) -> SegmentInfo {
        SegmentInfo {
            first_zxid: self.first_zxid,
            last_zxid: self.last_zxid,
            path: self.path.clone(),
            size_bytes: self.end_offset,
        }
    }
}

/// Path of the segment whose first record is `first_zxid`.
pub fn segment_path(dir: &Path, first_zxid: i64) -> PathBuf {
    dir.join(format!("{SEGMENT_PREFIX}{:016x}", first_zxid as u64))
}

/// Parses a segment file name, `None` for other files.
fn parse_segment_name(name: &str) -> Option<i64> {
    let hex = name.strip_prefix(SEGMENT_PREFIX)?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok().map(|z| z as i64)
}

/// Segment files in `dir`, oldest first.
fn list_segment_files(dir: &Path) -> Result<Vec<(i64, PathBuf)>, WalError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        if let Some(zxid) = entry.file_name().to_str().and_then(parse_segment_name) {
            found.push((zxid, entry.path()));
        }
    }
    found.sort_by_key(|(zxid, _)| *zxid);
    Ok(found)
}

/// Segment files in `dir` as `(first zxid, path)`, oldest first, judged by name only (nothing
/// is opened). For tools that must not take the directory lock, such as purging beside a
/// running server.
pub fn list_segments(dir: &Path) -> Result<Vec<(i64, PathBuf)>, WalError> {
    list_segment_files(dir)
}

fn encode_header(first_zxid: i64, prev_last_zxid: i64) -> [u8; SEGMENT_HEADER_BYTES as usize] {
    let mut h = [0u8; SEGMENT_HEADER_BYTES as usize];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&first_zxid.to_le_bytes());
    h[24..32].copy_from_slice(&prev_last_zxid.to_le_bytes());
    let crc = header_crc(&h);
    h[12..16].copy_from_slice(&crc.to_le_bytes());
    h
}

fn header_crc(h: &[u8; SEGMENT_HEADER_BYTES as usize]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&h[0..12]), &h[16..32])
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn le_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_le_bytes(a)
}

/// Decodes a segment header: `(first_zxid, prev_last_zxid)`.
fn decode_header(h: &[u8; SEGMENT_HEADER_BYTES as usize]) -> Result<(i64, i64), CorruptKind> {
    if h[0..8] != SEGMENT_MAGIC {
        return Err(CorruptKind::BadHeader("bad magic"));
    }
    if le_u32(h, 12) != header_crc(h) {
        return Err(CorruptKind::BadHeader("checksum mismatch"));
    }
    if le_u32(h, 8) != SEGMENT_VERSION {
        return Err(CorruptKind::BadHeader("unsupported version"));
    }
    let first = le_i64(h, 16);
    let prev = le_i64(h, 24);
    if first <= 0 || prev < 0 || first <= prev {
        return Err(CorruptKind::BadHeader("impossible zxids"));
    }
    Ok((first, prev))
}

/// Appends one frame to `buf`. The checksum covers the zxid and the payload.
fn encode_frame(buf: &mut Vec<u8>, zxid: i64, payload: &[u8]) {
    let zxid_bytes = zxid.to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&zxid_bytes), payload);
    // The caller checked payload.len() <= max_record_bytes (a u32).
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&crc.to_le_bytes());
    buf.extend_from_slice(&zxid_bytes);
    buf.extend_from_slice(payload);
}

/// Whether a valid frame with a zxid above `after_zxid` starts anywhere in `bytes` past its
/// first byte. Used only on the error path, to tell a torn tail from damage in the middle.
fn contains_valid_frame(bytes: &[u8], after_zxid: i64, max_record_bytes: u32) -> bool {
    let h = FRAME_HEADER_BYTES;
    if bytes.len() <= h {
        return false;
    }
    (1..=bytes.len() - h).any(|p| {
        let len = le_u32(bytes, p);
        let zxid = le_i64(bytes, p + 8);
        if len > max_record_bytes || zxid <= after_zxid || p + h + len as usize > bytes.len() {
            return false;
        }
        let payload = &bytes[p + h..p + h + len as usize];
        let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes[p + 8..p + 16]), payload);
        crc == le_u32(bytes, p + 4)
    })
}

/// One step of reading frames from a segment.
enum Frame {
    /// A valid record; its payload is in the caller's buffer.
    Record { zxid: i64 },
    /// The end of the readable range.
    End,
    /// An all-zero frame header (or all-zero bytes up to the end): the records end here if
    /// only zeros follow.
    Zeros,
    /// Not a valid frame. `claimed_end` is where the frame would have ended.
    Invalid { kind: CorruptKind, claimed_end: u64 },
}

/// Sequential reader of frames in one segment, up to `end`.
struct FrameCursor {
    reader: BufReader<File>,
    offset: u64,
    end: u64,
    max_record_bytes: u32,
}

impl FrameCursor {
    fn new(file: File, offset: u64, end: u64, max_record_bytes: u32) -> io::Result<Self> {
        let mut reader = BufReader::with_capacity(256 << 10, file);
        io::Seek::seek(&mut reader, io::SeekFrom::Start(offset))?;
        Ok(Self {
            reader,
            offset,
            end,
            max_record_bytes,
        })
    }

    /// Reads the frame at `self.offset`, advancing past it only if it is a valid record.
    fn next(&mut self, payload: &mut Vec<u8>) -> io::Result<Frame> {
        let remaining = self.end - self.offset;
        if remaining == 0 {
            return Ok(Frame::End);
        }
        let mut header = [0u8; FRAME_HEADER_BYTES];
        if remaining < FRAME_HEADER_BYTES as u64 {
            let part = &mut header[..remaining as usize];
            self.reader.read_exact(part)?;
            return Ok(if part.iter().all(|&b| b == 0) {
                Frame::Zeros
            } else {
                Frame::Invalid {
                    kind: CorruptKind::Truncated,
                    claimed_end: u64::MAX,
                }
            });
        }
        self.reader.read_exact(&mut header)?;
        if header.iter().all(|&b| b == 0) {
            return Ok(Frame::Zeros);
        }
        let len = le_u32(&header, 0);
        let crc = le_u32(&header, 4);
        let zxid = le_i64(&header, 8);
        let body_start = self.offset + FRAME_HEADER_BYTES as u64;
        if len > self.max_record_bytes {
            return Ok(Frame::Invalid {
                kind: CorruptKind::BadLength(len),
                claimed_end: body_start,
            });
        }
        let claimed_end = body_start + u64::from(len);
        if claimed_end > self.end {
            return Ok(Frame::Invalid {
                kind: CorruptKind::Truncated,
                claimed_end,
            });
        }
        payload.clear();
        payload.resize(len as usize, 0);
        self.reader.read_exact(payload)?;
        if crc32c::crc32c_append(crc32c::crc32c(&header[8..16]), payload) != crc {
            return Ok(Frame::Invalid {
                kind: CorruptKind::BadCrc,
                claimed_end,
            });
        }
        self.offset = claimed_end;
        Ok(Frame::Record { zxid })
    }
}

/// Result of scanning one segment file without changing it.
#[derive(Debug)]
struct ScannedSegment {
    segment: Segment,
    records: u64,
    torn_tail: Option<TornTail>,
}

/// How a segment's scan ended.
enum ScanOutcome {
    Segment(ScannedSegment),
    /// The last segment's header was never completely written (crash while creating it).
    TornCreation,
}

/// Offset where the all-zero suffix of `file` (from `from` to `len`) starts.
fn zero_suffix_start(file: &File, from: u64, len: u64) -> io::Result<u64> {
    let mut chunk = vec![0u8; 1 << 20];
    let mut pos = from;
    let mut suffix = from;
    while pos < len {
        let n = (len - pos).min(chunk.len() as u64) as usize;
        file.read_exact_at(&mut chunk[..n], pos)?;
        // The common case is a whole chunk of preallocated zeros: an OR over the chunk has no
        // early exit and vectorises, so check that before looking for the last non-zero byte.
        let all_zero = chunk[..n].iter().fold(0u8, |acc, &b| acc | b) == 0;
        if !all_zero {
            if let Some(i) = chunk[..n].iter().rposition(|&b| b != 0) {
                suffix = pos + i as u64 + 1;
            }
        }
        pos += n as u64;
    }
    Ok(suffix)
}

/// Scans one segment, checking every frame. Does not modify anything.
fn scan_segment(
    path: &Path,
    name_zxid: i64,
    is_last: bool,
    opts: &WalOptions,
) -> Result<ScanOutcome, WalError> {
    let file = File::open(path).map_err(io_err("open", path))?;
    let file_len = file.metadata().map_err(io_err("stat", path))?.len();
    let read_err = io_err("read", path);

    let mut header = [0u8; SEGMENT_HEADER_BYTES as usize];
    let header_result = if file_len < SEGMENT_HEADER_BYTES {
        Err(CorruptKind::BadHeader("file shorter than the header"))
    } else {
        file.read_exact_at(&mut header, 0).map_err(read_err)?;
        decode_header(&header).and_then(|(first, prev)| {
            if first == name_zxid {
                Ok((first, prev))
            } else {
                Err(CorruptKind::BadHeader(
                    "first zxid differs from the file name",
                ))
            }
        })
    };
    let (first_zxid, prev_last_zxid) = match header_result {
        Ok(h) => h,
        Err(kind) => {
            // A crash between creating the file and making its header durable leaves a
            // short or partly written header and nothing after it; no record in it was ever
            // acknowledged, because records are synced after the header.
            let nothing_after = file_len <= SEGMENT_HEADER_BYTES
                || zero_suffix_start(&file, SEGMENT_HEADER_BYTES, file_len)
                    .map_err(io_err("read", path))?
                    == SEGMENT_HEADER_BYTES;
            if is_last && nothing_after {
                return Ok(ScanOutcome::TornCreation);
            }
            return Err(corrupt(path, 0, kind));
        }
    };

    let mut cursor = FrameCursor::new(
        file.try_clone().map_err(io_err("open", path))?,
        SEGMENT_HEADER_BYTES,
        file_len,
        opts.max_record_bytes,
    )
    .map_err(io_err("read", path))?;
    let mut payload = Vec::new();
    let mut last_zxid = prev_last_zxid;
    let mut records = 0u64;
    let mut torn_tail = None;
    loop {
        let at = cursor.offset;
        let frame = cursor.next(&mut payload).map_err(io_err("read", path))?;
        let (kind, claimed_end) = match frame {
            Frame::Record { zxid } => {
                if records == 0 && zxid != first_zxid {
                    return Err(corrupt(
                        path,
                        at,
                        CorruptKind::FirstZxidMismatch {
                            expected: first_zxid,
                            found: zxid,
                        },
                    ));
                }
                if zxid <= last_zxid {
                    return Err(corrupt(
                        path,
                        at,
                        CorruptKind::ZxidNotIncreasing {
                            prev: last_zxid,
                            found: zxid,
                        },
                    ));
                }
                last_zxid = zxid;
                records += 1;
                continue;
            }
            Frame::End => break,
            Frame::Zeros => (CorruptKind::TrailingData, at + FRAME_HEADER_BYTES as u64),
            Frame::Invalid { kind, claimed_end } => (kind, claimed_end),
        };
        // Not a record at `at`: either the clean end, a torn tail, or corruption.
        let zero_from = zero_suffix_start(&file, at, file_len).map_err(io_err("read", path))?;
        if zero_from == at {
            break; // only zeros from here on: the clean end of the records
        }
        let torn = is_last
            && (opts.repair || {
                let cut_by_eof = kind == CorruptKind::Truncated;
                let zero_sector_tail = kind != CorruptKind::TrailingData
                    && zero_from.next_multiple_of(SECTOR_BYTES) < claimed_end;
                (cut_by_eof || zero_sector_tail) && {
                    let mut rest = vec![0u8; (zero_from - at) as usize];
                    file.read_exact_at(&mut rest, at)
                        .map_err(io_err("read", path))?;
                    !contains_valid_frame(&rest, last_zxid, opts.max_record_bytes)
                }
            });
        if !torn {
            return Err(corrupt(path, at, kind));
        }
        torn_tail = Some(TornTail {
            path: path.to_path_buf(),
            offset: at,
            discarded_bytes: zero_from - at,
            kind,
        });
        break;
    }
    if records == 0 && !is_last {
        return Err(corrupt(
            path,
            SEGMENT_HEADER_BYTES,
            CorruptKind::EmptySegment,
        ));
    }
    Ok(ScanOutcome::Segment(ScannedSegment {
        segment: Segment {
            first_zxid,
            last_zxid,
            prev_last_zxid,
            path: path.to_path_buf(),
            end_offset: cursor.offset,
        },
        records,
        torn_tail,
    }))
}

/// Reserves `len` bytes for `file` so later writes do not allocate (and a full disk fails
/// here). Falls back to a sparse `set_len` where fallocate is unsupported.
fn preallocate(file: &File, len: u64) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let Ok(off_len) = libc::off_t::try_from(len) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "segment too large",
            ));
        };
        // SAFETY: fallocate only reads its integer arguments; the descriptor is owned by
        // `file`, which outlives the call.
        let ret = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, off_len) };
        if ret == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) | Some(libc::EINVAL) => {}
            _ => return Err(err),
        }
    }
    if file.metadata()?.len() < len {
        file.set_len(len)?;
    }
    Ok(())
}

/// Scans every segment of `dir` without changing anything: the segments that hold records
/// and what `open` would repair.
fn scan_dir(dir: &Path, opts: &WalOptions) -> Result<(Vec<Segment>, RecoveryReport), WalError> {
    let files = list_segment_files(dir)?;
    let mut report = RecoveryReport::default();
    let mut segments: Vec<Segment> = Vec::with_capacity(files.len());
    let count = files.len();
    for (i, (name_zxid, path)) in files.iter().enumerate() {
        let is_last = i + 1 == count;
        match scan_segment(path, *name_zxid, is_last, opts)? {
            ScanOutcome::TornCreation => report.removed_segments.push(path.clone()),
            ScanOutcome::Segment(scanned) => {
                if let Some(prev) = segments.last() {
                    if scanned.segment.prev_last_zxid != prev.last_zxid {
                        return Err(corrupt(
                            path,
                            0,
                            CorruptKind::Gap {
                                header_prev: scanned.segment.prev_last_zxid,
                                previous_last: prev.last_zxid,
                            },
                        ));
                    }
                }
                if scanned.records == 0 {
                    // Only the last segment can be empty (checked by the scan).
                    report.removed_segments.push(path.clone());
                    continue;
                }
                report.records += scanned.records;
                report.torn_tail = scanned.torn_tail;
                segments.push(scanned.segment);
            }
        }
    }
    report.segments = segments.len();
    report.last_zxid = segments.last().map_or(0, |s| s.last_zxid);
    Ok((segments, report))
}

/// Checks the log in `dir` like [`Wal::open`] but changes nothing; the segments returned can
/// be read with [`WalReader::new`]. With `opts.repair`, a damaged tail of the last segment is
/// reported instead of failing, which suits reading a log that another thread is writing.
pub fn inspect(
    dir: &Path,
    opts: &WalOptions,
) -> Result<(RecoveryReport, Vec<SegmentInfo>), WalError> {
    let (segments, report) = scan_dir(dir, opts)?;
    Ok((report, segments.iter().map(Segment::info).collect()))
}

impl Wal {
    /// Opens (creating if needed) the log in `dir`, checks every segment, cuts off a torn
    /// final write, removes a last segment that never received a record, and fdatasyncs the
    /// last segment so that everything reported is durable.
    ///
    /// An empty log reports last zxid 0 and claims every record after 0: a server whose
    /// state comes from a snapshot at `Z` and whose log is empty calls
    /// [`reset_after(Z)`](Self::reset_after) before appending.
    pub fn open(dir: &Path, opts: WalOptions) -> Result<(Wal, RecoveryReport), WalError> {
        fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
        let (segments, report) = scan_dir(dir, &opts)?;
        let torn_tail = report.torn_tail.clone();
        for path in &report.removed_segments {
            tracing::warn!(path = %path.display(), "removing a last log segment that never received a record");
        }
        for path in &report.removed_segments {
            fs::remove_file(path).map_err(io_err("remove", path))?;
        }
        if !report.removed_segments.is_empty() {
            sync_dir(dir).map_err(io_err("fsync directory", dir))?;
        }

        let active = match segments.last() {
            Some(last) => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&last.path)
                    .map_err(io_err("open", &last.path))?;
                if let Some(torn) = &torn_tail {
                    tracing::warn!(
                        path = %torn.path.display(),
                        offset = torn.offset,
                        discarded_bytes = torn.discarded_bytes,
                        kind = %torn.kind,
                        "truncating a torn write at the end of the log"
                    );
                    // Drop the torn bytes, then restore zeroed preallocated space after them.
                    file.set_len(torn.offset)
                        .map_err(io_err("truncate", &last.path))?;
                    if opts.preallocate {
                        preallocate(&file, opts.segment_size_bytes)
                            .map_err(io_err("preallocate", &last.path))?;
                    }
                    file.sync_all().map_err(io_err("fsync", &last.path))?;
                } else {
                    // After a crash of the process alone, records it wrote but never synced
                    // are still in the page cache and read back as valid. Everything recovery
                    // reports is treated as durable from now on, so make it so.
                    file.sync_data().map_err(io_err("fdatasync", &last.path))?;
                }
                Some(file)
            }
            None => None,
        };
        let last_zxid = report.last_zxid;
        let buf_offset = segments.last().map_or(0, |s| s.end_offset);
        let retained_after = segments.first().map_or(0, |s| s.prev_last_zxid);
        let wal = Wal {
            dir: dir.to_path_buf(),
            opts,
            segments,
            active,
            buf: Vec::with_capacity(WRITE_BUFFER_FLUSH_BYTES + 64 * 1024),
            buf_offset,
            unsynced: false,
            last_zxid,
            retained_after,
            poisoned: false,
        };
        Ok((wal, report))
    }

    /// The directory of the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Zxid of the last appended record (durable or not), 0 if the log is empty.
    pub fn last_zxid(&self) -> i64 {
        self.last_zxid
    }

    /// Zxid of the oldest record still in the log, if any.
    pub fn first_zxid(&self) -> Option<i64> {
        self.segments.first().map(|s| s.first_zxid)
    }

    /// The log holds every record with a zxid above this one (older ones were purged).
    pub fn retained_after(&self) -> i64 {
        self.retained_after
    }

    /// The segments, oldest first.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        self.segments.iter().map(Segment::info).collect()
    }

    /// Whether an earlier I/O error stopped the log.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    fn check_usable(&self) -> Result<(), WalError> {
        if self.poisoned {
            Err(WalError::Poisoned)
        } else {
            Ok(())
        }
    }

    /// Runs `f`, poisoning the log if it fails: after a failed write or fsync nothing more
    /// may be acknowledged.
    fn poison_on_err<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, WalError>,
    ) -> Result<T, WalError> {
        let result = f(self);
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    /// Buffers one record. It is durable only after the next successful [`Wal::sync`].
    ///
    /// Fails without side effects if `zxid` does not exceed [`Wal::last_zxid`] or the payload
    /// is larger than `max_record_bytes`; an I/O error (while rolling to a new segment or
    /// writing a full buffer) poisons the log.
    pub fn append(&mut self, zxid: i64, payload: &[u8]) -> Result<(), WalError> {
        self.check_usable()?;
        if zxid <= self.last_zxid || zxid <= 0 {
            return Err(WalError::ZxidNotIncreasing {
                zxid,
                last: self.last_zxid,
            });
        }
        if payload.len() > self.opts.max_record_bytes as usize {
            return Err(WalError::RecordTooLarge {
                len: payload.len(),
                max: self.opts.max_record_bytes,
            });
        }
        let frame_bytes = (FRAME_HEADER_BYTES + payload.len()) as u64;
        self.poison_on_err(|wal| {
            let needs_segment = match wal.segments.last() {
                None => true,
                Some(seg) => {
                    wal.active.is_none()
                        || seg.end_offset + frame_bytes > wal.opts.segment_size_bytes
                }
            };
            if needs_segment {
                wal.roll(zxid)?;
            }
            encode_frame(&mut wal.buf, zxid, payload);
            if let Some(seg) = wal.segments.last_mut() {
                seg.end_offset += frame_bytes;
                seg.last_zxid = zxid;
            }
            wal.last_zxid = zxid;
            if wal.buf.len() >= WRITE_BUFFER_FLUSH_BYTES {
                wal.flush_buf()?;
            }
            Ok(())
        })
    }

    /// Writes buffered frames to the active segment (no fsync).
    fn flush_buf(&mut self) -> Result<(), WalError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let (Some(file), Some(seg)) = (&self.active, self.segments.last()) else {
            // Frames are only buffered once a segment exists.
            return Err(WalError::Poisoned);
        };
        file.write_all_at(&self.buf, self.buf_offset)
            .map_err(io_err("write", &seg.path))?;
        self.buf_offset += self.buf.len() as u64;
        self.buf.clear();
        self.unsynced = true;
        Ok(())
    }

    /// Makes everything appended so far durable: writes the buffer and calls fdatasync on the
    /// active segment. When this returns `Ok`, every appended record survives a crash.
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.check_usable()?;
        self.poison_on_err(|wal| {
            wal.flush_buf()?;
            if wal.unsynced {
                if let (Some(file), Some(seg)) = (&wal.active, wal.segments.last()) {
                    file.sync_data().map_err(io_err("fdatasync", &seg.path))?;
                }
                wal.unsynced = false;
            }
            Ok(())
        })
    }

    /// Closes the active segment durably and starts a new one whose first record is
    /// `first_zxid`.
    fn roll(&mut self, first_zxid: i64) -> Result<(), WalError> {
        // The full segment is made durable first, so that only the last segment of the log
        // can ever end in a torn write.
        if self.active.is_some() {
            self.flush_buf()?;
            if self.unsynced {
                if let (Some(file), Some(seg)) = (&self.active, self.segments.last()) {
                    file.sync_data().map_err(io_err("fdatasync", &seg.path))?;
                }
                self.unsynced = false;
            }
        }
        let path = segment_path(&self.dir, first_zxid);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err("create", &path))?;
        if self.opts.preallocate {
            preallocate(&file, self.opts.segment_size_bytes)
                .map_err(io_err("preallocate", &path))?;
        }
        file.write_all_at(&encode_header(first_zxid, self.last_zxid), 0)
            .map_err(io_err("write", &path))?;
        file.sync_all().map_err(io_err("fsync", &path))?;
        sync_dir(&self.dir).map_err(io_err("fsync directory", &self.dir))?;
        if self.segments.is_empty() {
            self.retained_after = self.last_zxid;
        }
        self.segments.push(Segment {
            first_zxid,
            last_zxid: self.last_zxid,
            prev_last_zxid: self.last_zxid,
            path,
            end_offset: SEGMENT_HEADER_BYTES,
        });
        self.active = Some(file);
        self.buf_offset = SEGMENT_HEADER_BYTES;
        Ok(())
    }

    /// Reads the records with zxid `>= from_zxid`, in order, up to what was appended when
    /// this was called (buffered records are written to the file first, not synced).
    ///
    /// Fails with [`WalError::NotRetained`] if records at or after `from_zxid` may have been
    /// purged. The reader is independent of the `Wal`: it sees a segment removed by a later
    /// purge as an I/O error.
    pub fn read_from(&mut self, from_zxid: i64) -> Result<WalReader, WalError> {
        self.check_usable()?;
        self.poison_on_err(Self::flush_buf)?;
        if from_zxid <= self.retained_after {
            return Err(WalError::NotRetained {
                zxid: from_zxid,
                retained_after: self.retained_after,
            });
        }
        let segments = self
            .segments
            .iter()
            .filter(|s| s.last_zxid >= from_zxid)
            .map(Segment::info)
            .collect();
        Ok(WalReader::new(
            segments,
            from_zxid,
            self.opts.max_record_bytes,
        ))
    }

    /// Drops every record with a zxid above `zxid` (a follower told to truncate by its
    /// leader) and makes that durable. Returns the new last zxid.
    ///
    /// Later segments are removed newest first, each removal made durable before the next, so
    /// a crash part-way leaves a consistent shorter log that a retry truncates further.
    pub fn truncate_after(&mut self, zxid: i64) -> Result<i64, WalError> {
        self.check_usable()?;
        if zxid >= self.last_zxid {
            return Ok(self.last_zxid);
        }
        if zxid < self.retained_after {
            return Err(WalError::NotRetained {
                zxid,
                retained_after: self.retained_after,
            });
        }
        self.poison_on_err(|wal| {
            wal.flush_buf()?;
            // Segments whose first record is after `zxid` go entirely.
            while let Some(seg) = wal.segments.last() {
                if seg.first_zxid <= zxid {
                    break;
                }
                let path = seg.path.clone();
                wal.active = None;
                fs::remove_file(&path).map_err(io_err("remove", &path))?;
                sync_dir(&wal.dir).map_err(io_err("fsync directory", &wal.dir))?;
                wal.segments.pop();
            }
            let Some(seg) = wal.segments.last_mut() else {
                wal.last_zxid = wal.retained_after;
                wal.unsynced = false;
                return Ok(wal.last_zxid);
            };
            // Find where the first record after `zxid` starts in the remaining segment.
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&seg.path)
                .map_err(io_err("open", &seg.path))?;
            let mut cursor = FrameCursor::new(
                file.try_clone().map_err(io_err("open", &seg.path))?,
                SEGMENT_HEADER_BYTES,
                seg.end_offset,
                wal.opts.max_record_bytes,
            )
            .map_err(io_err("read", &seg.path))?;
            let mut payload = Vec::new();
            let mut kept_last = seg.prev_last_zxid;
            loop {
                let at = cursor.offset;
                match cursor
                    .next(&mut payload)
                    .map_err(io_err("read", &seg.path))?
                {
                    Frame::Record { zxid: z } if z <= zxid => kept_last = z,
                    Frame::Record { .. } | Frame::End => {
                        cursor.offset = at;
                        break;
                    }
                    Frame::Zeros => return Err(corrupt(&seg.path, at, CorruptKind::TrailingData)),
                    Frame::Invalid { kind, .. } => return Err(corrupt(&seg.path, at, kind)),
                }
            }
            let cut = cursor.offset;
            file.set_len(cut).map_err(io_err("truncate", &seg.path))?;
            if wal.opts.preallocate {
                preallocate(&file, wal.opts.segment_size_bytes)
                    .map_err(io_err("preallocate", &seg.path))?;
            }
            file.sync_all().map_err(io_err("fsync", &seg.path))?;
            seg.end_offset = cut;
            seg.last_zxid = kept_last;
            wal.buf_offset = cut;
            wal.active = Some(file);
            wal.unsynced = false;
            wal.last_zxid = kept_last;
            Ok(kept_last)
        })
    }

    /// Discards the whole log and continues after `zxid`: the next record must exceed it,
    /// and the log will claim to hold every record after it. For a server whose state
    /// comes from a snapshot at `zxid` (a follower sent a full snapshot, or a log that is
    /// empty next to a snapshot) so the log never claims records that it does not have.
    /// Segments are removed newest first, each removal durable before the next.
    pub fn reset_after(&mut self, zxid: i64) -> Result<(), WalError> {
        self.check_usable()?;
        if zxid < 0 {
            return Err(WalError::ZxidNotIncreasing {
                zxid,
                last: self.last_zxid,
            });
        }
        self.poison_on_err(|wal| {
            wal.buf.clear();
            wal.active = None;
            wal.unsynced = false;
            while let Some(seg) = wal.segments.last() {
                let path = seg.path.clone();
                fs::remove_file(&path).map_err(io_err("remove", &path))?;
                wal.segments.pop();
                sync_dir(&wal.dir).map_err(io_err("fsync directory", &wal.dir))?;
            }
            wal.last_zxid = zxid;
            wal.retained_after = zxid;
            Ok(())
        })
    }

    /// Deletes whole segments that come before the segment holding `zxid`, so that every
    /// record after a snapshot at `zxid` is kept. The active segment is never deleted.
    /// Returns the paths removed, oldest first.
    pub fn purge_before(&mut self, zxid: i64) -> Result<Vec<PathBuf>, WalError> {
        self.check_usable()?;
        let Some(keep_from) = self.segments.iter().rposition(|s| s.first_zxid <= zxid) else {
            return Ok(Vec::new());
        };
        let mut removed = Vec::with_capacity(keep_from);
        // Oldest first, each removal durable before the next: a crash leaves a suffix of the
        // log with no gap in it. The in-memory list follows the disk one file at a time.
        for _ in 0..keep_from {
            let path = self.segments[0].path.clone();
            fs::remove_file(&path).map_err(io_err("remove", &path))?;
            self.segments.remove(0);
            self.retained_after = self.segments[0].prev_last_zxid;
            sync_dir(&self.dir).map_err(io_err("fsync directory", &self.dir))?;
            removed.push(path);
        }
        Ok(removed)
    }
}

/// Iterator over `(zxid, payload)` records of a range of segments, checking every frame.
///
/// Made by [`Wal::read_from`] (exact bounds known to the owner of the `Wal`), by
/// [`WalReader::new`] from a list of [`SegmentInfo`]s, or by [`WalReader::open_dir`], which
/// needs no `Wal` at all: the leader uses it to send a follower the committed records while
/// the writer thread keeps appending to the same files.
pub struct WalReader {
    segments: std::vec::IntoIter<SegmentInfo>,
    current: Option<(SegmentInfo, FrameCursor)>,
    from_zxid: i64,
    /// Stop after this zxid without reading further (bytes beyond may be mid-write).
    up_to_zxid: i64,
    /// An all-zero frame header ends the segment (preallocated space) instead of being an
    /// error; set when segment sizes are file lengths rather than known record ends.
    zeros_end_segment: bool,
    last_zxid: i64,
    max_record_bytes: u32,
    failed: bool,
}

impl WalReader {
    /// Reads records with zxid `>= from_zxid` from `segments` (oldest first), each up to its
    /// `size_bytes`.
    pub fn new(segments: Vec<SegmentInfo>, from_zxid: i64, max_record_bytes: u32) -> Self {
        Self {
            segments: segments.into_iter(),
            current: None,
            from_zxid,
            up_to_zxid: i64::MAX,
            zeros_end_segment: false,
            last_zxid: 0,
            max_record_bytes,
            failed: false,
        }
    }

    /// Reads records with `from_zxid <= zxid <= up_to_zxid` straight from the segment files
    /// in `dir`, while another thread may be appending to them. `up_to_zxid` must be
    /// durable (e.g. committed): reading stops right after it, so a record being written
    /// beyond it is never looked at. Fewer records come back if the log ends earlier.
    /// [`WalError::NotRetained`] if records from `from_zxid` on may have been purged; a
    /// segment purged while reading shows up as an I/O error (retry).
    pub fn open_dir(
        dir: &Path,
        from_zxid: i64,
        up_to_zxid: i64,
        max_record_bytes: u32,
    ) -> Result<WalReader, WalError> {
        let files = list_segment_files(dir)?;
        let start = match files.iter().rposition(|(first, _)| *first <= from_zxid) {
            Some(i) => i,
            None => {
                if let Some((_, path)) = files.first() {
                    let file = File::open(path).map_err(io_err("open", path))?;
                    let mut header = [0u8; SEGMENT_HEADER_BYTES as usize];
                    file.read_exact_at(&mut header, 0)
                        .map_err(io_err("read", path))?;
                    let (_, prev) =
                        decode_header(&header).map_err(|kind| corrupt(path, 0, kind))?;
                    if from_zxid <= prev {
                        return Err(WalError::NotRetained {
                            zxid: from_zxid,
                            retained_after: prev,
                        });
                    }
                }
                0
            }
        };
        let mut segments = Vec::with_capacity(files.len() - start);
        for (first_zxid, path) in files.into_iter().skip(start) {
            if first_zxid > up_to_zxid {
                break;
            }
            let size_bytes = fs::metadata(&path).map_err(io_err("stat", &path))?.len();
            segments.push(SegmentInfo {
                first_zxid,
                last_zxid: i64::MAX,
                path,
                size_bytes,
            });
        }
        let mut reader = WalReader::new(segments, from_zxid, max_record_bytes);
        reader.up_to_zxid = up_to_zxid;
        reader.zeros_end_segment = true;
        Ok(reader)
    }

    fn open_segment(&self, info: &SegmentInfo) -> Result<FrameCursor, WalError> {
        let file = File::open(&info.path).map_err(io_err("open", &info.path))?;
        let mut header = [0u8; SEGMENT_HEADER_BYTES as usize];
        file.read_exact_at(&mut header, 0)
            .map_err(io_err("read", &info.path))?;
        let (first, _) = decode_header(&header).map_err(|kind| corrupt(&info.path, 0, kind))?;
        if first != info.first_zxid {
            return Err(corrupt(
                &info.path,
                0,
                CorruptKind::BadHeader("first zxid differs from the file name"),
            ));
        }
        FrameCursor::new(
            file,
            SEGMENT_HEADER_BYTES,
            info.size_bytes,
            self.max_record_bytes,
        )
        .map_err(io_err("read", &info.path))
    }

    fn step(&mut self) -> Result<Option<(i64, Bytes)>, WalError> {
        loop {
            if self.last_zxid >= self.up_to_zxid {
                return Ok(None);
            }
            if self.current.is_none() {
                let Some(info) = self.segments.next() else {
                    return Ok(None);
                };
                let cursor = self.open_segment(&info)?;
                self.current = Some((info, cursor));
            }
            let Some((info, cursor)) = self.current.as_mut() else {
                continue;
            };
            let at = cursor.offset;
            let mut payload = Vec::new();
            match cursor
                .next(&mut payload)
                .map_err(io_err("read", &info.path))?
            {
                Frame::Record { zxid } => {
                    if zxid <= self.last_zxid {
                        return Err(corrupt(
                            &info.path,
                            at,
                            CorruptKind::ZxidNotIncreasing {
                                prev: self.last_zxid,
                                found: zxid,
                            },
                        ));
                    }
                    self.last_zxid = zxid;
                    if zxid >= self.from_zxid {
                        return Ok(Some((zxid, Bytes::from(payload))));
                    }
                }
                Frame::End => self.current = None,
                Frame::Zeros if self.zeros_end_segment => self.current = None,
                Frame::Zeros => return Err(corrupt(&info.path, at, CorruptKind::TrailingData)),
                Frame::Invalid { kind, .. } => return Err(corrupt(&info.path, at, kind)),
            }
        }
    }
}

impl Iterator for WalReader {
    type Item = Result<(i64, Bytes), WalError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let item = self.step().transpose();
        if matches!(item, Some(Err(_))) {
            self.failed = true;
        }
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_opts() -> WalOptions {
        WalOptions {
            segment_size_bytes: 4096,
            ..WalOptions::default()
        }
    }

    fn payload_for(zxid: i64) -> Vec<u8> {
        let len = (zxid as usize * 37) % 301;
        (0..len).map(|i| (i as i64 ^ zxid) as u8).collect()
    }

    fn read_all(wal: &mut Wal) -> Vec<(i64, Bytes)> {
        let from = wal.retained_after() + 1;
        wal.read_from(from)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    }

    /// Writes zxids `1..=n` with `payload_for` and syncs.
    fn write_log(dir: &Path, opts: WalOptions, n: i64) -> Wal {
        let (mut wal, report) = Wal::open(dir, opts).unwrap();
        assert_eq!(report.last_zxid, 0);
        for zxid in 1..=n {
            wal.append(zxid, &payload_for(zxid)).unwrap();
        }
        wal.sync().unwrap();
        wal
    }

    /// Byte offset of every record in a segment file.
    fn record_offsets(path: &Path) -> Vec<(i64, u64, u64)> {
        let bytes = fs::read(path).unwrap();
        let mut out = Vec::new();
        let mut at = SEGMENT_HEADER_BYTES as usize;
        while at + FRAME_HEADER_BYTES <= bytes.len() {
            let len = le_u32(&bytes, at) as usize;
            let zxid = le_i64(&bytes, at + 8);
            if zxid == 0 {
                break;
            }
            let end = at + FRAME_HEADER_BYTES + len;
            out.push((zxid, at as u64, end as u64));
            at = end;
        }
        out
    }

    fn copy_dir(from: &Path, to: &Path) {
        for entry in fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }

    #[test]
    fn framing_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
        let records: Vec<(i64, Vec<u8>)> = vec![
            (1, vec![]),
            (2, b"x".to_vec()),
            (5, vec![0; 1000]),
            ((1 << 32) | 1, (0..=255).collect()),
        ];
        for (zxid, payload) in &records {
            wal.append(*zxid, payload).unwrap();
        }
        wal.sync().unwrap();
        assert_eq!(wal.last_zxid(), (1 << 32) | 1);
        let got = read_all(&mut wal);
        assert_eq!(got.len(), records.len());
        for ((zxid, payload), (gz, gp)) in records.iter().zip(&got) {
            assert_eq!(zxid, gz);
            assert_eq!(&payload[..], &gp[..]);
        }
        drop(wal);
        let (mut wal, report) = Wal::open(dir.path(), WalOptions::default()).unwrap();
        assert_eq!(report.records, 4);
        assert_eq!(report.segments, 1);
        assert_eq!(report.torn_tail, None);
        assert_eq!(read_all(&mut wal), got);
        // Preallocated zeros after the records are the normal end, not damage.
        let seg = &wal.segments()[0];
        assert_eq!(
            fs::metadata(&seg.path).unwrap().len(),
            DEFAULT_SEGMENT_SIZE_BYTES
        );
        assert_eq!(seg.path.file_name().unwrap(), "log.0000000000000001");
    }

    #[test]
    fn append_rejects_non_increasing_and_oversized_without_poisoning() {
        let dir = tempfile::tempdir().unwrap();
        let opts = WalOptions {
            max_record_bytes: 10,
            ..small_opts()
        };
        let (mut wal, _) = Wal::open(dir.path(), opts).unwrap();
        assert!(matches!(
            wal.append(0, b""),
            Err(WalError::ZxidNotIncreasing { .. })
        ));
        wal.append(5, b"a").unwrap();
        assert!(matches!(
            wal.append(5, b"b"),
            Err(WalError::ZxidNotIncreasing { .. })
        ));
        assert!(matches!(
            wal.append(4, b"b"),
            Err(WalError::ZxidNotIncreasing { .. })
        ));
        assert!(matches!(
            wal.append(6, &[0; 11]),
            Err(WalError::RecordTooLarge { .. })
        ));
        wal.append(6, &[0; 10]).unwrap();
        wal.sync().unwrap();
        assert!(!wal.is_poisoned());
        assert_eq!(read_all(&mut wal).len(), 2);
    }

    #[test]
    fn many_records_across_segment_rolls() {
        let dir = tempfile::tempdir().unwrap();
        let n = 2000;
        let wal = write_log(dir.path(), small_opts(), n);
        let segments = wal.segments();
        assert!(segments.len() > 10, "{} segments", segments.len());
        for pair in segments.windows(2) {
            assert_eq!(pair[1].first_zxid, pair[0].last_zxid + 1);
            assert!(pair[0].size_bytes <= 4096);
        }
        drop(wal);
        let (mut wal, report) = Wal::open(dir.path(), small_opts()).unwrap();
        assert_eq!(report.records, n as u64);
        assert_eq!(report.segments, segments.len());
        assert_eq!(wal.segments(), segments);
        let all = read_all(&mut wal);
        assert_eq!(all.len(), n as usize);
        for (zxid, payload) in &all {
            assert_eq!(&payload[..], &payload_for(*zxid)[..]);
        }
        // Appending after a reopen continues the last segment and rolls as before.
        for zxid in n + 1..=n + 100 {
            wal.append(zxid, &payload_for(zxid)).unwrap();
        }
        wal.sync().unwrap();
        drop(wal);
        let (_, report) = Wal::open(dir.path(), small_opts()).unwrap();
        assert_eq!(report.records, n as u64 + 100);
    }

    #[test]
    fn read_from_middle_and_across_epochs() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), small_opts()).unwrap();
        let zxids: Vec<i64> = (1..=200).map(|i| ((i / 50) << 32) | (i % 50 + 1)).collect();
        for &z in &zxids {
            wal.append(z, &payload_for(z & 0xffff)).unwrap();
        }
        // Unsynced (buffered) records are visible to read_from too.
        for &start in &[0usize, 1, 49, 50, 120, 199] {
            let got: Vec<i64> = wal
                .read_from(zxids[start])
                .unwrap()
                .map(|r| r.unwrap().0)
                .collect();
            assert_eq!(got, zxids[start..]);
        }
        // Between two zxids: starts at the next one.
        let got: Vec<i64> = wal
            .read_from(zxids[49] + 1)
            .unwrap()
            .map(|r| r.unwrap().0)
            .collect();
        assert_eq!(got, zxids[50..]);
        assert_eq!(wal.read_from(zxids[199] + 1).unwrap().count(), 0);
    }

    #[test]
    fn torn_tail_cut_at_every_byte_keeps_the_records_before_it() {
        let template = tempfile::tempdir().unwrap();
        let n = 300;
        let wal = write_log(template.path(), small_opts(), n);
        let last_seg = wal.segments().last().unwrap().path.clone();
        let name = last_seg.file_name().unwrap().to_owned();
        drop(wal);
        let offsets = record_offsets(&last_seg);
        let &(last_zxid, start, end) = offsets.last().unwrap();
        assert_eq!(last_zxid, n);
        for cut in start..end {
            let dir = tempfile::tempdir().unwrap();
            copy_dir(template.path(), dir.path());
            let file = OpenOptions::new()
                .write(true)
                .open(dir.path().join(&name))
                .unwrap();
            file.set_len(cut).unwrap();
            drop(file);
            let (mut wal, report) =
                Wal::open(dir.path(), small_opts()).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
            assert_eq!(report.last_zxid, n - 1, "cut at {cut}");
            assert_eq!(report.records, n as u64 - 1);
            if cut == start {
                assert_eq!(report.torn_tail, None);
            } else {
                let torn = report.torn_tail.unwrap();
                assert_eq!(torn.offset, start);
                assert_eq!(torn.kind, CorruptKind::Truncated);
            }
            // The log is usable again: the lost zxid can be appended anew.
            wal.append(n, b"again").unwrap();
            wal.sync().unwrap();
            drop(wal);
            let (mut wal, report) = Wal::open(dir.path(), small_opts()).unwrap();
            assert_eq!(report.torn_tail, None);
            let all = read_all(&mut wal);
            assert_eq!(all.len(), n as usize);
            assert_eq!(&all.last().unwrap().1[..], b"again");
        }
    }

    #[test]
    fn torn_tail_left_as_zero_sectors_is_cut() {
        let template = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(template.path(), WalOptions::default()).unwrap();
        for zxid in 1..=10 {
            wal.append(zxid, &vec![zxid as u8 | 1; 3000]).unwrap();
        }
        wal.sync().unwrap();
        let seg = wal.segments()[0].path.clone();
        let name = seg.file_name().unwrap().to_owned();
        drop(wal);
        let &(_, start, end) = record_offsets(&seg).last().unwrap();
        // Every sector boundary inside the last record: a crash wrote up to there only.
        let mut boundary = start.next_multiple_of(SECTOR_BYTES);
        let mut cases = 0;
        while boundary < end {
            let dir = tempfile::tempdir().unwrap();
            copy_dir(template.path(), dir.path());
            let file = OpenOptions::new()
                .write(true)
                .open(dir.path().join(&name))
                .unwrap();
            file.write_all_at(&vec![0; (end - boundary) as usize], boundary)
                .unwrap();
            drop(file);
            let (_, report) = Wal::open(dir.path(), WalOptions::default()).unwrap();
            assert_eq!(report.last_zxid, 9);
            let torn = report.torn_tail.unwrap();
            assert_eq!(torn.offset, start);
            cases += 1;
            boundary += SECTOR_BYTES;
        }
        assert!(cases >= 5);
    }

    fn flip_bit(path: &Path, offset: u64) {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        let mut b = [0u8; 1];
        file.read_exact_at(&mut b, offset).unwrap();
        b[0] ^= 0x10;
        file.write_all_at(&b, offset).unwrap();
    }

    fn expect_corrupt(
        dir: &Path,
        opts: WalOptions,
        want_path: &Path,
        want_offset: u64,
    ) -> CorruptKind {
        match Wal::open(dir, opts) {
            Err(WalError::Corrupt { path, offset, kind }) => {
                assert_eq!(path, want_path);
                assert_eq!(offset, want_offset);
                let message = WalError::Corrupt {
                    path: path.clone(),
                    offset,
                    kind: kind.clone(),
                }
                .to_string();
                assert!(message.contains(&*path.to_string_lossy()), "{message}");
                assert!(message.contains(&format!("byte {offset}")), "{message}");
                kind
            }
            Err(other) => panic!("expected corruption, got {other}"),
            Ok((_, report)) => panic!("expected corruption, opened: {report:?}"),
        }
    }

    #[test]
    fn flipped_bit_in_a_middle_record_is_an_error_naming_file_and_offset() {
        let template = tempfile::tempdir().unwrap();
        let wal = write_log(template.path(), small_opts(), 300);
        let segments = wal.segments();
        drop(wal);
        // In the last segment (valid records follow), in a middle segment, and in the last
        // record of a segment that is not the last one; in the header, the zxid and the body.
        let last = &segments[segments.len() - 1];
        let middle = &segments[segments.len() / 2];
        let last_offsets = record_offsets(&last.path);
        let middle_offsets = record_offsets(&middle.path);
        assert!(last_offsets.len() >= 3);
        let cases = [
            (last, last_offsets[1].1, 20),
            (last, last_offsets[0].1, 9),
            (middle, middle_offsets[middle_offsets.len() / 2].1, 3),
            (middle, middle_offsets[middle_offsets.len() - 1].1, 17),
        ];
        for (seg, record_at, delta) in cases {
            let dir = tempfile::tempdir().unwrap();
            copy_dir(template.path(), dir.path());
            let path = dir.path().join(seg.path.file_name().unwrap());
            flip_bit(&path, record_at + delta);
            let kind = expect_corrupt(dir.path(), small_opts(), &path, record_at);
            assert!(
                matches!(kind, CorruptKind::BadCrc | CorruptKind::BadLength(_)),
                "{kind:?}"
            );
        }
        // A damaged segment header.
        let dir = tempfile::tempdir().unwrap();
        copy_dir(template.path(), dir.path());
        let path = dir.path().join(middle.path.file_name().unwrap());
        flip_bit(&path, 20);
        expect_corrupt(dir.path(), small_opts(), &path, 0);
    }

    #[test]
    fn garbage_after_the_zero_tail_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let wal = write_log(dir.path(), small_opts(), 5);
        let path = wal.segments()[0].path.clone();
        drop(wal);
        let end = record_offsets(&path).last().unwrap().2;
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(b"junk", 4000).unwrap();
        drop(file);
        let kind = expect_corrupt(dir.path(), small_opts(), &path, end);
        assert_eq!(kind, CorruptKind::TrailingData);
        // An operator's explicit repair cuts it off instead.
        let opts = WalOptions {
            repair: true,
            ..small_opts()
        };
        let (_, report) = Wal::open(dir.path(), opts).unwrap();
        assert_eq!(report.last_zxid, 5);
        assert!(report.torn_tail.is_some());
        let (_, report) = Wal::open(dir.path(), small_opts()).unwrap();
        assert_eq!(report.torn_tail, None);
    }

    #[test]
    fn a_missing_middle_segment_is_a_gap() {
        let dir = tempfile::tempdir().unwrap();
        let wal = write_log(dir.path(), small_opts(), 300);
        let segments = wal.segments();
        drop(wal);
        fs::remove_file(&segments[2].path).unwrap();
        let kind = expect_corrupt(dir.path(), small_opts(), &segments[3].path, 0);
        assert!(matches!(kind, CorruptKind::Gap { .. }), "{kind:?}");
    }

    #[test]
    fn empty_or_half_created_last_segment_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let wal = write_log(dir.path(), small_opts(), 10);
        drop(wal);
        // A segment created (header durable) just before a crash, with no record in it.
        let empty = segment_path(dir.path(), 11);
        let file = File::create(&empty).unwrap();
        file.set_len(4096).unwrap();
        file.write_all_at(&encode_header(11, 10), 0).unwrap();
        drop(file);
        let (mut wal, report) = Wal::open(dir.path(), small_opts()).unwrap();
        assert_eq!(report.removed_segments, vec![empty.clone()]);
        assert_eq!(report.last_zxid, 10);
        assert!(!empty.exists());
        wal.append(12, b"twelve").unwrap();
        wal.sync().unwrap();
        drop(wal);
        // A segment whose header was only partly written.
        let half = segment_path(dir.path(), 13);
        fs::write(&half, &encode_header(13, 12)[..10]).unwrap();
        let (mut wal, report) = Wal::open(dir.path(), small_opts()).unwrap();
        assert_eq!(report.removed_segments, vec![half]);
        assert_eq!(read_all(&mut wal).len(), 11);
    }

    #[test]
    fn truncate_after_drops_later_records_durably() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = write_log(dir.path(), small_opts(), 500);
        let before = wal.segments().len();
        assert_eq!(wal.truncate_after(600).unwrap(), 500);
        assert_eq!(wal.truncate_after(250).unwrap(), 250);
        assert_eq!(wal.last_zxid(), 250);
        assert!(wal.segments().len() < before);
        assert!(matches!(
            wal.append(250, b""),
            Err(WalError::ZxidNotIncreasing { .. })
        ));
        // A new leader's history continues from there.
        for zxid in 251..=260 {
            wal.append(zxid | (1 << 32), b"new epoch").unwrap();
        }
        wal.sync().unwrap();
        drop(wal);
        let (mut wal, report) = Wal::open(dir.path(), small_opts()).unwrap();
        assert_eq!(report.records, 260);
        assert_eq!(report.torn_tail, None);
        let all = read_all(&mut wal);
        assert!(all[..250]
            .iter()
            .enumerate()
            .all(|(i, (z, _))| *z == i as i64 + 1));
        assert!(all[250..]
            .iter()
            .all(|(z, p)| z >> 32 == 1 && &p[..] == b"new epoch"));
        // Truncating to a record boundary at a segment's start, then to before everything.
        let first_of_last = wal.segments().last().unwrap().first_zxid;
        assert_eq!(wal.truncate_after(first_of_last).unwrap(), first_of_last);
        assert_eq!(wal.truncate_after(0).unwrap(), 0);
        assert!(wal.segments().is_empty());
        wal.append(1, b"fresh").unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (mut wal, report) = Wal::open(dir.path(), small_opts()).unwrap();
        assert_eq!(report.records, 1);
        assert_eq!(&read_all(&mut wal)[0].1[..], b"fresh");
    }

    #[test]
    fn purge_before_keeps_what_replay_after_a_snapshot_needs() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = write_log(dir.path(), small_opts(), 500);
        let segments = wal.segments();
        let snapshot_zxid = 260;
        let holder = segments
            .iter()
            .position(|s| s.first_zxid <= snapshot_zxid && snapshot_zxid <= s.last_zxid)
            .unwrap();
        let removed = wal.purge_before(snapshot_zxid).unwrap();
        assert_eq!(removed.len(), holder);
        assert!(removed.iter().all(|p| !p.exists()));
        assert_eq!(wal.first_zxid(), Some(segments[holder].first_zxid));
        assert_eq!(wal.retained_after(), segments[holder].first_zxid - 1);
        let replay: Vec<i64> = wal
            .read_from(snapshot_zxid + 1)
            .unwrap()
            .map(|r| r.unwrap().0)
            .collect();
        assert_eq!(replay, (snapshot_zxid + 1..=500).collect::<Vec<_>>());
        assert!(matches!(
            wal.read_from(1),
            Err(WalError::NotRetained { .. })
        ));
        // Purging never removes the active segment.
        wal.purge_before(10_000).unwrap();
        assert_eq!(wal.segments().len(), 1);
        drop(wal);
        let (wal, report) = Wal::open(dir.path(), small_opts()).unwrap();
        assert_eq!(report.last_zxid, 500);
        assert_eq!(wal.retained_after(), wal.first_zxid().unwrap() - 1);
    }

    #[test]
    fn reset_after_starts_the_log_after_a_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = write_log(dir.path(), small_opts(), 300);
        wal.append(301, b"unsynced").unwrap();
        wal.reset_after(1000).unwrap();
        assert!(wal.segments().is_empty());
        assert_eq!(wal.last_zxid(), 1000);
        assert!(matches!(
            wal.append(1000, b""),
            Err(WalError::ZxidNotIncreasing { .. })
        ));
        assert!(matches!(
            wal.read_from(1000),
            Err(WalError::NotRetained { .. })
        ));
        wal.append(1001, b"after").unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (mut wal, report) = Wal::open(dir.path(), small_opts()).unwrap();
        assert_eq!(report.records, 1);
        assert_eq!(wal.retained_after(), 1000);
        assert!(matches!(
            wal.read_from(999),
            Err(WalError::NotRetained { .. })
        ));
        assert_eq!(wal.read_from(1001).unwrap().count(), 1);
    }

    #[test]
    fn open_dir_reads_committed_records_without_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = write_log(dir.path(), small_opts(), 300);
        // A record beyond the committed point, half written: never looked at.
        wal.append(301, &[7; 200]).unwrap();
        wal.sync().unwrap();
        let last = wal.segments().last().unwrap().clone();
        let &(_, start, _) = record_offsets(&last.path).last().unwrap();
        let file = OpenOptions::new().write(true).open(&last.path).unwrap();
        file.write_all_at(&[0; 100], start + 100).unwrap();
        drop(file);
        let read = |from, to| -> Vec<i64> {
            WalReader::open_dir(dir.path(), from, to, DEFAULT_MAX_RECORD_BYTES)
                .unwrap()
                .map(|r| r.unwrap().0)
                .collect()
        };
        assert_eq!(read(1, 300), (1..=300).collect::<Vec<_>>());
        assert_eq!(read(150, 160), (150..=160).collect::<Vec<_>>());
        assert_eq!(read(299, 300), vec![299, 300]);
        assert!(read(301, 300).is_empty());
        // Past the end of the log: what exists (the damaged record is an error only if asked for).
        let past: Vec<_> = WalReader::open_dir(dir.path(), 290, 400, DEFAULT_MAX_RECORD_BYTES)
            .unwrap()
            .collect();
        assert_eq!(past.len(), 12);
        assert!(past.last().unwrap().is_err());
        wal.purge_before(200).unwrap();
        assert!(matches!(
            WalReader::open_dir(dir.path(), 5, 300, DEFAULT_MAX_RECORD_BYTES),
            Err(WalError::NotRetained { .. })
        ));
        let first = wal.first_zxid().unwrap();
        assert_eq!(read(first, 300).len() as i64, 300 - first + 1);
    }

    #[test]
    fn inspect_reports_without_repairing() {
        let dir = tempfile::tempdir().unwrap();
        let wal = write_log(dir.path(), small_opts(), 50);
        let last = wal.segments().last().unwrap().path.clone();
        drop(wal);
        let &(_, start, _) = record_offsets(&last).last().unwrap();
        let file = OpenOptions::new().write(true).open(&last).unwrap();
        file.set_len(start + 10).unwrap(); // the last record's header, cut short
        drop(file);
        let before = fs::read(&last).unwrap();
        let (report, segments) = inspect(dir.path(), &small_opts()).unwrap();
        assert_eq!(report.last_zxid, 49);
        assert_eq!(segments.last().unwrap().size_bytes, start);
        assert_eq!(fs::read(&last).unwrap(), before, "inspect changed the file");
        let (_, report) = Wal::open(dir.path(), small_opts()).unwrap();
        assert_eq!(report.torn_tail.unwrap().offset, start);
        let (report, _) = inspect(dir.path(), &small_opts()).unwrap();
        assert_eq!((report.last_zxid, report.torn_tail), (49, None));
    }

    /// Random workloads with random sync points, then a simulated power loss: every segment
    /// but the last is durable (synced before the roll); in the last one, everything after
    /// the durable end may be lost from that point or from any later sector boundary on.
    /// Recovery must keep every synced record and return an exact prefix of what was written.
    #[test]
    fn random_crashes_never_lose_synced_records() {
        use rand::{Rng, SeedableRng};
        for seed in 0..25u64 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let dir = tempfile::tempdir().unwrap();
            let opts = WalOptions {
                segment_size_bytes: 4096,
                preallocate: rng.gen_bool(0.7),
                ..WalOptions::default()
            };
            let (mut wal, _) = Wal::open(dir.path(), opts.clone()).unwrap();
            let mut written: Vec<Vec<u8>> = Vec::new();
            let mut durable = 0i64;
            let mut durable_end: Option<(PathBuf, u64)> = None;
            for zxid in 1..=rng.gen_range(1..300) {
                let len = rng.gen_range(0..700);
                let payload: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
                wal.append(zxid, &payload).unwrap();
                written.push(payload);
                if rng.gen_bool(0.15) {
                    wal.sync().unwrap();
                    durable = zxid;
                    let last = wal.segments().last().unwrap().clone();
                    durable_end = Some((last.path, last.size_bytes));
                }
            }
            // Unsynced records reach the file (they are in the page cache at the crash).
            let _ = wal.read_from(wal.retained_after() + 1).unwrap();
            let last = wal.segments().last().unwrap().clone();
            drop(wal);

            let safe_end = match &durable_end {
                Some((path, end)) if *path == last.path => *end,
                _ => SEGMENT_HEADER_BYTES,
            };
            let mut tears = vec![safe_end];
            let mut boundary = safe_end.next_multiple_of(SECTOR_BYTES);
            while boundary < last.size_bytes {
                tears.push(boundary);
                boundary += SECTOR_BYTES;
            }
            let tear = tears[rng.gen_range(0..tears.len())];
            let file = OpenOptions::new().write(true).open(&last.path).unwrap();
            let file_len = file.metadata().unwrap().len();
            if rng.gen_bool(0.5) {
                file.set_len(tear).unwrap();
            } else if file_len > tear {
                file.write_all_at(&vec![0; (file_len - tear) as usize], tear)
                    .unwrap();
            }
            drop(file);

            let (mut wal, report) = Wal::open(dir.path(), opts)
                .unwrap_or_else(|e| panic!("seed {seed}: tear at {tear}: {e}"));
            assert!(
                report.last_zxid >= durable,
                "seed {seed}: lost synced records"
            );
            let all = read_all(&mut wal);
            assert_eq!(all.len() as i64, report.last_zxid, "seed {seed}");
            for (zxid, payload) in all {
                assert_eq!(&payload[..], &written[zxid as usize - 1][..], "seed {seed}");
            }
        }
    }
}
