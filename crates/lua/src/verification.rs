//! Customer domains: claims and DNS checks. Checks run on the core's worker and come back as
//! pending results (see `pending.rs`), so Prosody's loop never waits for DNS.

use mlua::prelude::*;
use serde::Serialize;
use xmpp_hosting_core::verification::{Claim, Instructions};

use crate::convert::{outcome, serialized};
use crate::handle::Handle;
use crate::pending::LuaPending;

#[derive(Serialize)]
struct ClaimWithInstructions {
    claim: Claim,
    instructions: Instructions,
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
    m.add_method("dns_test", |lua, h, domain: String| outcome(lua, || h.0.dns_test(&domain).map(LuaPending::new)));
    m.add_method("recheck_due", |lua, h, limit: Option<u32>| {
        outcome(lua, || h.0.recheck_due(limit.unwrap_or(1000)).map(LuaPending::new))
    });
}
