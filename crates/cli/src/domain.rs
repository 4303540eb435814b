//! `xmpp-hosting domain …`

use clap::Subcommand;
use xmpp_hosting_core::{Domain, Hosting, Result};

use crate::output::{table, time, Output};

#[derive(Subcommand)]
pub enum DomainCommand {
    /// Start hosting a domain (Unicode or ASCII form).
    Add { name: String },
    /// List hosted domains.
    List,
    /// Show one domain with its settings.
    Show { name: String },
    /// Stop hosting a domain and delete everything stored for it.
    Remove { name: String },
    /// Change one setting: `domain set example.org registration.policy open`
    /// (VALUE is JSON such as 3, true, ["a","b"], null, or else a plain string).
    Set { name: String, setting: String, value: String },
}

pub fn run(h: &Hosting, out: &Output, cmd: DomainCommand) -> Result<()> {
    match cmd {
        DomainCommand::Add { name } => out.show(&h.add_domain(&name)?, |d| println!("added {}", label(d))),
        DomainCommand::List => out.show(&h.domains()?, |ds| {
            let rows: Vec<Vec<String>> = ds
                .iter()
                .map(|d| {
                    vec![
                        label(d),
                        format!("{:?}", d.settings.registration.policy).to_lowercase(),
                        time(Some(d.created_at)),
                    ]
                })
                .collect();
            table(&["DOMAIN", "REGISTRATION", "ADDED"], &rows);
        }),
        DomainCommand::Show { name } => out.show(&h.require_domain(&name)?, |d| {
            println!("domain:   {}", label(d));
            println!("added:    {}", time(Some(d.created_at)));
            println!("updated:  {}", time(Some(d.updated_at)));
            println!("settings: {}", serde_json::to_string_pretty(&d.settings).expect("serialisable"));
        }),
        DomainCommand::Set { name, setting, value } => {
            out.show(&h.set_domain_setting(&name, &setting, &value)?, |d| println!("{} {setting} = {value}", d.name))
        }
        DomainCommand::Remove { name } => {
            h.remove_domain(&name)?;
            out.show(&serde_json::json!({ "removed": name }), |_| println!("removed {name}"));
        }
    }
    Ok(())
}

/// The ASCII name, with the Unicode form beside it when they differ.
fn label(d: &Domain) -> String {
    if d.unicode_name == d.name.as_str() {
        d.unicode_name.clone()
    } else {
        format!("{} ({})", d.name, d.unicode_name)
    }
}
