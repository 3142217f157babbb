//! `corral cli lock | elect | watch | register`, several processes at once against a real
//! server: mutual exclusion, exactly one leader, a killed (kill -9) holder or leader releasing
//! once its session expires, `watch` printing another client's changes, and service entries
//! appearing, surviving a lost session and vanishing with their process.

mod common;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use common::{poll_until, ServerBuilder, DEADLINE};

/// Session timeout the recipe processes ask for: short, so a kill -9 releases quickly.
const SESSION_TIMEOUT_MS: &str = "1000";

/// A recipe process with its output captured to files.
struct Proc {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Proc {
    fn spawn(addr: &str, dir: &Path, tag: &str, args: &[&str]) -> Proc {
        let out = dir.join(format!("{tag}.out"));
        let err = dir.join(format!("{tag}.err"));
        let child = Command::new(env!("CARGO_BIN_EXE_corral"))
            .args(["cli", "-server", addr, "-timeout", SESSION_TIMEOUT_MS])
            .args(args)
            .stdin(Stdio::null())
            .stdout(File::create(&out).unwrap())
            .stderr(File::create(&err).unwrap())
            .spawn()
            .expect("spawn corral cli");
        Proc { child, out, err }
    }

    fn stdout(&self) -> String {
        fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        fs::read_to_string(&self.err).unwrap_or_default()
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on a child we spawned and have not reaped.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the exit (with the harness deadline) and returns the exit code.
    fn wait(&mut self) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            if start.elapsed() > DEADLINE {
                let _ = self.child.kill();
                panic!(
                    "process did not exit; stdout {:?} stderr {:?}",
                    self.stdout(),
                    self.stderr()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Children of `path` (sorted), or empty if it does not exist; via a one-shot CLI run.
fn children(addr: &str, path: &str) -> Vec<String> {
    let o = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["cli", "-server", addr, "ls", path])
        .output()
        .expect("run corral cli ls");
    let text = String::from_utf8_lossy(&o.stdout);
    let inner = text.trim().trim_start_matches('[').trim_end_matches(']');
    inner
        .split(", ")
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn cli_ok(addr: &str, args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["cli", "-server", addr])
        .args(args)
        .output()
        .expect("run corral cli");
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Whether `pid` is a live process (a zombie waiting to be reaped counts as dead).
fn pid_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')),
        Err(_) => false,
    }
}

#[test]
fn lock_gives_mutual_exclusion() {
    let s = ServerBuilder::fast_sessions().start();
    let a = s.addr();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let counter = dir.path().join("counter");
    fs::write(&counter, "0").unwrap();
    // A read-modify-write with a pause in the middle: without the lock, increments are lost
    // and the start/end lines of different holders interleave.
    let critical = format!(
        "for i in 1 2 3; do echo \"$ID start\" >> {log}; n=$(cat {c}); sleep 0.03; \
         echo $((n+1)) > {c}; echo \"$ID end\" >> {log}; done",
        log = log.display(),
        c = counter.display()
    );
    let holders = 4;
    let mut procs: Vec<Proc> = (0..holders)
        .map(|i| {
            let p = Proc::spawn(
                &a,
                dir.path(),
                &format!("l{i}"),
                &[
                    "lock",
                    "/locks/shared",
                    "--",
                    "sh",
                    "-c",
                    &format!("ID={i}; {critical}"),
                ],
            );
            p
        })
        .collect();
    for p in &mut procs {
        assert_eq!(p.wait(), Some(0), "stderr {:?}", p.stderr());
    }
    assert_eq!(
        fs::read_to_string(&counter).unwrap().trim(),
        (holders * 3).to_string()
    );
    let lines: Vec<String> = fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), holders * 6);
    // Each holder's six lines are contiguous: start/end pairs of one ID at a time.
    for block in lines.chunks(6) {
        let id = block[0].split(' ').next().unwrap();
        for (j, l) in block.iter().enumerate() {
            let want = if j % 2 == 0 { "start" } else { "end" };
            assert_eq!(l, &format!("{id} {want}"), "{lines:?}");
        }
    }
    // Every holder released its node.
    assert!(children(&a, "/locks/shared").is_empty());
    // The command's exit status is the lock's.
    let mut p = Proc::spawn(
        &a,
        dir.path(),
        "code",
        &["lock", "/locks/shared", "--", "sh", "-c", "exit 3"],
    );
    assert_eq!(p.wait(), Some(3));
    let mut p = Proc::spawn(
        &a,
        dir.path(),
        "missing",
        &["lock", "/locks/shared", "--", "/no/such/program"],
    );
    assert_eq!(p.wait(), Some(1));
    assert!(
        p.stderr().contains("cannot run /no/such/program"),
        "{}",
        p.stderr()
    );
}

#[test]
fn killed_lock_holder_releases_after_session_expiry() {
    let s = ServerBuilder::fast_sessions().start();
    let a = s.addr();
    let dir = tempfile::tempdir().unwrap();
    let held = dir.path().join("held");
    let second = dir.path().join("second");
    let mut holder = Proc::spawn(
        &a,
        dir.path(),
        "holder",
        &[
            "lock",
            "/l",
            "--",
            "sh",
            "-c",
            &format!("echo $$ > {}; exec sleep 1000", held.display()),
        ],
    );
    let held_pid: i32 = poll_until("holder's command to start", || {
        fs::read_to_string(&held).ok()?.trim().parse().ok()
    });
    let mut waiter = Proc::spawn(
        &a,
        dir.path(),
        "waiter",
        &[
            "lock",
            "/l",
            "--",
            "sh",
            "-c",
            &format!("echo got > {}", second.display()),
        ],
    );
    let mut quitter = Proc::spawn(&a, dir.path(), "quitter", &["lock", "/l", "--", "true"]);
    poll_until("three lock nodes", || {
        (children(&a, "/l").len() == 3).then_some(())
    });
    // Queued behind the holder: neither has run its command.
    assert!(waiter.running() && quitter.running());
    assert!(!second.exists());
    // Interrupting a waiter takes it out of the queue at once.
    quitter.signal(libc::SIGTERM);
    assert_eq!(quitter.wait(), Some(128 + libc::SIGTERM));
    poll_until("the quitter's node to go", || {
        (children(&a, "/l").len() == 2).then_some(())
    });
    assert!(waiter.running());

    holder.kill9();
    // The holder's command dies with it (it must not outlive the lock)...
    poll_until("the holder's command to die", || {
        (!pid_alive(held_pid)).then_some(())
    });
    // ...and once the session expires the waiter gets the lock.
    assert_eq!(waiter.wait(), Some(0), "{}", waiter.stderr());
    assert_eq!(fs::read_to_string(&second).unwrap().trim(), "got");
    assert!(children(&a, "/l").is_empty());
}

/// Processes (by index) whose stdout says they were elected.
fn elected(procs: &[Proc]) -> Vec<usize> {
    procs
        .iter()
        .enumerate()
        .filter(|(_, p)| p.stdout().contains("elected: "))
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn exactly_one_leader_and_failover() {
    let s = ServerBuilder::fast_sessions().start();
    let a = s.addr();
    let dir = tempfile::tempdir().unwrap();
    let mut procs: Vec<Proc> = (0..3)
        .map(|i| {
            Proc::spawn(
                &a,
                dir.path(),
                &format!("e{i}"),
                &["elect", "/election", &format!("node{i}")],
            )
        })
        .collect();
    poll_until("three candidates", || {
        (children(&a, "/election").len() == 3).then_some(())
    });
    let first = poll_until("a leader", || {
        let e = elected(&procs);
        (!e.is_empty()).then_some(e)
    });
    assert_eq!(first.len(), 1, "{first:?}");
    let leader = first[0];
    assert_eq!(procs[leader].stdout(), format!("elected: node{leader}\n"));
    // The leader is the candidate with the lowest sequence number, holding its name.
    let lowest = &children(&a, "/election")[0];
    assert_eq!(
        cli_ok(&a, &["get", &format!("/election/{lowest}")]),
        format!("node{leader}\n")
    );

    // kill -9: leadership passes on once the session expires, to exactly one candidate.
    procs[leader].kill9();
    let second = poll_until("a second leader", || {
        let e: Vec<usize> = elected(&procs)
            .into_iter()
            .filter(|&i| i != leader)
            .collect();
        (!e.is_empty()).then_some(e)
    });
    assert_eq!(second.len(), 1, "{second:?}");
    let next = second[0];
    assert_eq!(children(&a, "/election").len(), 2);

    // SIGTERM: the leader withdraws at once and exits 0; the last candidate takes over.
    procs[next].signal(libc::SIGTERM);
    assert_eq!(procs[next].wait(), Some(0));
    let last = (0..3).find(|&i| i != leader && i != next).unwrap();
    poll_until("the last leader", || {
        procs[last].stdout().contains("elected: ").then_some(())
    });
    assert_eq!(procs[last].stdout(), format!("elected: node{last}\n"));
    assert_eq!(children(&a, "/election").len(), 1);
    procs[last].signal(libc::SIGINT);
    assert_eq!(procs[last].wait(), Some(0));
    assert!(children(&a, "/election").is_empty());
}

#[test]
fn watch_prints_changes_made_by_others() {
    let s = ServerBuilder::new().start();
    let a = s.addr();
    let dir = tempfile::tempdir().unwrap();
    let mut rec = Proc::spawn(&a, dir.path(), "rec", &["watch", "/w", "-R"]);
    let mut flat = Proc::spawn(&a, dir.path(), "flat", &["watch", "/w"]);
    poll_until("recursive watch", || {
        rec.stderr().contains("watching /w").then_some(())
    });
    poll_until("plain watch", || {
        flat.stderr().contains("watching /w").then_some(())
    });
    let wait_line = |p: &Proc, line: &str| {
        poll_until(&format!("line {line:?}"), || {
            p.stdout().lines().any(|l| l == line).then_some(())
        })
    };
    cli_ok(&a, &["create", "/w", "root"]);
    wait_line(&rec, "NodeCreated /w root");
    cli_ok(&a, &["create", "/w/a", "x"]);
    wait_line(&rec, "NodeCreated /w/a x");
    cli_ok(&a, &["set", "/w/a", "y"]);
    wait_line(&rec, "NodeDataChanged /w/a y");
    cli_ok(&a, &["create", "/w/a/b"]);
    cli_ok(&a, &["delete", "/w/a/b"]);
    cli_ok(&a, &["delete", "/w/a"]);
    wait_line(&rec, "NodeDeleted /w/a");
    assert_eq!(
        rec.stdout(),
        "NodeCreated /w root\nNodeCreated /w/a x\nNodeDataChanged /w/a y\n\
         NodeCreated /w/a/b\nNodeDeleted /w/a/b\nNodeDeleted /w/a\n"
    );
    // A plain persistent watch sees the node itself and its children list, not grandchildren.
    wait_line(&flat, "NodeChildrenChanged /w");
    cli_ok(&a, &["set", "/w", "v2"]);
    wait_line(&flat, "NodeDataChanged /w v2");
    assert!(!flat.stdout().contains("/w/a"), "{}", flat.stdout());
    rec.signal(libc::SIGTERM);
    flat.signal(libc::SIGINT);
    assert_eq!(rec.wait(), Some(0));
    assert_eq!(flat.wait(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_keeps_entries_alive_until_killed() {
    let s = ServerBuilder::fast_sessions().start();
    let a = s.addr();
    // web1 goes through a proxy, so its connection can be kept down for longer than its
    // session lasts.
    let proxy = common::proxy::Proxy::start(&a).await;
    let dir = tempfile::tempdir().unwrap();
    let (p, d, a1) = (proxy.addr(), dir.path().to_path_buf(), a.clone());
    let web1 = tokio::task::spawn_blocking(move || {
        let a = a1;
        let web1 = Proc::spawn(
            &p,
            &d,
            "web1",
            &["register", "/services/http", "web1", "10.0.0.1:80"],
        );
        let mut web2 = Proc::spawn(
            &a,
            &d,
            "web2",
            &["register", "/services/http", "web2", "10.0.0.2:80"],
        );
        poll_until("both entries", || {
            (children(&a, "/services/http") == ["web1", "web2"]).then_some(())
        });
        assert_eq!(cli_ok(&a, &["get", "/services/http/web1"]), "10.0.0.1:80\n");
        assert_eq!(cli_ok(&a, &["get", "/services/http/web2"]), "10.0.0.2:80\n");
        assert_eq!(web2.stdout(), "registered /services/http/web2\n");

        // Deleted by someone else: put back.
        cli_ok(&a, &["delete", "/services/http/web2"]);
        poll_until("web2 re-registered", || {
            (web2.stdout().matches("registered").count() == 2).then_some(())
        });
        assert!(children(&a, "/services/http").contains(&"web2".to_string()));

        // kill -9: the entry goes when the session expires.
        web2.kill9();
        poll_until("web2's entry to expire", || {
            (children(&a, "/services/http") == ["web1"]).then_some(())
        });
        web1
    })
    .await
    .unwrap();

    // Lose web1's session: cut its connection and keep it out until the server expires it.
    proxy.block();
    proxy.cut();
    let a1 = a.clone();
    let mut web1 = tokio::task::spawn_blocking(move || {
        poll_until("web1's session to expire", || {
            children(&a1, "/services/http").is_empty().then_some(())
        });
        web1
    })
    .await
    .unwrap();
    proxy.unblock();
    tokio::task::spawn_blocking(move || {
        poll_until("web1 registered again on a new session", || {
            (web1.stdout().matches("registered").count() == 2).then_some(())
        });
        assert_eq!(children(&a, "/services/http"), ["web1"]);
        assert!(
            web1.stderr().contains("registering again"),
            "{}",
            web1.stderr()
        );
        web1.signal(libc::SIGTERM);
        assert_eq!(web1.wait(), Some(0));
        // Closing the session on SIGTERM removes the entry at once.
        assert!(children(&a, "/services/http").is_empty());
    })
    .await
    .unwrap();
}

#[test]
fn lock_without_a_command_holds_until_interrupted() {
    let s = ServerBuilder::new().start();
    let a = s.addr();
    let dir = tempfile::tempdir().unwrap();
    let mut holder = Proc::spawn(&a, dir.path(), "hold", &["lock", "/h"]);
    poll_until("the lock node to be printed", || {
        holder.stdout().ends_with('\n').then_some(())
    });
    assert_eq!(holder.stdout(), "/h/lock-0000000000\n");
    assert_eq!(children(&a, "/h"), ["lock-0000000000"]);
    let mut next = Proc::spawn(&a, dir.path(), "next", &["lock", "/h", "--", "true"]);
    poll_until("a waiter", || (children(&a, "/h").len() == 2).then_some(()));
    assert!(next.running());
    holder.signal(libc::SIGINT);
    assert_eq!(holder.wait(), Some(0));
    assert_eq!(next.wait(), Some(0));
    assert!(children(&a, "/h").is_empty());
}
