//! A small time-bounded cache for answers the store would give again within seconds: which
//! SAT families were validated (not revoked, subscriber present) and each project's
//! namespaces. Hot endpoints then do no store round trip per request.
//!
//! This node forgets entries the moment it changes what they summarise (a family or embed
//! key revoked, a subscriber deleted, a namespace set), so locally a change takes effect at
//! once, and announces the change (`invalidation`) so other nodes sharing the broker forget
//! theirs too. Whatever misses that announcement (the CLI, a message lost on the way) sees
//! the change within [`TTL`] — the revocation latency the security checklist asks (≤ 5 s).
//! Bounded: when full, a cache is emptied rather than grown.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an answer is trusted.
pub(crate) const TTL: Duration = Duration::from_secs(5);
/// Most entries remembered per cache.
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug)]
pub(crate) struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K, V> Default for TtlCache<K, V> {
    fn default() -> Self {
        Self {
            entries: Mutex::default(),
        }
    }
}

impl<K: Eq + Hash, V: Clone> TtlCache<K, V> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (Instant, V)>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The value for `key`, if stored within [`TTL`].
    pub(crate) fn get(&self, key: &K) -> Option<V> {
        self.lock()
            .get(key)
            .filter(|(at, _)| at.elapsed() < TTL)
            .map(|(_, v)| v.clone())
    }

    pub(crate) fn put(&self, key: K, value: V) {
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key, (Instant::now(), value));
    }

    /// Forgets the entries `stale` picks.
    pub(crate) fn forget(&self, stale: impl Fn(&K) -> bool) {
        self.lock().retain(|k, _| !stale(k));
    }

    /// Forgets everything.
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_and_forgets() {
        let c: TtlCache<(u8, u8), &str> = TtlCache::default();
        assert!(c.get(&(1, 1)).is_none());
        c.put((1, 1), "a");
        c.put((2, 1), "b");
        assert_eq!(c.get(&(1, 1)), Some("a"));
        c.forget(|(f, _)| *f == 1);
        assert!(c.get(&(1, 1)).is_none());
        assert_eq!(c.get(&(2, 1)), Some("b"));
        c.clear();
        assert!(c.get(&(2, 1)).is_none());
    }
}
