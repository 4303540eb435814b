//! Verification and the DNS tester for 10,000 domains against Knot on loopback, beside dnsperf
//! asking the same server the same 70,000 questions.
//!
//! `cargo bench -p xmpp-hosting-core --bench dns` (DOMAINS=N to change the count, CONCURRENCY=N
//! for the domains checked at once). Prints wall time and peak memory of each run; figures, not
//! assertions. Skips when knotd is missing; the dnsperf line is skipped when dnsperf is.

#[path = "../tests/support/knot.rs"]
mod knot;

use std::process::Command;
use std::time::{Duration, Instant};

use knot::Knot;

use xmpp_hosting_core::verification::ClaimState;
use xmpp_hosting_core::Hosting;

const ZONE: &str = "bench.example";

/// Peak resident memory of this process, in MiB (Linux).
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn main() {
    if Command::new("knotd").arg("--version").output().is_err() {
        eprintln!("knotd is not installed (scripts/install-deps): skipping the DNS bench");
        return;
    }
    let n: usize = std::env::var("DOMAINS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let dir = std::env::temp_dir().join(format!("xh-bench-dns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let h = Hosting::open(dir.join("bench.db")).unwrap();
    let domains: Vec<String> = (0..n).map(|i| format!("d{i}.{ZONE}")).collect();

    let t = Instant::now();
    let claims: Vec<_> = domains.iter().map(|d| h.claim_domain(d, "bench").unwrap()).collect();
    println!("setup: {n} claims stored in {:.2?}", t.elapsed());

    let mut zone = String::new();
    let mut queries = String::new();
    for (i, c) in claims.iter().enumerate() {
        let d = format!("d{i}");
        zone += &format!(
            "xmpp-hosting-verification.{d} TXT \"verify={}\"\n\
             _xmpp-client._tcp.{d} SRV 5 1 5222 xmpp.provider.example.\n\
             _xmpps-client._tcp.{d} SRV 5 1 443 xmpp.provider.example.\n\
             _xmpp-server._tcp.{d} SRV 5 1 5269 xmpp.provider.example.\n\
             share.{d} CNAME share.provider.example.\n\
             proxy.{d} CNAME proxy.provider.example.\n\
             conference.{d} CNAME conference.provider.example.\n",
            c.token
        );
        let fq = format!("{d}.{ZONE}");
        queries += &format!(
            "xmpp-hosting-verification.{fq} TXT\n_xmpp-client._tcp.{fq} SRV\n_xmpps-client._tcp.{fq} SRV\n\
             _xmpp-server._tcp.{fq} SRV\nshare.{fq} CNAME\nproxy.{fq} CNAME\nconference.{fq} CNAME\n"
        );
    }
    let t = Instant::now();
    // One loading thread, so knotd leaves the other core to the resolver; a big zone loads slowly.
    let knot = Knot::start_with(&[(ZONE, knot::zone_of(ZONE, 1, &zone))], &[], Some(1), Duration::from_secs(60))
        .expect("knotd is installed");
    let port = knot.port.to_string();
    println!("setup: knotd serving {} records in {:.2?}", 7 * n, t.elapsed());

    let concurrency = std::env::var("CONCURRENCY").unwrap_or_else(|_| "64".into());
    for (k, v) in [
        ("dns.nameservers", format!("[\"127.0.0.1:{port}\"]")),
        ("dns.timeout_ms", "2000".into()),
        ("dns.attempts", "1".into()),
        ("dns.concurrency", concurrency.clone()),
        ("dns.xmpp_client", r#"{"target":"xmpp.provider.example","port":5222,"priority":5}"#.into()),
        ("dns.xmpps_client", r#"{"target":"xmpp.provider.example","port":443,"priority":5}"#.into()),
        ("dns.xmpp_server", r#"{"target":"xmpp.provider.example","port":5269,"priority":5}"#.into()),
        (
            "dns.cnames",
            r#"[{"label":"share","target":"share.provider.example"},{"label":"proxy","target":"proxy.provider.example"},{"label":"conference","target":"conference.provider.example"}]"#.into(),
        ),
    ] {
        h.set_provider_setting(k, &v).unwrap();
    }
    println!("concurrency: {concurrency} domains at once; peak RSS before the runs {:.1} MiB", peak_rss_mib());

    // Verification: 2 queries (TXT, CNAME) per domain and one store write per domain.
    let pairs: Vec<(String, String)> = domains.iter().map(|d| (d.clone(), "bench".to_string())).collect();
    let t = Instant::now();
    let verified = h.verify_domains(&pairs).unwrap().wait().unwrap();
    let took = t.elapsed();
    let ok = verified.iter().filter(|c| c.state == ClaimState::Verified).count();
    println!(
        "verify: {n} domains ({} queries) in {took:.2?} = {:.0} domains/s; {ok} verified; peak RSS {:.1} MiB",
        2 * n,
        n as f64 / took.as_secs_f64(),
        peak_rss_mib()
    );
    assert_eq!(ok, n, "every domain has its proof");

    // The DNS tester: 6 queries per domain, nothing written.
    let t = Instant::now();
    let reports = h.dns_test_many(&domains).unwrap().wait().unwrap();
    let took = t.elapsed();
    let ok = reports.iter().filter(|r| r.all_ok()).count();
    println!(
        "dns test: {n} domains ({} queries) in {took:.2?} = {:.0} queries/s; {ok} all ok; peak RSS {:.1} MiB",
        6 * n,
        6.0 * n as f64 / took.as_secs_f64(),
        peak_rss_mib()
    );
    assert_eq!(ok, n, "every report is all ok");

    // Both at once, as the issue counts them: TXT + 3 SRV + 3 CNAME per domain (plus the CNAME
    // proof lookup verification also makes).
    let t = Instant::now();
    let v = h.verify_domains(&pairs).unwrap();
    let r = h.dns_test_many(&domains).unwrap();
    let (v, r) = (v.wait().unwrap(), r.wait().unwrap());
    let took = t.elapsed();
    assert_eq!((v.len(), r.len()), (n, n));
    println!("verify + dns test: {n} domains ({} queries) in {took:.2?}; peak RSS {:.1} MiB", 8 * n, peak_rss_mib());

    std::fs::write(dir.join("queries.txt"), &queries).unwrap();
    match Command::new("dnsperf")
        .args(["-s", "127.0.0.1", "-p", &port, "-d"])
        .arg(dir.join("queries.txt"))
        .args(["-n", "1", "-q", "256"])
        .output()
    {
        Err(_) => println!("dnsperf: not installed (apt-get install dnsperf), skipped"),
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            for line in text.lines().filter(|l| {
                ["Queries sent", "Queries completed", "Queries lost", "Run time", "Queries per second"]
                    .iter()
                    .any(|k| l.contains(k))
            }) {
                println!("dnsperf: {}", line.trim());
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}
