//! The commands that only read the inventory: check, render, hosts, cost.

use crate::output::Out;
use crate::Outcome;
use anyhow::Context;
use pic2_inventory::ValidInventory;
use pic2_render::cost::euros;
use std::path::Path;

pub fn check(inv: &ValidInventory, out: &Out) -> anyhow::Result<Outcome> {
    let counts = serde_json::json!({
        "hosts": inv.hosts.len(), "runtimes": inv.runtimes.len(), "accounts": inv.accounts.len(),
        "sites": inv.sites.len(), "databases": inv.databases.len(), "lists": inv.lists.len(),
    });
    if out.json {
        out.json(&serde_json::json!({ "valid": true, "diagnostics": [], "counts": counts }));
    } else {
        println!(
            "{} {} is valid: {} hosts, {} runtimes, {} accounts, {} sites, {} databases, {} lists",
            out.green("✓"),
            inv.source.path().display(),
            inv.hosts.len(),
            inv.runtimes.len(),
            inv.accounts.len(),
            inv.sites.len(),
            inv.databases.len(),
            inv.lists.len()
        );
    }
    Ok(Outcome::Ok)
}

pub fn render(inv: &ValidInventory, dir: &Path, out: &Out) -> anyhow::Result<Outcome> {
    let files = pic2_render::all(inv);
    for f in &files {
        let path = dir.join(&f.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, &f.contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
        let mode = std::os::unix::fs::PermissionsExt::from_mode(f.mode);
        std::fs::set_permissions(&path, mode)
            .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    }
    if out.json {
        let list: Vec<_> = files
            .iter()
            .map(|f| serde_json::json!({ "path": dir.join(&f.path), "bytes": f.contents.len() }))
            .collect();
        out.json(&list);
    } else {
        for f in &files {
            println!("{} {}", out.green("wrote"), dir.join(&f.path).display());
        }
    }
    Ok(Outcome::Ok)
}

pub fn hosts(inv: &ValidInventory, site: Option<&str>, out: &Out) -> anyhow::Result<Outcome> {
    if let Some(s) = site {
        let known = inv
            .sites
            .iter()
            .any(|site| inv.site_domains(site).any(|d| d.as_str() == s));
        if !known {
            let names: Vec<&str> = inv.sites.keys().map(|d| d.as_str()).collect();
            let hint = pic2_inventory::nearest(s, names.iter().copied())
                .map(|n| format!(" (did you mean {n}?)"))
                .unwrap_or_default();
            anyhow::bail!(
                "no site answers on `{s}` in {}{hint}",
                inv.source.path().display()
            );
        }
    }
    let block = pic2_render::hosts::render(inv, site);
    if out.json {
        let entries: Vec<_> = block
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(' ').map(|(a, n)| serde_json::json!({ "address": a, "names": n.split_whitespace().collect::<Vec<_>>() })))
            .collect();
        out.json(&entries);
    } else {
        print!("{block}");
    }
    Ok(Outcome::Ok)
}

pub fn cost(inv: &ValidInventory, out: &Out) -> anyhow::Result<Outcome> {
    let Some(report) = pic2_render::cost::report(inv) else {
        anyhow::bail!("{} has no [pricing] section: add the price per unit (cpu, ram_gb, data_disk_100gb, ipv4)", inv.source.path().display());
    };
    if out.json {
        out.json(&report);
        return Ok(Outcome::Ok);
    }
    let mut rows = Vec::new();
    for h in &report.hosts {
        for item in &h.items {
            rows.push(vec![
                h.host.clone(),
                item.what.clone(),
                item.quantity.clone(),
                format!("{} €", euros(item.monthly_cents)),
            ]);
        }
        rows.push(vec![
            out.bold(&h.host),
            out.bold("total"),
            String::new(),
            out.bold(&format!("{} €", euros(h.monthly_cents))),
        ]);
    }
    println!(
        "{}",
        out.table(&["host", "item", "quantity", "per month"], rows)
    );
    println!();
    println!(
        "{} {} €/month, {} €/year",
        out.bold("Platform:"),
        euros(report.monthly_cents),
        euros(report.yearly_cents)
    );
    println!(
        "{}",
        out.dim("Totals are summed from the line items above, in cents.")
    );
    Ok(Outcome::Ok)
}
