//! The sentences admins read about claims, bulk checks and the upload audit, written once.
//!
//! Prosody's commands, ejabberd's commands and the CLI used to word these each on their own (and
//! had drifted: ejabberd's claim said less than the others'). Bindings now hand the texts over
//! with the values ([`Described`]), and the server modules print them as they are.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::quotas::LedgerDrift;
use crate::verification::{Claim, DnsReport, Instructions};

/// A value and its sentence, serialised side by side: `{...value's fields, "text": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Described<T> {
    #[serde(flatten)]
    pub value: T,
    pub text: String,
}

impl<T> Described<T> {
    pub fn new(value: T, text: String) -> Self {
        Described { value, text }
    }
}

impl Claim {
    /// One line: `her-name.org for alice: pending (DNS: Timeout): no TXT record at …`, with what
    /// DNS failed and what the check found instead of the proof, when there is one.
    pub fn describe(&self) -> String {
        let mut text = format!("{} for {}: {}", self.domain, self.account, self.state.as_str());
        if let Some(e) = &self.last_error {
            text.push_str(&format!(" (DNS: {e})"));
        }
        if let Some(found) = &self.finding {
            text.push_str(&format!(": {found}"));
        }
        text
    }

    /// A new claim and what the customer must publish, as the claim commands print it.
    pub fn describe_with(&self, how: &Instructions) -> String {
        let mut lines = vec![
            format!(
                "{} claimed for {} ({}). Create one of these records, then run `domain verify`:",
                self.domain,
                self.account,
                self.state.as_str()
            ),
            format!("  {}  TXT    \"{}\"", how.name, how.txt),
        ];
        if let Some(target) = &how.cname {
            lines.push(format!("  {}  CNAME  {target}.", how.name));
        }
        if let Some(acme) = &how.acme_cname {
            lines.push("For a trusted certificate (ACME), also create once:".into());
            lines.push(format!("  {}  CNAME  {}.", acme.name, acme.target));
        }
        lines.join("\n")
    }
}

/// What a check of many claims came to: how many, in which states, and the names not verified
/// (at most [`SUMMARY_NAMES`]), so a server's loop never converts thousands of results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClaimsSummary {
    pub checked: usize,
    pub states: BTreeMap<&'static str, usize>,
    pub not_verified: Vec<String>,
    pub text: String,
}

/// What the DNS tester found for many domains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsSummary {
    pub tested: usize,
    pub all_ok: usize,
    pub with_problems: Vec<String>,
    pub text: String,
}

/// The most names a summary lists.
pub const SUMMARY_NAMES: usize = 100;

impl ClaimsSummary {
    pub fn of(claims: &[Claim]) -> Self {
        let mut states = BTreeMap::new();
        for c in claims {
            *states.entry(c.state.as_str()).or_default() += 1;
        }
        let not_verified: Vec<String> = claims
            .iter()
            .filter(|c| c.state.as_str() != "verified")
            .take(SUMMARY_NAMES)
            .map(|c| c.domain.clone())
            .collect();
        let counts: Vec<String> = states.iter().map(|(state, n)| format!("{n} {state}")).collect();
        let mut text = format!("{} claim(s) checked", claims.len());
        if !counts.is_empty() {
            text.push_str(&format!(": {}", counts.join(", ")));
        }
        if !not_verified.is_empty() {
            text.push_str(&format!("\nNot verified: {}", not_verified.join(" ")));
        }
        ClaimsSummary { checked: claims.len(), states, not_verified, text }
    }
}

impl DnsSummary {
    pub fn of(reports: &[DnsReport]) -> Self {
        let all_ok = reports.iter().filter(|r| r.all_ok()).count();
        let with_problems: Vec<String> =
            reports.iter().filter(|r| !r.all_ok()).take(SUMMARY_NAMES).map(|r| r.domain.clone()).collect();
        let mut text = format!("{} domain(s) tested: {all_ok} with every record right", reports.len());
        if !with_problems.is_empty() {
            text.push_str(&format!("\nWith problems (see `dns check NAME`): {}", with_problems.join(" ")));
        }
        DnsSummary { tested: reports.len(), all_ok, with_problems, text }
    }
}

impl LedgerDrift {
    /// Whose totals these are: `alice@example.org`, `example.org`, or `(all domains)`.
    pub fn scope_name(&self) -> String {
        match self.scope.as_str() {
            "user" => format!("{}@{}", self.username, self.domain),
            "domain" => self.domain.clone(),
            _ => "(all domains)".into(),
        }
    }

    /// One line: `alice@example.org: stored 10 -> 12, reserved 0 -> 0`.
    pub fn describe(&self) -> String {
        format!(
            "{}: stored {} -> {}, reserved {} -> {}",
            self.scope_name(),
            self.stored,
            self.counted_stored,
            self.reserved,
            self.counted_reserved
        )
    }
}

/// What an audit that found no drift says.
pub const AUDIT_MATCHES: &str = "The running totals match the files and slots";

/// The line after an audit's drifts: whether they were repaired.
pub fn audit_outcome(repaired: bool) -> &'static str {
    if repaired {
        "Repaired"
    } else {
        "Not repaired (use --repair)"
    }
}

/// The audit's whole answer, as the servers' commands print it.
pub fn describe_audit(drifts: &[LedgerDrift], repaired: bool) -> String {
    if drifts.is_empty() {
        return AUDIT_MATCHES.into();
    }
    let mut lines: Vec<String> = drifts.iter().map(LedgerDrift::describe).collect();
    lines.push(audit_outcome(repaired).into());
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verification::ClaimState;
    use crate::Hosting;

    fn claim(domain: &str, state: ClaimState) -> Claim {
        let h = Hosting::open_in_memory().unwrap();
        Claim { state, ..h.claim_domain(domain, "alice").unwrap() }
    }

    #[test]
    fn a_claim_says_its_state_what_dns_failed_and_what_was_found() {
        let mut c = claim("her-name.org", ClaimState::Pending);
        assert_eq!(c.describe(), "her-name.org for alice: pending");
        c.last_error = Some("Timeout".into());
        c.finding = Some("no TXT record at xmpp-hosting-verification.her-name.org".into());
        assert_eq!(
            c.describe(),
            "her-name.org for alice: pending (DNS: Timeout): no TXT record at xmpp-hosting-verification.her-name.org"
        );
        let how = Instructions {
            name: "x.her-name.org".into(),
            txt: "verify=T".into(),
            cname: Some("T.v.p.example".into()),
            acme_cname: None,
        };
        assert_eq!(
            c.describe_with(&how),
            "her-name.org claimed for alice (pending). Create one of these records, then run `domain verify`:\n  \
             x.her-name.org  TXT    \"verify=T\"\n  x.her-name.org  CNAME  T.v.p.example."
        );
    }

    #[test]
    fn summaries_count_states_and_name_what_needs_a_look() {
        let claims = [
            claim("a.example", ClaimState::Verified),
            claim("b.example", ClaimState::Lost),
            claim("c.example", ClaimState::Verified),
        ];
        let s = ClaimsSummary::of(&claims);
        assert_eq!((s.checked, s.states["verified"], s.not_verified.clone()), (3, 2, vec!["b.example".to_string()]));
        assert_eq!(s.text, "3 claim(s) checked: 1 lost, 2 verified\nNot verified: b.example");
        let many: Vec<Claim> = (0..150).map(|i| claim(&format!("d{i}.example"), ClaimState::Pending)).collect();
        assert_eq!(ClaimsSummary::of(&many).not_verified.len(), SUMMARY_NAMES);
        assert_eq!(DnsSummary::of(&[]).text, "0 domain(s) tested: 0 with every record right");
        assert_eq!(ClaimsSummary::of(&[]).text, "0 claim(s) checked");
    }

    #[test]
    fn audit_lines_name_the_scope() {
        let d = |scope: &str| LedgerDrift {
            scope: scope.into(),
            domain: "example.org".into(),
            username: "alice".into(),
            stored: 10,
            reserved: 0,
            counted_stored: 12,
            counted_reserved: 1,
        };
        assert_eq!(d("user").describe(), "alice@example.org: stored 10 -> 12, reserved 0 -> 1");
        assert_eq!(d("domain").scope_name(), "example.org");
        assert_eq!(d("global").scope_name(), "(all domains)");
        assert_eq!(
            describe_audit(&[d("domain")], false),
            "example.org: stored 10 -> 12, reserved 0 -> 1\nNot repaired (use --repair)"
        );
        assert_eq!(describe_audit(&[], true), "The running totals match the files and slots");
    }
}
