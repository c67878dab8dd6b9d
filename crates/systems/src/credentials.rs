//! Database credentials: generated passwords and the owner's MariaDB option file.

use pic2_plan::CredentialsTarget;
use rand::distr::{Alphanumeric, SampleString};

/// 32 random letters and digits (≈ 190 bits): no quoting trouble in SQL, PHP or option files.
pub fn generate_password() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 32)
}

/// The option file, with the password.
pub fn file_contents(target: &CredentialsTarget, password: &str) -> String {
    pic2_render::databases::credentials_text(
        &target.database,
        &target.path,
        &target.server_host,
        target.server_port,
        password,
    )
}

/// The password in an option file written by [`file_contents`].
pub fn password_in(contents: &str) -> Option<&str> {
    contents
        .lines()
        .find_map(|l| l.strip_prefix("password="))
        .filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let t = CredentialsTarget {
            path: "/x/mariadb-a.cnf".into(),
            uid: 1,
            gid: 1,
            database: "a".into(),
            server_host: "fd00::2".into(),
            server_port: 3306,
        };
        let pw = generate_password();
        assert_eq!(pw.len(), 32);
        assert_eq!(password_in(&file_contents(&t, &pw)), Some(pw.as_str()));
    }
}
