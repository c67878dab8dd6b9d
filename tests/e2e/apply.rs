//! Apply, re-apply, change, add, remove, prune: the life of a platform.

use crate::fixture::{put, sql_admin, sql_as, ssh_key, Platform};
use mysql::prelude::Queryable;
use std::os::unix::fs::MetadataExt;

const ONE_SITE: &str = r#"
[accounts.{id}a]
uid = 20001
full_name = "Association Él"
email = "a@{id}.test"

[accounts.{id}b]
uid = 20002
full_name = "B"
email = "b@{id}.test"
access = "ssh"

[sites."a.{id}.test"]
owner = "{id}a"
runtime = "php82"
aliases = ["www.a.{id}.test"]
databases = ["{id}_a"]

[databases.{id}_a]
owner = "{id}a"
"#;

#[test]
fn apply_creates_everything_and_a_second_apply_changes_nothing() {
    let p = Platform::new("life");
    p.write(ONE_SITE);
    let plan = p.expect(&["plan"], 2);
    assert!(
        plan.contains(&format!("add uid=lifea,ou=people,{}", p.base_dn)),
        "{plan}"
    );
    p.apply(&[]);
    p.assert_converged();
    let out = p.apply(&[]);
    assert!(out.contains("Nothing to do"), "{out}");

    // The directory: a real POSIX account, no password, marked.
    let a = p.entry(&p.account_dn("lifea")).expect("account created");
    assert_eq!(a.attrs["uidNumber"], vec!["20001"]);
    assert_eq!(a.attrs["gidNumber"], vec!["20001"]);
    assert_eq!(a.attrs["cn"], vec!["Association Él"]);
    assert_eq!(a.attrs["loginShell"], vec!["/usr/sbin/nologin"]);
    assert_eq!(
        a.attrs["homeDirectory"],
        vec![p.home("lifea").display().to_string()]
    );
    assert_eq!(a.attrs["pic2Platform"], vec!["t-life"]);
    assert!(
        !a.attrs.contains_key("userPassword"),
        "a new account has no usable password"
    );
    let ssh_group = p
        .entry(&format!("cn=t-life-ssh,ou=groups,{}", p.base_dn))
        .unwrap();
    assert_eq!(ssh_group.attrs["memberUid"], vec!["lifeb"]);

    // The files: chroot-able home, owner-only site folders.
    let home = std::fs::metadata(p.home("lifea")).unwrap();
    assert_eq!((home.uid(), home.mode() & 0o7777), (0, 0o755));
    let htdocs = std::fs::metadata(p.home("lifea").join("sites/a.life.test/htdocs")).unwrap();
    assert_eq!(
        (htdocs.uid(), htdocs.gid(), htdocs.mode() & 0o7777),
        (20001, 20001, 0o750)
    );
    // root's on the way to the logs Apache opens as root: the owner cannot swap `logs` for
    // a link (checked as the owner, whose group reads through)
    let site = p.home("lifea").join("sites/a.life.test");
    for dir in [site.parent().unwrap(), site.as_path()] {
        let m = std::fs::metadata(dir).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (0, 20001, 0o750));
    }
    let as_owner = |args: &[&str]| {
        std::process::Command::new("setpriv")
            .args(["--reuid=20001", "--regid=20001", "--clear-groups", "--"])
            .args(args)
            .status()
            .unwrap()
            .success()
    };
    let logs = site.join("logs");
    let moved = site.join("logs-moved");
    assert!(!as_owner(&[
        "mv",
        logs.to_str().unwrap(),
        moved.to_str().unwrap()
    ]));
    assert!(
        logs.is_dir() && !moved.exists(),
        "the owner moved the logs folder"
    );
    assert!(as_owner(&["ls", site.join("htdocs").to_str().unwrap()]));

    // The database: the owner's credentials work, on that database only.
    let cred = p.home("lifea").join("private/mariadb-life_a.cnf");
    let meta = std::fs::metadata(&cred).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (20001, 0o600));
    let mut conn = sql_as(&cred).expect("the generated credentials work");
    conn.query_drop("CREATE TABLE t (x INT)").unwrap();
    let dbs: Vec<String> = conn.query("SHOW DATABASES").unwrap();
    assert_eq!(dbs, vec!["information_schema", "life_a"]);
    assert!(conn.query_drop("CREATE DATABASE life_other").is_err());
    // the shared server: a site's user holds 30 connections at most (20 PHP processes and
    // some room), whatever its scripts do
    let mut held: Vec<mysql::Conn> = (1..30)
        .map(|i| sql_as(&cred).unwrap_or_else(|e| panic!("connection {}: {e}", i + 1)))
        .collect();
    let refused = sql_as(&cred)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        refused.contains("max_user_connections"),
        "a 31st connection: {refused:?}"
    );
    held.clear();
    // the site's user may edit its database's comment (ALTER covers it), which held pic2's
    // mark: the next apply puts it back instead of stopping on a conflict
    conn.query_drop("ALTER DATABASE life_a COMMENT 'mine now'")
        .unwrap();
    let plan = p.expect(&["plan", "--detail"], 2);
    assert!(
        plan.contains("set the comment of database life_a"),
        "{plan}"
    );
    p.apply(&[]);
    p.assert_converged();
    // `_` is a wildcard in a grant's database: unescaped, life_a's grant covered lifexa
    // (which its user could even create, then see pic2 hand to someone else)
    assert!(
        conn.query_drop("CREATE DATABASE lifexa").is_err(),
        "the grant on life_a covers lifexa"
    );
}

#[test]
fn changing_an_account_updates_only_what_changed() {
    let p = Platform::new("chg");
    p.write(ONE_SITE);
    p.apply(&[]);
    // The owner sets a password: pic2 must never touch it.
    let mut ldap = p.ldap();
    let exop = ldap3::exop::PasswordModify {
        user_id: Some(&p.account_dn("chga")),
        old_pass: None,
        new_pass: Some("a long passphrase 123"),
    };
    ldap.extended(exop).unwrap().success().unwrap();

    let key = ssh_key("a@laptop");
    let changed = ONE_SITE
        .replace("full_name = \"Association Él\"\nemail = \"a@{id}.test\"", &format!("full_name = \"Association Él\"\nemail = \"new@{{id}}.test\"\naccess = \"ssh\"\nssh_keys = [\"{key}\"]"));
    p.write(&changed);
    let detail = p.expect(&["plan", "--detail"], 2);
    assert!(
        detail.contains("- mail: a@chg.test") && detail.contains("+ mail: new@chg.test"),
        "{detail}"
    );
    assert!(detail.contains("+ loginShell: /bin/bash"), "{detail}");
    let json = p.plan_json(&[]);
    let changes = json["changes"].as_array().unwrap();
    assert_eq!(
        changes.len(),
        2,
        "the account and the SSH group: {changes:#?}"
    );
    assert!(changes.iter().all(|c| c["kind"] == "update"));
    // how each system was read, for machines: round trips and milliseconds as plain numbers
    for read in json["observed"].as_array().unwrap() {
        assert!(
            read["elapsed_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
            "{read}"
        );
        assert!(read["round_trips"].as_u64().is_some(), "{read}");
    }
    p.apply(&[]);
    p.assert_converged();
    let a = p.entry(&p.account_dn("chga")).unwrap();
    assert_eq!(a.attrs["mail"], vec!["new@chg.test"]);
    assert_eq!(a.attrs["sshPublicKey"], vec![key.clone()]);

    // The member changes their keys (as pic2 passwd does, with their own bind): the
    // inventory's key removed (a stolen laptop), one of their own added. An apply for
    // something else keeps both changes; one that drops the admins' key changes nothing more.
    let own = ssh_key("a@phone");
    let mut member = ldap3::LdapConn::new("ldap://127.0.0.1:3389").unwrap();
    member
        .simple_bind(&p.account_dn("chga"), "a long passphrase 123")
        .unwrap()
        .success()
        .unwrap();
    let keys = std::collections::HashSet::from([own.as_str()]);
    member
        .modify(
            &p.account_dn("chga"),
            vec![ldap3::Mod::Replace("sshPublicKey", keys)],
        )
        .unwrap()
        .success()
        .expect("the member sets their keys");
    p.write(&changed.replace("new@{id}.test", "newer@{id}.test"));
    p.apply(&[]);
    p.assert_converged();
    let a = p.entry(&p.account_dn("chga")).unwrap();
    assert_eq!(a.attrs["mail"], vec!["newer@chg.test"]);
    assert_eq!(
        a.attrs["sshPublicKey"],
        vec![own.clone()],
        "an apply undid the member's keys"
    );
    let second = ssh_key("b@desk");
    p.write(
        &changed
            .replace("new@{id}.test", "newer@{id}.test")
            .replace(&key, &second),
    );
    p.apply(&[]);
    p.assert_converged();
    let a = p.entry(&p.account_dn("chga")).unwrap();
    let mut got = a.attrs["sshPublicKey"].clone();
    got.sort();
    let mut want = vec![own.clone(), second.clone()];
    want.sort();
    assert_eq!(got, want, "the admins' new key, beside the member's");
    // the admins drop their key: taken out by value, the member's left
    p.write(
        &changed
            .replace("new@{id}.test", "newer@{id}.test")
            .replace(&format!("ssh_keys = [\"{key}\"]"), "ssh_keys = []"),
    );
    p.apply(&[]);
    p.assert_converged();
    let a = p.entry(&p.account_dn("chga")).unwrap();
    assert_eq!(
        a.attrs["sshPublicKey"],
        vec![own],
        "the admins' key stayed, or the member's went"
    );
    // The password still works.
    let mut user = ldap3::LdapConn::new("ldap://127.0.0.1:3389").unwrap();
    user.simple_bind(&p.account_dn("chga"), "a long passphrase 123")
        .unwrap()
        .success()
        .expect("password kept");
}

/// A new uid for an account: the files in its folders follow (PHP, as the new uid under
/// mpm-itk, and SFTP must still write them), not only the folders pic2 made; another owner's
/// file and a link's target stay as they are.
#[test]
fn a_changed_uid_reowns_the_accounts_files() {
    let p = Platform::new("reown");
    p.write(ONE_SITE);
    p.apply(&[]);
    let site = p.home("reowna").join("sites/a.reown.test");
    let htdocs = site.join("htdocs");
    put(&htdocs.join("index.php"), "<?php echo 1;", 20001);
    std::fs::create_dir(htdocs.join("uploads")).unwrap();
    std::os::unix::fs::chown(htdocs.join("uploads"), Some(20001), Some(20001)).unwrap();
    put(&htdocs.join("uploads/photo.jpg"), "jpeg", 20001);
    put(&htdocs.join("foreign.txt"), "someone else's", 20005);
    put(&site.join("tmp/sess_1"), "session", 20001);
    // a link the account made to a file outside its site, which has its old uid too
    let target = p.dir.path().join("target");
    put(&target, "not the site's", 20001);
    let link = htdocs.join("outside");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(20001), Some(20001)).unwrap();

    p.write(&ONE_SITE.replace("uid = 20001", "uid = 20011"));
    let plan = p.expect(&["plan", "--detail"], 2);
    assert!(
        plan.contains(&format!(
            "re-own the files under {}: uid 20001 → 20011, gid 20001 → 20011",
            htdocs.display()
        )),
        "{plan}"
    );
    p.apply(&[]);
    let owner = |path: &std::path::Path| {
        let m = std::fs::symlink_metadata(path).unwrap();
        (m.uid(), m.gid())
    };
    for path in [
        htdocs.clone(),
        htdocs.join("index.php"),
        htdocs.join("uploads"),
        htdocs.join("uploads/photo.jpg"),
        link.clone(),
        site.join("tmp/sess_1"),
        p.home("reowna").join("private/mariadb-reown_a.cnf"),
    ] {
        assert_eq!(owner(&path), (20011, 20011), "{}", path.display());
    }
    assert_eq!(owner(&htdocs.join("foreign.txt")), (20005, 20005));
    assert_eq!(owner(&target), (20001, 20001), "the link was followed");
    p.assert_converged();
    sql_as(&p.home("reowna").join("private/mariadb-reown_a.cnf"))
        .expect("the credentials still work");
}

/// The account swaps its credentials file for a link (to a passwd-like file): the plan
/// writes pic2's file over the link (a new password), instead of a conflict that would stop
/// every other site's apply; the link's target is never followed. A folder there may be
/// someone's data: moved aside, not deleted, and not a conflict either.
#[test]
fn a_link_in_place_of_the_credentials_file_is_replaced() {
    let p = Platform::new("credln");
    p.write(ONE_SITE);
    p.apply(&[]);
    let cred = p.home("credlna").join("private/mariadb-credln_a.cnf");
    let target = p.dir.path().join("passwd");
    let passwd = "root:x:0:0:root:/root:/bin/bash\n";
    std::fs::write(&target, passwd).unwrap();
    let before = std::fs::metadata(&target).unwrap();
    std::fs::remove_file(&cred).unwrap();
    std::os::unix::fs::symlink(&target, &cred).unwrap();
    std::os::unix::fs::lchown(&cred, Some(20001), Some(20001)).unwrap();

    let plan = p.expect(&["plan"], 2);
    assert!(
        plan.contains(&format!(
            "replace the symbolic link at {} (→ {:?}, not followed) with pic2's credentials file",
            cred.display(),
            target
        )),
        "{plan}"
    );
    p.apply(&[]);
    let now = std::fs::symlink_metadata(&cred).unwrap();
    assert!(now.file_type().is_file(), "still a link");
    assert_eq!((now.uid(), now.mode() & 0o7777), (20001, 0o600));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), passwd);
    let after = std::fs::metadata(&target).unwrap();
    assert_eq!(
        (after.uid(), after.mode(), after.ino()),
        (before.uid(), before.mode(), before.ino()),
        "the link's target was changed"
    );
    sql_as(&cred).expect("the new credentials work");
    p.assert_converged();

    // a folder in its place may hold the account's data: moved aside, not a conflict that
    // stops every apply of the platform
    std::fs::remove_file(&cred).unwrap();
    std::fs::create_dir(&cred).unwrap();
    std::fs::write(cred.join("notes.txt"), "the account's").unwrap();
    std::os::unix::fs::lchown(&cred, Some(20001), Some(20001)).unwrap();
    let plan = p.expect(&["plan"], 2);
    let moved_to = format!("{}.pic2-moved-", cred.display());
    assert!(
        plan.contains(&format!(
            "move the folder at {} aside to {moved_to}",
            cred.display()
        )) && plan
            .contains("(never followed, nothing deleted), then write pic2's credentials file"),
        "{plan}"
    );
    p.apply(&[]);
    let now = std::fs::symlink_metadata(&cred).unwrap();
    assert!(now.file_type().is_file(), "not replaced by the file");
    assert_eq!((now.uid(), now.mode() & 0o7777), (20001, 0o600));
    sql_as(&cred).expect("the new credentials work");
    let private = cred.parent().unwrap();
    let aside: Vec<std::path::PathBuf> = std::fs::read_dir(private)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|e| e.display().to_string().starts_with(&moved_to))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(
        std::fs::read_to_string(aside[0].join("notes.txt")).unwrap(),
        "the account's",
        "the folder's contents were lost"
    );
    p.assert_converged();

    // a FIFO there neither blocks the plan nor the apply
    std::fs::remove_file(&cred).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(&cred)
        .status()
        .unwrap();
    assert!(status.success());
    let plan = p.expect(&["plan"], 2);
    assert!(
        plan.contains(&format!("move the special file at {}", cred.display())),
        "{plan}"
    );
    p.apply(&[]);
    assert!(std::fs::symlink_metadata(&cred)
        .unwrap()
        .file_type()
        .is_file());
    sql_as(&cred).expect("the new credentials work");
    p.assert_converged();
}

#[test]
fn sites_come_and_go_and_data_needs_two_flags() {
    let p = Platform::new("site");
    p.write(ONE_SITE);
    p.apply(&[]);
    let second = format!(
        "{ONE_SITE}\n[sites.\"two.{{id}}.test\"]\nowner = \"{{id}}a\"\nruntime = \"php82\"\n"
    );
    p.write(&second);
    // for machines: one JSON document, the plan and what became of it
    let applied = p.apply(&["--json"]);
    let doc: serde_json::Value = serde_json::from_str(&applied)
        .unwrap_or_else(|e| panic!("not one JSON document ({e}): {applied}"));
    let planned = doc["changes"].as_array().map_or(0, Vec::len);
    assert!(planned > 0 && doc["applied"] == planned, "{doc:#}");
    let two = p.home("sitea").join("sites/two.site.test");
    assert!(two.join("htdocs").is_dir());
    std::fs::write(two.join("htdocs/index.php"), "<?php echo 1;").unwrap();

    p.write(ONE_SITE);
    let plan = p.expect(&["plan"], 0);
    assert!(
        plan.contains("Kept (1)") && plan.contains("needs --prune --drop-data"),
        "{plan}"
    );
    p.apply(&["--prune"]);
    assert!(
        two.join("htdocs/index.php").exists(),
        "--prune alone keeps data"
    );
    p.apply(&["--prune", "--drop-data"]);
    assert!(!two.exists());
    p.assert_converged();
}

#[test]
fn pruning_removes_accounts_then_data_only_when_asked() {
    let p = Platform::new("prune");
    p.write(ONE_SITE);
    p.apply(&[]);
    p.write("\n[accounts.{id}b]\nuid = 20002\nfull_name = \"B\"\nemail = \"b@{id}.test\"\naccess = \"ssh\"\n");
    let json = p.plan_json(&[]);
    assert_eq!(
        json["changes"].as_array().unwrap().len(),
        0,
        "nothing deleted without --prune: {json:#}"
    );
    assert!(json["held"].as_array().unwrap().len() >= 4, "{json:#}");

    p.apply(&["--prune"]);
    assert!(
        p.entry(&p.account_dn("prunea")).is_none(),
        "account deleted"
    );
    assert!(
        p.entry(&format!("cn=prunea,ou=groups,{}", p.base_dn))
            .is_none(),
        "group deleted"
    );
    let mut sql = sql_admin();
    let users: Vec<String> = sql
        .query("SELECT User FROM mysql.user WHERE User = 'prune_a'")
        .unwrap();
    assert!(users.is_empty(), "database user dropped with --prune");
    let dbs: Vec<String> = sql.query("SHOW DATABASES LIKE 'prune\\_a'").unwrap();
    assert_eq!(dbs, vec!["prune_a"], "the database is data: kept");
    assert!(p.home("prunea").exists(), "the home is data: kept");
    assert!(p.entry(&p.account_dn("pruneb")).is_some());

    // a's data is kept, still with uid 20001: an account given that uid would read it
    p.write(
        "\n[accounts.{id}b]\nuid = 20002\nfull_name = \"B\"\nemail = \"b@{id}.test\"\naccess = \"ssh\"\n\
         \n[accounts.{id}c]\nuid = 20001\nfull_name = \"C\"\nemail = \"c@{id}.test\"\n",
    );
    let out = p.expect(&["plan"], 1);
    assert!(out.contains("uid 20001 still owns"), "{out}");

    // b gets eight sites in the same plan: past the summary's 25 lines, the deletions are
    // still listed above the prompt, never folded into "… and N more"
    let mut many = String::from("\n[accounts.{id}b]\nuid = 20002\nfull_name = \"B\"\nemail = \"b@{id}.test\"\naccess = \"ssh\"\n");
    for i in 0..8 {
        many.push_str(&format!(
            "\n[sites.\"s{i}.{{id}}.test\"]\nowner = \"{{id}}b\"\nruntime = \"php82\"\n"
        ));
    }
    p.write(&many);
    let summary = p.expect(&["plan", "--prune", "--drop-data"], 2);
    assert!(summary.contains("more creations and updates"), "{summary}");
    assert!(
        summary.contains("DROP DATABASE prune_a") && summary.contains("home/prunea"),
        "a deletion hidden from the summary: {summary}"
    );

    p.apply(&["--prune", "--drop-data"]);
    let dbs: Vec<String> = sql.query("SHOW DATABASES LIKE 'prune\\_a'").unwrap();
    assert!(dbs.is_empty());
    assert!(!p.home("prunea").exists());
    p.assert_converged();
}

#[test]
fn objects_pic2_does_not_own_are_conflicts_never_changes() {
    let p = Platform::new("own");
    p.write(ONE_SITE);
    // Somebody made the base and an account by hand, with the uid the inventory wants.
    let mut ldap = p.ldap();
    let hs = |v: &[&'static str]| {
        v.iter()
            .copied()
            .collect::<std::collections::HashSet<&str>>()
    };
    ldap.add(
        &p.base_dn,
        vec![
            ("objectClass", hs(&["organizationalUnit"])),
            ("ou", hs(&["t-own"])),
        ],
    )
    .unwrap()
    .success()
    .unwrap();
    ldap.add(
        &format!("ou=people,{}", p.base_dn),
        vec![
            ("objectClass", hs(&["organizationalUnit"])),
            ("ou", hs(&["people"])),
        ],
    )
    .unwrap()
    .success()
    .unwrap();
    let stranger = format!("uid=stranger,ou=people,{}", p.base_dn);
    ldap.add(
        &stranger,
        vec![
            ("objectClass", hs(&["inetOrgPerson", "posixAccount"])),
            ("uid", hs(&["stranger"])),
            ("cn", hs(&["S"])),
            ("sn", hs(&["S"])),
            ("uidNumber", hs(&["20001"])),
            ("gidNumber", hs(&["20001"])),
            ("homeDirectory", hs(&["/nowhere"])),
        ],
    )
    .unwrap()
    .success()
    .unwrap();
    // ... and a database with the name the inventory wants, without pic2's mark.
    let mut sql = sql_admin();
    sql.query_drop("CREATE DATABASE own_a").unwrap();
    sql.query_drop("CREATE TABLE own_a.precious (x INT)")
        .unwrap();

    let out = p.pic2(&["apply", "--yes", "--prune", "--drop-data"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("uidNumber 20001 is already used by uid=stranger"),
        "{stdout}"
    );
    assert!(
        stdout.contains("own_a: the database exists and pic2 does not manage it"),
        "{stdout}"
    );
    // Nothing was applied: not even the unrelated changes.
    assert!(p
        .entry(&format!("cn=ownb,ou=groups,{}", p.base_dn))
        .is_none());

    // Once the uid is free and the database renamed, everything applies and the stranger
    // (unmarked) survives --prune.
    ldap.modify(
        &stranger,
        vec![ldap3::Mod::Replace("uidNumber", hs(&["29999"]))],
    )
    .unwrap()
    .success()
    .unwrap();
    p.write(&ONE_SITE.replace("{id}_a", "{id}_a2"));
    p.apply(&["--prune", "--drop-data"]);
    assert!(
        p.entry(&stranger).is_some(),
        "unmanaged entries are never deleted"
    );
    let kept: Vec<String> = sql.query("SHOW TABLES FROM own_a").unwrap();
    assert_eq!(
        kept,
        vec!["precious"],
        "unmanaged databases are never dropped"
    );
    sql.query_drop("DROP DATABASE own_a").unwrap();
    ldap.delete(&stranger).unwrap();
    p.assert_converged();
}

#[test]
fn an_interrupted_apply_is_finished_by_the_next() {
    let p = Platform::new("intr");
    let mut body = String::new();
    for i in 0..150 {
        body.push_str(&format!(
            "[accounts.{{id}}{i:03}]\nuid = {}\nfull_name = \"N{i}\"\nemail = \"n{i}@{{id}}.test\"\n[sites.\"s{i}.{{id}}.test\"]\nowner = \"{{id}}{i:03}\"\nruntime = \"php82\"\ndatabases = [\"{{id}}_{i:03}\"]\n[databases.{{id}}_{i:03}]\nowner = \"{{id}}{i:03}\"\n",
            20100 + i
        ));
    }
    p.write(&body);
    let mut child = p
        .command(&["apply", "--yes"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Kill it for good (SIGKILL: no clean-up at all) once some changes are through.
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let mut seen = 0;
    while seen < 30 {
        line.clear();
        if std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() == 0 {
            break;
        }
        seen += 1;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let json = p.plan_json(&[]);
    let left = json["changes"].as_array().unwrap().len();
    assert!(
        left > 0,
        "the kill came too late to test anything ({seen} lines)"
    );
    assert_eq!(json["conflicts"].as_array().unwrap().len(), 0, "{json:#}");
    p.apply(&[]);
    p.assert_converged();
    let cred = p.home("intr149").join("private/mariadb-intr_149.cnf");
    sql_as(&cred).expect("credentials of the last database work");
}

#[test]
fn plan_reads_each_system_in_a_bounded_number_of_round_trips() {
    let p = Platform::new("trips");
    p.write(ONE_SITE);
    p.apply(&[]);
    let json = p.plan_json(&[]);
    assert!(json["round_trips"].as_u64().unwrap() <= 10, "{json:#}");
}

#[test]
fn set_password_reads_stdin_and_the_directory_hashes_it() {
    let p = Platform::new("pw");
    p.write(ONE_SITE);
    p.apply(&[]);
    let mut child = p
        .command(&["account", "set-password", "pwa", "--stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        b"correct horse battery staple\n",
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let mut user = ldap3::LdapConn::new("ldap://127.0.0.1:3389").unwrap();
    user.simple_bind(&p.account_dn("pwa"), "correct horse battery staple")
        .unwrap()
        .success()
        .expect("the new password works");
    let (rs, _) = p
        .ldap()
        .search(
            &p.account_dn("pwa"),
            ldap3::Scope::Base,
            "(objectClass=*)",
            vec!["userPassword"],
        )
        .unwrap()
        .success()
        .unwrap();
    let entry = ldap3::SearchEntry::construct(rs.into_iter().next().unwrap());
    let stored: Vec<u8> = entry
        .bin_attrs
        .get("userPassword")
        .and_then(|v| v.first().cloned())
        .or_else(|| {
            entry
                .attrs
                .get("userPassword")
                .and_then(|v| v.first())
                .map(|s| s.clone().into_bytes())
        })
        .unwrap();
    assert!(stored.starts_with(b"{ARGON2}"), "stored hashed");
    // Too short: refused before anything is sent.
    let mut child = p
        .command(&["account", "set-password", "pwa", "--stdin"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"short\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 12 characters"));
}
