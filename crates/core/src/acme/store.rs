//! SQL of the ACME tables (migration 0017).

use rusqlite::{params, Connection, OptionalExtension};

use super::AcmeRecord;
use crate::{Result, Timestamp};

/// The stored credentials (with the account's PRIVATE KEY) for a directory. Crate-private.
pub(crate) fn account(c: &Connection, directory_url: &str) -> Result<Option<String>> {
    Ok(c.prepare_cached("SELECT credentials FROM acme_accounts WHERE directory_url = ?1")?
        .query_row([directory_url], |r| r.get(0))
        .optional()?)
}

pub(crate) fn put_account(
    c: &Connection,
    directory_url: &str,
    account_url: &str,
    credentials: &str,
    now: Timestamp,
) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO acme_accounts (directory_url, account_url, credentials, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (directory_url) DO UPDATE SET account_url = excluded.account_url,
             credentials = excluded.credentials, created_at = excluded.created_at",
    )?
    .execute(params![directory_url, account_url, credentials, now])?;
    Ok(())
}

pub(crate) fn forget_account(c: &Connection, directory_url: &str) -> Result<()> {
    c.prepare_cached("DELETE FROM acme_accounts WHERE directory_url = ?1")?.execute([directory_url])?;
    Ok(())
}

const COLUMNS: &str =
    "domain, enabled_at, issued_sha256, issued_at, last_attempt_at, failures, next_attempt_at, last_error";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AcmeRecord> {
    Ok(AcmeRecord {
        domain: r.get(0)?,
        enabled_at: r.get(1)?,
        issued_sha256: r.get(2)?,
        issued_at: r.get(3)?,
        last_attempt_at: r.get(4)?,
        failures: r.get(5)?,
        next_attempt_at: r.get(6)?,
        last_error: r.get(7)?,
    })
}

pub(crate) fn record(c: &Connection, domain: &str) -> Result<Option<AcmeRecord>> {
    Ok(c.prepare_cached(&format!("SELECT {COLUMNS} FROM acme_domains WHERE domain = ?1"))?
        .query_row([domain], row)
        .optional()?)
}

pub(crate) fn put(c: &Connection, r: &AcmeRecord) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO acme_domains (domain, enabled_at, issued_sha256, issued_at, last_attempt_at, failures,
                                   next_attempt_at, last_error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (domain) DO UPDATE SET issued_sha256 = excluded.issued_sha256,
             issued_at = excluded.issued_at, last_attempt_at = excluded.last_attempt_at,
             failures = excluded.failures, next_attempt_at = excluded.next_attempt_at,
             last_error = excluded.last_error",
    )?
    .execute(params![
        r.domain,
        r.enabled_at,
        r.issued_sha256,
        r.issued_at,
        r.last_attempt_at,
        r.failures,
        r.next_attempt_at,
        r.last_error
    ])?;
    Ok(())
}

/// Domains whose served certificate is the one ACME issued, with `renew_before` or fewer
/// seconds left at `now`, and no backoff running: what a renewal pass takes, soonest first.
pub(crate) fn due(c: &Connection, now: Timestamp, renew_before: i64, limit: i64) -> Result<Vec<String>> {
    let mut stmt = c.prepare_cached(
        "SELECT a.domain FROM acme_domains a JOIN certificates c ON c.domain = a.domain
         WHERE a.issued_sha256 = c.sha256 AND c.not_after - ?2 <= ?1
           AND (a.next_attempt_at IS NULL OR a.next_attempt_at <= ?1)
         ORDER BY c.not_after, a.domain LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![now, renew_before, limit], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
}
