//! Long operations (a verification, the DNS tester, certificate generation) as jobs: the request
//! that starts one answers at once with the job's id, the work runs on the core's worker, and the
//! page polls `GET /api/jobs/{id}` until it is done. A job is visible only to the account that
//! started it.
//!
//! A job is a row of the store (`panel_jobs`), not a server's memory: the worker writes the
//! outcome there the moment the work ends, whoever polls. So a page that polls after the server
//! restarted, or whose request another process sharing the store answers, still gets the result;
//! and a job whose process died while it ran is reported `interrupted`, with "run it again",
//! instead of an unknown id. Whether a job's process is alive is looked up, not waited for:
//! each row names its runner as `pid-namespace/pid/start-time` (from `/proc`), which no later
//! process can repeat, so a restarted server sees at once that its predecessor's jobs are gone.
//! Where that cannot be told (no `/proc`, another PID namespace) a job still running after
//! [`MAX_RUNTIME`] counts as interrupted: none of the panel's operations takes that long.
//! Finished results are kept [`KEEP_FINISHED`] for the page to read, then purged by the
//! housekeeping pass ([`upkeep`]).

use std::collections::HashSet;
use std::sync::Mutex;

use once_cell::sync::Lazy;
use rusqlite::{params, OptionalExtension};
use serde::Serialize;
use serde_json::{json, Value};

use super::Failure;
use crate::locked::locked;
use crate::{Hosting, Pending, Result, Timestamp};

/// Jobs one account may have running at once.
pub const MAX_RUNNING_PER_ACCOUNT: usize = 4;
/// Jobs running at once in the whole store (every account, every process).
pub const MAX_RUNNING: usize = 1_000;
/// Finished jobs kept per account: starting a new one forgets the oldest beyond this, so one
/// account starting jobs in a loop cannot fill the store before the purge comes.
pub const MAX_KEPT_PER_ACCOUNT: usize = 50;
/// A finished job's result is kept this long for the page to read (an admin who comes back to a
/// tab after lunch still sees it); the housekeeping pass then deletes it.
pub const KEEP_FINISHED: i64 = 3600;
/// A job still running after this long, in a process whose life cannot be looked up, is taken
/// as interrupted. DNS lookups give up after their timeouts and a key is made in a second: a
/// job this old is one whose process is gone.
pub const MAX_RUNTIME: i64 = 30 * 60;

/// The jobs running in this process, by id. Process-wide rather than per panel: Prosody reloading
/// the panel module makes a new panel while the old one's jobs still run on the worker, and they
/// are no less alive for it.
static LIVE: Lazy<Mutex<HashSet<String>>> = Lazy::new(Mutex::default);

fn live() -> std::sync::MutexGuard<'static, HashSet<String>> {
    locked(&LIVE)
}

/// The panel's entry to the jobs (which live in the store: this holds nothing).
#[derive(Default)]
pub struct Jobs {}

impl Jobs {
    /// Records a job of `account`'s, then starts its work (`work`, on the worker) and returns its
    /// id; the outcome is written to the store on the worker when the work ends. The work starts
    /// only once the row is written: a start refused (too many running) or meeting another
    /// process's lock starts nothing, so a request answered again on the worker (see
    /// [`super::Panel::handle_now_or_later`]) does not run the work twice.
    pub(crate) fn start<T: Serialize + Send + 'static>(
        &self,
        hosting: &Hosting,
        account: &str,
        domain: &str,
        kind: &'static str,
        work: impl FnOnce() -> Result<Pending<Result<T>>>,
        now: Timestamp,
    ) -> std::result::Result<String, Failure> {
        // Jobs of this account whose process died no longer count against it.
        settle(hosting, Some(account), now)?;
        let id = super::session::new_secret()?;
        let runner = this_process();
        // Live before the row exists: a poll in between must not find a running row of this
        // process that this process does not know.
        live().insert(id.clone());
        let inserted = hosting.store().write(|tx| {
            let running = |sql: &str, p: &[&dyn rusqlite::ToSql]| -> Result<usize> {
                Ok(tx.prepare_cached(sql)?.query_row(p, |r| r.get::<_, i64>(0))? as usize)
            };
            let mine = running(
                "SELECT count(*) FROM panel_jobs WHERE account = ?1 AND state = 'running'",
                &[&account as &dyn rusqlite::ToSql],
            )?;
            let all = running("SELECT count(*) FROM panel_jobs WHERE state = 'running'", &[])?;
            if mine >= MAX_RUNNING_PER_ACCOUNT {
                return Ok(Err("other checks of yours are still running; wait for them to finish"));
            }
            if all >= MAX_RUNNING {
                return Ok(Err("the server is running as many checks as it takes at once; try again shortly"));
            }
            tx.prepare_cached(
                "DELETE FROM panel_jobs WHERE id IN (SELECT id FROM panel_jobs WHERE account = ?1 AND state != \
                 'running' ORDER BY finished_at DESC, started_at DESC LIMIT -1 OFFSET ?2)",
            )?
            .execute(params![account, MAX_KEPT_PER_ACCOUNT as i64 - 1])?;
            tx.prepare_cached(
                "INSERT INTO panel_jobs (id, account, domain, kind, state, runner, started_at) \
                 VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?6)",
            )?
            .execute(params![id, account, domain, kind, runner, now])?;
            Ok(Ok(()))
        });
        match inserted {
            Ok(Ok(())) => {}
            Ok(Err(why)) => {
                live().remove(&id);
                let mut f = Failure::new(429, "busy", why);
                f.retry_after = Some(5);
                return Err(f);
            }
            Err(e) => {
                live().remove(&id);
                return Err(e.into());
            }
        }
        let pending = match work() {
            Ok(pending) => pending,
            Err(e) => {
                // Nothing runs: the row goes. Should that fail, this process no longer runs the
                // job, so the row reads as interrupted.
                live().remove(&id);
                let _ = hosting.store().write(|tx| {
                    tx.prepare_cached("DELETE FROM panel_jobs WHERE id = ?1")?.execute([&id])?;
                    Ok(())
                });
                return Err(e.into());
            }
        };
        let hosting = hosting.clone();
        let job = id.clone();
        pending.on_done(move |result| {
            let (state, outcome) = match result {
                Ok(value) => match serde_json::to_value(value) {
                    Ok(v) => ("done", v),
                    Err(e) => ("failed", json!({"error": "internal", "message": e.to_string()})),
                },
                Err(e) => {
                    let f = Failure::from(e);
                    ("failed", json!({"error": f.code, "message": f.message}))
                }
            };
            // On the worker's own connection (this callback runs on one of the worker's threads
            // and must not wait for a lock there). Should the write fail, the job leaves this
            // process's live set all the same and its next poll reports it interrupted.
            let written = job.clone();
            let record = hosting.later(move |worker| {
                let done = finish(worker, &written, state, &outcome, worker.now());
                live().remove(&written);
                done
            });
            if record.is_err() {
                live().remove(&job);
            }
        });
        Ok(id)
    }

    /// The job as the page sees it: `running`; `done` with its result; `failed` with the error;
    /// `interrupted` (its process ended before it did) with an error that says to run it again.
    pub(crate) fn poll(
        &self,
        hosting: &Hosting,
        account: &str,
        id: &str,
        now: Timestamp,
    ) -> std::result::Result<Value, Failure> {
        let mut row = read(hosting, id)?.filter(|j| j.account == account && !j.expired(now));
        if let Some(job) = row.as_ref().filter(|j| j.state == "running") {
            if job.gone(now) {
                interrupt(hosting, &[(job.id.clone(), job.kind.clone())], now)?;
                row = read(hosting, id)?.filter(|j| j.account == account);
            }
        }
        let job = row.ok_or_else(|| {
            Failure::new(
                404,
                "not-found",
                "no such check: its result is kept an hour after it ends, or it was never started here; run it again",
            )
        })?;
        Ok(job.describe())
    }
}

/// One row of `panel_jobs`.
struct Row {
    id: String,
    account: String,
    domain: String,
    kind: String,
    state: String,
    runner: String,
    outcome: Option<String>,
    started_at: Timestamp,
    finished_at: Option<Timestamp>,
}

impl Row {
    fn from_sql(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
        Ok(Row {
            id: r.get(0)?,
            account: r.get(1)?,
            domain: r.get(2)?,
            kind: r.get(3)?,
            state: r.get(4)?,
            runner: r.get(5)?,
            outcome: r.get(6)?,
            started_at: r.get(7)?,
            finished_at: r.get(8)?,
        })
    }

    /// A result past its keeping time reads as gone even before the purge has come.
    fn expired(&self, now: Timestamp) -> bool {
        self.finished_at.is_some_and(|at| at + KEEP_FINISHED <= now)
    }

    /// Whether a running job's process has ended (or is past all telling).
    fn gone(&self, now: Timestamp) -> bool {
        match liveness(&self.id, &self.runner) {
            Liveness::Alive => false,
            Liveness::Gone => true,
            // A clock set back makes the job younger, never older.
            Liveness::Unknown => now - self.started_at >= MAX_RUNTIME,
        }
    }

    fn describe(&self) -> Value {
        let mut v = json!({
            "id": self.id, "kind": self.kind, "domain": self.domain, "state": self.state,
            "started_at": self.started_at, "finished_at": self.finished_at,
        });
        let outcome = self.outcome.as_deref().and_then(|o| serde_json::from_str::<Value>(o).ok());
        match self.state.as_str() {
            "running" => {}
            "done" => v["result"] = outcome.unwrap_or(Value::Null),
            _ => v["error"] = outcome.unwrap_or_else(|| json!({"error": "internal", "message": "the check failed"})),
        }
        v
    }
}

const COLUMNS: &str = "id, account, domain, kind, state, runner, outcome, started_at, finished_at";

fn read(hosting: &Hosting, id: &str) -> Result<Option<Row>> {
    hosting.store().read(|c| {
        Ok(c.prepare_cached(&format!("SELECT {COLUMNS} FROM panel_jobs WHERE id = ?1"))?
            .query_row([id], Row::from_sql)
            .optional()?)
    })
}

/// Records the outcome of a job that ran here. A job already taken as interrupted stays so:
/// the page was told to run it again, and may have.
fn finish(hosting: &Hosting, id: &str, state: &str, outcome: &Value, now: Timestamp) -> Result<()> {
    hosting.store().write(|tx| {
        tx.prepare_cached(
            "UPDATE panel_jobs SET state = ?2, outcome = ?3, finished_at = ?4 WHERE id = ?1 AND state = 'running'",
        )?
        .execute(params![id, state, outcome.to_string(), now])?;
        Ok(())
    })
}

/// What the page says of an interrupted job, in the operation's own words.
fn interrupted_error(kind: &str) -> Value {
    let what = match kind {
        "verify" => "The verification",
        "dns-test" => "The DNS test",
        "certificate" => "The certificate generation",
        _ => "This check",
    };
    json!({
        "error": "interrupted",
        "message": format!(
            "{what} was interrupted: the server restarted or stopped before it finished, so it has no result. \
             Run it again."
        ),
    })
}

/// Marks running jobs interrupted (those still running: one that just finished keeps its
/// result); returns how many were.
fn interrupt(hosting: &Hosting, jobs: &[(String, String)], now: Timestamp) -> Result<usize> {
    if jobs.is_empty() {
        return Ok(0);
    }
    hosting.store().write(|tx| {
        let mut stmt = tx.prepare_cached(
            "UPDATE panel_jobs SET state = 'interrupted', outcome = ?2, finished_at = ?3 \
             WHERE id = ?1 AND state = 'running'",
        )?;
        let mut n = 0;
        for (id, kind) in jobs {
            n += stmt.execute(params![id, interrupted_error(kind).to_string(), now])?;
        }
        Ok(n)
    })
}

/// Marks the running jobs (of `account`, or all) whose process is gone as interrupted.
fn settle(hosting: &Hosting, account: Option<&str>, now: Timestamp) -> Result<usize> {
    let running: Vec<Row> = hosting.store().read(|c| {
        let rows = match account {
            Some(a) => c
                .prepare_cached(&format!("SELECT {COLUMNS} FROM panel_jobs WHERE account = ?1 AND state = 'running'"))?
                .query_map([a], Row::from_sql)?
                .collect::<rusqlite::Result<Vec<_>>>()?,
            None => c
                .prepare_cached(&format!("SELECT {COLUMNS} FROM panel_jobs WHERE state = 'running'"))?
                .query_map([], Row::from_sql)?
                .collect::<rusqlite::Result<Vec<_>>>()?,
        };
        Ok(rows)
    })?;
    let gone: Vec<(String, String)> = running.into_iter().filter(|j| j.gone(now)).map(|j| (j.id, j.kind)).collect();
    interrupt(hosting, &gone, now)
}

/// What the housekeeping pass did to the panel's jobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct JobsUpkeep {
    /// Running jobs whose process had ended, now reported interrupted.
    pub interrupted: usize,
    /// Finished jobs past [`KEEP_FINISHED`], deleted.
    pub removed: usize,
}

/// The housekeeping pass's step: jobs of dead processes marked interrupted, finished results
/// older than [`KEEP_FINISHED`] deleted (and any finished "later" than the clock allows: a clock
/// set back must not keep them for as long as it went back).
pub fn upkeep(hosting: &Hosting) -> Result<JobsUpkeep> {
    let now = hosting.now();
    let interrupted = settle(hosting, None, now)?;
    let removed = hosting.store().write(|tx| {
        Ok(tx
            .prepare_cached("DELETE FROM panel_jobs WHERE finished_at <= ?1 OR finished_at > ?2")?
            .execute(params![now - KEEP_FINISHED, now + KEEP_FINISHED])?)
    })?;
    Ok(JobsUpkeep { interrupted, removed })
}

/// Whether a job's runner still runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Liveness {
    Alive,
    Gone,
    /// Another PID namespace, or no `/proc`: nothing to look up.
    Unknown,
}

fn liveness(id: &str, runner: &str) -> Liveness {
    let me = this_process();
    if runner == me {
        // This process: the job runs if the worker still has it.
        return if live().contains(id) { Liveness::Alive } else { Liveness::Gone };
    }
    let mut parts = runner.splitn(3, '/');
    let (Some(ns), Some(pid), Some(start)) = (parts.next(), parts.next(), parts.next()) else {
        return Liveness::Unknown;
    };
    let my_ns = me.split('/').next().unwrap_or("-");
    let Ok(pid) = pid.parse::<u32>() else { return Liveness::Unknown };
    if ns == "-" || ns != my_ns {
        return Liveness::Unknown;
    }
    match start_time(pid) {
        Ok(s) if s == start => Liveness::Alive,
        // The pid now belongs to a later process.
        Ok(_) => Liveness::Gone,
        // No /proc entry: gone, unless /proc only hides it (mounted hidepid=2, systemd's
        // ProtectProc=invisible: another user's process looks absent); the kernel still knows.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match process_exists(pid) {
            Some(false) => Liveness::Gone,
            _ => Liveness::Unknown,
        },
        Err(_) => Liveness::Unknown,
    }
}

/// Whether a process `pid` exists (signal 0: ESRCH means none; EPERM means one another user
/// owns), `None` when that cannot be told.
fn process_exists(pid: u32) -> Option<bool> {
    let pid = rustix::process::Pid::from_raw(i32::try_from(pid).ok()?)?;
    match rustix::process::test_kill_process(pid) {
        Ok(()) => Some(true),
        Err(rustix::io::Errno::SRCH) => Some(false),
        Err(rustix::io::Errno::PERM) => Some(true),
        Err(_) => None,
    }
}

/// When process `pid` started, in clock ticks since boot (`/proc/PID/stat`, field 22): with the
/// pid, it names one process for as long as the machine runs.
fn start_time(pid: u32) -> std::io::Result<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces or parentheses itself.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    after
        .split_whitespace()
        .nth(19)
        .map(str::to_string)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "unexpected /proc stat line"))
}

/// This process as a job's runner. Worked out again when the pid changes: Prosody forks when it
/// daemonises, and the child is another process.
fn this_process() -> String {
    static ME: Lazy<Mutex<Option<(u32, String)>>> = Lazy::new(Mutex::default);
    let pid = std::process::id();
    let mut me = locked(&ME);
    if let Some((p, runner)) = me.as_ref() {
        if *p == pid {
            return runner.clone();
        }
    }
    // `pid:[4026531836]`: processes that see each other's pids share it.
    let ns = std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .and_then(|l| l.to_str().map(|s| s.trim_start_matches("pid:[").trim_end_matches(']').to_string()))
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
    let runner = match (ns, start_time(pid)) {
        (Some(ns), Ok(start)) => format!("{ns}/{pid}/{start}"),
        // Nothing another process could look up: unique all the same, so this process still
        // knows its own jobs.
        _ => {
            let mut nonce = [0u8; 8];
            let _ = getrandom::fill(&mut nonce);
            format!("-/{pid}/{:016x}", u64::from_le_bytes(nonce))
        }
    };
    *me = Some((pid, runner.clone()));
    runner
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_hidden_from_proc_is_asked_of_the_kernel() {
        // Pid 1 always exists (signalling it may be refused: EPERM still says it exists).
        assert_eq!(process_exists(1), Some(true));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        // Reaped: no process has that pid (unless the kernel reused it at once, which it avoids).
        assert_eq!(process_exists(pid), Some(false));
        assert_eq!(process_exists(u32::MAX), None);
    }
    use crate::test_store::TestStore;
    use crate::ManualClock;

    /// A job that runs until the sender is dropped or sends.
    fn held() -> (std::sync::mpsc::Sender<()>, Pending<Result<Value>>) {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let rx = std::sync::Mutex::new(rx);
        let pending = Pending::spawn(async move {
            let _ = tokio::task::spawn_blocking(move || rx.lock().unwrap().recv()).await;
            Ok::<_, crate::Error>(json!({"answer": 42}))
        })
        .unwrap();
        (tx, pending)
    }

    fn until_ended(jobs: &Jobs, h: &Hosting, account: &str, id: &str) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let v = jobs.poll(h, account, id, h.now()).unwrap();
            if v["state"] != "running" {
                return v;
            }
            assert!(std::time::Instant::now() < deadline, "job never ended: {v}");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    fn set_runner(h: &Hosting, id: &str, runner: &str) {
        h.store()
            .write(|tx| Ok(tx.execute("UPDATE panel_jobs SET runner = ?2 WHERE id = ?1", params![id, runner])?))
            .unwrap();
    }

    fn state(h: &Hosting, id: &str) -> String {
        read(h, id).unwrap().unwrap().state
    }

    #[test]
    fn a_job_is_polled_until_done_and_only_by_its_account() {
        let h = Hosting::open_in_memory().unwrap();
        let jobs = Jobs::default();
        let (tx, pending) = held();
        let id = jobs.start(&h, "alice@a.example", "a.example", "dns-test", move || Ok(pending), 0).unwrap();
        assert_eq!(jobs.poll(&h, "alice@a.example", &id, 1).unwrap()["state"], "running");
        assert_eq!(jobs.poll(&h, "bob@b.example", &id, 1).unwrap_err().status, 404);
        tx.send(()).unwrap();
        let done = until_ended(&jobs, &h, "alice@a.example", &id);
        assert_eq!((done["state"].as_str(), done["kind"].as_str()), (Some("done"), Some("dns-test")));
        assert_eq!(done["result"]["answer"], 42);
    }

    #[test]
    fn a_failed_job_says_why_and_accounts_cannot_start_without_end() {
        let h = Hosting::open_in_memory().unwrap();
        let jobs = Jobs::default();
        let failing = Pending::spawn(async { Err::<Value, _>(crate::Error::NotAllowed("no".into())) }).unwrap();
        let id = jobs.start(&h, "a@x.example", "x.example", "verify", move || Ok(failing), 0).unwrap();
        let v = until_ended(&jobs, &h, "a@x.example", &id);
        assert_eq!((v["state"].as_str(), v["error"]["error"].as_str()), (Some("failed"), Some("not-allowed")));
        let mut holds = Vec::new();
        for _ in 0..MAX_RUNNING_PER_ACCOUNT {
            let (tx, p) = held();
            holds.push(tx);
            jobs.start(&h, "a@x.example", "x.example", "verify", move || Ok(p), 0).unwrap();
        }
        let refused = jobs
            .start(
                &h,
                "a@x.example",
                "x.example",
                "verify",
                || -> crate::Result<Pending<crate::Result<Value>>> { panic!("a refused job's work must not start") },
                0,
            )
            .unwrap_err();
        assert_eq!((refused.status, refused.retry_after), (429, Some(5)));
        // Work that cannot start leaves no job behind: the account's running count is unchanged.
        let not_started = jobs
            .start(
                &h,
                "c@x.example",
                "x.example",
                "verify",
                || -> crate::Result<Pending<crate::Result<Value>>> { Err(crate::Error::NotAllowed("no claim".into())) },
                0,
            )
            .unwrap_err();
        assert_eq!(not_started.status, 403);
        let rows: i64 = h
            .store()
            .read(|c| {
                Ok(c.query_row("SELECT count(*) FROM panel_jobs WHERE account = 'c@x.example'", [], |r| r.get(0))?)
            })
            .unwrap();
        assert_eq!(rows, 0);
        let (_tx, p) = held();
        assert!(
            jobs.start(&h, "b@x.example", "x.example", "verify", move || Ok(p), 0).is_ok(),
            "another account is not held up"
        );
    }

    #[test]
    fn the_result_is_in_the_store_for_the_next_process_and_a_job_its_dead_process_ran_is_interrupted() {
        let store = TestStore::new("panel-jobs-restart");
        let first = store.open();
        let jobs = Jobs::default();
        let (tx, pending) = held();
        let finished =
            jobs.start(&first, "alice@a.example", "a.example", "dns-test", move || Ok(pending), first.now()).unwrap();
        tx.send(()).unwrap();
        assert_eq!(until_ended(&jobs, &first, "alice@a.example", &finished)["state"], "done");
        let (_hold, pending) = held();
        let cut =
            jobs.start(&first, "alice@a.example", "a.example", "verify", move || Ok(pending), first.now()).unwrap();
        // The process that ran them exits (a child standing in for it: its pid is then free and
        // its start time unrepeatable); the server starts again on the same store.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let ns = this_process().split('/').next().unwrap().to_string();
        for id in [&finished, &cut] {
            set_runner(&first, id, &format!("{ns}/{dead}/12345"));
        }
        drop(first);
        let second = store.open();
        let done = Jobs::default().poll(&second, "alice@a.example", &finished, second.now()).unwrap();
        assert_eq!((done["state"].as_str(), done["result"]["answer"].as_i64()), (Some("done"), Some(42)));
        let v = Jobs::default().poll(&second, "alice@a.example", &cut, second.now()).unwrap();
        assert_eq!((v["state"].as_str(), v["error"]["error"].as_str()), (Some("interrupted"), Some("interrupted")));
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("The verification was interrupted") && message.ends_with("Run it again."),
            "{message}"
        );
        assert!(v["finished_at"].is_i64());
    }

    #[test]
    fn a_runner_is_alive_while_its_process_runs_and_gone_once_the_pid_is_another_process() {
        let h = Hosting::open_in_memory().unwrap();
        let jobs = Jobs::default();
        let (_hold, pending) = held();
        let id = jobs.start(&h, "a@x.example", "x.example", "dns-test", move || Ok(pending), 0).unwrap();
        let ns = this_process().split('/').next().unwrap().to_string();
        // Another process, alive: its job is running, whoever polls.
        let mut other = std::process::Command::new("sleep").arg("60").spawn().unwrap();
        let start = start_time(other.id()).unwrap();
        set_runner(&h, &id, &format!("{ns}/{}/{start}", other.id()));
        assert_eq!(jobs.poll(&h, "a@x.example", &id, 0).unwrap()["state"], "running");
        // The same pid with another start time is a later process: the runner is gone.
        set_runner(&h, &id, &format!("{ns}/{}/1", other.id()));
        assert_eq!(jobs.poll(&h, "a@x.example", &id, 0).unwrap()["state"], "interrupted");
        other.kill().unwrap();
        other.wait().unwrap();
    }

    #[test]
    fn a_job_of_this_process_that_the_worker_no_longer_has_is_interrupted() {
        let h = Hosting::open_in_memory().unwrap();
        let jobs = Jobs::default();
        let (_hold, pending) = held();
        let id = jobs.start(&h, "a@x.example", "x.example", "certificate", move || Ok(pending), 0).unwrap();
        assert_eq!(jobs.poll(&h, "a@x.example", &id, 0).unwrap()["state"], "running");
        live().remove(&id);
        let v = jobs.poll(&h, "a@x.example", &id, 0).unwrap();
        assert_eq!(v["state"], "interrupted");
        assert!(v["error"]["message"].as_str().unwrap().starts_with("The certificate generation was interrupted"));
    }

    #[test]
    fn a_runner_that_cannot_be_looked_up_counts_as_interrupted_only_after_the_longest_run() {
        let clock = ManualClock::new(1_700_000_000);
        let h = Hosting::open_in_memory().unwrap().with_clock(clock.clone());
        let jobs = Jobs::default();
        let (_hold, pending) = held();
        let id = jobs.start(&h, "a@x.example", "x.example", "dns-test", move || Ok(pending), h.now()).unwrap();
        // Another PID namespace: nothing to look up.
        set_runner(&h, &id, "4026500000/1/1");
        clock.advance(MAX_RUNTIME - 1);
        assert_eq!(jobs.poll(&h, "a@x.example", &id, h.now()).unwrap()["state"], "running");
        assert_eq!(upkeep(&h).unwrap(), JobsUpkeep { interrupted: 0, removed: 0 });
        clock.advance(1);
        assert_eq!(upkeep(&h).unwrap(), JobsUpkeep { interrupted: 1, removed: 0 });
        assert_eq!(state(&h, &id), "interrupted");
    }

    #[test]
    fn jobs_of_dead_processes_free_their_accounts_slots() {
        let h = Hosting::open_in_memory().unwrap();
        let jobs = Jobs::default();
        let mut ids = Vec::new();
        let mut holds = Vec::new();
        for _ in 0..MAX_RUNNING_PER_ACCOUNT {
            let (tx, p) = held();
            holds.push(tx);
            ids.push(jobs.start(&h, "a@x.example", "x.example", "verify", move || Ok(p), 0).unwrap());
        }
        for id in &ids {
            live().remove(id);
        }
        let (_tx, p) = held();
        jobs.start(&h, "a@x.example", "x.example", "verify", move || Ok(p), 0).unwrap();
        assert!(ids.iter().all(|id| state(&h, id) == "interrupted"));
    }

    #[test]
    fn finished_results_are_kept_for_an_hour_then_purged_by_the_upkeep() {
        let clock = ManualClock::new(1_700_000_000);
        let h = Hosting::open_in_memory().unwrap().with_clock(clock.clone());
        let jobs = Jobs::default();
        let p = Pending::spawn(async { Ok::<_, crate::Error>(1) }).unwrap();
        let old = jobs.start(&h, "a@x.example", "x.example", "dns-test", move || Ok(p), h.now()).unwrap();
        assert_eq!(until_ended(&jobs, &h, "a@x.example", &old)["state"], "done");
        clock.advance(KEEP_FINISHED - 10);
        let p = Pending::spawn(async { Ok::<_, crate::Error>(2) }).unwrap();
        let recent = jobs.start(&h, "a@x.example", "x.example", "dns-test", move || Ok(p), h.now()).unwrap();
        assert_eq!(until_ended(&jobs, &h, "a@x.example", &recent)["result"], 2);
        let (_hold, p) = held();
        let running = jobs.start(&h, "a@x.example", "x.example", "verify", move || Ok(p), h.now()).unwrap();
        clock.advance(10);
        // Past its hour: no longer shown, even before the purge.
        assert_eq!(jobs.poll(&h, "a@x.example", &old, h.now()).unwrap_err().status, 404);
        assert_eq!(upkeep(&h).unwrap(), JobsUpkeep { interrupted: 0, removed: 1 });
        assert!(read(&h, &old).unwrap().is_none());
        assert_eq!(jobs.poll(&h, "a@x.example", &recent, h.now()).unwrap()["result"], 2);
        assert_eq!(state(&h, &running), "running", "a running job is never purged");
        // A clock set far back must not keep the rest for as long as it went back.
        clock.advance(-10 * KEEP_FINISHED);
        assert_eq!(upkeep(&h).unwrap().removed, 1);
    }

    #[test]
    fn an_account_keeps_only_its_latest_finished_jobs() {
        let h = Hosting::open_in_memory().unwrap();
        let jobs = Jobs::default();
        let mut ids = Vec::new();
        for i in 0..MAX_KEPT_PER_ACCOUNT + 3 {
            let p = Pending::spawn(async move { Ok::<_, crate::Error>(i) }).unwrap();
            let id = jobs.start(&h, "a@x.example", "x.example", "dns-test", move || Ok(p), i as i64).unwrap();
            until_ended(&jobs, &h, "a@x.example", &id);
            ids.push(id);
        }
        let kept: i64 = h
            .store()
            .read(|c| {
                Ok(c.query_row("SELECT count(*) FROM panel_jobs WHERE account = 'a@x.example'", [], |r| r.get(0))?)
            })
            .unwrap();
        assert_eq!(kept as usize, MAX_KEPT_PER_ACCOUNT);
        assert!(read(&h, &ids[0]).unwrap().is_none(), "the oldest is forgotten");
        assert!(read(&h, ids.last().unwrap()).unwrap().is_some());
    }

    #[test]
    fn this_process_is_named_so_that_another_can_look_it_up() {
        let me = this_process();
        let parts: Vec<&str> = me.split('/').collect();
        assert_eq!(parts.len(), 3, "{me}");
        assert_eq!(parts[1], std::process::id().to_string());
        if parts[0] != "-" {
            assert_eq!(parts[2], start_time(std::process::id()).unwrap());
        }
        assert_eq!(liveness("not-a-job-here", &me), Liveness::Gone);
        assert_eq!(liveness("x", "garbage"), Liveness::Unknown);
    }
}
