//! Where the service layer gets "now". Injected so tests can pin time.

use std::fmt::Debug;
use std::sync::atomic::{AtomicI64, Ordering};

use tollgate_token::UnixTime;

/// A source of the current time.
pub trait Clock: Send + Sync + Debug + 'static {
    /// The current time, in milliseconds since the epoch. What needs sub-second precision
    /// (how long ago a refresh token was spent) reads this; everything else reads [`now`].
    ///
    /// [`now`]: Clock::now
    fn now_millis(&self) -> i64;

    /// The current time, in whole seconds (JWT `iat`/`exp` and every stored `*_at`).
    fn now(&self) -> UnixTime {
        UnixTime(self.now_millis().div_euclid(1000))
    }
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A clock that stays where it is put. For tests.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock showing `t` (seconds).
    #[must_use]
    pub fn at(t: i64) -> Self {
        Self(AtomicI64::new(t.saturating_mul(1000)))
    }

    /// Moves the clock to `t` (seconds).
    pub fn set(&self, t: i64) {
        self.set_millis(t.saturating_mul(1000));
    }

    /// Moves the clock to `ms` milliseconds since the epoch.
    pub fn set_millis(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_millis(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_the_floor_of_milliseconds() {
        let clock = ManualClock::at(10);
        assert_eq!(clock.now(), UnixTime(10));
        clock.set_millis(10_999);
        assert_eq!(clock.now(), UnixTime(10));
        clock.set_millis(-1);
        assert_eq!(
            clock.now(),
            UnixTime(-1),
            "before the epoch rounds down too"
        );
        let system = SystemClock;
        let (ms, s) = (system.now_millis(), system.now().seconds());
        assert!((ms / 1000 - s).abs() <= 1);
    }
}
