//! Quorum-mode state that the core owns next to the tree: the ZAB core, the leader election,
//! the two peer networks (quorum port and election port), and the bookkeeping that ties them
//! to the log writer and to client requests.
//!
//! The protocol logic lives in the pure state machines of `crate::quorum`; this module only
//! builds them from the configuration and from what is on disk, and keeps the small amount of
//! glue state the runtime needs (which log writes map to which `WriteId`, whether the link to
//! the leader dropped, which sessions had activity since the last report to the leader). The
//! code that drives them is `core/quorum.rs`, because every command they issue touches the tree,
//! the sessions or the connections that the core owns.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use thiserror::Error;

use crate::config::{Config, PeerType};
use crate::quorum::election::{self, Election};
use crate::quorum::transport::{PeerNetwork, TransportConfig, TransportError};
use crate::quorum::zab::{
    self, pb::PeerMessage, AcceptedEpoch, Entry, Event, PersistentState, Role, WriteId, Zab,
};
use crate::tree::Pending;

/// Granularity of the quorum clock: ZAB ticks and election timers advance this often.
pub const QUORUM_TICK_MS: u64 = 20;

/// Largest peer frame: a snapshot sent to a lagging follower travels in one message.
const MAX_PEER_FRAME_BYTES: usize = 1 << 30;

#[derive(Debug, Error)]
pub enum ReplicaError {
    #[error("{0}: myid is not set; write this server's id into dataDir/myid")]
    NoMyId(String),
    #[error("cannot resolve {what} address {addr} of server.{id}: {reason}")]
    Resolve {
        id: u64,
        what: &'static str,
        addr: String,
        reason: String,
    },
    #[error(transparent)]
    Zab(#[from] zab::ZabError),
    #[error("election: {0}")]
    Election(#[from] election::ConfigError),
    #[error("peer transport on {addr}: {source}")]
    Transport {
        addr: SocketAddr,
        source: TransportError,
    },
}

/// The ensemble as this member sees it, from its config.
#[derive(Clone, Debug)]
pub struct Membership {
    pub myid: u64,
    pub voters: BTreeSet<u64>,
    pub observers: BTreeSet<u64>,
    pub quorum_addrs: HashMap<u64, SocketAddr>,
    pub election_addrs: HashMap<u64, SocketAddr>,
    pub tick_time_ms: u64,
    pub init_limit_ticks: u64,
    pub sync_limit_ticks: u64,
    /// Names the ensemble (ids and roles, not addresses) so members of another one are refused.
    pub cluster_id: String,
    /// What "/zookeeper/config" holds while this member serves (`Config::membership_text`).
    pub config_text: String,
}

fn resolve(id: u64, what: &'static str, addr: &str) -> Result<SocketAddr, ReplicaError> {
    let err = |reason: String| ReplicaError::Resolve {
        id,
        what,
        addr: addr.to_string(),
        reason,
    };
    addr.to_socket_addrs()
        .map_err(|e| err(e.to_string()))?
        .next()
        .ok_or_else(|| err("no address".into()))
}

impl Membership {
    pub fn from_config(cfg: &Config) -> Result<Membership, ReplicaError> {
        let myid = cfg
            .my_id
            .ok_or_else(|| ReplicaError::NoMyId(cfg.source_name.clone()))?;
        let mut m = Membership {
            myid,
            voters: BTreeSet::new(),
            observers: BTreeSet::new(),
            quorum_addrs: HashMap::new(),
            election_addrs: HashMap::new(),
            tick_time_ms: cfg.tick_time_ms as u64,
            init_limit_ticks: cfg.init_limit_ticks as u64,
            sync_limit_ticks: cfg.sync_limit_ticks as u64,
            cluster_id: String::new(),
            config_text: cfg.membership_text().unwrap_or_default(),
        };
        let mut ids = Vec::new();
        for s in &cfg.servers {
            match s.role {
                PeerType::Observer => m.observers.insert(s.id),
                _ => m.voters.insert(s.id),
            };
            ids.push(format!(
                "{}{}",
                s.id,
                if s.role == PeerType::Observer {
                    "o"
                } else {
                    "p"
                }
            ));
            m.quorum_addrs
                .insert(s.id, resolve(s.id, "quorum", &s.quorum_endpoint())?);
            m.election_addrs
                .insert(s.id, resolve(s.id, "election", &s.election_endpoint())?);
        }
        ids.sort();
        m.cluster_id = format!("corral:{}", ids.join(","));
        Ok(m)
    }

    /// Quorum-clock ticks in one configured tick (`tickTime`).
    fn ticks_per_tick(&self) -> u64 {
        (self.tick_time_ms / QUORUM_TICK_MS).max(1)
    }

    pub fn is_observer(&self) -> bool {
        self.observers.contains(&self.myid)
    }
}

/// One quorum member's replication state (see the module doc).
pub struct Replica {
    pub membership: Membership,
    pub zab: Zab,
    pub election: Election,
    pub zab_net: Arc<PeerNetwork<PeerMessage>>,
    pub elect_net: Arc<PeerNetwork<election::pb::Notification>>,
    /// Origin of the election's millisecond clock.
    pub clock: Instant,
    /// The serving role, as the ZAB core last reported it.
    pub role: Role,
    /// Log writes not yet known durable: their id and the zxid the log ends at after them.
    pub writes: VecDeque<(WriteId, i64)>,
    /// The last zxid handed to the log.
    pub log_last: i64,
    /// Leader: effects of proposals not yet applied (ZooKeeper's outstanding changes).
    pub pending: Pending,
    /// Follower/observer: sessions with client activity since the last report to the leader.
    pub touched: HashSet<i64>,
    /// Sessions with a sync in their queue (checked after every applied transaction).
    pub sync_sessions: HashSet<i64>,
    /// Follower/observer: the leader's link as first seen connected (its connect count).
    pub leader_link: Option<u64>,
    /// Events produced while executing commands, fed to the core in order.
    pub events: VecDeque<Event>,
    /// Set while commands are being executed (events are queued, not fed, meanwhile).
    pub pumping: bool,
    pub ticks: u64,
    pub ping_interval_ticks: u64,
    /// When this member last started looking for a leader (for the election time log line).
    pub looking_since: Instant,
}

/// What quorum-mode recovery hands to [`Replica::start`].
pub struct OnDisk {
    pub accepted: (u64, u64),
    pub current_epoch: u64,
    pub snapshot_zxid: i64,
    pub log: Vec<(i64, Bytes)>,
}

impl Replica {
    /// Builds the state machines from the membership and the disk, and starts both peer
    /// networks (binding the quorum and election ports).
    pub async fn start(membership: Membership, disk: OnDisk) -> Result<Replica, ReplicaError> {
        let per_tick = membership.ticks_per_tick();
        let zab_cfg = zab::Config {
            myid: membership.myid,
            voters: membership.voters.clone(),
            observers: membership.observers.clone(),
            init_limit_ticks: membership.init_limit_ticks * per_tick,
            sync_limit_ticks: membership.sync_limit_ticks * per_tick,
            // Pings every half tick, as in ZooKeeper. A joining follower retries every 100 ms,
            // so one whose first hello reached a member not yet leading joins soon after.
            ping_interval_ticks: (per_tick / 2).max(1),
            retry_interval_ticks: (per_tick / 2).clamp(1, 100 / QUORUM_TICK_MS),
        };
        let ping_interval_ticks = zab_cfg.ping_interval_ticks;
        let log: Vec<Entry> = disk
            .log
            .into_iter()
            .map(|(zxid, payload)| Entry { zxid, payload })
            .collect();
        let last_zxid = log.last().map_or(disk.snapshot_zxid, |e| e.zxid);
        let state = PersistentState {
            accepted: AcceptedEpoch {
                epoch: disk.accepted.0,
                leader: disk.accepted.1,
            },
            current_epoch: disk.current_epoch,
            snapshot_zxid: disk.snapshot_zxid,
            log,
        };
        let incarnation = rand::random::<u64>();
        let zab = Zab::new(zab_cfg, state, incarnation)?;
        let election = Election::new(
            membership.myid,
            membership.voters.clone(),
            membership.observers.clone(),
            last_zxid,
            disk.current_epoch,
        )?;
        let net = |addrs: &HashMap<u64, SocketAddr>,
                   suffix: &str|
         -> Result<TransportConfig, ReplicaError> {
            let listen = addrs[&membership.myid];
            let mut cfg = TransportConfig::new(
                membership.myid,
                listen,
                addrs.clone(),
                format!("{}/{suffix}", membership.cluster_id),
            );
            cfg.max_frame_bytes = MAX_PEER_FRAME_BYTES;
            // A restarted member with a low id waits for the others to dial it: keep that wait
            // short (ZooKeeper's members retry every few hundred milliseconds too).
            cfg.reconnect_backoff_max = std::time::Duration::from_millis(400);
            Ok(cfg)
        };
        let mut zab_cfg = net(&membership.quorum_addrs, "zab")?;
        // Proposals in flight to one follower: a dropped message costs a resync, so the queue
        // is sized well above the client in-flight limits.
        zab_cfg.send_queue_len = 1 << 16;
        zab_cfg.send_queue_bytes = 1 << 30;
        let quorum_listen = zab_cfg.listen_addr;
        let zab_net =
            PeerNetwork::start(zab_cfg)
                .await
                .map_err(|source| ReplicaError::Transport {
                    addr: quorum_listen,
                    source,
                })?;
        let elect_cfg = net(&membership.election_addrs, "election")?;
        let elect_listen = elect_cfg.listen_addr;
        let elect_net =
            PeerNetwork::start(elect_cfg)
                .await
                .map_err(|source| ReplicaError::Transport {
                    addr: elect_listen,
                    source,
                })?;
        Ok(Replica {
            membership,
            zab,
            election,
            zab_net: Arc::new(zab_net),
            elect_net: Arc::new(elect_net),
            clock: Instant::now(),
            role: Role::Looking,
            writes: VecDeque::new(),
            log_last: last_zxid,
            pending: Pending::new(),
            touched: HashSet::new(),
            sync_sessions: HashSet::new(),
            leader_link: None,
            events: VecDeque::new(),
            pumping: false,
            ticks: 0,
            ping_interval_ticks,
            looking_since: Instant::now(),
        })
    }

    /// Milliseconds on the election's clock.
    pub fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    /// The leader this member follows or observes, once it serves in that role.
    pub fn leader(&self) -> Option<u64> {
        match self.role {
            Role::Following { leader, .. } | Role::Observing { leader, .. } => Some(leader),
            _ => None,
        }
    }

    /// The zxid the next proposal of an established leader gets (what `Zab::propose` will
    /// return), so that the request can be prepared under it first.
    pub fn next_zxid(&self) -> Option<i64> {
        let Role::Leading { epoch } = self.role else {
            return None;
        };
        let last = self.zab.last_zxid();
        if crate::quorum::zxid::epoch(last) == epoch {
            crate::quorum::zxid::try_make(epoch, crate::quorum::zxid::counter(last) + 1)
        } else {
            crate::quorum::zxid::try_make(epoch, 1)
        }
    }
}
