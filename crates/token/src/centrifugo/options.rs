//! Per-namespace channel options for the gateway, with Centrifugo's names and meaning
//! (`presence`, `join_leave`, `history_size`, `allow_publish_for_subscriber`, …), and the
//! permission decisions that follow from them (Centrifugo's `internal/client/handler.go`
//! order). Everything defaults to off: a channel nobody configured has no presence, no
//! history, and no client-side publishing; subscribing needs a token or a capability.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use super::valid_name;

/// Most publications a channel may keep.
pub const MAX_HISTORY_SIZE: u32 = 10_000;
/// Longest a publication may be kept.
pub const MAX_HISTORY_TTL: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// One namespace's options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelOptions {
    /// Keep presence (who is subscribed); enables presence and presence_stats.
    pub presence: bool,
    /// Publish join/leave events into the channel.
    pub join_leave: bool,
    /// Deliver join/leave to every subscriber, not only those who asked.
    pub force_push_join_leave: bool,
    /// Publications kept for history and recovery (0: none).
    pub history_size: u32,
    /// How long each is kept: seconds, or a duration such as `"300s"`, `"5m"`, `"1h"`.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub history_ttl: Duration,
    pub force_positioning: bool,
    pub allow_positioning: bool,
    pub force_recovery: bool,
    pub allow_recovery: bool,
    pub allow_subscribe_for_client: bool,
    pub allow_subscribe_for_anonymous: bool,
    pub allow_publish_for_client: bool,
    pub allow_publish_for_subscriber: bool,
    pub allow_publish_for_anonymous: bool,
    pub allow_presence_for_client: bool,
    pub allow_presence_for_subscriber: bool,
    pub allow_presence_for_anonymous: bool,
    pub allow_history_for_client: bool,
    pub allow_history_for_subscriber: bool,
    pub allow_history_for_anonymous: bool,
    /// Channels with `#` name the users allowed in after the last `#`, comma-separated.
    pub allow_user_limited_channels: bool,
}

/// What a client may be asking to do with a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Publish,
    Presence,
    History,
}

impl ChannelOptions {
    /// Whether publications are kept.
    #[must_use]
    pub fn history(&self) -> bool {
        self.history_size > 0 && !self.history_ttl.is_zero()
    }

    /// Checks the combination Centrifugo checks at start-up.
    pub fn validate(&self) -> Result<(), String> {
        if (self.history_size == 0) != self.history_ttl.is_zero() {
            return Err("history_size and history_ttl must be set together".into());
        }
        if self.history_size > MAX_HISTORY_SIZE {
            return Err(format!("history_size must be at most {MAX_HISTORY_SIZE}"));
        }
        if self.history_ttl > MAX_HISTORY_TTL {
            return Err("history_ttl must be at most 30 days".into());
        }
        if self.force_recovery && !self.history() {
            return Err("force_recovery needs history (history_size and history_ttl)".into());
        }
        Ok(())
    }

    /// Whether an `action` is allowed by the options alone (the `allow_*_for_*` family),
    /// for a connection of `user` (empty: anonymous) that is or is not subscribed.
    #[must_use]
    pub fn allows(&self, action: Action, user: &str, subscribed: bool) -> bool {
        let (client, subscriber, anonymous) = match action {
            Action::Publish => (
                self.allow_publish_for_client,
                self.allow_publish_for_subscriber,
                self.allow_publish_for_anonymous,
            ),
            Action::Presence => (
                self.allow_presence_for_client,
                self.allow_presence_for_subscriber,
                self.allow_presence_for_anonymous,
            ),
            Action::History => (
                self.allow_history_for_client,
                self.allow_history_for_subscriber,
                self.allow_history_for_anonymous,
            ),
        };
        let who = !user.is_empty() || anonymous;
        (client || (subscriber && subscribed)) && who
    }

    /// Whether any connection may subscribe without a token (not for `$` channels).
    #[must_use]
    pub fn allows_subscribe(&self, user: &str) -> bool {
        self.allow_subscribe_for_client && (!user.is_empty() || self.allow_subscribe_for_anonymous)
    }
}

/// Whether `channel` is user-limited and lets `user` in: the part after the last `#`
/// is a comma-separated list of user ids.
#[must_use]
pub fn user_limited_allows(channel: &str, user: &str) -> Option<bool> {
    let (_, users) = channel.rsplit_once('#')?;
    Some(!user.is_empty() && users.split(',').any(|u| u == user))
}

/// The gateway's channel options: one set per namespace, and one for every channel whose
/// namespace has none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelConfig {
    default: ChannelOptions,
    namespaces: BTreeMap<String, ChannelOptions>,
}

impl ChannelConfig {
    /// Builds and validates a configuration.
    pub fn new(
        default: ChannelOptions,
        namespaces: impl IntoIterator<Item = (String, ChannelOptions)>,
    ) -> Result<Self, String> {
        default.validate().map_err(|e| format!("default: {e}"))?;
        let mut map = BTreeMap::new();
        for (name, options) in namespaces {
            if !valid_name(&name) {
                return Err(format!(
                    "namespace {name:?}: names are 2 to 64 of [A-Za-z0-9_.-]"
                ));
            }
            options.validate().map_err(|e| format!("{name}: {e}"))?;
            if map.insert(name.clone(), options).is_some() {
                return Err(format!("namespace {name:?} is configured twice"));
            }
        }
        Ok(Self {
            default,
            namespaces: map,
        })
    }

    /// The options of `channel`: its namespace's (the part before the first `:`, after
    /// one optional leading `$`), or the default ones.
    #[must_use]
    pub fn options(&self, channel: &str) -> &ChannelOptions {
        let rest = channel.strip_prefix('$').unwrap_or(channel);
        rest.split_once(':')
            .and_then(|(ns, _)| self.namespaces.get(ns))
            .unwrap_or(&self.default)
    }
}

/// Parses `"300s"`, `"5m"`, `"1h"`, `"1h30m"`, `"250ms"` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?}; use e.g. \"300s\", \"5m\" or \"1h\"");
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 12 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            _ => return Err(bad()),
        };
        total = total.checked_add(unit).ok_or_else(bad)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Secs(s) => Ok(Duration::from_secs(s)),
        Raw::Text(t) => parse_duration(&t).map_err(serde::de::Error::custom),
    }
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `serialize_with` signature
fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{}s", d.as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(json: &str) -> Result<ChannelOptions, String> {
        let o: ChannelOptions = serde_json::from_str(json).map_err(|e| e.to_string())?;
        o.validate()?;
        Ok(o)
    }

    #[test]
    fn defaults_are_closed() {
        let o = ChannelOptions::default();
        assert!(!o.history() && !o.presence && !o.join_leave);
        for action in [Action::Publish, Action::Presence, Action::History] {
            assert!(!o.allows(action, "42", true));
        }
        assert!(!o.allows_subscribe("42"));
    }

    #[test]
    fn history_needs_size_and_ttl_together() {
        assert!(opts(r#"{"history_size":10}"#).is_err());
        assert!(opts(r#"{"history_ttl":"30s"}"#).is_err());
        let o = opts(r#"{"history_size":10,"history_ttl":"5m"}"#).unwrap();
        assert_eq!(o.history_ttl, Duration::from_secs(300));
        assert!(o.history());
        assert!(opts(r#"{"history_size":10,"history_ttl":60}"#).is_ok());
        assert!(opts(r#"{"force_recovery":true}"#).is_err());
        assert!(opts(r#"{"history_size":10001,"history_ttl":60}"#).is_err());
        assert!(opts(r#"{"history_size":1,"history_ttl":"721h"}"#).is_err());
        assert!(opts(r#"{"presense":true}"#).is_err(), "unknown option");
    }

    #[test]
    fn permission_families_follow_centrifugo() {
        let o = opts(r#"{"allow_publish_for_subscriber":true}"#).unwrap();
        assert!(o.allows(Action::Publish, "42", true));
        assert!(!o.allows(Action::Publish, "42", false));
        assert!(
            !o.allows(Action::Publish, "", true),
            "anonymous needs its own flag"
        );
        let o = opts(r#"{"allow_history_for_client":true,"allow_history_for_anonymous":true}"#)
            .unwrap();
        assert!(o.allows(Action::History, "", false));
        assert!(!o.allows(Action::Presence, "42", true));
        let o = opts(r#"{"allow_subscribe_for_client":true}"#).unwrap();
        assert!(o.allows_subscribe("42") && !o.allows_subscribe(""));
    }

    #[test]
    fn user_limited_channels() {
        assert_eq!(user_limited_allows("personal:#42", "42"), Some(true));
        assert_eq!(user_limited_allows("dialog:#42,43", "43"), Some(true));
        assert_eq!(user_limited_allows("dialog:#42,43", "4"), Some(false));
        assert_eq!(user_limited_allows("dialog:#", ""), Some(false));
        assert_eq!(user_limited_allows("chat:1", "42"), None);
    }

    #[test]
    fn namespace_resolution() {
        let chat = opts(r#"{"presence":true}"#).unwrap();
        let c =
            ChannelConfig::new(ChannelOptions::default(), [("chat".into(), chat.clone())]).unwrap();
        assert_eq!(c.options("chat:1"), &chat);
        assert_eq!(c.options("$chat:1"), &chat);
        assert_eq!(c.options("chat"), &ChannelOptions::default());
        assert_eq!(c.options("news:chat:1"), &ChannelOptions::default());
        assert!(ChannelConfig::new(ChannelOptions::default(), [("c".into(), chat)]).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        for bad in ["", "s", "5d", "-1s", "1.5s", "99999999999999s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
