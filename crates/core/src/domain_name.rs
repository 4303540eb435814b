//! Domain names as we store and compare them.
//!
//! A customer may type `Bücher.Example.` or `xn--bcher-kva.example`; both name one domain, so a
//! [`DomainName`] is always the lower-case IDNA ASCII form, checked against the DNS rules that
//! matter for an XMPP host (RFC 1035 lengths, LDH labels, no IP literals).

use std::fmt;
use std::str::FromStr;

/// The longest name (without the trailing dot) that fits in a DNS message.
pub const MAX_NAME_LEN: usize = 253;
/// The longest label.
pub const MAX_LABEL_LEN: usize = 63;

/// A validated, case-folded, IDNA ASCII domain name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainName(String);

/// Why a string is not a domain name we can host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainNameError {
    #[error("the name is empty")]
    Empty,
    #[error("the name is {0} characters long; at most {MAX_NAME_LEN} are allowed")]
    TooLong(usize),
    #[error("label {0:?} is longer than {MAX_LABEL_LEN} characters")]
    LabelTooLong(String),
    #[error("the name has an empty label (two dots in a row, or a leading dot)")]
    EmptyLabel,
    #[error("label {label:?} contains {ch:?}; only letters, digits and '-' are allowed")]
    BadCharacter { label: String, ch: char },
    #[error("label {0:?} starts or ends with '-'")]
    HyphenAtEdge(String),
    #[error("{0:?} is an IP address, not a domain name")]
    IpLiteral(String),
    #[error("the name needs at least two labels (like example.org)")]
    SingleLabel,
    #[error("the name is not valid IDNA: {0}")]
    Idna(String),
}

impl DomainName {
    /// Parses and normalises a name typed by a person or read from a config.
    pub fn parse(input: &str) -> Result<Self, DomainNameError> {
        let trimmed = input.trim();
        // One trailing dot is the absolute form of the same name.
        let trimmed = trimmed.strip_suffix('.').unwrap_or(trimmed);
        if trimmed.is_empty() {
            return Err(DomainNameError::Empty);
        }
        // Refuse absurd inputs before IDNA processing allocates for them.
        if trimmed.len() > 4 * MAX_NAME_LEN {
            return Err(DomainNameError::TooLong(trimmed.chars().count()));
        }
        if is_ip_literal(trimmed) {
            return Err(DomainNameError::IpLiteral(trimmed.to_string()));
        }
        if trimmed.split('.').any(str::is_empty) {
            return Err(DomainNameError::EmptyLabel);
        }
        let ascii = if trimmed.is_ascii() {
            trimmed.to_ascii_lowercase()
        } else {
            idna::domain_to_ascii(trimmed).map_err(|e| DomainNameError::Idna(e.to_string()))?
        };
        check_ascii_name(&ascii)?;
        Ok(DomainName(ascii))
    }

    /// The ASCII (A-label) form, which is what the store and the DNS use.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The Unicode (U-label) form, for showing to people.
    pub fn to_unicode(&self) -> String {
        let (unicode, result) = idna::domain_to_unicode(&self.0);
        if result.is_ok() {
            unicode
        } else {
            self.0.clone()
        }
    }

    /// Builds a name from a value that the store wrote, which was validated on the way in.
    pub(crate) fn from_stored(s: String) -> Self {
        DomainName(s)
    }
}

fn is_ip_literal(s: &str) -> bool {
    let unbracketed = s.strip_prefix('[').and_then(|x| x.strip_suffix(']')).unwrap_or(s);
    unbracketed.parse::<std::net::IpAddr>().is_ok()
}

fn check_ascii_name(name: &str) -> Result<(), DomainNameError> {
    if name.len() > MAX_NAME_LEN {
        return Err(DomainNameError::TooLong(name.len()));
    }
    let labels: Vec<&str> = name.split('.').collect();
    for label in &labels {
        if label.is_empty() {
            return Err(DomainNameError::EmptyLabel);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(DomainNameError::LabelTooLong(label.to_string()));
        }
        if let Some(ch) = label.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-')) {
            return Err(DomainNameError::BadCharacter { label: label.to_string(), ch });
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(DomainNameError::HyphenAtEdge(label.to_string()));
        }
    }
    if labels.len() < 2 {
        return Err(DomainNameError::SingleLabel);
    }
    // An all-numeric last label is how a dotted IPv4 address (or a truncated one) looks.
    if labels.last().is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit())) {
        return Err(DomainNameError::IpLiteral(name.to_string()));
    }
    Ok(())
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for DomainName {
    type Err = DomainNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DomainName::parse(s)
    }
}

impl AsRef<str> for DomainName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> String {
        DomainName::parse(s).unwrap().as_str().to_string()
    }

    #[test]
    fn unicode_and_ascii_forms_are_one_domain() {
        assert_eq!(ok("Bücher.example"), "xn--bcher-kva.example");
        assert_eq!(ok("xn--bcher-kva.example"), "xn--bcher-kva.example");
        assert_eq!(ok("XN--BCHER-KVA.Example."), "xn--bcher-kva.example");
        assert_eq!(DomainName::parse("xn--bcher-kva.example").unwrap().to_unicode(), "bücher.example");
    }

    #[test]
    fn case_and_trailing_dot_are_folded() {
        assert_eq!(ok("  Example.ORG. "), "example.org");
    }

    #[test]
    fn bad_names_say_what_is_wrong() {
        use DomainNameError::*;
        let e = |s: &str| DomainName::parse(s).unwrap_err();
        assert_eq!(e(""), Empty);
        assert_eq!(e("."), Empty);
        assert_eq!(e("a..b"), EmptyLabel);
        assert_eq!(e(".a.b"), EmptyLabel);
        assert_eq!(e("localhost"), SingleLabel);
        assert!(matches!(e("127.0.0.1"), IpLiteral(_)));
        assert!(matches!(e("[::1]"), IpLiteral(_)));
        assert!(matches!(e("::1"), IpLiteral(_)));
        assert!(matches!(e("10.0.0"), IpLiteral(_)));
        assert!(matches!(e("-a.example"), HyphenAtEdge(_)));
        assert!(matches!(e("a_b.example"), BadCharacter { ch: '_', .. }));
        assert!(matches!(e("a b.example"), BadCharacter { ch: ' ', .. }));
        assert!(matches!(e("a;drop table domains.example"), BadCharacter { .. }));
        let long_label = format!("{}.example", "a".repeat(64));
        assert!(matches!(e(&long_label), LabelTooLong(_)));
        let long_name = vec!["a".repeat(60); 5].join(".");
        assert!(matches!(e(&long_name), TooLong(304)));
        assert!(matches!(e(&"x".repeat(100_000)), TooLong(_)));
    }

    #[test]
    fn longest_valid_name_is_accepted() {
        let name = format!("{}.{}.{}.{}", "a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(61));
        assert_eq!(name.len(), 253);
        assert_eq!(ok(&name), name);
    }
}
