//! Centrifugo-compatible channel grammar, channel rules and token claims.
//!
//! A channel is `[$]namespace:id` (Centrifugo resolves the namespace from the part before
//! the first `:` after one optional leading `$`). Tollgate attaches a *rule* to each
//! namespace: who may receive a subscription token for its channels. Rules are data: the
//! three defaults (`user`, `company`, `organization`) and any a project adds.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::time::UnixTime;

mod options;
pub use options::{
    Action, ChannelConfig, ChannelOptions, MAX_HISTORY_SIZE, MAX_HISTORY_TTL, parse_duration,
    user_limited_allows,
};

/// Longest channel name (Centrifugo's default `channel.max_length`).
pub const MAX_CHANNEL_LEN: usize = 255;
/// Default subscription-token lifetime: one hour.
pub const DEFAULT_SUBSCRIPTION_TTL: i64 = 60 * 60;
/// Default connection-token lifetime: one hour.
pub const DEFAULT_CONNECTION_TTL: i64 = 60 * 60;

/// Who may subscribe to a namespace's channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// Only the user whose id is the channel id (`user:{id}`).
    Owner,
    /// Only members of the group `{kind}:{id}` (`company:{id}` → group kind `company`).
    Member(String),
    /// Any authenticated user.
    Authenticated,
    /// Nobody (a namespace reserved for server-side publishing).
    Deny,
}

impl Rule {
    /// Stored form: `owner`, `member:<kind>`, `authenticated`, `deny`.
    #[must_use]
    pub fn to_stored(&self) -> String {
        match self {
            Rule::Owner => "owner".into(),
            Rule::Member(kind) => format!("member:{kind}"),
            Rule::Authenticated => "authenticated".into(),
            Rule::Deny => "deny".into(),
        }
    }
}

impl Rule {
    /// Parses a rule as it arrives (admin API, CLI): [`FromStr`], and a `member:<kind>`
    /// rule must name a kind of the group-kind grammar ([`crate::GroupKind`]), which also
    /// refuses kinds made of dots only. Stored rules are read with [`FromStr`] alone, so a
    /// rule written before that check keeps loading.
    pub fn parse_input(s: &str) -> Result<Self, String> {
        let rule: Rule = s.parse()?;
        if let Rule::Member(kind) = &rule
            && kind.parse::<crate::GroupKind>().is_err()
        {
            return Err(format!(
                "member:<kind> names a group kind of {}",
                crate::GroupKind::RULE
            ));
        }
        Ok(rule)
    }
}

impl FromStr for Rule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "owner" => Ok(Rule::Owner),
            "authenticated" => Ok(Rule::Authenticated),
            "deny" => Ok(Rule::Deny),
            "member" => Err("a member rule names its group kind: member:<kind>".into()),
            _ => match s.strip_prefix("member:") {
                Some(kind) if valid_name(kind) => Ok(Rule::Member(kind.to_owned())),
                _ => Err(format!(
                    "unknown rule {s:?}; expected owner, member:<kind>, authenticated or deny"
                )),
            },
        }
    }
}

/// What a channel id must look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdFormat {
    /// A canonical (lower-case, hyphenated) UUID.
    Uuid,
    /// Any id made of `[A-Za-z0-9_.@=-]`.
    Token,
}

impl IdFormat {
    fn accepts(self, id: &str) -> bool {
        match self {
            // Canonical lower-case form only: channels compare byte for byte, so a second
            // spelling of the same UUID would be a different channel.
            IdFormat::Uuid => Uuid::try_parse(id).is_ok_and(|u| u.hyphenated().to_string() == id),
            IdFormat::Token => {
                !id.is_empty()
                    && id.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b'=' | b'-')
                    })
            }
        }
    }

    /// Stored form.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            IdFormat::Uuid => "uuid",
            IdFormat::Token => "token",
        }
    }
}

impl FromStr for IdFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "uuid" => Ok(IdFormat::Uuid),
            "token" => Ok(IdFormat::Token),
            _ => Err(format!("unknown id format {s:?}; expected uuid or token")),
        }
    }
}

/// A namespace and its rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    pub name: String,
    pub rule: Rule,
    pub id_format: IdFormat,
    /// Lifetime of subscription tokens for its channels, seconds.
    pub token_ttl: i64,
}

/// Lifetimes a namespace may give its subscription tokens, seconds: a minute to a week.
pub const TOKEN_TTL_RANGE: std::ops::RangeInclusive<i64> = 60..=7 * 24 * 60 * 60;

/// What a namespace name must look like, for messages.
pub const NAME_RULE: &str = "2 to 64 characters of A-Z, a-z, 0-9, -, _ and .";

/// Every way `ns` is not an acceptable namespace to store, each naming its field (`name`,
/// `rule`, `token_ttl`). Empty when it is acceptable.
#[must_use]
pub fn check_namespace(ns: &Namespace) -> Vec<crate::validation::FieldError> {
    use crate::validation::FieldError;
    let mut errors = Vec::new();
    if !valid_name(&ns.name) {
        errors.push(FieldError::new(
            "invalid_parameter",
            "name",
            format!("namespace name must be {NAME_RULE}"),
        ));
    }
    if let Rule::Member(kind) = &ns.rule
        && kind.parse::<crate::GroupKind>().is_err()
    {
        errors.push(FieldError::new(
            "invalid_parameter",
            "rule",
            format!(
                "member:<kind> names a group kind of {}",
                crate::GroupKind::RULE
            ),
        ));
    }
    if !TOKEN_TTL_RANGE.contains(&ns.token_ttl) {
        errors.push(FieldError::new(
            "invalid_parameter",
            "token_ttl",
            format!(
                "token_ttl must be an integer from {} to {} (seconds)",
                TOKEN_TTL_RANGE.start(),
                TOKEN_TTL_RANGE.end()
            ),
        ));
    }
    errors
}

/// Whether `s` is a namespace (or group kind) name: Centrifugo's `^[-a-zA-Z0-9_.]{2,}$`,
/// at most 64 characters.
#[must_use]
pub fn valid_name(s: &str) -> bool {
    (2..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The namespaces every project starts with (seed 000's table).
#[must_use]
pub fn default_namespaces() -> Vec<Namespace> {
    vec![
        Namespace {
            name: "user".into(),
            rule: Rule::Owner,
            id_format: IdFormat::Uuid,
            token_ttl: DEFAULT_SUBSCRIPTION_TTL,
        },
        Namespace {
            name: "company".into(),
            rule: Rule::Member("company".into()),
            id_format: IdFormat::Uuid,
            token_ttl: DEFAULT_SUBSCRIPTION_TTL,
        },
        Namespace {
            name: "organization".into(),
            rule: Rule::Member("organization".into()),
            id_format: IdFormat::Uuid,
            token_ttl: DEFAULT_SUBSCRIPTION_TTL,
        },
    ]
}

/// A parsed channel name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// The full name as requested (with any `$`).
    pub name: String,
    /// Whether it is a private (`$`) channel.
    pub private: bool,
    /// The namespace part.
    pub namespace: String,
    /// The id part.
    pub id: String,
}

/// Why a channel name is not acceptable (422).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelError(pub String);

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses `[$]namespace:id`. Only ASCII, at most 255 bytes, no Centrifugo-reserved
/// characters (`#`, `,`, `*`, `&`, `/`, whitespace) in the id.
pub fn parse_channel(name: &str) -> Result<Channel, ChannelError> {
    if name.is_empty() || name.len() > MAX_CHANNEL_LEN {
        return Err(ChannelError(format!(
            "channel must be 1 to {MAX_CHANNEL_LEN} characters"
        )));
    }
    if !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ChannelError(
            "channel must be printable ASCII without spaces".into(),
        ));
    }
    let (private, rest) = match name.strip_prefix('$') {
        Some(r) => (true, r),
        None => (false, name),
    };
    let Some((namespace, id)) = rest.split_once(':') else {
        return Err(ChannelError(
            "channel must be namespace:id, e.g. user:123e4567-e89b-12d3-a456-426614174000".into(),
        ));
    };
    if !valid_name(namespace) {
        return Err(ChannelError(format!("invalid namespace {namespace:?}")));
    }
    if id.is_empty()
        || id
            .bytes()
            .any(|b| matches!(b, b'#' | b',' | b'*' | b'&' | b'/' | b':' | b'$'))
    {
        return Err(ChannelError("invalid channel id".into()));
    }
    Ok(Channel {
        name: name.to_owned(),
        private,
        namespace: namespace.to_owned(),
        id: id.to_owned(),
    })
}

/// The outcome of applying a namespace's rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Granted,
    /// The rule needs a group-membership check: may `user` use group `kind:id`?
    NeedsMembership {
        kind: String,
        id: String,
    },
    Denied,
}

/// Checks `channel` against its namespace (from `namespaces`) for `user`.
///
/// An unknown namespace or an id of the wrong format is a [`ChannelError`] (422); a rule
/// that refuses is [`Access::Denied`] (403).
pub fn decide<'n>(
    namespaces: &'n [Namespace],
    channel: &Channel,
    user: &str,
) -> Result<(Access, &'n Namespace), ChannelError> {
    let ns = namespaces
        .iter()
        .find(|n| n.name == channel.namespace)
        .ok_or_else(|| ChannelError(format!("unknown namespace {:?}", channel.namespace)))?;
    if !ns.id_format.accepts(&channel.id) {
        return Err(ChannelError(format!(
            "{} channel ids must be {}",
            ns.name,
            match ns.id_format {
                IdFormat::Uuid => "lower-case UUIDs",
                IdFormat::Token => "made of letters, digits and _.@=-",
            }
        )));
    }
    let access = match &ns.rule {
        Rule::Owner if user == channel.id => Access::Granted,
        Rule::Owner => Access::Denied,
        Rule::Member(kind) => Access::NeedsMembership {
            kind: kind.clone(),
            id: channel.id.clone(),
        },
        Rule::Authenticated => Access::Granted,
        Rule::Deny => Access::Denied,
    };
    Ok((access, ns))
}

/// Claims of a Centrifugo subscription token.
#[derive(Debug, Clone, Serialize)]
pub struct SubscriptionClaims {
    /// Tollgate's issuer name.
    pub iss: String,
    /// The project id: a Centrifugo serving one project sets `token.audience` to it, so a
    /// token of another project (signed by a key in the same JWKS) is refused.
    pub aud: String,
    pub sub: String,
    pub channel: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    /// Centrifugo v2/v3 private-channel flow: the connection's client id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b64info: Option<String>,
}

/// Claims of a Centrifugo connection token. Never carries `channel`.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionClaims {
    /// Tollgate's issuer name.
    pub iss: String,
    /// The project id (see [`SubscriptionClaims::aud`]).
    pub aud: String,
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Value>,
}

/// Expected issuer and audience of an application's user JWTs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserJwtPolicy {
    pub issuer: String,
    pub audience: String,
}

/// Why a user JWT's claims were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClaimsError {
    #[error("a required claim is missing or of the wrong type")]
    Missing,
    #[error("issuer or audience mismatch")]
    WrongParty,
    #[error("token expired or not yet valid")]
    Time,
}

/// Leeway for `nbf`/`iat` in the future (clock skew between the app and Tollgate).
pub const CLOCK_SKEW: i64 = 60;
/// Longest remaining lifetime accepted on a user JWT (checklist JWT-06: the library will
/// not cap it, so this code does).
pub const MAX_USER_JWT_LIFETIME: i64 = 24 * 60 * 60;

/// Validates an application user JWT's claims: `sub`, `exp`, `iss`, `aud` required
/// (integers for times; `aud` a string or a one-element array), exact issuer and audience,
/// `exp` in the future, `nbf`/`iat` not in the future beyond [`CLOCK_SKEW`]. Returns `sub`.
pub fn validate_user_claims(
    claims: &Map<String, Value>,
    policy: &UserJwtPolicy,
    now: UnixTime,
) -> Result<String, ClaimsError> {
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.len() <= 255)
        .ok_or(ClaimsError::Missing)?;
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or(ClaimsError::Missing)?;
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .ok_or(ClaimsError::Missing)?;
    let aud = match claims.get("aud") {
        Some(Value::String(a)) => a.as_str(),
        Some(Value::Array(items)) if items.len() == 1 => {
            items[0].as_str().ok_or(ClaimsError::Missing)?
        }
        _ => return Err(ClaimsError::Missing),
    };
    if iss != policy.issuer || aud != policy.audience {
        return Err(ClaimsError::WrongParty);
    }
    if exp <= now.seconds() || exp > now.seconds() + MAX_USER_JWT_LIFETIME + CLOCK_SKEW {
        return Err(ClaimsError::Time);
    }
    for claim in ["nbf", "iat"] {
        match claims.get(claim) {
            None => {}
            Some(v) => {
                let t = v.as_i64().ok_or(ClaimsError::Missing)?;
                if t > now.seconds() + CLOCK_SKEW {
                    return Err(ClaimsError::Time);
                }
            }
        }
    }
    Ok(sub.to_owned())
}

#[cfg(test)]
mod tests;
