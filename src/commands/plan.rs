//! `pic2 plan`: observe, diff, print. Also the printer `apply` shows before asking.

use crate::cli::PlanArgs;
use crate::output::Out;
use crate::Outcome;
use anyhow::Context;
use pic2_inventory::ValidInventory;
use pic2_plan::{Kind, Options, Plan, System};
use pic2_systems::{ObserveStats, Systems};

/// How many creations and updates the summary lists before "… and N more" (deletions
/// are always listed).
const SUMMARY_LINES: usize = 25;

pub fn options(args: PlanArgs) -> Options {
    Options {
        prune: args.prune,
        drop_data: args.drop_data,
    }
}

/// Connects, observes and plans.
pub fn make(
    inv: &ValidInventory,
    args: PlanArgs,
) -> anyhow::Result<(Systems, Plan, Vec<ObserveStats>)> {
    let mut systems = Systems::connect(inv).context("cannot connect to the platform's servers")?;
    let (observed, stats) =
        pic2_systems::observe(inv, &mut systems).context("cannot read the current state")?;
    let plan = pic2_plan::plan(inv, &observed, options(args));
    // some 100,000 allocations at 10,000 accounts, freed while the plan is shown or applied
    // (a plan that ends the process first loses nothing: the kernel takes the memory back)
    // (when no thread can be made, the memory is freed here, with the closure)
    let _ = std::thread::Builder::new().spawn(move || drop(observed));
    Ok((systems, plan, stats))
}

pub fn run(inv: &ValidInventory, args: PlanArgs, out: &Out) -> anyhow::Result<Outcome> {
    let (_systems, plan, stats) = make(inv, args)?;
    show(inv, &plan, &stats, args, out);
    Ok(if !plan.conflicts.is_empty() {
        Outcome::Failed
    } else if plan.is_empty() {
        Outcome::Ok
    } else {
        Outcome::Changes
    })
}

/// The plan for machines (`--json`).
pub fn json(inv: &ValidInventory, plan: &Plan, stats: &[ObserveStats]) -> serde_json::Value {
    let counts: serde_json::Map<String, serde_json::Value> = System::ALL
        .iter()
        .map(|s| {
            let (c, u, d) = plan.counts(*s);
            (
                s.as_str().to_string(),
                serde_json::json!({ "create": c, "update": u, "delete": d }),
            )
        })
        .collect();
    serde_json::json!({
        "platform": inv.platform.name,
        "changes": plan.changes, "conflicts": plan.conflicts, "held": plan.held,
        "counts": counts, "observed": stats,
        "round_trips": stats.iter().map(|s| s.round_trips).sum::<u32>(),
    })
}

pub fn show(inv: &ValidInventory, plan: &Plan, stats: &[ObserveStats], args: PlanArgs, out: &Out) {
    if out.json {
        out.json(&json(inv, plan, stats));
        return;
    }
    println!(
        "{} `{}` ({})",
        out.bold("Plan for the platform"),
        inv.platform.name,
        inv.source.path().display()
    );
    let read: Vec<String> = stats
        .iter()
        .map(|s| {
            let how = match s.system {
                System::Directory => format!("{} searches", s.round_trips),
                System::Databases => format!("{} queries", s.round_trips),
                System::Files => "walk".to_string(),
                System::Containers => format!("{} lists", s.round_trips),
            };
            format!(
                "{} {} objects ({how}, {:.2} s)",
                s.system.as_str(),
                s.objects,
                s.elapsed.as_secs_f64()
            )
        })
        .collect();
    println!("{}", out.dim(&format!("read: {}", read.join(" · "))));
    println!();

    let rows = System::ALL
        .iter()
        .map(|s| {
            let (c, u, d) = plan.counts(*s);
            let del = if d > 0 {
                out.red(&d.to_string())
            } else {
                d.to_string()
            };
            vec![s.as_str().to_string(), c.to_string(), u.to_string(), del]
        })
        .collect();
    println!(
        "{}",
        out.table(&["system", "create", "update", "delete"], rows)
    );
    println!();

    let limit = if args.detail {
        usize::MAX
    } else {
        SUMMARY_LINES
    };
    // every deletion is listed, however long the plan: one must never hide in "… and N
    // more" above the confirmation prompt
    let mut hidden = 0;
    for (i, change) in plan.changes.iter().enumerate() {
        if i >= limit && change.kind != Kind::Delete && !change.destructive {
            hidden += 1;
            continue;
        }
        let sign = match change.kind {
            Kind::Create => out.green("+"),
            Kind::Update => out.yellow("~"),
            Kind::Delete => out.red("-"),
        };
        let text = if change.destructive {
            out.red(&change.summary)
        } else {
            change.summary.clone()
        };
        println!("  {sign} {text}");
        if args.detail {
            for d in &change.details {
                println!("      {}", out.dim(d));
            }
        }
    }
    if hidden > 0 {
        println!(
            "  {}",
            out.dim(&format!(
                "… and {hidden} more creations and updates (--detail lists them all)"
            ))
        );
    }
    if !plan.held.is_empty() {
        println!();
        println!(
            "{}",
            out.yellow(&format!(
                "Kept ({}): managed by pic2 but no longer in the inventory; deleting needs a flag:",
                plan.held.len()
            ))
        );
        for h in &plan.held {
            println!(
                "  {} {}  {}",
                h.system.as_str(),
                h.subject,
                out.dim(&format!("(needs {})", h.needs))
            );
        }
    }
    if !plan.conflicts.is_empty() {
        println!();
        println!("{}", out.red(&format!("Conflicts ({}): objects in the way that pic2 does not manage. Nothing will be applied until they are solved.", plan.conflicts.len())));
        for c in &plan.conflicts {
            println!(
                "  {} {}: {}",
                c.system.as_str(),
                out.bold(&c.subject),
                c.message
            );
            println!("    {} {}", out.bold("hint:"), c.hint);
        }
    }
    println!();
    if plan.is_empty() && plan.conflicts.is_empty() {
        println!(
            "{}",
            out.green("Nothing to do: the systems match the inventory.")
        );
    } else if plan.conflicts.is_empty() {
        println!(
            "{} change(s) to apply: run `pic2 apply`.",
            plan.changes.len()
        );
    }
}
