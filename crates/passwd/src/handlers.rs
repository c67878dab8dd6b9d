//! The routes' handlers: each checks the limits, calls the directory, picks a page.

use crate::i18n::Lang;
use crate::ldap::DirError;
use crate::pages::{KeyView, Notice};
use crate::policy::{self, Reason};
use crate::web::{cookie_name, see_other, set_cookie, AppError, CheckedForm, Ctx};
use crate::AppState;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;
use std::collections::HashMap;
use tokio::time::Instant;
use zeroize::Zeroizing;

type Result<T = Response> = std::result::Result<T, AppError>;

fn html(m: maud::Markup) -> Response {
    Html(m.into_string()).into_response()
}

pub async fn home(State(s): State<AppState>, Extension(ctx): Extension<Ctx>) -> Response {
    html(s.page(&ctx).home())
}

pub async fn change_form(State(s): State<AppState>, Extension(ctx): Extension<Ctx>) -> Response {
    html(s.page(&ctx).change("", None))
}

#[derive(Deserialize)]
pub struct ChangeForm {
    account: String,
    current: Zeroizing<String>,
    new: Zeroizing<String>,
    again: Zeroizing<String>,
}

pub async fn change(
    State(s): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CheckedForm(f): CheckedForm<ChangeForm>,
) -> Result {
    let account = f.account.trim();
    let page = s.page(&ctx);
    if *f.new != *f.again {
        let notice = s.refusal(ctx.lang, &[Reason::Mismatch]);
        return Ok(html(page.change(account, Some(&notice))));
    }
    let mut user = match s.sign_in(&ctx, account, &f.current).await? {
        Some(user) => user,
        None => {
            let notice = Notice::Error(vec![ctx.lang.t().bad_credentials.into()]);
            return Ok(html(page.change(account, Some(&notice))));
        }
    };
    let person = user.read_self().await?;
    let reasons = policy::check(&f.new, account, &person.full_name, s.config.min_length);
    if !reasons.is_empty() {
        user.close().await;
        return Ok(html(
            page.change(account, Some(&s.refusal(ctx.lang, &reasons))),
        ));
    }
    let changed = user.change_password(&f.current, &f.new).await;
    user.close().await;
    match changed {
        Ok(()) => {}
        Err(DirError::Refused(why)) => {
            tracing::info!(account, cause = %why, "password change refused by the directory");
            return Ok(html(
                page.change(account, Some(&s.refusal(ctx.lang, &[Reason::Weak]))),
            ));
        }
        Err(e) => return Err(e.into()),
    }
    // a reset link sent before would set the password back to the sender's choice
    s.tokens.void(account);
    s.audit("password-changed", account, &ctx);
    s.notify_changed(ctx.lang, account, person.mail, &ctx);
    Ok(html(page.changed()))
}

pub async fn forgot_form(State(s): State<AppState>, Extension(ctx): Extension<Ctx>) -> Response {
    html(s.page(&ctx).forgot(None))
}

#[derive(Deserialize)]
pub struct ForgotForm {
    account: String,
}

/// The same page, at once, whatever the account: the look-up and the mail happen after the
/// answer, in a task of their own.
pub async fn forgot(
    State(s): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CheckedForm(f): CheckedForm<ForgotForm>,
) -> Result {
    let address = crate::limiter::address_key(ctx.addr);
    s.forgot_by_address
        .check(&address)
        .map_err(AppError::Throttled)?;
    s.forgot_by_address.fail(&address);
    let account = f.account.trim().to_string();
    let state = s.clone();
    let lang = ctx.lang;
    let ctx2 = ctx.clone();
    tokio::spawn(async move { state.send_reset_link(lang, account, &ctx2).await });
    Ok(html(s.page(&ctx).sent()))
}

#[derive(Deserialize)]
pub struct ResetQuery {
    token: Option<String>,
}

/// `GET /reset?token=…` moves the token into a cookie and redirects, so the address bar, the
/// history and any later Referer hold no token; `GET /reset` shows the form.
pub async fn reset_form(
    State(s): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<ResetQuery>,
) -> Response {
    if let Some(token) = q.token.filter(|t| {
        t.len() == 43
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }) {
        let mut res = see_other("/reset");
        let ttl = s.config.reset_ttl.as_secs();
        res.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(&s, "pic2pw_reset", &token, "Lax", Some(ttl)),
        );
        return res;
    }
    let page = s.page(&ctx);
    match ctx
        .cookie(&cookie_name(&s, "pic2pw_reset"))
        .and_then(|t| s.tokens.peek(t))
    {
        Some(link) => html(page.reset(&link.account, None)),
        None => html(page.reset_invalid()),
    }
}

#[derive(Deserialize)]
pub struct ResetForm {
    new: Zeroizing<String>,
    again: Zeroizing<String>,
}

pub async fn reset(
    State(s): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CheckedForm(f): CheckedForm<ResetForm>,
) -> Result {
    let address = crate::limiter::address_key(ctx.addr);
    s.by_address.check(&address).map_err(AppError::Throttled)?;
    let page = s.page(&ctx);
    let token = ctx
        .cookie(&cookie_name(&s, "pic2pw_reset"))
        .unwrap_or_default()
        .to_string();
    let Some(link) = s.tokens.peek(&token) else {
        s.by_address.fail(&address);
        return Ok(html(page.reset_invalid()));
    };
    let mut reasons = policy::check(&f.new, &link.account, &link.full_name, s.config.min_length);
    if *f.new != *f.again {
        reasons.insert(0, Reason::Mismatch);
    }
    if !reasons.is_empty() {
        return Ok(html(
            page.reset(&link.account, Some(&s.refusal(ctx.lang, &reasons))),
        ));
    }
    let Some(taken) = s.tokens.take(&token) else {
        return Ok(html(page.reset_invalid()));
    };
    let link = taken.link().clone();
    match s.dir.reset_password(&link.account, &f.new).await {
        Ok(()) => s.tokens.void(&link.account),
        Err(e) => {
            s.tokens.put_back(taken);
            if let DirError::Refused(why) = &e {
                tracing::info!(account = link.account, cause = %why, "password reset refused by the directory");
                return Ok(html(page.reset(
                    &link.account,
                    Some(&s.refusal(ctx.lang, &[Reason::Weak])),
                )));
            }
            return Err(e.into());
        }
    }
    // the member proved they hold the account's mail: a block on its sign-in goes
    s.by_account.succeed(&link.account.to_lowercase());
    s.audit("password-reset", &link.account, &ctx);
    s.notify_changed(ctx.lang, &link.account, link.mail.clone(), &ctx);
    let mut res = html(page.reset_done());
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&s, "pic2pw_reset", "", "Lax", Some(0)),
    );
    Ok(res)
}

pub async fn keys(
    State(s): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<HashMap<String, String>>,
) -> Result {
    let page = s.page(&ctx);
    let Some((account, password)) = s.session(&ctx) else {
        return Ok(html(page.keys_signin("", None)));
    };
    let t = ctx.lang.t();
    let notice = match q.get("done").map(String::as_str) {
        Some("added") => Some(Notice::Info(t.key_added.into())),
        Some("removed") => Some(Notice::Info(t.key_removed.into())),
        _ => None,
    };
    let Some(mut user) = s.rebind(&account, &password).await? else {
        return Ok(html(page.keys_signin(
            &account,
            Some(&Notice::Error(vec![t.session_expired.into()])),
        )));
    };
    let person = user.read_self().await?;
    user.close().await;
    Ok(html(page.keys(
        &account,
        &key_views(&person.ssh_keys),
        notice.as_ref(),
        "",
    )))
}

#[derive(Deserialize)]
pub struct SignInForm {
    account: String,
    password: Zeroizing<String>,
}

pub async fn keys_signin(
    State(s): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CheckedForm(f): CheckedForm<SignInForm>,
) -> Result {
    let account = f.account.trim();
    match s.sign_in(&ctx, account, &f.password).await? {
        Some(user) => {
            user.close().await;
            let id = s
                .sessions
                .create(account, &f.password)
                .ok_or_else(|| AppError::Unavailable("session table full".into()))?;
            s.audit("signed-in", account, &ctx);
            let mut res = see_other("/keys");
            // no Max-Age: the session's end is the server's (idle time), which a fixed
            // cookie age would cut short for a member still at work
            res.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(&s, "pic2pw_session", &id, "Strict", None),
            );
            Ok(res)
        }
        None => {
            let notice = Notice::Error(vec![ctx.lang.t().bad_credentials.into()]);
            Ok(html(s.page(&ctx).keys_signin(account, Some(&notice))))
        }
    }
}

#[derive(Deserialize)]
pub struct KeyForm {
    key: String,
}

pub async fn keys_add(
    State(s): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CheckedForm(f): CheckedForm<KeyForm>,
) -> Result {
    let t = ctx.lang.t();
    let page = s.page(&ctx);
    let (account, mut user) = match s.session_user(&ctx).await? {
        Ok(signed_in) => signed_in,
        Err(sign_in_again) => return Ok(sign_in_again),
    };
    let person = user.read_self().await?;
    let refuse = |msg: &str| {
        html(page.keys(
            &account,
            &key_views(&person.ssh_keys),
            Some(&Notice::Error(vec![msg.into()])),
            &f.key,
        ))
    };
    let one_line = f.key.split_whitespace().collect::<Vec<_>>().join(" ");
    let key = match pic2_inventory::SshKey::parse(&one_line, pic2_inventory::Span::default()) {
        Ok(k) => k,
        Err(d) => {
            user.close().await;
            let msg = if d.message.contains("DSA") {
                t.key_dsa
            } else if d.message.contains("RSA keys need") {
                t.key_rsa_short
            } else {
                t.key_invalid
            };
            return Ok(refuse(msg));
        }
    };
    let duplicate = person.ssh_keys.iter().any(|line| bare(line) == key.key);
    if duplicate {
        user.close().await;
        return Ok(refuse(t.key_duplicate));
    }
    let added = user.add_key(&key.to_line()).await;
    user.close().await;
    added?;
    s.audit_with("ssh-key-added", &account, &ctx, &fingerprint(&key.key));
    Ok(see_other("/keys?done=added"))
}

pub async fn keys_remove(
    State(s): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CheckedForm(f): CheckedForm<KeyForm>,
) -> Result {
    let (account, mut user) = match s.session_user(&ctx).await? {
        Ok(signed_in) => signed_in,
        Err(sign_in_again) => return Ok(sign_in_again),
    };
    let person = user.read_self().await?;
    // Only a value the entry holds can be removed (so the form cannot name anything else).
    let Some(line) = person.ssh_keys.iter().find(|l| **l == f.key) else {
        user.close().await;
        return Ok(see_other("/keys"));
    };
    let removed = user.remove_key(line).await;
    user.close().await;
    removed?;
    s.audit_with("ssh-key-removed", &account, &ctx, &fingerprint(&bare(line)));
    Ok(see_other("/keys?done=removed"))
}

#[derive(Deserialize)]
pub struct Empty {}

pub async fn keys_signout(
    State(s): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CheckedForm(_): CheckedForm<Empty>,
) -> Response {
    if let Some(id) = ctx.cookie(&cookie_name(&s, "pic2pw_session")) {
        s.sessions.remove(id);
    }
    let mut res = see_other("/keys");
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&s, "pic2pw_session", "", "Strict", Some(0)),
    );
    res
}

#[derive(Deserialize)]
pub struct StrengthForm {
    #[serde(default)]
    account: String,
    password: Zeroizing<String>,
}

/// The strength meter's server side (the page works without it): score and reasons, in the
/// page's language, for the password being typed. Nothing is logged or kept.
pub async fn strength(
    State(s): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    CheckedForm(f): CheckedForm<StrengthForm>,
) -> Result {
    let address = crate::limiter::address_key(ctx.addr);
    s.strength_by_address
        .check(&address)
        .map_err(AppError::Throttled)?;
    s.strength_by_address.fail(&address);
    // One estimate at a time, on the blocking pool, each followed by a pause as long as it
    // took: crafted passwords from many /64s (600 an hour each) could otherwise take every
    // CPU of the host, the page's live meter being open to anyone with a form cookie. At
    // most half a core; an ordinary estimate takes a millisecond or two. The turn is held by
    // a task of its own, not by this request: a client that hangs up does not free it while
    // its estimate still runs.
    static ESTIMATES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);
    let Ok(Ok(turn)) =
        tokio::time::timeout(std::time::Duration::from_millis(500), ESTIMATES.acquire()).await
    else {
        return Err(AppError::Throttled(std::time::Duration::from_secs(1)));
    };
    let account = f.account.trim().to_string();
    let min_length = s.config.min_length;
    let estimate = tokio::spawn(async move {
        let _turn = turn;
        let started = Instant::now();
        let assessed = tokio::task::spawn_blocking(move || {
            policy::assess(&f.password, &account, "", min_length)
        })
        .await;
        tokio::time::sleep(started.elapsed()).await;
        assessed
    });
    let (score, reasons) = match estimate.await {
        Ok(Ok(assessed)) => assessed,
        _ => return Err(AppError::Unavailable("the strength estimate failed".into())),
    };
    let reasons: Vec<String> = reasons.into_iter().map(|r| ctx.lang.reason(r)).collect();
    let body = serde_json::json!({ "score": score, "reasons": reasons });
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response())
}

pub async fn style() -> Response {
    static_file("text/css", include_str!("../static/style.css"))
}

pub async fn script() -> Response {
    static_file("text/javascript", include_str!("../static/strength.js"))
}

fn static_file(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

pub async fn not_found() -> AppError {
    AppError::NotFound
}

/// `type base64` of a stored line (its comment dropped).
fn bare(line: &str) -> String {
    line.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn fingerprint(bare_key: &str) -> String {
    ssh_key::PublicKey::from_openssh(bare_key)
        .map(|k| k.fingerprint(ssh_key::HashAlg::Sha256).to_string())
        .unwrap_or_else(|_| "?".into())
}

fn key_views(lines: &[String]) -> Vec<KeyView> {
    let mut out: Vec<KeyView> = lines
        .iter()
        .map(|line| {
            let mut parts = line.split_whitespace();
            let algorithm = parts.next().unwrap_or_default().to_string();
            let _key = parts.next();
            let comment = parts.collect::<Vec<_>>().join(" ");
            KeyView {
                algorithm,
                comment,
                fingerprint: fingerprint(&bare(line)),
                line: line.clone(),
            }
        })
        .collect();
    out.sort_by(|a, b| a.comment.cmp(&b.comment));
    out
}

impl AppState {
    /// Binds as the account, under the limits: `Ok(None)` for a wrong name or password (after
    /// the same minimum time either way), `Err(Throttled)` while blocked.
    ///
    /// Each try is counted against the address and the account as it starts, and given back
    /// if it succeeds (the address's alone: a success clears the account, but an address
    /// that signs into its own account must not be free to go on guessing others').
    async fn sign_in(
        &self,
        ctx: &Ctx,
        account: &str,
        password: &str,
    ) -> Result<Option<crate::ldap::UserSession>> {
        let start = Instant::now();
        let address = crate::limiter::address_key(ctx.addr);
        let account_key = account.to_lowercase();
        self.by_address
            .attempt(&address)
            .map_err(AppError::Throttled)?;
        if let Err(wait) = self.by_account.attempt(&account_key) {
            self.by_address.refund(&address);
            return Err(AppError::Throttled(wait));
        }
        let bound = if policy::valid_account_name(account) {
            self.dir.bind_user(account, password).await
        } else {
            Err(DirError::BadCredentials)
        };
        match bound {
            Ok(user) => {
                self.by_address.refund(&address);
                self.by_account.succeed(&account_key);
                Ok(Some(user))
            }
            Err(DirError::BadCredentials) => {
                self.audit("sign-in-failed", account, ctx);
                tokio::time::sleep_until(start + self.config.failure_floor).await;
                Ok(None)
            }
            Err(e) => {
                // the directory could not answer: not the client's failure
                self.by_address.refund(&address);
                self.by_account.refund(&account_key);
                Err(e.into())
            }
        }
    }

    fn session(&self, ctx: &Ctx) -> Option<(String, Zeroizing<String>)> {
        self.sessions
            .get(ctx.cookie(&cookie_name(self, "pic2pw_session"))?)
    }

    /// The signed-in account and its connection, bound again with the session's password; or
    /// the sign-in page saying the session has expired (no session, or a password changed since).
    async fn session_user(
        &self,
        ctx: &Ctx,
    ) -> Result<std::result::Result<(String, crate::ldap::UserSession), Response>> {
        let t = ctx.lang.t();
        let expired = |account: &str| {
            let notice = Notice::Error(vec![t.session_expired.into()]);
            html(self.page(ctx).keys_signin(account, Some(&notice)))
        };
        let Some((account, password)) = self.session(ctx) else {
            return Ok(Err(expired("")));
        };
        match self.rebind(&account, &password).await? {
            Some(user) => Ok(Ok((account, user))),
            None => Ok(Err(expired(&account))),
        }
    }

    /// Binds again with a session's password; `None` if it no longer works (changed since).
    async fn rebind(
        &self,
        account: &str,
        password: &str,
    ) -> Result<Option<crate::ldap::UserSession>> {
        match self.dir.bind_user(account, password).await {
            Ok(u) => Ok(Some(u)),
            Err(DirError::BadCredentials) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn refusal(&self, lang: Lang, reasons: &[Reason]) -> Notice {
        Notice::Error(reasons.iter().map(|r| lang.reason(*r)).collect())
    }
}
