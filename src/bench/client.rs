//! A minimal asynchronous, pipelined ZooKeeper client over the jute codec, made for load
//! generation.
//!
//! One [`Connection`] is one TCP connection carrying one session. [`Connection::run_phase`]
//! drives it with two cooperating loops polled by the same task: the writer keeps up to
//! `in_flight` requests outstanding, encoding every request it may send into one buffer and
//! writing it with one system call; the reader takes every complete reply out of what one read
//! returned, matches each to the oldest outstanding request (ZooKeeper answers a session's
//! requests in order, so the xids must match), and records the latencies of the whole batch
//! under one lock. Pings go out when the writer has been idle for a third of the session
//! timeout. Nothing the server sends is trusted: every malformed frame is a typed error.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore};

use super::report::Stats;
use super::workload::{encode_header_only, OpKind, OpSource};
use crate::jute::{
    xid, ConnectRequest, ConnectResponse, DecodeError, OpCode, Reader, ReplyHeader, Response,
    Writer,
};

/// The largest reply frame accepted (ZooKeeper's default jute.maxbuffer is 1 MiB; a
/// getChildren of a big directory can exceed it, so allow more).
pub const MAX_FRAME_BYTES: usize = 64 << 20;

/// Why a connection failed.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("connection to {addr} lost: {source}")]
    Io { addr: String, source: io::Error },
    #[error("connection to {addr} closed by the server")]
    Closed { addr: String },
    #[error("{addr} refused the session (expired or invalid: timeout {timeout_ms} ms)")]
    SessionRefused { addr: String, timeout_ms: i32 },
    #[error("bad frame from {addr}: {source}")]
    Decode { addr: String, source: DecodeError },
    #[error("bad frame length {len} from {addr}")]
    FrameLength { addr: String, len: i64 },
    #[error("reply xid {got} from {addr} does not match the oldest outstanding request (xid {expected:?})")]
    XidMismatch {
        addr: String,
        got: i32,
        expected: Option<i32>,
    },
    #[error("no reply from {addr} for {} with {outstanding} requests outstanding", span(*.waited))]
    Stalled {
        addr: String,
        waited: Duration,
        outstanding: usize,
    },
}

/// A wait as people write it: "30 s" for whole seconds, "1500 ms" otherwise.
pub fn span(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// A request sent and not yet answered.
#[derive(Debug, Clone, Copy)]
struct Pending {
    xid: i32,
    kind: OpKind,
    sent: Instant,
}

/// How one phase of a run is driven.
#[derive(Debug, Clone)]
pub struct PhaseCtl {
    /// The writer sends nothing after this instant.
    pub end: Option<Instant>,
    /// Replies to requests sent before this instant are warm-up: counted as completed, not
    /// recorded. `None` records everything.
    pub measure_from: Option<Instant>,
    /// Set by anyone to stop every client's writer early.
    pub abort: Arc<AtomicBool>,
    /// Outstanding requests this connection keeps at most.
    pub in_flight: usize,
    /// A connection with outstanding requests and no reply for this long has stalled.
    pub stall_timeout: Duration,
}

/// Takes one complete frame body off the front of `buf`, if there is one.
pub fn take_frame(buf: &mut BytesMut, addr: &str) -> Result<Option<Bytes>, ClientError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len < 0 || len as usize > MAX_FRAME_BYTES {
        return Err(ClientError::FrameLength {
            addr: addr.to_string(),
            len: len as i64,
        });
    }
    let len = len as usize;
    if buf.len() < 4 + len {
        buf.reserve(4 + len - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(len).freeze()))
}

/// The error code a reply carries. A multi that failed may report its failure only in its
/// results (the first one that is not the "rolled back" marker), so those are looked at.
pub fn reply_error(
    kind: OpKind,
    header: &ReplyHeader,
    body: &mut Reader,
) -> Result<i32, DecodeError> {
    if header.err != 0 || kind != OpKind::Multi {
        return Ok(header.err);
    }
    let results = Response::decode_multi(body)?;
    for r in results {
        if let crate::jute::OpResult::Error(e) = r {
            let code = e.code();
            // RuntimeInconsistency (-2) marks the operations rolled back after the real one.
            if code != 0 && code != -2 {
                return Ok(code);
            }
        }
    }
    Ok(0)
}

/// One TCP connection with an established session.
pub struct Connection {
    pub addr: String,
    pub session_id: i64,
    pub timeout_ms: i32,
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    rbuf: BytesMut,
    wbuf: BytesMut,
    next_xid: i32,
}

impl Connection {
    /// Connects and establishes a new session asking for `timeout_ms`.
    pub async fn connect(addr: &str, timeout_ms: i32) -> Result<Connection, ClientError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| ClientError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let (rd, wr) = stream.into_split();
        let mut c = Connection {
            addr: addr.to_string(),
            session_id: 0,
            timeout_ms,
            rd,
            wr,
            rbuf: BytesMut::with_capacity(64 * 1024),
            wbuf: BytesMut::with_capacity(16 * 1024),
            next_xid: 1,
        };
        let req = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0,
            timeout_ms,
            session_id: 0,
            passwd: Bytes::from_static(&[0; 16]),
            read_only: false,
        };
        let mut w = Writer::with_buf(std::mem::take(&mut c.wbuf));
        w.write_i32(0);
        req.write(&mut w);
        c.wbuf = w.into_inner();
        let len = (c.wbuf.len() - 4) as i32;
        c.wbuf[..4].copy_from_slice(&len.to_be_bytes());
        c.flush().await?;
        let frame = c
            .read_frame(Duration::from_millis(timeout_ms.max(1000) as u64))
            .await?;
        let resp = ConnectResponse::read(&mut Reader::new(frame)).map_err(|e| c.decode_err(e))?;
        if resp.timeout_ms <= 0 || resp.session_id == 0 {
            return Err(ClientError::SessionRefused {
                addr: c.addr.clone(),
                timeout_ms: resp.timeout_ms,
            });
        }
        c.session_id = resp.session_id;
        c.timeout_ms = resp.timeout_ms;
        Ok(c)
    }

    fn decode_err(&self, source: DecodeError) -> ClientError {
        ClientError::Decode {
            addr: self.addr.clone(),
            source,
        }
    }

    fn io_err(&self, source: io::Error) -> ClientError {
        io_error(&self.addr, source)
    }

    /// The next request xid (positive, wrapping).
    pub fn next_xid(&mut self) -> i32 {
        let x = self.next_xid;
        self.next_xid = if x == i32::MAX { 1 } else { x + 1 };
        x
    }

    /// The output buffer; frames appended here go out with the next [`flush`](Self::flush).
    pub fn out(&mut self) -> &mut BytesMut {
        &mut self.wbuf
    }

    /// Writes the output buffer.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        if let Err(e) = self.wr.write_all(&self.wbuf).await {
            return Err(self.io_err(e));
        }
        self.wbuf.clear();
        Ok(())
    }

    /// Reads the next frame, waiting at most `wait`.
    pub async fn read_frame(&mut self, wait: Duration) -> Result<Bytes, ClientError> {
        match tokio::time::timeout(wait, self.next_frame()).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Stalled {
                addr: self.addr.clone(),
                waited: wait,
                outstanding: 1,
            }),
        }
    }

    /// Reads the next frame however long it takes: for a caller that bounds the wait itself
    /// (a timer per wait costs a timer-wheel entry each time).
    pub async fn next_frame(&mut self) -> Result<Bytes, ClientError> {
        loop {
            if let Some(f) = take_frame(&mut self.rbuf, &self.addr)? {
                return Ok(f);
            }
            match self.rd.read_buf(&mut self.rbuf).await {
                Err(e) => return Err(self.io_err(e)),
                Ok(0) => {
                    return Err(ClientError::Closed {
                        addr: self.addr.clone(),
                    })
                }
                Ok(_) => {}
            }
        }
    }

    /// Reads frames until the reply with `want` arrives, skipping pings and counting
    /// notifications; returns the reply header.
    pub async fn read_reply(
        &mut self,
        want: i32,
        wait: Duration,
    ) -> Result<(ReplyHeader, Reader), ClientError> {
        self.read_reply_noting_events(want, wait, || {}).await
    }

    /// [`Connection::read_reply`], calling `on_event` for every watch event skipped on the way.
    pub async fn read_reply_noting_events(
        &mut self,
        want: i32,
        wait: Duration,
        mut on_event: impl FnMut(),
    ) -> Result<(ReplyHeader, Reader), ClientError> {
        loop {
            let frame = self.read_frame(wait).await?;
            let mut r = Reader::new(frame);
            let h = ReplyHeader::read(&mut r).map_err(|e| self.decode_err(e))?;
            if h.xid == want {
                return Ok((h, r));
            }
            if h.xid == xid::NOTIFICATION {
                on_event();
            }
            if h.xid >= 0 {
                return Err(ClientError::XidMismatch {
                    addr: self.addr.clone(),
                    got: h.xid,
                    expected: Some(want),
                });
            }
        }
    }

    /// Closes the session and waits (briefly) for the server's answer.
    pub async fn close(mut self) -> Result<(), ClientError> {
        let x = self.next_xid();
        encode_header_only(&mut self.wbuf, x, OpCode::CloseSession);
        self.flush().await?;
        match self.read_reply(x, Duration::from_secs(5)).await {
            Ok(_) => {
                self.wait_eof(Duration::from_secs(1)).await;
                Ok(())
            }
            Err(ClientError::Closed { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// After a closeSession reply: lets the server close the socket first (ZooKeeper logs a
    /// warning for every client that hangs up before it does), waiting at most `wait`.
    pub async fn wait_eof(&mut self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            self.rbuf.clear();
            match tokio::time::timeout_at(deadline, self.rd.read_buf(&mut self.rbuf)).await {
                Ok(Ok(n)) if n > 0 => continue,
                _ => return,
            }
        }
    }

    /// Sends requests from `source` with up to `ctl.in_flight` outstanding until the source
    /// is exhausted, `ctl.end` passes or `ctl.abort` is set, then waits for the outstanding
    /// replies. Latencies and errors go to `stats`.
    pub async fn run_phase(
        &mut self,
        source: &mut dyn OpSource,
        ctl: &PhaseCtl,
        stats: &Mutex<Stats>,
    ) -> Result<(), ClientError> {
        let pending: Mutex<VecDeque<Pending>> =
            Mutex::new(VecDeque::with_capacity(ctl.in_flight.max(1)));
        let sem = Semaphore::new(ctl.in_flight.max(1));
        let writer_done = AtomicBool::new(false);
        let wake_reader = Notify::new();
        let ping_every = Duration::from_millis((self.timeout_ms.max(3) / 3) as u64);
        let addr = self.addr.as_str();
        let Connection {
            rd,
            wr,
            rbuf,
            wbuf,
            next_xid,
            ..
        } = self;

        let writer = async {
            let res: Result<(), ClientError> = async {
                loop {
                    if ctl.abort.load(Ordering::Relaxed) || past(ctl.end) {
                        return Ok(());
                    }
                    match tokio::time::timeout(ping_every, sem.acquire()).await {
                        Err(_) => {
                            encode_header_only(wbuf, xid::PING, OpCode::Ping);
                            wr.write_all(wbuf).await.map_err(|e| io_error(addr, e))?;
                            wbuf.clear();
                            continue;
                        }
                        // Closed: the reader has failed.
                        Ok(Err(_)) => return Ok(()),
                        Ok(Ok(permit)) => permit.forget(),
                    }
                    let now = Instant::now();
                    if ctl.end.is_some_and(|e| now >= e) {
                        return Ok(());
                    }
                    let mut exhausted = false;
                    {
                        let mut pend = lock(&pending);
                        loop {
                            let x = *next_xid;
                            match source.next_op(x, wbuf) {
                                Some(kind) => {
                                    *next_xid = if x == i32::MAX { 1 } else { x + 1 };
                                    pend.push_back(Pending {
                                        xid: x,
                                        kind,
                                        sent: now,
                                    });
                                }
                                None => {
                                    exhausted = true;
                                    break;
                                }
                            }
                            match sem.try_acquire() {
                                Ok(p) => p.forget(),
                                Err(_) => break,
                            }
                        }
                    }
                    if !wbuf.is_empty() {
                        wr.write_all(wbuf).await.map_err(|e| io_error(addr, e))?;
                        wbuf.clear();
                    }
                    if exhausted {
                        return Ok(());
                    }
                }
            }
            .await;
            writer_done.store(true, Ordering::Release);
            wake_reader.notify_one();
            res
        };

        let reader = async {
            let res: Result<(), ClientError> = async {
                loop {
                    let outstanding = lock(&pending).len();
                    if outstanding == 0 && writer_done.load(Ordering::Acquire) {
                        return Ok(());
                    }
                    let n = if outstanding == 0 {
                        tokio::select! {
                            r = rd.read_buf(rbuf) => r,
                            _ = wake_reader.notified() => continue,
                        }
                    } else {
                        match tokio::time::timeout(ctl.stall_timeout, rd.read_buf(rbuf)).await {
                            Ok(r) => r,
                            Err(_) => {
                                return Err(ClientError::Stalled {
                                    addr: addr.to_string(),
                                    waited: ctl.stall_timeout,
                                    outstanding,
                                })
                            }
                        }
                    };
                    match n {
                        Err(e) => return Err(io_error(addr, e)),
                        Ok(0) => {
                            return Err(ClientError::Closed {
                                addr: addr.to_string(),
                            })
                        }
                        Ok(_) => {}
                    }
                    let now = Instant::now();
                    let mut released = 0;
                    let result = {
                        let mut st = lock(stats);
                        let mut pend = lock(&pending);
                        let mut result = Ok(());
                        loop {
                            let frame = match take_frame(rbuf, addr) {
                                Ok(Some(f)) => f,
                                Ok(None) => break,
                                Err(e) => {
                                    result = Err(e);
                                    break;
                                }
                            };
                            match handle_reply(frame, &mut pend, &mut st, ctl, now, addr) {
                                Ok(true) => released += 1,
                                Ok(false) => {}
                                Err(e) => {
                                    result = Err(e);
                                    break;
                                }
                            }
                        }
                        result
                    };
                    sem.add_permits(released);
                    result?;
                }
            }
            .await;
            // Wakes a writer waiting for a permit that will never come.
            sem.close();
            res
        };

        let (w, r) = tokio::join!(writer, reader);
        // The reader's error explains a writer's failure better than the other way round.
        r.and(w)
    }
}

fn past(end: Option<Instant>) -> bool {
    end.is_some_and(|e| Instant::now() >= e)
}

fn io_error(addr: &str, source: io::Error) -> ClientError {
    ClientError::Io {
        addr: addr.to_string(),
        source,
    }
}

/// Locks a mutex, shrugging off poisoning (a panicking client task has already failed).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Handles one reply frame; true when it answered an outstanding request.
fn handle_reply(
    frame: Bytes,
    pend: &mut VecDeque<Pending>,
    st: &mut Stats,
    ctl: &PhaseCtl,
    now: Instant,
    addr: &str,
) -> Result<bool, ClientError> {
    let decode = |source| ClientError::Decode {
        addr: addr.to_string(),
        source,
    };
    let mut r = Reader::new(frame);
    let h = ReplyHeader::read(&mut r).map_err(decode)?;
    match h.xid {
        xid::PING | xid::AUTH | xid::SET_WATCHES => return Ok(false),
        xid::NOTIFICATION => {
            st.stray_notifications += 1;
            return Ok(false);
        }
        _ => {}
    }
    let p = match pend.front() {
        Some(p) if p.xid == h.xid => *p,
        other => {
            return Err(ClientError::XidMismatch {
                addr: addr.to_string(),
                got: h.xid,
                expected: other.map(|p| p.xid),
            })
        }
    };
    pend.pop_front();
    let err = reply_error(p.kind, &h, &mut r).map_err(decode)?;
    let measured = ctl.measure_from.is_none_or(|m| p.sent >= m);
    let ns = now.saturating_duration_since(p.sent).as_nanos() as u64;
    st.record(p.kind, ns, err, measured);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jute::{ErrorCode, OpResult, Stat};

    #[test]
    fn frames_are_taken_whole_and_bad_lengths_rejected() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[0, 0, 0, 3, 1, 2, 3, 0, 0, 0, 2, 9]);
        assert_eq!(
            take_frame(&mut buf, "a").unwrap().unwrap().as_ref(),
            &[1, 2, 3]
        );
        assert!(take_frame(&mut buf, "a").unwrap().is_none());
        buf.extend_from_slice(&[8]);
        assert_eq!(
            take_frame(&mut buf, "a").unwrap().unwrap().as_ref(),
            &[9, 8]
        );
        let mut bad = BytesMut::from(&[0xff, 0xff, 0xff, 0xf0][..]);
        assert!(matches!(
            take_frame(&mut bad, "a"),
            Err(ClientError::FrameLength { len: -16, .. })
        ));
    }

    #[test]
    fn multi_errors_come_from_results_when_header_is_ok() {
        let mut w = Writer::new();
        Response::Multi(vec![
            OpResult::Error(ErrorCode::RuntimeInconsistency),
            OpResult::Error(ErrorCode::NoNode),
        ])
        .encode(&mut w);
        let body = w.into_inner().freeze();
        let h = ReplyHeader {
            xid: 1,
            zxid: 0,
            err: 0,
        };
        let mut r = Reader::new(body.clone());
        assert_eq!(reply_error(OpKind::Multi, &h, &mut r).unwrap(), -101);
        let mut w = Writer::new();
        Response::Multi(vec![OpResult::SetData {
            stat: Stat::default(),
        }])
        .encode(&mut w);
        let mut r = Reader::new(w.into_inner().freeze());
        assert_eq!(reply_error(OpKind::Multi, &h, &mut r).unwrap(), 0);
        // A header error wins and the body is not read.
        let h = ReplyHeader { err: -110, ..h };
        let mut r = Reader::new(Bytes::new());
        assert_eq!(reply_error(OpKind::Multi, &h, &mut r).unwrap(), -110);
        // Garbage in a multi body is an error, not a panic.
        let h = ReplyHeader { err: 0, ..h };
        let mut r = Reader::new(Bytes::from_static(&[0, 0]));
        assert!(reply_error(OpKind::Multi, &h, &mut r).is_err());
    }

    #[test]
    fn replies_match_outstanding_requests_in_order() {
        let ctl = PhaseCtl {
            end: None,
            measure_from: None,
            abort: Arc::new(AtomicBool::new(false)),
            in_flight: 8,
            stall_timeout: Duration::from_secs(1),
        };
        let t0 = Instant::now();
        let mut pend: VecDeque<Pending> = [
            Pending {
                xid: 1,
                kind: OpKind::Get,
                sent: t0,
            },
            Pending {
                xid: 2,
                kind: OpKind::Set,
                sent: t0,
            },
        ]
        .into();
        let mut st = Stats::default();
        let reply = |xid: i32, err: i32| {
            let mut w = Writer::new();
            ReplyHeader { xid, zxid: 5, err }.write(&mut w);
            w.into_inner().freeze()
        };
        let now = t0 + Duration::from_millis(2);
        // A ping reply and a notification do not consume a request.
        assert!(!handle_reply(reply(-2, 0), &mut pend, &mut st, &ctl, now, "a").unwrap());
        assert!(!handle_reply(reply(-1, 0), &mut pend, &mut st, &ctl, now, "a").unwrap());
        assert!(handle_reply(reply(1, 0), &mut pend, &mut st, &ctl, now, "a").unwrap());
        // Out of order is a protocol error.
        assert!(matches!(
            handle_reply(reply(3, 0), &mut pend, &mut st, &ctl, now, "a"),
            Err(ClientError::XidMismatch {
                got: 3,
                expected: Some(2),
                ..
            })
        ));
        assert!(handle_reply(reply(2, -101), &mut pend, &mut st, &ctl, now, "a").unwrap());
        assert!(pend.is_empty());
        assert_eq!(st.op(OpKind::Get).unwrap().count, 1);
        assert_eq!(st.op(OpKind::Set).unwrap().errors.get(&-101), Some(&1));
        assert_eq!(st.stray_notifications, 1);
        let h = &st.op(OpKind::Get).unwrap().hist;
        assert!((1_990_000..=2_010_000).contains(&h.max()));
    }
}
