//! ACLs: the `digest` and `ip` authentication schemes, permission checks, the `fixupACL`
//! validation/expansion applied to create and setACL, and the deduplicating ACL table that
//! lets every znode hold a 4-byte index instead of its own copy of its ACL list.
//!
//! Semantics follow ZooKeeper's `ZooKeeperServer.checkACL`, `PrepRequestProcessor.fixupACL`,
//! `DigestAuthenticationProvider`, `IPAuthenticationProvider` and `ReferenceCountedACLCache`.

use std::net::Ipv6Addr;
use std::sync::Arc;

use base64::Engine;
use hashbrown::HashMap;
use sha1::{Digest, Sha1};

use crate::jute::{Acl, ErrorCode, Id};

/// `user:base64(sha1("user:password"))`, the id stored in `digest` ACLs.
pub fn digest(user_password: &str) -> String {
    let user = user_password.split(':').next().unwrap_or("");
    let hash = Sha1::digest(user_password.as_bytes());
    format!(
        "{user}:{}",
        base64::engine::general_purpose::STANDARD.encode(hash)
    )
}

/// Turns an auth packet into the identity it proves. Only `digest` is a scheme clients
/// authenticate with here; anything else is `AuthFailed`. (ZooKeeper answers an `ip` auth
/// packet with OK and the connection's address, which the server already holds in its ids.)
/// Comparing the result against a configured super digest is the server's business.
pub fn authenticate(scheme: &str, auth: &[u8]) -> Result<Id, ErrorCode> {
    match scheme {
        "digest" => {
            let text = String::from_utf8_lossy(auth);
            Ok(Id::new("digest", digest(&text)))
        }
        _ => Err(ErrorCode::AuthFailed),
    }
}

/// True when `ids` (plus the implicit `world:anyone`) grant any of the bits in `perm` on a node
/// with `acl`. An empty ACL list grants everything, as in ZooKeeper.
pub fn check(acl: &[Acl], perm: i32, ids: &[Id], is_super: bool) -> bool {
    if acl.is_empty() || is_super || ids.iter().any(|i| i.scheme == "super") {
        return true;
    }
    for a in acl {
        if a.perms & perm == 0 {
            continue;
        }
        if a.id.scheme == "world" && a.id.id == "anyone" {
            return true;
        }
        for id in ids.iter().filter(|i| i.scheme == a.id.scheme) {
            let matched = match a.id.scheme.as_str() {
                "ip" => ip_matches(&id.id, &a.id.id),
                "world" => false,
                _ => id.id == a.id.id,
            };
            if matched {
                return true;
            }
        }
    }
    false
}

/// `check` as a `Result`: `NoAuth` when denied.
pub fn require(acl: &[Acl], perm: i32, ids: &[Id], is_super: bool) -> Result<(), ErrorCode> {
    if check(acl, perm, ids, is_super) {
        Ok(())
    } else {
        Err(ErrorCode::NoAuth)
    }
}

/// Validates an ACL list for create/setACL and expands `auth` entries into the session's
/// authenticated identities (`PrepRequestProcessor.fixupACL`).
pub fn fixup(acl: &[Acl], ids: &[Id]) -> Result<Vec<Acl>, ErrorCode> {
    let mut unique: Vec<&Acl> = Vec::with_capacity(acl.len());
    for a in acl {
        if !unique.contains(&a) {
            unique.push(a);
        }
    }
    if unique.is_empty() {
        return Err(ErrorCode::InvalidAcl);
    }
    let mut out = Vec::with_capacity(unique.len());
    for a in unique {
        let scheme = a.id.scheme.as_str();
        if scheme == "world" && a.id.id == "anyone" {
            out.push(a.clone());
        } else if scheme == "auth" {
            // Every identity whose provider counts as "authenticated": digest (and other
            // credential schemes), but never ip; super has no provider and is skipped.
            let mut any = false;
            for id in ids {
                if matches!(id.scheme.as_str(), "ip" | "world" | "super") {
                    continue;
                }
                any = true;
                out.push(Acl {
                    perms: a.perms,
                    id: id.clone(),
                });
            }
            if !any {
                return Err(ErrorCode::InvalidAcl);
            }
        } else {
            let valid = match scheme {
                "digest" => java_split_len(&a.id.id, ':') == 2,
                "ip" => ip_is_valid(&a.id.id),
                _ => false,
            };
            if !valid {
                return Err(ErrorCode::InvalidAcl);
            }
            out.push(a.clone());
        }
    }
    Ok(out)
}

/// The number of parts Java's `String.split(sep)` returns (trailing empty parts dropped).
fn java_split_len(s: &str, sep: char) -> usize {
    if s.is_empty() {
        return 1;
    }
    let parts: Vec<&str> = s.split(sep).collect();
    let mut n = parts.len();
    while n > 0 && parts[n - 1].is_empty() {
        n -= 1;
    }
    n
}

/// Parses an address as `IPAuthenticationProvider.addr2Bytes` does: a colon means IPv6, a
/// dot means dotted-quad IPv4, anything else is not an address.
fn addr_bytes(addr: &str) -> Option<Vec<u8>> {
    if addr.contains(':') {
        addr.parse::<Ipv6Addr>().ok().map(|a| a.octets().to_vec())
    } else if addr.contains('.') {
        let parts: Vec<&str> = addr.split('.').collect();
        if parts.len() != 4 {
            return None;
        }
        let mut out = Vec::with_capacity(4);
        for p in parts {
            let v: i32 = p.parse().ok()?;
            if !(0..=255).contains(&v) {
                return None;
            }
            out.push(v as u8);
        }
        Some(out)
    } else {
        None
    }
}

fn split_mask(expr: &str) -> Option<(Vec<u8>, usize)> {
    let (addr, bits) = match expr.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (expr, None),
    };
    let bytes = addr_bytes(addr)?;
    let max = bytes.len() * 8;
    let bits = match bits {
        Some(b) => {
            let v: i64 = b.parse().ok()?;
            if v < 0 || v as usize > max {
                return None;
            }
            v as usize
        }
        None => max,
    };
    Some((bytes, bits))
}

fn mask(b: &mut [u8], bits: usize) {
    let mut start = bits / 8;
    let mut start_mask: u8 = !(((1u16 << (8 - bits % 8)) - 1) as u8);
    while start < b.len() {
        b[start] &= start_mask;
        start_mask = 0;
        start += 1;
    }
}

/// Whether an `ip` ACL id (`addr` or `addr/bits`) is well formed.
pub fn ip_is_valid(expr: &str) -> bool {
    split_mask(expr).is_some()
}

/// Whether the client address `id` falls in the `ip` ACL expression `expr`.
pub fn ip_matches(id: &str, expr: &str) -> bool {
    let Some((mut acl_addr, bits)) = split_mask(expr) else {
        return false;
    };
    let Some(mut remote) = addr_bytes(id) else {
        return false;
    };
    if remote.len() != acl_addr.len() {
        return false;
    }
    mask(&mut acl_addr, bits);
    mask(&mut remote, bits);
    remote == acl_addr
}

/// Index of an ACL list in an [`AclTable`].
pub type AclId = u32;

/// Distinct ACL lists, reference counted. Znodes hold an [`AclId`]; a million znodes with the
/// same ACL share one list.
#[derive(Debug, Default, Clone)]
pub struct AclTable {
    slots: Vec<Option<(Arc<[Acl]>, u64)>>,
    index: HashMap<Arc<[Acl]>, AclId>,
    free: Vec<AclId>,
}

impl AclTable {
    /// Adds one reference to `acl`, interning it if new.
    pub fn intern(&mut self, acl: &[Acl]) -> AclId {
        if let Some(&id) = self.index.get(acl) {
            if let Some(Some(slot)) = self.slots.get_mut(id as usize) {
                slot.1 += 1;
                return id;
            }
        }
        let list: Arc<[Acl]> = Arc::from(acl);
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = Some((list.clone(), 1));
                id
            }
            None => {
                self.slots.push(Some((list.clone(), 1)));
                (self.slots.len() - 1) as AclId
            }
        };
        self.index.insert(list, id);
        id
    }

    /// Drops one reference; the list is forgotten when none remain.
    pub fn release(&mut self, id: AclId) {
        let Some(slot) = self.slots.get_mut(id as usize) else {
            return;
        };
        let gone = match slot {
            Some((_, n)) => {
                *n -= 1;
                *n == 0
            }
            None => false,
        };
        if gone {
            if let Some((list, _)) = slot.take() {
                self.index.remove(&list);
                self.free.push(id);
            }
        }
    }

    /// The list behind `id` (empty if the id is unknown, which never happens for live nodes).
    pub fn get(&self, id: AclId) -> &Arc<[Acl]> {
        static EMPTY: std::sync::OnceLock<Arc<[Acl]>> = std::sync::OnceLock::new();
        match self.slots.get(id as usize) {
            Some(Some((list, _))) => list,
            _ => EMPTY.get_or_init(|| Arc::from(Vec::new())),
        }
    }

    /// Number of distinct ACL lists.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Reference count of `id` (0 when free); for invariant checks.
    pub fn refs(&self, id: AclId) -> u64 {
        match self.slots.get(id as usize) {
            Some(Some((_, n))) => *n,
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jute::perms;

    #[test]
    fn digest_matches_zookeeper() {
        // Known value from ZooKeeper's documentation and zkCli examples.
        assert_eq!(digest("super:test"), "super:D/InIHSb7yEEbrWz8b9l71RjZJU=");
        assert_eq!(digest("user:password"), "user:tpUq/4Pn5A64fVZyQ0gOJ8ZWqkY=");
        assert_eq!(
            authenticate("digest", b"user:password"),
            Ok(Id::new("digest", "user:tpUq/4Pn5A64fVZyQ0gOJ8ZWqkY="))
        );
        assert_eq!(authenticate("foo", b"x"), Err(ErrorCode::AuthFailed));
    }

    #[test]
    fn ip_matching() {
        assert!(ip_matches("10.0.0.7", "10.0.0.7"));
        assert!(!ip_matches("10.0.0.7", "10.0.0.8"));
        assert!(ip_matches("10.0.0.7", "10.0.0.0/24"));
        assert!(ip_matches("10.0.1.7", "10.0.0.0/23"));
        assert!(!ip_matches("10.0.2.7", "10.0.0.0/23"));
        assert!(ip_matches("1.2.3.4", "0.0.0.0/0"));
        assert!(!ip_matches("1.2.3.4", "1.2.3.4/33"));
        assert!(ip_matches("::1", "::1"));
        assert!(ip_matches("fe80::1", "fe80::/64"));
        assert!(!ip_matches("::1", "127.0.0.1"));
        assert!(ip_is_valid("1.2.3.4/8"));
        assert!(!ip_is_valid("1.2.3/8"));
        assert!(!ip_is_valid("1.2.3.256"));
        assert!(!ip_is_valid("host"));
    }

    #[test]
    fn check_rules() {
        let ip = Id::new("ip", "127.0.0.1");
        let dig = Id::new("digest", "u:h");
        let acl = vec![Acl::new(perms::READ, "digest", "u:h")];
        assert!(check(&acl, perms::READ, &[ip.clone(), dig.clone()], false));
        assert!(!check(
            &acl,
            perms::WRITE,
            &[ip.clone(), dig.clone()],
            false
        ));
        assert!(!check(&acl, perms::READ, std::slice::from_ref(&ip), false));
        assert!(check(&acl, perms::READ, std::slice::from_ref(&ip), true));
        assert!(check(
            &acl,
            perms::READ | perms::ADMIN,
            std::slice::from_ref(&dig),
            false
        ));
        assert!(check(&[], perms::ADMIN, &[], false));
        assert!(check(&Acl::open_unsafe(), perms::ADMIN, &[], false));
        assert!(check(
            &[Acl::new(perms::ALL, "ip", "127.0.0.0/8")],
            perms::DELETE,
            &[ip],
            false
        ));
    }

    #[test]
    fn fixup_rules() {
        let ip = Id::new("ip", "127.0.0.1");
        let dig = Id::new("digest", "u:h");
        assert_eq!(fixup(&[], &[]), Err(ErrorCode::InvalidAcl));
        let auth = vec![Acl::new(perms::ALL, "auth", "")];
        assert_eq!(
            fixup(&auth, std::slice::from_ref(&ip)),
            Err(ErrorCode::InvalidAcl)
        );
        assert_eq!(
            fixup(&auth, &[ip.clone(), dig.clone()]),
            Ok(vec![Acl::new(perms::ALL, "digest", "u:h")])
        );
        let dup = vec![
            Acl::new(1, "world", "anyone"),
            Acl::new(1, "world", "anyone"),
        ];
        assert_eq!(fixup(&dup, &[]), Ok(vec![Acl::new(1, "world", "anyone")]));
        for bad in [
            Acl::new(1, "world", "someone"),
            Acl::new(1, "digest", "nocolon"),
            Acl::new(1, "digest", "a:b:c"),
            Acl::new(1, "digest", "a:"),
            Acl::new(1, "ip", "nothost"),
            Acl::new(1, "super", "x"),
            Acl::new(1, "foo", "bar"),
        ] {
            assert_eq!(
                fixup(std::slice::from_ref(&bad), &[]),
                Err(ErrorCode::InvalidAcl),
                "{bad:?}"
            );
        }
        assert!(fixup(&[Acl::new(1, "digest", ":h")], &[]).is_ok());
        assert!(fixup(&[Acl::new(1, "ip", "10.0.0.0/8")], &[]).is_ok());
    }

    #[test]
    fn table_dedups_and_frees() {
        let mut t = AclTable::default();
        let a = t.intern(&Acl::open_unsafe());
        let b = t.intern(&Acl::open_unsafe());
        assert_eq!(a, b);
        assert_eq!(t.refs(a), 2);
        let c = t.intern(&Acl::read_unsafe());
        assert_ne!(a, c);
        assert_eq!(t.len(), 2);
        t.release(c);
        assert_eq!(t.len(), 1);
        let d = t.intern(&[Acl::new(3, "world", "anyone")]);
        assert_eq!(d, c, "free slot reused");
        t.release(a);
        t.release(a);
        assert_eq!(t.refs(a), 0);
        assert_eq!(&**t.get(d), &[Acl::new(3, "world", "anyone")]);
    }
}
