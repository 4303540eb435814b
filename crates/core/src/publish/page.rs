//! The policy page: one HTML document per domain that a person reads on a phone, and the same
//! content as JSON for web portals. The rules come first (they must fit the first screen), then
//! how long data is kept, the upload limits and how registration works, all from the enforced
//! settings, then the account's own links (deletion in-band included), contacts, statistics and
//! who runs the service.
//!
//! Everything an admin typed is escaped; the page has no script, no external font, stylesheet
//! or image, and is valid HTML5. The fixed words are English; what the admin wrote is shown in
//! the reader's language when written in it, else the domain's language, else English.

use std::fmt::Write;

use serde::Serialize;

use super::description::{pick, Description, Organization};
use super::enforced::{period_words, size_words, Enforced};
use super::statistics::UsageStatistics;
use crate::retention::Period;

/// The page's content, shown as HTML or handed to a portal as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyDocument {
    pub domain: String,
    /// The language the admin's texts below are in (their tag as written).
    pub language: String,
    pub description: Option<String>,
    pub rules: Vec<String>,
    pub enforced: Enforced,
    /// Each kept kind and its period in words, in the page's order.
    pub retention: Vec<(String, String)>,
    /// Each upload limit in words.
    pub limits: Vec<(String, String)>,
    pub registration: String,
    /// How to delete the account from an XMPP app, always possible.
    pub account_deletion_in_band: String,
    /// Links by purpose (`terms`, `privacy`, `password_reset`...), in the reader's language.
    pub links: Vec<(String, String)>,
    pub contacts: Vec<(String, Vec<String>)>,
    pub statistics: UsageStatistics,
    pub about: Vec<(String, String)>,
    pub third_parties: Vec<String>,
    pub support_room: Option<String>,
}

/// How to delete an account in-band, the same on both servers (XEP-0077 `<remove/>`).
pub const IN_BAND_DELETION: &str = "You can delete your account yourself at any time from your XMPP app \
    (its account settings: \"Delete account\" or \"Remove account from server\"). This works even while \
    registration is closed. Deleting an account removes it, its contacts and its stored messages from this server.";

fn registration_words(e: &Enforced) -> String {
    use crate::invites::RegistrationPolicy::*;
    let who = if e.users_may_invite { "a user or an administrator" } else { "an administrator" };
    match e.registration {
        Open => "Anyone may create an account from an XMPP app; an invite works too.".into(),
        Invite => format!(
            "Accounts are created with an invite from {who}: open the invite link, or enter it in your XMPP app."
        ),
        Closed => "Registration is closed: new accounts are created by the administrators only.".into(),
    }
}

fn retention_rows(e: &Enforced) -> Vec<(String, String)> {
    let mut archive = period_words(e.archive_retention);
    if e.archive_retention == Period::Never {
        archive = "kept until you delete them (no time limit)".into();
    }
    if e.users_with_shorter_archive > 0 {
        archive.push_str(" (you may choose a shorter time for your own)");
    }
    vec![
        ("Your messages (archive)".into(), archive),
        ("Group chat archives".into(), period_words(e.muc_retention)),
        ("Uploaded files".into(), period_words(e.upload_retention)),
        ("Backups".into(), period_words(e.backup_retention)),
    ]
}

fn limit_rows(e: &Enforced) -> Vec<(String, String)> {
    let size = |b: Option<u64>| b.map_or_else(|| "no limit".to_string(), size_words);
    let mut rows = vec![
        ("Largest file".to_string(), size(e.max_file_size)),
        ("Storage per user".to_string(), size(e.user_storage)),
    ];
    for (what, v) in
        [("Uploads per day", e.user_daily), ("Uploads per week", e.user_weekly), ("Uploads per month", e.user_monthly)]
    {
        if v.is_some() {
            rows.push((what.into(), size(v)));
        }
    }
    if e.users_with_own_upload_limits > 0 {
        rows.push(("Users with their own limits".into(), e.users_with_own_upload_limits.to_string()));
    }
    rows
}

impl PolicyDocument {
    pub(crate) fn new(domain: &str, d: &Description, e: &Enforced, stats: UsageStatistics, reader: &str) -> Self {
        let own = d.language.as_deref().unwrap_or("en");
        let reader = if reader.trim().is_empty() { own } else { reader };
        // The page's language: the one the rules are in, else the description's.
        let rules = pick(&d.rules, reader, own);
        let description = pick(&d.description, reader, own);
        let language = rules.map(|(l, _)| l).or(description.map(|(l, _)| l)).unwrap_or(own).to_string();
        let links = d
            .links()
            .into_iter()
            .filter_map(|(what, m)| pick(m, reader, own).map(|(_, url)| (what.to_string(), url.clone())))
            .collect();
        let country = |c: &str| {
            isocountry::CountryCode::for_alpha2_caseless(c).map_or_else(|_| c.to_string(), |cc| cc.name().to_string())
        };
        let mut about = Vec::new();
        if let Some(c) = &d.jurisdiction {
            about.push(("Jurisdiction".into(), country(c)));
        }
        if !d.server_locations.is_empty() {
            let names: Vec<String> = d.server_locations.iter().map(|c| country(c)).collect();
            about.push(("Servers and backups in".into(), names.join(", ")));
        }
        if let Some(since) = &d.since {
            about.push(("Running since".into(), since.clone()));
        }
        if let Some(org) = d.organization {
            about.push(("Run by".into(), Organization::words(org).into()));
        }
        if let Some(n) = d.bus_factor {
            about.push(("Bus factor".into(), format!("{n} (people the service could not do without)")));
        }
        for (what, v) in [("Professional hosting", d.professional_hosting), ("Free of charge", d.free_of_charge)] {
            if let Some(v) = v {
                about.push((what.into(), if v { "yes" } else { "no" }.into()));
            }
        }
        PolicyDocument {
            domain: domain.to_string(),
            language,
            description: description.map(|(_, t)| t.clone()),
            rules: rules.map(|(_, r)| r.clone()).unwrap_or_default(),
            retention: retention_rows(e),
            limits: limit_rows(e),
            registration: registration_words(e),
            account_deletion_in_band: IN_BAND_DELETION.into(),
            links,
            contacts: d
                .contacts
                .roles()
                .iter()
                .filter(|(_, a)| !a.is_empty())
                .map(|(r, a)| (r.to_string(), a.to_vec()))
                .collect(),
            statistics: stats.approximate(),
            about,
            third_parties: d.third_parties.clone(),
            support_room: d.support_room.clone(),
            enforced: e.clone(),
        }
    }

    /// The page as HTML5.
    pub fn to_html(&self) -> String {
        let mut h = String::with_capacity(8192);
        let lang = esc(&self.language);
        let _ = write!(
            h,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{d}: rules and policies</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n\
             <h1>{d}</h1>\n",
            d = esc(&self.domain)
        );
        if let Some(text) = &self.description {
            let _ = writeln!(h, "<p class=\"lead\" lang=\"{lang}\">{}</p>", esc(text));
        }
        h.push_str("<section id=\"rules\">\n<h2>Rules</h2>\n");
        if self.rules.is_empty() {
            h.push_str("<p>No rules are published for this server beyond its terms.</p>\n");
        } else {
            let _ = writeln!(h, "<ol lang=\"{lang}\">");
            for rule in &self.rules {
                let _ = writeln!(h, "<li>{}</li>", esc(rule));
            }
            h.push_str("</ol>\n");
        }
        h.push_str("</section>\n");
        table(&mut h, "retention", "How long data is kept", &self.retention);
        table(&mut h, "limits", "Upload limits", &self.limits);
        let _ = writeln!(
            h,
            "<section id=\"registration\">\n<h2>Registration</h2>\n<p>{}</p>\n</section>",
            esc(&self.registration)
        );
        let _ = writeln!(
            h,
            "<section id=\"account\">\n<h2>Your account</h2>\n<p id=\"delete-in-band\">{}</p>",
            esc(&self.account_deletion_in_band)
        );
        let account_links: Vec<&(String, String)> = self
            .links
            .iter()
            .filter(|(w, _)| matches!(w.as_str(), "password_reset" | "data_export" | "account_deletion"))
            .collect();
        links(&mut h, &account_links);
        h.push_str("</section>\n");
        if !self.contacts.is_empty() || self.support_room.is_some() {
            h.push_str("<section id=\"contacts\">\n<h2>Contacts</h2>\n<dl>\n");
            for (role, addresses) in &self.contacts {
                let _ = writeln!(h, "<dt>{}</dt>", esc(&capitalised(role)));
                for a in addresses {
                    let _ = writeln!(h, "<dd><a href=\"{u}\">{t}</a></dd>", u = esc(a), t = esc(shown_address(a)));
                }
            }
            if let Some(room) = &self.support_room {
                let _ = writeln!(h, "<dt>Support chat</dt>\n<dd><a href=\"xmpp:{r}?join\">{r}</a></dd>", r = esc(room));
            }
            h.push_str("</dl>\n</section>\n");
        }
        let s = &self.statistics;
        let stats: Vec<(String, String)> =
            [("Accounts", s.accounts), ("Active in a day", s.daily_active), ("Active in a month", s.monthly_active)]
                .into_iter()
                .filter_map(|(w, n)| {
                    n.map(|n| (w.to_string(), if n == 0 { "none".into() } else { format!("about {n}") }))
                })
                .collect();
        if !stats.is_empty() {
            table(&mut h, "statistics", "Statistics", &stats);
        }
        let mut about = self.about.clone();
        if !self.third_parties.is_empty() {
            about.push(("Third parties receiving data".into(), self.third_parties.join(", ")));
        }
        if !about.is_empty() {
            table(&mut h, "about", "About this service", &about);
        }
        let legal: Vec<&(String, String)> = self
            .links
            .iter()
            .filter(|(w, _)| matches!(w.as_str(), "website" | "terms" | "privacy" | "legal_notice"))
            .collect();
        if !legal.is_empty() {
            h.push_str("<section id=\"legal\">\n<h2>Terms and privacy</h2>\n");
            links(&mut h, &legal);
            h.push_str("</section>\n");
        }
        h.push_str("</main>\n</body>\n</html>\n");
        h
    }

    /// The same content as JSON, for web portals.
    pub fn to_json(&self) -> String {
        // Plain data: serialising it cannot fail.
        serde_json::to_string_pretty(self).expect("policy serialises")
    }
}

/// Phone first: one column, system fonts, long addresses wrap; nothing loaded from elsewhere.
const STYLE: &str = "html{-webkit-text-size-adjust:100%}\
body{margin:0;font:16px/1.45 system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif;color:#1a1a1a;background:#fff}\
main{max-width:40rem;margin:0 auto;padding:.75rem 1rem 2rem}\
h1{font-size:1.35rem;margin:.2rem 0 .3rem;overflow-wrap:anywhere}\
h2{font-size:1.05rem;margin:1.1rem 0 .35rem;border-bottom:1px solid #ddd}\
.lead{margin:.2rem 0 .5rem;color:#333}\
ol{margin:.2rem 0;padding-left:1.4rem}li{margin:.15rem 0}\
dl{margin:0;display:grid;grid-template-columns:auto;gap:0}\
dt{font-weight:600;margin-top:.4rem}dd{margin:0 0 0 .8rem;overflow-wrap:anywhere}\
ul{padding-left:1.2rem;margin:.3rem 0}a{color:#0b57d0;overflow-wrap:anywhere}\
@media (prefers-color-scheme:dark){body{background:#111;color:#eee}.lead{color:#ccc}a{color:#8ab4f8}h2{border-color:#444}}";

fn table(h: &mut String, id: &str, title: &str, rows: &[(String, String)]) {
    let _ = writeln!(h, "<section id=\"{id}\">\n<h2>{}</h2>\n<dl>", esc(title));
    for (k, v) in rows {
        let _ = writeln!(h, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(v));
    }
    h.push_str("</dl>\n</section>\n");
}

fn links(h: &mut String, links: &[&(String, String)]) {
    if links.is_empty() {
        return;
    }
    h.push_str("<ul>\n");
    for (what, url) in links {
        let _ = writeln!(h, "<li><a href=\"{}\">{}</a></li>", esc(url), esc(link_words(what)));
    }
    h.push_str("</ul>\n");
}

fn link_words(what: &str) -> &'static str {
    match what {
        "website" => "Website",
        "terms" => "Terms of service",
        "privacy" => "Privacy policy",
        "legal_notice" => "Legal notice",
        "password_reset" => "Reset your password",
        "data_export" => "Export your data",
        "account_deletion" => "Delete your account on the web",
        _ => "Link",
    }
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next().map_or_else(String::new, |f| f.to_uppercase().collect::<String>() + c.as_str())
}

/// An address as people read it: without `mailto:`/`xmpp:`.
fn shown_address(uri: &str) -> &str {
    for scheme in ["mailto:", "xmpp:"] {
        if uri.len() > scheme.len() && uri[..scheme.len()].eq_ignore_ascii_case(scheme) {
            return &uri[scheme.len()..];
        }
    }
    uri
}

/// Text made safe inside HTML text and double- or single-quoted attributes.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // HTML allows no control characters (NUL least of all, which C callers cannot
            // even receive); a line break or tab typed by an admin stays.
            '\n' | '\t' => out.push(c),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enforced() -> Enforced {
        Enforced {
            registration: crate::invites::RegistrationPolicy::Invite,
            users_may_invite: false,
            max_file_size: Some(100_000_000),
            user_storage: Some(1_000_000_000),
            user_daily: Some(200_000_000),
            user_weekly: None,
            user_monthly: None,
            archive_retention: Period::After(30 * 86_400),
            muc_retention: Period::Never,
            upload_retention: Period::After(7 * 86_400),
            backup_retention: Period::After(14 * 86_400),
            users_with_own_upload_limits: 0,
            users_with_shorter_archive: 0,
        }
    }

    #[test]
    fn admin_text_is_escaped_everywhere() {
        let mut d = Description::default();
        d.description.insert("en".into(), "<script>alert('x')</script> & \"friends\"".into());
        d.rules.insert("en".into(), vec!["<b>bold</b>".into()]);
        d.third_parties.push("<img src=x onerror=alert(1)>".into());
        let html = PolicyDocument::new("example.org", &d, &enforced(), UsageStatistics::default(), "en").to_html();
        assert!(!html.contains("<script") && !html.contains("<b>") && !html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;friends&quot;"));
        for loads in ["<link", "<script", "<img", "url(", "@import", "http://", "https://"] {
            assert!(!html.contains(loads), "{loads}: nothing is loaded from elsewhere");
        }
    }

    #[test]
    fn rules_come_first_and_enforced_values_follow() {
        let mut d = Description::default();
        d.rules.insert("en".into(), vec!["Be kind.".into(), "No spam.".into()]);
        let html = PolicyDocument::new("example.org", &d, &enforced(), UsageStatistics::default(), "").to_html();
        let at = |s: &str| html.find(s).unwrap_or_else(|| panic!("{s} missing"));
        assert!(at("id=\"rules\"") < at("id=\"retention\""));
        assert!(at("id=\"retention\"") < at("id=\"limits\"") && at("id=\"limits\"") < at("id=\"registration\""));
        for shown in ["30 days", "7 days", "100 MB", "1 GB", "200 MB", "invite from an administrator", "Delete account"]
        {
            assert!(html.contains(shown), "{shown} missing");
        }
    }

    #[test]
    fn the_readers_language_is_picked_with_english_behind() {
        let mut d = Description::default();
        d.rules.insert("en".into(), vec!["Be kind.".into()]);
        d.rules.insert("de".into(), vec!["Sei nett.".into()]);
        d.terms.insert("de".into(), "https://example.org/agb".into());
        d.terms.insert("en".into(), "https://example.org/terms".into());
        let p = PolicyDocument::new("example.org", &d, &enforced(), UsageStatistics::default(), "de-AT");
        assert_eq!((p.language.as_str(), p.rules[0].as_str()), ("de", "Sei nett."));
        assert!(p.links.contains(&("terms".into(), "https://example.org/agb".into())));
        let p = PolicyDocument::new("example.org", &d, &enforced(), UsageStatistics::default(), "it");
        assert_eq!(p.rules[0], "Be kind.");
    }
}
