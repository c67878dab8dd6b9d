//! Validation tests: each bad inventory asserts the code, the line:column and the text blamed.

use crate::{load, Code};

/// A small valid inventory the tests below break one way at a time.
const BASE: &str = r#"[platform]
name = "t"
domain = "t.example"
data_dir = "/srv/t"

[hosts.db]
roles = ["database", "directory"]
address = "fd00::2"

[hosts.web]
roles = ["web"]
address = "fd00::1"
public_ipv4 = "192.0.2.1"

[directory]
url = "ldap://[fd00::2]:389"
base_dn = "dc=t,dc=example"
admin_dn = "cn=admin,dc=t,dc=example"
admin_password_file = "/etc/pic2/ldap.secret"
uid_range = [10000, 19999]

[database]
url = "mysql://[fd00::2]"
admin_user = "pic2"
admin_password_file = "/etc/pic2/db.secret"

[runtimes.itk82]
php = "8.2"
base_image = "local/debian:bookworm"

[accounts.alice]
uid = 10001
full_name = "Alice"
email = "alice@t.example"

[accounts.bob]
uid = 10002
full_name = "Bob"
email = "bob@t.example"

[sites."alice.example"]
owner = "alice"
runtime = "itk82"
aliases = ["www.alice.example"]
databases = ["alice"]

[databases.alice]
owner = "alice"
"#;

/// (code, line, column, blamed text) of every diagnostic.
fn errors(text: &str) -> Vec<(&'static str, usize, usize, String)> {
    match load("t.toml", text) {
        Ok(_) => vec![],
        Err(d) => d
            .located()
            .into_iter()
            .map(|l| (l.code, l.line, l.column, l.text))
            .collect(),
    }
}

fn with(extra: &str) -> String {
    format!("{BASE}\n{extra}")
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn base_and_examples_are_valid() {
    assert_eq!(errors(BASE), vec![]);
    for (name, text) in [
        (
            "examples/pic2.toml",
            include_str!("../../../examples/pic2.toml"),
        ),
        (
            "examples/demo.toml",
            include_str!("../../../examples/demo.toml"),
        ),
    ] {
        if let Err(d) = load(name, text) {
            panic!("{name}: {:#?}", d.located());
        }
    }
}

#[test]
fn syntax_error_points_at_the_place() {
    let e = errors("[platform]\nname = \"x\nnext = 1\n");
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].0, "toml-syntax");
    assert_eq!(e[0].1, 2);
}

#[test]
fn unknown_key_suggests_the_nearest() {
    let text = BASE.replace("owner = \"alice\"\nruntime", "ownr = \"alice\"\nruntime");
    let d = load("t.toml", text.as_str()).unwrap_err();
    let codes: Vec<_> = d.diagnostics.iter().map(|d| d.code).collect();
    assert!(codes.contains(&Code::UnknownKey), "{codes:?}");
    assert!(codes.contains(&Code::MissingKey), "{codes:?}");
    let unknown = d
        .diagnostics
        .iter()
        .find(|d| d.code == Code::UnknownKey)
        .unwrap();
    assert_eq!(unknown.hint.as_deref(), Some("did you mean `owner`?"));
    let l = d
        .located()
        .into_iter()
        .find(|l| l.code == "unknown-key")
        .unwrap();
    assert_eq!(
        (l.line, l.column, l.text.as_str()),
        (line_of(&text, "ownr"), 1, "ownr")
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let text = with(
        r#"[accounts.carol]
uid = 10001
full_name = "Carol"
email = "not-an-email"

[sites."carol.example"]
owner = "carl"
runtime = "itk99"
databases = ["nope"]
"#,
    );
    let codes: Vec<_> = errors(&text).into_iter().map(|e| e.0).collect();
    // carol's e-mail is broken, so carol is left out: no duplicate uid, and no cascade of
    // "unknown account" either; the site's own dangling references are still reported.
    assert_eq!(
        codes,
        vec![
            "invalid-email",
            "unknown-account",
            "unknown-runtime",
            "unknown-database"
        ]
    );
    let text = text.replace("not-an-email", "carol@t.example");
    let e = errors(&text);
    let codes: Vec<_> = e.iter().map(|e| e.0).collect();
    assert_eq!(
        codes,
        vec![
            "duplicate-uid",
            "unknown-account",
            "unknown-runtime",
            "unknown-database"
        ]
    );
    assert_eq!(e[1].3, "carl");
    assert_eq!(e[1].1, line_of(&text, "owner = \"carl\""));
    assert_eq!(e[1].2, 10);
}

#[test]
fn dangling_reference_hints_the_nearest_name() {
    let text = BASE.replace(
        "owner = \"alice\"\nruntime = \"itk82\"",
        "owner = \"alcie\"\nruntime = \"itk82\"",
    );
    let d = load("t.toml", text.as_str()).unwrap_err();
    assert_eq!(d.diagnostics[0].code, Code::UnknownAccount);
    assert_eq!(
        d.diagnostics[0].hint.as_deref(),
        Some("did you mean `alice`?")
    );
}

#[test]
fn duplicate_uid_points_at_both() {
    let text = BASE.replace("uid = 10002", "uid = 10001");
    let d = load("t.toml", text.as_str()).unwrap_err();
    assert_eq!(d.diagnostics.len(), 1);
    let diag = &d.diagnostics[0];
    assert_eq!(diag.code, Code::DuplicateUid);
    assert_eq!(diag.related.len(), 1);
    assert_eq!(d.located()[0].line, line_of(&text, "[accounts.bob]") + 1);
}

#[test]
fn uid_outside_the_range() {
    let text = BASE.replace("uid = 10002", "uid = 500");
    let e = errors(&text);
    assert_eq!(
        e,
        vec![(
            "uid-out-of-range",
            line_of(&text, "uid = 500"),
            7,
            "500".to_string()
        )]
    );
}

#[test]
fn ssh_group_gid_inside_the_range_is_refused() {
    let text = BASE.replace(
        "uid_range = [10000, 19999]",
        "uid_range = [10000, 19999]\nssh_group_gid = 10005",
    );
    assert_eq!(errors(&text)[0].0, "uid-out-of-range");
    let text = BASE.replace(
        "uid_range = [10000, 19999]",
        "uid_range = [10000, 19999]\nssh_group_gid = 10001",
    );
    let codes: Vec<_> = errors(&text).into_iter().map(|e| e.0).collect();
    assert!(codes.contains(&"duplicate-uid"), "{codes:?}");
}

#[test]
fn domain_served_twice_including_aliases() {
    let text = with(
        r#"[sites."bob.example"]
owner = "bob"
runtime = "itk82"
aliases = ["www.alice.example"]

[services]
passwd = "bob.example"
"#,
    );
    let e = errors(&text);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e.iter().all(|e| e.0 == "duplicate-domain"));
    assert_eq!(e[0].3, "www.alice.example");
    assert_eq!(e[0].1, line_of(&text, "[sites.\"bob.example\"]") + 3);
}

#[test]
fn malformed_values_each_say_what_and_where() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "address = \"fd00::1\"",
            "address = \"fd00::zz\"",
            "invalid-address",
        ),
        (
            "public_ipv4 = \"192.0.2.1\"",
            "public_ipv4 = \"2001:db8::1\"",
            "invalid-address",
        ),
        (
            "domain = \"t.example\"",
            "domain = \"https://t.example\"",
            "invalid-domain",
        ),
        (
            "aliases = [\"www.alice.example\"]",
            "aliases = [\"WWW.alice.example\"]",
            "invalid-domain",
        ),
        (
            "data_dir = \"/srv/t\"",
            "data_dir = \"srv/t\"",
            "invalid-path",
        ),
        (
            "url = \"ldap://[fd00::2]:389\"",
            "url = \"ldap://fd00::2:389\"",
            "invalid-url",
        ),
        (
            "url = \"mysql://[fd00::2]\"",
            "url = \"postgres://x\"",
            "invalid-url",
        ),
        (
            "base_dn = \"dc=t,dc=example\"",
            "base_dn = \"t.example\"",
            "invalid-dn",
        ),
        ("php = \"8.2\"", "php = \"eight\"", "invalid-value"),
        ("uid = 10001", "uid = \"10001\"", "wrong-type"),
        ("uid = 10001", "uid = -1", "invalid-value"),
        (
            "roles = [\"web\"]",
            "roles = [\"web\", \"dns\"]",
            "invalid-value",
        ),
        ("[accounts.bob]", "[accounts.Bob]", "invalid-name"),
        ("[accounts.bob]", "[accounts.root]", "reserved-name"),
        (
            "[databases.alice]\nowner",
            "[databases.alice-db]\nowner",
            "invalid-name",
        ),
        (
            "uid_range = [10000, 19999]",
            "uid_range = [19999, 10000]",
            "invalid-value",
        ),
    ];
    for (from, to, code) in cases {
        assert!(BASE.contains(from), "{from}");
        let text = BASE.replacen(from, to, 1);
        let e = errors(&text);
        assert!(!e.is_empty(), "{to}: no error");
        let found = e
            .iter()
            .find(|e| e.0 == *code)
            .unwrap_or_else(|| panic!("{to}: no {code} in {e:?}"));
        assert_eq!(
            found.1,
            line_of(&text, to.lines().next().unwrap()),
            "{to}: {e:?}"
        );
    }
}

#[test]
fn weak_or_broken_ssh_keys_are_refused() {
    for (key, why) in [
        ("ssh-ed25519 AAAAnotbase64", "invalid SSH public key"),
        ("ssh-dss AAAAB3NzaC1kc3MAAACBAP", "invalid SSH public key"),
    ] {
        let text = BASE.replace(
            "email = \"bob@t.example\"",
            &format!("email = \"bob@t.example\"\nssh_keys = [\"{key}\"]"),
        );
        let d = load("t.toml", text.as_str()).unwrap_err();
        assert_eq!(d.diagnostics[0].code, Code::InvalidSshKey);
        assert!(d.diagnostics[0].message.starts_with(why));
    }
    let key = include_str!("../../../examples/demo.toml")
        .lines()
        .find(|l| l.starts_with("ssh_keys"))
        .unwrap();
    let text = BASE.replace(
        "email = \"bob@t.example\"",
        &format!(
            "email = \"bob@t.example\"\n{}",
            key.replace("\"]", "\", \"").to_string() + &key["ssh_keys = [\"".len()..]
        ),
    );
    assert_eq!(errors(&text)[0].0, "duplicate-value");
    // a written port that is another runtime's default (itk82, first in name order: 8100)
    let text = with("[runtimes.zz]\nphp = \"8.4\"\nbase_image = \"x\"\nport = 8100\n");
    let e = errors(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, "duplicate-value");
    assert_eq!(e[0].1, line_of(&text, "port = 8100"));
    assert_eq!(e[0].3, "8100");
    // two defaults never meet; a written port clear of them is fine
    let text = with("[runtimes.zz]\nphp = \"8.4\"\nbase_image = \"x\"\n");
    assert_eq!(errors(&text), vec![]);
}

#[test]
fn site_using_another_accounts_database() {
    let text = with(
        "[sites.\"bob.example\"]\nowner = \"bob\"\nruntime = \"itk82\"\ndatabases = [\"alice\"]\n",
    );
    let e = errors(&text);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].0, "database-owner-mismatch");
    assert_eq!(e[0].3, "alice");
}

#[test]
fn missing_roles_and_sections() {
    let text = BASE.replace("roles = [\"web\"]", "roles = [\"mail\"]");
    assert_eq!(errors(&text)[0].0, "host-roles");
    let text = BASE.replace("[database]", "[databasex]");
    let codes: Vec<_> = errors(&text).into_iter().map(|e| e.0).collect();
    assert!(
        codes.contains(&"unknown-key") && codes.contains(&"missing-key"),
        "{codes:?}"
    );
}

#[test]
fn mariadb_unmatchable_networks_are_refused() {
    let text = BASE.replace(
        "admin_user = \"pic2\"",
        "admin_user = \"pic2\"\nclients = [\"fd00:5049:4332::/64\"]",
    );
    assert_eq!(errors(&text)[0].0, "invalid-address");
}

#[test]
fn database_clients_default_to_web_hosts() {
    let inv = load("t.toml", BASE).unwrap();
    let clients: Vec<_> = inv
        .database_clients()
        .iter()
        .map(|c| c.as_str().to_string())
        .collect();
    assert_eq!(clients, vec!["fd00::1"]);
}

#[test]
fn schema_lists_every_key_the_examples_use() {
    let schema: serde_json::Value = serde_json::from_str(crate::JSON_SCHEMA).unwrap();
    let text = include_str!("../../../examples/pic2.toml");
    let value = toml_span::parse(text).unwrap();
    fn walk(v: &toml_span::Value<'_>, s: &serde_json::Value, path: &str) {
        let Some(table) = v.as_table() else { return };
        for (k, child) in table {
            let sub = s
                .get("properties")
                .and_then(|p| p.get(k.name.as_ref()))
                .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()))
                .unwrap_or_else(|| panic!("schema lacks {path}.{}", k.name));
            let sub = sub.get("oneOf").and_then(|o| o.get(1)).unwrap_or(sub);
            walk(child, sub, &format!("{path}.{}", k.name));
        }
    }
    walk(&value, &schema, "");
}

#[test]
fn redirects_need_both_names_and_ports_are_unique() {
    let text = BASE.replace("aliases = [\"www.alice.example\"]", "redirect = \"www\"");
    let e = errors(&text);
    assert_eq!(e[0].0, "invalid-value");
    assert_eq!(e[0].3, "www");
    let text = BASE.replace(
        "aliases = [\"www.alice.example\"]",
        "aliases = [\"www.alice.example\"]\nredirect = \"apex\"",
    );
    assert_eq!(errors(&text), vec![]);
    let text = with("[runtimes.b]\nphp = \"8.4\"\nbase_image = \"x\"\nport = 8100\n").replace(
        "base_image = \"local/debian:bookworm\"",
        "base_image = \"local/debian:bookworm\"\nport = 8100",
    );
    assert_eq!(errors(&text)[0].0, "duplicate-value");
}

#[test]
fn proxy_networks_are_checked_where_written() {
    let text = with("[proxy]\nadmin_addresses = [\"2001:db8::/48\", \"10.0.0.0/33\"]\ntrusted_proxies = [\"192.0.2.7\", \"lb.example\"]\n");
    let e = errors(&text);
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!(e[0].0, "invalid-address");
    assert_eq!(e[0].1, line_of(&text, "admin_addresses"));
    assert_eq!(e[0].3, "10.0.0.0/33");
    assert_eq!(e[1].1, line_of(&text, "trusted_proxies"));
    assert_eq!(e[1].3, "lb.example");
    let fine = with("[proxy]\ntrusted_proxies = [\"192.0.2.0/24\", \"2001:db8::1\"]\nadmin_addresses = [\"2001:db8:1::/48\"]\n");
    assert_eq!(errors(&fine), vec![]);
    let inside = with("[proxy]\ntrusted_proxies = [\"2001:db8:1::10\"]\nadmin_addresses = [\"2001:db8:1::/48\"]\n");
    let e = errors(&inside);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, "invalid-value");
    assert_eq!(e[0].1, line_of(&inside, "trusted_proxies"));
}

#[test]
fn a_per_client_connection_limit_of_zero_is_refused_where_written() {
    let text = with("[proxy]\nmax_connections_per_client = 0\n");
    let e = errors(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, "invalid-value");
    assert_eq!(e[0].1, line_of(&text, "max_connections_per_client"));
    assert_eq!(
        errors(&with("[proxy]\nmax_connections_per_client = 1024\n")),
        vec![]
    );
}

#[test]
fn timeouts_out_of_range_are_refused_where_written() {
    let text = with("[proxy]\nsend_timeout_seconds = 0\nidle_timeout_seconds = 86401\nbackend_timeout_seconds = 120\n");
    let e = errors(&text);
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!(
        (e[0].0, e[0].1),
        ("invalid-value", line_of(&text, "send_timeout"))
    );
    assert_eq!(
        (e[1].0, e[1].1),
        ("invalid-value", line_of(&text, "idle_timeout"))
    );
    assert_eq!(e[1].3, "86401");
    let site = BASE.replace(
        "aliases = [\"www.alice.example\"]",
        "aliases = [\"www.alice.example\"]\nbackend_timeout_seconds = -5",
    );
    let e = errors(&site);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(
        (e[0].0, e[0].1),
        ("invalid-value", line_of(&site, "backend_timeout"))
    );
    assert_eq!(e[0].3, "-5");
    let e = errors(&with(
        "[proxy]
send_timeout_seconds = \"60s\"\n",
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, "wrong-type");
}

#[test]
fn timeouts_are_read_from_proxy_and_sites() {
    let text = with("[proxy]\nheader_read_timeout_seconds = 20\nbackend_timeout_seconds = 90\ntls_handshake_timeout_seconds = 5\n")
        .replace(
            "aliases = [\"www.alice.example\"]",
            "aliases = [\"www.alice.example\"]\nbackend_timeout_seconds = 600",
        );
    let inv = load("t.toml", &text).unwrap();
    let t = inv.proxy.as_ref().unwrap().timeouts;
    assert_eq!(t.header_read.map(|t| t.seconds()), Some(20));
    assert_eq!(t.backend.map(|t| t.seconds()), Some(90));
    assert_eq!(t.tls_handshake.map(|t| t.seconds()), Some(5));
    assert_eq!((t.body_read, t.send, t.idle), (None, None, None));
    let site = inv.sites.values().next().unwrap();
    assert_eq!(site.backend_timeout.map(|t| t.seconds()), Some(600));
}

/// An empty full name becomes an empty cn and sn, which slapd refuses only at apply time,
/// after the groups were added: refused here, at its place.
#[test]
fn an_empty_full_name_is_refused_where_it_is_written() {
    let line = BASE.lines().find(|l| l.starts_with("full_name")).unwrap();
    for bad in [
        "full_name = \"\"",
        "full_name = \"  \"",
        "full_name = \"a\\nb\"",
    ] {
        let text = BASE.replace(line, bad);
        let e = errors(&text);
        assert_eq!(e.len(), 1, "{bad}: {e:?}");
        assert_eq!(e[0].0, "invalid-value");
        assert_eq!(e[0].1, line_of(&text, bad), "{bad}");
    }
}

/// A mail server's address lands in PHP's `sendmail_path`, which a shell runs: anything but
/// a host:port is refused where it is written.
#[test]
fn a_mail_server_is_a_host_and_a_port() {
    for good in [
        "mail.example.org:25",
        "192.0.2.25:587",
        "[2001:db8::25]:25",
        "localhost:25",
        "mail_relay:25",
        "mail.example.org.:25",
    ] {
        let text = with(&format!(
            "[containers]\nconfig_dir = \"/etc/pic2\"\nsmtp = \"{good}\"\n"
        ));
        assert_eq!(errors(&text), vec![], "{good}");
    }
    for bad in [
        "mail.example.org",
        "mail.example.org:0",
        "a\\\" b:25",
        "x;reboot:25",
        "$(id):25",
        "[::1:25",
    ] {
        let text = with(&format!(
            "[containers]\nconfig_dir = \"/etc/pic2\"\nsmtp = \"{bad}\"\n"
        ));
        let e = errors(&text);
        assert_eq!(e.len(), 1, "{bad}: {e:?}");
        assert_eq!(e[0].0, "invalid-address", "{bad}");
        assert_eq!(e[0].1, line_of(&text, "smtp ="), "{bad}");
    }
}

/// Paths are written unquoted into Apache's configuration and Docker's bind strings: only
/// plain characters are taken, for `data_dir` as for `[containers] config_dir`.
#[test]
fn paths_hold_plain_characters_only() {
    let line = BASE.lines().find(|l| l.starts_with("data_dir")).unwrap();
    for bad in [
        "/srv/my data",
        "/srv/a\\\"b",
        "/srv/a:b",
        "/srv/a\\nInclude /etc",
    ] {
        let text = BASE.replace(line, &format!("data_dir = \"{bad}\""));
        let e = errors(&text);
        assert_eq!(e.len(), 1, "{bad}: {e:?}");
        assert_eq!(e[0].0, "invalid-path", "{bad}");
    }
    let text = with("[containers]\nconfig_dir = \"/etc/pic 2\"\n");
    assert_eq!(errors(&text)[0].0, "invalid-path");
    let text = with("[containers]\nconfig_dir = \"/etc/pic2-config_1\"\n");
    assert_eq!(errors(&text), vec![]);
}

/// A path is taken only as it will be compared and written: `Path` reads `/srv//t` and
/// `/srv/./t` as `/srv/t`, but the text goes on as written (into Apache's configuration,
/// Docker's binds, the order the plan sorts the volume's paths in). `[proxy] state_dir`,
/// a folder of the volume's layout too, is held to the same rule.
#[test]
fn paths_are_taken_normal_only() {
    let line = BASE.lines().find(|l| l.starts_with("data_dir")).unwrap();
    for bad in [
        "/srv//t",
        "/srv/./t",
        "/srv/t/.",
        "/srv/../t",
        "srv/t",
        "/srv/t/",
    ] {
        let text = BASE.replace(line, &format!("data_dir = \"{bad}\""));
        let e = errors(&text);
        assert_eq!(e.len(), 1, "{bad}: {e:?}");
        assert_eq!(e[0].0, "invalid-path", "{bad}");
    }
    for bad in [
        "var/lib/pic2/proxy",
        "/var/lib//pic2",
        "/var/lib/pic2/proxy/",
    ] {
        let text = with(&format!("[proxy]\nstate_dir = \"{bad}\"\n"));
        let e = errors(&text);
        assert_eq!(
            e.iter().map(|e| e.0).collect::<Vec<_>>(),
            ["invalid-path"],
            "{bad}"
        );
    }
    let text = with("[proxy]\nstate_dir = \"/var/lib/pic2-proxy\"\n");
    assert_eq!(errors(&text), vec![]);
}

#[test]
fn updates_as_of_is_a_day() {
    let ok = with("[containers]\nconfig_dir = \"/etc/pic2\"\nupdates_as_of = \"2026-11-26\"\n");
    assert_eq!(errors(&ok), vec![]);
    for bad in ["2026-13-01", "26-11-2026", "2026-11-26'; rm", "latest"] {
        let text = with(&format!(
            "[containers]\nconfig_dir = \"/etc/pic2\"\nupdates_as_of = \"{bad}\"\n"
        ));
        let e = errors(&text);
        assert_eq!(e.len(), 1, "{bad}: {e:?}");
        assert_eq!(e[0].0, "invalid-value", "{bad}");
    }
}

/// The password application's public address is where people reach it: HTTPS on
/// `[services] passwd`, or plain HTTP on this machine (the demo); nothing a link or the
/// anti-forgery check would get wrong.
#[test]
fn the_password_application_is_reached_over_https_on_its_service_name() {
    let passwd = |url: &str| {
        with(&format!(
            "[services]\npasswd = \"motdepasse.t.example\"\n\n[passwd]\npublic_url = \"{url}\"\n\
             listen = \"127.0.0.1:8081\"\nsmtp = \"127.0.0.1:25\"\nfrom = \"admins@t.example\"\n"
        ))
    };
    for good in [
        "https://motdepasse.t.example",
        "https://motdepasse.t.example/",
        "http://127.0.0.1:8081",
        "http://[::1]:8081",
    ] {
        assert_eq!(errors(&passwd(good)), vec![], "{good}");
    }
    for bad in [
        "http://motdepasse.t.example",
        "https://other.t.example",
        "https://Motdepasse.t.example",
        "https://user@motdepasse.t.example",
        "https://motdepasse.t.example/?x=1",
    ] {
        let text = passwd(bad);
        let e = errors(&text);
        assert_eq!(e.len(), 1, "{bad}: {e:?}");
        assert_eq!(e[0].0, "invalid-url", "{bad}");
        assert_eq!(e[0].1, line_of(&text, "public_url"), "{bad}");
    }
}

/// The password application's own directory account: its DN and its password file go
/// together.
#[test]
fn the_password_applications_account_needs_its_password_file() {
    let passwd = |extra: &str| {
        with(&format!(
            "[passwd]\npublic_url = \"http://127.0.0.1:8081\"\nlisten = \"127.0.0.1:8081\"\n\
             smtp = \"127.0.0.1:25\"\nfrom = \"admins@t.example\"\n{extra}"
        ))
    };
    let both = "bind_dn = \"cn=passwd,dc=t,dc=example\"\nbind_password_file = \"/etc/pic2/passwd.secret\"\n";
    assert_eq!(errors(&passwd(both)), vec![]);
    let text = passwd("bind_dn = \"cn=passwd,dc=t,dc=example\"\n");
    let e = errors(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!((e[0].0, e[0].1), ("missing-key", line_of(&text, "bind_dn")));
}
