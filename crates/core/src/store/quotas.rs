//! SQL for the upload quota ledger. Functions take the connection of an open transaction so
//! that a decision reads and writes atomically.

use rusqlite::{params, Connection, OptionalExtension};

use crate::{Result, Timestamp};

/// A scope's running totals: (stored, reserved).
pub(crate) fn usage(c: &Connection, scope: &str, domain: &str, username: &str) -> Result<(i64, i64)> {
    Ok(c.prepare_cached(
        "SELECT stored_bytes, reserved_bytes FROM upload_usage WHERE scope = ?1 AND domain = ?2 AND username = ?3",
    )?
    .query_row(params![scope, domain, username], |r| Ok((r.get(0)?, r.get(1)?)))
    .optional()?
    .unwrap_or((0, 0)))
}

/// Adds to a scope's totals (negative to subtract), saturating at zero and at i64::MAX: an
/// overflowing sum would be stored as REAL, which the STRICT table refuses, and every decision
/// that touches the scope (the global one: all of them) would fail until it is undone. The
/// decisions keep totals far below the top; this is the store's own guarantee.
pub(crate) fn add_usage(
    c: &Connection,
    scope: &str,
    domain: &str,
    username: &str,
    stored: i64,
    reserved: i64,
) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO upload_usage (scope, domain, username, stored_bytes, reserved_bytes)
         VALUES (?1, ?2, ?3, max(?4, 0), max(?5, 0))
         ON CONFLICT (scope, domain, username) DO UPDATE SET
           stored_bytes = max(stored_bytes + min(?4, 9223372036854775807 - stored_bytes), 0),
           reserved_bytes = max(reserved_bytes + min(?5, 9223372036854775807 - reserved_bytes), 0)",
    )?
    .execute(params![scope, domain, username, stored, reserved])?;
    Ok(())
}

/// Buckets of one span uploaded by a scope (username '' for the domain) from bucket `since` on,
/// oldest first: (bucket, bytes).
pub(crate) fn volume_buckets(
    c: &Connection,
    domain: &str,
    username: &str,
    span: i64,
    since: i64,
) -> Result<Vec<(i64, i64)>> {
    let mut stmt = c.prepare_cached(
        "SELECT start, bytes FROM upload_volume WHERE domain = ?1 AND username = ?2 AND span = ?3 AND start >= ?4
         ORDER BY start",
    )?;
    let rows = stmt.query_map(params![domain, username, span, since], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// The sum of a scope's buckets of one span from bucket `since` on. `total()`, not `sum()`:
/// SQLite's `sum()` fails with "integer overflow" where this saturates (at 9.2e18 bytes; exact
/// up to 2^53, 9 PB, far above any window's volume).
pub(crate) fn volume_sum(c: &Connection, domain: &str, username: &str, span: i64, since: i64) -> Result<i64> {
    Ok(c.prepare_cached(
        "SELECT CAST(min(total(bytes), 9.2e18) AS INTEGER) FROM upload_volume
         WHERE domain = ?1 AND username = ?2 AND span = ?3 AND start >= ?4",
    )?
    .query_row(params![domain, username, span, since], |r| r.get(0))?)
}

/// Adds to a volume bucket, saturating at i64::MAX as `add_usage` does.
pub(crate) fn add_volume(
    c: &Connection,
    domain: &str,
    username: &str,
    span: i64,
    start: i64,
    bytes: i64,
) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO upload_volume (domain, username, span, start, bytes) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (domain, username, span, start) DO UPDATE SET
           bytes = bytes + min(?5, 9223372036854775807 - bytes)",
    )?
    .execute(params![domain, username, span, start, bytes])?;
    Ok(())
}

/// Deletes a scope's buckets of one span older than bucket `before`. A primary-key range, so it
/// costs one seek when there is nothing to delete; called on every commit, it keeps each active
/// scope at about one window of buckets.
pub(crate) fn prune_scope_volume(c: &Connection, domain: &str, username: &str, span: i64, before: i64) -> Result<()> {
    c.prepare_cached("DELETE FROM upload_volume WHERE domain = ?1 AND username = ?2 AND span = ?3 AND start < ?4")?
        .execute(params![domain, username, span, before])?;
    Ok(())
}

/// Deletes at most `limit` buckets of one span older than bucket `before`, whoever they belong
/// to (scopes that stopped uploading); returns how many. Uses the age index.
pub(crate) fn prune_volume(c: &Connection, span: i64, before: i64, limit: i64) -> Result<usize> {
    Ok(c.prepare_cached(
        "DELETE FROM upload_volume WHERE (domain, username, span, start) IN
           (SELECT domain, username, span, start FROM upload_volume WHERE span = ?1 AND start < ?2 LIMIT ?3)",
    )?
    .execute(params![span, before, limit])?)
}

/// A reservation: (domain, username, size, released).
pub(crate) type ReservationRow = (String, String, i64, bool);

/// A reservation to insert: who, how many bytes, until when, and the server's key for its slot.
pub(crate) struct NewReservation<'a> {
    pub domain: &'a str,
    pub username: &'a str,
    pub size: i64,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub slot_key: Option<&'a str>,
}

pub(crate) fn insert_reservation(c: &Connection, r: &NewReservation<'_>) -> Result<i64> {
    c.prepare_cached(
        "INSERT INTO upload_reservations (domain, username, size, created_at, expires_at, slot_key)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![r.domain, r.username, r.size, r.created_at, r.expires_at, r.slot_key])?;
    Ok(c.last_insert_rowid())
}

/// The reservation an upload of `size` bytes under `slot_key` completes: the oldest one still
/// counting, else the oldest released one (a slot that outlived its reservation).
pub(crate) fn reservation_by_key(c: &Connection, slot_key: &str, size: i64) -> Result<Option<i64>> {
    Ok(c.prepare_cached(
        "SELECT id FROM upload_reservations WHERE slot_key = ?1 AND size = ?2 ORDER BY released, id LIMIT 1",
    )?
    .query_row(params![slot_key, size], |r| r.get(0))
    .optional()?)
}

pub(crate) fn reservation(c: &Connection, id: i64) -> Result<Option<ReservationRow>> {
    Ok(c.prepare_cached("SELECT domain, username, size, released FROM upload_reservations WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, i64>(3)? == 1)))
        .optional()?)
}

pub(crate) fn delete_reservation(c: &Connection, id: i64) -> Result<()> {
    c.prepare_cached("DELETE FROM upload_reservations WHERE id = ?1")?.execute([id])?;
    Ok(())
}

pub(crate) fn mark_released(c: &Connection, id: i64) -> Result<()> {
    c.prepare_cached("UPDATE upload_reservations SET released = 1 WHERE id = ?1")?.execute([id])?;
    Ok(())
}

/// Ids of at most `limit` unreleased reservations that expired by `now`.
pub(crate) fn expired_reservations(c: &Connection, now: Timestamp, limit: i64) -> Result<Vec<i64>> {
    let mut stmt = c.prepare_cached(
        "SELECT id FROM upload_reservations WHERE released = 0 AND expires_at <= ?1 ORDER BY expires_at LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![now, limit], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Whether some released reservation expired before `before` (work for [`delete_released`]).
pub(crate) fn any_released_before(c: &Connection, before: Timestamp) -> Result<bool> {
    Ok(c.prepare_cached("SELECT EXISTS (SELECT 1 FROM upload_reservations WHERE released = 1 AND expires_at < ?1)")?
        .query_row([before], |r| r.get(0))?)
}

/// Forgets at most `limit` released reservations that expired before `before` (kept until then
/// so that a late upload still finds its slot); returns how many.
pub(crate) fn delete_released(c: &Connection, before: Timestamp, limit: i64) -> Result<usize> {
    Ok(c.prepare_cached(
        "DELETE FROM upload_reservations WHERE id IN
           (SELECT id FROM upload_reservations WHERE released = 1 AND expires_at < ?1 LIMIT ?2)",
    )?
    .execute(params![before, limit])?)
}

/// Records a stored file; `false` if the id is known already.
pub(crate) fn insert_file(
    c: &Connection,
    file_id: &str,
    domain: &str,
    username: &str,
    size: i64,
    now: Timestamp,
) -> Result<bool> {
    Ok(c.prepare_cached(
        "INSERT INTO upload_files (file_id, domain, username, size, stored_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (file_id) DO NOTHING",
    )?
    .execute(params![file_id, domain, username, size, now])?
        == 1)
}

/// Removes a file's record and returns (domain, username, size).
pub(crate) fn take_file(c: &Connection, file_id: &str) -> Result<Option<(String, String, i64)>> {
    let row = c
        .prepare_cached("SELECT domain, username, size FROM upload_files WHERE file_id = ?1")?
        .query_row([file_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    if row.is_some() {
        c.prepare_cached("DELETE FROM upload_files WHERE file_id = ?1")?.execute([file_id])?;
    }
    Ok(row)
}

/// The lower bound of a page in `[from, …)` after `after` (`""`: the first page), as SQL and
/// value. One bound only: given both `file_id >= from` and `file_id > after`, SQLite seeks to
/// the first of them and steps over every row up to `after`, so each page of a sweep re-read
/// the pages before it (100,000 files: 100 pages, the last one 44 ms instead of 0.1 ms).
fn page_start<'a>(column: &str, from: &'a str, after: &'a str) -> (String, &'a str) {
    if after.is_empty() || after < from {
        (format!("{column} >= ?1"), from)
    } else {
        (format!("{column} > ?1"), after)
    }
}

/// Up to `limit` file ids in `[from, to)`, after `after`, in order: one page of a sweep over
/// the files under one directory (ids are paths there), by primary-key range.
pub(crate) fn file_ids_between(c: &Connection, from: &str, to: &str, after: &str, limit: i64) -> Result<Vec<String>> {
    let (start, lower) = page_start("file_id", from, after);
    let mut stmt = c.prepare_cached(&format!(
        "SELECT file_id FROM upload_files WHERE {start} AND file_id < ?2 ORDER BY file_id LIMIT ?3"
    ))?;
    let rows = stmt.query_map(params![lower, to, limit], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub(crate) fn user_limits(c: &Connection, domain: &str, username: &str) -> Result<Option<String>> {
    Ok(c.prepare_cached("SELECT limits FROM upload_user_limits WHERE domain = ?1 AND username = ?2")?
        .query_row(params![domain, username], |r| r.get(0))
        .optional()?)
}

pub(crate) fn set_user_limits(
    c: &Connection,
    domain: &str,
    username: &str,
    limits: Option<&str>,
    now: i64,
) -> Result<()> {
    match limits {
        Some(json) => {
            let seq: i64 = c
                .prepare_cached("UPDATE upload_user_limits_counter SET last = last + 1 WHERE id = 1 RETURNING last")?
                .query_row([], |r| r.get(0))?;
            c.prepare_cached(
                "INSERT INTO upload_user_limits (domain, username, limits, set_at, set_seq) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (domain, username) DO UPDATE
                 SET limits = excluded.limits, set_at = excluded.set_at, set_seq = excluded.set_seq",
            )?
            .execute(params![domain, username, json, now, seq])?
        }
        None => c
            .prepare_cached("DELETE FROM upload_user_limits WHERE domain = ?1 AND username = ?2")?
            .execute(params![domain, username])?,
    };
    Ok(())
}

/// Drops the user's exceptions set at or before `at` and numbered at most `last_seq` (an account
/// removed then, when `last_seq` was the newest number: see [`last_user_limits_seq`]); returns
/// whether there were any. Exceptions set later belong to a new account of the same name.
pub(crate) fn drop_user_limits_set_by(
    c: &Connection,
    domain: &str,
    username: &str,
    at: i64,
    last_seq: i64,
) -> Result<bool> {
    Ok(c.prepare_cached(
        "DELETE FROM upload_user_limits WHERE domain = ?1 AND username = ?2 AND set_at <= ?3 AND set_seq <= ?4",
    )?
    .execute(params![domain, username, at, last_seq])?
        > 0)
}

/// The number the newest user exception was set with: every exception set from now on has a
/// higher one.
pub(crate) fn last_user_limits_seq(c: &Connection) -> Result<i64> {
    Ok(c.prepare_cached("SELECT last FROM upload_user_limits_counter WHERE id = 1")?.query_row([], |r| r.get(0))?)
}

/// Totals recomputed from the files and open reservations, per scope: (scope, domain, username,
/// stored, reserved). A full scan: for audits, never for decisions.
pub(crate) type ScopeTotals = (String, String, String, i64, i64);

pub(crate) fn recomputed_totals(c: &Connection) -> Result<Vec<ScopeTotals>> {
    let mut stmt = c.prepare(
        "WITH items (domain, username, stored, reserved) AS (
             SELECT domain, username, size, 0 FROM upload_files
             UNION ALL
             SELECT domain, username, 0, size FROM upload_reservations WHERE released = 0),
         scopes (scope, domain, username, stored, reserved) AS (
             -- A file nobody could be charged for (domain '') counts only globally.
             SELECT 'user', domain, username, stored, reserved FROM items WHERE domain != ''
             UNION ALL SELECT 'domain', domain, '', stored, reserved FROM items WHERE domain != ''
             UNION ALL SELECT 'global', '', '', stored, reserved FROM items),
         -- total(), clamped: sum() fails on an overflow (see volume_sum).
         actual AS (SELECT scope, domain, username,
                           CAST(min(total(stored), 9.2e18) AS INTEGER) AS stored,
                           CAST(min(total(reserved), 9.2e18) AS INTEGER) AS reserved
                    FROM scopes GROUP BY scope, domain, username)
         SELECT scope, domain, username, stored, reserved FROM actual
         UNION ALL
         SELECT scope, domain, username, 0, 0 FROM upload_usage u
         WHERE (u.stored_bytes, u.reserved_bytes) != (0, 0)
           AND NOT EXISTS (SELECT 1 FROM actual a
                           WHERE (a.scope, a.domain, a.username) = (u.scope, u.domain, u.username))",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// A slot being watched for its file (see migration 0008).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SlotRow {
    pub file_path: String,
    pub domain: String,
    pub username: String,
    pub reservation: Option<i64>,
    pub usable_until: Timestamp,
    pub arriving_bytes: Option<i64>,
}

fn slot_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SlotRow> {
    Ok(SlotRow {
        file_path: r.get(0)?,
        domain: r.get(1)?,
        username: r.get(2)?,
        reservation: r.get(3)?,
        usable_until: r.get(4)?,
        arriving_bytes: r.get(5)?,
    })
}

const SLOT_COLUMNS: &str = "file_path, domain, username, reservation, usable_until, arriving_bytes";

/// Records a slot to watch; `false` when its path is watched already (the first grant stays).
pub(crate) fn insert_slot(c: &Connection, s: &SlotRow, granted_at: Timestamp) -> Result<bool> {
    Ok(c.prepare_cached(
        "INSERT INTO upload_slots (file_path, domain, username, reservation, granted_at, usable_until)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (file_path) DO NOTHING",
    )?
    .execute(params![s.file_path, s.domain, s.username, s.reservation, granted_at, s.usable_until])?
        == 1)
}

pub(crate) fn slot(c: &Connection, file_path: &str) -> Result<Option<SlotRow>> {
    Ok(c.prepare_cached(&format!("SELECT {SLOT_COLUMNS} FROM upload_slots WHERE file_path = ?1"))?
        .query_row([file_path], slot_row)
        .optional()?)
}

/// Up to `limit` watched slots with paths in `[from, to)` after `after`, in path order.
pub(crate) fn slots_between(c: &Connection, from: &str, to: &str, after: &str, limit: i64) -> Result<Vec<SlotRow>> {
    let (start, lower) = page_start("file_path", from, after);
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {SLOT_COLUMNS} FROM upload_slots WHERE {start} AND file_path < ?2 ORDER BY file_path LIMIT ?3"
    ))?;
    let rows = stmt.query_map(params![lower, to, limit], slot_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub(crate) fn set_slot_arriving(c: &Connection, file_path: &str, bytes: Option<i64>) -> Result<()> {
    c.prepare_cached("UPDATE upload_slots SET arriving_bytes = ?2 WHERE file_path = ?1")?
        .execute(params![file_path, bytes])?;
    Ok(())
}

pub(crate) fn delete_slot(c: &Connection, file_path: &str) -> Result<()> {
    c.prepare_cached("DELETE FROM upload_slots WHERE file_path = ?1")?.execute([file_path])?;
    Ok(())
}

/// A reservation's expiry, and whether it is released: (expires_at, released).
pub(crate) fn reservation_expiry(c: &Connection, id: i64) -> Result<Option<(Timestamp, bool)>> {
    Ok(c.prepare_cached("SELECT expires_at, released FROM upload_reservations WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? == 1)))
        .optional()?)
}

/// Sets a reservation's expiry and counting state (a released one counting again: `released`
/// false).
pub(crate) fn set_reservation_expiry(c: &Connection, id: i64, expires_at: Timestamp, released: bool) -> Result<()> {
    c.prepare_cached("UPDATE upload_reservations SET expires_at = ?2, released = ?3 WHERE id = ?1")?
        .execute(params![id, expires_at, i64::from(released)])?;
    Ok(())
}

/// The owner of a recorded file: (domain, username, size); domain '' for a file counted only
/// globally.
pub(crate) fn file_owner(c: &Connection, file_id: &str) -> Result<Option<(String, String, i64)>> {
    Ok(c.prepare_cached("SELECT domain, username, size FROM upload_files WHERE file_id = ?1")?
        .query_row([file_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?)
}

pub(crate) fn set_file_owner(c: &Connection, file_id: &str, domain: &str, username: &str) -> Result<()> {
    c.prepare_cached("UPDATE upload_files SET domain = ?2, username = ?3 WHERE file_id = ?1")?
        .execute(params![file_id, domain, username])?;
    Ok(())
}

/// Whether the ledger records `file_id` (a point lookup; the sweep's test for files it does not
/// know).
pub(crate) fn file_known(c: &Connection, file_id: &str) -> Result<bool> {
    Ok(c.prepare_cached("SELECT 1 FROM upload_files WHERE file_id = ?1")?.exists([file_id])?)
}

/// Records an upload directory to watch (or its new partial suffix), and how partial uploads are named there.
pub(crate) fn register_root(c: &Connection, root: &str, partial_suffix: &str, now: Timestamp) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO upload_roots (root, partial_suffix, registered_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (root) DO UPDATE SET partial_suffix = excluded.partial_suffix
         WHERE partial_suffix != excluded.partial_suffix",
    )?
    .execute(params![root, partial_suffix, now])?;
    Ok(())
}

/// Every watched upload directory: (root, partial suffix).
pub(crate) fn roots(c: &Connection) -> Result<Vec<(String, String)>> {
    let mut stmt = c.prepare_cached("SELECT root, partial_suffix FROM upload_roots ORDER BY root")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

#[cfg(test)]
mod tests {
    use rusqlite::StatementStatus;

    use super::*;
    use crate::Hosting;

    /// Virtual-machine steps of the statement of one `file_ids_between` call.
    fn steps_of_page(c: &Connection, from: &str, to: &str, after: &str) -> (Vec<String>, i32) {
        let (start, _) = page_start("file_id", from, after);
        let sql = format!("SELECT file_id FROM upload_files WHERE {start} AND file_id < ?2 ORDER BY file_id LIMIT ?3");
        let before = c.prepare_cached(&sql).unwrap().get_status(StatementStatus::VmStep);
        let page = file_ids_between(c, from, to, after, 100).unwrap();
        (page, c.prepare_cached(&sql).unwrap().get_status(StatementStatus::VmStep) - before)
    }

    #[test]
    fn a_sweep_page_seeks_to_where_the_last_one_ended_instead_of_stepping_over_the_pages_before() {
        let h = Hosting::open_in_memory().unwrap();
        h.store()
            .write(|tx| {
                for i in 0..5000 {
                    insert_file(tx, &format!("/srv/up/f{i:05}"), "example.org", "u", 1, 0)?;
                }
                insert_file(tx, "/srv/other/x", "example.org", "u", 1, 0).map(|_| ())
            })
            .unwrap();
        h.store()
            .read(|c| {
                let (first, first_steps) = steps_of_page(c, "/srv/up/", "/srv/up0", "");
                assert_eq!((first.len(), first[0].as_str()), (100, "/srv/up/f00000"));
                let (last, last_steps) = steps_of_page(c, "/srv/up/", "/srv/up0", "/srv/up/f04899");
                assert_eq!(last.first().map(String::as_str), Some("/srv/up/f04900"));
                assert_eq!(last.last().map(String::as_str), Some("/srv/up/f04999"));
                // The 50th page costs what the first does (stepping over 4,900 rows took ~50x).
                assert!(last_steps <= first_steps * 2, "first page {first_steps} steps, last {last_steps}");
                assert!(steps_of_page(c, "/srv/up/", "/srv/up0", "/srv/up/f04999").0.is_empty());
                Ok(())
            })
            .unwrap();
    }
}
