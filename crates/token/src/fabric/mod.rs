//! SignalWire Fabric request grammar: subscriber tokens, guest and invite tokens, and the
//! Subscribers resource. Like [`crate::pubsub`], every failed field is reported at once in
//! SignalWire's catalogue terms.

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::ids::{ID_RULE, UserId};
use crate::time::UnixTime;
use crate::validation::{FieldError, MISSING_MESSAGE};

/// The only accepted `scope`: lets the token's holder refresh it.
pub const SCOPE_SAT_REFRESH: &str = "sat:refresh";
/// The only accepted `region`.
pub const REGION_US_CENTRAL: &str = "us-central";
/// Default token lifetime: two hours.
pub const DEFAULT_LIFETIME: i64 = 2 * 60 * 60;
/// Lifetime of a `sat:refresh` token without a fingerprint (SignalWire's rule).
pub const UNBOUND_REFRESHABLE_LIFETIME: i64 = 60;
/// How much longer a refresh token lives than its access token.
pub const REFRESH_GRACE: i64 = 5 * 60;
/// Longest profile string accepted.
pub const MAX_FIELD_CHARS: usize = 255;
/// Password length bounds (characters). 72 is bcrypt's historical limit, kept for
/// SignalWire compatibility; it also bounds the work Argon2 is asked to do.
pub const PASSWORD_CHARS: std::ops::RangeInclusive<usize> = 8..=72;
/// Most addresses one guest token may allow.
pub const MAX_GUEST_ADDRESSES: usize = 10;

/// Profile fields of a subscriber. `None` means "not given" (and so "unchanged").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub display_name: Option<String>,
    pub job_title: Option<String>,
    pub timezone: Option<String>,
    pub country: Option<String>,
    pub company_name: Option<String>,
}

/// A validated `POST /api/fabric/subscribers/tokens` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberTokenRequest {
    pub reference: String,
    /// When the access token expires (already defaulted and capped).
    pub expires_at: UnixTime,
    pub application_id: Option<Uuid>,
    /// A new password, if one was given (empty means "leave it").
    pub password: Option<String>,
    /// RFC 7638 thumbprint of the device key the token is bound to.
    pub fingerprint: Option<String>,
    /// Whether the holder may refresh the token itself.
    pub refreshable: bool,
    pub profile: Profile,
}

/// A validated Subscribers create/update body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberRequest {
    pub email: Option<String>,
    pub password: Option<String>,
    pub profile: Profile,
}

/// A validated guest-token body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestTokenRequest {
    pub allowed_addresses: Vec<Uuid>,
    pub expires_at: UnixTime,
}

/// A validated invite-token body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteTokenRequest {
    pub address_id: Uuid,
    pub expires_at: UnixTime,
}

/// Field readers that record what is wrong and keep going.
struct Fields<'a> {
    body: &'a Map<String, Value>,
    errors: Vec<FieldError>,
}

fn humanize(attribute: &str) -> String {
    let mut out = String::with_capacity(attribute.len());
    for (i, word) in attribute.split('_').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let mut chars = word.chars();
        if let Some(c) = chars.next() {
            out.extend(c.to_uppercase());
            out.push_str(chars.as_str());
        }
    }
    out
}

impl<'a> Fields<'a> {
    fn new(body: &'a Map<String, Value>) -> Self {
        Self {
            body,
            errors: Vec::new(),
        }
    }

    fn fail(&mut self, code: &'static str, attribute: &'static str, message: String) {
        self.errors.push(FieldError::new(code, attribute, message));
    }

    fn present(&self, attribute: &str) -> Option<&'a Value> {
        self.body.get(attribute).filter(|v| !v.is_null())
    }

    fn missing(&mut self, attribute: &'static str) {
        self.fail(
            "missing_required_parameter",
            attribute,
            MISSING_MESSAGE.into(),
        );
    }

    /// An optional string of at most `max` characters.
    fn string(&mut self, attribute: &'static str, max: usize) -> Option<String> {
        match self.present(attribute)? {
            Value::String(s) if s.chars().count() <= max => Some(s.clone()),
            Value::String(_) => {
                let msg = format!(
                    "{} is too long (maximum is {max} characters)",
                    humanize(attribute)
                );
                self.fail("invalid_parameter", attribute, msg);
                None
            }
            _ => {
                let msg = format!("{} must be formatted as a string", humanize(attribute));
                self.fail("not_a_string", attribute, msg);
                None
            }
        }
    }

    fn required_string(&mut self, attribute: &'static str, max: usize) -> Option<String> {
        match self.string(attribute, max) {
            Some(s) if !s.trim().is_empty() => Some(s),
            Some(_) => {
                self.missing(attribute);
                None
            }
            None => {
                if self.present(attribute).is_none() {
                    self.missing(attribute);
                }
                None
            }
        }
    }

    fn profile(&mut self, timezone_attribute: &'static str) -> Profile {
        Profile {
            first_name: self.string("first_name", MAX_FIELD_CHARS),
            last_name: self.string("last_name", MAX_FIELD_CHARS),
            display_name: self.string("display_name", MAX_FIELD_CHARS),
            job_title: self.string("job_title", MAX_FIELD_CHARS),
            timezone: self.string(timezone_attribute, MAX_FIELD_CHARS),
            country: self.string("country", MAX_FIELD_CHARS),
            company_name: self.string("company_name", MAX_FIELD_CHARS),
        }
    }

    /// A password: absent or empty means none; otherwise 8–72 characters.
    fn password(&mut self) -> Option<String> {
        let pw = self.string("password", usize::MAX)?;
        if pw.is_empty() {
            return None;
        }
        let n = pw.chars().count();
        if n < *PASSWORD_CHARS.start() {
            self.fail(
                "invalid_parameter",
                "password",
                format!(
                    "Password is too short (minimum is {} characters)",
                    PASSWORD_CHARS.start()
                ),
            );
            return None;
        }
        if n > *PASSWORD_CHARS.end() {
            self.fail(
                "invalid_parameter",
                "password",
                format!(
                    "Password is too long (maximum is {} characters)",
                    PASSWORD_CHARS.end()
                ),
            );
            return None;
        }
        Some(pw)
    }

    fn uuid(&mut self, attribute: &'static str) -> Option<Uuid> {
        match self.present(attribute)? {
            Value::String(s) => match Uuid::try_parse(s) {
                Ok(u) => Some(u),
                Err(_) => {
                    let msg = format!("{} is invalid", humanize(attribute).replace(" Id", ""));
                    self.fail("invalid_parameter", attribute, msg);
                    None
                }
            },
            _ => {
                let msg = format!("{} must be formatted as a string", humanize(attribute));
                self.fail("not_a_string", attribute, msg);
                None
            }
        }
    }

    /// An optional expiry in unix seconds: after `now`, at most `now + max_lifetime`.
    fn expiry(
        &mut self,
        attribute: &'static str,
        now: UnixTime,
        max_lifetime: i64,
    ) -> Option<Option<UnixTime>> {
        let Some(v) = self.present(attribute) else {
            return Some(None);
        };
        let Some(t) = v.as_i64() else {
            let msg = format!("{} must be an integer", humanize(attribute));
            self.fail("invalid_parameter", attribute, msg);
            return None;
        };
        if t <= now.seconds() {
            let msg = format!("{} must be greater than {}", humanize(attribute), now);
            self.fail("invalid_parameter", attribute, msg);
            return None;
        }
        let latest = now.plus(max_lifetime);
        if t > latest.seconds() {
            let msg = format!(
                "{} must be less than or equal to {latest}",
                humanize(attribute)
            );
            self.fail("invalid_parameter", attribute, msg);
            return None;
        }
        Some(Some(UnixTime(t)))
    }

    /// Whether `value` of `attribute` follows the user-id grammar; records why not.
    fn user_id(&mut self, attribute: &'static str, value: &str) -> bool {
        if value.parse::<UserId>().is_ok() {
            return true;
        }
        let msg = format!(
            "{} is invalid: it is the subscriber's user id, which must be {ID_RULE}",
            humanize(attribute)
        );
        self.fail("invalid_parameter", attribute, msg);
        false
    }

    fn one_of(&mut self, attribute: &'static str, allowed: &str) -> Option<bool> {
        match self.present(attribute) {
            None => Some(false),
            Some(Value::String(s)) if s == allowed => Some(true),
            Some(_) => {
                let msg = format!("{} is not included in the list", humanize(attribute));
                self.fail("invalid_parameter", attribute, msg);
                None
            }
        }
    }

    fn finish<T>(self, value: Option<T>) -> Result<T, Vec<FieldError>> {
        match value {
            Some(v) if self.errors.is_empty() => Ok(v),
            _ => Err(self.errors),
        }
    }
}

/// Whether `s` is a device fingerprint: an RFC 7638 SHA-256 thumbprint, 43 base64url
/// characters.
#[must_use]
pub fn is_fingerprint(s: &str) -> bool {
    s.len() == 43
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Validates a subscriber-token request at `now`, with lifetimes capped at `max_lifetime`.
pub fn parse_subscriber_token(
    body: &Map<String, Value>,
    now: UnixTime,
    max_lifetime: i64,
) -> Result<SubscriberTokenRequest, Vec<FieldError>> {
    let mut f = Fields::new(body);
    let reference = f.required_string("reference", MAX_FIELD_CHARS);
    // The reference is the subscriber's user id on the Centrifugo side (`sub` of its
    // tokens, the id group membership names), so it follows the user-id grammar.
    let reference = reference.filter(|r| f.user_id("reference", r));
    let expire_at = f.expiry("expire_at", now, max_lifetime);
    let application_id = f.uuid("application_id");
    let password = f.password();
    let fingerprint = match f.present("fingerprint") {
        None => None,
        Some(Value::String(s)) if is_fingerprint(s) => Some(s.clone()),
        Some(_) => {
            f.fail(
                "invalid_parameter",
                "fingerprint",
                "Fingerprint must be 43 characters of A-Z, a-z, 0-9, - and _".into(),
            );
            None
        }
    };
    let refreshable = f.one_of("scope", SCOPE_SAT_REFRESH);
    let _region = f.one_of("region", REGION_US_CENTRAL);
    let profile = f.profile("time_zone");
    let value = match (reference, expire_at, refreshable) {
        (Some(reference), Some(expire_at), Some(refreshable)) => {
            let mut expires_at = expire_at.unwrap_or(now.plus(DEFAULT_LIFETIME.min(max_lifetime)));
            if refreshable && fingerprint.is_none() {
                expires_at = expires_at.min(now.plus(UNBOUND_REFRESHABLE_LIFETIME));
            }
            Some(SubscriberTokenRequest {
                reference,
                expires_at,
                application_id,
                password,
                fingerprint,
                refreshable,
                profile,
            })
        }
        _ => None,
    };
    f.finish(value)
}

/// Validates a Subscribers create (`require_email`) or update body.
pub fn parse_subscriber(
    body: &Map<String, Value>,
    require_email: bool,
) -> Result<SubscriberRequest, Vec<FieldError>> {
    let mut f = Fields::new(body);
    let email = if require_email {
        f.required_string("email", MAX_FIELD_CHARS)
    } else {
        f.string("email", MAX_FIELD_CHARS)
    };
    if let Some(e) = &email {
        let (local, domain) = e.split_once('@').unwrap_or(("", ""));
        if local.is_empty() || domain.is_empty() || e.chars().any(char::is_whitespace) {
            f.fail("invalid_parameter", "email", "Email is invalid".into());
        } else {
            // The email becomes the subscriber's reference, so its user id.
            f.user_id("email", e);
        }
    }
    let password = f.password();
    let profile = f.profile("timezone");
    let ok = !require_email || email.is_some();
    f.finish(ok.then_some(SubscriberRequest {
        email,
        password,
        profile,
    }))
}

/// Validates a guest-token request.
pub fn parse_guest_token(
    body: &Map<String, Value>,
    now: UnixTime,
    max_lifetime: i64,
) -> Result<GuestTokenRequest, Vec<FieldError>> {
    let mut f = Fields::new(body);
    let addresses = match f.present("allowed_addresses") {
        None => {
            f.missing("allowed_addresses");
            None
        }
        Some(Value::Array(items)) if items.is_empty() => {
            f.missing("allowed_addresses");
            None
        }
        Some(Value::Array(items)) if items.len() > MAX_GUEST_ADDRESSES => {
            f.fail(
                "allowed_address_limit_exceeded",
                "allowed_addresses",
                format!("Allowed addresses must contain at most {MAX_GUEST_ADDRESSES} addresses"),
            );
            None
        }
        Some(Value::Array(items)) => {
            let parsed: Option<Vec<Uuid>> = items
                .iter()
                .map(|v| v.as_str().and_then(|s| Uuid::try_parse(s).ok()))
                .collect();
            if parsed.is_none() {
                f.fail(
                    "invalid_parameter",
                    "allowed_addresses",
                    "Allowed addresses must be address ids (UUIDs)".into(),
                );
            }
            parsed.map(|mut v| {
                v.dedup();
                v
            })
        }
        Some(_) => {
            f.fail(
                "invalid_parameter",
                "allowed_addresses",
                "Allowed addresses must be an array".into(),
            );
            None
        }
    };
    let expire_at = f.expiry("expire_at", now, max_lifetime);
    let _region = f.one_of("region", REGION_US_CENTRAL);
    let value = match (addresses, expire_at) {
        (Some(allowed_addresses), Some(expire_at)) => Some(GuestTokenRequest {
            allowed_addresses,
            expires_at: expire_at.unwrap_or(now.plus(DEFAULT_LIFETIME.min(max_lifetime))),
        }),
        _ => None,
    };
    f.finish(value)
}

/// Validates an invite-token request (note SignalWire's `expires_at`, not `expire_at`).
pub fn parse_invite_token(
    body: &Map<String, Value>,
    now: UnixTime,
    max_lifetime: i64,
) -> Result<InviteTokenRequest, Vec<FieldError>> {
    let mut f = Fields::new(body);
    let address_id = f.uuid("address_id");
    if f.present("address_id").is_none() {
        f.missing("address_id");
    }
    let expires_at = f.expiry("expires_at", now, max_lifetime);
    let value = match (address_id, expires_at) {
        (Some(address_id), Some(expires_at)) => Some(InviteTokenRequest {
            address_id,
            expires_at: expires_at.unwrap_or(now.plus(DEFAULT_LIFETIME.min(max_lifetime))),
        }),
        _ => None,
    };
    f.finish(value)
}

#[cfg(test)]
mod tests;
