//! `pic2 passwd`: serves the password self-service application (the logic is in pic2-passwd).

use crate::Outcome;
use anyhow::Context;
use pic2_inventory::ValidInventory;
use std::net::SocketAddr;

pub fn run(
    inv: &ValidInventory,
    listen: Option<SocketAddr>,
    user: Option<&str>,
) -> anyhow::Result<Outcome> {
    let run_as = match user {
        Some(name) => Some(pic2_passwd::RunAs::lookup(name, pic2_passwd::DAEMON)?),
        None => None,
    };
    let mut config = pic2_passwd::Config::from_inventory(inv).with_context(|| {
        format!(
            "{} has no [passwd] section (public_url, listen, smtp, from)",
            inv.source.path().display()
        )
    })?;
    if let Some(listen) = listen {
        config.listen = listen;
    }
    pic2_passwd::run(config, run_as).context("pic2 passwd stopped on an error")?;
    Ok(Outcome::Ok)
}
