//! The web runtimes on the real Docker engine: Apache mpm-itk per PHP version, every site as
//! its owner, sites isolated from each other, no request as root or a system user, and
//! configuration changes reloaded without a failed request.

use crate::fixture::{http_get, put, wait_http, Platform};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

fn body(p: &Platform, sites: &str) -> String {
    format!(
        r#"
[runtimes.php84]
php = "8.4"
base_image = "local/debian:trixie"
port = {port84}

[accounts.{{id}}a]
uid = 20001
full_name = "A"
email = "a@{{id}}.test"

[accounts.{{id}}b]
uid = 20002
full_name = "B"
email = "b@{{id}}.test"
{sites}{containers}"#,
        port84 = p.port(1),
        containers = p.containers_section()
    )
}

const SITES: &str = r#"
[sites."a.{id}.test"]
owner = "{id}a"
runtime = "php82"
aliases = ["www.a.{id}.test"]
databases = ["{id}_a"]

[sites."b.{id}.test"]
owner = "{id}b"
runtime = "php84"
databases = ["{id}_b"]

[databases.{id}_a]
owner = "{id}a"

[databases.{id}_b]
owner = "{id}b"
"#;

fn docker_inspect(name: &str, format: &str) -> String {
    let out = Command::new("docker")
        .args(["inspect", "-f", format, name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker inspect {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn engine_answers() {
    let ok = Command::new("docker")
        .arg("info")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "the Docker engine does not answer: run `dev/docker.sh start` (dev/up.sh does)"
    );
}

#[test]
fn each_site_runs_as_its_owner_on_its_php_version_and_cannot_read_the_others() {
    engine_answers();
    let p = Platform::new("rt");
    p.write(&body(&p, SITES));
    let plan = p.expect(&["plan", "--detail"], 2);
    assert!(
        plan.contains("create and start container pic2-t-rt-php82"),
        "{plan}"
    );
    p.apply(&[]);
    p.assert_converged();

    let a_root = p.home("rta").join("sites/a.rt.test/htdocs");
    let b_root = p.home("rtb").join("sites/b.rt.test/htdocs");
    put(&b_root.join("secret.txt"), "b's secret", 20002);
    let probe = format!(
        "<?php echo PHP_VERSION, ' ', posix_geteuid(), ' ', posix_getegid(), '|';\n\
         echo @file_get_contents('{b}/secret.txt') === false ? 'php-denied' : 'LEAK', '|';\n\
         echo trim(shell_exec('cat {b}/secret.txt 2>&1'));",
        b = b_root.display()
    );
    put(&a_root.join("index.php"), &probe, 20001);
    put(
        &b_root.join("index.php"),
        "<?php echo PHP_VERSION, ' ', posix_geteuid();",
        20002,
    );

    let a = wait_http(p.port(0), "a.rt.test");
    let parts: Vec<&str> = a.split('|').collect();
    assert!(
        parts[0].starts_with("8.2.") && parts[0].ends_with(" 20001 20001"),
        "{a}"
    );
    assert_eq!(parts[1], "php-denied", "open_basedir keeps PHP in its site");
    assert!(
        parts[2].contains("Permission denied"),
        "and the file system keeps out a shell: {a}"
    );
    // Apache reads a site's .htaccess before mpm-itk takes the owner's uid, as the idle uid
    // with CAP_DAC_READ_SEARCH: an expression there that could read files would read any
    // owner's. Apache parses .htaccess expressions as restricted: no `file()` (a 500). (The
    // `-f` test is not restricted and answers whether any path exists: a known limit.)
    let probe_dir = a_root.join("probe");
    std::fs::create_dir_all(&probe_dir).unwrap();
    put(
        &probe_dir.join(".htaccess"),
        &format!(
            "<If \"file('{b}/secret.txt') =~ /secret/\">\nRequire all denied\n</If>\n",
            b = b_root.display()
        ),
        20001,
    );
    put(&probe_dir.join("index.html"), "probe", 20001);
    let (status, _) = http_get(p.port(0), "a.rt.test", "/probe/").unwrap();
    assert_ne!(status, 403, "a .htaccess read another owner's file");
    assert_eq!(status, 500, "file() in a .htaccess is refused");
    // What a site's PHP may learn or forge from inside its runtime: the runtime believes no
    // X-Forwarded-For or X-Forwarded-Proto but the gateway's (the proxy's path), has no
    // server-status (every site's requests, query strings included), and keeps OPcache's
    // API (every owner's scripts) from sites.
    put(
        &a_root.join("https.php"),
        "<?php echo $_SERVER['HTTPS'] ?? 'off';",
        20001,
    );
    put(
        &a_root.join("forge.php"),
        "<?php $ctx = stream_context_create(['http' => ['ignore_errors' => true, 'header' =>\n\
         \"Host: a.rt.test\\r\\nX-Forwarded-For: 203.0.113.9\\r\\nX-Forwarded-Proto: https\\r\\n\"]]);\n\
         echo file_get_contents('http://127.0.0.1:8080/https.php?forged', false, $ctx), '|';\n\
         $s = (string) @file_get_contents('http://127.0.0.1:8080/server-status', false, $ctx);\n\
         echo strpos($s, 'Server Status') === false ? 'no-status' : 'STATUS', '|';\n\
         echo var_export(@opcache_get_status(false), true);",
        20001,
    );
    let status_dir = a_root.join("status");
    std::fs::create_dir_all(&status_dir).unwrap();
    put(
        &status_dir.join(".htaccess"),
        "SetHandler server-status\n",
        20001,
    );
    let (_, forged) = http_get(p.port(0), "a.rt.test", "/forge.php").unwrap();
    assert_eq!(forged, "off|no-status|false", "from a site's own PHP");
    let (_, status) = http_get(p.port(0), "a.rt.test", "/status/").unwrap();
    assert!(!status.contains("Server Status"), "{status}");
    let log = std::fs::read_to_string(p.home("rta").join("sites/a.rt.test/logs/access.log"));
    let forged_line = log
        .unwrap()
        .lines()
        .find(|l| l.contains("forged"))
        .map(str::to_owned);
    assert!(
        forged_line
            .as_deref()
            .is_some_and(|l| l.starts_with("127.0.0.1 ")),
        "a site's PHP forged its client's address: {forged_line:?}"
    );
    assert_eq!(wait_http(p.port(0), "www.a.rt.test"), a, "aliases");
    let b = wait_http(p.port(1), "b.rt.test");
    assert!(b.starts_with("8.4.") && b.ends_with(" 20002"), "{b}");
    assert_eq!(
        http_get(p.port(0), "b.rt.test", "/").unwrap().0,
        404,
        "a site answers only on its runtime"
    );

    // The database, on the other host's address, with the generated credentials; the other
    // site's database is refused.
    let cred = std::fs::read_to_string(p.home("rta").join("private/mariadb-rt_a.cnf")).unwrap();
    let get = |k: &str| {
        cred.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap()
            .to_string()
    };
    let db_probe = format!(
        "<?php mysqli_report(MYSQLI_REPORT_ERROR | MYSQLI_REPORT_STRICT);\n\
         $m = new mysqli('[{host}]', '{user}', '{pw}', '{db}', {port});\n\
         $m->query('CREATE TABLE IF NOT EXISTS t (x INT)'); $m->query('INSERT INTO t VALUES (42)');\n\
         echo $m->query('SELECT CURRENT_USER(), SUM(x) FROM t')->fetch_row()[1], '|';\n\
         try {{ $m->select_db('rt_b'); echo 'LEAK'; }} catch (mysqli_sql_exception $e) {{ echo 'refused'; }}",
        host = get("host"),
        user = get("user"),
        pw = get("password"),
        db = get("database"),
        port = get("port"),
    );
    put(&a_root.join("db.php"), &db_probe, 20001);
    let (status, db) = http_get(p.port(0), "a.rt.test", "/db.php").unwrap();
    assert_eq!(
        (status, db.as_str()),
        (200, "42|refused"),
        "a site reaches its database, only its own"
    );

    // Behind the proxy, the site's log shows the client's address, not the proxy's.
    {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", p.port(0))).unwrap();
        write!(
            s,
            "GET /?via-proxy HTTP/1.0\r\nHost: a.rt.test\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n"
        )
        .unwrap();
        let mut sink = String::new();
        s.read_to_string(&mut sink).unwrap();
        let log =
            std::fs::read_to_string(p.home("rta").join("sites/a.rt.test/logs/access.log")).unwrap();
        let line = log
            .lines()
            .find(|l| l.contains("via-proxy"))
            .expect("the request is logged");
        assert!(line.starts_with("203.0.113.7 "), "{line}");
    }

    // The confinement DESIGN.md measured.
    let c = "pic2-t-rt-php82";
    assert_eq!(docker_inspect(c, "{{.HostConfig.CapDrop}}"), "[ALL]");
    assert_eq!(
        docker_inspect(c, "{{.HostConfig.CapAdd}}"),
        "[SETUID SETGID DAC_READ_SEARCH SYS_NICE KILL]"
    );
    assert_eq!(
        docker_inspect(c, "{{.HostConfig.SecurityOpt}}"),
        "[no-new-privileges]"
    );
    assert_eq!(docker_inspect(c, "{{.HostConfig.ReadonlyRootfs}}"), "true");
    assert_eq!(docker_inspect(c, "{{.HostConfig.PidsLimit}}"), "1024");
    assert_eq!(
        docker_inspect(c, "{{.HostConfig.MemorySwap}}"),
        docker_inspect(c, "{{.HostConfig.Memory}}"),
        "no swap beyond the memory limit"
    );
    assert!(
        docker_inspect(c, "{{json .HostConfig.PortBindings}}").contains(r#""HostIp":"127.0.0.1""#)
    );
    assert!(docker_inspect(c, "{{.Config.Labels}}").contains("org.pic2.platform:t-rt"));
}

#[test]
fn a_vhost_pointed_at_a_system_uid_is_refused() {
    engine_answers();
    let p = Platform::new("sysuid");
    p.write(&body(&p, SITES));
    p.apply(&[]);
    // Apache serving, its pid file written: `apache2ctl graceful` before that starts a
    // second server, which finds the port taken (seen once in CI)
    let serving = (0..100).any(|_| {
        let ok = http_get(p.port(0), "pic2-default", "/health").is_ok_and(|r| r.0 == 200);
        if !ok {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        ok
    });
    assert!(serving, "the php82 runtime did not answer within 10 s");
    let conf = p.dir.path().join("config/runtimes/php82/zz-test.conf");
    std::fs::write(&conf, "<VirtualHost *:8080>\n  ServerName rogue.test\n  DocumentRoot /var/www/pic2\n  AssignUserID #33 #33\n</VirtualHost>\n").unwrap();
    let out = Command::new("docker")
        .args(["exec", "pic2-t-sysuid-php82", "apache2ctl", "graceful"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut status = 0;
    for _ in 0..50 {
        status = http_get(p.port(0), "rogue.test", "/health")
            .map(|r| r.0)
            .unwrap_or(0);
        if status == 500 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        status, 500,
        "mpm-itk's LimitUIDRange refuses uid 33 (www-data)"
    );
    assert_eq!(
        http_get(p.port(0), "pic2-default", "/health").unwrap().0,
        200,
        "the idle user is in range"
    );
}

#[test]
fn moving_and_adding_sites_reloads_without_a_failed_request() {
    engine_answers();
    let p = Platform::new("reload");
    p.write(&body(&p, SITES));
    p.apply(&[]);
    put(
        &p.home("reloadb")
            .join("sites/b.reload.test/htdocs/index.php"),
        "<?php echo 'b';",
        20002,
    );
    put(
        &p.home("reloada")
            .join("sites/a.reload.test/htdocs/index.php"),
        "<?php echo PHP_VERSION;",
        20001,
    );
    wait_http(p.port(1), "b.reload.test");
    wait_http(p.port(0), "a.reload.test");

    // a moves to php84, c is added on php84: both runtimes reload while b is under load.
    let moved = SITES.replacen("runtime = \"php82\"", "runtime = \"php84\"", 1)
        + "\n[sites.\"c.{id}.test\"]\nowner = \"{id}b\"\nruntime = \"php84\"\n";
    p.write(&body(&p, &moved));
    let plan = p.expect(&["plan", "--detail"], 2);
    assert!(
        plan.contains("reload pic2-t-reload-php82 gracefully")
            && plan.contains("reload pic2-t-reload-php84 gracefully"),
        "{plan}"
    );
    assert!(!plan.contains("restart container"), "{plan}");

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let port = p.port(1);
    let load = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            // Bounded: at most 20,000 requests or 60 s.
            for _ in 0..20_000 {
                if stop.load(Ordering::Relaxed) || started.elapsed().as_secs() > 60 {
                    break;
                }
                match http_get(port, "b.reload.test", "/") {
                    Ok((200, body)) if body == "b" => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    // the load runs before, during and after the apply, however busy the machine: counted
    // in requests answered, not in time (each wait bounded)
    let served = || ok.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed);
    let wait_for = |n: usize| {
        let t = std::time::Instant::now();
        while served() < n && t.elapsed() < std::time::Duration::from_secs(30) {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    wait_for(10);
    let before = served();
    p.apply(&[]);
    let during = served() - before;
    wait_for(served() + 20);
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    assert!(before >= 10, "the load did not start");
    assert!(during > 0, "no request while the runtimes reloaded");
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no failed request during the reloads"
    );

    let a = wait_http(p.port(1), "a.reload.test");
    assert!(a.starts_with("8.4."), "a moved to PHP 8.4: {a}");
    assert_eq!(
        http_get(p.port(0), "a.reload.test", "/").unwrap().0,
        404,
        "and left PHP 8.2"
    );
    p.assert_converged();
}

/// `curl` with a cookie jar, for phpMyAdmin's login form (the password comes from a file).
fn curl(jar: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-s", "-c"])
        .arg(jar)
        .arg("-b")
        .arg(jar)
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn phpmyadmin_shows_a_site_user_its_own_database_only() {
    engine_answers();
    let p = Platform::new("pma");
    let body = body(&p, SITES).replace(
        "[containers]",
        &format!(
            "[services]\nphpmyadmin = \"pma.{{id}}.test\"\n\n[containers]\nphpmyadmin_port = {}",
            p.port(3)
        ),
    );
    p.write(&body);
    p.apply(&[]);
    p.assert_converged();
    let base = format!("http://127.0.0.1:{}/", p.port(3));
    let dir = tempfile::tempdir().unwrap();
    let jar = dir.path().join("cookies");
    let mut login_page = String::new();
    for _ in 0..100 {
        login_page = curl(&jar, &[&base]);
        if login_page.contains("name=\"token\"") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let token = login_page
        .split("name=\"token\" value=\"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .expect("a login form");
    let cred = std::fs::read_to_string(p.home("pmaa").join("private/mariadb-pma_a.cnf")).unwrap();
    let password = cred
        .lines()
        .find_map(|l| l.strip_prefix("password="))
        .unwrap();
    let pw_file = dir.path().join("pw");
    std::fs::write(&pw_file, password).unwrap();
    let login = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-c"])
        .arg(&jar)
        .arg("-b")
        .arg(&jar)
        .args(["--data-urlencode", "pma_username=pma_a"])
        .arg("--data-urlencode")
        .arg(format!("pma_password@{}", pw_file.display()))
        .args([
            "--data",
            &format!("server=1&token={token}"),
            &format!("{base}index.php?route=/"),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&login.stdout), "302", "logged in");
    let databases = curl(&jar, &[&format!("{base}index.php?route=/server/databases")]);
    assert!(databases.contains("pma_a"), "its database is listed");
    assert!(
        !databases.contains("pma_b"),
        "the other site's database is not"
    );
    // an import may be as large as the proxy lets through to phpMyAdmin, not PHP's 2 MB
    let import = curl(&jar, &[&format!("{base}index.php?route=/server/import")]);
    assert!(
        import.contains("64MiB"),
        "the import's limit: {}",
        import.len()
    );
}

#[test]
fn wordpress_from_debians_package_installs_and_serves_a_post() {
    engine_answers();
    let source = std::path::Path::new("/usr/share/wordpress");
    assert!(
        source.join("wp-settings.php").is_file(),
        "Debian's wordpress package is missing: run `dev/packages.sh`"
    );
    assert!(
        source.join("wp-content/themes/twentytwentyone").is_dir(),
        "Debian's wordpress-theme-twentytwentyone is missing: run `dev/packages.sh`"
    );
    let p = Platform::new("wp");
    p.write(&body(&p, SITES));
    p.apply(&[]);
    // The owner uploads WordPress (the package's files, links resolved) and its configuration.
    let root = p.home("wpa").join("sites/a.wp.test/htdocs");
    let copied = Command::new("cp")
        .arg("-rL")
        .arg(format!("{}/.", source.display()))
        .arg(&root)
        .status()
        .unwrap();
    assert!(copied.success());
    let cred = std::fs::read_to_string(p.home("wpa").join("private/mariadb-wp_a.cnf")).unwrap();
    let get = |k: &str| {
        cred.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap()
            .to_string()
    };
    let salt = |i: usize| format!("pic2-test-salt-{i}-{}", get("password"));
    let config = format!(
        "<?php\n\
         define('DB_NAME', '{db}');\ndefine('DB_USER', '{user}');\ndefine('DB_PASSWORD', '{pw}');\n\
         define('DB_HOST', '[{host}]:{port}');\ndefine('DB_CHARSET', 'utf8mb4');\ndefine('DB_COLLATE', '');\n\
         define('AUTH_KEY', '{s0}'); define('SECURE_AUTH_KEY', '{s1}'); define('LOGGED_IN_KEY', '{s2}'); define('NONCE_KEY', '{s3}');\n\
         define('AUTH_SALT', '{s4}'); define('SECURE_AUTH_SALT', '{s5}'); define('LOGGED_IN_SALT', '{s6}'); define('NONCE_SALT', '{s7}');\n\
         define('FS_METHOD', 'direct');\ndefine('WP_DEFAULT_THEME', 'twentytwentyone');\n\
         define('DISABLE_WP_CRON', true); define('AUTOMATIC_UPDATER_DISABLED', true); define('WP_HTTP_BLOCK_EXTERNAL', true);\n\
         $table_prefix = 'wp_';\n\
         if (!defined('ABSPATH')) define('ABSPATH', __DIR__ . '/');\nrequire_once ABSPATH . 'wp-settings.php';\n",
        db = get("database"),
        user = get("user"),
        pw = get("password"),
        host = get("host"),
        port = get("port"),
        s0 = salt(0), s1 = salt(1), s2 = salt(2), s3 = salt(3), s4 = salt(4), s5 = salt(5), s6 = salt(6), s7 = salt(7),
    );
    std::fs::write(root.join("wp-config.php"), config).unwrap();
    // Test traffic stays on this machine: WordPress asks its own address at install (a name
    // only the test's Host header knows, hence a DNS query out of the container), checks
    // for updates and runs its cron over HTTP. Every request it would make fails at once.
    let mu = root.join("wp-content/mu-plugins");
    std::fs::create_dir_all(&mu).unwrap();
    std::fs::write(
        mu.join("pic2-test-offline.php"),
        "<?php add_filter('pre_http_request', function () {\n\
         return new WP_Error('pic2_test_offline', 'no network in the tests'); }, 0);\n",
    )
    .unwrap();
    let owned = Command::new("chown")
        .args(["-R", "20001:20001"])
        .arg(&root)
        .status()
        .unwrap();
    assert!(owned.success());

    // The install form, as a person would submit it.
    let url = format!("http://127.0.0.1:{}/wp-admin/install.php?step=2", p.port(0));
    // the password from a file, never in argv (curl reads `name@file` as is: no newline)
    let secret = p.dir.path().join("wp-admin.secret");
    std::fs::write(&secret, "a rather long admin passphrase").unwrap();
    let pw = |field: &str| format!("{field}@{}", secret.display());
    let install = Command::new("curl")
        .args([
            "-s",
            "-H",
            "Host: a.wp.test",
            "--data-urlencode",
            "weblog_title=Association A",
            "--data-urlencode",
            "user_name=admin_a",
        ])
        .args(["--data-urlencode", &pw("admin_password")])
        .args(["--data-urlencode", &pw("admin_password2")])
        .args([
            "--data-urlencode",
            "pw_weak=1",
            "--data-urlencode",
            "admin_email=a@wp.test",
            "--data-urlencode",
            "blog_public=0",
            "--data-urlencode",
            "Submit=Install WordPress",
            &url,
        ])
        .output()
        .unwrap();
    let page = String::from_utf8_lossy(&install.stdout);
    assert!(
        page.contains("WordPress has been installed"),
        "install page: {}",
        &page[..page.len().min(2000)]
    );
    let (status, post) = crate::fixture::http_get(p.port(0), "a.wp.test", "/?p=1").unwrap();
    assert_eq!(status, 200);
    assert!(
        post.contains("Hello world!"),
        "the first post is served: {}",
        &post[..post.len().min(3000)]
    );
}

/// Two owners' sites on one runtime behind `pic2 proxy`: every request is answered, by the
/// right owner. mpm-itk ties a connection to the uid of its first request and closes it,
/// unanswered, when asked for another owner's site; a pool of backend connections shared
/// by the whole runtime gave such a connection to the other owner's next request, and a
/// POST (never sent twice) got a 502.
#[test]
fn two_owners_on_one_runtime_behind_the_proxy_each_get_every_answer() {
    use std::io::{Read, Write};
    engine_answers();
    let p = Platform::new("rtpool");
    let state = p.dir.path().join("proxy");
    let sites = format!(
        r#"
[sites."a.{{id}}.test"]
owner = "{{id}}a"
runtime = "php82"
tls = "none"

[sites."b.{{id}}.test"]
owner = "{{id}}b"
runtime = "php82"
tls = "none"
max_body_mb = 10
backend_timeout_seconds = 120
{{more}}
[proxy]
state_dir = "{state}"
# no site asks for a certificate; a CA on loopback all the same (no traffic leaves)
acme_directory = "https://127.0.0.1:9/dir"
"#,
        state = state.display()
    );
    // the third comes with a www alias that its apex is sent to
    let third = "\n[sites.\"c.{id}.test\"]\nowner = \"{id}a\"\nruntime = \"php82\"\ntls = \"none\"\naliases = [\"www.c.{id}.test\"]\nredirect = \"www\"\n";
    p.write(&body(&p, &sites.replace("{more}", "")));
    p.apply(&[]);
    for (owner, uid) in [("a", 20001), ("b", 20002)] {
        let root = p
            .home(&format!("rtpool{owner}"))
            .join(format!("sites/{owner}.rtpool.test/htdocs"));
        put(
            &root.join("index.php"),
            "<?php echo posix_geteuid(), ' ', strlen(file_get_contents('php://input'));",
            uid,
        );
        put(
            &root.join("scheme.php"),
            "<?php echo $_SERVER['HTTPS'] ?? 'off';",
            uid,
        );
        put(
            &root.join("limits.php"),
            "<?php echo ini_get('upload_max_filesize'), ' ', ini_get('post_max_size'), ' ', ini_get('max_execution_time');",
            uid,
        );
    }
    wait_http(p.port(0), "a.rtpool.test");
    wait_http(p.port(0), "b.rtpool.test");

    // what the proxy must live with: on one connection, a request for the other owner's
    // site is not answered
    let mut direct = std::net::TcpStream::connect(("127.0.0.1", p.port(0))).unwrap();
    direct
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut answer = |host: &str| {
        write!(direct, "GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
        let mut buf = [0u8; 4096];
        let n = direct.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert!(answer("a.rtpool.test").starts_with("HTTP/1.1 200"));
    assert_eq!(
        answer("b.rtpool.test"),
        "",
        "mpm-itk answered another uid on the same connection"
    );

    let listen = format!("127.0.0.1:{}", p.port(3));
    let mut proxy = p
        .command(&[
            "proxy",
            "--listen-http",
            &listen,
            "--listen-https",
            "",
            "--workers",
            "1",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_http(p.port(3), "a.rtpool.test");
    let post = |host: &str| -> (u16, String) {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", p.port(3))).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        write!(s, "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello").unwrap();
        let mut raw = String::new();
        let _ = s.read_to_string(&mut raw);
        let status = raw
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        // an error page is told by its status: its first words are enough to see
        let body: String = raw
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.chars().take(16).collect())
            .unwrap_or_default();
        (status, body)
    };
    let mut seen = Vec::new();
    for _ in 0..10 {
        seen.push(post("a.rtpool.test"));
        seen.push(post("b.rtpool.test"));
    }
    // PHP learns the scheme the proxy says the client used (WordPress builds its links and
    // its admin redirects from $_SERVER['HTTPS'])
    let scheme = |proto: &str| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", p.port(0))).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        write!(
            s,
            "GET /scheme.php HTTP/1.0\r\nHost: a.rtpool.test\r\nX-Forwarded-Proto: {proto}\r\n\r\n"
        )
        .unwrap();
        let mut raw = String::new();
        let _ = s.read_to_string(&mut raw);
        raw.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default()
    };
    assert_eq!(scheme("https"), "on");
    assert_eq!(scheme("http"), "off");
    // PHP takes the uploads the proxy lets through (64 MB, or the site's), and runs as
    // long as the proxy waits when the site says so (PHP's own 30 s otherwise)
    let limits = |host: &str| http_get(p.port(0), host, "/limits.php").unwrap().1;
    assert_eq!(limits("a.rtpool.test"), "64M 64M 30");
    assert_eq!(limits("b.rtpool.test"), "10M 10M 120");
    // a site added by `pic2 apply` is served by the running proxy, which reloads the routes
    // apply writes (the plan says so first)
    p.write(&body(&p, &sites.replace("{more}", third)));
    let plan = p.expect(&["plan"], 2);
    assert!(plan.contains("routes.json"), "{plan}");
    p.apply(&[]);
    p.assert_converged();
    let c_root = p.home("rtpoola").join("sites/c.rtpool.test/htdocs");
    put(&c_root.join("index.php"), "<?php echo 'c';", 20001);
    let mut served = (0, String::new());
    for _ in 0..50 {
        served = http_get(p.port(3), "www.c.rtpool.test", "/").unwrap_or_default();
        if served.0 == 200 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(
        served,
        (200, "c".to_string()),
        "the new site through the running proxy, by its alias (directly: {:?})",
        http_get(p.port(0), "www.c.rtpool.test", "/")
    );
    // its apex is sent to www by the proxy, which the runtime never sees
    let mut apex = std::net::TcpStream::connect(("127.0.0.1", p.port(3))).unwrap();
    apex.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        apex,
        "GET /page?x=1 HTTP/1.1\r\nHost: c.rtpool.test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    let _ = apex.read_to_string(&mut raw);
    assert!(raw.starts_with("HTTP/1.1 308"), "{raw}");
    let location = format!(
        "location: http://www.c.rtpool.test:{}/page?x=1\r\n",
        p.port(3)
    );
    assert!(raw.to_ascii_lowercase().contains(&location), "{raw}");
    let _ = proxy.kill();
    let stderr = proxy
        .wait_with_output()
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .unwrap_or_default();
    let want: Vec<(u16, String)> = (0..10)
        .flat_map(|_| [(200, "20001 5".to_string()), (200, "20002 5".to_string())])
        .collect();
    assert_eq!(seen, want, "proxy's log:\n{stderr}");
}
