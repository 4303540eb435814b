//! The challenge a customer publishes, and how an answer is recognised as the proof.

use serde::Serialize;

use super::state::Evidence;
use crate::dns::{plain, DnsProblem};

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
    /// For trusted certificates by ACME: the one CNAME that lets the provider answer the CA's
    /// DNS-01 challenges, when the provider has an ACME zone (`acme.zone`).
    pub acme_cname: Option<crate::acme::AcmeCname>,
}

pub(crate) fn instructions(domain: &str, token: &str, label: &str, provider_zone: Option<&str>) -> Instructions {
    Instructions {
        name: format!("{label}.{domain}"),
        txt: format!("verify={token}"),
        cname: provider_zone.map(|z| format!("{token}.v.{}", plain(z))),
        acme_cname: None,
    }
}

/// Whether the TXT values (strings already joined) or the CNAME target prove the claim.
pub(crate) fn proves(i: &Instructions, txt: &[String], cname: Option<&str>) -> bool {
    txt.iter().any(|v| v.trim() == i.txt)
        || matches!((cname, &i.cname), (Some(found), Some(want)) if plain(found) == plain(want))
}

/// What DNS said at the proof's name: every TXT value published there (strings joined), the
/// CNAME target, and the lookup that failed while the other answered, if one did. One look
/// serves every claim on the domain: all their proofs live at the same name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Seen {
    pub txt: Vec<String>,
    pub cname: Option<String>,
    pub problem: Option<DnsProblem>,
}

impl Seen {
    /// Whether this proves the claim that `i` describes. A failed lookup with no proof found
    /// proves nothing either way.
    pub(crate) fn evidence(&self, i: &Instructions) -> Evidence {
        if proves(i, &self.txt, self.cname.as_deref()) {
            Evidence::Found
        } else if self.problem.is_some() {
            Evidence::Unknown
        } else {
            Evidence::Absent
        }
    }
}

/// What was found instead of the proof `i` asks for, in the admin's words.
pub(crate) fn finding(i: &Instructions, seen: &Seen) -> String {
    let expected = match &i.cname {
        Some(target) => format!("expected TXT \"{}\" or CNAME to {target}", i.txt),
        None => format!("expected TXT \"{}\"", i.txt),
    };
    let mut found = Vec::new();
    if !seen.txt.is_empty() {
        const SHOWN: usize = 3;
        let mut values: Vec<String> = seen.txt.iter().take(SHOWN).map(|v| shown(v)).collect();
        if seen.txt.len() > SHOWN {
            values.push(format!("and {} more", seen.txt.len() - SHOWN));
        }
        found.push(format!("TXT {}", values.join(", ")));
    }
    if let Some(target) = &seen.cname {
        found.push(format!("CNAME to {}", shown_name(target)));
    }
    if found.is_empty() {
        let kinds = if i.cname.is_some() { "TXT or CNAME" } else { "TXT" };
        format!("no {kinds} record at {}; {expected}", i.name)
    } else {
        format!("found {} at {}, {expected}", found.join(" and "), i.name)
    }
}

/// A value from someone's zone, quoted, with control characters escaped and length bounded.
fn shown(value: &str) -> String {
    const LONGEST: usize = 80;
    let mut text: String = value.chars().take(LONGEST).collect();
    if value.chars().count() > LONGEST {
        text.push('…');
    }
    format!("{text:?}")
}

fn shown_name(name: &str) -> String {
    name.chars().take(255).flat_map(char::escape_debug).collect()
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

    #[test]
    fn the_finding_says_what_was_there_and_what_was_expected() {
        let i = instructions("bad.test", "bbb", "xmpp-hosting-verification", None);
        let seen = |txt: &[&str], cname: Option<&str>| Seen {
            txt: txt.iter().map(|t| t.to_string()).collect(),
            cname: cname.map(Into::into),
            problem: None,
        };
        assert_eq!(
            finding(&i, &seen(&["verify=aaa"], None)),
            r#"found TXT "verify=aaa" at xmpp-hosting-verification.bad.test, expected TXT "verify=bbb""#
        );
        assert_eq!(
            finding(&i, &seen(&[], None)),
            r#"no TXT record at xmpp-hosting-verification.bad.test; expected TXT "verify=bbb""#
        );
        let with_zone = instructions("bad.test", "bbb", "xmpp-hosting-verification", Some("p.example"));
        assert_eq!(
            finding(&with_zone, &seen(&[], Some("elsewhere.example"))),
            "found CNAME to elsewhere.example at xmpp-hosting-verification.bad.test, \
             expected TXT \"verify=bbb\" or CNAME to bbb.v.p.example"
        );
        // Someone else's zone cannot put control characters or a novel into an admin's terminal.
        let odd = finding(&i, &seen(&["a\u{1b}[2J", &"x".repeat(500), "c", "d"], None));
        assert!(odd.contains(r#""a\u{1b}[2J""#) && odd.contains("…\"") && odd.contains("and 1 more"), "{odd}");
        assert!(odd.len() < 300, "{odd}");
        assert_eq!(seen(&["verify=bbb"], None).evidence(&i), Evidence::Found);
        assert_eq!(seen(&["verify=aaa"], None).evidence(&i), Evidence::Absent);
        let failed = Seen { problem: Some(DnsProblem::Timeout), ..Default::default() };
        assert_eq!(failed.evidence(&i), Evidence::Unknown);
    }
}
