//! `pic2 account set-password`: the admin sets a password for a user (e.g. at migration
//! time), through the Password Modify operation so the directory hashes it.

use crate::cli::AccountCommand;
use crate::output::Out;
use crate::Outcome;
use anyhow::Context;
use pic2_inventory::ValidInventory;
use std::io::BufRead;

/// The shortest password accepted here; the self-service application applies its own policy.
const MIN_LENGTH: usize = 12;

pub fn run(inv: &ValidInventory, command: AccountCommand, out: &Out) -> anyhow::Result<Outcome> {
    match command {
        AccountCommand::SetPassword { name, stdin } => {
            let Some(account) = inv.accounts.keys().find(|a| a.as_str() == name) else {
                let hint = pic2_inventory::nearest(&name, inv.accounts.keys().map(|a| a.as_str()))
                    .map(|n| format!(" (did you mean {n}?)"))
                    .unwrap_or_default();
                anyhow::bail!(
                    "no account `{name}` in {}{hint}",
                    inv.source.path().display()
                );
            };
            let password = if stdin {
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .context("cannot read the password from stdin")?;
                line.trim_end_matches(['\n', '\r']).to_string()
            } else {
                let first = rpassword::prompt_password(format!("New password for {name}: "))
                    .context("cannot read the password from the terminal (use --stdin)")?;
                let again =
                    rpassword::prompt_password("Again: ").context("cannot read the password")?;
                anyhow::ensure!(
                    first == again,
                    "the two passwords differ; nothing was changed"
                );
                first
            };
            anyhow::ensure!(
                password.chars().count() >= MIN_LENGTH,
                "the password must have at least {MIN_LENGTH} characters; nothing was changed"
            );
            anyhow::ensure!(
                !password.to_lowercase().contains(name.as_str()),
                "the password must not contain the account name; nothing was changed"
            );
            let mut dir =
                pic2_systems::Directory::connect(inv).context("cannot connect to the directory")?;
            pic2_systems::set_password(&mut dir, &inv.account_dn(account), &password)?;
            if out.json {
                out.json(&serde_json::json!({ "account": name, "password_set": true }));
            } else {
                println!(
                    "{} password of {name} set (stored hashed by the directory).",
                    out.green("✓")
                );
            }
            Ok(Outcome::Ok)
        }
    }
}
