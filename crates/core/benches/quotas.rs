//! Slot decision latency (authorize + commit) with 1,000 / 100,000 / 1,000,000 uploads stored.
//!
//! `cargo bench -p xmpp-hosting-core --bench quotas` (SIZES=1000,100000 to choose,
//! DECISIONS=5000 per size). A thread checkpoints the WAL every 100 ms (CHECKPOINT_MS=5000 for the
//! servers' own interval, with DECISIONS=50000 so that the run spans several), as the servers'
//! timers do every few seconds at a lower request rate (NO_CHECKPOINT=1 leaves it to SQLite's inline
//! backstop; with it, WAL_PAGES=1 and DECISIONS below ~900 prints the WAL pages written; PARTS=1
//! times the domain and provider settings lookups that precede the decision's transaction).
//! The store is filled in one transaction straight into the ledger tables (creating a million
//! uploads through the API would take minutes and measure nothing new). The measured user has the
//! same month of history in every run — 100 uploads — so the figures show whether a decision
//! grows with the uploads stored by everyone else; a last line measures the worst case the
//! design allows, a user with an upload in every hour of the month.

use std::time::{Duration, Instant};

use rusqlite::params;
use xmpp_hosting_core::quotas::UploadDecision;
use xmpp_hosting_core::{Hosting, ManualClock};

const NOW: i64 = 1_750_000_000;

fn seed(path: &std::path::Path, uploads: usize, measured_history: usize) {
    let mut c = rusqlite::Connection::open(path).unwrap();
    let tx = c.transaction().unwrap();
    {
        let mut file = tx
            .prepare(
                "INSERT INTO upload_files (file_id, domain, username, size, stored_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .unwrap();
        let mut volume = tx
            .prepare(
                "INSERT INTO upload_volume (domain, username, span, start, bytes) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (domain, username, span, start) DO UPDATE SET bytes = bytes + ?5",
            )
            .unwrap();
        let history = (0..measured_history).map(|i| ("measured".to_string(), i));
        let others = (0..uploads.saturating_sub(measured_history)).map(|i| (format!("user{}", i % 1000), i));
        for (n, (user, i)) in history.chain(others).enumerate() {
            let at = NOW - ((i as i64 * 7919) % (30 * 86_400));
            file.execute(params![format!("f{n}"), "bench.example", user, 1000, at]).unwrap();
            for span in [3600i64, 86_400] {
                volume.execute(params!["bench.example", user, span, at.div_euclid(span), 1000]).unwrap();
                volume.execute(params!["bench.example", "", span, at.div_euclid(span), 1000]).unwrap();
            }
        }
        let total = uploads as i64 * 1000;
        for (scope, user, bytes) in
            [("global", "", total), ("domain", "", total), ("user", "measured", measured_history as i64 * 1000)]
        {
            let domain = if scope == "global" { "" } else { "bench.example" };
            tx.execute(
                "INSERT INTO upload_usage (scope, domain, username, stored_bytes, reserved_bytes) VALUES (?1, ?2, ?3, ?4, 0)",
                params![scope, domain, user, bytes],
            )
            .unwrap();
        }
    }
    tx.commit().unwrap();
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn run(label: &str, uploads: usize, measured_history: usize, results: &mut Vec<(usize, f64, f64)>) {
    let dir = std::env::temp_dir().join(format!("xh-bench-quotas-{}-{uploads}-{measured_history}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bench.db");
    let h = Hosting::open(&path).unwrap().with_clock(ManualClock::new(NOW));
    h.add_domain("bench.example").unwrap();
    // A customer's domain, the costlier case: each decision also looks up its owner's claim
    // (a suspended domain takes no uploads).
    h.claim_domain("bench.example", "owner").unwrap();
    h.override_claim("bench.example", "owner", "bench: no DNS here").unwrap();
    // Every limit set, so every check runs: large enough that each decision is a grant.
    for (k, v) in [
        ("uploads.max_file_size", "1000000000"),
        ("uploads.user_storage", "1000000000000"),
        ("uploads.domain_storage", "1000000000000000"),
        ("uploads.user_daily", "1000000000000"),
        ("uploads.user_weekly", "1000000000000"),
        ("uploads.user_monthly", "1000000000000"),
        ("uploads.domain_daily", "1000000000000000"),
        ("uploads.domain_weekly", "1000000000000000"),
        ("uploads.domain_monthly", "1000000000000000"),
    ] {
        h.set_domain_setting("bench.example", k, v).unwrap();
    }
    h.set_provider_setting("uploads.storage", "1000000000000000").unwrap();
    let t = Instant::now();
    seed(&path, uploads, measured_history);
    let seeded = t.elapsed();
    // As in a server, checkpoints run beside the decisions (Prosody's and ejabberd's timers call
    // Hosting::checkpoint every 5 s; here every CHECKPOINT_MS, 100 by default, on its own
    // connection).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let checkpoint_ms: u64 = std::env::var("CHECKPOINT_MS").ok().and_then(|n| n.parse().ok()).unwrap_or(100);
    let checkpointer = {
        let (stop, other) = (stop.clone(), Hosting::open(&path).unwrap());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if std::env::var_os("NO_CHECKPOINT").is_none() {
                    other.checkpoint().unwrap();
                }
                std::thread::sleep(Duration::from_millis(checkpoint_ms));
            }
        })
    };
    let decisions: usize = std::env::var("DECISIONS").ok().and_then(|n| n.parse().ok()).unwrap_or(5_000);
    let (mut both, mut auth, mut commit) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..decisions {
        let t0 = Instant::now();
        let decision = h.authorize_upload("bench.example", "measured", 1000).unwrap();
        let t1 = Instant::now();
        match decision {
            UploadDecision::Granted(r) => h.commit_upload(r.id, 1000, &format!("new{i}")).unwrap(),
            UploadDecision::Denied(d) => panic!("denied: {d:?}"),
        }
        let t2 = Instant::now();
        both.push(t2 - t0);
        auth.push(t1 - t0);
        commit.push(t2 - t1);
    }
    if std::env::var_os("PARTS").is_some() {
        let t = Instant::now();
        for _ in 0..decisions {
            h.require_domain("bench.example").unwrap();
        }
        let domain = t.elapsed() / decisions as u32;
        let t = Instant::now();
        for _ in 0..decisions {
            h.provider_settings().unwrap();
        }
        println!("per decision: domain lookup {domain:?}, provider settings {:?}", t.elapsed() / decisions as u32);
    }
    if std::env::var_os("WAL_PAGES").is_some() {
        let (pages, _) = h.checkpoint().unwrap();
        println!("WAL pages: {pages} for {decisions} decisions");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    checkpointer.join().unwrap();
    for v in [&mut both, &mut auth, &mut commit] {
        v.sort();
    }
    let p = |v: &[Duration], q| percentile(v, q).as_secs_f64() * 1e6;
    println!(
        "{label:<34} {uploads:>9} stored: authorize+commit p50 {:>5.0} us p99 {:>5.0} us max {:>6.0} us | \
         authorize p50 {:>4.0} p99 {:>4.0} | commit p50 {:>4.0} p99 {:>4.0} (seeded in {seeded:.1?})",
        p(&both, 0.5),
        p(&both, 0.99),
        p(&both, 1.0),
        p(&auth, 0.5),
        p(&auth, 0.99),
        p(&commit, 0.5),
        p(&commit, 0.99),
    );
    results.push((uploads, p(&both, 0.5), p(&both, 0.99)));
    std::fs::remove_dir_all(&dir).ok();
}

fn main() {
    let sizes: Vec<usize> = std::env::var("SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 100_000, 1_000_000]);
    let mut results = Vec::new();
    for &n in &sizes {
        run("measured user with 100 uploads", n, 100, &mut results);
    }
    if let (Some(first), Some(last)) = (results.first(), results.last()) {
        println!(
            "flatness: {} stored vs {}: p50 x{:.2}, p99 x{:.2} (target: within x1.2, p99 < 200 us)",
            last.0,
            first.0,
            last.1 / first.1,
            last.2 / first.2
        );
    }
    run("worst case: an upload every hour", sizes[0].max(720), 720, &mut Vec::new());
}
