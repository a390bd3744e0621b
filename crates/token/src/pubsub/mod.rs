//! SignalWire-compatible PubSub and Chat tokens: the request grammar, its validation, and
//! the claims of the token that comes out.
//!
//! Validation collects *every* failed field, because SignalWire's 422 body lists them all.
//! Codes and attributes follow SignalWire's error catalogue; messages follow its
//! Rails-style wording ("Ttl must be greater than or equal to 1").
//!
//! The claims are shaped so that the same token is also a Centrifugo connection token:
//! `sub` is the member, `info` is the member state (Centrifugo's connection info), and the
//! per-channel read/write grants are Centrifugo PRO channel capabilities (`caps`). Read
//! maps to `sub` + `prs` + `hst` (receive, see members, see history); write maps to `pub`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::ids::ProjectId;
use crate::scope::Scope;
use crate::time::UnixTime;

/// Which SignalWire product a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Product {
    PubSub,
    Chat,
}

impl Product {
    /// The API-token scope the issuing endpoint requires.
    #[must_use]
    pub fn required_scope(self) -> Scope {
        match self {
            Product::PubSub => Scope::Pubsub,
            Product::Chat => Scope::Chat,
        }
    }

    /// The JOSE `typ` of tokens for this product. Chat's `CRT` is what SignalWire mints;
    /// `PRT` is Tollgate's by analogy. Distinct types keep token kinds apart (RFC 8725 §3.11).
    #[must_use]
    pub fn jose_typ(self) -> &'static str {
        match self {
            Product::PubSub => "PRT",
            Product::Chat => "CRT",
        }
    }

    /// Lower-case product name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Product::PubSub => "pubsub",
            Product::Chat => "chat",
        }
    }
}

/// Token lifetime in minutes, 1 to 43,200 (30 days).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl(u32);

impl Ttl {
    pub const MIN: i64 = 1;
    pub const MAX: i64 = 43_200;

    /// Minutes.
    #[must_use]
    pub fn minutes(self) -> u32 {
        self.0
    }

    /// Seconds.
    #[must_use]
    pub fn seconds(self) -> i64 {
        i64::from(self.0) * 60
    }

    fn new(minutes: i64) -> Option<Self> {
        (Self::MIN..=Self::MAX)
            .contains(&minutes)
            .then(|| Self(u32::try_from(minutes).unwrap_or(u32::MAX)))
    }
}

/// A channel name: 1 to 250 Unicode scalar values, compared byte for byte (no
/// normalisation, so NFC and NFD spellings are different channels).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ChannelName(String);

impl ChannelName {
    pub const MAX_CHARS: usize = 250;

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Read and write permission on one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Access {
    pub read: bool,
    pub write: bool,
}

/// The member id (`sub` of the token), at most 250 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct MemberId(String);

impl MemberId {
    pub const MAX_CHARS: usize = 250;

    /// A random UUID v4, SignalWire's default.
    #[must_use]
    pub fn new_random() -> Self {
        Self(Uuid::new_v4().to_string())
    }

    /// The id.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Member state: a JSON object of at most 2,000 characters once serialised.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct MemberState(Map<String, Value>);

impl MemberState {
    pub const MAX_CHARS: usize = 2000;

    /// The state object.
    #[must_use]
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }
}

/// Most channels one token may carry.
pub const MAX_CHANNELS: usize = 500;

/// A validated PubSub/Chat token request.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRequest {
    pub product: Product,
    pub ttl: Ttl,
    pub channels: BTreeMap<ChannelName, Access>,
    pub member_id: MemberId,
    pub state: MemberState,
}

pub use crate::validation::{FieldError, MISSING_MESSAGE};

/// Channel problems of one kind listed individually before the rest are summarised, so a
/// hostile request cannot make the error response arbitrarily large.
const MAX_LISTED_PER_CODE: usize = 20;

/// Validates a request body (already known to be a JSON object) for `product`.
///
/// Unknown members are ignored, as SignalWire's clients may send extras.
pub fn parse_request(
    product: Product,
    body: &Map<String, Value>,
) -> Result<TokenRequest, Vec<FieldError>> {
    let mut errors = Vec::new();
    let ttl = parse_ttl(body.get("ttl"), &mut errors);
    let channels = parse_channels(product, body.get("channels"), &mut errors);
    let member_id = parse_member_id(body.get("member_id"), &mut errors);
    let state = parse_state(body.get("state"), &mut errors);
    match (ttl, channels, member_id, state) {
        (Some(ttl), Some(channels), Some(member_id), Some(state)) if errors.is_empty() => {
            Ok(TokenRequest {
                product,
                ttl,
                channels,
                member_id,
                state,
            })
        }
        _ => Err(errors),
    }
}

fn parse_ttl(v: Option<&Value>, errors: &mut Vec<FieldError>) -> Option<Ttl> {
    let minutes = match v {
        None | Some(Value::Null) => {
            errors.push(FieldError::new(
                "missing_required_parameter",
                "ttl",
                MISSING_MESSAGE,
            ));
            return None;
        }
        Some(Value::Number(n)) => n.as_i64(),
        // Rails coerces numeric strings; so do we, but nothing looser.
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        Some(_) => None,
    };
    let Some(minutes) = minutes else {
        errors.push(FieldError::new(
            "invalid_parameter",
            "ttl",
            "Ttl must be an integer",
        ));
        return None;
    };
    let ttl = Ttl::new(minutes);
    if ttl.is_none() {
        let message = if minutes < Ttl::MIN {
            format!("Ttl must be greater than or equal to {}", Ttl::MIN)
        } else {
            format!("Ttl must be less than or equal to {}", Ttl::MAX)
        };
        errors.push(FieldError::new("invalid_parameter", "ttl", message));
    }
    ttl
}

/// Reads an object-valued field that SignalWire also accepts as a JSON-encoded string.
fn object_field<'v>(
    attribute: &'static str,
    label: &str,
    v: &'v Value,
    errors: &mut Vec<FieldError>,
) -> Option<std::borrow::Cow<'v, Map<String, Value>>> {
    match v {
        Value::Object(m) => Some(std::borrow::Cow::Borrowed(m)),
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => Some(std::borrow::Cow::Owned(m)),
            Ok(_) => {
                errors.push(FieldError::new(
                    "not_a_hash",
                    attribute,
                    format!("{label} must be a valid hash"),
                ));
                None
            }
            Err(_) => {
                errors.push(FieldError::new(
                    "not_a_valid_json",
                    attribute,
                    format!("{label} must be valid JSON"),
                ));
                None
            }
        },
        _ => {
            errors.push(FieldError::new(
                "not_a_hash",
                attribute,
                format!("{label} must be a valid hash"),
            ));
            None
        }
    }
}

#[derive(Default)]
struct ChannelProblems {
    listed: BTreeMap<&'static str, (usize, Vec<FieldError>)>,
}

impl ChannelProblems {
    fn push(&mut self, code: &'static str, message: String) {
        let entry = self.listed.entry(code).or_default();
        entry.0 += 1;
        if entry.1.len() < MAX_LISTED_PER_CODE {
            entry.1.push(FieldError::new(code, "channels", message));
        }
    }

    fn drain_into(self, errors: &mut Vec<FieldError>) {
        for (code, (count, listed)) in self.listed {
            let more = count - listed.len();
            errors.extend(listed);
            if more > 0 {
                errors.push(FieldError::new(
                    code,
                    "channels",
                    format!("{more} more channels have the same problem"),
                ));
            }
        }
    }
}

/// Quotes a user-supplied channel name for a message, shortened so messages stay small.
fn quoted(name: &str) -> String {
    let mut short: String = name.chars().take(40).collect();
    if short.len() < name.len() {
        short.push('…');
    }
    format!("{short:?}")
}

fn parse_channels(
    product: Product,
    v: Option<&Value>,
    errors: &mut Vec<FieldError>,
) -> Option<BTreeMap<ChannelName, Access>> {
    let v = match v {
        None | Some(Value::Null) => {
            errors.push(FieldError::new(
                "missing_required_parameter",
                "channels",
                MISSING_MESSAGE,
            ));
            return None;
        }
        Some(v) => v,
    };
    let map = object_field("channels", "Channels", v, errors)?;
    if map.is_empty() {
        errors.push(FieldError::new(
            "missing_required_parameter",
            "channels",
            MISSING_MESSAGE,
        ));
        return None;
    }
    let before = errors.len();
    if map.len() > MAX_CHANNELS {
        errors.push(FieldError::new(
            "channel_size_limit_exceeded",
            "channels",
            format!(
                "Channels must contain at most {MAX_CHANNELS} channels (got {})",
                map.len()
            ),
        ));
    }
    let mut problems = ChannelProblems::default();
    let mut out = BTreeMap::new();
    for (name, grant) in map.iter() {
        let chars = name.chars().count();
        if chars == 0 {
            problems.push(
                "invalid_parameter",
                "Channel name can't be blank".to_owned(),
            );
        } else if chars > ChannelName::MAX_CHARS {
            problems.push(
                "channel_name_size_limit_exceeded",
                format!(
                    "Channel name {} is too long (maximum is {} characters)",
                    quoted(name),
                    ChannelName::MAX_CHARS
                ),
            );
        }
        if product == Product::Chat && name.starts_with("sw_") {
            problems.push(
                "channel_name_is_reserved",
                format!(
                    "Channel name {} uses the reserved prefix \"sw_\"",
                    quoted(name)
                ),
            );
        }
        let Some(grant) = grant.as_object() else {
            problems.push(
                "not_a_hash",
                format!("Channel {} must be a valid hash", quoted(name)),
            );
            continue;
        };
        let mut access = Access::default();
        let mut present = false;
        for (flag, slot) in [("read", &mut access.read), ("write", &mut access.write)] {
            match grant.get(flag) {
                None | Some(Value::Null) => {}
                Some(Value::Bool(b)) => {
                    *slot = *b;
                    present = true;
                }
                Some(_) => {
                    present = true;
                    problems.push(
                        "not_a_boolean",
                        format!("Channel {} {flag} must be true or false", quoted(name)),
                    );
                }
            }
        }
        if !present {
            problems.push(
                "channel_has_missing_properties",
                format!("Channel {} must have read or write property", quoted(name)),
            );
        }
        out.insert(ChannelName(name.clone()), access);
    }
    problems.drain_into(errors);
    (errors.len() == before).then_some(out)
}

fn parse_member_id(v: Option<&Value>, errors: &mut Vec<FieldError>) -> Option<MemberId> {
    match v {
        // A blank member id would make an anonymous Centrifugo user; treat it as absent.
        None | Some(Value::Null) => Some(MemberId::new_random()),
        Some(Value::String(s)) if s.is_empty() => Some(MemberId::new_random()),
        Some(Value::String(s)) => {
            if s.chars().count() > MemberId::MAX_CHARS {
                errors.push(FieldError::new(
                    "invalid_parameter",
                    "member_id",
                    format!(
                        "Member is too long (maximum is {} characters)",
                        MemberId::MAX_CHARS
                    ),
                ));
                None
            } else {
                Some(MemberId(s.clone()))
            }
        }
        Some(_) => {
            errors.push(FieldError::new(
                "not_a_string",
                "member_id",
                "Member must be formatted as a string",
            ));
            None
        }
    }
}

fn parse_state(v: Option<&Value>, errors: &mut Vec<FieldError>) -> Option<MemberState> {
    let v = match v {
        None | Some(Value::Null) => return Some(MemberState(Map::new())),
        Some(v) => v,
    };
    let map = object_field("state", "State", v, errors)?.into_owned();
    let chars = Value::Object(map.clone()).to_string().chars().count();
    if chars > MemberState::MAX_CHARS {
        errors.push(FieldError::new(
            "state_size_limit_exceeded",
            "state",
            format!(
                "State is too large (maximum is {} characters, got {chars})",
                MemberState::MAX_CHARS
            ),
        ));
        return None;
    }
    Some(MemberState(map))
}

/// One Centrifugo PRO capability object: the first object listing a channel decides what a
/// connection may do there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Capability {
    pub channels: Vec<String>,
    pub allow: Vec<String>,
}

/// Centrifugo capability names granted by `read`.
pub const READ_CAPS: [&str; 3] = ["sub", "prs", "hst"];
/// Centrifugo capability names granted by `write`.
pub const WRITE_CAPS: [&str; 1] = ["pub"];

/// Groups channel grants into capability objects, one per distinct permission set, so every
/// channel appears exactly once (Centrifugo applies the first object that lists a channel).
#[must_use]
pub fn capabilities(channels: &BTreeMap<ChannelName, Access>) -> Vec<Capability> {
    // A channel granted neither read nor write is still listed, with no capabilities:
    // the token then says so explicitly instead of silently dropping the channel.
    let mut groups: [(bool, bool, Vec<String>); 4] = [
        (true, true, Vec::new()),
        (true, false, Vec::new()),
        (false, true, Vec::new()),
        (false, false, Vec::new()),
    ];
    for (name, access) in channels {
        if let Some(g) = groups
            .iter_mut()
            .find(|g| g.0 == access.read && g.1 == access.write)
        {
            g.2.push(name.0.clone());
        }
    }
    groups
        .into_iter()
        .filter(|g| !g.2.is_empty())
        .map(|(read, write, channels)| {
            let mut allow: Vec<String> = Vec::new();
            if read {
                allow.extend(READ_CAPS.iter().map(|s| (*s).to_owned()));
            }
            if write {
                allow.extend(WRITE_CAPS.iter().map(|s| (*s).to_owned()));
            }
            Capability { channels, allow }
        })
        .collect()
}

/// The claims of a PubSub/Chat token.
#[derive(Debug, Clone, Serialize)]
pub struct Claims<'a> {
    /// Issuer (Tollgate's configured issuer name).
    pub iss: &'a str,
    /// Audience: the project id. The project's key signs it, so the key binds the tenant.
    pub aud: String,
    /// The member id; Centrifugo's user id.
    pub sub: &'a str,
    pub iat: i64,
    pub exp: i64,
    /// Unique token id, for revocation and audit.
    pub jti: String,
    /// The TTL in minutes, as SignalWire's own tokens carry it.
    pub t: u32,
    /// Channel grants as Centrifugo capabilities.
    pub caps: Vec<Capability>,
    /// Member state; Centrifugo's connection info.
    pub info: &'a Map<String, Value>,
}

impl TokenRequest {
    /// The claims for this request, issued at `now` for `project`.
    #[must_use]
    pub fn claims<'a>(&'a self, issuer: &'a str, project: ProjectId, now: UnixTime) -> Claims<'a> {
        Claims {
            iss: issuer,
            aud: project.to_string(),
            sub: self.member_id.as_str(),
            iat: now.seconds(),
            exp: now.plus(self.ttl.seconds()).seconds(),
            jti: Uuid::new_v4().to_string(),
            t: self.ttl.minutes(),
            caps: capabilities(&self.channels),
            info: self.state.as_map(),
        }
    }
}

#[cfg(test)]
mod tests;
