//! The challenge a customer publishes, and how an answer is recognised as the proof.

use serde::Serialize;

use crate::dns::plain;

const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// 160 random bits as 32 lower-case base32 characters: one DNS label that survives resolvers'
/// case changes and registrars that refuse `_` or upper case in CNAME targets.
pub(crate) fn new_token() -> crate::Result<String> {
    let mut bytes = [0u8; 20];
    getrandom::fill(&mut bytes).map_err(|e| crate::Error::Internal(format!("no OS randomness: {e}")))?;
    let mut out = String::with_capacity(32);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(BASE32[((acc >> bits) & 31) as usize] as char);
        }
    }
    Ok(out)
}

/// The records a customer may create to prove the claim: either one is enough.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instructions {
    /// Where the proof goes: `<label>.<domain>`.
    pub name: String,
    /// TXT value to publish there.
    pub txt: String,
    /// CNAME target to publish there instead, when the provider has a zone for it.
    pub cname: Option<String>,
}

pub(crate) fn instructions(domain: &str, token: &str, label: &str, provider_zone: Option<&str>) -> Instructions {
    Instructions {
        name: format!("{label}.{domain}"),
        txt: format!("verify={token}"),
        cname: provider_zone.map(|z| format!("{token}.v.{}", plain(z))),
    }
}

/// Whether the TXT values (strings already joined) or the CNAME target prove the claim.
pub(crate) fn proves(i: &Instructions, txt: &[String], cname: Option<&str>) -> bool {
    txt.iter().any(|v| v.trim() == i.txt)
        || matches!((cname, &i.cname), (Some(found), Some(want)) if plain(found) == plain(want))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_dns_safe_labels() {
        let t = new_token().unwrap();
        assert_eq!(t.len(), 32);
        assert!(t.bytes().all(|b| BASE32.contains(&b)));
        assert_ne!(t, new_token().unwrap());
    }

    #[test]
    fn proof_by_txt_or_cname() {
        let i = instructions("example.org", "abc", "xmpp-hosting-verification", Some("Provider.example."));
        assert_eq!(i.name, "xmpp-hosting-verification.example.org");
        assert_eq!(i.cname.as_deref(), Some("abc.v.provider.example"));
        assert!(proves(&i, &["verify=abc".into()], None));
        assert!(proves(&i, &["other".into(), " verify=abc ".into()], None));
        assert!(proves(&i, &[], Some("ABC.v.provider.example.")));
        assert!(!proves(&i, &["verify=abd".into()], Some("abd.v.provider.example")));
        let no_zone = instructions("example.org", "abc", "x", None);
        assert!(!proves(&no_zone, &[], Some("abc.v.provider.example")));
    }
}
