//! Reply bodies, encoded after the reply header. An error reply has a header with a non-zero
//! `err` and no body (`Response::Empty`).

use bytes::Bytes;

use super::codec::{DecodeError, Reader, Writer};
use super::opcode::OpCode;
use super::records::{Acl, ClientInfo, Stat, WatcherEvent};
use super::ErrorCode;

/// One result inside a multi or multiRead reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    /// From a plain create (opcode 1): path only.
    Create {
        path: String,
    },
    /// From create2/createContainer/createTTL, and from every create in 3.9 multis: path + stat.
    Create2 {
        path: String,
        stat: Stat,
    },
    Delete,
    SetData {
        stat: Stat,
    },
    Check,
    GetChildren {
        children: Vec<String>,
    },
    GetData {
        data: Option<Bytes>,
        stat: Stat,
    },
    Error(ErrorCode),
}

impl OpResult {
    fn op_code(&self) -> OpCode {
        match self {
            OpResult::Create { .. } => OpCode::Create,
            OpResult::Create2 { .. } => OpCode::Create2,
            OpResult::Delete => OpCode::Delete,
            OpResult::SetData { .. } => OpCode::SetData,
            OpResult::Check => OpCode::Check,
            OpResult::GetChildren { .. } => OpCode::GetChildren,
            OpResult::GetData { .. } => OpCode::GetData,
            OpResult::Error(_) => OpCode::Error,
        }
    }
}

/// A reply body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// No body: errors, delete, ping, sync-less acks, setWatches, auth, closeSession.
    Empty,
    /// create (1).
    Create {
        path: String,
    },
    /// create2, createContainer, createTTL (all answer with a Create2Response).
    Create2 {
        path: String,
        stat: Stat,
    },
    /// exists, setData, setACL.
    Stat(Stat),
    GetData {
        data: Option<Bytes>,
        stat: Stat,
    },
    GetAcl {
        acl: Vec<Acl>,
        stat: Stat,
    },
    GetChildren {
        children: Vec<String>,
    },
    GetChildren2 {
        children: Vec<String>,
        stat: Stat,
    },
    Sync {
        path: String,
    },
    Multi(Vec<OpResult>),
    GetEphemerals {
        paths: Vec<String>,
    },
    GetAllChildrenNumber {
        total: i32,
    },
    WhoAmI(Vec<ClientInfo>),
    /// reconfig and getConfig-like replies return the config node's data and stat.
    Reconfig {
        data: Option<Bytes>,
        stat: Stat,
    },
    /// A SASL challenge; `None` is a null token (SASL not configured).
    Sasl {
        token: Option<Bytes>,
    },
    /// An `ErrorResponse` record: addWatch answers with one of these carrying 0.
    ErrorBody(ErrorCode),
    /// The body of a notification (xid -1).
    Watch(WatcherEvent),
}

impl Response {
    pub fn encode(&self, w: &mut Writer) {
        match self {
            Response::Empty => {}
            Response::Create { path } | Response::Sync { path } => w.write_string(path),
            Response::Create2 { path, stat } => {
                w.write_string(path);
                stat.write(w);
            }
            Response::Stat(stat) => stat.write(w),
            Response::GetData { data, stat } | Response::Reconfig { data, stat } => {
                w.write_buffer(data.as_deref());
                stat.write(w);
            }
            Response::GetAcl { acl, stat } => {
                Acl::write_vec(acl, w);
                stat.write(w);
            }
            Response::GetChildren { children } => w.write_string_vec(children),
            Response::GetChildren2 { children, stat } => {
                w.write_string_vec(children);
                stat.write(w);
            }
            Response::Multi(results) => {
                for res in results {
                    let err = match res {
                        OpResult::Error(e) => e.code(),
                        _ => 0,
                    };
                    w.write_i32(res.op_code().code());
                    w.write_bool(false);
                    w.write_i32(err);
                    match res {
                        OpResult::Create { path } => w.write_string(path),
                        OpResult::Create2 { path, stat } => {
                            w.write_string(path);
                            stat.write(w);
                        }
                        OpResult::Delete | OpResult::Check => {}
                        OpResult::SetData { stat } => stat.write(w),
                        OpResult::GetChildren { children } => w.write_string_vec(children),
                        OpResult::GetData { data, stat } => {
                            w.write_buffer(data.as_deref());
                            stat.write(w);
                        }
                        OpResult::Error(e) => w.write_i32(e.code()),
                    }
                }
                w.write_i32(-1);
                w.write_bool(true);
                w.write_i32(-1);
            }
            Response::GetEphemerals { paths } => w.write_string_vec(paths),
            Response::GetAllChildrenNumber { total } => w.write_i32(*total),
            Response::WhoAmI(infos) => w.write_vec(infos, |w, i| {
                w.write_string(&i.auth_scheme);
                w.write_string(&i.user);
            }),
            Response::Sasl { token } => w.write_buffer(token.as_deref()),
            Response::ErrorBody(e) => w.write_i32(e.code()),
            Response::Watch(ev) => ev.write(w),
        }
    }

    /// Decodes a multi reply body (used by the load generator and tests).
    pub fn decode_multi(r: &mut Reader) -> Result<Vec<OpResult>, DecodeError> {
        let mut out = Vec::new();
        loop {
            let op = r.read_i32()?;
            let done = r.read_bool()?;
            let err = r.read_i32()?;
            if done {
                return Ok(out);
            }
            let res = match OpCode::from_code(op) {
                Some(OpCode::Create) => OpResult::Create {
                    path: r.read_string()?,
                },
                Some(OpCode::Create2) => OpResult::Create2 {
                    path: r.read_string()?,
                    stat: Stat::read(r)?,
                },
                Some(OpCode::Delete) => OpResult::Delete,
                Some(OpCode::Check) => OpResult::Check,
                Some(OpCode::SetData) => OpResult::SetData {
                    stat: Stat::read(r)?,
                },
                Some(OpCode::GetChildren) => OpResult::GetChildren {
                    children: r.read_string_vec()?,
                },
                Some(OpCode::GetData) => OpResult::GetData {
                    data: r.read_buffer()?,
                    stat: Stat::read(r)?,
                },
                Some(OpCode::Error) => {
                    let code = r.read_i32()?;
                    let _ = err;
                    OpResult::Error(
                        ErrorCode::from_code(code).ok_or(DecodeError::Invalid("error code"))?,
                    )
                }
                _ => return Err(DecodeError::UnknownOpCode(op)),
            };
            out.push(res);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_reply_round_trips_with_terminator() {
        let results = vec![
            OpResult::Create2 {
                path: "/a".into(),
                stat: Stat {
                    czxid: 3,
                    ..Stat::default()
                },
            },
            OpResult::Delete,
            OpResult::Error(ErrorCode::NoNode),
            OpResult::GetData {
                data: None,
                stat: Stat::default(),
            },
        ];
        let mut w = Writer::new();
        Response::Multi(results.clone()).encode(&mut w);
        let bytes = w.into_inner().freeze();
        // The final header is {type -1, done true, err -1}.
        assert_eq!(
            &bytes[bytes.len() - 9..],
            &[0xff, 0xff, 0xff, 0xff, 1, 0xff, 0xff, 0xff, 0xff]
        );
        let mut r = Reader::new(bytes);
        assert_eq!(Response::decode_multi(&mut r).unwrap(), results);
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn null_data_is_written_as_minus_one() {
        let mut w = Writer::new();
        Response::GetData {
            data: None,
            stat: Stat::default(),
        }
        .encode(&mut w);
        let bytes = w.into_inner();
        assert_eq!(&bytes[..4], &[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(bytes.len(), 4 + 68);
    }
}
