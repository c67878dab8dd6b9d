//! The `[passwd]` section: settings of the password self-service application (`pic2 passwd`).

use crate::diagnostic::{Code, Diagnostic};
use crate::read::{Sink, Table};
use crate::source::{Span, Spanned};
use crate::types::Email;
use toml_span::Value;

#[derive(Clone, Debug)]
pub struct PasswdConfig {
    pub span: Span,
    /// The address users reach the application at; reset links are built from it, never from
    /// the request's Host header.
    pub public_url: Spanned<String>,
    /// Where `pic2 passwd` listens (behind the proxy).
    pub listen: Spanned<std::net::SocketAddr>,
    /// The platform's mail server, `host:port`, for notifications and reset links.
    pub smtp: Spanned<String>,
    /// The sender of those mails.
    pub from: Spanned<Email>,
    /// Shortest password accepted.
    pub min_length: u32,
    /// The directory account the application binds as to find a member and set a
    /// forgotten password, and the file holding its password. Without them it binds as the
    /// directory's admin: an internet-facing application holding the admin's password.
    pub bind_dn: Option<Spanned<crate::types::Dn>>,
    pub bind_password_file: Option<Spanned<std::path::PathBuf>>,
}

pub(crate) fn read_passwd(value: Value<'_>, sink: &mut Sink) -> Option<PasswdConfig> {
    let mut t = Table::new(value, "[passwd]", sink)?;
    let span = t.span;
    let public_url = t.req::<Spanned<String>>("public_url", sink).and_then(|u| {
        if u.value.starts_with("https://") || u.value.starts_with("http://") {
            Some(u)
        } else {
            sink.push(
                Diagnostic::new(
                    Code::InvalidUrl,
                    u.span,
                    format!("`{}` is not an http(s) URL", u.value),
                )
                .label("here")
                .hint("write the address users type, like \"https://motdepasse.example.org\""),
            );
            None
        }
    });
    let listen = t.req::<Spanned<String>>("listen", sink).and_then(|l| {
        crate::net::parse_socket_addr(&l, "\"127.0.0.1:8081\" or \"[::1]:8081\"")
            .map_err(|d| sink.push(d))
            .ok()
    });
    let smtp = t.req::<Spanned<String>>("smtp", sink).and_then(|s| {
        crate::net::check_host_port(&s)
            .map(|()| s)
            .map_err(|d| sink.push(d))
            .ok()
    });
    let from = t.req::<Spanned<Email>>("from", sink);
    let min_length = t.opt::<u32>("min_length", sink).unwrap_or(12);
    let bind_dn = t.opt::<Spanned<crate::types::Dn>>("bind_dn", sink);
    let bind_password_file = t
        .opt::<Spanned<crate::model::AbsPath>>("bind_password_file", sink)
        .map(|s| Spanned::new(s.value.0, s.span));
    if bind_dn.is_some() != bind_password_file.is_some() {
        let span = bind_dn
            .as_ref()
            .map(|d| d.span)
            .or(bind_password_file.as_ref().map(|f| f.span));
        sink.push(
            Diagnostic::new(
                Code::MissingKey,
                span.unwrap_or(t.span),
                "bind_dn and bind_password_file go together",
            )
            .label("here")
            .hint(
                "give both: the application's own directory account and the file with its password",
            ),
        );
    }
    t.finish(sink);
    Some(PasswdConfig {
        span,
        public_url: public_url?,
        listen: listen?,
        smtp: smtp?,
        from: from?,
        min_length,
        bind_dn,
        bind_password_file,
    })
}
