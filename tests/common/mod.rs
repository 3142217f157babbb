//! Test harness shared by the integration tests.
//!
//! Every test starts its own server (`ServerBuilder::new().start()`), on a free loopback port,
//! with its own data directory. By default the server is the `corral` binary built by cargo;
//! with `CORRAL_TEST_TARGET=zookeeper` it is Apache ZooKeeper 3.8 from the Debian packages, which
//! is how the expectations in these tests were validated.
#![allow(dead_code)]

pub mod ensemble;
pub mod proxy;
pub mod raw;

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use zookeeper_client as zk;

/// Generous deadline for anything we poll for (start-up, expiry, deletion of containers...).
pub const DEADLINE: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Corral,
    ZooKeeper,
}

pub fn target() -> Target {
    match std::env::var("CORRAL_TEST_TARGET").as_deref() {
        Ok("zookeeper") | Ok("zk") => Target::ZooKeeper,
        _ => Target::Corral,
    }
}

pub fn is_zookeeper() -> bool {
    target() == Target::ZooKeeper
}

/// The ZooKeeper target is Debian's 3.8 package. Corral targets 3.9 behaviour.
pub fn is_zookeeper_38() -> bool {
    is_zookeeper()
}

pub fn is_corral() -> bool {
    target() == Target::Corral
}

pub fn corral_bin() -> &'static str {
    env!("CARGO_BIN_EXE_corral")
}

/// Poll `f` until it returns `Some`, panicking with `what` after [`DEADLINE`].
pub fn poll_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > DEADLINE {
            panic!("timed out waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Async flavour of [`poll_until`].
pub async fn poll_until_async<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if start.elapsed() > DEADLINE {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Await `fut` with the generous [`DEADLINE`]; panics (naming `what`) if it never completes.
pub async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(DEADLINE, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for: {what}"),
    }
}

#[derive(Clone, Debug)]
pub struct ServerBuilder {
    pub tick_time_ms: u32,
    pub min_session_timeout_ms: Option<u32>,
    pub max_session_timeout_ms: Option<u32>,
    pub max_client_cnxns: Option<u32>,
    pub jute_max_buffer: Option<u32>,
    pub extended_types_enabled: bool,
    pub super_digest: Option<String>,
    pub four_letter_whitelist: String,
    pub extra: Vec<String>,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        ServerBuilder {
            tick_time_ms: 2000,
            min_session_timeout_ms: None,
            max_session_timeout_ms: None,
            max_client_cnxns: None,
            jute_max_buffer: None,
            extended_types_enabled: true,
            super_digest: None,
            four_letter_whitelist: "*".to_string(),
            extra: Vec::new(),
        }
    }
}

impl ServerBuilder {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn tick_time_ms(mut self, v: u32) -> Self {
        self.tick_time_ms = v;
        self
    }
    pub fn min_session_timeout_ms(mut self, v: u32) -> Self {
        self.min_session_timeout_ms = Some(v);
        self
    }
    pub fn max_session_timeout_ms(mut self, v: u32) -> Self {
        self.max_session_timeout_ms = Some(v);
        self
    }
    pub fn max_client_cnxns(mut self, v: u32) -> Self {
        self.max_client_cnxns = Some(v);
        self
    }
    pub fn jute_max_buffer(mut self, v: u32) -> Self {
        self.jute_max_buffer = Some(v);
        self
    }
    pub fn extended_types_enabled(mut self, v: bool) -> Self {
        self.extended_types_enabled = v;
        self
    }
    /// `user:password` in clear; the harness computes `user:base64(sha1(user:password))`.
    pub fn super_user(mut self, user: &str, password: &str) -> Self {
        self.super_digest = Some(digest_id(user, password));
        self
    }
    pub fn four_letter_whitelist(mut self, v: &str) -> Self {
        self.four_letter_whitelist = v.to_string();
        self
    }
    pub fn extra(mut self, line: &str) -> Self {
        self.extra.push(line.to_string());
        self
    }

    /// A short-session server: tickTime=100, minSessionTimeout=200, for expiry tests.
    pub fn fast_sessions() -> Self {
        Self::new()
            .tick_time_ms(100)
            .min_session_timeout_ms(200)
            .max_session_timeout_ms(60_000)
    }

    fn cfg_text(&self, data_dir: &Path, port: u16) -> String {
        let mut s = String::new();
        s += &format!("tickTime={}\n", self.tick_time_ms);
        s += &format!("dataDir={}\n", data_dir.display());
        s += &format!("clientPort={port}\n");
        s += "clientPortAddress=127.0.0.1\n";
        if let Some(v) = self.max_client_cnxns {
            s += &format!("maxClientCnxns={v}\n");
        }
        if let Some(v) = self.min_session_timeout_ms {
            s += &format!("minSessionTimeout={v}\n");
        }
        if let Some(v) = self.max_session_timeout_ms {
            s += &format!("maxSessionTimeout={v}\n");
        }
        s += &format!("4lw.commands.whitelist={}\n", self.four_letter_whitelist);
        if let Some(v) = self.jute_max_buffer {
            s += &format!("jute.maxbuffer={v}\n");
        }
        s += &format!("extendedTypesEnabled={}\n", self.extended_types_enabled);
        // Apache ZooKeeper gets the same as -Dznode.container.checkIntervalMs=100.
        s += "znode.container.checkIntervalMs=100\n";
        if let Some(v) = &self.super_digest {
            s += &format!("superDigest={v}\n");
        }
        // Reap containers and TTL nodes quickly (ZooKeeper's default check runs every 60 s).
        // ZooKeeper takes this as a system property (passed with -D); corral reads it here.
        s += "znode.container.checkIntervalMs=100\n";
        for l in &self.extra {
            s += l;
            s += "\n";
        }
        s
    }

    pub fn start(self) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("corral-it-")
            .tempdir()
            .expect("tempdir");
        let mut last_log = String::new();
        for _attempt in 0..8 {
            let port = free_port();
            let mut server = Server {
                builder: self.clone(),
                dir_path: dir.path().to_path_buf(),
                port,
                child: None,
                generation: 0,
                _dir: None,
            };
            match server.spawn_and_wait() {
                Ok(()) => {
                    server._dir = Some(dir);
                    return server;
                }
                Err(StartError::BindFailed(log)) => {
                    last_log = log;
                    continue;
                }
                Err(StartError::Failed(msg)) => panic!("{msg}"),
            }
        }
        panic!("could not bind a free port after several attempts; last log:\n{last_log}");
    }
}

enum StartError {
    BindFailed(String),
    Failed(String),
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// `user:base64(sha1(user:password))`, the id of a digest ACL.
pub fn digest_id(user: &str, password: &str) -> String {
    use base64::Engine as _;
    use sha1::Digest as _;
    let mut h = sha1::Sha1::new();
    h.update(format!("{user}:{password}").as_bytes());
    let d = h.finalize();
    format!(
        "{user}:{}",
        base64::engine::general_purpose::STANDARD.encode(d)
    )
}

pub struct Server {
    builder: ServerBuilder,
    dir_path: PathBuf,
    port: u16,
    child: Option<Child>,
    generation: u32,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn socket_addr(&self) -> SocketAddr {
        self.addr().parse().unwrap()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        &self.dir_path
    }

    pub fn cfg_path(&self) -> PathBuf {
        self.dir_path.join("zoo.cfg")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir_path.join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir_path
            .join(format!("server-{}.log", self.generation))
    }

    /// Everything the server wrote to stdout/stderr (current run).
    pub fn log_contents(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn spawn_and_wait(&mut self) -> Result<(), StartError> {
        let data_dir = self.data_dir();
        fs::create_dir_all(&data_dir).unwrap();
        let cfg = self.cfg_path();
        fs::write(&cfg, self.builder.cfg_text(&data_dir, self.port)).unwrap();
        let log = File::create(self.log_path()).unwrap();
        let mut cmd = match target() {
            Target::Corral => {
                let mut c = Command::new(corral_bin());
                c.arg("server").arg(&cfg);
                c
            }
            Target::ZooKeeper => self.zookeeper_command(&cfg),
        };
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .current_dir(&self.dir_path);
        // Make sure the server dies with the test process even if Drop never runs.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| StartError::Failed(format!("cannot spawn server: {e}")))?;
        self.child = Some(child);
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                let log = self.log_contents();
                if log.contains("Address already in use") || log.contains("AddrInUse") {
                    return Err(StartError::BindFailed(log));
                }
                return Err(StartError::Failed(format!(
                    "server exited during start-up with {status}; log:\n{log}"
                )));
            }
            if is_serving(&self.addr()) && accepts_sessions(&self.addr()) {
                return Ok(());
            }
            if start.elapsed() > DEADLINE {
                let log = self.log_contents();
                self.terminate();
                return Err(StartError::Failed(format!(
                    "server did not answer ruok within {DEADLINE:?}; log:\n{log}"
                )));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn zookeeper_command(&self, cfg: &Path) -> Command {
        let mut c = Command::new("java");
        c.arg("-Xmx256m")
            .arg("-XX:+UseSerialGC")
            .arg("-XX:TieredStopAtLevel=1")
            .arg("-cp")
            .arg("/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar")
            .arg("-Dzookeeper.admin.enableServer=false")
            // Containers and TTL nodes are reaped by a periodic check (60 s by default).
            .arg("-Dznode.container.checkIntervalMs=100")
            .arg("-Dorg.slf4j.simpleLogger.defaultLogLevel=info")
            .arg(format!(
                "-Dzookeeper.4lw.commands.whitelist={}",
                self.builder.four_letter_whitelist
            ))
            .arg(format!(
                "-Dzookeeper.extendedTypesEnabled={}",
                self.builder.extended_types_enabled
            ));
        if let Some(v) = self.builder.jute_max_buffer {
            c.arg(format!("-Djute.maxbuffer={v}"));
        }
        if let Some(v) = &self.builder.super_digest {
            c.arg(format!(
                "-Dzookeeper.DigestAuthenticationProvider.superDigest={v}"
            ));
        }
        c.arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(cfg);
        c
    }

    fn terminate(&mut self) -> Option<ExitStatus> {
        self.terminate_graceful().map(|(st, _)| st)
    }

    /// SIGTERM, wait; SIGKILL after 15 s. Returns the exit status and whether SIGTERM alone
    /// was enough.
    fn terminate_graceful(&mut self) -> Option<(ExitStatus, bool)> {
        let mut child = self.child.take()?;
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let start = Instant::now();
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Some((st, true));
            }
            if start.elapsed() > Duration::from_secs(15) {
                let _ = child.kill();
                return child.wait().ok().map(|st| (st, false));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM the server and wait for it to exit; returns its exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.terminate()
    }

    /// SIGTERM the server; returns its exit status and whether it exited without SIGKILL.
    pub fn sigterm(&mut self) -> Option<(ExitStatus, bool)> {
        self.terminate_graceful()
    }

    /// SIGKILL the server and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Stop (if running) and start again with the same port, config and data dir.
    pub fn restart(&mut self) {
        self.terminate();
        self.generation += 1;
        // The port may still be held by lingering sockets for a moment; retry a few times.
        let mut last = String::new();
        for _ in 0..20 {
            match self.spawn_and_wait() {
                Ok(()) => return,
                Err(StartError::BindFailed(log)) => {
                    last = log;
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(StartError::Failed(msg)) => panic!("restart failed: {msg}"),
            }
        }
        panic!("restart could not bind its port again; log:\n{last}");
    }

    /// Send a four-letter word and read the whole answer.
    pub fn four_letter(&self, word: &str) -> String {
        four_letter(&self.addr(), word).expect("four letter word")
    }

    /// A zookeeper-client session with the given requested timeout.
    pub async fn client_with_timeout(&self, timeout: Duration) -> zk::Client {
        zk::Client::connector()
            .with_session_timeout(timeout)
            .connect(&self.addr())
            .await
            .expect("connect")
    }

    /// A zookeeper-client session (10 s requested timeout).
    pub async fn client(&self) -> zk::Client {
        self.client_with_timeout(Duration::from_secs(10)).await
    }

    /// Assert that the server still serves a brand new session.
    pub async fn assert_healthy(&self) {
        let c = self.client().await;
        let (_, stat) = c
            .get_data("/zookeeper")
            .await
            .expect("healthy getData /zookeeper");
        assert!(stat.num_children >= 1);
        c.create("/healthy-check", b"x", &ephemeral())
            .await
            .expect("healthy create");
        c.delete("/healthy-check", None)
            .await
            .expect("healthy delete");
    }

    /// Blocking version of [`Self::assert_healthy`] using the raw client.
    pub fn assert_healthy_raw(&self) {
        let mut r = raw::Raw::connect(&self.addr(), 10_000);
        let rep = r.call(
            raw::op::GET_DATA,
            &raw::Enc::new().string("/zookeeper").bool(false).into_vec(),
        );
        assert_eq!(rep.err, 0, "healthy getData /zookeeper");
        r.close_session();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.terminate();
        if std::thread::panicking() {
            eprintln!(
                "---- server log ({}) ----\n{}",
                self.log_path().display(),
                self.log_contents()
            );
        }
    }
}

pub fn is_serving(addr: &str) -> bool {
    match four_letter(addr, "ruok") {
        Ok(s) => s == "imok" || s.contains("is not executed because it is not in the whitelist"),
        Err(_) => false,
    }
}

/// Whether a session can be established (and closed again). ZooKeeper answers `ruok` before
/// it accepts sessions, so readiness also checks this.
pub fn accepts_sessions(addr: &str) -> bool {
    let attempt = || -> std::io::Result<bool> {
        let mut s = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(&raw::connect_request(10_000, 0, &[0u8; 16], Some(false)))?;
        let body = raw::read_frame(&mut s)?;
        let resp = raw::parse_connect_response(&body);
        if resp.session_id == 0 {
            return Ok(false);
        }
        let close = raw::Enc::new()
            .int(1)
            .int(raw::op::CLOSE_SESSION)
            .into_vec();
        s.write_all(&raw::frame(&close))?;
        let _ = raw::read_frame(&mut s)?;
        Ok(true)
    };
    attempt().unwrap_or(false)
}

/// Send a four-letter word to `addr` and read until EOF.
pub fn four_letter(addr: &str, word: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(word.as_bytes())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let _ = s.shutdown(Shutdown::Both);
    Ok(String::from_utf8_lossy(&out).into_owned())
}

pub fn persistent() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

pub fn ephemeral() -> zk::CreateOptions<'static> {
    zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all())
}

pub fn mode(m: zk::CreateMode) -> zk::CreateOptions<'static> {
    m.with_acls(zk::Acls::anyone_all())
}

/// Run `cmd` to completion with a deadline, returning (status, stdout+stderr).
pub fn run_with_deadline(cmd: &mut Command) -> (ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let f = File::create(&out).unwrap();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "command did not exit within {DEADLINE:?}; output:\n{}",
                fs::read_to_string(&out).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, fs::read_to_string(&out).unwrap_or_default())
}
