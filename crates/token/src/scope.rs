//! SignalWire API-token scopes ("permissions" in SignalWire's project-tokens API).

use std::fmt;
use std::str::FromStr;

/// One scope, by SignalWire's machine name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    Calling,
    Chat,
    Datasphere,
    Fax,
    Management,
    Messaging,
    Numbers,
    Pubsub,
    Storage,
    Tasking,
    Video,
}

impl Scope {
    /// Every scope, in SignalWire's documented order.
    pub const ALL: [Scope; 11] = [
        Scope::Calling,
        Scope::Chat,
        Scope::Datasphere,
        Scope::Fax,
        Scope::Management,
        Scope::Messaging,
        Scope::Numbers,
        Scope::Pubsub,
        Scope::Storage,
        Scope::Tasking,
        Scope::Video,
    ];

    /// The machine name, e.g. `"pubsub"`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Calling => "calling",
            Scope::Chat => "chat",
            Scope::Datasphere => "datasphere",
            Scope::Fax => "fax",
            Scope::Management => "management",
            Scope::Messaging => "messaging",
            Scope::Numbers => "numbers",
            Scope::Pubsub => "pubsub",
            Scope::Storage => "storage",
            Scope::Tasking => "tasking",
            Scope::Video => "video",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl FromStr for Scope {
    type Err = UnknownScope;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| UnknownScope(s.chars().take(64).collect()))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scope name that SignalWire does not define.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown scope {0:?}; expected one of calling, chat, datasphere, fax, management, messaging, numbers, pubsub, storage, tasking, video"
)]
pub struct UnknownScope(pub String);

/// A set of scopes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Scopes(u16);

impl Scopes {
    /// Scopes a new project's first token gets when none are named: everything the
    /// real-time products use.
    #[must_use]
    pub fn project_default() -> Self {
        [
            Scope::Pubsub,
            Scope::Chat,
            Scope::Calling,
            Scope::Messaging,
            Scope::Fax,
            Scope::Video,
        ]
        .into_iter()
        .collect()
    }

    /// Whether `scope` is in the set.
    #[must_use]
    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// Whether any of `scopes` is in the set.
    #[must_use]
    pub fn contains_any(self, scopes: &[Scope]) -> bool {
        scopes.iter().any(|s| self.contains(*s))
    }

    /// Whether the set is empty.
    #[must_use]
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The scopes in the set, in canonical order.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// Parses a comma-separated list such as `"pubsub,chat"`. Blank items are ignored;
    /// an unknown name is an error.
    pub fn parse_list(list: &str) -> Result<Self, UnknownScope> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Scope::from_str)
            .collect()
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        Self(iter.into_iter().fold(0, |acc, s| acc | s.bit()))
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for scope in self.iter() {
            if !first {
                f.write_str(",")?;
            }
            f.write_str(scope.as_str())?;
            first = false;
        }
        Ok(())
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scopes({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_scope() {
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>().unwrap(), scope);
        }
        let all: Scopes = Scope::ALL.into_iter().collect();
        assert_eq!(Scopes::parse_list(&all.to_string()).unwrap(), all);
    }

    #[test]
    fn parses_lists_strictly() {
        let s = Scopes::parse_list("pubsub, chat,,").unwrap();
        assert!(s.contains(Scope::Pubsub) && s.contains(Scope::Chat));
        assert!(!s.contains(Scope::Video));
        assert_eq!(s.to_string(), "chat,pubsub");
        assert!(Scopes::parse_list("pubsub,PubSub").is_err());
        assert!(Scopes::parse_list("admin").is_err());
        assert!(Scopes::parse_list("").unwrap().is_empty());
    }

    #[test]
    fn default_scopes_match_the_contract() {
        assert_eq!(
            Scopes::project_default().to_string(),
            "calling,chat,fax,messaging,pubsub,video"
        );
    }
}
