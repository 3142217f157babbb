//! Peer transport: carries quorum protocol messages between ensemble members.
//!
//! The ZAB core is a pure state machine that emits "send message M to server N" commands and
//! consumes "server N sent M" events. This module is the thin tokio shell that turns those into
//! TCP traffic, and nothing more: it does not interpret messages, it does not retry them (the
//! state machines do), and it never blocks its caller.
//!
//! # Wire format
//!
//! Every frame is a 4-byte big-endian length followed by a protobuf (prost) body, i.e. exactly
//! what `tokio_util::codec::LengthDelimitedCodec` produces and accepts with its defaults, with a
//! maximum frame size (64 MiB by default; the protocol layer chunks snapshots well below that).
//! The first frame in each direction is a [`Hello`] carrying a magic number, the transport
//! protocol version, the sender's server id and the *cluster identity*. A member configured for
//! another ensemble (or another version) is refused with a log line that says why, on both
//! sides; it never gets to inject a protocol message.
//!
//! # One connection per pair: the higher id dials
//!
//! As in ZooKeeper's `QuorumCnxManager`, only the member with the **higher** server id opens the
//! connection; the lower one accepts and refuses connections from ids lower than its own. A
//! lower-id member that wants to talk first simply queues the message until the higher member
//! connects. This gives at most one live connection per pair with no tie-breaking races. If a
//! second connection arrives from the same (higher) peer while one is open, the *newest* wins
//! and the old one is closed: the dialer only ever has one connection, so a new one means it has
//! already given up on the old one (e.g. after a half-open TCP connection).
//!
//! The cost is at most one reconnect backoff step (50 ms doubling to 2 s by default) of delay
//! after the *lower* member restarts; after the *higher* member restarts it dials at once.
//!
//! # Queues and their limits
//!
//! * Outbound: one queue per peer, bounded in messages and in bytes. [`PeerNetwork::send`] is a
//!   plain (non-async) call that pushes onto it; when the queue is full the **oldest** messages
//!   are dropped (the freshest
//!   protocol state is the most useful one, and the state machines retry anyway), the drop is
//!   counted in [`PeerStats::messages_dropped`] and logged at debug. Messages queued while a
//!   peer is unreachable are delivered when it connects; a batch already handed to a dying
//!   socket is lost, as it would be on any real network.
//! * Inbound: one bounded channel shared by all peers. When the consumer falls behind, readers
//!   stop reading and TCP flow control pushes back on the senders.
//! * One writer task drains a queue in batches and writes each batch with one `write_all`.
//!
//! # Faults
//!
//! A frame that fails to decode, or one over the size limit, closes that connection with a
//! warning; the dialer reconnects with backoff. Until the hello exchange succeeds, frames are
//! limited to a few KiB, so a stray connection cannot make us buffer 64 MiB. Because the
//! transport reconnects by itself, [`PeerNetwork::link_changes`] tells the protocol layer when
//! a link went down or came up (messages in flight on a dead connection are lost). Nothing in here panics on peer input. Tests
//! inject partitions with a small TCP proxy (see the tests below) and [`PeerNetwork::disconnect`]
//! drops a connection on demand, which the protocol layer may also use when it decides a peer is
//! stale.
//!
//! # Shutdown
//!
//! Every task watches one `CancellationToken` and holds a clone of a "done" channel sender, as
//! in mini-redis: [`PeerNetwork::shutdown`] cancels the token and waits until every sender is
//! gone, i.e. every task (and so every socket and the listener) is closed. Dropping the network
//! cancels the token too, without waiting.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use futures_util::StreamExt;
use prost::Message;
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;
use tracing::{debug, debug_span, info, warn, Instrument};

/// Version of this transport's framing and handshake. Peers must agree exactly.
pub const PROTOCOL_VERSION: u32 = 1;

/// First field of every hello: "CORL". Lets us tell a stray client (or a ZooKeeper server
/// pointed at the wrong port) from a Corral peer with a different configuration.
pub const HELLO_MAGIC: u32 = 0x434f_524c;

/// Upper bound on the bytes one writer batch encodes before it writes, so that a queue full of
/// large snapshot chunks does not turn into one huge buffer.
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Frame limit until the hello exchange succeeds, so that a stray or hostile connection cannot
/// make us buffer a full-size frame.
const MAX_HELLO_BYTES: usize = 4096;

/// Connections that are still in their handshake at once; more are closed on accept.
const MAX_PENDING_HANDSHAKES: usize = 64;

/// The first frame in each direction of a peer connection.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Hello {
    /// Always [`HELLO_MAGIC`].
    #[prost(fixed32, tag = "1")]
    pub magic: u32,
    #[prost(uint32, tag = "2")]
    pub protocol_version: u32,
    #[prost(uint64, tag = "3")]
    pub sender_id: u64,
    #[prost(string, tag = "4")]
    pub cluster_id: String,
    /// Set only in the acceptor's reply: non-empty means "refused, and this is why"; the
    /// acceptor closes the connection right after sending it.
    #[prost(string, tag = "5")]
    pub refusal: String,
}

/// How to run a [`PeerNetwork`]. Build with [`TransportConfig::new`] and adjust fields.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// This member's server id (`myid`).
    pub my_id: u64,
    /// Address the peer listener binds (the quorum port of `server.N` for this member).
    pub listen_addr: SocketAddr,
    /// Every other member's quorum address. An entry for `my_id` is ignored, so the whole
    /// `server.N` list can be passed as it is.
    pub peers: HashMap<u64, SocketAddr>,
    /// Identity of the ensemble; members with a different one are refused. Derive it from
    /// configuration all members share (e.g. a configured name or a digest of the server list).
    pub cluster_id: String,
    pub max_frame_bytes: usize,
    /// Capacity of each per-peer outbound queue, in messages.
    pub send_queue_len: usize,
    /// Capacity of each per-peer outbound queue, in encoded bytes. A single message larger
    /// than this is still queued (alone), so a full-size snapshot chunk always fits.
    pub send_queue_bytes: usize,
    /// Capacity of the inbound channel, in messages.
    pub recv_queue_len: usize,
    pub reconnect_backoff_min: Duration,
    pub reconnect_backoff_max: Duration,
    /// Bound on connect plus hello exchange.
    pub handshake_timeout: Duration,
}

impl TransportConfig {
    /// A configuration with the default limits: 64 MiB frames, send queues of 1024 messages or
    /// 64 MiB, a 4096-message inbound channel, 50 ms → 2 s reconnect backoff, 5 s handshake timeout.
    pub fn new(
        my_id: u64,
        listen_addr: SocketAddr,
        peers: HashMap<u64, SocketAddr>,
        cluster_id: impl Into<String>,
    ) -> Self {
        TransportConfig {
            my_id,
            listen_addr,
            peers,
            cluster_id: cluster_id.into(),
            max_frame_bytes: 64 * 1024 * 1024,
            send_queue_len: 1024,
            send_queue_bytes: 64 * 1024 * 1024,
            recv_queue_len: 4096,
            reconnect_backoff_min: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(2),
            handshake_timeout: Duration::from_secs(5),
        }
    }
}

/// Errors the transport reports to its caller.
#[derive(Debug, Error)]
pub enum TransportError {
    #[error("cannot bind peer listener on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid peer transport configuration: {0}")]
    Config(String),
    #[error("server {0} is not a configured peer")]
    UnknownPeer(u64),
    #[error("message of {size_bytes} bytes exceeds the {max_bytes}-byte frame limit")]
    MessageTooLarge { size_bytes: usize, max_bytes: usize },
    #[error("peer network is shut down")]
    Shutdown,
}

/// Why one connection attempt or one connection ended. Logged, never returned to callers.
#[derive(Debug, Error)]
enum ConnError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("handshake timed out")]
    HandshakeTimeout,
    #[error("connection closed during handshake")]
    ClosedInHandshake,
    #[error("hello does not decode: {0}")]
    BadHello(prost::DecodeError),
    /// We refused the other side's hello.
    #[error("refused: {0}")]
    Refused(String),
    /// The other side refused our hello.
    #[error("peer refused us: {0}")]
    RefusedByPeer(String),
    #[error("frame does not decode as a protocol message: {0}")]
    BadFrame(prost::DecodeError),
    #[error("shutting down")]
    Shutdown,
}

/// What [`PeerNetwork::send`] did with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// Queued; nothing was dropped.
    Queued,
    /// Queued, and the oldest queued message(s) for that peer were dropped to make room.
    DroppedOldest,
}

/// A snapshot of one peer's counters, for the four-letter words and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStats {
    pub id: u64,
    pub addr: SocketAddr,
    pub connected: bool,
    /// Connections established (handshake completed) so far.
    pub connects: u64,
    /// Handshakes with this peer refused, by either side (wrong cluster, version, direction).
    pub handshakes_refused: u64,
    /// Messages written to the socket.
    pub messages_sent: u64,
    pub messages_received: u64,
    /// Messages dropped from the full outbound queue (by count or by bytes).
    pub messages_dropped: u64,
    /// Messages waiting in the outbound queue.
    pub queued: usize,
    /// When the last message from this peer arrived.
    pub last_heard: Option<Instant>,
}

/// A peer's outbound messages with their encoded sizes, oldest first.
struct OutQueue<M> {
    messages: VecDeque<(M, usize)>,
    /// Sum of the sizes in `messages`.
    bytes: usize,
}

impl<M> OutQueue<M> {
    fn pop(&mut self) -> Option<(M, usize)> {
        let (msg, size) = self.messages.pop_front()?;
        self.bytes -= size;
        Some((msg, size))
    }
}

/// State for one configured peer, shared by the caller, its dial task and its connection.
struct Peer<M> {
    id: u64,
    addr: SocketAddr,
    queue: Mutex<OutQueue<M>>,
    /// Wakes the writer; `notify_one` stores a permit, so a send never goes unnoticed.
    queued: Notify,
    /// Held by the one writer allowed to drain `queue`, so a replaced connection's writer and
    /// its successor never interleave.
    writer_lock: tokio::sync::Mutex<()>,
    /// The live connection: its generation and its cancellation token.
    current: Mutex<Option<(u64, CancellationToken)>>,
    connected: AtomicBool,
    connects: AtomicU64,
    refused: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
    dropped: AtomicU64,
    /// Nanoseconds since `Shared::epoch`, plus one; zero means never.
    last_heard_nanos: AtomicU64,
}

impl<M> Peer<M> {
    fn new(id: u64, addr: SocketAddr) -> Self {
        Peer {
            id,
            addr,
            queue: Mutex::new(OutQueue {
                messages: VecDeque::new(),
                bytes: 0,
            }),
            queued: Notify::new(),
            writer_lock: tokio::sync::Mutex::new(()),
            current: Mutex::new(None),
            connected: AtomicBool::new(false),
            connects: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            last_heard_nanos: AtomicU64::new(0),
        }
    }
}

/// Everything the tasks share.
struct Shared<M> {
    config: TransportConfig,
    peers: HashMap<u64, Peer<M>>,
    inbound: mpsc::Sender<(u64, M)>,
    shutdown: CancellationToken,
    epoch: Instant,
    next_generation: AtomicU64,
    /// Bumped whenever any peer connects or disconnects.
    link_changes: watch::Sender<u64>,
}

/// The peer network of one member. See the module docs.
pub struct PeerNetwork<M: Message + Default + Send + 'static> {
    shared: Arc<Shared<M>>,
    inbound: tokio::sync::Mutex<mpsc::Receiver<(u64, M)>>,
    /// Every task holds a clone of this sender; `shutdown` drops ours and waits for `done_rx`
    /// to see all of them gone.
    done_tx: Mutex<Option<mpsc::Sender<()>>>,
    done_rx: tokio::sync::Mutex<mpsc::Receiver<()>>,
    local_addr: SocketAddr,
}

impl<M: Message + Default + Send + 'static> PeerNetwork<M> {
    /// Binds the listener, then starts accepting and dialing in the background. Must be called
    /// inside a tokio runtime.
    pub async fn start(config: TransportConfig) -> Result<Self, TransportError> {
        if config.send_queue_len == 0 || config.recv_queue_len == 0 {
            return Err(TransportError::Config(
                "queue lengths must be at least 1".into(),
            ));
        }
        if config.max_frame_bytes == 0 || config.max_frame_bytes > u32::MAX as usize {
            return Err(TransportError::Config(format!(
                "max frame size {} is out of range",
                config.max_frame_bytes
            )));
        }
        if config.reconnect_backoff_min.is_zero()
            || config.reconnect_backoff_max < config.reconnect_backoff_min
        {
            return Err(TransportError::Config("bad reconnect backoff range".into()));
        }
        let listener = bind_listener(config.listen_addr)?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| TransportError::Bind {
                addr: config.listen_addr,
                source,
            })?;

        let peers = config
            .peers
            .iter()
            .filter(|(&id, _)| id != config.my_id)
            .map(|(&id, &addr)| (id, Peer::new(id, addr)))
            .collect();
        let (inbound_tx, inbound_rx) = mpsc::channel(config.recv_queue_len);
        let shared = Arc::new(Shared {
            config,
            peers,
            inbound: inbound_tx,
            shutdown: CancellationToken::new(),
            epoch: Instant::now(),
            next_generation: AtomicU64::new(1),
            link_changes: watch::Sender::new(0),
        });
        let (done_tx, done_rx) = mpsc::channel(1);

        info!(
            my_id = shared.config.my_id,
            %local_addr,
            peers = shared.peers.len(),
            "peer transport listening"
        );
        // With debug logging on, every log line of this network's tasks says whose it is
        // (several networks share a process in tests). At the default level the span is off:
        // a server runs one network, and entering an enabled span on every poll of the peer
        // reader and writer cost about 1.5 % of a busy leader's worker thread.
        let span = debug_span!("peer_transport", me = shared.config.my_id);
        tokio::spawn(
            accept_loop(shared.clone(), listener, done_tx.clone()).instrument(span.clone()),
        );
        for peer in shared.peers.values() {
            // The higher id dials; see the module docs.
            if peer.id < shared.config.my_id {
                let dial = dial_loop(shared.clone(), peer.id, done_tx.clone());
                tokio::spawn(dial.instrument(span.clone()));
            }
        }

        Ok(PeerNetwork {
            shared,
            inbound: tokio::sync::Mutex::new(inbound_rx),
            done_tx: Mutex::new(Some(done_tx)),
            done_rx: tokio::sync::Mutex::new(done_rx),
            local_addr,
        })
    }

    pub fn my_id(&self) -> u64 {
        self.shared.config.my_id
    }

    /// The address the listener is bound to (useful when the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Queues `msg` for peer `to`. Never blocks and never waits for a connection: when the
    /// peer's queue is full the oldest queued message is dropped and counted.
    ///
    /// A drop leaves a hole in the stream that peer sees, so a caller that relies on gap-free
    /// delivery (ZAB proposals) must treat [`SendOutcome::DroppedOldest`] like a lost link and
    /// re-sync that peer, or size `send_queue_len` above its window of unacknowledged messages.
    pub fn send(&self, to: u64, msg: M) -> Result<SendOutcome, TransportError> {
        if self.shared.shutdown.is_cancelled() {
            return Err(TransportError::Shutdown);
        }
        let peer = self
            .shared
            .peers
            .get(&to)
            .ok_or(TransportError::UnknownPeer(to))?;
        let size_bytes = msg.encoded_len();
        let max_bytes = self.shared.config.max_frame_bytes;
        if size_bytes > max_bytes {
            return Err(TransportError::MessageTooLarge {
                size_bytes,
                max_bytes,
            });
        }
        let frame_bytes = 4 + size_bytes;
        let dropped_now = {
            let mut queue = peer.queue.lock().expect("peer queue lock poisoned");
            let config = &self.shared.config;
            let mut dropped_now = 0;
            while !queue.messages.is_empty()
                && (queue.messages.len() >= config.send_queue_len
                    || queue.bytes + frame_bytes > config.send_queue_bytes)
            {
                queue.pop();
                dropped_now += 1;
            }
            queue.messages.push_back((msg, frame_bytes));
            queue.bytes += frame_bytes;
            dropped_now
        };
        peer.queued.notify_one();
        if dropped_now == 0 {
            return Ok(SendOutcome::Queued);
        }
        let dropped = peer.dropped.fetch_add(dropped_now, Ordering::Relaxed) + dropped_now;
        debug!(
            peer = to,
            dropped_now, dropped, "outbound queue full, dropped the oldest messages"
        );
        Ok(SendOutcome::DroppedOldest)
    }

    /// The next message from any peer, as `(sender id, message)`. `None` once shut down.
    /// Cancel-safe: a message is never lost when the future is dropped.
    pub async fn recv(&self) -> Option<(u64, M)> {
        let mut inbound = tokio::select! {
            guard = self.inbound.lock() => guard,
            _ = self.shared.shutdown.cancelled() => return None,
        };
        tokio::select! {
            biased;
            _ = self.shared.shutdown.cancelled() => None,
            msg = inbound.recv() => msg,
        }
    }

    /// A received message if one is waiting, without waiting.
    pub fn try_recv(&self) -> Option<(u64, M)> {
        self.inbound.try_lock().ok()?.try_recv().ok()
    }

    /// Closes the current connection to `peer`, if any. Its queue is kept; the dialing side
    /// (whichever has the higher id) reconnects after its backoff. For the protocol layer when
    /// it decides a peer is stale, and for fault injection in tests.
    pub fn disconnect(&self, peer: u64) -> Result<(), TransportError> {
        let peer = self
            .shared
            .peers
            .get(&peer)
            .ok_or(TransportError::UnknownPeer(peer))?;
        if let Some((_, token)) = peer.current.lock().expect("current lock poisoned").as_ref() {
            token.cancel();
        }
        Ok(())
    }

    /// Counters of one peer.
    pub fn peer_stats(&self, peer: u64) -> Option<PeerStats> {
        self.shared.peers.get(&peer).map(|p| self.shared.stats(p))
    }

    /// Counters of every peer, by id.
    pub fn stats(&self) -> Vec<PeerStats> {
        let mut all: Vec<_> = self
            .shared
            .peers
            .values()
            .map(|p| self.shared.stats(p))
            .collect();
        all.sort_by_key(|s| s.id);
        all
    }

    /// A receiver that changes whenever any peer connects or disconnects. The transport
    /// reconnects on its own, so a protocol layer that must react to a lost link (a leader
    /// re-syncing a follower, say) waits on this and compares [`PeerStats::connects`] and
    /// [`PeerStats::connected`] with what it saw last: a higher `connects` means a new
    /// connection, and messages in flight on the old one may have been lost.
    pub fn link_changes(&self) -> watch::Receiver<u64> {
        self.shared.link_changes.subscribe()
    }

    /// Total messages dropped from full outbound queues, over all peers.
    pub fn messages_dropped(&self) -> u64 {
        self.shared
            .peers
            .values()
            .map(|p| p.dropped.load(Ordering::Relaxed))
            .sum()
    }

    /// Closes the listener and every connection, and returns once every task has ended.
    /// Idempotent.
    pub async fn shutdown(&self) {
        self.shared.shutdown.cancel();
        drop(self.done_tx.lock().expect("done lock poisoned").take());
        // `recv` returns `None` once every task's sender is gone.
        let _ = self.done_rx.lock().await.recv().await;
    }
}

impl<M: Message + Default + Send + 'static> Drop for PeerNetwork<M> {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}

impl<M> Shared<M> {
    fn stats(&self, p: &Peer<M>) -> PeerStats {
        let heard = p.last_heard_nanos.load(Ordering::Relaxed);
        PeerStats {
            id: p.id,
            addr: p.addr,
            connected: p.connected.load(Ordering::Relaxed),
            connects: p.connects.load(Ordering::Relaxed),
            handshakes_refused: p.refused.load(Ordering::Relaxed),
            messages_sent: p.sent.load(Ordering::Relaxed),
            messages_received: p.received.load(Ordering::Relaxed),
            messages_dropped: p.dropped.load(Ordering::Relaxed),
            queued: p
                .queue
                .lock()
                .expect("peer queue lock poisoned")
                .messages
                .len(),
            last_heard: (heard > 0).then(|| self.epoch + Duration::from_nanos(heard - 1)),
        }
    }

    /// The codec for a new connection: limited to hello-sized frames until
    /// [`Shared::open_frames`] lifts the limit after the handshake.
    fn handshake_codec(&self) -> LengthDelimitedCodec {
        LengthDelimitedCodec::builder()
            .max_frame_length(MAX_HELLO_BYTES.min(self.config.max_frame_bytes))
            .new_codec()
    }

    fn open_frames(&self, conn: &mut Conn) {
        conn.reader
            .decoder_mut()
            .set_max_frame_length(self.config.max_frame_bytes);
    }

    fn hello(&self, refusal: Option<String>) -> Hello {
        Hello {
            magic: HELLO_MAGIC,
            protocol_version: PROTOCOL_VERSION,
            sender_id: self.config.my_id,
            cluster_id: self.config.cluster_id.clone(),
            refusal: refusal.unwrap_or_default(),
        }
    }

    /// Checks a hello's magic, version and cluster identity; the part both sides check.
    fn check_common(&self, hello: &Hello) -> Result<(), String> {
        if hello.magic != HELLO_MAGIC {
            return Err(format!(
                "not a Corral peer (hello magic {:#010x})",
                hello.magic
            ));
        }
        if hello.protocol_version != PROTOCOL_VERSION {
            return Err(format!(
                "peer protocol version mismatch: server {} speaks {}, server {} speaks {}",
                hello.sender_id, hello.protocol_version, self.config.my_id, PROTOCOL_VERSION
            ));
        }
        if hello.cluster_id != self.config.cluster_id {
            return Err(format!(
                "cluster identity mismatch: server {} is in {:?}, server {} in {:?}; is one of \
                 them configured for another ensemble?",
                hello.sender_id, hello.cluster_id, self.config.my_id, self.config.cluster_id
            ));
        }
        Ok(())
    }

    /// The acceptor's check of a dialer's hello.
    fn check_incoming(&self, hello: &Hello) -> Result<u64, String> {
        self.check_common(hello)?;
        let id = hello.sender_id;
        if id == self.config.my_id {
            return Err(format!("server {id} claims the id of the server it dialed"));
        }
        if !self.peers.contains_key(&id) {
            return Err(format!(
                "server {id} is not in the configuration of server {}",
                self.config.my_id
            ));
        }
        if id < self.config.my_id {
            return Err(format!(
                "server {id} dialed server {}, but only the higher id dials",
                self.config.my_id
            ));
        }
        Ok(id)
    }

    /// Registers a new live connection to `peer`, closing any older one (the newest wins).
    fn install(&self, peer: &Peer<M>) -> (u64, CancellationToken) {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let token = self.shutdown.child_token();
        // `connected` changes only under the `current` lock, so it always matches `current`.
        let mut current = peer.current.lock().expect("current lock poisoned");
        if let Some((_, old)) = current.replace((generation, token.clone())) {
            debug!(peer = peer.id, "replacing an older connection");
            old.cancel();
        }
        peer.connected.store(true, Ordering::Relaxed);
        peer.connects.fetch_add(1, Ordering::Relaxed);
        drop(current);
        self.link_changes.send_modify(|n| *n += 1);
        (generation, token)
    }

    /// Unregisters connection `generation` if it is still the live one.
    fn uninstall(&self, peer: &Peer<M>, generation: u64) {
        let mut current = peer.current.lock().expect("current lock poisoned");
        if matches!(current.as_ref(), Some((g, _)) if *g == generation) {
            *current = None;
            peer.connected.store(false, Ordering::Relaxed);
            drop(current);
            self.link_changes.send_modify(|n| *n += 1);
        }
    }
}

fn bind_listener(addr: SocketAddr) -> Result<TcpListener, TransportError> {
    let bind_err = |source| TransportError::Bind { addr, source };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(bind_err)?;
    // A restarted member must be able to rebind at once, despite TIME_WAIT connections.
    socket.set_reuseaddr(true).map_err(bind_err)?;
    socket.bind(addr).map_err(bind_err)?;
    socket.listen(1024).map_err(bind_err)
}

/// Appends one frame in `LengthDelimitedCodec`'s default format (4-byte big-endian length,
/// then the body). Encoding straight into the batch buffer saves a copy per message.
fn put_frame<T: Message>(buf: &mut BytesMut, msg: &T) {
    let len = msg.encoded_len();
    buf.reserve(4 + len);
    buf.put_u32(len as u32);
    msg.encode(buf)
        .expect("BytesMut grows, so encoding cannot run out of space");
}

async fn write_hello(writer: &mut OwnedWriteHalf, hello: &Hello) -> std::io::Result<()> {
    let mut buf = BytesMut::new();
    put_frame(&mut buf, hello);
    writer.write_all(&buf).await
}

async fn read_hello(
    reader: &mut FramedRead<OwnedReadHalf, LengthDelimitedCodec>,
) -> Result<Hello, ConnError> {
    match reader.next().await {
        None => Err(ConnError::ClosedInHandshake),
        Some(Err(e)) => Err(ConnError::Io(e)),
        Some(Ok(frame)) => Hello::decode(frame.freeze()).map_err(ConnError::BadHello),
    }
}

/// A connection whose hello exchange succeeded.
struct Conn {
    reader: FramedRead<OwnedReadHalf, LengthDelimitedCodec>,
    writer: OwnedWriteHalf,
}

/// Accepts connections until shutdown; each gets its own task.
async fn accept_loop<M: Message + Default + Send + 'static>(
    shared: Arc<Shared<M>>,
    listener: TcpListener,
    done: mpsc::Sender<()>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shared.shutdown.cancelled() => return,
        };
        let (stream, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Typically EMFILE; back off briefly instead of spinning.
                warn!(error = %e, "peer accept failed");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
                    _ = shared.shutdown.cancelled() => return,
                }
            }
        };
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            warn!(%addr, "too many peer handshakes in progress, closing connection");
            continue;
        };
        let shared = shared.clone();
        let done = done.clone();
        let connection = async move {
            let _done = done;
            let _ = stream.set_nodelay(true);
            let handshake = tokio::time::timeout(
                shared.config.handshake_timeout,
                accept_handshake(&shared, stream),
            );
            let result = tokio::select! {
                r = handshake => r.unwrap_or(Err(ConnError::HandshakeTimeout)),
                _ = shared.shutdown.cancelled() => Err(ConnError::Shutdown),
            };
            drop(permit);
            match result {
                Ok((id, conn)) => {
                    let peer = &shared.peers[&id];
                    run_connection(&shared, peer, conn, addr).await;
                }
                Err(ConnError::Refused(reason)) => {
                    warn!(%addr, "refusing peer connection: {reason}");
                }
                Err(ConnError::Shutdown) => {}
                Err(e) => warn!(%addr, error = %e, "peer handshake failed"),
            }
        };
        tokio::spawn(connection.in_current_span());
    }
}

/// Reads the dialer's hello, checks it and answers with ours (or a refusal).
async fn accept_handshake<M>(
    shared: &Shared<M>,
    stream: TcpStream,
) -> Result<(u64, Conn), ConnError> {
    let (reader, mut writer) = stream.into_split();
    let mut reader = FramedRead::new(reader, shared.handshake_codec());
    let hello = read_hello(&mut reader).await?;
    match shared.check_incoming(&hello) {
        Ok(id) => {
            write_hello(&mut writer, &shared.hello(None)).await?;
            let mut conn = Conn { reader, writer };
            shared.open_frames(&mut conn);
            Ok((id, conn))
        }
        Err(reason) => {
            if let Some(peer) = shared.peers.get(&hello.sender_id) {
                peer.refused.fetch_add(1, Ordering::Relaxed);
            }
            // Best effort: tell the dialer why, so the log on its side is as clear as ours.
            let _ = write_hello(&mut writer, &shared.hello(Some(reason.clone()))).await;
            Err(ConnError::Refused(reason))
        }
    }
}

/// Keeps one connection to a lower-id peer open: dial, hello, run, back off, repeat.
async fn dial_loop<M: Message + Default + Send + 'static>(
    shared: Arc<Shared<M>>,
    id: u64,
    done: mpsc::Sender<()>,
) {
    let _done = done;
    let peer = &shared.peers[&id];
    let min = shared.config.reconnect_backoff_min;
    let max = shared.config.reconnect_backoff_max;
    let mut backoff = min;
    // Repeated identical failures are logged once at their level, then at debug.
    let mut last_error: Option<String> = None;
    loop {
        let attempt = tokio::time::timeout(
            shared.config.handshake_timeout,
            dial_handshake(&shared, peer),
        );
        let result = tokio::select! {
            r = attempt => r.unwrap_or(Err(ConnError::HandshakeTimeout)),
            _ = shared.shutdown.cancelled() => return,
        };
        match result {
            Ok(conn) => {
                last_error = None;
                let started = Instant::now();
                run_connection(&shared, peer, conn, peer.addr).await;
                // A connection that lived a while earns a quick redial; one that keeps dying
                // at once (a peer that accepts and then closes) keeps backing off.
                if started.elapsed() >= max {
                    backoff = min;
                }
            }
            Err(e) => {
                let text = e.to_string();
                let repeated = last_error.as_deref() == Some(text.as_str());
                match e {
                    ConnError::Refused(_) | ConnError::RefusedByPeer(_) => {
                        peer.refused.fetch_add(1, Ordering::Relaxed);
                        if repeated {
                            debug!(peer = id, addr = %peer.addr, "peer handshake: {text}");
                        } else {
                            warn!(peer = id, addr = %peer.addr, "peer handshake: {text}");
                        }
                    }
                    // A peer that is down is normal during start-up and restarts: say so once.
                    _ if repeated => {
                        debug!(peer = id, addr = %peer.addr, error = %text, "cannot reach peer")
                    }
                    _ => info!(peer = id, addr = %peer.addr, error = %text, "cannot reach peer"),
                }
                last_error = Some(text);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shared.shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(max);
    }
}

/// Connects to `peer`, sends our hello and checks its answer.
async fn dial_handshake<M>(shared: &Shared<M>, peer: &Peer<M>) -> Result<Conn, ConnError> {
    let stream = TcpStream::connect(peer.addr).await?;
    stream.set_nodelay(true)?;
    let (reader, mut writer) = stream.into_split();
    let mut reader = FramedRead::new(reader, shared.handshake_codec());
    write_hello(&mut writer, &shared.hello(None)).await?;
    let reply = read_hello(&mut reader).await?;
    if !reply.refusal.is_empty() {
        return Err(ConnError::RefusedByPeer(reply.refusal));
    }
    shared.check_common(&reply).map_err(ConnError::Refused)?;
    if reply.sender_id != peer.id {
        return Err(ConnError::Refused(format!(
            "expected server {} at {}, found server {}",
            peer.id, peer.addr, reply.sender_id
        )));
    }
    let mut conn = Conn { reader, writer };
    shared.open_frames(&mut conn);
    Ok(conn)
}

/// Runs an established connection until either direction fails, it is replaced or
/// disconnected, or the network shuts down.
async fn run_connection<M: Message + Default + Send + 'static>(
    shared: &Shared<M>,
    peer: &Peer<M>,
    conn: Conn,
    addr: SocketAddr,
) {
    let (generation, token) = shared.install(peer);
    info!(peer = peer.id, %addr, "peer connected");
    let Conn { reader, writer } = conn;
    let result: Result<(), ConnError> = tokio::select! {
        r = read_loop(shared, peer, reader) => r,
        r = write_loop(peer, writer) => r.map_err(ConnError::Io),
        _ = token.cancelled() => Err(ConnError::Shutdown),
    };
    shared.uninstall(peer, generation);
    match result {
        Ok(()) => info!(peer = peer.id, %addr, "peer closed the connection"),
        Err(ConnError::Shutdown) => {
            debug!(peer = peer.id, %addr, "peer connection closed locally")
        }
        Err(e @ (ConnError::BadFrame(_) | ConnError::Io(_))) => {
            warn!(peer = peer.id, %addr, error = %e, "closing peer connection")
        }
        Err(e) => warn!(peer = peer.id, %addr, error = %e, "peer connection ended"),
    }
}

/// Decodes frames from `peer` onto the inbound channel. `Ok` on a clean end of stream.
async fn read_loop<M: Message + Default + Send + 'static>(
    shared: &Shared<M>,
    peer: &Peer<M>,
    mut reader: FramedRead<OwnedReadHalf, LengthDelimitedCodec>,
) -> Result<(), ConnError> {
    while let Some(frame) = reader.next().await {
        // Decoding from `Bytes` lets `bytes` fields share the frame buffer instead of copying.
        let msg = M::decode(frame?.freeze()).map_err(ConnError::BadFrame)?;
        peer.received.fetch_add(1, Ordering::Relaxed);
        let nanos = shared.epoch.elapsed().as_nanos() as u64;
        peer.last_heard_nanos.store(nanos + 1, Ordering::Relaxed);
        // A full channel stops this reader; TCP flow control then slows the sender.
        if shared.inbound.send((peer.id, msg)).await.is_err() {
            return Err(ConnError::Shutdown);
        }
    }
    Ok(())
}

/// Drains `peer`'s queue onto the socket in batches, one `write_all` per batch.
async fn write_loop<M: Message>(peer: &Peer<M>, mut writer: OwnedWriteHalf) -> std::io::Result<()> {
    let _only_writer = peer.writer_lock.lock().await;
    let mut batch = Vec::new();
    let mut buf = BytesMut::new();
    loop {
        {
            let mut queue = peer.queue.lock().expect("peer queue lock poisoned");
            let mut batch_bytes = 0;
            while batch_bytes < MAX_BATCH_BYTES {
                let Some((msg, frame_bytes)) = queue.pop() else {
                    break;
                };
                batch_bytes += frame_bytes;
                batch.push(msg);
            }
        }
        if batch.is_empty() {
            peer.queued.notified().await;
            continue;
        }
        buf.clear();
        let messages = batch.len() as u64;
        for msg in batch.drain(..) {
            put_frame(&mut buf, &msg);
        }
        writer.write_all(&buf).await?;
        peer.sent.fetch_add(messages, Ordering::Relaxed);
        if buf.capacity() > MAX_BATCH_BYTES * 2 {
            // Do not keep a huge buffer around after a burst of large messages.
            buf = BytesMut::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use tokio::io::AsyncReadExt;
    use tokio_util::codec::Decoder;

    /// The test protocol message.
    #[derive(Clone, PartialEq, prost::Message)]
    struct Ping {
        #[prost(uint64, tag = "1")]
        from: u64,
        #[prost(uint64, tag = "2")]
        seq: u64,
        #[prost(string, tag = "3")]
        note: String,
    }

    fn ping(from: u64, seq: u64) -> Ping {
        Ping {
            from,
            seq,
            note: String::new(),
        }
    }

    /// Logs go to the test's captured output, shown when it fails.
    fn init_logs() {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_max_level(tracing::Level::DEBUG)
            .try_init();
    }

    /// Generous bound on anything we wait for; only reached when a test is failing.
    const PATIENCE: Duration = Duration::from_secs(20);

    /// `n` loopback addresses with ports that were free a moment ago.
    fn free_addrs(n: usize) -> Vec<SocketAddr> {
        let listeners: Vec<_> = (0..n)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        listeners.iter().map(|l| l.local_addr().unwrap()).collect()
    }

    fn config(id: u64, members: &[(u64, SocketAddr)], cluster: &str) -> TransportConfig {
        let listen = members.iter().find(|(i, _)| *i == id).unwrap().1;
        let mut c = TransportConfig::new(id, listen, members.iter().copied().collect(), cluster);
        // Keep reconnects quick so tests converge fast; the doubling is the same.
        c.reconnect_backoff_max = Duration::from_millis(200);
        c
    }

    fn members(addrs: &[SocketAddr]) -> Vec<(u64, SocketAddr)> {
        addrs
            .iter()
            .enumerate()
            .map(|(i, a)| (i as u64 + 1, *a))
            .collect()
    }

    async fn start_cluster(n: usize) -> (Vec<(u64, SocketAddr)>, Vec<PeerNetwork<Ping>>) {
        let m = members(&free_addrs(n));
        let mut nets = Vec::new();
        for &(id, _) in &m {
            nets.push(PeerNetwork::start(config(id, &m, "test")).await.unwrap());
        }
        (m, nets)
    }

    /// Polls `cond` until it holds; panics after `PATIENCE`.
    async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn recv_one(net: &PeerNetwork<Ping>) -> (u64, Ping) {
        tokio::time::timeout(PATIENCE, net.recv())
            .await
            .expect("timed out waiting for a message")
            .expect("network shut down")
    }

    /// Sends fresh probes from `from` to `to` until one arrives; other messages are skipped.
    /// Proves the link works without assuming when it (re)connected.
    async fn probe(from: &PeerNetwork<Ping>, to: &PeerNetwork<Ping>) {
        static NONCE: AtomicU64 = AtomicU64::new(1_000_000);
        let first = NONCE.fetch_add(1, Ordering::Relaxed);
        let deadline = Instant::now() + PATIENCE;
        loop {
            assert!(
                Instant::now() < deadline,
                "no probe from {} reached {}",
                from.my_id(),
                to.my_id()
            );
            let seq = NONCE.fetch_add(1, Ordering::Relaxed);
            from.send(to.my_id(), ping(from.my_id(), seq)).unwrap();
            let poll_until = Instant::now() + Duration::from_millis(100);
            while let Ok(Some((sender, msg))) =
                tokio::time::timeout_at(poll_until.into(), to.recv()).await
            {
                if sender == from.my_id() && msg.seq >= first {
                    assert_eq!(msg.from, sender);
                    return;
                }
            }
        }
    }

    async fn probe_all(nets: &[&PeerNetwork<Ping>]) {
        for a in nets {
            for b in nets {
                if a.my_id() != b.my_id() {
                    probe(a, b).await;
                }
            }
        }
    }

    #[test]
    fn network_can_be_shared_between_tasks() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<PeerNetwork<Ping>>();
    }

    #[test]
    fn frames_are_what_length_delimited_codec_reads() {
        let msg = ping(7, 42);
        let mut buf = BytesMut::new();
        put_frame(&mut buf, &msg);
        put_frame(&mut buf, &Ping::default());
        let mut codec = LengthDelimitedCodec::new();
        let first = codec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(Ping::decode(first.freeze()).unwrap(), msg);
        let second = codec.decode(&mut buf).unwrap().unwrap();
        assert!(second.is_empty());
        assert!(buf.is_empty());
    }

    #[tokio::test]
    async fn three_members_exchange_all_to_all_in_order() {
        init_logs();
        let (_, nets) = start_cluster(3).await;
        // Sent before any connection exists: the lower ids' messages wait in their queues.
        for a in &nets {
            for b in &nets {
                if a.my_id() != b.my_id() {
                    for seq in 0..50 {
                        a.send(b.my_id(), ping(a.my_id(), seq)).unwrap();
                    }
                }
            }
        }
        for b in &nets {
            let mut next: HashMap<u64, u64> = HashMap::new();
            for _ in 0..100 {
                let (from, msg) = recv_one(b).await;
                assert_eq!(from, msg.from);
                let expected = next.entry(from).or_insert(0);
                assert_eq!(msg.seq, *expected, "messages from {from} out of order");
                *expected += 1;
            }
            let senders: BTreeSet<u64> = next.keys().copied().collect();
            let others: BTreeSet<u64> = (1..=3).filter(|&i| i != b.my_id()).collect();
            assert_eq!(senders, others);
            assert!(next.values().all(|&n| n == 50));
        }
        for net in &nets {
            for s in net.stats() {
                assert!(s.connected, "{} -> {}", net.my_id(), s.id);
                assert_eq!(s.connects, 1, "one connection per pair");
                assert_eq!(s.messages_received, 50);
                assert_eq!(s.messages_dropped, 0);
                assert!(s.last_heard.is_some());
            }
        }
        // Frames far above the handshake's limit pass once connected.
        let big = Ping {
            note: "z".repeat(1 << 20),
            ..ping(1, 50)
        };
        nets[0].send(3, big.clone()).unwrap();
        assert_eq!(recv_one(&nets[2]).await, (1, big));

        wait_until("all queued messages written", || {
            nets.iter()
                .all(|n| n.stats().iter().all(|s| s.messages_sent >= 50))
        })
        .await;
        for net in &nets {
            net.shutdown().await;
        }
    }

    #[tokio::test]
    async fn restarted_member_is_reconnected_on_the_same_port() {
        init_logs();
        let (m, mut nets) = start_cluster(3).await;
        probe_all(&nets.iter().collect::<Vec<_>>()).await;

        let mut links = nets[0].link_changes();
        links.mark_unchanged();
        let two = nets.remove(1);
        two.shutdown().await;
        drop(two);
        wait_until("1 and 3 to notice 2 is gone", || {
            nets.iter().all(|n| !n.peer_stats(2).unwrap().connected)
        })
        .await;

        assert!(links.has_changed().unwrap(), "the lost link was announced");
        links.mark_unchanged();

        let two = PeerNetwork::start(config(2, &m, "test")).await.unwrap();
        assert_eq!(two.local_addr(), m[1].1);
        tokio::time::timeout(PATIENCE, links.changed())
            .await
            .expect("the new link was not announced")
            .unwrap();
        probe_all(&[&nets[0], &two, &nets[1]]).await;
        for n in &nets {
            assert!(n.peer_stats(2).unwrap().connects >= 2);
        }
        two.shutdown().await;
        for n in &nets {
            n.shutdown().await;
        }
    }

    #[tokio::test]
    async fn member_of_another_cluster_is_refused() {
        init_logs();
        let m = members(&free_addrs(3));
        let one = PeerNetwork::<Ping>::start(config(1, &m, "alpha"))
            .await
            .unwrap();
        let two = PeerNetwork::<Ping>::start(config(2, &m, "beta"))
            .await
            .unwrap();
        wait_until("both sides to count the refusal", || {
            one.peer_stats(2).unwrap().handshakes_refused >= 1
                && two.peer_stats(1).unwrap().handshakes_refused >= 1
        })
        .await;
        two.send(1, ping(2, 1)).unwrap();
        one.send(2, ping(1, 1)).unwrap();

        // A correctly configured member still gets in, and the stray never did.
        let three = PeerNetwork::<Ping>::start(config(3, &m, "alpha"))
            .await
            .unwrap();
        probe(&three, &one).await;
        probe(&one, &three).await;
        assert!(one.try_recv().is_none());
        for s in [one.peer_stats(2).unwrap(), two.peer_stats(1).unwrap()] {
            assert!(!s.connected);
            assert_eq!(s.connects, 0);
            assert_eq!(s.messages_received, 0);
        }
        for n in [one, two, three] {
            n.shutdown().await;
        }
    }

    /// Writes one frame on a raw socket.
    async fn write_raw_frame(stream: &mut TcpStream, body: &[u8]) {
        let mut buf = BytesMut::new();
        buf.put_u32(body.len() as u32);
        buf.put_slice(body);
        stream.write_all(&buf).await.unwrap();
    }

    /// Reads until the other side closes; panics if it does not.
    async fn expect_closed(stream: &mut TcpStream) {
        let mut buf = [0u8; 1024];
        let closed = async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(PATIENCE, closed)
            .await
            .expect("connection was not closed");
    }

    #[tokio::test]
    async fn garbage_frame_closes_only_that_connection() {
        init_logs();
        let addrs = free_addrs(3);
        let (a1, a2, a9) = (addrs[0], addrs[1], addrs[2]);
        // Server 9 is configured on member 1 but is played by a raw socket below.
        let one = PeerNetwork::<Ping>::start(config(1, &[(1, a1), (2, a2), (9, a9)], "test"))
            .await
            .unwrap();
        let two = PeerNetwork::<Ping>::start(config(2, &[(1, a1), (2, a2)], "test"))
            .await
            .unwrap();
        probe_all(&[&one, &two]).await;

        // A well-behaved hello, then a frame that is not a protocol message.
        let mut fake = TcpStream::connect(a1).await.unwrap();
        let hello = Hello {
            magic: HELLO_MAGIC,
            protocol_version: PROTOCOL_VERSION,
            sender_id: 9,
            cluster_id: "test".into(),
            refusal: String::new(),
        };
        write_raw_frame(&mut fake, &hello.encode_to_vec()).await;
        let len = fake.read_u32().await.unwrap() as usize;
        let mut body = vec![0; len];
        fake.read_exact(&mut body).await.unwrap();
        let reply = Hello::decode(&body[..]).unwrap();
        assert_eq!((reply.sender_id, reply.refusal.as_str()), (1, ""));
        wait_until("9 to be connected", || one.peer_stats(9).unwrap().connected).await;
        write_raw_frame(&mut fake, &[0xff; 10]).await;
        expect_closed(&mut fake).await;
        wait_until("9 to be disconnected", || {
            !one.peer_stats(9).unwrap().connected
        })
        .await;

        // Garbage instead of a hello, and a length over the frame limit.
        let mut fake = TcpStream::connect(a1).await.unwrap();
        write_raw_frame(&mut fake, b"ruok, not a hello").await;
        expect_closed(&mut fake).await;
        let mut fake = TcpStream::connect(a1).await.unwrap();
        fake.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3])
            .await
            .unwrap();
        expect_closed(&mut fake).await;

        // The real peer's connection was never disturbed.
        probe_all(&[&one, &two]).await;
        assert_eq!(one.peer_stats(2).unwrap().connects, 1);
        assert!(one.peer_stats(2).unwrap().connected);
        one.shutdown().await;
        two.shutdown().await;
    }

    #[tokio::test]
    async fn full_queue_drops_oldest_while_peer_is_down() {
        init_logs();
        let m = members(&free_addrs(2));
        let mut c = config(1, &m, "test");
        c.send_queue_len = 4;
        c.max_frame_bytes = 1024;
        let one = PeerNetwork::<Ping>::start(c).await.unwrap();

        // Peer 2 is not running: sends return at once and the oldest are dropped.
        let outcomes: Vec<_> = (0..100)
            .map(|seq| one.send(2, ping(1, seq)).unwrap())
            .collect();
        assert!(outcomes[..4].iter().all(|o| *o == SendOutcome::Queued));
        assert!(outcomes[4..]
            .iter()
            .all(|o| *o == SendOutcome::DroppedOldest));
        let s = one.peer_stats(2).unwrap();
        assert_eq!((s.connected, s.queued, s.messages_dropped), (false, 4, 96));
        assert_eq!(one.messages_dropped(), 96);

        assert!(matches!(
            one.send(5, ping(1, 0)),
            Err(TransportError::UnknownPeer(5))
        ));
        let big = Ping {
            note: "x".repeat(2000),
            ..ping(1, 0)
        };
        assert!(matches!(
            one.send(2, big),
            Err(TransportError::MessageTooLarge { .. })
        ));

        // When 2 comes up it gets the newest four, in order.
        let two = PeerNetwork::<Ping>::start(config(2, &m, "test"))
            .await
            .unwrap();
        let mut seqs = Vec::new();
        for _ in 0..4 {
            let (from, msg) = recv_one(&two).await;
            assert_eq!(from, 1);
            seqs.push(msg.seq);
        }
        assert_eq!(seqs, [96, 97, 98, 99]);
        one.shutdown().await;
        two.shutdown().await;
    }

    #[tokio::test]
    async fn queue_is_bounded_in_bytes_too() {
        init_logs();
        let m = members(&free_addrs(2));
        let mut c = config(1, &m, "test");
        c.send_queue_bytes = 100;
        let one = PeerNetwork::<Ping>::start(c).await.unwrap();
        let msg = |seq, len| Ping {
            note: "n".repeat(len),
            ..ping(1, seq)
        };
        let frame_bytes = 4 + msg(0, 40).encoded_len();
        assert!(2 * frame_bytes <= 100 && 3 * frame_bytes > 100);

        for seq in 0..10 {
            one.send(2, msg(seq, 40)).unwrap();
        }
        let s = one.peer_stats(2).unwrap();
        assert_eq!((s.queued, s.messages_dropped), (2, 8));
        // One message over the byte bound still goes, alone.
        assert_eq!(
            one.send(2, msg(10, 300)).unwrap(),
            SendOutcome::DroppedOldest
        );
        let s = one.peer_stats(2).unwrap();
        assert_eq!((s.queued, s.messages_dropped), (1, 10));
        one.shutdown().await;
    }

    #[tokio::test]
    async fn shutdown_is_prompt_and_the_port_is_reusable() {
        init_logs();
        let (m, nets) = start_cluster(3).await;
        probe_all(&nets.iter().collect::<Vec<_>>()).await;

        // A pending `recv` is woken by shutdown, and shutdown waits for every task.
        let (got, ()) = tokio::time::timeout(PATIENCE, async {
            tokio::join!(nets[0].recv(), nets[0].shutdown())
        })
        .await
        .expect("shutdown hung");
        assert!(got.is_none());
        assert!(matches!(
            nets[0].send(2, ping(1, 0)),
            Err(TransportError::Shutdown)
        ));
        wait_until("2 and 3 to see 1 close", || {
            nets[1..]
                .iter()
                .all(|n| !n.peer_stats(1).unwrap().connected)
        })
        .await;

        let one = PeerNetwork::start(config(1, &m, "test")).await.unwrap();
        probe_all(&[&one, &nets[1], &nets[2]]).await;
        for n in [&one, &nets[1], &nets[2]] {
            tokio::time::timeout(PATIENCE, n.shutdown())
                .await
                .expect("shutdown hung");
        }
    }

    /// A TCP proxy that can cut the link, for partition tests.
    struct Proxy {
        addr: SocketAddr,
        cut: Arc<AtomicBool>,
        /// Cancelled to kill the connections currently relayed.
        links: Arc<Mutex<CancellationToken>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Proxy {
        async fn start(target: SocketAddr) -> Proxy {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let cut = Arc::new(AtomicBool::new(false));
            let links = Arc::new(Mutex::new(CancellationToken::new()));
            let (cut2, links2) = (cut.clone(), links.clone());
            let task = tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if cut2.load(Ordering::SeqCst) {
                        continue; // dropped: the dialer sees the connection close
                    }
                    let token = links2.lock().unwrap().clone();
                    tokio::spawn(async move {
                        let Ok(mut outbound) = TcpStream::connect(target).await else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            _ = token.cancelled() => {}
                        }
                    });
                }
            });
            Proxy {
                addr,
                cut,
                links,
                task,
            }
        }

        fn partition(&self) {
            self.cut.store(true, Ordering::SeqCst);
            let mut links = self.links.lock().unwrap();
            links.cancel();
            *links = CancellationToken::new();
        }

        fn heal(&self) {
            self.cut.store(false, Ordering::SeqCst);
        }
    }

    impl Drop for Proxy {
        fn drop(&mut self) {
            self.task.abort();
            self.links.lock().unwrap().cancel();
        }
    }

    #[tokio::test]
    async fn partition_through_a_proxy_heals_and_disconnect_reconnects() {
        init_logs();
        let m = members(&free_addrs(2));
        let proxy = Proxy::start(m[0].1).await;
        let one = PeerNetwork::<Ping>::start(config(1, &m, "test"))
            .await
            .unwrap();
        // Member 2 dials member 1 through the proxy.
        let two = PeerNetwork::<Ping>::start(config(2, &[(1, proxy.addr), m[1]], "test"))
            .await
            .unwrap();
        probe_all(&[&one, &two]).await;

        proxy.partition();
        wait_until("both sides to see the partition", || {
            !one.peer_stats(2).unwrap().connected && !two.peer_stats(1).unwrap().connected
        })
        .await;
        one.send(2, ping(1, 7)).unwrap();
        assert!(one.peer_stats(2).unwrap().queued >= 1);
        proxy.heal();
        probe_all(&[&one, &two]).await;
        assert!(one.peer_stats(2).unwrap().connects >= 2);

        // The lower id drops the link; the higher id redials.
        let before = one.peer_stats(2).unwrap().connects;
        one.disconnect(2).unwrap();
        wait_until("2 to redial", || {
            let s = one.peer_stats(2).unwrap();
            s.connected && s.connects > before
        })
        .await;
        probe_all(&[&one, &two]).await;
        one.shutdown().await;
        two.shutdown().await;
    }
}
