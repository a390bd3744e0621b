//! Recently validated SAT families: the two store reads a SAT bearer costs (its family is
//! not revoked, its subscriber still exists) answered from memory for a few seconds.
//!
//! This node forgets entries the moment it revokes a family or an embed key or deletes a
//! subscriber, so locally a revocation takes effect at once; another node (sharing
//! PostgreSQL) sees it within [`TTL`] — the revocation latency the security checklist asks
//! of one node (≤ 5 s).
//! Bounded: when full, the cache is emptied rather than grown.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

/// How long a validation is trusted.
pub(crate) const TTL: Duration = Duration::from_secs(5);
/// Most families remembered.
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Default)]
pub(crate) struct SatCache {
    /// (family, subscriber) → when validated.
    seen: Mutex<HashMap<(Uuid, Option<Uuid>), Instant>>,
}

impl SatCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Uuid, Option<Uuid>), Instant>> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether this family (and subscriber) was validated within [`TTL`].
    pub(crate) fn fresh(&self, family: Uuid, subscriber: Option<Uuid>) -> bool {
        self.lock()
            .get(&(family, subscriber))
            .is_some_and(|at| at.elapsed() < TTL)
    }

    pub(crate) fn remember(&self, family: Uuid, subscriber: Option<Uuid>) {
        let mut seen = self.lock();
        if seen.len() >= MAX_ENTRIES {
            seen.clear();
        }
        seen.insert((family, subscriber), Instant::now());
    }

    /// Forgets one family (revoked here).
    pub(crate) fn forget_family(&self, family: Uuid) {
        self.lock().retain(|(f, _), _| *f != family);
    }

    /// Forgets everything: a deleted subscriber or revoked embed key takes families with it
    /// (the guests and invites it handed out too), which the cache cannot tell apart.
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_and_forgets() {
        let c = SatCache::default();
        let (f, s) = (Uuid::new_v4(), Some(Uuid::new_v4()));
        assert!(!c.fresh(f, s));
        c.remember(f, s);
        assert!(c.fresh(f, s));
        assert!(!c.fresh(f, None), "keyed by subscriber too");
        c.clear();
        assert!(!c.fresh(f, s));
        c.remember(f, s);
        c.forget_family(f);
        assert!(!c.fresh(f, s));
    }
}
