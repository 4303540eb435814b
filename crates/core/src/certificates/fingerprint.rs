//! SHA-256 fingerprints of a certificate's DER, in the two forms people compare: colon-separated
//! hex (what clients such as Conversations show when asking to trust a certificate, and what
//! `openssl x509 -fingerprint -sha256` prints) and base64 (what POSH files carry).

use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fingerprint {
    /// `AB:CD:...`, upper case, 32 pairs.
    pub sha256_hex: String,
    /// Standard base64 with padding.
    pub sha256_base64: String,
}

impl Fingerprint {
    pub fn of_der(der: &[u8]) -> Self {
        let digest = Sha256::digest(der);
        let hex: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
        Fingerprint {
            sha256_hex: hex.join(":"),
            sha256_base64: base64::engine::general_purpose::STANDARD.encode(digest),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest() {
        // SHA-256 of the empty string.
        let f = Fingerprint::of_der(b"");
        assert!(f.sha256_hex.starts_with("E3:B0:C4:42:98:FC:1C:14"));
        assert_eq!(f.sha256_hex.len(), 32 * 3 - 1);
        assert_eq!(f.sha256_base64, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
    }
}
