//! `xmpp-hosting`: the admin command line over the same store the servers use.
//!
//! Human output by default, `--json` for scripts; on error one line on stderr and exit 1
//! (usage errors exit 2, as clap does).

/// Every line the CLI prints goes through [`output::print_line`], not std's `println!`, which
/// panics ("Broken pipe", exit 101) when the reader went away (`xmpp-hosting quota show D |
/// head -1`). Defined before the modules, so it replaces `println!` in all of them.
macro_rules! println {
    () => {
        $crate::output::print_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::print_line(format_args!($($arg)*))
    };
}

mod account;
mod cert;
mod dns;
mod domain;
mod housekeeping;
mod invite;
mod output;
mod provider;
mod publish;
mod quota;
mod retention;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use xmpp_hosting_core::{Hosting, OpenOptions};

#[derive(Parser)]
#[command(name = "xmpp-hosting", version = xmpp_hosting_core::VERSION, about = "Administer an xmpp-hosting store")]
struct Cli {
    /// The store file (the one the Prosody or ejabberd module opens).
    #[arg(long, env = "XMPP_HOSTING_DB", global = true)]
    db: Option<PathBuf>,

    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Hosted domains: add, list, show, set, remove; customers' claims: claim, verify, claims, history.
    #[command(subcommand)]
    Domain(domain::DomainCommand),
    /// Registration invites: create, list, show, revoke, purge, audit.
    #[command(subcommand)]
    Invite(invite::InviteCommand),
    /// Upload limits and usage: show, set, clear, global.
    #[command(subcommand)]
    Quota(quota::QuotaCommand),
    /// The DNS tester and re-verification: check, recheck.
    #[command(subcommand)]
    Dns(dns::DnsCommand),
    /// Settings of the whole service: show, set.
    #[command(subcommand)]
    Provider(provider::ProviderCommand),
    /// User accounts: removed (revokes what acts in the name of an account removed elsewhere).
    #[command(subcommand)]
    Account(account::AccountCommand),
    /// The periodic upkeep the servers' timers run: run (for cron, where no server runs it), schedule.
    #[command(subcommand)]
    Housekeeping(housekeeping::HousekeepingCommand),
    /// How long archives and uploads are kept: show, set, sweep, log.
    #[command(subcommand)]
    Retention(retention::RetentionCommand),
    /// A domain's certificate: generate, show, posh, csr, import, export, check.
    #[command(subcommand)]
    Cert(cert::CertCommand),
    /// What a domain publishes: show, set, provider-file, page, disco.
    #[command(subcommand)]
    Publish(publish::PublishCommand),
}

impl Command {
    fn reads_only(&self) -> bool {
        match self {
            Command::Domain(cmd) => cmd.reads_only(),
            Command::Dns(cmd) => cmd.reads_only(),
            Command::Provider(cmd) => cmd.reads_only(),
            Command::Retention(cmd) => cmd.reads_only(),
            Command::Cert(cmd) => cmd.reads_only(),
            Command::Publish(cmd) => cmd.reads_only(),
            Command::Invite(invite::InviteCommand::List { .. } | invite::InviteCommand::Audit { .. }) => true,
            Command::Quota(quota::QuotaCommand::Show { .. } | quota::QuotaCommand::Global) => true,
            _ => false,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        // The command worked: 0, 3 when its answer is "no", 1 for a failed check (output::Answer).
        Ok(answer) => answer.exit_code(),
        Err(message) => {
            eprintln!("xmpp-hosting: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<output::Answer, String> {
    let db = cli.db.ok_or("no store given: pass --db PATH or set XMPP_HOSTING_DB")?;
    // Commands that only read open the store read-only: they work for an admin who may only read
    // it, and on a full disk. A store that does not exist yet is created (empty) as before.
    // An admin's command may wait out a server's or a backup's write for a while; the servers'
    // own handles wait briefly because their event loops wait with them.
    let options = OpenOptions { busy_timeout: Duration::from_secs(15), ..OpenOptions::default() };
    let opened = if cli.command.reads_only() && db.exists() {
        Hosting::open_read_only(&db)
    } else {
        Hosting::open_with(&db, &options)
    };
    let hosting = opened.map_err(|e| format!("cannot open {}: {e}", db.display()))?;
    let out = output::Output { json: cli.json };
    let result = match cli.command {
        Command::Domain(cmd) => domain::run(&hosting, &out, cmd),
        Command::Invite(cmd) => invite::run(&hosting, &out, cmd).map(|()| true),
        Command::Quota(cmd) => quota::run(&hosting, &out, cmd),
        Command::Dns(cmd) => dns::run(&hosting, &out, cmd),
        Command::Provider(cmd) => provider::run(&hosting, &out, cmd).map(|()| true),
        Command::Account(cmd) => account::run(&hosting, &out, cmd).map(|()| true),
        Command::Housekeeping(cmd) => housekeeping::run(&hosting, &out, cmd),
        Command::Retention(cmd) => retention::run(&hosting, &out, cmd),
        Command::Cert(cmd) => return cert::run(&hosting, &out, cmd).map_err(|e| e.to_string()),
        Command::Publish(cmd) => publish::run(&hosting, &out, cmd),
    };
    result.map(output::Answer::from).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// clap checks conflicting names, bad defaults and globals only when asked: ask once here
    /// rather than at a user's first odd invocation.
    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli = Cli::try_parse_from(["xmpp-hosting", "domain", "list", "--json", "--db", "s.db"]).unwrap();
        assert!(cli.json);
        assert_eq!(cli.db.as_deref(), Some(std::path::Path::new("s.db")));
        assert!(matches!(cli.command, Command::Domain(domain::DomainCommand::List)));
    }

    #[test]
    fn usage_errors_are_clap_errors_not_ours() {
        let err = Cli::try_parse_from(["xmpp-hosting", "domain", "add"]).err().expect("NAME is required");
        assert_eq!(err.exit_code(), 2);
    }
}
