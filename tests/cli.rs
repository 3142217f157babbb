//! `corral cli` through the real binary against a real server: zkCli's commands, their
//! output layout on stdout, its error wording on stderr, and exit codes.

mod common;

use std::process::Command;

use common::ServerBuilder;

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn cli(addr: &str, args: &[&str]) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_corral"))
        .arg("cli")
        .arg("-server")
        .arg(addr)
        .args(args)
        .output()
        .expect("run corral cli");
    Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs a command that must succeed and returns its stdout.
fn ok(addr: &str, args: &[&str]) -> String {
    let o = cli(addr, args);
    assert_eq!(o.code, Some(0), "{args:?}: stderr {:?}", o.stderr);
    assert_eq!(o.stderr, "", "{args:?}");
    o.stdout
}

/// Runs a command that must fail and returns its stderr.
fn fails(addr: &str, args: &[&str]) -> String {
    let o = cli(addr, args);
    assert_eq!(o.code, Some(1), "{args:?}: stdout {:?}", o.stdout);
    assert_eq!(o.stdout, "", "{args:?}");
    o.stderr
}

const STAT_KEYS: [&str; 11] = [
    "cZxid",
    "ctime",
    "mZxid",
    "mtime",
    "pZxid",
    "cversion",
    "dataVersion",
    "aclVersion",
    "ephemeralOwner",
    "dataLength",
    "numChildren",
];

/// Parses a zkCli stat block into (key, value) pairs, checking the key order.
fn stat_lines(text: &str) -> Vec<(String, String)> {
    let pairs: Vec<(String, String)> = text
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(" = ").expect("key = value");
            (k.to_string(), v.to_string())
        })
        .collect();
    let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, STAT_KEYS);
    pairs
}

fn stat_value<'a>(pairs: &'a [(String, String)], key: &str) -> &'a str {
    &pairs.iter().find(|(k, _)| k == key).expect(key).1
}

#[test]
fn create_ls_get_set_delete() {
    let s = ServerBuilder::new().start();
    let a = s.addr();
    assert_eq!(ok(&a, &["create", "/a", "hello"]), "Created /a\n");
    assert_eq!(ok(&a, &["create", "/a/b"]), "Created /a/b\n");
    assert_eq!(ok(&a, &["create", "/a/c", "x"]), "Created /a/c\n");
    assert_eq!(ok(&a, &["ls", "/a"]), "[b, c]\n");
    assert_eq!(ok(&a, &["ls", "/"]), "[a, zookeeper]\n");
    assert_eq!(ok(&a, &["get", "/a"]), "hello\n");
    assert_eq!(ok(&a, &["get", "/a/b"]), "null\n");
    assert_eq!(ok(&a, &["set", "/a", "world"]), "");
    assert_eq!(ok(&a, &["get", "/a"]), "world\n");
    assert_eq!(ok(&a, &["set", "-v", "1", "/a", "again"]), "");
    assert_eq!(ok(&a, &["delete", "/a/c"]), "");
    assert_eq!(ok(&a, &["ls", "/a"]), "[b]\n");
    assert_eq!(ok(&a, &["delete", "-v", "0", "/a/b"]), "");
    assert_eq!(ok(&a, &["ls", "/a"]), "[]\n");
}

#[test]
fn sequential_ephemeral_and_container() {
    let s = ServerBuilder::new().start();
    let a = s.addr();
    ok(&a, &["create", "/q"]);
    assert_eq!(
        ok(&a, &["create", "-s", "/q/n", "x"]),
        "Created /q/n0000000000\n"
    );
    assert_eq!(
        ok(&a, &["create", "-s", "/q/n"]),
        "Created /q/n0000000001\n"
    );
    assert_eq!(ok(&a, &["create", "-c", "/box"]), "Created /box\n");
    assert_eq!(ok(&a, &["create", "-e", "/eph"]), "Created /eph\n");
    // One-shot mode closes its session on exit, so the ephemeral is already gone.
    assert_eq!(fails(&a, &["get", "/eph"]), "Node does not exist: /eph\n");
    let err = fails(&a, &["create", "-c", "-s", "/bad"]);
    assert!(err.contains("-c cannot be combined"), "{err}");
}

#[test]
fn stat_get_s_ls_s_set_s() {
    let s = ServerBuilder::new().start();
    let a = s.addr();
    ok(&a, &["create", "/a", "hello"]);
    ok(&a, &["create", "/a/b"]);
    let st = stat_lines(&ok(&a, &["stat", "/a"]));
    assert!(stat_value(&st, "cZxid").starts_with("0x"));
    assert_eq!(stat_value(&st, "ephemeralOwner"), "0x0");
    assert_eq!(stat_value(&st, "dataVersion"), "0");
    assert_eq!(stat_value(&st, "cversion"), "1");
    assert_eq!(stat_value(&st, "dataLength"), "5");
    assert_eq!(stat_value(&st, "numChildren"), "1");
    // Java's Date.toString(): `Tue Nov 24 21:44:40 UTC 2026`.
    let ctime: Vec<&str> = stat_value(&st, "ctime").split(' ').collect();
    assert_eq!(ctime.len(), 6, "{ctime:?}");
    assert_eq!(ctime[4], "UTC");
    assert_eq!(ctime[3].len(), 8);

    let got = ok(&a, &["get", "-s", "/a"]);
    let (data, rest) = got.split_once('\n').unwrap();
    assert_eq!(data, "hello");
    stat_lines(rest);

    let got = ok(&a, &["ls", "-s", "/a"]);
    let (kids, rest) = got.split_once('\n').unwrap();
    assert_eq!(kids, "[b]");
    stat_lines(rest);

    let st = stat_lines(&ok(&a, &["set", "-s", "/a", "xy"]));
    assert_eq!(stat_value(&st, "dataVersion"), "1");
    assert_eq!(stat_value(&st, "dataLength"), "2");
}

#[test]
fn ls_recursive_and_deleteall() {
    let s = ServerBuilder::new().start();
    let a = s.addr();
    for p in ["/t", "/t/x", "/t/y", "/t/x/1", "/t/x/2"] {
        ok(&a, &["create", p]);
    }
    assert_eq!(
        ok(&a, &["ls", "-R", "/t"]),
        "/t\n/t/x\n/t/y\n/t/x/1\n/t/x/2\n"
    );
    assert_eq!(ok(&a, &["deleteall", "/t"]), "");
    assert_eq!(fails(&a, &["ls", "/t"]), "Node does not exist: /t\n");
    assert_eq!(fails(&a, &["deleteall", "/t"]), "Node does not exist: /t\n");
}

#[test]
fn get_acl_sync_whoami() {
    let s = ServerBuilder::new().start();
    let a = s.addr();
    ok(&a, &["create", "/a"]);
    assert_eq!(ok(&a, &["getAcl", "/a"]), "'world,'anyone\n: cdrwa\n");
    assert_eq!(ok(&a, &["sync", "/a"]), "Sync is OK\n");
    let who = ok(&a, &["whoami"]);
    assert!(who.starts_with("Auth scheme: User\n"), "{who}");
    assert!(who.contains("ip: 127.0.0.1"), "{who}");
}

#[test]
fn errors_go_to_stderr_with_exit_1() {
    let s = ServerBuilder::new().start();
    let a = s.addr();
    ok(&a, &["create", "/a", "v"]);
    ok(&a, &["create", "/a/b"]);
    assert_eq!(fails(&a, &["get", "/x"]), "Node does not exist: /x\n");
    assert_eq!(fails(&a, &["stat", "/x"]), "Node does not exist: /x\n");
    assert_eq!(fails(&a, &["delete", "/x"]), "Node does not exist: /x\n");
    assert_eq!(fails(&a, &["set", "/x", "d"]), "Node does not exist: /x\n");
    assert_eq!(fails(&a, &["create", "/a"]), "Node already exists: /a\n");
    assert_eq!(
        fails(&a, &["set", "-v", "7", "/a", "d"]),
        "version No is not valid : /a\n"
    );
    assert_eq!(
        fails(&a, &["delete", "-v", "7", "/a/b"]),
        "version No is not valid : /a/b\n"
    );
    assert_eq!(fails(&a, &["delete", "/a"]), "Node not empty: /a\n");
    assert_eq!(
        fails(&a, &["create", "/missing/child"]),
        "Node does not exist: /missing/child\n"
    );
    // Usage errors.
    assert_eq!(
        fails(&a, &["get", "a"]),
        "Path must start with / character\n"
    );
    assert!(fails(&a, &["frobnicate", "/a"]).contains("Command not found: frobnicate"));
    assert!(fails(&a, &["ls"]).contains("wrong number of arguments"));
    assert!(fails(&a, &["set", "-v", "x", "/a", "d"]).contains("not a number"));
}

#[test]
fn connection_failure_is_exit_1() {
    // A port nothing listens on: bind then drop to get a free one.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = fails(&format!("127.0.0.1:{port}"), &["ls", "/"]);
    assert!(err.starts_with("Unable to connect to 127.0.0.1:"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insufficient_permission_and_read_only_acl() {
    use zookeeper_client as zk;
    let s = ServerBuilder::new().start();
    let c = s.client().await;
    let acl = [zk::Acl::new(zk::Permission::READ, zk::AuthId::anyone())];
    let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::new(&acl));
    c.create("/ro", b"d", &opts).await.unwrap();
    let a = s.addr();
    let (set, ro_acl) = tokio::task::spawn_blocking(move || {
        (fails(&a, &["set", "/ro", "x"]), ok(&a, &["getAcl", "/ro"]))
    })
    .await
    .unwrap();
    assert_eq!(set, "Insufficient permission : /ro\n");
    assert_eq!(ro_acl, "'world,'anyone\n: r\n");
}

#[test]
fn create_with_ttl() {
    let s = ServerBuilder::new().extended_types_enabled(true).start();
    let a = s.addr();
    assert_eq!(
        ok(&a, &["create", "-t", "60000", "/ttl", "x"]),
        "Created /ttl\n"
    );
    assert_eq!(ok(&a, &["get", "/ttl"]), "x\n");
    let err = fails(&a, &["create", "-e", "-t", "100", "/bad"]);
    assert!(err.contains("TTLs cannot be used with Ephemeral"), "{err}");
}

#[test]
fn set_acl_with_stat_version_and_recursion() {
    let s = ServerBuilder::new().start();
    let a = s.addr();
    for p in ["/t", "/t/x", "/t/x/y"] {
        ok(&a, &["create", p]);
    }
    assert_eq!(ok(&a, &["setAcl", "/t", "world:anyone:cdrwa"]), "");
    let st = stat_lines(&ok(&a, &["setAcl", "-s", "/t", "world:anyone:cdrwa"]));
    assert_eq!(stat_value(&st, "aclVersion"), "2");
    assert_eq!(
        fails(&a, &["setAcl", "-v", "7", "/t", "world:anyone:cdrwa"]),
        "version No is not valid : /t\n"
    );
    assert_eq!(
        ok(&a, &["setAcl", "-v", "2", "/t", "world:anyone:cdrwa"]),
        ""
    );
    assert_eq!(ok(&a, &["setAcl", "-R", "/t", "world:anyone:cdr"]), "");
    for p in ["/t", "/t/x", "/t/x/y"] {
        assert_eq!(ok(&a, &["getAcl", p]), "'world,'anyone\n: cdr\n", "{p}");
    }
    // Without write permission, set is refused.
    assert_eq!(
        fails(&a, &["set", "/t/x/y", "d"]),
        "Insufficient permission : /t/x/y\n"
    );
    assert_eq!(
        fails(&a, &["setAcl", "/nope", "world:anyone:r"]),
        "Node does not exist: /nope\n"
    );
    assert_eq!(
        fails(&a, &["setAcl", "/t", "bogus"]),
        "bogus does not have the form scheme:id:perm\n"
    );
    let st =
        stat_lines(&ok(&a, &["getAcl", "-s", "/t"]).replacen("'world,'anyone\n: cdr\n", "", 1));
    assert_eq!(stat_value(&st, "numChildren"), "1");
}

#[test]
fn create_with_acl_and_digest_auth() {
    let s = ServerBuilder::new().start();
    let a = s.addr();
    assert_eq!(
        ok(
            &a,
            &["create", "/m", "d", "world:anyone:rw,ip:10.0.0.0/8:cdrwa"]
        ),
        "Created /m\n"
    );
    assert_eq!(
        ok(&a, &["getAcl", "/m"]),
        "'world,'anyone\n: rw\n'ip,'10.0.0.0/8\n: cdrwa\n"
    );
    let id = common::digest_id("u", "p");
    let acl = format!("digest:{id}:cdrwa");
    assert_eq!(
        ok(&a, &["create", "/secret", "s", &acl]),
        "Created /secret\n"
    );
    assert_eq!(
        fails(&a, &["get", "/secret"]),
        "Insufficient permission : /secret\n"
    );
    // addauth succeeds on its own (its effect is tested in the interactive shell).
    assert_eq!(ok(&a, &["addauth", "digest", "u:p"]), "");
    let err = fails(&a, &["create", "/bad", "d", "world:anyone:rq"]);
    assert_eq!(err, "Unknown perm type: q\n");
}

#[test]
fn ephemerals_children_number_config_and_help() {
    let s = ServerBuilder::new().start();
    let a = s.addr();
    for p in ["/n", "/n/a", "/n/a/b", "/n/c"] {
        ok(&a, &["create", p]);
    }
    assert_eq!(ok(&a, &["getAllChildrenNumber", "/n"]), "3\n");
    assert_eq!(ok(&a, &["getAllChildrenNumber", "/n/c"]), "0\n");
    assert_eq!(
        fails(&a, &["getAllChildrenNumber", "/nope"]),
        "Node does not exist: /nope\n"
    );
    // One-shot sessions own no ephemerals once they are gone.
    assert_eq!(ok(&a, &["getEphemerals"]), "[]\n");
    assert_eq!(ok(&a, &["getEphemerals", "/n"]), "[]\n");
    let cfg = ok(&a, &["config", "-s"]);
    let (_, stat) = cfg.split_once('\n').unwrap();
    stat_lines(stat);
    let help = ok(&a, &["help"]);
    for cmd in [
        "setAcl [-s] [-v version] [-R] path acl",
        "removewatches path [-c|-d|-a] [-l]",
        "addWatch [-m mode] path",
    ] {
        assert!(help.contains(cmd), "{cmd} missing from {help}");
    }
}

#[test]
fn chroot_in_the_connect_string() {
    let s = ServerBuilder::new().start();
    let a = s.addr();
    ok(&a, &["create", "/app"]);
    let chrooted = format!("{a}/app");
    assert_eq!(ok(&chrooted, &["create", "/x", "v"]), "Created /x\n");
    assert_eq!(ok(&chrooted, &["ls", "/"]), "[x]\n");
    assert_eq!(ok(&a, &["get", "/app/x"]), "v\n");
    assert_eq!(ok(&chrooted, &["get", "/x"]), "v\n");
    assert_eq!(
        fails(&chrooted, &["get", "/app"]),
        "Node does not exist: /app\n"
    );
}

#[test]
fn watch_options_and_removewatches_one_shot() {
    let s = ServerBuilder::new().start();
    let a = s.addr();
    ok(&a, &["create", "/w", "d"]);
    assert_eq!(ok(&a, &["ls", "-w", "/w"]), "[]\n");
    assert_eq!(ok(&a, &["get", "-w", "/w"]), "d\n");
    stat_lines(&ok(&a, &["stat", "-w", "/w"]));
    assert_eq!(ok(&a, &["addWatch", "/w"]), "");
    assert_eq!(ok(&a, &["addWatch", "-m", "PERSISTENT", "/w"]), "");
    assert!(fails(&a, &["addWatch", "-m", "NEVER", "/w"]).contains("PERSISTENT_RECURSIVE"));
    // A fresh session has no watches to remove.
    assert_eq!(
        fails(&a, &["removewatches", "/w"]),
        "KeeperErrorCode = No such watcher for /w\n"
    );
    assert_eq!(
        fails(&a, &["stat", "-w", "/nope"]),
        "Node does not exist: /nope\n"
    );
}

#[test]
fn session_timeout_option_and_close_in_one_shot() {
    let s = ServerBuilder::fast_sessions().start();
    let a = s.addr();
    let o = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["cli", "-server", &a, "-timeout", "1000", "ls", "/"])
        .output()
        .expect("run corral cli");
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "[zookeeper]\n");
    let o = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["cli", "-server", &a, "-timeout", "soon", "ls", "/"])
        .output()
        .expect("run corral cli");
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(ok(&a, &["close"]), "");
    assert_eq!(
        fails(&a, &["quit"]),
        "history, redo and quit work in the interactive shell\n"
    );
}

#[test]
fn several_hosts_in_the_connect_string() {
    let s = ServerBuilder::new().start();
    // The first address has nothing listening; the client moves on to the next.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let hosts = format!("127.0.0.1:{dead},{}", s.addr());
    assert_eq!(ok(&hosts, &["ls", "/"]), "[zookeeper]\n");
}
