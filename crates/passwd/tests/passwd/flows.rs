//! The flows against the real dev slapd and the capturing SMTP server: change, wrong password,
//! weak password, reset by mail, SSH keys, brute force, no enumeration.

use crate::support::{
    config, mails_to, random_ed25519, require_ldap, require_smtp, reset_link, wait_mail, Client,
    TestAccount,
};
use axum::http::{header, StatusCode};
use std::time::{Duration, Instant, SystemTime};

const OLD: &str = "ancien mot de passe 1 Zèbre";
const NEW: &str = "plume tartine girafe orage 7";

#[tokio::test]
async fn change_password_then_only_the_new_one_works_and_a_mail_tells_the_owner() {
    require_smtp();
    let acct = TestAccount::new("Cyclistes Lyonnais", OLD);
    let mut c = Client::new(config());
    let since = SystemTime::now() - Duration::from_secs(1);
    let r = c
        .post(
            "/password?lang=en",
            "/password",
            &[
                ("account", &acct.name),
                ("current", OLD),
                ("new", NEW),
                ("again", NEW),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("Password changed"), "{}", r.body);
    assert!(acct.binds_with(NEW));
    assert!(!acct.binds_with(OLD));
    let mail = wait_mail(&acct.mail, since).await;
    assert!(mail.contains("Your password was changed"), "{mail}");
    assert!(mail.contains(&acct.name));
    assert!(!mail.contains(NEW), "the mail must not hold the password");
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_account_get_the_same_answer_in_the_same_time() {
    let acct = TestAccount::new("Arto", OLD);
    let mut c = Client::new(config());
    let floor = config().failure_floor;
    let t = Instant::now();
    let wrong = c
        .post(
            "/password",
            "/password",
            &[
                ("account", &acct.name),
                ("current", "not it at all"),
                ("new", NEW),
                ("again", NEW),
            ],
        )
        .await;
    let t_wrong = t.elapsed();
    let t = Instant::now();
    let unknown = c
        .post(
            "/password",
            "/password",
            &[
                ("account", "pw-test-nobody"),
                ("current", "not it at all"),
                ("new", NEW),
                ("again", NEW),
            ],
        )
        .await;
    let t_unknown = t.elapsed();
    assert!(wrong
        .body
        .contains("Nom de compte ou mot de passe incorrect"));
    assert_eq!(
        wrong.body.replace(&acct.name, "X"),
        unknown.body.replace("pw-test-nobody", "X")
    );
    assert!(
        t_wrong >= floor && t_unknown >= floor,
        "{t_wrong:?} {t_unknown:?}"
    );
    let diff = t_wrong.abs_diff(t_unknown);
    assert!(
        diff < Duration::from_millis(150),
        "timing differs by {diff:?}"
    );
    assert!(acct.binds_with(OLD), "nothing changed");
    // the forgotten-password answer is identical too
    let a = c
        .post("/forgot", "/forgot", &[("account", &acct.name)])
        .await;
    let b = c
        .post("/forgot", "/forgot", &[("account", "pw-test-nobody")])
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, b.body);
}

#[tokio::test]
async fn weak_passwords_are_refused_with_the_reason() {
    let acct = TestAccount::new("Amap des Quatre Saisons", OLD);
    let mut c = Client::new(config());
    let mut try_new = async |new: &str, lang: &str| {
        c.post(
            &format!("/password?lang={lang}"),
            "/password",
            &[
                ("account", &acct.name),
                ("current", OLD),
                ("new", new),
                ("again", new),
            ],
        )
        .await
        .body
    };
    assert!(try_new("short", "en")
        .await
        .contains("at least 12 characters"));
    assert!(try_new("aaaaaaaaaaaaaaaaaaaa", "en")
        .await
        .contains("too easy to guess"));
    assert!(try_new(&format!("{}-secret-2024", acct.name), "en")
        .await
        .contains("must not contain the account name"));
    assert!(try_new("quatre saisons au jardin", "fr")
        .await
        .contains("ne doit pas contenir votre nom"));
    assert!(try_new("motdepasse2024", "fr")
        .await
        .contains("mots de passe les plus courants"));
    let differ = c
        .post(
            "/password?lang=en",
            "/password",
            &[
                ("account", &acct.name),
                ("current", OLD),
                ("new", NEW),
                ("again", "something else"),
            ],
        )
        .await;
    assert!(differ.body.contains("The two new passwords differ"));
    assert!(acct.binds_with(OLD), "nothing changed");
}

/// Someone else asking for a member's reset mails from their own address uses up only that
/// address's three: the member, from theirs, still gets one.
#[tokio::test]
async fn another_address_cannot_use_up_a_members_reset_mails() {
    require_smtp();
    let acct = TestAccount::new("Arto", OLD);
    let mut c = Client::new(config());
    let since = SystemTime::now() - Duration::from_secs(1);
    c.peer = Some("192.0.2.66:40000".parse().unwrap());
    for _ in 0..5 {
        c.post("/forgot", "/forgot", &[("account", &acct.name)])
            .await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while mails_to(&acct.mail, since) < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await; // a 4th would have come by now
    assert_eq!(
        mails_to(&acct.mail, since),
        3,
        "mails sent to one address's asking"
    );
    c.peer = Some("198.51.100.7:40000".parse().unwrap());
    c.post("/forgot", "/forgot", &[("account", &acct.name)])
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while mails_to(&acct.mail, since) < 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        mails_to(&acct.mail, since),
        4,
        "the member's own request got no mail"
    );
}

#[tokio::test]
async fn reset_by_mail_end_to_end_single_use() {
    require_smtp();
    let acct = TestAccount::new("Vélobs", OLD);
    let mut cfg = config();
    cfg.public_url = "https://motdepasse.pic2.test".into();
    let mut c = Client::new(cfg);
    let since = SystemTime::now() - Duration::from_secs(1);
    let r = c
        .post("/forgot?lang=en", "/forgot", &[("account", &acct.name)])
        .await;
    assert!(r.body.contains("Check your mailbox"));
    let mail = wait_mail(&acct.mail, since).await;
    let link = reset_link(&mail);
    assert!(
        link.starts_with("https://motdepasse.pic2.test/reset?token="),
        "built from the public URL: {link}"
    );
    let path = link.trim_start_matches("https://motdepasse.pic2.test");
    // the link moves the token into a cookie and away from the address bar
    let r = c.get(path).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(r
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .any(|v| v.to_str().unwrap().starts_with("__Host-pic2pw_reset=")));
    let form = c.get("/reset").await;
    assert!(
        form.body.contains(&acct.name) && form.body.contains("at least 12"),
        "{}",
        form.body
    );
    let weak = c
        .post(
            "/reset",
            "/reset",
            &[("new", "vélobs vélobs"), ("again", "vélobs vélobs")],
        )
        .await;
    assert!(
        weak.body.contains("must not contain your name"),
        "{}",
        weak.body
    );
    let done = c
        .post("/reset", "/reset", &[("new", NEW), ("again", NEW)])
        .await;
    assert!(
        done.body.contains("Your new password is saved"),
        "{}",
        done.body
    );
    assert!(acct.binds_with(NEW) && !acct.binds_with(OLD));
    // used once: the same link no longer works
    c.get(path).await;
    assert!(c
        .get("/reset")
        .await
        .body
        .contains("This link no longer works"));
}

#[tokio::test]
async fn ssh_keys_add_list_refuse_and_remove() {
    require_ldap();
    let acct = TestAccount::new("Arto", OLD);
    let existing = random_ed25519("laptop");
    acct.set_keys(&[&existing]);
    let mut c = Client::new(config());
    assert!(c.get("/keys?lang=en").await.body.contains("Sign in"));
    let r = c
        .post(
            "/keys",
            "/keys/signin",
            &[("account", &acct.name), ("password", OLD)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let list = c.get("/keys").await;
    assert!(
        list.body.contains("laptop") && list.body.contains("SHA256:"),
        "{}",
        list.body
    );
    let new_key = random_ed25519("desktop");
    let r = c.post("/keys", "/keys/add", &[("key", &new_key)]).await;
    assert_eq!(r.headers.get(header::LOCATION).unwrap(), "/keys?done=added");
    assert!(c.get("/keys?done=added").await.body.contains("Key added"));
    assert_eq!(acct.keys().len(), 2);
    let dup = c
        .post(
            "/keys",
            "/keys/add",
            &[("key", &new_key.replace("desktop", "other comment"))],
        )
        .await;
    assert!(dup.body.contains("already there"), "{}", dup.body);
    let bad = c
        .post("/keys", "/keys/add", &[("key", "ssh-ed25519 AAAAnotakey")])
        .await;
    assert!(bad.body.contains("not a valid SSH public key"));
    let dsa = c.post("/keys", "/keys/add", &[("key", "ssh-dss AAAAB3NzaC1kc3MAAACBAP1/U4EddRIpUt9KnC7s5Of2EbdSPO9EAMMeP4C2USZpRV1AIlH7WT2NWPq/xfW6MPbLm1Vs14E7gB00b/JmYLdrmVClpJ+f6AR7ECLCT7up1/63xhv4O1fnxqimFQ8E+4P208UewwI1VBNaFpEy9nXzrith1yrv8iIDGZ3RSAHHAAAAFQCXYFCPFSMLzLKSuYKi64QL8Fgc9QAAAIEA9+GghdabPd7LvKtcNrhXuXmUr7v6OuqC+VdMCz0HgmdRWVeOutRZT+ZxBxCBgLRJFnEj6EwoFhO3zwkyjMim4TwWeotUfI0o4KOuHiuzpnWRbqN/C/ohNWLx+2J6ASQ7zKTxvqhRkImog9/hWuWfBpKLZl6Ae1UlZAFMO/7PSSoAAACBAOF4MQkBcGh+J2EjvsmdEOsd9S8ymlETeqT6e7WZpdhVL+HkxKhF7y2eHdeOzNelOnhMmPPhVnCxKF7+mrGCF5iYySWmDrmgCVyrlcANY6ROuBmkD+L5gTLcvTrYYpiK6B5rg2bZzMQPZjXZXgTIlA9grcTqRo8E9cyL8Q5LRtMr dsa")]).await;
    assert!(dsa.body.contains("DSA"), "{}", dsa.body);
    let r = c.post("/keys", "/keys/remove", &[("key", &existing)]).await;
    assert_eq!(
        r.headers.get(header::LOCATION).unwrap(),
        "/keys?done=removed"
    );
    let keys = acct.keys();
    assert_eq!(keys.len(), 1);
    assert!(keys[0].ends_with("desktop"));
    // signing out ends the session
    c.post("/keys", "/keys/signout", &[]).await;
    let csrf = c.get("/keys").await.csrf_field();
    let r = c
        .post_raw("/keys/add", &csrf, &[("key", &random_ed25519("x"))])
        .await;
    assert!(r.body.contains("Your session expired"), "{}", r.body);
    assert_eq!(acct.keys().len(), 1);
}

/// Guesses sent at once are counted as they start: of 20, only the free ones and the one that
/// sets the block are tried (counted after the directory's answer, all 20 were).
#[tokio::test]
async fn guesses_sent_at_once_cannot_pass_the_back_off_together() {
    let acct = TestAccount::new("Arto", OLD);
    let mut cfg = config();
    cfg.free_failures = 3;
    cfg.failure_floor = Duration::from_millis(200);
    let mut c = Client::new(cfg);
    let csrf = c.get("/keys").await.csrf_field();
    let tries: Vec<_> = (0..20)
        .map(|i| {
            let mut each = Client {
                state: c.state.clone(),
                jar: c.jar.clone(),
                peer: None,
            };
            let (name, csrf) = (acct.name.clone(), csrf.clone());
            tokio::spawn(async move {
                let guess = format!("guess {i}");
                let fields = [("account", name.as_str()), ("password", guess.as_str())];
                each.post_raw("/keys/signin", &csrf, &fields).await.status
            })
        })
        .collect();
    let mut tried = 0;
    for t in tries {
        if t.await.unwrap() == StatusCode::OK {
            tried += 1;
        }
    }
    assert_eq!(tried, 4, "guesses tried out of 20 sent at once");
}

/// Signing into one's own account does not clear the address's count: a member cannot
/// guess other accounts' passwords between sign-ins of their own.
#[tokio::test]
async fn a_success_does_not_clear_the_address_count() {
    let acct = TestAccount::new("Arto", OLD);
    let mut cfg = config();
    cfg.free_failures = 1; // 4 free per address
    cfg.failure_floor = Duration::from_millis(10);
    let mut c = Client::new(cfg);
    let sign_in = async |c: &mut Client, account: &str, password: &str| {
        let fields = [("account", account), ("password", password)];
        c.post("/keys", "/keys/signin", &fields).await.status
    };
    for i in 0..4 {
        let other = format!("pw-none-{i}");
        assert_eq!(sign_in(&mut c, &other, "guess").await, StatusCode::OK);
    }
    let own = sign_in(&mut c, &acct.name, OLD).await;
    assert_eq!(own, StatusCode::SEE_OTHER, "the member's own sign-in");
    c.jar.retain(|j| !j.contains("session"));
    assert_eq!(sign_in(&mut c, "pw-none-9", "guess").await, StatusCode::OK);
    assert_eq!(
        sign_in(&mut c, "pw-none-10", "guess").await,
        StatusCode::TOO_MANY_REQUESTS,
        "the address guessed on after its own sign-in"
    );
}

#[tokio::test]
async fn brute_force_is_throttled_per_account_with_back_off() {
    let acct = TestAccount::new("Arto", OLD);
    let mut cfg = config();
    cfg.free_failures = 3;
    cfg.failure_floor = Duration::from_millis(10);
    let mut c = Client::new(cfg);
    let mut statuses = Vec::new();
    for i in 0..5 {
        let r = c
            .post(
                "/keys",
                "/keys/signin",
                &[("account", &acct.name), ("password", &format!("guess {i}"))],
            )
            .await;
        statuses.push(r.status);
    }
    assert_eq!(&statuses[..3], &[StatusCode::OK; 3], "{statuses:?}");
    assert_eq!(statuses[4], StatusCode::TOO_MANY_REQUESTS, "{statuses:?}");
    // even the right password waits now, and the answer says how long
    let r = c
        .post(
            "/keys",
            "/keys/signin",
            &[("account", &acct.name), ("password", OLD)],
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers.get(header::RETRY_AFTER).is_some());
    assert!(r.body.contains("Trop de tentatives"));
}
