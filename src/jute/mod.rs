//! The ZooKeeper client wire format ("jute"), sans I/O.
//!
//! Everything a client and server exchange on the client port is a jute record inside a
//! 4-byte big-endian length-prefixed frame. This module turns frame bodies into typed
//! requests and typed responses back into bytes. It never touches a socket: the connection
//! layer hands it a complete frame and gets bytes back, so every record can be round-trip
//! tested directly.
//!
//! Encoding rules: ints and longs are big-endian, a bool is one byte, strings and buffers are
//! an int32 length followed by the bytes (-1 means null), vectors are an int32 count followed
//! by the items (-1 means null).

pub mod codec;
pub mod error;
pub mod opcode;
pub mod records;
pub mod request;
pub mod response;

pub use codec::{DecodeError, Reader, Writer};
pub use error::ErrorCode;
pub use opcode::OpCode;
pub use records::*;
pub use request::{MultiOp, Request};
pub use response::{OpResult, Response};

/// Special xids carried in reply headers and requests.
pub mod xid {
    /// A watch notification.
    pub const NOTIFICATION: i32 = -1;
    /// A ping and its reply.
    pub const PING: i32 = -2;
    /// An authentication packet and its reply.
    pub const AUTH: i32 = -4;
    /// A setWatches request sent by a reconnecting client.
    pub const SET_WATCHES: i32 = -8;
}

/// Default `jute.maxbuffer`: the largest frame accepted from a client.
pub const DEFAULT_MAX_BUFFER_BYTES: usize = 0xfffff;
