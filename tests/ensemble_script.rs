//! `bin/ensemble.sh` (the local 3-member ensemble script), run against a temporary copy of
//! `conf/ensemble` on free ports, with `CORRAL_BIN` set to the binary cargo built for the tests.
//!
//! The quorum drill runs the shipped configs (three voters): `up` waits for a leader, `status`
//! shows each member's mode, a killed member is replaced by a re-election and rejoins. `up`
//! with a member that cannot start must fail cleanly. The process management details (pid
//! files, kill/start/stop/restart/down, a pid file naming another process) are exercised with a
//! standalone variant of the configs (server.N lines replaced by clientPort), which the script
//! accepts with a note.

use std::fs::{self, File};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Longest any one script invocation may take (up waits at most CORRAL_ENSEMBLE_TIMEOUT).
const DEADLINE: Duration = Duration::from_secs(90);
/// Client, quorum and election ports of the shipped configs, per member.
const SHIPPED_PORTS: [(u16, u16, u16); 3] =
    [(2181, 2888, 3888), (2182, 2889, 3889), (2183, 2890, 3890)];

fn skip() -> bool {
    // The script runs corral; there is nothing to compare against ZooKeeper here.
    matches!(
        std::env::var("CORRAL_TEST_TARGET").as_deref(),
        Ok("zookeeper") | Ok("zk")
    )
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn free_ports<const N: usize>() -> [u16; N] {
    // Hold all listeners at once so the ports are distinct.
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().unwrap().port())
}

/// One parsed line of `ensemble.sh status`.
#[derive(Debug)]
struct Member {
    id: u32,
    pid: Option<u32>,
    mode: String,
}

struct Ensemble {
    dir: tempfile::TempDir,
    conf: PathBuf,
    client_ports: [u16; 3],
}

impl Ensemble {
    /// A copy of conf/ensemble with every port replaced by a free one and dataDir under the
    /// temp dir. `quorum == false` drops the server.N lines and sets clientPort instead.
    fn new(quorum: bool) -> Ensemble {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("conf");
        fs::create_dir(&conf).unwrap();
        let ports: [u16; 9] = free_ports();
        let client_ports = [ports[0], ports[1], ports[2]];
        let port_map: Vec<(u16, u16)> = SHIPPED_PORTS
            .iter()
            .enumerate()
            .flat_map(|(i, &(c, q, e))| [(c, ports[i]), (q, ports[3 + i]), (e, ports[6 + i])])
            .collect();
        for n in 1..=3usize {
            let shipped = repo().join(format!("conf/ensemble/zoo{n}.cfg"));
            let text = fs::read_to_string(&shipped).unwrap();
            let mut out = String::new();
            let mut server_lines = 0;
            for line in text.lines() {
                if line.starts_with("dataDir=") {
                    assert_eq!(line, format!("dataDir=data/ensemble/{n}"), "{shipped:?}");
                    out += &format!(
                        "dataDir={}\n",
                        dir.path().join(format!("data/{n}")).display()
                    );
                } else if let Some(rest) = line.strip_prefix("server.") {
                    server_lines += 1;
                    let (id, spec) = rest.split_once('=').unwrap();
                    let id: usize = id.parse().unwrap();
                    let (c, q, e) = SHIPPED_PORTS[id - 1];
                    assert_eq!(
                        spec,
                        format!("127.0.0.1:{q}:{e}:participant;127.0.0.1:{c}"),
                        "{shipped:?}"
                    );
                    if quorum {
                        // Rebuilt rather than substituted: a free port may begin with the
                        // digits of a shipped one (28889 after 2888), which a textual
                        // replacement would rewrite again.
                        let port = |shipped: u16| {
                            port_map
                                .iter()
                                .find(|(from, _)| *from == shipped)
                                .map(|(_, to)| *to)
                                .unwrap()
                        };
                        out += &format!(
                            "server.{id}=127.0.0.1:{}:{}:participant;127.0.0.1:{}\n",
                            port(q),
                            port(e),
                            port(c)
                        );
                    }
                } else {
                    out += line;
                    out.push('\n');
                }
            }
            assert_eq!(server_lines, 3, "{shipped:?} must list three servers");
            if !quorum {
                out += &format!(
                    "clientPort={}\nclientPortAddress=127.0.0.1\n",
                    client_ports[n - 1]
                );
            }
            fs::write(conf.join(format!("zoo{n}.cfg")), out).unwrap();
        }
        Ensemble {
            dir,
            conf,
            client_ports,
        }
    }

    fn data(&self, n: usize) -> PathBuf {
        self.dir.path().join(format!("data/{n}"))
    }

    /// Runs the script (from the temp dir, to show the current directory does not matter);
    /// returns its exit code and combined output.
    fn run(&self, args: &[&str]) -> (i32, String) {
        let out_path = self.dir.path().join(format!("out-{}", next_run_id()));
        let out = File::create(&out_path).unwrap();
        let mut child = Command::new(repo().join("bin/ensemble.sh"))
            .args(args)
            .current_dir(self.dir.path())
            .env("CORRAL_BIN", env!("CARGO_BIN_EXE_corral"))
            .env("CORRAL_ENSEMBLE_CONF", &self.conf)
            .env("CORRAL_ENSEMBLE_TIMEOUT", "60")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("run bin/ensemble.sh");
        let start = Instant::now();
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if start.elapsed() > DEADLINE {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "ensemble.sh {args:?} still running after {DEADLINE:?}; output:\n{}",
                    fs::read_to_string(&out_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let text = fs::read_to_string(&out_path).unwrap();
        eprintln!("$ ensemble.sh {}\n{text}", args.join(" "));
        (status.code().unwrap_or(-1), text)
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, out) = self.run(args);
        assert_eq!(code, 0, "ensemble.sh {args:?} failed; output:\n{out}");
        out
    }

    fn status(&self) -> (i32, Vec<Member>) {
        let (code, out) = self.run(&["status"]);
        let members: Vec<Member> = out
            .lines()
            .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
            .map(|l| {
                let t: Vec<&str> = l.split_whitespace().collect();
                Member {
                    id: t[0].parse().unwrap(),
                    pid: if t[1] == "stopped" {
                        None
                    } else {
                        Some(t[1].parse().unwrap())
                    },
                    mode: if t[3] == "not" {
                        "not serving".into()
                    } else {
                        t[3].into()
                    },
                }
            })
            .collect();
        assert_eq!(
            members.iter().map(|m| m.id).collect::<Vec<_>>(),
            [1, 2, 3],
            "status must list members 1, 2, 3:\n{out}"
        );
        assert_eq!(
            code,
            if members.iter().all(|m| m.pid.is_some()) {
                0
            } else {
                3
            },
            "status exit code:\n{out}"
        );
        (code, members)
    }

    /// Polls status until `f` accepts it.
    fn status_until(&self, what: &str, f: impl Fn(&[Member]) -> bool) -> Vec<Member> {
        let start = Instant::now();
        loop {
            let (_, members) = self.status();
            if f(&members) {
                return members;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "timed out waiting for {what}; last status: {members:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Live (non-zombie) processes whose command line names this ensemble's config dir.
    fn processes(&self) -> Vec<u32> {
        let needle = self.conf.to_str().unwrap().as_bytes();
        fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|c| c.windows(needle.len()).any(|w| w == needle))
                    .unwrap_or(false)
            })
            .collect()
    }

    fn accepting(&self, n: usize) -> bool {
        TcpStream::connect(("127.0.0.1", self.client_ports[n - 1])).is_ok()
    }

    fn pid_file(&self, n: usize) -> PathBuf {
        self.data(n).join("corral.pid")
    }
}

impl Drop for Ensemble {
    fn drop(&mut self) {
        // Stop whatever a failed test left running; the script only signals its own pids.
        let _ = Command::new(repo().join("bin/ensemble.sh"))
            .arg("down")
            .env("CORRAL_BIN", env!("CARGO_BIN_EXE_corral"))
            .env("CORRAL_ENSEMBLE_CONF", &self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn next_run_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn alive(pid: u32) -> bool {
    // A zombie has an empty cmdline; it no longer runs.
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| !c.is_empty())
        .unwrap_or(false)
}

fn modes(members: &[Member]) -> Vec<&str> {
    members.iter().map(|m| m.mode.as_str()).collect()
}

fn count(members: &[Member], mode: &str) -> usize {
    members.iter().filter(|m| m.mode == mode).count()
}

/// A member whose config is broken: `up` says which member failed and why, stops the members
/// it started, and leaves nothing running.
#[test]
fn up_fails_cleanly_when_a_member_cannot_start() {
    if skip() {
        return;
    }
    let ens = Ensemble::new(true);
    let cfg3 = ens.conf.join("zoo3.cfg");
    let mut text = fs::read_to_string(&cfg3).unwrap();
    text += "tickTime=abc\n";
    fs::write(&cfg3, text).unwrap();
    let (code, out) = ens.run(&["up"]);
    assert_eq!(code, 1, "up must fail; output:\n{out}");
    assert!(out.contains("up failed"), "output:\n{out}");
    assert!(
        out.contains("member 3 exited") && out.contains(cfg3.to_str().unwrap()),
        "the error of member 3 must be shown; output:\n{out}"
    );
    assert!(out.contains("tickTime"), "the config error; output:\n{out}");
    for n in 1..=2 {
        assert!(
            out.contains(&format!("member {n}: stopped")),
            "member {n} (started by this up) must be stopped; output:\n{out}"
        );
    }
    for n in 1..=3 {
        assert!(
            !ens.pid_file(n).exists(),
            "pid file of member {n} left behind"
        );
        assert!(
            !ens.accepting(n),
            "something still serves member {n}'s port"
        );
    }
    assert_eq!(ens.processes(), Vec::<u32>::new(), "processes left behind");
    let (code, members) = ens.status();
    assert_eq!(code, 3);
    for m in &members {
        assert_eq!(m.pid, None, "{m:?}");
        assert_eq!(m.mode, "not serving", "{m:?}");
    }
    // The log holds the member's error.
    let log = ens.ok(&["logs", "3", "-n", "5"]);
    assert!(log.contains("tickTime"), "logs 3:\n{log}");
}

#[test]
fn usage_errors() {
    if skip() {
        return;
    }
    let ens = Ensemble::new(true);
    for args in [
        &[][..],
        &["bogus"],
        &["kill"],
        &["kill", "x"],
        &["up", "extra"],
    ] {
        let (code, out) = ens.run(args);
        assert_eq!(code, 2, "{args:?}:\n{out}");
        assert!(out.contains("usage:"), "{args:?}:\n{out}");
    }
    let (code, out) = ens.run(&["start", "4"]);
    assert_eq!(code, 1);
    assert!(out.contains("no member 4"), "{out}");
    let (code, out) = ens.run(&["kill", "1"]);
    assert_eq!(code, 1);
    assert!(out.contains("member 1 is not running"), "{out}");
    // stop is idempotent.
    assert!(ens.ok(&["stop", "1"]).contains("member 1: not running"));
    // A myid that contradicts the member's number is refused before anything starts.
    fs::create_dir_all(ens.data(3)).unwrap();
    fs::write(ens.data(3).join("myid"), "2\n").unwrap();
    let (code, out) = ens.run(&["up"]);
    assert_eq!(code, 1);
    assert!(out.contains("myid holds '2'"), "{out}");
    assert_eq!(ens.processes(), Vec::<u32>::new(), "processes left behind");
}

/// The process management, on standalone members (each one serves on its own).
#[test]
fn standalone_members_kill_start_stop_restart_down() {
    if skip() {
        return;
    }
    let ens = Ensemble::new(false);
    let out = ens.ok(&["up"]);
    assert!(out.contains("standalone"), "{out}");
    let (code, members) = ens.status();
    assert_eq!(code, 0);
    assert_eq!(modes(&members), ["standalone"; 3]);
    let pids: Vec<u32> = members.iter().map(|m| m.pid.unwrap()).collect();
    for (n, pid) in (1..=3).zip(&pids) {
        assert_eq!(
            fs::read_to_string(ens.pid_file(n)).unwrap().trim(),
            pid.to_string()
        );
        assert!(ens.accepting(n));
    }
    // up again: nothing to start.
    let out = ens.ok(&["up"]);
    assert_eq!(out.matches("already running").count(), 3, "{out}");

    // kill 1: gone at once, the others untouched.
    let out = ens.ok(&["kill", "1"]);
    assert!(out.contains("SIGKILL"), "{out}");
    assert!(!alive(pids[0]));
    let (code, members) = ens.status();
    assert_eq!(code, 3);
    assert_eq!(modes(&members), ["not serving", "standalone", "standalone"]);
    assert_eq!(members[1].pid, Some(pids[1]));
    let (code, _) = ens.run(&["kill", "1"]);
    assert_eq!(code, 1, "kill of a stopped member fails");

    // start 1 brings it back, serving.
    let out = ens.ok(&["start", "1"]);
    assert!(out.contains("serving, mode standalone"), "{out}");
    let (code, members) = ens.status();
    assert_eq!(code, 0);
    assert_ne!(members[0].pid, Some(pids[0]));
    let (code, out) = ens.run(&["start", "1"]);
    assert_eq!(code, 1, "start of a running member fails:\n{out}");

    // stop 2 (SIGTERM, waits), restart 3 (new pid).
    ens.ok(&["stop", "2"]);
    assert!(!alive(pids[1]));
    assert!(!ens.pid_file(2).exists());
    ens.ok(&["restart", "3"]);
    assert!(!alive(pids[2]));
    let (_, members) = ens.status();
    assert_eq!(modes(&members), ["standalone", "not serving", "standalone"]);
    assert!(members[2].pid.is_some() && members[2].pid != Some(pids[2]));

    // A pid file naming some other process: the script leaves that process alone.
    let mut sleeper: Child = Command::new("sleep").arg("60").spawn().unwrap();
    fs::write(ens.pid_file(2), format!("{}\n", sleeper.id())).unwrap();
    let (code, out) = ens.run(&["kill", "2"]);
    assert_eq!(code, 1);
    assert!(out.contains("left alone"), "{out}");
    assert!(ens.ok(&["stop", "2"]).contains("left alone"));
    assert!(sleeper.try_wait().unwrap().is_none(), "sleep was signalled");

    // down stops every member and still leaves the unrelated process alone.
    let running = ens.processes();
    assert_eq!(running.len(), 2, "{running:?}");
    ens.ok(&["down"]);
    assert_eq!(ens.processes(), Vec::<u32>::new(), "processes left behind");
    for pid in running {
        assert!(!alive(pid));
    }
    assert!(sleeper.try_wait().unwrap().is_none(), "sleep was signalled");
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    let (code, members) = ens.status();
    assert_eq!(code, 3);
    assert!(members.iter().all(|m| m.pid.is_none()), "{members:?}");
}

#[test]
fn ensemble_elects_a_leader_and_survives_killing_a_member() {
    if skip() {
        return;
    }
    let ens = Ensemble::new(true);
    let out = ens.ok(&["up"]);
    assert!(out.contains("ensemble is up"), "{out}");
    let (code, members) = ens.status();
    assert_eq!(code, 0);
    assert_eq!(count(&members, "leader"), 1, "{members:?}");
    assert_eq!(count(&members, "follower"), 2, "{members:?}");

    // Kill member 1 (leader or not): the other two keep or re-elect a leader.
    let killed = members[0].pid.unwrap();
    ens.ok(&["kill", "1"]);
    assert!(!alive(killed));
    ens.status_until("a leader and a follower among members 2 and 3", |m| {
        m[0].pid.is_none() && count(&m[1..], "leader") == 1 && count(&m[1..], "follower") == 1
    });

    // Member 1 rejoins.
    ens.ok(&["start", "1"]);
    ens.status_until("one leader and two followers", |m| {
        m.iter().all(|m| m.pid.is_some()) && count(m, "leader") == 1 && count(m, "follower") == 2
    });

    ens.ok(&["down"]);
    assert_eq!(ens.processes(), Vec::<u32>::new(), "processes left behind");
    let (code, members) = ens.status();
    assert_eq!(code, 3);
    assert!(members.iter().all(|m| m.pid.is_none()), "{members:?}");
    for n in 1..=3 {
        assert!(!ens.accepting(n));
    }
}
