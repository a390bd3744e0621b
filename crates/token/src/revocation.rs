//! Revocation: which of a project's tokens stop being accepted before they expire.
//!
//! A revocation names either one token (its `jti`) or a subject — a Centrifugo user, a
//! SignalWire member, a Fabric subscriber: whatever the token's `sub` says — and a time:
//! every token of that subject issued (`iat`) before it is refused. Each revocation is
//! kept only until `expire_at`, when every token it could refuse has expired anyway.
//!
//! [`RevocationSet`] is one project's revocations, indexed for the check every connect,
//! subscribe and refresh makes: two hash lookups, no allocation. Pure: the caller passes
//! `now`, and decides which project's set to ask (a set never spans projects).

use std::collections::HashMap;

use uuid::Uuid;

/// Longest `jti` or subject a revocation may name (bytes); longer ones are refused at the
/// boundary, so the set's memory is bounded by its count.
pub const MAX_TARGET_LEN: usize = 256;

/// What a revocation refuses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// The one token with this `jti`.
    Token { jti: String },
    /// Every token whose `sub` is `subject` and whose `iat` is before `issued_before`
    /// (Unix seconds). A token without `iat` cannot show it was issued later, so it is
    /// refused too.
    Subject { subject: String, issued_before: i64 },
}

impl Target {
    /// Checks the bounds a target must meet: a non-empty value of at most
    /// [`MAX_TARGET_LEN`] bytes without control characters.
    pub fn validate(&self) -> Result<(), &'static str> {
        let value = match self {
            Self::Token { jti } => jti,
            Self::Subject { subject, .. } => subject,
        };
        if value.is_empty() {
            return Err("must not be empty");
        }
        if value.len() > MAX_TARGET_LEN {
            return Err("must be at most 256 bytes");
        }
        if value.chars().any(char::is_control) {
            return Err("must not contain control characters");
        }
        Ok(())
    }
}

/// One revocation of one project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub id: Uuid,
    pub target: Target,
    /// Unix seconds after which the revocation is dropped.
    pub expire_at: i64,
}

/// One project's live revocations, indexed for checking.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationSet {
    /// `jti` → when the revocation lapses.
    tokens: HashMap<String, i64>,
    /// subject → (issued before, lapses at); several revocations of one subject keep the
    /// latest `issued_before` (and the latest lapse among those).
    subjects: HashMap<String, (i64, i64)>,
    len: usize,
}

/// What a token shows a revocation check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Presented<'a> {
    pub jti: Option<&'a str>,
    /// `sub`; empty for an anonymous token (never matches a subject revocation).
    pub subject: &'a str,
    pub issued_at: Option<i64>,
}

impl RevocationSet {
    /// The set of `revocations` still in force at `now`.
    #[must_use]
    pub fn new<'a>(revocations: impl IntoIterator<Item = &'a Revocation>, now: i64) -> Self {
        let mut set = Self::default();
        for r in revocations {
            set.insert(r, now);
        }
        set
    }

    /// Adds a revocation (ignored once lapsed).
    pub fn insert(&mut self, r: &Revocation, now: i64) {
        if r.expire_at <= now {
            return;
        }
        self.len += 1;
        match &r.target {
            Target::Token { jti } => {
                let at = self.tokens.entry(jti.clone()).or_insert(r.expire_at);
                *at = (*at).max(r.expire_at);
            }
            Target::Subject {
                subject,
                issued_before,
            } => {
                let e = self
                    .subjects
                    .entry(subject.clone())
                    .or_insert((*issued_before, r.expire_at));
                e.0 = e.0.max(*issued_before);
                e.1 = e.1.max(r.expire_at);
            }
        }
    }

    /// Revocations in the set (lapsed ones included until the set is rebuilt).
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether a token showing `token` is revoked at `now`.
    #[must_use]
    pub fn is_revoked(&self, token: Presented<'_>, now: i64) -> bool {
        if let Some(jti) = token.jti
            && self.tokens.get(jti).is_some_and(|&until| until > now)
        {
            return true;
        }
        if token.subject.is_empty() {
            return false;
        }
        match self.subjects.get(token.subject) {
            Some(&(before, until)) if until > now => token.issued_at.is_none_or(|iat| iat < before),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(jti: &str, expire_at: i64) -> Revocation {
        Revocation {
            id: Uuid::new_v4(),
            target: Target::Token { jti: jti.into() },
            expire_at,
        }
    }

    fn subject(s: &str, issued_before: i64, expire_at: i64) -> Revocation {
        Revocation {
            id: Uuid::new_v4(),
            target: Target::Subject {
                subject: s.into(),
                issued_before,
            },
            expire_at,
        }
    }

    fn shown<'a>(jti: Option<&'a str>, subject: &'a str, iat: Option<i64>) -> Presented<'a> {
        Presented {
            jti,
            subject,
            issued_at: iat,
        }
    }

    #[test]
    fn a_token_revocation_refuses_that_jti_only_until_it_lapses() {
        let set = RevocationSet::new(&[token("j1", 200)], 100);
        assert!(set.is_revoked(shown(Some("j1"), "alice", Some(50)), 100));
        assert!(!set.is_revoked(shown(Some("j2"), "alice", Some(50)), 100));
        assert!(!set.is_revoked(shown(None, "alice", Some(50)), 100));
        assert!(!set.is_revoked(shown(Some("j1"), "alice", Some(50)), 200));
    }

    #[test]
    fn a_subject_revocation_refuses_tokens_issued_before_its_time() {
        let set = RevocationSet::new(&[subject("alice", 100, 1000)], 100);
        assert!(set.is_revoked(shown(Some("x"), "alice", Some(99)), 150));
        assert!(!set.is_revoked(shown(Some("x"), "alice", Some(100)), 150));
        assert!(!set.is_revoked(shown(Some("x"), "bob", Some(1)), 150));
        // No iat: it cannot show it came later.
        assert!(set.is_revoked(shown(None, "alice", None), 150));
        // Anonymous tokens never match.
        assert!(!set.is_revoked(shown(None, "", None), 150));
        assert!(!set.is_revoked(shown(None, "alice", Some(1)), 1000));
    }

    #[test]
    fn several_revocations_of_one_subject_keep_the_latest_time() {
        let set = RevocationSet::new(&[subject("a", 300, 500), subject("a", 100, 900)], 0);
        assert!(set.is_revoked(shown(None, "a", Some(299)), 400));
        // The later lapse keeps the later issued_before: conservative.
        assert!(set.is_revoked(shown(None, "a", Some(299)), 600));
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn lapsed_revocations_are_not_kept() {
        let set = RevocationSet::new(&[token("j", 10), subject("a", 5, 10)], 10);
        assert!(set.is_empty());
    }

    #[test]
    fn targets_are_bounded() {
        let ok = Target::Token { jti: "j".into() };
        assert!(ok.validate().is_ok());
        for bad in [String::new(), "x".repeat(257), "a\nb".into()] {
            assert!(Target::Token { jti: bad.clone() }.validate().is_err());
            let s = Target::Subject {
                subject: bad,
                issued_before: 1,
            };
            assert!(s.validate().is_err());
        }
    }
}
