//! ACLs: schemes (world, auth, digest, ip, super), each permission per operation, invalid ACLs.

mod common;

use common::raw::{err, op, Enc, Raw};
use common::*;
use zookeeper_client as zk;
use zookeeper_client::Permission as P;

fn world(perms: P) -> Vec<zk::Acl> {
    vec![zk::Acl::new(perms, zk::AuthId::anyone())]
}

fn opts(acls: &[zk::Acl]) -> zk::CreateOptions<'_> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::new(acls))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_permission_guards_its_operations() {
    let s = ServerBuilder::new().start();
    let c = s.client().await;
    let all_but = |p: P| {
        let raw = [P::READ, P::WRITE, P::CREATE, P::DELETE, P::ADMIN]
            .into_iter()
            .filter(|x| *x != p)
            .fold(P::NONE, |a, b| a | b);
        world(raw)
    };

    // READ: getData, getChildren, getACL (READ or ADMIN), getAllChildrenNumber.
    let acl = all_but(P::READ);
    c.create("/noread", b"d", &opts(&acl)).await.unwrap();
    c.create("/noread/kid", b"", &persistent()).await.unwrap();
    assert_eq!(c.get_data("/noread").await.unwrap_err(), zk::Error::NoAuth);
    assert_eq!(
        c.list_children("/noread").await.unwrap_err(),
        zk::Error::NoAuth
    );
    assert_eq!(
        c.get_children("/noread").await.unwrap_err(),
        zk::Error::NoAuth
    );
    assert_eq!(
        c.count_descendants_number("/noread").await.unwrap_err(),
        zk::Error::NoAuth
    );
    // exists needs READ on an existing node since 3.9 (ZOOKEEPER-2590); 3.8 did not guard it.
    if common::is_zookeeper_38() {
        assert!(c.check_stat("/noread").await.unwrap().is_some());
    } else {
        assert_eq!(
            c.check_stat("/noread").await.unwrap_err(),
            zk::Error::NoAuth
        );
    }
    // getACL is allowed through ADMIN.
    assert_eq!(c.get_acl("/noread").await.unwrap().0, acl);
    // Other permissions still work.
    c.set_data("/noread", b"e", None).await.unwrap();

    // WRITE: setData.
    c.create("/nowrite", b"", &opts(&all_but(P::WRITE)))
        .await
        .unwrap();
    assert_eq!(
        c.set_data("/nowrite", b"x", None).await.unwrap_err(),
        zk::Error::NoAuth
    );
    c.get_data("/nowrite").await.unwrap();

    // CREATE: create children.
    c.create("/nocreate", b"", &opts(&all_but(P::CREATE)))
        .await
        .unwrap();
    assert_eq!(
        c.create("/nocreate/x", b"", &persistent())
            .await
            .unwrap_err(),
        zk::Error::NoAuth
    );
    let mut w = c.new_multi_writer();
    w.add_create("/nocreate/y", b"", &persistent()).unwrap();
    assert_eq!(
        w.commit().await.unwrap_err(),
        zk::MultiWriteError::OperationFailed {
            index: 0,
            source: zk::Error::NoAuth
        }
    );

    // DELETE: delete children (checked on the parent); the node's own ACL does not matter.
    c.create("/nodelete", b"", &opts(&all_but(P::DELETE)))
        .await
        .unwrap();
    c.create("/nodelete/x", b"", &persistent()).await.unwrap();
    assert_eq!(
        c.delete("/nodelete/x", None).await.unwrap_err(),
        zk::Error::NoAuth
    );
    c.delete("/noread/kid", None).await.unwrap();
    c.create("/parent-ok", b"", &persistent()).await.unwrap();
    c.create("/parent-ok/x", b"", &opts(&world(P::NONE)))
        .await
        .unwrap();
    c.delete("/parent-ok/x", None).await.unwrap();

    // ADMIN: setACL; getACL still allowed through READ.
    c.create("/noadmin", b"", &opts(&all_but(P::ADMIN)))
        .await
        .unwrap();
    assert_eq!(
        c.set_acl("/noadmin", &zk::Acls::anyone_all(), None)
            .await
            .unwrap_err(),
        zk::Error::NoAuth
    );
    c.get_acl("/noadmin").await.unwrap();

    // Neither READ nor ADMIN: getACL refused.
    c.create("/nothing", b"", &opts(&world(P::WRITE)))
        .await
        .unwrap();
    assert_eq!(c.get_acl("/nothing").await.unwrap_err(), zk::Error::NoAuth);
    s.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_scheme() {
    let s = ServerBuilder::new().start();
    let bob_id = digest_id("bob", "pw");
    let acl = vec![zk::Acl::new(P::ALL, zk::AuthId::new("digest", &bob_id))];
    let bob = zk::Client::connector()
        .with_auth("digest", b"bob:pw")
        .connect(&s.addr())
        .await
        .unwrap();
    bob.create("/bob", b"secret", &opts(&acl)).await.unwrap();
    assert_eq!(bob.get_data("/bob").await.unwrap().0, b"secret");
    bob.set_data("/bob", b"s2", None).await.unwrap();

    let anon = s.client().await;
    assert_eq!(anon.get_data("/bob").await.unwrap_err(), zk::Error::NoAuth);
    assert_eq!(
        anon.set_data("/bob", b"x", None).await.unwrap_err(),
        zk::Error::NoAuth
    );

    // A wrong password authenticates as a different identity: still refused.
    let mallory = s.client().await;
    mallory.auth("digest", b"bob:wrong").await.unwrap();
    assert_eq!(
        mallory.get_data("/bob").await.unwrap_err(),
        zk::Error::NoAuth
    );
    // Adding the right credentials later works.
    mallory.auth("digest", b"bob:pw").await.unwrap();
    assert_eq!(mallory.get_data("/bob").await.unwrap().0, b"s2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_acl_redacts_digests_without_admin() {
    let s = ServerBuilder::new().start();
    let c = s.client().await;
    let bob_id = digest_id("bob", "pw");
    let acl = vec![
        zk::Acl::new(P::READ, zk::AuthId::anyone()),
        zk::Acl::new(P::ALL, zk::AuthId::new("digest", &bob_id)),
    ];
    c.create("/r", b"", &opts(&acl)).await.unwrap();
    // READ without ADMIN: the digest hash is hidden.
    let (got, _) = c.get_acl("/r").await.unwrap();
    assert_eq!(
        got,
        vec![
            zk::Acl::new(P::READ, zk::AuthId::anyone()),
            zk::Acl::new(P::ALL, zk::AuthId::new("digest", "bob:x")),
        ]
    );
    c.auth("digest", b"bob:pw").await.unwrap();
    let (got, _) = c.get_acl("/r").await.unwrap();
    assert_eq!(got, acl);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_scheme() {
    let s = ServerBuilder::new().start();
    let c = s.client().await;
    // Without any authenticated identity beyond ip, "auth" is invalid.
    assert_eq!(
        c.create(
            "/a",
            b"",
            &zk::CreateMode::Persistent.with_acls(zk::Acls::creator_all())
        )
        .await
        .unwrap_err(),
        zk::Error::InvalidAcl
    );
    c.auth("digest", b"carol:pw").await.unwrap();
    c.create(
        "/a",
        b"",
        &zk::CreateMode::Persistent.with_acls(zk::Acls::creator_all()),
    )
    .await
    .unwrap();
    // Stored as the authenticated digest identity.
    let (acl, _) = c.get_acl("/a").await.unwrap();
    assert_eq!(
        acl,
        vec![zk::Acl::new(
            P::ALL,
            zk::AuthId::new("digest", &digest_id("carol", "pw"))
        )]
    );
    let other = s.client().await;
    assert_eq!(other.get_data("/a").await.unwrap_err(), zk::Error::NoAuth);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_scheme() {
    let s = ServerBuilder::new().start();
    let c = s.client().await;
    for (id, allowed) in [
        ("127.0.0.1", true),
        ("127.0.0.1/8", true),
        ("127.0.0.0/24", true),
        ("0.0.0.0/0", true),
        ("127.0.0.2", false),
        ("10.0.0.0/8", false),
        ("192.168.1.1/32", false),
    ] {
        let path = format!("/ip-{}", id.replace('/', "_"));
        let acl = vec![zk::Acl::new(P::ALL, zk::AuthId::new("ip", id))];
        c.create(&path, b"v", &opts(&acl)).await.unwrap();
        let r = c.get_data(&path).await;
        if allowed {
            assert_eq!(r.unwrap().0, b"v", "ip:{id}");
        } else {
            assert_eq!(r.unwrap_err(), zk::Error::NoAuth, "ip:{id}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn super_digest_bypasses_acls() {
    let s = ServerBuilder::new().super_user("super", "letmein").start();
    let c = s.client().await;
    c.create("/locked", b"v", &opts(&world(P::NONE)))
        .await
        .unwrap();
    c.create(
        "/bobs",
        b"v",
        &opts(&[zk::Acl::new(
            P::ALL,
            zk::AuthId::new("digest", &digest_id("bob", "pw")),
        )]),
    )
    .await
    .unwrap();
    assert_eq!(c.get_data("/locked").await.unwrap_err(), zk::Error::NoAuth);

    let su = zk::Client::connector()
        .with_auth("digest", b"super:letmein")
        .connect(&s.addr())
        .await
        .unwrap();
    assert_eq!(su.get_data("/locked").await.unwrap().0, b"v");
    assert_eq!(su.get_data("/bobs").await.unwrap().0, b"v");
    su.set_data("/locked", b"w", None).await.unwrap();
    su.create("/locked/kid", b"", &persistent()).await.unwrap();
    su.delete("/locked/kid", None).await.unwrap();
    su.set_acl("/locked", &zk::Acls::anyone_all(), None)
        .await
        .unwrap();
    assert_eq!(c.get_data("/locked").await.unwrap().0, b"w");
    let users = su.list_auth_users().await.unwrap();
    assert!(
        users.contains(&zk::AuthUser::new("digest", "super")),
        "{users:?}"
    );

    // A wrong super password is just another digest identity.
    let not_su = zk::Client::connector()
        .with_auth("digest", b"super:nope")
        .connect(&s.addr())
        .await
        .unwrap();
    assert_eq!(
        not_su.get_data("/bobs").await.unwrap_err(),
        zk::Error::NoAuth
    );
}

#[test]
fn invalid_acls() {
    let s = ServerBuilder::new().start();
    let mut r = Raw::connect(&s.addr(), 10_000);
    let create = |r: &mut Raw, path: &str, acls: &[(i32, &str, &str)]| {
        let b = Enc::new()
            .string(path)
            .buffer(b"")
            .acls(acls)
            .int(0)
            .into_vec();
        r.call(op::CREATE, &b).err
    };
    let cases: &[(i32, &str, &str)] = &[
        (31, "foo", "bar"),
        (31, "ip", "999.1.1.1"),
        (31, "ip", "127.0.0.1/33"),
        (31, "ip", "abc"),
        (31, "auth", ""),
        (31, "digest", "nohash"),
        (31, "digest", "a:b:c"),
        (31, "world", "someone"),
        (31, "super", "x"),
    ];
    for (i, acl) in cases.iter().enumerate() {
        assert_eq!(
            create(&mut r, &format!("/bad{i}"), &[*acl]),
            err::INVALID_ACL,
            "{acl:?}"
        );
        assert_eq!(r.exists(&format!("/bad{i}"), false).err, err::NO_NODE);
    }
    // Empty and null ACL lists.
    assert_eq!(create(&mut r, "/empty", &[]), err::INVALID_ACL);
    let b = Enc::new()
        .string("/null")
        .buffer(b"")
        .int(-1)
        .int(0)
        .into_vec();
    assert_eq!(r.call(op::CREATE, &b).err, err::INVALID_ACL);
    // One bad entry spoils the list.
    assert_eq!(
        create(
            &mut r,
            "/mixed",
            &[(31, "world", "anyone"), (31, "foo", "bar")]
        ),
        err::INVALID_ACL
    );
    // setACL validates too.
    assert_eq!(create(&mut r, "/good", &[(31, "world", "anyone")]), err::OK);
    let b = Enc::new()
        .string("/good")
        .acls(&[(31, "foo", "bar")])
        .int(-1)
        .into_vec();
    assert_eq!(r.call(op::SET_ACL, &b).err, err::INVALID_ACL);
    let b = Enc::new().string("/good").acls(&[]).int(-1).into_vec();
    assert_eq!(r.call(op::SET_ACL, &b).err, err::INVALID_ACL);
    // Valid ip forms.
    assert_eq!(
        create(&mut r, "/ip-ok", &[(31, "ip", "10.0.0.0/8")]),
        err::OK
    );
    s.assert_healthy_raw();
}

#[test]
fn digest_auth_never_fails() {
    // ZooKeeper's digest provider accepts any auth data, even without a colon.
    let s = ServerBuilder::new().start();
    for data in [&b"nocolon"[..], b"a:b:c", b"", b":"] {
        let mut r = Raw::connect(&s.addr(), 10_000);
        let body = Enc::new().int(0).string("digest").buffer(data).into_vec();
        r.send(common::raw::xid::AUTH, op::AUTH, &body);
        let rep = r.read_reply();
        assert_eq!(rep.xid, common::raw::xid::AUTH);
        assert_eq!(rep.err, err::OK, "{:?}", String::from_utf8_lossy(data));
        assert_eq!(r.exists("/", false).err, err::OK);
    }
}

#[test]
fn refused_read_leaves_no_watch() {
    let s = ServerBuilder::new().start();
    let mut o = Raw::connect(&s.addr(), 10_000);
    let mut w = Raw::connect(&s.addr(), 10_000);
    // world: WRITE and ADMIN, no READ.
    let b = Enc::new()
        .string("/wo")
        .buffer(b"")
        .acls(&[(18, "world", "anyone")])
        .int(0)
        .into_vec();
    assert_eq!(o.call(op::CREATE, &b).err, err::OK);
    assert_eq!(w.get_data("/wo", true).err, err::NO_AUTH);
    assert_eq!(w.get_children("/wo", true).err, err::NO_AUTH);
    assert_eq!(o.set_data("/wo", b"x", -1).err, err::OK);
    assert_eq!(w.exists("/", false).err, err::OK);
    assert!(w.events.is_empty(), "{:?}", w.events);
    // 3.8: exists is not guarded, but notifications are filtered by READ permission on the
    // node when they are delivered (CVE-2024-23944 fix, also in Debian's 3.8.0): no event here.
    // 3.9: exists itself needs READ (ZOOKEEPER-2590), so no watch is set at all.
    assert_eq!(w.exists("/wo", true).err, exists_without_read());
    assert_eq!(o.set_data("/wo", b"y", -1).err, err::OK);
    assert_eq!(w.exists("/", false).err, err::OK);
    assert!(w.events.is_empty(), "{:?}", w.events);
    // Once READ is granted, a new watch delivers.
    let b = Enc::new()
        .string("/wo")
        .acls(&[(31, "world", "anyone")])
        .int(-1)
        .into_vec();
    assert_eq!(o.call(op::SET_ACL, &b).err, err::OK);
    assert_eq!(w.exists("/wo", true).err, err::OK);
    assert_eq!(o.set_data("/wo", b"z", -1).err, err::OK);
    let e = w.next_event();
    assert_eq!(
        (e.event_type, e.path.as_str()),
        (common::raw::event::NODE_DATA_CHANGED, "/wo")
    );
}

#[test]
fn child_and_delete_notifications_need_read() {
    let s = ServerBuilder::new().start();
    let mut o = Raw::connect(&s.addr(), 10_000);
    let mut w = Raw::connect(&s.addr(), 10_000);
    assert_eq!(o.create("/open", b"", 0).err, err::OK);
    assert_eq!(w.get_children("/open", true).err, err::OK);
    assert_eq!(w.exists("/open/secret", true).err, err::NO_NODE);
    // The child is created with an ACL that does not let w read it: NodeCreated for it is
    // filtered, but the parent's NodeChildrenChanged (parent is readable) is delivered.
    let b = Enc::new()
        .string("/open/secret")
        .buffer(b"")
        .acls(&[(2, "world", "anyone")])
        .int(0)
        .into_vec();
    assert_eq!(o.call(op::CREATE, &b).err, err::OK);
    assert_eq!(w.exists("/", false).err, err::OK);
    let got: Vec<(i32, String)> = w.events.drain(..).map(|e| (e.event_type, e.path)).collect();
    assert_eq!(
        got,
        vec![(
            common::raw::event::NODE_CHILDREN_CHANGED,
            "/open".to_string()
        )]
    );
    // Deleting it: NodeDeleted is filtered the same way (the deleted node's ACL); on 3.9 the
    // exists watch is refused in the first place.
    assert_eq!(w.exists("/open/secret", true).err, exists_without_read());
    assert_eq!(w.get_children("/open", true).err, err::OK);
    assert_eq!(o.delete("/open/secret", -1).err, err::OK);
    assert_eq!(w.exists("/", false).err, err::OK);
    let got: Vec<(i32, String)> = w.events.drain(..).map(|e| (e.event_type, e.path)).collect();
    assert_eq!(
        got,
        vec![(
            common::raw::event::NODE_CHILDREN_CHANGED,
            "/open".to_string()
        )]
    );
}

/// What `exists` on an existing node without READ answers: 3.9 checks READ, 3.8 did not.
fn exists_without_read() -> i32 {
    if common::is_zookeeper_38() {
        err::OK
    } else {
        err::NO_AUTH
    }
}
