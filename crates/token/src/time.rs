//! Time as the core sees it: whole seconds since the Unix epoch, supplied by the caller.

use std::fmt;

/// Seconds since 1970-01-01T00:00:00Z.
///
/// The core never reads a clock; services pass `now` in, so tests can pin time exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixTime(pub i64);

impl UnixTime {
    /// The wrapped number of seconds.
    #[must_use]
    pub fn seconds(self) -> i64 {
        self.0
    }

    /// `self + secs`, saturating instead of overflowing.
    #[must_use]
    pub fn plus(self, secs: i64) -> Self {
        Self(self.0.saturating_add(secs))
    }
}

impl fmt::Display for UnixTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
