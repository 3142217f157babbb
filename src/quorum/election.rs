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
//! **Driving it.** Build one [`Election`] per peer for the life of the process. Call
//! [`Election::start`] at boot, [`Election::on_tick`] every few milliseconds (the tick period
//! bounds how late a timer fires), decode each frame with [`Notification::decode`] and pass it
//! to [`Election::on_notification`] (an `Err` is a typed reason to log and drop, never a
//! failure). Keep feeding notifications after [`Out::Decided`]: that is how looking peers
//! learn the leader. After discovery established a new epoch, call [`Election::set_epoch`];
//! when the peer gives up its role (leader lost, no quorum of followers), call
//! [`Election::restart`] with the log position it has then.
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
        self.round = self.round.saturating_add(1);
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
        debug_assert!(self.voters.contains(&vote.leader), "only voters lead");
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn set(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    fn vote(leader: u64, zxid: i64, epoch: u64) -> Vote {
        Vote {
            epoch,
            zxid,
            leader,
        }
    }

    fn note(sid: u64, state: PeerState, round: u64, v: Vote) -> Notification {
        Notification {
            vote: v,
            state,
            sid,
            round,
            peer_epoch: v.epoch,
        }
    }

    fn sends(out: &[Out]) -> Vec<(u64, Notification)> {
        out.iter()
            .filter_map(|o| match o {
                Out::Send { to, notification } => Some((*to, *notification)),
                Out::Decided { .. } => None,
            })
            .collect()
    }

    fn decisions(out: &[Out]) -> Vec<(u64, u64, Role)> {
        out.iter()
            .filter_map(|o| match o {
                Out::Decided {
                    leader,
                    epoch,
                    role,
                } => Some((*leader, *epoch, *role)),
                Out::Send { .. } => None,
            })
            .collect()
    }

    fn voter(myid: u64, ids: &[u64], zxid: i64, epoch: u64) -> Election {
        Election::new(myid, set(ids), BTreeSet::new(), zxid, epoch).expect("valid membership")
    }

    // ---- the vote order -------------------------------------------------------------------

    #[test]
    fn votes_order_by_epoch_then_zxid_then_id() {
        assert!(vote(1, 0, 2) > vote(3, 100, 1), "epoch beats zxid and id");
        assert!(vote(1, 10, 1) > vote(3, 9, 1), "zxid beats id");
        assert!(vote(3, 10, 1) > vote(2, 10, 1), "id breaks ties");
        assert!(vote(1, -1, 0) < vote(1, 0, 0));
    }

    // ---- membership and rejected input -----------------------------------------------------

    #[test]
    fn bad_membership_is_refused() {
        let none = BTreeSet::new();
        assert_eq!(
            Election::new(1, none.clone(), set(&[1]), 0, 0).err(),
            Some(ConfigError::NoVoters)
        );
        assert_eq!(
            Election::new(4, set(&[1, 2, 3]), none.clone(), 0, 0).err(),
            Some(ConfigError::NotAMember(4))
        );
        assert_eq!(
            Election::new(1, set(&[1, 2, 3]), set(&[3]), 0, 0).err(),
            Some(ConfigError::VoterAndObserver(3))
        );
    }

    #[test]
    fn unknown_or_forged_notifications_are_ignored_with_a_reason() {
        let mut e = voter(1, &[1, 2, 3], 0, 0);
        let n = note(2, PeerState::Looking, 1, vote(2, 0, 0));
        assert_eq!(e.on_notification(2, n), Err(Ignored::NotStarted));
        e.start();
        let before = e.clone().vote();
        let stranger = note(9, PeerState::Looking, 1, vote(9, 100, 100));
        assert_eq!(
            e.on_notification(9, stranger),
            Err(Ignored::UnknownSender(9))
        );
        assert_eq!(
            e.on_notification(3, n),
            Err(Ignored::SenderMismatch {
                from: 3,
                claimed: 2
            })
        );
        let me = note(1, PeerState::Looking, 1, vote(1, 0, 0));
        assert_eq!(e.on_notification(1, me), Err(Ignored::FromSelf));
        let outsider = note(2, PeerState::Looking, 1, vote(9, 100, 100));
        assert_eq!(
            e.on_notification(2, outsider),
            Err(Ignored::LeaderNotVoter { from: 2, leader: 9 })
        );
        assert_eq!(e.vote(), before, "nothing ignored changed the proposal");
    }

    // ---- wire format -----------------------------------------------------------------------

    #[test]
    fn notifications_round_trip_through_protobuf() {
        for state in [
            PeerState::Looking,
            PeerState::Following,
            PeerState::Leading,
            PeerState::Observing,
        ] {
            let n = Notification {
                vote: vote(3, -1, 7),
                state,
                sid: 2,
                round: 42,
                peer_epoch: 6,
            };
            assert_eq!(Notification::decode(&n.encode()), Ok(n));
        }
    }

    #[test]
    fn unknown_peer_state_does_not_decode() {
        let m = pb::Notification {
            state: 17,
            ..Default::default()
        };
        assert_eq!(
            Notification::decode(&m.encode_to_vec()),
            Err(DecodeError::UnknownState(17))
        );
        assert!(matches!(
            Notification::decode(&[0xff, 0xff]),
            Err(DecodeError::Malformed(_))
        ));
    }

    // ---- single steps: given this state and this message, these are the commands -----------

    #[test]
    fn start_broadcasts_own_vote_to_the_other_voters() {
        let mut e = Election::new(2, set(&[1, 2, 3]), set(&[4]), 5, 1).expect("valid");
        let out = e.start();
        let mine = note(2, PeerState::Looking, 1, vote(2, 5, 1));
        assert_eq!(
            out,
            vec![
                Out::Send {
                    to: 1,
                    notification: mine
                },
                Out::Send {
                    to: 3,
                    notification: mine
                },
            ]
        );
    }

    #[test]
    fn a_better_vote_in_the_same_round_is_adopted_and_broadcast() {
        let mut e = voter(1, &[1, 2, 3], 5, 1);
        e.start();
        let out = e
            .on_notification(2, note(2, PeerState::Looking, 1, vote(2, 5, 1)))
            .expect("accepted");
        let adopted = note(1, PeerState::Looking, 1, vote(2, 5, 1));
        assert_eq!(sends(&out), vec![(2, adopted), (3, adopted)]);
        // A worse vote changes nothing and sends nothing.
        let out = e
            .on_notification(3, note(3, PeerState::Looking, 1, vote(3, 4, 1)))
            .expect("accepted");
        assert!(out.is_empty());
        assert_eq!(e.vote(), vote(2, 5, 1));
    }

    #[test]
    fn a_straggler_from_an_older_round_gets_the_current_vote_back() {
        let mut e = voter(1, &[1, 2, 3], 5, 1);
        e.start();
        e.start();
        let out = e
            .on_notification(2, note(2, PeerState::Looking, 1, vote(2, 9, 1)))
            .expect("accepted");
        assert_eq!(
            sends(&out),
            vec![(2, note(1, PeerState::Looking, 2, vote(1, 5, 1)))]
        );
        assert_eq!(e.vote(), vote(1, 5, 1), "old rounds are not counted");
    }

    #[test]
    fn a_newer_round_is_joined_keeping_the_better_vote() {
        let mut e = voter(3, &[1, 2, 3], 5, 1);
        e.start();
        let out = e
            .on_notification(1, note(1, PeerState::Looking, 4, vote(1, 5, 1)))
            .expect("accepted");
        assert_eq!(e.round(), 4);
        let mine = note(3, PeerState::Looking, 4, vote(3, 5, 1));
        assert_eq!(sends(&out), vec![(1, mine), (2, mine)]);
    }

    #[test]
    fn finalize_waits_200ms_of_logical_time_after_a_quorum() {
        let mut e = voter(3, &[1, 2, 3], 5, 1);
        e.on_tick(1_000);
        e.start();
        e.on_notification(1, note(1, PeerState::Looking, 1, vote(3, 5, 1)))
            .expect("accepted");
        assert!(decisions(&e.on_tick(1_199)).is_empty());
        assert_eq!(e.state(), PeerState::Looking);
        assert_eq!(decisions(&e.on_tick(1_200)), vec![(3, 1, Role::Leading)]);
        assert_eq!(e.state(), PeerState::Leading);
    }

    #[test]
    fn a_better_vote_during_finalize_wins() {
        let mut e = voter(2, &[1, 2, 3], 5, 1);
        e.on_tick(0);
        e.start();
        e.on_notification(1, note(1, PeerState::Looking, 1, vote(2, 5, 1)))
            .expect("accepted");
        e.on_tick(100);
        // 3 was slow; its vote arrives inside the wait and beats the quorum's.
        let out = e
            .on_notification(3, note(3, PeerState::Looking, 1, vote(3, 5, 1)))
            .expect("accepted");
        assert_eq!(sends(&out).len(), 2, "the new proposal is broadcast");
        assert!(
            decisions(&e.on_tick(250)).is_empty(),
            "wait restarted at 100"
        );
        assert_eq!(decisions(&e.on_tick(300)), vec![(3, 1, Role::Following)]);
    }

    #[test]
    fn silence_retransmits_with_doubling_interval_up_to_60s() {
        let mut e = voter(1, &[1, 2, 3], 0, 0);
        e.on_tick(0);
        e.start();
        let mut resent_at = Vec::new();
        for now in (0..=400_000).step_by(10) {
            if !e.on_tick(now).is_empty() {
                resent_at.push(now);
            }
        }
        assert_eq!(&resent_at[..5], &[200, 600, 1_400, 3_000, 6_200]);
        let gaps: Vec<u64> = resent_at.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(gaps.iter().max(), Some(&MAX_NOTIFICATION_INTERVAL_MS));
        assert_eq!(e.notification_timeout_ms(), MAX_NOTIFICATION_INTERVAL_MS);
    }

    #[test]
    fn timers_started_before_the_first_tick_anchor_at_it() {
        let mut e = voter(1, &[1, 2, 3], 0, 0);
        e.start();
        assert!(e.on_tick(5_000_000).is_empty());
        assert!(e.on_tick(5_000_199).is_empty());
        assert_eq!(sends(&e.on_tick(5_000_200)).len(), 2);
    }

    #[test]
    fn a_decided_member_answers_looking_voters_only() {
        let mut e = voter(3, &[1, 2, 3], 5, 1);
        e.on_tick(0);
        e.start();
        e.on_notification(1, note(1, PeerState::Looking, 1, vote(3, 5, 1)))
            .expect("accepted");
        e.on_tick(200);
        assert_eq!(e.state(), PeerState::Leading);
        e.set_epoch(2);
        let out = e
            .on_notification(2, note(2, PeerState::Looking, 9, vote(2, 0, 0)))
            .expect("accepted");
        assert_eq!(
            out,
            vec![Out::Send {
                to: 2,
                notification: Notification {
                    vote: vote(3, 5, 2),
                    state: PeerState::Leading,
                    sid: 3,
                    round: 1,
                    peer_epoch: 2,
                }
            }]
        );
        let out = e
            .on_notification(2, note(2, PeerState::Following, 1, vote(3, 5, 2)))
            .expect("accepted");
        assert!(out.is_empty());
    }

    #[test]
    fn following_reports_count_only_with_a_quorum_and_a_leading_leader() {
        // 5 voters; 1 is looking after a restart, the others settled on 5 long ago.
        let mut e = voter(1, &[1, 2, 3, 4, 5], 0, 0);
        e.start();
        // Members that joined at different times report different rounds and zxids for the
        // same (leader, epoch); that is still agreement.
        let following = |sid: u64| {
            let (round, zxid) = (7 + sid, 90 - sid as i64);
            note(sid, PeerState::Following, round, vote(5, zxid, 3))
        };
        let leading = note(5, PeerState::Leading, 7, vote(5, 90, 3));
        for sid in [2, 3, 4] {
            let out = e.on_notification(sid, following(sid)).expect("accepted");
            assert!(decisions(&out).is_empty(), "no word from the leader yet");
        }
        let out = e.on_notification(5, leading).expect("accepted");
        assert_eq!(decisions(&out), vec![(5, 3, Role::Following)]);
        assert_eq!(e.round(), 7, "adopts the ensemble's round");
    }

    #[test]
    fn nobody_follows_a_leader_that_is_looking_again() {
        // 5 crashed and restarted; 2, 3 and 4 have not noticed yet and still follow it.
        let mut e = voter(1, &[1, 2, 3, 4, 5], 0, 0);
        e.start();
        let old = vote(5, 0, 0);
        let out = e
            .on_notification(5, note(5, PeerState::Looking, 1, old))
            .expect("accepted");
        assert_eq!(sends(&out).len(), 4, "adopts 5 as its proposal");
        for sid in [2, 3, 4] {
            let out = e
                .on_notification(sid, note(sid, PeerState::Following, 1, old))
                .expect("accepted");
            assert!(decisions(&out).is_empty(), "5 is not leading");
        }
        assert_eq!(e.state(), PeerState::Looking);
    }

    #[test]
    fn half_of_an_even_ensemble_is_not_a_quorum() {
        let mut e = voter(2, &[1, 2, 3, 4], 0, 0);
        e.on_tick(0);
        e.start();
        e.on_notification(1, note(1, PeerState::Looking, 1, vote(2, 0, 0)))
            .expect("accepted");
        for now in (0..100_000).step_by(10) {
            assert!(decisions(&e.on_tick(now)).is_empty(), "decided at {now}");
        }
        e.on_notification(3, note(3, PeerState::Looking, 1, vote(2, 0, 0)))
            .expect("accepted");
        assert_eq!(
            decisions(&e.on_tick(100_000 + FINALIZE_WAIT_MS)),
            vec![(2, 0, Role::Leading)]
        );
    }

    #[test]
    fn observers_neither_vote_nor_vouch() {
        let mut e = Election::new(1, set(&[1, 2, 3]), set(&[4, 5]), 0, 0).expect("valid");
        e.start();
        // An observer's looking notification is not a vote, and a looking voter stays quiet.
        let out = e
            .on_notification(4, note(4, PeerState::Looking, 1, vote(4, 99, 99)))
            .expect("accepted");
        assert!(out.is_empty());
        assert_eq!(e.vote(), vote(1, 0, 0));
        // Observers claiming to follow 3 don't make a quorum with 3 alone.
        for sid in [4, 5] {
            let out = e
                .on_notification(sid, note(sid, PeerState::Observing, 1, vote(3, 0, 0)))
                .expect("accepted");
            assert!(out.is_empty());
        }
        let out = e
            .on_notification(3, note(3, PeerState::Leading, 1, vote(3, 0, 0)))
            .expect("accepted");
        assert!(decisions(&out).is_empty());
        let out = e
            .on_notification(2, note(2, PeerState::Following, 1, vote(3, 0, 0)))
            .expect("accepted");
        assert_eq!(decisions(&out), vec![(3, 0, Role::Following)]);
    }

    #[test]
    fn observers_ignore_each_other() {
        let mut e = Election::new(4, set(&[1, 2, 3]), set(&[4, 5]), 0, 0).expect("valid");
        e.start();
        let n = note(5, PeerState::Looking, 1, vote(5, 0, 0));
        assert_eq!(e.on_notification(5, n), Err(Ignored::ObserverToObserver(5)));
    }

    // ---- a simulated ensemble --------------------------------------------------------------

    /// How the simulated network treats a message.
    #[derive(Debug, Clone, Copy)]
    struct Faults {
        loss: f64,
        duplication: f64,
        min_delay_ms: u64,
        max_delay_ms: u64,
    }

    impl Faults {
        fn fixed(latency_ms: u64) -> Self {
            Faults {
                loss: 0.0,
                duplication: 0.0,
                min_delay_ms: latency_ms,
                max_delay_ms: latency_ms,
            }
        }
    }

    /// How long a decided member tolerates not being part of an established leader+quorum
    /// before going back to looking. Stands in for ZAB's discovery/sync timeouts (initLimit).
    const SYNC_TIMEOUT_MS: u64 = 2_000;

    /// Many elections, one logical clock, a seeded network that loses, duplicates and reorders.
    struct Sim {
        nodes: BTreeMap<u64, Election>,
        voters: BTreeSet<u64>,
        log_position: BTreeMap<u64, (i64, u64)>,
        now_ms: u64,
        tick_ms: u64,
        seq: u64,
        /// (delivery time, sequence) -> (from, to, notification)
        in_flight: BTreeMap<(u64, u64), (u64, u64, Notification)>,
        rng: StdRng,
        faults: Faults,
        down: BTreeSet<u64>,
        /// Partition side of each node; only same-side nodes can talk. Absent = side 0.
        side: BTreeMap<u64, u8>,
        /// (time, node, leader, epoch, role), in order.
        decided: Vec<(u64, u64, u64, u64, Role)>,
        sent: usize,
        ignored: Vec<Ignored>,
        /// Model the next phase: go back to looking when the decided leader has no quorum.
        supervise: bool,
        unhappy_since: BTreeMap<u64, u64>,
    }

    impl Sim {
        fn new(voters: &[u64], observers: &[u64], seed: u64, tick_ms: u64) -> Self {
            let mut sim = Sim {
                nodes: BTreeMap::new(),
                voters: set(voters),
                log_position: BTreeMap::new(),
                now_ms: 0,
                tick_ms,
                seq: 0,
                in_flight: BTreeMap::new(),
                rng: StdRng::seed_from_u64(seed),
                faults: Faults::fixed(1),
                down: BTreeSet::new(),
                side: BTreeMap::new(),
                decided: Vec::new(),
                sent: 0,
                ignored: Vec::new(),
                supervise: false,
                unhappy_since: BTreeMap::new(),
            };
            for &id in voters.iter().chain(observers) {
                let e = Election::new(id, set(voters), set(observers), 0, 0).expect("valid");
                sim.nodes.insert(id, e);
                sim.log_position.insert(id, (0, 0));
            }
            sim
        }

        fn with_log(mut self, id: u64, zxid: i64, epoch: u64) -> Self {
            self.log_position.insert(id, (zxid, epoch));
            let e = self.nodes.get(&id).expect("member").clone();
            let fresh = Election::new(id, e.voters, e.observers, zxid, epoch).expect("valid");
            self.nodes.insert(id, fresh);
            self
        }

        fn start_all(&mut self) {
            let ids: Vec<u64> = self.nodes.keys().copied().collect();
            for id in ids {
                self.start(id);
            }
        }

        fn start(&mut self, id: u64) {
            let now = self.now_ms;
            let Some(e) = self.nodes.get_mut(&id) else {
                return;
            };
            e.on_tick(now);
            let out = e.start();
            self.route(id, out);
        }

        /// Replaces `id` with a freshly built election (a restarted process) and starts it.
        fn reboot(&mut self, id: u64, zxid: i64, epoch: u64, extra_rounds: u64) {
            let old = self.nodes.get(&id).expect("member").clone();
            let mut e = Election::new(id, old.voters, old.observers, zxid, epoch).expect("valid");
            for _ in 0..extra_rounds {
                e.start();
            }
            self.nodes.insert(id, e);
            self.log_position.insert(id, (zxid, epoch));
            self.down.remove(&id);
            self.unhappy_since.remove(&id);
            self.start(id);
        }

        fn crash(&mut self, id: u64) {
            self.down.insert(id);
        }

        fn linked(&self, a: u64, b: u64) -> bool {
            !self.down.contains(&a)
                && !self.down.contains(&b)
                && self.side.get(&a).copied().unwrap_or(0)
                    == self.side.get(&b).copied().unwrap_or(0)
        }

        fn route(&mut self, from: u64, out: Vec<Out>) {
            for o in out {
                match o {
                    Out::Send { to, notification } => {
                        self.sent += 1;
                        if !self.linked(from, to) || self.rng.gen_bool(self.faults.loss) {
                            continue;
                        }
                        let copies = if self.rng.gen_bool(self.faults.duplication) {
                            2
                        } else {
                            1
                        };
                        for _ in 0..copies {
                            let delay = self
                                .rng
                                .gen_range(self.faults.min_delay_ms..=self.faults.max_delay_ms);
                            self.seq += 1;
                            self.in_flight
                                .insert((self.now_ms + delay, self.seq), (from, to, notification));
                        }
                    }
                    Out::Decided {
                        leader,
                        epoch,
                        role,
                    } => self.decided.push((self.now_ms, from, leader, epoch, role)),
                }
            }
        }

        /// One tick: deliver what is due, tick everyone, let the next phase judge.
        fn step(&mut self) {
            self.now_ms += self.tick_ms;
            while let Some(entry) = self.in_flight.first_entry() {
                if entry.key().0 > self.now_ms {
                    break;
                }
                let (from, to, n) = entry.remove();
                if !self.linked(from, to) {
                    continue;
                }
                let Some(e) = self.nodes.get_mut(&to) else {
                    continue;
                };
                match e.on_notification(from, n) {
                    Ok(out) => self.route(to, out),
                    Err(why) => self.ignored.push(why),
                }
            }
            let ids: Vec<u64> = self.nodes.keys().copied().collect();
            for id in ids {
                if self.down.contains(&id) {
                    continue;
                }
                let now = self.now_ms;
                let out = self
                    .nodes
                    .get_mut(&id)
                    .map(|e| e.on_tick(now))
                    .unwrap_or_default();
                self.route(id, out);
            }
            if self.supervise {
                self.supervise_step();
            }
            assert!(
                self.established_leaders().len() <= 1,
                "two established leaders"
            );
        }

        fn role(&self, id: u64) -> Option<(u64, Role)> {
            if self.down.contains(&id) {
                return None;
            }
            self.nodes
                .get(&id)
                .and_then(|e| e.decided())
                .map(|(leader, _, role)| (leader, role))
        }

        /// Leaders that a quorum of voters (reachable, itself included) follows.
        fn established_leaders(&self) -> Vec<u64> {
            self.voters
                .iter()
                .copied()
                .filter(|&l| self.role(l) == Some((l, Role::Leading)))
                .filter(|&l| {
                    let backing = self
                        .voters
                        .iter()
                        .filter(|&&v| self.linked(v, l))
                        .filter(|&&v| v == l || self.role(v) == Some((l, Role::Following)))
                        .count();
                    backing * 2 > self.voters.len()
                })
                .collect()
        }

        fn supervise_step(&mut self) {
            let established = self.established_leaders();
            let ids: Vec<u64> = self.nodes.keys().copied().collect();
            for id in ids {
                let happy = match self.role(id) {
                    None => true,
                    Some((leader, _)) => established.contains(&leader) && self.linked(id, leader),
                };
                if happy {
                    self.unhappy_since.remove(&id);
                    continue;
                }
                let since = *self.unhappy_since.entry(id).or_insert(self.now_ms);
                if self.now_ms - since >= SYNC_TIMEOUT_MS {
                    self.unhappy_since.remove(&id);
                    let (zxid, epoch) = self.log_position[&id];
                    let out = self
                        .nodes
                        .get_mut(&id)
                        .map(|e| e.restart(zxid, epoch))
                        .unwrap_or_default();
                    self.route(id, out);
                }
            }
        }

        /// Exactly one leader; every reachable member of `among` follows or observes it.
        fn agreed_leader(&self, among: &BTreeSet<u64>) -> Option<u64> {
            let leaders: Vec<u64> = among
                .iter()
                .copied()
                .filter(|&id| self.role(id).is_some_and(|(_, r)| r == Role::Leading))
                .collect();
            let [leader] = leaders[..] else {
                return None;
            };
            let all = among.iter().all(|&id| {
                let expected = if id == leader {
                    Role::Leading
                } else if self.voters.contains(&id) {
                    Role::Following
                } else {
                    Role::Observing
                };
                self.role(id) == Some((leader, expected))
            });
            all.then_some(leader)
        }

        fn everyone(&self) -> BTreeSet<u64> {
            self.nodes.keys().copied().collect()
        }

        /// Steps until `among` agrees on a leader; returns it.
        fn run_until_agreed(&mut self, among: &BTreeSet<u64>, limit_ms: u64) -> Option<u64> {
            let end = self.now_ms + limit_ms;
            while self.now_ms < end {
                self.step();
                if let Some(leader) = self.agreed_leader(among) {
                    return Some(leader);
                }
            }
            None
        }

        fn run_for(&mut self, ms: u64) {
            let end = self.now_ms + ms;
            while self.now_ms < end {
                self.step();
            }
        }
    }

    #[test]
    fn all_up_the_highest_id_wins_everywhere() {
        for n in [3u64, 5] {
            let ids: Vec<u64> = (1..=n).collect();
            let mut sim = Sim::new(&ids, &[], 1, 1);
            sim.start_all();
            assert_eq!(sim.run_until_agreed(&sim.everyone(), 10_000), Some(n));
            for (_, node, leader, epoch, _) in &sim.decided {
                assert_eq!(
                    (*leader, *epoch),
                    (n, 0),
                    "node {node} decided consistently"
                );
            }
            assert_eq!(sim.decided.len() as u64, n, "each decided exactly once");
            assert!(sim.ignored.is_empty(), "{:?}", sim.ignored);
        }
    }

    #[test]
    fn the_most_recent_log_wins_even_with_a_low_id() {
        let mut sim = Sim::new(&[1, 2, 3, 4, 5], &[], 1, 1)
            .with_log(1, 0x1_0000_0010, 1)
            .with_log(2, 0x1_0000_0009, 1)
            .with_log(5, 0x1_0000_0009, 1);
        sim.start_all();
        assert_eq!(sim.run_until_agreed(&sim.everyone(), 10_000), Some(1));
        // A higher epoch beats a longer log of an older epoch.
        let mut sim = Sim::new(&[1, 2, 3], &[], 1, 1)
            .with_log(1, 0x1_0000_0100, 1)
            .with_log(2, 0x2_0000_0001, 2);
        sim.start_all();
        assert_eq!(sim.run_until_agreed(&sim.everyone(), 10_000), Some(2));
        assert!(sim.decided.iter().all(|d| d.3 == 2), "decided on epoch 2");
    }

    #[test]
    fn everyone_up_decides_within_finalize_wait_and_two_exchanges() {
        const LATENCY_MS: u64 = 5;
        for n in [3u64, 5, 7] {
            let ids: Vec<u64> = (1..=n).collect();
            let mut sim = Sim::new(&ids, &[], 1, 1);
            sim.faults = Faults::fixed(LATENCY_MS);
            sim.start_all();
            assert_eq!(sim.run_until_agreed(&sim.everyone(), 10_000), Some(n));
            let last = sim.decided.iter().map(|d| d.0).max().expect("decisions");
            assert!(
                last <= FINALIZE_WAIT_MS + 2 * LATENCY_MS + 1,
                "{n} voters took {last} ms"
            );
            // Own vote, then at most one better vote per other voter: no retransmissions.
            let bound = (n * (n - 1) * n) as usize;
            assert!(sim.sent <= bound, "{n} voters sent {} > {bound}", sim.sent);
            assert!(sim.nodes.values().all(|e| e.round() == 1), "one round");
        }
    }

    #[test]
    fn a_restarted_member_joins_the_established_leader() {
        // Fresh process in round 1 (same as the others) and one that went round 6 times.
        for extra_rounds in [0, 5] {
            let mut sim = Sim::new(&[1, 2, 3, 4, 5], &[], 7, 1);
            sim.faults = Faults::fixed(2);
            sim.start_all();
            assert_eq!(sim.run_until_agreed(&sim.everyone(), 10_000), Some(5));
            // The new leader establishes epoch 1 (discovery), everyone records it.
            for e in sim.nodes.values_mut() {
                e.set_epoch(1);
            }
            sim.crash(2);
            sim.run_for(1_000);
            let before = sim.decided.len();
            let restarted_at = sim.now_ms;
            // Even with a longer log than the leader it joins rather than disrupt.
            sim.reboot(2, 0x1_0000_0100, 1, extra_rounds);
            assert_eq!(sim.run_until_agreed(&sim.everyone(), 10_000), Some(5));
            let after = &sim.decided[before..];
            assert_eq!(
                after.len(),
                1,
                "only the restarted member decided: {after:?}"
            );
            let (at, node, leader, epoch, role) = after[0];
            assert_eq!((node, leader, epoch, role), (2, 5, 1, Role::Following));
            assert!(
                at - restarted_at < FINALIZE_WAIT_MS,
                "joined at once, took {}",
                at - restarted_at
            );
        }
    }

    #[test]
    fn losing_the_leader_elects_the_next_best() {
        let mut sim = Sim::new(&[1, 2, 3], &[4], 3, 5);
        sim.supervise = true;
        sim.start_all();
        assert_eq!(sim.run_until_agreed(&sim.everyone(), 10_000), Some(3));
        sim.crash(3);
        let alive = set(&[1, 2, 4]);
        assert_eq!(sim.run_until_agreed(&alive, 60_000), Some(2));
        sim.reboot(3, 0, 0, 0);
        assert_eq!(sim.run_until_agreed(&sim.everyone(), 60_000), Some(2));
    }

    #[test]
    fn observers_learn_the_leader_but_never_count() {
        let mut sim = Sim::new(&[1, 2, 3], &[4, 5], 11, 5);
        sim.start_all();
        assert_eq!(sim.run_until_agreed(&sim.everyone(), 60_000), Some(3));
        assert!(sim
            .decided
            .iter()
            .any(|d| d.1 == 4 && d.4 == Role::Observing));

        // One voter and two observers are a majority of processes but not of voters.
        let mut sim = Sim::new(&[1, 2, 3], &[4, 5], 11, 5);
        sim.crash(1);
        sim.crash(2);
        sim.start_all();
        sim.run_for(300_000);
        assert!(sim.decided.is_empty(), "{:?}", sim.decided);
        assert!(sim.nodes.values().all(|e| e.state() == PeerState::Looking));
    }

    #[test]
    fn a_minority_partition_never_decides() {
        // The two best candidates are cut off together.
        let mut sim = Sim::new(&[1, 2, 3, 4, 5], &[6], 5, 5);
        sim.supervise = true;
        for id in [4, 5] {
            sim.side.insert(id, 1);
        }
        sim.start_all();
        let majority = set(&[1, 2, 3, 6]);
        assert_eq!(sim.run_until_agreed(&majority, 60_000), Some(3));
        sim.run_for(600_000);
        assert!(
            sim.decided.iter().all(|d| d.1 != 4 && d.1 != 5),
            "minority decided: {:?}",
            sim.decided
        );
        // Healing lets the minority join the majority's leader instead of taking over.
        sim.side.clear();
        let before = sim.decided.len();
        assert_eq!(sim.run_until_agreed(&sim.everyone(), 120_000), Some(3));
        let joined: BTreeSet<u64> = sim.decided[before..].iter().map(|d| d.1).collect();
        assert_eq!(joined, set(&[4, 5]));

        // Three voters, one alone.
        let mut sim = Sim::new(&[1, 2, 3], &[], 5, 5);
        sim.side.insert(3, 1);
        sim.start_all();
        assert_eq!(sim.run_until_agreed(&set(&[1, 2]), 60_000), Some(2));
        sim.run_for(300_000);
        assert!(sim.decided.iter().all(|d| d.1 != 3));
    }

    /// Chaos (loss, duplication, reordering, partitions, crashes with fresh restarts), then a
    /// healthy network: a single leader everyone agrees on, which then stays.
    fn chaos_then_heal(voters: &[u64], observers: &[u64], seed: u64) -> Result<(), String> {
        let mut sim = Sim::new(voters, observers, seed, 10);
        sim.supervise = true;
        sim.faults = Faults {
            loss: 0.3,
            duplication: 0.2,
            min_delay_ms: 1,
            max_delay_ms: 400,
        };
        let ids: Vec<u64> = sim.nodes.keys().copied().collect();
        sim.start_all();
        for _ in 0..40 {
            sim.run_for(250);
            match sim.rng.gen_range(0..10) {
                0 | 1 => {
                    for &id in &ids {
                        let side = sim.rng.gen_range(0..2);
                        sim.side.insert(id, side);
                    }
                }
                2 => sim.side.clear(),
                3 => {
                    let id = ids[sim.rng.gen_range(0..ids.len())];
                    sim.crash(id);
                }
                4 => {
                    let crashed: Vec<u64> = sim.down.iter().copied().collect();
                    for id in crashed {
                        let (zxid, epoch) = sim.log_position[&id];
                        let rounds = sim.rng.gen_range(0..3);
                        sim.reboot(id, zxid, epoch, rounds);
                    }
                }
                _ => {}
            }
        }
        // Heal: no loss, no partitions, everyone up. Duplication and reordering stay.
        sim.faults = Faults {
            loss: 0.0,
            duplication: 0.1,
            min_delay_ms: 1,
            max_delay_ms: 50,
        };
        sim.side.clear();
        let crashed: Vec<u64> = sim.down.iter().copied().collect();
        for id in crashed {
            let (zxid, epoch) = sim.log_position[&id];
            sim.reboot(id, zxid, epoch, 0);
        }
        let healed_at = sim.now_ms;
        let everyone = sim.everyone();
        let leader = sim
            .run_until_agreed(&everyone, 300_000)
            .ok_or_else(|| format!("no agreement 300 s after healing at {healed_at} ms"))?;
        sim.run_for(3 * SYNC_TIMEOUT_MS);
        if sim.agreed_leader(&everyone) != Some(leader) {
            return Err(format!("leader {leader} did not stay"));
        }
        if !sim.ignored.is_empty() {
            return Err(format!("ignored notifications: {:?}", sim.ignored));
        }
        Ok(())
    }

    #[test]
    fn seeded_chaos_converges_to_one_leader_with_3_voters() {
        for seed in 0..40 {
            if let Err(why) = chaos_then_heal(&[1, 2, 3], &[4], seed) {
                panic!("seed {seed}: {why}");
            }
        }
    }

    #[test]
    fn seeded_chaos_converges_to_one_leader_with_5_voters() {
        for seed in 1_000..1_040 {
            if let Err(why) = chaos_then_heal(&[1, 2, 3, 4, 5], &[6], seed) {
                panic!("seed {seed}: {why}");
            }
        }
    }
}
