//! The commands that need no server of the platform: check, cost, hosts, render, schema,
//! completions, site maintenance, and the proxy daemon on loopback with a backend of its own.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::{Command, Output};

fn pic2(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pic2"))
        .args(args)
        .env("NO_COLOR", "1")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

fn stdout(args: &[&str]) -> String {
    let out = pic2(args);
    assert!(
        out.status.success(),
        "pic2 {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn examples_check() {
    for example in ["examples/pic2.toml", "examples/demo.toml"] {
        let out = stdout(&["-c", example, "check"]);
        assert!(out.contains("is valid"), "{out}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&["-c", "examples/pic2.toml", "--json", "check"])).unwrap();
    assert_eq!(json["counts"]["sites"], 12);
    assert_eq!(json["counts"]["runtimes"], 4);
}

#[test]
fn cost_of_the_source_documents_platform() {
    let out = stdout(&["-c", "examples/pic2.toml", "cost"]);
    assert!(
        out.contains("Platform: 17.27 €/month, 207.24 €/year"),
        "{out}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&["-c", "examples/pic2.toml", "--json", "cost"])).unwrap();
    let hosts: Vec<(String, u64)> = json["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["host"].as_str().unwrap().to_string(),
                h["monthly_cents"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        hosts,
        vec![("pic2".to_string(), 227), ("pic2s".to_string(), 1500)]
    );
    assert_eq!(json["yearly_cents"], 20724);
}

#[test]
fn hosts_block_for_one_site_and_unknown_site() {
    let out = stdout(&[
        "-c",
        "examples/pic2.toml",
        "hosts",
        "--site",
        "velobs.example",
    ]);
    assert!(
        out.contains("203.0.113.10    velobs.example www.velobs.example"),
        "{out}"
    );
    assert!(
        out.contains("2001:db8::10    velobs.example www.velobs.example"),
        "{out}"
    );
    assert!(!out.contains("arto"), "{out}");
    let bad = pic2(&[
        "-c",
        "examples/pic2.toml",
        "hosts",
        "--site",
        "velob.example",
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("did you mean velobs.example?"));
}

#[test]
fn render_writes_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    stdout(&["-c", "examples/pic2.toml", "render", "--out", out]);
    for f in [
        "directory/entries.ldif",
        "databases/databases.sql",
        "files/layout.txt",
        "migration/hosts",
    ] {
        assert!(dir.path().join(f).is_file(), "{f}");
    }
    let ldif = std::fs::read_to_string(dir.path().join("directory/entries.ldif")).unwrap();
    assert!(ldif.contains("dn: uid=velobs,ou=people,dc=le-pic,dc=org"));
    assert!(!ldif.to_lowercase().contains("userpassword"));
}

#[test]
fn schema_is_json_and_completions_exist() {
    let schema: serde_json::Value = serde_json::from_str(&stdout(&["schema"])).unwrap();
    assert!(schema["properties"]["accounts"].is_object());
    assert!(stdout(&["completions", "bash"]).contains("pic2"));
}

#[test]
fn missing_inventory_says_how_to_name_one() {
    let out = pic2(&["-c", "/nonexistent/pic2.toml", "check"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot read the inventory /nonexistent/pic2.toml")
            && err.contains("PIC2_CONFIG"),
        "{err}"
    );
}

#[test]
fn check_json_lists_located_diagnostics() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/demo.toml"))
        .unwrap()
        .replace("uid = 10002", "uid = 10001")
        .replace("runtime = \"itk84\"\ntls", "runtime = \"itk48\"\ntls");
    std::fs::write(&bad, text).unwrap();
    let out = pic2(&["-c", bad.to_str().unwrap(), "--json", "check"]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let codes: Vec<&str> = json["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, vec!["duplicate-uid", "unknown-runtime"]);
    assert_eq!(json["diagnostics"][1]["hint"], "did you mean `itk84`?");
}

#[test]
fn render_writes_the_compose_file_and_image_contexts() {
    let dir = tempfile::tempdir().unwrap();
    stdout(&[
        "-c",
        "examples/demo.toml",
        "render",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    let compose = std::fs::read_to_string(dir.path().join("containers/compose.yaml")).unwrap();
    for service in [
        "pic2-demo-itk82:",
        "pic2-demo-itk84:",
        "pic2-demo-sftp:",
        "pic2-demo-phpmyadmin:",
    ] {
        assert!(compose.contains(service), "{service} in {compose}");
    }
    assert!(compose.contains("security_opt: [\"no-new-privileges\"]"));
    let entrypoint = dir.path().join("images/pic2-sftp/entrypoint");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&entrypoint).unwrap().permissions(),
    );
    assert_eq!(
        mode & 0o777,
        0o755,
        "scripts stay executable for `docker compose build`"
    );
    assert!(dir
        .path()
        .join("config/runtimes/itk82/runtime.conf")
        .is_file());
}

#[test]
fn a_closed_pipe_ends_quietly() {
    // `pic2 schema | head -0`: the reader is gone before pic2 writes; it must not panic.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_pic2"))
        .arg("schema")
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A usage error exits 1, never 2, which is `plan`'s "there are changes": a script that
/// applies on 2 must not apply after a typo. Help and version exit 0.
#[test]
fn a_usage_error_is_not_a_plan_with_changes() {
    for args in [
        &["plan", "--prnue"][..],
        &["plan", "--drop-data"],
        &["nosuch"],
    ] {
        let out = pic2(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}: the error is shown");
    }
    assert_eq!(pic2(&["--help"]).status.code(), Some(0));
    assert_eq!(pic2(&["--version"]).status.code(), Some(0));
}

/// `pic2 site maintenance`: the switch the running proxy reads, by a site's name or alias,
/// for people and for machines; an unknown name is an error naming the inventory.
#[test]
fn site_maintenance_flips_the_switch_by_name_or_alias() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("proxy");
    let inventory = dir.path().join("pic2.toml");
    let text = include_str!("../examples/demo.toml")
        .replace("/var/lib/pic2-dev/proxy", state.to_str().unwrap());
    std::fs::write(&inventory, text).unwrap();
    let inv = inventory.to_str().unwrap();
    let on = stdout(&[
        "--config",
        inv,
        "site",
        "maintenance",
        "on",
        "www.velobs.test",
    ]);
    assert!(on.contains("maintenance on for velobs.test"), "{on}");
    let flag = state.join("maintenance").join("velobs.test");
    assert!(flag.exists(), "no switch at {}", flag.display());
    let off = stdout(&[
        "--config",
        inv,
        "--json",
        "site",
        "maintenance",
        "off",
        "velobs.test",
    ]);
    let doc: serde_json::Value = serde_json::from_str(&off).unwrap();
    assert_eq!(
        doc,
        serde_json::json!({"site": "velobs.test", "maintenance": false})
    );
    assert!(!flag.exists());
    let unknown = pic2(&["--config", inv, "site", "maintenance", "on", "nosuch.test"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no site or alias named nosuch.test"));
}

/// `pic2 proxy` as a daemon: SIGHUP reopens the access log (logrotate's `postrotate`) and
/// reloads; SIGUSR1 retries the certificates in back-off; SIGTERM ends it. The proxy
/// crate's tests call `reload()` directly: this is the signal path of the binary itself.
#[test]
fn proxy_daemon_reopens_its_log_on_sighup_and_stops_on_sigterm() {
    use std::time::{Duration, Instant};
    // a backend answering 200, bounded in requests
    let backend_addr = ok_backend(50);
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.json");
    let settings = serde_json::json!({"state_dir": dir.path().join("state")});
    let site = serde_json::json!({"name": "a.test", "hosts": ["a.test"],
        "backend": backend_addr.to_string(), "tls": {"mode": "none"}});
    let doc = serde_json::json!({"version": 1, "settings": settings, "sites": [site]});
    std::fs::write(&routes, doc.to_string()).unwrap();
    let port = free_port();
    let log = dir.path().join("access.log");
    let mut proxy = proxy_on(&routes, port)
        .arg("--access-log")
        .arg(&log)
        .args(["--access-log-format", "combined"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(Daemon)
        .unwrap();
    let get = |path: &str| http_get(port, path, "a.test");
    let until = |what: &str, ok: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ok() {
            assert!(Instant::now() < deadline, "{what} within 10 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let logged = |file: &std::path::Path, path: &str| {
        std::fs::read_to_string(file).is_ok_and(|t| t.contains(&format!("GET {path} ")))
    };
    until("the proxy answering", &|| {
        get("/up").starts_with("HTTP/1.1 200")
    });
    assert!(get("/before").starts_with("HTTP/1.1 200"));
    until("/before logged", &|| logged(&log, "/before"));
    // logrotate: the file moved away, then the daemon told
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    let pid = proxy.0.id().to_string();
    let signal = |sig: &str| {
        let sent = Command::new("kill").args([sig, &pid]).status().unwrap();
        assert!(sent.success(), "kill {sig}");
    };
    signal("-HUP");
    until("the log reopened", &|| log.exists());
    assert!(
        get("/after").starts_with("HTTP/1.1 200"),
        "served after SIGHUP"
    );
    until("/after logged in the new file", &|| logged(&log, "/after"));
    assert!(!logged(&rotated, "/after"), "written to the rotated file");
    // SIGUSR1 asks for the certificates waiting out a back-off: the daemon goes on (the
    // signal's default action would end it)
    signal("-USR1");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        proxy.0.try_wait().unwrap().is_none(),
        "SIGUSR1 ended the proxy"
    );
    assert!(
        get("/usr1").starts_with("HTTP/1.1 200"),
        "served after SIGUSR1"
    );
    signal("-TERM");
    let status = ended_within_10_s(&mut proxy, "SIGTERM did not stop the proxy");
    assert!(status.success(), "{status}");
}

/// A SIGHUP (logrotate) or SIGUSR1 sent while `pic2 proxy` starts (reading the inventory,
/// rendering the routes, before its handlers exist) waits for them instead of ending it, as
/// the signals' default action would. Each start is watched in /proc until SIGHUP shows as
/// held; then SIGHUP is sent every millisecond until the proxy answers, and it must still
/// run. The hold lasts milliseconds, so a start whose hold was not seen is tried again.
#[test]
fn proxy_daemon_started_under_sighup_lives_on() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.json");
    let settings = serde_json::json!({"state_dir": dir.path().join("state")});
    let doc = serde_json::json!({"version": 1, "settings": settings, "sites": []});
    std::fs::write(&routes, doc.to_string()).unwrap();
    let sighup_held = |pid: u32| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("SigBlk:"))
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .is_some_and(|mask| mask & 1 != 0) // SIGHUP is signal 1
    };
    let mut survived = 0;
    for _ in 0..20 {
        let port = free_port();
        let mut proxy = proxy_on(&routes, port)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map(Daemon)
            .unwrap();
        let pid = proxy.0.id();
        let answers = || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sighup_held(pid) && !answers() && Instant::now() < deadline {
            std::hint::spin_loop();
        }
        if !sighup_held(pid) {
            continue; // started before the hold was seen: try again
        }
        for _ in 0..10_000 {
            let _ = Command::new("kill")
                .args(["-HUP", &pid.to_string()])
                .status();
            if answers() || proxy.0.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(100));
        if let Some(status) = proxy.0.try_wait().unwrap() {
            let mut stderr = String::new();
            let _ = std::io::Read::read_to_string(&mut proxy.0.stderr.take().unwrap(), &mut stderr);
            panic!("the proxy ended while it started, under SIGHUP: {status}: {stderr}");
        }
        assert!(answers(), "the proxy does not answer");
        assert!(!sighup_held(pid), "SIGHUP still held once the proxy serves");
        survived += 1;
        break;
    }
    assert_eq!(
        survived, 1,
        "SIGHUP was never seen held while the proxy started (20 starts)"
    );
}

/// `pic2 proxy --user` started as root: every thread of the daemon runs as the user (uid,
/// gid, its groups only, no capability), the state folder it made stays root's with the
/// user's `certs/` and `acme/` in it, and it serves and logs. A `certs/` root owns is
/// refused at start, with the command that mends it. Needs root, as CI runs: never skipped.
#[test]
fn proxy_daemon_started_as_root_runs_as_its_user() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::time::{Duration, Instant};
    require_root("the proxy");
    // a backend answering 200, bounded in requests
    let backend_addr = ok_backend(20);
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = dir.path().join("state");
    let routes = dir.path().join("routes.json");
    let settings = serde_json::json!({"state_dir": state});
    let site = serde_json::json!({"name": "a.test", "hosts": ["a.test"],
        "backend": backend_addr.to_string(), "tls": {"mode": "none"}});
    let doc = serde_json::json!({"version": 1, "settings": settings, "sites": [site]});
    std::fs::write(&routes, doc.to_string()).unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    std::os::unix::fs::chown(&logs, Some(65534), Some(65534)).unwrap();
    let port = free_port();
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_pic2"))
            .args([
                "-c",
                "examples/demo.toml",
                "proxy",
                "--workers",
                "2",
                "--user",
                "nobody",
            ])
            .arg("--routes")
            .arg(&routes)
            .args([
                "--listen-http",
                &format!("127.0.0.1:{port}"),
                "--listen-https",
                "",
            ])
            .arg("--access-log")
            .arg(logs.join("access.log"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map(Daemon)
            .unwrap()
    };
    let proxy = start();
    let get = || http_get(port, "/as-user", "a.test");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !get().starts_with("HTTP/1.1 200") {
        assert!(Instant::now() < deadline, "the proxy answering within 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let threads = every_thread_is_nobody(proxy.0.id());
    assert!(threads >= 3, "the main thread and two workers: {threads}");
    // the state folder root's (root writes the routes there), what the proxy writes its own
    assert_eq!(std::fs::metadata(&state).unwrap().uid(), 0);
    for written in ["certs", "acme"] {
        assert_eq!(std::fs::metadata(state.join(written)).unwrap().uid(), 65534);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(logs.join("access.log")).is_ok_and(|t| t.contains("/as-user")) {
        assert!(Instant::now() < deadline, "the request logged within 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(proxy);

    // a certificates folder root owns (left by a run as root): refused before anything is
    // served, with the command that mends it
    std::os::unix::fs::chown(state.join("certs"), Some(0), Some(0)).unwrap();
    // refused starts end at once, saying why
    let refused = |why: &str| refused_start(start(), why);
    let hint = format!("chown -R nobody: {}", state.join("certs").display());
    refused(&hint);
    // an access log the user cannot write (left root's): refused, not lost unseen
    std::os::unix::fs::chown(state.join("certs"), Some(65534), Some(65534)).unwrap();
    std::os::unix::fs::chown(&logs, Some(0), Some(0)).unwrap();
    std::fs::remove_file(logs.join("access.log")).unwrap();
    refused(&format!(
        "cannot write {}",
        logs.join("access.log").display()
    ));
}

/// `pic2 passwd --user` started as root: every thread runs as the user (uid, gid, its groups
/// only, no capability, no new privileges) and it serves its pages; a bind password file
/// the user cannot read, or everyone can, stops it at start with the file and the fix.
/// Needs root, as CI runs: never skipped. (No directory needed: the home page binds none.)
#[test]
fn passwd_daemon_started_as_root_runs_as_its_user() {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, Instant};
    require_root("pic2 passwd");
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // the bind password file as production has it: root's, readable by the user's group
    let secret = dir.path().join("ldap-passwd.secret");
    std::fs::write(&secret, "not-used-by-this-test\n").unwrap();
    std::os::unix::fs::chown(&secret, Some(0), Some(65534)).unwrap();
    let mode = |m: u32| {
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(m)).unwrap();
    };
    mode(0o640);
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/demo.toml"))
        .unwrap();
    let line = "bind_password_file = \"/var/lib/pic2-dev/secrets/ldap-passwd.secret\"";
    assert!(demo.contains(line), "examples/demo.toml's [passwd] changed");
    let inventory = dir.path().join("pic2.toml");
    let ours = format!("bind_password_file = {:?}", secret.display().to_string());
    std::fs::write(&inventory, demo.replace(line, &ours)).unwrap();
    let port = free_port();
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_pic2"))
            .arg("-c")
            .arg(&inventory)
            .args(["passwd", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--user", "nobody"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map(Daemon)
            .unwrap()
    };
    let mut passwd = start();
    let get = || http_get(port, "/", &format!("127.0.0.1:{port}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let page = loop {
        let page = get();
        if page.starts_with("HTTP/1.1 200") {
            break page;
        }
        if let Some(status) = passwd.0.try_wait().unwrap() {
            let mut stderr = String::new();
            let _ = passwd.0.stderr.take().unwrap().read_to_string(&mut stderr);
            panic!("pic2 passwd ended ({status}): {stderr}");
        }
        assert!(
            Instant::now() < deadline,
            "pic2 passwd answering within 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(page.contains("<html"), "{page}");
    let threads = every_thread_is_nobody(passwd.0.id());
    assert!(threads >= 3, "the main thread and two workers: {threads}");
    drop(passwd);

    let refused = |why: &str| {
        refused_start(start(), why);
        assert!(get().is_empty(), "served after a refused start");
    };
    // readable by root alone: the user could not bind for a reset, so it does not start
    let fix = format!("chgrp nogroup {0}; chmod 640 {0}", secret.display());
    mode(0o600);
    refused(&fix);
    refused("Permission denied");
    // readable by everyone: the secret is out already
    mode(0o644);
    refused("readable by every user (mode 0644)");
}

/// Asserts that every thread of `pid` runs as nobody (uid, gid, its groups, no capability,
/// no new privileges); gives the number of threads.
fn every_thread_is_nobody(pid: u32) -> usize {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    let mut threads = 0;
    for task in tasks {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
                .unwrap_or_default()
        };
        assert_eq!(field("Uid:"), "65534 65534 65534 65534", "{status}");
        assert_eq!(field("Gid:"), "65534 65534 65534 65534", "{status}");
        assert_eq!(field("Groups:"), "65534", "{status}");
        assert_eq!(field("CapEff:"), "0000000000000000", "{status}");
        assert_eq!(field("NoNewPrivs:"), "1", "{status}");
        threads += 1;
    }
    threads
}

/// The daemons' tests start them as root and check they give root up: as root or failed,
/// never skipped.
fn require_root(daemon: &str) {
    use std::os::unix::fs::MetadataExt;
    assert!(
        std::fs::metadata("/proc/self").unwrap().uid() == 0,
        "this test starts {daemon} as root and checks it gives root up: run it as root (CI does)"
    );
}

/// `pic2 proxy` with one worker serving `routes`, HTTP on 127.0.0.1:`port` and HTTPS on a
/// free port (not `[::]:443`, the default, which another proxy may hold).
fn proxy_on(routes: &std::path::Path, port: u16) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pic2"));
    c.args(["-c", "examples/demo.toml", "proxy", "--workers", "1"])
        .arg("--routes")
        .arg(routes)
        .args(["--listen-http", &format!("127.0.0.1:{port}")])
        .args(["--listen-https", &format!("127.0.0.1:{}", free_port())]);
    c
}

/// `GET path` with `Host: host` on 127.0.0.1:`port`, the whole answer (empty when nothing
/// answers; 5 s at most).
fn http_get(port: u16, path: &str, host: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(5)));
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// The daemon's exit status, once it has ended; `failure` if it has not within 10 s.
fn ended_within_10_s(p: &mut Daemon, failure: &str) -> std::process::ExitStatus {
    use std::time::{Duration, Instant};
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = p.0.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "{failure}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (10 s at most) for a daemon whose start is refused to end, and checks that it
/// failed, saying `why` on its standard error.
fn refused_start(mut p: Daemon, why: &str) {
    use std::io::Read;
    let status = ended_within_10_s(&mut p, "a refused start did not end");
    let mut stderr = String::new();
    p.0.stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!status.success());
    assert!(stderr.contains(why), "{stderr}");
}

/// A backend on loopback answering `200 ok` to each of its first `requests` connections.
fn ok_backend(requests: usize) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = backend.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in backend.incoming().take(requests) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(5)));
            let _ = s.read(&mut buf);
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    addr
}

/// A loopback port free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A daemon killed if its test fails half-way, never left running.
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
