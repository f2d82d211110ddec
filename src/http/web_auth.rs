//! Web sign-in for the admin page: `POST {base}/api/auth/login` (email + password → an HttpOnly,
//! SameSite=Strict session cookie valid 7 days), `POST {base}/api/auth/logout`, and
//! `GET {base}/api/auth/session`. These are the `web` sessions the session tools list and revoke.
//! The rules (rate limit, refusals, audit rows) are [`crate::ops::web`]'s; these routes parse
//! the request, set the cookie and answer JSON, `{"error": ...}` on failure.

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
fn error(status: StatusCode, msg: &str) -> Response {
    json_response(status, &json!({"error": msg}))
}

/// The web session token of the `trex_session` cookie, if the request carries one.
pub fn cookie_token(h: &HeaderMap) -> Option<String> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            v.split(';').find_map(|kv| {
                let (k, val) = kv.trim().split_once('=')?;
                (k == COOKIE && !val.is_empty()).then(|| val.to_string())
            })
        })
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
        .and(warp::path("session"))
        .and(warp::path::end())
        .and(warp::get())
        .and(with)
        .and(warp::header::headers_cloned())
        .and_then(current);
    login.or(logout).unify().or(session).unify().boxed()
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
        &json!({"user": {"id": user.id, "name": user.name, "email": user.email, "role": user.role}, "expiresAt": done.expires_at}),
    );
    let cookie = format!(
        "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        done.token,
        SESSION_DAYS * 86_400
    );
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("ascii"),
    );
    Ok(r)
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
        let ip = remote.map(|r| r.ip()).unwrap_or(IpAddr::from([0, 0, 0, 0]));
        if let Err(e) = crate::ops::web::sign_out(&app, &t, ip).await {
            return Ok(internal("sign-out", &e));
        }
    }
    let mut r = json_response(StatusCode::OK, &json!({"ok": true}));
    let clear = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&clear).expect("ascii"),
    );
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
        Ok(Some((id, u, exp))) => Ok(json_response(
            StatusCode::OK,
            &json!({"sessionId": id, "user": {"id": u.id, "name": u.name, "email": u.email, "role": u.role}, "expiresAt": exp, "now": now_rfc3339()}),
        )),
        Ok(None) => Ok(error(StatusCode::UNAUTHORIZED, "Not signed in")),
        Err(e) => Ok(internal("session lookup", &e)),
    }
}
