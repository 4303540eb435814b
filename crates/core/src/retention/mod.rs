//! Retention: how long each hosted domain keeps archives and uploads, and the sweeps that keep
//! that promise (issue 13).
//!
//! - [`period`]: durations as the servers' admins write them (`"1w"`, `"30d"`, seconds,
//!   `"never"`), nonsense refused with a [`PeriodError`];
//! - [`policy`]: the per-domain policy (in the domain's settings, section `retention`) and a
//!   user's own shorter archive retention;
//! - [`sweep`]: the engine: bounded steps, resumable from a cursor in the store, dry runs, the
//!   audit log, and the guarantee that nothing newer than the cutoff is deleted;
//! - `uploads`: expired uploads deleted from disk inside the upload directory, the quota
//!   ledger updated in the same step.
//!
//! - [`prosody_archive`]: Prosody's one-to-one and group chat archives: on SQLite the core
//!   deletes in Prosody's database on its worker; on internal storage Prosody deletes through
//!   its storage API in steps planned here (`driven`).

mod driven;
pub mod ejabberd_archive;
pub mod period;
pub mod policy;
mod profile;
pub mod prosody_archive;
pub mod sweep;
mod uploads;

use std::time::Duration;

use serde::Serialize;

pub use driven::{DrivenDone, DrivenOutcome, DrivenStep};
pub use period::{Period, PeriodError, MAX_PERIOD};
pub use policy::{RetentionPolicy, ServerExpiry, POLICY_FIELDS};
pub use prosody_archive::{ArchiveStore, PROSODY_INTERNAL, PROSODY_SQL};
pub use sweep::{Progress, SweepOptions, SweepRecord, SweepState, USERS_ONLY};

use crate::{Error, Hosting, Result};

/// A kind of data a sweep deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// One-to-one message archives (MAM).
    Archive,
    /// Group chat (MUC) archives.
    Muc,
    /// Uploaded files.
    Uploads,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Archive, Kind::Muc, Kind::Uploads];

    /// The name in commands, settings and the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Archive => "archive",
            Kind::Muc => "muc",
            Kind::Uploads => "uploads",
        }
    }

    /// What it is, in a sentence.
    pub fn what(self) -> &'static str {
        match self {
            Kind::Archive => "one-to-one archives",
            Kind::Muc => "group chat archives",
            Kind::Uploads => "uploaded files",
        }
    }

    /// Reads a kind as commands take it.
    pub fn parse(text: &str) -> Result<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == text).ok_or_else(|| {
            Error::InvalidArgument(format!("{text:?} is not a kind of data to sweep: use archive, muc or uploads"))
        })
    }
}

/// How often each domain's kinds are swept by the housekeeping pass, in seconds.
pub const SWEEP_EVERY: i64 = 3600;

/// How long one housekeeping pass spends on sweeps at most; an unfinished sweep resumes at the
/// next pass.
pub const PASS_BUDGET: Duration = Duration::from_secs(2);

impl Hosting {
    /// Runs (or resumes) the sweep of one kind of one domain now. `upload_roots` add upload
    /// directories to the watched ones (a server's configured directory). Archives and group
    /// chat archives are refused until a server hands the core its archive store.
    pub fn retention_sweep(
        &self,
        domain: &str,
        kind: Kind,
        upload_roots: &[String],
        options: &SweepOptions,
    ) -> Result<SweepRecord> {
        match kind {
            Kind::Uploads => {
                let mut target = uploads::Uploads::open(self, upload_roots)?;
                self.sweep_with(domain, kind, &mut target, options)
            }
            Kind::Archive | Kind::Muc => {
                let stores = self.archive_stores(domain, kind)?;
                if stores.is_empty() {
                    return Err(Error::InvalidArgument(format!(
                        "no server has registered where the {} of {domain} are kept: the server module does when \
                         it loads (Prosody: mod_xmpp_hosting_retention on the host with mod_mam or mod_muc_mam; \
                         ejabberd: mod_xmpp_hosting_retention beside mod_mam)",
                        kind.what()
                    )));
                }
                let (ours, theirs): (Vec<_>, Vec<_>) =
                    stores.into_iter().partition(|s| prosody_archive::swept_by_core(&s.backend));
                if ours.is_empty() {
                    return Err(Error::NotAllowed(format!(
                        "the {} of {domain} are in the server's {} storage, which only the running server can \
                         change: its housekeeping sweeps them (Prosody: `retention sweep` in the admin shell)",
                        kind.what(),
                        theirs[0].backend
                    )));
                }
                let mut target = prosody_archive::ProsodySql::new(ours, kind);
                self.sweep_with(domain, kind, &mut target, options)
            }
        }
    }

    /// [`Hosting::retention_sweep`] on the core's worker, for a server's event loop or scheduler:
    /// a sweep takes as long as there is to delete, so it never runs on the caller's thread.
    pub fn start_retention_sweep(
        &self,
        domain: String,
        kind: Kind,
        upload_roots: Vec<String>,
        options: SweepOptions,
    ) -> Result<crate::Pending<Result<SweepRecord>>> {
        self.later(move |worker| worker.retention_sweep(&domain, kind, &upload_roots, &options))
    }

    /// The housekeeping pass's share: resumes unfinished sweeps and starts those due (each
    /// domain's kinds with a period, every [`SWEEP_EVERY`] seconds), spending at most `budget`
    /// in steps. Archives that only the server can change (its internal storage) are not swept
    /// here: they come back in [`RetentionPass::due`] for the server to drive
    /// ([`Hosting::begin_driven_sweep`]).
    pub fn retention_pass(&self, upload_roots: &[String], budget: Duration) -> Result<RetentionPass> {
        let started = std::time::Instant::now();
        let now = self.now();
        let mut out = RetentionPass::default();
        for d in self.domains()? {
            let name = d.name.as_str();
            for kind in Kind::ALL {
                let kept_for_ever = d.settings.retention.period(kind) == Period::Never
                    && (kind != Kind::Archive || self.user_archive_cutoffs(name)?.is_empty());
                if kept_for_ever {
                    continue;
                }
                let (core, server) = if kind == Kind::Uploads {
                    (true, false)
                } else {
                    let stores = self.archive_stores(name, kind)?;
                    (
                        stores.iter().any(|s| prosody_archive::swept_by_core(&s.backend)),
                        stores.iter().any(|s| !prosody_archive::swept_by_core(&s.backend)),
                    )
                };
                if !core && !server {
                    continue;
                }
                let running = self.store().read(|c| crate::store::retention::running(c, name, kind))?.is_some();
                let last = self.store().read(|c| crate::store::retention::last_finished_start(c, name, kind))?;
                // A clock set back (last in the future) makes the sweep due rather than put off.
                let due = running || last.is_none_or(|t| t > now || now - t >= SWEEP_EVERY);
                if !due {
                    continue;
                }
                if server && !core {
                    out.due.push(DueSweep { domain: name.to_string(), kind });
                    continue;
                }
                let left = budget.saturating_sub(started.elapsed());
                if left.is_zero() {
                    out.unfinished = true;
                    continue;
                }
                let options = SweepOptions { budget: Some(left), ..Default::default() };
                match self.retention_sweep(name, kind, upload_roots, &options) {
                    Ok(rec) => {
                        out.unfinished |= rec.state == SweepState::Running && rec.errors.is_empty();
                        out.sweeps.push(rec);
                    }
                    // Another process runs it: its turn.
                    Err(Error::NotAllowed(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(out)
    }
}

/// A sweep the server must run itself (its storage API), due now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DueSweep {
    pub domain: String,
    pub kind: Kind,
}

/// What the housekeeping pass's retention share did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetentionPass {
    /// Sweeps that ran (or resumed) in the core.
    pub sweeps: Vec<SweepRecord>,
    /// Sweeps due that the server drives.
    pub due: Vec<DueSweep>,
    /// A sweep stopped at the pass's budget: the next pass should come soon.
    pub unfinished: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;

    #[test]
    fn kinds_read_as_commands_write_them() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()).unwrap(), k);
        }
        assert!(Kind::parse("mam").unwrap_err().to_string().contains("archive, muc or uploads"));
    }

    #[test]
    fn the_pass_sweeps_each_domain_once_an_hour_and_resumes_unfinished_ones() {
        let clock = ManualClock::new(1_000_000);
        let h = Hosting::open_in_memory().unwrap().with_clock(clock.clone());
        h.add_domain("a.example").unwrap();
        h.add_domain("b.example").unwrap();
        assert!(h.retention_pass(&[], PASS_BUDGET).unwrap().sweeps.is_empty(), "nothing has a period");
        h.set_retention("a.example", "uploads", "1d").unwrap();
        let first = h.retention_pass(&[], PASS_BUDGET).unwrap().sweeps;
        assert_eq!(first.iter().map(|r| r.domain.as_str()).collect::<Vec<_>>(), ["a.example"]);
        assert!(h.retention_pass(&[], PASS_BUDGET).unwrap().sweeps.is_empty(), "done this hour");
        clock.advance(SWEEP_EVERY);
        assert_eq!(h.retention_pass(&[], PASS_BUDGET).unwrap().sweeps.len(), 1);
        clock.advance(-2 * SWEEP_EVERY);
        assert_eq!(h.retention_pass(&[], PASS_BUDGET).unwrap().sweeps.len(), 1, "a clock set back makes it due");
        // An unfinished sweep is resumed whatever the hour.
        h.store()
            .write(|tx| {
                tx.execute(
                    "UPDATE retention_sweeps SET state = 'running' WHERE id = (SELECT max(id) FROM retention_sweeps)",
                    [],
                )?;
                Ok(())
            })
            .unwrap();
        let resumed = h.retention_pass(&[], PASS_BUDGET).unwrap().sweeps;
        assert_eq!((resumed.len(), resumed[0].parts, resumed[0].state), (1, 2, SweepState::Done));
    }

    #[test]
    fn the_housekeeping_pass_deletes_expired_uploads_and_logs_the_sweep() {
        let dir = std::env::temp_dir().join(format!("xh-retention-pass-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let root = dir.to_str().unwrap().to_string();
        let clock = ManualClock::new(1_000_000);
        let h = Hosting::open_in_memory().unwrap().with_clock(clock.clone());
        h.add_domain("a.example").unwrap();
        h.set_retention("a.example", "uploads", "1h").unwrap();
        let path = format!("{root}/old.bin");
        std::fs::write(&path, b"12345").unwrap();
        let crate::quotas::UploadDecision::Granted(r) = h.authorize_upload("a.example", "alice", 5).unwrap() else {
            panic!()
        };
        h.commit_upload(r.id, 5, &path).unwrap();
        clock.advance(3601);
        // The root is the server's (passed to the pass), not watched: still inside the rule.
        let hk = crate::Housekeeping::new(h.clone(), crate::Schedule::default());
        let report = hk.run(std::slice::from_ref(&root), &[]);
        assert!(report.ran.contains(&crate::housekeeping::Step::Retention));
        let sweeps = report.retention.unwrap();
        assert_eq!((sweeps.len(), sweeps[0].deleted, sweeps[0].bytes), (1, 1, 5));
        assert!(report.log.iter().any(|l| l.text.starts_with("Retention: #")), "{:?}", report.log);
        assert!(!std::path::Path::new(&path).exists());
        assert_eq!(h.upload_usage("a.example", Some("alice")).unwrap().stored, 0);
        assert_eq!(h.retention_log(None, 10).unwrap().len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_sweep_started_on_the_worker_reports_like_one_run_here() {
        let h = Hosting::open_in_memory().unwrap();
        h.add_domain("a.example").unwrap();
        h.set_retention("a.example", "uploads", "1d").unwrap();
        let options = SweepOptions { dry_run: true, ..Default::default() };
        let rec = h.start_retention_sweep("a.example".into(), Kind::Uploads, Vec::new(), options).unwrap().wait();
        let rec = rec.unwrap();
        assert_eq!((rec.dry_run, rec.deleted, rec.domain.as_str()), (true, 0, "a.example"));
        let e = h.start_retention_sweep("nope.example".into(), Kind::Uploads, Vec::new(), SweepOptions::default());
        assert_eq!(e.unwrap().wait().unwrap_err().code(), "not-found");
    }

    #[test]
    fn archives_are_refused_until_a_server_registers_where_they_are() {
        let h = Hosting::open_in_memory().unwrap();
        h.add_domain("a.example").unwrap();
        h.set_retention("a.example", "archive", "1w").unwrap();
        let e = h.retention_sweep("a.example", Kind::Archive, &[], &SweepOptions::default()).unwrap_err();
        assert!(e.to_string().contains("no server has registered"), "{e}");
        assert!(h.retention_pass(&[], PASS_BUDGET).unwrap().sweeps.is_empty());
    }

    #[test]
    fn archives_in_a_servers_internal_storage_are_handed_to_the_server_when_due() {
        let clock = ManualClock::new(1_000_000);
        let h = Hosting::open_in_memory().unwrap().with_clock(clock.clone());
        h.add_domain("a.example").unwrap();
        h.register_archive_store("a.example", Kind::Muc, "conference.a.example", PROSODY_INTERNAL, None, "muc_log")
            .unwrap();
        assert!(h.retention_pass(&[], PASS_BUDGET).unwrap().due.is_empty(), "kept for ever");
        h.set_retention("a.example", "muc", "1d").unwrap();
        let pass = h.retention_pass(&[], PASS_BUDGET).unwrap();
        assert_eq!(pass.due, vec![DueSweep { domain: "a.example".into(), kind: Kind::Muc }]);
        let e = h.retention_sweep("a.example", Kind::Muc, &[], &SweepOptions::default()).unwrap_err();
        assert_eq!(e.code(), "not-allowed", "{e}");
        // The server runs it; then it is not due again before the hour.
        let plan = h.begin_driven_sweep("a.example", Kind::Muc).unwrap();
        let out = h
            .driven_step_done(
                plan.sweep,
                DrivenDone { deleted: 3, took_us: 500, batch: plan.batch, ..Default::default() },
            )
            .unwrap();
        assert_eq!((out.record.state, out.record.deleted), (SweepState::Done, 3));
        assert!(h.retention_pass(&[], PASS_BUDGET).unwrap().due.is_empty());
        clock.advance(SWEEP_EVERY);
        assert_eq!(h.retention_pass(&[], PASS_BUDGET).unwrap().due.len(), 1);
    }
}
