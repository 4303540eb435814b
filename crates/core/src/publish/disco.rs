//! What a domain adds to its disco#info (XEP-0030) as XEP-0128 data forms, as plain data each
//! server turns into its own stanza type:
//!
//! - the XEP-0157 contact addresses: FORM_TYPE `http://jabber.org/network/serverinfo`, one
//!   `<role>-addresses` field per role that has addresses (what Prosody's `contact_info` and
//!   ejabberd's `mod_disco` `server_info` options are typed for by hand);
//! - the enforced policy in a form of our own ([`POLICY_FORM_TYPE`]), so a client can show the
//!   registration rule and how long data is kept without fetching the web page, in the provider
//!   file's units.
//!
//! A form is left out when it would be empty.

use serde::Serialize;

use super::description::{pick, Description};
use super::enforced::{megabytes, period_days, Enforced};

/// XEP-0157's FORM_TYPE.
pub const SERVERINFO_FORM_TYPE: &str = "http://jabber.org/network/serverinfo";
/// Our own FORM_TYPE for the enforced policy (XEP-0068: a URI we name, not registered).
pub const POLICY_FORM_TYPE: &str = "urn:x-xmpp-hosting:policy:0";

/// One XEP-0004 form of type `result` with a hidden FORM_TYPE field and text fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiscoForm {
    pub form_type: String,
    pub fields: Vec<DiscoField>,
}

/// A field: its `var` and its values (several for a `list-multi`/`text-multi` field).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiscoField {
    pub var: String,
    pub values: Vec<String>,
}

fn field(var: &str, values: Vec<String>) -> DiscoField {
    DiscoField { var: var.into(), values }
}

/// The forms a domain publishes in its disco#info.
pub(crate) fn forms(d: &Description, e: &Enforced) -> Vec<DiscoForm> {
    let mut out = Vec::new();
    let contacts: Vec<DiscoField> = d
        .contacts
        .roles()
        .iter()
        .filter(|(_, a)| !a.is_empty())
        .map(|(role, a)| field(&format!("{role}-addresses"), a.to_vec()))
        .collect();
    if !contacts.is_empty() {
        out.push(DiscoForm { form_type: SERVERINFO_FORM_TYPE.into(), fields: contacts });
    }
    let lang = d.language.as_deref().unwrap_or("en");
    let mut policy = vec![
        field("registration", vec![e.registration_word().into()]),
        field("max-upload-total-size-mb", vec![megabytes(e.user_storage).to_string()]),
        field("max-upload-storage-days", vec![period_days(e.upload_retention).to_string()]),
        field("max-archive-storage-days", vec![period_days(e.archive_retention).to_string()]),
    ];
    if let Some(max) = e.max_file_size {
        policy.push(field("max-file-size", vec![max.to_string()]));
    }
    if let Some((_, text)) = pick(&d.description, lang, lang) {
        policy.push(field("description", vec![text.clone()]));
    }
    if let Some(c) = &d.jurisdiction {
        policy.push(field("jurisdiction", vec![c.to_ascii_lowercase()]));
    }
    if let Some(room) = &d.support_room {
        policy.push(field("support-room", vec![format!("xmpp:{room}?join")]));
    }
    for (name, links) in [("terms", &d.terms), ("privacy", &d.privacy), ("account-deletion", &d.account_deletion)] {
        if let Some((_, url)) = pick(links, lang, lang) {
            policy.push(field(name, vec![url.clone()]));
        }
    }
    out.push(DiscoForm { form_type: POLICY_FORM_TYPE.into(), fields: policy });
    out
}

impl Enforced {
    /// `open`, `invite` or `closed`.
    pub fn registration_word(&self) -> &'static str {
        match self.registration {
            crate::invites::RegistrationPolicy::Open => "open",
            crate::invites::RegistrationPolicy::Invite => "invite",
            crate::invites::RegistrationPolicy::Closed => "closed",
        }
    }
}
