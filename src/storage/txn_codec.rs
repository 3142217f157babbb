//! Encoding of transactions for the write-ahead log (protobuf, `proto/txn.proto`).
//!
//! The log frame carries the zxid and a checksum; the payload is this encoding of the rest of
//! the transaction. Decoding validates everything it can (known opcodes and error codes), so a
//! record that passes its checksum but carries nonsense is reported, not applied.

use bytes::{Bytes, BytesMut};
use prost::Message;
use thiserror::Error;

use crate::jute::{Acl, ErrorCode, Id, OpCode};
use crate::tree::{NodeKind, Txn, TxnBody};

#[allow(clippy::all, missing_docs)]
mod pb {
    include!(concat!(env!("OUT_DIR"), "/corral.txn.rs"));
}

#[derive(Debug, Error, PartialEq)]
pub enum TxnCodecError {
    #[error("transaction record does not decode: {0}")]
    Decode(String),
    #[error("transaction record has no body")]
    NoBody,
    #[error("transaction record has unknown opcode {0}")]
    UnknownOp(i32),
    #[error("transaction record has unknown error code {0}")]
    UnknownError(i32),
    #[error("transaction record has unknown node kind {0}")]
    UnknownKind(i32),
}

fn acl_to_pb(acl: &[Acl]) -> Vec<pb::Acl> {
    acl.iter()
        .map(|a| pb::Acl {
            perms: a.perms,
            id: Some(pb::Id {
                scheme: a.id.scheme.clone(),
                id: a.id.id.clone(),
            }),
        })
        .collect()
}

fn acl_from_pb(acl: Vec<pb::Acl>) -> Vec<Acl> {
    acl.into_iter()
        .map(|a| {
            let id = a.id.unwrap_or_default();
            Acl {
                perms: a.perms,
                id: Id {
                    scheme: id.scheme,
                    id: id.id,
                },
            }
        })
        .collect()
}

fn body_to_pb(body: &TxnBody) -> pb::Body {
    use pb::body::Op;
    let op = match body {
        TxnBody::CreateSession { timeout_ms } => Op::CreateSession(pb::CreateSession {
            timeout_ms: *timeout_ms,
        }),
        TxnBody::CloseSession => Op::CloseSession(pb::CloseSession {}),
        TxnBody::Create {
            path,
            data,
            acl,
            kind,
            parent_cversion,
            op,
        } => {
            let (kind, kind_value) = match kind {
                NodeKind::Persistent => (pb::Kind::Persistent, 0),
                NodeKind::Ephemeral(owner) => (pb::Kind::Ephemeral, *owner),
                NodeKind::Container => (pb::Kind::Container, 0),
                NodeKind::Ttl(ttl) => (pb::Kind::Ttl, *ttl),
            };
            Op::Create(pb::Create {
                path: path.clone(),
                data: data.clone(),
                acl: acl_to_pb(acl),
                kind: kind as i32,
                kind_value,
                parent_cversion: *parent_cversion,
                op: op.code(),
            })
        }
        TxnBody::Delete { path } => Op::Delete(pb::Delete { path: path.clone() }),
        TxnBody::SetData {
            path,
            data,
            version,
        } => Op::SetData(pb::SetData {
            path: path.clone(),
            data: data.clone(),
            version: *version,
        }),
        TxnBody::SetAcl { path, acl, version } => Op::SetAcl(pb::SetAcl {
            path: path.clone(),
            acl: acl_to_pb(acl),
            version: *version,
        }),
        TxnBody::Check { path, version } => Op::Check(pb::Check {
            path: path.clone(),
            version: *version,
        }),
        TxnBody::Multi(ops) => Op::Multi(pb::Multi {
            ops: ops.iter().map(body_to_pb).collect(),
        }),
        TxnBody::Error(code) => Op::Error(pb::Error { code: code.code() }),
    };
    pb::Body { op: Some(op) }
}

fn body_from_pb(body: pb::Body) -> Result<TxnBody, TxnCodecError> {
    use pb::body::Op;
    Ok(match body.op.ok_or(TxnCodecError::NoBody)? {
        Op::CreateSession(c) => TxnBody::CreateSession {
            timeout_ms: c.timeout_ms,
        },
        Op::CloseSession(_) => TxnBody::CloseSession,
        Op::Create(c) => {
            let kind = match pb::Kind::try_from(c.kind) {
                Ok(pb::Kind::Persistent) => NodeKind::Persistent,
                Ok(pb::Kind::Ephemeral) => NodeKind::Ephemeral(c.kind_value),
                Ok(pb::Kind::Container) => NodeKind::Container,
                Ok(pb::Kind::Ttl) => NodeKind::Ttl(c.kind_value),
                Err(_) => return Err(TxnCodecError::UnknownKind(c.kind)),
            };
            TxnBody::Create {
                path: c.path,
                data: c.data,
                acl: acl_from_pb(c.acl),
                kind,
                parent_cversion: c.parent_cversion,
                op: OpCode::from_code(c.op).ok_or(TxnCodecError::UnknownOp(c.op))?,
            }
        }
        Op::Delete(d) => TxnBody::Delete { path: d.path },
        Op::SetData(s) => TxnBody::SetData {
            path: s.path,
            data: s.data,
            version: s.version,
        },
        Op::SetAcl(s) => TxnBody::SetAcl {
            path: s.path,
            acl: acl_from_pb(s.acl),
            version: s.version,
        },
        Op::Check(c) => TxnBody::Check {
            path: c.path,
            version: c.version,
        },
        Op::Multi(m) => TxnBody::Multi(
            m.ops
                .into_iter()
                .map(body_from_pb)
                .collect::<Result<_, _>>()?,
        ),
        Op::Error(e) => {
            TxnBody::Error(ErrorCode::from_code(e.code).ok_or(TxnCodecError::UnknownError(e.code))?)
        }
    })
}

/// Encodes everything but the zxid into `buf` (appending).
pub fn encode_txn(txn: &Txn, buf: &mut BytesMut) {
    let msg = pb::Txn {
        session_id: txn.session_id,
        cxid: txn.cxid,
        time_ms: txn.time_ms,
        body: Some(body_to_pb(&txn.body)),
    };
    buf.reserve(msg.encoded_len());
    // Encoding into a BytesMut with reserved room cannot fail.
    let _ = msg.encode(buf);
}

/// Decodes a payload written by [`encode_txn`]; the zxid comes from the log frame.
pub fn decode_txn(zxid: i64, payload: Bytes) -> Result<Txn, TxnCodecError> {
    let msg = pb::Txn::decode(payload).map_err(|e| TxnCodecError::Decode(e.to_string()))?;
    Ok(Txn {
        session_id: msg.session_id,
        cxid: msg.cxid,
        zxid,
        time_ms: msg.time_ms,
        body: body_from_pb(msg.body.ok_or(TxnCodecError::NoBody)?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(body: TxnBody) {
        let txn = Txn {
            session_id: 0x1234,
            cxid: 7,
            zxid: 99,
            time_ms: 1_700_000_000_000,
            body,
        };
        let mut buf = BytesMut::new();
        encode_txn(&txn, &mut buf);
        assert_eq!(decode_txn(99, buf.freeze()), Ok(txn));
    }

    #[test]
    fn every_body_round_trips() {
        let acl = vec![
            Acl::new(31, "digest", "u:abc"),
            Acl::new(1, "world", "anyone"),
        ];
        let create = TxnBody::Create {
            path: "/a/b0000000001".into(),
            data: Some(Bytes::from_static(b"x")),
            acl: acl.clone(),
            kind: NodeKind::Ephemeral(0x55),
            parent_cversion: 2,
            op: OpCode::Create2,
        };
        for body in [
            TxnBody::CreateSession { timeout_ms: 30_000 },
            TxnBody::CloseSession,
            create.clone(),
            TxnBody::Create {
                path: "/t".into(),
                data: None,
                acl: acl.clone(),
                kind: NodeKind::Ttl(5000),
                parent_cversion: 0,
                op: OpCode::CreateTtl,
            },
            TxnBody::Create {
                path: "/c".into(),
                data: Some(Bytes::new()),
                acl: acl.clone(),
                kind: NodeKind::Container,
                parent_cversion: 1,
                op: OpCode::CreateContainer,
            },
            TxnBody::Delete { path: "/a".into() },
            TxnBody::SetData {
                path: "/a".into(),
                data: None,
                version: 3,
            },
            TxnBody::SetAcl {
                path: "/a".into(),
                acl,
                version: 1,
            },
            TxnBody::Check {
                path: "/a".into(),
                version: 0,
            },
            TxnBody::Multi(vec![create, TxnBody::Error(ErrorCode::NoNode)]),
            TxnBody::Error(ErrorCode::BadVersion),
        ] {
            round_trip(body);
        }
    }

    #[test]
    fn null_and_empty_data_stay_distinct() {
        for data in [None, Some(Bytes::new())] {
            round_trip(TxnBody::SetData {
                path: "/a".into(),
                data,
                version: 1,
            });
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode_txn(1, Bytes::from_static(&[0xff, 0xff, 0xff])).is_err());
        assert_eq!(
            decode_txn(1, Bytes::new()),
            Err(TxnCodecError::NoBody),
            "an empty record has no body"
        );
    }
}
