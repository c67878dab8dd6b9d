//! The real browser: headless Chromium driven over WebDriver (chromedriver from `dev/browser.sh`)
//! walks every page in French and English, submits the forms without help from the test, and
//! writes a screenshot of each page to `docs/passwd/`.

use crate::support::{
    config, random_ed25519, require, require_smtp, reset_link, wait_mail, TestAccount,
};
use fantoccini::{Client, ClientBuilder, Locator};
use pic2_passwd::AppState;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

const OLD: &str = "ancien mot de passe 1 Zèbre";

fn shots_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/passwd")
}

async fn browser(profile: &std::path::Path) -> Client {
    require("chromedriver", 9515, "dev/browser.sh");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "args": [
                "--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=1000,1000", "--lang=en-US",
                format!("--user-data-dir={}", profile.display()),
            ]
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect("http://127.0.0.1:9515")
        .await
        .expect("a WebDriver session from chromedriver on 127.0.0.1:9515 (dev/browser.sh start)")
}

async fn shot(c: &Client, name: &str) {
    c.execute(
        "window.scrollTo(0, 0); document.activeElement && document.activeElement.blur();",
        vec![],
    )
    .await
    .unwrap();
    let png = c.screenshot().await.unwrap();
    std::fs::create_dir_all(shots_dir()).unwrap();
    std::fs::write(shots_dir().join(format!("{name}.png")), png).unwrap();
}

async fn fill(c: &Client, css: &str, text: &str) {
    let e = c.find(Locator::Css(css)).await.unwrap();
    e.clear().await.unwrap();
    e.send_keys(text).await.unwrap();
}

/// Clicks the form's button and waits for the next page to replace this one.
async fn submit(c: &Client, form: &str) {
    let old = c.find(Locator::Css("html")).await.unwrap();
    c.find(Locator::Css(&format!("{form} button[type=submit]")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    for _ in 0..100 {
        if old.text().await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("submitting {form} did not load a new page");
}

async fn text(c: &Client) -> String {
    c.find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_in_both_languages_in_a_real_browser() {
    require_smtp();
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut cfg = config();
    cfg.public_url = base.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(pic2_passwd::serve(listener, AppState::new(cfg), async {
        let _ = stopped.await;
    }));
    let profile = tempfile::tempdir().unwrap();
    let c = browser(profile.path()).await;
    for (lang, changed, keys_added, sent, reset_done) in [
        (
            "fr",
            "Mot de passe changé",
            "Clé ajoutée",
            "Vérifiez votre messagerie",
            "Votre nouveau mot de passe est enregistré",
        ),
        (
            "en",
            "Password changed",
            "Key added",
            "Check your mailbox",
            "Your new password is saved",
        ),
    ] {
        let acct = TestAccount::new("Cyclistes Lyonnais", OLD);
        let new = format!("plume tartine girafe orage {lang}");
        c.goto(&format!("{base}/?lang={lang}")).await.unwrap();
        shot(&c, &format!("home-{lang}")).await;

        // change: a weak password first (refused with the reason), then a good one
        c.find(Locator::Css("a[href='/password']"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        fill(&c, "#account", &acct.name).await;
        fill(&c, "#current", OLD).await;
        fill(&c, "#new", "cyclistes du rhône").await;
        // the strength meter (JavaScript) explains as the user types
        let label = c.find(Locator::Css("#strength-label")).await.unwrap();
        let mut shown = String::new();
        for _ in 0..50 {
            shown = label.text().await.unwrap();
            if !shown.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(!shown.is_empty(), "the strength meter did not answer");
        fill(&c, "#again", "cyclistes du rhône").await;
        shot(&c, &format!("password-{lang}")).await;
        submit(&c, "#password-form").await;
        let page = text(&c).await;
        assert!(
            page.contains("Cyclistes") || page.contains("nom") || page.contains("name"),
            "{page}"
        );
        shot(&c, &format!("password-refused-{lang}")).await;
        fill(&c, "#current", OLD).await;
        fill(&c, "#new", &new).await;
        fill(&c, "#again", &new).await;
        submit(&c, "#password-form").await;
        assert!(text(&c).await.contains(changed));
        shot(&c, &format!("password-changed-{lang}")).await;
        assert!(acct.binds_with(&new) && !acct.binds_with(OLD));

        // SSH keys
        acct.set_keys(&[&random_ed25519("laptop@home")]);
        c.goto(&format!("{base}/keys")).await.unwrap();
        shot(&c, &format!("keys-signin-{lang}")).await;
        fill(&c, "#account", &acct.name).await;
        fill(&c, "#password", &new).await;
        submit(&c, "main").await;
        fill(&c, "#key", &random_ed25519("desktop@office")).await;
        submit(&c, "form[action='/keys/add']").await;
        assert!(text(&c).await.contains(keys_added));
        shot(&c, &format!("keys-{lang}")).await;
        assert_eq!(acct.keys().len(), 2);
        submit(&c, "form[action='/keys/remove']").await;
        assert_eq!(acct.keys().len(), 1);

        // forgotten password, by mail
        c.goto(&format!("{base}/forgot")).await.unwrap();
        shot(&c, &format!("forgot-{lang}")).await;
        let since = SystemTime::now() - Duration::from_secs(1);
        fill(&c, "#account", &acct.name).await;
        submit(&c, "main").await;
        assert!(text(&c).await.contains(sent));
        shot(&c, &format!("forgot-sent-{lang}")).await;
        let link = reset_link(&wait_mail(&acct.mail, since).await);
        c.goto(&link).await.unwrap();
        assert_eq!(
            c.current_url().await.unwrap().as_str(),
            format!("{base}/reset"),
            "the token leaves the address bar"
        );
        shot(&c, &format!("reset-{lang}")).await;
        let newer = format!("cerf-volant ardoise moulin {lang} 9");
        fill(&c, "#new", &newer).await;
        fill(&c, "#again", &newer).await;
        submit(&c, "#password-form").await;
        assert!(text(&c).await.contains(reset_done));
        shot(&c, &format!("reset-done-{lang}")).await;
        assert!(acct.binds_with(&newer));
        c.goto(&link).await.unwrap();
        shot(&c, &format!("reset-invalid-{lang}")).await;
    }
    c.close().await.unwrap();
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
