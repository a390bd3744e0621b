//! The server API's `idempotency_key` for `publish`/`broadcast`: a repeated key within five
//! minutes returns the first result instead of publishing again (Centrifugo's window).
//!
//! Keys are remembered per project and channel: the same key sent by two projects (or to
//! two channels) is two keys. Bounded per project: at most [`MAX_KEYS_PER_PROJECT`] keys
//! are remembered for one project; when its share is full a new key of that project is not
//! recorded (the publish still happens), so one tenant publishing with fresh keys in a loop
//! can neither grow memory without bound nor crowd out another tenant's keys.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use tollgate_token::ProjectId;

/// How long a key is remembered.
pub(crate) const WINDOW: Duration = Duration::from_secs(5 * 60);
/// Most keys remembered for one project at once.
const MAX_KEYS_PER_PROJECT: usize = 100_000;
/// Longest key accepted.
pub(crate) const MAX_KEY_LEN: usize = 256;

/// One project's remembered keys, by (channel, key), and when the oldest was recorded.
#[derive(Debug, Default)]
struct Seen {
    keys: HashMap<(String, String), (Instant, Value)>,
    /// When the oldest remembered key was recorded: while it is inside the window a full
    /// table has nothing to drop, so a new key is refused without a scan (a tenant at its
    /// bound costs one comparison per publish, not a walk of its 100,000 keys under the
    /// lock every project shares).
    oldest: Option<Instant>,
}

#[derive(Debug, Default)]
pub(crate) struct Idempotency {
    projects: Mutex<HashMap<ProjectId, Seen>>,
}

impl Idempotency {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ProjectId, Seen>> {
        self.projects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The result recorded for `key` on `project`'s `channel`, if still within the window.
    pub(crate) fn get(&self, project: ProjectId, channel: &str, key: &str) -> Option<Value> {
        self.lock()
            .get(&project)?
            .keys
            .get(&(channel.to_owned(), key.to_owned()))
            .filter(|(at, _)| at.elapsed() < WINDOW)
            .map(|(_, v)| v.clone())
    }

    /// Records the result of the first publish with `key`.
    pub(crate) fn put(&self, project: ProjectId, channel: &str, key: &str, result: Value) {
        let mut projects = self.lock();
        let seen = projects.entry(project).or_default();
        if seen.keys.len() >= MAX_KEYS_PER_PROJECT {
            if seen.oldest.is_some_and(|at| at.elapsed() < WINDOW) {
                return;
            }
            seen.keys.retain(|_, (at, _)| at.elapsed() < WINDOW);
            seen.oldest = seen.keys.values().map(|(at, _)| *at).min();
            if seen.keys.len() >= MAX_KEYS_PER_PROJECT {
                return;
            }
        }
        let now = Instant::now();
        seen.oldest.get_or_insert(now);
        seen.keys
            .insert((channel.to_owned(), key.to_owned()), (now, result));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_per_project_channel_and_key() {
        let i = Idempotency::default();
        let (p1, p2) = (ProjectId::new_random(), ProjectId::new_random());
        assert!(i.get(p1, "a", "k").is_none());
        i.put(p1, "a", "k", serde_json::json!({"offset": 1}));
        assert_eq!(i.get(p1, "a", "k"), Some(serde_json::json!({"offset": 1})));
        assert!(i.get(p1, "b", "k").is_none(), "another channel");
        assert!(i.get(p2, "a", "k").is_none(), "another project's same key");
    }

    #[test]
    fn a_full_project_does_not_stop_another_from_recording() {
        let i = Idempotency::default();
        let (noisy, quiet) = (ProjectId::new_random(), ProjectId::new_random());
        for n in 0..MAX_KEYS_PER_PROJECT {
            i.put(noisy, "c", &n.to_string(), Value::Null);
        }
        i.put(noisy, "c", "one-too-many", Value::Null);
        assert!(
            i.get(noisy, "c", "one-too-many").is_none(),
            "noisy is at its bound"
        );
        i.put(quiet, "c", "k", Value::Bool(true));
        assert_eq!(i.get(quiet, "c", "k"), Some(Value::Bool(true)));
    }
}
