//! Invite links, written exactly as Prosody's mod_invites and XEP-0401 write them, so that every
//! client that understands one server's invites understands ours.

/// Characters of a localpart that may stand in an XMPP URI without escaping (RFC 5122: the
/// unreserved set plus sub-delims that are not URI delimiters here).
fn is_uri_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$()*+,=".contains(&b)
}

fn escape_localpart(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if is_uri_safe(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `xmpp:DOMAIN?register;preauth=TOKEN`, or with a fixed username `xmpp:USER@DOMAIN?...`.
pub fn register_uri(domain: &str, username: Option<&str>, token: &str) -> String {
    match username {
        Some(u) => format!("xmpp:{}@{domain}?register;preauth={token}", escape_localpart(u)),
        None => format!("xmpp:{domain}?register;preauth={token}"),
    }
}

/// `xmpp:INVITER@DOMAIN?roster;preauth=TOKEN;ibr=y`: add the inviter, registering first if needed.
pub fn roster_uri(inviter_jid: &str, token: &str) -> String {
    let (local, domain) = inviter_jid.split_once('@').unwrap_or(("", inviter_jid));
    format!("xmpp:{}@{domain}?roster;preauth={token};ibr=y", escape_localpart(local))
}

/// Fills a landing-page template: `{domain}` and `{token}` are replaced.
pub fn landing_url(template: &str, domain: &str, token: &str) -> String {
    template.replace("{domain}", domain).replace("{token}", token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_match_mod_invites() {
        assert_eq!(register_uri("example.org", None, "T0k"), "xmpp:example.org?register;preauth=T0k");
        assert_eq!(register_uri("example.org", Some("bob"), "T"), "xmpp:bob@example.org?register;preauth=T");
        assert_eq!(roster_uri("alice@example.org", "T"), "xmpp:alice@example.org?roster;preauth=T;ibr=y");
    }

    #[test]
    fn localparts_are_escaped() {
        assert_eq!(register_uri("e.org", Some("a?b;c#d"), "T"), "xmpp:a%3Fb%3Bc%23d@e.org?register;preauth=T");
        assert_eq!(register_uri("e.org", Some("zoë"), "T"), "xmpp:zo%C3%AB@e.org?register;preauth=T");
    }

    #[test]
    fn landing_template() {
        assert_eq!(
            landing_url("https://{domain}/invite/{token}/", "example.org", "abc"),
            "https://example.org/invite/abc/"
        );
    }
}
