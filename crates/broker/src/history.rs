//! The one answer to a history read, shared by every broker.
//!
//! A broker only knows how to fetch what its channel keeps (oldest first) and the stream's
//! top; what a `since`/`limit`/`reverse` query returns, and when recovery counts as
//! complete, is decided here once, so the in-process and Redis brokers cannot drift apart.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{History, HistoryQuery, Publication, StreamPosition};

/// Answers `query` from `kept` and the stream's current `position`.
///
/// `kept` is the channel's kept publications, oldest first: all of them, or with `since`
/// at least every one after it (whether recovery is complete only depends on those), or
/// without `since` at least the `limit` oldest (newest with `reverse`).
pub(crate) fn answer(
    kept: Vec<Arc<Publication>>,
    position: StreamPosition,
    query: HistoryQuery<'_>,
) -> History {
    let (mut publications, recovered) = match query.since {
        None => (kept, true),
        Some(since) => {
            let first_kept = kept.first().map_or(position.offset + 1, |p| p.offset);
            let continuous = since.epoch == position.epoch
                && since.offset <= position.offset
                && first_kept <= since.offset + 1;
            let missed: Vec<Arc<Publication>> = kept
                .into_iter()
                .filter(|p| p.offset > since.offset)
                .collect();
            // Every offset after `since` must still be there: one not kept (over a byte
            // budget, or trimmed) is a gap, not a silent loss.
            let complete = u64::try_from(missed.len())
                .is_ok_and(|n| since.offset.checked_add(n) == Some(position.offset));
            if continuous && complete {
                (missed, true)
            } else {
                (Vec::new(), false)
            }
        }
    };
    if query.reverse {
        publications.reverse();
    }
    if let Some(limit) = query.limit {
        publications.truncate(limit);
    }
    History {
        publications,
        position,
        recovered,
    }
}

/// A new stream epoch: every broker starts a stream with one, so a client holding a
/// position from a stream that was lost (restart, expiry) learns it cannot recover.
pub(crate) fn new_epoch() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}

/// The wall clock in milliseconds, as publication timestamps and expiries use it.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
