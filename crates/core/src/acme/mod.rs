//! Trusted certificates for hosted domains by ACME (RFC 8555) DNS-01, through one CNAME.
//!
//! The customer adds once `_acme-challenge.<domain> CNAME <domain>.<acme zone>`, a name in a
//! zone the provider runs. CAs follow the CNAME when they look for the challenge TXT, so the
//! provider answers every DNS-01 challenge for the domain by writing TXT records in its own zone
//! (an RFC 2136 update signed with TSIG, [`dns_update`]); renewals need nothing more from the
//! customer. One CNAME can only answer for `_acme-challenge.<domain>`, so the certificate asked
//! for is `<domain>` and `*.<domain>`: the wildcard's challenge lives at the same name, and it
//! covers every service name (`conference.`, `share.`, `proxy.`...).
//!
//! Before anything is asked of the CA the CNAME is looked up with the DNS tester's resolver; a
//! missing or wrong one is refused with what was found. The certificate comes back through
//! [`Hosting::import_certificate`]: the same checks as an upload (the domain's own key, the
//! names, the validity, the chain) and the same stored form, so it is installed and served like
//! any import. The ACME account's key is kept in the store like the domains' keys, never shown.
//!
//! Everything that talks to the network runs on the core's worker ([`crate::Pending`]).

mod dns_update;
pub mod settings;
mod store;

use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus,
    RetryPolicy,
};
use rusqlite::Connection;
use serde::Serialize;

pub use settings::AcmeSettings;

use crate::certificates::{CertificateError, CertificateInfo, GenerateOptions};
use crate::dns::{plain, DnsClient, DnsProblem, DnsSettings};
use crate::{DomainName, Error, Hosting, Pending, Result, Timestamp};

/// The label CAs look up for DNS-01 (RFC 8555 section 8.4).
pub const CHALLENGE_LABEL: &str = "_acme-challenge";

/// The most domains one renewal pass renews: each takes a round of CA requests and DNS
/// updates; the rest wait for the next pass.
pub const RENEW_BATCH: i64 = 20;

/// Why an ACME issue or renewal did not happen, in the admin's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AcmeError {
    #[error("ACME is not configured: set {} (provider set acme.…)", .0.join(", "))]
    NotConfigured(Vec<&'static str>),
    #[error("ACME settings: {0}")]
    Settings(String),
    #[error(
        "no CNAME at {name}: the customer must add `{name}. CNAME {expected}.` first; nothing was asked of the CA"
    )]
    CnameMissing { name: String, expected: String },
    #[error(
        "{name} is a CNAME to {found}, not to {expected}: the customer must change it to `{name}. CNAME {expected}.`; \
         nothing was asked of the CA"
    )]
    CnameWrong { name: String, expected: String, found: String },
    #[error("DNS did not say whether {name} is a CNAME to {expected} ({problem}); nothing was asked of the CA")]
    CnameUnknown { name: String, expected: String, problem: String },
    #[error("{0} is too long for a CNAME target under the ACME zone (a DNS name has at most 253 characters)")]
    NameTooLong(String),
    #[error("DNS update failed: {0}")]
    DnsUpdate(String),
    #[error("the challenge TXT at {name} did not show on {server} within {seconds} s")]
    Propagation { name: String, server: String, seconds: u64 },
    #[error("the CA refused: {0}")]
    Ca(String),
}

impl AcmeError {
    /// The core's stable error code (see `Error::code`).
    pub fn code(&self) -> &'static str {
        match self {
            AcmeError::NotConfigured(_) | AcmeError::Settings(_) | AcmeError::NameTooLong(_) => "invalid-argument",
            // The customer's DNS does not let the provider answer for the domain yet.
            AcmeError::CnameMissing { .. } | AcmeError::CnameWrong { .. } | AcmeError::CnameUnknown { .. } => {
                "not-allowed"
            }
            // The CA or the DNS server failed us: nothing the caller typed was wrong.
            AcmeError::DnsUpdate(_) | AcmeError::Propagation { .. } | AcmeError::Ca(_) => "internal",
        }
    }
}

impl From<AcmeError> for Error {
    fn from(e: AcmeError) -> Self {
        Error::Acme(e)
    }
}

fn ca(e: instant_acme::Error) -> AcmeError {
    AcmeError::Ca(e.to_string())
}

/// The record a customer adds once for trusted certificates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AcmeCname {
    /// `_acme-challenge.<domain>`.
    pub name: String,
    /// `<domain>.<acme zone>`.
    pub target: String,
}

/// The CNAME `domain` needs for the provider's ACME zone `zone`.
pub(crate) fn cname_for(domain: &str, zone: &str) -> std::result::Result<AcmeCname, AcmeError> {
    let domain = plain(domain);
    let target = format!("{domain}.{}", plain(zone));
    DomainName::parse(&target).map_err(|_| AcmeError::NameTooLong(target.clone()))?;
    Ok(AcmeCname { name: format!("{CHALLENGE_LABEL}.{domain}"), target })
}

/// A domain's ACME bookkeeping as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AcmeRecord {
    pub domain: String,
    pub enabled_at: Timestamp,
    pub issued_sha256: Option<String>,
    pub issued_at: Option<Timestamp>,
    pub last_attempt_at: Option<Timestamp>,
    pub failures: i64,
    pub next_attempt_at: Option<Timestamp>,
    pub last_error: Option<String>,
}

/// What `cert show` says about a domain's ACME certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AcmeStatus {
    pub domain: String,
    /// The record the customer must keep.
    pub cname: Option<AcmeCname>,
    /// Whether the served certificate is the one ACME issued last (a later `cert generate` or
    /// `cert import` replaces it, and renewals stop until `cert acme` is run again).
    pub serving: bool,
    pub issued_at: Option<Timestamp>,
    /// When the next renewal is due (the served certificate's end minus `acme.renew_days`).
    pub renew_at: Option<Timestamp>,
    pub last_attempt_at: Option<Timestamp>,
    /// Failed attempts since the last certificate.
    pub failures: i64,
    /// No renewal attempt before this (backoff after a failure).
    pub next_attempt_at: Option<Timestamp>,
    pub last_error: Option<String>,
}

impl AcmeStatus {
    /// One line for `cert show`.
    pub fn describe(&self) -> String {
        let when = crate::certificates::human_time;
        let mut text = match (self.serving, self.issued_at) {
            (true, Some(at)) => format!("issued {}", when(at)),
            (false, Some(_)) => "the served certificate was replaced since ACME issued one: renewal stopped".into(),
            (_, None) => "not issued yet".into(),
        };
        if let (true, Some(at)) = (self.serving, self.renew_at) {
            text.push_str(&format!(", renews from {}", when(at)));
        }
        if self.failures > 0 {
            text.push_str(&format!(", {} failed attempt(s)", self.failures));
            if let Some(at) = self.next_attempt_at {
                text.push_str(&format!(", next at {}", when(at)));
            }
        }
        if let Some(e) = &self.last_error {
            text.push_str(&format!("; last error: {e}"));
        }
        text
    }
}

/// What a renewal pass did for one domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AcmeRenewal {
    pub domain: String,
    /// The new certificate, when the renewal worked.
    pub renewed: Option<CertificateInfo>,
    /// Why it did not.
    pub error: Option<String>,
    /// For the admins and the domain's owner when it failed: what happened and what comes next.
    pub notice: Option<String>,
    /// The domain's owner (the account that proved it), who gets the notice too.
    pub owner: Option<String>,
}

/// Seconds to wait after `failures` failed attempts: an hour, doubling, at most a day.
pub(crate) fn backoff(failures: i64) -> i64 {
    let doublings = (failures - 1).clamp(0, 5) as u32;
    (3600_i64 << doublings).min(86_400)
}

impl Hosting {
    /// The CNAME the customer of `domain` must add for trusted certificates, when the provider
    /// has an ACME zone (`acme.zone`).
    pub fn acme_cname(&self, domain: &str) -> Result<Option<AcmeCname>> {
        let name = DomainName::parse(domain)?;
        match self.provider_settings()?.acme.zone {
            Some(zone) => Ok(Some(cname_for(name.as_str(), &zone)?)),
            None => Ok(None),
        }
    }

    /// The ACME bookkeeping of `domain`, if `cert acme` was ever run for it.
    pub fn acme_status(&self, domain: &str) -> Result<Option<AcmeStatus>> {
        let name = DomainName::parse(domain)?;
        let Some(r) = self.store().read(|c| store::record(c, name.as_str()))? else { return Ok(None) };
        let acme = self.provider_settings()?.acme;
        let served = self.store().read(|c| crate::store::certificates::select(c, name.as_str()))?;
        let serving = matches!((&served, &r.issued_sha256), (Some(s), Some(issued)) if &s.sha256_hex == issued);
        Ok(Some(AcmeStatus {
            domain: r.domain.clone(),
            cname: acme.zone.as_deref().and_then(|z| cname_for(name.as_str(), z).ok()),
            serving,
            issued_at: r.issued_at,
            renew_at: served.filter(|_| serving).map(|s| s.not_after - i64::from(acme.renew_days) * 86_400),
            last_attempt_at: r.last_attempt_at,
            failures: r.failures,
            next_attempt_at: r.next_attempt_at,
            last_error: r.last_error,
        }))
    }

    /// Whether `domain`'s served certificate is the one ACME issued (and will be renewed).
    pub fn acme_managed(&self, domain: &str) -> Result<bool> {
        Ok(self.acme_status(domain)?.is_some_and(|s| s.serving))
    }

    /// Obtains a CA-signed certificate for `domain` and `*.<domain>` by ACME DNS-01, on the
    /// worker, and serves it; from then on the renewal pass keeps it renewed. Refused before the
    /// CA is asked when the customer's CNAME is missing or points elsewhere.
    pub fn acme_issue(&self, domain: &str) -> Result<Pending<Result<CertificateInfo>>> {
        let name = DomainName::parse(domain)?;
        self.require_domain(name.as_str())?;
        // The exchange's store calls wait for another process's lock on the worker's own
        // connection, never on the one the server's thread calls through.
        let worker = self.worker_handle()?;
        Pending::spawn(async move { worker.acme_attempt(name.as_str()).await })
            .map_err(|e| Error::Internal(format!("cannot start the ACME worker: {e}")))
    }

    /// Renews the ACME certificates due (at most [`RENEW_BATCH`]), one after the other; blocks
    /// until done, so call it from the worker (a housekeeping step) or a command. A failure
    /// counts towards the domain's backoff and comes with a notice.
    pub fn acme_renew_due(&self) -> Result<Vec<AcmeRenewal>> {
        let acme = self.provider_settings()?.acme;
        let now = self.now();
        let renew_before = i64::from(acme.renew_days) * 86_400;
        let due = self.store().read(|c| store::due(c, now, renew_before, RENEW_BATCH))?;
        let mut out = Vec::with_capacity(due.len());
        for domain in due {
            let hosting = self.clone();
            let name = domain.clone();
            let result = Pending::spawn(async move { hosting.acme_attempt(&name).await })
                .map_err(|e| Error::Internal(format!("cannot start the ACME worker: {e}")))?
                .wait();
            let owner = self.domain(&domain).ok().flatten().and_then(|d| d.settings.owner);
            out.push(match result {
                Ok(info) => AcmeRenewal { domain, renewed: Some(info), error: None, notice: None, owner },
                Err(e) => {
                    let status = self.acme_status(&domain).ok().flatten();
                    let left = self
                        .certificate(&domain)
                        .map(|i| format!("{} day(s) left", i.days_left))
                        .unwrap_or_else(|_| "no certificate".into());
                    let next = status
                        .as_ref()
                        .and_then(|s| s.next_attempt_at)
                        .map(|t| format!(" Next attempt at {}.", crate::certificates::human_time(t)))
                        .unwrap_or_default();
                    let attempts = status.map(|s| s.failures).unwrap_or(1);
                    let notice = format!(
                        "Renewal of {domain}'s certificate by ACME failed ({left}, attempt {attempts}): {e}.{next}"
                    );
                    AcmeRenewal { domain, renewed: None, error: Some(e.to_string()), notice: Some(notice), owner }
                }
            });
        }
        Ok(out)
    }

    /// One issue or renewal, with its outcome recorded for `cert show` and the backoff.
    async fn acme_attempt(&self, domain: &str) -> Result<CertificateInfo> {
        let started = self.now();
        let result = self.acme_obtain(domain).await;
        let now = self.now();
        let domain = domain.to_string();
        blocking(self, move |h| {
            let renew_days = h.provider_settings().map(|p| p.acme.renew_days).unwrap_or(30);
            h.store().write(|tx| record_attempt(tx, &domain, started, now, renew_days, &result))?;
            result
        })
        .await
    }

    /// The ACME exchange itself: CNAME check, account, order, TXT, CA validation, CSR, import.
    async fn acme_obtain(&self, domain: &str) -> Result<CertificateInfo> {
        let provider = blocking(self, |h| h.provider_settings()).await?;
        let acme = provider.acme;
        let missing = acme.missing();
        if !missing.is_empty() {
            return Err(AcmeError::NotConfigured(missing).into());
        }
        if let Some((path, why)) = acme.problems().into_iter().next() {
            return Err(AcmeError::Settings(format!("acme.{path}: {why}")).into());
        }
        let owned = domain.to_string();
        let names = blocking(self, move |h| h.certificate_names(&owned)).await?;
        let zone = acme.zone.clone().unwrap_or_default();
        let cname = cname_for(names.domain.as_str(), &zone)?;
        check_cname(&provider.dns, &cname).await?;

        // The certificate is for the domain's own key: the one a self-signed certificate or an
        // import already uses, made now when the domain has none.
        let owned = domain.to_string();
        let stored = blocking(self, move |h| match h.stored_certificate(&owned) {
            Ok(s) => Ok(s),
            Err(Error::Certificate(CertificateError::NoCertificate { .. })) => {
                h.generate_certificate(&owned, GenerateOptions::default())?;
                h.stored_certificate(&owned)
            }
            Err(e) => Err(e),
        })
        .await?;
        let key = stored.key.key_pair()?;
        let updater = dns_update::ZoneUpdater::new(&acme)?;
        let account = self.acme_account(&acme).await?;
        let domain = names.domain.as_str().to_string();
        let identifiers = [Identifier::Dns(domain.clone()), Identifier::Dns(format!("*.{domain}"))];
        let mut order = match account.new_order(&NewOrder::new(&identifiers)).await {
            Err(instant_acme::Error::Api(p))
                if p.r#type.as_deref() == Some("urn:ietf:params:acme:error:accountDoesNotExist") =>
            {
                // The CA forgot the account (a test CA restarted, an account deactivated): a
                // new one, once.
                let url = acme.directory_url.clone().unwrap_or_default();
                blocking(self, move |h| h.store().write(|tx| store::forget_account(tx, &url))).await?;
                self.acme_account(&acme).await?.new_order(&NewOrder::new(&identifiers)).await.map_err(ca)?
            }
            other => other.map_err(ca)?,
        };

        // Both authorizations (the domain and its wildcard) are answered at the same name.
        let mut values = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(ca)?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => {
                    return Err(
                        AcmeError::Ca(format!("the authorization for {} is {other:?}", authz.identifier())).into()
                    )
                }
            }
            let challenge = authz
                .challenge(ChallengeType::Dns01)
                .ok_or_else(|| AcmeError::Ca("the CA offers no dns-01 challenge".into()))?;
            values.push(challenge.key_authorization().dns_value());
        }
        let answered = async {
            if values.is_empty() {
                return Ok(());
            }
            updater.set_txt(&cname.target, &values).await?;
            let server = acme.dns_server.clone().unwrap_or_default();
            wait_for_txt(&provider.dns, &server, &cname.target, &values, acme.propagation_timeout).await?;
            let mut authorizations = order.authorizations();
            while let Some(authz) = authorizations.next().await {
                let mut authz = authz.map_err(ca)?;
                if authz.status != AuthorizationStatus::Pending {
                    continue;
                }
                if let Some(mut challenge) = authz.challenge(ChallengeType::Dns01) {
                    challenge.set_ready().await.map_err(ca)?;
                }
            }
            Ok::<(), Error>(())
        }
        .await;
        let ready = match answered {
            Ok(()) => order.poll_ready(&retry()).await.map_err(|e| Error::from(ca(e))),
            Err(e) => Err(e),
        };
        if !values.is_empty() {
            // The TXT has done its job (or failed); a stale one would only confuse the next
            // attempt's reader. Failing to remove it does not undo a certificate.
            let _ = updater.clear_txt(&cname.target).await;
        }
        match ready? {
            OrderStatus::Ready => {}
            status => return Err(AcmeError::Ca(why_invalid(&mut order, status).await).into()),
        }
        let mut params = rcgen::CertificateParams::new(vec![domain.clone(), format!("*.{domain}")])
            .map_err(|e| CertificateError::Internal(format!("CSR names: {e}")))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CommonName, domain.clone());
        let csr =
            params.serialize_request(&key).map_err(|e| CertificateError::Internal(format!("CSR signing: {e}")))?;
        order.finalize_csr(csr.der()).await.map_err(ca)?;
        let chain = order.poll_certificate(&retry()).await.map_err(ca)?;
        blocking(self, move |h| h.import_certificate(&domain, &chain)).await
    }

    /// The account for the configured directory: the stored one, or a new one stored now.
    async fn acme_account(&self, acme: &AcmeSettings) -> Result<Account> {
        let url = acme.directory_url.clone().unwrap_or_default();
        let builder = || {
            match &acme.ca_file {
                Some(path) => Account::builder_with_root(path),
                None => Account::builder(),
            }
            .map_err(|e| AcmeError::Settings(format!("https client for the CA: {e}")))
        };
        let reading = url.clone();
        if let Some(text) = blocking(self, move |h| h.store().read(|c| store::account(c, &reading))).await? {
            let credentials: AccountCredentials = serde_json::from_str(&text)
                .map_err(|e| Error::Corrupt(format!("stored ACME account credentials: {e}")))?;
            return Ok(builder()?.from_credentials(credentials).await.map_err(ca)?);
        }
        let contact = acme.contact.as_ref().map(|c| format!("mailto:{c}"));
        let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
        let new = NewAccount { contact: &contacts, terms_of_service_agreed: true, only_return_existing: false };
        let (account, credentials) = builder()?.create(&new, url.clone(), None).await.map_err(ca)?;
        let text = serde_json::to_string(&credentials)
            .map_err(|e| Error::Internal(format!("ACME account credentials: {e}")))?;
        let now = self.now();
        let id = account.id().to_string();
        blocking(self, move |h| h.store().write(|tx| store::put_account(tx, &url, &id, &text, now))).await?;
        Ok(account)
    }
}

/// Writes what an attempt came to, for `cert show` and the backoff.
fn record_attempt(
    tx: &Connection,
    domain: &str,
    started: Timestamp,
    now: Timestamp,
    renew_days: u32,
    result: &Result<CertificateInfo>,
) -> Result<()> {
    let mut r = store::record(tx, domain)?.unwrap_or(AcmeRecord {
        domain: domain.to_string(),
        enabled_at: started,
        issued_sha256: None,
        issued_at: None,
        last_attempt_at: None,
        failures: 0,
        next_attempt_at: None,
        last_error: None,
    });
    r.last_attempt_at = Some(started);
    match result {
        Ok(info) => {
            r.issued_sha256 = Some(info.fingerprint.sha256_hex.clone());
            r.issued_at = Some(now);
            r.failures = 0;
            r.next_attempt_at = None;
            r.last_error = None;
            // A CA whose certificates are shorter than the renewal window would make
            // every pass renew again: at most once a day then, and the admin is told.
            if info.not_after - now <= i64::from(renew_days) * 86_400 {
                r.next_attempt_at = Some(now + 86_400);
                r.last_error = Some(format!(
                    "the CA's certificate is valid for {} day(s), within acme.renew_days ({renew_days}): \
                         renewed at most daily; lower acme.renew_days",
                    info.days_left
                ));
            }
        }
        Err(e) => {
            r.failures += 1;
            r.next_attempt_at = Some(now + backoff(r.failures));
            r.last_error = Some(e.to_string());
        }
    }
    // A domain removed meanwhile has no row to keep.
    match crate::store::domains::domain(tx, &DomainName::from_stored(domain.to_string()))? {
        Some(_) => store::put(tx, &r),
        None => Ok(()),
    }
}

/// A store call of an ACME exchange, on the blocking pool (see [`crate::worker::blocking`]).
async fn blocking<T: Send + 'static>(
    h: &Hosting,
    call: impl FnOnce(&Hosting) -> Result<T> + Send + 'static,
) -> Result<T> {
    crate::worker::blocking(h, "an ACME store call", call).await
}

/// How long to poll the CA for an order's progress.
fn retry() -> RetryPolicy {
    RetryPolicy::new().initial_delay(Duration::from_millis(250)).backoff(1.5).timeout(Duration::from_secs(90))
}

/// What the CA said about a failed validation, from the authorizations' challenges.
async fn why_invalid(order: &mut instant_acme::Order, status: OrderStatus) -> String {
    let mut reasons = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        let Ok(state) = authz.refresh().await else { continue };
        for c in &state.challenges {
            if let Some(e) = &c.error {
                reasons.push(format!("{}: {}", state.identifier(), e));
            }
        }
    }
    if reasons.is_empty() {
        format!("the order is {status:?}")
    } else {
        format!("the order is {status:?}: {}", reasons.join("; "))
    }
}

/// Refuses unless `_acme-challenge.<domain>` is a CNAME to the provider's name for it.
async fn check_cname(dns: &DnsSettings, want: &AcmeCname) -> Result<()> {
    let client = DnsClient::new(dns)?;
    match client.cname(&want.name).await {
        Ok(answer) => match answer.value {
            Some(found) if found == plain(&want.target) => Ok(()),
            Some(found) => Err(AcmeError::CnameWrong {
                name: want.name.clone(),
                expected: want.target.clone(),
                found: found.chars().take(255).flat_map(char::escape_debug).collect(),
            }
            .into()),
            None => Err(AcmeError::CnameMissing { name: want.name.clone(), expected: want.target.clone() }.into()),
        },
        Err(problem) => Err(AcmeError::CnameUnknown {
            name: want.name.clone(),
            expected: want.target.clone(),
            problem: match problem {
                DnsProblem::Timeout => "no answer in time".into(),
                DnsProblem::Failure(f) => f,
                DnsProblem::Bogus => "DNSSEC says the answer is forged".into(),
            },
        }
        .into()),
    }
}

/// Waits until the zone's primary serves every value at `name`, asking it directly.
async fn wait_for_txt(dns: &DnsSettings, server: &str, name: &str, values: &[String], seconds: u64) -> Result<()> {
    let direct = DnsSettings { nameservers: vec![server.to_string()], dnssec: false, ..dns.clone() };
    let client = DnsClient::new(&direct)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Ok(answer) = client.txt(name).await {
            if values.iter().all(|v| answer.value.contains(v)) {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(AcmeError::Propagation { name: name.to_string(), server: server.to_string(), seconds }.into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cname_names_the_domain_under_the_acme_zone() {
        let c = cname_for("Example.ORG", "acme.provider.example.").unwrap();
        assert_eq!(c.name, "_acme-challenge.example.org");
        assert_eq!(c.target, "example.org.acme.provider.example");
        // A valid 236-character domain, 258 with the zone.
        let long = format!("{}.{}.org", vec!["a".repeat(63); 3].join("."), "d".repeat(40));
        assert!(DomainName::parse(&long).is_ok());
        assert!(matches!(cname_for(&long, "acme.provider.example"), Err(AcmeError::NameTooLong(_))));
    }

    #[test]
    fn an_issue_started_for_a_server_records_its_outcome_on_the_workers_connection() {
        // The attempt's outcome (here: ACME not configured) is recorded once another process's
        // write is done, and the caller gets that outcome, not "database is locked".
        let store = crate::test_store::TestStore::new("acme-held-lock");
        let h = store.open_as_server();
        h.add_domain("example.org").unwrap();
        let held = store.hold_write_lock();
        let pending = h.acme_issue("example.org").unwrap();
        crate::test_store::release_after_waiting(&pending, held);
        let err = pending.wait().unwrap_err();
        assert!(matches!(err, Error::Acme(AcmeError::NotConfigured(_))), "{err:?}");
        assert_eq!(h.acme_status("example.org").unwrap().map(|s| s.failures), Some(1));
    }

    #[test]
    fn backoff_doubles_from_an_hour_to_a_day() {
        assert_eq!([1, 2, 3, 5, 6, 20].map(backoff), [3600, 7200, 14_400, 57_600, 86_400, 86_400]);
    }

    /// `domain` serving a CA-signed certificate (`days` long from now) as ACME issued it.
    fn acme_managed_certificate(h: &Hosting, domain: &str, days: i64) {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let now = h.now();
        let at = |t: i64| ::time::OffsetDateTime::from_unix_timestamp(t).unwrap();
        h.generate_certificate(domain, GenerateOptions::default()).unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, "Test ACME CA");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        (p.not_before, p.not_after) = (at(now - 86_400), at(now + 3650 * 86_400));
        let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
        let mut leaf = CertificateParams::new(vec![domain.to_string(), format!("*.{domain}")]).unwrap();
        (leaf.not_before, leaf.not_after) = (at(now - 60), at(now + days * 86_400));
        let key = h.stored_certificate(domain).unwrap().key.key_pair().unwrap();
        let info = h.import_certificate(domain, &leaf.signed_by(&key, &ca).unwrap().pem()).unwrap();
        let record = AcmeRecord {
            domain: domain.into(),
            enabled_at: now,
            issued_sha256: Some(info.fingerprint.sha256_hex),
            issued_at: Some(now),
            last_attempt_at: Some(now),
            failures: 0,
            next_attempt_at: None,
            last_error: None,
        };
        h.store().write(|tx| store::put(tx, &record)).unwrap();
    }

    #[test]
    fn the_certificate_upkeep_renews_acme_certificates_and_warns_only_when_renewal_fails() {
        let clock = crate::ManualClock::new(1_800_000_000);
        let h = Hosting::open_in_memory().unwrap().with_clock(clock.clone());
        h.add_domain("example.org").unwrap();
        h.set_domain_setting("example.org", "owner", "owner@example.org").unwrap();
        acme_managed_certificate(&h, "example.org", 90);
        assert!(h.acme_managed("example.org").unwrap());
        // 31 days left: an imported certificate would be warned about; an ACME one is renewed
        // the day after, so nobody hears about it.
        clock.advance(59 * 86_400);
        let done = h.certificate_upkeep(None).unwrap();
        assert!(done.notices.is_empty() && done.failed.is_empty(), "{done:?}");
        // 30 days left: due. The renewal fails here (no CA configured): the admins and the
        // owner hear why, and the next attempt waits an hour.
        clock.advance(86_400);
        let done = h.certificate_upkeep(None).unwrap();
        let to: Vec<_> = done.notices.iter().map(|n| (n.to, n.event, n.account.as_str())).collect();
        use crate::housekeeping::Recipients;
        assert_eq!(
            to,
            [
                (Recipients::Admins, "certificate-acme-failed", "owner@example.org"),
                (Recipients::Owner, "certificate-acme-failed", "owner@example.org")
            ]
        );
        let text = &done.notices[0].text;
        assert!(text.starts_with("Renewal of example.org's certificate by ACME failed (30 day(s) left, attempt 1): ACME is not configured"), "{text}");
        assert!(text.contains("Next attempt at"), "{text}");
        assert_eq!(done.failed.len(), 1);
        // Backed off: the next pass an hour minus a second later leaves it alone.
        clock.advance(3599);
        assert!(h.acme_renew_due().unwrap().is_empty());
        clock.advance(1);
        assert_eq!(
            h.acme_renew_due().unwrap()[0].error.as_deref().map(|e| e.starts_with("ACME is not configured")),
            Some(true)
        );
        assert_eq!(h.acme_status("example.org").unwrap().unwrap().failures, 2);
    }

    #[test]
    fn issuing_without_settings_names_what_is_missing_and_records_the_failure() {
        let h = Hosting::open_in_memory().unwrap();
        h.add_domain("example.org").unwrap();
        let e = h.acme_issue("example.org").unwrap().wait().unwrap_err();
        assert_eq!(e.code(), "invalid-argument");
        assert!(e.to_string().contains("acme.directory_url, acme.zone, acme.dns_server"), "{e}");
        let s = h.acme_status("example.org").unwrap().unwrap();
        assert_eq!((s.failures, s.serving), (1, false));
        assert!(s.describe().contains("not issued yet, 1 failed attempt(s)"), "{}", s.describe());
        assert!(h.acme_renew_due().unwrap().is_empty(), "nothing issued: nothing to renew");
        assert_eq!(h.acme_issue("nope.example").err().unwrap().code(), "not-found");
    }
}
