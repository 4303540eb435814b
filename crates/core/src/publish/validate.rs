//! The checks a published value must pass before it is stored: what people open is https, what
//! names a country is an ISO 3166-1 code, what names a language is a BCP 47 tag, a date is a real
//! date. Each returns the reason in the admin's words, so `publish set` can say what is wrong.

/// Why `url` is not a link to publish: people open these links from anywhere, so only `https://`
/// with a host (no `http://` even on this machine, no user name before the host).
pub(crate) fn https_url_problem(url: &str) -> Option<String> {
    // Checked before person_url_problem, which lets http through for loopback hosts (a lab's
    // landing page): a published link is opened by people elsewhere, where that address means
    // their own machine.
    if url.get(..7).is_some_and(|s| s.eq_ignore_ascii_case("http://")) {
        return Some("must be an https:// address: people open it from anywhere".to_string());
    }
    crate::settings::person_url_problem(url)
}

/// Why `code` is not an ISO 3166-1 alpha-2 country code (`de`, `FR`; either case).
pub(crate) fn country_problem(code: &str) -> Option<String> {
    if code.len() != 2 || !code.chars().all(|c| c.is_ascii_alphabetic()) {
        return Some(format!("{code:?} is not a country code: use the two letters of ISO 3166-1 (de, fr, us)"));
    }
    isocountry::CountryCode::for_alpha2_caseless(code)
        .err()
        .map(|_| format!("{code:?} is not an ISO 3166-1 country code (the United Kingdom is gb)"))
}

/// Why `tag` is not a BCP 47 language tag in the IANA registry (`en`, `de-CH`, `zh-Hant`).
pub(crate) fn language_problem(tag: &str) -> Option<String> {
    match language_tags::LanguageTag::parse(tag) {
        Err(e) => Some(format!("{tag:?} is not a BCP 47 language tag ({e}): write en, de, pt-BR...")),
        Ok(parsed) => {
            parsed.validate().err().map(|e| format!("{tag:?} is not a BCP 47 language tag of the IANA registry: {e}"))
        }
    }
}

/// Why `date` is not a calendar date written `YYYY-MM-DD`.
pub(crate) fn date_problem(date: &str) -> Option<String> {
    let bad = || Some(format!("{date:?} is not a date written YYYY-MM-DD"));
    let parts: Vec<&str> = date.split('-').collect();
    let [y, m, d] = parts[..] else { return bad() };
    if y.len() != 4 || m.len() != 2 || d.len() != 2 || !date.chars().all(|c| c.is_ascii_digit() || c == '-') {
        return bad();
    }
    let (Ok(y), Ok(m), Ok(d)) = (y.parse::<i32>(), m.parse::<u8>(), d.parse::<u8>()) else { return bad() };
    let Ok(month) = time::Month::try_from(m) else { return bad() };
    match time::Date::from_calendar_date(y, month, d) {
        Ok(_) => None,
        Err(_) => Some(format!("{date:?} is not a day of the calendar")),
    }
}

/// Why `date` (a valid `YYYY-MM-DD`) cannot be the day a service opened at `now`: it has not
/// begun anywhere yet. The latest time zone is 14 hours ahead of UTC, so an admin there may
/// already write tomorrow's UTC date.
pub(crate) fn future_problem(date: &str, now: crate::Timestamp) -> Option<String> {
    let mut parts = date.splitn(3, '-').map(str::parse::<i32>);
    let (Some(Ok(y)), Some(Ok(m)), Some(Ok(d))) = (parts.next(), parts.next(), parts.next()) else { return None };
    let month = time::Month::try_from(u8::try_from(m).ok()?).ok()?;
    let day = time::Date::from_calendar_date(y, month, u8::try_from(d).ok()?).ok()?;
    let starts = day.midnight().assume_utc().unix_timestamp() - 14 * 3600;
    (starts > now)
        .then(|| format!("{date:?} is in the future: since is the day the service opened (today at the latest)"))
}

/// Why `uri` is not a contact address as XEP-0157 lists them: `mailto:`, `xmpp:` or `https://`.
pub(crate) fn contact_problem(uri: &str) -> Option<String> {
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some(format!("{uri:?} contains spaces or control characters"));
    }
    let lower = uri.to_ascii_lowercase();
    if let Some(address) = lower.strip_prefix("mailto:") {
        let ok = address.split_once('@').is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.contains('@'));
        return (!ok).then(|| format!("{uri:?} is not a mail address (mailto:abuse@example.org)"));
    }
    if let Some(jid) = uri.get(5..).filter(|_| lower.starts_with("xmpp:")) {
        let bare = jid.split(['?', '/']).next().unwrap_or_default();
        let domain = bare.rsplit_once('@').map_or(bare, |(_, d)| d);
        return crate::DomainName::parse(domain)
            .err()
            .map(|e| format!("{uri:?} is not an XMPP address (xmpp:admin@example.org): {e}"));
    }
    if lower.starts_with("https://") || lower.starts_with("http://") {
        return https_url_problem(uri).map(|why| format!("{uri:?} {why}"));
    }
    Some(format!("{uri:?} is not a contact address: use mailto:, xmpp: or https://"))
}

/// Why `jid` is not the bare address of a group chat (`support@chat.example.org`).
pub(crate) fn room_problem(jid: &str) -> Option<String> {
    let Some((room, service)) = jid.split_once('@') else {
        return Some(format!("{jid:?} is not a group chat address (room@chat.example.org)"));
    };
    if room.is_empty() || room.chars().any(|c| c.is_whitespace() || "\"&'/:<>@".contains(c)) {
        return Some(format!("{jid:?} has no usable room name before the @"));
    }
    crate::DomainName::parse(service).err().map(|e| format!("{jid:?} names no server after the @: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_must_be_https_with_a_host() {
        assert_eq!(https_url_problem("https://example.org/rules"), None);
        assert_eq!(https_url_problem("HTTPS://example.org/"), None);
        for (url, says) in [
            ("http://example.org/", "https"),
            ("http://localhost/", "https"),
            ("javascript:alert(1)", "https"),
            ("https://bank.example@evil.example/", "user name"),
            ("https:///x", "no host"),
            ("ftp://example.org/", "https"),
        ] {
            let why = https_url_problem(url).unwrap_or_else(|| panic!("{url} accepted"));
            assert!(why.contains(says), "{url}: {why}");
        }
    }

    #[test]
    fn countries_are_iso_3166_alpha_2() {
        for ok in ["de", "FR", "us", "gb", "ch"] {
            assert_eq!(country_problem(ok), None, "{ok}");
        }
        for bad in ["uk", "xx", "deu", "d", "", "1a", "eu"] {
            assert!(country_problem(bad).is_some(), "{bad} accepted");
        }
    }

    #[test]
    fn languages_are_registered_bcp_47_tags() {
        for ok in ["en", "de", "de-CH", "pt-BR", "zh-Hant", "fr"] {
            assert_eq!(language_problem(ok), None, "{ok}");
        }
        for bad in ["english", "xx-yy-zz-123456789", "", "en_GB", "xq"] {
            assert!(language_problem(bad).is_some(), "{bad} accepted");
        }
    }

    #[test]
    fn dates_are_real_days() {
        assert_eq!(date_problem("2016-02-29"), None);
        for bad in ["2015-02-29", "2016-13-01", "16-01-01", "2016/01/01", "2016-1-1", "yesterday", "+016-01-01"] {
            assert!(date_problem(bad).is_some(), "{bad} accepted");
        }
    }

    #[test]
    fn contacts_are_mail_xmpp_or_https() {
        for ok in [
            "mailto:abuse@example.org",
            "xmpp:admin@example.org",
            "xmpp:support@chat.example.org?join",
            "https://example.org/contact",
        ] {
            assert_eq!(contact_problem(ok), None, "{ok}");
        }
        for bad in
            ["abuse@example.org", "mailto:nobody", "xmpp:", "http://example.org/", "tel:+4912345", "xmpp:a b@x.org"]
        {
            assert!(contact_problem(bad).is_some(), "{bad} accepted");
        }
    }

    #[test]
    fn support_rooms_are_bare_room_addresses() {
        assert_eq!(room_problem("support@chat.example.org"), None);
        for bad in ["chat.example.org", "@chat.example.org", "a b@chat.example.org", "room@not a host"] {
            assert!(room_problem(bad).is_some(), "{bad} accepted");
        }
    }
}
