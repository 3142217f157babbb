//! The watch registry: which session watches which path, in which mode, and who fires when a
//! path changes. One [`WatchManager`] holds data/exist watches (plus persistent and
//! persistent-recursive ones), a second holds child watches (plus persistent ones), exactly as
//! ZooKeeper's `DataTree` splits `dataWatches` and `childWatches`.
//!
//! Trigger rules follow `WatchManager.triggerWatch`: every watcher registered on the path
//! itself fires once (a standard watch is then removed, persistent modes stay); watchers on
//! ancestors fire only if they are persistent-recursive. A session fires at most once per
//! trigger call however many modes match.

use std::sync::Arc;

use hashbrown::{HashMap, HashSet};

use super::path::self_and_ancestors;

/// Watch modes as bit flags; one (path, session) entry may hold several.
pub mod mode {
    pub const STANDARD: u8 = 1;
    pub const PERSISTENT: u8 = 2;
    pub const PERSISTENT_RECURSIVE: u8 = 4;
}

/// One of the two watch tables.
#[derive(Debug, Default, Clone)]
pub struct WatchManager {
    by_path: HashMap<Arc<str>, HashMap<i64, u8>>,
    by_session: HashMap<i64, HashSet<Arc<str>>>,
    /// Entries holding the recursive flag; while zero, triggers skip the ancestor walk.
    recursive: usize,
}

impl WatchManager {
    /// Adds `flag` for (path, session). True if it was not there already.
    pub fn add(&mut self, path: &str, session: i64, flag: u8) -> bool {
        let key: Arc<str> = match self.by_path.get_key_value(path) {
            Some((k, _)) => k.clone(),
            None => Arc::from(path),
        };
        let watchers = self.by_path.entry(key.clone()).or_default();
        let old = watchers.get(&session).copied().unwrap_or(0);
        let new = old | flag;
        if new == old {
            return false;
        }
        watchers.insert(session, new);
        if old == 0 {
            self.by_session.entry(session).or_default().insert(key);
        }
        if old & mode::PERSISTENT_RECURSIVE == 0 && new & mode::PERSISTENT_RECURSIVE != 0 {
            self.recursive += 1;
        }
        true
    }

    /// Whether (path, session) holds `flag` (any mode when None).
    pub fn contains(&self, path: &str, session: i64, flag: Option<u8>) -> bool {
        match self.by_path.get(path).and_then(|w| w.get(&session)) {
            Some(&f) => match flag {
                Some(m) => f & m != 0,
                None => true,
            },
            None => false,
        }
    }

    /// Removes `flag` (every mode when None) from (path, session). True if anything changed.
    pub fn remove(&mut self, path: &str, session: i64, flag: Option<u8>) -> bool {
        let Some(watchers) = self.by_path.get_mut(path) else {
            return false;
        };
        let Some(&old) = watchers.get(&session) else {
            return false;
        };
        let new = match flag {
            Some(m) => old & !m,
            None => 0,
        };
        if new == old {
            return false;
        }
        if old & mode::PERSISTENT_RECURSIVE != 0 && new & mode::PERSISTENT_RECURSIVE == 0 {
            self.recursive -= 1;
        }
        if new == 0 {
            watchers.remove(&session);
            if watchers.is_empty() {
                self.by_path.remove(path);
            }
            self.forget_session_path(session, path);
        } else {
            watchers.insert(session, new);
        }
        true
    }

    fn forget_session_path(&mut self, session: i64, path: &str) {
        if let Some(paths) = self.by_session.get_mut(&session) {
            paths.remove(path);
            if paths.is_empty() {
                self.by_session.remove(&session);
            }
        }
    }

    /// Fires the watches an event on `path` triggers; returns the sessions to notify, sorted.
    pub fn trigger(&mut self, path: &str) -> Vec<i64> {
        let mut fired: Vec<i64> = Vec::new();
        let walk_ancestors = self.recursive > 0;
        let mut emptied_sessions: Vec<i64> = Vec::new();
        for (depth, p) in self_and_ancestors(path).enumerate() {
            if depth > 0 && !walk_ancestors {
                break;
            }
            let Some(watchers) = self.by_path.get_mut(p) else {
                continue;
            };
            if depth == 0 {
                emptied_sessions.clear();
                watchers.retain(|&session, flags| {
                    fired.push(session);
                    *flags &= !mode::STANDARD;
                    if *flags == 0 {
                        emptied_sessions.push(session);
                        false
                    } else {
                        true
                    }
                });
                if watchers.is_empty() {
                    self.by_path.remove(p);
                }
                for s in std::mem::take(&mut emptied_sessions) {
                    self.forget_session_path(s, p);
                }
            } else {
                for (&session, &flags) in watchers.iter() {
                    if flags & mode::PERSISTENT_RECURSIVE != 0 {
                        fired.push(session);
                    }
                }
            }
        }
        fired.sort_unstable();
        fired.dedup();
        fired
    }

    /// Drops every watch of `session`.
    pub fn remove_session(&mut self, session: i64) {
        let Some(paths) = self.by_session.remove(&session) else {
            return;
        };
        for p in paths {
            if let Some(watchers) = self.by_path.get_mut(&*p) {
                if let Some(flags) = watchers.remove(&session) {
                    if flags & mode::PERSISTENT_RECURSIVE != 0 {
                        self.recursive -= 1;
                    }
                }
                if watchers.is_empty() {
                    self.by_path.remove(&*p);
                }
            }
        }
    }

    /// Number of (path, session) pairs.
    pub fn size(&self) -> usize {
        self.by_path.values().map(|w| w.len()).sum()
    }

    /// Number of watched paths.
    pub fn path_count(&self) -> usize {
        self.by_path.len()
    }

    /// Number of sessions holding at least one watch.
    pub fn session_count(&self) -> usize {
        self.by_session.len()
    }

    /// Sessions and their watched paths, both sorted.
    pub fn by_session(&self) -> Vec<(i64, Vec<String>)> {
        let mut out: Vec<(i64, Vec<String>)> = self
            .by_session
            .iter()
            .map(|(s, paths)| {
                let mut v: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
                v.sort();
                (*s, v)
            })
            .collect();
        out.sort();
        out
    }

    /// Paths and the sessions watching them, both sorted.
    pub fn by_path(&self) -> Vec<(String, Vec<i64>)> {
        let mut out: Vec<(String, Vec<i64>)> = self
            .by_path
            .iter()
            .map(|(p, w)| {
                let mut v: Vec<i64> = w.keys().copied().collect();
                v.sort_unstable();
                (p.to_string(), v)
            })
            .collect();
        out.sort();
        out
    }

    /// Checks that the two indexes agree (tests and debug assertions).
    pub fn check_invariants(&self) -> bool {
        let mut recursive = 0;
        for (p, w) in &self.by_path {
            if w.is_empty() {
                return false;
            }
            for (s, &f) in w {
                if f == 0 || !self.by_session.get(s).is_some_and(|ps| ps.contains(p)) {
                    return false;
                }
                if f & mode::PERSISTENT_RECURSIVE != 0 {
                    recursive += 1;
                }
            }
        }
        let pairs: usize = self.by_session.values().map(|p| p.len()).sum();
        recursive == self.recursive && pairs == self.size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_watch_is_one_shot() {
        let mut m = WatchManager::default();
        assert!(m.add("/a", 1, mode::STANDARD));
        assert!(!m.add("/a", 1, mode::STANDARD));
        m.add("/a", 2, mode::STANDARD);
        assert_eq!(m.trigger("/a"), vec![1, 2]);
        assert_eq!(m.trigger("/a"), Vec::<i64>::new());
        assert_eq!(m.size(), 0);
        assert!(m.check_invariants());
    }

    #[test]
    fn persistent_stays_and_fires_once_with_standard() {
        let mut m = WatchManager::default();
        m.add("/a", 1, mode::STANDARD);
        m.add("/a", 1, mode::PERSISTENT);
        assert_eq!(m.trigger("/a"), vec![1]);
        assert!(m.contains("/a", 1, Some(mode::PERSISTENT)));
        assert!(!m.contains("/a", 1, Some(mode::STANDARD)));
        assert_eq!(m.trigger("/a"), vec![1]);
        assert!(m.check_invariants());
    }

    #[test]
    fn recursive_fires_for_descendants_only_when_recursive() {
        let mut m = WatchManager::default();
        m.add("/", 1, mode::PERSISTENT_RECURSIVE);
        m.add("/a", 2, mode::PERSISTENT);
        m.add("/a", 3, mode::STANDARD);
        assert_eq!(m.trigger("/a/b"), vec![1]);
        assert_eq!(m.trigger("/a"), vec![1, 2, 3]);
        assert_eq!(m.trigger("/a"), vec![1, 2]);
        assert!(m.remove("/", 1, Some(mode::PERSISTENT_RECURSIVE)));
        assert_eq!(m.trigger("/a/b"), Vec::<i64>::new());
        assert!(m.check_invariants());
    }

    #[test]
    fn remove_session_clears_everything() {
        let mut m = WatchManager::default();
        m.add("/a", 1, mode::STANDARD);
        m.add("/b", 1, mode::PERSISTENT_RECURSIVE);
        m.add("/b", 2, mode::STANDARD);
        m.remove_session(1);
        assert_eq!(m.size(), 1);
        assert_eq!(m.by_path(), vec![("/b".to_string(), vec![2])]);
        assert!(m.check_invariants());
        assert!(!m.remove("/b", 2, Some(mode::PERSISTENT)));
        assert!(m.remove("/b", 2, None));
        assert_eq!(m.size(), 0);
    }
}
