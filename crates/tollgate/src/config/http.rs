//! The `[http]` section: body size, browser origins for CORS, read timeouts, trusted
//! proxies and the failed-credential limit, validated into [`tollgate_http::HttpSettings`].
//!
//! ```toml
//! [http]
//! max_body_bytes = 1048576
//! cors_allowed_origins = ["https://app.example.com"]  # default: gateway.allowed_origins
//! header_read_timeout = "10s"
//! body_read_timeout = "30s"
//! trusted_proxies = ["10.0.0.0/8"]
//! failed_auth_burst = 20        # wrong credentials an address may send at once,
//! failed_auth_per_minute = 30   # then this many a minute; 429 beyond
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tollgate_http::HttpSettings;
use tollgate_http::cors::OriginSource;
use tollgate_http::throttle::Limit;

use super::gateway::{check_origins, duration};
use super::{ConfigError, RawDuration, RawList, bad};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHttp {
    pub max_body_bytes: u64,
    /// Unset: the gateway's `allowed_origins` apply to CORS too.
    pub cors_allowed_origins: Option<RawList>,
    pub header_read_timeout: Option<RawDuration>,
    pub body_read_timeout: Option<RawDuration>,
    pub trusted_proxies: Option<RawList>,
    /// Failed credentials an address may make at once…
    pub failed_auth_burst: u32,
    /// …and how many more it is allowed per minute after that.
    pub failed_auth_per_minute: u32,
}

impl Default for RawHttp {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            cors_allowed_origins: None,
            header_read_timeout: None,
            body_read_timeout: None,
            trusted_proxies: None,
            failed_auth_burst: 20,
            failed_auth_per_minute: 30,
        }
    }
}

/// The section's setting paths.
pub(super) const HTTP_SETTINGS: &[&str] = &[
    "http.max_body_bytes",
    "http.cors_allowed_origins",
    "http.header_read_timeout",
    "http.body_read_timeout",
    "http.trusted_proxies",
    "http.failed_auth_burst",
    "http.failed_auth_per_minute",
];

/// Validates the section; `gateway_origins` are CORS's origins unless it has its own.
pub(super) fn settings(
    raw: &RawHttp,
    gateway_origins: &[String],
) -> Result<HttpSettings, ConfigError> {
    let d = HttpSettings::default();
    let max_body_bytes = usize::try_from(raw.max_body_bytes)
        .ok()
        .filter(|n| (64 * 1024..=64 * 1024 * 1024).contains(n))
        .ok_or_else(|| bad("http.max_body_bytes", "must be between 65536 and 67108864"))?;
    let (cors_allowed_origins, cors_origin_source) = match &raw.cors_allowed_origins {
        Some(list) => {
            let origins = list.items();
            check_origins("http.cors_allowed_origins", &origins)?;
            (origins, OriginSource::Cors)
        }
        None => (gateway_origins.to_vec(), OriginSource::Gateway),
    };
    let sec = Duration::from_secs;
    let header_read_timeout = duration(
        "http.header_read_timeout",
        raw.header_read_timeout.as_ref(),
        d.header_read_timeout,
        sec(1),
        sec(300),
    )?;
    let body_read_timeout = duration(
        "http.body_read_timeout",
        raw.body_read_timeout.as_ref(),
        d.body_read_timeout,
        sec(1),
        sec(600),
    )?;
    let trusted_proxies = raw
        .trusted_proxies
        .as_ref()
        .map(RawList::items)
        .unwrap_or_default()
        .iter()
        .map(|p| p.parse().map_err(|e| bad("http.trusted_proxies", e)))
        .collect::<Result<Vec<_>, _>>()?;
    if !(1..=10_000).contains(&raw.failed_auth_burst) {
        return Err(bad("http.failed_auth_burst", "must be between 1 and 10000"));
    }
    if !(1..=60_000).contains(&raw.failed_auth_per_minute) {
        return Err(bad(
            "http.failed_auth_per_minute",
            "must be between 1 and 60000",
        ));
    }
    let failed_auth = Limit {
        burst: f64::from(raw.failed_auth_burst),
        per_second: f64::from(raw.failed_auth_per_minute) / 60.0,
    };
    Ok(HttpSettings {
        max_body_bytes,
        cors_allowed_origins,
        cors_origin_source,
        header_read_timeout,
        body_read_timeout,
        trusted_proxies,
        failed_auth,
    })
}
