//! Four-letter words: the layouts that scrapers parse, and the whitelist.

mod common;

use std::collections::HashMap;

use common::raw::{err, Raw};
use common::*;

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

fn field<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{out}"))
}

fn mntr(s: &Server) -> HashMap<String, String> {
    let out = s.four_letter("mntr");
    let mut m = HashMap::new();
    for l in out.lines() {
        let (k, v) = l
            .split_once('\t')
            .unwrap_or_else(|| panic!("mntr line without tab: {l:?}"));
        assert!(k.starts_with("zk_"), "mntr key {k:?}");
        m.insert(k.to_string(), v.to_string());
    }
    m
}

fn num(m: &HashMap<String, String>, k: &str) -> i64 {
    m.get(k)
        .unwrap_or_else(|| panic!("mntr has no {k}"))
        .parse()
        .unwrap_or_else(|_| panic!("mntr {k} is not an integer: {:?}", m[k]))
}

#[test]
fn ruok_and_isro() {
    let s = ServerBuilder::new().start();
    assert_eq!(s.four_letter("ruok"), "imok");
    assert_eq!(s.four_letter("isro"), "rw");
}

#[test]
fn srvr_layout() {
    let s = ServerBuilder::new().start();
    let before = s.four_letter("srvr");
    let ls = lines(&before);
    assert!(ls[0].starts_with("Zookeeper version: "), "{before}");
    let lat = field(&before, "Latency min/avg/max: ");
    let parts: Vec<&str> = lat.split('/').collect();
    assert_eq!(parts.len(), 3, "latency {lat}");
    for p in parts {
        p.parse::<f64>().expect("latency number");
    }
    field(&before, "Received: ").parse::<u64>().unwrap();
    field(&before, "Sent: ").parse::<u64>().unwrap();
    field(&before, "Connections: ").parse::<u64>().unwrap();
    field(&before, "Outstanding: ").parse::<u64>().unwrap();
    let zxid0 = i64::from_str_radix(field(&before, "Zxid: 0x"), 16).unwrap();
    assert_eq!(field(&before, "Mode: "), "standalone");
    let count0: i64 = field(&before, "Node count: ").parse().unwrap();
    assert!(before.ends_with('\n'));

    let mut r = Raw::connect(&s.addr(), 10_000);
    for p in ["/a", "/b", "/c"] {
        assert_eq!(r.create(p, b"", 0).err, err::OK);
    }
    let rep = r.create("/d", b"", 0);
    assert_eq!(rep.err, err::OK);
    let after = s.four_letter("srvr");
    let zxid1 = i64::from_str_radix(field(&after, "Zxid: 0x"), 16).unwrap();
    assert!(zxid1 > zxid0);
    assert_eq!(zxid1, rep.zxid, "srvr Zxid is the last committed zxid");
    let count1: i64 = field(&after, "Node count: ").parse().unwrap();
    assert_eq!(count1, count0 + 4);
    let conns: u64 = field(&after, "Connections: ").parse().unwrap();
    assert!(conns >= 1);
}

#[test]
fn stat_layout_lists_clients() {
    let s = ServerBuilder::new().start();
    let _r = Raw::connect(&s.addr(), 10_000);
    let out = s.four_letter("stat");
    let ls = lines(&out);
    assert!(ls[0].starts_with("Zookeeper version: "), "{out}");
    assert_eq!(ls[1], "Clients:");
    let clients: Vec<&str> = ls[2..]
        .iter()
        .take_while(|l| !l.is_empty())
        .copied()
        .collect();
    assert!(
        clients.len() >= 2,
        "the session and the stat connection itself: {out}"
    );
    for c in &clients {
        assert!(c.starts_with(" /127.0.0.1:"), "{c}");
        assert!(c.contains("(queued="), "{c}");
        assert!(c.contains(",recved="), "{c}");
        assert!(c.contains(",sent="), "{c}");
    }
    field(&out, "Latency min/avg/max: ");
    field(&out, "Zxid: 0x");
    assert_eq!(field(&out, "Mode: "), "standalone");
    field(&out, "Node count: ").parse::<u64>().unwrap();
}

#[test]
fn mntr_layout_and_counts() {
    let s = ServerBuilder::new().start();
    let m0 = mntr(&s);
    assert_eq!(m0["zk_server_state"], "standalone");
    assert!(!m0["zk_version"].is_empty());
    for k in [
        "zk_avg_latency",
        "zk_max_latency",
        "zk_min_latency",
        "zk_packets_received",
        "zk_packets_sent",
        "zk_num_alive_connections",
        "zk_outstanding_requests",
        "zk_znode_count",
        "zk_watch_count",
        "zk_ephemerals_count",
        "zk_approximate_data_size",
        "zk_open_file_descriptor_count",
        "zk_max_file_descriptor_count",
    ] {
        assert!(m0.contains_key(k), "mntr lacks {k}");
    }
    let srvr = s.four_letter("srvr");
    let node_count: i64 = field(&srvr, "Node count: ").parse().unwrap();
    assert_eq!(num(&m0, "zk_znode_count"), node_count);
    assert_eq!(num(&m0, "zk_ephemerals_count"), 0);
    assert_eq!(num(&m0, "zk_watch_count"), 0);

    let mut r = Raw::connect(&s.addr(), 10_000);
    assert_eq!(r.create("/e1", b"12345", 1).err, err::OK);
    assert_eq!(r.create("/e2", b"", 1).err, err::OK);
    assert_eq!(r.create("/p", b"abc", 0).err, err::OK);
    assert_eq!(r.get_data("/p", true).err, err::OK); // data watch
    assert_eq!(r.exists("/nope", true).err, err::NO_NODE); // exists watch
    assert_eq!(r.get_children("/p", true).err, err::OK); // child watch
    let m1 = mntr(&s);
    assert_eq!(num(&m1, "zk_znode_count"), node_count + 3);
    assert_eq!(num(&m1, "zk_ephemerals_count"), 2);
    assert_eq!(num(&m1, "zk_watch_count"), 3);
    assert!(num(&m1, "zk_approximate_data_size") >= num(&m0, "zk_approximate_data_size") + 8);
    assert!(num(&m1, "zk_num_alive_connections") >= 1);
}

#[test]
fn conf_layout() {
    let s = ServerBuilder::new()
        .tick_time_ms(500)
        .min_session_timeout_ms(1500)
        .max_session_timeout_ms(9000)
        .max_client_cnxns(33)
        .start();
    let out = s.four_letter("conf");
    let kv: HashMap<&str, &str> = out.lines().filter_map(|l| l.split_once('=')).collect();
    assert_eq!(kv["clientPort"], s.port().to_string());
    assert_eq!(kv["tickTime"], "500");
    assert_eq!(kv["maxClientCnxns"], "33");
    assert_eq!(kv["minSessionTimeout"], "1500");
    assert_eq!(kv["maxSessionTimeout"], "9000");
    assert!(
        kv["dataDir"].starts_with(s.data_dir().to_str().unwrap()),
        "dataDir {} vs {}",
        kv["dataDir"],
        s.data_dir().display()
    );
    assert_eq!(kv["serverId"], "0");
}

#[test]
fn cons_and_crst() {
    let s = ServerBuilder::new().start();
    let mut r = Raw::connect(&s.addr(), 10_000);
    assert_eq!(r.exists("/", false).err, err::OK);
    let out = s.four_letter("cons");
    let sid = format!("sid=0x{:x}", r.session_id);
    let line = out
        .lines()
        .find(|l| l.contains(&sid))
        .unwrap_or_else(|| panic!("no cons line with {sid}: {out}"));
    assert!(line.starts_with(" /127.0.0.1:"), "{line}");
    for f in [
        "(queued=",
        ",recved=",
        ",sent=",
        ",lop=",
        ",est=",
        ",to=10000",
        ",lcxid=0x",
        ",lzxid=0x",
    ] {
        assert!(line.contains(f), "cons line lacks {f}: {line}");
    }
    assert!(
        out.ends_with("\n\n"),
        "cons ends with an empty line: {out:?}"
    );
    assert_eq!(s.four_letter("crst"), "Connection stats reset.\n");
}

#[test]
fn srst_resets_server_stats() {
    let s = ServerBuilder::new().start();
    let mut r = Raw::connect(&s.addr(), 10_000);
    for _ in 0..20 {
        assert_eq!(r.exists("/", false).err, err::OK);
    }
    let before: u64 = field(&s.four_letter("srvr"), "Received: ").parse().unwrap();
    assert!(before >= 20);
    assert_eq!(s.four_letter("srst"), "Server stats reset.\n");
    let after: u64 = field(&s.four_letter("srvr"), "Received: ").parse().unwrap();
    assert!(
        after < before,
        "Received counter reset: {after} vs {before}"
    );
}

#[test]
fn dump_lists_sessions_and_ephemerals() {
    let s = ServerBuilder::new().start();
    let mut r = Raw::connect(&s.addr(), 10_000);
    assert_eq!(r.create("/eph", b"", 1).err, err::OK);
    let out = s.four_letter("dump");
    let sid = format!("0x{:x}", r.session_id);
    assert!(out.starts_with("SessionTracker dump:\n"), "{out}");
    assert!(out.contains("ephemeral nodes dump:\n"), "{out}");
    assert!(out.contains("Sessions with Ephemerals (1):\n"), "{out}");
    assert!(out.contains(&format!("{sid}:\n\t/eph\n")), "{out}");
}

#[test]
fn envi_layout() {
    let s = ServerBuilder::new().start();
    let out = s.four_letter("envi");
    let ls = lines(&out);
    assert_eq!(ls[0], "Environment:");
    for k in [
        "zookeeper.version=",
        "host.name=",
        "os.name=",
        "os.arch=",
        "user.name=",
        "user.dir=",
    ] {
        assert!(ls.iter().any(|l| l.starts_with(k)), "envi lacks {k}: {out}");
    }
    for l in &ls[1..] {
        assert!(l.contains('='), "envi line {l:?}");
    }
}

#[test]
fn watch_words() {
    let s = ServerBuilder::new().start();
    assert_eq!(
        s.four_letter("wchs"),
        "0 connections watching 0 paths\nTotal watches:0\n"
    );
    let mut r = Raw::connect(&s.addr(), 10_000);
    assert_eq!(r.create("/w", b"", 0).err, err::OK);
    assert_eq!(r.get_data("/w", true).err, err::OK);
    assert_eq!(r.exists("/missing", true).err, err::NO_NODE);
    assert_eq!(
        s.four_letter("wchs"),
        "1 connections watching 2 paths\nTotal watches:2\n"
    );
    let sid = format!("0x{:x}", r.session_id);
    let wchc = s.four_letter("wchc");
    assert!(wchc.starts_with(&format!("{sid}\n")), "{wchc}");
    assert!(wchc.contains("\t/w\n"), "{wchc}");
    assert!(wchc.contains("\t/missing\n"), "{wchc}");
    let wchp = s.four_letter("wchp");
    assert!(wchp.contains(&format!("/w\n\t{sid}\n")), "{wchp}");
    assert!(wchp.contains(&format!("/missing\n\t{sid}\n")), "{wchp}");
}

#[test]
fn dirs_layout() {
    let s = ServerBuilder::new().start();
    let out = s.four_letter("dirs");
    let ls = lines(&out);
    assert_eq!(ls.len(), 2, "{out}");
    ls[0]
        .strip_prefix("datadir_size: ")
        .unwrap()
        .parse::<u64>()
        .unwrap();
    ls[1]
        .strip_prefix("logdir_size: ")
        .unwrap()
        .parse::<u64>()
        .unwrap();
}

#[test]
fn whitelist_is_honoured() {
    let s = ServerBuilder::new()
        .four_letter_whitelist("ruok, stat")
        .start();
    assert_eq!(s.four_letter("ruok"), "imok");
    assert!(s.four_letter("stat").starts_with("Zookeeper version: "));
    // srvr is always enabled (zkServer.sh depends on it), whatever the whitelist says.
    assert!(s.four_letter("srvr").starts_with("Zookeeper version: "));
    assert_eq!(
        s.four_letter("conf"),
        "conf is not executed because it is not in the whitelist.\n"
    );
    // isro is only implicitly enabled in read-only mode.
    assert_eq!(
        s.four_letter("isro"),
        "isro is not executed because it is not in the whitelist.\n"
    );
    assert_eq!(
        s.four_letter("mntr"),
        "mntr is not executed because it is not in the whitelist.\n"
    );
    s.assert_healthy_raw();
}

#[test]
fn unknown_word_is_treated_as_a_frame_and_dropped() {
    let s = ServerBuilder::new().start();
    // "xxxx" is not a command: it is read as a (huge) frame length and the connection closes
    // without output.
    assert_eq!(s.four_letter("xxxx"), "");
    s.assert_healthy_raw();
}
