//! The single owner of the tree and the session table.
//!
//! Connection tasks decode frames and send them here over one bounded channel; this task handles
//! them strictly in arrival order, so a session's read always sees that session's earlier writes
//! without any lock around the tree. It assigns every zxid, turns writes into transactions,
//! applies them, and pushes replies and watch events back to the connections' bounded outboxes.
//! Session expiry and container/TTL clean-up run off the same loop on a timer.
//!
//! In quorum mode (`quorum.rs`) the same task also drives the replication state machines: it
//! feeds them peer messages, ticks and durability, and carries out what they command. Writes
//! then become proposals (prepared here on the leader, forwarded by followers and observers),
//! and the tree changes only when a transaction is committed.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hashbrown::HashMap;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use super::four_letter;
use super::persist::{Persistence, Recovered};
use super::replica::Replica;
use super::session::{session_password, ConnId, SessionTable};
use super::snapshotter::{self, SnapDone, SnapMsg};
use super::stats::{ConnStats, ServerStats};
use super::ServerOptions;
use crate::jute::{
    ClientInfo, ConnectRequest, ConnectResponse, ErrorCode, Id, OpCode, Request, Response,
    WatcherEvent,
};
use crate::storage::writer::Durability;
use crate::tree::{Database, RequestContext, Txn, TxnBody, TxnResult, WatchFired};

/// What a connection task sends to the core.
#[derive(Debug)]
pub enum CoreMsg {
    /// A handshake. The core answers on `tx` with `Outbound::Connected`.
    Connect {
        conn_id: ConnId,
        peer: SocketAddr,
        req: ConnectRequest,
        tx: mpsc::Sender<Outbound>,
    },
    /// A decoded request on an established connection.
    Request {
        conn_id: ConnId,
        xid: i32,
        req: Request,
        received_at: Instant,
    },
    /// A request that could not be decoded: answered with `err`; then the connection closes
    /// if `close`. An undecodable write still takes a zxid, as in ZooKeeper.
    BadRequest {
        conn_id: ConnId,
        xid: i32,
        op: i32,
        err: ErrorCode,
        close: bool,
    },
    /// The connection is gone (EOF, error, or closed by us).
    Disconnected { conn_id: ConnId },
    /// A four-letter word; the rendered text goes back on `reply`.
    FourLetter {
        word: String,
        peer: SocketAddr,
        reply: oneshot::Sender<String>,
    },
}

/// What the core sends to a connection's writer.
#[derive(Debug)]
pub enum Outbound {
    /// Handshake answer. A session id of 0 means the session was refused (expired): the writer
    /// sends it and closes.
    Connected {
        resp: ConnectResponse,
        with_read_only: bool,
    },
    /// A reply to a request (releases one in-flight slot).
    Reply {
        xid: i32,
        zxid: i64,
        err: ErrorCode,
        body: Response,
    },
    /// A watch notification.
    Event { zxid: i64, event: WatcherEvent },
    /// Flush what is queued, then close the connection.
    Close,
}

/// What became of a message handed to a connection's outbox.
enum Delivery {
    /// In the outbox, or held until durability.
    Queued,
    /// The outbox is full: the client is not reading.
    Full,
    /// The connection is gone.
    Closed,
}

/// Holds `msg` until `hold_until` is durable, if given; otherwise puts it in the connection's
/// outbox without waiting. The outbox handle is cloned only for a held message. (A function
/// of the fields it needs, so that a caller can pass a handle borrowed from the core.)
fn hold_or_deliver(
    held: &mut VecDeque<Held>,
    hold_until: Option<i64>,
    conn_id: ConnId,
    tx: &mpsc::Sender<Outbound>,
    msg: Outbound,
) -> Delivery {
    if let Some(needs_zxid) = hold_until {
        held.push_back(Held {
            needs_zxid,
            conn_id,
            tx: tx.clone(),
            msg,
        });
        return Delivery::Queued;
    }
    match tx.try_send(msg) {
        Ok(()) => Delivery::Queued,
        Err(mpsc::error::TrySendError::Full(_)) => Delivery::Full,
        Err(mpsc::error::TrySendError::Closed(_)) => Delivery::Closed,
    }
}

/// A message waiting until the transaction it may reflect is durable.
struct Held {
    needs_zxid: i64,
    conn_id: ConnId,
    tx: mpsc::Sender<Outbound>,
    msg: Outbound,
}

/// Quorum mode: a request of a session waiting behind that session's earlier write, so that
/// every session sees its own writes and gets its replies in order.
enum Queued {
    /// A write sent to the leader; answered when its transaction is applied.
    Write {
        conn_id: ConnId,
        cxid: i32,
        op: OpCode,
        received_at: Instant,
    },
    /// A sync; answered once `until` (learnt from the leader) is applied.
    Sync {
        conn_id: ConnId,
        cxid: i32,
        path: String,
        until: Option<i64>,
        received_at: Instant,
    },
    /// Anything served locally (reads, pings, auth).
    Local {
        conn_id: ConnId,
        xid: i32,
        req: Request,
        received_at: Instant,
    },
}

impl Queued {
    fn conn_id(&self) -> ConnId {
        match self {
            Queued::Write { conn_id, .. }
            | Queued::Sync { conn_id, .. }
            | Queued::Local { conn_id, .. } => *conn_id,
        }
    }
}

/// Quorum mode: a handshake waiting for its createSession transaction to be committed.
struct Connecting {
    conn_id: ConnId,
    peer: SocketAddr,
    tx: mpsc::Sender<Outbound>,
    timeout_ms: i32,
    read_only: bool,
}

/// Quorum mode: a reconnect waiting for this member to catch up with the leader.
struct Revalidating {
    peer: SocketAddr,
    req: ConnectRequest,
    tx: mpsc::Sender<Outbound>,
    until: Option<i64>,
}

/// A snapshot image read for a lagging peer (quorum leader).
type PeerSnapshot = (u64, Option<(i64, Bytes)>);

struct ConnEntry {
    tx: mpsc::Sender<Outbound>,
    peer: SocketAddr,
    session_id: i64,
    ip_id: Id,
    stats: ConnStats,
}

/// The core's state. Owned by one task; nothing here is shared.
pub struct Core {
    opts: Arc<ServerOptions>,
    persist: Persistence,
    /// Set when the log failed: no write can be made durable any more, so writes are refused
    /// and the server serves reads from the state that is on disk.
    read_only: bool,
    /// Something went wrong that the server cannot serve through: stop.
    fatal: bool,
    db: Database,
    sessions: SessionTable,
    conns: HashMap<ConnId, ConnEntry>,
    last_zxid: i64,
    /// Highest zxid known to be on disk; replies that may reflect later ones wait in `held`.
    durable_zxid: i64,
    held: VecDeque<Held>,
    stats: ServerStats,
    started: Instant,
    last_container_check: Instant,
    last_purge: Instant,
    /// Sends chunks of the snapshot being written, if one is.
    snap_tx: Option<mpsc::Sender<SnapMsg>>,
    /// Every chunk was sent; waiting for the writer to report.
    snap_finishing: bool,
    snap_done_tx: mpsc::Sender<SnapDone>,
    snap_done_rx: Option<mpsc::Receiver<SnapDone>>,
    snap_started: Instant,
    /// When the last snapshot ended and how long it took.
    snap_last: Option<(Instant, std::time::Duration)>,
    txns_since_snapshot: u64,
    /// Transactions before the next snapshot: snapCount/2 plus a random share of it, so
    /// that members of an ensemble do not all snapshot at once (as ZooKeeper does).
    snapshot_after_txns: u64,
    /// Quorum mode: replication state; `None` when standalone.
    repl: Option<Box<Replica>>,
    /// Quorum mode: per session, requests waiting behind that session's pending write.
    queues: HashMap<i64, VecDeque<Queued>>,
    /// Quorum mode: handshakes waiting for their session to be committed.
    connecting: HashMap<i64, Connecting>,
    /// Quorum mode: reconnects naming a session unknown here, waiting until this member has
    /// applied what the leader had proposed (`until`, once the leader said).
    revalidating: HashMap<ConnId, Revalidating>,
    /// Quorum mode: the log writer was restarted; the run loop takes its new watch.
    new_durability: Option<watch::Receiver<Durability>>,
    peer_snap_tx: mpsc::Sender<PeerSnapshot>,
    peer_snap_rx: Option<mpsc::Receiver<PeerSnapshot>>,
    /// Snapshots given up because the tree was replaced (a leader's snapshot was installed);
    /// their writers still report, and those reports are ignored.
    snaps_abandoned: u32,
}

/// Under sustained load, one snapshot chunk is made after this many batches of messages.
const SNAPSHOT_EVERY_BUSY_ROUNDS: u32 = 8;
/// Most client messages the core takes from its channel in one round.
const CORE_BATCH_MESSAGES: usize = 256;

/// After a snapshot that took T, the next one starts no sooner than this many T later.
const SNAPSHOT_IDLE_FACTOR: u32 = 3;

/// The next message from a peer network, or never (standalone, or after shutdown).
async fn recv_peer<M: prost::Message + Default + Send + 'static>(
    net: &Option<Arc<crate::quorum::transport::PeerNetwork<M>>>,
) -> Option<(u64, M)> {
    match net {
        Some(n) => n.recv().await,
        None => std::future::pending().await,
    }
}

/// Whether a peer link changed (`false`: the network is gone); never when standalone.
async fn link_changed(links: &mut Option<watch::Receiver<u64>>) -> bool {
    match links {
        Some(l) => l.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

fn snapshot_threshold(snap_count: u64) -> u64 {
    let half = (snap_count / 2).max(1);
    half + rand::random::<u64>() % half
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Core {
    pub fn new(opts: Arc<ServerOptions>, persist: Persistence, recovered: Recovered) -> Self {
        Self::with_replica(opts, persist, recovered, None)
    }

    /// A core for a quorum member: `recovered` is the snapshot state (the log goes to the
    /// replica's ZAB core, which applies it as it is committed).
    pub fn with_replica(
        opts: Arc<ServerOptions>,
        persist: Persistence,
        recovered: Recovered,
        repl: Option<Replica>,
    ) -> Self {
        let started = Instant::now();
        // Session ids carry the server id in their top byte, so members never collide.
        let server_id = repl.as_ref().map_or(0, |r| r.membership.myid as u8);
        let mut sessions = SessionTable::new(opts.tick_time_ms, server_id, wall_ms() as u64);
        for (id, timeout_ms) in &recovered.sessions {
            // A recovered session gets a full timeout from now to reconnect, as in ZooKeeper.
            sessions.add(*id, *timeout_ms, 0);
        }
        let (snap_done_tx, snap_done_rx) = mpsc::channel(1);
        let (peer_snap_tx, peer_snap_rx) = mpsc::channel(4);
        let snapshot_after_txns = snapshot_threshold(opts.snap_count);
        Core {
            repl: repl.map(Box::new),
            queues: HashMap::new(),
            connecting: HashMap::new(),
            revalidating: HashMap::new(),
            new_durability: None,
            peer_snap_tx,
            peer_snap_rx: Some(peer_snap_rx),
            snaps_abandoned: 0,
            snap_tx: None,
            snap_finishing: false,
            snap_done_tx,
            snap_done_rx: Some(snap_done_rx),
            snap_started: started,
            snap_last: None,
            txns_since_snapshot: 0,
            snapshot_after_txns,
            sessions,
            opts,
            persist,
            read_only: false,
            fatal: false,
            db: recovered.db,
            conns: HashMap::new(),
            last_zxid: recovered.last_zxid,
            durable_zxid: recovered.last_zxid,
            held: VecDeque::new(),
            stats: ServerStats::default(),
            started,
            last_container_check: started,
            last_purge: started,
        }
    }

    /// Replaces the session table after the tree was rebuilt from disk or from a leader's
    /// snapshot; every session gets a full timeout from now.
    fn reset_sessions(&mut self, sessions: &[(i64, i32)]) {
        let server_id = self.repl.as_ref().map_or(0, |r| r.membership.myid as u8);
        let mut table = SessionTable::new(self.opts.tick_time_ms, server_id, wall_ms() as u64);
        let now = self.mono_ms();
        for &(id, timeout_ms) in sessions {
            table.add(id, timeout_ms, now);
        }
        self.sessions = table;
    }

    /// Monotonic milliseconds since start; drives session expiry.
    fn mono_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Runs until shutdown is signalled or every sender is gone.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<CoreMsg>,
        mut shutdown: broadcast::Receiver<()>,
        mut durability: watch::Receiver<Durability>,
    ) {
        let tick = std::time::Duration::from_millis((self.opts.tick_time_ms / 2).max(10));
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::with_capacity(CORE_BATCH_MESSAGES);
        let mut log_alive = true;
        let mut busy_rounds = 0u32;
        let mut client_round = false;
        let Some(mut snap_done_rx) = self.snap_done_rx.take() else {
            return;
        };
        let Some(mut peer_snap_rx) = self.peer_snap_rx.take() else {
            return;
        };
        // Quorum mode: the peer networks, the link watch and the quorum clock.
        let zab_net = self.repl.as_ref().map(|r| r.zab_net.clone());
        let elect_net = self.repl.as_ref().map(|r| r.elect_net.clone());
        let mut links = zab_net.as_ref().map(|n| n.link_changes());
        let mut quorum_ticker = tokio::time::interval(std::time::Duration::from_millis(
            super::replica::QUORUM_TICK_MS,
        ));
        quorum_ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let quorum = self.repl.is_some();
        if quorum {
            self.quorum_start();
        }
        loop {
            let snap_tx = if self.snap_finishing {
                None
            } else {
                self.snap_tx.clone()
            };
            // Biased: client work first; a snapshot chunk is made when nothing else is
            // ready (or, below, after enough busy rounds, so a snapshot always finishes).
            tokio::select! {
                biased;
                _ = shutdown.recv() => break,
                changed = durability.changed(), if log_alive => {
                    if changed.is_err() {
                        log_alive = false;
                        continue;
                    }
                    let (durable, failed) = {
                        let d = durability.borrow_and_update();
                        (d.durable_zxid(), d.failure().map(|e| e.to_string()))
                    };
                    if quorum {
                        self.on_durable_quorum(durable);
                    } else {
                        self.on_durable(durable);
                    }
                    if let Some(error) = failed {
                        log_alive = false;
                        self.on_log_failure(&error);
                    }
                }
                Some((from, msg)) = recv_peer(&zab_net) => {
                    self.on_peer_message(from, msg);
                    // Drain what else arrived, so acknowledgements are handled in batches.
                    if let Some(net) = &zab_net {
                        for _ in 0..256 {
                            let Some((from, msg)) = net.try_recv() else { break };
                            self.on_peer_message(from, msg);
                        }
                    }
                }
                Some((from, n)) = recv_peer(&elect_net) => self.on_election_message(from, n),
                changed = link_changed(&mut links) => {
                    if changed {
                        self.on_links_changed();
                    } else {
                        links = None;
                    }
                }
                _ = quorum_ticker.tick(), if quorum => self.on_quorum_tick(),
                Some(image) = peer_snap_rx.recv() => self.on_peer_snapshot(image),
                n = rx.recv_many(&mut batch, CORE_BATCH_MESSAGES) => {
                    if n == 0 {
                        break;
                    }
                    for msg in batch.drain(..) {
                        self.handle(msg);
                    }
                    busy_rounds += 1;
                    client_round = n < CORE_BATCH_MESSAGES;
                }
                Some(done) = snap_done_rx.recv() => self.on_snapshot_done(done),
                _ = ticker.tick() => self.on_tick(),
                permit = async {
                    match &snap_tx {
                        Some(tx) => tx.reserve().await.ok(),
                        None => std::future::pending().await,
                    }
                } => {
                    busy_rounds = 0;
                    self.snapshot_step(permit);
                }
            }
            if busy_rounds >= SNAPSHOT_EVERY_BUSY_ROUNDS {
                busy_rounds = 0;
                if let Some(tx) = &snap_tx {
                    if let Ok(permit) = tx.try_reserve() {
                        self.snapshot_step(Some(permit));
                    }
                }
            }
            if let Some(d) = self.new_durability.take() {
                durability = d;
                log_alive = true;
            }
            if self.fatal {
                break;
            }
            if self.txns_since_snapshot >= self.snapshot_after_txns {
                self.start_snapshot();
            }
            let logged = self.persist.has_pending();
            if logged && self.persist.flush().await.is_err() && !self.read_only {
                // The writer stopped; its failure notice tells why.
                warn!("log writer is gone; waiting for its failure report");
            }
            if std::mem::take(&mut client_round) && !logged {
                // A round of client requests that wrote nothing (reads, or writes forwarded to
                // the leader): let the connection tasks that are ready run, and the sockets be
                // polled, before the next round. Their requests then arrive here as one batch
                // instead of waking this task once each (a watch fan-out's re-arming reads:
                // +6-13 % notifications/s). A round that wrote goes straight on, so the next
                // group commit is not held up.
                tokio::task::yield_now().await;
            }
        }
        self.persist.close();
        if let Some(r) = &self.repl {
            r.zab_net.shutdown().await;
            r.elect_net.shutdown().await;
        }
        info!("core stopped");
    }

    /// Begins a background snapshot of the tree as of the last zxid. Called between batches,
    /// so the session table matches the tree exactly.
    fn start_snapshot(&mut self) {
        if self.snap_tx.is_some() || self.read_only {
            return;
        }
        // Snapshots cost the core time (producing chunks) and a core's worth of CPU on the
        // writer thread. On a busy server snapCount alone would snapshot back to back, so
        // keep them to at most a quarter of the time: wait three times the last one's
        // duration after it ended. The log just grows a little longer meanwhile.
        if let Some((ended, took)) = self.snap_last {
            if ended.elapsed() < took * SNAPSHOT_IDLE_FACTOR {
                return;
            }
        }
        self.txns_since_snapshot = 0;
        self.snapshot_after_txns = snapshot_threshold(self.opts.snap_count);
        let header = match self.db.begin_snapshot() {
            Ok(h) => h,
            Err(e) => {
                warn!(error = %e, "cannot begin a snapshot");
                return;
            }
        };
        let sessions: Vec<(i64, i32)> =
            self.sessions.iter().map(|s| (s.id, s.timeout_ms)).collect();
        match snapshotter::start(
            self.persist.snap_dir(),
            header.zxid,
            wall_ms(),
            sessions,
            self.snap_done_tx.clone(),
        ) {
            Ok(tx) => {
                info!(
                    zxid = format_args!("0x{:x}", header.zxid),
                    znodes = header.node_count,
                    "snapshot started"
                );
                self.snap_tx = Some(tx);
                self.snap_finishing = false;
                self.snap_started = Instant::now();
            }
            Err(e) => {
                warn!(error = %e, "cannot start a snapshot");
                self.db.abort_snapshot();
            }
        }
    }

    /// Hands the snapshot writer its next chunk (there is room for it: `permit`).
    fn snapshot_step(&mut self, permit: Option<mpsc::Permit<'_, SnapMsg>>) {
        let Some(permit) = permit else {
            // The writer thread is gone; its report says why.
            self.snap_finishing = true;
            return;
        };
        match self.db.snapshot_chunk(snapshotter::CHUNK_NODES) {
            Some(chunk) => permit.send(SnapMsg::Chunk(chunk.nodes)),
            None => {
                permit.send(SnapMsg::Finish);
                self.snap_finishing = true;
            }
        }
    }

    fn on_snapshot_done(&mut self, done: SnapDone) {
        if self.snaps_abandoned > 0 && done.result.is_err() {
            // A snapshot of a tree that was replaced meanwhile (quorum mode): nothing to do.
            self.snaps_abandoned -= 1;
            return;
        }
        self.snap_last = Some((Instant::now(), self.snap_started.elapsed()));
        self.snap_tx = None;
        self.snap_finishing = false;
        if self.db.snapshot_zxid().is_some() {
            self.db.abort_snapshot();
        }
        if let (Ok(_), Some(_)) = (&done.result, &self.repl) {
            self.quorum_compacted(done.zxid);
        }
        match done.result {
            Ok(info) => info!(
                zxid = format_args!("0x{:x}", done.zxid),
                path = %info.path.display(),
                size_bytes = info.size_bytes,
                elapsed_ms = self.snap_started.elapsed().as_millis() as u64,
                "snapshot written"
            ),
            Err(e) => {
                warn!(zxid = format_args!("0x{:x}", done.zxid), error = %e, "snapshot failed")
            }
        }
    }

    /// The log cannot make anything durable any more. Replies waiting for durability will
    /// never be released, so their connections are closed (the clients see a connection
    /// loss, which is the truth: those writes are not known to be on disk). From now on
    /// writes are refused with NotReadOnly and reads are served.
    fn on_log_failure(&mut self, error: &str) {
        if self.repl.is_some() {
            // A member that cannot log cannot acknowledge anything; the ensemble goes on
            // without it. Stop, so an operator sees it and the data stays as it was.
            tracing::error!(error, "the transaction log failed; leaving the ensemble");
            self.fatal = true;
            return;
        }
        tracing::error!(
            error,
            durable_zxid = format_args!("0x{:x}", self.durable_zxid),
            "the transaction log failed: refusing writes from now on, serving reads"
        );
        self.read_only = true;
        for h in self.held.drain(..) {
            let _ = h.tx.try_send(Outbound::Close);
        }
        // Every client reconnects; its view is rebuilt from what is on disk.
        self.last_zxid = self.durable_zxid;
        let all: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn_id in all {
            self.drop_conn(conn_id);
        }
        if self.db.snapshot_zxid().is_some() {
            self.db.abort_snapshot();
        }
        // The tree holds transactions that never became durable: nobody may see them.
        let opts = crate::tree::TreeOptions {
            extended_types_enabled: self.opts.extended_types_enabled,
        };
        match self.persist.reload(opts, self.durable_zxid) {
            Ok(recovered) => {
                self.db = recovered.db;
                self.last_zxid = recovered.last_zxid;
                self.reset_sessions(&recovered.sessions);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot rebuild the durable state; stopping");
                self.fatal = true;
            }
        }
    }

    fn handle(&mut self, msg: CoreMsg) {
        match msg {
            CoreMsg::Connect {
                conn_id,
                peer,
                req,
                tx,
            } => self.on_connect(conn_id, peer, req, tx, false),
            CoreMsg::Request {
                conn_id,
                xid,
                req,
                received_at,
            } => self.on_request(conn_id, xid, req, received_at),
            CoreMsg::BadRequest {
                conn_id,
                xid,
                op,
                err,
                close,
            } => self.on_bad_request(conn_id, xid, op, err, close),
            CoreMsg::Disconnected { conn_id } => self.on_disconnect(conn_id),
            CoreMsg::FourLetter { word, peer, reply } => {
                let text = self.four_letter(&word, peer);
                let _ = reply.send(text);
            }
        }
    }

    fn on_bad_request(&mut self, conn_id: ConnId, xid: i32, op: i32, err: ErrorCode, close: bool) {
        let Some(sid) = self.conns.get(&conn_id).map(|c| c.session_id) else {
            return;
        };
        let op = OpCode::from_code(op).unwrap_or(OpCode::Error);
        let zxid = if op.is_write() && !self.read_only && self.repl.is_none() {
            self.commit(sid, xid, TxnBody::Error(err)).0
        } else {
            self.last_zxid
        };
        self.reply(conn_id, xid, zxid, err, Response::Empty, op, Instant::now());
        if close {
            self.drop_conn(conn_id);
        }
    }

    fn on_tick(&mut self) {
        let now = self.mono_ms();
        // In an ensemble only the leader expires sessions (through a replicated closeSession).
        let expired = if self.is_writer() {
            self.sessions.take_expired(now)
        } else {
            Vec::new()
        };
        for sid in expired {
            let timeout = self.sessions.get(sid).map(|s| s.timeout_ms).unwrap_or(0);
            info!(
                session = format_args!("0x{sid:x}"),
                timeout_ms = timeout,
                "session expired"
            );
            if self.repl.is_some() {
                self.quorum_expire_session(sid);
            } else {
                self.close_session(sid, None);
            }
        }
        let interval = std::time::Duration::from_millis(self.opts.container_check_interval_ms);
        let purge_every = self.opts.autopurge_interval;
        if !purge_every.is_zero() && self.last_purge.elapsed() >= purge_every {
            self.last_purge = Instant::now();
            let snap_dir = self.persist.snap_dir().to_path_buf();
            let log_dir = self.persist.log_dir().to_path_buf();
            let retain = self.opts.snap_retain_count;
            // Reading and deleting files: off the core's thread.
            tokio::task::spawn_blocking(move || {
                match crate::storage::purge_data(&snap_dir, &log_dir, retain) {
                    Ok(s) => info!(
                        removed_snapshots = s.removed_snapshots.len(),
                        removed_segments = s.removed_log_segments.len(),
                        "autopurge done"
                    ),
                    Err(e) => warn!(error = %e, "autopurge failed"),
                }
            });
        }
        if !self.read_only && self.is_writer() && self.last_container_check.elapsed() >= interval {
            self.last_container_check = Instant::now();
            let now_wall = wall_ms();
            for path in self.db.expired_nodes(now_wall) {
                if self.repl.is_some() {
                    self.quorum_delete_container(path);
                    continue;
                }
                // Goes through prep so that a node that gained a child meanwhile stays.
                let req = Request::DeleteContainer { path };
                let ids = [];
                let ctx = RequestContext {
                    session_id: 0,
                    ids: &ids,
                    is_super: true,
                };
                if let Ok(body) = self.db.prep(&ctx, &req) {
                    let _ = self.commit(0, 0, body);
                }
            }
        }
    }

    /// Assigns the next zxid, applies the transaction, queues it for the log, and delivers its
    /// watch events. The one place zxids are made.
    fn commit(&mut self, session_id: i64, cxid: i32, body: TxnBody) -> (i64, TxnResult) {
        self.last_zxid += 1;
        let zxid = self.last_zxid;
        let txn = Txn {
            session_id,
            cxid,
            zxid,
            time_ms: wall_ms(),
            body,
        };
        let outcome = self.db.apply(&txn);
        self.persist.log(&txn);
        self.txns_since_snapshot += 1;
        self.deliver_events(outcome.events);
        (zxid, outcome.result)
    }

    fn deliver_events(&mut self, events: Vec<WatchFired>) {
        for fired in events {
            let Some(conn_id) = self.sessions.get(fired.session_id).and_then(|s| s.conn) else {
                continue;
            };
            if fired.acl.is_some() {
                let (ids, is_super) = self.identities(conn_id, fired.session_id);
                if !fired.visible_to(&ids, is_super) {
                    continue;
                }
            }
            self.send(
                conn_id,
                Outbound::Event {
                    zxid: fired.zxid,
                    event: fired.event,
                },
            );
        }
    }

    /// Queues a message for a connection. A message produced while a transaction is not yet
    /// durable waits behind it (it may show that transaction's effects); everything else goes
    /// straight to the connection's outbox. A connection whose outbox is full is not reading
    /// its replies: it is closed rather than allowed to stall everyone else.
    fn send(&mut self, conn_id: ConnId, msg: Outbound) {
        let hold_until = self.hold_until();
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        if let Outbound::Reply { .. } = msg {
            conn.stats.sent += 1;
            self.stats.packets_sent += 1;
        }
        let peer = conn.peer;
        match hold_or_deliver(&mut self.held, hold_until, conn_id, &conn.tx, msg) {
            Delivery::Queued => {}
            Delivery::Full => {
                warn!(%peer, "client is not reading its replies; closing connection");
                self.drop_conn(conn_id);
            }
            Delivery::Closed => self.drop_conn(conn_id),
        }
    }

    /// Hands `msg` to a connection's outbox, or holds it while a transaction it may reflect is
    /// not durable yet. Held messages leave in order once it is (see `on_durable`).
    fn out(&mut self, conn_id: ConnId, tx: &mpsc::Sender<Outbound>, msg: Outbound) -> Delivery {
        let hold_until = self.hold_until();
        hold_or_deliver(&mut self.held, hold_until, conn_id, tx, msg)
    }

    /// The zxid a message leaving now must wait for: the last one applied, while it is not
    /// durable yet (the message may reflect it).
    fn hold_until(&self) -> Option<i64> {
        (self.last_zxid > self.durable_zxid).then_some(self.last_zxid)
    }

    /// Everything up to `zxid` is on disk: release what waited for it, in order.
    fn on_durable(&mut self, zxid: i64) {
        debug_assert!(zxid <= self.last_zxid, "durable beyond the last zxid");
        self.durable_zxid = self.durable_zxid.max(zxid);
        while self
            .held
            .front()
            .is_some_and(|h| h.needs_zxid <= self.durable_zxid)
        {
            let Some(h) = self.held.pop_front() else {
                break;
            };
            let closing = matches!(h.msg, Outbound::Close);
            if h.tx.try_send(h.msg).is_err() && !closing {
                self.drop_conn(h.conn_id);
            }
        }
    }

    fn drop_conn(&mut self, conn_id: ConnId) {
        let Some(conn) = self.conns.remove(&conn_id) else {
            return;
        };
        // The close goes through the same queue as replies so it never overtakes them.
        let _ = self.out(conn_id, &conn.tx, Outbound::Close);
        if let Some(s) = self.sessions.get_mut(conn.session_id) {
            if s.conn == Some(conn_id) {
                s.conn = None;
                // Watches belong to the connection, as in ZooKeeper; a reconnecting client
                // re-registers them with setWatches.
                self.db.remove_session_watches(conn.session_id);
            }
        }
        // Requests of this connection still waiting in its session's queue are void.
        if let Some(q) = self.queues.get_mut(&conn.session_id) {
            q.retain(|w| w.conn_id() != conn_id);
            if q.is_empty() {
                self.queues.remove(&conn.session_id);
            }
        }
    }

    /// A handshake. `revalidated`: quorum mode, this member has meanwhile applied everything
    /// the leader had proposed when asked, so an unknown session is really gone.
    fn on_connect(
        &mut self,
        conn_id: ConnId,
        peer: SocketAddr,
        req: ConnectRequest,
        tx: mpsc::Sender<Outbound>,
        revalidated: bool,
    ) {
        let with_read_only = true;
        let min = self.opts.min_session_timeout_ms;
        let max = self.opts.max_session_timeout_ms;
        let timeout_ms = req.timeout_ms.clamp(min, max.max(min));
        let refuse = |tx: &mpsc::Sender<Outbound>| {
            let _ = tx.try_send(Outbound::Connected {
                resp: ConnectResponse {
                    protocol_version: 0,
                    timeout_ms: 0,
                    session_id: 0,
                    passwd: Bytes::from_static(&[0; 16]),
                    read_only: false,
                },
                with_read_only,
            });
        };
        if req.last_zxid_seen > self.last_zxid {
            // The client has seen a newer state than this server has: it must go elsewhere.
            warn!(
                %peer,
                client_zxid = format_args!("0x{:x}", req.last_zxid_seen),
                server_zxid = format_args!("0x{:x}", self.last_zxid),
                "refusing client that has seen a newer zxid than this server"
            );
            let _ = tx.try_send(Outbound::Close);
            return;
        }
        if self.repl.is_some() && !self.is_serving() {
            // Not part of an established ensemble: send the client elsewhere.
            let _ = tx.try_send(Outbound::Close);
            return;
        }
        let session_id = if req.session_id == 0 {
            let sid = self.sessions.next_id();
            if self.repl.is_some() {
                self.quorum_create_session(
                    sid,
                    Connecting {
                        conn_id,
                        peer,
                        tx,
                        timeout_ms,
                        read_only: req.read_only,
                    },
                );
                return;
            }
            if !self.read_only {
                let (_zxid, _res) = self.commit(sid, 0, TxnBody::CreateSession { timeout_ms });
            }
            let now = self.mono_ms();
            self.sessions.add(sid, timeout_ms, now);
            debug!(%peer, session = format_args!("0x{sid:x}"), timeout_ms, "session created");
            sid
        } else {
            let sid = req.session_id;
            if self.sessions.get(sid).is_none() && !revalidated && !self.is_writer() {
                // Created through another member moments ago, perhaps, and not applied here
                // yet: catch up with the leader before calling it expired.
                self.quorum_revalidate(conn_id, peer, req, tx);
                return;
            }
            let valid = self.sessions.get(sid).is_some_and(|s| !s.closing)
                && req.passwd == session_password(sid);
            if !valid {
                debug!(%peer, session = format_args!("0x{sid:x}"), "reconnect refused: session expired or bad password");
                refuse(&tx);
                return;
            }
            // Detach from any older connection of the same session.
            if let Some(old) = self.sessions.get(sid).and_then(|s| s.conn) {
                if old != conn_id {
                    self.drop_conn(old);
                }
            }
            let now = self.mono_ms();
            self.sessions.touch(sid, now);
            debug!(%peer, session = format_args!("0x{sid:x}"), "session reattached");
            sid
        };
        self.attach(conn_id, peer, tx, session_id, timeout_ms, req.read_only);
    }

    /// Binds a connection to its (new or existing) session and answers the handshake.
    fn attach(
        &mut self,
        conn_id: ConnId,
        peer: SocketAddr,
        tx: mpsc::Sender<Outbound>,
        session_id: i64,
        timeout_ms: i32,
        wants_read_only: bool,
    ) {
        let with_read_only = true;
        let ip_id = Id::new("ip", peer.ip().to_string());
        let session_timeout = self
            .sessions
            .get(session_id)
            .map(|s| s.timeout_ms)
            .unwrap_or(timeout_ms);
        if let Some(s) = self.sessions.get_mut(session_id) {
            s.conn = Some(conn_id);
        }
        let resp = ConnectResponse {
            protocol_version: 0,
            timeout_ms: session_timeout,
            session_id,
            passwd: session_password(session_id),
            // Only a client that asked for read-only service is told it got it; others would
            // refuse the connection, and reads are exactly what still works.
            read_only: self.read_only && wants_read_only,
        };
        self.conns.insert(
            conn_id,
            ConnEntry {
                tx,
                peer,
                session_id,
                ip_id,
                stats: ConnStats::new(),
            },
        );
        self.send(
            conn_id,
            Outbound::Connected {
                resp,
                with_read_only,
            },
        );
    }

    fn on_disconnect(&mut self, conn_id: ConnId) {
        self.revalidating.remove(&conn_id);
        if let Some(conn) = self.conns.get(&conn_id) {
            debug!(peer = %conn.peer, session = format_args!("0x{:x}", conn.session_id), "connection closed");
        }
        self.drop_conn(conn_id);
    }

    /// Closes a session: one closeSession transaction (deleting its ephemerals and firing the
    /// watches that causes), then its connection, if any, is closed.
    fn close_session(&mut self, sid: i64, reply_to: Option<(ConnId, i32)>) {
        self.sessions.mark_closing(sid);
        let zxid = if self.read_only {
            // Nothing can be logged: the session ends here; its ephemerals stay until the
            // log works again.
            self.last_zxid
        } else {
            let cxid = reply_to.map(|r| r.1).unwrap_or(0);
            self.commit(sid, cxid, TxnBody::CloseSession).0
        };
        let conn = self.sessions.remove(sid).and_then(|s| s.conn);
        self.db.remove_session_watches(sid);
        if let Some((conn_id, xid)) = reply_to {
            self.send(
                conn_id,
                Outbound::Reply {
                    xid,
                    zxid,
                    err: ErrorCode::Ok,
                    body: Response::Empty,
                },
            );
        }
        if let Some(conn_id) = conn {
            self.drop_conn(conn_id);
        }
    }

    fn on_request(&mut self, conn_id: ConnId, xid: i32, req: Request, received_at: Instant) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        let sid = conn.session_id;
        let op = req.op_code();
        conn.stats.received += 1;
        self.stats.packets_received += 1;
        let now = self.mono_ms();
        if !self.sessions.touch(sid, now) {
            self.reply(
                conn_id,
                xid,
                self.last_zxid,
                ErrorCode::SessionExpired,
                Response::Empty,
                op,
                received_at,
            );
            self.drop_conn(conn_id);
            return;
        }
        if self.repl.is_some() {
            self.quorum_request(conn_id, sid, xid, req, received_at);
            return;
        }
        self.dispatch(conn_id, sid, xid, req, received_at);
    }

    /// Serves one request of an attached session (writes included, standalone).
    fn dispatch(
        &mut self,
        conn_id: ConnId,
        sid: i64,
        xid: i32,
        req: Request,
        received_at: Instant,
    ) {
        let op = req.op_code();
        match req {
            Request::Ping => self.reply(
                conn_id,
                xid,
                self.last_zxid,
                ErrorCode::Ok,
                Response::Empty,
                op,
                received_at,
            ),
            Request::CloseSession => {
                self.close_session(sid, Some((conn_id, xid)));
            }
            Request::Auth { scheme, auth, .. } => {
                self.on_auth(conn_id, sid, xid, &scheme, &auth, received_at)
            }
            Request::Sasl { .. } => {
                // SASL is not configured: ZooKeeper answers an empty token with OK and carries on.
                self.reply(
                    conn_id,
                    xid,
                    0,
                    ErrorCode::Ok,
                    Response::Sasl { token: None },
                    op,
                    received_at,
                )
            }
            Request::SetWatches(sw) => {
                let events = self.db.set_watches(sid, &sw);
                self.deliver_events(events);
                self.reply(
                    conn_id,
                    xid,
                    self.last_zxid,
                    ErrorCode::Ok,
                    Response::Empty,
                    op,
                    received_at,
                )
            }
            Request::Sync { path } => self.reply(
                conn_id,
                xid,
                self.last_zxid,
                ErrorCode::Ok,
                Response::Sync { path },
                op,
                received_at,
            ),
            Request::WhoAmI => {
                let mut infos = Vec::new();
                if let Some(c) = self.conns.get(&conn_id) {
                    infos.push(ClientInfo {
                        auth_scheme: c.ip_id.scheme.clone(),
                        user: c.ip_id.id.clone(),
                    });
                }
                if let Some(s) = self.sessions.get(sid) {
                    for id in &s.auth_ids {
                        // Like ZooKeeper's providers: a digest identity's user name is the
                        // part before the colon.
                        let user = match id.scheme.as_str() {
                            "digest" => id.id.split(':').next().unwrap_or_default(),
                            _ => id.id.as_str(),
                        };
                        infos.push(ClientInfo {
                            auth_scheme: id.scheme.clone(),
                            user: user.to_string(),
                        });
                    }
                }
                self.reply(
                    conn_id,
                    xid,
                    self.last_zxid,
                    ErrorCode::Ok,
                    Response::WhoAmI(infos),
                    op,
                    received_at,
                )
            }
            req if op.is_write() => self.on_write(conn_id, sid, xid, req, received_at),
            req => {
                let result = {
                    let (ids, is_super) = self.identities(conn_id, sid);
                    let ctx = RequestContext {
                        session_id: sid,
                        ids: &ids,
                        is_super,
                    };
                    self.db.read(&ctx, &req)
                };
                let (err, body) = match result {
                    Ok(body) => (ErrorCode::Ok, body),
                    Err(e) => (e, Response::Empty),
                };
                self.reply(conn_id, xid, self.last_zxid, err, body, op, received_at);
            }
        }
    }

    /// The identities a request is checked with: the connection's ip plus the session's auths.
    fn identities(&self, conn_id: ConnId, sid: i64) -> (Vec<Id>, bool) {
        let mut ids = Vec::with_capacity(2);
        if let Some(c) = self.conns.get(&conn_id) {
            ids.push(c.ip_id.clone());
        }
        let mut is_super = false;
        if let Some(s) = self.sessions.get(sid) {
            ids.extend(s.auth_ids.iter().cloned());
            is_super = s.is_super;
        }
        (ids, is_super)
    }

    fn on_auth(
        &mut self,
        conn_id: ConnId,
        sid: i64,
        xid: i32,
        scheme: &str,
        auth: &[u8],
        received_at: Instant,
    ) {
        if scheme == "ip" {
            // The ip identity comes from the socket; ZooKeeper answers such a packet with OK.
            self.reply(
                conn_id,
                xid,
                0,
                ErrorCode::Ok,
                Response::Empty,
                OpCode::Auth,
                received_at,
            );
            return;
        }
        match crate::tree::acl::authenticate(scheme, auth) {
            Ok(id) => {
                let is_super = id.scheme == "digest"
                    && self.opts.super_digest.as_deref() == Some(id.id.as_str());
                if let Some(s) = self.sessions.get_mut(sid) {
                    if !s.auth_ids.contains(&id) {
                        s.auth_ids.push(id);
                    }
                    // As ZooKeeper does, the super user also gets the identity super:"".
                    let super_id = Id::new("super", "");
                    if is_super && !s.auth_ids.contains(&super_id) {
                        s.auth_ids.push(super_id);
                    }
                    s.is_super |= is_super;
                }
                self.reply(
                    conn_id,
                    xid,
                    0,
                    ErrorCode::Ok,
                    Response::Empty,
                    OpCode::Auth,
                    received_at,
                );
            }
            Err(_) => {
                warn!(scheme, "authentication failed");
                self.reply(
                    conn_id,
                    xid,
                    0,
                    ErrorCode::AuthFailed,
                    Response::Empty,
                    OpCode::Auth,
                    received_at,
                );
                self.drop_conn(conn_id);
            }
        }
    }

    fn on_write(
        &mut self,
        conn_id: ConnId,
        sid: i64,
        xid: i32,
        req: Request,
        received_at: Instant,
    ) {
        let op = req.op_code();
        if self.read_only {
            let zxid = self.last_zxid;
            self.reply(
                conn_id,
                xid,
                zxid,
                ErrorCode::NotReadOnly,
                Response::Empty,
                op,
                received_at,
            );
            return;
        }
        let body = {
            let (ids, is_super) = self.identities(conn_id, sid);
            let ctx = RequestContext {
                session_id: sid,
                ids: &ids,
                is_super,
            };
            match &req {
                Request::Reconfig { .. } => Err(ErrorCode::ReconfigDisabled),
                _ => self.db.prep(&ctx, &req),
            }
        };
        let body = body.unwrap_or_else(TxnBody::Error);
        let (zxid, result) = self.commit(sid, xid, body);
        let (err, resp) = response_for(op, result);
        self.reply(conn_id, xid, zxid, err, resp, op, received_at);
    }

    #[allow(clippy::too_many_arguments)]
    fn reply(
        &mut self,
        conn_id: ConnId,
        xid: i32,
        zxid: i64,
        err: ErrorCode,
        body: Response,
        op: OpCode,
        received_at: Instant,
    ) {
        let latency_ms = received_at.elapsed().as_millis() as u64;
        self.stats.latency.record(latency_ms);
        if let Some(c) = self.conns.get_mut(&conn_id) {
            c.stats.last_op = Some(op);
            c.stats.last_cxid = xid;
            c.stats.last_zxid = zxid;
            c.stats.last_response = Some(SystemTime::now());
            c.stats.last_latency_ms = latency_ms;
            c.stats.latency.record(latency_ms);
        }
        self.send(
            conn_id,
            Outbound::Reply {
                xid,
                zxid,
                err,
                body,
            },
        );
    }

    fn four_letter(&mut self, word: &str, peer: SocketAddr) -> String {
        // The asking connection is a connection too, and ZooKeeper lists it.
        let asking = ConnStats {
            received: 1,
            ..ConnStats::new()
        };
        let mut conns: Vec<four_letter::ConnView<'_>> = self
            .conns
            .values()
            .map(|c| four_letter::ConnView {
                peer: c.peer,
                session_id: c.session_id,
                timeout_ms: self
                    .sessions
                    .get(c.session_id)
                    .map(|s| s.timeout_ms)
                    .unwrap_or(0),
                stats: &c.stats,
            })
            .collect();
        conns.push(four_letter::ConnView {
            peer,
            session_id: 0,
            timeout_ms: 0,
            stats: &asking,
        });
        let view = four_letter::View {
            opts: &self.opts,
            db: &self.db,
            sessions: &self.sessions,
            conns,
            stats: &self.stats,
            last_zxid: self.last_zxid,
            started: self.started,
            read_only: self.read_only,
            mode: self.mode(),
            peers: self
                .repl
                .as_ref()
                .map(|r| r.zab.peer_status())
                .unwrap_or_default(),
        };
        let out = four_letter::render(word, &view);
        match word {
            "srst" => self.stats.reset(),
            "crst" => {
                for c in self.conns.values_mut() {
                    c.stats.reset();
                }
            }
            _ => {}
        }
        out
    }
}

/// Builds the reply for a write from what the tree reports.
fn response_for(op: OpCode, result: TxnResult) -> (ErrorCode, Response) {
    match result {
        TxnResult::Error(e) => (e, Response::Empty),
        TxnResult::Created { path, stat, .. } => match op {
            OpCode::Create => (ErrorCode::Ok, Response::Create { path }),
            _ => (ErrorCode::Ok, Response::Create2 { path, stat }),
        },
        TxnResult::Deleted | TxnResult::Session => (ErrorCode::Ok, Response::Empty),
        TxnResult::Stat(stat) | TxnResult::Checked(stat) => (ErrorCode::Ok, Response::Stat(stat)),
        TxnResult::Multi(results) => (ErrorCode::Ok, Response::Multi(results)),
    }
}

mod quorum;
