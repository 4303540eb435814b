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

/// A timestamp as UTC `YYYY-MM-DD HH:MM`, or `never`.
pub fn time(t: Option<i64>) -> String {
    let Some(t) = t else { return "never".into() };
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}", secs / 3600, secs % 3600 / 60)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
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
