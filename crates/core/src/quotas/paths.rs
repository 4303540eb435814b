//! Which recorded file ids the core may look at, and later delete, on disk.
//!
//! Servers record each upload under its path, and the upkeep looks those paths up below the
//! upload directory (the root) they name. Retention will delete what it finds, so the rule is
//! strict now: a file id is touched only when it is the root followed by plain names, and every
//! directory between the root and the file is a real directory. An id with `..` or `.` parts,
//! an empty part (`root//etc/passwd` would be an absolute path once joined), a NUL, or a
//! directory below the root that is a symbolic link (it would lead outside) is never looked at:
//! never forgotten, never deleted. The root itself is the admin's choice and may be a link; it
//! is resolved once.
//!
//! The checks are made when looked at: a directory swapped for a link between the check and the
//! use is not caught here (deleting will open the directories without following links).

use std::collections::HashSet;
use std::io::ErrorKind;
use std::path::PathBuf;

/// An upload directory, resolved, that hands out the paths below it the core may touch.
pub(crate) struct UploadRoot {
    /// The root as the ids spell it, without trailing slashes.
    given: String,
    /// The root with its links resolved: the paths handed out start here.
    real: PathBuf,
    /// Directories below the root (relative, '/'-separated) found to be real directories.
    checked_dirs: HashSet<String>,
}

/// A file name part as the rule allows it: not empty, not `.` or `..`, no NUL.
fn plain(part: &str) -> bool {
    !part.is_empty() && part != "." && part != ".." && !part.contains('\0')
}

/// Whether a file id may name a path at all: no NUL, and no `.` or `..` part. Ids that are not
/// paths (a slot id) pass; ids below a root are held to [`UploadRoot::file`] as well.
pub(crate) fn plain_file_id(id: &str) -> bool {
    !id.contains('\0') && !id.split('/').any(|part| part == "." || part == "..")
}

impl UploadRoot {
    /// The root, when it is an existing directory (an unmounted disk or a typo gives `None`, so
    /// a sweep can never empty the ledger by mistake). The root must be absolute.
    pub(crate) fn open(root: &str) -> Option<Self> {
        let given = root.trim_end_matches('/');
        let dir = if given.is_empty() { "/" } else { given };
        if !dir.starts_with('/') || dir.contains('\0') {
            return None;
        }
        let real = std::fs::canonicalize(dir).ok().filter(|p| p.is_dir())?;
        Some(UploadRoot { given: given.to_string(), real, checked_dirs: HashSet::new() })
    }

    /// The root with its links resolved: every path [`UploadRoot::file`] hands out is below it
    /// (retention opens it and the directories below without following links to delete).
    pub(crate) fn real(&self) -> &std::path::Path {
        &self.real
    }

    /// The path to look at for file id `id`, or `None` when the id is not strictly below this
    /// root (see the module's rule).
    pub(crate) fn file(&mut self, id: &str) -> Option<PathBuf> {
        let rest = id.strip_prefix(&self.given)?.strip_prefix('/')?;
        let parts: Vec<&str> = rest.split('/').collect();
        if !parts.iter().all(|p| plain(p)) {
            return None;
        }
        let mut dir = String::new();
        for part in &parts[..parts.len() - 1] {
            if !dir.is_empty() {
                dir.push('/');
            }
            dir.push_str(part);
            if self.checked_dirs.contains(&dir) {
                continue;
            }
            match std::fs::symlink_metadata(self.real.join(&dir)) {
                Ok(meta) if meta.is_dir() => {
                    self.checked_dirs.insert(dir.clone());
                }
                // Gone: so is everything below it; the file is plainly not there.
                Err(e) if e.kind() == ErrorKind::NotFound => break,
                // A link (or a file) where a directory should be, or a directory that cannot be
                // looked at: not ours to judge.
                _ => return None,
            }
        }
        Some(self.real.join(rest))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    /// A directory of the test's own, removed even when the test fails.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
            std::fs::remove_dir_all(&dir).ok();
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn path(&self) -> &std::path::Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            std::fs::remove_dir_all(&self.0).ok();
        }
    }

    #[test]
    fn only_plain_paths_strictly_below_the_root_are_handed_out() {
        let tmp = TempDir::new("xh-paths");
        let root = tmp.path().join("share");
        std::fs::create_dir_all(root.join("alice/abc")).unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        symlink(&outside, root.join("link")).unwrap();
        let r = root.to_str().unwrap();
        let mut up = UploadRoot::open(&format!("{r}/")).unwrap();
        let real = std::fs::canonicalize(&root).unwrap();
        assert_eq!(up.file(&format!("{r}/f.bin")), Some(real.join("f.bin")));
        assert_eq!(up.file(&format!("{r}/alice/abc/photo.jpg")), Some(real.join("alice/abc/photo.jpg")));
        // A directory that is gone: its files are plainly gone too.
        assert_eq!(up.file(&format!("{r}/bob/x/y.bin")), Some(real.join("bob/x/y.bin")));
        for bad in [
            format!("{r}/../outside/x.bin"),
            format!("{r}/alice/../../outside/x.bin"),
            format!("{r}/./f.bin"),
            format!("{r}//etc/passwd"),
            format!("{r}/alice/"),
            format!("{r}/a\0b"),
            format!("{r}/link/x.bin"),
            format!("{r}-sibling/x.bin"),
            r.to_string(),
            "/etc/passwd".to_string(),
            "relative/f.bin".to_string(),
            "slot-id".to_string(),
        ] {
            assert_eq!(up.file(&bad), None, "{bad:?}");
        }
        // A root that is a link (the admin's choice) is resolved once.
        symlink(&root, tmp.path().join("root-link")).unwrap();
        let linked = tmp.path().join("root-link");
        let mut up = UploadRoot::open(linked.to_str().unwrap()).unwrap();
        assert_eq!(up.file(&format!("{}/f.bin", linked.display())), Some(real.join("f.bin")));
        assert!(UploadRoot::open("relative/root").is_none());
        assert!(UploadRoot::open(tmp.path().join("missing").to_str().unwrap()).is_none());
    }

    #[test]
    fn file_ids_with_dot_parts_or_nul_are_not_names() {
        for good in ["slot-id", "/srv/share/f.bin", "a.b..c", "/srv/..x/y"] {
            assert!(plain_file_id(good), "{good:?}");
        }
        for bad in ["..", "/srv/../etc", "/srv/./x", "a\0b", "x/."] {
            assert!(!plain_file_id(bad), "{bad:?}");
        }
    }
}
