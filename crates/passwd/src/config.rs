//! What the application needs to know, taken from the inventory (or built by tests).

use pic2_inventory::ValidInventory;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Settings of one running application.
#[derive(Clone, Debug)]
pub struct Config {
    /// `ldap://host:port` of the directory.
    pub ldap_url: String,
    /// Where the accounts live: `ou=people,BASE`.
    pub people_dn: String,
    /// The privileged DN, bound only to look up the mail address for a reset and to set the
    /// new password at the end of it, one operation per bind.
    pub admin_dn: String,
    /// The file holding its password, read at each use (never kept in memory).
    pub admin_password_file: PathBuf,
    /// The address users reach the application at, without trailing slash; reset links are
    /// built from it, never from the Host header.
    pub public_url: String,
    /// Where to listen.
    pub listen: SocketAddr,
    /// The platform's mail server.
    pub smtp_host: String,
    pub smtp_port: u16,
    /// The sender of the mails.
    pub mail_from: String,
    /// Shown in pages and mails ("the password of your demo account").
    pub platform_name: String,
    /// Shortest password accepted.
    pub min_length: usize,
    /// How long a reset link stays valid.
    pub reset_ttl: Duration,
    /// How long a signed-in SSH key session lives without activity.
    pub session_ttl: Duration,
    /// Failed sign-ins with no wait at all before the back-off starts (per account; the
    /// per-address allowance is four times this).
    pub free_failures: u32,
    /// The shortest answer to a failed sign-in, so that an unknown account and a wrong
    /// password take the same time.
    pub failure_floor: Duration,
}

impl Config {
    /// The settings of `[passwd]` and `[directory]`; `None` when the inventory has no
    /// `[passwd]` section.
    pub fn from_inventory(inv: &ValidInventory) -> Option<Config> {
        let p = inv.passwd.as_ref()?;
        let url = &inv.directory.url.value;
        let (host, port) = split_host_port(&p.smtp.value);
        Some(Config {
            // `Display` brackets an IPv6 host (`ldap://[fd00::2]:389`)
            ldap_url: url.to_string(),
            people_dn: inv.directory.people_dn(),
            // its own account when the inventory names one, else the directory's admin
            admin_dn: p.bind_dn.as_ref().map_or_else(
                || inv.directory.admin_dn.value.to_string(),
                |d| d.value.to_string(),
            ),
            admin_password_file: p.bind_password_file.as_ref().map_or_else(
                || inv.directory.admin_password_file.value.clone(),
                |f| f.value.clone(),
            ),
            public_url: p.public_url.value.trim_end_matches('/').to_string(),
            listen: p.listen.value,
            smtp_host: host,
            smtp_port: port,
            mail_from: p.from.value.to_string(),
            platform_name: inv.platform.name.to_string(),
            min_length: usize::try_from(p.min_length).unwrap_or(12),
            reset_ttl: Duration::from_secs(30 * 60),
            session_ttl: Duration::from_secs(10 * 60),
            free_failures: 5,
            failure_floor: Duration::from_millis(400),
        })
    }

    /// Cookies get `Secure` and the `__Host-` prefix when users come over HTTPS.
    pub fn secure(&self) -> bool {
        self.public_url.starts_with("https://")
    }

    /// `scheme://host[:port]` of the public URL, what browsers send as `Origin`.
    pub fn public_origin(&self) -> &str {
        let rest = self.public_url.split_once("://").map_or("", |(_, r)| r);
        let host_len = rest.find('/').unwrap_or(rest.len());
        let scheme_len = self.public_url.len() - rest.len();
        self.public_url
            .get(..scheme_len + host_len)
            .unwrap_or(&self.public_url)
    }
}

/// `host:port` or `[v6]:port`; port 25 when missing.
fn split_host_port(s: &str) -> (String, u16) {
    if let Some((h, p)) = s.rsplit_once(':') {
        if let Ok(port) = p.parse() {
            if !h.contains(':') || h.starts_with('[') {
                return (h.trim_matches(['[', ']']).to_string(), port);
            }
        }
    }
    (s.trim_matches(['[', ']']).to_string(), 25)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_addresses() {
        assert_eq!(
            split_host_port("127.0.0.1:2525"),
            ("127.0.0.1".into(), 2525)
        );
        assert_eq!(split_host_port("[::1]:25"), ("::1".into(), 25));
        assert_eq!(split_host_port("mail.example"), ("mail.example".into(), 25));
    }
}
