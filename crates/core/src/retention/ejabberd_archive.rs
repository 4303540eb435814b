//! ejabberd's message archives (mod_mam, one-to-one and group chat) swept by the core's engine.
//!
//! ejabberd has no expiry of its own: `delete_old_mam_messages` deletes everything in one
//! statement (on a million SQLite rows it ran past its 5 s call timeout and the next query
//! crashed the host's SQLite connection) and `delete_old_mam_messages_batch` manages about 5k
//! rows/s, with an "already running" guard per node. Here the rule stays in the core: the engine
//! ([`super::sweep`]) picks the cutoff, the step size and the cursor, and an [`ArchiveSteps`]
//! carries each step out where the rows live:
//!
//! - on SQL, [`SqlArchive`] renders each step as statements on ejabberd's `archive` table (the
//!   default schema or `new_sql_schema`, where rows carry `server_host`) and hands them to an
//!   [`ArchiveSql`] executor. ejabberd's module runs them through ejabberd's own connection
//!   (the NIF's bridge): its SQLite driver opens the file without a busy timeout, so a lock
//!   held by a second connection makes ejabberd's own queries fail at once (a message not
//!   archived, a login refused), whereas a step queued on ejabberd's connection only delays
//!   them by its few milliseconds. On SQLite a step is one request on that connection, the
//!   database is put in WAL mode and the core copies the log into the file from its own
//!   connection, which holds nothing of ejabberd's ([`SqlArchive::sqlite`]); other SQL servers
//!   get a SELECT then a DELETE. [`SqliteFile`] opens the file itself (benchmarks, tests, and
//!   a database no ejabberd has open).
//! - on Mnesia, ejabberd's module walks `archive_msg` itself, a bounded step at a time as the
//!   engine plans it (the NIF's bridge hands it each [`ArchiveStep`]).
//!
//! A step takes at most `limit` rows of the swept kind (`chat` rows are one-to-one archives,
//! `groupchat` rows group chat archives, whose `username` is the room's JID) strictly before the
//! cutoff, in (username, timestamp, id) order (see [`SqlArchive`]'s step), and deletes them by
//! id (a deleting step on SQLite walks at most `limit` rows before the cutoff, of any kind, and
//! deletes those of its kind: see `SqlArchive::sqlite_step`). Every DELETE carries
//! `timestamp < cutoff` and the kind itself, so nothing newer than the cutoff goes whatever the
//! cursor says. Archive timestamps are microseconds; the engine's cutoff is seconds.
//!
//! Users who chose a shorter retention for their own archive
//! ([`Hosting::set_user_archive_retention`]) are swept after the domain's pass, each with the
//! cutoff of their own period (their choice is the promise for their rows).

use std::time::{Duration, Instant};

use rusqlite::types::Value;
use serde::{Deserialize, Serialize};

use super::profile::Profile;
use super::sweep::{StepDone, Target};
use super::{Kind, SweepOptions, SweepRecord};
use crate::{Error, Hosting, Result, Timestamp};

/// The fewest rows a step visits (see `ArchiveTarget::run`); the unit tests use 3 to see
/// steps on a few rows.
#[cfg(not(test))]
pub const MIN_ROWS: usize = 50;
#[cfg(test)]
pub const MIN_ROWS: usize = 3;

/// One bounded step asked of a server's archive store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArchiveStep {
    /// `archive` (rows of type chat) or `muc` (rows of type groupchat).
    pub kind: Kind,
    /// The server host whose rows these are (ejabberd's `server_host`, the hosted domain).
    pub host: String,
    /// Only this local user's archive (a user's own shorter retention), else every archive.
    pub user: Option<String>,
    /// Rows stored at or after this (microseconds since 1970) are never touched.
    pub cutoff_us: i64,
    /// Rows stored before this (microseconds) are not looked at: during a user's part, those
    /// older than the domain's cutoff, which the domain's part dealt with (a dry run would
    /// count them twice).
    pub not_before_us: Option<i64>,
    /// The store's own cursor from the previous step (`None`: from the oldest).
    pub after: Option<String>,
    /// At most this many rows are visited.
    pub limit: usize,
    /// `false`: count what would be deleted, delete nothing (a dry run).
    pub delete: bool,
}

/// What a step did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveStepDone {
    /// Rows deleted (or, counting, that would be).
    pub matched: i64,
    /// Where the next step starts; `None` when nothing older than the cutoff is left.
    pub next: Option<String>,
}

/// Where a server's archive rows live, a bounded step at a time.
pub trait ArchiveSteps: Send {
    fn step(&mut self, step: &ArchiveStep) -> Result<ArchiveStepDone>;

    /// How long the last step held the server (its SQL connection) when that is less than the
    /// whole step (a checkpoint after it holds nothing of the server's); `None`: the whole step.
    fn last_held(&self) -> Option<Duration> {
        None
    }

    /// The part of the sweep ends: settings changed for its steps are put back.
    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}

/// ejabberd's two SQL layouts of the `archive` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SqlSchema {
    /// One database per host (or hosts mixed): no `server_host` column.
    Default,
    /// `new_sql_schema: true`: every row carries its `server_host`.
    New,
}

impl SqlSchema {
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "default" => Ok(SqlSchema::Default),
            "new" => Ok(SqlSchema::New),
            other => Err(Error::InvalidArgument(format!(
                "{other:?} is not an ejabberd SQL schema: use default or new (new_sql_schema: true)"
            ))),
        }
    }
}

/// Runs SQL statements on the server's database: the rows of a SELECT (integers), or for any
/// other statement the number of rows it changed as `[[n]]`.
pub trait ArchiveSql: Send {
    fn query(&mut self, sql: &str) -> Result<Vec<Vec<i64>>>;

    /// Runs `statements` one after the other as ONE request to the server's connection (nothing
    /// of the server's runs in between), stopping at the first that fails, then `finally`
    /// whatever happened. Answers each statement's rows, and how long the server's connection
    /// was busy with them when the server measured it.
    fn batch(&mut self, statements: &[String], finally: &[String]) -> Result<Batch> {
        one_by_one(self, statements, finally)
    }

    /// Runs a setting (a `PRAGMA`) on every connection the server keeps to the swept database
    /// file, not only the one a request happens to reach: on SQLite the workers of a host's
    /// pool share one connection (ejabberd opens the file under one registered name a host,
    /// whatever `sql_pool_size`), but each host whose `sql_database` is the same file has a
    /// connection of its own, and would otherwise checkpoint the sweep's log inside its own
    /// commits. An executor that is its own connection runs it once.
    fn everywhere(&mut self, sql: &str) -> Result<()> {
        self.query(sql).map(|_| ())
    }
}

/// [`ArchiveSql::batch`] as a series of [`ArchiveSql::query`] calls (an executor that is its own
/// connection: nothing else runs in between anyway).
fn one_by_one<E: ArchiveSql + ?Sized>(exec: &mut E, statements: &[String], finally: &[String]) -> Result<Batch> {
    {
        let mut results = Vec::with_capacity(statements.len());
        let mut failed = None;
        for sql in statements {
            match exec.query(sql) {
                Ok(rows) => results.push(rows),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        for sql in finally {
            exec.query(sql)?;
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(Batch { results, held: None }),
        }
    }
}

/// The answer to [`ArchiveSql::batch`].
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
pub struct Batch {
    /// Each statement's rows, in order.
    pub results: Vec<Vec<Vec<i64>>>,
    /// How long the server's connection was busy with the batch (its own measure), when known.
    #[serde(default, rename = "us", deserialize_with = "micros")]
    pub held: Option<Duration>,
}

fn micros<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<Duration>, D::Error> {
    Ok(Option::<u64>::deserialize(d)?.map(Duration::from_micros))
}

/// An [`ArchiveSteps`] over ejabberd's SQL `archive` table.
pub struct SqlArchive<E: ArchiveSql> {
    pub schema: SqlSchema,
    pub exec: E,
    /// ejabberd's database is SQLite (see [`SqlArchive::sqlite`]); `None`: other SQL servers,
    /// two statements a step written for any of them.
    sqlite: Option<SqliteSide>,
    /// How long the last step held the server's connection.
    last_held: Option<Duration>,
    profile: Option<Profile>,
}

/// What a sweep on ejabberd's SQLite database keeps between steps.
struct SqliteSide {
    /// The database file (`ejabberd_sql:sqlite_file/1`), for the checkpoints; `None`: ejabberd's
    /// connection checkpoints by itself, as it would without the sweep.
    file: Option<String>,
    /// Set by the first deleting step of this part (see [`SqlArchive::prepare`]).
    ready: Option<Ready>,
    /// The core's own connection to the file, which only checkpoints, on a thread of its own.
    checkpointer: Option<Checkpointer>,
    /// Rows deleted since the log last started again from its beginning (the checkpoint
    /// after which it does, see [`SqlArchive::checkpoint`]).
    since_checkpoint: i64,
    /// Pages of the log a deleted row cost at the last checkpoint (the log's frames over the
    /// rows deleted since it last started again), to checkpoint before the log reaches
    /// [`CHECKPOINT_FRAMES`].
    frames_per_row: f64,
    /// A checkpoint is running beside the steps, asked when this many rows were in the log.
    beside: Option<i64>,
    /// Rows the last step deleted (what the next may add to the log).
    last_rows: i64,
}

/// The frames the steps may have added to the log during a copy beside them for the thread to
/// stop copying and let the steps' thread copy the rest between two steps (see
/// [`SqlArchive::checkpoint`]): each copy syncs the log and the database file, which takes the
/// longer the more was written since the last, so the part made between two steps is kept small.
const TAIL_FRAMES: i64 = 2_000;

/// Copies the log into the database (`PRAGMA wal_checkpoint(PASSIVE)`, which neither waits for
/// ejabberd's connection nor makes it wait), again while the steps added more than
/// [`TAIL_FRAMES`] during the last copy, at most `rounds` times. Answers the log's frames at
/// the first copy, and the log's frames and those copied at the last.
fn catch_up(conn: &rusqlite::Connection, rounds: u32) -> Result<(i64, i64, i64)> {
    let mut first = None;
    let mut last: Option<(i64, i64)> = None;
    for _ in 0..rounds.max(1) {
        let (log, copied): (i64, i64) =
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get(1)?, r.get(2)?)))?;
        let added = last.map_or(log, |(before, _)| log - before);
        first.get_or_insert(log);
        last = Some((log, copied));
        if added < TAIL_FRAMES || copied < log {
            // Little came meanwhile, or a reader keeps the rest in the log: the steps' thread
            // copies the rest.
            break;
        }
    }
    let (log, copied) = last.unwrap_or_default();
    Ok((first.unwrap_or_default(), log, copied))
}

/// Copies beside the steps, at most this many in a row (see [`catch_up`]): if the steps write to
/// the log faster than the thread copies it, the rest is copied between two steps all the same.
const ROUNDS_BESIDE: u32 = 4;

/// The core's connection to ejabberd's SQLite file, on a thread of its own: it copies the log
/// into the database while the steps go on (see [`catch_up`]). Each request (the rounds it
/// may make) is answered with the log's frames and those copied.
struct Checkpointer {
    ask: std::sync::mpsc::Sender<u32>,
    answers: std::sync::mpsc::Receiver<Result<(i64, i64, i64)>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Tests: the thread starts each copy only once the steps wait for it (see [`HOLD_COPIES`]).
    #[cfg(test)]
    go: Option<std::sync::mpsc::Sender<()>>,
}

/// Tests: the checkpoint threads of parts on files whose name contains this hold each copy
/// until the steps wait for it, as a thread that copies slower than any step would.
#[cfg(test)]
const HOLD_COPIES: &str = "-held-copies-";

impl Checkpointer {
    fn open(file: &str) -> Result<Checkpointer> {
        // The same SQLite library as ejabberd's driver, in the same process (the NIF links
        // the system's libsqlite3), so the two connections see each other's locks.
        let conn = rusqlite::Connection::open_with_flags(
            file,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        let (ask, asked) = std::sync::mpsc::channel::<u32>();
        let (answer, answers) = std::sync::mpsc::channel();
        #[cfg(test)]
        let (go, held) = match file.contains(HOLD_COPIES) {
            true => {
                let (go, held) = std::sync::mpsc::channel::<()>();
                (Some(go), Some(held))
            }
            false => (None, None),
        };
        let thread = std::thread::Builder::new()
            .name("xh-ej-checkpoint".into())
            .spawn(move || {
                for rounds in asked {
                    #[cfg(test)]
                    if held.as_ref().is_some_and(|held| held.recv().is_err()) {
                        break;
                    }
                    let done = catch_up(&conn, rounds);
                    if answer.send(done).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| Error::Internal(format!("no thread for the archive's checkpoints: {e}")))?;
        Ok(Checkpointer {
            ask,
            answers,
            thread: Some(thread),
            #[cfg(test)]
            go,
        })
    }

    fn start(&self, rounds: u32) -> Result<()> {
        self.ask.send(rounds).map_err(|_| Error::Internal("the archive's checkpoint thread is gone".into()))
    }

    fn wait(&self) -> Result<(i64, i64, i64)> {
        #[cfg(test)]
        if let Some(go) = &self.go {
            let _ = go.send(());
        }
        self.answers.recv().map_err(|_| Error::Internal("the archive's checkpoint thread is gone".into()))?
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop (after the checkpoint it may be in).
        let (ask, _) = std::sync::mpsc::channel();
        drop(std::mem::replace(&mut self.ask, ask));
        #[cfg(test)]
        drop(self.go.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Clone, Copy)]
struct Ready {
    /// The database is in WAL mode.
    wal: bool,
    /// ejabberd's connection's own `synchronous`, put back after each step.
    synchronous: i64,
    /// ejabberd's connection's own `wal_autocheckpoint`, put back when the part ends; `None`
    /// when it was left as it was.
    autocheckpoint: Option<i64>,
}

/// Pages the sweep lets the log grow to before the core copies it into the database (about
/// 120 MB of `-wal` file, truncated at the part's end). A deleted row writes about two pages of
/// the log (ejabberd's table and its four other indexes, a user's rows a step); a checkpoint
/// copies each page once however often the steps since the last one wrote it, and the rows of
/// neighbouring users share table and index pages, so the longer the interval the fewer pages
/// copied a row. Measured on the bench's million rows (200-row steps, load 5-6, 100,000 rows
/// deleted): checkpoints every 5,000 rows (~11,000 pages) took 5.8 s, every 20,000 rows
/// (~54,000 pages) 2.3 s. In ejabberd (the bench): every 2,000 rows, 40.5 s of a 77 s sweep went
/// on checkpoints (load 9.8); every 5,000 rows 23.4 s of 45 s (load 1.2-3.6). The unit tests
/// use a few hundred, to see copies beside the steps on a few thousand rows.
#[cfg(not(test))]
const CHECKPOINT_FRAMES: i64 = 30_000;
#[cfg(test)]
const CHECKPOINT_FRAMES: i64 = 300;

/// The log may reach this many times [`CHECKPOINT_FRAMES`] (as [`SqlArchive::checkpoint`]
/// estimates it) while a copy runs beside the steps; then the steps wait for the copy.
const LOG_BOUND: i64 = 2;

/// What a row is taken to cost in pages of the log until the first checkpoint measured it.
const FIRST_FRAMES_PER_ROW: f64 = 3.0;

/// ejabberd's connection's `wal_autocheckpoint` while a sweep runs: above what the sweep lets
/// the log grow to ([`CHECKPOINT_FRAMES`], and ejabberd's own writes meanwhile), so ejabberd's
/// connection never checkpoints inside a step (or its own commits); put back when the part
/// ends. Raised again by every step (see [`SqlArchive::sqlite_step`]).
const SWEEP_AUTOCHECKPOINT: i64 = 100_000;

/// Raises an earlier version left on ejabberd's connection when a part's end never reached it:
/// taken for SQLite's default, never for ejabberd's own setting.
const EARLIER_RAISES: [i64; 2] = [20_000, SWEEP_AUTOCHECKPOINT];

/// SQLite's own `wal_autocheckpoint` (ejabberd sets none).
const SQLITE_AUTOCHECKPOINT: i64 = 1000;

/// The SQLite files whose connections have the sweep's `wal_autocheckpoint` raise, with how
/// many parts of sweeps in this process are running on each and the setting the first of them
/// found. Two hosts whose `sql_database` is the same file may sweep at once: the part that ends
/// first must not put the setting back on the connections while the other's steps still write
/// to the log (each connection would then copy that log inside its own commits); the last one
/// puts back the setting the first found (the others found the raise).
static RAISED: std::sync::Mutex<std::collections::BTreeMap<String, (usize, i64)>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// A part on `file` ends: whether it was the last one running there (see [`RAISED`]).
fn release(file: &str) -> bool {
    let mut raised = crate::locked::locked(&RAISED);
    match raised.get_mut(file) {
        Some(entry) if entry.0 > 1 => {
            entry.0 -= 1;
            false
        }
        _ => {
            raised.remove(file);
            true
        }
    }
}

impl<E: ArchiveSql> Drop for SqlArchive<E> {
    /// A part that never reached [`ArchiveSteps::finish`] (a panic between its steps) no
    /// longer counts as running on its file, and when it was the last one there it puts back
    /// the setting it found on the connections, as `finish` would (without the checkpoint and
    /// truncation: the next part or ejabberd's own connection copies the log). ejabberd's
    /// process still serves the part's requests here: the worker drops the part while
    /// unwinding, before the sweep's outcome (its error) is sent to that process. A failure
    /// to put it back is only lost here (nothing may panic in a drop), and the next part on
    /// the file takes the raise it finds for an earlier one (see EARLIER_RAISES).
    fn drop(&mut self) {
        let Some(side) = self.sqlite.as_mut() else { return };
        if let (Some(Ready { autocheckpoint: Some(before), .. }), Some(file)) =
            (side.ready.take(), side.file.as_deref())
        {
            if release(file) {
                let _ = self.exec.everywhere(&format!("PRAGMA wal_autocheckpoint = {before}"));
            }
        }
    }
}

/// A text as an SQL literal. Hosts and usernames are nodeprep'd names without quotes, but a
/// quote is doubled all the same: the statement is text handed to ejabberd's SQL layer.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The SQL cursor: the id of the row the next step starts at (`r` and the id). That row is the
/// first one the step did not take, left in place, so the next step finds where it stands in
/// (username, timestamp, id) order from it. A cursor of the earlier `timestamp:id` form starts
/// again from the beginning (the rows deleted are gone; nothing is deleted twice).
fn sql_cursor(after: Option<&str>) -> Option<i64> {
    after?.strip_prefix('r')?.parse().ok()
}

impl<E: ArchiveSql> SqlArchive<E> {
    /// Steps written for any SQL server ejabberd uses (PostgreSQL, MySQL, SQLite): a SELECT of
    /// the step's ids, then a DELETE of them.
    pub fn new(schema: SqlSchema, exec: E) -> Self {
        SqlArchive { schema, exec, sqlite: None, last_held: None, profile: Profile::from_env() }
    }

    /// Steps on ejabberd's SQLite database `file` (`None` if unknown), through ejabberd's own
    /// connection `exec` (see [`SqlArchive::prepare`] and [`SqlArchive::sqlite_step`]).
    pub fn sqlite(schema: SqlSchema, exec: E, file: Option<String>) -> Self {
        SqlArchive {
            schema,
            exec,
            sqlite: Some(SqliteSide {
                file,
                ready: None,
                checkpointer: None,
                since_checkpoint: 0,
                frames_per_row: FIRST_FRAMES_PER_ROW,
                beside: None,
                last_rows: 0,
            }),
            last_held: None,
            profile: Profile::from_env(),
        }
    }

    /// Makes ejabberd's SQLite database ready for steps (once a part, on ejabberd's connection):
    ///
    /// - **WAL mode**, which stays with the file. In the rollback journal ejabberd leaves SQLite
    ///   in, every commit writes each page twice and syncs the disk three times while holding
    ///   the database (measured on a million rows, load 9: 13-45 ms a commit whatever the step,
    ///   so no step could be short); in WAL mode a commit appends its pages to the log. SQLite
    ///   switches only while no statement is running, which is so between two requests on
    ///   ejabberd's one connection; ejabberd's own commits keep their `synchronous` (FULL: one
    ///   log sync each instead of three), and its reads no longer wait for a write. The log and
    ///   its index (`-wal`, `-shm`) live beside the database: a backup must copy them too (or
    ///   use `sqlite3 FILE .backup`). A file SQLite cannot switch (a network file system) is
    ///   swept in its mode, slower.
    /// - ejabberd's connection's `synchronous` is read here, and each step's own commit is made
    ///   with `synchronous = NORMAL` and the setting put back in the same request (see
    ///   [`SqlArchive::sqlite_step`]): a power cut may undo the last steps' deletions (the
    ///   next sweep deletes those rows again), never corrupt the file; ejabberd's own commits
    ///   are never made with it.
    /// - when the file is known, ejabberd's connection's `wal_autocheckpoint` is raised for the
    ///   part ([`SWEEP_AUTOCHECKPOINT`]) and the core checkpoints the log itself from its own
    ///   connection ([`SqlArchive::checkpoint`]), so ejabberd's connection never spends a step
    ///   or one of its own requests copying the log; it is put back when the part ends.
    fn prepare(&mut self) -> Result<Ready> {
        let int = |rows: Vec<Vec<i64>>| rows.first().and_then(|r| r.first()).copied().unwrap_or(0);
        let wal_now = "SELECT journal_mode = 'wal' FROM pragma_journal_mode";
        let mut wal = int(self.exec.query(wal_now)?) == 1;
        if !wal {
            // Answers the mode as text; asked again below as a number.
            let _ = self.exec.query("PRAGMA journal_mode = WAL");
            wal = int(self.exec.query(wal_now)?) == 1;
        }
        let synchronous = int(self.exec.query("SELECT synchronous FROM pragma_synchronous")?);
        let mut ready = Ready { wal, synchronous, autocheckpoint: None };
        let file = self.sqlite.as_ref().and_then(|s| s.file.clone());
        if let (true, Some(file)) = (wal, file) {
            let now = int(self.exec.query("PRAGMA wal_autocheckpoint")?);
            // The raise of a part whose end never reached ejabberd (its process gone, an answer
            // past its time) is not ejabberd's own value: SQLite's default is put back instead.
            let now = if EARLIER_RAISES.contains(&now) { SQLITE_AUTOCHECKPOINT } else { now };
            // Another part running on the file (another host's) found the setting first.
            let before = {
                let mut raised = crate::locked::locked(&RAISED);
                let entry = raised.entry(file).or_insert((0, now));
                entry.0 += 1;
                entry.1
            };
            // Kept (and counted) before the raise is asked, so the part's end puts it back even
            // when the raise's answer never comes.
            ready.autocheckpoint = Some(before);
            if let Some(side) = self.sqlite.as_mut() {
                side.ready = Some(ready);
            }
            self.exec.everywhere(&format!("PRAGMA wal_autocheckpoint = {SWEEP_AUTOCHECKPOINT}"))?;
        }
        Ok(ready)
    }

    /// Copies the log into the database from the core's own connection (PASSIVE: ejabberd's
    /// reads and writes go on meanwhile, nothing of ejabberd's waits for it) before the log
    /// could pass [`CHECKPOINT_FRAMES`] pages (`force`: whatever there is, waited for). Answers
    /// whether the whole log is now in the database (nothing to copy, or everything copied).
    ///
    /// The copy runs on the checkpoint thread beside the next steps (on the bench's million
    /// rows, checkpoints made between the steps were 28.5 s of a 96 s sweep, load 11). The log
    /// only starts again from its beginning (instead of growing) at a commit made when every
    /// frame in it was copied, which a copy running beside the steps never sees: so when it
    /// is done, the frames the steps added meanwhile are copied between two steps, waited for.
    fn checkpoint(&mut self, force: bool) -> Result<bool> {
        let Some(side) = self.sqlite.as_mut() else { return Ok(false) };
        let (Some(file), Some(ready)) = (side.file.as_deref(), side.ready) else { return Ok(false) };
        if !ready.wal {
            return Ok(side.since_checkpoint == 0);
        }
        if side.since_checkpoint == 0 && side.beside.is_none() {
            return Ok(true);
        }
        if side.checkpointer.is_none() {
            side.checkpointer = Some(Checkpointer::open(file)?);
        }
        let ck = side.checkpointer.as_ref().expect("opened above");
        let started = Instant::now();
        let mut waited_beside = false;
        match side.beside {
            Some(rows) => {
                // Done yet? (Always waited for when forced.)
                let answer = if force {
                    waited_beside = true;
                    Some(ck.wait())
                } else {
                    match ck.answers.try_recv() {
                        Ok(a) => Some(a),
                        Err(std::sync::mpsc::TryRecvError::Empty) => {
                            // Still copying: the steps go on beside it until the log could pass
                            // twice the mark with a step like the last, then wait for it (a
                            // loaded machine's thread may copy slower than the steps write,
                            // and the log would otherwise grow for as long as the copy runs).
                            let next = side.last_rows.max(MIN_ROWS as i64);
                            let expected = (side.since_checkpoint + next) as f64 * side.frames_per_row;
                            if expected < (LOG_BOUND * CHECKPOINT_FRAMES) as f64 {
                                None
                            } else {
                                waited_beside = true;
                                Some(ck.wait())
                            }
                        }
                        Err(_) => Some(Err(Error::Internal("the archive's checkpoint thread is gone".into()))),
                    }
                };
                let Some(answer) = answer else { return Ok(false) };
                side.beside = None;
                let (frames, _, _) = answer?;
                if frames > 0 && rows > 0 {
                    side.frames_per_row = (frames as f64 / rows as f64).clamp(0.1, 50.0);
                }
                if let Some(p) = self.profile.as_mut() {
                    p.count("frames in the log at checkpoints beside the steps", frames.max(0));
                }
            }
            None => {
                // The next step's rows too, so the log stays under the mark.
                let expected = (side.since_checkpoint as f64 + MIN_ROWS as f64) * side.frames_per_row;
                if !force && expected < CHECKPOINT_FRAMES as f64 {
                    return Ok(false);
                }
                if !force {
                    ck.start(ROUNDS_BESIDE)?;
                    side.beside = Some(side.since_checkpoint);
                    return Ok(false);
                }
            }
        }
        // Between two steps: the frames added since the copy beside them began (or, forced,
        // everything), so the next commit starts the log again.
        let waited = started.elapsed();
        let between = Instant::now();
        ck.start(1)?;
        let (_, frames, copied) = ck.wait()?;
        side.since_checkpoint = 0;
        if let Some(p) = self.profile.as_mut() {
            if waited_beside {
                p.time("waits for a checkpoint beside the steps", waited);
            }
            p.time("checkpoints between steps", between.elapsed());
            p.count("frames in the log at checkpoints between steps", frames.max(0));
        }
        Ok(frames >= 0 && copied == frames)
    }

    /// One deleting step on SQLite, as ONE request on ejabberd's connection: the row after the
    /// step's `limit` rows is looked up first (the next cursor, left in place), then the
    /// step's rows are deleted by one statement whose subquery picks them in the order of
    /// ejabberd's (username, timestamp) index and whose own WHERE asks again for the cutoff and
    /// the kind; in WAL mode the commit is made with `synchronous = NORMAL`, ejabberd's own
    /// setting put back in the same request. Before: a SELECT of the ids, their list sent back
    /// into a DELETE, each its own request (two round trips, a 200-number statement to parse).
    ///
    /// The walk (the cursor's lookup and the subquery) leaves out the kind, so it reads only
    /// the index (a covering index search: username, timestamp and the id are all in it);
    /// with the kind it read each walked row's table page for its `kind` column, twice. The
    /// DELETE's own WHERE still asks for the kind, so a row of the other kind among the
    /// `limit` walked stays (and is passed: the next cursor is after it). That also bounds a
    /// step: with the kind, a step walked every row of the other kind until it found `limit`
    /// of its own (a chat sweep over a big room archive: unbounded). Callgrind on the bench's
    /// rows (3,024 deleted in 72-row steps, 23.01 schema): 149.4 M instructions in
    /// `sqlite3_step` with the kind in the walk, 137.2 M without (-8%).
    fn sqlite_step(&mut self, step: &ArchiveStep, from: Option<i64>, limit: usize) -> Result<(i64, Option<i64>)> {
        let ready = match self.sqlite.as_ref().and_then(|s| s.ready) {
            Some(r) => r,
            None => {
                let r = self.prepare()?;
                if let Some(side) = self.sqlite.as_mut() {
                    side.ready = Some(r);
                }
                r
            }
        };
        let walked = self.walked(step, from);
        let order = self.order();
        let mut statements = Vec::with_capacity(4);
        let mut finally = Vec::with_capacity(1);
        if ready.autocheckpoint.is_some() {
            // Raised again by every step, on whichever connection runs it: a connection ejabberd
            // opened since the part began (its SQLite process restarted) starts at SQLite's
            // default and would otherwise checkpoint the sweep's log inside this step's commit.
            statements.push(format!("PRAGMA wal_autocheckpoint = {SWEEP_AUTOCHECKPOINT}"));
        }
        if ready.wal && ready.synchronous != 1 {
            statements.push("PRAGMA synchronous = NORMAL".to_string());
            finally.push(format!("PRAGMA synchronous = {}", ready.synchronous));
        }
        statements.push(format!("SELECT id FROM archive WHERE {walked} ORDER BY {order} LIMIT 1 OFFSET {limit}"));
        // The rows deleted are counted from RETURNING, not from the `{updated, N}` ejabberd
        // answers: ejabberd 24.12 reads N with a second call (sqlite3:changes/1) on the
        // connection the workers of its pool share, so with sql_pool_size > 1 another worker's
        // INSERT in between made a 50-row step count 1 (seen: 99,951 of 100,000 recorded).
        statements.push(format!(
            "DELETE FROM archive WHERE id IN (SELECT id FROM archive WHERE {walked} ORDER BY {order} LIMIT {limit}) \
             AND {} RETURNING id",
            self.recheck(step)
        ));
        let started = Instant::now();
        let batch = self.exec.batch(&statements, &finally)?;
        let took = started.elapsed();
        self.last_held = Some(batch.held.unwrap_or(took));
        if let Some(p) = self.profile.as_mut() {
            p.time("round trips", took);
            p.time("in ejabberd's connection", batch.held.unwrap_or(took));
        }
        let n = batch.results.len();
        if n < 2 {
            return Err(Error::Internal("ejabberd's archive: a step's statements were not all answered".into()));
        }
        let next = batch.results[n - 2].first().and_then(|r| r.first()).copied();
        let deleted = batch.results[n - 1].len() as i64;
        if let Some(side) = self.sqlite.as_mut() {
            side.since_checkpoint += deleted;
            side.last_rows = deleted;
        }
        Ok((deleted, next))
    }

    /// What a DELETE asks again of every row it deletes, whatever picked it: older than the
    /// cutoff (and, in a user's part, not older than the domain's), of the swept kind. Not
    /// server_host: the ids were picked on it and a row keeps its host, and with it SQLite would
    /// search the (server_host, timestamp) index instead of the ids.
    fn recheck(&self, step: &ArchiveStep) -> String {
        let mut clause = format!("timestamp < {}", step.cutoff_us);
        if let Some(from) = step.not_before_us {
            clause.push_str(&format!(" AND timestamp >= {from}"));
        }
        let kind = if step.kind == Kind::Muc { "groupchat" } else { "chat" };
        clause.push_str(&format!(" AND kind = '{kind}'"));
        clause
    }

    /// Whether the cursor's row is still there (a cursor row gone matches nothing).
    fn cursor_gone(&mut self, id: i64) -> Result<bool> {
        let left = self.exec.query(&format!("SELECT count(*) FROM archive WHERE id = {id}"))?;
        Ok(left.first().and_then(|r| r.first()).copied().unwrap_or(0) == 0)
    }

    /// The rows a step may take: this host's (new schema), this user's (a user's own
    /// retention), of the swept kind, strictly before the cutoff, from the cursor's row on in
    /// (username, timestamp, id) order, which is ejabberd's (username, timestamp) index's (with
    /// `server_host` first in the new schema). A cursor row gone meanwhile matches nothing (the
    /// step then starts again from the first user, see `step`).
    fn visited(&self, step: &ArchiveStep, from: Option<i64>) -> String {
        let kind = match step.kind {
            Kind::Muc => "groupchat",
            _ => "chat",
        };
        format!("{} AND kind = '{kind}'", self.walked(step, from))
    }

    /// [`SqlArchive::visited`] without the kind, which is not in ejabberd's index: the rows a
    /// deleting step on SQLite walks (see [`SqlArchive::sqlite_step`]), reading the index only.
    fn walked(&self, step: &ArchiveStep, from: Option<i64>) -> String {
        let mut clauses = Vec::new();
        if self.schema == SqlSchema::New {
            clauses.push(format!("server_host = {}", literal(&step.host)));
        }
        if let Some(user) = &step.user {
            clauses.push(format!("username = {}", literal(user)));
        }
        clauses.push(format!("timestamp < {}", step.cutoff_us));
        if let Some(from) = step.not_before_us {
            clauses.push(format!("timestamp >= {from}"));
        }
        match from {
            Some(id) => clauses.push(format!(
                "(username, timestamp, id) >= (SELECT username, timestamp, id FROM archive WHERE id = {id})"
            )),
            // Says "by username" to the planner, which would otherwise sort every old row by
            // the timestamp index (EXPLAIN QUERY PLAN on ejabberd's schema).
            None if step.user.is_none() => clauses.push("username >= ''".into()),
            None => {}
        }
        clauses.join(" AND ")
    }

    fn order(&self) -> &'static str {
        match self.schema {
            SqlSchema::New => "server_host, username, timestamp, id",
            SqlSchema::Default => "username, timestamp, id",
        }
    }
}

impl<E: ArchiveSql> ArchiveSteps for SqlArchive<E> {
    /// One step: the next `limit` rows in the order of ejabberd's (username, timestamp) index,
    /// and the one after them as the next cursor; the rows taken are deleted, the DELETE asking
    /// again for the kind and the cutoff. Taken a user at a time, a row's entries in ejabberd's
    /// indexes that begin with the username share pages with the user's other rows: on a million
    /// rows of ejabberd 23.01's schema, 200-row steps deleted 3,383 rows/s this way against 836
    /// in (timestamp, id) order (rollback journal, load 12); in WAL mode a user's rows a step
    /// also wrote 1.9 pages of the log a row against 2.6 in time order.
    fn step(&mut self, step: &ArchiveStep) -> Result<ArchiveStepDone> {
        if step.kind == Kind::Uploads {
            return Err(Error::InvalidArgument("uploads are not in the archive table".into()));
        }
        if let Some(p) = self.profile.as_mut() {
            p.step_begins();
        }
        let done = if self.sqlite.is_some() && step.delete { self.step_sqlite(step) } else { self.step_any(step) };
        if let Some(p) = self.profile.as_mut() {
            p.count("steps", 1);
            p.count("rows", done.as_ref().map_or(0, |d| d.matched));
            p.step_ends();
        }
        let done = done?;
        self.checkpoint(false)?;
        Ok(done)
    }

    fn last_held(&self) -> Option<Duration> {
        self.last_held
    }

    /// Checkpoints what the part left in the log and puts ejabberd's `wal_autocheckpoint` back.
    fn finish(&mut self) -> Result<()> {
        if let Some(p) = self.profile.as_mut() {
            p.print_and_reset();
        }
        let checkpointed = self.checkpoint(true);
        let (ready, file) = match self.sqlite.as_mut() {
            Some(s) => {
                s.checkpointer = None;
                s.beside = None;
                (s.ready.take(), s.file.clone())
            }
            None => (None, None),
        };
        let raised = ready.and_then(|r| r.autocheckpoint).zip(file);
        // The last part running on the file puts the setting back (see RAISED).
        let last = raised.as_ref().is_some_and(|(_, file)| release(file));
        if let (Some((before, _)), true) = (raised, last) {
            // The log is all in the database: ejabberd's connection truncates the `-wal` file
            // the part let grow (nothing to copy, so it only takes the log's lock and truncates;
            // busy elsewhere, it does nothing), then gets its own setting back.
            // The setting goes back on every connection to the file (see `ArchiveSql::everywhere`).
            if matches!(checkpointed, Ok(true)) {
                self.exec.query("PRAGMA wal_checkpoint(TRUNCATE)")?;
            }
            self.exec.everywhere(&format!("PRAGMA wal_autocheckpoint = {before}"))?;
        }
        checkpointed.map(|_| ())
    }
}

impl<E: ArchiveSql> SqlArchive<E> {
    /// A deleting step on SQLite ([`SqlArchive::sqlite_step`]).
    fn step_sqlite(&mut self, step: &ArchiveStep) -> Result<ArchiveStepDone> {
        let from = sql_cursor(step.after.as_deref());
        let limit = step.limit.max(1);
        let (mut deleted, mut next) = self.sqlite_step(step, from, limit)?;
        if deleted == 0 && next.is_none() {
            if let Some(id) = from {
                // The cursor's row is gone: steps after the last record deleted it before a
                // crash (the record is not written every step), or ejabberd removed its user.
                // Start again from the first user: the rows deleted are gone, so this costs one
                // walk of the index, never a row deleted twice.
                if self.cursor_gone(id)? {
                    (deleted, next) = self.sqlite_step(step, None, limit)?;
                }
            }
        }
        Ok(ArchiveStepDone { matched: deleted, next: next.map(|id| format!("r{id}")) })
    }

    /// A step on any SQL server, or a dry run: the ids first (and the one after them as the next
    /// cursor), then, deleting, a DELETE of those ids.
    fn step_any(&mut self, step: &ArchiveStep) -> Result<ArchiveStepDone> {
        let mut from = sql_cursor(step.after.as_deref());
        let limit = step.limit.max(1);
        let started = Instant::now();
        let pick = |this: &mut Self, from: Option<i64>| {
            this.exec.query(&format!(
                "SELECT id FROM archive WHERE {} ORDER BY {} LIMIT {}",
                this.visited(step, from),
                this.order(),
                limit + 1
            ))
        };
        let mut picked = pick(self, from)?;
        if picked.is_empty() && step.delete {
            if let Some(id) = from {
                // The cursor's row is gone (see step_sqlite).
                if self.cursor_gone(id)? {
                    from = None;
                    picked = pick(self, from)?;
                }
            }
        }
        let mut ids = Vec::with_capacity(picked.len());
        for row in &picked {
            match row.as_slice() {
                [id] => ids.push(*id),
                _ => return Err(Error::Internal("ejabberd's archive: the step's query answered an odd row".into())),
            }
        }
        let next = (ids.len() > limit).then(|| ids.pop()).flatten();
        let matched = if ids.is_empty() {
            0
        } else if step.delete {
            let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
            let sql = format!("DELETE FROM archive WHERE id IN ({list}) AND {}", self.recheck(step));
            self.exec.query(&sql)?.first().and_then(|r| r.first().copied()).unwrap_or(0)
        } else {
            ids.len() as i64
        };
        self.last_held = Some(started.elapsed());
        Ok(ArchiveStepDone { matched, next: next.map(|id| format!("r{id}")) })
    }
}

/// [`ArchiveSql`] on an SQLite file the core opens itself (benchmarks, tests, a database no
/// server has open). Each statement is its own transaction; a lock held elsewhere is waited for
/// up to 50 ms, then the step fails and the sweep resumes at the next pass.
pub struct SqliteFile {
    conn: rusqlite::Connection,
}

impl SqliteFile {
    pub fn open(path: &str) -> Result<Self> {
        let conn = rusqlite::Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_millis(50))?;
        Ok(SqliteFile { conn })
    }
}

impl ArchiveSql for SqliteFile {
    fn query(&mut self, sql: &str) -> Result<Vec<Vec<i64>>> {
        let mut stmt = self.conn.prepare(sql)?;
        if stmt.column_count() == 0 {
            return Ok(vec![vec![stmt.execute([])? as i64]]);
        }
        let n = stmt.column_count();
        let rows = stmt.query_map([], |r| {
            (0..n)
                .map(|i| match r.get::<_, Value>(i)? {
                    Value::Integer(v) => Ok(v),
                    _ => Ok(0),
                })
                .collect::<rusqlite::Result<Vec<i64>>>()
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

/// The engine's view of an archive: the domain's rows first, then each user with a shorter
/// retention of their own. The engine's cursor is `d` plus the store's cursor during the
/// domain's part, `u` plus the user, a tab and the store's cursor during a user's part.
struct ArchiveTarget<'a> {
    store: &'a mut dyn ArchiveSteps,
    kind: Kind,
}

enum Phase {
    Domain(Option<String>),
    User(String, Option<String>),
}

fn phase(cursor: Option<&str>) -> Phase {
    match cursor {
        None => Phase::Domain(None),
        Some(c) => match c.split_at_checked(1) {
            Some(("u", rest)) => {
                let (user, inner) = rest.split_once('\t').unwrap_or((rest, ""));
                Phase::User(user.to_string(), (!inner.is_empty()).then(|| inner.to_string()))
            }
            Some(("d", rest)) if !rest.is_empty() => Phase::Domain(Some(rest.to_string())),
            _ => Phase::Domain(None),
        },
    }
}

impl ArchiveTarget<'_> {
    /// The first user after `previous` (by name) whose own retention is shorter than the
    /// domain's, with the cutoff it gives now.
    fn next_user(&self, h: &Hosting, domain: &str, previous: Option<&str>) -> Result<Option<(String, Timestamp)>> {
        if self.kind != Kind::Archive {
            return Ok(None);
        }
        let mut users = h.user_archive_cutoffs(domain)?;
        users.sort();
        Ok(users.into_iter().find(|(user, _)| previous.is_none_or(|p| user.as_str() > p)))
    }

    fn run(
        &mut self,
        h: &Hosting,
        domain: &str,
        cutoff: Timestamp,
        cursor: Option<&str>,
        limit: usize,
        delete: bool,
    ) -> Result<(i64, Option<String>)> {
        let (user, user_cutoff, after) = match phase(cursor) {
            Phase::Domain(after) => (None, cutoff, after),
            Phase::User(user, after) => {
                let cut = h.user_archive_cutoffs(domain)?.into_iter().find(|(u, _)| *u == user).map(|(_, c)| c);
                match cut {
                    // Still a shorter choice: continue this user.
                    Some(cut) => (Some(user), cut, after),
                    // Cleared (or no longer shorter) meanwhile: on to the next one.
                    None => match self.next_user(h, domain, Some(&user))? {
                        Some((next, cut)) => (Some(next), cut, None),
                        None => return Ok((0, None)),
                    },
                }
            }
        };
        // A floor for the engine's batch, so a slow commit (other SQL servers; SQLite outside
        // WAL mode: two fsyncs a commit, whatever the rows) cannot shrink steps to a row each.
        // In WAL mode a step's commit syncs nothing and costs by its rows (about two pages of
        // the log a row, some 30 µs a row on the bench's machine, load 1-3): at the earlier
        // floor of 200 rows steps took 6.3 ms at the median, above the 5 ms a step may hold
        // ejabberd's connection, so the engine (aiming at 3 ms) now goes down to 50.
        let limit = limit.max(MIN_ROWS);
        let step = ArchiveStep {
            kind: self.kind,
            host: domain.to_string(),
            user: user.clone(),
            // A user's part never deletes more than the domain's cutoff would keep... and never
            // less than theirs: their cutoff is the later of the two.
            cutoff_us: user_cutoff.max(cutoff).saturating_mul(1_000_000),
            not_before_us: user.as_ref().map(|_| cutoff.saturating_mul(1_000_000)),
            after,
            limit,
            delete,
        };
        let done = self.store.step(&step)?;
        let next = match (done.next, &user) {
            (Some(inner), None) => Some(format!("d{inner}")),
            (Some(inner), Some(u)) => Some(format!("u{u}\t{inner}")),
            (None, previous) => self.next_user(h, domain, previous.as_deref())?.map(|(u, _)| format!("u{u}\t")),
        };
        Ok((done.matched, next))
    }
}

impl Target for ArchiveTarget<'_> {
    /// The time ejabberd's connection was busy with the step, which the batch adapts to (not
    /// the round trip to ejabberd, nor a checkpoint after it, neither of which holds ejabberd).
    fn last_work(&self) -> Option<Duration> {
        self.store.last_held()
    }

    fn count(&mut self, h: &Hosting, domain: &str, cutoff: Timestamp) -> Result<(i64, i64)> {
        let mut cursor = None;
        let mut total = 0;
        loop {
            let (n, next) = self.run(h, domain, cutoff, cursor.as_deref(), super::sweep::MAX_BATCH, false)?;
            total += n;
            match next {
                Some(c) => cursor = Some(c),
                None => return Ok((total, 0)),
            }
        }
    }

    fn step(
        &mut self,
        h: &Hosting,
        domain: &str,
        cutoff: Timestamp,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<StepDone> {
        let (deleted, next) = self.run(h, domain, cutoff, cursor, limit, true)?;
        Ok(StepDone { deleted, bytes: 0, failures: Vec::new(), next })
    }
}

impl Hosting {
    /// Runs (or resumes) the sweep of a domain's one-to-one (`Kind::Archive`) or group chat
    /// (`Kind::Muc`) archives kept by a server, each step carried out by `store`. Audit log,
    /// lease, cursor, dry run and the cutoff rule are the engine's ([`super::sweep`]).
    pub fn retention_sweep_archive(
        &self,
        domain: &str,
        kind: Kind,
        store: &mut dyn ArchiveSteps,
        options: &SweepOptions,
    ) -> Result<SweepRecord> {
        if kind == Kind::Uploads {
            return Err(Error::InvalidArgument(
                "uploads are swept from the upload directory, not from an archive store".into(),
            ));
        }
        let mut target = ArchiveTarget { store, kind };
        let rec = self.sweep_with(domain, kind, &mut target, options);
        // Settings changed for the steps are put back whatever the part's outcome; a failure to
        // is the part's error only if the part itself went well.
        let finished = target.store.finish();
        let rec = rec?;
        finished?;
        Ok(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retention::SweepState;
    use crate::{Clock, ManualClock};

    const NOW: i64 = 1_700_000_000;
    const HOST: &str = "example.org";

    /// An SQLite database with ejabberd 23.01's own `archive` table of `schema` (as in its
    /// lite.sql and lite.new.sql), in a temporary file.
    struct Db {
        path: std::path::PathBuf,
        schema: SqlSchema,
    }

    impl Drop for Db {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    impl Db {
        fn new(name: &str, schema: SqlSchema) -> Db {
            let path = std::env::temp_dir().join(format!("xh-ej-archive-{name}-{}.db", std::process::id()));
            let _ = std::fs::remove_file(&path);
            let c = rusqlite::Connection::open(&path).unwrap();
            let host_col = if schema == SqlSchema::New { "server_host text NOT NULL," } else { "" };
            c.execute_batch(&format!(
                "CREATE TABLE archive (
                    username text NOT NULL, {host_col}
                    timestamp BIGINT UNSIGNED NOT NULL, peer text NOT NULL, bare_peer text NOT NULL,
                    xml text NOT NULL, txt text, id INTEGER PRIMARY KEY AUTOINCREMENT, kind text, nick text,
                    created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP);"
            ))
            .unwrap();
            if schema == SqlSchema::New {
                c.execute_batch(
                    "CREATE INDEX i_archive_sh_username_timestamp ON archive (server_host, username, timestamp);
                     CREATE INDEX i_archive_sh_timestamp ON archive (server_host, timestamp);",
                )
                .unwrap();
            } else {
                c.execute_batch(
                    "CREATE INDEX i_username_timestamp ON archive(username, timestamp);
                     CREATE INDEX i_timestamp ON archive(timestamp);",
                )
                .unwrap();
            }
            Db { path, schema }
        }

        fn add(&self, user: &str, host: &str, at_s: i64, kind: &str) {
            let c = rusqlite::Connection::open(&self.path).unwrap();
            let ts = at_s * 1_000_000;
            if self.schema == SqlSchema::New {
                c.execute(
                    "INSERT INTO archive (username, server_host, timestamp, peer, bare_peer, xml, kind, nick)
                     VALUES (?1, ?2, ?3, 'p@x', 'p@x', '<message/>', ?4, '')",
                    rusqlite::params![user, host, ts, kind],
                )
                .unwrap();
            } else {
                c.execute(
                    "INSERT INTO archive (username, timestamp, peer, bare_peer, xml, kind, nick)
                     VALUES (?1, ?2, 'p@x', 'p@x', '<message/>', ?3, '')",
                    rusqlite::params![user, ts, kind],
                )
                .unwrap();
            }
        }

        /// (username, seconds, kind) of every row left, in archive order.
        fn rows(&self) -> Vec<(String, i64, String)> {
            let c = rusqlite::Connection::open(&self.path).unwrap();
            let mut s = c.prepare("SELECT username, timestamp, kind FROM archive ORDER BY timestamp, id").unwrap();
            s.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? / 1_000_000, r.get(2)?)))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        }

        fn store(&self) -> SqlArchive<SqliteFile> {
            SqlArchive::sqlite(
                self.schema,
                SqliteFile::open(self.path.to_str().unwrap()).unwrap(),
                Some(self.path.to_str().unwrap().into()),
            )
        }
    }

    fn hosting() -> (Hosting, ManualClock) {
        let clock = ManualClock::new(NOW);
        let h = Hosting::open_in_memory().unwrap().with_clock(clock.clone());
        h.add_domain(HOST).unwrap();
        (h, clock)
    }

    fn opts(batch: usize) -> SweepOptions {
        SweepOptions { batch, ..Default::default() }
    }

    /// Records the statements of a step and answers them from a real database; `requests`
    /// counts what would be round trips to ejabberd (a query, or a batch).
    struct Recording {
        db: SqliteFile,
        seen: Vec<String>,
        requests: usize,
        /// Another host's connection to the same file (ejabberd: a second virtual host whose
        /// `sql_database` is this file), and its `wal_autocheckpoint` at each DELETE.
        other: Option<SqliteFile>,
        other_at_deletes: Vec<i64>,
    }

    impl Recording {
        fn on(db: &Db) -> Recording {
            Recording {
                db: SqliteFile::open(db.path.to_str().unwrap()).unwrap(),
                seen: vec![],
                requests: 0,
                other: None,
                other_at_deletes: vec![],
            }
        }
    }

    impl ArchiveSql for Recording {
        fn query(&mut self, sql: &str) -> Result<Vec<Vec<i64>>> {
            self.requests += 1;
            self.seen.push(sql.to_string());
            if let (true, Some(other)) = (sql.starts_with("DELETE"), self.other.as_mut()) {
                self.other_at_deletes.push(other.query("PRAGMA wal_autocheckpoint")?[0][0]);
            }
            self.db.query(sql)
        }

        fn everywhere(&mut self, sql: &str) -> Result<()> {
            self.query(sql)?;
            if let Some(other) = self.other.as_mut() {
                other.query(sql)?;
            }
            Ok(())
        }

        fn batch(&mut self, statements: &[String], finally: &[String]) -> Result<Batch> {
            let before = self.requests;
            let done = one_by_one(self, statements, finally);
            self.requests = before + 1;
            done
        }
    }

    #[test]
    fn a_step_takes_a_users_rows_in_the_order_of_ejabberds_username_index_on_both_schemas() {
        for (schema, sqlite) in
            [(SqlSchema::Default, true), (SqlSchema::New, true), (SqlSchema::Default, false), (SqlSchema::New, false)]
        {
            let db = Db::new(&format!("plan-{schema:?}-{sqlite}"), schema);
            for i in 0..30 {
                db.add(&format!("u{}", i % 3), HOST, NOW - 2 * 86_400 + i, "chat");
            }
            let mut store = if sqlite {
                SqlArchive::sqlite(schema, Recording::on(&db), None)
            } else {
                SqlArchive::new(schema, Recording::on(&db))
            };
            let mut step = ArchiveStep {
                kind: Kind::Archive,
                host: HOST.into(),
                user: None,
                cutoff_us: NOW * 1_000_000,
                not_before_us: None,
                after: None,
                limit: 4,
                delete: true,
            };
            let first = store.step(&step).unwrap();
            assert_eq!(first.matched, 4);
            step.after = first.next.clone();
            let before = store.exec.requests;
            let second = store.step(&step).unwrap();
            assert_eq!(second.matched, 4);
            // On SQLite a step is one request to ejabberd's connection (else a SELECT, a DELETE).
            assert_eq!(store.exec.requests - before, if sqlite { 1 } else { 2 }, "{:?}", store.exec.seen);
            // u0's ten rows first (the oldest of them), then u1's: a user at a time.
            let users: Vec<String> = db.rows().into_iter().map(|r| r.0).collect();
            assert_eq!(users.iter().filter(|u| *u == "u0").count(), 2, "{users:?}");
            let c = rusqlite::Connection::open(&db.path).unwrap();
            let index =
                if schema == SqlSchema::New { "i_archive_sh_username_timestamp" } else { "i_username_timestamp" };
            for sql in store.exec.seen.iter().filter(|q| q.contains("FROM archive WHERE") && !q.contains("count(*)")) {
                let plan: Vec<String> = c
                    .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                    .unwrap()
                    .query_map([], |r| r.get::<_, String>(3))
                    .unwrap()
                    .collect::<rusqlite::Result<_>>()
                    .unwrap();
                let plan = plan.join("; ");
                if sql.starts_with("DELETE") {
                    assert!(plan.contains("SEARCH archive USING INTEGER PRIMARY KEY (rowid=?)"), "{plan}");
                }
                if sql.starts_with("SELECT") || sql.contains("IN (SELECT") {
                    // On SQLite the walk reads the index only (the kind is asked by the DELETE).
                    let how = if sqlite { "USING COVERING INDEX" } else { "USING INDEX" };
                    assert!(plan.contains(&format!("SEARCH archive {how} {index}")), "{sql}: {plan}");
                }
                assert!(!plan.contains("TEMP B-TREE") && !plan.contains("SCAN archive"), "{sql}: {plan}");
            }
        }
    }

    #[test]
    fn a_sqlite_step_walks_at_most_its_limit_of_rows_whatever_their_kind_and_deletes_only_its_own() {
        for schema in [SqlSchema::Default, SqlSchema::New] {
            let db = Db::new(&format!("walk-{schema:?}"), schema);
            // A room's archive sorts before the users' (username order): 20 old group chat
            // rows, then 6 old chat rows of u0 and a newer one.
            for i in 0..20 {
                db.add("a-room@conference.example.org", HOST, NOW - 2 * 86_400 + i, "groupchat");
            }
            for i in 0..6 {
                db.add("u0", HOST, NOW - 2 * 86_400 + i, "chat");
            }
            db.add("u0", HOST, NOW, "chat");
            let mut store = db.store();
            let mut step = ArchiveStep {
                kind: Kind::Archive,
                host: HOST.into(),
                user: None,
                cutoff_us: NOW * 1_000_000,
                not_before_us: None,
                after: None,
                limit: 4,
                delete: true,
            };
            // The first step walks 4 of the room's rows: nothing of its kind, a cursor after them
            // (with the kind in the walk it walked all 20 to delete 4 of u0's).
            let first = store.step(&step).unwrap();
            assert_eq!(first.matched, 0, "{schema:?}");
            assert!(first.next.is_some());
            let mut steps = 1;
            let mut deleted = 0;
            step.after = first.next;
            while step.after.is_some() {
                let done = store.step(&step).unwrap();
                assert!(done.matched <= 4);
                deleted += done.matched;
                step.after = done.next;
                steps += 1;
            }
            assert_eq!(deleted, 6);
            // 26 old rows walked 4 at a time (the last step finds no row after its own).
            assert_eq!(steps, 7, "{schema:?}");
            let left = db.rows();
            assert_eq!(left.iter().filter(|r| r.2 == "groupchat").count(), 20, "the room's rows stay: {left:?}");
            assert_eq!(left.iter().filter(|r| r.2 == "chat").map(|r| r.1).collect::<Vec<_>>(), [NOW]);
        }
    }

    #[test]
    fn on_sqlite_steps_go_in_wal_mode_with_unsynced_commits_and_ejabberds_settings_are_put_back() {
        let (h, _) = hosting();
        h.set_retention(HOST, "archive", "1d").unwrap();
        let db = Db::new("wal", SqlSchema::Default);
        for i in 0..40 {
            db.add(&format!("u{}", i % 4), HOST, NOW - 2 * 86_400 + i, "chat");
        }
        let mut store =
            SqlArchive::sqlite(SqlSchema::Default, Recording::on(&db), Some(db.path.to_str().unwrap().into()));
        let rec = h.retention_sweep_archive(HOST, Kind::Archive, &mut store, &opts(7)).unwrap();
        assert_eq!((rec.state, rec.deleted), (SweepState::Done, 40));
        // The database file alone (without its log) already has the rows gone: the part ended
        // with the log copied into it.
        let file_alone = db.path.with_extension("file-alone");
        std::fs::copy(&db.path, &file_alone).unwrap();
        let left: i64 = rusqlite::Connection::open(&file_alone)
            .unwrap()
            .query_row("SELECT count(*) FROM archive", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0, "rows still in the database file: the log was not checkpointed");
        let seen = &store.exec.seen;
        let c = rusqlite::Connection::open(&db.path).unwrap();
        let mode: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal", "the mode stays with the file");
        // Every DELETE is made with synchronous = NORMAL and the connection's own (FULL) put back.
        let deletes: Vec<usize> = (0..seen.len()).filter(|&i| seen[i].starts_with("DELETE")).collect();
        assert!(deletes.len() > 1, "{seen:?}");
        for i in deletes {
            assert_eq!(seen[i - 2], "PRAGMA synchronous = NORMAL", "{seen:?}");
            assert_eq!(seen[i + 1], "PRAGMA synchronous = 2", "{seen:?}");
        }
        // The connection's autocheckpoint raised for the part, again in every step's own request
        // (whichever connection runs it), put back at its end after the log was truncated.
        let raise = format!("PRAGMA wal_autocheckpoint = {SWEEP_AUTOCHECKPOINT}");
        for i in (0..seen.len()).filter(|&i| seen[i].starts_with("DELETE")) {
            assert_eq!(seen[i - 3], raise, "{seen:?}");
        }
        assert_eq!(seen[seen.len() - 2..], ["PRAGMA wal_checkpoint(TRUNCATE)", "PRAGMA wal_autocheckpoint = 1000"]);
        let wal_len = std::fs::metadata(format!("{}-wal", db.path.display())).map_or(0, |m| m.len());
        assert_eq!(wal_len, 0, "the log the part let grow is truncated at its end");
        drop(c);

        // A raise left behind by a part whose end never reached ejabberd is not taken for
        // ejabberd's own setting: the next part puts SQLite's default back.
        store.exec.db.query(&format!("PRAGMA wal_autocheckpoint = {}", EARLIER_RAISES[0])).unwrap();
        for i in 0..4 {
            db.add("u0", HOST, NOW - 2 * 86_400 + i, "chat");
        }
        store.exec.seen.clear();
        let rec = h.retention_sweep_archive(HOST, Kind::Archive, &mut store, &opts(7)).unwrap();
        assert_eq!((rec.state, rec.deleted), (SweepState::Done, 4));
        assert_eq!(store.exec.seen.last().unwrap(), "PRAGMA wal_autocheckpoint = 1000", "{:?}", store.exec.seen);
        for end in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{end}", file_alone.display()));
        }
    }

    #[test]
    fn the_raised_autocheckpoint_reaches_every_connection_to_the_file_and_each_gets_its_own_back() {
        // ejabberd's pool workers of a host share one connection, but a second host on the same
        // file has its own: it must not checkpoint the sweep's log in its own commits either.
        let (h, _) = hosting();
        h.set_retention(HOST, "archive", "1d").unwrap();
        let db = Db::new("two-hosts", SqlSchema::New);
        for i in 0..40 {
            db.add(&format!("u{}", i % 4), HOST, NOW - 2 * 86_400 + i, "chat");
        }
        let mut exec = Recording::on(&db);
        let other = SqliteFile::open(db.path.to_str().unwrap()).unwrap();
        exec.other = Some(other);
        exec.other.as_mut().unwrap().query("PRAGMA wal_autocheckpoint = 700").unwrap();
        let mut store = SqlArchive::sqlite(SqlSchema::New, exec, Some(db.path.to_str().unwrap().into()));
        let rec = h.retention_sweep_archive(HOST, Kind::Archive, &mut store, &opts(7)).unwrap();
        assert_eq!((rec.state, rec.deleted), (SweepState::Done, 40));
        let at_deletes = &store.exec.other_at_deletes;
        assert!(at_deletes.len() > 1 && at_deletes.iter().all(|&v| v == SWEEP_AUTOCHECKPOINT), "{at_deletes:?}");
        // Each connection gets the swept host's own value back (ejabberd sets none: SQLite's).
        let other_now = store.exec.other.as_mut().unwrap().query("PRAGMA wal_autocheckpoint").unwrap()[0][0];
        let own_now = store.exec.db.query("PRAGMA wal_autocheckpoint").unwrap()[0][0];
        assert_eq!((own_now, other_now), (SQLITE_AUTOCHECKPOINT, SQLITE_AUTOCHECKPOINT));
    }

    #[test]
    fn the_log_copied_beside_the_steps_starts_again_instead_of_growing() {
        // The copies beside the steps never see the whole log copied (the steps write on), and
        // the log only starts again from its beginning after a commit that finds it all copied:
        // the rest is copied between two steps, so the `-wal` file stays near the mark instead
        // of holding every page the sweep wrote. Also with a checkpoint thread that copies
        // slower than any step (held until the steps wait for it, see HOLD_COPIES): the steps
        // wait for a copy once the log could pass the bound.
        for name in ["beside", "beside-held-copies-"] {
            let db = Db::new(name, SqlSchema::Default);
            {
                let c = rusqlite::Connection::open(&db.path).unwrap();
                c.execute_batch(
                    "BEGIN; WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 5999)
                     INSERT INTO archive (username, timestamp, peer, bare_peer, xml, kind, nick)
                     SELECT 'u' || (i % 7), i, 'p@x', 'p@x', printf('%.300c', 'x'), 'chat', '' FROM n; COMMIT;",
                )
                .unwrap();
            }
            let mut store = db.store();
            let wal = format!("{}-wal", db.path.display());
            let mut step = ArchiveStep {
                kind: Kind::Archive,
                host: HOST.into(),
                user: None,
                cutoff_us: i64::MAX,
                not_before_us: None,
                after: None,
                limit: 50,
                delete: true,
            };
            let (mut deleted, mut largest) = (0, 0);
            loop {
                let done = store.step(&step).unwrap();
                deleted += done.matched;
                largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
                match done.next {
                    Some(next) => step.after = Some(next),
                    None => break,
                }
            }
            store.finish().unwrap();
            assert_eq!(deleted, 6000);
            let frames = (largest / 4120) as i64;
            // The bound, and what the estimate of a row's pages (from the last copy) fell
            // short of; the sweep wrote many times that (about two pages a row).
            assert!(
                frames < LOG_BOUND * CHECKPOINT_FRAMES + CHECKPOINT_FRAMES / 2,
                "{name}: the log grew to {frames} frames"
            );
        }
    }

    #[test]
    fn two_hosts_sweeping_one_file_at_once_keep_the_raise_until_the_last_part_ends() {
        // ejabberd: two virtual hosts whose sql_database is the same file (new_sql_schema), each
        // with its own connection, both sweeping. The part that ends first must leave the raise
        // on every connection while the other's steps still write to the log; the last puts
        // back the setting the first part found.
        let db = Db::new("two-sweeps", SqlSchema::New);
        for i in 0..20 {
            db.add(&format!("u{}", i % 2), HOST, NOW - 2 * 86_400 + i, "chat");
            db.add(&format!("u{}", i % 2), "other.example", NOW - 2 * 86_400 + i, "chat");
        }
        let file = db.path.to_str().unwrap().to_string();
        let mut a = SqlArchive::sqlite(SqlSchema::New, Recording::on(&db), Some(file.clone()));
        let mut b = SqlArchive::sqlite(SqlSchema::New, Recording::on(&db), Some(file.clone()));
        a.exec.db.query("PRAGMA wal_autocheckpoint = 700").unwrap();
        let step = |host: &str| ArchiveStep {
            kind: Kind::Archive,
            host: host.into(),
            user: None,
            cutoff_us: NOW * 1_000_000,
            not_before_us: None,
            after: None,
            limit: 4,
            delete: true,
        };
        assert_eq!(a.step(&step(HOST)).unwrap().matched, 4);
        assert_eq!(b.step(&step("other.example")).unwrap().matched, 4);
        let raise = format!("PRAGMA wal_autocheckpoint = {SWEEP_AUTOCHECKPOINT}");
        assert!(b.exec.seen.contains(&raise), "{:?}", b.exec.seen);
        b.finish().unwrap();
        let put_back = |seen: &[String]| {
            seen.iter()
                .filter(|q| q.starts_with("PRAGMA wal_autocheckpoint = ") && **q != raise)
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(put_back(&b.exec.seen), Vec::<String>::new(), "b ended while a still sweeps: nothing put back");
        assert_eq!(a.exec.db.query("PRAGMA wal_autocheckpoint").unwrap()[0][0], SWEEP_AUTOCHECKPOINT);
        assert_eq!(a.step(&step(HOST)).unwrap().matched, 4);
        a.finish().unwrap();
        assert_eq!(put_back(&a.exec.seen), ["PRAGMA wal_autocheckpoint = 700"], "{:?}", a.exec.seen);
        assert_eq!(a.exec.db.query("PRAGMA wal_autocheckpoint").unwrap()[0][0], 700);
        assert!(!crate::locked::locked(&RAISED).contains_key(&file), "the file's entry goes with the last part");
    }

    #[test]
    fn a_part_dropped_before_its_end_no_longer_counts_as_running_on_the_file() {
        // A panic between two steps drops the store without finish(): a later part on the file
        // must still be the last one and put the setting back.
        let db = Db::new("dropped", SqlSchema::Default);
        for i in 0..10 {
            db.add("u", HOST, NOW - 2 * 86_400 + i, "chat");
        }
        let file = db.path.to_str().unwrap().to_string();
        let step = ArchiveStep {
            kind: Kind::Archive,
            host: HOST.into(),
            user: None,
            cutoff_us: NOW * 1_000_000,
            not_before_us: None,
            after: None,
            limit: 4,
            delete: true,
        };
        // What the dropped part asks stays readable after it is gone.
        struct Shared(SqliteFile, std::sync::Arc<std::sync::Mutex<Vec<String>>>);
        impl ArchiveSql for Shared {
            fn query(&mut self, sql: &str) -> Result<Vec<Vec<i64>>> {
                self.1.lock().unwrap().push(sql.to_string());
                self.0.query(sql)
            }
        }
        let said = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut lost = SqlArchive::sqlite(
            SqlSchema::Default,
            Shared(SqliteFile::open(&file).unwrap(), said.clone()),
            Some(file.clone()),
        );
        lost.exec.0.query("PRAGMA wal_autocheckpoint = 700").unwrap();
        assert_eq!(lost.step(&step).unwrap().matched, 4);
        assert_eq!(lost.exec.0.query("PRAGMA wal_autocheckpoint").unwrap()[0][0], SWEEP_AUTOCHECKPOINT);
        drop(lost);
        assert!(!crate::locked::locked(&RAISED).contains_key(&file));
        // The last part on the file put back the setting it found, without a later part.
        let said = said.lock().unwrap().clone();
        assert_eq!(said.last().unwrap(), "PRAGMA wal_autocheckpoint = 700", "{said:?}");
        let mut next = SqlArchive::sqlite(SqlSchema::Default, Recording::on(&db), Some(file.clone()));
        assert_eq!(next.step(&step).unwrap().matched, 4);
        next.finish().unwrap();
        assert_eq!(next.exec.seen.last().unwrap(), "PRAGMA wal_autocheckpoint = 1000", "{:?}", next.exec.seen);
    }

    #[test]
    fn a_sweep_resumed_from_a_cursor_whose_row_was_deleted_since_finishes_all_the_same() {
        // A crash after steps that were not recorded: the recorded cursor's row is gone.
        let (h, _) = hosting();
        h.set_retention(HOST, "archive", "1d").unwrap();
        let db = Db::new("gone-cursor", SqlSchema::Default);
        for i in 0..40 {
            db.add(&format!("u{}", i % 4), HOST, NOW - 2 * 86_400 + i, "chat");
        }
        db.add("u0", HOST, NOW - 60, "chat");
        let mut store = db.store();
        let part = h
            .retention_sweep_archive(
                HOST,
                Kind::Archive,
                &mut store,
                &SweepOptions { batch: 4, max_steps: Some(1), ..Default::default() },
            )
            .unwrap();
        assert_eq!((part.state, part.deleted), (SweepState::Running, 4));
        // The steps that followed, unrecorded: the cursor's row and the rest of u0's went.
        let c = rusqlite::Connection::open(&db.path).unwrap();
        c.execute("DELETE FROM archive WHERE username = 'u0' AND timestamp < ?1", [(NOW - 86_400) * 1_000_000])
            .unwrap();
        let rest = h.retention_sweep_archive(HOST, Kind::Archive, &mut store, &opts(4)).unwrap();
        assert_eq!((rest.id, rest.state, rest.deleted), (part.id, SweepState::Done, 4 + 30));
        assert_eq!(db.rows().len(), 1, "only the newer row is left");
    }

    #[test]
    fn old_chat_rows_go_newer_ones_and_group_chats_stay_on_both_schemas() {
        for schema in [SqlSchema::Default, SqlSchema::New] {
            let (h, _) = hosting();
            h.set_retention(HOST, "archive", "1d").unwrap();
            let db = Db::new(&format!("basic-{schema:?}"), schema);
            for i in 0..50 {
                db.add(&format!("u{}", i % 3), HOST, NOW - 2 * 86_400 + i * 60, "chat");
                db.add("room@conference.example.org", HOST, NOW - 2 * 86_400 + i * 60, "groupchat");
            }
            // Exactly at the cutoff: kept (strictly before is deleted).
            db.add("u0", HOST, NOW - 86_400, "chat");
            db.add("u1", HOST, NOW - 86_399, "chat");
            let mut store = db.store();
            let dry = h
                .retention_sweep_archive(
                    HOST,
                    Kind::Archive,
                    &mut store,
                    &SweepOptions { dry_run: true, batch: 7, ..Default::default() },
                )
                .unwrap();
            assert_eq!((dry.deleted, dry.dry_run), (50, true));
            assert_eq!(db.rows().len(), 102, "a dry run deletes nothing");
            let rec = h.retention_sweep_archive(HOST, Kind::Archive, &mut store, &opts(7)).unwrap();
            assert_eq!((rec.state, rec.deleted), (SweepState::Done, 50), "{schema:?}");
            assert!(rec.steps > 1);
            let left = db.rows();
            assert_eq!(
                left.iter().filter(|r| r.2 == "chat").map(|r| r.1).collect::<Vec<_>>(),
                [NOW - 86_400, NOW - 86_399]
            );
            assert_eq!(left.iter().filter(|r| r.2 == "groupchat").count(), 50, "group chats are the muc kind's");
            // The muc kind, with its own period.
            h.set_retention(HOST, "muc", "1h").unwrap();
            let rec = h.retention_sweep_archive(HOST, Kind::Muc, &mut store, &opts(5)).unwrap();
            assert_eq!(rec.deleted, 50);
            assert_eq!(db.rows().len(), 2);
        }
    }

    #[test]
    fn the_new_schema_sweeps_only_the_domains_own_rows() {
        let (h, _) = hosting();
        h.set_retention(HOST, "archive", "1d").unwrap();
        let db = Db::new("hosts", SqlSchema::New);
        for i in 0..10 {
            db.add("alice", HOST, NOW - 3 * 86_400 + i, "chat");
            db.add("alice", "other.example", NOW - 3 * 86_400 + i, "chat");
        }
        let rec = h.retention_sweep_archive(HOST, Kind::Archive, &mut db.store(), &opts(3)).unwrap();
        assert_eq!(rec.deleted, 10);
        assert_eq!(db.rows().len(), 10, "other.example's rows stay");
    }

    #[test]
    fn rows_with_equal_timestamps_are_all_visited_across_steps() {
        let (h, _) = hosting();
        h.set_retention(HOST, "archive", "1h").unwrap();
        let db = Db::new("ties", SqlSchema::Default);
        for _ in 0..9 {
            db.add("bob", HOST, NOW - 7200, "chat");
        }
        let rec = h.retention_sweep_archive(HOST, Kind::Archive, &mut db.store(), &opts(1)).unwrap();
        assert_eq!(rec.deleted, 9);
        assert!(rec.steps >= 3 && rec.steps <= 4, "a batch of one is raised to MIN_ROWS: {rec:?}");
        assert!(db.rows().is_empty());
    }

    #[test]
    fn a_users_shorter_retention_is_swept_after_the_domains() {
        let (h, _) = hosting();
        h.set_retention(HOST, "archive", "30d").unwrap();
        h.set_user_archive_retention(HOST, "alice", Some("1d")).unwrap();
        h.set_user_archive_retention(HOST, "carol", Some("2d")).unwrap();
        let db = Db::new("users", SqlSchema::New);
        for user in ["alice", "bob", "carol"] {
            db.add(user, HOST, NOW - 40 * 86_400, "chat"); // past the domain's 30 days
            db.add(user, HOST, NOW - 36 * 3600, "chat"); // past alice's day, within carol's two
            db.add(user, HOST, NOW - 3600, "chat");
        }
        let dry = h
            .retention_sweep_archive(
                HOST,
                Kind::Archive,
                &mut db.store(),
                &SweepOptions { dry_run: true, ..Default::default() },
            )
            .unwrap();
        assert_eq!(dry.deleted, 4);
        let rec = h.retention_sweep_archive(HOST, Kind::Archive, &mut db.store(), &opts(1)).unwrap();
        assert_eq!((rec.deleted, rec.state), (4, SweepState::Done));
        let left: Vec<(String, i64)> = db.rows().into_iter().map(|r| (r.0, NOW - r.1)).collect();
        let mut expect = vec![
            ("bob".to_string(), 36 * 3600),
            ("carol".to_string(), 36 * 3600),
            ("alice".to_string(), 3600),
            ("bob".to_string(), 3600),
            ("carol".to_string(), 3600),
        ];
        let mut left_sorted = left.clone();
        left_sorted.sort();
        expect.sort();
        assert_eq!(left_sorted, expect);
    }

    #[test]
    fn a_sweep_stopped_part_way_resumes_from_its_cursor_and_keeps_newer_rows() {
        let (h, clock) = hosting();
        h.set_retention(HOST, "archive", "1d").unwrap();
        let db = Db::new("resume", SqlSchema::Default);
        for i in 0..40 {
            db.add("u", HOST, NOW - 2 * 86_400 + i, "chat");
        }
        for i in 0..5 {
            db.add("u", HOST, NOW - 100 + i, "chat");
        }
        let part = h
            .retention_sweep_archive(
                HOST,
                Kind::Archive,
                &mut db.store(),
                &SweepOptions { batch: 4, max_steps: Some(2), ..Default::default() },
            )
            .unwrap();
        assert_eq!(part.state, SweepState::Running);
        assert!(part.deleted > 0 && part.deleted < 40);
        clock.advance(30);
        // Another store (a restarted server) resumes the same sweep.
        let rest = h.retention_sweep_archive(HOST, Kind::Archive, &mut db.store(), &opts(4)).unwrap();
        assert_eq!((rest.id, rest.parts, rest.deleted, rest.state), (part.id, 2, 40, SweepState::Done));
        assert_eq!(db.rows().len(), 5);
    }

    #[test]
    fn a_failing_store_pauses_the_sweep_with_its_error_and_uploads_are_refused() {
        struct Broken;
        impl ArchiveSteps for Broken {
            fn step(&mut self, _: &ArchiveStep) -> Result<ArchiveStepDone> {
                Err(Error::Internal("ejabberd's archive: database is locked".into()))
            }
        }
        let (h, _) = hosting();
        h.set_retention(HOST, "archive", "1d").unwrap();
        let rec = h.retention_sweep_archive(HOST, Kind::Archive, &mut Broken, &opts(4)).unwrap();
        assert_eq!(rec.state, SweepState::Running);
        assert!(rec.errors[0].contains("database is locked"), "{:?}", rec.errors);
        let e = h.retention_sweep_archive(HOST, Kind::Uploads, &mut Broken, &opts(4)).unwrap_err();
        assert_eq!(e.code(), "invalid-argument");
        assert!(SqlSchema::parse("old").unwrap_err().to_string().contains("default or new"));
    }

    /// Random histories against a model: rows stored at random times, sweeps of random batch
    /// sizes stopped after random numbers of steps, the clock moving both ways. A row may vanish
    /// only if it was older than the cutoff of the moment.
    #[test]
    fn property_no_row_newer_than_the_cutoff_is_deleted() {
        let (h, clock) = hosting();
        h.set_retention(HOST, "archive", "1h").unwrap();
        let db = Db::new("property", SqlSchema::New);
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut rnd = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..60 {
            for _ in 0..rnd(10) {
                let kind = if rnd(4) == 0 { "groupchat" } else { "chat" };
                db.add(&format!("u{}", rnd(3)), HOST, clock.now() - rnd(3 * 3600) as i64 + 600, kind);
            }
            let before = db.rows();
            let _ = h.retention_sweep_archive(
                HOST,
                Kind::Archive,
                &mut db.store(),
                &SweepOptions { batch: 1 + rnd(6) as usize, max_steps: Some(rnd(4)), ..Default::default() },
            );
            let after = db.rows();
            let cutoff = clock.now() - 3600;
            let mut left = after.clone();
            for row in before {
                if let Some(i) = left.iter().position(|r| *r == row) {
                    left.remove(i);
                } else {
                    assert!(row.1 < cutoff && row.2 == "chat", "{row:?} deleted with cutoff {cutoff}");
                }
            }
            clock.advance(rnd(1200) as i64 - 400);
        }
    }
}
