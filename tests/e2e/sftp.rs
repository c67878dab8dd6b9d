//! The SFTP/SSH container on the real Docker engine: accounts, passwords and keys from the
//! directory, chroot for SFTP accounts, a shell for SSH accounts, password changes at once.

use crate::fixture::{ssh_key, Platform};
use std::path::Path;
use std::process::{Command, Output, Stdio};

const OPTS: &[&str] = &[
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
    "-o",
    "ConnectTimeout=10",
];

/// `sftp -b` with a password (sshpass reads it from the environment, never argv).
fn sftp_with_password(port: u16, user: &str, password: &str, batch: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("batch");
    std::fs::write(&file, batch).unwrap();
    Command::new("sshpass")
        .arg("-e")
        .arg("sftp")
        .args(OPTS)
        .args([
            "-o",
            "BatchMode=no",
            "-o",
            "PubkeyAuthentication=no",
            "-P",
            &port.to_string(),
            "-b",
        ])
        .arg(&file)
        .arg(format!("{user}@127.0.0.1"))
        .env("SSHPASS", password)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ssh_with_password(port: u16, user: &str, password: &str, command: &str) -> Output {
    Command::new("sshpass")
        .arg("-e")
        .arg("ssh")
        .args(OPTS)
        .args([
            "-o",
            "PubkeyAuthentication=no",
            "-p",
            &port.to_string(),
            &format!("{user}@127.0.0.1"),
            command,
        ])
        .env("SSHPASS", password)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ssh_with_key(port: u16, user: &str, key: &Path, command: &str) -> Output {
    Command::new("ssh")
        .args(OPTS)
        .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i"])
        .arg(key)
        .args([
            "-p",
            &port.to_string(),
            &format!("{user}@127.0.0.1"),
            command,
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn set_password(p: &Platform, account: &str, password: &str) {
    let mut child = p
        .command(&["account", "set-password", account, "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        format!("{password}\n").as_bytes(),
    )
    .unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn sftp_is_chrooted_ssh_gets_a_shell_and_password_changes_apply_at_once() {
    let ok = Command::new("docker")
        .arg("info")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "the Docker engine does not answer: run `dev/docker.sh start` (dev/up.sh does)"
    );
    let p = Platform::new("sftp");
    // A key pair for the SSH account.
    let keys = tempfile::tempdir().unwrap();
    let private = keys.path().join("id");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "s2@test", "-f"])
        .arg(&private)
        .status()
        .unwrap();
    assert!(made.success());
    let public = std::fs::read_to_string(private.with_extension("pub"))
        .unwrap()
        .trim()
        .to_string();
    let _unused = ssh_key; // (the fixture's helper makes throw-away keys; this test needs the private half)
    p.write(&format!(
        r#"
[accounts.{{id}}1]
uid = 20001
full_name = "SFTP only"
email = "1@{{id}}.test"

[accounts.{{id}}2]
uid = 20002
full_name = "With a shell"
email = "2@{{id}}.test"
access = "ssh"
ssh_keys = ["{public}"]

[sites."one.{{id}}.test"]
owner = "{{id}}1"
runtime = "php82"
{containers}"#,
        containers = p.containers_section_with_sftp()
    ));
    p.apply(&[]);
    p.assert_converged();
    let port = p.port(2);
    // sshd answers once nslcd and the host keys are ready.
    let mut up = false;
    for _ in 0..100 {
        if Command::new("ssh-keyscan")
            .args(["-T", "2", "-p", &port.to_string(), "127.0.0.1"])
            .output()
            .map(|o| !o.stdout.is_empty())
            .unwrap_or(false)
        {
            up = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(up, "sshd did not answer on 127.0.0.1:{port}");

    // No password yet: no way in.
    let o = sftp_with_password(port, "sftp1", "anything at all 123", "pwd\n");
    assert!(!o.status.success(), "{}", text(&o));

    set_password(&p, "sftp1", "first long passphrase 1");
    let o = sftp_with_password(
        port,
        "sftp1",
        "first long passphrase 1",
        "pwd\nls\n-cd /etc\nput /etc/hostname sites/one.sftp.test/htdocs/hello.txt\n",
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("Remote working directory: /"),
        "chrooted to the home: {out}"
    );
    assert!(out.contains("private") && out.contains("sites"), "{out}");
    assert!(
        out.contains("No such file or directory"),
        "no /etc in the chroot: {out}"
    );
    let uploaded = p.home("sftp1").join("sites/one.sftp.test/htdocs/hello.txt");
    let meta = std::fs::metadata(&uploaded).expect("upload landed on the data volume");
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 20001);

    // An SFTP account gets no shell, even with the right password.
    let o = ssh_with_password(port, "sftp1", "first long passphrase 1", "id");
    assert!(
        text(&o).contains("This service allows sftp connections only."),
        "{}",
        text(&o)
    );

    // An SSH account gets a shell, by key.
    let o = ssh_with_key(port, "sftp2", &private, "id -u; id -gn");
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "20002\nsftp2");

    // A password changed in the directory applies at once (no cache).
    set_password(&p, "sftp1", "second long passphrase 2");
    assert!(
        !sftp_with_password(port, "sftp1", "first long passphrase 1", "pwd\n")
            .status
            .success(),
        "the old password is refused"
    );
    assert!(
        sftp_with_password(port, "sftp1", "second long passphrase 2", "pwd\n")
            .status
            .success(),
        "the new one works"
    );

    // Brute force (last: it earns this source a penalty): a client that keeps guessing on one
    // connection is cut off after three wrong passwords (MaxAuthTries 3).
    let guesses = keys.path().join("guesses");
    let askpass = keys.path().join("askpass");
    std::fs::write(
        &askpass,
        format!(
            "#!/bin/sh\necho guess >> '{}'\necho 'a wrong guess 123'\n",
            guesses.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &askpass,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let o = Command::new("ssh")
        .args(OPTS)
        .args([
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "PreferredAuthentications=password",
            "-o",
            "NumberOfPasswordPrompts=10",
            "-p",
            &port.to_string(),
            "sftp1@127.0.0.1",
            "true",
        ])
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    let tries = std::fs::read_to_string(&guesses)
        .unwrap_or_default()
        .lines()
        .count();
    assert_eq!(
        tries,
        3,
        "wrong passwords tried on one connection: {}",
        text(&o)
    );
    assert!(
        text(&o).contains("Too many authentication failures"),
        "{}",
        text(&o)
    );
}
