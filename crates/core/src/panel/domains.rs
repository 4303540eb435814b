//! The domain pages: the caller's domains, claiming one, its status, the records to publish,
//! "Verify now" and the DNS tester (both as jobs on the core's worker).

use serde_json::{json, Value};

use super::access::Role;
use super::{Answer, Call, Failure};

/// The caller's domains: those they claimed (with the claim's state) and their own account's
/// domain; an admin sees every hosted domain.
pub(super) fn list(call: &Call<'_>) -> Answer {
    let session = call.session();
    let h = call.hosting();
    let mut out: Vec<Value> = Vec::new();
    if session.admin {
        for d in h.domains()? {
            out.push(json!({"domain": d.name, "role": "admin", "owner": d.settings.owner}));
        }
        return Ok(json!({ "domains": out }));
    }
    let account = session.account.to_lowercase();
    let claims = h.store().read(|c| crate::store::verification::claims_of_account(c, &account))?;
    for (domain, state) in claims {
        let owner = h.domain(&domain)?.and_then(|d| d.settings.owner).is_some_and(|o| o.to_lowercase() == account);
        out.push(json!({"domain": domain, "role": if owner { "owner" } else { "claimant" }, "state": state}));
    }
    let host = session.host();
    if !out.iter().any(|d| d["domain"] == host) && h.domain(host)?.is_some() {
        out.push(json!({"domain": host, "role": "member"}));
    }
    Ok(json!({ "domains": out }))
}

/// Claims a domain for the caller and answers the records to publish.
pub(super) fn claim(call: &Call<'_>) -> Answer {
    let domain = call.text("domain")?;
    let account = &call.session().account;
    let claim = call.hosting().claim_domain(domain, account)?;
    let records = call.hosting().verification_instructions(&claim.domain, account)?;
    Ok(json!({"claim": claim, "records": records}))
}

/// The claim the page works with: the caller's own, or for the owner and admins the owner's.
fn claim_account(call: &Call<'_>) -> Result<String, Failure> {
    let h = call.hosting();
    let account = call.session().account.to_lowercase();
    let claims = h.claims(Some(call.domain()))?;
    if let Some(c) = claims.iter().find(|c| c.account.to_lowercase() == account) {
        return Ok(c.account.clone());
    }
    if matches!(call.role(), Role::Admin | Role::Owner) {
        let owner = h.domain(call.domain())?.and_then(|d| d.settings.owner);
        if let Some(c) = claims.iter().find(|c| Some(&c.account) == owner.as_ref()) {
            return Ok(c.account.clone());
        }
    }
    Err(Failure::new(404, "not-found", format!("there is no claim on {} to work with", call.domain())))
}

/// What the caller may know of a domain: their role, whether it is hosted, the claim's state (and
/// for the owner and admins, who owns it).
pub(super) fn status(call: &Call<'_>) -> Answer {
    let h = call.hosting();
    let role = call.role();
    let hosted = h.domain(call.domain())?;
    let mut v = json!({"domain": call.domain(), "role": role, "hosted": hosted.is_some()});
    if role == Role::Member {
        return Ok(v);
    }
    if matches!(role, Role::Admin | Role::Owner) {
        v["owner"] = json!(hosted.as_ref().and_then(|d| d.settings.owner.clone()));
    }
    if let Ok(account) = claim_account(call) {
        let claim = h.claims(Some(call.domain()))?.into_iter().find(|c| c.account == account);
        v["claim"] = json!(claim);
    }
    Ok(v)
}

/// The records to create for the claim.
pub(super) fn records(call: &Call<'_>) -> Answer {
    let account = claim_account(call)?;
    Ok(json!(call.hosting().verification_instructions(call.domain(), &account)?))
}

/// "Verify now": the check runs on the worker; the answer is the job to poll.
pub(super) fn verify(call: &Call<'_>) -> Answer {
    let account = claim_account(call)?;
    let job = call.panel.jobs.start(
        call.hosting(),
        &call.session().account,
        call.domain(),
        "verify",
        || call.hosting().verify_domain(call.domain(), &account),
        call.panel.now(),
    )?;
    Ok(json!({ "job": job }))
}

/// The DNS tester, on the worker; the answer is the job to poll.
pub(super) fn dns_test(call: &Call<'_>) -> Answer {
    let job = call.panel.jobs.start(
        call.hosting(),
        &call.session().account,
        call.domain(),
        "dns-test",
        || call.hosting().dns_test(call.domain()),
        call.panel.now(),
    )?;
    Ok(json!({ "job": job }))
}

/// A job's state, for the account that started it.
pub(super) fn job(call: &Call<'_>) -> Answer {
    let id = call.params.first().map(String::as_str).unwrap_or("");
    call.panel.jobs.poll(call.hosting(), &call.session().account, id, call.panel.now())
}
