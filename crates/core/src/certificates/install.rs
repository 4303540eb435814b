//! Installing the stored certificates where a running server reads them.
//!
//! A server hands the core a directory of its own and its [`Layout`]; [`Hosting::install_certificates`]
//! makes that directory hold exactly the certificates the store holds: files written for a new or
//! changed certificate, files of a domain that has none any more (removed, or its certificate
//! dropped) deleted. The answer says what changed, so the server reloads its TLS configuration
//! only then (Prosody: `prosody.reload_config()`, as `prosodyctl cert import` makes it do by
//! SIGHUP; ejabberd: `ejabberd_pkix:add_certfile/del_certfile` and `commit/0`).
//!
//! Comparing the store with the files (rather than remembering what was written) keeps every
//! process right whoever changed the store: the CLI, `prosodyctl` in its own process, another
//! node, the ACME client. Files are written as [`super::export`] writes them (a temporary file
//! with its final mode, then renamed), keys and ejabberd's combined files 0600.
//!
//! The directory must be xmpp-hosting's alone: it deletes files there. A marker file
//! ([`MARKER`]) is written into a directory it starts using; a directory that already holds
//! other files and no marker is refused rather than emptied (someone pointed it at the server's
//! own certificates).

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::export::{write_file, Layout};
use super::{CertificateError, StoredCertificate};
use crate::locked::locked;
use crate::{DomainName, Hosting, Result};

/// The file that marks a directory as xmpp-hosting's (see the module doc).
pub const MARKER: &str = ".xmpp-hosting-certificates";

/// Where a server reads the certificates the core installs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstallTarget {
    pub dir: PathBuf,
    pub layout: Layout,
}

/// What one installation changed. Paths are the files a server reloads (ejabberd adds and
/// deletes them one by one); nothing here holds key material.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InstallReport {
    /// Domains whose files were written (new or changed certificate).
    pub installed: Vec<String>,
    /// Domains whose files were deleted (no certificate in the store any more).
    pub removed: Vec<String>,
    pub files_written: Vec<String>,
    pub files_removed: Vec<String>,
    /// The certificate file a server loads for each installed domain (Prosody's `.crt`,
    /// ejabberd's `.pem`), for servers that add files one by one.
    pub certfiles: Vec<String>,
    /// Every stored domain whose files match the store once this call is done, written by it or
    /// found already written (another process's install may come first: the running server's
    /// housekeeping pass right after `prosodyctl … cert acme` stored a certificate). A command
    /// says "installed" from this, not from `installed`, which only lists what this call wrote.
    pub in_place: Vec<String>,
}

impl InstallReport {
    /// Whether the server has anything to reload.
    pub fn changed(&self) -> bool {
        !(self.installed.is_empty() && self.removed.is_empty())
    }
}

/// The files of one domain in `layout`: (path, contents, mode), the key first (a server that
/// sees the new certificate must find its key), and the file the server loads.
fn files_of(dir: &Path, layout: Layout, s: &StoredCertificate) -> (Vec<(PathBuf, String, u32)>, PathBuf) {
    let chain = s.full_chain_pem();
    match layout {
        Layout::Prosody => {
            let crt = dir.join(format!("{}.crt", s.domain));
            (vec![(dir.join(format!("{}.key", s.domain)), s.key.pem.clone(), 0o600), (crt.clone(), chain, 0o644)], crt)
        }
        Layout::Ejabberd => {
            let pem = dir.join(format!("{}.pem", s.domain));
            (vec![(pem.clone(), format!("{chain}{}", s.key.pem), 0o600)], pem)
        }
    }
}

/// The extensions a layout writes.
fn extensions(layout: Layout) -> &'static [&'static str] {
    match layout {
        Layout::Prosody => &["crt", "key"],
        Layout::Ejabberd => &["pem"],
    }
}

/// Whether `path` already holds `contents` with `mode`.
fn up_to_date(path: &Path, contents: &str, mode: u32) -> bool {
    let Ok(meta) = std::fs::metadata(path) else { return false };
    if meta.permissions().mode() & 0o777 != mode || meta.len() != contents.len() as u64 {
        return false;
    }
    std::fs::read(path).map(|b| b == contents.as_bytes()).unwrap_or(false)
}

/// Makes `dir` usable: created (0750) if missing, refused if it holds files and no marker.
///
/// Two installers may start on the same fresh directory at once (the admin's command and the
/// housekeeping pass): the marker is created in place, never through a temporary file, and it
/// is always the first file an installer writes, so a file seen beside a missing marker that is
/// there a moment later is the other installer's.
fn prepare(dir: &Path) -> Result<(), CertificateError> {
    let fail = |e: std::io::Error| CertificateError::Export(format!("{}: {e}", dir.display()));
    if !dir.exists() {
        std::fs::DirBuilder::new().recursive(true).mode(0o750).create(dir).map_err(fail)?;
    } else if !dir.is_dir() {
        return Err(CertificateError::Export(format!("{} is not a directory", dir.display())));
    }
    let marker = dir.join(MARKER);
    if marker.exists() {
        return Ok(());
    }
    let others = std::fs::read_dir(dir).map_err(fail)?.filter_map(|e| e.ok()).any(|e| e.file_name() != MARKER);
    if others && !marker.exists() {
        return Err(CertificateError::Export(format!(
            "{} holds files xmpp-hosting did not write (no {MARKER} in it): give the hosted domains' \
             certificates a directory of their own, since files of removed domains are deleted there",
            dir.display()
        )));
    }
    let created = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(&marker);
    match created {
        Ok(mut file) => file
            .write_all(b"This directory belongs to xmpp-hosting: it writes and deletes the hosted domains' certificates here.\n")
            .map_err(fail),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(fail(e)),
    }
}

impl Hosting {
    /// Makes `dir` hold exactly the stored certificates in `layout` (see the module doc).
    pub fn install_certificates(&self, dir: &Path, layout: Layout) -> Result<InstallReport> {
        // One install at a time in this process (the admin's command and the housekeeping pass
        // may meet): each reads the store and then makes the files match it, so one working from
        // an older read must not delete what the other just wrote. Another process's install
        // may still interleave; the next housekeeping pass puts the files right.
        static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = locked(&INSTALLING);
        prepare(dir)?;
        let stored = self.store().read(crate::store::certificates::select_all)?;
        let mut report = InstallReport::default();
        let mut keep = BTreeSet::new();
        for s in &stored {
            let (files, certfile) = files_of(dir, layout, s);
            let mut changed = false;
            for (path, contents, mode) in &files {
                keep.insert(path.clone());
                if !up_to_date(path, contents, *mode) {
                    write_file(path, contents, *mode)?;
                    report.files_written.push(path.display().to_string());
                    changed = true;
                }
            }
            if changed {
                report.installed.push(s.domain.clone());
                report.certfiles.push(certfile.display().to_string());
            }
            report.in_place.push(s.domain.clone());
        }
        let fail = |e: std::io::Error| CertificateError::Export(format!("{}: {e}", dir.display()));
        let mut gone = BTreeSet::new();
        for entry in std::fs::read_dir(dir).map_err(fail)? {
            let path = entry.map_err(fail)?.path();
            let (Some(stem), Some(ext)) =
                (path.file_stem().and_then(|s| s.to_str()), path.extension().and_then(|s| s.to_str()))
            else {
                continue;
            };
            // Only what this layout writes, named after a domain; temporary files start with a dot.
            if keep.contains(&path)
                || !extensions(layout).contains(&ext)
                || stem.starts_with('.')
                || DomainName::parse(stem).is_err()
            {
                continue;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                // Another process's install removed it first: what we wanted.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(CertificateError::Export(format!("{}: {e}", path.display())).into()),
            }
            report.files_removed.push(path.display().to_string());
            gone.insert(stem.to_string());
        }
        report.removed = gone.into_iter().collect();
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificates::GenerateOptions;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xh-cert-install-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn installs_changes_and_removes_only_what_changed() {
        let h = Hosting::open_in_memory().unwrap();
        h.add_domain("a.example").unwrap();
        h.add_domain("b.example").unwrap();
        h.generate_certificate("a.example", GenerateOptions::default()).unwrap();
        let dir = tempdir("prosody").join("xmpp-hosting");
        let first = h.install_certificates(&dir, Layout::Prosody).unwrap();
        assert_eq!(first.installed, ["a.example"]);
        assert_eq!(first.certfiles, [dir.join("a.example.crt").display().to_string()]);
        assert!(first.changed());
        assert_eq!(mode(&dir.join("a.example.key")), 0o600);
        assert_eq!(mode(&dir.join("a.example.crt")), 0o644);
        assert_eq!(mode(&dir), 0o750);
        assert_eq!(
            std::fs::read_to_string(dir.join("a.example.crt")).unwrap(),
            h.certificate_pem("a.example").unwrap()
        );

        // Nothing changed: nothing written, nothing for the server to reload; still in place.
        let again = h.install_certificates(&dir, Layout::Prosody).unwrap();
        assert!(!again.changed(), "{again:?}");
        assert!(again.files_written.is_empty());
        assert_eq!(again.in_place, ["a.example"]);

        // A key whose mode someone widened is written again with 0600.
        std::fs::set_permissions(dir.join("a.example.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(h.install_certificates(&dir, Layout::Prosody).unwrap().installed, ["a.example"]);
        assert_eq!(mode(&dir.join("a.example.key")), 0o600);

        h.generate_certificate("b.example", GenerateOptions::default()).unwrap();
        h.generate_certificate("a.example", GenerateOptions::default()).unwrap();
        let both = h.install_certificates(&dir, Layout::Prosody).unwrap();
        assert_eq!(both.installed, ["a.example", "b.example"]);
        assert_eq!(both.in_place, ["a.example", "b.example"]);

        h.remove_domain("a.example").unwrap();
        let removed = h.install_certificates(&dir, Layout::Prosody).unwrap();
        assert_eq!((removed.installed.len(), removed.removed.as_slice()), (0, ["a.example".to_string()].as_slice()));
        assert_eq!(removed.in_place, ["b.example"]);
        assert_eq!(removed.files_removed.len(), 2);
        assert!(!dir.join("a.example.key").exists() && dir.join("b.example.key").exists());
        // The report never carries a key.
        assert!(!serde_json::to_string(&both).unwrap().contains("PRIVATE KEY"));
        std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }

    #[test]
    fn ejabberd_layout_is_one_0600_file_per_domain() {
        let h = Hosting::open_in_memory().unwrap();
        h.add_domain("a.example").unwrap();
        h.generate_certificate("a.example", GenerateOptions::default()).unwrap();
        let dir = tempdir("ejabberd");
        let r = h.install_certificates(&dir, Layout::Ejabberd).unwrap();
        let pem = dir.join("a.example.pem");
        assert_eq!(r.certfiles, [pem.display().to_string()]);
        assert_eq!(mode(&pem), 0o600);
        let text = std::fs::read_to_string(&pem).unwrap();
        assert!(text.starts_with("-----BEGIN CERTIFICATE-----") && text.contains("PRIVATE KEY"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_directory_holding_other_files_is_refused_not_emptied() {
        let h = Hosting::open_in_memory().unwrap();
        let dir = tempdir("foreign");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("operator.example.crt"), "theirs").unwrap();
        let e = h.install_certificates(&dir, Layout::Prosody).unwrap_err();
        assert!(e.to_string().contains("a directory of their own"), "{e}");
        assert!(dir.join("operator.example.crt").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn installers_racing_on_a_fresh_directory_all_succeed() {
        // The admin command's install and the housekeeping pass's certificate step may meet on a
        // directory neither has used yet; each must see the other's files as xmpp-hosting's
        // (Prosody 13.0 once answered "holds files xmpp-hosting did not write").
        let h = std::sync::Arc::new(Hosting::open_in_memory().unwrap());
        for d in ["a.example", "b.example"] {
            h.add_domain(d).unwrap();
            h.generate_certificate(d, GenerateOptions::default()).unwrap();
        }
        let root = tempdir("race");
        for round in 0..40 {
            let dir = root.join(format!("round-{round}"));
            let installers: Vec<_> = (0..4)
                .map(|_| {
                    let (h, dir) = (h.clone(), dir.clone());
                    std::thread::spawn(move || h.install_certificates(&dir, Layout::Prosody))
                })
                .collect();
            for installer in installers {
                let report = installer.join().unwrap();
                assert!(report.is_ok(), "round {round}: {report:?}");
            }
            let mut names: Vec<_> =
                std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
            names.sort();
            assert_eq!(names, [MARKER, "a.example.crt", "a.example.key", "b.example.crt", "b.example.key"]);
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
}
