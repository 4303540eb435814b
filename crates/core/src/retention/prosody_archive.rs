//! Prosody's archives (mod_mam's one-to-one archive, mod_muc_mam's group chat archive), swept
//! by the core's rule.
//!
//! Where they live is registered by the server when it loads ([`Hosting::register_archive_store`]):
//! - `prosody_sql`: `storage = "sql"` with SQLite. The core deletes directly in Prosody's
//!   database (table `prosodyarchive`) on its worker thread: each step is one short transaction
//!   over a range of `sort_id` (the table's integer primary key, so the range is a seek), and
//!   the statement itself asks for rows of the host and store stored strictly before the cutoff.
//!   Prosody opens the file with LuaDBI, which sets no busy handler: a Prosody query that met
//!   one of our steps' locks would fail at once ("database is locked"), and a message would go
//!   unarchived. The Prosody module therefore gives Prosody's connection a busy timeout
//!   (`PRAGMA busy_timeout`) when it registers the store, so Prosody waits the length of one
//!   step (a few milliseconds) instead. Measured against Prosody's own cleanup (one unbatched
//!   DELETE with the event loop blocked): see benches/retention_prosody.py and the README.
//! - `prosody_internal`: `storage = "internal"` (one file per user or room). Only Prosody can
//!   change those files safely (it appends to them from its loop), so Prosody deletes through
//!   its archive storage API, a few users' archives a step, in steps planned here
//!   ([`Hosting::begin_driven_sweep`], see `driven.rs`).

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::Serialize;

use super::sweep::{StepDone, Target, USERS_ONLY};
use super::{Kind, Period};
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

/// Prosody's SQLite archive table, deleted a `sort_id` range a step.
pub(crate) struct ProsodySql {
    stores: Vec<ArchiveStore>,
    /// Open databases by file.
    conns: Vec<(String, Connection)>,
    kind: Kind,
    /// The last step's DELETE, without its commit (whose fsyncs cost the same for any batch).
    last_work: Option<Duration>,
}

/// Between two steps Prosody's queries get the database: its busy handler retries within
/// milliseconds, and back-to-back steps could keep it waiting until its timeout.
const PROSODY_PAUSE: Duration = Duration::from_millis(5);

/// The cursor: the server host being swept, and the last `sort_id` looked at there.
fn parse_cursor(cursor: Option<&str>) -> Option<(&str, i64)> {
    let (host, id) = cursor?.split_once('\t')?;
    Some((host, id.parse().ok()?))
}

impl ProsodySql {
    pub(crate) fn new(stores: Vec<ArchiveStore>, kind: Kind) -> Self {
        ProsodySql { stores, conns: Vec::new(), kind, last_work: None }
    }

    fn conn(&mut self, path: &str) -> Result<&Connection> {
        if let Some(i) = self.conns.iter().position(|(p, _)| p == path) {
            return Ok(&self.conns[i].1);
        }
        if !Path::new(path).exists() {
            return Err(Error::NotFound { what: "Prosody's SQLite database", key: path.to_string() });
        }
        // Never created here: a missing file is a wrong path, not an empty archive.
        let c = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        c.busy_timeout(PROSODY_BUSY)?;
        self.conns.push((path.to_string(), c));
        Ok(&self.conns.last().expect("just pushed").1)
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

    /// The rows of one store a step (or a count) looks at, as a WHERE clause on the sort_id range
    /// `(?1, ?2]`, host `?3`, store `?4` and cutoff `?5`. Always strictly before the cutoff (the
    /// user's own when shorter): the cursor only saves work.
    ///
    /// The unary `+` keeps SQLite off Prosody's indexes on (host, user, store, ...): without
    /// statistics the planner prefers `host = ?` to the sort_id range, and a step then walked
    /// every row of the host (120 ms a step for a dozen rows on 100,000, measured).
    fn condition(with_users: bool) -> &'static str {
        if with_users {
            "sort_id > ?1 AND sort_id <= ?2 AND +host = ?3 AND +store = ?4
             AND +\"when\" < coalesce((SELECT u.cutoff FROM temp.xh_user_cutoffs u WHERE u.user = prosodyarchive.user), ?5)"
        } else {
            "sort_id > ?1 AND sort_id <= ?2 AND +host = ?3 AND +store = ?4 AND +\"when\" < ?5"
        }
    }

    fn has_table(c: &Connection) -> Result<bool> {
        Ok(c.query_row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'prosodyarchive'", [], |_| Ok(()))
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

impl Target for ProsodySql {
    fn last_work(&self) -> Option<Duration> {
        self.last_work
    }

    fn pause(&self) -> Duration {
        PROSODY_PAUSE
    }

    fn count(&mut self, h: &Hosting, domain: &str, cutoff: Timestamp) -> Result<(i64, i64)> {
        let users = self.users(h, domain)?;
        let mut total = 0;
        for s in self.stores.clone() {
            let c = self.conn(&Self::location(&s)?)?;
            if !Self::has_table(c)? {
                continue;
            }
            let with_users = Self::load_user_cutoffs(c, &users)?;
            let n: i64 = c.query_row(
                &format!("SELECT count(*) FROM prosodyarchive WHERE {}", Self::condition(with_users)),
                params![i64::MIN, i64::MAX, s.server_host, s.store, cutoff],
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
        let users = self.users(h, domain)?;
        let at = parse_cursor(cursor);
        // The store the cursor is in, or the first after it (a store unregistered meanwhile).
        let Some(i) = self.stores.iter().position(|s| at.is_none_or(|(host, _)| s.server_host.as_str() >= host)) else {
            return Ok(StepDone::default());
        };
        let s = self.stores[i].clone();
        let resume = at.filter(|(host, _)| *host == s.server_host).map(|(_, id)| id);
        let next_store = self.stores.get(i + 1).map(|n| format!("{}\t{}", n.server_host, i64::MIN));
        let c = self.conn(&Self::location(&s)?)?;
        let mut done = StepDone::default();
        if !Self::has_table(c)? {
            done.next = next_store;
            return Ok(done);
        }
        // The highest sort_id now: rows written after it are newer than any cutoff anyway.
        let (min, max): (Option<i64>, Option<i64>) =
            c.query_row("SELECT min(sort_id), max(sort_id) FROM prosodyarchive", [], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let (Some(min), Some(max)) = (min, max) else {
            done.next = next_store;
            return Ok(done);
        };
        let from = resume.unwrap_or(i64::MIN).max(min - 1);
        let to = from.saturating_add(limit as i64).min(max);
        if from < to {
            let with_users = Self::load_user_cutoffs(c, &users)?;
            let tx = c.unchecked_transaction()?;
            // A DEFERRED transaction whose DELETE takes the write lock at once, waiting at most
            // PROSODY_BUSY for Prosody's.
            let started = std::time::Instant::now();
            let n = tx.execute(
                &format!("DELETE FROM prosodyarchive WHERE {}", Self::condition(with_users)),
                params![from, to, s.server_host, s.store, cutoff],
            )?;
            let work = started.elapsed();
            tx.commit()?;
            done.deleted = n as i64;
            self.last_work = Some(work);
        }
        done.next = if to < max { Some(format!("{}\t{to}", s.server_host)) } else { next_store };
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
