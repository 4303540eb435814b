//! The errors of the core, one enum for every binding to map once.
//!
//! Each variant has a stable [`Error::code`] (a short kebab-case word) that the bindings hand to
//! scripts: Lua gets `nil, message, code`, Erlang `{error, {Code, Message}}`, C a status number,
//! the CLI a one-line message. Messages are for people and may change; codes may not.

use crate::domain_name::DomainNameError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A domain name that cannot be hosted; the inner error says which rule it breaks.
    #[error("invalid domain name: {0}")]
    InvalidDomain(#[from] DomainNameError),

    /// A public suffix (`co.uk`, `github.io`): a valid name that nobody can own, so nobody may
    /// claim or host it. Same code as other unhostable names; its own variant so callers can tell.
    #[error("invalid domain name: {0} is a public suffix: nobody can own it, only names below it")]
    PublicSuffix(String),

    /// An argument that is well-typed but unacceptable (an empty username, a negative count...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A retention period that cannot be meant (negative, zero, an unknown unit, over 100
    /// years): retention deletes people's data, so a misread value is refused, never guessed.
    #[error("invalid retention period: {0}")]
    InvalidPeriod(#[from] crate::retention::PeriodError),

    /// A certificate operation refused (an import that does not fit the domain, a POSH file that
    /// is not one...); the inner error says why. Its code is the inner one's.
    #[error("{0}")]
    Certificate(crate::certificates::CertificateError),

    /// An ACME issue or renewal that did not happen (not configured, the customer's CNAME
    /// missing or wrong, the CA or the DNS update failing); the inner error says why.
    #[error("{0}")]
    Acme(crate::acme::AcmeError),

    /// The thing asked for does not exist.
    #[error("{what} not found: {key}")]
    NotFound { what: &'static str, key: String },

    /// The thing to create exists already.
    #[error("{what} already exists: {key}")]
    AlreadyExists { what: &'static str, key: String },

    /// The caller may not do this (a user creating invites where only admins may, ...).
    #[error("not allowed: {0}")]
    NotAllowed(String),

    /// The database file could not be used (locked past the busy timeout, corrupt, unwritable...).
    #[error("store error: {0}")]
    Store(#[from] rusqlite::Error),

    /// The database schema could not be brought to this version of the library.
    #[error("store migration failed: {0}")]
    Migration(#[from] rusqlite_migration::Error),

    /// The machine failed us (no OS randomness, no thread for the worker): not the caller's fault.
    #[error("internal error: {0}")]
    Internal(String),

    /// Stored data that this version cannot read (for example settings written by a newer one).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

impl Error {
    /// The stable machine-readable name of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidDomain(_) | Error::PublicSuffix(_) => "invalid-domain",
            Error::InvalidArgument(_) | Error::InvalidPeriod(_) => "invalid-argument",
            Error::NotFound { .. } => "not-found",
            Error::AlreadyExists { .. } => "already-exists",
            Error::NotAllowed(_) => "not-allowed",
            Error::Store(_) => "store",
            Error::Migration(_) => "store",
            Error::Corrupt(_) => "corrupt",
            Error::Internal(_) => "internal",
            Error::Certificate(e) => e.code(),
            Error::Acme(e) => e.code(),
        }
    }

    /// Whether the store gave up because another connection held the lock it needed
    /// (SQLITE_BUSY, by its result code): the call may succeed later, unlike any other store
    /// error. See [`crate::Hosting::now_or_later`].
    pub fn is_busy(&self) -> bool {
        matches!(self, Error::Store(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::DatabaseBusy)
    }

    pub(crate) fn not_found(what: &'static str, key: impl Into<String>) -> Self {
        Error::NotFound { what, key: key.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_words() {
        let e = Error::not_found("domain", "example.org");
        assert_eq!(e.code(), "not-found");
        assert_eq!(e.to_string(), "domain not found: example.org");
        let e: Error = DomainNameError::Empty.into();
        assert_eq!(e.code(), "invalid-domain");
    }
}
