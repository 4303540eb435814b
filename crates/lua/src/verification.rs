//! Customer domains: claims and DNS checks. Checks run on the core's worker and come back as
//! pending results (see `pending.rs`), so Prosody's loop never waits for DNS.
//! A claim table carries, beside its state, `last_error` (why DNS gave no answer) and `finding`
//! (what a check found instead of the proof, in the admin's words), `nil` when there is none.

use mlua::prelude::*;
use xmpp_hosting_core::texts::{ClaimsSummary, Described, DnsSummary};
use xmpp_hosting_core::verification::{Claim, DnsReport};

use crate::convert::{outcome, serialized};
use crate::handle::Handle;
use crate::pending::{LuaNowOrLater, LuaPending};

/// A claim with its sentence, as every command prints it (the core words it).
fn described(claim: Claim) -> Described<Claim> {
    let text = claim.describe();
    Described::new(claim, text)
}

/// Bulk results reach Lua as the core's summaries (counts, at most 100 names, and the sentence),
/// so Prosody's loop never converts thousands of tables.
fn claims_summary(claims: Vec<Claim>) -> serde_json::Value {
    serde_json::to_value(ClaimsSummary::of(&claims)).unwrap_or_default()
}

fn reports_summary(reports: Vec<DnsReport>) -> serde_json::Value {
    serde_json::to_value(DnsSummary::of(&reports)).unwrap_or_default()
}

pub fn add_methods<M: LuaUserDataMethods<Handle>>(m: &mut M) {
    m.add_method("claim_domain", |lua, h, (domain, account): (String, String)| {
        serialized(lua, || {
            let claim = h.0.claim_domain(&domain, &account)?;
            let instructions = h.0.verification_instructions(&claim.domain, &account)?;
            let text = claim.describe_with(&instructions);
            Ok(serde_json::json!({ "claim": claim, "instructions": instructions, "text": text }))
        })
    });
    // The same for the admin shell on Prosody's loop: the answer at once, or a pending result
    // while another process holds the store's write lock (see pending.rs).
    m.add_method("claim_domain_or_later", |lua, h, (domain, account): (String, String)| {
        outcome(lua, || {
            h.0.now_or_later(move |w| {
                let claim = w.claim_domain(&domain, &account)?;
                let instructions = w.verification_instructions(&claim.domain, &account)?;
                let text = claim.describe_with(&instructions);
                Ok(serde_json::json!({ "claim": claim, "instructions": instructions, "text": text }))
            })
            .map(LuaNowOrLater)
        })
    });
    m.add_method("claims", |lua, h, domain: Option<String>| {
        serialized(lua, || Ok(h.0.claims(domain.as_deref())?.into_iter().map(described).collect::<Vec<_>>()))
    });
    m.add_method("verify_domain", |lua, h, (domain, account): (String, String)| {
        outcome(lua, || {
            h.0.verify_domain(&domain, &account)
                .map(|p| LuaPending::viewed(p, |c| serde_json::to_value(described(c)).unwrap_or_default()))
        })
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
        outcome(lua, || {
            h.0.recheck_due(limit.unwrap_or(xmpp_hosting_core::housekeeping::RECHECK_BATCH)).map(LuaPending::new)
        })
    });
}
