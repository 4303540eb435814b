//! Expired uploads: found in the quota ledger, deleted from disk inside the upload directory
//! only, and forgotten by the ledger in the same step so the quota frees at once.
//!
//! The ledger knows every counted file by its path (the servers record uploads under it). A
//! path is touched only when [`UploadRoot::file`] (the quotas' strict sweep rule: plain names
//! strictly below a watched upload directory, no link on the way) hands it out, and the file
//! is then removed through directory handles opened without following links, so a directory
//! swapped for a link after the check still cannot lead the deletion out. A file that cannot
//! be deleted stays in the ledger (its bytes still count, which is true) and is reported; the
//! next sweep tries it again.

use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Component, Path};

use rustix::fs::{openat, statat, unlinkat, AtFlags, FileType, Mode, OFlags, CWD};

use super::sweep::{StepDone, Target};
use crate::quotas::{forget_recorded_file, UploadRoot};
use crate::store::retention as sql;
use crate::{Hosting, Result, Timestamp};

/// The upload directories expired files may be deleted from.
pub(crate) struct Uploads {
    roots: Vec<UploadRoot>,
}

/// Why a recorded file was not deleted.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// Not strictly below any watched upload directory, or through a link.
    Outside,
    Failed(String),
}

impl Uploads {
    /// The watched upload directories (registered by the servers) plus `extra` ones (a server's
    /// configured directory passed along). Directories that do not exist are left out: their
    /// files are reported, never forgotten.
    pub(crate) fn open(h: &Hosting, extra: &[String]) -> Result<Self> {
        let watched = h.store().read(crate::store::quotas::roots)?;
        let mut names: Vec<String> = extra.iter().map(|r| r.trim_end_matches('/').to_string()).collect();
        names.extend(watched.into_iter().map(|(r, _)| r));
        names.sort();
        names.dedup();
        Ok(Uploads { roots: names.iter().filter_map(|r| UploadRoot::open(r)).collect() })
    }

    /// Deletes one recorded file; `Ok` also when it is gone already.
    fn delete(&mut self, file_id: &str) -> std::result::Result<(), Refusal> {
        for root in &mut self.roots {
            let Some(path) = root.file(file_id) else { continue };
            let Ok(rel) = path.strip_prefix(root.real()) else { continue };
            return match unlink_below(root.real(), rel) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e)
                    if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error())
                        || e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) =>
                {
                    Err(Refusal::Outside)
                }
                Err(e) => Err(Refusal::Failed(e.to_string())),
            };
        }
        Err(Refusal::Outside)
    }
}

/// Removes `rel` below the directory `root`, opening each directory on the way without
/// following links (a link where a directory should be fails with ELOOP or ENOTDIR), and
/// never removing a directory.
fn unlink_below(root: &Path, rel: &Path) -> io::Result<()> {
    let parts: Vec<&OsStr> = rel
        .components()
        .map(|c| match c {
            Component::Normal(p) => Ok(p),
            _ => Err(io::Error::new(io::ErrorKind::InvalidInput, "not a plain path")),
        })
        .collect::<io::Result<_>>()?;
    let Some((name, dirs)) = parts.split_last() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty path"));
    };
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut dir: OwnedFd = openat(CWD, root, flags, Mode::empty())?;
    for part in dirs {
        dir = openat(&dir, *part, flags | OFlags::NOFOLLOW, Mode::empty())?;
    }
    let stat = statat(&dir, *name, AtFlags::SYMLINK_NOFOLLOW)?;
    if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
        return Err(io::Error::new(io::ErrorKind::IsADirectory, "a directory, not an upload"));
    }
    unlinkat(&dir, *name, AtFlags::empty())?;
    Ok(())
}

/// The cursor of an uploads sweep: the last (stored_at, file_id) looked at.
fn parse_cursor(cursor: Option<&str>) -> Option<(Timestamp, &str)> {
    let (at, id) = cursor?.split_once(':')?;
    Some((at.parse().ok()?, id))
}

impl Target for Uploads {
    fn count(&mut self, h: &Hosting, domain: &str, cutoff: Timestamp) -> Result<(i64, i64)> {
        h.store().read(|c| sql::count_expired_files(c, domain, cutoff))
    }

    fn step(
        &mut self,
        h: &Hosting,
        domain: &str,
        cutoff: Timestamp,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<StepDone> {
        let rows = h.store().read(|c| sql::expired_files(c, domain, cutoff, parse_cursor(cursor), limit))?;
        let mut done = StepDone::default();
        let mut gone = Vec::new();
        for (id, size, _) in &rows {
            match self.delete(id) {
                Ok(()) => gone.push((id.as_str(), *size)),
                Err(Refusal::Outside) => done.failures.push(format!(
                    "{id}: not deleted: not inside a watched upload directory (or reached through a link)"
                )),
                Err(Refusal::Failed(why)) => done.failures.push(format!("{id}: not deleted: {why}")),
            }
        }
        h.store().write(|tx| {
            for (id, size) in &gone {
                // Recorded again meanwhile under a newer time? Then it is not ours to forget.
                if sql::file_stored_at(tx, id)?.is_some_and(|at| at < cutoff) && forget_recorded_file(tx, id)? {
                    done.deleted += 1;
                    done.bytes += size;
                }
            }
            Ok(())
        })?;
        done.next = (rows.len() == limit).then(|| {
            let (id, _, at) = &rows[limit - 1];
            format!("{at}:{id}")
        });
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retention::{Kind, SweepOptions, SweepState};
    use crate::ManualClock;
    use std::os::unix::fs::symlink;

    struct Dir(std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn setup(name: &str) -> (Hosting, ManualClock, Dir, String) {
        let dir = std::env::temp_dir().join(format!("xh-retention-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("root/sub")).unwrap();
        let clock = ManualClock::new(1_000_000);
        let h = Hosting::open_in_memory().unwrap().with_clock(clock.clone());
        h.add_domain("example.org").unwrap();
        let root = dir.join("root").to_str().unwrap().to_string();
        h.watch_upload_root(&root, ".part").unwrap();
        (h, clock, Dir(dir), root)
    }

    /// Stores a file of `size` bytes at `rel` below the root, counted in alice's quota.
    fn upload(h: &Hosting, root: &str, rel: &str, size: usize) -> String {
        let path = format!("{root}/{rel}");
        std::fs::write(&path, vec![b'x'; size]).unwrap();
        let crate::quotas::UploadDecision::Granted(r) =
            h.authorize_upload("example.org", "alice", size as i64).unwrap()
        else {
            panic!("denied")
        };
        h.commit_upload(r.id, size as i64, &path).unwrap();
        path
    }

    fn stored(h: &Hosting) -> u64 {
        h.upload_usage("example.org", Some("alice")).unwrap().stored
    }

    #[test]
    fn expired_files_are_deleted_and_their_quota_frees_at_once() {
        let (h, clock, _dir, root) = setup("expire");
        h.set_retention("example.org", "uploads", "1d").unwrap();
        let old = upload(&h, &root, "old", 10);
        let old2 = upload(&h, &root, "sub/old2", 20);
        clock.advance(86_400);
        let new = upload(&h, &root, "new", 5);
        clock.advance(1);
        let dry = h
            .retention_sweep("example.org", Kind::Uploads, &[], &SweepOptions { dry_run: true, ..Default::default() })
            .unwrap();
        assert_eq!((dry.deleted, dry.bytes), (2, 30));
        assert!(Path::new(&old).exists(), "a dry run deletes nothing");
        let rec = h.retention_sweep("example.org", Kind::Uploads, &[], &SweepOptions::default()).unwrap();
        assert_eq!((rec.state, rec.deleted, rec.bytes, rec.failed), (SweepState::Done, 2, 30, 0));
        assert!(!Path::new(&old).exists() && !Path::new(&old2).exists());
        assert!(Path::new(&new).exists(), "newer than the cutoff: kept");
        assert_eq!(stored(&h), 5);
    }

    #[test]
    fn links_and_paths_out_of_the_directory_are_never_followed() {
        let (h, clock, dir, root) = setup("links");
        h.set_retention("example.org", "uploads", "1h").unwrap();
        let outside = dir.0.join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("victim"), b"keep me").unwrap();
        symlink(&outside, format!("{root}/link")).unwrap();
        // Recorded paths that lead out: through a linked directory, with `..`, below no root.
        for (path, size) in [
            (format!("{root}/link/victim"), 7),
            (format!("{root}/../outside/victim"), 7),
            (outside.join("victim").to_str().unwrap().to_string(), 7),
        ] {
            let crate::quotas::UploadDecision::Granted(r) = h.authorize_upload("example.org", "alice", size).unwrap()
            else {
                panic!()
            };
            // The ledger refuses `..` outright; the others are recorded as a server could.
            let _ = h.commit_upload(r.id, size, &path);
        }
        // A link as the upload itself: removing it must not touch what it points to.
        symlink(outside.join("victim"), format!("{root}/file-link")).unwrap();
        let crate::quotas::UploadDecision::Granted(r) = h.authorize_upload("example.org", "alice", 3).unwrap() else {
            panic!()
        };
        h.commit_upload(r.id, 3, &format!("{root}/file-link")).unwrap();
        let before = stored(&h);
        clock.advance(7200);
        let rec = h.retention_sweep("example.org", Kind::Uploads, &[], &SweepOptions::default()).unwrap();
        assert_eq!(std::fs::read(outside.join("victim")).unwrap(), b"keep me");
        assert_eq!(rec.deleted, 1, "only the link inside the root went: {rec:?}");
        assert_eq!(rec.failed, 2, "{rec:?}");
        assert!(rec.errors.iter().all(|e| e.contains("not inside a watched upload directory")), "{:?}", rec.errors);
        assert_eq!(stored(&h), before - 3, "files not deleted still count");
    }

    #[test]
    fn a_directory_swapped_for_a_link_after_the_check_is_not_followed() {
        let (_h, _clock, dir, root) = setup("swap");
        let outside = dir.0.join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("f"), b"keep").unwrap();
        std::fs::remove_dir(format!("{root}/sub")).unwrap();
        symlink(&outside, format!("{root}/sub")).unwrap();
        let real = std::fs::canonicalize(&root).unwrap();
        let e = unlink_below(&real, Path::new("sub/f")).unwrap_err();
        assert!(
            matches!(e.raw_os_error(), Some(n) if n == rustix::io::Errno::LOOP.raw_os_error() || n == rustix::io::Errno::NOTDIR.raw_os_error()),
            "{e}"
        );
        assert!(outside.join("f").exists());
    }

    #[test]
    fn a_file_that_cannot_be_deleted_is_reported_kept_in_the_ledger_and_retried() {
        let (h, clock, _dir, root) = setup("retry");
        h.set_retention("example.org", "uploads", "1h").unwrap();
        // A directory where the upload should be cannot be unlinked as a file.
        let crate::quotas::UploadDecision::Granted(r) = h.authorize_upload("example.org", "alice", 4).unwrap() else {
            panic!()
        };
        std::fs::create_dir(format!("{root}/stuck")).unwrap();
        h.commit_upload(r.id, 4, &format!("{root}/stuck")).unwrap();
        clock.advance(7200);
        let rec = h.retention_sweep("example.org", Kind::Uploads, &[], &SweepOptions::default()).unwrap();
        assert_eq!((rec.deleted, rec.failed), (0, 1));
        assert!(rec.errors[0].contains("stuck: not deleted"), "{:?}", rec.errors);
        assert_eq!(stored(&h), 4);
        std::fs::remove_dir(format!("{root}/stuck")).unwrap();
        let again = h.retention_sweep("example.org", Kind::Uploads, &[], &SweepOptions::default()).unwrap();
        assert_eq!((again.deleted, again.failed), (1, 0), "gone by now: forgotten");
        assert_eq!(stored(&h), 0);
    }

    #[test]
    fn a_sweep_interrupted_part_way_resumes_where_it_stopped() {
        let (h, clock, _dir, root) = setup("resume");
        h.set_retention("example.org", "uploads", "1h").unwrap();
        let files: Vec<String> = (0..25).map(|i| upload(&h, &root, &format!("f{i:02}"), 1)).collect();
        clock.advance(7200);
        let keep = upload(&h, &root, "fresh", 1);
        let part = h
            .retention_sweep(
                "example.org",
                Kind::Uploads,
                &[],
                &SweepOptions { batch: 4, max_steps: Some(2), ..Default::default() },
            )
            .unwrap();
        // Two steps: the first takes its batch of 4; the second takes more or fewer (batches grow
        // while steps are quick and shrink when one took long, as on a loaded machine), at least one.
        assert_eq!((part.state, part.steps), (SweepState::Running, 2));
        assert!(part.deleted >= 5 && part.deleted < 25, "{part:?}");
        let rest = h
            .retention_sweep("example.org", Kind::Uploads, &[], &SweepOptions { batch: 4, ..Default::default() })
            .unwrap();
        assert_eq!((rest.id, rest.state, rest.deleted, rest.parts), (part.id, SweepState::Done, 25, 2));
        assert!(files.iter().all(|f| !Path::new(f).exists()) && Path::new(&keep).exists());
        assert_eq!(stored(&h), 1);
    }
}
