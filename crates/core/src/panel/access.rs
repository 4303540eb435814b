//! Who may see which domain. Every route naming a domain asks here first: the owner of a.example
//! gets 403 for everything of b.example (whether b.example exists or not, so nothing is learnt
//! about other customers' domains); the operator's admins see every domain.

use super::routes::Access;
use super::session::Session;
use super::Failure;
use crate::{DomainName, Hosting};

/// The caller's relation to one domain, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// One of the operator's admins.
    Admin,
    /// The account the domain is hosted for (its verified claim).
    Owner,
    /// An account that claimed the domain and may see the records to publish and verify.
    Claimant,
    /// A user of the domain (an account on it), who sees only their own usage and retention.
    Member,
}

fn refused(domain: &str) -> Failure {
    Failure::new(403, "not-allowed", format!("{domain} is not one of your domains"))
}

/// The caller's role on `domain`, or 403.
pub(crate) fn role(hosting: &Hosting, session: &Session, domain: &str) -> Result<Role, Failure> {
    if session.admin {
        return Ok(Role::Admin);
    }
    let name = DomainName::parse(domain).map_err(|_| refused(domain))?;
    let account = session.account.to_lowercase();
    if let Some(hosted) = hosting.domain(name.as_str())? {
        if hosted.settings.owner.as_deref().is_some_and(|o| o.to_lowercase() == account) {
            return Ok(Role::Owner);
        }
    }
    if crate::verification::claimable(name.as_str()).is_ok()
        && hosting.claims(Some(name.as_str()))?.iter().any(|c| c.account.to_lowercase() == account)
    {
        return Ok(Role::Claimant);
    }
    if session.host() == name.as_str() && hosting.domain(name.as_str())?.is_some() {
        return Ok(Role::Member);
    }
    Err(refused(domain))
}

/// Whether `role` may call a route of `access`; 403 otherwise.
pub(crate) fn require(access: Access, role: Role, domain: &str) -> Result<(), Failure> {
    let allowed = match access {
        Access::Asset | Access::Public | Access::Session | Access::Related => true,
        Access::Claimant => matches!(role, Role::Admin | Role::Owner | Role::Claimant),
        Access::Owner => matches!(role, Role::Admin | Role::Owner),
        Access::Member => matches!(role, Role::Admin | Role::Owner | Role::Member),
    };
    if allowed {
        Ok(())
    } else {
        Err(refused(domain))
    }
}
