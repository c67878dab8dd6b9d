//! Bad input and faults: each gives a clear message naming what and where, and changes nothing.

use crate::fixture::Platform;
use std::os::unix::fs::PermissionsExt;

const BODY: &str = "[accounts.{id}a]\nuid = 20001\nfull_name = \"A\"\nemail = \"a@{id}.test\"\n";

fn stderr_of(p: &Platform, args: &[&str]) -> (Option<i32>, String) {
    let out = p.pic2(args);
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn unreachable_directory_is_named() {
    let p = Platform::new("unreach");
    p.write(BODY);
    let text = std::fs::read_to_string(&p.config)
        .unwrap()
        .replace("ldap://127.0.0.1:3389", "ldap://127.0.0.1:9");
    std::fs::write(&p.config, text).unwrap();
    let (code, out) = stderr_of(&p, &["plan"]);
    assert_eq!(code, Some(1));
    assert!(
        out.contains("cannot reach the directory at ldap://127.0.0.1:9"),
        "{out}"
    );
    assert!(out.contains("hint:"), "{out}");
}

#[test]
fn wrong_admin_password_is_named() {
    let p = Platform::new("wrongpw");
    p.write(BODY);
    let secret = p.dir.path().join("wrong.secret");
    std::fs::write(&secret, "not-the-password").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = std::fs::read_to_string(&p.config).unwrap();
    let text = text.replacen(
        &format!(
            "{}/secrets/ldap-admin.secret",
            crate::fixture::dev_dir().display()
        ),
        &secret.display().to_string(),
        1,
    );
    std::fs::write(&p.config, text).unwrap();
    let (code, out) = stderr_of(&p, &["plan"]);
    assert_eq!(code, Some(1));
    assert!(
        out.contains("refused the admin bind as cn=admin,dc=pic2,dc=test")
            && out.contains("invalid credentials"),
        "{out}"
    );
}

/// Points the inventory at a secret file of the test's own, 0644, instead of the dev
/// services' `name`; returns its path.
fn secret_instead_of(p: &Platform, name: &str) -> std::path::PathBuf {
    let secret = p.dir.path().join(name);
    std::fs::write(&secret, "x").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let dev = format!("{}/secrets/{name}", crate::fixture::dev_dir().display());
    let text = std::fs::read_to_string(&p.config).unwrap();
    std::fs::write(
        &p.config,
        text.replacen(&dev, &secret.display().to_string(), 1),
    )
    .unwrap();
    secret
}

/// The directory's service password is mounted into the SFTP container, where SSH accounts
/// have a shell: a copy others can read is refused before any container shows it.
#[test]
fn a_world_readable_service_secret_is_never_mounted() {
    let p = Platform::new("svcsec");
    p.write(&format!("{BODY}{}", p.containers_section_with_sftp()));
    let secret = secret_instead_of(&p, "ldap-nss.secret");
    let (code, out) = stderr_of(&p, &["plan"]);
    assert_eq!(code, Some(1));
    assert!(
        out.contains(&format!("secret file {}", secret.display()))
            && out.contains("readable by every user (mode 0644)"),
        "{out}"
    );
    // readable by a group, or owned by an account's uid: theirs to read in the container
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o640)).unwrap();
    let (code, out) = stderr_of(&p, &["plan"]);
    assert_eq!(code, Some(1));
    assert!(
        out.contains("root's and readable by root alone (owner 0, mode 0640)"),
        "{out}"
    );
}

#[test]
fn world_readable_or_missing_secret_is_refused() {
    let p = Platform::new("secret");
    p.write(BODY);
    let secret = secret_instead_of(&p, "mariadb-admin.secret");
    let (code, out) = stderr_of(&p, &["plan"]);
    assert_eq!(code, Some(1));
    assert!(
        out.contains("readable by every user (mode 0644)") && out.contains("chmod 600"),
        "{out}"
    );
    std::fs::remove_file(&secret).unwrap();
    let (code, out) = stderr_of(&p, &["plan"]);
    assert_eq!(code, Some(1));
    assert!(
        out.contains(&format!("secret file {}: cannot read it", secret.display())),
        "{out}"
    );
}

#[test]
fn a_bad_inventory_points_at_line_and_column_and_touches_nothing() {
    let p = Platform::new("badinv");
    p.write(&format!(
        "{BODY}\n[sites.\"a.{{id}}.test\"]\nowner = \"nosuch\"\nruntime = \"php82\"\n"
    ));
    let (code, out) = stderr_of(&p, &["apply", "--yes"]);
    assert_eq!(code, Some(1));
    let line = std::fs::read_to_string(&p.config)
        .unwrap()
        .lines()
        .position(|l| l.contains("\"nosuch\""))
        .unwrap()
        + 1;
    assert!(
        out.contains(&format!(
            "pic2.toml:{line}:10: no account named `nosuch` is declared"
        )),
        "{out}"
    );
    assert!(
        out.contains("unknown-account") && out.contains("nothing was changed"),
        "{out}"
    );
    assert!(p.entry(&p.base_dn).is_none());
}

#[test]
fn two_applies_cannot_interleave() {
    let p = Platform::new("lock");
    p.write(BODY);
    let lock_dir = p.dir.path().join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_dir.join("t-lock.lock"))
        .unwrap();
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let (code, out) = stderr_of(&p, &["apply", "--yes"]);
    assert_eq!(code, Some(1));
    assert!(out.contains("another `pic2 apply` holds the lock"), "{out}");
    drop(file);
    p.apply(&[]);
}

#[test]
fn apply_refuses_to_run_unconfirmed_without_a_terminal() {
    let p = Platform::new("confirm");
    p.write(BODY);
    let (code, out) = stderr_of(&p, &["apply"]);
    assert_eq!(code, Some(1));
    assert!(out.contains("run `pic2 apply --yes`"), "{out}");
    assert!(p.entry(&p.base_dn).is_none(), "nothing applied");
}

#[test]
fn unreachable_database_server_is_named() {
    let p = Platform::new("nodb");
    p.write(BODY);
    let text = std::fs::read_to_string(&p.config)
        .unwrap()
        .replace("mysql://127.0.0.1:3307", "mysql://127.0.0.1:9");
    std::fs::write(&p.config, text).unwrap();
    let (code, out) = stderr_of(&p, &["plan"]);
    assert_eq!(code, Some(1));
    assert!(
        out.contains("cannot reach MariaDB at mysql://127.0.0.1:9"),
        "{out}"
    );
    assert!(out.contains("hint:"), "{out}");
}
