//! The password application's public address: reset links and the anti-forgery check are
//! built from it, so it must be where people really reach the application. Over HTTPS,
//! unless on this machine (the demo); then on `[services] passwd`, whose route the proxy
//! serves with TLS and HSTS.

use crate::diagnostic::{Code, Diagnostic};
use crate::model::Inventory;

pub(crate) fn check(inv: &Inventory, out: &mut Vec<Diagnostic>) {
    let Some(p) = &inv.passwd else { return };
    let url = &p.public_url;
    let Some((scheme, rest)) = url.value.split_once("://") else {
        return; // refused where it is read
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    let bad = |why: String, hint: String| {
        Diagnostic::new(Code::InvalidUrl, url.span, why)
            .label("here")
            .hint(hint)
    };
    if authority.contains('@') || rest.contains(['?', '#']) || host != host.to_ascii_lowercase() {
        out.push(bad(
            format!(
                "`{}` is not a plain address: no user, query, fragment or capital letter",
                url.value
            ),
            "write the address people type, like \"https://motdepasse.example.org\"".into(),
        ));
        return;
    }
    let local = matches!(host, "127.0.0.1" | "localhost" | "::1");
    if scheme != "https" && !local {
        out.push(bad(
            format!(
                "`{}` is not HTTPS: reset links would travel in clear and cookies lose `Secure`",
                url.value
            ),
            format!("write \"https://{host}\" (plain HTTP is for 127.0.0.1 alone, the demo)"),
        ));
        return;
    }
    if let (false, Some(domain)) = (local, &inv.services.passwd) {
        if host != domain.value.as_str() {
            out.push(bad(
                format!("`{}` is not on `[services] passwd` ({}), where the proxy serves the application", url.value, domain.value.as_str()),
                format!("write \"https://{}\"", domain.value.as_str()),
            ));
        }
    }
}
