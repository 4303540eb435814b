//! `xmpp-hosting provider …`: settings of the whole service (DNS values, global caps).

use clap::Subcommand;
use xmpp_hosting_core::{Hosting, Result};

use crate::output::Output;

#[derive(Subcommand)]
pub enum ProviderCommand {
    /// Show the provider-wide settings.
    Show,
    /// Change one: `provider set dns.nameservers '["127.0.0.1:53"]'` (VALUE is JSON or a string);
    /// a value that cannot work (a bad address, a missing trust anchor file) is refused.
    Set { setting: String, value: String },
}

impl ProviderCommand {
    /// Whether the command only reads the store (it is then opened read-only).
    pub fn reads_only(&self) -> bool {
        matches!(self, Self::Show)
    }
}

pub fn run(h: &Hosting, out: &Output, cmd: ProviderCommand) -> Result<()> {
    let settings = match cmd {
        ProviderCommand::Show => h.provider_settings()?,
        ProviderCommand::Set { setting, value } => h.set_provider_setting(&setting, &value)?,
    };
    out.show(&settings, |s| println!("{}", serde_json::to_string_pretty(s).expect("serialisable")));
    Ok(())
}
