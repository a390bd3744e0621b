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
        if s.len() != 36 {
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
            "not-a-uuid-at-all-not-a-uuid-at-all!"
                .parse::<ProjectId>()
                .is_err()
        );
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
