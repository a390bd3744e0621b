//! Fetching and caching an application's JWKS, for user JWTs verified by a JWKS URL.
//!
//! The URL is administrator configuration, never taken from a token (checklist JWT-04).
//! Keys are cached for [`FRESH`]; an unknown `kid` triggers a refetch at most every
//! [`MIN_REFETCH`], so a flood of made-up kids cannot turn into a flood of requests.
//! Responses are bounded in time and size, and only public signature keys are taken.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tollgate_token::KeyId;
use tollgate_token::jose::VerifyingKey;

use crate::ServiceError;

/// How long fetched keys are used without asking again.
pub(crate) const FRESH: Duration = Duration::from_secs(300);
/// Shortest interval between two fetches of one URL.
pub(crate) const MIN_REFETCH: Duration = Duration::from_secs(10);
const TIMEOUT: Duration = Duration::from_secs(2);
const MAX_BYTES: usize = 256 * 1024;

#[derive(Debug)]
struct Entry {
    fetched: Instant,
    keys: HashMap<String, Arc<VerifyingKey>>,
}

/// JWKS documents by URL.
#[derive(Debug)]
pub(crate) struct JwksCache {
    client: reqwest::Client,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Default for JwksCache {
    fn default() -> Self {
        Self {
            client: reqwest::Client::builder()
                .timeout(TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            entries: Mutex::default(),
        }
    }
}

/// Whether `url` may be configured as a JWKS URL: https, or http on loopback (for local
/// development and tests).
pub(crate) fn acceptable_url(url: &str) -> bool {
    if url.len() > 2048 || !url.bytes().all(|b| b.is_ascii_graphic()) {
        return false;
    }
    let (https, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        (None, None) => return false,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // No userinfo: `http://127.0.0.1:1@evil/` names the host after the `@`.
    if authority.is_empty() || authority.contains(['@', '\\']) {
        return false;
    }
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if !h.ends_with(']') || authority.starts_with('[') => {
            if !port.bytes().all(|b| b.is_ascii_digit()) {
                return false;
            }
            h
        }
        _ => authority,
    };
    https || matches!(host, "127.0.0.1" | "localhost" | "[::1]")
}

impl JwksCache {
    fn cached(&self, url: &str, kid: &str) -> (Option<Arc<VerifyingKey>>, bool) {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match entries.get(url) {
            Some(e) => {
                let key = e.keys.get(kid).cloned();
                let age = e.fetched.elapsed();
                let may_fetch = age >= FRESH || (key.is_none() && age >= MIN_REFETCH);
                (key.filter(|_| age < FRESH), may_fetch)
            }
            None => (None, true),
        }
    }

    /// The key `kid` of the JWKS at `url`, fetching it if needed.
    pub(crate) async fn key(
        &self,
        url: &str,
        kid: &str,
    ) -> Result<Option<Arc<VerifyingKey>>, ServiceError> {
        let (hit, may_fetch) = self.cached(url, kid);
        if hit.is_some() || !may_fetch {
            return Ok(hit);
        }
        match self.fetch(url).await {
            Ok(keys) => {
                let found = keys.get(kid).cloned();
                self.entries
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(
                        url.to_owned(),
                        Entry {
                            fetched: Instant::now(),
                            keys,
                        },
                    );
                Ok(found)
            }
            Err(e) => {
                tracing::warn!(%url, error = %e, "JWKS fetch failed");
                Err(ServiceError::Unavailable(format!(
                    "JWKS at {url} unavailable"
                )))
            }
        }
    }

    async fn fetch(&self, url: &str) -> Result<HashMap<String, Arc<VerifyingKey>>, String> {
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BYTES as u64)
        {
            return Err("document too large".into());
        }
        let body = response.bytes().await.map_err(|e| e.to_string())?;
        if body.len() > MAX_BYTES {
            return Err("document too large".into());
        }
        let doc: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let mut keys = HashMap::new();
        for jwk in doc["keys"].as_array().into_iter().flatten() {
            let Some(jwk) = jwk.as_object() else { continue };
            if jwk
                .get("use")
                .and_then(Value::as_str)
                .is_some_and(|u| u != "sig")
            {
                continue;
            }
            let Some(kid) = jwk.get("kid").and_then(Value::as_str) else {
                continue;
            };
            let Ok(key_id) = kid.parse::<KeyId>() else {
                continue;
            };
            if let Ok(key) = VerifyingKey::from_jwk(key_id, jwk) {
                keys.insert(kid.to_owned(), Arc::new(key));
            }
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_https_or_loopback_http() {
        assert!(acceptable_url("https://app.example/.well-known/jwks.json"));
        assert!(acceptable_url("http://127.0.0.1:9000/jwks"));
        assert!(acceptable_url("http://localhost/jwks"));
        assert!(!acceptable_url("http://app.example/jwks"));
        assert!(!acceptable_url("http://169.254.169.254/latest/meta-data/"));
        assert!(!acceptable_url("ftp://x"));
        assert!(!acceptable_url("https://"));
        assert!(!acceptable_url("http://127.0.0.1.evil.example/jwks"));
        assert!(!acceptable_url(
            "http://127.0.0.1:1@127.0.0.2/latest/meta-data"
        ));
        assert!(!acceptable_url("https://user@app.example/jwks"));
        assert!(!acceptable_url("http://127.0.0.1:x/jwks"));
        assert!(acceptable_url("http://[::1]:8080/jwks"));
    }
}
