//! The accounts are real POSIX accounts: the system resolves them through nslcd + libnss-ldapd
//! (configured by `dev/nss.sh` against the dev slapd).

use crate::fixture::Platform;
use std::process::Command;

fn getent(db: &str, key: &str) -> Option<String> {
    let out = Command::new("getent").args([db, key]).output().unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn getent_resolves_applied_accounts() {
    let status = Command::new("pgrep")
        .args(["-x", "nslcd"])
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "nslcd is not running: run `dev/up.sh` (it configures and starts the NSS client)"
    );
    let p = Platform::new("nss");
    p.write("[accounts.{id}alice]\nuid = 20011\nfull_name = \"Alice Nss\"\nemail = \"a@{id}.test\"\naccess = \"ssh\"\n");
    p.apply(&[]);
    let home = p.home("nssalice").display().to_string();
    // nslcd caches nothing (no nscd): the account is there at once.
    let passwd = getent("passwd", "nssalice").expect("getent passwd finds the account");
    assert_eq!(
        passwd,
        format!("nssalice:x:20011:20011:Alice Nss:{home}:/bin/bash")
    );
    let group = getent("group", "nssalice").expect("getent group finds its private group");
    assert!(group.starts_with("nssalice:*:20011:"), "{group}");
    assert_eq!(
        getent("passwd", "20011").as_deref(),
        Some(passwd.as_str()),
        "lookup by uid"
    );
}
