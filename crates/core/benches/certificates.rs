//! Certificate generation time and the expiry check of many domains, on a file store.
//!
//! `cargo bench -p xmpp-hosting-core --bench certificates` (CERT_DOMAINS=N, default 10,000).
//! Prints the time of `generate_certificate` with ECDSA P-256 and with RSA 2048 (key, certificate
//! and store write), then of `certificate_expiry` over N domains with a certificate. Figures, not
//! assertions.

use std::time::{Duration, Instant};

use xmpp_hosting_core::certificates::{GenerateOptions, KeyKind};
use xmpp_hosting_core::Hosting;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let domains: usize = std::env::var("CERT_DOMAINS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let dir = std::env::temp_dir().join(format!("xh-bench-certs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let h = Hosting::open(dir.join("bench.db")).unwrap();
    h.add_domain("bench.example").unwrap();
    for (kind, runs) in [(KeyKind::Ecdsa, 50), (KeyKind::Rsa, 10)] {
        let times: Vec<Duration> = (0..runs)
            .map(|_| {
                let start = Instant::now();
                h.generate_certificate("bench.example", GenerateOptions { key: kind, ..Default::default() }).unwrap();
                start.elapsed()
            })
            .collect();
        let max = *times.iter().max().unwrap();
        println!("generate {}: median {:?}, max {:?} over {runs} runs", kind.as_str(), median(times), max);
    }
    let start = Instant::now();
    for i in 0..domains {
        let d = format!("d{i}.bench.example");
        h.add_domain(&d).unwrap();
        h.generate_certificate(&d, GenerateOptions::default()).unwrap();
    }
    println!("{domains} domains added with an ECDSA certificate in {:?}", start.elapsed());
    let times: Vec<Duration> = (0..5)
        .map(|_| {
            let start = Instant::now();
            let all = h.certificate_expiry().unwrap();
            assert_eq!(all.len(), domains + 1);
            start.elapsed()
        })
        .collect();
    println!("certificate_expiry over {} domains: median {:?} of 5", domains + 1, median(times));
    std::fs::remove_dir_all(&dir).ok();
}
