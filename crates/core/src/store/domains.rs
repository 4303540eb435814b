//! SQL for hosted domains and the provider's settings.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::Store;
use crate::settings::{JsonSettings, ProviderSettings};
use crate::{Domain, DomainName, DomainSettings, Result, Timestamp};

fn domain_from_row(row: &Row<'_>) -> rusqlite::Result<(String, String, Timestamp, Timestamp)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

fn into_domain((name, settings, created_at, updated_at): (String, String, Timestamp, Timestamp)) -> Result<Domain> {
    let name = DomainName::from_stored(name);
    Ok(Domain {
        unicode_name: name.to_unicode(),
        name,
        settings: DomainSettings::from_json(&settings)?,
        created_at,
        updated_at,
    })
}

const COLUMNS: &str = "name, settings, created_at, updated_at";

/// The hosted domain `name`, inside the caller's transaction.
pub(crate) fn domain(c: &Connection, name: &DomainName) -> Result<Option<Domain>> {
    let row = c
        .prepare_cached(&format!("SELECT {COLUMNS} FROM domains WHERE name = ?1"))?
        .query_row([name.as_str()], domain_from_row)
        .optional()?;
    row.map(into_domain).transpose()
}

/// A domain's settings as stored (JSON text, with any fields a newer version wrote).
pub(crate) fn settings_text(c: &Connection, name: &DomainName) -> Result<Option<String>> {
    Ok(c.prepare_cached("SELECT settings FROM domains WHERE name = ?1")?
        .query_row([name.as_str()], |r| r.get(0))
        .optional()?)
}

/// Replaces a domain's settings text; `false` if there is no such domain.
pub(crate) fn write_settings(c: &Connection, name: &DomainName, json: &str, now: Timestamp) -> Result<bool> {
    let n = c.prepare_cached("UPDATE domains SET settings = ?2, updated_at = ?3 WHERE name = ?1")?.execute(params![
        name.as_str(),
        json,
        now
    ])?;
    Ok(n == 1)
}

/// Deletes a domain and (by foreign keys) everything that hangs off it; `false` if absent.
pub(crate) fn delete(c: &Connection, name: &DomainName) -> Result<bool> {
    Ok(c.prepare_cached("DELETE FROM domains WHERE name = ?1")?.execute([name.as_str()])? == 1)
}

/// Records that an operator removed `name` at `at` (the latest removal is kept).
pub(crate) fn record_removal(c: &Connection, name: &DomainName, at: Timestamp) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO domain_removals (name, removed_at) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET removed_at = max(removed_at, excluded.removed_at)",
    )?
    .execute(params![name.as_str(), at])?;
    Ok(())
}

/// When an operator last removed `name`, if ever.
pub(crate) fn removed_at(c: &Connection, name: &DomainName) -> Result<Option<Timestamp>> {
    Ok(c.prepare_cached("SELECT removed_at FROM domain_removals WHERE name = ?1")?
        .query_row([name.as_str()], |r| r.get(0))
        .optional()?)
}

/// Inserts a domain inside the caller's transaction; `false` if it is already there.
pub(crate) fn insert(c: &Connection, name: &DomainName, settings: &DomainSettings, now: Timestamp) -> Result<bool> {
    let n = c
        .prepare_cached(
            "INSERT INTO domains (name, settings, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT (name) DO NOTHING",
        )?
        .execute(params![name.as_str(), settings.to_json(), now])?;
    Ok(n == 1)
}

pub(crate) fn provider_settings_text(c: &Connection) -> Result<Option<String>> {
    // Cached: every slot decision reads it, and parsing the statement each time was most of
    // the read's cost.
    Ok(c.prepare_cached("SELECT settings FROM provider_settings WHERE id = 1")?
        .query_row([], |r| r.get(0))
        .optional()?)
}

pub(crate) fn write_provider_settings(c: &Connection, json: &str, now: Timestamp) -> Result<()> {
    c.execute(
        "INSERT INTO provider_settings (id, settings, updated_at) VALUES (1, ?1, ?2)
         ON CONFLICT (id) DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at",
        params![json, now],
    )?;
    Ok(())
}

impl Store {
    /// Inserts a domain; `false` if one of that name exists.
    pub(crate) fn insert_domain(&self, name: &DomainName, settings: &DomainSettings, now: Timestamp) -> Result<bool> {
        self.write(|tx| insert(tx, name, settings, now))
    }

    pub(crate) fn select_domain(&self, name: &DomainName) -> Result<Option<Domain>> {
        self.read(|c| domain(c, name))
    }

    pub(crate) fn select_domains(&self) -> Result<Vec<Domain>> {
        let rows = self.read(|c| {
            let mut stmt = c.prepare(&format!("SELECT {COLUMNS} FROM domains ORDER BY name"))?;
            let rows = stmt.query_map([], domain_from_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })?;
        rows.into_iter().map(into_domain).collect()
    }

    pub(crate) fn select_provider_settings(&self) -> Result<ProviderSettings> {
        let text = self.read(provider_settings_text)?;
        text.map_or_else(|| Ok(ProviderSettings::default()), |t| ProviderSettings::from_json(&t))
    }
}

/// Where the settings revisions stand: the counter migration 0027's triggers raise on every
/// change to a domain's settings. It never goes down, a domain removed included, so a server
/// that saw revision N is never handed a later change numbered N or below.
pub(crate) fn settings_revision(c: &Connection) -> Result<i64> {
    Ok(c.prepare_cached("SELECT coalesce(max(revision), 0) FROM settings_revision_counter")?
        .query_row([], |r| r.get(0))?)
}

/// The domains whose settings changed after revision `since` up to `upto`, in the order they
/// changed, each with whether its shared roster was switched (or the domain added) in that span.
pub(crate) fn settings_changed(c: &Connection, since: i64, upto: i64) -> Result<Vec<(String, bool)>> {
    Ok(c.prepare_cached(
        "SELECT name, shared_roster_revision > ?1 FROM domains \
         WHERE settings_revision > ?1 AND settings_revision <= ?2 ORDER BY settings_revision",
    )?
    .query_map([since, upto], |r| Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?)))?
    .collect::<rusqlite::Result<Vec<_>>>()?)
}
