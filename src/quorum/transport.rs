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
//! * Outbound: one bounded queue per peer. [`PeerNetwork::send`] is a plain (non-async) call
//!   that pushes onto it; when the queue is full the **oldest** message is dropped (the freshest
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
//! warning; the dialer reconnects with backoff. Nothing in here panics on peer input. Tests
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
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Version of this transport's framing and handshake. Peers must agree exactly.
pub const PROTOCOL_VERSION: u32 = 1;

/// First field of every hello: "CORL". Lets us tell a stray client (or a ZooKeeper server
/// pointed at the wrong port) from a Corral peer with a different configuration.
const HELLO_MAGIC: u32 = 0x434f_524c;

/// Upper bound on the bytes one writer batch encodes before it writes, so that a queue full of
/// large snapshot chunks does not turn into one huge buffer.
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

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
    /// Capacity of the inbound channel, in messages.
    pub recv_queue_len: usize,
    pub reconnect_backoff_min: Duration,
    pub reconnect_backoff_max: Duration,
    /// Bound on connect plus hello exchange.
    pub handshake_timeout: Duration,
}

impl TransportConfig {
    /// A configuration with the default limits: 64 MiB frames, 1024-message send queues, a
    /// 4096-message inbound channel, 50 ms → 2 s reconnect backoff, 5 s handshake timeout.
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
    /// Queued, and the oldest queued message for that peer was dropped to make room.
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
    /// Messages dropped from the full outbound queue.
    pub messages_dropped: u64,
    /// Messages waiting in the outbound queue.
    pub queued: usize,
    /// When the last message from this peer arrived.
    pub last_heard: Option<Instant>,
}

/// State for one configured peer, shared by the caller, its dial task and its connection.
struct Peer<M> {
    id: u64,
    addr: SocketAddr,
    queue: Mutex<VecDeque<M>>,
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
            queue: Mutex::new(VecDeque::new()),
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
        });
        let (done_tx, done_rx) = mpsc::channel(1);

        info!(
            my_id = shared.config.my_id,
            %local_addr,
            peers = shared.peers.len(),
            "peer transport listening"
        );
        tokio::spawn(accept_loop(shared.clone(), listener, done_tx.clone()));
        for peer in shared.peers.values() {
            // The higher id dials; see the module docs.
            if peer.id < shared.config.my_id {
                tokio::spawn(dial_loop(shared.clone(), peer.id, done_tx.clone()));
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
        let outcome = {
            let mut queue = peer.queue.lock().expect("peer queue lock poisoned");
            let outcome = if queue.len() >= self.shared.config.send_queue_len {
                queue.pop_front();
                SendOutcome::DroppedOldest
            } else {
                SendOutcome::Queued
            };
            queue.push_back(msg);
            outcome
        };
        if outcome == SendOutcome::DroppedOldest {
            let dropped = peer.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            debug!(
                peer = to,
                dropped, "outbound queue full, dropped the oldest message"
            );
        }
        peer.queued.notify_one();
        Ok(outcome)
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
            queued: p.queue.lock().expect("peer queue lock poisoned").len(),
            last_heard: (heard > 0).then(|| self.epoch + Duration::from_nanos(heard - 1)),
        }
    }

    fn codec(&self) -> LengthDelimitedCodec {
        LengthDelimitedCodec::builder()
            .max_frame_length(self.config.max_frame_bytes)
            .new_codec()
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
                "server {} speaks peer protocol version {}, this member speaks {}",
                hello.sender_id, hello.protocol_version, PROTOCOL_VERSION
            ));
        }
        if hello.cluster_id != self.config.cluster_id {
            return Err(format!(
                "server {} belongs to cluster {:?}, this member to {:?}; is it configured for \
                 another ensemble?",
                hello.sender_id, hello.cluster_id, self.config.cluster_id
            ));
        }
        Ok(())
    }

    /// The acceptor's check of a dialer's hello.
    fn check_incoming(&self, hello: &Hello) -> Result<u64, String> {
        self.check_common(hello)?;
        let id = hello.sender_id;
        if id == self.config.my_id {
            return Err(format!("server {id} claims this member's own id"));
        }
        if !self.peers.contains_key(&id) {
            return Err(format!("server {id} is not in this member's configuration"));
        }
        if id < self.config.my_id {
            return Err(format!(
                "server {id} has a lower id than this member ({}); only the higher id dials",
                self.config.my_id
            ));
        }
        Ok(id)
    }

    /// Registers a new live connection to `peer`, closing any older one (the newest wins).
    fn install(&self, peer: &Peer<M>) -> (u64, CancellationToken) {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let token = self.shutdown.child_token();
        let old = peer
            .current
            .lock()
            .expect("current lock poisoned")
            .replace((generation, token.clone()));
        if let Some((_, old)) = old {
            debug!(peer = peer.id, "replacing an older connection");
            old.cancel();
        }
        peer.connected.store(true, Ordering::Relaxed);
        peer.connects.fetch_add(1, Ordering::Relaxed);
        (generation, token)
    }

    /// Unregisters connection `generation` if it is still the live one.
    fn uninstall(&self, peer: &Peer<M>, generation: u64) {
        let mut current = peer.current.lock().expect("current lock poisoned");
        if matches!(current.as_ref(), Some((g, _)) if *g == generation) {
            *current = None;
            peer.connected.store(false, Ordering::Relaxed);
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
        tokio::spawn(async move {
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
        });
    }
}

/// Reads the dialer's hello, checks it and answers with ours (or a refusal).
async fn accept_handshake<M>(
    shared: &Shared<M>,
    stream: TcpStream,
) -> Result<(u64, Conn), ConnError> {
    let (reader, mut writer) = stream.into_split();
    let mut reader = FramedRead::new(reader, shared.codec());
    let hello = read_hello(&mut reader).await?;
    match shared.check_incoming(&hello) {
        Ok(id) => {
            write_hello(&mut writer, &shared.hello(None)).await?;
            Ok((id, Conn { reader, writer }))
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
                backoff = min;
                run_connection(&shared, peer, conn, peer.addr).await;
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
                    // A peer that is down is normal during start-up and restarts.
                    _ => debug!(peer = id, addr = %peer.addr, error = %text, "cannot reach peer"),
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
    let mut reader = FramedRead::new(reader, shared.codec());
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
    Ok(Conn { reader, writer })
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
                let Some(msg) = queue.pop_front() else { break };
                batch_bytes += 4 + msg.encoded_len();
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
