//! The entry point: `corral server <zoo.cfg>`, config errors, unknown keys, SIGTERM,
//! maxClientCnxns, restart on the same port.

mod common;

use std::fs;
use std::process::Command;

use common::raw::{self, err, Raw};
use common::*;

#[test]
fn malformed_line_fails_startup_naming_file_and_line() {
    if is_zookeeper() {
        // java.util.Properties accepts any line; this is corral's own stricter behaviour.
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("zoo.cfg");
    let data = dir.path().join("data");
    fs::write(
        &cfg,
        format!(
            "tickTime=2000\ndataDir={}\nthis line has no equals sign\nclientPort=0\n",
            data.display()
        ),
    )
    .unwrap();
    let (status, out) = run_with_deadline(Command::new(corral_bin()).arg("server").arg(&cfg));
    assert!(!status.success(), "must fail; output:\n{out}");
    assert!(
        out.contains(&format!("{}:3", cfg.display())),
        "error must name {}:3; output:\n{out}",
        cfg.display()
    );
}

#[test]
fn bad_value_fails_startup() {
    if is_zookeeper() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("zoo.cfg");
    fs::write(
        &cfg,
        format!(
            "tickTime=2000\ndataDir={}\nclientPort=notaport\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let (status, out) = run_with_deadline(Command::new(corral_bin()).arg("server").arg(&cfg));
    assert!(!status.success(), "must fail; output:\n{out}");
    assert!(
        out.contains(&format!("{}:3", cfg.display())),
        "output:\n{out}"
    );
    assert!(out.contains("clientPort"), "output:\n{out}");
}

#[test]
fn missing_config_file_fails_with_clear_message() {
    if is_zookeeper() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("nope.cfg");
    let (status, out) = run_with_deadline(Command::new(corral_bin()).arg("server").arg(&cfg));
    assert!(!status.success(), "must fail; output:\n{out}");
    assert!(
        out.contains(cfg.to_str().unwrap()),
        "message must name the file:\n{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_key_starts_and_warns() {
    let s = ServerBuilder::new()
        .extra("someUnknownKeyForTests=42")
        .start();
    s.assert_healthy().await;
    if is_corral() {
        let log = s.log_contents();
        assert!(
            log.contains("someUnknownKeyForTests") && log.to_lowercase().contains("warn"),
            "corral must warn about the unknown key; log:\n{log}"
        );
    }
}

#[test]
fn sigterm_stops_server_and_port_is_reusable() {
    let mut s = ServerBuilder::new().start();
    let mut r = Raw::connect(&s.addr(), 10_000);
    assert_eq!(r.create("/x", b"", 0).err, err::OK);
    let (_status, graceful) = s.sigterm().expect("server was running");
    assert!(graceful, "server must exit on SIGTERM");
    assert!(!is_serving(&s.addr()));
    // Restart on the same port at once (SO_REUSEADDR) with the same data dir.
    s.restart();
    s.assert_healthy_raw();
}

#[test]
fn data_survives_restart() {
    let mut s = ServerBuilder::new().start();
    let mut r = Raw::connect(&s.addr(), 10_000);
    assert_eq!(r.create("/keep", b"value", 0).err, err::OK);
    let set = r.set_data("/keep", b"value2", -1);
    assert_eq!(set.err, err::OK);
    assert_eq!(r.create("/gone", b"", 1).err, err::OK); // ephemeral
    r.close_session();
    s.restart();
    let mut r = Raw::connect(&s.addr(), 10_000);
    let rep = r.get_data("/keep", false);
    assert_eq!(rep.err, err::OK);
    let mut d = rep.dec();
    assert_eq!(d.buffer().unwrap(), b"value2");
    let st = d.stat();
    assert_eq!(st.version, 1);
    assert_eq!(st.mzxid, set.zxid);
    assert_eq!(r.exists("/gone", false).err, err::NO_NODE);
    // New zxids continue after the old ones.
    let c = r.create("/after", b"", 0);
    assert!(c.zxid > set.zxid);
}

#[test]
fn data_survives_kill9() {
    let mut s = ServerBuilder::new().start();
    let mut r = Raw::connect(&s.addr(), 10_000);
    for i in 0..50 {
        assert_eq!(r.create(&format!("/n{i}"), b"v", 0).err, err::OK);
    }
    s.kill9();
    s.restart();
    let mut r = Raw::connect(&s.addr(), 10_000);
    for i in 0..50 {
        assert_eq!(r.exists(&format!("/n{i}"), false).err, err::OK, "/n{i}");
    }
}

#[test]
fn max_client_cnxns_per_ip() {
    let s = ServerBuilder::new().max_client_cnxns(3).start();
    let a = Raw::connect(&s.addr(), 10_000);
    let _b = Raw::connect(&s.addr(), 10_000);
    let _c = Raw::connect(&s.addr(), 10_000);
    // The fourth connection from the same address is dropped without a ConnectResponse.
    let mut t = raw::tcp(&s.addr());
    let _ = std::io::Write::write_all(
        &mut t,
        &raw::connect_request(10_000, 0, &[0u8; 16], Some(false)),
    );
    assert!(raw::wait_closed(&mut t));
    // Freeing a slot lets a new connection in.
    drop(a);
    let mut d = poll_until("a free connection slot", || {
        let mut t = raw::tcp(&s.addr());
        std::io::Write::write_all(
            &mut t,
            &raw::connect_request(10_000, 0, &[0u8; 16], Some(false)),
        )
        .ok()?;
        let body = raw::read_frame(&mut t).ok()?;
        let resp = raw::parse_connect_response(&body);
        (resp.session_id != 0).then_some(t)
    });
    let _ = &mut d;
}
