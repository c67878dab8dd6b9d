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
            .search(&self.base, Scope::Subtree, &filter, searched_attrs())
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
                vec!["attributeTypes", "objectClasses"],
            )
            .map_err(|e| Error::ldap(what, e))?
            .success()
            .map_err(|e| Error::ldap(what, e))?;
        let mut types = Vec::new();
        let mut classes = Vec::new();
        for e in entries {
            for (k, v) in SearchEntry::construct(e).attrs {
                if k.eq_ignore_ascii_case("attributeTypes") {
                    types.extend(v);
                } else if k.eq_ignore_ascii_case("objectClasses") {
                    classes.extend(v);
                }
            }
        }
        schema_verdict(&types, &classes).map_err(|why| Error::ldap(what, why))
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
/// The attributes the observing search asks for: those pic2 manages, and the operational
/// `structuralObjectClass`, which an entry cannot change (the plan refuses to try).
fn searched_attrs() -> Vec<&'static str> {
    let mut attrs = MANAGED_ATTRS.to_vec();
    attrs.push("structuralObjectClass");
    attrs
}

/// Whether the server's schema (its `attributeTypes` and `objectClasses` descriptions) has
/// what pic2 writes, and if not, what to do.
fn schema_verdict(types: &[String], classes: &[String]) -> Result<(), String> {
    if types.is_empty() {
        return Err("the admin DN cannot read cn=Subschema: let it (`access to dn.base=\"cn=Subschema\" by * read` in slapd's frontend rules)".into());
    }
    let named = |descriptions: &[String], name: &str| -> Option<String> {
        descriptions
            .iter()
            .find(|d| names_of(d).iter().any(|n| n.eq_ignore_ascii_case(name)))
            .cloned()
    };
    let upgrade = "add it with `ldapmodify -Y EXTERNAL -H ldapi:/// -f schema/pic2-add-ssh-keys.ldif` (the file says how to name the schema entry)";
    if named(types, LISTED_KEYS_ATTR).is_none() {
        return Err(format!(
            "the server does not know {LISTED_KEYS_ATTR}: its pic2 schema predates it; {upgrade}"
        ));
    }
    let managed = named(classes, MARK_CLASS).unwrap_or_default();
    if !managed
        .to_ascii_lowercase()
        .contains(&LISTED_KEYS_ATTR.to_ascii_lowercase())
    {
        return Err(format!("the server's {MARK_CLASS} class does not allow {LISTED_KEYS_ATTR} (its pic2 schema is half upgraded); {upgrade}"));
    }
    Ok(())
}

/// The names in a schema description: `NAME 'a'` or `NAME ( 'a' 'b' )`.
fn names_of(description: &str) -> Vec<&str> {
    let Some(rest) = description
        .split_once(" NAME ")
        .map(|(_, r)| r.trim_start())
    else {
        return Vec::new();
    };
    let list = match rest.strip_prefix('(') {
        Some(inner) => inner.split(')').next().unwrap_or_default(),
        None => rest.split_whitespace().next().unwrap_or_default(),
    };
    list.split_whitespace()
        .map(|n| n.trim_matches('\''))
        .collect()
}

fn describe(rc: u32) -> &'static str {
    match rc {
        4 => "size limit exceeded",
        16 => "no such value: changed since the plan; run `pic2 plan` again",
        18 => "inappropriate matching (an attribute without an equality rule: is this the openssh-lpk schema of schema/?)",
        19 => "constraint violation",
        20 => "the value already exists: changed since the plan; run `pic2 plan` again",
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

#[cfg(test)]
mod tests {
    use super::*;

    const TYPE: &str = "( 2.25.222689539163615916387520608703835168292.1.2 NAME 'pic2SshKeys' DESC 'x' EQUALITY caseExactMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )";
    const CLASS: &str = "( 2.25.222689539163615916387520608703835168292.2.1 NAME 'pic2Managed' DESC 'x' SUP top AUXILIARY MUST pic2Platform MAY pic2SshKeys )";
    const OLD_CLASS: &str = "( 2.25.222689539163615916387520608703835168292.2.1 NAME 'pic2Managed' DESC 'x' SUP top AUXILIARY MUST pic2Platform )";

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    /// The schema check tells an up-to-date schema, an old one, a half-upgraded one and one
    /// the admin DN cannot read apart; names are matched without case, in both NAME forms.
    #[test]
    fn the_schema_verdict() {
        assert_eq!(schema_verdict(&v(&[TYPE]), &v(&[CLASS])), Ok(()));
        let aliased = TYPE.replace("NAME 'pic2SshKeys'", "NAME ( 'PIC2sshKeys' 'other' )");
        assert_eq!(schema_verdict(&v(&[&aliased]), &v(&[CLASS])), Ok(()));
        let old = schema_verdict(&v(&["( 1.2 NAME 'cn' )"]), &v(&[OLD_CLASS])).unwrap_err();
        assert!(old.contains("predates"), "{old}");
        let half = schema_verdict(&v(&[TYPE]), &v(&[OLD_CLASS])).unwrap_err();
        assert!(half.contains("half upgraded"), "{half}");
        let unreadable = schema_verdict(&[], &[]).unwrap_err();
        assert!(
            unreadable.contains("cannot read cn=Subschema"),
            "{unreadable}"
        );
    }
}
