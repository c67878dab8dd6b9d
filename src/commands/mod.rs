//! One module per subcommand; each takes the loaded inventory and prints through [`Out`].

mod account;
mod apply;
mod inspect;
mod passwd;
mod plan;
mod proxy;
mod site;

use crate::cli::{Cli, Command};
use crate::output::Out;
use crate::Outcome;
use anyhow::Context;
use clap::CommandFactory;
use pic2_inventory::ValidInventory;
use std::path::Path;

pub fn run(cli: Cli, out: &Out) -> anyhow::Result<Outcome> {
    match cli.command {
        Command::Schema => {
            print!("{}", pic2_inventory::JSON_SCHEMA);
            Ok(Outcome::Ok)
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "pic2", &mut std::io::stdout());
            Ok(Outcome::Ok)
        }
        command => {
            let Some(inv) = load(&cli.config, out)? else {
                return Ok(Outcome::Failed);
            };
            match command {
                Command::Check => inspect::check(&inv, out),
                Command::Render { out: dir } => inspect::render(&inv, &dir, out),
                Command::Hosts { site } => inspect::hosts(&inv, site.as_deref(), out),
                Command::Cost => inspect::cost(&inv, out),
                Command::Plan(args) => plan::run(&inv, args, out),
                Command::Apply { plan, yes } => apply::run(&inv, plan, yes, out),
                Command::Account { command } => account::run(&inv, command, out),
                Command::Passwd { listen, user } => passwd::run(&inv, listen, user.as_deref()),
                Command::Proxy(args) => proxy::run(&inv, args),
                Command::Site { command } => site::run(&inv, command, out),
                Command::Schema | Command::Completions { .. } => Ok(Outcome::Ok),
            }
        }
    }
}

/// Reads and validates the inventory; `None` when it has errors (already printed).
fn load(path: &Path, out: &Out) -> anyhow::Result<Option<ValidInventory>> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read the inventory {} (give another with -c FILE or PIC2_CONFIG)",
            path.display()
        )
    })?;
    match pic2_inventory::load(path, text) {
        Ok(inv) => Ok(Some(inv)),
        Err(d) => {
            crate::report::diagnostics(out, &d);
            Ok(None)
        }
    }
}
