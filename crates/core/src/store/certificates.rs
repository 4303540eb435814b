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
             updated_at = excluded.updated_at",
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
