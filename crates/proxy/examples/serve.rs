//! The proxy alone, for bench/proxy: `serve ROUTES_FILE` (listeners from the file), without
//! building the whole `pic2` binary. `WORKERS=N` sets the serving threads (default: cores).

/// The `pic2` binary's allocator, so that the bench measures what runs in production.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let Some(routes) = std::env::args().nth(1) else {
        eprintln!("usage: serve ROUTES_FILE");
        std::process::exit(2);
    };
    let mut options = pic2_proxy::Options::new(routes);
    if let Some(n) = std::env::var("WORKERS").ok().and_then(|n| n.parse().ok()) {
        options.workers = n;
    }
    if let Err(e) = pic2_proxy::serve(options) {
        eprintln!("{e}");
        std::process::exit(1);
    }
}
