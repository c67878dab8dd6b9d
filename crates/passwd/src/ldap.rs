//! The directory, over ldap3's async API: each operation opens its own connection, binds,
//! does one thing and unbinds, so no bind outlives the request that needed it.
//!
//! Account names are checked against pic2's account-name syntax before they reach a DN, and
//! are escaped anyway (`dn_escape`, `ldap_escape`).

use crate::config::Config;
use ldap3::exop::PasswordModify;
use ldap3::{
    dn_escape, ldap_escape, Ldap, LdapConnAsync, LdapConnSettings, Mod, Scope, SearchEntry,
};
use std::collections::HashSet;
use std::time::Duration;
use zeroize::Zeroizing;

const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum DirError {
    /// Unknown account or wrong password: the two are never told apart.
    #[error("invalid credentials")]
    BadCredentials,
    /// The server refused the change (e.g. its own password policy).
    #[error("refused by the directory: {0}")]
    Refused(String),
    /// The server cannot be reached or failed.
    #[error("directory unavailable: {0}")]
    Unavailable(String),
}

impl From<ldap3::LdapError> for DirError {
    fn from(e: ldap3::LdapError) -> Self {
        match e {
            ldap3::LdapError::LdapResult { result } => match result.rc {
                49 | 32 | 50 => DirError::BadCredentials,
                19 | 53 => DirError::Refused(format!("result code {}: {}", result.rc, result.text)),
                rc => DirError::Unavailable(format!("result code {rc}: {}", result.text)),
            },
            other => DirError::Unavailable(other.to_string()),
        }
    }
}

/// What the application reads of an account.
#[derive(Clone, Debug, Default)]
pub struct Person {
    pub full_name: String,
    pub mail: Option<String>,
    pub ssh_keys: Vec<String>,
}

/// The directory as the application sees it.
#[derive(Clone, Debug)]
pub struct Directory {
    url: String,
    people_dn: String,
    admin_dn: String,
    admin_password_file: std::path::PathBuf,
}

/// A connection bound as one user, for the few operations of one request.
pub struct UserSession {
    ldap: Ldap,
    dn: String,
}

impl Directory {
    pub fn new(config: &Config) -> Self {
        Directory {
            url: config.ldap_url.clone(),
            people_dn: config.people_dn.clone(),
            admin_dn: config.admin_dn.clone(),
            admin_password_file: config.admin_password_file.clone(),
        }
    }

    /// The DN of an account whose name already passed [`crate::policy::valid_account_name`].
    pub fn account_dn(&self, account: &str) -> String {
        format!("uid={},{}", dn_escape(account), self.people_dn)
    }

    async fn connect(&self) -> Result<Ldap, DirError> {
        let settings = LdapConnSettings::new().set_conn_timeout(TIMEOUT);
        let (conn, ldap) = LdapConnAsync::with_settings(settings, &self.url).await?;
        ldap3::drive!(conn);
        Ok(ldap)
    }

    /// Binds as the account; an empty password is refused before it reaches the server
    /// (it would be an anonymous bind).
    pub async fn bind_user(&self, account: &str, password: &str) -> Result<UserSession, DirError> {
        if password.is_empty() {
            return Err(DirError::BadCredentials);
        }
        let dn = self.account_dn(account);
        let mut ldap = self.connect().await?;
        ldap.with_timeout(TIMEOUT)
            .simple_bind(&dn, password)
            .await?
            .success()?;
        Ok(UserSession { ldap, dn })
    }

    /// The reset flow's look-up: bound as the privileged DN for this one search.
    pub async fn lookup_for_reset(&self, account: &str) -> Result<Option<Person>, DirError> {
        let mut ldap = self.admin_bind().await?;
        let filter = format!(
            "(&(objectClass=posixAccount)(uid={}))",
            ldap_escape(account)
        );
        let res = ldap
            .with_timeout(TIMEOUT)
            .search(
                &self.people_dn,
                Scope::OneLevel,
                &filter,
                vec!["cn", "mail"],
            )
            .await;
        let _ = ldap.unbind().await;
        let (entries, _) = res?.success()?;
        Ok(entries
            .into_iter()
            .next()
            .map(|e| person(SearchEntry::construct(e))))
    }

    /// The end of the reset flow: bound as the privileged DN for this one Password Modify.
    pub async fn reset_password(&self, account: &str, new: &str) -> Result<(), DirError> {
        let dn = self.account_dn(account);
        let mut ldap = self.admin_bind().await?;
        let res = ldap
            .with_timeout(TIMEOUT)
            .extended(PasswordModify {
                user_id: Some(&dn),
                old_pass: None,
                new_pass: Some(new),
            })
            .await;
        let _ = ldap.unbind().await;
        res?.success()?;
        Ok(())
    }

    async fn admin_bind(&self) -> Result<Ldap, DirError> {
        let secret = Zeroizing::new(
            pic2_systems::secret::read(&self.admin_password_file)
                .map_err(|e| DirError::Unavailable(e.to_string()))?,
        );
        let mut ldap = self.connect().await?;
        let bound = ldap
            .with_timeout(TIMEOUT)
            .simple_bind(&self.admin_dn, &secret)
            .await?
            .success();
        if let Err(e) = bound {
            // A refused privileged bind is a configuration problem, not the user's.
            return Err(DirError::Unavailable(format!(
                "privileged bind refused: {e}"
            )));
        }
        Ok(ldap)
    }
}

impl UserSession {
    /// The bound user's own entry.
    pub async fn read_self(&mut self) -> Result<Person, DirError> {
        let (entries, _) = self
            .ldap
            .with_timeout(TIMEOUT)
            .search(
                &self.dn,
                Scope::Base,
                "(objectClass=*)",
                vec!["cn", "mail", "sshPublicKey"],
            )
            .await?
            .success()?;
        Ok(entries
            .into_iter()
            .next()
            .map(|e| person(SearchEntry::construct(e)))
            .unwrap_or_default())
    }

    /// Password Modify (RFC 3062) on one's own entry, with the old password: the server hashes.
    pub async fn change_password(&mut self, old: &str, new: &str) -> Result<(), DirError> {
        self.ldap
            .with_timeout(TIMEOUT)
            .extended(PasswordModify {
                user_id: None,
                old_pass: Some(old),
                new_pass: Some(new),
            })
            .await?
            .success()?;
        Ok(())
    }

    pub async fn add_key(&mut self, line: &str) -> Result<(), DirError> {
        self.modify(Mod::Add("sshPublicKey", HashSet::from([line])))
            .await
    }

    pub async fn remove_key(&mut self, line: &str) -> Result<(), DirError> {
        self.modify(Mod::Delete("sshPublicKey", HashSet::from([line])))
            .await
    }

    async fn modify(&mut self, m: Mod<&str>) -> Result<(), DirError> {
        self.ldap
            .with_timeout(TIMEOUT)
            .modify(&self.dn, vec![m])
            .await?
            .success()?;
        Ok(())
    }

    pub async fn close(mut self) {
        let _ = self.ldap.unbind().await;
    }
}

fn person(e: SearchEntry) -> Person {
    let first = |name: &str| e.attrs.get(name).and_then(|v| v.first()).cloned();
    Person {
        full_name: first("cn").unwrap_or_default(),
        mail: first("mail"),
        ssh_keys: e.attrs.get("sshPublicKey").cloned().unwrap_or_default(),
    }
}
