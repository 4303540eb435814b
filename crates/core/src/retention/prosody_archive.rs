//! Prosody's archives (mod_mam's one-to-one archive, mod_muc_mam's group chat archive), swept
//! by the core's rule.
//!
//! Where they live is registered by the server when it loads ([`Hosting::register_archive_store`]):
//! - `prosody_sql`: `storage = "sql"` with SQLite. The core deletes directly in Prosody's
//!   database (table `prosodyarchive`) on its worker thread: each step deletes a user's (or
//!   room's) oldest rows, picked from Prosody's (host, user, store, when) index, in one short
//!   transaction whose statement itself asks for rows of the host and store stored strictly
//!   before the cutoff (see `ProsodySql` for why, and for the WAL mode it puts the file in).
//!   Prosody opens the file with LuaDBI, which sets no busy handler: a Prosody query that met
//!   one of our steps' locks would fail at once ("database is locked"), and a message would go
//!   unarchived. The Prosody module therefore gives Prosody's connection a busy timeout
//!   (`PRAGMA busy_timeout`) when it registers the store, so Prosody waits the length of one
//!   step (a few milliseconds) instead. Measured against Prosody's own cleanup (one unbatched
//!   DELETE with the event loop blocked): see benches/retention_prosody.py and the README.
//! - `prosody_internal`: `storage = "internal"` (one file per user or room). Only Prosody can
//!   change those files safely (it appends to them from its loop), so Prosody deletes through
//!   its archive storage API, a few users' archives a step, in steps planned here
//!   ([`Hosting::begin_driven_sweep`], [`Hosting::begin_driven_dry_run`], see `driven.rs`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use once_cell::sync::Lazy;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::Serialize;

use super::profile::Profile;
use super::sweep::{StepDone, Target, USERS_ONLY};
use super::{Kind, Period};
use crate::locked::locked;
use crate::store::retention as sql;
use crate::{Error, Hosting, Result, Timestamp};

/// Prosody with `storage = "sql"` on SQLite: the core deletes in its database.
pub const PROSODY_SQL: &str = "prosody_sql";
/// Prosody with `storage = "internal"`: Prosody deletes through its storage API.
pub const PROSODY_INTERNAL: &str = "prosody_internal";

/// How long a step waits for Prosody's own write lock before it gives up (the sweep pauses and
/// the next pass retries). On the core's worker, never on a server's loop.
const PROSODY_BUSY: Duration = Duration::from_millis(1000);

/// Where one server host keeps its archive of a kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArchiveStore {
    pub kind: Kind,
    /// The host the server stores it under (`example.org`, `conference.example.org`).
    pub server_host: String,
    /// The hosted domain whose policy applies.
    pub domain: String,
    pub backend: String,
    /// The database file (`prosody_sql`).
    pub location: Option<String>,
    /// The server's store name (`archive`, `muc_log`).
    pub store: String,
    pub registered_at: Timestamp,
}

/// Whether the core sweeps a backend itself (on its worker), or the server does, planned here.
pub fn swept_by_core(backend: &str) -> bool {
    backend == PROSODY_SQL
}

impl Hosting {
    /// Records where a server keeps `server_host`'s archive of `kind` (`archive` or `muc`) for the
    /// hosted `domain`; called by the server module when it loads, again whenever it loads.
    /// `location` is the database file for `prosody_sql` (an absolute path).
    pub fn register_archive_store(
        &self,
        domain: &str,
        kind: Kind,
        server_host: &str,
        backend: &str,
        location: Option<&str>,
        store: &str,
    ) -> Result<ArchiveStore> {
        if kind == Kind::Uploads {
            return Err(Error::InvalidArgument("uploads are not kept in an archive store".into()));
        }
        let domain = self.require_domain(domain)?.name.as_str().to_string();
        let host = crate::DomainName::parse(server_host)?.as_str().to_string();
        if backend.is_empty() || store.is_empty() {
            return Err(Error::InvalidArgument("an archive store needs a backend and a store name".into()));
        }
        if backend == PROSODY_SQL {
            match location {
                Some(l) if Path::new(l).is_absolute() => {}
                _ => {
                    return Err(Error::InvalidArgument(format!(
                        "Prosody's SQLite database of {host} must be given as an absolute path, not {location:?}"
                    )))
                }
            }
        }
        let s = ArchiveStore {
            kind,
            server_host: host,
            domain,
            backend: backend.to_string(),
            location: location.map(str::to_string),
            store: store.to_string(),
            registered_at: self.now(),
        };
        self.store().write(|tx| sql::register_archive_store(tx, &s))?;
        Ok(s)
    }

    /// Where a domain's archives of a kind are kept, as the servers registered them.
    pub fn archive_stores(&self, domain: &str, kind: Kind) -> Result<Vec<ArchiveStore>> {
        let domain = self.require_domain(domain)?.name;
        self.store().read(|c| sql::archive_stores(c, domain.as_str(), kind))
    }

    /// Copies the log of every Prosody database registered for sweeping (`prosody_sql`) into
    /// its file, PASSIVE: nobody waits, Prosody's reads and writes go on. The housekeeping pass
    /// of a Prosody ([`crate::housekeeping::Housekeeping::checkpoint_prosody_databases`]) calls
    /// it every few seconds on the core's worker, so Prosody's own connection, whose automatic
    /// checkpoint the module raised for the sweeps' sake (see [`PROSODY_AUTOCHECKPOINT`]),
    /// never reaches it and never copies a log on its loop. Returns the pages of the logs now in
    /// the files, and each file that could not be checkpointed with why (the others are done
    /// all the same); a file that is gone (Prosody moved it) is skipped.
    pub fn checkpoint_prosody_databases(&self) -> Result<(i64, Vec<(String, Error)>)> {
        let files = self.store().read(|c| sql::archive_store_files(c, PROSODY_SQL))?;
        let mut copied = 0;
        let mut failed = Vec::new();
        let mut open = locked(&CHECKPOINT_CONNECTIONS);
        for path in files {
            let Ok(meta) = std::fs::metadata(&path) else {
                open.remove(&path);
                continue;
            };
            let file = {
                use std::os::unix::fs::MetadataExt;
                (meta.dev(), meta.ino())
            };
            // One connection a file, kept: opening one every few seconds read the schema each
            // time. A file replaced since (same path, another file) gets a new one.
            if open.get(&path).is_some_and(|(f, _)| *f != file) {
                open.remove(&path);
            }
            let conn = match open.entry(path.clone()) {
                std::collections::hash_map::Entry::Occupied(e) => Ok(&e.into_mut().1),
                std::collections::hash_map::Entry::Vacant(v) => Connection::open_with_flags(
                    &path,
                    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map(|c| &v.insert((file, c)).1),
            };
            let done = conn.and_then(|c| c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(2)));
            match done {
                // -1: not in WAL mode (nothing to copy).
                Ok(pages) => copied += pages.max(0),
                Err(e) => {
                    open.remove(&path);
                    failed.push((path, Error::from(e)));
                }
            }
        }
        Ok((copied, failed))
    }

    /// Users of `domain` whose own archive retention is shorter than the domain's, each with the
    /// cutoff it gives now: their messages stored strictly before it go.
    pub fn user_archive_cutoffs(&self, domain: &str) -> Result<Vec<(String, Timestamp)>> {
        let d = self.require_domain(domain)?;
        let domain_period = d.settings.retention.archive;
        let now = self.now();
        let own = self.store().read(|c| sql::user_archives(c, d.name.as_str()))?;
        let mut out = Vec::new();
        for (user, text) in own {
            let p = Period::parse(&text).map_err(|e| Error::Corrupt(format!("retention of {user}: {e}")))?;
            if p < domain_period {
                if let Some(cutoff) = p.cutoff(now) {
                    out.push((user, cutoff));
                }
            }
        }
        Ok(out)
    }
}

/// Prosody's SQLite archive table, deleted a user's (or room's) oldest rows a step.
///
/// Where a step's time goes (measured on a million rows of Prosody's schema, half of them
/// expired, 1,000 users writing in turn): a row deleted is a row of the table and an entry in
/// each of Prosody's four indexes, all prefixed by (host, user, store). Taken in `sort_id`
/// order (time order, users interleaved) every row's index entries sit on pages of their own:
/// 4.2 pages written per row, 70 ms for 2,000 rows. Taken a user at a time in the
/// (host, user, store, when) index's order, a user's index entries share pages and only the
/// table's row is scattered: 1.2-1.5 pages per row, 20 µs per row. Every page written is also
/// what a commit costs: in the rollback journal Prosody leaves SQLite in, a commit writes each
/// page twice and syncs the disk three times (tens of milliseconds for a step of a few hundred
/// rows), so a step of a few milliseconds could delete a handful of rows. The sweep therefore
/// puts the database in WAL mode (see [`ProsodySql::prepare_for_steps`]): a commit appends the
/// pages to the log, and the pages go to the database file in checkpoints that hold no lock.
pub(crate) struct ProsodySql {
    stores: Vec<ArchiveStore>,
    /// Open databases.
    conns: Vec<Db>,
    kind: Kind,
    /// How long the last step held the database's write lock (its DELETE and commit): Prosody's
    /// own writes wait that long, its loop with them.
    last_work: Option<Duration>,
    /// When the last step let the lock go: the next takes it no sooner than [`ProsodySql::gap`]
    /// after.
    last_commit: Option<Instant>,
    /// Pages the last step added to the log.
    last_pages: i32,
    /// Where the time went (`XH_RETENTION_PROFILE` set: benches), in the shared form
    /// ([`Profile`]): each phase of a step with its spread, the rows, pages and checkpoints.
    profile: Option<Profile>,
    /// Every step, for a bench that asks (`XH_RETENTION_TRACE` names a file, appended to when
    /// the part ends; with `XH_RETENTION_PROFILE`): what a long hold had in common (its batch,
    /// a checkpoint round beside it, a restart) is not in the profile's spreads, and the wall
    /// clock time of each hold lets a system-wide trace (`perf record -k CLOCK_REALTIME`) show
    /// what the thread waited on while it held the lock.
    trace: Option<(PathBuf, Vec<String>)>,
}

impl Drop for ProsodySql {
    /// The end of a part: the profile printed (benches).
    fn drop(&mut self) {
        if let Some(p) = &mut self.profile {
            for db in &self.conns {
                if let Some(ck) = &db.checkpointer {
                    for took in ck.round_times() {
                        p.time("checkpoint rounds beside the steps", took);
                    }
                }
            }
            p.print_and_reset();
        }
        if let Some((path, lines)) = self.trace.take() {
            use std::io::Write;
            let written = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut f| f.write_all(lines.concat().as_bytes()));
            if let Err(e) = written {
                eprintln!("XH_RETENTION_TRACE {}: {e}", path.display());
            }
        }
    }
}

/// One of Prosody's databases, open.
struct Db {
    path: String,
    conn: Connection,
    /// Made ready for steps ([`ProsodySql::prepare_for_steps`]).
    ready: bool,
    /// In WAL mode (found or put in it by [`ProsodySql::prepare_for_steps`]).
    wal: bool,
    /// The users' own cutoffs as loaded into the connection's temporary table.
    users: Option<Vec<(String, Timestamp)>>,
    /// Prosody's table and its (host, user, store, when) index were found: not looked up again
    /// every step (two schema queries a step were 2-3 % of a sweep).
    checked: bool,
    /// The file's name among the [`LoopGate`]s.
    gate_key: PathBuf,
    /// Copies the log (WAL mode), off the steps' thread.
    checkpointer: Option<Checkpointer>,
    /// Pages in the log after the last commit, and how many of them are known to be in the file.
    log: i32,
    copied: i32,
    /// The most pages the log held after a commit of the sweep's.
    most: i32,
    /// Logs restarted by a commit of their own ([`ProsodySql::restart_log`]), and by a step's
    /// commit (the log was all copied when the step began: its commit synced the new header).
    restarts_alone: u64,
    restarts_by_steps: u64,
    /// The rounds of [`ProsodySql::shrink_log`]: bytes freed, write lock held.
    shrunk: Vec<(u64, Duration)>,
}

/// Without a [`LoopGate`] (the sweep runs outside the Prosody that writes in the database: the
/// command line), Prosody's writes get the database between two steps: its busy handler retries
/// after 1, 2, 5, 10 ... ms, so a step takes the lock again no sooner than the last one held it
/// (the time spent picking rows and checkpointing counts), and never sooner than this...
const PROSODY_MIN_GAP: Duration = Duration::from_millis(1);

/// ... nor later than this.
const PROSODY_MAX_GAP: Duration = Duration::from_millis(5);

/// The log's length the sweep never lets its steps take it past (40 MB of 4 KB pages): before
/// it could, the sweep waits for its [`Checkpointer`] and copies the rest itself (a checkpoint,
/// holding no lock), so Prosody's own connection never reaches [`PROSODY_AUTOCHECKPOINT`].
///
/// Checkpoints were most of a sweep's time: a row deleted a user at a time writes 1.5 pages
/// (its table page is shared with other users' rows, not with the step's), each page is synced
/// into the database by the next checkpoint, and a page that several steps change is copied
/// once per checkpoint in between. Measured on a million rows, half deleted (load 7 on 2 shared
/// cores): checkpoints at 1,000 pages, 1,102 of them, 39.5 s of an 82 s sweep; at 4,000
/// pages 22.5 s of 61 s; at 10,000 pages 11.1 s of 44 s; at 20,000 pages 9.4 s of 45 s.
/// With the checkpointer beside the steps and a 4 MB cache (release builds, 2 December 2026),
/// 30,000 pages (the log started afresh from 15,000) made a million-row sweep 7-20% faster
/// (the steps' thread checkpointing 1.0 s instead of 2.1-2.3 s) but about doubled the steps
/// held over 5 ms (each a commit slowed while the log file grew into new pages): not taken.
const CHECKPOINT_PAGES: i32 = 10_000;

/// The sweep asks its [`Checkpointer`] for a round once this many pages of the log are not yet
/// in the database...
const BACKGROUND_PAGES: i32 = 3_000;

/// ... and when a round ends with at most this many pages left (written by the steps meanwhile),
/// copies them itself, so the log is all in the file and the next commit starts it afresh
/// (SQLite restarts a log only once every page of it was copied: rounds alone, with steps
/// writing throughout, would let it grow for ever). More pages left: another round.
const CATCH_UP_PAGES: i32 = 500;

/// Prosody's connection checkpoints by itself, on its loop, when it commits to a log of this
/// many pages or more (`wal_autocheckpoint`, SQLite's default 1,000): mod_xmpp_hosting_retention
/// raises it to this on Prosody's connections ([`LoopGate::prosody_autocheckpoint`]), so that
/// Prosody never copies the sweep's pages on its loop: the sweep checkpoints before the log
/// reaches [`CHECKPOINT_PAGES`], below this. Outside sweeps, Prosody's own writes would then
/// be copied on its loop at this length, rarer but each longer (measured, a message archived a
/// commit at load 6-7: 156.5 ms every ~1,470 messages instead of 37.2 ms every ~121); the
/// housekeeping pass's checkpoint step copies them off its loop every few seconds instead
/// ([`Hosting::checkpoint_prosody_databases`]), and says so in Prosody's log when it cannot.
/// (tests/test_prosody_retention.py reads this number in Prosody's log: the end-to-end check that it
/// reached Prosody's connection.)
pub(crate) const PROSODY_AUTOCHECKPOINT: i32 = 12_000;

// Room between the sweep's checkpoint point and Prosody's: a step checkpoints when the next
// one, at twice its own pages, could reach CHECKPOINT_PAGES, so the log stays below Prosody's.
const _: () = assert!(CHECKPOINT_PAGES + 2_000 <= PROSODY_AUTOCHECKPOINT);

/// Copies a database's log into it on a thread of its own (PASSIVE checkpoints: no lock held,
/// Prosody's reads and writes and the sweep's steps go on), so the sweep's steps need not wait
/// for it: checkpoints were a fifth of a sweep's time when the sweep's thread did them between
/// steps (5.9 of 25.7 s on a million rows). The thread runs at a lower priority (nice 10), so
/// on a busy machine Prosody's loop comes first; a checkpoint's time is mostly the disk's.
struct Checkpointer {
    shared: Arc<(Mutex<Rounds>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct Rounds {
    asked: bool,
    running: bool,
    stop: bool,
    /// The round that ended last, not yet taken: the log's pages then, and how many of them
    /// are in the database.
    ended: Option<(i32, i32)>,
    /// Each round's time (the profile; a checkpointer lives for one part of a sweep).
    times: Vec<Duration>,
}

impl Checkpointer {
    /// Opens its own connection to `path` and starts the thread.
    fn start(path: &str) -> Result<Checkpointer> {
        let c = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        let shared: Arc<(Mutex<Rounds>, Condvar)> = Arc::default();
        let theirs = shared.clone();
        let thread = std::thread::Builder::new()
            .name("xh-prosody-checkpoint".into())
            .spawn(move || {
                // This thread only (Linux's priorities are a thread's): Prosody's loop first.
                let _ = rustix::process::setpriority_process(None, 10);
                let (state, cv) = &*theirs;
                loop {
                    let mut st = locked(state);
                    while !st.asked && !st.stop {
                        st = cv.wait(st).unwrap_or_else(|p| p.into_inner());
                    }
                    if st.stop {
                        return;
                    }
                    st.asked = false;
                    st.running = true;
                    drop(st);
                    let t = Instant::now();
                    let done = c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                        Ok((r.get::<_, i32>(1)?, r.get::<_, i32>(2)?))
                    });
                    let mut st = locked(state);
                    st.running = false;
                    st.times.push(t.elapsed());
                    // A round that failed (another checkpointer at work: SQLITE_BUSY) copied
                    // nothing; the sweep asks again or copies itself.
                    st.ended = Some(done.unwrap_or((0, 0)));
                    cv.notify_all();
                }
            })
            .map_err(|e| Error::Internal(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Checkpointer { shared, thread: Some(thread) })
    }

    fn ask(&self) {
        let (state, cv) = &*self.shared;
        locked(state).asked = true;
        cv.notify_all();
    }

    /// Whether a round is asked for or under way.
    fn busy(&self) -> bool {
        let st = locked(&self.shared.0);
        st.asked || st.running
    }

    /// Waits for the round asked for or under way to end.
    fn wait(&self) {
        let (state, cv) = &*self.shared;
        let mut st = locked(state);
        while st.asked || st.running {
            st = cv.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// The round that ended, once.
    fn take_ended(&self) -> Option<(i32, i32)> {
        locked(&self.shared.0).ended.take()
    }

    /// Each round's time so far.
    fn round_times(&self) -> Vec<Duration> {
        locked(&self.shared.0).times.clone()
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let (state, cv) = &*self.shared;
        locked(state).stop = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

thread_local! {
    /// Pages in the log after this thread's last commit (SQLite's WAL hook tells).
    static WAL_PAGES: std::cell::Cell<i32> = const { std::cell::Cell::new(0) };
}

/// SQLite's WAL hook (`sqlite3_wal_hook`): called on the committing thread after each commit
/// with the pages in the log. Cannot panic.
unsafe extern "C" fn note_wal_pages(
    _: *mut std::ffi::c_void,
    _: *mut rusqlite::ffi::sqlite3,
    _: *const std::ffi::c_char,
    pages: std::ffi::c_int,
) -> std::ffi::c_int {
    WAL_PAGES.with(|p| p.set(pages));
    rusqlite::ffi::SQLITE_OK
}

/// The least length of the log file (`-wal`) that the end of a store's sweep empties. Emptying
/// holds every writer out while the file system frees the file (measured 1.6 ms for 4 MiB, 13 ms
/// for 40 MiB, the most a sweep lets it grow, on a quiet machine): worth it once after a sweep
/// that grew the file to tens of megabytes, which it would otherwise keep for as long as Prosody
/// stays connected, and not for a sweep that deleted little or nothing.
const TRUNCATE_FROM: u64 = 4 << 20;

/// The length of `path`'s log file (0 when there is none).
fn log_file_len(path: &str) -> u64 {
    std::fs::metadata(format!("{path}-wal")).map(|m| m.len()).unwrap_or(0)
}

/// How long the TRUNCATE checkpoint at the end of a sweep waits for another connection's reads
/// or writes to end before it leaves the log file as it is ([`ProsodySql::shrink_log`]).
const TRUNCATE_BUSY: Duration = Duration::from_millis(2);

/// The bytes of the log file the first round of [`ProsodySql::shrink_log`] frees; each
/// round's hold then halves the next round's slice (held over [`SHRINK_AIM`]) or doubles it
/// (held under half of it), within [`SHRINK_MIN`]..[`SHRINK_MAX`]. Not below 1 MiB (0.4-1 ms
/// to free here): on a loaded machine a round's hold is mostly its sync and the wait for a CPU,
/// which a smaller slice does not shorten (slices of 128 KiB took 125 rounds for 40 MB at load
/// 17, and under perf left 9 MB when the budget ran out).
const SHRINK_FIRST: u64 = 2 << 20;
const SHRINK_MIN: u64 = 1 << 20;
const SHRINK_MAX: u64 = 8 << 20;

/// What a round of [`ProsodySql::shrink_log`] aims to hold the write lock for.
const SHRINK_AIM: Duration = Duration::from_millis(2);

/// The longest [`ProsodySql::shrink_log`] goes on with one file, and how many rounds that do
/// not restart the log it tries: what is left waits for the end of the next sweep.
const SHRINK_BUDGET: Duration = Duration::from_secs(5);
const SHRINK_TRIES: u32 = 8;

/// A log file this short (the last round leaves the header and a frame) is emptied by SQLite's
/// own TRUNCATE checkpoint at the end of [`ProsodySql::shrink_log`]: it frees a page or so.
const SHRUNK: u64 = 64 << 10;

/// What [`ProsodySql::shrink_log`] did.
#[derive(Debug, Default)]
struct Shrunk {
    /// Each round: the bytes it freed, and how long it held the write lock.
    rounds: Vec<(u64, Duration)>,
    /// The file was emptied.
    emptied: bool,
}

/// How long a transaction of Prosody's loop waits at most for a step under way to end (a step
/// holds the database a few milliseconds; past this, SQLite's busy handler takes over).
const LOOP_WAIT: Duration = Duration::from_millis(50);

/// How long Prosody's loop must have been out of SQL before a step begins: the transactions
/// one stanza makes back to back (an archived message: one for each side) are not split by steps.
const LOOP_QUIET: Duration = Duration::from_micros(500);

/// Prosody's loop and a sweep's steps taking turns at one of Prosody's databases, in Prosody's
/// own process.
///
/// Between two steps a sweep outside Prosody leaves the database alone for as long as the last
/// step held it ([`PROSODY_MIN_GAP`]..[`PROSODY_MAX_GAP`]), so that a Prosody write that met a
/// step, asleep in SQLite's busy handler (1, 2, 5, 10 ... ms), gets the lock before the next
/// step: measured on a million rows, the biggest share of a sweep's time (9.7 of 25.7 s),
/// spent whether Prosody wrote or not. Inside Prosody, mod_xmpp_hosting_retention wraps the SQL
/// engine's `transaction` so that Prosody's loop says when it runs one on the database
/// ([`LoopGate::enter`], [`LoopGate::leave`]): a step begins only while the loop is out of SQL
/// (and has been for [`LOOP_QUIET`]), and a transaction that begins during a step waits on a
/// condition variable for that step's commit (at most [`LOOP_WAIT`]) instead of the busy
/// handler's coarse sleeps. An idle Prosody costs the sweep nothing, and a Prosody transaction
/// waits at most for the one step under way. It also keeps a step's commit from falling inside
/// a Prosody transaction that read before it writes (its write would fail at once with
/// SQLITE_BUSY_SNAPSHOT, which no busy handler retries).
///
/// Only Prosody's own process knows its loop: another process sweeping the same file (the
/// command line) finds no gate and keeps the gap.
#[derive(Debug, Default)]
pub struct LoopGate {
    state: Mutex<GateState>,
    turn: Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    /// Transactions of Prosody's loop under way (nested ones count).
    in_sql: u32,
    /// When Prosody's loop last left one.
    left: Option<Instant>,
    /// A step holds, or is taking, the database's write lock.
    stepping: bool,
    /// Who waits on `turn`: Prosody's loop for a step's end, a sweep for the loop's.
    loop_waiting: bool,
    sweep_waiting: bool,
}

/// The housekeeping checkpoint's connections to Prosody's databases, by path, with the file
/// (device, inode) each was opened on.
static CHECKPOINT_CONNECTIONS: Lazy<Mutex<HashMap<String, (FileId, Connection)>>> = Lazy::new(Mutex::default);

/// A file's device and inode.
type FileId = (u64, u64);

/// The gates of this process, by database file (as [`gate_key`] names it).
static GATES: Lazy<Mutex<HashMap<PathBuf, Arc<LoopGate>>>> = Lazy::new(Mutex::default);

/// A database file's name in [`GATES`]: its canonical path, so the module's path and the one
/// registered for the store meet however each was written.
fn gate_key(path: &str) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| PathBuf::from(path))
}

/// The gate of Prosody's database `path` in this process, made when first asked for: the Prosody
/// module asks for it when it wraps the SQL engine's transactions (see [`LoopGate`]).
pub fn loop_gate(path: &str) -> Arc<LoopGate> {
    locked(&GATES).entry(gate_key(path)).or_default().clone()
}

impl LoopGate {
    /// The `wal_autocheckpoint` Prosody's connections to the gate's database are given
    /// ([`PROSODY_AUTOCHECKPOINT`]): the module sets it where it sets their busy timeout.
    pub fn prosody_autocheckpoint(&self) -> i32 {
        PROSODY_AUTOCHECKPOINT
    }

    /// Prosody's loop begins a transaction on the database: it waits (at most [`LOOP_WAIT`])
    /// for a step under way to commit, and no step begins until [`LoopGate::leave`]. Returns how
    /// long it waited.
    pub fn enter(&self) -> Duration {
        let mut st = locked(&self.state);
        let started = Instant::now();
        while st.stepping {
            let Some(left) = LOOP_WAIT.checked_sub(started.elapsed()).filter(|d| !d.is_zero()) else { break };
            st.loop_waiting = true;
            st = self.turn.wait_timeout(st, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        st.loop_waiting = false;
        st.in_sql += 1;
        started.elapsed()
    }

    /// Prosody's loop ended the transaction [`LoopGate::enter`] began (committed, rolled back
    /// or failed).
    pub fn leave(&self) {
        let mut st = locked(&self.state);
        st.in_sql = st.in_sql.saturating_sub(1);
        st.left = Some(Instant::now());
        if st.in_sql == 0 && st.sweep_waiting {
            self.turn.notify_all();
        }
    }

    /// A step is about to take the write lock: waits while Prosody's loop is in a transaction
    /// or left one less than [`LOOP_QUIET`] ago (at most `max`: a loop that never leaves does
    /// not stop the sweep), then marks the step under way until [`LoopGate::end_step`].
    /// Returns how long it waited.
    fn begin_step(&self, max: Duration) -> Duration {
        let started = Instant::now();
        let mut st = locked(&self.state);
        loop {
            let wait = if st.in_sql > 0 {
                Some(max)
            } else {
                st.left.and_then(|t| LOOP_QUIET.checked_sub(t.elapsed())).filter(|d| !d.is_zero())
            };
            let Some(wait) = wait else { break };
            let Some(left) = max.checked_sub(started.elapsed()).filter(|d| !d.is_zero()) else { break };
            st.sweep_waiting = true;
            st = self.turn.wait_timeout(st, wait.min(left)).unwrap_or_else(|p| p.into_inner()).0;
        }
        st.sweep_waiting = false;
        st.stepping = true;
        started.elapsed()
    }

    /// The step committed (or failed): Prosody's loop may go on.
    fn end_step(&self) {
        let mut st = locked(&self.state);
        st.stepping = false;
        if st.loop_waiting {
            self.turn.notify_all();
        }
    }
}

/// A step under way at a gate, ended however the step ends.
struct Turn<'a>(&'a LoopGate);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0.end_step();
    }
}

/// The cursor: the server host being swept, and the user (or room) whose rows the last step
/// reached; their rows left older than the cutoff come first in the next step. (A cursor of
/// the earlier `sort_id` form reads as a user name: at worst a few users are left to the next
/// sweep, never a row newer than the cutoff deleted.)
fn parse_cursor(cursor: Option<&str>) -> Option<(&str, &str)> {
    cursor?.split_once('\t')
}

impl ProsodySql {
    pub(crate) fn new(stores: Vec<ArchiveStore>, kind: Kind) -> Self {
        ProsodySql {
            stores,
            conns: Vec::new(),
            kind,
            last_work: None,
            last_commit: None,
            last_pages: 0,
            profile: Profile::from_env(),
            trace: std::env::var_os("XH_RETENTION_TRACE").map(|p| (PathBuf::from(p), Vec::new())),
        }
    }

    fn db(&mut self, path: &str, for_steps: bool) -> Result<&mut Db> {
        let i = match self.conns.iter().position(|d| d.path == path) {
            Some(i) => i,
            None => {
                if !Path::new(path).exists() {
                    return Err(Error::NotFound { what: "Prosody's SQLite database", key: path.to_string() });
                }
                // Never created here: a missing file is a wrong path, not an empty archive.
                let c = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                c.busy_timeout(PROSODY_BUSY)?;
                self.conns.push(Db {
                    path: path.to_string(),
                    conn: c,
                    ready: false,
                    wal: false,
                    users: None,
                    checked: false,
                    gate_key: gate_key(path),
                    checkpointer: None,
                    log: 0,
                    copied: 0,
                    most: 0,
                    restarts_alone: 0,
                    restarts_by_steps: 0,
                    shrunk: Vec::new(),
                });
                self.conns.len() - 1
            }
        };
        let db = &mut self.conns[i];
        if for_steps && !db.ready {
            db.wal = Self::prepare_for_steps(&db.conn)?;
            if db.wal {
                // Without it (a thread that cannot start), the steps checkpoint themselves.
                db.checkpointer = Checkpointer::start(path).ok();
            }
            db.ready = true;
        }
        Ok(db)
    }

    /// Makes Prosody's database ready for a sweep's steps.
    ///
    /// - WAL mode, which stays with the file (Prosody 13's own `sqlite_tune = "normal"` sets it
    ///   too). Safe while Prosody runs: SQLite switches only while no connection holds a lock
    ///   (the busy timeout waits for one), and Prosody's connection, in the same process and
    ///   library, follows at its next transaction. Prosody's own commits keep its synchronous
    ///   setting (FULL unless configured), one log sync each instead of the journal's three;
    ///   its reads no longer wait for a step at all. The log and its index (`-wal`, `-shm`)
    ///   live beside the database: a backup must copy them too, or use SQLite's backup.
    /// - `synchronous = NORMAL` on this connection only: a step's commit is not synced; a
    ///   power cut may undo the last steps' deletions (the next sweep deletes those rows
    ///   again), never corrupt the file; checkpoints still sync.
    /// - no automatic checkpoint on this connection: steps checkpoint after committing, outside
    ///   the lock ([`CHECKPOINT_PAGES`]).
    ///
    /// A database SQLite cannot switch (locked past the busy timeout; a file system without
    /// shared memory) is swept in its own mode, slower, and switching is tried again next run.
    /// Returns whether the database is in WAL mode.
    fn prepare_for_steps(c: &Connection) -> Result<bool> {
        let mode: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        let mode = if mode.eq_ignore_ascii_case("wal") {
            mode
        } else {
            c.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0)).unwrap_or(mode)
        };
        if mode.eq_ignore_ascii_case("wal") {
            c.pragma_update(None, "synchronous", "NORMAL")?;
            c.pragma_update(None, "wal_autocheckpoint", 0)?;
            // SAFETY: the handle is this open connection's; the hook is a plain function that
            // only stores an integer, and is replaced when `wal_autocheckpoint` is set again.
            unsafe {
                rusqlite::ffi::sqlite3_wal_hook(c.handle(), Some(note_wal_pages), std::ptr::null_mut());
            }
        }
        // A 4 MB cache: the pages a step reads are few (a user's index entries, the rows' table
        // pages), and a larger one slowed the sweep. Measured on a million rows (release build,
        // alternating runs on fresh copies of the same data, 2 December 2026): 16 MB, as before,
        // 41,322-47,893 rows/s; 8 MB 47,755-49,116; 4 MB 51,335-59,737; 2 MB 52,798-59,312;
        // 1 MB 49,164-56,433. With 16 MB the steps' thread spent twice as long checkpointing
        // (5.2-5.5 s against 2.4-2.8 s: its copies finished later, so the steps waited at the
        // log's bound more often), while its deletes and commits took about as long. (A 64 MB
        // cache and a 1 GB mmap_size had measured no faster before.)
        c.pragma_update(None, "cache_size", -4_000)?;
        Ok(mode.eq_ignore_ascii_case("wal"))
    }

    /// Keeps the log short after a step's commit that added `step_pages` to it (or, `end`, at
    /// the end of a store: all of it copied, so Prosody finds it short). The [`Checkpointer`]
    /// copies it while the steps go on ([`BACKGROUND_PAGES`], [`CATCH_UP_PAGES`]); the sweep's
    /// thread copies the rest of a round, and all of it when the next step could take the log
    /// past [`CHECKPOINT_PAGES`] or there is no checkpointer. PASSIVE: Prosody's reads and
    /// writes go on meanwhile. Returns how many checkpoints this thread ran.
    /// `log`: the log's pages after this step's commit (the WAL hook's count), `None` when
    /// the step committed nothing.
    ///
    /// When this thread copied the whole log (mid-sweep, not at a store's end), it starts the
    /// log afresh at once with a commit of its own ([`ProsodySql::restart_log`]): the commit
    /// that restarts a log syncs the log file's new header to disk, and the next step's commit
    /// would otherwise do it while holding the write lock with its rows (measured, load 9: 80
    /// such syncs in a million-row sweep, p50 7.3 ms, max 76 ms). Returns how many checkpoints
    /// this thread ran, and how long the restart held the lock, if it ran.
    fn keep_log_short(db: &mut Db, log: Option<i32>, step_pages: i32, end: bool) -> Result<(u64, Option<Duration>)> {
        let log = log.unwrap_or(db.log);
        if log < db.log {
            // The commit started the log afresh: none of it is in the file yet.
            db.copied = 0;
        }
        db.log = log;
        db.most = db.most.max(log);
        if log <= 0 {
            return Ok((0, None));
        }
        let ended = db.checkpointer.as_ref().and_then(Checkpointer::take_ended);
        if let Some((then, copied)) = ended {
            // A round of this log (not of one started afresh since).
            if then <= log {
                db.copied = db.copied.max(copied);
            }
        }
        let left = log - db.copied;
        let must = end || log + 2 * step_pages >= CHECKPOINT_PAGES;
        let ours = match &db.checkpointer {
            None => must,
            Some(_) if must => true,
            Some(ck) if ck.busy() => false,
            Some(_) if ended.is_some() && left <= CATCH_UP_PAGES => left > 0,
            Some(ck) => {
                if left >= BACKGROUND_PAGES || (ended.is_some() && left > CATCH_UP_PAGES) {
                    ck.ask();
                }
                false
            }
        };
        if !ours {
            return Ok((0, None));
        }
        if let Some(ck) = &db.checkpointer {
            ck.wait();
        }
        let (then, copied): (i32, i32) =
            db.conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get(1)?, r.get(2)?)))?;
        if then == log {
            db.copied = copied;
        }
        if let Some(ck) = &db.checkpointer {
            // The round waited for is counted in this one.
            ck.take_ended();
        }
        let mut restart = None;
        if !end && then > 0 && copied == then {
            // A restart that fails (Prosody's lock held past the busy timeout) leaves it to the
            // next commit, as SQLite would: not a reason to pause the sweep.
            if let Ok((restarted, held)) = Self::restart_log(db) {
                db.restarts_alone += u64::from(restarted);
                restart = Some(held);
            }
        }
        Ok((1, restart))
    }

    /// Starts the log afresh, when all of it is in the database and nobody reads it, with a
    /// commit that changes nothing: `PRAGMA user_version` written back as it is (page 1 of the
    /// database, byte for byte the same, one frame of the log). SQLite restarts a log only in
    /// a commit (the first writer to find it all copied begins again at its start, writes the
    /// new header and syncs it); this commit carries nothing else, so the sync is all it holds
    /// the lock for. Taken at the gate like a step. Returns whether the log was restarted (one
    /// page in it after the commit) and how long the write lock was held.
    fn restart_log(db: &mut Db) -> Result<(bool, Duration)> {
        let gate = locked(&GATES).get(&db.gate_key).cloned();
        let turn = gate.as_deref().map(|g| {
            g.begin_step(PROSODY_BUSY);
            Turn(g)
        });
        let started = Instant::now();
        let tx = rusqlite::Transaction::new_unchecked(&db.conn, rusqlite::TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        tx.execute_batch(&format!("PRAGMA user_version = {version}"))?;
        tx.commit()?;
        let held = started.elapsed();
        drop(turn);
        let log = WAL_PAGES.with(|p| p.get());
        let restarted = log == 1;
        if log < db.log || restarted {
            db.copied = 0;
        }
        db.log = log;
        Ok((restarted, held))
    }

    /// At the end of a store's sweep, empties the database's log file, a slice at a time.
    ///
    /// SQLite never shrinks a log file by itself: it starts the log again at its beginning
    /// once all of it is in the database, and the file keeps the greatest length it reached
    /// (about [`CHECKPOINT_PAGES`] pages, 40 MB, after a long sweep) for as long as a
    /// connection is open, Prosody's for weeks. Its TRUNCATE checkpoint empties the file in one
    /// go while it keeps every writer out, and the time that takes is the file system's freeing
    /// the file's blocks: measured with strace on a million-row sweep (load 9), the whole of
    /// that checkpoint's 36.7 ms hold was its `ftruncate`, nothing copied nor synced; on this
    /// machine's ext4 (mounted `discard`) a file's freed blocks are trimmed before the call
    /// returns, 10-23 ms for 40 MB even with its pages dropped from the cache first, 1.5-4 ms
    /// for 4 MB.
    ///
    /// So the file is cut a slice at a time, by SQLite itself: a commit that restarts the log
    /// cuts the file to the connection's `journal_size_limit` (never below what that commit
    /// wrote). Each round copies the log into the database (PASSIVE, no lock held), sets the
    /// limit a slice below the file's length and makes a commit that changes nothing
    /// ([`ProsodySql::restart_log`]), taken at the gate like a step; the slice follows the
    /// rounds' held time ([`SHRINK_AIM`]). Once one frame is left, the TRUNCATE checkpoint, with
    /// nothing to copy and a page to free, empties the file, waiting at most [`TRUNCATE_BUSY`]
    /// for another connection's reads. A round that does not restart the log (a reader still on
    /// it, a write of Prosody's between the copy and the commit) is tried again a few times; what
    /// is left past [`SHRINK_BUDGET`] or those tries stays for the end of the next sweep.
    /// Done once a sweep, not at the end of every part (a part of a long sweep is followed by
    /// the next a second later, which would grow the file again). Errors end it: the log is only
    /// long. The connection's limit is put back (none) before it returns.
    fn shrink_log(db: &mut Db) -> Shrunk {
        let mut out = Shrunk::default();
        // A running checkpoint makes a TRUNCATE fail at once.
        if let Some(ck) = &db.checkpointer {
            ck.wait();
            ck.take_ended();
        }
        let started = Instant::now();
        let mut slice = SHRINK_FIRST;
        let mut size = log_file_len(&db.path);
        let mut misses = 0;
        while size > SHRUNK && started.elapsed() < SHRINK_BUDGET && misses < SHRINK_TRIES {
            let copied = db
                .conn
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)));
            match copied {
                Ok((log, copied)) if copied >= log => {}
                // A reader keeps part of the log from the file: no commit would restart it.
                _ => {
                    misses += 1;
                    continue;
                }
            }
            let limit = size.saturating_sub(slice);
            if db.conn.pragma_update(None, "journal_size_limit", limit as i64).is_err() {
                break;
            }
            let Ok((restarted, held)) = Self::restart_log(db) else { break };
            let now = log_file_len(&db.path);
            out.rounds.push((size.saturating_sub(now), held));
            if !restarted {
                misses += 1;
                continue;
            }
            size = now;
            slice = if held > SHRINK_AIM {
                (slice / 2).max(SHRINK_MIN)
            } else if held < SHRINK_AIM / 2 {
                (slice * 2).min(SHRINK_MAX)
            } else {
                slice
            };
        }
        let _ = db.conn.pragma_update(None, "journal_size_limit", -1);
        if size <= SHRUNK {
            let _ = db.conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
            let gate = locked(&GATES).get(&db.gate_key).cloned();
            let turn = gate.as_deref().map(|g| {
                g.begin_step(PROSODY_BUSY);
                Turn(g)
            });
            let started = Instant::now();
            let _ = db.conn.busy_timeout(TRUNCATE_BUSY);
            // (busy, log, copied): 0 when the file was emptied, 1 when another connection was busy.
            let done = db.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0));
            let _ = db.conn.busy_timeout(PROSODY_BUSY);
            let held = started.elapsed();
            drop(turn);
            out.rounds.push((size.saturating_sub(log_file_len(&db.path)), held));
            out.emptied = matches!(done, Ok(0));
        }
        db.log = 0;
        db.copied = 0;
        db.shrunk.extend(out.rounds.iter().copied());
        out
    }

    /// The least time between the last step's commit and the next step's lock.
    fn gap(&self) -> Duration {
        self.last_work.unwrap_or_default().clamp(PROSODY_MIN_GAP, PROSODY_MAX_GAP)
    }

    /// The users' own cutoffs as a temporary table of our connection (archives only), so one
    /// statement applies each user's cutoff. Returns whether any user has one.
    fn load_user_cutoffs(c: &Connection, users: &[(String, Timestamp)]) -> Result<bool> {
        c.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS xh_user_cutoffs (user TEXT PRIMARY KEY, cutoff INTEGER NOT NULL);
             DELETE FROM temp.xh_user_cutoffs;",
        )?;
        let mut insert = c.prepare_cached("INSERT INTO temp.xh_user_cutoffs (user, cutoff) VALUES (?1, ?2)")?;
        for (u, cutoff) in users {
            insert.execute(params![u, cutoff])?;
        }
        Ok(!users.is_empty())
    }

    /// The condition "stored strictly before the cutoff" (`?c`, or the user's own when
    /// shorter), on a row of `prosodyarchive`.
    fn older(with_users: bool, c: &str) -> String {
        if with_users {
            format!(
                "\"when\" < coalesce((SELECT u.cutoff FROM temp.xh_user_cutoffs u WHERE u.user = prosodyarchive.user), \
                 {c})"
            )
        } else {
            format!("\"when\" < {c}")
        }
    }

    /// A step's rows: at most `?5` rows of host `?1`, users from `?2` on, store `?3`, older than
    /// `?4`, by user in the order of Prosody's (host, user, store, when) index, which holds all
    /// it asks for (no table row is read, nothing sorted). Which of a user's old rows come first
    /// does not matter: the next step starts again at the last user, whose rows deleted are gone.
    fn select_sql(with_users: bool) -> String {
        format!(
            "SELECT user, sort_id FROM prosodyarchive INDEXED BY prosodyarchive_when
             WHERE host = ?1 AND user >= ?2 AND store = ?3 AND {}
             ORDER BY host, user LIMIT ?5",
            Self::older(with_users, "?4")
        )
    }

    /// Deletes the rows picked (`?1`, a JSON array of `sort_id`s) that are still of host `?2`,
    /// store `?3` and older than `?4`: rows are picked before the write lock is taken, and the
    /// DELETE asks again, so what it deletes is decided under the lock. The unary `+` keeps
    /// SQLite on the integer primary key.
    fn delete_sql(with_users: bool) -> String {
        format!(
            "DELETE FROM prosodyarchive WHERE sort_id IN (SELECT value FROM json_each(?1))
             AND +host = ?2 AND +store = ?3 AND +{}",
            Self::older(with_users, "?4")
        )
    }

    fn has_table(c: &Connection) -> Result<bool> {
        Ok(c.query_row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'prosodyarchive'", [], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Whether Prosody's (host, user, store, when) index is there (mod_storage_sql makes it).
    fn has_when_index(c: &Connection) -> Result<bool> {
        Ok(c.query_row("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'prosodyarchive_when'", [], |_| {
            Ok(())
        })
        .optional()?
        .is_some())
    }

    fn users(&self, h: &Hosting, domain: &str) -> Result<Vec<(String, Timestamp)>> {
        if self.kind == Kind::Archive {
            h.user_archive_cutoffs(domain)
        } else {
            Ok(Vec::new())
        }
    }

    fn location(s: &ArchiveStore) -> Result<String> {
        s.location.clone().ok_or_else(|| {
            Error::InvalidArgument(format!("the archive store of {} has no database file registered", s.server_host))
        })
    }
}

/// A step's aim in Prosody's database: half the engine's [`STEP_TARGET`](super::sweep::STEP_TARGET).
/// A step's hold is a DELETE and a commit whose time grows with its rows, and the few that meet
/// the disk's other work (a checkpoint round beside it) take two to four times their usual time.
/// benches/retention_prosody.py, 1,000,000 rows, back to back on one quiet machine: aimed at 4 ms,
/// 19 to 78 of a sweep's ~1,900 steps held Prosody's database over 5 ms (5 runs), held p99
/// 5.2-6.1 ms; aimed at 2 ms, 0 and 2 (2 runs), held p99 2.9 ms; the rows a second unchanged
/// within the runs' spread (2.5 ms against 4 ms: 63-70k and 64-67k; 2 ms against 2.5 ms: 57-58k
/// both). ejabberd's steps keep the engine's aim: each is a round trip through ejabberd's SQL
/// connection, which smaller batches multiply (aimed at 2 ms its sweep fell to 0.67x the rows a
/// second).
const PROSODY_STEP_TARGET: Duration = Duration::from_millis(2);

impl Target for ProsodySql {
    fn last_work(&self) -> Option<Duration> {
        self.last_work
    }

    fn step_target(&self) -> Duration {
        PROSODY_STEP_TARGET
    }

    fn count(&mut self, h: &Hosting, domain: &str, cutoff: Timestamp) -> Result<(i64, i64)> {
        let users = self.users(h, domain)?;
        let mut total = 0;
        for s in self.stores.clone() {
            let db = self.db(&Self::location(&s)?, false)?;
            let c = &db.conn;
            if !Self::has_table(c)? {
                continue;
            }
            let with_users = Self::load_user_cutoffs(c, &users)?;
            db.users = Some(users.clone());
            let n: i64 = c.query_row(
                &format!(
                    "SELECT count(*) FROM prosodyarchive WHERE host = ?1 AND store = ?2 AND {}",
                    Self::older(with_users, "?3")
                ),
                params![s.server_host, s.store, cutoff],
                |r| r.get(0),
            )?;
            total += n;
        }
        Ok((total, 0))
    }

    fn step(
        &mut self,
        h: &Hosting,
        domain: &str,
        cutoff: Timestamp,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<StepDone> {
        if let Some(p) = &mut self.profile {
            p.step_begins();
        }
        let profiling = self.profile.is_some();
        let tracing = self.trace.is_some();
        // Phases of this step, for the profile (the names below), those the step went through.
        let mut phases: [Option<Duration>; 7] = [None; 7];
        let mut mark = Instant::now();
        let mut lap = |i: usize| {
            let now = Instant::now();
            *phases[i].get_or_insert(Duration::ZERO) += now - mark;
            mark = now;
        };
        let users = self.users(h, domain)?;
        lap(0);
        let at = parse_cursor(cursor);
        // The store the cursor is in, or the first after it (a store unregistered meanwhile).
        let Some(i) = self.stores.iter().position(|s| at.is_none_or(|(host, _)| s.server_host.as_str() >= host)) else {
            return Ok(StepDone::default());
        };
        let s = self.stores[i].clone();
        let from_user = at.filter(|(host, _)| *host == s.server_host).map_or("", |(_, user)| user).to_string();
        let next_store = self.stores.get(i + 1).map(|n| format!("{}\t", n.server_host));
        let gap = self.gap();
        let (last_commit, last_pages) = (self.last_commit, self.last_pages);
        let db = self.db(&Self::location(&s)?, true)?;
        let c = &db.conn;
        let mut done = StepDone::default();
        if !db.checked {
            if !Self::has_table(c)? {
                done.next = next_store;
                return Ok(done);
            }
            if !Self::has_when_index(c)? {
                return Err(Error::Corrupt(format!(
                    "Prosody's archive table in {} has no prosodyarchive_when index (mod_storage_sql creates it): \
                     the sweep would read the whole table a step",
                    Self::location(&s)?
                )));
            }
            db.checked = true;
        }
        let with_users = !users.is_empty();
        if db.users.as_ref() != Some(&users) {
            Self::load_user_cutoffs(c, &users)?;
            db.users = Some(users);
        }
        lap(1);
        // Picked outside the write lock: a read, which in WAL mode waits for nobody.
        let picked: Vec<(String, i64)> = c
            .prepare_cached(&Self::select_sql(with_users))?
            .query_map(params![s.server_host, from_user, s.store, cutoff, limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        lap(2);
        let mut held = None;
        let mut pages = 0;
        let mut checkpoints = 0;
        let mut beside = false;
        // Holds of the write lock besides the step's own: a log restarted by a commit of its
        // own, the rounds emptying the log file at a store's end (the profile names them).
        let mut other_holds: Vec<(&'static str, Duration)> = Vec::new();
        let mut shrunk = None;
        let mut restarted = false;
        let mut held_at = None;
        if !picked.is_empty() {
            let ids = serde_json::to_string(&picked.iter().map(|(_, id)| id).collect::<Vec<_>>())
                .expect("integers serialise");
            // Prosody's turn first: in Prosody's process, while its loop is in a transaction
            // (the gate); from another process, a gap its busy handler's retries fall in.
            let gate = locked(&GATES).get(&db.gate_key).cloned();
            let turn = match &gate {
                Some(g) => {
                    g.begin_step(PROSODY_BUSY);
                    Some(Turn(g))
                }
                None => {
                    if let Some(wait) = last_commit.and_then(|t| gap.checked_sub(t.elapsed())) {
                        std::thread::sleep(wait);
                    }
                    None
                }
            };
            lap(3);
            // Whether a checkpoint round runs beside this step (the profile: do steps slow down?).
            beside = profiling && db.checkpointer.as_ref().is_some_and(Checkpointer::busy);
            let before = WAL_PAGES.with(|p| p.get());
            if tracing {
                held_at = Some(std::time::SystemTime::now());
            }
            let started = Instant::now();
            // A DEFERRED transaction whose DELETE takes the write lock at once, waiting at most
            // PROSODY_BUSY for Prosody's; the lock ends with the commit.
            let tx = c.unchecked_transaction()?;
            let n = tx.prepare_cached(&Self::delete_sql(with_users))?.execute(params![
                ids,
                s.server_host,
                s.store,
                cutoff
            ])?;
            lap(4);
            tx.commit()?;
            held = Some(started.elapsed());
            drop(turn);
            lap(5);
            done.deleted = n as i64;
            let log = WAL_PAGES.with(|p| p.get());
            // A log started afresh by this commit holds only its pages.
            pages = if log >= before { log - before } else { log };
            restarted = db.wal && log < before;
            db.restarts_by_steps += u64::from(restarted);
            let (n, restart) = Self::keep_log_short(db, Some(log), pages.max(last_pages), false)?;
            checkpoints += n;
            other_holds.extend(restart.map(|t| ("held restarting the log (no rows)", t)));
            lap(6);
        }
        done.next = if picked.len() >= limit {
            Some(format!("{}\t{}", s.server_host, picked.last().expect("not empty").0))
        } else {
            // The end of this store: the log copied now, so Prosody finds it short, and its
            // file emptied.
            checkpoints += Self::keep_log_short(db, None, 0, true)?.0;
            lap(6);
            if db.wal && log_file_len(&db.path) > TRUNCATE_FROM {
                let s = Self::shrink_log(db);
                other_holds.extend(s.rounds.iter().map(|(_, t)| ("log file emptying rounds (held)", *t)));
                shrunk = Some(s);
            }
            next_store
        };
        let step_held = held;
        if let Some(t) = other_holds.iter().map(|(_, t)| *t).max() {
            // Writers were kept out for those too: the step's hold is the longest.
            held = Some(held.map_or(t, |h| h.max(t)));
        }
        if held.is_some() {
            self.last_work = held;
            self.last_commit = Some(Instant::now());
            self.last_pages = pages;
        }
        if let Some(p) = &mut self.profile {
            p.count("steps", 1);
            p.count("rows", done.deleted);
            p.count("log pages", pages as i64);
            p.count("checkpoints on the steps' thread", checkpoints as i64);
            const NAMES: [&str; 7] = [
                "users' cutoffs",
                "checks",
                "pick",
                "gate or gap",
                "delete",
                "commit",
                "checkpoint on the steps' thread",
            ];
            for (name, took) in NAMES.into_iter().zip(phases) {
                if let Some(took) = took {
                    p.time(name, took);
                }
            }
            if let Some(s) = &shrunk {
                p.count("log files emptied", i64::from(s.emptied));
                p.count("log file bytes freed", s.rounds.iter().map(|(b, _)| *b as i64).sum());
            }
            for (name, took) in other_holds {
                p.time(name, took);
            }
            if let (Some(held), Some((_, lines))) = (step_held, &mut self.trace) {
                // When the hold began (unix seconds), batch, rows, log pages, then µs: held,
                // delete, commit; a checkpoint round beside it; the commit restarted the log.
                let us = |i: usize| phases[i].unwrap_or_default().as_micros();
                let at = held_at.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).unwrap_or_default();
                lines.push(format!(
                    "{:.6} {limit} {} {pages} {} {} {} {} {}\n",
                    at.as_secs_f64(),
                    done.deleted,
                    held.as_micros(),
                    us(4),
                    us(5),
                    u8::from(beside),
                    u8::from(restarted)
                ));
            }
            if let Some(held) = step_held {
                p.time("held (delete and commit)", held);
                p.time(if beside { "held beside a checkpoint round" } else { "held alone" }, held);
                if restarted {
                    p.time("held, the commit restarting the log", held);
                }
            }
            p.step_ends();
        }
        Ok(done)
    }
}

/// A cutoff as the servers' storage APIs take it (`None`: only users' own retention applies).
pub fn cutoff_for_server(cutoff: Timestamp) -> Option<Timestamp> {
    (cutoff != USERS_ONLY).then_some(cutoff)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::retention::{SweepOptions, SweepState};
    use crate::{Clock, ManualClock};

    /// A database with Prosody's archive table and indexes (mod_storage_sql's schema).
    pub(crate) fn prosody_db(path: &Path) -> Connection {
        let c = Connection::open(path).unwrap();
        c.execute_batch(
            r#"CREATE TABLE "prosodyarchive" ("sort_id" INTEGER PRIMARY KEY AUTOINCREMENT, "host" TEXT NOT NULL,
                 "user" TEXT NOT NULL, "store" TEXT NOT NULL, "key" TEXT NOT NULL, "when" INTEGER NOT NULL,
                 "with" TEXT NOT NULL, "type" TEXT NOT NULL, "value" MEDIUMTEXT NOT NULL);
               CREATE UNIQUE INDEX "prosodyarchive_index" ON "prosodyarchive" ("host", "user", "store", "key");
               CREATE INDEX "prosodyarchive_with_when" ON "prosodyarchive" ("host", "user", "store", "with", "when");
               CREATE INDEX "prosodyarchive_when" ON "prosodyarchive" ("host", "user", "store", "when");
               CREATE INDEX "prosodyarchive_sort" ON "prosodyarchive" ("host", "user", "store", "sort_id");"#,
        )
        .unwrap();
        c
    }

    fn add(c: &Connection, host: &str, user: &str, store: &str, when: i64) {
        c.execute(
            r#"INSERT INTO prosodyarchive (host, user, store, key, "when", "with", type, value)
               VALUES (?1, ?2, ?3, lower(hex(randomblob(8))), ?4, 'bob@example.org', 'xml', '<message/>')"#,
            params![host, user, store, when],
        )
        .unwrap();
    }

    fn rows(c: &Connection) -> Vec<(String, String, String, i64)> {
        let mut st = c.prepare(r#"SELECT host, user, store, "when" FROM prosodyarchive ORDER BY sort_id"#).unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<rusqlite::Result<Vec<_>>>()
            .unwrap()
    }

    #[test]
    fn the_housekeeping_checkpoint_copies_prosodys_log_so_prosody_never_has_to() {
        let (h, clock, _dir, path, c) = setup("checkpoint");
        // Prosody's connection in WAL mode, its own automatic checkpoint out of reach (as the
        // module sets it), with writes of its own in the log.
        let mode: String = c.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        c.pragma_update(None, "wal_autocheckpoint", 12_000).unwrap();
        for i in 0..200 {
            add(&c, "example.org", &format!("u{}", i % 7), "archive", 10 + i);
        }
        // Prosody's rows are in the log only: the database file holds the empty schema.
        let file_len = || std::fs::metadata(&path).unwrap().len();
        let before = file_len();
        let pass = crate::housekeeping::Housekeeping::new(h.clone(), crate::housekeeping::Schedule::default());
        // Only a Prosody's pass does it (the CLI's or ejabberd's, on a shared store, leave
        // Prosody's files alone).
        let report = pass.run(&[], &[]);
        assert_eq!(report.checkpoint.expect("the checkpoint step ran").server_copied, 0);
        assert_eq!(file_len(), before);
        let pass = crate::housekeeping::Housekeeping::new(h.clone(), crate::housekeeping::Schedule::default());
        pass.checkpoint_prosody_databases();
        let report = pass.run(&[], &[]);
        let copied = report.checkpoint.expect("the checkpoint step ran").server_copied;
        assert!(copied > 0, "{report:?}");
        assert!(file_len() > before, "the log's pages went into the file");
        // Prosody's next checkpoint finds every page of the log already in the file.
        let (log, done): (i64, i64) =
            c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get(1)?, r.get(2)?))).unwrap();
        assert_eq!((log, done), (copied, copied));
        // A file that is gone is skipped, not an error.
        h.register_archive_store(
            "example.org",
            Kind::Archive,
            "gone.example.org",
            PROSODY_SQL,
            Some("/nonexistent/x.sqlite"),
            "archive",
        )
        .unwrap();
        assert_eq!(h.checkpoint_prosody_databases().unwrap().0, copied);
        // A file that cannot be opened is told, and does not stop the pass's checkpoint step:
        // said once in the log, not every few seconds.
        let dir = std::path::Path::new(&path).parent().unwrap().join("a-directory.sqlite");
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.to_str().unwrap().to_string();
        h.register_archive_store("example.org", Kind::Muc, "bad.example.org", PROSODY_SQL, Some(&bad), "muc_log")
            .unwrap();
        let (_, failed) = h.checkpoint_prosody_databases().unwrap();
        assert_eq!(failed.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(), [bad.as_str()]);
        let next_checkpoint = || {
            clock.advance(crate::housekeeping::Schedule::default().checkpoint as i64);
            pass.run(&[], &[])
        };
        let first = next_checkpoint();
        let said = |r: &crate::housekeeping::HousekeepingReport| {
            r.log.iter().filter(|l| l.text.contains("a-directory.sqlite")).count()
        };
        assert_eq!(said(&first), 1, "{first:?}");
        assert_eq!(first.checkpoint.map(|c| c.server_copied), Some(copied), "the good file is still done");
        assert_eq!(said(&next_checkpoint()), 0);
    }

    /// Waits until `cond` holds (the other thread got there), failing after 60 s.
    fn until(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !cond() {
            assert!(Instant::now() < deadline, "never happened: {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn in_prosodys_process_a_step_waits_for_the_loops_transaction_and_that_transaction_never_fails() {
        let (h, clock, _dir, p, c) = setup("gate");
        let now = clock.now();
        for i in 0..50 {
            add(&c, "example.org", "alice", "archive", now - 200_000 - i);
        }
        h.set_retention("example.org", "archive", "1d").unwrap();
        let mode: String = c.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        // Prosody's loop begins a transaction that reads, then writes (as mod_storage_sql's
        // do): a step's commit between the two would make its write fail at once
        // (SQLITE_BUSY_SNAPSHOT: no busy handler retries it) and the message go unarchived.
        let gate = loop_gate(&p);
        gate.enter();
        c.execute_batch("BEGIN").unwrap();
        let before: i64 = c.query_row("SELECT count(*) FROM prosodyarchive", [], |r| r.get(0)).unwrap();
        let sweep = std::thread::spawn({
            let h = h.clone();
            move || h.retention_sweep("example.org", Kind::Archive, &[], &SweepOptions::default())
        });
        // The sweep comes to the gate and waits there, its rows picked.
        until("the sweep waits at the gate", || locked(&gate.state).sweep_waiting);
        add(&c, "example.org", "alice", "archive", now - 10);
        c.execute_batch("COMMIT").unwrap();
        gate.leave();
        let rec = sweep.join().unwrap().unwrap();
        assert_eq!((before, rec.state, rec.deleted), (50, SweepState::Done, 50));
        assert_eq!(rows(&c).len(), 1, "Prosody's message is archived");
        // Prosody's loop, beginning a transaction during a step, waits for that step's commit.
        gate.begin_step(Duration::ZERO);
        let entered = std::thread::spawn({
            let gate = gate.clone();
            move || {
                gate.enter();
                gate.leave();
            }
        });
        until("the loop waits for the step", || locked(&gate.state).loop_waiting);
        gate.end_step();
        entered.join().unwrap();
        assert_eq!(locked(&gate.state).in_sql, 0);
    }

    #[test]
    fn a_long_sweep_copies_the_log_beside_its_steps_and_keeps_it_short() {
        let (h, clock, _dir, p, c) = setup("checkpointer");
        let now = clock.now();
        // Rows of 40 users in turn, as Prosody archives them: deleted a user at a time, each
        // step writes a page or more a row, so the log passes BACKGROUND_PAGES several times.
        c.execute_batch("BEGIN").unwrap();
        for i in 0..12_000 {
            add(&c, "example.org", &format!("user{}", i % 40), "archive", now - 200_000 - i);
        }
        c.execute_batch("COMMIT").unwrap();
        h.set_retention("example.org", "archive", "1d").unwrap();
        let mut target = ProsodySql::new(h.archive_stores("example.org", Kind::Archive).unwrap(), Kind::Archive);
        let rec = h.sweep_with("example.org", Kind::Archive, &mut target, &SweepOptions::default()).unwrap();
        assert_eq!((rec.state, rec.deleted), (SweepState::Done, 12_000));
        let rounds = target.conns[0].checkpointer.as_ref().expect("a checkpointer in WAL mode").round_times();
        assert!(!rounds.is_empty(), "the checkpointer copied the log");
        // The log never passed CHECKPOINT_PAGES...
        let db = &target.conns[0];
        let most = db.most;
        assert!(most > BACKGROUND_PAGES && most <= CHECKPOINT_PAGES + 2_000, "{most}");
        // Each time the steps' thread copied the whole log, a commit of its own restarted it:
        // no step's commit synced a new log header while holding the lock with its rows.
        assert_eq!(db.restarts_by_steps, 0, "a step's commit restarted the log");
        assert!(db.restarts_alone > 0, "the log was restarted");
        // The file was emptied in slices, none freeing more than SHRINK_MAX while writers waited
        // (SQLite's TRUNCATE would free all of it in one hold).
        let freed: Vec<u64> = db.shrunk.iter().map(|(b, _)| *b).collect();
        assert!(freed.len() > 2, "{freed:?}");
        assert!(freed.iter().all(|b| *b <= SHRINK_MAX), "{freed:?}");
        assert!(freed.iter().sum::<u64>() > TRUNCATE_FROM, "{freed:?}");
        drop(target);
        let wal = std::fs::metadata(format!("{p}-wal")).map(|m| m.len()).unwrap_or(0);
        assert_eq!(wal, 0, "the log file emptied at the end");
        // ... and is all in the database: Prosody's next checkpoint finds nothing to copy.
        let (log, copied): (i64, i64) =
            c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get(1)?, r.get(2)?))).unwrap();
        assert_eq!(log, copied);
        assert!(rows(&c).is_empty());
    }

    #[test]
    fn a_sweep_ends_with_the_log_file_emptied_while_prosodys_connection_stays_open() {
        let (h, clock, _dir, p, c) = setup("truncate");
        let now = clock.now();
        // Prosody's connection in WAL mode and open throughout: SQLite removes the log file only
        // when the last connection to the database closes, so Prosody's would keep it as long
        // as the sweep let it grow.
        let mode: String = c.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        c.execute_batch("BEGIN").unwrap();
        for i in 0..6_000 {
            add(&c, "example.org", &format!("user{}", i % 30), "archive", now - 200_000 - i);
        }
        c.execute_batch("COMMIT").unwrap();
        c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).unwrap();
        let log_file = || std::fs::metadata(format!("{p}-wal")).map(|m| m.len()).unwrap();
        assert_eq!(log_file(), 0);
        h.set_retention("example.org", "archive", "1d").unwrap();
        // A part that stops mid-sweep (as a housekeeping pass's budget ends one): the next part
        // follows soon, the file is left for it...
        let part = h
            .retention_sweep(
                "example.org",
                Kind::Archive,
                &[],
                &SweepOptions { batch: 500, max_steps: Some(4), ..Default::default() },
            )
            .unwrap();
        assert_eq!(part.state, SweepState::Running);
        assert!(part.deleted > 0 && part.deleted < 6_000, "{part:?}");
        // ... Prosody writing meanwhile; the part that ends the sweep empties the file.
        add(&c, "example.org", "user1", "archive", now - 10);
        assert!(log_file() > 0);
        let rest = h.retention_sweep("example.org", Kind::Archive, &[], &SweepOptions::default()).unwrap();
        assert_eq!((rest.state, rest.deleted), (SweepState::Done, 6_000));
        assert_eq!(log_file(), 0, "emptied at the sweep's end");
        // Prosody's connection reads and writes on, its message kept.
        assert_eq!(rows(&c).len(), 1);
        add(&c, "example.org", "user2", "archive", now - 5);
        assert_eq!(rows(&c).len(), 2);
        // A sweep that finds nothing to delete leaves a small log file alone: emptying it would
        // hold Prosody's writers out for nothing.
        let small = log_file();
        assert!(small > 0 && small < TRUNCATE_FROM, "{small}");
        let idle = h.retention_sweep("example.org", Kind::Archive, &[], &SweepOptions::default()).unwrap();
        assert_eq!((idle.state, idle.deleted), (SweepState::Done, 0));
        assert!(log_file() > 0, "a small log file is not emptied");
    }

    struct Dir(std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn setup(name: &str) -> (Hosting, ManualClock, Dir, String, Connection) {
        let dir = std::env::temp_dir().join(format!("xh-prosody-archive-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("prosody.sqlite");
        let c = prosody_db(&path);
        let clock = ManualClock::new(1_000_000);
        let h = Hosting::open_in_memory().unwrap().with_clock(clock.clone());
        h.add_domain("example.org").unwrap();
        let p = path.to_str().unwrap().to_string();
        h.register_archive_store("example.org", Kind::Archive, "example.org", PROSODY_SQL, Some(&p), "archive")
            .unwrap();
        h.register_archive_store("example.org", Kind::Muc, "conference.example.org", PROSODY_SQL, Some(&p), "muc_log")
            .unwrap();
        (h, clock, Dir(dir), p, c)
    }

    #[test]
    fn only_the_domains_rows_of_the_kind_older_than_the_cutoff_go_in_steps() {
        let (h, clock, _dir, _p, c) = setup("kind");
        let now = clock.now();
        h.set_retention("example.org", "archive", "1d").unwrap();
        for i in 0..500 {
            // Old and new interleaved, other hosts and stores among them.
            add(&c, "example.org", "alice", "archive", now - 200_000 + i * 10);
            add(&c, "example.org", "alice", "archive", now - 100 - i);
            add(&c, "other.example", "alice", "archive", now - 900_000);
            add(&c, "conference.example.org", "room", "muc_log", now - 900_000);
            add(&c, "example.org", "alice", "roster_other", now - 900_000);
        }
        let dry = h
            .retention_sweep("example.org", Kind::Archive, &[], &SweepOptions { dry_run: true, ..Default::default() })
            .unwrap();
        assert_eq!(dry.deleted, 500);
        assert_eq!(rows(&c).len(), 2500, "a dry run deletes nothing");
        let rec = h
            .retention_sweep("example.org", Kind::Archive, &[], &SweepOptions { batch: 64, ..Default::default() })
            .unwrap();
        assert_eq!((rec.state, rec.deleted), (SweepState::Done, 500));
        assert!(rec.steps > 1, "{rec:?}");
        let left = rows(&c);
        assert_eq!(left.len(), 2000);
        let cutoff = now - 86_400;
        assert!(left
            .iter()
            .all(|(host, _, store, when)| host != "example.org" || store != "archive" || *when >= cutoff));
        // The group chat archive is its own kind, with its own period.
        assert!(h.retention_sweep("example.org", Kind::Muc, &[], &SweepOptions::default()).is_err());
        h.set_retention("example.org", "muc", "1w").unwrap();
        let muc = h.retention_sweep("example.org", Kind::Muc, &[], &SweepOptions::default()).unwrap();
        assert_eq!(muc.deleted, 500);
        assert_eq!(rows(&c).len(), 1500);
    }

    #[test]
    fn a_users_shorter_retention_applies_to_their_rows_only_even_when_the_domain_keeps_for_ever() {
        let (h, clock, _dir, _p, c) = setup("users");
        let now = clock.now();
        for user in ["alice", "bob"] {
            for age in [10, 5000, 100_000, 1_000_000] {
                add(&c, "example.org", user, "archive", now - age);
            }
        }
        h.set_user_archive_retention("example.org", "alice", Some("1h")).unwrap();
        let rec = h.retention_sweep("example.org", Kind::Archive, &[], &SweepOptions::default()).unwrap();
        assert_eq!(rec.deleted, 3, "alice's three older than an hour");
        assert!(rec.describe().contains("users' own retention"), "{}", rec.describe());
        h.set_retention("example.org", "archive", "2d").unwrap();
        let rec = h.retention_sweep("example.org", Kind::Archive, &[], &SweepOptions::default()).unwrap();
        assert_eq!(rec.deleted, 1, "bob's oldest");
        let left: Vec<(String, i64)> = rows(&c).into_iter().map(|(_, u, _, w)| (u, now - w)).collect();
        assert_eq!(left, [("alice".into(), 10), ("bob".into(), 10), ("bob".into(), 5000), ("bob".into(), 100_000)]);
    }

    #[test]
    fn an_interrupted_sweep_resumes_and_never_deletes_rows_newer_than_the_cutoff() {
        let (h, clock, _dir, _p, c) = setup("resume");
        h.set_retention("example.org", "archive", "1h").unwrap();
        let now = clock.now();
        for i in 0..300 {
            add(&c, "example.org", "alice", "archive", now - 7200 - i);
        }
        let part = h
            .retention_sweep(
                "example.org",
                Kind::Archive,
                &[],
                &SweepOptions { batch: 10, max_steps: Some(3), ..Default::default() },
            )
            .unwrap();
        assert_eq!(part.state, SweepState::Running);
        // Meanwhile: the clock steps back two hours (nothing is an hour old now), new rows come.
        clock.advance(-7200);
        for _ in 0..5 {
            // Ten seconds old by the right time (in the future for the clock set back).
            add(&c, "example.org", "alice", "archive", now - 10);
        }
        let rest = h.retention_sweep("example.org", Kind::Archive, &[], &SweepOptions::default()).unwrap();
        assert_eq!((rest.id, rest.parts, rest.state), (part.id, 2, SweepState::Done));
        // The clock set back lowers the cutoff: the rows left are no longer an hour old by it.
        assert_eq!(rest.cutoff, now - 7200 - 3600);
        assert_eq!(rest.deleted, part.deleted);
        assert_eq!(rows(&c).len() as i64, 300 - part.deleted + 5);
        // Back to the right time: the next sweep takes the rest, and not the five new rows.
        clock.advance(7200);
        let next = h.retention_sweep("example.org", Kind::Archive, &[], &SweepOptions::default()).unwrap();
        assert_eq!((next.cutoff, next.deleted), (now - 3600, 300 - part.deleted));
        assert_eq!(rows(&c).len(), 5);
    }

    #[test]
    fn a_sweep_puts_prosodys_database_in_wal_mode_and_a_dry_run_changes_nothing() {
        let (h, clock, _dir, _p, c) = setup("wal");
        let now = clock.now();
        for i in 0..50 {
            add(&c, "example.org", "alice", "archive", now - 200_000 - i);
        }
        let mode = |c: &Connection| c.query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0)).unwrap();
        assert_eq!(mode(&c), "delete", "Prosody's default");
        h.set_retention("example.org", "archive", "1d").unwrap();
        let dry = SweepOptions { dry_run: true, ..Default::default() };
        assert_eq!(h.retention_sweep("example.org", Kind::Archive, &[], &dry).unwrap().deleted, 50);
        assert_eq!(mode(&c), "delete", "a dry run leaves Prosody's database as it is");
        let rec = h.retention_sweep("example.org", Kind::Archive, &[], &SweepOptions::default()).unwrap();
        assert_eq!(rec.deleted, 50);
        // The mode stays with the file: every connection (Prosody's too) now uses the log.
        let other = Connection::open(&_p).unwrap();
        assert_eq!(mode(&other), "wal");
        // The sweep checkpointed at its end: the log holds nothing left to copy.
        let (busy, log, copied): (i64, i64, i64) =
            other.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap();
        assert_eq!((busy, log, copied), (0, 0, 0));
    }

    #[test]
    fn a_steps_rows_are_read_from_prosodys_when_index_and_deleted_by_primary_key() {
        let (_h, _clock, _dir, _p, c) = setup("plan");
        let plan = |sql: &str, n: usize| -> String {
            let mut st = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let params: Vec<i64> = vec![0; n];
            st.query_map(rusqlite::params_from_iter(params), |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<rusqlite::Result<Vec<_>>>()
                .unwrap()
                .join("; ")
        };
        ProsodySql::load_user_cutoffs(&c, &[("alice".into(), 5)]).unwrap();
        for with_users in [false, true] {
            let select = plan(&ProsodySql::select_sql(with_users), 5);
            // One pass over the index in its own order: no table row, no sorting.
            assert!(select.contains("USING COVERING INDEX prosodyarchive_when (host=? AND user>?)"), "{select}");
            assert!(!select.contains("TEMP B-TREE"), "{select}");
            let delete = plan(&ProsodySql::delete_sql(with_users), 4);
            assert!(delete.contains("USING INTEGER PRIMARY KEY (rowid=?)"), "{delete}");
            assert!(!delete.contains("SCAN prosodyarchive"), "{delete}");
        }
    }

    #[test]
    fn rows_of_many_users_go_a_user_at_a_time_and_resume_from_the_user_recorded() {
        let (h, clock, _dir, p, c) = setup("users-order");
        let now = clock.now();
        for i in 0..40 {
            for user in ["carol", "alice", "bob"] {
                add(&c, "example.org", user, "archive", now - 200_000 + i);
                add(&c, "example.org", user, "archive", now - 10 - i);
            }
        }
        h.set_retention("example.org", "archive", "1d").unwrap();
        let part = h
            .retention_sweep(
                "example.org",
                Kind::Archive,
                &[],
                &SweepOptions { batch: 50, max_steps: Some(1), ..Default::default() },
            )
            .unwrap();
        // alice's 40 rows, then 10 of bob's: users by name, the oldest of each first.
        assert_eq!((part.state, part.deleted), (SweepState::Running, 50));
        let left_old = |user: &str| -> i64 {
            Connection::open(&p)
                .unwrap()
                .query_row(
                    r#"SELECT count(*) FROM prosodyarchive WHERE user = ?1 AND "when" < ?2"#,
                    params![user, now - 86_400],
                    |r| r.get(0),
                )
                .unwrap()
        };
        assert_eq!((left_old("alice"), left_old("bob"), left_old("carol")), (0, 30, 40));
        let rest = h.retention_sweep("example.org", Kind::Archive, &[], &SweepOptions::default()).unwrap();
        assert_eq!((rest.id, rest.deleted, rest.state), (part.id, 120, SweepState::Done));
        assert_eq!((left_old("bob"), left_old("carol")), (0, 0));
        assert_eq!(rows(&c).len(), 120, "every newer row kept");
    }

    #[test]
    fn a_missing_database_or_unregistered_store_is_said_plainly() {
        let clock = ManualClock::new(1_000_000);
        let h = Hosting::open_in_memory().unwrap().with_clock(clock);
        h.add_domain("example.org").unwrap();
        h.set_retention("example.org", "archive", "1d").unwrap();
        let e = h.retention_sweep("example.org", Kind::Archive, &[], &SweepOptions::default()).unwrap_err();
        assert!(e.to_string().contains("no server has registered"), "{e}");
        let e = h
            .register_archive_store(
                "example.org",
                Kind::Archive,
                "example.org",
                PROSODY_SQL,
                Some("rel.sqlite"),
                "archive",
            )
            .unwrap_err();
        assert!(e.to_string().contains("absolute path"), "{e}");
        h.register_archive_store(
            "example.org",
            Kind::Archive,
            "example.org",
            PROSODY_SQL,
            Some("/nonexistent/prosody.sqlite"),
            "archive",
        )
        .unwrap();
        let rec = h.retention_sweep("example.org", Kind::Archive, &[], &SweepOptions::default()).unwrap();
        assert_eq!(rec.state, SweepState::Running, "paused, retried by the next pass");
        assert!(rec.errors[0].contains("/nonexistent/prosody.sqlite"), "{:?}", rec.errors);
    }
}
