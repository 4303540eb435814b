//! Daily and monthly active accounts, counted from the logins the servers report: one row per
//! account with the time of its last login, keyed by a digest of the name (a count needs no
//! name), written at most once an hour per account.

use rusqlite::OptionalExtension;
use sha2::{Digest, Sha256};

use super::statistics::UsageStatistics;
use crate::{Error, Hosting, Result};

/// A login within this many seconds of the recorded one is not written again.
const RESOLUTION: i64 = 3600;
const DAY: i64 = 86_400;
/// The monthly window, as the quotas count a month.
const MONTH: i64 = 30 * DAY;

fn digest(domain: &str, user: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(domain.as_bytes());
    h.update([0]);
    h.update(user.as_bytes());
    h.finalize().to_vec()
}

impl Hosting {
    /// `username` of `domain` logged in now. A domain the store does not host is ignored (the
    /// servers report every login); rows past the monthly window are dropped on the way.
    pub fn record_activity(&self, domain: &str, username: &str) -> Result<()> {
        let Some(d) = self.domain(domain)? else { return Ok(()) };
        let user = crate::invites::normalize_username(username)
            .ok_or_else(|| Error::InvalidArgument(format!("{username:?} is not a username")))?;
        let now = self.now();
        let key = digest(d.name.as_str(), &user);
        // Most logins come back within the hour: a read then, no write lock taken.
        let recorded: Option<i64> = self.store().read(|c| {
            Ok(c.prepare_cached("SELECT last_active FROM publish_activity WHERE domain = ?1 AND user_digest = ?2")?
                .query_row(rusqlite::params![d.name.as_str(), key], |r| r.get(0))
                .optional()?)
        })?;
        if recorded.is_some_and(|last| last > now - RESOLUTION) {
            return Ok(());
        }
        self.store().write(|tx| {
            tx.prepare_cached(
                "INSERT INTO publish_activity (domain, user_digest, last_active) VALUES (?1, ?2, ?3)
                 ON CONFLICT (domain, user_digest) DO UPDATE SET last_active = excluded.last_active
                 WHERE last_active <= excluded.last_active - ?4",
            )?
            .execute(rusqlite::params![d.name.as_str(), key, now, RESOLUTION])?;
            tx.prepare_cached("DELETE FROM publish_activity WHERE domain = ?1 AND last_active < ?2")?
                .execute(rusqlite::params![d.name.as_str(), now - MONTH - DAY])?;
            Ok(())
        })
    }

    /// `stats` with the daily and monthly active accounts of `domain` filled in from the
    /// recorded logins where the server did not count them itself.
    pub fn usage_statistics(&self, domain: &str, stats: UsageStatistics) -> Result<UsageStatistics> {
        let d = self.require_domain(domain)?;
        let now = self.now();
        let count = |since: i64| -> Result<u64> {
            self.store().read(|c| {
                let n: i64 = c
                    .prepare_cached("SELECT COUNT(*) FROM publish_activity WHERE domain = ?1 AND last_active >= ?2")?
                    .query_row(rusqlite::params![d.name.as_str(), since], |r| r.get(0))?;
                Ok(n.max(0) as u64)
            })
        };
        Ok(UsageStatistics {
            accounts: stats.accounts,
            daily_active: match stats.daily_active {
                Some(n) => Some(n),
                None => Some(count(now - DAY)?),
            },
            monthly_active: match stats.monthly_active {
                Some(n) => Some(n),
                None => Some(count(now - MONTH)?),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;

    #[test]
    fn logins_count_in_the_day_and_the_month_they_happened() {
        let clock = ManualClock::new(1_000_000_000);
        let h = Hosting::open_in_memory().unwrap().with_clock(clock.clone());
        h.add_domain("example.org").unwrap();
        let counts = |h: &Hosting| {
            let s = h.usage_statistics("example.org", UsageStatistics::default()).unwrap();
            (s.daily_active, s.monthly_active)
        };
        assert_eq!(counts(&h), (Some(0), Some(0)));
        h.record_activity("example.org", "alice").unwrap();
        h.record_activity("example.org", "Alice").unwrap();
        h.record_activity("example.org", "bob").unwrap();
        h.record_activity("elsewhere.example", "carol").unwrap();
        assert_eq!(counts(&h), (Some(2), Some(2)), "one account counts once, whatever its case");
        clock.advance(2 * DAY);
        h.record_activity("example.org", "bob").unwrap();
        assert_eq!(counts(&h), (Some(1), Some(2)));
        clock.advance(MONTH);
        assert_eq!(counts(&h), (Some(0), Some(1)), "alice's login left the month");
        let given = UsageStatistics { accounts: Some(5), daily_active: Some(3), monthly_active: None };
        assert_eq!(
            h.usage_statistics("example.org", given).unwrap().daily_active,
            Some(3),
            "the server's own count wins"
        );
        let stored: i64 =
            h.store().read(|c| Ok(c.query_row("SELECT COUNT(*) FROM publish_activity", [], |r| r.get(0))?)).unwrap();
        clock.advance(2 * DAY);
        h.record_activity("example.org", "dave").unwrap();
        let after: i64 =
            h.store().read(|c| Ok(c.query_row("SELECT COUNT(*) FROM publish_activity", [], |r| r.get(0))?)).unwrap();
        assert_eq!((stored, after), (2, 1), "rows past the month are dropped");
    }

    #[test]
    fn a_login_recorded_within_the_hour_takes_no_write_lock_and_a_held_lock_hands_one_to_the_worker() {
        let store = crate::test_store::TestStore::new("activity-lock");
        let clock = ManualClock::new(1_000_000_000);
        let h = Hosting::open(&store.path).unwrap().with_clock(clock.clone());
        h.add_domain("example.org").unwrap();
        h.record_activity("example.org", "alice").unwrap();
        let other = rusqlite::Connection::open(&store.path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let crate::NowOrLater::Now(()) = h.now_or_later(|h| h.record_activity("example.org", "alice")).unwrap() else {
            panic!("a login already counted this hour waited for the write lock");
        };
        clock.advance(2 * RESOLUTION);
        let crate::NowOrLater::Later(pending) = h.now_or_later(|h| h.record_activity("example.org", "bob")).unwrap()
        else {
            panic!("a login was written on the caller's thread while another connection held the lock");
        };
        other.execute_batch("COMMIT").unwrap();
        pending.wait().unwrap();
        let s = h.usage_statistics("example.org", UsageStatistics::default()).unwrap();
        assert_eq!(s.daily_active, Some(2));
    }
}
