//! `corral log dump`: the write-ahead log, one transaction per line (like zkTxnLogToolkit).
//!
//! Reads without the directory lock, so it works beside a running server. The log is first
//! checked whole with [`wal::inspect`] (read-only), which tells the three endings apart:
//!
//! - the clean end of the records: everything is printed;
//! - a torn final write in the last segment (what a server cuts off at start-up): the records
//!   before it are printed and a note goes to stderr;
//! - damage anywhere else: the records before it are printed, then the error naming file and
//!   byte offset, and the command fails.
//!
//! A server appending at the same moment can make the end of the last segment look damaged
//! for an instant (a write half copied into the page cache), so damage found in the last
//! segment is re-checked after a short pause and reported only if it stays where it was.
//! Records appended after the check are not printed: the dump shows the log as it was then.
//!
//! A record that passes its checksum but does not decode as a transaction is corruption too,
//! reported with its file and offset.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use super::{acl_entry_text, base64, hex, iso_time, AclJson, ToolError};
use crate::jute::{Acl, OpCode};
use crate::storage::txn_codec::decode_txn;
use crate::storage::wal::{
    self, RecoveryReport, SegmentInfo, TornTail, WalError, WalOptions, WalReader,
    DEFAULT_MAX_RECORD_BYTES, FRAME_HEADER_BYTES, SEGMENT_HEADER_BYTES,
};
use crate::tree::{NodeKind, Txn, TxnBody};

/// How many times damage in the last segment is looked at before it is believed.
const SETTLE_ATTEMPTS: u32 = 3;
/// Pause between those looks: far longer than copying one write into the page cache.
const SETTLE_PAUSE: Duration = Duration::from_millis(100);

/// What to print.
#[derive(Debug, Clone)]
pub struct LogDumpOptions {
    /// First zxid printed.
    pub from: i64,
    /// Last zxid printed.
    pub to: i64,
    /// JSON Lines instead of text.
    pub json: bool,
    /// Include node data (base64).
    pub data: bool,
}

impl Default for LogDumpOptions {
    fn default() -> Self {
        Self {
            from: i64::MIN,
            to: i64::MAX,
            json: false,
            data: false,
        }
    }
}

/// What a dump printed and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogDumpStats {
    /// Records printed.
    pub records: u64,
    /// Zxid of the last record printed.
    pub last_zxid: Option<i64>,
    /// A torn final write after the last valid record (noted on stderr).
    pub torn_tail: Option<TornTail>,
}

/// Prints the transactions of the log in `dir` (a `corral-v1` log directory) with zxids in
/// `opts.from..=opts.to` to `out`; notes (a torn tail) go to `notes`. Fails on damage, after
/// printing the records before it.
pub fn dump_log(
    dir: &Path,
    opts: &LogDumpOptions,
    out: &mut dyn Write,
    notes: &mut dyn Write,
) -> Result<LogDumpStats, ToolError> {
    if !dir.is_dir() {
        return Err(ToolError::NoDir(dir.to_path_buf()));
    }
    if opts.from > opts.to {
        return Err(ToolError::BadRange {
            from: opts.from,
            to: opts.to,
        });
    }
    let mut stats = LogDumpStats::default();
    match inspect_settled(dir) {
        Ok((report, segments)) => {
            let start = segments
                .iter()
                .rposition(|s| s.first_zxid <= opts.from)
                .unwrap_or(0);
            let segments = segments[start..].to_vec();
            let bounds: Vec<(i64, PathBuf)> = segments
                .iter()
                .map(|s| (s.first_zxid, s.path.clone()))
                .collect();
            let reader = WalReader::new(segments, i64::MIN, DEFAULT_MAX_RECORD_BYTES);
            print_records(reader, &bounds, opts, out, &mut stats)?;
            if let Some(torn) = report.torn_tail {
                writeln!(
                    notes,
                    "note: {}: the log ends in a torn write at byte {} ({} bytes after the last \
                     complete record: {}); a server cuts it off at start-up",
                    torn.path.display(),
                    torn.offset,
                    torn.discarded_bytes,
                    torn.kind
                )?;
                stats.torn_tail = Some(torn);
            }
            Ok(stats)
        }
        Err(damage @ WalError::Corrupt { .. }) => {
            // Print what can be read before the damage, then report it.
            let files = wal::list_segments(dir)?;
            let start = files
                .iter()
                .rposition(|(first, _)| *first <= opts.from)
                .unwrap_or(0);
            if let Some(&(first, _)) = files.get(start) {
                if let Ok(reader) =
                    WalReader::open_dir(dir, first, opts.to, DEFAULT_MAX_RECORD_BYTES)
                {
                    match print_records(reader, &files[start..], opts, out, &mut stats) {
                        // The reader stops at the damage the check already described.
                        Ok(()) | Err(ToolError::Wal(_)) => {}
                        Err(other) => return Err(other),
                    }
                }
            }
            Err(damage.into())
        }
        Err(other) => Err(other.into()),
    }
}

/// [`wal::inspect`], looking again when damage shows up in the last segment (it may be a
/// write in progress) or a segment vanishes (purged meanwhile).
fn inspect_settled(dir: &Path) -> Result<(RecoveryReport, Vec<SegmentInfo>), WalError> {
    let opts = WalOptions {
        repair: false,
        ..WalOptions::default()
    };
    let mut seen: Option<(PathBuf, u64)> = None;
    let mut attempt = 1;
    loop {
        let err = match wal::inspect(dir, &opts) {
            Ok(found) => return Ok(found),
            Err(err) => err,
        };
        let look_again = match &err {
            WalError::Corrupt { path, offset, .. } => {
                let spot = (path.clone(), *offset);
                let moved = seen.as_ref() != Some(&spot);
                seen = Some(spot);
                let in_last = wal::list_segments(dir)
                    .ok()
                    .and_then(|files| files.last().map(|(_, last)| last == path))
                    .unwrap_or(false);
                in_last && moved
            }
            WalError::Io { source, .. } => source.kind() == io::ErrorKind::NotFound,
            _ => false,
        };
        if !look_again || attempt == SETTLE_ATTEMPTS {
            return Err(err);
        }
        attempt += 1;
        std::thread::sleep(SETTLE_PAUSE);
    }
}

/// Prints the records of `reader` within the options' range. `bounds` are the first zxid and
/// path of each segment the reader reads, in order, from the first record of the first:
/// they give each record's file and offset for error messages.
fn print_records(
    reader: impl Iterator<Item = Result<(i64, Bytes), WalError>>,
    bounds: &[(i64, PathBuf)],
    opts: &LogDumpOptions,
    out: &mut dyn Write,
    stats: &mut LogDumpStats,
) -> Result<(), ToolError> {
    let mut segment = 0;
    let mut offset = SEGMENT_HEADER_BYTES;
    for record in reader {
        let (zxid, payload) = record?;
        while segment + 1 < bounds.len() && bounds[segment + 1].0 <= zxid {
            segment += 1;
            offset = SEGMENT_HEADER_BYTES;
        }
        let at = offset;
        offset += (FRAME_HEADER_BYTES + payload.len()) as u64;
        if zxid < opts.from {
            continue;
        }
        if zxid > opts.to {
            break;
        }
        let txn = decode_txn(zxid, payload).map_err(|cause| ToolError::BadRecord {
            path: bounds
                .get(segment)
                .map(|(_, p)| p.clone())
                .unwrap_or_default(),
            offset: at,
            zxid,
            cause,
        })?;
        write_txn(&txn, opts, out)?;
        stats.records += 1;
        stats.last_zxid = Some(zxid);
    }
    Ok(())
}

/// One transaction as text or as a JSON line.
pub fn write_txn(txn: &Txn, opts: &LogDumpOptions, out: &mut dyn Write) -> Result<(), ToolError> {
    let op = OpView::of(&txn.body, opts.data);
    if opts.json {
        let record = RecordJson {
            time: iso_time(txn.time_ms),
            time_ms: txn.time_ms,
            session: hex(txn.session_id),
            cxid: txn.cxid,
            zxid: hex(txn.zxid),
            op,
        };
        serde_json::to_writer(&mut *out, &record)?;
        writeln!(out)?;
    } else {
        write!(
            out,
            "{} session {:#x} cxid {:#x} zxid {:#x} ",
            iso_time(txn.time_ms),
            txn.session_id,
            txn.cxid,
            txn.zxid
        )?;
        op.write_text(out, 0)?;
    }
    Ok(())
}

#[derive(Serialize)]
struct RecordJson<'a> {
    time: String,
    time_ms: i64,
    session: String,
    cxid: i32,
    zxid: String,
    #[serde(flatten)]
    op: OpView<'a>,
}

/// A transaction body reduced to what is printed; serialises as the JSON fields.
#[derive(Debug, Default, Serialize)]
pub struct OpView<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<&'a str>,
    /// `Some(None)`: null data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_len: Option<Option<usize>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acl: Option<Vec<AclJson<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ephemeral_owner: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub container: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_cversion: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub err: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub err_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ops: Option<Vec<OpView<'a>>>,
}

fn acl_view(acl: &[Acl]) -> Vec<AclJson<'_>> {
    acl.iter()
        .map(|a| AclJson {
            perms: a.perms,
            scheme: &a.id.scheme,
            id: &a.id.id,
        })
        .collect()
}

impl<'a> OpView<'a> {
    /// Describes `body`; node data is included (base64) only if `with_data`.
    pub fn of(body: &'a TxnBody, with_data: bool) -> OpView<'a> {
        let data_fields = |data: &Option<Bytes>| {
            (
                Some(data.as_ref().map(|d| d.len())),
                with_data.then(|| data.as_ref().map(|d| base64(d))),
            )
        };
        match body {
            TxnBody::CreateSession { timeout_ms } => OpView {
                kind: "createSession",
                timeout_ms: Some(*timeout_ms),
                ..OpView::default()
            },
            TxnBody::CloseSession => OpView {
                kind: "closeSession",
                ..OpView::default()
            },
            TxnBody::Create {
                path,
                data,
                acl,
                kind,
                parent_cversion,
                op,
            } => {
                let (data_len, data) = data_fields(data);
                let mut view = OpView {
                    kind: match op {
                        OpCode::Create2 => "create2",
                        OpCode::CreateContainer => "createContainer",
                        OpCode::CreateTtl => "createTTL",
                        _ => "create",
                    },
                    path: Some(path),
                    data_len,
                    data,
                    acl: Some(acl_view(acl)),
                    parent_cversion: Some(*parent_cversion),
                    ..OpView::default()
                };
                match kind {
                    NodeKind::Persistent => {}
                    NodeKind::Ephemeral(owner) => view.ephemeral_owner = Some(hex(*owner)),
                    NodeKind::Container => view.container = true,
                    NodeKind::Ttl(ttl) => view.ttl_ms = Some(*ttl),
                }
                view
            }
            TxnBody::Delete { path } => OpView {
                kind: "delete",
                path: Some(path),
                ..OpView::default()
            },
            TxnBody::SetData {
                path,
                data,
                version,
            } => {
                let (data_len, data) = data_fields(data);
                OpView {
                    kind: "setData",
                    path: Some(path),
                    data_len,
                    data,
                    version: Some(*version),
                    ..OpView::default()
                }
            }
            TxnBody::SetAcl { path, acl, version } => OpView {
                kind: "setACL",
                path: Some(path),
                acl: Some(acl_view(acl)),
                version: Some(*version),
                ..OpView::default()
            },
            TxnBody::Check { path, version } => OpView {
                kind: "check",
                path: Some(path),
                version: Some(*version),
                ..OpView::default()
            },
            TxnBody::Multi(ops) => OpView {
                kind: "multi",
                ops: Some(ops.iter().map(|op| OpView::of(op, with_data)).collect()),
                ..OpView::default()
            },
            TxnBody::Error(code) => OpView {
                kind: "error",
                err: Some(code.code()),
                err_name: Some(format!("{code:?}")),
                ..OpView::default()
            },
        }
    }

    /// `type [path] [detail...]` and a newline; a multi's ops follow on lines indented by
    /// four spaces per level.
    pub fn write_text(&self, out: &mut dyn Write, depth: usize) -> io::Result<()> {
        out.write_all(self.kind.as_bytes())?;
        if let Some(path) = self.path {
            write!(out, " {path}")?;
        }
        match self.data_len {
            Some(Some(len)) => write!(out, " len={len}")?,
            Some(None) => write!(out, " len=null")?,
            None => {}
        }
        if let Some(Some(data)) = &self.data {
            write!(out, " data={data}")?;
        }
        if let Some(acl) = &self.acl {
            let entries: Vec<String> = acl
                .iter()
                .map(|a| acl_entry_text(a.perms, a.scheme, a.id))
                .collect();
            write!(out, " acl=[{}]", entries.join(","))?;
        }
        if let Some(owner) = &self.ephemeral_owner {
            write!(out, " ephemeral={owner}")?;
        }
        if self.container {
            write!(out, " container")?;
        }
        if let Some(ttl) = self.ttl_ms {
            write!(out, " ttl={ttl}")?;
        }
        if let Some(v) = self.parent_cversion {
            write!(out, " parentCVersion={v}")?;
        }
        if let Some(v) = self.version {
            write!(out, " version={v}")?;
        }
        if let Some(t) = self.timeout_ms {
            write!(out, " timeout={t}")?;
        }
        if let (Some(err), Some(name)) = (self.err, &self.err_name) {
            write!(out, " err={err} ({name})")?;
        }
        if let Some(ops) = &self.ops {
            write!(out, " ops={}", ops.len())?;
        }
        writeln!(out)?;
        for op in self.ops.iter().flatten() {
            write!(out, "{:width$}", "", width = 4 * (depth + 1))?;
            op.write_text(out, depth + 1)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jute::ErrorCode;
    use crate::storage::txn_codec::encode_txn;
    use crate::storage::wal::Wal;
    use bytes::BytesMut;
    use std::fs;
    use std::os::unix::fs::FileExt;

    const T0: i64 = 1_795_895_866_000;

    fn txn(zxid: i64, body: TxnBody) -> Txn {
        Txn {
            session_id: 0x100_0000_0000_0001,
            cxid: zxid as i32,
            zxid,
            time_ms: T0 + zxid,
            body,
        }
    }

    fn create(path: &str, data: &'static [u8]) -> TxnBody {
        TxnBody::Create {
            path: path.into(),
            data: Some(Bytes::from_static(data)),
            acl: vec![Acl::new(31, "world", "anyone")],
            kind: NodeKind::Persistent,
            parent_cversion: 1,
            op: OpCode::Create,
        }
    }

    /// Every kind of body, zxids 1..=9.
    fn sample() -> Vec<Txn> {
        vec![
            txn(1, TxnBody::CreateSession { timeout_ms: 30_000 }),
            txn(2, create("/app", b"hello")),
            txn(
                3,
                TxnBody::Create {
                    path: "/app/e".into(),
                    data: None,
                    acl: vec![
                        Acl::new(1, "world", "anyone"),
                        Acl::new(31, "digest", "u:x"),
                    ],
                    kind: NodeKind::Ephemeral(0x100_0000_0000_0001),
                    parent_cversion: 2,
                    op: OpCode::Create2,
                },
            ),
            txn(
                4,
                TxnBody::SetData {
                    path: "/app".into(),
                    data: Some(Bytes::from_static(b"v2")),
                    version: 1,
                },
            ),
            txn(
                5,
                TxnBody::SetAcl {
                    path: "/app".into(),
                    acl: vec![Acl::new(17, "ip", "10.0.0.1")],
                    version: 1,
                },
            ),
            txn(
                6,
                TxnBody::Multi(vec![
                    TxnBody::Check {
                        path: "/app".into(),
                        version: 1,
                    },
                    create("/app/m", b""),
                    TxnBody::Delete {
                        path: "/app/e".into(),
                    },
                ]),
            ),
            txn(7, TxnBody::Error(ErrorCode::NoNode)),
            txn(
                8,
                TxnBody::Create {
                    path: "/ttl".into(),
                    data: Some(Bytes::from_static(b"t")),
                    acl: vec![Acl::new(31, "world", "anyone")],
                    kind: NodeKind::Ttl(60_000),
                    parent_cversion: 3,
                    op: OpCode::CreateTtl,
                },
            ),
            txn(9, TxnBody::CloseSession),
        ]
    }

    /// Writes `txns` to a log in `dir`; small segments so that a few records fill one.
    fn write_log(dir: &Path, txns: &[Txn], segment_size_bytes: u64) -> Wal {
        let opts = WalOptions {
            segment_size_bytes,
            ..WalOptions::default()
        };
        let (mut wal, _) = Wal::open(dir, opts).unwrap();
        for t in txns {
            let mut buf = BytesMut::new();
            encode_txn(t, &mut buf);
            wal.append(t.zxid, &buf).unwrap();
        }
        wal.sync().unwrap();
        wal
    }

    fn dump(
        dir: &Path,
        opts: &LogDumpOptions,
    ) -> (Result<LogDumpStats, ToolError>, String, String) {
        let mut out = Vec::new();
        let mut notes = Vec::new();
        let result = dump_log(dir, opts, &mut out, &mut notes);
        (
            result,
            String::from_utf8(out).unwrap(),
            String::from_utf8(notes).unwrap(),
        )
    }

    #[test]
    fn text_dump_has_one_line_per_record_and_expands_multi() {
        let dir = tempfile::tempdir().unwrap();
        let _wal = write_log(dir.path(), &sample(), 1 << 20);
        let (result, out, notes) = dump(dir.path(), &LogDumpOptions::default());
        assert_eq!(result.unwrap().records, 9);
        assert_eq!(notes, "");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "2026-11-28T19:57:46.001Z session 0x100000000000001 cxid 0x1 zxid 0x1 createSession timeout=30000"
        );
        assert!(lines[1]
            .ends_with("zxid 0x2 create /app len=5 acl=[world:anyone=cdrwa] parentCVersion=1"));
        assert!(lines[2].ends_with(
            "create2 /app/e len=null acl=[world:anyone=r,digest:u:x=cdrwa] ephemeral=0x100000000000001 parentCVersion=2"
        ));
        assert!(
            lines[3].ends_with("setData /app len=2 version=1"),
            "{}",
            lines[3]
        );
        assert!(lines[4].ends_with("setACL /app acl=[ip:10.0.0.1=ra] version=1"));
        assert!(lines[5].ends_with("zxid 0x6 multi ops=3"));
        assert_eq!(lines[6], "    check /app version=1");
        assert_eq!(
            lines[7],
            "    create /app/m len=0 acl=[world:anyone=cdrwa] parentCVersion=1"
        );
        assert_eq!(lines[8], "    delete /app/e");
        assert!(lines[9].ends_with("zxid 0x7 error err=-101 (NoNode)"));
        assert!(lines[10]
            .ends_with("createTTL /ttl len=1 acl=[world:anyone=cdrwa] ttl=60000 parentCVersion=3"));
        assert!(lines[11].ends_with("cxid 0x9 zxid 0x9 closeSession"));
        assert_eq!(lines.len(), 12);
    }

    #[test]
    fn json_lines_with_range_and_data() {
        let dir = tempfile::tempdir().unwrap();
        // About two records per segment: the range starts in a middle segment.
        let _wal = write_log(dir.path(), &sample(), 200);
        let opts = LogDumpOptions {
            from: 2,
            to: 6,
            json: true,
            data: true,
        };
        let (result, out, _) = dump(dir.path(), &opts);
        let stats = result.unwrap();
        assert_eq!((stats.records, stats.last_zxid), (5, Some(6)));
        let values: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(values.len(), 5);
        let first = &values[0];
        assert_eq!(first["type"], "create");
        assert_eq!(first["zxid"], "0x2");
        assert_eq!(first["session"], "0x100000000000001");
        assert_eq!(first["cxid"], 2);
        assert_eq!(first["time"], "2026-11-28T19:57:46.002Z");
        assert_eq!(first["path"], "/app");
        assert_eq!(first["data_len"], 5);
        assert_eq!(first["data"], "aGVsbG8=");
        assert_eq!(first["acl"][0]["scheme"], "world");
        assert_eq!(first["acl"][0]["perms"], 31);
        assert_eq!(values[1]["data_len"], serde_json::Value::Null);
        assert_eq!(values[1]["ephemeral_owner"], "0x100000000000001");
        let multi = &values[4];
        assert_eq!(multi["type"], "multi");
        assert_eq!(multi["ops"][1]["type"], "create");
        assert_eq!(multi["ops"][1]["data"], "");
        assert_eq!(multi["ops"][2]["path"], "/app/e");

        // Without --data there is no data field.
        let (_, out, _) = dump(
            dir.path(),
            &LogDumpOptions {
                json: true,
                ..LogDumpOptions::default()
            },
        );
        let v: serde_json::Value = serde_json::from_str(out.lines().nth(1).unwrap()).unwrap();
        assert!(v.get("data").is_none());
        assert_eq!(v["data_len"], 5);
    }

    fn last_record_offset(path: &Path) -> u64 {
        let bytes = fs::read(path).unwrap();
        let mut at = SEGMENT_HEADER_BYTES as usize;
        let mut last = at;
        loop {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            if len == 0 && bytes[at..at + 16].iter().all(|&b| b == 0) {
                return last as u64;
            }
            last = at;
            at += FRAME_HEADER_BYTES + len;
            if at >= bytes.len() {
                return last as u64;
            }
        }
    }

    #[test]
    fn torn_tail_is_a_note_and_the_records_before_it_print() {
        let dir = tempfile::tempdir().unwrap();
        let wal = write_log(dir.path(), &sample(), 1 << 20);
        let path = wal.segments().last().unwrap().path.clone();
        drop(wal);
        let at = last_record_offset(&path);
        let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(at + 10).unwrap(); // the last record, cut short
        drop(file);
        let (result, out, notes) = dump(dir.path(), &LogDumpOptions::default());
        let stats = result.unwrap();
        assert_eq!(stats.records, 8);
        assert_eq!(out.lines().filter(|l| !l.starts_with(' ')).count(), 8);
        assert!(notes.starts_with("note: "), "{notes}");
        assert!(notes.contains(&format!("{}: ", path.display())), "{notes}");
        assert!(notes.contains(&format!("byte {at}")), "{notes}");
    }

    #[test]
    fn damage_in_the_middle_is_an_error_naming_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let wal = write_log(dir.path(), &sample(), 200);
        let segments = wal.segments();
        assert!(segments.len() >= 3);
        drop(wal);
        // Flip a payload byte of the first record of the second segment.
        let victim = &segments[1];
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&victim.path)
            .unwrap();
        let at = SEGMENT_HEADER_BYTES + FRAME_HEADER_BYTES as u64 + 1;
        let mut b = [0u8; 1];
        file.read_exact_at(&mut b, at).unwrap();
        file.write_all_at(&[b[0] ^ 0x40], at).unwrap();
        drop(file);
        let (result, out, _) = dump(dir.path(), &LogDumpOptions::default());
        let err = result.unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&victim.path.display().to_string()), "{msg}");
        assert!(
            msg.contains(&format!("byte {SEGMENT_HEADER_BYTES}")),
            "{msg}"
        );
        // The records of the first segment were printed before the error.
        let printed = out.lines().filter(|l| !l.starts_with(' ')).count() as i64;
        assert_eq!(printed, victim.first_zxid - 1);
    }

    #[test]
    fn a_record_that_does_not_decode_is_reported_with_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
        let mut buf = BytesMut::new();
        encode_txn(&sample()[0], &mut buf);
        wal.append(1, &buf).unwrap();
        wal.append(2, &[0xff, 0xff, 0xff]).unwrap();
        wal.sync().unwrap();
        let path = wal.segments()[0].path.clone();
        let (result, out, _) = dump(dir.path(), &LogDumpOptions::default());
        let msg = result.unwrap_err().to_string();
        let offset = SEGMENT_HEADER_BYTES as usize + FRAME_HEADER_BYTES + buf.len();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(
            msg.contains(&format!("at byte {offset}: record 0x2")),
            "{msg}"
        );
        assert_eq!(out.lines().count(), 1);
    }

    #[test]
    fn empty_or_missing_log() {
        let dir = tempfile::tempdir().unwrap();
        let (result, out, _) = dump(dir.path(), &LogDumpOptions::default());
        assert_eq!(result.unwrap().records, 0);
        assert_eq!(out, "");
        let missing = dir.path().join("nope");
        let (result, _, _) = dump(&missing, &LogDumpOptions::default());
        assert!(matches!(result, Err(ToolError::NoDir(_))));
        let bad = LogDumpOptions {
            from: 5,
            to: 4,
            ..LogDumpOptions::default()
        };
        assert!(matches!(
            dump(dir.path(), &bad).0,
            Err(ToolError::BadRange { .. })
        ));
    }

    #[test]
    fn reads_while_the_wal_is_open_and_appending() {
        let dir = tempfile::tempdir().unwrap();
        let txns = sample();
        let mut wal = write_log(dir.path(), &txns[..5], 1 << 20);
        let (result, _, _) = dump(dir.path(), &LogDumpOptions::default());
        assert_eq!(result.unwrap().records, 5);
        for t in &txns[5..] {
            let mut buf = BytesMut::new();
            encode_txn(t, &mut buf);
            wal.append(t.zxid, &buf).unwrap();
        }
        wal.sync().unwrap();
        let (result, _, notes) = dump(dir.path(), &LogDumpOptions::default());
        assert_eq!(result.unwrap().records, 9);
        assert_eq!(notes, "");
    }
}
