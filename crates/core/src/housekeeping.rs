//! The one housekeeping pass every deployment runs: what is due when, in what batches, and what
//! an admin must be told about it.
//!
//! A server drives it from ONE timer: it asks [`Housekeeping::start`] to run whatever is due
//! (on the core's worker, so the server's loop or scheduler never waits), gets back a finished
//! [`HousekeepingReport`] (log lines in their final words, notices for the admins, and when to
//! call again), and only delivers it. Deployments without a server timer run
//! `xmpp-hosting housekeeping run` from cron instead. Before this module each server kept its own
//! intervals, batch sizes and alert wording, and they had drifted apart (ejabberd never purged
//! unusable invites); now a change to the schedule or a notice is made here, once.
//!
//! The schedule reads the core's [`crate::Clock`], so tests move time instead of sleeping; a
//! clock that goes backwards (an NTP step) makes every step due rather than none.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::invites::{AccountOutcome, PurgeReport, StaleRegistration};
use crate::locked::locked;
use crate::quotas::UploadUpkeep;
use crate::retention::prosody_archive::PROSODY_AUTOCHECKPOINT;
use crate::verification::{Claim, ClaimState};
use crate::{Error, Hosting, Pending, Result, Timestamp};

/// How many due domain re-checks one pass starts at most: the rest wait for the next pass, so
/// one pass stays bounded however many customers' domains come due at once.
pub const RECHECK_BATCH: u32 = 1000;

/// How many registrations that never reported an outcome one pass asks the server about (it
/// looks each account up in its own account store); the rest wait for the next purge.
pub const STALE_BATCH: usize = 1000;

/// One kind of upkeep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Moves the store's write-ahead log into the database file, so no request pays for it.
    Checkpoint,
    /// Re-checks the DNS proof of customers' verified and lost domains whose time has come.
    DomainRecheck,
    /// Deletes invites nobody can use any more, and gives back the uses of registrations that
    /// never finished.
    InvitePurge,
    /// Purges the upload ledger (expired reservations, old window buckets) and forgets files
    /// gone from the servers' upload directories.
    UploadUpkeep,
    /// Deletes what each domain's retention policy says has expired (issue 13), in bounded,
    /// resumable sweeps: each domain's kinds once an hour, at most
    /// [`crate::retention::PASS_BUDGET`] a pass.
    Retention,
    /// Certificates (issue 14): a first self-signed certificate for verified customers' domains,
    /// renewal of self-signed ones, expiry notices for the others, and the server's certificate
    /// directory brought in line with the store (see `certificates::expiry`).
    Certificates,
    /// The web panel's jobs (issue 16): those whose process ended while they ran are reported
    /// interrupted, finished results past their keeping time are deleted
    /// (see `panel::jobs::upkeep`).
    PanelJobs,
}

impl Step {
    pub const ALL: [Step; 7] = [
        Step::Checkpoint,
        Step::DomainRecheck,
        Step::InvitePurge,
        Step::UploadUpkeep,
        Step::Retention,
        Step::Certificates,
        Step::PanelJobs,
    ];

    /// The name used in reports and in schedule overrides.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Checkpoint => "checkpoint",
            Step::DomainRecheck => "domain_recheck",
            Step::InvitePurge => "invite_purge",
            Step::UploadUpkeep => "upload_upkeep",
            Step::Retention => "retention",
            Step::Certificates => "certificates",
            Step::PanelJobs => "panel_jobs",
        }
    }

    /// What the step does, as a log line begins.
    fn describe(self) -> &'static str {
        match self {
            Step::Checkpoint => "Store checkpoint",
            Step::DomainRecheck => "Domain re-verification",
            Step::InvitePurge => "Invite purge",
            Step::UploadUpkeep => "Upload upkeep",
            Step::Retention => "Retention sweep",
            Step::Certificates => "Certificate upkeep",
            Step::PanelJobs => "Panel job upkeep",
        }
    }
}

/// How often each step runs, in seconds, and how big a re-check batch is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Schedule {
    pub checkpoint: u64,
    pub domain_recheck: u64,
    pub invite_purge: u64,
    pub upload_upkeep: u64,
    pub retention: u64,
    pub certificates: u64,
    pub panel_jobs: u64,
    pub recheck_batch: u32,
}

impl Default for Schedule {
    /// Checkpoints often (a WAL that grows makes every read slower); re-checks often enough that
    /// a domain due is looked at within minutes (each claim has its own, much longer, interval:
    /// `dns.recheck_interval`); the ledger and invites are swept at a pace that costs nothing.
    fn default() -> Self {
        Schedule {
            checkpoint: 5,
            domain_recheck: 600,
            invite_purge: 3600,
            upload_upkeep: 300,
            // Each domain is swept once an hour; looking every 5 minutes resumes a sweep its
            // budget cut short soon enough.
            retention: 300,
            // A certificate changed by the CLI or another process is installed within a minute;
            // a pass with nothing to do reads the store and compares files.
            certificates: 60,
            // Results are kept an hour (`panel::jobs::KEEP_FINISHED`); a poll sees an interrupted
            // job at once, so this only bounds the table.
            panel_jobs: 3600,
            recheck_batch: RECHECK_BATCH,
        }
    }
}

/// The longest interval a schedule accepts: a week. Longer is a typo (milliseconds for seconds),
/// and would leave invites and the ledger unswept for good.
const MAX_INTERVAL: u64 = 7 * 24 * 3600;

impl Schedule {
    /// Seconds between two runs of `step`.
    pub fn interval(&self, step: Step) -> u64 {
        match step {
            Step::Checkpoint => self.checkpoint,
            Step::DomainRecheck => self.domain_recheck,
            Step::InvitePurge => self.invite_purge,
            Step::UploadUpkeep => self.upload_upkeep,
            Step::Retention => self.retention,
            Step::Certificates => self.certificates,
            Step::PanelJobs => self.panel_jobs,
        }
    }

    /// Changes one entry, named as [`Step::as_str`] (an interval in seconds; fractions round
    /// up to whole seconds, the clock's unit) or `recheck_batch` (a count). Servers pass their
    /// configuration options through this, so a bad value is refused in the admin's words.
    pub fn set(&mut self, name: &str, value: f64) -> Result<()> {
        if name == "recheck_batch" {
            if !((1.0..=100_000.0).contains(&value) && value.fract() == 0.0) {
                return Err(Error::InvalidArgument(format!(
                    "recheck_batch is a whole number of domains from 1 to 100000, not {value}"
                )));
            }
            self.recheck_batch = value as u32;
            return Ok(());
        }
        let Some(step) = Step::ALL.into_iter().find(|s| s.as_str() == name) else {
            return Err(Error::InvalidArgument(format!(
                "unknown housekeeping setting {name:?}: use checkpoint, domain_recheck, invite_purge, upload_upkeep, \
                 retention, certificates, panel_jobs (seconds) or recheck_batch"
            )));
        };
        if !(value.is_finite() && value > 0.0 && value <= MAX_INTERVAL as f64) {
            return Err(Error::InvalidArgument(format!(
                "the {name} interval is more than 0 and at most {MAX_INTERVAL} seconds (a week), not {value}"
            )));
        }
        let seconds = value.ceil() as u64;
        match step {
            Step::Checkpoint => self.checkpoint = seconds,
            Step::DomainRecheck => self.domain_recheck = seconds,
            Step::InvitePurge => self.invite_purge = seconds,
            Step::UploadUpkeep => self.upload_upkeep = seconds,
            Step::Retention => self.retention = seconds,
            Step::Certificates => self.certificates = seconds,
            Step::PanelJobs => self.panel_jobs = seconds,
        }
        Ok(())
    }

    /// The default schedule with some entries changed (see [`Schedule::set`]).
    pub fn with_overrides(overrides: impl IntoIterator<Item = (String, f64)>) -> Result<Schedule> {
        let mut schedule = Schedule::default();
        for (name, value) in overrides {
            schedule.set(&name, value)?;
        }
        Ok(schedule)
    }
}

/// Who a notice is for. Servers map the kind to people: Prosody's `admins`, ejabberd's `notify`
/// option (by default the `admin` ACL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Recipients {
    Admins,
    /// The owner of the notice's domain (the account that proved it): `Notice::account`.
    Owner,
}

/// A message the server sends as it is: the core decided who gets it and wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notice {
    pub to: Recipients,
    /// What happened, for servers that also raise an event (Prosody fires
    /// `xmpp-hosting/<event>`): `domain-lost`, `domain-suspended`, `certificate-renewed`,
    /// `certificate-expiring` or `certificate-expired`.
    pub event: &'static str,
    pub domain: String,
    pub account: String,
    pub text: String,
}

/// How a log line is to be logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    /// What an admin looks at only to follow the schedule (servers log it at debug level).
    Debug,
    Info,
    Warn,
}

/// A line for the server's log, in its final words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    pub level: LogLevel,
    pub text: String,
}

/// A step that failed; the others still ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepFailure {
    pub step: Step,
    /// The core's error code ([`Error::code`]).
    pub code: &'static str,
    pub message: String,
}

/// What one checkpoint did: pages in the write-ahead log, and how many went into the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CheckpointReport {
    pub wal_pages: i64,
    pub copied: i64,
    /// Pages copied in the server databases the retention sweeps work in (Prosody's SQLite
    /// files; [`Hosting::checkpoint_prosody_databases`]).
    pub server_copied: i64,
}

/// What one pass did, finished: servers log [`HousekeepingReport::log`], deliver
/// [`HousekeepingReport::notices`] and call again after [`HousekeepingReport::next_in`] seconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HousekeepingReport {
    pub started_at: Timestamp,
    /// The steps that ran, in the order they ran.
    pub ran: Vec<Step>,
    pub checkpoint: Option<CheckpointReport>,
    /// Domains re-checked (each at most `recheck_batch`).
    pub domains_rechecked: Option<usize>,
    pub invites: Option<PurgeReport>,
    /// Registrations that never finished, settled by the server's answers about their accounts.
    pub registrations_settled: Option<usize>,
    pub uploads: Option<UploadUpkeep>,
    /// Retention sweeps that ran (or resumed) in this pass.
    pub retention: Option<Vec<crate::retention::SweepRecord>>,
    /// Retention sweeps due that the server runs itself through its storage API
    /// ([`Hosting::begin_driven_sweep`]).
    pub retention_due: Vec<crate::retention::DueSweep>,
    /// A sweep stopped at the pass's budget: the next pass comes within seconds, not minutes.
    pub retention_unfinished: bool,
    /// What the certificate upkeep did; servers reload their TLS configuration when
    /// `installed` says files changed.
    pub certificates: Option<crate::certificates::CertificateUpkeep>,
    /// What the panel's job upkeep did.
    pub panel_jobs: Option<crate::panel::jobs::JobsUpkeep>,
    pub failures: Vec<StepFailure>,
    pub notices: Vec<Notice>,
    pub log: Vec<LogLine>,
    /// Seconds until the next step is due, counted from when this pass ended.
    pub next_in: u64,
}

/// When each step last started, and whether a pass is under way.
#[derive(Debug, Default)]
struct Runs {
    last: HashMap<Step, Timestamp>,
    running: bool,
}

/// The housekeeping of one server process (or one CLI run): the schedule, and when each step
/// last ran. Cheap to clone; clones share their record. A fresh one has every step due, so a
/// server catches up at start and a cron job runs everything.
#[derive(Debug, Clone)]
pub struct Housekeeping {
    hosting: Hosting,
    schedule: Schedule,
    runs: Arc<Mutex<Runs>>,
    /// Where this server reads the hosted domains' certificates (none: not installed).
    certificates: Arc<Mutex<Option<crate::certificates::InstallTarget>>>,
    /// The Prosody databases the checkpoint step copies the logs of: none but in a Prosody
    /// ([`Housekeeping::checkpoint_prosody_databases`]); the files that failed last time, told
    /// once, not every few seconds.
    prosody_databases: Arc<Mutex<Option<BTreeSet<String>>>>,
}

/// Clears the "pass under way" mark however the pass ends (a panic included), so a failure can
/// never stop housekeeping for good.
struct RunningGuard(Arc<Mutex<Runs>>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        locked(&self.0).running = false;
    }
}

impl Housekeeping {
    pub fn new(hosting: Hosting, schedule: Schedule) -> Self {
        Housekeeping {
            hosting,
            schedule,
            runs: Arc::default(),
            certificates: Arc::default(),
            prosody_databases: Arc::default(),
        }
    }

    /// Makes the checkpoint step also checkpoint the Prosody databases the retention sweeps
    /// work in ([`Hosting::checkpoint_prosody_databases`]), from the next pass on; clones share
    /// it. For a pass running in Prosody itself: the CLI's or ejabberd's pass on a shared store
    /// leaves Prosody's files alone.
    pub fn checkpoint_prosody_databases(&self) {
        locked(&self.prosody_databases).get_or_insert_with(BTreeSet::new);
    }

    /// The checkpoint step's part for Prosody's databases: the pages now in their files; a file
    /// that starts or stops failing is said in the log.
    fn checkpoint_prosody(&self, h: &Hosting, log: &mut Vec<LogLine>) -> Result<i64> {
        let mut guard = locked(&self.prosody_databases);
        let Some(failing) = guard.as_mut() else { return Ok(0) };
        let (copied, failed) = h.checkpoint_prosody_databases()?;
        let now: BTreeSet<String> = failed.iter().map(|(path, _)| path.clone()).collect();
        for (path, e) in &failed {
            if !failing.contains(path) {
                log.push(LogLine {
                    level: LogLevel::Warn,
                    text: format!(
                        "Cannot checkpoint Prosody's database {path} ({e}): Prosody copies its log itself, on its \
                         loop, once it is {PROSODY_AUTOCHECKPOINT} pages long"
                    ),
                });
            }
        }
        for path in failing.difference(&now) {
            log.push(info(format!("Prosody's database {path} is checkpointed again")));
        }
        *failing = now;
        Ok(copied)
    }

    /// Makes the certificate step install the store's certificates into `target` (the server's
    /// own directory for them), from the next pass on; clones share it.
    pub fn install_certificates_into(&self, target: Option<crate::certificates::InstallTarget>) {
        *locked(&self.certificates) = target;
    }

    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    fn runs(&self) -> std::sync::MutexGuard<'_, Runs> {
        locked(&self.runs)
    }

    fn is_due(&self, runs: &Runs, step: Step, now: Timestamp) -> bool {
        match runs.last.get(&step) {
            None => true,
            // A clock set back must not put a step off until it catches up again.
            Some(&last) => now < last || now - last >= self.schedule.interval(step) as i64,
        }
    }

    /// The steps due now; none while a pass is under way (it would run them twice).
    pub fn due(&self) -> Vec<Step> {
        let now = self.hosting.now();
        let runs = self.runs();
        if runs.running {
            return Vec::new();
        }
        Step::ALL.into_iter().filter(|&s| self.is_due(&runs, s, now)).collect()
    }

    /// Seconds until the next step is due (0 when one is due now).
    pub fn next_in(&self) -> u64 {
        let now = self.hosting.now();
        let runs = self.runs();
        Step::ALL
            .into_iter()
            .map(|step| match runs.last.get(&step) {
                Some(&last) if now >= last => (last + self.schedule.interval(step) as i64 - now).max(0) as u64,
                _ => 0,
            })
            .min()
            .unwrap_or(0)
    }

    /// Marks the due steps as started and the pass as under way; `None` while another pass runs.
    fn begin(&self) -> Option<(Vec<Step>, RunningGuard)> {
        let now = self.hosting.now();
        let mut runs = self.runs();
        if runs.running {
            return None;
        }
        let due: Vec<Step> = Step::ALL.into_iter().filter(|&s| self.is_due(&runs, s, now)).collect();
        for &step in &due {
            runs.last.insert(step, now);
        }
        runs.running = true;
        Some((due, RunningGuard(self.runs.clone())))
    }

    /// The registrations whose outcome never came, when the invite purge is due (else none, at
    /// no cost): the server answers each from its own account store and hands the answers to
    /// [`Housekeeping::start`], so a use is never given back on the store's guess.
    pub fn stale_registrations(&self) -> Result<Vec<StaleRegistration>> {
        if !self.due().contains(&Step::InvitePurge) {
            return Ok(Vec::new());
        }
        self.hosting.stale_registrations(STALE_BATCH)
    }

    /// Runs the steps due now on the core's worker (on the worker's own connection, which may
    /// wait longer for another process's lock than a server's loop may) and hands back the
    /// finished report. `upload_roots` are the directories the server's uploads live in (none:
    /// the ledger is still purged, no file is looked for); `outcomes` answer
    /// [`Housekeeping::stale_registrations`]. While another pass is under way this one runs
    /// nothing and says when to come back.
    pub fn start(
        &self,
        upload_roots: Vec<String>,
        outcomes: Vec<AccountOutcome>,
    ) -> Result<Pending<Result<HousekeepingReport>>> {
        let this = self.clone();
        let begun = self.begin();
        self.hosting.later(move |worker| {
            let Some((steps, guard)) = begun else { return Ok(this.idle_report()) };
            let report = this.run_steps(worker, &steps, &upload_roots, &outcomes);
            Ok(this.ended(report, guard))
        })
    }

    /// Runs the steps due now on this thread (for the CLI and C callers that may block).
    pub fn run(&self, upload_roots: &[String], outcomes: &[AccountOutcome]) -> HousekeepingReport {
        let Some((steps, guard)) = self.begin() else { return self.idle_report() };
        let report = self.run_steps(&self.hosting, &steps, upload_roots, outcomes);
        self.ended(report, guard)
    }

    /// Ends a pass: the next may begin, and the report says when it is due. Its last line (at
    /// debug level) says the pass is over, for an admin following the schedule in the log.
    fn ended(&self, mut report: HousekeepingReport, guard: RunningGuard) -> HousekeepingReport {
        drop(guard);
        self.resume_soon(&report);
        report.next_in = self.next_in().max(1);
        let ran: Vec<&str> = report.ran.iter().map(|s| s.as_str()).collect();
        report.log.push(LogLine {
            level: LogLevel::Debug,
            text: format!("Housekeeping pass done ({}); the next in {} s", ran.join(", "), report.next_in),
        });
        report
    }

    /// A retention sweep cut short by the pass's budget resumes at the next pass, a second from
    /// now rather than a whole retention interval later.
    fn resume_soon(&self, report: &HousekeepingReport) {
        if report.retention_unfinished {
            let soon = self.hosting.now() - self.schedule.retention as i64 + 1;
            self.runs().last.insert(Step::Retention, soon);
        }
    }

    /// What a pass that found another under way says: nothing ran, come back in a second.
    fn idle_report(&self) -> HousekeepingReport {
        HousekeepingReport { started_at: self.hosting.now(), next_in: 1, ..Default::default() }
    }

    /// Runs `steps` one after the other; a failing step is reported and the others still run.
    fn run_steps(
        &self,
        h: &Hosting,
        steps: &[Step],
        upload_roots: &[String],
        outcomes: &[AccountOutcome],
    ) -> HousekeepingReport {
        let mut report = HousekeepingReport { started_at: h.now(), ..Default::default() };
        for &step in steps {
            report.ran.push(step);
            let outcome = match step {
                Step::Checkpoint => h.checkpoint().and_then(|(wal_pages, copied)| {
                    let server_copied = self.checkpoint_prosody(h, &mut report.log)?;
                    report.checkpoint = Some(CheckpointReport { wal_pages, copied, server_copied });
                    Ok(())
                }),
                Step::InvitePurge => h.settle_stale_registrations(outcomes).and_then(|settled| {
                    let purged = h.purge_invites()?;
                    if purged.invites_removed > 0 || settled > 0 || purged.registrations_unsettled > 0 {
                        report.log.push(info(format!(
                            "Purged {} unusable invite(s); settled {settled} registration(s) that never finished, \
                             {} wait for the server to say whether their account exists",
                            purged.invites_removed, purged.registrations_unsettled
                        )));
                    }
                    report.registrations_settled = Some(settled);
                    report.invites = Some(purged);
                    Ok(())
                }),
                // The watches Prosody's slot hook queued are on the server's handle, not on the
                // worker's `h`: written first, their finished files are their owners', not unknown.
                Step::UploadUpkeep => h.upload_upkeep_of(&self.hosting, upload_roots).map(|done| {
                    if done.files_forgotten > 0 || done.purged > 0 {
                        report.log.push(info(format!(
                            "Upload upkeep: {} of {} files gone, {} ledger rows purged",
                            done.files_forgotten, done.files_checked, done.purged
                        )));
                    }
                    report.uploads = Some(done);
                }),
                Step::Retention => h.retention_pass(upload_roots, crate::retention::PASS_BUDGET).map(|pass| {
                    for s in pass.sweeps.iter().filter(|s| s.deleted > 0 || s.failed > 0 || !s.errors.is_empty()) {
                        let level = if s.failed > 0 || !s.errors.is_empty() { LogLevel::Warn } else { LogLevel::Info };
                        report.log.push(LogLine { level, text: format!("Retention: {}", s.describe()) });
                    }
                    report.retention = Some(pass.sweeps);
                    report.retention_due = pass.due;
                    report.retention_unfinished = pass.unfinished;
                }),
                Step::Certificates => {
                    let target = locked(&self.certificates).clone();
                    h.certificate_upkeep(target.as_ref()).map(|done| certificate_log(&mut report, done))
                }
                Step::PanelJobs => crate::panel::jobs::upkeep(h).map(|done| {
                    if done.interrupted > 0 || done.removed > 0 {
                        report.log.push(info(format!(
                            "Panel jobs: {} interrupted by their server's end, {} finished ones removed",
                            done.interrupted, done.removed
                        )));
                    }
                    report.panel_jobs = Some(done);
                }),
                Step::DomainRecheck => {
                    h.recheck_due(self.schedule.recheck_batch).and_then(Pending::wait).map(|claims| {
                        report.domains_rechecked = Some(claims.len());
                        for notice in claims.iter().filter_map(domain_notice) {
                            report.log.push(LogLine { level: LogLevel::Warn, text: notice.text.clone() });
                            report.notices.push(notice);
                        }
                    })
                }
            };
            if let Err(e) = outcome {
                report.log.push(LogLine { level: LogLevel::Warn, text: format!("{} failed: {e}", step.describe()) });
                report.failures.push(StepFailure { step, code: e.code(), message: e.to_string() });
            }
        }
        report
    }
}

/// The certificate upkeep's log lines and notices, into the report.
fn certificate_log(report: &mut HousekeepingReport, done: crate::certificates::CertificateUpkeep) {
    for (domain, why) in &done.failed {
        report.log.push(LogLine {
            level: LogLevel::Warn,
            text: format!("Certificate of {domain} not made or renewed: {why}"),
        });
    }
    for domain in &done.generated {
        report.log.push(info(format!("Made a self-signed certificate for {domain}")));
    }
    for r in &done.acme_renewed {
        report.log.push(info(format!(
            "Renewed the certificate of {} by ACME: valid until {}, SHA-256 {}",
            r.domain,
            crate::certificates::human_time(r.not_after),
            r.fingerprint.sha256_hex
        )));
    }
    if let Some(i) = done.installed.as_ref().filter(|i| i.changed()) {
        let list = |v: &[String]| if v.is_empty() { "none".to_string() } else { v.join(", ") };
        report.log.push(info(format!(
            "Certificates installed for {}; removed for {}",
            list(&i.installed),
            list(&i.removed)
        )));
    }
    for notice in done.notices.iter().filter(|n| n.to == Recipients::Admins) {
        report.log.push(LogLine { level: LogLevel::Warn, text: notice.text.clone() });
    }
    report.notices.extend(done.notices.iter().cloned());
    report.certificates = Some(done);
}

fn info(text: String) -> LogLine {
    LogLine { level: LogLevel::Info, text }
}

/// Which states of a re-checked claim the admins hear about, and in what words: a domain whose
/// proof is gone (still served through the grace period), and one suspended for it. A claim
/// stays due while lost, so the admins are reminded at every re-check until it is fixed.
pub fn domain_notice(claim: &Claim) -> Option<Notice> {
    let (event, tail) = match claim.state {
        ClaimState::Lost => ("domain-lost", " (grace period running)"),
        ClaimState::Suspended => ("domain-suspended", ""),
        _ => return None,
    };
    Some(Notice {
        to: Recipients::Admins,
        event,
        domain: claim.domain.clone(),
        account: claim.account.clone(),
        text: format!(
            "Domain {} of {} is {}: its verification record is gone{tail}",
            claim.domain,
            claim.account,
            claim.state.as_str()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invites::NewInvite;
    use crate::ManualClock;

    fn keeper(schedule: Schedule) -> (Housekeeping, ManualClock) {
        let clock = ManualClock::new(1_700_000_000);
        let h = Hosting::open_in_memory().unwrap().with_clock(clock.clone());
        (Housekeeping::new(h, schedule), clock)
    }

    #[test]
    fn a_fresh_pass_runs_everything_then_each_step_on_its_own_interval() {
        let (hk, clock) = keeper(Schedule::default());
        assert_eq!(hk.due(), Step::ALL.to_vec());
        let report = hk.run(&[], &[]);
        assert_eq!(report.ran, Step::ALL.to_vec());
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert_eq!(
            (report.domains_rechecked, report.invites.is_some(), report.uploads.is_some()),
            (Some(0), true, true)
        );
        assert_eq!(report.next_in, 5, "the checkpoint is the next step due");
        assert!(hk.due().is_empty());
        clock.advance(5);
        assert_eq!(hk.due(), vec![Step::Checkpoint]);
        assert_eq!(hk.run(&[], &[]).ran, vec![Step::Checkpoint]);
        clock.advance(295);
        assert_eq!(hk.due(), vec![Step::Checkpoint, Step::UploadUpkeep, Step::Retention, Step::Certificates]);
        hk.run(&[], &[]);
        clock.advance(300);
        assert_eq!(
            hk.due(),
            vec![Step::Checkpoint, Step::DomainRecheck, Step::UploadUpkeep, Step::Retention, Step::Certificates]
        );
        hk.run(&[], &[]);
        clock.advance(3000);
        assert_eq!(hk.due(), Step::ALL.to_vec(), "an hour after the first pass the invites are purged again");
    }

    #[test]
    fn next_in_counts_down_to_the_nearest_step() {
        let schedule = Schedule::with_overrides([("checkpoint".to_string(), 60.0)]).unwrap();
        let (hk, clock) = keeper(schedule);
        assert_eq!(hk.next_in(), 0);
        hk.run(&[], &[]);
        assert_eq!(hk.next_in(), 60);
        clock.advance(45);
        assert_eq!(hk.next_in(), 15);
        clock.advance(100);
        assert_eq!(hk.next_in(), 0);
    }

    #[test]
    fn a_clock_set_back_makes_steps_due_instead_of_putting_them_off() {
        let (hk, clock) = keeper(Schedule::default());
        hk.run(&[], &[]);
        clock.advance(-3600);
        assert_eq!(hk.due(), Step::ALL.to_vec());
        assert_eq!(hk.next_in(), 0);
    }

    #[test]
    fn overrides_are_checked_and_fractions_round_up() {
        let s = Schedule::with_overrides([("upload_upkeep".into(), 0.5), ("recheck_batch".into(), 10.0)]).unwrap();
        assert_eq!((s.upload_upkeep, s.recheck_batch, s.checkpoint), (1, 10, 5));
        for (name, value, says) in [
            ("invite_purge", 0.0, "more than 0"),
            ("invite_purge", f64::NAN, "more than 0"),
            ("checkpoint", 1e9, "a week"),
            ("recheck_batch", 0.5, "whole number"),
            ("recheck", 5.0, "unknown housekeeping setting"),
        ] {
            let err = Schedule::with_overrides([(name.to_string(), value)]).unwrap_err();
            assert_eq!(err.code(), "invalid-argument");
            assert!(err.to_string().contains(says), "{name} {value}: {err}");
        }
    }

    #[test]
    fn unusable_invites_are_purged_by_the_pass() {
        let (hk, clock) = keeper(Schedule::default());
        hk.hosting.add_domain("example.org").unwrap();
        let mut spec = NewInvite::account("example.org");
        spec.expiry = crate::invites::Expiry::After(60);
        let old = hk.hosting.create_invite(&spec).unwrap().invite;
        hk.run(&[], &[]);
        assert_eq!(hk.hosting.invites("example.org").unwrap().len(), 1, "still usable: kept");
        clock.advance(3600);
        let report = hk.run(&[], &[]);
        assert_eq!(report.invites.map(|p| p.invites_removed), Some(1));
        assert!(report.log.iter().any(|l| l.text.starts_with("Purged 1 unusable invite(s)")), "{:?}", report.log);
        assert!(hk.hosting.invites("example.org").unwrap().iter().all(|i| i.id != old.id));
    }

    #[test]
    fn each_pass_ends_with_a_debug_line_saying_what_ran_and_when_the_next_comes() {
        let (hk, clock) = keeper(Schedule::default());
        let first = hk.run(&[], &[]);
        let last = first.log.last().expect("a line");
        assert_eq!(last.level, LogLevel::Debug);
        assert!(last.text.starts_with("Housekeeping pass done (checkpoint, domain_recheck, invite_purge,"), "{last:?}");
        assert!(last.text.ends_with(&format!("; the next in {} s", first.next_in)), "{last:?}");
        clock.advance(Schedule::default().checkpoint as i64);
        let second = hk.run(&[], &[]);
        let last = &second.log.last().expect("a line").text;
        assert!(last.starts_with("Housekeeping pass done (checkpoint"), "{last}");
        assert!(!last.contains("invite_purge"), "{last}");
    }

    #[test]
    fn a_failing_step_is_reported_and_the_others_still_run() {
        let (hk, _clock) = keeper(Schedule::default());
        // Stored settings the DNS worker cannot use (written past the settings' own checks, as an
        // older version or a hand edit could leave them) make the re-check fail.
        let broken = r#"{"dns":{"dnssec":true,"dnssec_trust_anchor":"/nonexistent/xh-anchor"}}"#;
        hk.hosting.store().write(|tx| crate::store::domains::write_provider_settings(tx, broken, 0)).unwrap();
        let report = hk.run(&[], &[]);
        assert_eq!(report.ran, Step::ALL.to_vec());
        assert!(report.invites.is_some() && report.uploads.is_some() && report.checkpoint.is_some());
        assert_eq!(report.retention, Some(Vec::new()));
        assert_eq!(report.domains_rechecked, None);
        assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
        let failure = &report.failures[0];
        assert_eq!((failure.step, failure.code), (Step::DomainRecheck, "invalid-argument"));
        assert!(report.log.iter().any(|l| l.level == LogLevel::Warn
            && l.text.starts_with("Domain re-verification failed: ")
            && l.text.contains("xh-anchor")));
    }

    #[test]
    fn only_lost_and_suspended_domains_alert_the_admins() {
        let h = Hosting::open_in_memory().unwrap();
        let pending = h.claim_domain("her-name.org", "alice").unwrap();
        let claim = |state| Claim { state, ..pending.clone() };
        assert_eq!(domain_notice(&claim(ClaimState::Verified)), None);
        assert_eq!(domain_notice(&claim(ClaimState::Pending)), None);
        let lost = domain_notice(&claim(ClaimState::Lost)).unwrap();
        assert_eq!(
            (lost.to, lost.event, lost.text.as_str()),
            (
                Recipients::Admins,
                "domain-lost",
                "Domain her-name.org of alice is lost: its verification record is gone (grace period running)"
            )
        );
        let suspended = domain_notice(&claim(ClaimState::Suspended)).unwrap();
        assert_eq!(suspended.event, "domain-suspended");
        assert_eq!(suspended.text, "Domain her-name.org of alice is suspended: its verification record is gone");
    }

    #[test]
    fn the_certificate_step_installs_renews_and_tells_admins_and_owner() {
        let (hk, clock) = keeper(Schedule::default());
        let h = hk.hosting.clone();
        h.add_domain("example.org").unwrap();
        h.set_domain_setting("example.org", "owner", "alice@example.net").unwrap();
        h.generate_certificate("example.org", crate::certificates::GenerateOptions::default()).unwrap();
        let dir = std::env::temp_dir().join(format!("xh-hk-certs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        hk.install_certificates_into(Some(crate::certificates::InstallTarget {
            dir: dir.clone(),
            layout: crate::certificates::Layout::Ejabberd,
        }));
        let first = hk.run(&[], &[]);
        let installed = first.certificates.as_ref().and_then(|c| c.installed.clone()).unwrap();
        assert_eq!(installed.installed, ["example.org"]);
        assert!(first.log.iter().any(|l| l.text == "Certificates installed for example.org; removed for none"));
        clock.advance(335 * 86_400);
        let renewed = hk.run(&[], &[]);
        let to: Vec<_> = renewed.notices.iter().map(|n| (n.to, n.event)).collect();
        assert_eq!(to, [(Recipients::Admins, "certificate-renewed"), (Recipients::Owner, "certificate-renewed")]);
        let c = renewed.certificates.unwrap();
        assert_eq!(c.installed.unwrap().installed, ["example.org"], "the renewal is installed in the same pass");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_panel_jobs_step_removes_results_past_their_hour() {
        let (hk, clock) = keeper(Schedule::default());
        let jobs = crate::panel::jobs::Jobs::default();
        let done = Pending::spawn(async { Ok::<_, Error>(1) }).unwrap();
        let id = jobs
            .start(&hk.hosting, "a@x.example", "x.example", "dns-test", move || Ok(done), hk.hosting.now())
            .unwrap();
        while jobs.poll(&hk.hosting, "a@x.example", &id, hk.hosting.now()).unwrap()["state"] == "running" {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let first = hk.run(&[], &[]);
        assert_eq!(first.panel_jobs, Some(crate::panel::jobs::JobsUpkeep { interrupted: 0, removed: 0 }));
        clock.advance(crate::panel::jobs::KEEP_FINISHED);
        let report = hk.run(&[], &[]);
        assert!(report.ran.contains(&Step::PanelJobs), "{:?}", report.ran);
        assert_eq!(report.panel_jobs.map(|p| p.removed), Some(1));
        assert!(report
            .log
            .iter()
            .any(|l| l.text == "Panel jobs: 0 interrupted by their server's end, 1 finished ones removed"));
    }

    #[test]
    fn a_pass_on_the_worker_reports_when_to_come_back_and_never_overlaps() {
        let (hk, _clock) = keeper(Schedule::default());
        let first = hk.start(Vec::new(), Vec::new()).unwrap();
        // While the first pass runs, or once it is done, nothing is due a second time.
        let second = hk.start(Vec::new(), Vec::new()).unwrap().wait().unwrap();
        assert!(second.ran.is_empty(), "{:?}", second.ran);
        let first = first.wait().unwrap();
        assert_eq!(first.ran, Step::ALL.to_vec());
        assert_eq!(first.next_in, 5);
        assert!(hk.due().is_empty());
    }

    /// Prosody's pass runs on the core's worker, whose handle is not the server's: the upkeep
    /// must write the slot watches queued on the server's handle before it looks at the files,
    /// or a finished upload whose watch is still queued is counted as an unknown file (global
    /// storage) instead of its owner's.
    #[test]
    fn the_pass_on_the_worker_writes_the_server_handles_queued_slot_watches_first() {
        use crate::quotas::{UploadDecision, UploadLimits};
        let store = crate::test_store::TestStore::new("housekeeping-slot-watches");
        let h = store.open().with_clock(ManualClock::new(1_700_000_000));
        let limits = UploadLimits { slot_lifetime: 300, ..Default::default() };
        h.add_domain_with("example.org", crate::DomainSettings { uploads: limits, ..Default::default() }).unwrap();
        let root = std::env::temp_dir().join(format!("xh-housekeeping-slot-watches-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let root = root.to_str().unwrap().to_string();
        h.watch_upload_root(&root, "~").unwrap();
        let UploadDecision::Granted(slot) = h.authorize_upload("example.org", "alice", 1_000).unwrap() else {
            panic!("denied")
        };
        let file = format!("{root}/a.bin");
        h.queue_upload_slot_watch(slot.id, file.clone(), 300).unwrap();
        std::fs::write(&file, vec![0u8; 900]).unwrap();

        let hk = Housekeeping::new(h.clone(), Schedule::default());
        let report = hk.start(vec![root.clone()], Vec::new()).unwrap().wait().unwrap();
        let uploads = report.uploads.expect("the upload upkeep ran");
        assert_eq!((uploads.slots_completed, uploads.files_unattributed), (1, 0), "{uploads:?}");
        let usage = h.upload_usage("example.org", Some("alice")).unwrap();
        assert_eq!((usage.stored, usage.reserved), (900, 0), "the file is alice's, not an unknown one");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
