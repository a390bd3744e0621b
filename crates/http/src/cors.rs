//! CORS for the browser-facing endpoints (token endpoints, `/centrifuge/subscribe`, Fabric
//! refresh and subscriber info, guest and invite tokens), built on tower-http's layer.
//!
//! Origins come from `http.cors_allowed_origins`, or, when that is not set, from
//! `gateway.allowed_origins`: the page allowed to open the WebSocket is the page allowed to
//! fetch its tokens. No credentials mode: callers send `Authorization` themselves, never
//! cookies. Admin, Basic-auth-only and server API endpoints get no CORS headers at all, so
//! a browser can never call them cross-origin. A refused origin is logged at `info` (at most
//! once a second) with the setting that would allow it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderName, HeaderValue, Method, header, request::Parts};
use tollgate_gateway::origins::origin_matches;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Where the allowed origins came from, for the log line that tells an operator what to set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginSource {
    /// `http.cors_allowed_origins`.
    Cors,
    /// `gateway.allowed_origins`, shared with the WebSocket gateway.
    Gateway,
}

impl OriginSource {
    fn setting(self) -> &'static str {
        match self {
            Self::Cors => "http.cors_allowed_origins (TOLLGATE_HTTP__CORS_ALLOWED_ORIGINS)",
            Self::Gateway => {
                "gateway.allowed_origins (TOLLGATE_GATEWAY__ALLOWED_ORIGINS), or \
                 http.cors_allowed_origins for HTTP only"
            }
        }
    }
}

/// How long browsers may cache a preflight answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);
/// Longest origin quoted in the log (the header is the caller's to choose).
const MAX_LOGGED_ORIGIN: usize = 200;

/// The CORS layer for `origins` (patterns as in `gateway.allowed_origins`).
pub fn layer(origins: Vec<String>, source: OriginSource) -> CorsLayer {
    let origins = Arc::new(origins);
    let last_logged = Arc::new(AtomicU64::new(0));
    let allow = AllowOrigin::predicate(move |origin: &HeaderValue, _: &Parts| {
        let allowed = origin.to_str().is_ok_and(|o| origin_matches(&origins, o));
        if !allowed {
            log_refusal(origin, source, &last_logged);
        }
        allowed
    });
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("dpop"),
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([HeaderName::from_static("x-request-id"), header::RETRY_AFTER])
        .max_age(PREFLIGHT_MAX_AGE)
}

fn log_refusal(origin: &HeaderValue, source: OriginSource, last_logged: &AtomicU64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if last_logged.swap(now, Ordering::Relaxed) == now {
        return;
    }
    let origin = String::from_utf8_lossy(origin.as_bytes());
    let origin: String = origin.chars().take(MAX_LOGGED_ORIGIN).collect();
    tracing::info!(
        origin = ?origin,
        "browser request from an origin that is not allowed (no CORS headers sent); \
         to allow it, add it to {}",
        source.setting()
    );
}
