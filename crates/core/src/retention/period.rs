//! How long something is kept, written the way the servers' admins already write it.
//!
//! Prosody writes periods as `"1w"`, `"30d"`, `"1y"` (`archive_expires_after`; `m` is 31 days
//! and `y` 365.2425 days there), ejabberd counts days, and older Prosody options count seconds.
//! A [`Period`] reads all of these, plus `"never"`, so an admin can copy the value from the
//! server's configuration they are replacing. Anything else is refused with a
//! [`PeriodError`] that says what was wrong, because a misread retention deletes people's data.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Units an admin may write, longest first (the canonical form picks the longest exact one).
/// Month and year are Prosody's (31 days; 365.2425 days), so the same text means the same time.
const UNITS: [(&str, u64, &[&str]); 7] = [
    ("y", 31_556_952, &["y", "year", "years"]),
    ("m", 31 * 86_400, &["m", "month", "months"]),
    ("w", 7 * 86_400, &["w", "week", "weeks"]),
    ("d", 86_400, &["d", "day", "days"]),
    ("h", 3_600, &["h", "hour", "hours"]),
    ("min", 60, &["min", "mins", "minute", "minutes"]),
    ("s", 1, &["s", "sec", "secs", "second", "seconds"]),
];

/// The longest retention accepted: 100 years. Longer is a typo (milliseconds for seconds, an
/// extra zero); "keep for ever" is `never`.
pub const MAX_PERIOD: u64 = 100 * 31_556_952;

/// How long data is kept before a sweep deletes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Period {
    /// Kept for `n` seconds (at least 1).
    After(u64),
    /// Never deleted: no sweep runs for it. The default, so nothing is deleted until an admin
    /// says so.
    #[default]
    Never,
}

/// Why a period was refused, in the admin's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    #[error(
        "a retention period is a number with a unit (\"30d\", \"1w\", \"1y\"), seconds, or \"never\": got nothing"
    )]
    Empty,
    #[error("{0:?} is negative: a retention period is how long data is kept, at least 1 second (or \"never\")")]
    Negative(String),
    #[error(
        "{0:?} is zero: that would delete everything at once; write \"never\" to keep data, or a period such as \"1d\""
    )]
    Zero(String),
    #[error("{0:?} is not a whole number of a unit (write \"36h\" rather than \"1.5d\")")]
    Fraction(String),
    #[error("{text:?} has an unknown unit {unit:?}: use s, min, h, d, w, m (31 days) or y, or \"never\"")]
    Unit { text: String, unit: String },
    #[error(
        "{0:?} is not a retention period: write a number with a unit (\"30d\", \"1w\", \"1y\"), seconds, or \"never\""
    )]
    Unreadable(String),
    #[error("{0:?} is longer than 100 years: write \"never\" to keep data for ever")]
    TooLong(String),
}

impl Period {
    /// Reads a period as an admin writes it: `"30d"`, `"1 week"`, `"3600"` (seconds), `"never"`.
    pub fn parse(text: &str) -> Result<Period, PeriodError> {
        let t = text.trim();
        if t.is_empty() {
            return Err(PeriodError::Empty);
        }
        let lower = t.to_ascii_lowercase();
        if matches!(lower.as_str(), "never" | "forever" | "infinite") {
            return Ok(Period::Never);
        }
        if lower.starts_with('-') {
            return Err(PeriodError::Negative(t.into()));
        }
        let digits_end = lower.find(|c: char| !c.is_ascii_digit()).unwrap_or(lower.len());
        let (number, rest) = lower.split_at(digits_end);
        if number.is_empty() {
            return Err(PeriodError::Unreadable(t.into()));
        }
        let unit = rest.trim_start();
        if unit.starts_with(['.', ',']) {
            return Err(PeriodError::Fraction(t.into()));
        }
        let scale = if unit.is_empty() {
            1
        } else {
            match UNITS.iter().find(|(_, _, names)| names.contains(&unit)) {
                Some((_, seconds, _)) => *seconds,
                None if unit.chars().all(|c| c.is_ascii_alphabetic()) => {
                    return Err(PeriodError::Unit { text: t.into(), unit: unit.into() })
                }
                None => return Err(PeriodError::Unreadable(t.into())),
            }
        };
        let n: u64 = number.parse().map_err(|_| PeriodError::TooLong(t.into()))?;
        if n == 0 {
            return Err(PeriodError::Zero(t.into()));
        }
        match n.checked_mul(scale) {
            Some(seconds) if seconds <= MAX_PERIOD => Ok(Period::After(seconds)),
            _ => Err(PeriodError::TooLong(t.into())),
        }
    }

    /// Seconds kept, `None` for never.
    pub fn seconds(self) -> Option<u64> {
        match self {
            Period::After(s) => Some(s),
            Period::Never => None,
        }
    }

    /// The shorter of two periods (never is the longest).
    pub fn min(self, other: Period) -> Period {
        std::cmp::min(self, other)
    }

    /// The oldest time still kept at `now`: data stored strictly before it goes. `None` when
    /// nothing expires.
    pub fn cutoff(self, now: crate::Timestamp) -> Option<crate::Timestamp> {
        self.seconds().map(|s| now.saturating_sub(s as i64))
    }
}

impl std::fmt::Display for Period {
    /// The shortest exact form: `"1y"`, `"30d"`, `"90min"`, `"3601s"`, `"never"`; reads back as
    /// the same period.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Period::Never => f.write_str("never"),
            Period::After(s) => {
                let (unit, size, _) = UNITS.iter().find(|(_, size, _)| s % size == 0).expect("seconds divide");
                write!(f, "{}{unit}", s / size)
            }
        }
    }
}

impl std::str::FromStr for Period {
    type Err = PeriodError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Period::parse(s)
    }
}

impl Serialize for Period {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Period {
    /// A string as [`Period::parse`] reads it, or a number of seconds (what `set retention.archive
    /// 3600` hands over as JSON).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(serde_json::Number),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Text(t) => t,
            Raw::Number(n) => n.to_string(),
        };
        Period::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_as_the_servers_write_them() {
        for (text, seconds) in [
            ("1w", 604_800),
            ("30d", 2_592_000),
            ("1y", 31_556_952),
            ("2m", 2 * 31 * 86_400),
            ("1 week", 604_800),
            ("3 Days", 259_200),
            ("12h", 43_200),
            ("90min", 5_400),
            ("3600", 3_600),
            ("1s", 1),
            (" 7d ", 604_800),
        ] {
            assert_eq!(Period::parse(text), Ok(Period::After(seconds)), "{text}");
        }
        assert_eq!(Period::parse("never"), Ok(Period::Never));
        assert_eq!(Period::parse("NEVER"), Ok(Period::Never));
    }

    #[test]
    fn nonsense_is_refused_saying_why() {
        for (text, why) in [
            ("", "got nothing"),
            ("-1d", "negative"),
            ("0", "delete everything at once"),
            ("0d", "delete everything at once"),
            ("1.5d", "whole number"),
            ("3 fortnights", "unknown unit \"fortnights\""),
            ("5q", "unknown unit"),
            ("d", "not a retention period"),
            ("1d2h", "not a retention period"),
            ("101y", "longer than 100 years"),
            ("99999999999999999999999", "longer than 100 years"),
            ("18446744073709551615w", "longer than 100 years"),
        ] {
            let e = Period::parse(text).unwrap_err();
            assert!(e.to_string().contains(why), "{text:?}: {e}");
        }
    }

    #[test]
    fn the_written_form_reads_back_the_same() {
        for text in ["1y", "2m", "1w", "30d", "36h", "90min", "3601s", "never"] {
            let p = Period::parse(text).unwrap();
            assert_eq!(p.to_string(), text);
            assert_eq!(Period::parse(&p.to_string()).unwrap(), p);
        }
        assert_eq!(Period::parse("86400").unwrap().to_string(), "1d");
    }

    #[test]
    fn json_takes_text_or_seconds_and_refuses_nonsense() {
        assert_eq!(serde_json::from_str::<Period>("\"1w\"").unwrap(), Period::After(604_800));
        assert_eq!(serde_json::from_str::<Period>("60").unwrap(), Period::After(60));
        assert_eq!(serde_json::to_string(&Period::After(604_800)).unwrap(), "\"1w\"");
        for bad in ["-5", "0", "1.5", "\"soon\"", "null", "true"] {
            assert!(serde_json::from_str::<Period>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn never_is_the_longest_and_cutoffs_follow() {
        assert_eq!(Period::Never.min(Period::After(5)), Period::After(5));
        assert_eq!(Period::After(9).min(Period::After(5)), Period::After(5));
        assert_eq!(Period::After(100).cutoff(1000), Some(900));
        assert_eq!(Period::Never.cutoff(1000), None);
    }
}
