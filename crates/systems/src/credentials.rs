//! Database credentials: generated passwords and the owner's MariaDB option file.

use pic2_plan::CredentialsTarget;
use rand::distr::{Alphanumeric, SampleString};

/// 32 random letters and digits (≈ 190 bits): no quoting trouble in SQL, PHP or option files.
pub fn generate_password() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 32)
}

/// The option file (`mariadb --defaults-extra-file=…`), which also documents the settings to
/// copy into a site's configuration.
pub fn file_contents(target: &CredentialsTarget, password: &str) -> String {
    format!(
        "# The credentials of the database `{db}`, written by pic2. Only you can read this file.\n\
         # Use them in your site's configuration (for PHP, put an IPv6 host in brackets), or:\n\
         #   mariadb --defaults-extra-file={path}\n\
         [client]\n\
         user={db}\n\
         password={password}\n\
         host={host}\n\
         port={port}\n\
         database={db}\n",
        db = target.database,
        path = target.path.display(),
        host = target.server_host,
        port = target.server_port,
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
