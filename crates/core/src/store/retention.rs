//! SQL of retention: users' own archive retention, and the sweeps (their resumable state and
//! their audit log are the same row).

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::retention::{Kind, SweepRecord, SweepState};
use crate::{Result, Timestamp};

pub(crate) fn set_user_archive(c: &Connection, domain: &str, user: &str, period: &str, now: Timestamp) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO retention_user_archive (domain, username, period, set_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (domain, username) DO UPDATE SET period = excluded.period, set_at = excluded.set_at",
    )?
    .execute(params![domain, user, period, now])?;
    Ok(())
}

pub(crate) fn clear_user_archive(c: &Connection, domain: &str, user: &str) -> Result<()> {
    c.prepare_cached("DELETE FROM retention_user_archive WHERE domain = ?1 AND username = ?2")?
        .execute([domain, user])?;
    Ok(())
}

pub(crate) fn user_archive(c: &Connection, domain: &str, user: &str) -> Result<Option<String>> {
    Ok(c.prepare_cached("SELECT period FROM retention_user_archive WHERE domain = ?1 AND username = ?2")?
        .query_row([domain, user], |r| r.get(0))
        .optional()?)
}

const COLUMNS: &str = "id, domain, kind, dry_run, cutoff, state, cursor, owner, lease_until, started_at, finished_at,
    parts, steps, deleted, bytes, failed, duration_us, longest_step_us, errors";

/// A sweep row, with what only the engine needs (cursor, owner, lease) beside the record.
pub(crate) struct SweepRow {
    pub record: SweepRecord,
    pub cursor: Option<String>,
    pub owner: Option<String>,
    pub lease_until: Timestamp,
}

fn row(r: &Row<'_>) -> rusqlite::Result<SweepRow> {
    let kind: String = r.get(2)?;
    let state: String = r.get(5)?;
    let errors: String = r.get(18)?;
    Ok(SweepRow {
        record: SweepRecord {
            id: r.get(0)?,
            domain: r.get(1)?,
            kind: Kind::parse(&kind).unwrap_or(Kind::Uploads),
            dry_run: r.get(3)?,
            cutoff: r.get(4)?,
            state: SweepState::parse(&state),
            started_at: r.get(9)?,
            finished_at: r.get(10)?,
            parts: r.get(11)?,
            steps: r.get(12)?,
            deleted: r.get(13)?,
            bytes: r.get(14)?,
            failed: r.get(15)?,
            duration_us: r.get(16)?,
            longest_step_us: r.get(17)?,
            errors: serde_json::from_str(&errors).unwrap_or_else(|_| vec![errors.clone()]),
        },
        cursor: r.get(6)?,
        owner: r.get(7)?,
        lease_until: r.get(8)?,
    })
}

pub(crate) fn running(c: &Connection, domain: &str, kind: Kind) -> Result<Option<SweepRow>> {
    Ok(c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM retention_sweeps WHERE domain = ?1 AND kind = ?2 AND state = 'running'"
    ))?
    .query_row([domain, kind.as_str()], row)
    .optional()?)
}

pub(crate) fn by_id(c: &Connection, id: i64) -> Result<SweepRow> {
    Ok(c.prepare_cached(&format!("SELECT {COLUMNS} FROM retention_sweeps WHERE id = ?1"))?.query_row([id], row)?)
}

/// The newest finished (not dry) sweep's start of a domain's kind.
pub(crate) fn last_finished_start(c: &Connection, domain: &str, kind: Kind) -> Result<Option<Timestamp>> {
    Ok(c.prepare_cached(
        "SELECT max(started_at) FROM retention_sweeps WHERE domain = ?1 AND kind = ?2 AND dry_run = 0
         AND state != 'running'",
    )?
    .query_row([domain, kind.as_str()], |r| r.get(0))?)
}

pub(crate) fn insert(c: &Connection, rec: &SweepRecord, owner: Option<&str>, lease_until: Timestamp) -> Result<i64> {
    c.prepare_cached(
        "INSERT INTO retention_sweeps (domain, kind, dry_run, cutoff, state, owner, lease_until, started_at,
             finished_at, deleted, bytes, failed)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        rec.domain,
        rec.kind.as_str(),
        rec.dry_run,
        rec.cutoff,
        rec.state.as_str(),
        owner,
        lease_until,
        rec.started_at,
        rec.finished_at,
        rec.deleted,
        rec.bytes,
        rec.failed
    ])?;
    Ok(c.last_insert_rowid())
}

/// Takes a running sweep over (this process runs its next steps): a new part when it was not
/// already ours.
pub(crate) fn take_over(c: &Connection, id: i64, owner: &str, lease_until: Timestamp, cutoff: Timestamp) -> Result<()> {
    c.prepare_cached(
        "UPDATE retention_sweeps SET parts = parts + (owner IS NULL OR owner != ?2), owner = ?2, lease_until = ?3,
             cutoff = min(cutoff, ?4)
         WHERE id = ?1",
    )?
    .execute(params![id, owner, lease_until, cutoff])?;
    Ok(())
}

/// Records one step: where the next starts, what it did, the (possibly lowered) cutoff.
pub(crate) fn record_step(
    c: &Connection,
    rec: &SweepRecord,
    cursor: Option<&str>,
    lease_until: Timestamp,
) -> Result<()> {
    c.prepare_cached(
        "UPDATE retention_sweeps SET cursor = ?2, lease_until = ?3, cutoff = ?4, steps = ?5, deleted = ?6,
             bytes = ?7, failed = ?8, duration_us = ?9, longest_step_us = ?10, errors = ?11
         WHERE id = ?1",
    )?
    .execute(params![
        rec.id,
        cursor,
        lease_until,
        rec.cutoff,
        rec.steps,
        rec.deleted,
        rec.bytes,
        rec.failed,
        rec.duration_us,
        rec.longest_step_us,
        serde_json::to_string(&rec.errors).expect("texts serialise")
    ])?;
    Ok(())
}

/// Ends a sweep (done or cancelled), or lets it go for another run (`state` running: owner
/// cleared so any process may resume it at once).
pub(crate) fn finish(c: &Connection, rec: &SweepRecord) -> Result<()> {
    c.prepare_cached(
        "UPDATE retention_sweeps SET state = ?2, finished_at = ?3, owner = NULL, lease_until = 0,
             duration_us = ?4, errors = ?5
         WHERE id = ?1",
    )?
    .execute(params![
        rec.id,
        rec.state.as_str(),
        rec.finished_at,
        rec.duration_us,
        serde_json::to_string(&rec.errors).expect("texts serialise")
    ])?;
    Ok(())
}

/// The audit log, newest first: of one domain, or of all.
pub(crate) fn log(c: &Connection, domain: Option<&str>, limit: u32) -> Result<Vec<SweepRecord>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM retention_sweeps WHERE ?1 IS NULL OR domain = ?1 ORDER BY id DESC LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![domain, limit], row)?;
    Ok(rows.map(|r| r.map(|r| r.record)).collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Expired uploads of a domain after `after` ((stored_at, file_id) order): (file_id, size,
/// stored_at). Only rows strictly before `cutoff`, whatever the cursor says.
pub(crate) fn expired_files(
    c: &Connection,
    domain: &str,
    cutoff: Timestamp,
    after: Option<(Timestamp, &str)>,
    limit: usize,
) -> Result<Vec<(String, i64, Timestamp)>> {
    let (at, id) = after.unwrap_or((i64::MIN, ""));
    let mut stmt = c.prepare_cached(
        "SELECT file_id, size, stored_at FROM upload_files
         WHERE domain = ?1 AND stored_at < ?2 AND (stored_at, file_id) > (?3, ?4)
         ORDER BY stored_at, file_id LIMIT ?5",
    )?;
    let rows =
        stmt.query_map(params![domain, cutoff, at, id, limit as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// How many uploads of a domain are older than `cutoff`, and their bytes.
pub(crate) fn count_expired_files(c: &Connection, domain: &str, cutoff: Timestamp) -> Result<(i64, i64)> {
    Ok(c.prepare_cached(
        "SELECT count(*), CAST(min(total(size), 9.2e18) AS INTEGER) FROM upload_files
         WHERE domain = ?1 AND stored_at < ?2",
    )?
    .query_row(params![domain, cutoff], |r| Ok((r.get(0)?, r.get(1)?)))?)
}

/// The stored time of a recorded file, if still recorded.
pub(crate) fn file_stored_at(c: &Connection, file_id: &str) -> Result<Option<Timestamp>> {
    Ok(c.prepare_cached("SELECT stored_at FROM upload_files WHERE file_id = ?1")?
        .query_row([file_id], |r| r.get(0))
        .optional()?)
}

/// Every user of a domain with their own archive retention: (username, period as written).
pub(crate) fn user_archives(c: &Connection, domain: &str) -> Result<Vec<(String, String)>> {
    let mut stmt =
        c.prepare_cached("SELECT username, period FROM retention_user_archive WHERE domain = ?1 ORDER BY username")?;
    let rows = stmt.query_map([domain], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Registers (or moves) where a server keeps one host's archive of a kind.
/// An older registration arriving late (a background write retried behind another process's
/// lock, made as of when the server asked) does not replace a newer one.
pub(crate) fn register_archive_store(c: &Connection, s: &crate::retention::ArchiveStore) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO retention_archive_stores (kind, server_host, domain, backend, location, store, registered_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (kind, server_host) DO UPDATE SET domain = excluded.domain, backend = excluded.backend,
             location = excluded.location, store = excluded.store, registered_at = excluded.registered_at
         WHERE registered_at <= excluded.registered_at",
    )?
    .execute(params![
        s.kind.as_str(),
        s.server_host,
        s.domain,
        s.backend,
        s.location,
        s.store,
        s.registered_at
    ])?;
    Ok(())
}

/// Every database file registered for `backend`, once each.
pub(crate) fn archive_store_files(c: &Connection, backend: &str) -> Result<Vec<String>> {
    let mut stmt = c.prepare_cached(
        "SELECT DISTINCT location FROM retention_archive_stores WHERE backend = ?1 AND location IS NOT NULL
         ORDER BY location",
    )?;
    let rows = stmt.query_map([backend], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Where a domain's archives of a kind are kept, by server host.
pub(crate) fn archive_stores(c: &Connection, domain: &str, kind: Kind) -> Result<Vec<crate::retention::ArchiveStore>> {
    let mut stmt = c.prepare_cached(
        "SELECT kind, server_host, domain, backend, location, store, registered_at FROM retention_archive_stores
         WHERE domain = ?1 AND kind = ?2 ORDER BY server_host",
    )?;
    let rows = stmt.query_map([domain, kind.as_str()], |r| {
        let kind: String = r.get(0)?;
        Ok(crate::retention::ArchiveStore {
            kind: Kind::parse(&kind).unwrap_or(Kind::Archive),
            server_host: r.get(1)?,
            domain: r.get(2)?,
            backend: r.get(3)?,
            location: r.get(4)?,
            store: r.get(5)?,
            registered_at: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}
