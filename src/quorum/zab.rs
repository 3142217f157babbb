//! The ZAB protocol core: a pure state machine, events in, commands out.
//!
//! Nothing here does I/O or reads a clock. A runtime (the tokio shell, or the simulator in
//! `sim.rs`) feeds [`Event`]s to [`Zab::step`] and [`Zab::propose`], then drains
//! [`Zab::take_commands`] and executes them in order: write the log, write epoch files, send
//! messages, apply committed transactions. Durability comes back as events, and only those
//! events let the core acknowledge anything. This is the raft-rs/openraft shape, and it is what
//! makes the seeded simulation (`sim.rs`) possible.
//!
//! # Protocol
//!
//! Leader election is outside: the runtime tells the core to lead, follow or observe.
//! Whatever the election says, the core keeps ZAB's safety on its own:
//!
//! 1. **Discovery.** The prospective leader collects `FollowerInfo` (accepted epochs) from a
//!    quorum of voters, itself included, picks an epoch above all of them and persists it as
//!    its *accepted epoch* together with its own id. It then sends `LeaderInfo` to each
//!    follower. A follower accepts epoch `e` from leader `l` only if `e` is above its accepted
//!    epoch, or equal with the same leader; it persists `(e, l)` before replying `AckEpoch`
//!    with its current epoch and last zxid. Recording the leader with the epoch is what keeps
//!    two would-be leaders that picked the same epoch from both reaching a quorum.
//! 2. **Synchronisation.** A voter whose `(current epoch, last zxid)` is ahead of the leader's
//!    is refused (the leader's history must be the most up-to-date of its quorum; Zab 1.0's
//!    check). Otherwise the leader sends one `Sync`: keep your log (`Diff`), cut it after a
//!    point (`Trunc`) or replace it with my state (`Snap`, when the follower is behind the
//!    leader's oldest retained entry), then these entries. That is also NEWLEADER: once the
//!    synced log is durable the follower persists the epoch as its *current epoch* (never
//!    before: a current epoch on disk vouches for the log under it) and then acknowledges.
//!    When a quorum (the leader included, under the same rule) has done so, the leader is
//!    *established*: its whole initial history is committed, and it tells followers
//!    `UpToDate`.
//! 3. **Broadcast.** The established leader numbers proposals `epoch << 48 | counter`, logs
//!    them, sends them to followers; followers log them and acknowledge cumulatively what is
//!    durable; the leader commits the highest zxid acknowledged by a quorum and tells followers
//!    (`Commit`) and observers (`Inform`, with the payload).
//!
//! Every message after the handshake carries the epoch and a *session* number the leader
//! opened for that follower, so duplicated, delayed or reordered messages from another session
//! are dropped. Within a session a follower accepts leader messages only in order (a gap means
//! a lost message: the follower gives up and looks for a leader again), which is what TCP gives
//! the real runtime, but safety does not rely on it. Handshake messages are retransmitted on
//! the ping interval, acknowledgements are cumulative, pings repeat the commit point and
//! `UpToDate`, and a follower still short of the leader's last zxid for several pings
//! resynchronises, so the protocol also makes progress over a lossy network.
//!
//! Liveness needs one more rule: a follower that promised a later epoch (or the same epoch to
//! another leader) can never join; when it asks, the leader steps down so that the next
//! election picks an epoch above that promise.
//!
//! # Durability contract
//!
//! Log commands ([`Command::Persist`], [`Command::Truncate`], [`Command::InstallSnapshot`])
//! carry a [`WriteId`] and must be executed in order; [`Event::Persisted`] reports that every
//! log command up to that id is durable. Ids and not zxids, because after a truncation the
//! same zxid can name a write that was undone. Acknowledgements are built only from the
//! durable watermark, which only `Persisted` raises (see `Durability`), so "a follower
//! acknowledges only what is fsync'd" is a property of the API, not a promise in a comment.
//! Epoch records ([`Command::PersistEpoch`]) are acknowledged by [`Event::EpochPersisted`];
//! they need no ordering with respect to log writes: the core asks for the current epoch only
//! after every log write it vouches for (a truncation included) is confirmed.
//!
//! This file holds the types, the event dispatch and what both roles share; the two halves of
//! the protocol are in `zab/leader.rs` and `zab/follower.rs`, engine tests in `zab/tests.rs`.
//!
//! Proposals enter through [`Zab::propose`] rather than an event, because the caller needs the
//! zxid (or [`ZabError::NotLeader`]) back at once.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use thiserror::Error;

use super::zxid;

/// Generated from `proto/zab.proto`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/corral.zab.rs"));
}

use pb::sync::Start;
use pb::zab_message::Body;
pub use pb::{Entry, ZabMessage};

/// A member's id (`server.N` / `myid`).
pub type PeerId = u64;

/// Static configuration of one member.
#[derive(Clone, Debug)]
pub struct Config {
    pub myid: PeerId,
    pub voters: BTreeSet<PeerId>,
    pub observers: BTreeSet<PeerId>,
    /// Ticks a leader may take to become established, and a follower to get synchronised.
    pub init_limit_ticks: u64,
    /// Ticks without hearing from a quorum (leader) or from the leader (follower) before giving up.
    pub sync_limit_ticks: u64,
    /// The leader pings every this many ticks; a joining follower retries its handshake as often.
    pub ping_interval_ticks: u64,
    /// A joining follower retransmits its handshake this often.
    pub retry_interval_ticks: u64,
}

impl Config {
    fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    fn is_member(&self, id: PeerId) -> bool {
        self.voters.contains(&id) || self.observers.contains(&id)
    }
}

/// The accepted epoch and the leader it was accepted from (persisted together).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AcceptedEpoch {
    pub epoch: u64,
    pub leader: PeerId,
}

/// What a member has on disk: the only input to [`Zab::new`] after a (re)start.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PersistentState {
    pub accepted: AcceptedEpoch,
    pub current_epoch: u64,
    /// The zxid of the runtime's snapshot: everything up to it is already in the state.
    pub snapshot_zxid: i64,
    /// Log entries after `snapshot_zxid`, in increasing zxid order.
    pub log: Vec<Entry>,
}

/// Names one log command, in the order the core issued them (per process lifetime).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct WriteId(pub u64);

/// One of the two small epoch records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpochRecord {
    Accepted(AcceptedEpoch),
    Current(u64),
}

/// What a member is doing, as the runtime needs to know it (who serves clients).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Not part of an established ensemble: run an election.
    Looking,
    /// Established leader of `epoch`: accepts proposals.
    Leading { epoch: u64 },
    /// Synchronised follower of `leader`.
    Following { leader: PeerId, epoch: u64 },
    /// Synchronised observer of `leader`.
    Observing { leader: PeerId, epoch: u64 },
}

/// One peer as its leader sees it ([`Zab::peer_status`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    pub id: PeerId,
    pub observer: bool,
    /// Synchronised: proposals (or, for an observer, commits) flow to it.
    pub synced: bool,
    /// Log entries the leader has that this follower has not acknowledged (0 for observers).
    pub lag_txns: u64,
}

/// Inputs to the core.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A peer message (already decoded from its frame).
    Message { from: PeerId, msg: ZabMessage },
    /// Every log command up to and including `up_to` is durable.
    Persisted { up_to: WriteId },
    /// An epoch record is durable.
    EpochPersisted(EpochRecord),
    /// One unit of the logical clock.
    Tick,
    /// The election chose this member. `epoch_hint`: choose an epoch at least this high.
    BecomeLeader { epoch_hint: Option<u64> },
    /// The election chose `leader`; this member votes.
    BecomeFollower { leader: PeerId },
    /// This member is an observer and `leader` leads.
    BecomeObserver { leader: PeerId },
    /// Leave whatever role this member had (e.g. the runtime lost the connection).
    Looking,
    /// Answer to [`Command::TakeSnapshotForPeer`]: the runtime's state as of `zxid`.
    SnapshotReady {
        peer: PeerId,
        zxid: i64,
        state: Bytes,
    },
    /// The runtime has a durable snapshot at `up_to_zxid` (at most the last applied zxid); the
    /// core may forget log entries up to it.
    Compacted { up_to_zxid: i64 },
}

/// Outputs of the core, to be executed in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Append these entries to the log (they follow the current last entry).
    Persist {
        id: WriteId,
        entries: Vec<Entry>,
    },
    /// Remove every log entry after `after_zxid`.
    Truncate {
        id: WriteId,
        after_zxid: i64,
    },
    /// Replace state and log with the leader's snapshot at `zxid` (state and log are empty
    /// after it, and the state is `state`).
    InstallSnapshot {
        id: WriteId,
        zxid: i64,
        state: Bytes,
    },
    /// Write an epoch record durably, then report [`Event::EpochPersisted`].
    PersistEpoch(EpochRecord),
    Send {
        to: PeerId,
        msg: ZabMessage,
    },
    /// Apply a committed transaction. Issued in strictly increasing zxid order.
    Apply {
        zxid: i64,
        payload: Bytes,
    },
    /// Produce a snapshot of the applied state and report [`Event::SnapshotReady`].
    TakeSnapshotForPeer {
        peer: PeerId,
    },
    RoleChanged(Role),
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ZabError {
    #[error("not the established leader")]
    NotLeader,
    #[error("message from {from} is malformed: {reason}")]
    Malformed { from: PeerId, reason: &'static str },
    #[error("peer {0} is not a member of the ensemble")]
    UnknownPeer(PeerId),
    #[error("protocol violation by {from}: {reason}")]
    Protocol { from: PeerId, reason: String },
    #[error("epoch {0} does not fit in a zxid; the ensemble has used up its epochs")]
    EpochExhausted(u64),
    #[error("zxid counter of epoch {0} is exhausted")]
    CounterExhausted(u64),
    #[error("invalid persistent state: {0}")]
    InvalidState(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

/// The in-memory log: entries after `base` (the snapshot zxid), strictly increasing.
#[derive(Debug, Default)]
struct Log {
    base: i64,
    entries: Vec<Entry>,
}

impl Log {
    fn last(&self) -> i64 {
        self.entries.last().map_or(self.base, |e| e.zxid)
    }

    fn position(&self, zxid: i64) -> Result<usize, usize> {
        self.entries.binary_search_by_key(&zxid, |e| e.zxid)
    }

    /// Whether the history ends at `zxid` could be cut here: it is the base or an entry.
    fn has_point(&self, zxid: i64) -> bool {
        zxid == self.base || self.position(zxid).is_ok()
    }

    /// Entries with zxid above `zxid` (which must be at least the base).
    fn after(&self, zxid: i64) -> &[Entry] {
        let i = match self.position(zxid) {
            Ok(i) => i + 1,
            Err(i) => i,
        };
        &self.entries[i..]
    }

    /// The greatest point (base or entry) at or below `zxid`; `zxid` must be at least the base.
    fn floor(&self, zxid: i64) -> i64 {
        match self.position(zxid) {
            Ok(_) => zxid,
            Err(0) => self.base,
            Err(i) => self.entries[i - 1].zxid,
        }
    }

    fn truncate_after(&mut self, zxid: i64) {
        let keep = self.entries.partition_point(|e| e.zxid <= zxid);
        self.entries.truncate(keep);
    }

    fn compact(&mut self, zxid: i64) {
        if zxid > self.base {
            let drop = self.entries.partition_point(|e| e.zxid <= zxid);
            self.entries.drain(..drop);
            self.base = zxid;
        }
    }
}

/// The durable watermark. Its fields are private to this module so that nothing but
/// [`Event::Persisted`] (through `confirm`) can raise it; acknowledgements read it.
mod durability {
    use super::WriteId;
    use std::collections::VecDeque;

    #[derive(Debug)]
    pub(super) struct Durability {
        next: u64,
        /// Issued, unconfirmed writes: id and the log's last zxid once it is done.
        pending: VecDeque<(u64, i64)>,
        durable: i64,
    }

    impl Durability {
        /// After a restart everything the runtime handed over is on disk.
        pub(super) fn recovered(last: i64) -> Durability {
            Durability {
                next: 1,
                pending: VecDeque::new(),
                durable: last,
            }
        }

        /// The greatest zxid such that the current log up to it is durable.
        pub(super) fn durable(&self) -> i64 {
            self.durable
        }

        /// A log command was issued; the log will end at `last_after` once it is done.
        pub(super) fn issue(&mut self, last_after: i64) -> WriteId {
            let id = self.next;
            self.next += 1;
            self.pending.push_back((id, last_after));
            WriteId(id)
        }

        /// The log is being cut after `zxid`: no write issued so far can make anything above
        /// it durable any more.
        pub(super) fn cut(&mut self, zxid: i64) {
            for p in &mut self.pending {
                p.1 = p.1.min(zxid);
            }
            self.durable = self.durable.min(zxid);
        }

        /// The id of the last log command issued (0 if none yet).
        pub(super) fn last_issued(&self) -> WriteId {
            WriteId(self.next - 1)
        }

        /// Whether every log command up to `id` is durable: a truncation too, which the
        /// watermark cannot show (the entries it keeps were durable before it).
        pub(super) fn confirmed(&self, id: WriteId) -> bool {
            self.pending.front().is_none_or(|p| p.0 > id.0)
        }

        /// The runtime reports writes up to `up_to` durable.
        pub(super) fn confirm(&mut self, up_to: WriteId) {
            while let Some(&(id, last)) = self.pending.front() {
                if id > up_to.0 {
                    break;
                }
                self.pending.pop_front();
                self.durable = self.durable.max(last);
            }
        }
    }
}
use durability::Durability;

/// Pings in a row that may find a follower short of the leader's previous last zxid before it
/// concludes that a message was lost and resynchronises.
const LAGGING_PINGS: u32 = 3;

/// The zxid a leader of `epoch` proposes after `last`.
fn next_zxid(last: i64, epoch: u64) -> Option<i64> {
    if zxid::epoch(last) == epoch {
        zxid::try_make(epoch, zxid::counter(last) + 1)
    } else {
        zxid::try_make(epoch, 1)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// FollowerInfo received; LeaderInfo goes out once the epoch is durable.
    Info,
    /// LeaderInfo sent; waiting for AckEpoch.
    EpochSent,
    /// AckEpoch received; synchronised once a quorum has acknowledged the epoch.
    EpochAcked,
    /// Waiting for the runtime's snapshot for this peer.
    AwaitSnapshot,
    /// Sync sent (its last zxid); proposals and commits flow to this peer.
    Synced { sync_last: i64 },
    /// Refused (ahead of the leader); ignored until it starts a new attempt.
    Refused,
}

#[derive(Debug)]
struct Peer {
    nonce: u64,
    session: u64,
    observer: bool,
    stage: Stage,
    /// From AckEpoch: what the follower has.
    their_last: i64,
    /// Cumulative durable acknowledgement in this session.
    acked: i64,
    /// Acknowledged the Sync/NEWLEADER (counts towards the quorum).
    nl_acked: bool,
    last_heard: u64,
}

#[derive(Debug)]
struct Leader {
    started: u64,
    epoch_hint: u64,
    /// Accepted epochs reported by voters (this member included).
    infos: BTreeMap<PeerId, u64>,
    epoch: Option<u64>,
    epoch_durable: bool,
    /// The history this leader brings: its current epoch and last zxid when elected.
    initial_epoch: u64,
    initial_last: i64,
    /// The last log command issued before leading: the history is on disk once it is.
    initial_write: WriteId,
    /// A quorum (this member included) acknowledged the new epoch: discovery is over.
    discovered: bool,
    current_requested: bool,
    established: bool,
    next_session: u64,
    peers: BTreeMap<PeerId, Peer>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// FollowerInfo sent.
    Discovery,
    /// Accepted `epoch`; waiting for it to be durable before AckEpoch.
    AwaitEpochDurable { session: u64, epoch: u64 },
    /// AckEpoch sent; waiting for Sync.
    AwaitSync { session: u64, epoch: u64 },
    /// Log synchronised with the leader's up to `sync_last`.
    Synced {
        session: u64,
        epoch: u64,
        sync_last: i64,
        /// The last log command of the synchronisation (truncation, snapshot, entries).
        sync_write: WriteId,
        epoch_requested: bool,
        up_to_date: bool,
        /// Highest zxid acknowledged to the leader (`None`: NEWLEADER not yet acknowledged).
        acked: Option<i64>,
    },
}

#[derive(Debug)]
struct Follower {
    leader: PeerId,
    observer: bool,
    nonce: u64,
    phase: Phase,
    phase_started: u64,
    last_heard: u64,
    last_retry: u64,
    leader_commit: i64,
    /// The leader's `last_zxid` from the previous ping, and how many pings in a row found this
    /// member still short of it.
    ping_target: i64,
    lagging_pings: u32,
}

#[derive(Debug)]
enum State {
    Looking,
    Leading(Box<Leader>),
    Following(Follower),
}

/// One member's ZAB state machine.
#[derive(Debug)]
pub struct Zab {
    cfg: Config,
    incarnation: u64,
    tick: u64,
    attempts: u64,
    accepted: AcceptedEpoch,
    current_epoch: u64,
    current_epoch_durable: u64,
    log: Log,
    dur: Durability,
    applied: i64,
    state: State,
    out: Vec<Command>,
}

/// Shorthand for building messages.
fn msg(body: Body) -> ZabMessage {
    ZabMessage { body: Some(body) }
}

fn protocol(from: PeerId, reason: impl Into<String>) -> ZabError {
    ZabError::Protocol {
        from,
        reason: reason.into(),
    }
}

impl Zab {
    /// Builds a member from its configuration and what is on its disk. `incarnation` must
    /// differ between process lifetimes of this member (a boot counter or a random number); it
    /// keeps a restarted follower's handshake apart from the previous one's.
    pub fn new(cfg: Config, state: PersistentState, incarnation: u64) -> Result<Zab, ZabError> {
        if !cfg.is_member(cfg.myid) {
            return Err(ZabError::InvalidState(format!(
                "myid {} is neither a voter nor an observer",
                cfg.myid
            )));
        }
        if cfg.voters.is_empty() || !cfg.voters.is_disjoint(&cfg.observers) {
            return Err(ZabError::InvalidState(
                "voters must be non-empty and disjoint from observers".into(),
            ));
        }
        if cfg.ping_interval_ticks == 0 || cfg.retry_interval_ticks == 0 {
            return Err(ZabError::InvalidState(
                "ping and retry intervals must be at least one tick".into(),
            ));
        }
        let mut prev = state.snapshot_zxid;
        if prev < 0 {
            return Err(ZabError::InvalidState("negative snapshot zxid".into()));
        }
        for e in &state.log {
            if e.zxid <= prev {
                return Err(ZabError::InvalidState(format!(
                    "log entry {} out of order",
                    zxid::display(e.zxid)
                )));
            }
            prev = e.zxid;
        }
        let log = Log {
            base: state.snapshot_zxid,
            entries: state.log,
        };
        Ok(Zab {
            dur: Durability::recovered(log.last()),
            applied: log.base,
            log,
            incarnation,
            tick: 0,
            attempts: 0,
            accepted: state.accepted,
            current_epoch: state.current_epoch,
            current_epoch_durable: state.current_epoch,
            state: State::Looking,
            out: Vec::new(),
            cfg,
        })
    }

    /// Commands produced since the last call, in execution order.
    pub fn take_commands(&mut self) -> Vec<Command> {
        std::mem::take(&mut self.out)
    }

    pub fn myid(&self) -> PeerId {
        self.cfg.myid
    }

    /// The zxid of the last log entry (durable or not).
    pub fn last_zxid(&self) -> i64 {
        self.log.last()
    }

    /// The last zxid applied (everything up to it is committed).
    pub fn last_committed(&self) -> i64 {
        self.applied
    }

    pub fn current_epoch(&self) -> u64 {
        self.current_epoch
    }

    pub fn accepted_epoch(&self) -> AcceptedEpoch {
        self.accepted
    }

    /// The serving role: leaders count once established, followers once up to date.
    pub fn role(&self) -> Role {
        match &self.state {
            State::Looking => Role::Looking,
            State::Leading(l) => match l.epoch {
                Some(epoch) if l.established => Role::Leading { epoch },
                _ => Role::Looking,
            },
            State::Following(f) => match f.phase {
                Phase::Synced {
                    epoch,
                    up_to_date: true,
                    ..
                } => {
                    if f.observer {
                        Role::Observing {
                            leader: f.leader,
                            epoch,
                        }
                    } else {
                        Role::Following {
                            leader: f.leader,
                            epoch,
                        }
                    }
                }
                _ => Role::Looking,
            },
        }
    }

    /// What a leader knows of its peers (empty on other members), for monitoring: whether
    /// each is synchronised and how many log entries it has yet to acknowledge.
    pub fn peer_status(&self) -> Vec<PeerStatus> {
        let State::Leading(l) = &self.state else {
            return Vec::new();
        };
        l.peers
            .iter()
            .map(|(&id, p)| {
                // As in ZooKeeper: synchronised, and heard from within the sync limit.
                let synced = matches!(p.stage, Stage::Synced { .. })
                    && self.tick - p.last_heard <= self.cfg.sync_limit_ticks;
                PeerStatus {
                    id,
                    observer: p.observer,
                    synced,
                    lag_txns: if matches!(p.stage, Stage::Synced { .. }) && !p.observer {
                        self.log.after(p.acked.max(self.log.base)).len() as u64
                    } else {
                        0
                    },
                }
            })
            .collect()
    }

    /// Whether this member is neither trying to lead nor to follow or observe.
    pub fn is_looking(&self) -> bool {
        matches!(self.state, State::Looking)
    }

    /// Whether this member is trying to lead (established or not).
    pub fn is_leading(&self) -> bool {
        matches!(self.state, State::Leading(_))
    }

    /// Feeds one event. Errors report bad input (a garbled or hostile message, a runtime
    /// contract breach); the core stays consistent and keeps running after them.
    pub fn step(&mut self, event: Event) -> Result<(), ZabError> {
        match event {
            Event::Message { from, msg } => self.on_message(from, msg),
            Event::Persisted { up_to } => {
                self.on_persisted(up_to);
                Ok(())
            }
            Event::EpochPersisted(rec) => {
                self.on_epoch_persisted(rec);
                Ok(())
            }
            Event::Tick => {
                self.on_tick();
                Ok(())
            }
            Event::BecomeLeader { epoch_hint } => self.become_leader(epoch_hint.unwrap_or(0)),
            Event::BecomeFollower { leader } => self.become_follower(leader, false),
            Event::BecomeObserver { leader } => self.become_follower(leader, true),
            Event::Looking => {
                self.state = State::Looking;
                Ok(())
            }
            Event::SnapshotReady { peer, zxid, state } => self.on_snapshot_ready(peer, zxid, state),
            Event::Compacted { up_to_zxid } => {
                if up_to_zxid > self.applied {
                    return Err(ZabError::InvalidRequest(format!(
                        "compaction to {} beyond applied {}",
                        zxid::display(up_to_zxid),
                        zxid::display(self.applied)
                    )));
                }
                self.log.compact(up_to_zxid);
                Ok(())
            }
        }
    }

    /// Proposes a transaction (established leader only). Returns its zxid; the transaction is
    /// committed when [`Command::Apply`] for it comes out.
    pub fn propose(&mut self, payload: Bytes) -> Result<i64, ZabError> {
        let State::Leading(l) = &mut self.state else {
            return Err(ZabError::NotLeader);
        };
        let Some(epoch) = l.epoch.filter(|_| l.established) else {
            return Err(ZabError::NotLeader);
        };
        let z = next_zxid(self.log.last(), epoch).ok_or(ZabError::CounterExhausted(epoch))?;
        let entry = Entry { zxid: z, payload };
        self.log.entries.push(entry.clone());
        let id = self.dur.issue(z);
        self.out.push(Command::Persist {
            id,
            entries: vec![entry.clone()],
        });
        for (&to, p) in &l.peers {
            if matches!(p.stage, Stage::Synced { .. }) && !p.observer {
                self.out.push(Command::Send {
                    to,
                    msg: msg(Body::Proposal(pb::Proposal {
                        session: p.session,
                        epoch,
                        entry: Some(entry.clone()),
                    })),
                });
            }
        }
        Ok(z)
    }

    fn step_down(&mut self) {
        self.state = State::Looking;
        self.out.push(Command::RoleChanged(Role::Looking));
    }

    fn apply_up_to(&mut self, upto: i64) {
        let upto = upto.min(self.log.last());
        if upto <= self.applied {
            return;
        }
        for e in self.log.after(self.applied) {
            if e.zxid > upto {
                break;
            }
            self.out.push(Command::Apply {
                zxid: e.zxid,
                payload: e.payload.clone(),
            });
        }
        self.applied = upto;
    }

    // ---------------------------------------------------------------- durability events

    fn on_persisted(&mut self, up_to: WriteId) {
        self.dur.confirm(up_to);
        match &self.state {
            State::Leading(_) => {
                self.leader_maybe_persist_current();
                self.leader_maybe_commit();
            }
            State::Following(_) => {
                self.follower_maybe_persist_current();
                self.follower_maybe_ack();
            }
            State::Looking => {}
        }
    }

    fn on_epoch_persisted(&mut self, rec: EpochRecord) {
        match rec {
            EpochRecord::Accepted(a) => {
                if a != self.accepted {
                    return; // superseded by a later acceptance
                }
                match &mut self.state {
                    State::Leading(l) if l.epoch == Some(a.epoch) && a.leader == self.cfg.myid => {
                        l.epoch_durable = true;
                        self.leader_send_infos();
                        // A one-voter ensemble has its quorum now; others finish discovery
                        // when enough AckEpochs arrive.
                        self.leader_maybe_discovered();
                    }
                    State::Following(f) => {
                        if let Phase::AwaitEpochDurable { session, epoch } = f.phase {
                            if epoch == a.epoch && a.leader == f.leader {
                                f.phase = Phase::AwaitSync { session, epoch };
                                f.phase_started = self.tick;
                                self.follower_send_ack_epoch();
                            }
                        }
                    }
                    _ => {}
                }
            }
            EpochRecord::Current(e) => {
                if e > self.current_epoch_durable && e <= self.current_epoch {
                    self.current_epoch_durable = e;
                }
                match &self.state {
                    State::Leading(_) => self.leader_maybe_establish(),
                    State::Following(_) => self.follower_maybe_ack(),
                    State::Looking => {}
                }
            }
        }
    }

    // ---------------------------------------------------------------- clock

    fn on_tick(&mut self) {
        self.tick += 1;
        let now = self.tick;
        let cfg = &self.cfg;
        match &mut self.state {
            State::Looking => {}
            State::Leading(l) => {
                if !l.established {
                    if now - l.started > cfg.init_limit_ticks {
                        self.step_down();
                        return;
                    }
                } else {
                    let heard = 1 + l
                        .peers
                        .values()
                        .filter(|p| {
                            !p.observer && p.nl_acked && now - p.last_heard <= cfg.sync_limit_ticks
                        })
                        .count();
                    if heard < cfg.quorum() {
                        self.step_down();
                        return;
                    }
                }
                if now % cfg.ping_interval_ticks == 0 {
                    if let Some(epoch) = l.epoch {
                        for (&to, p) in &l.peers {
                            if matches!(p.stage, Stage::Synced { .. }) {
                                self.out.push(Command::Send {
                                    to,
                                    msg: msg(Body::Ping(pb::Ping {
                                        session: p.session,
                                        epoch,
                                        commit_zxid: self.applied,
                                        last_zxid: if p.observer {
                                            self.applied
                                        } else {
                                            self.log.last()
                                        },
                                        up_to_date: l.established && p.nl_acked,
                                    })),
                                });
                            }
                        }
                    }
                }
            }
            State::Following(f) => {
                let timed_out = match f.phase {
                    Phase::Synced { .. } => now - f.last_heard > cfg.sync_limit_ticks,
                    _ => now - f.phase_started > cfg.init_limit_ticks,
                };
                if timed_out {
                    self.step_down();
                    return;
                }
                if now - f.last_retry >= cfg.retry_interval_ticks {
                    f.last_retry = now;
                    match f.phase {
                        Phase::Discovery => self.follower_send_info(),
                        Phase::AwaitSync { .. } => self.follower_send_ack_epoch(),
                        _ => {}
                    }
                }
            }
        }
    }

    // ---------------------------------------------------------------- messages

    fn on_message(&mut self, from: PeerId, m: ZabMessage) -> Result<(), ZabError> {
        if !self.cfg.is_member(from) || from == self.cfg.myid {
            return Err(ZabError::UnknownPeer(from));
        }
        let Some(body) = m.body else {
            return Err(ZabError::Malformed {
                from,
                reason: "no body",
            });
        };
        match &self.state {
            State::Looking => Ok(()),
            State::Leading(_) => match body {
                Body::FollowerInfo(fi) => self.leader_on_follower_info(from, fi),
                Body::AckEpoch(a) => self.leader_on_ack_epoch(from, a),
                Body::Ack(a) => self.leader_on_ack(from, a),
                Body::Pong(p) => {
                    // Only proof of life: looking the session up records it.
                    self.leader_session_peer(from, p.session, p.epoch);
                    Ok(())
                }
                _ => Ok(()), // a leader-to-follower message from a rival leader: not for us
            },
            State::Following(_) => match body {
                Body::LeaderInfo(li) => self.follower_on_leader_info(from, li),
                Body::Sync(s) => self.follower_on_sync(from, s),
                Body::Proposal(p) => self.follower_on_proposal(from, p),
                Body::Commit(c) => self.follower_on_commit(from, c.session, c.epoch, c.zxid),
                Body::Ping(p) => self.follower_on_ping(from, p),
                Body::UpToDate(u) => self.follower_on_up_to_date(from, u),
                Body::Inform(i) => self.follower_on_inform(from, i),
                _ => Ok(()),
            },
        }
    }
}

mod follower;
mod leader;

#[cfg(test)]
mod tests;
