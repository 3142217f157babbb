//! Crash tests: the server is killed with SIGKILL while clients write, restarted on the same
//! data directory, and a fresh client checks that nothing acknowledged was lost, that nothing
//! was half applied, and that zxids never go backwards. Also: sessions and ephemerals across a
//! kill, a torn log tail, a corrupt record, and kills around a log segment roll.
//!
//! The random choices (kill moments, workload mix, data, where the log is damaged) come from a
//! seeded RNG; the seed is printed and can be fixed with `CORRAL_CRASH_SEED=<n>`. The number of
//! kill/restart rounds of the main test is `CORRAL_CRASH_ROUNDS` (default 15).
//!
//! Bookkeeping: every write a client sent is recorded as *acked* (its reply arrived),
//! *unknown* (the connection died before the reply) or, once a verification has seen that it
//! did not happen, *lost* (it must never appear). After each restart the verifier checks the
//! tree against that record and then resolves every unknown write to what it saw: a read reply
//! is only sent once the state it shows is durable, so what the verifier saw must survive the
//! next crash too.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;
use zookeeper_client as zk;

// ---------------------------------------------------------------------------------------------
// Configuration and small helpers
// ---------------------------------------------------------------------------------------------

const ROOT: &str = "/crash";
const CREATES: &str = "/crash/c";
/// Parent of sequential nodes: their names come from the parent's cversion.
const SEQS: &str = "/crash/s";
const MULTIS: &str = "/crash/m";
const MARKERS: &str = "/crash/mk";
const COUNTERS: &str = "/crash/ctr";
const N_COUNTERS: usize = 4;
const MARKER_INITIAL: &[u8] = b"none";
const COUNTER_INITIAL: &[u8] = b"0";

/// The seed of a test: `CORRAL_CRASH_SEED`, or a fresh random one. Printed either way.
fn test_seed(test: &str) -> u64 {
    let seed = match std::env::var("CORRAL_CRASH_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("CORRAL_CRASH_SEED={s:?} is not a u64")),
        Err(_) => rand::random(),
    };
    println!("{test}: seed {seed} (rerun with CORRAL_CRASH_SEED={seed})");
    seed
}

fn rounds() -> u32 {
    match std::env::var("CORRAL_CRASH_ROUNDS") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("CORRAL_CRASH_ROUNDS={s:?} is not a number")),
        Err(_) => 15,
    }
}

/// The `Zxid:` line of `srvr`.
fn srvr_zxid(server: &Server) -> i64 {
    let out = server.four_letter("srvr");
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("Zxid:"))
        .unwrap_or_else(|| panic!("no Zxid line in srvr output:\n{out}"));
    let hex = line.trim().trim_start_matches("0x");
    i64::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("bad Zxid line {line:?}"))
}

fn kill_and_restart_blocking(server: &mut Server) {
    tokio::task::block_in_place(|| {
        server.kill9();
        server.restart();
    });
}

/// Starts the server's binary on its data directory and SIGKILLs it after `after`, whatever
/// it is doing by then (replaying the log, cutting a torn tail, serving). The server must be
/// stopped when this is called. Returns what it logged.
fn interrupted_start(server: &Server, after: Duration) -> String {
    let log = server.dir().join("interrupted-start.log");
    let out = fs::File::create(&log).unwrap();
    let mut child = Command::new(corral_bin())
        .arg("server")
        .arg(server.cfg_path())
        .current_dir(server.dir())
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("spawn corral");
    std::thread::sleep(after);
    let _ = child.kill();
    let _ = child.wait();
    fs::read_to_string(&log).unwrap_or_default()
}

fn restart_blocking(server: &mut Server) {
    tokio::task::block_in_place(|| server.restart());
}

fn counter_path(i: usize) -> String {
    format!("{COUNTERS}/k{i}")
}

fn hex(z: Option<i64>) -> String {
    z.map_or("?".to_string(), |z| format!("{z:#x}"))
}

/// The sequence number of a sequential node (its last ten digits).
fn seq_of(path: &str) -> i64 {
    path[path.len() - 10..]
        .parse()
        .unwrap_or_else(|_| panic!("{path} is not a sequential node"))
}

fn name_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap()
}

/// Errors that say something about the request itself (as opposed to the connection): none of
/// them may happen in this workload, so they are reported as failures.
fn is_semantic_error(e: &zk::Error) -> bool {
    matches!(
        e,
        zk::Error::NoNode
            | zk::Error::NodeExists
            | zk::Error::BadVersion
            | zk::Error::NotEmpty
            | zk::Error::NoAuth
            | zk::Error::NotReadOnly
            | zk::Error::MarshallingError
            | zk::Error::Unimplemented
            | zk::Error::BadArguments(_)
            | zk::Error::InvalidAcl
            | zk::Error::NoChildrenForEphemerals
    )
}

/// getData of many paths in as few round trips as possible (multiRead). `None`: no node.
async fn get_many(client: &zk::Client, paths: &[String]) -> Vec<Option<(Vec<u8>, zk::Stat)>> {
    get_many_by(client, paths, 256).await
}

/// [`get_many`] with `per_request` reads per multiRead (big nodes: keep replies small).
async fn get_many_by(
    client: &zk::Client,
    paths: &[String],
    per_request: usize,
) -> Vec<Option<(Vec<u8>, zk::Stat)>> {
    let mut out = Vec::with_capacity(paths.len());
    for chunk in paths.chunks(per_request) {
        let mut reader = client.new_multi_reader();
        for p in chunk {
            reader.add_get_data(p).unwrap();
        }
        let results = within("multiRead of verified nodes", reader.commit())
            .await
            .expect("multiRead");
        assert_eq!(results.len(), chunk.len(), "multiRead result count");
        for (p, r) in chunk.iter().zip(results) {
            out.push(match r {
                zk::MultiReadResult::Data { data, stat } => Some((data, stat)),
                zk::MultiReadResult::Error {
                    err: zk::Error::NoNode,
                } => None,
                other => panic!("multiRead getData {p}: unexpected {other:?}"),
            });
        }
    }
    out
}

async fn list(client: &zk::Client, path: &str) -> HashSet<String> {
    within("getChildren", client.list_children(path))
        .await
        .unwrap_or_else(|e| panic!("getChildren {path}: {e}"))
        .into_iter()
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The write-ahead log on disk (only what the tests need to find and damage records)
// ---------------------------------------------------------------------------------------------

const SEGMENT_HEADER: usize = 32;
const FRAME_HEADER: usize = 16;

#[derive(Clone, Copy, Debug)]
struct Record {
    start: usize,
    end: usize,
    zxid: i64,
}

fn log_dir(server: &Server) -> PathBuf {
    server.data_dir().join("corral-v1")
}

/// The newest `log.*` segment.
fn newest_segment(dir: &Path) -> PathBuf {
    let mut segs: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("log.") && n.len() == 20)
        })
        .collect();
    segs.sort();
    segs.pop()
        .unwrap_or_else(|| panic!("no log segment in {}", dir.display()))
}

/// The valid records of a segment, in order, and where its non-zero bytes end.
fn parse_segment(bytes: &[u8]) -> (Vec<Record>, usize) {
    assert!(
        bytes.len() >= SEGMENT_HEADER && &bytes[..8] == b"CRLWAL\0\0",
        "not a Corral log segment (bad magic)"
    );
    let mut records = Vec::new();
    let mut at = SEGMENT_HEADER;
    while at + FRAME_HEADER <= bytes.len() {
        let header = &bytes[at..at + FRAME_HEADER];
        if header.iter().all(|&b| b == 0) {
            break;
        }
        let len = u32::from_le_bytes(header[0..4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(header[4..8].try_into().unwrap());
        let zxid = i64::from_le_bytes(header[8..16].try_into().unwrap());
        let end = at + FRAME_HEADER + len;
        if end > bytes.len() {
            break;
        }
        let want = crc32c::crc32c_append(crc32c::crc32c(&header[8..16]), &bytes[at + 16..end]);
        if want != crc {
            break;
        }
        records.push(Record {
            start: at,
            end,
            zxid,
        });
        at = end;
    }
    let data_end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    (records, data_end)
}

// ---------------------------------------------------------------------------------------------
// The ledger: what clients were told, and what verification has established
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    /// The reply arrived: the write happened (and is durable).
    Acked,
    /// The connection died first: it may or may not have happened.
    Unknown,
    /// A verification saw that it did not happen: it must never appear.
    Lost,
}

/// Three-valued "did it happen": `Some(true)`, `Some(false)`, `None` (either).
type Tri = Option<bool>;

fn tri_and_not(a: Tri, b: Tri) -> Tri {
    match (a, b) {
        (Some(false), _) | (_, Some(true)) => Some(false),
        (Some(true), Some(false)) => Some(true),
        _ => None,
    }
}

/// Whether a write with state `st` and zxid `zxid` must have survived, given that the log was
/// cut at `cut` (everything from that zxid on is gone).
fn applied(st: St, zxid: Option<i64>, cut: Option<i64>) -> Tri {
    match st {
        St::Acked => match (cut, zxid) {
            (None, _) => Some(true),
            (Some(c), Some(z)) => Some(z < c),
            (Some(_), None) => None,
        },
        St::Unknown => None,
        St::Lost => Some(false),
    }
}

#[derive(Debug)]
struct CreateRec {
    data: Vec<u8>,
    st: St,
    czxid: Option<i64>,
    delete: Option<St>,
}

#[derive(Debug)]
struct MultiRec {
    marker: String,
    seq: u64,
    nodes: Vec<(String, Vec<u8>)>,
    st: St,
    zxid: Option<i64>,
}

#[derive(Debug)]
struct CounterRec {
    path: String,
    /// (version, data, mzxid) states some client was shown (setData replies, reads).
    observed: Vec<(i32, Vec<u8>, i64)>,
    /// Every payload ever sent to it.
    attempted: HashSet<Vec<u8>>,
    /// Version at the last verification, and setData attempts since.
    verified_version: i32,
    attempts_since: i32,
}

#[derive(Default)]
struct Ledger {
    creates: BTreeMap<String, CreateRec>,
    multis: Vec<MultiRec>,
    /// marker path -> indexes into `multis`, in seq order.
    markers: BTreeMap<String, Vec<usize>>,
    counters: Vec<CounterRec>,
    sessions: HashSet<i64>,
    /// Data of sequential creates whose reply never came (so their name is unknown), and of
    /// those a verification found absent (they must never appear).
    unknown_seq: HashSet<Vec<u8>>,
    lost_seq: HashSet<Vec<u8>>,
    /// Highest sequence number a client was given or a verification saw (the parent's
    /// cversion is at least this, so the next sequential create must get a higher one).
    max_seq: i64,
    /// Highest zxid any client was shown (acknowledged replies, verified reads).
    max_zxid: i64,
    acked: u64,
    unknown: u64,
}

impl Ledger {
    fn new() -> Self {
        Ledger {
            counters: (0..N_COUNTERS)
                .map(|i| CounterRec {
                    path: counter_path(i),
                    observed: Vec::new(),
                    attempted: HashSet::from([COUNTER_INITIAL.to_vec()]),
                    verified_version: 0,
                    attempts_since: 0,
                })
                .collect(),
            // No sequence number has been handed out yet: the first sequential create may
            // get 0.
            max_seq: -1,
            ..Default::default()
        }
    }

    fn count(&mut self, st: St) {
        match st {
            St::Acked => self.acked += 1,
            St::Unknown => self.unknown += 1,
            St::Lost => {}
        }
    }

    fn absorb(&mut self, log: WorkerLog, failures: &mut Vec<String>) {
        if let Some(sid) = log.session_id {
            if !self.sessions.insert(sid) {
                failures.push(format!("session id 0x{sid:x} was handed out twice"));
            }
        }
        failures.extend(log.errors);
        for op in log.ops {
            match op {
                Op::Create {
                    path,
                    data,
                    st,
                    czxid,
                } => {
                    self.count(st);
                    if let Some(z) = czxid {
                        self.max_zxid = self.max_zxid.max(z);
                    }
                    self.creates.insert(
                        path,
                        CreateRec {
                            data,
                            st,
                            czxid,
                            delete: None,
                        },
                    );
                }
                Op::SeqCreate {
                    path: None,
                    data,
                    st,
                    ..
                } => {
                    self.count(st);
                    self.unknown_seq.insert(data);
                }
                Op::SeqCreate {
                    path: Some(path),
                    data,
                    st,
                    czxid,
                } => {
                    self.count(st);
                    self.max_seq = self.max_seq.max(seq_of(&path));
                    if let Some(z) = czxid {
                        self.max_zxid = self.max_zxid.max(z);
                    }
                    self.creates.insert(
                        path,
                        CreateRec {
                            data,
                            st,
                            czxid,
                            delete: None,
                        },
                    );
                }
                Op::Delete { path, st } => {
                    self.count(st);
                    self.creates.get_mut(&path).unwrap().delete = Some(st);
                }
                Op::Set {
                    counter,
                    data,
                    st,
                    stat,
                } => {
                    self.count(st);
                    let c = &mut self.counters[counter];
                    c.attempted.insert(data.clone());
                    c.attempts_since += 1;
                    if let Some((version, mzxid)) = stat {
                        self.max_zxid = self.max_zxid.max(mzxid);
                        c.observed.push((version, data, mzxid));
                    }
                }
                Op::Read {
                    counter,
                    version,
                    data,
                    mzxid,
                } => {
                    self.max_zxid = self.max_zxid.max(mzxid);
                    self.counters[counter].observed.push((version, data, mzxid));
                }
                Op::Multi {
                    marker,
                    seq,
                    nodes,
                    st,
                    zxid,
                } => {
                    self.count(st);
                    if let Some(z) = zxid {
                        self.max_zxid = self.max_zxid.max(z);
                    }
                    self.markers
                        .entry(marker.clone())
                        .or_default()
                        .push(self.multis.len());
                    self.multis.push(MultiRec {
                        marker,
                        seq,
                        nodes,
                        st,
                        zxid,
                    });
                }
            }
        }
    }

    /// Checks the server's tree against the ledger, then resolves every write to what was seen.
    /// `cut`: the log was cut at this zxid on purpose (torn-tail test), so acknowledged writes
    /// from it on must be gone and those before it must be there.
    async fn verify(&mut self, client: &zk::Client, cut: Option<i64>) -> Vec<String> {
        let mut fail = Vec::new();
        let mut seen_max = 0i64;
        let mut seen_seq = -1i64;

        // ---- Creates and deletes ----
        let mut children = HashSet::new();
        for parent in [CREATES, SEQS] {
            children.extend(
                list(client, parent)
                    .await
                    .into_iter()
                    .map(|n| format!("{parent}/{n}")),
            );
        }
        // Nodes the ledger does not know, and sequential names it knows only as lost (after a
        // cut, the server hands out those sequence numbers again).
        let strangers: Vec<String> = children
            .iter()
            .filter(|p| match self.creates.get(*p) {
                None => true,
                Some(rec) => p.starts_with(SEQS) && rec.st == St::Lost,
            })
            .cloned()
            .collect();
        for (path, got) in strangers.iter().zip(get_many(client, &strangers).await) {
            let data = got.map(|(d, _)| d).unwrap_or_default();
            if path.starts_with(SEQS) && self.unknown_seq.remove(&data) {
                // A sequential create whose reply was lost: now we know its name.
                self.creates.insert(
                    path.clone(),
                    CreateRec {
                        data,
                        st: St::Unknown,
                        czxid: None,
                        delete: None,
                    },
                );
            } else if self.creates.contains_key(path) {
                // A lost name back with other data: reported below.
            } else if self.lost_seq.contains(&data) {
                fail.push(format!(
                    "{path}: a sequential create that an earlier verification found absent \
                     appeared"
                ));
            } else {
                fail.push(format!("{path} exists but no client ever created it"));
            }
        }
        self.lost_seq.extend(self.unknown_seq.drain());
        let mut present = Vec::new();
        for (path, rec) in &self.creates {
            let created = applied(rec.st, rec.czxid, cut);
            let deleted = match rec.delete {
                None | Some(St::Lost) => Some(false),
                Some(St::Acked) if cut.is_none() => Some(true),
                Some(_) => None,
            };
            let expect = tri_and_not(created, deleted);
            let is = children.contains(path);
            match (expect, is) {
                (Some(true), false) => fail.push(format!(
                    "{path}: create ({:?}, czxid {}, delete {:?}) is missing",
                    rec.st,
                    hex(rec.czxid),
                    rec.delete
                )),
                (Some(false), true) => fail.push(format!(
                    "{path}: exists but create is {:?} (czxid {}) and delete {:?}",
                    rec.st,
                    hex(rec.czxid),
                    rec.delete
                )),
                _ => {}
            }
            if is {
                present.push(path.clone());
            }
        }
        let big = self.creates.values().any(|r| r.data.len() > 4096);
        let got = get_many_by(client, &present, if big { 2 } else { 256 }).await;
        for (path, g) in present.iter().zip(got) {
            let rec = self.creates.get_mut(path).unwrap();
            let Some((data, stat)) = g else {
                fail.push(format!("{path}: listed but getData says no node"));
                continue;
            };
            if data != rec.data {
                fail.push(format!(
                    "{path}: data is {} bytes {:?}..., created with {} bytes {:?}...",
                    data.len(),
                    &data[..data.len().min(16)],
                    rec.data.len(),
                    &rec.data[..rec.data.len().min(16)]
                ));
            }
            if let Some(z) = rec.czxid {
                if stat.czxid != z {
                    fail.push(format!(
                        "{path}: czxid {:#x}, but the create reply said {z:#x}",
                        stat.czxid
                    ));
                }
            }
            if stat.version != 0 {
                fail.push(format!("{path}: version {} (never set)", stat.version));
            }
            seen_max = seen_max.max(stat.czxid).max(stat.mzxid);
            if path.starts_with(SEQS) {
                seen_seq = seen_seq.max(seq_of(path));
            }
            // Resolve: it exists, so it was created and not deleted.
            rec.st = St::Acked;
            rec.czxid = Some(stat.czxid);
            rec.delete = None;
        }
        for (path, rec) in self.creates.iter_mut() {
            if !children.contains(path) {
                // Gone for good (never created, or created and deleted): must stay absent.
                rec.st = St::Lost;
                rec.delete = None;
            }
        }

        // ---- Multis: all or nothing, and the markers agree ----
        let mchildren = list(client, MULTIS).await;
        let known: HashSet<&str> = self
            .multis
            .iter()
            .flat_map(|m| m.nodes.iter().map(|(p, _)| name_of(p)))
            .collect();
        for name in &mchildren {
            if !known.contains(name.as_str()) {
                fail.push(format!("{MULTIS}/{name} exists but no multi created it"));
            }
        }
        let mut multi_present = vec![false; self.multis.len()];
        let mut mpaths = Vec::new();
        for (i, m) in self.multis.iter().enumerate() {
            let n = m
                .nodes
                .iter()
                .filter(|(p, _)| mchildren.contains(name_of(p)))
                .count();
            if n != 0 && n != m.nodes.len() {
                fail.push(format!(
                    "multi {}#{} ({:?}) partially applied: {n} of {} nodes exist",
                    m.marker,
                    m.seq,
                    m.st,
                    m.nodes.len()
                ));
            }
            let is = n == m.nodes.len();
            match (applied(m.st, m.zxid, cut), is) {
                (Some(true), false) => fail.push(format!(
                    "multi {}#{} ({:?}, zxid {}) is missing",
                    m.marker,
                    m.seq,
                    m.st,
                    hex(m.zxid)
                )),
                (Some(false), true) => fail.push(format!(
                    "multi {}#{} ({:?}, zxid {}) must not exist but does",
                    m.marker,
                    m.seq,
                    m.st,
                    hex(m.zxid)
                )),
                _ => {}
            }
            multi_present[i] = is;
            if is {
                mpaths.extend(m.nodes.iter().map(|(p, _)| p.clone()));
            }
        }
        let mgot: HashMap<String, Option<(Vec<u8>, zk::Stat)>> = mpaths
            .iter()
            .cloned()
            .zip(get_many(client, &mpaths).await)
            .collect();
        for (i, m) in self.multis.iter_mut().enumerate() {
            if !multi_present[i] {
                m.st = St::Lost;
                continue;
            }
            let mut zxids = HashSet::new();
            for (p, want) in &m.nodes {
                match &mgot[p] {
                    None => fail.push(format!("{p}: listed but getData says no node")),
                    Some((data, stat)) => {
                        if data != want {
                            fail.push(format!("{p}: data differs from what the multi wrote"));
                        }
                        zxids.insert(stat.czxid);
                        seen_max = seen_max.max(stat.czxid);
                    }
                }
            }
            if zxids.len() > 1 {
                fail.push(format!(
                    "multi {}#{}: its nodes have different czxids {zxids:x?}",
                    m.marker, m.seq
                ));
            }
            if let (Some(z), Some(&got)) = (m.zxid, zxids.iter().next()) {
                if got != z {
                    fail.push(format!(
                        "multi {}#{}: czxid {got:#x}, but the reply said {z:#x}",
                        m.marker, m.seq
                    ));
                }
            }
            m.st = St::Acked;
            m.zxid = zxids.into_iter().next();
        }
        let marker_paths: Vec<String> = self.markers.keys().cloned().collect();
        let marker_got = get_many(client, &marker_paths).await;
        for (path, got) in marker_paths.iter().zip(marker_got) {
            let Some((data, stat)) = got else {
                fail.push(format!("marker {path} is missing"));
                continue;
            };
            seen_max = seen_max.max(stat.mzxid);
            let applied: Vec<&MultiRec> = self.markers[path]
                .iter()
                .filter(|&&i| multi_present[i])
                .map(|&i| &self.multis[i])
                .collect();
            let want_data = applied
                .last()
                .map_or(MARKER_INITIAL.to_vec(), |m| m.seq.to_string().into_bytes());
            if stat.version as usize != applied.len() || data != want_data {
                fail.push(format!(
                    "marker {path}: version {} data {:?}, but {} of its multis are applied \
                     (last {:?}): multis not atomic",
                    stat.version,
                    String::from_utf8_lossy(&data),
                    applied.len(),
                    String::from_utf8_lossy(&want_data)
                ));
            }
        }

        // ---- Counters ----
        let cpaths: Vec<String> = self.counters.iter().map(|c| c.path.clone()).collect();
        let cgot = get_many(client, &cpaths).await;
        for (c, got) in self.counters.iter_mut().zip(cgot) {
            let Some((data, stat)) = got else {
                fail.push(format!("counter {} is missing", c.path));
                continue;
            };
            let path = &c.path;
            let v = stat.version;
            seen_max = seen_max.max(stat.mzxid);
            let survives = |mzxid: i64| cut.is_none_or(|cut| mzxid < cut);
            if let Some(max) = c
                .observed
                .iter()
                .filter(|o| survives(o.2))
                .map(|o| o.0)
                .max()
            {
                if v < max {
                    fail.push(format!(
                        "counter {path}: version {v}, but version {max} was acknowledged"
                    ));
                }
            }
            if let Some(min_lost) = c
                .observed
                .iter()
                .filter(|o| !survives(o.2))
                .map(|o| o.0)
                .min()
            {
                if v >= min_lost {
                    fail.push(format!(
                        "counter {path}: version {v}, but version {min_lost} was cut from the log"
                    ));
                }
            }
            if let Some(cut) = cut {
                if stat.mzxid >= cut {
                    fail.push(format!(
                        "counter {path}: mzxid {:#x} is at or after the cut {cut:#x}",
                        stat.mzxid
                    ));
                }
            }
            if v > c.verified_version + c.attempts_since {
                fail.push(format!(
                    "counter {path}: version {v}, but it was at {} and only {} setData were sent \
                     since (a transaction applied twice?)",
                    c.verified_version, c.attempts_since
                ));
            }
            for (ov, odata, omzxid) in c.observed.iter().filter(|o| survives(o.2)) {
                if *ov == v && (*odata != data || *omzxid != stat.mzxid) {
                    fail.push(format!(
                        "counter {path}: version {v} has data {:?} mzxid {:#x}, a client was \
                         shown {:?} mzxid {omzxid:#x}",
                        String::from_utf8_lossy(&data),
                        stat.mzxid,
                        String::from_utf8_lossy(odata)
                    ));
                }
            }
            if !c.attempted.contains(&data) {
                fail.push(format!(
                    "counter {path}: data {:?} was never written by anyone",
                    String::from_utf8_lossy(&data)
                ));
            }
            c.observed = vec![(v, data, stat.mzxid)];
            c.verified_version = v;
            c.attempts_since = 0;
        }

        // What the verifier read is durable too; with a cut, older maxima may be gone.
        (self.max_zxid, self.max_seq) = match cut {
            None => (self.max_zxid.max(seen_max), self.max_seq.max(seen_seq)),
            Some(_) => (seen_max, seen_seq),
        };
        fail
    }

    /// After a verification: a new write gets a zxid above everything any client has seen.
    async fn probe(&mut self, client: &zk::Client, tag: &str) -> Vec<String> {
        let path = format!("{CREATES}/probe-{tag}");
        let data = format!("probe {tag}").into_bytes();
        let (stat, _) = within("probe create", client.create(&path, &data, &persistent()))
            .await
            .unwrap_or_else(|e| panic!("probe create {path}: {e}"));
        let mut fail = Vec::new();
        if stat.czxid <= self.max_zxid {
            fail.push(format!(
                "zxid went backwards: a new create got czxid {:#x}, but clients had already \
                 seen {:#x}",
                stat.czxid, self.max_zxid
            ));
        }
        self.max_zxid = self.max_zxid.max(stat.czxid);
        self.creates.insert(
            path,
            CreateRec {
                data,
                st: St::Acked,
                czxid: Some(stat.czxid),
                delete: None,
            },
        );
        let data = format!("seq probe {tag}").into_bytes();
        let (stat, seq) = within(
            "probe sequential create",
            client.create(
                &format!("{SEQS}/p-"),
                &data,
                &mode(zk::CreateMode::PersistentSequential),
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("probe sequential create: {e}"));
        let seq = seq.into_i64();
        if seq <= self.max_seq {
            fail.push(format!(
                "sequence number reused: a new sequential node got {seq}, but {} was already \
                 handed out (the parent's cversion went backwards)",
                self.max_seq
            ));
        }
        self.max_seq = self.max_seq.max(seq);
        self.creates.insert(
            format!("{SEQS}/p-{seq:010}"),
            CreateRec {
                data,
                st: St::Acked,
                czxid: Some(stat.czxid),
                delete: None,
            },
        );
        fail
    }
}

// ---------------------------------------------------------------------------------------------
// The writers
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
enum Op {
    Create {
        path: String,
        data: Vec<u8>,
        st: St,
        czxid: Option<i64>,
    },
    /// `path`: `None` when the reply never came.
    SeqCreate {
        path: Option<String>,
        data: Vec<u8>,
        st: St,
        czxid: Option<i64>,
    },
    Delete {
        path: String,
        st: St,
    },
    Set {
        counter: usize,
        data: Vec<u8>,
        st: St,
        stat: Option<(i32, i64)>,
    },
    Read {
        counter: usize,
        version: i32,
        data: Vec<u8>,
        mzxid: i64,
    },
    Multi {
        marker: String,
        seq: u64,
        nodes: Vec<(String, Vec<u8>)>,
        st: St,
        zxid: Option<i64>,
    },
}

#[derive(Default, Debug)]
struct WorkerLog {
    session_id: Option<i64>,
    ops: Vec<Op>,
    errors: Vec<String>,
}

fn marker_path(round: u32, w: u32) -> String {
    format!("{MARKERS}/r{round}w{w}")
}

/// Runs `fut` unless `stop` fires first. `None`: stopped with the request in flight.
async fn unless_stopped<T>(
    stop: &mut watch::Receiver<bool>,
    fut: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        r = fut => Some(r),
        _ = stop.changed() => None,
    }
}

/// One writer: its own session (through `addr`, a proxy), one request at a time, until a
/// request fails or `stop` is set. The write in flight at that moment has an unknown outcome.
async fn writer(
    addr: String,
    round: u32,
    w: u32,
    seed: u64,
    big: bool,
    mut stop: watch::Receiver<bool>,
) -> WorkerLog {
    let mut log = WorkerLog::default();
    let mut rng = StdRng::seed_from_u64(seed);
    let connect = zk::Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .with_fail_eagerly()
        .connect(&addr);
    let client = match unless_stopped(&mut stop, connect).await {
        Some(Ok(c)) => c,
        _ => return log,
    };
    log.session_id = Some(client.session_id().0);
    let marker = marker_path(round, w);
    let mut mine: Vec<String> = Vec::new();
    let mut seq = 0u64;
    // Classifies a failed request: a connection failure ends the writer with the outcome
    // unknown; anything else is a bug.
    fn failed(log: &mut WorkerLog, what: &str, e: &zk::Error) -> St {
        if is_semantic_error(e) {
            log.errors.push(format!("{what}: unexpected error {e}"));
        }
        St::Unknown
    }
    while !*stop.borrow() {
        seq += 1;
        let tag = format!("r{round}w{w}s{seq}");
        let pick = rng.gen_range(0..100);
        let done = match pick {
            0..=9 => {
                let data = format!("seq {tag}").into_bytes();
                let r = unless_stopped(
                    &mut stop,
                    client.create(
                        &format!("{SEQS}/s-"),
                        &data,
                        &mode(zk::CreateMode::PersistentSequential),
                    ),
                )
                .await;
                let (st, path, czxid, end) = match r {
                    Some(Ok((stat, seq))) => {
                        let path = format!("{SEQS}/s-{:010}", seq.into_i64());
                        mine.push(path.clone());
                        (St::Acked, Some(path), Some(stat.czxid), false)
                    }
                    Some(Err(e)) => (failed(&mut log, "sequential create", &e), None, None, true),
                    None => (St::Unknown, None, None, true),
                };
                log.ops.push(Op::SeqCreate {
                    path,
                    data,
                    st,
                    czxid,
                });
                end
            }
            10..=34 => {
                let path = format!("{CREATES}/{tag}");
                let len = if big {
                    rng.gen_range(64 << 10..256 << 10)
                } else {
                    rng.gen_range(1..400)
                };
                let data: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
                let r = unless_stopped(&mut stop, client.create(&path, &data, &persistent())).await;
                let (st, czxid, end) = match r {
                    Some(Ok((stat, _))) => (St::Acked, Some(stat.czxid), false),
                    Some(Err(e)) => (failed(&mut log, &format!("create {path}"), &e), None, true),
                    None => (St::Unknown, None, true),
                };
                if st == St::Acked {
                    mine.push(path.clone());
                }
                log.ops.push(Op::Create {
                    path,
                    data,
                    st,
                    czxid,
                });
                end
            }
            35..=49 if !mine.is_empty() => {
                let path = mine.swap_remove(rng.gen_range(0..mine.len()));
                let r = unless_stopped(&mut stop, client.delete(&path, Some(0))).await;
                let (st, end) = match r {
                    Some(Ok(())) => (St::Acked, false),
                    Some(Err(e)) => (failed(&mut log, &format!("delete {path}"), &e), true),
                    None => (St::Unknown, true),
                };
                log.ops.push(Op::Delete { path, st });
                end
            }
            35..=69 => {
                let counter = rng.gen_range(0..N_COUNTERS);
                let data = tag.clone().into_bytes();
                let r = unless_stopped(
                    &mut stop,
                    client.set_data(&counter_path(counter), &data, None),
                )
                .await;
                let (st, stat, end) = match r {
                    Some(Ok(s)) => (St::Acked, Some((s.version, s.mzxid)), false),
                    Some(Err(e)) => (failed(&mut log, "setData", &e), None, true),
                    None => (St::Unknown, None, true),
                };
                log.ops.push(Op::Set {
                    counter,
                    data,
                    st,
                    stat,
                });
                end
            }
            70..=84 => {
                let n = rng.gen_range(1..=4);
                let nodes: Vec<(String, Vec<u8>)> = (0..n)
                    .map(|i| {
                        let len = rng.gen_range(1..200);
                        (
                            format!("{MULTIS}/{tag}n{i}"),
                            (0..len).map(|_| rng.gen()).collect(),
                        )
                    })
                    .collect();
                let mut mw = client.new_multi_writer();
                for (p, d) in &nodes {
                    mw.add_create(p, d, &persistent()).unwrap();
                }
                mw.add_set_data(&marker, seq.to_string().as_bytes(), None)
                    .unwrap();
                let r = unless_stopped(&mut stop, mw.commit()).await;
                let (st, zxid, end) = match r {
                    Some(Ok(results)) => match results.first() {
                        Some(zk::MultiWriteResult::Create { stat, .. })
                            if results.len() == n + 1 =>
                        {
                            (St::Acked, Some(stat.czxid), false)
                        }
                        _ => {
                            log.errors
                                .push(format!("multi {tag}: unexpected results {results:?}"));
                            (St::Acked, None, true)
                        }
                    },
                    Some(Err(zk::MultiWriteError::RequestFailed { source })) => (
                        failed(&mut log, &format!("multi {tag}"), &source),
                        None,
                        true,
                    ),
                    Some(Err(e)) => {
                        log.errors
                            .push(format!("multi {tag}: unexpected error {e}"));
                        (St::Unknown, None, true)
                    }
                    None => (St::Unknown, None, true),
                };
                log.ops.push(Op::Multi {
                    marker: marker.clone(),
                    seq,
                    nodes,
                    st,
                    zxid,
                });
                end
            }
            _ => {
                let counter = rng.gen_range(0..N_COUNTERS);
                match unless_stopped(&mut stop, client.get_data(&counter_path(counter))).await {
                    Some(Ok((data, stat))) => {
                        log.ops.push(Op::Read {
                            counter,
                            version: stat.version,
                            data,
                            mzxid: stat.mzxid,
                        });
                        false
                    }
                    Some(Err(e)) => {
                        failed(&mut log, "getData", &e);
                        true
                    }
                    None => true,
                }
            }
        };
        if done {
            break;
        }
    }
    log
}

const WRITERS: u32 = 6;

/// Creates the fixed nodes of the workload.
async fn setup(client: &zk::Client) {
    for p in [ROOT, CREATES, SEQS, MULTIS, MARKERS, COUNTERS] {
        client.create(p, b"", &persistent()).await.unwrap();
    }
    for i in 0..N_COUNTERS {
        client
            .create(&counter_path(i), COUNTER_INITIAL, &persistent())
            .await
            .unwrap();
    }
}

/// One round: writers through a fresh proxy, SIGKILL after `kill_after`, writers collected.
/// The proxy is closed before returning, so no stray client request can reach the next server.
async fn write_and_kill(
    server: &mut Server,
    client: &zk::Client,
    round: u32,
    seed: u64,
    kill_after: Duration,
    big: bool,
    ledger: &mut Ledger,
) -> Vec<String> {
    for w in 0..WRITERS {
        within(
            "create marker",
            client.create(&marker_path(round, w), MARKER_INITIAL, &persistent()),
        )
        .await
        .unwrap();
    }
    let proxy = Proxy::start(&server.addr()).await;
    let (stop_tx, stop_rx) = watch::channel(false);
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            tokio::spawn(writer(
                proxy.addr(),
                round,
                w,
                seed ^ (u64::from(round) << 32) ^ u64::from(w).wrapping_mul(0x9e37_79b9),
                big,
                stop_rx.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(kill_after).await;
    tokio::task::block_in_place(|| server.kill9());
    proxy.block();
    proxy.cut();
    stop_tx.send(true).unwrap();
    let mut failures = Vec::new();
    for t in tasks {
        let log = within("writer to stop", t).await.expect("writer task");
        ledger.absorb(log, &mut failures);
    }
    drop(proxy);
    failures
}

fn report(failures: &[String], seed: u64, round: impl std::fmt::Display) {
    if failures.is_empty() {
        return;
    }
    let shown: Vec<&str> = failures.iter().take(40).map(|s| s.as_str()).collect();
    panic!(
        "seed {seed}, {round}: {} durability violations:\n  {}{}",
        failures.len(),
        shown.join("\n  "),
        if failures.len() > shown.len() {
            "\n  ..."
        } else {
            ""
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_rounds_keep_every_acknowledged_write() {
    if !is_corral() {
        return; // a Corral data directory and restart semantics
    }
    let seed = test_seed("kill9_rounds_keep_every_acknowledged_write");
    let rounds = rounds();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut server = ServerBuilder::new().start();
    let mut ledger = Ledger::new();
    {
        let c = server.client().await;
        setup(&c).await;
    }
    let started = Instant::now();
    for round in 1..=rounds {
        // Mostly mid-stream kills; sometimes right away, while sessions are being set up.
        let kill_after = if rng.gen_bool(0.15) {
            Duration::from_millis(rng.gen_range(0..40))
        } else {
            Duration::from_millis(rng.gen_range(100..900))
        };
        let (acked0, unknown0) = (ledger.acked, ledger.unknown);
        let mut failures = {
            let c = server.client().await;
            write_and_kill(&mut server, &c, round, seed, kill_after, false, &mut ledger).await
        };
        let interrupted = rng
            .gen_bool(0.25)
            .then(|| Duration::from_millis(rng.gen_range(0..400)));
        if let Some(after) = interrupted {
            tokio::task::block_in_place(|| interrupted_start(&server, after));
        }
        let t = Instant::now();
        restart_blocking(&mut server);
        let restart_ms = t.elapsed().as_millis();
        let log = server.log_contents();
        let recovery = log
            .lines()
            .find(|l| l.contains("data loaded"))
            .unwrap_or("")
            .to_string();
        let zxid = srvr_zxid(&server);
        if zxid < ledger.max_zxid {
            failures.push(format!(
                "srvr Zxid {zxid:#x} after restart is below {:#x}, the highest zxid in an \
                 acknowledged reply",
                ledger.max_zxid
            ));
        }
        let t = Instant::now();
        let c = server.client().await;
        failures.extend(ledger.verify(&c, None).await);
        failures.extend(ledger.probe(&c, &format!("r{round}")).await);
        drop(c);
        println!(
            "round {round:2}: kill after {:4} ms: {:5} acked, {} unknown;{} restart {restart_ms} ms, \
             verify {} ms ({} nodes), zxid {zxid:#x}, seq {}",
            kill_after.as_millis(),
            ledger.acked - acked0,
            ledger.unknown - unknown0,
            interrupted.map_or(String::new(), |d| format!(
                " start-up killed after {} ms;",
                d.as_millis()
            )),
            t.elapsed().as_millis(),
            ledger.creates.len(),
            ledger.max_seq,
        );
        println!("          {recovery}");
        report(&failures, seed, format!("round {round}"));
    }
    println!(
        "{rounds} rounds in {:.1} s: {} writes acknowledged, {} unknown, all verified",
        started.elapsed().as_secs_f64(),
        ledger.acked,
        ledger.unknown
    );
    assert!(
        rounds == 0 || ledger.acked > 0,
        "no write was ever acknowledged: the test exercised nothing"
    );
}

/// A torn final write (the file cut inside the last records, or their tail sectors left as
/// zeros) is cut off at start-up: the server starts, warns, and serves exactly the prefix of
/// the log before the damaged record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_log_tail_is_cut_and_the_rest_served() {
    if !is_corral() {
        return;
    }
    let seed = test_seed("torn_log_tail_is_cut_and_the_rest_served");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut server = ServerBuilder::new().start();
    let mut ledger = Ledger::new();
    let c = server.client().await;
    setup(&c).await;
    let kill_after = Duration::from_millis(rng.gen_range(600..1200));
    let failures = write_and_kill(&mut server, &c, 1, seed, kill_after, false, &mut ledger).await;
    drop(c);
    report(&failures, seed, "writes before the kill");
    assert!(ledger.acked > 0, "no write acknowledged before the kill");

    // Damage the tail of the newest segment.
    let seg = newest_segment(&log_dir(&server));
    let mut bytes = fs::read(&seg).unwrap();
    let (records, data_end) = parse_segment(&bytes);
    assert!(
        records.len() > 30,
        "expected a busy log, found {} records",
        records.len()
    );
    let last_few = records.len() - 20..records.len();
    // Variant 1: the last sectors never reached the disk (zeros from a 512-byte boundary that
    // falls inside a record). Variant 2: the file ends inside a record.
    let straddling: Vec<(usize, usize)> = last_few
        .clone()
        .filter_map(|i| {
            let r = records[i];
            let b = (r.start / 512 + 1) * 512;
            (b < r.end).then_some((i, b))
        })
        .collect();
    let zero_variant = !straddling.is_empty() && rng.gen_bool(0.5);
    let torn_index = if zero_variant {
        let (i, boundary) = straddling[rng.gen_range(0..straddling.len())];
        bytes[boundary..data_end].fill(0);
        fs::write(&seg, &bytes).unwrap();
        println!(
            "zeroed {} bytes from sector boundary {boundary} (inside record {i} of {}, zxid \
             {:#x}) in {}",
            data_end - boundary,
            records.len(),
            records[i].zxid,
            seg.display()
        );
        i
    } else {
        let i = rng.gen_range(last_few);
        let r = records[i];
        let at = rng.gen_range(r.start + 1..r.end);
        let f = fs::OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(at as u64).unwrap();
        println!(
            "cut {} at byte {at} (inside record {i} of {}, zxid {:#x}, bytes {}..{})",
            seg.display(),
            records.len(),
            r.zxid,
            r.start,
            r.end
        );
        i
    };
    drop(bytes);
    let cut = records[torn_index].zxid;
    let prev = records[torn_index - 1].zxid;

    // Crash during recovery too (while it cuts the tail, or just after): no difference after.
    let mut log = String::new();
    for _ in 0..rng.gen_range(0..3) {
        let after = Duration::from_millis(rng.gen_range(0..400));
        println!("start-up killed after {} ms", after.as_millis());
        log += &tokio::task::block_in_place(|| interrupted_start(&server, after));
    }
    restart_blocking(&mut server);
    log += &server.log_contents();
    assert!(
        log.to_lowercase().contains("torn"),
        "the server should warn about the torn tail it cut off; log:\n{log}"
    );
    let zxid = srvr_zxid(&server);
    assert!(
        zxid >= prev,
        "srvr Zxid {zxid:#x} is below {prev:#x}, the last intact record"
    );
    let c = server.client().await;
    let mut failures = ledger.verify(&c, Some(cut)).await;
    failures.extend(ledger.probe(&c, "after-torn").await);
    drop(c);
    report(
        &failures,
        seed,
        format!("after cutting the log at {cut:#x}"),
    );

    // The repaired log takes new records and replays them after another crash.
    let c = server.client().await;
    let kill_after = Duration::from_millis(rng.gen_range(200..600));
    let mut failures =
        write_and_kill(&mut server, &c, 2, seed, kill_after, false, &mut ledger).await;
    drop(c);
    restart_blocking(&mut server);
    let c = server.client().await;
    failures.extend(ledger.verify(&c, None).await);
    failures.extend(ledger.probe(&c, "after-torn-2").await);
    report(&failures, seed, "crash after the torn-tail repair");
    println!(
        "torn tail: {} acked, {} unknown writes verified",
        ledger.acked, ledger.unknown
    );
}

/// A flipped byte in the middle of an early record is corruption, not a torn tail: the server
/// refuses to start, names the file and offset, and leaves the log as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_record_refuses_to_start() {
    if !is_corral() {
        return;
    }
    let seed = test_seed("corrupt_record_refuses_to_start");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut server = ServerBuilder::new().start();
    let c = server.client().await;
    const N: usize = 200;
    for i in 0..N {
        c.create(&format!("/n{i}"), format!("v{i}").as_bytes(), &persistent())
            .await
            .unwrap();
    }
    drop(c);
    tokio::task::block_in_place(|| server.kill9());

    let seg = newest_segment(&log_dir(&server));
    let mut bytes = fs::read(&seg).unwrap();
    let (records, data_end) = parse_segment(&bytes);
    assert!(records.len() >= N, "found only {} records", records.len());
    let i = rng.gen_range(2..12);
    let r = records[i];
    let pos = r.start + FRAME_HEADER + (r.end - r.start - FRAME_HEADER) / 2;
    let original = bytes[pos];
    bytes[pos] ^= 0xff;
    fs::write(&seg, &bytes).unwrap();
    let name = seg.file_name().unwrap().to_str().unwrap().to_string();
    println!(
        "flipped byte {pos} of {name} (record {i}, bytes {}..{})",
        r.start, r.end
    );

    let (status, out) = tokio::task::block_in_place(|| {
        run_with_deadline(
            Command::new(corral_bin())
                .arg("server")
                .arg(server.cfg_path())
                .current_dir(server.dir()),
        )
    });
    assert!(
        !status.success(),
        "the server started on a corrupt log ({status}); output:\n{out}"
    );
    let offset = r.start.to_string();
    let names_both = out.lines().any(|l| {
        l.contains(&name)
            && l.split(|ch: char| !ch.is_ascii_digit())
                .any(|t| t == offset)
    });
    assert!(
        names_both,
        "the error should name {name} and the damaged record's offset {offset}; output:\n{out}"
    );
    let after = fs::read(&seg).unwrap();
    assert!(
        after[..data_end] == bytes[..data_end],
        "refusing to start must not change the log"
    );
    drop(after);

    // Undo the damage: everything is there again.
    bytes[pos] = original;
    fs::write(&seg, &bytes).unwrap();
    drop(bytes);
    restart_blocking(&mut server);
    let c = server.client().await;
    let paths: Vec<String> = (0..N).map(|i| format!("/n{i}")).collect();
    for (i, got) in get_many(&c, &paths).await.into_iter().enumerate() {
        let (data, _) = got.unwrap_or_else(|| panic!("/n{i} lost"));
        assert_eq!(data, format!("v{i}").as_bytes());
    }
}

/// The log rolls to a new 64 MiB segment under kills: ballast (big setData on one node) fills
/// most of the first segment, then writers with big nodes push it over while the server is
/// killed at random moments before, around and after the roll; every restart replays both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_roll_survives_kill9() {
    if !is_corral() {
        return;
    }
    let seed = test_seed("segment_roll_survives_kill9");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut server = ServerBuilder::new().start();
    let mut ledger = Ledger::new();
    const BALLAST: &str = "/crash/ballast";
    const BALLAST_WRITES: i32 = 64;
    let ballast: Vec<u8> = (0..900_000).map(|_| rng.gen()).collect();
    {
        let c = server.client().await;
        setup(&c).await;
        c.create(BALLAST, b"", &persistent()).await.unwrap();
        for i in 0..BALLAST_WRITES {
            let mut data = ballast.clone();
            data[..4].copy_from_slice(&i.to_le_bytes());
            c.set_data(BALLAST, &data, None).await.unwrap();
        }
    }
    let segments = |server: &Server| {
        fs::read_dir(log_dir(server))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("log.")
            })
            .count()
    };
    let mut rounds_after_roll = 0;
    for round in 1..=30 {
        let kill_after = Duration::from_millis(rng.gen_range(100..1000));
        let mut failures = {
            let c = server.client().await;
            write_and_kill(&mut server, &c, round, seed, kill_after, true, &mut ledger).await
        };
        if rng.gen_bool(0.3) {
            let after = Duration::from_millis(rng.gen_range(0..400));
            tokio::task::block_in_place(|| interrupted_start(&server, after));
        }
        restart_blocking(&mut server);
        let zxid = srvr_zxid(&server);
        if zxid < ledger.max_zxid {
            failures.push(format!(
                "srvr Zxid {zxid:#x} after restart is below {:#x}, the highest acknowledged",
                ledger.max_zxid
            ));
        }
        let c = server.client().await;
        failures.extend(ledger.verify(&c, None).await);
        failures.extend(ledger.probe(&c, &format!("r{round}")).await);
        drop(c);
        let n = segments(&server);
        println!(
            "roll round {round}: kill after {} ms, {} acked so far, {n} segment(s)",
            kill_after.as_millis(),
            ledger.acked
        );
        report(&failures, seed, format!("roll round {round}"));
        if n >= 2 {
            rounds_after_roll += 1;
            if rounds_after_roll >= 2 {
                break;
            }
        }
    }
    assert!(
        rounds_after_roll >= 2,
        "the log never rolled to a second segment"
    );
    let c = server.client().await;
    let (data, stat) = c.get_data(BALLAST).await.unwrap();
    assert_eq!(stat.version, BALLAST_WRITES, "ballast setData lost");
    assert!(data[4..] == ballast[4..] && data[..4] == (BALLAST_WRITES - 1).to_le_bytes());
}

/// Sessions live in the log: after kill -9 a client that reconnects within its timeout keeps
/// its session and ephemerals; one that never comes back expires after the restart, and that
/// expiry is durable too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_ephemerals_survive_kill9() {
    if !is_corral() {
        return;
    }
    let mut server = ServerBuilder::fast_sessions().start();
    let a = server.client_with_timeout(Duration::from_secs(10)).await;
    let a_id = a.session_id();
    a.create("/eph-a", b"a", &ephemeral()).await.unwrap();
    // B reaches the server only through a proxy that goes away with the server.
    let proxy = Proxy::start(&server.addr()).await;
    let b = zk::Client::connector()
        .with_session_timeout(Duration::from_millis(3000))
        .connect(&proxy.addr())
        .await
        .unwrap();
    let b_id = b.session_id();
    assert_eq!(b.session_timeout(), Duration::from_millis(3000));
    b.create("/eph-b", b"b", &ephemeral()).await.unwrap();

    tokio::task::block_in_place(|| server.kill9());
    drop(proxy);
    // Taken before the new process exists: its session clock cannot have started earlier.
    let restarted = Instant::now();
    restart_blocking(&mut server);

    let obs = server.client().await;
    let st_b = obs.check_stat("/eph-b").await.unwrap();
    if restarted.elapsed() < Duration::from_millis(2000) {
        let st_b = st_b.expect("B's ephemeral vanished at restart, before B's session timed out");
        assert_eq!(st_b.ephemeral_owner, b_id.0);
    }
    let st_a = obs
        .check_stat("/eph-a")
        .await
        .unwrap()
        .expect("/eph-a lost");
    assert_eq!(st_a.ephemeral_owner, a_id.0);

    // A reconnects on its own, to the same session, and still owns its ephemeral.
    let st = poll_until_async("A to reconnect after the restart", || async {
        a.check_stat("/eph-a").await.ok().flatten()
    })
    .await;
    assert_eq!(a.session_id(), a_id, "A got a new session");
    assert_eq!(st.ephemeral_owner, a_id.0);
    let (st2, _) = a.create("/eph-a2", b"a2", &ephemeral()).await.unwrap();
    assert_eq!(st2.ephemeral_owner, a_id.0);

    // B never comes back: its session expires, a full timeout after the restart.
    poll_until_async("B's ephemeral to go after B's session expired", || async {
        (obs.check_stat("/eph-b").await.unwrap().is_none()).then_some(())
    })
    .await;
    assert!(
        restarted.elapsed() >= Duration::from_millis(3000),
        "B's session (timeout 3 s) expired only {:?} after the restart",
        restarted.elapsed()
    );
    assert!(obs.check_stat("/eph-a").await.unwrap().is_some());
    drop(obs);

    // The expiry itself is durable; A survives a second crash as well.
    kill_and_restart_blocking(&mut server);
    let obs = server.client().await;
    assert_eq!(
        obs.check_stat("/eph-b").await.unwrap(),
        None,
        "B's expired ephemeral came back after a second restart"
    );
    for p in ["/eph-a", "/eph-a2"] {
        let st = obs
            .check_stat(p)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{p} lost"));
        assert_eq!(st.ephemeral_owner, a_id.0);
    }
    poll_until_async("A to reconnect after the second restart", || async {
        a.check_stat("/eph-a2").await.ok().flatten()
    })
    .await;
    assert_eq!(a.session_id(), a_id);
    // B's session cannot be resumed.
    let resumed = zk::Client::connector()
        .with_session(b.into_session())
        .with_session_timeout(Duration::from_millis(3000))
        .connect(&server.addr())
        .await;
    assert!(
        matches!(resumed, Err(zk::Error::SessionExpired)),
        "resuming B's expired session: {:?}",
        resumed.map(|c| c.session_id())
    );
}
