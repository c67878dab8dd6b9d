//! The application alone, for the benchmark: `passwd-server LISTEN LDAP_URL BASE_DN SMTP_PORT`
//! serves pic2-passwd exactly as `pic2 passwd` does, without building the whole `pic2` binary.

use std::time::Duration;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_string());
    let base = arg(3, "dc=pic2,dc=test");
    let dev = std::env::var("PIC2_DEV_DIR").unwrap_or_else(|_| "/var/lib/pic2-dev".into());
    let listen = arg(1, "127.0.0.1:8091")
        .parse()
        .map_err(std::io::Error::other)?;
    let config = pic2_passwd::Config {
        ldap_url: arg(2, "ldap://127.0.0.1:3389"),
        people_dn: format!("ou=people,{base}"),
        admin_dn: format!("cn=admin,{base}"),
        admin_password_file: format!("{dev}/secrets/ldap-admin.secret").into(),
        public_url: format!("http://{listen}"),
        listen,
        smtp_host: "127.0.0.1".into(),
        smtp_port: arg(4, "2525").parse().unwrap_or(2525),
        mail_from: "motdepasse@pic2.test".into(),
        platform_name: "bench".into(),
        min_length: 12,
        reset_ttl: Duration::from_secs(1800),
        session_ttl: Duration::from_secs(600),
        free_failures: 5,
        failure_floor: Duration::from_millis(400),
    };
    pic2_passwd::run(config, None)
}
