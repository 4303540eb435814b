//! SQL for invites, registrations and the invite audit trail.
//!
//! Functions take the connection of an open transaction (`Store::write`) so that a rule in
//! `invites/` can read, decide and write in one atomic step without writing SQL itself.

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::invites::{AuditEntry, Invite, InviteKind};
use crate::{DomainName, Result, Timestamp};

const INVITE_COLUMNS: &str = "id, domain, kind, username, inviter, uses_total, uses_left, created_by, note, \
                              created_at, expires_at, revoked_at, revoked_by";

fn invite_from_row(row: &Row<'_>) -> rusqlite::Result<Invite> {
    let kind: String = row.get(2)?;
    Ok(Invite {
        id: row.get(0)?,
        domain: DomainName::from_stored(row.get(1)?),
        kind: kind.parse().map_err(|_| {
            rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, "unknown invite kind".into())
        })?,
        username: row.get(3)?,
        inviter: row.get(4)?,
        uses_total: row.get(5)?,
        uses_left: row.get(6)?,
        created_by: row.get(7)?,
        note: row.get(8)?,
        created_at: row.get(9)?,
        expires_at: row.get(10)?,
        revoked_at: row.get(11)?,
        revoked_by: row.get(12)?,
    })
}

/// The fields of a new invite row.
pub(crate) struct InviteRow<'a> {
    pub domain: &'a DomainName,
    pub token_hash: &'a [u8; 32],
    pub kind: InviteKind,
    pub username: Option<&'a str>,
    pub inviter: Option<&'a str>,
    pub uses: u32,
    pub created_by: &'a str,
    pub note: Option<&'a str>,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
}

pub(crate) fn insert_invite(c: &Connection, row: &InviteRow<'_>) -> Result<i64> {
    c.execute(
        "INSERT INTO invites (domain, token_hash, kind, username, inviter, uses_total, uses_left, created_by, note,
                              created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8, ?9, ?10)",
        params![
            row.domain.as_str(),
            &row.token_hash[..],
            row.kind.as_str(),
            row.username,
            row.inviter,
            row.uses,
            row.created_by,
            row.note,
            row.created_at,
            row.expires_at
        ],
    )?;
    Ok(c.last_insert_rowid())
}

pub(crate) fn invite_by_hash(c: &Connection, domain: &DomainName, hash: &[u8; 32]) -> Result<Option<Invite>> {
    Ok(c.query_row(
        &format!("SELECT {INVITE_COLUMNS} FROM invites WHERE token_hash = ?1 AND domain = ?2"),
        params![&hash[..], domain.as_str()],
        invite_from_row,
    )
    .optional()?)
}

pub(crate) fn invite_by_id(c: &Connection, domain: &DomainName, id: i64) -> Result<Option<Invite>> {
    Ok(c.query_row(
        &format!("SELECT {INVITE_COLUMNS} FROM invites WHERE id = ?1 AND domain = ?2"),
        params![id, domain.as_str()],
        invite_from_row,
    )
    .optional()?)
}

pub(crate) fn invites_of_domain(c: &Connection, domain: &DomainName) -> Result<Vec<Invite>> {
    let mut stmt = c.prepare(&format!("SELECT {INVITE_COLUMNS} FROM invites WHERE domain = ?1 ORDER BY id"))?;
    let rows = stmt.query_map([domain.as_str()], invite_from_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Takes one use of an invite if it still has one and is neither revoked nor expired. The
/// condition and the decrement are one statement, so of N racing claims at most `uses_left` win.
pub(crate) fn claim_use(c: &Connection, id: i64, now: Timestamp) -> Result<bool> {
    let n = c.execute(
        "UPDATE invites SET uses_left = uses_left - 1
         WHERE id = ?1 AND uses_left > 0 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?2)",
        params![id, now],
    )?;
    Ok(n == 1)
}

/// Gives a claimed use back (the registration it was claimed for failed).
pub(crate) fn return_use(c: &Connection, id: i64) -> Result<()> {
    c.execute("UPDATE invites SET uses_left = min(uses_left + 1, uses_total) WHERE id = ?1", [id])?;
    Ok(())
}

pub(crate) fn revoke(c: &Connection, id: i64, now: Timestamp, by: &str) -> Result<()> {
    c.execute(
        "UPDATE invites SET revoked_at = ?2, revoked_by = ?3 WHERE id = ?1 AND revoked_at IS NULL",
        params![id, now, by],
    )?;
    Ok(())
}

/// Usable invites that act for the account `jid` (`username` on `domain`): contact invites into
/// its roster, invites it created, and password resets for it, that existed at `now` and have an
/// id up to `last_id` (a removal made late, as of when it was asked, leaves a later account of the
/// same name its invites: `last_id`, the newest invite then, tells them apart also within one
/// second; see [`last_invite_id`]).
pub(crate) fn invites_acting_for(
    c: &Connection,
    domain: &str,
    jid: &str,
    username: &str,
    now: Timestamp,
    last_id: i64,
) -> Result<Vec<i64>> {
    let mut stmt = c.prepare(
        "SELECT id FROM invites
         WHERE domain = ?1 AND revoked_at IS NULL AND uses_left > 0 AND (expires_at IS NULL OR expires_at > ?4)
           AND created_at <= ?4 AND id <= ?5
           AND ((kind = 'roster' AND inviter = ?2) OR created_by = ?2 OR (kind = 'reset' AND username = ?3))",
    )?;
    let rows = stmt.query_map(params![domain, jid, username, now, last_id], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// The id of the newest invite: every invite created from now on has a higher one (ids are
/// AUTOINCREMENT since migration 0006, never given again).
pub(crate) fn last_invite_id(c: &Connection) -> Result<i64> {
    Ok(c.prepare_cached("SELECT coalesce(max(id), 0) FROM invites")?.query_row([], |r| r.get(0))?)
}

/// Whether an active invite holds `username` on `domain` for its invitee.
pub(crate) fn username_held_by_invite(
    c: &Connection,
    domain: &DomainName,
    username: &str,
    now: Timestamp,
) -> Result<bool> {
    Ok(c.query_row(
        "SELECT EXISTS (SELECT 1 FROM invites WHERE domain = ?1 AND username = ?2 AND kind != 'reset'
                AND uses_left > 0 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?3))",
        params![domain.as_str(), username, now],
        |r| r.get(0),
    )?)
}

/// At most `limit` invites with ids above `after` that no one can use any more: expired,
/// revoked or used up (and not held by a registration still in progress, which could give its
/// use back), in id order so that a purge walks the table once. The pending check uses
/// `registrations_by_invite` (migration 0006); without it each invite scanned every registration.
pub(crate) fn inactive_invite_ids(
    c: &Connection,
    now: Timestamp,
    after: i64,
    limit: usize,
) -> Result<Vec<(i64, String)>> {
    let mut stmt = c.prepare_cached(
        "SELECT id, domain FROM invites i
         WHERE id > ?2
           AND (revoked_at IS NOT NULL OR (expires_at IS NOT NULL AND expires_at <= ?1) OR uses_left = 0)
           AND NOT EXISTS (SELECT 1 FROM registrations r WHERE r.invite_id = i.id AND r.state = 'pending')
         ORDER BY id LIMIT ?3",
    )?;
    let rows = stmt
        .query_map(params![now, after, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

pub(crate) fn delete_invite(c: &Connection, id: i64) -> Result<()> {
    c.execute("DELETE FROM invites WHERE id = ?1", [id])?;
    Ok(())
}

pub(crate) fn insert_registration(
    c: &Connection,
    domain: &DomainName,
    username: &str,
    ip: Option<&str>,
    invite_id: Option<i64>,
    now: Timestamp,
) -> Result<i64> {
    c.execute(
        "INSERT INTO registrations (domain, username, ip, invite_id, by_invite, state, started_at)
         VALUES (?1, ?2, ?3, ?4, ?4 IS NOT NULL, 'pending', ?5)",
        params![domain.as_str(), username, ip, invite_id, now],
    )?;
    Ok(c.last_insert_rowid())
}

/// A registration still waiting for its outcome: (domain, username, invite id).
pub(crate) fn pending_registration(c: &Connection, id: i64) -> Result<Option<(String, String, Option<i64>)>> {
    Ok(c.query_row(
        "SELECT domain, username, invite_id FROM registrations WHERE id = ?1 AND state = 'pending'",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .optional()?)
}

pub(crate) fn finish_registration(c: &Connection, id: i64, created: bool, now: Timestamp) -> Result<()> {
    c.execute(
        "UPDATE registrations SET state = ?2, finished_at = ?3 WHERE id = ?1",
        params![id, if created { "created" } else { "failed" }, now],
    )?;
    Ok(())
}

/// Registrations started before `before` that never reported an outcome (the server died, or
/// reporting failed), oldest first, at most `limit`.
pub(crate) fn stale_registrations(
    c: &Connection,
    before: Timestamp,
    limit: usize,
) -> Result<Vec<crate::invites::StaleRegistration>> {
    let mut stmt = c.prepare_cached(
        "SELECT id, domain, username FROM registrations WHERE state = 'pending' AND started_at < ?1
         ORDER BY id LIMIT ?2",
    )?;
    let rows = stmt
        .query_map(params![before, limit as i64], |r| {
            Ok(crate::invites::StaleRegistration { id: r.get(0)?, domain: r.get(1)?, username: r.get(2)? })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Whether registration `id` is still pending and was started before `before`.
pub(crate) fn is_stale(c: &Connection, id: i64, before: Timestamp) -> Result<bool> {
    Ok(c.query_row(
        "SELECT EXISTS (SELECT 1 FROM registrations WHERE id = ?1 AND state = 'pending' AND started_at < ?2)",
        params![id, before],
        |r| r.get(0),
    )?)
}

pub(crate) fn count_stale_registrations(c: &Connection, before: Timestamp) -> Result<usize> {
    let n: i64 =
        c.query_row("SELECT count(*) FROM registrations WHERE state = 'pending' AND started_at < ?1", [before], |r| {
            r.get(0)
        })?;
    Ok(n as usize)
}

/// Start times of the registrations without an invite from `ip` on `domain` after `since`,
/// oldest first. Failed attempts do not count against anyone, and invited ones are outside the
/// limits of open registration both ways.
pub(crate) fn registrations_from_ip(
    c: &Connection,
    domain: &DomainName,
    ip: &str,
    since: Timestamp,
) -> Result<Vec<Timestamp>> {
    let mut stmt = c.prepare_cached(
        "SELECT started_at FROM registrations
         WHERE domain = ?1 AND ip = ?2 AND started_at > ?3 AND state != 'failed' AND by_invite = 0
         ORDER BY started_at",
    )?;
    let rows =
        stmt.query_map(params![domain.as_str(), ip, since], |r| r.get(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

pub(crate) fn audit(c: &Connection, e: &AuditEntry) -> Result<()> {
    c.execute(
        "INSERT INTO invite_audit (at, domain, invite_id, action, actor, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![e.at, e.domain, e.invite_id, e.action, e.actor, e.detail],
    )?;
    Ok(())
}

pub(crate) fn audit_of_domain(c: &Connection, domain: &DomainName, limit: u32) -> Result<Vec<AuditEntry>> {
    let mut stmt = c.prepare(
        "SELECT at, domain, invite_id, action, actor, detail FROM invite_audit WHERE domain = ?1
         ORDER BY id DESC LIMIT ?2",
    )?;
    let rows = stmt
        .query_map(params![domain.as_str(), limit], |r| {
            Ok(AuditEntry {
                at: r.get(0)?,
                domain: r.get(1)?,
                invite_id: r.get(2)?,
                action: r.get(3)?,
                actor: r.get(4)?,
                detail: r.get(5)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}
