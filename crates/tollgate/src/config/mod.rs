//! Typed configuration: defaults, then an optional TOML file, then `TOLLGATE_*` environment
//! variables (`TOLLGATE_<SECTION>__<KEY>`), validated once at start-up into [`Config`].
//!
//! Validation errors name the setting in both spellings (`TOLLGATE_LISTEN (listen)`), so
//! the one line an operator sees says exactly what to fix.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

mod gateway;
mod http;
mod raw;

pub use gateway::{RawDuration, RawGateway, RawList};
pub use http::RawHttp;
use raw::OTHER_KNOWN_VARS;
pub use raw::{RawCentrifugo, RawConfig, RawFabric, RawJwks, RawTokens, SETTINGS, Secret};

use figment::Figment;
use figment::providers::{Format as _, Serialized, Toml};

/// The environment variable for a setting path.
#[must_use]
pub fn env_name(path: &str) -> String {
    format!("TOLLGATE_{}", path.replace('.', "__").to_uppercase())
}

/// Where the database lives.
#[derive(Debug, Clone)]
pub enum Database {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL server (the URL may hold a password: never log it).
    Postgres(Secret),
}

impl Database {
    /// The URL to connect with.
    #[must_use]
    pub fn url(&self) -> String {
        match self {
            Database::Sqlite(path) => format!("sqlite://{}", path.display()),
            Database::Postgres(url) => url.expose().to_owned(),
        }
    }
}

/// Log output style.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where the master key comes from.
#[derive(Debug, Clone)]
pub enum MasterKeySource {
    /// Given inline (base64 of 32 bytes).
    Inline(Secret),
    /// A file, created with mode 0600 on first start if missing.
    File(PathBuf),
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub database: Database,
    /// How SQLite acknowledges commits (ignored with PostgreSQL).
    pub sqlite_synchronous: tollgate_store::SqliteSynchronous,
    pub log: String,
    pub log_format: LogFormat,
    pub master_key: MasterKeySource,
    pub issuer: String,
    pub public_gateway_url: Option<String>,
    /// WebSocket gateway limits, timers and channel options.
    pub gateway: tollgate_gateway::GatewaySettings,
    pub centrifugo_hmac_secret: Option<Secret>,
    pub centrifugo_api_key: Option<Secret>,
    /// The project `centrifugo_hmac_secret` and `centrifugo_api_key` act for.
    pub centrifugo_project: Option<tollgate_token::ProjectId>,
    /// The HTTP layer: body size, CORS origins, read timeouts, trusted proxies.
    pub http: tollgate_http::HttpSettings,
    pub max_subscriber_token_lifetime: i64,
    pub refresh_reuse_leeway: i64,
    pub max_family_lifetime: i64,
    /// Whether JWKS URLs may name loopback, private and link-local addresses.
    pub jwks_allow_private_hosts: bool,
    /// Where publications, history and presence live.
    pub broker: BrokerSetting,
}

/// `broker_url`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerSetting {
    /// In-process: one node (the default).
    Memory,
    /// Redis: one URL, or several sharded by channel; shared by every node of a cluster.
    Redis(tollgate_broker::RedisConfig),
}

/// A configuration problem, naming the setting.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

/// Accepted lengths of `centrifugo.api_key`: at least 32 characters (as much guessing
/// resistance as a 128-bit random key in hex), at most what the server API reads (256).
pub const SERVER_API_KEY_LEN: std::ops::RangeInclusive<usize> = 32..=256;

fn bad(path: &str, why: impl fmt::Display) -> ConfigError {
    ConfigError(format!("{} ({path}): {why}", env_name(path)))
}

/// Result of loading: the configuration plus warnings to log once logging is up.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// Loads defaults, then `file` if given, then the environment `vars`.
pub fn load(
    file: Option<&Path>,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Loaded, ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(RawConfig::default()));
    if let Some(file) = file {
        if !file.is_file() {
            return Err(ConfigError(format!(
                "--config {}: no such file",
                file.display()
            )));
        }
        figment = figment.merge(Toml::file_exact(file));
    }
    let mut warnings = Vec::new();
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix("TOLLGATE_") else {
            continue;
        };
        let path = rest.to_lowercase().replace("__", ".");
        if [SETTINGS, gateway::GATEWAY_SETTINGS, http::HTTP_SETTINGS]
            .iter()
            .any(|list| list.contains(&path.as_str()))
        {
            // Values are inserted as strings and converted by `extract_lossy`, so a secret
            // that happens to look like a number stays a string.
            figment = figment.merge(Serialized::default(&path, value));
        } else if !OTHER_KNOWN_VARS.contains(&name.as_str()) {
            warnings.push(format!("unknown setting {name} is ignored"));
        }
    }
    let raw: RawConfig = figment
        .extract_lossy()
        .map_err(|e| ConfigError(one_line(&e)))?;
    Ok(Loaded {
        config: validate(raw)?,
        warnings,
    })
}

/// Settings whose values must never appear in an error message.
const SECRET_SETTINGS: &[&str] = &[
    "secret_key",
    "centrifugo.token_hmac_secret_key",
    "centrifugo.api_key",
    "database_url",
];

/// Renders a figment error as one line naming the setting, without echoing secret values.
fn one_line(e: &figment::Error) -> String {
    let path = e.path.join(".");
    let msg = if SECRET_SETTINGS.contains(&path.as_str()) {
        "has the wrong type (expected a string)".to_owned()
    } else {
        e.kind.to_string()
    };
    // TOML syntax errors come with a multi-line source excerpt: fold it onto one line.
    let msg = msg.split_whitespace().collect::<Vec<_>>().join(" ");
    let source = e
        .metadata
        .as_ref()
        .and_then(|m| m.source.as_ref())
        .map(|s| format!(" in {s}"))
        .unwrap_or_default();
    if path.is_empty() {
        format!("{msg}{source}")
    } else {
        format!("{} ({path}){source}: {msg}", env_name(&path))
    }
}

/// `ws://…`, `wss://…`, or a bare `host[:port]` (which `@signalwire/js` prefixes with
/// `wss://` itself).
fn valid_gateway_url(url: &str) -> bool {
    if url.len() > 512 || !url.bytes().all(|b| b.is_ascii_graphic()) {
        return false;
    }
    if let Some(rest) = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("wss://"))
    {
        return !rest.is_empty();
    }
    let (host, port) = url.split_once(':').unwrap_or((url, "80"));
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
        && port.parse::<u16>().is_ok()
}

/// Checks every setting and builds the typed configuration.
pub fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    let listen: SocketAddr = raw
        .listen
        .parse()
        .map_err(|_| bad("listen", format!("{:?} is not an address:port", raw.listen)))?;

    let database = if let Some(path) = raw.database_url.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err(bad("database_url", "sqlite:// needs a file path"));
        }
        if path.contains('?') {
            return Err(bad(
                "database_url",
                "sqlite:// takes a plain file path; query options are not supported",
            ));
        }
        Database::Sqlite(PathBuf::from(path))
    } else if raw.database_url.starts_with("postgres://")
        || raw.database_url.starts_with("postgresql://")
    {
        Database::Postgres(Secret(raw.database_url.clone()))
    } else {
        return Err(bad(
            "database_url",
            "must start with sqlite:// or postgres://",
        ));
    };

    let sqlite_synchronous = match raw.sqlite_synchronous.to_ascii_lowercase().as_str() {
        "full" => tollgate_store::SqliteSynchronous::Full,
        "normal" => tollgate_store::SqliteSynchronous::Normal,
        _ => return Err(bad("sqlite_synchronous", "must be \"full\" or \"normal\"")),
    };

    let broker = match raw.broker_url.as_str() {
        "memory" => BrokerSetting::Memory,
        url if url.starts_with("rediss://") || url.contains(",rediss://") => {
            return Err(bad(
                "broker_url",
                "TLS to Redis (rediss://) is not available in this version; use redis://",
            ));
        }
        url if url.starts_with("redis://") => BrokerSetting::Redis(
            tollgate_broker::RedisConfig::from_broker_url(url).map_err(|e| bad("broker_url", e))?,
        ),
        _ => {
            return Err(bad(
                "broker_url",
                "must be \"memory\" or redis://host:port[/db] (several, comma-separated, shard by channel)",
            ));
        }
    };

    tracing_subscriber::EnvFilter::try_new(&raw.log)
        .map_err(|e| bad("log", format!("{:?} is not a log filter: {e}", raw.log)))?;
    let log_format = match raw.log_format.as_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        _ => return Err(bad("log_format", "must be \"text\" or \"json\"")),
    };

    let master_key = match (raw.secret_key, raw.secret_key_file) {
        (Some(_), Some(_)) => {
            return Err(bad(
                "secret_key",
                "set either TOLLGATE_SECRET_KEY or TOLLGATE_SECRET_KEY_FILE, not both",
            ));
        }
        (Some(key), None) => {
            crate::master_key::decode(key.expose()).map_err(|e| bad("secret_key", e))?;
            MasterKeySource::Inline(key)
        }
        (None, Some(file)) => MasterKeySource::File(file),
        (None, None) => match &database {
            Database::Sqlite(path) => MasterKeySource::File(
                path.parent()
                    .unwrap_or_else(|| Path::new("."))
                    .join("tollgate.key"),
            ),
            Database::Postgres(_) => {
                return Err(bad(
                    "secret_key",
                    "required with a PostgreSQL database (every node must share it); \
                     or set TOLLGATE_SECRET_KEY_FILE",
                ));
            }
        },
    };

    let issuer = raw.tokens.issuer.trim().to_owned();
    if issuer.is_empty() || issuer.len() > 256 {
        return Err(bad("tokens.issuer", "must be 1 to 256 characters"));
    }

    let gateway = gateway::validate(&raw.gateway)?;
    let public_gateway_url = match raw.gateway.public_url {
        None => None,
        Some(url) if url.is_empty() => None,
        Some(url) => {
            if !valid_gateway_url(&url) {
                return Err(bad(
                    "gateway.public_url",
                    "must be a ws:// or wss:// URL or a bare host[:port], e.g. wss://rt.example.com",
                ));
            }
            Some(url)
        }
    };

    // An empty value is how environments "unset" a variable: treat it as absent.
    let centrifugo_hmac_secret = match raw
        .centrifugo
        .token_hmac_secret_key
        .filter(|s| !s.expose().is_empty())
    {
        Some(s) if s.expose().len() < 32 => {
            // RFC 7518 §3.2: an HS256 key must be at least as long as the hash output.
            return Err(bad(
                "centrifugo.token_hmac_secret_key",
                "must be at least 32 bytes (RFC 7518 §3.2); generate it randomly",
            ));
        }
        other => other,
    };
    let centrifugo_api_key = match raw.centrifugo.api_key {
        Some(k) if k.expose().trim().is_empty() => {
            return Err(bad("centrifugo.api_key", "must not be blank"));
        }
        // It alone authorises publishing to and disconnecting anyone in its project, and
        // it is compared as sent: only length makes it hard to guess. Longer than the
        // server API reads, it could never match.
        Some(k) if !SERVER_API_KEY_LEN.contains(&k.expose().len()) => {
            return Err(bad(
                "centrifugo.api_key",
                format!(
                    "must be {} to {} characters (generate one, e.g. `openssl rand -hex 32`)",
                    SERVER_API_KEY_LEN.start(),
                    SERVER_API_KEY_LEN.end()
                ),
            ));
        }
        other => other,
    };

    let centrifugo_project = match raw.centrifugo.project.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(p) => Some(p.parse::<tollgate_token::ProjectId>().map_err(|_| {
            bad(
                "centrifugo.project",
                "must be a project id (a UUID, as `tollgate project list` shows it)",
            )
        })?),
    };

    let http = http::settings(&raw.http, &gateway.allowed_origins)?;

    let max_subscriber_token_lifetime = raw.fabric.max_token_lifetime;
    if !(60..=30 * 24 * 60 * 60).contains(&max_subscriber_token_lifetime) {
        return Err(bad(
            "fabric.max_token_lifetime",
            "must be between 60 and 2592000 seconds (30 days)",
        ));
    }

    let refresh_reuse_leeway = raw.fabric.refresh_reuse_leeway;
    if !(0..=60).contains(&refresh_reuse_leeway) {
        return Err(bad(
            "fabric.refresh_reuse_leeway",
            "must be between 0 and 60 seconds",
        ));
    }
    let max_family_lifetime = raw.fabric.max_family_lifetime;
    if !(max_subscriber_token_lifetime..=365 * 24 * 60 * 60).contains(&max_family_lifetime) {
        return Err(bad(
            "fabric.max_family_lifetime",
            "must be at least fabric.max_token_lifetime and at most 365 days",
        ));
    }

    Ok(Config {
        listen,
        database,
        sqlite_synchronous,
        log: raw.log,
        log_format,
        master_key,
        issuer,
        public_gateway_url,
        gateway,
        centrifugo_hmac_secret,
        centrifugo_api_key,
        centrifugo_project,
        http,
        max_subscriber_token_lifetime,
        refresh_reuse_leeway,
        max_family_lifetime,
        jwks_allow_private_hosts: raw.jwks.allow_private_hosts,
        broker,
    })
}

#[cfg(test)]
mod tests;
