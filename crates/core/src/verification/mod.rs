//! Proving that a customer owns a domain before hosting it, and keeping the proof checked.
//!
//! A customer claims a domain for an account and publishes the challenge: a TXT record
//! `verify=<token>` at `xmpp-hosting-verification.<domain>`, or a CNAME there to
//! `<token>.v.<provider zone>`. A check finds it (pending → verified: the domain becomes hosted
//! for that account), loses it (verified → lost, hosting continues through the grace period),
//! or gives up (lost → suspended). Every change is recorded with its reason.
//!
//! Who owns a domain when several accounts claim it: the one whose proof was found, and it stays
//! the owner while its proof is published. Another account's proof takes the domain over only
//! once the current owner's proof is gone from DNS (the newer proof wins only then), which
//! suspends the previous owner's claim. So an account that held the domain before cannot take it
//! back with a record the new owner forgot to remove, and moving a domain to another account
//! means removing the old account's record. A TXT proof counts only where it is published, at
//! `<label>.<domain>` itself: a CNAME there is a proof only when it names the claim's own target
//! in the provider's zone, and TXT records found by following it elsewhere prove nothing (a
//! dangling CNAME into a zone anyone can write would otherwise hand the domain to anyone).
//! The operator's `domain remove` ends a domain's claims, and an operator override is recorded
//! in the domain's history like any check.
//!
//! Checks run on the core's worker; callers get a [`Pending`] and are never blocked by DNS.

mod dns_test;
mod proof;
mod state;

use serde::Serialize;

pub use dns_test::{DnsReport, DnsRow, RowStatus};
pub use proof::Instructions;
use proof::Seen;
pub use state::ClaimState;

use crate::dns::{DnsClient, DnsSettings};
use crate::store::verification as sql;
use crate::{DomainName, Error, Hosting, Pending, Result, Timestamp};
use state::Evidence;

/// One account's claim on one domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Claim {
    pub domain: String,
    pub account: String,
    pub token: String,
    pub state: ClaimState,
    pub created_at: Timestamp,
    pub verified_at: Option<Timestamp>,
    pub lost_since: Option<Timestamp>,
    pub last_checked_at: Option<Timestamp>,
    pub next_check_at: Option<Timestamp>,
    /// Why the last check could not conclude (a DNS timeout, say).
    pub last_error: Option<String>,
    /// What the last check found instead of the proof, in the admin's words: `found TXT
    /// "verify=…" at …, expected TXT "verify=…"`, `no TXT record at …`, or that the current
    /// owner's proof is still published. `None` when the proof was found or DNS did not answer.
    pub finding: Option<String>,
}

/// A recorded state change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClaimEvent {
    pub domain: String,
    pub account: String,
    pub at: Timestamp,
    pub from: Option<ClaimState>,
    pub to: ClaimState,
    pub reason: String,
}

/// The longest account identifier we keep.
pub const MAX_ACCOUNT_LEN: usize = 256;

/// A name a customer may claim: a valid domain that is not itself a public suffix.
pub fn claimable(domain: &str) -> Result<DomainName> {
    let name = DomainName::parse(domain)?;
    if psl::suffix_str(name.as_str()) == Some(name.as_str()) {
        return Err(Error::PublicSuffix(name.to_string()));
    }
    Ok(name)
}

fn check_account(account: &str) -> Result<&str> {
    let a = account.trim();
    if a.is_empty() || a.len() > MAX_ACCOUNT_LEN || a.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(format!("an account is 1 to {MAX_ACCOUNT_LEN} printable characters")));
    }
    Ok(a)
}

impl Hosting {
    /// Starts (or returns the existing) claim of `account` on `domain`, with its challenge.
    pub fn claim_domain(&self, domain: &str, account: &str) -> Result<Claim> {
        let name = claimable(domain)?;
        let account = check_account(account)?;
        let now = self.now();
        let token = proof::new_token()?;
        self.store().write(|tx| {
            if let Some(existing) = sql::claim(tx, name.as_str(), account)? {
                return Ok(existing);
            }
            let claim = Claim {
                domain: name.to_string(),
                account: account.to_string(),
                token,
                state: ClaimState::Pending,
                created_at: now,
                verified_at: None,
                lost_since: None,
                last_checked_at: None,
                next_check_at: None,
                last_error: None,
                finding: None,
            };
            sql::insert_claim(tx, &claim)?;
            sql::insert_event(
                tx,
                &ClaimEvent {
                    domain: claim.domain.clone(),
                    account: claim.account.clone(),
                    at: now,
                    from: None,
                    to: ClaimState::Pending,
                    reason: "claimed".into(),
                },
            )?;
            Ok(claim)
        })
    }

    /// The records the customer must create to prove a claim.
    pub fn verification_instructions(&self, domain: &str, account: &str) -> Result<Instructions> {
        let claim = self.require_claim(domain, account)?;
        let provider = self.provider_settings()?;
        let dns = provider.dns;
        let mut how =
            proof::instructions(&claim.domain, &claim.token, &dns.verification_label, dns.provider_zone.as_deref());
        how.acme_cname = provider.acme.zone.and_then(|zone| crate::acme::cname_for(&claim.domain, &zone).ok());
        Ok(how)
    }

    fn require_claim(&self, domain: &str, account: &str) -> Result<Claim> {
        let name = claimable(domain)?;
        let account = check_account(account)?;
        self.store()
            .read(|c| sql::claim(c, name.as_str(), account))?
            .ok_or_else(|| Error::not_found("claim", format!("{name} for {account}")))
    }

    /// Claims on a domain, or on every domain.
    pub fn claims(&self, domain: Option<&str>) -> Result<Vec<Claim>> {
        let name = domain.map(claimable).transpose()?;
        self.store().read(|c| sql::claims(c, name.as_ref().map(|n| n.as_str())))
    }

    /// The recorded state changes of a domain's claims, oldest first.
    pub fn claim_history(&self, domain: &str) -> Result<Vec<ClaimEvent>> {
        let name = claimable(domain)?;
        self.store().read(|c| sql::events(c, name.as_str()))
    }

    /// Looks for the proof of a claim on the worker and records the outcome.
    pub fn verify_domain(&self, domain: &str, account: &str) -> Result<Pending<Result<Claim>>> {
        let claim = self.require_claim(domain, account)?;
        let dns = self.provider_settings()?.dns;
        // The outcome is written on the worker's own connection and blocking pool: a lock held
        // by another process is waited for there, never on the server's connection nor on one
        // of the two threads every DNS task shares.
        let worker = self.worker_handle()?;
        Pending::spawn(async move {
            let client = DnsClient::new(&dns)?;
            let seen = look(&client, &proof_name(&dns, &claim.domain)).await;
            crate::worker::blocking(&worker, "recording the check", move |w| {
                w.record_check(&claim.domain, &claim.account, seen, &dns)
            })
            .await
        })
        .map_err(|e| Error::Internal(format!("cannot start the DNS worker: {e}")))
    }

    /// Re-checks up to `limit` verified or lost claims whose time has come, at most
    /// `settings.concurrency` at once. Returns the claims as they are after the checks.
    pub fn recheck_due(&self, limit: u32) -> Result<Pending<Result<Vec<Claim>>>> {
        let due = self.store().read(|c| sql::due_claims(c, self.now(), i64::from(limit)))?;
        self.check_claims(due)
    }

    /// Looks for the proofs of many claims (`(domain, account)` pairs), at most
    /// `settings.concurrency` at once: a bulk import, or an admin's "verify all pending".
    pub fn verify_domains(&self, claims: &[(String, String)]) -> Result<Pending<Result<Vec<Claim>>>> {
        let mut checked = Vec::with_capacity(claims.len());
        for (domain, account) in claims {
            checked.push((claimable(domain)?.to_string(), check_account(account)?.to_string()));
        }
        self.check_claims(checked)
    }

    /// Looks up the proofs (bounded, on the worker), then records every outcome in batched
    /// transactions on a blocking thread, so the store never stalls the DNS tasks.
    fn check_claims(&self, claims: Vec<(String, String)>) -> Result<Pending<Result<Vec<Claim>>>> {
        let dns = std::sync::Arc::new(self.provider_settings()?.dns);
        // Store calls run on the worker's own connection and blocking pool (see verify_domain).
        let worker = self.worker_handle()?;
        Pending::spawn(async move {
            let client = DnsClient::new(&dns)?;
            let claimed = crate::worker::blocking(&worker, "reading the claims", move |w| {
                w.store().read(|c| {
                    claims
                        .into_iter()
                        .map(|(domain, account)| {
                            let found = sql::claim(c, &domain, &account)?.is_some();
                            Ok((domain, account, found))
                        })
                        .collect::<Result<Vec<_>>>()
                })
            })
            .await?;
            let checks = claimed.into_iter().map(|(domain, account, found)| {
                let (client, dns) = (client.clone(), dns.clone());
                async move {
                    let seen = if found {
                        Ok(look(&client, &proof_name(&dns, &domain)).await)
                    } else {
                        Err(ErrorText("not-found", format!("{domain} for {account}")))
                    };
                    (domain, account, seen)
                }
            });
            let outcomes = bounded(checks, dns.concurrency).await;
            crate::worker::blocking(&worker, "recording checks", move |w| {
                w.record_checks(outcomes, &dns).into_iter().collect()
            })
            .await
        })
        .map_err(|e| Error::Internal(format!("cannot start the DNS worker: {e}")))
    }

    /// Runs the DNS tester for many domains, at most `settings.concurrency` at once; the reports
    /// come back in the order of `domains`.
    pub fn dns_test_many(&self, domains: &[String]) -> Result<Pending<Result<Vec<DnsReport>>>> {
        let names = domains.iter().map(|d| claimable(d).map(|n| n.to_string())).collect::<Result<Vec<_>>>()?;
        let provider = self.provider_settings()?;
        let (dns, acme_zone) = (std::sync::Arc::new(provider.dns), std::sync::Arc::new(provider.acme.zone));
        dns_test::require_expectations(&dns, acme_zone.as_deref())?;
        Pending::spawn(async move {
            let client = DnsClient::new(&dns)?;
            let tests = names.into_iter().map(|name| {
                let (client, dns, acme_zone) = (client.clone(), dns.clone(), acme_zone.clone());
                async move { dns_test::run(&client, &dns, acme_zone.as_deref(), &name).await }
            });
            Ok(bounded(tests, dns.concurrency).await)
        })
        .map_err(|e| Error::Internal(format!("cannot start the DNS worker: {e}")))
    }

    /// Runs the DNS tester for a domain on the worker.
    pub fn dns_test(&self, domain: &str) -> Result<Pending<Result<DnsReport>>> {
        let name = claimable(domain)?;
        let provider = self.provider_settings()?;
        let (dns, acme_zone) = (provider.dns, provider.acme.zone);
        dns_test::require_expectations(&dns, acme_zone.as_deref())?;
        Pending::spawn(async move {
            let client = DnsClient::new(&dns)?;
            Ok(dns_test::run(&client, &dns, acme_zone.as_deref(), name.as_str()).await)
        })
        .map_err(|e| Error::Internal(format!("cannot start the DNS worker: {e}")))
    }

    /// Applies what a check saw to a claim in one transaction: state, history, and the hosted
    /// domain's owner.
    fn record_check(&self, domain: &str, account: &str, seen: Seen, dns: &DnsSettings) -> Result<Claim> {
        let now = self.now();
        self.store().write(|tx| apply_check(tx, domain, account, seen, dns, now))
    }

    /// The operator's override: `account`'s claim counts as verified now, without a proof, and
    /// the domain is hosted for it (lifting a suspension). Recorded in the domain's history with
    /// `reason`. It lasts until a check finds the proof missing: the claim is then `lost`, and
    /// suspended again after the grace period, as any verified claim whose proof went.
    pub fn override_claim(&self, domain: &str, account: &str, reason: &str) -> Result<Claim> {
        let name = claimable(domain)?;
        let account = check_account(account)?;
        let reason = reason.trim();
        if reason.is_empty() || reason.len() > 500 || reason.chars().any(char::is_control) {
            return Err(Error::InvalidArgument(
                "an override needs a reason (1 to 500 printable characters) for the domain's history".into(),
            ));
        }
        let dns = self.provider_settings()?.dns;
        let now = self.now();
        self.store().write(|tx| {
            let mut claim = sql::claim(tx, name.as_str(), account)?
                .ok_or_else(|| Error::not_found("claim", format!("{name} for {account}")))?;
            let event = |to| ClaimEvent {
                domain: claim.domain.clone(),
                account: claim.account.clone(),
                at: now,
                from: Some(claim.state),
                to,
                reason: format!("operator override: {reason}"),
            };
            sql::insert_event(tx, &event(ClaimState::Verified))?;
            claim.state = ClaimState::Verified;
            claim.verified_at = Some(now);
            claim.lost_since = None;
            claim.finding = None;
            claim.next_check_at = Some(now + recheck_seconds(&dns));
            sql::update_claim(tx, &claim)?;
            take_ownership(tx, name.as_str(), account, now)?;
            Ok(claim)
        })
    }

    /// Applies many checks' outcomes, `WRITE_BATCH` per transaction: one commit per domain was
    /// most of the time of a bulk verification. A failing claim (removed meanwhile, say) gets
    /// its own error without undoing the others.
    fn record_checks(&self, outcomes: Vec<Outcome>, dns: &DnsSettings) -> Vec<Result<Claim>> {
        const WRITE_BATCH: usize = 500;
        let now = self.now();
        let mut out = Vec::with_capacity(outcomes.len());
        for chunk in outcomes.chunks(WRITE_BATCH) {
            let written = self.store().write(|tx| {
                Ok(chunk
                    .iter()
                    .map(|(domain, account, seen)| {
                        let seen = seen.clone()?;
                        tx.execute_batch("SAVEPOINT one_check")?;
                        let applied = apply_check(tx, domain, account, seen, dns, now);
                        let end = if applied.is_ok() {
                            "RELEASE one_check"
                        } else {
                            "ROLLBACK TO one_check; RELEASE one_check"
                        };
                        tx.execute_batch(end)?;
                        applied
                    })
                    .collect::<Vec<_>>())
            });
            match written {
                Ok(results) => out.extend(results),
                Err(e) => {
                    let why = e.to_string();
                    out.extend(chunk.iter().map(|_| Err(Error::Internal(format!("store write failed: {why}")))));
                }
            }
        }
        out
    }
}

/// A claim, with what its DNS check saw (or why it could not start).
type Outcome = (String, String, std::result::Result<Seen, ErrorText>);

/// An error carried from a check task to the batched write; `Error` itself is not `Clone`.
#[derive(Debug, Clone)]
struct ErrorText(&'static str, String);

impl From<ErrorText> for Error {
    fn from(e: ErrorText) -> Self {
        match e.0 {
            "not-found" => Error::NotFound { what: "claim", key: e.1 },
            _ => Error::Internal(e.1),
        }
    }
}

/// Where the proof of a claim on `domain` is published.
fn proof_name(dns: &DnsSettings, domain: &str) -> String {
    format!("{}.{domain}", dns.verification_label)
}

fn recheck_seconds(dns: &DnsSettings) -> i64 {
    dns.recheck_interval.clamp(60, i64::MAX as u64 / 2) as i64
}

/// What a check does to the store, inside the caller's transaction.
fn apply_check(
    tx: &rusqlite::Connection,
    domain: &str,
    account: &str,
    seen: Seen,
    dns: &DnsSettings,
    now: Timestamp,
) -> Result<Claim> {
    let grace = dns.grace_period.min(i64::MAX as u64) as i64;
    let recheck = recheck_seconds(dns);
    let mut claim =
        sql::claim(tx, domain, account)?.ok_or_else(|| Error::not_found("claim", format!("{domain} for {account}")))?;
    let instructions =
        |token: &str| proof::instructions(domain, token, &dns.verification_label, dns.provider_zone.as_deref());
    let mine = instructions(&claim.token);
    let mut evidence = seen.evidence(&mine);
    claim.last_checked_at = Some(now);
    claim.last_error = seen.problem.as_ref().map(|p| format!("{p:?}"));
    claim.finding = (evidence == Evidence::Absent).then(|| proof::finding(&mine, &seen));
    if evidence == Evidence::Found && !matches!(claim.state, ClaimState::Verified | ClaimState::Lost) {
        // Another account holds the domain with its proof verified: the newer proof wins only
        // once that one is gone from DNS (see the module's documentation).
        let holder = sql::claims(tx, Some(domain))?
            .into_iter()
            .find(|c| c.account != account && c.state == ClaimState::Verified);
        if let Some(holder) = holder {
            let held = match seen.evidence(&instructions(&holder.token)) {
                Evidence::Absent => None,
                Evidence::Found => Some(format!(
                    "proof found, but the domain's current owner ({}) still publishes its proof at {}: \
                     the domain changes hands when that record is removed",
                    holder.account, mine.name
                )),
                Evidence::Unknown => Some(format!(
                    "proof found, but DNS did not say whether the current owner's ({}) proof is still published",
                    holder.account
                )),
            };
            if held.is_some() {
                evidence = Evidence::Unknown;
                claim.finding = held;
            }
        }
    }
    let change = state::next(claim.state, claim.lost_since, evidence, now, grace);
    if let Some((to, reason)) = change {
        sql::insert_event(
            tx,
            &ClaimEvent {
                domain: domain.into(),
                account: account.into(),
                at: now,
                from: Some(claim.state),
                to,
                reason: reason.into(),
            },
        )?;
        claim.state = to;
        match to {
            ClaimState::Verified => {
                claim.verified_at = Some(now);
                claim.lost_since = None;
            }
            ClaimState::Lost => claim.lost_since = Some(now),
            _ => {}
        }
    }
    claim.next_check_at = match claim.state {
        ClaimState::Verified => Some(now + recheck),
        // While lost, check often enough to notice a fix, and the end of the grace period.
        ClaimState::Lost => Some(now + recheck.min(grace.max(60))),
        _ => None,
    };
    sql::update_claim(tx, &claim)?;
    if matches!(change, Some((ClaimState::Verified, _))) {
        take_ownership(tx, domain, account, now)?;
    }
    Ok(claim)
}

/// `account` holds `domain` now: the other accounts' verified or lost claims are suspended, and
/// the domain is hosted with `account` as its owner.
fn take_ownership(tx: &rusqlite::Connection, domain: &str, account: &str, now: Timestamp) -> Result<()> {
    for mut other in sql::claims(tx, Some(domain))? {
        if other.account != account && matches!(other.state, ClaimState::Verified | ClaimState::Lost) {
            sql::insert_event(
                tx,
                &ClaimEvent {
                    domain: domain.into(),
                    account: other.account.clone(),
                    at: now,
                    from: Some(other.state),
                    to: ClaimState::Suspended,
                    reason: format!("proved by another account ({account})"),
                },
            )?;
            other.state = ClaimState::Suspended;
            other.next_check_at = None;
            sql::update_claim(tx, &other)?;
        }
    }
    sql::host_for(tx, domain, account, now)
}

/// Refuses to change the owner of a domain that customers claim: its owner is the account whose
/// proof was verified, and a suspension must not be lifted by naming another owner.
pub(crate) fn refuse_owner_change(c: &rusqlite::Connection, domain: &str) -> Result<()> {
    if sql::claims(c, Some(domain))?.is_empty() {
        return Ok(());
    }
    Err(Error::NotAllowed(format!(
        "{domain} is a customer's domain: its owner changes only when an account proves it \
         (domain verify), or by an operator override recorded in its history (domain override)"
    )))
}

/// Ends the claims on a domain the operator removed (see `store::verification::end_claims`).
pub(crate) fn end_claims(c: &rusqlite::Connection, domain: &str, reason: &str, now: Timestamp) -> Result<usize> {
    sql::end_claims(c, domain, reason, now)
}

/// Whether a customer's domain lost its proof for good: its owner's claim is suspended. It stays
/// stored (settings, invites and files wait for a fresh proof) but is not served: no
/// registrations, invites or uploads. A domain an operator added without a claim is always served.
pub(crate) fn is_suspended(c: &rusqlite::Connection, domain: &crate::Domain) -> Result<bool> {
    owner_suspended(c, domain.name.as_str(), domain.settings.owner.as_deref())
}

/// [`is_suspended`] from the domain's name and owner alone (a slot decision reads only those of
/// its settings).
pub(crate) fn owner_suspended(c: &rusqlite::Connection, domain: &str, owner: Option<&str>) -> Result<bool> {
    let Some(owner) = owner else { return Ok(false) };
    Ok(sql::claim(c, domain, owner)?.is_some_and(|claim| claim.state == ClaimState::Suspended))
}

/// Runs `jobs` as tasks of the worker, at most `limit` at a time, and gives their outputs in the
/// order of `jobs`. Bounded so that ten thousand domains do not mean ten thousand sockets.
async fn bounded<F>(jobs: impl IntoIterator<Item = F>, limit: usize) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(limit.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, job) in jobs.into_iter().enumerate() {
        // Never closed, so acquiring cannot fail.
        let permit = permits.clone().acquire_owned().await.expect("the semaphore stays open");
        tasks.spawn(async move {
            let out = job.await;
            drop(permit);
            (i, out)
        });
    }
    let mut done = tasks.join_all().await;
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, out)| out).collect()
}

/// Looks at the proof's name by TXT and CNAME at once. A found proof wins over a failed lookup
/// of the other type; a failure with no proof found concludes nothing (see [`Seen::evidence`]).
async fn look(client: &DnsClient, name: &str) -> Seen {
    let (txt, cname) = tokio::join!(client.txt(name), client.cname(name));
    match (txt, cname) {
        (Ok(t), Ok(c)) => Seen { txt: t.value, cname: c.value, problem: None },
        (Ok(t), Err(p)) => Seen { txt: t.value, cname: None, problem: Some(p) },
        (Err(p), Ok(c)) => Seen { txt: Vec::new(), cname: c.value, problem: Some(p) },
        (Err(p), Err(_)) => Seen { txt: Vec::new(), cname: None, problem: Some(p) },
    }
}

/// What a lookup would see with these tokens' TXT proofs published, for other modules' tests.
#[cfg(test)]
pub(crate) fn proof_seen_for_tests(tokens: &[&str]) -> Seen {
    Seen { txt: tokens.iter().map(|t| format!("verify={t}")).collect(), ..Default::default() }
}

#[cfg(test)]
impl Hosting {
    /// Records a check that saw `seen`, with the provider's settings, as the worker would.
    pub(crate) fn record_check_for_tests(&self, domain: &str, account: &str, seen: Seen) -> Result<Claim> {
        let dns = self.provider_settings()?.dns;
        self.record_check(domain, account, seen, &dns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_started_for_a_server_wait_for_a_held_lock_on_the_workers_connection() {
        // A check's outcome is recorded as the worker waits, not lost as the server's handle
        // would lose it.
        let store = crate::test_store::TestStore::new("verify-held-lock");
        let h = store.open_as_server();
        // A nameserver nobody answers at: the lookup ends quickly with a problem, still an
        // outcome to record.
        h.set_provider_setting("dns.nameservers", r#"["127.0.0.1:9"]"#).unwrap();
        h.set_provider_setting("dns.timeout_ms", "50").unwrap();
        h.set_provider_setting("dns.attempts", "1").unwrap();
        h.claim_domain("one.example", "alice").unwrap();
        h.claim_domain("two.example", "alice").unwrap();
        let held = store.hold_write_lock();
        let one = h.verify_domain("one.example", "alice").unwrap();
        let two = h.verify_domains(&[("two.example".into(), "alice".into())]).unwrap();
        assert!(two.try_take().is_none(), "the checks finished while the lock was held");
        crate::test_store::release_after_waiting(&one, held);
        let one = one.wait().unwrap();
        assert!(one.last_checked_at.is_some(), "{one:?}");
        let two = two.wait().unwrap();
        assert!(two[0].last_checked_at.is_some(), "{two:?}");
    }

    #[test]
    fn public_suffixes_and_bad_names_cannot_be_claimed() {
        let h = Hosting::open_in_memory().unwrap();
        for bad in ["co.uk", "com.", "github.io", "127.0.0.1", "a..b", &"x".repeat(300)] {
            assert!(h.claim_domain(bad, "acct").is_err(), "{bad}");
        }
        assert!(matches!(h.claim_domain("co.uk", "acct").unwrap_err(), Error::PublicSuffix(s) if s == "co.uk"));
        assert_eq!(h.claim_domain("github.io", "acct").unwrap_err().code(), "invalid-domain");
        assert!(h.claim_domain("example.co.uk", "acct").is_ok());
        assert_eq!(h.claim_domain("example.org", "").unwrap_err().code(), "invalid-argument");
    }

    #[test]
    fn a_claim_keeps_its_token_and_gives_instructions() {
        let h = Hosting::open_in_memory().unwrap();
        h.set_provider_setting("dns.provider_zone", "provider.example").unwrap();
        let a = h.claim_domain("Bücher.example", "alice").unwrap();
        assert_eq!(a.domain, "xn--bcher-kva.example");
        assert_eq!(h.claim_domain("xn--bcher-kva.example", "alice").unwrap().token, a.token);
        assert_ne!(h.claim_domain("xn--bcher-kva.example", "bob").unwrap().token, a.token);
        let i = h.verification_instructions("bücher.example", "alice").unwrap();
        assert_eq!(i.name, "xmpp-hosting-verification.xn--bcher-kva.example");
        assert_eq!(i.txt, format!("verify={}", a.token));
        assert_eq!(i.cname, Some(format!("{}.v.provider.example", a.token)));
        assert_eq!(h.claim_history("bücher.example").unwrap().len(), 2);
    }

    /// What a lookup at the proof's name saw: these claims' TXT proofs.
    fn txt(claims: &[&Claim]) -> Seen {
        Seen { txt: claims.iter().map(|c| format!("verify={}", c.token)).collect(), ..Default::default() }
    }

    fn nothing() -> Seen {
        Seen::default()
    }

    #[test]
    fn checks_move_claims_and_ownership() {
        let clock = crate::ManualClock::new(1_700_000_000);
        let h = Hosting::open_in_memory().unwrap().with_clock(clock.clone());
        let dns = DnsSettings { grace_period: 1000, ..Default::default() };
        let alice = h.claim_domain("example.org", "alice").unwrap();
        let bob = h.claim_domain("example.org", "bob").unwrap();
        assert_eq!(h.record_check("example.org", "alice", txt(&[&alice]), &dns).unwrap().state, ClaimState::Verified);
        assert_eq!(h.require_domain("example.org").unwrap().settings.owner.as_deref(), Some("alice"));
        // Bob's proof takes the domain once alice's is gone; alice's claim is suspended.
        assert_eq!(h.record_check("example.org", "bob", txt(&[&bob]), &dns).unwrap().state, ClaimState::Verified);
        assert_eq!(h.require_claim("example.org", "alice").unwrap().state, ClaimState::Suspended);
        assert_eq!(h.require_domain("example.org").unwrap().settings.owner.as_deref(), Some("bob"));
        assert_eq!(h.record_check("example.org", "bob", nothing(), &dns).unwrap().state, ClaimState::Lost);
        clock.advance(999);
        let timeout = Seen { problem: Some(crate::dns::DnsProblem::Timeout), ..Default::default() };
        let c = h.record_check("example.org", "bob", timeout, &dns).unwrap();
        assert_eq!((c.state, c.last_error.as_deref(), c.finding.as_deref()), (ClaimState::Lost, Some("Timeout"), None));
        clock.advance(1);
        assert_eq!(h.record_check("example.org", "bob", nothing(), &dns).unwrap().state, ClaimState::Suspended);
        assert_eq!(h.record_check("example.org", "bob", txt(&[&bob]), &dns).unwrap().state, ClaimState::Verified);
        let reasons: Vec<_> = h.claim_history("example.org").unwrap().into_iter().map(|e| e.reason).collect();
        assert!(reasons.contains(&"proved by another account (bob)".to_string()), "{reasons:?}");
        assert!(reasons.contains(&"proof missing past the grace period".to_string()));
    }

    #[test]
    fn a_check_that_finds_no_proof_says_what_it_found_instead() {
        let h = Hosting::open_in_memory().unwrap();
        let dns = DnsSettings::default();
        let claim = h.claim_domain("bad.test", "alice").unwrap();
        let other = Seen { txt: vec!["verify=aaaa".into()], ..Default::default() };
        let c = h.record_check("bad.test", "alice", other, &dns).unwrap();
        assert_eq!(c.state, ClaimState::Pending);
        let expected = format!(
            "found TXT \"verify=aaaa\" at xmpp-hosting-verification.bad.test, expected TXT \"verify={}\"",
            claim.token
        );
        assert_eq!(c.finding.as_deref(), Some(expected.as_str()));
        // Kept with the claim, for `domain claims` and the next caller.
        assert_eq!(h.require_claim("bad.test", "alice").unwrap().finding, c.finding);
        let c = h.record_check("bad.test", "alice", nothing(), &dns).unwrap();
        assert!(c.finding.unwrap().starts_with("no TXT record at xmpp-hosting-verification.bad.test"));
        let c = h.record_check("bad.test", "alice", txt(&[&claim]), &dns).unwrap();
        assert_eq!((c.state, c.finding), (ClaimState::Verified, None));
    }

    #[test]
    fn a_previous_owner_cannot_take_the_domain_back_while_the_new_owners_proof_is_published() {
        let h = Hosting::open_in_memory().unwrap();
        let dns = DnsSettings::default();
        let alice = h.claim_domain("example.org", "alice").unwrap();
        let bob = h.claim_domain("example.org", "bob").unwrap();
        h.record_check("example.org", "alice", txt(&[&alice]), &dns).unwrap();
        // The domain changes hands: the new holder publishes bob's proof and removes alice's.
        h.record_check("example.org", "bob", txt(&[&bob]), &dns).unwrap();
        assert_eq!(h.require_domain("example.org").unwrap().settings.owner.as_deref(), Some("bob"));
        // Alice's record comes back beside bob's (a forgotten record, a restored zone backup):
        // alice's proof is found, but bob's is still there, so bob keeps the domain.
        let c = h.record_check("example.org", "alice", txt(&[&alice, &bob]), &dns).unwrap();
        assert_eq!(c.state, ClaimState::Suspended);
        assert!(c.finding.as_deref().unwrap().contains("current owner (bob) still publishes its proof"), "{c:?}");
        assert_eq!(h.require_claim("example.org", "bob").unwrap().state, ClaimState::Verified);
        assert_eq!(h.require_domain("example.org").unwrap().settings.owner.as_deref(), Some("bob"));
        // A DNS failure for the owner's proof is not its absence either.
        let unsure = Seen { problem: Some(crate::dns::DnsProblem::Timeout), ..txt(&[&alice]) };
        assert_eq!(h.record_check("example.org", "alice", unsure, &dns).unwrap().state, ClaimState::Suspended);
        // Once bob's record is gone, the newer proof wins.
        assert_eq!(h.record_check("example.org", "alice", txt(&[&alice]), &dns).unwrap().state, ClaimState::Verified);
        assert_eq!(h.require_claim("example.org", "bob").unwrap().state, ClaimState::Suspended);
        assert_eq!(h.require_domain("example.org").unwrap().settings.owner.as_deref(), Some("alice"));
    }

    #[test]
    fn removing_a_domain_ends_its_claims_so_no_later_proof_brings_it_back() {
        let h = Hosting::open_in_memory().unwrap();
        let dns = DnsSettings::default();
        let alice = h.claim_domain("example.org", "alice").unwrap();
        let bob = h.claim_domain("example.org", "bob").unwrap();
        h.record_check("example.org", "alice", txt(&[&alice]), &dns).unwrap();
        h.remove_domain("example.org").unwrap();
        assert!(h.claims(Some("example.org")).unwrap().is_empty());
        // A check already under way when the domain went records nothing and hosts nothing.
        assert_eq!(h.record_check("example.org", "alice", txt(&[&alice]), &dns).unwrap_err().code(), "not-found");
        assert_eq!(h.record_check("example.org", "bob", txt(&[&bob]), &dns).unwrap_err().code(), "not-found");
        assert_eq!(h.verify_domain("example.org", "alice").err().unwrap().code(), "not-found");
        assert!(h.domain("example.org").unwrap().is_none());
        let ended: Vec<_> = h
            .claim_history("example.org")
            .unwrap()
            .into_iter()
            .filter(|e| e.to == ClaimState::Removed)
            .map(|e| (e.account, e.from, e.reason))
            .collect();
        let reason = "domain removed by the operator".to_string();
        assert_eq!(
            ended,
            [
                ("alice".to_string(), Some(ClaimState::Verified), reason.clone()),
                ("bob".to_string(), Some(ClaimState::Pending), reason)
            ]
        );
        // The customer can start again, with a new challenge.
        assert_ne!(h.claim_domain("example.org", "alice").unwrap().token, alice.token);
    }

    #[test]
    fn a_suspension_is_lifted_by_a_proof_or_a_recorded_override_not_by_naming_another_owner() {
        let clock = crate::ManualClock::new(1_700_000_000);
        let h = Hosting::open_in_memory().unwrap().with_clock(clock.clone());
        let dns = DnsSettings { grace_period: 10, ..Default::default() };
        let alice = h.claim_domain("good.test", "alice").unwrap();
        h.record_check("good.test", "alice", txt(&[&alice]), &dns).unwrap();
        h.record_check("good.test", "alice", nothing(), &dns).unwrap();
        clock.advance(10);
        assert_eq!(h.record_check("good.test", "alice", nothing(), &dns).unwrap().state, ClaimState::Suspended);
        let invite = || h.create_invite(&crate::invites::NewInvite::account("good.test"));
        assert_eq!(invite().unwrap_err().code(), "not-allowed");
        for owner in ["nobody", "null"] {
            let e = h.set_domain_setting("good.test", "owner", owner).unwrap_err();
            assert_eq!(e.code(), "not-allowed", "{owner}");
            assert!(e.to_string().contains("domain override"), "{e}");
        }
        let mut settings = h.require_domain("good.test").unwrap().settings;
        settings.owner = None;
        assert_eq!(h.set_domain_settings("good.test", settings).unwrap_err().code(), "not-allowed");
        assert_eq!(invite().unwrap_err().code(), "not-allowed", "still suspended");
        // Other settings of a customer's domain still change.
        h.set_domain_setting("good.test", "registration.policy", "open").unwrap();
        // The operator's override, with its reason in the history.
        assert_eq!(h.override_claim("good.test", "alice", " ").unwrap_err().code(), "invalid-argument");
        let c = h.override_claim("good.test", "alice", "DNS provider outage, ticket 42").unwrap();
        assert_eq!(c.state, ClaimState::Verified);
        assert!(invite().is_ok());
        let last = h.claim_history("good.test").unwrap().pop().unwrap();
        assert_eq!(
            (last.from, last.to, last.reason.as_str()),
            (Some(ClaimState::Suspended), ClaimState::Verified, "operator override: DNS provider outage, ticket 42")
        );
        // An operator's own domain (no claims) takes any owner.
        h.add_domain("operator.example").unwrap();
        h.set_domain_setting("operator.example", "owner", "someone").unwrap();
    }

    #[test]
    fn a_suspended_domain_is_not_served_until_proved_again() {
        use crate::invites::SubscriptionDecision;
        use crate::invites::{IgnoredToken, InviteKind, NewInvite, Refusal, RegistrationDecision, RegistrationRequest};
        use crate::quotas::{UploadDecision, UploadLimit};
        let clock = crate::ManualClock::new(1_700_000_000);
        let h = Hosting::open_in_memory().unwrap().with_clock(clock.clone());
        let dns = DnsSettings { grace_period: 1000, ..Default::default() };
        let alice = h.claim_domain("her-name.org", "alice").unwrap();
        h.record_check("her-name.org", "alice", txt(&[&alice]), &dns).unwrap();
        h.set_domain_setting("her-name.org", "registration.policy", "open").unwrap();
        let mut roster = NewInvite::account("her-name.org");
        (roster.kind, roster.inviter) = (InviteKind::Roster, Some("alice@her-name.org".into()));
        let token = h.create_invite(&roster).unwrap().token;
        let register = || {
            let req = RegistrationRequest { domain: "her-name.org", username: "bob", ip: None, token: None };
            h.begin_registration(&req).unwrap()
        };
        let upload = || h.authorize_upload("her-name.org", "alice", 10).unwrap();
        let subscribe = || h.preauthorize_subscription("alice@her-name.org", "carol@elsewhere.example", &token);
        assert!(matches!(register(), RegistrationDecision::Allowed(_)));
        assert!(matches!(upload(), UploadDecision::Granted(_)));
        // Lost: still served through the grace period.
        h.record_check("her-name.org", "alice", nothing(), &dns).unwrap();
        assert!(matches!(upload(), UploadDecision::Granted(_)));
        clock.advance(1000);
        h.record_check("her-name.org", "alice", nothing(), &dns).unwrap();
        assert_eq!(register(), RegistrationDecision::Refused(Refusal::DomainSuspended));
        match upload() {
            UploadDecision::Denied(d) => {
                assert_eq!((d.limit, d.condition()), (UploadLimit::DomainSuspended, ("cancel", "not-allowed")))
            }
            granted => panic!("{granted:?}"),
        }
        assert_eq!(h.create_invite(&NewInvite::account("her-name.org")).unwrap_err().code(), "not-allowed");
        assert_eq!(subscribe().unwrap(), SubscriptionDecision::Ignored { reason: IgnoredToken::DomainSuspended });
        // Proved again: served again, the invite still unused.
        h.record_check("her-name.org", "alice", txt(&[&alice]), &dns).unwrap();
        assert!(matches!(subscribe().unwrap(), SubscriptionDecision::Approved { .. }));
        assert!(matches!(upload(), UploadDecision::Granted(_)));
        // A domain the operator added without a claim is always served.
        h.add_domain("operator.example").unwrap();
        assert!(matches!(h.authorize_upload("operator.example", "x", 1).unwrap(), UploadDecision::Granted(_)));
    }
}
