//! Verification and the DNS tester against a real authoritative server: Knot DNS on 127.0.0.1.
//!
//! Skipped (with a message) only when `knotd` is not installed; `scripts/install-deps` installs it.

#[path = "support/knot.rs"]
mod knot;

use std::net::UdpSocket;
use std::path::Path;

use knot::{eventually, knot_conf, zone_of, Knot};
use xmpp_hosting_core::dns::{DnsProblem, DnssecStatus};
use xmpp_hosting_core::verification::{ClaimState, RowStatus};
use xmpp_hosting_core::{Hosting, ManualClock};

const ZONE: &str = "customer.example";

fn zone(serial: u32, body: &str) -> String {
    zone_of(ZONE, serial, body)
}

fn hosting(db: &Path, ns: &str, clock: &ManualClock) -> Hosting {
    let h = Hosting::open(db).unwrap().with_clock(clock.clone());
    for (k, v) in [
        ("dns.nameservers", format!("[\"{ns}\"]")),
        ("dns.provider_zone", "provider.example".into()),
        ("dns.timeout_ms", "1500".into()),
        ("dns.attempts", "1".into()),
        ("dns.grace_period", "3600".into()),
        ("dns.xmpp_client", r#"{"target":"xmpp.provider.example","port":5222,"priority":5}"#.into()),
        ("dns.xmpps_client", r#"{"target":"xmpps.provider.example","port":443}"#.into()),
        ("dns.xmpp_server", r#"{"target":"xmpp.provider.example","port":5269}"#.into()),
        (
            "dns.cnames",
            r#"[{"label":"share","target":"xmpp.provider.example"},{"label":"proxy","target":"xmpp.provider.example"},{"label":"conference","target":"xmpp.provider.example"}]"#.into(),
        ),
    ] {
        h.set_provider_setting(k, &v).unwrap();
    }
    h
}

#[test]
fn verification_and_dns_test_against_knot() {
    let clock = ManualClock::new(1_700_000_000);
    let dir = std::env::temp_dir().join(format!("xh-knot-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Claim first: the zone below needs the tokens.
    let pre = Hosting::open(dir.join("store.db")).unwrap().with_clock(clock.clone());
    let alice = pre.claim_domain(ZONE, "alice").unwrap();
    let bob = pre.claim_domain(ZONE, "bob").unwrap();
    let carol = pre.claim_domain(&format!("cname.{ZONE}"), "carol").unwrap();
    let split = format!("\"verify=\" \"{}\"", alice.token); // one TXT value in two strings
    let records = format!(
        "xmpp-hosting-verification TXT {split}\n\
         xmpp-hosting-verification TXT \"verify=wrongtoken\"\n\
         xmpp-hosting-verification.cname CNAME {}.v.provider.example.\n\
         _xmpp-client._tcp SRV 5 1 5222 xmpp.provider.example.\n\
         _xmpps-client._tcp SRV 1 1 8443 xmpps.provider.example.\n\
         share CNAME xmpp.provider.example.\n\
         proxy CNAME elsewhere.example.\n\
         conference CNAME xmpp.provider.example.\n",
        carol.token
    );
    let Some(knot) = Knot::start(&[(ZONE, zone(1, &records))], &[]) else { return };
    let h = hosting(&dir.join("store.db"), &knot.nameserver(), &clock);

    // The TXT proof, split in two strings, verifies alice; bob's token is not there.
    assert_eq!(h.verify_domain(ZONE, "alice").unwrap().wait().unwrap().state, ClaimState::Verified);
    assert_eq!(h.require_domain(ZONE).unwrap().settings.owner.as_deref(), Some("alice"));
    assert_eq!(h.verify_domain(ZONE, "bob").unwrap().wait().unwrap().state, ClaimState::Pending);
    assert_ne!(bob.token, alice.token);
    // The CNAME proof.
    let c = h.verify_domain(&format!("cname.{ZONE}"), "carol").unwrap().wait().unwrap();
    assert_eq!(c.state, ClaimState::Verified);

    // The DNS tester reports exactly the missing SRV, the wrong port and the wrong CNAME.
    let report = h.dns_test(ZONE).unwrap().wait().unwrap();
    let rows: Vec<_> = report.rows.iter().map(|r| (r.name.as_str(), r.status)).collect();
    assert_eq!(
        rows,
        [
            ("_xmpp-client._tcp.customer.example", RowStatus::Ok),
            ("_xmpps-client._tcp.customer.example", RowStatus::Wrong),
            ("_xmpp-server._tcp.customer.example", RowStatus::Missing),
            ("share.customer.example", RowStatus::Ok),
            ("proxy.customer.example", RowStatus::Wrong),
            ("conference.customer.example", RowStatus::Ok),
        ]
    );
    assert_eq!(report.rows[1].found, ["1 1 8443 xmpps.provider.example"]);
    assert_eq!(report.rows[4].found, ["elsewhere.example"]);

    // The proof disappears: lost at the next check, suspended after the grace period.
    knot.replace(ZONE, zone(2, ""));
    clock.advance(86_400);
    let rechecked = h.recheck_due(100).unwrap().wait().unwrap();
    assert!(rechecked.iter().any(|c| c.account == "alice" && c.state == ClaimState::Lost), "{rechecked:?}");
    clock.advance(3_600);
    let again = h.verify_domain(ZONE, "alice").unwrap().wait().unwrap();
    assert_eq!(again.state, ClaimState::Suspended);
    // Restored: verified again.
    knot.replace(ZONE, zone(3, &format!("xmpp-hosting-verification TXT \"verify={}\"", alice.token)));
    assert_eq!(h.verify_domain(ZONE, "alice").unwrap().wait().unwrap().state, ClaimState::Verified);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_dead_nameserver_is_a_timeout_not_a_hang() {
    // A UDP socket that never answers.
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let clock = ManualClock::new(1_700_000_000);
    let dir = std::env::temp_dir().join(format!("xh-dead-ns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let h = hosting(&dir.join("store.db"), &sink.local_addr().unwrap().to_string(), &clock);
    h.claim_domain(ZONE, "alice").unwrap();
    // The nameserver never answers, so the result cannot be in before the lookup's timeout
    // (1.5 s): had the call waited for DNS, its result would be there the moment it returned.
    // (How long the timeout takes is the DNS bench's business, not a test's.)
    let pending = h.verify_domain(ZONE, "alice").unwrap();
    assert!(pending.try_take().is_none(), "the caller was blocked until the lookup ended");
    let claim = pending.wait().unwrap();
    assert_eq!(claim.state, ClaimState::Pending);
    assert_eq!(claim.last_error.as_deref(), Some("Timeout"));
    let pending = h.dns_test(ZONE).unwrap();
    assert!(pending.try_take().is_none(), "the caller was blocked until the lookups ended");
    let report = pending.wait().unwrap();
    assert_eq!(report.rows.len(), 6);
    assert!(report.rows.iter().all(|r| r.status == RowStatus::Error && r.problem == Some(DnsProblem::Timeout)));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn dnssec_secure_answers_and_a_forged_proof_reported_bogus() {
    const SECURE: &str = "secure.example";
    const FORGED: &str = "forged.example";
    const UNSIGNED: &str = "unsigned.example";
    let clock = ManualClock::new(1_700_000_000);
    let dir = std::env::temp_dir().join(format!("xh-knot-dnssec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pre = Hosting::open(dir.join("store.db")).unwrap().with_clock(clock.clone());
    let good = pre.claim_domain(SECURE, "alice").unwrap();
    let victim = pre.claim_domain(FORGED, "mallory").unwrap();
    let plain = pre.claim_domain(UNSIGNED, "carol").unwrap();
    let decoy = "x".repeat(victim.token.len());
    let secure_body = format!(
        "xmpp-hosting-verification TXT \"verify={}\"\n_xmpp-client._tcp SRV 5 1 5222 xmpp.provider.example.\n\
         share CNAME xmpp.provider.example.\n",
        good.token
    );
    let forged_body = format!("xmpp-hosting-verification TXT \"verify={decoy}\"\n");
    let unsigned_body = format!(
        "xmpp-hosting-verification TXT \"verify={}\"\n_xmpp-client._tcp SRV 5 1 5222 xmpp.provider.example.\n",
        plain.token
    );
    let zones = [
        (SECURE, zone_of(SECURE, 1, &secure_body)),
        (FORGED, zone_of(FORGED, 1, &forged_body)),
        (UNSIGNED, zone_of(UNSIGNED, 1, &unsigned_body)),
    ];
    let Some(knot) = Knot::start(&zones, &[SECURE, FORGED]) else { return };
    let mut anchors = String::new();
    for z in [SECURE, FORGED] {
        anchors += &eventually(&format!("{z} DNSKEY"), || knot.dig(&["+noall", "+answer", "DNSKEY", z]));
    }
    std::fs::write(dir.join("anchors.key"), &anchors).unwrap();

    // Forge the proof: take knotd's signed zone, put mallory's token under the decoy's
    // signature, and serve that file as it is (signing off for this zone).
    let flushed = knot.dir.join("flushed");
    knot.knotc(&["zone-flush", FORGED, "+outdir", flushed.to_str().unwrap()]);
    let signed = std::fs::read_dir(&flushed).unwrap().next().unwrap().unwrap().path();
    let signed = std::fs::read_to_string(signed).unwrap();
    assert!(signed.contains("RRSIG") && signed.contains(&decoy), "{signed}");
    std::fs::write(knot.dir.join(format!("{FORGED}.zone")), signed.replace(&decoy, &victim.token)).unwrap();
    std::fs::write(
        knot.dir.join("knot.conf"),
        knot_conf(&knot.dir, knot.port, &[SECURE, FORGED, UNSIGNED], &[SECURE], None),
    )
    .unwrap();
    knot.knotc(&["reload"]);
    knot.knotc(&["zone-reload", FORGED]);
    let name = format!("xmpp-hosting-verification.{FORGED}");
    eventually("the forged TXT", || {
        let txt = knot.dig(&["+short", "TXT", &name]);
        if txt.contains(&victim.token) {
            txt
        } else {
            String::new()
        }
    });

    let h = hosting(&dir.join("store.db"), &knot.nameserver(), &clock);
    h.set_provider_setting("dns.dnssec", "true").unwrap();
    h.set_provider_setting("dns.dnssec_trust_anchor", dir.join("anchors.key").to_str().unwrap()).unwrap();

    let c = h.verify_domain(SECURE, "alice").unwrap().wait().unwrap();
    assert_eq!(c.state, ClaimState::Verified, "{c:?}");
    let report = h.dns_test(SECURE).unwrap().wait().unwrap();
    let rows: Vec<_> = report.rows.iter().map(|r| (r.name.as_str(), r.status, r.dnssec)).collect();
    let secure = Some(DnssecStatus::Secure);
    assert_eq!(
        rows,
        [
            ("_xmpp-client._tcp.secure.example", RowStatus::Ok, secure),
            ("_xmpps-client._tcp.secure.example", RowStatus::Missing, secure),
            ("_xmpp-server._tcp.secure.example", RowStatus::Missing, secure),
            ("share.secure.example", RowStatus::Ok, secure),
            ("proxy.secure.example", RowStatus::Missing, secure),
            ("conference.secure.example", RowStatus::Missing, secure),
        ]
    );

    // An unsigned zone that no anchor covers has no chain of trust to expect: insecure, not
    // bogus, and its proof counts.
    let report = h.dns_test(UNSIGNED).unwrap().wait().unwrap();
    assert_eq!(report.rows[0].status, RowStatus::Ok, "{report:?}");
    assert!(report.rows.iter().all(|r| r.dnssec == Some(DnssecStatus::Insecure)), "{report:?}");
    let c = h.verify_domain(UNSIGNED, "carol").unwrap().wait().unwrap();
    assert_eq!((c.state, c.last_error.as_deref()), (ClaimState::Verified, None), "{c:?}");

    // The forged TXT carries mallory's token, but its signature fails: bogus, and no proof.
    let claim = h.verify_domain(FORGED, "mallory").unwrap().wait().unwrap();
    assert_eq!((claim.state, claim.last_error.as_deref()), (ClaimState::Pending, Some("Bogus")));
    // Without validation the same answer would have been taken as the proof.
    h.set_provider_setting("dns.dnssec", "false").unwrap();
    assert_eq!(h.verify_domain(FORGED, "mallory").unwrap().wait().unwrap().state, ClaimState::Verified);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_names_are_refused_before_any_lookup() {
    let h = Hosting::open_in_memory().unwrap();
    // A nameserver nobody listens on: a lookup would show up as a timeout, not as these errors.
    h.set_provider_setting("dns.nameservers", r#"["127.0.0.1:9"]"#).unwrap();
    let long_label = format!("{}.example", "a".repeat(64));
    let long_name = format!("{}example", "abcdefghi.".repeat(26));
    for (name, code) in [
        ("", "invalid-domain"),
        ("exa mple.org", "invalid-domain"),
        ("a..b", "invalid-domain"),
        (long_label.as_str(), "invalid-domain"),
        (long_name.as_str(), "invalid-domain"),
        ("127.0.0.1", "invalid-domain"),
        ("[::1]", "invalid-domain"),
        ("co.uk", "invalid-domain"),
        ("com", "invalid-domain"),
        ("github.io", "invalid-domain"),
    ] {
        let claim = h.claim_domain(name, "alice").unwrap_err();
        assert_eq!(claim.code(), code, "claim {name:?}: {claim}");
        let test = h.dns_test(name).err().unwrap_or_else(|| panic!("dns_test accepted {name:?}"));
        assert_eq!(test.code(), code, "dns_test {name:?}: {test}");
    }
    assert!(h.claim_domain("co.uk", "alice").unwrap_err().to_string().contains("public suffix"));
    assert!(h.claims(None).unwrap().is_empty());
}

#[test]
fn a_txt_proof_counts_only_where_it_is_published_and_a_failed_check_says_what_it_found() {
    const ELSEWHERE: &str = "elsewhere.example";
    let clock = ManualClock::new(1_700_000_000);
    let dir = std::env::temp_dir().join(format!("xh-knot-cname-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pre = Hosting::open(dir.join("store.db")).unwrap().with_clock(clock.clone());
    let dangling = pre.claim_domain(&format!("dangling.{ZONE}"), "mallory").unwrap();
    let wrong = pre.claim_domain(&format!("wrong.{ZONE}"), "alice").unwrap();
    pre.claim_domain(&format!("empty.{ZONE}"), "bob").unwrap();
    // The customer's proof name is a CNAME into a zone someone else writes (a dangling record
    // pointing at a shared service, say), and that zone carries mallory's token.
    let records = "xmpp-hosting-verification.dangling CNAME proof.elsewhere.example.\n\
                   xmpp-hosting-verification.wrong TXT \"verify=aaaaaaaa\"\n";
    let theirs = format!("proof TXT \"verify={}\"\n", dangling.token);
    let Some(knot) = Knot::start(&[(ZONE, zone(1, records)), (ELSEWHERE, zone_of(ELSEWHERE, 1, &theirs))], &[]) else {
        return;
    };
    let h = hosting(&dir.join("store.db"), &knot.nameserver(), &clock);
    let c = h.verify_domain(&format!("dangling.{ZONE}"), "mallory").unwrap().wait().unwrap();
    assert_eq!(c.state, ClaimState::Pending, "{c:?}");
    let finding = c.finding.unwrap();
    assert!(
        finding.starts_with(&format!(
            "found CNAME to proof.elsewhere.example at xmpp-hosting-verification.dangling.{ZONE}"
        )),
        "{finding}"
    );
    let c = h.verify_domain(&format!("wrong.{ZONE}"), "alice").unwrap().wait().unwrap();
    assert_eq!(c.state, ClaimState::Pending);
    assert_eq!(
        c.finding.unwrap(),
        format!(
            "found TXT \"verify=aaaaaaaa\" at xmpp-hosting-verification.wrong.{ZONE}, expected TXT \"verify={}\" or CNAME to {}.v.provider.example",
            wrong.token, wrong.token
        )
    );
    let c = h.verify_domain(&format!("empty.{ZONE}"), "bob").unwrap().wait().unwrap();
    assert!(c
        .finding
        .unwrap()
        .starts_with(&format!("no TXT or CNAME record at xmpp-hosting-verification.empty.{ZONE}")));
    std::fs::remove_dir_all(&dir).ok();
}
