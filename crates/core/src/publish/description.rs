//! What an admin says about a domain that the server cannot know: who runs it, where, since
//! when, its rules, its links and its contacts. Stored in the domain's settings (section
//! `publication`), set with `publish set DOMAIN FIELD VALUE`, checked by [`Description::problems`]
//! before it is stored. What the server enforces (registration, limits, retention) is not here:
//! it is read from the enforcing settings ([`super::Enforced`]), so it cannot be typed twice.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::validate;

/// A text or a link per language, keyed by BCP 47 tag (`en`, `de-CH`).
pub type PerLanguage<T> = BTreeMap<String, T>;

/// Who runs the service, as the XMPP Providers format names the kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Organization {
    #[serde(rename = "company")]
    Company,
    #[serde(rename = "commercial person")]
    CommercialPerson,
    #[serde(rename = "private person")]
    PrivatePerson,
    #[serde(rename = "governmental")]
    Governmental,
    #[serde(rename = "non-governmental")]
    NonGovernmental,
}

impl Organization {
    /// The words a page shows.
    pub fn words(self) -> &'static str {
        match self {
            Organization::Company => "a company",
            Organization::CommercialPerson => "a person, commercially",
            Organization::PrivatePerson => "a private person",
            Organization::Governmental => "a governmental organization",
            Organization::NonGovernmental => "a non-governmental organization",
        }
    }
}

/// XEP-0157 contact addresses per role (`mailto:`, `xmpp:` or `https://` URIs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Contacts {
    pub abuse: Vec<String>,
    pub admin: Vec<String>,
    pub feedback: Vec<String>,
    pub sales: Vec<String>,
    pub security: Vec<String>,
    pub status: Vec<String>,
    pub support: Vec<String>,
}

impl Contacts {
    /// The roles in XEP-0157's order, with their addresses.
    pub fn roles(&self) -> [(&'static str, &[String]); 7] {
        [
            ("abuse", &self.abuse),
            ("admin", &self.admin),
            ("feedback", &self.feedback),
            ("sales", &self.sales),
            ("security", &self.security),
            ("status", &self.status),
            ("support", &self.support),
        ]
    }

    pub fn is_empty(&self) -> bool {
        self.roles().iter().all(|(_, a)| a.is_empty())
    }
}

/// A domain's description (`DomainSettings::publication`). Every field is optional: what is not
/// set is left out of what is published, never invented.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Description {
    /// What makes this service different, one or two sentences per language.
    pub description: PerLanguage<String>,
    /// The language of the policy page when the visitor's is not among those written; else `en`.
    pub language: Option<String>,
    /// The country whose law applies (ISO 3166-1 alpha-2).
    pub jurisdiction: Option<String>,
    /// Where the servers and backups are (ISO 3166-1 alpha-2).
    pub server_locations: Vec<String>,
    /// The day the service opened, `YYYY-MM-DD`.
    pub since: Option<String>,
    pub organization: Option<Organization>,
    /// How many people the service could not survive losing; unset for n/a.
    pub bus_factor: Option<u32>,
    /// Good connectivity, uninterruptible power, access protection and regular backups.
    pub professional_hosting: Option<bool>,
    pub free_of_charge: Option<bool>,
    /// Whether others may test the server (certificate checks, uptime monitoring).
    pub server_testing: Option<bool>,
    /// Other domains the same provider offers registration on.
    pub alternative_jids: Vec<String>,
    /// Short rules per language: they should fit one phone screen.
    pub rules: PerLanguage<Vec<String>>,
    pub website: PerLanguage<String>,
    pub terms: PerLanguage<String>,
    pub privacy: PerLanguage<String>,
    pub legal_notice: PerLanguage<String>,
    pub password_reset: PerLanguage<String>,
    pub data_export: PerLanguage<String>,
    pub account_deletion: PerLanguage<String>,
    /// Who else receives people's data (a mail relay, a push service...), named.
    pub third_parties: Vec<String>,
    pub contacts: Contacts,
    /// A group chat where users get help (`support@chat.example.org`).
    pub support_room: Option<String>,
}

/// More rules than fit a phone screen are refused: the guide asks for rules read at a glance.
pub const MAX_RULES: usize = 10;
/// The length of one rule or a description, in characters.
pub const MAX_RULE_CHARS: usize = 280;
pub const MAX_DESCRIPTION_CHARS: usize = 400;

impl Description {
    /// Values that parse but cannot be published, as (dotted path under `publication`, why).
    pub(crate) fn problems(&self) -> Vec<crate::settings::Problem> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut push = |path: String, why: Option<String>| {
            if let Some(why) = why {
                out.push((format!("publication.{path}"), why));
            }
        };
        let lang_keys = |field: &str, keys: Vec<&String>, push: &mut dyn FnMut(String, Option<String>)| {
            for k in keys {
                push(field.to_string(), validate::language_problem(k));
            }
        };
        lang_keys("description", self.description.keys().collect(), &mut push);
        for (lang, text) in &self.description {
            let n = text.chars().count();
            push(
                format!("description.{lang}"),
                (text.trim().is_empty() || n > MAX_DESCRIPTION_CHARS).then(|| {
                    format!("a description is one or two sentences: 1 to {MAX_DESCRIPTION_CHARS} characters, not {n}")
                }),
            );
        }
        if let Some(lang) = &self.language {
            push("language".into(), validate::language_problem(lang));
        }
        if let Some(c) = &self.jurisdiction {
            push("jurisdiction".into(), validate::country_problem(c));
        }
        for c in &self.server_locations {
            push("server_locations".into(), validate::country_problem(c));
        }
        if let Some(d) = &self.since {
            push("since".into(), validate::date_problem(d));
        }
        if self.bus_factor == Some(0) {
            push("bus_factor".into(), Some("a bus factor counts people: at least 1 (leave it unset for n/a)".into()));
        }
        for jid in &self.alternative_jids {
            push("alternative_jids".into(), crate::DomainName::parse(jid).err().map(|e| format!("{jid:?}: {e}")));
        }
        lang_keys("rules", self.rules.keys().collect(), &mut push);
        for (lang, rules) in &self.rules {
            if rules.len() > MAX_RULES {
                push(
                    format!("rules.{lang}"),
                    Some(format!("{} rules do not fit a phone screen: {MAX_RULES} at most", rules.len())),
                );
            }
            for rule in rules {
                let n = rule.chars().count();
                push(
                    format!("rules.{lang}"),
                    (rule.trim().is_empty() || n > MAX_RULE_CHARS)
                        .then(|| format!("a rule is 1 to {MAX_RULE_CHARS} characters, not {n}")),
                );
            }
        }
        for (field, links) in self.links() {
            lang_keys(field, links.keys().collect(), &mut push);
            for (lang, url) in links {
                push(format!("{field}.{lang}"), validate::https_url_problem(url).map(|why| format!("{url:?} {why}")));
            }
        }
        for party in &self.third_parties {
            push("third_parties".into(), party.trim().is_empty().then(|| "a third party needs a name".to_string()));
        }
        for (role, addresses) in self.contacts.roles() {
            for a in addresses {
                push(format!("contacts.{role}"), validate::contact_problem(a));
            }
        }
        if let Some(room) = &self.support_room {
            push("support_room".into(), validate::room_problem(room));
        }
        out
    }

    /// The link maps, named as their settings.
    pub fn links(&self) -> [(&'static str, &PerLanguage<String>); 7] {
        [
            ("website", &self.website),
            ("terms", &self.terms),
            ("privacy", &self.privacy),
            ("legal_notice", &self.legal_notice),
            ("password_reset", &self.password_reset),
            ("data_export", &self.data_export),
            ("account_deletion", &self.account_deletion),
        ]
    }

    /// The fields keyed by language, which `publish set` also takes one language at a time
    /// (`terms.en`).
    pub fn per_language_fields() -> [&'static str; 9] {
        [
            "description",
            "rules",
            "website",
            "terms",
            "privacy",
            "legal_notice",
            "password_reset",
            "data_export",
            "account_deletion",
        ]
    }

    /// This description with `field`'s entry for `lang` set to `value` (a text, a link, or for
    /// `rules` a JSON list of rules or one rule as plain text), or removed when `value` is
    /// `null`. The language is matched whatever its case (BCP 47 tags are case-insensitive), so
    /// `terms.EN` replaces `terms.en`. The value itself is checked with the rest of the
    /// settings, as when the whole map is set.
    pub(crate) fn with_language(&self, field: &str, lang: &str, value: &str) -> crate::Result<Description> {
        let bad = |why: String| crate::Error::InvalidArgument(format!("cannot set publication.{field}.{lang}: {why}"));
        let mut doc = serde_json::to_value(self).map_err(|e| bad(e.to_string()))?;
        let map = doc
            .get_mut(field)
            .and_then(serde_json::Value::as_object_mut)
            .ok_or_else(|| bad(format!("{field:?} is not set per language")))?;
        let existing = map.keys().find(|k| k.eq_ignore_ascii_case(lang)).cloned();
        let parsed = serde_json::from_str::<serde_json::Value>(value).ok();
        if parsed == Some(serde_json::Value::Null) {
            if let Some(key) = existing {
                map.remove(&key);
            }
        } else {
            if let Some(why) = validate::language_problem(lang) {
                return Err(bad(why));
            }
            let entry = match (field, parsed) {
                ("rules", Some(list @ serde_json::Value::Array(_))) => list,
                ("rules", Some(serde_json::Value::String(rule))) => serde_json::json!([rule]),
                ("rules", Some(other)) if !other.is_number() && !other.is_boolean() => {
                    return Err(bad(format!("{value} is not a list of rules: write [\"First rule.\", \"Second.\"]")))
                }
                ("rules", _) => serde_json::json!([value]),
                (_, Some(serde_json::Value::String(text))) => serde_json::Value::String(text),
                (_, Some(serde_json::Value::Array(_) | serde_json::Value::Object(_))) => {
                    let what = if field == "description" { "one text" } else { "one link" };
                    return Err(bad(format!("{value} is not {what}: the value for one language is {what}")));
                }
                _ => serde_json::Value::String(value.to_string()),
            };
            map.insert(existing.unwrap_or_else(|| lang.to_string()), entry);
        }
        serde_json::from_value(doc).map_err(|e| bad(e.to_string()))
    }

    /// The names `publish set` takes (the fields of this struct).
    pub fn fields() -> Vec<String> {
        match serde_json::to_value(Description::default()) {
            Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }
}

/// The best of `map`'s entries for a reader of `lang`: that language, then its primary language
/// (`de` for `de-CH`), then the description's own language, then English, then any.
pub(crate) fn pick<'a, T>(map: &'a PerLanguage<T>, lang: &str, fallback: &str) -> Option<(&'a str, &'a T)> {
    let primary = |t: &str| t.split('-').next().unwrap_or_default().to_ascii_lowercase();
    let find = |want: &str| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(want))
            .or_else(|| map.iter().find(|(k, _)| primary(k) == primary(want)))
    };
    find(lang)
        .or_else(|| find(fallback))
        .or_else(|| find("en"))
        .or_else(|| map.iter().next())
        .map(|(k, v)| (k.as_str(), v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn organizations_read_as_the_provider_format_writes_them() {
        for (text, org) in [
            ("company", Organization::Company),
            ("commercial person", Organization::CommercialPerson),
            ("private person", Organization::PrivatePerson),
            ("governmental", Organization::Governmental),
            ("non-governmental", Organization::NonGovernmental),
        ] {
            let json = format!("\"{text}\"");
            assert_eq!(serde_json::from_str::<Organization>(&json).unwrap(), org);
            assert_eq!(serde_json::to_string(&org).unwrap(), json);
        }
        assert!(serde_json::from_str::<Organization>("\"club\"").is_err());
    }

    #[test]
    fn nothing_set_has_no_problem_and_each_bad_value_names_its_field() {
        assert!(Description::default().problems().is_empty());
        let mut d = Description {
            jurisdiction: Some("uk".into()),
            server_locations: vec!["de".into(), "zz".into()],
            ..Default::default()
        };
        d.website.insert("english".into(), "https://example.org/".into());
        d.terms.insert("en".into(), "http://example.org/terms".into());
        d.bus_factor = Some(0);
        d.contacts.abuse = vec!["abuse@example.org".into()];
        d.rules.insert("en".into(), vec!["x".into(); MAX_RULES + 1]);
        let paths: Vec<String> = d.problems().into_iter().map(|(p, _)| p).collect();
        for want in [
            "publication.jurisdiction",
            "publication.server_locations",
            "publication.website",
            "publication.terms.en",
            "publication.bus_factor",
            "publication.contacts.abuse",
            "publication.rules.en",
        ] {
            assert!(paths.iter().any(|p| p == want), "{want} missing from {paths:?}");
        }
    }

    #[test]
    fn the_closest_language_is_picked() {
        let mut m = PerLanguage::new();
        m.insert("de".to_string(), 1);
        m.insert("en".to_string(), 2);
        m.insert("fr-CA".to_string(), 3);
        assert_eq!(pick(&m, "de-CH", "en"), Some(("de", &1)));
        assert_eq!(pick(&m, "fr", "en"), Some(("fr-CA", &3)));
        assert_eq!(pick(&m, "it", "de"), Some(("de", &1)));
        assert_eq!(pick(&m, "it", "pl"), Some(("en", &2)));
        assert_eq!(pick(&PerLanguage::<i32>::new(), "en", "en"), None);
    }
}
