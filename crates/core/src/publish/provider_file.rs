//! The XMPP Providers provider file, version 2 (`/.well-known/xmpp-provider-v2.json` on the XMPP
//! domain), as the format's generator and ejabberd's `mod_providers` write it: camelCase names,
//! sizes in decimal megabytes per user, times in days (`0` no limit, `-1` under one unit),
//! lower-case country codes, language → https URL maps. Registration, the version, contact
//! addresses and the largest file are not in the file: clients ask the server over XMPP.
//!
//! The three numbers come from the enforced settings ([`super::Enforced`]); everything else from
//! the description, and what the admin did not set is left out (except `busFactor`, whose "not
//! applicable" the format writes as `-1`).

use serde::Serialize;

use super::description::{Description, Organization, PerLanguage};
use super::enforced::{megabytes, period_days, Enforced};

/// The provider file's content, in the format's field order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderFile {
    #[serde(skip_serializing_if = "PerLanguage::is_empty")]
    pub website: PerLanguage<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alternative_jids: Vec<String>,
    /// `-1` when not applicable (not set).
    pub bus_factor: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization: Option<Organization>,
    #[serde(skip_serializing_if = "PerLanguage::is_empty")]
    pub password_reset: PerLanguage<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_testing: Option<bool>,
    /// Per user, decimal MB: the domain's `uploads.user_storage`.
    pub maximum_http_file_upload_total_size: i64,
    /// Days: the domain's `retention.uploads`.
    pub maximum_http_file_upload_storage_time: i64,
    /// Days: the domain's `retention.archive` (users may only choose shorter).
    pub maximum_message_archive_management_storage_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub professional_hosting: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub free_of_charge: Option<bool>,
    #[serde(skip_serializing_if = "PerLanguage::is_empty")]
    pub legal_notice: PerLanguage<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub server_locations: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

impl ProviderFile {
    pub(crate) fn new(d: &Description, e: &Enforced) -> ProviderFile {
        // The format's language keys are lower case (`en`, `de`); tags compare case-blind.
        let lower = |m: &PerLanguage<String>| m.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect();
        ProviderFile {
            website: lower(&d.website),
            alternative_jids: d.alternative_jids.iter().map(|j| j.to_ascii_lowercase()).collect(),
            bus_factor: d.bus_factor.map_or(-1, i64::from),
            organization: d.organization,
            password_reset: lower(&d.password_reset),
            server_testing: d.server_testing,
            maximum_http_file_upload_total_size: megabytes(e.user_storage),
            maximum_http_file_upload_storage_time: period_days(e.upload_retention),
            maximum_message_archive_management_storage_time: period_days(e.archive_retention),
            professional_hosting: d.professional_hosting,
            free_of_charge: d.free_of_charge,
            legal_notice: lower(&d.legal_notice),
            server_locations: d.server_locations.iter().map(|c| c.to_ascii_lowercase()).collect(),
            since: d.since.clone(),
        }
    }

    /// The file's text as served (pretty-printed, as the generator writes it).
    pub fn to_json(&self) -> String {
        // Plain data of strings, numbers and maps: serialising it cannot fail.
        serde_json::to_string_pretty(self).expect("provider file serialises")
    }
}
