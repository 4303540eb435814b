//! The certificates' upkeep, one step of the housekeeping pass (runs on the core's worker).
//!
//! - A customer's domain that is hosted (its claim verified, or lost and in its grace period)
//!   and has no certificate gets a self-signed one (ECDSA), so the server can offer TLS for it
//!   as soon as it is verified.
//! - A self-signed certificate is renewed before it expires ([`renewal_due`]), with the same key
//!   (a CSR made from it, and DANE records of the key, stay good; no RSA key is generated on a
//!   pass), and the new fingerprint is announced to the admins and the domain's owner: clients
//!   that pinned the old one, and the customer's POSH files, must be updated.
//! - Any other certificate (imported, or issued by a CA) is only warned about, at 31, 7 and 1
//!   days before it expires and once expired, as `prosodyctl check certs` warns (ejabberd's pkix
//!   warns at 7 days, 1 day, 1 hour): each notice once per certificate (migration 0015).
//! - With an [`InstallTarget`], the server's certificate directory is brought in line with the
//!   store (see [`super::install`]) after the above, so a renewal is served at once.

use serde::Serialize;

use super::install::{InstallReport, InstallTarget};
use super::names::CertificateNames;
use super::self_signed::{make, new_self_signed, GenerateOptions};
use super::{days_left, human_time, Fingerprint, Source, StoredCertificate};
use crate::housekeeping::{Notice, Recipients};
use crate::verification::ClaimState;
use crate::{Hosting, Result, Timestamp};

/// Days before expiry at which the admins and the domain's owner hear about a certificate that
/// is not renewed here, as `prosodyctl check certs` warns.
pub const NOTICE_DAYS: [i64; 3] = [31, 7, 1];

/// A self-signed certificate is renewed when this many days or less are left...
pub const RENEW_DAYS: i64 = 31;

/// ... or, for a short-lived one, when a third of its validity is left (a 30-day certificate
/// would otherwise be renewed at every pass).
pub(crate) fn renewal_due(s: &StoredCertificate, now: Timestamp) -> bool {
    let left = s.not_after - now;
    let lifetime = (s.not_after - s.not_before).max(0);
    left <= (RENEW_DAYS * 86_400).min(lifetime / 3)
}

/// The threshold `days_left` has reached: 31, 7 or 1, 0 once expired, none before 31 days.
pub fn threshold(days_left: i64) -> Option<i64> {
    if days_left < 0 {
        return Some(0);
    }
    NOTICE_DAYS.iter().rev().copied().find(|&t| days_left <= t)
}

/// A self-signed certificate renewed by the pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Renewal {
    pub domain: String,
    pub fingerprint: Fingerprint,
    pub not_after: Timestamp,
}

/// What one upkeep did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CertificateUpkeep {
    /// Verified customers' domains that got their first (self-signed) certificate.
    pub generated: Vec<String>,
    /// Self-signed certificates renewed (their new fingerprint is announced in `notices`).
    pub renewed: Vec<Renewal>,
    /// ACME certificates renewed by the CA: only logged (nothing changes for clients or the
    /// customer, and a failure has its notice); without it the admin would see no trace of them.
    pub acme_renewed: Vec<Renewal>,
    /// Domains whose certificate could not be made or renewed, with the reason.
    pub failed: Vec<(String, String)>,
    /// Notices for the admins and owners (already worded).
    pub notices: Vec<Notice>,
    /// What was installed into the server's directory, when it gave one.
    pub installed: Option<InstallReport>,
}

/// `cert check` answers no when a certificate has fewer days left than this (ejabberd's pkix and
/// `prosodyctl check certs` start warning in earnest a week ahead).
pub const CHECK_DAYS: i64 = 7;

/// Every domain's days left, and whether all have at least [`CHECK_DAYS`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateCheck {
    pub ok: bool,
    pub expiries: Vec<super::Expiry>,
    /// One line a domain, then the verdict.
    pub text: String,
    /// The verdict alone (how many certificates, which expire within [`CHECK_DAYS`]), for a
    /// caller that prints the domains its own way (the CLI's table).
    pub verdict: String,
}

impl Hosting {
    /// `cert check` on every server: days left for every domain, soonest first.
    pub fn check_certificates(&self) -> Result<CertificateCheck> {
        let expiries = self.certificate_expiry()?;
        let short: Vec<&str> =
            expiries.iter().filter(|e| e.days_left < CHECK_DAYS).map(|e| e.domain.as_str()).collect();
        let mut lines: Vec<String> = expiries
            .iter()
            .map(|e| {
                format!(
                    "{:<40} {:<12} expires {}  {} days left",
                    e.domain,
                    e.source.as_str(),
                    human_time(e.not_after),
                    e.days_left
                )
            })
            .collect();
        let verdict = if short.is_empty() {
            format!("{} certificate(s), none expiring within {CHECK_DAYS} days", expiries.len())
        } else {
            format!("{} certificate(s); expiring within {CHECK_DAYS} days: {}", expiries.len(), short.join(", "))
        };
        lines.push(verdict.clone());
        Ok(CertificateCheck { ok: short.is_empty(), expiries, text: lines.join("\n"), verdict })
    }
}

/// The notices of one certificate event: to the admins, and to the domain's owner when it has one.
fn notices(event: &'static str, domain: &str, owner: Option<&str>, text: String) -> Vec<Notice> {
    let mut out = vec![Notice {
        to: Recipients::Admins,
        event,
        domain: domain.to_string(),
        account: owner.unwrap_or_default().to_string(),
        text: text.clone(),
    }];
    if let Some(owner) = owner.filter(|o| !o.is_empty()) {
        out.push(Notice { to: Recipients::Owner, event, domain: domain.to_string(), account: owner.to_string(), text });
    }
    out
}

/// The words of an expiry notice.
fn expiry_text(s: &StoredCertificate, days: i64) -> (&'static str, String) {
    let what = format!("The {} certificate of {}", s.source.as_str(), s.domain);
    let how = match s.source {
        Source::Imported => format!("import a renewed one (`cert csr {}` gives the request to sign)", s.domain),
        _ => format!("renew it, or `cert generate {}` for a self-signed one", s.domain),
    };
    if days < 0 {
        ("certificate-expired", format!("{what} expired on {}: clients refuse it; {how}", human_time(s.not_after)))
    } else {
        let n = if days == 1 { "1 day".to_string() } else { format!("{days} days") };
        ("certificate-expiring", format!("{what} expires in {n}, on {}: {how}", human_time(s.not_after)))
    }
}

impl Hosting {
    /// One upkeep of every domain's certificate (see the module doc). Slow parts (signing, the
    /// files) run here: call it from the worker, as the housekeeping pass does.
    pub fn certificate_upkeep(&self, target: Option<&InstallTarget>) -> Result<CertificateUpkeep> {
        let mut done = CertificateUpkeep::default();
        self.generate_for_verified(&mut done)?;
        // ACME certificates due are renewed first (see `crate::acme`), so that the expiry
        // notices below see the new ones; a failed renewal comes with its own notice.
        match self.acme_renew_due() {
            Ok(renewals) => {
                for r in renewals {
                    if let Some(info) = r.renewed {
                        done.acme_renewed.push(Renewal {
                            domain: r.domain,
                            fingerprint: info.fingerprint,
                            not_after: info.not_after,
                        });
                    } else if let Some(text) = r.notice {
                        done.notices.extend(notices("certificate-acme-failed", &r.domain, r.owner.as_deref(), text));
                        done.failed.push((r.domain, r.error.unwrap_or_default()));
                    }
                }
            }
            Err(e) => done.failed.push(("(ACME renewals)".into(), e.to_string())),
        }
        let now = self.now();
        let stored = self.store().read(crate::store::certificates::select_all)?;
        let notified = self.store().read(crate::store::certificates::expiry_notified)?;
        for s in stored {
            let owner = self.require_domain(&s.domain).ok().and_then(|d| d.settings.owner);
            if s.source == Source::SelfSigned && renewal_due(&s, now) {
                match self.renew(&s, now) {
                    Ok(Some(r)) => {
                        let text = format!(
                            "The self-signed certificate of {} was renewed: its SHA-256 fingerprint is now {} \
                             (valid until {}); clients that pinned the old one, and the domain's POSH files, \
                             must be updated",
                            r.domain,
                            r.fingerprint.sha256_hex,
                            human_time(r.not_after)
                        );
                        done.notices.extend(notices("certificate-renewed", &r.domain, owner.as_deref(), text));
                        done.renewed.push(r);
                        continue;
                    }
                    // Changed by someone else meanwhile: the next pass looks at the new one.
                    Ok(None) => continue,
                    Err(e) => done.failed.push((s.domain.clone(), e.to_string())),
                }
            }
            let days = days_left(s.not_after, now);
            let Some(t) = threshold(days) else { continue };
            // An ACME certificate is renewed here from 30 days left, and a failed renewal has
            // its own notice (above): the 31-day warning would only alarm. 7 and 1 days stand.
            if t == NOTICE_DAYS[0] && self.acme_managed(&s.domain).unwrap_or(false) {
                continue;
            }
            if notified.get(&s.domain).is_some_and(|&n| n <= t) {
                continue;
            }
            let (event, text) = expiry_text(&s, days);
            done.notices.extend(notices(event, &s.domain, owner.as_deref(), text));
            self.store()
                .write(|tx| crate::store::certificates::set_expiry_notified(tx, &s.domain, &s.sha256_hex, t))?;
        }
        if let Some(target) = target {
            done.installed = Some(self.install_certificates(&target.dir, target.layout)?);
        }
        Ok(done)
    }

    /// A new self-signed certificate with `s`'s key and validity length; `None` when the stored
    /// certificate changed since `s` was read (a generate or an import won: it stays).
    fn renew(&self, s: &StoredCertificate, now: Timestamp) -> Result<Option<Renewal>> {
        let names = self.certificate_names(&s.domain)?;
        let days = ((s.not_after - s.not_before + 43_200) / 86_400).clamp(1, super::MAX_DAYS);
        let (cert_pem, not_before, not_after) = make(&names, &s.key, days, now)?;
        let der = super::first_der(&cert_pem)?;
        let fingerprint = Fingerprint::of_der(&der);
        let renewed = StoredCertificate {
            cert_pem,
            chain_pem: String::new(),
            not_before,
            not_after,
            sha256_hex: fingerprint.sha256_hex.clone(),
            updated_at: now,
            ..s.clone()
        };
        let stored = self.store().write(|tx| match crate::store::certificates::select(tx, &s.domain)? {
            Some(current) if current.sha256_hex == s.sha256_hex => {
                crate::store::certificates::upsert(tx, &renewed).map(|_| true)
            }
            _ => Ok(false),
        })?;
        Ok(stored.then(|| Renewal { domain: s.domain.clone(), fingerprint, not_after }))
    }

    /// A self-signed certificate for each hosted customer's domain that has none yet.
    fn generate_for_verified(&self, done: &mut CertificateUpkeep) -> Result<()> {
        let hosted: std::collections::BTreeSet<String> = self
            .claims(None)?
            .into_iter()
            .filter(|c| matches!(c.state, ClaimState::Verified | ClaimState::Lost))
            .map(|c| c.domain)
            .collect();
        if hosted.is_empty() {
            return Ok(());
        }
        let have: std::collections::HashSet<String> =
            self.store().read(crate::store::certificates::select_all)?.into_iter().map(|s| s.domain).collect();
        for domain in hosted.into_iter().filter(|d| !have.contains(d)) {
            let made = self.certificate_names(&domain).and_then(|names: CertificateNames| {
                let s = new_self_signed(&names, GenerateOptions::default(), self.now())?;
                // Only if none appeared meanwhile (an import or a generate in another process).
                self.store().write(|tx| match crate::store::certificates::select(tx, &domain)? {
                    None => crate::store::certificates::upsert(tx, &s).map(|_| true),
                    Some(_) => Ok(false),
                })
            });
            match made {
                Ok(true) => done.generated.push(domain),
                Ok(false) => {}
                Err(e) => done.failed.push((domain, e.to_string())),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificates::Layout;
    use crate::ManualClock;

    const NOW: Timestamp = 1_800_000_000;
    const DAY: i64 = 86_400;

    fn hosting() -> (Hosting, ManualClock) {
        let clock = ManualClock::new(NOW);
        let h = Hosting::open_in_memory().unwrap().with_clock(clock.clone());
        h.add_domain("example.org").unwrap();
        (h, clock)
    }

    #[test]
    fn check_says_no_under_a_week() {
        let (h, clock) = hosting();
        assert!(h.check_certificates().unwrap().ok);
        h.generate_certificate("example.org", GenerateOptions { days: 30, ..Default::default() }).unwrap();
        let c = h.check_certificates().unwrap();
        assert!(c.ok && c.text.ends_with("1 certificate(s), none expiring within 7 days"), "{}", c.text);
        assert!(c.text.ends_with(&c.verdict) && c.verdict.starts_with("1 certificate(s)"), "{}", c.verdict);
        clock.advance(23 * DAY + 1);
        let c = h.check_certificates().unwrap();
        assert!(!c.ok);
        assert_eq!(c.verdict, "1 certificate(s); expiring within 7 days: example.org");
        assert!(
            c.text.contains("6 days left") && c.text.ends_with("expiring within 7 days: example.org"),
            "{}",
            c.text
        );
    }

    #[test]
    fn thresholds() {
        assert_eq!(threshold(32), None);
        assert_eq!(threshold(31), Some(31));
        assert_eq!(threshold(8), Some(31));
        assert_eq!(threshold(7), Some(7));
        assert_eq!(threshold(1), Some(1));
        assert_eq!(threshold(0), Some(1));
        assert_eq!(threshold(-1), Some(0));
    }

    #[test]
    fn self_signed_is_renewed_with_the_same_key_and_announced() {
        let (h, clock) = hosting();
        h.set_domain_setting("example.org", "owner", "alice@example.net").unwrap();
        let first = h.generate_certificate("example.org", GenerateOptions::default()).unwrap();
        let key_before = h.stored_certificate("example.org").unwrap().key;
        clock.advance(300 * DAY);
        let quiet = h.certificate_upkeep(None).unwrap();
        assert!(quiet.renewed.is_empty() && quiet.notices.is_empty(), "{quiet:?}");
        clock.advance(34 * DAY); // 31 days left
        let up = h.certificate_upkeep(None).unwrap();
        assert_eq!(up.renewed.len(), 1);
        let now = h.certificate("example.org").unwrap();
        assert_ne!(now.fingerprint, first.fingerprint);
        assert_eq!(up.renewed[0].fingerprint, now.fingerprint);
        assert_eq!(now.days_left, 365);
        assert_eq!(h.stored_certificate("example.org").unwrap().key, key_before);
        let to: Vec<_> = up.notices.iter().map(|n| (n.to, n.event, n.account.as_str())).collect();
        assert_eq!(
            to,
            [
                (Recipients::Admins, "certificate-renewed", "alice@example.net"),
                (Recipients::Owner, "certificate-renewed", "alice@example.net")
            ]
        );
        assert!(up.notices[0].text.contains(&now.fingerprint.sha256_hex), "{}", up.notices[0].text);
        assert!(h.certificate_upkeep(None).unwrap().renewed.is_empty(), "renewed once");
    }

    #[test]
    fn a_short_self_signed_certificate_is_renewed_at_a_third_not_at_every_pass() {
        let (h, clock) = hosting();
        h.generate_certificate("example.org", GenerateOptions { days: 30, ..Default::default() }).unwrap();
        assert!(h.certificate_upkeep(None).unwrap().renewed.is_empty());
        clock.advance(19 * DAY);
        assert!(h.certificate_upkeep(None).unwrap().renewed.is_empty());
        clock.advance(DAY + 3600);
        assert_eq!(h.certificate_upkeep(None).unwrap().renewed.len(), 1);
        assert!(h.certificate_upkeep(None).unwrap().renewed.is_empty());
    }

    /// An imported certificate valid until NOW + `days` days.
    fn import_for(h: &Hosting, days: i64) {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, "Throwaway CA");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
        let key = h.stored_certificate("example.org").unwrap().key.key_pair().unwrap();
        let mut leaf = CertificateParams::new(vec!["example.org".to_string()]).unwrap();
        leaf.not_before = ::time::OffsetDateTime::from_unix_timestamp(NOW - DAY).unwrap();
        leaf.not_after = ::time::OffsetDateTime::from_unix_timestamp(NOW + days * DAY).unwrap();
        let pem = format!("{}{}", leaf.signed_by(&key, &ca).unwrap().pem(), ca.pem());
        h.import_certificate("example.org", &pem).unwrap();
    }

    #[test]
    fn an_imported_certificate_is_warned_about_once_per_threshold_and_never_renewed() {
        let (h, clock) = hosting();
        h.set_domain_setting("example.org", "owner", "alice@example.net").unwrap();
        h.generate_certificate("example.org", GenerateOptions::default()).unwrap();
        import_for(&h, 60);
        let events = |h: &Hosting| -> Vec<(Recipients, &'static str, String)> {
            h.certificate_upkeep(None).unwrap().notices.into_iter().map(|n| (n.to, n.event, n.text)).collect()
        };
        assert!(events(&h).is_empty());
        clock.advance(29 * DAY); // 31 days left
        let at31 = events(&h);
        assert_eq!(at31.len(), 2, "{at31:?}");
        assert_eq!((at31[0].0, at31[1].0), (Recipients::Admins, Recipients::Owner));
        assert!(at31[0].2.starts_with("The imported certificate of example.org expires in 31 days, on "), "{at31:?}");
        assert!(events(&h).is_empty(), "once");
        clock.advance(20 * DAY); // 11 days left: still the 31-day notice
        assert!(events(&h).is_empty());
        clock.advance(4 * DAY); // 7
        assert!(events(&h)[0].2.contains("expires in 7 days"));
        clock.advance(6 * DAY); // 1
        assert!(events(&h)[0].2.contains("expires in 1 day,"));
        assert!(events(&h).is_empty());
        clock.advance(2 * DAY);
        let expired = events(&h);
        assert_eq!(expired[0].1, "certificate-expired");
        assert!(expired[0].2.contains("clients refuse it"), "{expired:?}");
        assert_eq!(h.certificate("example.org").unwrap().source, Source::Imported, "never replaced");
        assert!(events(&h).is_empty());
    }

    #[test]
    fn a_new_certificate_starts_its_notices_again() {
        let (h, clock) = hosting();
        h.generate_certificate("example.org", GenerateOptions::default()).unwrap();
        import_for(&h, 5);
        assert_eq!(h.certificate_upkeep(None).unwrap().notices.len(), 1, "admins only: no owner");
        h.generate_certificate("example.org", GenerateOptions::default()).unwrap();
        import_for(&h, 5);
        assert_eq!(h.certificate_upkeep(None).unwrap().notices.len(), 1);
        clock.advance(0);
    }

    #[test]
    fn a_verified_customer_domain_gets_a_certificate_and_it_is_installed() {
        let (h, _clock) = hosting();
        let claim = h.claim_domain("her-name.org", "alice@example.net").unwrap();
        h.override_claim(&claim.domain, &claim.account, "test").unwrap();
        let dir = std::env::temp_dir().join(format!("xh-cert-upkeep-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let target = InstallTarget { dir: dir.clone(), layout: Layout::Prosody };
        let up = h.certificate_upkeep(Some(&target)).unwrap();
        assert_eq!(up.generated, ["her-name.org"]);
        assert_eq!(up.installed.unwrap().installed, ["her-name.org"]);
        assert!(dir.join("her-name.org.key").exists());
        let again = h.certificate_upkeep(Some(&target)).unwrap();
        assert!(again.generated.is_empty() && !again.installed.unwrap().changed());
        h.remove_domain("her-name.org").unwrap();
        assert_eq!(h.certificate_upkeep(Some(&target)).unwrap().installed.unwrap().removed, ["her-name.org"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
