//! Login throttling, per account and per address: a few failures are free, then each further one
//! makes the next attempt wait longer (15 s, 30 s, 1 min ... up to an hour). While an account or
//! an address waits, its logins are refused before any password is checked, so guessing costs the
//! guesser time and the server nothing. Counters are kept in the store: a restart does not reset
//! them, and every node of a cluster sharing the store counts the same failures.
//!
//! An address gets more free failures than an account (several people may share one address);
//! a success clears the account's count but not the address's, so an attacker cannot reset their
//! address by logging into an account of their own between guesses.

use rusqlite::{params, OptionalExtension};

use super::Failure;
use crate::{Hosting, Result, Timestamp};

/// Failures an account may have before its logins wait.
pub const ACCOUNT_FREE_FAILURES: i64 = 5;
/// Failures an address may have before its logins wait.
pub const ADDRESS_FREE_FAILURES: i64 = 20;
/// The first wait; each further failure doubles it.
pub const FIRST_DELAY: i64 = 15;
/// The longest wait.
pub const MAX_DELAY: i64 = 3600;
/// A count is forgotten this long after its last failure.
pub const FORGET_AFTER: i64 = 24 * 3600;

fn account_key(account: &str) -> String {
    format!("account:{}", account.to_lowercase())
}

fn address_key(address: &str) -> String {
    format!("address:{address}")
}

/// How long to wait after the `failures`th failure, given the free ones.
pub fn delay(failures: i64, free: i64) -> i64 {
    if failures < free {
        return 0;
    }
    let doublings = (failures - free).min(20) as u32;
    (FIRST_DELAY << doublings).min(MAX_DELAY)
}

/// Refuses (429, with Retry-After) a login while its account or its address must wait.
pub(crate) fn check(hosting: &Hosting, account: &str, address: &str) -> Result<(), Failure> {
    let now = hosting.now();
    let keys = [account_key(account), address_key(address)];
    let mut wait = 0;
    for key in &keys {
        let until: Option<Timestamp> = hosting.store().read(|c| {
            Ok(c.query_row("SELECT blocked_until FROM panel_login_failures WHERE key = ?1", [key], |r| r.get(0))
                .optional()?)
        })?;
        wait = wait.max(until.unwrap_or(0) - now);
    }
    if wait > 0 {
        let mut f = Failure::new(429, "throttled", format!("too many failed logins; try again in {} seconds", wait));
        f.retry_after = Some(wait);
        return Err(f);
    }
    Ok(())
}

/// Counts a wrong password against the account and the address.
pub(crate) fn failed(hosting: &Hosting, account: &str, address: &str) -> Result<()> {
    let now = hosting.now();
    hosting.store().write(|tx| {
        tx.execute("DELETE FROM panel_login_failures WHERE last_failure_at <= ?1", [now - FORGET_AFTER])?;
        for (key, free) in [(account_key(account), ACCOUNT_FREE_FAILURES), (address_key(address), ADDRESS_FREE_FAILURES)] {
            let failures: i64 = tx
                .query_row("SELECT failures FROM panel_login_failures WHERE key = ?1", [&key], |r| r.get(0))
                .optional()?
                .unwrap_or(0)
                + 1;
            let blocked_until = now + delay(failures, free);
            tx.execute(
                "INSERT INTO panel_login_failures (key, failures, last_failure_at, blocked_until) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (key) DO UPDATE SET failures = ?2, last_failure_at = ?3, blocked_until = ?4",
                params![key, failures, now, blocked_until],
            )?;
        }
        Ok(())
    })
}

/// A right password clears the account's count (not the address's: see the module's text). In
/// the transaction that begins the session ([`super::session::start`]), so a login is one
/// transaction, whole or not at all.
pub(crate) fn succeeded(tx: &rusqlite::Connection, account: &str) -> Result<()> {
    tx.execute("DELETE FROM panel_login_failures WHERE key = ?1", [account_key(account)])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_start_after_the_free_failures_and_grow_to_a_cap() {
        assert_eq!(delay(4, 5), 0);
        assert_eq!(delay(5, 5), 15);
        assert_eq!(delay(6, 5), 30);
        assert_eq!(delay(7, 5), 60);
        assert_eq!(delay(100, 5), MAX_DELAY);
    }

    #[test]
    fn the_sixth_attempt_after_five_failures_waits_and_success_clears_the_account() {
        let clock = crate::ManualClock::new(1_000_000);
        let h = Hosting::open_in_memory().unwrap().with_clock(clock.clone());
        for _ in 0..5 {
            check(&h, "alice@example.org", "192.0.2.1").unwrap();
            failed(&h, "alice@example.org", "192.0.2.1").unwrap();
        }
        let refused = check(&h, "Alice@example.org", "198.51.100.7").unwrap_err();
        assert_eq!((refused.status, refused.retry_after), (429, Some(15)));
        // Another account from the same address is not held up by alice's count.
        check(&h, "bob@example.org", "192.0.2.1").unwrap();
        clock.advance(15);
        check(&h, "alice@example.org", "192.0.2.1").unwrap();
        failed(&h, "alice@example.org", "192.0.2.1").unwrap();
        assert_eq!(check(&h, "alice@example.org", "192.0.2.1").unwrap_err().retry_after, Some(30));
        clock.advance(30);
        h.store().write(|tx| succeeded(tx, "alice@example.org")).unwrap();
        failed(&h, "alice@example.org", "192.0.2.1").unwrap();
        check(&h, "alice@example.org", "192.0.2.9").unwrap();
    }

    #[test]
    fn an_address_guessing_many_accounts_waits_too() {
        let h = Hosting::open_in_memory().unwrap().with_clock(crate::ManualClock::new(1_000_000));
        for i in 0..ADDRESS_FREE_FAILURES {
            failed(&h, &format!("user{i}@example.org"), "203.0.113.5").unwrap();
        }
        assert_eq!(check(&h, "fresh@example.org", "203.0.113.5").unwrap_err().status, 429);
        check(&h, "fresh@example.org", "203.0.113.6").unwrap();
    }

    #[test]
    fn counts_are_forgotten_a_day_after_the_last_failure() {
        let clock = crate::ManualClock::new(1_000_000);
        let h = Hosting::open_in_memory().unwrap().with_clock(clock.clone());
        for _ in 0..6 {
            failed(&h, "alice@example.org", "192.0.2.1").unwrap();
        }
        clock.advance(FORGET_AFTER);
        failed(&h, "alice@example.org", "192.0.2.1").unwrap();
        check(&h, "alice@example.org", "192.0.2.1").unwrap();
    }
}
