//! The testers' `/etc/hosts` block of the migration (phase II of the source document): every
//! domain of every site pointed at the web host's public addresses, so admins can test the
//! migrated sites before DNS changes.

use pic2_inventory::{Role, ValidInventory};
use std::fmt::Write;

pub const BEGIN: &str = "# BEGIN pic2";
pub const END: &str = "# END pic2";

/// The block; `only` restricts it to one site (by its main domain or an alias).
pub fn render(inv: &ValidInventory, only: Option<&str>) -> String {
    let Some((host_name, host)) = inv.host_with(Role::Web) else {
        return String::new();
    };
    let addresses: Vec<String> = [
        host.public_ipv4.map(|a| a.to_string()),
        host.public_ipv6.map(|a| a.to_string()),
    ]
    .into_iter()
    .flatten()
    .collect();
    let addresses = if addresses.is_empty() {
        vec![host.address.value.to_string()]
    } else {
        addresses
    };
    let mut out = format!(
        "{BEGIN} {platform} — migration test entries\n\
         # Points the platform's sites at {host_name} ({list}) on this workstation only, to test\n\
         # them before the DNS changes. Remove everything from \"{BEGIN}\" to \"{END}\" once DNS\n\
         # points at {host_name} (phase IV), or your browser will keep bypassing DNS.\n",
        platform = inv.platform.name,
        list = addresses.join(", "),
    );
    for site in &inv.sites {
        let names: Vec<&str> = inv.site_domains(site).map(|d| d.as_str()).collect();
        if only.is_some_and(|o| !names.contains(&o)) {
            continue;
        }
        for addr in &addresses {
            let _ = writeln!(out, "{addr:<15} {}", names.join(" "));
        }
    }
    if only.is_none() {
        for (_, domain) in inv.services.domains() {
            for addr in &addresses {
                let _ = writeln!(out, "{addr:<15} {}", domain.as_str());
            }
        }
    }
    let _ = writeln!(out, "{END}");
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_platform_hosts_block() {
        insta::assert_snapshot!(super::render(&crate::tests::document(), None));
    }

    #[test]
    fn one_site_by_alias() {
        let out = super::render(&crate::tests::document(), Some("www.arto.example"));
        assert_eq!(out.lines().filter(|l| !l.starts_with('#')).count(), 2);
        assert!(out.contains("203.0.113.10    arto.example www.arto.example"));
    }
}
