//! `xmpp-hosting publish …`: what a domain publishes (its description, and the values it
//! enforces, read from the enforcing settings), the provider file and the policy page as the
//! servers serve them. The rules and the words are the core's; this only parses and prints.

use clap::Subcommand;
use xmpp_hosting_core::publish::UsageStatistics;
use xmpp_hosting_core::{Hosting, Result};

use crate::output::Output;

/// `print!` through the crate's `println!`, which ends quietly on a closed pipe.
macro_rules! print {
    ($($arg:tt)*) => {{
        let text = format!($($arg)*);
        println!("{}", text.strip_suffix('\n').unwrap_or(&text));
    }};
}

#[derive(Subcommand)]
pub enum PublishCommand {
    /// Show a domain's description and the values it enforces.
    Show { domain: String },
    /// Set one field of the description: `publish set example.org jurisdiction de`,
    /// `publish set example.org terms '{"en":"https://example.org/terms"}'`,
    /// `publish set example.org contacts.abuse '["mailto:abuse@example.org"]'`; `null` clears.
    /// A per-language field also takes one language: `publish set example.org terms.de
    /// https://example.org/agb` (`terms.de null` removes that language only).
    /// Registration, limits and retention are published from `domain set`, `quota set` and
    /// `retention set`, not typed here.
    Set {
        domain: String,
        field: String,
        #[arg(allow_hyphen_values = true)]
        value: String,
    },
    /// The XMPP Providers provider file (v2) on stdout, as served at
    /// /.well-known/xmpp-provider-v2.json.
    ProviderFile { domain: String },
    /// The policy page on stdout: HTML, or with --json the same content for web portals.
    Page {
        domain: String,
        /// The reader's language (a BCP 47 tag); the domain's own when not given.
        #[arg(long, default_value = "")]
        language: String,
        /// Accounts to show (approximately); the servers count them when they serve the page.
        #[arg(long)]
        accounts: Option<u64>,
    },
    /// The data forms the servers add to the domain's disco#info (XEP-0157 contacts, policy).
    Disco { domain: String },
}

impl PublishCommand {
    pub fn reads_only(&self) -> bool {
        !matches!(self, PublishCommand::Set { .. })
    }
}

pub fn run(h: &Hosting, out: &Output, cmd: PublishCommand) -> Result<bool> {
    match cmd {
        PublishCommand::Show { domain } => {
            let p = h.publication(&domain)?;
            out.show(&p, |p| print!("{}", p.describe()));
        }
        PublishCommand::Set { domain, field, value } => {
            let p = h.set_publication(&domain, &field, &value)?;
            out.show(&p, |p| print!("{}", p.describe()));
        }
        // The file is JSON whatever --json says.
        PublishCommand::ProviderFile { domain } => println!("{}", h.provider_file(&domain)?.to_json()),
        PublishCommand::Page { domain, language, accounts } => {
            let stats = UsageStatistics { accounts, ..Default::default() };
            let doc = h.policy_document(&domain, &language, stats)?;
            if out.json {
                println!("{}", doc.to_json());
            } else {
                print!("{}", doc.to_html());
            }
        }
        PublishCommand::Disco { domain } => {
            let forms = h.disco_forms(&domain)?;
            out.show(&forms, |forms| {
                for f in forms {
                    println!("{}", f.form_type);
                    for field in &f.fields {
                        println!("  {}: {}", field.var, field.values.join(", "));
                    }
                }
            });
        }
    }
    Ok(true)
}
