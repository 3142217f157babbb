//! Quorum-mode harness: an ensemble of real `corral server` processes on loopback.
//!
//! [`EnsembleBuilder`] lays out N voters (ids `1..=N`) and M observers (ids `N+1..=N+M`), each
//! with its own data directory (holding `myid`), its own config file and three ports (client,
//! quorum, election). [`EnsembleBuilder::build`] only writes the directories; a test may then
//! reroute some peer addresses of a member's config (to put a [`super::proxy::Proxy`] in the
//! way, see [`Ensemble::route_peer`]) before [`Ensemble::start_all`].
//!
//! Every wait is a poll with the generous [`DEADLINE`]; nothing sleeps for a condition. The
//! waits block the calling thread; called from a multi-threaded tokio runtime they go through
//! `block_in_place`, so the test's own tasks (writers, proxies, clients) keep running.
//!
//! [`Load`] runs concurrent writers that record which writes were acknowledged, and
//! [`verify_writes`] checks, on every member, that every acknowledged write is there with the
//! zxid it was acknowledged with (so every member applied it at the same position), that each
//! writer's writes are ordered as they were acknowledged, and that all members hold exactly the
//! same nodes.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use zookeeper_client as zk;

use super::{corral_bin, four_letter, persistent, target, Target, DEADLINE};

/// The answer of `srvr`/`stat` on a member that is not in an established role.
pub const NOT_SERVING: &str = "This ZooKeeper instance is not currently serving requests";

/// Run a blocking wait without starving the tokio runtime the test may be running on.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Poll `f` every 50 ms until it returns `Some`; panics naming `what` (and the last state
/// `describe` gives) after [`DEADLINE`].
fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>, describe: impl Fn() -> String) -> T {
    blocking(|| {
        let start = Instant::now();
        loop {
            if let Some(v) = f() {
                return v;
            }
            if start.elapsed() > DEADLINE {
                panic!("timed out waiting for: {what}\n{}", describe());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
}

/// Loopback ports for ensemble members, allocated below the kernel's ephemeral range (32768+)
/// so that no outgoing connection can take a port while its member is down, and handed out by
/// one counter so two ensembles of this test process never share one. Each candidate is bound
/// while the batch is collected, so a port some other process holds is skipped.
fn alloc_ports(n: usize) -> Vec<u16> {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    const LOW: u16 = 12_000;
    const SPAN: u16 = 20_000;
    if NEXT.load(Ordering::SeqCst) == 0 {
        // Different test binaries (and other runs) start at different places.
        let start = LOW + (std::process::id() % (SPAN as u32)) as u16;
        let _ = NEXT.compare_exchange(0, start, Ordering::SeqCst, Ordering::SeqCst);
    }
    let mut held: Vec<TcpListener> = Vec::new();
    let mut tries = 0;
    while held.len() < n {
        tries += 1;
        assert!(tries < 10_000, "no free loopback ports");
        let p = NEXT.fetch_add(1, Ordering::SeqCst);
        let p = LOW + (p.wrapping_sub(LOW)) % SPAN;
        if let Ok(l) = TcpListener::bind(("127.0.0.1", p)) {
            held.push(l);
        }
    }
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Voter,
    Observer,
}

#[derive(Clone, Debug)]
pub struct EnsembleBuilder {
    pub voters: usize,
    pub observers: usize,
    pub tick_time_ms: u32,
    pub init_limit: u32,
    pub sync_limit: u32,
    pub snap_count: Option<u32>,
    pub min_session_timeout_ms: Option<u32>,
    pub max_session_timeout_ms: u32,
    pub extra: Vec<String>,
}

impl EnsembleBuilder {
    pub fn new(voters: usize) -> Self {
        EnsembleBuilder {
            voters,
            observers: 0,
            tick_time_ms: 200,
            init_limit: 10,
            sync_limit: 5,
            snap_count: None,
            min_session_timeout_ms: None,
            // Clients of the load tests ask for 20 s so that no session expires while a
            // leader is re-elected; the expiry tests ask for short ones (min is 2 ticks).
            max_session_timeout_ms: 30_000,
            extra: Vec::new(),
        }
    }
    pub fn observers(mut self, m: usize) -> Self {
        self.observers = m;
        self
    }
    pub fn tick_time_ms(mut self, v: u32) -> Self {
        self.tick_time_ms = v;
        self
    }
    pub fn snap_count(mut self, v: u32) -> Self {
        self.snap_count = Some(v);
        self
    }
    pub fn min_session_timeout_ms(mut self, v: u32) -> Self {
        self.min_session_timeout_ms = Some(v);
        self
    }
    pub fn extra(mut self, line: &str) -> Self {
        self.extra.push(line.to_string());
        self
    }

    /// Allocates ports and writes each member's data dir and `myid`; starts nothing.
    pub fn build(self) -> Ensemble {
        let dir = tempfile::Builder::new()
            .prefix("corral-ens-")
            .tempdir()
            .expect("tempdir");
        let n = self.voters + self.observers;
        let ports = alloc_ports(3 * n);
        let members = (0..n)
            .map(|i| {
                let id = i as u64 + 1;
                let mdir = dir.path().join(format!("m{id}"));
                fs::create_dir_all(mdir.join("data")).unwrap();
                fs::write(mdir.join("data/myid"), format!("{id}\n")).unwrap();
                Member {
                    id,
                    role: if i < self.voters {
                        Role::Voter
                    } else {
                        Role::Observer
                    },
                    client_port: ports[3 * i],
                    quorum_port: ports[3 * i + 1],
                    election_port: ports[3 * i + 2],
                    dir: mdir,
                    routes: BTreeMap::new(),
                    child: None,
                    generation: 0,
                }
            })
            .collect();
        Ensemble {
            builder: self,
            members,
            dir,
        }
    }

    /// [`Self::build`], then [`Ensemble::start_all`].
    pub fn start(self) -> Ensemble {
        let mut e = self.build();
        e.start_all();
        e
    }
}

pub struct Member {
    pub id: u64,
    pub role: Role,
    pub client_port: u16,
    pub quorum_port: u16,
    pub election_port: u16,
    dir: PathBuf,
    /// Peer id -> (quorum address, election address) this member's config uses instead of
    /// the peer's real ones.
    routes: BTreeMap<u64, (String, String)>,
    child: Option<Child>,
    generation: u32,
}

impl Member {
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }
    pub fn quorum_addr(&self) -> String {
        format!("127.0.0.1:{}", self.quorum_port)
    }
    pub fn election_addr(&self) -> String {
        format!("127.0.0.1:{}", self.election_port)
    }
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
    pub fn cfg_path(&self) -> PathBuf {
        self.dir.join("zoo.cfg")
    }
    fn log_path(&self, generation: u32) -> PathBuf {
        self.dir.join(format!("server-{generation}.log"))
    }
    /// What the current (or last) process of this member wrote to stdout/stderr.
    pub fn log_contents(&self) -> String {
        fs::read_to_string(self.log_path(self.generation)).unwrap_or_default()
    }
    /// The logs of every process this member ran, oldest first.
    pub fn all_logs(&self) -> String {
        (0..=self.generation)
            .map(|g| fs::read_to_string(self.log_path(g)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("")
    }
    /// Send a four-letter word; `None` if the member does not answer (down).
    pub fn try_four_letter(&self, word: &str) -> Option<String> {
        four_letter(&self.addr(), word).ok()
    }
    /// Send a four-letter word and read the whole answer; panics if the member is down.
    pub fn four_letter(&self, word: &str) -> String {
        self.try_four_letter(word)
            .unwrap_or_else(|| panic!("member {} does not answer {word}", self.id))
    }
    /// `leader`, `follower` or `observer` from `srvr`; `None` when the member is down or
    /// answers that it is not serving.
    pub fn mode(&self) -> Option<String> {
        let out = self.try_four_letter("srvr")?;
        parse_mode(&out)
    }
    /// A `mntr` value (`zk_server_state`, `zk_synced_followers`...).
    pub fn mntr(&self, key: &str) -> Option<String> {
        let out = self.try_four_letter("mntr")?;
        out.lines().find_map(|l| {
            let (k, v) = l.split_once('\t')?;
            (k == key).then(|| v.trim().to_string())
        })
    }
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
}

/// `Mode: X` of a `srvr`/`stat` answer.
pub fn parse_mode(srvr: &str) -> Option<String> {
    if srvr.contains(NOT_SERVING) {
        return None;
    }
    srvr.lines()
        .find_map(|l| l.strip_prefix("Mode: "))
        .map(|m| m.trim().to_string())
}

pub struct Ensemble {
    pub builder: EnsembleBuilder,
    members: Vec<Member>,
    dir: tempfile::TempDir,
}

impl Ensemble {
    pub fn ids(&self) -> Vec<u64> {
        self.members.iter().map(|m| m.id).collect()
    }
    pub fn voter_ids(&self) -> Vec<u64> {
        self.members
            .iter()
            .filter(|m| m.role == Role::Voter)
            .map(|m| m.id)
            .collect()
    }
    pub fn observer_ids(&self) -> Vec<u64> {
        self.members
            .iter()
            .filter(|m| m.role == Role::Observer)
            .map(|m| m.id)
            .collect()
    }
    pub fn member(&self, id: u64) -> &Member {
        self.members
            .iter()
            .find(|m| m.id == id)
            .unwrap_or_else(|| panic!("no member {id}"))
    }
    fn member_mut(&mut self, id: u64) -> &mut Member {
        self.members
            .iter_mut()
            .find(|m| m.id == id)
            .unwrap_or_else(|| panic!("no member {id}"))
    }
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Make member `from` reach peer `to` at these quorum and election addresses (e.g. a
    /// proxy) instead of `to`'s real ones. Takes effect at `from`'s next start.
    pub fn route_peer(&mut self, from: u64, to: u64, quorum_addr: &str, election_addr: &str) {
        assert_ne!(from, to, "a member's own line must keep its real addresses");
        self.member(to);
        self.member_mut(from)
            .routes
            .insert(to, (quorum_addr.to_string(), election_addr.to_string()));
    }

    /// The config file of member `id`.
    pub fn cfg_text(&self, id: u64) -> String {
        let b = &self.builder;
        let me = self.member(id);
        let mut s = String::new();
        s += &format!("tickTime={}\n", b.tick_time_ms);
        s += &format!("initLimit={}\n", b.init_limit);
        s += &format!("syncLimit={}\n", b.sync_limit);
        s += &format!("dataDir={}\n", me.data_dir().display());
        s += "4lw.commands.whitelist=*\n";
        if let Some(v) = b.snap_count {
            s += &format!("snapCount={v}\n");
        }
        if let Some(v) = b.min_session_timeout_ms {
            s += &format!("minSessionTimeout={v}\n");
        }
        s += &format!("maxSessionTimeout={}\n", b.max_session_timeout_ms);
        for m in &self.members {
            let (q, e) = me
                .routes
                .get(&m.id)
                .cloned()
                .unwrap_or_else(|| (m.quorum_addr(), m.election_addr()));
            let role = match m.role {
                Role::Voter => "",
                Role::Observer => ":observer",
            };
            // host:quorumPort:electionPort[:observer];clientHost:clientPort (ZooKeeper 3.5+):
            // each member takes its client address from its own line.
            s += &format!("server.{}={q}:{}{role};{}\n", m.id, port_of(&e), m.addr());
        }
        for l in &b.extra {
            s += l;
            s += "\n";
        }
        s
    }

    /// Start every member that is not running, then wait for a leader and every member in a
    /// role ([`Self::wait_formed`]).
    pub fn start_all(&mut self) {
        for id in self.ids() {
            if !self.member_mut(id).is_running() {
                self.spawn(id);
            }
        }
        for id in self.ids() {
            self.wait_listening(id);
        }
        self.wait_formed();
    }

    /// Start member `id` and wait until its client port accepts connections (not until it
    /// serves: alone, it never will). See [`Self::wait_serving`].
    pub fn start(&mut self, id: u64) {
        assert!(
            !self.member_mut(id).is_running(),
            "member {id} is already running"
        );
        self.spawn(id);
        self.wait_listening(id);
    }

    /// SIGTERM member `id`, wait for it to exit (SIGKILL after 15 s).
    pub fn stop(&mut self, id: u64) {
        let m = self.member_mut(id);
        let Some(mut child) = m.child.take() else {
            return;
        };
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        blocking(|| {
            let start = Instant::now();
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                if start.elapsed() > Duration::from_secs(15) {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("member {id} ignored SIGTERM for 15 s");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
    }

    /// Empty member `id`'s data directory but for `myid` (a replaced disk). It must be down.
    pub fn wipe_data(&mut self, id: u64) {
        assert!(!self.is_running(id), "member {id} is running");
        let dir = self.member(id).data_dir();
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.file_name().is_some_and(|n| n == "myid") {
                continue;
            }
            if p.is_dir() {
                fs::remove_dir_all(&p).unwrap();
            } else {
                fs::remove_file(&p).unwrap();
            }
        }
    }

    /// SIGKILL member `id` and reap it.
    pub fn kill9(&mut self, id: u64) {
        if let Some(mut child) = self.member_mut(id).child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// [`Self::stop`] then [`Self::start`].
    pub fn restart(&mut self, id: u64) {
        self.stop(id);
        self.start(id);
    }

    fn spawn(&mut self, id: u64) {
        let cfg = self.cfg_text(id);
        let m = self.member_mut(id);
        if m.child.is_some() || m.log_path(m.generation).exists() {
            m.generation += 1;
        }
        fs::write(m.cfg_path(), cfg).unwrap();
        let log = File::create(m.log_path(m.generation)).unwrap();
        let mut cmd = match target() {
            Target::Corral => {
                let mut c = Command::new(corral_bin());
                c.arg("server").arg(m.cfg_path());
                c
            }
            Target::ZooKeeper => zookeeper_command(&m.cfg_path()),
        };
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .current_dir(&m.dir);
        // The server dies with the test process even if Drop never runs.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        m.child = Some(cmd.spawn().expect("spawn corral server"));
    }

    fn wait_listening(&mut self, id: u64) {
        let addr = self.member(id).addr();
        let start = Instant::now();
        blocking(|| loop {
            let m = self.member_mut(id);
            if !m.is_running() {
                let st = m.child.take().map(|mut c| c.wait().unwrap());
                panic!(
                    "member {id} exited during start-up ({st:?}); log:\n{}",
                    self.member(id).log_contents()
                );
            }
            if TcpStream::connect(&addr).is_ok() {
                return;
            }
            if start.elapsed() > DEADLINE {
                panic!(
                    "member {id} does not listen on {addr} after {DEADLINE:?}; log:\n{}",
                    self.member(id).log_contents()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        })
    }

    pub fn is_running(&mut self, id: u64) -> bool {
        self.member_mut(id).is_running()
    }

    /// Ids of members whose process is running.
    pub fn running(&mut self) -> Vec<u64> {
        self.ids()
            .into_iter()
            .filter(|&id| self.is_running(id))
            .collect()
    }

    /// `mode` of member `id` (see [`Member::mode`]).
    pub fn mode(&self, id: u64) -> Option<String> {
        self.member(id).mode()
    }

    /// Modes of every member, for messages.
    pub fn modes(&self) -> Vec<(u64, Option<String>)> {
        self.members.iter().map(|m| (m.id, m.mode())).collect()
    }

    /// Wait until member `id` serves in a role; returns the role.
    pub fn wait_serving(&self, id: u64) -> String {
        poll(
            &format!("member {id} to serve in a role"),
            || self.mode(id),
            || format!("modes: {:?}", self.modes()),
        )
    }

    /// Wait until member `id` says it is not serving (or is down).
    pub fn wait_not_serving(&self, id: u64) {
        poll(
            &format!("member {id} to stop serving"),
            || self.mode(id).is_none().then_some(()),
            || format!("modes: {:?}", self.modes()),
        )
    }

    /// Poll until exactly one of `ids` reports `leader` and every other one of them `follower`
    /// or `observer`; returns the leader's id.
    pub fn wait_leader_among(&self, ids: &[u64]) -> u64 {
        poll(
            &format!("one leader and every other one of {ids:?} following"),
            || {
                let modes: Vec<(u64, Option<String>)> =
                    ids.iter().map(|&id| (id, self.mode(id))).collect();
                let leaders: Vec<u64> = modes
                    .iter()
                    .filter(|(_, m)| m.as_deref() == Some("leader"))
                    .map(|(id, _)| *id)
                    .collect();
                let others_follow = modes
                    .iter()
                    .all(|(_, m)| matches!(m.as_deref(), Some("leader" | "follower" | "observer")));
                (leaders.len() == 1 && others_follow).then(|| leaders[0])
            },
            || format!("modes: {:?}", self.modes()),
        )
    }

    /// [`Self::wait_leader_among`] the running members.
    pub fn wait_leader(&mut self) -> u64 {
        let ids = self.running();
        self.wait_leader_among(&ids)
    }

    /// Wait until the running members have one leader and every other one is in sync with
    /// it: the leader's `mntr` counts every running voter (but itself) in
    /// `zk_synced_followers` and every running observer in `zk_synced_observers`. Returns
    /// the leader's id.
    pub fn wait_formed(&mut self) -> u64 {
        let ids = self.running();
        let voters = ids
            .iter()
            .filter(|&&id| self.member(id).role == Role::Voter)
            .count();
        let observers = ids.len() - voters;
        poll(
            &format!("an ensemble of {ids:?} with a leader and everybody in sync"),
            || {
                let leader = self.wait_leader_among(&ids);
                let m = self.member(leader);
                let f: usize = m.mntr("zk_synced_followers")?.parse().ok()?;
                let o: usize = m.mntr("zk_synced_observers")?.parse().ok()?;
                (f == voters - 1 && o == observers).then_some(leader)
            },
            || {
                format!(
                    "modes: {:?}; synced per leader: {:?}",
                    self.modes(),
                    self.members
                        .iter()
                        .filter(|m| m.mode().as_deref() == Some("leader"))
                        .map(|m| (
                            m.id,
                            m.mntr("zk_synced_followers"),
                            m.mntr("zk_synced_observers")
                        ))
                        .collect::<Vec<_>>()
                )
            },
        )
    }

    /// Wait until member `id`'s `mntr` has `key` = `value`.
    pub fn wait_mntr(&self, id: u64, key: &str, value: &str) {
        let m = self.member(id);
        poll(
            &format!("{key} = {value} in the mntr of member {id}"),
            || (m.mntr(key).as_deref() == Some(value)).then_some(()),
            || {
                format!(
                    "modes: {:?}; mntr of member {id}:\n{}",
                    self.modes(),
                    m.try_four_letter("mntr").unwrap_or_default()
                )
            },
        )
    }

    /// The connect string of every member.
    pub fn connect_string(&self) -> String {
        self.connect_string_of(&self.ids())
    }

    /// The connect string of these members.
    pub fn connect_string_of(&self, ids: &[u64]) -> String {
        ids.iter()
            .map(|&id| self.member(id).addr())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A session on member `id` only (10 s requested timeout).
    pub async fn client(&self, id: u64) -> zk::Client {
        connect(&self.member(id).addr(), Duration::from_secs(10)).await
    }

    /// A session through every member (the client picks one and moves on when it fails).
    pub async fn client_any(&self) -> zk::Client {
        connect(&self.connect_string(), Duration::from_secs(20)).await
    }

    /// Whether member `id` takes a new session right now.
    pub fn accepts_sessions(&self, id: u64) -> bool {
        blocking(|| super::accepts_sessions(&self.member(id).addr()))
    }
}

impl Drop for Ensemble {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if std::thread::panicking() {
            for m in &self.members {
                let log = m.all_logs();
                let lines: Vec<&str> = log.lines().collect();
                let tail = &lines[lines.len().saturating_sub(150)..];
                eprintln!(
                    "---- member {} ({:?}) log, last {} lines ({}) ----\n{}",
                    m.id,
                    m.role,
                    tail.len(),
                    m.dir.display(),
                    tail.join("\n")
                );
            }
        }
    }
}

/// Apache ZooKeeper 3.8 (Debian) as an ensemble member, to check the tests themselves
/// (`CORRAL_TEST_TARGET=zookeeper`). Unknown config keys become `zookeeper.*` system
/// properties there, so `4lw.commands.whitelist` and `snapCount` work from the file.
fn zookeeper_command(cfg: &Path) -> Command {
    let mut c = Command::new("java");
    c.arg("-Xmx200m")
        .arg("-XX:+UseSerialGC")
        .arg("-XX:TieredStopAtLevel=1")
        .arg("-cp")
        .arg("/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar")
        .arg("-Dzookeeper.admin.enableServer=false")
        .arg("-Dzookeeper.4lw.commands.whitelist=*")
        .arg("-Dorg.slf4j.simpleLogger.defaultLogLevel=info")
        .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
        .arg(cfg);
    c
}

fn port_of(addr: &str) -> &str {
    addr.rsplit_once(':').map(|(_, p)| p).unwrap_or(addr)
}

/// Connect to `cluster` with the given requested session timeout, retrying until a session
/// is established (members may still be electing).
pub async fn connect(cluster: &str, timeout: Duration) -> zk::Client {
    super::within(&format!("a session on {cluster}"), async {
        loop {
            match zk::Client::connector()
                .with_session_timeout(timeout)
                .connect(cluster)
                .await
            {
                Ok(c) => return c,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .await
}

/// Lines of `log` that contain every one of `needles`.
pub fn log_lines_with<'a>(log: &'a str, needles: &[&str]) -> Vec<&'a str> {
    log.lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Write load and verification
// ---------------------------------------------------------------------------------------------

/// What one writer did: every create it sent, in order, with its outcome.
#[derive(Debug, Default, Clone)]
pub struct WriterLog {
    pub writer: usize,
    /// (path, czxid from the reply), in acknowledgement order.
    pub acked: Vec<(String, i64)>,
    /// Writes whose outcome is unknown (connection lost or test stopped before the reply).
    pub unknown: Vec<String>,
    /// Errors that are not a lost connection (must not happen).
    pub failed: Vec<(String, String)>,
    /// Sessions the writer had to open (1 + the number of expired ones).
    pub sessions: usize,
}

/// Concurrent writers, each creating `ROOT/w<i>/<seq>` one after the other through its own
/// session on `cluster`. Every create is recorded as acknowledged (with its zxid) or unknown.
pub struct Load {
    pub root: String,
    stop: Arc<AtomicBool>,
    stop_tx: tokio::sync::watch::Sender<bool>,
    acks: Arc<AtomicUsize>,
    handles: Vec<tokio::task::JoinHandle<WriterLog>>,
}

impl Load {
    /// Creates `root` and `root/w<i>` (through `setup`) and starts `writers` writers whose
    /// sessions go to `clusters[i % clusters.len()]`.
    pub async fn start(
        setup: &zk::Client,
        root: &str,
        writers: usize,
        clusters: &[String],
    ) -> Load {
        create_all(setup, root).await;
        for i in 0..writers {
            create_all(setup, &format!("{root}/w{i}")).await;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let acks = Arc::new(AtomicUsize::new(0));
        let handles = (0..writers)
            .map(|i| {
                let cluster = clusters[i % clusters.len()].clone();
                let dir = format!("{root}/w{i}");
                let acks = acks.clone();
                let stop_rx = stop_rx.clone();
                tokio::spawn(writer(i, cluster, dir, acks, stop_rx))
            })
            .collect();
        Load {
            root: root.to_string(),
            stop,
            stop_tx,
            acks,
            handles,
        }
    }

    /// Acknowledged writes so far, all writers together.
    pub fn acks(&self) -> usize {
        self.acks.load(Ordering::SeqCst)
    }

    /// Wait until the writers have had `n` more writes acknowledged than now.
    pub async fn wait_more_acks(&self, n: usize, what: &str) {
        let target = self.acks() + n;
        super::poll_until_async(
            &format!("{n} more acknowledged writes ({what})"),
            || async { (self.acks() >= target).then_some(()) },
        )
        .await;
    }

    /// Stop every writer and return their logs. Writes in flight become unknown.
    pub async fn stop(self) -> Vec<WriterLog> {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.stop_tx.send(true);
        let mut logs = Vec::new();
        for h in self.handles {
            logs.push(
                super::within("a writer to stop", h)
                    .await
                    .expect("writer task"),
            );
        }
        for l in &logs {
            assert!(
                l.failed.is_empty(),
                "writer {} got errors other than a lost connection: {:?}",
                l.writer,
                l.failed
            );
        }
        logs
    }
}

async fn writer(
    i: usize,
    cluster: String,
    dir: String,
    acks: Arc<AtomicUsize>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> WriterLog {
    let mut log = WriterLog {
        writer: i,
        ..Default::default()
    };
    let mut client: Option<zk::Client> = None;
    let mut seq = 0u64;
    while !*stop.borrow() {
        let c = match &client {
            Some(c) => c.clone(),
            None => {
                let fresh = tokio::select! {
                    c = zk::Client::connector()
                        .with_session_timeout(Duration::from_secs(20))
                        .connect(&cluster) => c.ok(),
                    _ = stop.changed() => None,
                };
                match fresh {
                    Some(c) => {
                        log.sessions += 1;
                        client = Some(c.clone());
                        c
                    }
                    None => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                }
            }
        };
        let path = format!("{dir}/{seq:010}");
        seq += 1;
        let data = path.as_bytes().to_vec();
        let res = tokio::select! {
            r = c.create(&path, &data, &persistent()) => Some(r),
            _ = stop.changed() => None,
        };
        match res {
            Some(Ok((stat, _))) => {
                log.acked.push((path, stat.czxid));
                acks.fetch_add(1, Ordering::SeqCst);
            }
            None => log.unknown.push(path),
            Some(Err(e)) => {
                log.unknown.push(path.clone());
                match e {
                    // A lost connection fails what was in flight with the cause (an I/O
                    // error, "no response from connection"...); the session lives on.
                    zk::Error::ConnectionLoss | zk::Error::Timeout | zk::Error::Custom(_) => {}
                    zk::Error::SessionExpired
                    | zk::Error::SessionMoved
                    | zk::Error::ClientClosed
                    | zk::Error::NoHosts => client = None,
                    other => {
                        // Anything else says the server got it wrong (NodeExists would mean
                        // a path was created twice: each path is sent once).
                        log.failed.push((path, format!("{other:?}")));
                        client = None;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    log
}

/// Create `path` and its missing ancestors (persistent), retrying lost connections.
pub async fn create_all(c: &zk::Client, path: &str) {
    let mut prefix = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        prefix += "/";
        prefix += part;
        super::within(&format!("create {prefix}"), async {
            loop {
                match c.create(&prefix, b"", &persistent()).await {
                    Ok(_) | Err(zk::Error::NodeExists) => return,
                    Err(zk::Error::ConnectionLoss) => {
                        tokio::time::sleep(Duration::from_millis(50)).await
                    }
                    Err(e) => panic!("create {prefix}: {e:?}"),
                }
            }
        })
        .await;
    }
}

/// A member's view of the writers' nodes: path -> (czxid, data).
pub type Nodes = BTreeMap<String, (i64, Vec<u8>)>;

/// The nodes under `root/w<i>` of one member, after a `sync`.
pub async fn snapshot_writes(c: &zk::Client, root: &str, writers: usize) -> Nodes {
    super::within("sync", c.sync(root)).await.expect("sync");
    let mut out = BTreeMap::new();
    for i in 0..writers {
        let dir = format!("{root}/w{i}");
        let children = c.list_children(&dir).await.expect("list writer dir");
        // Send every read first (the client pipelines them), then collect the replies.
        let reads: Vec<_> = children
            .iter()
            .map(|ch| {
                let p = format!("{dir}/{ch}");
                (p.clone(), c.get_data(&p))
            })
            .collect();
        for (p, fut) in reads {
            let (data, stat) = fut.await.unwrap_or_else(|e| panic!("get {p}: {e:?}"));
            out.insert(p, (stat.czxid, data));
        }
    }
    out
}

/// Checks on each of `members`, after a `sync` there: every acknowledged write is present,
/// with its data and the zxid its reply carried; each writer's acknowledged zxids increase;
/// no two nodes share a zxid; and every member holds exactly the same nodes (acknowledged or
/// not) with the same zxids — i.e. the same writes in the same order. Returns the number of
/// acknowledged writes checked.
pub async fn verify_writes(
    ens: &Ensemble,
    logs: &[WriterLog],
    root: &str,
    members: &[u64],
) -> usize {
    assert!(!members.is_empty());
    let mut acked = 0;
    for l in logs {
        for w in l.acked.windows(2) {
            assert!(
                w[0].1 < w[1].1,
                "writer {}: {} acknowledged at zxid {:#x} before {} at {:#x}",
                l.writer,
                w[0].0,
                w[0].1,
                w[1].0,
                w[1].1
            );
        }
        acked += l.acked.len();
    }
    let mut reference: Option<(u64, Nodes)> = None;
    for &id in members {
        let c = ens.client(id).await;
        let nodes = snapshot_writes(&c, root, logs.len()).await;
        for l in logs {
            for (path, czxid) in &l.acked {
                match nodes.get(path) {
                    None => panic!(
                        "member {id} lacks acknowledged write {path} (zxid {czxid:#x}); modes {:?}",
                        ens.modes()
                    ),
                    Some((z, data)) => {
                        assert_eq!(
                            z, czxid,
                            "member {id}: {path} has czxid {z:#x}, its create was acknowledged with {czxid:#x}"
                        );
                        assert_eq!(data, path.as_bytes(), "member {id}: data of {path}");
                    }
                }
            }
        }
        let mut seen = BTreeMap::new();
        for (p, (z, _)) in &nodes {
            if let Some(other) = seen.insert(*z, p) {
                panic!("member {id}: {p} and {other} share zxid {z:#x}");
            }
        }
        match &reference {
            None => reference = Some((id, nodes)),
            Some((rid, r)) => {
                if r != &nodes {
                    let only_r: Vec<_> = r.keys().filter(|k| !nodes.contains_key(*k)).collect();
                    let only_n: Vec<_> = nodes.keys().filter(|k| !r.contains_key(*k)).collect();
                    let differ: Vec<_> = r
                        .iter()
                        .filter(|(k, v)| nodes.get(*k).is_some_and(|w| w != *v))
                        .map(|(k, _)| k)
                        .collect();
                    panic!(
                        "members {rid} and {id} differ: only on {rid}: {only_r:?}; only on {id}: {only_n:?}; different zxid/data: {differ:?}"
                    );
                }
            }
        }
        drop(c);
    }
    let unknown: usize = logs.iter().map(|l| l.unknown.len()).sum();
    let sessions: usize = logs.iter().map(|l| l.sessions).sum();
    let total = reference.map(|(_, r)| r.len()).unwrap_or(0);
    eprintln!(
        "verified on members {members:?}: {acked} acknowledged writes, {unknown} unknown, {total} nodes, {sessions} writer sessions"
    );
    acked
}

/// The epoch of a zxid: Corral's quorum mode puts it in the top 16 bits (`epoch << 48 |
/// counter`), ZooKeeper in the top 32.
pub fn epoch_of(zxid: i64) -> i64 {
    match target() {
        Target::Corral => zxid >> 48,
        Target::ZooKeeper => zxid >> 32,
    }
}

/// How a follower synchronised with its leader, in log order: `diff`, `truncate` or
/// `snapshot` per sync. Corral logs `synchronising with leader ... sync=<kind>`; ZooKeeper
/// logs `Getting a diff from the leader`, `Getting a snapshot from leader` or `Truncating log
/// to get in sync with the leader`.
pub fn sync_kinds(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| match target() {
            Target::Corral => {
                if !l.contains("synchronising with leader") {
                    return None;
                }
                ["diff", "truncate", "snapshot"]
                    .into_iter()
                    .find(|k| l.contains(&format!("sync={k}")))
                    .map(String::from)
            }
            Target::ZooKeeper => {
                if l.contains("Getting a diff from the leader") {
                    Some("diff".to_string())
                } else if l.contains("Getting a snapshot from leader") {
                    Some("snapshot".to_string())
                } else if l.contains("Truncating log to get in sync with the leader") {
                    Some("truncate".to_string())
                } else {
                    None
                }
            }
        })
        .collect()
}
