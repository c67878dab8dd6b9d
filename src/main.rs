//! `pic2`: plans and applies a small host's platform from one inventory.
//!
//! This binary only wires: it parses arguments ([`cli`]), loads the inventory, calls the
//! library crates, and prints ([`output`]). Exit codes are decided here: 0 done or nothing to
//! do, 2 `plan` found changes, 1 an error.

/// mimalloc, not glibc's malloc: a no-op plan at 10,000 accounts builds and frees a few
/// hundred thousand small strings and maps, and spent a sixth of its time in malloc and free
/// (user time 0.72 s → 0.57 s). The proxy, in this binary too, pays ~8 MB more RSS for it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;
mod commands;
mod output;
mod report;

use clap::Parser;
use std::process::ExitCode;

/// What a command ended with.
pub enum Outcome {
    Ok,
    /// `plan`: there are changes to apply.
    Changes,
    /// The error was already reported to the user.
    Failed,
}

fn main() -> ExitCode {
    sigpipe::reset();
    // clap's own exit code for a usage error is 2, which is `plan`'s "there are changes":
    // `pic2 plan --prnue; [ $? = 2 ] && pic2 apply --yes` would apply after a typo
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS // --help, --version
            };
        }
    };
    let out = output::Out::new(cli.color, cli.json);
    if matches!(cli.command, cli::Command::Proxy(_)) {
        // before the inventory is read: a SIGHUP from now on waits for the daemon's handler
        if let Err(e) = pic2_proxy::hold_signals() {
            report::error(&out, &e.into());
            return ExitCode::from(1);
        }
    }
    match commands::run(cli, &out) {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Changes) => ExitCode::from(2),
        Ok(Outcome::Failed) => ExitCode::from(1),
        Err(e) => {
            report::error(&out, &e);
            ExitCode::from(1)
        }
    }
}
