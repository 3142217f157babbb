//! One client connection: the only code that touches a client socket.
//!
//! The first four bytes decide what the connection is: a four-letter word, or the length of a
//! handshake frame. After the handshake a reader decodes frames out of one growing buffer (the
//! handshake is read into it too, usually with one read) and hands requests to the core, and a
//! writer task drains the connection's outbox, encoding every queued reply and event into one
//! buffer and writing it with one syscall. A cap on requests in flight makes a client
//! that pipelines faster than it reads wait instead of growing queues.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Semaphore, TryAcquireError};
use tracing::{debug, warn};

use super::core::{CoreMsg, Outbound};
use super::four_letter;
use super::session::ConnId;
use super::ServerOptions;
use crate::jute::{
    xid, ConnectRequest, DecodeError, ErrorCode, OpCode, Reader, ReplyHeader, Request,
    RequestHeader, Response, Writer,
};

/// Requests a connection may have in flight before the reader stops reading its socket.
pub const MAX_IN_FLIGHT_REQUESTS: usize = 1000;
/// Capacity of a connection's outbox: replies for every in-flight request plus watch events.
pub const OUTBOX_CAPACITY: usize = 4 * MAX_IN_FLIGHT_REQUESTS;
/// Initial size of a connection's read buffer (it grows to the largest frame read).
const READ_BUFFER_BYTES: usize = 8 * 1024;
/// Most messages the writer encodes into one socket write.
const WRITE_BATCH_MESSAGES: usize = 256;

/// Serves one accepted connection to the end.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    conn_id: ConnId,
    core: mpsc::Sender<CoreMsg>,
    opts: Arc<ServerOptions>,
) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let handshake_deadline = Duration::from_millis(opts.max_session_timeout_ms.max(1) as u64);

    // The handshake and whatever the client sent behind it are read into the buffer the
    // request frames are then taken from: usually one read for the whole handshake.
    let mut rbuf = BytesMut::with_capacity(READ_BUFFER_BYTES);
    let first = match tokio::time::timeout(handshake_deadline, fill(&mut rd, &mut rbuf, 4)).await {
        Ok(Ok(true)) => [rbuf[0], rbuf[1], rbuf[2], rbuf[3]],
        _ => {
            debug!(%peer, "connection closed before a handshake");
            return;
        }
    };
    if let Some(word) = four_letter::word_from_bytes(&first) {
        let text = if !opts.four_letter_allowed(word) {
            format!("{word} is not executed because it is not in the whitelist.\n")
        } else if word == "ruok" {
            "imok".to_string()
        } else {
            let (tx, rx) = oneshot::channel();
            let msg = CoreMsg::FourLetter {
                word: word.to_string(),
                peer,
                reply: tx,
            };
            if core.send(msg).await.is_err() {
                return;
            }
            rx.await.unwrap_or_default()
        };
        let _ = wr.write_all(text.as_bytes()).await;
        let _ = wr.shutdown().await;
        debug!(%peer, word, "four-letter word served");
        return;
    }

    let len = i32::from_be_bytes(first);
    if len < 0 || len as usize > opts.jute_max_buffer_bytes {
        warn!(%peer, len, "handshake frame length out of range; closing connection");
        return;
    }
    let len = len as usize;
    if !matches!(
        tokio::time::timeout(handshake_deadline, fill(&mut rd, &mut rbuf, 4 + len)).await,
        Ok(Ok(true))
    ) {
        debug!(%peer, "connection closed during handshake");
        return;
    }
    rbuf.advance(4);
    let frame = rbuf.split_to(len).freeze();
    let req = match ConnectRequest::read(&mut Reader::new(frame.clone())) {
        Ok(r) => r,
        Err(e) => {
            warn!(%peer, error = %e, "malformed handshake; closing connection");
            return;
        }
    };
    // A 3.4-era client sends no readOnly byte and must not get one back.
    let with_read_only = frame.len() > 4 + 8 + 4 + 8 + 4 + req.passwd.len();

    let (tx, rx) = mpsc::channel(OUTBOX_CAPACITY);
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT_REQUESTS));
    debug!(%peer, session = format_args!("0x{:x}", req.session_id), "client handshake");
    if core
        .send(CoreMsg::Connect {
            conn_id,
            peer,
            req,
            tx,
        })
        .await
        .is_err()
    {
        return;
    }
    let mut writer = tokio::spawn(write_loop(wr, rx, in_flight.clone(), with_read_only, peer));
    // The connection ends when the client goes (the reader ends) or when the core closes it
    // (the writer ends). Waiting on the writer's handle here, once per connection, spares the
    // reader a close signal to watch on every frame.
    let writer_done = tokio::select! {
        biased;
        _ = read_loop(rd, rbuf, conn_id, &core, &opts, &in_flight, peer) => false,
        _ = &mut writer => true,
    };
    let _ = core.send(CoreMsg::Disconnected { conn_id }).await;
    if !writer_done {
        let _ = writer.await;
    }
}

/// Reads from `rd` into `buf` until it holds at least `want` bytes; false on end of stream.
async fn fill(rd: &mut OwnedReadHalf, buf: &mut BytesMut, want: usize) -> std::io::Result<bool> {
    while buf.len() < want {
        buf.reserve(want - buf.len());
        if rd.read_buf(buf).await? == 0 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Why a connection's byte stream is not a sequence of frames.
#[derive(Debug, thiserror::Error)]
enum FrameError {
    #[error("frame length {0} outside 0..={1}")]
    Length(i64, usize),
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Takes the next length-prefixed frame off `buf`, reading more from `rd` as needed. `None`
/// at a clean end of stream (between frames).
async fn next_frame(
    rd: &mut OwnedReadHalf,
    buf: &mut BytesMut,
    max_frame_bytes: usize,
) -> Result<Option<Bytes>, FrameError> {
    loop {
        if buf.len() >= 4 {
            let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
            if len < 0 || len as usize > max_frame_bytes {
                return Err(FrameError::Length(len as i64, max_frame_bytes));
            }
            let len = len as usize;
            if buf.len() >= 4 + len {
                buf.advance(4);
                return Ok(Some(buf.split_to(len).freeze()));
            }
            buf.reserve(4 + len - buf.len());
        } else if buf.capacity() - buf.len() < 4 {
            buf.reserve(READ_BUFFER_BYTES);
        }
        if rd.read_buf(buf).await? == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(FrameError::Truncated)
            };
        }
    }
}

async fn read_loop(
    mut rd: OwnedReadHalf,
    mut rbuf: BytesMut,
    conn_id: ConnId,
    core: &mpsc::Sender<CoreMsg>,
    opts: &ServerOptions,
    in_flight: &Semaphore,
    peer: SocketAddr,
) {
    loop {
        // One slot per request until its reply is written; the writer gives them back.
        let permit = match in_flight.try_acquire() {
            Ok(p) => p,
            Err(TryAcquireError::NoPermits) => match in_flight.acquire().await {
                Ok(p) => p,
                Err(_) => return,
            },
            Err(TryAcquireError::Closed) => return,
        };
        let frame = match next_frame(&mut rd, &mut rbuf, opts.jute_max_buffer_bytes).await {
            Ok(Some(f)) => f,
            Ok(None) => return,
            Err(e) => {
                warn!(%peer, error = %e, "unreadable frame; closing connection");
                return;
            }
        };
        let received_at = Instant::now();
        let mut r = Reader::new(frame);
        let header = match RequestHeader::read(&mut r) {
            Ok(h) => h,
            Err(e) => {
                warn!(%peer, error = %e, "undecodable request header; closing connection");
                return;
            }
        };
        let req = match Request::decode(header.op, &mut r) {
            Ok(req) => req,
            Err(e) => {
                // As ZooKeeper does: an unknown opcode is answered with Unimplemented and the
                // connection closes; a write whose body does not decode is answered with
                // MarshallingError and the connection carries on; a read that does not decode
                // closes the connection.
                warn!(%peer, op = header.op, error = %e, "undecodable request");
                let (err, close) = match OpCode::from_code(header.op) {
                    None => (ErrorCode::Unimplemented, true),
                    Some(_) if matches!(e, DecodeError::NullField(_)) => {
                        (ErrorCode::MarshallingError, false)
                    }
                    Some(op) if op.is_write() => (ErrorCode::MarshallingError, false),
                    Some(_) => return,
                };
                permit.forget();
                let msg = CoreMsg::BadRequest {
                    conn_id,
                    xid: header.xid,
                    op: header.op,
                    err,
                    close,
                };
                if core.send(msg).await.is_err() {
                    return;
                }
                if close {
                    // Keep the socket open until the writer has flushed the error and closed
                    // (its end ends the connection; see `serve`).
                    std::future::pending::<()>().await;
                }
                continue;
            }
        };
        // The permit is returned by the writer when this request's reply goes out.
        permit.forget();
        let msg = CoreMsg::Request {
            conn_id,
            xid: header.xid,
            req,
            received_at,
        };
        if core.send(msg).await.is_err() {
            return;
        }
    }
}

/// Appends one length-prefixed frame to `buf` (which keeps its own allocation: splitting it
/// would turn it into a shared, reference-counted buffer on every call).
fn encode_frame(buf: &mut BytesMut, f: impl FnOnce(&mut Writer)) {
    let start = buf.len();
    let mut w = Writer::with_buf(std::mem::take(buf));
    w.write_i32(0);
    f(&mut w);
    *buf = w.into_inner();
    let len = (buf.len() - start - 4) as i32;
    buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

async fn write_loop(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Outbound>,
    in_flight: Arc<Semaphore>,
    with_read_only: bool,
    peer: SocketAddr,
) {
    let mut batch = Vec::with_capacity(WRITE_BATCH_MESSAGES);
    // Grows to the largest batch written; most connections only ever need a little.
    let mut buf = BytesMut::with_capacity(4 * 1024);
    'outer: loop {
        if rx.recv_many(&mut batch, WRITE_BATCH_MESSAGES).await == 0 {
            break;
        }
        let mut close = false;
        let mut released = 0;
        for msg in batch.drain(..) {
            match msg {
                Outbound::Connected { resp, .. } => {
                    let refused = resp.session_id == 0;
                    encode_frame(&mut buf, |w| resp.write(w, with_read_only));
                    if refused {
                        close = true;
                    }
                }
                Outbound::Reply {
                    xid,
                    zxid,
                    err,
                    body,
                } => {
                    released += 1;
                    encode_frame(&mut buf, |w| {
                        ReplyHeader {
                            xid,
                            zxid,
                            err: err.code(),
                        }
                        .write(w);
                        if err == ErrorCode::Ok || matches!(body, Response::Sasl { .. }) {
                            body.encode(w);
                        }
                    });
                }
                Outbound::Event { zxid, event } => {
                    encode_frame(&mut buf, |w| {
                        ReplyHeader {
                            xid: xid::NOTIFICATION,
                            zxid,
                            err: 0,
                        }
                        .write(w);
                        event.write(w);
                    });
                }
                Outbound::Close => close = true,
            }
            if close {
                break;
            }
        }
        if !buf.is_empty() {
            if let Err(e) = wr.write_all(&buf).await {
                debug!(%peer, error = %e, "write failed; closing connection");
                break 'outer;
            }
            buf.clear();
        }
        in_flight.add_permits(released);
        if close {
            break;
        }
    }
    let _ = wr.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_length_prefixed() {
        let mut buf = BytesMut::new();
        encode_frame(&mut buf, |w| w.write_i32(7));
        encode_frame(&mut buf, |w| w.write_string("ab"));
        assert_eq!(
            &buf[..],
            &[0, 0, 0, 4, 0, 0, 0, 7, 0, 0, 0, 6, 0, 0, 0, 2, b'a', b'b']
        );
    }
}
