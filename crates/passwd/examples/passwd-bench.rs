//! The benchmark driver behind `bench/passwd/run.sh`: the change flow through the application
//! (GET the form, POST the change) against raw LDAP (bind + Password Modify) on the same
//! accounts, in the same run, with the same concurrency; prints requests/s and percentiles.
//!
//! `passwd-bench APP_URL ACCOUNTS ROUNDS CONCURRENCY` — accounts `pw-bench-N` are created
//! (and deleted at the end) through the admin bind. Traffic goes to 127.0.0.1 only.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use ldap3::exop::PasswordModify;
use ldap3::{LdapConnAsync, Scope};
use std::collections::HashSet;
use std::time::{Duration, Instant};

const LDAP: &str = "ldap://127.0.0.1:3389";
const BASE: &str = "dc=pic2,dc=test";

fn pw(i: usize, round: usize) -> String {
    format!(
        "bench horse battery staple {i} {}",
        if round.is_multiple_of(2) {
            "alpha"
        } else {
            "bravo"
        }
    )
}

async fn admin() -> ldap3::Ldap {
    let dev = std::env::var("PIC2_DEV_DIR").unwrap_or_else(|_| "/var/lib/pic2-dev".into());
    let secret =
        pic2_systems::secret::read(format!("{dev}/secrets/ldap-admin.secret").as_ref()).unwrap();
    let (conn, mut ldap) = LdapConnAsync::new(LDAP).await.unwrap();
    ldap3::drive!(conn);
    ldap.simple_bind(&format!("cn=admin,{BASE}"), &secret)
        .await
        .unwrap()
        .success()
        .unwrap();
    ldap
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn report(name: &str, mut lat: Vec<Duration>, wall: Duration) {
    lat.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<28} n={:<5} {:>7.1} req/s  p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms",
        lat.len(),
        lat.len() as f64 / wall.as_secs_f64(),
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99)),
        ms(*lat.last().unwrap())
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let app = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:8091".into());
    let accounts: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(8);
    let rounds: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(20);
    let conc: usize = args
        .get(4)
        .and_then(|s| s.parse().ok())
        .unwrap_or(4)
        .min(accounts);
    let deadline = Instant::now() + Duration::from_secs(120);

    // accounts
    let mut ad = admin().await;
    let _ = ad
        .add(
            &format!("ou=people,{BASE}"),
            vec![
                ("objectClass", HashSet::from(["organizationalUnit"])),
                ("ou", HashSet::from(["people"])),
            ],
        )
        .await;
    let names: Vec<String> = (0..accounts).map(|i| format!("pw-bench-{i}")).collect();
    for (i, n) in names.iter().enumerate() {
        let dn = format!("uid={n},ou=people,{BASE}");
        let _ = ad.delete(&dn).await;
        let uid = (65_000 + i).to_string();
        ad.add(
            &dn,
            vec![
                (
                    "objectClass",
                    HashSet::from(["inetOrgPerson", "posixAccount", "shadowAccount"]),
                ),
                ("uid", HashSet::from([n.as_str()])),
                ("cn", HashSet::from(["Quokka"])),
                ("sn", HashSet::from(["Quokka"])),
                ("uidNumber", HashSet::from([uid.as_str()])),
                ("gidNumber", HashSet::from([uid.as_str()])),
                ("homeDirectory", HashSet::from(["/nonexistent"])),
            ],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
        let p = pw(i, 0);
        ad.extended(PasswordModify {
            user_id: Some(&dn),
            old_pass: None,
            new_pass: Some(&p),
        })
        .await
        .unwrap()
        .success()
        .unwrap();
    }
    let _ = ad
        .search(BASE, Scope::Base, "(objectClass=*)", vec!["dn"])
        .await;

    // raw LDAP: connect, bind as the user, Password Modify, unbind (what the app does per change)
    let mut round = 0usize;
    let raw_start = Instant::now();
    let mut raw = Vec::new();
    for _ in 0..rounds {
        if Instant::now() > deadline {
            break;
        }
        let mut tasks = Vec::new();
        for w in 0..conc {
            let slice: Vec<usize> = (w..accounts).step_by(conc).collect();
            let r = round;
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for i in slice {
                    let dn = format!("uid=pw-bench-{i},ou=people,{BASE}");
                    let t = Instant::now();
                    let (conn, mut ldap) = LdapConnAsync::new(LDAP).await.unwrap();
                    ldap3::drive!(conn);
                    ldap.simple_bind(&dn, &pw(i, r))
                        .await
                        .unwrap()
                        .success()
                        .unwrap();
                    let new = pw(i, r + 1);
                    ldap.extended(PasswordModify {
                        user_id: None,
                        old_pass: Some(&pw(i, r)),
                        new_pass: Some(&new),
                    })
                    .await
                    .unwrap()
                    .success()
                    .unwrap();
                    let _ = ldap.unbind().await;
                    out.push(t.elapsed());
                }
                out
            }));
        }
        for t in tasks {
            raw.extend(t.await.unwrap());
        }
        round += 1;
    }
    let raw_wall = raw_start.elapsed();

    // the application: GET /password (form, anti-CSRF cookie) then POST /password
    let client: Client<_, Full<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let app_start = Instant::now();
    let mut post_lat = Vec::new();
    let mut flow_lat = Vec::new();
    for _ in 0..rounds {
        if Instant::now() > deadline {
            break;
        }
        let mut tasks = Vec::new();
        for w in 0..conc {
            let slice: Vec<usize> = (w..accounts).step_by(conc).collect();
            let (client, app, r) = (client.clone(), app.clone(), round);
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for i in slice {
                    let t = Instant::now();
                    let res = client
                        .get(format!("{app}/password").parse().unwrap())
                        .await
                        .unwrap();
                    let cookie = res
                        .headers()
                        .get("set-cookie")
                        .unwrap()
                        .to_str()
                        .unwrap()
                        .split(';')
                        .next()
                        .unwrap()
                        .to_string();
                    let body = String::from_utf8(
                        res.into_body().collect().await.unwrap().to_bytes().to_vec(),
                    )
                    .unwrap();
                    let at = body.find("name=\"csrf\" value=\"").unwrap() + 19;
                    let csrf = &body[at..at + body[at..].find('"').unwrap()];
                    let (old, new) = (pw(i, r), pw(i, r + 1));
                    let form = serde_urlencoded::to_string([
                        ("csrf", csrf),
                        ("account", &format!("pw-bench-{i}")),
                        ("current", &old),
                        ("new", &new),
                        ("again", &new),
                    ])
                    .unwrap();
                    let req = hyper::Request::post(format!("{app}/password"))
                        .header("cookie", cookie)
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(Full::from(form))
                        .unwrap();
                    let tp = Instant::now();
                    let res = client.request(req).await.unwrap();
                    let status = res.status();
                    let body = res.into_body().collect().await.unwrap().to_bytes();
                    let post = tp.elapsed();
                    assert!(
                        status.is_success()
                            && String::from_utf8_lossy(&body).contains("Mot de passe changé"),
                        "change {i} failed: {status}"
                    );
                    out.push((post, t.elapsed()));
                }
                out
            }));
        }
        for t in tasks {
            for (p, f) in t.await.unwrap() {
                post_lat.push(p);
                flow_lat.push(f);
            }
        }
        round += 1;
    }
    let app_wall = app_start.elapsed();

    println!("concurrency {conc}, {accounts} accounts, {rounds} rounds each (slapd {{ARGON2}}, 127.0.0.1)");
    let raw_p99 = {
        let mut v = raw.clone();
        v.sort();
        percentile(&v, 0.99)
    };
    let app_p99 = {
        let mut v = post_lat.clone();
        v.sort();
        percentile(&v, 0.99)
    };
    report("raw LDAP bind+PasswordModify", raw, raw_wall);
    report("app POST /password", post_lat, app_wall);
    report("app GET form + POST", flow_lat, app_wall);
    println!(
        "p99 ratio app POST / raw LDAP: {:.2}x (target <= 1.5x)",
        app_p99.as_secs_f64() / raw_p99.as_secs_f64()
    );

    for n in &names {
        let _ = ad.delete(&format!("uid={n},ou=people,{BASE}")).await;
    }
    let _ = ad.unbind().await;
}
