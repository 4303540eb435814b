//! SQL for domain claims and their history.

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::settings::JsonSettings;
use crate::verification::{Claim, ClaimEvent, ClaimState};
use crate::{DomainSettings, Result, Timestamp};

const COLUMNS: &str = "domain, account, token, state, created_at, verified_at, lost_since, last_checked_at, \
                       next_check_at, last_error, finding";

fn claim_from_row(r: &Row<'_>) -> rusqlite::Result<Claim> {
    let state: String = r.get(3)?;
    Ok(Claim {
        domain: r.get(0)?,
        account: r.get(1)?,
        token: r.get(2)?,
        state: ClaimState::from_stored(&state),
        created_at: r.get(4)?,
        verified_at: r.get(5)?,
        lost_since: r.get(6)?,
        last_checked_at: r.get(7)?,
        next_check_at: r.get(8)?,
        last_error: r.get(9)?,
        finding: r.get(10)?,
    })
}

pub(crate) fn claim(c: &Connection, domain: &str, account: &str) -> Result<Option<Claim>> {
    Ok(c.prepare_cached(&format!("SELECT {COLUMNS} FROM domain_claims WHERE domain = ?1 AND account = ?2"))?
        .query_row(params![domain, account], claim_from_row)
        .optional()?)
}

pub(crate) fn insert_claim(c: &Connection, claim: &Claim) -> Result<()> {
    c.prepare_cached(&format!(
        "INSERT INTO domain_claims ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
    ))?
    .execute(params![
        claim.domain,
        claim.account,
        claim.token,
        claim.state.as_str(),
        claim.created_at,
        claim.verified_at,
        claim.lost_since,
        claim.last_checked_at,
        claim.next_check_at,
        claim.last_error,
        claim.finding
    ])?;
    Ok(())
}

pub(crate) fn update_claim(c: &Connection, claim: &Claim) -> Result<()> {
    c.prepare_cached(
        "UPDATE domain_claims SET state = ?3, verified_at = ?4, lost_since = ?5, last_checked_at = ?6,
                next_check_at = ?7, last_error = ?8, finding = ?9
         WHERE domain = ?1 AND account = ?2",
    )?
    .execute(params![
        claim.domain,
        claim.account,
        claim.state.as_str(),
        claim.verified_at,
        claim.lost_since,
        claim.last_checked_at,
        claim.next_check_at,
        claim.last_error,
        claim.finding
    ])?;
    Ok(())
}

/// Ends every claim on `domain` (the operator stopped hosting it): each gets a `removed` event
/// with `reason`, then the claims go, so no later check, recheck or proof can bring the domain
/// back. A customer who wants it again claims it anew.
pub(crate) fn end_claims(c: &Connection, domain: &str, reason: &str, now: Timestamp) -> Result<usize> {
    let ended = claims(c, Some(domain))?;
    for claim in &ended {
        insert_event(
            c,
            &ClaimEvent {
                domain: domain.into(),
                account: claim.account.clone(),
                at: now,
                from: Some(claim.state),
                to: ClaimState::Removed,
                reason: reason.into(),
            },
        )?;
    }
    c.prepare_cached("DELETE FROM domain_claims WHERE domain = ?1")?.execute([domain])?;
    Ok(ended.len())
}

/// Claims of a domain (all domains when `None`), ordered. Two statements, not `?1 IS NULL OR`:
/// that form cannot use the primary key and made every verification scan all claims.
pub(crate) fn claims(c: &Connection, domain: Option<&str>) -> Result<Vec<Claim>> {
    let rows = match domain {
        Some(d) => c
            .prepare_cached(&format!("SELECT {COLUMNS} FROM domain_claims WHERE domain = ?1 ORDER BY account"))?
            .query_map([d], claim_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?,
        None => c
            .prepare_cached(&format!("SELECT {COLUMNS} FROM domain_claims ORDER BY domain, account"))?
            .query_map([], claim_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?,
    };
    Ok(rows)
}

/// The domains an account claimed and each claim's state, by domain. The account is compared
/// case-blind (`lower(account)`, the index of migration 0026): the panel asks this at every page.
pub(crate) const CLAIMS_OF_ACCOUNT: &str =
    "SELECT domain, state FROM domain_claims WHERE lower(account) = lower(?1) ORDER BY domain";

pub(crate) fn claims_of_account(c: &Connection, account: &str) -> Result<Vec<(String, String)>> {
    let rows = c
        .prepare_cached(CLAIMS_OF_ACCOUNT)?
        .query_map([account], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Verified or lost claims whose re-check is due, oldest first.
pub(crate) fn due_claims(c: &Connection, now: Timestamp, limit: i64) -> Result<Vec<(String, String)>> {
    let mut stmt = c.prepare_cached(
        "SELECT domain, account FROM domain_claims WHERE state IN ('verified', 'lost') AND next_check_at <= ?1
         ORDER BY next_check_at LIMIT ?2",
    )?;
    let rows =
        stmt.query_map(params![now, limit], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

pub(crate) fn insert_event(c: &Connection, e: &ClaimEvent) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO domain_claim_events (domain, account, at, from_state, to_state, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![e.domain, e.account, e.at, e.from.map(ClaimState::as_str), e.to.as_str(), e.reason],
    )?;
    Ok(())
}

pub(crate) fn events(c: &Connection, domain: &str) -> Result<Vec<ClaimEvent>> {
    let mut stmt = c.prepare_cached(
        "SELECT domain, account, at, from_state, to_state, reason FROM domain_claim_events WHERE domain = ?1 ORDER BY id",
    )?;
    let rows = stmt
        .query_map([domain], |r| {
            let from: Option<String> = r.get(3)?;
            let to: String = r.get(4)?;
            Ok(ClaimEvent {
                domain: r.get(0)?,
                account: r.get(1)?,
                at: r.get(2)?,
                from: from.as_deref().map(ClaimState::from_stored),
                to: ClaimState::from_stored(&to),
                reason: r.get(5)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Makes a proved domain hosted and owned by `account`, in the transaction that records the
/// proof: a crash between the two cannot leave a verified claim on an unhosted domain. Only the
/// owner changes: the settings are edited as JSON, so fields this version does not know (written
/// by a newer one) stay.
pub(crate) fn host_for(c: &Connection, domain: &str, account: &str, now: Timestamp) -> Result<()> {
    let current: Option<String> = c
        .prepare_cached("SELECT settings FROM domains WHERE name = ?1")?
        .query_row([domain], |r| r.get(0))
        .optional()?;
    let mut doc = match current {
        Some(text) => {
            // Read through the type first: unreadable settings are an error, not overwritten.
            DomainSettings::from_json(&text)?;
            serde_json::from_str::<serde_json::Value>(&text)
                .map_err(|e| crate::Error::Corrupt(format!("domain settings: {e}")))?
        }
        None => serde_json::to_value(DomainSettings::default()).expect("settings serialise"),
    };
    if let Some(fields) = doc.as_object_mut() {
        fields.insert("owner".into(), serde_json::Value::String(account.to_string()));
    }
    c.prepare_cached(
        "INSERT INTO domains (name, settings, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)
         ON CONFLICT (name) DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at",
    )?
    .execute(params![domain, doc.to_string(), now])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn an_accounts_claims_are_found_by_the_index_not_by_a_scan() {
        let store = Store::open_in_memory().unwrap();
        let plan: Vec<String> = store
            .read(|c| {
                let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {CLAIMS_OF_ACCOUNT}"))?;
                let rows = stmt.query_map(["Alice@Example.org"], |r| r.get::<_, String>(3))?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .unwrap();
        assert!(plan.iter().any(|step| step.contains("USING INDEX domain_claims_account")), "{plan:?}");
    }
}
