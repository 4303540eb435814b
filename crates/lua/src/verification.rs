//! Customer domains: claims and DNS checks. Checks run on the core's worker and come back as
//! pending results (see `pending.rs`), so Prosody's loop never waits for DNS.

use mlua::prelude::*;
use serde::Serialize;
use xmpp_hosting_core::verification::{Claim, DnsReport, Instructions};

use crate::convert::{outcome, serialized};
use crate::handle::Handle;
use crate::pending::LuaPending;

#[derive(Serialize)]
struct ClaimWithInstructions {
    claim: Claim,
    instructions: Instructions,
}

/// Bulk results reach Lua as summaries: `{checked = N, states = {verified = n, ...}, not_verified
/// = {domain, ...}}` (at most 100 names), so Prosody's loop never converts thousands of tables.
fn claims_summary(claims: Vec<Claim>) -> serde_json::Value {
    let mut states = std::collections::BTreeMap::<&str, usize>::new();
    for c in &claims {
        *states.entry(c.state.as_str()).or_default() += 1;
    }
    let not_verified: Vec<&str> =
        claims.iter().filter(|c| c.state.as_str() != "verified").take(100).map(|c| c.domain.as_str()).collect();
    serde_json::json!({ "checked": claims.len(), "states": states, "not_verified": not_verified })
}

/// `{tested = N, all_ok = M, with_problems = {domain, ...}}` (at most 100 names).
fn reports_summary(reports: Vec<DnsReport>) -> serde_json::Value {
    let ok = reports.iter().filter(|r| r.all_ok()).count();
    let problems: Vec<&str> = reports.iter().filter(|r| !r.all_ok()).take(100).map(|r| r.domain.as_str()).collect();
    serde_json::json!({ "tested": reports.len(), "all_ok": ok, "with_problems": problems })
}

pub fn add_methods<M: LuaUserDataMethods<Handle>>(m: &mut M) {
    m.add_method("claim_domain", |lua, h, (domain, account): (String, String)| {
        serialized(lua, || {
            let claim = h.0.claim_domain(&domain, &account)?;
            let instructions = h.0.verification_instructions(&claim.domain, &account)?;
            Ok(ClaimWithInstructions { claim, instructions })
        })
    });
    m.add_method("claims", |lua, h, domain: Option<String>| serialized(lua, || h.0.claims(domain.as_deref())));
    m.add_method("verify_domain", |lua, h, (domain, account): (String, String)| {
        outcome(lua, || h.0.verify_domain(&domain, &account).map(LuaPending::new))
    });
    // Many at once, with the provider's bounded concurrency: `{ {domain, account}, ... }`.
    m.add_method("verify_domains", |lua, h, pairs: Vec<Vec<String>>| {
        outcome(lua, || {
            let pairs = pairs
                .into_iter()
                .map(|p| match <[String; 2]>::try_from(p) {
                    Ok([domain, account]) => Ok((domain, account)),
                    Err(_) => Err(xmpp_hosting_core::Error::InvalidArgument("each claim is {domain, account}".into())),
                })
                .collect::<Result<Vec<_>, _>>()?;
            h.0.verify_domains(&pairs).map(|p| LuaPending::viewed(p, claims_summary))
        })
    });
    // Every claim at once, without handing Lua the list (10,000 tables would stall the loop).
    m.add_method("verify_all_claims", |lua, h, ()| {
        outcome(lua, || {
            let pairs: Vec<(String, String)> = h.0.claims(None)?.into_iter().map(|c| (c.domain, c.account)).collect();
            h.0.verify_domains(&pairs).map(|p| LuaPending::viewed(p, claims_summary))
        })
    });
    m.add_method("dns_test_all_claims", |lua, h, ()| {
        outcome(lua, || {
            let mut domains: Vec<String> = h.0.claims(None)?.into_iter().map(|c| c.domain).collect();
            domains.dedup();
            h.0.dns_test_many(&domains).map(|p| LuaPending::viewed(p, reports_summary))
        })
    });
    m.add_method("dns_test_many", |lua, h, domains: Vec<String>| {
        outcome(lua, || h.0.dns_test_many(&domains).map(|p| LuaPending::viewed(p, reports_summary)))
    });
    m.add_method("dns_test", |lua, h, domain: String| outcome(lua, || h.0.dns_test(&domain).map(LuaPending::new)));
    m.add_method("recheck_due", |lua, h, limit: Option<u32>| {
        outcome(lua, || h.0.recheck_due(limit.unwrap_or(1000)).map(LuaPending::new))
    });
}
