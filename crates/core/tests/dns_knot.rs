//! Verification and the DNS tester against a real authoritative server: Knot DNS on 127.0.0.1.
//!
//! Skipped (with a message) only when `knotd` is not installed; `scripts/install-deps` installs it.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use xmpp_hosting_core::verification::{ClaimState, RowStatus};
use xmpp_hosting_core::{Hosting, ManualClock};

const ZONE: &str = "customer.example";

/// A knotd serving the zone files in its directory; stopped on drop.
struct Knot {
    dir: PathBuf,
    port: u16,
    child: Child,
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Knot {
    fn start(zones: &[(&str, String)]) -> Option<Knot> {
        if Command::new("knotd").arg("--version").output().is_err() {
            eprintln!("knotd is not installed (apt-get install knot): skipping the real-DNS test");
            return None;
        }
        let dir = std::env::temp_dir().join(format!("xh-knot-{}-{}", std::process::id(), free_udp_port()));
        std::fs::create_dir_all(dir.join("db")).unwrap();
        let port = free_udp_port();
        let mut conf = format!(
            "server:\n  listen: 127.0.0.1@{port}\n  rundir: {d}\ncontrol:\n  listen: {d}/knot.sock\n\
             database:\n  storage: {d}/db\nlog:\n  - target: {d}/knot.log\n    any: info\n\
             template:\n  - id: default\n    storage: {d}\n    file: \"%s.zone\"\n    zonefile-load: whole\n    journal-content: none\nzone:\n",
            d = dir.display()
        );
        for (name, text) in zones {
            std::fs::write(dir.join(format!("{name}.zone")), text).unwrap();
            conf.push_str(&format!("  - domain: {name}\n"));
        }
        std::fs::write(dir.join("knot.conf"), conf).unwrap();
        let child = Command::new("knotd")
            .args(["-c", dir.join("knot.conf").to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let knot = Knot { dir, port, child };
        knot.wait_serving(zones[0].0);
        Some(knot)
    }

    fn wait_serving(&self, zone: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let out = Command::new("kdig")
                .args(["@127.0.0.1", "-p", &self.port.to_string(), "+short", "+time=1", "+tries=1", "SOA", zone])
                .output()
                .unwrap();
            if !out.stdout.is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "knotd did not serve {zone}: {}",
            std::fs::read_to_string(self.dir.join("knot.log")).unwrap_or_default()
        );
    }

    fn nameserver(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Replaces a zone's file and makes knotd load it.
    fn replace(&self, zone: &str, text: String) {
        std::fs::write(self.dir.join(format!("{zone}.zone")), text).unwrap();
        let status = Command::new("knotc")
            .args(["-c", self.dir.join("knot.conf").to_str().unwrap(), "zone-reload", zone])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        std::thread::sleep(Duration::from_millis(300));
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn zone(serial: u32, body: &str) -> String {
    format!(
        "$ORIGIN {ZONE}.\n$TTL 60\n@ SOA ns.{ZONE}. hostmaster.{ZONE}. {serial} 3600 600 86400 60\n@ NS ns.{ZONE}.\nns A 127.0.0.1\n{body}\n"
    )
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
    let Some(knot) = Knot::start(&[(ZONE, zone(1, &records))]) else { return };
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
    let started = Instant::now();
    let claim = h.verify_domain(ZONE, "alice").unwrap().wait().unwrap();
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
    assert_eq!(claim.state, ClaimState::Pending);
    assert_eq!(claim.last_error.as_deref(), Some("Timeout"));
    let report = h.dns_test(ZONE).unwrap().wait().unwrap();
    assert!(report.rows.iter().all(|r| r.status == RowStatus::Error), "{report:?}");
    std::fs::remove_dir_all(&dir).ok();
}
