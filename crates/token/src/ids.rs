//! Identifier newtypes. Raw strings are parsed into these at the edge of the system so the
//! rest of the code can rely on their invariants.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A project (tenant). Always a UUID, as SignalWire project ids are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProjectId(Uuid);

impl ProjectId {
    /// A fresh random (v4) project id.
    #[must_use]
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }

    /// The underlying UUID.
    #[must_use]
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl FromStr for ProjectId {
    type Err = InvalidId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Accept only the canonical hyphenated form: the id doubles as the Basic-auth user
        // name and a JWT audience, where alternative spellings would be a source of confusion.
        // Lower-case only: `Uuid::try_parse` also takes upper-case hex, a second spelling
        // of the same id that does not print back as it was read (fuzz target
        // `channel_grammar`).
        if s.len() != 36 || s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(InvalidId("project id"));
        }
        Uuid::try_parse(s)
            .map(Self)
            .map_err(|_| InvalidId("project id"))
    }
}

impl fmt::Display for ProjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// Identifies one signing key. Appears as `kid` in every token header.
///
/// Restricted to `[A-Za-z0-9._-]{1,64}` so a `kid` read from an untrusted header can be
/// looked up and logged safely (security checklist JWT-03).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct KeyId(String);

impl KeyId {
    /// Longest accepted key id.
    pub const MAX_LEN: usize = 64;

    /// A fresh random key id: `k` followed by 24 hex digits (96 random bits).
    #[must_use]
    pub fn new_random() -> Self {
        let bytes = crate::jose::random_bytes::<12>();
        let mut s = String::with_capacity(25);
        s.push('k');
        for b in bytes {
            s.push_str(&format!("{b:02x}"));
        }
        Self(s)
    }

    /// The key id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for KeyId {
    type Err = InvalidId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidId("key id"))
        }
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An API token's public identifier (not the secret). UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ApiTokenId(Uuid);

impl ApiTokenId {
    /// A fresh random id.
    #[must_use]
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }
}

impl FromStr for ApiTokenId {
    type Err = InvalidId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::try_parse(s)
            .map(Self)
            .map_err(|_| InvalidId("API token id"))
    }
}

impl fmt::Display for ApiTokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// Whether `s` follows the id grammar shared by user ids and group ids: 1 to
/// [`UserId::MAX_LEN`] characters of `A-Z a-z 0-9 . _ - @ + = : |`, and not made of dots only.
///
/// Wide enough for the ids applications really use — emails (`alice+x@example.com`), UUIDs,
/// OIDC subjects such as `auth0|5f7c…` or `google-oauth2|1234`, URNs — and narrow enough
/// that no id is path-like (`/`, `\`, `.`, `..`), a wildcard (`*`, `?`, `#`), carries
/// whitespace, quotes or control characters, or can be confused with another spelling.
fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= UserId::MAX_LEN
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'.' | b'_' | b'-' | b'@' | b'+' | b'=' | b':' | b'|')
        })
        && !s.bytes().all(|b| b == b'.')
}

/// What a user id or group id must look like, for error messages and documentation.
pub const ID_RULE: &str = "1 to 255 characters of A-Z, a-z, 0-9 and . _ - @ + = : | \
                           (not . or ..; no /, *, spaces or control characters)";

/// Whether `s` is an id an earlier version of Tollgate could have stored (printable ASCII
/// without spaces, at most 255 bytes). Used only to *find* such rows — list or delete
/// them — never to write new ones.
#[must_use]
pub fn stored_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= UserId::MAX_LEN && s.bytes().all(|b| b.is_ascii_graphic())
}

/// A user id arriving as input: a group member, a subscriber's `reference`, the `sub` of
/// an application's user JWT. See [`ID_RULE`].
///
/// Ids already stored (or inside tokens already issued) are not re-checked: the grammar
/// applies to what arrives, so data written before it keeps working.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    /// Longest accepted user id, in bytes (OpenID Connect's bound on `sub`).
    pub const MAX_LEN: usize = 255;

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as an owned string.
    #[must_use]
    pub fn into_string(self) -> String {
        self.0
    }
}

impl FromStr for UserId {
    type Err = InvalidId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if valid_id(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidId("user id"))
        }
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id of a group within its kind (`company` group `c0c0…`): the id part of the channels
/// a `member:<kind>` namespace guards. Same grammar as [`UserId`] ([`ID_RULE`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct GroupId(String);

impl GroupId {
    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for GroupId {
    type Err = InvalidId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if valid_id(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidId("group id"))
        }
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A group kind (`company`, `team`): what a `member:<kind>` rule names. Centrifugo's
/// namespace grammar — 2 to 64 characters of `A-Z a-z 0-9 - _ .` — and not dots only.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct GroupKind(String);

impl GroupKind {
    /// What a group kind must look like, for error messages and documentation.
    pub const RULE: &'static str = "2 to 64 characters of A-Z, a-z, 0-9 and - _ . (not dots only)";

    /// The kind as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for GroupKind {
    type Err = InvalidId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = crate::centrifugo::valid_name(s) && !s.bytes().all(|b| b == b'.');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidId("group kind"))
        }
    }
}

impl fmt::Display for GroupKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A string did not parse as the named kind of identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {0}")]
pub struct InvalidId(pub &'static str);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_id_accepts_only_canonical_uuid() {
        let id = "11111111-2222-3333-4444-555555555555";
        assert_eq!(id.parse::<ProjectId>().unwrap().to_string(), id);
        assert!(
            "11111111222233334444555555555555"
                .parse::<ProjectId>()
                .is_err()
        );
        assert!(
            "{11111111-2222-3333-4444-555555555555}"
                .parse::<ProjectId>()
                .is_err()
        );
        assert!("".parse::<ProjectId>().is_err());
        assert!(
            "ABCDEF11-2222-3333-4444-555555555555"
                .parse::<ProjectId>()
                .is_err()
        );
        assert!(
            "abcdef11-2222-3333-4444-55555555555A"
                .parse::<ProjectId>()
                .is_err()
        );
        assert!(
            "not-a-uuid-at-all-not-a-uuid-at-all!"
                .parse::<ProjectId>()
                .is_err()
        );
    }

    #[test]
    fn user_and_group_id_grammar() {
        let accepted = [
            "42",
            "alice",
            "alice@example.com",
            "alice.o.smith+news@mail.example.co.uk",
            "123e4567-e89b-12d3-a456-426614174000",
            "auth0|5f7c8ec7c33c6c004bbafe82",
            "google-oauth2|109876543210",
            "urn:user:7",
            "dGVzdA==",
            "a_b-c.d",
            "...a",
        ];
        for id in accepted {
            assert!(id.parse::<UserId>().is_ok(), "{id:?} should be a user id");
            assert!(id.parse::<GroupId>().is_ok(), "{id:?} should be a group id");
            assert!(stored_id(id), "{id:?}");
        }
        assert!("u".repeat(255).parse::<UserId>().is_ok());
        let refused = [
            "".to_owned(),
            ".".into(),
            "..".into(),
            "...".into(),
            "/".into(),
            "../etc".into(),
            "a/b".into(),
            "a\\b".into(),
            "*".into(),
            "user*".into(),
            "a?b".into(),
            "a#b".into(),
            "a b".into(),
            " a".into(),
            "a\tb".into(),
            "a\nb".into(),
            "a\u{0}b".into(),
            "a\u{7f}b".into(),
            "o'brien@example.com".into(),
            "\"quoted\"".into(),
            "<script>".into(),
            "a,b".into(),
            "a&b".into(),
            "$x".into(),
            "a%2Fb".into(),
            "ünïcode".into(),
            "u".repeat(256),
        ];
        for id in &refused {
            assert!(id.parse::<UserId>().is_err(), "{id:?} is not a user id");
            assert!(id.parse::<GroupId>().is_err(), "{id:?} is not a group id");
        }
        // Earlier versions stored any printable ASCII: such rows can still be found.
        assert!(stored_id("a/b") && stored_id("..") && stored_id("*"));
        assert!(!stored_id("a b") && !stored_id("") && !stored_id(&"u".repeat(256)));
    }

    #[test]
    fn group_kind_grammar() {
        for kind in ["company", "team", "org.unit", "a-b_c", "xx"] {
            assert!(kind.parse::<GroupKind>().is_ok(), "{kind:?}");
        }
        for kind in [
            "",
            "x",
            "..",
            "...",
            "a/b",
            "a:b",
            "a*",
            "a b",
            &"k".repeat(65),
        ] {
            assert!(kind.parse::<GroupKind>().is_err(), "{kind:?}");
        }
    }

    #[test]
    fn key_id_grammar() {
        assert!("tA-2030.01_x".parse::<KeyId>().is_ok());
        assert!("".parse::<KeyId>().is_err());
        assert!("../../etc/passwd".parse::<KeyId>().is_err());
        assert!("x' UNION SELECT 'k' -- ".parse::<KeyId>().is_err());
        assert!("a\r\nb".parse::<KeyId>().is_err());
        assert!("a".repeat(64).parse::<KeyId>().is_ok());
        assert!("a".repeat(65).parse::<KeyId>().is_err());
        let random = KeyId::new_random();
        assert_eq!(random.as_str().len(), 25);
        assert!(random.as_str().parse::<KeyId>().is_ok());
        assert_ne!(random, KeyId::new_random());
    }
}
