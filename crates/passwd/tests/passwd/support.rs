//! Shared helpers: the dev services' settings, throw-away accounts, requests, captured mail.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use base64::Engine;
use http_body_util::BodyExt;
use ldap3::{LdapConn, Mod};
use pic2_passwd::{AppState, Config};
use std::collections::HashSet;
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};
use tower::ServiceExt;

pub const BASE: &str = "dc=pic2,dc=test";
pub const LDAP_URL: &str = "ldap://127.0.0.1:3389";

pub fn dev_dir() -> PathBuf {
    std::env::var_os("PIC2_DEV_DIR")
        .map_or_else(|| PathBuf::from("/var/lib/pic2-dev"), PathBuf::from)
}

/// Fails (never skips) when a dev service does not answer.
pub fn require(what: &str, port: u16, script: &str) {
    if TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)).is_err() {
        panic!("{what} is not running on 127.0.0.1:{port}: start it with `dev/up.sh` (or `{script} start`)");
    }
}

pub fn require_ldap() {
    require("the dev slapd", 3389, "dev/ldap.sh");
}

pub fn require_smtp() {
    require("the capturing SMTP server", 2525, "dev/smtp.sh");
}

pub fn config() -> Config {
    Config {
        ldap_url: LDAP_URL.into(),
        people_dn: format!("ou=people,{BASE}"),
        // the application's own account, as the inventory's [passwd] bind_dn names it: the
        // flows show it can do its job with the rights it has, and no more
        admin_dn: format!("cn=passwd,{BASE}"),
        admin_password_file: dev_dir().join("secrets/ldap-passwd.secret"),
        public_url: "http://127.0.0.1:8081".into(),
        listen: ([127, 0, 0, 1], 0).into(),
        smtp_host: "127.0.0.1".into(),
        smtp_port: 2525,
        mail_from: "motdepasse@pic2.test".into(),
        platform_name: "test".into(),
        min_length: 12,
        reset_ttl: Duration::from_secs(1800),
        session_ttl: Duration::from_secs(600),
        free_failures: 5,
        failure_floor: Duration::from_millis(300),
    }
}

/// Runs ldap3's sync API on a thread of its own (it cannot block inside the test's runtime).
fn blocking<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().unwrap())
}

fn admin() -> LdapConn {
    let secret = pic2_systems::secret::read(&dev_dir().join("secrets/ldap-admin.secret")).unwrap();
    let mut ldap = LdapConn::new(LDAP_URL).unwrap();
    ldap.simple_bind(&format!("cn=admin,{BASE}"), &secret)
        .unwrap()
        .success()
        .unwrap();
    ldap
}

/// A throw-away account `pw-test-…` (not marked as pic2's, uid outside every range), deleted
/// on drop, so tests never touch the demo accounts nor each other.
pub struct TestAccount {
    pub name: String,
    pub dn: String,
    pub mail: String,
}

impl TestAccount {
    pub fn new(full_name: &str, password: &str) -> TestAccount {
        require_ldap();
        blocking(|| Self::create(full_name, password))
    }

    fn create(full_name: &str, password: &str) -> TestAccount {
        let name = format!("pw-test-{:08x}", rand::random::<u32>());
        let dn = format!("uid={name},ou=people,{BASE}");
        let mail = format!("{name}@pic2.test");
        let mut ldap = admin();
        let ou = ldap.add(
            &format!("ou=people,{BASE}"),
            vec![
                ("objectClass", HashSet::from(["organizationalUnit"])),
                ("ou", HashSet::from(["people"])),
            ],
        );
        assert!(
            matches!(ou.map(|r| r.rc), Ok(0 | 68)),
            "cannot create ou=people"
        );
        let uid = (60_000 + rand::random::<u32>() % 5_000).to_string();
        ldap.add(
            &dn,
            vec![
                (
                    "objectClass",
                    HashSet::from([
                        "inetOrgPerson",
                        "posixAccount",
                        "shadowAccount",
                        "ldapPublicKey",
                    ]),
                ),
                ("uid", HashSet::from([name.as_str()])),
                ("cn", HashSet::from([full_name])),
                ("sn", HashSet::from([full_name])),
                ("mail", HashSet::from([mail.as_str()])),
                ("uidNumber", HashSet::from([uid.as_str()])),
                ("gidNumber", HashSet::from([uid.as_str()])),
                ("homeDirectory", HashSet::from(["/nonexistent"])),
            ],
        )
        .unwrap()
        .success()
        .unwrap();
        ldap.extended(ldap3::exop::PasswordModify {
            user_id: Some(&dn),
            old_pass: None,
            new_pass: Some(password),
        })
        .unwrap()
        .success()
        .unwrap();
        TestAccount { name, dn, mail }
    }

    /// Whether a simple bind with this password works.
    pub fn binds_with(&self, password: &str) -> bool {
        blocking(|| {
            let mut ldap = LdapConn::new(LDAP_URL).unwrap();
            ldap.simple_bind(&self.dn, password).unwrap().rc == 0
        })
    }

    pub fn keys(&self) -> Vec<String> {
        blocking(|| self.keys_now())
    }

    fn keys_now(&self) -> Vec<String> {
        let mut ldap = admin();
        let (entries, _) = ldap
            .search(
                &self.dn,
                ldap3::Scope::Base,
                "(objectClass=*)",
                vec!["sshPublicKey"],
            )
            .unwrap()
            .success()
            .unwrap();
        let e = ldap3::SearchEntry::construct(entries.into_iter().next().unwrap());
        e.attrs.get("sshPublicKey").cloned().unwrap_or_default()
    }

    pub fn set_keys(&self, keys: &[&str]) {
        blocking(|| {
            let mut ldap = admin();
            ldap.modify(
                &self.dn,
                vec![Mod::Replace("sshPublicKey", keys.iter().copied().collect())],
            )
            .unwrap()
            .success()
            .unwrap();
        })
    }
}

impl Drop for TestAccount {
    fn drop(&mut self) {
        let dn = self.dn.clone();
        let _ = std::thread::spawn(move || {
            if let Ok(mut ldap) = std::panic::catch_unwind(admin) {
                let _ = ldap.delete(&dn);
            }
        })
        .join();
    }
}

/// A valid ed25519 public key line made of random bytes.
pub fn random_ed25519(comment: &str) -> String {
    let mut blob = Vec::new();
    blob.extend_from_slice(&11u32.to_be_bytes());
    blob.extend_from_slice(b"ssh-ed25519");
    blob.extend_from_slice(&32u32.to_be_bytes());
    blob.extend_from_slice(&rand::random::<[u8; 32]>());
    format!(
        "ssh-ed25519 {} {comment}",
        base64::engine::general_purpose::STANDARD.encode(blob)
    )
}

/// A response, read whole.
pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

impl Reply {
    /// The `Set-Cookie` values as `name=value` pairs.
    pub fn cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .map(str::to_string)
            .collect()
    }

    pub fn csrf_field(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .expect("a form with a csrf field");
        let rest = &self.body[at + 19..];
        rest[..rest.find('"').unwrap()].to_string()
    }
}

/// A browser-like client over `oneshot`: keeps cookies between requests.
pub struct Client {
    pub state: AppState,
    pub jar: Vec<String>,
    /// The client's address as the server sees it (its TCP peer); none: 0.0.0.0.
    pub peer: Option<std::net::SocketAddr>,
}

impl Client {
    pub fn new(config: Config) -> Client {
        Client {
            state: AppState::new(config),
            jar: Vec::new(),
            peer: None,
        }
    }

    pub async fn send(&mut self, mut req: Request<Body>) -> Reply {
        if let Some(peer) = self.peer {
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
        }
        let res = pic2_passwd::app(self.state.clone())
            .oneshot(req)
            .await
            .unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec())
            .unwrap();
        let reply = Reply {
            status,
            headers,
            body,
        };
        for c in reply.cookies() {
            let name = c.split('=').next().unwrap().to_string();
            self.jar.retain(|j| !j.starts_with(&format!("{name}=")));
            if !c.ends_with('=') {
                self.jar.push(c);
            }
        }
        reply
    }

    fn with_cookies(&self, b: axum::http::request::Builder) -> axum::http::request::Builder {
        if self.jar.is_empty() {
            b
        } else {
            b.header(header::COOKIE, self.jar.join("; "))
        }
    }

    pub async fn get(&mut self, uri: &str) -> Reply {
        let req = self
            .with_cookies(Request::get(uri))
            .body(Body::empty())
            .unwrap();
        self.send(req).await
    }

    /// Posts a form, with the csrf field taken from a fresh GET of `form_page`.
    pub async fn post(&mut self, form_page: &str, uri: &str, fields: &[(&str, &str)]) -> Reply {
        let csrf = self.get(form_page).await.csrf_field();
        self.post_raw(uri, &csrf, fields).await
    }

    pub async fn post_raw(&mut self, uri: &str, csrf: &str, fields: &[(&str, &str)]) -> Reply {
        let mut all = vec![("csrf", csrf)];
        all.extend_from_slice(fields);
        let body = serde_urlencoded::to_string(&all).unwrap();
        let req = self
            .with_cookies(Request::post(uri))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        self.send(req).await
    }
}

/// The messages to `to` captured after `since`, oldest first, raw.
fn captured(to: &str, since: SystemTime) -> Vec<String> {
    let dir = dev_dir().join("mail");
    let mut found: Vec<(SystemTime, PathBuf)> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .filter(|(t, _)| *t >= since)
        .collect();
    found.sort();
    found
        .into_iter()
        .map(|(_, p)| std::fs::read_to_string(&p).unwrap_or_default())
        .filter(|raw| raw.lines().next().is_some_and(|l| l.contains(to)))
        .collect()
}

/// The first message to `to` captured after `since`, decoded (waits up to 10 s).
pub async fn wait_mail(to: &str, since: SystemTime) -> String {
    require_smtp();
    for _ in 0..100 {
        if let Some(raw) = captured(to, since).first() {
            return decode_mail(raw);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "no mail to {to} reached {} within 10 s",
        dev_dir().join("mail").display()
    );
}

/// How many messages to `to` were captured after `since`.
pub fn mails_to(to: &str, since: SystemTime) -> usize {
    captured(to, since).len()
}

/// Headers, a blank line, then the body decoded from quoted-printable or base64.
fn decode_mail(raw: &str) -> String {
    let raw = raw.replace("\r\n", "\n");
    let (head, body) = raw.split_once("\n\n").unwrap_or((&raw, ""));
    let lower = head.to_lowercase();
    let decoded = if lower.contains("content-transfer-encoding: base64") {
        let compact: String = body.split_whitespace().collect();
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(compact)
                .unwrap(),
        )
        .unwrap()
    } else if lower.contains("content-transfer-encoding: quoted-printable") {
        let joined = body.replace("=\n", "");
        let bytes = joined.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'=' && i + 2 < bytes.len() {
                out.push(u8::from_str_radix(&joined[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    } else {
        body.to_string()
    };
    format!("{head}\n\n{decoded}")
}

/// The reset link in a mail.
pub fn reset_link(mail: &str) -> String {
    let at = mail
        .find("/reset?token=")
        .expect("a reset link in the mail");
    let start = mail[..at].rfind("http").unwrap();
    mail[start..].split_whitespace().next().unwrap().to_string()
}
