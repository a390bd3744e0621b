//! The configuration as written: the TOML/environment schema (`Raw*`), every setting's
//! name, and [`Secret`], the wrapper that keeps secret values out of logs. Nothing here
//! validates; [`super::validate`] turns a [`RawConfig`] into a checked `Config`.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{RawGateway, RawHttp};

/// A secret setting. Its `Debug` never shows the value, and it has no `PartialEq`: a
/// comparison with a secret must be written as a constant-time one.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub(super) String);

impl Secret {
    #[cfg(test)]
    pub(crate) fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The secret text.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// The settings file as written, before validation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub listen: String,
    pub database_url: String,
    pub sqlite_synchronous: String,
    pub broker_url: String,
    pub log: String,
    pub log_format: String,
    pub secret_key: Option<Secret>,
    pub secret_key_file: Option<PathBuf>,
    pub tokens: RawTokens,
    pub gateway: RawGateway,
    pub centrifugo: RawCentrifugo,
    pub http: RawHttp,
    pub fabric: RawFabric,
    pub jwks: RawJwks,
}

/// Fetching applications' JWKS (user JWTs verified through a JWKS URL).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawJwks {
    /// Accept JWKS URLs on loopback, private and link-local addresses (local development).
    pub allow_private_hosts: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTokens {
    pub issuer: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCentrifugo {
    pub token_hmac_secret_key: Option<Secret>,
    pub api_key: Option<Secret>,
    /// The project the two credentials above act for.
    pub project: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawFabric {
    pub max_token_lifetime: i64,
    pub refresh_reuse_leeway: i64,
    pub max_family_lifetime: i64,
}

impl Default for RawFabric {
    fn default() -> Self {
        Self {
            max_token_lifetime: 24 * 60 * 60,
            refresh_reuse_leeway: 2,
            max_family_lifetime: 30 * 24 * 60 * 60,
        }
    }
}

impl Default for RawConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8000".into(),
            database_url: "sqlite://tollgate-data/tollgate.db".into(),
            sqlite_synchronous: "full".into(),
            broker_url: "memory".into(),
            log: "info".into(),
            log_format: "text".into(),
            secret_key: None,
            secret_key_file: None,
            tokens: RawTokens::default(),
            gateway: RawGateway::default(),
            centrifugo: RawCentrifugo::default(),
            http: RawHttp::default(),
            fabric: RawFabric::default(),
            jwks: RawJwks::default(),
        }
    }
}

impl Default for RawTokens {
    fn default() -> Self {
        Self {
            issuer: "tollgate".into(),
        }
    }
}

/// Every setting's TOML path. An environment variable is its upper-cased path with `.`
/// spelled `__` and the `TOLLGATE_` prefix.
pub const SETTINGS: &[&str] = &[
    "listen",
    "database_url",
    "sqlite_synchronous",
    "broker_url",
    "log",
    "log_format",
    "secret_key",
    "secret_key_file",
    "tokens.issuer",
    "centrifugo.token_hmac_secret_key",
    "centrifugo.api_key",
    "centrifugo.project",
    "fabric.max_token_lifetime",
    "fabric.refresh_reuse_leeway",
    "fabric.max_family_lifetime",
    "jwks.allow_private_hosts",
];

/// `TOLLGATE_*` variables that are not settings but are still expected.
pub(super) const OTHER_KNOWN_VARS: &[&str] = &[
    "TOLLGATE_CONFIG",
    "TOLLGATE_TEST_POSTGRES_URL",
    "TOLLGATE_TEST_DATABASE",
];
