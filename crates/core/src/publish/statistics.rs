//! Usage statistics for the policy page: counted by the server (it knows its accounts and who
//! logged in), handed in through the binding, and published only approximately, so the page
//! says how big the service is without numbers that track people.

use serde::{Deserialize, Serialize};

/// Counts a server hands in; what it cannot count stays `None` and is not shown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UsageStatistics {
    /// Accounts on the domain.
    pub accounts: Option<u64>,
    /// Accounts active in the last 24 hours and 30 days.
    pub daily_active: Option<u64>,
    pub monthly_active: Option<u64>,
}

impl UsageStatistics {
    /// Each count rounded to two significant digits, 1 to 10 written 10, so one account more or
    /// less never shows (none is none).
    pub fn approximate(self) -> UsageStatistics {
        UsageStatistics {
            accounts: self.accounts.map(approximate),
            daily_active: self.daily_active.map(approximate),
            monthly_active: self.monthly_active.map(approximate),
        }
    }
}

/// `n` to two significant digits, 1 to 10 as 10.
pub fn approximate(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    if n <= 10 {
        return 10;
    }
    let mut step = 1;
    while n / step >= 100 {
        step *= 10;
    }
    (n + step / 2) / step * step
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_rounded_so_one_account_does_not_show() {
        assert_eq!(approximate(0), 0);
        assert_eq!(approximate(1), 10);
        assert_eq!(approximate(7), 10);
        assert_eq!(approximate(57), 57);
        assert_eq!(approximate(1_234), 1_200);
        assert_eq!(approximate(1_250), 1_300);
        assert_eq!(approximate(98_765), 99_000);
        assert_eq!(approximate(1_235), approximate(1_236));
    }
}
