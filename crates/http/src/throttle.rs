//! The failed-credential limiter: wrong Basic credentials and wrong server API keys are
//! counted per client address and per project, and a caller that keeps failing is answered
//! 429 with `Retry-After` *before* its credentials are checked again.
//!
//! Each counter is a token bucket of failures ([`ADDRESS`], [`PROJECT`]). Successes are never
//! counted or slowed, and the limits only ever stop callers that failed:
//!
//! - An address whose bucket is empty is refused outright: it failed [`ADDRESS`]`.burst`
//!   times in quick succession. IPv6 addresses are counted per /64, since one host holds a
//!   whole /64.
//! - A project whose bucket is empty (a guessing attack spread over many addresses) is
//!   refused only to addresses that have themselves failed recently; addresses with a clean
//!   record, where the project's real callers are, keep being served.
//!
//! Signed bearer tokens are not counted: they cannot be guessed, and their check is cheap.
//! Both tables are bounded ([`MAX_TRACKED`]); when one is full, entries that have refilled
//! are dropped, and if none has, new addresses go uncounted rather than evicting ones that
//! are being throttled.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use tollgate_token::ProjectId;

use crate::ApiError;

/// A bucket's size and refill rate.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    /// Failures allowed in a burst.
    pub burst: f64,
    /// Failures forgiven per second once the burst is spent.
    pub per_second: f64,
}

/// Per client address, by default (`http.failed_auth_burst`, `http.failed_auth_per_minute`):
/// 20 failures at once, then one every 2 seconds.
pub const ADDRESS: Limit = Limit {
    burst: 20.0,
    per_second: 0.5,
};
/// Per project, over all addresses: 200 failures at once, then 5 a second.
pub const PROJECT: Limit = Limit {
    burst: 200.0,
    per_second: 5.0,
};
/// Most addresses (and most projects) tracked at once.
pub const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    level: f64,
    at: Instant,
}

impl Bucket {
    fn level(&self, now: Instant, limit: Limit) -> f64 {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * limit.per_second;
        (self.level + refill).min(limit.burst)
    }
}

/// One table of buckets.
#[derive(Debug)]
struct Table<K> {
    limit: Limit,
    buckets: HashMap<K, Bucket>,
}

impl<K: Hash + Eq + Copy> Table<K> {
    fn new(limit: Limit) -> Self {
        Self {
            limit,
            buckets: HashMap::new(),
        }
    }

    fn level(&self, key: &K, now: Instant) -> f64 {
        self.buckets
            .get(key)
            .map_or(self.limit.burst, |b| b.level(now, self.limit))
    }

    /// Seconds until the bucket holds one failure again.
    fn retry_after(&self, level: f64) -> u64 {
        let secs = ((1.0 - level) / self.limit.per_second).ceil();
        // Bounded by burst / rate, a small positive number.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let secs = secs.max(1.0) as u64;
        secs
    }

    /// Counts one failure; `true` when this one emptied the bucket.
    fn fail(&mut self, key: K, now: Instant) -> bool {
        if !self.buckets.contains_key(&key) && self.buckets.len() >= MAX_TRACKED {
            let limit = self.limit;
            self.buckets
                .retain(|_, b| b.level(now, limit) < limit.burst);
            if self.buckets.len() >= MAX_TRACKED {
                return false;
            }
        }
        let before = self.level(&key, now);
        // Requests checked at the same moment can all fail: never below empty.
        let level = (before - 1.0).max(0.0);
        self.buckets.insert(key, Bucket { level, at: now });
        before >= 1.0 && level < 1.0
    }
}

#[derive(Debug)]
struct Tables {
    addresses: Table<IpAddr>,
    projects: Table<ProjectId>,
}

/// The limiter, shared by every request.
#[derive(Debug)]
pub struct Throttle {
    tables: Mutex<Tables>,
}

impl Default for Throttle {
    fn default() -> Self {
        Self::with_limits(ADDRESS, PROJECT)
    }
}

impl Throttle {
    /// A limiter with other limits (tests).
    #[must_use]
    pub fn with_limits(address: Limit, project: Limit) -> Self {
        Self {
            tables: Mutex::new(Tables {
                addresses: Table::new(address),
                projects: Table::new(project),
            }),
        }
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a caller at `addr`, presenting credentials for `project`, may have them
    /// checked now; if not, the 429 to answer.
    pub fn check(&self, addr: Option<IpAddr>, project: Option<ProjectId>) -> Result<(), ApiError> {
        let Some(addr) = addr.map(bucket_key) else {
            return Ok(());
        };
        let now = Instant::now();
        let t = self.tables();
        let own = t.addresses.level(&addr, now);
        if own < 1.0 {
            return Err(ApiError::TooManyRequests {
                retry_after: t.addresses.retry_after(own),
            });
        }
        if let Some(project) = project {
            let shared = t.projects.level(&project, now);
            if shared < 1.0 && own < t.addresses.limit.burst {
                return Err(ApiError::TooManyRequests {
                    retry_after: t.projects.retry_after(shared),
                });
            }
        }
        Ok(())
    }

    /// Counts a failed credential from `addr` against `project`.
    pub fn failed(&self, addr: Option<IpAddr>, project: Option<ProjectId>) {
        let now = Instant::now();
        let mut t = self.tables();
        if let Some(addr) = addr.map(bucket_key)
            && t.addresses.fail(addr, now)
        {
            tracing::info!(
                address = %addr,
                "too many failed credentials from this address; refusing its attempts with 429 for a while"
            );
        }
        if let Some(project) = project
            && t.projects.fail(project, now)
        {
            tracing::warn!(
                %project,
                "too many failed credentials against this project; refusing attempts from addresses that failed, with 429"
            );
        }
    }
}

/// IPv6 addresses are counted per /64 (one host's allocation); IPv4 per address.
fn bucket_key(addr: IpAddr) -> IpAddr {
    match crate::client_addr::canonical(addr) {
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            IpAddr::from(o)
        }
        v4 @ IpAddr::V4(_) => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn refused(r: Result<(), ApiError>) -> Option<u64> {
        match r {
            Ok(()) => None,
            Err(ApiError::TooManyRequests { retry_after }) => Some(retry_after),
            Err(e) => panic!("{e:?}"),
        }
    }

    #[test]
    fn an_address_is_refused_after_its_burst_and_others_are_not() {
        let t = Throttle::default();
        for _ in 0..20 {
            assert_eq!(refused(t.check(ip("198.51.100.1"), None)), None);
            t.failed(ip("198.51.100.1"), None);
        }
        assert_eq!(refused(t.check(ip("198.51.100.1"), None)), Some(2));
        assert_eq!(refused(t.check(ip("198.51.100.2"), None)), None);
        // The same /64 is the same caller; another /64 is not.
        for _ in 0..20 {
            t.failed(ip("2001:db8::1"), None);
        }
        assert!(refused(t.check(ip("2001:db8::ffff"), None)).is_some());
        assert_eq!(refused(t.check(ip("2001:db8:0:1::1"), None)), None);
    }

    #[test]
    fn a_project_under_attack_still_serves_addresses_that_never_failed() {
        let t = Throttle::with_limits(
            ADDRESS,
            Limit {
                burst: 5.0,
                per_second: 0.01,
            },
        );
        let project = Some(ProjectId::new_random());
        for i in 0..5 {
            t.failed(ip(&format!("203.0.113.{i}")), project);
        }
        // An attacking address (one failure, far from its own limit) is now refused…
        assert!(refused(t.check(ip("203.0.113.0"), project)).is_some());
        // …a clean address is not, nor is another project.
        assert_eq!(refused(t.check(ip("192.0.2.77"), project)), None);
        assert_eq!(
            refused(t.check(ip("203.0.113.0"), Some(ProjectId::new_random()))),
            None
        );
    }

    #[test]
    fn buckets_refill() {
        let t = Throttle::with_limits(
            Limit {
                burst: 1.0,
                per_second: 1000.0,
            },
            PROJECT,
        );
        t.failed(ip("198.51.100.9"), None);
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(refused(t.check(ip("198.51.100.9"), None)), None);
    }

    #[test]
    fn without_an_address_nothing_is_limited() {
        let t = Throttle::with_limits(
            Limit {
                burst: 1.0,
                per_second: 0.001,
            },
            PROJECT,
        );
        t.failed(None, None);
        assert_eq!(refused(t.check(None, None)), None);
    }
}
