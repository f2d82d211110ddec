//! Web sign-in for the admin page: `POST {base}/api/auth/login` (email + password → an HttpOnly,
//! SameSite=Strict session cookie valid 7 days, `Secure` when `server.public_url` is https),
//! `POST {base}/api/auth/logout`, `GET {base}/api/auth/session` (the user and the session's
//! anti-CSRF token), `GET {base}/api/auth/providers` (the enabled SSO providers, for the sign-in
//! page), and the SSO flow `GET {base}/api/auth/sso/{id}/start` → provider →
//! `GET {base}/api/auth/sso/{id}/callback`, which ends on `{base}/admin/` signed in (or with
//! `?sso_error=` saying why not). These are the `web` sessions the session tools list and
//! revoke. The rules (rate limit, refusals, audit rows) are [`crate::ops::web`]'s and
//! [`crate::ops::sso_login`]'s; these routes parse the request, set cookies and answer JSON,
//! `{"error": ...}` on failure.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, HeaderValue, StatusCode, header};
use warp::{Filter, Rejection};

use super::Response;
use super::guard::{HostPolicy, check_origin};
use super::rejection::json_response;
use crate::app::App;
use crate::ops::web::{Refused, SESSION_DAYS};
use crate::util::now_rfc3339;

/// Name of the session cookie.
pub const COOKIE: &str = "trex_session";

/// Header that carries the session's anti-CSRF token on every cookie-authenticated call.
pub const CSRF_HEADER: &str = "x-trex-csrf";

/// The value of cookie `name`, if the request carries it.
fn cookie_named(h: &HeaderMap, name: &str) -> Option<String> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            v.split(';').find_map(|kv| {
                let (k, val) = kv.trim().split_once('=')?;
                (k == name && !val.is_empty()).then(|| val.to_string())
            })
        })
}

/// `; Secure` when the server is reached over https.
fn secure(app: &App) -> &'static str {
    if app.config.server.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    }
}

/// The session cookie for `token` (or its removal, `None`).
fn session_cookie(app: &App, token: Option<&str>) -> HeaderValue {
    let v = match token {
        Some(t) => format!(
            "{COOKIE}={t}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
            SESSION_DAYS * 86_400,
            secure(app)
        ),
        None => format!(
            "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
            secure(app)
        ),
    };
    HeaderValue::from_str(&v).expect("ascii")
}
fn error(status: StatusCode, msg: &str) -> Response {
    json_response(status, &json!({"error": msg}))
}

/// The web session token of the `trex_session` cookie, if the request carries one.
pub fn cookie_token(h: &HeaderMap) -> Option<String> {
    cookie_named(h, COOKIE)
}

/// True when the request carries the anti-CSRF token of the session of `token`.
pub fn csrf_ok(h: &HeaderMap, token: &str) -> bool {
    crate::ops::web::csrf_ok(token, h.get(CSRF_HEADER).and_then(|v| v.to_str().ok()))
}

/// The `{base}/api/auth/...` routes.
pub fn routes(app: Arc<App>, policy: Arc<HostPolicy>, base: &[String]) -> BoxedFilter<(Response,)> {
    let mut seg = base.to_vec();
    seg.extend(["api".to_string(), "auth".to_string()]);
    let root = super::exact_prefix(&seg);
    let with = {
        let (app, policy) = (app.clone(), policy.clone());
        warp::any()
            .map(move || (app.clone(), policy.clone()))
            .untuple_one()
    };
    let login = root
        .clone()
        .and(warp::path("login"))
        .and(warp::path::end())
        .and(warp::post())
        .and(with.clone())
        .and(warp::header::headers_cloned())
        .and(crate::http::client_addr())
        .and(crate::http::body_of(&app, 64 * 1024))
        .and_then(login);
    let logout = root
        .clone()
        .and(warp::path("logout"))
        .and(warp::path::end())
        .and(warp::post())
        .and(with.clone())
        .and(warp::header::headers_cloned())
        .and(crate::http::client_addr())
        .and_then(logout);
    let session = root
        .clone()
        .and(warp::path("session"))
        .and(warp::path::end())
        .and(warp::get())
        .and(with.clone())
        .and(warp::header::headers_cloned())
        .and_then(current);
    let providers = root
        .clone()
        .and(warp::path("providers"))
        .and(warp::path::end())
        .and(warp::get())
        .and(with.clone())
        .and(warp::header::headers_cloned())
        .and_then(providers);
    let start = root
        .clone()
        .and(warp::path("sso"))
        .and(warp::path::param::<String>())
        .and(warp::path("start"))
        .and(warp::path::end())
        .and(warp::get())
        .and(with.clone())
        .and(warp::header::headers_cloned())
        .and_then(sso_start);
    let callback = root
        .and(warp::path("sso"))
        .and(warp::path::param::<String>())
        .and(warp::path("callback"))
        .and(warp::path::end())
        .and(warp::get())
        .and(with)
        .and(warp::header::headers_cloned())
        .and(crate::http::client_addr())
        .and(warp::query::<std::collections::HashMap<String, String>>())
        .and_then(sso_callback);
    login
        .or(logout)
        .unify()
        .or(session)
        .unify()
        .or(providers)
        .unify()
        .or(start)
        .unify()
        .or(callback)
        .unify()
        .boxed()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    email: String,
    password: String,
}

/// POST {base}/api/auth/login
async fn login(
    app: Arc<App>,
    policy: Arc<HostPolicy>,
    h: HeaderMap,
    remote: Option<SocketAddr>,
    body: Bytes,
) -> Result<Response, Rejection> {
    check_origin(&policy, &h)?;
    let ip = remote.map(|r| r.ip()).unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let json_ct = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        });
    if !json_ct {
        return Ok(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        ));
    }
    let creds: Credentials = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            return Ok(error(
                StatusCode::BAD_REQUEST,
                &format!("Body must be JSON {{\"email\", \"password\"}}: {e}"),
            ));
        }
    };
    let ua = h
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(512).collect::<String>());
    let done = match crate::ops::web::sign_in(&app, &creds.email, creds.password, ip, ua).await {
        Ok(Ok(s)) => s,
        Ok(Err(Refused::RateLimited { wait_secs })) => {
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many failed sign-in attempts; try again later",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(wait_secs));
            return Ok(r);
        }
        Ok(Err(Refused::BadCredentials)) => {
            return Ok(error(StatusCode::UNAUTHORIZED, "Invalid email or password"));
        }
        Ok(Err(Refused::Banned)) => {
            return Ok(error(StatusCode::FORBIDDEN, "This user is banned"));
        }
        Err(e) => return Ok(internal("sign-in", &e)),
    };
    let user = &done.user;
    let mut r = json_response(
        StatusCode::OK,
        &json!({"user": {"id": user.id, "name": user.name, "email": user.email, "role": user.role},
                "expiresAt": done.expires_at, "csrfToken": crate::ops::web::csrf_token(&done.token)}),
    );
    r.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&app, Some(&done.token)));
    Ok(no_store(r))
}

/// A 500 whose detail goes to the log with a correlation id, never to the client.
fn internal(what: &str, e: &crate::Error) -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        &crate::error::internal(what, e),
    )
}

/// POST {base}/api/auth/logout
async fn logout(
    app: Arc<App>,
    policy: Arc<HostPolicy>,
    h: HeaderMap,
    remote: Option<SocketAddr>,
) -> Result<Response, Rejection> {
    check_origin(&policy, &h)?;
    if let Some(t) = cookie_token(&h) {
        if !csrf_ok(&h, &t) {
            return Ok(error(
                StatusCode::FORBIDDEN,
                "Forbidden: the X-Trex-Csrf header must carry this session's token",
            ));
        }
        let ip = remote.map(|r| r.ip()).unwrap_or(IpAddr::from([0, 0, 0, 0]));
        if let Err(e) = crate::ops::web::sign_out(&app, &t, ip).await {
            return Ok(internal("sign-out", &e));
        }
    }
    let mut r = json_response(StatusCode::OK, &json!({"ok": true}));
    r.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&app, None));
    Ok(r)
}

/// GET {base}/api/auth/session — the signed-in user, or 401.
async fn current(
    app: Arc<App>,
    policy: Arc<HostPolicy>,
    h: HeaderMap,
) -> Result<Response, Rejection> {
    check_origin(&policy, &h)?;
    let Some(t) = cookie_token(&h) else {
        return Ok(error(StatusCode::UNAUTHORIZED, "Not signed in"));
    };
    match crate::ops::web::current(&app, &t).await {
        Ok(Some((id, u, exp))) => Ok(no_store(json_response(
            StatusCode::OK,
            &json!({"sessionId": id, "user": {"id": u.id, "name": u.name, "email": u.email, "role": u.role},
                    "admin": u.role == "admin", "expiresAt": exp, "now": now_rfc3339(),
                    "csrfToken": crate::ops::web::csrf_token(&t), "version": env!("CARGO_PKG_VERSION"),
                    "rowLimit": app.config.engine.row_limit}),
        ))),
        Ok(None) => Ok(error(StatusCode::UNAUTHORIZED, "Not signed in")),
        Err(e) => Ok(internal("session lookup", &e)),
    }
}

/// `r` marked not to be stored by any cache (it carries the session's anti-CSRF token).
fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// GET {base}/api/auth/providers — the enabled SSO providers, for the sign-in page.
async fn providers(
    app: Arc<App>,
    policy: Arc<HostPolicy>,
    h: HeaderMap,
) -> Result<Response, Rejection> {
    check_origin(&policy, &h)?;
    match crate::ops::sso::enabled(&app).await {
        Ok(list) => {
            let v: Vec<_> = list
                .into_iter()
                .map(|p| json!({"id": p.id, "displayName": p.display_name}))
                .collect();
            Ok(json_response(StatusCode::OK, &json!({"providers": v})))
        }
        Err(e) => Ok(internal("listing SSO providers", &e)),
    }
}

/// This server's SSO callback URL for provider `id`: from `server.public_url`, else from the
/// request's (checked) `Host`.
fn callback_url(app: &App, h: &HeaderMap, id: &str) -> Option<String> {
    let origin = if app.config.server.public_url.is_empty() {
        let host = h.get(header::HOST)?.to_str().ok()?;
        format!("http://{host}")
    } else {
        app.config
            .server
            .public_url
            .trim_end_matches('/')
            .to_string()
    };
    Some(format!(
        "{origin}{}/api/auth/sso/{id}/callback",
        app.config.server.base_path.trim_end_matches('/')
    ))
}

/// `{base}/admin/`, with `?sso_error=` when there is something to say.
fn admin_page(app: &App, error: Option<&str>) -> String {
    let base = app.config.server.base_path.trim_end_matches('/');
    match error {
        None => format!("{base}/admin/"),
        Some(e) => {
            let q: String = url::form_urlencoded::byte_serialize(e.as_bytes()).collect();
            format!("{base}/admin/?sso_error={q}")
        }
    }
}

fn see_other(location: &str) -> Response {
    let mut r = Response::new(Vec::new().into());
    *r.status_mut() = StatusCode::SEE_OTHER;
    r.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(location).unwrap_or(HeaderValue::from_static("/")),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The cookie that carries a started SSO sign-in to its callback: `SameSite=Lax` (the
/// callback is a top-level navigation from the provider's site), only sent to the SSO paths.
fn state_cookie(app: &App, value: Option<&str>) -> HeaderValue {
    let path = format!(
        "{}/api/auth/sso/",
        app.config.server.base_path.trim_end_matches('/')
    );
    let (v, age) = match value {
        Some(v) => (v, app.config.sso.login_timeout_secs),
        None => ("", 0),
    };
    let c = format!(
        "{}={v}; HttpOnly; SameSite=Lax; Path={path}; Max-Age={age}{}",
        crate::ops::sso_login::STATE_COOKIE,
        secure(app)
    );
    HeaderValue::from_str(&c).expect("ascii")
}

/// GET {base}/api/auth/sso/{id}/start — off to the provider's sign-in page.
async fn sso_start(
    id: String,
    app: Arc<App>,
    policy: Arc<HostPolicy>,
    h: HeaderMap,
) -> Result<Response, Rejection> {
    check_origin(&policy, &h)?;
    let Some(cb) = callback_url(&app, &h, &id) else {
        return Ok(error(StatusCode::BAD_REQUEST, "A Host header is required"));
    };
    match crate::ops::sso_login::begin(&app, &id, &cb).await {
        Ok(b) => {
            let mut r = see_other(&b.authorize_url);
            r.headers_mut()
                .insert(header::SET_COOKIE, state_cookie(&app, Some(&b.cookie)));
            Ok(r)
        }
        Err(crate::Error::NotFound(m)) => Ok(see_other(&admin_page(&app, Some(&m)))),
        Err(e) => {
            let m = crate::error::internal("starting an SSO sign-in", &e);
            Ok(see_other(&admin_page(
                &app,
                Some(&format!("The provider could not be reached. {m}")),
            )))
        }
    }
}

/// GET {base}/api/auth/sso/{id}/callback — the provider's answer; ends on the admin page.
async fn sso_callback(
    id: String,
    app: Arc<App>,
    policy: Arc<HostPolicy>,
    h: HeaderMap,
    remote: Option<SocketAddr>,
    q: std::collections::HashMap<String, String>,
) -> Result<Response, Rejection> {
    // the provider's redirect is a cross-site top-level navigation (no Origin on such a GET);
    // the Host is checked like everywhere, since the callback URL is made from it, and the
    // sealed state cookie and `state` tie the answer to a sign-in started here
    check_origin(&policy, &h)?;
    let ip = remote.map(|r| r.ip()).unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let Some(cb_url) = callback_url(&app, &h, &id) else {
        return Ok(error(StatusCode::BAD_REQUEST, "A Host header is required"));
    };
    let ua = h
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(512).collect::<String>());
    let cb = crate::ops::sso_login::Callback {
        code: q.get("code").cloned(),
        state: q.get("state").cloned(),
        error: q.get("error").map(|e| {
            let e: String = e.chars().take(100).collect();
            match q.get("error_description") {
                Some(d) => format!("{e}: {}", d.chars().take(200).collect::<String>()),
                None => e,
            }
        }),
    };
    let cookie = cookie_named(&h, crate::ops::sso_login::STATE_COOKIE);
    let out =
        crate::ops::sso_login::finish(&app, &id, &cb_url, cb, cookie.as_deref(), ip, ua).await;
    let mut r = match out {
        Ok(Ok(done)) => {
            let mut r = see_other(&admin_page(&app, None));
            r.headers_mut()
                .append(header::SET_COOKIE, session_cookie(&app, Some(&done.token)));
            r
        }
        Ok(Err(why)) => see_other(&admin_page(&app, Some(&why.0))),
        Err(e) => {
            let m = crate::error::internal("SSO sign-in", &e);
            see_other(&admin_page(&app, Some(&m)))
        }
    };
    r.headers_mut()
        .append(header::SET_COOKIE, state_cookie(&app, None));
    Ok(r)
}
