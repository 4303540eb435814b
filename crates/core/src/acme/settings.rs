//! The operator's ACME values (`acme.*` in the provider settings): which CA, and how the
//! challenge TXT reaches the provider's own zone.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::DomainName;

/// `ProviderSettings::acme`. Nothing is issued until `directory_url`, `zone`, `dns_server`,
/// `tsig_key_name` and `tsig_secret_file` are set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AcmeSettings {
    /// The CA's ACME directory, e.g. `https://acme-v02.api.letsencrypt.org/directory`.
    pub directory_url: Option<String>,
    /// A PEM file with one more root to trust for the CA's https (a test CA such as pebble);
    /// without it the system's roots are used.
    pub ca_file: Option<String>,
    /// Where the CA writes about the account (expiry, policy changes): an e-mail address.
    pub contact: Option<String>,
    /// The provider's zone the customers' `_acme-challenge` CNAMEs point into:
    /// `_acme-challenge.<domain> CNAME <domain>.<zone>`.
    pub zone: Option<String>,
    /// `address:port` of the zone's primary server: it takes the RFC 2136 updates, and is asked
    /// whether the TXT is there before the CA is told to look.
    pub dns_server: Option<String>,
    /// The TSIG key the updates are signed with, as the DNS server knows it.
    pub tsig_key_name: Option<String>,
    /// `hmac-sha256` (default), `hmac-sha384` or `hmac-sha512`.
    pub tsig_algorithm: String,
    /// A file holding the key's base64 secret (mode 0600): kept out of the settings so that
    /// `provider show` never prints it.
    pub tsig_secret_file: Option<String>,
    /// Renew when the certificate has this many days left or fewer.
    pub renew_days: u32,
    /// Seconds to wait for the TXT to show on `dns_server` before giving up.
    pub propagation_timeout: u64,
}

impl Default for AcmeSettings {
    fn default() -> Self {
        AcmeSettings {
            directory_url: None,
            ca_file: None,
            contact: None,
            zone: None,
            dns_server: None,
            tsig_key_name: None,
            tsig_algorithm: "hmac-sha256".into(),
            tsig_secret_file: None,
            renew_days: 30,
            propagation_timeout: 120,
        }
    }
}

/// The TSIG algorithms hickory signs with.
pub(crate) const TSIG_ALGORITHMS: [&str; 3] = ["hmac-sha256", "hmac-sha384", "hmac-sha512"];

impl AcmeSettings {
    /// The settings that must still be set before anything can be issued, by name.
    pub(crate) fn missing(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        for (name, value) in [
            ("acme.directory_url", &self.directory_url),
            ("acme.zone", &self.zone),
            ("acme.dns_server", &self.dns_server),
            ("acme.tsig_key_name", &self.tsig_key_name),
            ("acme.tsig_secret_file", &self.tsig_secret_file),
        ] {
            if value.as_deref().is_none_or(|v| v.trim().is_empty()) {
                out.push(name);
            }
        }
        out
    }

    /// Values that parse but cannot work, by their path under `acme.` and why.
    pub(crate) fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut problem = |path: &str, why: String| out.push((path.to_string(), why));
        if let Some(url) = &self.directory_url {
            if !url.starts_with("https://") || url.len() <= "https://".len() {
                problem("directory_url", format!("{url:?} is not an https:// address (ACME runs over https only)"));
            }
        }
        if let Some(path) = &self.ca_file {
            if let Some(why) = file_problem(path) {
                problem("ca_file", format!("{path:?} {why}"));
            } else if !std::fs::read_to_string(path).is_ok_and(|t| t.contains("-----BEGIN CERTIFICATE-----")) {
                problem("ca_file", format!("{path:?} holds no PEM certificate"));
            }
        }
        if let Some(contact) = &self.contact {
            let ok = contact.split_once('@').is_some_and(|(user, host)| {
                !user.is_empty() && host.contains('.') && !contact.chars().any(|c| c.is_whitespace() || c.is_control())
            });
            if !ok {
                problem("contact", format!("{contact:?} is not an e-mail address"));
            }
        }
        if let Some(zone) = &self.zone {
            if let Err(e) = DomainName::parse(zone) {
                problem("zone", format!("{zone:?} is not a DNS zone: {e}"));
            }
        }
        if let Some(server) = &self.dns_server {
            if !server.parse::<SocketAddr>().is_ok_and(|a| a.port() != 0) {
                problem("dns_server", format!("{server:?} is not an address:port (e.g. 192.0.2.53:53)"));
            }
        }
        if let Some(name) = &self.tsig_key_name {
            if DomainName::parse(name).is_err() && !name.split('.').all(|l| !l.is_empty() && l.len() < 64) {
                problem("tsig_key_name", format!("{name:?} is not a key name (a DNS name such as acme-update.)"));
            }
        }
        if !TSIG_ALGORITHMS.contains(&self.tsig_algorithm.as_str()) {
            problem(
                "tsig_algorithm",
                format!("{:?} is not one of {}", self.tsig_algorithm, TSIG_ALGORITHMS.join(", ")),
            );
        }
        if let Some(path) = &self.tsig_secret_file {
            if let Some(why) = file_problem(path).or_else(|| read_secret(path).err()) {
                problem("tsig_secret_file", format!("{path:?} {why}"));
            }
        }
        if !(1..=89).contains(&self.renew_days) {
            problem("renew_days", format!("{} is not 1 to 89 days", self.renew_days));
        }
        if !(1..=3600).contains(&self.propagation_timeout) {
            problem("propagation_timeout", format!("{} is not 1 to 3600 seconds", self.propagation_timeout));
        }
        out
    }
}

/// Why `path` cannot be read by every process of the deployment, if it cannot.
fn file_problem(path: &str) -> Option<String> {
    if !std::path::Path::new(path).is_absolute() {
        return Some("is not an absolute path (the servers and the CLI run in different directories)".into());
    }
    std::fs::metadata(path).err().map(|e| format!("cannot be read: {e}"))
}

/// The TSIG secret in `path`: base64, surrounding white space ignored. The error never quotes
/// the file's content.
pub(crate) fn read_secret(path: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot be read: {e}"))?;
    let secret = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| "does not hold a base64 secret (the `secret:` value of the key, alone)".to_string())?;
    if secret.is_empty() {
        return Err("holds an empty secret".into());
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_values_are_named() {
        let dir = std::env::temp_dir().join(format!("xh-acme-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.key");
        std::fs::write(&good, "c2VjcmV0LXNlY3JldA==\n").unwrap();
        let bad = dir.join("bad.key");
        std::fs::write(&bad, "not base64 at all!").unwrap();
        let s = AcmeSettings {
            directory_url: Some("http://ca.example/dir".into()),
            contact: Some("nobody".into()),
            dns_server: Some("ns.example".into()),
            tsig_algorithm: "hmac-md5".into(),
            tsig_secret_file: Some(bad.display().to_string()),
            renew_days: 0,
            ..Default::default()
        };
        let paths: Vec<String> = s.problems().into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            paths,
            ["directory_url", "contact", "dns_server", "tsig_algorithm", "tsig_secret_file", "renew_days"]
        );
        let fine = AcmeSettings {
            directory_url: Some("https://ca.example/dir".into()),
            contact: Some("ops@provider.example".into()),
            zone: Some("acme.provider.example".into()),
            dns_server: Some("127.0.0.1:53".into()),
            tsig_key_name: Some("acme-update".into()),
            tsig_secret_file: Some(good.display().to_string()),
            ..Default::default()
        };
        assert!(fine.problems().is_empty(), "{:?}", fine.problems());
        assert!(fine.missing().is_empty());
        assert_eq!(read_secret(&good.display().to_string()).unwrap(), b"secret-secret");
        assert_eq!(AcmeSettings::default().missing().len(), 5);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
