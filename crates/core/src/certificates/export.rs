//! The files each server reads a domain's certificate from.
//!
//! - Prosody: `<dir>/<domain>.crt` (certificate then chain, 0644) and `<dir>/<domain>.key` (0600),
//!   the names its certificates directory is searched for; a service host such as
//!   `conference.<domain>` without files of its own falls back to its parent domain's.
//! - ejabberd: `<dir>/<domain>.pem` holding certificate, chain and key (0600), for a `certfiles`
//!   glob such as `<dir>/*.pem`; ejabberd sorts the blocks out itself.
//!
//! Each file is written to a temporary name in the same directory, created with its final mode
//! (the key is never readable by others, not even for a moment), synced, then renamed over the
//! old one, so a server reloading meanwhile reads the old pair or the new one, never half a file.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::CertificateError;
use crate::{Hosting, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    Prosody,
    Ejabberd,
}

impl Layout {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "prosody" => Some(Layout::Prosody),
            "ejabberd" => Some(Layout::Ejabberd),
            _ => None,
        }
    }
}

pub(crate) fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), CertificateError> {
    let fail = |e: std::io::Error| CertificateError::Export(format!("{}: {e}", path.display()));
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("certificate");
    // Unique per call, not only per process: two installers in one server may write the same
    // file at once, and must not remove or reuse each other's temporary file.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp).map_err(fail)?;
    // The umask may have taken bits away from the public certificate; the mode is set exactly.
    let done = f
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .and_then(|_| f.write_all(contents.as_bytes()))
        .and_then(|_| f.sync_all())
        .and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = done {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(e));
    }
    Ok(())
}

impl Hosting {
    /// Writes `domain`'s certificate and key into `dir` in `layout`; returns the files written.
    pub fn export_certificate(&self, domain: &str, dir: &Path, layout: Layout) -> Result<Vec<PathBuf>> {
        let s = self.stored_certificate(domain)?;
        if !dir.is_dir() {
            return Err(CertificateError::Export(format!("{} is not a directory", dir.display())).into());
        }
        let chain = s.full_chain_pem();
        let written = match layout {
            Layout::Prosody => {
                let (crt, key) = (dir.join(format!("{}.crt", s.domain)), dir.join(format!("{}.key", s.domain)));
                // The key first: a server seeing the new certificate must find its key.
                write_file(&key, &s.key.pem, 0o600)?;
                write_file(&crt, &chain, 0o644)?;
                vec![crt, key]
            }
            Layout::Ejabberd => {
                let pem = dir.join(format!("{}.pem", s.domain));
                write_file(&pem, &format!("{chain}{}", s.key.pem), 0o600)?;
                vec![pem]
            }
        };
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificates::GenerateOptions;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xh-cert-export-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn prosody_and_ejabberd_files_with_their_modes() {
        let h = Hosting::open_in_memory().unwrap();
        h.add_domain("example.org").unwrap();
        let dir = tempdir("layouts");
        assert_eq!(h.export_certificate("example.org", &dir, Layout::Prosody).unwrap_err().code(), "not-found");
        h.generate_certificate("example.org", GenerateOptions::default()).unwrap();
        let files = h.export_certificate("example.org", &dir, Layout::Prosody).unwrap();
        assert_eq!(files, [dir.join("example.org.crt"), dir.join("example.org.key")]);
        assert_eq!(mode(&files[0]), 0o644);
        assert_eq!(mode(&files[1]), 0o600);
        assert_eq!(std::fs::read_to_string(&files[0]).unwrap(), h.certificate_pem("example.org").unwrap());
        assert!(std::fs::read_to_string(&files[1]).unwrap().contains("BEGIN PRIVATE KEY"));
        let files = h.export_certificate("example.org", &dir, Layout::Ejabberd).unwrap();
        assert_eq!(mode(&files[0]), 0o600);
        let pem = std::fs::read_to_string(&files[0]).unwrap();
        assert!(pem.contains("BEGIN CERTIFICATE") && pem.contains("BEGIN PRIVATE KEY"));
        // Written again over the old files; no temporary file left behind.
        h.export_certificate("example.org", &dir, Layout::Prosody).unwrap();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 3);
        let e = h.export_certificate("example.org", &dir.join("missing"), Layout::Prosody).unwrap_err();
        assert!(e.to_string().contains("is not a directory"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
