//! Web sign-in for the admin page: `POST {base}/api/auth/login` (email + password → an HttpOnly,
//! SameSite=Strict session cookie valid 7 days), `POST {base}/api/auth/logout`, and
//! `GET {base}/api/auth/session`. These are the `web` sessions the session tools list and revoke.
//! Failed sign-ins are rate-limited per address, per account and per pair
//! ([`crate::auth::limiter`]); every sign-in, failure and logout is audited (`via: web`, with
//! the client address). Answers are JSON `{"error": ...}` on failure.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock};

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
use crate::auth::password;
use crate::store::{users, web_sessions};
use crate::util::{now_rfc3339, random_hex, rfc3339};

/// Name of the session cookie.
pub const COOKIE: &str = "trex_session";
/// Life of a web session.
pub const SESSION_DAYS: i64 = 7;
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

fn token_hash(t: &str) -> String {
    crate::auth::keys::hash(t)
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
    if let Err(l) = app.login_limiter.begin(ip, &creds.email) {
        tracing::warn!(remote = %ip, "sign-in refused: too many failures for this {}", l.by);
        login_refused(&app, None, ip, &creds.email, "rate limited").await;
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many failed sign-in attempts; try again later",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(l.wait_secs));
        return Ok(r);
    }
    let email = creds.email.clone();
    let found = app
        .store
        .run(move |c| {
            let u = users::get_by_email(c, &email)?;
            let hash = match &u {
                Some(u) => users::password_hash(c, &u.id)?,
                None => None,
            };
            Ok((u, hash))
        })
        .await;
    let (user, hash) = match found {
        Ok(x) => x,
        Err(e) => {
            tracing::error!("login lookup failed: {e}");
            return Ok(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal server error",
            ));
        }
    };
    // verify even for unknown users, so timing does not tell which emails exist
    static DUMMY: LazyLock<String> =
        LazyLock::new(|| password::hash("no such user").unwrap_or_default());
    let pw = creds.password;
    let phc = hash.clone().unwrap_or_else(|| DUMMY.clone());
    let ok = tokio::task::spawn_blocking(move || password::verify(&pw, &phc))
        .await
        .unwrap_or(false);
    let uid = user.as_ref().map(|u| u.id.clone());
    let Some(user) = user.filter(|u| ok && hash.is_some() && u.deleted_at.is_none()) else {
        tracing::warn!(remote = %ip, "sign-in failed: wrong email or password");
        login_refused(&app, uid, ip, &creds.email, "wrong email or password").await;
        return Ok(error(StatusCode::UNAUTHORIZED, "Invalid email or password"));
    };
    if user.is_banned_now() {
        tracing::warn!(remote = %ip, user = %user.email, "sign-in refused: banned");
        login_refused(&app, uid, ip, &creds.email, "banned").await;
        return Ok(error(StatusCode::FORBIDDEN, "This user is banned"));
    }
    app.login_limiter.succeeded(ip, &creds.email);
    let token = random_hex(32);
    let expires = rfc3339(chrono::Utc::now() + chrono::Duration::days(SESSION_DAYS));
    let ua = h
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(512).collect::<String>());
    let (uid, th, exp, ipstr) = (
        user.id.clone(),
        token_hash(&token),
        expires.clone(),
        ip.to_string(),
    );
    if let Err(e) = app
        .store
        .run(move |c| web_sessions::insert(c, &uid, &th, Some(&ipstr), ua.as_deref(), &exp))
        .await
    {
        tracing::error!("cannot store web session: {e}");
        return Ok(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal server error",
        ));
    }
    web_audit(
        &app,
        Some(user.id.clone()),
        ip,
        "login",
        &user.email,
        "ok",
        None,
    )
    .await;
    let mut r = json_response(
        StatusCode::OK,
        &json!({"user": {"id": user.id, "name": user.name, "email": user.email, "role": user.role}, "expiresAt": expires}),
    );
    let cookie = format!(
        "{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_DAYS * 86_400
    );
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("ascii"),
    );
    Ok(r)
}

/// Writes the audit row of a web sign-in or logout (`via: web`, with the client address).
async fn web_audit(
    app: &App,
    user_id: Option<String>,
    ip: IpAddr,
    action: &str,
    email: &str,
    outcome: &'static str,
    detail: Option<&str>,
) {
    let actor = crate::audit::Actor {
        user_id,
        key_id: None,
        via: "web",
        remote: Some(ip.to_string()),
    };
    let args = json!({"email": email});
    let event = crate::audit::Event {
        server: "web",
        action,
        arguments: &args,
        outcome,
        detail,
    };
    crate::audit::record(&app.store, app.config.audit, &actor, event).await;
}

/// The audit row of a refused sign-in.
async fn login_refused(app: &App, uid: Option<String>, ip: IpAddr, email: &str, why: &str) {
    web_audit(app, uid, ip, "login", email, "refused", Some(why)).await;
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
        let th = token_hash(&t);
        let res = app
            .store
            .run(move |c| match web_sessions::find(c, &th)? {
                Some((id, uid, _)) => {
                    web_sessions::delete(c, &id)?;
                    Ok(users::get(c, &uid)?.map(|u| (u.id, u.email)))
                }
                None => Ok(None),
            })
            .await;
        if let Ok(Some((uid, email))) = &res {
            let ip = remote.map(|r| r.ip()).unwrap_or(IpAddr::from([0, 0, 0, 0]));
            web_audit(&app, Some(uid.clone()), ip, "logout", email, "ok", None).await;
        }
        if let Err(e) = res {
            tracing::error!("logout failed: {e}");
            return Ok(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal server error",
            ));
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
    let th = token_hash(&t);
    let found = app
        .store
        .run(move |c| {
            let Some((id, uid, exp)) = web_sessions::find(c, &th)? else {
                return Ok(None);
            };
            Ok(users::get(c, &uid)?.map(|u| (id, u, exp)))
        })
        .await;
    match found {
        Ok(Some((id, u, exp))) if u.deleted_at.is_none() && !u.is_banned_now() => {
            Ok(json_response(
                StatusCode::OK,
                &json!({"sessionId": id, "user": {"id": u.id, "name": u.name, "email": u.email, "role": u.role}, "expiresAt": exp, "now": now_rfc3339()}),
            ))
        }
        Ok(_) => Ok(error(StatusCode::UNAUTHORIZED, "Not signed in")),
        Err(e) => {
            tracing::error!("session lookup failed: {e}");
            Ok(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal server error",
            ))
        }
    }
}
