//! SQL for hosted domains.

use rusqlite::{params, OptionalExtension, Row};

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

impl Store {
    /// Inserts a domain; `false` if one of that name exists.
    pub(crate) fn insert_domain(&self, name: &DomainName, settings: &DomainSettings, now: Timestamp) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute(
                "INSERT INTO domains (name, settings, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)
                 ON CONFLICT (name) DO NOTHING",
                params![name.as_str(), settings.to_json(), now],
            )?;
            Ok(n == 1)
        })
    }

    pub(crate) fn select_domain(&self, name: &DomainName) -> Result<Option<Domain>> {
        let row = self.read(|c| {
            Ok(c.query_row(&format!("SELECT {COLUMNS} FROM domains WHERE name = ?1"), [name.as_str()], domain_from_row)
                .optional()?)
        })?;
        row.map(into_domain).transpose()
    }

    pub(crate) fn select_domains(&self) -> Result<Vec<Domain>> {
        let rows = self.read(|c| {
            let mut stmt = c.prepare(&format!("SELECT {COLUMNS} FROM domains ORDER BY name"))?;
            let rows = stmt.query_map([], domain_from_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })?;
        rows.into_iter().map(into_domain).collect()
    }

    /// Replaces a domain's settings; `false` if there is no such domain.
    pub(crate) fn update_domain_settings(
        &self,
        name: &DomainName,
        settings: &DomainSettings,
        now: Timestamp,
    ) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE domains SET settings = ?2, updated_at = ?3 WHERE name = ?1",
                params![name.as_str(), settings.to_json(), now],
            )?;
            Ok(n == 1)
        })
    }

    /// Deletes a domain and (by foreign keys) everything that hangs off it; `false` if absent.
    pub(crate) fn delete_domain(&self, name: &DomainName) -> Result<bool> {
        self.write(|tx| Ok(tx.execute("DELETE FROM domains WHERE name = ?1", [name.as_str()])? == 1))
    }
}

impl Store {
    pub(crate) fn select_provider_settings(&self) -> Result<ProviderSettings> {
        let text: Option<String> = self.read(|c| {
            Ok(c.query_row("SELECT settings FROM provider_settings WHERE id = 1", [], |r| r.get(0)).optional()?)
        })?;
        text.map_or_else(|| Ok(ProviderSettings::default()), |t| ProviderSettings::from_json(&t))
    }

    pub(crate) fn upsert_provider_settings(&self, settings: &ProviderSettings, now: Timestamp) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO provider_settings (id, settings, updated_at) VALUES (1, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at",
                params![settings.to_json(), now],
            )?;
            Ok(())
        })
    }
}
