//! Cache invalidation across processes sharing one database.
//!
//! This node forgets its cached answers the moment it changes what they summarise (see
//! `cache`); other nodes would only notice when their entries expire (5 s, 30 s for keys).
//! So every such change is also announced as an [`Invalidation`] through
//! [`Invalidations`], which the binary implements over the broker's control channel, and
//! what other nodes announce is applied with [`crate::Tollgate::forget`].
//!
//! The service knows nothing of the broker (dependencies point one way): it only defines
//! the message and its wire form. A message names a project and a kind of cache, and
//! applying one only ever *forgets* that project's entries, never stores anything, so a
//! forged, garbled or replayed message can at most cost a reload from the database.
//! Delivery is at most once; the time-bounded caches stay the fallback for a lost message
//! (and for the CLI, which announces nothing).

use tollgate_token::ProjectId;

/// What another node should forget: always one project's entries of one cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalidation {
    /// The project's namespaces changed.
    Namespaces(ProjectId),
    /// The project's signing or subscriber-token keys rotated.
    Keys(ProjectId),
    /// A token family of the project was revoked, a subscriber deleted or an embed key
    /// revoked: validated SATs must be checked again.
    Sats(ProjectId),
    /// This project was created: the one project the deployment-wide credentials act for
    /// (without `centrifugo.project`) may have changed.
    ProjectCreated(ProjectId),
    /// The project's revocations changed: reload them from the database now (the one
    /// kind that reloads rather than forgets — a reload is all a forged message can cost).
    Revocations(ProjectId),
}

/// Where this node announces its invalidations (fire and forget: implementations must
/// not block).
pub trait Invalidations: Send + Sync + std::fmt::Debug + 'static {
    fn publish(&self, invalidation: Invalidation);
}

/// Why a received message was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidationError {
    /// A kind this node does not know (sent by a newer node): skip it.
    UnknownKind,
    /// Not a well-formed invalidation.
    Malformed,
}

/// Largest wire form accepted: a kind and a project id are well under it.
const MAX_WIRE_BYTES: usize = 256;

impl Invalidation {
    fn kind(self) -> &'static str {
        match self {
            Self::Namespaces(_) => "ns",
            Self::Keys(_) => "keys",
            Self::Sats(_) => "sats",
            Self::ProjectCreated(_) => "project",
            Self::Revocations(_) => "revocations",
        }
    }

    /// The project whose entries it concerns.
    #[must_use]
    pub fn project(self) -> ProjectId {
        match self {
            Self::Namespaces(p)
            | Self::Keys(p)
            | Self::Sats(p)
            | Self::ProjectCreated(p)
            | Self::Revocations(p) => p,
        }
    }

    /// The wire form: `{"k": kind, "p": project}`.
    #[must_use]
    pub fn encode(self) -> Vec<u8> {
        serde_json::json!({"k": self.kind(), "p": self.project().as_uuid().to_string()})
            .to_string()
            .into_bytes()
    }

    /// Decodes [`Self::encode`]'s output strictly: a JSON object of exactly `k` and `p`.
    pub fn decode(bytes: &[u8]) -> Result<Self, InvalidationError> {
        use serde_json::Value;
        if bytes.len() > MAX_WIRE_BYTES {
            return Err(InvalidationError::Malformed);
        }
        let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(bytes) else {
            return Err(InvalidationError::Malformed);
        };
        let (Some(Value::String(kind)), Some(Value::String(project)), 2) =
            (m.get("k"), m.get("p"), m.len())
        else {
            return Err(InvalidationError::Malformed);
        };
        let project: ProjectId = project.parse().map_err(|_| InvalidationError::Malformed)?;
        Ok(match kind.as_str() {
            "ns" => Self::Namespaces(project),
            "keys" => Self::Keys(project),
            "sats" => Self::Sats(project),
            "project" => Self::ProjectCreated(project),
            "revocations" => Self::Revocations(project),
            _ => return Err(InvalidationError::UnknownKind),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalidations_round_trip_and_decode_strictly() {
        let p = ProjectId::new_random();
        for i in [
            Invalidation::Namespaces(p),
            Invalidation::Keys(p),
            Invalidation::Sats(p),
            Invalidation::ProjectCreated(p),
            Invalidation::Revocations(p),
        ] {
            assert_eq!(Invalidation::decode(&i.encode()), Ok(i));
        }
        let ps = p.as_uuid().to_string();
        let newer = serde_json::json!({"k": "later", "p": ps}).to_string();
        assert_eq!(
            Invalidation::decode(newer.as_bytes()),
            Err(InvalidationError::UnknownKind)
        );
        for bad in [
            serde_json::json!({"k": "ns"}),
            serde_json::json!({"k": "ns", "p": "nope"}),
            serde_json::json!({"k": "ns", "p": ps, "x": 1}),
            serde_json::json!({"k": 1, "p": ps}),
            serde_json::json!([ps]),
        ] {
            assert_eq!(
                Invalidation::decode(bad.to_string().as_bytes()),
                Err(InvalidationError::Malformed),
                "{bad}"
            );
        }
        assert_eq!(
            Invalidation::decode(&[b' '; MAX_WIRE_BYTES + 1]),
            Err(InvalidationError::Malformed)
        );
    }
}
