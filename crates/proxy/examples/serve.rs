//! The proxy alone, for bench/proxy: `serve ROUTES_FILE` (listeners from the file), without
//! building the whole `pic2` binary.

fn main() {
    let Some(routes) = std::env::args().nth(1) else {
        eprintln!("usage: serve ROUTES_FILE");
        std::process::exit(2);
    };
    if let Err(e) = pic2_proxy::serve(pic2_proxy::Options::new(routes)) {
        eprintln!("{e}");
        std::process::exit(1);
    }
}
