//! What a check does to a claim: the whole state machine, free of DNS and storage so that every
//! path can be tested with a moved clock.

use serde::Serialize;

use crate::Timestamp;

/// Where a customer's claim on a domain stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClaimState {
    /// Waiting for the proof to appear.
    Pending,
    /// The proof was found; the domain is hosted for this account.
    Verified,
    /// A verified domain whose proof disappeared; hosting continues through the grace period.
    Lost,
    /// The grace period ran out, or another account proved the domain.
    Suspended,
    /// The operator removed the domain, which ended its claims. Only found in a domain's
    /// history: the claim itself is gone, so nothing brings the domain back but a new claim.
    Removed,
}

impl ClaimState {
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimState::Pending => "pending",
            ClaimState::Verified => "verified",
            ClaimState::Lost => "lost",
            ClaimState::Suspended => "suspended",
            ClaimState::Removed => "removed",
        }
    }

    pub(crate) fn from_stored(s: &str) -> Self {
        match s {
            "verified" => ClaimState::Verified,
            "lost" => ClaimState::Lost,
            "suspended" => ClaimState::Suspended,
            "removed" => ClaimState::Removed,
            _ => ClaimState::Pending,
        }
    }
}

/// The outcome of looking for the proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Evidence {
    Found,
    Absent,
    /// DNS did not answer: nothing is concluded from it.
    Unknown,
}

/// The state after a check, with the reason to record when it changed.
pub(crate) fn next(
    state: ClaimState,
    lost_since: Option<Timestamp>,
    evidence: Evidence,
    now: Timestamp,
    grace: i64,
) -> Option<(ClaimState, &'static str)> {
    use ClaimState::*;
    match (state, evidence) {
        (_, Evidence::Unknown) => None,
        (Pending, Evidence::Found) => Some((Verified, "proof found")),
        (Lost, Evidence::Found) => Some((Verified, "proof found again")),
        (Suspended, Evidence::Found) => Some((Verified, "proof found again after suspension")),
        (Verified, Evidence::Absent) => Some((Lost, "proof missing; grace period started")),
        (Lost, Evidence::Absent) if lost_since.is_some_and(|t| now - t >= grace) => {
            Some((Suspended, "proof missing past the grace period"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::ClaimState::*;
    use super::*;

    const G: i64 = 100;

    #[test]
    fn the_whole_machine() {
        assert_eq!(next(Pending, None, Evidence::Absent, 0, G), None);
        assert_eq!(next(Pending, None, Evidence::Found, 0, G).unwrap().0, Verified);
        assert_eq!(next(Verified, None, Evidence::Found, 0, G), None);
        assert_eq!(next(Verified, None, Evidence::Absent, 0, G).unwrap().0, Lost);
        assert_eq!(next(Lost, Some(0), Evidence::Absent, 99, G), None);
        assert_eq!(next(Lost, Some(0), Evidence::Absent, 100, G).unwrap().0, Suspended);
        assert_eq!(next(Lost, Some(0), Evidence::Found, 50, G).unwrap().0, Verified);
        assert_eq!(next(Suspended, None, Evidence::Found, 500, G).unwrap().0, Verified);
        assert_eq!(next(Suspended, None, Evidence::Absent, 500, G), None);
        for s in [Pending, Verified, Lost, Suspended] {
            assert_eq!(next(s, Some(0), Evidence::Unknown, 1_000, G), None, "a DNS failure proves nothing");
        }
    }
}
