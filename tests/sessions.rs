//! Sessions: timeout negotiation, expiry, reconnection, wrong passwords, closeSession.

mod common;

use std::time::Duration;

use common::raw::{self, err, Raw};
use common::*;
use zookeeper_client as zk;

#[test]
fn negotiated_timeout_is_clamped_to_configured_bounds() {
    let s = ServerBuilder::new()
        .tick_time_ms(100)
        .min_session_timeout_ms(2000)
        .max_session_timeout_ms(4000)
        .start();
    for (asked, got) in [
        (500, 2000),
        (1999, 2000),
        (2000, 2000),
        (3000, 3000),
        (4000, 4000),
        (10_000, 4000),
        (0, 2000),
    ] {
        let (mut r, resp) = Raw::handshake(&s.addr(), asked, 0, &[0u8; 16], Some(false));
        assert_ne!(resp.session_id, 0);
        assert_eq!(resp.timeout, got, "asked for {asked}");
        r.close_session();
    }
}

#[test]
fn default_bounds_are_two_and_twenty_ticks() {
    let s = ServerBuilder::new().tick_time_ms(100).start();
    let (mut r, resp) = Raw::handshake(&s.addr(), 50, 0, &[0u8; 16], Some(false));
    assert_eq!(resp.timeout, 200);
    r.close_session();
    let (mut r, resp) = Raw::handshake(&s.addr(), 60_000, 0, &[0u8; 16], Some(false));
    assert_eq!(resp.timeout, 2000);
    r.close_session();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_sees_negotiated_timeout() {
    let s = ServerBuilder::new()
        .tick_time_ms(100)
        .min_session_timeout_ms(1000)
        .max_session_timeout_ms(3000)
        .start();
    let c = s.client_with_timeout(Duration::from_secs(30)).await;
    assert_eq!(c.session_timeout(), Duration::from_millis(3000));
}

#[test]
fn session_expires_without_traffic() {
    let s = ServerBuilder::fast_sessions().start();
    let (mut silent, resp) = Raw::handshake(&s.addr(), 200, 0, &[0u8; 16], Some(false));
    assert_eq!(resp.timeout, 200);
    assert_eq!(silent.create("/eph", b"", 1).err, err::OK);
    let mut watcher = Raw::connect(&s.addr(), 30_000);
    assert_eq!(watcher.exists("/eph", true).err, err::OK);
    // Poll (the watcher session pings by issuing requests) until the ephemeral is gone.
    poll_until("ephemeral of expired session deleted", || {
        (watcher.exists("/eph", false).err == err::NO_NODE).then_some(())
    });
    // The expiry fired the other session's watch, before the reply showing the node gone.
    let evs: Vec<(i32, String)> = watcher
        .events
        .iter()
        .map(|e| (e.event_type, e.path.clone()))
        .collect();
    assert_eq!(evs, vec![(raw::event::NODE_DELETED, "/eph".to_string())]);
    // The silent connection was closed by the server.
    assert!(silent.wait_closed());
    // Re-attaching to the expired session is refused.
    let (_r, resp) = Raw::handshake(&s.addr(), 200, resp.session_id, &resp.passwd, Some(false));
    assert_eq!(
        resp.timeout, 0,
        "expired session: timeout 0 in ConnectResponse"
    );
    assert_eq!(resp.session_id, 0);
    s.assert_healthy_raw();
}

#[test]
fn pings_keep_a_session_alive() {
    let s = ServerBuilder::fast_sessions().start();
    let (mut r, resp) = Raw::handshake(&s.addr(), 400, 0, &[0u8; 16], Some(false));
    assert_eq!(resp.timeout, 400);
    assert_eq!(r.create("/alive", b"", 1).err, err::OK);
    // Keep pinging for many session timeouts; the session must survive.
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_millis(2000) {
        r.send(raw::xid::PING, raw::op::PING, &[]);
        let rep = r.read_any().unwrap();
        assert_eq!(rep.xid, raw::xid::PING);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(r.exists("/alive", false).err, err::OK);
}

#[test]
fn reconnect_with_same_session_keeps_ephemerals() {
    let s = ServerBuilder::new().start();
    let (mut a, resp) = Raw::handshake(&s.addr(), 10_000, 0, &[0u8; 16], Some(false));
    let rep = a.create("/mine", b"v", 1);
    assert_eq!(rep.err, err::OK);
    // Drop the TCP connection without closing the session.
    a.stream.shutdown(std::net::Shutdown::Both).unwrap();
    drop(a);
    let (mut b, resp2) = Raw::handshake(
        &s.addr(),
        10_000,
        resp.session_id,
        &resp.passwd,
        Some(false),
    );
    assert_eq!(resp2.session_id, resp.session_id);
    assert_eq!(resp2.timeout, 10_000);
    assert_eq!(resp2.passwd, resp.passwd);
    let rep = b.exists("/mine", false);
    assert_eq!(rep.err, err::OK);
    let st = rep.dec().stat();
    assert_eq!(st.ephemeral_owner, resp.session_id);
    // Still the owner: closing the session deletes it.
    b.close_session();
    let mut c = Raw::connect(&s.addr(), 10_000);
    assert_eq!(c.exists("/mine", false).err, err::NO_NODE);
}

#[test]
fn wrong_password_means_session_expired() {
    let s = ServerBuilder::new().start();
    let (mut a, resp) = Raw::handshake(&s.addr(), 10_000, 0, &[0u8; 16], Some(false));
    assert_eq!(a.create("/owned", b"", 1).err, err::OK);
    let mut bad_pw = resp.passwd.clone();
    bad_pw[0] ^= 0xff;
    let (mut b, resp2) = Raw::handshake(&s.addr(), 10_000, resp.session_id, &bad_pw, Some(false));
    assert_eq!(resp2.timeout, 0);
    assert_eq!(resp2.session_id, 0);
    assert_eq!(resp2.passwd, vec![0u8; 16]);
    assert!(b.wait_closed());
    // The real session is not harmed. (ZooKeeper 3.8 closes the session's current connection
    // before checking the password, so `a` itself may have been disconnected: re-attach.)
    drop(a);
    let mut other = Raw::connect(&s.addr(), 10_000);
    let rep = other.exists("/owned", false);
    assert_eq!(rep.err, err::OK);
    assert_eq!(rep.dec().stat().ephemeral_owner, resp.session_id);
    let (mut a2, resp3) = Raw::handshake(
        &s.addr(),
        10_000,
        resp.session_id,
        &resp.passwd,
        Some(false),
    );
    assert_eq!(resp3.session_id, resp.session_id);
    assert_eq!(a2.exists("/owned", false).err, err::OK);
    s.assert_healthy_raw();
}

#[test]
fn unknown_session_id_means_session_expired() {
    let s = ServerBuilder::new().start();
    let (mut b, resp) = Raw::handshake(&s.addr(), 10_000, 0x1234_5678, &[7u8; 16], Some(false));
    assert_eq!(resp.timeout, 0);
    assert_eq!(resp.session_id, 0);
    assert!(b.wait_closed());
    s.assert_healthy_raw();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reattaches_to_session() {
    let s = ServerBuilder::new().start();
    let a = zk::Client::connector()
        .with_detached()
        .with_session_timeout(Duration::from_secs(10))
        .connect(&s.addr())
        .await
        .unwrap();
    let (stat, _) = a.create("/eph", b"", &ephemeral()).await.unwrap();
    assert_eq!(stat.ephemeral_owner, a.session_id().0);
    let info = a.session().clone();
    let sid = a.session_id();
    drop(a); // detached: the session stays open
    let b = zk::Client::connector()
        .with_session(info)
        .with_session_timeout(Duration::from_secs(10))
        .connect(&s.addr())
        .await
        .unwrap();
    assert_eq!(b.session_id(), sid);
    let (_, st) = b.get_data("/eph").await.unwrap();
    assert_eq!(st.ephemeral_owner, b.session_id().0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_session_deletes_ephemerals_and_fires_watches() {
    let s = ServerBuilder::new().start();
    let owner = s.client().await;
    let observer = s.client().await;
    owner.create("/dir", b"", &persistent()).await.unwrap();
    let (st, _) = owner.create("/dir/e", b"x", &ephemeral()).await.unwrap();
    assert_eq!(st.ephemeral_owner, owner.session_id().0);
    assert_ne!(owner.session_id(), observer.session_id());

    let (_, _, data_w) = observer.get_and_watch_data("/dir/e").await.unwrap();
    let (children, child_w) = observer.list_and_watch_children("/dir").await.unwrap();
    assert_eq!(children, vec!["e".to_string()]);
    let (_, exist_w) = observer.check_and_watch_stat("/dir/e").await.unwrap();

    drop(owner); // closes the session

    let ev = within("NodeDeleted", data_w.changed()).await;
    assert_eq!(ev.event_type, zk::EventType::NodeDeleted);
    assert_eq!(ev.path, "/dir/e");
    let ev = within("exists NodeDeleted", exist_w.changed()).await;
    assert_eq!(ev.event_type, zk::EventType::NodeDeleted);
    let ev = within("NodeChildrenChanged", child_w.changed()).await;
    assert_eq!(ev.event_type, zk::EventType::NodeChildrenChanged);
    assert_eq!(ev.path, "/dir");
    assert_eq!(observer.check_stat("/dir/e").await.unwrap(), None);
    let (_, dir) = observer.get_data("/dir").await.unwrap();
    assert_eq!(dir.num_children, 0);
    assert_eq!(dir.cversion, 2, "one create and one delete of a child");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_session_is_reported_to_client() {
    let s = ServerBuilder::fast_sessions().start();
    let proxy = common::proxy::Proxy::start(&s.addr()).await;
    let c = zk::Client::connector()
        .with_session_timeout(Duration::from_millis(400))
        .connect(&proxy.addr())
        .await
        .unwrap();
    assert_eq!(c.session_timeout(), Duration::from_millis(400));
    let mut state = c.state_watcher();
    c.create("/e", b"", &ephemeral()).await.unwrap();
    let observer = s.client().await;
    // Partition the client from the server until the server expires the session.
    proxy.block();
    proxy.cut();
    poll_until_async("ephemeral of partitioned session gone", || async {
        (observer.check_stat("/e").await.unwrap().is_none()).then_some(())
    })
    .await;
    proxy.unblock();
    // On reconnecting, the client learns that its session expired.
    let st = within("Expired state", async {
        loop {
            let st = state.changed().await;
            if st.is_terminated() {
                return st;
            }
        }
    })
    .await;
    assert_eq!(st, zk::SessionState::Expired);
    assert_eq!(
        c.check_stat("/").await.unwrap_err(),
        zk::Error::SessionExpired
    );
    s.assert_healthy().await;
}

#[test]
fn client_that_saw_a_future_zxid_is_refused() {
    let s = ServerBuilder::new().start();
    let mut t = raw::tcp(&s.addr());
    // lastZxidSeen far beyond anything the server has: no ConnectResponse, connection closed.
    let body = raw::Enc::new()
        .int(0)
        .long(1 << 40)
        .int(10_000)
        .long(0)
        .buffer(&[0u8; 16])
        .bool(false)
        .into_vec();
    std::io::Write::write_all(&mut t, &raw::frame(&body)).unwrap();
    let mut buf = [0u8; 64];
    let n = std::io::Read::read(&mut t, &mut buf).unwrap_or(0);
    assert_eq!(n, 0, "no ConnectResponse expected");
    s.assert_healthy_raw();
}

#[test]
fn connection_is_closed_after_close_session() {
    let s = ServerBuilder::new().start();
    let mut r = Raw::connect(&s.addr(), 10_000);
    assert_eq!(r.create("/eph", b"", 1).err, err::OK);
    let x = r.next_xid();
    r.send(x, raw::op::CLOSE_SESSION, &[]);
    let rep = r.read_reply();
    assert_eq!(rep.xid, x);
    assert_eq!(rep.err, err::OK);
    assert!(rep.body.is_empty());
    assert!(r.wait_closed());
    let mut o = Raw::connect(&s.addr(), 10_000);
    assert_eq!(o.exists("/eph", false).err, err::NO_NODE);
}

#[test]
fn odd_handshakes_for_new_sessions() {
    let s = ServerBuilder::new()
        .tick_time_ms(100)
        .min_session_timeout_ms(300)
        .start();
    // Negative timeout: clamped to the minimum.
    let (mut r, resp) = Raw::handshake(&s.addr(), -5, 0, &[0u8; 16], Some(false));
    assert_ne!(resp.session_id, 0);
    assert_eq!(resp.timeout, 300);
    r.close_session();
    // The password of a new session is ignored, whatever its length; the server issues 16 bytes.
    for pw in [&[][..], &[1u8; 8][..], &[2u8; 40][..]] {
        let (mut r, resp) = Raw::handshake(&s.addr(), 10_000, 0, pw, Some(false));
        assert_ne!(resp.session_id, 0);
        assert_eq!(resp.passwd.len(), 16);
        r.close_session();
    }
}
