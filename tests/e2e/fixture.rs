//! A throw-away platform per test, on the dev services.

use ldap3::{LdapConn, Scope, SearchEntry};
use mysql::prelude::Queryable;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn dev_dir() -> PathBuf {
    std::env::var_os("PIC2_DEV_DIR")
        .map_or_else(|| PathBuf::from("/var/lib/pic2-dev"), PathBuf::from)
}

fn secret(name: &str) -> String {
    let path = dev_dir().join("secrets").join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}\nThe dev services are not set up: run `dev/up.sh` (as root) first.", path.display()))
        .trim()
        .to_string()
}

pub const SUFFIX: &str = "dc=pic2,dc=test";

static IMAGE_BUILDS: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub struct Platform {
    /// Short, unique per test: used in names, DNs and database prefixes.
    pub id: String,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub base_dn: String,
}

impl Platform {
    /// A fresh platform named after the test; leftovers of an earlier run are removed first.
    pub fn new(id: &str) -> Self {
        assert!(
            id.len() <= 8
                && id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
            "short lowercase id"
        );
        let dir = tempfile::tempdir().unwrap();
        let p = Platform {
            id: id.to_string(),
            config: dir.path().join("pic2.toml"),
            base_dn: format!("ou=t-{id},{SUFFIX}"),
            dir,
        };
        p.clean();
        std::fs::create_dir_all(p.lock_dir()).unwrap();
        std::fs::create_dir_all("/var/lib/pic2-tests").unwrap();
        p
    }

    /// Ports on 127.0.0.1 for this platform's runtime containers: 18000 + 10 × (a hash of the
    /// id) + i, so tests running at once do not collide.
    pub fn port(&self, i: u16) -> u16 {
        let h = self
            .id
            .bytes()
            .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        18000 + 10 * (h % 200) as u16 + i
    }

    /// This platform's container network: one /64 per platform, its last group non-zero.
    /// The database grants use its MariaDB pattern.
    pub fn subnet6(&self) -> String {
        format!("fd00:5049:4332:{:x}::/64", self.port(0))
    }

    /// The `[containers]` section for this platform.
    pub fn containers_section(&self) -> String {
        format!(
            "\n[containers]\nconfig_dir = \"{}\"\nsubnet6 = \"{}\"\nmemory_mb = 192\n",
            self.dir.path().join("config").display(),
            self.subnet6()
        )
    }

    /// The `[containers]` section with the SFTP/SSH container on 127.0.0.1:`port(2)`.
    pub fn containers_section_with_sftp(&self) -> String {
        format!(
            "{}sftp_listen = \"127.0.0.1:{}\"\n",
            self.containers_section(),
            self.port(2)
        )
    }

    /// The data volume: outside /tmp, because OpenSSH's chroot wants every component of the
    /// path root-owned and not writable by others (and /tmp is 1777).
    pub fn data_dir(&self) -> PathBuf {
        PathBuf::from("/var/lib/pic2-tests").join(format!("t-{}", self.id))
    }

    fn lock_dir(&self) -> PathBuf {
        self.dir.path().join("lock")
    }

    pub fn home(&self, account: &str) -> PathBuf {
        self.data_dir().join("home").join(account)
    }

    /// The inventory: the common sections, then `body` with `{id}` replaced.
    pub fn write(&self, body: &str) {
        let dev = dev_dir();
        let head = format!(
            r#"[platform]
name = "t-{id}"
domain = "{id}.test"
data_dir = "{data}"

[hosts.db]
roles = ["database", "directory"]
address = "127.0.0.1"

[hosts.web]
roles = ["web"]
address = "127.0.0.1"
public_ipv4 = "127.0.0.1"

[directory]
url = "ldap://127.0.0.1:3389"
base_dn = "{base}"
admin_dn = "cn=admin,{SUFFIX}"
admin_password_file = "{dev}/secrets/ldap-admin.secret"
uid_range = [20000, 29999]
ssh_group_gid = 19999
service_dn = "cn=nss,{SUFFIX}"
service_password_file = "{dev}/secrets/ldap-nss.secret"
container_url = "ldap://[fd00:5049:4332::2]:3389"

[database]
url = "mysql://127.0.0.1:3307"
admin_user = "pic2"
admin_password_file = "{dev}/secrets/mariadb-admin.secret"
# From this machine (the tests; it is fd00:5049:4332::1 to the database host, see dev/lib.sh)
# and from this platform's containers.
clients = ["fd00:5049:4332::1", "{subnet_pattern}"]
site_host = "fd00:5049:4332::2"

[runtimes.php82]
php = "8.2"
base_image = "local/debian:bookworm"
port = {port}
"#,
            id = self.id,
            data = self.data_dir().display(),
            base = self.base_dn,
            dev = dev.display(),
            port = self.port(0),
            subnet_pattern = self.subnet6(),
        );
        std::fs::write(&self.config, head + &body.replace("{id}", &self.id)).unwrap();
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pic2"));
        c.arg("-c")
            .arg(&self.config)
            .args(args)
            .env("PIC2_LOCK_DIR", self.lock_dir())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        c
    }

    pub fn pic2(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs pic2, asserts its exit code, returns stdout.
    pub fn expect(&self, args: &[&str], code: i32) -> String {
        let out = self.pic2(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(code),
            "pic2 {args:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        );
        stdout
    }

    pub fn apply(&self, extra: &[&str]) -> String {
        let mut args = vec!["apply", "--yes"];
        args.extend_from_slice(extra);
        // Applies that may build images go one at a time: on a fresh machine the tests would
        // otherwise all build the same images at once (each sees them missing).
        let _guard = if std::fs::read_to_string(&self.config)
            .unwrap_or_default()
            .contains("[containers]")
        {
            Some(IMAGE_BUILDS.lock().unwrap_or_else(|e| e.into_inner()))
        } else {
            None
        };
        self.expect(&args, 0)
    }

    /// Asserts that a plan finds nothing to do.
    pub fn assert_converged(&self) {
        let out = self.expect(&["plan"], 0);
        assert!(out.contains("Nothing to do"), "{out}");
    }

    pub fn plan_json(&self, extra: &[&str]) -> serde_json::Value {
        let mut args = vec!["--json", "plan"];
        args.extend_from_slice(extra);
        let out = self.pic2(&args);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    pub fn ldap(&self) -> LdapConn {
        let mut l = LdapConn::new("ldap://127.0.0.1:3389").unwrap_or_else(|e| {
            panic!("slapd does not answer on 127.0.0.1:3389 ({e}): run `dev/up.sh`")
        });
        l.simple_bind(&format!("cn=admin,{SUFFIX}"), &secret("ldap-admin.secret"))
            .unwrap()
            .success()
            .unwrap();
        l
    }

    /// The attributes of one entry, or None.
    pub fn entry(&self, dn: &str) -> Option<SearchEntry> {
        let ldap3::SearchResult(rs, res) = self
            .ldap()
            .search(dn, Scope::Base, "(objectClass=*)", vec!["*"])
            .unwrap();
        if res.rc == 32 {
            return None;
        }
        rs.into_iter().next().map(SearchEntry::construct)
    }

    pub fn account_dn(&self, name: &str) -> String {
        format!("uid={name},ou=people,{}", self.base_dn)
    }

    pub fn sql(&self) -> mysql::Conn {
        sql_admin()
    }

    fn clean(&self) {
        let _ = std::fs::remove_dir_all(self.data_dir());
        // Containers and network of this platform (named pic2-t-{id}…).
        let prefix = format!("pic2-t-{}", self.id);
        let out = Command::new("docker")
            .args(["ps", "-aq", "--filter", &format!("name=^{prefix}-")])
            .output();
        if let Ok(out) = out {
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(String::from)
                .collect();
            if !ids.is_empty() {
                let _ = Command::new("docker")
                    .args(["rm", "-f"])
                    .args(&ids)
                    .output();
            }
            let _ = Command::new("docker")
                .args(["network", "rm", &prefix])
                .stderr(Stdio::null())
                .output();
        }
        let mut ldap = self.ldap();
        let ldap3::SearchResult(rs, res) = ldap
            .search(
                &self.base_dn,
                Scope::Subtree,
                "(objectClass=*)",
                vec!["1.1"],
            )
            .unwrap();
        if res.rc == 0 {
            let mut dns: Vec<String> = rs
                .into_iter()
                .map(|e| SearchEntry::construct(e).dn)
                .collect();
            dns.sort_by_key(|d| std::cmp::Reverse(d.matches(',').count()));
            for dn in &dns {
                ldap.delete(dn).unwrap().success().unwrap();
            }
        }
        let mut sql = self.sql();
        let prefix = format!("{}\\_%", self.id);
        let dbs: Vec<String> = sql
            .exec(
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE ?",
                (&prefix,),
            )
            .unwrap();
        for db in dbs {
            sql.query_drop(format!("DROP DATABASE `{db}`")).unwrap();
        }
        let users: Vec<(String, String)> = sql
            .exec(
                "SELECT User, Host FROM mysql.user WHERE User LIKE ?",
                (&prefix,),
            )
            .unwrap();
        for (u, h) in users {
            sql.query_drop(format!("DROP USER '{u}'@'{h}'")).unwrap();
        }
    }
}

pub fn sql_admin() -> mysql::Conn {
    let opts = mysql::OptsBuilder::new()
        .ip_or_hostname(Some("127.0.0.1"))
        .tcp_port(3307)
        .user(Some("pic2"))
        .pass(Some(secret("mariadb-admin.secret")))
        .prefer_socket(false);
    mysql::Conn::new(opts).unwrap_or_else(|e| {
        panic!("MariaDB does not answer on 127.0.0.1:3307 ({e}): run `dev/up.sh`")
    })
}

/// Connects with the credentials file pic2 wrote for a database.
pub fn sql_as(credentials: &Path) -> Result<mysql::Conn, mysql::Error> {
    let text = std::fs::read_to_string(credentials).unwrap();
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap()
            .to_string()
    };
    let opts = mysql::OptsBuilder::new()
        .ip_or_hostname(Some(get("host")))
        .tcp_port(get("port").parse().unwrap())
        .user(Some(get("user")))
        .pass(Some(get("password")))
        .db_name(Some(get("database")))
        .prefer_socket(false);
    mysql::Conn::new(opts)
}

impl Drop for Platform {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.clean();
        }
    }
}

/// A fresh ed25519 public key line.
pub fn ssh_key(comment: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(ok.success());
    std::fs::read_to_string(key.with_extension("pub"))
        .unwrap()
        .trim()
        .to_string()
}

/// A plain HTTP/1.0 GET to 127.0.0.1:port with a Host header: (status, body).
pub fn http_get(port: u16, host: &str, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Waits (bounded) until `host` answers 200 on `port`.
pub fn wait_http(port: u16, host: &str) -> String {
    for _ in 0..100 {
        if let Ok((200, body)) = http_get(port, host, "/") {
            return body;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("{host} on 127.0.0.1:{port} did not answer 200 within 10 s");
}

/// Writes a file into a site's document root, owned by its owner, as an SFTP upload would.
pub fn put(path: &Path, text: &str, uid: u32) {
    std::fs::write(path, text).unwrap();
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
}
