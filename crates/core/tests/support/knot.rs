//! A knotd on loopback serving test zones, for the DNS integration tests and the DNS bench
//! (included by both with `#[path]`; each uses part of it).
#![allow(dead_code)]

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A knotd serving the zone files in its directory; stopped on drop.
pub struct Knot {
    pub dir: PathBuf,
    pub port: u16,
    child: Child,
}

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Knot {
    /// Starts knotd serving `zones` (name, zone file text); the names in `signed` are signed by
    /// knotd. `None` when knotd is not installed.
    pub fn start(zones: &[(&str, String)], signed: &[&str]) -> Option<Knot> {
        Self::start_with(zones, signed, None, Duration::from_secs(10))
    }

    /// [`Knot::start`] with knotd's `background-workers` (zone loading and signing threads) and
    /// how long a zone may take to load (a bench zone of 70,000 records takes seconds).
    pub fn start_with(
        zones: &[(&str, String)],
        signed: &[&str],
        workers: Option<u32>,
        load_timeout: Duration,
    ) -> Option<Knot> {
        if Command::new("knotd").arg("--version").output().is_err() {
            eprintln!("knotd is not installed (apt-get install knot): skipping the real-DNS test");
            return None;
        }
        // A port found free may be taken again before knotd binds it (tests run in parallel):
        // then knotd serves nothing, and we try another port.
        for _ in 0..3 {
            let dir = std::env::temp_dir().join(format!("xh-knot-{}-{}", std::process::id(), free_udp_port()));
            std::fs::create_dir_all(dir.join("db")).unwrap();
            let port = free_udp_port();
            for (name, text) in zones {
                std::fs::write(dir.join(format!("{name}.zone")), text).unwrap();
            }
            let names: Vec<&str> = zones.iter().map(|(n, _)| *n).collect();
            std::fs::write(dir.join("knot.conf"), knot_conf(&dir, port, &names, signed, workers)).unwrap();
            let child = Command::new("knotd")
                .args(["-c", dir.join("knot.conf").to_str().unwrap()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let knot = Knot { dir, port, child };
            if !names.iter().all(|name| knot.serves(name, load_timeout)) {
                eprintln!(
                    "knotd on port {port} serves nothing, retrying: {}",
                    std::fs::read_to_string(knot.dir.join("knot.log")).unwrap_or_default()
                );
                continue;
            }
            // knotd opens its control socket only after loading the zones.
            eventually("knotd's control socket", || {
                if knot.dir.join("knot.sock").exists() {
                    "ok".into()
                } else {
                    String::new()
                }
            });
            return Some(knot);
        }
        panic!("knotd did not start on three ports");
    }

    pub fn knotc(&self, args: &[&str]) {
        let out = Command::new("knotc")
            .args(["-c", self.dir.join("knot.conf").to_str().unwrap()])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "knotc {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn dig(&self, args: &[&str]) -> String {
        let out = Command::new("kdig")
            .args(["@127.0.0.1", "-p", &self.port.to_string(), "+time=1", "+retry=0"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    }

    /// Whether knotd answers for `zone` within `timeout`.
    fn serves(&self, zone: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if !self.dig(&["+short", "SOA", zone]).is_empty() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    pub fn nameserver(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Replaces a zone's file and makes knotd load it.
    pub fn replace(&self, zone: &str, text: String) {
        std::fs::write(self.dir.join(format!("{zone}.zone")), text).unwrap();
        self.knotc(&["zone-reload", zone]);
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

/// knot.conf for `zones` served from `dir`; the `signed` ones are signed by knotd (ECDSA P-256, NSEC).
pub fn knot_conf(dir: &Path, port: u16, zones: &[&str], signed: &[&str], workers: Option<u32>) -> String {
    let d = dir.display();
    let workers = workers.map_or_else(String::new, |n| format!("  background-workers: {n}\n"));
    let mut conf = format!(
        "server:\n  listen: 127.0.0.1@{port}\n  rundir: {d}\n{workers}control:\n  listen: {d}/knot.sock\n\
         database:\n  storage: {d}/db\nlog:\n  - target: {d}/knot.log\n    any: info\n\
         policy:\n  - id: lab\n    algorithm: ecdsap256sha256\n\
         template:\n  - id: default\n    storage: {d}\n    file: \"%s.zone\"\n    zonefile-load: whole\n    journal-content: none\n\
         \x20 - id: signed\n    storage: {d}\n    file: \"%s.zone\"\n    zonefile-load: whole\n    journal-content: none\n\
         \x20   dnssec-signing: on\n    dnssec-policy: lab\nzone:\n"
    );
    for name in zones {
        let template = if signed.contains(name) { "signed" } else { "default" };
        conf.push_str(&format!("  - domain: {name}\n    template: {template}\n"));
    }
    conf
}

pub fn zone_of(origin: &str, serial: u32, body: &str) -> String {
    format!(
        "$ORIGIN {origin}.\n$TTL 60\n@ SOA ns.{origin}. hostmaster.{origin}. {serial} 3600 600 86400 60\n@ NS ns.{origin}.\nns A 127.0.0.1\n{body}\n"
    )
}

/// Waits until `probe` gives a non-empty answer (knotd signs and reloads in the background).
pub fn eventually(what: &str, probe: impl Fn() -> String) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = probe();
        if !out.trim().is_empty() {
            return out;
        }
        assert!(Instant::now() < deadline, "{what} never appeared");
        std::thread::sleep(Duration::from_millis(100));
    }
}
