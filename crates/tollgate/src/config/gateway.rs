//! The `[gateway]` section: limits, timers, allowed origins and per-namespace channel
//! options, validated into the gateway's [`GatewaySettings`].
//!
//! ```toml
//! [gateway]
//! allowed_origins = ["https://app.example.com"]
//! ping_interval = "25s"
//!
//! [gateway.default_channel_options]   # channels whose namespace has no entry below
//! allow_subscribe_for_client = false
//!
//! [gateway.namespaces.chat]           # Centrifugo's option names
//! presence = true
//! join_leave = true
//! history_size = 100
//! history_ttl = "300s"
//! force_recovery = true
//! allow_publish_for_subscriber = true
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tollgate_gateway::{ChannelConfig, ChannelOptions, GatewaySettings};
use tollgate_token::centrifugo::parse_duration;

use super::{ConfigError, bad};

/// A duration written as seconds (`25`) or as text (`"25s"`, `"1m"`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RawDuration {
    Secs(u64),
    Text(String),
}

impl RawDuration {
    fn secs(s: u64) -> Option<Self> {
        Some(Self::Secs(s))
    }

    pub(super) fn parse(&self) -> Result<Duration, String> {
        match self {
            Self::Secs(s) => Ok(Duration::from_secs(*s)),
            Self::Text(t) => parse_duration(t),
        }
    }
}

/// A list written as a TOML array or, from the environment, comma-separated.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RawList {
    List(Vec<String>),
    Text(String),
}

impl RawList {
    pub(super) fn items(&self) -> Vec<String> {
        match self {
            Self::List(v) => v.clone(),
            Self::Text(t) => t
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawGateway {
    /// Public address of the gateway, put in SignalWire tokens' `ch` header.
    pub public_url: Option<String>,
    pub allowed_origins: Option<RawList>,
    pub max_connections: u64,
    pub max_connections_per_user: u64,
    pub max_channels: u64,
    pub max_message_bytes: u64,
    pub max_publication_bytes: u64,
    pub max_commands_per_second: u32,
    pub command_burst: u32,
    pub queue_bytes: u64,
    pub history_max_publication_limit: u64,
    pub ping_interval: Option<RawDuration>,
    pub pong_timeout: Option<RawDuration>,
    pub stale_timeout: Option<RawDuration>,
    pub expired_close_delay: Option<RawDuration>,
    pub expired_sub_close_delay: Option<RawDuration>,
    pub presence_update_interval: Option<RawDuration>,
    pub chat_history_size: u64,
    pub chat_history_ttl: Option<RawDuration>,
    pub default_channel_options: ChannelOptions,
    pub namespaces: BTreeMap<String, ChannelOptions>,
}

impl Default for RawGateway {
    fn default() -> Self {
        let d = GatewaySettings::default();
        let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        Self {
            public_url: None,
            allowed_origins: None,
            max_connections: n(d.max_connections),
            max_connections_per_user: n(d.max_connections_per_user),
            max_channels: n(d.max_channels),
            max_message_bytes: n(d.max_message_bytes),
            max_publication_bytes: n(d.max_publication_bytes),
            max_commands_per_second: d.max_commands_per_second,
            command_burst: d.command_burst,
            queue_bytes: n(d.queue_bytes),
            history_max_publication_limit: n(d.history_max_publication_limit),
            ping_interval: RawDuration::secs(d.ping_interval.as_secs()),
            pong_timeout: RawDuration::secs(d.pong_timeout.as_secs()),
            stale_timeout: RawDuration::secs(d.stale_timeout.as_secs()),
            expired_close_delay: RawDuration::secs(d.expired_close_delay.as_secs()),
            expired_sub_close_delay: RawDuration::secs(d.expired_sub_close_delay.as_secs()),
            presence_update_interval: RawDuration::secs(d.presence_update_interval.as_secs()),
            chat_history_size: n(d.chat_history_size),
            chat_history_ttl: RawDuration::secs(d.chat_history_ttl.as_secs()),
            default_channel_options: ChannelOptions::default(),
            namespaces: BTreeMap::new(),
        }
    }
}

/// Scalar `[gateway]` settings that have an environment form.
pub(super) const GATEWAY_SETTINGS: &[&str] = &[
    "gateway.public_url",
    "gateway.allowed_origins",
    "gateway.max_connections",
    "gateway.max_connections_per_user",
    "gateway.max_channels",
    "gateway.max_message_bytes",
    "gateway.max_publication_bytes",
    "gateway.max_commands_per_second",
    "gateway.command_burst",
    "gateway.queue_bytes",
    "gateway.history_max_publication_limit",
    "gateway.ping_interval",
    "gateway.pong_timeout",
    "gateway.stale_timeout",
    "gateway.expired_close_delay",
    "gateway.expired_sub_close_delay",
    "gateway.presence_update_interval",
    "gateway.chat_history_size",
    "gateway.chat_history_ttl",
];

fn within(path: &str, v: u64, lo: u64, hi: u64) -> Result<usize, ConfigError> {
    if (lo..=hi).contains(&v) {
        usize::try_from(v).map_err(|_| bad(path, "too large"))
    } else {
        Err(bad(path, format!("must be between {lo} and {hi}")))
    }
}

/// Every entry is `*` or an `http(s)://` origin (with an optional `*.` subdomain wildcard).
pub(super) fn check_origins(path: &str, origins: &[String]) -> Result<(), ConfigError> {
    for o in origins {
        if o != "*" && !(o.starts_with("http://") || o.starts_with("https://")) {
            return Err(bad(
                path,
                format!("{o:?} is not an origin; use e.g. https://app.example.com or *"),
            ));
        }
    }
    Ok(())
}

pub(super) fn duration(
    path: &str,
    raw: Option<&RawDuration>,
    default: Duration,
    lo: Duration,
    hi: Duration,
) -> Result<Duration, ConfigError> {
    let d = match raw {
        None => default,
        Some(r) => r.parse().map_err(|e| bad(path, e))?,
    };
    if d < lo || d > hi {
        return Err(bad(
            path,
            format!(
                "must be between {}s and {}s",
                lo.as_secs_f64(),
                hi.as_secs_f64()
            ),
        ));
    }
    Ok(d)
}

/// Validates the section into gateway settings.
pub(super) fn validate(raw: &RawGateway) -> Result<GatewaySettings, ConfigError> {
    let d = GatewaySettings::default();
    let sec = Duration::from_secs;
    let ping_interval = duration(
        "gateway.ping_interval",
        raw.ping_interval.as_ref(),
        d.ping_interval,
        sec(1),
        sec(600),
    )?;
    let pong_timeout = duration(
        "gateway.pong_timeout",
        raw.pong_timeout.as_ref(),
        d.pong_timeout,
        sec(1),
        sec(600),
    )?;
    if pong_timeout >= ping_interval {
        return Err(bad(
            "gateway.pong_timeout",
            "must be shorter than gateway.ping_interval",
        ));
    }
    let origins = raw
        .allowed_origins
        .as_ref()
        .map(RawList::items)
        .unwrap_or_default();
    check_origins("gateway.allowed_origins", &origins)?;
    let channels = ChannelConfig::new(raw.default_channel_options.clone(), raw.namespaces.clone())
        .map_err(|e| bad("gateway.namespaces", e))?;
    let max_message_bytes = within(
        "gateway.max_message_bytes",
        raw.max_message_bytes,
        64 * 1024,
        16 * 1024 * 1024,
    )?;
    Ok(GatewaySettings {
        ping_interval,
        pong_timeout,
        stale_timeout: duration(
            "gateway.stale_timeout",
            raw.stale_timeout.as_ref(),
            d.stale_timeout,
            sec(1),
            sec(600),
        )?,
        expired_close_delay: duration(
            "gateway.expired_close_delay",
            raw.expired_close_delay.as_ref(),
            d.expired_close_delay,
            Duration::ZERO,
            sec(3600),
        )?,
        expired_sub_close_delay: duration(
            "gateway.expired_sub_close_delay",
            raw.expired_sub_close_delay.as_ref(),
            d.expired_sub_close_delay,
            Duration::ZERO,
            sec(3600),
        )?,
        presence_update_interval: duration(
            "gateway.presence_update_interval",
            raw.presence_update_interval.as_ref(),
            d.presence_update_interval,
            Duration::from_millis(100),
            sec(600),
        )?,
        queue_bytes: within(
            "gateway.queue_bytes",
            raw.queue_bytes,
            64 * 1024,
            256 * 1024 * 1024,
        )?,
        max_channels: within("gateway.max_channels", raw.max_channels, 1, 4096)?,
        max_message_bytes,
        max_publication_bytes: within(
            "gateway.max_publication_bytes",
            raw.max_publication_bytes,
            1,
            u64::try_from(max_message_bytes).unwrap_or(u64::MAX),
        )?,
        max_connections: within(
            "gateway.max_connections",
            raw.max_connections,
            0,
            10_000_000,
        )?,
        max_connections_per_user: within(
            "gateway.max_connections_per_user",
            raw.max_connections_per_user,
            0,
            1_000_000,
        )?,
        max_commands_per_second: raw.max_commands_per_second,
        command_burst: u32::try_from(within(
            "gateway.command_burst",
            u64::from(raw.command_burst),
            1,
            100_000,
        )?)
        .unwrap_or(u32::MAX),
        history_max_publication_limit: within(
            "gateway.history_max_publication_limit",
            raw.history_max_publication_limit,
            1,
            10_000,
        )?,
        allowed_origins: origins,
        channels,
        chat_history_size: within(
            "gateway.chat_history_size",
            raw.chat_history_size,
            0,
            u64::from(tollgate_token::centrifugo::MAX_HISTORY_SIZE),
        )?,
        chat_history_ttl: duration(
            "gateway.chat_history_ttl",
            raw.chat_history_ttl.as_ref(),
            d.chat_history_ttl,
            Duration::ZERO,
            tollgate_token::centrifugo::MAX_HISTORY_TTL,
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::load;
    use super::super::tests::env;

    #[test]
    fn gateway_settings_from_env_and_file() {
        let c = load(
            None,
            env(&[
                ("TOLLGATE_GATEWAY__PING_INTERVAL", "10s"),
                ("TOLLGATE_GATEWAY__PONG_TIMEOUT", "3"),
                (
                    "TOLLGATE_GATEWAY__ALLOWED_ORIGINS",
                    "https://a.example.com, https://*.b.example.com",
                ),
                ("TOLLGATE_GATEWAY__MAX_CONNECTIONS", "5000"),
            ]),
        )
        .unwrap()
        .config;
        let g = &c.gateway;
        assert_eq!(g.ping_interval.as_secs(), 10);
        assert_eq!(g.pong_timeout.as_secs(), 3);
        assert_eq!(g.allowed_origins.len(), 2);
        assert_eq!(g.max_connections, 5000);

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        std::fs::write(
            &file,
            "[gateway.namespaces.chat]\npresence = true\nhistory_size = 10\nhistory_ttl = \"1m\"\n",
        )
        .unwrap();
        let c = load(Some(&file), env(&[])).unwrap().config;
        assert!(c.gateway.channels.options("chat:1").presence);
        assert!(c.gateway.channels.options("chat:1").history());
        assert!(!c.gateway.channels.options("news:1").presence);
    }

    #[test]
    fn bad_gateway_settings_name_the_setting() {
        for (k, v, named) in [
            (
                "TOLLGATE_GATEWAY__PONG_TIMEOUT",
                "30s",
                "GATEWAY__PONG_TIMEOUT",
            ),
            (
                "TOLLGATE_GATEWAY__PING_INTERVAL",
                "soon",
                "GATEWAY__PING_INTERVAL",
            ),
            (
                "TOLLGATE_GATEWAY__ALLOWED_ORIGINS",
                "example.com",
                "ALLOWED_ORIGINS",
            ),
            ("TOLLGATE_GATEWAY__MAX_CHANNELS", "0", "MAX_CHANNELS"),
            (
                "TOLLGATE_GATEWAY__MAX_MESSAGE_BYTES",
                "1000",
                "MAX_MESSAGE_BYTES",
            ),
        ] {
            let e = load(None, env(&[(k, v)])).unwrap_err().to_string();
            assert!(e.contains(named), "{k}={v}: {e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        std::fs::write(&file, "[gateway.namespaces.chat]\nhistory_size = 10\n").unwrap();
        let e = load(Some(&file), env(&[])).unwrap_err().to_string();
        assert!(e.contains("history_ttl"), "{e}");
    }
}
