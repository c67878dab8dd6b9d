//! `pic2 site maintenance on|off DOMAIN`: flips the switch the running proxy reads (no reload).

use crate::cli::{OnOff, SiteCommand};
use crate::output::Out;
use crate::Outcome;
use anyhow::{bail, Context};
use pic2_inventory::ValidInventory;
use std::path::Path;

pub fn run(inv: &ValidInventory, command: SiteCommand, out: &Out) -> anyhow::Result<Outcome> {
    let SiteCommand::Maintenance { state, domain } = command;
    let wanted = domain.trim_end_matches('.').to_ascii_lowercase();
    let routes = pic2_render::proxy::routes(inv);
    let Some(site) = routes.sites.iter().find(|r| r.hosts.contains(&wanted)) else {
        bail!(
            "no site or alias named {domain} in {}",
            inv.source.path().display()
        );
    };
    let on = state == OnOff::On;
    let dir = Path::new(&routes.settings.state_dir);
    pic2_proxy::maintenance::set(dir, &site.name, on)
        .with_context(|| format!("cannot switch maintenance of {}", site.name))?;
    if out.json {
        out.json(&serde_json::json!({ "site": site.name, "maintenance": on }));
        return Ok(Outcome::Ok);
    }
    let word = if on {
        out.yellow("on")
    } else {
        out.green("off")
    };
    println!(
        "maintenance {word} for {} (the running proxy sees it within a second)",
        site.name
    );
    Ok(Outcome::Ok)
}
