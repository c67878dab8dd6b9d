//! OpenLDAP: one subtree search to observe, one operation per change to apply.

use crate::{secret, Error};
use ldap3::exop::PasswordModify;
use ldap3::{LdapConn, LdapConnSettings, Mod, Scope, SearchEntry};
use pic2_inventory::ValidInventory;
use pic2_plan::ValueEdit;
use pic2_plan::{ObservedDirectory, ObservedEntry};
use pic2_render::directory::{LISTED_KEYS_ATTR, MANAGED_ATTRS, MARK_CLASS};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

/// `noSuchObject`: the base DN does not exist yet.
const NO_SUCH_OBJECT: u32 = 32;

pub struct Directory {
    conn: LdapConn,
    base: String,
}

impl Directory {
    /// Connects and binds as the admin DN of the inventory.
    pub fn connect(inv: &ValidInventory) -> Result<Self, Error> {
        let dir = &inv.directory;
        let password = secret::read(&dir.admin_password_file.value)?;
        let url = dir.url.value.to_string();
        let settings = LdapConnSettings::new().set_conn_timeout(Duration::from_secs(5));
        let mut conn =
            LdapConn::with_settings(settings, &url).map_err(|source| Error::LdapConnect {
                url: url.clone(),
                source: Box::new(source),
            })?;
        conn.with_timeout(Duration::from_secs(120));
        let bind = conn
            .simple_bind(dir.admin_dn.value.as_str(), &password)
            .map_err(|e| Error::LdapBind {
                dn: dir.admin_dn.value.to_string(),
                message: e.to_string(),
            })?;
        if bind.rc != 0 {
            return Err(Error::LdapBind {
                dn: dir.admin_dn.value.to_string(),
                message: format!("{} (result code {})", describe(bind.rc), bind.rc),
            });
        }
        Ok(Directory {
            conn,
            base: dir.base_dn.value.to_string(),
        })
    }

    /// Every entry under the base DN that pic2 may care about, in one search, after a look
    /// at the schema. A size limit (result code 4) is an error, never a short answer: the
    /// admin DN must be unlimited.
    pub fn observe(&mut self) -> Result<(ObservedDirectory, u32), Error> {
        self.require_schema()?;
        let filter = format!("(|(objectClass=posixAccount)(objectClass=posixGroup)(objectClass={MARK_CLASS})(objectClass=organizationalUnit))");
        let result = self
            .conn
            .search(&self.base, Scope::Subtree, &filter, MANAGED_ATTRS.to_vec())
            .map_err(|e| Error::ldap(format!("searching {}", self.base), e))?;
        let (entries, res) = (result.0, result.1);
        match res.rc {
            0 => {}
            NO_SUCH_OBJECT => return Ok((ObservedDirectory { entries: vec![], base_exists: false }, 2)),
            4 => return Err(Error::ldap(
                format!("searching {}", self.base),
                "the server stopped at its size limit (result code 4): give the admin DN `limits … size=unlimited` in slapd's config, or pic2 would take missing entries for absent ones",
            )),
            rc => return Err(Error::ldap(format!("searching {}", self.base), format!("{} (result code {rc}): {}", describe(rc), res.text))),
        }
        let entries = entries
            .into_iter()
            .map(|e| {
                let e = SearchEntry::construct(e);
                let mut attrs: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for (k, v) in e.attrs {
                    attrs.entry(k.to_ascii_lowercase()).or_default().extend(v);
                }
                for (k, v) in e.bin_attrs {
                    attrs.entry(k.to_ascii_lowercase()).or_default().extend(
                        v.into_iter()
                            .map(|b| String::from_utf8_lossy(&b).into_owned()),
                    );
                }
                ObservedEntry { dn: e.dn, attrs }
            })
            .collect();
        Ok((
            ObservedDirectory {
                entries,
                base_exists: true,
            },
            2,
        ))
    }

    /// The directory knows every attribute pic2 writes: a pic2 schema loaded before one was
    /// added would have the server refuse it half-way through an apply (after the groups),
    /// so it is said now, with the way to add it.
    fn require_schema(&mut self) -> Result<(), Error> {
        let what = "reading the directory's schema (cn=Subschema)";
        let (entries, _) = self
            .conn
            .search(
                "cn=Subschema",
                Scope::Base,
                "(objectClass=subschema)",
                vec!["attributeTypes"],
            )
            .map_err(|e| Error::ldap(what, e))?
            .success()
            .map_err(|e| Error::ldap(what, e))?;
        let known = entries.into_iter().any(|e| {
            SearchEntry::construct(e)
                .attrs
                .into_iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("attributeTypes"))
                .flat_map(|(_, v)| v)
                .any(|t| t.contains(&format!("NAME '{LISTED_KEYS_ATTR}'")))
        });
        if known {
            Ok(())
        } else {
            Err(Error::ldap(
                what,
                format!("the server does not know {LISTED_KEYS_ATTR}: its pic2 schema predates it; add it with `ldapmodify -Y EXTERNAL -H ldapi:/// -f schema/pic2-add-ssh-keys.ldif` (the file says how to name the schema entry)"),
            ))
        }
    }

    pub fn add(&mut self, dn: &str, attrs: &[(String, Vec<String>)]) -> Result<(), Error> {
        let attrs: Vec<(&str, HashSet<&str>)> = attrs
            .iter()
            .map(|(a, vs)| (a.as_str(), vs.iter().map(String::as_str).collect()))
            .collect();
        let res = self
            .conn
            .add(dn, attrs)
            .map_err(|e| Error::ldap(format!("adding {dn}"), e))?;
        check(res, || format!("adding {dn}"))
    }

    /// One modify request: attributes replaced, and values taken out and put in. A value to
    /// take out that is gone (the member changed their keys since the plan) makes the server
    /// refuse the whole request, and the next plan starts from what is there.
    pub fn modify(
        &mut self,
        dn: &str,
        replace: &[(String, Vec<String>)],
        edit: &[ValueEdit],
    ) -> Result<(), Error> {
        fn set(vs: &[String]) -> HashSet<&str> {
            vs.iter().map(String::as_str).collect()
        }
        let mut mods: Vec<Mod<&str>> = replace
            .iter()
            .map(|(a, vs)| Mod::Replace(a.as_str(), set(vs)))
            .collect();
        for e in edit {
            if !e.delete.is_empty() {
                mods.push(Mod::Delete(e.attr.as_str(), set(&e.delete)));
            }
            if !e.add.is_empty() {
                mods.push(Mod::Add(e.attr.as_str(), set(&e.add)));
            }
        }
        let res = self
            .conn
            .modify(dn, mods)
            .map_err(|e| Error::ldap(format!("modifying {dn}"), e))?;
        check(res, || format!("modifying {dn}"))
    }

    pub fn delete(&mut self, dn: &str) -> Result<(), Error> {
        let res = self
            .conn
            .delete(dn)
            .map_err(|e| Error::ldap(format!("deleting {dn}"), e))?;
        check(res, || format!("deleting {dn}"))
    }
}

/// Sets an account's password with the Password Modify extended operation (RFC 3062), so the
/// server hashes it with its own scheme; the password never leaves this call.
pub fn set_password(directory: &mut Directory, dn: &str, password: &str) -> Result<(), Error> {
    let exop = PasswordModify {
        user_id: Some(dn),
        old_pass: None,
        new_pass: Some(password),
    };
    let res = directory
        .conn
        .extended(exop)
        .map_err(|e| Error::ldap(format!("setting the password of {dn}"), e))?;
    check(res.1, || format!("setting the password of {dn}"))
}

fn check(res: ldap3::LdapResult, what: impl FnOnce() -> String) -> Result<(), Error> {
    if res.rc == 0 {
        Ok(())
    } else {
        Err(Error::ldap(
            what(),
            format!(
                "{} (result code {}){}",
                describe(res.rc),
                res.rc,
                if res.text.is_empty() {
                    String::new()
                } else {
                    format!(": {}", res.text)
                }
            ),
        ))
    }
}

/// The names of the result codes an admin meets.
fn describe(rc: u32) -> &'static str {
    match rc {
        4 => "size limit exceeded",
        19 => "constraint violation",
        21 => "invalid attribute syntax",
        32 => "no such object",
        49 => "invalid credentials",
        50 => "insufficient access rights",
        53 => "unwilling to perform",
        65 => "object class violation (is the openssh-lpk or pic2 schema loaded?)",
        68 => "entry already exists",
        69 => "object class modifications prohibited (an entry's structural class cannot change)",
        _ => "LDAP error",
    }
}
