//! Keeping the ledger true to the upload directories, on the core's worker rather than a
//! server's event loop. Neither Prosody 0.12 nor ejabberd 23.01 says when an uploaded file is
//! deleted (expired by mod_http_file_share or mod_http_upload_quota, removed with its account,
//! or by an admin), and Prosody does not say when an upload completes either, so the core looks
//! at the disk:
//!
//! - **recorded files** under a root are looked for, and those gone are forgotten;
//! - **watched slots** (a server that names a slot's file when it grants it: Prosody) are looked
//!   at every few seconds: a finished file is counted; a partial file that grows keeps the
//!   reservation holding however long the upload takes ([`HOLD_WHILE_ARRIVING`] past the last
//!   growth); a slot that can no longer bring a file gives its bytes back. A reservation thus
//!   holds until its upload has finished or failed, not merely for the slot's lifetime;
//! - **files the ledger does not know** in a watched root are counted whenever they appear:
//!   charged to the slot's owner when the path is a watched slot's, else to global storage only
//!   (a file nobody can be charged for still fills the disk). The audit finds them too.
//!
//! Servers record each file under its path (the file id is the path) and name the directory
//! their uploads live in as the root. Paths are strict: absolute, no `.` or `..` components, and
//! nothing below a root is reached through a symbolic link.

use std::collections::BTreeMap;
use std::fs;
use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use rusqlite::Connection;
use serde::Serialize;

use super::ledger::{add_totals, commit, forget, release_open};
use super::paths::UploadRoot;
use super::windows::{self, DAY};
use crate::locked::locked;
use crate::store::quotas::{self as sql, SlotRow};
use crate::worker::Pending;
use crate::{Error, Hosting, Result, Timestamp};

/// File ids read (and looked for on disk) per transaction.
const SWEEP_PAGE: i64 = 1000;
/// Watched slots looked at per transaction.
const SLOT_PAGE: i64 = 500;
/// Files found on disk checked against the ledger per read.
const FOUND_PAGE: usize = 1000;
/// Purge rounds per upkeep; each is bounded, so a huge backlog is worked off over several runs.
const PURGE_ROUNDS: usize = 200;
/// A pause between purge rounds, so that a writer waiting for the lock (a slot decision on a
/// server's loop, whose busy handler polls) gets it between two rounds instead of behind all.
const PURGE_PAUSE: std::time::Duration = std::time::Duration::from_millis(2);
/// How long a reservation keeps holding after its upload was last seen growing. Prosody drops
/// an HTTP connection idle for 14 minutes and then deletes the partial file; a partial file that
/// stays without growing for an hour is left over (a crash), and must not hold a quota forever.
pub const HOLD_WHILE_ARRIVING: i64 = 3600;
/// The longest a server may say a slot stays usable.
const MAX_USABLE_FOR: u64 = 7 * DAY as u64;

/// What one upkeep pass (or one look at the watched slots) did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UploadUpkeep {
    /// Expired reservations released, long-released ones and unreachable window buckets dropped.
    pub purged: usize,
    /// Files under the roots looked for on disk.
    pub files_checked: usize,
    /// Of the files recorded or found in watched roots, how many the walk of the directory did
    /// not settle, and were looked at one by one (a `stat`, or the path rule): recorded but not
    /// seen (gone, or not below the root by the path rule), or seen but not recorded (their
    /// size). The walk settles all the others, however many are stored.
    pub files_looked_up: usize,
    /// Files found gone and taken out of storage.
    pub files_forgotten: usize,
    /// Watched slots whose file appeared and was counted.
    pub slots_completed: usize,
    /// Watched slots whose upload is still arriving: their reservations hold.
    pub slots_arriving: usize,
    /// Watched slots that can bring no file any more (never used, or the upload failed and the
    /// slot expired): their bytes were given back.
    pub slots_ended: usize,
    /// Files found in watched roots that the ledger did not know, now counted.
    pub files_found: usize,
    /// Of those, how many no slot names an owner for: counted in global storage only.
    pub files_unattributed: usize,
    /// Slot watches handed to the worker ([`Hosting::watch_upload_slot_later`]) that failed since
    /// the last report, and the last reason.
    pub watch_failures: usize,
    pub last_watch_failure: Option<String>,
}

impl UploadUpkeep {
    fn add(&mut self, o: UploadUpkeep) {
        self.purged += o.purged;
        self.files_checked += o.files_checked;
        self.files_looked_up += o.files_looked_up;
        self.files_forgotten += o.files_forgotten;
        self.slots_completed += o.slots_completed;
        self.slots_arriving += o.slots_arriving;
        self.slots_ended += o.slots_ended;
        self.files_found += o.files_found;
        self.files_unattributed += o.files_unattributed;
        self.watch_failures += o.watch_failures;
        if o.last_watch_failure.is_some() {
            self.last_watch_failure = o.last_watch_failure;
        }
    }

    /// Takes the failures of the deferred watches made through a handle on `h`'s store into this
    /// report.
    fn with_watch_failures(mut self, h: &Hosting) -> Self {
        let mut failures = locked(&WATCH_FAILURES);
        let (count, last) = failures.remove(&failure_key(h)).unwrap_or_default();
        self.watch_failures += count;
        if last.is_some() {
            self.last_watch_failure = last;
        }
        self
    }
}

/// Failed deferred watches since the last report, per store file (`None`: in memory): (count,
/// last reason). A watch runs after its caller moved on, so its failure can only be told later.
type WatchFailures = BTreeMap<Option<PathBuf>, (usize, Option<String>)>;
static WATCH_FAILURES: Mutex<WatchFailures> = Mutex::new(BTreeMap::new());

pub(super) fn failure_key(h: &Hosting) -> Option<PathBuf> {
    h.reopen_options().map(|(path, _)| path.clone())
}

/// Counts a deferred watch's failure for the next report of the store at `key`.
pub(super) fn count_watch_failure(key: Option<PathBuf>, outcome: Result<()>) {
    if let Err(e) = outcome {
        let mut failures = locked(&WATCH_FAILURES);
        let entry = failures.entry(key).or_default();
        entry.0 += 1;
        entry.1 = Some(e.to_string());
    }
}

/// A path the core stats and records: absolute, valid UTF-8 (it is a `str`), no NUL, no `.` or
/// `..` components, and short enough to index.
pub(super) fn check_path(what: &str, path: &str) -> Result<()> {
    let p = Path::new(path);
    let strict = p.is_absolute()
        && !path.contains('\0')
        && path.len() <= 1024
        && !path[1..].split('/').any(|c| c == "." || c == "..")
        && p.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if strict {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{what} {path:?} must be an absolute path of at most 1024 bytes without '.' or '..' parts"
        )))
    }
}

/// Until when a slot the server says is usable for `usable_for` seconds from `now` is.
pub(super) fn usable_until(now: Timestamp, usable_for: u64) -> Timestamp {
    now.saturating_add(usable_for.min(MAX_USABLE_FOR) as i64)
}

/// The id range of every path below `root`: `[root/, root0)` ('0' is the byte after '/').
fn range_below(root: &str) -> (String, String) {
    (format!("{root}/"), format!("{root}0"))
}

/// What the disk holds for a watched slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnDisk {
    /// The finished file, of this size.
    Finished(i64),
    /// The upload is still being written: the partial file has this size.
    Arriving(i64),
    Nothing,
    /// Something that cannot be judged (no permission, a directory in the way): left as it is.
    Unclear,
}

/// Looks at a slot's partial file first, then at its finished file: the server renames one into
/// the other, so seeing neither in that order means no upload is under way or done.
fn look(path: &str, partial_suffix: &str) -> OnDisk {
    if !partial_suffix.is_empty() {
        match fs::symlink_metadata(format!("{path}{partial_suffix}")) {
            Ok(m) if m.file_type().is_file() => return OnDisk::Arriving(m.len() as i64),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            _ => return OnDisk::Unclear,
        }
    }
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => OnDisk::Finished(m.len() as i64),
        Err(e) if e.kind() == ErrorKind::NotFound => OnDisk::Nothing,
        _ => OnDisk::Unclear,
    }
}

/// Counts a watched slot's finished file, charged to the slot's owner, and ends the slot.
fn finish_slot(tx: &Connection, slot: &SlotRow, bytes: i64, now: Timestamp) -> Result<()> {
    let reservation = slot.reservation.filter(|&id| matches!(sql::reservation(tx, id), Ok(Some(_))));
    match sql::file_owner(tx, &slot.file_path)? {
        // Counted before its watch was recorded (a sweep found it first): charge it to the owner
        // now. Global storage has it already.
        Some((domain, _, size)) if domain.is_empty() => {
            sql::set_file_owner(tx, &slot.file_path, &slot.domain, &slot.username)?;
            sql::add_usage(tx, "user", &slot.domain, &slot.username, size, 0)?;
            sql::add_usage(tx, "domain", &slot.domain, "", size, 0)?;
            record_volume(tx, slot, size, now)?;
            drop_reservation(tx, reservation)?;
        }
        Some(_) => drop_reservation(tx, reservation)?,
        None => match reservation {
            Some(id) => commit(tx, id, bytes, &slot.file_path, now)?,
            // The reservation is long gone (released and purged): the slot still names who.
            None => {
                sql::insert_file(tx, &slot.file_path, &slot.domain, &slot.username, bytes, now)?;
                add_totals(tx, &slot.domain, &slot.username, bytes, 0)?;
                record_volume(tx, slot, bytes, now)?;
            }
        },
    }
    sql::delete_slot(tx, &slot.file_path)
}

fn record_volume(tx: &Connection, slot: &SlotRow, bytes: i64, now: Timestamp) -> Result<()> {
    windows::record(tx, &slot.domain, &slot.username, bytes, now)?;
    windows::record(tx, &slot.domain, "", bytes, now)
}

/// Gives a reservation's bytes back (if it still counts) and deletes it.
fn drop_reservation(tx: &Connection, reservation: Option<i64>) -> Result<()> {
    if let Some(id) = reservation {
        release_open(tx, id)?;
        sql::delete_reservation(tx, id)?;
    }
    Ok(())
}

/// The upload is arriving: its reservation holds until `until`, counting again if it had been
/// released meanwhile (the bytes are on their way to the disk whatever the limit says).
fn hold(tx: &Connection, reservation: Option<i64>, until: Timestamp) -> Result<()> {
    let Some(id) = reservation else { return Ok(()) };
    let Some((expires_at, released)) = sql::reservation_expiry(tx, id)? else { return Ok(()) };
    if released {
        if let Some((domain, user, size, _)) = sql::reservation(tx, id)? {
            add_totals(tx, &domain, &user, 0, size)?;
        }
    }
    sql::set_reservation_expiry(tx, id, expires_at.max(until), false)
}

/// Applies what the disk showed for one watched slot; returns what became of it.
fn settle_slot(tx: &Connection, slot: &SlotRow, seen: OnDisk, now: Timestamp) -> Result<OnDisk> {
    match seen {
        OnDisk::Finished(bytes) => finish_slot(tx, slot, bytes, now)?,
        OnDisk::Arriving(bytes) if slot.arriving_bytes != Some(bytes) => {
            sql::set_slot_arriving(tx, &slot.file_path, Some(bytes))?;
            hold(tx, slot.reservation, now + HOLD_WHILE_ARRIVING)?;
        }
        OnDisk::Nothing if now >= slot.usable_until => {
            // No upload can start any more and none is under way: the slot is over.
            drop_reservation(tx, slot.reservation.filter(|&id| matches!(sql::reservation(tx, id), Ok(Some(_)))))?;
            sql::delete_slot(tx, &slot.file_path)?;
        }
        OnDisk::Nothing if slot.arriving_bytes.is_some() => {
            // The upload failed (the server deleted its partial file); the client may still try
            // again while the slot is usable, and no longer than that is held.
            sql::set_slot_arriving(tx, &slot.file_path, None)?;
            if let Some(id) = slot.reservation {
                if let Some((expires_at, false)) = sql::reservation_expiry(tx, id)? {
                    sql::set_reservation_expiry(tx, id, expires_at.min(slot.usable_until), false)?;
                }
            }
        }
        _ => {}
    }
    Ok(seen)
}

/// A file found on disk: its id (path) and size.
struct Found {
    path: String,
    size: i64,
}

/// Whom a file the ledger does not know is charged to: the owner of the watched slot whose
/// file it is, and the bytes that slot still holds reserved (released when the file counts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SlotOwner {
    pub domain: String,
    pub username: String,
    pub reserved: i64,
}

fn slot_owner(c: &Connection, path: &str) -> Result<Option<SlotOwner>> {
    let Some(slot) = sql::slot(c, path)? else { return Ok(None) };
    let reserved = match slot.reservation.map(|id| sql::reservation(c, id)).transpose()?.flatten() {
        Some((_, _, size, false)) => size,
        _ => 0,
    };
    Ok(Some(SlotOwner { domain: slot.domain, username: slot.username, reserved }))
}

/// Walks `root` for regular files, not following symbolic links (neither to files nor to
/// directories), skipping partial uploads (names ending in `partial_suffix`) and names that are
/// not UTF-8; returns their paths, sorted as the ledger's ids are (bytewise). The kind of each
/// entry comes with the directory listing, so nothing is stat'ed here. A watched directory of
/// 100,000 files was stat'ed twice per upkeep (once per recorded id, once per file found) and
/// its ids read in pages that re-read the ones before: about 2 s of CPU on the worker every
/// five minutes, next to the server's loop on a 2-core machine; about 0.2 s now (release
/// build, `housekeeping run`, load ~8). Holds every path below the root in memory (about 100
/// bytes each) for the comparison.
fn walk_paths(root: &str, partial_suffix: &str) -> Vec<String> {
    let mut dirs = vec![root.to_string()];
    let mut paths = Vec::new();
    while let Some(dir) = dirs.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            // Gone meanwhile, or not ours to read: nothing to count there.
            Err(_) => continue,
        };
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else { continue };
            let Ok(kind) = entry.file_type() else { continue };
            let path = format!("{dir}/{name}");
            if kind.is_dir() {
                dirs.push(path);
            } else if kind.is_file() && (partial_suffix.is_empty() || !name.ends_with(partial_suffix)) {
                paths.push(path);
            }
        }
    }
    paths.sort_unstable();
    paths
}

/// A file's size when it is (still) a regular file: `None` when it went away, or is something
/// else now.
fn file_size(path: &str) -> Option<i64> {
    fs::symlink_metadata(path).ok().filter(|m| m.file_type().is_file()).map(|m| m.len() as i64)
}

/// One watched root compared with the ledger: the walk's files against the ids recorded below
/// the root, both in order.
#[derive(Debug, Default)]
struct Survey {
    /// Ids recorded below the root.
    checked: usize,
    /// Recorded ids the walk did not see: gone, or not reachable by the path rule.
    missing: Vec<String>,
    /// Files the walk saw that the ledger does not record.
    unknown: Vec<String>,
}

/// A root as given: without trailing slashes, and a directory (an unmounted disk or a typo
/// gives `None`, so a sweep can never empty the ledger by mistake).
fn existing_root(root: &str) -> Option<&str> {
    let root = root.trim_end_matches('/');
    Path::new(if root.is_empty() { "/" } else { root }).is_dir().then_some(root)
}

impl Hosting {
    /// Watches the file of a slot granted under `reservation`: the server will write the upload
    /// to `file_path` (and, while it arrives, to `file_path` + the root's partial suffix), and
    /// accepts uploads for the slot for `usable_for` seconds from now. From then on the core's
    /// upkeep counts the file when it appears, holds the reservation while the upload arrives,
    /// and charges a late file to the slot's owner. Watching a path twice keeps the first.
    pub fn watch_upload_slot(&self, reservation: i64, file_path: &str, usable_for: u64) -> Result<()> {
        check_path("an upload's file", file_path)?;
        let now = self.now();
        self.store().write(|tx| {
            let (domain, username, _, _) = sql::reservation(tx, reservation)?
                .ok_or_else(|| Error::not_found("upload reservation", reservation.to_string()))?;
            let slot = SlotRow {
                file_path: file_path.to_string(),
                domain,
                username,
                reservation: Some(reservation),
                usable_until: usable_until(now, usable_for),
                arriving_bytes: None,
            };
            sql::insert_slot(tx, &slot, now).map(|_| ())
        })
    }

    /// [`Hosting::watch_upload_slot`] on the worker, for a server answering a slot request on its
    /// event loop: nothing here waits for the store. A failure is told by the next upkeep
    /// report (`watch_failures`); the file is then still counted when it appears, only charged
    /// to global storage.
    pub fn watch_upload_slot_later(&self, reservation: i64, file_path: String, usable_for: u64) -> Result<()> {
        check_path("an upload's file", &file_path)?;
        let key = failure_key(self);
        self.later(move |h| h.watch_upload_slot(reservation, &file_path, usable_for))?
            .on_done(move |r| count_watch_failure(key, r));
        Ok(())
    }

    /// Makes `root` a watched upload directory, whose uploads in progress are written to the
    /// finished name plus `partial_suffix` (Prosody: "~"; "" when the server writes in place).
    /// Every sweep and audit, from any process, then also looks there for files the ledger does
    /// not know.
    pub fn watch_upload_root(&self, root: &str, partial_suffix: &str) -> Result<()> {
        let root = root.trim_end_matches('/');
        check_path("an upload directory", root)?;
        if partial_suffix.contains('/') || partial_suffix.contains('\0') {
            return Err(Error::InvalidArgument(format!("{partial_suffix:?} cannot end a file name")));
        }
        let now = self.now();
        self.store().write(|tx| sql::register_root(tx, root, partial_suffix, now))
    }

    /// The watched upload directories: (root, partial suffix).
    fn watched_roots(&self) -> Result<Vec<(String, String)>> {
        self.store().read(sql::roots)
    }

    /// Looks at every watched slot below `root` (see the module's description) and settles it.
    /// Stats two paths per slot; slots are few (those granted in the last minutes, and uploads
    /// still arriving), and a write happens only for a slot that changed.
    pub fn check_upload_slots(&self, root: &str, partial_suffix: &str) -> Result<UploadUpkeep> {
        let mut done = UploadUpkeep::default();
        let Some(mut below) = UploadRoot::open(root) else { return Ok(done) };
        let Some(root) = existing_root(root) else { return Ok(done) };
        let (from, to) = range_below(root);
        let mut after = String::new();
        loop {
            let page = self.store().read(|c| sql::slots_between(c, &from, &to, &after, SLOT_PAGE))?;
            let Some(last) = page.last() else { break };
            after = last.file_path.clone();
            let seen: Vec<(SlotRow, OnDisk)> = page
                .into_iter()
                .map(|s| {
                    // A path that is not strictly below the root is never looked at.
                    let on_disk = match below.file(&s.file_path).as_deref().and_then(Path::to_str) {
                        Some(path) => look(path, partial_suffix),
                        None => OnDisk::Unclear,
                    };
                    (s, on_disk)
                })
                .filter(|(s, on_disk)| match on_disk {
                    OnDisk::Arriving(bytes) => {
                        done.slots_arriving += 1;
                        s.arriving_bytes != Some(*bytes)
                    }
                    OnDisk::Finished(_) => true,
                    OnDisk::Nothing => s.arriving_bytes.is_some() || self.now() >= s.usable_until,
                    OnDisk::Unclear => false,
                })
                .collect();
            if seen.is_empty() {
                continue;
            }
            let now = self.now();
            self.store().write(|tx| {
                for (slot, on_disk) in &seen {
                    // Settled from the row as it is now: another process may have got there first.
                    let Some(current) = sql::slot(tx, &slot.file_path)? else { continue };
                    match settle_slot(tx, &current, *on_disk, now)? {
                        OnDisk::Finished(_) => done.slots_completed += 1,
                        OnDisk::Nothing if now >= current.usable_until => done.slots_ended += 1,
                        _ => {}
                    }
                }
                Ok(())
            })?;
        }
        Ok(done)
    }

    /// Walks watched `root` and compares what it finds with the ids recorded below it (see
    /// [`Survey`]); read only. A root that is not a directory surveys nothing.
    fn survey(&self, root: &str, partial_suffix: &str) -> Result<Survey> {
        let mut survey = Survey::default();
        let Some(root) = existing_root(root) else { return Ok(survey) };
        let mut on_disk = walk_paths(root, partial_suffix).into_iter().peekable();
        let (from, to) = range_below(root);
        let mut after = String::new();
        loop {
            let page = self.store().read(|c| sql::file_ids_between(c, &from, &to, &after, SWEEP_PAGE))?;
            let Some(last) = page.last().cloned() else { break };
            survey.checked += page.len();
            for id in page {
                while let Some(path) = on_disk.next_if(|path| *path < id) {
                    survey.unknown.push(path);
                }
                if on_disk.next_if(|path| *path == id).is_none() {
                    survey.missing.push(id);
                }
            }
            after = last;
        }
        survey.unknown.extend(on_disk);
        Ok(survey)
    }

    /// Sizes and owners of files the ledger did not record (read only): each with the owner a
    /// watched slot names, or `None`. Files gone since the walk are left out.
    fn owners_of(&self, paths: Vec<String>) -> Result<Vec<(Found, Option<SlotOwner>)>> {
        let found: Vec<Found> =
            paths.into_iter().filter_map(|path| file_size(&path).map(|size| Found { path, size })).collect();
        let mut owned = Vec::with_capacity(found.len());
        let mut found = found.into_iter().peekable();
        while found.peek().is_some() {
            let page: Vec<Found> = found.by_ref().take(FOUND_PAGE).collect();
            self.store().read(|c| {
                for f in page {
                    let owner = slot_owner(c, &f.path)?;
                    owned.push((f, owner));
                }
                Ok(())
            })?;
        }
        Ok(owned)
    }

    /// Files below watched `root` that the ledger does not know (read only): each with the owner
    /// a watched slot names, or `None`.
    fn unknown_files(&self, root: &str, partial_suffix: &str) -> Result<Vec<(Found, Option<SlotOwner>)>> {
        let survey = self.survey(root, partial_suffix)?;
        self.owners_of(survey.unknown)
    }

    /// Forgets the recorded ids the walk did not see that are gone from the disk (only "no
    /// such file" counts, as in [`Hosting::sweep_upload_files`]); returns how many.
    fn forget_missing(&self, root: &str, missing: &[String]) -> Result<usize> {
        let Some(mut below) = UploadRoot::open(root) else { return Ok(0) };
        let gone: Vec<&String> = missing
            .iter()
            .filter(|id| {
                below
                    .file(id)
                    .is_some_and(|path| matches!(fs::symlink_metadata(path), Err(e) if e.kind() == ErrorKind::NotFound))
            })
            .collect();
        gone.chunks(SWEEP_PAGE as usize).try_fold(0, |forgotten, chunk| {
            self.store().write(|tx| chunk.iter().try_fold(forgotten, |n, id| Ok(n + usize::from(forget(tx, id)?))))
        })
    }

    /// The upkeep of a watched root, in one walk: files recorded and gone are forgotten, files
    /// found and not recorded are counted (see [`Hosting::count_unknown_upload_files`]). Only
    /// the files the walk does not settle are looked up one by one.
    fn reconcile_root(&self, root: &str, partial_suffix: &str) -> Result<UploadUpkeep> {
        let survey = self.survey(root, partial_suffix)?;
        let looked_up = survey.missing.len() + survey.unknown.len();
        let files_forgotten = self.forget_missing(root, &survey.missing)?;
        let found = self.owners_of(survey.unknown)?;
        let (files_found, files_unattributed) = self.count_found_files(&found)?;
        Ok(UploadUpkeep {
            files_checked: survey.checked,
            files_looked_up: looked_up,
            files_forgotten,
            files_found,
            files_unattributed,
            ..Default::default()
        })
    }

    /// Counts files found on disk that the ledger did not know: a watched slot's file is
    /// finished as its slot (charged to its owner), any other counts in global storage only.
    /// Files another process counted meanwhile are skipped.
    fn count_found_files(&self, found: &[(Found, Option<SlotOwner>)]) -> Result<(usize, usize)> {
        let now = self.now();
        found.chunks(FOUND_PAGE).try_fold((0, 0), |(counted, unattributed), chunk| {
            self.store().write(|tx| {
                let (mut c, mut u) = (counted, unattributed);
                for (f, _) in chunk {
                    if sql::file_known(tx, &f.path)? {
                        continue;
                    }
                    match sql::slot(tx, &f.path)? {
                        Some(slot) => finish_slot(tx, &slot, f.size, now)?,
                        None => {
                            sql::insert_file(tx, &f.path, "", "", f.size, now)?;
                            add_totals(tx, "", "", f.size, 0)?;
                            u += 1;
                        }
                    }
                    c += 1;
                }
                Ok((c, u))
            })
        })
    }

    /// Finds the files below watched `root` that the ledger does not know and counts them;
    /// returns (found, of which unattributed).
    pub fn count_unknown_upload_files(&self, root: &str, partial_suffix: &str) -> Result<(usize, usize)> {
        let found = self.unknown_files(root, partial_suffix)?;
        self.count_found_files(&found)
    }

    /// Files the ledger does not know in every watched root, for the audit: (path, size, owner).
    pub(super) fn audit_unknown_files(&self) -> Result<Vec<(String, i64, Option<SlotOwner>)>> {
        let mut all = Vec::new();
        for (root, suffix) in self.watched_roots()? {
            all.extend(self.unknown_files(&root, &suffix)?.into_iter().map(|(f, owner)| (f.path, f.size, owner)));
        }
        Ok(all)
    }

    /// Counts the files an audit found (its repair); those counted meanwhile are skipped.
    pub(super) fn count_audited_files(&self, files: &[(String, i64, Option<SlotOwner>)]) -> Result<usize> {
        let found: Vec<_> = files
            .iter()
            .map(|(path, size, owner)| (Found { path: path.clone(), size: *size }, owner.clone()))
            .collect();
        Ok(self.count_found_files(&found)?.0)
    }

    /// Looks for every file recorded under directory `root` and forgets those that no longer
    /// exist; returns (checked, forgotten). Only "no such file" counts as deleted: a file that
    /// cannot be looked at for another reason stays counted, and a root that is not a directory
    /// (an unmounted disk, a typo) checks nothing, so a sweep can never empty the ledger by
    /// mistake.
    /// Only ids strictly below the root are looked up ([`UploadRoot::file`]): one with `..`, a
    /// NUL, or a symbolic link on its way is never forgotten (nor, later, deleted).
    pub fn sweep_upload_files(&self, root: &str) -> Result<(usize, usize)> {
        let Some(mut below) = UploadRoot::open(root) else { return Ok((0, 0)) };
        let Some(root) = existing_root(root) else { return Ok((0, 0)) };
        let (from, to) = range_below(root);
        let (mut after, mut checked, mut forgotten) = (String::new(), 0, 0);
        loop {
            let page = self.store().read(|c| sql::file_ids_between(c, &from, &to, &after, SWEEP_PAGE))?;
            let Some(last) = page.last().cloned() else { break };
            checked += page.len();
            let gone: Vec<&String> = page
                .iter()
                .filter(|id| {
                    below.file(id).is_some_and(
                        |path| matches!(fs::symlink_metadata(path), Err(e) if e.kind() == ErrorKind::NotFound),
                    )
                })
                .collect();
            if !gone.is_empty() {
                forgotten +=
                    self.store().write(|tx| gone.iter().try_fold(0, |n, id| Ok(n + usize::from(forget(tx, id)?))))?;
            }
            after = last;
        }
        Ok((checked, forgotten))
    }

    /// One look at the slots of every watched root (or of `roots` only, when given): what a
    /// server runs every few seconds so that a finished upload is counted soon.
    pub fn upload_slot_check(&self, roots: &[String]) -> Result<UploadUpkeep> {
        self.upload_slot_check_of(self, roots)
    }

    /// [`Hosting::upload_slot_check`] made on this handle (the worker's) for the server's handle
    /// `owner`: the watches queued there are written first (see slot_watches.rs), so that no
    /// slot's file is looked at before its watch is in the store.
    fn upload_slot_check_of(&self, owner: &Hosting, roots: &[String]) -> Result<UploadUpkeep> {
        self.write_slot_watches_of(owner)?;
        let mut done = UploadUpkeep::default();
        for (root, suffix) in self.watched_roots()? {
            if roots.is_empty() || roots.iter().any(|r| r.trim_end_matches('/') == root) {
                done.add(self.check_upload_slots(&root, &suffix)?);
            }
        }
        Ok(done.with_watch_failures(self))
    }

    /// One upkeep pass, on the caller's thread: purges the ledger, then sweeps every root given
    /// and every watched one; watched roots also get their slots looked at and their unknown
    /// files counted.
    pub fn upload_upkeep(&self, roots: &[String]) -> Result<UploadUpkeep> {
        self.upload_upkeep_of(self, roots)
    }

    /// [`Hosting::upload_upkeep`] on this handle for the server's handle `owner`, whose queued
    /// watches are written first: a slot's finished file is then its owner's, not found unknown.
    /// Also what the housekeeping pass runs on the worker: the watches are queued on the
    /// server's handle, never on the worker's.
    pub(crate) fn upload_upkeep_of(&self, owner: &Hosting, roots: &[String]) -> Result<UploadUpkeep> {
        self.write_slot_watches_of(owner)?;
        let mut upkeep = UploadUpkeep::default();
        for _ in 0..PURGE_ROUNDS {
            match self.purge_upload_ledger()? {
                0 => break,
                n => upkeep.purged += n,
            }
            std::thread::sleep(PURGE_PAUSE);
        }
        let watched = self.watched_roots()?;
        // A root the server names that is not watched has its recorded files looked up one by
        // one; a watched one is walked once, for deleted files and unknown ones alike.
        let mut swept: Vec<String> = watched.iter().map(|(r, _)| r.clone()).collect();
        for root in roots.iter().map(|r| r.trim_end_matches('/').to_string()) {
            if swept.contains(&root) {
                continue;
            }
            let (checked, forgotten) = self.sweep_upload_files(&root)?;
            upkeep.files_checked += checked;
            upkeep.files_forgotten += forgotten;
            swept.push(root);
        }
        for (root, suffix) in &watched {
            // The slots first: a finished upload is counted as its owner's, not found unknown.
            upkeep.add(self.check_upload_slots(root, suffix)?);
            upkeep.add(self.reconcile_root(root, suffix)?);
        }
        Ok(upkeep.with_watch_failures(self))
    }

    /// [`Hosting::upload_upkeep`] on the worker, for a server whose timer runs on its event loop.
    pub fn start_upload_upkeep(&self, roots: Vec<String>) -> Result<Pending<Result<UploadUpkeep>>> {
        let owner = self.clone();
        self.later(move |h| h.upload_upkeep_of(&owner, &roots))
    }

    /// [`Hosting::upload_slot_check`] on the worker.
    pub fn start_upload_slot_check(&self, roots: Vec<String>) -> Result<Pending<Result<UploadUpkeep>>> {
        let owner = self.clone();
        self.later(move |h| h.upload_slot_check_of(&owner, &roots))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quotas::{Reservation, UploadDecision, UploadLimits};
    use crate::{DomainSettings, ManualClock};

    const T0: i64 = 1_700_002_800;

    /// A store in memory on a manual clock, and a fresh upload directory.
    struct Setup {
        h: Hosting,
        clock: ManualClock,
        root: String,
    }

    impl Setup {
        fn new(name: &str, limits: UploadLimits) -> Self {
            let clock = ManualClock::new(T0);
            let h = Hosting::open_in_memory().unwrap().with_clock(clock.clone());
            h.add_domain_with("example.org", DomainSettings { uploads: limits, ..Default::default() }).unwrap();
            let root = std::env::temp_dir().join(format!("xh-upkeep-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&root);
            fs::create_dir_all(&root).unwrap();
            let root = root.to_str().unwrap().to_string();
            h.watch_upload_root(&root, "~").unwrap();
            Setup { h, clock, root }
        }

        fn grant(&self, user: &str, size: i64) -> Option<Reservation> {
            match self.h.authorize_upload("example.org", user, size).unwrap() {
                UploadDecision::Granted(r) => Some(r),
                UploadDecision::Denied(_) => None,
            }
        }

        /// A slot granted and watched, as the Prosody module does; returns the file's path.
        fn slot(&self, user: &str, size: i64, name: &str) -> String {
            let r = self.grant(user, size).expect("granted");
            let path = format!("{}/{name}.bin", self.root);
            self.h.watch_upload_slot(r.id, &path, 300).unwrap();
            path
        }

        fn usage(&self, user: &str) -> (u64, u64) {
            let u = self.h.upload_usage("example.org", Some(user)).unwrap();
            (u.stored, u.reserved)
        }

        fn check(&self) -> UploadUpkeep {
            self.h.upload_slot_check(&[]).unwrap()
        }
    }

    impl Drop for Setup {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.root);
        }
    }

    fn limits(user_storage: u64, slot_lifetime: u64) -> UploadLimits {
        UploadLimits { user_storage: Some(user_storage), slot_lifetime, ..Default::default() }
    }

    #[test]
    fn a_reservation_holds_while_its_upload_arrives_and_is_counted_when_it_is_done() {
        let s = Setup::new("arriving", limits(20_000, 300));
        let path = s.slot("alice", 11_000, "a");
        s.clock.advance(10);
        fs::write(format!("{path}~"), vec![0u8; 1000]).unwrap();
        assert_eq!(s.check().slots_arriving, 1);
        // Long past the slot's lifetime, the upload still growing: the bytes stay reserved, so a
        // second file that would not fit beside it is refused.
        for _ in 0..5 {
            s.clock.advance(600);
            let grown = fs::metadata(format!("{path}~")).unwrap().len() as usize + 1000;
            fs::write(format!("{path}~"), vec![0u8; grown]).unwrap();
            s.check();
            assert!(s.grant("alice", 11_000).is_none(), "a second slot was granted beside an upload still arriving");
            assert_eq!(s.usage("alice"), (0, 11_000));
        }
        fs::rename(format!("{path}~"), &path).unwrap();
        let done = s.check();
        assert_eq!(done.slots_completed, 1);
        assert_eq!(s.usage("alice"), (6000, 0));
        assert!(s.h.audit_upload_ledger(false).unwrap().is_empty());
        // Deleted by the server: forgotten.
        fs::remove_file(&path).unwrap();
        assert_eq!(s.h.upload_upkeep(&[]).unwrap().files_forgotten, 1);
        assert_eq!(s.usage("alice"), (0, 0));
    }

    #[test]
    fn an_upload_that_stops_growing_lets_its_reservation_go_and_still_counts_if_it_finishes() {
        let s = Setup::new("stalled", limits(20_000, 300));
        let path = s.slot("bob", 11_000, "b");
        fs::write(format!("{path}~"), vec![0u8; 500]).unwrap();
        s.check();
        // Left over by a crash: it never grows again, and after the hold the bytes come back.
        s.clock.advance(HOLD_WHILE_ARRIVING + 1);
        s.check();
        s.h.purge_upload_ledger().unwrap();
        assert_eq!(s.usage("bob"), (0, 0));
        // It grows after all: held again; and once done, counted.
        fs::write(format!("{path}~"), vec![0u8; 900]).unwrap();
        s.check();
        assert_eq!(s.usage("bob"), (0, 11_000));
        fs::rename(format!("{path}~"), &path).unwrap();
        s.check();
        assert_eq!(s.usage("bob"), (900, 0));
        assert!(s.h.audit_upload_ledger(false).unwrap().is_empty());
    }

    #[test]
    fn a_slot_never_used_or_failed_gives_its_bytes_back_once_unusable() {
        let s = Setup::new("unused", limits(20_000, 3600));
        let unused = s.slot("carol", 5000, "unused");
        let failed = s.slot("carol", 6000, "failed");
        fs::write(format!("{failed}~"), vec![0u8; 100]).unwrap();
        s.check();
        // The server deleted the partial file: the upload failed.
        fs::remove_file(format!("{failed}~")).unwrap();
        s.clock.advance(301);
        let done = s.check();
        assert_eq!(done.slots_ended, 2);
        assert_eq!(s.usage("carol"), (0, 0));
        assert!(!Path::new(&unused).exists());
        assert!(s.h.audit_upload_ledger(false).unwrap().is_empty());
    }

    #[test]
    fn a_late_file_is_charged_to_its_slot_even_after_the_reservation_is_purged() {
        let s = Setup::new("late", limits(20_000, 60));
        let path = s.slot("dave", 700, "late");
        // The reservation expires and is purged a day later; the slot row still names dave.
        s.clock.advance(120);
        s.h.purge_upload_ledger().unwrap();
        s.clock.advance(2 * DAY);
        s.h.purge_upload_ledger().unwrap();
        fs::write(&path, vec![0u8; 700]).unwrap();
        assert_eq!(s.check().slots_completed, 1);
        assert_eq!(s.usage("dave"), (700, 0));
        assert_eq!(s.h.upload_usage("example.org", Some("dave")).unwrap().daily, 700);
    }

    #[test]
    fn files_the_ledger_does_not_know_are_audited_then_counted() {
        let s = Setup::new("unknown", limits(20_000, 300));
        // A watched slot's file that a sweep finds before any look at the slots.
        let slotted = s.slot("erin", 300, "slotted");
        fs::write(&slotted, vec![0u8; 300]).unwrap();
        // A file nobody was granted a slot for; partial files and symlinks are not files.
        fs::write(format!("{}/stray.bin", s.root), vec![0u8; 4000]).unwrap();
        fs::write(format!("{}/arriving.bin~", s.root), vec![0u8; 50]).unwrap();
        fs::create_dir_all(format!("{}/sub", s.root)).unwrap();
        fs::write(format!("{}/sub/deep.bin", s.root), vec![0u8; 10]).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", format!("{}/link.bin", s.root)).unwrap();
        let drift = s.h.audit_upload_ledger(false).unwrap();
        let global = drift.iter().find(|d| d.scope == "global").expect("global drift");
        assert_eq!(global.counted_stored - global.stored, 4310);
        let erin = drift.iter().find(|d| d.scope == "user").expect("user drift");
        assert_eq!((erin.username.as_str(), erin.counted_stored, erin.counted_reserved), ("erin", 300, 0));
        let done = s.h.upload_upkeep(&[]).unwrap();
        // The slot's file is counted by the look at the slots; the others by the walk.
        assert_eq!((done.slots_completed, done.files_found, done.files_unattributed), (1, 2, 2));
        assert_eq!(s.usage("erin"), (300, 0));
        assert_eq!(s.h.global_upload_usage().unwrap().stored, 4310);
        assert!(s.h.audit_upload_ledger(false).unwrap().is_empty());
        // Deleting an unattributed file frees global storage.
        fs::remove_file(format!("{}/stray.bin", s.root)).unwrap();
        s.h.upload_upkeep(&[]).unwrap();
        assert_eq!(s.h.global_upload_usage().unwrap().stored, 310);
        assert!(s.h.audit_upload_ledger(false).unwrap().is_empty());
    }

    #[test]
    fn one_walk_settles_every_file_present_and_recorded_only_the_others_are_looked_up() {
        let s = Setup::new("walk-once", limits(10_000_000, 300));
        let kept: Vec<String> = (0..300).map(|i| s.slot("ivan", 10, &format!("kept{i:03}"))).collect();
        for path in &kept {
            fs::write(path, vec![0u8; 10]).unwrap();
        }
        assert_eq!(s.check().slots_completed, 300);
        // One recorded file deleted, one unknown file appeared; an id that walks up is never
        // looked at however it is recorded.
        fs::remove_file(&kept[7]).unwrap();
        fs::write(format!("{}/stray.bin", s.root), vec![0u8; 40]).unwrap();
        let sneaky = format!("{}/../outside.bin", s.root);
        s.h.store().write(|tx| sql::insert_file(tx, &sneaky, "example.org", "ivan", 5, T0).map(|_| ())).unwrap();
        let done = s.h.upload_upkeep(&[]).unwrap();
        assert_eq!((done.files_checked, done.files_forgotten, done.files_found), (301, 1, 1));
        // The deleted one, the unknown one and the id that walks up: not the 299 on disk.
        assert_eq!(done.files_looked_up, 3);
        assert_eq!(s.usage("ivan"), (2990, 0));
        assert_eq!(s.h.global_upload_usage().unwrap().stored, 2990 + 40);
        // Nothing changed: nothing but the id that walks up is looked up again.
        let again = s.h.upload_upkeep(&[]).unwrap();
        assert_eq!((again.files_forgotten, again.files_found, again.files_looked_up), (0, 0, 1));
    }

    #[test]
    fn an_audit_repair_counts_the_files_it_found() {
        let s = Setup::new("repair", limits(20_000, 300));
        let slotted = s.slot("grace", 250, "slotted");
        fs::write(&slotted, vec![0u8; 250]).unwrap();
        fs::write(format!("{}/stray.bin", s.root), vec![0u8; 1000]).unwrap();
        let found = s.h.audit_upload_ledger(true).unwrap();
        assert!(found.iter().any(|d| d.scope == "global" && d.counted_stored - d.stored == 1250), "{found:?}");
        assert!(s.h.audit_upload_ledger(false).unwrap().is_empty());
        assert_eq!(s.usage("grace"), (250, 0));
        assert_eq!(s.h.global_upload_usage().unwrap().stored, 1250);
    }

    #[test]
    fn a_file_found_before_its_watch_is_charged_to_the_slot_owner_once_the_watch_arrives() {
        let s = Setup::new("raced", limits(20_000, 300));
        let r = s.grant("frank", 400).unwrap();
        let path = format!("{}/raced.bin", s.root);
        fs::write(&path, vec![0u8; 400]).unwrap();
        assert_eq!(s.h.upload_upkeep(&[]).unwrap().files_unattributed, 1);
        s.h.watch_upload_slot(r.id, &path, 300).unwrap();
        s.check();
        assert_eq!(s.usage("frank"), (400, 0));
        assert_eq!(s.h.global_upload_usage().unwrap().stored, 400);
        assert!(s.h.audit_upload_ledger(false).unwrap().is_empty());
    }

    #[test]
    fn watched_paths_and_roots_are_strict() {
        let s = Setup::new("strict", limits(20_000, 300));
        let r = s.grant("grace", 10).unwrap();
        for bad in ["relative/x.bin", "/srv/../etc/passwd", "/srv/./x.bin", "", "/srv/a\0b"] {
            assert_eq!(s.h.watch_upload_slot(r.id, bad, 300).unwrap_err().code(), "invalid-argument", "{bad:?}");
            assert_eq!(s.h.watch_upload_root(bad, "~").unwrap_err().code(), "invalid-argument", "{bad:?}");
        }
        assert_eq!(s.h.watch_upload_root(&s.root, "a/b").unwrap_err().code(), "invalid-argument");
        assert_eq!(
            s.h.watch_upload_slot(r.id + 1000, &format!("{}/x.bin", s.root), 300).unwrap_err().code(),
            "not-found"
        );
    }

    #[test]
    fn a_watch_on_the_worker_is_recorded_and_its_failure_reported() {
        // On a store file of its own: failures are told per store, and other tests run beside.
        let store = crate::test_store::TestStore::new("watch-later");
        let h = store.open();
        h.add_domain("example.org").unwrap();
        let root = store.path.parent().unwrap().join("share");
        fs::create_dir_all(&root).unwrap();
        let root = root.to_str().unwrap().to_string();
        h.watch_upload_root(&root, "~").unwrap();
        let UploadDecision::Granted(r) = h.authorize_upload("example.org", "alice", 10).unwrap() else { panic!() };
        let path = format!("{root}/later.bin");
        h.watch_upload_slot_later(r.id, path.clone(), 300).unwrap();
        h.watch_upload_slot_later(r.id + 1000, format!("{root}/nobody.bin"), 300).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let (mut failures, mut last) = (0, None);
        while std::time::Instant::now() < deadline {
            let done = h.upload_slot_check(&[]).unwrap();
            failures += done.watch_failures;
            last = last.or(done.last_watch_failure);
            if failures > 0 && h.store().read(|c| sql::slot(c, &path)).unwrap().is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(failures, 1);
        assert!(last.unwrap().contains("upload reservation"));
        fs::write(&path, b"0123456789").unwrap();
        h.upload_slot_check(&[]).unwrap();
        let u = h.upload_usage("example.org", Some("alice")).unwrap();
        assert_eq!((u.stored, u.reserved), (10, 0));
    }
}
