//! The domain's private key: ECDSA P-256 unless RSA 2048 is asked for.
//!
//! The key is kept as PKCS#8 PEM in the store and only ever leaves the core as a file written
//! with mode 0600 (see `export`): it is never part of a value handed to a binding, a JSON
//! output or a log line. [`DomainKey`]'s `Debug` says so too.

use rcgen::KeyPair;
use serde::Serialize;

use super::CertificateError;

/// The kind of key a domain's certificate uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    /// ECDSA on P-256 with SHA-256: small, fast, taken by every XMPP client in use.
    #[default]
    Ecdsa,
    /// RSA 2048 with SHA-256, for the rare client or CA that still wants RSA.
    Rsa,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Ecdsa => "ecdsa",
            KeyKind::Rsa => "rsa",
        }
    }

    /// `ecdsa` or `rsa`, as the commands take it.
    pub fn parse(s: &str) -> Result<Self, CertificateError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ecdsa" | "ec" | "p-256" | "p256" => Ok(KeyKind::Ecdsa),
            "rsa" | "rsa2048" => Ok(KeyKind::Rsa),
            other => Err(CertificateError::UnknownKeyKind(other.to_string())),
        }
    }
}

/// A private key, PKCS#8 PEM.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct DomainKey {
    pub kind: KeyKind,
    pub pem: String,
}

impl std::fmt::Debug for DomainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DomainKey({}, private key not shown)", self.kind.as_str())
    }
}

/// RSA key size: 2048 bits, what prosodyctl makes and every CA signs.
const RSA_BITS: usize = 2048;

impl DomainKey {
    pub fn generate(kind: KeyKind) -> Result<Self, CertificateError> {
        let pem = match kind {
            KeyKind::Ecdsa => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                .map_err(|e| CertificateError::Internal(format!("key generation failed: {e}")))?
                .serialize_pem(),
            KeyKind::Rsa => {
                use rsa::pkcs8::{EncodePrivateKey, LineEnding};
                let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, RSA_BITS)
                    .map_err(|e| CertificateError::Internal(format!("RSA key generation failed: {e}")))?;
                key.to_pkcs8_pem(LineEnding::LF)
                    .map_err(|e| CertificateError::Internal(format!("RSA key encoding failed: {e}")))?
                    .to_string()
            }
        };
        Ok(DomainKey { kind, pem })
    }

    /// The key as rcgen signs with it (ring picks ECDSA P-256 or RSA PKCS#1 SHA-256 from the key).
    pub fn key_pair(&self) -> Result<KeyPair, CertificateError> {
        KeyPair::from_pem(&self.pem).map_err(|e| CertificateError::Internal(format!("stored key unusable: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_key_round_trips_and_hides_itself() {
        let k = DomainKey::generate(KeyKind::Ecdsa).unwrap();
        assert!(k.pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(k.key_pair().unwrap().algorithm(), &rcgen::PKCS_ECDSA_P256_SHA256);
        assert!(!format!("{k:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn kinds_parse() {
        assert_eq!(KeyKind::parse("RSA").unwrap(), KeyKind::Rsa);
        assert_eq!(KeyKind::parse("ecdsa").unwrap(), KeyKind::Ecdsa);
        assert!(matches!(KeyKind::parse("dsa"), Err(CertificateError::UnknownKeyKind(_))));
    }
}
