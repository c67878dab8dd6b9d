//! HTTP behaviour through `oneshot` (no socket): languages, headers, CSRF, not found.

use crate::support::{config, Client};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};

#[tokio::test]
async fn pages_follow_accept_language_and_the_switch() {
    let mut c = Client::new(config());
    let req = Request::get("/")
        .header(header::ACCEPT_LANGUAGE, "en-GB,en;q=0.9")
        .body(Body::empty())
        .unwrap();
    let en = c.send(req).await;
    assert_eq!(en.status, StatusCode::OK);
    assert!(en.body.contains("<html lang=\"en\">"), "{}", en.body);
    assert!(en.body.contains("Change my password"));
    let fr = c.get("/?lang=fr").await;
    assert!(fr.body.contains("Changer mon mot de passe"));
    assert!(fr.cookies().iter().any(|c| c == "pic2pw_lang=fr"));
    // the cookie now wins over the header
    let req = Request::get("/password")
        .header(header::ACCEPT_LANGUAGE, "en")
        .header(header::COOKIE, "pic2pw_lang=fr")
        .body(Body::empty())
        .unwrap();
    assert!(c.send(req).await.body.contains("Mot de passe actuel"));
    // no header, no cookie: French
    assert!(Client::new(config())
        .get("/forgot")
        .await
        .body
        .contains("Mot de passe oublié"));
}

#[tokio::test]
async fn every_answer_has_the_security_headers() {
    let mut c = Client::new(config());
    for path in ["/", "/password", "/forgot", "/reset", "/keys", "/nowhere"] {
        let r = c.get(path).await;
        let h = |n: &str| {
            r.headers
                .get(n)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default()
        };
        assert!(
            h("content-security-policy").contains("frame-ancestors 'none'"),
            "{path}"
        );
        assert!(
            h("content-security-policy").contains("default-src 'none'"),
            "{path}"
        );
        assert_eq!(h("referrer-policy"), "no-referrer", "{path}");
        assert_eq!(h("x-frame-options"), "DENY", "{path}");
        assert_eq!(h("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(h("cache-control"), "no-store", "{path}");
    }
    let r = c.get("/nowhere").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(
        r.body.contains("Cette page n'existe pas")
            || r.body.contains("Cette page n&#39;existe pas")
    );
}

#[tokio::test]
async fn cookies_are_http_only_and_secure_over_https() {
    let mut cfg = config();
    cfg.public_url = "https://motdepasse.example".into();
    let mut c = Client::new(cfg);
    let r = c.get("/").await;
    let raw: Vec<&str> = r
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(
        raw.iter().any(|c| c.starts_with("__Host-pic2pw_csrf=")),
        "{raw:?}"
    );
    assert!(
        raw.iter()
            .all(|c| c.contains("HttpOnly") && c.contains("Secure") && c.contains("Path=/")),
        "{raw:?}"
    );
    assert!(r.headers.get("strict-transport-security").is_some());
}

#[tokio::test]
async fn forms_without_the_right_csrf_value_are_rejected() {
    let mut c = Client::new(config());
    let fields = [
        ("account", "velobs"),
        ("current", "x"),
        ("new", "y"),
        ("again", "y"),
    ];
    // no cookie at all
    let r = c.post_raw("/password", "whatever", &fields).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // a cookie, but a forged value
    c.get("/password").await;
    let r = c.post_raw("/password", "forged", &fields).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("Rechargez la page"));
    // the right value from another origin
    let csrf = c.get("/password").await.csrf_field();
    let body =
        serde_urlencoded::to_string([("csrf", csrf.as_str()), ("account", "velobs")]).unwrap();
    let req = Request::post("/forgot")
        .header(header::COOKIE, c.jar.join("; "))
        .header(header::ORIGIN, "https://evil.example")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    assert_eq!(c.send(req).await.status, StatusCode::FORBIDDEN);
    // every form-handling route checks it
    for path in [
        "/forgot",
        "/reset",
        "/keys/signin",
        "/keys/add",
        "/keys/remove",
        "/keys/signout",
        "/strength",
    ] {
        assert_eq!(
            c.post_raw(path, "forged", &[]).await.status,
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
}

#[tokio::test]
async fn the_strength_endpoint_explains_in_the_page_language() {
    let mut c = Client::new(config());
    c.get("/password?lang=en").await;
    let r = c
        .post(
            "/password",
            "/strength",
            &[("account", "velobs"), ("password", "velobs2024")],
        )
        .await;
    let j: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let reasons = j["reasons"].as_array().unwrap();
    assert!(
        reasons
            .iter()
            .any(|r| r.as_str().unwrap().contains("at least 12")),
        "{j}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.as_str().unwrap().contains("account name")),
        "{j}"
    );
    let r = c
        .post(
            "/password",
            "/strength",
            &[("password", "plume tartine girafe orage")],
        )
        .await;
    let j: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert!(
        j["score"].as_u64().unwrap() >= 3 && j["reasons"].as_array().unwrap().is_empty(),
        "{j}"
    );
}

#[tokio::test]
async fn a_reset_page_without_a_valid_link_says_so() {
    let mut c = Client::new(config());
    let r = c
        .get("/reset?token=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.headers.get(header::LOCATION).unwrap(), "/reset");
    let r = c.get("/reset").await;
    assert!(r.body.contains("Ce lien ne fonctionne plus"));
}
