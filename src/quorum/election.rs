//! Leader election: a pure state machine in the spirit of ZooKeeper's FastLeaderElection.
//!
//! **What.** Every voter starts by proposing itself and broadcasting that vote. Votes are
//! totally ordered by (peer epoch, last zxid, server id); a voter that hears a better vote in
//! its round adopts it and broadcasts again. When a strict majority of voters agree on the
//! voter's own proposal, it waits [`FINALIZE_WAIT_MS`] for a still better vote and then decides:
//! [`Role::Leading`] if the winner is itself, [`Role::Following`] otherwise.
//!
//! **Why this shape.** The election never touches a socket or a clock. The runtime feeds it
//! notifications ([`Election::on_notification`]) and the time ([`Election::on_tick`]) and
//! carries out the [`Out`] commands it returns, so tests can run whole ensembles in one thread
//! with lost, duplicated and reordered messages and a logical clock, reproducibly from a seed
//! (see the tests at the bottom). Time is only what `on_tick` last said: a notification is
//! stamped with that time, and a timer started before the first tick is anchored at the next.
//!
//! **Joining a running ensemble.** A member that has decided keeps answering looking voters with
//! its current vote and state (Following/Leading). A looking member accepts such a leader once a
//! majority of voters report following/leading it *and* the leader itself reports Leading
//! (ZooKeeper's `outofelection` set and `checkLeader`), so a restarted member joins the existing
//! leader instead of forcing a new election, and nobody keeps electing a crashed leader.
//!
//! **Observers** never vote: their notifications are answered but never counted, they propose
//! nobody, and they decide only from the Following/Leading replies of voters, as above.
//!
//! **Differences from ZooKeeper, on purpose.** The finalize wait runs for a fixed 200 ms from the
//! moment the quorum formed (ZooKeeper restarts it after every uninteresting message, so steady
//! traffic can postpone a decision indefinitely). A looking voter does not answer an observer
//! (the observer retransmits and learns once the voters have decided). No reconfiguration, no
//! Oracle for two-node ensembles, no wire-format versions.
//!
//! **Safety** comes from the next phase, not from here: with lost messages two voters may decide
//! differently (one finalised before hearing a better vote). The leader's discovery phase needs a
//! quorum of followers and the runtime calls [`Election::restart`] when that fails, exactly as a
//! ZooKeeper peer goes back to LOOKING.

use std::collections::{BTreeMap, BTreeSet};

use prost::Message;
use thiserror::Error;

/// Generated from `proto/election.proto`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/corral.election.rs"));
}

/// How long a voter that sees a quorum for its proposal waits for a better vote before deciding
/// (ZooKeeper's `finalizeWait`). Also the first retransmission interval.
pub const FINALIZE_WAIT_MS: u64 = 200;
/// Upper bound of the retransmission interval, which doubles on every silent timeout
/// (ZooKeeper's `maxNotificationInterval`).
pub const MAX_NOTIFICATION_INTERVAL_MS: u64 = 60_000;

/// A proposal for leader. The derived order is the election's total order: higher epoch first,
/// then higher last zxid, then higher server id (ZooKeeper's `totalOrderPredicate`). Field order
/// matters for the derive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Vote {
    /// The proposed leader's current epoch.
    pub epoch: u64,
    /// The proposed leader's last logged zxid.
    pub zxid: i64,
    /// The proposed leader's server id.
    pub leader: u64,
}

/// What a server reports it is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerState {
    Looking,
    Following,
    Leading,
    Observing,
}

/// The outcome of an election for this server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Leading,
    Following,
    Observing,
}

impl Role {
    /// The state a server in this role reports in its notifications.
    pub fn state(self) -> PeerState {
        match self {
            Role::Leading => PeerState::Leading,
            Role::Following => PeerState::Following,
            Role::Observing => PeerState::Observing,
        }
    }
}

/// One election message. Mirrors `pb::Notification`, with the state validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Notification {
    /// Proposed (or, when not looking, current) leader with its zxid and epoch.
    pub vote: Vote,
    /// The sender's state.
    pub state: PeerState,
    /// The sender's server id.
    pub sid: u64,
    /// The election round (logical clock) `vote` belongs to.
    pub round: u64,
    /// The sender's own current epoch.
    pub peer_epoch: u64,
}

/// Commands for the runtime, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// Send `notification` to server `to` (best effort: loss is tolerated by retransmission).
    Send { to: u64, notification: Notification },
    /// The election is over for this server. `epoch` is the elected vote's epoch (the leader's
    /// epoch before discovery picks a new one).
    Decided { leader: u64, epoch: u64, role: Role },
}

/// The membership handed to [`Election::new`] is unusable.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("the ensemble has no voters")]
    NoVoters,
    #[error("server {0} is neither a voter nor an observer")]
    NotAMember(u64),
    #[error("server {0} is listed both as a voter and as an observer")]
    VoterAndObserver(u64),
}

/// Why a notification was ignored. Nothing in the election changed; the runtime may log it.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum Ignored {
    #[error("election has not been started")]
    NotStarted,
    #[error("notification from unknown server {0}")]
    UnknownSender(u64),
    #[error("notification arrived from server {from} but claims to be from {claimed}")]
    SenderMismatch { from: u64, claimed: u64 },
    #[error("notification from myself")]
    FromSelf,
    #[error("notification from {from} proposes {leader}, which is not a voter")]
    LeaderNotVoter { from: u64, leader: u64 },
    #[error("observers do not talk to observers (notification from {0})")]
    ObserverToObserver(u64),
}

/// A received notification does not decode.
#[derive(Debug, Error, PartialEq)]
pub enum DecodeError {
    #[error("malformed election notification: {0}")]
    Malformed(#[from] prost::DecodeError),
    #[error("election notification has unknown peer state {0}")]
    UnknownState(i32),
}

impl From<PeerState> for pb::PeerState {
    fn from(state: PeerState) -> Self {
        match state {
            PeerState::Looking => pb::PeerState::Looking,
            PeerState::Following => pb::PeerState::Following,
            PeerState::Leading => pb::PeerState::Leading,
            PeerState::Observing => pb::PeerState::Observing,
        }
    }
}

impl From<pb::PeerState> for PeerState {
    fn from(state: pb::PeerState) -> Self {
        match state {
            pb::PeerState::Looking => PeerState::Looking,
            pb::PeerState::Following => PeerState::Following,
            pb::PeerState::Leading => PeerState::Leading,
            pb::PeerState::Observing => PeerState::Observing,
        }
    }
}

impl From<&Notification> for pb::Notification {
    fn from(n: &Notification) -> Self {
        pb::Notification {
            leader: n.vote.leader,
            zxid: n.vote.zxid,
            epoch: n.vote.epoch,
            state: pb::PeerState::from(n.state) as i32,
            sid: n.sid,
            round: n.round,
            peer_epoch: n.peer_epoch,
        }
    }
}

impl TryFrom<pb::Notification> for Notification {
    type Error = DecodeError;

    fn try_from(m: pb::Notification) -> Result<Self, DecodeError> {
        let state =
            pb::PeerState::try_from(m.state).map_err(|_| DecodeError::UnknownState(m.state))?;
        Ok(Notification {
            vote: Vote {
                epoch: m.epoch,
                zxid: m.zxid,
                leader: m.leader,
            },
            state: state.into(),
            sid: m.sid,
            round: m.round,
            peer_epoch: m.peer_epoch,
        })
    }
}

impl Notification {
    /// Protobuf encoding, for the transport.
    pub fn encode(&self) -> Vec<u8> {
        pb::Notification::from(self).encode_to_vec()
    }

    /// Decodes and validates a notification from the wire. Whether the sender is a member is
    /// [`Election::on_notification`]'s business.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Notification::try_from(pb::Notification::decode(bytes)?)
    }
}

/// A vote as recorded from one member: ZooKeeper's `Vote` with its election epoch and state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ballot {
    vote: Vote,
    round: u64,
    state: PeerState,
}

impl Ballot {
    /// ZooKeeper's `Vote.equals`: while anyone involved is looking, the whole vote and round
    /// must match; between members out of the election only the leader and its epoch count,
    /// because zxids and rounds legitimately differ between members that joined at different
    /// times (ZOOKEEPER-1805).
    fn agrees(&self, other: &Ballot) -> bool {
        if self.state == PeerState::Looking || other.state == PeerState::Looking {
            self.vote == other.vote && self.round == other.round
        } else {
            self.vote.leader == other.vote.leader && self.vote.epoch == other.vote.epoch
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Built, not started.
    Idle,
    Looking,
    Decided(Role),
}

/// A timer anchored at a logical time; `None` means "at the next tick" (started before any).
type Anchor = Option<u64>;

/// The election state of one server. See the module docs.
#[derive(Debug, Clone)]
pub struct Election {
    myid: u64,
    voters: BTreeSet<u64>,
    observers: BTreeSet<u64>,
    last_zxid: i64,
    current_epoch: u64,
    phase: Phase,
    /// The logical clock: incremented by every (re)start, raised to any higher looking round.
    round: u64,
    /// While looking: my proposal. When decided: the vote I decided on (epoch updated by
    /// [`Election::set_epoch`]).
    proposal: Vote,
    /// When decided: the round the decided vote belongs to.
    decided_round: u64,
    /// Votes of voters in my current round (ZooKeeper's `recvset`), mine included.
    recv: BTreeMap<u64, Ballot>,
    /// Following/Leading reports from voters, any round (ZooKeeper's `outofelection`).
    out_of_election: BTreeMap<u64, Ballot>,
    now_ms: Option<u64>,
    /// When I last heard a notification (or retransmitted): the retransmission timer.
    last_heard: Anchor,
    notification_timeout_ms: u64,
    /// Running while a quorum agrees with my proposal.
    finalize: Option<Anchor>,
}

impl Election {
    /// A server `myid` in an ensemble of `voters` and `observers`, whose log ends at `last_zxid`
    /// and whose current epoch is `current_epoch`. Call [`Election::start`] to begin.
    pub fn new(
        myid: u64,
        voters: BTreeSet<u64>,
        observers: BTreeSet<u64>,
        last_zxid: i64,
        current_epoch: u64,
    ) -> Result<Self, ConfigError> {
        if voters.is_empty() {
            return Err(ConfigError::NoVoters);
        }
        if let Some(both) = voters.intersection(&observers).next() {
            return Err(ConfigError::VoterAndObserver(*both));
        }
        if !voters.contains(&myid) && !observers.contains(&myid) {
            return Err(ConfigError::NotAMember(myid));
        }
        Ok(Election {
            myid,
            voters,
            observers,
            last_zxid,
            current_epoch,
            phase: Phase::Idle,
            round: 0,
            proposal: Vote {
                epoch: current_epoch,
                zxid: last_zxid,
                leader: myid,
            },
            decided_round: 0,
            recv: BTreeMap::new(),
            out_of_election: BTreeMap::new(),
            now_ms: None,
            last_heard: None,
            notification_timeout_ms: FINALIZE_WAIT_MS,
            finalize: None,
        })
    }

    /// Begins a new round: proposes myself (observers propose nobody that counts) and broadcasts
    /// the vote to every other voter. Calling it again starts yet another round.
    pub fn start(&mut self) -> Vec<Out> {
        self.round += 1;
        self.phase = Phase::Looking;
        self.proposal = self.own_vote();
        self.recv.clear();
        self.out_of_election.clear();
        self.last_heard = self.now_ms;
        self.notification_timeout_ms = FINALIZE_WAIT_MS;
        self.finalize = None;
        let mut out = Vec::new();
        self.record_own_vote();
        self.broadcast(&mut out);
        self.update_finalize();
        out
    }

    /// Goes back to looking with a possibly newer log position and epoch, as a peer does when
    /// it loses its leader or its followers.
    pub fn restart(&mut self, last_zxid: i64, current_epoch: u64) -> Vec<Out> {
        self.last_zxid = last_zxid;
        self.current_epoch = current_epoch;
        self.start()
    }

    /// Records the epoch the new leader established after the election (ZooKeeper's
    /// `updateElectionVote`): from now on this member reports its vote with that epoch, so that
    /// members that join later agree on (leader, epoch) with those already following.
    pub fn set_epoch(&mut self, epoch: u64) {
        self.current_epoch = epoch;
        if matches!(self.phase, Phase::Decided(_)) {
            self.proposal.epoch = epoch;
        }
    }

    /// Handles one notification that arrived from server `from`.
    pub fn on_notification(&mut self, from: u64, n: Notification) -> Result<Vec<Out>, Ignored> {
        if from == self.myid {
            return Err(Ignored::FromSelf);
        }
        if n.sid != from {
            return Err(Ignored::SenderMismatch {
                from,
                claimed: n.sid,
            });
        }
        let from_voter = self.voters.contains(&from);
        if !from_voter && !self.observers.contains(&from) {
            return Err(Ignored::UnknownSender(from));
        }
        if self.phase == Phase::Idle {
            return Err(Ignored::NotStarted);
        }
        if !from_voter {
            // An observer asking who leads. Answered only once there is an answer.
            if !self.is_voter() {
                return Err(Ignored::ObserverToObserver(from));
            }
            return Ok(self.answer_if_decided(from, n.state));
        }
        if !self.voters.contains(&n.vote.leader) {
            return Err(Ignored::LeaderNotVoter {
                from,
                leader: n.vote.leader,
            });
        }
        match self.phase {
            Phase::Looking => Ok(self.looking(from, n)),
            _ => Ok(self.answer_if_decided(from, n.state)),
        }
    }

    /// Advances the logical clock: finishes a finalize wait that ran out, and retransmits my
    /// vote when nothing was heard for the current notification timeout (doubling it, up to
    /// [`MAX_NOTIFICATION_INTERVAL_MS`]).
    pub fn on_tick(&mut self, now_ms: u64) -> Vec<Out> {
        let now = self.now_ms.map_or(now_ms, |prev| prev.max(now_ms));
        self.now_ms = Some(now);
        let mut out = Vec::new();
        if self.phase != Phase::Looking {
            return out;
        }
        if let Some(anchor) = self.finalize.as_mut() {
            let since = *anchor.get_or_insert(now);
            if now.saturating_sub(since) >= FINALIZE_WAIT_MS {
                let (vote, round) = (self.proposal, self.round);
                self.decide(vote, round, &mut out);
                return out;
            }
        }
        let heard = *self.last_heard.get_or_insert(now);
        if now.saturating_sub(heard) >= self.notification_timeout_ms {
            self.broadcast(&mut out);
            self.notification_timeout_ms =
                (self.notification_timeout_ms * 2).min(MAX_NOTIFICATION_INTERVAL_MS);
            self.last_heard = Some(now);
        }
        out
    }

    /// This server's id.
    pub fn myid(&self) -> u64 {
        self.myid
    }

    /// The current election round (logical clock).
    pub fn round(&self) -> u64 {
        self.round
    }

    /// What this server reports: Looking until decided (also before start), then its role.
    pub fn state(&self) -> PeerState {
        match self.phase {
            Phase::Idle | Phase::Looking => PeerState::Looking,
            Phase::Decided(role) => role.state(),
        }
    }

    /// The current proposal while looking; the decided vote afterwards.
    pub fn vote(&self) -> Vote {
        self.proposal
    }

    /// The outcome, once decided: (leader, epoch, role).
    pub fn decided(&self) -> Option<(u64, u64, Role)> {
        match self.phase {
            Phase::Decided(role) => Some((self.proposal.leader, self.proposal.epoch, role)),
            _ => None,
        }
    }

    /// The retransmission interval now in force.
    pub fn notification_timeout_ms(&self) -> u64 {
        self.notification_timeout_ms
    }

    fn is_voter(&self) -> bool {
        self.voters.contains(&self.myid)
    }

    fn own_vote(&self) -> Vote {
        Vote {
            epoch: self.current_epoch,
            zxid: self.last_zxid,
            leader: self.myid,
        }
    }

    fn record_own_vote(&mut self) {
        if self.is_voter() {
            let ballot = Ballot {
                vote: self.proposal,
                round: self.round,
                state: PeerState::Looking,
            };
            self.recv.insert(self.myid, ballot);
        }
    }

    /// My notification as it stands: the proposal while looking, the decision afterwards.
    fn notification(&self) -> Notification {
        let round = match self.phase {
            Phase::Decided(_) => self.decided_round,
            _ => self.round,
        };
        Notification {
            vote: self.proposal,
            state: self.state(),
            sid: self.myid,
            round,
            peer_epoch: self.current_epoch,
        }
    }

    fn send_to(&self, to: u64) -> Out {
        Out::Send {
            to,
            notification: self.notification(),
        }
    }

    fn broadcast(&self, out: &mut Vec<Out>) {
        for &to in self.voters.iter().filter(|&&id| id != self.myid) {
            out.push(self.send_to(to));
        }
    }

    /// A decided voter tells a looking member whom it follows or leads (ZooKeeper answers the
    /// same way from its receiver thread).
    fn answer_if_decided(&self, from: u64, their_state: PeerState) -> Vec<Out> {
        match self.phase {
            Phase::Decided(Role::Leading | Role::Following)
                if their_state == PeerState::Looking =>
            {
                vec![self.send_to(from)]
            }
            _ => Vec::new(),
        }
    }

    fn looking(&mut self, from: u64, n: Notification) -> Vec<Out> {
        self.last_heard = self.now_ms;
        let mut out = Vec::new();
        match n.state {
            PeerState::Looking => {
                if !self.is_voter() {
                    return out;
                }
                if n.round > self.round {
                    // A newer election: join it, keeping the better of its vote and mine.
                    self.round = n.round;
                    self.recv.clear();
                    self.proposal = n.vote.max(self.own_vote());
                    self.finalize = None;
                    self.record_own_vote();
                    self.broadcast(&mut out);
                } else if n.round < self.round {
                    // A straggler: tell it about the current round, don't count it.
                    out.push(self.send_to(from));
                    return out;
                } else if n.vote > self.proposal {
                    self.proposal = n.vote;
                    self.finalize = None;
                    self.record_own_vote();
                    self.broadcast(&mut out);
                }
                let ballot = Ballot {
                    vote: n.vote,
                    round: n.round,
                    state: PeerState::Looking,
                };
                self.recv.insert(from, ballot);
                self.update_finalize();
            }
            PeerState::Observing => {}
            PeerState::Following | PeerState::Leading => {
                if let Some((vote, round)) = self.learn_from_decided(from, n) {
                    self.decide(vote, round, &mut out);
                }
            }
        }
        out
    }

    /// ZooKeeper's `receivedFollowingNotification`: a voter that is out of the election tells
    /// whom it follows. Returns the vote to decide on, if a quorum backs a leader that says it
    /// is leading.
    fn learn_from_decided(&mut self, from: u64, n: Notification) -> Option<(Vote, u64)> {
        let ballot = Ballot {
            vote: n.vote,
            round: n.round,
            state: n.state,
        };
        if self.is_voter() && n.round == self.round {
            self.recv.insert(from, ballot);
            if self.has_quorum(&self.recv, &ballot) && self.check_leader(&self.recv, &ballot) {
                return Some((n.vote, n.round));
            }
        }
        self.out_of_election.insert(from, ballot);
        if self.has_quorum(&self.out_of_election, &ballot)
            && self.check_leader(&self.out_of_election, &ballot)
        {
            self.round = n.round;
            return Some((n.vote, n.round));
        }
        None
    }

    /// ZooKeeper's `checkLeader`: a quorum for someone else is only good if that someone says
    /// it is leading, so that nobody follows a crashed leader; a quorum for me is good if it is
    /// from my round.
    fn check_leader(&self, votes: &BTreeMap<u64, Ballot>, ballot: &Ballot) -> bool {
        if ballot.vote.leader == self.myid {
            self.round == ballot.round
        } else {
            votes
                .get(&ballot.vote.leader)
                .is_some_and(|b| b.state == PeerState::Leading)
        }
    }

    /// Whether a strict majority of voters agree with `ballot`.
    fn has_quorum(&self, votes: &BTreeMap<u64, Ballot>, ballot: &Ballot) -> bool {
        let agreeing = votes
            .iter()
            .filter(|(id, b)| self.voters.contains(id) && b.agrees(ballot))
            .count();
        agreeing * 2 > self.voters.len()
    }

    fn update_finalize(&mut self) {
        let mine = Ballot {
            vote: self.proposal,
            round: self.round,
            state: PeerState::Looking,
        };
        if !self.is_voter() || !self.has_quorum(&self.recv, &mine) {
            self.finalize = None;
        } else if self.finalize.is_none() {
            self.finalize = Some(self.now_ms);
        }
    }

    fn decide(&mut self, vote: Vote, round: u64, out: &mut Vec<Out>) {
        let role = if vote.leader == self.myid {
            Role::Leading
        } else if self.is_voter() {
            Role::Following
        } else {
            Role::Observing
        };
        self.phase = Phase::Decided(role);
        self.proposal = vote;
        self.decided_round = round;
        self.recv.clear();
        self.out_of_election.clear();
        self.finalize = None;
        out.push(Out::Decided {
            leader: vote.leader,
            epoch: vote.epoch,
            role,
        });
    }
}
