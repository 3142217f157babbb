//! Session table: ids, passwords, negotiated timeouts and expiry, the way ZooKeeper's
//! SessionTrackerImpl does it, as a pure structure driven by explicit timestamps.
//!
//! Expiry uses buckets one tick wide: a session touched at `now` is due at the first tick
//! boundary after `now + timeout`, so a tick only looks at the one bucket that fell due instead
//! of scanning every session.

use std::collections::BTreeMap;

use bytes::Bytes;
use hashbrown::{HashMap, HashSet};
use sha1::{Digest, Sha1};

use crate::jute::Id;

/// A connection's identity inside the server.
pub type ConnId = u64;

/// One live session.
#[derive(Debug)]
pub struct Session {
    pub id: i64,
    pub timeout_ms: i32,
    /// The connection currently attached, if any.
    pub conn: Option<ConnId>,
    /// Identities from auth packets (the ip identity is per connection and added at check time).
    pub auth_ids: Vec<Id>,
    pub is_super: bool,
    /// Tick bucket the session is due to expire in.
    expires_at_ms: u64,
    /// Set once a closeSession or expiry is under way, so it is not expired twice.
    pub closing: bool,
}

/// Secret mixed into session passwords. Constant so that any member of an ensemble can check a
/// password for a session created through another member.
const PASSWORD_SECRET: u64 = 0x5e55_10c0_77a1_c0de;

/// Derives a session's 16-byte password from its id.
pub fn session_password(session_id: i64) -> Bytes {
    let mut h = Sha1::new();
    h.update(PASSWORD_SECRET.to_be_bytes());
    h.update(session_id.to_be_bytes());
    let digest = h.finalize();
    Bytes::copy_from_slice(&digest[..16])
}

/// The session table and its expiry queue.
#[derive(Debug)]
pub struct SessionTable {
    tick_ms: u64,
    next_session_id: i64,
    sessions: HashMap<i64, Session>,
    buckets: BTreeMap<u64, HashSet<i64>>,
}

impl SessionTable {
    /// `server_id` goes into the top byte of every session id, as ZooKeeper does, so that ids
    /// made by different members never collide. `now_ms` is wall-clock time.
    pub fn new(tick_ms: u64, server_id: u8, now_ms: u64) -> Self {
        let base = ((now_ms << 24) >> 8) as i64 | ((server_id as i64) << 56);
        SessionTable {
            tick_ms: tick_ms.max(1),
            next_session_id: base,
            sessions: HashMap::new(),
            buckets: BTreeMap::new(),
        }
    }

    fn bucket_for(&self, now_ms: u64, timeout_ms: i32) -> u64 {
        let due = now_ms + timeout_ms.max(0) as u64;
        (due / self.tick_ms + 1) * self.tick_ms
    }

    /// Allocates a fresh session id (not yet added).
    pub fn next_id(&mut self) -> i64 {
        let id = self.next_session_id;
        self.next_session_id = self.next_session_id.wrapping_add(1);
        id
    }

    /// Adds a session (after its createSession transaction is applied).
    pub fn add(&mut self, id: i64, timeout_ms: i32, now_ms: u64) {
        let bucket = self.bucket_for(now_ms, timeout_ms);
        self.buckets.entry(bucket).or_default().insert(id);
        self.sessions.insert(
            id,
            Session {
                id,
                timeout_ms,
                conn: None,
                auth_ids: Vec::new(),
                is_super: false,
                expires_at_ms: bucket,
                closing: false,
            },
        );
    }

    pub fn get(&self, id: i64) -> Option<&Session> {
        self.sessions.get(&id)
    }

    pub fn get_mut(&mut self, id: i64) -> Option<&mut Session> {
        self.sessions.get_mut(&id)
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Session> {
        self.sessions.values()
    }

    /// Pushes a session's expiry out to `now + timeout`. Returns false for an unknown or
    /// closing session.
    pub fn touch(&mut self, id: i64, now_ms: u64) -> bool {
        let Some(s) = self.sessions.get(&id) else {
            return false;
        };
        if s.closing {
            return false;
        }
        let new_bucket = self.bucket_for(now_ms, s.timeout_ms);
        let old_bucket = s.expires_at_ms;
        if new_bucket == old_bucket {
            return true;
        }
        if let Some(set) = self.buckets.get_mut(&old_bucket) {
            set.remove(&id);
            if set.is_empty() {
                self.buckets.remove(&old_bucket);
            }
        }
        self.buckets.entry(new_bucket).or_default().insert(id);
        if let Some(s) = self.sessions.get_mut(&id) {
            s.expires_at_ms = new_bucket;
        }
        true
    }

    /// Sessions whose bucket has come due; each is marked closing and returned once.
    pub fn take_expired(&mut self, now_ms: u64) -> Vec<i64> {
        let mut out = Vec::new();
        while let Some((&bucket, _)) = self.buckets.first_key_value() {
            if bucket > now_ms {
                break;
            }
            if let Some(ids) = self.buckets.remove(&bucket) {
                for id in ids {
                    if let Some(s) = self.sessions.get_mut(&id) {
                        if !s.closing {
                            s.closing = true;
                            out.push(id);
                        }
                    }
                }
            }
        }
        out.sort_unstable();
        out
    }

    /// The expiry queue, soonest first, for the `dump` four-letter word.
    pub fn expiry_buckets(&self) -> Vec<(u64, Vec<i64>)> {
        self.buckets
            .iter()
            .map(|(at, ids)| {
                let mut ids: Vec<i64> = ids.iter().copied().collect();
                ids.sort_unstable();
                (*at, ids)
            })
            .collect()
    }

    /// Marks a session as closing (a closeSession is on its way through the pipeline).
    pub fn mark_closing(&mut self, id: i64) {
        if let Some(s) = self.sessions.get_mut(&id) {
            s.closing = true;
        }
    }

    /// Removes a session after its closeSession transaction was applied.
    pub fn remove(&mut self, id: i64) -> Option<Session> {
        let s = self.sessions.remove(&id)?;
        if let Some(set) = self.buckets.get_mut(&s.expires_at_ms) {
            set.remove(&id);
            if set.is_empty() {
                self.buckets.remove(&s.expires_at_ms);
            }
        }
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_carry_server_id_and_are_unique() {
        let mut t = SessionTable::new(2000, 3, 1_700_000_000_000);
        let a = t.next_id();
        let b = t.next_id();
        assert_ne!(a, b);
        assert_eq!((a >> 56) & 0xff, 3);
    }

    #[test]
    fn expiry_follows_touches() {
        let mut t = SessionTable::new(100, 0, 0);
        t.add(1, 1000, 0);
        t.add(2, 1000, 0);
        assert!(t.take_expired(1000).is_empty(), "not due before timeout");
        assert!(t.touch(2, 900));
        assert_eq!(t.take_expired(1100), vec![1]);
        // Already taken: not returned again, and a touch of a closing session fails.
        assert!(t.take_expired(1100).is_empty());
        assert!(!t.touch(1, 1100));
        assert_eq!(t.take_expired(2000), vec![2]);
        assert!(t.remove(1).is_some());
        assert!(t.get(1).is_none());
    }

    #[test]
    fn passwords_are_deterministic_per_session() {
        assert_eq!(session_password(42), session_password(42));
        assert_ne!(session_password(42), session_password(43));
        assert_eq!(session_password(42).len(), 16);
    }
}
