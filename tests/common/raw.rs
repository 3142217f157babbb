//! A tiny hand-written client of the ZooKeeper wire protocol, for the tests that need to send
//! exactly the bytes they want (bad input, pipelining, special xids, old handshakes) or to see
//! exactly the frames the server sends back. Blocking, std only, independent of corral's code.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

pub mod op {
    pub const NOTIFICATION: i32 = 0;
    pub const CREATE: i32 = 1;
    pub const DELETE: i32 = 2;
    pub const EXISTS: i32 = 3;
    pub const GET_DATA: i32 = 4;
    pub const SET_DATA: i32 = 5;
    pub const GET_ACL: i32 = 6;
    pub const SET_ACL: i32 = 7;
    pub const GET_CHILDREN: i32 = 8;
    pub const SYNC: i32 = 9;
    pub const PING: i32 = 11;
    pub const GET_CHILDREN2: i32 = 12;
    pub const CHECK: i32 = 13;
    pub const MULTI: i32 = 14;
    pub const CREATE2: i32 = 15;
    pub const RECONFIG: i32 = 16;
    pub const CHECK_WATCHES: i32 = 17;
    pub const REMOVE_WATCHES: i32 = 18;
    pub const CREATE_CONTAINER: i32 = 19;
    pub const DELETE_CONTAINER: i32 = 20;
    pub const CREATE_TTL: i32 = 21;
    pub const MULTI_READ: i32 = 22;
    pub const AUTH: i32 = 100;
    pub const SET_WATCHES: i32 = 101;
    pub const SASL: i32 = 102;
    pub const GET_EPHEMERALS: i32 = 103;
    pub const GET_ALL_CHILDREN_NUMBER: i32 = 104;
    pub const SET_WATCHES2: i32 = 105;
    pub const ADD_WATCH: i32 = 106;
    pub const WHO_AM_I: i32 = 107;
    pub const CLOSE_SESSION: i32 = -11;
    pub const ERROR: i32 = -1;
}

pub mod err {
    pub const OK: i32 = 0;
    pub const MARSHALLING_ERROR: i32 = -5;
    pub const UNIMPLEMENTED: i32 = -6;
    pub const BAD_ARGUMENTS: i32 = -8;
    pub const NO_NODE: i32 = -101;
    pub const NO_AUTH: i32 = -102;
    pub const BAD_VERSION: i32 = -103;
    pub const NO_CHILDREN_FOR_EPHEMERALS: i32 = -108;
    pub const NODE_EXISTS: i32 = -110;
    pub const NOT_EMPTY: i32 = -111;
    pub const SESSION_EXPIRED: i32 = -112;
    pub const INVALID_ACL: i32 = -114;
    pub const AUTH_FAILED: i32 = -115;
    pub const NO_WATCHER: i32 = -121;
    pub const RECONFIG_DISABLED: i32 = -123;
}

pub mod xid {
    pub const NOTIFICATION: i32 = -1;
    pub const PING: i32 = -2;
    pub const AUTH: i32 = -4;
    pub const SET_WATCHES: i32 = -8;
}

/// Jute encoder.
#[derive(Default, Clone)]
pub struct Enc(Vec<u8>);

impl Enc {
    pub fn new() -> Self {
        Enc(Vec::new())
    }
    pub fn int(mut self, v: i32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn long(mut self, v: i64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn bool(mut self, v: bool) -> Self {
        self.0.push(v as u8);
        self
    }
    pub fn buffer(self, v: &[u8]) -> Self {
        self.int(v.len() as i32).raw(v)
    }
    pub fn null(self) -> Self {
        self.int(-1)
    }
    pub fn string(self, v: &str) -> Self {
        self.buffer(v.as_bytes())
    }
    pub fn strings(mut self, v: &[&str]) -> Self {
        self = self.int(v.len() as i32);
        for s in v {
            self = self.string(s);
        }
        self
    }
    /// Vector of ACLs: (perms, scheme, id).
    pub fn acls(mut self, v: &[(i32, &str, &str)]) -> Self {
        self = self.int(v.len() as i32);
        for (p, s, i) in v {
            self = self.int(*p).string(s).string(i);
        }
        self
    }
    pub fn raw(mut self, v: &[u8]) -> Self {
        self.0.extend_from_slice(v);
        self
    }
    pub fn into_vec(self) -> Vec<u8> {
        self.0
    }
}

pub const WORLD_ALL: &[(i32, &str, &str)] = &[(31, "world", "anyone")];

/// Jute decoder.
pub struct Dec<'a> {
    pub buf: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub czxid: i64,
    pub mzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    pub cversion: i32,
    pub aversion: i32,
    pub ephemeral_owner: i64,
    pub data_length: i32,
    pub num_children: i32,
    pub pzxid: i64,
}

impl<'a> Dec<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Dec { buf }
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        assert!(
            self.buf.len() >= n,
            "short body: need {n}, have {}",
            self.buf.len()
        );
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        a
    }
    pub fn int(&mut self) -> i32 {
        i32::from_be_bytes(self.take(4).try_into().unwrap())
    }
    pub fn long(&mut self) -> i64 {
        i64::from_be_bytes(self.take(8).try_into().unwrap())
    }
    pub fn bool(&mut self) -> bool {
        self.take(1)[0] != 0
    }
    pub fn buffer(&mut self) -> Option<Vec<u8>> {
        let n = self.int();
        if n < 0 {
            None
        } else {
            Some(self.take(n as usize).to_vec())
        }
    }
    pub fn string(&mut self) -> Option<String> {
        self.buffer()
            .map(|b| String::from_utf8(b).expect("utf8 string"))
    }
    pub fn strings(&mut self) -> Vec<String> {
        let n = self.int();
        (0..n.max(0)).map(|_| self.string().unwrap()).collect()
    }
    pub fn stat(&mut self) -> Stat {
        Stat {
            czxid: self.long(),
            mzxid: self.long(),
            ctime: self.long(),
            mtime: self.long(),
            version: self.int(),
            cversion: self.int(),
            aversion: self.int(),
            ephemeral_owner: self.long(),
            data_length: self.int(),
            num_children: self.int(),
            pzxid: self.long(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct ConnectResponse {
    pub protocol_version: i32,
    pub timeout: i32,
    pub session_id: i64,
    pub passwd: Vec<u8>,
    /// `None` when the server sent no trailing readOnly byte.
    pub read_only: Option<bool>,
    /// Length of the whole response frame body.
    pub frame_len: usize,
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub xid: i32,
    pub zxid: i64,
    pub err: i32,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn dec(&self) -> Dec<'_> {
        Dec::new(&self.body)
    }
}

/// A watch notification (xid -1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub zxid: i64,
    pub event_type: i32,
    pub state: i32,
    pub path: String,
}

pub mod event {
    pub const NODE_CREATED: i32 = 1;
    pub const NODE_DELETED: i32 = 2;
    pub const NODE_DATA_CHANGED: i32 = 3;
    pub const NODE_CHILDREN_CHANGED: i32 = 4;
}

pub struct Raw {
    pub stream: TcpStream,
    pub session_id: i64,
    pub passwd: Vec<u8>,
    pub timeout: i32,
    next_xid: i32,
    /// Notifications received while waiting for replies.
    pub events: Vec<Event>,
}

pub fn tcp(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).expect("tcp connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

pub fn connect_request(
    timeout_ms: i32,
    session_id: i64,
    passwd: &[u8],
    read_only: Option<bool>,
) -> Vec<u8> {
    let mut e = Enc::new()
        .int(0)
        .long(0)
        .int(timeout_ms)
        .long(session_id)
        .buffer(passwd);
    if let Some(ro) = read_only {
        e = e.bool(ro);
    }
    frame(&e.into_vec())
}

pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as i32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

/// A whole request frame for a read that takes a path and a watch flag (getData, exists,
/// getChildren), without a watch.
pub fn path_read_frame(xid: i32, opcode: i32, path: &str) -> Vec<u8> {
    frame(
        &Enc::new()
            .int(xid)
            .int(opcode)
            .string(path)
            .bool(false)
            .into_vec(),
    )
}

/// Read one length-prefixed frame from `s`.
pub fn read_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let n = i32::from_be_bytes(len);
    assert!(n >= 0, "negative frame length from server");
    let mut body = vec![0u8; n as usize];
    s.read_exact(&mut body)?;
    Ok(body)
}

pub fn parse_connect_response(body: &[u8]) -> ConnectResponse {
    let mut d = Dec::new(body);
    let protocol_version = d.int();
    let timeout = d.int();
    let session_id = d.long();
    let passwd = d.buffer().unwrap_or_default();
    let read_only = if d.is_empty() { None } else { Some(d.bool()) };
    ConnectResponse {
        protocol_version,
        timeout,
        session_id,
        passwd,
        read_only,
        frame_len: body.len(),
    }
}

/// Whether the peer closes `s` (EOF or reset) before the deadline. Frames received in between
/// are discarded.
pub fn wait_closed(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                if start.elapsed() > super::DEADLINE {
                    return false;
                }
            }
            Err(_) => return true,
        }
    }
}

impl Raw {
    /// Handshake with the modern ConnectRequest (with readOnly=false).
    pub fn connect(addr: &str, timeout_ms: i32) -> Raw {
        let (r, resp) = Raw::handshake(addr, timeout_ms, 0, &[0u8; 16], Some(false));
        assert!(resp.session_id != 0, "session not established: {resp:?}");
        r
    }

    /// Full control over the ConnectRequest. Returns the connection and the parsed response.
    pub fn handshake(
        addr: &str,
        timeout_ms: i32,
        session_id: i64,
        passwd: &[u8],
        read_only: Option<bool>,
    ) -> (Raw, ConnectResponse) {
        let mut s = tcp(addr);
        s.write_all(&connect_request(timeout_ms, session_id, passwd, read_only))
            .unwrap();
        let body = read_frame(&mut s).expect("read ConnectResponse");
        let resp = parse_connect_response(&body);
        (Raw::established(s, &resp), resp)
    }

    /// A connection whose handshake the caller did itself and whose answer was `resp`.
    pub fn established(stream: TcpStream, resp: &ConnectResponse) -> Raw {
        Raw {
            stream,
            session_id: resp.session_id,
            passwd: resp.passwd.clone(),
            timeout: resp.timeout,
            next_xid: 1,
            events: Vec::new(),
        }
    }

    pub fn next_xid(&mut self) -> i32 {
        let x = self.next_xid;
        self.next_xid += 1;
        x
    }

    pub fn write_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Send a request with an explicit xid.
    pub fn send(&mut self, xid: i32, opcode: i32, body: &[u8]) {
        let b = Enc::new().int(xid).int(opcode).raw(body).into_vec();
        self.stream.write_all(&frame(&b)).expect("write request");
    }

    /// Read the next frame, whatever it is (reply or notification), as a Reply.
    pub fn read_any(&mut self) -> std::io::Result<Reply> {
        let body = read_frame(&mut self.stream)?;
        let mut d = Dec::new(&body);
        let xid = d.int();
        let zxid = d.long();
        let err = d.int();
        Ok(Reply {
            xid,
            zxid,
            err,
            body: d.buf.to_vec(),
        })
    }

    /// Read frames until a reply that is not a notification arrives; notifications are
    /// stored in `self.events`.
    pub fn read_reply(&mut self) -> Reply {
        loop {
            let r = self.read_any().expect("read reply");
            if r.xid == xid::NOTIFICATION {
                self.events.push(parse_event(&r));
                continue;
            }
            return r;
        }
    }

    /// Send a request with the next xid and wait for its reply.
    pub fn call(&mut self, opcode: i32, body: &[u8]) -> Reply {
        let xid = self.next_xid();
        self.send(xid, opcode, body);
        let r = self.read_reply();
        assert_eq!(r.xid, xid, "reply xid");
        r
    }

    /// Wait for the next notification (returns a buffered one first).
    pub fn next_event(&mut self) -> Event {
        if !self.events.is_empty() {
            return self.events.remove(0);
        }
        loop {
            let r = self.read_any().expect("read event");
            if r.xid == xid::NOTIFICATION {
                return parse_event(&r);
            }
            assert_eq!(
                r.xid,
                xid::PING,
                "unexpected frame while waiting for event: {r:?}"
            );
        }
    }

    pub fn close_session(&mut self) {
        let xid = self.next_xid();
        self.send(xid, op::CLOSE_SESSION, &[]);
        let _ = self.read_reply();
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Whether the server closes this connection.
    pub fn wait_closed(&mut self) -> bool {
        wait_closed(&mut self.stream)
    }

    // ---- helpers for common requests -----------------------------------------------------

    pub fn create(&mut self, path: &str, data: &[u8], flags: i32) -> Reply {
        let b = Enc::new()
            .string(path)
            .buffer(data)
            .acls(WORLD_ALL)
            .int(flags)
            .into_vec();
        self.call(op::CREATE, &b)
    }

    pub fn get_data(&mut self, path: &str, watch: bool) -> Reply {
        self.call(
            op::GET_DATA,
            &Enc::new().string(path).bool(watch).into_vec(),
        )
    }

    pub fn exists(&mut self, path: &str, watch: bool) -> Reply {
        self.call(op::EXISTS, &Enc::new().string(path).bool(watch).into_vec())
    }

    pub fn set_data(&mut self, path: &str, data: &[u8], version: i32) -> Reply {
        self.call(
            op::SET_DATA,
            &Enc::new().string(path).buffer(data).int(version).into_vec(),
        )
    }

    pub fn delete(&mut self, path: &str, version: i32) -> Reply {
        self.call(op::DELETE, &Enc::new().string(path).int(version).into_vec())
    }

    pub fn get_children(&mut self, path: &str, watch: bool) -> Reply {
        self.call(
            op::GET_CHILDREN,
            &Enc::new().string(path).bool(watch).into_vec(),
        )
    }
}

pub fn parse_event(r: &Reply) -> Event {
    let mut d = r.dec();
    let event_type = d.int();
    let state = d.int();
    let path = d.string().unwrap_or_default();
    Event {
        zxid: r.zxid,
        event_type,
        state,
        path,
    }
}
