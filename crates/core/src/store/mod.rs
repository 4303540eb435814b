//! The SQLite store: the only module that speaks SQL.
//!
//! Rules elsewhere in the core call typed methods defined here (one file per concept under
//! `store/`), so a PostgreSQL backend for clustered ejabberd can later implement the same methods
//! without touching a rule.
//!
//! One file is shared by every process of a deployment (the XMPP server and the CLI), hence WAL
//! (readers never block the writer), a busy timeout instead of immediate `SQLITE_BUSY`, and
//! `BEGIN IMMEDIATE` for read-modify-write transactions so two processes cannot both read the
//! old value before either writes.

pub(crate) mod certificates;
pub(crate) mod domains;
pub(crate) mod invites;
pub(crate) mod quotas;
pub(crate) mod retention;
pub(crate) mod verification;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use once_cell::sync::Lazy;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use rusqlite_migration::{Migrations, M};

use crate::locked::locked;
use crate::Result;

static MIGRATIONS: Lazy<Migrations<'static>> = Lazy::new(|| {
    Migrations::new(vec![
        M::up(include_str!("../../migrations/0001_domains.sql")),
        M::up(include_str!("../../migrations/0002_invites.sql")),
        M::up(include_str!("../../migrations/0003_quotas.sql")),
        M::up(include_str!("../../migrations/0004_verification.sql")),
        M::up(include_str!("../../migrations/0005_upload_slot_keys.sql")),
        M::up(include_str!("../../migrations/0006_invite_purge.sql")),
        M::up(include_str!("../../migrations/0007_default_max_file_size.sql")),
        M::up(include_str!("../../migrations/0008_upload_slots.sql")),
        M::up(include_str!("../../migrations/0009_claim_findings.sql")),
        M::up(include_str!("../../migrations/0010_retention.sql")),
        M::up(include_str!("../../migrations/0011_certificates.sql")),
        M::up(include_str!("../../migrations/0012_archive_stores.sql")),
        M::up(include_str!("../../migrations/0015_certificate_expiry_notices.sql")),
        M::up(include_str!("../../migrations/0017_acme.sql")),
        M::up(include_str!("../../migrations/0014_publish_activity.sql")),
        M::up(include_str!("../../migrations/0019_panel.sql")),
        M::up(include_str!("../../migrations/0024_panel_jobs.sql")),
        M::up(include_str!("../../migrations/0022_settings_revision.sql")),
        M::up(include_str!("../../migrations/0026_claims_by_account.sql")),
        M::up(include_str!("../../migrations/0027_settings_revision_counter.sql")),
        M::up(include_str!("../../migrations/0032_user_limits_set_at.sql")),
        M::up(include_str!("../../migrations/0031_domain_removals.sql")),
        M::up(include_str!("../../migrations/0033_user_limits_set_seq.sql")),
    ])
});

/// Tries at opening a store another process may be creating or migrating at the same moment.
const OPEN_ATTEMPTS: u32 = 5;

/// Prepared statements kept per connection (see `Store::prepare`).
const STATEMENT_CACHE: usize = 128;

/// About 40 MB of WAL before a writer checkpoints by itself.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 10_000;

pub(crate) struct Store {
    // rusqlite connections are not Sync; one connection per handle keeps the cost of opening a
    // store small. SQLite serialises writers anyway.
    conn: Mutex<Connection>,
    /// The file, for the checkpoint connection (`None` in memory: nothing to checkpoint).
    path: Option<PathBuf>,
    /// Checkpoints run on a connection of their own, opened on first use: a checkpoint copies
    /// pages and syncs the file for milliseconds, and on the shared connection every decision
    /// arriving meanwhile waited for it (most of the upload decisions' p99).
    checkpointer: Mutex<Option<Connection>>,
    busy_timeout: Duration,
}

impl Store {
    pub(crate) fn open(path: &Path, busy_timeout: Duration) -> Result<Self> {
        file_path(path)?;
        create_private(path);
        // Two processes (or a server's two connections) opening a new or older file at the same
        // moment race: switching it to WAL can find it locked without waiting, and both read its
        // old version, so the slower one's migration fails on what the other just created
        // ("table domains already exists") and rolls back. A second look finds the other's work.
        let mut attempt = 1;
        loop {
            match Self::open_once(path, busy_timeout) {
                Ok(store) => return Ok(store),
                Err(_) if attempt < OPEN_ATTEMPTS => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(20 * u64::from(attempt)));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn open_once(path: &Path, busy_timeout: Duration) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(busy_timeout)?;
        // WAL is a property of the file: set it once and every process sees it.
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // Checkpoints (copying the WAL back into the database, with an fsync) are the servers'
        // timers' job (`Hosting::checkpoint`), not a hot path's: SQLite's automatic checkpoint
        // every 1000 pages put a millisecond stall into one decision in a hundred. This larger
        // limit is only the backstop for processes without a timer, such as the CLI.
        conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
        Self::prepare(conn, Some(path.to_path_buf()), busy_timeout)
    }

    /// Opens an existing file read-only, without migrating it (see `Hosting::open_read_only`).
    ///
    /// A reader of a WAL database needs its `-shm` file: it must exist already (a server has the
    /// store open) or the reader must be able to create it (a writable directory, a disk with room
    /// for it). When it cannot and the `-wal` file is missing or empty (nothing in it that the
    /// database file lacks), the file is read as immutable instead: what an admin who may only
    /// read the store, or a full disk, allows.
    pub(crate) fn open_read_only(path: &Path, busy_timeout: Duration) -> Result<Self> {
        file_path(path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let open = |target: &str| -> Result<Connection> {
            let conn = Connection::open_with_flags(target, flags)?;
            conn.busy_timeout(busy_timeout)?;
            if MIGRATIONS.pending_migrations(&conn)? > 0 {
                let why = "the store was written by an older version: open it once with write access to upgrade it";
                let code = rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_READONLY);
                return Err(rusqlite::Error::SqliteFailure(code, Some(why.into())).into());
            }
            Ok(conn)
        };
        let uri = file_uri(path);
        // Looked at before the first attempt, which may itself leave an empty -wal behind.
        let wal_empty = std::fs::metadata(wal_path(path)).map_or(true, |m| m.len() == 0);
        let conn = match open(&uri) {
            Ok(conn) => conn,
            Err(e) if path.exists() && wal_empty && !e.to_string().contains("older version") => {
                open(&format!("{uri}?immutable=1"))?
            }
            Err(e) => return Err(e),
        };
        let path = Some(path.to_path_buf());
        Ok(Store { conn: Mutex::new(conn), path, checkpointer: Mutex::new(None), busy_timeout })
    }

    pub(crate) fn open_in_memory() -> Result<Self> {
        Self::prepare(Connection::open_in_memory()?, None, Duration::ZERO)
    }

    fn prepare(mut conn: Connection, path: Option<PathBuf>, busy_timeout: Duration) -> Result<Self> {
        conn.pragma_update(None, "foreign_keys", true)?;
        // A slot decision alone uses a dozen statements; with rusqlite's default of 16 cached, a
        // server that also registers and runs its housekeeping on the same handle kept evicting
        // and parsing them again.
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        MIGRATIONS.to_latest(&mut conn)?;
        Ok(Store { conn: Mutex::new(conn), path, checkpointer: Mutex::new(None), busy_timeout })
    }

    fn lock(&self) -> Result<Held<'_>> {
        let waits = crate::off_loop::waits_for_locks();
        // A panic while holding the lock cannot leave the connection half-changed: any open
        // transaction was rolled back when it was dropped. So a poisoned lock is still usable.
        // During a `Hosting::now_or_later` attempt a connection in use by another thread of this
        // handle is not waited for either: on ejabberd every scheduler shares one handle, and a
        // call holding it may be waiting out another process's lock for the whole busy timeout.
        let conn = if waits {
            locked(&self.conn)
        } else {
            match self.conn.try_lock() {
                Ok(conn) => conn,
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => {
                    crate::off_loop::connection_in_use();
                    return Err(rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                        Some("the store's connection is in use by another call of this process".into()),
                    )
                    .into());
                }
            }
        };
        // A call whose caller waits with a deadline (`Hosting::now_or_answer`) waits for another
        // connection's lock only until then, and once it has passed makes nothing: its caller has
        // been told it failed. After the call's first commit the deadline is the last moment its
        // answer can be sent (`off_loop::committed`): a call that has changed something finishes
        // while its caller can still be told.
        let left = crate::off_loop::wait_left();
        if left.is_some_and(|left| left.is_zero()) {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                Some("the store's write lock was held elsewhere until the caller stopped waiting".into()),
            )
            .into());
        }
        // During a `Hosting::now_or_later` attempt another connection's lock fails the call at
        // once (SQLITE_BUSY) instead of being waited for; the timeout is back when the call ends.
        // Setting it is a field write in SQLite, no system call.
        let wait = if waits { left } else { Some(Duration::ZERO) };
        let restore = wait.filter(|wait| *wait < self.busy_timeout).map(|wait| {
            let _ = conn.busy_timeout(wait);
            self.busy_timeout
        });
        Ok(Held { conn, restore })
    }

    /// Runs `f` in one read transaction, so that a report made of several statements sees one
    /// snapshot: read one by one, an upload committed between the usage and the day's volume
    /// counted its bytes in both (reserved and uploaded today) and the report showed more than
    /// the limit allows. In WAL mode a reader takes no lock and blocks no writer.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.lock()?;
        let tx = conn.unchecked_transaction()?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    }

    /// Runs a long read (a recount) in one transaction, so that it sees one snapshot, on a
    /// connection of its own: in WAL mode it blocks no writer, and no caller of this handle
    /// waits behind it for the shared connection. In memory there is only the one connection.
    pub(crate) fn read_apart<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let Some(path) = &self.path else {
            let mut conn = self.lock()?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
            return f(&tx);
        };
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(self.busy_timeout)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        f(&tx)
    }

    /// Copies what it can of the WAL back into the database without waiting for readers or
    /// blocking writers; returns (WAL pages, pages checkpointed).
    pub(crate) fn checkpoint(&self) -> Result<(i64, i64)> {
        let Some(path) = &self.path else { return Ok((0, 0)) };
        let mut slot = locked(&self.checkpointer);
        if slot.is_none() {
            let conn = Connection::open(path)?;
            conn.busy_timeout(self.busy_timeout)?;
            *slot = Some(conn);
        }
        let conn = slot.as_ref().expect("opened above");
        Ok(conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get(1)?, r.get(2)?)))?)
    }

    /// Runs `f` in an immediate (write-locked) transaction, committed if `f` returns `Ok`; rolled
    /// back if it fails, panics, or the commit fails.
    ///
    /// BEGIN and COMMIT are cached statements: rusqlite's `Transaction` runs them as text, parsed
    /// again on every call, which was a tenth of a slot request's store time on Prosody's loop
    /// (two transactions a request).
    pub(crate) fn write<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.lock()?;
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        let open = Open(&conn);
        let value = f(open.0)?;
        open.0.prepare_cached("COMMIT")?.execute([])?;
        drop(open);
        crate::off_loop::committed();
        Ok(value)
    }
}

/// A transaction begun by [`Store::write`]: rolled back when dropped before its commit (an
/// error, a panic unwinding through `f`, a failed COMMIT), as rusqlite's `Transaction` does.
struct Open<'a>(&'a Connection);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        if !self.0.is_autocommit() {
            let _ = self.0.execute_batch("ROLLBACK");
        }
    }
}

/// The handle's connection, locked for one call.
struct Held<'a> {
    conn: MutexGuard<'a, Connection>,
    /// The busy timeout to put back when the call ends, if the call was not to wait.
    restore: Option<Duration>,
}

impl std::ops::Deref for Held<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl std::ops::DerefMut for Held<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some(timeout) = self.restore {
            let _ = self.conn.busy_timeout(timeout);
        }
    }
}

/// The `-wal` file SQLite keeps beside `path`.
fn wal_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// `path` as an SQLite `file:` URI (so that query parameters can follow), with the characters
/// URIs reserve escaped.
fn file_uri(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut uri = String::from("file:");
    for &b in path.as_os_str().as_bytes() {
        match b {
            b'?' | b'#' | b'%' => uri.push_str(&format!("%{b:02X}")),
            _ if b < 0x80 => uri.push(b as char),
            _ => uri.push_str(&format!("%{b:02X}")),
        }
    }
    uri
}

/// Refuses a path SQLite would not take as a file: an empty one opens a private temporary
/// database (every binding would then run on a store nobody else sees, and lose it on exit), and
/// one with a NUL byte is cut short by the C API.
fn file_path(path: &Path) -> Result<()> {
    let text = path.as_os_str();
    if text.is_empty() || text.as_encoded_bytes().contains(&0) {
        return Err(crate::Error::InvalidArgument("the store path must be a non-empty file path".into()));
    }
    Ok(())
}

/// Creates the store file readable and writable by its owner only (0600) when it does not exist
/// yet: it holds registrants' IP addresses and invite history. SQLite gives its `-wal` and `-shm`
/// files the database file's permissions. An existing file keeps the permissions its admin chose
/// (0640 with the server's group, say); a file that cannot be created here is left to SQLite's
/// open to report.
fn create_private(path: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        MIGRATIONS.validate().unwrap();
    }

    #[test]
    fn an_empty_or_nul_path_is_refused_not_a_temporary_store() {
        for path in ["", "store\0.sqlite"] {
            for opened in
                [Store::open(Path::new(path), Duration::ZERO), Store::open_read_only(Path::new(path), Duration::ZERO)]
            {
                let err = opened.err().expect("refused");
                assert!(matches!(err, crate::Error::InvalidArgument(_)), "{path:?}: {err}");
                assert!(err.to_string().contains("non-empty file path"), "{err}");
            }
        }
    }

    #[test]
    fn a_write_that_fails_or_panics_changes_nothing_and_the_store_stays_usable() {
        let store = Store::open_in_memory().unwrap();
        store.write(|c| Ok(c.execute_batch("CREATE TABLE rollback_probe (x INTEGER)")?)).unwrap();
        let rows =
            |s: &Store| s.read(|c| Ok(c.query_row("SELECT count(*) FROM rollback_probe", [], |r| r.get::<_, i64>(0))?));
        let failed = store.write::<()>(|c| {
            c.execute("INSERT INTO rollback_probe VALUES (1)", [])?;
            Err(crate::Error::InvalidArgument("refused after a change".into()))
        });
        assert!(failed.is_err());
        assert_eq!(rows(&store).unwrap(), 0, "an error rolls the change back");
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            store.write::<()>(|c| {
                c.execute("INSERT INTO rollback_probe VALUES (2)", []).unwrap();
                panic!("in the middle of a write")
            })
        }));
        assert!(panicked.is_err());
        assert_eq!(rows(&store).unwrap(), 0, "a panic rolls the change back");
        store.write(|c| Ok(c.execute("INSERT INTO rollback_probe VALUES (3)", [])?)).unwrap();
        assert_eq!(rows(&store).unwrap(), 1, "the next write begins and commits as usual");
    }

    #[test]
    fn processes_opening_a_new_store_at_once_all_succeed() {
        let dir = std::env::temp_dir().join(format!("xh-store-race-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        std::fs::create_dir_all(&dir).unwrap();
        for round in 0..5 {
            let path = dir.join(format!("race-{round}.db"));
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(6));
            let openers: Vec<_> = (0..6)
                .map(|_| {
                    let (path, barrier) = (path.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        Store::open(&path, Duration::from_secs(10)).map(|_| ())
                    })
                })
                .collect();
            for opener in openers {
                opener.join().unwrap().unwrap();
            }
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_read_sees_one_snapshot_whatever_another_handle_commits_meanwhile() {
        let dir = std::env::temp_dir().join(format!("xh-snapshot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let reader = Store::open(&dir.join("t.db"), Duration::from_secs(1)).unwrap();
        let writer = Store::open(&dir.join("t.db"), Duration::from_secs(1)).unwrap();
        let count = |c: &Connection| c.query_row("SELECT count(*) FROM domains", [], |r| r.get::<_, i64>(0));
        let (before, after) = reader
            .read(|c| {
                let before = count(c)?;
                writer.write(|tx| {
                    Ok(tx
                        .execute("INSERT INTO domains (name, created_at, updated_at) VALUES ('a.example', 0, 0)", [])?)
                })?;
                Ok((before, count(c)?))
            })
            .unwrap();
        assert_eq!((before, after), (0, 0), "the commit landed between the read's statements");
        assert_eq!(reader.read(|c| Ok(count(c)?)).unwrap(), 1, "the next read sees it");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn file_store_uses_wal_and_foreign_keys() {
        let dir = std::env::temp_dir().join(format!("xh-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&dir.join("t.db"), Duration::from_secs(1)).unwrap();
        store
            .read(|c| {
                let mode: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
                let fk: i64 = c.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
                assert_eq!(mode, "wal");
                assert_eq!(fk, 1);
                Ok(())
            })
            .unwrap();
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn checkpoint_empties_the_wal() {
        let dir = std::env::temp_dir().join(format!("xh-checkpoint-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&dir.join("t.db"), Duration::from_secs(1)).unwrap();
        store
            .write(|tx| {
                Ok(tx.execute("INSERT INTO domains (name, created_at, updated_at) VALUES ('a.example', 0, 0)", [])?)
            })
            .unwrap();
        let (pages, copied) = store.checkpoint().unwrap();
        assert!(pages > 0);
        assert_eq!(pages, copied);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_new_store_file_is_private_to_its_owner_and_an_existing_one_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let store = crate::test_store::TestStore::new("store-mode");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let h = crate::Hosting::open(&store.path).unwrap();
        h.add_domain("a.example").unwrap();
        assert_eq!(mode(&store.path), 0o600);
        let wal = store.path.with_extension("db-wal");
        assert_eq!(mode(&wal), 0o600, "SQLite's -wal takes the database's mode");
        drop(h);
        std::fs::set_permissions(&store.path, std::fs::Permissions::from_mode(0o640)).unwrap();
        crate::Hosting::open(&store.path).unwrap();
        assert_eq!(mode(&store.path), 0o640);
    }

    #[test]
    fn a_read_only_handle_reads_and_refuses_writes() {
        let store = crate::test_store::TestStore::new("store-read-only");
        assert!(crate::Hosting::open_read_only(&store.path).is_err(), "nothing is created");
        assert!(!store.path.exists());
        store.open().add_domain("a.example").unwrap();
        let h = crate::Hosting::open_read_only(&store.path).unwrap();
        assert_eq!(h.domains().unwrap().len(), 1);
        assert_eq!(h.provider_settings().unwrap(), crate::ProviderSettings::default());
        assert_eq!(h.add_domain("b.example").unwrap_err().code(), "store");
        // Readable without the -wal and -shm files, as when the reader cannot create them (an
        // admin who may only read the store, a full disk), and at a path URIs would misread.
        let odd = store.path.with_file_name("odd ?#%ü.db");
        std::fs::copy(&store.path, &odd).unwrap();
        assert_eq!(crate::Hosting::open_read_only(&odd).unwrap().domains().unwrap().len(), 1);
        // A store an older version wrote is not migrated behind a reader's back.
        let c = Connection::open(&store.path).unwrap();
        c.pragma_update(None, "user_version", 1).unwrap();
        let e = crate::Hosting::open_read_only(&store.path).unwrap_err();
        assert!(e.to_string().contains("open it once with write access"), "{e}");
    }

    #[test]
    fn failed_write_rolls_back() {
        let store = Store::open_in_memory().unwrap();
        let r: Result<()> = store.write(|tx| {
            tx.execute("INSERT INTO domains (name, created_at, updated_at) VALUES ('a.example', 0, 0)", [])?;
            Err(crate::Error::InvalidArgument("stop".into()))
        });
        assert!(r.is_err());
        let n: i64 = store.read(|c| Ok(c.query_row("SELECT count(*) FROM domains", [], |r| r.get(0))?)).unwrap();
        assert_eq!(n, 0);
    }
}
