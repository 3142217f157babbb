//! `log.<zxid>`: ZooKeeper's transaction log, named after the first zxid it holds.
//!
//! Layout (big-endian jute):
//!
//! ```text
//! FileHeader   int magic "ZKLG" | int version 2 | long dbid
//! records      each:  long  checksum   Adler-32 of the txn bytes only (not of the length,
//!                                      not of the end marker; the Javadoc says otherwise)
//!                     int   length     of the txn bytes, > 0
//!                     bytes txn        TxnHeader, the txn record for the header's type, and,
//!                                      with digests on (3.6+ default), TxnDigest
//!                     byte  0x42 'B'   end of record
//! padding      zeros up to the preallocated size (64 MiB by default); the first record with
//!              checksum 0 and length 0 ends the log
//!
//! TxnHeader    long clientId (session), int cxid, long zxid, long time (ms), int type
//! TxnDigest    int version, long treeDigest
//! ```
//!
//! Records by `TxnHeader.type` (the `ZooDefs.OpCode` of the request that made them):
//!
//! | type | record |
//! | --- | --- |
//! | create 1, create2 15 | CreateTxn: path, data, acl, bool ephemeral, int parentCVersion (absent in the V0 layout) |
//! | createContainer 19 | CreateContainerTxn: path, data, acl, int parentCVersion |
//! | createTTL 21 | CreateTTLTxn: path, data, acl, int parentCVersion, long ttl |
//! | delete 2, deleteContainer 20 | DeleteTxn: path |
//! | setData 5, reconfig 16 | SetDataTxn: path, data, int version (reconfig targets /zookeeper/config) |
//! | setACL 7 | SetACLTxn: path, acl, int version |
//! | check 13 | CheckVersionTxn: path, int version |
//! | createSession -10 | CreateSessionTxn: int timeOut |
//! | closeSession -11 | CloseSessionTxn: `vector<ustring>` paths2Delete (absent before 3.6 or when `zookeeper.closeSessionTxn.enabled=false`) |
//! | error -1 | ErrorTxn: int err (a failed write still consumes a zxid) |
//! | multi 14 | MultiTxn: `vector<Txn{int type, buffer data}>`, each data one of the records above, without digest |

use bytes::Bytes;

use super::adler32::adler32;
use super::error::{ZkDataError, ZkDataErrorKind};
use super::records::{FileHeader, FILE_HEADER_LEN, LOG_MAGIC};
use crate::jute::{Acl, DecodeError, OpCode, Reader};

/// `TxnHeader`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnHeader {
    /// The session that issued the request.
    pub client_id: i64,
    pub cxid: i32,
    pub zxid: i64,
    /// Leader wall-clock time in ms; becomes ctime/mtime of the nodes the txn touches.
    pub time: i64,
    /// The opcode, see [`TxnHeader::op`].
    pub txn_type: i32,
}

impl TxnHeader {
    pub const LEN: usize = 8 + 4 + 8 + 8 + 4;

    pub fn op(&self) -> Option<OpCode> {
        OpCode::from_code(self.txn_type)
    }
}

/// `TxnDigest`: the tree digest after the transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnDigest {
    pub version: i32,
    pub tree_digest: i64,
}

impl TxnDigest {
    pub const LEN: usize = 4 + 8;
}

/// One logged transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkTxn {
    /// File offset of the record (its checksum field).
    pub offset: usize,
    pub header: TxnHeader,
    pub body: ZkTxnBody,
    pub digest: Option<TxnDigest>,
}

/// The record of a transaction, by opcode. The opcode itself stays in [`TxnHeader::txn_type`]
/// (or [`ZkSubTxn::txn_type`]): `Create` covers create and create2, `Delete` covers delete and
/// deleteContainer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZkTxnBody {
    Create {
        path: String,
        data: Option<Bytes>,
        acl: Vec<Acl>,
        /// Owned by the header's session.
        ephemeral: bool,
        /// -1 for the V0 layout, which lacks the field; ZooKeeper then uses the parent's
        /// cversion + 1.
        parent_cversion: i32,
    },
    CreateContainer {
        path: String,
        data: Option<Bytes>,
        acl: Vec<Acl>,
        parent_cversion: i32,
    },
    CreateTtl {
        path: String,
        data: Option<Bytes>,
        acl: Vec<Acl>,
        parent_cversion: i32,
        ttl_ms: i64,
    },
    Delete {
        path: String,
    },
    SetData {
        path: String,
        data: Option<Bytes>,
        /// The node's new data version.
        version: i32,
    },
    /// A reconfig: new contents of `/zookeeper/config` (same record as setData).
    Reconfig {
        path: String,
        data: Option<Bytes>,
        version: i32,
    },
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        /// The node's new ACL version.
        version: i32,
    },
    Check {
        path: String,
        /// The node's data version at the check, + 1 (ZooKeeper's `checkAndIncVersion`); the
        /// check changes nothing.
        version: i32,
    },
    CreateSession {
        timeout_ms: i32,
    },
    CloseSession {
        /// The ephemeral nodes to delete; `None` when the log predates `CloseSessionTxn` (then
        /// every ephemeral of the session goes).
        paths_to_delete: Option<Vec<String>>,
    },
    /// A failed request; `err` is the `KeeperException.Code`.
    Error {
        err: i32,
    },
    Multi(Vec<ZkSubTxn>),
    /// A type this reader does not know (none that ZooKeeper 3.4-3.9 logs): the bytes after
    /// the header, digest included if any. Skippable.
    Unknown {
        raw: Bytes,
    },
}

/// One operation of a multi.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkSubTxn {
    pub txn_type: i32,
    pub body: ZkTxnBody,
}

/// A parsed log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkLog {
    pub header: FileHeader,
    pub txns: Vec<ZkTxn>,
    /// Offset where the valid records end (start of the padding, of a torn record, or EOF).
    pub end_offset: usize,
    /// Set when the log does not end cleanly (EOF or zero padding) but in a partial record.
    /// ZooKeeper treats this as the end of the log; it is what a crash during a write leaves.
    pub torn_tail: Option<TornTail>,
}

/// A partial record at the end of a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// File offset of the partial record.
    pub offset: usize,
    pub reason: String,
}

/// Parses a transaction log: every complete record is checksum-verified; a checksum mismatch
/// is an error, a partial last record is reported in [`ZkLog::torn_tail`].
pub fn parse_log(bytes: Bytes) -> Result<ZkLog, ZkDataError> {
    let header = FileHeader::parse(&bytes, LOG_MAGIC)?;
    let mut txns = Vec::new();
    let mut pos = FILE_HEADER_LEN;
    let torn = |offset: usize, reason: String| Some(TornTail { offset, reason });
    let len = bytes.len();
    let torn_tail = loop {
        let rest = &bytes[pos..];
        if rest.is_empty() {
            break None;
        }
        if rest.len() < 12 {
            if rest.iter().all(|&b| b == 0) {
                break None;
            }
            break torn(pos, format!("{} bytes, too short for a record", rest.len()));
        }
        let stored = i64::from_be_bytes(be8(&rest[..8]));
        let txn_len = i32::from_be_bytes(be4(&rest[8..12]));
        if txn_len == 0 {
            // End of the log. ZooKeeper stops here whatever follows; anything non-zero after
            // it means a record was being written.
            if stored != 0 {
                break torn(pos, format!("checksum {stored:#x} with length 0"));
            }
            if let Some(i) = rest.iter().position(|&b| b != 0) {
                break torn(
                    pos,
                    format!(
                        "non-zero byte at offset {} after the end of the log",
                        pos + i
                    ),
                );
            }
            break None;
        }
        if txn_len < 0 {
            return Err(ZkDataError::malformed(
                pos + 8,
                format!("record length {txn_len}"),
            ));
        }
        let txn_len = txn_len as usize;
        let start = pos + 12;
        if txn_len > len - start {
            break torn(
                pos,
                format!("record of {txn_len} bytes but only {} left", len - start),
            );
        }
        let end = start + txn_len;
        match bytes.get(end) {
            None => break torn(pos, "no end-of-record byte".to_owned()),
            Some(0x42) => {}
            Some(b) => break torn(pos, format!("end-of-record byte is {b:#04x}, not 0x42")),
        }
        let computed = adler32(&bytes[start..end]);
        if stored != i64::from(computed) {
            return Err(ZkDataError::new(ZkDataErrorKind::Checksum {
                offset: pos,
                stored,
                computed,
            }));
        }
        let (header, body, digest) = parse_txn(start, bytes.slice(start..end))?;
        txns.push(ZkTxn {
            offset: pos,
            header,
            body,
            digest,
        });
        pos = end + 1;
    };
    Ok(ZkLog {
        header,
        txns,
        end_offset: torn_tail.as_ref().map_or(pos, |t| t.offset),
        torn_tail,
    })
}

fn be8(b: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    a
}

fn be4(b: &[u8]) -> [u8; 4] {
    [b[0], b[1], b[2], b[3]]
}

/// Parses the bytes of one record (`base` is their file offset, for errors).
pub fn parse_txn(
    base: usize,
    txn: Bytes,
) -> Result<(TxnHeader, ZkTxnBody, Option<TxnDigest>), ZkDataError> {
    let mut r = Reader::new(txn.clone());
    let err = |what: &str, e: DecodeError| ZkDataError::decode(base, what, e);
    let header = (|| -> Result<TxnHeader, DecodeError> {
        Ok(TxnHeader {
            client_id: r.read_i64()?,
            cxid: r.read_i32()?,
            zxid: r.read_i64()?,
            time: r.read_i64()?,
            txn_type: r.read_i32()?,
        })
    })()
    .map_err(|e| err("txn header", e))?;

    let body = match header.txn_type {
        t if t == OpCode::CloseSession.code() => {
            // CloseSessionTxn may be absent; then at most a digest follows.
            let mut attempt = r.clone();
            match attempt.read_string_vec() {
                Ok(paths) if matches!(attempt.remaining(), 0 | TxnDigest::LEN) => {
                    r = attempt;
                    ZkTxnBody::CloseSession {
                        paths_to_delete: Some(paths),
                    }
                }
                _ if matches!(r.remaining(), 0 | TxnDigest::LEN) => ZkTxnBody::CloseSession {
                    paths_to_delete: None,
                },
                Ok(_) => {
                    return Err(ZkDataError::malformed(
                        base + attempt.position(),
                        format!(
                            "{} unexpected bytes after closeSession",
                            attempt.remaining()
                        ),
                    ))
                }
                Err(e) => return Err(err("closeSession", e)),
            }
        }
        t => match read_body(t, &mut r, true).map_err(|e| err(&op_name(t), e))? {
            Some(body) => body,
            None => {
                let raw = txn.slice(r.position()..);
                return Ok((header, ZkTxnBody::Unknown { raw }, None));
            }
        },
    };

    let digest = match r.remaining() {
        0 => None,
        TxnDigest::LEN => Some(TxnDigest {
            version: r.read_i32().map_err(|e| err("digest", e))?,
            tree_digest: r.read_i64().map_err(|e| err("digest", e))?,
        }),
        n => {
            return Err(ZkDataError::malformed(
                base + r.position(),
                format!(
                    "{n} unexpected bytes after the {} record",
                    op_name(header.txn_type)
                ),
            ))
        }
    };
    Ok((header, body, digest))
}

fn op_name(t: i32) -> String {
    match OpCode::from_code(t) {
        Some(op) => format!("{op:?}"),
        None => format!("type {t}"),
    }
}

/// Reads the record for `txn_type`; `None` for an unknown type. `top_level` allows the V0
/// create layout and multi.
fn read_body(
    txn_type: i32,
    r: &mut Reader,
    top_level: bool,
) -> Result<Option<ZkTxnBody>, DecodeError> {
    let Some(op) = OpCode::from_code(txn_type) else {
        return Ok(None);
    };
    let body = match op {
        OpCode::Create | OpCode::Create2 => {
            let path = r.read_string()?;
            let data = r.read_buffer()?;
            let acl = Acl::read_vec(r)?;
            let ephemeral = r.read_bool()?;
            // V0 creates end here. ZooKeeper detects them by running out of bytes, which only
            // happens for logs written before digests existed.
            let parent_cversion = if top_level && r.remaining() == 0 {
                -1
            } else {
                r.read_i32()?
            };
            ZkTxnBody::Create {
                path,
                data,
                acl,
                ephemeral,
                parent_cversion,
            }
        }
        OpCode::CreateContainer => ZkTxnBody::CreateContainer {
            path: r.read_string()?,
            data: r.read_buffer()?,
            acl: Acl::read_vec(r)?,
            parent_cversion: r.read_i32()?,
        },
        OpCode::CreateTtl => ZkTxnBody::CreateTtl {
            path: r.read_string()?,
            data: r.read_buffer()?,
            acl: Acl::read_vec(r)?,
            parent_cversion: r.read_i32()?,
            ttl_ms: r.read_i64()?,
        },
        OpCode::Delete | OpCode::DeleteContainer => ZkTxnBody::Delete {
            path: r.read_string()?,
        },
        OpCode::SetData => ZkTxnBody::SetData {
            path: r.read_string()?,
            data: r.read_buffer()?,
            version: r.read_i32()?,
        },
        OpCode::Reconfig => ZkTxnBody::Reconfig {
            path: r.read_string()?,
            data: r.read_buffer()?,
            version: r.read_i32()?,
        },
        OpCode::SetAcl => ZkTxnBody::SetAcl {
            path: r.read_string()?,
            acl: Acl::read_vec(r)?,
            version: r.read_i32()?,
        },
        OpCode::Check => ZkTxnBody::Check {
            path: r.read_string()?,
            version: r.read_i32()?,
        },
        OpCode::CreateSession => ZkTxnBody::CreateSession {
            timeout_ms: r.read_i32()?,
        },
        OpCode::CloseSession => ZkTxnBody::CloseSession {
            paths_to_delete: Some(r.read_string_vec()?),
        },
        OpCode::Error => ZkTxnBody::Error { err: r.read_i32()? },
        OpCode::Multi if top_level => {
            let subs = r.read_vec(|r| Ok((r.read_i32()?, r.read_buffer()?)))?;
            let mut out = Vec::with_capacity(subs.len());
            for (sub_type, data) in subs {
                let data = data.unwrap_or_default();
                let mut sr = Reader::new(data.clone());
                let body = match read_body(sub_type, &mut sr, false)? {
                    Some(body) if sr.remaining() == 0 => body,
                    Some(_) => return Err(DecodeError::Invalid("trailing bytes in a multi op")),
                    None => ZkTxnBody::Unknown { raw: data },
                };
                out.push(ZkSubTxn {
                    txn_type: sub_type,
                    body,
                });
            }
            ZkTxnBody::Multi(out)
        }
        _ => return Ok(None),
    };
    Ok(Some(body))
}
