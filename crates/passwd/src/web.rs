//! The HTTP plumbing shared by every handler: the request context (language, client address,
//! anti-CSRF cookie), the checked form extractor, the one error type, security headers.

use crate::i18n::Lang;
use crate::AppState;
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequest, Request};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use sha2::Sha256;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use subtle::ConstantTimeEq;

/// Per-request facts, put in the request's extensions by [`context`].
#[derive(Clone, Debug)]
pub struct Ctx {
    pub lang: Lang,
    /// The client: the peer, or the last `X-Forwarded-For` hop when the peer is the local proxy.
    pub addr: IpAddr,
    /// This browser's anti-CSRF cookie value.
    pub csrf_cookie: String,
    /// The value forms carry: an HMAC of the cookie under the process's key.
    pub csrf_field: String,
    pub cookies: Vec<(String, String)>,
}

impl Ctx {
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

pub fn cookie_name(state: &AppState, base: &str) -> String {
    if state.config.secure() {
        format!("__Host-{base}")
    } else {
        base.to_string()
    }
}

/// A `Set-Cookie` value: HttpOnly always, Secure over HTTPS, `max_age` 0 deletes it.
pub fn set_cookie(
    state: &AppState,
    base: &str,
    value: &str,
    same_site: &str,
    max_age: Option<u64>,
) -> HeaderValue {
    let mut c = format!(
        "{}={value}; Path=/; HttpOnly; SameSite={same_site}",
        cookie_name(state, base)
    );
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if state.config.secure() {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
}

fn parse_cookies(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn csrf_mac(key: &[u8; 32], cookie: &str) -> String {
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(cookie.as_bytes());
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

fn client_addr(req: &Request) -> IpAddr {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| {
            c.0.ip().to_canonical()
        });
    // a dual-stack listener sees the local proxy as ::ffff:127.0.0.1
    if !peer.is_loopback() {
        return peer;
    }
    req.headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(peer)
}

/// The middleware around every route: builds [`Ctx`], sets the language and anti-CSRF cookies
/// when needed, renders [`AppError`]s as pages in the user's language, adds security headers.
pub async fn context(
    state: axum::extract::State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let cookies = parse_cookies(req.headers());
    let find = |name: &str| {
        cookies
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    };
    let query_lang = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("lang=")))
        .and_then(Lang::parse);
    let lang_cookie = cookie_name(&state, "pic2pw_lang");
    let lang = query_lang
        .or_else(|| find(&lang_cookie).as_deref().and_then(Lang::parse))
        .or_else(|| {
            req.headers()
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok())
                .and_then(Lang::from_accept_language)
        })
        .unwrap_or(Lang::Fr);
    let csrf_name = cookie_name(&state, "pic2pw_csrf");
    let existing = find(&csrf_name).filter(|v| v.len() == 43);
    let csrf_cookie = existing.clone().unwrap_or_else(crate::store::random_token);
    let ctx = Ctx {
        lang,
        addr: client_addr(&req),
        csrf_field: csrf_mac(&state.csrf_key, &csrf_cookie),
        csrf_cookie: csrf_cookie.clone(),
        cookies,
    };
    req.extensions_mut().insert(ctx.clone());
    let mut res = next.run(req).await;
    if let Some(err) = res.extensions_mut().remove::<ErrorInfo>() {
        res = render_error(&state, &ctx, &err);
    }
    let h = res.headers_mut();
    if existing.is_none() {
        h.append(
            header::SET_COOKIE,
            set_cookie(&state, "pic2pw_csrf", &csrf_cookie, "Strict", None),
        );
    }
    if let Some(l) = query_lang {
        h.append(
            header::SET_COOKIE,
            set_cookie(&state, "pic2pw_lang", l.code(), "Lax", Some(31_536_000)),
        );
    }
    security_headers(&state, h);
    res
}

fn security_headers(state: &AppState, h: &mut HeaderMap) {
    let set = |h: &mut HeaderMap, name: &'static str, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(h, "content-security-policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'");
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "no-referrer");
    set(h, "x-content-type-options", "nosniff");
    set(h, "cross-origin-opener-policy", "same-origin");
    set(h, "cross-origin-resource-policy", "same-origin");
    set(
        h,
        "permissions-policy",
        "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, "cache-control", "no-store");
    }
    if state.config.secure() {
        set(h, "strict-transport-security", "max-age=31536000");
    }
}

/// A form whose anti-CSRF field matches this browser's cookie, posted from our own origin.
pub struct CheckedForm<T>(pub T);

#[derive(Deserialize)]
struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

impl<T: DeserializeOwned + Send> FromRequest<AppState> for CheckedForm<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, AppError> {
        let ctx = req
            .extensions()
            .get::<Ctx>()
            .cloned()
            .ok_or(AppError::Csrf)?;
        let had_cookie = ctx.cookie(&cookie_name(state, "pic2pw_csrf")).is_some();
        // Browsers send `Origin: null` for form posts under `Referrer-Policy: no-referrer`;
        // `Sec-Fetch-Site`, which pages cannot forge, then says where the post came from.
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok());
        let origin_ok = match origin {
            Some("null") | None => true,
            Some(origin) => origin == state.config.public_origin(),
        };
        let fetch_site = req
            .headers()
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok());
        let site_ok = !matches!(fetch_site, Some("cross-site" | "same-site"));
        let bytes = axum::body::to_bytes(req.into_body(), 64 * 1024)
            .await
            .map_err(|_| AppError::BadRequest)?;
        let field: CsrfOnly = serde_urlencoded::from_bytes(&bytes).map_err(|_| AppError::Csrf)?;
        let matches: bool = field
            .csrf
            .as_bytes()
            .ct_eq(ctx.csrf_field.as_bytes())
            .into();
        if !(had_cookie && origin_ok && site_ok && matches) {
            return Err(AppError::Csrf);
        }
        serde_urlencoded::from_bytes(&bytes)
            .map(CheckedForm)
            .map_err(|_| AppError::BadRequest)
    }
}

/// Everything that can go wrong in a handler; the public message is generic, the cause is
/// logged (it never holds a password or a token).
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("anti-CSRF check failed")]
    Csrf,
    #[error("malformed request")]
    BadRequest,
    #[error("too many attempts; retry in {0:?}")]
    Throttled(Duration),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Unavailable(String),
}

impl From<crate::ldap::DirError> for AppError {
    fn from(e: crate::ldap::DirError) -> Self {
        AppError::Unavailable(e.to_string())
    }
}

#[derive(Clone, Debug)]
struct ErrorInfo {
    status: StatusCode,
    retry_after: Option<u64>,
    cause: String,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, retry_after) = match &self {
            AppError::Csrf => (StatusCode::FORBIDDEN, None),
            AppError::BadRequest => (StatusCode::BAD_REQUEST, None),
            AppError::Throttled(d) => (StatusCode::TOO_MANY_REQUESTS, Some(d.as_secs().max(1))),
            AppError::NotFound => (StatusCode::NOT_FOUND, None),
            AppError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, None),
        };
        let mut res = status.into_response();
        res.extensions_mut().insert(ErrorInfo {
            status,
            retry_after,
            cause: self.to_string(),
        });
        res
    }
}

fn render_error(state: &AppState, ctx: &Ctx, err: &ErrorInfo) -> Response {
    let t = ctx.lang.t();
    if err.status.is_server_error() {
        tracing::error!(status = err.status.as_u16(), cause = %err.cause, "request failed");
    } else {
        tracing::info!(status = err.status.as_u16(), cause = %err.cause, address = %ctx.addr, "request refused");
    }
    let page = state.page(ctx);
    let (title, body) = match err.status {
        StatusCode::FORBIDDEN => (t.error_title, t.csrf_body.to_string()),
        StatusCode::TOO_MANY_REQUESTS => (
            t.throttled_title,
            t.throttled_body
                .replace("{s}", &err.retry_after.unwrap_or(1).to_string()),
        ),
        StatusCode::NOT_FOUND => (t.error_title, t.not_found.to_string()),
        StatusCode::BAD_REQUEST => (t.error_title, t.csrf_body.to_string()),
        _ => (t.error_title, t.error_body.to_string()),
    };
    let mut res = (err.status, Html(page.message(title, &body).into_string())).into_response();
    if let Some(s) = err.retry_after {
        if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    res
}

/// A 303 to a path of ours.
pub fn see_other(path: &'static str) -> Response {
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, path)
        .body(Body::empty())
        .unwrap_or_default()
}
