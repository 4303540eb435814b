//! Publication through the handle: what is set is checked, what is enforced is read live.

use super::*;

fn hosting() -> Hosting {
    let h = Hosting::open_in_memory().unwrap();
    h.add_domain("example.org").unwrap();
    h
}

fn describe(h: &Hosting) {
    for (field, value) in [
        ("website", r#"{"en": "https://example.org/", "de": "https://example.org/de/"}"#),
        ("alternative_jids", r#"["example.net"]"#),
        ("bus_factor", "2"),
        ("organization", "non-governmental"),
        ("password_reset", r#"{"en": "https://example.org/reset"}"#),
        ("server_testing", "true"),
        ("professional_hosting", "true"),
        ("free_of_charge", "true"),
        ("legal_notice", r#"{"en": "https://example.org/legal"}"#),
        ("server_locations", r#"["DE", "fr"]"#),
        ("since", "2016-02-29"),
        ("jurisdiction", "de"),
        ("contacts.abuse", r#"["mailto:abuse@example.org", "xmpp:abuse@example.org"]"#),
        ("contacts.support", r#"["xmpp:support@chat.example.org?join"]"#),
        ("rules", r#"{"en": ["Be kind.", "No spam."]}"#),
        ("description", r#"{"en": "A small server run by a club."}"#),
        ("support_room", "support@chat.example.org"),
    ] {
        h.set_publication("example.org", field, value).unwrap_or_else(|e| panic!("{field}: {e}"));
    }
}

#[test]
fn the_provider_file_has_exactly_the_formats_fields_and_units() {
    let h = hosting();
    describe(&h);
    h.set_upload_limit("example.org", None, "user_storage", "104857600").unwrap();
    h.set_retention("example.org", "uploads", "30d").unwrap();
    h.set_retention("example.org", "archive", "1y").unwrap();
    let file: serde_json::Value = serde_json::from_str(&h.provider_file("example.org").unwrap().to_json()).unwrap();
    let want = serde_json::json!({
        "website": {"en": "https://example.org/", "de": "https://example.org/de/"},
        "alternativeJids": ["example.net"],
        "busFactor": 2,
        "organization": "non-governmental",
        "passwordReset": {"en": "https://example.org/reset"},
        "serverTesting": true,
        "maximumHttpFileUploadTotalSize": 104,
        "maximumHttpFileUploadStorageTime": 30,
        "maximumMessageArchiveManagementStorageTime": 365,
        "professionalHosting": true,
        "freeOfCharge": true,
        "legalNotice": {"en": "https://example.org/legal"},
        "serverLocations": ["de", "fr"],
        "since": "2016-02-29"
    });
    assert_eq!(file, want);
}

#[test]
fn nothing_is_invented_for_a_domain_nobody_described() {
    let h = hosting();
    let file: serde_json::Value = serde_json::from_str(&h.provider_file("example.org").unwrap().to_json()).unwrap();
    // The three enforced numbers (no limit = 0) and the format's n/a bus factor, nothing else.
    assert_eq!(
        file,
        serde_json::json!({
            "busFactor": -1,
            "maximumHttpFileUploadTotalSize": 0,
            "maximumHttpFileUploadStorageTime": 0,
            "maximumMessageArchiveManagementStorageTime": 0
        })
    );
}

#[test]
fn enforced_values_are_published_from_the_enforcing_settings_at_once() {
    let h = hosting();
    let days = |h: &Hosting| {
        let f = h.provider_file("example.org").unwrap();
        (
            f.maximum_message_archive_management_storage_time,
            f.maximum_http_file_upload_storage_time,
            f.maximum_http_file_upload_total_size,
        )
    };
    assert_eq!(days(&h), (0, 0, 0));
    h.set_retention("example.org", "archive", "2w").unwrap();
    assert_eq!(days(&h), (14, 0, 0));
    h.set_retention("example.org", "uploads", "12h").unwrap();
    assert_eq!(days(&h), (14, -1, 0));
    h.set_upload_limit("example.org", None, "user_storage", "500000").unwrap();
    assert_eq!(days(&h), (14, -1, -1));
    h.set_upload_limit("example.org", None, "user_storage", "2000000000").unwrap();
    assert_eq!(days(&h), (14, -1, 2000));
    h.set_domain_setting("example.org", "registration.policy", "closed").unwrap();
    let p = h.publication("example.org").unwrap();
    assert_eq!(p.enforced.registration_word(), "closed");
    let html = h.policy_document("example.org", "", UsageStatistics::default()).unwrap().to_html();
    assert!(html.contains("Registration is closed") && html.contains("14 days") && html.contains("2 GB"), "{html}");
    // A user's exceptions are counted, not hidden.
    h.set_upload_limit("example.org", Some("alice"), "storage", "5000000000").unwrap();
    h.set_user_archive_retention("example.org", "bob", Some("1d")).unwrap();
    let e = h.publication("example.org").unwrap().enforced;
    assert_eq!((e.users_with_own_upload_limits, e.users_with_shorter_archive), (1, 1));
}

#[test]
fn enforced_values_cannot_be_typed_for_publication() {
    let h = hosting();
    for field in ["registration", "max_file_size", "archive_retention", "maximumHttpFileUploadTotalSize"] {
        let e = h.set_publication("example.org", field, "1").unwrap_err();
        assert_eq!(e.code(), "invalid-argument", "{field}");
    }
    let e = h.set_publication("example.org", "archive_retention", "1").unwrap_err();
    assert!(e.to_string().contains("published from the setting that enforces it"), "{e}");
}

#[test]
fn invalid_values_are_refused_with_the_reason_and_nothing_is_stored() {
    let h = hosting();
    describe(&h);
    let before = h.publication("example.org").unwrap();
    for (field, value, says) in [
        ("website", r#"{"en": "http://example.org/"}"#, "must be an https:// address"),
        ("terms", r#"{"en": "javascript:alert(1)"}"#, "https"),
        ("privacy", r#"{"english": "https://example.org/p"}"#, "not a BCP 47 language tag"),
        ("rules", r#"{"xx-notalang": ["x"]}"#, "language tag"),
        ("server_locations", r#"["uk"]"#, "not an ISO 3166-1 country code"),
        ("jurisdiction", "Germany", "not a country code"),
        ("organization", "club", "unknown variant"),
        ("since", "2016-02-30", "not a day of the calendar"),
        ("bus_factor", "0", "at least 1"),
        ("bus_factor", "-1", "invalid"),
        ("contacts.abuse", r#"["abuse@example.org"]"#, "mailto:"),
        ("contacts.nobody", r#"["mailto:a@example.org"]"#, "no setting"),
        ("support_room", "chat.example.org", "not a group chat address"),
        ("language", "english", "BCP 47"),
        ("description", r#"{"en": ""}"#, "one or two sentences"),
    ] {
        let e = h.set_publication("example.org", field, value).unwrap_err();
        assert_eq!(e.code(), "invalid-argument", "{field} {value}");
        assert!(e.to_string().contains(says), "{field} {value}: {e}");
    }
    assert_eq!(h.publication("example.org").unwrap(), before);
    assert_eq!(h.set_publication("nope.example", "since", "2020-01-01").unwrap_err().code(), "not-found");
}

#[test]
fn disco_carries_the_contacts_and_the_policy() {
    let h = hosting();
    let forms = h.disco_forms("example.org").unwrap();
    assert_eq!(forms.len(), 1, "no contacts: no serverinfo form");
    assert_eq!(forms[0].form_type, POLICY_FORM_TYPE);
    describe(&h);
    h.set_retention("example.org", "archive", "1w").unwrap();
    let forms = h.disco_forms("example.org").unwrap();
    assert_eq!(forms[0].form_type, SERVERINFO_FORM_TYPE);
    let vars: Vec<(&str, &[String])> = forms[0].fields.iter().map(|f| (f.var.as_str(), &f.values[..])).collect();
    assert_eq!(vars.len(), 2);
    assert_eq!(vars[0].0, "abuse-addresses");
    assert_eq!(vars[0].1, ["mailto:abuse@example.org", "xmpp:abuse@example.org"]);
    assert_eq!(vars[1].0, "support-addresses");
    let policy = &forms[1].fields;
    let value = |var: &str| policy.iter().find(|f| f.var == var).map(|f| f.values[0].clone());
    assert_eq!(value("registration").as_deref(), Some("invite"));
    assert_eq!(value("max-archive-storage-days").as_deref(), Some("7"));
    assert_eq!(value("support-room").as_deref(), Some("xmpp:support@chat.example.org?join"));
}

#[test]
fn the_page_language_follows_accept_language() {
    let h = hosting();
    h.set_publication("example.org", "rules", r#"{"en": ["Be kind."], "de": ["Sei nett."]}"#).unwrap();
    let doc = h.policy_document("example.org", "de-CH,de;q=0.9,en;q=0.8", UsageStatistics::default()).unwrap();
    assert_eq!(doc.rules, ["Sei nett."]);
    let doc = h.policy_document("example.org", "*", UsageStatistics::default()).unwrap();
    assert_eq!(doc.rules, ["Be kind."]);
    h.set_publication("example.org", "language", "de").unwrap();
    let doc = h.policy_document("example.org", "", UsageStatistics::default()).unwrap();
    assert_eq!(doc.rules, ["Sei nett."]);
}

#[test]
fn statistics_are_shown_approximately() {
    let h = hosting();
    let stats = UsageStatistics { accounts: Some(1_234), daily_active: Some(57), monthly_active: None };
    let doc = h.policy_document("example.org", "", stats).unwrap();
    assert_eq!(doc.statistics.accounts, Some(1_200));
    let html = doc.to_html();
    // The month was not counted by the server: the core counts the logins reported (none yet).
    assert!(html.contains("about 1200") && html.contains("about 57"), "{html}");
    assert!(html.contains("<dt>Active in a month</dt><dd>none</dd>"), "{html}");
}

#[test]
fn show_lists_what_is_set_and_what_is_not() {
    let h = hosting();
    h.set_publication("example.org", "since", "2020-01-01").unwrap();
    let text = h.publication("example.org").unwrap().describe();
    assert!(text.starts_with("example.org: registration invite"), "{text}");
    assert!(text.contains("since: \"2020-01-01\""), "{text}");
    assert!(text.contains("not set:") && text.contains("rules"), "{text}");
}

#[test]
fn the_support_room_becomes_a_bookmark_for_new_accounts() {
    let h = hosting();
    assert_eq!(h.support_bookmark("example.org").unwrap(), None);
    h.set_publication("example.org", "support_room", "Support@Chat.Example.org").unwrap();
    let b = h.support_bookmark("example.org").unwrap().unwrap();
    assert_eq!(
        (b.jid.as_str(), b.name.as_str(), b.autojoin),
        ("support@chat.example.org", "example.org support", true)
    );
    assert_eq!(h.support_bookmark("nope.example").unwrap_err().code(), "not-found");
}

#[test]
fn one_language_of_a_per_language_field_is_set_checked_and_removed_alone() {
    let h = hosting();
    h.set_publication("example.org", "terms", r#"{"de": "https://example.org/de/agb"}"#).unwrap();
    // Every per-language field takes FIELD.LANG, beside the languages already there.
    for (field, value) in [
        ("description.en", "A small server run by a club."),
        ("rules.en", r#"["Be kind.", "No spam."]"#),
        ("rules.de", "Sei freundlich."),
        ("website.en", "https://example.org/"),
        ("terms.en", "https://example.org/terms"),
        ("privacy.pt-BR", "https://example.org/pt/privacidade"),
        ("legal_notice.en", "https://example.org/legal"),
        ("password_reset.en", "https://example.org/reset"),
        ("data_export.en", "https://example.org/export"),
        ("account_deletion.en", "https://example.org/delete"),
    ] {
        h.set_publication("example.org", field, value).unwrap_or_else(|e| panic!("{field}: {e}"));
    }
    let d = h.publication("example.org").unwrap().description;
    assert_eq!(d.terms.get("de").map(String::as_str), Some("https://example.org/de/agb"), "the other language stays");
    assert_eq!(d.terms.get("en").map(String::as_str), Some("https://example.org/terms"));
    assert_eq!(d.rules["en"], ["Be kind.", "No spam."]);
    assert_eq!(d.rules["de"], ["Sei freundlich."], "a plain text is one rule");
    assert_eq!(d.description["en"], "A small server run by a club.");
    assert_eq!(d.privacy["pt-BR"], "https://example.org/pt/privacidade");
    for (field, map) in d.links() {
        assert!(!map.is_empty(), "{field} not set");
    }

    // The same language in another case is the same entry, replaced.
    h.set_publication("example.org", "terms.EN", "https://example.org/terms-v2").unwrap();
    let terms = h.publication("example.org").unwrap().description.terms;
    assert_eq!(terms.len(), 2, "{terms:?}");
    assert!(terms.values().any(|u| u == "https://example.org/terms-v2"), "{terms:?}");

    // Checked as the whole map is: the language tag, the link.
    let before = h.publication("example.org").unwrap();
    for (field, value, says) in [
        ("terms.english", "https://example.org/t", "not a BCP 47 language tag"),
        ("terms.en_GB", "https://example.org/t", "BCP 47"),
        ("terms.fr", "http://example.org/t", "must be an https:// address"),
        ("privacy.fr", "javascript:alert(1)", "https"),
        ("description.fr", "", "one or two sentences"),
        ("rules.fr", r#"{"a": 1}"#, "list of rules"),
        ("terms.fr", r#"["https://example.org/t"]"#, "one link"),
        ("contacts.abuse.en", r#"["mailto:a@example.org"]"#, "not inside a section"),
        ("terms.", "https://example.org/t", "language"),
        ("terms.en.x", "https://example.org/t", "language"),
    ] {
        let e = h.set_publication("example.org", field, value).unwrap_err();
        assert_eq!(e.code(), "invalid-argument", "{field} {value}");
        assert!(e.to_string().contains(says), "{field} {value}: {e}");
    }
    assert_eq!(h.publication("example.org").unwrap(), before, "nothing stored by a refusal");

    // null removes that language only, for good (the stored JSON does not keep it either).
    h.set_publication("example.org", "terms.de", "null").unwrap();
    h.set_publication("example.org", "rules.en", "null").unwrap();
    let reopened = h.publication("example.org").unwrap().description;
    assert_eq!(reopened.terms.keys().collect::<Vec<_>>().len(), 1, "{:?}", reopened.terms);
    assert!(!reopened.terms.contains_key("de"));
    assert!(!reopened.rules.contains_key("en") && reopened.rules.contains_key("de"));
    let file: serde_json::Value = serde_json::from_str(&h.provider_file("example.org").unwrap().to_json()).unwrap();
    assert!(file.get("website").is_some());
    // Removing a language that is not there changes nothing.
    h.set_publication("example.org", "terms.fr", "null").unwrap();
    assert_eq!(h.publication("example.org").unwrap().description, reopened);
}

#[test]
fn a_smaller_whole_map_replaces_the_stored_one() {
    let h = hosting();
    h.set_publication("example.org", "terms", r#"{"en": "https://example.org/t", "de": "https://example.org/d"}"#)
        .unwrap();
    h.set_publication("example.org", "terms", r#"{"de": "https://example.org/d"}"#).unwrap();
    let terms = h.publication("example.org").unwrap().description.terms;
    assert_eq!(terms.keys().map(String::as_str).collect::<Vec<_>>(), ["de"], "a language removed came back");
    h.set_publication("example.org", "terms", "null").unwrap();
    assert!(h.publication("example.org").unwrap().description.terms.is_empty());
}

#[test]
fn a_since_date_in_the_future_is_refused() {
    let clock = crate::ManualClock::new(1_764_590_400); // 2025-12-01 12:00 UTC
    let h = Hosting::open_in_memory().unwrap().with_clock(clock);
    h.add_domain("example.org").unwrap();
    for today_somewhere in ["2025-12-01", "2025-12-02", "2016-02-29"] {
        h.set_publication("example.org", "since", today_somewhere).unwrap_or_else(|e| panic!("{today_somewhere}: {e}"));
    }
    for later in ["2025-12-03", "2030-01-01"] {
        let e = h.set_publication("example.org", "since", later).unwrap_err();
        assert_eq!(e.code(), "invalid-argument", "{later}");
        assert!(e.to_string().contains("in the future"), "{later}: {e}");
        // The generic settings path refuses it too.
        let e = h.set_domain_setting("example.org", "publication.since", later).unwrap_err();
        assert!(e.to_string().contains("in the future"), "{later}: {e}");
    }
    assert_eq!(h.publication("example.org").unwrap().description.since.as_deref(), Some("2016-02-29"));
}
