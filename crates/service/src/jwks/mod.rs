//! Fetching and caching an application's JWKS, for user JWTs verified by a JWKS URL.
//!
//! The URL is administrator configuration, never taken from a token (checklist JWT-04), and
//! may reach only public addresses unless `jwks.allow_private_hosts` says otherwise
//! ([`address`]). What one URL can cost is bounded:
//! - at most one fetch per URL at a time: concurrent verifications wait for it and share
//!   its answer (single flight);
//! - at most one fetch per URL per [`MIN_REFETCH`], whatever happens: keys are used for
//!   [`FRESH`]; an unknown `kid` or stale keys refetch no sooner than [`MIN_REFETCH`] after
//!   the last attempt, and a failed attempt is remembered for as long (negative cache);
//! - each fetch: [`TIMEOUT`] in all, a body of at most [`MAX_BYTES`] (read as a stream and
//!   abandoned as soon as it is larger), at most [`MAX_KEYS`] keys, no redirects, no proxy;
//! - at most [`MAX_URLS`] URLs remembered.
//!
//! When a refetch fails, keys fetched within [`STALE_IF_ERROR`] keep verifying, so a JWKS
//! host's outage does not log every user out; without such keys verification answers
//! "unavailable" (503). Why a fetch failed is logged at warn once per attempt — so at most
//! once per [`MIN_REFETCH`] per URL, never per request.

mod address;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;
use tollgate_token::KeyId;
use tollgate_token::jose::VerifyingKey;

use crate::ServiceError;
pub(crate) use address::check_url;

/// How long fetched keys are used without asking again.
pub(crate) const FRESH: Duration = Duration::from_secs(300);
/// Shortest interval between two fetches of one URL, successful or not.
pub(crate) const MIN_REFETCH: Duration = Duration::from_secs(10);
/// How long fetched keys keep verifying while refetches fail.
pub(crate) const STALE_IF_ERROR: Duration = Duration::from_secs(60 * 60);
/// Longest one fetch may take, connecting and reading the body included.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Largest JWKS document read.
const MAX_BYTES: usize = 256 * 1024;
/// Most keys taken from one document.
const MAX_KEYS: usize = 100;
/// Most URLs remembered; the least recently fetched is forgotten first.
const MAX_URLS: usize = 1000;

type Keys = HashMap<String, Arc<VerifyingKey>>;

/// What is known about one URL.
#[derive(Debug, Default)]
struct State {
    /// The last key set fetched, and when.
    keys: Option<(Instant, Keys)>,
    /// When the last fetch ended, and whether it failed.
    attempt: Option<(Instant, bool)>,
}

/// What a verification should do next.
enum Next {
    Answer(Result<Option<Arc<VerifyingKey>>, ServiceError>),
    Fetch,
}

impl State {
    fn next(&self, kid: &str, now: Instant) -> Next {
        let key = self.keys.as_ref().and_then(|(_, k)| k.get(kid).cloned());
        let age = self.keys.as_ref().map(|(at, _)| now.duration_since(*at));
        if key.is_some() && age.is_some_and(|a| a < FRESH) {
            return Next::Answer(Ok(key));
        }
        let failed = match self.attempt {
            Some((at, failed)) if now.duration_since(at) < MIN_REFETCH => failed,
            // Never asked, or long enough ago: ask (again).
            _ => return Next::Fetch,
        };
        // Asked moments ago: answer from what that brought, stale keys included if the
        // attempt failed.
        let usable = age.is_some_and(|a| a < if failed { STALE_IF_ERROR } else { FRESH });
        Next::Answer(if usable {
            Ok(key)
        } else {
            Err(ServiceError::Unavailable(
                "the application's JWKS is unavailable (the reason is logged once per \
                 refetch window)"
                    .into(),
            ))
        })
    }
}

/// One URL: its state, and the lock a fetch holds so that there is one at a time.
#[derive(Debug, Default)]
struct Slot {
    state: Mutex<State>,
    flight: tokio::sync::Mutex<()>,
}

impl Slot {
    fn next(&self, kid: &str) -> Next {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.next(kid, Instant::now())
    }

    fn last_activity(&self) -> Option<Instant> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.attempt.map(|(at, _)| at)
    }
}

/// JWKS documents by URL.
#[derive(Debug)]
pub(crate) struct JwksCache {
    client: Result<reqwest::Client, String>,
    allow_private: bool,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

impl JwksCache {
    /// A cache whose fetches reach only public addresses unless `allow_private`.
    pub(crate) fn new(allow_private: bool) -> Self {
        Self::with_resolver(address::PublicOnly::new(allow_private), allow_private)
    }

    fn with_resolver(resolver: address::PublicOnly, allow_private: bool) -> Self {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            // Direct connections only: through a proxy, the address check would judge the
            // proxy's address rather than the JWKS host's.
            .no_proxy()
            .dns_resolver(Arc::new(resolver))
            .build()
            // Never a default client instead: it would connect anywhere.
            .map_err(|e| format!("cannot build the JWKS HTTP client: {e}"));
        Self {
            client,
            allow_private,
            slots: Mutex::default(),
        }
    }

    fn slot(&self, url: &str) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = slots.get(url) {
            return slot.clone();
        }
        if slots.len() >= MAX_URLS {
            // Forget the URL fetched longest ago (a removed issuer's, most likely). A
            // verification still holding it finishes with it undisturbed.
            let oldest = slots
                .iter()
                .min_by_key(|(_, s)| s.last_activity())
                .map(|(u, _)| u.clone());
            if let Some(oldest) = oldest {
                slots.remove(&oldest);
            }
        }
        slots.entry(url.to_owned()).or_default().clone()
    }

    /// The key `kid` of the JWKS at `url` (`None`: the document has no such key),
    /// fetching it if needed; `Unavailable` if it cannot be had.
    pub(crate) async fn key(
        &self,
        url: &str,
        kid: &str,
    ) -> Result<Option<Arc<VerifyingKey>>, ServiceError> {
        let slot = self.slot(url);
        if let Next::Answer(answer) = slot.next(kid) {
            return answer;
        }
        let _flight = slot.flight.lock().await;
        // Whoever held the flight before us may have just fetched: decide again.
        if let Next::Answer(answer) = slot.next(kid) {
            return answer;
        }
        let fetched = self.fetch(url).await;
        let mut state = slot.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        match fetched {
            Ok(keys) => {
                state.keys = Some((now, keys));
                state.attempt = Some((now, false));
            }
            Err(reason) => {
                state.attempt = Some((now, true));
                let stale = state.keys.as_ref().map(|(at, _)| now.duration_since(*at));
                tracing::warn!(
                    jwks = %loggable(url),
                    %reason,
                    stale_keys_age_secs = stale.map(|a| a.as_secs()),
                    "JWKS fetch failed; not retried for {} s{}",
                    MIN_REFETCH.as_secs(),
                    if stale.is_some_and(|a| a < STALE_IF_ERROR) {
                        "; the keys fetched before keep verifying"
                    } else {
                        ""
                    }
                );
            }
        }
        match state.next(kid, now) {
            Next::Answer(answer) => answer,
            Next::Fetch => Err(ServiceError::Internal("JWKS state after a fetch".into())),
        }
    }

    async fn fetch(&self, url: &str) -> Result<Keys, String> {
        // Again here, not only when the URL was configured: it may predate the check, and
        // the resolver never sees a URL that names an address.
        check_url(url, self.allow_private)?;
        let mut response = self
            .client
            .as_ref()
            .map_err(Clone::clone)?
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(describe)?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BYTES as u64)
        {
            return Err(format!("document larger than {MAX_BYTES} bytes"));
        }
        // Chunk by chunk, so a body without (or lying about) its length is abandoned, and
        // its connection dropped, as soon as it passes the cap.
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(describe)? {
            if body.len() + chunk.len() > MAX_BYTES {
                return Err(format!("document larger than {MAX_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        let doc: Value = serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))?;
        Ok(parse_keys(&doc))
    }

    /// Moves everything known about `url` `by` into the past. For tests of time.
    #[cfg(test)]
    fn backdate(&self, url: &str, by: Duration) {
        let slot = self.slot(url);
        let mut state = slot.state.lock().unwrap_or_else(PoisonError::into_inner);
        let back = |t: &mut Instant| *t = t.checked_sub(by).expect("uptime exceeds the shift");
        if let Some((at, _)) = &mut state.keys {
            back(at);
        }
        if let Some((at, _)) = &mut state.attempt {
            back(at);
        }
    }
}

/// The public signature keys of a JWKS document, by `kid`: keys without a usable `kid`,
/// for another use, or of a kind Tollgate does not verify with are skipped.
fn parse_keys(doc: &Value) -> Keys {
    let mut keys = HashMap::new();
    for jwk in doc["keys"].as_array().into_iter().flatten() {
        if keys.len() == MAX_KEYS {
            break;
        }
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
    keys
}

/// A fetch error and its causes on one line, without the URL (logged separately).
fn describe(e: reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("timed out after {} s", TIMEOUT.as_secs());
    }
    let e = e.without_url();
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    // hyper and the resolver nest their reasons a few levels deep.
    for _ in 0..8 {
        let Some(c) = cause else { break };
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// The URL as logs show it: no query or fragment (a JWKS URL may carry a key in its query).
fn loggable(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            u.set_query(None);
            u.set_fragment(None);
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => "(not a URL)".into(),
    }
}

#[cfg(test)]
mod tests;
