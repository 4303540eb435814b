//! Rolling upload windows counted in time buckets.
//!
//! Volume is added to an hourly bucket (for the daily window) and a daily bucket (for the week
//! and the month), per user and per domain. A window at time `now` covers every bucket any part
//! of which lies within the window, so bytes count until their whole bucket has left it: a
//! `retry_at` is exact to the bucket (the hour for the daily window, the day for the others) and
//! never too early. A check reads at most 25 + 8 + 31 rows per scope, however many files exist.

use rusqlite::Connection;

use super::decision::{Denial, UploadLimit};
use crate::store::quotas as sql;
use crate::{Result, Timestamp};

pub(crate) const HOUR: i64 = 3600;
pub(crate) const DAY: i64 = 24 * HOUR;
/// The rolling windows: a day, a week, a month of 30 days.
pub(crate) const WINDOWS: [i64; 3] = [DAY, 7 * DAY, 30 * DAY];
/// The bucket each window is counted in.
pub(crate) const SPANS: [i64; 3] = [HOUR, DAY, DAY];
/// The bucket spans, and the window whose start is the oldest bucket of that span still needed.
const KEPT: [(i64, usize); 2] = [(HOUR, 0), (DAY, 2)];

/// The first bucket of window `i` at `now`: the oldest bucket any part of which is in the window.
pub(crate) fn window_start(i: usize, now: Timestamp) -> i64 {
    (now - WINDOWS[i]).div_euclid(SPANS[i])
}

/// Bytes a scope (username '' for the domain) uploaded in window `i`; reservations are apart.
pub(crate) fn window_volume(c: &Connection, domain: &str, username: &str, i: usize, now: Timestamp) -> Result<i64> {
    sql::volume_sum(c, domain, username, SPANS[i], window_start(i, now))
}

/// Adds a completed upload to the scope's current buckets, and drops the scope's buckets that no
/// window reaches any more (usually none: one key seek each).
pub(crate) fn record(c: &Connection, domain: &str, username: &str, bytes: i64, now: Timestamp) -> Result<()> {
    for (span, window) in KEPT {
        sql::add_volume(c, domain, username, span, now.div_euclid(span), bytes)?;
        sql::prune_scope_volume(c, domain, username, span, window_start(window, now))?;
    }
    Ok(())
}

/// Drops up to `limit` buckets per span that no window reaches, of any scope.
pub(crate) fn prune_all(c: &Connection, now: Timestamp, limit: i64) -> Result<usize> {
    let mut pruned = 0;
    for (span, window) in KEPT {
        pruned += sql::prune_volume(c, span, window_start(window, now), limit)?;
    }
    Ok(pruned)
}

/// One scope's view for a decision.
pub(crate) struct Scope<'a> {
    pub domain: &'a str,
    /// '' for the domain as a whole.
    pub username: &'a str,
    /// Bytes the scope has reserved: they count in every window.
    pub reserved: i64,
    pub limits: [Option<u64>; 3],
    pub kinds: [UploadLimit; 3],
}

fn as_i64(limit: u64) -> i64 {
    limit.min(i64::MAX as u64) as i64
}

/// Checks the scope's windows for `size` more bytes. Only a refusal reads the buckets one by
/// one, to find when enough of them have left the window.
pub(crate) fn check(c: &Connection, scope: &Scope<'_>, size: i64, now: Timestamp) -> Result<Option<Denial>> {
    for i in 0..3 {
        let Some(limit) = scope.limits[i] else { continue };
        // Saturating: a window at the top of the range refuses, it never wraps round to room.
        let used = window_volume(c, scope.domain, scope.username, i, now)?.saturating_add(scope.reserved);
        if used.saturating_add(size) <= as_i64(limit) {
            continue;
        }
        let mut remaining = used;
        let buckets = sql::volume_buckets(c, scope.domain, scope.username, SPANS[i], window_start(i, now))?;
        let retry_at = buckets.into_iter().find_map(|(start, b)| {
            remaining = remaining.saturating_sub(b);
            // The bucket's last second leaves the window WINDOWS[i] after the bucket ends.
            (remaining.saturating_add(size) <= as_i64(limit)).then_some((start + 1) * SPANS[i] + WINDOWS[i])
        });
        return Ok(Some(Denial {
            limit: scope.kinds[i],
            limit_value: limit,
            usage: used as u64,
            requested: size as u64,
            retry_at,
        }));
    }
    Ok(None)
}
