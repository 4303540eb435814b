//! The one place where xmpp-hosting's rules live.
//!
//! Every binding (Lua for Prosody, the NIF for ejabberd, the C ABI, the CLI) is a thin layer over
//! [`Hosting`]: a rule written in a binding instead of here would be written twice.
//!
//! The store is one SQLite file shared by every process of a deployment (the XMPP server and the
//! admin CLI), so all state goes through [`Hosting`] and nothing is cached across calls that
//! another process could change.

pub mod accounts;
pub mod acme;
pub mod certificates;
pub mod clock;
pub mod dns;
pub mod domain_name;
pub mod domain_users;
pub mod domains;
pub mod error;
mod hosting;
pub mod housekeeping;
pub mod invites;
mod locked;
mod off_loop;
pub mod panel;
pub mod publish;
pub mod quotas;
pub mod retention;
pub mod settings;
mod store;
#[cfg(test)]
mod test_store;
pub mod texts;
pub mod verification;
mod worker;

pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use domain_name::{DomainName, DomainNameError};
pub use domains::Domain;
pub use error::{Error, Result};
pub use hosting::{Hosting, OpenOptions};
pub use housekeeping::{Housekeeping, HousekeepingReport, Schedule};
pub use locked::locked;
pub use off_loop::{
    busy_timeout_setting, lock_timeout_setting, Answer, LaterBecause, NowOrAnswer, NowOrLater, NowOrLaterBecause,
    Retry, BACKGROUND_RETRY,
};
pub use settings::{DomainSettings, ProviderSettings};
pub use worker::{FromPanic, Pending};

/// The library version, as the bindings report it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
