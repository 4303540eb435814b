//! Invite tokens: random, URL-safe, and stored only as a hash.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// 18 bytes = 144 bits from the OS CSPRNG, 24 base64url characters: the size Prosody's
/// mod_invites uses, above the 128 bits we promise.
const TOKEN_BYTES: usize = 18;

/// Tokens longer than this are refused before hashing; ours are 24 characters.
pub const MAX_TOKEN_LEN: usize = 128;

pub(crate) fn generate() -> crate::Result<String> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| crate::Error::Internal(format!("no OS randomness: {e}")))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The stored form of a token. The lookup is by this hash, so the time a lookup takes tells
/// nothing about how many characters of a guessed token were right.
pub(crate) fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Whether `token` could be one of ours at all; anything else is refused without a lookup.
pub(crate) fn is_well_formed(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= MAX_TOKEN_LEN
        && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_url_safe() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 24);
        assert!(is_well_formed(&a));
    }

    #[test]
    fn malformed_tokens_are_recognised() {
        assert!(!is_well_formed(""));
        assert!(!is_well_formed("abc def"));
        assert!(!is_well_formed("'; DROP TABLE invites; --"));
        assert!(!is_well_formed(&"a".repeat(10_000)));
        assert!(!is_well_formed("tökén"));
    }
}
