//! POSH (RFC 7711, XMPP use in RFC 7712): the customer publishes the served certificate's
//! fingerprint on their own https site, at `/.well-known/posh/xmpp-client.json` and
//! `xmpp-server.json`; a client that fetched it over verified https trusts the certificate.
//!
//! Nothing is fetched here: the check takes the text the customer says they published.

use base64::Engine;
use serde::Serialize;
use sha2::Digest;

use super::{first_der, CertificateError};
use crate::{Hosting, Result};

/// Longest `expires` written: a week, so clients pick up a renewed certificate's file soon after
/// the customer republishes it, and fetch at most once a week meanwhile.
pub const MAX_EXPIRES: i64 = 7 * 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PoshService {
    Client,
    Server,
}

impl PoshService {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "client" | "xmpp-client" => Some(PoshService::Client),
            "server" | "xmpp-server" => Some(PoshService::Server),
            _ => None,
        }
    }

    /// Where the customer publishes it on their https site.
    pub fn well_known_path(self) -> &'static str {
        match self {
            PoshService::Client => "/.well-known/posh/xmpp-client.json",
            PoshService::Server => "/.well-known/posh/xmpp-server.json",
        }
    }
}

/// What the check of a published POSH file found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoshCheck {
    /// One of its fingerprints is the served certificate's.
    pub matches: bool,
    /// The hash that matched (`sha-256`...).
    pub matched: Option<String>,
    /// A redirecting file (`{"url": ..., "expires": ...}`): the check must be run on that file.
    pub redirect: Option<String>,
    /// Everything wrong with it, in the admin's words; empty when all is well.
    pub problems: Vec<String>,
}

/// Hashes POSH names, strongest first as validators try them. SHA-1 is left out: a match on it
/// alone would not be worth trusting.
fn digest(name: &str, der: &[u8]) -> Option<Vec<u8>> {
    Some(match name {
        "sha-512" => sha2::Sha512::digest(der).to_vec(),
        "sha-384" => sha2::Sha384::digest(der).to_vec(),
        "sha-256" => sha2::Sha256::digest(der).to_vec(),
        "sha-224" => sha2::Sha224::digest(der).to_vec(),
        _ => return None,
    })
}

/// The POSH file for a certificate, `expires` seconds of caching.
pub fn posh_json(der: &[u8], expires: i64) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(der));
    serde_json::json!({ "fingerprints": [{ "sha-256": b64 }], "expires": expires.max(0) }).to_string()
}

/// Compares a published POSH file with the served certificate's DER.
pub fn check_posh(text: &str, der: &[u8]) -> Result<PoshCheck, CertificateError> {
    let v: serde_json::Value =
        serde_json::from_str(text.trim()).map_err(|e| CertificateError::InvalidPosh(format!("not JSON: {e}")))?;
    let obj = v.as_object().ok_or_else(|| CertificateError::InvalidPosh("not a JSON object".into()))?;
    let mut out = PoshCheck { matches: false, matched: None, redirect: None, problems: Vec::new() };
    match obj.get("expires") {
        Some(e) if e.as_i64().is_some_and(|n| n > 0) => {}
        Some(e) => out.problems.push(format!("\"expires\" is {e}: it must be a positive number of seconds")),
        None => out.problems.push("\"expires\" is missing: clients would not know how long to keep it".into()),
    }
    if let Some(url) = obj.get("url") {
        let url = url.as_str().unwrap_or_default().to_string();
        out.problems.push(format!("the file redirects to {url}: publish the fingerprints there, or here instead"));
        out.redirect = Some(url);
        return Ok(out);
    }
    let fps = obj
        .get("fingerprints")
        .and_then(|f| f.as_array())
        .ok_or_else(|| CertificateError::InvalidPosh("no \"fingerprints\" list".into()))?;
    for fp in fps {
        let Some(fp) = fp.as_object() else {
            out.problems.push(format!("fingerprint {fp} is not an object"));
            continue;
        };
        for (name, value) in fp {
            let name = name.to_ascii_lowercase();
            let Some(want) = digest(&name, der) else {
                out.problems.push(format!("hash {name:?} is not checked (use sha-256)"));
                continue;
            };
            let given = value.as_str().and_then(|s| base64::engine::general_purpose::STANDARD.decode(s.trim()).ok());
            match given {
                None => out.problems.push(format!("{name} value {value} is not base64")),
                Some(g) if g == want => {
                    out.matches = true;
                    out.matched.get_or_insert(name);
                }
                Some(_) => {}
            }
        }
    }
    if !out.matches {
        let b64 = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(der));
        out.problems.push(format!(
            "no fingerprint in it is the served certificate's (its sha-256 is {b64}): publish the current file"
        ));
    }
    Ok(out)
}

impl Hosting {
    /// The POSH file `domain`'s customer publishes (the same for client and server; the service
    /// only names where it goes).
    pub fn certificate_posh(&self, domain: &str, _service: PoshService) -> Result<String> {
        let s = self.stored_certificate(domain)?;
        let der = first_der(&s.cert_pem)?;
        Ok(posh_json(&der, (s.not_after - self.now()).min(MAX_EXPIRES)))
    }

    /// Compares the POSH file the customer published (as text) with `domain`'s served certificate.
    pub fn check_certificate_posh(&self, domain: &str, published: &str) -> Result<PoshCheck> {
        let s = self.stored_certificate(domain)?;
        Ok(check_posh(published, &first_der(&s.cert_pem)?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificates::GenerateOptions;

    fn hosting() -> Hosting {
        let h = Hosting::open_in_memory().unwrap().with_clock(crate::ManualClock::new(1_800_000_000));
        h.add_domain("example.org").unwrap();
        h.generate_certificate("example.org", GenerateOptions { days: 30, ..Default::default() }).unwrap();
        h
    }

    #[test]
    fn served_file_checks_out() {
        let h = hosting();
        let json = h.certificate_posh("example.org", PoshService::Client).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["expires"], MAX_EXPIRES);
        let info = h.certificate("example.org").unwrap();
        assert_eq!(v["fingerprints"][0]["sha-256"], info.fingerprint.sha256_base64);
        let c = h.check_certificate_posh("example.org", &json).unwrap();
        assert!(c.matches && c.problems.is_empty(), "{c:?}");
        assert_eq!(c.matched.as_deref(), Some("sha-256"));
    }

    #[test]
    fn an_old_file_does_not_match() {
        let h = hosting();
        let old = h.certificate_posh("example.org", PoshService::Server).unwrap();
        h.generate_certificate("example.org", GenerateOptions::default()).unwrap();
        let c = h.check_certificate_posh("example.org", &old).unwrap();
        assert!(!c.matches);
        assert!(c.problems[0].contains("no fingerprint in it"), "{c:?}");
    }

    #[test]
    fn broken_files_are_named() {
        let h = hosting();
        let e = h.check_certificate_posh("example.org", "<html>").unwrap_err();
        assert!(matches!(e, crate::Error::Certificate(CertificateError::InvalidPosh(_))), "{e}");
        let c = h.check_certificate_posh("example.org", r#"{"fingerprints":[{"sha-256":"!!"}]}"#).unwrap();
        assert!(!c.matches);
        assert!(c.problems.iter().any(|p| p.contains("\"expires\" is missing")), "{c:?}");
        assert!(c.problems.iter().any(|p| p.contains("not base64")), "{c:?}");
        let c = h.check_certificate_posh("example.org", r#"{"url":"https://x.example/p.json","expires":60}"#).unwrap();
        assert_eq!(c.redirect.as_deref(), Some("https://x.example/p.json"));
    }
}
