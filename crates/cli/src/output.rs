//! How results are printed: JSON for scripts, aligned text for people.

use std::io::{ErrorKind, Write};

use serde::Serialize;

/// Prints one line to stdout (the crate's `println!`). A reader that went away (a closed pipe)
/// ends the command quietly and successfully, as other Unix tools end, rather than with a panic;
/// any other failure to write is an error of one line, exit 1.
pub fn print_line(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(line).and_then(|()| out.write_all(b"\n")) {
        if e.kind() == ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("xmpp-hosting: cannot write the output: {e}");
        std::process::exit(1);
    }
}

/// How a command that worked ends; its errors end with one line on stderr and exit 1 instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Exit 0.
    Yes,
    /// The answer is "no" (a DNS check found a record wrong, a domain did not verify): exit 3,
    /// so a script tells it from a command that could not run.
    No,
    /// A health check failed: exit 1, as the servers' own checks exit (`prosodyctl check certs`,
    /// `ejabberdctl xmpp_hosting_cert_check`), so monitoring written for those reads the same
    /// status from `xmpp-hosting cert check`.
    CheckFailed,
}

impl From<bool> for Answer {
    fn from(yes: bool) -> Self {
        if yes {
            Answer::Yes
        } else {
            Answer::No
        }
    }
}

impl Answer {
    pub fn exit_code(self) -> std::process::ExitCode {
        match self {
            Answer::Yes => std::process::ExitCode::SUCCESS,
            Answer::No => std::process::ExitCode::from(3),
            Answer::CheckFailed => std::process::ExitCode::FAILURE,
        }
    }
}

pub struct Output {
    pub json: bool,
}

impl Output {
    /// Prints `value` as JSON when asked, else calls `human` to print it for people.
    pub fn show<T: Serialize + ?Sized>(&self, value: &T, human: impl FnOnce(&T)) {
        if self.json {
            // Core types serialise plain data; this cannot fail.
            println!("{}", serde_json::to_string_pretty(value).expect("serialisable"));
        } else {
            human(value);
        }
    }
}

/// Prints rows under a header with every column padded to its widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let padded: Vec<String> = cells.zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
}

/// A timestamp as UTC `YYYY-MM-DD HH:MM`, or `never`: the core's ISO 8601 date, shorter.
pub fn time(t: Option<i64>) -> String {
    let Some(t) = t else { return "never".into() };
    let iso = xmpp_hosting_core::invites::utc_iso8601(t);
    let (date, clock) = iso.split_once('T').unwrap_or((&iso, ""));
    format!("{date} {}", clock.get(..5).unwrap_or(clock))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(time(Some(0)), "1970-01-01 00:00");
        assert_eq!(time(Some(1_700_000_000)), "2023-11-14 22:13");
        assert_eq!(time(Some(951_782_400)), "2000-02-29 00:00");
        assert_eq!(time(None), "never");
    }
}
