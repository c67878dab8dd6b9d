//! `pic2 proxy`: renders the routes (unless given) and serves them (logic in pic2-proxy).

use crate::cli::{AccessLogFormat, ProxyArgs};
use crate::Outcome;
use anyhow::Context;
use pic2_inventory::ValidInventory;
use std::path::PathBuf;

pub fn run(inv: &ValidInventory, args: ProxyArgs) -> anyhow::Result<Outcome> {
    let run_as = match &args.user {
        Some(name) => Some(pic2_proxy::privileges::RunAs::lookup(
            name,
            pic2_proxy::privileges::DAEMON,
        )?),
        None => None,
    };
    let routes = match args.routes {
        Some(p) => p,
        None => {
            let r = pic2_render::proxy::routes(inv);
            if let Some(who) = &run_as {
                // made the user's before the routes are written into it as root
                let state = std::path::Path::new(&r.settings.state_dir);
                pic2_proxy::privileges::prepare_state_dir(state, who)?;
            }
            let path = PathBuf::from(&r.settings.state_dir).join(pic2_render::proxy::ROUTES_FILE);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            std::fs::write(&path, pic2_render::proxy::text(&r))
                .with_context(|| format!("cannot write {}", path.display()))?;
            path
        }
    };
    let mut options = pic2_proxy::Options::new(routes);
    options.listen_http = args.listen_http;
    options.listen_https = args.listen_https;
    options.access_log = args.access_log;
    options.access_log_format = match args.access_log_format {
        AccessLogFormat::Json => pic2_proxy::access_log::Format::Json,
        AccessLogFormat::Combined => pic2_proxy::access_log::Format::Combined,
        AccessLogFormat::VhostCombined => pic2_proxy::access_log::Format::VhostCombined,
    };
    options.run_as = run_as;
    if let Some(n) = args.workers {
        options.workers = usize::from(n);
    }
    pic2_proxy::serve(options).context("pic2 proxy stopped on an error")?;
    Ok(Outcome::Ok)
}
