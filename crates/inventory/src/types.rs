//! Checked values: each type can only hold what its rules accept, so code past the inventory
//! never re-checks a name, a domain or a key.

use crate::diagnostic::{Code, Diagnostic};
use crate::source::Span;
use std::fmt;

macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

string_newtype!(
    /// A POSIX account name: also the LDAP `uid`, the group name and the home folder's name.
    AccountName
);
string_newtype!(
    /// A MariaDB database name; the database's user has the same name.
    DbName
);
string_newtype!(
    /// The name of a runtime, a host or the platform: lowercase letters, digits and dashes.
    Ident
);
string_newtype!(
    /// A lowercase DNS name in ASCII (internationalised names in their `xn--` form).
    Domain
);
string_newtype!(
    /// An e-mail address.
    Email
);
string_newtype!(
    /// An LDAP distinguished name, as written (`dc=le-pic,dc=org`).
    Dn
);

/// Names the system or the services already use: an account with one of them would be
/// confused with (or take the rights of) a system user.
const RESERVED: &[&str] = &[
    "root",
    "daemon",
    "bin",
    "sys",
    "sync",
    "games",
    "man",
    "lp",
    "mail",
    "news",
    "uucp",
    "proxy",
    "www-data",
    "backup",
    "list",
    "irc",
    "gnats",
    "nobody",
    "systemd-network",
    "systemd-resolve",
    "messagebus",
    "sshd",
    "mysql",
    "mariadb",
    "openldap",
    "nslcd",
    "postfix",
    "sympa",
    "admin",
    "pic2",
    "ftp",
    "information_schema",
    "performance_schema",
    "sys",
    "test",
    "phpmyadmin",
    "debian-sys-maint",
    "_apt",
    "nogroup",
    "shadow",
    "staff",
    "users",
    "sudo",
    "adm",
    "docker",
];

fn invalid(code: Code, span: Span, message: String, hint: &str) -> Diagnostic {
    Diagnostic::new(code, span, message)
        .label("here")
        .hint(hint)
}

impl AccountName {
    pub fn parse(s: &str, span: Span) -> Result<Self, Diagnostic> {
        let ok = (1..=32).contains(&s.len())
            && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !ok {
            return Err(invalid(
                Code::InvalidName,
                span,
                format!("`{s}` is not a valid account name"),
                "use 1 to 32 lowercase letters, digits, `_` or `-`, starting with a letter or `_`",
            ));
        }
        if RESERVED.contains(&s) {
            return Err(invalid(
                Code::ReservedName,
                span,
                format!("`{s}` is reserved for the system"),
                "choose another name, for example the association's short name",
            ));
        }
        Ok(AccountName(s.to_owned()))
    }
}

impl DbName {
    pub fn parse(s: &str, span: Span) -> Result<Self, Diagnostic> {
        // 32 characters, because the database's user has the same name and MariaDB's user
        // names are limited to 32 characters in the tools that still matter (phpMyAdmin, dumps).
        let ok = (1..=32).contains(&s.len())
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            return Err(invalid(
                Code::InvalidName,
                span,
                format!("`{s}` is not a valid database name"),
                "use 1 to 32 lowercase letters, digits or `_`, starting with a letter",
            ));
        }
        if RESERVED.contains(&s) || s == "mysql" {
            return Err(invalid(
                Code::ReservedName,
                span,
                format!("`{s}` is reserved by MariaDB or pic2"),
                "choose another database name",
            ));
        }
        Ok(DbName(s.to_owned()))
    }
}

impl Ident {
    pub fn parse(s: &str, span: Span) -> Result<Self, Diagnostic> {
        let ok = (1..=32).contains(&s.len())
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && !s.ends_with('-')
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if ok {
            Ok(Ident(s.to_owned()))
        } else {
            Err(invalid(
                Code::InvalidName,
                span,
                format!("`{s}` is not a valid name"),
                "use 1 to 32 lowercase letters, digits or `-`, starting with a letter (it becomes part of container and host names)",
            ))
        }
    }
}

impl Domain {
    pub fn parse(s: &str, span: Span) -> Result<Self, Diagnostic> {
        let fail = |why: &str| {
            Err(Diagnostic::new(Code::InvalidDomain, span, format!("`{s}` is not a valid domain name: {why}"))
                .label("here")
                .hint("write it like `www.example.org`: lowercase, no scheme, no port, no trailing dot; internationalised names in their `xn--` form"))
        };
        if s.is_empty() || s.len() > 253 {
            return fail("it must have 1 to 253 characters");
        }
        if s.contains("://") || s.contains('/') || s.contains(':') {
            return fail("a domain has no scheme, path or port");
        }
        if s.ends_with('.') {
            return fail("remove the trailing dot");
        }
        if s.chars().any(|c| c.is_ascii_uppercase()) {
            return fail("write it in lowercase");
        }
        let labels: Vec<&str> = s.split('.').collect();
        if labels.len() < 2 {
            return fail("it needs at least two labels, like `example.org`");
        }
        for label in &labels {
            if label.is_empty() || label.len() > 63 {
                return fail("each label between dots must have 1 to 63 characters");
            }
            if !label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                return fail("only letters, digits, `-` and dots are allowed");
            }
            if label.starts_with('-') || label.ends_with('-') {
                return fail("a label cannot start or end with `-`");
            }
        }
        if labels
            .last()
            .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
        {
            return fail("the last label cannot be all digits (is it an IP address?)");
        }
        Ok(Domain(s.to_owned()))
    }
}

impl Email {
    pub fn parse(s: &str, span: Span) -> Result<Self, Diagnostic> {
        let err = || {
            Diagnostic::new(
                Code::InvalidEmail,
                span,
                format!("`{s}` is not a valid e-mail address"),
            )
            .label("here")
            .hint("write it like `contact@example.org`")
        };
        let (local, domain) = s.rsplit_once('@').ok_or_else(err)?;
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && local
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c))
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..");
        if !local_ok || Domain::parse(&domain.to_ascii_lowercase(), span).is_err() {
            return Err(err());
        }
        Ok(Email(s.to_owned()))
    }
}

impl Dn {
    /// Accepts `attr=value` components separated by commas; values may use `\` escapes.
    pub fn parse(s: &str, span: Span) -> Result<Self, Diagnostic> {
        let err = |why: &str| {
            Diagnostic::new(
                Code::InvalidDn,
                span,
                format!("`{s}` is not a valid LDAP DN: {why}"),
            )
            .label("here")
            .hint("write it like `dc=example,dc=org` or `cn=admin,dc=example,dc=org`")
        };
        if s.trim().is_empty() {
            return Err(err("it is empty"));
        }
        for rdn in split_dn(s) {
            let (attr, value) = rdn
                .split_once('=')
                .ok_or_else(|| err("each part needs `attribute=value`"))?;
            let attr = attr.trim();
            if attr.is_empty()
                || !attr
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            {
                return Err(err("an attribute name is malformed"));
            }
            if value.trim().is_empty() {
                return Err(err("a value is empty"));
            }
        }
        Ok(Dn(s.to_owned()))
    }

    /// The DN's components, outermost last: `["ou=people", "dc=example", "dc=org"]`.
    pub fn rdns(&self) -> Vec<&str> {
        split_dn(&self.0).collect()
    }

    /// Whether `self` is `base` or below it (compared without case or spaces).
    pub fn is_under(&self, base: &Dn) -> bool {
        let norm = |d: &Dn| {
            d.rdns()
                .iter()
                .map(|r| r.replace(' ', "").to_ascii_lowercase())
                .collect::<Vec<_>>()
        };
        let (me, base) = (norm(self), norm(base));
        me.len() >= base.len() && me.ends_with(&base)
    }
}

/// Splits a DN on the commas that are not escaped.
fn split_dn(s: &str) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            ',' if !escaped => {
                parts.push(s.get(start..i).unwrap_or(""));
                start = i + 1;
            }
            _ => escaped = false,
        }
    }
    parts.push(s.get(start..).unwrap_or(""));
    parts.into_iter()
}

/// How an account reaches its files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// SFTP only, chrooted to the home, no shell (the default).
    #[default]
    Sftp,
    /// SFTP and an interactive shell.
    Ssh,
}

impl Access {
    pub fn parse(s: &str, span: Span) -> Result<Self, Diagnostic> {
        match s {
            "sftp" => Ok(Access::Sftp),
            "ssh" => Ok(Access::Ssh),
            _ => Err(Diagnostic::new(Code::InvalidValue, span, format!("unknown access `{s}`"))
                .label("expected \"sftp\" or \"ssh\"")
                .hint("`sftp` chroots the account to its home without a shell; `ssh` also gives a shell")),
        }
    }
}

/// A PHP version like `8.2`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct PhpVersion(String);

impl PhpVersion {
    pub fn parse(s: &str, span: Span) -> Result<Self, Diagnostic> {
        let ok = s.split_once('.').is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && a.chars().all(|c| c.is_ascii_digit())
                && b.chars().all(|c| c.is_ascii_digit())
        });
        if ok {
            Ok(PhpVersion(s.to_owned()))
        } else {
            Err(Diagnostic::new(
                Code::InvalidValue,
                span,
                format!("`{s}` is not a PHP version"),
            )
            .label("expected MAJOR.MINOR")
            .hint("write it like \"8.2\""))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An OpenSSH public key, checked and normalised to `type base64 [comment]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct SshKey {
    /// `ssh-ed25519`, `ssh-rsa`, …
    pub algorithm: String,
    /// The key without its comment: what duplicates are compared on.
    pub key: String,
    pub comment: String,
}

impl SshKey {
    pub fn parse(s: &str, span: Span) -> Result<Self, Diagnostic> {
        let err = |why: String| {
            Diagnostic::new(Code::InvalidSshKey, span, format!("invalid SSH public key: {why}"))
                .label("here")
                .hint("paste one line of the user's `~/.ssh/id_ed25519.pub` (ed25519, ecdsa or RSA of at least 3072 bits)")
        };
        let parsed = ssh_key::PublicKey::from_openssh(s.trim()).map_err(|e| err(e.to_string()))?;
        use ssh_key::public::KeyData;
        match parsed.key_data() {
            KeyData::Ed25519(_)
            | KeyData::Ecdsa(_)
            | KeyData::SkEd25519(_)
            | KeyData::SkEcdsaSha2NistP256(_) => {}
            KeyData::Rsa(rsa) => {
                let bits = rsa.n.as_positive_bytes().map_or(0, |b| b.len() * 8);
                if bits < 3072 {
                    return Err(err(format!(
                        "RSA keys need at least 3072 bits, this one has {bits}"
                    )));
                }
            }
            KeyData::Dsa(_) => {
                return Err(err("DSA keys are obsolete and refused by OpenSSH".into()))
            }
            _ => return Err(err("unsupported key type".into())),
        }
        let algorithm = parsed.algorithm().to_string();
        let key = parsed.to_openssh().map_err(|e| err(e.to_string()))?;
        // `to_openssh` includes the comment when there is one: keep the bare key for comparisons.
        let bare = key.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        Ok(SshKey {
            algorithm,
            key: bare,
            comment: parsed.comment().to_string(),
        })
    }

    /// The line stored in LDAP and in `authorized_keys`.
    pub fn to_line(&self) -> String {
        if self.comment.is_empty() {
            self.key.clone()
        } else {
            format!("{} {}", self.key, self.comment)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const S: Span = Span { start: 0, end: 0 };

    #[test]
    fn account_names() {
        assert!(AccountName::parse("velobs", S).is_ok());
        assert!(AccountName::parse("_x-1", S).is_ok());
        assert_eq!(
            AccountName::parse("Velobs", S).unwrap_err().code,
            Code::InvalidName
        );
        assert_eq!(
            AccountName::parse("1abc", S).unwrap_err().code,
            Code::InvalidName
        );
        assert_eq!(
            AccountName::parse("root", S).unwrap_err().code,
            Code::ReservedName
        );
        assert_eq!(
            AccountName::parse(&"a".repeat(33), S).unwrap_err().code,
            Code::InvalidName
        );
    }

    #[test]
    fn domains() {
        for ok in [
            "le-pic.org",
            "www.velobs.example",
            "xn--vlobs-bsa.fr",
            "a.b.c.d",
        ] {
            assert!(Domain::parse(ok, S).is_ok(), "{ok}");
        }
        for bad in [
            "le-pic",
            "https://x.org",
            "x.org.",
            "X.org",
            "-a.org",
            "a..org",
            "1.2.3.4",
            "x.org:80",
            "é.org",
        ] {
            assert_eq!(
                Domain::parse(bad, S).unwrap_err().code,
                Code::InvalidDomain,
                "{bad}"
            );
        }
    }

    #[test]
    fn emails() {
        assert!(Email::parse("admin@velobs.example", S).is_ok());
        for bad in ["admin", "@x.org", "a@b", "a b@x.org", "a..b@x.org"] {
            assert!(Email::parse(bad, S).is_err(), "{bad}");
        }
    }

    #[test]
    fn dns() {
        let base = Dn::parse("dc=le-pic,dc=org", S).unwrap();
        let admin = Dn::parse("cn=admin, DC=le-pic,dc=org", S).unwrap();
        assert!(admin.is_under(&base));
        assert!(!base.is_under(&admin));
        assert!(Dn::parse("le-pic.org", S).is_err());
        assert!(Dn::parse("cn=a\\,b,dc=x", S).is_ok());
        assert_eq!(
            Dn::parse("cn=a\\,b,dc=x", S).unwrap().rdns(),
            vec!["cn=a\\,b", "dc=x"]
        );
    }

    #[test]
    fn ssh_keys() {
        let k = SshKey::parse(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPYEnzX1QbfTQ7m0IxEeKMKDFio0QscGW/flvv+2O5ms admin@velobs",
            S,
        )
        .unwrap();
        assert_eq!(k.algorithm, "ssh-ed25519");
        assert_eq!(k.comment, "admin@velobs");
        assert!(SshKey::parse("ssh-ed25519 AAAA-not-base64", S).is_err());
        assert!(SshKey::parse("", S).is_err());
    }
}
