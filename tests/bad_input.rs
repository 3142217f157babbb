//! Codec and bad input: pipelining, old handshakes, oversize frames, garbage, unknown opcodes,
//! special xids. After every bad input the server must keep serving other sessions.

mod common;

use common::raw::{self, err, op, xid, Enc, Raw};
use common::*;
use std::io::Write;

#[test]
fn requests_sent_in_the_same_write_as_the_handshake_are_served() {
    // A client may send requests right behind its ConnectRequest, before the answer; the
    // server reads them together and must not lose or reorder what came with the handshake.
    let s = ServerBuilder::new().start();
    let mut setup = Raw::connect(&s.addr(), 10_000);
    assert_eq!(setup.create("/behind", b"v1", 0).err, err::OK);
    let mut bytes = raw::connect_request(10_000, 0, &[0u8; 16], Some(false));
    for x in 1..=3 {
        bytes.extend(raw::path_read_frame(x, op::GET_DATA, "/behind"));
    }
    // One byte of a fourth request: it must wait for the rest, not end the connection.
    let tail = raw::path_read_frame(4, op::EXISTS, "/behind");
    bytes.push(tail[0]);
    let mut stream = raw::tcp(&s.addr());
    stream.write_all(&bytes).unwrap();
    let resp = raw::parse_connect_response(&raw::read_frame(&mut stream).unwrap());
    assert_ne!(resp.session_id, 0, "the session must be established");
    let mut r = Raw::established(stream, &resp);
    for x in 1..=3 {
        let rep = r.read_reply();
        assert_eq!((rep.xid, rep.err), (x, err::OK));
        assert_eq!(rep.dec().buffer().unwrap(), b"v1");
    }
    r.write_raw(&tail[1..]).unwrap();
    let rep = r.read_reply();
    assert_eq!((rep.xid, rep.err), (4, err::OK));
    s.assert_healthy_raw();
}

#[test]
fn pipelining_past_the_in_flight_cap_waits_instead_of_failing() {
    // The server reads at most 1,000 requests of a connection ahead of its replies; a client
    // that sends 2,500 at once is slowed down, not cut off, and gets every reply in order.
    let s = ServerBuilder::new().start();
    let mut r = Raw::connect(&s.addr(), 10_000);
    assert_eq!(r.create("/cap", b"", 0).err, err::OK);
    let mut bytes = Vec::new();
    for i in 0..2_500 {
        let path = if i % 2 == 0 { "/cap" } else { "/cap-missing" };
        bytes.extend(raw::path_read_frame(10 + i, op::EXISTS, path));
    }
    r.write_raw(&bytes).unwrap();
    for i in 0..2_500 {
        let rep = r.read_reply();
        assert_eq!(rep.xid, 10 + i, "replies must come back in request order");
        let want = if i % 2 == 0 { err::OK } else { err::NO_NODE };
        assert_eq!(rep.err, want, "reply {i}");
    }
    s.assert_healthy_raw();
}

#[test]
fn pipelined_requests_get_replies_in_order() {
    let s = ServerBuilder::new().start();
    let mut r = Raw::connect(&s.addr(), 10_000);
    assert_eq!(r.create("/pipe", b"hello", 0).err, err::OK);
    // 100 getData and a few other requests in one write, no waiting in between.
    let mut bytes = Vec::new();
    for i in 0..100 {
        bytes.extend(raw::path_read_frame(1000 + i, op::GET_DATA, "/pipe"));
        if i % 10 == 5 {
            // interleave a write and a failing read: order must still be kept
            bytes.extend(raw::path_read_frame(
                5000 + i,
                op::EXISTS,
                "/does-not-exist",
            ));
        }
    }
    r.write_raw(&bytes).unwrap();
    let mut expected = Vec::new();
    for i in 0..100 {
        expected.push(1000 + i);
        if i % 10 == 5 {
            expected.push(5000 + i);
        }
    }
    for x in expected {
        let rep = r.read_reply();
        assert_eq!(rep.xid, x, "replies must come back in request order");
        if x >= 5000 {
            assert_eq!(rep.err, err::NO_NODE);
        } else {
            assert_eq!(rep.err, err::OK);
            let mut d = rep.dec();
            assert_eq!(d.buffer().unwrap(), b"hello");
            let st = d.stat();
            assert_eq!(st.data_length, 5);
        }
    }
    s.assert_healthy_raw();
}

#[test]
fn handshake_without_read_only_byte_gets_reply_without_it() {
    let s = ServerBuilder::new().start();
    // 3.4-era ConnectRequest: no trailing readOnly byte.
    let (mut old, resp) = Raw::handshake(&s.addr(), 10_000, 0, &[0u8; 16], None);
    assert_ne!(resp.session_id, 0);
    assert_eq!(resp.timeout, 10_000);
    assert_eq!(resp.passwd.len(), 16);
    assert_eq!(
        resp.read_only, None,
        "old clients must not get the readOnly byte"
    );
    assert_eq!(resp.frame_len, 4 + 4 + 8 + 4 + 16);
    // The session works.
    assert_eq!(old.create("/old", b"x", 0).err, err::OK);
    assert_eq!(old.get_data("/old", false).err, err::OK);

    // A modern handshake gets the trailing byte.
    let (mut new, resp) = Raw::handshake(&s.addr(), 10_000, 0, &[0u8; 16], Some(false));
    assert_eq!(resp.read_only, Some(false));
    assert_eq!(resp.frame_len, 4 + 4 + 8 + 4 + 16 + 1);
    assert_eq!(new.get_data("/old", false).err, err::OK);
    s.assert_healthy_raw();
}

#[test]
fn oversize_frame_closes_only_that_connection() {
    let s = ServerBuilder::new().jute_max_buffer(4096).start();
    let mut good = Raw::connect(&s.addr(), 10_000);
    assert_eq!(good.create("/keep", b"x", 0).err, err::OK);

    let mut bad = Raw::connect(&s.addr(), 10_000);
    let mut bytes = (64 * 1024i32).to_be_bytes().to_vec();
    bytes.extend(vec![0u8; 1024]);
    let _ = bad.write_raw(&bytes);
    assert!(
        bad.wait_closed(),
        "server must close a connection sending an oversize frame"
    );

    // The other session is unaffected.
    assert_eq!(good.get_data("/keep", false).err, err::OK);
    s.assert_healthy_raw();
}

#[test]
fn huge_length_prefix_closes_only_that_connection() {
    let s = ServerBuilder::new().start();
    let mut good = Raw::connect(&s.addr(), 10_000);
    let mut bad = Raw::connect(&s.addr(), 10_000);
    let _ = bad.write_raw(&0x7fff_fff0i32.to_be_bytes());
    assert!(bad.wait_closed());
    assert_eq!(good.exists("/", false).err, err::OK);
    s.assert_healthy_raw();
}

#[test]
fn negative_length_prefix_closes_connection() {
    let s = ServerBuilder::new().start();
    let mut bad = Raw::connect(&s.addr(), 10_000);
    let _ = bad.write_raw(&(-2i32).to_be_bytes());
    assert!(bad.wait_closed());
    s.assert_healthy_raw();
}

#[test]
fn garbage_after_handshake_closes_only_that_connection() {
    let s = ServerBuilder::new().start();
    let mut good = Raw::connect(&s.addr(), 10_000);
    assert_eq!(good.create("/g", b"", 0).err, err::OK);

    // A frame too short to hold a request header.
    let mut bad = Raw::connect(&s.addr(), 10_000);
    let _ = bad.write_raw(b"\x00\x00\x00\x03abc");
    assert!(
        bad.wait_closed(),
        "undecodable request header must close the connection"
    );

    // Random bytes that are not even a sensible frame.
    let mut bad2 = Raw::connect(&s.addr(), 10_000);
    let _ = bad2.write_raw(&[0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06]);
    assert!(bad2.wait_closed());

    assert_eq!(good.get_data("/g", false).err, err::OK);
    s.assert_healthy_raw();
}

#[test]
fn garbage_instead_of_handshake_closes_connection() {
    let s = ServerBuilder::new().start();
    let mut t = raw::tcp(&s.addr());
    // A 5-byte frame cannot be a ConnectRequest.
    t.write_all(b"\x00\x00\x00\x05hello").unwrap();
    assert!(raw::wait_closed(&mut t));
    s.assert_healthy_raw();
}

#[test]
fn unknown_opcode_gets_unimplemented_then_connection_closes() {
    let s = ServerBuilder::new().start();
    let mut good = Raw::connect(&s.addr(), 10_000);
    let mut r = Raw::connect(&s.addr(), 10_000);
    r.send(42, 77, &[]);
    let rep = r.read_reply();
    assert_eq!(rep.xid, 42);
    assert_eq!(rep.err, err::UNIMPLEMENTED);
    assert!(rep.body.is_empty());
    // ZooKeeper answers Unimplemented and then closes the connection (not the session).
    assert!(r.wait_closed());
    assert_eq!(good.exists("/", false).err, err::OK);
    s.assert_healthy_raw();
}

#[test]
fn ping_with_special_xid() {
    let s = ServerBuilder::new().start();
    let mut r = Raw::connect(&s.addr(), 10_000);
    r.send(xid::PING, op::PING, &[]);
    let rep = r.read_any().unwrap();
    assert_eq!(rep.xid, xid::PING);
    assert_eq!(rep.err, err::OK);
    assert!(rep.body.is_empty());
    // Normal requests still work after pings, and pings interleave in order.
    r.send(
        7,
        op::EXISTS,
        &Enc::new().string("/").bool(false).into_vec(),
    );
    r.send(xid::PING, op::PING, &[]);
    r.send(
        8,
        op::EXISTS,
        &Enc::new().string("/zookeeper").bool(false).into_vec(),
    );
    let xs: Vec<i32> = (0..3).map(|_| r.read_any().unwrap().xid).collect();
    assert_eq!(xs, vec![7, xid::PING, 8]);
    s.assert_healthy_raw();
}

#[test]
fn auth_reply_uses_auth_xid() {
    let s = ServerBuilder::new().start();
    let mut r = Raw::connect(&s.addr(), 10_000);
    let body = Enc::new()
        .int(0)
        .string("digest")
        .buffer(b"bob:secret")
        .into_vec();
    r.send(xid::AUTH, op::AUTH, &body);
    let rep = r.read_any().unwrap();
    assert_eq!(rep.xid, xid::AUTH);
    assert_eq!(rep.err, err::OK);
    s.assert_healthy_raw();
}

#[test]
fn auth_with_unknown_scheme_fails_session() {
    let s = ServerBuilder::new().start();
    let mut r = Raw::connect(&s.addr(), 10_000);
    let body = Enc::new()
        .int(0)
        .string("nosuchscheme")
        .buffer(b"x")
        .into_vec();
    r.send(xid::AUTH, op::AUTH, &body);
    let rep = r.read_any().unwrap();
    assert_eq!(rep.xid, xid::AUTH);
    assert_eq!(rep.err, err::AUTH_FAILED);
    assert!(r.wait_closed(), "auth failure closes the connection");
    s.assert_healthy_raw();
}

#[test]
fn request_body_truncated_closes_connection() {
    let s = ServerBuilder::new().start();
    let mut r = Raw::connect(&s.addr(), 10_000);
    // getData header with a path length claiming more bytes than the frame holds.
    let body = Enc::new()
        .int(1)
        .int(op::GET_DATA)
        .int(100)
        .raw(b"/ab")
        .into_vec();
    let _ = r.write_raw(&raw::frame(&body));
    assert!(r.wait_closed());
    s.assert_healthy_raw();
}

#[test]
fn zero_length_frame_closes_connection() {
    let s = ServerBuilder::new().start();
    let mut r = Raw::connect(&s.addr(), 10_000);
    let _ = r.write_raw(&0i32.to_be_bytes());
    assert!(r.wait_closed());
    s.assert_healthy_raw();
}

#[test]
fn data_near_and_over_jute_max_buffer() {
    let s = ServerBuilder::new().jute_max_buffer(4096).start();
    let mut r = Raw::connect(&s.addr(), 10_000);
    // Well under the limit (request frame ~3 KiB): fine.
    let data = vec![7u8; 3000];
    assert_eq!(r.create("/big", &data, 0).err, err::OK);
    let rep = r.get_data("/big", false);
    assert_eq!(rep.dec().buffer().unwrap(), data);
    // A request frame over the limit closes the connection; nothing is written.
    let huge = vec![8u8; 8000];
    let body = Enc::new()
        .int(99)
        .int(op::SET_DATA)
        .string("/big")
        .buffer(&huge)
        .int(-1)
        .into_vec();
    let _ = r.write_raw(&raw::frame(&body));
    assert!(r.wait_closed());
    let mut o = Raw::connect(&s.addr(), 10_000);
    let rep = o.get_data("/big", false);
    assert_eq!(rep.dec().buffer().unwrap(), data);
}

#[test]
fn pipelined_writes_and_reads_keep_session_order() {
    let s = ServerBuilder::new().start();
    let mut r = Raw::connect(&s.addr(), 10_000);
    assert_eq!(r.create("/rw", b"", 0).err, err::OK);
    // setData i, getData, setData i+1, getData, ... all in one write: every read must see the
    // session's preceding write (per-session FIFO, read-your-writes).
    let mut bytes = Vec::new();
    for i in 0..50 {
        let set = Enc::new()
            .int(2 * i + 1)
            .int(op::SET_DATA)
            .string("/rw")
            .buffer(i.to_string().as_bytes())
            .int(-1)
            .into_vec();
        let get = Enc::new()
            .int(2 * i + 2)
            .int(op::GET_DATA)
            .string("/rw")
            .bool(false)
            .into_vec();
        bytes.extend(raw::frame(&set));
        bytes.extend(raw::frame(&get));
    }
    // Also a create followed immediately by reads of the new node.
    bytes.extend(raw::frame(
        &Enc::new()
            .int(1000)
            .int(op::CREATE)
            .string("/rw/new")
            .buffer(b"n")
            .acls(raw::WORLD_ALL)
            .int(0)
            .into_vec(),
    ));
    bytes.extend(raw::frame(
        &Enc::new()
            .int(1001)
            .int(op::GET_DATA)
            .string("/rw/new")
            .bool(false)
            .into_vec(),
    ));
    r.write_raw(&bytes).unwrap();
    let mut last_zxid = 0;
    for i in 0..50 {
        let set = r.read_reply();
        assert_eq!(set.xid, 2 * i + 1);
        assert_eq!(set.err, err::OK);
        assert!(set.zxid > last_zxid);
        last_zxid = set.zxid;
        let st = set.dec().stat();
        assert_eq!(st.version, i + 1);
        let get = r.read_reply();
        assert_eq!(get.xid, 2 * i + 2);
        let mut d = get.dec();
        assert_eq!(d.buffer().unwrap(), i.to_string().as_bytes());
        assert_eq!(d.stat().version, i + 1);
    }
    let c = r.read_reply();
    assert_eq!((c.xid, c.err), (1000, err::OK));
    let g = r.read_reply();
    assert_eq!((g.xid, g.err), (1001, err::OK));
    assert_eq!(g.dec().buffer().unwrap(), b"n");
}

fn mh(t: i32, done: bool) -> Vec<u8> {
    Enc::new().int(t).bool(done).int(-1).into_vec()
}

#[test]
fn malformed_multi_gets_marshalling_error_and_connection_survives() {
    let s = ServerBuilder::new().start();
    let mut r = Raw::connect(&s.addr(), 10_000);
    let create = Enc::new()
        .string("/mx")
        .buffer(b"")
        .acls(raw::WORLD_ALL)
        .int(0)
        .into_vec();
    let cases: Vec<(&str, i32, Vec<u8>)> = vec![
        (
            "read op inside multi",
            op::MULTI,
            [
                mh(op::GET_DATA, false),
                Enc::new().string("/").bool(false).into_vec(),
                mh(-1, true),
            ]
            .concat(),
        ),
        (
            "unknown op inside multi",
            op::MULTI,
            [mh(77, false), mh(-1, true)].concat(),
        ),
        (
            "truncated multi",
            op::MULTI,
            [mh(op::CREATE, false), Enc::new().string("/x").into_vec()].concat(),
        ),
        (
            "write op inside multiRead",
            op::MULTI_READ,
            [mh(op::CREATE, false), create.clone(), mh(-1, true)].concat(),
        ),
    ];
    for (what, opcode, body) in cases {
        let rep = r.call(opcode, &body);
        assert_eq!(rep.err, err::MARSHALLING_ERROR, "{what}");
        // The connection stays usable, and nothing was written.
        assert_eq!(r.exists("/mx", false).err, err::NO_NODE, "{what}");
    }
    s.assert_healthy_raw();
}

#[test]
fn bad_create_requests_get_error_codes_and_connection_survives() {
    let s = ServerBuilder::new().start();
    let mut r = Raw::connect(&s.addr(), 10_000);
    let create = |path: &[u8], data: Enc, acls: Enc, flags: i32| {
        Enc::new()
            .buffer(path)
            .raw(&data.into_vec())
            .raw(&acls.into_vec())
            .int(flags)
            .into_vec()
    };
    let world = || Enc::new().acls(raw::WORLD_ALL);
    let empty = || Enc::new().buffer(b"");
    // Unknown create flags.
    for flags in [99, -1, 7] {
        let rep = r.call(op::CREATE, &create(b"/f", empty(), world(), flags));
        assert_eq!(rep.err, err::BAD_ARGUMENTS, "flags {flags}");
    }
    // TTL flags through create2 (not createTTL).
    let rep = r.call(op::CREATE2, &create(b"/f", empty(), world(), 5));
    assert_eq!(rep.err, err::BAD_ARGUMENTS);
    // Path that is not valid UTF-8.
    let rep = r.call(op::CREATE, &create(b"/\xff\xfeb", empty(), world(), 0));
    assert_eq!(rep.err, err::BAD_ARGUMENTS);
    // Undecodable bodies of a write: MarshallingError, the connection stays.
    let rep = r.call(op::CREATE, &create(b"/f", Enc::new().int(-5), world(), 0));
    assert_eq!(rep.err, err::MARSHALLING_ERROR);
    let rep = r.call(
        op::CREATE,
        &create(b"/f", empty(), Enc::new().int(1_000_000_000), 0),
    );
    assert_eq!(rep.err, err::MARSHALLING_ERROR);
    assert_eq!(r.exists("/f", false).err, err::NO_NODE);
    // A container created through plain create (flags 4) is accepted.
    assert_eq!(
        r.call(op::CREATE, &create(b"/c", empty(), world(), 4)).err,
        err::OK
    );
    s.assert_healthy_raw();
}
