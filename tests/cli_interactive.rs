//! `corral cli` with no command: the interactive shell, through the real binary against a real
//! server. Most tests pipe commands in (stdin not a terminal: no prompt, one command per line);
//! one runs it in a pseudo-terminal to check the prompt, tab completion and watch events
//! printed while the user is at the prompt.

mod common;

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use common::{poll_until, ServerBuilder, DEADLINE};

/// A running interactive shell with stdin piped and output captured to files.
struct Shell {
    child: Child,
    stdin: Option<ChildStdin>,
    out: PathBuf,
    err: PathBuf,
    _dir: tempfile::TempDir,
}

impl Shell {
    /// Starts `corral cli -server addr` with its history in `history`.
    fn start(addr: &str, history: &Path) -> Shell {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let err = dir.path().join("err");
        let mut child = Command::new(env!("CARGO_BIN_EXE_corral"))
            .args(["cli", "-server", addr])
            .env("CORRAL_CLI_HISTORY", history)
            .stdin(Stdio::piped())
            .stdout(File::create(&out).unwrap())
            .stderr(File::create(&err).unwrap())
            .spawn()
            .expect("spawn corral cli");
        let stdin = child.stdin.take();
        Shell {
            child,
            stdin,
            out,
            err,
            _dir: dir,
        }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    fn stdout(&self) -> String {
        fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Polls until stdout contains `what`.
    fn wait_stdout(&self, what: &str) {
        poll_until(&format!("stdout to contain {what:?}"), || {
            self.stdout().contains(what).then_some(())
        });
    }

    /// Polls until stderr contains `what`.
    fn wait_stderr(&self, what: &str) {
        poll_until(&format!("stderr to contain {what:?}"), || {
            self.stderr().contains(what).then_some(())
        });
    }

    /// Closes stdin and waits for the exit; returns (exit code, stdout, stderr).
    fn finish(mut self) -> (Option<i32>, String, String) {
        drop(self.stdin.take());
        let start = Instant::now();
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            if start.elapsed() > DEADLINE {
                let _ = self.child.kill();
                panic!("shell did not exit; stdout:\n{}", self.stdout());
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        (status.code(), self.stdout(), self.stderr())
    }
}

/// Runs a whole script through a shell and returns (exit code, stdout, stderr).
fn script(addr: &str, history: &Path, lines: &[&str]) -> (Option<i32>, String, String) {
    let mut sh = Shell::start(addr, history);
    for l in lines {
        sh.send(l);
    }
    sh.finish()
}

const CONNECTED: &str = "WatchedEvent state:SyncConnected type:None path:null";

#[test]
fn piped_commands_run_in_order_with_zkcli_output() {
    let s = ServerBuilder::new().start();
    let h = tempfile::tempdir().unwrap();
    let (code, out, err) = script(
        &s.addr(),
        &h.path().join("hist"),
        &[
            "create /a hello",
            "create '/a/b' \"two words\"",
            "ls /a",
            "get /a/b",
            "getAllChildrenNumber /a",
            "get /missing",
            "create -e /a/eph",
            "getEphemerals /a",
            "frob",
            "quit",
            "ls /never",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with(&format!("Connecting to {}\n", s.addr())),
        "{out}"
    );
    assert!(out.contains(CONNECTED), "{out}");
    let results: Vec<&str> = out
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with("WATCHER::") && !l.starts_with("WatchedEvent"))
        .collect();
    assert_eq!(
        results,
        [
            &format!("Connecting to {}", s.addr()) as &str,
            "Created /a",
            "Created /a/b",
            "[b]",
            "two words",
            "1",
            "Created /a/eph",
            "[/a/eph]",
        ]
    );
    assert!(err.contains("Node does not exist: /missing\n"), "{err}");
    assert!(err.contains("Command not found: frob"), "{err}");
    // `quit` stopped the script; closing the session printed zkCli's Closed event.
    assert!(!err.contains("/never"), "{err}");
    assert!(
        out.trim_end()
            .ends_with("WatchedEvent state:Closed type:None path:null zxid: -1"),
        "{out}"
    );
}

#[test]
fn history_and_redo_persist_across_sessions() {
    let s = ServerBuilder::new().start();
    let h = tempfile::tempdir().unwrap();
    let hist = h.path().join("hist");
    let (code, out, err) = script(
        &s.addr(),
        &hist,
        &[
            "create /r 1",
            "get /r",
            "history",
            "redo 1",
            "redo 9",
            "redo 4",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("0 - create /r 1\n1 - get /r\n2 - history\n"),
        "{out}"
    );
    assert_eq!(out.matches("\n1\n").count(), 2, "get ran twice: {out}");
    assert!(err.contains("Command index out of range"), "{err}");
    // `redo 1` was recorded as `get /r`, so index 4 is `redo 9`: a redo of a redo.
    assert!(err.contains("No redoing redos"), "{err}");
    let saved = fs::read_to_string(&hist).unwrap();
    assert_eq!(
        saved.lines().collect::<Vec<_>>(),
        [
            "create /r 1",
            "get /r",
            "history",
            "get /r",
            "redo 9",
            "redo 4"
        ]
    );

    // A new session continues the numbering and can redo the old commands.
    let (code, out, err) = script(&s.addr(), &hist, &["set /r 2", "redo 1", "history"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("\n2\n"), "redo 1 (get /r) after set: {out}");
    assert!(
        out.contains("6 - set /r 2\n7 - get /r\n8 - history\n"),
        "{out}"
    );
    assert!(out.contains("0 - create /r 1\n"), "{out}");
}

#[test]
fn watch_events_print_as_they_arrive() {
    let s = ServerBuilder::new().start();
    let h = tempfile::tempdir().unwrap();
    let mut sh = Shell::start(&s.addr(), &h.path().join("hist"));
    sh.send("create /w v0");
    sh.send("get -w /w");
    sh.send("ls -w /w");
    sh.send("stat -w /w/new");
    sh.wait_stdout("v0\n[]\n");
    sh.wait_stderr("Node does not exist: /w/new");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = s.client().await;
        c.set_data("/w", b"v1", None).await.unwrap();
        c.create("/w/new", b"", &common::persistent())
            .await
            .unwrap();
    });
    // Printed while the shell waits for input, not with the next command.
    sh.wait_stdout("WatchedEvent state:SyncConnected type:NodeDataChanged path:/w zxid: ");
    sh.wait_stdout("WatchedEvent state:SyncConnected type:NodeChildrenChanged path:/w zxid: ");
    sh.wait_stdout("WatchedEvent state:SyncConnected type:NodeCreated path:/w/new zxid: ");
    // One-shot watches fire once.
    rt.block_on(async {
        let c = s.client().await;
        c.set_data("/w", b"v2", None).await.unwrap();
    });
    sh.send("addWatch /w");
    sh.send("create /w/new/deep");
    sh.wait_stdout("type:NodeCreated path:/w/new/deep");
    sh.send("removewatches /w");
    sh.wait_stdout("type:PersistentWatchRemoved path:/w");
    sh.send("removewatches /w");
    sh.wait_stderr("KeeperErrorCode = No such watcher for /w");
    // `ls -R -w` leaves a child watch on every node it lists.
    sh.send("ls -R -w /w");
    sh.wait_stdout("/w\n/w/new\n/w/new/deep\n");
    sh.send("create /w/new/deep/deeper");
    sh.wait_stdout("type:NodeChildrenChanged path:/w/new/deep zxid: ");
    sh.send("removewatches /w/new -c");
    sh.wait_stdout("type:ChildWatchRemoved path:/w/new zxid: ");
    sh.send("printwatches off");
    sh.send("get -w /w");
    sh.send("set /w v3");
    sh.send("printwatches");
    sh.wait_stdout("printwatches is off");
    let (code, out, err) = sh.finish();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out.matches("type:NodeDataChanged path:/w ").count(),
        1,
        "{out}"
    );
    assert_eq!(out.matches("type:NodeCreated").count(), 2, "{out}");
    assert!(
        err.contains("KeeperErrorCode = No such watcher for /w"),
        "{err}"
    );
}

#[test]
fn connect_close_addauth_and_chroot() {
    let s = ServerBuilder::new().start();
    let other = ServerBuilder::new().start();
    let h = tempfile::tempdir().unwrap();
    let id = common::digest_id("alice", "secret");
    let acl = format!("digest:{id}:cdrwa");
    let (code, out, err) = script(
        &s.addr(),
        &h.path().join("hist"),
        &[
            &format!("create /private p {acl}"),
            "get /private",
            "addauth digest alice:secret",
            "get /private",
            "whoami",
            "close",
            "ls /",
            &format!("connect {}", other.addr()),
            "create /only-on-other",
            &format!("connect {}/private", s.addr()),
            "ls /",
            "create /inside",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("Insufficient permission : /private"), "{err}");
    assert!(out.contains("\np\n"), "{out}");
    assert!(out.contains("digest: alice"), "{out}");
    assert!(
        out.contains("WatchedEvent state:Closed type:None path:null"),
        "{out}"
    );
    assert!(err.contains("Not connected"), "{err}");
    assert_eq!(out.matches(CONNECTED).count(), 3, "{out}");
    assert!(out.contains("Created /only-on-other"), "{out}");
    // The new session has no digest identity, and the chroot hides the rest of the tree.
    assert!(err.contains("Insufficient permission : /"), "{err}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = other.client().await;
        assert!(c.check_stat("/only-on-other").await.unwrap().is_some());
        let c = s.client().await;
        assert!(c.check_stat("/only-on-other").await.unwrap().is_none());
    });
}

#[test]
fn unreachable_server_still_gives_a_shell() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = ServerBuilder::new().start();
    let h = tempfile::tempdir().unwrap();
    let (code, out, err) = script(
        &format!("127.0.0.1:{port}"),
        &h.path().join("hist"),
        &["ls /", &format!("connect {}", s.addr()), "ls /"],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.starts_with(&format!("Unable to connect to 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(err.contains("Not connected"), "{err}");
    assert!(out.contains("[zookeeper]"), "{out}");
}

/// A pseudo-terminal pair; the child gets the slave side as stdin, stdout and stderr.
fn openpty() -> (OwnedFd, OwnedFd) {
    let mut master = -1;
    let mut slave = -1;
    let size = libc::winsize {
        ws_row: 24,
        ws_col: 200,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two new descriptors into the out-parameters.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

#[test]
fn terminal_prompt_completion_and_live_events() {
    let s = ServerBuilder::new().start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = s.client().await;
        for p in ["/app", "/app/alpha", "/app/beta"] {
            c.create(p, b"", &common::persistent()).await.unwrap();
        }
    });
    let h = tempfile::tempdir().unwrap();
    let (master, slave) = openpty();
    let mut child = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["cli", "-server", &s.addr()])
        .env("CORRAL_CLI_HISTORY", h.path().join("hist"))
        .env("TERM", "xterm")
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave))
        .spawn()
        .expect("spawn corral cli");
    let screen = Arc::new(Mutex::new(String::new()));
    let mut reader = File::from(master.try_clone().unwrap());
    let sink = screen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let mut keys = File::from(master);
    let wait_for = |what: &str| {
        poll_until(&format!("terminal to show {what:?}"), || {
            screen.lock().unwrap().contains(what).then_some(())
        })
    };
    wait_for(&format!("[zk: {}(CONNECTED) 0] ", s.addr()));
    // Command name and path completion: `sy<TAB> /ap<TAB>` runs `sync /app`.
    keys.write_all(b"sy\t/ap\t\r").unwrap();
    wait_for("Sync is OK");
    // A unique child completes fully: `/app/al<TAB>` is /app/alpha.
    keys.write_all(b"get -w /app/al\t\r").unwrap();
    wait_for(&format!("[zk: {}(CONNECTED) 2] ", s.addr()));
    assert!(
        !screen.lock().unwrap().contains("Node does not exist"),
        "{}",
        screen.lock().unwrap()
    );
    // An event arrives while the shell sits at the prompt.
    rt.block_on(async {
        let c = s.client().await;
        c.set_data("/app/alpha", b"x", None).await.unwrap();
    });
    wait_for("type:NodeDataChanged path:/app/alpha");
    keys.write_all(b"quit\r").unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("shell did not quit: {}", screen.lock().unwrap());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(status.success());
    let saved = fs::read_to_string(h.path().join("hist")).unwrap();
    assert_eq!(
        saved.lines().collect::<Vec<_>>(),
        ["sync /app", "get -w /app/alpha", "quit"]
    );
}
