//! Deterministic simulation of the ZAB core: a whole ensemble in one thread.
//!
//! Each seed builds 3 or 5 voters (sometimes plus an observer), a network that loses,
//! delays, reorders, duplicates and (rarely) garbles messages and partitions the members, disks
//! whose log writes complete after a random delay in order (epoch files on their own, in no
//! order with the log) and lose whatever is pending on a crash (an append in progress may leave
//! a torn prefix),
//! crashes and restarts (a restarted member is rebuilt from its disk only, sometimes everyone
//! at once), local snapshots that let leaders forget old log entries (so lagging followers need
//! state transfer), a toy election (`elect`) that is usually sensible and sometimes not, and
//! clients proposing to whoever leads. After every step the invariants are checked:
//!
//! 1. at most one member becomes an established leader per epoch;
//! 2. every member's applied sequence is a prefix of one canonical sequence (so of each other);
//! 3. at the end, with faults healed, every member applies everything that was ever applied
//!    anywhere (in particular every transaction a leader reported committed to its client),
//!    whatever crashed in between;
//! 4. the zxids a member applies are strictly increasing.
//!
//! `CORRAL_SIM_SEEDS=N` runs N seeds (default 1000), `CORRAL_SIM_SEED=S` replays one seed, and
//! `CORRAL_SIM_TRACE=1` prints its events. A failure names the seed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::zab::{
    AcceptedEpoch, Command, Config, Entry, EpochRecord, Event, PeerId, PersistentState, Role,
    WriteId, Zab, ZabError, ZabMessage,
};

/// Simulated time units per tick.
const TICK: u64 = 10;

/// The applied state of a member, small enough to compare: how many transactions, the last
/// zxid, and a hash chained over (zxid, payload). Snapshots carry it as their opaque bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Tree {
    count: u64,
    last: i64,
    hash: u64,
}

impl Tree {
    fn encode(&self) -> Bytes {
        let mut v = Vec::with_capacity(24);
        v.extend_from_slice(&self.count.to_be_bytes());
        v.extend_from_slice(&self.last.to_be_bytes());
        v.extend_from_slice(&self.hash.to_be_bytes());
        Bytes::from(v)
    }

    fn decode(b: &[u8]) -> Option<Tree> {
        if b.len() != 24 {
            return None;
        }
        let word = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i * 8..i * 8 + 8]);
            a
        };
        Some(Tree {
            count: u64::from_be_bytes(word(0)),
            last: i64::from_be_bytes(word(1)),
            hash: u64::from_be_bytes(word(2)),
        })
    }

    fn chain(&self, zxid: i64, payload: &[u8]) -> u64 {
        // FNV-1a over the previous hash, the zxid and the payload.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self
            .hash
            .to_be_bytes()
            .iter()
            .chain(zxid.to_be_bytes().iter())
            .chain(payload.iter())
        {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h
    }
}

#[derive(Clone, Debug, Default)]
struct Disk {
    accepted: AcceptedEpoch,
    current: u64,
    snap_zxid: i64,
    snap: Tree,
    log: Vec<Entry>,
}

#[derive(Debug)]
enum Io {
    Append(WriteId, Vec<Entry>),
    Truncate(WriteId, i64),
    Install(WriteId, i64, Tree),
    Epoch(EpochRecord),
}

struct Node {
    id: PeerId,
    cfg: Config,
    core: Option<Zab>,
    disk: Disk,
    /// Log writes, completed in order.
    io: VecDeque<(u64, Io)>,
    /// Epoch-file writes: a different file, so no order with respect to the log.
    epoch_io: VecDeque<(u64, Io)>,
    tree: Tree,
    incarnation: u64,
    up_at: u64,
}

struct Msg {
    from: PeerId,
    to: PeerId,
    msg: ZabMessage,
}

struct Params {
    loss: f64,
    dup: f64,
    garble: f64,
    max_delay: u64,
    crash: f64,
    partition: f64,
    chaos: f64,
    flip: f64,
    propose: f64,
}

struct World {
    seed: u64,
    rng: StdRng,
    now: u64,
    nodes: Vec<Node>,
    net: BTreeMap<(u64, u64), Msg>,
    /// Members on one side of the partition (empty: no partition) and when it heals.
    partition: (BTreeSet<PeerId>, u64),
    canonical: Vec<(i64, Bytes, u64)>,
    leaders: BTreeMap<u64, PeerId>,
    stats: Stats,
    next_payload: u64,
    snapshot_requests: Vec<(u64, usize, PeerId)>,
    p: Params,
    faults: bool,
    trace: bool,
}

type SimResult<T> = Result<T, String>;

/// What a run exercised, summed over seeds and printed, so that a quiet run can be told from
/// a run in which nothing happened.
#[derive(Clone, Copy, Debug, Default)]
struct Stats {
    committed: u64,
    client_acked: u64,
    epochs: u64,
    crashes: u64,
    total_crashes: u64,
    partitions: u64,
    flips: u64,
    garbled: u64,
    truncations: u64,
    snapshots_sent: u64,
    faulty_ticks: u64,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.committed += o.committed;
        self.client_acked += o.client_acked;
        self.epochs += o.epochs;
        self.crashes += o.crashes;
        self.total_crashes += o.total_crashes;
        self.partitions += o.partitions;
        self.flips += o.flips;
        self.garbled += o.garbled;
        self.truncations += o.truncations;
        self.snapshots_sent += o.snapshots_sent;
        self.faulty_ticks += o.faulty_ticks;
    }
}

impl World {
    fn new(seed: u64) -> World {
        let mut rng = StdRng::seed_from_u64(seed);
        let n_voters: u64 = if rng.gen_bool(0.6) { 3 } else { 5 };
        let n_observers: u64 = if rng.gen_bool(0.3) { 1 } else { 0 };
        let voters: BTreeSet<PeerId> = (1..=n_voters).collect();
        let observers: BTreeSet<PeerId> = (n_voters + 1..=n_voters + n_observers).collect();
        let nodes = (1..=n_voters + n_observers)
            .map(|id| {
                let cfg = Config {
                    myid: id,
                    voters: voters.clone(),
                    observers: observers.clone(),
                    init_limit_ticks: 20,
                    sync_limit_ticks: 10,
                    ping_interval_ticks: 2,
                    retry_interval_ticks: 2,
                };
                let core = Zab::new(cfg.clone(), PersistentState::default(), 0).ok();
                Node {
                    id,
                    cfg,
                    core,
                    disk: Disk::default(),
                    io: VecDeque::new(),
                    epoch_io: VecDeque::new(),
                    tree: Tree::default(),
                    incarnation: 0,
                    up_at: 0,
                }
            })
            .collect();
        let p = Params {
            loss: rng.gen_range(0.0..0.08),
            dup: rng.gen_range(0.0..0.05),
            garble: 0.002,
            max_delay: rng.gen_range(2..=3 * TICK),
            crash: rng.gen_range(0.0..0.02),
            partition: rng.gen_range(0.0..0.02),
            chaos: rng.gen_range(0.0..0.1),
            flip: rng.gen_range(0.0..0.05),
            propose: rng.gen_range(0.2..0.9),
        };
        World {
            seed,
            rng,
            now: 0,
            nodes,
            net: BTreeMap::new(),
            partition: (BTreeSet::new(), 0),
            canonical: Vec::new(),
            leaders: BTreeMap::new(),
            stats: Stats::default(),
            next_payload: 0,
            snapshot_requests: Vec::new(),
            p,
            faults: true,
            trace: std::env::var_os("CORRAL_SIM_TRACE").is_some(),
        }
    }

    fn log(&self, what: impl FnOnce() -> String) {
        if self.trace {
            eprintln!("[{:>6}] {}", self.now, what());
        }
    }

    fn connected(&self, a: PeerId, b: PeerId) -> bool {
        let side = &self.partition.0;
        side.contains(&a) == side.contains(&b)
    }

    fn fail<T>(&self, what: String) -> SimResult<T> {
        Err(format!("seed {} at t={}: {what}", self.seed, self.now))
    }

    /// Feeds `event` to node `i` and carries out the commands it produces.
    fn step(&mut self, i: usize, event: Event, garbled: bool) -> SimResult<()> {
        if self.trace {
            eprintln!("[{:>6}] n{} <- {:?}", self.now, self.nodes[i].id, event);
        }
        let Some(core) = self.nodes[i].core.as_mut() else {
            return Ok(());
        };
        let r = core.step(event);
        self.after(i, r, garbled)
    }

    fn after(&mut self, i: usize, r: Result<(), ZabError>, garbled: bool) -> SimResult<()> {
        match r {
            Ok(()) => {}
            Err(e) if garbled => self.log(|| format!("garbled message refused: {e}")),
            Err(e) => return self.fail(format!("n{} returned an error: {e}", self.nodes[i].id)),
        }
        let cmds = match self.nodes[i].core.as_mut() {
            Some(c) => c.take_commands(),
            None => return Ok(()),
        };
        for c in cmds {
            self.execute(i, c)?;
        }
        // What the core says is applied is exactly what reached the state machine.
        let n = &self.nodes[i];
        if let Some(core) = n.core.as_ref() {
            if core.last_committed() != n.tree.last {
                return self.fail(format!(
                    "n{}: core applied {:#x}, state machine at {:#x}",
                    n.id,
                    core.last_committed(),
                    n.tree.last
                ));
            }
        }
        Ok(())
    }

    fn io_due(&mut self, i: usize, epoch_file: bool) -> u64 {
        let d = self.now + self.rng.gen_range(1..=2 * TICK);
        let q = if epoch_file {
            &self.nodes[i].epoch_io
        } else {
            &self.nodes[i].io
        };
        d.max(q.back().map_or(0, |x| x.0))
    }

    fn execute(&mut self, i: usize, c: Command) -> SimResult<()> {
        let id = self.nodes[i].id;
        if self.trace {
            eprintln!("[{:>6}] n{id} -> {c:?}", self.now);
        }
        match c {
            Command::Persist { id: w, entries } => {
                let due = self.io_due(i, false);
                self.nodes[i].io.push_back((due, Io::Append(w, entries)));
            }
            Command::Truncate { id: w, after_zxid } => {
                self.stats.truncations += 1;
                let due = self.io_due(i, false);
                self.nodes[i]
                    .io
                    .push_back((due, Io::Truncate(w, after_zxid)));
            }
            Command::InstallSnapshot { id: w, zxid, state } => {
                self.stats.snapshots_sent += 1;
                let Some(t) = Tree::decode(&state) else {
                    return self.fail("snapshot bytes do not decode".into());
                };
                self.check_state(i, zxid, t)?;
                self.nodes[i].tree = t;
                let due = self.io_due(i, false);
                self.nodes[i].io.push_back((due, Io::Install(w, zxid, t)));
            }
            Command::PersistEpoch(rec) => {
                let due = self.io_due(i, true);
                self.nodes[i].epoch_io.push_back((due, Io::Epoch(rec)));
            }
            Command::Send { to, msg } => {
                if self.rng.gen_bool(self.p.loss) {
                    return Ok(());
                }
                let copies = if self.rng.gen_bool(self.p.dup) { 2 } else { 1 };
                for _ in 0..copies {
                    let at = self.now + self.rng.gen_range(1..=self.p.max_delay);
                    let key = (at, self.rng.gen());
                    self.net.insert(
                        key,
                        Msg {
                            from: id,
                            to,
                            msg: msg.clone(),
                        },
                    );
                }
            }
            Command::Apply { zxid, payload } => self.apply(i, zxid, payload)?,
            Command::TakeSnapshotForPeer { peer } => {
                let at = self.now + self.rng.gen_range(1..=TICK);
                self.snapshot_requests.push((at, i, peer));
            }
            Command::RoleChanged(Role::Leading { epoch }) => {
                if let Some(&other) = self.leaders.get(&epoch) {
                    if other != id {
                        return self.fail(format!(
                            "two established leaders in epoch {epoch}: n{other} and n{id}"
                        ));
                    }
                }
                self.leaders.insert(epoch, id);
            }
            Command::RoleChanged(_) => {}
        }
        Ok(())
    }

    /// A snapshot installed on member `i` must be a state of the canonical sequence, and not
    /// older than what the member already applied.
    fn check_state(&self, i: usize, zxid: i64, t: Tree) -> SimResult<()> {
        if t.last != zxid {
            return self.fail(format!("snapshot labelled {zxid:#x} holds {:#x}", t.last));
        }
        if t.count > 0 {
            let Some(c) = self.canonical.get(t.count as usize - 1) else {
                return self.fail("snapshot beyond the canonical sequence".into());
            };
            if (c.0, c.2) != (t.last, t.hash) {
                return self.fail("snapshot is not a state of the canonical sequence".into());
            }
        }
        let cur = self.nodes[i].tree;
        if t.count < cur.count || (t.count == cur.count && t != cur) {
            return self.fail(format!(
                "n{} installs a snapshot older than its state",
                self.nodes[i].id
            ));
        }
        Ok(())
    }

    fn apply(&mut self, i: usize, zxid: i64, payload: Bytes) -> SimResult<()> {
        let tree = self.nodes[i].tree;
        let id = self.nodes[i].id;
        if zxid <= tree.last {
            return self.fail(format!(
                "n{id} applies {zxid:#x} after {:#x} (not increasing)",
                tree.last
            ));
        }
        let hash = tree.chain(zxid, &payload);
        let idx = tree.count as usize;
        match self.canonical.get(idx) {
            Some(c) if c.0 == zxid && c.1 == payload && c.2 == hash => {}
            Some(c) => {
                return self.fail(format!(
                "n{id} applies {zxid:#x} {:?} at position {idx}, where others applied {:#x} {:?}",
                payload, c.0, c.1
            ))
            }
            None => self.canonical.push((zxid, payload.clone(), hash)),
        }
        self.nodes[i].tree = Tree {
            count: tree.count + 1,
            last: zxid,
            hash,
        };
        let leading = matches!(
            self.nodes[i].core.as_ref().map(|c| c.role()),
            Some(Role::Leading { .. })
        );
        if leading {
            self.stats.client_acked += 1;
        }
        Ok(())
    }

    fn complete_io(&mut self, i: usize) -> SimResult<()> {
        loop {
            let front = |q: &VecDeque<(u64, Io)>| q.front().map_or(u64::MAX, |x| x.0);
            let (log_due, epoch_due) = (front(&self.nodes[i].io), front(&self.nodes[i].epoch_io));
            if log_due.min(epoch_due) > self.now {
                break;
            }
            let q = if log_due <= epoch_due {
                &mut self.nodes[i].io
            } else {
                &mut self.nodes[i].epoch_io
            };
            let Some((_, io)) = q.pop_front() else {
                break;
            };
            let n = &mut self.nodes[i];
            let event = match io {
                Io::Append(w, entries) => {
                    let last = n.disk.log.last().map_or(n.disk.snap_zxid, |e| e.zxid);
                    for e in entries {
                        if e.zxid <= n.disk.snap_zxid {
                            continue; // already in the local snapshot
                        }
                        if e.zxid <= last {
                            return self.fail(format!("append of {:#x} after {last:#x}", e.zxid));
                        }
                        n.disk.log.push(e);
                    }
                    Event::Persisted { up_to: w }
                }
                Io::Truncate(w, after) => {
                    n.disk.log.retain(|e| e.zxid <= after);
                    Event::Persisted { up_to: w }
                }
                Io::Install(w, zxid, t) => {
                    n.disk.snap_zxid = zxid;
                    n.disk.snap = t;
                    n.disk.log.clear();
                    Event::Persisted { up_to: w }
                }
                Io::Epoch(rec) => {
                    match rec {
                        EpochRecord::Accepted(a) => n.disk.accepted = a,
                        EpochRecord::Current(e) => n.disk.current = e,
                    }
                    Event::EpochPersisted(rec)
                }
            };
            // Group commit: a log write followed by another one that is also done may go
            // unreported; the later report covers it.
            let covered = matches!(event, Event::Persisted { .. })
                && self.nodes[i].io.front().is_some_and(|x| x.0 <= self.now)
                && self.rng.gen_bool(0.5);
            if !covered {
                self.step(i, event, false)?;
            }
        }
        Ok(())
    }

    fn crash(&mut self, i: usize, down_ticks: u64) {
        let n = &mut self.nodes[i];
        if n.core.is_none() {
            return;
        }
        n.core = None;
        // A write in progress may be torn: a prefix of its entries reached the disk.
        if let Some((_, Io::Append(_, entries))) = n.io.front() {
            let keep = self.rng.gen_range(0..=entries.len());
            let last = n.disk.log.last().map_or(n.disk.snap_zxid, |e| e.zxid);
            for e in &entries[..keep] {
                if e.zxid > last && e.zxid > n.disk.snap_zxid {
                    n.disk.log.push(e.clone());
                }
            }
        }
        n.io.clear();
        n.epoch_io.clear();
        self.snapshot_requests.retain(|r| r.1 != i);
        self.stats.crashes += 1;
        n.up_at = self.now + down_ticks * TICK;
        self.log(|| format!("crash n{}", self.nodes[i].id));
    }

    fn restart(&mut self, i: usize) -> SimResult<()> {
        let n = &mut self.nodes[i];
        n.incarnation += 1;
        n.tree = n.disk.snap;
        let state = PersistentState {
            accepted: n.disk.accepted,
            current_epoch: n.disk.current,
            snapshot_zxid: n.disk.snap_zxid,
            log: n.disk.log.clone(),
        };
        match Zab::new(n.cfg.clone(), state, n.incarnation) {
            Ok(core) => n.core = Some(core),
            Err(e) => return self.fail(format!("restart from disk failed: {e}")),
        }
        self.log(|| format!("restart n{}", self.nodes[i].id));
        Ok(())
    }

    /// The toy election for member `i` (which is looking): follow a reachable member that is
    /// leading, else the reachable voter with the highest (current epoch, last zxid, id) if a
    /// quorum of voters is reachable and looking. Sometimes it just picks anyone.
    fn elect(&mut self, i: usize) -> SimResult<()> {
        let me = self.nodes[i].id;
        let observer = self.nodes[i].cfg.observers.contains(&me);
        let reachable: Vec<usize> = (0..self.nodes.len())
            .filter(|&j| self.nodes[j].core.is_some() && self.connected(me, self.nodes[j].id))
            .filter(|&j| self.nodes[j].cfg.voters.contains(&self.nodes[j].id))
            .collect();
        let follow = |leader: PeerId| {
            if observer {
                Event::BecomeObserver { leader }
            } else if leader == me {
                Event::BecomeLeader { epoch_hint: None }
            } else {
                Event::BecomeFollower { leader }
            }
        };
        if !reachable.is_empty() && self.rng.gen_bool(self.p.chaos) {
            let j = reachable[self.rng.gen_range(0..reachable.len())];
            let leader = self.nodes[j].id;
            if !(observer && leader == me) {
                let ev = follow(leader);
                return self.step(i, ev, false);
            }
        }
        let leading = reachable.iter().copied().find(|&j| {
            self.nodes[j]
                .core
                .as_ref()
                .is_some_and(|c| c.is_leading() && self.nodes[j].id != me)
        });
        if let Some(j) = leading {
            let ev = follow(self.nodes[j].id);
            return self.step(i, ev, false);
        }
        let looking: Vec<usize> = reachable
            .iter()
            .copied()
            .filter(|&j| self.nodes[j].core.as_ref().is_some_and(|c| c.is_looking()))
            .collect();
        let quorum = self.nodes[i].cfg.voters.len() / 2 + 1;
        if looking.len() < quorum {
            return Ok(());
        }
        let best = looking
            .iter()
            .copied()
            .max_by_key(|&j| {
                let c = self.nodes[j].core.as_ref();
                (
                    c.map_or(0, |c| c.current_epoch()),
                    c.map_or(0, |c| c.last_zxid()),
                    self.nodes[j].id,
                )
            })
            .map(|j| self.nodes[j].id);
        if let Some(leader) = best {
            if !(observer && leader == me) {
                let ev = follow(leader);
                return self.step(i, ev, false);
            }
        }
        Ok(())
    }

    fn on_tick(&mut self) -> SimResult<()> {
        let tick = self.now / TICK;
        // Faults.
        if self.faults {
            for i in 0..self.nodes.len() {
                if self.rng.gen_bool(self.p.crash) {
                    let down = self.rng.gen_range(1..60);
                    self.crash(i, down);
                }
            }
            if self.rng.gen_bool(0.002) {
                self.stats.total_crashes += 1;
                let down = self.rng.gen_range(1..30);
                for i in 0..self.nodes.len() {
                    self.crash(i, down);
                }
            }
            if self.rng.gen_bool(self.p.flip) {
                self.flip()?;
            }
            if self.partition.0.is_empty() && self.rng.gen_bool(self.p.partition) {
                let side: BTreeSet<PeerId> = self
                    .nodes
                    .iter()
                    .map(|n| n.id)
                    .filter(|_| self.rng.gen_bool(0.5))
                    .collect();
                let until = self.now + self.rng.gen_range(5..80) * TICK;
                self.log(|| format!("partition {side:?}"));
                self.stats.partitions += 1;
                self.partition = (side, until);
            }
        }
        if !self.partition.0.is_empty() && (self.now >= self.partition.1 || !self.faults) {
            self.partition.0.clear();
            self.log(|| "partition healed".into());
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].core.is_none() && (self.now >= self.nodes[i].up_at || !self.faults) {
                self.restart(i)?;
            }
        }
        // Clocks, elections, compaction.
        for i in 0..self.nodes.len() {
            self.step(i, Event::Tick, false)?;
            let looking = self.nodes[i].core.as_ref().is_some_and(|c| c.is_looking());
            if looking && tick % 2 == i as u64 % 2 {
                self.elect(i)?;
            }
            if self.rng.gen_bool(0.05) {
                self.compact(i)?;
            }
        }
        // Clients.
        for i in 0..self.nodes.len() {
            let Some(core) = self.nodes[i].core.as_mut() else {
                continue;
            };
            if matches!(core.role(), Role::Leading { .. }) && self.rng.gen_bool(self.p.propose) {
                self.next_payload += 1;
                let payload = Bytes::from(format!("p{}", self.next_payload));
                let r = core.propose(payload).map(|_| ());
                self.after(i, r, false)?;
            }
        }
        Ok(())
    }

    /// A confused election: a random voter is told to lead, or to follow a random other voter,
    /// whatever it is doing now.
    fn flip(&mut self) -> SimResult<()> {
        let voters: Vec<usize> = (0..self.nodes.len())
            .filter(|&j| self.nodes[j].cfg.voters.contains(&self.nodes[j].id))
            .collect();
        let i = voters[self.rng.gen_range(0..voters.len())];
        let leader = self.nodes[voters[self.rng.gen_range(0..voters.len())]].id;
        let ev = if leader == self.nodes[i].id {
            Event::BecomeLeader { epoch_hint: None }
        } else {
            Event::BecomeFollower { leader }
        };
        self.log(|| format!("flip n{}", self.nodes[i].id));
        self.stats.flips += 1;
        self.step(i, ev, false)
    }

    /// A local snapshot of the applied state, after which the log before it is forgotten.
    fn compact(&mut self, i: usize) -> SimResult<()> {
        let n = &mut self.nodes[i];
        if n.core.is_none() || n.tree.count < n.disk.snap.count + 8 {
            return Ok(());
        }
        n.disk.snap = n.tree;
        n.disk.snap_zxid = n.tree.last;
        let z = n.tree.last;
        n.disk.log.retain(|e| e.zxid > z);
        self.step(i, Event::Compacted { up_to_zxid: z }, false)
    }

    fn deliver(&mut self) -> SimResult<()> {
        while let Some(entry) = self.net.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let m = entry.remove();
            if !self.connected(m.from, m.to) {
                continue;
            }
            let Some(i) = self.nodes.iter().position(|n| n.id == m.to) else {
                continue;
            };
            let garbled = self.rng.gen_bool(self.p.garble);
            self.stats.garbled += u64::from(garbled);
            let msg = if garbled {
                ZabMessage { body: None }
            } else {
                m.msg
            };
            self.step(i, Event::Message { from: m.from, msg }, garbled)?;
        }
        let due: Vec<(u64, usize, PeerId)> = self
            .snapshot_requests
            .iter()
            .copied()
            .filter(|r| r.0 <= self.now)
            .collect();
        self.snapshot_requests.retain(|r| r.0 > self.now);
        for (_, i, peer) in due {
            let t = self.nodes[i].tree;
            if self.nodes[i].core.is_some() {
                self.step(
                    i,
                    Event::SnapshotReady {
                        peer,
                        zxid: t.last,
                        state: t.encode(),
                    },
                    false,
                )?;
            }
        }
        Ok(())
    }

    fn advance(&mut self) -> SimResult<()> {
        self.now += 1;
        self.deliver()?;
        for i in 0..self.nodes.len() {
            if self.nodes[i].core.is_some() {
                self.complete_io(i)?;
            }
        }
        if self.now % TICK == 0 {
            self.on_tick()?;
        }
        Ok(())
    }

    /// Everyone up, one established leader, everyone synced with it, all committed everywhere.
    fn converged(&self) -> bool {
        let Some(leader) = self.nodes.iter().find(|n| {
            matches!(
                n.core.as_ref().map(|c| c.role()),
                Some(Role::Leading { .. })
            )
        }) else {
            return false;
        };
        let Some(lc) = leader.core.as_ref() else {
            return false;
        };
        if lc.last_committed() != lc.last_zxid()
            || leader.tree.count as usize != self.canonical.len()
        {
            return false;
        }
        self.nodes.iter().all(|n| {
            n.tree == leader.tree
                && matches!(
                    n.core.as_ref().map(|c| c.role()),
                    Some(Role::Leading { .. } | Role::Following { .. } | Role::Observing { .. })
                )
        })
    }

    fn run(&mut self) -> SimResult<()> {
        let faulty_ticks = self.rng.gen_range(200..3000);
        self.stats.faulty_ticks = faulty_ticks;
        let heal_ticks = 400;
        for _ in 0..faulty_ticks * TICK {
            self.advance()?;
        }
        // Heal: no more faults, a reliable network, everyone restarted; clients stop soon.
        self.faults = false;
        self.p.loss = 0.0;
        self.p.dup = 0.0;
        self.p.garble = 0.0;
        self.p.chaos = 0.0;
        for t in 0..heal_ticks * TICK {
            if t == 20 * TICK {
                self.p.propose = 0.0;
            }
            self.advance()?;
            if t > 20 * TICK && self.now % TICK == 0 && self.converged() {
                return Ok(());
            }
        }
        let states: Vec<String> = self
            .nodes
            .iter()
            .map(|n| {
                format!(
                    "n{}: {:?} applied {} last {:#x}",
                    n.id,
                    n.core.as_ref().map(|c| c.role()),
                    n.tree.count,
                    n.core.as_ref().map_or(0, |c| c.last_zxid())
                )
            })
            .collect();
        self.fail(format!(
            "no convergence after healing ({} canonical): {}",
            self.canonical.len(),
            states.join("; ")
        ))
    }
}

fn run_seed(seed: u64) -> SimResult<Stats> {
    let mut w = World::new(seed);
    w.run()?;
    let mut stats = w.stats;
    stats.committed = w.canonical.len() as u64;
    stats.epochs = w.leaders.len() as u64;
    Ok(stats)
}

#[test]
fn simulation_seeds() {
    if let Some(seed) = std::env::var("CORRAL_SIM_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        match run_seed(seed) {
            Ok(r) => eprintln!("seed {seed}: ok {r:?}"),
            Err(e) => panic!("{e}\nreplay: CORRAL_SIM_SEED={seed} cargo test sim"),
        }
        return;
    }
    let seeds: u64 = std::env::var("CORRAL_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    let results: Vec<(Stats, Vec<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let (mut total, mut failures) = (Stats::default(), Vec::new());
                    let mut seed = t;
                    while seed < seeds {
                        match run_seed(seed) {
                            Ok(st) => total.add(&st),
                            Err(e) => failures.push(e),
                        }
                        seed += threads;
                    }
                    (total, failures)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or((Stats::default(), vec!["simulation thread panicked".into()]))
            })
            .collect()
    });
    let mut total = Stats::default();
    for r in &results {
        total.add(&r.0);
    }
    let failures: Vec<&String> = results.iter().flat_map(|r| r.1.iter()).collect();
    eprintln!(
        "simulated {seeds} seeds, {} failures: {total:?}",
        failures.len()
    );
    if !failures.is_empty() {
        for f in failures.iter().take(10) {
            eprintln!("{f}");
        }
        panic!(
            "{} of {seeds} seeds failed; replay one with CORRAL_SIM_SEED=<seed> (add \
             CORRAL_SIM_TRACE=1 for its events)",
            failures.len()
        );
    }
}
