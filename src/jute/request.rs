//! Client requests: one enum variant per opcode family, decoded from the body that follows the
//! request header.
//!
//! Variants keep the opcode where one record serves several opcodes (create/create2/
//! createContainer/createTTL share a shape but differ in their replies).

use bytes::Bytes;

use super::codec::{DecodeError, Reader, Writer};
use super::opcode::OpCode;
use super::records::{Acl, Id};

/// create, create2, createContainer and createTTL. `ttl_ms` is -1 unless `op` is CreateTtl.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRequest {
    pub op: OpCode,
    pub path: String,
    pub data: Option<Bytes>,
    pub acl: Vec<Acl>,
    pub flags: i32,
    pub ttl_ms: i64,
}

/// One operation inside a multi or multiRead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiOp {
    Create(CreateRequest),
    Delete {
        path: String,
        version: i32,
    },
    SetData {
        path: String,
        data: Option<Bytes>,
        version: i32,
    },
    Check {
        path: String,
        version: i32,
    },
    GetChildren {
        path: String,
    },
    GetData {
        path: String,
    },
}

impl MultiOp {
    pub fn op_code(&self) -> OpCode {
        match self {
            MultiOp::Create(c) => c.op,
            MultiOp::Delete { .. } => OpCode::Delete,
            MultiOp::SetData { .. } => OpCode::SetData,
            MultiOp::Check { .. } => OpCode::Check,
            MultiOp::GetChildren { .. } => OpCode::GetChildren,
            MultiOp::GetData { .. } => OpCode::GetData,
        }
    }

    pub fn path(&self) -> &str {
        match self {
            MultiOp::Create(c) => &c.path,
            MultiOp::Delete { path, .. }
            | MultiOp::SetData { path, .. }
            | MultiOp::Check { path, .. }
            | MultiOp::GetChildren { path }
            | MultiOp::GetData { path } => path,
        }
    }
}

/// setWatches (101) and setWatches2 (105); the first has no persistent lists.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SetWatches {
    pub relative_zxid: i64,
    pub data: Vec<String>,
    pub exist: Vec<String>,
    pub child: Vec<String>,
    pub persistent: Vec<String>,
    pub persistent_recursive: Vec<String>,
}

/// A decoded client request (everything after the request header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Ping,
    CloseSession,
    Create(CreateRequest),
    Delete {
        path: String,
        version: i32,
    },
    DeleteContainer {
        path: String,
    },
    Exists {
        path: String,
        watch: bool,
    },
    GetData {
        path: String,
        watch: bool,
    },
    SetData {
        path: String,
        data: Option<Bytes>,
        version: i32,
    },
    GetAcl {
        path: String,
    },
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        version: i32,
    },
    /// getChildren (8) when `with_stat` is false, getChildren2 (12) when true.
    GetChildren {
        path: String,
        watch: bool,
        with_stat: bool,
    },
    Sync {
        path: String,
    },
    Check {
        path: String,
        version: i32,
    },
    Multi(Vec<MultiOp>),
    MultiRead(Vec<MultiOp>),
    Reconfig {
        joining: Option<String>,
        leaving: Option<String>,
        new_members: Option<String>,
        current_config_id: i64,
    },
    CheckWatches {
        path: String,
        watcher_type: i32,
    },
    RemoveWatches {
        path: String,
        watcher_type: i32,
    },
    Auth {
        auth_type: i32,
        scheme: String,
        auth: Bytes,
    },
    SetWatches(SetWatches),
    Sasl {
        token: Bytes,
    },
    GetEphemerals {
        prefix_path: String,
    },
    GetAllChildrenNumber {
        path: String,
    },
    AddWatch {
        path: String,
        mode: i32,
    },
    WhoAmI,
}

fn read_create(op: OpCode, r: &mut Reader) -> Result<CreateRequest, DecodeError> {
    let path = r.read_path()?;
    let data = r.read_buffer()?;
    let acl = Acl::read_vec(r)?;
    let flags = r.read_i32()?;
    let ttl_ms = if op == OpCode::CreateTtl {
        r.read_i64()?
    } else {
        -1
    };
    Ok(CreateRequest {
        op,
        path,
        data,
        acl,
        flags,
        ttl_ms,
    })
}

fn write_create(c: &CreateRequest, w: &mut Writer) {
    w.write_string(&c.path);
    w.write_buffer(c.data.as_deref());
    Acl::write_vec(&c.acl, w);
    w.write_i32(c.flags);
    if c.op == OpCode::CreateTtl {
        w.write_i64(c.ttl_ms);
    }
}

fn read_multi(r: &mut Reader) -> Result<Vec<MultiOp>, DecodeError> {
    let mut ops = Vec::new();
    loop {
        let op_type = r.read_i32()?;
        let done = r.read_bool()?;
        let _err = r.read_i32()?;
        if done {
            return Ok(ops);
        }
        let op = OpCode::from_code(op_type).ok_or(DecodeError::UnknownOpCode(op_type))?;
        let item = match op {
            OpCode::Create | OpCode::Create2 | OpCode::CreateContainer | OpCode::CreateTtl => {
                MultiOp::Create(read_create(op, r)?)
            }
            OpCode::Delete => MultiOp::Delete {
                path: r.read_path()?,
                version: r.read_i32()?,
            },
            OpCode::SetData => MultiOp::SetData {
                path: r.read_path()?,
                data: r.read_buffer()?,
                version: r.read_i32()?,
            },
            OpCode::Check => MultiOp::Check {
                path: r.read_path()?,
                version: r.read_i32()?,
            },
            OpCode::GetChildren => {
                let path = r.read_path()?;
                let _watch = r.read_bool()?;
                MultiOp::GetChildren { path }
            }
            OpCode::GetData => {
                let path = r.read_path()?;
                let _watch = r.read_bool()?;
                MultiOp::GetData { path }
            }
            _ => return Err(DecodeError::Invalid("operation not allowed inside a multi")),
        };
        ops.push(item);
    }
}

fn write_multi(ops: &[MultiOp], w: &mut Writer) {
    for op in ops {
        w.write_i32(op.op_code().code());
        w.write_bool(false);
        w.write_i32(-1);
        match op {
            MultiOp::Create(c) => write_create(c, w),
            MultiOp::Delete { path, version } | MultiOp::Check { path, version } => {
                w.write_string(path);
                w.write_i32(*version);
            }
            MultiOp::SetData {
                path,
                data,
                version,
            } => {
                w.write_string(path);
                w.write_buffer(data.as_deref());
                w.write_i32(*version);
            }
            MultiOp::GetChildren { path } | MultiOp::GetData { path } => {
                w.write_string(path);
                w.write_bool(false);
            }
        }
    }
    w.write_i32(-1);
    w.write_bool(true);
    w.write_i32(-1);
}

impl Request {
    /// Decodes the body of a request whose header carried `op_code`.
    pub fn decode(op_code: i32, r: &mut Reader) -> Result<Request, DecodeError> {
        let op = OpCode::from_code(op_code).ok_or(DecodeError::UnknownOpCode(op_code))?;
        let req = match op {
            OpCode::Ping => Request::Ping,
            OpCode::CloseSession => Request::CloseSession,
            OpCode::Create | OpCode::Create2 | OpCode::CreateContainer | OpCode::CreateTtl => {
                Request::Create(read_create(op, r)?)
            }
            OpCode::Delete => Request::Delete {
                path: r.read_path()?,
                version: r.read_i32()?,
            },
            OpCode::DeleteContainer => Request::DeleteContainer {
                path: r.read_path()?,
            },
            OpCode::Exists => Request::Exists {
                path: r.read_path()?,
                watch: r.read_bool()?,
            },
            OpCode::GetData => Request::GetData {
                path: r.read_path()?,
                watch: r.read_bool()?,
            },
            OpCode::SetData => Request::SetData {
                path: r.read_path()?,
                data: r.read_buffer()?,
                version: r.read_i32()?,
            },
            OpCode::GetAcl => Request::GetAcl {
                path: r.read_path()?,
            },
            OpCode::SetAcl => Request::SetAcl {
                path: r.read_path()?,
                acl: Acl::read_vec(r)?,
                version: r.read_i32()?,
            },
            OpCode::GetChildren | OpCode::GetChildren2 => Request::GetChildren {
                path: r.read_path()?,
                watch: r.read_bool()?,
                with_stat: op == OpCode::GetChildren2,
            },
            OpCode::Sync => Request::Sync {
                path: r.read_path()?,
            },
            OpCode::Check => Request::Check {
                path: r.read_path()?,
                version: r.read_i32()?,
            },
            OpCode::Multi => Request::Multi(read_multi(r)?),
            OpCode::MultiRead => Request::MultiRead(read_multi(r)?),
            OpCode::Reconfig => Request::Reconfig {
                joining: r.read_opt_string()?,
                leaving: r.read_opt_string()?,
                new_members: r.read_opt_string()?,
                current_config_id: r.read_i64()?,
            },
            OpCode::CheckWatches => Request::CheckWatches {
                path: r.read_path()?,
                watcher_type: r.read_i32()?,
            },
            OpCode::RemoveWatches => Request::RemoveWatches {
                path: r.read_path()?,
                watcher_type: r.read_i32()?,
            },
            OpCode::Auth => Request::Auth {
                auth_type: r.read_i32()?,
                scheme: r.read_string()?,
                auth: r.read_buffer()?.unwrap_or_default(),
            },
            OpCode::SetWatches | OpCode::SetWatches2 => {
                let mut sw = SetWatches {
                    relative_zxid: r.read_i64()?,
                    data: r.read_string_vec()?,
                    exist: r.read_string_vec()?,
                    child: r.read_string_vec()?,
                    ..SetWatches::default()
                };
                if op == OpCode::SetWatches2 {
                    sw.persistent = r.read_string_vec()?;
                    sw.persistent_recursive = r.read_string_vec()?;
                }
                Request::SetWatches(sw)
            }
            OpCode::Sasl => Request::Sasl {
                token: r.read_buffer()?.unwrap_or_default(),
            },
            OpCode::GetEphemerals => Request::GetEphemerals {
                prefix_path: r.read_path()?,
            },
            OpCode::GetAllChildrenNumber => Request::GetAllChildrenNumber {
                path: r.read_path()?,
            },
            OpCode::AddWatch => Request::AddWatch {
                path: r.read_path()?,
                mode: r.read_i32()?,
            },
            OpCode::WhoAmI => Request::WhoAmI,
            OpCode::Notification | OpCode::CreateSession | OpCode::Error => {
                return Err(DecodeError::UnknownOpCode(op_code))
            }
        };
        Ok(req)
    }

    /// The opcode this request travels under.
    pub fn op_code(&self) -> OpCode {
        match self {
            Request::Ping => OpCode::Ping,
            Request::CloseSession => OpCode::CloseSession,
            Request::Create(c) => c.op,
            Request::Delete { .. } => OpCode::Delete,
            Request::DeleteContainer { .. } => OpCode::DeleteContainer,
            Request::Exists { .. } => OpCode::Exists,
            Request::GetData { .. } => OpCode::GetData,
            Request::SetData { .. } => OpCode::SetData,
            Request::GetAcl { .. } => OpCode::GetAcl,
            Request::SetAcl { .. } => OpCode::SetAcl,
            Request::GetChildren {
                with_stat: false, ..
            } => OpCode::GetChildren,
            Request::GetChildren {
                with_stat: true, ..
            } => OpCode::GetChildren2,
            Request::Sync { .. } => OpCode::Sync,
            Request::Check { .. } => OpCode::Check,
            Request::Multi(_) => OpCode::Multi,
            Request::MultiRead(_) => OpCode::MultiRead,
            Request::Reconfig { .. } => OpCode::Reconfig,
            Request::CheckWatches { .. } => OpCode::CheckWatches,
            Request::RemoveWatches { .. } => OpCode::RemoveWatches,
            Request::Auth { .. } => OpCode::Auth,
            Request::SetWatches(sw) => {
                if sw.persistent.is_empty() && sw.persistent_recursive.is_empty() {
                    OpCode::SetWatches
                } else {
                    OpCode::SetWatches2
                }
            }
            Request::Sasl { .. } => OpCode::Sasl,
            Request::GetEphemerals { .. } => OpCode::GetEphemerals,
            Request::GetAllChildrenNumber { .. } => OpCode::GetAllChildrenNumber,
            Request::AddWatch { .. } => OpCode::AddWatch,
            Request::WhoAmI => OpCode::WhoAmI,
        }
    }

    /// Encodes the body (without the request header). Used by the load generator and tests.
    pub fn encode(&self, w: &mut Writer) {
        match self {
            Request::Ping | Request::CloseSession | Request::WhoAmI => {}
            Request::Create(c) => write_create(c, w),
            Request::Delete { path, version } | Request::Check { path, version } => {
                w.write_string(path);
                w.write_i32(*version);
            }
            Request::DeleteContainer { path }
            | Request::GetAcl { path }
            | Request::Sync { path }
            | Request::GetAllChildrenNumber { path } => w.write_string(path),
            Request::GetEphemerals { prefix_path } => w.write_string(prefix_path),
            Request::Exists { path, watch }
            | Request::GetData { path, watch }
            | Request::GetChildren { path, watch, .. } => {
                w.write_string(path);
                w.write_bool(*watch);
            }
            Request::SetData {
                path,
                data,
                version,
            } => {
                w.write_string(path);
                w.write_buffer(data.as_deref());
                w.write_i32(*version);
            }
            Request::SetAcl { path, acl, version } => {
                w.write_string(path);
                Acl::write_vec(acl, w);
                w.write_i32(*version);
            }
            Request::Multi(ops) | Request::MultiRead(ops) => write_multi(ops, w),
            Request::Reconfig {
                joining,
                leaving,
                new_members,
                current_config_id,
            } => {
                for s in [joining, leaving, new_members] {
                    match s {
                        Some(s) => w.write_string(s),
                        None => w.write_i32(-1),
                    }
                }
                w.write_i64(*current_config_id);
            }
            Request::CheckWatches { path, watcher_type }
            | Request::RemoveWatches { path, watcher_type } => {
                w.write_string(path);
                w.write_i32(*watcher_type);
            }
            Request::Auth {
                auth_type,
                scheme,
                auth,
            } => {
                w.write_i32(*auth_type);
                w.write_string(scheme);
                w.write_buffer(Some(auth));
            }
            Request::SetWatches(sw) => {
                w.write_i64(sw.relative_zxid);
                w.write_string_vec(&sw.data);
                w.write_string_vec(&sw.exist);
                w.write_string_vec(&sw.child);
                if self.op_code() == OpCode::SetWatches2 {
                    w.write_string_vec(&sw.persistent);
                    w.write_string_vec(&sw.persistent_recursive);
                }
            }
            Request::Sasl { token } => w.write_buffer(Some(token)),
            Request::AddWatch { path, mode } => {
                w.write_string(path);
                w.write_i32(*mode);
            }
        }
    }
}

/// Convenience for building a digest identity in tests and tools.
pub fn digest_id(user_and_digest: &str) -> Id {
    Id::new("digest", user_and_digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(req: Request) {
        let mut w = Writer::new();
        req.encode(&mut w);
        let bytes = w.into_inner().freeze();
        let mut r = Reader::new(bytes);
        let back = Request::decode(req.op_code().code(), &mut r).unwrap();
        assert_eq!(back, req);
        assert_eq!(r.remaining(), 0, "trailing bytes after {req:?}");
    }

    /// One request of every kind the server decodes.
    fn samples() -> Vec<Request> {
        let create = CreateRequest {
            op: OpCode::CreateTtl,
            path: "/a".into(),
            data: Some(Bytes::from_static(b"x")),
            acl: Acl::open_unsafe(),
            flags: 5,
            ttl_ms: 1000,
        };
        vec![
            Request::Ping,
            Request::CloseSession,
            Request::WhoAmI,
            Request::Create(create.clone()),
            Request::Create(CreateRequest {
                op: OpCode::Create2,
                data: None,
                ttl_ms: -1,
                ..create.clone()
            }),
            Request::Delete {
                path: "/a".into(),
                version: -1,
            },
            Request::DeleteContainer { path: "/c".into() },
            Request::Exists {
                path: "/a".into(),
                watch: true,
            },
            Request::GetData {
                path: "/a".into(),
                watch: false,
            },
            Request::SetData {
                path: "/a".into(),
                data: Some(Bytes::from_static(b"yy")),
                version: 3,
            },
            Request::GetAcl { path: "/a".into() },
            Request::SetAcl {
                path: "/a".into(),
                acl: Acl::read_unsafe(),
                version: 0,
            },
            Request::GetChildren {
                path: "/".into(),
                watch: true,
                with_stat: true,
            },
            Request::GetChildren {
                path: "/".into(),
                watch: false,
                with_stat: false,
            },
            Request::Sync { path: "/".into() },
            Request::Check {
                path: "/a".into(),
                version: 1,
            },
            Request::Multi(vec![
                MultiOp::Create(CreateRequest {
                    op: OpCode::Create,
                    ttl_ms: -1,
                    ..create.clone()
                }),
                MultiOp::Create(create.clone()),
                MultiOp::Delete {
                    path: "/b".into(),
                    version: 2,
                },
                MultiOp::SetData {
                    path: "/c".into(),
                    data: None,
                    version: -1,
                },
                MultiOp::Check {
                    path: "/d".into(),
                    version: 0,
                },
            ]),
            Request::MultiRead(vec![
                MultiOp::GetChildren { path: "/".into() },
                MultiOp::GetData { path: "/a".into() },
            ]),
            Request::Reconfig {
                joining: None,
                leaving: Some("1".into()),
                new_members: None,
                current_config_id: -1,
            },
            Request::CheckWatches {
                path: "/a".into(),
                watcher_type: 3,
            },
            Request::RemoveWatches {
                path: "/a".into(),
                watcher_type: 1,
            },
            Request::Auth {
                auth_type: 0,
                scheme: "digest".into(),
                auth: Bytes::from_static(b"u:p"),
            },
            Request::SetWatches(SetWatches {
                relative_zxid: 9,
                data: vec!["/a".into()],
                exist: vec![],
                child: vec!["/".into()],
                ..SetWatches::default()
            }),
            Request::SetWatches(SetWatches {
                relative_zxid: 9,
                persistent: vec!["/p".into()],
                persistent_recursive: vec!["/r".into()],
                ..SetWatches::default()
            }),
            Request::Sasl {
                token: Bytes::from_static(b"t"),
            },
            Request::GetEphemerals {
                prefix_path: "/".into(),
            },
            Request::GetAllChildrenNumber { path: "/".into() },
            Request::AddWatch {
                path: "/".into(),
                mode: 1,
            },
        ]
    }

    #[test]
    fn every_request_round_trips() {
        for req in samples() {
            round_trip(req);
        }
    }

    /// Decodes `bytes` as a request of `op`; whatever the bytes, the answer is a value or an
    /// error (a panic fails the test, a huge length claim would abort it).
    fn decode_bytes(op: i32, bytes: Vec<u8>) -> Result<Request, DecodeError> {
        Request::decode(op, &mut Reader::new(Bytes::from(bytes)))
    }

    #[test]
    fn every_truncated_request_is_an_error() {
        for req in samples() {
            let mut w = Writer::new();
            req.encode(&mut w);
            let bytes = w.into_inner().to_vec();
            let op = req.op_code().code();
            for cut in 0..bytes.len() {
                let r = decode_bytes(op, bytes[..cut].to_vec());
                // Requests without a body (ping, closeSession, whoAmI) decode from nothing.
                assert!(
                    r.is_err() || bytes.is_empty(),
                    "{req:?} cut to {cut} of {} bytes decoded as {r:?}",
                    bytes.len()
                );
            }
        }
    }

    #[test]
    fn mutated_requests_decode_or_fail_without_panicking() {
        // A fixed xorshift sequence: the same mutations on every run.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let lengths: [i32; 6] = [-2, -1, 0, 1, i32::MAX, i32::MIN];
        let (mut decoded, mut failed) = (0, 0);
        for req in samples() {
            let mut w = Writer::new();
            req.encode(&mut w);
            let bytes = w.into_inner().to_vec();
            let op = req.op_code().code();
            for _ in 0..2_000 {
                let mut m = bytes.clone();
                match next() % 3 {
                    // Flip a few bits.
                    0 if !m.is_empty() => {
                        for _ in 0..1 + next() % 4 {
                            let i = (next() as usize) % m.len();
                            m[i] ^= 1 << (next() % 8);
                        }
                    }
                    // Overwrite four bytes with a length a hostile client might claim.
                    1 if m.len() >= 4 => {
                        let i = (next() as usize) % (m.len() - 3);
                        let len = lengths[(next() as usize) % lengths.len()];
                        m[i..i + 4].copy_from_slice(&len.to_be_bytes());
                    }
                    // Append garbage.
                    _ => m.extend((0..1 + next() % 16).map(|_| next() as u8)),
                }
                match decode_bytes(op, m) {
                    Ok(_) => decoded += 1,
                    Err(_) => failed += 1,
                }
            }
        }
        // Both outcomes happen, so the mutations reached past the first field.
        assert!(
            decoded > 0 && failed > 0,
            "decoded {decoded}, failed {failed}"
        );
    }

    #[test]
    fn unknown_opcode_and_illegal_multi_op_are_errors() {
        let mut r = Reader::new(Bytes::new());
        assert_eq!(
            Request::decode(999, &mut r),
            Err(DecodeError::UnknownOpCode(999))
        );
        // A multi containing a sync (9) is rejected.
        let mut w = Writer::new();
        w.write_i32(9);
        w.write_bool(false);
        w.write_i32(-1);
        w.write_string("/");
        let mut r = Reader::new(w.into_inner().freeze());
        assert!(Request::decode(14, &mut r).is_err());
    }
}
