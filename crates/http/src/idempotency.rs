//! The server API's `idempotency_key` for `publish`/`broadcast`: a repeated key within five
//! minutes returns the first result instead of publishing again (Centrifugo's window).
//! Bounded: at most [`MAX_KEYS`] keys are remembered; when full, a new key is not recorded
//! (the publish still happens), so memory stays fixed under any load.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a key is remembered.
pub(crate) const WINDOW: Duration = Duration::from_secs(5 * 60);
/// Most keys remembered at once.
const MAX_KEYS: usize = 100_000;
/// Longest key accepted.
pub(crate) const MAX_KEY_LEN: usize = 256;

#[derive(Debug, Default)]
pub(crate) struct Idempotency {
    seen: Mutex<HashMap<(String, String), (Instant, Value)>>,
}

impl Idempotency {
    /// The result recorded for `key` on `channel`, if still within the window.
    pub(crate) fn get(&self, channel: &str, key: &str) -> Option<Value> {
        let seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.get(&(channel.to_owned(), key.to_owned()))
            .filter(|(at, _)| at.elapsed() < WINDOW)
            .map(|(_, v)| v.clone())
    }

    /// Records the result of the first publish with `key`.
    pub(crate) fn put(&self, channel: &str, key: &str, result: Value) {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.len() >= MAX_KEYS {
            seen.retain(|_, (at, _)| at.elapsed() < WINDOW);
            if seen.len() >= MAX_KEYS {
                return;
            }
        }
        seen.insert(
            (channel.to_owned(), key.to_owned()),
            (Instant::now(), result),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_per_channel_and_key() {
        let i = Idempotency::default();
        assert!(i.get("a", "k").is_none());
        i.put("a", "k", serde_json::json!({"offset": 1}));
        assert_eq!(i.get("a", "k"), Some(serde_json::json!({"offset": 1})));
        assert!(i.get("b", "k").is_none());
    }
}
