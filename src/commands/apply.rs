//! `pic2 apply`: lock, plan, show, confirm, apply with progress.

use crate::cli::PlanArgs;
use crate::output::Out;
use crate::Outcome;
use anyhow::Context;
use pic2_inventory::ValidInventory;
use pic2_systems::{ApplyEvent, Lock};
use std::io::{BufRead, IsTerminal, Write};
use std::time::Instant;

pub fn run(inv: &ValidInventory, args: PlanArgs, yes: bool, out: &Out) -> anyhow::Result<Outcome> {
    let _lock = Lock::acquire(inv.platform.name.as_str())?;
    let (mut systems, plan, stats) = super::plan::make(inv, args)?;
    if !out.json {
        super::plan::show(inv, &plan, &stats, args, out);
        return Ok(match execute(&plan, &mut systems, yes, out)? {
            Done::Applied { total, seconds } => {
                println!(
                    "{} applied {total} change(s) in {seconds:.2} s.",
                    out.green("✓")
                );
                Outcome::Ok
            }
            Done::NothingToDo => Outcome::Ok,
            Done::Refused => Outcome::Failed,
        });
    }
    // One JSON document: the plan, then what became of it.
    let mut doc = super::plan::json(inv, &plan, &stats);
    let (outcome, what) = match execute(&plan, &mut systems, yes, out) {
        Ok(Done::Applied { total, seconds }) => (
            Outcome::Ok,
            serde_json::json!({ "applied": total, "seconds": seconds }),
        ),
        Ok(Done::NothingToDo) => (Outcome::Ok, serde_json::json!({ "applied": 0 })),
        Ok(Done::Refused) => (Outcome::Failed, serde_json::json!({ "applied": 0 })),
        Err(e) => (Outcome::Failed, crate::report::error_json(&e)),
    };
    if let (Some(doc), serde_json::Value::Object(what)) = (doc.as_object_mut(), what) {
        doc.extend(what);
    }
    out.json(&doc);
    Ok(outcome)
}

/// What [`execute`] did with a plan.
enum Done {
    Applied {
        total: usize,
        seconds: f64,
    },
    NothingToDo,
    /// Conflicts, or the admin said no: nothing was applied.
    Refused,
}

/// Confirms (unless `yes`) and applies the plan, with progress.
fn execute(
    plan: &pic2_plan::Plan,
    systems: &mut pic2_systems::Systems,
    yes: bool,
    out: &Out,
) -> anyhow::Result<Done> {
    if !plan.conflicts.is_empty() {
        return Ok(Done::Refused);
    }
    if plan.is_empty() {
        return Ok(Done::NothingToDo);
    }
    if !yes {
        if !std::io::stdin().is_terminal() {
            anyhow::bail!(
                "not on a terminal: review the plan above, then run `pic2 apply --yes` to apply it"
            );
        }
        eprint!("Apply these {} change(s)? [y/N] ", plan.changes.len());
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .context("cannot read the answer")?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "oui" | "o") {
            eprintln!("Nothing applied.");
            return Ok(Done::Refused);
        }
    }
    let started = Instant::now();
    let total = plan.changes.len();
    let bar = (!out.json && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(total as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {wide_msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    // Without a terminal (logs, CI), one line per change for small plans, one per percent for
    // large ones.
    let every = (total / 100).max(1);
    let result = pic2_systems::apply(plan, systems, &mut |event| match event {
        ApplyEvent::Started { change, .. } => {
            if let Some(bar) = &bar {
                bar.set_message(change.summary.clone());
            }
        }
        ApplyEvent::Finished {
            index,
            total,
            change,
        } => {
            if let Some(bar) = &bar {
                bar.inc(1);
            } else if !out.json && (total <= 200 || (index + 1) % every == 0 || index + 1 == total)
            {
                eprintln!("[{}/{total}] {}", index + 1, change.summary);
            }
        }
        // a long change (a walk re-owning files), at most once a second
        ApplyEvent::Progress {
            index,
            total,
            change,
            done,
        } => {
            if let Some(bar) = &bar {
                bar.set_message(format!("{} ({done} entries looked at)", change.summary));
            } else if !out.json {
                eprintln!(
                    "[{}/{total}] … {done} entries looked at: {}",
                    index + 1,
                    change.summary
                );
            }
        }
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    match result {
        Ok(()) => Ok(Done::Applied {
            total,
            seconds: started.elapsed().as_secs_f64(),
        }),
        Err((index, e)) => {
            let change = plan
                .changes
                .get(index)
                .map(|c| c.summary.clone())
                .unwrap_or_default();
            Err(anyhow::Error::new(e).context(format!(
                "change {}/{total} failed: {change}. The {index} change(s) before it are done; fix the cause and run `pic2 apply` again to finish",
                index + 1
            )))
        }
    }
}
