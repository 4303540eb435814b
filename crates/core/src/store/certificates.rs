//! SQL of certificates: one row per domain holding its key and served certificate.

use rusqlite::{params, Connection, OptionalExtension};

use crate::certificates::keys::DomainKey;
use crate::certificates::{KeyKind, Source, StoredCertificate};
use crate::{Error, Result};

pub(crate) fn upsert(c: &Connection, s: &StoredCertificate) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO certificates (domain, key_kind, key_pem, source, cert_pem, chain_pem, not_before, not_after,
                                   sha256, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (domain) DO UPDATE SET key_kind = excluded.key_kind, key_pem = excluded.key_pem,
             source = excluded.source, cert_pem = excluded.cert_pem, chain_pem = excluded.chain_pem,
             not_before = excluded.not_before, not_after = excluded.not_after, sha256 = excluded.sha256,
             updated_at = excluded.updated_at, expiry_notified = NULL",
    )?
    .execute(params![
        s.domain,
        s.key.kind.as_str(),
        s.key.pem,
        s.source.as_str(),
        s.cert_pem,
        s.chain_pem,
        s.not_before,
        s.not_after,
        s.sha256_hex,
        s.updated_at
    ])?;
    Ok(())
}

const COLUMNS: &str =
    "domain, key_kind, key_pem, source, cert_pem, chain_pem, not_before, not_after, sha256, updated_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(StoredCertificate, String, String)> {
    let kind: String = r.get(1)?;
    let source: String = r.get(3)?;
    Ok((
        StoredCertificate {
            domain: r.get(0)?,
            key: DomainKey { kind: KeyKind::Ecdsa, pem: r.get(2)? },
            source: Source::SelfSigned,
            cert_pem: r.get(4)?,
            chain_pem: r.get(5)?,
            not_before: r.get(6)?,
            not_after: r.get(7)?,
            sha256_hex: r.get(8)?,
            updated_at: r.get(9)?,
        },
        kind,
        source,
    ))
}

fn finish((mut s, kind, source): (StoredCertificate, String, String)) -> Result<StoredCertificate> {
    s.key.kind = KeyKind::parse(&kind).map_err(|_| Error::Corrupt(format!("certificate key kind {kind:?}")))?;
    s.source = Source::parse(&source).ok_or_else(|| Error::Corrupt(format!("certificate source {source:?}")))?;
    Ok(s)
}

pub(crate) fn select(c: &Connection, domain: &str) -> Result<Option<StoredCertificate>> {
    let found = c
        .prepare_cached(&format!("SELECT {COLUMNS} FROM certificates WHERE domain = ?1"))?
        .query_row([domain], row)
        .optional()?;
    found.map(finish).transpose()
}

pub(crate) fn select_all(c: &Connection) -> Result<Vec<StoredCertificate>> {
    let mut stmt = c.prepare_cached(&format!("SELECT {COLUMNS} FROM certificates ORDER BY domain"))?;
    let rows = stmt.query_map([], row)?.collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter().map(finish).collect()
}

/// The expiry threshold already announced for each domain's current certificate (see 0015).
pub(crate) fn expiry_notified(c: &Connection) -> Result<std::collections::HashMap<String, i64>> {
    let mut stmt =
        c.prepare_cached("SELECT domain, expiry_notified FROM certificates WHERE expiry_notified IS NOT NULL")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Records that `days` was announced for `domain`'s certificate, unless the certificate changed
/// since it was read (its fingerprint is no longer `sha256`): a new one starts from nothing.
pub(crate) fn set_expiry_notified(c: &Connection, domain: &str, sha256: &str, days: i64) -> Result<()> {
    c.prepare_cached("UPDATE certificates SET expiry_notified = ?3 WHERE domain = ?1 AND sha256 = ?2")?
        .execute(params![domain, sha256, days])?;
    Ok(())
}
